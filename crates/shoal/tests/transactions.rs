//! Transactions and scripts on a shard of real `shoal server` processes (started by
//! shoal-testkit): a replica applies each transaction's or script's effects together, so its
//! readers never see half of one, and a replica promoted after its primary's `kill -9` holds
//! every one whole or not at all.
//!
//! Each write (a `MULTI`/`EXEC` transaction for odd numbers, an `EVAL` script for even ones)
//! sets [`PAIRS`] pairs of keys (one slot, many store shards) to the same number; a reader that
//! ever sees two different numbers saw half of one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_testkit::resp::RespConnection;
use shoal_testkit::{ClusterOptions, ShardNodes, TestCluster, Value};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Pairs of keys each transaction sets.
const PAIRS: usize = 8;

/// Runs `body` alone (after any other test of this file) and within [`TEST_LIMIT`].
async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// A cluster of one shard (a primary and two replicas), and that shard.
async fn start_shard() -> (TestCluster, ShardNodes) {
    TestCluster::start_shard(SHOAL, 2, ClusterOptions::default()).await
}

/// Every key a transaction sets (one hash tag: one slot).
fn keys() -> Vec<String> {
    (0..PAIRS)
        .flat_map(|j| [format!("{{tx}}a{j}"), format!("{{tx}}b{j}")])
        .collect()
}

/// Sets every key to `n` at once: a transaction for an odd `n`, a script for an even one.
/// Whether the node acknowledged the whole write.
async fn write_all(conn: &mut RespConnection, n: u64) -> shoal_testkit::Result<bool> {
    let keys = keys();
    let n = n.to_string();
    if n.ends_with(['0', '2', '4', '6', '8']) {
        let script = "for _, key in ipairs(KEYS) do redis.call('SET', key, ARGV[1]) end \
                      return #KEYS";
        let count = keys.len().to_string();
        let mut args = vec!["EVAL", script, count.as_str()];
        args.extend(keys.iter().map(String::as_str));
        args.push(n.as_str());
        let reply = conn.call(&args).await?;
        return Ok(reply == Value::Int(keys.len() as i64));
    }
    conn.call(&["MULTI"]).await?;
    for key in &keys {
        conn.call(&["SET", key.as_str(), n.as_str()]).await?;
    }
    let reply = conn.call(&["EXEC"]).await?;
    Ok(matches!(reply, Value::Array(ref r) if r.len() == keys.len()))
}

/// The values of every key, read at once (`MGET`).
async fn values(conn: &mut RespConnection) -> Vec<Option<Vec<u8>>> {
    let mut args = vec!["MGET".to_string()];
    args.extend(keys());
    match conn.call(&args).await.expect("MGET") {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::Bulk(b) => Some(b),
                _ => None,
            })
            .collect(),
        other => panic!("MGET answered {other:?}"),
    }
}

/// Panics unless every key holds the same value (or none exists).
fn assert_whole(values: &[Option<Vec<u8>>], context: &str) {
    assert!(
        values.windows(2).all(|w| w[0] == w[1]),
        "{context}: half of a transaction is visible: {:?}",
        values
            .iter()
            .map(|v| v.as_ref().map(|b| String::from_utf8_lossy(b).into_owned()))
            .collect::<Vec<_>>()
    );
}

/// Whether `node`'s `INFO replication` says it is a primary.
async fn is_primary(cluster: &TestCluster, node: usize) -> bool {
    cluster
        .node(node)
        .info("replication")
        .await
        .is_ok_and(|info| info.get("role") == Some("master"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_never_shows_half_of_a_transaction_or_script() {
    run_test(
        "a_replica_never_shows_half_of_a_transaction_or_script",
        async {
            let (cluster, shard) = start_shard().await;
            let mut primary = cluster.node(shard.primary).connect().await.unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let writer = {
                let done = done.clone();
                tokio::spawn(async move {
                    for n in 1..=400 {
                        assert!(
                            write_all(&mut primary, n).await.unwrap(),
                            "write {n} failed"
                        );
                    }
                    done.store(true, Ordering::Relaxed);
                })
            };
            let mut replica = cluster.node(shard.replicas[0]).connect().await.unwrap();
            assert_eq!(
                replica.call(&["READONLY"]).await.unwrap(),
                Value::Simple(b"OK".to_vec())
            );
            let mut reads_with_data = 0;
            while !done.load(Ordering::Relaxed) {
                let seen = values(&mut replica).await;
                assert_whole(&seen, "a replica's read during the writes");
                reads_with_data += usize::from(seen[0].is_some());
            }
            writer.await.unwrap();
            assert!(
                reads_with_data > 10,
                "the replica showed data to only {reads_with_data} reads"
            );
            // The replica ends with the last transaction.
            let deadline = Instant::now() + Duration::from_secs(10);
            while values(&mut replica).await[0].as_deref() != Some(b"400") {
                assert!(Instant::now() < deadline, "the replica never caught up");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_replica_holds_each_transaction_and_script_whole_or_not_at_all() {
    run_test(
        "a_promoted_replica_holds_each_transaction_and_script_whole_or_not_at_all",
        async {
            let (cluster, shard) = start_shard().await;
            let mut primary = cluster.node(shard.primary).connect().await.unwrap();
            let acknowledged = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let writer = {
                let acknowledged = acknowledged.clone();
                tokio::spawn(async move {
                    // Until the kill breaks the connection.
                    for n in 1.. {
                        match write_all(&mut primary, n).await {
                            Ok(true) => acknowledged.store(n, Ordering::Relaxed),
                            _ => return,
                        }
                    }
                })
            };
            let deadline = Instant::now() + Duration::from_secs(20);
            while acknowledged.load(Ordering::Relaxed) < 300 {
                assert!(Instant::now() < deadline, "the writes did not start");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            cluster.node(shard.primary).kill().unwrap();
            writer.await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            let successor = loop {
                let mut promoted = None;
                for &replica in &shard.replicas {
                    if is_primary(&cluster, replica).await {
                        promoted = Some(replica);
                    }
                }
                if let Some(successor) = promoted {
                    break successor;
                }
                assert!(Instant::now() < deadline, "no replica was promoted");
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let mut conn = cluster.node(successor).connect().await.unwrap();
            let seen = values(&mut conn).await;
            assert_whole(&seen, "the promoted replica");
            let held: u64 = String::from_utf8_lossy(seen[0].as_deref().expect("data survived"))
                .parse()
                .unwrap();
            eprintln!(
                "{} writes (transactions and scripts) acknowledged before the kill; the \
                 promoted replica holds write {held}, whole",
                acknowledged.load(Ordering::Relaxed)
            );
            assert!(held >= 1);
        },
    )
    .await;
}
