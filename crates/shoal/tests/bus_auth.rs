//! The cluster bus against a process that does not know the cluster secret: real `shoal
//! server` processes (shoal-testkit), attacked over loopback with garbage, forged requests
//! (a join, a removal, a heartbeat, a Raft vote at a huge term, reads of the topology) and
//! bytes captured from a member's real exchange; and a node given another secret.
//!
//! The tests take turns (one cluster at a time), each bounded by [`TEST_LIMIT`].

use std::future::Future;
use std::time::{Duration, Instant};

use openraft::{CommittedLeaderId, LogId, Vote};
use shoal_cluster::bus::{self, BusError, Heartbeat, NodeStats, RaftRequest, Reply, Request};
use shoal_cluster::{BusSecret, NodeId, NodeInfo};
use shoal_testkit::{ClusterOptions, NodePorts, NodeProcess, NodeSpec, Router, TestCluster, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::metric;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// No test may run longer than this.
const TEST_LIMIT: Duration = Duration::from_secs(90);

/// What the node's log says once per peer (every few seconds) about refused connections.
const REFUSAL_LINE: &str = "refused a connection that did not prove the cluster secret";

/// The Raft term of the forged vote.
const ATTACK_TERM: u64 = 1_000_000_000_000;

/// The node's hello: 8 bytes of magic and a 32-byte nonce.
const HELLO: usize = 40;

/// The node's verdict on a proof: one byte and a 32-byte MAC.
const VERDICT: usize = 33;

async fn run_test(name: &str, body: impl Future<Output = ()>) {
    shoal_testkit::run_alone(name, TEST_LIMIT, body).await;
}

/// `request` as a bus frame (its length, then its JSON).
async fn frame(request: &Request) -> Vec<u8> {
    let mut bytes = Vec::new();
    bus::write_frame(&mut bytes, request).await.unwrap();
    bytes
}

/// Sends `bytes` on a fresh connection to `addr` without any handshake, and returns all the
/// node sends back until it closes the connection (which it must within 5 s).
async fn unauthenticated(addr: &str, bytes: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The node may close before all of it is written: what it read was enough.
    let _ = stream.write_all(bytes).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    match read.await {
        Ok(_) => answer,
        Err(_) => panic!(
            "the node kept a connection open after {} bytes",
            answer.len()
        ),
    }
}

/// Asserts that `answer` is nothing but the node's hello, and perhaps its refusal (a zero
/// verdict): no frame, nothing the sender could use.
fn assert_refused(what: &str, answer: &[u8]) {
    assert!(
        answer.len() == HELLO || answer.len() == HELLO + VERDICT,
        "{what}: the node sent {} bytes: {answer:?}",
        answer.len()
    );
    assert_eq!(&answer[..8], b"SHOALBS1", "{what}");
    assert!(
        answer[HELLO..].iter().all(|b| *b == 0),
        "{what}: a verdict other than a refusal: {answer:?}"
    );
}

/// Reads `n` bytes from `from`, writes them to `to`, and returns them.
async fn pass(from: &mut TcpStream, to: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    from.read_exact(&mut buf).await.unwrap();
    to.write_all(&buf).await.unwrap();
    buf
}

/// A member's real `Status` exchange with the bus at `upstream`, made through a tap that
/// keeps every byte the member sent. Returns those bytes.
async fn capture_status_exchange(upstream: &str, secret: &BusSecret) -> Vec<u8> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tap_addr = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    let tap = tokio::spawn(async move {
        let (mut member, _) = listener.accept().await.unwrap();
        let mut node = TcpStream::connect(&upstream).await.unwrap();
        let mut sent = Vec::new();
        // Hello, proof, verdict; then the request frame and its reply.
        pass(&mut node, &mut member, HELLO).await;
        sent.extend(pass(&mut member, &mut node, 72).await);
        pass(&mut node, &mut member, VERDICT).await;
        let length = pass(&mut member, &mut node, 4).await;
        let body = u32::from_be_bytes(length[..].try_into().unwrap()) as usize;
        sent.extend(length);
        sent.extend(pass(&mut member, &mut node, body).await);
        let length = pass(&mut node, &mut member, 4).await;
        let body = u32::from_be_bytes(length[..].try_into().unwrap()) as usize;
        pass(&mut node, &mut member, body).await;
        sent
    });
    let reply = bus::call(
        &tap_addr,
        &secret.clone().into(),
        &Request::Status,
        Duration::from_secs(5),
    )
    .await
    .expect("a member gets the status through the tap");
    assert!(
        matches!(reply, Reply::Status(_) | Reply::NotLeader { .. }),
        "{reply:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), tap)
        .await
        .expect("the tap ends with the exchange")
        .unwrap()
}

/// A field of a node's `INFO cluster`, as a number.
async fn info_u64(node: &NodeProcess, field: &str) -> u64 {
    let info = node.info("cluster").await.unwrap();
    info.u64(field)
        .unwrap_or_else(|| panic!("INFO cluster of {} has no {field}: {info:?}", node.name()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_secret_the_bus_gives_nothing_and_changes_nothing() {
    run_test(
        "without_the_secret_the_bus_gives_nothing_and_changes_nothing",
        async {
            let cluster = TestCluster::start(SHOAL, 3, 0, ClusterOptions::default())
                .await
                .expect("the cluster starts");
            let router = Router::new(cluster.resp_addrs(), Duration::from_secs(2))
                .await
                .unwrap();
            let keys: Vec<String> = (0..300).map(|i| format!("kept:{i}")).collect();
            for key in &keys {
                let set = router
                    .call(key.as_bytes(), &[&["SET", key.as_str(), key.as_str()]])
                    .await
                    .unwrap();
                assert_eq!(set.last(), &Value::Simple(b"OK".to_vec()), "SET {key}");
            }
            let before = cluster.status().await.unwrap();
            let leader_index = cluster.index_of(before.leader).unwrap();
            let leader = cluster.node(leader_index);
            let victim = before
                .map
                .nodes
                .keys()
                .copied()
                .find(|id| *id != before.leader)
                .unwrap();
            let mut terms = Vec::new();
            for node in cluster.nodes() {
                terms.push(info_u64(node, "shoal_controller_term").await);
            }
            let failures_before = info_u64(leader, "shoal_bus_auth_failures").await;
            let attack_started = Instant::now();

            // A member's real exchange, captured: its bytes are worth nothing on another
            // connection.
            let captured = capture_status_exchange(&leader.bus_addr(), &cluster.secret()).await;
            let fake = NodeId(0x0bad_f00d);
            let vote = openraft::raft::VoteRequest::new(
                Vote::new(ATTACK_TERM, fake.0),
                Some(LogId::new(
                    CommittedLeaderId::new(ATTACK_TERM, fake.0),
                    1 << 40,
                )),
            );
            let forged = [
                (
                    "a join",
                    Request::Join(NodeInfo {
                        controller: true,
                        ..NodeInfo::local(fake, 1)
                    }),
                ),
                ("a removal", Request::RemoveNode(victim)),
                (
                    "a heartbeat",
                    Request::Heartbeat(Heartbeat {
                        node: victim,
                        epoch: before.map.epoch,
                        stats: NodeStats::default(),
                        hot_keys_version: 0,
                    }),
                ),
                (
                    "a Raft vote at term 10^12",
                    Request::Raft(before.leader, RaftRequest::Vote(vote)),
                ),
                ("a forced failover", Request::Failover(victim)),
                ("a status request", Request::Status),
                ("a map request", Request::GetMap),
            ];
            let mut attempts = 0;
            for (what, request) in &forged {
                assert_refused(
                    what,
                    &unauthenticated(&leader.bus_addr(), &frame(request).await).await,
                );
                attempts += 1;
            }
            let mut garbage = vec![0u8; 64 * 1024];
            for (i, byte) in garbage.iter_mut().enumerate() {
                *byte = (i * 7 + 3) as u8;
            }
            for (what, bytes) in [
                ("garbage", garbage),
                ("a replayed member's exchange", captured),
                ("the proof's magic and zeros", {
                    let mut forged = b"SHOALBC1".to_vec();
                    forged.extend([0u8; 64]);
                    forged
                }),
                ("a frame announcing 4 GB", u32::MAX.to_be_bytes().to_vec()),
            ] {
                assert_refused(what, &unauthenticated(&leader.bus_addr(), &bytes).await);
                attempts += 1;
            }
            // With a secret of its own, the attacker does not get past the handshake either.
            let guess = BusSecret::new(*b"an-attacker-s-guess-at-the-secret-0123").unwrap();
            let refused = bus::call(
                &leader.bus_addr(),
                &guess.into(),
                &Request::Status,
                Duration::from_secs(5),
            )
            .await
            .unwrap_err();
            assert!(matches!(refused, BusError::Auth { .. }), "{refused}");
            attempts += 1;

            // Nothing changed: the same map, no Raft term taken from the forged vote (an
            // election of its own under a busy machine's scheduling may still move a term by
            // one: the forged vote's would have jumped to 10^12), every key.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = cluster.status().await.unwrap();
            assert_eq!(after.map, before.map, "the map is unchanged");
            for (node, before) in cluster.nodes().iter().zip(&terms) {
                let term = info_u64(node, "shoal_controller_term").await;
                assert!(
                    term >= *before && term < ATTACK_TERM,
                    "{}'s Raft term went from {before} to {term}",
                    node.name()
                );
                if term != *before {
                    eprintln!(
                        "{}: an election of its own, term {before} -> {term}",
                        node.name()
                    );
                }
            }
            for key in &keys {
                let get = router
                    .call(key.as_bytes(), &[&["GET", key.as_str()]])
                    .await
                    .unwrap();
                assert_eq!(
                    get.last(),
                    &Value::Bulk(key.as_bytes().to_vec()),
                    "GET {key}"
                );
            }
            // Counted (INFO and /metrics agree), and logged once per peer every few seconds.
            let failures = info_u64(leader, "shoal_bus_auth_failures").await - failures_before;
            assert!(
                failures >= attempts,
                "{failures} of {attempts} attempts counted"
            );
            assert!(metric(leader, "shoal_cluster_bus_auth_failures_total").await >= failures,);
            let log = std::fs::read_to_string(leader.log_path()).unwrap();
            let lines = log.matches(REFUSAL_LINE).count();
            let windows = attack_started.elapsed().as_secs() / 5 + 1;
            assert!(
                lines >= 1 && lines as u64 <= windows,
                "{lines} log lines for {attempts} attempts in {:?}:\n{log}",
                attack_started.elapsed()
            );
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_another_secret_cannot_join() {
    run_test("a_node_with_another_secret_cannot_join", async {
        let cluster = TestCluster::start(SHOAL, 1, 0, ClusterOptions::default())
            .await
            .expect("the cluster starts");
        let founder = cluster.node(0);
        let failures_before = info_u64(founder, "shoal_bus_auth_failures").await;
        let other_secret = cluster.dir().join("other-secret");
        BusSecret::create(&other_secret).unwrap();
        let name = "intruder".to_string();
        let intruder = NodeProcess::spawn(NodeSpec {
            log: cluster.dir().join("intruder.log"),
            name,
            binary: SHOAL.into(),
            ports: NodePorts::reserve_without_http().unwrap(),
            args: [
                "--threads",
                "1",
                "--cluster-join",
                &founder.resp_addr(),
                "--join-timeout",
                "3",
                "--cluster-secret-file",
                other_secret.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            env: Vec::new(),
            nice: 0,
            password: None,
            dir: None,
        })
        .unwrap();
        let status = intruder.wait_exit(Duration::from_secs(30)).await.unwrap();
        assert!(!status.success(), "the intruder exited with {status}");
        let log = std::fs::read_to_string(intruder.log_path()).unwrap();
        assert!(
            log.contains("the node refused this process's cluster secret"),
            "{log}"
        );
        let status = cluster.status().await.unwrap();
        assert_eq!(status.map.nodes.len(), 1, "the cluster does not list it");
        assert!(info_u64(founder, "shoal_bus_auth_failures").await > failures_before);
    })
    .await;
}
