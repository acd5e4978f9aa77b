//! Live slot migration on real `shoal server` processes: slots move with their keys when a
//! shard joins and when one is removed, while an application writes and reads through the
//! smart client without an error, and no acknowledged write is lost.
//!
//! The tests take turns (one cluster at a time), each bounded by [`TEST_LIMIT`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientConfig};
use shoal_cluster::ClusterMap;
use shoal_testkit::{ClusterOptions, TestCluster, Value};

mod common;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// How long the slots may take to settle after a join or a removal.
const SETTLE_WITHIN: Duration = Duration::from_secs(40);

async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// An application writing and reading through the smart client while the cluster changes:
/// each round sets `live:<n>` to its round number and reads it back; every error and every
/// wrong read is counted.
struct Traffic {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Traffic {
    fn start(client: Client) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, rounds, errors) = (stop.clone(), rounds.clone(), errors.clone());
            async move {
                let mut seen = Vec::new();
                let mut round = 0u64;
                while !stop.load(Relaxed) && round < 200_000 {
                    round += 1;
                    let key = format!("live:{}", round % 500);
                    let value = round.to_string();
                    if let Err(e) = client.set(&key, &value, None).await {
                        errors.fetch_add(1, Relaxed);
                        seen.push(format!("SET {key}: {e}"));
                        continue;
                    }
                    match client.get(&key).await {
                        Ok(Some(got)) if got == value.as_bytes() => {}
                        other => {
                            errors.fetch_add(1, Relaxed);
                            seen.push(format!("GET {key} after SET {value}: {other:?}"));
                        }
                    }
                    rounds.store(round, Relaxed);
                }
                seen
            }
        });
        Traffic {
            stop,
            rounds,
            errors,
            task,
        }
    }

    /// Stops it; returns the rounds done, failing the test if any went wrong.
    async fn stop(self) -> u64 {
        self.stop.store(true, Relaxed);
        let errors = self.task.await.expect("the traffic task");
        assert_eq!(self.errors.load(Relaxed) as usize, errors.len());
        let rounds = self.rounds.load(Relaxed);
        assert!(
            errors.is_empty(),
            "{} errors in {rounds} rounds: {errors:?}",
            errors.len()
        );
        rounds
    }
}

/// `count` keys `key:<i>`: strings (every third with a TTL of an hour) and hashes.
async fn fill(client: &Client, count: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let writes = chunk.iter().map(|i| async move {
            let key = format!("key:{i}");
            match i % 3 {
                0 => {
                    client
                        .set(&key, format!("v{i}"), Some(Duration::from_secs(3600)))
                        .await
                }
                1 => client.set(&key, format!("v{i}"), None).await,
                _ => client
                    .command(&["HSET", &key, "f", &format!("v{i}")])
                    .await
                    .map(|_| ()),
            }
        });
        for result in futures_util::future::join_all(writes).await {
            result.expect("a write before the change");
        }
    }
}

/// A cluster of `shards` shards of a primary and `replicas` replicas, a smart client of it,
/// and `keys` keys written through it ([`fill`]).
async fn filled(shards: usize, replicas: u8, keys: usize) -> (TestCluster, Client) {
    let cluster = TestCluster::start(SHOAL, shards, replicas, ClusterOptions::default())
        .await
        .expect("the cluster starts");
    let config = ClientConfig::new(cluster.resp_addrs()).with_cluster_secret(cluster.secret());
    let client = Client::connect(config).await.expect("the client connects");
    fill(&client, keys).await;
    (cluster, client)
}

/// Checks that every key of [`fill`] is there with its value, type and TTL.
async fn check(client: &Client, count: usize) {
    let mut missing = Vec::new();
    for i in 0..count {
        let key = format!("key:{i}");
        let want = format!("v{i}");
        let got = match i % 3 {
            2 => client.command(&["HGET", &key, "f"]).await.unwrap(),
            _ => client.command(&["GET", &key]).await.unwrap(),
        };
        if got != Value::Bulk(want.into_bytes()) {
            missing.push(format!("{key}: {got:?}"));
        }
        if i % 3 == 0 && i % 51 == 0 {
            let ttl = client.command(&["TTL", &key]).await.unwrap();
            assert!(
                matches!(ttl, Value::Int(t) if (3000..=3600).contains(&t)),
                "{key} kept its TTL: {ttl:?}"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {count} keys lost or wrong, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// The number of keys each primary of `map` holds, by shard.
async fn held(cluster: &TestCluster, map: &ClusterMap) -> Vec<(shoal_cluster::ShardId, i64)> {
    let mut out = Vec::new();
    for shard in cluster.shard_nodes(map).unwrap() {
        let n = match cluster
            .node(shard.primary)
            .command(&["DBSIZE"])
            .await
            .unwrap()
        {
            Value::Int(n) => n,
            other => panic!("DBSIZE answered {other:?}"),
        };
        out.push((shard.shard, n));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_move_with_their_keys_when_a_shard_joins_and_when_it_leaves() {
    run_test(
        "slots_move_with_their_keys_when_a_shard_joins_and_when_it_leaves",
        async {
            const KEYS: usize = 3000;
            let (mut cluster, client) = filled(2, 0, KEYS).await;

            // A third shard joins while the application works.
            let traffic = Traffic::start(client.clone());
            let started = Instant::now();
            let joined = cluster.add_node(false).await.expect("a node joins");
            let status = cluster
                .wait_until("the slots to settle", SETTLE_WITHIN, |s| {
                    s.map.migrations.is_empty() && s.map.shards.len() == 3
                })
                .await
                .unwrap();
            println!("joined and settled in {:?}", started.elapsed());
            let rounds = traffic.stop().await;
            assert!(
                rounds > 100,
                "the application made progress: {rounds} rounds"
            );
            let map = status.map;
            let new_shard = cluster.shard_of_node(&map, joined).unwrap().shard;
            assert!(
                map.slots.count(new_shard) > 4000,
                "the new shard took its share"
            );
            check(&client, KEYS).await;
            // Every key is on its slot's owner only: the old owners dropped what moved.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let counts = held(&cluster, &map).await;
                let total: i64 = counts.iter().map(|(_, n)| n).sum();
                let live = rounds.min(500) as usize;
                if total == (KEYS + live) as i64 {
                    assert!(counts.iter().all(|(_, n)| *n > 500), "{counts:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "keys left behind: {counts:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let pauses = common::metric(
                cluster.node(cluster.shard_nodes(&map).unwrap()[0].primary),
                "shoal_migration_hand_overs_total",
            )
            .await;
            assert!(pauses > 0, "the old shard handed slots over");

            // The new shard's primary is removed: its shard drains first, then it stops.
            let traffic = Traffic::start(client.clone());
            let id = cluster.node(joined).id().await.unwrap();
            cluster.remove_node(id).await.expect("the removal is taken");
            let status = cluster
                .wait_until("the shard to drain and leave", SETTLE_WITHIN, |s| {
                    s.map.shards.len() == 2
                        && s.map.migrations.is_empty()
                        && s.map.node(id).is_none()
                })
                .await
                .unwrap();
            traffic.stop().await;
            assert_eq!(status.map.slots.count(new_shard), 0);
            check(&client, KEYS).await;
        },
    )
    .await;
}

/// Sets `migration-max-bandwidth` on node `index` (so a migration from it lasts a while).
async fn throttle(cluster: &TestCluster, index: usize, bandwidth: &str) {
    let reply = cluster
        .node(index)
        .command(&["CONFIG", "SET", "migration-max-bandwidth", bandwidth])
        .await
        .unwrap();
    assert_eq!(reply, Value::Simple(b"OK".to_vec()));
}

/// Every primary of the settled `map` holds only keys of its own slots, and they number
/// `expected` in all (once the old owners have dropped what moved).
async fn one_owner_each(cluster: &TestCluster, map: &ClusterMap, expected: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut total = 0;
        let mut strays = Vec::new();
        for shard in cluster.shard_nodes(map).unwrap() {
            let Value::Array(keys) = cluster
                .node(shard.primary)
                .command(&["KEYS", "*"])
                .await
                .unwrap()
            else {
                panic!("KEYS answered no array");
            };
            total += keys.len();
            for key in keys {
                let Value::Bulk(key) = key else { continue };
                if map.slots.get(shoal_cluster::key_slot(&key)) != Some(shard.shard) {
                    strays.push(String::from_utf8_lossy(&key).into_owned());
                }
            }
        }
        if total == expected && strays.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{total} keys held, {expected} expected; on a shard that does not own them: {:?}",
            &strays[..strays.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_cut_short_by_kill_9_leaves_every_key_with_one_owner() {
    run_test(
        "a_migration_cut_short_by_kill_9_leaves_every_key_with_one_owner",
        async {
            // One shard of a primary and two replicas (three controller voters, so the
            // controller outlives the primary): a joining node founds a second shard.
            const KEYS: usize = 6000;
            let (mut cluster, client) = filled(1, 2, KEYS).await;
            let map = cluster.status().await.unwrap().map;
            let source = cluster.shard_nodes(&map).unwrap()[0].clone();
            let waited = cluster
                .node(source.primary)
                .command(&["WAIT", "2", "5000"])
                .await
                .unwrap();
            assert_eq!(waited, Value::Int(2), "the replicas have every key");

            // The target dies in the middle of the snapshot: the slots stay the source's.
            throttle(&cluster, source.primary, "40kb").await;
            let traffic = Traffic::start(client.clone());
            let target = cluster
                .join_node(Default::default(), false)
                .await
                .expect("a node joins");
            let status = cluster.status().await.unwrap();
            assert!(!status.map.migrations.is_empty(), "slots are moving");
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.node(target).kill().unwrap();
            let target_id = cluster.node(target).known_id().unwrap();
            cluster
                .wait_until("the target to be failed", SETTLE_WITHIN, |s| {
                    s.map.node(target_id).is_some_and(|n| !n.is_ok())
                })
                .await
                .unwrap();
            let rounds = traffic.stop().await;
            cluster
                .remove_node(target_id)
                .await
                .expect("the dead target goes");
            let status = cluster
                .wait_until("the migration to be called off", SETTLE_WITHIN, |s| {
                    s.map.migrations.is_empty() && s.map.shards.len() == 1
                })
                .await
                .unwrap();
            assert_eq!(status.map.slots.count(source.shard), shoal_cluster::SLOTS);
            check(&client, KEYS).await;
            let live = rounds.min(500) as usize;
            one_owner_each(&cluster, &status.map, KEYS + live).await;

            // The source dies in the middle of the snapshot: its replica takes over, and the
            // migration starts over from it.
            throttle(&cluster, source.primary, "40kb").await;
            let target = cluster
                .join_node(Default::default(), false)
                .await
                .expect("a node joins");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status = cluster.status().await.unwrap();
            assert!(!status.map.migrations.is_empty(), "slots are moving");
            cluster.node(source.primary).kill().unwrap();
            let target_id = cluster.node(target).known_id().unwrap();
            let status = cluster
                .wait_until(
                    "the migration to finish from the new primary",
                    SETTLE_WITHIN,
                    |s| {
                        s.map.migrations.is_empty()
                            && s.map.shards.len() == 2
                            && s.map.placement_of(target_id).is_some()
                            && s.map
                                .slots
                                .count(s.map.placement_of(target_id).unwrap().0.id)
                                > 4000
                    },
                )
                .await
                .unwrap();
            check(&client, KEYS).await;
            one_owner_each(&cluster, &status.map, KEYS + live).await;
        },
    )
    .await;
}

/// Runs `shoal cluster <args>` against the node at `node` (with the test kit's cluster
/// secret), bounded in time; returns whether it succeeded, and its stdout and stderr.
async fn shoal_cluster(node: &str, args: &[&str]) -> (bool, String, String) {
    let mut command = std::process::Command::new(SHOAL);
    command
        .env(
            "SHOAL_CLUSTER_SECRET_FILE",
            shoal_testkit::cluster_secret_file(),
        )
        .arg("cluster")
        .args(args)
        .args(["--node", node, "--wait-timeout", "30"]);
    let output = tokio::task::spawn_blocking(move || {
        shoal_testkit::run_within(command, Duration::from_secs(45), "shoal cluster")
    })
    .await
    .unwrap()
    .expect("shoal cluster ends within its --wait-timeout");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slots_move_on_demand_and_back_by_a_rebalance_with_their_keys() {
    run_test(
        "slots_move_on_demand_and_back_by_a_rebalance_with_their_keys",
        async {
            const KEYS: usize = 3000;
            let (cluster, client) = filled(2, 0, KEYS).await;
            let before = cluster.status().await.unwrap().map;
            let shards = cluster.shard_nodes(&before).unwrap();
            let target = shards[1].primary;
            let target_id = cluster.node(target).id().await.unwrap();
            let entry = cluster.node(shards[0].primary).resp_addr();
            // Slots the other shard owns, as ranges: the first 2000 of them.
            let theirs: Vec<u16> = (0..shoal_cluster::SLOTS as u16)
                .filter(|&s| before.slots.get(s) == Some(shards[0].shard))
                .take(2000)
                .collect();
            let ranges = shoal_cluster::slot_ranges(theirs.iter().copied());
            let arg = ranges
                .iter()
                .map(|(a, b)| format!("{a}-{b}"))
                .collect::<Vec<_>>()
                .join(",");

            // Refused, and nothing moves: a node that is not in the cluster.
            let (ok, _, stderr) =
                shoal_cluster(&entry, &["move-slots", &arg, "--to", "00000000000000aa"]).await;
            assert!(
                !ok && stderr.contains("no node 00000000000000aa"),
                "{stderr}"
            );
            assert!(cluster.status().await.unwrap().map.migrations.is_empty());

            // Moved on demand while the application works.
            let traffic = Traffic::start(client.clone());
            let (ok, stdout, stderr) = shoal_cluster(
                &entry,
                &["move-slots", &arg, "--to", &target_id.to_string()],
            )
            .await;
            assert!(ok, "move-slots failed: {stdout}\n{stderr}");
            assert!(stdout.contains("done: the slots are shard"), "{stdout}");
            let map = cluster
                .wait_until("the moved slots to settle", SETTLE_WITHIN, |s| {
                    s.map.migrations.is_empty()
                })
                .await
                .unwrap()
                .map;
            assert!(
                theirs
                    .iter()
                    .all(|&s| map.slots.get(s) == Some(shards[1].shard)),
                "every slot asked for is the target's"
            );
            assert_eq!(
                map.slots.count(shards[0].shard),
                before.slots.count(shards[0].shard) - theirs.len(),
                "no other slot moved"
            );
            let rounds = traffic.stop().await;
            check(&client, KEYS).await;
            let live = rounds.min(500) as usize;
            one_owner_each(&cluster, &map, KEYS + live).await;

            // A rebalance places them again: the shards even out, keys and all.
            let traffic = Traffic::start(client.clone());
            let (ok, stdout, stderr) = shoal_cluster(&entry, &["rebalance"]).await;
            assert!(ok, "rebalance failed: {stdout}\n{stderr}");
            let map = cluster
                .wait_until("the rebalance to settle", SETTLE_WITHIN, |s| {
                    s.map.migrations.is_empty()
                })
                .await
                .unwrap()
                .map;
            let counts: Vec<usize> = shards.iter().map(|s| map.slots.count(s.shard)).collect();
            // Placement keeps every shard within 5% over the mean.
            let cap = shoal_cluster::SLOTS * 105 / 200;
            assert!(
                counts.iter().all(|&n| n <= cap),
                "within 5% of even again: {counts:?}"
            );
            let rounds_after = traffic.stop().await;
            check(&client, KEYS).await;
            let live = live.max(rounds_after.min(500) as usize);
            one_owner_each(&cluster, &map, KEYS + live).await;

            // Valkey 9's CLUSTER MIGRATESLOTS, sent to any node: two groups, one to each shard.
            let to_first = cluster.node(shards[0].primary).id().await.unwrap();
            let of = |shard| {
                (0..shoal_cluster::SLOTS as u16)
                    .filter(|&s| map.slots.get(s) == Some(shard))
                    .take(50)
                    .collect::<Vec<u16>>()
            };
            let (second_s, first_s) = (of(shards[1].shard), of(shards[0].shard));
            let mut args: Vec<String> = vec!["CLUSTER".into(), "MIGRATESLOTS".into()];
            for (slots, to) in [(&second_s, to_first), (&first_s, target_id)] {
                args.push("SLOTSRANGE".into());
                for (a, b) in shoal_cluster::slot_ranges(slots.iter().copied()) {
                    args.extend([a.to_string(), b.to_string()]);
                }
                args.extend(["NODE".into(), to.to_string()]);
            }
            let reply = cluster.node(target).command(&args).await.unwrap();
            assert_eq!(reply, Value::Simple(b"OK".to_vec()), "{args:?}");
            let map = cluster
                .wait_until("MIGRATESLOTS to settle", SETTLE_WITHIN, |s| {
                    s.map.migrations.is_empty()
                })
                .await
                .unwrap()
                .map;
            assert!(
                second_s
                    .iter()
                    .all(|&s| map.slots.get(s) == Some(shards[0].shard))
            );
            assert!(
                first_s
                    .iter()
                    .all(|&s| map.slots.get(s) == Some(shards[1].shard))
            );
            check(&client, KEYS).await;
            one_owner_each(&cluster, &map, KEYS + live).await;

            // Refused whole (nothing moves, no new map), with Redis's error for a bad slot and
            // Valkey's for a bad range or node name.
            let epoch = map.epoch;
            let to = target_id.to_string();
            let movable = (0..shoal_cluster::SLOTS as u16)
                .find(|&s| map.slots.get(s) == Some(shards[0].shard))
                .unwrap()
                .to_string();
            let nobody: shoal_cluster::NodeId = "00000000000000aa".parse().unwrap();
            let unknown = format!("ERR cannot move the slots: no node {nobody} in the cluster");
            for (args, expected) in [
                (
                    vec!["SLOTSRANGE", "0", "16384", "NODE", &to],
                    "ERR Invalid or out of range slot",
                ),
                (
                    vec!["SLOTSRANGE", "9", "5", "NODE", &to],
                    "ERR Start slot number 9 is greater than end slot number 5.",
                ),
                (vec!["SLOTSRANGE", "0", "5", "NODE"], "ERR syntax error"),
                (
                    vec!["SLOTSRANGE", "0", "5", "NODE", "nope"],
                    "ERR Invalid node name: nope",
                ),
                (
                    vec![
                        "SLOTSRANGE",
                        &movable,
                        &movable,
                        "NODE",
                        &to,
                        "SLOTSRANGE",
                        "6",
                        "9",
                        "NODE",
                        "00000000000000aa",
                    ],
                    &unknown,
                ),
                (
                    vec!["SLOTSRANGE"],
                    "ERR wrong number of arguments for 'cluster|migrateslots' command",
                ),
            ] {
                let command: Vec<&str> = ["CLUSTER", "MIGRATESLOTS"]
                    .into_iter()
                    .chain(args)
                    .collect();
                let reply = cluster.node(target).command(&command).await.unwrap();
                assert_eq!(
                    reply,
                    Value::Error(expected.as_bytes().to_vec()),
                    "{command:?}"
                );
            }
            let after = cluster.status().await.unwrap().map;
            assert_eq!(after.epoch, epoch, "a refused move makes no new map");
            assert!(after.migrations.is_empty());
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_fills_a_missing_replica_unless_it_asks_for_a_shard() {
    run_test(
        "a_joining_node_fills_a_missing_replica_unless_it_asks_for_a_shard",
        async {
            // One shard that should have a replica, and lost it.
            let mut cluster = TestCluster::start(SHOAL, 1, 1, ClusterOptions::default())
                .await
                .expect("the cluster starts");
            let map = cluster.status().await.unwrap().map;
            let replica = cluster.shard_nodes(&map).unwrap()[0].replicas[0];
            cluster.node(replica).kill().unwrap();
            let replica_id = cluster.node(replica).known_id().unwrap();
            cluster
                .wait_until("the replica to fail", SETTLE_WITHIN, |s| {
                    s.map.node(replica_id).is_some_and(|n| !n.is_ok())
                })
                .await
                .unwrap();

            // Asked to, a node founds a shard of its own and takes slots with their keys.
            let founder = cluster
                .add_node_with(shoal_testkit::JoinOptions {
                    extra_args: vec!["--new-shard".into()],
                    ..Default::default()
                })
                .await
                .expect("a node joins with --new-shard");
            let map = cluster.status().await.unwrap().map;
            let shard = cluster.shard_of_node(&map, founder).unwrap();
            assert_eq!(shard.primary, founder, "it founded a shard");
            assert!(map.slots.count(shard.shard) > 0);
            assert_eq!(map.shards.len(), 2);

            // A plain node fills the seat the first shard lacks instead.
            let filler = cluster.add_node(false).await.expect("a node joins");
            let map = cluster.status().await.unwrap().map;
            assert_eq!(map.shards.len(), 2, "no third shard");
            let first = &map.shards[0];
            let filler_id = cluster.node(filler).known_id().unwrap();
            assert!(
                first.replicas.contains(&filler_id),
                "it became the first shard's replica: {first:?}"
            );
        },
    )
    .await;
}

/// What [`Work`] had acknowledged: per transaction tag and per script key, the increments
/// their replies confirmed.
#[derive(Default)]
struct Acknowledged {
    transactions: std::collections::HashMap<String, i64>,
    scripts: std::collections::HashMap<String, i64>,
    rounds: u64,
    errors: Vec<String>,
}

/// An application using more than GET and SET while slots move: each round runs a
/// `MULTI`/`EXEC` of two `INCR`s on one hash tag, an `EVAL` that increments a key, and a
/// `SET ... PX 200` of a key that should then expire, and records what was acknowledged.
struct Work {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Acknowledged>,
}

impl Work {
    const INCR_SCRIPT: &'static str = "return redis.call('INCR', KEYS[1])";

    fn start(client: Client) -> Work {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut done = Acknowledged::default();
                while !stop.load(Relaxed) && done.rounds < 100_000 {
                    done.rounds += 1;
                    let round = done.rounds;
                    let tag = format!("{{tx{}}}", round % 40);
                    let (a, b) = (format!("{tag}a"), format!("{tag}b"));
                    match client
                        .transaction(&[vec!["INCR", a.as_str()], vec!["INCR", b.as_str()]])
                        .await
                    {
                        Ok(Value::Array(replies)) if replies.len() == 2 => {
                            *done.transactions.entry(tag).or_default() += 1;
                        }
                        other => done.errors.push(format!("MULTI/EXEC on {tag}: {other:?}")),
                    }
                    let key = format!("script:{}", round % 40);
                    match client
                        .command(&["EVAL", Self::INCR_SCRIPT, "1", key.as_str()])
                        .await
                    {
                        Ok(Value::Int(_)) => *done.scripts.entry(key).or_default() += 1,
                        other => done.errors.push(format!("EVAL on {key}: {other:?}")),
                    }
                    let short = format!("short:{round}");
                    if let Err(e) = client
                        .set(&short, "v", Some(Duration::from_millis(200)))
                        .await
                    {
                        done.errors.push(format!("SET {short} PX 200: {e}"));
                    }
                }
                done
            }
        });
        Work { stop, task }
    }

    async fn stop(self) -> Acknowledged {
        self.stop.store(true, Relaxed);
        self.task.await.expect("the work task")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_scripts_and_expiry_work_while_slots_move_and_the_target_s_replica_follows() {
    run_test(
        "transactions_scripts_and_expiry_work_while_slots_move_and_the_target_s_replica_follows",
        async {
            const KEYS: usize = 2000;
            let (mut cluster, client) = filled(2, 1, KEYS).await;
            let map = cluster.status().await.unwrap().map;
            // Slow snapshots, so that the work meets slots in flight.
            for shard in cluster.shard_nodes(&map).unwrap() {
                throttle(&cluster, shard.primary, "100kb").await;
            }
            let work = Work::start(client.clone());
            tokio::time::sleep(Duration::from_millis(300)).await;
            // A third shard: its primary first (it founds the shard, and slots move to it),
            // then a node that takes the seat of its replica.
            let primary = cluster
                .join_node(
                    shoal_testkit::JoinOptions {
                        extra_args: vec!["--new-shard".into()],
                        ..Default::default()
                    },
                    false,
                )
                .await
                .expect("the third shard's primary joins");
            let replica = cluster
                .join_node(shoal_testkit::JoinOptions::default(), false)
                .await
                .expect("its replica joins");
            let map = cluster
                .wait_until("the slots to settle", SETTLE_WITHIN, |s| {
                    s.map.migrations.is_empty() && s.map.shards.len() == 3
                })
                .await
                .unwrap()
                .map;
            let done = work.stop().await;
            eprintln!("{} rounds of work while the slots moved", done.rounds);
            assert!(
                done.rounds > 20,
                "the work made progress: {} rounds",
                done.rounds
            );
            assert!(
                done.errors.is_empty(),
                "{} errors in {} rounds: {:?}",
                done.errors.len(),
                done.rounds,
                &done.errors[..done.errors.len().min(5)]
            );
            let third = cluster.shard_of_node(&map, primary).unwrap();
            assert_eq!(
                third.replicas,
                vec![replica],
                "the joiner took the replica seat"
            );
            assert!(
                map.slots.count(third.shard) > 4000,
                "the third shard took its share"
            );

            // Every acknowledged increment counted once, wherever its slot went.
            for (tag, count) in &done.transactions {
                for half in ["a", "b"] {
                    let key = format!("{tag}{half}");
                    let got = client.command(&["GET", key.as_str()]).await.unwrap();
                    assert_eq!(got, Value::Bulk(count.to_string().into_bytes()), "{key}");
                }
            }
            for (key, count) in &done.scripts {
                let got = client.command(&["GET", key.as_str()]).await.unwrap();
                assert_eq!(got, Value::Bulk(count.to_string().into_bytes()), "{key}");
            }
            check(&client, KEYS).await;

            // The short-lived keys expired on every node, moved or not.
            tokio::time::sleep(Duration::from_millis(300)).await;
            for shard in cluster.shard_nodes(&map).unwrap() {
                for node in std::iter::once(shard.primary).chain(shard.replicas.iter().copied()) {
                    let left = cluster
                        .node(node)
                        .command(&["KEYS", "short:*"])
                        .await
                        .unwrap();
                    assert_eq!(
                        left,
                        Value::Array(vec![]),
                        "node {node} of shard {}",
                        shard.shard
                    );
                }
            }
            // The target's replica holds what its primary holds: the slots reached it too.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let count = |i: usize| {
                    let node = cluster.node(i);
                    async move { node.command(&["DBSIZE"]).await.unwrap() }
                };
                let (p, r) = (count(primary).await, count(replica).await);
                if p == r && p != Value::Int(0) {
                    break;
                }
                assert!(Instant::now() < deadline, "primary {p:?}, replica {r:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
}
