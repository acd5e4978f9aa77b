//! Fencing a primary before the controller replaces it (see `peer_lease` for the argument).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::Controller;
use crate::bus::{self, Reply, Request};
use crate::electorate::electorates;
use crate::map::{ClusterMap, Epoch, NodeId};
use crate::peer_lease;

/// How long a node may take to answer a fence request.
const FENCE_TIMEOUT: Duration = Duration::from_millis(150);

/// How long a fence holds at most, if no newer map reaches the fenced node (ms): far longer
/// than committing the map that replaces the primary takes.
const FENCE_HOLD_MS: u64 = 10_000;

impl Controller {
    /// Before `next` replaces primaries of `current`, fences each of them on enough nodes of
    /// every map it may still hold (from the epoch of its last heartbeat on), then waits
    /// until the last peer lease a fenced node granted it has run out (see `peer_lease`).
    /// Fails when too few nodes answer: the primary may still be serving on peer leases.
    pub(super) async fn fence(
        &self,
        current: &ClusterMap,
        next: &ClusterMap,
        epochs: &HashMap<NodeId, Epoch>,
    ) -> Result<(), String> {
        let lease = Duration::from_millis(self.config.settings.lease_ms());
        let mut wait = Duration::ZERO;
        for primary in replaced_primaries(current, next) {
            let since = epochs.get(&primary).copied().unwrap_or(0);
            let sets = match electorates(current, since) {
                Some(sets) => sets,
                None => {
                    tracing::warn!(
                        node = %primary,
                        "controller: the map no longer records who was in the maps since \
                         epoch {since}; fencing by the oldest it does"
                    );
                    electorates(current, current.members.complete_since).unwrap_or_default()
                }
            };
            let targets: BTreeMap<NodeId, String> = sets
                .iter()
                .flatten()
                .filter(|n| n.id != primary)
                .map(|n| (n.id, n.bus_addr()))
                .collect();
            let request = Request::Fence {
                primary,
                epoch: current.epoch,
                hold_ms: FENCE_HOLD_MS,
            };
            let mut fenced = HashMap::new();
            for (id, reply) in
                bus::call_all(targets, &self.config.credentials, &request, FENCE_TIMEOUT).await
            {
                if let Ok(Reply::Fenced { last_grant_ms }) = reply {
                    fenced.insert(id, last_grant_ms);
                }
            }
            for set in sets.iter().filter(|s| s.iter().any(|n| n.id == primary)) {
                let count = set.iter().filter(|n| fenced.contains_key(&n.id)).count();
                let needed = peer_lease::fences_needed(set.len());
                if count < needed {
                    return Err(format!(
                        "{primary} is fenced on {count} of the {needed} nodes needed (of a map \
                         of {} nodes)",
                        set.len()
                    ));
                }
            }
            for ago in fenced.values().flatten() {
                wait = wait.max(lease.saturating_sub(Duration::from_millis(*ago)));
            }
        }
        if !wait.is_zero() {
            tracing::info!(
                ?wait,
                "controller: waiting out peer leases before replacing a primary"
            );
            tokio::time::sleep(wait + Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// The primaries of `current`'s shards that `next` replaces (or whose shard it dissolves).
fn replaced_primaries(current: &ClusterMap, next: &ClusterMap) -> Vec<NodeId> {
    current
        .shards
        .iter()
        .filter(|s| next.shard(s.id).is_none_or(|n| n.primary != s.primary))
        .map(|s| s.primary)
        .collect()
}
