//! The proxy's connected clients: ids, names and what `CLIENT LIST` shows, `maxclients`, and
//! `CLIENT KILL`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::Notify;

/// One connected client, as other connections see it.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique id (`CLIENT ID`), from 1.
    pub id: u64,
    /// The client's address.
    pub addr: SocketAddr,
    /// The proxy's address of the connection.
    pub laddr: SocketAddr,
    created: Instant,
    /// Milliseconds after `created` of the last command.
    last_active_ms: AtomicU64,
    /// Name given with `CLIENT SETNAME` or `HELLO ... SETNAME`.
    name: Mutex<Option<Vec<u8>>>,
    /// Protocol version (2 or 3).
    pub resp: AtomicU8,
    /// Full name of the last command (`get`, `client|list`).
    last_command: Mutex<&'static str>,
    killed: AtomicBool,
    kill: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ClientInfo {
    /// The name, if one was set.
    pub fn name(&self) -> Option<Vec<u8>> {
        lock(&self.name).clone()
    }

    /// Sets (or, with an empty name, clears) the name.
    pub fn set_name(&self, name: &[u8]) {
        *lock(&self.name) = (!name.is_empty()).then(|| name.to_vec());
    }

    /// Records that the client ran `command` (a full name) now.
    pub fn touch(&self, command: &'static str) {
        let ms = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(ms, Relaxed);
        *lock(&self.last_command) = command;
    }

    /// Asks the client's session to end.
    pub fn kill(&self) {
        self.killed.store(true, Relaxed);
        self.kill.notify_one();
    }

    /// Whether the client was killed.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Relaxed)
    }

    /// Resolves once the client is killed.
    pub async fn killed(&self) {
        while !self.is_killed() {
            self.kill.notified().await;
        }
    }

    /// The client's `CLIENT LIST` line (without the newline), in Redis's field order.
    pub fn describe(&self) -> String {
        let name = self
            .name()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .unwrap_or_default();
        let age = self.created.elapsed().as_secs();
        let idle = age.saturating_sub(self.last_active_ms.load(Relaxed) / 1000);
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 ssub=0 \
             multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 \
             tot-mem=0 events=r cmd={} user=default redir=-1 resp={}",
            self.id,
            self.addr,
            self.laddr,
            name,
            age,
            idle,
            *lock(&self.last_command),
            self.resp.load(Relaxed),
        );
        line
    }
}

/// Every connected client.
#[derive(Debug, Default)]
pub struct Clients {
    all: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    /// Connections accepted and not yet closed, reserved before they are registered.
    reserved: AtomicUsize,
    next_id: AtomicU64,
}

/// What `CLIENT KILL` selects; every given filter must match.
pub use shoal_proto::connection::KillFilter;

impl Clients {
    /// Reserves room for one more client if fewer than `max` are connected.
    pub fn try_reserve(&self, max: usize) -> bool {
        self.reserved
            .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
            .is_ok()
    }

    /// Gives back a reservation (the connection closed).
    pub fn release(&self) {
        let _ = self
            .reserved
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
    }

    /// Registers a reserved connection.
    pub fn register(&self, addr: SocketAddr, laddr: SocketAddr) -> Arc<ClientInfo> {
        let id = self.next_id.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            name: Mutex::new(None),
            resp: AtomicU8::new(2),
            last_command: Mutex::new("NULL"),
            killed: AtomicBool::new(false),
            kill: Notify::new(),
        });
        lock(&self.all).insert(id, info.clone());
        info
    }

    /// Unregisters a client and gives back its reservation.
    pub fn unregister(&self, id: u64) {
        if lock(&self.all).remove(&id).is_some() {
            self.release();
        }
    }

    /// Clients connected now.
    pub fn count(&self) -> usize {
        self.reserved.load(Relaxed)
    }

    /// Every registered client, by id.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        lock(&self.all).values().cloned().collect()
    }

    /// Kills the clients `filter` selects; returns how many.
    pub fn kill(&self, filter: &KillFilter) -> usize {
        let chosen: Vec<Arc<ClientInfo>> = self
            .all()
            .into_iter()
            .filter(|c| filter.matches(c.id, c.addr, c.laddr))
            .collect();
        chosen.iter().for_each(|c| c.kill());
        chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn reservations_cap_the_clients() {
        let clients = Clients::default();
        assert!(clients.try_reserve(2));
        assert!(clients.try_reserve(2));
        assert!(!clients.try_reserve(2));
        let info = clients.register(addr(1), addr(2));
        clients.unregister(info.id);
        clients.unregister(info.id);
        assert_eq!(clients.count(), 1);
        assert!(clients.try_reserve(2));
    }

    #[test]
    fn kill_filters_select_clients() {
        let clients = Clients::default();
        let a = clients.register(addr(1), addr(9));
        let b = clients.register(addr(2), addr(9));
        let filter = KillFilter {
            laddr: Some(addr(9).to_string()),
            skip: Some(a.id),
            ..KillFilter::default()
        };
        assert_eq!(clients.kill(&filter), 1);
        assert!(b.is_killed() && !a.is_killed());
        a.set_name(b"worker");
        a.touch("get");
        let line = a.describe();
        assert!(
            line.starts_with(&format!("id={} addr=127.0.0.1:1 ", a.id)),
            "{line}"
        );
        assert!(
            line.contains(" name=worker ") && line.contains(" cmd=get "),
            "{line}"
        );
    }
}
