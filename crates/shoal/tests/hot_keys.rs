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
    let options = ClusterOptions {
        http: false,
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start(SHOAL, 3, 2, options)
        .await
        .expect("the cluster starts");
    let (proxy_process, proxy, proxy_http) = spawn_proxy(SHOAL, &cluster, &[]);
    let map = cluster
        .wait_for_primaries(Duration::from_secs(20))
        .await
        .unwrap();
    wait_for_proxy_map(&proxy_process, &proxy, map.epoch, Duration::from_secs(15)).await;
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
    let options = ClusterOptions {
        http: false,
        ..ClusterOptions::default()
    };
    let cluster = TestCluster::start(SHOAL, 3, 0, options)
        .await
        .expect("the cluster starts");
    let (proxy_process, proxy, _) = spawn_proxy(SHOAL, &cluster, &["--hot-write-batch-ms", "50"]);
    let map = cluster
        .wait_for_primaries(Duration::from_secs(20))
        .await
        .unwrap();
    wait_for_proxy_map(&proxy_process, &proxy, map.epoch, Duration::from_secs(15)).await;
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
