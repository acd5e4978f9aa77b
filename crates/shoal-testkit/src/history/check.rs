//! What went wrong in a [`History`]: acknowledged writes lost, stale reads, impossible reads,
//! and unavailability.
//!
//! Every key is a register, written with values unique in the history, so a value read names
//! the write it came from. An operation took effect at some instant between its start and its
//! end; a write that failed or timed out may have taken effect *at any time after it started*
//! (a request held in a partition can land much later), so it can explain a value that is
//! read but is never counted as acknowledged. Only writes that were acknowledged (`Ok`) can be
//! lost or make a read stale.
//!
//! * **Lost write.** The *final reads* of a key are its successful reads that started after
//!   every write to it had ended (the test reads every key after healing, see
//!   [`super::Recorder::final_reads`]); the last of them gives the key's final value. An
//!   acknowledged write `w` is lost when the final value is not its own and cannot have been
//!   written after it: the key is absent, or nobody wrote the value, or every write of the
//!   value was acknowledged before `w` started. A write overwritten by a later (or
//!   concurrent) write whose value is final is not lost; neither is any write while the final
//!   value's write failed or timed out (it may have landed last).
//! * **Stale read.** A read returned `v1`, written by `w1`, although some acknowledged `w2` to
//!   the same key had ended before the read started and had started after `w1` ended; or it
//!   returned nothing although an acknowledged write had ended before it started.
//! * **Impossible read.** A read returned a value no write wrote, or one whose every write
//!   started after the read had ended.
//! * **Divergence.** A key's final reads disagree (no write was in flight between them).
//! * **Unavailability.** A failure window is a maximal run of operations, in order of start,
//!   that all failed or timed out; it lasts from the first one's start to the start of the next
//!   successful operation (or the last one's end). The report gives the windows, the longest,
//!   their total, and the longest window of a single key (one shard down while others serve).
//!
//! This is not a full linearizability check (it does not use earlier reads to order
//! concurrent writes), but everything it reports is a real violation.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use super::{ClientId, History, Op, OpKind, Outcome, Secs, offset};

/// How many examples of each kind [`Report`]'s `Display` shows.
const SHOWN: usize = 10;

/// An acknowledged write whose value is gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostWrite {
    /// Who wrote it.
    pub client: ClientId,
    /// The key.
    pub key: String,
    /// The value written.
    pub value: String,
    /// When the write started (from the history's origin).
    pub start: Duration,
    /// When it was acknowledged.
    pub end: Duration,
    /// What the final read found instead (`None`: no such key).
    pub final_value: Option<String>,
}

/// A read that returned an older value than one already acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaleRead {
    /// Who read.
    pub client: ClientId,
    /// The key.
    pub key: String,
    /// What it returned (`None`: no such key).
    pub value: Option<String>,
    /// When the read started.
    pub start: Duration,
    /// When it returned.
    pub end: Duration,
    /// The newer value, acknowledged before the read started.
    pub newer_value: String,
    /// When that value's write was acknowledged.
    pub newer_acked: Duration,
}

/// A read no write can explain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImpossibleRead {
    /// Who read.
    pub client: ClientId,
    /// The key.
    pub key: String,
    /// What it returned.
    pub value: String,
    /// When the read started.
    pub start: Duration,
    /// When it returned.
    pub end: Duration,
    /// Why it is impossible.
    pub reason: String,
}

/// A key whose final reads disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The key.
    pub key: String,
    /// What the final reads returned, in order of start.
    pub values: Vec<Option<String>>,
}

/// A time during which every operation that started failed or timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// When its first failed operation started (from the history's origin).
    pub start: Duration,
    /// When the next successful operation started (or the last failed one ended).
    pub end: Duration,
    /// Operations that failed in it.
    pub ops: usize,
    /// The first one's error.
    pub first_error: String,
}

impl Window {
    /// How long it lasted.
    pub fn duration(&self) -> Duration {
        self.end.saturating_sub(self.start)
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Operations in the history.
    pub ops: usize,
    /// Of which done.
    pub ok: usize,
    /// Of which failed.
    pub failed: usize,
    /// Of which unknown.
    pub unknown: usize,
    /// Reads.
    pub reads: usize,
    /// Writes.
    pub writes: usize,
    /// Acknowledged writes.
    pub acked_writes: usize,
    /// Acknowledged writes of the keys that had a final read (what `lost` is out of).
    pub checked_writes: usize,
    /// From the first operation's start to the last one's end.
    pub span: Duration,
    /// Acknowledged writes lost.
    pub lost: Vec<LostWrite>,
    /// Stale reads.
    pub stale: Vec<StaleRead>,
    /// Reads no write explains.
    pub impossible: Vec<ImpossibleRead>,
    /// Keys whose final reads disagree.
    pub divergent: Vec<Divergence>,
    /// Keys with acknowledged writes but no final read: their writes were not checked.
    pub unchecked_keys: Vec<String>,
    /// Failure windows, by start.
    pub windows: Vec<Window>,
    /// The longest of them.
    pub longest_window: Option<Window>,
    /// Their total length.
    pub unavailable: Duration,
    /// The longest failure window of a single key, with the key.
    pub longest_key_window: Option<(String, Window)>,
}

impl Report {
    /// Whether nothing was lost, stale, impossible or divergent (unavailability and unchecked
    /// keys are for the test to judge).
    pub fn is_valid(&self) -> bool {
        self.lost.is_empty()
            && self.stale.is_empty()
            && self.impossible.is_empty()
            && self.divergent.is_empty()
    }
}

/// Checks `history` (see the module's doc).
pub fn check(history: &History) -> Report {
    check_ops(&history.ops(), history.origin())
}

/// Checks `ops`, with times in the report relative to `origin`.
pub fn check_ops(ops: &[Op], origin: Instant) -> Report {
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by_key(|op| op.start);
    let mut report = Report {
        ops: ops.len(),
        ..Report::default()
    };
    for op in &ops {
        match op.outcome {
            Outcome::Ok(_) => report.ok += 1,
            Outcome::Fail(_) => report.failed += 1,
            Outcome::Unknown(_) => report.unknown += 1,
        }
        if op.is_write() {
            report.writes += 1;
            if op.outcome.is_ok() {
                report.acked_writes += 1;
            }
        } else {
            report.reads += 1;
        }
    }
    if let (Some(first), Some(last)) = (ops.first(), ops.iter().map(|op| op.end).max()) {
        report.span = last.saturating_duration_since(first.start);
    }

    let mut keys: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in &ops {
        keys.entry(op.kind.key()).or_default().push(op);
    }
    for (key, key_ops) in &keys {
        let register = Register::new(key_ops);
        register.check_reads(key, origin, &mut report);
        register.check_final(key, origin, &mut report);
        if let Some(window) = longest(failure_windows(key_ops, origin))
            && report
                .longest_key_window
                .as_ref()
                .is_none_or(|(_, w)| window.duration() > w.duration())
        {
            report.longest_key_window = Some((key.to_string(), window));
        }
    }

    report.windows = failure_windows(&ops, origin);
    report.unavailable = report.windows.iter().map(Window::duration).sum();
    report.longest_window = longest(report.windows.clone());
    report
}

/// The operations on one key.
struct Register<'a> {
    ops: &'a [&'a Op],
    /// Writes by the value they wrote.
    by_value: HashMap<&'a str, Vec<&'a Op>>,
    /// Acknowledged writes by end.
    acked: Vec<&'a Op>,
    /// For each prefix of `acked`, the index of its write that started last.
    latest_start: Vec<usize>,
}

impl<'a> Register<'a> {
    fn new(ops: &'a [&'a Op]) -> Register<'a> {
        let mut by_value: HashMap<&str, Vec<&Op>> = HashMap::new();
        let mut acked = Vec::new();
        for op in ops {
            if let Some(value) = op.written() {
                by_value.entry(value).or_default().push(op);
                if op.outcome.is_ok() {
                    acked.push(*op);
                }
            }
        }
        acked.sort_by_key(|op| op.end);
        let mut latest_start: Vec<usize> = Vec::with_capacity(acked.len());
        for (i, op) in acked.iter().enumerate() {
            let best = match latest_start.last() {
                Some(&j) if acked[j].start >= op.start => j,
                _ => i,
            };
            latest_start.push(best);
        }
        Register {
            ops,
            by_value,
            acked,
            latest_start,
        }
    }

    /// The latest instant by which some write of `value` surely took effect: the latest
    /// end among them, or `None` (no bound) when one was not acknowledged. `Err` when no
    /// write wrote it.
    fn took_effect_by(&self, value: &str) -> Result<Option<Instant>, ()> {
        let writes = self.by_value.get(value).ok_or(())?;
        let mut latest = None;
        for w in writes {
            if !w.outcome.is_ok() {
                return Ok(None);
            }
            latest = latest.max(Some(w.end));
        }
        Ok(latest)
    }

    /// The acknowledged write that ended before `at` and started last, if any.
    fn latest_acked_before(&self, at: Instant) -> Option<&'a Op> {
        let n = self.acked.partition_point(|w| w.end < at);
        n.checked_sub(1).map(|i| self.acked[self.latest_start[i]])
    }

    fn check_reads(&self, key: &str, origin: Instant, report: &mut Report) {
        for read in self.ops.iter().filter(|op| !op.is_write()) {
            let Outcome::Ok(value) = &read.outcome else {
                continue;
            };
            let newer = self.latest_acked_before(read.start);
            let stale_against = match value {
                None => newer,
                Some(v) => {
                    let (Some(writes), Ok(by)) =
                        (self.by_value.get(v.as_str()), self.took_effect_by(v))
                    else {
                        report.impossible.push(impossible(
                            read,
                            v,
                            origin,
                            "no write wrote this value".into(),
                        ));
                        continue;
                    };
                    if writes.iter().all(|w| w.start > read.end) {
                        report.impossible.push(impossible(
                            read,
                            v,
                            origin,
                            "its write started after the read ended".into(),
                        ));
                        continue;
                    }
                    // Stale only if the newer write surely came after every write of `v`.
                    newer.filter(|w2| by.is_some_and(|by| w2.start > by))
                }
            };
            if let Some(w2) = stale_against {
                report.stale.push(StaleRead {
                    client: read.client,
                    key: key.to_string(),
                    value: value.clone(),
                    start: offset(origin, read.start),
                    end: offset(origin, read.end),
                    newer_value: w2.written().unwrap_or_default().to_string(),
                    newer_acked: offset(origin, w2.end),
                });
            }
        }
    }

    fn check_final(&self, key: &str, origin: Instant, report: &mut Report) {
        let quiet_from = self
            .ops
            .iter()
            .filter(|op| op.is_write())
            .map(|op| op.end)
            .max();
        let finals: Vec<&Op> = self
            .ops
            .iter()
            .filter(|op| {
                matches!(op.kind, OpKind::Read { .. })
                    && op.outcome.is_ok()
                    && quiet_from.is_none_or(|q| op.start > q)
            })
            .copied()
            .collect();
        let final_values: Vec<Option<String>> = finals
            .iter()
            .map(|op| match &op.outcome {
                Outcome::Ok(v) => v.clone(),
                _ => None,
            })
            .collect();
        // A change to the value of a write that was not acknowledged may be that write
        // landing late; any other change between final reads is a divergence.
        let late = |v: &Option<String>| {
            v.as_deref()
                .is_some_and(|v| matches!(self.took_effect_by(v), Ok(None)))
        };
        if final_values
            .windows(2)
            .any(|pair| pair[0] != pair[1] && !late(&pair[1]))
        {
            report.divergent.push(Divergence {
                key: key.to_string(),
                values: final_values.clone(),
            });
        }
        if self.acked.is_empty() {
            return;
        }
        // `finals` are by start (the ops are): the last read is the final word.
        let Some(final_value) = final_values.last() else {
            report.unchecked_keys.push(key.to_string());
            return;
        };
        report.checked_writes += self.acked.len();
        // The final value's write took effect by this instant (`None`: no bound); a write
        // that started after it cannot have been overwritten by it.
        let last_by = match final_value {
            None => None,
            Some(v) => self.took_effect_by(v).ok(),
        };
        for w in &self.acked {
            let value = w.written().unwrap_or_default();
            if final_value.as_deref() == Some(value) {
                continue;
            }
            let lost = match last_by {
                // Absent, or a value nobody wrote: nothing overwrote `w`.
                None => true,
                // Written by a write that may have landed at any time: maybe after `w`.
                Some(None) => false,
                Some(Some(by)) => by < w.start,
            };
            if lost {
                report.lost.push(LostWrite {
                    client: w.client,
                    key: key.to_string(),
                    value: value.to_string(),
                    start: offset(origin, w.start),
                    end: offset(origin, w.end),
                    final_value: final_value.clone(),
                });
            }
        }
    }
}

fn impossible(read: &Op, value: &str, origin: Instant, reason: String) -> ImpossibleRead {
    ImpossibleRead {
        client: read.client,
        key: read.kind.key().to_string(),
        value: value.to_string(),
        start: offset(origin, read.start),
        end: offset(origin, read.end),
        reason,
    }
}

/// The failure windows of `ops` (sorted by start).
fn failure_windows(ops: &[&Op], origin: Instant) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut open: Option<(Window, Instant)> = None;
    for op in ops {
        if op.outcome.is_ok() {
            if let Some((mut window, _)) = open.take() {
                window.end = offset(origin, op.start);
                windows.push(window);
            }
        } else if let Some((window, last_end)) = open.as_mut() {
            window.ops += 1;
            *last_end = (*last_end).max(op.end);
        } else {
            let window = Window {
                start: offset(origin, op.start),
                end: offset(origin, op.end),
                ops: 1,
                first_error: op.outcome.error().unwrap_or_default().to_string(),
            };
            open = Some((window, op.end));
        }
    }
    if let Some((mut window, last_end)) = open {
        window.end = offset(origin, last_end);
        windows.push(window);
    }
    windows
}

/// The longest window (the first of equals).
fn longest(windows: Vec<Window>) -> Option<Window> {
    windows.into_iter().reduce(|best, w| {
        if w.duration() > best.duration() {
            w
        } else {
            best
        }
    })
}

fn show_value(value: &Option<String>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "nil".to_string(),
    }
}

fn show_window(w: &Window) -> String {
    format!(
        "{} ({} - {}, {} ops failed, first: {})",
        Secs(w.duration()),
        Secs(w.start),
        Secs(w.end),
        w.ops,
        w.first_error
    )
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "history: {} ops over {} (ok {}, failed {}, unknown {}); {} reads, {} writes, {} acked",
            self.ops,
            Secs(self.span),
            self.ok,
            self.failed,
            self.unknown,
            self.reads,
            self.writes,
            self.acked_writes
        )?;
        writeln!(
            f,
            "lost writes: {} of {} acked writes checked",
            self.lost.len(),
            self.checked_writes
        )?;
        for l in self.lost.iter().take(SHOWN) {
            writeln!(
                f,
                "  {} = {:?} by client {}, acked at {} (sent {}); final value {}",
                l.key,
                l.value,
                l.client,
                Secs(l.end),
                Secs(l.start),
                show_value(&l.final_value)
            )?;
        }
        more(f, self.lost.len())?;
        writeln!(f, "stale reads: {}", self.stale.len())?;
        for s in self.stale.iter().take(SHOWN) {
            writeln!(
                f,
                "  client {} read {} = {} at {} - {}, but {:?} was acked at {}",
                s.client,
                s.key,
                show_value(&s.value),
                Secs(s.start),
                Secs(s.end),
                s.newer_value,
                Secs(s.newer_acked)
            )?;
        }
        more(f, self.stale.len())?;
        writeln!(f, "impossible reads: {}", self.impossible.len())?;
        for i in self.impossible.iter().take(SHOWN) {
            writeln!(
                f,
                "  client {} read {} = {:?} at {} - {}: {}",
                i.client,
                i.key,
                i.value,
                Secs(i.start),
                Secs(i.end),
                i.reason
            )?;
        }
        more(f, self.impossible.len())?;
        writeln!(f, "divergent final reads: {}", self.divergent.len())?;
        for d in self.divergent.iter().take(SHOWN) {
            let values: Vec<String> = d.values.iter().map(show_value).collect();
            writeln!(f, "  {}: {}", d.key, values.join(", "))?;
        }
        more(f, self.divergent.len())?;
        if !self.unchecked_keys.is_empty() {
            writeln!(
                f,
                "unchecked keys (acked writes, no final read): {}",
                self.unchecked_keys.join(", ")
            )?;
        }
        match &self.longest_window {
            None => writeln!(f, "unavailability: none")?,
            Some(w) => {
                writeln!(
                    f,
                    "unavailability: {} in {} windows; longest {}",
                    Secs(self.unavailable),
                    self.windows.len(),
                    show_window(w)
                )?;
                if let Some((key, w)) = &self.longest_key_window {
                    writeln!(f, "  longest on one key: {key}, {}", show_window(w))?;
                }
            }
        }
        if self.is_valid() {
            write!(f, "verdict: VALID")
        } else {
            write!(
                f,
                "verdict: INVALID ({} lost, {} stale, {} impossible, {} divergent)",
                self.lost.len(),
                self.stale.len(),
                self.impossible.len(),
                self.divergent.len()
            )
        }
    }
}

fn more(f: &mut fmt::Formatter<'_>, n: usize) -> fmt::Result {
    if n > SHOWN {
        writeln!(f, "  ... and {} more", n - SHOWN)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history built by hand, times in milliseconds from its origin.
    struct Hist {
        h: History,
    }

    fn ok(v: &str) -> Outcome {
        Outcome::Ok(Some(v.to_string()))
    }

    const NIL: Outcome = Outcome::Ok(None);

    fn fail() -> Outcome {
        Outcome::Fail("CLUSTERDOWN".into())
    }

    fn unknown() -> Outcome {
        Outcome::Unknown("timed out".into())
    }

    impl Hist {
        fn new() -> Hist {
            Hist { h: History::new() }
        }

        fn at(&self, ms: u64) -> Instant {
            self.h.origin() + Duration::from_millis(ms)
        }

        fn write(&self, key: &str, value: &str, start: u64, end: u64, outcome: Outcome) -> &Self {
            let (s, e) = (self.at(start), self.at(end));
            self.h.record_write(0, key, value, s, e, outcome);
            self
        }

        fn read(&self, key: &str, start: u64, end: u64, outcome: Outcome) -> &Self {
            self.h
                .record_read(1, key, self.at(start), self.at(end), outcome);
            self
        }

        fn check(&self) -> Report {
            check(&self.h)
        }
    }

    fn lost_values(r: &Report) -> Vec<&str> {
        r.lost.iter().map(|l| l.value.as_str()).collect()
    }

    #[test]
    fn an_acked_write_missing_at_the_end_is_lost() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK")).read("k", 100, 101, NIL);
        let r = h.check();
        assert_eq!(lost_values(&r), ["a"]);
        assert_eq!(r.lost[0].final_value, None);
        assert_eq!(r.lost[0].end, Duration::from_millis(10));
        assert_eq!((r.checked_writes, r.acked_writes), (1, 1));
        assert!(!r.is_valid());
    }

    #[test]
    fn an_acked_write_undone_by_an_older_value_is_lost() {
        // a, then b; the end shows a again: b was lost (a was not: it is the final value).
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "b", 20, 30, ok("OK"))
            .read("k", 100, 101, ok("a"));
        let r = h.check();
        assert_eq!(lost_values(&r), ["b"]);
        assert_eq!(r.lost[0].final_value.as_deref(), Some("a"));
        // The final read is also stale: b was acked before it started.
        assert_eq!(r.stale.len(), 1);
    }

    #[test]
    fn every_write_is_lost_when_the_key_is_gone() {
        // A later unknown write does not excuse the acked ones: it did not land either.
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "b", 20, 30, ok("OK"))
            .write("k", "c", 40, 50, unknown())
            .read("k", 100, 101, NIL);
        assert_eq!(lost_values(&h.check()), ["a", "b"]);
    }

    #[test]
    fn an_overwritten_write_is_not_lost() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "b", 20, 30, ok("OK"))
            .read("k", 100, 101, ok("b"));
        let r = h.check();
        assert!(r.is_valid(), "{r}");
        assert_eq!(r.checked_writes, 2);
    }

    #[test]
    fn a_concurrent_overwrite_may_come_first_or_last() {
        // a and b overlap: either may have been applied last.
        for last in ["a", "b"] {
            let h = Hist::new();
            h.write("k", "a", 0, 20, ok("OK"))
                .write("k", "b", 10, 30, ok("OK"))
                .read("k", 100, 101, ok(last));
            let r = h.check();
            assert!(r.is_valid(), "{last}: {r}");
        }
    }

    #[test]
    fn unknown_and_failed_writes_are_treated_conservatively() {
        // x timed out before a started, yet may have landed after a: a is not lost.
        let h = Hist::new();
        h.write("k", "x", 0, 5, unknown())
            .write("k", "a", 10, 20, ok("OK"))
            .read("k", 100, 101, ok("x"));
        let r = h.check();
        assert!(r.is_valid(), "{r}");
        // The same for a failed write whose value shows up: it happened after all.
        let h = Hist::new();
        h.write("k", "x", 0, 5, fail())
            .write("k", "a", 10, 20, ok("OK"))
            .read("k", 100, 101, ok("x"));
        assert!(h.check().is_valid());
        // Unacknowledged writes are never counted as lost themselves.
        let h = Hist::new();
        h.write("k", "x", 0, 5, unknown())
            .write("k", "y", 6, 8, fail())
            .read("k", 100, 101, NIL);
        let r = h.check();
        assert!(r.is_valid(), "{r}");
        assert_eq!(
            (r.acked_writes, r.writes, r.unknown, r.failed),
            (0, 2, 1, 1)
        );
    }

    #[test]
    fn the_last_final_read_decides_and_disagreement_is_reported() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "b", 20, 30, ok("OK"))
            .read("k", 100, 101, ok("b"))
            .read("k", 110, 111, ok("a"));
        let r = h.check();
        assert_eq!(lost_values(&r), ["b"]);
        assert_eq!(
            r.divergent,
            [Divergence {
                key: "k".into(),
                values: vec![Some("b".into()), Some("a".into())],
            }]
        );
    }

    #[test]
    fn an_unacked_write_landing_between_final_reads_is_no_divergence() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "x", 20, 30, unknown())
            .read("k", 100, 101, ok("a"))
            .read("k", 110, 111, ok("x"));
        let r = h.check();
        assert!(r.is_valid(), "{r}");
    }

    #[test]
    fn a_key_without_a_final_read_is_unchecked() {
        // The only read started before the write ended: not a final read.
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .read("k", 5, 6, NIL)
            .write("j", "b", 0, 10, ok("OK"))
            .read("j", 20, 21, fail());
        let r = h.check();
        assert_eq!(r.unchecked_keys, ["j", "k"]);
        assert_eq!(r.checked_writes, 0);
        assert!(r.is_valid(), "unchecked is not invalid: {r}");
        assert!(r.to_string().contains("unchecked keys"), "{r}");
    }

    #[test]
    fn a_read_older_than_an_acked_write_is_stale() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "b", 20, 30, ok("OK"))
            .read("k", 40, 41, ok("a"))
            .read("k", 100, 101, ok("b"));
        let r = h.check();
        assert_eq!(r.stale.len(), 1, "{r}");
        let s = &r.stale[0];
        assert_eq!(
            (s.value.as_deref(), s.newer_value.as_str()),
            (Some("a"), "b")
        );
        assert_eq!(s.newer_acked, Duration::from_millis(30));
        assert!(r.lost.is_empty());
        // Reading nothing after an acked write is stale too.
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .read("k", 40, 41, NIL)
            .read("k", 100, 101, ok("a"));
        let r = h.check();
        assert_eq!(r.stale.len(), 1);
        assert_eq!(r.stale[0].value, None);
    }

    #[test]
    fn reads_concurrent_with_writes_are_not_stale() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            // b overlaps the read: the read may come first.
            .write("k", "b", 20, 50, ok("OK"))
            .read("k", 30, 31, ok("a"))
            // c overlaps a (both acked before the read): either may be the later one.
            .write("j", "a2", 0, 20, ok("OK"))
            .write("j", "c", 10, 30, ok("OK"))
            .read("j", 40, 41, ok("a2"))
            // Reading nothing before any write ended is fine.
            .read("i", 0, 1, NIL)
            .write("i", "d", 0, 10, ok("OK"));
        let r = h.check();
        assert!(r.stale.is_empty(), "{r}");
        assert!(r.impossible.is_empty(), "{r}");
    }

    #[test]
    fn a_read_of_an_unacked_write_is_never_stale() {
        // x timed out, so it may have landed after b: reading it later is fine.
        let h = Hist::new();
        h.write("k", "x", 0, 10, unknown())
            .write("k", "b", 20, 30, ok("OK"))
            .read("k", 40, 41, ok("x"));
        let r = h.check();
        assert!(r.stale.is_empty(), "{r}");
        assert!(r.is_valid(), "{r}");
    }

    #[test]
    fn values_nobody_wrote_or_from_the_future_are_impossible() {
        let h = Hist::new();
        h.read("k", 0, 1, ok("ghost"))
            .read("k", 2, 3, ok("later"))
            .write("k", "later", 10, 20, ok("OK"));
        let r = h.check();
        assert_eq!(r.impossible.len(), 2, "{r}");
        assert!(r.impossible[0].reason.contains("no write"));
        assert!(r.impossible[1].reason.contains("after the read ended"));
        assert!(!r.is_valid());
    }

    #[test]
    fn failure_windows_run_until_the_next_success() {
        let h = Hist::new();
        h.read("k", 0, 1, NIL)
            .read("k", 10, 12, fail())
            .read("k", 20, 25, unknown())
            .read("k", 30, 31, NIL) // closes [10, 30)
            .read("k", 40, 45, fail())
            .read("k", 50, 51, NIL) // closes [40, 50)
            .read("k", 60, 70, fail())
            .read("k", 61, 90, unknown()); // open at the end: closes at the last end, 90
        let r = h.check();
        let spans: Vec<(u128, u128, usize)> = r
            .windows
            .iter()
            .map(|w| (w.start.as_millis(), w.end.as_millis(), w.ops))
            .collect();
        assert_eq!(spans, [(10, 30, 2), (40, 50, 1), (60, 90, 2)]);
        assert_eq!(r.windows[0].first_error, "CLUSTERDOWN");
        let longest = r.longest_window.clone().unwrap();
        assert_eq!(longest.duration(), Duration::from_millis(30));
        assert_eq!(longest.start, Duration::from_millis(60));
        assert_eq!(r.unavailable, Duration::from_millis(60));
        assert!(r.to_string().contains("0.060 s in 3 windows"), "{r}");
    }

    #[test]
    fn a_success_in_between_splits_windows_but_not_a_keys_window() {
        // k fails from 0 to 50 while j keeps working: globally the windows are short, but k's
        // own window is 50 ms long.
        let h = Hist::new();
        for t in (0..50).step_by(10) {
            h.read("k", t, t + 1, fail()).read("j", t + 5, t + 6, NIL);
        }
        h.read("k", 50, 51, NIL);
        let r = h.check();
        assert_eq!(r.windows.len(), 5);
        assert_eq!(
            r.longest_window.unwrap().duration(),
            Duration::from_millis(5)
        );
        let (key, w) = r.longest_key_window.unwrap();
        assert_eq!(
            (key.as_str(), w.duration(), w.ops),
            ("k", Duration::from_millis(50), 5)
        );
    }

    #[test]
    fn an_empty_or_healthy_history_is_valid() {
        let r = check(&History::new());
        assert!(r.is_valid());
        assert_eq!(r.ops, 0);
        assert!(r.to_string().contains("unavailability: none"), "{r}");
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .read("k", 20, 21, ok("a"))
            .read("k", 30, 31, ok("a"));
        let r = h.check();
        assert!(r.is_valid(), "{r}");
        assert_eq!(r.span, Duration::from_millis(31));
        assert!(r.to_string().ends_with("verdict: VALID"), "{r}");
    }

    #[test]
    fn the_report_reads_well() {
        let h = Hist::new();
        h.write("k", "a", 0, 10, ok("OK"))
            .write("k", "b", 20, 30, ok("OK"))
            .read("k", 40, 41, ok("a"))
            .read("k", 50, 55, fail())
            .read("k", 100, 101, ok("a"));
        let text = h.check().to_string();
        for expected in [
            "history: 5 ops over 0.101 s (ok 4, failed 1, unknown 0); 3 reads, 2 writes, 2 acked",
            "lost writes: 1 of 2 acked writes checked",
            "  k = \"b\" by client 0, acked at 0.030 s (sent 0.020 s); final value \"a\"",
            "stale reads: 2",
            "  client 1 read k = \"a\" at 0.040 s - 0.041 s, but \"b\" was acked at 0.030 s",
            "unavailability: 0.050 s in 1 windows; longest 0.050 s (0.050 s - 0.100 s, 1 ops \
             failed, first: CLUSTERDOWN)",
            "verdict: INVALID (1 lost, 2 stale, 0 impossible, 0 divergent)",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }

    #[test]
    fn many_anomalies_are_summarized() {
        let h = Hist::new();
        for i in 0..25 {
            h.write(&format!("k{i:02}"), "v", 0, 1, ok("OK")).read(
                &format!("k{i:02}"),
                10,
                11,
                NIL,
            );
        }
        let r = h.check();
        assert_eq!(r.lost.len(), 25);
        let text = r.to_string();
        assert!(text.contains("... and 15 more"), "{text}");
    }

    #[test]
    fn a_large_history_checks_quickly() {
        let h = Hist::new();
        for i in 0..20_000u64 {
            let key = format!("k{}", i % 10);
            h.write(&key, &format!("v{i}"), i * 2, i * 2 + 1, ok("OK"));
            h.read(&key, i * 2 + 1, i * 2 + 2, ok(&format!("v{i}")));
        }
        let started = Instant::now();
        let r = h.check();
        assert!(r.is_valid(), "{r}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
}
