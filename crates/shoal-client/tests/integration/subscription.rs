//! The map from the cluster bus: discovery through a seed's `CLUSTER NODES`, pushes, epochs
//! that only move forward, resubscription after silence, one-shot fetches after `-MOVED`.

use std::time::Duration;

use shoal_client::{Client, Error};
use shoal_cluster::key_slot;

use crate::common::*;

/// A seed that answers `CLUSTER NODES` with one node: RESP at `resp`, bus at `bus_port`.
async fn seed(resp: std::net::SocketAddr, bus_port: u16) -> FakeServer {
    FakeServer::start(move |call| match call.name().as_str() {
        "CLUSTER" => bulk(
            format!(
                "0123456789abcdef0123456789abcdef01234567 127.0.0.1:{}@{bus_port} myself,master - 0 0 1 connected 0-16383\n",
                resp.port()
            )
            .as_bytes(),
        ),
        _ => raw("-ERR this is only a seed\r\n"),
    })
    .await
}

async fn next_epoch(client: &Client, epoch: u64) {
    until_map(client, &format!("epoch {epoch}"), WAIT, |map| {
        map.epoch >= epoch
    })
    .await;
    assert_eq!(client.map().epoch, epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_maps_reroute_and_epochs_only_move_forward() {
    let a = Node::start();
    let b = Node::start();
    // Node A's bus is bus1, node B's is bus2.
    let bus1 = FakeBus::start(shoal_client::ClusterMap::empty()).await;
    let bus2 = FakeBus::start(shoal_client::ClusterMap::empty()).await;
    let on = |epoch, owner: std::net::SocketAddr| {
        let mut m = map_with_buses(
            epoch,
            &[
                (a.addr, bus1.addr.port(), 0..0),
                (b.addr, bus2.addr.port(), 0..0),
            ],
        );
        let shard = if owner == a.addr { 0 } else { 1 };
        for slot in 0..16384 {
            m.slots.set(slot, Some(shoal_cluster::ShardId(shard)));
        }
        m
    };
    *bus1.current.lock() = on(5, a.addr);
    let seed = seed(a.addr, bus1.addr.port()).await;

    let mut config = config();
    config.seeds = vec![seed.addr.to_string()];
    config.subscription_silence = Duration::from_millis(300);
    let client = Client::connect(config).await.unwrap();
    assert_eq!(client.map().epoch, 5);
    assert_eq!(
        seed.log(),
        vec!["CLUSTER"],
        "the seed was asked for its nodes"
    );
    until("the subscription", || bus1.requests().len() == 2).await;
    assert_eq!(bus1.requests(), vec!["GetMap", "Subscribe(5)"]);

    client.set("k1", "1", None).await.unwrap();
    assert_eq!(a.keys(), vec!["k1"]);

    // An older map is ignored; the newer one after it reroutes.
    let mut watcher = client.subscribe_map();
    bus1.push(Push::Map(Box::new(on(3, b.addr))));
    bus1.push(Push::Map(Box::new(on(6, b.addr))));
    next_epoch(&client, 6).await;
    assert_eq!(watcher.borrow_and_update().epoch, 6);
    let stats = client.stats();
    assert_eq!(stats.stale_maps, 1, "epoch 3 was refused");
    assert_eq!(stats.map_refreshes, 2, "epochs 5 and 6");
    client.set("k2", "2", None).await.unwrap();
    assert_eq!(b.keys(), vec!["k2"]);
    assert_eq!(a.keys(), vec!["k1"]);

    // Bus 1 goes quiet: the client moves to the other node of the map (bus 2), which has
    // epoch 7, all slots back on A.
    *bus2.current.lock() = on(7, a.addr);
    bus1.push(Push::Silence);
    next_epoch(&client, 7).await;
    until("the new subscription", || bus2.requests().len() == 2).await;
    assert_eq!(bus2.requests(), vec!["GetMap", "Subscribe(7)"]);
    client.set("k3", "3", None).await.unwrap();
    let mut on_a = a.keys();
    on_a.sort();
    assert_eq!(on_a, vec!["k1", "k3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_triggers_a_one_shot_map_fetch() {
    let real = Node::start();
    // The fake node owns every slot at epoch 1 but redirects everything to the real node.
    let real_addr = real.addr;
    let bus = FakeBus::start(shoal_client::ClusterMap::empty()).await;
    let bus_port = bus.addr.port();
    let fake = FakeServer::start(move |call| match call.name().as_str() {
        "CLUSTER" => bulk(
            format!(
                "0123456789abcdef0123456789abcdef01234567 127.0.0.1:1@{bus_port} myself,master - 0 0 1 connected\n"
            )
            .as_bytes(),
        ),
        _ => raw(&format!(
            "-MOVED {} {real_addr}\r\n",
            key_slot(call.arg(1))
        )),
    })
    .await;
    *bus.current.lock() = map_with_buses(1, &[(fake.addr, bus_port, ALL)]);

    let mut config = config();
    config.seeds = vec![fake.addr.to_string()];
    let client = Client::connect(config).await.unwrap();
    assert_eq!(client.map().epoch, 1);
    until("the subscription", || bus.requests().len() == 2).await;

    // The controller has moved everything to the real node by now.
    *bus.current.lock() = map_with_buses(2, &[(real_addr, bus_port, ALL)]);
    client.set("k", "v", None).await.unwrap();
    assert_eq!(client.stats().redirects, 1);
    next_epoch(&client, 2).await;
    assert_eq!(bus.requests()[2], "GetMap", "refreshed after MOVED");
    client.set("k2", "v", None).await.unwrap();
    assert_eq!(client.stats().redirects, 1, "the new map routes directly");
    let mut keys = real.keys();
    keys.sort();
    assert_eq!(keys, vec!["k", "k2"]);
}

#[tokio::test]
async fn no_map_is_an_error_after_the_map_timeout() {
    // A seed that is not a cluster node, and no bus at port + 10000.
    let fake = FakeServer::start(|_| raw("-ERR unknown command\r\n")).await;
    let mut config = config();
    config.seeds = vec![fake.addr.to_string()];
    config.map_timeout = Duration::from_millis(200);
    assert!(matches!(
        Client::connect(config).await,
        Err(Error::NoMap(_))
    ));
    assert!(matches!(
        Client::connect(shoal_client::ClientConfig::default()).await,
        Err(Error::Config(_))
    ));
    // Without the cluster secret, the bus is closed to it: it says so at once.
    let no_secret = shoal_client::ClientConfig::new([fake.addr.to_string()]);
    match Client::connect(no_secret).await {
        Err(Error::Config(why)) => assert!(why.contains("cluster secret"), "{why}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_client_with_another_secret_gets_no_map() {
    let node = Node::start_with(|c| c.cluster_enabled = true);
    let other = shoal_client::BusSecret::new(*b"not-the-cluster-s-secret-0123456789").unwrap();
    let mut wrong = config().with_cluster_secret(other);
    wrong.seeds = vec![node.addr.to_string()];
    wrong.map_timeout = Duration::from_millis(500);
    assert!(matches!(Client::connect(wrong).await, Err(Error::NoMap(_))));
    // With the cluster's, it does.
    let mut config = config();
    config.seeds = vec![node.addr.to_string()];
    let client = Client::connect(config)
        .await
        .expect("the right secret gets the map");
    assert!(client.map().epoch > 0);
}
