//! Connections by node: a few pipelined connections per `host:port`, opened lazily and
//! reopened when they die.
//!
//! Getting a connection takes a shared read of the node table and the lock of one
//! connection slot (requests rotate over the slots), and never waits: a connection being
//! opened already queues requests, in order (see [`Conn::open`]). A connection that could
//! not be opened is remembered for a moment, and callers then get its error at once instead
//! of each waiting out a connect timeout.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::conn::{Conn, ConnOptions};
use crate::error::Error;
use crate::stats::Stats;

struct NodePool {
    addr: String,
    /// One connection per slot, `None` until first used.
    slots: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

/// Every node's connections.
pub(crate) struct Pools {
    /// Read on every request (shared), written when a node is first used or pruned.
    nodes: RwLock<HashMap<String, Arc<NodePool>>>,
    options: ConnOptions,
    size: usize,
    /// How long a failure to open a connection is remembered.
    fail_fast: Duration,
    stats: Arc<Stats>,
}

impl Pools {
    pub fn new(options: ConnOptions, size: usize, fail_fast: Duration, stats: Arc<Stats>) -> Pools {
        Pools {
            nodes: RwLock::new(HashMap::new()),
            options,
            size: size.max(1),
            fail_fast,
            stats,
        }
    }

    fn node(&self, addr: &str) -> Arc<NodePool> {
        if let Some(node) = self.nodes.read().get(addr) {
            return node.clone();
        }
        let mut nodes = self.nodes.write();
        if let Some(node) = nodes.get(addr) {
            return node.clone();
        }
        let node = Arc::new(NodePool {
            addr: addr.to_string(),
            slots: (0..self.size).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        });
        nodes.insert(addr.to_string(), node.clone());
        node
    }

    /// A connection to `addr` (open, or being opened), or the error its last attempt to
    /// open failed with, if that was a moment ago.
    pub fn get(&self, addr: &str) -> Result<Conn, Error> {
        let node = self.node(addr);
        let index = if node.slots.len() == 1 {
            0
        } else {
            node.next.fetch_add(1, Ordering::Relaxed) % node.slots.len()
        };
        let mut slot = node.slots[index].lock();
        if let Some(conn) = &*slot {
            if conn.is_alive() {
                return Ok(conn.clone());
            }
            if let Some((at, err)) = conn.open_failure()
                && at.elapsed() < self.fail_fast
            {
                return Err(err);
            }
        }
        let conn = Conn::open(&node.addr, &self.options, self.stats.clone());
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// A connection to `addr` of its own, outside the pool, for a caller that needs the
    /// connection's state to itself (a `WATCH` held until `EXEC`). It closes when dropped.
    pub fn open_dedicated(&self, addr: &str) -> Conn {
        Conn::open(addr, &self.options, self.stats.clone())
    }

    /// Closes the connections to nodes for which `keep` is false (once their requests finish).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.nodes.write().retain(|addr, _| keep(addr));
    }
}
