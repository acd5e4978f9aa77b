//! Sharded counters: one logical counter kept as `parts` sub-counters (`key#1` .. `key#N`),
//! which hash to different slots and so, with enough parts, to different shards. An increment
//! goes to one part picked at random, so a counter incremented by everyone spreads its writes
//! over the cluster instead of queueing on one primary; a read sums the parts.
//!
//! What a read sees: the parts are read with `MGET`s sent to their shards at once, each part
//! as its primary holds it at that moment. Every increment acknowledged before the read began
//! is counted, and an increment in flight during the read may or may not be (the sum is of
//! parts read at slightly different moments, not of one snapshot). An increment whose reply was
//! lost (a timeout) may have been applied, as for a plain `INCRBY`. A key with a hash tag
//! (`{user:1}:views`) keeps every part in its tag's slot, so its parts do not spread.

use bytes::Bytes;

use crate::client::Client;
use crate::error::Error;

/// Most parts a counter may have.
pub const MAX_PARTS: usize = 1024;

/// A counter split over `parts` keys; see the module's documentation. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShardedCounter {
    client: Client,
    parts: Vec<Bytes>,
}

impl ShardedCounter {
    /// The counter `key` in `parts` sub-counters (1 to [`MAX_PARTS`]), through `client`.
    pub(crate) fn new(client: Client, key: &[u8], parts: usize) -> Result<Self, Error> {
        if !(1..=MAX_PARTS).contains(&parts) {
            return Err(Error::Config(format!(
                "a sharded counter has 1 to {MAX_PARTS} parts, not {parts}"
            )));
        }
        Ok(ShardedCounter {
            client,
            parts: part_keys(key, parts),
        })
    }

    /// The keys of its parts, `key#1` .. `key#N`.
    pub fn part_keys(&self) -> &[Bytes] {
        &self.parts
    }

    /// Adds `by` (negative to subtract) to one part picked at random; returns that part's new
    /// value, not the counter's (reading the whole takes [`ShardedCounter::get`]).
    pub async fn incr_by(&self, by: i64) -> Result<i64, Error> {
        let part = &self.parts[rand::random_range(0..self.parts.len())];
        self.client.incr_by(part, by).await
    }

    /// The sum of the parts (missing parts count 0).
    pub async fn get(&self) -> Result<i64, Error> {
        let values = self.client.mget(&self.parts).await?;
        sum(&values)
    }

    /// Deletes every part; returns how many existed.
    pub async fn delete(&self) -> Result<u64, Error> {
        self.client.del(&self.parts).await
    }
}

/// `key#1` .. `key#parts`.
fn part_keys(key: &[u8], parts: usize) -> Vec<Bytes> {
    (1..=parts).map(|i| suffixed(key, i)).collect()
}

/// `key#i`: the name of a sharded counter's part, or of a hot key's copy.
pub(crate) fn suffixed(key: &[u8], i: usize) -> Bytes {
    let mut name = Vec::with_capacity(key.len() + 5);
    name.extend_from_slice(key);
    name.push(b'#');
    name.extend_from_slice(i.to_string().as_bytes());
    Bytes::from(name)
}

/// The sum of `values`, each an integer or missing.
fn sum(values: &[Option<Bytes>]) -> Result<i64, Error> {
    values.iter().flatten().try_fold(0i64, |total, value| {
        let n = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| Error::UnexpectedReply {
                command: "MGET".into(),
                reply: format!(
                    "a part of a sharded counter holds {:?}, not an integer",
                    String::from_utf8_lossy(value)
                ),
            })?;
        total.checked_add(n).ok_or_else(|| Error::UnexpectedReply {
            command: "MGET".into(),
            reply: "the sum of a sharded counter's parts overflows 64 bits".into(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_named_by_suffix_and_spread_over_slots() {
        let parts = part_keys(b"views", 8);
        assert_eq!(parts[0], Bytes::from_static(b"views#1"));
        assert_eq!(parts[7], Bytes::from_static(b"views#8"));
        let slots: std::collections::HashSet<_> =
            parts.iter().map(|p| shoal_cluster::key_slot(p)).collect();
        assert_eq!(slots.len(), 8, "eight parts, eight slots");
    }

    #[test]
    fn the_sum_counts_missing_parts_as_zero_and_refuses_other_values() {
        let v = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
        assert_eq!(sum(&[v("3"), None, v("-1"), v("40")]).unwrap(), 42);
        assert_eq!(sum(&[]).unwrap(), 0);
        assert!(sum(&[v("3"), v("x")]).is_err());
        assert!(sum(&[v("9223372036854775807"), v("1")]).is_err());
    }
}
