//! A sharded counter's parts: how many there may be, their keys (`key#1` .. `key#N`), which one
//! an increment takes, and the sum of their values. Pure functions, shared by the client, the
//! proxy and the nodes, so that all of them name the parts and add them up the same way.

use bytes::Bytes;
use shoal_proto::args::parse_i64;

/// Most parts a counter may have.
pub const MAX_PARTS: usize = 1024;

/// Whether a counter may have `parts` parts (1 to [`MAX_PARTS`]).
pub fn parts_in_range(parts: usize) -> bool {
    (1..=MAX_PARTS).contains(&parts)
}

/// The key of part `n` (counted from 1) of the counter `key`: `key#n`.
pub fn part_key(key: &[u8], n: usize) -> Bytes {
    let digits = n.to_string();
    let mut name = Vec::with_capacity(key.len() + 1 + digits.len());
    name.extend_from_slice(key);
    name.push(b'#');
    name.extend_from_slice(digits.as_bytes());
    Bytes::from(name)
}

/// The keys of every part of the counter `key` in `parts` parts: `key#1` .. `key#parts`.
pub fn part_keys(key: &[u8], parts: usize) -> Vec<Bytes> {
    (1..=parts).map(|n| part_key(key, n)).collect()
}

/// The part an increment goes to, picked at random: 1 to `parts` (1 if `parts` is 0).
pub fn random_part(parts: usize) -> usize {
    rand::random_range(0..parts.max(1)) + 1
}

/// Why a counter's parts cannot be summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SumError {
    /// Part `n` (`key#n`) holds something else than a 64-bit integer.
    #[error("counter part #{0} does not hold an integer")]
    NotInteger(usize),
    /// The sum does not fit in 64 bits.
    #[error("the sum of the counter's parts is out of the 64-bit integer range")]
    Overflow,
}

impl SumError {
    /// The error reply a client gets: `ERR` and the message.
    pub fn line(&self) -> String {
        format!("ERR {self}")
    }
}

/// Adds the value of part `n` (an integer as Redis writes them, which `INCRBY` would take) to
/// `total`.
pub fn add_part(total: i64, n: usize, value: &[u8]) -> Result<i64, SumError> {
    let value = parse_i64(value).ok_or(SumError::NotInteger(n))?;
    total.checked_add(value).ok_or(SumError::Overflow)
}

/// The sum of the values of a counter's parts, in part order, a missing part counting 0.
pub fn sum<V: AsRef<[u8]>>(values: impl IntoIterator<Item = Option<V>>) -> Result<i64, SumError> {
    values
        .into_iter()
        .enumerate()
        .try_fold(0, |total, (i, value)| match value {
            Some(value) => add_part(total, i + 1, value.as_ref()),
            None => Ok(total),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn parts_are_named_by_suffix_and_spread_over_slots() {
        let parts = part_keys(b"views", 8);
        assert_eq!(parts[0], Bytes::from_static(b"views#1"));
        assert_eq!(parts[7], Bytes::from_static(b"views#8"));
        assert_eq!(part_key(b"views", 1024), Bytes::from_static(b"views#1024"));
        let slots: HashSet<_> = parts.iter().map(|p| shoal_cluster::key_slot(p)).collect();
        assert_eq!(slots.len(), 8, "eight parts, eight slots");
    }

    #[test]
    fn parts_range_from_one_to_the_maximum() {
        assert!(!parts_in_range(0));
        assert!(parts_in_range(1));
        assert!(parts_in_range(MAX_PARTS));
        assert!(!parts_in_range(MAX_PARTS + 1));
    }

    #[test]
    fn a_random_part_is_one_of_the_parts_and_every_one_is_picked() {
        let picked: HashSet<usize> = (0..1000).map(|_| random_part(4)).collect();
        assert_eq!(picked, HashSet::from([1, 2, 3, 4]));
        assert_eq!(random_part(1), 1);
        assert_eq!(random_part(0), 1);
    }

    #[test]
    fn the_sum_counts_missing_parts_as_zero_and_refuses_other_values() {
        let v = |s: &'static str| Some(s.as_bytes());
        assert_eq!(sum([v("3"), None, v("-1"), v("40")]), Ok(42));
        assert_eq!(sum(Vec::<Option<&[u8]>>::new()), Ok(0));
        assert_eq!(sum([v("3"), None, v("x")]), Err(SumError::NotInteger(3)));
        // As `INCRBY` reads a value: no leading zeros, no `+`, no spaces.
        assert_eq!(sum([v("007")]), Err(SumError::NotInteger(1)));
        assert_eq!(sum([v(" 1")]), Err(SumError::NotInteger(1)));
        assert_eq!(
            sum([v("9223372036854775807"), v("1")]),
            Err(SumError::Overflow)
        );
        assert_eq!(
            sum([v("-9223372036854775808"), v("-1")]),
            Err(SumError::Overflow)
        );
        assert_eq!(
            SumError::NotInteger(2).line(),
            "ERR counter part #2 does not hold an integer"
        );
    }
}
