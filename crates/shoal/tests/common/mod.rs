//! What the fault tests share: a router and a recorded workload through it, polls with a
//! deadline, waits for a promotion, and a one-line account of a checked history.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_cluster::{ClusterMap, ShardId, key_slot};
use shoal_testkit::history::{Op, Outcome, Report};
use shoal_testkit::router::{Ack, Router};
use shoal_testkit::{OpKind, Recorder, TestCluster, Workload, check};

/// How long the router's connections and exchanges may take.
pub const ROUTER_TIMEOUT: Duration = Duration::from_millis(500);

/// `WAIT 1 <this>` after every write of a synchronous workload.
pub const WAIT_TIMEOUT: Duration = Duration::from_millis(300);

/// A router seeded with every reachable node.
pub async fn router(cluster: &TestCluster) -> Arc<Router> {
    Arc::new(
        Router::new(cluster.resp_addrs(), ROUTER_TIMEOUT)
            .await
            .expect("the router learns the slots"),
    )
}

/// A workload over keys of both shards, run until stopped.
pub fn workload(clients: usize, keys: usize, read_percent: u8) -> Workload {
    Workload {
        clients,
        keys,
        key_prefix: "fo:".into(),
        read_percent,
        duration: Duration::from_secs(45),
        op_timeout: Duration::from_secs(1),
        pause: Duration::from_millis(2),
        ..Workload::default()
    }
}

/// Starts `recorder`'s workload through `router` in the background.
pub fn start_load(
    recorder: &Arc<Recorder>,
    router: &Arc<Router>,
    ack: Ack,
) -> tokio::task::JoinHandle<shoal_testkit::history::RunStats> {
    let recorder = recorder.clone();
    let router = router.clone();
    tokio::spawn(async move {
        recorder
            .run(move |_, kind| {
                let router = router.clone();
                async move { router.run_op(&kind, &ack).await }
            })
            .await
    })
}

/// Stops the workload, reads every key through `router` and checks the history.
pub async fn finish_load(
    recorder: &Arc<Recorder>,
    load: tokio::task::JoinHandle<shoal_testkit::history::RunStats>,
    router: &Arc<Router>,
) -> Report {
    recorder.stop();
    let stats = load.await.expect("the workload runs");
    eprintln!("workload: {stats:?}");
    let reader = router.clone();
    recorder
        .final_reads(
            move |_, kind| {
                let reader = reader.clone();
                async move { reader.run_op(&kind, &Ack::Primary).await }
            },
            Duration::from_secs(15),
        )
        .await
        .expect("every key can be read after the fault");
    check(recorder.history())
}

/// The acknowledged writes of `ops` to keys of `shard` (in `map`), with the node that
/// acknowledged each.
pub fn acked_writes_in<'a>(
    ops: &'a [Op],
    map: &'a ClusterMap,
    shard: ShardId,
) -> impl Iterator<Item = (&'a Op, &'a str)> + 'a {
    ops.iter()
        .filter_map(move |op| match (&op.kind, &op.outcome) {
            (OpKind::Write { key, .. }, Outcome::Ok(Some(addr)))
                if map.slots.get(key_slot(key.as_bytes())) == Some(shard) =>
            {
                Some((op, addr.as_str()))
            }
            _ => None,
        })
}

/// How long after `from` the first write of `shard`'s keys acknowledged by `addr` was
/// acknowledged.
pub fn first_ack_after(
    ops: &[Op],
    map: &ClusterMap,
    shard: ShardId,
    addr: &str,
    from: Instant,
) -> Option<Duration> {
    acked_writes_in(ops, map, shard)
        .filter(|(op, by)| *by == addr && op.start >= from)
        .map(|(op, _)| op.end.duration_since(from))
        .min()
}

/// Waits (10 s at most) until `recorder`'s history holds a write of `shard`'s keys (by `map`)
/// acknowledged by the node at `addr` and started after `from`; returns how long after `from`
/// it was acknowledged.
pub async fn first_ack_by(
    recorder: &Recorder,
    map: &ClusterMap,
    shard: ShardId,
    addr: &str,
    from: Instant,
) -> Duration {
    poll(
        "a write acknowledged by the successor",
        Duration::from_secs(10),
        || {
            let ops = recorder.history().ops();
            let found = first_ack_after(&ops, map, shard, addr, from);
            async move { found.ok_or_else(|| "none yet".to_string()) }
        },
    )
    .await
}

/// Keys whose slots `shard` owns in `map`.
pub fn keys_of(map: &ClusterMap, shard: ShardId, prefix: &str, count: usize) -> Vec<String> {
    (0..1_000_000)
        .map(|n| format!("{prefix}{n}"))
        .filter(|k| map.slots.get(key_slot(k.as_bytes())) == Some(shard))
        .take(count)
        .collect()
}

/// Polls `probe` every 20 ms until it gives a value, for at most `timeout`.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await {
            Ok(value) => return value,
            Err(last) => last,
        };
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The end of a bounded wait.
pub struct Deadline {
    what: &'static str,
    started: Instant,
    timeout: Duration,
}

impl Deadline {
    pub fn after(what: &'static str, timeout: Duration) -> Deadline {
        Deadline {
            what,
            started: Instant::now(),
            timeout,
        }
    }

    /// Waits 20 ms before the next attempt; panics with `last` once the time is up.
    pub async fn wait(&self, last: &str) {
        assert!(
            self.started.elapsed() < self.timeout,
            "{}: not within {:?}; last: {last}",
            self.what,
            self.timeout
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the controller's map has another primary than `old` for `shard`; returns the
/// new primary's index.
pub async fn wait_for_promotion(
    cluster: &TestCluster,
    shard: ShardId,
    old: usize,
    timeout: Duration,
) -> usize {
    let old_id = cluster.node(old).known_id().unwrap();
    let status = cluster
        .wait_until(
            &format!("another primary for shard {shard}"),
            timeout,
            |s| s.map.shard(shard).is_some_and(|sh| sh.primary != old_id),
        )
        .await
        .expect("a replica is promoted");
    cluster
        .shard_nodes(&status.map)
        .unwrap()
        .into_iter()
        .find(|s| s.shard == shard)
        .map(|s| s.primary)
        .unwrap()
}

/// The part of a report a reader needs: counts, lost writes, stale reads, unavailability.
pub fn summary(report: &Report) -> String {
    format!(
        "{} ops ({} ok, {} failed, {} unknown), {} acked writes ({} checked), {} lost, {} stale, \
         {} impossible, {} divergent; longest key window {}",
        report.ops,
        report.ok,
        report.failed,
        report.unknown,
        report.acked_writes,
        report.checked_writes,
        report.lost.len(),
        report.stale.len(),
        report.impossible.len(),
        report.divergent.len(),
        report
            .longest_key_window
            .as_ref()
            .map_or("none".to_string(), |(key, w)| format!(
                "{} ms ({key}, {} ops failed, first: {})",
                w.duration().as_millis(),
                w.ops,
                w.first_error
            )),
    )
}

/// Starts `clients` writers (and readers) on 16 keys, acknowledged as `ack` says.
pub fn steady_load(
    router: &Arc<Router>,
    clients: usize,
    ack: Ack,
) -> (
    Arc<Recorder>,
    tokio::task::JoinHandle<shoal_testkit::history::RunStats>,
) {
    let recorder = Arc::new(Recorder::new(workload(clients, 16, 30)));
    let load = start_load(&recorder, router, ack);
    (recorder, load)
}

/// Every write acknowledged by one replica too (`WAIT 1`).
pub const WAIT_1: Ack = Ack::Replicas {
    replicas: 1,
    timeout: WAIT_TIMEOUT,
};

/// The value of the label-less series `name` on the `/metrics` page at `http_addr`.
pub async fn metric_at(http_addr: &str, name: &str) -> u64 {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{http_addr}/metrics");
    let text = http.get(&url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {url}:\n{text}"))
}

/// The value of `name` in `node`'s `/metrics`.
pub async fn metric(node: &shoal_testkit::NodeProcess, name: &str) -> u64 {
    metric_at(&node.http_addr().expect("an HTTP port"), name).await
}

/// A `shoal proxy` (the binary `shoal`) of `cluster`, with `extra` flags, logging into the
/// cluster's directory: the process, and its RESP and HTTP addresses.
pub fn spawn_proxy(
    shoal: &str,
    cluster: &TestCluster,
    extra: &[&str],
) -> (shoal_testkit::Process, String, String) {
    let ports = shoal_testkit::free_ports(2).expect("two free ports");
    let (resp, http) = (ports[0].to_string(), ports[1].to_string());
    let seeds = cluster.resp_addrs().join(",");
    let secret = shoal_testkit::cluster_secret_file().display().to_string();
    let mut args: Vec<String> = [
        "proxy",
        "--port",
        &resp,
        "--http-port",
        &http,
        "--cluster",
        &seeds,
        "--cluster-secret-file",
        &secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let process = shoal_testkit::Process::spawn(shoal_testkit::ProcessSpec {
        name: "proxy".into(),
        binary: shoal.into(),
        args,
        env: vec![("NO_COLOR".into(), "1".into())],
        log: cluster.dir().join("proxy.log"),
        nice: 0,
    })
    .expect("the proxy starts");
    (
        process,
        format!("127.0.0.1:{resp}"),
        format!("127.0.0.1:{http}"),
    )
}

/// Waits until the proxy `process` at `addr` routes by a map of `epoch` or newer with every
/// slot assigned; fails after `timeout`, or at once if the proxy exited.
pub async fn wait_for_proxy_map(
    process: &shoal_testkit::Process,
    addr: &str,
    epoch: u64,
    timeout: Duration,
) {
    let started = Instant::now();
    loop {
        assert!(
            process.is_running(),
            "the proxy exited: {}",
            process.log_tail(20)
        );
        let reply =
            shoal_testkit::resp::command(addr, &["INFO", "proxy"], Duration::from_secs(2)).await;
        let last = match reply {
            Ok(reply) => {
                let text = shoal_testkit::resp::text(&reply).unwrap_or_default();
                let info = shoal_testkit::Info::parse(&text);
                let at = info.u64("cluster_epoch").unwrap_or(0);
                let slots = info.u64("cluster_slots_assigned").unwrap_or(0);
                if at >= epoch && slots == shoal_cluster::SLOTS as u64 {
                    return;
                }
                format!("epoch {at}, {slots} slots")
            }
            Err(e) => e.to_string(),
        };
        assert!(
            started.elapsed() < timeout,
            "the proxy has no map of epoch {epoch} after {timeout:?}; last: {last}\n{}",
            process.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cluster node's spec as the tests that start nodes by hand use it: cluster mode, one
/// worker thread, a 2 s node timeout, `args` added, its log `<name>.log` in `dir`.
pub fn node_spec(
    shoal: &str,
    dir: &shoal_testkit::TestDir,
    name: &str,
    ports: shoal_testkit::NodePorts,
    args: &[&str],
) -> shoal_testkit::NodeSpec {
    let mut all: Vec<String> = [
        "--cluster-enabled",
        "--threads",
        "1",
        "--node-timeout",
        "2000",
        "--log-level",
        "info,openraft=warn",
    ]
    .map(String::from)
    .to_vec();
    all.extend(args.iter().map(|s| s.to_string()));
    shoal_testkit::NodeSpec {
        name: name.into(),
        binary: shoal.into(),
        ports,
        args: all,
        log: dir.join(&format!("{name}.log")),
        env: Vec::new(),
        nice: 0,
        password: None,
        dir: None,
    }
}

/// `CLUSTER NODES` of `node`, or what went wrong (for a poll's report).
pub async fn cluster_nodes(node: &shoal_testkit::NodeProcess) -> String {
    match node.command(&["CLUSTER", "NODES"]).await {
        Ok(reply) => shoal_testkit::resp::text(&reply)
            .unwrap_or_else(|| format!("CLUSTER NODES answered {reply:?}")),
        Err(e) => format!("CLUSTER NODES failed: {e}"),
    }
}
