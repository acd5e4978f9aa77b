//! The latency monitor (`LATENCY LATEST|HISTORY|RESET|DOCTOR|GRAPH`), as Redis 7 keeps it:
//! with `latency-monitor-threshold` above 0 ms, every event (a command, a fast command, and
//! on a node the store's `expire-cycle`, `eviction-cycle` and `eviction-del`) that took at
//! least that long is a sample of its event's series. A series keeps its all-time
//! maximum and one sample per second, the worst of that second, for the last 160 seconds with
//! samples.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use shoal_proto::Reply;

use crate::commands::{Command, table};
use crate::door::Door;

/// Samples a series keeps (Redis's `LATENCY_TS_LEN`).
const SERIES_LEN: usize = 160;
/// Columns of `LATENCY GRAPH`.
const GRAPH_COLUMNS: usize = 80;
/// Rows of `LATENCY GRAPH`'s curve.
const GRAPH_ROWS: usize = 4;

/// One sample: when (Unix seconds) and how long (ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// Unix time in seconds.
    pub time: u64,
    /// Milliseconds.
    pub ms: u64,
}

#[derive(Debug)]
struct Series {
    samples: [Sample; SERIES_LEN],
    /// Where the next sample goes.
    next: usize,
    max: u64,
}

impl Series {
    fn new() -> Series {
        Series {
            samples: [Sample::default(); SERIES_LEN],
            next: 0,
            max: 0,
        }
    }

    fn add(&mut self, time: u64, ms: u64) {
        self.max = self.max.max(ms);
        let prev = (self.next + SERIES_LEN - 1) % SERIES_LEN;
        if self.samples[prev].time == time {
            self.samples[prev].ms = self.samples[prev].ms.max(ms);
            return;
        }
        self.samples[self.next] = Sample { time, ms };
        self.next = (self.next + 1) % SERIES_LEN;
    }

    /// The samples, oldest first.
    fn history(&self) -> Vec<Sample> {
        (0..SERIES_LEN)
            .map(|j| self.samples[(self.next + j) % SERIES_LEN])
            .filter(|s| s.time != 0)
            .collect()
    }

    fn latest(&self) -> Sample {
        self.samples[(self.next + SERIES_LEN - 1) % SERIES_LEN]
    }
}

/// An event's latest sample and all-time maximum, as `LATENCY LATEST` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    /// The event (`command`, `fast-command`, ...).
    pub event: String,
    /// Its latest sample.
    pub latest: Sample,
    /// Its all-time maximum, in ms.
    pub max: u64,
}

/// The latency monitor of a server.
#[derive(Debug, Default)]
pub struct LatencyMonitor {
    /// `latency-monitor-threshold` in ms (0: off).
    threshold_ms: AtomicU64,
    events: Mutex<BTreeMap<String, Series>>,
}

impl LatencyMonitor {
    /// Sets `latency-monitor-threshold` (ms; 0 turns sampling off, the series stay).
    pub fn set_threshold(&self, ms: u64) {
        self.threshold_ms.store(ms, Relaxed);
    }

    /// The threshold in ms.
    pub fn threshold(&self) -> u64 {
        self.threshold_ms.load(Relaxed)
    }

    /// A command that took `usec` ran (`fast`: a command Redis flags `fast`). One load and a
    /// compare while the monitor is off or the command was quick.
    #[inline]
    pub fn command_ran(&self, fast: bool, usec: u64) {
        let threshold = self.threshold_ms.load(Relaxed);
        if threshold > 0 && usec / 1000 >= threshold {
            self.add(if fast { "fast-command" } else { "command" }, usec / 1000);
        }
    }

    /// Adds a sample of `ms` to `event` now.
    #[cold]
    pub fn add(&self, event: &str, ms: u64) {
        let now = crate::unix_time::unix_secs();
        self.add_at(event, now, ms);
    }

    fn add_at(&self, event: &str, time: u64, ms: u64) {
        let mut events = self.events.lock();
        match events.get_mut(event) {
            Some(series) => series.add(time, ms),
            None => {
                let mut series = Series::new();
                series.add(time, ms);
                events.insert(event.to_string(), series);
            }
        }
    }

    /// `LATENCY LATEST`: every event's latest sample and maximum.
    pub fn latest(&self) -> Vec<Latest> {
        self.events
            .lock()
            .iter()
            .map(|(event, series)| Latest {
                event: event.clone(),
                latest: series.latest(),
                max: series.max,
            })
            .collect()
    }

    /// `LATENCY HISTORY event`: its samples, oldest first (none for an unknown event).
    pub fn history(&self, event: &[u8]) -> Vec<Sample> {
        let events = self.events.lock();
        std::str::from_utf8(event)
            .ok()
            .and_then(|e| events.get(e))
            .map(Series::history)
            .unwrap_or_default()
    }

    /// `LATENCY RESET [event ...]`: forgets those events (every one without names, names
    /// compared without case); how many were forgotten.
    pub fn reset(&self, names: &[&[u8]]) -> usize {
        let mut events = self.events.lock();
        let before = events.len();
        if names.is_empty() {
            events.clear();
        } else {
            events.retain(|event, _| {
                !names
                    .iter()
                    .any(|n| n.eq_ignore_ascii_case(event.as_bytes()))
            });
        }
        before - events.len()
    }

    /// `LATENCY GRAPH event`: Redis's ASCII graph of its samples, each labelled with how long
    /// ago it was; `None` for an event with no samples.
    pub fn graph(&self, event: &[u8]) -> Option<String> {
        let now = crate::unix_time::unix_secs();
        self.graph_at(event, now)
    }

    fn graph_at(&self, event: &[u8], now: u64) -> Option<String> {
        let events = self.events.lock();
        let (name, series) = events.iter().find(|(e, _)| e.as_bytes() == event)?;
        let samples = series.history();
        let high = samples.iter().map(|s| s.ms).max().unwrap_or(0);
        let low = samples.iter().map(|s| s.ms).min().unwrap_or(0);
        let mut out = format!(
            "{name} - high {high} ms, low {low} ms (all time high {} ms)\n",
            series.max
        );
        out.push_str(&"-".repeat(GRAPH_COLUMNS));
        out.push('\n');
        let points: Vec<(f64, String)> = samples
            .iter()
            .map(|s| (s.ms as f64, ago(now.saturating_sub(s.time))))
            .collect();
        sparkline(&mut out, &points, GRAPH_COLUMNS, GRAPH_ROWS);
        Some(out)
    }

    /// `LATENCY DOCTOR`: Redis's report of the events, or its answer when the monitor is off
    /// and has nothing. `slowlog_us` is `slowlog-log-slower-than`, for the advice on it, and
    /// `hz` the background work's frequency, for the advice on expiry (given below 100).
    pub fn doctor(&self, slowlog_us: i64, hz: u64) -> String {
        let events = self.events.lock();
        let threshold = self.threshold();
        if events.is_empty() && threshold == 0 {
            return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this \
                    Redis instance. You may use \"CONFIG SET latency-monitor-threshold \
                    <milliseconds>.\" in order to enable it. If we weren't in a deep space \
                    mission I'd suggest to take a look at \
                    https://redis.io/topics/latency-monitor.\n"
                .to_string();
        }
        let now = crate::unix_time::unix_secs();
        let mut out = String::new();
        let (mut slowlog_enable, mut slowlog_tune, mut slowlog_inspect) = (false, false, false);
        let (mut scheduler, mut large_objects) = (false, false);
        let (mut raise_hz, mut mass_eviction) = (false, false);
        for (n, (event, series)) in events.iter().enumerate() {
            if n == 0 {
                out.push_str(
                    "Dave, I have observed latency spikes in this Redis instance. You don't \
                     mind talking about it, do you Dave?\n\n",
                );
            }
            let samples = series.history();
            let count = samples.len() as u64;
            let avg = samples.iter().map(|s| s.ms).sum::<u64>() / count.max(1);
            let mad = samples.iter().map(|s| s.ms.abs_diff(avg)).sum::<u64>() / count.max(1);
            let oldest = samples.iter().map(|s| s.time).min().unwrap_or(now);
            let period = now.saturating_sub(oldest).max(1);
            let _ = writeln!(
                out,
                "{}. {event}: {count} latency spikes (average {avg}ms, mean deviation {mad}ms, \
                 period {:.2} sec). Worst all time event {}ms.",
                n + 1,
                period as f64 / count.max(1) as f64,
                series.max
            );
            match event.as_str() {
                "command" => {
                    if slowlog_us < 0 {
                        slowlog_enable = true;
                    } else if (slowlog_us / 1000) as u64 > threshold {
                        slowlog_tune = true;
                    }
                    slowlog_inspect = true;
                    large_objects = true;
                }
                "fast-command" => scheduler = true,
                "expire-cycle" => {
                    raise_hz = true;
                    large_objects = true;
                }
                "eviction-del" => large_objects = true,
                "eviction-cycle" => mass_eviction = true,
                _ => {}
            }
        }
        let advices = [
            slowlog_enable,
            slowlog_tune,
            slowlog_inspect,
            scheduler,
            large_objects,
            raise_hz,
            mass_eviction,
        ];
        if events.is_empty() {
            out.push_str(
                "Dave, no latency spike was observed during the lifetime of this Redis \
                 instance, not in the slightest bit. I honestly think you ought to sit down \
                 calmly, take a stress pill, and think things over.\n",
            );
        } else if !advices.contains(&true) {
            out.push_str(
                "\nWhile there are latency events logged, I'm not able to suggest any easy \
                 fix. Please use the Redis community to get some help, providing this report \
                 in your help request.\n",
            );
        } else {
            out.push_str("\nI have a few advices for you:\n\n");
            let threshold_us = threshold * 1000;
            if slowlog_enable {
                let _ = writeln!(
                    out,
                    "- There are latency issues with potentially slow commands you are using. \
                     Try to enable the Slow Log Redis feature using the command 'CONFIG SET \
                     slowlog-log-slower-than {threshold_us}'. If the Slow log is disabled Redis \
                     is not able to log slow commands execution for you."
                );
            }
            if slowlog_tune {
                let _ = writeln!(
                    out,
                    "- Your current Slow Log configuration only logs events that are slower \
                     than your configured latency monitor threshold. Please use 'CONFIG SET \
                     slowlog-log-slower-than {threshold_us}'."
                );
            }
            if slowlog_inspect {
                out.push_str(
                    "- Check your Slow Log to understand what are the commands you are running \
                     which are too slow to execute. Please check \
                     https://redis.io/commands/slowlog for more information.\n",
                );
            }
            if scheduler {
                out.push_str(
                    "- The system is slow to execute Redis code paths not containing system \
                     calls. This usually means the system does not provide Redis CPU time to \
                     run for long periods. You should try to:\n  1) Lower the system load.\n  \
                     2) Use a computer / VM just for Redis if you are running other software \
                     in the same system.\n  3) Check if you have a \"noisy neighbour\" \
                     problem.\n  4) Check with 'redis-cli --intrinsic-latency 100' what is the \
                     intrinsic latency in your system.\n",
                );
            }
            if raise_hz && hz < 100 {
                out.push_str(
                    "- In order to make the Redis keys expiring process more incremental, try \
                     to set the 'hz' configuration parameter to 100 using 'CONFIG SET hz \
                     100'.\n",
                );
            }
            if large_objects {
                out.push_str(
                    "- Deleting, expiring or evicting (because of maxmemory policy) large \
                     objects is a blocking operation. If you have very large objects that are \
                     often deleted, expired, or evicted, try to fragment those objects into \
                     multiple smaller objects.\n",
                );
            }
            if mass_eviction {
                out.push_str(
                    "- Sudden changes to the 'maxmemory' setting via 'CONFIG SET', or \
                     allocation of large objects via sets or sorted sets intersections, STORE \
                     option of SORT, Redis Cluster large keys migrations (RESTORE command), may \
                     create sudden memory pressure forcing the server to block trying to evict \
                     keys. \n",
                );
            }
        }
        out
    }
}

/// `LATENCY HISTOGRAM [command ...]`: for each command that ran (of those named: a full name
/// such as `config|get`, or a container for all its subcommands; unknown names are skipped),
/// its calls and the cumulative count of calls per power-of-two bucket of microseconds, as
/// Redis 7 answers (a map by command, each `calls` and `histogram_usec`).
///
/// Redis's buckets come from an HDR histogram in nanoseconds, whose `k`th bucket ends at
/// 1024·2^k ns plus its resolution (1/128 of it): it names them 1, 2, 4, 8, 16, 33, 66, 132...
/// µs. Shoal's `k`th bucket holds the calls of at most 2^k µs and is named as Redis names its
/// `k`th; only buckets where the cumulative count grows are listed, as in Redis.
pub fn write_histogram(door: &Door, names: &[&[u8]], reply: &mut Reply<'_>) {
    let totals = door.stats.command_totals();
    let ran = |command: &Command| {
        totals
            .get(command.id as usize)
            .filter(|t| t.latency.iter().any(|&n| n > 0))
    };
    let mut chosen: Vec<&Command> = Vec::new();
    if names.is_empty() {
        chosen.extend(table().all().filter(|c| ran(c).is_some()));
    } else {
        for name in names {
            let Some(command) = table().find(name) else {
                continue;
            };
            chosen.extend(std::iter::once(command).filter(|c| ran(c).is_some()));
            chosen.extend(command.subcommands.iter().filter(|c| ran(c).is_some()));
        }
    }
    reply.map(chosen.len());
    for command in chosen {
        let Some(totals) = ran(command) else { continue };
        reply.bulk(command.spec.name.as_bytes());
        reply.map(2);
        reply.bulk(b"calls");
        reply.int(totals.latency.iter().sum::<u64>() as i64);
        reply.bulk(b"histogram_usec");
        let buckets: Vec<(u64, u64)> = totals
            .latency
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .scan(0u64, |cumulative, (k, &n)| {
                *cumulative += n;
                Some((redis_bucket_usec(k as u32), *cumulative))
            })
            .collect();
        reply.map(buckets.len());
        for (usec, cumulative) in buckets {
            reply.int(usec as i64);
            reply.int(cumulative as i64);
        }
    }
}

/// The name Redis gives its `k`th latency bucket: the highest nanosecond value of an HDR
/// histogram of 2 significant figures equivalent to 1024·2^k, in whole microseconds.
fn redis_bucket_usec(k: u32) -> u64 {
    let boundary = 1024u64 << k;
    (boundary + boundary / 128 - 1) / 1000
}

/// How long ago, as `LATENCY GRAPH` labels a sample: seconds, minutes, hours or days.
fn ago(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Appends the ASCII sparkline of `points` (value, label) to `out`, `columns` samples per
/// block and `rows` rows of curve (the area under it filled), the labels written downwards
/// under their samples after a blank line: the graph Redis draws (`sparkline.c`).
fn sparkline(out: &mut String, points: &[(f64, String)], columns: usize, rows: usize) {
    const CHARS: &[u8] = b"_o#";
    if points.is_empty() {
        return;
    }
    let min = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let max = points.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let span = if max - min == 0.0 { 1.0 } else { max - min };
    let steps = (CHARS.len() * rows) as i64;
    let labelled = points.iter().any(|p| !p.1.is_empty());
    for (block, chunk) in points.chunks(columns).enumerate() {
        if block > 0 {
            out.push('\n');
        }
        for row in 0.. {
            let mut line = vec![b' '; chunk.len()];
            let mut any = false;
            if row < rows {
                any = true;
                for (j, (value, _)) in chunk.iter().enumerate() {
                    let step = (((value - min) * steps as f64) / span) as i64;
                    let step = step.clamp(0, steps - 1);
                    let index = step - ((rows - row - 1) * CHARS.len()) as i64;
                    if (0..CHARS.len() as i64).contains(&index) {
                        line[j] = CHARS[index as usize];
                    } else if index >= CHARS.len() as i64 {
                        line[j] = b'|';
                    }
                }
            } else if labelled && row == rows {
                any = true; // the blank line above the labels
            } else {
                let at = row - rows - 1;
                for (j, (_, label)) in chunk.iter().enumerate() {
                    if let Some(&c) = label.as_bytes().get(at) {
                        line[j] = c;
                        any = true;
                    }
                }
            }
            if !any {
                break;
            }
            out.push_str(&String::from_utf8_lossy(&line));
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_above_the_threshold_are_kept_one_per_second() {
        let monitor = LatencyMonitor::default();
        monitor.command_ran(false, 50_000);
        assert!(monitor.latest().is_empty(), "off at threshold 0");
        monitor.set_threshold(10);
        monitor.command_ran(false, 9_999);
        monitor.command_ran(true, 12_000);
        assert_eq!(monitor.latest().len(), 1);
        assert_eq!(monitor.latest()[0].event, "fast-command");
        monitor.add_at("command", 100, 20);
        monitor.add_at("command", 100, 30);
        monitor.add_at("command", 100, 25);
        monitor.add_at("command", 101, 15);
        let history = monitor.history(b"command");
        assert_eq!(
            history,
            vec![Sample { time: 100, ms: 30 }, Sample { time: 101, ms: 15 }]
        );
        let latest = &monitor.latest()[0];
        assert_eq!(
            (latest.event.as_str(), latest.latest.ms, latest.max),
            ("command", 15, 30)
        );
        // A full series keeps the newest 160 seconds.
        for t in 0..200 {
            monitor.add_at("command", 1_000 + t, t);
        }
        let history = monitor.history(b"command");
        assert_eq!(history.len(), SERIES_LEN);
        assert_eq!(history[0].time, 1_040);
        assert_eq!(monitor.history(b"nope"), vec![]);
        assert_eq!(monitor.reset(&[b"COMMAND", b"nope"]), 1);
        assert_eq!(monitor.reset(&[]), 1);
        assert!(monitor.latest().is_empty());
    }

    #[test]
    fn the_graph_is_redis_s_sparkline() {
        let monitor = LatencyMonitor::default();
        monitor.set_threshold(1);
        for (t, ms) in [(100, 10), (101, 20), (102, 40), (103, 80)] {
            monitor.add_at("command", t, ms);
        }
        assert_eq!(monitor.graph_at(b"nope", 110), None);
        let graph = monitor.graph_at(b"command", 110).unwrap();
        let expected = format!(
            // Steps of 0, 10, 30 and 70 ms over 12 levels (4 rows of `_o#`): 0, 1, 5, 11;
            // then a blank line and each label written downwards.
            "command - high 80 ms, low 10 ms (all time high 80 ms)\n{}\n   #\n   |\n  #|\n_o||\n    \n1987\n0sss\ns   \n",
            "-".repeat(80)
        );
        assert_eq!(graph, expected);
    }

    #[test]
    fn buckets_are_named_as_redis_names_them() {
        let names: Vec<u64> = (0..12).map(redis_bucket_usec).collect();
        assert_eq!(names, [1, 2, 4, 8, 16, 33, 66, 132, 264, 528, 1056, 2113]);
    }

    #[test]
    fn the_doctor_says_what_redis_says() {
        let monitor = LatencyMonitor::default();
        assert!(monitor.doctor(10_000, 10).starts_with("I'm sorry, Dave"));
        monitor.set_threshold(5);
        assert!(
            monitor
                .doctor(10_000, 10)
                .starts_with("Dave, no latency spike")
        );
        monitor.add("command", 7);
        let report = monitor.doctor(10_000, 10);
        assert!(
            report.starts_with("Dave, I have observed latency spikes"),
            "{report}"
        );
        assert!(
            report.contains("1. command: 1 latency spikes (average 7ms, mean deviation 0ms"),
            "{report}"
        );
        assert!(
            report.contains("CONFIG SET slowlog-log-slower-than 5000"),
            "{report}"
        );
    }

    /// The store's events bring Redis's advice on them: `hz` (below 100) and large objects
    /// for `expire-cycle`, large objects for `eviction-del`, mass eviction for
    /// `eviction-cycle`; in Redis's order.
    #[test]
    fn the_doctor_advises_on_expiry_and_eviction() {
        let monitor = LatencyMonitor::default();
        monitor.set_threshold(1);
        monitor.add("expire-cycle", 3);
        let report = monitor.doctor(10_000, 10);
        assert!(
            report.contains("1. expire-cycle: 1 latency spikes"),
            "{report}"
        );
        let hz = report.find("'CONFIG SET hz 100'").expect("the hz advice");
        let large = report.find("- Deleting, expiring or evicting").unwrap();
        assert!(hz < large, "{report}");
        assert!(!report.contains("Sudden changes"), "{report}");
        assert!(!monitor.doctor(10_000, 100).contains("hz 100"));
        monitor.reset(&[]);
        monitor.add("eviction-cycle", 3);
        let report = monitor.doctor(10_000, 10);
        assert!(
            report.ends_with("forcing the server to block trying to evict keys. \n"),
            "{report}"
        );
        assert!(!report.contains("- Deleting"), "{report}");
        monitor.add("eviction-del", 2);
        let report = monitor.doctor(10_000, 10);
        let large = report.find("- Deleting, expiring or evicting").unwrap();
        let mass = report.find("- Sudden changes to the 'maxmemory'").unwrap();
        assert!(large < mass, "{report}");
    }
}
