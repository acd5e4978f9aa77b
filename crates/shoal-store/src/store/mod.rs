//! The keyspace: shards behind locks, `used_memory` kept in step with them, and the numbers
//! published beside each lock. The operations live in one submodule per job:
//!
//! | module | job |
//! | --- | --- |
//! | `strings` | values: `GET`, `SET`, `MSET`, the `INCR` family, `APPEND`, `SETRANGE`, bit edits... |
//! | `keys` | keys: `DEL`, `EXISTS`, `TOUCH`, `EXPIRE`, `TTL`, `OBJECT`, `RENAME`, `COPY`, `SCAN`... |
//! | `maintenance` | background work: eviction under `maxmemory`, active expiry, compaction |
//! | `snapshot` | replication: the journal, the snapshot walk and its replay |
//! | `hashes` | hashes: `HSET`, `HGET`, `HDEL`, `HSCAN`, field expiry... in either encoding |
//! | `exclusive` | locking a shard, and the exclusive section a transaction runs in |
//!
//! Every operation takes `&self` and locks only the shards it touches, in shard order when it
//! touches several, so multi-key commands (`MSET`, `MGET`, `DEL`, `RENAME`...) are atomic.
//! Values are handed to closures while the shard is locked, so a reply can copy them straight
//! into an output buffer with no intermediate allocation.

mod exclusive;
mod hashes;
mod keys;
mod maintenance;
mod snapshot;
mod strings;

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering::Relaxed};

use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use crate::arena::{PAGE_SIZE, PagePool};
use crate::clock::{Clock, SystemClock};
use crate::entry::CLOCK_MASK;
use crate::events::KeyEvents;
use crate::hash::{KeyHasher, random_seed};
use crate::latency::LatencySink;
use crate::lfu::{DEFAULT_LFU_DECAY_TIME, DEFAULT_LFU_LOG_FACTOR};
use crate::policy::EvictionPolicy;
use crate::shard::{MemoryBudget, Now, Shard, ShardStats, Stamp};
use exclusive::ShardGuard;

pub use hashes::{DEFAULT_MAX_PACKED_ENTRIES, DEFAULT_MAX_PACKED_VALUE, HashSlot, HashWrite};
pub use keys::{Encoding, ExpireCondition, ExpireOutcome, KeyTtl, ObjectInfo, RenameOutcome};
pub use maintenance::{ExpireCycle, OutOfMemory, Upkeep};
pub use strings::{Combined, MAX_VALUE_LEN, SetCondition, SetOptions, TtlUpdate, UpdateError};

/// How the store is set up.
#[derive(Clone)]
pub struct StoreConfig {
    /// Number of shards (rounded up to a power of two, at least 1).
    pub shards: usize,
    /// Memory limit in bytes for `used_memory`; 0 means none.
    pub maxmemory: usize,
    /// What to evict when over the limit.
    pub policy: EvictionPolicy,
    /// Source of time.
    pub clock: Arc<dyn Clock>,
    /// Told about every expiration and eviction.
    pub events: Option<Arc<dyn KeyEvents>>,
    /// Hash seed; random when `None`.
    pub seed: Option<u64>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            shards: 64,
            maxmemory: 0,
            policy: EvictionPolicy::default(),
            clock: Arc::new(SystemClock),
            events: None,
            seed: None,
        }
    }
}

/// Totals over all shards, for `INFO` and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Keys stored (including expired keys not yet reclaimed, as Redis counts them).
    pub keys: usize,
    /// Keys with an expiry.
    pub volatile_keys: usize,
    /// Average remaining TTL of keys with an expiry, in ms (0 if none).
    pub avg_ttl_ms: u64,
    /// `used_memory`: the sum of every entry's charge.
    pub used_memory: usize,
    /// Bytes the arenas hold from the allocator: pages (in use, or spare in the store's page
    /// pool) and large blocks. What the store's entries occupy, short of the allocator's own
    /// overhead and the index.
    pub arena_bytes: usize,
    /// Bytes of arena blocks holding entries (small blocks and large blocks' capacity).
    pub arena_live_bytes: usize,
    /// Bytes of arena pages sitting in free lists (reusable, but holding no entry). The rest of
    /// `arena_bytes` is the unused end of the pages being filled and the spare pages.
    pub arena_free_bytes: usize,
    /// Bytes of the indexes.
    pub index_bytes: usize,
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Keys removed by expiry.
    pub expired: u64,
    /// Keys removed by eviction.
    pub evicted: u64,
    /// Hash fields removed because their TTL passed.
    pub expired_fields: u64,
}

/// A shard with its lock, and numbers published beside it for readers that take no lock:
/// where its index lives (for prefetching) and its size (for choosing where to evict).
/// Aligned so that neighbouring shards never share a cache line.
#[repr(align(128))]
struct ShardSlot {
    shard: Mutex<Shard>,
    index_base: AtomicPtr<u8>,
    index_chunks: AtomicUsize,
    used: AtomicUsize,
    volatile_keys: AtomicUsize,
}

/// The whole keyspace.
pub struct Store {
    shards: Box<[ShardSlot]>,
    shard_shift: u32,
    hasher: KeyHasher,
    clock: Arc<dyn Clock>,
    lru_clock: AtomicU32,
    budget: Arc<MemoryBudget>,
    expire_next: AtomicUsize,
    maintain_next: AtomicUsize,
    pool: Arc<PagePool>,
    /// `hash-max-listpack-entries`.
    hash_max_entries: AtomicUsize,
    /// `hash-max-listpack-value`.
    hash_max_value: AtomicUsize,
    /// Read by operations that hold one shard while waiting for another, written by
    /// exclusive sections: see `exclusive`'s description.
    order: RwLock<()>,
    /// Told how long slow background work took ([`Store::set_latency_sink`]).
    latency: RwLock<Option<Arc<dyn LatencySink>>>,
}

/// Empty arena pages the store keeps for any shard to take (512 KiB): enough that steady
/// eviction, which empties a page in one shard while another needs one, seldom goes through
/// the allocator, and little against any `maxmemory`.
const SPARE_PAGES: usize = 8;

impl Store {
    /// A store set up by `config`.
    pub fn new(config: StoreConfig) -> Store {
        let count = config.shards.max(1).next_power_of_two();
        let seed = config.seed.unwrap_or_else(random_seed);
        let hasher = KeyHasher::with_seed(seed);
        let pool = Arc::new(PagePool::new(SPARE_PAGES));
        let budget = Arc::new(MemoryBudget {
            used: AtomicUsize::new(0),
            maxmemory: AtomicUsize::new(config.maxmemory),
            policy: AtomicU8::new(config.policy.to_u8()),
            headroom: count * PAGE_SIZE / 2,
            lfu_log_factor: AtomicU32::new(DEFAULT_LFU_LOG_FACTOR),
            lfu_decay_time: AtomicU32::new(DEFAULT_LFU_DECAY_TIME),
            lfu_minutes: AtomicU32::new(0),
        });
        let shards = (0..count)
            .map(|i| {
                let shard_seed = seed.rotate_left(i as u32 + 1) ^ 0x9E37_79B9_7F4A_7C15;
                ShardSlot {
                    index_base: AtomicPtr::new(std::ptr::null_mut()),
                    index_chunks: AtomicUsize::new(0),
                    used: AtomicUsize::new(0),
                    volatile_keys: AtomicUsize::new(0),
                    shard: Mutex::new(Shard::new(
                        hasher.clone(),
                        shard_seed,
                        config.events.clone(),
                        pool.clone(),
                        budget.clone(),
                    )),
                }
            })
            .collect();
        let store = Store {
            shards,
            shard_shift: 64 - count.trailing_zeros(),
            hasher,
            clock: config.clock,
            lru_clock: AtomicU32::new(0),
            budget,
            expire_next: AtomicUsize::new(0),
            maintain_next: AtomicUsize::new(0),
            pool,
            hash_max_entries: AtomicUsize::new(hashes::DEFAULT_MAX_PACKED_ENTRIES),
            hash_max_value: AtomicUsize::new(hashes::DEFAULT_MAX_PACKED_VALUE),
            order: RwLock::new(()),
            latency: RwLock::new(None),
        };
        store.refresh_clock();
        store
    }

    /// Where the active expiry cycle and evictions report how long they took, when that
    /// reaches the sink's threshold (none: nothing is timed).
    pub fn set_latency_sink(&self, sink: Option<Arc<dyn LatencySink>>) {
        *self.latency.write() = sink;
    }

    /// The latency sink, if any (an `Arc` clone: no lock is held while it is used).
    fn latency_sink(&self) -> Option<Arc<dyn LatencySink>> {
        self.latency.read().clone()
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Current time in Unix ms, from the store's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Re-reads the clock for the access-time stamps (second resolution, like Redis's LRU
    /// clock). The server calls it about every 100 ms.
    pub fn refresh_clock(&self) {
        let now = self.clock.now_ms();
        let seconds = (now / 1000) as u32 & CLOCK_MASK;
        self.lru_clock.store(seconds, Relaxed);
        self.budget
            .lfu_minutes
            .store(crate::lfu::minutes(now), Relaxed);
    }

    /// `lfu-log-factor` and `lfu-decay-time` (minutes; 0: counters never decay), as Redis's:
    /// how slowly the LFU counters grow with accesses and how fast they decay without.
    pub fn set_lfu(&self, log_factor: u32, decay_time: u32) {
        self.budget.lfu_log_factor.store(log_factor, Relaxed);
        self.budget.lfu_decay_time.store(decay_time, Relaxed);
    }

    /// `lfu-log-factor` and `lfu-decay-time`.
    pub fn lfu(&self) -> (u32, u32) {
        let lfu = self.budget.lfu();
        (lfu.log_factor, lfu.decay_time)
    }

    /// The memory limit (0: none).
    pub fn maxmemory(&self) -> usize {
        self.budget.maxmemory.load(Relaxed)
    }

    /// Changes the memory limit; takes effect at the next write.
    pub fn set_maxmemory(&self, bytes: usize) {
        self.budget.maxmemory.store(bytes, Relaxed);
    }

    /// The eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::from_u8(self.budget.policy.load(Relaxed))
    }

    /// Changes the eviction policy.
    pub fn set_policy(&self, policy: EvictionPolicy) {
        self.budget.policy.store(policy.to_u8(), Relaxed);
    }

    /// `used_memory`: bytes charged to entries (blob plus index share each).
    pub fn used_memory(&self) -> usize {
        self.budget.used.load(Relaxed)
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash(key)
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        if self.shard_shift == 64 {
            0
        } else {
            (hash >> self.shard_shift) as usize
        }
    }

    /// What an access stamps: the access clock, and under an LFU policy its settings and
    /// minute (the access then counts in the key's LFU counter).
    #[inline]
    fn clock_now(&self) -> Stamp {
        let policy = self.policy();
        Stamp {
            seconds: self.lru_clock.load(Relaxed),
            lfu: policy.is_lfu().then(|| self.budget.lfu()),
        }
    }

    /// Runs `f` on the shard of `key` and keeps `used_memory` in step with what it changed.
    #[inline]
    fn with_shard<R>(&self, key: &[u8], f: impl FnOnce(&mut Shard, u64, &mut Now) -> R) -> R {
        let hash = self.hash(key);
        let index = self.shard_index(hash);
        let mut shard = self.lock(index);
        let before = shard.used;
        let mut now = Now::new(&*self.clock);
        let result = f(&mut shard, hash, &mut now);
        self.settle(index, before, &shard);
        result
    }

    /// After work on shard `index` (still locked): folds its change of `used` into the total
    /// and republishes where its index is (the work may have reallocated it) and the counters
    /// eviction chooses by.
    #[inline]
    fn settle(&self, index: usize, before: usize, shard: &Shard) {
        self.account(before, shard.used);
        let (base, chunks) = shard.table_location();
        let slot = &self.shards[index];
        slot.index_base.store(base.cast_mut(), Relaxed);
        slot.index_chunks.store(chunks, Relaxed);
        slot.used.store(shard.used, Relaxed);
        slot.volatile_keys.store(shard.volatile(), Relaxed);
    }

    /// Hints the CPU to fetch the index chunk a lookup of `key` will read first. Takes no lock,
    /// so a server can issue it for the next pipelined command while it runs the current one.
    #[inline]
    pub fn prefetch(&self, key: &[u8]) {
        let hash = self.hash(key);
        let slot = &self.shards[self.shard_index(hash)];
        let location = (
            slot.index_base.load(Relaxed).cast_const(),
            slot.index_chunks.load(Relaxed),
        );
        if location.1 > 0 {
            crate::arena::prefetch(crate::table::chunk_address(location, hash));
        }
    }

    #[inline]
    fn account(&self, before: usize, after: usize) {
        if after > before {
            self.budget.used.fetch_add(after - before, Relaxed);
        } else if before > after {
            self.budget.used.fetch_sub(before - after, Relaxed);
        }
    }

    /// Number of keys (`DBSIZE`).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).len()).sum()
    }

    /// Whether the store holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deletes every key (`FLUSHALL`, `FLUSHDB`), atomically: every shard is locked at once,
    /// so no write lands between the shards being cleared, and the journal hears one flush.
    pub fn clear(&self) {
        let _order = self.multi_shard();
        let mut guards: Vec<_> = (0..self.shards.len()).map(|i| self.lock(i)).collect();
        if let Some(journal) = guards[0].journal().cloned() {
            journal.flush(&|key| {
                let hash = self.hash(key);
                guards[self.shard_index(hash)].find(hash, key).is_some()
            });
        }
        for (index, shard) in guards.iter_mut().enumerate() {
            let before = shard.used;
            shard.clear();
            self.settle(index, before, shard);
        }
    }

    /// Totals over all shards.
    pub fn stats(&self) -> StoreStats {
        let now = u128::from(self.clock.now_ms());
        let mut stats = StoreStats::default();
        let mut expiry_sum = 0u128;
        for index in 0..self.shards.len() {
            let shard = self.lock(index);
            let ShardStats {
                hits,
                misses,
                expired,
                evicted,
                expired_fields,
            } = shard.stats;
            stats.keys += shard.len();
            stats.volatile_keys += shard.volatile();
            expiry_sum += shard.expiry_sum();
            stats.arena_bytes += shard.arena().reserved_bytes();
            stats.arena_live_bytes += shard.arena().live_bytes();
            stats.arena_free_bytes += shard.arena().free_bytes();
            stats.index_bytes += shard.table_bytes();
            stats.hits += hits;
            stats.misses += misses;
            stats.expired += expired;
            stats.evicted += evicted;
            stats.expired_fields += expired_fields;
        }
        if stats.volatile_keys > 0 {
            let mean = expiry_sum / stats.volatile_keys as u128;
            stats.avg_ttl_ms = mean.saturating_sub(now) as u64;
        }
        stats.arena_bytes += self.pool.spare() * PAGE_SIZE;
        stats.used_memory = self.used_memory();
        stats
    }

    /// Zeroes the hit, miss, expiry and eviction counters (`CONFIG RESETSTAT`).
    pub fn reset_stats(&self) {
        for index in 0..self.shards.len() {
            self.lock(index).stats = ShardStats::default();
        }
    }

    /// Locks the shards of `keys`, in shard order.
    fn lock_keys<'k>(&self, keys: impl Iterator<Item = &'k [u8]>) -> Locks<'_> {
        let mut indices: Vec<usize> = keys.map(|k| self.shard_index(self.hash(k))).collect();
        indices.sort_unstable();
        indices.dedup();
        // One shard waits for no other: no need to keep sections out.
        let order = if indices.len() > 1 {
            self.multi_shard()
        } else {
            None
        };
        let guards = indices
            .iter()
            .map(|&i| {
                let guard = self.lock(i);
                let used = guard.used;
                (i, guard, used)
            })
            .collect();
        Locks {
            guards,
            _order: order,
        }
    }

    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut used = 0;
        for index in 0..self.shards.len() {
            let shard = self.lock(index);
            shard.check_invariants();
            used += shard.used;
        }
        assert_eq!(
            used,
            self.used_memory(),
            "global used_memory drifted from the shards'"
        );
    }

    #[cfg(test)]
    pub(crate) fn lru_keys(&self) -> Vec<Vec<u8>> {
        let shard = self.lock(0);
        shard
            .lru_order()
            .map(|r| shard.blob(r).key().to_vec())
            .collect()
    }
}

/// Several shards locked at once, in index order, with their `used` at locking time.
struct Locks<'a> {
    guards: Vec<(usize, ShardGuard<'a>, usize)>,
    /// Keeps exclusive sections out while several shards are held (dropped after them).
    _order: Option<RwLockReadGuard<'a, ()>>,
}

impl Locks<'_> {
    /// Where the locked shard of `key` is among the guards, and the key's hash.
    fn position(&self, store: &Store, key: &[u8]) -> (usize, u64) {
        let hash = store.hash(key);
        let index = store.shard_index(hash);
        let at = self
            .guards
            .binary_search_by_key(&index, |(i, _, _)| *i)
            .expect("the key's shard is locked");
        (at, hash)
    }

    /// The locked shard of `key`, and the key's hash.
    fn shard_for(&mut self, store: &Store, key: &[u8]) -> (&mut Shard, u64) {
        let (at, hash) = self.position(store, key);
        (&mut self.guards[at].1, hash)
    }

    /// The locked shard of `key`, to read.
    fn shard_of(&self, store: &Store, key: &[u8]) -> &Shard {
        &self.guards[self.position(store, key).0].1
    }

    /// Folds every locked shard's change of `used` into the store's total.
    fn settle(&mut self, store: &Store) {
        for (index, shard, before) in &mut self.guards {
            store.settle(*index, *before, shard);
            *before = shard.used;
        }
    }
}
