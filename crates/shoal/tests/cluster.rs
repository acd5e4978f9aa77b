//! Cluster mode from the outside: real `shoal server` processes on 127.0.0.1 (started by
//! shoal-testkit), driven by the redis crate's cluster client, plain connections, `redis-cli -c`
//! and the `shoal cluster` subcommands.
//!
//! The tests take turns (one cluster at a time): on a 2-core machine two clusters at once
//! would measure each other's scheduling, not Shoal. Every test is bounded by [`TEST_LIMIT`].

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands as _;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use shoal_cluster::bus::{BusConnection, ClusterStatus, Reply, Request};
use shoal_cluster::{ClusterMap, Health, NodeId, SLOTS, Slot, key_slot};
use shoal_testkit::resp::{RespConnection, text};
use shoal_testkit::router::parse_cluster_slots;
use shoal_testkit::{ClusterOptions, TestCluster, Value, have_tools, is_settled};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(50);

/// How long a plain RESP exchange may take.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `body` alone (after any other test of this file) and within [`TEST_LIMIT`], and prints
/// how long it took.
async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

async fn start_cluster(shards: usize) -> TestCluster {
    TestCluster::start(SHOAL, shards, 0, ClusterOptions::default())
        .await
        .expect("the cluster starts")
}

/// A redis-crate cluster connection seeded with every reachable node.
async fn cluster_client(cluster: &TestCluster) -> ClusterConnection {
    let urls: Vec<String> = cluster
        .resp_addrs()
        .iter()
        .map(|addr| format!("redis://{addr}"))
        .collect();
    ClusterClient::builder(urls)
        .connection_timeout(Duration::from_secs(2))
        .response_timeout(Duration::from_secs(2))
        .build()
        .expect("a cluster client")
        .get_async_connection()
        .await
        .expect("the cluster client connects")
}

async fn plain(addr: &str) -> RespConnection {
    RespConnection::connect(addr, RESP_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

fn value_of(key: &str) -> String {
    format!("value-of-{key}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sets every key to [`value_of`] it through the cluster client, `tasks` at a time.
async fn write_keys(conn: &ClusterConnection, keys: &[String], tasks: usize) {
    let chunk = keys.len().div_ceil(tasks).max(1);
    let mut set = tokio::task::JoinSet::new();
    for part in keys.chunks(chunk) {
        let mut conn = conn.clone();
        let part = part.to_vec();
        set.spawn(async move {
            for key in part {
                let _: () = conn
                    .set(&key, value_of(&key))
                    .await
                    .unwrap_or_else(|e| panic!("SET {key}: {e}"));
            }
        });
    }
    while let Some(done) = set.join_next().await {
        done.expect("a writer task");
    }
}

/// The value of every key through the cluster client (`None`: missing).
async fn read_keys(conn: &ClusterConnection, keys: &[String]) -> HashMap<String, Option<String>> {
    let chunk = keys.len().div_ceil(8).max(1);
    let mut set = tokio::task::JoinSet::new();
    for part in keys.chunks(chunk) {
        let mut conn = conn.clone();
        let part = part.to_vec();
        set.spawn(async move {
            let mut out = Vec::with_capacity(part.len());
            for key in part {
                let value: Option<String> = conn
                    .get(&key)
                    .await
                    .unwrap_or_else(|e| panic!("GET {key}: {e}"));
                out.push((key, value));
            }
            out
        });
    }
    let mut values = HashMap::new();
    while let Some(done) = set.join_next().await {
        values.extend(done.expect("a reader task"));
    }
    values
}

/// The owner (`host:port`) of every slot, from one node's `CLUSTER SLOTS`.
async fn slot_owners(addr: &str) -> Vec<String> {
    let reply = plain(addr).await.call(&["CLUSTER", "SLOTS"]).await.unwrap();
    let owners = parse_cluster_slots(&reply).unwrap_or_else(|e| panic!("{addr}: {e}"));
    owners
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| panic!("CLUSTER SLOTS on {addr} leaves slots without an owner"))
        })
        .collect()
}

/// The primary's RESP address of every slot, from a map.
fn owners_in(map: &ClusterMap) -> Vec<String> {
    (0..SLOTS as Slot)
        .map(|slot| {
            map.primary_of_slot(slot)
                .map_or_else(String::new, |n| n.resp_addr())
        })
        .collect()
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// Runs the `shoal` binary with `args` (and the test kit's cluster secret), bounded by 20 s.
fn run_shoal(args: &[&str]) -> Output {
    let mut command = Command::new(SHOAL);
    command
        .env(
            "SHOAL_CLUSTER_SECRET_FILE",
            shoal_testkit::cluster_secret_file(),
        )
        .args(args);
    run_bounded(command, "shoal")
}

/// Runs `command` to its end, killing it (and failing) after 20 s.
fn run_bounded(command: Command, what: &str) -> Output {
    shoal_testkit::run_within(command, Duration::from_secs(20), what)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn stdout_of(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// 1. Keys live where CLUSTER SLOTS says; others redirect; hash tags; CROSSSLOT.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_live_on_their_slot_owner_and_other_nodes_redirect() {
    run_test(
        "keys_live_on_their_slot_owner_and_other_nodes_redirect",
        async {
            let cluster = start_cluster(3).await;
            let conn = cluster_client(&cluster).await;
            let keys: Vec<String> = (0..10_000).map(|i| format!("key:{i}")).collect();
            write_keys(&conn, &keys, 8).await;
            let values = read_keys(&conn, &keys).await;
            for key in &keys {
                assert_eq!(
                    values[key].as_deref(),
                    Some(value_of(key).as_str()),
                    "{key}"
                );
            }

            let owners = slot_owners(&cluster.node(0).resp_addr()).await;
            for node in cluster.nodes() {
                assert_eq!(
                    slot_owners(&node.resp_addr()).await,
                    owners,
                    "{} sees other slot owners",
                    node.name()
                );
            }
            let status = cluster.status().await.unwrap();
            assert_eq!(
                owners_in(&status.map),
                owners,
                "CLUSTER SLOTS follows the map"
            );

            // Every key is on its owner and nowhere else: each node holds exactly its keys.
            for node in cluster.nodes() {
                let addr = node.resp_addr();
                let expected = keys
                    .iter()
                    .filter(|k| owners[key_slot(k.as_bytes()) as usize] == addr)
                    .count() as i64;
                let dbsize = int(&node.command(&["DBSIZE"]).await.unwrap());
                assert_eq!(
                    dbsize,
                    expected,
                    "{} holds other keys than it owns",
                    node.name()
                );
                assert!(expected > 2000, "{} owns only {expected} keys", node.name());
            }

            // A sample, key by key: the slot, the value on its owner, MOVED from the others.
            let mut connections = Vec::new();
            for node in cluster.nodes() {
                connections.push((node.resp_addr(), plain(&node.resp_addr()).await));
            }
            for key in keys.iter().step_by(25) {
                let slot = key_slot(key.as_bytes());
                let (_, first) = &mut connections[0];
                let keyslot = int(&first.call(&["CLUSTER", "KEYSLOT", key]).await.unwrap());
                assert_eq!(keyslot, i64::from(slot), "CLUSTER KEYSLOT {key}");
                let owner = &owners[slot as usize];
                for (addr, conn) in &mut connections {
                    let reply = conn.call(&["GET", key.as_str()]).await.unwrap();
                    if addr == owner {
                        assert_eq!(
                            reply,
                            Value::Bulk(value_of(key).into_bytes()),
                            "{key} on {addr}"
                        );
                    } else {
                        let moved = format!("MOVED {slot} {owner}");
                        assert_eq!(reply, Value::Error(moved.into_bytes()), "{key} on {addr}");
                    }
                }
            }

            // Multi-key commands work within one slot ({hash tag}) through the cluster client...
            let mut c = conn.clone();
            let _: () = c
                .mset(&[("{user:7}.name", "ada"), ("{user:7}.lang", "rust")])
                .await
                .unwrap();
            let got: Vec<Option<String>> = c
                .mget(&["{user:7}.name", "{user:7}.lang", "{user:7}.none"])
                .await
                .unwrap();
            assert_eq!(got, vec![Some("ada".into()), Some("rust".into()), None]);
            let deleted: i64 = c.del(&["{user:7}.name", "{user:7}.lang"]).await.unwrap();
            assert_eq!(deleted, 2);
            let after: Vec<Option<String>> =
                c.mget(&["{user:7}.name", "{user:7}.lang"]).await.unwrap();
            assert_eq!(after, vec![None, None]);

            // ...and keys of different slots are refused on a plain connection, by every node.
            let (a, b) = ("key:1", "key:2");
            assert_ne!(key_slot(a.as_bytes()), key_slot(b.as_bytes()));
            for (addr, conn) in &mut connections {
                for command in [
                    vec!["MGET", a, b],
                    vec!["DEL", a, b],
                    vec!["MSET", a, "1", b, "2"],
                    vec!["BITOP", "OR", a, b],
                    vec!["BITOP", "NOT", a, b],
                    vec!["LCS", a, b],
                ] {
                    let reply = conn.call(&command).await.unwrap();
                    assert_eq!(
                        reply,
                        Value::Error(
                            b"CROSSSLOT Keys in request don't hash to the same slot".to_vec()
                        ),
                        "{command:?} on {addr}"
                    );
                }
            }
        },
    )
    .await;
}

// 2. redis-cli -c follows MOVED across every shard.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_in_cluster_mode_follows_redirects_to_every_shard() {
    let test = "redis_cli_in_cluster_mode_follows_redirects_to_every_shard";
    if !have_tools(test, &["redis-cli"]) {
        return;
    }
    run_test(test, async {
        let cluster = start_cluster(3).await;
        let owners = slot_owners(&cluster.node(0).resp_addr()).await;
        let addrs: Vec<String> = cluster.nodes().iter().map(|n| n.resp_addr()).collect();
        for (i, owner) in addrs.iter().enumerate() {
            // A key of this shard, written through the next node and read through the one after.
            let key = (0..1_000_000)
                .map(|n| format!("cli:{n}"))
                .find(|k| &owners[key_slot(k.as_bytes()) as usize] == owner)
                .unwrap();
            let via_set = &cluster.node((i + 1) % addrs.len());
            let via_get = &cluster.node((i + 2) % addrs.len());
            let value = format!("shard {i} says hi");
            let set = redis_cli(via_set.ports().resp, &["set", &key, &value]);
            assert_eq!(set, "OK\n", "set {key} through {}", via_set.name());
            let get = redis_cli(via_get.ports().resp, &["get", &key]);
            assert_eq!(
                get,
                format!("{value}\n"),
                "get {key} through {}",
                via_get.name()
            );
            let on_owner = plain(owner)
                .await
                .call(&["GET", key.as_str()])
                .await
                .unwrap();
            assert_eq!(
                on_owner,
                Value::Bulk(value.into_bytes()),
                "the owner holds {key}"
            );
        }
    })
    .await;
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.args(["-c", "-p", &port.to_string()]).args(args);
    stdout_of(&run_bounded(command, "redis-cli"), "redis-cli")
}

// 3. A node joins while a client writes.

/// What the writer of [`a_node_joins_under_load`] saw.
#[derive(Default)]
struct WriterReport {
    /// SET and GET commands that succeeded.
    ops: u64,
    /// Commands that returned an error, with the error.
    failures: Vec<String>,
    /// Keys whose GET right after their SET did not return the value (allowed only while the
    /// slots move: data migration comes later).
    unread: Vec<u64>,
}

/// SETs `live:<n>` and GETs it back, for n = 0, 1, ..., until `stop`.
async fn write_until(
    mut conn: ClusterConnection,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> WriterReport {
    let mut report = WriterReport::default();
    while !stop.load(Ordering::Relaxed) {
        let n = next.fetch_add(1, Ordering::SeqCst);
        let key = format!("live:{n}");
        let set: redis::RedisResult<()> = conn.set(&key, n).await;
        if let Err(e) = set {
            report.failures.push(format!("SET {key}: {e}"));
            continue;
        }
        report.ops += 1;
        match conn.get::<_, Option<u64>>(&key).await {
            Ok(Some(v)) if v == n => report.ops += 1,
            Ok(_) => {
                report.ops += 1;
                report.unread.push(n);
            }
            Err(e) => report.failures.push(format!("GET {key}: {e}")),
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_under_load() {
    run_test("a_node_joins_under_load", async {
        let mut cluster = start_cluster(3).await;
        let conn = cluster_client(&cluster).await;
        let before = cluster.status().await.unwrap().map;
        let old_keys: Vec<String> = (0..3000).map(|i| format!("old:{i}")).collect();
        write_keys(&conn, &old_keys, 4).await;

        let next = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = tokio::spawn(write_until(conn.clone(), next.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        let joined_at = Instant::now();
        let new = cluster
            .add_node(false)
            .await
            .expect("the fourth node joins");
        let first_after_join = next.load(Ordering::SeqCst) + 1;
        eprintln!(
            "join committed and settled in {} ms",
            joined_at.elapsed().as_millis()
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stop.store(true, Ordering::Relaxed);
        let report = writer.await.unwrap();
        let written = next.load(Ordering::SeqCst);

        let after = cluster.status().await.unwrap().map;
        let new_id = cluster.node(new).known_id().unwrap();
        let (new_shard, _) = after
            .placement_of(new_id)
            .expect("the new node has a shard");
        assert_eq!(
            after.shards.len(),
            4,
            "the new node is the primary of a fourth shard"
        );
        let moved: Vec<Slot> = (0..SLOTS as Slot)
            .filter(|&s| before.slots.get(s) != after.slots.get(s))
            .collect();
        assert!(
            moved
                .iter()
                .all(|&s| after.slots.get(s) == Some(new_shard.id)),
            "slots moved only to the new shard"
        );
        assert!(
            (3000..=5500).contains(&moved.len()),
            "about a quarter of the slots move: {}",
            moved.len()
        );
        eprintln!(
            "writer: {} ops, {} failures, {} keys not read back during the move, {} moved slots",
            report.ops,
            report.failures.len(),
            report.unread.len(),
            moved.len()
        );
        assert!(
            report.failures.is_empty(),
            "operations failed during the join: {:?}",
            &report.failures[..report.failures.len().min(10)]
        );
        assert!(
            report.ops > 200,
            "the writer made progress: {} ops",
            report.ops
        );

        // Keys written once the join settled are all readable.
        let late: Vec<String> = (first_after_join..written.saturating_sub(1))
            .map(|n| format!("live:{n}"))
            .collect();
        assert!(
            late.len() > 50,
            "{} keys written after the join",
            late.len()
        );
        let late_unread: Vec<&u64> = report
            .unread
            .iter()
            .filter(|&&n| n >= first_after_join)
            .collect();
        assert!(
            late_unread.is_empty(),
            "unread after the join: {late_unread:?}"
        );
        let values = read_keys(&conn, &late).await;
        for key in &late {
            let n = &key["live:".len()..];
            assert_eq!(values[key].as_deref(), Some(n), "{key} after the join");
        }
        // Those of moved slots went to the new node: the client followed the new map.
        let moved_set: HashSet<Slot> = moved.iter().copied().collect();
        let late_moved: Vec<&String> = late
            .iter()
            .filter(|k| moved_set.contains(&key_slot(k.as_bytes())))
            .collect();
        assert!(
            !late_moved.is_empty(),
            "no key written after the join is in a moved slot"
        );
        let mut on_new = plain(&cluster.node(new).resp_addr()).await;
        for key in late_moved.iter().take(100) {
            let n = &key["live:".len()..];
            let reply = on_new.call(&["GET", key.as_str()]).await.unwrap();
            assert_eq!(
                reply,
                Value::Bulk(n.as_bytes().to_vec()),
                "{key} on the new node"
            );
        }

        // Keys of slots that stayed put survive the join.
        let (stayed, gone): (Vec<String>, Vec<String>) = old_keys
            .iter()
            .cloned()
            .partition(|k| !moved_set.contains(&key_slot(k.as_bytes())));
        assert!(!stayed.is_empty() && !gone.is_empty());
        let values = read_keys(&conn, &stayed).await;
        for key in &stayed {
            assert_eq!(
                values[key].as_deref(),
                Some(value_of(key).as_str()),
                "{key} survives"
            );
        }

        // The old owners drop the keys of the slots they gave away.
        let old_owner: HashMap<Slot, String> = moved
            .iter()
            .map(|&s| (s, before.primary_of_slot(s).unwrap().resp_addr()))
            .collect();
        let mut moved_with_keys: Vec<Slot> = gone.iter().map(|k| key_slot(k.as_bytes())).collect();
        moved_with_keys.sort_unstable();
        moved_with_keys.dedup();
        let deadline = Instant::now() + Duration::from_secs(5);
        for slot in &moved_with_keys {
            let addr = &old_owner[slot];
            let mut conn = plain(addr).await;
            loop {
                let slot_text = slot.to_string();
                let count = int(&conn
                    .call(&["CLUSTER", "COUNTKEYSINSLOT", slot_text.as_str()])
                    .await
                    .unwrap());
                if count == 0 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{addr} still holds {count} keys of slot {slot}, which moved away"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let kept = int(&cluster.node(0).command(&["DBSIZE"]).await.unwrap());
        eprintln!(
            "{} old keys stayed, {} were in moved slots and are gone; node-0 holds {kept} keys",
            stayed.len(),
            gone.len()
        );
    })
    .await;
}

// 4. The controller leader dies.

/// What the prober of [`killing_the_controller_leader`] saw.
#[derive(Default)]
struct ProbeReport {
    ok: u64,
    failures: Vec<String>,
}

/// SETs and GETs keys of the surviving shards on their owners, directly, until `stop`.
async fn probe_until(targets: Vec<(String, Vec<String>)>, stop: Arc<AtomicBool>) -> ProbeReport {
    let mut report = ProbeReport::default();
    let mut round = 0u64;
    let mut connections = Vec::new();
    for (addr, keys) in targets {
        connections.push((plain(&addr).await, addr, keys));
    }
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        for (conn, addr, keys) in &mut connections {
            let key = &keys[round as usize % keys.len()];
            let value = format!("round-{round}");
            let set = conn.call(&["SET", key.as_str(), value.as_str()]).await;
            let get = conn.call(&["GET", key.as_str()]).await;
            match (set, get) {
                (Ok(Value::Simple(ok)), Ok(Value::Bulk(got)))
                    if ok == b"OK" && got == value.as_bytes() =>
                {
                    report.ok += 1;
                }
                other => report.failures.push(format!("{addr} {key}: {other:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_controller_leader() {
    run_test("killing_the_controller_leader", async {
        let mut cluster = start_cluster(3).await;
        let status = cluster.status().await.unwrap();
        let leader = cluster.leader_index().await.unwrap();
        let old_leader = status.leader;
        let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

        // Keys owned by each surviving node, written before the crash.
        let mut targets = Vec::new();
        for &i in &survivors {
            let id = cluster.node(i).known_id().unwrap();
            let keys: Vec<String> = (0..1_000_000)
                .map(|n| format!("survivor:{n}"))
                .filter(|k| {
                    status
                        .map
                        .primary_of_slot(key_slot(k.as_bytes()))
                        .unwrap()
                        .id
                        == id
                })
                .take(100)
                .collect();
            let mut conn = plain(&cluster.node(i).resp_addr()).await;
            for key in &keys {
                let reply = conn
                    .call(&["SET", key.as_str(), &value_of(key)])
                    .await
                    .unwrap();
                assert_eq!(reply, Value::Simple(b"OK".to_vec()));
            }
            targets.push((cluster.node(i).resp_addr(), keys));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let prober = tokio::spawn(probe_until(targets.clone(), stop.clone()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed_at = Instant::now();
        cluster.node(leader).kill().unwrap();
        let elected = cluster
            .wait_until("a new controller leader", Duration::from_secs(10), |s| {
                s.leader != old_leader
            })
            .await
            .unwrap();
        let election = killed_at.elapsed();
        eprintln!(
            "controller leader {} killed; {:?} leads after {} ms",
            cluster.node(leader).name(),
            elected.leader,
            election.as_millis()
        );
        assert!(
            election < Duration::from_secs(5),
            "election took {election:?}"
        );
        let new_leader = cluster.leader_index().await.unwrap();
        assert!(survivors.contains(&new_leader));

        // The new leader notices the dead node (node timeout) and the cluster moves on.
        cluster
            .wait_until(
                "the dead leader to be marked failed",
                Duration::from_secs(10),
                |s| {
                    s.map
                        .node(old_leader)
                        .is_some_and(|n| n.health == Health::Failed)
                },
            )
            .await
            .unwrap();
        stop.store(true, Ordering::Relaxed);
        let report = prober.await.unwrap();
        eprintln!(
            "surviving shards served {} SET+GET pairs while the controller failed over",
            report.ok
        );
        assert!(
            report.failures.is_empty(),
            "the surviving shards failed requests: {:?}",
            &report.failures[..report.failures.len().min(10)]
        );
        assert!(report.ok > 50, "{} probes", report.ok);

        // A node can still join, and becomes a voter in the dead one's place.
        let joined = cluster
            .add_node(true)
            .await
            .expect("a join after the failover");
        let joined_id = cluster.node(joined).known_id().unwrap();
        let status = cluster.status().await.unwrap();
        assert!(status.map.placement_of(joined_id).is_some());
        assert!(
            status.map.controllers.contains(&joined_id)
                && !status.map.controllers.contains(&old_leader),
            "voters {:?}",
            status.map.controllers
        );
        let key = (0..1_000_000)
            .map(|n| format!("joined:{n}"))
            .find(|k| {
                status
                    .map
                    .primary_of_slot(key_slot(k.as_bytes()))
                    .unwrap()
                    .id
                    == joined_id
            })
            .unwrap();
        let mut conn = plain(&cluster.node(joined).resp_addr()).await;
        assert_eq!(
            conn.call(&["SET", key.as_str(), "here"]).await.unwrap(),
            Value::Simple(b"OK".to_vec())
        );
        assert_eq!(
            conn.call(&["GET", key.as_str()]).await.unwrap(),
            Value::Bulk(b"here".to_vec())
        );
        // The survivors still hold the keys of the slots they kept.
        for (addr, keys) in &targets {
            let mut conn = plain(addr).await;
            for key in keys {
                let owner = status
                    .map
                    .primary_of_slot(key_slot(key.as_bytes()))
                    .unwrap();
                if &owner.resp_addr() == addr {
                    let reply = conn.call(&["GET", key.as_str()]).await.unwrap();
                    assert!(
                        matches!(reply, Value::Bulk(_)),
                        "{key} on {addr}: {reply:?}"
                    );
                }
            }
        }
    })
    .await;
}

// 5. shoal cluster remove-node.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_node_hands_its_slots_to_the_others_and_the_node_stops() {
    run_test(
        "remove_node_hands_its_slots_to_the_others_and_the_node_stops",
        async {
            let cluster = start_cluster(3).await;
            let leader = cluster.leader_index().await.unwrap();
            let victim = (leader + 1) % 3;
            let keeper = (leader + 2) % 3;
            let victim_id = cluster.node(victim).known_id().unwrap();
            let before = cluster.status().await.unwrap().map;
            let conn = cluster_client(&cluster).await;
            let keys: Vec<String> = (0..2000).map(|i| format!("stay:{i}")).collect();
            write_keys(&conn, &keys, 4).await;

            // An id no node has is refused, and changes nothing.
            let bogus = run_shoal(&[
                "cluster",
                "remove-node",
                "00000000000000aa",
                "--node",
                &cluster.node(keeper).resp_addr(),
            ]);
            let stderr = String::from_utf8_lossy(&bogus.stderr);
            assert!(
                !bogus.status.success()
                    && stderr.contains("node 00000000000000aa is not in the cluster"),
                "{stderr}"
            );
            assert_eq!(cluster.status().await.unwrap().map.nodes.len(), 3);

            let output = run_shoal(&[
                "cluster",
                "remove-node",
                &victim_id.to_string(),
                "--node",
                &cluster.node(keeper).resp_addr(),
            ]);
            let out = stdout_of(&output, "shoal cluster remove-node");
            assert!(out.contains(&format!("removed {victim_id}")), "{out}");

            let exit = cluster
                .node(victim)
                .wait_exit(Duration::from_secs(10))
                .await
                .expect("the removed node stops by itself");
            eprintln!("the removed node exited: {exit}");
            assert!(exit.success(), "the removed node exits cleanly: {exit}");

            let alive: Vec<NodeId> = [leader, keeper]
                .iter()
                .map(|&i| cluster.node(i).known_id().unwrap())
                .collect();
            let status = cluster
                .wait_until("two shards own every slot", Duration::from_secs(10), |s| {
                    s.map.nodes.len() == 2 && s.map.shards.len() == 2 && is_settled(s, &alive)
                })
                .await
                .unwrap();
            for slot in 0..SLOTS as Slot {
                let owner = status
                    .map
                    .primary_of_slot(slot)
                    .expect("every slot has an owner");
                assert!(alive.contains(&owner.id));
                if before.primary_of_slot(slot).unwrap().id != victim_id {
                    assert_eq!(
                        before.slots.get(slot),
                        status.map.slots.get(slot),
                        "only the removed node's slots move"
                    );
                }
            }
            for &i in &[leader, keeper] {
                let info =
                    text(&cluster.node(i).command(&["CLUSTER", "INFO"]).await.unwrap()).unwrap();
                for field in [
                    "cluster_state:ok",
                    "cluster_known_nodes:2",
                    "cluster_size:2",
                ] {
                    assert!(info.contains(field), "{}: {info}", cluster.node(i).name());
                }
            }
            let out = stdout_of(
                &run_shoal(&[
                    "cluster",
                    "status",
                    "--node",
                    &cluster.node(keeper).resp_addr(),
                ]),
                "shoal cluster status",
            );
            assert!(out.starts_with("cluster ok"), "{out}");

            // Keys of the remaining shards survive; every slot takes writes again.
            let conn = cluster_client(&cluster).await;
            let survivors: Vec<String> = keys
                .iter()
                .filter(|k| before.primary_of_slot(key_slot(k.as_bytes())).unwrap().id != victim_id)
                .cloned()
                .collect();
            let values = read_keys(&conn, &survivors).await;
            for key in &survivors {
                assert_eq!(
                    values[key].as_deref(),
                    Some(value_of(key).as_str()),
                    "{key}"
                );
            }
            let fresh: Vec<String> = (0..1000).map(|i| format!("fresh:{i}")).collect();
            write_keys(&conn, &fresh, 4).await;
            let values = read_keys(&conn, &fresh).await;
            assert!(
                fresh
                    .iter()
                    .all(|k| values[k].as_deref() == Some(value_of(k).as_str()))
            );
        },
    )
    .await;
}

// 6. shoal cluster status.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_shows_every_node_in_text_and_json() {
    run_test("cluster_status_shows_every_node_in_text_and_json", async {
        let cluster = start_cluster(3).await;
        let addr = cluster.node(1).resp_addr();
        let out = stdout_of(
            &run_shoal(&["cluster", "status", "--node", &addr]),
            "status",
        );
        eprintln!("{out}");
        let first = out.lines().next().unwrap_or_default();
        assert!(first.starts_with("cluster ok: "), "{out}");
        assert!(first.contains("3 shards, 3 nodes (3 healthy)"), "{first}");
        for node in cluster.nodes() {
            let id = node.known_id().unwrap();
            let line = out
                .lines()
                .find(|l| l.contains(&format!("{id:?}")) && l.contains(&node.resp_addr()))
                .unwrap_or_else(|| panic!("no line for {} in\n{out}", node.name()));
            assert!(line.contains("primary") && line.contains(" ok "), "{line}");
        }
        assert_eq!(
            out.lines().filter(|l| l.starts_with("shard ")).count(),
            3,
            "{out}"
        );

        let json = stdout_of(
            &run_shoal(&["cluster", "status", "--node", &addr, "--json"]),
            "status --json",
        );
        let status: ClusterStatus = serde_json::from_str(&json).expect("the JSON is a status");
        let ids: Vec<NodeId> = cluster
            .nodes()
            .iter()
            .map(|n| n.known_id().unwrap())
            .collect();
        let mut listed: Vec<NodeId> = status.map.nodes.keys().copied().collect();
        listed.sort();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);
        assert!(ids.contains(&status.leader));
        assert_eq!(status.nodes.len(), 3);
        assert_eq!(status.map.slots_assigned(), SLOTS);
        assert_eq!(status.map.epoch, cluster.status().await.unwrap().map.epoch);
    })
    .await;
}

// 7. How fast a new map reaches every node.

/// One map push seen on a node's bus subscription.
struct Arrival {
    node: NodeId,
    at_ms: u64,
    map: ClusterMap,
}

/// Subscribes to `bus` for maps after `after`, recording each arrival until the connection
/// ends or the task is aborted.
async fn record_maps(
    node: NodeId,
    bus: String,
    after: u64,
    arrivals: Arc<std::sync::Mutex<Vec<Arrival>>>,
) {
    let credentials = shoal_testkit::cluster_secret().into();
    let Ok(mut conn) = BusConnection::connect(&bus, &credentials, Duration::from_secs(2)).await
    else {
        return;
    };
    if conn.send(&Request::Subscribe { after }).await.is_err() {
        return;
    }
    while let Ok(reply) = conn.next(Duration::from_secs(5)).await {
        if let Reply::Map(map) = reply {
            let at_ms = now_ms();
            arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arrival { node, at_ms, map });
        }
    }
}

/// Map subscriptions to every node of a cluster, each from the epoch it was made at.
struct Watch {
    arrivals: Arc<std::sync::Mutex<Vec<Arrival>>>,
    /// Who is watched, since which epoch.
    since: Vec<(NodeId, u64)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Subscribes to every reachable node not watched yet.
    fn cover(&mut self, cluster: &TestCluster, epoch: u64) {
        for (_, node) in cluster.reachable() {
            let id = node.known_id().unwrap();
            if self.since.iter().all(|(watched, _)| *watched != id) {
                self.since.push((id, epoch));
                self.tasks.push(tokio::spawn(record_maps(
                    id,
                    node.bus_addr(),
                    epoch,
                    self.arrivals.clone(),
                )));
            }
        }
    }

    /// For `epoch` (if some node saw that exact map): how long after its commit each node
    /// watched from before it, and still in it, held it or a newer map.
    fn propagation(&self, epoch: u64) -> Option<Vec<(NodeId, u64)>> {
        let arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let map = &arrivals.iter().find(|a| a.map.epoch == epoch)?.map;
        let delays = self
            .since
            .iter()
            .filter(|(id, since)| *since < epoch && map.nodes.contains_key(id))
            .map(|(id, _)| {
                let arrived = arrivals
                    .iter()
                    .filter(|a| a.node == *id && a.map.epoch >= epoch)
                    .map(|a| a.at_ms)
                    .min()
                    .unwrap_or_else(|| panic!("{id:?} never got epoch {epoch}"));
                (*id, arrived.saturating_sub(map.committed_at_ms))
            })
            .collect();
        Some(delays)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The `p`-th percentile (nearest rank) of sorted `values`.
fn percentile(values: &[u64], p: f64) -> u64 {
    let rank = (values.len() as f64 * p).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_maps_reach_every_node_quickly() {
    run_test("new_maps_reach_every_node_quickly", async {
        let mut cluster = start_cluster(3).await;
        let mut watch = Watch {
            arrivals: Arc::default(),
            since: Vec::new(),
            tasks: Vec::new(),
        };
        let first = cluster.status().await.unwrap().map.epoch;
        watch.cover(&cluster, first);
        // Let the subscriptions be in place before the first change.
        tokio::time::sleep(Duration::from_millis(200)).await;

        // Five joins, then five removals: ten committed changes, each settled before the next.
        let mut changes: Vec<(u64, String)> = Vec::new();
        let mut added = Vec::new();
        for round in 0..10 {
            let what = if round < 5 {
                let i = cluster.add_node(false).await.unwrap();
                added.push(i);
                format!("join of {}", cluster.node(i).name())
            } else {
                let i = added.remove(0);
                let id = cluster.node(i).known_id().unwrap();
                cluster.remove_node(id).await.unwrap();
                cluster.node(i).wait_exit(Duration::from_secs(10)).await.unwrap();
                let alive: Vec<NodeId> =
                    cluster.reachable().filter_map(|(_, n)| n.known_id()).collect();
                cluster
                    .wait_until("the removal to settle", Duration::from_secs(10), |s| {
                        !s.map.nodes.contains_key(&id) && is_settled(s, &alive)
                    })
                    .await
                    .unwrap();
                format!("removal of {}", cluster.node(i).name())
            };
            let epoch = cluster.status().await.unwrap().map.epoch;
            let previous = changes.last().map_or(first, |(e, _)| *e);
            for e in previous + 1..=epoch {
                changes.push((e, what.clone()));
            }
            watch.cover(&cluster, epoch);
        }
        // Every node settled on the last epoch, so every push has arrived.
        let mut slowest = Vec::new();
        eprintln!("map propagation: commit -> every watched node holds it (or a newer map)");
        for (epoch, what) in &changes {
            let Some(delays) = watch.propagation(*epoch) else {
                eprintln!("  epoch {epoch:>3} ({what}): superseded before any node pushed it");
                continue;
            };
            let worst = delays.iter().map(|(_, d)| *d).max().unwrap_or(0);
            let per_node: Vec<u64> = delays.iter().map(|(_, d)| *d).collect();
            eprintln!(
                "  epoch {epoch:>3} ({what:<17}): {worst:>4} ms on {} nodes, per node {per_node:?} ms",
                delays.len()
            );
            slowest.push(worst);
        }
        slowest.sort_unstable();
        assert!(slowest.len() >= 10, "{} commits measured", slowest.len());
        let (p50, p99) = (percentile(&slowest, 0.50), percentile(&slowest, 0.99));
        eprintln!(
            "MAP PROPAGATION over {} commits: p50 {p50} ms, p99 {p99} ms, max {} ms",
            slowest.len(),
            slowest.last().unwrap()
        );
        assert!(p99 < 200, "p99 of map propagation is {p99} ms");
    })
    .await;
}

// 8. Where the controller's voters go.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_are_spread_over_the_shards() {
    run_test("voters_are_spread_over_the_shards", async {
        // Nine nodes, every one controller-eligible (the kit's default, as `cluster up`):
        // three shards of a primary and two replicas.
        let options = ClusterOptions {
            http: false,
            ready_timeout: Duration::from_secs(45),
            ..ClusterOptions::default()
        };
        let cluster = TestCluster::start(SHOAL, 3, 2, options)
            .await
            .expect("nine nodes start");
        let status = cluster.status().await.unwrap();
        let map = &status.map;
        assert_eq!(map.controllers.len(), 5, "voters {:?}", map.controllers);
        for shard in &map.shards {
            let voters = shard
                .members()
                .filter(|m| map.controllers.contains(m))
                .count();
            assert!(
                voters <= 2,
                "shard {} holds {voters} of the voters {:?}",
                shard.id,
                map.controllers
            );
        }
        assert!(map.controllers.contains(&status.leader));

        // `shoal cluster status` says which nodes vote and which leads.
        let out = stdout_of(
            &run_shoal(&["cluster", "status", "--node", &cluster.node(0).resp_addr()]),
            "status",
        );
        eprintln!("{out}");
        assert!(out.lines().next().unwrap().contains(", 5 voters "), "{out}");
        assert_eq!(out.matches("  voter, leader").count(), 1, "{out}");
        assert_eq!(out.matches("  voter").count(), 5, "{out}");
    })
    .await;
}
