//! `-MOVED`, `-ASK`, `-TRYAGAIN` and `-CLUSTERDOWN`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use shoal_client::{Client, Error, Value};
use shoal_cluster::key_slot;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_is_followed_and_remembered() {
    let real = Node::start();
    redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query::<()>(&mut real.con())
        .unwrap();
    let slot = key_slot(b"greeting");
    let target = real.addr;
    let fake = FakeServer::start(move |_| raw(&format!("-MOVED {slot} {target}\r\n"))).await;
    // The client believes the fake owns every slot.
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config())
        .await
        .unwrap();

    assert_eq!(
        client.get("greeting").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let stats = client.stats();
    assert_eq!(stats.redirects, 1);
    assert_eq!(stats.errors, 0);
    assert_eq!(fake.commands(), 1);

    // The slot's new home is remembered until a new map comes: no second redirection.
    assert_eq!(
        client.get("greeting").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(client.stats().redirects, 1);
    assert_eq!(fake.commands(), 1);

    // Other slots still go to the fake, which redirects them (for its one slot) to the node.
    let other = "another-key";
    assert_ne!(key_slot(other.as_bytes()), slot);
    assert_eq!(client.get(other).await.unwrap(), None);
    assert_eq!(client.stats().redirects, 2);

    // A newer map forgets the remembered moves.
    assert!(client.install_map(map(2, &[(fake.addr, ALL)])));
    assert_eq!(
        client.get("greeting").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(client.stats().redirects, 3);
    assert_eq!(fake.commands(), 3);
}

#[tokio::test]
async fn ask_sends_asking_first_and_is_not_remembered() {
    let b = FakeServer::start(|call| match call.name().as_str() {
        "ASKING" => raw("+OK\r\n"),
        "GET" => bulk(b"from-b"),
        _ => raw("-ERR unexpected\r\n"),
    })
    .await;
    let b_addr = b.addr;
    let a = FakeServer::start(move |call| {
        let slot = key_slot(call.arg(1));
        raw(&format!("-ASK {slot} {b_addr}\r\n"))
    })
    .await;
    let client = Client::with_map(map(1, &[(a.addr, ALL)]), config())
        .await
        .unwrap();
    for round in 1..=2 {
        assert_eq!(
            client.get("k").await.unwrap().as_deref(),
            Some(&b"from-b"[..])
        );
        assert_eq!(
            a.commands(),
            round,
            "ASK is a one-off: the owner is asked again"
        );
    }
    assert_eq!(b.log(), vec!["ASKING", "GET", "ASKING", "GET"]);
    assert_eq!(client.stats().redirects, 2);
}

#[tokio::test]
async fn redirect_loops_end_with_an_error() {
    let fake_addr = Arc::new(parking_lot::Mutex::new(String::new()));
    let me = fake_addr.clone();
    let fake = FakeServer::start(move |call| {
        let slot = key_slot(call.arg(1));
        raw(&format!("-MOVED {slot} {}\r\n", me.lock()))
    })
    .await;
    *fake_addr.lock() = fake.addr.to_string();
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config())
        .await
        .unwrap();
    match client.get("k").await {
        Err(Error::TooManyRedirects(n, to)) => {
            assert_eq!(n, 5);
            assert_eq!(to, fake.addr.to_string());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.commands(), 6);
}

#[tokio::test]
async fn tryagain_and_clusterdown_are_retried_with_backoff() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let fake = FakeServer::start(move |call| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        match (call.arg(1), n) {
            (b"flaky", 0) => raw("-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            (b"flaky", 1) => raw("-CLUSTERDOWN The cluster is down\r\n"),
            (b"flaky", _) => bulk(b"ok"),
            _ => raw("-CLUSTERDOWN The cluster is down\r\n"),
        }
    })
    .await;
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config())
        .await
        .unwrap();
    assert_eq!(
        client.get("flaky").await.unwrap().as_deref(),
        Some(&b"ok"[..])
    );
    assert_eq!(client.stats().retries, 2);

    // Always down: the typed API says so after the attempts; the raw one passes the reply on.
    let before = fake.commands();
    match client.get("down").await {
        Err(Error::ClusterDown(msg)) => assert!(msg.starts_with("CLUSTERDOWN"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.commands() - before, 5, "max_attempts tries in all");
    match client.command(&["GET", "down"]).await.unwrap() {
        Value::Error(line) => assert!(line.starts_with(b"CLUSTERDOWN")),
        other => panic!("{other:?}"),
    }
}
