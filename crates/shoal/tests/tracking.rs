//! `CLIENT TRACKING` on a replica of a shard of real `shoal server` processes (started by
//! shoal-testkit): a change the replica applies from its primary's replication stream
//! invalidates the keys its own clients read, as any other change does.

use std::time::Duration;

use shoal_testkit::{ClusterOptions, TestCluster, Value};

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
