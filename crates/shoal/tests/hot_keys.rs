//! Hot keys spread by themselves, end to end: real `shoal server` processes (3 shards x a
//! primary and 2 replicas) behind a `shoal proxy` started with no special flag.
//!
//! * One key read through the proxy far more than any other becomes hot: the controller's
//!   leader finds it in the heartbeats, the proxy learns it with the map (its `INFO proxy`
//!   says `hot_keys:1`) within seconds, and `cluster status` lists it as published.
//! * From then on its reads spread over the shard: the primary serves at most 40% of them and
//!   each replica some; a write through the proxy is read back through it at once.
//! * When the reads stop the key cools, and the proxy forgets it.

use std::time::{Duration, Instant};

use shoal_cluster::key_slot;
use shoal_testkit::resp::{RespConnection, text};
use shoal_testkit::{ClusterOptions, NodeProcess, TestCluster, Value};

mod common;

use common::{spawn_proxy, wait_for_proxy_map};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// How long a plain RESP exchange may take.
const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the key may take to become hot once it is read hard, or to cool once it is not.
const SPREAD_WITHIN: Duration = Duration::from_secs(15);

/// Three shards of a primary and `replicas` replicas (no HTTP), a `shoal proxy` with `flags`
/// in front of them, its RESP and HTTP addresses, and the map it holds.
async fn with_proxy(
    replicas: u8,
    flags: &[&str],
) -> (
    TestCluster,
    shoal_testkit::Process,
    String,
    String,
    shoal_cluster::ClusterMap,
) {
    let options = ClusterOptions {
        http: false,
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start(SHOAL, 3, replicas, options)
        .await
        .expect("the cluster starts");
    let (proxy_process, proxy, proxy_http) = spawn_proxy(SHOAL, &cluster, flags);
    let map = cluster
        .wait_for_primaries(Duration::from_secs(20))
        .await
        .unwrap();
    wait_for_proxy_map(&proxy_process, &proxy, map.epoch, Duration::from_secs(15)).await;
    (cluster, proxy_process, proxy, proxy_http, map)
}

/// `GET`s a node has served (its `cmdstat_get` calls).
async fn gets(node: &NodeProcess) -> u64 {
    let info = node.info("commandstats").await.unwrap();
    info.get("cmdstat_get")
        .and_then(|v| v.strip_prefix("calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The proxy's `hot_keys:` of `INFO proxy`.
async fn proxy_hot_keys(proxy: &str) -> u64 {
    proxy_info(proxy, "hot_keys").await
}

/// `n` pipelined `GET key`s on `conn`, every reply checked to be `value`.
async fn read(conn: &mut RespConnection, key: &str, value: &str, n: usize) {
    let frame = shoal_proto::request::encode(&["GET", key]);
    let frames = frame.repeat(n);
    for reply in conn.pipeline(&frames, n).await.unwrap() {
        assert_eq!(text(&reply).as_deref(), Some(value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_s_reads_spread_over_its_shard_and_stop_when_it_cools() {
    let (cluster, proxy_process, proxy, proxy_http, map) = with_proxy(2, &[]).await;
    let key = "hot:profile";
    let slot = key_slot(key.as_bytes());
    let shard = map.slots.get(slot).expect("an owned slot");
    let members = cluster
        .shard_nodes(&map)
        .unwrap()
        .into_iter()
        .find(|s| s.shard == shard)
        .unwrap();
    assert_eq!(members.replicas.len(), 2);

    let mut conn = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
    assert_eq!(
        conn.call(&["SET", key, "v1"]).await.unwrap(),
        Value::Simple("OK".into())
    );
    // Read it hard, with a little of other keys, until the proxy has it as hot.
    let started = Instant::now();
    loop {
        read(&mut conn, key, "v1", 500).await;
        let _ = conn.call(&["GET", "cold:1"]).await.unwrap();
        if proxy_hot_keys(&proxy).await == 1 {
            break;
        }
        assert!(
            started.elapsed() < SPREAD_WITHIN,
            "the proxy never learned the hot key\n{}",
            proxy_process.log_tail(20)
        );
    }
    println!("hot after {:?}", started.elapsed());
    let status = cluster.status().await.unwrap();
    assert_eq!(status.hot_keys.keys.len(), 1, "{status:?}");
    assert_eq!(status.hot_keys.keys[0].key, key.as_bytes());
    assert_eq!(status.hot_keys.keys[0].shard, shard);
    // The proxy's dashboard data shows the cluster, and the key as spread.
    let view: serde_json::Value = reqwest::get(format!("http://{proxy_http}/cluster"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["mode"], "cluster", "{view}");
    assert_eq!(view["nodes"].as_array().unwrap().len(), 9, "{view}");
    assert!(
        view["hot_keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["key"] == key && h["spread"] == true),
        "{view}"
    );

    // Its reads now spread over the primary and both replicas.
    let served = |nodes: Vec<u64>, before: &[u64]| -> Vec<u64> {
        nodes.iter().zip(before).map(|(a, b)| a - b).collect()
    };
    let member_nodes: Vec<&NodeProcess> = std::iter::once(members.primary)
        .chain(members.replicas.iter().copied())
        .map(|i| cluster.node(i))
        .collect();
    let mut before = Vec::new();
    for node in &member_nodes {
        before.push(gets(node).await);
    }
    read(&mut conn, key, "v1", 3000).await;
    let mut after = Vec::new();
    for node in &member_nodes {
        after.push(gets(node).await);
    }
    let served = served(after, &before);
    let total: u64 = served.iter().sum();
    assert!(total >= 3000, "{served:?}");
    assert!(
        served[0] * 100 <= total * 40,
        "the primary served {served:?} of the hot key's reads"
    );
    assert!(served[1] > 0 && served[2] > 0, "{served:?}");

    // A write through the proxy is read back through it (its replicas have it within the
    // replication delay; the proxy answers from wherever it reads).
    assert_eq!(
        conn.call(&["SET", key, "v2"]).await.unwrap(),
        Value::Simple("OK".into())
    );
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut stale = 0;
    loop {
        let got = conn.call(&["GET", key]).await.unwrap();
        if text(&got).as_deref() == Some("v2") {
            break;
        }
        stale += 1;
        assert!(Instant::now() < deadline, "v2 never read back");
    }
    read(&mut conn, key, "v2", 300).await;
    println!("stale reads right after the write: {stale}");

    // Unread, it cools within seconds and the proxy stops spreading it.
    let started = Instant::now();
    while proxy_hot_keys(&proxy).await != 0 {
        assert!(started.elapsed() < SPREAD_WITHIN, "the key never cooled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("cooled after {:?}", started.elapsed());
}

/// `INFO proxy`'s `field` (0 if it has none).
async fn proxy_info(proxy: &str, field: &str) -> u64 {
    let info = shoal_testkit::resp::command(proxy, &["INFO", "proxy"], RESP_TIMEOUT)
        .await
        .unwrap();
    shoal_testkit::Info::parse(&text(&info).unwrap())
        .u64(field)
        .unwrap_or(0)
}

/// `n` pipelined `INCR key`s on `conn`: their replies, which must be integers.
async fn incrs(conn: &mut RespConnection, key: &str, n: usize) -> Vec<i64> {
    let frames = shoal_proto::request::encode(&["INCR", key]).repeat(n);
    conn.pipeline(&frames, n)
        .await
        .unwrap()
        .into_iter()
        .map(|reply| match reply {
            Value::Int(v) => v,
            other => panic!("INCR answered {other:?}"),
        })
        .collect()
}

/// A proxy with `--hot-write-batch-ms 50`: once a counter is hot, concurrent `INCR`s through it
/// are sent as few `INCRBY`s, none is lost, each connection sees its counter's values rise,
/// and a `SET` acknowledged is what every reader gets after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_writes_to_a_hot_key_lose_nothing_and_are_read_after_their_ack() {
    let (cluster, proxy_process, proxy, _, map) =
        with_proxy(0, &["--hot-write-batch-ms", "50"]).await;
    let key = "counter:hot";
    let mut conn = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
    let started = Instant::now();
    let mut before = 0;
    while proxy_hot_keys(&proxy).await == 0 {
        before += incrs(&mut conn, key, 500).await.len() as i64;
        assert!(
            started.elapsed() < SPREAD_WITHIN,
            "the counter never became hot\n{}",
            proxy_process.log_tail(20)
        );
    }
    let batches_before = proxy_info(&proxy, "write_batches").await;

    // 8 connections x 5 rounds of 100 pipelined INCRs, all at once.
    let storms = (0..8).map(|_| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let mut conn = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
            let mut seen = Vec::new();
            for _ in 0..5 {
                seen.extend(incrs(&mut conn, key, 100).await);
            }
            seen
        })
    });
    let mut all = Vec::new();
    for storm in storms {
        let seen = storm.await.unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "one connection's INCRs answer rising values"
        );
        all.extend(seen);
    }
    let total = before + 8 * 500;
    let got = conn.call(&["GET", key]).await.unwrap();
    assert_eq!(
        text(&got).unwrap().parse::<i64>().unwrap(),
        total,
        "no increment lost"
    );
    // Every INCR got its own value, as if they had run one by one.
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 8 * 500);
    assert_eq!(*all.last().unwrap(), total);
    let batches = proxy_info(&proxy, "write_batches").await - batches_before;
    assert!(
        batches < 8 * 500 / 4,
        "{batches} batches for 4000 INCRs: not coalesced"
    );

    // One connection's pipeline keeps its order across kinds: INCR; SET 5; INCR; GET.
    let mut frames = shoal_proto::request::encode(&["INCR", key]);
    frames.extend(shoal_proto::request::encode(&["SET", key, "5"]));
    frames.extend(shoal_proto::request::encode(&["INCR", key]));
    frames.extend(shoal_proto::request::encode(&["GET", key]));
    let replies = conn.pipeline(&frames, 4).await.unwrap();
    assert_eq!(replies[0], Value::Int(total + 1));
    assert_eq!(replies[1], Value::Simple("OK".into()));
    assert_eq!(replies[2], Value::Int(6), "{replies:?}");
    assert_eq!(text(&replies[3]).as_deref(), Some("6"), "{replies:?}");

    // A SET's acknowledgement means every later read sees it, through the proxy or not.
    for round in 0..5 {
        let value = format!("v{round}");
        assert_eq!(
            conn.call(&["SET", key, &value]).await.unwrap(),
            Value::Simple("OK".into())
        );
        let mut other = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
        let got = other.call(&["GET", key]).await.unwrap();
        assert_eq!(text(&got).as_deref(), Some(value.as_str()));
        let owner = cluster.node(
            cluster
                .shard_nodes(&map)
                .unwrap()
                .into_iter()
                .find(|s| Some(s.shard) == map.slots.get(key_slot(key.as_bytes())))
                .unwrap()
                .primary,
        );
        let direct = owner.command(&["GET", key]).await.unwrap();
        assert_eq!(text(&direct).as_deref(), Some(value.as_str()));
    }
    println!(
        "{batches} batches for 4000 INCRs; batched writes {}",
        proxy_info(&proxy, "batched_writes").await
    );
}

/// `KEYS pattern` on `node`, sorted.
async fn keys_on(node: &NodeProcess, pattern: &str) -> Vec<String> {
    let Value::Array(keys) = node.command(&["KEYS", pattern]).await.unwrap() else {
        panic!("KEYS answered no array");
    };
    let mut keys: Vec<String> = keys.iter().filter_map(text).collect();
    keys.sort();
    keys
}

/// A proxy with `--hot-key-copies 2` on 3 shards: once a key is hot, its `GET`s are spread
/// over it and a copy on each other shard; a write, an increment, a delete and the key's
/// expiry reach every copy, and a read after a write's acknowledgement sees the write. The
/// copies live 1 s here, so a copy a write failed to reach would be seen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_s_copies_serve_its_reads_and_follow_its_writes() {
    let (cluster, proxy_process, proxy, _, map) = with_proxy(
        0,
        &["--hot-key-copies", "2", "--hot-key-copy-ttl-ms", "1000"],
    )
    .await;
    let key = "hot:copied";
    let shards = cluster.shard_nodes(&map).unwrap();
    let own = map.slots.get(key_slot(key.as_bytes())).unwrap();
    let owner = cluster.node(shards.iter().find(|s| s.shard == own).unwrap().primary);
    let others: Vec<&NodeProcess> = shards
        .iter()
        .filter(|s| s.shard != own)
        .map(|s| cluster.node(s.primary))
        .collect();
    assert_eq!(others.len(), 2);

    let mut conn = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
    assert_eq!(
        conn.call(&["SET", key, "v1"]).await.unwrap(),
        Value::Simple("OK".into())
    );
    let started = Instant::now();
    while proxy_hot_keys(&proxy).await == 0 {
        read(&mut conn, key, "v1", 500).await;
        assert!(
            started.elapsed() < SPREAD_WITHIN,
            "the key never became hot\n{}",
            proxy_process.log_tail(20)
        );
    }

    // Reads now go to the key and its two copies, one on each other shard.
    let before: Vec<u64> = futures_util::future::join_all(
        std::iter::once(owner)
            .chain(others.iter().copied())
            .map(gets),
    )
    .await;
    for _ in 0..6 {
        read(&mut conn, key, "v1", 500).await;
    }
    let after: Vec<u64> = futures_util::future::join_all(
        std::iter::once(owner)
            .chain(others.iter().copied())
            .map(gets),
    )
    .await;
    let served: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a - b).collect();
    let total: u64 = served.iter().sum();
    println!("GETs served by the owner and the two other primaries: {served:?}");
    assert!(
        served[0] * 2 < total,
        "the owner served {served:?}: the copies took too little"
    );
    let mut copies = Vec::new();
    for (node, served) in others.iter().zip(&served[1..]) {
        assert!(*served * 6 > total, "a copy's shard served {served:?}");
        let found = keys_on(node, &format!("{key}#*")).await;
        assert_eq!(found.len(), 1, "one copy on each other shard: {found:?}");
        copies.extend(found);
    }
    assert!(proxy_info(&proxy, "copy_reads").await > 0);
    assert!(proxy_info(&proxy, "copy_fills").await >= 2);

    // A write's acknowledgement: every read after it, on any connection, sees it.
    for round in 0..10 {
        let value = format!("v{round}");
        assert_eq!(
            conn.call(&["SET", key, &value]).await.unwrap(),
            Value::Simple("OK".into())
        );
        let mut other = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
        read(&mut other, key, &value, 100).await;
    }
    // A transaction and a script write it too.
    assert_eq!(
        conn.call(&["MULTI"]).await.unwrap(),
        Value::Simple("OK".into())
    );
    assert_eq!(
        conn.call(&["SET", key, "in-multi"]).await.unwrap(),
        Value::Simple("QUEUED".into())
    );
    assert!(matches!(
        conn.call(&["EXEC"]).await.unwrap(),
        Value::Array(_)
    ));
    read(&mut conn, key, "in-multi", 100).await;
    let script = "return redis.call('SET', KEYS[1], ARGV[1])";
    assert_eq!(
        conn.call(&["EVAL", script, "1", key, "in-script"])
            .await
            .unwrap(),
        Value::Simple("OK".into())
    );
    read(&mut conn, key, "in-script", 100).await;
    // Increments from several connections at once, read between them: none is lost, and the
    // last one acknowledged is what everyone reads.
    assert_eq!(
        conn.call(&["SET", key, "0"]).await.unwrap(),
        Value::Simple("OK".into())
    );
    let writers = (0..4).map(|_| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let mut conn = RespConnection::connect(&proxy, RESP_TIMEOUT).await.unwrap();
            for _ in 0..50 {
                incrs(&mut conn, key, 1).await;
                let reply = conn.call(&["GET", key]).await.unwrap();
                assert!(text(&reply).unwrap().parse::<u64>().is_ok());
            }
        })
    });
    for writer in writers {
        writer.await.unwrap();
    }
    read(&mut conn, key, "200", 200).await;
    assert!(proxy_info(&proxy, "copy_drops").await >= 200);

    // A delete reaches every copy before it is acknowledged.
    assert_eq!(conn.call(&["DEL", key]).await.unwrap(), Value::Int(1));
    for (node, copy) in others.iter().zip(&copies) {
        assert_eq!(
            node.command(&["EXISTS", copy]).await.unwrap(),
            Value::Int(0)
        );
    }
    let frames = shoal_proto::request::encode(&["GET", key]).repeat(100);
    for reply in conn.pipeline(&frames, 100).await.unwrap() {
        assert_eq!(reply, Value::Null);
    }

    // A copy never outlives its key's expiry.
    assert_eq!(
        conn.call(&["SET", key, "brief", "PX", "300"])
            .await
            .unwrap(),
        Value::Simple("OK".into())
    );
    read(&mut conn, key, "brief", 300).await;
    for (node, copy) in others.iter().zip(&copies) {
        let Value::Int(pttl) = node.command(&["PTTL", copy]).await.unwrap() else {
            panic!("PTTL answered no integer");
        };
        assert!(pttl <= 300, "a copy lives {pttl} ms, past its key");
    }
    tokio::time::sleep(Duration::from_millis(350)).await;
    let frames = shoal_proto::request::encode(&["GET", key]).repeat(100);
    for reply in conn.pipeline(&frames, 100).await.unwrap() {
        assert_eq!(reply, Value::Null, "a copy outlived its key");
    }
}
