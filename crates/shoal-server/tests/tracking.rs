//! `CLIENT TRACKING` between connections: what a tracking client is told when another client
//! changes a key it read, when a key expires or is evicted, on `FLUSHALL`, through a RESP2
//! redirect, with `NOLOOP`, `BCAST` prefixes and `OPTIN`, and when the table is full. The
//! replies and errors of the commands, and a connection's own invalidations, are diffed
//! against Redis in `tests/compat/tracking.txt`.

mod common;

use std::time::Duration;

use common::{Node, Raw, Value};

/// Long enough for an invalidation that is coming to arrive.
const QUIET: Duration = Duration::from_millis(200);

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

/// A RESP3 connection with `CLIENT TRACKING on` and `options`.
fn tracker(node: &Node, options: &str) -> Raw {
    let mut raw = node.raw();
    assert!(matches!(raw.cmd_str("HELLO 3"), Value::Map(_)));
    let line = format!("CLIENT TRACKING on {options}");
    assert_eq!(raw.cmd_str(&line), Value::Simple(b"OK".to_vec()), "{line}");
    raw
}

/// The keys of the next `invalidate` push (`None`: the null of a flush).
fn invalidation(raw: &mut Raw) -> Option<Vec<Value>> {
    match raw.reply() {
        Value::Push(items) => {
            assert_eq!(items.first(), Some(&bulk("invalidate")), "{items:?}");
            match &items[1] {
                Value::Array(keys) => Some(keys.clone()),
                Value::Null => None,
                other => panic!("invalidate carries {other:?}"),
            }
        }
        other => panic!("not a push: {other:?}"),
    }
}

fn info_u64(node: &Node, field: &str) -> u64 {
    node.info_u64(field)
}

#[test]
fn another_client_s_write_invalidates_a_read_key_once() {
    let node = Node::start();
    let mut reader = tracker(&node, "");
    let mut writer = node.raw();
    writer.cmd_str("SET k 1");
    assert_eq!(reader.cmd_str("GET k"), bulk("1"));
    assert_eq!(info_u64(&node, "tracking_total_keys"), 1);
    assert_eq!(info_u64(&node, "tracking_total_items"), 1);
    assert_eq!(info_u64(&node, "tracking_clients"), 1);
    writer.cmd_str("SET k 2");
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("k")]));
    // Once per read: the key is forgotten until read again.
    writer.cmd_str("SET k 3");
    reader.assert_open_and_quiet(QUIET, "a second change of a key not read again");
    assert_eq!(info_u64(&node, "tracking_total_keys"), 0);
    assert_eq!(reader.cmd_str("GET k"), bulk("3"));
    writer.cmd_str("DEL k");
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("k")]));
    // Tracking off: nothing more.
    reader.cmd_str("GET k");
    reader.cmd_str("CLIENT TRACKING off");
    writer.cmd_str("SET k 4");
    reader.assert_open_and_quiet(QUIET, "tracking off");
    assert_eq!(info_u64(&node, "tracking_clients"), 0);
}

#[test]
fn keys_that_expire_are_invalidated_whether_reclaimed_or_read() {
    let node = Node::start();
    let mut reader = tracker(&node, "");
    let mut writer = node.raw();
    // Nobody reads it once it expired: the active expiry cycle finds it.
    writer.cmd_str("SET unread v PX 50");
    assert_eq!(reader.cmd_str("GET unread"), bulk("v"));
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("unread")]));
    // Read by another client once its time ran out.
    writer.cmd_str("SET read v PX 20");
    assert_eq!(reader.cmd_str("GET read"), bulk("v"));
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(writer.cmd_str("GET read"), Value::Null);
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("read")]));
}

#[test]
fn evicted_keys_are_invalidated() {
    let node = Node::start();
    let mut admin = node.raw();
    admin.cmd_str("CONFIG SET maxmemory 2mb");
    let mut reader = tracker(&node, "");
    let value = vec![b'x'; 1000];
    for i in 0..100 {
        let key = format!("key:{i}");
        admin.cmd(&[b"SET", key.as_bytes(), &value]);
        reader.cmd(&[b"GET", key.as_bytes()]);
    }
    for i in 100..10_000 {
        let key = format!("key:{i}");
        admin.cmd(&[b"SET", key.as_bytes(), &value]);
    }
    let keys = invalidation(&mut reader).expect("keys");
    match &keys[..] {
        [Value::Bulk(key)] => assert!(key.starts_with(b"key:"), "{key:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flushall_sends_every_tracking_client_a_null_invalidation() {
    let node = Node::start();
    let mut reader = tracker(&node, "");
    let mut broadcast = tracker(&node, "BCAST PREFIX p");
    let mut admin = node.raw();
    admin.cmd_str("SET k 1");
    reader.cmd_str("GET k");
    admin.cmd_str("FLUSHALL");
    assert_eq!(invalidation(&mut reader), None);
    assert_eq!(invalidation(&mut broadcast), None);
    assert_eq!(info_u64(&node, "tracking_total_keys"), 0);
    assert_eq!(info_u64(&node, "tracking_total_items"), 0);
    admin.cmd_str("FLUSHDB");
    assert_eq!(invalidation(&mut reader), None);
}

/// The next Pub/Sub message a RESP2 subscriber reads: `[message, channel, payload]`.
fn message(raw: &mut Raw) -> (Value, Value) {
    match raw.reply() {
        Value::Array(items) if items.len() == 3 && items[0] == bulk("message") => {
            (items[1].clone(), items[2].clone())
        }
        other => panic!("not a message: {other:?}"),
    }
}

#[test]
fn a_resp2_client_reads_its_invalidations_on_the_redirect_connection() {
    let node = Node::start();
    let mut listener = node.raw();
    let Value::Int(listener_id) = listener.cmd_str("CLIENT ID") else {
        panic!("an id");
    };
    listener.cmd_str("SUBSCRIBE __redis__:invalidate");
    let mut reader = node.raw();
    let line = format!("CLIENT TRACKING on REDIRECT {listener_id}");
    assert_eq!(reader.cmd_str(&line), Value::Simple(b"OK".to_vec()));
    assert_eq!(reader.cmd_str("CLIENT GETREDIR"), Value::Int(listener_id));
    let mut writer = node.raw();
    writer.cmd_str("SET k 1");
    reader.cmd_str("GET k");
    writer.cmd_str("SET k 2");
    let channel = bulk("__redis__:invalidate");
    assert_eq!(
        message(&mut listener),
        (channel.clone(), Value::Array(vec![bulk("k")]))
    );
    // The reader itself (RESP2) reads only its replies.
    assert_eq!(reader.cmd_str("PING"), Value::Simple(b"PONG".to_vec()));
    writer.cmd_str("FLUSHALL");
    assert_eq!(message(&mut listener), (channel, Value::Null));

    // The redirect connection goes: the reader's tracking shows it broken.
    drop(listener);
    let redir = format!("redir={listener_id} ");
    assert!(common::text(&reader.cmd_str("CLIENT INFO")).contains(&redir));
    reader.cmd_str("GET k");
    assert!(common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            writer.cmd_str("SET k 3");
            reader.cmd_str("GET k");
            match reader.cmd_str("CLIENT TRACKINGINFO") {
                Value::Array(items) => {
                    items[1] == Value::Array(vec![bulk("on"), bulk("broken_redirect")])
                }
                other => panic!("{other:?}"),
            }
        }
    ));
}

#[test]
fn a_resp3_client_whose_redirect_is_gone_is_told() {
    let node = Node::start();
    let mut other = node.raw();
    let Value::Int(other_id) = other.cmd_str("CLIENT ID") else {
        panic!("an id");
    };
    let mut reader = tracker(&node, &format!("REDIRECT {other_id}"));
    drop(other);
    let mut writer = node.raw();
    let gone = format!("CLIENT LIST ID {other_id}");
    assert!(common::eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || { common::text(&writer.cmd_str(&gone)).is_empty() }
    ));
    reader.cmd_str("GET k");
    writer.cmd_str("SET k 1");
    assert_eq!(
        reader.reply(),
        Value::Push(vec![bulk("tracking-redir-broken"), Value::Int(other_id)])
    );
}

#[test]
fn noloop_spares_a_client_its_own_changes() {
    let node = Node::start();
    let mut reader = tracker(&node, "NOLOOP");
    let mut writer = node.raw();
    reader.cmd_str("GET k");
    assert_eq!(reader.cmd_str("SET k 1"), Value::Simple(b"OK".to_vec()));
    reader.assert_open_and_quiet(QUIET, "its own change");
    reader.cmd_str("GET k");
    writer.cmd_str("SET k 2");
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("k")]));
}

#[test]
fn bcast_sends_every_change_under_its_prefixes() {
    let node = Node::start();
    let mut watcher = tracker(&node, "BCAST PREFIX user: PREFIX obj:");
    assert_eq!(info_u64(&node, "tracking_total_prefixes"), 2);
    let mut writer = node.raw();
    writer.cmd_str("SET user:1 a");
    assert_eq!(invalidation(&mut watcher), Some(vec![bulk("user:1")]));
    writer.cmd_str("SET other a");
    writer.cmd_str("SET user:1 b");
    assert_eq!(invalidation(&mut watcher), Some(vec![bulk("user:1")]));
    writer.cmd_str("HSET obj:7 f v");
    assert_eq!(invalidation(&mut watcher), Some(vec![bulk("obj:7")]));
    // Nothing is remembered in BCAST mode.
    watcher.cmd_str("GET other");
    assert_eq!(info_u64(&node, "tracking_total_keys"), 0);
    watcher.cmd_str("CLIENT TRACKING off");
    assert_eq!(info_u64(&node, "tracking_total_prefixes"), 0);
}

#[test]
fn optin_remembers_only_reads_after_caching_yes() {
    let node = Node::start();
    let mut reader = tracker(&node, "OPTIN");
    let mut writer = node.raw();
    reader.cmd_str("GET a");
    writer.cmd_str("SET a 1");
    reader.assert_open_and_quiet(QUIET, "a read without CLIENT CACHING yes");
    reader.cmd_str("CLIENT CACHING yes");
    reader.cmd_str("GET a");
    writer.cmd_str("SET a 2");
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("a")]));
    // The flag holds for one command only.
    reader.cmd_str("GET a");
    writer.cmd_str("SET a 3");
    reader.assert_open_and_quiet(QUIET, "the read after the one CACHING yes covered");
}

#[test]
fn optout_remembers_all_but_reads_after_caching_no() {
    let node = Node::start();
    let mut reader = tracker(&node, "OPTOUT");
    let mut writer = node.raw();
    reader.cmd_str("CLIENT CACHING no");
    reader.cmd_str("GET a");
    writer.cmd_str("SET a 1");
    reader.assert_open_and_quiet(QUIET, "a read after CLIENT CACHING no");
    reader.cmd_str("GET a");
    writer.cmd_str("SET a 2");
    assert_eq!(invalidation(&mut reader), Some(vec![bulk("a")]));
}

#[test]
fn keys_past_the_table_bound_are_forgotten_with_an_invalidation() {
    let node = Node::start();
    let mut admin = node.raw();
    admin.cmd_str("CONFIG SET tracking-table-max-keys 10");
    assert_eq!(
        admin.cmd_str("CONFIG GET tracking-table-max-keys"),
        Value::Array(vec![bulk("tracking-table-max-keys"), bulk("10")])
    );
    let mut reader = tracker(&node, "");
    // Each key forgotten is invalidated right after the reply of the read that added one.
    let mut forgotten = 0;
    for i in 0..20 {
        reader.send(&common::frame(&[b"GET", format!("k{i}").as_bytes()]));
        assert_eq!(reader.reply(), Value::Null);
        while let Ok(Some(value)) = reader.try_reply(Duration::from_millis(20)) {
            match value {
                Value::Push(items) if items[0] == bulk("invalidate") => forgotten += 1,
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(forgotten, 10);
    assert_eq!(info_u64(&node, "tracking_total_keys"), 10);
    assert_eq!(info_u64(&node, "tracking_total_items"), 10);
    // Without a bound, nothing is forgotten.
    admin.cmd_str("CONFIG SET tracking-table-max-keys 0");
    for i in 20..40 {
        reader.cmd(&[b"GET", format!("k{i}").as_bytes()]);
    }
    assert_eq!(info_u64(&node, "tracking_total_keys"), 30);
}

#[test]
fn a_resp3_redirect_target_that_only_waits_reads_its_pushes() {
    // The target neither subscribes nor tracks: it gets its first message while its session
    // waits for input, and reads it without sending anything.
    let node = Node::start();
    let mut target = node.raw();
    assert!(matches!(target.cmd_str("HELLO 3"), Value::Map(_)));
    let Value::Int(target_id) = target.cmd_str("CLIENT ID") else {
        panic!("an id");
    };
    let mut reader = tracker(&node, &format!("REDIRECT {target_id}"));
    let mut writer = node.raw();
    reader.cmd_str("GET k");
    writer.cmd_str("SET k 1");
    assert_eq!(invalidation(&mut target), Some(vec![bulk("k")]));
    reader.assert_open_and_quiet(QUIET, "its invalidations go to the target");
    // Still served as before.
    assert_eq!(target.cmd_str("PING"), Value::Simple(b"PONG".to_vec()));
}

#[test]
fn metrics_count_each_invalidation_sent() {
    let node = Node::start_with(|config| {
        config.http_port = shoal_testkit::free_port().expect("a free port");
    });
    let mut reader = tracker(&node, "");
    let mut broadcast = tracker(&node, "BCAST PREFIX k");
    let mut writer = node.raw();
    reader.cmd_str("GET k");
    reader.cmd_str("GET other");
    assert_eq!(node.metric("shoal_tracking_keys"), 2);
    assert_eq!(node.metric("shoal_tracking_clients"), 2);
    writer.cmd_str("MSET k 1 other 2");
    // The reader is told of both keys, the broadcast client of `k`.
    let mut told: Vec<Value> = (0..2)
        .flat_map(|_| invalidation(&mut reader).expect("keys"))
        .collect();
    told.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(told, vec![bulk("k"), bulk("other")]);
    assert_eq!(invalidation(&mut broadcast), Some(vec![bulk("k")]));
    assert_eq!(node.metric("shoal_tracking_invalidations_total"), 3);
    // One null each.
    writer.cmd_str("FLUSHALL");
    assert_eq!(invalidation(&mut reader), None);
    assert_eq!(invalidation(&mut broadcast), None);
    assert_eq!(node.metric("shoal_tracking_invalidations_total"), 5);
    assert_eq!(node.metric("shoal_tracking_keys"), 0);
}
