//! The keyspace: shards behind locks, the operations commands need, memory accounting and
//! eviction, and the background work (active expiry, compaction).
//!
//! Every operation takes `&self` and locks only the shards it touches, in shard order when it
//! touches several, so multi-key commands (`MSET`, `MGET`, `DEL`, `RENAME`...) are atomic.
//! Values are handed to closures while the shard is locked, so a reply can copy them straight
//! into an output buffer with no intermediate allocation.

use std::sync::Arc;
use std::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::arena::{ArenaFull, Ref};
use crate::clock::{Clock, SystemClock};
use crate::entry::{Blob, CLOCK_MASK, Form};
use crate::hash::{KeyHasher, random_seed};
use crate::policy::EvictionPolicy;
use crate::shard::{Now, Shard, ShardStats, charge};
use crate::table::END;
use crate::{Journal, KeyEvents, StoreError};

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

/// Which existing state a `SET` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// Always write.
    #[default]
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// What a write does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlUpdate {
    /// Remove any expiry (a plain `SET`).
    #[default]
    Clear,
    /// Keep the current expiry (`KEEPTTL`, and every in-place update).
    Keep,
    /// Expire at this Unix time in ms; a time not after now deletes the key instead.
    At(i64),
}

/// Options of a `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// Required existing state.
    pub condition: SetCondition,
    /// Expiry to set.
    pub ttl: TtlUpdate,
}

/// The `NX`/`XX`/`GT`/`LT` conditions of `EXPIRE` and friends (Redis 7 semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later than the current one (no expiry counts as infinite).
    pub gt: bool,
    /// Only if the new expiry is earlier than the current one (no expiry counts as infinite).
    pub lt: bool,
}

/// What an `EXPIRE` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireOutcome {
    /// The key does not exist.
    NoKey,
    /// A condition was not met; nothing changed.
    NotApplied,
    /// The expiry was set.
    Applied,
    /// The time was not in the future, so the key was deleted.
    Deleted,
}

/// The expiry state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// No such key.
    NoKey,
    /// The key never expires.
    Persistent,
    /// The key expires at this Unix time in ms.
    ExpiresAt(u64),
}

/// How Redis would encode a string value (`OBJECT ENCODING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A canonical 64-bit integer of at most 20 characters.
    Int,
    /// A string of at most 44 bytes never modified in place.
    Embstr,
    /// Any other string.
    Raw,
}

impl Encoding {
    /// Redis's name for the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Int => "int",
            Encoding::Embstr => "embstr",
            Encoding::Raw => "raw",
        }
    }
}

/// What `OBJECT` reports about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The encoding Redis would use.
    pub encoding: Encoding,
    /// Seconds since the key was last read or written.
    pub idle_seconds: u64,
}

/// What a `RENAME` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    /// The source key does not exist.
    NoSuchKey,
    /// `RENAMENX` found the destination taken; nothing changed.
    DestinationExists,
    /// The key was renamed.
    Renamed,
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
    /// Bytes the arenas hold from the allocator (pages and large blocks).
    pub arena_bytes: usize,
    /// Bytes of arena pages sitting in free lists.
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
}

/// The result of one active expiry cycle.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExpireCycle {
    /// Keys with a TTL examined.
    pub examined: usize,
    /// Keys removed.
    pub expired: usize,
    /// Whether the time budget ran out before every shard was done.
    pub out_of_time: bool,
}

/// Keys examined per step of the active expiry cycle.
const EXPIRE_BATCH: usize = 20;
/// A step that finds more than this share of expired keys is followed by another.
const STALE_PERCENT: usize = 10;

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
    used: AtomicUsize,
    maxmemory: AtomicUsize,
    policy: AtomicU8,
    expire_next: AtomicUsize,
    maintain_next: AtomicUsize,
}

impl Store {
    /// A store set up by `config`.
    pub fn new(config: StoreConfig) -> Store {
        let count = config.shards.max(1).next_power_of_two();
        let seed = config.seed.unwrap_or_else(random_seed);
        let hasher = KeyHasher::with_seed(seed);
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
            used: AtomicUsize::new(0),
            maxmemory: AtomicUsize::new(config.maxmemory),
            policy: AtomicU8::new(config.policy.to_u8()),
            expire_next: AtomicUsize::new(0),
            maintain_next: AtomicUsize::new(0),
        };
        store.refresh_clock();
        store
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Current time in Unix ms, from the store's clock.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Sets (or with `None` removes) the [`Journal`] that hears every change of the keyspace.
    ///
    /// Takes every shard's lock at once, so the switch is atomic: each change, multi-key
    /// commands included, happens either before it (not reported to the new journal) or after
    /// it (reported in full). Without a journal the write path pays one test of a field of the
    /// shard it has locked anyway.
    pub fn set_journal(&self, journal: Option<Arc<dyn Journal>>) {
        let mut guards: Vec<_> = (0..self.shards.len()).map(|i| self.lock(i)).collect();
        for shard in &mut guards {
            shard.set_journal(journal.clone());
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Re-reads the clock for the access-time stamps (second resolution, like Redis's LRU
    /// clock). The server calls it about every 100 ms.
    pub fn refresh_clock(&self) {
        let seconds = (self.clock.now_ms() / 1000) as u32 & CLOCK_MASK;
        self.lru_clock.store(seconds, Relaxed);
    }

    /// The memory limit (0: none).
    pub fn maxmemory(&self) -> usize {
        self.maxmemory.load(Relaxed)
    }

    /// Changes the memory limit; takes effect at the next write.
    pub fn set_maxmemory(&self, bytes: usize) {
        self.maxmemory.store(bytes, Relaxed);
    }

    /// The eviction policy.
    pub fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::from_u8(self.policy.load(Relaxed))
    }

    /// Changes the eviction policy.
    pub fn set_policy(&self, policy: EvictionPolicy) {
        self.policy.store(policy.to_u8(), Relaxed);
    }

    /// `used_memory`: bytes charged to entries (blob plus index share each).
    pub fn used_memory(&self) -> usize {
        self.used.load(Relaxed)
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

    #[inline]
    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index].shard.lock()
    }

    #[inline]
    fn clock_now(&self) -> u32 {
        self.lru_clock.load(Relaxed)
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
            self.used.fetch_add(after - before, Relaxed);
        } else if before > after {
            self.used.fetch_sub(before - after, Relaxed);
        }
    }

    /// Reads a key's value (`GET`): counts a hit or miss and marks the key used.
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            let (_, r) = found?;
            let result = f(shard.blob(r).value());
            shard.touch(r, clock);
            Some(result)
        })
    }

    /// Reads several keys at once, atomically (`MGET`): `f(i, value)` for each key in order.
    pub fn get_many<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        mut f: impl FnMut(usize, Option<&[u8]>),
    ) {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(keys.clone());
        let mut now = Now::new(&*self.clock);
        for (i, key) in keys.enumerate() {
            let (shard, hash) = locks.shard_for(self, key);
            let found = shard.live(hash, key, &mut now);
            shard.count_read(found.is_some());
            match found {
                Some((_, r)) => {
                    shard.touch(r, clock);
                    f(i, Some(shard.blob(r).value()));
                }
                None => f(i, None),
            }
        }
        locks.settle(self);
    }

    /// Writes a key (`SET` and its variants). `on_old` sees the previous value (`None` if
    /// absent) before anything changes, for `SET ... GET`. Returns whether the write happened.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        options: SetOptions,
        on_old: impl FnOnce(Option<&[u8]>),
    ) -> Result<bool, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let existing = shard.live(hash, key, now);
            on_old(existing.map(|(_, r)| shard.blob(r).value()));
            write_entry(shard, hash, key, value, existing, options, now, clock)
        })
    }

    /// Makes `key` hold `value` with exactly `expiry` (absolute Unix ms, `None` for none),
    /// whatever was there: what a replica does with a [`Journal::put`], or with an entry of a
    /// snapshot read by [`Store::scan_entries`]. A key whose expiry has passed (`now > expiry`)
    /// is deleted instead. Unlike a `SET` with `TtlUpdate::At`, which deletes when the time is
    /// not *after* now, an expiry of exactly now is kept: the key is alive through that
    /// millisecond on the primary, so it must be on the replica too.
    pub fn restore(&self, key: &[u8], value: &[u8], expiry: Option<u64>) -> Result<(), StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let existing = shard.live(hash, key, now);
            if expiry.is_some_and(|at| now.get() > at) {
                if let Some((slot, r)) = existing {
                    shard.remove_at(hash, slot, r, None);
                }
                return Ok(());
            }
            match existing {
                Some((slot, r)) => shard.overwrite(slot, r, value, expiry, clock)?,
                None => shard.insert(hash, key, value, expiry, clock)?,
            };
            Ok(())
        })
    }

    /// Writes several keys atomically (`MSET`; with `only_if_none_exist`, `MSETNX`). Returns
    /// whether the keys were written.
    pub fn set_many<'k>(
        &self,
        pairs: impl Iterator<Item = (&'k [u8], &'k [u8])> + Clone,
        only_if_none_exist: bool,
    ) -> Result<bool, StoreError> {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(pairs.clone().map(|(k, _)| k));
        let mut now = Now::new(&*self.clock);
        if only_if_none_exist {
            for (key, _) in pairs.clone() {
                let (shard, hash) = locks.shard_for(self, key);
                if shard.live(hash, key, &mut now).is_some() {
                    locks.settle(self);
                    return Ok(false);
                }
            }
        }
        let mut result = Ok(true);
        for (key, value) in pairs {
            let (shard, hash) = locks.shard_for(self, key);
            let existing = shard.live(hash, key, &mut now);
            let options = SetOptions::default();
            if let Err(e) = write_entry(shard, hash, key, value, existing, options, &mut now, clock)
            {
                result = Err(e);
                break;
            }
        }
        locks.settle(self);
        result
    }

    /// Read-modify-write of one value (`INCR` family): `f` gets the current value and a cleared
    /// buffer, and returns `(write, result)`; if `write`, the buffer becomes the new value,
    /// recorded as `written_as` (`Form::Text` for `INCRBYFLOAT`, whose results Redis never
    /// reports as `int`). The expiry is kept; a new key gets none.
    pub fn update<R, E>(
        &self,
        key: &[u8],
        written_as: Form,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<(bool, R), E>,
    ) -> Result<R, UpdateError<E>> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let clock = self.clock_now();
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            self.with_shard(key, |shard, hash, now| {
                let existing = shard.live(hash, key, now);
                let current = existing.map(|(_, r)| shard.blob(r).value());
                let (write, result) = f(current, scratch).map_err(UpdateError::Rejected)?;
                if write {
                    let r = match existing {
                        Some((slot, r)) => {
                            let b = shard.blob(r);
                            let expiry = b.has_ttl().then(|| b.expiry());
                            shard.overwrite(slot, r, scratch, expiry, clock)?
                        }
                        None => shard.insert(hash, key, scratch, None, clock)?,
                    };
                    shard.blob(r).set_form(written_as);
                }
                Ok(result)
            })
        })
    }

    /// Appends to a value, creating the key if needed (`APPEND`); refuses to grow it past
    /// `max_len`. Returns the new length.
    pub fn append(&self, key: &[u8], suffix: &[u8], max_len: usize) -> Result<usize, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| match shard.live(hash, key, now) {
            Some((slot, r)) => {
                let len = shard.blob(r).value().len() + suffix.len();
                if len > max_len {
                    return Err(StoreError::TooLarge);
                }
                let r = shard.append(slot, r, suffix)?;
                shard.touch(r, clock);
                Ok(len)
            }
            None => {
                if suffix.len() > max_len {
                    return Err(StoreError::TooLarge);
                }
                shard.insert(hash, key, suffix, None, clock)?;
                Ok(suffix.len())
            }
        })
    }

    /// Overwrites part of a value at `offset`, zero-padding as needed (`SETRANGE`); refuses to
    /// grow it past `max_len`. Returns the new length (0 without creating the key when it is
    /// absent and `data` is empty).
    pub fn set_range(
        &self,
        key: &[u8],
        offset: usize,
        data: &[u8],
        max_len: usize,
    ) -> Result<usize, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let existing = shard.live(hash, key, now);
            let current_len = existing.map_or(0, |(_, r)| shard.blob(r).value().len());
            if data.is_empty() {
                if let Some((_, r)) = existing {
                    shard.touch(r, clock);
                }
                return Ok(current_len);
            }
            let end = offset.checked_add(data.len()).ok_or(StoreError::TooLarge)?;
            if end > max_len {
                return Err(StoreError::TooLarge);
            }
            match existing {
                Some((_, r)) if end <= current_len => {
                    let b = shard.blob(r);
                    b.value_mut()[offset..end].copy_from_slice(data);
                    b.set_form(Form::Raw);
                    shard.touch(r, clock);
                    shard.report_put(r);
                    Ok(current_len)
                }
                Some((slot, r)) => {
                    let b = shard.blob(r);
                    let mut value = b.value().to_vec();
                    value.resize(end.max(current_len), 0);
                    value[offset..end].copy_from_slice(data);
                    let expiry = b.has_ttl().then(|| b.expiry());
                    let r = shard.overwrite(slot, r, &value, expiry, clock)?;
                    shard.blob(r).set_form(Form::Raw);
                    Ok(value.len())
                }
                None => {
                    let mut value = vec![0u8; end];
                    value[offset..].copy_from_slice(data);
                    let r = shard.insert(hash, key, &value, None, clock)?;
                    shard.blob(r).set_form(Form::Raw);
                    Ok(end)
                }
            }
        })
    }

    /// Reads and deletes a key (`GETDEL`).
    pub fn get_del<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            let (slot, r) = found?;
            let result = f(shard.blob(r).value());
            shard.remove_at(hash, slot, r, None);
            Some(result)
        })
    }

    /// Reads a key and changes its expiry (`GETEX`): `Keep` leaves it, `Clear` is `PERSIST`,
    /// `At` sets it (deleting the key if the time has passed, after the read).
    pub fn get_ex<R>(
        &self,
        key: &[u8],
        ttl: TtlUpdate,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            let Some((slot, r)) = found else {
                return Ok(None);
            };
            let result = f(shard.blob(r).value());
            shard.touch(r, clock);
            match ttl {
                TtlUpdate::Keep => {}
                TtlUpdate::Clear => {
                    shard.set_expiry(slot, r, None)?;
                }
                TtlUpdate::At(at) if at <= now.get() as i64 => shard.remove_at(hash, slot, r, None),
                TtlUpdate::At(at) => {
                    shard.set_expiry(slot, r, Some(at as u64))?;
                }
            }
            Ok(Some(result))
        })
    }

    /// Deletes keys (`DEL`, `UNLINK`) atomically; returns how many existed.
    pub fn remove_many<'k>(&self, keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone) -> usize {
        let mut locks = self.lock_keys(keys.clone());
        let mut now = Now::new(&*self.clock);
        let mut removed = 0;
        for key in keys {
            let (shard, hash) = locks.shard_for(self, key);
            if let Some((slot, r)) = shard.live(hash, key, &mut now) {
                shard.remove_at(hash, slot, r, None);
                removed += 1;
            }
        }
        locks.settle(self);
        removed
    }

    /// Deletes one key; returns whether it existed.
    pub fn remove(&self, key: &[u8]) -> bool {
        self.with_shard(key, |shard, hash, now| match shard.live(hash, key, now) {
            Some((slot, r)) => {
                shard.remove_at(hash, slot, r, None);
                true
            }
            None => false,
        })
    }

    /// Counts how many of `keys` exist (`EXISTS`; repeated keys count again). Does not mark
    /// them used.
    pub fn count_existing<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
    ) -> usize {
        self.count_keys(keys, false)
    }

    /// Marks keys used and counts how many exist (`TOUCH`).
    pub fn touch<'k>(&self, keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone) -> usize {
        self.count_keys(keys, true)
    }

    fn count_keys<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        touch: bool,
    ) -> usize {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(keys.clone());
        let mut now = Now::new(&*self.clock);
        let mut count = 0;
        for key in keys {
            let (shard, hash) = locks.shard_for(self, key);
            let found = shard.live(hash, key, &mut now);
            shard.count_read(found.is_some());
            if let Some((_, r)) = found {
                if touch {
                    shard.touch(r, clock);
                }
                count += 1;
            }
        }
        locks.settle(self);
        count
    }

    /// Sets a key's expiry to `at` (Unix ms) under Redis 7's `NX`/`XX`/`GT`/`LT` rules; a time
    /// not after now deletes the key.
    pub fn expire(
        &self,
        key: &[u8],
        at: i64,
        condition: ExpireCondition,
    ) -> Result<ExpireOutcome, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let Some((slot, r)) = shard.live(hash, key, now) else {
                return Ok(ExpireOutcome::NoKey);
            };
            let b = shard.blob(r);
            let current = b.has_ttl().then(|| b.expiry() as i64);
            let refused = (condition.nx && current.is_some())
                || (condition.xx && current.is_none())
                || (condition.gt && current.is_none_or(|c| at <= c))
                || (condition.lt && current.is_some_and(|c| at >= c));
            if refused {
                return Ok(ExpireOutcome::NotApplied);
            }
            if at <= now.get() as i64 {
                shard.remove_at(hash, slot, r, None);
                return Ok(ExpireOutcome::Deleted);
            }
            let r = shard.set_expiry(slot, r, Some(at as u64))?;
            shard.touch(r, clock);
            Ok(ExpireOutcome::Applied)
        })
    }

    /// Removes a key's expiry (`PERSIST`): `None` if the key does not exist, else whether it had one.
    pub fn persist(&self, key: &[u8]) -> Result<Option<bool>, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let Some((slot, r)) = shard.live(hash, key, now) else {
                return Ok(None);
            };
            let had = shard.blob(r).has_ttl();
            let r = shard.set_expiry(slot, r, None)?;
            shard.touch(r, clock);
            Ok(Some(had))
        })
    }

    /// A key's expiry (`TTL` family). Counts a hit or miss; does not mark the key used.
    pub fn ttl(&self, key: &[u8]) -> KeyTtl {
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            match found {
                None => KeyTtl::NoKey,
                Some((_, r)) => {
                    let b = shard.blob(r);
                    if b.has_ttl() {
                        KeyTtl::ExpiresAt(b.expiry())
                    } else {
                        KeyTtl::Persistent
                    }
                }
            }
        })
    }

    /// `OBJECT` information about a key (without marking it used).
    pub fn object_info(&self, key: &[u8]) -> Option<ObjectInfo> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            let (_, r) = found?;
            let b = shard.blob(r);
            Some(ObjectInfo {
                encoding: encoding_of(b),
                idle_seconds: u64::from(clock.wrapping_sub(b.clock()) & CLOCK_MASK),
            })
        })
    }

    /// Bytes a key is charged (`MEMORY USAGE`).
    pub fn memory_usage(&self, key: &[u8]) -> Option<usize> {
        self.with_shard(key, |shard, hash, now| {
            let (_, r) = shard.live(hash, key, now)?;
            Some(charge(shard.blob(r).shape()))
        })
    }

    /// Renames `from` to `to`, keeping the expiry; with `only_if_absent`, only if `to` does not
    /// exist (`RENAMENX`). Renaming a key to itself succeeds without change.
    pub fn rename(
        &self,
        from: &[u8],
        to: &[u8],
        only_if_absent: bool,
    ) -> Result<RenameOutcome, StoreError> {
        self.copy_or_move(
            from,
            to,
            if only_if_absent {
                Transfer::MoveIfAbsent
            } else {
                Transfer::Move
            },
        )
    }

    /// Copies `from` to `to`, keeping the expiry (`COPY`); with `replace`, over an existing `to`.
    /// Returns whether the copy happened.
    pub fn copy(&self, from: &[u8], to: &[u8], replace: bool) -> Result<bool, StoreError> {
        let transfer = if replace {
            Transfer::CopyReplace
        } else {
            Transfer::Copy
        };
        Ok(self.copy_or_move(from, to, transfer)? == RenameOutcome::Renamed)
    }

    fn copy_or_move(
        &self,
        from: &[u8],
        to: &[u8],
        transfer: Transfer,
    ) -> Result<RenameOutcome, StoreError> {
        let clock = self.clock_now();
        let mut locks = self.lock_keys([from, to].into_iter());
        let mut now = Now::new(&*self.clock);
        let result = (|| {
            let (src, src_hash) = locks.shard_for(self, from);
            let Some((src_slot, src_ref)) = src.live(src_hash, from, &mut now) else {
                return Ok(RenameOutcome::NoSuchKey);
            };
            if from == to {
                return Ok(if transfer == Transfer::Move {
                    RenameOutcome::Renamed
                } else {
                    RenameOutcome::DestinationExists
                });
            }
            let b = src.blob(src_ref);
            let value = b.value().to_vec();
            let expiry = b.has_ttl().then(|| b.expiry());
            let form = b.form();
            let moving = matches!(transfer, Transfer::Move | Transfer::MoveIfAbsent);
            let (dst, dst_hash) = locks.shard_for(self, to);
            let existing = dst.live(dst_hash, to, &mut now);
            if existing.is_some() && matches!(transfer, Transfer::MoveIfAbsent | Transfer::Copy) {
                return Ok(RenameOutcome::DestinationExists);
            }
            let r = match existing {
                Some((slot, r)) => dst.overwrite(slot, r, &value, expiry, clock)?,
                None => dst.insert(dst_hash, to, &value, expiry, clock)?,
            };
            // Redis moves (RENAME) or duplicates (COPY) the object, encoding included.
            dst.blob(r).set_form(form);
            if moving {
                // The destination write may have moved entries of the same shard, so look the
                // source up again rather than trusting its old slot.
                let (src, src_hash) = locks.shard_for(self, from);
                let (slot, r) = src.find(src_hash, from).unwrap_or((src_slot, src_ref));
                src.remove_at(src_hash, slot, r, None);
            }
            Ok(RenameOutcome::Renamed)
        })();
        locks.settle(self);
        result
    }

    /// Calls `f` with every live key (`KEYS`), shard by shard.
    pub fn for_each_key(&self, mut f: impl FnMut(&[u8])) {
        let now = self.clock.now_ms();
        for index in 0..self.shards.len() {
            let shard = self.lock(index);
            for r in shard.refs() {
                let b = shard.blob(r);
                if !b.has_ttl() || now <= b.expiry() {
                    f(b.key());
                }
            }
        }
    }

    /// One step of `SCAN`: reports about `count` live keys from `cursor` (0 to start) and
    /// returns the cursor to continue with (0 when done). A key that exists for the whole scan
    /// is reported at least once, whatever happens to the keyspace meanwhile.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8])) -> u64 {
        self.scan_live(cursor, count, |b| f(b.key()))
    }

    /// One step of a scan of entries, for streaming a snapshot (a replica's full resync) while
    /// the store keeps serving: like [`Store::scan`] (same cursors, same guarantee that a key
    /// present for the whole scan is seen at least once), but `f` gets each live key with its
    /// value and expiry (absolute Unix ms, `None` for none). Expired keys are skipped, not
    /// removed. `f` runs with the key's shard locked: copy what it needs and return.
    pub fn scan_entries(
        &self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(&[u8], &[u8], Option<u64>),
    ) -> u64 {
        self.scan_live(cursor, count, |b| {
            f(b.key(), b.value(), b.has_ttl().then(|| b.expiry()));
        })
    }

    /// The walk behind [`Store::scan`] and [`Store::scan_entries`]: `f` gets each live entry.
    fn scan_live(&self, cursor: u64, count: usize, mut f: impl FnMut(Blob)) -> u64 {
        let now = self.clock.now_ms();
        let mut index = (cursor >> 32) as usize;
        let mut position = cursor & 0xFFFF_FFFF;
        let mut reported = 0;
        while index < self.shards.len() {
            let shard = self.lock(index);
            let next = shard.scan(position, count.saturating_sub(reported).max(1), |v| {
                let b = shard.blob(Ref(v));
                if !b.has_ttl() || now <= b.expiry() {
                    f(b);
                }
                reported += 1;
            });
            drop(shard);
            if next != END {
                return ((index as u64) << 32) | next;
            }
            index += 1;
            position = 0;
            if reported >= count {
                break;
            }
        }
        if index >= self.shards.len() {
            0
        } else {
            (index as u64) << 32
        }
    }

    /// A random live key (`RANDOMKEY`), passed to `f`.
    pub fn random_key<R>(&self, mut f: impl FnMut(&[u8]) -> R) -> Option<R> {
        let start = random_seed() as usize;
        let mut now = Now::new(&*self.clock);
        for step in 0..self.shards.len() * 4 {
            let index = (start + step) % self.shards.len();
            let mut shard = self.lock(index);
            let before = shard.used;
            let Some(r) = shard.random() else {
                continue;
            };
            let b = shard.blob(r);
            if b.has_ttl() && now.get() > b.expiry() {
                let key = b.key().to_vec();
                let hash = self.hash(&key);
                shard.live(hash, &key, &mut now);
                self.settle(index, before, &shard);
                continue;
            }
            return Some(f(b.key()));
        }
        None
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
        let mut guards: Vec<_> = (0..self.shards.len()).map(|i| self.lock(i)).collect();
        for (index, shard) in guards.iter_mut().enumerate() {
            let before = shard.used;
            shard.clear();
            self.settle(index, before, shard);
        }
        if let Some(journal) = guards[0].journal() {
            journal.flush();
        }
    }

    /// Evicts keys as the policy says until `used_memory` is within `maxmemory`. Called before
    /// every command that may grow memory; `Err` means the command must be refused with `-OOM`.
    ///
    /// Each victim comes from the shard most over its fair share: the one using the most memory
    /// (for `allkeys-*`) or holding the most keys with a TTL (for `volatile-*`), read from
    /// counters published beside each lock, so choosing takes no lock. Within that shard the
    /// policy picks (its LRU tail for the LRU policies). Every shard thus keeps an equal budget
    /// and evicts its own least recently used keys, so a key read recently is never evicted
    /// because its shard happens to be small.
    pub fn make_room(&self) -> Result<(), OutOfMemory> {
        let max = self.maxmemory.load(Relaxed);
        if max == 0 || self.used.load(Relaxed) <= max {
            return Ok(());
        }
        let policy = self.policy();
        if policy == EvictionPolicy::NoEviction {
            return Err(OutOfMemory);
        }
        let mut exhausted = vec![false; self.shards.len()];
        while self.used.load(Relaxed) > max {
            let Some(index) = self.eviction_candidate(policy, &exhausted) else {
                return Err(OutOfMemory);
            };
            let mut shard = self.lock(index);
            let before = shard.used;
            if shard.evict_one(policy) {
                self.settle(index, before, &shard);
            } else {
                exhausted[index] = true;
            }
        }
        Ok(())
    }

    /// The shard to evict from next: the one with the largest share of what `policy` evicts.
    fn eviction_candidate(&self, policy: EvictionPolicy, exhausted: &[bool]) -> Option<usize> {
        let weight = |slot: &ShardSlot| {
            if policy.volatile_only() {
                slot.volatile_keys.load(Relaxed)
            } else {
                slot.used.load(Relaxed)
            }
        };
        (0..self.shards.len())
            .filter(|&i| !exhausted[i])
            .map(|i| (weight(&self.shards[i]), i))
            .filter(|&(w, _)| w > 0)
            .max()
            .map(|(_, i)| i)
    }

    /// One active expiry cycle: walks the keys with a TTL shard by shard, removing expired ones,
    /// and keeps going in a shard while more than 10% of what it meets is expired, until
    /// `budget` is spent.
    pub fn expire_cycle(&self, budget: Duration) -> ExpireCycle {
        let started = Instant::now();
        let now = self.clock.now_ms();
        let shards = self.shards.len();
        let first = self.expire_next.load(Relaxed);
        let mut cycle = ExpireCycle::default();
        for step in 0..shards {
            let index = (first + step) % shards;
            loop {
                let mut shard = self.lock(index);
                if shard.volatile() == 0 {
                    break;
                }
                let before = shard.used;
                let (examined, expired) = shard.expire_step(now, EXPIRE_BATCH);
                self.settle(index, before, &shard);
                drop(shard);
                cycle.examined += examined;
                cycle.expired += expired;
                if started.elapsed() >= budget {
                    self.expire_next.store(index, Relaxed);
                    cycle.out_of_time = true;
                    return cycle;
                }
                if examined < EXPIRE_BATCH || expired * 100 <= examined * STALE_PERCENT {
                    break;
                }
            }
        }
        self.expire_next
            .store(first.wrapping_add(1) % shards, Relaxed);
        cycle
    }

    /// Background upkeep of one shard per call, in turn: shrinks an index left mostly empty and
    /// compacts an arena whose free lists hold much memory. Returns arena pages released.
    pub fn maintain(&self) -> usize {
        let index = self.maintain_next.fetch_add(1, Relaxed) % self.shards.len();
        let mut shard = self.lock(index);
        let before = shard.used;
        shard.maybe_shrink();
        let released = shard.compact();
        self.settle(index, before, &shard);
        released
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
            } = shard.stats;
            stats.keys += shard.len();
            stats.volatile_keys += shard.volatile();
            expiry_sum += shard.expiry_sum();
            stats.arena_bytes += shard.arena().reserved_bytes();
            stats.arena_free_bytes += shard.arena().free_bytes();
            stats.index_bytes += shard.table_bytes();
            stats.hits += hits;
            stats.misses += misses;
            stats.expired += expired;
            stats.evicted += evicted;
        }
        if stats.volatile_keys > 0 {
            let mean = expiry_sum / stats.volatile_keys as u128;
            stats.avg_ttl_ms = mean.saturating_sub(now) as u64;
        }
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
        let guards = indices
            .iter()
            .map(|&i| {
                let guard = self.lock(i);
                let used = guard.used;
                (i, guard, used)
            })
            .collect();
        Locks { guards }
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

/// Writes `value` under `key` given what is there (`existing`), honouring `options`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_entry(
    shard: &mut Shard,
    hash: u64,
    key: &[u8],
    value: &[u8],
    existing: Option<(usize, Ref)>,
    options: SetOptions,
    now: &mut Now,
    clock: u32,
) -> Result<bool, StoreError> {
    let allowed = match options.condition {
        SetCondition::Always => true,
        SetCondition::IfAbsent => existing.is_none(),
        SetCondition::IfPresent => existing.is_some(),
    };
    if !allowed {
        return Ok(false);
    }
    let expiry = match options.ttl {
        TtlUpdate::Clear => None,
        TtlUpdate::Keep => existing.and_then(|(_, r)| {
            let b = shard.blob(r);
            b.has_ttl().then(|| b.expiry())
        }),
        TtlUpdate::At(at) if at <= now.get() as i64 => {
            if let Some((slot, r)) = existing {
                shard.remove_at(hash, slot, r, None);
            }
            return Ok(true);
        }
        TtlUpdate::At(at) => Some(at as u64),
    };
    match existing {
        Some((slot, r)) => shard.overwrite(slot, r, value, expiry, clock)?,
        None => shard.insert(hash, key, value, expiry, clock)?,
    };
    Ok(true)
}

fn encoding_of(b: Blob) -> Encoding {
    let value = b.value();
    match b.form() {
        // A value modified in place is a raw string in Redis, whatever it holds.
        Form::Raw => return Encoding::Raw,
        Form::Text => {
            return if value.len() <= 44 {
                Encoding::Embstr
            } else {
                Encoding::Raw
            };
        }
        Form::Auto => {}
    }
    if value.len() <= 20 && crate::is_canonical_i64(value) {
        Encoding::Int
    } else if value.len() <= 44 {
        Encoding::Embstr
    } else {
        Encoding::Raw
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Move,
    MoveIfAbsent,
    Copy,
    CopyReplace,
}

/// Several shards locked at once, in index order, with their `used` at locking time.
struct Locks<'a> {
    guards: Vec<(usize, MutexGuard<'a, Shard>, usize)>,
}

impl Locks<'_> {
    fn shard_for(&mut self, store: &Store, key: &[u8]) -> (&mut Shard, u64) {
        let hash = store.hash(key);
        let index = store.shard_index(hash);
        let at = self
            .guards
            .binary_search_by_key(&index, |(i, _, _)| *i)
            .expect("the key's shard is locked");
        (&mut self.guards[at].1, hash)
    }

    /// Folds every locked shard's change of `used` into the store's total.
    fn settle(&mut self, store: &Store) {
        for (index, shard, before) in &mut self.guards {
            store.settle(*index, *before, shard);
            *before = shard.used;
        }
    }
}

/// The store is over `maxmemory` and nothing can be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("command not allowed when used memory > 'maxmemory'.")]
pub struct OutOfMemory;

/// Why an [`Store::update`] did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError<E> {
    /// The closure refused the current value.
    #[error("update rejected")]
    Rejected(E),
    /// The store could not hold the new value.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<ArenaFull> for UpdateError<E> {
    fn from(e: ArenaFull) -> Self {
        UpdateError::Store(StoreError::from(e))
    }
}
