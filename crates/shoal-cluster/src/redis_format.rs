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
//! * addresses are always IPs (Redis's default `cluster-preferred-endpoint-type ip`) and no node
//!   has a hostname, so no `,hostname` in CLUSTER NODES and an empty metadata map in CLUSTER SLOTS;
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
    pub fn by_redis_name(&self) -> [(&'static str, u64); 11] {
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
    pub fn total(&self) -> u64 {
        self.by_redis_name()
            .iter()
            .fold(0u64, |sum, (_, n)| sum.saturating_add(*n))
    }
}

/// What CLUSTER INFO shows beyond the map; every field defaults to 0 (or false).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterInfoStats {
    /// Messages this node sent on the cluster bus.
    pub sent: MessageCounts,
    /// Messages this node received on the cluster bus.
    pub received: MessageCounts,
    /// `total_cluster_links_buffer_limit_exceeded`: bus links closed for a full output buffer.
    pub links_buffer_limit_exceeded: u64,
    /// This node has lost the controller (its lease expired). It then reports
    /// `cluster_state:fail`, as a Redis node cut off in a minority partition does.
    pub cut_off: bool,
}

/// Writes the CLUSTER SHARDS reply: one map per shard with its `slots` (flat start/end pairs)
/// and its `nodes` (primary first), each node a map of `id`, `port`, `ip`, `endpoint`, `role`,
/// `replication-offset` and `health`. Spares follow as slotless one-node shards.
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
/// node is `[ip, port, id, {}]`, the empty map holding the endpoints that are not the preferred
/// one (none here).
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
/// `<id> <ip>:<port>@<bus port> <flags> <primary id or -> <ping sent> <pong received>
/// <config epoch> <link state> <slot ranges...>`
///
/// `myself` marks the answering node's line. `now_ms` (the answering node's Unix ms clock) is
/// shown as the last pong of every healthy node, with no ping outstanding (`0`); a failed node
/// shows a ping outstanding since `now_ms`, no pong (`0`), and a `disconnected` link. Slot
/// ranges (`a-b`, or `a` for one slot) follow only on primaries' lines. A node that is not in
/// the map (not joined yet) has no line.
pub fn cluster_nodes(map: &ClusterMap, myself: NodeId, now_ms: u64) -> String {
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
pub fn cluster_info(map: &ClusterMap, myself: NodeId, stats: &ClusterInfoStats) -> String {
    let slots = SlotHealth::of(map);
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
    reply.map(7);
    reply.bulk(b"id");
    reply.bulk(node.id.redis_id().as_bytes());
    reply.bulk(b"port");
    reply.int(i64::from(node.port));
    reply.bulk(b"ip");
    reply.bulk(node.host.as_bytes());
    reply.bulk(b"endpoint");
    reply.bulk(node.host.as_bytes());
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
    reply.map(0);
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
        "{} {}:{}@{} {} {primary} {ping_sent} {pong_received} {} {link}",
        node.id.redis_id(),
        node.host,
        node.port,
        node.bus_port,
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
    fn of(map: &ClusterMap) -> SlotHealth {
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
            if primary.is_ok() {
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
mod tests {
    use std::collections::HashMap;

    use shoal_proto::Protocol;
    use shoal_proto::reply::decode;

    use super::*;
    use crate::map::{Epoch, Health, ShardInfo, SlotTable};

    /// The real cluster's node ids (see [`redis_7_0_15`]), by RESP port.
    const REDIS_IDS: [(u16, &str); 7] = [
        (17400, "fc67bb7a9437763a0fa0f74f9802ef232b5cb92e"),
        (17401, "98c42044aa57ef2f1531ca16dae0a0843e2efd65"),
        (17402, "e358d10045b8bddb738840fc2143a4d19335941b"),
        (17403, "312a460a06a49d7d519f930697902a73d6398f2e"),
        (17404, "d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a"),
        (17405, "a41a472a6ed4007d16474ddc3f520e2a36d1cfbf"),
        (17406, "b9248135e3c1e7f7573c8a97d49f1b5924e5b959"),
    ];

    /// The answering node's clock in the tests: 13 digits, like the captured times, so that
    /// replacing them keeps lengths (and RESP headers) unchanged.
    const NOW: u64 = 1_796_160_900_000;

    /// A Shoal map shaped like one captured Redis cluster: the same ports, shards and slots,
    /// with Shoal ids numbered in the order Redis printed the nodes in CLUSTER NODES (Shoal
    /// prints them in id order, Redis in its hash table's order).
    struct Twin {
        line_order: Vec<u16>,
        map: ClusterMap,
    }

    impl Twin {
        /// The nodes on `line_order`'s ports, all spares, at `epoch`.
        fn new(line_order: &[u16], epoch: Epoch) -> Twin {
            let mut map = ClusterMap::empty();
            map.epoch = epoch;
            let mut twin = Twin {
                line_order: line_order.to_vec(),
                map,
            };
            for &port in line_order {
                let node = NodeInfo {
                    id: twin.id(port),
                    host: "127.0.0.1".into(),
                    port,
                    bus_port: port + 10000,
                    http_port: 0,
                    controller: false,
                    health: Health::Ok,
                    spare: false,
                };
                twin.map.nodes.insert(node.id, node);
            }
            twin
        }

        /// The Shoal id of the node on `port`.
        fn id(&self, port: u16) -> NodeId {
            let position = self.line_order.iter().position(|&p| p == port);
            NodeId(position.expect("a node of the twin") as u64 + 1)
        }

        /// Adds the next shard: `primary`, `replicas` (in order) and the slots in `ranges`.
        fn shard(mut self, primary: u16, replicas: &[u16], ranges: &[(Slot, Slot)]) -> Twin {
            let id = ShardId(self.map.next_shard);
            self.map.next_shard += 1;
            self.map.shards.push(ShardInfo {
                id,
                primary: self.id(primary),
                replicas: replicas.iter().map(|&port| self.id(port)).collect(),
            });
            for &(first, last) in ranges {
                for slot in first..=last {
                    self.map.slots.set(slot, Some(id));
                }
            }
            self
        }

        /// The captured cluster before 17406 joined: three shards of two.
        fn six_nodes(line_order: &[u16], epoch: Epoch) -> Twin {
            Twin::new(line_order, epoch)
                .shard(17401, &[17404], &[(5461, 10922)])
                .shard(17400, &[17403], &[(0, 5460)])
                .shard(17402, &[17405], &[(10923, 16383)])
        }

        /// Marks the nodes on `ports` failed.
        fn failed(mut self, ports: &[u16]) -> Twin {
            for &port in ports {
                let id = self.id(port);
                if let Some(node) = self.map.nodes.get_mut(&id) {
                    node.health = Health::Failed;
                }
            }
            self.map.validate().expect("a valid twin");
            self
        }

        /// `redis` with every captured node id replaced by its twin's Shoal id (same length).
        fn shoal_ids(&self, redis: &str) -> String {
            REDIS_IDS
                .iter()
                .filter(|(port, _)| self.line_order.contains(port))
                .fold(redis.to_owned(), |text, (port, redis_id)| {
                    text.replace(redis_id, &self.id(*port).redis_id())
                })
        }

        /// Facts giving every node `offset`, except those listed.
        fn offsets(&self, offset: u64, except: &[(u16, u64)]) -> impl Fn(NodeId) -> NodeFacts {
            let mut offsets: HashMap<NodeId, u64> =
                self.map.nodes.keys().map(|&id| (id, offset)).collect();
            for &(port, offset) in except {
                offsets.insert(self.id(port), offset);
            }
            move |id| NodeFacts {
                replication_offset: offsets.get(&id).copied().unwrap_or(0),
                loading: false,
            }
        }

        /// A captured CLUSTER NODES text as Shoal shows the same cluster at [`NOW`]: Shoal's ids,
        /// `0 NOW` as ping sent and pong received of healthy nodes and `NOW 0` of failed ones
        /// (Redis shows its real times), the map epoch as every shard member's config epoch
        /// (Redis has one per master; 0 stays 0: a node that never had slots), and failed nodes
        /// `disconnected` (Redis's link to a SIGSTOPped node can still be `connected`, since the
        /// kernel accepts the connection; a crashed node shows `disconnected`).
        fn shoal_nodes_text(&self, redis_text: &str) -> String {
            let mut out = String::new();
            for line in self.shoal_ids(redis_text).lines() {
                let mut fields: Vec<String> = line.split(' ').map(str::to_owned).collect();
                let failed = fields[2].contains("fail");
                let (ping, pong) = if failed { (NOW, 0) } else { (0, NOW) };
                fields[4] = ping.to_string();
                fields[5] = pong.to_string();
                if fields[6] != "0" {
                    fields[6] = self.map.epoch.to_string();
                }
                if failed {
                    fields[7] = "disconnected".into();
                }
                out.push_str(&fields.join(" "));
                out.push('\n');
            }
            out
        }
    }

    /// The text inside a captured bulk or verbatim reply.
    fn reply_text(reply: &str) -> &str {
        let (_, body) = reply.split_once("\r\n").expect("a RESP header");
        let body = body.strip_suffix("\r\n").expect("a RESP terminator");
        body.strip_prefix("txt:").unwrap_or(body)
    }

    /// A captured CLUSTER NODES reply as Shoal frames the same cluster's text, keeping Redis's
    /// header: only for captures where the text keeps its length (see [`Twin::shoal_nodes_text`]).
    fn same_length_nodes_reply(twin: &Twin, reply: &str) -> String {
        let text = reply_text(reply);
        let shoal = twin.shoal_nodes_text(text);
        assert_eq!(shoal.len(), text.len(), "not a same-length capture");
        reply.replacen(text, &shoal, 1)
    }

    /// A captured CLUSTER INFO reply with `cluster_my_epoch` set to the map epoch (Redis shows
    /// its master's config epoch there); both are one digit here, so the header stays right.
    fn shoal_info_reply(twin: &Twin, reply: &str) -> String {
        let my_epoch = reply_text(reply)
            .lines()
            .find_map(|line| line.strip_prefix("cluster_my_epoch:"))
            .expect("cluster_my_epoch");
        assert_eq!(my_epoch.len(), twin.map.epoch.to_string().len());
        reply.replacen(
            &format!("cluster_my_epoch:{my_epoch}\r\n"),
            &format!("cluster_my_epoch:{}\r\n", twin.map.epoch),
            1,
        )
    }

    /// The message counters a captured CLUSTER INFO shows, to feed back to [`cluster_info`].
    fn captured_stats(reply: &str) -> ClusterInfoStats {
        let mut stats = ClusterInfoStats::default();
        for line in reply_text(reply).lines() {
            let Some(rest) = line.strip_prefix("cluster_stats_messages_") else {
                continue;
            };
            let (name, value) = rest.split_once(':').expect("name:value");
            if name == "sent" || name == "received" {
                continue; // the totals, which Shoal computes
            }
            let value: u64 = value.trim_end().parse().expect("a counter");
            let (kind, counts) = if let Some(kind) = name.strip_suffix("_sent") {
                (kind, &mut stats.sent)
            } else if let Some(kind) = name.strip_suffix("_received") {
                (kind, &mut stats.received)
            } else {
                panic!("unexpected field {name}");
            };
            let counter = match kind {
                "ping" => &mut counts.ping,
                "pong" => &mut counts.pong,
                "meet" => &mut counts.meet,
                "fail" => &mut counts.fail,
                "auth-req" => &mut counts.auth_req,
                "auth-ack" => &mut counts.auth_ack,
                "update" => &mut counts.update,
                _ => panic!("unexpected message type {kind}"),
            };
            *counter = value;
        }
        stats
    }

    fn render(protocol: Protocol, write: impl FnOnce(&mut Reply<'_>)) -> String {
        let mut out = Vec::new();
        write(&mut Reply::new(&mut out, protocol));
        String::from_utf8(out).expect("ASCII replies")
    }

    fn shards(twin: &Twin, protocol: Protocol, facts: &dyn Fn(NodeId) -> NodeFacts) -> String {
        render(protocol, |r| cluster_shards(r, &twin.map, facts))
    }

    fn slots(twin: &Twin, protocol: Protocol, facts: &dyn Fn(NodeId) -> NodeFacts) -> String {
        render(protocol, |r| cluster_slots(r, &twin.map, facts))
    }

    const VIEW_FROM_PRIMARY: [u16; 6] = [17403, 17404, 17401, 17400, 17402, 17405];
    const VIEW_FROM_PRIMARY_WITH_SPARE: [u16; 7] =
        [17403, 17404, 17401, 17400, 17402, 17405, 17406];
    const VIEW_FROM_REPLICA: [u16; 7] = [17404, 17403, 17400, 17401, 17405, 17402, 17406];

    fn healthy() -> Twin {
        Twin::six_nodes(&VIEW_FROM_PRIMARY, 6)
    }

    /// 17406 joined as a spare, then 17402 gave it slot 16383, which made it 17402's replica
    /// and left 16383 unowned.
    fn with_spare_as_replica(line_order: &[u16]) -> Twin {
        Twin::new(line_order, 7)
            .shard(17401, &[17404], &[(5461, 10922)])
            .shard(17400, &[17403], &[(0, 5460)])
            .shard(17402, &[17405, 17406], &[(10923, 16382)])
    }

    #[test]
    fn healthy_cluster_nodes_match_redis_in_both_protocols() {
        let twin = healthy();
        let myself = twin.id(17400);
        for (protocol, redis) in [
            (Protocol::Resp2, redis_7_0_15::OK_NODES_RESP2),
            (Protocol::Resp3, redis_7_0_15::OK_NODES_RESP3),
        ] {
            let shoal = render(protocol, |r| cluster_nodes_reply(r, &twin.map, myself, NOW));
            assert_eq!(shoal, same_length_nodes_reply(&twin, redis), "{protocol:?}");
        }
    }

    #[test]
    fn healthy_cluster_slots_match_redis_in_both_protocols() {
        let twin = healthy();
        let facts = twin.offsets(56, &[]);
        for (protocol, redis) in [
            (Protocol::Resp2, redis_7_0_15::OK_SLOTS_RESP2),
            (Protocol::Resp3, redis_7_0_15::OK_SLOTS_RESP3),
        ] {
            assert_eq!(slots(&twin, protocol, &facts), twin.shoal_ids(redis));
        }
    }

    #[test]
    fn healthy_cluster_shards_match_redis_in_both_protocols() {
        let twin = healthy();
        let facts = twin.offsets(56, &[]);
        for (protocol, redis) in [
            (Protocol::Resp2, redis_7_0_15::OK_SHARDS_RESP2),
            (Protocol::Resp3, redis_7_0_15::OK_SHARDS_RESP3),
        ] {
            assert_eq!(shards(&twin, protocol, &facts), twin.shoal_ids(redis));
        }
    }

    #[test]
    fn healthy_cluster_info_matches_redis_in_both_protocols() {
        let twin = healthy();
        let myself = twin.id(17400);
        let stats = ClusterInfoStats {
            sent: MessageCounts {
                ping: 47,
                pong: 44,
                ..MessageCounts::default()
            },
            received: MessageCounts {
                ping: 39,
                pong: 47,
                meet: 5,
                ..MessageCounts::default()
            },
            ..ClusterInfoStats::default()
        };
        let shoal = render(Protocol::Resp2, |r| {
            cluster_info_reply(r, &twin.map, myself, &stats)
        });
        assert_eq!(shoal, shoal_info_reply(&twin, redis_7_0_15::OK_INFO_RESP2));
        let stats = captured_stats(redis_7_0_15::OK_INFO_RESP3);
        let shoal = render(Protocol::Resp3, |r| {
            cluster_info_reply(r, &twin.map, myself, &stats)
        });
        assert_eq!(shoal, shoal_info_reply(&twin, redis_7_0_15::OK_INFO_RESP3));
    }

    #[test]
    fn myid_matches_redis() {
        let twin = healthy();
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            let shoal = render(protocol, |r| cluster_myid(r, twin.id(17400)));
            assert_eq!(shoal, twin.shoal_ids(redis_7_0_15::OK_MYID));
        }
    }

    #[test]
    fn failed_replica_is_flagged_and_left_out_of_slots() {
        let twin = healthy().failed(&[17405]);
        let myself = twin.id(17400);
        assert_eq!(
            cluster_nodes(&twin.map, myself, NOW),
            twin.shoal_nodes_text(reply_text(redis_7_0_15::REPLICA_FAILED_NODES))
        );
        let facts = twin.offsets(168, &[(17405, 154)]);
        assert_eq!(
            slots(&twin, Protocol::Resp2, &facts),
            twin.shoal_ids(redis_7_0_15::REPLICA_FAILED_SLOTS)
        );
        assert_eq!(
            shards(&twin, Protocol::Resp2, &facts),
            twin.shoal_ids(redis_7_0_15::REPLICA_FAILED_SHARDS)
        );
    }

    #[test]
    fn failed_primary_fails_its_slots_and_the_cluster() {
        let twin = healthy().failed(&[17405, 17402]);
        let myself = twin.id(17400);
        assert_eq!(
            cluster_nodes(&twin.map, myself, NOW),
            twin.shoal_nodes_text(reply_text(redis_7_0_15::PRIMARY_FAILED_NODES))
        );
        let facts = twin.offsets(196, &[(17402, 182), (17405, 154)]);
        assert_eq!(
            slots(&twin, Protocol::Resp2, &facts),
            twin.shoal_ids(redis_7_0_15::PRIMARY_FAILED_SLOTS)
        );
        assert_eq!(
            shards(&twin, Protocol::Resp3, &facts),
            twin.shoal_ids(redis_7_0_15::PRIMARY_FAILED_SHARDS_RESP3)
        );
        let stats = captured_stats(redis_7_0_15::PRIMARY_FAILED_INFO);
        let shoal = render(Protocol::Resp2, |r| {
            cluster_info_reply(r, &twin.map, myself, &stats)
        });
        assert_eq!(
            shoal,
            shoal_info_reply(&twin, redis_7_0_15::PRIMARY_FAILED_INFO)
        );
    }

    #[test]
    fn spare_node_is_a_slotless_master() {
        let twin = Twin::six_nodes(&VIEW_FROM_PRIMARY_WITH_SPARE, 7);
        let myself = twin.id(17400);
        assert_eq!(
            cluster_nodes(&twin.map, myself, NOW),
            twin.shoal_nodes_text(reply_text(redis_7_0_15::SPARE_NODES))
        );
        let facts = twin.offsets(224, &[(17402, 196), (17405, 196), (17406, 0)]);
        assert_eq!(
            shards(&twin, Protocol::Resp2, &facts),
            twin.shoal_ids(redis_7_0_15::SPARE_SHARDS)
        );
    }

    #[test]
    fn unowned_slot_fails_the_cluster() {
        let twin = with_spare_as_replica(&VIEW_FROM_PRIMARY_WITH_SPARE);
        let myself = twin.id(17400);
        let stats = captured_stats(redis_7_0_15::UNOWNED_INFO);
        let shoal = render(Protocol::Resp2, |r| {
            cluster_info_reply(r, &twin.map, myself, &stats)
        });
        assert_eq!(shoal, shoal_info_reply(&twin, redis_7_0_15::UNOWNED_INFO));
        let facts = twin.offsets(1, &[]);
        assert_eq!(
            slots(&twin, Protocol::Resp2, &facts),
            twin.shoal_ids(redis_7_0_15::UNOWNED_SLOTS)
        );
    }

    #[test]
    fn split_ranges_and_single_slots_match_redis() {
        let mut twin = with_spare_as_replica(&VIEW_FROM_PRIMARY_WITH_SPARE);
        twin.map.slots.set(16383, Some(ShardId(1)));
        let myself = twin.id(17400);
        assert_eq!(
            cluster_nodes(&twin.map, myself, NOW),
            twin.shoal_nodes_text(reply_text(redis_7_0_15::SPLIT_NODES))
        );
        let facts = twin.offsets(308, &[(17402, 266), (17405, 266), (17406, 266)]);
        assert_eq!(
            slots(&twin, Protocol::Resp3, &facts),
            twin.shoal_ids(redis_7_0_15::SPLIT_SLOTS_RESP3)
        );
        assert_eq!(
            shards(&twin, Protocol::Resp2, &facts),
            twin.shoal_ids(redis_7_0_15::SPLIT_SHARDS)
        );
    }

    #[test]
    fn replica_view_marks_myself_as_slave() {
        let twin = Twin::six_nodes(&VIEW_FROM_REPLICA, 7);
        let myself = twin.id(17403);
        assert_eq!(
            cluster_nodes(&twin.map, myself, NOW),
            twin.shoal_nodes_text(reply_text(redis_7_0_15::REPLICA_VIEW_NODES))
        );
        let stats = captured_stats(redis_7_0_15::REPLICA_VIEW_INFO);
        let shoal = render(Protocol::Resp2, |r| {
            cluster_info_reply(r, &twin.map, myself, &stats)
        });
        assert_eq!(
            shoal,
            shoal_info_reply(&twin, redis_7_0_15::REPLICA_VIEW_INFO)
        );
    }

    #[test]
    fn loading_replica_is_shown_loading_and_left_out_of_slots() {
        // Redis 7.0 (`addNodeDetailsToShardReply`, `isReplicaAvailable`): a replica that has
        // not finished its first sync is `health: loading` and is not listed in CLUSTER SLOTS.
        let twin = healthy();
        let loading = twin.id(17404);
        let facts = |id: NodeId| NodeFacts {
            replication_offset: if id == loading { 0 } else { 56 },
            loading: id == loading,
        };
        let shoal_shards = shards(&twin, Protocol::Resp2, &facts);
        let expected = twin.shoal_ids(redis_7_0_15::OK_SHARDS_RESP2).replacen(
            "$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline",
            "$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$7\r\nloading",
            1,
        );
        assert_eq!(shoal_shards, expected);
        let shoal_slots = slots(&twin, Protocol::Resp2, &facts);
        assert!(!shoal_slots.contains(&loading.redis_id()), "{shoal_slots}");
        assert!(
            shoal_slots.contains("*3\r\n:5461\r\n:10922\r\n"),
            "{shoal_slots}"
        );
    }

    #[test]
    fn a_node_cut_off_from_the_controller_reports_fail() {
        let twin = healthy();
        let stats = ClusterInfoStats {
            cut_off: true,
            ..ClusterInfoStats::default()
        };
        let info = cluster_info(&twin.map, twin.id(17400), &stats);
        assert!(info.starts_with("cluster_state:fail\r\n"), "{info}");
        assert!(info.contains("\r\ncluster_slots_ok:16384\r\n"), "{info}");
    }

    #[test]
    fn message_totals_saturate() {
        let counts = MessageCounts {
            ping: u64::MAX,
            pong: 1,
            ..MessageCounts::default()
        };
        assert_eq!(counts.total(), u64::MAX);
    }

    /// Writes one reply.
    type ReplyWriter<'a> = Box<dyn Fn(&mut Reply<'_>) + 'a>;

    /// Every reply of a map, in both protocols, must be one well-formed RESP value.
    fn assert_renders(map: &ClusterMap, myself: NodeId) {
        let facts = |_: NodeId| NodeFacts::default();
        let stats = ClusterInfoStats::default();
        for protocol in [Protocol::Resp2, Protocol::Resp3] {
            let replies: [ReplyWriter<'_>; 5] = [
                Box::new(|r| cluster_shards(r, map, &facts)),
                Box::new(|r| cluster_slots(r, map, &facts)),
                Box::new(|r| cluster_nodes_reply(r, map, myself, NOW)),
                Box::new(|r| cluster_info_reply(r, map, myself, &stats)),
                Box::new(|r| cluster_myid(r, myself)),
            ];
            for write in replies {
                let mut out = Vec::new();
                write(&mut Reply::new(&mut out, protocol));
                let (_, used) = decode(&out).expect("valid RESP").expect("a whole reply");
                assert_eq!(used, out.len(), "{}", String::from_utf8_lossy(&out));
            }
        }
    }

    #[test]
    fn an_empty_map_renders_an_unknown_cluster() {
        let map = ClusterMap::empty();
        let myself = NodeId(42);
        assert_renders(&map, myself);
        assert_eq!(cluster_nodes(&map, myself, NOW), "");
        assert_eq!(
            render(Protocol::Resp2, |r| cluster_slots(r, &map, &|_: NodeId| {
                NodeFacts::default()
            })),
            "*0\r\n"
        );
        assert_eq!(
            render(Protocol::Resp3, |r| cluster_shards(
                r,
                &map,
                &|_: NodeId| NodeFacts::default()
            )),
            "*0\r\n"
        );
        let info = cluster_info(&map, myself, &ClusterInfoStats::default());
        assert_eq!(
            info,
            "cluster_state:fail\r\ncluster_slots_assigned:0\r\ncluster_slots_ok:0\r\n\
             cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:1\r\n\
             cluster_size:0\r\ncluster_current_epoch:0\r\ncluster_my_epoch:0\r\n\
             cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
             total_cluster_links_buffer_limit_exceeded:0\r\n"
        );
    }

    #[test]
    fn broken_maps_render_without_panicking() {
        let mut twin = healthy().failed(&[17400, 17403]);
        // A shard whose members the map does not know, a replica list naming an unknown node,
        // and slots owned by a shard that does not exist.
        twin.map.shards.push(ShardInfo {
            id: ShardId(9),
            primary: NodeId(900),
            replicas: vec![NodeId(901)],
        });
        twin.map.shards[0].replicas.push(NodeId(902));
        twin.map.slots.set(0, Some(ShardId(77)));
        twin.map.slots.set(100, Some(ShardId(9)));
        for myself in [twin.id(17400), twin.id(17403), NodeId(900), NodeId(12345)] {
            assert_renders(&twin.map, myself);
        }
        let info = cluster_info(&twin.map, twin.id(17400), &ClusterInfoStats::default());
        assert!(
            info.contains("\r\ncluster_slots_assigned:16382\r\n"),
            "{info}"
        );
        assert!(info.contains("\r\ncluster_slots_fail:5459\r\n"), "{info}");
        let nodes = cluster_nodes(&twin.map, twin.id(17400), NOW);
        assert!(nodes.contains(" myself,master,fail - 0 "), "{nodes}");
        assert!(nodes.contains(" 6 connected 1-99 101-5460\n"), "{nodes}");
        assert!(!nodes.contains(&NodeId(900).redis_id()), "{nodes}");
    }

    #[test]
    fn every_slot_unowned_fails_the_cluster_and_lists_no_ranges() {
        let mut twin = healthy();
        twin.map.slots = SlotTable::empty();
        let facts = |_: NodeId| NodeFacts::default();
        assert_eq!(slots(&twin, Protocol::Resp2, &facts), "*0\r\n");
        let info = cluster_info(&twin.map, twin.id(17400), &ClusterInfoStats::default());
        assert!(info.contains("\r\ncluster_size:0\r\n"), "{info}");
        let shards = shards(&twin, Protocol::Resp2, &facts);
        assert_eq!(
            shards.matches("$5\r\nslots\r\n*0\r\n").count(),
            3,
            "{shards}"
        );
    }

    /// Raw replies of a real `redis-server` 7.0.15 cluster of six nodes on 127.0.0.1 (masters
    /// 17400-17402, replicas 17403-17405, bus ports +10000, created with
    /// `redis-cli --cluster create ... --cluster-replicas 1`), asked at 17400 unless said.
    mod redis_7_0_15 {
        /// Healthy cluster, asked at 17400: CLUSTER NODES in RESP2.
        pub const OK_NODES_RESP2: &str = "\
$751\r\n\
312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796160913000 1 connected\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796160911000 2 connected\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796160914704 2 connected 5461-10922\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 myself,master - 0 1796160911000 1 connected 0-5460\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master - 0 1796160913698 3 connected 10923-16383\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave e358d10045b8bddb738840fc2143a4d19335941b 0 1796160911000 3 connected\n\
\r\n";

        /// The same in RESP3 (verbatim text).
        pub const OK_NODES_RESP3: &str = "\
=755\r\n\
txt:312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796160917722 1 connected\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796160916717 2 connected\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796160918729 2 connected 5461-10922\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 myself,master - 0 1796160915000 1 connected 0-5460\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master - 0 1796160913698 3 connected 10923-16383\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave e358d10045b8bddb738840fc2143a4d19335941b 0 1796160916000 3 connected\n\
\r\n";

        /// Healthy cluster: CLUSTER SLOTS in RESP2.
        pub const OK_SLOTS_RESP2: &str = "\
*3\r\n\
*4\r\n:0\r\n:5460\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
*0\r\n\
*4\r\n:5461\r\n:10922\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17401\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17404\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n\
*0\r\n\
*4\r\n:10923\r\n:16383\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17402\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17405\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n\
*0\r\n";

        /// The same in RESP3 (the metadata is an empty map).
        pub const OK_SLOTS_RESP3: &str = "\
*3\r\n\
*4\r\n:0\r\n:5460\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
%0\r\n\
*4\r\n:5461\r\n:10922\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17401\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17404\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n\
%0\r\n\
*4\r\n:10923\r\n:16383\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17402\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17405\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n\
%0\r\n";

        /// Healthy cluster: CLUSTER SHARDS in RESP2 (every offset 56).
        pub const OK_SHARDS_RESP2: &str = "\
*3\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n$4\r\nport\r\n\
:17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n$4\r\nport\r\n\
:17404\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n$4\r\nport\r\n\
:17400\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n$4\r\nport\r\n\
:17403\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n$4\r\nport\r\n\
:17402\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n$4\r\nport\r\n\
:17405\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

        /// The same in RESP3.
        pub const OK_SHARDS_RESP3: &str = "\
*3\r\n\
%2\r\n$5\r\nslots\r\n\
*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n\
*2\r\n\
%7\r\n$2\r\nid\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n$4\r\nport\r\n\
:17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%7\r\n$2\r\nid\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n$4\r\nport\r\n\
:17404\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%2\r\n$5\r\nslots\r\n\
*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n\
*2\r\n\
%7\r\n$2\r\nid\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n$4\r\nport\r\n\
:17400\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%7\r\n$2\r\nid\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n$4\r\nport\r\n\
:17403\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%2\r\n$5\r\nslots\r\n\
*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n\
*2\r\n\
%7\r\n$2\r\nid\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n$4\r\nport\r\n\
:17402\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%7\r\n$2\r\nid\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n$4\r\nport\r\n\
:17405\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:56\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

        /// Healthy cluster: CLUSTER INFO in RESP2.
        pub const OK_INFO_RESP2: &str = "\
$510\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n\
cluster_current_epoch:6\r\ncluster_my_epoch:1\r\ncluster_stats_messages_ping_sent:47\r\n\
cluster_stats_messages_pong_sent:44\r\ncluster_stats_messages_sent:91\r\n\
cluster_stats_messages_ping_received:39\r\ncluster_stats_messages_pong_received:47\r\n\
cluster_stats_messages_meet_received:5\r\ncluster_stats_messages_received:91\r\n\
total_cluster_links_buffer_limit_exceeded:0\r\n\r\n";

        /// CLUSTER INFO in RESP3 (verbatim text), a little later.
        pub const OK_INFO_RESP3: &str = "\
=516\r\ntxt:cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:6\r\ncluster_size:3\r\n\
cluster_current_epoch:6\r\ncluster_my_epoch:1\r\ncluster_stats_messages_ping_sent:52\r\n\
cluster_stats_messages_pong_sent:48\r\ncluster_stats_messages_sent:100\r\n\
cluster_stats_messages_ping_received:43\r\ncluster_stats_messages_pong_received:52\r\n\
cluster_stats_messages_meet_received:5\r\ncluster_stats_messages_received:100\r\n\
total_cluster_links_buffer_limit_exceeded:0\r\n\r\n";

        /// CLUSTER MYID at 17400 (the same bytes in RESP3).
        pub const OK_MYID: &str = "\
$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n";

        /// Replica 17405 stopped (SIGSTOP) until marked FAIL: CLUSTER NODES.
        pub const REPLICA_FAILED_NODES: &str = "\
$771\r\n\
312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796160995432 1 connected\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796160995130 2 connected\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796160995533 2 connected 5461-10922\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 myself,master - 0 1796160994000 1 connected 0-5460\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master - 0 1796160995000 3 connected 10923-16383\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave,fail e358d10045b8bddb738840fc2143a4d19335941b 1796160988388 1796160986000 3 disconnected\n\
\r\n";

        /// The same: CLUSTER SLOTS leaves the failed replica out.
        pub const REPLICA_FAILED_SLOTS: &str = "\
*3\r\n\
*4\r\n:0\r\n:5460\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
*0\r\n\
*4\r\n:5461\r\n:10922\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17401\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17404\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n\
*0\r\n\
*3\r\n:10923\r\n:16383\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17402\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n\
*0\r\n";

        /// The same: CLUSTER SHARDS (offsets 168, the failed replica's 154).
        pub const REPLICA_FAILED_SHARDS: &str = "\
*3\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n$4\r\nport\r\n\
:17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n$4\r\nport\r\n\
:17404\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n$4\r\nport\r\n\
:17400\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n$4\r\nport\r\n\
:17403\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n$4\r\nport\r\n\
:17402\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:168\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n$4\r\nport\r\n\
:17405\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:154\r\n$6\r\nhealth\r\n$4\r\nfail\r\n";

        /// Then primary 17402 stopped too: CLUSTER NODES.
        pub const PRIMARY_FAILED_NODES: &str = "\
$785\r\n\
312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796161015561 1 connected\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796161015000 2 connected\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796161015058 2 connected 5461-10922\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 myself,master - 0 1796161014000 1 connected 0-5460\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master,fail - 1796161009625 1796161008823 3 connected 10923-16383\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave,fail e358d10045b8bddb738840fc2143a4d19335941b 1796160988388 1796160986000 3 connected\n\
\r\n";

        /// The same: CLUSTER SLOTS keeps the failed primary.
        pub const PRIMARY_FAILED_SLOTS: &str = "\
*3\r\n\
*4\r\n:0\r\n:5460\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
*0\r\n\
*4\r\n:5461\r\n:10922\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17401\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17404\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n\
*0\r\n\
*3\r\n:10923\r\n:16383\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17402\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n\
*0\r\n";

        /// The same: CLUSTER SHARDS in RESP3 (offsets 196, 17402's 182, 17405's 154).
        pub const PRIMARY_FAILED_SHARDS_RESP3: &str = "\
*3\r\n\
%2\r\n$5\r\nslots\r\n\
*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n\
*2\r\n\
%7\r\n$2\r\nid\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n$4\r\nport\r\n\
:17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:196\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%7\r\n$2\r\nid\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n$4\r\nport\r\n\
:17404\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:196\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%2\r\n$5\r\nslots\r\n\
*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n\
*2\r\n\
%7\r\n$2\r\nid\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n$4\r\nport\r\n\
:17400\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:196\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%7\r\n$2\r\nid\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n$4\r\nport\r\n\
:17403\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:196\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
%2\r\n$5\r\nslots\r\n\
*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n\
*2\r\n\
%7\r\n$2\r\nid\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n$4\r\nport\r\n\
:17402\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:182\r\n$6\r\nhealth\r\n$4\r\nfail\r\n\
%7\r\n$2\r\nid\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n$4\r\nport\r\n\
:17405\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:154\r\n$6\r\nhealth\r\n$4\r\nfail\r\n";

        /// The same: CLUSTER INFO.
        pub const PRIMARY_FAILED_INFO: &str = "\
$597\r\ncluster_state:fail\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:10923\r\n\
cluster_slots_pfail:0\r\ncluster_slots_fail:5461\r\ncluster_known_nodes:6\r\n\
cluster_size:3\r\ncluster_current_epoch:6\r\ncluster_my_epoch:1\r\n\
cluster_stats_messages_ping_sent:282\r\ncluster_stats_messages_pong_sent:247\r\n\
cluster_stats_messages_fail_sent:4\r\ncluster_stats_messages_sent:533\r\n\
cluster_stats_messages_ping_received:242\r\ncluster_stats_messages_pong_received:257\r\n\
cluster_stats_messages_meet_received:5\r\ncluster_stats_messages_fail_received:3\r\n\
cluster_stats_messages_received:507\r\ntotal_cluster_links_buffer_limit_exceeded:0\r\n\r\n";

        /// Both resumed, then 17406 joined (CLUSTER MEET) without slots: CLUSTER NODES.
        pub const SPARE_NODES: &str = "\
$851\r\n\
312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796161039000 1 connected\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796161039606 2 connected\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796161039203 2 connected 5461-10922\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 myself,master - 0 1796161039000 1 connected 0-5460\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master - 0 1796161039404 3 connected 10923-16383\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave e358d10045b8bddb738840fc2143a4d19335941b 0 1796161039606 3 connected\n\
b9248135e3c1e7f7573c8a97d49f1b5924e5b959 127.0.0.1:17406@27406 master - 0 1796161039002 0 connected\n\
\r\n";

        /// The same: CLUSTER SHARDS (offsets 224, 17402's shard 196, 17406's 0).
        pub const SPARE_SHARDS: &str = "\
*4\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n$4\r\nport\r\n\
:17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:224\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n$4\r\nport\r\n\
:17404\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:224\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:0\r\n:5460\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n$4\r\nport\r\n\
:17400\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:224\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n$4\r\nport\r\n\
:17403\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:224\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:10923\r\n:16383\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n$4\r\nport\r\n\
:17402\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:196\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n$4\r\nport\r\n\
:17405\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:196\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*0\r\n$5\r\nnodes\r\n\
*1\r\n\
*14\r\n$2\r\nid\r\n$40\r\nb9248135e3c1e7f7573c8a97d49f1b5924e5b959\r\n$4\r\nport\r\n\
:17406\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

        /// 17406 became a replica of 17402, slot 16383 unassigned: CLUSTER INFO.
        pub const UNOWNED_INFO: &str = "\
$676\r\ncluster_state:fail\r\ncluster_slots_assigned:16383\r\ncluster_slots_ok:16383\r\n\
cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:7\r\ncluster_size:3\r\n\
cluster_current_epoch:7\r\ncluster_my_epoch:1\r\ncluster_stats_messages_ping_sent:731\r\n\
cluster_stats_messages_pong_sent:626\r\ncluster_stats_messages_meet_sent:1\r\n\
cluster_stats_messages_fail_sent:4\r\ncluster_stats_messages_sent:1362\r\n\
cluster_stats_messages_ping_received:621\r\ncluster_stats_messages_pong_received:687\r\n\
cluster_stats_messages_meet_received:5\r\ncluster_stats_messages_fail_received:3\r\n\
cluster_stats_messages_auth-req_received:1\r\ncluster_stats_messages_received:1317\r\n\
total_cluster_links_buffer_limit_exceeded:0\r\n\r\n";

        /// The same: CLUSTER SLOTS.
        pub const UNOWNED_SLOTS: &str = "\
*3\r\n\
*4\r\n:0\r\n:5460\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
*0\r\n\
*4\r\n:5461\r\n:10922\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17401\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17404\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n\
*0\r\n\
*5\r\n:10923\r\n:16382\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17402\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17405\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n\
*0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17406\r\n$40\r\nb9248135e3c1e7f7573c8a97d49f1b5924e5b959\r\n\
*0\r\n";

        /// Then 17400 took slot 16383 (CLUSTER ADDSLOTS): CLUSTER NODES.
        pub const SPLIT_NODES: &str = "\
$895\r\n\
312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796161093471 1 connected\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796161093166 2 connected\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796161093368 2 connected 5461-10922\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 myself,master - 0 1796161092000 1 connected 0-5460 16383\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master - 0 1796161093572 3 connected 10923-16382\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave e358d10045b8bddb738840fc2143a4d19335941b 0 1796161093066 3 connected\n\
b9248135e3c1e7f7573c8a97d49f1b5924e5b959 127.0.0.1:17406@27406 slave e358d10045b8bddb738840fc2143a4d19335941b 0 1796161093066 3 connected\n\
\r\n";

        /// The same: CLUSTER SLOTS in RESP3.
        pub const SPLIT_SLOTS_RESP3: &str = "\
*4\r\n\
*4\r\n:0\r\n:5460\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
%0\r\n\
*4\r\n:5461\r\n:10922\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17401\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17404\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n\
%0\r\n\
*5\r\n:10923\r\n:16382\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17402\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17405\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17406\r\n$40\r\nb9248135e3c1e7f7573c8a97d49f1b5924e5b959\r\n\
%0\r\n\
*4\r\n:16383\r\n:16383\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17400\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n\
%0\r\n\
*4\r\n$9\r\n127.0.0.1\r\n:17403\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n\
%0\r\n";

        /// The same: CLUSTER SHARDS (offsets 308, 17402's shard 266).
        pub const SPLIT_SHARDS: &str = "\
*3\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:5461\r\n:10922\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\n98c42044aa57ef2f1531ca16dae0a0843e2efd65\r\n$4\r\nport\r\n\
:17401\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:308\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\nd43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a\r\n$4\r\nport\r\n\
:17404\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:308\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*4\r\n:0\r\n:5460\r\n:16383\r\n:16383\r\n$5\r\nnodes\r\n\
*2\r\n\
*14\r\n$2\r\nid\r\n$40\r\nfc67bb7a9437763a0fa0f74f9802ef232b5cb92e\r\n$4\r\nport\r\n\
:17400\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:308\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\n312a460a06a49d7d519f930697902a73d6398f2e\r\n$4\r\nport\r\n\
:17403\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:308\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*4\r\n$5\r\nslots\r\n\
*2\r\n:10923\r\n:16382\r\n$5\r\nnodes\r\n\
*3\r\n\
*14\r\n$2\r\nid\r\n$40\r\ne358d10045b8bddb738840fc2143a4d19335941b\r\n$4\r\nport\r\n\
:17402\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$6\r\nmaster\r\n$18\r\nreplication-offset\r\n:266\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\na41a472a6ed4007d16474ddc3f520e2a36d1cfbf\r\n$4\r\nport\r\n\
:17405\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:266\r\n$6\r\nhealth\r\n$6\r\nonline\r\n\
*14\r\n$2\r\nid\r\n$40\r\nb9248135e3c1e7f7573c8a97d49f1b5924e5b959\r\n$4\r\nport\r\n\
:17406\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$8\r\nendpoint\r\n$9\r\n127.0.0.1\r\n$4\r\nrole\r\n\
$7\r\nreplica\r\n$18\r\nreplication-offset\r\n:266\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";

        /// The spare cluster asked at replica 17403: CLUSTER NODES.
        pub const REPLICA_VIEW_NODES: &str = "\
$851\r\n\
d43f7ec56e4fd4e7e09478d4b79c322ea7d4c05a 127.0.0.1:17404@27404 slave 98c42044aa57ef2f1531ca16dae0a0843e2efd65 0 1796161047000 2 connected\n\
312a460a06a49d7d519f930697902a73d6398f2e 127.0.0.1:17403@27403 myself,slave fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 0 1796161046000 1 connected\n\
fc67bb7a9437763a0fa0f74f9802ef232b5cb92e 127.0.0.1:17400@27400 master - 0 1796161047453 1 connected 0-5460\n\
98c42044aa57ef2f1531ca16dae0a0843e2efd65 127.0.0.1:17401@27401 master - 0 1796161047000 2 connected 5461-10922\n\
a41a472a6ed4007d16474ddc3f520e2a36d1cfbf 127.0.0.1:17405@27405 slave e358d10045b8bddb738840fc2143a4d19335941b 0 1796161047050 3 connected\n\
e358d10045b8bddb738840fc2143a4d19335941b 127.0.0.1:17402@27402 master - 0 1796161047453 3 connected 10923-16383\n\
b9248135e3c1e7f7573c8a97d49f1b5924e5b959 127.0.0.1:17406@27406 master - 0 1796161047251 0 connected\n\
\r\n";

        /// The same: CLUSTER INFO.
        pub const REPLICA_VIEW_INFO: &str = "\
$596\r\ncluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\n\
cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:7\r\ncluster_size:3\r\n\
cluster_current_epoch:7\r\ncluster_my_epoch:1\r\ncluster_stats_messages_ping_sent:482\r\n\
cluster_stats_messages_pong_sent:437\r\ncluster_stats_messages_meet_sent:1\r\n\
cluster_stats_messages_sent:920\r\ncluster_stats_messages_ping_received:437\r\n\
cluster_stats_messages_pong_received:438\r\ncluster_stats_messages_fail_received:4\r\n\
cluster_stats_messages_auth-req_received:1\r\ncluster_stats_messages_received:880\r\n\
total_cluster_links_buffer_limit_exceeded:0\r\n\r\n";
    }
}
