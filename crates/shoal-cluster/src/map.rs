//! The cluster map: which nodes exist, how they form shards, and which shard owns each slot.
//!
//! One `ClusterMap` is the whole truth at one epoch. The controller commits every change as a
//! new map with the next epoch; nodes, proxies and clients replace theirs only with a newer one
//! ([`ClusterMap::supersedes`]), so a late or repeated push never rolls anyone back.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::slot::{SLOTS, Slot};

/// A map's version. Every change bumps it by one; 0 is "no map yet".
pub type Epoch = u64;

/// A node's identity: chosen at its first start, and kept in its directory (`--dir`) if it has
/// one, so it comes back as itself after a restart; without one, random per process start (a
/// restarted node joins as a new node). Shown as Redis's 40 hex digits; the first 16 are the number itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A fresh random id (never 0).
    pub fn random() -> NodeId {
        loop {
            let id = rand::random::<u64>();
            if id != 0 {
                return NodeId(id);
            }
        }
    }

    /// The 40-hex-digit form Redis clients expect in `CLUSTER NODES` and `CLUSTER SHARDS`: the
    /// id itself (16 digits) followed by 24 digits derived from it.
    pub(crate) fn redis_id(self) -> String {
        let a = splitmix64(self.0);
        let b = splitmix64(a);
        format!("{:016x}{:016x}{:08x}", self.0, a, b as u32)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redis_id())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A string that is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a node id (16 or 40 hex digits): {0:?}")]
pub struct BadNodeId(pub String);

impl FromStr for NodeId {
    type Err = BadNodeId;

    /// Accepts the 40-digit Redis form or its first 16 digits.
    fn from_str(s: &str) -> Result<NodeId, BadNodeId> {
        let bad = || BadNodeId(s.to_string());
        if !(s.len() == 16 || s.len() == 40) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let id = NodeId(u64::from_str_radix(&s[..16], 16).map_err(|_| bad())?);
        if s.len() == 40 && !id.redis_id().eq_ignore_ascii_case(s) {
            return Err(bad());
        }
        Ok(id)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:016x}", self.0))
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A shard's identity, never reused within a cluster.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether a node answers the controller.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Heartbeats arrive.
    #[default]
    Ok,
    /// No heartbeat for longer than the node timeout.
    Failed,
}

/// One node as the cluster knows it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its identity.
    pub id: NodeId,
    /// The IP address other nodes and clients reach it at: the one it announces
    /// (`--cluster-announce-ip`, else the address it binds), as in Redis Cluster.
    pub host: String,
    /// The RESP port others reach it at (`--cluster-announce-port`, else the one it listens on).
    pub port: u16,
    /// The cluster bus port others reach it at (controller RPCs, heartbeats, map
    /// subscriptions; `--cluster-announce-bus-port`, else the one it listens on).
    pub bus_port: u16,
    /// Its DNS name (`--cluster-announce-hostname`), shown to clients beside its IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Its failure domain (`--zone`): the controller spreads its voters across zones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// HTTP port, 0 if it serves none.
    #[serde(default)]
    pub http_port: u16,
    /// Whether it may be a controller voter (`--controller`).
    #[serde(default)]
    pub controller: bool,
    /// Whether it answers the controller.
    #[serde(default)]
    pub health: Health,
    /// Whether it joined as a spare: it stays out of every shard until one lacks a replica.
    #[serde(default)]
    pub spare: bool,
    /// Whether it joined to found a shard of its own (`--new-shard`), even while a shard
    /// lacks a replica (a node joins to fill such a seat otherwise).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub new_shard: bool,
    /// Which start of its process this is (random per start, see
    /// [`NodeInfo::fresh_incarnation`]): a node restarted with its directory keeps its id but
    /// not its keys, and a new incarnation tells the controller so.
    #[serde(default)]
    pub incarnation: u64,
}

/// How far above its RESP port a node's cluster bus listens unless told otherwise, as in
/// Redis Cluster.
pub const BUS_PORT_OFFSET: u16 = 10_000;

impl NodeInfo {
    /// A healthy node at `127.0.0.1:port` with its bus at `port` + [`BUS_PORT_OFFSET`] (capped at
    /// 65535), no hostname, zone or HTTP port, not a controller, not a spare: a starting point
    /// for tests, changed with struct update syntax.
    pub fn local(id: NodeId, port: u16) -> NodeInfo {
        NodeInfo {
            id,
            host: "127.0.0.1".into(),
            port,
            bus_port: port.saturating_add(BUS_PORT_OFFSET),
            hostname: None,
            zone: None,
            http_port: 0,
            controller: false,
            health: Health::Ok,
            spare: false,
            new_shard: false,
            incarnation: 0,
        }
    }

    /// A random incarnation number for a process that starts now (never 0, the number of a
    /// map written before incarnations existed).
    pub fn fresh_incarnation() -> u64 {
        NodeId::random().0
    }

    /// `host:port` of its RESP listener.
    pub fn resp_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:port` of its cluster bus.
    pub fn bus_addr(&self) -> String {
        format!("{}:{}", self.host, self.bus_port)
    }

    /// Whether it is healthy.
    pub fn is_ok(&self) -> bool {
        self.health == Health::Ok
    }
}

/// One shard: a primary that takes writes and replicas that follow it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Its identity.
    pub id: ShardId,
    /// The node that owns its slots.
    pub primary: NodeId,
    /// The nodes that replicate it.
    #[serde(default)]
    pub replicas: Vec<NodeId>,
}

impl ShardInfo {
    /// Makes `replica` the primary, in the replicas' place; returns the old primary, which
    /// is in no list now (the caller keeps it as a replica or drops it).
    pub(crate) fn promote(&mut self, replica: NodeId) -> NodeId {
        self.replicas.retain(|&r| r != replica);
        std::mem::replace(&mut self.primary, replica)
    }

    /// The primary, then the replicas.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.primary).chain(self.replicas.iter().copied())
    }
}

/// A node's part in a shard.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Owns the shard's slots.
    Primary,
    /// Follows the primary.
    Replica,
}

/// Which shard owns each of the 16384 slots (`None`: no shard yet).
#[derive(Clone, PartialEq, Eq)]
pub struct SlotTable(Box<[Option<ShardId>]>);

impl SlotTable {
    /// Every slot unowned.
    pub fn empty() -> SlotTable {
        SlotTable(vec![None; SLOTS].into_boxed_slice())
    }

    /// Every slot owned by `shard`.
    pub fn all(shard: ShardId) -> SlotTable {
        SlotTable(vec![Some(shard); SLOTS].into_boxed_slice())
    }

    /// The owner of `slot`.
    #[inline]
    pub fn get(&self, slot: Slot) -> Option<ShardId> {
        self.0[slot as usize]
    }

    /// Sets the owner of `slot`.
    pub fn set(&mut self, slot: Slot, shard: Option<ShardId>) {
        self.0[slot as usize] = shard;
    }

    /// Owners slot by slot.
    pub fn iter(&self) -> impl Iterator<Item = Option<ShardId>> + '_ {
        self.0.iter().copied()
    }

    /// Maximal runs of slots with one owner: `(first, last, owner)`, in slot order.
    pub(crate) fn ranges(&self) -> Vec<(Slot, Slot, Option<ShardId>)> {
        let mut out: Vec<(Slot, Slot, Option<ShardId>)> = Vec::new();
        for (slot, owner) in self.0.iter().enumerate() {
            match out.last_mut() {
                Some((_, last, o)) if *o == *owner => *last = slot as Slot,
                _ => out.push((slot as Slot, slot as Slot, *owner)),
            }
        }
        out
    }

    /// The ranges `shard` owns, in slot order.
    pub fn ranges_of(&self, shard: ShardId) -> Vec<(Slot, Slot)> {
        self.ranges()
            .into_iter()
            .filter(|r| r.2 == Some(shard))
            .map(|(a, b, _)| (a, b))
            .collect()
    }

    /// How many slots `shard` owns.
    pub fn count(&self, shard: ShardId) -> usize {
        self.0.iter().filter(|o| **o == Some(shard)).count()
    }
}

impl fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

/// Serialized as owned ranges `[first, last, shard]`, which keeps a map a few hundred bytes.
impl Serialize for SlotTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ranges: Vec<(Slot, Slot, u32)> = self
            .ranges()
            .into_iter()
            .filter_map(|(a, b, o)| o.map(|o| (a, b, o.0)))
            .collect();
        ranges.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SlotTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SlotTable, D::Error> {
        let ranges = Vec::<(Slot, Slot, u32)>::deserialize(d)?;
        let mut table = SlotTable::empty();
        for (first, last, shard) in ranges {
            if first > last || last as usize >= SLOTS {
                return Err(serde::de::Error::custom(format!(
                    "bad slot range {first}-{last}"
                )));
            }
            for slot in first..=last {
                table.set(slot, Some(ShardId(shard)));
            }
        }
        Ok(table)
    }
}

/// The whole cluster at one epoch.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ClusterMap {
    /// Version; see [`ClusterMap::supersedes`].
    pub epoch: Epoch,
    /// Every node, by id.
    #[serde(with = "nodes_as_list")]
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// Every shard, by id order.
    pub shards: Vec<ShardInfo>,
    /// The owner of every slot.
    pub slots: SlotTable,
    /// Replicas each shard should have (`--replicas` of the cluster).
    #[serde(default)]
    pub replicas: u8,
    /// The controller's voters.
    #[serde(default)]
    pub controllers: Vec<NodeId>,
    /// When the controller committed this map (Unix ms), for measuring propagation.
    #[serde(default)]
    pub committed_at_ms: u64,
    /// The next shard id to hand out.
    #[serde(default)]
    pub next_shard: u32,
    /// When the nodes joined, and the nodes that left: who could grant peer leases by an
    /// older map.
    #[serde(default)]
    pub(crate) members: MemberHistory,
    /// The cluster's ACL users, as `ACL SETUSER`, `ACL DELUSER` and `ACL LOAD` on any node
    /// left them: each user's name and its rules as `ACL LIST` shows them (passwords as their
    /// SHA-256). `None` until the first such change: until then every node keeps the users
    /// of its own configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<BTreeMap<String, String>>,
    /// Slots on their way to another shard with their keys: each stays its `from` shard's
    /// (in `slots`) until that shard's primary has handed it over, which moves it to `to`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migrations: Vec<Migration>,
    /// Shards being emptied before they leave (`cluster remove-node` of a primary without
    /// replicas): placement gives them nothing, their slots migrate away, and once they own
    /// none they leave with their nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<ShardId>,
}

/// Slots to move, in groups: inclusive ranges of slots, and a node of the shard they go to
/// (`cluster move-slots`, `CLUSTER MIGRATESLOTS`).
pub type SlotGroups = Vec<(Vec<(crate::slot::Slot, crate::slot::Slot)>, NodeId)>;

/// Slots moving from one shard to another with their keys: the source's primary streams them
/// to the target's (a snapshot of the slots, then their changes), then pauses their writes
/// until the target has everything and asks the controller to hand them over.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Migration {
    /// The shard that owns the slots now and sends them.
    pub from: ShardId,
    /// The shard they go to.
    pub to: ShardId,
    /// The slots still to move, as inclusive ranges in slot order.
    pub slots: Vec<(Slot, Slot)>,
}

impl Migration {
    /// How many slots are still to move.
    pub fn count(&self) -> usize {
        self.slots
            .iter()
            .map(|(a, b)| usize::from(b.saturating_sub(*a)) + 1)
            .sum()
    }

    /// Whether `slot` is among them.
    pub fn contains(&self, slot: Slot) -> bool {
        self.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot))
    }
}

/// How many departed nodes a map remembers.
pub(crate) const DEPARTED_KEPT: usize = 32;

/// The membership history a map carries (see `electorate`): who could grant a peer lease
/// by an older map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberHistory {
    /// The epoch of the first map each current node was in (a node absent here has been in
    /// every map since the first).
    #[serde(default)]
    pub(crate) joined: Vec<(NodeId, Epoch)>,
    /// Nodes that left, oldest departure first.
    #[serde(default)]
    pub(crate) departed: Vec<Departed>,
    /// The oldest epoch whose node set this history still describes in full (departed
    /// entries older than [`DEPARTED_KEPT`] are dropped).
    #[serde(default)]
    pub(crate) complete_since: Epoch,
}

/// A node no longer in the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Departed {
    pub(crate) node: NodeInfo,
    /// The first map it was in.
    pub(crate) joined: Epoch,
    /// The first map it was not in.
    pub(crate) left: Epoch,
}

impl MemberHistory {
    /// Records the changes from `before` to `after` (the map of the next epoch, which carries
    /// this history).
    pub(crate) fn record(&mut self, before: &ClusterMap, after: &ClusterMap) {
        let epoch = after.epoch;
        for id in after.nodes.keys() {
            if !before.nodes.contains_key(id) {
                self.joined.retain(|(n, _)| n != id);
                self.joined.push((*id, epoch));
            }
        }
        for (id, node) in &before.nodes {
            if after.nodes.contains_key(id) {
                continue;
            }
            let joined = self.joined_at(*id);
            self.joined.retain(|(n, _)| n != id);
            self.departed.push(Departed {
                node: node.clone(),
                joined,
                left: epoch,
            });
        }
        while self.departed.len() > DEPARTED_KEPT {
            let dropped = self.departed.remove(0);
            self.complete_since = self.complete_since.max(dropped.left);
        }
    }

    /// The epoch of the first map `id` was in (0: every map since the first).
    pub(crate) fn joined_at(&self, id: NodeId) -> Epoch {
        self.joined
            .iter()
            .find(|(n, _)| *n == id)
            .map_or(0, |(_, e)| *e)
    }
}

mod nodes_as_list {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        nodes: &BTreeMap<NodeId, NodeInfo>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(nodes.values())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<NodeId, NodeInfo>, D::Error> {
        Ok(Vec::<NodeInfo>::deserialize(d)?
            .into_iter()
            .map(|n| (n.id, n))
            .collect())
    }
}

impl Default for ClusterMap {
    fn default() -> ClusterMap {
        ClusterMap::empty()
    }
}

impl ClusterMap {
    /// The empty map of epoch 0 that everyone holds before the first one arrives.
    pub fn empty() -> ClusterMap {
        ClusterMap {
            epoch: 0,
            nodes: BTreeMap::new(),
            shards: Vec::new(),
            slots: SlotTable::empty(),
            replicas: 0,
            controllers: Vec::new(),
            committed_at_ms: 0,
            next_shard: 0,
            members: MemberHistory::default(),
            users: None,
            migrations: Vec::new(),
            draining: Vec::new(),
        }
    }

    /// Whether this map should replace `current`: only a strictly newer epoch does.
    pub fn supersedes(&self, current: &ClusterMap) -> bool {
        self.epoch > current.epoch
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(&id)
    }

    /// The shard `id`.
    pub fn shard(&self, id: ShardId) -> Option<&ShardInfo> {
        self.shards.iter().find(|s| s.id == id)
    }

    /// The shard that owns `slot`.
    pub(crate) fn shard_of_slot(&self, slot: Slot) -> Option<&ShardInfo> {
        self.slots.get(slot).and_then(|id| self.shard(id))
    }

    /// The primary node of the shard that owns `slot`.
    pub fn primary_of_slot(&self, slot: Slot) -> Option<&NodeInfo> {
        self.shard_of_slot(slot).and_then(|s| self.node(s.primary))
    }

    /// The shard `node` belongs to and its role there.
    pub fn placement_of(&self, node: NodeId) -> Option<(&ShardInfo, Role)> {
        self.shards.iter().find_map(|s| {
            if s.primary == node {
                Some((s, Role::Primary))
            } else if s.replicas.contains(&node) {
                Some((s, Role::Replica))
            } else {
                None
            }
        })
    }

    /// Nodes in no shard.
    pub fn spares(&self) -> impl Iterator<Item = &NodeInfo> + '_ {
        self.nodes
            .values()
            .filter(|n| self.placement_of(n.id).is_none())
    }

    /// How many slots have an owner.
    pub fn slots_assigned(&self) -> usize {
        self.slots.iter().filter(Option::is_some).count()
    }

    /// Checks the map's internal consistency: every shard member and controller is a known
    /// node, no node is in two shards, every slot owner is a known shard. Returns what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for shard in &self.shards {
            for member in shard.members() {
                if !self.nodes.contains_key(&member) {
                    return Err(format!("shard {} lists unknown node {member:?}", shard.id));
                }
                if !seen.insert(member) {
                    return Err(format!("node {member:?} is in two shards"));
                }
            }
            if shard.id.0 >= self.next_shard {
                return Err(format!("shard {} is not below next_shard", shard.id));
            }
        }
        for c in &self.controllers {
            if !self.nodes.contains_key(c) {
                return Err(format!("controller {c:?} is not a known node"));
            }
        }
        for (first, _, owner) in self.slots.ranges() {
            if let Some(owner) = owner
                && self.shard(owner).is_none()
            {
                return Err(format!("slot {first} is owned by unknown shard {owner}"));
            }
        }
        for m in &self.migrations {
            if self.shard(m.from).is_none() || self.shard(m.to).is_none() || m.from == m.to {
                return Err(format!(
                    "migration {} -> {} names no such pair",
                    m.from, m.to
                ));
            }
            for &(first, last) in &m.slots {
                if first > last || (first..=last).any(|s| self.slots.get(s) != Some(m.from)) {
                    return Err(format!(
                        "migration {} -> {} moves {first}-{last}, not all {}'s",
                        m.from, m.to, m.from
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A fixed 64-bit mixer (SplitMix64's finaliser): the same on every node and every run, which
/// derived ids and ring positions need.
#[inline]
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64, port: u16) -> NodeInfo {
        NodeInfo::local(NodeId(id), port)
    }

    fn two_shard_map() -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = 7;
        for (id, port) in [(1, 7000), (2, 7001), (3, 7002)] {
            map.nodes.insert(NodeId(id), node(id, port));
        }
        map.shards = vec![
            ShardInfo {
                id: ShardId(0),
                primary: NodeId(1),
                replicas: vec![NodeId(3)],
            },
            ShardInfo {
                id: ShardId(1),
                primary: NodeId(2),
                replicas: vec![],
            },
        ];
        map.next_shard = 2;
        map.slots = SlotTable::all(ShardId(0));
        for slot in 8192..16384 {
            map.slots.set(slot, Some(ShardId(1)));
        }
        map
    }

    #[test]
    fn node_ids_round_trip_in_both_forms() {
        let id = NodeId(0x0123_4567_89ab_cdef);
        let long = id.redis_id();
        assert_eq!(long.len(), 40);
        assert_eq!(&long[..16], "0123456789abcdef");
        assert_eq!(long.parse::<NodeId>(), Ok(id));
        assert_eq!("0123456789abcdef".parse::<NodeId>(), Ok(id));
        assert!("0123456789abcdeg".parse::<NodeId>().is_err());
        let mut forged = long.clone();
        forged.replace_range(39..40, if long.ends_with('0') { "1" } else { "0" });
        assert!(
            forged.parse::<NodeId>().is_err(),
            "the tail must match the id"
        );
    }

    #[test]
    fn maps_round_trip_through_json_compactly() {
        let map = two_shard_map();
        let json = serde_json::to_string(&map).unwrap();
        assert!(json.len() < 1000, "{} bytes: {json}", json.len());
        assert!(json.contains("[[0,8191,0],[8192,16383,1]]"), "{json}");
        let back: ClusterMap = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
        back.validate().unwrap();
    }

    #[test]
    fn hostnames_and_zones_are_optional_in_json() {
        // A node entry written before hostnames and zones existed still reads.
        let old = r#"{"id":"0000000000000001","host":"10.0.0.1","port":7000,"bus_port":17000}"#;
        let node: NodeInfo = serde_json::from_str(old).unwrap();
        assert_eq!((node.hostname, node.zone), (None, None));
        // And a node without them writes no such fields (older readers never see them).
        let plain = serde_json::to_string(&NodeInfo::local(NodeId(1), 7000)).unwrap();
        assert!(
            !plain.contains("hostname") && !plain.contains("zone"),
            "{plain}"
        );
        let named = NodeInfo {
            hostname: Some("cache-1.example".into()),
            zone: Some("eu-1a".into()),
            ..NodeInfo::local(NodeId(1), 7000)
        };
        let json = serde_json::to_string(&named).unwrap();
        assert_eq!(serde_json::from_str::<NodeInfo>(&json).unwrap(), named);
    }

    #[test]
    fn bad_slot_ranges_are_refused() {
        let mut json = serde_json::to_value(two_shard_map()).unwrap();
        json["slots"] = serde_json::json!([[10, 5, 0]]);
        assert!(serde_json::from_value::<ClusterMap>(json.clone()).is_err());
        json["slots"] = serde_json::json!([[0, 16384, 0]]);
        assert!(serde_json::from_value::<ClusterMap>(json).is_err());
    }

    #[test]
    fn only_a_newer_epoch_supersedes() {
        let current = two_shard_map();
        let mut older = current.clone();
        older.epoch -= 1;
        let mut newer = current.clone();
        newer.epoch += 1;
        assert!(!older.supersedes(&current));
        assert!(!current.clone().supersedes(&current));
        assert!(newer.supersedes(&current));
    }

    #[test]
    fn lookups_follow_the_slot_table() {
        let map = two_shard_map();
        assert_eq!(map.primary_of_slot(0).unwrap().port, 7000);
        assert_eq!(map.primary_of_slot(16383).unwrap().port, 7001);
        assert_eq!(
            map.placement_of(NodeId(3)).map(|(s, r)| (s.id, r)),
            Some((ShardId(0), Role::Replica))
        );
        assert_eq!(map.slots.ranges_of(ShardId(1)), vec![(8192, 16383)]);
        assert_eq!(map.slots.count(ShardId(0)), 8192);
        assert_eq!(map.spares().count(), 0);
    }

    #[test]
    fn validation_finds_dangling_references() {
        let mut map = two_shard_map();
        map.shards[1].replicas.push(NodeId(9));
        assert!(map.validate().is_err());
        let mut map = two_shard_map();
        map.shards[1].replicas.push(NodeId(1));
        assert!(map.validate().unwrap_err().contains("two shards"));
        let mut map = two_shard_map();
        map.slots.set(5, Some(ShardId(4)));
        assert!(map.validate().is_err());
    }
}
