//! The near cache against real nodes: reads served from memory, kept fresh by the nodes'
//! invalidations, and dropped on every gap (a lost connection, a moved slot, a flush).

use std::time::{Duration, Instant};

use shoal_client::{Client, NearCacheConfig, NearCacheStats, Protocol, Value};

use crate::common::*;

fn near(max_bytes: usize) -> shoal_client::ClientConfig {
    config().with_near_cache(NearCacheConfig::new(max_bytes))
}

fn stats(client: &Client) -> NearCacheStats {
    client
        .near_cache_stats()
        .expect("the client has a near cache")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_reads_are_served_from_memory_and_another_clients_write_reaches_them() {
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    client.set("greeting", "hello", None).await.unwrap();
    assert_eq!(client.get("greeting").await.unwrap().unwrap(), "hello");
    let gets = calls(&node, "get");
    for _ in 0..100 {
        assert_eq!(client.get("greeting").await.unwrap().unwrap(), "hello");
    }
    assert_eq!(
        calls(&node, "get"),
        gets,
        "the node saw none of the 100 reads"
    );
    let s = stats(&client);
    assert_eq!((s.hits, s.entries), (100, 1), "{s:?}");

    // Another connection writes: the cached value goes within milliseconds.
    let mut other = node.con();
    for round in 0..20 {
        let value = format!("v{round}");
        let _: () = redis::cmd("SET")
            .arg("greeting")
            .arg(&value)
            .query(&mut other)
            .unwrap();
        let acked = Instant::now();
        loop {
            let got = client.get("greeting").await.unwrap().unwrap();
            if got == value.as_bytes() {
                break;
            }
            assert!(
                acked.elapsed() < Duration::from_millis(50),
                "round {round}: still {got:?} 50 ms after the write"
            );
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    assert!(stats(&client).invalidations >= 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_own_writes_at_once() {
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    for i in 0..200 {
        let value = i.to_string();
        client.set("counter", &value, None).await.unwrap();
        assert_eq!(
            client.get("counter").await.unwrap().unwrap(),
            value.as_bytes()
        );
        assert_eq!(
            client.get("counter").await.unwrap().unwrap(),
            value.as_bytes()
        );
        assert_eq!(client.incr("n").await.unwrap(), i + 1);
        assert_eq!(
            client.get("n").await.unwrap().unwrap(),
            (i + 1).to_string().as_bytes()
        );
    }
    let s = stats(&client);
    assert!(
        s.hits >= 200,
        "the second read of each round is a hit: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_reads_are_cached_per_field_and_dropped_together() {
    let node = Node::start();
    let config = near(1 << 20).with_protocol(Protocol::Resp3);
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), config)
        .await
        .unwrap();
    client
        .command(&["HSET", "h", "a", "1", "b", "2"])
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            client.command(&["HGET", "h", "a"]).await.unwrap(),
            Value::Bulk(b"1".to_vec())
        );
        assert_eq!(
            client.command(&["HGET", "h", "b"]).await.unwrap(),
            Value::Bulk(b"2".to_vec())
        );
        assert!(matches!(
            client.command(&["HGETALL", "h"]).await.unwrap(),
            Value::Map(pairs) if pairs.len() == 2
        ));
    }
    assert_eq!(stats(&client).hits, 3);
    assert_eq!(stats(&client).entries, 3);
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("9")
        .query(&mut node.con())
        .unwrap();
    until("the hash's entries to go", || stats(&client).entries == 0).await;
    assert_eq!(
        client.command(&["HGET", "h", "a"]).await.unwrap(),
        Value::Bulk(b"9".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_never_outlives_its_keys_ttl() {
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    client
        .set("session", "alice", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(client.get("session").await.unwrap().is_some());
    assert!(client.get("session").await.unwrap().is_some());
    assert_eq!(stats(&client).hits, 1);
    tokio::time::sleep(Duration::from_millis(320)).await;
    assert_eq!(client.get("session").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushall_anywhere_empties_it() {
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    client.mset(&[("a", "1"), ("b", "2")]).await.unwrap();
    client.get("a").await.unwrap();
    client.get("b").await.unwrap();
    assert_eq!(stats(&client).entries, 2);
    let _: () = redis::cmd("FLUSHALL").query(&mut node.con()).unwrap();
    until("the null invalidation", || stats(&client).entries == 0).await;
    assert_eq!(client.get("a").await.unwrap(), None);
    assert!(stats(&client).flushes_flushall >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tracking_connection_drops_what_it_gave() {
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    client.set("k", "v1", None).await.unwrap();
    client.get("k").await.unwrap();
    assert_eq!(stats(&client).entries, 1);
    // Every connection of the node goes, the tracking one with them.
    let _: u64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query(&mut node.con())
        .unwrap();
    until("the entries to go", || stats(&client).entries == 0).await;
    assert!(stats(&client).flushes_connection >= 1);
    // A write made while no connection was there to hear it is read back.
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v2")
        .query(&mut node.con())
        .unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap(), "v2");
    assert_eq!(client.get("k").await.unwrap().unwrap(), "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_that_moves_the_slot_drops_its_entries() {
    let (a, b) = (Node::start(), Node::start());
    let client = Client::with_map(map(1, &[(a.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    client.set("k", "on a", None).await.unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap(), "on a");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("on b")
        .query(&mut b.con())
        .unwrap();
    assert!(client.install_map(map(2, &[(b.addr, ALL)])));
    until("the moved slot's entries to go", || {
        stats(&client).entries == 0
    })
    .await;
    assert_eq!(stats(&client).flushes_map, 1);
    assert_eq!(client.get("k").await.unwrap().unwrap(), "on b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_byte_bound_holds() {
    let node = Node::start();
    let bound = 64 * 1024;
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(bound))
        .await
        .unwrap();
    let value = "x".repeat(200);
    for i in 0..2_000 {
        let key = format!("key:{i}");
        client.set(&key, &value, None).await.unwrap();
        client.get(&key).await.unwrap();
        // The latest keys are read again: they are the ones kept.
        client.get(&key).await.unwrap();
    }
    let s = stats(&client);
    assert!(s.bytes as usize <= bound, "{s:?}");
    assert!(s.evictions > 1_000, "{s:?}");
    assert!(s.entries > 50, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_node_is_read_through_the_usual_path() {
    // No near cache entry survives a node that stops answering: after the staleness bound
    // the client goes to the network, which says what is wrong.
    let node = Node::start();
    let addr = node.addr;
    let client = Client::with_map(map(1, &[(addr, ALL)]), near(1 << 20).with_max_attempts(1))
        .await
        .unwrap();
    client.set("k", "v", None).await.unwrap();
    client.get("k").await.unwrap();
    drop(node);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        client.get("k").await.is_err(),
        "no stale value from a node that is gone"
    );
    assert_eq!(stats(&client).entries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_read_by_many_tasks_at_once_is_cached() {
    // Fills of one key race each other from the first read on: none may keep the others
    // from storing it.
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), near(1 << 20))
        .await
        .unwrap();
    client.set("hot", "value", None).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    assert_eq!(client.get("hot").await.unwrap().unwrap(), "value");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let s = stats(&client);
    assert!(s.hits >= 9_000, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_refuses_tracking_is_read_the_usual_way() {
    // The client's user may not run CLIENT TRACKING: the near cache stays empty, reads are
    // answered by the node, and the client does not try a tracking connection per read.
    let node = Node::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("app")
        .arg("on")
        .arg(">secret")
        .arg("~*")
        .arg("+@all")
        .arg("-client|tracking")
        .query(&mut node.con())
        .unwrap();
    let config = near(1 << 20).with_username("app").with_password("secret");
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), config)
        .await
        .unwrap();
    client.set("k", "v", None).await.unwrap();
    for _ in 0..200 {
        assert_eq!(client.get("k").await.unwrap().unwrap(), "v");
    }
    let s = stats(&client);
    assert_eq!((s.hits, s.entries), (0, 0), "{s:?}");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut node.con())
        .unwrap();
    let connections: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        connections < 20,
        "a tracking connection was tried for each read: {connections} connections"
    );
}
