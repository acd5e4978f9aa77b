//! `read_from`: reads go to the primary, a healthy replica, or any member of the shard, over
//! connections that sent `READONLY`; writes always go to the primary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shoal_client::{Client, ReadFrom};
use shoal_cluster::{Health, NodeId, key_slot};

use crate::common::*;

/// A fake node that answers `GET` with its own name, `SET` with `OK`, and `READONLY` as
/// `readonly` says.
async fn fake(name: &'static str, readonly: &'static str) -> FakeServer {
    FakeServer::start(move |call| match call.name().as_str() {
        "GET" => bulk(name.as_bytes()),
        "SET" => raw("+OK\r\n"),
        "READONLY" => raw(readonly),
        _ => raw("-ERR unexpected\r\n"),
    })
    .await
}

/// One shard: `primary`, then `replicas` (the last one failed), owning every slot.
fn shard_map(primary: &FakeServer, replicas: &[&FakeServer]) -> shoal_client::ClusterMap {
    let mut map = map(1, &[(primary.addr, ALL)]);
    let mut ids = Vec::new();
    for (i, replica) in replicas.iter().enumerate() {
        let id = i as u64 + 2;
        let mut node = node_info(id, replica.addr, 0);
        if i + 1 == replicas.len() {
            node.health = Health::Failed;
        }
        map.nodes.insert(NodeId(id), node);
        ids.push(NodeId(id));
    }
    map.shards[0].replicas = ids;
    map
}

/// Who answered `count` reads.
async fn readers(client: &Client, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for i in 0..count {
        let value = client.get(format!("key:{i}")).await.unwrap().unwrap();
        seen.push(String::from_utf8(value.to_vec()).unwrap());
    }
    seen
}

fn count(log: &[String], name: &str) -> usize {
    log.iter().filter(|c| *c == name).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_where_read_from_says_and_writes_to_the_primary() {
    let primary = fake("primary", "+OK\r\n").await;
    // A node that refuses READONLY (not in cluster mode) is still read from.
    let replica = fake(
        "replica",
        "-ERR This instance has cluster support disabled\r\n",
    )
    .await;
    let failed = fake("failed", "+OK\r\n").await;
    let map = shard_map(&primary, &[&replica, &failed]);

    let client = Client::with_map(map.clone(), config().with_read_from(ReadFrom::Replica))
        .await
        .unwrap();
    let seen = readers(&client, 50).await;
    assert!(seen.iter().all(|s| s == "replica"), "{seen:?}");
    client.set("key:1", "v", None).await.unwrap();
    assert_eq!(count(&primary.log(), "SET"), 1, "writes go to the primary");
    assert_eq!(count(&replica.log(), "SET"), 0);
    assert_eq!(
        replica.log().first().map(String::as_str),
        Some("READONLY"),
        "a replica connection starts with READONLY"
    );
    assert_eq!(failed.commands(), 0, "a failed replica gets nothing");
    drop(client);

    let client = Client::with_map(map.clone(), config().with_read_from(ReadFrom::Any))
        .await
        .unwrap();
    let seen = readers(&client, 200).await;
    let from_primary = seen.iter().filter(|s| *s == "primary").count();
    let from_replica = seen.iter().filter(|s| *s == "replica").count();
    assert_eq!(from_primary + from_replica, 200, "{seen:?}");
    assert!(
        from_primary > 40 && from_replica > 40,
        "any member: {from_primary} from the primary, {from_replica} from the replica"
    );
    assert_eq!(failed.commands(), 0);
    drop(client);

    let replica_gets = count(&replica.log(), "GET");
    let readonly_before = count(&primary.log(), "READONLY");
    let client = Client::with_map(map, config()).await.unwrap();
    let seen = readers(&client, 20).await;
    assert!(seen.iter().all(|s| s == "primary"), "the default: {seen:?}");
    assert_eq!(count(&replica.log(), "GET"), replica_gets);
    assert_eq!(
        count(&primary.log(), "READONLY"),
        readonly_before,
        "the default sends no READONLY"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_without_a_healthy_replica_is_read_from_its_primary() {
    let primary = fake("primary", "+OK\r\n").await;
    let failed = fake("failed", "+OK\r\n").await;
    let client = Client::with_map(
        shard_map(&primary, &[&failed]),
        config().with_read_from(ReadFrom::Replica),
    )
    .await
    .unwrap();
    let seen = readers(&client, 20).await;
    assert!(seen.iter().all(|s| s == "primary"), "{seen:?}");
    assert_eq!(failed.commands(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_replica_serves_reads_of_what_the_primary_replicated() {
    let founder = Node::start_with(|c| {
        c.cluster_enabled = true;
        c.controller = true;
        c.cluster_replicas = 1;
    });
    let seed = founder.addr.to_string();
    let replica = Node::start_with(|c| c.cluster_join = seed.clone());

    let mut config = config().with_read_from(ReadFrom::Replica);
    config.seeds = vec![seed];
    let client = Client::connect(config).await.unwrap();
    until_map(
        &client,
        "the second node as the shard's replica",
        Duration::from_secs(15),
        |map| {
            map.shards.len() == 1
                && map.shards[0].replicas.len() == 1
                && map.slots_assigned() == shoal_cluster::SLOTS
        },
    )
    .await;

    // Until its first sync is done the replica answers -LOADING and the client reads from
    // the primary instead: wait for it, as the test is about a synced replica.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut replica.con())
            .unwrap();
        if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never synced: {info}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    client.set("greeting", "hello", None).await.unwrap();
    // Replication is asynchronous: the replica has it within moments.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if client.get("greeting").await.unwrap().as_deref() == Some(&b"hello"[..]) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replica never served the write"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(calls(&replica, "get") >= 1, "the replica served the reads");
    assert_eq!(calls(&founder, "get"), 0, "the primary served none");
    assert_eq!(calls(&founder, "set"), 1, "the write went to the primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_still_loading_hands_the_read_to_the_primary() {
    let primary = fake("primary", "+OK\r\n").await;
    let loading = FakeServer::start(|call| match call.name().as_str() {
        "READONLY" => raw("+OK\r\n"),
        _ => raw("-LOADING Redis is loading the dataset in memory\r\n"),
    })
    .await;
    let failed = fake("failed", "+OK\r\n").await;
    let client = Client::with_map(
        shard_map(&primary, &[&loading, &failed]),
        config().with_read_from(ReadFrom::Replica),
    )
    .await
    .unwrap();
    let seen = readers(&client, 5).await;
    assert!(seen.iter().all(|s| s == "primary"), "{seen:?}");
    assert_eq!(
        count(&loading.log(), "GET"),
        5,
        "each read tried the replica first"
    );
    assert_eq!(client.stats().errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_s_redirect_to_the_primary_does_not_pin_the_slot() {
    let primary = fake("primary", "+OK\r\n").await;
    let primary_addr = primary.addr.to_string();
    let answered = Arc::new(AtomicUsize::new(0));
    let replica = {
        let answered = answered.clone();
        FakeServer::start(move |call| match call.name().as_str() {
            "READONLY" => raw("+OK\r\n"),
            // The first read arrives before the replica has the map: it redirects.
            "GET" if answered.fetch_add(1, Ordering::SeqCst) == 0 => {
                let slot = key_slot(call.arg(1));
                raw(&format!("-MOVED {slot} {primary_addr}\r\n"))
            }
            "GET" => bulk(b"replica"),
            _ => raw("-ERR unexpected\r\n"),
        })
        .await
    };
    let failed = fake("failed", "+OK\r\n").await;
    let client = Client::with_map(
        shard_map(&primary, &[&replica, &failed]),
        config().with_read_from(ReadFrom::Replica),
    )
    .await
    .unwrap();
    let first = client.get("{tag}a").await.unwrap().unwrap();
    assert_eq!(&first[..], b"primary", "the redirection is followed");
    let next = client.get("{tag}b").await.unwrap().unwrap();
    assert_eq!(
        &next[..],
        b"replica",
        "the same slot's next read goes to the replica again"
    );
}
