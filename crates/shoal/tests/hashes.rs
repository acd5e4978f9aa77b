//! Hashes on a shard of real `shoal server` processes (started by shoal-testkit): what a
//! primary writes (field by field, whole by `RENAME`/`COPY`, in a transaction, expired by
//! field TTLs) is what its replica holds, while streaming and after a full resync.

use std::future::Future;
use std::time::{Duration, Instant};

use shoal_testkit::resp::{RespConnection, text};
use shoal_testkit::{ClusterOptions, ShardNodes, TestCluster, Value};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// Runs `body` alone (after any other test of this file) and within [`TEST_LIMIT`].
async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// A cluster of one shard: a primary and a replica.
async fn start_shard() -> (TestCluster, ShardNodes) {
    TestCluster::start_shard(SHOAL, 1, ClusterOptions::default()).await
}

/// The keys the test writes.
const KEYS: [&str; 6] = ["small", "big", "counted", "renamed", "{big}copied", "tx"];

/// What a node holds under a key: its fields and values sorted, its encoding, whether it has
/// a TTL.
type KeyState = (String, Vec<String>, String, bool);

/// What `conn` holds under every key (`None` while it cannot answer, loading a snapshot).
async fn state(conn: &mut RespConnection) -> Option<Vec<KeyState>> {
    let mut out = Vec::new();
    for key in KEYS {
        let fields = match conn.call(&["HGETALL", key]).await.ok()? {
            Value::Array(items) => {
                let mut pairs: Vec<String> = items
                    .chunks(2)
                    .map(|p| format!("{}={}", text(&p[0]).unwrap(), text(&p[1]).unwrap()))
                    .collect();
                pairs.sort();
                pairs
            }
            // LOADING, CLUSTERDOWN...: not ready yet.
            Value::Error(_) => return None,
            other => panic!("HGETALL {key}: {other:?}"),
        };
        let encoding =
            text(&conn.call(&["OBJECT", "ENCODING", key]).await.ok()?).unwrap_or_default();
        let ttl = conn.call(&["PTTL", key]).await.ok()?;
        out.push((
            key.to_string(),
            fields,
            encoding,
            matches!(ttl, Value::Int(n) if n > 0),
        ));
    }
    Some(out)
}

async fn call(conn: &mut RespConnection, args: &[&str]) -> Value {
    conn.call(args)
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Waits until the replica holds what the primary holds.
/// Waits until the replica holds what the primary holds; `encodings`: their encodings too (a
/// snapshot carries fields, and a replica loading one packs a hash that fits, as Redis does
/// loading an RDB file).
async fn until_same(
    primary: &mut RespConnection,
    replica_addr: &str,
    context: &str,
    encodings: bool,
) -> Vec<KeyState> {
    let strip = |mut s: Vec<KeyState>| {
        if !encodings {
            s.iter_mut().for_each(|k| k.2.clear());
        }
        s
    };
    let expected = strip(state(primary).await.expect("the primary answers"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut replica) = RespConnection::connect(replica_addr, Duration::from_secs(2)).await
            && replica.call(&["READONLY"]).await.is_ok()
        {
            let seen = state(&mut replica).await.map(strip);
            if seen.as_ref() == Some(&expected) {
                return expected;
            }
            assert!(
                Instant::now() < deadline,
                "{context}: the replica holds\n{seen:?}\nthe primary\n{expected:?}"
            );
        }
        assert!(
            Instant::now() < deadline,
            "{context}: the replica never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_holds_the_primarys_hashes_streamed_and_after_a_full_resync() {
    run_test(
        "a_replica_holds_the_primarys_hashes_streamed_and_after_a_full_resync",
        async {
            let (cluster, shard) = start_shard().await;
            let mut p = cluster.node(shard.primary).connect().await.unwrap();
            // Field by field, in both encodings.
            call(&mut p, &["HSET", "small", "a", "1", "b", "2", "c", "3"]).await;
            call(&mut p, &["HDEL", "small", "b"]).await;
            for i in 0..600 {
                let (f, v) = (format!("field{i}"), format!("value{i}"));
                call(&mut p, &["HSET", "big", &f, &v]).await;
            }
            for i in 0..100 {
                call(&mut p, &["HDEL", "big", &format!("field{}", i * 3)]).await;
            }
            call(&mut p, &["HINCRBY", "counted", "n", "40"]).await;
            call(&mut p, &["HINCRBY", "counted", "n", "2"]).await;
            call(&mut p, &["HINCRBYFLOAT", "counted", "x", "1.5"]).await;
            call(&mut p, &["EXPIRE", "counted", "1000"]).await;
            // Whole: RENAME and COPY.
            // (Both keys of each in one slot: this is a cluster.)
            call(&mut p, &["HSET", "{renamed}from", "k", "v"]).await;
            call(&mut p, &["RENAME", "{renamed}from", "renamed"]).await;
            call(&mut p, &["COPY", "big", "{big}copied"]).await;
            call(&mut p, &["HSET", "{big}copied", "extra", "1"]).await;
            // A transaction (its keys in one slot), and a hash emptied by HDEL.
            call(&mut p, &["MULTI"]).await;
            call(&mut p, &["HSET", "tx", "a", "1", "b", "2"]).await;
            call(&mut p, &["HDEL", "tx", "a"]).await;
            call(&mut p, &["HSET", "{tx}gone", "f", "v"]).await;
            call(&mut p, &["HDEL", "{tx}gone", "f"]).await;
            let exec = call(&mut p, &["EXEC"]).await;
            assert!(
                matches!(&exec, Value::Array(items) if items.len() == 4),
                "{exec:?}"
            );
            // A string replaced by a hash and back.
            call(&mut p, &["SET", "flip", "string"]).await;
            call(&mut p, &["DEL", "flip"]).await;
            call(&mut p, &["HSET", "flip", "f", "v"]).await;
            let replica = cluster.node(shard.replicas[0]).resp_addr();
            let streamed = until_same(&mut p, &replica, "streamed", false).await;
            assert_eq!(streamed[1].1.len(), 500, "{:?}", &streamed[1].1[..3]);
            // (Encodings are compared on the primary: a replica packs a hash it receives whole,
            // as Redis packs one it loads, when it fits.)
            let on_primary = state(&mut p).await.unwrap();
            assert_eq!(on_primary[1].2, "hashtable");
            assert_eq!(streamed[0].1, ["a=1", "c=3"]);
            assert_eq!(streamed[2].1, ["n=42", "x=1.5"]);
            assert!(streamed[2].3, "counted keeps its TTL");
            assert_eq!(streamed[5].1, ["b=2"]);
            assert_eq!(streamed[3].1, ["k=v"], "renamed");
            assert_eq!(streamed[4].1.len(), 501, "copied, and one more");
            assert_eq!(on_primary[4].2, "hashtable", "COPY keeps the encoding");
            let mut r = RespConnection::connect(&replica, Duration::from_secs(2))
                .await
                .unwrap();
            call(&mut r, &["READONLY"]).await;
            assert_eq!(call(&mut r, &["EXISTS", "{tx}gone"]).await, Value::Int(0));
            assert_eq!(
                call(&mut r, &["TYPE", "flip"]).await,
                Value::Simple(b"hash".to_vec())
            );

            // The replica comes back empty: it takes a full resync, hashes whole in it.
            let node = cluster.node(shard.replicas[0]);
            node.kill().unwrap();
            node.wait_exit(Duration::from_secs(10)).await.unwrap();
            node.restart().unwrap();
            node.wait_ready(Duration::from_secs(20)).await.unwrap();
            call(&mut p, &["HSET", "small", "after", "restart"]).await;
            let resynced = until_same(&mut p, &replica, "after a full resync", false).await;
            assert_eq!(resynced[0].1, ["a=1", "after=restart", "c=3"]);
            assert_eq!(resynced[3].1, ["k=v"]);
            assert_eq!(resynced[4].1.len(), 501);
        },
    )
    .await;
}
