//! Ports on 127.0.0.1 for processes under test.
//!
//! Every node is given explicit ports (`--port`, `--cluster-port`, `--http-port`), so nothing
//! depends on the `port + 10000` convention and two clusters never collide. A port is picked at
//! random *below* the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), then
//! checked by binding it and closing it again: the ports the kernel hands to outgoing
//! connections (clients, bus links between nodes) come from the ephemeral range, so they cannot
//! take a port between its reservation and the moment the node binds it. A process-wide set
//! makes sure no port is handed out twice by one test binary.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Lowest port [`free_port`] picks.
pub const LOWEST_PORT: u16 = 20000;

/// Ports handed out by this process.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing listens on now and that this process has not handed out
/// before.
pub fn free_port() -> Result<u16> {
    let (low, high) = candidate_range(ephemeral_range());
    if high > low {
        for _ in 0..1000 {
            let port = low + (random() % u64::from(high - low)) as u16;
            if bindable(port) && claim(port) {
                return Ok(port);
            }
        }
    }
    // Fallback: let the kernel choose (from the ephemeral range).
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error::io("cannot bind 127.0.0.1:0", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read a bound port", e))?
            .port();
        if claim(port) {
            return Ok(port);
        }
    }
    Err(Error::Usage("no free port on 127.0.0.1".into()))
}

/// A first port `base` such that, for every `i` below `count` and every offset of `offsets`,
/// `base + i + offset` is free and not handed out before; all of them are then handed out.
/// For tools that derive ports from a base, as `shoal cluster up --base-port` does (RESP
/// ports from the base, bus ports 10000 above, HTTP ports from another base).
pub fn free_base(count: u16, offsets: &[u16]) -> Result<u16> {
    let (low, high) = candidate_range(ephemeral_range());
    let span = offsets
        .iter()
        .max()
        .copied()
        .unwrap_or(0)
        .saturating_add(count);
    for _ in 0..1000 {
        if high <= low.saturating_add(span) {
            break;
        }
        let base = low + (random() % u64::from(high - low - span)) as u16;
        let ports: Vec<u16> = (0..count)
            .flat_map(|i| offsets.iter().map(move |&o| base + i + o))
            .collect();
        if ports.iter().all(|&p| bindable(p)) && claim_all(&ports) {
            return Ok(base);
        }
    }
    Err(Error::Usage(format!(
        "no free run of {count} ports (at offsets {offsets:?}) on 127.0.0.1"
    )))
}

/// Records every port of `ports` as handed out, or none if one already was.
fn claim_all(ports: &[u16]) -> bool {
    let mut set = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let set = set.get_or_insert_with(HashSet::new);
    if ports.iter().any(|p| set.contains(p)) {
        return false;
    }
    set.extend(ports.iter().copied());
    true
}

/// `count` distinct free ports.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    (0..count).map(|_| free_port()).collect()
}

/// The ports one node listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodePorts {
    /// RESP (`--port`).
    pub resp: u16,
    /// Cluster bus (`--cluster-port`).
    pub bus: u16,
    /// HTTP (`--http-port`); 0 when the node serves none.
    pub http: u16,
}

impl NodePorts {
    /// Three fresh ports: RESP, bus and HTTP.
    pub fn reserve() -> Result<NodePorts> {
        Ok(NodePorts {
            resp: free_port()?,
            bus: free_port()?,
            http: free_port()?,
        })
    }

    /// Fresh RESP and bus ports, and no HTTP listener.
    pub fn reserve_without_http() -> Result<NodePorts> {
        Ok(NodePorts {
            resp: free_port()?,
            bus: free_port()?,
            http: 0,
        })
    }

    /// The flags that give a `shoal server` these ports.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--port".into(),
            self.resp.to_string(),
            "--cluster-port".into(),
            self.bus.to_string(),
            "--http-port".into(),
            self.http.to_string(),
        ]
    }
}

/// The kernel's ephemeral port range, or Linux's default when it cannot be read.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| parse_range(&text))
        .unwrap_or((32768, 60999))
}

/// `"32768\t60999\n"` -> `(32768, 60999)`.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let mut fields = text.split_whitespace();
    let low = fields.next()?.parse().ok()?;
    let high = fields.next()?.parse().ok()?;
    (low <= high).then_some((low, high))
}

/// The ports to pick from: `[LOWEST_PORT, start of the ephemeral range)`, or above the range
/// when it starts too low to leave room below.
fn candidate_range((ephemeral_low, ephemeral_high): (u16, u16)) -> (u16, u16) {
    if ephemeral_low >= LOWEST_PORT + 1000 {
        (LOWEST_PORT, ephemeral_low)
    } else if ephemeral_high <= 64000 {
        (ephemeral_high + 1, 65535)
    } else {
        (0, 0)
    }
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Records `port` as handed out; false if it already was.
fn claim(port: u16) -> bool {
    let mut set = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    set.get_or_insert_with(HashSet::new).insert(port)
}

/// A random number: the standard library's per-process random hash keys over a counter.
fn random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        static KEYS: RandomState = RandomState::new();
    }
    let n = STATE.fetch_add(1, Ordering::Relaxed);
    KEYS.with(|keys| keys.hash_one(n ^ u64::from(std::process::id())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports = free_ports(50).unwrap();
        let unique: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        let (low, high) = ephemeral_range();
        for port in ports {
            assert!(
                !(low..=high).contains(&port) || low < LOWEST_PORT + 1000,
                "{port}"
            );
            TcpListener::bind(("127.0.0.1", port)).expect("a reserved port binds");
        }
    }

    #[test]
    fn a_port_in_use_is_not_handed_out() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        assert!(!bindable(port));
        for _ in 0..200 {
            assert_ne!(free_port().unwrap(), port);
        }
    }

    #[test]
    fn the_range_file_is_parsed_and_the_candidates_avoid_it() {
        assert_eq!(parse_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_range("nonsense"), None);
        assert_eq!(parse_range("5 4"), None);
        assert_eq!(candidate_range((32768, 60999)), (LOWEST_PORT, 32768));
        assert_eq!(candidate_range((1024, 50000)), (50001, 65535));
        assert_eq!(candidate_range((1024, 65535)), (0, 0));
    }

    #[test]
    fn a_free_base_leaves_every_derived_port_free() {
        let base = free_base(3, &[0, 1000]).unwrap();
        for i in 0..3 {
            for offset in [0, 1000] {
                TcpListener::bind(("127.0.0.1", base + i + offset)).expect("a reserved port binds");
            }
        }
        assert_ne!(free_base(3, &[0, 1000]).unwrap(), base, "handed out once");
    }

    #[test]
    fn node_ports_become_flags() {
        let ports = NodePorts {
            resp: 1,
            bus: 2,
            http: 0,
        };
        assert_eq!(
            ports.args(),
            ["--port", "1", "--cluster-port", "2", "--http-port", "0"]
        );
        let reserved = NodePorts::reserve().unwrap();
        assert!(reserved.resp != reserved.bus && reserved.bus != reserved.http);
    }
}
