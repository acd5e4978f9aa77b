//! Recording what a workload did, and checking it.
//!
//! * [`Op`] and [`History`]: every operation a client issued, when it started and ended, and
//!   how it ended ([`Outcome`]). `History` is appended to from any task or thread.
//! * [`Recorder`]: a bounded workload (writes of unique values and reads over a few keys, by
//!   several concurrent clients) run through a function the test supplies, so any client can
//!   be used: the redis crate's cluster client, shoal-client, plain connections.
//! * [`check`]: what went wrong in a history: acknowledged writes lost, stale reads, reads of
//!   values nobody wrote, and how long the service was unavailable ([`Report`]).
//!
//! ```no_run
//! # async fn example() {
//! use shoal_testkit::history::{OpKind, Recorder, Workload, check};
//! let recorder = Recorder::new(Workload::default());
//! let client = |_client: usize, op: OpKind| async move {
//!     // Send `op` to the cluster; Ok(value read) or Err(error text).
//!     # let _ = op;
//!     Ok::<Option<String>, String>(None)
//! };
//! recorder.run(client).await;
//! // ... heal every fault, then:
//! let _ = recorder.final_reads(client, std::time::Duration::from_secs(10)).await;
//! let report = check(recorder.history());
//! assert!(report.is_valid(), "{report}");
//! # }
//! ```

mod check;
mod recorder;

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use check::{
    Divergence, ImpossibleRead, LostWrite, Report, StaleRead, Window, check, check_ops,
};
pub use recorder::{Recorder, RunStats, Workload};

/// Which client issued an operation.
pub type ClientId = usize;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Set `key` to `value`.
    Write {
        /// The key.
        key: String,
        /// The value, unique in the history (the checker tells writes apart by it).
        value: String,
    },
    /// Read `key`.
    Read {
        /// The key.
        key: String,
    },
}

impl OpKind {
    /// A write of `value` to `key`.
    pub fn write(key: impl Into<String>, value: impl Into<String>) -> OpKind {
        OpKind::Write {
            key: key.into(),
            value: value.into(),
        }
    }

    /// A read of `key`.
    pub fn read(key: impl Into<String>) -> OpKind {
        OpKind::Read { key: key.into() }
    }

    /// The key it is about.
    pub fn key(&self) -> &str {
        match self {
            OpKind::Write { key, .. } | OpKind::Read { key } => key,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was done: for a read, the value read (`None`: no such key); for a write, whatever
    /// the client returned (the checker uses the write's own value).
    Ok(Option<String>),
    /// It failed with this error. A failed write is never counted as acknowledged, but the
    /// checker allows for it having happened anyway (an error after the request was sent).
    Fail(String),
    /// No answer in time (or the client gave up): it may or may not have happened, at any time
    /// after it started.
    Unknown(String),
}

impl Outcome {
    /// Whether it was done (an acknowledged write, a read that returned).
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok(_))
    }

    /// The error text of a failed or unknown outcome.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Ok(_) => None,
            Outcome::Fail(e) | Outcome::Unknown(e) => Some(e),
        }
    }
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    /// Who issued it.
    pub client: ClientId,
    /// What it asked for.
    pub kind: OpKind,
    /// When the client sent it.
    pub start: Instant,
    /// When the client had its answer (or gave up).
    pub end: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

impl Op {
    /// Whether it is a write.
    pub fn is_write(&self) -> bool {
        matches!(self.kind, OpKind::Write { .. })
    }

    /// The value a write wrote.
    pub fn written(&self) -> Option<&str> {
        match &self.kind {
            OpKind::Write { value, .. } => Some(value),
            OpKind::Read { .. } => None,
        }
    }

    /// A line about it, with times relative to `origin`.
    pub fn describe(&self, origin: Instant) -> String {
        let what = match &self.kind {
            OpKind::Write { key, value } => format!("write {key} = {value:?}"),
            OpKind::Read { key } => format!("read {key}"),
        };
        let outcome = match &self.outcome {
            Outcome::Ok(Some(v)) => format!("ok {v:?}"),
            Outcome::Ok(None) => "ok nil".to_string(),
            Outcome::Fail(e) => format!("fail: {e}"),
            Outcome::Unknown(e) => format!("unknown: {e}"),
        };
        format!(
            "{} - {}  client {} {what}: {outcome}",
            Secs(offset(origin, self.start)),
            Secs(offset(origin, self.end)),
            self.client
        )
    }
}

/// Every operation of a run, appended to from any task or thread.
#[derive(Debug)]
pub struct History {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    /// An empty history whose times are shown relative to now.
    pub fn new() -> History {
        History::with_origin(Instant::now())
    }

    /// An empty history whose times are shown relative to `origin`.
    pub fn with_origin(origin: Instant) -> History {
        History {
            origin,
            ops: Mutex::new(Vec::new()),
        }
    }

    /// Where its times count from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// Appends `op`.
    pub fn push(&self, op: Op) {
        self.lock().push(op);
    }

    /// Appends an operation.
    pub fn record(
        &self,
        client: ClientId,
        kind: OpKind,
        start: Instant,
        end: Instant,
        outcome: Outcome,
    ) {
        self.push(Op {
            client,
            kind,
            start,
            end,
            outcome,
        });
    }

    /// Appends a write of `value` to `key`.
    pub fn record_write(
        &self,
        client: ClientId,
        key: &str,
        value: &str,
        start: Instant,
        end: Instant,
        outcome: Outcome,
    ) {
        self.record(client, OpKind::write(key, value), start, end, outcome);
    }

    /// Appends a read of `key`.
    pub fn record_read(
        &self,
        client: ClientId,
        key: &str,
        start: Instant,
        end: Instant,
        outcome: Outcome,
    ) {
        self.record(client, OpKind::read(key), start, end, outcome);
    }

    /// Runs `call` (the operation `kind` against the system), timed and bounded by `timeout`,
    /// and records it: `Ok` is [`Outcome::Ok`], `Err` [`Outcome::Fail`], no answer in time
    /// [`Outcome::Unknown`]. Returns the outcome.
    pub async fn call<F>(
        &self,
        client: ClientId,
        kind: OpKind,
        timeout: Duration,
        call: F,
    ) -> Outcome
    where
        F: Future<Output = Result<Option<String>, String>>,
    {
        let start = Instant::now();
        let outcome = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(value)) => Outcome::Ok(value),
            Ok(Err(e)) => Outcome::Fail(e),
            Err(_) => Outcome::Unknown(format!("no answer within {timeout:?}")),
        };
        self.record(client, kind, start, Instant::now(), outcome.clone());
        outcome
    }

    /// A copy of every operation, by start time (ties in the order they were recorded).
    pub fn ops(&self) -> Vec<Op> {
        let mut ops = self.lock().clone();
        ops.sort_by_key(|op| op.start);
        ops
    }

    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every operation, one line each, by start time: for a failure message or a file.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for op in self.ops() {
            out.push_str(&op.describe(self.origin));
            out.push('\n');
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Op>> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `at` relative to `origin` (zero if before it).
fn offset(origin: Instant, at: Instant) -> Duration {
    at.saturating_duration_since(origin)
}

/// A duration shown in seconds with milliseconds (`1.234 s`).
struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} s", self.0.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn appends_from_many_threads_and_sorts_by_start() {
        let history = Arc::new(History::new());
        let origin = history.origin();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let history = history.clone();
                std::thread::spawn(move || {
                    for i in (0..100u64).rev() {
                        let at = origin + Duration::from_millis(i * 4 + t);
                        history.record_read(t as usize, "k", at, at, Outcome::Ok(None));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let ops = history.ops();
        assert_eq!(ops.len(), 400);
        assert_eq!(history.len(), 400);
        assert!(ops.windows(2).all(|w| w[0].start <= w[1].start));
    }

    #[tokio::test]
    async fn calls_are_timed_and_their_outcomes_recorded() {
        let history = History::new();
        let long = Duration::from_secs(2);
        let ok = history
            .call(0, OpKind::read("k"), long, async { Ok(Some("v".into())) })
            .await;
        assert_eq!(ok, Outcome::Ok(Some("v".into())));
        let failed = history
            .call(1, OpKind::write("k", "1"), long, async {
                Err("CLUSTERDOWN".into())
            })
            .await;
        assert_eq!(failed.error(), Some("CLUSTERDOWN"));
        let unknown = history
            .call(
                2,
                OpKind::write("k", "2"),
                Duration::from_millis(20),
                async { std::future::pending::<Result<Option<String>, String>>().await },
            )
            .await;
        assert!(matches!(unknown, Outcome::Unknown(_)), "{unknown:?}");
        let ops = history.ops();
        assert_eq!(ops.len(), 3);
        let timed_out = ops.iter().find(|op| op.client == 2).unwrap();
        assert!(timed_out.end - timed_out.start >= Duration::from_millis(20));
        let dump = history.dump();
        assert!(
            dump.contains("client 1 write k = \"1\": fail: CLUSTERDOWN"),
            "{dump}"
        );
        assert!(dump.contains("client 0 read k: ok \"v\""), "{dump}");
        assert!(
            dump.contains("client 2 write k = \"2\": unknown: no answer"),
            "{dump}"
        );
    }

    #[test]
    fn ops_know_their_kind() {
        let kind = OpKind::write("a", "1");
        assert_eq!(kind.key(), "a");
        assert_eq!(OpKind::read("b").key(), "b");
        let now = Instant::now();
        let op = Op {
            client: 0,
            kind,
            start: now,
            end: now,
            outcome: Outcome::Ok(None),
        };
        assert!(op.is_write() && op.outcome.is_ok());
        assert_eq!(op.written(), Some("1"));
        assert_eq!(Outcome::Ok(None).error(), None);
        // Times before the origin show as zero instead of failing.
        let later = History::with_origin(now + Duration::from_secs(1));
        assert!(op.describe(later.origin()).starts_with("0.000 s - 0.000 s"));
    }
}
