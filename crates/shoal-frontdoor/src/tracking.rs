//! Server-assisted client-side caching (`CLIENT TRACKING`), as Redis 7.0 has it.
//!
//! A connection with tracking on is told when a key it may have cached changes:
//!
//! * by default, the server remembers the keys of the read-only commands it runs (with
//!   `OPTIN`, only after `CLIENT CACHING YES`; with `OPTOUT`, unless after `CLIENT CACHING NO`),
//!   in one table of key → clients ([`Tracking`]); the first change of such a key sends its
//!   invalidation to every client that read it and forgets it, so each key is invalidated once
//!   per read;
//! * with `BCAST`, every change of a key under one of its prefixes is sent, and nothing is
//!   remembered;
//! * with `NOLOOP`, the changes it makes itself are not sent to it;
//! * `FLUSHALL`/`FLUSHDB` send every tracking client a null invalidation;
//! * in a cluster, when slots leave the node, the remembered keys of those slots are
//!   invalidated and forgotten, and every `BCAST` client gets a null
//!   ([`Tracking::invalidate_where`]): their changes are made elsewhere from then on.
//!
//! An invalidation is a RESP3 push `["invalidate", [key]]` on the connection itself, or, with
//! `REDIRECT id`, on the connection `id`: as a push if that one speaks RESP3, or as a Pub/Sub
//! `message` on `__redis__:invalidate` if it speaks RESP2 and subscribes (Redis's RESP2 way).
//! A redirect to a connection that is gone sets the `broken_redirect` flag and sends the
//! tracking client (in RESP3) a `["tracking-redir-broken", id]` push instead.
//!
//! Messages go through the connection's mailbox, the one Pub/Sub uses. A session writes them
//! as soon as they arrive while it waits for a request, and a tracking connection's also
//! before and after each command:
//!
//! * **before** (first thing in `dispatch`, whatever the command, `PING` and error replies
//!   included; on a subscriber too, such as a RESP2 client's redirect connection): every reply
//!   on a tracking connection is preceded by every invalidation queued for it before that
//!   command started. So a reply proves that the client has read every
//!   invalidation for a change made before the command ran, in particular for any write
//!   acknowledged to anyone before it (the journal queues a change's invalidations before the
//!   write is acknowledged). A near cache relies on it: the reply to its heartbeat `PING`
//!   proves it has every invalidation for writes acknowledged before the `PING` ran. Redis,
//!   single-threaded, has the same property: other clients' invalidations are in the output
//!   buffer before the reply.
//! * **after**: those the command caused itself (its own write, without `NOLOOP`) follow its
//!   reply, as Redis 7.0 sends them; so do those another thread queued while it ran.
//!
//! The backend reports every change of a key through [`Tracking::invalidate`] (a node: from
//! its store's journal, so writes, deletions, expiry, eviction and changes replicated from a
//! primary all count) and every flush through [`Tracking::flush`]. While no key is remembered
//! and no prefix is broadcast, a change costs one atomic load. The table holds at most
//! `tracking-table-max-keys` keys: past that, keys are forgotten (each with its invalidation
//! sent) as they are added.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use shoal_proto::{Argv, Protocol};

use crate::clients::{ClientInfo, Clients};
use crate::error::CommandError;
use crate::pubsub::{Invalidation, Message};
use crate::settings::OutputLimit;

/// Redis's default `tracking-table-max-keys`.
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

thread_local! {
    /// The id of the tracking client whose command runs on this thread (0: none): its own
    /// changes are not sent to it with `NOLOOP`.
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// Marks the tracking client `id` as running a command on this thread, until [`ran`].
pub(crate) fn mark_running(id: u64) {
    CURRENT.with(|c| c.set(id));
}

/// The command marked by [`mark_running`] is done.
pub(crate) fn ran() {
    CURRENT.with(|c| c.set(0));
}

/// Marks the tracking client `id` as running a command on this thread until the guard drops.
pub(crate) fn running(id: u64) -> RunningGuard {
    mark_running(id);
    RunningGuard
}

/// Clears the thread's running tracking client when dropped.
pub(crate) struct RunningGuard;

impl Drop for RunningGuard {
    fn drop(&mut self) {
        ran();
    }
}

/// How a tracking client wants its invalidations, as those who send them see it.
#[derive(Debug)]
struct Target {
    info: Arc<ClientInfo>,
    bcast: bool,
    noloop: bool,
    /// `REDIRECT` id (0: none).
    redirect: u64,
}

/// What one invalidation is about.
enum Payload {
    /// A key a client read changed.
    Key(Bytes),
    /// A key changed under a prefix a client broadcasts (batched per prefix until written).
    Broadcast { prefix: Bytes, key: Bytes },
    /// Everything went; the null is written in this protocol (the tracking client's).
    Flush(Protocol),
}

/// The keys remembered for default-mode tracking clients.
#[derive(Debug, Default)]
struct KeyTable {
    keys: HashMap<Bytes, Vec<u64>>,
    /// (key, client) pairs.
    items: usize,
}

/// Every tracking client of this server, and what they are to be told.
#[derive(Debug)]
pub struct Tracking {
    clients: Arc<Clients>,
    targets: RwLock<HashMap<u64, Target>>,
    table: Mutex<KeyTable>,
    /// Broadcast prefixes, each with its clients.
    prefixes: Mutex<BTreeMap<Bytes, Vec<u64>>>,
    /// Keys in the table plus broadcast prefixes: nothing to do while 0.
    armed: AtomicUsize,
    max_keys: AtomicUsize,
    /// Invalidations put in a mailbox (see [`Tracking::invalidations_sent`]).
    sent: AtomicU64,
}

/// What [`Tracking::invalidate_where`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Invalidated {
    /// Remembered keys invalidated (each sent to the clients that read it) and forgotten.
    pub keys: usize,
    /// `BCAST` clients sent a null invalidation.
    pub broadcast: usize,
}

/// What `INFO` shows of tracking.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrackingStats {
    /// Clients with tracking on (`tracking_clients`).
    pub clients: usize,
    /// Keys remembered (`tracking_total_keys`).
    pub keys: usize,
    /// (key, client) pairs remembered (`tracking_total_items`).
    pub items: usize,
    /// Broadcast prefixes (`tracking_total_prefixes`).
    pub prefixes: usize,
}

impl Tracking {
    /// No tracking client yet, for the connections in `clients`.
    pub fn new(clients: Arc<Clients>) -> Tracking {
        Tracking {
            clients,
            targets: RwLock::default(),
            table: Mutex::default(),
            prefixes: Mutex::default(),
            armed: AtomicUsize::new(0),
            max_keys: AtomicUsize::new(DEFAULT_MAX_KEYS),
            sent: AtomicU64::new(0),
        }
    }

    /// Invalidations sent since the server started: each key to each client (directly, to
    /// its redirect connection, or under a broadcast prefix) counts one, and so does each
    /// null (a flush, or slots leaving the node). Those that cannot be sent (a RESP2 client
    /// without a redirect, a redirect to a client that is gone) do not count.
    pub fn invalidations_sent(&self) -> u64 {
        self.sent.load(Relaxed)
    }

    /// Sets `tracking-table-max-keys` (0: no limit).
    pub fn set_max_keys(&self, max: usize) {
        self.max_keys.store(max, Relaxed);
    }

    /// What `INFO` shows.
    pub fn stats(&self) -> TrackingStats {
        let (keys, items) = {
            let table = self.table.lock();
            (table.keys.len(), table.items)
        };
        TrackingStats {
            clients: self.targets.read().len(),
            keys,
            items,
            prefixes: self.prefixes.lock().len(),
        }
    }

    /// Whether any key is remembered or prefix broadcast (else a change has nobody to tell).
    #[inline]
    pub fn armed(&self) -> bool {
        self.armed.load(Relaxed) != 0
    }

    /// `key` changed: its invalidation goes to the clients that read it (which forget it) and
    /// to those broadcasting a prefix of it. Called with the key's shard locked: never calls
    /// back into the store.
    #[inline]
    pub fn invalidate(&self, key: &[u8], limit: OutputLimit) {
        if self.armed.load(Relaxed) != 0 {
            self.invalidate_tracked(key, limit);
        }
    }

    #[cold]
    fn invalidate_tracked(&self, key: &[u8], limit: OutputLimit) {
        let current = CURRENT.with(Cell::get);
        let readers = {
            let mut table = self.table.lock();
            let readers = table.keys.remove(key);
            if let Some(ids) = &readers {
                table.items -= ids.len();
                self.armed.fetch_sub(1, Relaxed);
            }
            readers
        };
        let broadcast: Vec<(u64, Bytes)> = {
            let prefixes = self.prefixes.lock();
            if prefixes.is_empty() {
                Vec::new()
            } else {
                prefixes
                    .iter()
                    .filter(|(prefix, _)| key.starts_with(prefix))
                    .flat_map(|(prefix, ids)| ids.iter().map(|&id| (id, prefix.clone())))
                    .collect()
            }
        };
        if readers.is_none() && broadcast.is_empty() {
            return;
        }
        let key = Bytes::copy_from_slice(key);
        let targets = self.targets.read();
        for id in readers.iter().flatten() {
            // A client that turned tracking off, or switched to BCAST, is not told.
            let Some(target) = targets.get(id).filter(|t| !t.bcast) else {
                continue;
            };
            if !(target.noloop && *id == current) {
                self.send(target, Payload::Key(key.clone()), limit);
            }
        }
        for (id, prefix) in broadcast {
            if let Some(target) = targets.get(&id)
                && !(target.noloop && id == current)
            {
                let payload = Payload::Broadcast {
                    prefix,
                    key: key.clone(),
                };
                self.send(target, payload, limit);
            }
        }
    }

    /// Every key is gone (`FLUSHALL`, `FLUSHDB`): every tracking client gets a null
    /// invalidation, and the table is emptied.
    pub fn flush(&self, limit: OutputLimit) {
        {
            let mut table = self.table.lock();
            let forgotten = table.keys.len();
            table.keys = HashMap::new();
            table.items = 0;
            self.armed.fetch_sub(forgotten, Relaxed);
        }
        let targets = self.targets.read();
        for target in targets.values() {
            self.send(target, Payload::Flush(protocol_of(target)), limit);
        }
    }

    /// Keys leave this server (their slots went to another node of the cluster): every
    /// remembered key for which `gone` holds gets its invalidation sent to the clients that
    /// read it and is forgotten, and every `BCAST` client gets a null invalidation (its keys
    /// are not remembered, so which of them left cannot be told: it drops its whole cache).
    /// A key's readers could otherwise keep a value, or a miss, that this server will never
    /// hear change again: the key's writes now go to its new owner. Takes the table's lock
    /// once, for one pass over it.
    pub fn invalidate_where(
        &self,
        gone: impl Fn(&[u8]) -> bool,
        limit: OutputLimit,
    ) -> Invalidated {
        let keys = self.forget_where(gone, limit);
        let targets = self.targets.read();
        let mut broadcast = 0;
        for target in targets.values().filter(|t| t.bcast) {
            self.send(target, Payload::Flush(protocol_of(target)), limit);
            broadcast += 1;
        }
        Invalidated { keys, broadcast }
    }

    /// The remembered keys for which `gone` holds get their invalidations sent to the clients
    /// that read them, and are forgotten (`BCAST` clients are not told: see
    /// [`Tracking::invalidate_where`]). Returns how many keys.
    pub fn forget_where(&self, gone: impl Fn(&[u8]) -> bool, limit: OutputLimit) -> usize {
        if self.armed.load(Relaxed) == 0 {
            return 0;
        }
        let forgotten: Vec<(Bytes, Vec<u64>)> = {
            let mut table = self.table.lock();
            let forgotten: Vec<(Bytes, Vec<u64>)> =
                table.keys.extract_if(|key, _| gone(key)).collect();
            table.items -= forgotten.iter().map(|(_, ids)| ids.len()).sum::<usize>();
            self.armed.fetch_sub(forgotten.len(), Relaxed);
            forgotten
        };
        if forgotten.is_empty() {
            return 0;
        }
        let targets = self.targets.read();
        for (key, ids) in &forgotten {
            for id in ids {
                if let Some(target) = targets.get(id).filter(|t| !t.bcast) {
                    self.send(target, Payload::Key(key.clone()), limit);
                }
            }
        }
        forgotten.len()
    }

    /// Puts `payload`'s invalidation in the mailbox of `target`'s connection, or of the one
    /// it redirects to.
    fn send(&self, target: &Target, payload: Payload, limit: OutputLimit) {
        let (to, redirected) = if target.redirect == 0 {
            // RESP2 without a redirect: nothing can be sent (as Redis).
            if target.info.resp.load(Relaxed) < 3 {
                return;
            }
            (target.info.clone(), false)
        } else {
            match self.clients.get(target.redirect) {
                Some(to) => (to, true),
                None => {
                    target.info.tracking_broken.store(true, Relaxed);
                    if target.info.resp.load(Relaxed) >= 3 {
                        let message = Message::RedirectBroken {
                            id: target.redirect,
                        };
                        target.info.mailbox().deliver(message, limit);
                    }
                    return;
                }
            }
        };
        self.sent.fetch_add(1, Relaxed);
        let invalidation = match payload {
            Payload::Broadcast { prefix, key } => {
                to.mailbox()
                    .deliver_broadcast(&prefix, &key, redirected, limit);
                return;
            }
            Payload::Key(key) => Invalidation::Keys(vec![key]),
            Payload::Flush(protocol) => Invalidation::Flush(protocol),
        };
        let message = Message::Invalidate {
            invalidation,
            redirected,
        };
        to.mailbox().deliver(message, limit);
    }

    /// Remembers that client `id` read `keys`, then forgets keys over
    /// `tracking-table-max-keys`, sending their invalidations.
    pub(crate) fn remember<'a>(
        &self,
        id: u64,
        keys: impl Iterator<Item = &'a [u8]>,
        limit: OutputLimit,
    ) {
        let max = self.max_keys.load(Relaxed);
        let mut evicted = Vec::new();
        let keys: Vec<&[u8]> = keys.collect();
        {
            let mut table = self.table.lock();
            for &key in &keys {
                let ids = match table.keys.get_mut(key) {
                    Some(ids) => ids,
                    None => {
                        self.armed.fetch_add(1, Relaxed);
                        table.keys.entry(Bytes::copy_from_slice(key)).or_default()
                    }
                };
                if !ids.contains(&id) {
                    ids.push(id);
                    table.items += 1;
                }
            }
            while max > 0 && table.keys.len() > max {
                // Any key but those just read (which the reply is about to show).
                let victim = table.keys.keys().find(|k| !keys.contains(&&k[..])).cloned();
                let Some(key) = victim else {
                    break;
                };
                if let Some(ids) = table.keys.remove(&key) {
                    table.items -= ids.len();
                    self.armed.fetch_sub(1, Relaxed);
                    evicted.push((key, ids));
                }
            }
        }
        if evicted.is_empty() {
            return;
        }
        let targets = self.targets.read();
        for (key, ids) in evicted {
            for id in ids {
                if let Some(target) = targets.get(&id).filter(|t| !t.bcast) {
                    self.send(target, Payload::Key(key.clone()), limit);
                }
            }
        }
    }

    fn register(&self, id: u64, target: Target) {
        self.targets.write().insert(id, target);
    }

    fn unregister(&self, id: u64, prefixes: &BTreeSet<Bytes>) {
        self.targets.write().remove(&id);
        self.remove_prefixes(id, prefixes);
    }

    fn add_prefix(&self, id: u64, prefix: &Bytes) {
        let mut table = self.prefixes.lock();
        let ids = table.entry(prefix.clone()).or_insert_with(|| {
            self.armed.fetch_add(1, Relaxed);
            Vec::new()
        });
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    fn remove_prefixes(&self, id: u64, prefixes: &BTreeSet<Bytes>) {
        if prefixes.is_empty() {
            return;
        }
        let mut table = self.prefixes.lock();
        for prefix in prefixes {
            if let Some(ids) = table.get_mut(prefix) {
                ids.retain(|&i| i != id);
                if ids.is_empty() {
                    table.remove(prefix);
                    self.armed.fetch_sub(1, Relaxed);
                }
            }
        }
    }
}

/// The protocol a tracking client speaks now (its null invalidation is written in it).
fn protocol_of(target: &Target) -> Protocol {
    if target.info.resp.load(Relaxed) >= 3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    }
}

/// One connection's tracking state (in its [`Conn`](crate::Conn) while tracking is on).
/// Dropping it (tracking off, `RESET`, the connection closing) stops its invalidations; keys
/// it read stay remembered until they change, as in Redis.
#[derive(Debug)]
pub(crate) struct ConnTracking {
    registry: Arc<Tracking>,
    info: Arc<ClientInfo>,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    redirect: u64,
    /// `CLIENT CACHING YES|NO` was given for the next command.
    pub(crate) caching: bool,
    prefixes: BTreeSet<Bytes>,
}

impl Drop for ConnTracking {
    fn drop(&mut self) {
        self.registry.unregister(self.info.id, &self.prefixes);
        self.info.show_tracking(None);
    }
}

impl ConnTracking {
    /// Whether the keys of the read-only command just run are remembered: not in `BCAST`
    /// mode; with `OPTIN` only after `CLIENT CACHING YES`, with `OPTOUT` unless after
    /// `CLIENT CACHING NO`.
    pub(crate) fn remembers(&self) -> bool {
        !self.bcast && (!self.optin || self.caching) && (!self.optout || !self.caching)
    }

    /// Remembers `keys`, read by this connection.
    pub(crate) fn remember<'a>(&self, keys: impl Iterator<Item = &'a [u8]>, limit: OutputLimit) {
        self.registry.remember(self.info.id, keys, limit);
    }
}

/// Why `CLIENT TRACKING` or `CLIENT CACHING` was refused, with Redis 7.0's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrackingError {
    /// An unknown option, a missing argument, `ON|OFF` misspelt.
    Syntax,
    /// `REDIRECT` given twice.
    RedirectTwice,
    /// `REDIRECT` to an id no client has.
    NoSuchRedirect,
    /// `REDIRECT` with a value that is not an integer.
    NotAnInteger,
    /// `PREFIX` without `BCAST`.
    PrefixWithoutBcast,
    /// `BCAST` switched on or off while tracking.
    SwitchBcast,
    /// `OPTIN`/`OPTOUT` with `BCAST`.
    OptWithBcast,
    /// `OPTIN` and `OPTOUT` together.
    OptinAndOptout,
    /// `OPTIN`/`OPTOUT` switched while tracking.
    SwitchOpt,
    /// A new prefix overlaps one the client broadcasts.
    PrefixOverlapsExisting { prefix: Bytes, existing: Bytes },
    /// Two prefixes given overlap.
    PrefixOverlapsGiven { prefix: Bytes, other: Bytes },
    /// `CLIENT CACHING` without tracking on.
    CachingWithoutTracking,
    /// `CLIENT CACHING YES` outside `OPTIN` mode.
    CachingYesWithoutOptin,
    /// `CLIENT CACHING NO` outside `OPTOUT` mode.
    CachingNoWithoutOptout,
    /// The backend does not track keys (the proxy).
    Unsupported,
}

impl TrackingError {
    /// The error reply (a `From` impl would make `?` on `CommandError` ambiguous elsewhere).
    pub(crate) fn into_error(self) -> CommandError {
        let text: String = match self {
            TrackingError::Syntax => "ERR syntax error".into(),
            TrackingError::RedirectTwice => {
                "ERR A client can only redirect to a single other client".into()
            }
            TrackingError::NoSuchRedirect => {
                "ERR The client ID you want redirect to does not exist".into()
            }
            TrackingError::NotAnInteger => "ERR value is not an integer or out of range".into(),
            TrackingError::PrefixWithoutBcast => {
                "ERR PREFIX option requires BCAST mode to be enabled".into()
            }
            TrackingError::SwitchBcast => "ERR You can't switch BCAST mode on/off before \
                disabling tracking for this client, and then re-enabling it with a different \
                mode."
                .into(),
            TrackingError::OptWithBcast => {
                "ERR OPTIN and OPTOUT are not compatible with BCAST".into()
            }
            TrackingError::OptinAndOptout => {
                "ERR You can't specify both OPTIN mode and OPTOUT mode".into()
            }
            TrackingError::SwitchOpt => "ERR You can't switch OPTIN/OPTOUT mode before \
                disabling tracking for this client, and then re-enabling it with a different \
                mode."
                .into(),
            TrackingError::PrefixOverlapsExisting { prefix, existing } => format!(
                "ERR Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single \
                 client must not overlap.",
                String::from_utf8_lossy(&prefix),
                String::from_utf8_lossy(&existing)
            ),
            TrackingError::PrefixOverlapsGiven { prefix, other } => format!(
                "ERR Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a \
                 single client must not overlap.",
                String::from_utf8_lossy(&prefix),
                String::from_utf8_lossy(&other)
            ),
            TrackingError::CachingWithoutTracking => "ERR CLIENT CACHING can be called only \
                when the client is in tracking mode with OPTIN or OPTOUT mode enabled"
                .into(),
            TrackingError::CachingYesWithoutOptin => {
                "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode."
                    .into()
            }
            TrackingError::CachingNoWithoutOptout => {
                "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode."
                    .into()
            }
            TrackingError::Unsupported => {
                "ERR CLIENT TRACKING is not supported by this server (a node tracks keys; the \
                 proxy does not: start it with --near-cache to cache reads for all its clients)"
                    .into()
            }
        };
        CommandError::Other(text.into())
    }
}

/// Whether one of two prefixes starts the other (Redis's `stringCheckPrefix`).
fn overlap(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// `CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]`
/// on `state` (the connection's tracking, if on), as Redis 7.0's `clientCommand` checks it.
pub(crate) fn client_tracking(
    registry: &Arc<Tracking>,
    info: &Arc<ClientInfo>,
    state: &mut Option<Box<ConnTracking>>,
    argv: &Argv<'_>,
    supported: bool,
) -> Result<(), TrackingError> {
    let mut redirect = 0u64;
    let (mut bcast, mut optin, mut optout, mut noloop) = (false, false, false, false);
    let mut prefixes: Vec<Bytes> = Vec::new();
    let mut j = 3;
    while j < argv.len() {
        let arg = argv.get(j);
        let more = j + 1 < argv.len();
        if arg.eq_ignore_ascii_case(b"redirect") && more {
            j += 1;
            if redirect != 0 {
                return Err(TrackingError::RedirectTwice);
            }
            let id =
                shoal_proto::args::parse_i64(argv.get(j)).ok_or(TrackingError::NotAnInteger)?;
            // Redis requires the client to exist now (it may go later).
            let found = u64::try_from(id)
                .ok()
                .and_then(|id| registry.clients.get(id));
            redirect = found.ok_or(TrackingError::NoSuchRedirect)?.id;
        } else if arg.eq_ignore_ascii_case(b"bcast") {
            bcast = true;
        } else if arg.eq_ignore_ascii_case(b"optin") {
            optin = true;
        } else if arg.eq_ignore_ascii_case(b"optout") {
            optout = true;
        } else if arg.eq_ignore_ascii_case(b"noloop") {
            noloop = true;
        } else if arg.eq_ignore_ascii_case(b"prefix") && more {
            j += 1;
            prefixes.push(Bytes::copy_from_slice(argv.get(j)));
        } else {
            return Err(TrackingError::Syntax);
        }
        j += 1;
    }
    let on = argv.get(2);
    if on.eq_ignore_ascii_case(b"off") {
        *state = None;
        return Ok(());
    }
    if !on.eq_ignore_ascii_case(b"on") {
        return Err(TrackingError::Syntax);
    }
    if !bcast && !prefixes.is_empty() {
        return Err(TrackingError::PrefixWithoutBcast);
    }
    if let Some(current) = state.as_deref()
        && current.bcast != bcast
    {
        return Err(TrackingError::SwitchBcast);
    }
    if bcast && (optin || optout) {
        return Err(TrackingError::OptWithBcast);
    }
    if optin && optout {
        return Err(TrackingError::OptinAndOptout);
    }
    if let Some(current) = state.as_deref()
        && ((optin && current.optout) || (optout && current.optin))
    {
        return Err(TrackingError::SwitchOpt);
    }
    if bcast {
        for (i, prefix) in prefixes.iter().enumerate() {
            if let Some(current) = state.as_deref()
                && let Some(existing) = current.prefixes.iter().find(|p| overlap(p, prefix))
            {
                return Err(TrackingError::PrefixOverlapsExisting {
                    prefix: prefix.clone(),
                    existing: existing.clone(),
                });
            }
            if let Some(other) = prefixes[i + 1..].iter().find(|p| overlap(p, prefix)) {
                return Err(TrackingError::PrefixOverlapsGiven {
                    prefix: prefix.clone(),
                    other: other.clone(),
                });
            }
        }
    }
    if !supported {
        return Err(TrackingError::Unsupported);
    }
    // Mailbox first: the session waits on it from its next read.
    info.mailbox();
    let tracking = state.get_or_insert_with(|| {
        Box::new(ConnTracking {
            registry: registry.clone(),
            info: info.clone(),
            bcast,
            optin: false,
            optout: false,
            noloop: false,
            redirect: 0,
            caching: false,
            prefixes: BTreeSet::new(),
        })
    });
    // As Redis's `enableTracking`: the flags are set anew (the caching flag stays), prefixes
    // add up.
    tracking.optin = optin;
    tracking.optout = optout;
    tracking.noloop = noloop;
    tracking.redirect = redirect;
    info.tracking_broken.store(false, Relaxed);
    info.show_tracking(Some((redirect, bcast)));
    if bcast {
        if prefixes.is_empty() {
            prefixes.push(Bytes::new());
        }
        for prefix in prefixes {
            registry.add_prefix(info.id, &prefix);
            tracking.prefixes.insert(prefix);
        }
    }
    registry.register(
        info.id,
        Target {
            info: info.clone(),
            bcast,
            noloop,
            redirect,
        },
    );
    Ok(())
}

/// `CLIENT CACHING YES|NO`.
pub(crate) fn client_caching(
    state: &mut Option<Box<ConnTracking>>,
    argv: &Argv<'_>,
) -> Result<(), TrackingError> {
    let Some(tracking) = state.as_deref_mut() else {
        return Err(TrackingError::CachingWithoutTracking);
    };
    let answer = argv.get(2);
    if answer.eq_ignore_ascii_case(b"yes") {
        if !tracking.optin {
            return Err(TrackingError::CachingYesWithoutOptin);
        }
    } else if answer.eq_ignore_ascii_case(b"no") {
        if !tracking.optout {
            return Err(TrackingError::CachingNoWithoutOptout);
        }
    } else {
        return Err(TrackingError::Syntax);
    }
    tracking.caching = true;
    Ok(())
}

/// `CLIENT GETREDIR`: the redirect id, 0 without one, -1 with tracking off.
pub(crate) fn redirect_of(state: Option<&ConnTracking>) -> i64 {
    state.map_or(-1, |t| t.redirect as i64)
}

/// `CLIENT TRACKINGINFO`: the flags, redirect and prefixes, as Redis writes them.
pub(crate) fn write_info(state: Option<&ConnTracking>, reply: &mut shoal_proto::Reply<'_>) {
    let mut flags: Vec<&str> = Vec::new();
    match state {
        None => flags.push("off"),
        Some(t) => {
            flags.push("on");
            if t.bcast {
                flags.push("bcast");
            }
            if t.optin {
                flags.push("optin");
                if t.caching {
                    flags.push("caching-yes");
                }
            }
            if t.optout {
                flags.push("optout");
                if t.caching {
                    flags.push("caching-no");
                }
            }
            if t.noloop {
                flags.push("noloop");
            }
            if t.info.tracking_broken.load(Relaxed) {
                flags.push("broken_redirect");
            }
        }
    }
    reply.map(3);
    reply.bulk(b"flags");
    reply.set(flags.len());
    for flag in flags {
        reply.bulk(flag.as_bytes());
    }
    reply.bulk(b"redirect");
    reply.int(redirect_of(state));
    reply.bulk(b"prefixes");
    let prefixes = state.map(|t| &t.prefixes);
    reply.array(prefixes.map_or(0, BTreeSet::len));
    for prefix in prefixes.into_iter().flatten() {
        reply.bulk(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_when_one_starts_the_other() {
        assert!(overlap(b"a", b"ab"));
        assert!(overlap(b"ab", b"a"));
        assert!(overlap(b"", b"x"));
        assert!(!overlap(b"ab", b"ac"));
    }

    #[test]
    fn caching_decides_what_optin_and_optout_remember() {
        let clients = Arc::new(Clients::default());
        let registry = Arc::new(Tracking::new(clients.clone()));
        let mut t = ConnTracking {
            registry,
            info: clients.test_client(),
            bcast: false,
            optin: true,
            optout: false,
            noloop: false,
            redirect: 0,
            caching: false,
            prefixes: BTreeSet::new(),
        };
        assert!(!t.remembers());
        t.caching = true;
        assert!(t.remembers());
        (t.optin, t.optout) = (false, true);
        assert!(!t.remembers());
        t.caching = false;
        assert!(t.remembers());
        t.bcast = true;
        assert!(!t.remembers());
    }

    /// A RESP3 client of `clients` registered with `registry` (in `BCAST` mode if `bcast`).
    fn resp3_target(clients: &Clients, registry: &Tracking, bcast: bool) -> Arc<ClientInfo> {
        let info = clients.test_client();
        info.resp.store(3, Relaxed);
        let target = Target {
            info: info.clone(),
            bcast,
            noloop: false,
            redirect: 0,
        };
        registry.register(info.id, target);
        info
    }

    /// What `info`'s connection would write of the messages waiting for it.
    fn written(info: &ClientInfo) -> String {
        let mut out = Vec::new();
        for message in info.pushes().map(|m| m.take()).unwrap_or_default() {
            message.encode(Protocol::Resp3, false, &mut out);
        }
        String::from_utf8(out).expect("text")
    }

    #[test]
    fn keys_that_leave_are_invalidated_and_broadcast_clients_flushed() {
        let clients = Arc::new(Clients::default());
        let registry = Tracking::new(clients.clone());
        let limit = OutputLimit::default();
        let reader = resp3_target(&clients, &registry, false);
        let other = resp3_target(&clients, &registry, false);
        let broadcast = resp3_target(&clients, &registry, true);
        registry.remember(
            reader.id,
            [&b"gone:1"[..], b"gone:2", b"stays"].into_iter(),
            limit,
        );
        registry.remember(other.id, [&b"gone:1"[..]].into_iter(), limit);
        let done = registry.invalidate_where(|key| key.starts_with(b"gone:"), limit);
        assert_eq!(
            done,
            Invalidated {
                keys: 2,
                broadcast: 1
            }
        );
        let reader_got = written(&reader);
        for key in ["gone:1", "gone:2"] {
            assert!(
                reader_got.contains(&format!("$6\r\n{key}\r\n")),
                "{reader_got:?}"
            );
        }
        assert!(!reader_got.contains("stays"), "{reader_got:?}");
        assert_eq!(
            written(&other),
            ">2\r\n$10\r\ninvalidate\r\n*1\r\n$6\r\ngone:1\r\n"
        );
        assert_eq!(written(&broadcast), ">2\r\n$10\r\ninvalidate\r\n_\r\n");
        let stats = registry.stats();
        assert_eq!(
            (stats.keys, stats.items),
            (1, 1),
            "only `stays` is remembered"
        );
        // Two keys to the reader, one to the other, one null.
        assert_eq!(registry.invalidations_sent(), 4);
        // Forgotten: they change without a word.
        registry.invalidate(b"gone:1", limit);
        assert_eq!(written(&reader), "");
        registry.invalidate(b"stays", limit);
        assert!(written(&reader).contains("stays"));
        assert_eq!(registry.invalidations_sent(), 5);
        assert_eq!(registry.armed.load(Relaxed), 0);
    }

    #[test]
    fn invalidations_that_cannot_be_sent_are_not_counted() {
        let clients = Arc::new(Clients::default());
        let registry = Tracking::new(clients.clone());
        let limit = OutputLimit::default();
        // RESP2 without a redirect: nowhere to send.
        let resp2 = clients.test_client();
        let target = Target {
            info: resp2.clone(),
            bcast: false,
            noloop: false,
            redirect: 0,
        };
        registry.register(resp2.id, target);
        registry.remember(resp2.id, [&b"k"[..]].into_iter(), limit);
        registry.invalidate(b"k", limit);
        registry.flush(limit);
        assert_eq!(registry.invalidations_sent(), 0);
        let reader = resp3_target(&clients, &registry, false);
        registry.flush(limit);
        assert_eq!(registry.invalidations_sent(), 1);
        assert_eq!(written(&reader), ">2\r\n$10\r\ninvalidate\r\n_\r\n");
    }

    #[test]
    fn the_table_counts_keys_and_items_and_forgets_past_its_bound() {
        let registry = Tracking::new(Arc::default());
        registry.set_max_keys(2);
        let limit = OutputLimit::default();
        registry.remember(1, [&b"a"[..], b"b"].into_iter(), limit);
        registry.remember(2, [&b"a"[..]].into_iter(), limit);
        let stats = registry.stats();
        assert_eq!((stats.keys, stats.items), (2, 3));
        registry.remember(1, [&b"c"[..]].into_iter(), limit);
        assert_eq!(registry.stats().keys, 2, "one key forgotten past the bound");
        registry.invalidate(b"c", limit);
        registry.invalidate(b"a", limit);
        registry.invalidate(b"b", limit);
        assert_eq!(registry.stats(), TrackingStats::default());
        assert_eq!(registry.armed.load(Relaxed), 0);
    }
}
