//! One shard of the keyspace: its index, its arena, and the lists that order its entries.
//!
//! Every entry is on the LRU list (head = most recently used). Entries with a TTL are also on
//! the volatile list, kept in the same LRU order, which `volatile-lru` evicts from and the active
//! expiry cycle walks with a cursor. Under an LFU policy an access updates the entry's counter
//! instead and leaves the lists alone (eviction samples; see [`Shard::victim`]). A shard is not
//! synchronised; the store locks it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering::Relaxed};

use crate::arena::{Arena, ArenaFull, PAGE_SIZE, PagePool, Ref, block_size};
use crate::entry::{Blob, Form, Kind, Shape};
use crate::hash::KeyHasher;
use crate::lfu::Lfu;
use crate::policy::EvictionPolicy;
use crate::table::Table;
use crate::{Journal, KeyEvents, Removal};

/// Bytes charged per entry on top of its blob: its share of the index (5 bytes a bucket at
/// 58-87% occupancy, rounded up).
pub const ENTRY_OVERHEAD: usize = 8;

/// Bytes an entry of this shape is charged in `used_memory` for its blob (a value that owns
/// heap memory is charged that too: see [`Shard::entry_charge`]).
#[inline]
pub fn charge(shape: Shape) -> usize {
    block_size(shape.len()) + ENTRY_OVERHEAD
}

/// What a rewrite of an entry tells the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Report {
    /// The entry's whole new state.
    Put,
    /// Only its expiry changed (a string reports its whole state anyway).
    Expiry,
    /// Nothing: the caller reports what changed (a hash's fields).
    Quiet,
}

/// How many volatile keys `volatile-ttl` compares per eviction (Redis's `maxmemory-samples`).
const TTL_SAMPLES: usize = 5;

/// How many keys the LFU policies sample per eviction (Redis's `maxmemory-samples`, 5 by
/// default). They join a pool of the [`LFU_POOL`] coldest candidates, as in Redis.
pub(crate) const LFU_SAMPLES: usize = 5;

/// Index slots `volatile-lfu` / `volatile-random` read to find each key with a TTL, at most,
/// before walking the volatile list instead (see [`Shard::sample_volatile`]).
const VOLATILE_PROBES: usize = 4;

/// Entries the LFU sweep visits per shard per [`Shard::lfu_sweep`] call.
pub(crate) const LFU_SWEEP_STEP: usize = 8;

/// Candidates the LFU policies keep per shard between evictions (Redis's
/// `EVPOOL_SIZE`).
const LFU_POOL: usize = 16;

/// An eviction candidate of the LFU policies: an entry, its key's hash (to check the entry is
/// still indexed before its blob is read again) and its score when sampled.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: (u8, u32),
    hash: u64,
    r: Ref,
}

/// How an LFU policy ranks an entry by its clock field, lowest evicted first: its counter
/// decayed to now, then (on a tie) the longest untouched.
fn score(lfu: Lfu, field: u32) -> (u8, u32) {
    let age = crate::lfu::elapsed(lfu.minutes, crate::lfu::last_decrement(field));
    (lfu.decayed(field), u32::MAX - age)
}

/// The time an access stamps into an entry: the access clock's seconds, and under an LFU
/// policy its settings and minute (the entry then keeps its counter in the clock's bits).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    /// The access clock (seconds, [`crate::entry::CLOCK_BITS`] wide).
    pub(crate) seconds: u32,
    /// `Some` under an LFU policy.
    pub(crate) lfu: Option<Lfu>,
}

impl Stamp {
    /// A new entry's clock field: now, or a fresh counter.
    #[inline]
    pub(crate) fn initial(self) -> u32 {
        match self.lfu {
            Some(lfu) => lfu.fresh(),
            None => self.seconds,
        }
    }
}

/// Compaction starts when a shard's pages hold more than 1/`COMPACT_AT` of their bytes in
/// no blob (free blocks, the unused end of the page being filled), and more than
/// [`COMPACT_MIN_SLACK`] ...
const COMPACT_AT: usize = 32;
/// ... and empties the sparsest pages until that is at most 1/`COMPACT_TO` of them (or
/// half of [`COMPACT_MIN_SLACK`]).
const COMPACT_TO: usize = 64;
/// Bytes of pages holding no blob that a shard may keep whatever its size: with 64 shards
/// per thread, 8 KiB each is 512 KiB per thread.
const COMPACT_MIN_SLACK: usize = PAGE_SIZE / 8;
/// A page more than 7/8 used is not emptied: moving its blobs would cost more than seven
/// bytes copied per byte won back.
fn worth_emptying(live: usize, page_size: usize) -> bool {
    live <= page_size / 8 * 7
}
/// Emptying a page must win back at least this much: when the last one did not (its blobs had
/// nowhere to go but a new page), compaction stops and starts again only once the slack has
/// grown by as much.
const COMPACT_MIN_GAIN: usize = PAGE_SIZE / 8;

/// The length of the blob at `ptr`, for the arena's page walks.
fn blob_len(ptr: *mut u8) -> usize {
    // SAFETY: the arena calls this only for blocks of its pages that are not free, which hold
    // live blobs.
    unsafe { Blob::at(ptr) }.len()
}

/// Counters a shard keeps under its lock; the store sums them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    /// Reads that found their key.
    pub hits: u64,
    /// Reads that did not.
    pub misses: u64,
    /// Keys removed because their TTL passed (on access or by the active cycle).
    pub expired: u64,
    /// Keys removed to make room under `maxmemory`.
    pub evicted: u64,
    /// Hash fields removed because their TTL passed.
    pub expired_fields: u64,
}

/// The store's memory limit and use, shared with its shards: a shard about to take a new page
/// reads it to decide whether to make room in itself first (see [`Shard::alloc`]).
pub(crate) struct MemoryBudget {
    /// `used_memory` (kept by the store as shards settle).
    pub(crate) used: AtomicUsize,
    /// `maxmemory` (0: none).
    pub(crate) maxmemory: AtomicUsize,
    /// The eviction policy, as [`EvictionPolicy::to_u8`].
    pub(crate) policy: AtomicU8,
    /// How far below `maxmemory` shards stop taking new pages: half a page per shard, what
    /// the shards' partly used pages hold on average, so that filling them reaches the limit.
    pub(crate) headroom: usize,
    /// `lfu-log-factor`.
    pub(crate) lfu_log_factor: AtomicU32,
    /// `lfu-decay-time` (minutes).
    pub(crate) lfu_decay_time: AtomicU32,
    /// The LFU minute clock ([`crate::lfu::minutes`]), refreshed with the access clock.
    pub(crate) lfu_minutes: AtomicU32,
}

impl MemoryBudget {
    /// The LFU settings and minute now (see [`crate::lfu::Lfu`]).
    pub(crate) fn lfu(&self) -> Lfu {
        Lfu {
            log_factor: self.lfu_log_factor.load(Relaxed),
            decay_time: self.lfu_decay_time.load(Relaxed),
            minutes: self.lfu_minutes.load(Relaxed),
        }
    }

    /// The policy to evict by when `used_memory` is within [`headroom`](Self::headroom) of
    /// `maxmemory` (at most an eighth of it); `None` when there is room, no limit, or no
    /// eviction.
    fn at_limit(&self) -> Option<EvictionPolicy> {
        let max = self.maxmemory.load(Relaxed);
        if max == 0 || self.used.load(Relaxed) + self.headroom.min(max / 8) < max {
            return None;
        }
        let policy = EvictionPolicy::from_u8(self.policy.load(Relaxed));
        (policy != EvictionPolicy::NoEviction).then_some(policy)
    }
}

/// The current time in ms, read from the clock at most once per operation and only if needed.
pub(crate) struct Now<'a> {
    clock: &'a dyn crate::Clock,
    ms: Option<u64>,
}

impl<'a> Now<'a> {
    pub(crate) fn new(clock: &'a dyn crate::Clock) -> Self {
        Now { clock, ms: None }
    }

    #[inline]
    pub(crate) fn get(&mut self) -> u64 {
        *self.ms.get_or_insert_with(|| self.clock.now_ms())
    }
}

pub(crate) struct Shard {
    table: Table,
    arena: Arena,
    budget: Arc<MemoryBudget>,
    hasher: KeyHasher,
    lru_head: Ref,
    lru_tail: Ref,
    vol_head: Ref,
    vol_tail: Ref,
    vol_cursor: Ref,
    /// Where `volatile-lfu` and `volatile-random` go on walking the volatile list when too few
    /// keys have a TTL to find them by sampling the index.
    vol_hand: Ref,
    volatile: usize,
    expiry_sum: u128,
    pub(crate) used: usize,
    rng: u64,
    /// Bytes of index memory freed by shrinking or clearing since the last
    /// [`Shard::take_returned_bytes`].
    index_returned: u64,
    /// Slack at which compaction last stopped for want of gain (see [`COMPACT_MIN_GAIN`]).
    compact_floor: usize,
    pub(crate) stats: ShardStats,
    events: Option<Arc<dyn KeyEvents>>,
    /// Told the resulting state of every key this shard changes (see [`Journal`]).
    journal: Option<Arc<dyn Journal>>,
    /// Entries whose value owns heap memory (hashes in a table), so that clearing and
    /// dropping the shard free it.
    owners: usize,
    /// Keys of hashes that had fields with an expiry when last written, for the active expiry
    /// cycle to visit (kept loosely: a key deleted or changed since is dropped when visited).
    pub(crate) field_expiring: std::collections::BTreeSet<Box<[u8]>>,
    /// Where the active expiry cycle goes on in [`Shard::field_expiring`].
    pub(crate) field_cursor: Option<Box<[u8]>>,
    /// Where the LFU sweep goes on (a position in hash space, as `SCAN`'s).
    lfu_cursor: u64,
    /// The LFU policies' eviction pool (see [`Shard::coldest`]).
    lfu_pool: Vec<Candidate>,
}

impl Shard {
    pub(crate) fn new(
        hasher: KeyHasher,
        seed: u64,
        events: Option<Arc<dyn KeyEvents>>,
        pool: Arc<PagePool>,
        budget: Arc<MemoryBudget>,
    ) -> Shard {
        Shard {
            table: Table::new(),
            arena: Arena::new(pool, blob_len),
            budget,
            index_returned: 0,
            compact_floor: 0,
            hasher,
            lru_head: Ref::NIL,
            lru_tail: Ref::NIL,
            vol_head: Ref::NIL,
            vol_tail: Ref::NIL,
            vol_cursor: Ref::NIL,
            vol_hand: Ref::NIL,
            volatile: 0,
            expiry_sum: 0,
            used: 0,
            rng: seed | 1,
            stats: ShardStats::default(),
            events,
            journal: None,
            owners: 0,
            field_expiring: std::collections::BTreeSet::new(),
            field_cursor: None,
            lfu_cursor: 0,
            lfu_pool: Vec::new(),
        }
    }

    /// The journal that hears this shard's changes from now on.
    pub(crate) fn set_journal(&mut self, journal: Option<Arc<dyn Journal>>) {
        self.journal = journal;
    }

    /// The journal, if one is set.
    #[inline]
    pub(crate) fn journal(&self) -> Option<&Arc<dyn Journal>> {
        self.journal.as_ref()
    }

    /// The observer of keys (and fields) that leave on their own, if one is set.
    pub(crate) fn events(&self) -> Option<&Arc<dyn KeyEvents>> {
        self.events.as_ref()
    }

    /// The keyspace's hash function (hash tables of fields use it too).
    pub(crate) fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Reports the current state of entry `r` (just written) to the journal, if one is set.
    #[inline]
    pub(crate) fn report_put(&self, r: Ref) {
        if let Some(journal) = &self.journal {
            let b = self.blob(r);
            let expiry = b.has_ttl().then(|| b.expiry());
            match b.kind() {
                Kind::String => journal.put(b.key(), b.value(), expiry),
                kind => crate::value::with_payload(kind, b.value(), |payload| {
                    journal.put_value(b.key(), kind, payload, expiry)
                }),
            }
        }
    }

    /// Reports what a rewrite of `r` changed, as `report` says.
    fn report(&self, r: Ref, report: Report) {
        match report {
            Report::Quiet => {}
            Report::Expiry if self.blob(r).kind() != Kind::String => {
                if let Some(journal) = &self.journal {
                    let b = self.blob(r);
                    journal.set_expiry(b.key(), b.has_ttl().then(|| b.expiry()));
                }
            }
            Report::Put | Report::Expiry => self.report_put(r),
        }
    }

    /// Bytes entry `b` is charged in `used_memory`: its blob and index share, and the heap
    /// memory its value owns.
    #[inline]
    pub(crate) fn entry_charge(&self, b: Blob) -> usize {
        let shape = b.shape();
        let external = if shape.kind == Kind::String {
            0
        } else {
            // SAFETY: `b` is a live entry of this shard, which is locked.
            unsafe { crate::value::external_bytes(shape.kind, b.value()) }
        };
        charge(shape) + external
    }

    /// Frees the heap memory entry `b`'s value owns (the entry is being freed or given a new
    /// value).
    fn release_value(&mut self, b: Blob) {
        let kind = b.kind();
        if kind != Kind::String && crate::value::owns_heap(kind, b.value()) {
            // SAFETY: the entry gives its value up; nothing reads it afterwards.
            unsafe { crate::value::release(kind, b.value()) };
            self.owners -= 1;
        }
    }

    /// Counts entry `b` among those owning heap memory, if its value does.
    fn adopt_value(&mut self, b: Blob) {
        let kind = b.kind();
        if kind != Kind::String && crate::value::owns_heap(kind, b.value()) {
            self.owners += 1;
        }
    }

    #[inline]
    pub(crate) fn blob(&self, r: Ref) -> Blob {
        // SAFETY: every `Ref` the shard hands around names a live blob in its arena.
        unsafe { Blob::at(self.arena.ptr(r)) }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn volatile(&self) -> usize {
        self.volatile
    }

    /// Sum of the absolute expiries of the keys with a TTL (for `avg_ttl`).
    pub(crate) fn expiry_sum(&self) -> u128 {
        self.expiry_sum
    }

    pub(crate) fn arena(&self) -> &Arena {
        &self.arena
    }

    pub(crate) fn table_bytes(&self) -> usize {
        self.table.bytes()
    }

    /// Where the index's chunks are (see [`crate::table::chunk_address`]).
    pub(crate) fn table_location(&self) -> (*const u8, usize) {
        self.table.location()
    }

    /// The slot and ref of `key`, expired or not.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<(usize, Ref)> {
        let arena = &self.arena;
        let slot = self.table.find(hash, |v| {
            // SAFETY: values in the table are refs of live blobs.
            unsafe { Blob::at(arena.ptr(Ref(v))) }.key() == key
        })?;
        Some((slot, Ref(self.table.get(slot))))
    }

    /// The slot and ref of `key` if it exists and has not expired; an expired entry is removed.
    ///
    /// The entry's LRU neighbours are prefetched: every caller goes on to touch or remove the
    /// entry, which writes them, and by then their cache misses have overlapped with other work.
    #[inline]
    pub(crate) fn live(&mut self, hash: u64, key: &[u8], now: &mut Now) -> Option<(usize, Ref)> {
        let (slot, r) = self.find(hash, key)?;
        let b = self.blob(r);
        self.prefetch(b.prev());
        self.prefetch(b.next());
        if b.has_ttl() && now.get() > b.expiry() {
            self.remove_at(hash, slot, r, Some(Removal::Expired));
            return None;
        }
        Some((slot, r))
    }

    /// Hints the CPU to fetch the first cache line of an entry's blob.
    #[inline]
    fn prefetch(&self, r: Ref) {
        if !r.is_nil() {
            crate::arena::prefetch(self.arena.ptr(r));
        }
    }

    /// Records a read that found its key (`hit`) or not, as Redis's keyspace_hits/misses.
    #[inline]
    pub(crate) fn count_read(&mut self, hit: bool) {
        if hit {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
    }

    /// Marks an entry as just used: moves it to the head of its lists and stamps its clock, or
    /// under an LFU policy counts the access in its counter (Redis's `updateLFU`), leaving
    /// the lists as they are.
    #[inline]
    pub(crate) fn touch(&mut self, r: Ref, stamp: Stamp) {
        let b = self.blob(r);
        if let Some(lfu) = stamp.lfu {
            let random = (self.next_random() >> 32) as u32;
            b.set_clock(lfu.accessed(b.clock(), random));
            return;
        }
        b.set_clock(stamp.seconds);
        if self.lru_head != r {
            self.lru_unlink(r);
            self.lru_push_front(r);
        }
        if b.has_ttl() && self.vol_head != r {
            self.vol_unlink(r);
            self.vol_push_front(r);
        }
    }

    /// Adds a new string entry (the key must be absent) at the head of the LRU list.
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        expiry: Option<u64>,
        clock: Stamp,
    ) -> Result<Ref, ArenaFull> {
        self.insert_kind(hash, key, Kind::String, value, expiry, clock, Report::Put)
    }

    /// Adds a new entry of `kind` (the key must be absent) at the head of the LRU list, and
    /// reports it as `report` says (`Put` or `Quiet`). A value that owns heap memory is owned
    /// by the entry from now on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn insert_kind(
        &mut self,
        hash: u64,
        key: &[u8],
        kind: Kind,
        value: &[u8],
        expiry: Option<u64>,
        clock: Stamp,
        report: Report,
    ) -> Result<Ref, ArenaFull> {
        let shape = Shape {
            klen: key.len(),
            vlen: value.len(),
            ttl: expiry.is_some(),
            kind,
        };
        let r = self.alloc(shape.len(), Ref::NIL)?;
        let b = self.blob(r);
        b.init(shape, key, value, clock.initial());
        self.lru_push_front(r);
        if let Some(at) = expiry {
            b.set_expiry(at);
            self.vol_push_front(r);
            self.volatile += 1;
            self.expiry_sum += u128::from(at);
        }
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table.insert(hash, r.0, |v| {
            // SAFETY: values in the table are refs of live blobs.
            hasher.hash(unsafe { Blob::at(arena.ptr(Ref(v))) }.key())
        });
        self.adopt_value(b);
        self.used += self.entry_charge(b);
        self.report(r, report);
        if let Some(events) = &self.events {
            events.on_added(key);
        }
        Ok(r)
    }

    /// Gives the entry in `slot` a new value and expiry (`None`: no TTL) and marks it used.
    /// Returns the entry's ref, which changes if the blob had to move.
    pub(crate) fn overwrite(
        &mut self,
        slot: usize,
        r: Ref,
        value: &[u8],
        expiry: Option<u64>,
        clock: Stamp,
    ) -> Result<Ref, ArenaFull> {
        let r = self.rewrite(slot, r, Some((Kind::String, value)), expiry, Report::Put)?;
        self.blob(r).set_form(Form::Auto);
        self.touch(r, clock);
        Ok(r)
    }

    /// Changes only the expiry of the entry in `slot`, keeping its place in the LRU order.
    /// Setting the expiry it already has changes nothing (and reports nothing).
    pub(crate) fn set_expiry(
        &mut self,
        slot: usize,
        r: Ref,
        expiry: Option<u64>,
    ) -> Result<Ref, ArenaFull> {
        let b = self.blob(r);
        if b.has_ttl().then(|| b.expiry()) == expiry {
            return Ok(r);
        }
        self.rewrite(slot, r, None, expiry, Report::Expiry)
    }

    /// Rewrites an entry with `value` (a new kind and value, or its current ones) and `expiry`,
    /// in place when the blob keeps its size class and layout, else in a new blob that takes
    /// over the old one's place in every list and in the index. Reports the result to the
    /// journal as `report` says. A new value replaces the old one whole: heap memory the old
    /// one owned is freed, and heap memory the new one points to is the entry's from now on.
    pub(crate) fn rewrite(
        &mut self,
        slot: usize,
        r: Ref,
        value: Option<(Kind, &[u8])>,
        expiry: Option<u64>,
        report: Report,
    ) -> Result<Ref, ArenaFull> {
        let old = self.blob(r);
        let old_shape = old.shape();
        let old_charge = self.entry_charge(old);
        let old_expiry = old.has_ttl().then(|| old.expiry());
        let new_shape = Shape {
            klen: old_shape.klen,
            vlen: value.map_or(old_shape.vlen, |(_, v)| v.len()),
            ttl: expiry.is_some(),
            kind: value.map_or(old_shape.kind, |(k, _)| k),
        };
        // Allocate first (it may fail, or evict): the old value stays whole until then.
        let in_place = new_shape.ttl == old_shape.ttl
            && new_shape.kind == old_shape.kind
            && new_shape.is_wide() == old_shape.is_wide()
            && self
                .arena
                .resize_in_place(r, old_shape.len(), new_shape.len());
        let fresh = if in_place {
            None
        } else {
            Some(self.alloc(new_shape.len(), r)?)
        };
        if value.is_some() {
            self.release_value(old);
        }
        let r = if let Some(fresh) = fresh {
            self.move_rewritten(slot, r, fresh, new_shape, value, expiry)
        } else {
            let b = self.blob(r);
            if let Some((_, value)) = value {
                b.set_vlen(value.len());
                b.value_mut().copy_from_slice(value);
            }
            if let (Some(at), Some(old_at)) = (expiry, old_expiry) {
                self.expiry_sum = self.expiry_sum - u128::from(old_at) + u128::from(at);
                b.set_expiry(at);
            }
            r
        };
        let b = self.blob(r);
        if value.is_some() {
            self.adopt_value(b);
        }
        self.used = self.used - old_charge + self.entry_charge(b);
        self.report(r, report);
        Ok(r)
    }

    /// The part of [`Shard::rewrite`] that moves the entry `r` (in `slot`) into the new blob
    /// `fresh`: writes it, puts it in `r`'s place in every list and in the index, frees `r`.
    fn move_rewritten(
        &mut self,
        slot: usize,
        r: Ref,
        fresh: Ref,
        new_shape: Shape,
        value: Option<(Kind, &[u8])>,
        expiry: Option<u64>,
    ) -> Ref {
        let old = self.blob(r);
        let old_expiry = old.has_ttl().then(|| old.expiry());
        let b = self.blob(fresh);
        b.init(
            new_shape,
            old.key(),
            value.map_or(old.value(), |(_, v)| v),
            old.clock(),
        );
        b.set_form(old.form());
        self.lru_replace(r, fresh);
        if let Some(old_at) = old_expiry {
            self.vol_unlink(r);
            self.volatile -= 1;
            self.expiry_sum -= u128::from(old_at);
        }
        if let Some(at) = expiry {
            b.set_expiry(at);
            self.vol_push_front(fresh);
            self.volatile += 1;
            self.expiry_sum += u128::from(at);
        }
        self.table.set(slot, fresh.0);
        self.arena.free(r, old.len());
        fresh
    }

    /// Grows a value by appending `suffix`, in place when possible (large values grow with
    /// amortised doubling). Returns the entry's (possibly new) ref.
    pub(crate) fn append(&mut self, slot: usize, r: Ref, suffix: &[u8]) -> Result<Ref, ArenaFull> {
        let start = self.blob(r).value().len();
        let r = self.lengthen(slot, r, start + suffix.len())?;
        let b = self.blob(r);
        b.value_mut()[start..].copy_from_slice(suffix);
        b.set_form(Form::Raw);
        self.report_put(r);
        Ok(r)
    }

    /// Pads the value of the entry in `slot` with zero bytes up to `vlen` (at least its
    /// length), in place when possible (large values grow with amortised doubling), keeping
    /// its expiry and form. Reports nothing: the caller finishes its change and reports that.
    /// Returns the entry's (possibly new) ref.
    pub(crate) fn lengthen(&mut self, slot: usize, r: Ref, vlen: usize) -> Result<Ref, ArenaFull> {
        let old = self.blob(r);
        let old_shape = old.shape();
        debug_assert!(vlen >= old_shape.vlen);
        let new_shape = Shape { vlen, ..old_shape };
        debug_assert!(old_shape.kind == Kind::String);
        if new_shape.is_wide() == old_shape.is_wide()
            && self
                .arena
                .resize_in_place(r, old_shape.len(), new_shape.len())
        {
            let b = self.blob(r);
            b.set_vlen(vlen);
            b.value_mut()[old_shape.vlen..].fill(0);
            self.used = self.used - charge(old_shape) + charge(new_shape);
            return Ok(r);
        }
        let mut value = Vec::with_capacity(vlen);
        value.extend_from_slice(old.value());
        value.resize(vlen, 0);
        let expiry = old.has_ttl().then(|| old.expiry());
        self.rewrite(slot, r, Some((Kind::String, &value)), expiry, Report::Quiet)
    }

    /// Removes the entry in `slot` (its key hashes to `hash`) and reports the delete to the
    /// journal. `cause` is set for expirations and evictions, which are counted and reported
    /// to the [`KeyEvents`] observer.
    pub(crate) fn remove_at(&mut self, hash: u64, slot: usize, r: Ref, cause: Option<Removal>) {
        let b = self.blob(r);
        if let Some(journal) = &self.journal {
            journal.delete(b.key());
        }
        if let Some(cause) = cause {
            match cause {
                Removal::Expired => self.stats.expired += 1,
                Removal::Evicted => self.stats.evicted += 1,
            }
            if let Some(events) = &self.events {
                events.on_removed(b.key(), cause);
            }
        }
        self.lru_unlink(r);
        if b.has_ttl() {
            self.vol_unlink(r);
            self.volatile -= 1;
            self.expiry_sum -= u128::from(b.expiry());
        }
        self.table.erase(slot, hash);
        self.used -= self.entry_charge(b);
        self.release_value(b);
        self.arena.free(r, b.len());
    }

    /// Removes the entry `r` (found by a list walk rather than by key).
    fn remove_ref(&mut self, r: Ref, cause: Option<Removal>) {
        let (hash, slot) = self.slot_of(r);
        self.remove_at(hash, slot, r, cause);
    }

    /// The hash and index slot of a listed entry.
    fn slot_of(&self, r: Ref) -> (u64, usize) {
        let hash = self.hasher.hash(self.blob(r).key());
        let slot = self
            .table
            .find(hash, |v| v == r.0)
            .expect("every listed entry is indexed");
        (hash, slot)
    }

    /// Allocates a blob of `len` bytes. At the memory limit, a shard that would have to take a
    /// new page for it evicts its own next victims by policy first (never `keep`, the entry
    /// being rewritten), as long as each one frees a block that fits, or lies in the one page
    /// these evictions are emptying (entries written one after another share a page, and go
    /// one after another); once a page empties, the new page is that one, back from the pool.
    /// So shards do not grow at the limit, instead of every shard ending up with a page it
    /// barely uses; a victim elsewhere whose block would not fit is left alone, and the shard
    /// takes a page.
    fn alloc(&mut self, len: usize, keep: Ref) -> Result<Ref, ArenaFull> {
        if let Some(r) = self.arena.alloc_in_place(len) {
            return Ok(r);
        }
        // No free block fits and the page being filled has no room (or the block is large).
        let mut near_limit = false;
        if self.arena.needs_page(len)
            && let Some(policy) = self.budget.at_limit()
        {
            near_limit = true;
            let pages = self.arena.pages();
            let mut emptying = None;
            while self.arena.needs_page(len) && self.arena.pages() == pages {
                let victim = self.victim(policy, keep);
                if victim.is_nil() || victim == keep {
                    break;
                }
                if !self
                    .arena
                    .freeing_serves(victim, self.blob(victim).len(), len)
                {
                    let page = self.arena.page_of(victim);
                    if page.is_none() || emptying.is_some_and(|p| Some(p) != page) {
                        break;
                    }
                    emptying = page;
                }
                self.remove_ref(victim, Some(Removal::Evicted));
            }
        }
        if near_limit {
            // What the evictions freed may fit now.
            self.arena.alloc(len, near_limit)
        } else {
            self.arena.alloc_new(len, false)
        }
    }

    /// The entry `policy` evicts next, if any ([`Shard::evict`] removes it).
    pub(crate) fn eviction_victim(&mut self, policy: EvictionPolicy) -> Option<Ref> {
        let victim = self.victim(policy, Ref::NIL);
        (!victim.is_nil()).then_some(victim)
    }

    /// Removes `victim` (from [`Shard::eviction_victim`]) as evicted.
    pub(crate) fn evict(&mut self, victim: Ref) {
        self.remove_ref(victim, Some(Removal::Evicted));
    }

    /// The entry `policy` would evict next (NIL if none). The LRU policies name their list's
    /// tail (which may be `keep`: the caller checks); the sampling ones (LFU, random) never
    /// pick `keep`.
    ///
    /// LFU: of [`LFU_SAMPLES`] keys, the one with the lowest counter (decayed as `OBJECT FREQ`
    /// reads it), the least recently touched of those on a tie. For `allkeys-lfu` they are
    /// consecutive entries of the index from a random slot: the index is in hash order, so
    /// they are a random sample, read from one or two chunks.
    fn victim(&mut self, policy: EvictionPolicy, keep: Ref) -> Ref {
        match policy {
            EvictionPolicy::AllKeysLru => self.lru_tail,
            EvictionPolicy::VolatileLru => self.vol_tail,
            EvictionPolicy::AllKeysRandom => {
                let seed = self.next_random();
                self.table.random(seed).map_or(Ref::NIL, Ref)
            }
            EvictionPolicy::VolatileRandom => {
                let mut sample = [Ref::NIL; 1];
                self.sample_volatile(&mut sample, keep);
                sample[0]
            }
            EvictionPolicy::AllKeysLfu => self.coldest(false, keep),
            EvictionPolicy::VolatileLfu => self.coldest(true, keep),
            EvictionPolicy::VolatileTtl => self.soonest_expiring(),
            EvictionPolicy::NoEviction => Ref::NIL,
        }
    }

    /// The LFU victim (with a TTL if `volatile`; never `keep`), Redis's way: sample
    /// [`LFU_SAMPLES`] keys (the whole pool's worth when the pool is short, as after a switch
    /// of policy), add them to the shard's pool of the coldest candidates seen, and take the
    /// coldest candidate still there, re-scored now (one that got warmer since goes back in
    /// the pool with its new score). NIL when the shard has nothing to evict.
    fn coldest(&mut self, volatile: bool, keep: Ref) -> Ref {
        let lfu = self.budget.lfu();
        let want = if self.lfu_pool.len() < LFU_SAMPLES {
            LFU_POOL
        } else {
            LFU_SAMPLES
        };
        let mut sample = [Ref::NIL; LFU_POOL];
        let n = if volatile {
            self.sample_volatile(&mut sample[..want], keep)
        } else {
            let seed = self.next_random();
            let mut n = 0;
            self.table.sample(seed, want + 1, |v| {
                if n < want && v != keep.0 {
                    sample[n] = Ref(v);
                    n += 1;
                }
            });
            n
        };
        // The blobs are scattered: ask for them all before reading any, so that their cache
        // misses overlap.
        for &r in &sample[..n] {
            self.prefetch(r);
        }
        for &r in &sample[..n] {
            let b = self.blob(r);
            let candidate = Candidate {
                score: score(lfu, b.clock()),
                hash: self.hasher.hash(b.key()),
                r,
            };
            self.offer(candidate);
        }
        let mut rescored = 0;
        while !self.lfu_pool.is_empty() {
            let c = self.lfu_pool.remove(0);
            // Still that entry? (It may have been deleted, moved by compaction, or the pool
            // may hold keys of another policy's sample.)
            if c.r == keep || self.table.find(c.hash, |v| v == c.r.0).is_none() {
                continue;
            }
            let b = self.blob(c.r);
            if volatile && !b.has_ttl() {
                continue;
            }
            let now = score(lfu, b.clock());
            if now > c.score && rescored < LFU_POOL {
                rescored += 1;
                self.offer(Candidate { score: now, ..c });
                continue;
            }
            return c.r;
        }
        Ref::NIL
    }

    /// Adds a candidate to the LFU pool (kept coldest first, at most [`LFU_POOL`] long, each
    /// entry once).
    fn offer(&mut self, c: Candidate) {
        if self.lfu_pool.iter().any(|p| p.r == c.r) {
            return;
        }
        let at = self.lfu_pool.partition_point(|p| p.score <= c.score);
        if at < LFU_POOL {
            if self.lfu_pool.len() == LFU_POOL {
                self.lfu_pool.pop();
            }
            self.lfu_pool.insert(at, c);
        }
    }

    /// Fills `out` with distinct keys with a TTL, other than `keep`, and returns how many. While
    /// at least a quarter of the keys have one, they are sampled from the index as
    /// `allkeys-lfu` samples (up to [`VOLATILE_PROBES`] slots read per key wanted); the rest
    /// come from the volatile list, walked on from where the last walk stopped (a hand that
    /// goes round it), which costs nothing however few keys have a TTL.
    fn sample_volatile(&mut self, out: &mut [Ref], keep: Ref) -> usize {
        if self.volatile == 0 {
            return 0;
        }
        let mut n = 0;
        if self.volatile * 4 >= self.table.len() {
            let seed = self.next_random();
            let (arena, table) = (&self.arena, &self.table);
            table.sample(seed, out.len() * VOLATILE_PROBES, |v| {
                // SAFETY: values in the table are refs of live blobs.
                if n < out.len() && v != keep.0 && unsafe { Blob::at(arena.ptr(Ref(v))) }.has_ttl()
                {
                    out[n] = Ref(v);
                    n += 1;
                }
            });
        }
        let want = out.len().min(self.volatile);
        let mut walked = 0;
        while n < want && walked < self.volatile {
            let r = if self.vol_hand.is_nil() {
                self.vol_tail
            } else {
                self.vol_hand
            };
            self.vol_hand = self.blob(r).vprev();
            walked += 1;
            if r != keep && !out[..n].contains(&r) {
                out[n] = r;
                n += 1;
            }
        }
        n
    }

    /// One step of the LFU sweep: visits about [`LFU_SWEEP_STEP`] entries from where the last
    /// step stopped (in hash order, going round) and folds the decay into the counter of any
    /// not touched for [`crate::lfu::REFRESH_AFTER`] minutes, so that the 12-bit minute
    /// stamped in each entry never wraps unnoticed. With `Store::maintain` calling it ten
    /// times a second, a shard's keys are all visited every 17 hours up to 600,000 keys per
    /// shard (38 million with 64 shards, 77 million with 128).
    pub(crate) fn lfu_sweep(&mut self, lfu: Lfu) {
        let (arena, hasher) = (&self.arena, &self.hasher);
        let next = self.table.scan(
            self.lfu_cursor,
            LFU_SWEEP_STEP,
            |v| {
                // SAFETY: values in the table are refs of live blobs.
                hasher.hash(unsafe { Blob::at(arena.ptr(Ref(v))) }.key())
            },
            |v| {
                // SAFETY: as above; the shard is locked, so nobody else reads the blob.
                let b = unsafe { Blob::at(arena.ptr(Ref(v))) };
                if let Some(field) = lfu.refreshed(b.clock()) {
                    b.set_clock(field);
                }
            },
        );
        self.lfu_cursor = if next == crate::table::END { 0 } else { next };
    }

    /// Among the least recently used keys with a TTL, the one that expires first.
    fn soonest_expiring(&self) -> Ref {
        let mut best = Ref::NIL;
        let mut best_at = u64::MAX;
        let mut r = self.vol_tail;
        for _ in 0..TTL_SAMPLES {
            if r.is_nil() {
                break;
            }
            let b = self.blob(r);
            if b.expiry() < best_at {
                best_at = b.expiry();
                best = r;
            }
            r = b.vprev();
        }
        best
    }

    /// Examines up to `limit` keys with a TTL, continuing where the last call stopped, and
    /// removes those past their expiry. Returns (examined, expired).
    pub(crate) fn expire_step(&mut self, now: u64, limit: usize) -> (usize, usize) {
        let (mut examined, mut expired) = (0, 0);
        while examined < limit {
            let r = if self.vol_cursor.is_nil() {
                if examined > 0 {
                    break; // one lap per step at most
                }
                self.vol_tail
            } else {
                self.vol_cursor
            };
            if r.is_nil() {
                break;
            }
            let b = self.blob(r);
            let next = b.vprev();
            examined += 1;
            if now > b.expiry() {
                self.remove_ref(r, Some(Removal::Expired));
                expired += 1;
            }
            self.vol_cursor = next;
        }
        (examined, expired)
    }

    /// Whether the shard's pages hold enough memory outside blobs for
    /// [`compact`](Self::compact) to act.
    fn wants_compaction(&self) -> bool {
        let slack = self.arena.slack_bytes();
        slack > COMPACT_MIN_SLACK
            && slack * COMPACT_AT > self.arena.page_bytes()
            && slack >= self.compact_floor + COMPACT_MIN_GAIN
    }

    /// When [`wants_compaction`](Self::wants_compaction), empties the sparsest pages (moving
    /// their blobs into free blocks of other pages, or a new one) and releases them, until the
    /// slack is back under its bound, no page is sparse enough to be worth it, an emptied page
    /// won back too little, or `max_pages` pages were emptied. Returns how many fewer pages
    /// the shard holds.
    pub(crate) fn compact(&mut self, max_pages: usize) -> usize {
        if self.compact_floor > self.arena.slack_bytes() {
            self.compact_floor = 0;
        }
        if !self.wants_compaction() {
            return 0;
        }
        let pages = self.arena.pages();
        let near_limit = self.budget.at_limit().is_some();
        let (mut emptied, mut futile) = (0, 0);
        while emptied < max_pages {
            let slack = self.arena.slack_bytes();
            let target = (self.arena.page_bytes() / COMPACT_TO).max(COMPACT_MIN_SLACK / 2);
            if slack <= target {
                break;
            }
            // The page being filled is worth emptying only if it was barely used; once
            // compaction has moved blobs (maybe into it), it is not.
            let with_bump = emptied == 0;
            let worth = self
                .arena
                .sparsest_page(with_bump)
                .filter(|&(_, live, size)| worth_emptying(live, size));
            // A page whose blobs did not all fit in free blocks took a new page, which the
            // next moves fill; but if there are none, or two such pages come in a row, the
            // blobs fit nowhere.
            let Some((page, _, _)) = worth.filter(|_| futile < 2) else {
                if futile > 0 {
                    self.compact_floor = slack;
                }
                break;
            };
            if !self.evacuate(page, near_limit) {
                break;
            }
            emptied += 1;
            let after = self.arena.slack_bytes();
            futile = if after + COMPACT_MIN_GAIN > slack {
                futile + 1
            } else {
                0
            };
        }
        pages.saturating_sub(self.arena.pages())
    }

    /// Moves every blob out of `page` and releases it. False if a move failed (the arena is
    /// out of address space); the page then stays, with the blobs not yet moved. `near_limit`:
    /// the store is at its memory limit (see [`Arena::alloc`]).
    fn evacuate(&mut self, page: usize, near_limit: bool) -> bool {
        self.arena.begin_evacuation(page);
        let mut offset = 0;
        while let Some(block) = self.arena.next_block(page, offset) {
            offset += block.size;
            if !block.free && self.move_blob(block.at, near_limit).is_err() {
                break;
            }
        }
        self.arena.end_evacuation()
    }

    /// Bytes this shard has handed back to the allocator since the last call: arena pages and
    /// large blocks freed, index memory given up by shrinking or clearing.
    pub(crate) fn take_returned_bytes(&mut self) -> u64 {
        self.arena.take_returned_bytes() + std::mem::take(&mut self.index_returned)
    }

    /// Copies a blob elsewhere and points every reference at the copy.
    fn move_blob(&mut self, r: Ref, near_limit: bool) -> Result<(), ArenaFull> {
        let old = self.blob(r);
        let len = old.len();
        let (_, slot) = self.slot_of(r);
        let fresh = self.arena.alloc(len, near_limit)?;
        // SAFETY: both blocks are `len` bytes and distinct (the page being emptied is never
        // allocated from).
        unsafe { std::ptr::copy_nonoverlapping(self.arena.ptr(r), self.arena.ptr(fresh), len) };
        self.lru_replace(r, fresh);
        if old.has_ttl() {
            self.vol_replace(r, fresh);
        }
        self.table.set(slot, fresh.0);
        self.arena.free(r, len);
        Ok(())
    }

    /// Shrinks the index after mass deletion.
    pub(crate) fn maybe_shrink(&mut self) -> bool {
        let before = self.table.bytes();
        let (arena, hasher) = (&self.arena, &self.hasher);
        let shrunk = self.table.maybe_shrink(|v| {
            // SAFETY: values in the table are refs of live blobs.
            hasher.hash(unsafe { Blob::at(arena.ptr(Ref(v))) }.key())
        });
        self.index_returned += before.saturating_sub(self.table.bytes()) as u64;
        shrunk
    }

    /// Calls `f` for entries from hash position `from` (see [`Table::scan`]); returns where to resume.
    pub(crate) fn scan(&self, from: u64, count: usize, f: impl FnMut(u32)) -> u64 {
        let (arena, hasher) = (&self.arena, &self.hasher);
        self.table.scan(
            from,
            count,
            |v| {
                // SAFETY: values in the table are refs of live blobs.
                hasher.hash(unsafe { Blob::at(arena.ptr(Ref(v))) }.key())
            },
            f,
        )
    }

    /// Every entry's ref.
    pub(crate) fn refs(&self) -> impl Iterator<Item = Ref> + '_ {
        self.table.values().map(Ref)
    }

    /// A random entry.
    pub(crate) fn random(&mut self) -> Option<Ref> {
        let seed = self.next_random();
        self.table.random(seed).map(Ref)
    }

    /// Drops every entry (counters stay). Reports nothing: the store reports one flush for all
    /// its shards.
    pub(crate) fn clear(&mut self) {
        self.release_values();
        self.field_expiring.clear();
        self.field_cursor = None;
        self.index_returned += self.table.bytes() as u64;
        self.table.clear();
        self.arena.clear();
        self.lru_head = Ref::NIL;
        self.lru_tail = Ref::NIL;
        self.vol_head = Ref::NIL;
        self.vol_tail = Ref::NIL;
        self.vol_cursor = Ref::NIL;
        self.vol_hand = Ref::NIL;
        self.lfu_pool.clear();
        self.volatile = 0;
        self.expiry_sum = 0;
        self.used = 0;
    }

    /// Frees the heap memory of every entry's value (before the arena goes).
    fn release_values(&mut self) {
        if self.owners == 0 {
            return;
        }
        let refs: Vec<Ref> = self.refs().collect();
        for r in refs {
            let b = self.blob(r);
            self.release_value(b);
        }
    }

    /// Entries from most to least recently used (for tests and consistency checks).
    #[cfg(test)]
    pub(crate) fn lru_order(&self) -> impl Iterator<Item = Ref> + '_ {
        std::iter::successors(Some(self.lru_head).filter(|r| !r.is_nil()), move |&r| {
            Some(self.blob(r).next()).filter(|n| !n.is_nil())
        })
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    #[inline]
    fn lru_unlink(&mut self, r: Ref) {
        let b = self.blob(r);
        let (prev, next) = (b.prev(), b.next());
        if prev.is_nil() {
            self.lru_head = next;
        } else {
            self.blob(prev).set_next(next);
        }
        if next.is_nil() {
            self.lru_tail = prev;
        } else {
            self.blob(next).set_prev(prev);
        }
    }

    #[inline]
    fn lru_push_front(&mut self, r: Ref) {
        let b = self.blob(r);
        b.set_prev(Ref::NIL);
        b.set_next(self.lru_head);
        if self.lru_head.is_nil() {
            self.lru_tail = r;
        } else {
            self.blob(self.lru_head).set_prev(r);
        }
        self.lru_head = r;
    }

    /// Puts `fresh` where `old` is in the LRU list (`fresh` already carries or gets old's links).
    fn lru_replace(&mut self, old: Ref, fresh: Ref) {
        let (o, f) = (self.blob(old), self.blob(fresh));
        let (prev, next) = (o.prev(), o.next());
        f.set_prev(prev);
        f.set_next(next);
        if prev.is_nil() {
            self.lru_head = fresh;
        } else {
            self.blob(prev).set_next(fresh);
        }
        if next.is_nil() {
            self.lru_tail = fresh;
        } else {
            self.blob(next).set_prev(fresh);
        }
    }

    fn vol_unlink(&mut self, r: Ref) {
        let b = self.blob(r);
        let (prev, next) = (b.vprev(), b.vnext());
        if self.vol_cursor == r {
            self.vol_cursor = prev;
        }
        if self.vol_hand == r {
            self.vol_hand = prev;
        }
        if prev.is_nil() {
            self.vol_head = next;
        } else {
            self.blob(prev).set_vnext(next);
        }
        if next.is_nil() {
            self.vol_tail = prev;
        } else {
            self.blob(next).set_vprev(prev);
        }
    }

    fn vol_push_front(&mut self, r: Ref) {
        let b = self.blob(r);
        b.set_vprev(Ref::NIL);
        b.set_vnext(self.vol_head);
        if self.vol_head.is_nil() {
            self.vol_tail = r;
        } else {
            self.blob(self.vol_head).set_vprev(r);
        }
        self.vol_head = r;
    }

    /// Puts `fresh` (a byte copy of `old`) where `old` is in the volatile list.
    fn vol_replace(&mut self, old: Ref, fresh: Ref) {
        let b = self.blob(fresh);
        let (prev, next) = (b.vprev(), b.vnext());
        if self.vol_cursor == old {
            self.vol_cursor = fresh;
        }
        if self.vol_hand == old {
            self.vol_hand = fresh;
        }
        if prev.is_nil() {
            self.vol_head = fresh;
        } else {
            self.blob(prev).set_vnext(fresh);
        }
        if next.is_nil() {
            self.vol_tail = fresh;
        } else {
            self.blob(next).set_vprev(fresh);
        }
    }

    /// Checks every invariant the shard relies on; panics with a description if one is broken.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut count = 0;
        let mut used = 0;
        let mut prev = Ref::NIL;
        for r in self.lru_order() {
            let b = self.blob(r);
            assert_eq!(b.prev(), prev, "LRU back link");
            assert!(
                self.find(self.hasher.hash(b.key()), b.key())
                    .is_some_and(|(_, x)| x == r)
            );
            used += self.entry_charge(b);
            prev = r;
            count += 1;
        }
        assert_eq!(self.lru_tail, prev);
        assert_eq!(count, self.table.len(), "LRU list and index disagree");
        assert_eq!(used, self.used, "used_memory is not the sum of the entries");
        let mut volatile = 0;
        let mut sum = 0u128;
        let mut prev = Ref::NIL;
        let mut r = self.vol_head;
        while !r.is_nil() {
            let b = self.blob(r);
            assert!(b.has_ttl());
            assert_eq!(b.vprev(), prev, "volatile back link");
            sum += u128::from(b.expiry());
            volatile += 1;
            prev = r;
            r = b.vnext();
        }
        assert_eq!(self.vol_tail, prev);
        assert_eq!(volatile, self.volatile);
        assert_eq!(sum, self.expiry_sum);
        self.arena.check_invariants();
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.release_values();
    }
}
