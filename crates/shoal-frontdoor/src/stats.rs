//! The front door's statistics: per-thread command counters and latency histograms (written
//! by one thread each, without locked instructions), and counters for the whole node or proxy.
//! `INFO` and `/metrics` read the same numbers.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// Upper bounds of the latency histogram buckets, in microseconds (powers of two up to ~1 s).
/// Histograms count in `LATENCY_BUCKETS_US.len() + 1` slots, the last one for slower events.
pub const LATENCY_BUCKETS_US: [u64; 21] = [
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
    262144, 524288, 1048576,
];

/// The slot of [`LATENCY_BUCKETS_US`] (or the overflow slot after them) `usec` counts in.
pub fn latency_slot(usec: u64) -> usize {
    LATENCY_BUCKETS_US.partition_point(|&b| b < usec)
}

/// Turns per-bucket counts (one slot per [`LATENCY_BUCKETS_US`] bound, then the overflow slot)
/// into (upper bound in seconds, count) pairs ending with `+Inf`.
pub fn histogram_buckets(slots: &[u64]) -> Vec<(f64, u64)> {
    LATENCY_BUCKETS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .chain(std::iter::once(f64::INFINITY))
        .zip(slots.iter().copied())
        .collect()
}

/// Adds to a counter only its owning thread writes: a plain load and store, no lock prefix.
#[inline]
fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(by), Relaxed);
}

/// Counters of one command on one worker.
#[derive(Debug, Default)]
pub(crate) struct CommandCounters {
    /// Calls that ran.
    pub calls: AtomicU64,
    /// Microseconds spent running them.
    pub usec: AtomicU64,
    /// Calls refused before running (arity, auth, OOM).
    pub rejected: AtomicU64,
    /// Calls that ran and answered an error.
    pub failed: AtomicU64,
    /// Latency histogram: `latency[i]` counts calls of at most `LATENCY_BUCKETS_US[i]` µs; the
    /// last slot counts slower ones.
    pub latency: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

/// Statistics owned by one worker thread.
#[derive(Debug)]
pub struct WorkerStats {
    /// Per command id.
    pub(crate) commands: Box<[CommandCounters]>,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Whether the thread is inside a command's synchronous part ([`WorkerStats::enter`]).
    inside: InCommand,
    /// The thread's hot-key sampling ([`crate::hotkeys`]).
    pub(crate) hot: crate::hotkeys::ThreadHot,
}

/// The "inside a command" mark, on a cache line of its own: its thread writes it twice per
/// command, and only a script about to start (or a slot hand-over) reads it. Bit 0 says
/// inside, bit 1 that it is background work (a node's cron: expiry, eviction, dropping
/// keys), no client's command; the bits above count the entries, so a reader can tell that
/// the command it saw has ended even if the next one began since.
#[derive(Debug, Default)]
#[repr(align(128))]
struct InCommand(AtomicU64);

/// [`InCommand`]'s bit: inside.
const IN_COMMAND: u64 = 1;
/// [`InCommand`]'s bit: background work.
const BACKGROUND: u64 = 2;
/// Both marks; the count is above them.
const MARKS: u64 = IN_COMMAND | BACKGROUND;

/// Marks a thread inside a command until dropped ([`WorkerStats::enter`]).
#[must_use = "the thread is inside a command only while this lives"]
pub struct InsideCommand<'a>(&'a AtomicU64);

impl Drop for InsideCommand<'_> {
    fn drop(&mut self) {
        // Only the owning thread writes the mark: its own last store is what it loads.
        let mark = self.0.load(Ordering::Relaxed);
        self.0.store(mark & !MARKS, Ordering::Release);
    }
}

impl WorkerStats {
    fn new(commands: usize) -> WorkerStats {
        WorkerStats {
            commands: (0..commands).map(|_| CommandCounters::default()).collect(),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            inside: InCommand::default(),
            hot: crate::hotkeys::ThreadHot::new(),
        }
    }

    /// Marks this thread inside a command (or other work on the store) until the guard
    /// drops. A script about to take the store waits until no other thread is inside
    /// ([`Stats::wait_until_outside_commands`]); the store is checked for a running script
    /// only after this mark is set ([`crate::busy`] says why both orders matter).
    #[inline]
    pub fn enter(&self) -> InsideCommand<'_> {
        self.enter_marked(IN_COMMAND)
    }

    /// [`WorkerStats::enter`] for background work that routes no client's command (a node's
    /// cron): a script waits for it as for a command, a slot hand-over does not
    /// ([`Stats::commands_drained`]).
    #[inline]
    pub fn enter_background(&self) -> InsideCommand<'_> {
        self.enter_marked(IN_COMMAND | BACKGROUND)
    }

    #[inline]
    fn enter_marked(&self, marks: u64) -> InsideCommand<'_> {
        // SeqCst: the mark is visible before this thread reads the busy state.
        let count = (self.inside.0.load(Ordering::Relaxed) | MARKS).wrapping_add(1);
        self.inside.0.store(count | marks, Ordering::SeqCst);
        InsideCommand(&self.inside.0)
    }

    /// Records a call of command `id` that took `usec` microseconds.
    #[inline]
    pub fn record_call(&self, id: usize, usec: u64, failed: bool) {
        let c = &self.commands[id];
        bump(&c.calls, 1);
        bump(&c.usec, usec);
        if failed {
            bump(&c.failed, 1);
        }
        bump(&c.latency[latency_slot(usec)], 1);
    }

    /// Records a call of command `id` refused before it ran.
    #[inline]
    pub fn record_rejected(&self, id: usize) {
        bump(&self.commands[id].rejected, 1);
    }

    /// Records that a call of command `id`, recorded already, answered an error after all (its
    /// reply came later).
    #[inline]
    pub fn record_failed(&self, id: usize) {
        bump(&self.commands[id].failed, 1);
    }

    /// Records bytes read.
    #[inline]
    pub fn record_input(&self, bytes: usize) {
        bump(&self.net_input_bytes, bytes as u64);
    }

    /// Records bytes written.
    #[inline]
    pub fn record_output(&self, bytes: usize) {
        bump(&self.net_output_bytes, bytes as u64);
    }

    fn reset(&self) {
        for c in self.commands.iter() {
            for a in [&c.calls, &c.usec, &c.rejected, &c.failed]
                .into_iter()
                .chain(c.latency.iter())
            {
                a.store(0, Relaxed);
            }
        }
        self.net_input_bytes.store(0, Relaxed);
        self.net_output_bytes.store(0, Relaxed);
    }
}

/// Totals of one command over all workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommandTotals {
    /// Calls that ran.
    pub calls: u64,
    /// Microseconds spent.
    pub usec: u64,
    /// Calls refused before running.
    pub rejected: u64,
    /// Calls that answered an error.
    pub failed: u64,
    /// Latency histogram: `latency[i]` counts calls of at most `LATENCY_BUCKETS_US[i]` µs, the
    /// last slot slower ones.
    pub latency: Vec<u64>,
}

/// Statistics of a node or a proxy.
#[derive(Debug)]
pub struct Stats {
    /// Tells this instance's per-thread counters from other instances' in [`THREAD_WORKERS`].
    instance: u64,
    command_count: usize,
    workers: Mutex<Vec<Arc<WorkerStats>>>,
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused (`maxclients`).
    pub rejected_connections: AtomicU64,
    /// Unknown commands received.
    pub unknown_commands: AtomicU64,
    /// Clients closed for exceeding `client-query-buffer-limit`.
    pub query_buffer_disconnections: AtomicU64,
    /// Clients closed for exceeding `client-output-buffer-limit`.
    pub output_buffer_disconnections: AtomicU64,
    /// Commands whose handler panicked (a bug: the client got an error and was disconnected,
    /// the node kept running).
    pub command_panics: AtomicU64,
    /// Clients closed for sending a malformed request.
    pub protocol_errors: AtomicU64,
    /// Clients closed for sending `POST` or `Host:` as a command: an HTTP request sent to
    /// the RESP port, as a cross-protocol attack does.
    pub cross_protocol_attempts: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    ops_samples: Mutex<OpsSampler>,
    /// Hot keys: the threads' sampled summaries and `HOTKEYS` sessions.
    pub hotkeys: crate::hotkeys::HotKeys,
}

impl Stats {
    /// Statistics for a command table of `command_count` ids.
    pub fn new(command_count: usize) -> Stats {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        Stats {
            instance: INSTANCES.fetch_add(1, Relaxed),
            command_count,
            workers: Mutex::new(Vec::new()),
            connections_received: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            unknown_commands: AtomicU64::new(0),
            query_buffer_disconnections: AtomicU64::new(0),
            output_buffer_disconnections: AtomicU64::new(0),
            command_panics: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            cross_protocol_attempts: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            ops_samples: Mutex::new(OpsSampler::default()),
            hotkeys: crate::hotkeys::HotKeys::default(),
        }
    }

    /// The counters the calling thread writes (registered on its first call), which no other
    /// thread writes: a session looks them up once per batch of commands, on the thread that
    /// runs the batch.
    pub fn this_thread(&self) -> Arc<WorkerStats> {
        THREAD_WORKERS.with(|workers| {
            let mut workers = workers.borrow_mut();
            let mine = workers
                .iter()
                .filter(|(i, _)| *i == self.instance)
                .find_map(|(_, worker)| worker.upgrade());
            if let Some(worker) = mine {
                return worker;
            }
            // Counters of instances dropped since are dropped from the list too.
            workers.retain(|(_, worker)| worker.strong_count() > 0);
            let worker = Arc::new(WorkerStats::new(self.command_count));
            self.workers.lock().push(worker.clone());
            // After the push: a session that starts meanwhile resets this thread's summaries
            // too, one that started before is adopted here.
            self.hotkeys.adopt(&worker.hot);
            workers.push((self.instance, Arc::downgrade(&worker)));
            worker
        })
    }

    /// Waits until no thread but the calling one is inside a command ([`WorkerStats::enter`]):
    /// what a script does after it took the busy state and before it takes the store, so that
    /// no command that passed the busy gate before it blocks its thread on the store for as
    /// long as the script runs. Those commands are synchronous and short: this yields while
    /// it waits, and never holds the list of threads meanwhile.
    pub fn wait_until_outside_commands(&self) {
        for other in self.other_threads() {
            while other.inside.0.load(Ordering::SeqCst) & IN_COMMAND != 0 {
                std::thread::yield_now();
            }
        }
    }

    /// Every thread's statistics but the calling thread's (copied out: the list is not held).
    fn other_threads(&self) -> Vec<Arc<WorkerStats>> {
        let me = self.this_thread();
        self.workers
            .lock()
            .iter()
            .filter(|w| !Arc::ptr_eq(w, &me))
            .cloned()
            .collect()
    }

    /// Waits, yielding to the runtime, until every client command that another thread was
    /// inside when this was called has finished its synchronous part (a command begun since
    /// may still run): what a check made before this call decided has taken effect by its end.
    /// Background work ([`WorkerStats::enter_background`]) is not waited for.
    pub async fn commands_drained(&self) {
        for other in self.other_threads() {
            let seen = other.inside.0.load(Ordering::SeqCst);
            if seen & IN_COMMAND == 0 || seen & BACKGROUND != 0 {
                continue;
            }
            while other.inside.0.load(Ordering::SeqCst) == seen {
                tokio::time::sleep(std::time::Duration::from_micros(100)).await;
            }
        }
    }

    /// Counts an error reply by its code (`errorstats`).
    pub fn record_error(&self, code: &str) {
        *self.errors.lock().entry(code.to_string()).or_insert(0) += 1;
    }

    /// Error replies by code.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors.lock().clone()
    }

    /// Every command's totals, by id.
    pub fn command_totals(&self) -> Vec<CommandTotals> {
        let workers = self.workers.lock();
        (0..self.command_count)
            .map(|id| {
                let mut t = CommandTotals {
                    latency: vec![0; LATENCY_BUCKETS_US.len() + 1],
                    ..CommandTotals::default()
                };
                for w in workers.iter() {
                    let c = &w.commands[id];
                    t.calls += c.calls.load(Relaxed);
                    t.usec += c.usec.load(Relaxed);
                    t.rejected += c.rejected.load(Relaxed);
                    t.failed += c.failed.load(Relaxed);
                    for (sum, bucket) in t.latency.iter_mut().zip(c.latency.iter()) {
                        *sum += bucket.load(Relaxed);
                    }
                }
                t
            })
            .collect()
    }

    /// Microseconds of every command run so far.
    pub fn total_usec(&self) -> u64 {
        let workers = self.workers.lock();
        workers
            .iter()
            .flat_map(|w| w.commands.iter())
            .map(|c| c.usec.load(Relaxed))
            .sum()
    }

    /// Every thread's counters (a copy of the list).
    pub fn workers(&self) -> Vec<Arc<WorkerStats>> {
        self.workers.lock().clone()
    }

    /// Commands run so far (`total_commands_processed`).
    pub fn total_commands(&self) -> u64 {
        let workers = self.workers.lock();
        workers
            .iter()
            .flat_map(|w| w.commands.iter())
            .map(|c| c.calls.load(Relaxed))
            .sum()
    }

    /// Bytes read from and written to clients.
    pub fn net_bytes(&self) -> (u64, u64) {
        let workers = self.workers.lock();
        workers.iter().fold((0, 0), |(i, o), w| {
            (
                i + w.net_input_bytes.load(Relaxed),
                o + w.net_output_bytes.load(Relaxed),
            )
        })
    }

    /// Takes a sample for the instantaneous rates (the server calls this every 100 ms).
    pub fn sample_rates(&self, now_ms: u64) {
        let commands = self.total_commands();
        let (input, output) = self.net_bytes();
        self.ops_samples
            .lock()
            .add(now_ms, [commands, input, output]);
    }

    /// Commands per second, and input and output kilobytes per second, averaged over the last
    /// 1.6 s of samples (as Redis's `instantaneous_*` fields are).
    pub fn instantaneous(&self) -> (f64, f64, f64) {
        let rates = self.ops_samples.lock().rates();
        (rates[0], rates[1] / 1024.0, rates[2] / 1024.0)
    }

    /// Zeroes the counters (`CONFIG RESETSTAT`).
    pub fn reset(&self) {
        for w in self.workers.lock().iter() {
            w.reset();
        }
        for a in [
            &self.connections_received,
            &self.rejected_connections,
            &self.unknown_commands,
            &self.query_buffer_disconnections,
            &self.output_buffer_disconnections,
            &self.command_panics,
            &self.protocol_errors,
            &self.cross_protocol_attempts,
        ] {
            a.store(0, Relaxed);
        }
        self.errors.lock().clear();
        *self.ops_samples.lock() = OpsSampler::default();
    }
}

thread_local! {
    /// Each thread's counters, per [`Stats`] instance it has recorded for (one, except in
    /// tests that run several nodes in one process).
    static THREAD_WORKERS: RefCell<Vec<(u64, Weak<WorkerStats>)>> = const { RefCell::new(Vec::new()) };

    /// Its address tells threads apart, at the cost of reading a thread-local.
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_mark() -> usize {
    THREAD_MARK.with(|mark| mark as *const u8 as usize)
}

/// A session's handle on the counters of the thread running it: each thread writes only its
/// own counters, and a multi-thread runtime (the proxy's) may move a session between threads,
/// so the handle looks them up again when the thread changed.
#[derive(Debug, Default)]
pub(crate) struct ThreadStats {
    cached: Option<(usize, Arc<WorkerStats>)>,
}

impl ThreadStats {
    /// A handle that has looked nothing up yet.
    pub(crate) fn new() -> ThreadStats {
        ThreadStats::default()
    }

    /// The calling thread's counters of `stats`.
    #[inline]
    pub(crate) fn get(&mut self, stats: &Stats) -> &WorkerStats {
        let here = thread_mark();
        let (thread, worker) = self
            .cached
            .get_or_insert_with(|| (here, stats.this_thread()));
        if *thread != here {
            *thread = here;
            *worker = stats.this_thread();
        }
        worker
    }
}

/// The last 16 samples of cumulative counters, for rates.
#[derive(Debug, Default)]
struct OpsSampler {
    samples: std::collections::VecDeque<(u64, [u64; 3])>,
}

impl OpsSampler {
    const KEEP: usize = 16;

    fn add(&mut self, now_ms: u64, values: [u64; 3]) {
        if self.samples.len() == Self::KEEP + 1 {
            self.samples.pop_front();
        }
        self.samples.push_back((now_ms, values));
    }

    fn rates(&self) -> [f64; 3] {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return [0.0; 3];
        };
        let elapsed = last.0.saturating_sub(first.0) as f64 / 1000.0;
        if elapsed <= 0.0 {
            return [0.0; 3];
        }
        std::array::from_fn(|i| last.1[i].saturating_sub(first.1[i]) as f64 / elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_the_right_latency_bucket() {
        let stats = Stats::new(2);
        let w = stats.this_thread();
        assert!(Arc::ptr_eq(&w, &stats.this_thread()), "one per thread");
        let other = std::thread::scope(|s| s.spawn(|| stats.this_thread()).join().unwrap());
        assert!(!Arc::ptr_eq(&w, &other), "each thread its own");
        w.record_call(1, 0, false);
        w.record_call(1, 3, true);
        w.record_call(1, 5_000_000, false);
        let totals = &stats.command_totals()[1];
        assert_eq!(
            (totals.calls, totals.failed, totals.usec),
            (3, 1, 5_000_003)
        );
        assert_eq!(totals.latency[0], 1, "0 us is in the first bucket");
        assert_eq!(totals.latency[2], 1, "3 us is in the <= 4 us bucket");
        assert_eq!(*totals.latency.last().unwrap(), 1, "5 s overflows");
        assert_eq!(stats.total_commands(), 3);
        stats.reset();
        assert_eq!(stats.total_commands(), 0);
    }

    #[test]
    fn rates_average_over_the_samples() {
        let stats = Stats::new(1);
        let w = stats.this_thread();
        stats.sample_rates(1000);
        for _ in 0..500 {
            w.record_call(0, 1, false);
        }
        w.record_input(2048);
        stats.sample_rates(2000);
        let (ops, kin, _) = stats.instantaneous();
        assert_eq!(ops, 500.0);
        assert_eq!(kin, 2.0);
    }
}
