//! Commands over the whole keyspace, on a cluster of their own (they see every key).

use std::collections::HashMap;

use shoal_client::Value;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_commands_cover_every_primary() {
    let harness = tokio::task::spawn_blocking(|| Harness::start(|_| {}))
        .await
        .unwrap();
    let mut con = connect(harness.addr(), false).await;
    let mut raw = Raw::connect(harness.addr()).await;
    assert_eq!(raw.call(&["DBSIZE"]).await, Value::Int(0));
    assert_eq!(raw.call(&["RANDOMKEY"]).await, Value::Null);

    let keys: Vec<String> = (0..600).map(|i| format!("ks:{i}")).collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.set(k, "x").ignore();
    }
    let () = pipe.query_async(&mut con).await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.set(format!("other:{i}"), "y").ignore();
    }
    let () = pipe.query_async(&mut con).await.unwrap();

    // DBSIZE sums, and each node's share is its own DBSIZE.
    let total: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(total, 650);
    let per_node: i64 = harness
        .nodes
        .iter()
        .map(|n| -> i64 {
            redis::cmd("DBSIZE")
                .query(&mut direct(&n.addr().to_string()))
                .unwrap()
        })
        .sum();
    assert_eq!(per_node, 650);

    // KEYS merges.
    let mut listed: Vec<String> = redis::cmd("KEYS")
        .arg("ks:*")
        .query_async(&mut con)
        .await
        .unwrap();
    listed.sort();
    let mut expected = keys.clone();
    expected.sort();
    assert_eq!(listed, expected);

    // SCAN reports every key exactly once, across all three primaries.
    for count in [7, 100, 1000] {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut cursor: u64 = 0;
        let mut steps = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("ks:*")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut con)
                .await
                .unwrap();
            for key in batch {
                *seen.entry(key).or_default() += 1;
            }
            steps += 1;
            assert!(steps < 10_000, "the scan ends");
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(seen.len(), 600, "COUNT {count}");
        assert!(
            seen.values().all(|&n| n == 1),
            "each key once (COUNT {count})"
        );
    }
    // A cursor that is not a number, and one past the last primary.
    assert_eq!(
        error_text(&raw.call(&["SCAN", "x"]).await),
        "ERR invalid cursor"
    );
    let past = (9u64 << 52).to_string();
    assert_eq!(
        raw.call(&["SCAN", &past]).await,
        Value::Array(vec![bulk("0"), Value::Array(vec![])])
    );
    // The node's own option errors come back.
    assert_eq!(
        error_text(&raw.call(&["SCAN", "0", "COUNT", "0"]).await),
        "ERR syntax error"
    );

    let Value::Bulk(random) = raw.call(&["RANDOMKEY"]).await else {
        panic!("a key")
    };
    let random = String::from_utf8(random).unwrap();
    assert!(
        random.starts_with("ks:") || random.starts_with("other:"),
        "{random}"
    );

    // FLUSHALL empties every primary.
    assert_eq!(raw.call(&["FLUSHALL"]).await, simple("OK"));
    assert_eq!(raw.call(&["DBSIZE"]).await, Value::Int(0));
    assert_eq!(raw.call(&["KEYS", "*"]).await, Value::Array(vec![]));
    assert_eq!(raw.call(&["RANDOMKEY"]).await, Value::Null);
    for node in &harness.nodes {
        let size: i64 = redis::cmd("DBSIZE")
            .query(&mut direct(&node.addr().to_string()))
            .unwrap();
        assert_eq!(size, 0);
    }
    assert_eq!(
        error_text(&raw.call(&["FLUSHALL", "BOGUS"]).await),
        "ERR syntax error"
    );
    assert_eq!(raw.call(&["FLUSHDB", "ASYNC"]).await, simple("OK"));
    harness.proxy.shutdown();
}
