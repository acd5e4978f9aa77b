//! A cluster that loses what clusters lose (controller voters, its leader's node, a majority
//! of its voters) keeps serving, on real `shoal server` processes (shoal-testkit).
//!
//! The tests take turns with each other (one cluster at a time, as in `failover.rs`) and are
//! bounded by [`TEST_LIMIT`].

use std::future::Future;
use std::time::{Duration, Instant};

mod common;

use common::*;
use shoal_cluster::{ClusterMap, Health, NodeId, ShardId, key_slot};
use shoal_testkit::resp::{self, text};
use shoal_testkit::{ClusterOptions, Info, NodeProcess, TestCluster};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(80);

/// The nodes' `--node-timeout` (the server's default).
const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// How long a plain RESP exchange may take.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// Nine nodes: three shards of a primary and two replicas.
async fn start_nine() -> TestCluster {
    TestCluster::start(
        SHOAL,
        3,
        2,
        ClusterOptions {
            node_timeout_ms: NODE_TIMEOUT.as_millis() as u64,
            http: true,
            ..ClusterOptions::default()
        },
    )
    .await
    .expect("the cluster starts")
}

/// A key whose slot `shard` owns in `map`.
fn key_of(map: &ClusterMap, shard: ShardId, prefix: &str) -> String {
    (0..1_000_000)
        .map(|n| format!("{prefix}{n}"))
        .find(|k| map.slots.get(key_slot(k.as_bytes())) == Some(shard))
        .expect("every shard owns slots")
}

/// Writes `key` on the node at `addr`; the reply as text (`OK`, or the error).
async fn set(addr: &str, key: &str, value: &str) -> String {
    match resp::command(addr, &["SET", key, value], RESP_TIMEOUT).await {
        Ok(reply) => text(&reply).unwrap_or_else(|| format!("{reply:?}")),
        Err(e) => format!("no answer: {e}"),
    }
}

/// What every health signal of `node` says: `CLUSTER INFO`'s `cluster_state` and
/// `shoal_controller_quorum`, `INFO cluster`'s `shoal_cluster_state`, `GET /health`'s status
/// code and `status`, and the `shoal_controller_quorum` metric.
#[derive(Debug, PartialEq, Eq)]
struct Signals {
    cluster_state: String,
    info_quorum: String,
    info_state: String,
    health: (u16, String),
    metric_quorum: String,
}

async fn signals(node: &NodeProcess) -> Signals {
    let info = match node.command(&["CLUSTER", "INFO"]).await {
        Ok(reply) => Info::parse(&text(&reply).unwrap_or_default()),
        Err(e) => panic!("CLUSTER INFO on {}: {e}", node.name()),
    };
    let section = node.info("cluster").await.expect("INFO cluster");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://{}", node.http_addr().expect("HTTP is on"));
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    let code = health.status().as_u16();
    let body: serde_json::Value = health.json().await.unwrap();
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let metric_quorum = metrics
        .lines()
        .find_map(|l| l.strip_prefix("shoal_controller_quorum "))
        .unwrap_or("missing")
        .to_string();
    Signals {
        cluster_state: info.get("cluster_state").unwrap_or("missing").into(),
        info_quorum: info
            .get("shoal_controller_quorum")
            .unwrap_or("missing")
            .into(),
        info_state: section
            .get("shoal_cluster_state")
            .unwrap_or("missing")
            .into(),
        health: (code, body["status"].as_str().unwrap_or("missing").into()),
        metric_quorum,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primaries_keep_writing_when_a_majority_of_the_voters_is_gone() {
    run_test(
        "primaries_keep_writing_when_a_majority_of_the_voters_is_gone",
        async {
            let cluster = start_nine().await;
            let status = cluster.status().await.unwrap();
            let map = status.map.clone();
            let primaries: Vec<NodeId> = map.shards.iter().map(|s| s.primary).collect();
            // A majority of the voters, replicas only.
            let voters: Vec<NodeId> = map.controllers.clone();
            let victims: Vec<NodeId> = voters
                .iter()
                .copied()
                .filter(|v| !primaries.contains(v))
                .take(voters.len() / 2 + 1)
                .collect();
            assert_eq!(
                victims.len(),
                voters.len() / 2 + 1,
                "a majority of the voters {voters:?} are replicas"
            );
            for victim in &victims {
                let index = cluster.index_of(*victim).unwrap();
                cluster.node(index).kill().unwrap();
            }
            let killed = Instant::now();
            eprintln!("killed voters {victims:?} of {voters:?}");
            // For three node timeouts, every primary takes every write.
            let targets: Vec<(String, String)> = map
                .shards
                .iter()
                .map(|s| {
                    let index = cluster.index_of(s.primary).unwrap();
                    (
                        cluster.node(index).resp_addr(),
                        key_of(&map, s.id, "quorum:"),
                    )
                })
                .collect();
            let healthy = Signals {
                cluster_state: "ok".into(),
                info_quorum: "1".into(),
                info_state: "ok".into(),
                health: (200, "ok".into()),
                metric_quorum: "1".into(),
            };
            let survivor = cluster.index_of(primaries[0]).unwrap();
            // (Read right after the kill: the controller's majority is not missed yet.)
            assert_eq!(signals(cluster.node(survivor)).await, healthy);
            let mut writes = 0;
            while killed.elapsed() < NODE_TIMEOUT * 3 {
                for (addr, key) in &targets {
                    let reply = set(addr, key, &writes.to_string()).await;
                    assert_eq!(
                        reply,
                        "OK",
                        "a write to the primary at {addr} {:?} after the voters died",
                        killed.elapsed()
                    );
                    writes += 1;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!("{writes} writes, every one taken");
            // Every signal of every live node says the controller has lost its majority,
            // while the data path serves.
            let degraded = Signals {
                cluster_state: "ok".into(),
                info_quorum: "0".into(),
                info_state: "degraded".into(),
                health: (200, "degraded".into()),
                metric_quorum: "0".into(),
            };
            for (_, node) in cluster.reachable() {
                if victims.iter().any(|v| Some(*v) == node.known_id()) {
                    continue;
                }
                assert_eq!(signals(node).await, degraded, "{}", node.name());
            }
            // And `shoal cluster status`, asked through a survivor.
            let out = std::process::Command::new(SHOAL)
                .args(["cluster", "status", "--node"])
                .arg(cluster.node(survivor).resp_addr())
                .arg("--cluster-secret-file")
                .arg(shoal_testkit::cluster_secret_file())
                .output()
                .expect("shoal cluster status runs");
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && text.starts_with("controller DOWN: "),
                "cluster status said: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            // The dead voters come back with their directories: the controller has its
            // majority again by itself, and every signal says so.
            for victim in &victims {
                let index = cluster.index_of(*victim).unwrap();
                cluster.node(index).restart().unwrap();
            }
            let restarted = Instant::now();
            let back = loop {
                let now = signals(cluster.node(survivor)).await;
                if now == healthy {
                    break restarted.elapsed();
                }
                assert!(
                    restarted.elapsed() < Duration::from_secs(20),
                    "the controller did not come back: {now:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            eprintln!("voters restarted with their directories: healthy again after {back:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_s_leader_moves_off_primaries() {
    run_test("the_controller_s_leader_moves_off_primaries", async {
        let cluster = start_nine().await;
        let started = Instant::now();
        // The founder leads at first, and it is a primary: it hands its leadership to a
        // voter that is not one.
        let status = cluster
            .wait_until(
                "a leader that is no primary",
                Duration::from_secs(15),
                |s| !s.map.shards.iter().any(|shard| shard.primary == s.leader),
            )
            .await
            .expect("the leadership moves to a replica");
        eprintln!(
            "leader {:?} is a replica after {:?}",
            status.leader,
            started.elapsed()
        );
        assert!(status.map.controllers.contains(&status.leader));
    })
    .await;
}

/// The nine-node cluster once the controller's leadership has moved off the founder (a
/// primary) to a replica, as it does a few seconds after the start.
async fn start_nine_settled() -> TestCluster {
    let cluster = start_nine().await;
    cluster
        .wait_until(
            "a leader that is no primary",
            Duration::from_secs(15),
            |s| {
                s.map.controllers.len() == 5
                    && !s.map.shards.iter().any(|sh| sh.primary == s.leader)
            },
        )
        .await
        .expect("the leadership settles on a replica");
    cluster
}

/// Waits until the controller has five healthy voters again, none of them in `dead`.
async fn wait_for_full_voters(cluster: &TestCluster, dead: &[NodeId]) -> Duration {
    let started = Instant::now();
    cluster
        .wait_until("five healthy voters again", Duration::from_secs(30), |s| {
            s.map.controllers.len() == 5
                && s.map.controllers.iter().all(|v| {
                    !dead.contains(v) && s.map.node(*v).is_some_and(|n| n.health == Health::Ok)
                })
        })
        .await
        .expect("the controller replaces its dead voters");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_s_node_and_a_primary_at_once_loses_no_acknowledged_write() {
    run_test(
        "killing_the_leader_s_node_and_a_primary_at_once_loses_no_acknowledged_write",
        async {
            let cluster = start_nine_settled().await;
            let status = cluster.status().await.unwrap();
            let map = status.map.clone();
            let leader = status.leader;
            // A primary in another shard than the leader (a shard that loses two of its three
            // nodes has no replica left to acknowledge `WAIT 1`), a non-voter if one is.
            let others: Vec<_> = map
                .shards
                .iter()
                .filter(|s| !s.members().any(|m| m == leader))
                .collect();
            let shard = others
                .iter()
                .find(|s| !map.controllers.contains(&s.primary))
                .or_else(|| others.first())
                .copied()
                .expect("a shard the leader is not in")
                .clone();
            let router = router(&cluster).await;
            let (recorder, load) = steady_load(&router, 4, WAIT_1);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let killed_at = Instant::now();
            for victim in [leader, shard.primary] {
                cluster
                    .node(cluster.index_of(victim).unwrap())
                    .kill()
                    .unwrap();
            }
            let victim = cluster.index_of(shard.primary).unwrap();
            let successor =
                wait_for_promotion(&cluster, shard.id, victim, Duration::from_secs(10)).await;
            let successor_addr = cluster.node(successor).resp_addr();
            let first_ack =
                first_ack_by(&recorder, &map, shard.id, &successor_addr, killed_at).await;
            let voters_back = wait_for_full_voters(&cluster, &[leader, shard.primary]).await;
            let report = finish_load(&recorder, load, &router).await;
            eprintln!(
                "the leader's node and a primary killed: the successor acknowledged a write \
                 {} ms after the kills; five voters again after {} ms more; history (WAIT 1): {}",
                first_ack.as_millis(),
                voters_back.as_millis(),
                summary(&report)
            );
            assert!(report.is_valid(), "{report}");
            assert!(
                first_ack < Duration::from_secs(4),
                "the shard went {first_ack:?} without a primary"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_two_voters_one_of_them_the_leader_stops_no_shard() {
    run_test(
        "killing_two_voters_one_of_them_the_leader_stops_no_shard",
        async {
            let cluster = start_nine_settled().await;
            let status = cluster.status().await.unwrap();
            let map = status.map.clone();
            let primaries: Vec<NodeId> = map.shards.iter().map(|s| s.primary).collect();
            let leader = status.leader;
            // Another voter that is no primary, in another shard than the leader if one is
            // (two dead replicas of one shard would leave `WAIT 1` nobody to answer).
            let shard_of = |id: NodeId| map.placement_of(id).map(|(s, _)| s.id);
            let candidates: Vec<NodeId> = map
                .controllers
                .iter()
                .copied()
                .filter(|v| *v != leader && !primaries.contains(v))
                .collect();
            let other = candidates
                .iter()
                .copied()
                .find(|v| shard_of(*v) != shard_of(leader))
                .or_else(|| candidates.first().copied())
                .expect("a voter that is neither leader nor primary");
            let router = router(&cluster).await;
            let (recorder, load) = steady_load(&router, 4, WAIT_1);
            tokio::time::sleep(Duration::from_millis(500)).await;
            for victim in [leader, other] {
                cluster
                    .node(cluster.index_of(victim).unwrap())
                    .kill()
                    .unwrap();
            }
            // Through the election and for a while after it, every shard keeps writing.
            tokio::time::sleep(NODE_TIMEOUT * 3).await;
            let voters_back = wait_for_full_voters(&cluster, &[leader, other]).await;
            let report = finish_load(&recorder, load, &router).await;
            eprintln!(
                "two voters killed, one the leader: five voters again {} ms after the kills \
                 plus {} ms; history (WAIT 1): {}",
                (NODE_TIMEOUT * 3).as_millis(),
                voters_back.as_millis(),
                summary(&report)
            );
            assert!(report.is_valid(), "{report}");
            let window = report
                .longest_key_window
                .as_ref()
                .map_or(Duration::ZERO, |(_, w)| w.duration());
            assert!(
                window < NODE_TIMEOUT,
                "a key could not be written for {window:?}: {}",
                summary(&report)
            );
        },
    )
    .await;
}
