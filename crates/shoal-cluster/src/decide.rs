//! The controller's decisions: a pure function of the committed map, what the leader has
//! observed, and the time. The leader runs [`decide`] on every tick and after every join or
//! removal request, and commits the map it returns (if any) through Raft. Nothing here does
//! I/O or reads a clock, so every rule is tested table by table.
//!
//! Rules:
//! * A joining node becomes a replica of the shard with the fewest replicas while some shard has
//!   fewer than the cluster's `replicas`; otherwise it becomes the primary of a new shard, and
//!   slots are re-placed ([`crate::placement::replace`]: only slots that go to it move).
//! * A node that joins as a spare stays out of the shards; a shard with fewer healthy replicas
//!   than it should have takes a healthy spare.
//! * A node without a heartbeat for longer than the node timeout is marked failed; one whose
//!   heartbeats resume is marked healthy again. A new leader gives every node a full timeout of
//!   grace from the moment it took over, since it has seen no heartbeats yet.
//! * A failed primary is replaced by its healthy replica with the highest replication offset
//!   (replicas streaming from it preferred over ones still loading or cut off); it stays in the
//!   shard as a replica, and follows the new primary once it is back.
//! * Removing a replica or a spare drops it; removing a primary promotes its first healthy
//!   replica; removing a healthy primary without replicas drains its shard (its slots migrate
//!   to the others, then it leaves with its nodes); a failed one's shard is removed at once
//!   and its slots re-placed; the last shard cannot be removed.
//! * Slots move with their keys: when the shards change (or on request), placement says where
//!   each slot should be ([`crate::placement::replace`] over the shards that are not draining,
//!   from where the slots in flight are going), and every slot whose owner should change is
//!   given a [`Migration`] instead of a new owner. A slot changes owner only when its source
//!   shard's primary reports that it handed the slot over, or at once when its owner is gone
//!   (no keys to move).
//! * The controller's voters are healthy controller-eligible nodes, up to an odd number, spread
//!   over shards and zones, replicas before primaries ([`desired_voters`]).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::map::{
    ClusterMap, Health, Migration, NodeId, NodeInfo, ShardId, ShardInfo, SlotGroups, SlotTable,
};
use crate::placement;
use crate::slot::{SLOTS, Slot, slot_ranges};

mod voters;

pub use voters::desired_voters;

/// The controller's tunables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A node silent for longer than this is failed (`--node-timeout`).
    pub node_timeout_ms: u64,
    /// Most controller voters (`--controller-voters`; odd).
    pub max_voters: usize,
    /// The share of its shard's requests (in thousandths) that makes a key hot
    /// (`--hot-key-share`; 0 finds none).
    pub hot_key_share_permille: u32,
    /// The requests a second below which no key is hot, whatever its share
    /// (`--hot-key-min-rate`).
    pub hot_key_min_rate: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            node_timeout_ms: 1000,
            max_voters: 5,
            hot_key_share_permille: 200,
            hot_key_min_rate: 1000,
        }
    }
}

impl Settings {
    /// How long a heartbeat lets a primary serve (from when the node sent it): half the node
    /// timeout, so a primary that stops hearing from the controller stops serving before the
    /// controller may fail it and promote another (which happens no sooner than a node timeout
    /// after the last heartbeat *arrived*, and it was sent before it arrived), and a new
    /// leader may fail a node it never heard from half a node timeout sooner than that. A
    /// primary renews it every quarter of it at least; peer leases (as long) cover a
    /// controller that cannot renew.
    pub(crate) fn lease_ms(&self) -> u64 {
        self.node_timeout_ms / 2
    }
}

/// Where a node stands in its shard's replication stream, for choosing whom to promote.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicationReport {
    /// The replication id its offset counts in (empty before any replication).
    pub replid: String,
    /// A primary: the offset it has written; a replica: the offset it has applied.
    pub offset: u64,
    /// A replica: whether it is streaming from its primary (not loading a snapshot and not
    /// cut off from it).
    pub in_sync: bool,
}

/// What the leader knows beyond the committed map.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observations {
    /// When each node's last heartbeat arrived (ms, on the leader's monotonic clock), since
    /// this leader took over.
    pub last_heartbeat: HashMap<NodeId, u64>,
    /// This leader fails nobody before this time (ms): when every lease its predecessor may
    /// have granted has ended (see the controller's takeover margin). A node it never heard
    /// from is failed then.
    pub fail_none_before_ms: u64,
    /// Nodes asking to join, in arrival order.
    pub joins: Vec<NodeInfo>,
    /// Nodes to retire, in arrival order.
    pub removals: Vec<NodeId>,
    /// The controller's voters right now (from Raft's membership).
    pub voters: Vec<NodeId>,
    /// Each node's replication state, from its last heartbeat.
    pub reports: HashMap<NodeId, ReplicationReport>,
    /// Replicas asking to take over their shard, and primaries asking to hand theirs to a
    /// replica (planned failovers), in arrival order.
    pub failovers: Vec<NodeId>,
    /// Nodes whose process is gone (their bus refused a connection after their heartbeat
    /// link closed): failed a lease after their last heartbeat, not a node timeout.
    pub refused: HashSet<NodeId>,
    /// ACL users to record (rules) or delete (`None`), in arrival order.
    pub user_changes: Vec<(String, Option<String>)>,
    /// Slots their source shard's primary handed over (each as the migration it belonged
    /// to, with the slots handed over), in arrival order.
    pub handed_over: Vec<Migration>,
    /// Whether to place the slots again (`cluster rebalance`).
    pub rebalance: bool,
    /// Requests to move slots (`cluster move-slots`, `CLUSTER MIGRATESLOTS`), in arrival
    /// order; each is taken whole or refused whole.
    pub moves: Vec<SlotGroups>,
}

/// One change a decision makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// A node joined as a replica of a shard.
    JoinedAsReplica(NodeId, ShardId),
    /// A node joined as the primary of a new shard.
    JoinedAsPrimary(NodeId, ShardId),
    /// A node joined as a spare, in no shard.
    JoinedAsSpare(NodeId),
    /// A joining node listens where an old one did: the old process is gone (two cannot bind
    /// one port), so the old node is removed and the new one placed as any join.
    Restarted(NodeId, NodeId),
    /// A node of the map joined again under its own id with a new incarnation: it restarted
    /// with its directory, and has no keys.
    Reincarnated(NodeId),
    /// A spare became a replica of a shard that lacked one.
    SpareAssigned(NodeId, ShardId),
    /// A failed primary was replaced: the shard, the failed node, its successor.
    FailedOver(ShardId, NodeId, NodeId),
    /// A replica took over its shard as asked: the shard, the old primary, the new one.
    HandedOver(ShardId, NodeId, NodeId),
    /// A planned failover was refused.
    HandoverRefused(NodeId, String),
    /// A node that asked to join was already in the map (a repeated request).
    AlreadyMember(NodeId),
    /// A node was marked failed.
    Failed(NodeId),
    /// A failed node's heartbeats resumed.
    Recovered(NodeId),
    /// A node was retired.
    Removed(NodeId),
    /// A replica replaced a removed primary.
    Promoted(NodeId, ShardId),
    /// A shard was dissolved (its primary was removed and it had no replica).
    ShardRemoved(ShardId),
    /// A removal was refused.
    RemovalRefused(NodeId, String),
    /// Slots whose owner was gone were placed again; this many changed owner.
    SlotsMoved(usize),
    /// Slots were given migrations: this many slots are to move with their keys.
    MigrationsPlanned(usize),
    /// This many slots went from one shard to another, handed over by the first.
    SlotsHandedOver(ShardId, ShardId, usize),
    /// A shard began draining (its primary was removed and it has no replica).
    Draining(ShardId),
    /// The map's list of voters now matches Raft's membership.
    ControllersRecorded(Vec<NodeId>),
    /// The cluster's ACL users changed: this many were set or deleted.
    UsersChanged(usize),
    /// A request to move slots (the `index`th of [`Observations::moves`]) was refused.
    MoveRefused(usize, String),
    /// A request to move slots was taken: this many slots are on their way to this shard.
    SlotsMoving(ShardId, usize),
}

/// The outcome of [`decide`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Decision {
    /// What changed, in order.
    pub actions: Vec<Action>,
    /// The map to commit (epoch + 1), if anything changed. Its `committed_at_ms` is the
    /// current map's: whoever commits it stamps it.
    pub map: Option<ClusterMap>,
}

/// A request a decision may refuse.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refusable {
    /// The removal of this node.
    Removal(NodeId),
    /// The planned failover of this node.
    Handover(NodeId),
    /// The move of slots that is this index of [`Observations::moves`].
    Move(usize),
}

impl Decision {
    /// Why it refused `request`, if it did.
    pub(crate) fn refusal(&self, request: Refusable) -> Option<String> {
        self.actions
            .iter()
            .find_map(|action| match (action, request) {
                (Action::RemovalRefused(n, why), Refusable::Removal(node))
                | (Action::HandoverRefused(n, why), Refusable::Handover(node))
                    if *n == node =>
                {
                    Some(why.clone())
                }
                (Action::MoveRefused(i, why), Refusable::Move(index)) if *i == index => {
                    Some(why.clone())
                }
                _ => None,
            })
    }
}

/// The first map of a new cluster: `founder` alone, primary of shard 0, owning every slot.
pub(crate) fn bootstrap(founder: NodeInfo, replicas: u8, now_ms: u64) -> ClusterMap {
    let mut map = ClusterMap::empty();
    map.epoch = 1;
    map.replicas = replicas;
    map.controllers = vec![founder.id];
    map.shards.push(ShardInfo {
        id: ShardId(0),
        primary: founder.id,
        replicas: Vec::new(),
    });
    map.next_shard = 1;
    map.slots = SlotTable::all(ShardId(0));
    map.committed_at_ms = now_ms;
    map.nodes.insert(founder.id, founder);
    map
}

/// Decides what the controller changes now. Returns the next map if anything changed.
/// `now_ms` is on the clock the observations' times are on (the leader's monotonic one).
pub(crate) fn decide(
    current: &ClusterMap,
    observations: &Observations,
    now_ms: u64,
    settings: &Settings,
) -> Decision {
    let mut map = current.clone();
    let mut actions = Vec::new();
    let shards_before: Vec<ShardId> = map.shards.iter().map(|s| s.id).collect();

    for node in &observations.joins {
        replace_restarted(&mut map, node, &observations.reports, &mut actions);
        reincarnate(&mut map, node, &observations.reports, &mut actions);
        join(&mut map, node.clone(), &mut actions);
    }
    for &node in &observations.removals {
        remove(&mut map, node, &observations.reports, &mut actions);
    }
    for &node in &observations.failovers {
        hand_over(&mut map, node, &observations.reports, &mut actions);
    }
    for handed in &observations.handed_over {
        take_handed_over(&mut map, handed, &mut actions);
    }
    for (index, groups) in observations.moves.iter().enumerate() {
        move_slots(&mut map, index, groups, &mut actions);
    }
    finish_drains(&mut map, &mut actions);
    change_users(&mut map, &observations.user_changes, &mut actions);
    track_health(&mut map, observations, now_ms, settings, &mut actions);
    fail_over(&mut map, &observations.reports, &mut actions);
    assign_spares(&mut map, &mut actions);

    let shards_after: Vec<ShardId> = map.shards.iter().map(|s| s.id).collect();
    let drained = actions.iter().any(|a| matches!(a, Action::Draining(_)));
    if shards_after != shards_before || drained || observations.rebalance {
        replan(&mut map, &mut actions);
    }

    let mut voters: Vec<NodeId> = observations
        .voters
        .iter()
        .copied()
        .filter(|v| map.nodes.contains_key(v))
        .collect();
    voters.sort();
    let mut recorded = map.controllers.clone();
    recorded.sort();
    if !voters.is_empty() && voters != recorded {
        map.controllers = voters.clone();
        actions.push(Action::ControllersRecorded(voters));
    }

    let changed = actions.iter().any(|a| {
        !matches!(
            a,
            Action::AlreadyMember(_)
                | Action::RemovalRefused(..)
                | Action::HandoverRefused(..)
                | Action::MoveRefused(..)
        )
    });
    if !changed {
        return Decision { actions, map: None };
    }
    map.epoch = current.epoch + 1;
    let mut members = std::mem::take(&mut map.members);
    members.record(current, &map);
    map.members = members;
    debug_assert_eq!(map.validate(), Ok(()));
    Decision {
        actions,
        map: Some(map),
    }
}

/// Records the ACL user changes in the map's users, if any changes them.
fn change_users(
    map: &mut ClusterMap,
    changes: &[(String, Option<String>)],
    actions: &mut Vec<Action>,
) {
    if changes.is_empty() {
        return;
    }
    let mut users = map.users.clone().unwrap_or_default();
    let mut changed = 0;
    for (name, rules) in changes {
        let before = match rules {
            Some(rules) => users.insert(name.clone(), rules.clone()),
            None => users.remove(name),
        };
        if before != *rules {
            changed += 1;
        }
    }
    // The first change makes the cluster's users authoritative even when it changes
    // nothing (every node is then told the full list).
    if changed > 0 || map.users.is_none() {
        map.users = Some(users);
        actions.push(Action::UsersChanged(changed));
    }
}

/// How many of `shard`'s replicas are healthy.
fn healthy_replicas(
    nodes: &std::collections::BTreeMap<NodeId, NodeInfo>,
    shard: &ShardInfo,
) -> usize {
    shard
        .replicas
        .iter()
        .filter(|r| nodes.get(r).is_some_and(NodeInfo::is_ok))
        .count()
}

/// Removes the nodes a joining node replaces: a process listening on an address an old node
/// of the map listened on is that node restarted (with a new id and no data).
fn replace_restarted(
    map: &mut ClusterMap,
    node: &NodeInfo,
    reports: &HashMap<NodeId, ReplicationReport>,
    actions: &mut Vec<Action>,
) {
    let stale: Vec<NodeId> = map
        .nodes
        .values()
        .filter(|old| {
            old.id != node.id
                && old.host == node.host
                && (old.port == node.port || old.bus_port == node.bus_port)
        })
        .map(|old| old.id)
        .collect();
    // The newcomer takes over at most one shard (it may match two old entries, one by each
    // port), and a spare none: it waits to be assigned.
    let mut placed = node.spare;
    for old in stale {
        actions.push(Action::Restarted(old, node.id));
        let alone = map
            .shards
            .iter_mut()
            .find(|s| s.primary == old && s.replicas.is_empty());
        if let Some(shard) = alone.filter(|_| !placed) {
            placed = true;
            // A shard's only node: the newcomer takes its place, so its slots stay where
            // they are (removing the old node would hand them to other shards, and the new
            // one's join would take some back: two moves, each dropping keys written
            // between them). Its data is gone either way.
            shard.primary = node.id;
            forget(map, old);
            map.nodes.insert(node.id, node.clone());
            continue;
        }
        remove(map, old, reports, actions);
    }
}

/// Takes in a node that joins under an id the map has, with another incarnation: it restarted
/// with its directory (`--dir`), so it is the same node, without its keys. Its entry takes the
/// new incarnation (and address). A primary must not serve its shard empty while a replica
/// holds the shard's keys: it hands the shard to its best replica that has taken part in
/// replication (a non-zero offset; one that restarted too holds nothing), as a failed
/// primary would, and stays as a replica that resyncs. A primary without such a replica (in a
/// whole-cluster restart, none has keys) keeps its shard; a replica resyncs by itself.
fn reincarnate(
    map: &mut ClusterMap,
    node: &NodeInfo,
    reports: &HashMap<NodeId, ReplicationReport>,
    actions: &mut Vec<Action>,
) {
    let Some(old) = map.nodes.get(&node.id) else {
        return;
    };
    if old.incarnation == node.incarnation {
        return;
    }
    let health = old.health;
    map.nodes.insert(
        node.id,
        NodeInfo {
            health,
            ..node.clone()
        },
    );
    actions.push(Action::Reincarnated(node.id));
    let Some(i) = map.shards.iter().position(|s| s.primary == node.id) else {
        return;
    };
    // Only a replica that holds keys (an offset) takes over from a primary that has none.
    let next = successor_where(map, &map.shards[i], reports, |report| report.offset > 0);
    if let Some(next) = next {
        let shard = &mut map.shards[i];
        let restarted = shard.promote(next);
        shard.replicas.push(restarted);
        actions.push(Action::FailedOver(shard.id, restarted, next));
    }
}

fn join(map: &mut ClusterMap, node: NodeInfo, actions: &mut Vec<Action>) {
    let id = node.id;
    if map.nodes.contains_key(&id) {
        actions.push(Action::AlreadyMember(id));
        return;
    }
    if node.spare {
        map.nodes.insert(id, node);
        actions.push(Action::JoinedAsSpare(id));
        return;
    }
    let wanted = map.replicas as usize;
    let nodes = &map.nodes;
    let short = map
        .shards
        .iter_mut()
        .map(|s| (healthy_replicas(nodes, s), s))
        .filter(|(healthy, _)| !node.new_shard && *healthy < wanted)
        .min_by_key(|(healthy, s)| (*healthy, s.id))
        .map(|(_, s)| s);
    match short {
        Some(shard) => {
            shard.replicas.push(id);
            actions.push(Action::JoinedAsReplica(id, shard.id));
        }
        None => {
            let shard = ShardId(map.next_shard);
            map.next_shard += 1;
            map.shards.push(ShardInfo {
                id: shard,
                primary: id,
                replicas: Vec::new(),
            });
            actions.push(Action::JoinedAsPrimary(id, shard));
        }
    }
    map.nodes.insert(id, node);
}

/// The replica of `shard` to promote: healthy, streaming from its primary if any is, with the
/// highest replication offset (then the lowest id, so every leader picks the same one).
fn successor(
    map: &ClusterMap,
    shard: &ShardInfo,
    reports: &HashMap<NodeId, ReplicationReport>,
) -> Option<NodeId> {
    successor_where(map, shard, reports, |_| true)
}

/// [`successor`] among the replicas whose report (an empty one when none came) `eligible`
/// accepts.
fn successor_where(
    map: &ClusterMap,
    shard: &ShardInfo,
    reports: &HashMap<NodeId, ReplicationReport>,
    eligible: impl Fn(&ReplicationReport) -> bool,
) -> Option<NodeId> {
    let empty = ReplicationReport::default();
    shard
        .replicas
        .iter()
        .copied()
        .filter(|r| map.node(*r).is_some_and(NodeInfo::is_ok))
        .map(|r| (r, reports.get(&r).unwrap_or(&empty)))
        .filter(|(_, report)| eligible(report))
        .max_by_key(|(r, report)| (report.in_sync, report.offset, std::cmp::Reverse(*r)))
        .map(|(r, _)| r)
}

fn fail_over(
    map: &mut ClusterMap,
    reports: &HashMap<NodeId, ReplicationReport>,
    actions: &mut Vec<Action>,
) {
    for i in 0..map.shards.len() {
        let shard = &map.shards[i];
        let primary_failed = map.node(shard.primary).is_none_or(|n| !n.is_ok());
        if !primary_failed {
            continue;
        }
        let Some(next) = successor(map, shard, reports) else {
            continue; // No healthy replica: the shard waits for its primary.
        };
        let shard = &mut map.shards[i];
        let failed = shard.promote(next);
        shard.replicas.push(failed);
        actions.push(Action::FailedOver(shard.id, failed, next));
    }
}

/// A planned failover: `node` is a replica taking its shard over, or a primary stepping down
/// (before it shuts down) for its most advanced healthy replica.
fn hand_over(
    map: &mut ClusterMap,
    node: NodeId,
    reports: &HashMap<NodeId, ReplicationReport>,
    actions: &mut Vec<Action>,
) {
    let successor_of_primary = map
        .shards
        .iter()
        .find(|s| s.primary == node)
        .map(|s| successor(map, s, reports));
    let new_primary = match successor_of_primary {
        Some(Some(next)) => next,
        Some(None) => {
            let why = "it is a primary without a healthy replica to hand its shard to";
            actions.push(Action::HandoverRefused(node, why.into()));
            return;
        }
        None => node,
    };
    let Some(shard) = map
        .shards
        .iter_mut()
        .find(|s| s.replicas.contains(&new_primary))
    else {
        actions.push(Action::HandoverRefused(node, "it is not a replica".into()));
        return;
    };
    let old = shard.promote(new_primary);
    shard.replicas.push(old);
    actions.push(Action::HandedOver(shard.id, old, new_primary));
}

fn assign_spares(map: &mut ClusterMap, actions: &mut Vec<Action>) {
    let wanted = map.replicas as usize;
    let mut spares: Vec<NodeId> = map
        .spares()
        .filter(|n| n.spare && n.is_ok())
        .map(|n| n.id)
        .collect();
    spares.reverse();
    for i in 0..map.shards.len() {
        while healthy_replicas(&map.nodes, &map.shards[i]) < wanted {
            let Some(spare) = spares.pop() else {
                return;
            };
            map.shards[i].replicas.push(spare);
            actions.push(Action::SpareAssigned(spare, map.shards[i].id));
        }
    }
}

fn remove(
    map: &mut ClusterMap,
    node: NodeId,
    reports: &HashMap<NodeId, ReplicationReport>,
    actions: &mut Vec<Action>,
) {
    if !map.nodes.contains_key(&node) {
        actions.push(Action::RemovalRefused(node, "no such node".into()));
        return;
    }
    let shard_index = map
        .shards
        .iter()
        .position(|s| s.members().any(|m| m == node));
    if let Some(i) = shard_index {
        let shard_id = map.shards[i].id;
        if map.shards[i].primary == node {
            let chosen = successor(map, &map.shards[i], reports)
                .or_else(|| map.shards[i].replicas.first().copied());
            match chosen {
                Some(new_primary) => {
                    map.shards[i].promote(new_primary);
                    actions.push(Action::Promoted(new_primary, shard_id));
                }
                None => {
                    let others_live = map
                        .shards
                        .iter()
                        .any(|s| s.id != shard_id && !map.draining.contains(&s.id));
                    if !others_live {
                        actions.push(Action::RemovalRefused(
                            node,
                            "it is the primary of the last shard: its slots would have no owner"
                                .into(),
                        ));
                        return;
                    }
                    if map.node(node).is_some_and(NodeInfo::is_ok) {
                        // Its keys go with its slots first; it leaves once they are gone.
                        if !map.draining.contains(&shard_id) {
                            map.draining.push(shard_id);
                            actions.push(Action::Draining(shard_id));
                        }
                        return;
                    }
                    // A failed primary has nothing to send: its slots are placed again.
                    map.shards.remove(i);
                    map.draining.retain(|&d| d != shard_id);
                    actions.push(Action::ShardRemoved(shard_id));
                }
            }
        } else {
            map.shards[i].replicas.retain(|&r| r != node);
        }
    }
    forget(map, node);
    actions.push(Action::Removed(node));
}

/// Moves the slots of `handed` that are still on their way as it says to their target shard
/// (a source's primary handed them over); slots no longer in that migration are left alone.
fn take_handed_over(map: &mut ClusterMap, handed: &Migration, actions: &mut Vec<Action>) {
    let Some(i) = map
        .migrations
        .iter()
        .position(|m| m.from == handed.from && m.to == handed.to)
    else {
        return;
    };
    let mut moved = 0;
    for &(first, last) in &handed.slots {
        for slot in first..=last.min(SLOTS as Slot - 1) {
            if map.migrations[i].contains(slot) && map.slots.get(slot) == Some(handed.from) {
                map.slots.set(slot, Some(handed.to));
                moved += 1;
            }
        }
    }
    if moved == 0 {
        return;
    }
    let left = slot_ranges(
        map.migrations[i]
            .slots
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|&s| map.slots.get(s) == Some(handed.from)),
    );
    if left.is_empty() {
        map.migrations.remove(i);
    } else {
        map.migrations[i].slots = left;
    }
    actions.push(Action::SlotsHandedOver(handed.from, handed.to, moved));
}

/// Whether `shard`'s primary is healthy (it can send its slots' keys).
fn primary_ok(map: &ClusterMap, shard: ShardId) -> bool {
    map.shard(shard)
        .and_then(|s| map.node(s.primary))
        .is_some_and(NodeInfo::is_ok)
}

/// Removes every draining shard that owns no slot any more, with its nodes.
fn finish_drains(map: &mut ClusterMap, actions: &mut Vec<Action>) {
    let draining = std::mem::take(&mut map.draining);
    for shard in draining {
        let Some(info) = map.shard(shard).cloned() else {
            continue;
        };
        if map.slots.count(shard) > 0 || map.migrations.iter().any(|m| m.from == shard) {
            map.draining.push(shard);
            continue;
        }
        map.shards.retain(|s| s.id != shard);
        actions.push(Action::ShardRemoved(shard));
        for member in info.members() {
            forget(map, member);
            actions.push(Action::Removed(member));
        }
    }
}

/// Places the slots again over the shards that are not draining, starting from where the
/// slots in flight are going: a slot whose owner is gone gets its new owner at once, a slot
/// whose owner should change gets a migration, and migrations no longer wanted are dropped
/// (their slots stay with their source).
fn replan(map: &mut ClusterMap, actions: &mut Vec<Action>) {
    map.draining
        .retain(|d| map.shards.iter().any(|s| s.id == *d));
    let live: Vec<ShardId> = map
        .shards
        .iter()
        .map(|s| s.id)
        .filter(|id| !map.draining.contains(id))
        .collect();
    // A slot can migrate only from a shard whose primary can send it.
    let sendable: Vec<ShardId> = map
        .shards
        .iter()
        .map(|s| s.id)
        .filter(|id| primary_ok(map, *id))
        .collect();
    let exists = |shard: ShardId| sendable.contains(&shard);
    // Where every slot is going: its migration's target, else its owner; nowhere if that is
    // draining or gone.
    let mut intended = map.slots.clone();
    for m in &map.migrations {
        for &(a, b) in &m.slots {
            for slot in a..=b {
                intended.set(slot, Some(m.to));
            }
        }
    }
    for slot in 0..SLOTS as Slot {
        if intended.get(slot).is_some_and(|s| !live.contains(&s)) {
            intended.set(slot, None);
        }
    }
    let desired = placement::replace(&intended, &live);
    let mut direct = 0;
    let mut moving: Vec<((ShardId, ShardId), Slot)> = Vec::new();
    for slot in 0..SLOTS as Slot {
        let want = desired.get(slot);
        match map.slots.get(slot) {
            Some(owner) if exists(owner) => {
                if let Some(to) = want
                    && to != owner
                {
                    moving.push(((owner, to), slot));
                }
            }
            current => {
                if want.is_some() && want != current {
                    map.slots.set(slot, want);
                    direct += 1;
                }
            }
        }
    }
    if direct > 0 {
        actions.push(Action::SlotsMoved(direct));
    }
    set_migrations(map, moving, actions);
}

/// Makes `moving` (each slot with the shards it goes from and to) the map's migrations, one
/// per pair of shards.
fn set_migrations(
    map: &mut ClusterMap,
    mut moving: Vec<((ShardId, ShardId), Slot)>,
    actions: &mut Vec<Action>,
) {
    moving.sort();
    let mut migrations: Vec<Migration> = Vec::new();
    for chunk in moving.chunk_by(|a, b| a.0 == b.0) {
        let (from, to) = chunk[0].0;
        migrations.push(Migration {
            from,
            to,
            slots: slot_ranges(chunk.iter().map(|(_, slot)| *slot)),
        });
    }
    if migrations != map.migrations {
        let count = migrations.iter().map(Migration::count).sum();
        map.migrations = migrations;
        actions.push(Action::MigrationsPlanned(count));
    }
}

/// Moves each group of slots of the `index`th request of [`Observations::moves`] to the
/// shard of its node, with their keys: each slot another shard owns migrates from it, and a
/// migration of it elsewhere is called off (a slot already there stays). The request is
/// refused whole (nothing changes) when a group's node is in no shard, its shard is draining
/// or has no healthy primary, a range is out of order or past the last slot, or a slot's owner
/// has no healthy primary to send it (its keys would be left behind).
fn move_slots(map: &mut ClusterMap, index: usize, groups: &SlotGroups, actions: &mut Vec<Action>) {
    let mut targets = Vec::with_capacity(groups.len());
    for (slots, to) in groups {
        match move_target(map, slots, *to) {
            Ok(target) => targets.push(target),
            Err(why) => {
                actions.push(Action::MoveRefused(index, why));
                return;
            }
        }
    }
    for ((slots, _), target) in groups.iter().zip(targets) {
        move_group(map, slots, target, actions);
    }
}

/// Moves `slots` to shard `target` (see [`move_slots`]).
fn move_group(
    map: &mut ClusterMap,
    slots: &[(Slot, Slot)],
    target: ShardId,
    actions: &mut Vec<Action>,
) {
    let mut moving: std::collections::BTreeMap<Slot, (ShardId, ShardId)> = map
        .migrations
        .iter()
        .flat_map(|m| {
            m.slots
                .iter()
                .flat_map(|&(a, b)| a..=b)
                .map(move |slot| (slot, (m.from, m.to)))
        })
        .collect();
    // Each slot once, however often its ranges name it.
    let asked: std::collections::BTreeSet<Slot> = slots.iter().flat_map(|&(a, b)| a..=b).collect();
    let (mut sent, mut placed) = (0, 0);
    for slot in asked {
        match map.slots.get(slot) {
            Some(owner) if owner == target => {
                moving.remove(&slot);
            }
            Some(owner) => {
                if moving.insert(slot, (owner, target)) != Some((owner, target)) {
                    sent += 1;
                }
            }
            None => {
                map.slots.set(slot, Some(target));
                moving.remove(&slot);
                placed += 1;
            }
        }
    }
    let moving = moving
        .into_iter()
        .map(|(slot, pair)| (pair, slot))
        .collect();
    set_migrations(map, moving, actions);
    if placed > 0 {
        actions.push(Action::SlotsMoved(placed));
    }
    // Slots already on their way there (a request repeated) make no new map.
    if sent > 0 {
        actions.push(Action::SlotsMoving(target, sent));
    }
}

/// The shard `slots` would move to (that of node `to`), or why they cannot.
fn move_target(map: &ClusterMap, slots: &[(Slot, Slot)], to: NodeId) -> Result<ShardId, String> {
    let Some((shard, _)) = map.placement_of(to) else {
        return Err(match map.node(to) {
            Some(_) => format!("node {to} is in no shard (a spare)"),
            None => format!("no node {to} in the cluster"),
        });
    };
    let target = shard.id;
    if map.draining.contains(&target) {
        return Err(format!("shard {target} of node {to} is draining"));
    }
    if !primary_ok(map, target) {
        return Err(format!(
            "shard {target} of node {to} has no healthy primary"
        ));
    }
    if let Some(&(a, b)) = slots
        .iter()
        .find(|&&(a, b)| a > b || usize::from(b) >= SLOTS)
    {
        return Err(format!("invalid slot range {a}-{b}"));
    }
    let stuck = slots.iter().flat_map(|&(a, b)| a..=b).find(|&slot| {
        map.slots
            .get(slot)
            .is_some_and(|owner| owner != target && !primary_ok(map, owner))
    });
    if let Some(slot) = stuck {
        return Err(format!(
            "slot {slot}'s shard has no healthy primary to send its keys (move it once it has one)"
        ));
    }
    Ok(target)
}

/// Drops `node` from the map's nodes and controllers (its shard is the caller's business).
fn forget(map: &mut ClusterMap, node: NodeId) {
    map.nodes.remove(&node);
    map.controllers.retain(|&c| c != node);
}

fn track_health(
    map: &mut ClusterMap,
    observations: &Observations,
    now_ms: u64,
    settings: &Settings,
    actions: &mut Vec<Action>,
) {
    for node in map.nodes.values_mut() {
        let heard = observations.last_heartbeat.get(&node.id).copied();
        // A crashed process holds no lease once one has passed since its last heartbeat (a
        // lease runs from the heartbeat's sending, which came before its arrival).
        let patience = if observations.refused.contains(&node.id) {
            settings.lease_ms()
        } else {
            settings.node_timeout_ms
        };
        // Never heard from (since this leader took over): as if last heard a patience before
        // the time this leader may fail anyone.
        let fail_none_before = observations.fail_none_before_ms;
        let last = heard.unwrap_or(fail_none_before.saturating_sub(patience));
        let silent = now_ms > fail_none_before && now_ms.saturating_sub(last) > patience;
        match node.health {
            Health::Ok if silent => {
                node.health = Health::Failed;
                actions.push(Action::Failed(node.id));
            }
            // Only a heartbeat, not the leader's grace period, brings a failed node back; and
            // one within the patience that failed it: a node whose bus refuses connections
            // fails after a lease, and its last heartbeat, still younger than the node
            // timeout, must not bring it back until it is heard from again.
            Health::Failed if heard.is_some_and(|h| now_ms.saturating_sub(h) <= patience) => {
                node.health = Health::Ok;
                actions.push(Action::Recovered(node.id));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::SLOTS;

    fn node(id: u64, controller: bool) -> NodeInfo {
        NodeInfo {
            controller,
            ..NodeInfo::local(NodeId(id), 7000 + id as u16)
        }
    }

    fn settings() -> Settings {
        Settings {
            node_timeout_ms: 1000,
            max_voters: 3,
            ..Settings::default()
        }
    }

    /// Every node heard from at `at`.
    fn all_heard(map: &ClusterMap, at: u64) -> Observations {
        Observations {
            last_heartbeat: map.nodes.keys().map(|&id| (id, at)).collect(),
            fail_none_before_ms: 0,
            ..Observations::default()
        }
    }

    /// `map` after `nodes` joined and every slot migration that planned was handed over.
    fn joined(map: &ClusterMap, nodes: &[NodeInfo]) -> ClusterMap {
        let mut obs = all_heard(map, 10);
        obs.joins = nodes.to_vec();
        let map = decide(map, &obs, 10, &settings())
            .map
            .expect("joins change the map");
        settled(&map)
    }

    /// `map` once every migration's source handed all its slots over (unchanged if none).
    fn settled(map: &ClusterMap) -> ClusterMap {
        if map.migrations.is_empty() {
            return map.clone();
        }
        let mut obs = all_heard(map, 10);
        obs.handed_over = map.migrations.clone();
        let map = decide(map, &obs, 10, &settings())
            .map
            .expect("hand-overs change the map");
        assert!(map.migrations.is_empty(), "{:?}", map.migrations);
        map.validate().unwrap();
        map
    }

    /// What `decide` makes of `obs` on `map`, with every node heard from.
    fn decided(map: &ClusterMap, obs: impl FnOnce(&mut Observations)) -> Decision {
        let mut o = all_heard(map, 10);
        obs(&mut o);
        decide(map, &o, 10, &settings())
    }

    #[test]
    fn a_join_plans_migrations_and_slots_move_only_when_handed_over() {
        let map = bootstrap(node(1, true), 0, 0);
        let d = decided(&map, |o| o.joins = vec![node(2, false)]);
        let map = d.map.unwrap();
        let new = ShardId(1);
        assert_eq!(map.slots.count(new), 0, "nothing moved yet");
        assert_eq!(map.migrations.len(), 1);
        let m = map.migrations[0].clone();
        assert_eq!((m.from, m.to), (ShardId(0), new));
        assert!(
            (SLOTS / 2 - 500..=SLOTS / 2 + 500).contains(&m.count()),
            "{}",
            m.count()
        );
        assert!(d.actions.contains(&Action::MigrationsPlanned(m.count())));
        map.validate().unwrap();
        // The first range handed over: those slots move, the rest still migrate.
        let first = m.slots[0];
        let d = decided(&map, |o| {
            o.handed_over = vec![Migration {
                slots: vec![first],
                ..m.clone()
            }]
        });
        let after = d.map.unwrap();
        let n = usize::from(first.1 - first.0) + 1;
        assert!(
            d.actions
                .contains(&Action::SlotsHandedOver(ShardId(0), new, n))
        );
        assert_eq!(after.slots.count(new), n);
        assert_eq!(after.migrations[0].count(), m.count() - n);
        after.validate().unwrap();
        // Handing over slots that are not moving (again, or to another shard) changes nothing.
        let again = decided(&after, |o| {
            o.handed_over = vec![
                Migration {
                    slots: vec![first],
                    ..m.clone()
                },
                Migration {
                    to: ShardId(7),
                    ..m.clone()
                },
            ]
        });
        assert!(again.map.is_none(), "{:?}", again.actions);
    }

    #[test]
    fn slots_moved_on_demand_migrate_from_their_owners_and_nothing_else_moves() {
        let mut map = bootstrap(node(1, true), 0, 0);
        for id in 2..=3 {
            map = joined(&map, &[node(id, false)]);
        }
        let target = map.placement_of(NodeId(3)).unwrap().0.id;
        let before = owner_counts(&map);
        // Slots 0-99 and 200-299, wherever they are; those already the target's stay.
        let asked = vec![(0, 99), (200, 299)];
        let theirs = asked
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|&s| map.slots.get(s) != Some(target))
            .count();
        let d = decided(&map, |o| o.moves = vec![vec![(asked.clone(), NodeId(3))]]);
        assert!(d.actions.contains(&Action::SlotsMoving(target, theirs)));
        let moving = d.map.unwrap();
        assert_eq!(owner_counts(&moving), before, "nothing moved yet");
        assert!(moving.migrations.iter().all(|m| m.to == target));
        assert_eq!(
            moving
                .migrations
                .iter()
                .map(Migration::count)
                .sum::<usize>(),
            theirs
        );
        moving.validate().unwrap();
        // Asked again (a retried command): nothing new, no new map.
        let again = decided(&moving, |o| {
            o.moves = vec![vec![(asked.clone(), NodeId(3))]]
        });
        assert!(again.map.is_none(), "{:?}", again.actions);
        let after = settled(&moving);
        assert!(
            asked
                .iter()
                .flat_map(|&(a, b)| a..=b)
                .all(|s| after.slots.get(s) == Some(target))
        );
        assert_eq!(after.slots.count(target), before[&target] + theirs);

        // Moving some of them back calls their migration off instead where it still runs.
        let d = decided(&moving, |o| {
            o.moves = vec![
                vec![(vec![(0, 99)], NodeId(1))],
                vec![(vec![(0, 49)], NodeId(3))],
            ]
        });
        let both = d.map.unwrap();
        let to_first = map.placement_of(NodeId(1)).unwrap().0.id;
        for slot in 0..=99u16 {
            let owner = map.slots.get(slot).unwrap();
            let going = both
                .migrations
                .iter()
                .find(|m| m.contains(slot))
                .map(|m| m.to);
            let want = if slot < 50 { target } else { to_first };
            assert_eq!(
                going,
                (owner != want).then_some(want),
                "slot {slot} (owned by {owner})"
            );
        }
    }

    #[test]
    fn a_move_is_refused_when_it_cannot_be_done() {
        let mut map = bootstrap(node(1, true), 0, 0);
        map = joined(&map, &[node(2, false)]);
        let refused = |map: &ClusterMap, slots: Vec<(Slot, Slot)>, to: u64| {
            let mut o = all_heard(map, 10);
            // A failed node stays so: it is not heard from.
            o.last_heartbeat
                .retain(|id, _| map.node(*id).is_some_and(NodeInfo::is_ok));
            o.moves = vec![vec![(slots, NodeId(to))]];
            let d = decide(map, &o, 10, &settings());
            assert!(d.map.is_none(), "{:?}", d.actions);
            d.actions
                .iter()
                .find_map(|a| match a {
                    Action::MoveRefused(0, why) => Some(why.clone()),
                    _ => None,
                })
                .unwrap()
        };
        assert!(refused(&map, vec![(0, 10)], 9).contains("no node"));
        // A request is refused whole: a good group with a bad one moves nothing either.
        let whole = decided(&map, |o| {
            o.moves = vec![vec![
                (vec![(0, 10)], NodeId(2)),
                (vec![(20, 30)], NodeId(9)),
            ]]
        });
        assert!(whole.map.is_none(), "{:?}", whole.actions);
        assert!(
            whole
                .actions
                .iter()
                .any(|a| matches!(a, Action::MoveRefused(0, why) if why.contains("no node")))
        );
        // Nor to a shard that is draining.
        let mut draining = map.clone();
        let leaving = draining.placement_of(NodeId(2)).unwrap().0.id;
        draining.draining.push(leaving);
        assert!(refused(&draining, vec![(0, 10)], 2).contains("draining"));
        assert!(refused(&map, vec![(10, 0)], 2).contains("invalid slot range"));
        assert!(refused(&map, vec![(0, SLOTS as Slot)], 2).contains("invalid slot range"));
        // A slot whose owner has no healthy primary to send it.
        let mut failed = map.clone();
        let owner = failed.slots.get(0).unwrap();
        let primary = failed.shard(owner).unwrap().primary;
        failed.nodes.get_mut(&primary).unwrap().health = Health::Failed;
        let other = failed
            .nodes
            .keys()
            .copied()
            .find(|id| *id != primary)
            .unwrap();
        assert!(refused(&failed, vec![(0, 0)], other.0).contains("no healthy primary"));
    }

    #[test]
    fn a_join_while_slots_migrate_places_from_where_they_are_going() {
        let map = bootstrap(node(1, true), 0, 0);
        let map = decided(&map, |o| o.joins = vec![node(2, false)])
            .map
            .unwrap();
        let map = decided(&map, |o| o.joins = vec![node(3, false)])
            .map
            .unwrap();
        assert!(map.migrations.iter().all(|m| m.from == ShardId(0)));
        assert_eq!(map.migrations.len(), 2, "{:?}", map.migrations);
        let map = settled(&map);
        let counts = owner_counts(&map);
        assert_eq!(counts.len(), 3);
        assert!(counts.values().all(|&c| c >= SLOTS / 3 - 400), "{counts:?}");
        // Placing again changes nothing then.
        assert!(decided(&map, |o| o.rebalance = true).map.is_none());
    }

    #[test]
    fn removing_a_healthy_primary_drains_its_shard_first() {
        let mut map = bootstrap(node(1, true), 0, 0);
        for id in 2..=3 {
            map = joined(&map, &[node(id, false)]);
        }
        let leaving = map.shards[2].id;
        let owned = map.slots.count(leaving);
        assert!(owned > 0);
        let d = decided(&map, |o| o.removals = vec![NodeId(3)]);
        assert!(
            d.actions.contains(&Action::Draining(leaving)),
            "{:?}",
            d.actions
        );
        let draining = d.map.unwrap();
        assert_eq!(draining.draining, vec![leaving]);
        assert_eq!(
            draining.slots.count(leaving),
            owned,
            "its slots stay until handed over"
        );
        assert!(draining.node(NodeId(3)).is_some());
        let planned: usize = draining.migrations.iter().map(Migration::count).sum();
        assert_eq!(planned, owned);
        assert!(draining.migrations.iter().all(|m| m.from == leaving));
        // Asking again changes nothing; the shard leaves with its node once it is empty.
        assert!(
            decided(&draining, |o| o.removals = vec![NodeId(3)])
                .map
                .is_none()
        );
        let gone = settled(&draining);
        assert!(gone.shard(leaving).is_none() && gone.node(NodeId(3)).is_none());
        assert!(gone.draining.is_empty());
        assert_eq!(owner_counts(&gone).len(), 2);
    }

    #[test]
    fn a_failed_source_plans_no_migration_and_its_slots_wait_until_it_is_removed() {
        // Node 1 (shard 0's primary, no replica) failed and stays silent.
        let silent = |map: &ClusterMap, joins: Vec<NodeInfo>| {
            let mut map = map.clone();
            map.nodes.get_mut(&NodeId(1)).unwrap().health = Health::Failed;
            let mut o = all_heard(&map, 10);
            o.last_heartbeat.remove(&NodeId(1));
            o.joins = joins;
            decide(&map, &o, 10, &settings()).map.unwrap()
        };
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        // A join plans nothing from the failed shard: its slots that should move move now.
        let m = silent(&map, vec![node(3, false)]);
        assert!(
            m.migrations.iter().all(|m| m.from != ShardId(0)),
            "{:?}",
            m.migrations
        );
        assert!(m.slots.count(ShardId(2)) > 0);
        m.validate().unwrap();
        // A migration whose source fails afterwards waits for it (its keys may come back
        // with it), as the shard's other slots do; removing the node places them at once.
        let planned = decided(&map, |o| o.joins = vec![node(3, false)])
            .map
            .unwrap();
        assert!(planned.migrations.iter().any(|m| m.from == ShardId(0)));
        let mut waiting = planned.clone();
        waiting.nodes.get_mut(&NodeId(1)).unwrap().health = Health::Failed;
        let unchanged = decided(&waiting, |o| {
            o.last_heartbeat.remove(&NodeId(1));
        });
        assert!(unchanged.map.is_none(), "{:?}", unchanged.actions);
        let d = decided(&waiting, |o| {
            o.last_heartbeat.remove(&NodeId(1));
            o.removals = vec![NodeId(1)];
        });
        let m = d.map.unwrap();
        assert!(m.migrations.iter().all(|m| m.from != ShardId(0)));
        assert_eq!(m.slots.count(ShardId(0)), 0);
        m.validate().unwrap();
    }

    #[test]
    fn removing_a_failed_primary_without_replicas_places_its_slots_at_once() {
        let mut map = bootstrap(node(1, true), 0, 0);
        map = joined(&map, &[node(2, false)]);
        map.nodes.get_mut(&NodeId(2)).unwrap().health = Health::Failed;
        let d = decided(&map, |o| o.removals = vec![NodeId(2)]);
        assert!(d.actions.contains(&Action::ShardRemoved(ShardId(1))));
        let m = d.map.unwrap();
        assert_eq!(m.slots.count(ShardId(0)), SLOTS);
        assert!(m.migrations.is_empty());
    }

    #[test]
    fn acl_users_are_set_and_deleted_cluster_wide_in_one_map_each_time() {
        let map = bootstrap(node(1, true), 0, 0);
        assert_eq!(map.users, None);
        let change = |map: &ClusterMap, changes: &[(&str, Option<&str>)]| {
            let mut obs = all_heard(map, 10);
            obs.user_changes = changes
                .iter()
                .map(|(n, r)| (n.to_string(), r.map(str::to_string)))
                .collect();
            decide(map, &obs, 10, &settings())
        };
        let decision = change(&map, &[("alice", Some("on #ab ~app:* +get"))]);
        let map = decision.map.expect("a new user changes the map");
        assert_eq!(decision.actions, vec![Action::UsersChanged(1)]);
        assert_eq!(
            map.users.as_ref().unwrap().get("alice").map(String::as_str),
            Some("on #ab ~app:* +get")
        );
        // The same rules again change nothing; deleting an unknown user neither.
        assert!(
            change(&map, &[("alice", Some("on #ab ~app:* +get"))])
                .map
                .is_none()
        );
        assert!(change(&map, &[("nobody", None)]).map.is_none());
        let map = change(&map, &[("bob", Some("on nopass +@all")), ("alice", None)])
            .map
            .expect("changes");
        assert_eq!(map.users.unwrap().keys().collect::<Vec<_>>(), vec!["bob"]);
        // A first change that changes nothing still makes the users the cluster's.
        let fresh = bootstrap(node(1, true), 0, 0);
        let map = change(&fresh, &[("nobody", None)])
            .map
            .expect("users now managed");
        assert_eq!(map.users, Some(Default::default()));
    }

    fn owner_counts(map: &ClusterMap) -> HashMap<ShardId, usize> {
        let mut counts = HashMap::new();
        for owner in map.slots.iter() {
            *counts.entry(owner.expect("every slot owned")).or_default() += 1;
        }
        counts
    }

    #[test]
    fn bootstrap_gives_the_founder_every_slot() {
        let map = bootstrap(node(1, true), 2, 5);
        assert_eq!(map.epoch, 1);
        assert_eq!(map.slots.count(ShardId(0)), SLOTS);
        assert_eq!(map.controllers, vec![NodeId(1)]);
        map.validate().unwrap();
    }

    #[test]
    fn joins_fill_replicas_before_making_shards() {
        // replicas = 1: second node is a replica of shard 0, third a new shard, fourth its replica.
        let map = bootstrap(node(1, true), 1, 0);
        let map = joined(&map, &[node(2, true)]);
        assert_eq!(map.shards[0].replicas, vec![NodeId(2)]);
        assert_eq!(map.epoch, 2);
        let map = joined(&map, &[node(3, true), node(4, false)]);
        assert_eq!(map.shards.len(), 2);
        assert_eq!(map.shards[1].primary, NodeId(3));
        assert_eq!(map.shards[1].replicas, vec![NodeId(4)]);
        let counts = owner_counts(&map);
        assert_eq!(counts.len(), 2);
        assert!(counts.values().all(|&c| c >= SLOTS / 2 - 500), "{counts:?}");
        map.validate().unwrap();
    }

    #[test]
    fn without_replicas_every_join_is_a_new_shard_and_takes_slots() {
        let mut map = bootstrap(node(1, true), 0, 0);
        for id in 2..=5 {
            let before = map.clone();
            map = joined(&map, &[node(id, false)]);
            let new_shard = map.shards.last().unwrap().id;
            for slot in 0..SLOTS as u16 {
                let (was, is) = (before.slots.get(slot), map.slots.get(slot));
                assert!(
                    was == is || is == Some(new_shard),
                    "slot {slot} moved between old shards"
                );
            }
        }
        assert_eq!(map.shards.len(), 5);
        assert_eq!(
            map.epoch, 9,
            "a map for each join and one for each hand-over"
        );
    }

    #[test]
    fn a_repeated_join_changes_nothing() {
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        let mut obs = all_heard(&map, 10);
        obs.joins = vec![node(2, false)];
        let decision = decide(&map, &obs, 10, &settings());
        assert!(decision.map.is_none());
        assert_eq!(decision.actions, vec![Action::AlreadyMember(NodeId(2))]);
    }

    #[test]
    fn silent_nodes_fail_and_recover_with_their_heartbeats() {
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        // Table: (heartbeat of node 2, now, expected action).
        let cases: &[(Option<u64>, u64, Option<Action>)] = &[
            (Some(1000), 1500, None),
            (Some(1000), 2000, None),
            (Some(1000), 2001, Some(Action::Failed(NodeId(2)))),
            // Never heard since the leader took over at 0: grace ends at node_timeout.
            (None, 900, None),
            (None, 1001, Some(Action::Failed(NodeId(2)))),
        ];
        for (heartbeat, now, expected) in cases {
            let mut obs = Observations {
                last_heartbeat: [(NodeId(1), *now)].into(),
                ..Observations::default()
            };
            if let Some(h) = heartbeat {
                obs.last_heartbeat.insert(NodeId(2), *h);
            }
            let decision = decide(&map, &obs, *now, &settings());
            assert_eq!(
                decision.actions.first(),
                expected.as_ref(),
                "{heartbeat:?} at {now}"
            );
        }
        let mut obs = all_heard(&map, 0);
        obs.last_heartbeat.insert(NodeId(1), 3000);
        let failed = decide(&map, &obs, 3000, &settings()).map.unwrap();
        assert_eq!(failed.node(NodeId(2)).unwrap().health, Health::Failed);
        // Still silent: no new map.
        assert!(decide(&failed, &obs, 3100, &settings()).map.is_none());
        // The leader's grace does not revive it, a heartbeat does.
        let mut obs = Observations {
            last_heartbeat: [(NodeId(1), 3200)].into(),
            fail_none_before_ms: 4200,
            ..Observations::default()
        };
        assert!(decide(&failed, &obs, 3200, &settings()).map.is_none());
        obs.last_heartbeat.insert(NodeId(2), 3150);
        let back = decide(&failed, &obs, 3200, &settings());
        assert_eq!(back.actions, vec![Action::Recovered(NodeId(2))]);
        assert_eq!(
            back.map.unwrap().node(NodeId(2)).unwrap().health,
            Health::Ok
        );
    }

    #[test]
    fn a_new_leader_fails_nobody_before_its_predecessor_s_leases_end() {
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        let obs = Observations {
            last_heartbeat: [(NodeId(1), 10_000)].into(),
            fail_none_before_ms: 10_500,
            ..Observations::default()
        };
        assert!(decide(&map, &obs, 10_000, &settings()).map.is_none());
        assert!(decide(&map, &obs, 10_500, &settings()).map.is_none());
        assert_eq!(
            decide(&map, &obs, 10_501, &settings()).actions,
            vec![Action::Failed(NodeId(2))]
        );
    }

    #[test]
    fn a_crashed_node_is_failed_a_lease_after_its_last_heartbeat() {
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        let mut obs = all_heard(&map, 1000);
        obs.last_heartbeat.insert(NodeId(1), 1600);
        // Silent for more than a lease (500 ms), less than a node timeout (1000 ms).
        assert!(decide(&map, &obs, 1600, &settings()).map.is_none());
        obs.refused.insert(NodeId(2));
        assert_eq!(
            decide(&map, &obs, 1600, &settings()).actions,
            vec![Action::Failed(NodeId(2))]
        );
        // Not before the takeover's wait, though.
        obs.fail_none_before_ms = 2000;
        assert!(decide(&map, &obs, 1600, &settings()).map.is_none());
    }

    #[test]
    fn a_crashed_node_stays_failed_until_heard_from_again() {
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        let mut obs = all_heard(&map, 1000);
        obs.refused.insert(NodeId(2));
        let failed = decide(&map, &obs, 1600, &settings()).map.expect("failed");
        assert_eq!(failed.node(NodeId(2)).unwrap().health, Health::Failed);
        // Its last heartbeat is younger than a node timeout, but it failed a lease after it:
        // that heartbeat does not bring it back (it did, and the node flapped).
        for now in [1601, 1700, 1999, 2500] {
            obs.last_heartbeat.insert(NodeId(1), now);
            assert!(
                decide(&failed, &obs, now, &settings()).map.is_none(),
                "at {now} ms"
            );
        }
        // A heartbeat after it restarted does.
        obs.refused.remove(&NodeId(2));
        obs.last_heartbeat.insert(NodeId(2), 2600);
        obs.last_heartbeat.insert(NodeId(1), 2600);
        assert_eq!(
            decide(&failed, &obs, 2600, &settings()).actions,
            vec![Action::Recovered(NodeId(2))]
        );
    }

    #[test]
    fn removals_follow_the_node_s_role() {
        // Two shards, shard 0 with a replica.
        let map = bootstrap(node(1, true), 1, 0);
        let map = joined(&map, &[node(2, false), node(3, false)]);
        assert_eq!(map.shards[0].replicas, vec![NodeId(2)]);
        let remove = |map: &ClusterMap, id: u64| {
            let mut obs = all_heard(map, 10);
            obs.removals = vec![NodeId(id)];
            decide(map, &obs, 10, &settings())
        };
        // A replica: dropped, slots untouched.
        let d = remove(&map, 2);
        let m = d.map.unwrap();
        assert!(m.shards[0].replicas.is_empty() && m.node(NodeId(2)).is_none());
        assert_eq!(m.slots, map.slots);
        // A primary with a replica: the replica takes over.
        let d = remove(&map, 1);
        assert!(d.actions.contains(&Action::Promoted(NodeId(2), ShardId(0))));
        let m = d.map.unwrap();
        assert_eq!(m.shards[0].primary, NodeId(2));
        assert_eq!(m.slots, map.slots);
        // A primary without replicas: its shard drains, its slots go to the other shard.
        let d = remove(&map, 3);
        assert!(d.actions.contains(&Action::Draining(ShardId(1))));
        let m = settled(&d.map.unwrap());
        assert_eq!(m.slots.count(ShardId(0)), SLOTS);
        assert!(m.node(NodeId(3)).is_none());
        // The last shard's primary cannot go.
        let single = bootstrap(node(1, true), 0, 0);
        let d = remove(&single, 1);
        assert!(d.map.is_none());
        assert!(matches!(d.actions[0], Action::RemovalRefused(NodeId(1), _)));
        // An unknown node.
        assert!(remove(&single, 9).map.is_none());
    }

    #[test]
    fn voters_grow_to_an_odd_number_and_replace_failed_ones() {
        let mut map = bootstrap(node(1, true), 0, 0);
        map = joined(&map, &[node(2, true)]);
        // Two eligible: still one voter (odd).
        assert_eq!(desired_voters(&map, &[NodeId(1)], None, 5), None);
        map = joined(&map, &[node(3, true), node(4, false)]);
        assert_eq!(
            desired_voters(&map, &[NodeId(1)], None, 5),
            Some(vec![NodeId(1), NodeId(2), NodeId(3)])
        );
        let voters = [NodeId(1), NodeId(2), NodeId(3)];
        assert_eq!(desired_voters(&map, &voters, None, 5), None);
        // Voter 2 fails, no spare eligible node: keep it.
        map.nodes.get_mut(&NodeId(2)).unwrap().health = Health::Failed;
        assert_eq!(desired_voters(&map, &voters, None, 5), None);
        // An eligible node appears: it replaces the failed voter.
        map = joined(&map, &[node(5, true)]);
        map.nodes.get_mut(&NodeId(2)).unwrap().health = Health::Failed;
        assert_eq!(
            desired_voters(&map, &voters, None, 5),
            Some(vec![NodeId(1), NodeId(3), NodeId(5)])
        );
        // A voter removed from the cluster is dropped even without a replacement.
        map.nodes.remove(&NodeId(2));
        map.nodes.remove(&NodeId(5));
        assert_eq!(
            desired_voters(&map, &voters, None, 5),
            Some(vec![NodeId(1), NodeId(3)])
        );
    }

    #[test]
    fn the_map_records_raft_s_voters() {
        let map = joined(
            &bootstrap(node(1, true), 0, 0),
            &[node(2, true), node(3, true)],
        );
        let mut obs = all_heard(&map, 10);
        obs.voters = vec![NodeId(3), NodeId(1), NodeId(2)];
        let d = decide(&map, &obs, 10, &settings());
        assert_eq!(
            d.map.unwrap().controllers,
            vec![NodeId(1), NodeId(2), NodeId(3)]
        );
        let mut recorded = map.clone();
        recorded.controllers = vec![NodeId(1), NodeId(2), NodeId(3)];
        assert!(decide(&recorded, &obs, 10, &settings()).map.is_none());
    }

    fn report(offset: u64, in_sync: bool) -> ReplicationReport {
        ReplicationReport {
            replid: "r".into(),
            offset,
            in_sync,
        }
    }

    /// One shard: node 1 primary, replicas 2 and 3 (replicas = 2).
    fn shard_with_two_replicas() -> ClusterMap {
        let map = bootstrap(node(1, true), 2, 0);
        joined(&map, &[node(2, true), node(3, true)])
    }

    #[test]
    fn a_failed_primary_is_replaced_by_its_most_advanced_replica() {
        let map = shard_with_two_replicas();
        assert_eq!(map.shards[0].replicas, vec![NodeId(2), NodeId(3)]);
        // Table: (reports of 2 and 3, expected successor).
        let cases = [
            ((report(10, true), report(20, true)), NodeId(3)),
            ((report(30, true), report(20, true)), NodeId(2)),
            // A replica still loading or cut off loses to one streaming, whatever its offset.
            ((report(90, false), report(20, true)), NodeId(3)),
            // Equal offsets: the lowest id, so every leader picks the same one.
            ((report(20, true), report(20, true)), NodeId(2)),
        ];
        for ((r2, r3), expected) in cases {
            let obs = Observations {
                last_heartbeat: [(NodeId(2), 5000), (NodeId(3), 5000), (NodeId(1), 3000)].into(),
                reports: [(NodeId(2), r2.clone()), (NodeId(3), r3.clone())].into(),
                ..Observations::default()
            };
            let d = decide(&map, &obs, 5000, &settings());
            assert!(
                d.actions
                    .contains(&Action::FailedOver(ShardId(0), NodeId(1), expected)),
                "{r2:?} {r3:?}: {:?}",
                d.actions
            );
            let next = d.map.unwrap();
            let shard = &next.shards[0];
            assert_eq!(shard.primary, expected);
            // The failed primary stays, as a replica that will follow the new one.
            assert!(shard.replicas.contains(&NodeId(1)));
            assert_eq!(shard.replicas.len(), 2);
            assert_eq!(next.slots, map.slots, "a failover moves no slot");
            next.validate().unwrap();
        }
    }

    #[test]
    fn a_shard_without_a_healthy_replica_waits_for_its_primary() {
        let mut map = shard_with_two_replicas();
        for id in [2, 3] {
            map.nodes.get_mut(&NodeId(id)).unwrap().health = Health::Failed;
        }
        let obs = Observations {
            last_heartbeat: [(NodeId(1), 1000)].into(),
            ..Observations::default()
        };
        let d = decide(&map, &obs, 5000, &settings());
        assert_eq!(d.actions, vec![Action::Failed(NodeId(1))]);
        assert_eq!(d.map.unwrap().shards[0].primary, NodeId(1));
    }

    #[test]
    fn the_old_primary_comes_back_as_a_replica() {
        let map = shard_with_two_replicas();
        let obs = Observations {
            last_heartbeat: [(NodeId(2), 5000), (NodeId(3), 5000)].into(),
            reports: [(NodeId(2), report(5, true)), (NodeId(3), report(9, true))].into(),
            ..Observations::default()
        };
        let failed_over = decide(&map, &obs, 5000, &settings()).map.unwrap();
        let mut back = obs.clone();
        back.last_heartbeat.insert(NodeId(1), 5100);
        let d = decide(&failed_over, &back, 5200, &settings());
        assert_eq!(d.actions, vec![Action::Recovered(NodeId(1))]);
        let shard = &d.map.unwrap().shards[0];
        assert_eq!(shard.primary, NodeId(3), "no flip back");
        assert!(shard.replicas.contains(&NodeId(1)));
    }

    #[test]
    fn spares_fill_shards_that_lost_a_replica() {
        let map = shard_with_two_replicas();
        let mut spare = node(4, false);
        spare.spare = true;
        let with_spare = joined(&map, &[spare]);
        assert!(
            with_spare.placement_of(NodeId(4)).is_none(),
            "a spare joins no full shard"
        );
        assert_eq!(with_spare.spares().count(), 1);
        // Replica 3 fails: the spare takes its place.
        let obs = Observations {
            last_heartbeat: [(NodeId(1), 5000), (NodeId(2), 5000), (NodeId(4), 5000)].into(),
            ..Observations::default()
        };
        let d = decide(&with_spare, &obs, 5000, &settings());
        assert!(d.actions.contains(&Action::Failed(NodeId(3))));
        assert!(
            d.actions
                .contains(&Action::SpareAssigned(NodeId(4), ShardId(0)))
        );
        let next = d.map.unwrap();
        assert_eq!(
            next.shards[0].replicas,
            vec![NodeId(2), NodeId(3), NodeId(4)]
        );
        // A plain join also fills a shard short of healthy replicas rather than making one.
        let mut degraded = map.clone();
        degraded.nodes.get_mut(&NodeId(3)).unwrap().health = Health::Failed;
        let grown = joined(&degraded, &[node(5, false)]);
        assert_eq!(grown.shards.len(), 1);
        assert!(grown.shards[0].replicas.contains(&NodeId(5)));
        // Unless it asks for a shard of its own.
        let mut founder = node(6, false);
        founder.new_shard = true;
        let grown = joined(&degraded, &[founder]);
        assert_eq!(grown.shards.len(), 2);
        assert_eq!(
            grown.placement_of(NodeId(6)).map(|(s, r)| (s.id, r)),
            Some((ShardId(1), crate::map::Role::Primary))
        );
    }

    #[test]
    fn a_node_restarted_on_its_old_address_replaces_the_old_one() {
        // A replica restarts (new id, same ports) before it was marked failed: it takes the
        // old one's place instead of founding a shard that would move slots (and their keys).
        let map = shard_with_two_replicas();
        let old = map.node(NodeId(3)).unwrap().clone();
        let mut again = old.clone();
        again.id = NodeId(33);
        let next = joined(&map, &[again]);
        assert_eq!(next.shards.len(), 1, "no new shard");
        assert!(next.node(NodeId(3)).is_none());
        assert_eq!(next.shards[0].replicas, vec![NodeId(2), NodeId(33)]);
        assert_eq!(next.slots, map.slots);
        // A restarted primary: its replica takes over, the newcomer becomes a replica.
        let mut primary = map.node(NodeId(1)).unwrap().clone();
        primary.id = NodeId(11);
        let mut obs = all_heard(&map, 10);
        obs.joins = vec![primary];
        obs.reports = [(NodeId(2), report(5, true)), (NodeId(3), report(9, true))].into();
        let d = decide(&map, &obs, 10, &settings());
        assert!(
            d.actions
                .contains(&Action::Restarted(NodeId(1), NodeId(11)))
        );
        let next = d.map.unwrap();
        assert_eq!(next.shards[0].primary, NodeId(3));
        assert!(next.shards[0].replicas.contains(&NodeId(11)));
        next.validate().unwrap();
    }

    /// The decision once node `old` of `map` restarted on its address as `new`.
    fn restarted(map: &ClusterMap, old: NodeId, new: NodeId) -> Decision {
        let mut again = map.node(old).unwrap().clone();
        again.id = new;
        let mut obs = all_heard(map, 10);
        obs.joins = vec![again];
        decide(map, &obs, 10, &settings())
    }

    #[test]
    fn a_restarted_last_node_takes_its_own_place() {
        // The only node of the only shard restarts (a spare controller keeps the controller
        // alive): the newcomer is that shard's primary, once, with the same slots.
        let mut map = bootstrap(node(1, true), 0, 0);
        let mut spare = node(2, true);
        spare.spare = true;
        let map_with_spare = joined(&map, &[spare]);
        map = map_with_spare;
        let d = restarted(&map, NodeId(1), NodeId(11));
        let next = d.map.expect("the restart changes the map");
        next.validate().unwrap();
        assert_eq!(next.shards.len(), 1, "no new shard: {:?}", d.actions);
        assert_eq!(next.shards[0].primary, NodeId(11));
        assert!(next.node(NodeId(11)).is_some() && next.node(NodeId(1)).is_none());
        assert_eq!(next.slots, map.slots);
        assert!(d.actions.contains(&Action::AlreadyMember(NodeId(11))));
    }

    #[test]
    fn a_restarted_primary_without_replicas_keeps_its_shard_and_slots() {
        // Two shards of one node each; the second one's node restarts on its address.
        let map = joined(&bootstrap(node(1, true), 0, 0), &[node(2, false)]);
        assert_eq!(map.shards.len(), 2);
        let d = restarted(&map, NodeId(2), NodeId(22));
        let next = d.map.expect("the restart changes the map");
        next.validate().unwrap();
        assert_eq!(
            next.shards.len(),
            2,
            "no shard removed or added: {:?}",
            d.actions
        );
        assert_eq!(next.shards[1].id, map.shards[1].id);
        assert_eq!(next.shards[1].primary, NodeId(22));
        assert!(next.node(NodeId(2)).is_none());
        assert_eq!(next.slots, map.slots, "no slot moves");
    }

    /// Node `id` of `map` joining again under its id, with a new incarnation.
    fn reincarnated(map: &ClusterMap, id: u64, reports: &[(u64, ReplicationReport)]) -> Decision {
        let mut again = map.node(NodeId(id)).unwrap().clone();
        again.incarnation += 1;
        let mut obs = all_heard(map, 10);
        obs.joins = vec![again];
        obs.reports = reports
            .iter()
            .map(|(id, r)| (NodeId(*id), r.clone()))
            .collect();
        decide(map, &obs, 10, &settings())
    }

    #[test]
    fn a_primary_restarted_with_its_directory_hands_its_shard_to_a_replica() {
        let map = shard_with_two_replicas();
        // Table: (reports of replicas 2 and 3, the primary after).
        let cases = [
            // Both replicas hold keys: the most advanced takes over.
            (vec![(2, report(5, true)), (3, report(9, false))], NodeId(2)),
            (
                vec![(2, report(5, false)), (3, report(9, false))],
                NodeId(3),
            ),
            // Only one ever replicated (the other restarted too): it takes over.
            (vec![(2, report(0, true)), (3, report(4, false))], NodeId(3)),
            // None holds anything (the whole shard restarted): the primary stays.
            (vec![(2, report(0, true)), (3, report(0, true))], NodeId(1)),
            (vec![], NodeId(1)),
        ];
        for (reports, primary) in cases {
            let d = reincarnated(&map, 1, &reports);
            assert!(
                d.actions.contains(&Action::Reincarnated(NodeId(1))),
                "{d:?}"
            );
            let next = d.map.expect("the new incarnation is recorded");
            next.validate().unwrap();
            assert_eq!(next.shards[0].primary, primary, "{reports:?}");
            assert_eq!(next.node(NodeId(1)).unwrap().incarnation, 1);
            assert_eq!(next.nodes.len(), 3, "the same nodes");
            assert_eq!(next.shards[0].members().count(), 3, "the same shard");
            assert_eq!(next.slots, map.slots, "no slot moves");
            if primary != NodeId(1) {
                assert!(
                    d.actions
                        .contains(&Action::FailedOver(ShardId(0), NodeId(1), primary))
                );
                assert!(next.shards[0].replicas.contains(&NodeId(1)));
            }
        }
        // The same incarnation again (a repeated join) changes nothing.
        let next = reincarnated(&map, 1, &[]).map.unwrap();
        let mut obs = all_heard(&next, 10);
        obs.joins = vec![next.node(NodeId(1)).unwrap().clone()];
        assert!(decide(&next, &obs, 10, &settings()).map.is_none());
    }

    #[test]
    fn a_replica_restarted_with_its_directory_keeps_its_place() {
        let map = shard_with_two_replicas();
        let d = reincarnated(&map, 3, &[(2, report(5, true)), (3, report(5, true))]);
        assert_eq!(
            d.actions,
            vec![
                Action::Reincarnated(NodeId(3)),
                Action::AlreadyMember(NodeId(3))
            ]
        );
        let next = d.map.unwrap();
        assert_eq!(next.shards, map.shards);
        assert_eq!(next.node(NodeId(3)).unwrap().incarnation, 1);
        // A failed one stays failed until its heartbeats say otherwise.
        let mut failed = map.clone();
        failed.nodes.get_mut(&NodeId(3)).unwrap().health = Health::Failed;
        let mut obs = Observations {
            last_heartbeat: [(NodeId(1), 10), (NodeId(2), 10)].into(),
            fail_none_before_ms: 0,
            ..Observations::default()
        };
        let mut again = failed.node(NodeId(3)).unwrap().clone();
        again.incarnation = 7;
        obs.joins = vec![again];
        let next = decide(&failed, &obs, 10, &settings()).map.unwrap();
        assert_eq!(next.node(NodeId(3)).unwrap().health, Health::Failed);
        assert_eq!(next.node(NodeId(3)).unwrap().incarnation, 7);
    }

    #[test]
    fn leases_end_before_the_node_timeout() {
        for timeout in [100, 1000, 2000, 15_000] {
            let s = Settings {
                node_timeout_ms: timeout,
                max_voters: 3,
                ..Settings::default()
            };
            assert!(s.lease_ms() < timeout && s.lease_ms() >= timeout / 2);
        }
    }
}
