//! Scripts on real `shoal server` processes: in a cluster a script's declared keys route it
//! (`-CROSSSLOT`, `-MOVED`) and a script that reaches a key it did not declare in another
//! slot is refused as Redis Cluster refuses it; a replica applies a script's writes together,
//! so its readers never see half of a script; a replica gets its primary's functions on the
//! stream and on a full resync.
//!
//! The tests take turns (one cluster at a time), as in `cluster.rs`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_cluster::{ClusterMap, key_slot};
use shoal_testkit::resp::RespConnection;
use shoal_testkit::{ClusterOptions, TestCluster, Value};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const TEST_LIMIT: Duration = Duration::from_secs(90);
const RESP_TIMEOUT: Duration = Duration::from_secs(5);

async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

fn owner(map: &ClusterMap, key: &str) -> String {
    map.primary_of_slot(key_slot(key.as_bytes()))
        .expect("every slot has an owner")
        .resp_addr()
}

async fn call(conn: &mut RespConnection, args: &[&str]) -> Value {
    conn.call(args).await.expect("the node answers")
}

fn error(value: Value) -> String {
    match value {
        Value::Error(line) => String::from_utf8_lossy(&line).into_owned(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_routes_scripts_by_their_declared_keys() {
    run_test("a_cluster_routes_scripts_by_their_declared_keys", async {
        let options = ClusterOptions {
            http: false,
            ..ClusterOptions::default()
        };
        let cluster = TestCluster::start(SHOAL, 2, 0, options)
            .await
            .expect("the cluster starts");
        let map = cluster.status().await.unwrap().map;
        let entry = cluster.node(0).resp_addr();
        let key_where = |mine: bool, prefix: &str| {
            (0..1_000_000)
                .map(|i| format!("{prefix}{i}"))
                .find(|k| (owner(&map, k) == entry) == mine)
                .unwrap()
        };
        let (local, remote) = (key_where(true, "l"), key_where(false, "r"));
        let other_local = (0..1_000_000)
            .map(|i| format!("o{i}"))
            .find(|k| owner(&map, k) == entry && key_slot(k.as_bytes()) != key_slot(local.as_bytes()))
            .unwrap();
        let mut conn = RespConnection::connect(&entry, RESP_TIMEOUT).await.unwrap();
        let set = "return redis.call('set', KEYS[1], ARGV[1])";

        // Declared keys here: it runs.
        assert_eq!(
            call(&mut conn, &["EVAL", set, "1", &local, "v"]).await,
            Value::Simple(b"OK".to_vec())
        );
        // Declared keys of another node: MOVED to it.
        let moved = error(call(&mut conn, &["EVAL", set, "1", &remote, "v"]).await);
        assert_eq!(
            moved,
            format!("MOVED {} {}", key_slot(remote.as_bytes()), owner(&map, &remote))
        );
        let sha = match call(&mut conn, &["SCRIPT", "LOAD", set]).await {
            Value::Bulk(sha) => String::from_utf8(sha).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(error(call(&mut conn, &["EVALSHA", &sha, "1", &remote, "v"]).await).starts_with("MOVED"));
        // Declared keys in two slots: CROSSSLOT.
        let cross = error(call(&mut conn, &["EVAL", "return 1", "2", &local, &remote]).await);
        assert_eq!(cross, "CROSSSLOT Keys in request don't hash to the same slot");
        // A key it did not declare, on another node: refused inside the script.
        let get = "return redis.call('get', ARGV[1])";
        let refused = error(call(&mut conn, &["EVAL", get, "1", &local, &remote]).await);
        assert!(
            refused.starts_with(
                "ERR Script attempted to access a non local key in a cluster node script: "
            ),
            "{refused}"
        );
        assert_eq!(
            call(&mut conn, &["EVAL", "return redis.pcall('get', ARGV[1])['err']", "0", &remote]).await,
            Value::Bulk(b"ERR Script attempted to access a non local key in a cluster node".to_vec())
        );
        // Keys of this node in another slot than the declared one: refused too.
        let two = "redis.call('get', KEYS[1]) return redis.call('get', ARGV[1])";
        let refused = error(call(&mut conn, &["EVAL", two, "1", &local, &other_local]).await);
        assert!(
            refused.starts_with(
                "ERR Script attempted to access keys that do not hash to the same slot script: "
            ),
            "{refused}"
        );
        // Unless the script says it may.
        let allowed = "#!lua flags=allow-cross-slot-keys\nredis.call('get', KEYS[1]) return redis.call('get', ARGV[1])";
        assert_eq!(call(&mut conn, &["EVAL", allowed, "1", &local, &other_local]).await, Value::Null);
        assert!(
            error(call(&mut conn, &["EVAL", "#!lua flags=no-cluster\nreturn 1", "0"]).await)
                .contains("'no-cluster' flag is set")
        );
        // The smart client's Script: EVALSHA by the first key, EVAL where a node lacks it.
        let config = shoal_client::ClientConfig::new(cluster.resp_addrs())
            .with_cluster_secret(cluster.secret());
        let client = shoal_client::Client::connect(config).await.unwrap();
        let script = shoal_client::Script::new("return redis.call('incr', KEYS[1])");
        let (mine, theirs) = (format!("{{{local}}}n"), format!("{{{remote}}}n"));
        for key in [&mine, &theirs, &mine] {
            let reply = script.invoke(&client, &[key.as_str()], &[] as &[&str]).await.unwrap();
            assert!(matches!(reply, Value::Int(_)), "{reply:?}");
        }
        assert_eq!(
            script.invoke(&client, &[mine.as_str()], &[] as &[&str]).await.unwrap(),
            Value::Int(3)
        );
        // The script cache is each node's own.
        let elsewhere = owner(&map, &remote);
        let mut other = RespConnection::connect(&elsewhere, RESP_TIMEOUT).await.unwrap();
        assert_eq!(
            call(&mut other, &["SCRIPT", "EXISTS", &sha]).await,
            Value::Array(vec![Value::Int(0)])
        );
    })
    .await;
}

/// Keys a script sets together (one hash tag: one slot).
fn keys() -> Vec<String> {
    (0..8).map(|j| format!("{{script}}k{j}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_never_shows_half_of_a_script() {
    run_test("a_replica_never_shows_half_of_a_script", async {
        let (cluster, shard) = TestCluster::start_shard(SHOAL, 1, ClusterOptions::default()).await;
        let mut primary = cluster.node(shard.primary).connect().await.unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let script = "for _, k in ipairs(KEYS) do redis.call('set', k, ARGV[1]) end return #KEYS";
        let writer = {
            let done = done.clone();
            tokio::spawn(async move {
                for n in 1..=400 {
                    let n = n.to_string();
                    let mut args = vec!["EVAL", script, "8"];
                    let keys = keys();
                    args.extend(keys.iter().map(String::as_str));
                    args.push(&n);
                    assert_eq!(primary.call(&args).await.unwrap(), Value::Int(8));
                }
                done.store(true, Ordering::Relaxed);
            })
        };
        let mut replica = cluster.node(shard.replicas[0]).connect().await.unwrap();
        replica.call(&["READONLY"]).await.unwrap();
        let mget = || {
            let mut args = vec!["MGET".to_string()];
            args.extend(keys());
            args
        };
        let mut reads_with_data = 0;
        while !done.load(Ordering::Relaxed) {
            let Value::Array(seen) = replica.call(&mget()).await.unwrap() else {
                panic!("MGET answers an array");
            };
            assert!(
                seen.windows(2).all(|w| w[0] == w[1]),
                "a replica showed half of a script: {seen:?}"
            );
            reads_with_data += usize::from(seen[0] != Value::Null);
        }
        writer.await.unwrap();
        assert!(
            reads_with_data > 10,
            "only {reads_with_data} reads saw data"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let Value::Array(seen) = replica.call(&mget()).await.unwrap() else {
                panic!("MGET answers an array");
            };
            if seen[0] == Value::Bulk(b"400".to_vec()) {
                break;
            }
            assert!(Instant::now() < deadline, "the replica never caught up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// `FUNCTION LIST` of a node, as a value to compare.
async fn function_list(conn: &mut RespConnection) -> Value {
    call(conn, &["FUNCTION", "LIST", "WITHCODE"]).await
}

/// Waits until the replica's functions are the primary's.
async fn replica_has_primary_functions(primary: &mut RespConnection, replica: &mut RespConnection) {
    let want = function_list(primary).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = function_list(replica).await;
        if seen == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica's functions {seen:?} never became the primary's {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_gets_its_primary_s_functions_on_the_stream_and_on_a_full_resync() {
    run_test("a_replica_gets_its_primary_s_functions", async {
        let (cluster, shard) = TestCluster::start_shard(SHOAL, 1, ClusterOptions::default()).await;
        let replica_node = cluster.node(shard.replicas[0]);
        let mut primary = cluster.node(shard.primary).connect().await.unwrap();
        let mut replica = replica_node.connect().await.unwrap();
        let library = "#!lua name=replicated\n\
            redis.register_function('rset', function(keys, args) return redis.call('set', keys[1], args[1]) end)\n\
            redis.register_function{function_name='rget', callback=function(keys) return redis.call('get', keys[1]) end, flags={'no-writes'}}";
        assert_eq!(
            call(&mut primary, &["FUNCTION", "LOAD", library]).await,
            Value::Bulk(b"replicated".to_vec())
        );
        // On the stream: the library, then a function's writes.
        replica_has_primary_functions(&mut primary, &mut replica).await;
        assert_eq!(
            call(&mut primary, &["FCALL", "rset", "1", "{f}k", "v1"]).await,
            Value::Simple(b"OK".to_vec())
        );
        call(&mut replica, &["READONLY"]).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while call(&mut replica, &["FCALL_RO", "rget", "1", "{f}k"]).await != Value::Bulk(b"v1".to_vec()) {
            assert!(Instant::now() < deadline, "the replica never ran rget on the written key");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A function that may write goes to the primary (as Redis Cluster's replicas send
        // writes), and a replica's functions are its primary's only.
        assert!(
            error(call(&mut replica, &["FCALL", "rset", "1", "{f}k", "v2"]).await)
                .starts_with("MOVED "),
        );
        let refused = error(call(&mut replica, &["FUNCTION", "FLUSH"]).await);
        assert!(refused.starts_with("READONLY"), "{refused}");
        // REPLACE and DELETE follow.
        let second = "#!lua name=second\n\
            redis.register_function{function_name='two', callback=function() return 2 end, flags={'no-writes'}}";
        call(&mut primary, &["FUNCTION", "LOAD", second]).await;
        call(&mut primary, &["FUNCTION", "DELETE", "replicated"]).await;
        replica_has_primary_functions(&mut primary, &mut replica).await;
        assert_eq!(
            error(call(&mut replica, &["FCALL_RO", "rget", "1", "{f}k"]).await),
            "ERR Function not found"
        );
        // A full resync (the replica restarts empty) brings the library set too.
        replica_node.kill().expect("the replica stops");
        replica_node.restart().expect("the replica restarts");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut replica = loop {
            if let Ok(conn) = replica_node.connect().await {
                break conn;
            }
            assert!(Instant::now() < deadline, "the replica never came back");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        replica_has_primary_functions(&mut primary, &mut replica).await;
        assert_eq!(
            call(&mut replica, &["FCALL_RO", "two", "0"]).await,
            Value::Int(2)
        );
    })
    .await;
}
