//! An unmodified redis-py (5.0.8, as `.ci/run` installs it) against a cluster of real
//! `shoal server` processes, doing what applications do first: a `Lock` on `RedisCluster`, a
//! `MULTI`/`EXEC` pipeline on a slot's node, a `WATCH` abort, `EVAL` with keys, hashes, a
//! `PUBLISH` on one node reaching a subscriber on another, and a keyspace `expired` event. The
//! checks are tests/redis_py/cluster_apps.py; this starts the cluster and runs it.

use std::process::{Command, Stdio};
use std::time::Duration;

use shoal_testkit::tools::runnable;
use shoal_testkit::{ClusterOptions, TestCluster};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// The script's own bound (its checks wait at most 10 s each).
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

/// Why redis-py cannot run here, if it cannot.
fn missing_redis_py() -> Option<String> {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import redis, sys; sys.exit(redis.__version__ < '5')"])
        .status();
    match probe {
        Ok(status) if status.success() => None,
        _ => Some("python3 with redis-py 5 is missing: `pip install redis==5.0.8`".into()),
    }
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
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/redis_py/cluster_apps.py"
        );
        let addrs = cluster.resp_addrs();
        // coreutils' `timeout` bounds the script: it ends with status 124 if it hangs.
        let output = tokio::task::spawn_blocking(move || {
            Command::new("timeout")
                .arg(SCRIPT_LIMIT.as_secs().to_string())
                .arg("python3")
                .arg(script)
                .args(addrs)
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
            "redis-py's checks failed ({}):\n{stdout}\n{stderr}",
            output.status
        );
    })
    .await;
}
