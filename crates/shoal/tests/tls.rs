//! TLS from the binary: a node's (and a proxy's) TLS port beside the plain one or alone, mutual
//! TLS, wrong CAs, certificates reloaded on `SIGHUP` and `CONFIG SET` under load, clear start
//! errors, the handshake timeout, and `redis-cli --tls`. Certificates are made by the test
//! ([`TestCa`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

mod tls_common;

use rustls_pki_types::ServerName;
use shoal_testkit::{
    NodePorts, NodeProcess, NodeSpec, TestCa, cluster_secret, cluster_secret_file, free_port,
    have_tools,
};
use tls_common::{
    Certs, SHOAL, WAIT, certs, client_config, client_config_with, connect_tls, path,
    served_certificate, spawn_shoal, tls_args, tls_node_spec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node with a plain and a TLS port (and `extra` flags); returns it and its TLS port.
async fn start_node(certs: &Certs, extra: &[&str]) -> (NodeProcess, u16) {
    let tls_port = free_port().unwrap();
    let mut args = tls_args(certs, tls_port);
    args.extend(["--threads", "2"].map(String::from));
    args.extend(extra.iter().map(|a| a.to_string()));
    let node = NodeProcess::start(tls_node_spec(certs, "tls-node", "node.log", args), WAIT)
        .await
        .unwrap();
    (node, tls_port)
}

/// Sends one command in RESP and reads one reply line (for replies that are one line, or a
/// bulk string's header and body).
async fn call<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    args: &[&str],
) -> std::io::Result<String> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + WAIT;
    loop {
        let n = tokio::time::timeout_at(deadline.into(), stream.read(&mut byte))
            .await
            .map_err(|_| std::io::Error::other("no reply in time"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        reply.push(byte[0]);
        if reply.ends_with(b"\r\n") {
            let line = String::from_utf8_lossy(&reply).into_owned();
            if !line.starts_with('$') || line.starts_with("$-1") {
                return Ok(line.trim_end().to_string());
            }
            // A bulk string: its body follows.
            let len: usize = line[1..].trim_end().parse().unwrap();
            let mut body = vec![0u8; len + 2];
            stream.read_exact(&mut body).await?;
            return Ok(String::from_utf8_lossy(&body[..len]).into_owned());
        }
    }
}

/// Whether a TLS client with this configuration gets `PONG` from `port` (a refused client
/// certificate shows as an error on the first read under TLS 1.3).
async fn pings(port: u16, config: Arc<rustls::ClientConfig>) -> bool {
    match connect_tls(port, config).await {
        Ok(mut tls) => matches!(call(&mut tls, &["PING"]).await.as_deref(), Ok("+PONG")),
        Err(_) => false,
    }
}

/// `CONFIG GET name`'s value, asked on the plain port.
async fn config_get(node: &NodeProcess, name: &str) -> String {
    match node.command(&["CONFIG", "GET", name]).await.unwrap() {
        shoal_testkit::Value::Array(pair) if pair.len() == 2 => {
            shoal_testkit::resp::text(&pair[1]).unwrap()
        }
        other => panic!("CONFIG GET {name} answered {other:?}"),
    }
}

#[tokio::test]
async fn the_plain_and_the_tls_port_serve_the_same_keyspace() {
    let certs = certs("tls-both-ports");
    let (node, tls_port) = start_node(&certs, &[]).await;
    let mut plain = node.connect().await.unwrap();
    plain.call(&["SET", "greeting", "hello"]).await.unwrap();
    let config = client_config(&certs.ca.cert, Some(&certs.client));
    let mut tls = connect_tls(tls_port, config.clone()).await.unwrap();
    assert_eq!(call(&mut tls, &["GET", "greeting"]).await.unwrap(), "hello");
    assert_eq!(
        call(&mut tls, &["SET", "from-tls", "1"]).await.unwrap(),
        "+OK"
    );
    // A pipeline larger than a TLS record comes back whole and in order.
    let mut pipeline = Vec::new();
    for i in 0..2000 {
        pipeline.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$5\r\nk{i:04}\r\n$1\r\nv\r\n").as_bytes(),
        );
    }
    tls.write_all(&pipeline).await.unwrap();
    let mut replies = vec![0u8; 2000 * 5];
    tls.read_exact(&mut replies).await.unwrap();
    assert!(replies.chunks(5).all(|r| r == b"+OK\r\n"));
    // The `redis` crate's rustls connection, unchanged.
    let client = redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{tls_port}/"),
        redis::TlsCertificates {
            client_tls: Some(redis::ClientTlsConfig {
                client_cert: std::fs::read(&certs.client.cert).unwrap(),
                client_key: std::fs::read(&certs.client.key).unwrap(),
            }),
            root_cert: Some(std::fs::read(&certs.ca.cert).unwrap()),
        },
    )
    .unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let value: String = redis::cmd("GET")
        .arg("from-tls")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(value, "1");
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(size, 2002);
    let tls_port_shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-port")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        tls_port_shown,
        ["tls-port".to_string(), tls_port.to_string()]
    );
}

#[tokio::test]
async fn client_certificates_are_required_unless_optional() {
    let certs = certs("tls-mutual");
    let (node, tls_port) = start_node(&certs, &[]).await;
    let with_cert = client_config(&certs.ca.cert, Some(&certs.client));
    let without = client_config(&certs.ca.cert, None);
    assert!(pings(tls_port, with_cert.clone()).await);
    assert!(
        !pings(tls_port, without.clone()).await,
        "tls-auth-clients yes"
    );
    // A client certificate from another CA is refused too.
    let stranger = TestCa::new(certs.dir.path(), "other").unwrap();
    let foreign = stranger.client("intruder").unwrap();
    assert!(!pings(tls_port, client_config(&certs.ca.cert, Some(&foreign))).await);

    let set = node
        .command(&["CONFIG", "SET", "tls-auth-clients", "optional"])
        .await
        .unwrap();
    assert_eq!(shoal_testkit::resp::text(&set).as_deref(), Some("OK"));
    assert!(
        pings(tls_port, without.clone()).await,
        "optional: no certificate"
    );
    assert!(
        pings(tls_port, with_cert).await,
        "optional: a valid certificate"
    );
    assert!(
        !pings(tls_port, client_config(&certs.ca.cert, Some(&foreign))).await,
        "optional: a certificate that is shown must be valid"
    );
    // A client that does not trust the server's CA gives up in the handshake.
    assert!(!pings(tls_port, client_config(&stranger.cert, None)).await);
    assert_eq!(config_get(&node, "tls-auth-clients").await, "optional");
}

#[tokio::test]
async fn redis_cli_speaks_tls_to_the_node() {
    if !have_tools("redis_cli_speaks_tls_to_the_node", &["redis-cli"]) {
        return;
    }
    let certs = certs("tls-redis-cli");
    let (_node, tls_port) = start_node(&certs, &[]).await;
    let cli = |args: &[&str]| {
        let output = std::process::Command::new("redis-cli")
            .args(["--tls", "--cacert", &path(&certs.ca.cert)])
            .args([
                "--cert",
                &path(&certs.client.cert),
                "--key",
                &path(&certs.client.key),
            ])
            .args(["-p", &tls_port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "k", "over tls"]), "OK");
    assert_eq!(cli(&["GET", "k"]), "over tls");
    assert_eq!(
        cli(&["CONFIG", "GET", "tls-auth-clients"]),
        "tls-auth-clients\nyes"
    );
}

#[tokio::test]
async fn certificates_reload_without_a_restart_and_without_failing_a_request() {
    let certs = certs("tls-reload");
    let (node, tls_port) = start_node(&certs, &[]).await;
    let config = client_config(&certs.ca.cert, Some(&certs.client));
    assert_eq!(
        served_certificate(tls_port, config.clone()).await,
        certs.server.der
    );

    // Load: four TLS connections, each a bounded loop of SET/GET, until the reloads are done.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for client in 0..4 {
        let mut tls = connect_tls(tls_port, config.clone()).await.unwrap();
        let (stop, done) = (stop.clone(), done.clone());
        load.push(tokio::spawn(async move {
            let started = Instant::now();
            for i in 0..200_000u32 {
                if stop.load(Relaxed) || started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                let key = format!("load-{client}-{}", i % 100);
                let value = i.to_string();
                let set = call(&mut tls, &["SET", &key, &value]).await?;
                let got = call(&mut tls, &["GET", &key]).await?;
                if set != "+OK" || got != value {
                    return Err(std::io::Error::other(format!("{set} / {got} for {value}")));
                }
                done.fetch_add(1, Relaxed);
            }
            Ok::<(), std::io::Error>(())
        }));
    }
    let wait_for_progress = |at_least: u64| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while done.load(Relaxed) < at_least {
                assert!(Instant::now() < deadline, "the load makes no progress");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for_progress(200).await;

    // SIGHUP after the files are replaced in place.
    let second = certs.ca.server("server-2").unwrap();
    std::fs::copy(&second.cert, &certs.server.cert).unwrap();
    std::fs::copy(&second.key, &certs.server.key).unwrap();
    node.process().signal(libc::SIGHUP).unwrap();
    let deadline = Instant::now() + WAIT;
    while served_certificate(tls_port, config.clone()).await != second.der {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for_progress(done.load(Relaxed) + 200).await;

    // CONFIG SET to other files: at once for the next handshake.
    let third = certs.ca.server("server-3").unwrap();
    let set = node
        .command(&[
            "CONFIG",
            "SET",
            "tls-cert-file",
            &path(&third.cert),
            "tls-key-file",
            &path(&third.key),
        ])
        .await
        .unwrap();
    assert_eq!(shoal_testkit::resp::text(&set).as_deref(), Some("OK"));
    assert_eq!(
        served_certificate(tls_port, config.clone()).await,
        third.der
    );

    // A bad certificate is refused; the one in use stays.
    let refused = node
        .command(&["CONFIG", "SET", "tls-cert-file", &path(&certs.ca.cert)])
        .await
        .unwrap();
    assert_eq!(
        shoal_testkit::resp::text(&refused).as_deref(),
        Some(
            "ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - Unable to \
             update TLS configuration. Check server logs."
        )
    );
    assert_eq!(config_get(&node, "tls-cert-file").await, path(&third.cert));
    std::fs::write(&certs.server.cert, "not a certificate").unwrap();
    node.process().signal(libc::SIGHUP).unwrap();
    wait_for_progress(done.load(Relaxed) + 200).await;
    assert_eq!(
        served_certificate(tls_port, config.clone()).await,
        third.der
    );
    assert!(
        node.log_tail(50).contains("does not match the certificate")
            || node.log_tail(50).contains("TLS configuration is unchanged"),
        "{}",
        node.log_tail(50)
    );

    stop.store(true, Relaxed);
    for task in load {
        task.await
            .unwrap()
            .expect("no request failed during the reloads");
    }
    assert!(done.load(Relaxed) >= 600);
}

#[tokio::test]
async fn port_zero_serves_tls_only() {
    let certs = certs("tls-only");
    let tls_port = free_port().unwrap();
    let mut args = vec!["server".to_string(), "--port".into(), "0".into()];
    args.extend(["--http-port", "0", "--threads", "1"].map(String::from));
    args.extend(tls_args(&certs, tls_port));
    args.extend(["--tls-auth-clients", "no"].map(String::from));
    let process = spawn_shoal(&certs, "tls-only", "node.log", args);
    let config = client_config(&certs.ca.cert, None);
    let deadline = Instant::now() + WAIT;
    while !pings(tls_port, config.clone()).await {
        assert!(process.is_running(), "{}", process.log_tail(20));
        assert!(Instant::now() < deadline, "{}", process.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut tls = connect_tls(tls_port, config).await.unwrap();
    assert_eq!(
        call(&mut tls, &["CONFIG", "GET", "port"]).await.unwrap(),
        "*2"
    );
    let log = process.log_tail(20);
    assert!(
        log.contains(&format!("tls_addr=127.0.0.1:{tls_port}")),
        "{log}"
    );
    assert!(!log.contains("resp_addr="), "no plain port: {log}");
}

#[test]
fn bad_certificates_stop_the_start_and_name_the_file() {
    let certs = certs("tls-bad-files");
    let other = certs.ca.server("other").unwrap();
    let missing = certs.dir.join("missing.crt");
    let run = |cert: &Path, key: &Path| {
        let output = std::process::Command::new(SHOAL)
            .args(["server", "--port", "0", "--http-port", "0"])
            .args(["--tls-port", &free_port().unwrap().to_string()])
            .args(["--tls-cert-file", &path(cert), "--tls-key-file", &path(key)])
            .args(["--tls-ca-cert-file", &path(&certs.ca.cert)])
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = run(&missing, &certs.server.key);
    assert!(
        error.contains(&format!(
            "cannot read the tls-cert-file file {}",
            path(&missing)
        )),
        "{error}"
    );
    let error = run(&certs.server.cert, &other.key);
    assert!(
        error.contains(&format!(
            "the private key in {} (tls-key-file) does not match the certificate in {} \
             (tls-cert-file)",
            path(&other.key),
            path(&certs.server.cert)
        )),
        "{error}"
    );
    let error = run(&certs.server.key, &certs.server.key);
    assert!(error.contains("holds no certificate"), "{error}");
    let error = run(&certs.server.cert, &certs.server.cert);
    assert!(error.contains("holds no private key"), "{error}");
}

#[tokio::test]
async fn a_handshake_that_never_finishes_holds_its_slot_until_the_timeout() {
    let certs = certs("tls-slow-handshake");
    let (node, tls_port) = start_node(&certs, &[]).await;
    // Waits until INFO counts `n` clients (the kit's own connection for INFO is one).
    let connected = |n: u64| {
        let node = &node;
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let info = node.info("clients").await.unwrap();
                if info.u64("connected_clients") == Some(n) {
                    return;
                }
                assert!(Instant::now() < deadline, "never {n} clients: {info:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    connected(1).await;
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    connected(2).await;
    // Meanwhile the TLS port serves others.
    assert!(pings(tls_port, client_config(&certs.ca.cert, Some(&certs.client))).await);
    let started = Instant::now();
    let mut sink = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut sink)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(12));
    // Its slot is given back.
    connected(1).await;
}

/// `GET path` over HTTPS on `port`: the status line and the body.
async fn https_get(port: u16, config: Arc<rustls::ClientConfig>, path: &str) -> (String, String) {
    let mut tls = connect_tls(port, config).await.expect("HTTPS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response.lines().next().unwrap_or_default().to_string();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn the_http_api_is_served_over_https_with_the_same_certificate() {
    let certs = certs("tls-https");
    let tls_port = free_port().unwrap();
    let ports = NodePorts::reserve().unwrap();
    let mut args = tls_args(&certs, tls_port);
    args.extend(["--http-tls", "yes", "--threads", "1"].map(String::from));
    let node = NodeProcess::start(
        NodeSpec {
            ports,
            ..tls_node_spec(&certs, "https-node", "node.log", args)
        },
        WAIT,
    )
    .await
    .unwrap();
    let config = client_config(&certs.ca.cert, Some(&certs.client));
    let (status, body) = https_get(ports.http, config.clone(), "/health").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"status":"ok"}"#);
    node.command(&["SET", "over-https", "yes"]).await.unwrap();
    let (status, body) = https_get(ports.http, config.clone(), "/over-https").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"value":"yes"}"#);
    assert_eq!(
        served_certificate(ports.http, config).await,
        certs.server.der
    );
    // Plain HTTP gets no answer from an HTTPS port.
    let mut plain = TcpStream::connect(("127.0.0.1", ports.http)).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer)).await;
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));
}

#[tokio::test]
async fn a_proxy_serves_tls_only_and_https() {
    let certs = certs("tls-proxy");
    let node = NodeProcess::start(
        tls_node_spec(
            &certs,
            "cluster-node",
            "node.log",
            ["--cluster-enabled", "--threads", "1"]
                .map(String::from)
                .to_vec(),
        ),
        WAIT,
    )
    .await
    .unwrap();
    let (tls_port, http_port) = (free_port().unwrap(), free_port().unwrap());
    let mut args = vec!["proxy".to_string(), "--cluster".into(), node.resp_addr()];
    args.extend([
        "--cluster-secret-file".to_string(),
        path(cluster_secret_file()),
    ]);
    args.extend(["--port", "0", "--threads", "1", "--http-tls", "yes"].map(String::from));
    args.extend(["--http-port".to_string(), http_port.to_string()]);
    args.extend(tls_args(&certs, tls_port));
    let proxy = spawn_shoal(&certs, "tls-proxy", "proxy.log", args);
    let config = client_config(&certs.ca.cert, Some(&certs.client));
    let deadline = Instant::now() + WAIT;
    while !pings(tls_port, config.clone()).await {
        assert!(proxy.is_running(), "{}", proxy.log_tail(20));
        assert!(Instant::now() < deadline, "{}", proxy.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut tls = connect_tls(tls_port, config.clone()).await.unwrap();
    let set = call(&mut tls, &["SET", "through-the-proxy", "42"])
        .await
        .unwrap();
    assert_eq!(set, "+OK");
    assert_eq!(
        call(&mut tls, &["GET", "through-the-proxy"]).await.unwrap(),
        "42"
    );
    assert!(!pings(tls_port, client_config(&certs.ca.cert, None)).await);
    let (status, body) = https_get(http_port, config.clone(), "/through-the-proxy").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, r#"{"value":"42"}"#);
    // SIGHUP reloads the proxy's certificate too.
    let second = certs.ca.server("server-2").unwrap();
    std::fs::copy(&second.cert, &certs.server.cert).unwrap();
    std::fs::copy(&second.key, &certs.server.key).unwrap();
    proxy.signal(libc::SIGHUP).unwrap();
    let deadline = Instant::now() + WAIT;
    while served_certificate(tls_port, config.clone()).await != second.der {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload: {}",
            proxy.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        call(&mut tls, &["GET", "through-the-proxy"]).await.unwrap(),
        "42"
    );
}

#[tokio::test]
async fn large_pipelined_replies_arrive_whole_with_output_limits_set() {
    let certs = certs("tls-large-replies");
    // With output limits set the session writes what the socket takes and keeps reading,
    // the path where rustls may hold encrypted bytes the socket did not take yet.
    let (node, tls_port) =
        start_node(&certs, &["--client-output-buffer-limit", "256mb 128mb 60"]).await;
    let value = "v".repeat(200_000);
    let mut tls = connect_tls(tls_port, client_config(&certs.ca.cert, Some(&certs.client)))
        .await
        .unwrap();
    assert_eq!(
        call(&mut tls, &["SET", "big", &value]).await.unwrap(),
        "+OK"
    );
    let gets = 40;
    tls.write_all(&b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n".repeat(gets))
        .await
        .unwrap();
    let reply = format!("$200000\r\n{value}\r\n");
    let mut got = vec![0u8; reply.len() * gets];
    // Read slowly at first, so replies pile up on the server's side.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::time::timeout(WAIT, tls.read_exact(&mut got))
        .await
        .expect("every reply in time")
        .unwrap();
    assert!(got.chunks(reply.len()).all(|r| r == reply.as_bytes()));
    assert_eq!(call(&mut tls, &["PING"]).await.unwrap(), "+PONG");
    let info = node.info("stats").await.unwrap();
    assert_eq!(
        info.u64("client_output_buffer_limit_disconnections"),
        Some(0)
    );
}

#[tokio::test]
async fn a_client_over_maxclients_reads_the_error_over_tls() {
    let certs = certs("tls-maxclients");
    let (node, tls_port) = start_node(&certs, &["--maxclients", "1"]).await;
    let config = client_config(&certs.ca.cert, Some(&certs.client));
    // The kit's readiness check closed its connection: wait until the slot is free.
    let deadline = Instant::now() + WAIT;
    let mut first = loop {
        let mut tls = connect_tls(tls_port, config.clone()).await.unwrap();
        if matches!(call(&mut tls, &["PING"]).await.as_deref(), Ok("+PONG")) {
            break tls;
        }
        assert!(Instant::now() < deadline, "the only slot never came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut second = connect_tls(tls_port, config).await.unwrap();
    let mut refused = String::new();
    tokio::time::timeout(WAIT, second.read_to_string(&mut refused))
        .await
        .expect("closed in time")
        .unwrap_or_default();
    assert_eq!(refused, "-ERR max number of clients reached\r\n");
    assert_eq!(call(&mut first, &["PING"]).await.unwrap(), "+PONG");
    drop(node);
}

#[tokio::test]
async fn protocols_and_suites_follow_config_set() {
    let certs = certs("tls-protocols");
    let (node, tls_port) = start_node(&certs, &["--tls-protocols", "TLSv1.2"]).await;
    let tls12 = client_config_with(
        &certs.ca.cert,
        Some(&certs.client),
        &[&rustls::version::TLS12],
    );
    let tls13 = client_config_with(
        &certs.ca.cert,
        Some(&certs.client),
        &[&rustls::version::TLS13],
    );
    assert!(pings(tls_port, tls12.clone()).await);
    assert!(
        !pings(tls_port, tls13.clone()).await,
        "TLS 1.3 is not offered"
    );
    let set = |args: [&'static str; 2]| {
        let node = &node;
        async move {
            let reply = node
                .command(&["CONFIG", "SET", args[0], args[1]])
                .await
                .unwrap();
            shoal_testkit::resp::text(&reply).unwrap()
        }
    };
    assert_eq!(set(["tls-protocols", "TLSv1.3"]).await, "OK");
    assert!(pings(tls_port, tls13.clone()).await);
    assert!(
        !pings(tls_port, tls12).await,
        "TLS 1.2 is no longer offered"
    );
    assert_eq!(
        set(["tls-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"]).await,
        "OK"
    );
    let tls = connect_tls(tls_port, tls13.clone()).await.unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    assert!(
        set(["tls-protocols", "TLSv1.1"])
            .await
            .starts_with("ERR CONFIG SET failed (possibly related to argument 'tls-protocols')")
    );
    assert_eq!(config_get(&node, "tls-protocols").await, "TLSv1.3");
    assert!(pings(tls_port, tls13).await);
}

#[tokio::test]
async fn the_proxy_and_the_smart_client_speak_tls_to_tls_nodes() {
    let mut certs = certs("tls-upstream");
    // The node's bus speaks TLS too (the proxy's --tls-cluster covers both), where the node
    // shows its certificate as a client.
    certs.server = certs.ca.node("node").unwrap();
    let tls_port = free_port().unwrap();
    // The cluster's map gives the node's TLS port (`cluster-announce-port`).
    let mut args = tls_args(&certs, tls_port);
    args.extend(
        [
            "--cluster-enabled",
            "--threads",
            "1",
            "--tls-cluster",
            "yes",
        ]
        .map(String::from),
    );
    args.extend(["--cluster-announce-port".to_string(), tls_port.to_string()]);
    let node = NodeProcess::start(
        tls_node_spec(&certs, "tls-cluster-node", "node.log", args),
        WAIT,
    )
    .await
    .unwrap();
    let seed = format!("127.0.0.1:{tls_port}");

    // The smart client, with the CA and a client certificate (the node asks for one), on the
    // RESP port and the bus.
    let member = client_config(&certs.ca.cert, Some(&certs.client));
    let config = shoal_client::ClientConfig::new([seed.clone()])
        .with_cluster_secret(cluster_secret())
        .with_tls(member.clone(), None)
        .with_bus_tls(member.clone());
    let client = shoal_client::Client::connect(config).await.unwrap();
    client.set("smart", "over tls", None).await.unwrap();
    assert_eq!(
        client.get("smart").await.unwrap().as_deref(),
        Some(&b"over tls"[..])
    );
    // Without a client certificate the node refuses it.
    let mut refused = shoal_client::ClientConfig::new([seed.clone()])
        .with_cluster_secret(cluster_secret())
        .with_tls(client_config(&certs.ca.cert, None), None)
        .with_bus_tls(member)
        .with_connect_timeout(Duration::from_millis(500));
    refused.map_timeout = Duration::from_secs(1);
    refused.max_attempts = 1;
    // It may get the map from the bus, but no command through.
    if let Ok(client) = shoal_client::Client::connect(refused).await {
        assert!(client.get("smart").await.is_err());
    }

    // The proxy: plain for its clients here, TLS to the node.
    let proxy_port = free_port().unwrap();
    let mut args = vec!["proxy".to_string(), "--cluster".into(), seed];
    args.extend([
        "--cluster-secret-file".to_string(),
        path(cluster_secret_file()),
    ]);
    args.extend(["--port".to_string(), proxy_port.to_string()]);
    args.extend(["--threads", "1", "--tls-cluster", "yes"].map(String::from));
    args.extend(["--tls-ca-cert-file".to_string(), path(&certs.ca.cert)]);
    args.extend(["--tls-cert-file".to_string(), path(&certs.client.cert)]);
    args.extend(["--tls-key-file".to_string(), path(&certs.client.key)]);
    let proxy = spawn_shoal(&certs, "upstream-tls-proxy", "proxy.log", args);
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let deadline = Instant::now() + WAIT;
    let got = loop {
        let reply =
            shoal_testkit::resp::command_as(&proxy_addr, None, &["GET", "smart"], WAIT).await;
        if let Ok(value) = reply {
            break value;
        }
        assert!(proxy.is_running(), "{}", proxy.log_tail(20));
        assert!(Instant::now() < deadline, "{}", proxy.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shoal_testkit::resp::text(&got).as_deref(), Some("over tls"));
    // The proxy's connection to the node arrived on the TLS port.
    let clients = node.command(&["CLIENT", "LIST"]).await.unwrap();
    let clients = shoal_testkit::resp::text(&clients).unwrap();
    let upstream = clients
        .lines()
        .find(|l| l.contains("name=shoal:proxy"))
        .unwrap_or_else(|| panic!("no proxy connection: {clients}"));
    assert!(
        upstream.contains(&format!("laddr=127.0.0.1:{tls_port}")),
        "{upstream}"
    );
}

#[tokio::test]
async fn a_replica_follows_its_primary_over_tls() {
    let mut certs = certs("tls-replication");
    // A node shows its certificate as a client too.
    certs.server = certs.ca.node("node").unwrap();
    let start = |name: &str, extra: Vec<String>| {
        let tls_port = free_port().unwrap();
        let mut args = tls_args(&certs, tls_port);
        args.extend(["--tls-replication", "yes", "--threads", "1"].map(String::from));
        args.extend(extra);
        let spec = tls_node_spec(&certs, name, &format!("{name}.log"), args);
        async move { (NodeProcess::start(spec, WAIT).await.unwrap(), tls_port) }
    };
    let (primary, primary_tls) = start(
        "primary",
        ["--cluster-enabled", "--replicas", "1"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let (replica, _) = start(
        "replica",
        vec!["--cluster-join".into(), primary.resp_addr()],
    )
    .await;
    // The map gives the TLS ports (tls-replication announces them).
    let deadline = Instant::now() + WAIT;
    loop {
        let info = replica.info("replication").await.unwrap();
        if info.get("role") == Some("slave") && info.get("master_link_status") == Some("up") {
            assert_eq!(
                info.u64("master_port"),
                Some(u64::from(primary_tls)),
                "{info:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no replication link: {info:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = client_config(&certs.ca.cert, Some(&certs.client));
    let mut tls = connect_tls(primary_tls, config).await.unwrap();
    // The primary serves writes once it holds its lease.
    let deadline = Instant::now() + WAIT;
    loop {
        let set = call(&mut tls, &["SET", "replicated", "over tls"])
            .await
            .unwrap();
        if set == "+OK" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the primary never took a write: {set}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + WAIT;
    while replica.info("keyspace").await.unwrap().get("db0").is_none() {
        assert!(
            Instant::now() < deadline,
            "the write never reached the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The replica's link arrived on the primary's TLS port.
    let clients = primary.command(&["CLIENT", "LIST"]).await.unwrap();
    let clients = shoal_testkit::resp::text(&clients).unwrap();
    let links = clients
        .lines()
        .filter(|l| l.contains(&format!("laddr=127.0.0.1:{primary_tls}")))
        .count();
    assert!(links >= 1, "{clients}");
}

#[tokio::test]
async fn protected_mode_answers_an_outsider_over_tls() {
    let certs = certs("tls-protected-mode");
    let (_node, tls_port) = start_node(&certs, &[]).await;
    // 127.0.0.2 stands for another machine (Redis counts only 127.0.0.1 and ::1 as local).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))
        .unwrap();
    let tcp = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], tls_port)))
        .await
        .unwrap();
    let connector =
        tokio_rustls::TlsConnector::from(client_config(&certs.ca.cert, Some(&certs.client)));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let mut denied = String::new();
    let _ = tokio::time::timeout(WAIT, tls.read_to_string(&mut denied)).await;
    assert_eq!(denied, shoal_frontdoor::DENIED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_survives_the_loss_of_a_primary() {
    let mut certs = certs("tls-failover");
    certs.server = certs.ca.node("node").unwrap();
    let start = |name: String, extra: Vec<String>| {
        let tls_port = free_port().unwrap();
        let mut args = tls_args(&certs, tls_port);
        args.extend(["--tls-replication", "yes", "--threads", "1"].map(String::from));
        args.extend(["--controller", "--node-timeout", "2000"].map(String::from));
        args.extend(extra);
        let spec = tls_node_spec(&certs, &name, &format!("{name}.log"), args);
        async move { (NodeProcess::start(spec, WAIT).await.unwrap(), tls_port) }
    };
    let founder = start(
        "node-0".into(),
        ["--cluster-enabled", "--replicas", "1"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let seed = vec!["--cluster-join".to_string(), founder.0.resp_addr()];
    let mut nodes = vec![founder];
    for i in 1..3 {
        nodes.push(start(format!("node-{i}"), seed.clone()).await);
    }
    // A replica whose link to its primary's TLS port is up.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (replica, primary_tls) = 'found: loop {
        for (index, (node, _)) in nodes.iter().enumerate() {
            let info = node.info("replication").await.unwrap();
            if info.get("role") == Some("slave") && info.get("master_link_status") == Some("up") {
                break 'found (index, info.u64("master_port").unwrap() as u16);
            }
        }
        assert!(Instant::now() < deadline, "no replica followed its primary");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let primary = nodes
        .iter()
        .position(|(_, tls)| *tls == primary_tls)
        .expect("the primary announces its TLS port");

    // Writes through the smart client over TLS, then the replica catches up.
    let client_tls = client_config(&certs.ca.cert, Some(&certs.client));
    let config = shoal_client::ClientConfig::new([format!("127.0.0.1:{}", nodes[0].1)])
        .with_cluster_secret(cluster_secret())
        .with_tls(client_tls.clone(), None)
        .with_max_attempts(20);
    let client = shoal_client::Client::connect(config).await.unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        let deadline = Instant::now() + WAIT;
        while client.set(key, key, None).await.is_err() {
            assert!(Instant::now() < deadline, "the cluster never took {key}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let offset = |index: usize| {
        let node = &nodes[index].0;
        async move {
            let info = node.info("replication").await.unwrap();
            info.u64("master_repl_offset")
                .or_else(|| info.u64("slave_repl_offset"))
                .unwrap_or(0)
        }
    };
    let deadline = Instant::now() + WAIT;
    while offset(replica).await < offset(primary).await {
        assert!(Instant::now() < deadline, "the replica never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    nodes[primary].0.kill().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = nodes[replica].0.info("replication").await.unwrap();
        if info.get("role") == Some("master") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica was never promoted: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every key is still there, read over TLS through the new map.
    for key in &keys {
        let deadline = Instant::now() + Duration::from_secs(20);
        let value = loop {
            match client.get(key).await {
                Ok(value) => break value,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{key}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        assert_eq!(value.as_deref(), Some(key.as_bytes()), "{key}");
    }
}
