//! Routing from the outside, on real `shoal server` processes: the smart client sends every
//! key to its slot's owner; with `--routing forward` any node serves a plain client, multi-key
//! commands included; every node's HTTP API serves the whole keyspace.
//!
//! The tests take turns (one cluster at a time), as in `cluster.rs`.

use std::future::Future;
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientConfig};
use shoal_cluster::{ClusterMap, key_slot};
use shoal_testkit::resp::{RespConnection, text};
use shoal_testkit::{ClusterOptions, TestCluster, Value};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const TEST_LIMIT: Duration = Duration::from_secs(50);
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

async fn start(shards: usize, routing: Option<&str>) -> TestCluster {
    let options = ClusterOptions {
        routing: routing.map(str::to_string),
        ..ClusterOptions::default()
    };
    TestCluster::start(SHOAL, shards, 0, options)
        .await
        .expect("the cluster starts")
}

/// The RESP address of the primary owning `key` in `map`.
fn owner(map: &ClusterMap, key: &str) -> String {
    map.primary_of_slot(key_slot(key.as_bytes()))
        .expect("every slot has an owner")
        .resp_addr()
}

async fn call(conn: &mut RespConnection, args: &[&str]) -> Value {
    conn.call(args).await.expect("the node answers")
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smart_client_puts_every_key_on_its_owner() {
    run_test("the_smart_client_puts_every_key_on_its_owner", async {
        let cluster = start(3, None).await;
        let config = ClientConfig::new(cluster.resp_addrs()).with_cluster_secret(cluster.secret());
        let client = Client::connect(config)
            .await
            .expect("the smart client connects");
        let keys: Vec<String> = (0..10_000).map(|i| format!("user:{i}")).collect();
        let writes = keys.iter().map(|k| client.set(k, format!("v-{k}"), None));
        for result in futures_util::future::join_all(writes).await {
            result.expect("every write succeeds");
        }
        let map = client.map();
        let status = cluster.status().await.unwrap();
        assert_eq!(map.epoch, status.map.epoch, "the client follows the map");
        // Each node holds exactly the keys whose slots it owns.
        for node in cluster.nodes() {
            let addr = node.resp_addr();
            let expected = keys.iter().filter(|k| owner(&map, k) == addr).count() as i64;
            let held = int(&node.command(&["DBSIZE"]).await.unwrap());
            assert_eq!(held, expected, "{addr}");
            assert!(held > 2_500, "{addr} holds only {held} keys");
        }
        for key in keys.iter().step_by(97) {
            let mut conn = RespConnection::connect(&owner(&map, key), RESP_TIMEOUT)
                .await
                .unwrap();
            let got = call(&mut conn, &["GET", key]).await;
            assert_eq!(text(&got).as_deref(), Some(format!("v-{key}").as_str()));
            assert_eq!(
                int(&call(&mut conn, &["CLUSTER", "KEYSLOT", key]).await),
                i64::from(key_slot(key.as_bytes()))
            );
        }
        let values = client.mget(&keys[..500]).await.unwrap();
        assert!(values.iter().all(Option::is_some));
        assert_eq!(client.del(&keys[..500]).await.unwrap(), 500);
        let stats = client.stats();
        assert_eq!(stats.errors, 0);
        assert_eq!(stats.redirects, 0, "a current map needs no redirection");
        assert!(
            stats.socket_writes < stats.frames_sent,
            "requests share socket writes: {stats:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forward_routing_any_node_serves_a_plain_client() {
    run_test(
        "with_forward_routing_any_node_serves_a_plain_client",
        async {
            let cluster = start(3, Some("forward")).await;
            let map = cluster.status().await.unwrap().map;
            let entry = cluster.node(0).resp_addr();
            let mut conn = RespConnection::connect(&entry, RESP_TIMEOUT).await.unwrap();
            let keys: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
            for key in &keys {
                let reply = call(&mut conn, &["SET", key, key]).await;
                assert_eq!(text(&reply).as_deref(), Some("OK"), "SET {key}");
            }
            // The keys live on their owners, not on the node that took the commands (each
            // node's own count is in its `INFO keyspace`; its `DBSIZE` is the cluster's).
            for node in cluster.nodes() {
                let addr = node.resp_addr();
                let expected = keys.iter().filter(|k| owner(&map, k) == addr).count();
                let info = node.info("keyspace").await.unwrap();
                let held = info
                    .get("db0")
                    .and_then(|db| db.split(',').next()?.strip_prefix("keys=")?.parse().ok())
                    .unwrap_or(0usize);
                assert_eq!(held, expected, "{addr}");
            }
            // The keyspace commands answer for the whole cluster, as the proxy does.
            assert_eq!(int(&call(&mut conn, &["DBSIZE"]).await), keys.len() as i64);
            let Value::Array(all) = call(&mut conn, &["KEYS", "k*"]).await else {
                panic!("KEYS answers an array");
            };
            assert_eq!(all.len(), keys.len());
            let mut scanned = std::collections::BTreeSet::new();
            let mut cursor = "0".to_string();
            loop {
                let Value::Array(parts) = call(&mut conn, &["SCAN", &cursor, "COUNT", "50"]).await
                else {
                    panic!("SCAN answers an array");
                };
                cursor = text(&parts[0]).unwrap();
                let Value::Array(batch) = &parts[1] else {
                    panic!("SCAN's keys are an array");
                };
                scanned.extend(batch.iter().filter_map(text));
                if cursor == "0" {
                    break;
                }
            }
            assert_eq!(
                scanned.len(),
                keys.len(),
                "a full SCAN sees every key once or more"
            );
            let random = text(&call(&mut conn, &["RANDOMKEY"]).await).unwrap();
            assert!(keys.contains(&random), "{random}");
            // Multi-key commands over every shard are split and merged.
            let mut mget = vec!["MGET"];
            mget.extend(keys.iter().map(String::as_str));
            mget.push("missing");
            let Value::Array(values) = call(&mut conn, &mget).await else {
                panic!("MGET answers an array");
            };
            assert_eq!(values.len(), keys.len() + 1);
            for (key, value) in keys.iter().zip(&values) {
                assert_eq!(text(value).as_deref(), Some(key.as_str()));
            }
            assert_eq!(values.last(), Some(&Value::Null));
            let mut exists = vec!["EXISTS"];
            exists.extend(keys.iter().map(String::as_str));
            assert_eq!(int(&call(&mut conn, &exists).await), keys.len() as i64);
            let reply = call(&mut conn, &["MSET", "a", "1", "b", "2", "c", "3"]).await;
            assert_eq!(text(&reply).as_deref(), Some("OK"));
            assert_eq!(
                int(&call(&mut conn, &["DEL", "a", "b", "c", "nope"]).await),
                3
            );
            // Commands that cannot be split keep Redis Cluster's answer.
            let reply = call(&mut conn, &["RENAME", "k1", "k2"]).await;
            let line = match reply {
                Value::Error(line) => String::from_utf8_lossy(&line).into_owned(),
                other => panic!("RENAME across slots answered {other:?}"),
            };
            assert!(line.starts_with("CROSSSLOT"), "{line}");
            // A pipeline through another node comes back whole and in order.
            let other = cluster.node(1).resp_addr();
            let mut piped = RespConnection::connect(&other, RESP_TIMEOUT).await.unwrap();
            let mut frames = Vec::new();
            for key in &keys {
                shoal_proto::request::encode_into(&mut frames, &["GET", key.as_str()]);
            }
            let replies = piped.pipeline(&frames, keys.len()).await.unwrap();
            for (key, reply) in keys.iter().zip(&replies) {
                assert_eq!(text(reply).as_deref(), Some(key.as_str()));
            }
            // RESP3 clients get RESP3 replies, nulls included.
            let mut resp3 = RespConnection::connect(&other, RESP_TIMEOUT).await.unwrap();
            assert!(matches!(
                call(&mut resp3, &["HELLO", "3"]).await,
                Value::Map(_)
            ));
            let missing = keys
                .iter()
                .map(|k| format!("{k}-missing"))
                .find(|k| owner(&map, k) != other)
                .unwrap();
            assert_eq!(call(&mut resp3, &["GET", &missing]).await, Value::Null);
            let raw = resp3.raw_reply(&["GET", &missing]).await.unwrap();
            assert_eq!(raw, b"_\r\n", "a RESP3 null, not RESP2's");
            // FLUSHALL empties every primary.
            assert_eq!(
                text(&call(&mut conn, &["FLUSHALL"]).await).as_deref(),
                Some("OK")
            );
            assert_eq!(int(&call(&mut resp3, &["DBSIZE"]).await), 0);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forward_routing_a_transaction_runs_whole_on_its_slot_s_owner() {
    run_test(
        "with_forward_routing_a_transaction_runs_whole_on_its_slot_s_owner",
        async {
            let cluster = start(3, Some("forward")).await;
            let map = cluster.status().await.unwrap().map;
            let entry = cluster.node(0).resp_addr();
            // A hash tag another node owns, and one the entry node owns.
            let tag_where = |mine: bool| {
                (0..1_000_000)
                    .map(|i| format!("{{tx{i}}}"))
                    .find(|tag| (owner(&map, tag) == entry) == mine)
                    .unwrap()
            };
            let (remote, local) = (tag_where(false), tag_where(true));
            let (a, k) = (format!("{remote}a"), format!("{local}k"));
            let mut conn = RespConnection::connect(&entry, RESP_TIMEOUT).await.unwrap();
            let simple = |s: &str| Value::Simple(s.as_bytes().to_vec());
            let bulk = |s: &str| Value::Bulk(s.as_bytes().to_vec());
            let error = |value: Value| match value {
                Value::Error(line) => String::from_utf8_lossy(&line).into_owned(),
                other => panic!("expected an error reply, got {other:?}"),
            };

            assert_eq!(call(&mut conn, &["MULTI"]).await, simple("OK"));
            for command in [&["SET", &a, "1"][..], &["INCR", &a], &["GET", &a]] {
                assert_eq!(call(&mut conn, command).await, simple("QUEUED"));
            }
            assert_eq!(
                call(&mut conn, &["EXEC"]).await,
                Value::Array(vec![simple("OK"), Value::Int(2), bulk("2")])
            );
            // It ran on the owner, not on the node that took it.
            let mut at_owner = RespConnection::connect(&owner(&map, &a), RESP_TIMEOUT)
                .await
                .unwrap();
            assert_eq!(call(&mut at_owner, &["GET", &a]).await, bulk("2"));
            // (The entry node's own count is in its `INFO keyspace`: its `DBSIZE` is the
            // cluster's.)
            let entry_keyspace = cluster.node(0).info("keyspace").await.unwrap();
            assert_eq!(
                entry_keyspace.get("db0"),
                None,
                "nothing stayed on the entry node"
            );

            // A command's own error is its reply in the array; refused while queuing, the
            // transaction is aborted.
            assert_eq!(call(&mut conn, &["MULTI"]).await, simple("OK"));
            assert_eq!(
                call(&mut conn, &["SET", &a, "x", "PX", "notanumber"]).await,
                simple("QUEUED")
            );
            let Value::Array(replies) = call(&mut conn, &["EXEC"]).await else {
                panic!("EXEC answers an array");
            };
            assert!(error(replies[0].clone()).starts_with("ERR value is not an integer"));
            assert_eq!(call(&mut conn, &["MULTI"]).await, simple("OK"));
            assert_eq!(call(&mut conn, &["SET", &a, "3"]).await, simple("QUEUED"));
            assert!(error(call(&mut conn, &["GET"]).await).starts_with("ERR wrong number"));
            assert!(error(call(&mut conn, &["EXEC"]).await).starts_with("EXECABORT"));
            // Keys in several slots: CROSSSLOT at EXEC, nothing runs.
            assert_eq!(call(&mut conn, &["MULTI"]).await, simple("OK"));
            assert_eq!(call(&mut conn, &["SET", &a, "3"]).await, simple("QUEUED"));
            assert_eq!(call(&mut conn, &["SET", &k, "3"]).await, simple("QUEUED"));
            assert!(error(call(&mut conn, &["EXEC"]).await).starts_with("CROSSSLOT"));
            assert_eq!(call(&mut at_owner, &["GET", &a]).await, bulk("2"));

            // WATCH of another node's key is refused; a watch here cannot guard a
            // transaction there.
            let refused = error(call(&mut conn, &["WATCH", &a]).await);
            assert!(
                refused.contains("WATCH of keys another node serves"),
                "{refused}"
            );
            assert_eq!(call(&mut conn, &["WATCH", &k]).await, simple("OK"));
            assert_eq!(call(&mut conn, &["MULTI"]).await, simple("OK"));
            assert_eq!(call(&mut conn, &["INCR", &a]).await, simple("QUEUED"));
            let refused = error(call(&mut conn, &["EXEC"]).await);
            assert!(refused.contains("WATCHes keys of this node"), "{refused}");
            // A transaction on the entry node's own keys keeps its watch.
            assert_eq!(call(&mut conn, &["WATCH", &k]).await, simple("OK"));
            cluster
                .node(0)
                .command(&["SET", &k, "changed"])
                .await
                .unwrap();
            assert_eq!(call(&mut conn, &["MULTI"]).await, simple("OK"));
            assert_eq!(
                call(&mut conn, &["SET", &k, "mine"]).await,
                simple("QUEUED")
            );
            assert_eq!(call(&mut conn, &["EXEC"]).await, Value::Null);
            assert_eq!(call(&mut at_owner, &["GET", &a]).await, bulk("2"));
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_s_http_api_serves_the_whole_keyspace() {
    run_test("every_node_s_http_api_serves_the_whole_keyspace", async {
        let cluster = start(3, None).await;
        let map = cluster.status().await.unwrap().map;
        let http: Vec<String> = cluster
            .nodes()
            .iter()
            .map(|n| n.http_addr().expect("HTTP is on"))
            .collect();
        let client = reqwest::Client::new();
        for i in 0..60 {
            let key = format!("web:{i}");
            let (writer, reader, deleter) = (&http[i % 3], &http[(i + 1) % 3], &http[(i + 2) % 3]);
            let posted = client
                .post(format!("http://{writer}/{key}"))
                .body(format!("{{\"value\":\"{key}\",\"ttl_ms\":60000}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(posted.status(), 204, "POST {key} to {writer}");
            let got = client
                .get(format!("http://{reader}/{key}"))
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200, "GET {key} from {reader}");
            let body: serde_json::Value = got.json().await.unwrap();
            assert_eq!(body["value"], key.as_str());
            // Stored on the owner, with its TTL.
            let mut conn = RespConnection::connect(&owner(&map, &key), RESP_TIMEOUT)
                .await
                .unwrap();
            let ttl = int(&call(&mut conn, &["PTTL", &key]).await);
            assert!((50_000..=60_000).contains(&ttl), "PTTL {ttl}");
            let deleted = client
                .delete(format!("http://{deleter}/{key}"))
                .send()
                .await
                .unwrap();
            assert_eq!(deleted.status(), 204, "DELETE {key} at {deleter}");
            let gone = client
                .get(format!("http://{writer}/{key}"))
                .send()
                .await
                .unwrap();
            assert_eq!(gone.status(), 404);
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoal_proxy_serves_plain_clients_and_http() {
    run_test("shoal_proxy_serves_plain_clients_and_http", async {
        let cluster = start(3, None).await;
        let ports = shoal_testkit::free_ports(2).expect("two free ports");
        let (port, http_port) = (ports[0], ports[1]);
        let log = cluster.dir().join("proxy.log");
        let proxy = shoal_testkit::Process::spawn(shoal_testkit::ProcessSpec {
            name: "proxy".into(),
            binary: SHOAL.into(),
            args: vec![
                "proxy".into(),
                "--port".into(),
                port.to_string(),
                "--http-port".into(),
                http_port.to_string(),
                "--cluster".into(),
                cluster.resp_addrs().join(","),
                "--cluster-secret-file".into(),
                shoal_testkit::cluster_secret_file().display().to_string(),
            ],
            env: Vec::new(),
            log: log.clone(),
            nice: 0,
        })
        .expect("the proxy starts");
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            if let Ok(mut conn) = RespConnection::connect(&addr, RESP_TIMEOUT).await
                && conn.call(&["PING"]).await.is_ok()
            {
                break conn;
            }
            assert!(
                proxy.is_running(),
                "the proxy exited: {}",
                proxy.log_tail(20)
            );
            assert!(Instant::now() < deadline, "the proxy never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let map = cluster.status().await.unwrap().map;
        let keys: Vec<String> = (0..200).map(|i| format!("p{i}")).collect();
        let mut mset = vec!["MSET".to_string()];
        for key in &keys {
            mset.push(key.clone());
            mset.push(format!("v{key}"));
        }
        let reply = conn.call(&mset).await.unwrap();
        assert_eq!(text(&reply).as_deref(), Some("OK"));
        let mut mget = vec!["MGET".to_string()];
        mget.extend(keys.iter().cloned());
        let Value::Array(values) = conn.call(&mget).await.unwrap() else {
            panic!("MGET answers an array");
        };
        for (key, value) in keys.iter().zip(&values) {
            assert_eq!(text(value), Some(format!("v{key}")));
        }
        assert_eq!(
            int(&conn.call(&["DBSIZE"]).await.unwrap()),
            keys.len() as i64
        );
        for node in cluster.nodes() {
            let addr = node.resp_addr();
            let expected = keys.iter().filter(|k| owner(&map, k) == addr).count() as i64;
            assert_eq!(
                int(&node.command(&["DBSIZE"]).await.unwrap()),
                expected,
                "{addr}"
            );
        }
        let got = reqwest::get(format!("http://127.0.0.1:{http_port}/p7"))
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        let body: serde_json::Value = got.json().await.unwrap();
        assert_eq!(body["value"], "vp7");
        proxy.terminate(Duration::from_secs(5)).await.unwrap();
    })
    .await;
}
