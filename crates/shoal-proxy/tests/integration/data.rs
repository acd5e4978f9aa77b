//! Keyed commands through the proxy: they land on their slot's owner and come back right, in
//! RESP2 and RESP3, one by one and pipelined.

use std::collections::{HashMap, HashSet};

use redis::AsyncCommands as _;

use crate::common::*;

/// Sets, reads, counts, expires and deletes `n` keys named `prefix:i` through `con`, checking
/// every answer.
async fn exercise_keys(con: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize) {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}:{i}")).collect();
    let mut pipe = redis::pipe();
    for (i, k) in keys.iter().enumerate() {
        pipe.set(k, i).ignore();
    }
    let () = pipe.query_async(con).await.unwrap();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.get(k);
    }
    let values: Vec<usize> = pipe.query_async(con).await.unwrap();
    assert_eq!(values, (0..n).collect::<Vec<_>>());
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.incr(k, 1).exists(k).expire(k, 100).ttl(k);
    }
    let replies: Vec<i64> = pipe.query_async(con).await.unwrap();
    assert_eq!(replies.len(), 4 * n);
    for (i, reply) in replies.chunks(4).enumerate() {
        let [incremented, exists, expiring, ttl] = reply else {
            unreachable!()
        };
        assert_eq!(*incremented, i as i64 + 1);
        assert_eq!((*exists, *expiring), (1, 1), "{}", keys[i]);
        assert!((99..=100).contains(ttl), "{}: {ttl}", keys[i]);
    }
    let mut pipe = redis::pipe();
    for k in keys.iter().step_by(2) {
        pipe.del(k);
    }
    let deleted: Vec<u64> = pipe.query_async(con).await.unwrap();
    assert!(deleted.iter().all(|&d| d == 1));
    let left: Vec<Option<usize>> = redis::cmd("MGET")
        .arg(&keys)
        .query_async(con)
        .await
        .unwrap();
    for (i, value) in left.into_iter().enumerate() {
        let expected = (i % 2 == 1).then_some(i + 1);
        assert_eq!(value, expected, "{}", keys[i]);
    }
}

/// Where each key with `prefix` sits, by asking every node directly.
fn holders(harness: &Harness, prefix: &str) -> HashMap<String, String> {
    let mut held = HashMap::new();
    for node in &harness.nodes {
        let addr = node.addr().to_string();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query(&mut direct(&addr))
            .unwrap();
        for key in keys {
            assert!(
                held.insert(key.clone(), addr.clone()).is_none(),
                "{key} twice"
            );
        }
    }
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_keys_land_on_their_owners_resp2() {
    let harness = shared();
    let mut con = connect(harness.addr(), false).await;
    exercise_keys(&mut con, "spread2", 1000).await;

    let held = holders(harness, "spread2");
    assert_eq!(held.len(), 500, "the odd keys are left");
    let seed = harness.seed();
    let mut pipe = redis::pipe();
    let keys: Vec<&String> = held.keys().collect();
    for key in &keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(key.as_str());
    }
    let slots: Vec<u16> = pipe.query(&mut direct(&seed)).unwrap();
    let mut nodes_used = HashSet::new();
    for (key, slot) in keys.iter().zip(slots) {
        assert_eq!(held[*key], harness.owner(slot), "{key} (slot {slot})");
        nodes_used.insert(held[*key].clone());
    }
    assert_eq!(nodes_used.len(), 3, "every shard holds some keys");
    let stats = harness.proxy.client().stats();
    assert_eq!(stats.connection_losses, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_work_the_same_in_resp3() {
    let harness = shared();
    let mut con = connect(harness.addr(), true).await;
    exercise_keys(&mut con, "spread3", 300).await;
    assert_eq!(holders(harness, "spread3").len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_key_commands_span_shards() {
    let harness = shared();
    for resp3 in [false, true] {
        let mut con = connect(harness.addr(), resp3).await;
        let p = if resp3 { "multi3" } else { "multi2" };
        let pairs: Vec<(String, String)> = (0..40)
            .map(|i| (format!("{p}:{i}"), format!("v{i}")))
            .collect();
        let () = redis::cmd("MSET")
            .arg(&pairs)
            .query_async(&mut con)
            .await
            .unwrap();
        let mut asked: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
        asked.insert(3, format!("{p}:missing"));
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&asked)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(values.len(), 41);
        assert_eq!(values[3], None);
        let mut expected: Vec<Option<String>> =
            pairs.iter().map(|(_, v)| Some(v.clone())).collect();
        expected.insert(3, None);
        assert_eq!(values, expected);
        let exists: u64 = redis::cmd("EXISTS")
            .arg(&asked)
            .arg(&asked[0])
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(exists, 41, "a key given twice counts twice");
        let deleted: u64 = con.del(&asked[..20]).await.unwrap();
        assert_eq!(deleted, 19);
        let touched: u64 = redis::cmd("TOUCH")
            .arg(&asked)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(touched, 21);
        let unlinked: u64 = redis::cmd("UNLINK")
            .arg(&asked)
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(unlinked, 21);
        let nothing: Vec<Option<String>> = con.mget(&asked[..5]).await.unwrap();
        assert!(nothing.iter().all(Option::is_none));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_a_thousand_commands_answers_in_order() {
    let harness = shared();
    let mut con = connect(harness.addr(), false).await;
    // One key: the replies must count up.
    let mut pipe = redis::pipe();
    for _ in 0..1000 {
        pipe.incr("pipe:counter", 1);
    }
    let counts: Vec<u64> = pipe.query_async(&mut con).await.unwrap();
    assert_eq!(counts, (1..=1000).collect::<Vec<_>>());
    // Keys on every shard, each written then read in the same pipeline.
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.set(format!("pipe:{i}"), i)
            .ignore()
            .get(format!("pipe:{i}"));
    }
    let values: Vec<u64> = pipe.query_async(&mut con).await.unwrap();
    assert_eq!(values, (0..500).collect::<Vec<_>>());

    // Raw: a thousand PINGs and GETs in one write, replies in order, on one connection.
    let mut raw = Raw::connect(harness.addr()).await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        if i % 2 == 0 {
            batch.extend(frame(&[b"PING", format!("p{i}").as_bytes()]));
        } else {
            batch.extend(frame(&[b"GET", format!("pipe:{}", i % 500).as_bytes()]));
        }
    }
    raw.send(&batch).await;
    for i in 0..1000 {
        let expected = if i % 2 == 0 {
            bulk(&format!("p{i}"))
        } else {
            bulk(&(i % 500).to_string())
        };
        assert_eq!(raw.reply().await, expected, "reply {i}");
    }
}
