//! One pipelined connection carries many tasks' requests, coalesced into few writes.

use std::sync::atomic::Ordering;

use shoal_client::Client;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_gets_share_one_connection_and_few_writes() {
    // GET k answers "value-of-k": every caller can tell its own reply.
    let fake = FakeServer::start(|call| match call.name().as_str() {
        "GET" => {
            let mut v = b"value-of-".to_vec();
            v.extend_from_slice(call.arg(1));
            bulk(&v)
        }
        _ => raw("-ERR unexpected\r\n"),
    })
    .await;
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config())
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for t in 0..50 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let gets = (0..20).map(|i| {
                let client = &client;
                async move {
                    let key = format!("key-{t}-{i}");
                    let value = client.get(&key).await.expect("a reply");
                    assert_eq!(
                        value.as_deref(),
                        Some(format!("value-of-{key}").as_bytes()),
                        "each caller gets its own reply"
                    );
                }
            });
            futures_util::future::join_all(gets).await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let stats = client.stats();
    assert_eq!(stats.requests, 1000);
    assert_eq!(stats.errors, 0);
    assert_eq!(stats.frames_sent, 1000);
    assert_eq!(fake.commands(), 1000);
    assert_eq!(
        fake.stats.connections.load(Ordering::SeqCst),
        1,
        "one connection"
    );
    assert_eq!(stats.connects, 1);
    // How many share a write depends on scheduling (a writer on the other core drains what is
    // queued while it writes); alone this takes about ten writes, under a loaded machine a
    // few hundred.
    assert!(
        stats.socket_writes < 500,
        "1000 requests took {} socket writes: they should be coalesced",
        stats.socket_writes
    );
    let reads = fake.stats.reads.load(Ordering::SeqCst);
    assert!(reads < 500, "the server needed {reads} reads");
    assert_eq!(stats.latency.count, 1000);
    assert!(stats.latency.p50 <= stats.latency.p99 && stats.latency.p99 <= stats.latency.max);
}

#[tokio::test]
async fn a_late_reply_goes_to_the_caller_that_gave_up_not_the_next_one() {
    // "slow" is answered only together with the next command, as a server that was slow
    // would: in order, after the caller's timeout.
    let fake = FakeServer::start(|call| match call.arg(1) {
        b"slow" => Answer::Hold,
        other => {
            let mut out = b"$10\r\nslow-value\r\n".to_vec();
            out.extend_from_slice(format!("${}\r\n", other.len()).as_bytes());
            out.extend_from_slice(other);
            out.extend_from_slice(b"\r\n");
            Answer::Bytes(out)
        }
    })
    .await;
    let config = config()
        .with_max_attempts(1)
        .with_request_timeout(std::time::Duration::from_millis(100));
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config)
        .await
        .unwrap();
    let err = client.get("slow").await.unwrap_err();
    assert!(matches!(err, shoal_client::Error::Timeout { .. }), "{err}");
    assert!(err.is_ambiguous());
    assert_eq!(
        client.get("fast").await.unwrap().as_deref(),
        Some(&b"fast"[..])
    );
    assert_eq!(
        client.stats().connects,
        1,
        "a timeout does not drop the connection"
    );
}

/// Starts `count` INCRs of one key in order, polled from one task, and returns their replies.
async fn incr_in_order(client: &Client, count: usize) -> Vec<i64> {
    let mut ordered = futures_util::stream::FuturesOrdered::new();
    for _ in 0..count {
        let client = client.clone();
        ordered.push_back(async move { client.incr("counter").await });
    }
    futures_util::StreamExt::collect::<Vec<_>>(ordered)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_issued_in_order_from_one_task_run_in_that_order() {
    // A proxy's pipeline: thousands of commands started in order and polled from one task,
    // far past tokio's cooperative budget. INCR shows the order the node ran them in.
    let node = Node::start();
    let client = Client::with_map(map(1, &[(node.addr, ALL)]), config())
        .await
        .unwrap();
    // The first ones find no connection yet: they queue on the one being opened, in order.
    assert_eq!(
        incr_in_order(&client, 1000).await,
        (1..=1000).collect::<Vec<i64>>()
    );
    assert_eq!(
        incr_in_order(&client, 3000).await,
        (1001..=4000).collect::<Vec<i64>>()
    );
    assert_eq!(client.stats().connects, 1);
}
