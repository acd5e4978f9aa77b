//! Keyspace notifications that depend on time and memory: `expired` when the active expiry
//! cycle reclaims a key nobody reads and when a read finds it expired, and `evicted` when a
//! write makes room under `maxmemory`. The events of commands are diffed against Redis in
//! `tests/compat/keyspace_events.txt`.

mod common;

use std::time::{Duration, Instant};

use common::{Node, Value};

/// A RESP3 connection subscribed to `pattern`.
fn subscriber(node: &Node, pattern: &[u8]) -> common::Raw {
    let mut raw = node.raw();
    assert!(matches!(raw.cmd(&[b"HELLO", b"3"]), Value::Map(_)));
    raw.cmd(&[b"PSUBSCRIBE", pattern]);
    raw
}

/// The key of the next `pmessage` the subscriber reads.
fn next_event_key(raw: &mut common::Raw) -> Vec<u8> {
    match raw.reply() {
        Value::Push(items) => match items.last() {
            Some(Value::Bulk(key)) => key.clone(),
            other => panic!("a message without a key: {other:?}"),
        },
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn expired_keys_are_announced_whether_reclaimed_or_read() {
    let node = Node::start();
    let mut admin = node.raw();
    admin.cmd(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"Ex"]);
    let mut events = subscriber(&node, b"__keyevent@0__:expired");
    // Nobody reads this one: the active expiry cycle finds it.
    admin.cmd(&[b"SET", b"unread", b"v", b"PX", b"30"]);
    let started = Instant::now();
    assert_eq!(next_event_key(&mut events), b"unread");
    assert!(started.elapsed() < Duration::from_secs(5));
    // This one is read once its time ran out.
    admin.cmd(&[b"SET", b"read", b"v", b"PX", b"10"]);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(admin.cmd(&[b"GET", b"read"]), Value::Null);
    assert_eq!(next_event_key(&mut events), b"read");
}

#[test]
fn evicted_keys_are_announced() {
    for policy in ["allkeys-lru", "allkeys-lfu", "volatile-random"] {
        let node = Node::start();
        let mut admin = node.raw();
        admin.cmd(&[b"CONFIG", b"SET", b"notify-keyspace-events", b"Ee"]);
        admin.cmd(&[b"CONFIG", b"SET", b"maxmemory-policy", policy.as_bytes()]);
        admin.cmd(&[b"CONFIG", b"SET", b"maxmemory", b"2mb"]);
        let mut events = subscriber(&node, b"__keyevent@0__:evicted");
        let value = vec![b'x'; 1000];
        for i in 0..4_000 {
            let key = format!("key:{i}");
            admin.cmd(&[b"SET", key.as_bytes(), &value, b"EX", b"1000"]);
        }
        let evicted = next_event_key(&mut events);
        assert!(evicted.starts_with(b"key:"), "{policy}: {evicted:?}");
    }
}
