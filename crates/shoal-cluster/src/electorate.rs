//! Which nodes were in the cluster's recent maps: the electorates of peer leases.
//!
//! A primary that cannot get a lease from the controller asks every node of its map for one
//! (see `peer_lease`), and a node grants it only by a map of the same epoch. Before the
//! controller replaces such a primary it must hear from a majority of every map the primary
//! may still hold, so it needs the node sets of maps older than the current one: the map
//! records when each node joined and keeps the nodes that left (removed, or replaced by their
//! restart) for a while, with their addresses.

use std::collections::BTreeSet;

use crate::map::{ClusterMap, Epoch, NodeInfo};

/// The distinct node sets of the maps from epoch `since` to `map`'s own, from the history
/// `map` carries, with each node's last known address; `None` when maps that old are no
/// longer described in full.
pub(crate) fn electorates(map: &ClusterMap, since: Epoch) -> Option<Vec<Vec<NodeInfo>>> {
    let history = &map.members;
    if since < history.complete_since {
        return None;
    }
    let since = since.min(map.epoch);
    // The node sets change only at these epochs.
    let mut boundaries: BTreeSet<Epoch> = BTreeSet::from([since]);
    boundaries.extend(
        history
            .joined
            .iter()
            .map(|(_, e)| *e)
            .chain(history.departed.iter().flat_map(|d| [d.joined, d.left]))
            .filter(|e| *e > since && *e <= map.epoch),
    );
    let mut sets: Vec<Vec<NodeInfo>> = Vec::new();
    for at in boundaries {
        let mut set: Vec<NodeInfo> = map
            .nodes
            .values()
            .filter(|n| history.joined_at(n.id) <= at)
            .cloned()
            .chain(
                history
                    .departed
                    .iter()
                    .filter(|d| d.joined <= at && at < d.left)
                    .map(|d| d.node.clone()),
            )
            .collect();
        set.sort_by_key(|n| n.id);
        if sets.last().is_none_or(|last| !same_ids(last, &set)) {
            sets.push(set);
        }
    }
    Some(sets)
}

fn same_ids(a: &[NodeInfo], b: &[NodeInfo]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.id == y.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{DEPARTED_KEPT, MemberHistory, NodeId};

    fn with_nodes(epoch: Epoch, ids: &[u64]) -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = epoch;
        for &id in ids {
            map.nodes
                .insert(NodeId(id), NodeInfo::local(NodeId(id), 7000 + id as u16));
        }
        map
    }

    fn ids(sets: &[Vec<NodeInfo>]) -> Vec<Vec<u64>> {
        sets.iter()
            .map(|s| s.iter().map(|n| n.id.0).collect())
            .collect()
    }

    #[test]
    fn the_node_sets_of_older_maps_include_departed_nodes_and_exclude_later_joins() {
        let mut history = MemberHistory::default();
        let e1 = with_nodes(1, &[1, 2, 3]);
        let mut e2 = with_nodes(2, &[1, 2, 3, 4]);
        history.record(&e1, &e2);
        e2.members = history.clone();
        let mut e3 = with_nodes(3, &[1, 3, 4]);
        history.record(&e2, &e3);
        e3.members = history.clone();
        let e4 = {
            let mut m = with_nodes(4, &[1, 3, 4]);
            m.members = history.clone();
            m
        };
        let sets = electorates(&e4, 1).unwrap();
        assert_eq!(
            ids(&sets),
            vec![vec![1, 2, 3], vec![1, 2, 3, 4], vec![1, 3, 4]]
        );
        // Node 2 is still reachable at its old address.
        assert_eq!(sets[0][1].port, 7002);
        assert_eq!(ids(&electorates(&e4, 3).unwrap()), vec![vec![1, 3, 4]]);
        assert_eq!(ids(&electorates(&e4, 4).unwrap()), vec![vec![1, 3, 4]]);
    }

    #[test]
    fn maps_older_than_the_kept_departures_are_not_described() {
        let mut history = MemberHistory::default();
        let mut map = with_nodes(1, &[1]);
        for i in 0..(DEPARTED_KEPT as u64 + 2) {
            // Node 100 + i joins, then leaves.
            let mut joined = map.clone();
            joined.epoch += 1;
            joined
                .nodes
                .insert(NodeId(100 + i), NodeInfo::local(NodeId(100 + i), 8000));
            history.record(&map, &joined);
            let mut left = joined.clone();
            left.epoch += 1;
            left.nodes.remove(&NodeId(100 + i));
            history.record(&joined, &left);
            map = left;
        }
        map.members = history;
        assert!(electorates(&map, 1).is_none());
        assert_eq!(ids(&electorates(&map, map.epoch).unwrap()), vec![vec![1]]);
    }
}
