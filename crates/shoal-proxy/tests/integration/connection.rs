//! Connection state the proxy keeps itself: protocol, authentication, names, limits, `INFO`.

use shoal_client::Value;

use crate::common::*;

fn map_keys(value: &Value) -> Vec<String> {
    match value {
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, _)| match k {
                Value::Bulk(k) => String::from_utf8_lossy(k).into_owned(),
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("expected a map, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_3_switches_the_replies_that_follow_to_resp3() {
    let harness = shared();
    let mut raw = Raw::connect(harness.addr()).await;
    // Pipelined: the GET after HELLO 3 is already answered in RESP3.
    let mut input = frame(&[b"GET", b"hello:missing"]);
    input.extend(frame(&[b"HELLO", b"3"]));
    input.extend(frame(&[b"GET", b"hello:missing"]));
    raw.send(&input).await;
    assert_eq!(raw.read_bytes(5).await, b"$-1\r\n");
    let hello = raw.reply().await;
    assert_eq!(raw.read_bytes(3).await, b"_\r\n", "a RESP3 null");
    // The same shape as a node's HELLO.
    let mut node = Raw::connect(harness.seed()).await;
    let node_hello = node.call(&["HELLO", "3"]).await;
    assert_eq!(map_keys(&hello), map_keys(&node_hello));
    let Value::Map(pairs) = &hello else {
        unreachable!()
    };
    assert!(pairs.contains(&(bulk("proto"), Value::Int(3))));
    // The proxy hides the cluster its nodes say they are in.
    assert!(pairs.contains(&(bulk("mode"), bulk("standalone"))));
    let Value::Map(node_pairs) = &node_hello else {
        panic!("HELLO 3 answered {node_hello:?}")
    };
    assert!(node_pairs.contains(&(bulk("mode"), bulk("cluster"))));
    // Maps from the nodes stay maps; RESET goes back to RESP2.
    raw.send_command(&[b"SET", b"hello:k", b"v"]).await;
    assert_eq!(raw.reply().await, simple("OK"));
    assert_eq!(raw.call(&["RESET"]).await, simple("RESET"));
    raw.send_command(&[b"GET", b"hello:missing"]).await;
    assert_eq!(raw.read_bytes(5).await, b"$-1\r\n");
    assert!(matches!(
        raw.call(&["HELLO", "4"]).await,
        Value::Error(e) if e == b"NOPROTO unsupported protocol version"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_name_themselves_and_see_each_other() {
    let harness = shared();
    let mut a = Raw::connect(harness.addr()).await;
    let mut b = Raw::connect(harness.addr()).await;
    assert_eq!(a.call(&["CLIENT", "GETNAME"]).await, Value::Null);
    assert_eq!(a.call(&["CLIENT", "SETNAME", "alpha"]).await, simple("OK"));
    assert_eq!(a.call(&["CLIENT", "GETNAME"]).await, bulk("alpha"));
    let Value::Int(id) = a.call(&["CLIENT", "ID"]).await else {
        panic!("an id")
    };
    let Value::Bulk(list) = b.call(&["CLIENT", "LIST"]).await else {
        panic!("a list")
    };
    let list = String::from_utf8(list).unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with(&format!("id={id} ")) && l.contains(" name=alpha ")),
        "{list}"
    );
    assert_eq!(
        b.call(&["CLIENT", "KILL", "ID", &id.to_string()]).await,
        Value::Int(1)
    );
    assert!(a.closed().await, "a killed client is disconnected");
    assert!(matches!(
        b.call(&["CLIENT", "SETNAME", "two words"]).await,
        Value::Error(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_is_required_when_set() {
    let harness = shared();
    let proxy = start_proxy(&harness.seed(), |c| c.requirepass = Some("s3cret".into()));
    let mut raw = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(
        error_text(&raw.call(&["GET", "auth:k"]).await),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        error_text(&raw.call(&["AUTH", "wrong"]).await),
        "WRONGPASS invalid username-password pair or user is disabled."
    );
    assert_eq!(raw.call(&["AUTH", "s3cret"]).await, simple("OK"));
    assert_eq!(raw.call(&["SET", "auth:k", "v"]).await, simple("OK"));
    // HELLO with AUTH authenticates and switches protocol at once.
    let mut other = Raw::connect(proxy.resp_addr()).await;
    assert!(matches!(
        other
            .call(&["HELLO", "3", "AUTH", "default", "s3cret"])
            .await,
        Value::Map(_)
    ));
    assert_eq!(other.call(&["GET", "auth:k"]).await, bulk("v"));
    // Without a password configured, AUTH says so.
    let mut open = Raw::connect(harness.addr()).await;
    assert!(
        error_text(&open.call(&["AUTH", "x"]).await)
            .starts_with("ERR AUTH <password> called without")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_maxclients_are_refused() {
    let harness = shared();
    let proxy = start_proxy(&harness.seed(), |c| c.maxclients = 2);
    let mut first = Raw::connect(proxy.resp_addr()).await;
    let mut second = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(first.call(&["PING"]).await, simple("PONG"));
    assert_eq!(second.call(&["PING"]).await, simple("PONG"));
    let mut third = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(
        error_text(&third.reply().await),
        "ERR max number of clients reached"
    );
    assert!(third.closed().await);
    drop(first);
    // The slot comes back once the first client is gone.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let mut again = Raw::connect(proxy.resp_addr()).await;
        again.send_command(&[b"PING"]).await;
        match again.reply().await {
            Value::Simple(s) if s == b"PONG" => break,
            _ => assert!(std::time::Instant::now() < deadline, "no room came back"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_describes_the_proxy_and_its_cluster() {
    let harness = shared();
    let mut raw = Raw::connect(harness.addr()).await;
    assert_eq!(raw.call(&["SET", "info:k", "v"]).await, simple("OK"));
    let Value::Bulk(text) = raw.call(&["INFO"]).await else {
        panic!("INFO is a bulk string in RESP2")
    };
    let text = String::from_utf8(text).unwrap();
    for section in ["# Server", "# Clients", "# Stats", "# Proxy", "# Keyspace"] {
        assert!(
            text.contains(&format!("{section}\r\n")),
            "{section} in {text}"
        );
    }
    let field = |name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    };
    assert_eq!(field("redis_version"), "7.4.0");
    assert_eq!(field("cluster_nodes"), "3");
    assert_eq!(field("cluster_primaries"), "3");
    assert_eq!(field("cluster_slots_assigned"), "16384");
    assert!(field("cluster_epoch").parse::<u64>().unwrap() > 0);
    assert!(field("upstream_requests").parse::<u64>().unwrap() > 0);
    assert!(field("total_commands_processed").parse::<u64>().unwrap() >= 1);
    assert!(field("connected_clients").parse::<u64>().unwrap() >= 1);
    assert!(field("db0").starts_with("keys="));
    let Value::Bulk(proxy_only) = raw.call(&["INFO", "proxy"]).await else {
        panic!()
    };
    assert!(
        String::from_utf8(proxy_only)
            .unwrap()
            .starts_with("# Proxy\r\n")
    );
    // The rest of the server family goes to a node.
    let Value::Array(time) = raw.call(&["TIME"]).await else {
        panic!("TIME is an array")
    };
    assert_eq!(time.len(), 2);
    let Value::Array(commands) = raw.call(&["COMMAND", "INFO", "get"]).await else {
        panic!()
    };
    assert_eq!(commands.len(), 1);
}
