//! Background work and memory limits: eviction under `maxmemory`, the active expiry cycle, and
//! the upkeep that shrinks indexes and compacts arenas.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::latency::{LatencyEvent, Timing};
use crate::policy::EvictionPolicy;

use super::{ShardSlot, Store};

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
/// About how long one [`Store::maintain`] call may run.
const MAINTAIN_BUDGET: Duration = Duration::from_millis(2);
/// Pages one [`Store::maintain`] call may empty in one shard (up to 1 MiB of copying).
const COMPACT_PAGES: usize = 16;

impl Store {
    /// Evicts keys as the policy says until `used_memory` is within `maxmemory`. Called before
    /// every command that may grow memory; `Err` means the command must be refused with `-OOM`.
    ///
    /// Each victim comes from the shard most over its fair share: the one using the most memory
    /// (for `allkeys-*`) or holding the most keys with a TTL (for `volatile-*`), read from
    /// counters published beside each lock, so choosing takes no lock. Within that shard the
    /// policy picks (its LRU tail for the LRU policies). Every shard thus keeps an equal budget
    /// and evicts its own least recently used keys, so a key read recently is never evicted
    /// because its shard happens to be small.
    ///
    /// Close to the limit (within half a page per shard), a write that would make its shard
    /// take a new page evicts in that shard first, so `used_memory` may settle a little under
    /// `maxmemory` rather than the pages growing past it (see `docs/store.md`).
    ///
    /// With a latency sink whose threshold is on, the round is an `eviction-cycle` event and
    /// each key's removal an `eviction-del` one (Redis's `performEvictions`); with none, or
    /// the threshold at 0, the clock is not read. The evictions a write makes in its own
    /// shard at the limit (above) are part of that command's time, not events of their own.
    pub fn make_room(&self) -> Result<(), OutOfMemory> {
        let max = self.budget.maxmemory.load(Relaxed);
        if max == 0 || self.budget.used.load(Relaxed) <= max {
            return Ok(());
        }
        let policy = self.policy();
        if policy == EvictionPolicy::NoEviction {
            return Err(OutOfMemory);
        }
        let sink = self.latency_sink();
        let timing = Timing::new(sink.as_deref());
        let started = timing.start();
        let result = self.evict_under(max, policy, &timing);
        timing.stop(LatencyEvent::EvictionCycle, started);
        result
    }

    /// [`Store::make_room`]'s round of evictions, each removal timed by `timing`.
    fn evict_under(
        &self,
        max: usize,
        policy: EvictionPolicy,
        timing: &Timing<'_>,
    ) -> Result<(), OutOfMemory> {
        let mut exhausted = vec![false; self.shards.len()];
        while self.budget.used.load(Relaxed) > max {
            let Some(index) = self.eviction_candidate(policy, &exhausted) else {
                return Err(OutOfMemory);
            };
            let mut shard = self.lock(index);
            let before = shard.used;
            let Some(victim) = shard.eviction_victim(policy) else {
                exhausted[index] = true;
                continue;
            };
            let started = timing.start();
            shard.evict(victim);
            let took = started.map(|t| t.elapsed());
            self.settle(index, before, &shard);
            drop(shard);
            if let Some(took) = took {
                timing.took(LatencyEvent::EvictionDel, took);
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
    /// `budget` is spent. With a latency sink whose threshold is on, the cycle is an
    /// `expire-cycle` event (Redis's `activeExpireCycle`).
    pub fn expire_cycle(&self, budget: Duration) -> ExpireCycle {
        let started = Instant::now();
        let cycle = self.expire_shards(started, budget);
        let sink = self.latency_sink();
        let timing = Timing::new(sink.as_deref());
        if timing.on() {
            timing.took(LatencyEvent::ExpireCycle, started.elapsed());
        }
        cycle
    }

    /// [`Store::expire_cycle`]'s walk, begun at `started`.
    fn expire_shards(&self, started: Instant, budget: Duration) -> ExpireCycle {
        let now = self.clock.now_ms();
        let shards = self.shards.len();
        let first = self.expire_next.load(Relaxed);
        let mut cycle = ExpireCycle::default();
        for step in 0..shards {
            let index = (first + step) % shards;
            self.expire_fields(index, now, &mut cycle);
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

    /// The active expiry of hash fields in shard `index`: steps of [`EXPIRE_BATCH`] hashes
    /// while more than 10% of them had expired fields. Their fields count in `cycle.expired`.
    fn expire_fields(&self, index: usize, now: u64, cycle: &mut ExpireCycle) {
        loop {
            let mut shard = self.lock(index);
            if shard.field_expiring.is_empty() {
                return;
            }
            let before = shard.used;
            let fields_before = shard.stats.expired_fields;
            let (visited, reclaimed) =
                super::hashes::expire_fields_step(&mut shard, now, EXPIRE_BATCH);
            cycle.examined += visited;
            cycle.expired += (shard.stats.expired_fields - fields_before) as usize;
            self.settle(index, before, &shard);
            if visited < EXPIRE_BATCH || reclaimed * 100 <= visited * STALE_PERCENT {
                return;
            }
        }
    }

    /// Background upkeep, called about ten times a second: visits the shards in turn, shrinking
    /// an index left mostly empty, under an LFU policy folding the decay into the counters of
    /// a few keys not touched for hours (`Shard::lfu_sweep`: the minute each counter was last
    /// decremented is 12 bits, so it must not get older than 68 hours unseen), and
    /// compacting an arena whose pages hold more than a small
    /// share of bytes outside entries (emptying at most 16 pages per shard per call), until
    /// every shard was visited or about 2 ms have passed; the next call goes on from there.
    /// The [`Upkeep`] says, among other things, how much memory went back to the allocator.
    pub fn maintain(&self) -> Upkeep {
        let started = Instant::now();
        let shards = self.shards.len();
        let first = self.maintain_next.load(Relaxed) % shards;
        let mut upkeep = Upkeep::default();
        let lfu = self.clock_now().lfu;
        for step in 0..shards {
            let index = (first + step) % shards;
            let mut shard = self.lock(index);
            let before = shard.used;
            shard.maybe_shrink();
            if let Some(lfu) = lfu {
                shard.lfu_sweep(lfu);
            }
            upkeep.pages_released += shard.compact(COMPACT_PAGES);
            upkeep.returned_bytes += shard.take_returned_bytes();
            self.settle(index, before, &shard);
            drop(shard);
            upkeep.shards += 1;
            if started.elapsed() >= MAINTAIN_BUDGET {
                upkeep.out_of_time = step + 1 < shards;
                self.maintain_next.store((index + 1) % shards, Relaxed);
                break;
            }
        }
        upkeep
    }
}

/// What one [`Store::maintain`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Upkeep {
    /// Shards visited.
    pub shards: usize,
    /// Arena pages emptied by compaction and released.
    pub pages_released: usize,
    /// Bytes the store handed back to the allocator since the shards visited were last
    /// visited (arena pages the store's spare pool did not keep, large values freed or shrunk,
    /// index memory given up): memory the allocator now holds free. When it is large, the
    /// caller may ask the allocator to give such memory back to the operating system (glibc's
    /// `malloc_trim`); the store itself does no system calls.
    pub returned_bytes: u64,
    /// Whether the time budget ran out before every shard was visited.
    pub out_of_time: bool,
}

/// The store is over `maxmemory` and nothing can be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("command not allowed when used memory > 'maxmemory'.")]
pub struct OutOfMemory;
