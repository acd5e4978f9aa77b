//! Sharded counters through the proxy (`COUNTER.INCRBY`, `COUNTER.GET`, `COUNTER.DEL`): plain
//! Redis connections increment one counter at once, its parts live on several shards, the
//! total is the sum of every increment; errors read as on a node; a node of the (redirecting)
//! cluster refuses the commands, which only the proxy can route.

use std::collections::HashSet;

use shoal_client::Value;
use shoal_cluster::key_slot;

use crate::common::*;

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";

/// Sends `args` on `con` (the `redis` crate) and returns the integer reply.
async fn counter(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> i64 {
    let mut cmd = redis::cmd(args[0]);
    for arg in &args[1..] {
        cmd.arg(*arg);
    }
    cmd.query_async(con).await.expect("an integer reply")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_spread_over_shards_and_sum_exactly() {
    let harness = shared();
    const KEY: &str = "pxc:likes";
    const PARTS: usize = 16;
    const TASKS: i64 = 4;
    const EACH: i64 = 200;
    // Task t adds t+1 each time, the last one subtracts 3 instead.
    let by = |task: i64| if task == TASKS - 1 { -3 } else { task + 1 };
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let addr = harness.addr();
        tasks.push(tokio::spawn(async move {
            let mut con = connect(addr, task % 2 == 1).await;
            let parts = PARTS.to_string();
            let increment = by(task).to_string();
            for _ in 0..EACH {
                // The reply is the changed part's new value, an integer.
                counter(&mut con, &["COUNTER.INCRBY", KEY, &parts, &increment]).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("every increment succeeds");
    }
    let total: i64 = (0..TASKS).map(|t| by(t) * EACH).sum();
    let mut con = connect(harness.addr(), false).await;
    assert_eq!(
        counter(&mut con, &["COUNTER.GET", KEY, &PARTS.to_string()]).await,
        total
    );

    // The parts are plain keys on their slots' primaries, over more than one shard, and
    // their values, read on those nodes, add up to the total.
    let mut owners = HashSet::new();
    let mut sum = 0;
    for i in 1..=PARTS {
        let part = format!("{KEY}#{i}");
        let owner = harness.owner(key_slot(part.as_bytes()));
        let value: Option<i64> = redis::cmd("GET")
            .arg(&part)
            .query(&mut direct(&owner))
            .unwrap();
        let value = value.unwrap_or_else(|| panic!("{part} was never incremented"));
        sum += value;
        owners.insert(owner);
    }
    assert_eq!(sum, total);
    assert!(owners.len() > 1, "the parts are all on {owners:?}");

    assert_eq!(
        counter(&mut con, &["COUNTER.DEL", KEY, &PARTS.to_string()]).await,
        PARTS as i64
    );
    assert_eq!(
        counter(&mut con, &["COUNTER.GET", KEY, &PARTS.to_string()]).await,
        0
    );
    assert_eq!(
        counter(&mut con, &["COUNTER.DEL", KEY, &PARTS.to_string()]).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_read_as_on_a_node() {
    let harness = shared();
    let mut raw = Raw::connect(harness.addr()).await;
    let out_of_range = "ERR parts is out of range, must be between 1 and 1024";
    for (args, error) in [
        (vec!["COUNTER.INCRBY", "pxc:e", "0", "1"], out_of_range),
        (vec!["COUNTER.INCRBY", "pxc:e", "2000", "1"], out_of_range),
        (vec!["COUNTER.GET", "pxc:e", "1025"], out_of_range),
        (vec!["COUNTER.INCRBY", "pxc:e", "8", "five"], NOT_INTEGER),
        (vec!["COUNTER.DEL", "pxc:e", "many"], NOT_INTEGER),
        (
            vec!["COUNTER.GET", "pxc:e"],
            "ERR wrong number of arguments for 'counter.get' command",
        ),
    ] {
        assert_eq!(error_text(&raw.call(&args).await), error, "{args:?}");
    }
    // A part that holds no integer: INCRBY's own error from its node, a clear one for a read.
    assert_eq!(
        raw.call(&["SET", "pxc:word#1", "hello"]).await,
        simple("OK")
    );
    assert_eq!(
        error_text(&raw.call(&["COUNTER.INCRBY", "pxc:word", "1", "1"]).await),
        NOT_INTEGER
    );
    assert_eq!(raw.call(&["SET", "pxc:word#2", "2"]).await, simple("OK"));
    assert_eq!(
        error_text(&raw.call(&["COUNTER.GET", "pxc:word", "2"]).await),
        "ERR counter part #1 does not hold an integer"
    );
    assert_eq!(
        raw.call(&["COUNTER.DEL", "pxc:word", "2"]).await,
        Value::Int(2)
    );
    // Refused in a transaction, which runs on one node.
    assert_eq!(raw.call(&["MULTI"]).await, simple("OK"));
    assert_eq!(
        error_text(&raw.call(&["COUNTER.INCRBY", "pxc:t", "4", "1"]).await),
        "ERR Command not allowed inside a transaction"
    );
    assert!(error_text(&raw.call(&["EXEC"]).await).starts_with("EXECABORT"));
    assert_eq!(
        raw.call(&["COUNTER.GET", "pxc:t", "4"]).await,
        Value::Int(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_node_refuses_them_and_names_the_proxy() {
    let harness = shared();
    let node = harness.nodes[0].addr();
    let mut raw = Raw::connect(node).await;
    let refusal = error_text(&raw.call(&["COUNTER.INCRBY", "pxc:r", "8", "1"]).await);
    assert_eq!(
        refusal,
        "ERR COUNTER.INCRBY's parts key#1..key#N span hash slots, which a Redis Cluster \
         client cannot route: send it through shoal proxy, a node running with --routing \
         forward, or shoal-client's sharded_counter"
    );
    // Whichever node owns the key: it is not routed, it is refused.
    for node in &harness.nodes {
        let mut raw = Raw::connect(node.addr()).await;
        let reply = raw.call(&["COUNTER.GET", "pxc:r", "8"]).await;
        assert!(
            error_text(&reply).starts_with("ERR COUNTER.GET's parts key#1..key#N span"),
            "{reply:?}"
        );
    }
}
