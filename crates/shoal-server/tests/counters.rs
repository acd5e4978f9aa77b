//! Shoal's sharded counters (`COUNTER.INCRBY key parts increment`, `COUNTER.GET key parts`,
//! `COUNTER.DEL key parts`) on one node: served for real by a standalone node, on parts
//! `key#1` .. `key#N` anyone can read; refused by a cluster node in redirect mode (a Redis
//! Cluster client cannot route them), served through its forwarder by one in forward mode; and
//! refused inside `MULTI` and scripts everywhere. No Redis has them, so they are checked here
//! (the proxy's in `shoal-proxy`'s tests).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Node, Raw, Value, text};
use shoal_server::config::RoutingMode;

const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
const PARTS_OUT_OF_RANGE: &str = "ERR parts is out of range, must be between 1 and 1024";

fn err(line: &str) -> Value {
    Value::Error(line.as_bytes().to_vec())
}

fn int(value: &Value) -> i64 {
    match value {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// The values of parts `key#1` .. `key#parts`, read with plain `GET`s.
fn parts(r: &mut Raw, key: &str, parts: usize) -> Vec<Option<i64>> {
    (1..=parts)
        .map(|i| match r.cmd_str(&format!("GET {key}#{i}")) {
            Value::Null => None,
            value => Some(text(&value).parse().expect("a part holds an integer")),
        })
        .collect()
}

#[test]
fn a_standalone_node_keeps_a_counter_in_parts_it_increments_sums_and_deletes() {
    let node = Node::start();
    let mut r = node.raw();
    // Each increment answers the new value of the part it changed, which a plain GET of
    // that part reads back.
    let mut total = 0;
    for by in [5, 7, -2] {
        let before = parts(&mut r, "x", 8);
        let reply = int(&r.cmd_str(&format!("COUNTER.INCRBY x 8 {by}")));
        let after = parts(&mut r, "x", 8);
        let changed: Vec<usize> = (0..8).filter(|&i| before[i] != after[i]).collect();
        assert_eq!(
            changed.len(),
            1,
            "one part changed: {before:?} -> {after:?}"
        );
        let part = changed[0];
        assert_eq!(after[part], Some(before[part].unwrap_or(0) + by));
        assert_eq!(reply, after[part].unwrap());
        total += by;
    }
    assert_eq!(r.cmd_str("COUNTER.GET x 8"), Value::Int(total));
    assert_eq!(
        r.cmd_str("counter.get X 8"),
        Value::Int(0),
        "keys are case-sensitive"
    );
    // Nothing but parts was written.
    let existing = parts(&mut r, "x", 8).iter().flatten().count();
    assert_eq!(r.cmd_str("DBSIZE"), Value::Int(existing as i64));
    // Fewer parts named, fewer parts summed.
    let first_two: i64 = parts(&mut r, "x", 2).iter().flatten().sum();
    assert_eq!(r.cmd_str("COUNTER.GET x 2"), Value::Int(first_two));
    assert_eq!(r.cmd_str("COUNTER.DEL x 8"), Value::Int(existing as i64));
    assert_eq!(r.cmd_str("COUNTER.GET x 8"), Value::Int(0));
    assert_eq!(r.cmd_str("DBSIZE"), Value::Int(0));
    assert_eq!(r.cmd_str("COUNTER.DEL x 8"), Value::Int(0));

    // Increments spread over every part.
    for _ in 0..200 {
        int(&r.cmd_str("COUNTER.INCRBY spread 8 1"));
    }
    let spread = parts(&mut r, "spread", 8);
    assert!(
        spread.iter().all(Option::is_some),
        "every part used: {spread:?}"
    );
    assert_eq!(spread.iter().flatten().sum::<i64>(), 200);
    assert_eq!(r.cmd_str("COUNTER.GET spread 8"), Value::Int(200));
    // Parts a plain command wrote count as well.
    r.cmd_str("SET spread#9 -50");
    assert_eq!(r.cmd_str("COUNTER.GET spread 9"), Value::Int(150));
    assert_eq!(r.cmd_str("COUNTER.GET spread 1024"), Value::Int(150));
    assert_eq!(r.cmd_str("COUNTER.DEL spread 1024"), Value::Int(9));

    // One part: the increment's reply is the counter's value.
    assert_eq!(r.cmd_str("COUNTER.INCRBY one 1 5"), Value::Int(5));
    assert_eq!(r.cmd_str("COUNTER.INCRBY one 1 -7"), Value::Int(-2));
    assert_eq!(r.cmd_str("GET one#1"), Value::Bulk(b"-2".to_vec()));
}

#[test]
fn bad_arguments_and_parts_that_hold_no_integer_get_clear_errors() {
    let node = Node::start();
    let mut r = node.raw();
    for line in [
        "COUNTER.INCRBY x 0 5",
        "COUNTER.INCRBY x 2000 5",
        "COUNTER.INCRBY x -1 5",
        "COUNTER.GET x 0",
        "COUNTER.DEL x 1025",
    ] {
        assert_eq!(r.cmd_str(line), err(PARTS_OUT_OF_RANGE), "{line}");
    }
    for line in [
        "COUNTER.INCRBY x 8 five",
        "COUNTER.INCRBY x 8 1.5",
        "COUNTER.INCRBY x 8 9223372036854775808",
        "COUNTER.INCRBY x eight 5",
        "COUNTER.GET x 8.0",
    ] {
        assert_eq!(r.cmd_str(line), err(NOT_INTEGER), "{line}");
    }
    assert_eq!(
        r.cmd_str("COUNTER.INCRBY x 8"),
        err("ERR wrong number of arguments for 'counter.incrby' command")
    );
    assert_eq!(r.cmd_str("DBSIZE"), Value::Int(0), "nothing was written");

    // A part that holds no integer: INCRBY's error for an increment that reaches it, a clear
    // one for a read; a part of another type is refused by the increment and counts as
    // missing for the read, as INCRBY and MGET treat them.
    r.cmd_str("SET word#1 hello");
    assert_eq!(r.cmd_str("COUNTER.INCRBY word 1 1"), err(NOT_INTEGER));
    r.cmd_str("SET word#2 2");
    assert_eq!(
        r.cmd_str("COUNTER.GET word 2"),
        err("ERR counter part #1 does not hold an integer")
    );
    r.cmd_str("HSET hash#1 f v");
    assert_eq!(
        r.cmd_str("COUNTER.INCRBY hash 1 1"),
        err("WRONGTYPE Operation against a key holding the wrong kind of value")
    );
    assert_eq!(r.cmd_str("COUNTER.GET hash 1"), Value::Int(0));
    // Overflow: of a part as INCRBY says it, of the sum clearly.
    r.cmd_str("SET big#1 9223372036854775807");
    assert_eq!(
        r.cmd_str("COUNTER.INCRBY big 1 1"),
        err("ERR increment or decrement would overflow")
    );
    r.cmd_str("SET big#2 1");
    assert_eq!(
        r.cmd_str("COUNTER.GET big 2"),
        err("ERR the sum of the counter's parts is out of the 64-bit integer range")
    );
    assert_eq!(r.cmd_str("COUNTER.DEL big 2"), Value::Int(2));
}

#[test]
fn counters_are_refused_inside_transactions_and_scripts() {
    let node = Node::start();
    let mut r = node.raw();
    assert_eq!(r.cmd_str("MULTI"), Value::Simple(b"OK".to_vec()));
    assert_eq!(
        r.cmd_str("COUNTER.INCRBY x 8 1"),
        err("ERR Command not allowed inside a transaction")
    );
    assert!(matches!(r.cmd_str("EXEC"), Value::Error(line) if line.starts_with(b"EXECABORT")));
    let script = "return redis.call('counter.incrby', KEYS[1], 8, 1)";
    let reply = r.cmd(&[b"EVAL", script.as_bytes(), b"1", b"x"]);
    assert!(
        text(&reply).contains("This Redis command is not allowed from script"),
        "{reply:?}"
    );
    assert_eq!(r.cmd_str("DBSIZE"), Value::Int(0));
}

#[test]
fn the_command_table_describes_them_and_acl_key_patterns_check_the_counter_s_key() {
    let node = Node::start();
    let mut r = node.raw();
    assert_eq!(
        r.cmd_str("COMMAND GETKEYS COUNTER.INCRBY views 8 1"),
        Value::Array(vec![Value::Bulk(b"views".to_vec())])
    );
    let info = r.cmd_str("COMMAND INFO counter.incrby counter.get counter.del");
    let Value::Array(entries) = &info else {
        panic!("{info:?}");
    };
    let arities: Vec<i64> = entries
        .iter()
        .map(|e| match e {
            Value::Array(fields) => int(&fields[1]),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(arities, [4, 3, 3]);
    let listed = r.cmd_str("COMMAND LIST FILTERBY PATTERN counter.*");
    let Value::Array(names) = &listed else {
        panic!("{listed:?}");
    };
    let names: HashSet<String> = names.iter().map(text).collect();
    assert_eq!(
        names,
        HashSet::from(["counter.incrby", "counter.get", "counter.del"].map(String::from))
    );

    // The key spec names the counter's key, not its parts: a user allowed `views` may count
    // in `views#1` .. `views#N`.
    r.cmd_str("ACL SETUSER counting on >pw ~views +@all");
    let mut user = node.raw();
    assert_eq!(
        user.cmd_str("AUTH counting pw"),
        Value::Simple(b"OK".to_vec())
    );
    assert_eq!(user.cmd_str("COUNTER.INCRBY views 4 3"), Value::Int(3));
    assert_eq!(user.cmd_str("COUNTER.GET views 4"), Value::Int(3));
    let denied = user.cmd_str("COUNTER.INCRBY likes 4 3");
    assert!(text(&denied).starts_with("NOPERM"), "{denied:?}");
}

#[test]
fn a_tracking_client_is_told_when_a_part_of_a_counter_it_read_changes() {
    let node = Node::start();
    let mut reader = node.raw();
    assert!(matches!(reader.cmd_str("HELLO 3"), Value::Map(_)));
    assert_eq!(
        reader.cmd_str("CLIENT TRACKING on"),
        Value::Simple(b"OK".to_vec())
    );
    assert_eq!(reader.cmd_str("COUNTER.GET t 4"), Value::Int(0));
    let mut writer = node.raw();
    writer.cmd_str("INCRBY t#3 1");
    match reader.reply() {
        Value::Push(items) => assert_eq!(
            items,
            vec![
                Value::Bulk(b"invalidate".to_vec()),
                Value::Array(vec![Value::Bulk(b"t#3".to_vec())])
            ]
        ),
        other => panic!("not an invalidation: {other:?}"),
    }
}

/// A one-node cluster whose routing is `routing`, once it serves every slot.
fn one_node_cluster(routing: RoutingMode) -> Node {
    let node = Node::start_with(|c| {
        c.cluster_enabled = true;
        c.routing = routing;
    });
    let mut r = node.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&r.cmd_str("CLUSTER INFO")).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "the one-node cluster is up");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

#[test]
fn a_redirecting_cluster_node_refuses_them_and_says_where_they_work() {
    let node = one_node_cluster(RoutingMode::Redirect);
    let mut r = node.raw();
    for (line, name) in [
        ("COUNTER.INCRBY x 8 1", "COUNTER.INCRBY"),
        ("counter.get x 8", "COUNTER.GET"),
        ("COUNTER.DEL x 0", "COUNTER.DEL"),
    ] {
        let expected = format!(
            "ERR {name}'s parts key#1..key#N span hash slots, which a Redis Cluster client \
             cannot route: send it through shoal proxy, a node running with --routing \
             forward, or shoal-client's sharded_counter"
        );
        assert_eq!(r.cmd_str(line), err(&expected), "{line}");
    }
    assert_eq!(r.cmd_str("DBSIZE"), Value::Int(0));
}

#[test]
fn a_forwarding_cluster_node_serves_them_through_its_forwarder() {
    let node = one_node_cluster(RoutingMode::Forward);
    let mut r = node.raw();
    // The forwarder starts with the node's first map: until then the cluster is "down".
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        match r.cmd_str("COUNTER.INCRBY x 8 5") {
            Value::Int(n) => break n,
            other => assert!(Instant::now() < deadline, "never served: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first, 5);
    int(&r.cmd_str("COUNTER.INCRBY x 8 7"));
    int(&r.cmd_str("COUNTER.INCRBY x 8 -2"));
    assert_eq!(r.cmd_str("COUNTER.GET x 8"), Value::Int(10));
    let existing = parts(&mut r, "x", 8).iter().flatten().count();
    assert!((1..=3).contains(&existing), "{existing}");
    assert_eq!(r.cmd_str("COUNTER.DEL x 8"), Value::Int(existing as i64));
    assert_eq!(r.cmd_str("COUNTER.GET x 8"), Value::Int(0));
    // The same errors as a standalone node's.
    assert_eq!(r.cmd_str("COUNTER.INCRBY x 0 1"), err(PARTS_OUT_OF_RANGE));
    assert_eq!(r.cmd_str("COUNTER.INCRBY x 8 x"), err(NOT_INTEGER));
    r.cmd_str("SET word#1 hello");
    assert_eq!(r.cmd_str("COUNTER.INCRBY word 1 1"), err(NOT_INTEGER));
    assert_eq!(
        r.cmd_str("COUNTER.GET word 1"),
        err("ERR counter part #1 does not hold an integer")
    );
}
