//! An unmodified redis-py (5.2.1, as `.ci/run` installs it) against real `shoal server`
//! processes:
//!
//! * doing what applications do first, on a cluster: a `Lock` on `RedisCluster`, a
//!   `MULTI`/`EXEC` pipeline on a slot's node, a `WATCH` abort, `EVAL` with keys, hashes, a
//!   `PUBLISH` on one node reaching a subscriber on another, and a keyspace `expired` event
//!   (tests/redis_py/cluster_apps.py);
//! * an application on `RedisCluster` writing and reading back without pause while a shard
//!   joins and is removed (its slots moving with their keys both ways): no error, no wrong
//!   value (tests/redis_py/migration_traffic.py);
//! * its client-side cache (`protocol=3, cache_config=CacheConfig()`), on one node with
//!   `redis.Redis` and on a 3-shard cluster with `RedisCluster`: reads served locally, and
//!   never a stale value 50 ms after another connection's write, delete, expiry or `FLUSHALL`
//!   (tests/redis_py/client_cache.py).
//!
//! The checks are the Python scripts; this starts the servers and runs them.

use std::process::{Command, Stdio};
use std::time::Duration;

use shoal_testkit::tools::runnable;
use shoal_testkit::{ClusterOptions, NodePorts, NodeProcess, NodeSpec, TestCluster, TestDir};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A script's own bound (its checks wait at most 10 s each).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// Why redis-py (5.1 or later: its client-side cache) cannot run here, if it cannot.
fn missing_redis_py() -> Option<String> {
    let probe = Command::new("python3")
        .args(["-c", "import redis.cache"])
        .stdin(Stdio::null())
        .output();
    match probe {
        Ok(output) if output.status.success() => None,
        _ => {
            Some("python3 with redis-py 5.1 or later is missing: `pip install redis==5.2.1`".into())
        }
    }
}

/// Runs `tests/redis_py/<script>` with `args`, bounded by coreutils' `timeout` (status 124 if
/// it hangs), and fails unless it says `all checks passed`.
async fn run_script(script: &str, args: Vec<String>) {
    let path = format!("{}/tests/redis_py/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg(SCRIPT_LIMIT.as_secs().to_string())
            .arg("python3")
            .arg(path)
            .args(args)
            .stdin(Stdio::null())
            .output()
    })
    .await
    .expect("the script's thread")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success() && stdout.contains("all checks passed"),
        "redis-py's checks in {script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

/// A cluster of `shards` primaries without replicas or HTTP.
async fn cluster(shards: usize) -> TestCluster {
    let options = ClusterOptions {
        http: false,
        ..ClusterOptions::default()
    };
    TestCluster::start(SHOAL, shards, 0, options)
        .await
        .expect("the cluster starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_applications_work_on_a_cluster() {
    let test = "redis_py_applications_work_on_a_cluster";
    if !runnable(test, missing_redis_py()) {
        return;
    }
    shoal_testkit::run_alone(test, SCRIPT_LIMIT + Duration::from_secs(60), async {
        let options = ClusterOptions {
            http: false,
            ..ClusterOptions::default()
        };
        let cluster = TestCluster::start(SHOAL, 2, 1, options)
            .await
            .expect("the cluster starts");
        run_script("cluster_apps.py", cluster.resp_addrs()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_client_side_cache_is_never_stale_on_a_node() {
    let test = "redis_py_client_side_cache_is_never_stale_on_a_node";
    if !runnable(test, missing_redis_py()) {
        return;
    }
    shoal_testkit::run_alone(test, SCRIPT_LIMIT + Duration::from_secs(60), async {
        // Declared first, dropped last: the node's log stays if the test fails.
        let dir = TestDir::new(test).expect("a test directory");
        let spec = NodeSpec {
            name: "node".into(),
            binary: SHOAL.into(),
            ports: NodePorts::reserve_without_http().expect("free ports"),
            args: vec!["--threads".into(), "1".into()],
            log: dir.join("node.log"),
            env: Vec::new(),
            nice: 0,
            password: None,
            dir: None,
        };
        let node = NodeProcess::start(spec, Duration::from_secs(30))
            .await
            .expect("the node starts");
        let args = vec!["node".to_string(), node.resp_addr()];
        run_script("client_cache.py", args).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_client_side_cache_is_never_stale_on_a_cluster() {
    let test = "redis_py_client_side_cache_is_never_stale_on_a_cluster";
    if !runnable(test, missing_redis_py()) {
        return;
    }
    shoal_testkit::run_alone(test, SCRIPT_LIMIT + Duration::from_secs(60), async {
        let cluster = cluster(3).await;
        let mut args = vec!["cluster".to_string()];
        args.extend(cluster.resp_addrs());
        run_script("client_cache.py", args).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_sees_no_error_while_slots_move() {
    let test = "redis_py_sees_no_error_while_slots_move";
    if !runnable(test, missing_redis_py()) {
        return;
    }
    shoal_testkit::run_alone(test, SCRIPT_LIMIT + Duration::from_secs(60), async {
        let mut cluster = cluster(2).await;
        let stop = cluster.dir().join("stop-traffic");
        let mut args = vec![stop.display().to_string()];
        args.extend(cluster.resp_addrs());
        let traffic = tokio::spawn(run_script("migration_traffic.py", args));
        // Let the application get going, then grow and shrink the cluster under it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let joined = cluster.add_node(false).await.expect("a node joins");
        let id = cluster.node(joined).known_id().expect("its id");
        cluster.remove_node(id).await.expect("its removal is taken");
        cluster
            .wait_until(
                "its shard to drain and leave",
                Duration::from_secs(40),
                |s| s.map.node(id).is_none() && s.map.migrations.is_empty(),
            )
            .await
            .expect("the shard drains");
        std::fs::write(&stop, b"").expect("the stop file");
        traffic.await.expect("the script's task");
    })
    .await;
}
