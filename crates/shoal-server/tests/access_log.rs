//! The sampled access log end to end: a node started with an access log writes one JSON line
//! per sampled command, with the fields a reader of the log relies on, and refuses to start
//! when the file cannot be written.

mod common;

use std::time::{Duration, Instant};

use common::Node;
use serde_json::Value;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shoal-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The log's lines once there are at least `n` (the writer flushes every 200 ms).
fn lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} lines of {n}: {text}",
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_sampled_command_is_a_json_line() {
    let dir = temp_dir("access-log");
    let path = dir.join("access.log");
    let log = path.display().to_string();
    let node = Node::start_with(|c| {
        c.access_log = log.clone();
        c.access_log_sample = 1.0;
    });
    let mut con = node.con();
    let _: () = redis::cmd("SET")
        .arg("user:1")
        .arg("alice")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("GET").arg("user:1").query(&mut con).unwrap();
    let _: redis::RedisResult<i64> = redis::cmd("INCR").arg("user:1").query(&mut con);
    let _: String = redis::cmd("PING").query(&mut con).unwrap();
    let lines = lines(&path, 4);
    let of = |cmd: &str| {
        lines
            .iter()
            .find(|l| l["cmd"] == cmd)
            .unwrap_or_else(|| panic!("no {cmd} in {lines:?}"))
    };
    let set = of("set");
    assert_eq!(set["key"], "user:1");
    assert_eq!(set["result"], "ok");
    assert_eq!(set["bytes_out"], 5, "+OK\\r\\n");
    assert!(set["bytes_in"].as_u64().unwrap() >= 15);
    assert!(set["ts"].as_u64().unwrap() > 1_700_000_000_000);
    assert!(set["latency_us"].is_u64());
    assert!(set["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(of("get")["bytes_out"], 11, "$5\\r\\nalice\\r\\n");
    assert_eq!(of("incr")["result"], "ERR");
    assert!(
        of("ping").get("key").is_none(),
        "a keyless command has no key"
    );
    drop(node);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_node_whose_access_log_cannot_be_written_does_not_start() {
    let dir = temp_dir("access-log-bad");
    let config = shoal_server::Config {
        port: 0,
        access_log: dir.join("missing/dir/access.log").display().to_string(),
        ..shoal_server::Config::default()
    };
    let error = shoal_server::Server::start(config).err().expect("no start");
    assert!(
        error.to_string().contains("cannot open the access log"),
        "{error}"
    );
    let config = shoal_server::Config {
        port: 0,
        access_log: dir.join("access.log").display().to_string(),
        access_log_sample: 2.0,
        ..shoal_server::Config::default()
    };
    let error = shoal_server::Server::start(config).err().expect("no start");
    assert!(error.to_string().contains("between 0 and 1"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
