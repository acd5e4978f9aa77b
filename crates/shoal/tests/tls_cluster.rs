//! TLS on the cluster bus from the binary (`--tls-cluster yes`): a cluster whose bus, RESP
//! links and clients all speak TLS fails over when its primary dies; its bus answers plain TCP
//! with no bus hello and refuses TLS without a client certificate (and, inside TLS, a wrong
//! secret); `shoal cluster status` needs the TLS flags; the proxy and the smart client follow
//! the map over TLS; the bus's certificate reloads on `SIGHUP`; a node whose bus does not
//! speak the cluster's language cannot join, and says why; `tls-cluster`'s settings are
//! checked at start.

mod tls_common;

use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_cluster::bus::{BusConnection, BusError, Reply, Request};
use shoal_cluster::{BusCredentials, BusSecret, BusTlsConnector};
use shoal_testkit::{NodeProcess, cluster_secret, cluster_secret_file, free_port};
use tls_common::{
    Certs, SHOAL, WAIT, certs, client_config, path, served_certificate, spawn_shoal, tls_args,
    tls_node_spec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a cluster may take to form, or to fail over.
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// The flags of a node whose bus speaks TLS, with `certs`' files: `--tls-cluster yes`, and a
/// TLS port (`tls_port`) with `--tls-replication yes` unless `tls_port` is 0.
fn tls_cluster_args(certs: &Certs, tls_port: u16) -> Vec<String> {
    let mut args = match tls_port {
        0 => vec![
            "--tls-cert-file".to_string(),
            path(&certs.server.cert),
            "--tls-key-file".to_string(),
            path(&certs.server.key),
            "--tls-ca-cert-file".to_string(),
            path(&certs.ca.cert),
        ],
        port => {
            let mut args = tls_args(certs, port);
            args.extend(["--tls-replication", "yes"].map(String::from));
            args
        }
    };
    args.extend(["--tls-cluster", "yes"].map(String::from));
    args
}

/// A single node founding a cluster whose bus speaks TLS (no TLS port), named `name`.
async fn tls_bus_founder(certs: &Certs, name: &str) -> NodeProcess {
    let mut args = tls_cluster_args(certs, 0);
    args.extend(["--cluster-enabled", "--threads", "1"].map(String::from));
    let spec = tls_node_spec(certs, name, &format!("{name}.log"), args);
    NodeProcess::start(spec, WAIT).await.unwrap()
}

/// Bus credentials of these tests: the kit's secret, over TLS with `config`.
fn bus_credentials(config: Arc<rustls::ClientConfig>) -> BusCredentials {
    BusCredentials::new(cluster_secret()).with_tls(BusTlsConnector::new(config))
}

/// The flags with which `shoal cluster status` speaks TLS on the bus, as an application
/// showing `certs`' client certificate.
fn status_tls_flags(certs: &Certs) -> Vec<String> {
    [
        "--tls-cluster",
        "yes",
        "--tls-cert-file",
        &path(&certs.client.cert),
        "--tls-key-file",
        &path(&certs.client.key),
        "--tls-ca-cert-file",
        &path(&certs.ca.cert),
    ]
    .map(String::from)
    .to_vec()
}

/// `shoal cluster status` through the node at `node` (RESP), with `flags` after the secret.
fn cluster_status(node: &str, flags: &[String]) -> Output {
    Command::new(SHOAL)
        .args(["cluster", "status", "--node", node])
        .args(["--cluster-secret-file", &path(cluster_secret_file())])
        .args(flags)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// What a plain TCP connection to `bus` reads after sending `bytes`, until the node closes
/// it (which it must within [`WAIT`]).
async fn plain_exchange(bus: &str, bytes: &[u8]) -> Vec<u8> {
    let mut tcp = TcpStream::connect(bus).await.unwrap();
    if !bytes.is_empty() {
        tcp.write_all(bytes).await.unwrap();
    }
    let mut got = Vec::new();
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "the bus kept a plain connection open: {got:?}"
    );
    got
}

/// Polls `check` every 50 ms until it holds, failing with `what` after `timeout`.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_a_tls_bus_fails_over_and_its_bus_takes_only_members() {
    let mut certs = certs("tls-cluster-failover");
    // A node shows its certificate as a client too (on the bus and to its primary).
    certs.server = certs.ca.node("node").unwrap();
    let start = |name: String, extra: Vec<String>| {
        let tls_port = free_port().unwrap();
        let mut args = tls_cluster_args(&certs, tls_port);
        args.extend(["--controller", "--node-timeout", "2000", "--threads", "1"].map(String::from));
        args.extend(extra);
        let spec = tls_node_spec(&certs, &name, &format!("{name}.log"), args);
        async move { (NodeProcess::start(spec, WAIT).await.unwrap(), tls_port) }
    };
    let founder = start(
        "node-0".into(),
        ["--cluster-enabled", "--replicas", "2"]
            .map(String::from)
            .to_vec(),
    )
    .await;
    let seed = vec!["--cluster-join".to_string(), founder.0.resp_addr()];
    let mut nodes = vec![founder];
    for i in 1..3 {
        nodes.push(start(format!("node-{i}"), seed.clone()).await);
    }
    // One shard: a primary and two replicas whose links (over TLS) are up.
    let linked = || async {
        let mut replicas = 0;
        for (node, _) in &nodes {
            let info = node.info("replication").await.unwrap();
            replicas += usize::from(
                info.get("role") == Some("slave") && info.get("master_link_status") == Some("up"),
            );
        }
        replicas == 2
    };
    until(
        "two replicas never followed their primary",
        CLUSTER_WAIT,
        linked,
    )
    .await;
    let info = nodes[1].0.info("replication").await.unwrap();
    let primary_tls = info.u64("master_port").unwrap() as u16;
    let primary = nodes
        .iter()
        .position(|(_, tls)| *tls == primary_tls)
        .expect("the primary announces its TLS port");

    // The bus speaks TLS only.
    let bus = nodes[primary].0.bus_addr();
    let member_tls = client_config(&certs.ca.cert, Some(&certs.client));
    let silent = plain_exchange(&bus, b"").await;
    assert!(silent.is_empty(), "no bus hello in plain text: {silent:?}");
    let garbage = plain_exchange(&bus, b"SHOALBC1 but plain text, not a TLS ClientHello").await;
    assert!(!garbage.windows(8).any(|w| w == b"SHOALBS1"), "{garbage:?}");
    assert!(
        garbage.is_empty() || garbage[0] == 0x15,
        "a TLS alert or nothing: {garbage:?}"
    );
    let plain = BusCredentials::new(cluster_secret());
    let refused = BusConnection::connect(&bus, &plain, Duration::from_secs(1))
        .await
        .err()
        .expect("a plain process cannot talk to a TLS bus");
    assert!(matches!(refused, BusError::NoHello { .. }), "{refused}");
    let anonymous = bus_credentials(client_config(&certs.ca.cert, None));
    let refused = BusConnection::connect(&bus, &anonymous, WAIT)
        .await
        .err()
        .expect("TLS without a client certificate is refused");
    assert!(matches!(refused, BusError::Tls { .. }), "{refused}");
    let guess = BusSecret::new(*b"a-certified-guess-at-the-cluster-secret").unwrap();
    let with_guess = BusCredentials::new(guess).with_tls(BusTlsConnector::new(member_tls.clone()));
    let refused = BusConnection::connect(&bus, &with_guess, WAIT)
        .await
        .err()
        .expect("a certificate does not replace the secret");
    assert!(matches!(refused, BusError::Auth { .. }), "{refused}");
    let member = bus_credentials(member_tls.clone());
    let mut connection = BusConnection::connect(&bus, &member, WAIT).await.unwrap();
    match connection.call(&Request::GetMap, WAIT).await.unwrap() {
        Reply::Map(map) => assert_eq!(map.nodes.len(), 3),
        other => panic!("GetMap answered {other:?}"),
    }
    drop(connection);
    // The silent connection (timed out), the garbage, the anonymous TLS and the guess: counted;
    // the plain process that gave up first is a probe (it said nothing).
    let counted = || async {
        let info = nodes[primary].0.info("cluster").await.unwrap();
        info.u64("shoal_bus_auth_failures").unwrap_or(0) >= 4
    };
    until("the bus did not count its refusals", WAIT, counted).await;
    match nodes[0]
        .0
        .command(&["CONFIG", "GET", "tls-cluster"])
        .await
        .unwrap()
    {
        shoal_testkit::Value::Array(pair) if pair.len() == 2 => {
            assert_eq!(shoal_testkit::resp::text(&pair[1]).as_deref(), Some("yes"))
        }
        other => panic!("CONFIG GET tls-cluster answered {other:?}"),
    }

    // `shoal cluster status` speaks TLS to the bus with the flags, and says what is wrong
    // without them.
    let flags = status_tls_flags(&certs);
    let status = cluster_status(&nodes[0].0.resp_addr(), &flags);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{shown}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(shown.contains("1 shards, 3 nodes (3 healthy)"), "{shown}");
    let status = cluster_status(&nodes[0].0.resp_addr(), &[]);
    let error = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success());
    assert!(error.contains("tls-cluster yes"), "{error}");

    // The smart client follows the map on the TLS bus and writes over TLS.
    let config = shoal_client::ClientConfig::new([format!("127.0.0.1:{}", nodes[0].1)])
        .with_cluster_secret(cluster_secret())
        .with_tls(member_tls.clone(), None)
        .with_bus_tls(member_tls.clone())
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

    // The proxy (--tls-cluster yes) follows the map on the TLS bus too.
    let proxy_port = free_port().unwrap();
    let mut args = vec!["proxy".to_string(), "--cluster".into()];
    args.push(format!("127.0.0.1:{}", nodes[0].1));
    args.extend(["--cluster-secret-file".into(), path(cluster_secret_file())]);
    args.extend(["--port".to_string(), proxy_port.to_string()]);
    args.extend(["--threads", "1"].map(String::from));
    args.extend(flags.iter().cloned());
    let proxy = spawn_shoal(&certs, "tls-bus-proxy", "proxy.log", args);
    let proxy_addr = format!("127.0.0.1:{proxy_port}");
    let deadline = Instant::now() + WAIT;
    let got = loop {
        let reply =
            shoal_testkit::resp::command_as(&proxy_addr, None, &["GET", "key-7"], WAIT).await;
        if let Ok(value) = reply {
            break value;
        }
        assert!(proxy.is_running(), "{}", proxy.log_tail(20));
        assert!(Instant::now() < deadline, "{}", proxy.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(shoal_testkit::resp::text(&got).as_deref(), Some("key-7"));

    // Both replicas catch up, then the primary dies.
    let offset = |index: usize| {
        let node = &nodes[index].0;
        async move {
            let info = node.info("replication").await.unwrap();
            info.u64("master_repl_offset")
                .or_else(|| info.u64("slave_repl_offset"))
                .unwrap_or(0)
        }
    };
    let target = offset(primary).await;
    for replica in (0..3).filter(|i| *i != primary) {
        until("a replica never caught up", WAIT, || async {
            offset(replica).await >= target
        })
        .await;
    }
    nodes[primary].0.kill().unwrap();
    let promoted = || async {
        for (index, (node, _)) in nodes.iter().enumerate() {
            if index != primary
                && node.info("replication").await.unwrap().get("role") == Some("master")
            {
                return true;
            }
        }
        false
    };
    until("no replica was promoted", CLUSTER_WAIT, promoted).await;

    // Writes work again over TLS, and every key is still there.
    let deadline = Instant::now() + CLUSTER_WAIT;
    while let Err(e) = client.set("after-failover", "written", None).await {
        assert!(
            Instant::now() < deadline,
            "no write after the failover: {e}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for key in keys.iter().chain([&"after-failover".to_string()]) {
        let deadline = Instant::now() + CLUSTER_WAIT;
        let value = loop {
            match client.get(key).await {
                Ok(value) => break value,
                Err(e) => {
                    assert!(Instant::now() < deadline, "{key}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let expected = if key == "after-failover" {
            "written"
        } else {
            key.as_str()
        };
        assert_eq!(value.as_deref(), Some(expected.as_bytes()), "{key}");
    }
}

#[tokio::test]
async fn the_bus_certificate_reloads_on_sighup() {
    let mut certs = certs("tls-cluster-reload");
    certs.server = certs.ca.node("node-1").unwrap();
    // No TLS port: the bus is the only TLS listener.
    let node = tls_bus_founder(&certs, "reloading").await;
    let bus_port = node.ports().bus;
    let member_tls = client_config(&certs.ca.cert, Some(&certs.client));
    assert_eq!(
        served_certificate(bus_port, member_tls.clone()).await,
        certs.server.der
    );
    let second = certs.ca.node("node-2").unwrap();
    std::fs::copy(&second.cert, &certs.server.cert).unwrap();
    std::fs::copy(&second.key, &certs.server.key).unwrap();
    node.process().signal(libc::SIGHUP).unwrap();
    until(
        "SIGHUP did not reload the bus's certificate",
        WAIT,
        || async { served_certificate(bus_port, member_tls.clone()).await == second.der },
    )
    .await;
    // The node goes on talking to its own bus (heartbeats) with its new certificate, and
    // members still get in.
    let member = bus_credentials(member_tls);
    let mut connection = BusConnection::connect(&node.bus_addr(), &member, WAIT)
        .await
        .unwrap();
    let reply = connection.call(&Request::GetMap, WAIT).await.unwrap();
    assert!(matches!(reply, Reply::Map(_)), "{reply:?}");
    let log = node.log_tail(50);
    assert!(log.contains("TLS certificates reloaded"), "{log}");
    let leased = || async {
        let health = node.command(&["CLUSTER", "INFO"]).await.unwrap();
        let health = shoal_testkit::resp::text(&health).unwrap();
        health.contains("cluster_state:ok") && health.contains("shoal_lease:controller")
    };
    until("the node never held its lease", WAIT, leased).await;
}

#[tokio::test]
async fn a_node_whose_bus_does_not_match_the_cluster_s_cannot_join_and_says_why() {
    let mut certs = certs("tls-cluster-mismatch");
    certs.server = certs.ca.node("node").unwrap();
    let tls_founder = tls_bus_founder(&certs, "tls-founder").await;
    let plain_founder = NodeProcess::start(
        tls_node_spec(
            &certs,
            "plain-founder",
            "plain-founder.log",
            ["--cluster-enabled", "--threads", "1"]
                .map(String::from)
                .to_vec(),
        ),
        WAIT,
    )
    .await
    .unwrap();
    let join = |name: &str, seed: String, tls: bool| {
        let mut args = vec!["--cluster-join".to_string(), seed];
        args.extend(["--join-timeout", "2", "--threads", "1"].map(String::from));
        if tls {
            args.extend(tls_cluster_args(&certs, 0));
        }
        NodeProcess::spawn(tls_node_spec(&certs, name, &format!("{name}.log"), args)).unwrap()
    };
    let plain_joiner = join("plain-joiner", tls_founder.resp_addr(), false);
    let tls_joiner = join("tls-joiner", plain_founder.resp_addr(), true);
    for (joiner, reasons) in [
        (
            &plain_joiner,
            ["sent no cluster bus hello", "sent no cluster bus hello"],
        ),
        // The plain bus's hello ends the TLS handshake, or (if the node's reset came first)
        // the closed connection does.
        (
            &tls_joiner,
            ["does not speak TLS on its bus", "its bus may not speak TLS"],
        ),
    ] {
        joiner
            .wait_exit(Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{} did not give up: {e}", joiner.name()));
        let log = std::fs::read_to_string(joiner.log_path()).unwrap();
        assert!(log.contains("could not join the cluster"), "{log}");
        assert!(reasons.iter().any(|r| log.contains(r)), "{log}");
    }
    for founder in [&tls_founder, &plain_founder] {
        let nodes = founder.command(&["CLUSTER", "NODES"]).await.unwrap();
        let nodes = shoal_testkit::resp::text(&nodes).unwrap();
        assert_eq!(nodes.lines().count(), 1, "{nodes}");
    }
}

#[test]
fn tls_cluster_needs_a_certificate_a_key_and_a_ca() {
    let certs = certs("tls-cluster-settings");
    let start = |extra: &[String]| {
        let output = Command::new(SHOAL)
            .args([
                "server",
                "--port",
                "0",
                "--http-port",
                "0",
                "--cluster-enabled",
            ])
            .args(["--tls-cluster", "yes"])
            .args(["--cluster-secret-file", &path(cluster_secret_file())])
            .args(extra)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = start(&[]);
    assert!(
        error.contains("invalid value for 'tls-cluster': needs tls-cert-file and tls-key-file"),
        "{error}"
    );
    let cert_and_key = [
        "--tls-cert-file".to_string(),
        path(&certs.server.cert),
        "--tls-key-file".to_string(),
        path(&certs.server.key),
    ];
    let error = start(&cert_and_key);
    assert!(
        error
            .contains("invalid value for 'tls-cluster': needs tls-ca-cert-file or tls-ca-cert-dir"),
        "{error}"
    );
    // A CA file that does not exist stops the start with its name.
    let mut missing_ca = cert_and_key.to_vec();
    missing_ca.extend([
        "--tls-ca-cert-file".to_string(),
        "/nonexistent/ca.crt".into(),
    ]);
    let error = start(&missing_ca);
    assert!(error.contains("/nonexistent/ca.crt"), "{error}");
    // `shoal cluster status --tls-cluster yes` without a certificate says what it needs.
    let status = cluster_status("127.0.0.1:1", &["--tls-cluster".into(), "yes".into()]);
    let error = String::from_utf8_lossy(&status.stderr);
    assert!(!status.status.success());
    assert!(
        error.contains("--tls-cluster yes needs --tls-cert-file and --tls-key-file"),
        "{error}"
    );
}

/// A cluster with no plain port at all (`--port 0`): a node joins through the founder's TLS
/// port (its seed lookup over TLS), the map names TLS ports, and `shoal cluster status --tls`
/// asks a TLS port for the bus; a node without `tls-replication` cannot drop its plain port.
#[tokio::test]
async fn a_cluster_without_plain_ports_forms_over_tls() {
    let mut certs = certs("tls-only-cluster");
    certs.server = certs.ca.node("node").unwrap();
    let start = |name: &str, extra: &[&str]| {
        let tls_port = free_port().unwrap();
        // A bus port of its own (the default, the TLS port + 10000, may be another test's).
        let bus_port = free_port().unwrap().to_string();
        let mut args = vec!["server".to_string(), "--port".into(), "0".into()];
        args.extend(["--cluster-port".to_string(), bus_port]);
        args.extend(tls_cluster_args(&certs, tls_port));
        args.extend(["--http-port", "0", "--threads", "1"].map(String::from));
        args.extend(["--cluster-secret-file", &path(cluster_secret_file())].map(String::from));
        args.extend(extra.iter().map(|a| a.to_string()));
        (
            spawn_shoal(&certs, name, &format!("{name}.log"), args),
            tls_port,
        )
    };
    let (founder, founder_port) = start("founder", &["--cluster-enabled", "--replicas", "1"]);
    let seed = format!("127.0.0.1:{founder_port}");
    // The founder listens before the joiner picks its ports (which could otherwise be the
    // founder's, not yet taken).
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(&seed).await.is_err() {
        assert!(founder.is_running(), "{}", founder.log_tail(20));
        assert!(Instant::now() < deadline, "{}", founder.log_tail(20));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (joiner, joiner_port) = start("joiner", &["--cluster-join", &seed]);
    let mut flags = vec!["--tls".to_string()];
    flags.extend(status_tls_flags(&certs));
    let deadline = Instant::now() + CLUSTER_WAIT;
    let shown = loop {
        let status = cluster_status(&seed, &flags);
        let shown = String::from_utf8_lossy(&status.stdout).into_owned();
        if status.status.success() && shown.contains("1 shards, 2 nodes (2 healthy)") {
            break shown;
        }
        assert!(
            founder.is_running() && joiner.is_running(),
            "founder (running: {}):\n{}\njoiner (running: {}):\n{}",
            founder.is_running(),
            founder.log_tail(20),
            joiner.is_running(),
            joiner.log_tail(20)
        );
        assert!(
            Instant::now() < deadline,
            "{shown}{}\n{}",
            String::from_utf8_lossy(&status.stderr),
            joiner.log_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for port in [founder_port, joiner_port] {
        assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    }
    // Without --tls the lookup speaks plain RESP to a TLS port, and fails.
    let plain = cluster_status(&seed, &flags[1..]);
    assert!(!plain.status.success());

    // Without tls-replication a cluster node keeps its plain port, and says why.
    let refused = Command::new(SHOAL)
        .args(["server", "--port", "0", "--cluster-enabled"])
        .args(tls_cluster_args(&certs, free_port().unwrap())[..8].iter())
        .output()
        .unwrap();
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(error.contains("needs tls-replication yes"), "{error}");
}
