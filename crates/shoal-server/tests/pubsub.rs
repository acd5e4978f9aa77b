//! Pub/Sub between connections of one node: messages to channel, pattern and shard-channel
//! subscribers in both protocols, on both worker threads; a subscriber that does not read is
//! disconnected at `client-output-buffer-limit pubsub` instead of growing without bound. The
//! replies of one connection are diffed against Redis in `tests/compat/pubsub.txt`.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Node, Value};

/// Reads the next message a `redis` crate subscriber gets, within a few seconds.
fn next_message(pubsub: &mut redis::PubSub<'_>) -> (String, Option<String>, String) {
    pubsub
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let message = pubsub.get_message().expect("a message");
    let pattern: Option<String> = message.get_pattern().ok();
    (
        message.get_channel_name().to_string(),
        pattern,
        message.get_payload::<String>().unwrap(),
    )
}

#[test]
fn messages_reach_channel_and_pattern_subscribers_on_every_thread() {
    let node = Node::start();
    // Several subscribers, so that both worker threads have some.
    let mut connections: Vec<redis::Connection> = (0..4).map(|_| node.con()).collect();
    let mut subscribers: Vec<redis::PubSub<'_>> =
        connections.iter_mut().map(|c| c.as_pubsub()).collect();
    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        if i % 2 == 0 {
            subscriber.subscribe("news").unwrap();
        } else {
            subscriber.psubscribe("n*").unwrap();
        }
    }
    let mut publisher = node.con();
    for n in 0..20 {
        let received: usize = redis::cmd("PUBLISH")
            .arg("news")
            .arg(format!("item {n}"))
            .query(&mut publisher)
            .unwrap();
        assert_eq!(received, 4);
    }
    let ignored: usize = redis::cmd("PUBLISH")
        .arg("other")
        .arg("x")
        .query(&mut publisher)
        .unwrap();
    assert_eq!(ignored, 0);
    for (i, subscriber) in subscribers.iter_mut().enumerate() {
        for n in 0..20 {
            let (channel, pattern, payload) = next_message(subscriber);
            assert_eq!(channel, "news");
            assert_eq!(payload, format!("item {n}"), "in order");
            assert_eq!(pattern.as_deref(), (i % 2 == 1).then_some("n*"));
        }
    }
}

#[test]
fn a_resp3_connection_gets_pushes_and_can_still_run_commands() {
    let node = Node::start();
    let mut subscriber = node.raw();
    assert!(matches!(subscriber.cmd(&[b"HELLO", b"3"]), Value::Map(_)));
    subscriber.cmd(&[b"SUBSCRIBE", b"ch"]);
    subscriber.cmd(&[b"SSUBSCRIBE", b"shard"]);
    let mut publisher = node.raw();
    assert_eq!(publisher.cmd(&[b"PUBLISH", b"ch", b"hi"]), Value::Int(1));
    assert_eq!(
        publisher.cmd(&[b"SPUBLISH", b"shard", b"there"]),
        Value::Int(1)
    );
    let push = |kind: &str, channel: &str, payload: &str| {
        Value::Push(vec![
            Value::Bulk(kind.into()),
            Value::Bulk(channel.into()),
            Value::Bulk(payload.into()),
        ])
    };
    assert_eq!(subscriber.reply(), push("message", "ch", "hi"));
    assert_eq!(subscriber.reply(), push("smessage", "shard", "there"));
    // A subscribed RESP3 connection runs any command.
    assert_eq!(
        subscriber.cmd(&[b"SET", b"k", b"v"]),
        Value::Simple(b"OK".to_vec())
    );
}

#[test]
fn a_subscriber_that_does_not_read_is_disconnected_at_its_limit() {
    let node = Node::start();
    let mut admin = node.raw();
    admin.cmd(&[
        b"CONFIG",
        b"SET",
        b"client-output-buffer-limit",
        b"pubsub 256kb 0 0",
    ]);
    // A subscriber that never reads again.
    let mut slow = TcpStream::connect(node.addr()).unwrap();
    std::io::Write::write_all(&mut slow, b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nfeed\r\n").unwrap();
    let mut confirmation = [0u8; 64];
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = slow.read(&mut confirmation).unwrap();
    let payload = vec![b'x'; 16 * 1024];
    let mut publisher = node.raw();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut published = 0;
    // The socket's buffers take some megabytes first; then the mailbox passes the limit.
    loop {
        let received = publisher.cmd(&[b"PUBLISH", b"feed", &payload]);
        published += 1;
        if received == Value::Int(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never disconnected after {published}"
        );
        assert!(published < 100_000, "never disconnected");
    }
    let info = node.info();
    assert_eq!(info["client_output_buffer_limit_disconnections"], "1");
    // Its connection is closed: the subscriber reads what was sent, then the end.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match slow.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => continue,
            Err(e) => panic!("the slow subscriber was not closed: {e}"),
        }
    }
    assert_eq!(
        admin.cmd(&[b"PUBSUB", b"NUMSUB", b"feed"]),
        Value::Array(vec![Value::Bulk(b"feed".to_vec()), Value::Int(0)])
    );
}
