//! Hot keys: a sampled top-K of the keys a server's commands touch, by requests, by network
//! bytes and by time, and Redis 8.6's `HOTKEYS` sessions on top of it.
//!
//! **Sampling.** Each worker thread counts down to its next sample ([`ThreadHot`], one load
//! and one store of a counter only that thread writes, per command): the countdown is drawn
//! uniformly around the sample ratio, so each command is sampled with probability 1/ratio
//! without aliasing on periodic workloads. A sampled command with keys updates the thread's
//! own summaries ([`SpaceSaving`], behind a mutex no other thread takes but `HOTKEYS` and
//! readers): every key gets one request, its share of the command's bytes in and out, and
//! its share of the command's run time in nanoseconds. Nothing is shared or atomic on the
//! request path beyond a relaxed load of the ratio on a sample.
//!
//! **Modes.** Without a session the summaries are fed in the background at the
//! background ratio (1 in [`DEFAULT_BACKGROUND_RATIO`] by default, 0 turns it off) and halve
//! every [`DECAY_PERIOD`], so they tell what is hot now: what `/metrics` shows and the node
//! reports to the controller ([`HotKeys::background_top`], [`HotKeys::recent`]). `HOTKEYS START`
//! clears them and feeds them at the session's ratio with the session's metrics and counters
//! (10 x `COUNT` per thread and metric, as Redis sizes its sketch); `HOTKEYS STOP` stops
//! feeding and keeps the results for `HOTKEYS GET`; `HOTKEYS RESET` forgets them and returns
//! to the background.
//!
//! **Selected slots.** A session started with `SLOTS` (on a cluster's node) tracks only the
//! keys of those slots ([`SelectedSlots`]), and counts the time and bytes of every command on
//! them, sampled or not (Redis's `*-selected-slots` fields). So while it runs every command
//! with keys comes to [`HotKeys::sample`], which finds the slot of its first key (a cluster's
//! command has all its keys in one slot), and draws the sample itself with probability
//! 1/ratio, as Redis does: a session with `SLOTS` costs a slot computation per command with
//! keys, one without costs nothing more.

pub mod sketch;
pub mod slots;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use parking_lot::Mutex;

pub use sketch::{Heavy, SpaceSaving, merge_top};
pub use slots::{SLOTS, SelectedCounts, SelectedSlots, SlotOf, SlotsError};

use slots::Selection;

use crate::stats::Stats;

/// The background sampling ratio: one command in this many.
pub const DEFAULT_BACKGROUND_RATIO: u32 = 64;

/// Counters per thread and metric in the background.
pub const BACKGROUND_CAPACITY: usize = 128;

/// `HOTKEYS START`'s default `COUNT`.
pub const DEFAULT_COUNT: usize = 10;

/// The metrics a session tracks (Redis's `METRICS ... CPU NET`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Metrics {
    /// `CPU`: time spent on each key.
    pub cpu: bool,
    /// `NET`: network bytes in and out of the commands on each key.
    pub net: bool,
}

/// What `HOTKEYS START` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartOptions {
    /// The metrics (at least one).
    pub metrics: Metrics,
    /// `COUNT`: how many keys `HOTKEYS GET` lists per metric (1 to 64).
    pub count: usize,
    /// `DURATION` in milliseconds; none: until `HOTKEYS STOP`.
    pub duration_ms: Option<u64>,
    /// `SAMPLE`: one command in this many.
    pub sample_ratio: u32,
    /// `SLOTS`: only keys of these slots are tracked; none: every key.
    pub slots: Option<Arc<SelectedSlots>>,
}

/// Why a `HOTKEYS` subcommand could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HotKeysError {
    /// `START` while a session runs.
    #[error("hotkey tracking session already in progress")]
    AlreadyActive,
    /// `RESET` while a session runs.
    #[error("hotkey tracking session in progress, stop tracking first")]
    StillActive,
}

/// One thread's summaries.
#[derive(Debug)]
pub(crate) struct Summaries {
    /// By requests (sampled commands per key).
    requests: SpaceSaving,
    /// By network bytes.
    net: SpaceSaving,
    /// By run time, in nanoseconds.
    cpu: SpaceSaving,
    /// During a session with selected slots: the slots, and the counts of their commands.
    selection: Option<Selection>,
}

impl Summaries {
    fn new(capacity: usize) -> Summaries {
        Summaries {
            requests: SpaceSaving::new(capacity),
            net: SpaceSaving::new(capacity),
            cpu: SpaceSaving::new(capacity),
            selection: None,
        }
    }

    fn reset(&mut self, capacity: usize, selection: Option<Selection>) {
        self.requests.reset(capacity);
        self.net.reset(capacity);
        self.cpu.reset(capacity);
        self.selection = selection;
    }
}

/// A worker thread's sampling state (in its [`crate::WorkerStats`]).
#[derive(Debug)]
pub(crate) struct ThreadHot {
    /// Commands left before the next sample; only this thread writes it, but `HOTKEYS START`
    /// sets it to 1 so a session starts at once.
    countdown: AtomicU32,
    /// The thread's random state (xorshift), for the next countdown.
    rng: AtomicU64,
    summaries: Mutex<Summaries>,
}

impl ThreadHot {
    pub(crate) fn new() -> ThreadHot {
        static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
        let seed = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed) | 1;
        ThreadHot {
            countdown: AtomicU32::new(1),
            rng: AtomicU64::new(seed),
            summaries: Mutex::new(Summaries::new(BACKGROUND_CAPACITY)),
        }
    }

    /// Counts one command down; true if this one is to be sampled ([`HotKeys::sample`]).
    #[inline(always)]
    pub(crate) fn due(&self) -> bool {
        let n = self.countdown.load(Relaxed);
        if n > 1 {
            self.countdown.store(n - 1, Relaxed);
            false
        } else {
            true
        }
    }

    /// The countdown to the next sample for `ratio` (0: none for a long while).
    fn rearm(&self, ratio: u32) {
        let next = match ratio {
            0 => u32::MAX,
            1 => 1,
            r => {
                // Uniform in 1..=2r-1: the mean is r.
                let span = 2 * u64::from(r) - 1;
                1 + (self.random() % span) as u32
            }
        };
        self.countdown.store(next, Relaxed);
    }

    /// True with probability 1/`ratio` (always for a ratio of 0 or 1).
    fn coin(&self, ratio: u32) -> bool {
        ratio <= 1 || self.random().is_multiple_of(u64::from(ratio))
    }

    /// The next number of the thread's xorshift.
    fn random(&self) -> u64 {
        let mut x = self.rng.load(Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Relaxed);
        x
    }
}

/// How often the background summaries halve: a key's weight is mostly its last two
/// periods'.
pub const DECAY_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// What one sampled command brings.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Bytes of the request.
    pub bytes_in: u64,
    /// Bytes of its reply (0 if the reply comes later).
    pub bytes_out: u64,
    /// Its run time in nanoseconds.
    pub nanos: u64,
}

/// A `HOTKEYS` session.
#[derive(Debug, Clone)]
struct Session {
    options: StartOptions,
    started: Instant,
    start_unix_ms: u64,
    /// Set once stopped: how long it ran, in milliseconds, and the node's totals then.
    stopped: Option<(u64, Totals)>,
    /// The node's totals when it started.
    base: Totals,
}

/// The node's cumulative counters a session reports the growth of.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    /// Microseconds of every command.
    usec: u64,
    /// Bytes read and written.
    net: u64,
    /// User and system CPU time of the process, in microseconds.
    user_us: u64,
    sys_us: u64,
}

impl Totals {
    fn now(stats: &Stats) -> Totals {
        let (input, output) = stats.net_bytes();
        let (user_us, sys_us) = rusage_us();
        Totals {
            usec: stats.total_usec(),
            net: input + output,
            user_us,
            sys_us,
        }
    }
}

fn rusage_us() -> (u64, u64) {
    // SAFETY: `rusage` is plain data, for which all zeros is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0;
    if !ok {
        return (0, 0);
    }
    let us = |t: libc::timeval| (t.tv_sec as u64).saturating_mul(1_000_000) + t.tv_usec as u64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// What `HOTKEYS GET` reports (Redis 8.6's fields; see the server's command).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `tracking-active`.
    pub active: bool,
    /// `sample-ratio`.
    pub sample_ratio: u32,
    /// `all-commands-all-slots-us`: microseconds of every command since the start.
    pub all_commands_us: u64,
    /// `net-bytes-all-commands-all-slots`: bytes in and out of every command since the start.
    pub all_commands_net_bytes: u64,
    /// `collection-start-time-unix-ms`.
    pub start_unix_ms: u64,
    /// `collection-duration-ms`.
    pub duration_ms: u64,
    /// `total-cpu-time-user-ms` and `total-cpu-time-sys-ms`, if `CPU` is tracked.
    pub cpu_time_ms: Option<(u64, u64)>,
    /// `total-net-bytes` (the sampled commands' bytes), if `NET` is tracked.
    pub total_net_bytes: Option<u64>,
    /// `by-cpu-time-us`: keys and microseconds, heaviest first, if `CPU` is tracked.
    pub by_cpu_time_us: Option<Vec<(Vec<u8>, u64)>>,
    /// `by-net-bytes`: keys and bytes, heaviest first, if `NET` is tracked.
    pub by_net_bytes: Option<Vec<(Vec<u8>, u64)>>,
    /// If the session selected slots: the slots (sorted, merged ranges) and the counts of
    /// their commands.
    pub selected: Option<(Vec<(u16, u16)>, SelectedCounts)>,
}

/// The background summaries' heaviest keys, merged over threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Background {
    /// By sampled requests.
    pub by_requests: Vec<Heavy>,
    /// By network bytes.
    pub by_net_bytes: Vec<Heavy>,
    /// By run time, in nanoseconds.
    pub by_cpu_nanos: Vec<Heavy>,
}

/// Hot keys of a server (see the module's doc); in [`Stats`], beside the threads' counters.
#[derive(Debug)]
pub struct HotKeys {
    /// The ratio the threads sample at now (0: none).
    ratio: AtomicU32,
    /// The ratio without a session.
    background_ratio: AtomicU32,
    session: Mutex<Option<Session>>,
    /// When the background summaries last halved.
    decayed: Mutex<Instant>,
}

impl Default for HotKeys {
    fn default() -> Self {
        HotKeys {
            ratio: AtomicU32::new(DEFAULT_BACKGROUND_RATIO),
            background_ratio: AtomicU32::new(DEFAULT_BACKGROUND_RATIO),
            session: Mutex::new(None),
            decayed: Mutex::new(Instant::now()),
        }
    }
}

impl HotKeys {
    /// Records a sampled command on the calling thread (`hot` is its state): `keys` are its
    /// keys; the next countdown is drawn whatever the command. During a session with selected
    /// slots every command comes here: it is counted if its slot is selected, and only a
    /// 1/ratio share of those feeds the summaries.
    pub(crate) fn sample<'k>(
        &self,
        hot: &ThreadHot,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        sample: Sample,
    ) {
        let ratio = self.ratio.load(Relaxed);
        hot.rearm(ratio);
        let n = keys.len() as u64;
        if ratio == 0 || n == 0 {
            return;
        }
        let mut s = hot.summaries.lock();
        if let Some(selection) = s.selection.as_mut() {
            let Some(first) = keys.clone().next() else {
                return;
            };
            if !selection.slots.contains_key(first) {
                return;
            }
            let sampled = hot.coin(selection.ratio);
            // Redis counts the sampled commands apart only when it samples (ratio > 1).
            selection.counts.count(
                sample.nanos / 1000,
                sample.bytes_in + sample.bytes_out,
                sampled && selection.ratio > 1,
            );
            if !sampled {
                return;
            }
        }
        let bytes = (sample.bytes_in + sample.bytes_out).div_ceil(n);
        let nanos = sample.nanos.div_ceil(n).max(1);
        for key in keys {
            let hash = sketch::key_hash(key);
            s.requests.add_hashed(hash, key, 1);
            s.net.add_hashed(hash, key, bytes);
            s.cpu.add_hashed(hash, key, nanos);
        }
    }

    /// The ratio without a session (0 turns background sampling off).
    pub fn set_background_ratio(&self, stats: &Stats, ratio: u32) {
        self.background_ratio.store(ratio, Relaxed);
        let session = self.session.lock();
        if session.is_none() {
            self.ratio.store(ratio, Relaxed);
            rearm_all(stats, ratio);
        }
    }

    /// The ratio without a session.
    pub fn background_ratio(&self) -> u32 {
        self.background_ratio.load(Relaxed)
    }

    /// The ratio the threads sample at now (0: none; 1 during a session with selected slots,
    /// which draws its samples in [`HotKeys::sample`]).
    pub fn current_ratio(&self) -> u32 {
        self.ratio.load(Relaxed)
    }

    /// `HOTKEYS START`.
    pub fn start(&self, stats: &Stats, options: StartOptions) -> Result<(), HotKeysError> {
        let mut session = self.session.lock();
        self.expire(stats, &mut session);
        if session.as_ref().is_some_and(|s| s.stopped.is_none()) {
            return Err(HotKeysError::AlreadyActive);
        }
        let (capacity, selection) = session_summaries(&options);
        for w in stats.workers() {
            w.hot.summaries.lock().reset(capacity, selection.clone());
        }
        // With selected slots every command is looked at, and sampled in `sample`.
        let ratio = if selection.is_some() {
            1
        } else {
            options.sample_ratio.max(1)
        };
        *session = Some(Session {
            options,
            started: Instant::now(),
            start_unix_ms: crate::unix_time::unix_ms(),
            stopped: None,
            base: Totals::now(stats),
        });
        self.ratio.store(ratio, Relaxed);
        rearm_all(stats, 1);
        Ok(())
    }

    /// A thread's first command: its new summaries become the session's, if there is one
    /// (a thread that starts during a session must not feed it unselected keys).
    pub(crate) fn adopt(&self, hot: &ThreadHot) {
        let session = self.session.lock();
        if let Some(s) = session.as_ref() {
            let (capacity, selection) = session_summaries(&s.options);
            hot.summaries.lock().reset(capacity, selection);
        }
    }

    /// `HOTKEYS STOP`: false if no session runs.
    pub fn stop(&self, stats: &Stats) -> bool {
        let mut session = self.session.lock();
        self.expire(stats, &mut session);
        match session.as_mut() {
            Some(s) if s.stopped.is_none() => {
                self.ratio.store(0, Relaxed);
                let ran = s.started.elapsed().as_millis() as u64;
                s.stopped = Some((ran, Totals::now(stats)));
                true
            }
            _ => false,
        }
    }

    /// `HOTKEYS RESET`: the session's results are forgotten and background sampling resumes.
    pub fn reset(&self, stats: &Stats) -> Result<(), HotKeysError> {
        let mut session = self.session.lock();
        self.expire(stats, &mut session);
        if session.as_ref().is_some_and(|s| s.stopped.is_none()) {
            return Err(HotKeysError::StillActive);
        }
        if session.take().is_some() {
            for w in stats.workers() {
                w.hot.summaries.lock().reset(BACKGROUND_CAPACITY, None);
            }
            let ratio = self.background_ratio.load(Relaxed);
            self.ratio.store(ratio, Relaxed);
            rearm_all(stats, ratio);
        }
        Ok(())
    }

    /// Stops a session whose `DURATION` passed, and halves the background summaries every
    /// [`DECAY_PERIOD`] ([`crate::Door::tick`] calls it).
    pub fn tick(&self, stats: &Stats) {
        let mut session = self.session.lock();
        self.expire(stats, &mut session);
        let mut decayed = self.decayed.lock();
        if decayed.elapsed() < DECAY_PERIOD {
            return;
        }
        *decayed = Instant::now();
        if session.is_some() {
            // A session's counts are its whole run's, as Redis reports them.
            return;
        }
        for w in stats.workers() {
            let mut s = w.hot.summaries.lock();
            s.requests.decay();
            s.net.decay();
            s.cpu.decay();
        }
    }

    fn expire(&self, stats: &Stats, session: &mut Option<Session>) {
        if let Some(s) = session.as_mut()
            && s.stopped.is_none()
            && let Some(limit) = s.options.duration_ms
            && s.started.elapsed().as_millis() as u64 >= limit
        {
            self.ratio.store(0, Relaxed);
            s.stopped = Some((limit, Totals::now(stats)));
        }
    }

    /// `HOTKEYS GET`: none without a session (never started, or reset).
    pub fn report(&self, stats: &Stats) -> Option<Report> {
        let mut session = self.session.lock();
        self.expire(stats, &mut session);
        let s = session.as_ref()?;
        let (duration_ms, now) = match s.stopped {
            Some((ran, totals)) => (ran, totals),
            None => (s.started.elapsed().as_millis() as u64, Totals::now(stats)),
        };
        let workers = stats.workers();
        let guards: Vec<_> = workers.iter().map(|w| w.hot.summaries.lock()).collect();
        let k = s.options.count;
        let metrics = s.options.metrics;
        let list = |top: Vec<Heavy>, scale: u64| {
            top.into_iter()
                .map(|h| (h.key, h.count / scale))
                .collect::<Vec<_>>()
        };
        Some(Report {
            active: s.stopped.is_none(),
            sample_ratio: s.options.sample_ratio,
            all_commands_us: now.usec.saturating_sub(s.base.usec),
            all_commands_net_bytes: now.net.saturating_sub(s.base.net),
            start_unix_ms: s.start_unix_ms,
            duration_ms,
            cpu_time_ms: metrics.cpu.then(|| {
                (
                    now.user_us.saturating_sub(s.base.user_us) / 1000,
                    now.sys_us.saturating_sub(s.base.sys_us) / 1000,
                )
            }),
            total_net_bytes: metrics
                .net
                .then(|| guards.iter().map(|g| g.net.total()).sum()),
            by_cpu_time_us: metrics
                .cpu
                .then(|| list(merge_top(guards.iter().map(|g| &g.cpu), k), 1000)),
            by_net_bytes: metrics
                .net
                .then(|| list(merge_top(guards.iter().map(|g| &g.net), k), 1)),
            selected: s.options.slots.as_ref().map(|slots| {
                let mut counts = SelectedCounts::default();
                for selection in guards.iter().filter_map(|g| g.selection.as_ref()) {
                    counts.add(&selection.counts);
                }
                (slots.ranges().to_vec(), counts)
            }),
        })
    }

    /// The `k` heaviest keys of the background summaries, merged over threads (empty while a
    /// session has them).
    pub fn background_top(&self, stats: &Stats, k: usize) -> Background {
        if self.session.lock().is_some() {
            return Background {
                by_requests: Vec::new(),
                by_net_bytes: Vec::new(),
                by_cpu_nanos: Vec::new(),
            };
        }
        let workers = stats.workers();
        let guards: Vec<_> = workers.iter().map(|w| w.hot.summaries.lock()).collect();
        Background {
            by_requests: merge_top(guards.iter().map(|g| &g.requests), k),
            by_net_bytes: merge_top(guards.iter().map(|g| &g.net), k),
            by_cpu_nanos: merge_top(guards.iter().map(|g| &g.cpu), k),
        }
    }
}

/// The keys hot now, by sampled requests: what a node reports to its cluster's controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recent {
    /// The heaviest keys by decayed sampled requests, heaviest first.
    pub keys: Vec<Heavy>,
    /// The decayed sampled requests of every key (the denominator of a key's share).
    pub total: u64,
    /// The ratio the samples were taken at: a count times it estimates requests.
    pub ratio: u32,
}

impl HotKeys {
    /// The `k` keys with the most recent requests and the recent total, merged over
    /// threads; `None` while a session has the summaries or sampling is off.
    pub fn recent(&self, stats: &Stats, k: usize) -> Option<Recent> {
        if self.session.lock().is_some() {
            return None;
        }
        let ratio = self.background_ratio();
        if ratio == 0 {
            return None;
        }
        let workers = stats.workers();
        let guards: Vec<_> = workers.iter().map(|w| w.hot.summaries.lock()).collect();
        Some(Recent {
            keys: merge_top(guards.iter().map(|g| &g.requests), k),
            total: guards.iter().map(|g| g.requests.total()).sum(),
            ratio,
        })
    }
}

/// The capacity of a session's summaries (10 x `COUNT`, as Redis sizes its sketch) and, if
/// it selected slots, each thread's fresh counts of them.
fn session_summaries(options: &StartOptions) -> (usize, Option<Selection>) {
    let selection = options.slots.as_ref().map(|slots| Selection {
        slots: Arc::clone(slots),
        ratio: options.sample_ratio.max(1),
        counts: SelectedCounts::default(),
    });
    (options.count.max(1) * 10, selection)
}

/// Every thread samples its next command (then draws countdowns at `ratio`).
fn rearm_all(stats: &Stats, ratio: u32) {
    for w in stats.workers() {
        w.hot
            .countdown
            .store(if ratio == 0 { u32::MAX } else { 1 }, Relaxed);
    }
}

/// The bytes of `argv` as a RESP request (`*n`, then `$len` and the data of each argument):
/// what a sampled command read, without keeping the request's own length around.
pub fn request_bytes<'a>(args: impl Iterator<Item = &'a [u8]>, argc: usize) -> u64 {
    fn digits(mut n: usize) -> u64 {
        let mut d = 1;
        while n >= 10 {
            n /= 10;
            d += 1;
        }
        d
    }
    let mut total = 3 + digits(argc);
    for a in args {
        total += 5 + digits(a.len()) + a.len() as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes_is_the_resp_length() {
        let args: [&[u8]; 2] = [b"GET", b"key"];
        let resp = b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
        assert_eq!(request_bytes(args.into_iter(), 2), resp.len() as u64);
        let long = vec![b'v'; 1234];
        let args: [&[u8]; 3] = [b"SET", b"k", &long];
        let resp_len = 4 + 9 + 7 + (7 + 1234 + 2);
        assert_eq!(request_bytes(args.into_iter(), 3), resp_len);
    }

    /// A key's "slot" in these tests: its first byte.
    fn first_byte(key: &[u8]) -> u16 {
        key.first().map_or(0, |&b| u16::from(b))
    }

    fn options(sample_ratio: u32, slots: &[u32]) -> StartOptions {
        StartOptions {
            metrics: Metrics {
                cpu: true,
                net: true,
            },
            count: 10,
            duration_ms: None,
            sample_ratio,
            slots: Some(Arc::new(SelectedSlots::new(slots, first_byte).unwrap())),
        }
    }

    /// Feeds `key` to the calling thread `times` times, as dispatch does a due command.
    fn feed(stats: &Stats, key: &[u8], times: u64) {
        let w = stats.this_thread();
        for _ in 0..times {
            if w.hot.due() {
                let sample = Sample {
                    bytes_in: 10,
                    bytes_out: 5,
                    nanos: 2_000,
                };
                stats.hotkeys.sample(&w.hot, std::iter::once(key), sample);
            }
        }
    }

    #[test]
    fn selected_slots_keep_other_keys_out_and_count_every_command() {
        let stats = Stats::new(1);
        // A thread that ran commands before the session.
        feed(&stats, b"b-before", 100);
        stats
            .hotkeys
            .start(&stats, options(1, &[b'a'.into()]))
            .unwrap();
        feed(&stats, b"a1", 30);
        feed(&stats, b"b1", 50);
        // A thread whose first command comes during the session adopts it.
        std::thread::scope(|s| s.spawn(|| feed(&stats, b"b2", 40)).join().unwrap());
        let report = stats.hotkeys.report(&stats).unwrap();
        let keys: Vec<&[u8]> = report
            .by_net_bytes
            .as_ref()
            .unwrap()
            .iter()
            .map(|(k, _)| &k[..])
            .collect();
        assert_eq!(keys, [&b"a1"[..]]);
        let (ranges, counts) = report.selected.unwrap();
        assert_eq!(ranges, [(u16::from(b'a'), u16::from(b'a'))]);
        assert_eq!(
            counts,
            SelectedCounts {
                all_commands_us: 30 * 2,
                all_commands_net_bytes: 30 * 15,
                sampled_commands_us: 0,
                sampled_commands_net_bytes: 0,
            }
        );
        assert_eq!(report.total_net_bytes, Some(30 * 15));
        assert!(stats.hotkeys.stop(&stats));
        feed(&stats, b"a1", 30);
        assert_eq!(
            stats.hotkeys.report(&stats).unwrap().selected.unwrap().1,
            counts
        );
        stats.hotkeys.reset(&stats).unwrap();
        assert_eq!(stats.hotkeys.current_ratio(), DEFAULT_BACKGROUND_RATIO);
    }

    #[test]
    fn selected_slots_with_a_ratio_count_all_and_sample_some() {
        let stats = Stats::new(1);
        stats
            .hotkeys
            .start(&stats, options(10, &[b'a'.into()]))
            .unwrap();
        feed(&stats, b"a1", 10_000);
        feed(&stats, b"z1", 1_000);
        let report = stats.hotkeys.report(&stats).unwrap();
        let counts = report.selected.unwrap().1;
        assert_eq!(counts.all_commands_us, 10_000 * 2);
        assert_eq!(counts.all_commands_net_bytes, 10_000 * 15);
        // About one in ten, and exactly the ones the summaries took.
        let sampled = counts.sampled_commands_net_bytes / 15;
        assert!((700..1300).contains(&sampled), "{sampled} sampled");
        assert_eq!(counts.sampled_commands_us, sampled * 2);
        assert_eq!(
            report.total_net_bytes,
            Some(counts.sampled_commands_net_bytes)
        );
    }

    #[test]
    fn countdown_averages_the_ratio() {
        let hot = ThreadHot::new();
        let mut samples = 0u32;
        hot.rearm(16);
        for _ in 0..160_000 {
            if hot.due() {
                samples += 1;
                hot.rearm(16);
            }
        }
        assert!((9_000..11_000).contains(&samples), "{samples} samples");
        hot.rearm(1);
        assert!(hot.due());
        hot.rearm(0);
        assert!(!hot.due());
    }
}
