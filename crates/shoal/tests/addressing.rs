//! What a node announces to its cluster, from the outside: a node behind a port mapping (here
//! a relay in front of its RESP and bus ports, as a container's published ports) joins and
//! serves through the announced address, ports and hostname, and a node bound to every address
//! without saying which one to announce refuses to start.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_cluster::key_slot;
use shoal_testkit::resp::text;
use shoal_testkit::{NodePorts, NodeProcess, NodeSpec, Relay, TestDir, Value};

mod common;
const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// How long the cluster may take to take the node in.
const SETTLE: Duration = Duration::from_secs(30);

/// A node's spec as the tests here start them ([`common::node_spec`]).
fn spec(dir: &TestDir, name: &str, ports: NodePorts, args: &[&str]) -> NodeSpec {
    common::node_spec(SHOAL, dir, name, ports, args)
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_port_mapping_is_reached_at_what_it_announces() {
    let dir = TestDir::new("announced_address").unwrap();
    let founder = NodeProcess::start(
        spec(
            &dir,
            "founder",
            NodePorts::reserve_without_http().unwrap(),
            &["--replicas", "0"],
        ),
        SETTLE,
    )
    .await
    .unwrap();
    let seed = founder.resp_addr();

    // The mapped node listens on every address, on ports nobody else is told about; the
    // relays stand for the port mapping in front of it.
    let ports = NodePorts::reserve_without_http().unwrap();
    let resp_relay = Relay::start(local(ports.resp)).unwrap();
    let bus_relay = Relay::start(local(ports.bus)).unwrap();
    let announced_port = resp_relay.addr().port().to_string();
    let announced_bus = bus_relay.addr().port().to_string();
    let mapped = NodeProcess::start(
        spec(
            &dir,
            "mapped",
            ports,
            &[
                "--bind",
                "0.0.0.0",
                "--cluster-announce-ip",
                "127.0.0.1",
                "--cluster-announce-port",
                &announced_port,
                "--cluster-announce-bus-port",
                &announced_bus,
                "--cluster-announce-hostname",
                "mapped.shoal.test",
                "--controller",
                "--cluster-join",
                &seed,
            ],
        ),
        SETTLE,
    )
    .await
    .unwrap();
    // A third eligible node makes three voters: the leader must add the mapped node to the
    // controller through its announced bus port.
    let _third = NodeProcess::start(
        spec(
            &dir,
            "third",
            NodePorts::reserve_without_http().unwrap(),
            &["--controller", "--cluster-join", &seed],
        ),
        SETTLE,
    )
    .await
    .unwrap();

    let line_start = format!("127.0.0.1:{announced_port}@{announced_bus},mapped.shoal.test ");
    // Taken in: the founder lists it at its announced address with the cluster whole, the
    // leader has reached it through its announced bus port, and its own view (which it takes
    // up a moment after the founder's) says the same of itself.
    let started = Instant::now();
    let nodes = loop {
        let nodes = common::cluster_nodes(&founder).await;
        let own = common::cluster_nodes(&mapped).await;
        let cluster_ok = founder
            .command(&["CLUSTER", "INFO"])
            .await
            .ok()
            .and_then(|v| text(&v))
            .is_some_and(|t| t.contains("cluster_state:ok"));
        let own_line_shown = own
            .lines()
            .any(|l| l.contains(&line_start) && l.contains("myself"));
        // Its slots come with their keys (a live migration): it owns some once that is over.
        let owns_slots = nodes
            .lines()
            .find(|l| l.contains(&line_start))
            .is_some_and(|l| l.split(' ').skip(8).any(|f| !f.is_empty()));
        if nodes.lines().count() == 3
            && nodes.contains(&line_start)
            && own_line_shown
            && owns_slots
            && cluster_ok
            && bus_relay.stats().to_target > 0
        {
            break nodes;
        }
        assert!(
            started.elapsed() < SETTLE,
            "the mapped node was not taken in at its announced address; CLUSTER NODES:\n{nodes}\n\
             its own CLUSTER NODES:\n{own}\nbus relay {:?}\nmapped node's log:\n{}",
            bus_relay.stats(),
            mapped.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (name, value) in [
        ("cluster-announce-port", announced_port.as_str()),
        ("cluster-announce-bus-port", announced_bus.as_str()),
        ("cluster-announce-hostname", "mapped.shoal.test"),
        ("cluster-announce-ip", "127.0.0.1"),
    ] {
        let reply = mapped.command(&["CONFIG", "GET", name]).await.unwrap();
        assert_eq!(
            reply,
            Value::Array(vec![
                Value::Bulk(name.as_bytes().to_vec()),
                Value::Bulk(value.as_bytes().to_vec())
            ]),
            "CONFIG GET {name}"
        );
    }

    // A key of the mapped node's shard, asked of the founder: MOVED to the announced address,
    // which serves it (through the mapping).
    let mapped_id = nodes
        .lines()
        .find(|l| l.contains(&line_start))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .to_string();
    let mapped_slots: Vec<(u16, u16)> = nodes
        .lines()
        .find(|l| l.starts_with(&mapped_id))
        .unwrap()
        .split(' ')
        .skip(8)
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|s| (s, s)),
        })
        .collect();
    let key = (0..100_000)
        .map(|n| format!("mapped:{n}"))
        .find(|k| {
            let slot = key_slot(k.as_bytes());
            mapped_slots.iter().any(|&(a, b)| (a..=b).contains(&slot))
        })
        .unwrap_or_else(|| panic!("no key of the mapped node's slots {mapped_slots:?}"));
    let moved = founder.command(&["SET", key.as_str(), "v"]).await.unwrap();
    let expected = format!(
        "MOVED {} 127.0.0.1:{announced_port}",
        key_slot(key.as_bytes())
    );
    assert_eq!(moved, Value::Error(expected.into_bytes()));
    // A primary that has just joined serves once its first lease has come (CLUSTERDOWN
    // until then, as a client that retries sees it).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let through_mapping = loop {
        let reply = shoal_testkit::resp::command(
            &resp_relay.addr().to_string(),
            &["SET", key.as_str(), "v"],
            Duration::from_secs(2),
        )
        .await
        .unwrap();
        let down = matches!(&reply, Value::Error(e) if e.starts_with(b"CLUSTERDOWN"));
        if !down || std::time::Instant::now() >= deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(through_mapping, Value::Simple(b"OK".to_vec()));

    // CLUSTER SLOTS names its hostname in the node's metadata map.
    let slots = founder.command(&["CLUSTER", "SLOTS"]).await.unwrap();
    let Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    let hostname_shown = ranges.iter().any(|range| {
        matches!(range, Value::Array(parts) if parts.get(2).is_some_and(|node| {
            *node == Value::Array(vec![
                Value::Bulk(b"127.0.0.1".to_vec()),
                Value::Int(announced_port.parse().unwrap()),
                Value::Bulk(mapped_id.as_bytes().to_vec()),
                Value::Array(vec![
                    Value::Bulk(b"hostname".to_vec()),
                    Value::Bulk(b"mapped.shoal.test".to_vec()),
                ]),
            ])
        }))
    });
    assert!(hostname_shown, "{ranges:?}");
}

#[test]
fn a_cluster_node_bound_to_every_address_must_say_which_to_announce() {
    for bind in ["0.0.0.0", "::"] {
        let out = Command::new(SHOAL)
            .args(["server", "--cluster-enabled", "--port", "0", "--bind", bind])
            .env_remove("SHOAL_CLUSTER_ANNOUNCE_IP")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started bound to {bind}: {stderr}");
        assert!(
            stderr.contains("--cluster-announce-ip") && stderr.contains(bind),
            "names the flag: {stderr}"
        );
    }
}
