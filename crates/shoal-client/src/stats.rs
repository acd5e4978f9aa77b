//! Counters and a latency histogram, updated lock-free by every request.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two: 4 gives buckets at most 25% wide.
const SUB_BITS: u32 = 2;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered, in microseconds (2^40 us is about 12 days).
const MAX_EXP: u32 = 40;
const BUCKETS: usize = SUB + (MAX_EXP as usize - SUB_BITS as usize + 1) * SUB;

/// A snapshot of a client's counters, from [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Commands issued through the API (a split `MGET` counts once).
    pub requests: u64,
    /// Commands that ended in an `Err`.
    pub errors: u64,
    /// Commands answered with a server error reply (`Value::Error`).
    pub server_errors: u64,
    /// Retries after a retryable failure (each one after a backoff).
    pub retries: u64,
    /// `-MOVED` and `-ASK` redirections followed.
    pub redirects: u64,
    /// Newer maps installed (the first one included).
    pub map_refreshes: u64,
    /// Maps offered that were not newer than the one held, and ignored.
    pub stale_maps: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connections that ended with an error.
    pub connection_losses: u64,
    /// Requests (frames) written to sockets, sub-requests of split commands included.
    pub frames_sent: u64,
    /// Socket writes: one write carries every frame queued at that moment, so this stays below
    /// `frames_sent` under concurrency.
    pub socket_writes: u64,
    /// Reads of hot keys, sent to any member of their shard rather than where
    /// [`ReadFrom`](crate::ReadFrom) says.
    pub hot_key_reads: u64,
    /// Writes of hot keys that joined a batch ([`ClientConfig::hot_write_batch`](crate::ClientConfig::hot_write_batch)).
    pub batched_writes: u64,
    /// Batches sent (each one command for all its writes).
    pub write_batches: u64,
    /// `GET`s of hot keys answered by a copy on another shard
    /// ([`ClientConfig::hot_key_copies`](crate::ClientConfig::hot_key_copies)).
    pub copy_reads: u64,
    /// Copies written from their key after a read found them missing.
    pub copy_fills: u64,
    /// Writes of hot keys after which their copies were deleted.
    pub copy_drops: u64,
    /// Latency of finished commands (retries and redirections included).
    pub latency: LatencySummary,
}

impl ClientStats {
    /// The counters a metrics page shows: `(name, what it counts, value)`, names in
    /// Prometheus style (`requests`, `error_replies`, ...).
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 14] {
        [
            (
                "requests",
                "Commands sent to the cluster (a split command counts once).",
                self.requests,
            ),
            (
                "errors",
                "Commands that got no reply (after retries).",
                self.errors,
            ),
            (
                "error_replies",
                "Commands the nodes answered with an error.",
                self.server_errors,
            ),
            ("retries", "Retries after retryable failures.", self.retries),
            (
                "redirects",
                "-MOVED and -ASK redirections followed.",
                self.redirects,
            ),
            (
                "map_refreshes",
                "Newer cluster maps installed.",
                self.map_refreshes,
            ),
            ("connects", "Connections opened to nodes.", self.connects),
            (
                "connection_losses",
                "Connections to nodes that failed.",
                self.connection_losses,
            ),
            (
                "hot_key_reads",
                "Reads of the cluster's hot keys, spread over their shard's members.",
                self.hot_key_reads,
            ),
            (
                "batched_writes",
                "Writes of hot keys that joined a batch.",
                self.batched_writes,
            ),
            (
                "write_batches",
                "Batches of hot keys' writes sent.",
                self.write_batches,
            ),
            (
                "copy_reads",
                "GETs of hot keys answered by a copy on another shard.",
                self.copy_reads,
            ),
            (
                "copy_fills",
                "Copies of hot keys written after a read found them missing.",
                self.copy_fills,
            ),
            (
                "copy_drops",
                "Writes of hot keys after which their copies were deleted.",
                self.copy_drops,
            ),
        ]
    }
}

/// Latency quantiles, each the upper edge of its histogram bucket (at most 25% above the truth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Commands measured.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// The slowest.
    pub max: Duration,
}

/// The live counters.
#[derive(Debug)]
pub(crate) struct Stats {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub server_errors: AtomicU64,
    pub retries: AtomicU64,
    pub redirects: AtomicU64,
    pub map_refreshes: AtomicU64,
    pub stale_maps: AtomicU64,
    pub connects: AtomicU64,
    pub connection_losses: AtomicU64,
    pub frames_sent: AtomicU64,
    pub socket_writes: AtomicU64,
    pub hot_key_reads: AtomicU64,
    pub batched_writes: AtomicU64,
    pub write_batches: AtomicU64,
    pub copy_reads: AtomicU64,
    pub copy_fills: AtomicU64,
    pub copy_drops: AtomicU64,
    latency: Histogram,
}

impl Default for Stats {
    fn default() -> Self {
        let zero = || AtomicU64::new(0);
        Stats {
            requests: zero(),
            errors: zero(),
            server_errors: zero(),
            retries: zero(),
            redirects: zero(),
            map_refreshes: zero(),
            stale_maps: zero(),
            connects: zero(),
            connection_losses: zero(),
            frames_sent: zero(),
            socket_writes: zero(),
            hot_key_reads: zero(),
            batched_writes: zero(),
            write_batches: zero(),
            copy_reads: zero(),
            copy_fills: zero(),
            copy_drops: zero(),
            latency: Histogram::default(),
        }
    }
}

impl Stats {
    /// Adds one to `counter`.
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// Records a finished command.
    pub fn record_latency(&self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> ClientStats {
        let get = |c: &AtomicU64| c.load(Relaxed);
        ClientStats {
            requests: get(&self.requests),
            errors: get(&self.errors),
            server_errors: get(&self.server_errors),
            retries: get(&self.retries),
            redirects: get(&self.redirects),
            map_refreshes: get(&self.map_refreshes),
            stale_maps: get(&self.stale_maps),
            connects: get(&self.connects),
            connection_losses: get(&self.connection_losses),
            frames_sent: get(&self.frames_sent),
            socket_writes: get(&self.socket_writes),
            hot_key_reads: get(&self.hot_key_reads),
            batched_writes: get(&self.batched_writes),
            write_batches: get(&self.write_batches),
            copy_reads: get(&self.copy_reads),
            copy_fills: get(&self.copy_fills),
            copy_drops: get(&self.copy_drops),
            latency: self.latency.summary(),
        }
    }
}

/// A log-linear histogram of microseconds.
#[derive(Debug)]
struct Histogram {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let exp = (63 - us.leading_zeros()).min(MAX_EXP);
    if exp == MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((us >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    SUB + (exp - SUB_BITS) as usize * SUB + sub
}

/// The upper edge (exclusive) of bucket `index`, in microseconds.
fn bucket_upper(index: usize) -> u64 {
    if index < SUB {
        return index as u64 + 1;
    }
    let exp = (index - SUB) / SUB + SUB_BITS as usize;
    let sub = ((index - SUB) % SUB) as u64;
    (SUB as u64 + sub + 1) << (exp - SUB_BITS as usize)
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket(us)].fetch_add(1, Relaxed);
        self.max_us.fetch_max(us, Relaxed);
    }

    fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        let max_us = self.max_us.load(Relaxed);
        let quantile = |q: f64| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            let rank = ((count as f64 * q).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Duration::from_micros(bucket_upper(i).min(max_us.max(1)));
                }
            }
            Duration::from_micros(max_us)
        };
        LatencySummary {
            count,
            p50: quantile(0.50),
            p90: quantile(0.90),
            p99: quantile(0.99),
            p999: quantile(0.999),
            max: Duration::from_micros(max_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 1000, 65_535, 1 << 30, 1 << 39] {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            last = b;
            let upper = bucket_upper(b);
            assert!(upper > us, "{us} -> bucket {b} upper {upper}");
            assert!(
                upper as f64 <= (us as f64 * 1.25).max(us as f64 + 1.0),
                "{us}"
            );
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let within = |d: Duration, us: u64| {
            let got = d.as_micros() as f64;
            got >= us as f64 && got <= us as f64 * 1.25
        };
        assert!(within(s.p50, 500), "{s:?}");
        assert!(within(s.p99, 990), "{s:?}");
        assert_eq!(s.max, Duration::from_micros(1000));
        assert!(s.p999 <= s.max);
        assert_eq!(Histogram::default().summary(), LatencySummary::default());
    }
}
