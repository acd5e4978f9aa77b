//! The registry of connected clients: what `CLIENT LIST` shows, `maxclients` counts and
//! `CLIENT KILL` acts on.
//!
//! Each connection publishes a [`ClientInfo`] whose fields it updates once per batch of commands
//! (relaxed atomics, no locks on the request path). Killing a client shuts its socket down while
//! the registry lock is held; a connection leaves the registry before its socket is closed, so a
//! kill can never reach a reused file descriptor.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed,
};
use std::time::Instant;

use parking_lot::Mutex;

/// What other connections can see of one client.
pub struct ClientInfo {
    /// Unique id (`CLIENT ID`).
    pub id: u64,
    /// Peer address.
    pub addr: SocketAddr,
    /// Local address.
    pub laddr: SocketAddr,
    /// Socket file descriptor.
    pub fd: RawFd,
    /// When the connection was accepted.
    pub created: Instant,
    /// Name set with `CLIENT SETNAME` or `HELLO ... SETNAME`.
    pub name: Mutex<Option<Vec<u8>>>,
    /// Milliseconds after `created` of the last command.
    pub last_active_ms: AtomicU64,
    /// Id of the last command run (index into the server's command table).
    pub last_command: AtomicU32,
    /// Protocol version (2 or 3).
    pub resp: AtomicU8,
    /// Bytes waiting in the query buffer.
    pub query_buffer: AtomicUsize,
    /// Capacity of the query buffer.
    pub query_buffer_capacity: AtomicUsize,
    /// Bytes of replies not yet written.
    pub output_buffer: AtomicUsize,
    /// Set when the client is being disconnected by `CLIENT KILL`.
    pub killed: AtomicBool,
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
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicU32::new(u32::MAX),
            resp: AtomicU8::new(2),
            query_buffer: AtomicUsize::new(0),
            query_buffer_capacity: AtomicUsize::new(0),
            output_buffer: AtomicUsize::new(0),
            killed: AtomicBool::new(false),
        }
    }

    /// Seconds since the last command.
    pub fn idle_seconds(&self) -> u64 {
        let age_ms = self.created.elapsed().as_millis() as u64;
        age_ms.saturating_sub(self.last_active_ms.load(Relaxed)) / 1000
    }

    /// Marks the client active now.
    pub fn touch(&self) {
        self.last_active_ms
            .store(self.created.elapsed().as_millis() as u64, Relaxed);
    }

    /// The `CLIENT LIST` / `CLIENT INFO` line for this client (without the trailing newline),
    /// in Redis 7.0's field order. `command_name` maps a command id to its full name.
    pub fn describe(&self, command_name: impl Fn(u32) -> Option<&'static str>) -> String {
        let name = self
            .name
            .lock()
            .as_deref()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .unwrap_or_default();
        let qbuf = self.query_buffer.load(Relaxed);
        let qbuf_free = self
            .query_buffer_capacity
            .load(Relaxed)
            .saturating_sub(qbuf);
        let omem = self.output_buffer.load(Relaxed);
        let cmd = command_name(self.last_command.load(Relaxed)).unwrap_or("NULL");
        let mut line = String::with_capacity(300);
        let _ = write!(
            line,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 \
             multi=-1 qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp={} obl=0 oll=0 omem={} \
             tot-mem={} events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            name,
            self.created.elapsed().as_secs(),
            self.idle_seconds(),
            qbuf,
            qbuf_free,
            self.query_buffer_capacity.load(Relaxed),
            qbuf,
            omem,
            self.query_buffer_capacity.load(Relaxed) + omem,
            cmd,
            self.resp.load(Relaxed),
        );
        line
    }
}

/// What `CLIENT KILL` selects (Redis 7's filters; all given ones must match).
pub use shoal_proto::connection::KillFilter;

/// Every connected client.
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
    /// all are taken. The accepting thread calls this before handing the connection to a worker,
    /// so a burst of connections cannot overshoot `maxclients` while workers register them. The
    /// slot is released by [`unregister`](Self::unregister), or by [`release`](Self::release)
    /// if the connection never gets registered.
    pub fn try_reserve(&self, max: usize) -> bool {
        self.count
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Gives back a slot taken with [`try_reserve`](Self::try_reserve) for a connection that
    /// was not registered after all.
    pub fn release(&self) {
        self.count.fetch_sub(1, Relaxed);
    }

    /// Registers a new connection, which holds a slot taken with [`try_reserve`](Self::try_reserve).
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr, fd: RawFd) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let info = Arc::new(ClientInfo::new(id, addr, laddr, fd));
        self.map.lock().insert(id, info.clone());
        info
    }

    /// Removes a connection and frees its slot; must run before its socket is closed.
    pub fn unregister(&self, id: u64) {
        if self.map.lock().remove(&id).is_some() {
            self.count.fetch_sub(1, Relaxed);
        }
    }

    /// Number of connected clients (including any accepted and not yet registered).
    pub fn count(&self) -> usize {
        self.count.load(Relaxed)
    }

    /// A snapshot of every client, in id order. Clients already killed (whose sessions have
    /// not ended yet) are left out, as Redis frees a killed client at once.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.map
            .lock()
            .values()
            .filter(|c| !c.killed.load(Relaxed))
            .cloned()
            .collect()
    }

    /// The client with this id (not if it was killed).
    pub fn get(&self, id: u64) -> Option<Arc<ClientInfo>> {
        self.map
            .lock()
            .get(&id)
            .filter(|c| !c.killed.load(Relaxed))
            .cloned()
    }

    /// Disconnects every client that has been idle (no input read, no output written) for more
    /// than `max_idle_ms` (the `timeout` setting); returns how many.
    pub fn kill_idle(&self, max_idle_ms: u64) -> usize {
        let map = self.map.lock();
        let mut killed = 0;
        for client in map.values() {
            let age_ms = client.created.elapsed().as_millis() as u64;
            let idle_ms = age_ms.saturating_sub(client.last_active_ms.load(Relaxed));
            if idle_ms > max_idle_ms && !client.killed.swap(true, Relaxed) {
                killed += 1;
                shutdown_socket(client);
            }
        }
        killed
    }

    /// Disconnects every client `filter` selects; returns how many. `on_self` is called instead
    /// of shutting the socket of the client with id `me` (it is closed after its reply).
    pub fn kill(&self, filter: &KillFilter, me: u64, on_self: impl FnOnce()) -> usize {
        let map = self.map.lock();
        let mut killed = 0;
        let mut kill_self = false;
        for client in map
            .values()
            .filter(|c| filter.matches(c.id, c.addr, c.laddr))
        {
            // A client already killed is gone as far as anyone can tell (its session ends
            // on its own): it does not match again.
            if client.killed.swap(true, Relaxed) {
                continue;
            }
            killed += 1;
            if client.id == me {
                kill_self = true;
            } else {
                shutdown_socket(client);
            }
        }
        drop(map);
        if kill_self {
            on_self();
        }
        killed
    }
}

/// Shuts a registered client's socket down in both directions: its session sees the end of its
/// input (and fails its next write) and ends. Must be called with the registry lock held.
fn shutdown_socket(client: &ClientInfo) {
    // SAFETY: `fd` belongs to a registered connection (the caller holds the registry lock), and
    // connections unregister under that lock before closing their socket, so the descriptor is
    // still that connection's socket. shutdown(2) does not free it.
    unsafe {
        libc::shutdown(client.fd, libc::SHUT_RDWR);
    }
}
