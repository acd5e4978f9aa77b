//! Shoal's keyspace.
//!
//! A [`Store`] is a power-of-two number of shards, each locked on its own. A shard is an
//! open-addressing index of 32-bit refs into an arena where each entry is one blob (links,
//! metadata, optional TTL, key and value), linked into an exact LRU list. Keys expire passively
//! on access and actively through [`Store::expire_cycle`]; [`Store::make_room`] evicts by policy
//! under `maxmemory`. Time comes from a [`Clock`], so tests control it.
//!
//! The crate does no I/O and starts no threads: the server drives the background work.

mod arena;
mod clock;
mod entry;
mod hash;
mod pattern;
mod policy;
mod shard;
mod store;
mod table;

pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::Form;
pub use pattern::glob_match;
pub use policy::{EvictionPolicy, UnknownPolicy};
pub use shard::ENTRY_OVERHEAD;
pub use store::{
    Encoding, ExpireCondition, ExpireCycle, ExpireOutcome, KeyTtl, ObjectInfo, OutOfMemory,
    RenameOutcome, SetCondition, SetOptions, Store, StoreConfig, StoreStats, TtlUpdate,
    UpdateError, Upkeep,
};

/// Why a key left the store on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its TTL passed.
    Expired,
    /// It was evicted to stay under `maxmemory`.
    Evicted,
}

/// Observer of keys that leave the store without a command deleting them (for metrics,
/// replication and client-side caching). Called with the shard locked: keep it short.
pub trait KeyEvents: Send + Sync {
    /// `key` was removed for `cause`.
    fn on_removed(&self, key: &[u8], cause: Removal);
}

/// Hears every change of the keyspace's state, as the resulting state of each changed key, in
/// an order consistent with the changes (called under the lock of the key's shard, so two
/// changes of one key are reported in the order they happened).
///
/// This is what replication streams: replaying the calls in order into an empty store (`put` as
/// a `SET` with `TtlUpdate::At(expiry)`, `delete` as a `DEL`, `flush` as a `FLUSHALL`) rebuilds
/// the keyspace. Every call is made with the shard of the key locked (all shards locked for
/// [`Journal::flush`]; both shards for a `RENAME` or `COPY` across shards), so an
/// implementation must be quick and must never call back into the [`Store`] (it would
/// deadlock). Calls for different shards can come from different threads at once.
///
/// A write that changes nothing (a refused `SET NX`, an `EXPIRE` whose condition fails, a `DEL`
/// of a missing key, a `PERSIST` of a key without expiry) reports nothing. Compaction moves
/// entries in memory without changing any key, so it reports nothing either.
pub trait Journal: Send + Sync {
    /// `key` now holds `value`, expiring at `expiry` (absolute Unix ms) or never.
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>);
    /// `key` no longer exists (deleted, renamed away, expired, evicted).
    fn delete(&self, key: &[u8]);
    /// Every key is gone (FLUSHALL / `Store::clear`).
    fn flush(&self);
}

/// A write the store cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The shard's arena cannot address more memory.
    #[error("shard memory address space exhausted")]
    AddressSpace,
    /// The value would exceed the length the caller allows.
    #[error("string exceeds maximum allowed size")]
    TooLarge,
}

impl From<arena::ArenaFull> for StoreError {
    fn from(_: arena::ArenaFull) -> Self {
        StoreError::AddressSpace
    }
}

/// Whether `s` is a 64-bit integer in canonical form (what Redis's `string2ll` accepts): an
/// optional `-`, no `+`, no leading zeros, no spaces, `-0` excluded.
pub fn is_canonical_i64(s: &[u8]) -> bool {
    parse_i64(s).is_some()
}

/// Parses a canonical 64-bit integer as Redis's `string2ll` does (see [`is_canonical_i64`]).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            None
        } else {
            Some((value as i64).wrapping_neg())
        }
    } else {
        i64::try_from(value).ok()
    }
}

#[cfg(test)]
mod journal_tests;
#[cfg(test)]
mod tests;
