//! Transactions on one node with concurrent clients, driven by the `redis` crate (its
//! `pipe().atomic()` is `MULTI` ... `EXEC`): atomicity under clients on both worker threads,
//! `WATCH` seeing other clients' changes (writes, expiry) and not their reads, and what the
//! statistics count. The replies and errors of one connection are diffed against Redis in
//! `tests/compat/transactions.txt`.

mod common;

use std::time::{Duration, Instant};

use common::Node;
use redis::Commands;

/// Pairs of counters every transaction increments together.
const PAIRS: usize = 4;

fn counters(pair: usize) -> (String, String) {
    (format!("x{pair}"), format!("y{pair}"))
}

#[test]
fn concurrent_transactions_never_interleave_and_readers_never_see_half_of_one() {
    let node = Node::start();
    let deadline = Instant::now() + Duration::from_secs(60);
    const WRITERS: usize = 4;
    const ROUNDS: usize = 300;
    let finished = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                let mut con = node.con();
                for _ in 0..ROUNDS {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    for pair in 0..PAIRS {
                        let (x, y) = counters(pair);
                        pipe.incr(x, 1).incr(y, 1);
                    }
                    let replies: Vec<i64> = pipe.query(&mut con).unwrap();
                    // Each pair's two increments ran with nothing between them.
                    for pair in replies.chunks(2) {
                        assert_eq!(pair[0], pair[1], "a transaction interleaved: {replies:?}");
                    }
                    // And the whole transaction too: every pair moved in step.
                    assert!(replies.windows(2).all(|w| w[0] == w[1]), "{replies:?}");
                    assert!(Instant::now() < deadline, "too slow");
                }
                finished.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
        s.spawn(|| {
            let mut con = node.con();
            while finished.load(std::sync::atomic::Ordering::Relaxed) < WRITERS {
                let keys: Vec<String> = (0..PAIRS)
                    .flat_map(|p| {
                        let (x, y) = counters(p);
                        [x, y]
                    })
                    .collect();
                let seen: Vec<Option<i64>> = con.mget(&keys).unwrap();
                assert!(
                    seen.windows(2).all(|w| w[0] == w[1]),
                    "a reader saw half of a transaction: {seen:?}"
                );
            }
        });
    });
    let mut con = node.con();
    let total = (WRITERS * ROUNDS) as i64;
    for pair in 0..PAIRS {
        let (x, y) = counters(pair);
        assert_eq!(con.get::<_, i64>(&x).unwrap(), total);
        assert_eq!(con.get::<_, i64>(&y).unwrap(), total);
    }
    // Each queued command counts as a call of its own, and `EXEC` as one more.
    let info = node.info();
    let calls = |name: &str| {
        info.get(&format!("cmdstat_{name}"))
            .and_then(|v| {
                v.split(',')
                    .next()?
                    .strip_prefix("calls=")?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0)
    };
    // (The `redis` crate sends `INCRBY` for `incr`.)
    assert_eq!(calls("incrby"), WRITERS * ROUNDS * 2 * PAIRS);
    assert_eq!(calls("exec"), WRITERS * ROUNDS);
}

/// Runs `WATCH key`, lets `meanwhile` act on another connection, then a transaction that
/// sets `key`; whether it ran.
fn watched_transaction_runs(
    node: &Node,
    key: &str,
    meanwhile: impl FnOnce(&mut redis::Connection),
) -> bool {
    let mut con = node.con();
    let mut other = node.con();
    let () = redis::cmd("WATCH").arg(key).query(&mut con).unwrap();
    meanwhile(&mut other);
    let result: Option<(String,)> = redis::pipe()
        .atomic()
        .set(key, "from-the-transaction")
        .query(&mut con)
        .unwrap();
    result.is_some()
}

#[test]
fn watch_sees_other_clients_changes_but_not_their_reads() {
    let node = Node::start();
    let mut con = node.con();
    let () = con.set("k", "v").unwrap();
    assert!(watched_transaction_runs(&node, "k", |other| {
        let _: Option<String> = other.get("k").unwrap();
        let _: bool = other.exists("k").unwrap();
        let () = other.set("another", "1").unwrap();
    }));
    assert!(!watched_transaction_runs(&node, "k", |other| {
        let () = other.set("k", "changed").unwrap();
    }));
    assert_eq!(con.get::<_, String>("k").unwrap(), "changed");
    assert!(!watched_transaction_runs(&node, "k", |other| {
        let _: i64 = other.del("k").unwrap();
    }));
    assert!(!watched_transaction_runs(&node, "k", |other| {
        let () = other.set("k", "back").unwrap();
    }));
    assert!(!watched_transaction_runs(&node, "k", |other| {
        let _: bool = other.expire("k", 100).unwrap();
    }));
    // Another connection's transaction is a change too.
    assert!(!watched_transaction_runs(&node, "k", |other| {
        let _: Vec<String> = redis::pipe().atomic().set("k", "tx").query(other).unwrap();
    }));
    assert!(watched_transaction_runs(&node, "k", |_| {}));
}

#[test]
fn a_watched_key_that_expires_before_exec_aborts_it() {
    let node = Node::start();
    let mut con = node.con();
    let () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(400)
        .query(&mut con)
        .unwrap();
    // Nobody reads the key again: the expiry alone must abort the transaction. (The key must
    // still live when it is watched: 400 ms leave room for a loaded machine.)
    assert!(!watched_transaction_runs(&node, "short", |_| {
        std::thread::sleep(Duration::from_millis(500));
    }));
    // A key whose time ran out before the watch (nobody read it since) is gone when
    // watched, not changed later: it does not abort.
    let () = redis::cmd("SET")
        .arg("gone")
        .arg("v")
        .arg("PX")
        .arg(20)
        .query(&mut con)
        .unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert!(watched_transaction_runs(&node, "gone", |_| {}));
}

#[test]
fn watch_sees_changes_of_a_hash_field_by_field() {
    let node = Node::start();
    let mut con = node.con();
    let hset = |con: &mut redis::Connection, field: &str, value: &str| {
        let _: i64 = redis::cmd("HSET")
            .arg("h")
            .arg(field)
            .arg(value)
            .query(con)
            .unwrap();
    };
    hset(&mut con, "a", "1");
    // Reads of the hash are not changes.
    assert!(watched_transaction_runs(&node, "h", |other| {
        let _: Option<String> = redis::cmd("HGET").arg("h").arg("a").query(other).unwrap();
        let _: Vec<String> = redis::cmd("HGETALL").arg("h").query(other).unwrap();
    }));
    // The transaction replaced the hash with a string (SET): start again, each time with
    // fields a and b, b expiring.
    let reset = |con: &mut redis::Connection| {
        let _: i64 = con.del("h").unwrap();
        hset(con, "a", "1");
        hset(con, "b", "2");
        let _: redis::Value = redis::cmd("HPEXPIRE")
            .arg(&["h", "100000", "FIELDS", "1", "b"])
            .query(con)
            .unwrap();
    };
    reset(&mut con);
    for change in [
        &["HSET", "h", "c", "3"][..],
        &["HDEL", "h", "b"],
        &["HINCRBY", "h", "a", "1"],
        &["HPEXPIRE", "h", "100000", "FIELDS", "1", "a"],
        &["HPERSIST", "h", "FIELDS", "1", "b"],
        &["HGETDEL", "h", "FIELDS", "1", "a"],
    ] {
        assert!(
            !watched_transaction_runs(&node, "h", |other| {
                let _: redis::Value = redis::cmd(change[0])
                    .arg(&change[1..])
                    .query(other)
                    .unwrap();
            }),
            "{change:?} did not abort the transaction"
        );
        reset(&mut con);
    }
    // Changing nothing is no change: HPERSIST of a field without expiry.
    assert!(watched_transaction_runs(&node, "h", |other| {
        let _: redis::Value = redis::cmd("HPERSIST")
            .arg(&["h", "FIELDS", "1", "a"])
            .query(other)
            .unwrap();
    }));
    reset(&mut con);
    // A field expiring on its own is a change too.
    let _: redis::Value = redis::cmd("HPEXPIRE")
        .arg(&["h", "50", "FIELDS", "1", "a"])
        .query(&mut con)
        .unwrap();
    assert!(!watched_transaction_runs(&node, "h", |_| {
        std::thread::sleep(Duration::from_millis(300));
    }));
}
