//! The node and the proxy share one front door: the same connection-level script, sent to a
//! node and to a proxy (both with a password), gets the same replies, byte for byte once the
//! parts that name a connection (ids, addresses, ages) are set aside.

use shoal_client::Value;

use crate::common::*;

/// What a step expects to compare.
#[derive(Clone, Copy)]
enum Compare {
    /// The reply, byte for byte.
    Exact,
    /// A `HELLO` map: every field but `id`.
    Hello,
    /// `CLIENT ID`: an integer.
    Integer,
    /// A `CLIENT INFO`/`LIST` line: the fields that do not name the connection.
    ClientLine,
}

/// The connection-level script: connection commands, authentication, the checks every
/// command passes, and protocol switches.
const SCRIPT: &[(&[&str], Compare)] = &[
    (&["PING"], Compare::Exact),
    (&["GET", "k"], Compare::Exact),
    (&["NOSUCHCOMMAND", "a", "b"], Compare::Exact),
    (&["HELLO", "3"], Compare::Exact),
    (&["AUTH", "a", "b", "c"], Compare::Exact),
    (&["AUTH", "wrong"], Compare::Exact),
    (&["AUTH", "someone", "pw"], Compare::Exact),
    (&["CLIENT", "ID"], Compare::Exact),
    (
        &["HELLO", "2", "AUTH", "default", "pw", "SETNAME", "tester"],
        Compare::Hello,
    ),
    (&["CLIENT", "GETNAME"], Compare::Exact),
    (&["CLIENT", "SETNAME", "bad name"], Compare::Exact),
    (&["CLIENT", "ID"], Compare::Integer),
    (&["CLIENT", "INFO"], Compare::ClientLine),
    (&["CLIENT", "LIST", "ID", "999999"], Compare::Exact),
    (&["CLIENT", "LIST", "TYPE", "pubsub"], Compare::Exact),
    (&["CLIENT", "LIST", "TYPE", "nonsense"], Compare::Exact),
    (&["CLIENT", "KILL", "ID", "999999"], Compare::Exact),
    (&["CLIENT", "KILL", "ID", "0"], Compare::Exact),
    (&["CLIENT", "KILL", "1.2.3.4:5"], Compare::Exact),
    (&["CLIENT", "KILL", "USER", "nobody"], Compare::Exact),
    (&["CLIENT", "NOPE"], Compare::Exact),
    (&["CLIENT"], Compare::Exact),
    (&["CLIENT", "HELP"], Compare::Exact),
    (&["SELECT", "0"], Compare::Exact),
    (&["SELECT", "1"], Compare::Exact),
    (&["SELECT", "x"], Compare::Exact),
    (&["ECHO", "hi"], Compare::Exact),
    (&["ECHO"], Compare::Exact),
    (&["PING", "hello"], Compare::Exact),
    (&["PING", "a", "b"], Compare::Exact),
    (&["GET"], Compare::Exact),
    (&["HELLO", "4"], Compare::Exact),
    (&["HELLO", "x"], Compare::Exact),
    (&["HELLO", "3", "BOGUS"], Compare::Exact),
    (&["HELLO", "3"], Compare::Hello),
    (&["PING"], Compare::Exact),
    (&["CLIENT", "GETNAME"], Compare::Exact),
    (&["CLIENT", "INFO"], Compare::ClientLine),
    (&["RESET"], Compare::Exact),
    (&["CLIENT", "GETNAME"], Compare::Exact),
    (&["PING"], Compare::Exact),
    (&["AUTH", "pw"], Compare::Exact),
    (&["PING"], Compare::Exact),
    (&["QUIT"], Compare::Exact),
];

/// Runs the script on a new connection to `addr` and returns each reply, as compared.
async fn run_script(addr: impl tokio::net::ToSocketAddrs) -> Vec<(String, Value)> {
    let mut raw = Raw::connect(addr).await;
    let mut replies = Vec::new();
    for (args, compare) in SCRIPT {
        let reply = raw.call(args).await;
        let shown = match compare {
            Compare::Exact => reply,
            Compare::Hello => without_id(reply),
            Compare::Integer => {
                assert!(matches!(reply, Value::Int(id) if id > 0), "{reply:?}");
                Value::Int(0)
            }
            Compare::ClientLine => stable_fields(reply),
        };
        replies.push((args.join(" "), shown));
    }
    assert!(raw.closed().await, "QUIT closes the connection");
    replies
}

fn without_id(hello: Value) -> Value {
    let strip = |pairs: Vec<(Value, Value)>| -> Vec<(Value, Value)> {
        pairs
            .into_iter()
            .filter(|(k, _)| *k != bulk("id"))
            .collect()
    };
    match hello {
        Value::Map(pairs) => Value::Map(strip(pairs)),
        Value::Array(items) => {
            let pairs: Vec<(Value, Value)> = items
                .chunks(2)
                .map(|kv| (kv[0].clone(), kv[1].clone()))
                .collect();
            Value::Map(strip(pairs))
        }
        other => panic!("HELLO answered {other:?}"),
    }
}

/// The fields of a `CLIENT INFO` line, with the values that name the connection left out.
fn stable_fields(line: Value) -> Value {
    let text = match line {
        Value::Bulk(text) | Value::Verbatim(_, text) => String::from_utf8_lossy(&text).into_owned(),
        other => panic!("CLIENT INFO answered {other:?}"),
    };
    const NAMING: [&str; 6] = ["id", "addr", "laddr", "fd", "age", "idle"];
    const BUFFERS: [&str; 7] = [
        "qbuf",
        "qbuf-free",
        "rbs",
        "rbp",
        "omem",
        "tot-mem",
        "argv-mem",
    ];
    let shown: Vec<String> = text
        .trim_end()
        .split(' ')
        .map(|field| {
            let (name, _) = field.split_once('=').unwrap_or((field, ""));
            if NAMING.contains(&name) || BUFFERS.contains(&name) {
                name.to_string()
            } else {
                field.to_string()
            }
        })
        .collect();
    Value::Bulk(shown.join(" ").into_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_the_proxy_answer_the_connection_script_alike() {
    let harness = Harness::start(|c| c.requirepass = Some("pw".into()));
    let node = start_node(|c| c.requirepass = "pw".into());
    let from_node = run_script(node.addr()).await;
    let from_proxy = run_script(harness.addr()).await;
    assert_eq!(from_node.len(), SCRIPT.len());
    for ((command, node_reply), (_, proxy_reply)) in from_node.iter().zip(&from_proxy) {
        assert_eq!(
            node_reply, proxy_reply,
            "`{command}`: the node and the proxy differ"
        );
    }
    // The script means something: it met the password, the checks and both protocols.
    let errors = from_node
        .iter()
        .filter(|(_, reply)| matches!(reply, Value::Error(_)))
        .count();
    assert!(errors >= 20, "only {errors} error replies in the script");
    assert_eq!(
        from_node[0].1,
        Value::Error(b"NOAUTH Authentication required.".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_the_proxy_close_on_the_same_protocol_errors() {
    let harness = shared();
    let node = start_node(|_| {});
    for input in [
        &b"*1\r\n$-5\r\n"[..],
        b"*2\r\n$3\r\nGET\r\n:1\r\n",
        b"*3000000000\r\n",
        b"PING\r\n\"unbalanced\r\n",
    ] {
        let mut seen = Vec::new();
        for addr in [node.addr(), harness.addr()] {
            let mut raw = Raw::connect(addr).await;
            raw.send(input).await;
            // Everything until the connection closes.
            seen.push(raw.read_bytes(1 << 20).await);
        }
        let shown = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        assert_eq!(
            shown(&seen[0]),
            shown(&seen[1]),
            "{:?}: the node and the proxy answer differently",
            shown(input)
        );
        let last_line = shown(&seen[0]).lines().last().unwrap_or("").to_string();
        assert!(
            last_line.starts_with("-ERR Protocol error: "),
            "{:?}: {:?}",
            shown(input),
            shown(&seen[0])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_and_the_proxy_drop_an_http_request_sent_to_them_as_redis_does() {
    let harness = shared();
    let node = start_node(|_| {});
    // What a web page can make a browser send to a RESP port: an HTTP request whose body holds
    // commands. Redis closes the connection on the `POST` (or `Host:`) line and answers nothing
    // of what came with it, not even the replies to commands before it in the same read.
    let key = "cross:protocol:pwned";
    let attacks = [
        format!("POST / HTTP/1.1\r\nHost: evil.example\r\n\r\nSET {key} yes\r\n"),
        format!("PING\r\nhost: evil.example\r\nSET {key} yes\r\n"),
        format!(
            "*1\r\n$4\r\npost\r\n*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$3\r\nyes\r\n",
            key.len()
        ),
    ];
    for addr in [node.addr(), harness.addr()] {
        for attack in &attacks {
            let mut raw = Raw::connect(addr).await;
            raw.send(attack.as_bytes()).await;
            let answered = raw.read_bytes(1 << 20).await;
            assert!(
                answered.is_empty(),
                "{attack:?} to {addr}: answered {:?}",
                String::from_utf8_lossy(&answered)
            );
        }
        let mut check = Raw::connect(addr).await;
        assert_eq!(check.call(&["GET", key]).await, Value::Null, "at {addr}");
        // An ordinary `GET` line is not mistaken for one (Redis answers it as a command).
        check.send(b"GET / HTTP/1.1\r\n").await;
        assert!(matches!(check.reply().await, Value::Error(_)));
        assert_eq!(check.call(&["PING"]).await, Value::Simple(b"PONG".to_vec()));
    }
}

/// `INFO`'s fields as name -> value.
fn info_fields(info: &Value) -> std::collections::HashMap<String, String> {
    let text = match info {
        Value::Bulk(text) | Value::Verbatim(_, text) => String::from_utf8_lossy(text).into_owned(),
        other => panic!("INFO answered {other:?}"),
    };
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_counts_commands_that_went_to_the_cluster_and_their_errors() {
    let harness = Harness::start(|_| {});
    let mut raw = Raw::connect(harness.addr()).await;
    assert_eq!(raw.call(&["SET", "stats:s", "text"]).await, simple("OK"));
    for _ in 0..3 {
        assert_eq!(raw.call(&["GET", "stats:s"]).await, bulk("text"));
    }
    assert!(matches!(
        raw.call(&["INCR", "stats:s"]).await,
        Value::Error(_)
    ));
    let info = info_fields(&raw.call(&["INFO", "commandstats", "errorstats"]).await);
    let get = &info["cmdstat_get"];
    assert!(
        get.starts_with("calls=3,") && get.ends_with("failed_calls=0"),
        "{get}"
    );
    let incr = &info["cmdstat_incr"];
    assert!(incr.ends_with("failed_calls=1"), "{incr}");
    assert_eq!(info["errorstat_ERR"], "count=1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_refuses_client_tracking_clearly_and_answers_the_rest_as_a_node() {
    let harness = shared();
    let node = start_node(|_| {});
    let mut proxy = Raw::connect(harness.addr()).await;
    let mut direct = Raw::connect(node.addr()).await;
    // With tracking off, both answer alike (errors of the arguments included).
    for command in [
        &["CLIENT", "GETREDIR"][..],
        &["CLIENT", "TRACKINGINFO"],
        &["CLIENT", "CACHING", "yes"],
        &["CLIENT", "TRACKING", "off"],
        &["CLIENT", "TRACKING", "on", "optin", "optout"],
        &["CLIENT", "TRACKING", "on", "prefix", "a"],
        &["CLIENT", "TRACKING", "maybe"],
    ] {
        assert_eq!(
            proxy.call(command).await,
            direct.call(command).await,
            "{command:?}"
        );
    }
    // The proxy does not see its keys change: it refuses to track them.
    let refusal = error_text(&proxy.call(&["CLIENT", "TRACKING", "on"]).await);
    assert!(refusal.contains("not supported"), "{refusal}");
    assert_eq!(
        proxy.call(&["CLIENT", "GETREDIR"]).await,
        Value::Int(-1),
        "tracking stays off"
    );
    assert_eq!(
        direct.call(&["CLIENT", "TRACKING", "on"]).await,
        simple("OK")
    );
}
