//! Cluster membership in one process: nodes found and join a cluster over real loopback
//! sockets, the controller grows to three voters, every node converges on one map, and a
//! removed node learns it was removed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_cluster::bus::{self, NodeStats, Reply, Request};
use shoal_cluster::decide::Settings;
use shoal_cluster::node::{ClusterNode, NodeConfig, Seed};
use shoal_cluster::{BusSecret, ClusterMap, Health, NodeId, NodeInfo, SLOTS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The secret of the clusters these tests start.
fn secret() -> BusSecret {
    BusSecret::new(*b"membership-test-secret-0123456789abcdef").unwrap()
}

async fn start_node(
    controller: bool,
    join: Option<&ClusterNode>,
    replicas: u8,
) -> Arc<ClusterNode> {
    let (config, listener) = node_config(controller, join, replicas, secret()).await;
    tokio::time::timeout(
        Duration::from_secs(15),
        ClusterNode::start(config, listener),
    )
    .await
    .expect("the node takes its place within 15 s")
    .expect("the node starts")
}

/// A node's configuration with `secret`, and its bus listener.
async fn node_config(
    controller: bool,
    join: Option<&ClusterNode>,
    replicas: u8,
    secret: BusSecret,
) -> (NodeConfig, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bus_port = listener.local_addr().unwrap().port();
    let myself = NodeInfo {
        id: NodeId::random(),
        host: "127.0.0.1".into(),
        // Nothing listens on the RESP port in this test: only the bus is exercised.
        port: bus_port.wrapping_add(1),
        bus_port,
        hostname: None,
        zone: None,
        http_port: 0,
        controller,
        health: Health::Ok,
        spare: false,
        new_shard: false,
        incarnation: NodeInfo::fresh_incarnation(),
    };
    let config = NodeConfig {
        myself,
        join: join.map(|n| Seed::Bus(n.myself().bus_addr())),
        seed_access: Default::default(),
        settings: Settings {
            node_timeout_ms: 1000,
            max_voters: 3,
            ..Settings::default()
        },
        replicas,
        join_timeout: None,
        stats: Arc::new(NodeStats::default),
        dir: None,
        credentials: secret.into(),
        bus_tls: None,
    };
    (config, listener)
}

/// Waits until `check` holds for every node's map.
async fn converge(nodes: &[Arc<ClusterNode>], what: &str, check: impl Fn(&ClusterMap) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if nodes.iter().all(|n| check(&n.map())) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never converged: {what}; maps: {:?}",
            nodes.iter().map(|n| n.map().epoch).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays every migration's source: these nodes hold no keys, so as soon as the leader's map
/// moves slots, each migration is reported handed over, until none is left (or `limit`).
async fn hand_everything_over(via: &ClusterNode, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let reply = bus::call_leader(
            &via.myself().bus_addr(),
            &secret().into(),
            &Request::GetMap,
            Duration::from_secs(2),
            4,
        )
        .await;
        if let Ok(Reply::Map(map)) = reply {
            if map.migrations.is_empty() {
                return;
            }
            for m in map.migrations {
                let _ = bus::call_leader(
                    &via.myself().bus_addr(),
                    &secret().into(),
                    &Request::HandedOver(m),
                    Duration::from_secs(2),
                    4,
                )
                .await;
            }
        }
        assert!(Instant::now() < deadline, "the migrations never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_and_converge_on_one_map() {
    let founder = start_node(true, None, 0).await;
    assert_eq!(founder.map().epoch, 1);
    assert_eq!(founder.map().slots.count(founder.map().shards[0].id), SLOTS);
    let mut nodes = vec![founder.clone()];
    for controller in [true, true, false] {
        let node = start_node(controller, Some(&founder), 0).await;
        assert!(node.map().nodes.contains_key(&node.myself().id));
        nodes.push(node);
    }
    hand_everything_over(&founder, Duration::from_secs(10)).await;
    converge(&nodes, "4 shards, 3 voters, same epoch", |m| {
        m.shards.len() == 4 && m.controllers.len() == 3 && m.slots_assigned() == SLOTS
    })
    .await;
    let epochs: Vec<u64> = nodes.iter().map(|n| n.map().epoch).collect();
    let newest = *epochs.iter().max().unwrap();
    converge(&nodes, "same epoch", |m| m.epoch == newest).await;
    let map = founder.map();
    for node in &nodes {
        assert!(
            map.slots
                .count(map.placement_of(node.myself().id).unwrap().0.id)
                > 3000
        );
    }
    // Every node holds a lease from the controller's heartbeat acks.
    let deadline = Instant::now() + Duration::from_secs(5);
    let waited = Instant::now();
    while !nodes.iter().all(|n| n.lease_valid()) {
        assert!(Instant::now() < deadline, "some node never got a lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "every node held a lease {:?} after the map settled",
        waited.elapsed()
    );

    // Status comes from the leader, whichever node is asked.
    let reply = bus::call_leader(
        &nodes[3].myself().bus_addr(),
        &secret().into(),
        &Request::Status,
        Duration::from_secs(2),
        4,
    )
    .await
    .unwrap();
    let Reply::Status(status) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(status.nodes.len(), 4);

    // Removing the non-controller node: its shard goes and it hears it was removed.
    let leaver = nodes.pop().unwrap();
    let mut removed = leaver.removed();
    let reply = bus::call_leader(
        &founder.myself().bus_addr(),
        &secret().into(),
        &Request::RemoveNode(leaver.myself().id),
        Duration::from_secs(5),
        4,
    )
    .await
    .unwrap();
    assert!(matches!(reply, Reply::Removed(_)), "{reply:?}");
    // Its shard drains first (here, at once: there are no keys to send).
    hand_everything_over(&founder, Duration::from_secs(10)).await;
    tokio::time::timeout(Duration::from_secs(5), removed.wait_for(|r| *r))
        .await
        .expect("the removed node learns it within 5 s")
        .unwrap();
    converge(&nodes, "3 shards own every slot", |m| {
        m.shards.len() == 3
            && m.slots_assigned() == SLOTS
            && !m.nodes.contains_key(&leaver.myself().id)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_fill_replicas_first() {
    let founder = start_node(true, None, 1).await;
    let replica = start_node(false, Some(&founder), 1).await;
    let second = start_node(false, Some(&founder), 1).await;
    let map = second.map();
    assert_eq!(map.shards.len(), 2);
    assert_eq!(map.shards[0].replicas, vec![replica.myself().id]);
    assert_eq!(map.shards[1].primary, second.myself().id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_where_nothing_listens_gives_up_after_the_join_timeout() {
    // A port nothing listens on: bound, then released.
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bus_port = listener.local_addr().unwrap().port();
    let config = NodeConfig {
        myself: NodeInfo {
            bus_port,
            incarnation: NodeInfo::fresh_incarnation(),
            ..NodeInfo::local(NodeId::random(), bus_port.wrapping_add(1))
        },
        join: Some(Seed::Resp(nowhere.clone())),
        seed_access: Default::default(),
        settings: Settings::default(),
        replicas: 0,
        join_timeout: Some(Duration::from_millis(300)),
        stats: Arc::new(NodeStats::default),
        dir: None,
        credentials: secret().into(),
        bus_tls: None,
    };
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(5), ClusterNode::start(config, listener))
        .await
        .expect("a join timeout of 300 ms ends the attempt well within 5 s");
    let Err(error) = result else {
        panic!("joined a cluster through {nowhere}, where nothing listens");
    };
    let message = error.to_string();
    assert!(
        message.contains(&format!("could not join the cluster through {nowhere}")),
        "{message}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "gave up after {:?}, before the timeout",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_cannot_join() {
    let founder = start_node(true, None, 0).await;
    let other = BusSecret::new(*b"not-the-membership-test-secret-0123456789").unwrap();
    let (mut config, listener) = node_config(false, Some(&founder), 0, other.clone()).await;
    config.join_timeout = Some(Duration::from_millis(500));
    let error = tokio::time::timeout(
        Duration::from_secs(10),
        ClusterNode::start(config, listener),
    )
    .await
    .expect("the join timeout ends the attempt")
    .err()
    .expect("a node with another secret cannot join");
    let message = error.to_string();
    assert!(
        message.contains("refused this process's cluster secret"),
        "{message}"
    );
    assert_eq!(founder.map().nodes.len(), 1, "the cluster does not list it");
    assert!(founder.bus_auth_failures() >= 1);
    // Nor can it talk to the bus with it.
    let refused = bus::call(
        &founder.myself().bus_addr(),
        &other.into(),
        &Request::GetMap,
        Duration::from_secs(2),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, bus::BusError::Auth { .. }), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_without_the_handshake_do_nothing() {
    let founder = start_node(true, None, 0).await;
    let before = founder.map();
    let addr = founder.myself().bus_addr();
    let fake = NodeInfo {
        bus_port: 1,
        ..NodeInfo::local(NodeId::random(), 2)
    };
    for request in [
        Request::Join(fake),
        Request::RemoveNode(founder.myself().id),
        Request::Status,
    ] {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        bus::write_frame(&mut stream, &request).await.unwrap();
        // The node's hello, then the connection closes: nothing but the hello comes back.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .expect("the node closes the connection")
            .ok();
        assert!(answer.len() <= 40 + 33, "{request:?} got {answer:?}");
        assert!(
            !answer
                .windows(7)
                .any(|w| w == b"Status\"" || w == b"Joined\"")
        );
    }
    // Garbage, and a connection that says nothing (a port probe: not counted).
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(&[0xff; 4096]).await.unwrap();
    drop(stream);
    drop(TcpStream::connect(&addr).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    while founder.bus_auth_failures() < 4 {
        assert!(
            Instant::now() < deadline,
            "{} failures",
            founder.bus_auth_failures()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(founder.bus_auth_failures(), 4);
    assert_eq!(*founder.map(), *before, "the map is unchanged");
    // Members still talk.
    let reply = bus::call(
        &addr,
        &secret().into(),
        &Request::GetMap,
        Duration::from_secs(2),
    )
    .await
    .unwrap();
    assert!(matches!(reply, Reply::Map(map) if map == *before));
}
