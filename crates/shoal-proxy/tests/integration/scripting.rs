//! Scripts through the proxy: `SCRIPT LOAD` reaches every node (each keeps its own cache),
//! `EVALSHA` and `EVAL` go to the owner of their declared keys, `SCRIPT EXISTS` says whether
//! every primary has a script, `SCRIPT FLUSH` empties every node's cache; `FUNCTION LOAD`
//! and `DELETE` reach every primary and `FCALL` runs on its keys' owner.

use redis::AsyncCommands;

use crate::common::{connect, shared};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_load_everywhere_and_run_on_their_keys_owner() {
    let harness = shared();
    let mut con = connect(harness.addr(), false).await;
    let body = "return redis.call('set', KEYS[1], ARGV[1])";
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(body)
        .query_async(&mut con)
        .await
        .unwrap();
    // Keys on every shard: each EVALSHA runs where its key lives.
    for i in 0..40 {
        let key = format!("script:{i}");
        let () = redis::cmd("EVALSHA")
            .arg(&sha)
            .arg(1)
            .arg(&key)
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
        let value: i64 = con.get(&key).await.unwrap();
        assert_eq!(value, i);
    }
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0000000000000000000000000000000000000000")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, [1, 0]);
    // Keys of two slots: refused as one node refuses them.
    let crossed: redis::RedisResult<()> = redis::cmd("EVAL")
        .arg("return 1")
        .arg(2)
        .arg("script:1")
        .arg("script:2")
        .query_async(&mut con)
        .await;
    let crossed = format!("{crossed:?}");
    assert!(crossed.contains("hash to the same slot"), "{crossed}");
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut con)
        .await
        .unwrap();
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(exists, [0]);
    let killed: redis::RedisResult<()> =
        redis::cmd("SCRIPT").arg("KILL").query_async(&mut con).await;
    let killed = format!("{killed:?}");
    assert!(
        killed.contains("No scripts in execution right now"),
        "{killed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_load_on_every_primary_and_run_on_their_keys_owner() {
    let harness = shared();
    let mut con = connect(harness.addr(), false).await;
    let library = "#!lua name=proxied\n\
        redis.register_function('proxied_set', function(keys, args) return redis.call('set', keys[1], args[1]) end)";
    let name: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(library)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(name, "proxied");
    // Every primary has it: keys on every shard run where they live.
    for i in 0..40 {
        let key = format!("function:{i}");
        let () = redis::cmd("FCALL")
            .arg("proxied_set")
            .arg(1)
            .arg(&key)
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
        let value: i64 = con.get(&key).await.unwrap();
        assert_eq!(value, i);
    }
    // Loading it again fails on the primaries, as on one node.
    let again: redis::RedisResult<String> = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(library)
        .query_async(&mut con)
        .await;
    let again = format!("{again:?}");
    assert!(
        again.contains("Library 'proxied' already exists"),
        "{again}"
    );
    let () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("proxied")
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 0..10 {
        let gone: redis::RedisResult<()> = redis::cmd("FCALL")
            .arg("proxied_set")
            .arg(1)
            .arg(format!("function:{i}"))
            .arg(0)
            .query_async(&mut con)
            .await;
        let gone = format!("{gone:?}");
        assert!(gone.contains("Function not found"), "{gone}");
    }
    let killed: redis::RedisResult<()> = redis::cmd("FUNCTION")
        .arg("KILL")
        .query_async(&mut con)
        .await;
    let killed = format!("{killed:?}");
    assert!(
        killed.contains("No scripts in execution right now"),
        "{killed}"
    );
}
