//! Replication: a primary streams every change of its keyspace to its replicas, which apply
//! them in order and acknowledge their offset.
//!
//! * The store reports each change as the key's resulting state ([`shoal_store::Journal`]);
//!   [`StreamJournal`] appends it, as a [`frames`] frame, to the [`backlog::Backlog`] under the
//!   shard's lock, so the stream's order is a valid order of the store's changes.
//! * A replica connects to its primary's RESP port and sends `PSYNC <replid> <offset>`: if the
//!   primary's backlog still holds that offset of that history it answers `+CONTINUE` and
//!   streams from there ([`primary`]); otherwise `+FULLRESYNC <replid> <offset>`, a snapshot of
//!   its keyspace taken while it keeps serving, and the stream from the snapshot's offset.
//! * On promotion, a replica keeps its history's id as `replid2` (Redis's PSYNC2), so the other
//!   replicas of the failed primary continue with it without a full resync.
//!
//! Which role a node plays is the cluster map's to say ([`Replication::set_role`]).

mod backlog;
pub(crate) mod frames;
pub(crate) mod primary;
pub(crate) mod replica;

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shoal_store::{Journal, Kind, Store};
use tokio::sync::Notify;

use backlog::Backlog;

/// A node's part in replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Not replicating (standalone, or a primary of a shard without replicas, or a spare).
    Alone,
    /// Streams its changes to replicas.
    Primary,
    /// Follows the primary at this RESP address.
    Replica(String),
}

/// The replication id of no history (Redis prints forty zeros for `master_replid2`).
pub const NO_REPLID: &str = "0000000000000000000000000000000000000000";

/// A fresh replication id: 40 random hex digits.
pub fn new_replid() -> String {
    let (a, b, c): (u64, u64, u32) = (rand::random(), rand::random(), rand::random());
    format!("{a:016x}{b:016x}{c:08x}")
}

/// The history and the window of it a node keeps.
#[derive(Debug)]
pub struct History {
    /// What it does.
    pub role: Role,
    /// The id of the history its offsets count in.
    pub replid: String,
    /// The id of the history before (after a promotion), and where that one ended.
    pub replid2: Option<(String, u64)>,
    /// The stream's last bytes.
    pub backlog: Backlog,
}

/// One replica connected to this primary.
#[derive(Debug)]
pub struct ReplicaPeer {
    /// The client id of its connection.
    pub client_id: u64,
    /// Its address: the one it announced (`REPLCONF ip-address`), else its connection's.
    pub ip: String,
    /// The RESP port it listens on (`REPLCONF listening-port`).
    pub port: u16,
    /// The offset it has acknowledged.
    pub ack: AtomicU64,
    /// When it last acknowledged (ms since the node started).
    pub last_ack_ms: AtomicU64,
    /// Whether it is past its snapshot and streaming.
    pub online: AtomicBool,
    /// Whether it has acknowledged an offset: it has loaded its snapshot, if it took one (a
    /// replica acknowledges only once synced), and can serve reads.
    pub synced: AtomicBool,
}

/// How a replica's link to its primary stands.
#[derive(Debug, Default)]
pub struct LinkState {
    /// Connected and streaming (or loading).
    pub up: AtomicBool,
    /// Loading a snapshot: reads are answered `-LOADING`.
    pub loading: AtomicBool,
    /// One more than the role generation (see [`Replication::generation`]) under which this
    /// replica last completed a sync (full or partial) with its primary; 0: none. Until it
    /// matches the current generation the keyspace may be empty or another primary's, so
    /// reads are answered `-LOADING`; a link task of an older generation cannot make it match.
    /// A link that drops keeps it (the data is stale, as a Redis replica serves it by
    /// default); a full resync clears it when it starts replacing the keyspace.
    pub synced_generation: AtomicU64,
    /// When the primary last sent anything (ms since the node started).
    pub last_io_ms: AtomicU64,
    /// Full resyncs this replica went through.
    pub full_syncs: AtomicU64,
    /// Partial resyncs (`+CONTINUE`).
    pub partial_syncs: AtomicU64,
}

/// Counters a primary keeps (Redis's `sync_full`, `sync_partial_ok`, `sync_partial_err`).
#[derive(Debug, Default)]
pub struct PrimaryStats {
    /// Full resyncs served.
    pub sync_full: AtomicU64,
    /// Partial resyncs served.
    pub sync_partial_ok: AtomicU64,
    /// Partial resyncs asked for but refused (a full one followed).
    pub sync_partial_err: AtomicU64,
}

/// A node's replication state.
pub struct Replication {
    history: Mutex<History>,
    /// The backlog's end, published after every append (read without the lock).
    end: AtomicU64,
    /// Whether the role is primary (read on every write without the lock).
    primary: AtomicBool,
    /// Whether writes may be paused (the lock is taken only then).
    pausing: AtomicBool,
    journal_on: Arc<AtomicBool>,
    /// A primary stopped recording: its stream has a gap nobody can continue across.
    gap: AtomicBool,
    /// Set by a streamer about to wait for the backlog to grow; the journal then notifies.
    streamer_waiting: AtomicBool,
    grown: Notify,
    /// Replicas served by this primary.
    pub replicas: Mutex<Vec<Arc<ReplicaPeer>>>,
    /// Acknowledgements arrived (for `WAIT`).
    pub acked: Notify,
    /// This replica's link.
    pub link: LinkState,
    /// Held by the link task for its whole life: a new link (to a new primary) starts only
    /// once the old one has stopped, so the two never append to the backlog at once.
    pub link_lock: tokio::sync::Mutex<()>,
    /// This primary's counters.
    pub stats: PrimaryStats,
    /// Wakes the replica link task when the role changes.
    pub role_changed: Notify,
    /// Bumped on every role change; a link task stops when it no longer matches.
    pub generation: AtomicU64,
    /// When the node started (the origin of the `_ms` fields).
    pub started: Instant,
    /// `repl-ping-replica-period` analogue: keep-alives while idle.
    pub last_append: Mutex<Instant>,
    /// Writes wait until then (a planned failover hands the shard over).
    paused_until: Mutex<Option<Instant>>,
    unpaused: Notify,
    /// Writes waiting in [`Replication::await_unpause`].
    paused_writers: AtomicUsize,
    /// Where the last `REPLCONF GETACK` starts in the stream, while the stream it is in goes
    /// on (a restarted history forgets it): a `WAIT` for an offset up to there needs no other.
    last_getack: Mutex<Option<u64>>,
    /// Whether this node, as a primary, holds the right to change its data (in cluster mode:
    /// a fresh lease from the controller); unset, it always does.
    authority: std::sync::OnceLock<Box<dyn Fn() -> bool + Send + Sync>>,
}

/// How often a primary with replicas sends a keep-alive when nothing else was written.
pub const PING_PERIOD: Duration = Duration::from_secs(1);

/// A replica that has heard nothing from its primary for this long drops the link.
pub const LINK_SILENCE: Duration = Duration::from_secs(5);

impl Replication {
    /// A node's replication state, alone, with a backlog of `backlog_size` bytes.
    pub fn new(backlog_size: usize) -> Arc<Replication> {
        Arc::new(Replication {
            history: Mutex::new(History {
                role: Role::Alone,
                replid: new_replid(),
                replid2: None,
                backlog: Backlog::new(backlog_size, 0),
            }),
            end: AtomicU64::new(0),
            primary: AtomicBool::new(false),
            pausing: AtomicBool::new(false),
            journal_on: Arc::new(AtomicBool::new(false)),
            gap: AtomicBool::new(false),
            streamer_waiting: AtomicBool::new(false),
            grown: Notify::new(),
            replicas: Mutex::new(Vec::new()),
            acked: Notify::new(),
            link: LinkState::default(),
            link_lock: tokio::sync::Mutex::new(()),
            stats: PrimaryStats::default(),
            role_changed: Notify::new(),
            generation: AtomicU64::new(0),
            started: Instant::now(),
            last_append: Mutex::new(Instant::now()),
            paused_until: Mutex::new(None),
            unpaused: Notify::new(),
            paused_writers: AtomicUsize::new(0),
            last_getack: Mutex::new(None),
            authority: std::sync::OnceLock::new(),
        })
    }

    /// Sets (once) what says whether this primary may still change its data: in cluster mode,
    /// whether its lease from the controller is fresh.
    pub fn set_authority(&self, check: impl Fn() -> bool + Send + Sync + 'static) {
        let _ = self.authority.set(Box::new(check));
    }

    /// Whether this node is a primary that lost the right to change its data (its lease ran
    /// out: another node may be promoted in its place). Such a primary adds nothing to its
    /// stream, not even a keep-alive, and expires nothing: its replicas must never get ahead
    /// of the one promoted, or they could not continue from it with a partial resync.
    pub fn fenced(&self) -> bool {
        self.primary.load(Relaxed) && self.authority.get().is_some_and(|may| !may())
    }

    /// Makes writes wait for at most `for_` (a planned failover: the replica catches up with
    /// a primary that takes no more writes, then the map hands it the shard). Returns the
    /// offset the replica must reach.
    pub fn pause_writes(&self, for_: Duration) -> u64 {
        *self.paused_until.lock() = Some(Instant::now() + for_);
        self.pausing.store(true, Relaxed);
        self.offset()
    }

    /// Lets writes through again.
    pub fn unpause_writes(&self) {
        *self.paused_until.lock() = None;
        self.pausing.store(false, Relaxed);
        self.unpaused.notify_waiters();
    }

    /// Whether writes must wait now.
    #[inline]
    pub fn writes_paused(&self) -> bool {
        if !self.pausing.load(Relaxed) {
            return false;
        }
        let mut paused = self.paused_until.lock();
        match *paused {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                *paused = None;
                self.pausing.store(false, Relaxed);
                self.unpaused.notify_waiters();
                false
            }
            None => false,
        }
    }

    /// Waits until writes are no longer paused.
    pub async fn await_unpause(&self) {
        self.paused_writers.fetch_add(1, Relaxed);
        let _counted = DecrementOnDrop(&self.paused_writers);
        let notified = self.unpaused.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let until = *self.paused_until.lock();
        if let Some(until) = until {
            let _ = tokio::time::timeout_at(until.into(), notified).await;
        }
    }

    /// How many writes wait for the pause to end now.
    pub fn paused_writers(&self) -> usize {
        self.paused_writers.load(Relaxed)
    }

    /// Milliseconds since the node started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The history, locked (briefly: the journal appends under this lock).
    pub fn history(&self) -> parking_lot::MutexGuard<'_, History> {
        self.history.lock()
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.history.lock().role.clone()
    }

    /// Whether this node follows a primary (no copy of the role made).
    pub fn is_replica(&self) -> bool {
        matches!(self.history.lock().role, Role::Replica(_))
    }

    /// Whether this node replicates `primary` (no copy of the role made).
    pub fn is_replica_of(&self, primary: &str) -> bool {
        matches!(&self.history.lock().role, Role::Replica(p) if p == primary)
    }

    /// The offset of the next byte of the stream (`master_repl_offset`).
    #[inline]
    pub fn offset(&self) -> u64 {
        self.end.load(Relaxed)
    }

    /// Whether this node's keyspace may be served: it is a primary, or a replica whose
    /// keyspace is its current primary's (a sync completed, no snapshot loading). Otherwise
    /// reads are answered `-LOADING`.
    pub fn data_ready(&self) -> bool {
        self.is_primary()
            || (self.link.synced_generation.load(Relaxed) == self.generation.load(Relaxed) + 1
                && !self.link.loading.load(Relaxed))
    }

    /// Whether this node is a primary (cheap: for the write path).
    #[inline]
    pub fn is_primary(&self) -> bool {
        self.primary.load(Relaxed)
    }

    /// Whether the store's changes are being recorded.
    pub fn recording(&self) -> bool {
        self.journal_on.load(Relaxed)
    }

    /// A journal to give the store (it appends to this node's backlog while recording).
    pub fn journal(self: &Arc<Self>) -> Arc<dyn Journal> {
        Arc::new(StreamJournal {
            on: self.journal_on.clone(),
            replication: Arc::downgrade(self),
            unit: AtomicU8::new(NO_UNIT),
        })
    }

    /// Starts or stops recording the store's changes (a primary records while its shard has
    /// replicas). A history with a gap could not be continued by anyone, so starting again
    /// after a pause begins a new one.
    pub fn set_recording(&self, on: bool) {
        let was = self.journal_on.swap(on, Relaxed);
        if on && !was && self.gap.swap(false, Relaxed) {
            let mut history = self.history.lock();
            let end = history.backlog.end();
            history.replid = new_replid();
            history.replid2 = None;
            history.backlog.reset(end);
            self.end.store(end, Relaxed);
            drop(history);
            self.forget_getack();
        }
        if !on && was && self.role() == Role::Primary {
            self.gap.store(true, Relaxed);
        }
    }

    /// Appends a frame of a primary's own (not a change of the store's: the functions' set)
    /// to the stream, if it records and may change its data.
    pub fn record(&self, frame: &[u8]) {
        if self.recording() && !self.fenced() {
            self.append(frame);
        }
    }

    /// Appends raw stream bytes (a replica appends what it applied; a primary its keep-alives)
    /// and wakes the streamers.
    pub fn append(&self, data: &[u8]) {
        {
            let mut history = self.history.lock();
            history.backlog.append(data);
            self.end.store(history.backlog.end(), Relaxed);
        }
        *self.last_append.lock() = Instant::now();
        self.wake_streamers();
    }

    fn wake_streamers(&self) {
        if self.streamer_waiting.load(Relaxed) && self.streamer_waiting.swap(false, Relaxed) {
            self.grown.notify_waiters();
        }
    }

    /// Waits until the backlog may have grown past `offset` (or `timeout` passes).
    pub async fn wait_for_growth(&self, offset: u64, timeout: Duration) {
        let notified = self.grown.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.streamer_waiting.store(true, Relaxed);
        if self.offset() > offset {
            return;
        }
        let _ = tokio::time::timeout(timeout, notified).await;
    }

    /// Changes the role (as the cluster map says) and, for a primary, whether it records (its
    /// shard has replicas), in one step: a replica's `PSYNC` arriving between the two would
    /// otherwise find a primary that does not record and get a full resync instead of
    /// continuing. Promotion keeps the history as `replid2`; leaving the primary role stops
    /// recording.
    pub fn set_role_recording(&self, role: Role, recording: bool) {
        if role == Role::Primary && recording {
            // Recording on before the role is visible: a promoted replica's backlog is its
            // primary's stream, without gap.
            let mut history = self.history.lock();
            if history.role == Role::Primary {
                drop(history);
                self.set_recording(true);
                return;
            }
            self.journal_on.store(true, Relaxed);
            self.gap.store(false, Relaxed);
            self.promote(&mut history);
            return;
        }
        if role == Role::Primary {
            let was_primary = self.history.lock().role == Role::Primary;
            if was_primary {
                self.set_recording(false);
                return;
            }
        }
        let mut history = self.history.lock();
        if history.role == role {
            return;
        }
        if role == Role::Primary {
            self.promote(&mut history);
            return;
        }
        tracing::info!(from = ?history.role, to = ?role, "replication role changes");
        history.role = role.clone();
        self.primary.store(false, Relaxed);
        drop(history);
        if role != Role::Primary {
            self.journal_on.store(false, Relaxed);
        }
        if matches!(role, Role::Replica(_)) {
            // A replica's stream is its primary's, without gaps of its own.
            self.gap.store(false, Relaxed);
        }
        self.generation.fetch_add(1, Relaxed);
        self.role_changed.notify_waiters();
        // Streams to replicas end: a node that is no longer primary serves none.
        if role != Role::Primary {
            self.grown.notify_waiters();
        }
        self.acked.notify_waiters();
    }

    /// Makes this node the primary (its lock held): a replica keeps its history as `replid2`
    /// so its fellow replicas continue with it.
    fn promote(&self, history: &mut parking_lot::MutexGuard<'_, History>) {
        tracing::info!(from = ?history.role, to = ?Role::Primary, "replication role changes");
        if matches!(history.role, Role::Replica(_)) {
            let end = history.backlog.end();
            let old = std::mem::replace(&mut history.replid, new_replid());
            history.replid2 = Some((old, end));
        }
        history.role = Role::Primary;
        self.primary.store(true, Relaxed);
        self.generation.fetch_add(1, Relaxed);
        self.role_changed.notify_waiters();
        self.acked.notify_waiters();
    }

    /// Registers a replica this primary now serves.
    pub fn add_replica(&self, peer: Arc<ReplicaPeer>) {
        self.replicas.lock().push(peer);
    }

    /// Forgets the replica on connection `client_id`.
    pub fn remove_replica(&self, client_id: u64) {
        self.replicas.lock().retain(|p| p.client_id != client_id);
        self.acked.notify_waiters();
    }

    /// How many replicas have acknowledged `offset`.
    pub fn acked_at_least(&self, offset: u64) -> usize {
        self.replicas
            .lock()
            .iter()
            .filter(|p| p.ack.load(Relaxed) >= offset)
            .count()
    }

    /// Replicas that acknowledged within `max_lag` (Redis's "good replicas" of
    /// `min-replicas-max-lag`).
    pub fn good_replicas(&self, max_lag: Duration) -> usize {
        let now = self.now_ms();
        self.replicas
            .lock()
            .iter()
            .filter(|p| {
                p.online.load(Relaxed)
                    && now.saturating_sub(p.last_ack_ms.load(Relaxed)) <= max_lag.as_millis() as u64
            })
            .count()
    }

    /// `WAIT`: waits until `numreplicas` replicas acknowledged `offset`, or `timeout` (none:
    /// forever) passes; returns how many did.
    pub async fn wait_for_acks(
        &self,
        offset: u64,
        numreplicas: usize,
        timeout: Option<Duration>,
    ) -> usize {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let notified = self.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let count = self.acked_at_least(offset);
            if count >= numreplicas || self.role() != Role::Primary {
                return count;
            }
            self.request_acks(offset);
            match deadline {
                Some(deadline) => {
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        return self.acked_at_least(offset);
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The replication report heartbeats carry.
    pub fn report(&self) -> shoal_cluster::bus::ReplicationReport {
        let history = self.history.lock();
        shoal_cluster::bus::ReplicationReport {
            replid: history.replid.clone(),
            offset: history.backlog.end(),
            in_sync: match history.role {
                Role::Replica(_) => self.link.up.load(Relaxed) && !self.link.loading.load(Relaxed),
                _ => true,
            },
        }
    }

    /// On a primary, how far behind each replica is: bytes of the stream it has not
    /// acknowledged, and time since its last acknowledgement (Redis's `lag=`).
    pub fn replica_lags(&self) -> Vec<shoal_cluster::bus::ReplicaLag> {
        let offset = self.offset();
        let now = self.now_ms();
        self.replicas
            .lock()
            .iter()
            .map(|peer| shoal_cluster::bus::ReplicaLag {
                addr: format!("{}:{}", peer.ip, peer.port),
                lag_bytes: offset.saturating_sub(peer.ack.load(Relaxed)),
                ack_age_ms: now.saturating_sub(peer.last_ack_ms.load(Relaxed)),
            })
            .collect()
    }

    /// Asks every replica to acknowledge an offset of at least `offset` (`WAIT`), with a
    /// `REPLCONF GETACK *` in the stream as Redis does, unless one already follows `offset` in
    /// the stream: a replica answers it once it has applied everything before it, so that one
    /// serves every waiter for an offset up to it. Requests are coalesced that way, never
    /// dropped: a waiter whose write came after the last `GETACK` always gets a new one.
    pub fn request_acks(&self, offset: u64) {
        if !self.recording() || self.fenced() {
            return;
        }
        let mut last = self.last_getack.lock();
        if last.is_some_and(|at| at >= offset && at < self.offset()) {
            return;
        }
        *last = Some(self.offset());
        self.append(frames::GETACK);
    }

    /// Forgets the last `GETACK` (its stream was restarted: offsets may count from lower).
    /// Never called with the history locked: [`Replication::request_acks`] locks the two the
    /// other way round.
    fn forget_getack(&self) {
        *self.last_getack.lock() = None;
    }

    /// Appends a keep-alive if this primary has replicas and wrote nothing for `idle`.
    pub fn keep_alive(&self, idle: Duration) {
        if !self.recording() || self.fenced() || self.replicas.lock().is_empty() {
            return;
        }
        if self.last_append.lock().elapsed() >= idle {
            self.append(frames::PING);
        }
    }

    /// Whether this replica received bytes of its primary's stream within `bound`. That says
    /// the link works and the primary is alive, not how old the data is: bytes that queued up
    /// behind a slow link arrive late but steadily (the bound's limit, in the README).
    pub fn heard_within(&self, bound: Duration) -> bool {
        let silent = self
            .now_ms()
            .saturating_sub(self.link.last_io_ms.load(Relaxed));
        u128::from(silent) <= bound.as_millis()
    }
}

/// No unit is open ([`StreamJournal::unit`]).
const NO_UNIT: u8 = 0;
/// A unit began, and has reported no change yet: `MULTI` is not written (a unit without
/// changes leaves nothing in the stream).
const UNIT_BEGUN: u8 = 1;
/// A unit's `MULTI` is written: `EXEC` closes it.
const UNIT_OPEN: u8 = 2;

/// The store's journal on a primary: each change becomes a frame in the backlog.
struct StreamJournal {
    /// Whether to record: read first, so a node that records nothing (standalone, replica)
    /// pays one load per write.
    on: Arc<AtomicBool>,
    replication: Weak<Replication>,
    /// Where the store's current unit is ([`NO_UNIT`], [`UNIT_BEGUN`], [`UNIT_OPEN`]). Only
    /// the thread holding the store's every lock changes it, so relaxed order is enough.
    unit: AtomicU8,
}

impl StreamJournal {
    fn with(&self, write: impl FnOnce(&mut Backlog)) {
        if !self.on.load(Relaxed) {
            return;
        }
        let Some(replication) = self.replication.upgrade() else {
            return;
        };
        {
            let mut history = replication.history.lock();
            if self.unit.load(Relaxed) == UNIT_BEGUN {
                history.backlog.append(frames::MULTI);
                self.unit.store(UNIT_OPEN, Relaxed);
            }
            write(&mut history.backlog);
            replication.end.store(history.backlog.end(), Relaxed);
        }
        replication.wake_streamers();
    }
}

thread_local! {
    /// Where a frame is encoded before it is appended (kept: no allocation per write).
    static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Encodes a frame with `encode` into the thread's scratch buffer and appends it.
fn append_encoded(backlog: &mut Backlog, encode: impl FnOnce(&mut Vec<u8>)) {
    FRAME.with_borrow_mut(|frame| {
        frame.clear();
        encode(frame);
        backlog.append(frame);
        if frame.capacity() > 1 << 20 {
            *frame = Vec::new();
        }
    });
}

impl Journal for StreamJournal {
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>) {
        self.with(|backlog| {
            append_encoded(backlog, |frame| frames::put(frame, key, value, expiry));
        });
    }

    fn delete(&self, key: &[u8]) {
        self.with(|backlog| append_encoded(backlog, |frame| frames::delete(frame, key)));
    }

    fn put_value(&self, key: &[u8], kind: Kind, payload: &[u8], expiry: Option<u64>) {
        self.with(|backlog| {
            append_encoded(backlog, |frame| {
                frames::put_value(frame, key, kind, payload, expiry)
            });
        });
    }

    fn put_field(&self, key: &[u8], field: &[u8], value: &[u8], expiry: Option<u64>) {
        self.with(|backlog| {
            append_encoded(backlog, |frame| {
                frames::put_field(frame, key, field, value, expiry)
            });
        });
    }

    fn delete_field(&self, key: &[u8], field: &[u8]) {
        self.with(|backlog| {
            append_encoded(backlog, |frame| frames::delete_field(frame, key, field));
        });
    }

    fn set_expiry(&self, key: &[u8], expiry: Option<u64>) {
        self.with(|backlog| {
            append_encoded(backlog, |frame| frames::set_expiry(frame, key, expiry));
        });
    }

    fn flush(&self, _existed: &dyn Fn(&[u8]) -> bool) {
        self.with(|backlog| backlog.append(frames::FLUSHALL));
    }

    fn begin_unit(&self) {
        self.unit.store(UNIT_BEGUN, Relaxed);
    }

    fn end_unit(&self) {
        if self.unit.swap(NO_UNIT, Relaxed) == UNIT_OPEN {
            self.with(|backlog| backlog.append(frames::EXEC));
        }
    }
}

/// Who a replica is, as its connection and handshake tell.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaAddress {
    /// Its client id on this node.
    pub client_id: u64,
    /// The address it is known by (`REPLCONF ip-address`, else its connection's).
    pub ip: String,
    /// The port it listens on (`REPLCONF listening-port`, else its connection's).
    pub port: u16,
}

/// Serves a replica that sent `PSYNC` on a client connection, until the link ends.
pub(crate) async fn serve_replica(
    replication: &Arc<Replication>,
    store: &Store,
    functions: &crate::scripting::Functions,
    stream: &mut shoal_frontdoor::Stream,
    request: primary::PsyncRequest,
    replica: ReplicaAddress,
) -> std::io::Result<()> {
    let peer = Arc::new(ReplicaPeer {
        client_id: replica.client_id,
        ip: replica.ip,
        port: replica.port,
        ack: AtomicU64::new(0),
        last_ack_ms: AtomicU64::new(replication.now_ms()),
        online: AtomicBool::new(false),
        synced: AtomicBool::new(false),
    });
    replication.add_replica(peer.clone());
    let served = primary::serve(replication, store, functions, stream, request, peer.clone()).await;
    replication.remove_replica(replica.client_id);
    if let Err(e) = &served {
        tracing::info!(replica = %format!("{}:{}", peer.ip, peer.port), "replica link ended: {e}");
    }
    served
}

impl Replication {
    /// Starts the stream over at `offset` under `replid` (a replica after a full resync).
    pub fn restart_history(&self, replid: String, offset: u64) {
        let mut history = self.history.lock();
        history.replid = replid;
        history.replid2 = None;
        history.backlog.reset(offset);
        self.end.store(offset, Relaxed);
        drop(history);
        self.forget_getack();
    }
}

/// Decrements a counter when dropped (a waiter that is cancelled is uncounted too).
struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_without_authority_adds_nothing_to_its_stream() {
        let r = Replication::new(1 << 20);
        let authority = Arc::new(AtomicBool::new(true));
        r.set_authority({
            let authority = authority.clone();
            move || authority.load(Relaxed)
        });
        r.set_role_recording(Role::Primary, true);
        assert!(!r.fenced());
        r.request_acks(0);
        let end = r.offset();
        assert!(
            end > 0,
            "a primary with authority asks for acknowledgements"
        );
        authority.store(false, Relaxed);
        assert!(r.fenced());
        r.request_acks(end);
        assert_eq!(r.offset(), end, "a fenced primary asks for nothing");
        r.set_role_recording(Role::Replica("127.0.0.1:7000".into()), false);
        assert!(!r.fenced(), "only a primary is fenced");
    }

    #[test]
    fn ack_requests_are_coalesced_but_never_dropped() {
        let r = Replication::new(1 << 20);
        r.set_role_recording(Role::Primary, true);
        let journal = r.journal();
        let getack = frames::GETACK.len() as u64;
        journal.delete(b"k");
        let write = r.offset();
        r.request_acks(write);
        assert_eq!(r.offset(), write + getack, "a GETACK after the write");
        r.request_acks(write);
        assert_eq!(
            r.offset(),
            write + getack,
            "a waiter for the same write shares the GETACK already in the stream"
        );
        // The next write, at once (the old rule dropped a request within a millisecond of
        // the last one, and the waiter then waited for the replicas' periodic ack).
        journal.delete(b"k");
        let second = r.offset();
        r.request_acks(second);
        assert_eq!(
            r.offset(),
            second + getack,
            "a new write gets a GETACK of its own"
        );
        // A restarted history counts from lower: the GETACK remembered is not in it.
        r.restart_history(new_replid(), 0);
        r.request_acks(0);
        assert_eq!(r.offset(), getack, "the new history gets its own GETACK");
    }

    #[test]
    fn a_replica_serves_reads_only_after_a_sync_with_its_current_primary() {
        let r = Replication::new(1 << 20);
        r.set_role_recording(Role::Replica("127.0.0.1:7000".into()), false);
        assert!(!r.data_ready(), "nothing synced yet");
        // What a link task of this generation stores once its sync completed.
        let synced_now = |r: &Replication| {
            r.link
                .synced_generation
                .store(r.generation.load(Relaxed) + 1, Relaxed)
        };
        synced_now(&r);
        assert!(r.data_ready());
        r.link.loading.store(true, Relaxed);
        assert!(!r.data_ready(), "loading a snapshot");
        r.link.loading.store(false, Relaxed);
        r.set_role_recording(Role::Replica("127.0.0.1:7000".into()), false);
        assert!(r.data_ready(), "the same primary again changes nothing");
        let old = r.generation.load(Relaxed);
        r.set_role_recording(Role::Replica("127.0.0.1:7001".into()), false);
        assert!(!r.data_ready(), "a new primary: not synced with it yet");
        r.link.synced_generation.store(old + 1, Relaxed);
        assert!(
            !r.data_ready(),
            "the old primary's link task finishing late does not count"
        );
        synced_now(&r);
        assert!(r.data_ready());
    }

    #[test]
    fn promotion_keeps_the_old_history_for_partial_resyncs() {
        let r = Replication::new(1 << 20);
        r.set_role_recording(Role::Replica("127.0.0.1:7000".into()), false);
        r.append(b"0123456789");
        let old = r.history().replid.clone();
        r.set_role_recording(Role::Primary, false);
        let h = r.history();
        assert_ne!(h.replid, old);
        assert_eq!(h.replid2, Some((old, 10)));
        assert_eq!(h.backlog.end(), 10, "offsets continue");
    }

    #[test]
    fn a_promoted_replica_records_without_losing_its_history() {
        let r = Replication::new(1 << 20);
        r.set_role_recording(Role::Replica("127.0.0.1:7000".into()), false);
        r.append(b"0123456789");
        r.set_role_recording(Role::Primary, false);
        let replid = r.history().replid.clone();
        r.set_recording(true);
        let h = r.history();
        assert_eq!(h.replid, replid);
        assert!(h.replid2.is_some());
        assert_eq!(h.backlog.len(), 10);
    }

    #[test]
    fn recording_again_after_a_pause_starts_a_new_history() {
        let r = Replication::new(1 << 20);
        r.set_role_recording(Role::Primary, false);
        r.set_recording(true);
        let journal = r.journal();
        journal.put(b"k", b"v", None);
        let first = r.history().replid.clone();
        let end = r.offset();
        assert!(end > 0);
        r.set_recording(false);
        journal.put(b"k", b"lost", None);
        assert_eq!(r.offset(), end, "nothing recorded while paused");
        r.set_recording(true);
        assert_ne!(r.history().replid, first, "a gap cannot be continued");
        assert_eq!(r.offset(), end);
    }
}
