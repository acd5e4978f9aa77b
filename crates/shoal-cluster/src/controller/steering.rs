//! Keeping the controller's leader off primaries.
//!
//! When the node hosting the leader dies, the controller first elects another leader, and a
//! new leader fails nobody for a node timeout after it takes over (leases the old one granted
//! must run out). If that node was also a primary, its shard waits for both: about twice a
//! failover. So a voter that is a primary does not stand for election while a healthy voter
//! that is not a primary exists (unless the controller has had no leader for a while), and a
//! leader that is (or becomes) a primary hands its leadership to such a voter: it stops its
//! Raft heartbeats and its quorum checks until another voter, hearing nothing, takes over.
//! Meanwhile primaries keep serving on peer leases.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Controller, ELECTION_TIMEOUT_MAX_MS, monotonic_ms};
use crate::map::{ClusterMap, NodeId, Role};

/// How often the election settings are brought in line with the map.
const STEER_EVERY: Duration = Duration::from_millis(100);

/// A voter that is a primary stands for election anyway once no leader has sent it anything
/// for this long (two of the longest election timeouts: the other voters had their chance).
const LEADERLESS: Duration = Duration::from_millis(2 * ELECTION_TIMEOUT_MAX_MS);

/// A leader hands its leadership over only after leading this long (ms): not in the middle
/// of the failover that made its node a primary.
const LEAD_BEFORE_HANDOVER_MS: u64 = 2_000;

/// How long a handover may take before the leader resumes as if nothing happened.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// The least time between two handovers.
const HANDOVER_GAP: Duration = Duration::from_secs(10);

impl Controller {
    /// Every [`STEER_EVERY`], lets this member stand for election or not, and hands its
    /// leadership over when it leads from a primary.
    pub(super) async fn steer_elections(self: Arc<Self>) {
        let mut last_handover: Option<Instant> = None;
        loop {
            tokio::time::sleep(STEER_EVERY).await;
            let map = self.map();
            if map.epoch == 0 {
                continue;
            }
            let me = self.config.myself.id;
            let voters = self.voters();
            let primary = is_primary(&map, me);
            let other_candidate = voters.iter().any(|&v| {
                v != me && !is_primary(&map, v) && map.node(v).is_some_and(|n| n.is_ok())
            });
            let leaderless = self.since_leader_contact() > LEADERLESS;
            self.raft
                .runtime_config()
                .elect(!primary || !other_candidate || leaderless);
            let led_ms = monotonic_ms().saturating_sub(self.view().since_ms);
            if self.is_leader()
                && primary
                && other_candidate
                && led_ms >= LEAD_BEFORE_HANDOVER_MS
                && last_handover.is_none_or(|at| at.elapsed() >= HANDOVER_GAP)
            {
                last_handover = Some(Instant::now());
                self.hand_over_leadership().await;
            }
        }
    }

    /// Stops this leader's heartbeats and quorum checks until another voter leads, or
    /// [`HANDOVER_TIMEOUT`] has passed.
    async fn hand_over_leadership(&self) {
        tracing::info!(
            "controller: this leader is a primary; handing the leadership to a voter that is not"
        );
        self.handing_over.store(true, Ordering::Release);
        self.raft.runtime_config().heartbeat(false);
        let started = Instant::now();
        while self.is_leader() && started.elapsed() < HANDOVER_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.raft.runtime_config().heartbeat(true);
        self.handing_over.store(false, Ordering::Release);
        match self.is_leader() {
            false => {
                tracing::info!(took = ?started.elapsed(), "controller: leadership handed over")
            }
            true => tracing::info!("controller: no other voter took the leadership; still leading"),
        }
    }

    /// The Raft group's voters.
    fn voters(&self) -> Vec<NodeId> {
        let metrics = self.raft.server_metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .voter_ids()
            .map(NodeId)
            .collect()
    }
}

fn is_primary(map: &ClusterMap, node: NodeId) -> bool {
    matches!(map.placement_of(node), Some((_, Role::Primary)))
}
