//! A bounded workload run through a function the test supplies, every operation recorded.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{ClientId, History, OpKind, Outcome};
use crate::error::{Error, Result};

/// What a [`Recorder`] runs.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Concurrent clients, each issuing one operation at a time [default: 4].
    pub clients: usize,
    /// Keys written and read: `{key_prefix}0` .. `{key_prefix}{keys - 1}` [default: 8].
    pub keys: usize,
    /// What every key starts with [default: `k`]; a `{hash tag}` puts them all in one slot.
    pub key_prefix: String,
    /// Share of reads among operations, in percent (above 100 counts as 100) [default: 50].
    pub read_percent: u8,
    /// How long [`Recorder::run`] goes on [default: 5 s].
    pub duration: Duration,
    /// Most operations one [`Recorder::run`] issues, over all clients [default: none].
    pub max_ops: Option<usize>,
    /// How long an operation may take before it counts as [`Outcome::Unknown`] [default: 1 s].
    pub op_timeout: Duration,
    /// Pause of each client between two operations [default: 1 ms], so a workload on a small
    /// machine leaves the nodes room.
    pub pause: Duration,
    /// Seed of the clients' choices (key, read or write), for a repeatable sequence.
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            clients: 4,
            keys: 8,
            key_prefix: "k".into(),
            read_percent: 50,
            duration: Duration::from_secs(5),
            max_ops: None,
            op_timeout: Duration::from_secs(1),
            pause: Duration::from_millis(1),
            seed: 0x5eed,
        }
    }
}

impl Workload {
    /// The name of key `i`.
    pub fn key(&self, i: usize) -> String {
        format!("{}{i}", self.key_prefix)
    }

    /// Every key of the workload.
    pub fn all_keys(&self) -> Vec<String> {
        (0..self.keys).map(|i| self.key(i)).collect()
    }
}

/// What one [`Recorder::run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Operations issued.
    pub ops: usize,
    /// Of which done.
    pub ok: usize,
    /// Of which failed.
    pub failed: usize,
    /// Of which unknown (timed out, or the operation panicked).
    pub unknown: usize,
    /// How long the run took.
    pub elapsed: Duration,
}

/// Runs a [`Workload`] and records every operation in its [`History`].
///
/// Writes set a key to a value unique in the recorder's life, `"{client}-{seq}"`, so a value
/// read tells which write it came from. Each operation runs as its own tokio task, bounded by
/// [`Workload::op_timeout`]: one that panics or hangs is recorded as [`Outcome::Unknown`]
/// and the workload goes on.
#[derive(Debug)]
pub struct Recorder {
    workload: Workload,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
}

impl Recorder {
    /// A recorder with a fresh history.
    pub fn new(workload: Workload) -> Recorder {
        Recorder::with_history(workload, Arc::new(History::new()))
    }

    /// A recorder appending to `history` (shared with other recorders or the test's own ops).
    pub fn with_history(workload: Workload, history: Arc<History>) -> Recorder {
        Recorder {
            workload,
            history,
            stop: Arc::new(AtomicBool::new(false)),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Its workload.
    pub fn workload(&self) -> &Workload {
        &self.workload
    }

    /// Its history.
    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Makes a running [`Recorder::run`] end after each client's current operation (and the
    /// next runs end at once, until [`Recorder::reset_stop`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Lets runs go on again after [`Recorder::stop`].
    pub fn reset_stop(&self) {
        self.stop.store(false, Ordering::SeqCst);
    }

    /// Runs the workload: [`Workload::clients`] clients, each issuing operations through `op`
    /// (`op(client, kind)`: `Ok(value read)` for a read, `Ok(anything)` for a write, `Err(error
    /// text)`), until [`Workload::duration`] has passed, [`Workload::max_ops`] were issued,
    /// or [`Recorder::stop`]. Must run on a tokio runtime.
    pub async fn run<F, Fut>(&self, op: F) -> RunStats
    where
        F: Fn(ClientId, OpKind) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>, String>> + Send + 'static,
    {
        let started = Instant::now();
        let w = &self.workload;
        if w.clients == 0 || w.keys == 0 {
            return RunStats::default();
        }
        let op = Arc::new(op);
        let budget = Arc::new(AtomicUsize::new(w.max_ops.unwrap_or(usize::MAX)));
        let deadline = started + w.duration;
        // Aborted if this future is dropped (a test's timeout): no client outlives its run.
        let mut clients = AbortOnDrop(Vec::with_capacity(w.clients));
        for client in 0..w.clients {
            let ctx = ClientCtx {
                client,
                workload: w.clone(),
                history: self.history.clone(),
                stop: self.stop.clone(),
                seq: self.seq.clone(),
                budget: budget.clone(),
                deadline,
            };
            clients.0.push(tokio::spawn(ctx.run(op.clone())));
        }
        let mut stats = RunStats::default();
        for client in &mut clients.0 {
            // A client's loop does not panic (its operations run in their own tasks).
            if let Ok(one) = client.await {
                stats.ops += one.ops;
                stats.ok += one.ok;
                stats.failed += one.failed;
                stats.unknown += one.unknown;
            }
        }
        stats.elapsed = started.elapsed();
        stats
    }

    /// Reads every key of the workload once it is quiet, retrying each until a read is done or
    /// `within` has passed, every attempt recorded (as client [`Workload::clients`]): the
    /// final reads [`super::check`] compares acknowledged writes with. Fails naming the keys
    /// never read.
    pub async fn final_reads<F, Fut>(&self, op: F, within: Duration) -> Result<()>
    where
        F: Fn(ClientId, OpKind) -> Fut,
        Fut: Future<Output = Result<Option<String>, String>>,
    {
        let client = self.workload.clients;
        let deadline = Instant::now() + within;
        let mut unread = Vec::new();
        for key in self.workload.all_keys() {
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let timeout = self.workload.op_timeout.min(left);
                let outcome = self
                    .history
                    .call(
                        client,
                        OpKind::read(&key),
                        timeout,
                        op(client, OpKind::read(&key)),
                    )
                    .await;
                let error = match outcome {
                    Outcome::Ok(_) => break,
                    Outcome::Fail(e) | Outcome::Unknown(e) => e,
                };
                if Instant::now() >= deadline {
                    unread.push(format!("{key} ({error})"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if unread.is_empty() {
            Ok(())
        } else {
            Err(Error::Timeout {
                what: "the final reads".into(),
                waited: within,
                detail: format!("never read: {}", unread.join(", ")),
            })
        }
    }
}

/// Tasks aborted when dropped.
struct AbortOnDrop<T>(Vec<tokio::task::JoinHandle<T>>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One client of a run.
struct ClientCtx {
    client: ClientId,
    workload: Workload,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
    seq: Arc<AtomicU64>,
    budget: Arc<AtomicUsize>,
    deadline: Instant,
}

impl ClientCtx {
    async fn run<F, Fut>(self, op: Arc<F>) -> RunStats
    where
        F: Fn(ClientId, OpKind) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<String>, String>> + Send + 'static,
    {
        let w = &self.workload;
        let mut rng = Rng::new(w.seed ^ (self.client as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let mut stats = RunStats::default();
        while !self.stop.load(Ordering::SeqCst) && Instant::now() < self.deadline && self.take() {
            let key = w.key(rng.below(w.keys as u64) as usize);
            let kind = if rng.below(100) < u64::from(w.read_percent) {
                OpKind::Read { key }
            } else {
                let seq = self.seq.fetch_add(1, Ordering::Relaxed);
                OpKind::Write {
                    key,
                    value: format!("{}-{seq}", self.client),
                }
            };
            let start = Instant::now();
            let mut task = tokio::spawn(op(self.client, kind.clone()));
            let outcome = match tokio::time::timeout(w.op_timeout, &mut task).await {
                Ok(Ok(Ok(value))) => Outcome::Ok(value),
                Ok(Ok(Err(e))) => Outcome::Fail(e),
                Ok(Err(e)) => Outcome::Unknown(format!("the operation panicked: {e}")),
                Err(_) => {
                    task.abort();
                    Outcome::Unknown(format!("no answer within {:?}", w.op_timeout))
                }
            };
            stats.ops += 1;
            match outcome {
                Outcome::Ok(_) => stats.ok += 1,
                Outcome::Fail(_) => stats.failed += 1,
                Outcome::Unknown(_) => stats.unknown += 1,
            }
            self.history
                .record(self.client, kind, start, Instant::now(), outcome);
            if !w.pause.is_zero() {
                tokio::time::sleep(w.pause).await;
            }
        }
        stats
    }

    /// Takes one operation from the run's budget; false once it is spent.
    fn take(&self) -> bool {
        self.budget
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// xorshift64*: enough to spread keys and choices, repeatable from a seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        if n == 0 { 0 } else { x % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::check;
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    /// An in-memory register per key, standing in for a cluster.
    #[derive(Clone, Default)]
    struct FakeStore(Arc<Mutex<HashMap<String, String>>>);

    impl FakeStore {
        fn apply(&self, kind: &OpKind) -> Option<String> {
            let mut map = self.0.lock().unwrap();
            match kind {
                OpKind::Write { key, value } => {
                    map.insert(key.clone(), value.clone());
                    None
                }
                OpKind::Read { key } => map.get(key).cloned(),
            }
        }
    }

    fn small(max_ops: Option<usize>) -> Workload {
        Workload {
            clients: 3,
            keys: 4,
            duration: Duration::from_secs(2),
            max_ops,
            op_timeout: Duration::from_millis(200),
            pause: Duration::ZERO,
            ..Workload::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_correct_store_gives_a_valid_history() {
        let store = FakeStore::default();
        let recorder = Recorder::new(small(Some(300)));
        let s = store.clone();
        let stats = recorder
            .run(move |_, kind| {
                let s = s.clone();
                async move { Ok(s.apply(&kind)) }
            })
            .await;
        assert_eq!((stats.ops, stats.ok), (300, 300), "{stats:?}");
        let s = store.clone();
        recorder
            .final_reads(
                |_, kind| {
                    let s = s.clone();
                    async move { Ok(s.apply(&kind)) }
                },
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        let ops = recorder.history().ops();
        assert_eq!(ops.len(), 304);
        let values: Vec<&str> = ops.iter().filter_map(|op| op.written()).collect();
        let unique: HashSet<&str> = values.iter().copied().collect();
        assert_eq!(values.len(), unique.len(), "write values are unique");
        assert!(
            values.len() > 50 && values.len() < 250,
            "about half are writes"
        );
        let keys: HashSet<&str> = ops.iter().map(|op| op.kind.key()).collect();
        assert_eq!(keys, ["k0", "k1", "k2", "k3"].into_iter().collect());
        assert!(ops.iter().all(|op| op.client < 3 || !op.is_write()));
        let report = check(recorder.history());
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.lost.len(), 0);
        assert!(report.unchecked_keys.is_empty(), "{report}");
    }

    #[tokio::test]
    async fn a_store_that_forgets_is_caught() {
        let store = FakeStore::default();
        let recorder = Recorder::new(small(Some(100)));
        let s = store.clone();
        let op = move |_, kind: OpKind| {
            let s = s.clone();
            async move { Ok(s.apply(&kind)) }
        };
        recorder.run(op.clone()).await;
        store.0.lock().unwrap().clear(); // a node restarted empty
        recorder
            .final_reads(op, Duration::from_secs(1))
            .await
            .unwrap();
        let report = check(recorder.history());
        assert!(!report.is_valid());
        assert!(!report.lost.is_empty(), "{report}");
        assert!(report.to_string().contains("lost"), "{report}");
    }

    #[tokio::test]
    async fn the_run_is_bounded_by_time_and_stop() {
        let recorder = Recorder::new(Workload {
            duration: Duration::from_millis(150),
            pause: Duration::from_millis(1),
            ..small(None)
        });
        let started = Instant::now();
        let stats = recorder.run(|_, _| async { Ok(None) }).await;
        assert!(started.elapsed() < Duration::from_secs(1), "{stats:?}");
        assert!(stats.ops > 0);

        let recorder = Arc::new(Recorder::new(Workload {
            duration: Duration::from_secs(60),
            ..small(None)
        }));
        let stopper = recorder.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stopper.stop();
        });
        let started = Instant::now();
        recorder
            .run(|_, _| async {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(None)
            })
            .await;
        assert!(started.elapsed() < Duration::from_secs(2));
        let after = recorder.run(|_, _| async { Ok(None) }).await;
        assert_eq!(after.ops, 0, "stopped until reset");
        recorder.reset_stop();
        let before = recorder.history().len();
        let again = recorder.run(|_, _| async { Ok(None) });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), again)
                .await
                .is_err()
        );
        let grown = recorder.history().len();
        assert!(grown > before, "running again after reset_stop");
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(
            recorder.history().len(),
            grown,
            "a dropped run leaves no client behind"
        );
    }

    #[tokio::test]
    async fn failures_hangs_and_panics_are_recorded_not_raised() {
        let recorder = Recorder::new(Workload {
            op_timeout: Duration::from_millis(50),
            ..small(Some(30))
        });
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let stats = recorder
            .run(move |_, _| {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n % 3 {
                        0 => Err("CLUSTERDOWN".to_string()),
                        1 => {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            Ok(None)
                        }
                        _ => panic!("a client bug"),
                    }
                }
            })
            .await;
        assert_eq!(stats.ops, 30);
        assert_eq!((stats.failed, stats.unknown, stats.ok), (10, 20, 0));
        let ops = recorder.history().ops();
        assert!(
            ops.iter()
                .any(|op| op.outcome.error() == Some("CLUSTERDOWN"))
        );
        assert!(
            ops.iter()
                .any(|op| op.outcome.error().is_some_and(|e| e.contains("panicked")))
        );
        assert!(
            ops.iter()
                .any(|op| op.outcome.error().is_some_and(|e| e.contains("no answer")))
        );
        // Unknown ops end when the client gave up, not when the hang would have ended.
        assert!(
            ops.iter()
                .all(|op| op.end - op.start < Duration::from_secs(5))
        );
    }

    #[tokio::test]
    async fn final_reads_retry_then_name_the_keys_never_read() {
        let recorder = Recorder::new(small(None));
        let attempts = Arc::new(AtomicUsize::new(0));
        let counter = attempts.clone();
        recorder
            .final_reads(
                move |_, _| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if n < 3 {
                            Err("TRYAGAIN".to_string())
                        } else {
                            Ok(None)
                        }
                    }
                },
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 3 + 4);
        assert!(recorder.history().ops().iter().all(|op| op.client == 3));

        let err = recorder
            .final_reads(
                |_, _| async { Err::<Option<String>, _>("CLUSTERDOWN".to_string()) },
                Duration::from_millis(100),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("k0 (CLUSTERDOWN)") && text.contains("k3"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_empty_workload_does_nothing() {
        let recorder = Recorder::new(Workload {
            clients: 0,
            ..Workload::default()
        });
        assert_eq!(recorder.run(|_, _| async { Ok(None) }).await.ops, 0);
        let recorder = Recorder::new(Workload {
            keys: 0,
            ..Workload::default()
        });
        assert_eq!(recorder.run(|_, _| async { Ok(None) }).await.ops, 0);
        assert!(recorder.history().is_empty());
    }

    #[test]
    fn choices_are_spread_and_repeatable() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..1000).map(|_| a.below(4)).collect();
        let ys: Vec<u64> = (0..1000).map(|_| b.below(4)).collect();
        assert_eq!(xs, ys);
        for k in 0..4 {
            let n = xs.iter().filter(|&&x| x == k).count();
            assert!((150..350).contains(&n), "{k}: {n}");
        }
        assert_eq!(Rng::new(1).below(0), 0);
    }
}
