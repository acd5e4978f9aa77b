//! Telling a crashed node from a silent one.
//!
//! A node's heartbeats reach the leader over one long-lived bus connection. When that
//! connection closes, the leader tries to connect to the node's bus: a refusal
//! (`ECONNREFUSED`: the host answered and nothing listens there) means the node's process is
//! gone, and the leader fails it once a lease has passed since its last heartbeat instead of
//! a whole node timeout. The lease is what keeps this safe even when the refusal lies (a
//! firewall that starts rejecting): any lease the controller granted the node has ended by
//! then, and the node's peer leases are fenced as for any failover. A node paused, cut off or
//! on a dead host refuses nothing, and waits out the node timeout as before.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::Controller;
use crate::map::NodeId;

/// How long the probe's connection attempt may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// How many times the probe tries (a process that is restarting its listener, or a
/// connection closed for another reason, gets a second look).
const PROBES: u32 = 3;

/// The pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(20);

impl Controller {
    /// The heartbeat connection of `node` closed: while this member leads, probes the node's
    /// bus and, if it refuses connections, records the node as crashed and wakes the leader.
    pub fn heartbeat_link_closed(self: &Arc<Self>, node: NodeId) {
        if !self.is_leader() {
            return;
        }
        let Some(addr) = self.map().node(node).map(|n| n.bus_addr()) else {
            return;
        };
        let controller = self.clone();
        tokio::spawn(async move {
            for _ in 0..PROBES {
                tokio::time::sleep(PROBE_PAUSE).await;
                match crate::bus::probe(&addr, PROBE_TIMEOUT).await {
                    Ok(()) => return, // Something listens: not a crash.
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
                    Err(_) => return, // A timeout or an unreachable host: not proof.
                }
            }
            tracing::info!(node = %node, %addr, "controller: the node's bus refuses connections; its process is gone");
            controller
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(node);
            controller.wake.notify_one();
        });
    }

    /// A heartbeat from `node` arrived: it is not crashed.
    pub(super) fn heard_again(&self, node: NodeId) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&node);
    }

    /// The nodes found crashed since their last heartbeat.
    pub(super) fn refused_nodes(&self) -> HashSet<NodeId> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
