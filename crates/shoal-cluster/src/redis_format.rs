//! `CLUSTER SHARDS/SLOTS/NODES/INFO/MYID` replies in Redis 7.0's formats, rendered from a
//! [`ClusterMap`], so cluster-aware Redis clients read a Shoal cluster as a Redis Cluster.
//!
//! The formats were taken from a real `redis-server` 7.0.15 cluster (3 masters, 3 replicas);
//! the tests hold those raw replies and compare Shoal's bytes with them, node ids substituted.
//!
//! How Shoal's map reads in Redis's words:
//!
//! * a shard is a Redis shard: its primary is a `master`, its replicas are `slave` (CLUSTER
//!   NODES) or `replica` (CLUSTER SHARDS); a node in no shard (a spare) is a master without slots,
//!   which is what an unassigned node is in Redis;
//! * [`Health::Failed`] is Redis's `FAIL` state (the `fail` flag, `health: fail`, left out of
//!   CLUSTER SLOTS if a replica); Shoal has no `PFAIL`, so `fail?` and `cluster_slots_pfail` never
//!   show;
//! * Redis gives every master its own config epoch; Shoal has one epoch per map, so every shard
//!   member shows the map epoch as its config epoch (and `cluster_my_epoch`,
//!   `cluster_current_epoch`), and a spare shows 0, as a Redis master that never owned a slot;
//! * a node's address is the IP address and ports it announces; endpoints are always IPs
//!   (Redis's default `cluster-preferred-endpoint-type ip`), and a node that announces a
//!   hostname (`cluster-announce-hostname`) shows it as Redis 7.0 does: `ip:port@cport,hostname`
//!   in CLUSTER NODES, a `hostname` field after `endpoint` in CLUSTER SHARDS, and
//!   `{hostname: ...}` as the metadata map of CLUSTER SLOTS (empty without one);
//! * there is no TLS port yet, so CLUSTER SHARDS shows `port` and never `tls-port`.
//!
//! Text replies (CLUSTER NODES, CLUSTER INFO) are bulk strings in RESP2 and verbatim `txt`
//! strings in RESP3, as Redis sends them.

use std::collections::HashMap;
use std::fmt::{Display, Write};

use shoal_proto::Reply;

use crate::map::{ClusterMap, NodeId, NodeInfo, Role, ShardId};
use crate::slot::{SLOTS, Slot};

/// Per-node facts the map does not hold, supplied by the caller (from heartbeats, or the node's
/// own replication state when it is the one answering).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFacts {
    /// Replication offset: a primary's write offset, a replica's applied offset.
    pub replication_offset: u64,
    /// A replica that has not finished its first full sync. Redis shows such a replica as
    /// `health: loading` in CLUSTER SHARDS and leaves it out of CLUSTER SLOTS, so clients do not
    /// read from it (Redis tells it by a replication offset of 0). Ignored for primaries.
    pub loading: bool,
}

/// Cluster bus message counters by Redis message type, for CLUSTER INFO.
///
/// Shoal's bus does not speak Redis's gossip; a caller maps its own traffic onto the nearest
/// types (heartbeats as `ping`/`pong`, say) or leaves them 0. Redis prints only non-zero types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// `ping` messages.
    pub ping: u64,
    /// `pong` messages.
    pub pong: u64,
    /// `meet` messages.
    pub meet: u64,
    /// `fail` messages.
    pub fail: u64,
    /// `publish` messages.
    pub publish: u64,
    /// `auth-req` messages (failover vote requests).
    pub auth_req: u64,
    /// `auth-ack` messages (failover votes).
    pub auth_ack: u64,
    /// `update` messages.
    pub update: u64,
    /// `mfstart` messages (manual failover).
    pub mfstart: u64,
    /// `module` messages.
    pub module: u64,
    /// `publishshard` messages.
    pub publishshard: u64,
}

impl MessageCounts {
    /// The counters with Redis's type names, in Redis's type order (the order CLUSTER INFO
    /// prints them in).
    pub(crate) fn by_redis_name(&self) -> [(&'static str, u64); 11] {
        [
            ("ping", self.ping),
            ("pong", self.pong),
            ("meet", self.meet),
            ("fail", self.fail),
            ("publish", self.publish),
            ("auth-req", self.auth_req),
            ("auth-ack", self.auth_ack),
            ("update", self.update),
            ("mfstart", self.mfstart),
            ("module", self.module),
            ("publishshard", self.publishshard),
        ]
    }

    /// All messages of every type.
    pub(crate) fn total(&self) -> u64 {
        self.by_redis_name()
            .iter()
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }
}

/// What CLUSTER INFO shows beyond the map; every field defaults to 0 (or false).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfoStats {
    /// Messages this node sent on the cluster bus.
    pub sent: MessageCounts,
    /// Messages this node received on the cluster bus.
    pub received: MessageCounts,
    /// `total_cluster_links_buffer_limit_exceeded`: bus links closed for a full output buffer.
    pub links_buffer_limit_exceeded: u64,
    /// This node cannot serve (a primary without its lease, or a node not yet in the
    /// cluster). It then reports `cluster_state:fail`, as a Redis node cut off in a minority
    /// partition does.
    pub cut_off: bool,
    /// Primaries that seem gone while the controller cannot tell: their slots count as
    /// `cluster_slots_fail`.
    pub silent_primaries: Vec<NodeId>,
    /// Shoal's own fields after Redis's, when given: `shoal_controller_quorum` (1 while the
    /// controller's leader, sure of its majority, answers this node) and `shoal_lease`
    /// (`controller`, `peers` or `none`).
    pub controller: Option<(bool, &'static str)>,
}

/// Writes the CLUSTER SHARDS reply: one map per shard with its `slots` (flat start/end pairs)
/// and its `nodes` (primary first), each node a map of `id`, `port`, `ip`, `endpoint`,
/// `hostname` (only if it has one), `role`, `replication-offset` and `health`. Spares follow as slotless one-node shards.
pub fn cluster_shards(
    reply: &mut Reply<'_>,
    map: &ClusterMap,
    facts: &dyn Fn(NodeId) -> NodeFacts,
) {
    let ranges = ranges_by_shard(map);
    let shards = redis_shards(map, &ranges);
    reply.array(shards.len());
    for shard in &shards {
        reply.map(2);
        reply.bulk(b"slots");
        reply.array(shard.ranges.len() * 2);
        for &(first, last) in shard.ranges {
            reply.int(i64::from(first));
            reply.int(i64::from(last));
        }
        reply.bulk(b"nodes");
        reply.array(shard.members.len());
        for &(node, role) in &shard.members {
            shard_node_entry(reply, node, role, facts(node.id));
        }
    }
}

/// Writes the CLUSTER SLOTS reply: for every owned slot range, in slot order, its first and last
/// slot, the primary, then every replica that can serve reads (not failed, not loading). Each
/// node is `[ip, port, id, {...}]`, the map holding the endpoints that are not the preferred
/// one: `hostname` if the node has one, else nothing.
pub fn cluster_slots(reply: &mut Reply<'_>, map: &ClusterMap, facts: &dyn Fn(NodeId) -> NodeFacts) {
    let ranges: Vec<_> = map
        .slots
        .ranges()
        .into_iter()
        .filter_map(|(first, last, owner)| {
            let shard = map.shard(owner?)?;
            Some((first, last, map.node(shard.primary)?, &shard.replicas))
        })
        .collect();
    reply.array(ranges.len());
    for (first, last, primary, replica_ids) in ranges {
        let replicas: Vec<&NodeInfo> = replica_ids
            .iter()
            .filter_map(|id| map.node(*id))
            .filter(|node| serves_reads(node, facts(node.id)))
            .collect();
        reply.array(3 + replicas.len());
        reply.int(i64::from(first));
        reply.int(i64::from(last));
        slots_node_entry(reply, primary);
        for replica in replicas {
            slots_node_entry(reply, replica);
        }
    }
}

/// The CLUSTER NODES text: one line per known node, in node id order, each ending in `\n`:
///
/// `<id> <ip>:<port>@<bus port>[,<hostname>] <flags> <primary id or -> <ping sent> <pong received>
/// <config epoch> <link state> <slot ranges...>`
///
/// `myself` marks the answering node's line. `now_ms` (the answering node's Unix ms clock) is
/// shown as the last pong of every healthy node, with no ping outstanding (`0`); a failed node
/// shows a ping outstanding since `now_ms`, no pong (`0`), and a `disconnected` link. Slot
/// ranges (`a-b`, or `a` for one slot) follow only on primaries' lines. A node that is not in
/// the map (not joined yet) has no line.
pub(crate) fn cluster_nodes(map: &ClusterMap, myself: NodeId, now_ms: u64) -> String {
    let ranges = ranges_by_shard(map);
    let mut text = String::with_capacity(map.nodes.len() * 128);
    for node in map.nodes.values() {
        push_node_line(&mut text, map, node, myself, now_ms, &ranges);
    }
    text
}

/// Writes the CLUSTER NODES reply: [`cluster_nodes`] as a bulk string (RESP2) or verbatim text
/// (RESP3).
pub fn cluster_nodes_reply(reply: &mut Reply<'_>, map: &ClusterMap, myself: NodeId, now_ms: u64) {
    reply.verbatim(cluster_nodes(map, myself, now_ms).as_bytes());
}

/// The CLUSTER INFO text: `field:value\r\n` lines in Redis's order.
///
/// `cluster_state` is `ok` when every slot is owned by a shard whose primary is known and
/// healthy (Redis's `cluster-require-full-coverage yes`) and this node is not cut off. Slots of a
/// failed primary count as `cluster_slots_fail`; `cluster_size` counts shards owning slots;
/// `cluster_known_nodes` counts this node even before the map lists it, as Redis always knows
/// itself.
pub(crate) fn cluster_info(map: &ClusterMap, myself: NodeId, stats: &ClusterInfoStats) -> String {
    let slots = SlotHealth::of(map, &stats.silent_primaries);
    let all_ok = slots.ok == SLOTS && !stats.cut_off;
    let known_nodes = map.nodes.len() + usize::from(!map.nodes.contains_key(&myself));
    let mut text = String::with_capacity(640);
    push_field(
        &mut text,
        "cluster_state",
        if all_ok { "ok" } else { "fail" },
    );
    push_field(&mut text, "cluster_slots_assigned", slots.assigned);
    push_field(&mut text, "cluster_slots_ok", slots.ok);
    push_field(&mut text, "cluster_slots_pfail", 0);
    push_field(&mut text, "cluster_slots_fail", slots.failed);
    push_field(&mut text, "cluster_known_nodes", known_nodes);
    push_field(&mut text, "cluster_size", slots.shards_owning);
    push_field(&mut text, "cluster_current_epoch", map.epoch);
    push_field(&mut text, "cluster_my_epoch", config_epoch(map, myself));
    push_message_fields(&mut text, "sent", &stats.sent);
    push_message_fields(&mut text, "received", &stats.received);
    push_field(
        &mut text,
        "total_cluster_links_buffer_limit_exceeded",
        stats.links_buffer_limit_exceeded,
    );
    if let Some((quorum, lease)) = stats.controller {
        push_field(&mut text, "shoal_controller_quorum", u8::from(quorum));
        push_field(&mut text, "shoal_lease", lease);
    }
    text
}

/// Writes the CLUSTER INFO reply: [`cluster_info`] as a bulk string (RESP2) or verbatim text
/// (RESP3).
pub fn cluster_info_reply(
    reply: &mut Reply<'_>,
    map: &ClusterMap,
    myself: NodeId,
    stats: &ClusterInfoStats,
) {
    reply.verbatim(cluster_info(map, myself, stats).as_bytes());
}

/// Writes the CLUSTER MYID reply: the node's 40-hex-digit id as a bulk string (in both
/// protocols).
pub fn cluster_myid(reply: &mut Reply<'_>, myself: NodeId) {
    reply.bulk(myself.redis_id().as_bytes());
}

/// Every shard's owned slot ranges, in slot order.
type RangesByShard = HashMap<ShardId, Vec<(Slot, Slot)>>;

fn ranges_by_shard(map: &ClusterMap) -> RangesByShard {
    let mut by_shard = RangesByShard::new();
    for (first, last, owner) in map.slots.ranges() {
        if let Some(shard) = owner {
            by_shard.entry(shard).or_default().push((first, last));
        }
    }
    by_shard
}

/// A shard as Redis shows one: its known members, primary first, and its slot ranges.
struct RedisShard<'m> {
    members: Vec<(&'m NodeInfo, Role)>,
    ranges: &'m [(Slot, Slot)],
}

/// The map's shards (members the map does not know left out, shards with none left out), then
/// each spare as a slotless shard of one primary.
fn redis_shards<'m>(map: &'m ClusterMap, ranges: &'m RangesByShard) -> Vec<RedisShard<'m>> {
    let mut shards: Vec<RedisShard<'m>> = map
        .shards
        .iter()
        .map(|shard| {
            let primary = map.node(shard.primary).map(|n| (n, Role::Primary));
            let replicas = shard.replicas.iter().filter_map(|id| map.node(*id));
            RedisShard {
                members: primary
                    .into_iter()
                    .chain(replicas.map(|n| (n, Role::Replica)))
                    .collect(),
                ranges: ranges.get(&shard.id).map_or(&[], Vec::as_slice),
            }
        })
        .filter(|shard| !shard.members.is_empty())
        .collect();
    shards.extend(map.spares().map(|spare| RedisShard {
        members: vec![(spare, Role::Primary)],
        ranges: &[],
    }));
    shards
}

fn shard_node_entry(reply: &mut Reply<'_>, node: &NodeInfo, role: Role, facts: NodeFacts) {
    reply.map(7 + usize::from(node.hostname.is_some()));
    reply.bulk(b"id");
    reply.bulk(node.id.redis_id().as_bytes());
    reply.bulk(b"port");
    reply.int(i64::from(node.port));
    reply.bulk(b"ip");
    reply.bulk(node.host.as_bytes());
    reply.bulk(b"endpoint");
    reply.bulk(node.host.as_bytes());
    if let Some(hostname) = &node.hostname {
        reply.bulk(b"hostname");
        reply.bulk(hostname.as_bytes());
    }
    reply.bulk(b"role");
    reply.bulk(match role {
        Role::Primary => b"master".as_slice(),
        Role::Replica => b"replica",
    });
    reply.bulk(b"replication-offset");
    reply.int(i64::try_from(facts.replication_offset).unwrap_or(i64::MAX));
    reply.bulk(b"health");
    reply.bulk(shard_health(node, role, facts).as_bytes());
}

/// Redis's words for a node's health in CLUSTER SHARDS.
fn shard_health(node: &NodeInfo, role: Role, facts: NodeFacts) -> &'static str {
    if !node.is_ok() {
        "fail"
    } else if role == Role::Replica && facts.loading {
        "loading"
    } else {
        "online"
    }
}

/// Whether CLUSTER SLOTS lists a replica: Redis leaves out failed ones and those still loading.
fn serves_reads(replica: &NodeInfo, facts: NodeFacts) -> bool {
    replica.is_ok() && !facts.loading
}

fn slots_node_entry(reply: &mut Reply<'_>, node: &NodeInfo) {
    reply.array(4);
    reply.bulk(node.host.as_bytes());
    reply.int(i64::from(node.port));
    reply.bulk(node.id.redis_id().as_bytes());
    match &node.hostname {
        Some(hostname) => {
            reply.map(1);
            reply.bulk(b"hostname");
            reply.bulk(hostname.as_bytes());
        }
        None => reply.map(0),
    }
}

fn push_node_line(
    text: &mut String,
    map: &ClusterMap,
    node: &NodeInfo,
    myself: NodeId,
    now_ms: u64,
    ranges: &RangesByShard,
) {
    let placement = map.placement_of(node.id);
    let role = placement.map_or(Role::Primary, |(_, role)| role);
    let primary = match placement {
        Some((shard, Role::Replica)) => shard.primary.redis_id(),
        _ => "-".to_owned(),
    };
    let is_myself = node.id == myself;
    let (ping_sent, pong_received) = if node.is_ok() || is_myself {
        (0, now_ms)
    } else {
        (now_ms, 0)
    };
    let link = if node.is_ok() || is_myself {
        "connected"
    } else {
        "disconnected"
    };
    let _ = write!(
        text,
        "{} {}:{}@{}{}{} {} {primary} {ping_sent} {pong_received} {} {link}",
        node.id.redis_id(),
        node.host,
        node.port,
        node.bus_port,
        if node.hostname.is_some() { "," } else { "" },
        node.hostname.as_deref().unwrap_or(""),
        node_flags(node, role, is_myself),
        config_epoch(map, node.id),
    );
    if let Some((shard, Role::Primary)) = placement {
        for &(first, last) in ranges.get(&shard.id).map_or(&[][..], Vec::as_slice) {
            push_slot_range(text, first, last);
        }
    }
    text.push('\n');
}

/// `myself,` if it is, then `master` or `slave`, then `,fail` if failed.
fn node_flags(node: &NodeInfo, role: Role, is_myself: bool) -> String {
    let mut flags = String::with_capacity(20);
    if is_myself {
        flags.push_str("myself,");
    }
    flags.push_str(match role {
        Role::Primary => "master",
        Role::Replica => "slave",
    });
    if !node.is_ok() {
        flags.push_str(",fail");
    }
    flags
}

fn push_slot_range(text: &mut String, first: Slot, last: Slot) {
    let _ = if first == last {
        write!(text, " {first}")
    } else {
        write!(text, " {first}-{last}")
    };
}

/// The config epoch Redis would show for `node`: the map epoch for shard members, 0 for spares
/// and unknown nodes (a Redis master gets a config epoch when it is first given slots).
fn config_epoch(map: &ClusterMap, node: NodeId) -> u64 {
    if map.placement_of(node).is_some() {
        map.epoch
    } else {
        0
    }
}

/// Slot counts for CLUSTER INFO.
struct SlotHealth {
    /// Slots owned by a shard whose primary the map knows.
    assigned: usize,
    /// Assigned slots whose primary is healthy.
    ok: usize,
    /// Assigned slots whose primary has failed.
    failed: usize,
    /// Shards owning at least one assigned slot.
    shards_owning: usize,
}

impl SlotHealth {
    /// The slots of `map`, those of `silent` primaries counted as failed.
    fn of(map: &ClusterMap, silent: &[NodeId]) -> SlotHealth {
        let mut health = SlotHealth {
            assigned: 0,
            ok: 0,
            failed: 0,
            shards_owning: 0,
        };
        let mut owning = std::collections::HashSet::new();
        for (first, last, owner) in map.slots.ranges() {
            let Some(primary) = owner
                .and_then(|id| map.shard(id))
                .and_then(|s| map.node(s.primary))
            else {
                continue;
            };
            let count = usize::from(last - first) + 1;
            health.assigned += count;
            if primary.is_ok() && !silent.contains(&primary.id) {
                health.ok += count;
            } else {
                health.failed += count;
            }
            owning.extend(owner);
        }
        health.shards_owning = owning.len();
        health
    }
}

fn push_field(text: &mut String, name: &str, value: impl Display) {
    let _ = write!(text, "{name}:{value}\r\n");
}

/// Redis's per-type lines (non-zero types only), then the total, for one direction.
fn push_message_fields(text: &mut String, direction: &str, counts: &MessageCounts) {
    for (kind, count) in counts.by_redis_name() {
        if count != 0 {
            push_field(
                text,
                &format!("cluster_stats_messages_{kind}_{direction}"),
                count,
            );
        }
    }
    push_field(
        text,
        &format!("cluster_stats_messages_{direction}"),
        counts.total(),
    );
}

#[cfg(test)]
mod tests;
