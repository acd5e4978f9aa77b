//! Error replies through the proxy: the proxy's own, the nodes' relayed byte for byte, and
//! malformed input.

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_read_as_redis_writes_them() {
    let harness = shared();
    let mut proxy = Raw::connect(harness.addr()).await;
    let mut node = Raw::connect(harness.seed()).await;

    // Keys in two slots, for a command that cannot be split.
    assert_eq!(proxy.call(&["SET", "err:a", "1"]).await, simple("OK"));
    assert_eq!(
        error_text(&proxy.call(&["RENAME", "err:a", "err:b"]).await),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    // The same slot (hash tags) is fine.
    assert_eq!(proxy.call(&["SET", "{err}:a", "1"]).await, simple("OK"));
    assert_eq!(
        proxy.call(&["RENAME", "{err}:a", "{err}:b"]).await,
        simple("OK")
    );
    assert_eq!(proxy.call(&["GET", "{err}:b"]).await, bulk("1"));

    // Unknown commands: exactly what a node says.
    let unknown = ["FROBNICATE", "a", "b"];
    let from_proxy = proxy.call(&unknown).await;
    assert_eq!(from_proxy, node.call(&unknown).await);
    assert_eq!(
        error_text(&from_proxy),
        "ERR unknown command 'FROBNICATE', with args beginning with: 'a' 'b' "
    );
    // Wrong arity, for commands the proxy serves and those it forwards.
    for (args, name) in [
        (&["GET"][..], "get"),
        (&["SET", "k"][..], "set"),
        (&["ECHO"][..], "echo"),
        (&["PING", "a", "b"][..], "ping"),
        (&["CLIENT", "SETNAME"][..], "client|setname"),
        (&["CONFIG", "GET"][..], "config|get"),
    ] {
        assert_eq!(
            error_text(&proxy.call(args).await),
            format!("ERR wrong number of arguments for '{name}' command"),
            "{args:?}"
        );
    }
    // A node's own errors come back as they are.
    assert_eq!(proxy.call(&["SET", "err:n", "x"]).await, simple("OK"));
    let incr = ["INCR", "err:n"];
    assert_eq!(
        error_text(&proxy.call(&incr).await),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(
        error_text(&proxy.call(&["SET", "err:n", "x", "EX", "-5"]).await),
        "ERR invalid expire time in 'set' command"
    );
    // The proxy hides the cluster.
    for args in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "KEYSLOT", "x"][..],
        &["READONLY"][..],
        &["ASKING"][..],
    ] {
        assert_eq!(
            error_text(&proxy.call(args).await),
            "ERR This instance has cluster support disabled",
            "{args:?}"
        );
    }
    assert_eq!(
        error_text(&proxy.call(&["CLIENT", "NOPE"]).await),
        "ERR unknown subcommand 'NOPE'. Try CLIENT HELP."
    );
    assert_eq!(proxy.call(&["SELECT", "0"]).await, simple("OK"));
    assert_eq!(
        error_text(&proxy.call(&["SELECT", "1"]).await),
        "ERR DB index is out of range"
    );
    assert_eq!(
        error_text(&proxy.call(&["SELECT", "x"]).await),
        "ERR value is not an integer or out of range"
    );
    assert!(error_text(&proxy.call(&["SHUTDOWN"]).await).starts_with("ERR proxy: SHUTDOWN"));
    // After all that, the connection still works.
    assert_eq!(proxy.call(&["PING"]).await, simple("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_garbage_gets_an_error_and_the_connection_closes() {
    let harness = shared();
    for (garbage, error) in [
        (
            &b"*1\r\n$abc\r\n"[..],
            "ERR Protocol error: invalid bulk length",
        ),
        (b"*x\r\n", "ERR Protocol error: invalid multibulk length"),
        (
            b"*1\r\n+GET\r\n",
            "ERR Protocol error: expected '$', got '+'",
        ),
        (
            b"SET \"unbalanced\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
    ] {
        let mut raw = Raw::connect(harness.addr()).await;
        // A good command first: its reply comes before the error.
        let mut input = frame(&[b"PING"]);
        input.extend_from_slice(garbage);
        raw.send(&input).await;
        assert_eq!(raw.reply().await, simple("PONG"));
        assert_eq!(error_text(&raw.reply().await), error);
        assert!(raw.closed().await, "closed after {garbage:?}");
    }
    // Other clients are unaffected; inline commands work.
    let mut raw = Raw::connect(harness.addr()).await;
    raw.send(b"SET inline:k \"a b\"\r\nGET inline:k\r\n").await;
    assert_eq!(raw.reply().await, simple("OK"));
    assert_eq!(raw.reply().await, bulk("a b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_cluster_gives_readable_errors() {
    let node = start_node(|c| {
        c.cluster_enabled = true;
        c.controller = true;
    });
    let proxy = start_proxy(&node.addr().to_string(), |c| {
        c.upstream_timeout = std::time::Duration::from_millis(300);
    });
    let deadline = std::time::Instant::now() + WAIT;
    while proxy.client().map().slots_assigned() < SLOTS {
        assert!(std::time::Instant::now() < deadline, "the slots are placed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let mut raw = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(raw.call(&["SET", "gone:k", "v"]).await, simple("OK"));
    tokio::task::spawn_blocking(move || node.stop())
        .await
        .unwrap();
    let error = error_text(&raw.call(&["GET", "gone:k"]).await);
    assert!(
        error.starts_with("ERR proxy: ") || error.starts_with("CLUSTERDOWN "),
        "{error}"
    );
    let error = error_text(&raw.call(&["DBSIZE"]).await);
    assert!(error.starts_with("ERR proxy: "), "{error}");
    // What the proxy answers itself still works.
    assert_eq!(raw.call(&["PING"]).await, simple("PONG"));
    assert_eq!(raw.call(&["ECHO", "still here"]).await, bulk("still here"));
}
