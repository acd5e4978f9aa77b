//! What a person is shown of a cluster: the document a node's HTTP port answers to
//! `GET /cluster` (and its `/dashboard` page draws), built from the controller leader's
//! [`ClusterStatus`], or from a node's own [`NodeStats`] when it is not in a cluster. Also the
//! pieces `shoal cluster status` prints the same way: the cluster's state word, its hottest
//! keys, and keys as printable text.
//!
//! Pure: no I/O, so every field is tested from a map and reports.

use serde::Serialize;

use crate::bus::{ClusterStatus, NodeStats, NodeStatus};
use crate::map::{ClusterMap, Epoch, Health, NodeId, Role, ShardId};
use crate::slot::{SLOTS, Slot};

/// A node whose last heartbeat reached the leader longer ago than this (ms), or never since
/// it leads, is `late` (heartbeats come every 200 ms at most).
pub const LATE_AFTER_MS: u64 = 1000;

/// How many of the cluster's hottest keys a view lists.
pub const HOT_KEYS_SHOWN: usize = 10;

/// A cluster (or a node alone) as a dashboard shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterView {
    /// `cluster`, or `standalone` for a node that is in none (it is then the only node).
    pub mode: &'static str,
    /// The map's epoch (0 alone).
    pub epoch: Epoch,
    /// `ok`, `degraded` or `fail` (see [`state`]).
    pub state: &'static str,
    /// The controller's leader, if one answered.
    pub leader: Option<NodeId>,
    /// Why the view lacks the controller's reports, if it does (the map is then the asking
    /// node's own, and the nodes' numbers are missing).
    pub problem: Option<String>,
    /// Every shard, by id.
    pub shards: Vec<ShardView>,
    /// Every node: shard by shard (primary first), then the spares.
    pub nodes: Vec<NodeView>,
    /// The cluster's hottest keys, hottest first (see [`hot_keys`]).
    pub hot_keys: Vec<HotKeyView>,
}

/// One shard of a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ShardView {
    /// Its id.
    pub id: ShardId,
    /// Its primary.
    pub primary: NodeId,
    /// Its replicas.
    pub replicas: Vec<NodeId>,
    /// How many slots it owns.
    pub slot_count: usize,
    /// The slot ranges it owns, `[first, last]`, in slot order.
    pub slots: Vec<(Slot, Slot)>,
}

/// One node of a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeView {
    /// Its id (none for a node alone).
    pub id: Option<NodeId>,
    /// Its RESP address as it announces it (`host:port`).
    pub address: String,
    /// Its HTTP port (0: none).
    pub http_port: u16,
    /// `primary`, `replica` or `spare`.
    pub role: &'static str,
    /// Its shard, if it is in one.
    pub shard: Option<ShardId>,
    /// `ok`, `late` (no heartbeat for [`LATE_AFTER_MS`]) or `failed` (as the map says).
    pub health: &'static str,
    /// How long ago its last heartbeat reached the leader (ms), if one has since it leads.
    pub last_heartbeat_ms: Option<u64>,
    /// Whether it is a controller voter.
    pub voter: bool,
    /// Whether it is the controller's leader.
    pub leader: bool,
    /// The epoch of the map it reported holding.
    pub epoch: Epoch,
    /// Whether numbers below come from a report (else they are zeros).
    pub reported: bool,
    /// `used_memory`.
    pub used_memory: u64,
    /// `maxmemory` (0: none).
    pub maxmemory: u64,
    /// Keys it holds.
    pub keys: u64,
    /// Commands per second, recently.
    pub ops_per_sec: u64,
    /// Connected clients.
    pub clients: u64,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// Hits over reads since it started (none before its first read).
    pub hit_ratio: Option<f64>,
    /// A replica's lag behind its primary.
    pub replication: Option<LagView>,
}

/// How far a replica is behind its primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LagView {
    /// Whether it streams from its primary (not loading a snapshot, not cut off).
    pub in_sync: bool,
    /// Bytes of the stream it has not acknowledged, as its primary last reported.
    pub lag_bytes: Option<u64>,
    /// Milliseconds since it last acknowledged, as its primary last reported.
    pub ack_age_ms: Option<u64>,
}

/// One hot key of a [`ClusterView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HotKeyView {
    /// The key as printable text ([`printable`]).
    pub key: String,
    /// The node that reported it (none for a node alone).
    pub node: Option<NodeId>,
    /// That node's RESP address.
    pub address: String,
    /// That node's shard, if it is in one.
    pub shard: Option<ShardId>,
    /// Requests on it there, estimated from the node's sample.
    pub requests: u64,
    /// Their network bytes, estimated.
    pub net_bytes: u64,
    /// Whether the controller publishes it as hot: its reads are spread over its shard.
    pub spread: bool,
}

impl ClusterView {
    /// The view of the controller leader's `status`.
    pub fn of_status(status: &ClusterStatus) -> ClusterView {
        let mut view = ClusterView::of_map(&status.map, Some(status.leader), &status.nodes, None);
        for hot in &mut view.hot_keys {
            hot.spread = status
                .hot_keys
                .keys
                .iter()
                .any(|k| Some(k.shard) == hot.shard && printable(&k.key) == hot.key);
        }
        view
    }

    /// The view of `map` with the controller's `leader` (if one answered) and the nodes'
    /// last reports to it; `problem` says why there are none, if so.
    pub fn of_map(
        map: &ClusterMap,
        leader: Option<NodeId>,
        reports: &[NodeStatus],
        problem: Option<String>,
    ) -> ClusterView {
        let report = |id: NodeId| reports.iter().find(|r| r.id == id);
        let shards = map
            .shards
            .iter()
            .map(|s| ShardView {
                id: s.id,
                primary: s.primary,
                replicas: s.replicas.clone(),
                slot_count: map.slots.count(s.id),
                slots: map.slots.ranges_of(s.id),
            })
            .collect();
        let in_order = map
            .shards
            .iter()
            .flat_map(|s| s.members())
            .chain(map.spares().map(|n| n.id));
        let nodes = in_order
            .filter_map(|id| node_view(map, leader, id, report(id), reports))
            .collect();
        ClusterView {
            mode: "cluster",
            epoch: map.epoch,
            state: state(map, leader),
            leader,
            problem,
            shards,
            nodes,
            hot_keys: hot_keys(map, reports),
        }
    }

    /// The view of a node in no cluster: itself alone, at `address` (HTTP on `http_port`), a
    /// replica if it follows a primary (`REPLICAOF`), with its own `stats`.
    pub fn standalone(
        address: String,
        http_port: u16,
        replica: bool,
        stats: &NodeStats,
    ) -> ClusterView {
        let mut node = NodeView {
            id: None,
            address,
            http_port,
            role: if replica { "replica" } else { "primary" },
            shard: None,
            health: "ok",
            last_heartbeat_ms: None,
            voter: false,
            leader: false,
            epoch: 0,
            reported: true,
            ..numbers(stats)
        };
        node.replication = replica.then_some(LagView {
            in_sync: stats.replication.in_sync,
            lag_bytes: None,
            ack_age_ms: None,
        });
        let hot_keys = stats
            .hot_keys
            .iter()
            .take(HOT_KEYS_SHOWN)
            .map(|h| HotKeyView {
                key: printable(&h.key),
                node: None,
                address: node.address.clone(),
                shard: None,
                requests: h.requests,
                net_bytes: h.net_bytes,
                spread: false,
            })
            .collect();
        ClusterView {
            mode: "standalone",
            epoch: 0,
            state: "ok",
            leader: None,
            problem: None,
            shards: Vec::new(),
            nodes: vec![node],
            hot_keys,
        }
    }
}

/// A node's numbers from its `stats` (identity fields left for the caller).
fn numbers(stats: &NodeStats) -> NodeView {
    let reads = stats.keyspace_hits + stats.keyspace_misses;
    NodeView {
        id: None,
        address: String::new(),
        http_port: 0,
        role: "",
        shard: None,
        health: "",
        last_heartbeat_ms: None,
        voter: false,
        leader: false,
        epoch: 0,
        reported: false,
        used_memory: stats.used_memory,
        maxmemory: stats.maxmemory,
        keys: stats.keys,
        ops_per_sec: stats.ops_per_sec,
        clients: stats.clients,
        uptime_seconds: stats.uptime_seconds,
        hit_ratio: (reads > 0).then(|| stats.keyspace_hits as f64 / reads as f64),
        replication: None,
    }
}

/// Node `id` of `map` as a view, with its last report (`status`) and its primary's (from
/// `reports`) for a replica's lag.
fn node_view(
    map: &ClusterMap,
    leader: Option<NodeId>,
    id: NodeId,
    status: Option<&NodeStatus>,
    reports: &[NodeStatus],
) -> Option<NodeView> {
    let node = map.node(id)?;
    let placement = map.placement_of(id);
    let last_heartbeat_ms = status.and_then(|s| s.last_heartbeat_ms);
    let health = match node.health {
        Health::Failed => "failed",
        Health::Ok if last_heartbeat_ms.is_some_and(|ms| ms <= LATE_AFTER_MS) => "ok",
        Health::Ok => "late",
    };
    let replication = match placement {
        Some((shard, Role::Replica)) => {
            let primary = reports.iter().find(|r| r.id == shard.primary);
            let lag = primary.and_then(|p| {
                let addr = node.resp_addr();
                p.stats.replicas.iter().find(|r| r.addr == addr)
            });
            Some(LagView {
                in_sync: status.is_some_and(|s| s.stats.replication.in_sync),
                lag_bytes: lag.map(|l| l.lag_bytes),
                ack_age_ms: lag.map(|l| l.ack_age_ms),
            })
        }
        _ => None,
    };
    let base = status.map_or_else(|| numbers(&NodeStats::default()), |s| numbers(&s.stats));
    Some(NodeView {
        id: Some(id),
        address: node.resp_addr(),
        http_port: node.http_port,
        role: match placement {
            Some((_, Role::Primary)) => "primary",
            Some((_, Role::Replica)) => "replica",
            None => "spare",
        },
        shard: placement.map(|(s, _)| s.id),
        health,
        last_heartbeat_ms,
        voter: map.controllers.contains(&id),
        leader: leader == Some(id),
        epoch: status.map_or(0, |s| s.epoch),
        reported: status.is_some(),
        replication,
        ..base
    })
}

/// The state of a cluster in one word: `ok` when every slot is owned and every node healthy,
/// `degraded` when every slot is owned but a node failed (or no controller leader answers:
/// the map's health is then as of its last commit), else `fail`.
pub fn state(map: &ClusterMap, leader: Option<NodeId>) -> &'static str {
    let healthy = map
        .nodes
        .values()
        .filter(|n| n.health == Health::Ok)
        .count();
    let covered = map.slots_assigned() == SLOTS;
    if leader.is_none() {
        "degraded"
    } else if covered && healthy == map.nodes.len() {
        "ok"
    } else if covered {
        "degraded"
    } else {
        "fail"
    }
}

/// The cluster's hottest keys from the nodes' `reports`: each node's reported keys with the
/// node, its address and its shard in `map`, hottest first by estimated requests, at most
/// [`HOT_KEYS_SHOWN`]. A key read on several nodes (a primary and its replicas) is listed for
/// each: every node serves its own share.
pub fn hot_keys(map: &ClusterMap, reports: &[NodeStatus]) -> Vec<HotKeyView> {
    let mut keys: Vec<HotKeyView> = reports
        .iter()
        .flat_map(|report| {
            let address = map
                .node(report.id)
                .map_or_else(|| format!("{:?}", report.id), |n| n.resp_addr());
            let shard = map.placement_of(report.id).map(|(s, _)| s.id);
            report.stats.hot_keys.iter().map(move |h| HotKeyView {
                key: printable(&h.key),
                node: Some(report.id),
                address: address.clone(),
                shard,
                requests: h.requests,
                net_bytes: h.net_bytes,
                spread: false,
            })
        })
        .collect();
    keys.sort_by(|a, b| {
        b.requests
            .cmp(&a.requests)
            .then_with(|| a.key.cmp(&b.key))
            .then_with(|| a.address.cmp(&b.address))
    });
    keys.truncate(HOT_KEYS_SHOWN);
    keys
}

/// A binary key as text: printable ASCII kept, `\` as `\\`, any other byte as `\xNN` (as
/// `redis-cli` shows keys), so that no byte of it can be read as markup or a control code.
pub fn printable(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{HotKeyReport, ReplicaLag, ReplicationReport};
    use crate::map::{NodeInfo, ShardInfo, SlotTable};

    /// Shard 0: node 1 (primary) and 2; shard 1: node 3 alone, owning slots 100 to 199;
    /// node 4 a spare. Node 3 failed; node 2 is the leader.
    fn map() -> ClusterMap {
        let mut map = ClusterMap::empty();
        for id in 1..=4u64 {
            let node = NodeInfo {
                http_port: 8000 + id as u16,
                ..NodeInfo::local(NodeId(id), 7000 + id as u16)
            };
            map.nodes.insert(node.id, node);
        }
        map.nodes.get_mut(&NodeId(3)).unwrap().health = Health::Failed;
        map.epoch = 9;
        map.shards = vec![
            ShardInfo {
                id: ShardId(0),
                primary: NodeId(1),
                replicas: vec![NodeId(2)],
            },
            ShardInfo {
                id: ShardId(1),
                primary: NodeId(3),
                replicas: Vec::new(),
            },
        ];
        map.slots = SlotTable::all(ShardId(0));
        for slot in 100..200 {
            map.slots.set(slot, Some(ShardId(1)));
        }
        map.controllers = vec![NodeId(1), NodeId(2)];
        map
    }

    fn report(id: u64, heartbeat_ms: Option<u64>, stats: NodeStats) -> NodeStatus {
        NodeStatus {
            id: NodeId(id),
            placement: None,
            last_heartbeat_ms: heartbeat_ms,
            epoch: 9,
            stats,
        }
    }

    fn hot(key: &[u8], requests: u64) -> HotKeyReport {
        HotKeyReport {
            key: key.to_vec(),
            requests,
            net_bytes: requests * 10,
        }
    }

    #[test]
    fn a_status_becomes_shards_nodes_health_lag_and_hot_keys() {
        let primary = NodeStats {
            keys: 10,
            used_memory: 1000,
            maxmemory: 4000,
            ops_per_sec: 50,
            keyspace_hits: 3,
            keyspace_misses: 1,
            replicas: vec![ReplicaLag {
                addr: "127.0.0.1:7002".into(),
                lag_bytes: 42,
                ack_age_ms: 300,
            }],
            hot_keys: vec![hot(b"user:1", 640), hot(b"bin\xff<b>", 64)],
            ..NodeStats::default()
        };
        let replica = NodeStats {
            replication: ReplicationReport {
                in_sync: true,
                ..ReplicationReport::default()
            },
            hot_keys: vec![hot(b"user:1", 128)],
            ..NodeStats::default()
        };
        let status = ClusterStatus {
            map: map(),
            leader: NodeId(2),
            nodes: vec![
                report(1, Some(100), primary),
                report(2, Some(2500), replica),
                report(4, None, NodeStats::default()),
            ],
            hot_keys: crate::hot_keys::HotKeySet::new(vec![crate::hot_keys::HotKey {
                key: b"user:1".to_vec(),
                shard: ShardId(0),
                requests: 768,
                share_permille: 300,
            }]),
        };
        let view = ClusterView::of_status(&status);
        assert_eq!(
            (view.mode, view.epoch, view.state),
            ("cluster", 9, "degraded")
        );
        assert_eq!(view.leader, Some(NodeId(2)));
        assert_eq!(view.shards.len(), 2);
        assert_eq!(view.shards[1].slots, vec![(100, 199)]);
        assert_eq!(view.shards[1].slot_count, 100);
        assert_eq!(
            view.shards[0].slots,
            vec![(0, 99), (200, SLOTS as Slot - 1)]
        );
        let ids: Vec<_> = view.nodes.iter().map(|n| n.id.unwrap().0).collect();
        assert_eq!(ids, [1, 2, 3, 4], "shard by shard, then the spares");
        let [one, two, three, four] = &view.nodes[..] else {
            panic!("{view:?}")
        };
        assert_eq!(
            (one.role, one.shard, one.health, one.voter, one.leader),
            ("primary", Some(ShardId(0)), "ok", true, false)
        );
        assert_eq!(
            (one.address.as_str(), one.http_port),
            ("127.0.0.1:7001", 8001)
        );
        assert_eq!((one.keys, one.used_memory, one.maxmemory), (10, 1000, 4000));
        assert_eq!(one.hit_ratio, Some(0.75));
        assert_eq!(one.replication, None);
        assert_eq!(
            (two.role, two.health, two.leader),
            ("replica", "late", true)
        );
        assert_eq!(
            two.replication,
            Some(LagView {
                in_sync: true,
                lag_bytes: Some(42),
                ack_age_ms: Some(300)
            })
        );
        assert_eq!(two.hit_ratio, None, "no reads yet");
        assert_eq!((three.health, three.reported), ("failed", false));
        assert_eq!(
            (four.role, four.shard, four.health),
            ("spare", None, "late")
        );

        let keys: Vec<_> = view
            .hot_keys
            .iter()
            .map(|h| (h.key.as_str(), h.address.as_str(), h.requests))
            .collect();
        assert_eq!(
            keys,
            [
                ("user:1", "127.0.0.1:7001", 640),
                ("user:1", "127.0.0.1:7002", 128),
                ("bin\\xff<b>", "127.0.0.1:7001", 64),
            ]
        );
        assert_eq!(view.hot_keys[0].shard, Some(ShardId(0)));
        assert_eq!(view.hot_keys[0].node, Some(NodeId(1)));
        assert_eq!(view.hot_keys[0].net_bytes, 6400);
        // The published key's reads are spread; the other's are not.
        let spread: Vec<bool> = view.hot_keys.iter().map(|h| h.spread).collect();
        assert_eq!(spread, [true, true, false]);
    }

    #[test]
    fn the_json_has_the_documented_fields() {
        let status = ClusterStatus {
            map: map(),
            leader: NodeId(1),
            nodes: vec![report(1, Some(5), NodeStats::default())],
            hot_keys: Default::default(),
        };
        let json = serde_json::to_value(ClusterView::of_status(&status)).unwrap();
        assert_eq!(json["leader"], "0000000000000001");
        assert_eq!(json["shards"][1]["slots"], serde_json::json!([[100, 199]]));
        let node = &json["nodes"][0];
        for field in [
            "id",
            "address",
            "http_port",
            "role",
            "shard",
            "health",
            "last_heartbeat_ms",
            "voter",
            "leader",
            "epoch",
            "used_memory",
            "maxmemory",
            "keys",
            "ops_per_sec",
            "hit_ratio",
            "replication",
        ] {
            assert!(node.get(field).is_some(), "{field} in {node}");
        }
        assert_eq!(
            json["nodes"][1]["replication"]["lag_bytes"],
            serde_json::Value::Null
        );
    }

    #[test]
    fn a_node_alone_is_the_only_node_of_its_view() {
        let stats = NodeStats {
            keys: 3,
            keyspace_hits: 1,
            keyspace_misses: 1,
            hot_keys: vec![hot(b"k", 64)],
            ..NodeStats::default()
        };
        let view = ClusterView::standalone("127.0.0.1:6379".into(), 8080, false, &stats);
        assert_eq!(
            (view.mode, view.state, view.leader),
            ("standalone", "ok", None)
        );
        assert!(view.shards.is_empty());
        assert_eq!(view.nodes.len(), 1);
        let node = &view.nodes[0];
        assert_eq!(
            (node.address.as_str(), node.role, node.keys, node.hit_ratio),
            ("127.0.0.1:6379", "primary", 3, Some(0.5))
        );
        assert_eq!(view.hot_keys[0].key, "k");
        assert_eq!(view.hot_keys[0].address, "127.0.0.1:6379");
        assert_eq!(view.hot_keys[0].node, None, "a node alone has no id");
        let replica = ClusterView::standalone("h:1".into(), 0, true, &stats);
        assert_eq!(replica.nodes[0].role, "replica");
        assert!(replica.nodes[0].replication.is_some());
    }

    #[test]
    fn without_a_leader_the_map_is_degraded_and_says_why() {
        let view = ClusterView::of_map(&map(), None, &[], Some("no leader".into()));
        assert_eq!(view.state, "degraded");
        assert_eq!(view.problem.as_deref(), Some("no leader"));
        assert!(view.nodes.iter().all(|n| !n.reported));
        assert!(view.hot_keys.is_empty());
    }

    #[test]
    fn the_state_word_follows_slots_and_health() {
        let mut map = map();
        assert_eq!(state(&map, Some(NodeId(1))), "degraded");
        map.nodes.get_mut(&NodeId(3)).unwrap().health = Health::Ok;
        assert_eq!(state(&map, Some(NodeId(1))), "ok");
        map.slots.set(5, None);
        assert_eq!(state(&map, Some(NodeId(1))), "fail");
    }

    #[test]
    fn only_printable_ascii_stays_as_it_is() {
        assert_eq!(printable(b"user:1 <a>&\"'"), "user:1 <a>&\"'");
        assert_eq!(printable(b"a\\b\x00\xff\n"), "a\\\\b\\x00\\xff\\x0a");
    }

    #[test]
    fn hot_keys_are_the_hottest_few_of_every_node() {
        let many: Vec<HotKeyReport> = (0..8).map(|i| hot(format!("k{i}").as_bytes(), i)).collect();
        let reports = vec![
            report(
                1,
                Some(1),
                NodeStats {
                    hot_keys: many.clone(),
                    ..NodeStats::default()
                },
            ),
            report(
                3,
                Some(1),
                NodeStats {
                    hot_keys: many,
                    ..NodeStats::default()
                },
            ),
        ];
        let keys = hot_keys(&map(), &reports);
        assert_eq!(keys.len(), HOT_KEYS_SHOWN);
        assert_eq!((keys[0].key.as_str(), keys[0].requests), ("k7", 7));
        assert_eq!(keys[1].shard, Some(ShardId(1)), "ties by key, then address");
        assert!(keys.windows(2).all(|w| w[0].requests >= w[1].requests));
    }
}
