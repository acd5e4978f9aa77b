//! One shard of a primary and two replicas, from the outside (real `shoal server` processes
//! started by shoal-testkit): what its nodes say they are (`HELLO`, `INFO`), `WAIT` after
//! every write, and a cluster whose nodes require a password.
//!
//! The tests take turns (one cluster at a time), each bounded by [`TEST_LIMIT`].

use std::future::Future;
use std::time::{Duration, Instant};

use shoal_testkit::resp::{RespConnection, text};
use shoal_testkit::{ClusterOptions, NodeProcess, ShardNodes, TestCluster, Value};

mod common;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(60);

/// How long a plain RESP exchange may take.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `body` alone (after any other test of this file) and within [`TEST_LIMIT`].
async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// A cluster of one shard (a primary and two replicas), and that shard.
async fn start_shard(options: ClusterOptions) -> (TestCluster, ShardNodes) {
    TestCluster::start_shard(SHOAL, 2, options).await
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

/// Waits until `WAIT 2` after a write on `primary` answers 2: both replicas stream.
async fn until_both_replicas_acknowledge(primary: &mut RespConnection) {
    let started = Instant::now();
    loop {
        assert_eq!(primary.call(&["SET", "warm-up", "1"]).await.unwrap(), ok());
        let acked = primary.call(&["WAIT", "2", "500"]).await.unwrap();
        if acked == Value::Int(2) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the replicas never both acknowledged (last WAIT: {acked:?})"
        );
    }
}

/// The `HELLO 3` map's field `name`, as text.
fn hello_field(hello: &Value, name: &str) -> String {
    let Value::Map(pairs) = hello else {
        panic!("HELLO 3 answered {hello:?}");
    };
    pairs
        .iter()
        .find(|(k, _)| text(k).as_deref() == Some(name))
        .and_then(|(_, v)| text(v))
        .unwrap_or_else(|| panic!("no {name} in {hello:?}"))
}

/// `HELLO 3`'s `mode` and `role` on `node`, and `INFO server`'s `redis_mode`.
async fn says(node: &NodeProcess) -> (String, String, String) {
    let mut conn = node.connect().await.unwrap();
    let hello = conn.call(&["HELLO", "3"]).await.unwrap();
    let info = node.info("server").await.unwrap();
    (
        hello_field(&hello, "mode"),
        hello_field(&hello, "role"),
        info.get("redis_mode").unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_of_a_cluster_say_cluster_and_replicas_say_replica() {
    run_test(
        "nodes_of_a_cluster_say_cluster_and_replicas_say_replica",
        async {
            let (cluster, shard) = start_shard(ClusterOptions::default()).await;
            let mut primary = cluster.node(shard.primary).connect().await.unwrap();
            until_both_replicas_acknowledge(&mut primary).await;
            // As Redis 7 with `cluster-enabled yes`: `mode: cluster`, `redis_mode:cluster`,
            // and a replica's HELLO says `role: replica`.
            assert_eq!(
                says(cluster.node(shard.primary)).await,
                ("cluster".into(), "master".into(), "cluster".into())
            );
            for &r in &shard.replicas {
                assert_eq!(
                    says(cluster.node(r)).await,
                    ("cluster".into(), "replica".into(), "cluster".into()),
                    "{}",
                    cluster.node(r).name()
                );
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_writes_each_followed_by_wait_are_acknowledged_at_once() {
    run_test(
        "fifty_writes_each_followed_by_wait_are_acknowledged_at_once",
        async {
            // With HTTP, for the primary's /metrics (start_shard serves none).
            let cluster = TestCluster::start(SHOAL, 1, 2, ClusterOptions::default())
                .await
                .expect("the cluster starts");
            let shard = cluster.shards().await.expect("the shards").remove(0);
            let mut primary = cluster.node(shard.primary).connect().await.unwrap();
            until_both_replicas_acknowledge(&mut primary).await;
            // Back to back: each WAIT asks for acknowledgements right after the last one was
            // answered. A request dropped for coming too soon after the previous one left the
            // WAIT to the replicas' periodic acknowledgement, 100 ms apart: 2.5 s on average
            // for 50 pairs, against milliseconds when every WAIT is served.
            let started = Instant::now();
            let mut slowest = Duration::ZERO;
            for i in 0..50 {
                let value = i.to_string();
                assert_eq!(primary.call(&["SET", "k", &value]).await.unwrap(), ok());
                let asked = Instant::now();
                let acked = primary.call(&["WAIT", "2", "2000"]).await.unwrap();
                slowest = slowest.max(asked.elapsed());
                assert_eq!(acked, Value::Int(2), "WAIT after write {i}");
            }
            let took = started.elapsed();
            eprintln!("50 SET + WAIT 2 pairs in {took:?} (slowest WAIT {slowest:?})");
            assert!(
                took < Duration::from_millis(50 * 30),
                "50 SET + WAIT 2 pairs took {took:?} (slowest WAIT {slowest:?})"
            );
            // The primary's /metrics has each replica's lag, which WAIT just showed small.
            let node = cluster.node(shard.primary);
            let url = format!("http://{}/metrics", node.http_addr().expect("an HTTP port"));
            let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
            let series = |name: &str| -> Vec<f64> {
                text.lines()
                    .filter(|l| l.starts_with(&format!("{name}{{replica=\"127.0.0.1:")))
                    .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
                    .collect()
            };
            let lags = series("shoal_replication_replica_lag_bytes");
            let ages = series("shoal_replication_replica_ack_age_seconds");
            assert_eq!((lags.len(), ages.len()), (2, 2), "{text}");
            assert!(ages.iter().all(|&age| age < 2.0), "{ages:?}");
            assert!(lags.iter().all(|&lag| lag < 1e6), "{lags:?}");
            assert!(text.contains("\nshoal_replication_lag_bytes "), "{text}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_password_replicates_forwards_and_refuses_strangers() {
    run_test(
        "a_cluster_with_a_password_replicates_forwards_and_refuses_strangers",
        async {
            // The replicas join through the founder's RESP port and follow the primary on
            // theirs; forwarding goes through a client of the node's own: all need the
            // password.
            let (cluster, shard) = start_shard(ClusterOptions {
                requirepass: Some("s3cret".into()),
                routing: Some("forward".into()),
                ..ClusterOptions::default()
            })
            .await;
            let mut primary = cluster.node(shard.primary).connect().await.unwrap();
            until_both_replicas_acknowledge(&mut primary).await;
            assert_eq!(primary.call(&["SET", "guarded", "v1"]).await.unwrap(), ok());
            // Bit edits made where the value lies reach the replicas as the whole value.
            for (offset, bit) in [("1", "1"), ("7", "1"), ("1", "0"), ("12", "1")] {
                let old = primary
                    .call(&["SETBIT", "{b}bits", offset, bit])
                    .await
                    .unwrap();
                assert!(matches!(old, Value::Int(0 | 1)), "{old:?}");
            }
            let bitop = primary.call(&["BITOP", "NOT", "{b}not", "{b}bits"]).await;
            assert_eq!(bitop.unwrap(), Value::Int(2));
            let acked = primary.call(&["WAIT", "2", "5000"]).await.unwrap();
            assert_eq!(acked, Value::Int(2), "both replicas have the write");
            let value = Value::Bulk(b"v1".to_vec());
            for &r in &shard.replicas {
                let node = cluster.node(r);
                // Its own copy, streamed by the primary.
                let mut conn = node.connect().await.unwrap();
                assert_eq!(conn.call(&["READONLY"]).await.unwrap(), ok());
                assert_eq!(conn.call(&["GET", "guarded"]).await.unwrap(), value);
                let bits = conn.call(&["GET", "{b}bits"]).await.unwrap();
                assert_eq!(bits, Value::Bulk(vec![0x01, 0x08]), "{}", node.name());
                let not = conn.call(&["GET", "{b}not"]).await.unwrap();
                assert_eq!(not, Value::Bulk(vec![0xFE, 0xF7]), "{}", node.name());
                // Without READONLY, forwarded to the primary.
                let mut conn = node.connect().await.unwrap();
                assert_eq!(conn.call(&["GET", "guarded"]).await.unwrap(), value);
            }
            for node in cluster.nodes() {
                let mut stranger = RespConnection::connect(&node.resp_addr(), RESP_TIMEOUT)
                    .await
                    .unwrap();
                let refused = stranger.call(&["GET", "guarded"]).await.unwrap();
                assert_eq!(
                    refused,
                    Value::Error(b"NOAUTH Authentication required.".to_vec()),
                    "{}",
                    node.name()
                );
            }
        },
    )
    .await;
}

/// Waits up to 10 s for `check` to hold, asking every 50 ms.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `AUTH user password` on a new connection to `node` answers.
async fn auth_on(node: &NodeProcess, user: &str, password: &str) -> Value {
    let mut conn = node.connect().await.unwrap();
    conn.call(&["AUTH", user, password]).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_set_on_one_node_exist_on_every_node() {
    run_test("acl_users_set_on_one_node_exist_on_every_node", async {
        let (mut cluster, shard) = start_shard(ClusterOptions::default()).await;
        let primary = shard.primary;
        let (first, second) = (shard.replicas[0], shard.replicas[1]);

        // Made on a replica, the user reaches every node of the cluster.
        let made = cluster
            .node(first)
            .command(&[
                "ACL", "SETUSER", "alice", "on", ">pw", "~app:*", "+get", "+set",
            ])
            .await
            .unwrap();
        assert_eq!(made, ok());
        for &i in &[primary, first, second] {
            eventually("alice exists on every node", || async {
                auth_on(cluster.node(i), "alice", "pw").await == ok()
            })
            .await;
        }
        // With her rules: a key outside her patterns is refused on the primary too.
        let mut alice = cluster.node(primary).connect().await.unwrap();
        assert_eq!(alice.call(&["AUTH", "alice", "pw"]).await.unwrap(), ok());
        assert_eq!(alice.call(&["SET", "app:1", "v"]).await.unwrap(), ok());
        let denied = alice.call(&["GET", "other"]).await.unwrap();
        assert!(
            matches!(&denied, Value::Error(e) if e.starts_with(b"NOPERM")),
            "{denied:?}"
        );

        // A node that joins later has her as well.
        let joined = cluster.add_node(false).await.expect("a node joins");
        eventually("a new node has alice", || async {
            auth_on(cluster.node(joined), "alice", "pw").await == ok()
        })
        .await;

        // Deleted on another node, she is gone everywhere, and her connection is closed.
        let deleted = cluster
            .node(second)
            .command(&["ACL", "DELUSER", "alice"])
            .await
            .unwrap();
        assert_eq!(deleted, Value::Int(1));
        for &i in &[primary, first, second, joined] {
            eventually("alice is gone from every node", || async {
                matches!(
                    auth_on(cluster.node(i), "alice", "pw").await,
                    Value::Error(_)
                )
            })
            .await;
        }
        assert!(
            alice.call(&["GET", "app:1"]).await.is_err(),
            "her connection is closed"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reach_their_primary_as_masteruser_with_masterauth() {
    run_test(
        "replicas_reach_their_primary_as_masteruser_with_masterauth",
        async {
            // The nodes reach each other as a user of their own: `default` may not replicate.
            let dir = shoal_testkit::TestDir::new("masteruser").unwrap();
            let acl = dir.join("users.acl");
            std::fs::write(
                &acl,
                "user default on >admin ~* &* +@all -psync -replconf\n\
                 user replicator on >rpw ~* &* +@all\n",
            )
            .unwrap();
            let (cluster, shard) = start_shard(ClusterOptions {
                requirepass: Some("admin".into()),
                routing: Some("forward".into()),
                extra_args: [
                    "--aclfile",
                    acl.to_str().unwrap(),
                    "--masteruser",
                    "replicator",
                    "--masterauth",
                    "rpw",
                ]
                .map(String::from)
                .to_vec(),
                ..ClusterOptions::default()
            })
            .await;
            let mut primary = cluster.node(shard.primary).connect().await.unwrap();
            until_both_replicas_acknowledge(&mut primary).await;
            assert_eq!(primary.call(&["SET", "k", "v"]).await.unwrap(), ok());
            assert_eq!(
                primary.call(&["WAIT", "2", "5000"]).await.unwrap(),
                Value::Int(2)
            );
            // A replica forwards a write to the primary (as the replicator too).
            let mut replica = cluster.node(shard.replicas[0]).connect().await.unwrap();
            assert_eq!(replica.call(&["SET", "k2", "v2"]).await.unwrap(), ok());
        },
    )
    .await;
}

/// A replica serves `READONLY` reads while it hears from its primary, idle or not (the
/// primary's keep-alives come every fifth of `replica-read-max-staleness`), and sends them to
/// the primary with `-MOVED` once it has not heard from it within the bound; with the bound
/// lifted (0) it serves whatever it holds, as Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_from_its_primary_sends_reads_to_it_within_the_bound() {
    run_test(
        "a_replica_cut_off_from_its_primary_sends_reads_to_it_within_the_bound",
        async {
            // With HTTP, for the metric (start_shard leaves it out).
            let cluster = TestCluster::start(SHOAL, 1, 2, ClusterOptions::default())
                .await
                .expect("the cluster starts");
            let shard = cluster.shards().await.expect("the shards").remove(0);
            let primary_node = cluster.node(shard.primary);
            let mut primary = primary_node.connect().await.unwrap();
            until_both_replicas_acknowledge(&mut primary).await;
            assert_eq!(primary.call(&["SET", "fresh", "v1"]).await.unwrap(), ok());
            assert_eq!(
                primary.call(&["WAIT", "2", "5000"]).await.unwrap(),
                Value::Int(2)
            );
            // A bound of 300 ms (keep-alives every 60 ms), so that a busy machine's hiccups
            // do not stand for a silent primary; the default 50 ms works the same way.
            for node in [primary_node, cluster.node(shard.replicas[0])] {
                let set = node
                    .command(&["CONFIG", "SET", "replica-read-max-staleness", "300"])
                    .await
                    .unwrap();
                assert_eq!(set, ok());
            }
            let replica = cluster.node(shard.replicas[0]);
            let mut reader = replica.connect().await.unwrap();
            assert_eq!(reader.call(&["READONLY"]).await.unwrap(), ok());
            let value = Value::Bulk(b"v1".to_vec());
            // Idle for over a second, longer than the stream's idle keep-alive without a
            // bound (1 s): the keep-alives keep it fresh.
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                assert_eq!(reader.call(&["GET", "fresh"]).await.unwrap(), value);
            }
            // The primary stops (SIGSTOP, well within the failover's node timeout).
            let slot = shoal_cluster::key_slot(b"fresh");
            let moved = format!("MOVED {slot} {}", primary_node.resp_addr());
            primary_node.pause().unwrap();
            tokio::time::sleep(Duration::from_millis(450)).await;
            let answer = reader.call(&["GET", "fresh"]).await;
            primary_node.resume().unwrap();
            assert_eq!(answer.unwrap(), Value::Error(moved.into_bytes()));
            eventually("the replica serves reads again", || async {
                let mut conn = replica.connect().await.unwrap();
                assert_eq!(conn.call(&["READONLY"]).await.unwrap(), ok());
                conn.call(&["GET", "fresh"]).await.unwrap() == Value::Bulk(b"v1".to_vec())
            })
            .await;
            let stale = common::metric(replica, "shoal_cluster_stale_replica_reads_total").await;
            assert!(stale >= 1, "counted: {stale}");
            // Without the bound, Redis's behaviour: the replica answers what it has.
            let set = reader
                .call(&["CONFIG", "SET", "replica-read-max-staleness", "0"])
                .await
                .unwrap();
            assert_eq!(set, ok());
            primary_node.pause().unwrap();
            tokio::time::sleep(Duration::from_millis(120)).await;
            let answer = reader.call(&["GET", "fresh"]).await;
            primary_node.resume().unwrap();
            assert_eq!(answer.unwrap(), value);
        },
    )
    .await;
}
