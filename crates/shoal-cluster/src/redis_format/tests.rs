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
            let node = NodeInfo::local(twin.id(port), port);
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
const VIEW_FROM_PRIMARY_WITH_SPARE: [u16; 7] = [17403, 17404, 17401, 17400, 17402, 17405, 17406];
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
/// `redis-cli --cluster create ... --cluster-replicas 1`), asked at 17400 unless said. Each is
/// a file in `fixtures/`, byte for byte as the server sent it (see `fixtures/README.md`).
mod redis_7_0_15 {
    /// Healthy cluster, asked at 17400: CLUSTER NODES in RESP2.
    pub(super) const OK_NODES_RESP2: &str = include_str!("fixtures/ok_nodes_resp2.resp");

    /// The same in RESP3 (verbatim text).
    pub(super) const OK_NODES_RESP3: &str = include_str!("fixtures/ok_nodes_resp3.resp");

    /// Healthy cluster: CLUSTER SLOTS in RESP2.
    pub(super) const OK_SLOTS_RESP2: &str = include_str!("fixtures/ok_slots_resp2.resp");

    /// The same in RESP3 (the metadata is an empty map).
    pub(super) const OK_SLOTS_RESP3: &str = include_str!("fixtures/ok_slots_resp3.resp");

    /// Healthy cluster: CLUSTER SHARDS in RESP2 (every offset 56).
    pub(super) const OK_SHARDS_RESP2: &str = include_str!("fixtures/ok_shards_resp2.resp");

    /// The same in RESP3.
    pub(super) const OK_SHARDS_RESP3: &str = include_str!("fixtures/ok_shards_resp3.resp");

    /// Healthy cluster: CLUSTER INFO in RESP2.
    pub(super) const OK_INFO_RESP2: &str = include_str!("fixtures/ok_info_resp2.resp");

    /// CLUSTER INFO in RESP3 (verbatim text), a little later.
    pub(super) const OK_INFO_RESP3: &str = include_str!("fixtures/ok_info_resp3.resp");

    /// CLUSTER MYID at 17400 (the same bytes in RESP3).
    pub(super) const OK_MYID: &str = include_str!("fixtures/ok_myid.resp");

    /// Replica 17405 stopped (SIGSTOP) until marked FAIL: CLUSTER NODES.
    pub(super) const REPLICA_FAILED_NODES: &str =
        include_str!("fixtures/replica_failed_nodes.resp");

    /// The same: CLUSTER SLOTS leaves the failed replica out.
    pub(super) const REPLICA_FAILED_SLOTS: &str =
        include_str!("fixtures/replica_failed_slots.resp");

    /// The same: CLUSTER SHARDS (offsets 168, the failed replica's 154).
    pub(super) const REPLICA_FAILED_SHARDS: &str =
        include_str!("fixtures/replica_failed_shards.resp");

    /// Then primary 17402 stopped too: CLUSTER NODES.
    pub(super) const PRIMARY_FAILED_NODES: &str =
        include_str!("fixtures/primary_failed_nodes.resp");

    /// The same: CLUSTER SLOTS keeps the failed primary.
    pub(super) const PRIMARY_FAILED_SLOTS: &str =
        include_str!("fixtures/primary_failed_slots.resp");

    /// The same: CLUSTER SHARDS in RESP3 (offsets 196, 17402's 182, 17405's 154).
    pub(super) const PRIMARY_FAILED_SHARDS_RESP3: &str =
        include_str!("fixtures/primary_failed_shards_resp3.resp");

    /// The same: CLUSTER INFO.
    pub(super) const PRIMARY_FAILED_INFO: &str = include_str!("fixtures/primary_failed_info.resp");

    /// Both resumed, then 17406 joined (CLUSTER MEET) without slots: CLUSTER NODES.
    pub(super) const SPARE_NODES: &str = include_str!("fixtures/spare_nodes.resp");

    /// The same: CLUSTER SHARDS (offsets 224, 17402's shard 196, 17406's 0).
    pub(super) const SPARE_SHARDS: &str = include_str!("fixtures/spare_shards.resp");

    /// 17406 became a replica of 17402, slot 16383 unassigned: CLUSTER INFO.
    pub(super) const UNOWNED_INFO: &str = include_str!("fixtures/unowned_info.resp");

    /// The same: CLUSTER SLOTS.
    pub(super) const UNOWNED_SLOTS: &str = include_str!("fixtures/unowned_slots.resp");

    /// Then 17400 took slot 16383 (CLUSTER ADDSLOTS): CLUSTER NODES.
    pub(super) const SPLIT_NODES: &str = include_str!("fixtures/split_nodes.resp");

    /// The same: CLUSTER SLOTS in RESP3.
    pub(super) const SPLIT_SLOTS_RESP3: &str = include_str!("fixtures/split_slots_resp3.resp");

    /// The same: CLUSTER SHARDS (offsets 308, 17402's shard 266).
    pub(super) const SPLIT_SHARDS: &str = include_str!("fixtures/split_shards.resp");

    /// The spare cluster asked at replica 17403: CLUSTER NODES.
    pub(super) const REPLICA_VIEW_NODES: &str = include_str!("fixtures/replica_view_nodes.resp");

    /// The same: CLUSTER INFO.
    pub(super) const REPLICA_VIEW_INFO: &str = include_str!("fixtures/replica_view_info.resp");
}

/// A one-node `redis-server` 7.0.15 cluster started with `--cluster-announce-ip 10.1.2.3
/// --cluster-announce-port 7100 --cluster-announce-bus-port 17100 --cluster-announce-hostname
/// cache-1.example`, owning every slot: its CLUSTER SHARDS and CLUSTER SLOTS in RESP3, and its
/// CLUSTER NODES line up to the flags.
mod announced {
    pub(super) const ID: &str = "e1cc8a2e4854cf886525bf52a1e80f4ae2786701";
    pub(super) const SHARDS_RESP3: &str = "*1\r\n%2\r\n$5\r\nslots\r\n*2\r\n:0\r\n:16383\r\n\
        $5\r\nnodes\r\n*1\r\n%8\r\n$2\r\nid\r\n$40\r\ne1cc8a2e4854cf886525bf52a1e80f4ae2786701\r\n\
        $4\r\nport\r\n:7100\r\n$2\r\nip\r\n$8\r\n10.1.2.3\r\n$8\r\nendpoint\r\n$8\r\n10.1.2.3\r\n\
        $8\r\nhostname\r\n$15\r\ncache-1.example\r\n$4\r\nrole\r\n$6\r\nmaster\r\n\
        $18\r\nreplication-offset\r\n:0\r\n$6\r\nhealth\r\n$6\r\nonline\r\n";
    pub(super) const SLOTS_RESP3: &str = "*1\r\n*3\r\n:0\r\n:16383\r\n*4\r\n$8\r\n10.1.2.3\r\n\
        :7100\r\n$40\r\ne1cc8a2e4854cf886525bf52a1e80f4ae2786701\r\n\
        %1\r\n$8\r\nhostname\r\n$15\r\ncache-1.example\r\n";
    pub(super) const NODES_LINE_START: &str = "e1cc8a2e4854cf886525bf52a1e80f4ae2786701 10.1.2.3:7100@17100,cache-1.example myself,master - ";
}

#[test]
fn an_announced_address_and_hostname_match_redis() {
    let id = NodeId(1);
    let node = NodeInfo {
        host: "10.1.2.3".into(),
        port: 7100,
        bus_port: 17100,
        hostname: Some("cache-1.example".into()),
        ..NodeInfo::local(id, 7000)
    };
    let mut map = ClusterMap::empty();
    map.epoch = 1;
    map.nodes.insert(id, node);
    map.shards.push(ShardInfo {
        id: ShardId(0),
        primary: id,
        replicas: vec![],
    });
    map.next_shard = 1;
    map.slots = SlotTable::all(ShardId(0));
    let ours = |redis: &str| redis.replace(announced::ID, &id.redis_id());
    let facts = |_| NodeFacts::default();
    assert_eq!(
        render(Protocol::Resp3, |r| cluster_shards(r, &map, &facts)),
        ours(announced::SHARDS_RESP3)
    );
    assert_eq!(
        render(Protocol::Resp3, |r| cluster_slots(r, &map, &facts)),
        ours(announced::SLOTS_RESP3)
    );
    let nodes = cluster_nodes(&map, id, NOW);
    assert!(
        nodes.starts_with(&ours(announced::NODES_LINE_START)),
        "{nodes}"
    );
    // MOVED and every client's table use the announced address.
    assert_eq!(map.primary_of_slot(0).unwrap().resp_addr(), "10.1.2.3:7100");
}
