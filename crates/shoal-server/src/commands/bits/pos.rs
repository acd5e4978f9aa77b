//! Finding the first set or clear bit (`BITPOS`).

use super::range::{self, Unit};

/// `BITPOS`'s answer for a string, the bit sought and a range (`end`: `None` if not given),
/// as Redis 7.0 gives it: -1 when the range is empty or holds no such bit, except that with
/// no end given the string counts as followed by clear bits.
pub(crate) fn bitpos(bytes: &[u8], bit: bool, start: i64, end: Option<i64>, unit: Unit) -> i64 {
    let Some((first_bit, last_bit)) = range::resolve(bytes.len(), start, end.unwrap_or(-1), unit)
    else {
        return -1;
    };
    match first(bytes, first_bit, last_bit, bit) {
        Some(found) => found as i64,
        None if !bit && end.is_none() => last_bit as i64 + 1,
        None => -1,
    }
}

/// The position of the first bit of `bytes` equal to `bit` among bits `first..=last` (which
/// `bytes` must hold), if there is one.
pub(crate) fn first(bytes: &[u8], first: u64, last: u64, bit: bool) -> Option<u64> {
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    let head = 0xFFu8 >> (first % 8);
    let tail = 0xFFu8 << (7 - last % 8);
    // The bits sought, as ones, among the bits of byte `i` that `keep` selects.
    let find = |i: usize, keep: u8| {
        let sought = if bit { bytes[i] } else { !bytes[i] } & keep;
        (sought != 0).then(|| i as u64 * 8 + u64::from(sought.leading_zeros()))
    };
    if first_byte == last_byte {
        return find(first_byte, head & tail);
    }
    if let Some(found) = find(first_byte, head) {
        return Some(found);
    }
    let middle = first_byte + 1..last_byte;
    let skip = if bit { 0x00 } else { 0xFF };
    // Whole words of the byte that is not sought go by eight bytes at a time.
    let skip_word = u64::from_ne_bytes([skip; 8]);
    let skipped = bytes[middle.clone()]
        .chunks_exact(8)
        .take_while(|word| {
            u64::from_ne_bytes((*word).try_into().expect("chunks of 8 bytes")) == skip_word
        })
        .count()
        * 8;
    (middle.start + skipped..middle.end)
        .find(|&i| bytes[i] != skip)
        .and_then(|i| find(i, 0xFF))
        .or_else(|| find(last_byte, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_set_and_clear_bits() {
        let bytes = [0x00, 0x0F, 0xFF];
        assert_eq!(first(&bytes, 0, 23, true), Some(12));
        assert_eq!(first(&bytes, 0, 23, false), Some(0));
        assert_eq!(first(&bytes, 12, 23, false), None);
        assert_eq!(first(&bytes, 13, 14, true), Some(13));
        assert_eq!(first(&bytes, 0, 11, true), None);
        assert_eq!(first(&bytes, 7, 9, false), Some(7));
    }

    #[test]
    fn long_runs_are_skipped_by_words() {
        let mut zeros = vec![0u8; 100];
        assert_eq!(first(&zeros, 0, 799, true), None);
        zeros[77] = 0x10;
        assert_eq!(first(&zeros, 0, 799, true), Some(77 * 8 + 3));
        assert_eq!(first(&zeros, 77 * 8 + 4, 799, true), None);
        let mut ones = vec![0xFFu8; 100];
        assert_eq!(first(&ones, 0, 799, false), None);
        ones[99] = 0xFE;
        assert_eq!(first(&ones, 0, 799, false), Some(799));
        assert_eq!(first(&ones, 0, 798, false), None);
        assert_eq!(first(&ones, 3, 799, false), Some(799));
    }
}
