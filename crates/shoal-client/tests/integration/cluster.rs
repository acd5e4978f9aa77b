//! End to end against a real three-node cluster started in-process: the map comes from the
//! nodes' bus (found through a seed's `CLUSTER NODES`), and commands land where the nodes
//! themselves say the slots live.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use shoal_client::Client;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_cluster_end_to_end() {
    let started = Instant::now();
    let (nodes, client) = three_shards().await;
    let founder = &nodes[0];

    let keys: Vec<String> = (0..1000).map(|i| format!("key:{i}")).collect();
    for result in join_all(keys.iter().map(|k| client.set(k, k, None))).await {
        result.unwrap();
    }
    for (k, got) in keys
        .iter()
        .zip(join_all(keys.iter().map(|k| client.get(k))).await)
    {
        assert_eq!(got.unwrap().as_deref(), Some(k.as_bytes()));
    }
    let mut total = 0;
    for node in &nodes {
        let held = node.keys();
        assert!(!held.is_empty(), "every shard got some keys");
        total += held.len();
    }
    assert_eq!(total, 1000, "each key is on one node");
    let stats = client.stats();
    assert_eq!((stats.errors, stats.redirects), (0, 0), "{stats:?}");

    // Unrouted, a node answers for a slot it does not own with Redis's redirection.
    let map = client.map();
    let slot = shoal_cluster::key_slot(b"key:0");
    let owner = map.primary_of_slot(slot).unwrap().resp_addr();
    let other = map
        .nodes
        .values()
        .map(|n| n.resp_addr())
        .find(|a| *a != owner)
        .unwrap();
    match client.command_on(&other, &["GET", "key:0"]).await.unwrap() {
        shoal_client::Value::Error(line) => {
            assert_eq!(
                String::from_utf8_lossy(&line),
                format!("MOVED {slot} {owner}")
            );
        }
        reply => panic!("{reply:?}"),
    }

    // A client with a wrong map (everything on the founder) is put right by redirections.
    let wrong = map_with_buses(1, &[(founder.addr, 0, ALL)]);
    let stale = Client::with_map(wrong, crate::common::config())
        .await
        .unwrap();
    for (k, got) in keys
        .iter()
        .zip(join_all(keys.iter().map(|k| stale.get(k))).await)
    {
        assert_eq!(got.unwrap().as_deref(), Some(k.as_bytes()));
    }
    let stats = stale.stats();
    assert_eq!(stats.errors, 0);
    assert!(stats.redirects > 0, "{stats:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

/// A sharded counter on a real three-shard cluster: concurrent increments from many tasks are
/// all counted (none lost), they land on several shards, and deleting it removes every part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharded_counter_spreads_its_increments_and_loses_none() {
    let (nodes, client) = three_shards().await;
    let views = client.sharded_counter("page:views", 8).unwrap();
    assert_eq!(views.get().await.unwrap(), 0, "no part exists yet");
    let tasks = (0..20).map(|_| {
        let views = views.clone();
        async move {
            for _ in 0..50 {
                views.incr_by(1).await.unwrap();
            }
            views.incr_by(-1).await.unwrap();
        }
    });
    join_all(tasks).await;
    assert_eq!(views.get().await.unwrap(), 20 * 49);
    // The parts sit on more than one node.
    let holders = nodes
        .iter()
        .filter(|node| node.keys().iter().any(|k| k.starts_with("page:views#")))
        .count();
    assert!(holders >= 2, "the parts are on {holders} node(s)");
    assert!(views.delete().await.unwrap() >= 2);
    assert_eq!(views.get().await.unwrap(), 0);
    assert!(client.sharded_counter("x", 0).is_err());
}
