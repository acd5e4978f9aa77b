//! The proxy's sampled access log: one JSON line per sampled command, as a node writes it.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Harness;

#[test]
fn the_proxy_logs_sampled_commands_as_json_lines() {
    let dir = std::env::temp_dir().join(format!("shoal-proxy-access-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("access.log");
    let log = path.clone();
    let harness = Harness::start(move |c| {
        c.access_log = Some(log);
        c.access_log_sample = 1.0;
    });
    let url = format!("redis://{}/", harness.proxy.resp_addr());
    let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("user:7")
        .arg("bob")
        .query(&mut con)
        .unwrap();
    let _: String = redis::cmd("GET").arg("user:7").query(&mut con).unwrap();
    let _: String = redis::cmd("PING").query(&mut con).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines: Vec<Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        if lines.iter().any(|l| l["cmd"] == "ping") {
            break lines;
        }
        assert!(Instant::now() < deadline, "no PING line in {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let set = lines
        .iter()
        .find(|l| l["cmd"] == "set")
        .expect("a SET line");
    assert_eq!(set["key"], "user:7");
    assert_eq!(set["result"], "ok");
    assert!(set["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        lines.iter().find(|l| l["cmd"] == "ping").unwrap()["bytes_out"],
        7,
        "+PONG\\r\\n, answered by the proxy itself"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
