//! Replication and failover from the outside, on real `shoal server` processes (started by
//! shoal-testkit): a primary killed (-9), paused (SIGSTOP) or cut off from the controller
//! under load, the controller's leader killed in the middle of a failover, a replica's link
//! broken and healed, and a full resync of a large keyspace under writes.
//!
//! Load goes through [`Router`], a small client that follows `-MOVED` itself and never
//! retries a command that may have run, so the history ([`Recorder`], [`check`]) holds exactly
//! what the cluster acknowledged. With [`Ack::Replicas`] a write counts as acknowledged only
//! if the `WAIT 1 <timeout>` after it answered at least 1.
//!
//! The tests take turns (one cluster at a time), as in `cluster.rs`: on a 2-core machine two
//! clusters at once would measure each other's scheduling. Every test is bounded by
//! [`TEST_LIMIT`] and prints what it measured.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_cluster::ShardId;
use shoal_cluster::{ClusterMap, Health, key_slot};
use shoal_testkit::history::{Op, Report};
use shoal_testkit::relay::{CutMode, Relay};
use shoal_testkit::resp::{self, RespConnection, text};
use shoal_testkit::router::Ack;
use shoal_testkit::{
    ClusterOptions, JoinOptions, NodeProcess, OpKind, Recorder, ShardNodes, TestCluster, Value,
    check,
};

mod common;

use common::*;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(55);

/// How long a plain RESP exchange may take.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// `--node-timeout` where the test measures how fast a failover is: the server's default.
const FAST_NODE_TIMEOUT_MS: u64 = 1000;

/// Runs `body` alone (after any other test of this file) and within [`TEST_LIMIT`], and prints
/// how long it took.
async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

fn options(node_timeout_ms: u64) -> ClusterOptions {
    ClusterOptions {
        node_timeout_ms,
        http: false,
        ..ClusterOptions::default()
    }
}

/// `shards` shards of a primary and two replicas each.
async fn start_cluster(shards: usize, node_timeout_ms: u64) -> TestCluster {
    TestCluster::start(SHOAL, shards, 2, options(node_timeout_ms))
        .await
        .expect("the cluster starts")
}

/// The controller's shard: nodes 0-2, the controller members, one primary and two replicas.
async fn start_controller_shard(node_timeout_ms: u64) -> TestCluster {
    TestCluster::start(SHOAL, 1, 2, options(node_timeout_ms))
        .await
        .expect("the controller's shard starts")
}

/// Adds a shard whose nodes are none of the controller's: its primary (started with
/// `primary_env`) and two replicas. Returns the shard.
async fn add_outsider_shard(
    cluster: &mut TestCluster,
    primary_env: Vec<(String, String)>,
) -> ShardNodes {
    let outsider = cluster
        .add_node_with(JoinOptions {
            controller: false,
            env: primary_env,
            ..JoinOptions::default()
        })
        .await
        .expect("the outsider joins");
    for _ in 0..2 {
        cluster.add_node(false).await.expect("a replica joins");
    }
    let status = cluster.status().await.unwrap();
    let shard = cluster.shard_of_node(&status.map, outsider).unwrap();
    assert_eq!(
        (shard.primary, shard.replicas.len()),
        (outsider, 2),
        "the outsider leads a shard of its own: {shard:?}"
    );
    let outsider_id = cluster.node(outsider).known_id().unwrap();
    assert!(
        !status.map.controllers.contains(&outsider_id),
        "the outsider is no controller voter"
    );
    shard
}

/// Waits until node `index` is healthy and a replica of `shard` in the controller's map, and
/// streams from `primary` (`INFO replication`: link up, no snapshot loading); returns that
/// INFO.
async fn wait_until_following(
    cluster: &TestCluster,
    index: usize,
    shard: ShardId,
    primary: usize,
    timeout: Duration,
) -> shoal_testkit::Info {
    let id = cluster.node(index).known_id().unwrap();
    cluster
        .wait_until(
            &format!("{} to be a healthy replica", cluster.node(index).name()),
            timeout,
            |s| {
                s.map.node(id).is_some_and(|n| n.health == Health::Ok)
                    && s.map
                        .shard(shard)
                        .is_some_and(|sh| sh.replicas.contains(&id))
            },
        )
        .await
        .expect("the node is a healthy replica");
    let node = cluster.node(index);
    let primary_port = cluster.node(primary).ports().resp.to_string();
    poll(
        "the replica to stream from its primary",
        timeout,
        || async {
            let info = node.info("replication").await.map_err(|e| e.to_string())?;
            let streaming = info.get("role") == Some("slave")
                && info.get("master_port") == Some(primary_port.as_str())
                && info.get("master_link_status") == Some("up")
                && info.get("master_sync_in_progress") == Some("0");
            if streaming {
                Ok(info)
            } else {
                Err(format!("{:?}", info.0))
            }
        },
    )
    .await
}

/// A relay to the bus of each of `nodes`, and the environment that sends a node's bus
/// connections to them through it (`SHOAL_BUS_CONNECT_VIA`).
fn relays_to(nodes: &[NodeProcess]) -> (Vec<Relay>, Vec<(String, String)>) {
    let mut relays = Vec::new();
    let mut routes = Vec::new();
    for node in nodes {
        let relay = Relay::start(node.bus_addr().parse().unwrap()).unwrap();
        routes.push(format!("{}={}", node.bus_addr(), relay.addr()));
        relays.push(relay);
    }
    let env = vec![("SHOAL_BUS_CONNECT_VIA".to_string(), routes.join(","))];
    (relays, env)
}

/// A connection to `victim`'s RESP port (which the cut leaves alone), then every relay cut:
/// the connection and when the cut began.
async fn connect_then_cut(victim: &NodeProcess, relays: &[Relay]) -> (RespConnection, Instant) {
    let direct = RespConnection::connect(&victim.resp_addr(), RESP_TIMEOUT)
        .await
        .unwrap();
    let cut_at = Instant::now();
    for relay in relays {
        relay.cut(CutMode::Blackhole);
    }
    (direct, cut_at)
}

/// Waits (10 s at most) until every replica of `shard` streams from its primary.
async fn replicas_follow(cluster: &TestCluster, shard: &ShardNodes) {
    for &r in &shard.replicas {
        wait_until_following(
            cluster,
            r,
            shard.shard,
            shard.primary,
            Duration::from_secs(10),
        )
        .await;
    }
}

/// Waits until the replica of `shard` that was not promoted streams from `successor`, and
/// prints its resync counts.
async fn other_replica_follows(cluster: &TestCluster, shard: &ShardNodes, successor: usize) {
    let sibling = *shard.replicas.iter().find(|&&r| r != successor).unwrap();
    let info = wait_until_following(
        cluster,
        sibling,
        shard.shard,
        successor,
        Duration::from_secs(10),
    )
    .await;
    eprintln!(
        "the other replica {} follows {}: {}",
        cluster.node(sibling).name(),
        cluster.node(successor).name(),
        syncs(&info),
    );
}

/// A replica's resync counts, from its `INFO replication`, for a scenario's report.
fn syncs(info: &shoal_testkit::Info) -> String {
    format!(
        "full syncs {:?}, partial syncs {:?}",
        info.u64("shoal_full_syncs"),
        info.u64("shoal_partial_syncs")
    )
}

/// A connection that sent `READONLY` (reads on a replica).
async fn readonly(addr: &str) -> RespConnection {
    let mut conn = RespConnection::connect(addr, RESP_TIMEOUT).await.unwrap();
    let ok = conn.call(&["READONLY"]).await.unwrap();
    assert_eq!(ok, Value::Simple(b"OK".to_vec()), "READONLY on {addr}");
    conn
}

async fn dbsize(node: &NodeProcess) -> i64 {
    match node.command(&["DBSIZE"]).await {
        Ok(Value::Int(n)) => n,
        other => panic!("DBSIZE on {}: {other:?}", node.name()),
    }
}

/// Waits until `replica` holds as many keys as `primary` and has its replication offset.
async fn wait_for_same_data(primary: &NodeProcess, replica: &NodeProcess, timeout: Duration) {
    poll("the replica to hold the primary's data", timeout, || async {
        let p = primary.info("replication").await.map_err(|e| e.to_string())?;
        let r = replica.info("replication").await.map_err(|e| e.to_string())?;
        let (p_offset, r_offset) = (p.u64("master_repl_offset"), r.u64("slave_repl_offset"));
        let (p_keys, r_keys) = (dbsize(primary).await, dbsize(replica).await);
        if p_offset == r_offset && p_keys == r_keys {
            Ok(())
        } else {
            Err(format!(
                "primary offset {p_offset:?} keys {p_keys}, replica offset {r_offset:?} keys {r_keys}"
            ))
        }
    })
    .await;
}

/// The current map and a shard whose primary is not the controller's leader (killing that
/// one would also fail the controller over).
async fn shard_away_from_the_leader(cluster: &TestCluster) -> (ClusterMap, ShardNodes) {
    let status = cluster.status().await.unwrap();
    let leader = cluster.index_of(status.leader).unwrap();
    let map = status.map;
    let shard = cluster
        .shard_nodes(&map)
        .unwrap()
        .into_iter()
        .find(|s| s.primary != leader)
        .expect("a shard whose primary does not lead the controller");
    (map, shard)
}

fn acked_by(ack: &Ack) -> &'static str {
    match ack {
        Ack::Primary => "async",
        Ack::Replicas { .. } => "WAIT 1",
    }
}

// 1. kill -9 of a primary under steady writes.

/// What [`kill_a_primary_under_load`] measured.
struct KillResult {
    /// From the kill to the first write acknowledged by the successor.
    first_ack: Duration,
    /// The history's check.
    report: Report,
}

/// Kills (-9) a primary (not the controller's leader) of a 2-shard, 2-replica cluster under
/// a steady workload acknowledged as `ack` says, and checks the history.
async fn kill_a_primary_under_load(ack: Ack) -> KillResult {
    let cluster = start_cluster(2, FAST_NODE_TIMEOUT_MS).await;
    let (before, victim_shard) = shard_away_from_the_leader(&cluster).await;
    let victim = victim_shard.primary;
    let router = router(&cluster).await;
    let (recorder, load) = steady_load(&router, 4, ack);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let acked_before = acked_writes_in(&recorder.history().ops(), &before, victim_shard.shard)
        .filter(|(_, by)| *by == cluster.node(victim).resp_addr())
        .count();
    assert!(
        acked_before > 20,
        "the victim acknowledged only {acked_before} writes before the kill"
    );

    let killed_at = Instant::now();
    cluster.node(victim).kill().unwrap();
    let successor = wait_for_promotion(
        &cluster,
        victim_shard.shard,
        victim,
        Duration::from_secs(10),
    )
    .await;
    let promoted = killed_at.elapsed();
    assert!(victim_shard.replicas.contains(&successor));
    let successor_addr = cluster.node(successor).resp_addr();
    let first_ack = first_ack_by(
        &recorder,
        &before,
        victim_shard.shard,
        &successor_addr,
        killed_at,
    )
    .await;
    // Writes go on for a while on the new primary.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let report = finish_load(&recorder, load, &router).await;
    // The other replica follows the new primary, continuing its history (PSYNC2).
    other_replica_follows(&cluster, &victim_shard, successor).await;
    eprintln!(
        "kill -9 of {} ({}): {} promoted after {} ms (seen by the controller's status), \
         first write acknowledged on it {} ms after the kill",
        cluster.node(victim).name(),
        acked_by(&ack),
        cluster.node(successor).name(),
        promoted.as_millis(),
        first_ack.as_millis(),
    );
    eprintln!("history ({}): {}", acked_by(&ack), summary(&report));
    KillResult { first_ack, report }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_primary_with_wait_loses_no_acknowledged_write() {
    run_test(
        "kill_9_of_a_primary_with_wait_loses_no_acknowledged_write",
        async {
            let result = kill_a_primary_under_load(WAIT_1).await;
            assert!(
                result.first_ack < Duration::from_secs(2),
                "the first acknowledged write on the successor came {:?} after the kill",
                result.first_ack
            );
            let report = &result.report;
            assert!(
                report.lost.is_empty(),
                "writes acknowledged by WAIT were lost:\n{report}"
            );
            assert!(report.is_valid(), "{report}");
            assert!(
                report.unchecked_keys.is_empty(),
                "{:?}",
                report.unchecked_keys
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_primary_with_async_replication_counts_lost_writes() {
    run_test(
        "kill_9_of_a_primary_with_async_replication_counts_lost_writes",
        async {
            let result = kill_a_primary_under_load(Ack::Primary).await;
            let report = &result.report;
            // Asynchronous replication may lose what the primary acknowledged but had not
            // streamed yet: counted, not forbidden.
            eprintln!(
                "async replication: {} of {} acknowledged writes lost at the kill{}",
                report.lost.len(),
                report.checked_writes,
                if report.lost.is_empty() {
                    String::new()
                } else {
                    format!(":\n{report}")
                }
            );
            assert!(
                result.first_ack < Duration::from_secs(2),
                "the first acknowledged write on the successor came {:?} after the kill",
                result.first_ack
            );
            assert!(report.impossible.is_empty(), "{report}");
            assert!(report.divergent.is_empty(), "{report}");
        },
    )
    .await;
}

// 2. SIGSTOP of a primary past the node timeout, then SIGCONT.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_paused_past_the_node_timeout_comes_back_as_a_replica() {
    run_test(
        "a_primary_paused_past_the_node_timeout_comes_back_as_a_replica",
        async {
            let cluster = start_cluster(2, FAST_NODE_TIMEOUT_MS).await;
            let (before, shard) = shard_away_from_the_leader(&cluster).await;
            let victim = shard.primary;
            let router = router(&cluster).await;
            let (recorder, load) = steady_load(&router, 4, WAIT_1);
            tokio::time::sleep(Duration::from_millis(1000)).await;

            // A connection opened before the pause: what it sends while the node is stopped
            // is the first thing the node reads when it resumes.
            let stale_key = keys_of(&before, shard.shard, "stale:", 1).remove(0);
            let mut early =
                RespConnection::connect(&cluster.node(victim).resp_addr(), RESP_TIMEOUT)
                    .await
                    .unwrap();
            let paused_at = Instant::now();
            cluster.node(victim).pause().unwrap();
            let successor =
                wait_for_promotion(&cluster, shard.shard, victim, Duration::from_secs(10)).await;
            let promoted = paused_at.elapsed();
            // Paused clearly past the node timeout.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let stale_set = ["SET", stale_key.as_str(), "stale"];
            let (reply, ()) = tokio::join!(early.call(&stale_set), async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                cluster.node(victim).resume().unwrap();
            });
            let paused = paused_at.elapsed();
            let reply = reply.expect("the resumed node answers");
            eprintln!(
                "{} paused for {} ms ({} promoted after {} ms); a write sent to it as it \
                 resumed got {:?}",
                cluster.node(victim).name(),
                paused.as_millis(),
                cluster.node(successor).name(),
                promoted.as_millis(),
                text(&reply)
            );
            // It accepts no write after resuming: its lease ran out, and the lease its next
            // heartbeat brings holds only once it routes by the map that demoted it.
            assert!(
                matches!(reply, Value::Error(_)),
                "the resumed old primary acknowledged a write: {reply:?}"
            );
            // What the workload had acknowledged (with WAIT) must survive, and the old
            // primary must follow the new.
            let info = wait_until_following(
                &cluster,
                victim,
                shard.shard,
                successor,
                Duration::from_secs(15),
            )
            .await;
            eprintln!(
                "it follows {}: {}",
                cluster.node(successor).name(),
                syncs(&info)
            );
            let report = finish_load(&recorder, load, &router).await;
            eprintln!("history (WAIT 1): {}", summary(&report));
            assert!(report.is_valid(), "{report}");
            other_replica_follows(&cluster, &shard, successor).await;

            // It holds the new primary's data: a key written there is readable on it, the
            // refused write is nowhere, and both hold as many keys.
            let new_primary = cluster.node(successor);
            let marker = keys_of(&before, shard.shard, "after:", 1).remove(0);
            let set = new_primary
                .command(&["SET", marker.as_str(), "written-on-the-new-primary"])
                .await
                .unwrap();
            assert_eq!(set, Value::Simple(b"OK".to_vec()));
            let old = cluster.node(victim).resp_addr();
            let mut replica = readonly(&old).await;
            let deadline = Deadline::after(
                "the new primary's write on the old primary",
                Duration::from_secs(5),
            );
            loop {
                match replica.call(&["GET", marker.as_str()]).await {
                    Ok(Value::Bulk(v)) if v == b"written-on-the-new-primary" => break,
                    other => deadline.wait(&format!("{other:?}")).await,
                }
            }
            if matches!(reply, Value::Error(_)) {
                let refused = new_primary
                    .command(&["GET", stale_key.as_str()])
                    .await
                    .unwrap();
                assert_eq!(
                    refused,
                    Value::Null,
                    "the refused write reached the new primary"
                );
            }
            wait_for_same_data(new_primary, cluster.node(victim), Duration::from_secs(10)).await;
            eprintln!("both hold {} keys", dbsize(cluster.node(victim)).await);
        },
    )
    .await;
}

/// What writes to an old primary got, from just before it resumed on.
#[derive(Debug, Default)]
struct Answers {
    ok: Vec<String>,
    /// When the first and the last `OK` came.
    ok_span: Option<(Instant, Instant)>,
    clusterdown: usize,
    moved: usize,
    other: Vec<String>,
}

/// Sends `SET key <n>` on `conn` over and over until `until` or a `-MOVED` (the node then
/// knows it is no primary): the values it acknowledged, and how the others were answered.
async fn hammer(mut conn: RespConnection, key: String, until: Instant) -> Answers {
    let mut answers = Answers::default();
    for n in 0u64.. {
        let value = format!("stale-{n}");
        match conn.call(&["SET", key.as_str(), value.as_str()]).await {
            Ok(Value::Simple(ok)) if ok == b"OK" => {
                let now = Instant::now();
                let first = answers.ok_span.map_or(now, |(first, _)| first);
                answers.ok_span = Some((first, now));
                answers.ok.push(value);
            }
            Ok(Value::Error(e)) if e.starts_with(b"CLUSTERDOWN") => answers.clusterdown += 1,
            Ok(Value::Error(e)) if e.starts_with(b"MOVED") => {
                answers.moved += 1;
                break;
            }
            other => answers.other.push(format!("{other:?}")),
        }
        if Instant::now() >= until {
            break;
        }
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_to_a_resumed_old_primary_is_refused() {
    run_test("every_write_to_a_resumed_old_primary_is_refused", async {
        let cluster = start_cluster(2, FAST_NODE_TIMEOUT_MS).await;
        let (before, shard) = shard_away_from_the_leader(&cluster).await;
        let victim = shard.primary;
        let keys = keys_of(&before, shard.shard, "stale:", 8);
        let mut conns = Vec::new();
        for _ in &keys {
            let addr = cluster.node(victim).resp_addr();
            conns.push(RespConnection::connect(&addr, RESP_TIMEOUT).await.unwrap());
        }
        cluster.node(victim).pause().unwrap();
        let successor =
            wait_for_promotion(&cluster, shard.shard, victim, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // The first writes wait in the paused node's sockets; the rest follow as fast as it
        // answers, until it knows it is a replica.
        let until = Instant::now() + Duration::from_millis(1500);
        let hammers: Vec<_> = conns
            .into_iter()
            .zip(keys.iter().cloned())
            .map(|(conn, key)| tokio::spawn(hammer(conn, key, until)))
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        cluster.node(victim).resume().unwrap();
        let resumed_at = Instant::now();
        let mut acked = Vec::new();
        let mut span: Option<(Instant, Instant)> = None;
        let mut totals = Answers::default();
        for (hammer, key) in hammers.into_iter().zip(&keys) {
            let answers = hammer.await.unwrap();
            acked.extend(answers.ok.iter().map(|v| (key.clone(), v.clone())));
            if let Some((first, last)) = answers.ok_span {
                span = Some(span.map_or((first, last), |(f, l)| (f.min(first), l.max(last))));
            }
            totals.clusterdown += answers.clusterdown;
            totals.moved += answers.moved;
            totals.other.extend(answers.other);
        }
        let window = span.map_or("none".to_string(), |(first, last)| {
            format!(
                "from {} to {} ms after SIGCONT",
                first.duration_since(resumed_at).as_millis(),
                last.duration_since(resumed_at).as_millis()
            )
        });
        eprintln!(
            "writes to {} as it resumed: {} OK ({window}), {} CLUSTERDOWN, {} MOVED, other {:?}",
            cluster.node(victim).name(),
            acked.len(),
            totals.clusterdown,
            totals.moved,
            totals.other
        );
        let mut on_successor =
            RespConnection::connect(&cluster.node(successor).resp_addr(), RESP_TIMEOUT)
                .await
                .unwrap();
        let mut lost = Vec::new();
        for (key, value) in &acked {
            let now = on_successor.call(&["GET", key.as_str()]).await.unwrap();
            if now != Value::Bulk(value.clone().into_bytes()) {
                lost.push(format!("{key}={value} (new primary: {:?})", text(&now)));
            }
        }
        assert!(
            acked.is_empty(),
            "the old primary acknowledged {} writes ({window}) after {} had replaced it; {} \
             of them are not on the new primary, e.g. {:?}",
            acked.len(),
            cluster.node(successor).name(),
            lost.len(),
            &lost[..lost.len().min(3)]
        );
    })
    .await;
}

// 3. A primary partitioned from the controller.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_cut_off_from_the_controller_stops_writing_within_its_lease() {
    run_test(
        "a_primary_cut_off_from_the_controller_stops_writing_within_its_lease",
        async {
            // A longer node timeout than the server's: the lease and the promotion must be
            // told apart on a busy machine.
            let node_timeout = Duration::from_millis(2000);
            let lease = node_timeout / 2;
            // The controller members are nodes 0-2, started first: their buses are known
            // before the victim starts, and the victim reaches each through a relay.
            // With HTTP: the fenced primary must refuse writes there too.
            let with_http = ClusterOptions {
                http: true,
                ..options(node_timeout.as_millis() as u64)
            };
            let mut cluster = TestCluster::start(SHOAL, 1, 2, with_http)
                .await
                .expect("the controller's shard starts");
            let (relays, env) = relays_to(&cluster.nodes()[..3]);
            let shard = add_outsider_shard(&mut cluster, env).await;
            let victim = shard.primary;
            let before = cluster.status().await.unwrap().map;
            let carried: u64 = relays.iter().map(|r| r.stats().to_target).sum();
            assert!(
                carried > 0,
                "the victim's bus connections go through the relays"
            );

            let router = router(&cluster).await;
            let (recorder, load) = steady_load(&router, 4, WAIT_1);
            tokio::time::sleep(Duration::from_millis(1000)).await;

            // Probe the victim directly, on its own keys, from the cut on.
            let probe_key = keys_of(&before, shard.shard, "probe:", 1).remove(0);
            let (mut direct, cut_at) = connect_then_cut(cluster.node(victim), &relays).await;
            let deadline = Deadline::after("the victim to refuse writes", node_timeout);
            let refused_after = loop {
                match direct.call(&["SET", probe_key.as_str(), "probe"]).await {
                    Ok(Value::Error(e)) if e.starts_with(b"CLUSTERDOWN") => break cut_at.elapsed(),
                    other => deadline.wait(&format!("{other:?}")).await,
                }
            };
            // Past lease + margin (and still within the node timeout): refused.
            let margin = Duration::from_millis(150);
            tokio::time::sleep((lease + margin).saturating_sub(cut_at.elapsed())).await;
            let late = direct
                .call(&["SET", probe_key.as_str(), "late"])
                .await
                .unwrap();
            let late_at = cut_at.elapsed();
            assert!(
                matches!(&late, Value::Error(e) if e.starts_with(b"CLUSTERDOWN")),
                "a write {} ms after the cut (lease {} ms) got {late:?}",
                late_at.as_millis(),
                lease.as_millis()
            );
            // Over HTTP too.
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            let url = format!(
                "http://{}/{probe_key}",
                cluster.node(victim).http_addr().expect("HTTP runs")
            );
            let posted = http
                .post(&url)
                .json(&serde_json::json!({"value": "late-http"}))
                .send()
                .await
                .unwrap();
            assert_eq!(posted.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
            assert!(posted.text().await.unwrap().contains("CLUSTERDOWN"));
            // Keyless writes too: a fenced primary changes nothing.
            let flush = direct.call(&["FLUSHALL"]).await.unwrap();
            assert!(
                matches!(&flush, Value::Error(e) if e.starts_with(b"CLUSTERDOWN")),
                "FLUSHALL on the fenced primary got {flush:?}"
            );
            let successor =
                wait_for_promotion(&cluster, shard.shard, victim, Duration::from_secs(10)).await;
            let promoted_after = cut_at.elapsed();
            eprintln!(
                "cut off at 0: the victim refused writes from {} ms (lease {} ms), \
                 CLUSTERDOWN at {} ms; {} promoted by {} ms (node timeout {} ms)",
                refused_after.as_millis(),
                lease.as_millis(),
                late_at.as_millis(),
                cluster.node(successor).name(),
                promoted_after.as_millis(),
                node_timeout.as_millis()
            );
            assert!(
                refused_after < lease + margin,
                "the victim served {refused_after:?} after the cut"
            );
            assert!(
                refused_after < promoted_after,
                "the victim served until {refused_after:?}, after the promotion"
            );
            // The majority's side serves the shard's writes.
            let successor_addr = cluster.node(successor).resp_addr();
            let first_ack =
                first_ack_by(&recorder, &before, shard.shard, &successor_addr, cut_at).await;
            eprintln!(
                "first write acknowledged by the successor {} ms after the cut",
                first_ack.as_millis()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;

            for relay in &relays {
                relay.restore();
            }
            let healed_at = Instant::now();
            let info = wait_until_following(
                &cluster,
                victim,
                shard.shard,
                successor,
                Duration::from_secs(15),
            )
            .await;
            eprintln!(
                "healed: the old primary streams from {} after {} ms ({})",
                cluster.node(successor).name(),
                healed_at.elapsed().as_millis(),
                syncs(&info),
            );
            let report = finish_load(&recorder, load, &router).await;
            eprintln!("history (WAIT 1): {}", summary(&report));
            assert!(report.is_valid(), "{report}");
            wait_for_same_data(
                cluster.node(successor),
                cluster.node(victim),
                Duration::from_secs(10),
            )
            .await;
        },
    )
    .await;
}

// 4. The controller's leader killed during a failover.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_completes_when_the_controller_leader_dies_during_it() {
    run_test(
        "a_failover_completes_when_the_controller_leader_dies_during_it",
        async {
            let mut cluster = start_controller_shard(FAST_NODE_TIMEOUT_MS).await;
            let shard = add_outsider_shard(&mut cluster, Vec::new()).await;
            let victim = shard.primary;
            let status = cluster.status().await.unwrap();
            let leader = cluster.index_of(status.leader).unwrap();
            assert!(
                leader < 3 && leader != victim,
                "the leader is a controller member"
            );
            let key = keys_of(&status.map, shard.shard, "lk:", 1).remove(0);
            let router = router(&cluster).await;
            let write = OpKind::write(key.clone(), "before");
            let before = router.run_op(&write, &Ack::Primary).await;
            assert_eq!(before, Ok(Some(cluster.node(victim).resp_addr())));

            // The primary dies, and right after it the leader that would replace it.
            let killed_at = Instant::now();
            cluster.node(victim).kill().unwrap();
            cluster.node(leader).kill().unwrap();
            let successor =
                wait_for_promotion(&cluster, shard.shard, victim, Duration::from_secs(15)).await;
            let promoted = killed_at.elapsed();
            let after = cluster.status().await.unwrap();
            assert_ne!(after.leader, status.leader, "a new leader decided");
            assert!(shard.replicas.contains(&successor));
            let successor_addr = cluster.node(successor).resp_addr();
            let mut n = 0u64;
            poll(
                "the successor to take a write",
                Duration::from_secs(10),
                || {
                    n += 1;
                    let router = router.clone();
                    let op = OpKind::write(key.clone(), format!("after-{n}"));
                    let successor_addr = successor_addr.clone();
                    async move {
                        match router.run_op(&op, &Ack::Primary).await {
                            Ok(Some(by)) if by == successor_addr => Ok(()),
                            other => Err(format!("{other:?}")),
                        }
                    }
                },
            )
            .await;
            let took = killed_at.elapsed();
            eprintln!(
                "primary {} and controller leader {} killed: {} promoted after {} ms (seen by \
                 the new leader's status), took a write {} ms after the kills",
                cluster.node(victim).name(),
                cluster.node(leader).name(),
                cluster.node(successor).name(),
                promoted.as_millis(),
                took.as_millis()
            );
            assert!(
                took < Duration::from_secs(5),
                "the failover took {took:?} with the leader gone"
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_the_other_replica_continues_with_a_partial_resync() {
    run_test(
        "after_a_failover_the_other_replica_continues_with_a_partial_resync",
        async {
            const CYCLES: usize = 8;
            let cluster = start_cluster(2, FAST_NODE_TIMEOUT_MS).await;
            let router = router(&cluster).await;
            let (recorder, load) = steady_load(&router, 2, Ack::Primary);
            // Every replica's first (full) sync is done before the counting starts.
            let map = cluster.status().await.unwrap().map;
            for shard in cluster.shard_nodes(&map).unwrap() {
                replicas_follow(&cluster, &shard).await;
            }
            let mut full = Vec::new();
            for cycle in 0..CYCLES {
                let (_, shard) = shard_away_from_the_leader(&cluster).await;
                let victim = shard.primary;
                let mut syncs_before = Vec::new();
                for &r in &shard.replicas {
                    let info = cluster.node(r).info("replication").await.unwrap();
                    syncs_before.push((r, info.u64("shoal_full_syncs")));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
                cluster.node(victim).pause().unwrap();
                let successor =
                    wait_for_promotion(&cluster, shard.shard, victim, Duration::from_secs(10))
                        .await;
                cluster.node(victim).resume().unwrap();
                for (r, before) in syncs_before.into_iter().filter(|(r, _)| *r != successor) {
                    let info = wait_until_following(
                        &cluster,
                        r,
                        shard.shard,
                        successor,
                        Duration::from_secs(10),
                    )
                    .await;
                    let after = info.u64("shoal_full_syncs");
                    eprintln!(
                        "cycle {cycle}: {} promoted in {}'s place; {} full syncs {before:?} -> \
                         {after:?}, partial {:?}",
                        cluster.node(successor).name(),
                        cluster.node(victim).name(),
                        cluster.node(r).name(),
                        info.u64("shoal_partial_syncs")
                    );
                    if after != before {
                        full.push(format!("cycle {cycle}: {}", cluster.node(r).name()));
                    }
                }
                wait_until_following(
                    &cluster,
                    victim,
                    shard.shard,
                    successor,
                    Duration::from_secs(10),
                )
                .await;
            }
            recorder.stop();
            load.await.unwrap();
            assert!(
                full.is_empty(),
                "the other replica needed a full resync after {} of {CYCLES} failovers: {full:?}",
                full.len()
            );
        },
    )
    .await;
}

// A spare takes a failed replica's place.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_a_long_led_cluster_is_not_marked_failed() {
    run_test(
        "a_node_joining_a_long_led_cluster_is_not_marked_failed",
        async {
            let mut cluster = start_cluster(1, FAST_NODE_TIMEOUT_MS).await;
            // The leader has led for longer than the node timeout: a newcomer has no heartbeat
            // yet when its join is decided, and its join must count as one.
            tokio::time::sleep(Duration::from_millis(FAST_NODE_TIMEOUT_MS + 200)).await;
            let joined = cluster.add_node(false).await.expect("the node joins");
            let id = cluster.node(joined).known_id().unwrap();
            let map = cluster.status().await.unwrap().map;
            assert_eq!(map.node(id).map(|n| n.health), Some(Health::Ok));
            // No controller (whichever led) ever decided the newcomer had failed; the logs
            // are the decisions' record (the join's own is in one of them).
            let (named, failed) = (format!("{id:?}"), format!("Failed({id:?})"));
            let mut join_seen = false;
            for node in cluster.nodes() {
                let log = std::fs::read_to_string(node.log_path()).expect("a node's log");
                join_seen |= log
                    .lines()
                    .any(|l| l.contains("JoinedAs") && l.contains(&named));
                assert!(
                    !log.contains(&failed),
                    "{} marked the newcomer failed: {}",
                    node.name(),
                    node.log_tail(20)
                );
            }
            assert!(join_seen, "no controller log records the join of {id:?}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_replaces_a_failed_replica_and_gets_the_data() {
    run_test(
        "a_spare_replaces_a_failed_replica_and_gets_the_data",
        async {
            let mut cluster = start_cluster(1, FAST_NODE_TIMEOUT_MS).await;
            let spare = cluster
                .add_node_with(JoinOptions {
                    extra_args: vec!["--spare".into()],
                    ..JoinOptions::default()
                })
                .await
                .unwrap();
            let spare_id = cluster.node(spare).known_id().unwrap();
            let map = cluster.status().await.unwrap().map;
            let shard = cluster.shard_nodes(&map).unwrap().remove(0);
            assert!(
                !shard.replicas.contains(&spare),
                "a spare serves no shard while none needs it"
            );
            load_keys(&cluster.node(shard.primary).resp_addr(), 0..5_000).await;

            let failed = shard.replicas[0];
            cluster.node(failed).kill().unwrap();
            cluster
                .wait_until(
                    "the spare to replace the failed replica",
                    Duration::from_secs(10),
                    |s| {
                        s.map
                            .shard(shard.shard)
                            .is_some_and(|sh| sh.replicas.contains(&spare_id))
                    },
                )
                .await
                .unwrap();
            wait_until_following(
                &cluster,
                spare,
                shard.shard,
                shard.primary,
                Duration::from_secs(10),
            )
            .await;
            wait_for_same_data(
                cluster.node(shard.primary),
                cluster.node(spare),
                Duration::from_secs(10),
            )
            .await;
            let mut conn = readonly(&cluster.node(spare).resp_addr()).await;
            let value = conn.call(&["GET", "load:1234"]).await.unwrap();
            assert_eq!(value, Value::Bulk(b"value-000000001234".to_vec()));
        },
    )
    .await;
}

// Replica reads, as Redis Cluster clients ask for them.

/// The `calls=` of `cmdstat_<command>` in a node's `INFO commandstats` (0 if never called).
async fn calls(node: &NodeProcess, command: &str) -> u64 {
    let info = node.info("commandstats").await.unwrap();
    info.get(&format!("cmdstat_{command}"))
        .and_then(|stats| stats.strip_prefix("calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_crate_s_replica_reads_are_served_by_replicas() {
    run_test(
        "the_redis_crate_s_replica_reads_are_served_by_replicas",
        async {
            let cluster = start_cluster(1, FAST_NODE_TIMEOUT_MS).await;
            let map = cluster.status().await.unwrap().map;
            let shard = cluster.shard_nodes(&map).unwrap().remove(0);
            for &r in &shard.replicas {
                wait_until_following(
                    &cluster,
                    r,
                    shard.shard,
                    shard.primary,
                    Duration::from_secs(10),
                )
                .await;
                // The client learns replicas from CLUSTER SLOTS, which lists them once they
                // have acknowledged their sync.
                let port = cluster.node(r).ports().resp;
                poll(
                    "the replica in CLUSTER SLOTS",
                    Duration::from_secs(5),
                    || async {
                        if slots_list(cluster.node(shard.primary), port).await {
                            Ok(())
                        } else {
                            Err(format!("port {port} not listed"))
                        }
                    },
                )
                .await;
            }
            let urls: Vec<String> = cluster
                .resp_addrs()
                .iter()
                .map(|addr| format!("redis://{addr}"))
                .collect();
            let client = redis::cluster::ClusterClient::builder(urls)
                .read_routing_strategy(redis::cluster_read_routing::RandomReplicaStrategy)
                .connection_timeout(Duration::from_secs(2))
                .response_timeout(Duration::from_secs(2))
                .build()
                .unwrap();
            let mut conn = client.get_async_connection().await.unwrap();
            let keys: Vec<String> = (0..50).map(|i| format!("replica-read:{i}")).collect();
            for key in &keys {
                let () = redis::cmd("SET")
                    .arg(key)
                    .arg(format!("v-{key}"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
            // Every write on both replicas before the reads (WAIT on the primary itself).
            let mut primary =
                RespConnection::connect(&cluster.node(shard.primary).resp_addr(), RESP_TIMEOUT)
                    .await
                    .unwrap();
            let ok = primary
                .call(&["SET", "replica-read:fence", "1"])
                .await
                .unwrap();
            assert_eq!(ok, Value::Simple(b"OK".to_vec()));
            let acked = primary.call(&["WAIT", "2", "2000"]).await.unwrap();
            assert_eq!(acked, Value::Int(2), "both replicas have every write");

            let primary_gets = calls(cluster.node(shard.primary), "get").await;
            for key in &keys {
                let got: Option<String> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                assert_eq!(got.as_deref(), Some(format!("v-{key}").as_str()));
            }
            let mut replica_gets = 0;
            for &r in &shard.replicas {
                replica_gets += calls(cluster.node(r), "get").await;
            }
            assert_eq!(
                replica_gets,
                keys.len() as u64,
                "every read went to a replica"
            );
            assert_eq!(
                calls(cluster.node(shard.primary), "get").await,
                primary_gets,
                "the primary served none"
            );
            // A replica takes changes from its primary only: a keyless write is refused too.
            let replica = cluster.node(shard.replicas[0]);
            let held = dbsize(replica).await;
            let mut direct = RespConnection::connect(&replica.resp_addr(), RESP_TIMEOUT)
                .await
                .unwrap();
            let refused = direct.call(&["FLUSHALL"]).await.unwrap();
            assert_eq!(
                refused,
                Value::Error(b"READONLY You can't write against a read only replica.".to_vec())
            );
            assert_eq!(dbsize(replica).await, held, "the replica kept every key");
            // Writes still reach the primary from the same client.
            let () = redis::cmd("SET")
                .arg("replica-read:0")
                .arg("changed")
                .query_async(&mut conn)
                .await
                .unwrap();
        },
    )
    .await;
}

// 5. Replicas: a restart, and a link broken and healed.

/// Kills (-9) replica `index` of `shard`, waits until the controller marks it failed (a
/// restart before that finds no shard short of a healthy replica and founds a new shard,
/// which takes slots, and the keys of those slots are dropped), and starts the same command
/// line again without its directory (a new node; `restart.rs` restarts nodes with theirs).
/// Returns the old and the new node id and when it was restarted.
async fn restart_replica(
    cluster: &TestCluster,
    index: usize,
) -> (shoal_cluster::NodeId, shoal_cluster::NodeId, Instant) {
    let old_id = cluster.node(index).known_id().unwrap();
    cluster.node(index).kill().unwrap();
    cluster
        .wait_until(
            "the killed replica to be marked failed",
            Duration::from_secs(10),
            |s| {
                s.map
                    .node(old_id)
                    .is_some_and(|n| n.health == Health::Failed)
            },
        )
        .await
        .unwrap();
    let restarted_at = Instant::now();
    cluster.node(index).restart_without_dir().unwrap();
    let node = cluster.node(index);
    node.wait_ready(Duration::from_secs(20)).await.unwrap();
    let new_id = node.id().await.unwrap();
    assert_ne!(new_id, old_id, "a restart is a new node");
    (old_id, new_id, restarted_at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_replica_joins_again_with_a_full_resync() {
    run_test(
        "a_restarted_replica_joins_again_with_a_full_resync",
        async {
            // The restarted replica is none of the controller's members (see
            // `a_restarted_controller_member_does_not_break_the_controller`).
            let mut cluster = start_controller_shard(2000).await;
            let shard = add_outsider_shard(&mut cluster, Vec::new()).await;
            cluster
                .wait_for_primaries(Duration::from_secs(10))
                .await
                .expect("the primaries serve");
            let primary = cluster.node(shard.primary);
            let restarted = shard.replicas[0];
            let map = cluster.status().await.unwrap().map;
            let numbers = load_numbers_of(&map, shard.shard, 40_000);
            let (first, second) = numbers.split_at(numbers.len() / 2);
            load_keys(&primary.resp_addr(), first.iter().copied()).await;
            let (old_id, new_id, restarted_at) = restart_replica(&cluster, restarted).await;
            // Written after it came back, during its resync.
            load_keys(&primary.resp_addr(), second.iter().copied()).await;
            let node = cluster.node(restarted);
            let status = cluster
                .wait_until(
                    "the restarted replica to join the shard",
                    Duration::from_secs(15),
                    |s| {
                        s.map.node(new_id).is_some_and(|n| n.health == Health::Ok)
                            && s.map
                                .shard(shard.shard)
                                .is_some_and(|sh| sh.replicas.contains(&new_id))
                    },
                )
                .await
                .unwrap();
            let info = wait_until_following(
                &cluster,
                restarted,
                shard.shard,
                shard.primary,
                Duration::from_secs(15),
            )
            .await;
            wait_for_same_data(primary, node, Duration::from_secs(15)).await;
            let keys = dbsize(node).await;
            eprintln!(
                "{} restarted as {new_id:?} (was {old_id:?}, {:?} in the map now): in sync with \
             {keys} keys {} ms after the restart; {}",
                node.name(),
                status.map.node(old_id).map(|n| n.health),
                restarted_at.elapsed().as_millis(),
                syncs(&info)
            );
            assert_eq!(
                info.u64("shoal_full_syncs"),
                Some(1),
                "a new node starts empty"
            );
            assert_eq!(status.map.shards.len(), 2, "no new shard");
            let mut on_replica = readonly(&node.resp_addr()).await;
            let mut on_primary = RespConnection::connect(&primary.resp_addr(), RESP_TIMEOUT)
                .await
                .unwrap();
            assert_eq!(keys, numbers.len() as i64);
            for n in numbers.iter().step_by(97) {
                let key = format!("load:{n}");
                let want = Value::Bulk(format!("value-{n:012}").into_bytes());
                assert_eq!(on_primary.call(&["GET", key.as_str()]).await.unwrap(), want);
                assert_eq!(on_replica.call(&["GET", key.as_str()]).await.unwrap(), want);
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_member_does_not_break_the_controller() {
    run_test(
        "a_restarted_controller_member_does_not_break_the_controller",
        async {
            let cluster = start_controller_shard(2000).await;
            let status = cluster.status().await.unwrap();
            let leader = cluster.index_of(status.leader).unwrap();
            let shard = cluster.shard_nodes(&status.map).unwrap().remove(0);
            let restarted = *shard.replicas.iter().find(|&&r| r != leader).unwrap();
            let (_, new_id, _) = restart_replica(&cluster, restarted).await;
            let mut problems = Vec::new();
            let joined = cluster
                .wait_until(
                    "the restarted member to join as a replica",
                    Duration::from_secs(15),
                    |s| {
                        s.map.node(new_id).is_some_and(|n| n.health == Health::Ok)
                            && s.map
                                .shard(shard.shard)
                                .is_some_and(|sh| sh.replicas.contains(&new_id))
                    },
                )
                .await;
            if let Err(e) = joined {
                problems.push(e.to_string());
            }
            // Every node that runs is healthy, as the leader sees it.
            let alive: Vec<_> = cluster
                .reachable()
                .filter_map(|(_, n)| n.known_id())
                .collect();
            let healthy = cluster
                .wait_until("every running node healthy", Duration::from_secs(5), |s| {
                    alive
                        .iter()
                        .all(|id| s.map.node(*id).is_some_and(|n| n.health == Health::Ok))
                })
                .await;
            if let Err(e) = healthy {
                problems.push(e.to_string());
            }
            for node in cluster.nodes() {
                let log = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                if let Some(at) = log.find("panicked at") {
                    let line = log[at..].lines().take(2).collect::<Vec<_>>().join(" ");
                    problems.push(format!("{} {line}", node.name()));
                }
            }
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        },
    )
    .await;
}

/// The client address `primary` sees for `replica`'s replication link.
fn link_addr(replica: &NodeProcess, primary: &NodeProcess) -> String {
    let links = replica
        .connections_to(&primary.resp_addr())
        .expect("the replica's connections");
    assert_eq!(
        links.len(),
        1,
        "{} has one connection to {}'s RESP port: {links:?}",
        replica.name(),
        primary.name()
    );
    links[0].local.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_replica_link_resumes_with_a_partial_resync() {
    run_test(
        "a_broken_replica_link_resumes_with_a_partial_resync",
        async {
            let cluster = TestCluster::start(SHOAL, 1, 2, options(2000))
                .await
                .expect("the cluster starts");
            let shard = cluster.shards().await.unwrap().remove(0);
            let primary = cluster.node(shard.primary);
            let replica = cluster.node(shard.replicas[0]);
            wait_for_same_data(primary, replica, Duration::from_secs(10)).await;
            let before = replica.info("replication").await.unwrap();
            let served_before = primary.info("stats").await.unwrap();

            // A writer of `{w}:<n>` keys (one slot, so MGET compares them) straight to the primary.
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let addr = primary.resp_addr();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut conn = RespConnection::connect(&addr, RESP_TIMEOUT).await.unwrap();
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let key = format!("{{w}}:{n}");
                        let reply = conn
                            .call(&["SET", key.as_str(), &format!("v{n}")])
                            .await
                            .unwrap();
                        assert_eq!(reply, Value::Simple(b"OK".to_vec()), "SET {key}");
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    n
                })
            };
            tokio::time::sleep(Duration::from_millis(300)).await;

            let addr = link_addr(replica, primary);
            let killed = primary
                .command(&["CLIENT", "KILL", "ADDR", addr.as_str()])
                .await
                .unwrap();
            assert_eq!(killed, Value::Int(1), "CLIENT KILL ADDR {addr}");
            let partial = before.u64("shoal_partial_syncs").unwrap();
            let resumed_at = Instant::now();
            let after = poll("the replica to resume", Duration::from_secs(10), || async {
                let info = replica
                    .info("replication")
                    .await
                    .map_err(|e| e.to_string())?;
                if info.u64("shoal_partial_syncs") > Some(partial)
                    && info.get("master_link_status") == Some("up")
                {
                    Ok(info)
                } else {
                    Err(format!("{:?}", info.0))
                }
            })
            .await;
            let resumed = resumed_at.elapsed();
            let new_addr = link_addr(replica, primary);
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let written = writer.await.unwrap();
            wait_for_same_data(primary, replica, Duration::from_secs(10)).await;
            eprintln!(
                "link {addr} killed, resumed as {new_addr} within {} ms; {written} keys written \
             around it; partial syncs {:?} -> {:?}, full syncs {:?} -> {:?}",
                resumed.as_millis(),
                before.u64("shoal_partial_syncs"),
                after.u64("shoal_partial_syncs"),
                before.u64("shoal_full_syncs"),
                after.u64("shoal_full_syncs"),
            );
            assert_ne!(addr, new_addr, "a new link");
            assert_eq!(after.u64("shoal_partial_syncs"), Some(partial + 1));
            assert_eq!(
                after.u64("shoal_full_syncs"),
                before.u64("shoal_full_syncs"),
                "no full resync"
            );
            let served = primary.info("stats").await.unwrap();
            assert_eq!(
                served.u64("sync_partial_ok"),
                served_before.u64("sync_partial_ok").map(|n| n + 1)
            );
            assert_eq!(served.u64("sync_full"), served_before.u64("sync_full"));

            // Every key, on both.
            assert_eq!(dbsize(primary).await, dbsize(replica).await);
            let mut on_primary = RespConnection::connect(&primary.resp_addr(), RESP_TIMEOUT)
                .await
                .unwrap();
            let mut on_replica = readonly(&replica.resp_addr()).await;
            let keys: Vec<String> = (0..written).map(|n| format!("{{w}}:{n}")).collect();
            for chunk in keys.chunks(500) {
                let mut mget = vec!["MGET"];
                mget.extend(chunk.iter().map(String::as_str));
                let p = on_primary.call(&mget).await.unwrap();
                let r = on_replica.call(&mget).await.unwrap();
                assert_eq!(p, r, "the replica differs from the primary");
                let Value::Array(values) = p else {
                    panic!("MGET: {p:?}")
                };
                assert!(
                    values.iter().all(|v| matches!(v, Value::Bulk(_))),
                    "a key is missing"
                );
            }
        },
    )
    .await;
}

// 6. A full resync of a large keyspace under writes.

/// Keys loaded before the replica joins. A million loads in about 5 s and resyncs in about
/// 4 s in a debug build on 2 cores, so the test does the full million.
const LOADED_KEYS: usize = 1_000_000;

/// Sets `load:<n>` to `value-<n>` for every `n` of `numbers` on `addr`, pipelined.
async fn load_keys(addr: &str, numbers: impl IntoIterator<Item = usize>) {
    let mut conn = RespConnection::connect(addr, Duration::from_secs(20))
        .await
        .unwrap();
    const BATCH: usize = 2000;
    let mut frames = Vec::with_capacity(BATCH * 48);
    let mut numbers = numbers.into_iter().peekable();
    while numbers.peek().is_some() {
        frames.clear();
        let batch: Vec<usize> = numbers.by_ref().take(BATCH).collect();
        for n in &batch {
            let key = format!("load:{n}");
            let value = format!("value-{n:012}");
            shoal_proto::request::encode_into(&mut frames, &["SET", key.as_str(), value.as_str()]);
        }
        let replies = conn.pipeline(&frames, batch.len()).await.unwrap();
        let ok = Value::Simple(b"OK".to_vec());
        if let Some(bad) = replies.iter().find(|r| **r != ok) {
            panic!(
                "a SET of the load (from load:{}) answered {bad:?}",
                batch[0]
            );
        }
    }
}

/// The numbers `n` whose `load:<n>` belongs to `shard` in `map`, below `below`.
fn load_numbers_of(map: &ClusterMap, shard: ShardId, below: usize) -> Vec<usize> {
    (0..below)
        .filter(|n| map.slots.get(key_slot(format!("load:{n}").as_bytes())) == Some(shard))
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What [`full_resync_under_writes`] measured.
struct Resync {
    /// The history's check, with the final reads on the replica.
    report: Report,
    /// How long every operation that started during the resync took (failed and timed-out
    /// ones included, with the time they took), sorted.
    latencies: Vec<Duration>,
}

/// Loads [`LOADED_KEYS`] keys into the primary of a one-shard cluster that wants a replica,
/// then adds the replica while a workload keeps writing, and checks that the replica ends
/// with the primary's data and every acknowledged write.
/// With `check_listing`, also polls the primary's CLUSTER SHARDS and SLOTS during the sync
/// (which costs it CPU: the latency test leaves it out).
async fn full_resync_under_writes(check_listing: bool) -> Resync {
    // One shard that wants a replica but has none yet.
    let options = ClusterOptions {
        founder_replicas: Some(1),
        ..options(2000)
    };
    let mut cluster = TestCluster::start(SHOAL, 1, 0, options)
        .await
        .expect("the primary starts");
    let primary = 0;
    let loaded_at = Instant::now();
    load_keys(&cluster.node(primary).resp_addr(), 0..LOADED_KEYS).await;
    eprintln!(
        "loaded {LOADED_KEYS} keys in {} ms",
        loaded_at.elapsed().as_millis()
    );
    assert_eq!(dbsize(cluster.node(primary)).await, LOADED_KEYS as i64);

    let router = router(&cluster).await;
    let mut w = workload(2, 64, 20);
    w.pause = Duration::from_millis(1);
    let recorder = Arc::new(Recorder::new(w));
    let load = start_load(&recorder, &router, Ack::Primary);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sync_from = Instant::now();
    // The replica stands for another machine: on this one it shares two cores with the
    // primary, and loading a million keys it would take CPU the primary's latency is
    // measured on. Reniced, it yields to the primary and the load.
    let replica = cluster
        .add_node_with(JoinOptions {
            nice: 10,
            ..JoinOptions::default()
        })
        .await
        .expect("the replica joins");
    // Until the replica has loaded its snapshot, the primary shows it as loading in CLUSTER
    // SHARDS and keeps it out of CLUSTER SLOTS: whenever the primary (asked first) shows it
    // online or lists it, the replica (asked next) has finished its sync.
    let replica_port = cluster.node(replica).ports().resp;
    let seen_loading = std::sync::atomic::AtomicUsize::new(0);
    let info = poll("the full resync", Duration::from_secs(40), || async {
        let (entry, listed) = if check_listing {
            (
                shards_entry(cluster.node(primary), replica_port).await,
                slots_list(cluster.node(primary), replica_port).await,
            )
        } else {
            (None, false)
        };
        let info = cluster
            .node(replica)
            .info("replication")
            .await
            .map_err(|e| e.to_string())?;
        let synced = info.u64("shoal_full_syncs") >= Some(1)
            && info.get("master_sync_in_progress") == Some("0");
        let advertised = listed || entry.as_ref().is_some_and(|(health, _)| health == "online");
        assert!(
            synced || !advertised,
            "the primary advertises a replica still loading: {entry:?}, in CLUSTER SLOTS: \
             {listed}, replica: {:?}",
            info.0
        );
        if entry.is_some_and(|(health, _)| health == "loading") {
            seen_loading.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if synced && info.get("master_link_status") == Some("up") {
            Ok(info)
        } else {
            Err(format!("{:?}", info.0))
        }
    })
    .await;
    eprintln!(
        "the primary showed the replica as loading in {} polls during the sync",
        seen_loading.into_inner()
    );
    let sync_to = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    recorder.stop();
    let stats = load.await.unwrap();
    eprintln!("workload: {stats:?}");
    wait_for_same_data(
        cluster.node(primary),
        cluster.node(replica),
        Duration::from_secs(20),
    )
    .await;

    // Every acknowledged write reached the replica: the final reads are its.
    let replica_addr = cluster.node(replica).resp_addr();
    let reader = Arc::new(tokio::sync::Mutex::new(readonly(&replica_addr).await));
    recorder
        .final_reads(
            move |_, kind| {
                let reader = reader.clone();
                async move {
                    let mut conn = reader.lock().await;
                    match conn.call(&["GET", kind.key()]).await {
                        Ok(Value::Bulk(v)) => Ok(Some(String::from_utf8_lossy(&v).into())),
                        Ok(Value::Null) => Ok(None),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
            Duration::from_secs(10),
        )
        .await
        .expect("the replica answers reads");
    let report = check(recorder.history());
    eprintln!("history (read back on the replica): {}", summary(&report));

    // Synced: online, acknowledging every write (they have stopped; keep-alives still move
    // the offset on), and in CLUSTER SLOTS.
    let primary_offset = cluster
        .node(primary)
        .info("replication")
        .await
        .unwrap()
        .u64("master_repl_offset")
        .unwrap() as i64;
    poll(
        "the replica's ack in CLUSTER SHARDS",
        Duration::from_secs(5),
        || async {
            match shards_entry(cluster.node(primary), replica_port).await {
                Some((health, offset)) if health == "online" && offset >= primary_offset => Ok(()),
                other => Err(format!("{other:?}, primary at {primary_offset}")),
            }
        },
    )
    .await;
    assert!(slots_list(cluster.node(primary), replica_port).await);

    // Same keyspace: sizes and a sample of the loaded keys.
    let keys = dbsize(cluster.node(primary)).await;
    assert_eq!(keys, dbsize(cluster.node(replica)).await);
    let mut on_replica = readonly(&replica_addr).await;
    for n in (0..LOADED_KEYS).step_by(LOADED_KEYS / 500) {
        let key = format!("load:{n}");
        let got = on_replica.call(&["GET", key.as_str()]).await.unwrap();
        assert_eq!(
            got,
            Value::Bulk(format!("value-{n:012}").into_bytes()),
            "{key} on the replica"
        );
    }

    // The primary's latency while it streamed the snapshot.
    let during: Vec<Op> = recorder
        .history()
        .ops()
        .into_iter()
        .filter(|op| op.start >= sync_from && op.start <= sync_to)
        .collect();
    let mut latencies: Vec<Duration> = during.iter().map(|op| op.end - op.start).collect();
    latencies.sort();
    let slow: Vec<String> = during
        .iter()
        .filter(|op| op.end - op.start > Duration::from_millis(10))
        .map(|op| {
            format!(
                "{} ms at +{} ms ({})",
                (op.end - op.start).as_millis(),
                op.start.duration_since(sync_from).as_millis(),
                op.outcome.error().unwrap_or("ok")
            )
        })
        .collect();
    eprintln!(
        "full resync of {keys} keys took {} ms (replica: {} full, {} partial syncs); {} ops \
         during it: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} slower than 10 ms: {:?}",
        (sync_to - sync_from).as_millis(),
        info.u64("shoal_full_syncs").unwrap_or(0),
        info.u64("shoal_partial_syncs").unwrap_or(0),
        latencies.len(),
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        slow.len(),
        &slow[..slow.len().min(8)],
    );
    Resync { report, latencies }
}

/// The `health` and `replication-offset` `CLUSTER SHARDS` on `asked` gives the node
/// listening on `port`, if it lists it.
async fn shards_entry(asked: &NodeProcess, port: u16) -> Option<(String, i64)> {
    let reply = resp::command(&asked.resp_addr(), &["CLUSTER", "SHARDS"], RESP_TIMEOUT)
        .await
        .ok()?;
    let Value::Array(shards) = reply else {
        panic!("CLUSTER SHARDS answered {reply:?}")
    };
    for shard in &shards {
        let Value::Array(fields) = shard else {
            continue;
        };
        let Some(Value::Array(nodes)) = field(fields, "nodes") else {
            continue;
        };
        for node in nodes {
            let Value::Array(fields) = node else { continue };
            if field(fields, "port") == Some(&Value::Int(i64::from(port))) {
                let health = field(fields, "health").and_then(text)?;
                let Some(Value::Int(offset)) = field(fields, "replication-offset") else {
                    return None;
                };
                return Some((health, *offset));
            }
        }
    }
    None
}

/// The value after `name` in a flat RESP2 map.
fn field<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .chunks(2)
        .find(|pair| text(&pair[0]).as_deref() == Some(name))
        .and_then(|pair| pair.get(1))
}

/// Whether `asked`'s `CLUSTER SLOTS` lists the node on `port` for some slot (false if it does
/// not answer).
async fn slots_list(asked: &NodeProcess, port: u16) -> bool {
    // No answer in time (a primary busy streaming a snapshot) lists nothing; callers poll.
    let Ok(reply) = resp::command(&asked.resp_addr(), &["CLUSTER", "SLOTS"], RESP_TIMEOUT).await
    else {
        return false;
    };
    let Value::Array(ranges) = reply else {
        panic!("CLUSTER SLOTS answered {reply:?}")
    };
    ranges.iter().any(|range| {
        matches!(range, Value::Array(fields) if fields[2..].iter().any(|node| {
            matches!(node, Value::Array(n) if n.get(1) == Some(&Value::Int(i64::from(port))))
        }))
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_of_a_large_keyspace_under_writes_loses_nothing() {
    run_test(
        "a_full_resync_of_a_large_keyspace_under_writes_loses_nothing",
        async {
            let resync = full_resync_under_writes(true).await;
            let report = &resync.report;
            assert!(report.is_valid(), "{report}");
            assert!(report.unchecked_keys.is_empty(), "{report}");
            assert!(
                resync.latencies.len() > 20,
                "only {} ops during the resync",
                resync.latencies.len()
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_resync_keeps_the_primary_s_p99_under_10_ms() {
    run_test("a_full_resync_keeps_the_primary_s_p99_under_10_ms", async {
        let resync = full_resync_under_writes(false).await;
        let p99 = percentile(&resync.latencies, 0.99);
        assert!(
            p99 < Duration::from_millis(10),
            "the primary's p99 during the resync was {:.2} ms",
            ms(p99)
        );
    })
    .await;
}

// 6. A primary cut off from every voter but still reaching a majority of the nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_on_peer_leases_is_never_primary_beside_its_successor() {
    run_test(
        "a_primary_on_peer_leases_is_never_primary_beside_its_successor",
        async {
            let node_timeout = Duration::from_millis(2000);
            let lease = node_timeout / 2;
            let mut cluster = start_controller_shard(node_timeout.as_millis() as u64).await;
            // The victim reaches the voters (nodes 0-2) through relays, and every other node
            // directly: once the relays are cut it still collects peer leases from a majority
            // (itself, its two replicas and the third shard's three nodes: 6 of 9).
            let (relays, env) = relays_to(&cluster.nodes()[..3]);
            let shard = add_outsider_shard(&mut cluster, env).await;
            add_outsider_shard(&mut cluster, Vec::new()).await;
            let victim = shard.primary;
            let before = cluster.status().await.unwrap().map;
            assert_eq!(before.nodes.len(), 9);

            let router = router(&cluster).await;
            let (recorder, load) = steady_load(&router, 4, WAIT_1);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let probe_key = keys_of(&before, shard.shard, "probe:", 1).remove(0);
            let (mut direct, cut_at) = connect_then_cut(cluster.node(victim), &relays).await;
            // Past its controller lease, the victim serves on peer leases...
            tokio::time::sleep(lease + Duration::from_millis(300)).await;
            let on_peers = direct
                .call(&["SET", probe_key.as_str(), "on-peer-leases"])
                .await
                .unwrap();
            let on_peers_at = cut_at.elapsed();
            // ... until the controller fences it on the other nodes and promotes a replica.
            let deadline = Deadline::after("the victim to refuse writes", node_timeout * 4);
            let refused_after = loop {
                match direct.call(&["SET", probe_key.as_str(), "probe"]).await {
                    Ok(Value::Error(e)) if e.starts_with(b"CLUSTERDOWN") => break cut_at.elapsed(),
                    other => deadline.wait(&format!("{other:?}")).await,
                }
            };
            // Its own account says so: it cannot serve.
            let info = direct.call(&["CLUSTER", "INFO"]).await.unwrap();
            let info = shoal_testkit::Info::parse(&text(&info).unwrap_or_default());
            assert_eq!(
                (info.get("cluster_state"), info.get("shoal_lease")),
                (Some("fail"), Some("none")),
                "CLUSTER INFO of the fenced victim"
            );
            let successor =
                wait_for_promotion(&cluster, shard.shard, victim, Duration::from_secs(10)).await;
            let successor_addr = cluster.node(successor).resp_addr();
            let first_ack =
                first_ack_by(&recorder, &before, shard.shard, &successor_addr, cut_at).await;
            eprintln!(
                "cut from the voters at 0: a write at {} ms got {on_peers:?}; the victim \
                 refused writes from {} ms; the successor acknowledged its first at {} ms \
                 (lease {} ms, node timeout {} ms)",
                on_peers_at.as_millis(),
                refused_after.as_millis(),
                first_ack.as_millis(),
                lease.as_millis(),
                node_timeout.as_millis()
            );
            assert_eq!(
                on_peers,
                Value::Simple(b"OK".to_vec()),
                "past its controller lease the victim serves on peer leases"
            );
            assert!(
                refused_after < first_ack,
                "the victim served until {refused_after:?}, after its successor's first \
                 write at {first_ack:?}"
            );
            for relay in &relays {
                relay.restore();
            }
            wait_until_following(
                &cluster,
                victim,
                shard.shard,
                successor,
                Duration::from_secs(15),
            )
            .await;
            let report = finish_load(&recorder, load, &router).await;
            eprintln!("history (WAIT 1): {}", summary(&report));
            assert!(report.is_valid(), "{report}");
        },
    )
    .await;
}

// 7. A primary told to stop (SIGTERM) hands its shard over first.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_to_a_primary_hands_its_shard_to_a_replica_without_failed_writes() {
    run_test(
        "sigterm_to_a_primary_hands_its_shard_to_a_replica_without_failed_writes",
        async {
            let cluster = start_cluster(1, FAST_NODE_TIMEOUT_MS).await;
            let map = cluster.status().await.unwrap().map;
            let shard = cluster.shard_nodes(&map).unwrap().remove(0);
            replicas_follow(&cluster, &shard).await;
            let router = router(&cluster).await;
            // Acknowledged by the primary alone: a `WAIT` that reaches the old primary after the
            // handover gets Redis's error for replicas, as after Redis's `CLUSTER FAILOVER`.
            let (recorder, load) = steady_load(&router, 4, Ack::Primary);
            tokio::time::sleep(Duration::from_millis(500)).await;
            let asked = Instant::now();
            let exit = cluster
                .node(shard.primary)
                .terminate(Duration::from_secs(10))
                .await
                .expect("the primary exits");
            let exited = asked.elapsed();
            let successor =
                wait_for_promotion(&cluster, shard.shard, shard.primary, Duration::from_secs(5))
                    .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let report = finish_load(&recorder, load, &router).await;
            eprintln!(
                "SIGTERM: the primary exited ({exit:?}) after {} ms; {} took over; history: {}",
                exited.as_millis(),
                cluster.node(successor).name(),
                summary(&report)
            );
            assert!(exit.success(), "a clean exit");
            assert!(report.is_valid(), "{report}");
            assert_eq!(
                (report.failed, report.unknown),
                (0, 0),
                "no write failed or was left in doubt: {}",
                summary(&report)
            );
            let log = cluster.node(shard.primary).log_tail(50);
            assert!(
                log.contains("handed this node's shard to a replica"),
                "the primary's log says it stepped down:\n{log}"
            );
        },
    )
    .await;
}
