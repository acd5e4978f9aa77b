//! The registry of connected clients: what `CLIENT LIST` shows, `maxclients` counts and
//! `CLIENT KILL` acts on.
//!
//! Each connection publishes a [`ClientInfo`] whose fields it updates once per batch of
//! commands (relaxed atomics, no locks on the request path). Killing a client shuts its socket
//! down while the registry lock is held; a connection leaves the registry before its socket is
//! closed (see [`Registration`]), so a kill can never reach a reused file descriptor.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::commands::table;
use crate::pubsub::Mailbox;

/// What other connections can see of one client.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique id (`CLIENT ID`), from 1.
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    fd: RawFd,
    created: Instant,
    name: Mutex<Option<Vec<u8>>>,
    /// The user it runs commands as (`user=` in `CLIENT LIST`).
    user: Mutex<Box<[u8]>>,
    /// Milliseconds after `created` of the last command.
    last_active_ms: AtomicU64,
    /// Id of the last command run (see [`crate::commands::CommandTable::name`]).
    pub(crate) last_command: AtomicU32,
    /// Protocol version (2 or 3).
    pub(crate) resp: AtomicU8,
    /// Bytes waiting in the query buffer.
    pub(crate) query_buffer: AtomicUsize,
    /// Capacity of the query buffer.
    pub(crate) query_buffer_capacity: AtomicUsize,
    /// Bytes of replies not yet written.
    pub(crate) output_buffer: AtomicUsize,
    /// Waiting for a reply that comes later, or handed over (a replica's stream): such a
    /// client is not idle, whatever its last command (Redis spares blocked clients and
    /// replicas from `timeout` too).
    blocked: AtomicBool,
    killed: AtomicBool,
    /// Woken when the client is killed by another (its session may be waiting for a reply),
    /// or given a mailbox (its session may be waiting for input).
    kill: Notify,
    /// Messages for it that its session writes between replies (Pub/Sub, invalidations),
    /// once it subscribes, tracks keys, or another client redirects invalidations to it.
    mailbox: OnceLock<Arc<Mailbox>>,
    /// `CLIENT TRACKING`'s redirect id for `redir=` (0: none; -1: tracking off).
    tracking_redirect: AtomicI64,
    /// Tracking is on in `BCAST` mode (`B` in `flags=`).
    tracking_bcast: AtomicBool,
    /// Its tracking redirect was found gone (`R` in `flags=`, `broken_redirect`).
    pub(crate) tracking_broken: AtomicBool,
}

impl ClientInfo {
    fn new(id: u64, addr: SocketAddr, laddr: SocketAddr, fd: RawFd) -> ClientInfo {
        ClientInfo {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            name: Mutex::new(None),
            user: Mutex::new(Box::from(&b"default"[..])),
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicU32::new(u32::MAX),
            resp: AtomicU8::new(2),
            query_buffer: AtomicUsize::new(0),
            query_buffer_capacity: AtomicUsize::new(0),
            output_buffer: AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
            mailbox: OnceLock::new(),
            tracking_redirect: AtomicI64::new(-1),
            tracking_bcast: AtomicBool::new(false),
            tracking_broken: AtomicBool::new(false),
        }
    }

    /// What `CLIENT LIST` shows of its tracking: `Some((redirect, bcast))` while on.
    pub(crate) fn show_tracking(&self, tracking: Option<(u64, bool)>) {
        let (redirect, bcast) = match tracking {
            Some((redirect, bcast)) => (i64::try_from(redirect).unwrap_or(i64::MAX), bcast),
            None => {
                self.tracking_broken.store(false, Relaxed);
                (-1, false)
            }
        };
        self.tracking_redirect.store(redirect, Relaxed);
        self.tracking_bcast.store(bcast, Relaxed);
    }

    /// The `flags=` of `CLIENT LIST`, as Redis 7.0 writes those Shoal has.
    fn flags(&self) -> String {
        let mut flags = String::new();
        if self.tracking_redirect.load(Relaxed) >= 0 {
            flags.push('t');
            if self.tracking_broken.load(Relaxed) {
                flags.push('R');
            }
            if self.tracking_bcast.load(Relaxed) {
                flags.push('B');
            }
        }
        if flags.is_empty() {
            flags.push('N');
        }
        flags
    }

    /// Its mailbox, created on first use. Its session, if it waits for input without one,
    /// is woken to wait on both.
    pub(crate) fn mailbox(self: &Arc<Self>) -> &Arc<Mailbox> {
        if let Some(mailbox) = self.mailbox.get() {
            return mailbox;
        }
        let mailbox = self.mailbox.get_or_init(|| Arc::new(Mailbox::new(self)));
        self.kill.notify_waiters();
        mailbox
    }

    /// Its mailbox, if it has one.
    #[inline]
    pub(crate) fn pushes(&self) -> Option<&Arc<Mailbox>> {
        self.mailbox.get()
    }

    /// The name set with `CLIENT SETNAME` or `HELLO ... SETNAME`, if any.
    pub fn name(&self) -> Option<Vec<u8>> {
        self.name.lock().clone()
    }

    /// Sets the name (an empty one clears it).
    pub(crate) fn set_name(&self, name: &[u8]) {
        *self.name.lock() = (!name.is_empty()).then(|| name.to_vec());
    }

    /// The user the client runs commands as.
    pub fn user(&self) -> Box<[u8]> {
        self.user.lock().clone()
    }

    /// Sets the user the client runs commands as.
    pub(crate) fn set_user(&self, name: &[u8]) {
        *self.user.lock() = Box::from(name);
    }

    /// Whether `CLIENT KILL` (or the idle timeout) closed this client.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Relaxed)
    }

    /// Resolves once another client (or the idle timeout) kills this one.
    pub(crate) async fn killed(&self) {
        // The same notification wakes the session when it gets a mailbox: only the flag
        // ends the wait.
        loop {
            let notified = self.kill.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the flag is read, so a kill in between is not missed.
            notified.as_mut().enable();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }

    /// Closes the client for keeping more output pending than its limit allows (a subscriber
    /// that does not read its messages). Whether this call closed it.
    pub(crate) fn kill_for_output_limit(&self) -> bool {
        self.mark_killed()
    }

    /// Marks the client as waiting for a reply (or handed over), or not: a blocked client is
    /// never idle.
    pub(crate) fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Relaxed);
    }

    /// Marks the client killed and wakes its session; the caller holds the registry lock and
    /// shuts the socket down.
    fn mark_killed(&self) -> bool {
        let first = !self.killed.swap(true, Relaxed);
        if first {
            self.kill.notify_waiters();
        }
        first
    }

    /// Seconds since the last command.
    pub fn idle_seconds(&self) -> u64 {
        self.idle_ms() / 1000
    }

    fn idle_ms(&self) -> u64 {
        let age_ms = self.created.elapsed().as_millis() as u64;
        age_ms.saturating_sub(self.last_active_ms.load(Relaxed))
    }

    /// Marks the client active now.
    pub(crate) fn touch(&self) {
        self.last_active_ms
            .store(self.created.elapsed().as_millis() as u64, Relaxed);
    }

    /// Bytes waiting in the client's query buffer.
    pub fn query_buffer_len(&self) -> usize {
        self.query_buffer.load(Relaxed)
    }

    /// Bytes of replies not yet written to the client.
    pub fn output_buffer_len(&self) -> usize {
        self.output_buffer.load(Relaxed)
    }

    /// The `CLIENT LIST` / `CLIENT INFO` line for this client (without the trailing newline),
    /// in Redis 7.0's field order.
    pub fn describe(&self) -> String {
        let name = self
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        let qbuf = self.query_buffer.load(Relaxed);
        let capacity = self.query_buffer_capacity.load(Relaxed);
        let omem = self.output_buffer.load(Relaxed);
        let cmd = table()
            .name(self.last_command.load(Relaxed))
            .unwrap_or("NULL");
        let mut line = String::with_capacity(300);
        let _ = write!(
            line,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 \
             multi=-1 qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp={} obl=0 oll=0 omem={} \
             tot-mem={} events=r cmd={} user={} redir={} resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            name,
            self.created.elapsed().as_secs(),
            self.idle_seconds(),
            self.flags(),
            qbuf,
            capacity.saturating_sub(qbuf),
            capacity,
            qbuf,
            omem,
            capacity + omem,
            cmd,
            String::from_utf8_lossy(&self.user()),
            self.tracking_redirect.load(Relaxed),
            self.resp.load(Relaxed),
        );
        line
    }
}

/// The clients a `CLIENT KILL` closes: those that match every filter given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KillFilter {
    /// `ID id`.
    pub id: Option<u64>,
    /// `ADDR ip:port` (or the old form's only argument).
    pub addr: Option<String>,
    /// `LADDR ip:port`.
    pub laddr: Option<String>,
    /// This client is spared (`SKIPME yes`, the default of the new form).
    pub skip: Option<u64>,
    /// `USER name`.
    pub user: Option<Vec<u8>>,
}

impl KillFilter {
    /// Whether the client `id`, connected from `addr` to `laddr`, is to be closed.
    pub fn matches(&self, id: u64, addr: SocketAddr, laddr: SocketAddr) -> bool {
        self.id.is_none_or(|wanted| wanted == id)
            && self.addr.as_deref().is_none_or(|a| a == addr.to_string())
            && self.laddr.as_deref().is_none_or(|a| a == laddr.to_string())
            && self.skip != Some(id)
    }
}

/// Every connected client.
#[derive(Debug)]
pub struct Clients {
    map: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    next_id: AtomicU64,
    count: AtomicUsize,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            map: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            count: AtomicUsize::new(0),
        }
    }
}

impl Clients {
    /// Takes one of `max` client slots for a connection just accepted, or returns `false` if
    /// all are taken. The accepting task does this before the connection is registered (see
    /// [`Reservation`]), so a burst of connections cannot overshoot `maxclients`.
    fn try_reserve(&self, max: usize) -> bool {
        self.count
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Registers a connection that holds a reserved slot.
    fn register(&self, addr: SocketAddr, laddr: SocketAddr, fd: RawFd) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let info = Arc::new(ClientInfo::new(id, addr, laddr, fd));
        self.map.lock().insert(id, info.clone());
        info
    }

    /// A registered client for unit tests.
    #[cfg(test)]
    pub(crate) fn test_client(&self) -> Arc<ClientInfo> {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        self.register(addr, addr, -1)
    }

    /// Removes a connection and frees its slot; must run before its socket is closed.
    fn unregister(&self, id: u64) {
        if self.map.lock().remove(&id).is_some() {
            self.count.fetch_sub(1, Relaxed);
        }
    }

    /// Number of connected clients.
    pub fn count(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// The connected client with this id (not killed), if any.
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.map.lock().get(&id).filter(|c| !c.is_killed()).cloned()
    }

    /// A snapshot of every client, in id order. Clients already killed (whose sessions have
    /// not ended yet) are left out, as Redis frees a killed client at once.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.map
            .lock()
            .values()
            .filter(|c| !c.is_killed())
            .cloned()
            .collect()
    }

    /// Disconnects every client that has been idle (no input read, no output written) for more
    /// than `max_idle_ms` (the `timeout` setting); returns how many.
    pub fn kill_idle(&self, max_idle_ms: u64) -> usize {
        let map = self.map.lock();
        let mut killed = 0;
        for client in map.values() {
            let idle = client.idle_ms() > max_idle_ms && !client.blocked.load(Relaxed);
            if idle && client.mark_killed() {
                killed += 1;
                shutdown_socket(client);
            }
        }
        killed
    }

    /// Disconnects every client `filter` selects; returns how many. The client with id `me`
    /// is only marked (its session closes it after its reply): the return says whether it was.
    pub(crate) fn kill(&self, filter: &KillFilter, me: u64) -> (usize, bool) {
        let map = self.map.lock();
        let mut killed = 0;
        let mut kill_self = false;
        for client in map
            .values()
            .filter(|c| filter.matches(c.id, c.addr, c.laddr))
            .filter(|c| filter.user.as_deref().is_none_or(|u| *c.user() == *u))
        {
            if client.id == me {
                // Closed by its own session once the reply is written.
                if !client.killed.swap(true, Relaxed) {
                    killed += 1;
                    kill_self = true;
                }
                continue;
            }
            // A client already killed is gone as far as anyone can tell (its session ends
            // on its own): it does not match again.
            if client.mark_killed() {
                killed += 1;
                shutdown_socket(client);
            }
        }
        (killed, kill_self)
    }

    /// The mailboxes of the clients running as user `name` that have one (subscribers and
    /// tracking clients), with their ids.
    pub(crate) fn mailboxes_of(&self, name: &[u8]) -> Vec<(u64, Arc<Mailbox>)> {
        self.map
            .lock()
            .values()
            .filter(|c| !c.is_killed() && *c.user() == *name)
            .filter_map(|c| Some((c.id, c.mailbox.get()?.clone())))
            .collect()
    }

    /// Disconnects every client running as user `name` (it was deleted); the client `me` is
    /// only marked. Returns whether it was.
    pub(crate) fn kill_user(&self, name: &[u8], me: u64) -> bool {
        let filter = KillFilter {
            user: Some(name.to_vec()),
            ..KillFilter::default()
        };
        self.kill(&filter, me).1
    }
}

/// Shuts a registered client's socket down in both directions: its session sees the end of its
/// input (and fails its next write) and ends. Must be called with the registry lock held.
fn shutdown_socket(client: &ClientInfo) {
    // SAFETY: `fd` belongs to a registered connection (the caller holds the registry lock), and
    // connections unregister under that lock before closing their socket (`Registration`
    // drops before the socket), so the descriptor is still that connection's socket.
    // shutdown(2) does not free it.
    unsafe {
        libc::shutdown(client.fd, libc::SHUT_RDWR);
    }
}

/// A slot in `maxclients` taken for a connection just accepted, not registered yet (its
/// socket may still move to another thread's runtime). Dropping it gives the slot back;
/// [`Reservation::register`] turns it into a [`Registration`].
#[derive(Debug)]
pub struct Reservation {
    clients: Arc<Clients>,
    registered: bool,
}

impl Reservation {
    /// Takes one of `max` slots of `clients`, if one is free.
    pub(crate) fn take(clients: &Arc<Clients>, max: usize) -> Option<Reservation> {
        clients.try_reserve(max).then(|| Reservation {
            clients: clients.clone(),
            registered: false,
        })
    }

    /// Registers the connection (from `addr` to `laddr`) on the socket `fd`, which from here
    /// on must be closed only after the returned registration is dropped.
    pub fn register(mut self, addr: SocketAddr, laddr: SocketAddr, fd: RawFd) -> Registration {
        self.registered = true;
        let info = self.clients.register(addr, laddr, fd);
        Registration {
            clients: self.clients.clone(),
            info,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.registered {
            self.clients.count.fetch_sub(1, Relaxed);
        }
    }
}

/// A registered client connection's place in the registry. Dropping it unregisters the client;
/// whoever owns the socket keeps this next to it and drops it *first* (a struct's fields drop
/// in order), however the connection ends: finished, panicked, or dropped unpolled with its
/// runtime. `CLIENT KILL` relies on that order.
#[derive(Debug)]
pub struct Registration {
    clients: Arc<Clients>,
    info: Arc<ClientInfo>,
}

impl Registration {
    /// What the registry shows of the client.
    pub fn info(&self) -> &Arc<ClientInfo> {
        &self.info
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.clients.unregister(self.info.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn register(clients: &Arc<Clients>, port: u16) -> Registration {
        let reservation = Reservation::take(clients, 10).expect("room");
        reservation.register(addr(port), addr(9), -1)
    }

    #[test]
    fn reservations_cap_the_clients_and_give_their_slots_back() {
        let clients = Arc::new(Clients::default());
        let first = Reservation::take(&clients, 2).expect("room");
        let second = Reservation::take(&clients, 2).expect("room");
        assert!(Reservation::take(&clients, 2).is_none());
        drop(second);
        assert_eq!(
            clients.count(),
            1,
            "an unregistered reservation gives its slot back"
        );
        let registration = first.register(addr(1), addr(2), -1);
        assert_eq!(clients.all().len(), 1);
        drop(registration);
        assert_eq!(clients.count(), 0);
        assert!(clients.all().is_empty());
    }

    #[test]
    fn idle_clients_are_killed_unless_blocked() {
        let clients = Arc::new(Clients::default());
        let idle = register(&clients, 1);
        let waiting = register(&clients, 2);
        waiting.info().set_blocked(true);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clients.kill_idle(1), 1);
        assert!(idle.info().is_killed() && !waiting.info().is_killed());
    }

    #[tokio::test]
    async fn a_kill_wakes_the_killed_client_s_session() {
        let clients = Arc::new(Clients::default());
        let victim = register(&clients, 1);
        let info = victim.info().clone();
        let woken = tokio::spawn(async move { info.killed().await });
        tokio::task::yield_now().await;
        let filter = KillFilter {
            id: Some(victim.info().id),
            ..KillFilter::default()
        };
        assert_eq!(clients.kill(&filter, 0), (1, false));
        tokio::time::timeout(std::time::Duration::from_secs(5), woken)
            .await
            .expect("woken")
            .expect("joined");
        // A client killed before it waits does not wait.
        victim.info().killed().await;
    }

    #[test]
    fn kill_filters_select_clients_and_spare_the_caller() {
        let clients = Arc::new(Clients::default());
        let a = register(&clients, 1);
        let b = register(&clients, 2);
        let filter = KillFilter {
            laddr: Some(addr(9).to_string()),
            ..KillFilter::default()
        };
        // `a` kills everyone on laddr 9, itself included: only marked, it closes after its reply.
        assert_eq!(clients.kill(&filter, a.info().id), (2, true));
        assert!(a.info().is_killed() && b.info().is_killed());
        assert!(clients.all().is_empty());
        a.info().set_name(b"worker");
        let line = a.info().describe();
        assert!(
            line.starts_with(&format!("id={} addr=127.0.0.1:1 ", a.info().id)),
            "{line}"
        );
        assert!(
            line.contains(" name=worker ") && line.contains(" cmd=NULL "),
            "{line}"
        );
    }
}
