//! Shoal's keyspace.
//!
//! A [`Store`] is a power-of-two number of shards, each locked on its own. A shard is an
//! open-addressing index of 32-bit refs into an arena where each entry is one blob (links,
//! metadata, optional TTL, key and value), linked into an exact LRU list. Keys expire passively
//! on access and actively through [`Store::expire_cycle`]; [`Store::make_room`] evicts by policy
//! under `maxmemory`. Time comes from a [`Clock`], so tests control it. How long the expiry
//! cycle and evictions took goes to a [`LatencySink`] (the server's latency monitor), only
//! while it asks for it.
//!
//! The crate does no I/O and starts no threads: the server drives the background work.

mod arena;
mod clock;
mod entry;
mod error;
mod events;
mod hash;
mod int;
mod latency;
mod lfu;
mod policy;
mod shard;
mod store;
mod table;
mod value;

pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::{Form, Kind};
pub use error::StoreError;
pub use events::{Journal, KeyEvents, Removal};
pub use int::{is_canonical_i64, parse_i64};
pub use latency::{LatencyEvent, LatencySink};
pub use lfu::{DEFAULT_LFU_DECAY_TIME, DEFAULT_LFU_LOG_FACTOR, LFU_INIT_VAL};
pub use policy::{EvictionPolicy, UnknownPolicy};
pub use shard::ENTRY_OVERHEAD;
pub use shoal_proto::glob_match;
pub use store::{
    Combined, DEFAULT_MAX_PACKED_ENTRIES, DEFAULT_MAX_PACKED_VALUE, Encoding, ExpireCondition,
    ExpireCycle, ExpireOutcome, HashSlot, HashWrite, KeyTtl, MAX_VALUE_LEN, ObjectInfo,
    OutOfMemory, RenameOutcome, SetCondition, SetOptions, Store, StoreConfig, StoreStats,
    TtlUpdate, UpdateError, Upkeep,
};
pub use value::packed::Field;
pub use value::{HashEncoding, HashRef};

#[cfg(test)]
mod hash_tests;
#[cfg(test)]
mod journal_tests;
#[cfg(test)]
mod lfu_tests;
#[cfg(test)]
mod tests;
