//! Where the controller's voters go ([`desired_voters`]): spread over shards and zones, so that
//! losing a shard (or a zone) does not cost the controller its majority where the cluster has
//! enough of them, and on replicas rather than primaries, so that the death of a node that
//! leads the controller rarely also needs a failover.

use std::collections::{BTreeSet, HashMap};

use crate::map::{ClusterMap, NodeId, NodeInfo, Role, ShardId};

/// A set of nodes that one fault may take down together: a shard's members (a shard dies with
/// its data whoever holds it), or a node in no shard (a spare) alone.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Domain {
    Shard(ShardId),
    Alone(NodeId),
}

/// A node that may become a voter: healthy and controller-eligible.
struct Candidate<'m> {
    id: NodeId,
    domain: Domain,
    /// Its `--zone`; nodes without one share the unnamed zone.
    zone: Option<&'m str>,
    primary: bool,
    /// Whether it is a voter now.
    current: bool,
}

impl<'m> Candidate<'m> {
    fn of(map: &ClusterMap, node: &'m NodeInfo, current: &[NodeId]) -> Candidate<'m> {
        let placement = map.placement_of(node.id);
        Candidate {
            id: node.id,
            domain: placement.map_or(Domain::Alone(node.id), |(s, _)| Domain::Shard(s.id)),
            zone: node.zone.as_deref(),
            primary: matches!(placement, Some((_, Role::Primary))),
            current: current.contains(&node.id),
        }
    }
}

/// The voters chosen so far and how many fall in each domain and zone, against the most each
/// may hold.
struct Spread<'m> {
    chosen: Vec<NodeId>,
    per_domain: HashMap<Domain, usize>,
    per_zone: HashMap<Option<&'m str>, usize>,
    domain_cap: usize,
    zone_cap: usize,
}

impl<'m> Spread<'m> {
    fn new(target: usize, candidates: &[Candidate<'m>]) -> Spread<'m> {
        let domains: BTreeSet<Domain> = candidates.iter().map(|c| c.domain).collect();
        let zones: BTreeSet<Option<&str>> = candidates.iter().map(|c| c.zone).collect();
        Spread {
            chosen: Vec::with_capacity(target),
            per_domain: HashMap::new(),
            per_zone: HashMap::new(),
            domain_cap: target.div_ceil(domains.len().max(1)),
            zone_cap: target.div_ceil(zones.len().max(1)),
        }
    }

    fn in_domain(&self, c: &Candidate<'_>) -> usize {
        self.per_domain.get(&c.domain).copied().unwrap_or(0)
    }

    fn in_zone(&self, c: &Candidate<'m>) -> usize {
        self.per_zone.get(&c.zone).copied().unwrap_or(0)
    }

    /// Whether `c` may join without its shard or zone holding more than its share.
    fn fits(&self, c: &Candidate<'m>) -> bool {
        self.in_domain(c) < self.domain_cap && self.in_zone(c) < self.zone_cap
    }

    fn take(&mut self, c: &Candidate<'m>) {
        self.chosen.push(c.id);
        *self.per_domain.entry(c.domain).or_default() += 1;
        *self.per_zone.entry(c.zone).or_default() += 1;
    }

    /// The order in which candidates are taken to top the voters up (smallest first): those
    /// that fit their share, then (among those that do not) current voters; then the emptiest
    /// zone, the emptiest shard, replicas and spares before primaries, and the lowest id, so
    /// that every leader chooses the same.
    fn rank(&self, c: &Candidate<'m>) -> (bool, bool, usize, usize, bool, NodeId) {
        (
            !self.fits(c),
            !c.current,
            self.in_zone(c),
            self.in_domain(c),
            c.primary,
            c.id,
        )
    }
}

/// How many voters `eligible` healthy controller-eligible nodes give: the largest odd number
/// not above `eligible` nor `max_voters` (at least 1). With the default of 5, a cluster of up
/// to 4 such nodes has 3 voters (1 with one or two), and one of 5 or more has 5.
fn voter_count(eligible: usize, max_voters: usize) -> usize {
    let target = eligible.min(max_voters.max(1));
    if target.is_multiple_of(2) {
        target - 1
    } else {
        target
    }
}

/// The voters the controller should have, if they differ from `current`; `None` if `current`
/// is right.
///
/// Voters are healthy controller-eligible nodes, as many as [`voter_count`] gives. They are
/// placed, not taken in start order: no shard holds more than ceil(voters / shards) of them
/// and no zone more than ceil(voters / zones) (a node in no shard counts as a shard of its
/// own, nodes without a zone share one), where the eligible nodes allow it. A healthy current
/// voter stays while it fits those shares, so nothing changes while nothing happens; when some
/// must go, the `leader` stays first (a leader that removes itself leaves the controller
/// without one for an election, longer than a lease may last), then replicas before
/// primaries. The others are chosen from the emptiest zone and shard first, replicas and
/// spares before primaries, then by id.
///
/// A failed voter is replaced only when a healthy candidate can take its place (dropping it
/// alone would not make the controller more available), and a voter no longer in the map is
/// always dropped.
pub fn desired_voters(
    map: &ClusterMap,
    current: &[NodeId],
    leader: Option<NodeId>,
    max_voters: usize,
) -> Option<Vec<NodeId>> {
    let candidates: Vec<Candidate<'_>> = map
        .nodes
        .values()
        .filter(|n| n.controller && n.is_ok())
        .map(|n| Candidate::of(map, n, current))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let target = voter_count(candidates.len(), max_voters);
    let mut spread = Spread::new(target, &candidates);

    let mut staying: Vec<&Candidate<'_>> = candidates.iter().filter(|c| c.current).collect();
    staying.sort_by_key(|c| (Some(c.id) != leader, c.primary, c.id));
    for c in staying {
        if spread.chosen.len() < target && spread.fits(c) {
            spread.take(c);
        }
    }
    while spread.chosen.len() < target {
        let next = candidates
            .iter()
            .filter(|c| !spread.chosen.contains(&c.id))
            .min_by_key(|c| spread.rank(c));
        match next {
            Some(c) => spread.take(c),
            None => break,
        }
    }
    let mut next = spread.chosen;

    let still_known: Vec<NodeId> = current
        .iter()
        .copied()
        .filter(|v| map.nodes.contains_key(v))
        .collect();
    if next.len() < still_known.len() {
        // Shrinking would only drop failed voters without replacements: keep them, but let
        // go of voters that were removed from the cluster.
        next = still_known;
    }
    next.sort();
    let mut sorted_current = current.to_vec();
    sorted_current.sort();
    (next != sorted_current && !next.is_empty()).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::{Health, ShardInfo};

    /// `shards` shards of `size` nodes each, every node controller-eligible: shard `s` holds
    /// nodes `s * size + 1 ..= s * size + size`, the first of them its primary.
    fn cluster(shards: u64, size: u64) -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = 1;
        for s in 0..shards {
            let ids: Vec<NodeId> = (1..=size).map(|i| NodeId(s * size + i)).collect();
            for id in &ids {
                let node = NodeInfo {
                    controller: true,
                    ..NodeInfo::local(*id, 7000 + id.0 as u16)
                };
                map.nodes.insert(*id, node);
            }
            map.shards.push(ShardInfo {
                id: ShardId(s as u32),
                primary: ids[0],
                replicas: ids[1..].to_vec(),
            });
        }
        map.next_shard = shards as u32;
        map
    }

    fn shard_of(map: &ClusterMap, id: NodeId) -> ShardId {
        map.placement_of(id).expect("a shard member").0.id
    }

    fn most_in_one_shard(map: &ClusterMap, voters: &[NodeId]) -> usize {
        let mut per: HashMap<ShardId, usize> = HashMap::new();
        for v in voters {
            *per.entry(shard_of(map, *v)).or_default() += 1;
        }
        per.values().copied().max().unwrap_or(0)
    }

    fn fail(map: &mut ClusterMap, id: u64) {
        map.nodes.get_mut(&NodeId(id)).expect("a node").health = Health::Failed;
    }

    #[test]
    fn the_voter_count_is_odd_and_grows_with_the_cluster() {
        // (eligible nodes, most voters, voters)
        for (eligible, max, voters) in [
            (1, 5, 1),
            (2, 5, 1),
            (3, 5, 3),
            (4, 5, 3),
            (5, 5, 5),
            (9, 5, 5),
            (9, 3, 3),
            (9, 4, 3),
            (9, 7, 7),
            (9, 0, 1),
        ] {
            assert_eq!(
                voter_count(eligible, max),
                voters,
                "{eligible} nodes, max {max}"
            );
        }
    }

    #[test]
    fn nine_nodes_in_three_shards_get_five_voters_at_most_two_per_shard() {
        let map = cluster(3, 3);
        let voters = desired_voters(&map, &[], None, 5).expect("voters are due");
        assert_eq!(voters.len(), 5);
        assert!(most_in_one_shard(&map, &voters) <= 2, "{voters:?}");
        // Replicas are preferred: six of them, so no primary is a voter.
        for v in &voters {
            assert_eq!(map.placement_of(*v).unwrap().1, Role::Replica, "{v:?}");
        }
    }

    #[test]
    fn losing_any_two_nodes_or_any_shard_keeps_the_majority() {
        let map = cluster(3, 3);
        let voters = desired_voters(&map, &[], None, 5).unwrap();
        let majority = voters.len() / 2 + 1;
        let ids: Vec<NodeId> = map.nodes.keys().copied().collect();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                let left = voters.iter().filter(|v| *v != a && *v != b).count();
                assert!(
                    left >= majority,
                    "losing {a:?} and {b:?} leaves {left} voters"
                );
            }
        }
        for shard in &map.shards {
            let left = voters
                .iter()
                .filter(|v| !shard.members().any(|m| m == **v))
                .count();
            assert!(left >= majority, "losing shard {} leaves {left}", shard.id);
        }
    }

    #[test]
    fn voters_are_spread_over_zones_too() {
        // Zones that cut across shards: a holds nodes 1-5, b 6-7, c 8-9.
        let mut map = cluster(3, 3);
        for (id, node) in map.nodes.iter_mut() {
            let zone = match id.0 {
                1..=5 => "a",
                6 | 7 => "b",
                _ => "c",
            };
            node.zone = Some(zone.into());
        }
        let voters = desired_voters(&map, &[], None, 5).unwrap();
        assert_eq!(voters.len(), 5);
        let mut per_zone: HashMap<&str, usize> = HashMap::new();
        for v in &voters {
            *per_zone
                .entry(map.node(*v).unwrap().zone.as_deref().unwrap())
                .or_default() += 1;
        }
        assert!(per_zone.values().all(|&n| n <= 2), "{per_zone:?}");
        assert!(most_in_one_shard(&map, &voters) <= 2, "{voters:?}");
    }

    #[test]
    fn nothing_changes_while_nothing_happens() {
        let map = cluster(3, 3);
        let voters = desired_voters(&map, &[], None, 5).unwrap();
        assert_eq!(desired_voters(&map, &voters, None, 5), None);
        // Voters chosen some other way that already fit the shares stay, primaries included.
        let fitting = [1, 2, 4, 5, 7].map(NodeId);
        assert_eq!(desired_voters(&map, &fitting, None, 5), None);
        // A failover swaps roles in a shard; the voters stay.
        let mut failed_over = map.clone();
        let old = failed_over.shards[0].promote(NodeId(2));
        failed_over.shards[0].replicas.push(old);
        assert_eq!(desired_voters(&failed_over, &voters, None, 5), None);
    }

    #[test]
    fn start_order_voters_are_moved_apart() {
        // The old way: the first three nodes started, all in shard 0.
        let map = cluster(3, 3);
        let first_three = [1, 2, 3].map(NodeId);
        let next = desired_voters(&map, &first_three, None, 5).expect("they are moved");
        assert_eq!(next.len(), 5);
        assert!(most_in_one_shard(&map, &next) <= 2, "{next:?}");
        // Shard 0's replicas stay; its primary goes.
        assert!(next.contains(&NodeId(2)) && next.contains(&NodeId(3)));
        assert!(!next.contains(&NodeId(1)));
        // Unless it leads: the leader stays, with the first of the replicas.
        let next = desired_voters(&map, &first_three, Some(NodeId(1)), 5).unwrap();
        assert!(most_in_one_shard(&map, &next) <= 2, "{next:?}");
        assert!(next.contains(&NodeId(1)) && next.contains(&NodeId(2)));
        assert!(!next.contains(&NodeId(3)));
        // And once placed, whoever leads, nothing moves.
        for leader in &next {
            assert_eq!(desired_voters(&map, &next, Some(*leader), 5), None);
        }
    }

    #[test]
    fn a_failed_voter_is_replaced_within_the_shares() {
        let map = cluster(3, 3);
        let voters = desired_voters(&map, &[], None, 5).unwrap();
        for lost in voters.clone() {
            let mut degraded = map.clone();
            fail(&mut degraded, lost.0);
            let next = desired_voters(&degraded, &voters, None, 5).expect("a replacement");
            assert_eq!(next.len(), 5);
            assert!(!next.contains(&lost));
            assert!(most_in_one_shard(&map, &next) <= 2, "{next:?}");
            let kept = voters.iter().filter(|v| next.contains(v)).count();
            assert_eq!(
                kept, 4,
                "only the failed voter changes: {voters:?} -> {next:?}"
            );
        }
    }

    #[test]
    fn small_clusters_have_three_voters_then_five() {
        let four = cluster(2, 2);
        let voters = desired_voters(&four, &[], None, 5).unwrap();
        assert_eq!(voters.len(), 3);
        assert!(most_in_one_shard(&four, &voters) <= 2);
        let five = cluster(5, 1);
        assert_eq!(desired_voters(&five, &[], None, 5).unwrap().len(), 5);
        assert_eq!(desired_voters(&five, &[], None, 3).unwrap().len(), 3);
    }

    #[test]
    fn ineligible_nodes_never_vote() {
        let mut map = cluster(3, 3);
        for (id, node) in map.nodes.iter_mut() {
            node.controller = id.0 <= 3;
        }
        // Only shard 0's nodes are eligible: three voters there, however unspread.
        let voters = desired_voters(&map, &[], None, 5).unwrap();
        assert_eq!(voters, [1, 2, 3].map(NodeId).to_vec());
    }
}
