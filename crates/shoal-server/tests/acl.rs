//! ACL users on a node, for what the differential suite (`compat/acl.txt`) cannot show with one
//! connection: deleting a user closes its connections, `CLIENT LIST` shows each client's user,
//! `ACL LOG` entries and their grouping, the `INFO` counters of denials, and failed
//! authentications slowed down on their connection and over all the connections of an address.

mod common;

use std::time::{Duration, Instant};

use common::{Closed, Node, Raw, gate};
use shoal_proto::reply::Value;

fn bulk(s: &str) -> Value {
    Value::Bulk(s.as_bytes().to_vec())
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn text(v: &Value) -> String {
    match v {
        Value::Bulk(b) | Value::Simple(b) | Value::Error(b) => String::from_utf8_lossy(b).into(),
        Value::Verbatim(_, b) => String::from_utf8_lossy(b).into(),
        other => panic!("not text: {other:?}"),
    }
}

/// The fields of one RESP2 `ACL LOG` entry, in order.
fn fields(entry: &Value) -> Vec<(String, Value)> {
    let Value::Array(items) = entry else {
        panic!("an entry: {entry:?}")
    };
    items
        .chunks(2)
        .map(|kv| (text(&kv[0]), kv[1].clone()))
        .collect()
}

#[test]
fn deleting_a_user_closes_its_connections_and_client_list_shows_users() {
    let _gate = gate();
    let node = Node::start();
    let mut admin = node.raw();
    assert_eq!(admin.cmd_str("ACL SETUSER temp on >pw +@all ~*"), ok());
    let mut as_temp = node.raw();
    assert_eq!(as_temp.cmd_str("AUTH temp pw"), ok());
    let mut other = node.raw();
    assert_eq!(other.cmd_str("AUTH temp pw"), ok());
    let list = text(&admin.cmd_str("CLIENT LIST"));
    assert_eq!(list.matches("user=temp").count(), 2, "{list}");
    assert_eq!(list.matches("user=default").count(), 1, "{list}");
    // A SETUSER change applies to the connection's next command.
    assert_eq!(admin.cmd_str("ACL SETUSER temp -get"), ok());
    assert_eq!(
        text(&as_temp.cmd_str("GET k")),
        "NOPERM this user has no permissions to run the 'get' command"
    );
    // A user deleting itself gets its answer, then its connection closes, as in Redis.
    assert_eq!(as_temp.cmd_str("ACL DELUSER temp"), Value::Int(1));
    as_temp.assert_closed(Duration::from_secs(5), "the deleted user's own connection");
    other.assert_closed(
        Duration::from_secs(5),
        "another connection of the deleted user",
    );
    assert_eq!(admin.cmd_str("PING"), Value::Simple(b"PONG".to_vec()));
    let list = text(&admin.cmd_str("CLIENT LIST"));
    assert!(!list.contains("user=temp"), "{list}");
    // CLIENT KILL USER knows the users.
    assert_eq!(admin.cmd_str("ACL SETUSER k on nopass +@all ~*"), ok());
    let mut as_k = node.raw();
    assert_eq!(as_k.cmd_str("AUTH k x"), ok());
    assert_eq!(admin.cmd_str("CLIENT KILL USER k"), Value::Int(1));
    as_k.assert_closed(Duration::from_secs(5), "CLIENT KILL USER");
    assert_eq!(
        text(&admin.cmd_str("CLIENT KILL USER nobody")),
        "ERR No such user 'nobody'"
    );
}

/// Narrowing a user's channel rules closes its connections that hold a subscription the new
/// rules refuse (as Redis's `ACLKillPubsubClientsIfNeeded`), in RESP2 and RESP3 alike, and
/// spares those whose subscriptions are still allowed; scripts are held to the caller's
/// channel rules too.
#[test]
fn narrowing_channel_rules_closes_subscribers_they_no_longer_allow() {
    let _gate = gate();
    let node = Node::start();
    let mut admin = node.raw();
    assert_eq!(
        admin.cmd_str("ACL SETUSER sub on nopass ~* +@all resetchannels &news.* &chat"),
        ok()
    );
    let subscribe = |line: &str, resp3: bool| {
        let mut conn = node.raw();
        assert_eq!(conn.cmd_str("AUTH sub x"), ok());
        if resp3 {
            conn.cmd_str("HELLO 3");
        }
        match conn.cmd_str(line) {
            Value::Array(confirmation) | Value::Push(confirmation) => {
                assert_eq!(confirmation[2], Value::Int(1), "{line}")
            }
            other => panic!("{line}: {other:?}"),
        }
        conn
    };
    let mut on_news = subscribe("SUBSCRIBE news.1", false);
    let mut on_pattern = subscribe("PSUBSCRIBE news.*", true);
    let mut on_chat = subscribe("SUBSCRIBE chat", false);
    let mut not_subscribed = node.raw();
    assert_eq!(not_subscribed.cmd_str("AUTH sub x"), ok());
    // A pattern is allowed only as one of the user's patterns, literally.
    let mut narrow = node.raw();
    assert_eq!(narrow.cmd_str("AUTH sub x"), ok());
    assert_eq!(
        text(&narrow.cmd_str("PSUBSCRIBE news.1*")),
        "NOPERM this user has no permissions to access one of the channels used as arguments"
    );
    // Widening closes nobody.
    assert_eq!(admin.cmd_str("ACL SETUSER sub &alerts"), ok());
    on_news.assert_open_and_quiet(Duration::from_millis(200), "a widened user's subscriber");

    assert_eq!(admin.cmd_str("ACL SETUSER sub resetchannels &chat"), ok());
    on_news.assert_closed(Duration::from_secs(5), "a channel no longer allowed");
    on_pattern.assert_closed(
        Duration::from_secs(5),
        "a pattern no longer allowed (RESP3)",
    );
    on_chat.assert_open_and_quiet(Duration::from_millis(200), "a channel still allowed");
    assert_eq!(
        not_subscribed.cmd_str("PING"),
        Value::Simple(b"PONG".to_vec())
    );
    assert_eq!(admin.cmd_str("PUBLISH chat hi"), Value::Int(1));
    let Value::Array(message) = on_chat.reply() else {
        panic!("a message")
    };
    assert_eq!(message[2], bulk("hi"));
    assert_eq!(
        text(&not_subscribed.cmd(&[
            b"EVAL",
            b"return redis.call('publish', 'news.1', 'x')",
            b"0"
        ])),
        "ERR The user executing the script can't publish to the channel mentioned in the \
         command script: ed0ac5ec91e6e672da941192013b7b5716e3d150, on @user_script:1."
    );
    assert_eq!(node.info_u64("acl_access_denied_channel"), 2);
}

#[test]
fn denials_are_logged_grouped_and_counted() {
    let _gate = gate();
    let node = Node::start();
    let mut admin = node.raw();
    assert_eq!(
        admin.cmd_str("ACL SETUSER ann on >pw ~k* -@all +get +set"),
        ok()
    );
    let mut ann = node.raw();
    assert_eq!(ann.cmd_str("AUTH ann pw"), ok());
    for _ in 0..3 {
        ann.cmd_str("DEL k");
    }
    ann.cmd_str("GET other");
    assert_eq!(
        text(&ann.cmd_str("AUTH ann wrong")),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    let Value::Array(entries) = admin.cmd_str("ACL LOG") else {
        panic!("ACL LOG is an array")
    };
    assert_eq!(entries.len(), 3, "{entries:?}");
    let names: Vec<String> = fields(&entries[0]).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "count",
            "reason",
            "context",
            "object",
            "username",
            "age-seconds",
            "client-info"
        ]
    );
    let expect = |entry: &Value, count: i64, reason: &str, object: &str, cmd: &str| {
        let f = fields(entry);
        assert_eq!(f[0].1, Value::Int(count), "{f:?}");
        assert_eq!(f[1].1, bulk(reason), "{f:?}");
        assert_eq!(f[2].1, bulk("toplevel"), "{f:?}");
        assert_eq!(f[3].1, bulk(object), "{f:?}");
        assert_eq!(f[4].1, bulk("ann"), "{f:?}");
        let age: f64 = text(&f[5].1).parse().expect("a number of seconds");
        assert!((0.0..5.0).contains(&age), "{f:?}");
        let info = text(&f[6].1);
        assert!(info.contains(&format!(" cmd={cmd} ")), "{info}");
        assert!(info.starts_with("id="), "{info}");
    };
    // Newest first: the failed AUTH, the key, then the three DELs grouped in one entry.
    expect(&entries[0], 1, "auth", "AUTH", "auth");
    expect(&entries[1], 1, "key", "other", "get");
    expect(&entries[2], 3, "command", "del", "del");
    assert!(text(&fields(&entries[1])[6].1).contains(" user=ann "));
    let info = node.info();
    assert_eq!(info["acl_access_denied_cmd"], "3");
    assert_eq!(info["acl_access_denied_key"], "1");
    assert_eq!(info["acl_access_denied_auth"], "1");
    assert_eq!(info["acl_access_denied_channel"], "0");
    let Value::Array(newest) = admin.cmd_str("ACL LOG 1") else {
        panic!("ACL LOG 1 is an array")
    };
    assert_eq!(newest.len(), 1);
    assert_eq!(fields(&newest[0])[1].1, bulk("auth"));
    assert_eq!(admin.cmd_str("ACL LOG RESET"), ok());
    assert_eq!(admin.cmd_str("ACL LOG"), Value::Array(vec![]));
}

#[test]
fn failed_authentications_are_slowed_down_on_their_connection() {
    let _gate = gate();
    let node = Node::start_with(|c| c.requirepass = "right".into());
    let mut raw = node.raw();
    let timed = |raw: &mut Raw| {
        let started = Instant::now();
        let reply = raw.cmd_str("AUTH wrong");
        assert_eq!(
            text(&reply),
            "WRONGPASS invalid username-password pair or user is disabled."
        );
        started.elapsed()
    };
    // The first failures cost nothing (a mistyped password)...
    for _ in 0..3 {
        assert!(timed(&mut raw) < Duration::from_millis(10));
    }
    // ...then each further one waits longer: 10 ms, 20 ms, 40 ms.
    for expected in [10, 20, 40] {
        let took = timed(&mut raw);
        assert!(
            took >= Duration::from_millis(expected),
            "waited {took:?}, expected at least {expected} ms"
        );
    }
    // The right password still works at once, and resets the count.
    let started = Instant::now();
    assert_eq!(raw.cmd_str("AUTH right"), ok());
    assert!(started.elapsed() < Duration::from_millis(40));
    assert!(timed(&mut raw) < Duration::from_millis(10));
    // Another connection is not slowed down by this one's failures.
    let mut fresh = node.raw();
    assert!(timed(&mut fresh) < Duration::from_millis(10));
    assert_eq!(raw.cmd_str("AUTH right"), ok());
    let info = common::parse_info(text(&raw.cmd_str("INFO stats")).as_bytes());
    assert_eq!(info["acl_access_denied_auth"], "8");
    let (closed, _) = raw.closed_within(Duration::from_millis(1));
    assert_eq!(closed, Closed::No);
}

#[test]
fn failed_authentications_from_one_address_are_slowed_down_over_all_its_connections() {
    let _gate = gate();
    let node = Node::start_with(|c| c.requirepass = "right".into());
    // Eight connections from one address, three wrong passwords each: no connection reaches
    // its own slowing down, but the address does after its first ten.
    let mut conns: Vec<Raw> = (0..8).map(|_| node.raw()).collect();
    let started = Instant::now();
    for _ in 0..3 {
        for raw in &mut conns {
            assert_eq!(
                text(&raw.cmd_str("AUTH wrong")),
                "WRONGPASS invalid username-password pair or user is disabled."
            );
        }
    }
    // 24 failures: 10 at once, then one every 100 ms.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1300),
        "24 failures took {took:?}"
    );
    // The right password is answered at once all the same.
    let mut fresh = node.raw();
    let started = Instant::now();
    assert_eq!(fresh.cmd_str("AUTH right"), ok());
    assert!(started.elapsed() < Duration::from_millis(100));
}
