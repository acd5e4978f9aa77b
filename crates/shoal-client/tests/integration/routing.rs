//! Routing against three real standalone nodes sharing the slots by a static map.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use shoal_client::{Client, Error, Protocol, Ttl, Value};
use shoal_cluster::key_slot;

use crate::common::*;

/// Shard i owns the i-th third of the slots.
fn thirds(nodes: &[Node; 3]) -> shoal_client::ClusterMap {
    map(
        1,
        &[
            (nodes[0].addr, 0..5461),
            (nodes[1].addr, 5461..10923),
            (nodes[2].addr, 10923..16384),
        ],
    )
}

fn owner(key: &str) -> usize {
    match key_slot(key.as_bytes()) {
        0..5461 => 0,
        5461..10923 => 1,
        _ => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keys_land_on_their_slot_owner_only() {
    let nodes = [Node::start(), Node::start(), Node::start()];
    let client = Client::with_map(thirds(&nodes), config()).await.unwrap();

    let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
    let sets = keys.iter().map(|k| client.set(k, k, None));
    for result in join_all(sets).await {
        result.unwrap();
    }

    let mut expect: [HashSet<String>; 3] = Default::default();
    for k in &keys {
        expect[owner(k)].insert(k.clone());
    }
    for (i, node) in nodes.iter().enumerate() {
        let held: HashSet<String> = node.keys().into_iter().collect();
        assert!(expect[i].len() > 3000, "the keys spread over the shards");
        assert_eq!(held, expect[i], "node {i} holds exactly its slots' keys");
    }

    // Reads come back through the same routes.
    let gets = keys.iter().take(500).map(|k| client.get(k));
    for (k, got) in keys.iter().zip(join_all(gets).await) {
        assert_eq!(got.unwrap().as_deref(), Some(k.as_bytes()));
    }
    let stats = client.stats();
    assert_eq!(stats.requests, 10_500);
    assert_eq!((stats.errors, stats.redirects, stats.retries), (0, 0, 0));
    assert_eq!(stats.connects, 3, "one connection per node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_split_across_the_three_nodes() {
    let nodes = [Node::start(), Node::start(), Node::start()];
    let client = Client::with_map(thirds(&nodes), config()).await.unwrap();

    let pairs: Vec<(String, String)> = (0..300)
        .map(|i| (format!("m{i}"), format!("v{i}")))
        .collect();
    client.mset(&pairs).await.unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let held: HashSet<String> = node.keys().into_iter().collect();
        let expect: HashSet<String> = pairs
            .iter()
            .filter(|(k, _)| owner(k) == i)
            .map(|(k, _)| k.clone())
            .collect();
        assert!(!expect.is_empty());
        assert_eq!(held, expect, "node {i}");
    }

    // MGET in key order, with misses in between.
    let mut keys: Vec<String> = Vec::new();
    for i in (0..300).rev() {
        keys.push(format!("m{i}"));
        if i % 7 == 0 {
            keys.push(format!("missing{i}"));
        }
    }
    let values = client.mget(&keys).await.unwrap();
    assert_eq!(values.len(), keys.len());
    for (k, v) in keys.iter().zip(&values) {
        match k.strip_prefix("missing") {
            Some(_) => assert_eq!(*v, None, "{k}"),
            None => assert_eq!(
                v.as_deref(),
                Some(format!("v{}", &k[1..]).as_bytes()),
                "{k}"
            ),
        }
    }
    // The raw path merges the same way.
    let raw = client
        .command(&["MGET", "m1", "nope", "m2", "m3"])
        .await
        .unwrap();
    assert_eq!(
        raw,
        Value::Array(vec![
            Value::Bulk(b"v1".to_vec()),
            Value::Null,
            Value::Bulk(b"v2".to_vec()),
            Value::Bulk(b"v3".to_vec()),
        ])
    );

    assert_eq!(client.exists(&keys).await.unwrap(), 300);
    assert_eq!(client.touch(&["m1", "m2", "m1", "zz"]).await.unwrap(), 3);
    let doomed: Vec<&String> = keys.iter().take(100).collect();
    let present = doomed.iter().filter(|k| !k.starts_with("missing")).count() as u64;
    assert_eq!(client.del(&doomed).await.unwrap(), present);
    assert_eq!(client.exists(&doomed).await.unwrap(), 0);
    let left: usize = nodes.iter().map(|n| n.keys().len()).sum();
    assert_eq!(left as u64, 300 - present);
    assert_eq!(client.unlink(&["m0", "m5", "m6"]).await.unwrap(), 3);

    // A multi-key command the client cannot split.
    assert!(matches!(
        client.command(&["MSETNX", "a", "1", "b", "2"]).await,
        Err(Error::CrossSlot)
    ));
    // Hash tags keep keys together, so this one is not split.
    assert_eq!(
        client
            .command(&["MSETNX", "{t}a", "1", "{t}b", "2"])
            .await
            .unwrap(),
        Value::Int(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_commands_follow_redis_semantics() {
    let nodes = [Node::start(), Node::start(), Node::start()];
    let client = Client::with_map(thirds(&nodes), config()).await.unwrap();

    client.ping().await.unwrap();
    assert_eq!(client.get("nothing").await.unwrap(), None);
    assert!(client.set_nx("once", "1", None).await.unwrap());
    assert!(!client.set_nx("once", "2", None).await.unwrap());
    assert_eq!(
        client.get("once").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );

    assert_eq!(client.incr("n").await.unwrap(), 1);
    assert_eq!(client.incr_by("n", 10).await.unwrap(), 11);
    assert_eq!(client.decr_by("n", 5).await.unwrap(), 6);
    assert_eq!(client.decr("n").await.unwrap(), 5);
    match client.incr("once").await {
        Ok(2) => {}
        other => panic!("INCR of \"1\": {other:?}"),
    }
    client.set("text", "abc", None).await.unwrap();
    match client.incr("text").await {
        Err(Error::Server(msg)) => assert!(msg.starts_with("ERR value is not an integer"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // Raw commands return error replies as values.
    match client.command(&["INCR", "text"]).await.unwrap() {
        Value::Error(line) => assert!(line.starts_with(b"ERR value is not an integer")),
        other => panic!("{other:?}"),
    }

    assert_eq!(client.ttl("nothing").await.unwrap(), Ttl::Missing);
    assert_eq!(client.ttl("text").await.unwrap(), Ttl::Persistent);
    assert!(
        client
            .expire("text", Duration::from_secs(100))
            .await
            .unwrap()
    );
    assert!(
        !client
            .expire("nothing", Duration::from_secs(100))
            .await
            .unwrap()
    );
    match client.ttl("text").await.unwrap() {
        Ttl::Expires(d) => assert!(d > Duration::from_secs(90) && d <= Duration::from_secs(100)),
        other => panic!("{other:?}"),
    }
    client
        .set("brief", "x", Some(Duration::from_secs(50)))
        .await
        .unwrap();
    assert!(matches!(
        client.ttl("brief").await.unwrap(),
        Ttl::Expires(_)
    ));

    // Unrouted: straight to one node, whatever the key.
    let key = "lives-on-node-0";
    let wrong = (owner(key) + 1) % 3;
    let addr = nodes[wrong].addr.to_string();
    let reply = client
        .command_on(&addr, &["SET", key, "here"])
        .await
        .unwrap();
    assert_eq!(reply, Value::Simple(b"OK".to_vec()));
    assert!(nodes[wrong].keys().contains(&key.to_string()));
    assert!(!nodes[owner(key)].keys().contains(&key.to_string()));
    assert_eq!(
        client.get(key).await.unwrap(),
        None,
        "routed GET asks the owner"
    );
    let stats = client.stats();
    assert_eq!(stats.server_errors, 2, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_and_auth_on_connect() {
    let node = Node::start_with(|c| c.requirepass = "s3cret".into());
    let good = config()
        .with_password("s3cret")
        .with_protocol(Protocol::Resp3);
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), good)
        .await
        .unwrap();
    client.set("k", "v", None).await.unwrap();
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(client.get("none").await.unwrap(), None, "RESP3 null");
    // HELLO 3 took: a RESP3-only reply type comes back.
    match client.command(&["HELLO", "3"]).await.unwrap() {
        Value::Map(_) => {}
        other => panic!("HELLO in RESP3 answers a map, not {other:?}"),
    }

    let resp2 = config().with_password("s3cret");
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), resp2)
        .await
        .unwrap();
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));

    let bad = config().with_password("wrong");
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), bad)
        .await
        .unwrap();
    match client.get("k").await {
        Err(Error::Auth { message, .. }) => assert!(message.starts_with("WRONGPASS"), "{message}"),
        other => panic!("{other:?}"),
    }
    let bad3 = config()
        .with_password("wrong")
        .with_protocol(Protocol::Resp3);
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), bad3)
        .await
        .unwrap();
    assert!(matches!(client.get("k").await, Err(Error::Auth { .. })));

    let none = config();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), none)
        .await
        .unwrap();
    match client.get("k").await {
        Err(Error::Server(msg)) => assert!(msg.starts_with("NOAUTH"), "{msg}"),
        other => panic!("{other:?}"),
    }
}
