//! Lost connections, timeouts and malformed replies.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use shoal_client::{Client, Error};

use crate::common::*;

/// Answers `GET k` with `k`.
fn echo() -> Handler {
    Arc::new(|call: &Call| match call.name().as_str() {
        "GET" => bulk(call.arg(1)),
        "SET" => raw("+OK\r\n"),
        _ => raw("-ERR unexpected\r\n"),
    })
}

#[tokio::test]
async fn in_flight_requests_fail_retryably_when_the_server_dies_and_later_ones_reconnect() {
    let mut fake = FakeServer::start(|_| Answer::Hold).await;
    let addr = fake.addr;
    let client = Client::with_map(map(1, &[(addr, ALL)]), config().with_max_attempts(1))
        .await
        .unwrap();
    let gets: Vec<_> = (0..10)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(format!("k{i}")).await })
        })
        .collect();
    until("the server to hold 10 requests", || fake.commands() == 10).await;
    fake.kill().await;
    for get in gets {
        match get.await.unwrap() {
            Err(err @ Error::ConnectionLost { .. }) => {
                assert!(err.is_retryable() && err.is_ambiguous(), "{err}");
            }
            other => panic!("expected a lost connection, got {other:?}"),
        }
    }
    assert_eq!(client.stats().connection_losses, 1);

    // Down: connecting fails, and says so (nothing was sent).
    match client.get("k").await {
        Err(err @ Error::Io { .. }) => assert!(err.is_retryable() && !err.is_ambiguous()),
        other => panic!("{other:?}"),
    }

    // Back on the same port: the client reconnects on its own.
    let back = FakeServer::start_on(addr, echo()).await;
    tokio::time::sleep(Duration::from_millis(10)).await; // past the remembered connect failure
    assert_eq!(client.get("k").await.unwrap().as_deref(), Some(&b"k"[..]));
    assert_eq!(back.commands(), 1);
}

#[tokio::test]
async fn reads_are_retried_across_a_restart_but_writes_are_not() {
    let mut fake = FakeServer::start(|_| Answer::Hold).await;
    let addr = fake.addr;
    let client = Client::with_map(map(1, &[(addr, ALL)]), config())
        .await
        .unwrap();

    let get = {
        let client = client.clone();
        tokio::spawn(async move { client.get("k").await })
    };
    let set = {
        let client = client.clone();
        tokio::spawn(async move { client.set("k", "v", None).await })
    };
    until("both requests to arrive", || fake.commands() == 2).await;
    fake.kill().await;
    let _back = FakeServer::start_on(addr, echo()).await;

    assert_eq!(
        get.await.unwrap().unwrap().as_deref(),
        Some(&b"k"[..]),
        "the read was retried"
    );
    match set.await.unwrap() {
        Err(Error::ConnectionLost { .. }) => {}
        other => panic!("a write in flight is not retried by default: {other:?}"),
    }
    assert!(client.stats().retries >= 1);
}

#[tokio::test]
async fn timeouts_retry_reads_and_only_opted_in_writes() {
    let fake = FakeServer::start(|_| Answer::Hold).await;
    let config = config()
        .with_request_timeout(Duration::from_millis(50))
        .with_max_attempts(3);
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config.clone())
        .await
        .unwrap();
    assert!(matches!(client.get("k").await, Err(Error::Timeout { .. })));
    assert_eq!(fake.commands(), 3, "a read is tried max_attempts times");
    assert!(matches!(client.incr("n").await, Err(Error::Timeout { .. })));
    assert_eq!(
        fake.commands(),
        4,
        "an INCR that may have run is not sent again"
    );

    let client = Client::with_map(
        map(1, &[(fake.addr, ALL)]),
        config.with_retry_writes_after_timeout(true),
    )
    .await
    .unwrap();
    assert!(matches!(client.incr("n").await, Err(Error::Timeout { .. })));
    assert_eq!(fake.commands(), 7, "opted in: writes are retried too");
}

#[tokio::test]
async fn a_write_that_timed_out_before_the_connection_opened_is_retried() {
    // The node never answers AUTH, so the connection never opens; every INCR times out
    // while queued on it, unsent: that is not the ambiguous timeout of a sent request.
    let fake = FakeServer::start(|call| match call.name().as_str() {
        "AUTH" => Answer::Hold,
        _ => raw(":1\r\n"),
    })
    .await;
    let config = config()
        .with_password("s3cret")
        .with_connect_timeout(Duration::from_secs(5))
        .with_request_timeout(Duration::from_millis(50))
        .with_max_attempts(2);
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config)
        .await
        .unwrap();
    let err = client.incr("n").await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(err.is_retryable() && !err.is_ambiguous(), "{err:?}");
    assert_eq!(
        client.stats().retries,
        1,
        "the unsent write was tried again"
    );
    assert_eq!(
        fake.commands(),
        1,
        "only AUTH reached the node: {:?}",
        fake.log()
    );
}

#[tokio::test]
async fn malformed_replies_are_protocol_errors_and_drop_the_connection() {
    let fake = FakeServer::start(move |call| match (call.conn, call.arg(1)) {
        (0, _) => raw("?this is not RESP\r\n"),
        (1, _) => raw("$3\r\nabcXY"),
        (2, _) => raw("$99999999999999999999999\r\n"),
        (3, _) => raw("*2\r\n:1\r\n:x\r\n"),
        (_, b"int") => raw(":5\r\n"),
        (_, b"two") => raw("$1\r\na\r\n$1\r\nb\r\n"),
        (_, key) => bulk(key),
    })
    .await;
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config())
        .await
        .unwrap();
    for round in 0..4 {
        match client.get("k").await {
            Err(err @ Error::Protocol { .. }) => assert!(!err.is_retryable(), "{err}"),
            other => panic!("round {round}: expected a protocol error, got {other:?}"),
        }
    }
    assert_eq!(
        fake.stats.connections.load(Ordering::SeqCst),
        4,
        "each one dropped its connection"
    );
    // Well-formed but of the wrong type for the typed API.
    assert!(matches!(
        client.get("int").await,
        Err(Error::UnexpectedReply { .. })
    ));
    // An extra reply nobody asked for: the connection is dropped, but this caller got its own.
    assert_eq!(client.get("two").await.unwrap().as_deref(), Some(&b"a"[..]));
    until("the connection to be dropped", || {
        client.stats().connection_losses == 5
    })
    .await;
    assert_eq!(
        client.get("fine").await.unwrap().as_deref(),
        Some(&b"fine"[..])
    );
    assert_eq!(fake.stats.connections.load(Ordering::SeqCst), 6);
}
