//! How long the store's own work took, for a latency monitor: Redis 7's `expire-cycle`,
//! `eviction-cycle` and `eviction-del` events. The store does not keep the monitor (it lives
//! with the server); it asks a [`LatencySink`] for the threshold and tells it what reached it.
//!
//! Nothing is measured while the threshold is 0: the clock is read only once the sink says
//! the monitor is on, as Redis's `latencyStartMonitor` reads it only then. An event's
//! milliseconds are its elapsed time truncated, as Redis's `expire-cycle` (microseconds / 1000);
//! Redis's eviction events subtract two readings of a millisecond clock instead, so there a
//! removal that crosses a millisecond boundary may count as 1 ms.

use std::time::{Duration, Instant};

/// Work of the store the latency monitor may record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LatencyEvent {
    /// One active expiry cycle ([`Store::expire_cycle`](crate::Store::expire_cycle)).
    ExpireCycle,
    /// One round of evictions to get under `maxmemory`
    /// ([`Store::make_room`](crate::Store::make_room)), successful or not.
    EvictionCycle,
    /// The removal of one evicted key, during such a round.
    EvictionDel,
}

impl LatencyEvent {
    /// The event's name in Redis's latency monitor.
    pub fn name(self) -> &'static str {
        match self {
            LatencyEvent::ExpireCycle => "expire-cycle",
            LatencyEvent::EvictionCycle => "eviction-cycle",
            LatencyEvent::EvictionDel => "eviction-del",
        }
    }
}

/// Where the store reports its slow work (the server's latency monitor). Called without any
/// shard locked; it may take its own locks but must not call back into the store.
pub trait LatencySink: Send + Sync {
    /// `latency-monitor-threshold` in milliseconds; 0: off, and nothing is timed.
    fn threshold_ms(&self) -> u64;
    /// `event` took `ms` milliseconds, at least the threshold.
    fn record(&self, event: LatencyEvent, ms: u64);
}

/// Timing of events against one reading of a sink's threshold: a stopwatch only once the
/// monitor is on.
pub(crate) struct Timing<'a> {
    sink: Option<&'a dyn LatencySink>,
    threshold_ms: u64,
}

impl<'a> Timing<'a> {
    /// Reads `sink`'s threshold (no sink: off).
    pub(crate) fn new(sink: Option<&'a dyn LatencySink>) -> Timing<'a> {
        Timing {
            sink,
            threshold_ms: sink.map_or(0, |s| s.threshold_ms()),
        }
    }

    /// Whether the monitor is on (a threshold above 0).
    pub(crate) fn on(&self) -> bool {
        self.threshold_ms > 0
    }

    /// The time now, if the monitor is on: the start of an event.
    #[inline]
    pub(crate) fn start(&self) -> Option<Instant> {
        self.on().then(Instant::now)
    }

    /// An event that began at `started` (if timed) ends now.
    pub(crate) fn stop(&self, event: LatencyEvent, started: Option<Instant>) {
        if let Some(started) = started {
            self.took(event, started.elapsed());
        }
    }

    /// `event` took `elapsed`: recorded, in whole milliseconds, if the monitor is on and that
    /// reaches the threshold (Redis's `latencyAddSampleIfNeeded`).
    pub(crate) fn took(&self, event: LatencyEvent, elapsed: Duration) {
        let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        if let Some(sink) = self.sink
            && self.on()
            && ms >= self.threshold_ms
        {
            sink.record(event, ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, SetOptions, Store, StoreConfig, TtlUpdate};
    use parking_lot::Mutex;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

    /// A sink that keeps what it is told, and counts how often its threshold is read.
    #[derive(Default)]
    struct Recorder {
        threshold: AtomicU64,
        reads: AtomicUsize,
        events: Mutex<Vec<(LatencyEvent, u64)>>,
    }

    impl LatencySink for Recorder {
        fn threshold_ms(&self) -> u64 {
            self.reads.fetch_add(1, Relaxed);
            self.threshold.load(Relaxed)
        }
        fn record(&self, event: LatencyEvent, ms: u64) {
            self.events.lock().push((event, ms));
        }
    }

    #[test]
    fn only_events_at_the_threshold_are_recorded() {
        let sink = Recorder::default();
        sink.threshold.store(5, Relaxed);
        let timing = Timing::new(Some(&sink));
        timing.took(LatencyEvent::EvictionDel, Duration::from_micros(4_999));
        timing.took(LatencyEvent::EvictionDel, Duration::from_micros(5_000));
        timing.took(LatencyEvent::ExpireCycle, Duration::from_millis(70));
        assert!(timing.start().is_some());
        assert_eq!(
            *sink.events.lock(),
            [
                (LatencyEvent::EvictionDel, 5),
                (LatencyEvent::ExpireCycle, 70)
            ]
        );
        assert_eq!(sink.reads.load(Relaxed), 1, "one reading of the threshold");
    }

    #[test]
    fn nothing_is_timed_while_the_monitor_is_off() {
        let sink = Recorder::default();
        let timing = Timing::new(Some(&sink));
        assert_eq!(timing.start(), None, "no clock read at threshold 0");
        timing.took(LatencyEvent::EvictionCycle, Duration::from_secs(10));
        timing.stop(LatencyEvent::EvictionCycle, None);
        assert!(sink.events.lock().is_empty());
        let none = Timing::new(None);
        assert_eq!(none.start(), None);
        none.took(LatencyEvent::EvictionCycle, Duration::from_secs(10));
    }

    const T0: u64 = 1_700_000_000_000;

    /// A store of `keys` keys expiring at `T0 + 10` (none if `ttl` is false), with `sink`.
    fn filled(keys: usize, ttl: bool, sink: &Arc<Recorder>) -> (Store, ManualClock) {
        let clock = ManualClock::new(T0);
        let store = Store::new(StoreConfig {
            shards: 4,
            clock: Arc::new(clock.clone()),
            seed: Some(7),
            ..StoreConfig::default()
        });
        store.set_latency_sink(Some(sink.clone()));
        let ttl = if ttl {
            TtlUpdate::At(T0 as i64 + 10)
        } else {
            TtlUpdate::Clear
        };
        for i in 0..keys {
            let options = SetOptions {
                ttl,
                ..SetOptions::default()
            };
            let key = format!("key:{i}");
            assert!(
                store
                    .set(key.as_bytes(), b"value", options, |_| {})
                    .unwrap()
            );
        }
        (store, clock)
    }

    /// Many keys expiring at once make a cycle of well over a millisecond: an `expire-cycle`
    /// event at threshold 1, none at 0.
    #[test]
    fn a_slow_expire_cycle_is_an_event() {
        let sink = Arc::new(Recorder::default());
        let (store, clock) = filled(1_000, true, &sink);
        clock.advance(1_000);
        store.refresh_clock();
        let cycle = store.expire_cycle(Duration::from_secs(60));
        assert_eq!(cycle.expired, 1_000);
        assert!(sink.events.lock().is_empty(), "threshold 0: off");

        let (store, clock) = filled(200_000, true, &sink);
        sink.threshold.store(1, Relaxed);
        clock.advance(1_000);
        store.refresh_clock();
        let cycle = store.expire_cycle(Duration::from_secs(60));
        assert_eq!(cycle.expired, 200_000);
        let events = sink.events.lock();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].0, LatencyEvent::ExpireCycle);
        assert!(events[0].1 >= 1);
    }

    /// A `maxmemory` cut to a sliver evicts almost every key in one round: an
    /// `eviction-cycle` event; its removals are timed one by one (each far under 1 ms).
    #[test]
    fn a_slow_eviction_round_is_an_event() {
        let sink = Arc::new(Recorder::default());
        let (store, _clock) = filled(200_000, false, &sink);
        sink.threshold.store(1, Relaxed);
        store.set_maxmemory(64 * 1024);
        store.make_room().unwrap();
        assert!(store.stats().evicted > 100_000);
        let events = sink.events.lock();
        let cycles: Vec<_> = events
            .iter()
            .filter(|(e, _)| *e == LatencyEvent::EvictionCycle)
            .collect();
        assert_eq!(cycles.len(), 1, "{events:?}");
        assert!(cycles[0].1 >= 1);
        assert!(
            events
                .iter()
                .all(|(e, ms)| *e == LatencyEvent::EvictionCycle || *ms >= 1),
            "only removals of 1 ms or more: {events:?}"
        );
        drop(events);
        // Under the limit nothing is asked of the sink.
        let reads = sink.reads.load(Relaxed);
        store.make_room().unwrap();
        assert_eq!(sink.reads.load(Relaxed), reads);
    }

    #[test]
    fn names_are_redis_s() {
        let names = [
            LatencyEvent::ExpireCycle,
            LatencyEvent::EvictionCycle,
            LatencyEvent::EvictionDel,
        ]
        .map(LatencyEvent::name);
        assert_eq!(names, ["expire-cycle", "eviction-cycle", "eviction-del"]);
    }
}
