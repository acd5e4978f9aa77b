//! Pub/Sub on a cluster of real `shoal server` processes (started by shoal-testkit), as Redis
//! Cluster has it: `PUBLISH` on one node reaches subscribers on every node, `SPUBLISH` reaches
//! the subscribers of the shard channel on its shard's nodes (replicas included), and a shard
//! channel is subscribed to on its own shard only (`-MOVED` elsewhere), and its subscriptions
//! end (`sunsubscribe`) when its slot moves to another shard.

use std::future::Future;
use std::time::Duration;

use shoal_testkit::{ClusterOptions, TestCluster};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Runs `body` alone (after any other test of this file) and within [`TEST_LIMIT`].
async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// A synchronous connection to `addr` that waits at most a few seconds for a reply.
fn connect(addr: &str) -> redis::Connection {
    let client = redis::Client::open(format!("redis://{addr}/")).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    con
}

/// The next message a subscribed connection reads: its kind, channel and payload.
fn next_message(con: &mut redis::Connection) -> (String, String, String) {
    let value = con.recv_response().expect("a message within 5 s");
    let items: Vec<String> = redis::from_redis_value(value).expect("a message");
    assert_eq!(items.len(), 3, "{items:?}");
    (items[0].clone(), items[1].clone(), items[2].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_every_node_and_spublish_its_shard() {
    run_test("publish_reaches_every_node_and_spublish_its_shard", async {
        let options = ClusterOptions {
            http: false,
            ..ClusterOptions::default()
        };
        let cluster = TestCluster::start(SHOAL, 2, 1, options)
            .await
            .expect("the cluster starts");
        let shards = cluster.shards().await.unwrap();
        let addr = |index: usize| cluster.node(index).resp_addr();
        let addrs: Vec<String> = (0..cluster.nodes().len()).map(addr).collect();
        // The shard of channel "orders" (by its slot, as a key's): its primary is where
        // SSUBSCRIBE elsewhere is redirected.
        let mut probe = connect(&addrs[0]);
        let moved_or_ok: redis::RedisResult<redis::Value> = redis::cmd("SPUBLISH")
            .arg("orders")
            .arg("probe")
            .query(&mut probe);
        let owner = match moved_or_ok {
            Ok(_) => addrs[0].clone(),
            Err(e) => e
                .redirect_node()
                .map(|(addr, _)| addr.to_string())
                .unwrap_or_else(|| panic!("SPUBLISH answered {e}")),
        };
        let home = shards
            .iter()
            .find(|s| addr(s.primary) == owner)
            .expect("the channel's shard");
        let other = shards.iter().find(|s| s.shard != home.shard).unwrap();
        let replica = addr(home.replicas[0]);
        let outsider = addr(other.primary);

        let outsider_index = other.primary;
        let victim = home.replicas[0];
        tokio::task::spawn_blocking(move || {
            // A subscriber on every node for PUBLISH.
            let mut subscribers: Vec<redis::Connection> =
                addrs.iter().map(|a| connect(a)).collect();
            for con in &mut subscribers {
                let _: redis::Value = redis::cmd("SUBSCRIBE").arg("news").query(con).unwrap();
            }
            // Shard-channel subscribers on the channel's replica and primary.
            let mut on_replica = connect(&replica);
            let _: redis::Value = redis::cmd("SSUBSCRIBE")
                .arg("orders")
                .query(&mut on_replica)
                .unwrap();
            let mut on_primary = connect(&owner);
            let _: redis::Value = redis::cmd("SSUBSCRIBE")
                .arg("orders")
                .query(&mut on_primary)
                .unwrap();
            // Another shard's node redirects the shard channel.
            let mut elsewhere = connect(&outsider);
            let refused: redis::RedisResult<redis::Value> =
                redis::cmd("SSUBSCRIBE").arg("orders").query(&mut elsewhere);
            let error = refused.expect_err("another shard's node redirects");
            assert_eq!(
                error.redirect_node().map(|(a, _)| a.to_string()),
                Some(owner.clone())
            );

            // PUBLISH on one node: its own subscriber counts, every node's receives.
            let mut publisher = connect(&outsider);
            let local: i64 = redis::cmd("PUBLISH")
                .arg("news")
                .arg("hello")
                .query(&mut publisher)
                .unwrap();
            assert_eq!(
                local, 1,
                "PUBLISH counts the node's own subscribers, as Redis Cluster"
            );
            for con in &mut subscribers {
                assert_eq!(
                    next_message(con),
                    ("message".into(), "news".into(), "hello".into())
                );
            }
            // SPUBLISH on the shard's primary reaches its replica's subscriber too.
            let mut shard_publisher = connect(&owner);
            let local: i64 = redis::cmd("SPUBLISH")
                .arg("orders")
                .arg("o-1")
                .query(&mut shard_publisher)
                .unwrap();
            assert_eq!(local, 1);
            for con in [&mut on_primary, &mut on_replica] {
                assert_eq!(
                    next_message(con),
                    ("smessage".into(), "orders".into(), "o-1".into())
                );
            }
            // And SPUBLISH on the replica reaches the primary's subscriber.
            let mut replica_publisher = connect(&replica);
            let _: i64 = redis::cmd("SPUBLISH")
                .arg("orders")
                .arg("o-2")
                .query(&mut replica_publisher)
                .unwrap();
            for con in [&mut on_primary, &mut on_replica] {
                assert_eq!(
                    next_message(con),
                    ("smessage".into(), "orders".into(), "o-2".into())
                );
            }
        })
        .await
        .unwrap();

        // Nothing was dropped; then a peer dies, and what is published for it is counted as
        // dropped (fire-and-forget, as Redis Cluster), not queued without bound.
        let publisher = cluster.node(outsider_index);
        let dropped = |info: shoal_testkit::Info| info.u64("shoal_publications_dropped");
        assert_eq!(dropped(publisher.info("cluster").await.unwrap()), Some(0));
        cluster.node(victim).kill().unwrap();
        let mut conn = publisher.connect().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            conn.call(&["PUBLISH", "news", "to-a-dead-peer"])
                .await
                .unwrap();
            if dropped(publisher.info("cluster").await.unwrap()).unwrap_or(0) > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing counted as dropped"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_channel_whose_slot_moves_ends_its_subscriptions() {
    run_test(
        "a_shard_channel_whose_slot_moves_ends_its_subscriptions",
        async {
            let mut cluster = TestCluster::start(SHOAL, 3, 0, ClusterOptions::default())
                .await
                .expect("the cluster starts");
            let before = cluster.status().await.unwrap().map;
            let owner_addr = |map: &shoal_cluster::ClusterMap, channel: &str| {
                let slot = shoal_cluster::key_slot(channel.as_bytes());
                map.primary_of_slot(slot).expect("an owner").resp_addr()
            };
            let channels: Vec<String> = (0..48).map(|i| format!("feed:{i}")).collect();
            // Each primary's subscriber takes the shard channels of its slots.
            let mut subscribers: Vec<(String, redis::Connection, Vec<String>)> = Vec::new();
            for addr in cluster.resp_addrs() {
                let mine: Vec<String> = channels
                    .iter()
                    .filter(|c| owner_addr(&before, c) == addr)
                    .cloned()
                    .collect();
                let mut con = connect(&addr);
                for channel in &mine {
                    let _: redis::Value = redis::cmd("SSUBSCRIBE")
                        .arg(channel)
                        .query(&mut con)
                        .expect("subscribes");
                }
                subscribers.push((addr, con, mine));
            }

            cluster.add_node(false).await.expect("a fourth node joins");
            let after = cluster.status().await.unwrap().map;
            let moved: Vec<&String> = channels
                .iter()
                .filter(|c| owner_addr(&before, c) != owner_addr(&after, c))
                .collect();
            assert!(!moved.is_empty(), "no channel's slot moved");

            for (addr, con, mine) in &mut subscribers {
                let mut expected: Vec<&String> =
                    mine.iter().filter(|c| moved.contains(c)).collect();
                let mut left = mine.len();
                while !expected.is_empty() {
                    let (kind, channel, count) = next_message(con);
                    assert_eq!(kind, "sunsubscribe", "{addr}: {channel}");
                    let at = expected
                        .iter()
                        .position(|c| **c == channel)
                        .unwrap_or_else(|| panic!("{addr}: {channel} ended but did not move"));
                    expected.remove(at);
                    left -= 1;
                    assert_eq!(count, left.to_string(), "{addr}: the count after {channel}");
                }
            }
            // A moved channel is subscribed to where its slot went, and SPUBLISH reaches it.
            let channel = moved[0].as_str();
            let mut subscriber = connect(&owner_addr(&after, channel));
            let _: redis::Value = redis::cmd("SSUBSCRIBE")
                .arg(channel)
                .query(&mut subscriber)
                .expect("subscribes on the new owner");
            let mut publisher = connect(&owner_addr(&after, channel));
            let received: i64 = redis::cmd("SPUBLISH")
                .arg(channel)
                .arg("hello")
                .query(&mut publisher)
                .unwrap();
            assert_eq!(received, 1);
            assert_eq!(
                next_message(&mut subscriber),
                ("smessage".into(), channel.to_string(), "hello".into())
            );
        },
    )
    .await;
}
