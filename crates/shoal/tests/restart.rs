//! Nodes that remember: real `shoal server` processes (started by shoal-testkit, each with
//! its own `--dir`) killed (-9) and started again with the same command line.
//!
//! * A replica that is a controller voter comes back with the same id, resyncs, and votes.
//! * A primary comes back as a replica: its shard goes to a replica that holds the keys.
//! * Every node of a 3-shard, 2-replica cluster restarted at once: the same map, no keys,
//!   writes taken.
//! * A node restarted without its directory is a new node, and its old entry goes.
//!
//! The tests take turns (one cluster at a time): on a 2-core machine two clusters at once
//! would measure each other's scheduling. Every test is bounded.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use shoal_cluster::{ClusterMap, Health, NodeId, ShardId, key_slot};
use shoal_testkit::{ClusterOptions, NodeProcess, TestCluster, Value, is_settled};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(100);

/// How long the cluster may take to come to rest after a restart.
const SETTLE: Duration = Duration::from_secs(30);

/// Keys each test writes before a restart.
const KEYS: usize = 200;

async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

fn options(controllers: usize) -> ClusterOptions {
    ClusterOptions {
        http: false,
        controllers,
        ready_timeout: Duration::from_secs(60),
        ..ClusterOptions::default()
    }
}

/// One shard of a primary and two replicas, every node a controller voter.
async fn start_shard() -> TestCluster {
    TestCluster::start(SHOAL, 1, 2, options(3))
        .await
        .expect("the cluster starts")
}

/// Writes `key:0..KEYS` through `node` (the primary of every slot).
async fn write_keys(node: &NodeProcess) {
    for i in 0..KEYS {
        let key = format!("key:{i}");
        let reply = node
            .command(&["SET", key.as_str(), &format!("value-{i}")])
            .await
            .unwrap();
        assert_eq!(reply, Value::Simple(b"OK".to_vec()), "SET {key}");
    }
}

async fn dbsize(node: &NodeProcess) -> i64 {
    match node.command(&["DBSIZE"]).await {
        Ok(Value::Int(n)) => n,
        _ => -1,
    }
}

/// Waits until `node` holds `keys` keys.
async fn wait_for_keys(node: &NodeProcess, keys: i64, timeout: Duration) {
    let started = Instant::now();
    loop {
        let n = dbsize(node).await;
        if n == keys {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{} holds {n} keys, not {keys}, after {timeout:?}:\n{}",
            node.name(),
            node.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills (-9) node `index` and starts it again with its command line (and directory);
/// returns its id from before, once it answers again.
async fn kill_and_restart(cluster: &TestCluster, index: usize) -> NodeId {
    let node = cluster.node(index);
    let old = node.id().await.unwrap();
    node.kill().unwrap();
    node.restart().unwrap();
    node.wait_ready(Duration::from_secs(20)).await.unwrap();
    old
}

/// The ids of the nodes that run, as they answer `CLUSTER MYID` now.
async fn running_ids(cluster: &TestCluster) -> Vec<NodeId> {
    let mut ids = Vec::new();
    for (_, node) in cluster.reachable() {
        ids.push(node.id().await.unwrap());
    }
    ids
}

/// `INFO replication` of `node`, once it follows its primary with the link up.
async fn wait_until_replica(node: &NodeProcess, timeout: Duration) -> shoal_testkit::Info {
    let started = Instant::now();
    loop {
        let info = node.info("replication").await.unwrap();
        if info.get("role") == Some("slave") && info.get("master_link_status") == Some("up") {
            return info;
        }
        assert!(
            started.elapsed() < timeout,
            "{} does not follow a primary: {info:?}",
            node.name()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_voter_restarted_with_its_dir_keeps_its_id_and_its_seat() {
    run_test(
        "a_replica_voter_restarted_with_its_dir_keeps_its_id_and_its_seat",
        async {
            let cluster = start_shard().await;
            let status = cluster.status().await.unwrap();
            let leader = cluster.index_of(status.leader).unwrap();
            let shard = cluster.shard_nodes(&status.map).unwrap().remove(0);
            let restarted = *shard.replicas.iter().find(|&&r| r != leader).unwrap();
            let primary = cluster.node(shard.primary);
            write_keys(primary).await;
            wait_for_keys(cluster.node(restarted), KEYS as i64, SETTLE).await;

            let id = kill_and_restart(&cluster, restarted).await;
            let node = cluster.node(restarted);
            assert_eq!(node.id().await.unwrap(), id, "CLUSTER MYID is unchanged");
            let alive = running_ids(&cluster).await;
            let after = cluster
                .wait_until("the restarted replica back in its place", SETTLE, |s| {
                    is_settled(s, &alive)
                        && s.map
                            .shard(shard.shard)
                            .is_some_and(|sh| sh.replicas.contains(&id))
                })
                .await
                .unwrap();
            assert!(after.map.controllers.contains(&id), "still a voter");
            assert_eq!(after.map.nodes.len(), 3, "no new node");
            // It resyncs: a new process starts empty and takes a full copy.
            wait_for_keys(node, KEYS as i64, SETTLE).await;
            let info = wait_until_replica(node, SETTLE).await;
            assert_eq!(info.u64("shoal_full_syncs"), Some(1), "{info:?}");

            // Its vote counts: with the third voter killed, the leader and it still commit
            // (the third one is marked failed, which takes a commit).
            let third = (0..3).find(|i| *i != leader && *i != restarted).unwrap();
            let third_id = cluster.node(third).id().await.unwrap();
            cluster.node(third).kill().unwrap();
            cluster
                .wait_until("a commit without the third voter", SETTLE, |s| {
                    s.map
                        .node(third_id)
                        .is_some_and(|n| n.health == Health::Failed)
                })
                .await
                .unwrap();
            eprintln!(
                "{} restarted as {id:?}, voters {:?}",
                node.name(),
                after.map.controllers
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_restarted_with_its_dir_comes_back_as_a_replica() {
    run_test(
        "a_primary_restarted_with_its_dir_comes_back_as_a_replica",
        async {
            let cluster = start_shard().await;
            let map = cluster.status().await.unwrap().map;
            let shard = cluster.shard_nodes(&map).unwrap().remove(0);
            write_keys(cluster.node(shard.primary)).await;
            for r in &shard.replicas {
                wait_for_keys(cluster.node(*r), KEYS as i64, SETTLE).await;
            }

            let restarted_at = Instant::now();
            let id = kill_and_restart(&cluster, shard.primary).await;
            let node = cluster.node(shard.primary);
            assert_eq!(node.id().await.unwrap(), id, "CLUSTER MYID is unchanged");
            let alive = running_ids(&cluster).await;
            let after = cluster
                .wait_until("a replica to take over the shard", SETTLE, |s| {
                    is_settled(s, &alive)
                        && s.map
                            .shard(shard.shard)
                            .is_some_and(|sh| sh.primary != id && sh.replicas.contains(&id))
                })
                .await
                .unwrap();
            assert_eq!(after.map.nodes.len(), 3, "no new node");
            assert_eq!(after.map.slots, map.slots, "no slot moves");
            let new_primary = after.map.shard(shard.shard).unwrap().primary;
            let successor = cluster.node(cluster.index_of(new_primary).unwrap());
            cluster
                .wait_for_primaries(SETTLE)
                .await
                .expect("the new primary serves");
            // The keys live on: the shard went to a replica that held them.
            assert_eq!(dbsize(successor).await, KEYS as i64);
            assert_eq!(
                successor.command(&["GET", "key:7"]).await.unwrap(),
                Value::Bulk(b"value-7".to_vec())
            );
            // The restarted node follows it and gets them back.
            wait_for_keys(node, KEYS as i64, SETTLE).await;
            let info = wait_until_replica(node, SETTLE).await;
            assert_eq!(
                info.u64("master_port"),
                Some(successor.ports().resp as u64),
                "{info:?}"
            );
            eprintln!(
                "{} restarted as {id:?}: a replica of {new_primary:?}, in sync {} ms after",
                node.name(),
                restarted_at.elapsed().as_millis()
            );
        },
    )
    .await;
}

/// A map as a restart must keep it: node ids, each shard's members, slot owners.
fn shape(map: &ClusterMap) -> (BTreeSet<NodeId>, BTreeMap<ShardId, BTreeSet<NodeId>>) {
    (
        map.nodes.keys().copied().collect(),
        map.shards
            .iter()
            .map(|s| (s.id, s.members().collect()))
            .collect(),
    )
}

/// A key of `shard` in `map`.
fn key_of(map: &ClusterMap, shard: ShardId, prefix: &str) -> String {
    (0u64..)
        .map(|n| format!("{prefix}:{n}"))
        .find(|k| map.slots.get(key_slot(k.as_bytes())) == Some(shard))
        .expect("every shard owns slots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_restarted_with_its_dirs_comes_back_with_the_same_map() {
    run_test(
        "a_whole_cluster_restarted_with_its_dirs_comes_back_with_the_same_map",
        async {
            let cluster = TestCluster::start(SHOAL, 3, 2, options(3))
                .await
                .expect("the cluster starts");
            let before = cluster.status().await.unwrap().map;
            for shard in &before.shards {
                let primary = before.node(shard.primary).unwrap();
                let index = cluster.index_of(primary.id).unwrap();
                let key = key_of(&before, shard.id, "old");
                let reply = cluster
                    .node(index)
                    .command(&["SET", key.as_str(), "v"])
                    .await
                    .unwrap();
                assert_eq!(reply, Value::Simple(b"OK".to_vec()));
            }

            let restarted_at = Instant::now();
            for node in cluster.nodes() {
                node.kill().unwrap();
            }
            for node in cluster.nodes() {
                node.restart().unwrap();
            }
            for node in cluster.nodes() {
                node.wait_ready(Duration::from_secs(30)).await.unwrap();
            }
            let alive = running_ids(&cluster).await;
            assert_eq!(
                alive.iter().copied().collect::<BTreeSet<_>>(),
                before.nodes.keys().copied().collect(),
                "every node has its id back"
            );
            let after = cluster
                .wait_until("the cluster to come back", Duration::from_secs(60), |s| {
                    is_settled(s, &alive) && s.map.nodes.len() == before.nodes.len()
                })
                .await
                .unwrap();
            assert_eq!(
                shape(&after.map),
                shape(&before),
                "the same nodes and shards"
            );
            assert_eq!(after.map.slots, before.slots, "the same slot owners");
            let map = cluster
                .wait_for_primaries(SETTLE)
                .await
                .expect("every primary serves");
            for shard in &map.shards {
                let primary = map.node(shard.primary).unwrap();
                let node = cluster.node(cluster.index_of(primary.id).unwrap());
                let old = key_of(&map, shard.id, "old");
                assert_eq!(
                    node.command(&["GET", old.as_str()]).await.unwrap(),
                    Value::Null,
                    "keys are not kept"
                );
                let new = key_of(&map, shard.id, "new");
                assert_eq!(
                    node.command(&["SET", new.as_str(), "w"]).await.unwrap(),
                    Value::Simple(b"OK".to_vec()),
                    "the shard takes writes"
                );
            }
            eprintln!(
                "9 nodes back in {} ms, map epoch {} -> {}",
                restarted_at.elapsed().as_millis(),
                before.epoch,
                after.map.epoch
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_its_dir_joins_as_a_new_node() {
    run_test(
        "a_node_restarted_without_its_dir_joins_as_a_new_node",
        async {
            // One controller member: the restarted replica holds no seat.
            let cluster = TestCluster::start(SHOAL, 1, 2, options(1))
                .await
                .expect("the cluster starts");
            let map = cluster.status().await.unwrap().map;
            let shard = cluster.shard_nodes(&map).unwrap().remove(0);
            let restarted = *shard.replicas.iter().find(|&&r| r != 0).unwrap();
            let node = cluster.node(restarted);
            let old = node.id().await.unwrap();
            node.kill().unwrap();
            node.restart_without_dir().unwrap();
            node.wait_ready(Duration::from_secs(20)).await.unwrap();
            let new = node.id().await.unwrap();
            assert_ne!(new, old, "without its directory it is a new node");
            let alive = running_ids(&cluster).await;
            let after = cluster
                .wait_until("the new node in the old one's place", SETTLE, |s| {
                    is_settled(s, &alive)
                        && s.map.node(old).is_none()
                        && s.map
                            .shard(shard.shard)
                            .is_some_and(|sh| sh.replicas.contains(&new))
                })
                .await
                .unwrap();
            assert_eq!(after.map.nodes.len(), 3, "the old entry is gone");
            assert_eq!(after.map.shards.len(), 1, "no new shard");
            wait_until_replica(node, SETTLE).await;
        },
    )
    .await;
}
