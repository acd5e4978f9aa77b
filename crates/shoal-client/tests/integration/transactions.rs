//! Transactions (`Client::transaction`) and optimistic locking (`Client::watch`) on a real
//! three-node cluster, and what the client does when the connection fails under one.

use futures_util::future::join_all;
use shoal_client::{Client, Error, Value};
use shoal_cluster::key_slot;

use crate::common::*;

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn bulk(text: &str) -> Value {
    Value::Bulk(text.as_bytes().to_vec())
}

fn error_text(value: &Value) -> String {
    match value {
        Value::Error(line) => String::from_utf8_lossy(line).into_owned(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

fn ints(value: &Value) -> Vec<i64> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Int(n) => *n,
                other => panic!("expected an integer, got {other:?} in {value:?}"),
            })
            .collect(),
        other => panic!("expected EXEC's array, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_run_whole_on_their_slot_s_primary() {
    let (nodes, client) = three_shards().await;

    let reply = client
        .transaction(&[
            &["SET", "{tx}a", "1"][..],
            &["INCR", "{tx}a"],
            &["GET", "{tx}a"],
            &["PING"],
        ])
        .await
        .unwrap();
    assert_eq!(
        reply,
        Value::Array(vec![
            ok(),
            Value::Int(2),
            bulk("2"),
            Value::Simple(b"PONG".to_vec())
        ])
    );
    // It ran on the slot's primary.
    let owner = client
        .map()
        .primary_of_slot(key_slot(b"tx"))
        .unwrap()
        .resp_addr();
    let holder: Vec<String> = nodes
        .iter()
        .filter(|n| n.keys().contains(&"{tx}a".to_string()))
        .map(|n| n.addr.to_string())
        .collect();
    assert_eq!(holder, vec![owner]);

    // A command's own error is its reply in the array; the others ran.
    let reply = client
        .transaction(&[
            vec!["SET", "{tx}s", "text"],
            vec!["INCR", "{tx}s"],
            vec!["APPEND", "{tx}s", "!"],
        ])
        .await
        .unwrap();
    let Value::Array(items) = &reply else {
        panic!("{reply:?}");
    };
    assert_eq!(items[0], ok());
    assert!(error_text(&items[1]).starts_with("ERR value is not an integer"));
    assert_eq!(items[2], Value::Int(5));

    // A command refused while queuing (arity) aborts it all: nothing ran.
    let reply = client
        .transaction(&[vec!["SET", "{tx}never", "1"], vec!["GET"]])
        .await
        .unwrap();
    assert_eq!(
        error_text(&reply),
        "EXECABORT Transaction discarded because of previous errors."
    );
    assert_eq!(client.get("{tx}never").await.unwrap(), None);

    // Keys in several slots are refused before anything is sent.
    let sent = client.stats().frames_sent;
    for commands in [
        vec![vec!["SET", "a", "1"], vec!["SET", "b", "1"]],
        vec![vec!["MGET", "a", "b"]],
    ] {
        match client.transaction(&commands).await {
            Err(Error::CrossSlot) => {}
            other => panic!("{commands:?}: {other:?}"),
        }
    }
    assert!(matches!(
        client
            .transaction(&[vec!["SET", "{tx}a", "1"], vec!["EXEC"]])
            .await,
        Err(Error::Config(_))
    ));
    assert_eq!(client.stats().frames_sent, sent, "nothing was sent");
    // Transaction commands cannot go on the shared connections one by one.
    for name in ["MULTI", "EXEC", "DISCARD", "WATCH"] {
        assert!(
            matches!(
                client.command(&[name, "{tx}a"]).await,
                Err(Error::Config(_))
            ),
            "{name}"
        );
    }

    // A client whose map puts every slot on one node is redirected: the transaction is
    // refused there while queuing (-MOVED), so it runs where the slot lives.
    let wrong = map_with_buses(1, &[(nodes[0].addr, 0, ALL)]);
    let stale = Client::with_map(wrong, config()).await.unwrap();
    let mut moved = 0;
    for i in 0..20 {
        let key = format!("{{moved{i}}}k");
        let reply = stale
            .transaction(&[vec!["SET", key.as_str(), "v"], vec!["GET", key.as_str()]])
            .await
            .unwrap();
        assert_eq!(reply, Value::Array(vec![ok(), bulk("v")]), "{key}");
        assert_eq!(client.get(&key).await.unwrap().as_deref(), Some(&b"v"[..]));
        if client
            .map()
            .primary_of_slot(key_slot(key.as_bytes()))
            .unwrap()
            .resp_addr()
            != nodes[0].addr.to_string()
        {
            moved += 1;
        }
    }
    assert!(moved > 0, "some keys live on the other nodes");
    assert!(stale.stats().redirects >= moved, "{:?}", stale.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_never_come_between_a_transaction_s_commands() {
    let (_nodes, client) = three_shards().await;
    const TRANSACTIONS: usize = 200;
    const INCRS: usize = 2000;
    let transactions = (0..TRANSACTIONS).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .transaction(&[["INCR", "{shared}n"], ["INCR", "{shared}n"]])
                .await
        })
    });
    let incrs = (0..INCRS).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.command(&["INCR", "{shared}n"]).await })
    });
    let (transactions, incrs) = tokio::join!(join_all(transactions), join_all(incrs));
    for reply in incrs {
        // An INCR written inside another caller's MULTI would be answered +QUEUED.
        match reply.unwrap().unwrap() {
            Value::Int(_) => {}
            other => panic!("an INCR answered {other:?}"),
        }
    }
    for reply in transactions {
        let values = ints(&reply.unwrap().unwrap());
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(values[1], values[0] + 1, "nothing ran between them");
    }
    let total = client.get("{shared}n").await.unwrap().unwrap();
    assert_eq!(total, (2 * TRANSACTIONS + INCRS).to_string().as_bytes());
    let stats = client.stats();
    assert!(
        stats.socket_writes < stats.frames_sent,
        "transactions shared socket writes with the rest: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_key_that_changes_makes_exec_run_nothing() {
    let (_nodes, client) = three_shards().await;
    client.set("{acct}balance", "10", None).await.unwrap();

    // Unchanged: it runs.
    let watched = client.watch(&["{acct}balance"]).await.unwrap();
    assert_eq!(watched.slot(), key_slot(b"acct"));
    let owner = client
        .map()
        .primary_of_slot(key_slot(b"acct"))
        .unwrap()
        .resp_addr();
    assert_eq!(watched.node(), owner);
    assert_eq!(
        watched.get("{acct}balance").await.unwrap().as_deref(),
        Some(&b"10"[..])
    );
    let reply = watched
        .exec(&[["SET", "{acct}balance", "20"]])
        .await
        .unwrap();
    assert_eq!(reply, Value::Array(vec![ok()]));

    // Changed by another request (on the shared connection) in between: nothing runs.
    let mut watched = client.watch(&["{acct}balance"]).await.unwrap();
    watched.watch(&["{acct}other"]).await.unwrap();
    client.set("{acct}balance", "99", None).await.unwrap();
    let reply = watched
        .exec(&[["SET", "{acct}balance", "40"], ["SET", "{acct}x", "1"]])
        .await
        .unwrap();
    assert_eq!(reply, Value::Null, "a watched key changed");
    assert_eq!(
        client.get("{acct}balance").await.unwrap().as_deref(),
        Some(&b"99"[..])
    );
    assert_eq!(client.get("{acct}x").await.unwrap(), None);

    // A key watched with another changes too.
    let mut watched = client.watch(&["{acct}balance"]).await.unwrap();
    watched.watch(&["{acct}other"]).await.unwrap();
    client.set("{acct}other", "1", None).await.unwrap();
    let reply = watched.exec(&[["INCR", "{acct}balance"]]).await.unwrap();
    assert_eq!(reply, Value::Null);

    // One slot only.
    assert!(matches!(
        client.watch(&["a", "b"]).await,
        Err(Error::CrossSlot)
    ));
    let mut watched = client.watch(&["{acct}balance"]).await.unwrap();
    assert!(matches!(watched.watch(&["a"]).await, Err(Error::CrossSlot)));
    assert!(matches!(
        watched.command(&["GET", "a"]).await,
        Err(Error::CrossSlot)
    ));
    assert!(matches!(
        watched.command(&["MULTI"]).await,
        Err(Error::Config(_))
    ));
    assert_eq!(
        watched.command(&["INCR", "{acct}balance"]).await.unwrap(),
        Value::Int(100)
    );
    // Its own write changed the watched key, as in Redis.
    assert_eq!(
        watched.exec(&[["INCR", "{acct}balance"]]).await.unwrap(),
        Value::Null
    );
    let watched = client.watch(&["{acct}balance"]).await.unwrap();
    assert!(matches!(
        watched.exec(&[["SET", "a", "1"]]).await,
        Err(Error::CrossSlot)
    ));
}

#[tokio::test]
async fn a_transaction_is_not_sent_again_once_exec_may_have_reached_the_node() {
    // Queues everything, then closes the connection instead of answering EXEC.
    let fake = FakeServer::start(|call: &Call| match call.name().as_str() {
        "MULTI" => raw("+OK\r\n"),
        "EXEC" => Answer::Close,
        _ => raw("+QUEUED\r\n"),
    })
    .await;
    let client = Client::with_map(map(1, &[(fake.addr, ALL)]), config())
        .await
        .unwrap();
    match client
        .transaction(&[&["SET", "k", "1"][..], &["INCR", "k"]])
        .await
    {
        Err(err @ Error::ConnectionLost { .. }) => assert!(err.is_ambiguous(), "{err}"),
        other => panic!("expected the lost connection, got {other:?}"),
    }
    assert_eq!(fake.log(), ["MULTI", "SET", "INCR", "EXEC"], "sent once");

    // A transaction that only reads may be sent again.
    match client.transaction(&[["GET", "k"]]).await {
        Err(Error::ConnectionLost { .. }) => {}
        other => panic!("{other:?}"),
    }
    let execs = fake.log().iter().filter(|c| *c == "EXEC").count();
    assert_eq!(
        execs,
        1 + config().max_attempts as usize,
        "{:?}",
        fake.log()
    );
}
