//! Peer leases: how a primary keeps serving while the controller cannot renew its lease (the
//! controller lost its majority, or is electing a leader), without ever serving beside a
//! successor.
//!
//! A primary whose controller lease is half gone asks every other node of its map for a peer
//! lease ([`crate::bus::Request::PeerLease`]). A node grants it when its own map has the same
//! epoch, names the asker a healthy primary, and it has not *fenced* the asker. With grants
//! from [`grants_needed`] nodes (a majority of the map's nodes, counting the asker), the
//! primary serves for a lease (half the node timeout) from when it asked.
//!
//! Before the controller commits a map that replaces a primary, it fences that primary on
//! [`fences_needed`] nodes of every map the primary may still hold
//! ([`crate::bus::Request::Fence`]): each stops granting it and says when it last did. Any
//! set of grants large enough for a peer lease includes a fenced node, so no peer lease can
//! start after the fencing, and the controller waits until the last one granted before it
//! (by a fenced node) has run out. Two majorities of one map's nodes always share a node:
//! that is the whole safety argument, and it holds without the controller's own majority,
//! which is why a minority of dead voters no longer stops the data path.
//!
//! A fence and the grants a node made live in its process, and a restarted node forgets
//! them. So a node grants nothing until it has joined (its map is then the leader's, newer
//! than any map a fence was for: a controller member restarted with its directory would
//! otherwise grant by the map it replayed from disk), and a node fenced within a lease of its
//! start says it last granted when it started, since its previous process may have granted a
//! lease just before it died.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::map::{ClusterMap, Epoch, NodeId, Role};

/// How many grants from other nodes a primary needs in a map of `nodes` nodes (itself
/// included): with itself, more than half, and at least one (a node alone in its map takes
/// no peer lease: the only controller there is its own).
pub(crate) fn grants_needed(nodes: usize) -> usize {
    (nodes / 2).max(1)
}

/// How many of the other nodes of a map of `nodes` nodes must be fenced so that a primary
/// can no longer collect [`grants_needed`] grants (none in a map of one node).
pub(crate) fn fences_needed(nodes: usize) -> usize {
    let others = nodes.saturating_sub(1);
    (others + 1).saturating_sub(grants_needed(nodes))
}

/// What this node granted and refuses, as a grantor of peer leases.
pub(crate) struct Grantor {
    state: Mutex<GrantorState>,
    /// When this process started granting (its start).
    started: Instant,
    /// Whether the node has joined its cluster (it grants nothing before).
    joined: AtomicBool,
}

impl Default for Grantor {
    fn default() -> Self {
        Grantor {
            state: Mutex::default(),
            started: Instant::now(),
            joined: AtomicBool::new(false),
        }
    }
}

#[derive(Default)]
struct GrantorState {
    /// When this node last granted each primary a peer lease.
    granted: HashMap<NodeId, Instant>,
    /// When each primary last asked this node for one, granted or not: it is alive.
    asked: HashMap<NodeId, Instant>,
    /// Primaries this node refuses: until it holds a map newer than the epoch, or the time.
    fenced: HashMap<NodeId, (Epoch, Instant)>,
}

/// The answer to a peer lease request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Granted, by the map of this epoch.
    Granted,
    /// Refused: this node's map is of another epoch (the asker fetches it if newer).
    OtherEpoch(Epoch),
    /// Refused: the asker is not a healthy primary in this node's map, or is fenced.
    Refused,
}

impl Grantor {
    fn state(&self) -> std::sync::MutexGuard<'_, GrantorState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets this node grant peer leases: it has joined its cluster.
    pub(crate) fn joined(&self) {
        self.joined.store(true, Ordering::Release);
    }

    /// Answers `primary`'s request for a peer lease by its map of `epoch`; `map` is this
    /// node's.
    pub(crate) fn answer(&self, map: &ClusterMap, primary: NodeId, epoch: Epoch) -> Answer {
        self.state().asked.insert(primary, Instant::now());
        if !self.joined.load(Ordering::Acquire) {
            return Answer::Refused;
        }
        if map.epoch != epoch {
            return Answer::OtherEpoch(map.epoch);
        }
        let is_healthy_primary = matches!(map.placement_of(primary), Some((_, Role::Primary)))
            && map.node(primary).is_some_and(|n| n.is_ok());
        if !is_healthy_primary {
            return Answer::Refused;
        }
        let mut state = self.state();
        let now = Instant::now();
        if let Some(&(below, until)) = state.fenced.get(&primary) {
            if map.epoch <= below && now < until {
                return Answer::Refused;
            }
            state.fenced.remove(&primary);
        }
        state.granted.insert(primary, now);
        Answer::Granted
    }

    /// How long ago `primary` last asked this node for a peer lease, if ever.
    pub(crate) fn since_asked(&self, primary: NodeId) -> Option<Duration> {
        self.state().asked.get(&primary).map(Instant::elapsed)
    }

    /// Stops granting `primary` peer leases until this node holds a map newer than `epoch`
    /// (the one the controller will replace) or `hold` has passed. Returns how long ago it
    /// last granted it one: if never, since this process started (the one before may have).
    pub(crate) fn fence(&self, primary: NodeId, epoch: Epoch, hold: Duration) -> Option<Duration> {
        let mut state = self.state();
        let now = Instant::now();
        state.fenced.insert(primary, (epoch, now + hold));
        let since = state.granted.get(&primary).copied().unwrap_or(self.started);
        Some(now.duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{Health, NodeInfo, ShardId, ShardInfo};

    /// Any set of grants large enough for a lease shares a node with any set of fences large
    /// enough to stop one, for every cluster size.
    #[test]
    fn every_lease_majority_meets_every_fence_set() {
        for nodes in 1..=64usize {
            let others = nodes - 1;
            let grants = grants_needed(nodes);
            let fences = fences_needed(nodes);
            assert!(grants + 1 > nodes / 2, "{nodes}: a lease needs a majority");
            // The grants must come from the others not fenced.
            assert!(
                others - fences < grants,
                "{nodes} nodes: {grants} grants and {fences} fences may miss each other"
            );
            assert!(fences <= others, "{nodes}: fencing is possible");
            assert!(
                fences <= nodes / 2 + 1,
                "{nodes}: a majority suffices to fence"
            );
        }
        assert_eq!((grants_needed(1), fences_needed(1)), (1, 0));
        assert_eq!((grants_needed(2), fences_needed(2)), (1, 1));
        // Nine nodes: four grants (five with the primary), five fences of the eight others.
        assert_eq!((grants_needed(9), fences_needed(9)), (4, 5));
        assert_eq!((grants_needed(3), fences_needed(3)), (1, 2));
        assert_eq!((grants_needed(4), fences_needed(4)), (2, 2));
    }

    fn map(epoch: Epoch) -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = epoch;
        for id in 1..=3 {
            map.nodes
                .insert(NodeId(id), NodeInfo::local(NodeId(id), 7000 + id as u16));
        }
        map.shards.push(ShardInfo {
            id: ShardId(0),
            primary: NodeId(1),
            replicas: vec![NodeId(2), NodeId(3)],
        });
        map
    }

    #[test]
    fn grants_only_a_healthy_primary_of_the_same_map_that_is_not_fenced() {
        let grantor = Grantor::default();
        let m = map(5);
        assert_eq!(
            grantor.answer(&m, NodeId(1), 5),
            Answer::Refused,
            "not before the node joined"
        );
        grantor.joined();
        assert_eq!(grantor.answer(&m, NodeId(1), 4), Answer::OtherEpoch(5));
        assert_eq!(grantor.answer(&m, NodeId(2), 5), Answer::Refused);
        assert_eq!(grantor.answer(&m, NodeId(1), 5), Answer::Granted);
        let mut failed = m.clone();
        failed.nodes.get_mut(&NodeId(1)).unwrap().health = Health::Failed;
        assert_eq!(grantor.answer(&failed, NodeId(1), 5), Answer::Refused);

        let since = grantor.fence(NodeId(1), 5, Duration::from_secs(10));
        assert!(since.is_some_and(|d| d < Duration::from_secs(1)));
        assert_eq!(grantor.answer(&m, NodeId(1), 5), Answer::Refused);
        // A newer map lifts the fence (the primary must still be one in it).
        assert_eq!(grantor.answer(&map(6), NodeId(1), 6), Answer::Granted);
    }

    #[test]
    fn a_fence_lapses_after_its_hold() {
        let grantor = Grantor::default();
        grantor.joined();
        // Never granted: as if at this process's start, which was a moment ago.
        let since = grantor.fence(NodeId(1), 5, Duration::ZERO);
        assert!(
            since.is_some_and(|d| d < Duration::from_secs(1)),
            "{since:?}"
        );
        assert_eq!(grantor.answer(&map(5), NodeId(1), 5), Answer::Granted);
    }
}
