//! `CLIENT TRACKING` in a cluster of real `shoal server` processes (started by
//! shoal-testkit): a change a replica applies from its primary's replication stream
//! invalidates the keys its own clients read, as any other change does; and keys whose slot
//! leaves a node (a node joins and takes slots) are invalidated for that node's clients, with
//! a null for its `BCAST` clients, and counted in its `/metrics`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use shoal_testkit::resp::RespConnection;
use shoal_testkit::{ClusterOptions, NodeProcess, TestCluster, Value};

mod common;

use common::metric;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(90);

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_write_invalidates_a_key_read_on_the_replica() {
    let name = "a_replicated_write_invalidates_a_key_read_on_the_replica";
    shoal_testkit::run_alone(name, TEST_LIMIT, async {
        let (cluster, shard) = TestCluster::start_shard(SHOAL, 1, ClusterOptions::default()).await;
        let replica = cluster.node(shard.replicas[0]);
        let mut primary = cluster.node(shard.primary).connect().await.unwrap();
        primary.call(&["SET", "k", "1"]).await.unwrap();

        // On the replica: a RESP2 listener on __redis__:invalidate, and a reader redirecting
        // its invalidations there.
        let mut listener = replica.connect().await.unwrap();
        let Value::Int(listener_id) = listener.call(&["CLIENT", "ID"]).await.unwrap() else {
            panic!("an id");
        };
        listener
            .call(&["SUBSCRIBE", "__redis__:invalidate"])
            .await
            .unwrap();
        let mut reader = replica.connect().await.unwrap();
        reader.call(&["READONLY"]).await.unwrap();
        let id = listener_id.to_string();
        let on = reader
            .call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id])
            .await
            .unwrap();
        assert_eq!(on, Value::Simple(b"OK".to_vec()));
        // The replica has the key once replication caught up.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while reader.call(&["GET", "k"]).await.unwrap() != bulk("1") {
            assert!(std::time::Instant::now() < deadline, "never replicated");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        primary.call(&["SET", "k", "2"]).await.unwrap();
        let message = listener.pipeline(b"", 1).await.unwrap().remove(0);
        assert_eq!(
            message,
            Value::Array(vec![
                bulk("message"),
                bulk("__redis__:invalidate"),
                Value::Array(vec![bulk("k")]),
            ])
        );
    })
    .await;
}

/// A RESP3 connection to `node` with `CLIENT TRACKING on` and `options`.
async fn tracker(node: &NodeProcess, options: &[&str]) -> RespConnection {
    let mut conn = node.connect().await.expect("connects");
    let hello = conn.call(&["HELLO", "3"]).await.expect("HELLO");
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");
    let mut args = vec!["CLIENT", "TRACKING", "on"];
    args.extend_from_slice(options);
    let on = conn.call(&args).await.expect("CLIENT TRACKING");
    assert_eq!(on, Value::Simple(b"OK".to_vec()), "{args:?}");
    conn
}

/// The keys of an `invalidate` push (`None`: a null).
fn invalidated(value: &Value) -> Option<Vec<String>> {
    let Value::Push(items) = value else {
        panic!("not a push: {value:?}");
    };
    assert_eq!(items.first(), Some(&bulk("invalidate")), "{items:?}");
    match &items[1] {
        Value::Null => None,
        Value::Array(keys) => Some(
            keys.iter()
                .map(|k| match k {
                    Value::Bulk(k) => String::from_utf8_lossy(k).into_owned(),
                    other => panic!("a key is {other:?}"),
                })
                .collect(),
        ),
        other => panic!("invalidate carries {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_whose_slot_leaves_the_node_are_invalidated() {
    let name = "keys_whose_slot_leaves_the_node_are_invalidated";
    shoal_testkit::run_alone(name, TEST_LIMIT, async {
        let mut cluster = TestCluster::start(SHOAL, 1, 0, ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let node = cluster.node(0);
        // Half the keys exist, half are misses a client may cache as well.
        let keys: Vec<String> = (0..64).map(|i| format!("nc:{i}")).collect();
        for key in keys.iter().step_by(2) {
            node.command(&["SET", key.as_str(), "v"]).await.unwrap();
        }
        let mut reader = tracker(node, &[]).await;
        // A prefix no key here has: the removal of the keys that left (in the background)
        // sends it nothing, and what it gets is the null alone.
        let mut broadcast = tracker(node, &["BCAST", "PREFIX", "other:"]).await;
        for key in &keys {
            reader.call(&["GET", key.as_str()]).await.unwrap();
        }
        let sent_before = metric(node, "shoal_tracking_invalidations_total").await;

        // A second node joins as a new shard's primary and takes slots from the first.
        let joined = cluster.add_node(false).await.expect("a node joins");
        let map = cluster.status().await.unwrap().map;
        let moved: BTreeSet<&String> = keys
            .iter()
            .filter(|k| {
                let slot = shoal_cluster::key_slot(k.as_bytes());
                let owner = map.primary_of_slot(slot).expect("an owner").resp_addr();
                owner == cluster.node(joined).resp_addr()
            })
            .collect();
        let is_miss = |k: &str| k["nc:".len()..].parse::<usize>().unwrap() % 2 == 1;
        assert!(
            moved.iter().any(|k| is_miss(k)),
            "no missing key moved: {moved:?}"
        );
        assert!(moved.len() < keys.len(), "every key moved");

        // The reader is told of every key that left, those it read as misses included.
        let node = cluster.node(0);
        let mut told: BTreeSet<String> = BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while told.len() < moved.len() {
            assert!(Instant::now() < deadline, "told only {told:?} of {moved:?}");
            // Each read gives up after the connection's timeout (2 s); a busy machine may take
            // longer to install the map.
            if let Ok(mut pushes) = reader.pipeline(b"", 1).await {
                told.extend(invalidated(&pushes.remove(0)).expect("keys, not a null"));
            }
        }
        let moved: BTreeSet<String> = moved.into_iter().cloned().collect();
        assert_eq!(told, moved, "only the keys that left");
        // Nothing more: a PING's reply comes after anything queued before it.
        let ping = shoal_proto::request::encode(&["PING"]);
        let pong = reader.pipeline(&ping, 1).await.unwrap().remove(0);
        assert_eq!(
            pong,
            Value::Simple(b"PONG".to_vec()),
            "no further invalidation"
        );
        // The broadcast client, whose keys are not remembered, drops everything: a null for
        // each batch of slots handed over, and nothing else.
        let mut nulls = 0;
        loop {
            let push = broadcast
                .pipeline(&ping, 1)
                .await
                .expect("a reply")
                .remove(0);
            if push == Value::Simple(b"PONG".to_vec()) {
                break;
            }
            assert_eq!(invalidated(&push), None, "only nulls");
            nulls += 1;
        }
        assert!(nulls >= 1, "the broadcast client was told");
        assert_eq!(
            metric(node, "shoal_tracking_invalidations_total").await,
            sent_before + moved.len() as u64 + nulls,
            "each key once, and the nulls"
        );
    })
    .await;
}
