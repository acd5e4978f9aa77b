//! Connections by node: a few pipelined connections per `host:port`, opened lazily and
//! reopened when they die.
//!
//! Getting a live connection takes a shared read of the node table and the lock of one
//! connection slot (requests rotate over the slots). Opening one runs in its own task, so a
//! caller that gives up does not leave the slot half-open, and every caller waiting for it is
//! woken at once (and so their requests share the first socket write).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::conn::{Conn, ConnOptions};
use crate::error::Error;
use crate::stats::Stats;

type Outcome = Option<Result<Conn, Error>>;

/// One connection slot.
enum Slot {
    /// Nothing open.
    Idle,
    /// A task is connecting; its outcome arrives here.
    Connecting(watch::Receiver<Outcome>),
    /// Open (possibly dead since: checked on use).
    Ready(Conn),
    /// The last attempt failed at this time: callers soon after get the error at once
    /// instead of each waiting out a connect timeout.
    Failed(Instant, Error),
}

struct NodePool {
    addr: String,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
}

/// Every node's connections.
pub(crate) struct Pools {
    /// Read on every request (shared), written when a node is first used or pruned.
    nodes: RwLock<HashMap<String, Arc<NodePool>>>,
    options: ConnOptions,
    size: usize,
    /// How long a connect failure is remembered.
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
            slots: (0..self.size).map(|_| Mutex::new(Slot::Idle)).collect(),
            next: AtomicUsize::new(0),
        });
        nodes.insert(addr.to_string(), node.clone());
        node
    }

    /// A live connection to `addr`, opened now if needed.
    pub async fn get(&self, addr: &str) -> Result<Conn, Error> {
        let node = self.node(addr);
        let index = if node.slots.len() == 1 {
            0
        } else {
            node.next.fetch_add(1, Ordering::Relaxed) % node.slots.len()
        };
        let mut rx = {
            let mut slot = node.slots[index].lock();
            match &*slot {
                Slot::Ready(conn) if conn.is_alive() => return Ok(conn.clone()),
                Slot::Failed(at, err) if at.elapsed() < self.fail_fast => return Err(err.clone()),
                // (A connecting task that vanished, with the runtime, leaves a closed channel.)
                Slot::Connecting(rx) if rx.has_changed().is_ok() => rx.clone(),
                _ => {
                    let (tx, rx) = watch::channel(None);
                    *slot = Slot::Connecting(rx.clone());
                    let (node, options, stats) =
                        (node.clone(), self.options.clone(), self.stats.clone());
                    tokio::spawn(async move {
                        let outcome = Conn::connect(&node.addr, &options, stats).await;
                        *node.slots[index].lock() = match &outcome {
                            Ok(conn) => Slot::Ready(conn.clone()),
                            Err(err) => Slot::Failed(Instant::now(), err.clone()),
                        };
                        let _ = tx.send(Some(outcome));
                    });
                    rx
                }
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(gone(addr))),
            Err(_) => Err(gone(addr)),
        }
    }

    /// Closes the connections to nodes for which `keep` is false (once their requests finish).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.nodes.write().retain(|addr, _| keep(addr));
    }
}

fn gone(addr: &str) -> Error {
    Error::io(
        addr,
        std::io::Error::other("the connecting task ended without an outcome"),
    )
}
