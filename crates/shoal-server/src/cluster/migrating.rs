//! What the request path needs of slot migrations (see [`crate::migration`]): sets of slots,
//! and the gate that holds a source's writes to slots being handed over.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::Mutex;
use shoal_cluster::{SLOTS, Slot};
use tokio::sync::Notify;

/// A set of slots, one bit each.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotSet(Box<[u64]>);

impl Default for SlotSet {
    fn default() -> Self {
        SlotSet(vec![0; SLOTS / 64].into_boxed_slice())
    }
}

impl std::fmt::Debug for SlotSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

impl SlotSet {
    /// The slots of inclusive `ranges` (slots past the last one are ignored).
    pub fn of_ranges(ranges: &[(Slot, Slot)]) -> SlotSet {
        let mut set = SlotSet::default();
        for &(first, last) in ranges {
            for slot in first..=last.min(SLOTS as Slot - 1) {
                set.insert(slot);
            }
        }
        set
    }

    /// Adds `slot`.
    pub fn insert(&mut self, slot: Slot) {
        self.0[usize::from(slot) / 64] |= 1 << (slot % 64);
    }

    /// Whether `slot` is in it.
    #[inline]
    pub fn contains(&self, slot: Slot) -> bool {
        self.0[usize::from(slot) / 64] & (1 << (slot % 64)) != 0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// How many slots it holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Its slots as inclusive ranges, in order.
    pub fn ranges(&self) -> Vec<(Slot, Slot)> {
        shoal_cluster::slot_ranges((0..SLOTS as Slot).filter(|s| self.contains(*s)))
    }

    /// Adds every slot of `other`.
    pub fn union(&mut self, other: &SlotSet) {
        for (word, more) in self.0.iter_mut().zip(other.0.iter()) {
            *word |= more;
        }
    }

    /// Keeps only the slots also in `other`.
    pub fn intersect(&mut self, other: &SlotSet) {
        for (word, kept) in self.0.iter_mut().zip(other.0.iter()) {
            *word &= kept;
        }
    }

    /// Removes every slot of `other`.
    pub fn subtract(&mut self, other: &SlotSet) {
        for (word, gone) in self.0.iter_mut().zip(other.0.iter()) {
            *word &= !gone;
        }
    }
}

/// The slots whose writes wait on this source while they are handed over, and the wake-up for
/// those writes. Reads go on: the source still holds every key, and nothing changes them.
/// One bit per slot, read without a lock by every write while any slot is held.
pub struct WriteGate {
    /// How many slots are held: the only check a write makes while none is.
    count: AtomicUsize,
    held: Box<[AtomicU64]>,
    opened: Notify,
}

impl Default for WriteGate {
    fn default() -> Self {
        WriteGate {
            count: AtomicUsize::new(0),
            held: (0..SLOTS / 64).map(|_| AtomicU64::new(0)).collect(),
            opened: Notify::new(),
        }
    }
}

impl WriteGate {
    /// Whether writes to `slot` wait now.
    #[inline]
    pub fn holds(&self, slot: Slot) -> bool {
        self.count.load(SeqCst) > 0
            && self.held[usize::from(slot) / 64].load(SeqCst) & (1 << (slot % 64)) != 0
    }

    /// Makes writes to `slots` wait (a write checked after this returns waits). Returns the
    /// slots it closed: those another hand-over already holds are not, and only the one that
    /// closed a slot may hand it over and open it again.
    pub fn close(&self, slots: &SlotSet) -> SlotSet {
        let mut closed = SlotSet::default();
        let mut added = 0;
        for ((word, more), mine) in self
            .held
            .iter()
            .zip(slots.0.iter())
            .zip(closed.0.iter_mut())
        {
            let old = word.fetch_or(*more, SeqCst);
            *mine = more & !old;
            added += mine.count_ones() as usize;
        }
        self.count.fetch_add(added, SeqCst);
        closed
    }

    /// Lets writes to `slots` go again (and routes the waiting ones again).
    pub fn open(&self, slots: &SlotSet) {
        let mut cleared = 0;
        for (word, gone) in self.held.iter().zip(slots.0.iter()) {
            cleared += (word.fetch_and(!gone, SeqCst) & gone).count_ones() as usize;
        }
        self.count.fetch_sub(cleared, SeqCst);
        self.opened.notify_waiters();
    }

    /// Waits until `slot` is no longer held, or `limit` has passed.
    pub async fn wait(&self, slot: Slot, limit: Duration) {
        let wait = async {
            loop {
                let opened = self.opened.notified();
                if !self.holds(slot) {
                    return;
                }
                opened.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// What this node's migrations did, as a source and as a target.
#[derive(Default)]
pub struct MigrationStats {
    /// Keys sent in snapshots of migrating slots.
    pub keys_sent: AtomicU64,
    /// Keys received in snapshots of slots migrating here.
    pub keys_received: AtomicU64,
    /// Hand-overs this node made as a source (taken or not).
    pub hand_overs: AtomicU64,
    /// Slots this node handed over.
    pub slots_handed_over: AtomicU64,
    /// The longest write pause of a hand-over, in microseconds.
    pub pause_max_us: AtomicU64,
    /// The longest of each part of a hand-over's write pause, in microseconds.
    pub phase_max_us: PhaseMaxima,
    /// The last [`PAUSES_KEPT`] write pauses, in microseconds, oldest first.
    pauses: Mutex<std::collections::VecDeque<u64>>,
}

/// Where a hand-over's write pause went.
#[derive(Clone, Copy, Debug, Default)]
pub struct PausePhases {
    /// Waiting for the writes already past the gate when it closed to finish.
    pub drain: Duration,
    /// Streaming the rest of the slots' changes and waiting for the target's acknowledgement.
    pub catch_up: Duration,
    /// The controller's commit of the map that moves the slots, and its installation here.
    pub commit: Duration,
}

/// The longest of each part of the write pauses (see [`PausePhases`]), in microseconds.
#[derive(Default)]
pub struct PhaseMaxima {
    /// The longest drain.
    pub drain_us: AtomicU64,
    /// The longest catch-up.
    pub catch_up_us: AtomicU64,
    /// The longest commit.
    pub commit_us: AtomicU64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Write pauses kept for their percentiles.
pub const PAUSES_KEPT: usize = 1024;

impl MigrationStats {
    /// Records one hand-over's write pause, and where it went.
    pub fn record_pause(&self, paused: Duration, phases: PausePhases) {
        self.hand_overs.fetch_add(1, Relaxed);
        let us = micros(paused);
        self.pause_max_us.fetch_max(us, Relaxed);
        let maxima = &self.phase_max_us;
        maxima.drain_us.fetch_max(micros(phases.drain), Relaxed);
        maxima
            .catch_up_us
            .fetch_max(micros(phases.catch_up), Relaxed);
        maxima.commit_us.fetch_max(micros(phases.commit), Relaxed);
        let mut pauses = self.pauses.lock();
        if pauses.len() == PAUSES_KEPT {
            pauses.pop_front();
        }
        pauses.push_back(us);
    }

    /// The `q` quantile (0 to 1) of the pauses kept, in microseconds (0 without any).
    pub fn pause_quantile_us(&self, q: f64) -> u64 {
        let mut pauses: Vec<u64> = self.pauses.lock().iter().copied().collect();
        if pauses.is_empty() {
            return 0;
        }
        pauses.sort_unstable();
        let rank = ((pauses.len() as f64 * q).ceil() as usize).clamp(1, pauses.len());
        pauses[rank - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_sets_hold_ranges() {
        let mut set = SlotSet::of_ranges(&[(0, 2), (5, 5), (16383, 16383)]);
        assert_eq!(set.len(), 5);
        assert!(set.contains(1) && set.contains(16383) && !set.contains(3));
        set.subtract(&SlotSet::of_ranges(&[(1, 1)]));
        assert_eq!(set.ranges(), vec![(0, 0), (2, 2), (5, 5), (16383, 16383)]);
        assert!(!set.is_empty() && SlotSet::default().is_empty());
    }

    #[test]
    fn pause_quantiles_come_from_the_pauses_kept() {
        let stats = MigrationStats::default();
        assert_eq!(stats.pause_quantile_us(0.99), 0);
        for ms in 1..=100 {
            let phases = PausePhases {
                drain: Duration::from_millis(ms / 10),
                catch_up: Duration::from_millis(ms / 2),
                commit: Duration::from_millis(if ms == 7 { 60 } else { ms / 3 }),
            };
            stats.record_pause(Duration::from_millis(ms), phases);
        }
        assert_eq!(stats.pause_quantile_us(0.99), 99_000);
        assert_eq!(stats.pause_quantile_us(0.5), 50_000);
        assert_eq!(stats.pause_max_us.load(Relaxed), 100_000);
        // Each part's longest, whichever hand-over it was in.
        let maxima = &stats.phase_max_us;
        assert_eq!(maxima.drain_us.load(Relaxed), 10_000);
        assert_eq!(maxima.catch_up_us.load(Relaxed), 50_000);
        assert_eq!(maxima.commit_us.load(Relaxed), 60_000);
    }

    #[tokio::test]
    async fn a_held_write_goes_when_its_slot_opens() {
        let gate = std::sync::Arc::new(WriteGate::default());
        let slots = SlotSet::of_ranges(&[(10, 20)]);
        gate.close(&slots);
        assert!(gate.holds(15) && !gate.holds(21));
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.wait(15, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        gate.open(&slots);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("the write went")
            .unwrap();
        assert!(!gate.holds(15));
    }
}
