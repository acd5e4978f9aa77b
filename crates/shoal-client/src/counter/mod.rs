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
//!
//! [`part_keys`] and [`sum`] name the parts and add them up for everyone (the nodes
//! included); [`CounterCommand`] is the `COUNTER.INCRBY`, `COUNTER.GET` and `COUNTER.DEL`
//! commands that give plain Redis clients the same counters through the proxy or a node.

use bytes::Bytes;

use crate::client::Client;
use crate::error::Error;

mod command;
mod parts;

pub use command::{ArgsError, CounterCommand, CounterOp, is_counter_command};
pub use parts::{
    MAX_PARTS, SumError, add_part, part_key, part_keys, parts_in_range, random_part, sum,
};

/// A counter split over `parts` keys; see the module's documentation. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShardedCounter {
    client: Client,
    parts: Vec<Bytes>,
}

impl ShardedCounter {
    /// The counter `key` in `parts` sub-counters (1 to [`MAX_PARTS`]), through `client`.
    pub(crate) fn new(client: Client, key: &[u8], parts: usize) -> Result<Self, Error> {
        if !parts_in_range(parts) {
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
        let part = &self.parts[random_part(self.parts.len()) - 1];
        self.client.incr_by(part, by).await
    }

    /// The sum of the parts (missing parts count 0).
    pub async fn get(&self) -> Result<i64, Error> {
        let values = self.client.mget(&self.parts).await?;
        sum(values).map_err(|e| Error::UnexpectedReply {
            command: "MGET".into(),
            reply: e.to_string(),
        })
    }

    /// Deletes every part; returns how many existed.
    pub async fn delete(&self) -> Result<u64, Error> {
        self.client.del(&self.parts).await
    }
}
