//! Subscribers through the proxy: a client of the proxy subscribes (channels, patterns,
//! shard channels) and receives what is published through the proxy or directly on any node,
//! and `PUBSUB` answers for the proxy's own subscribers.

use std::time::Duration;

use shoal_client::Value;

use crate::common::*;

/// The next push a RESP3 subscriber reads, within a few seconds.
async fn next_push(raw: &mut Raw) -> Vec<Value> {
    match tokio::time::timeout(Duration::from_secs(5), raw.reply()).await {
        Ok(Value::Push(items)) => items,
        Ok(other) => panic!("not a push: {other:?}"),
        Err(_) => panic!("no message within 5 s"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_clients_receive_what_is_published_anywhere() {
    let harness = shared();
    let mut subscriber = Raw::connect(harness.addr()).await;
    assert!(matches!(
        subscriber.call(&["HELLO", "3"]).await,
        Value::Map(_)
    ));
    subscriber.call(&["SUBSCRIBE", "px-news"]).await;
    subscriber.call(&["PSUBSCRIBE", "px-n*"]).await;
    subscriber.call(&["SSUBSCRIBE", "px-orders"]).await;
    let mut admin = Raw::connect(harness.addr()).await;
    // The proxy's own subscribers.
    assert_eq!(
        admin.call(&["PUBSUB", "NUMSUB", "px-news"]).await,
        Value::Array(vec![bulk("px-news"), Value::Int(1)])
    );
    assert_eq!(admin.call(&["PUBSUB", "NUMPAT"]).await, Value::Int(1));
    // The upstream subscriptions take a moment to be made: publish until one arrives.
    let mut first = None;
    for _ in 0..50 {
        admin.call(&["PUBLISH", "px-news", "hello"]).await;
        if let Ok(Value::Push(items)) =
            tokio::time::timeout(Duration::from_millis(100), subscriber.reply()).await
        {
            first = Some(items);
            break;
        }
    }
    let first = first.expect("a message through the proxy");
    assert!(matches!(&first[0], Value::Bulk(k) if k == b"message" || k == b"pmessage"));
    // Drain what the retries left, then one publication on a node directly: both forms.
    while tokio::time::timeout(Duration::from_millis(300), subscriber.reply())
        .await
        .is_ok()
    {}
    let node = harness.nodes[2].addr().to_string();
    let mut direct_con = direct(&node);
    let _: i64 = redis::cmd("PUBLISH")
        .arg("px-news")
        .arg("direct")
        .query(&mut direct_con)
        .unwrap();
    let mut got = [
        next_push(&mut subscriber).await,
        next_push(&mut subscriber).await,
    ];
    got.sort_by_key(|items| items.len());
    assert_eq!(
        got[0],
        vec![bulk("message"), bulk("px-news"), bulk("direct")]
    );
    assert_eq!(
        got[1],
        vec![
            bulk("pmessage"),
            bulk("px-n*"),
            bulk("px-news"),
            bulk("direct")
        ]
    );
    // A shard channel's message comes from its shard.
    admin.call(&["SPUBLISH", "px-orders", "o-1"]).await;
    assert_eq!(
        next_push(&mut subscriber).await,
        vec![bulk("smessage"), bulk("px-orders"), bulk("o-1")]
    );
    // Unsubscribed: nothing more arrives, and the proxy has no subscriber left.
    subscriber.call(&["UNSUBSCRIBE", "px-news"]).await;
    subscriber.call(&["PUNSUBSCRIBE", "px-n*"]).await;
    assert_eq!(
        admin.call(&["PUBSUB", "NUMSUB", "px-news"]).await,
        Value::Array(vec![bulk("px-news"), Value::Int(0)])
    );
}
