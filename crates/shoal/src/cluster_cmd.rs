//! `shoal cluster up | status | remove-node`: run a local cluster of real processes, show a
//! cluster's state, retire a node.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use shoal_cluster::bus::{self, ClusterStatus, Reply, Request};
use shoal_cluster::{ClusterMap, Health, NodeId, Role, seed};

/// `shoal cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a local cluster of `shoal server` processes and keep it running until Ctrl-C.
    Up(UpArgs),
    /// Show a cluster's shards, nodes, slot ranges, epoch and health.
    Status(StatusArgs),
    /// Retire a node: its shard keeps going without it (or its slots move to other shards).
    RemoveNode(RemoveArgs),
}

/// `shoal cluster up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Shards (primaries).
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// Replicas per shard.
    #[arg(long, default_value_t = 2)]
    pub replicas: u8,
    /// RESP port of the first node; the others follow it.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// HTTP port of the first node; the others follow it; 0 disables HTTP [default: base-port + 1000].
    #[arg(long)]
    pub http_base_port: Option<u16>,
    /// Memory limit per node, e.g. 100mb.
    #[arg(long)]
    pub maxmemory: Option<String>,
    /// Worker threads per node.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Milliseconds without a heartbeat before a node is marked failed.
    #[arg(long, default_value_t = 1000)]
    pub node_timeout: u64,
    /// Directory for the nodes' logs [default: a new directory under the system's temp dir].
    #[arg(long)]
    pub log_dir: Option<std::path::PathBuf>,
    /// Routing mode of every node: redirect or forward.
    #[arg(long, default_value = "redirect")]
    pub routing: String,
}

/// `shoal cluster status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Any node's RESP address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub node: String,
    /// Print the controller's status as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `shoal cluster remove-node` flags.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The node's id (40 hex digits, or its first 16), as `cluster status` shows it.
    pub id: String,
    /// Any node's RESP address.
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub node: String,
}

const BUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a `shoal cluster` subcommand.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    runtime.block_on(async move {
        match command {
            ClusterCommand::Up(args) => up(args).await,
            ClusterCommand::Status(args) => status(args).await,
            ClusterCommand::RemoveNode(args) => remove_node(args).await,
        }
    })
}

async fn leader_status(node: &str) -> anyhow::Result<ClusterStatus> {
    let bus = seed::bus_addr_of(node, BUS_TIMEOUT).await?;
    leader_status_via(&bus, node).await
}

/// The controller leader's status, asked through the bus at `bus` (of the node `node`).
async fn leader_status_via(bus: &str, node: &str) -> anyhow::Result<ClusterStatus> {
    match bus::call_leader(bus, &Request::Status, BUS_TIMEOUT, 4).await? {
        Reply::Status(status) => Ok(*status),
        Reply::Error(e) => bail!("{node}: {e}"),
        other => bail!("{node} answered {other:?}"),
    }
}

async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let status = leader_status(&args.node).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", describe(&status));
    }
    Ok(())
}

async fn remove_node(args: RemoveArgs) -> anyhow::Result<()> {
    let id: NodeId = args.id.parse()?;
    let bus = seed::bus_addr_of(&args.node, BUS_TIMEOUT).await?;
    if !leader_status_via(&bus, &args.node)
        .await?
        .map
        .nodes
        .contains_key(&id)
    {
        bail!("cannot remove node {id}: no such node");
    }
    let answer = bus::call_leader(&bus, &Request::RemoveNode(id), Duration::from_secs(12), 4).await;
    let map = match answer {
        Ok(Reply::Removed(map)) => map,
        // A refusal is final unless the node is gone already ("no such node" from a leader
        // asked again after an earlier one committed the removal).
        Ok(Reply::Error(e)) => removed_anyway(&bus, id, anyhow!(e), Duration::ZERO).await?,
        Ok(other) => bail!("unexpected answer {other:?}"),
        // No answer, or no leader for now: the removal may still commit.
        Err(e) => removed_anyway(&bus, id, e.into(), Duration::from_secs(5)).await?,
    };
    println!(
        "removed {id}; the cluster is at epoch {} with {} shards",
        map.epoch,
        map.shards.len()
    );
    Ok(())
}

/// After a removal request failed with `error`: the map once `id` is gone from it, if it goes
/// within `patience`, else `error`. A leader that loses its leadership while committing a
/// removal answers "not the leader" (or nothing), yet the next leader commits it; asked
/// again, it would find no such node. The node was there when the command started.
async fn removed_anyway(
    bus: &str,
    id: NodeId,
    error: anyhow::Error,
    patience: Duration,
) -> anyhow::Result<ClusterMap> {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(status) = leader_status_via(bus, bus).await
            && !status.map.nodes.contains_key(&id)
        {
            return Ok(status.map);
        }
        if Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A human-readable account of a cluster's state.
pub fn describe(status: &ClusterStatus) -> String {
    let map = &status.map;
    let mut out = String::new();
    let healthy = map
        .nodes
        .values()
        .filter(|n| n.health == Health::Ok)
        .count();
    let state = if map.slots_assigned() == shoal_cluster::SLOTS && healthy == map.nodes.len() {
        "ok"
    } else if map.slots_assigned() == shoal_cluster::SLOTS {
        "degraded"
    } else {
        "fail"
    };
    out.push_str(&format!(
        "cluster {state}: epoch {}, {} shards, {} nodes ({} healthy), controller leader {}, voters {}\n",
        map.epoch,
        map.shards.len(),
        map.nodes.len(),
        healthy,
        short(status.leader),
        map.controllers
            .iter()
            .map(|id| short(*id))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let by_id: BTreeMap<NodeId, &shoal_cluster::bus::NodeStatus> =
        status.nodes.iter().map(|n| (n.id, n)).collect();
    for shard in &map.shards {
        let ranges: Vec<String> = map
            .slots
            .ranges_of(shard.id)
            .iter()
            .map(|(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}-{b}")
                }
            })
            .collect();
        let wanted = map.replicas as usize;
        let degraded = shard.replicas.len() < wanted
            || shard
                .members()
                .any(|m| map.node(m).is_none_or(|n| n.health != Health::Ok));
        out.push_str(&format!(
            "shard {}{}: {} slots [{}]\n",
            shard.id,
            if degraded { " (degraded)" } else { "" },
            map.slots.count(shard.id),
            abbreviate(&ranges)
        ));
        for member in shard.members() {
            out.push_str(&node_line(map, member, by_id.get(&member).copied()));
        }
    }
    for spare in map.spares() {
        out.push_str("spare:\n");
        out.push_str(&node_line(map, spare.id, by_id.get(&spare.id).copied()));
    }
    out
}

fn node_line(
    map: &ClusterMap,
    id: NodeId,
    status: Option<&shoal_cluster::bus::NodeStatus>,
) -> String {
    let Some(node) = map.node(id) else {
        return format!("  {} (unknown)\n", short(id));
    };
    let role = match map.placement_of(id) {
        Some((_, Role::Primary)) => "primary",
        Some((_, Role::Replica)) => "replica",
        None => "spare",
    };
    let health = match node.health {
        Health::Ok => "ok",
        Health::Failed => "FAILED",
    };
    let (seen, keys, memory, ops, epoch) = match status {
        Some(s) => (
            s.last_heartbeat_ms
                .map_or("never".to_string(), |ms| format!("{ms} ms ago")),
            s.stats.keys,
            s.stats.used_memory,
            s.stats.ops_per_sec,
            s.epoch,
        ),
        None => ("never".into(), 0, 0, 0, 0),
    };
    format!(
        "  {} {:<7} {:<21} {:<6} heartbeat {:<12} epoch {:<4} keys {:<9} memory {:<10} ops/s {}{}\n",
        short(id),
        role,
        node.resp_addr(),
        health,
        seen,
        epoch,
        keys,
        memory,
        ops,
        if node.controller {
            "  (controller)"
        } else {
            ""
        }
    )
}

fn short(id: NodeId) -> String {
    format!("{id:?}")
}

fn abbreviate(ranges: &[String]) -> String {
    if ranges.len() <= 6 {
        return ranges.join(",");
    }
    format!(
        "{},... {} ranges ...,{}",
        ranges[..3].join(","),
        ranges.len(),
        ranges[ranges.len() - 2..].join(",")
    )
}

/// The children of `cluster up`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Fleet {
    children: Vec<(u16, Child)>,
}

impl Fleet {
    fn stop(&mut self) {
        for (_, child) in &self.children {
            // SAFETY: kill(2) with a child's pid has no memory-safety requirements.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// Forgets the children that exited, returning their ports.
    fn reap(&mut self) -> Vec<u16> {
        let mut gone = Vec::new();
        self.children.retain_mut(|(port, child)| {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited {
                gone.push(*port);
            }
            !exited
        });
        gone
    }

    fn exited(&mut self) -> Option<u16> {
        self.children
            .iter_mut()
            .find_map(|(port, c)| matches!(c.try_wait(), Ok(Some(_))).then_some(*port))
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let count = args.shards * (1 + args.replicas as usize);
    let last_port = args.base_port as usize + count - 1;
    if last_port > 55535 {
        bail!("--base-port leaves no room for {count} nodes and their bus ports (+10000)");
    }
    let http_base = args
        .http_base_port
        .unwrap_or(args.base_port.saturating_add(1000));
    let log_dir = match &args.log_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("shoal-cluster-{}", args.base_port)),
    };
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the shoal binary")?;
    let controllers = count.min(3);
    let founder = format!("127.0.0.1:{}", args.base_port);
    println!(
        "starting {count} nodes ({} shards x {} each) on ports {}-{}, logs in {}",
        args.shards,
        1 + args.replicas as usize,
        args.base_port,
        last_port,
        log_dir.display()
    );
    let mut fleet = Fleet {
        children: Vec::new(),
    };
    let spawn_node = |i: usize| -> anyhow::Result<(u16, Child)> {
        let port = args.base_port + i as u16;
        let http_port = if http_base == 0 {
            0
        } else {
            http_base + i as u16
        };
        let log = std::fs::File::create(log_dir.join(format!("node-{port}.log")))?;
        let mut command = Command::new(&exe);
        command
            .arg("server")
            .args(["--port", &port.to_string()])
            .args(["--http-port", &http_port.to_string()])
            .args(["--threads", &args.threads.to_string()])
            .args(["--node-timeout", &args.node_timeout.to_string()])
            .args(["--routing", &args.routing])
            .arg("--cluster-enabled")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(maxmemory) = &args.maxmemory {
            command.args(["--maxmemory", maxmemory]);
        }
        if i < controllers {
            command.arg("--controller");
        }
        if i == 0 {
            command.args(["--replicas", &args.replicas.to_string()]);
        } else {
            command.args(["--cluster-join", &founder]);
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours;
        // it makes the child get SIGTERM if `cluster up` dies without cleaning up.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the node on port {port}"))?;
        Ok((port, child))
    };
    fleet.children.push(spawn_node(0)?);
    wait_for_founder(&founder, &mut fleet).await?;
    println!("  node {} founded the cluster", args.base_port);
    for i in 1..count {
        fleet.children.push(spawn_node(i)?);
    }
    let started = Instant::now();
    let mut reported = 1;
    let status = loop {
        if let Some(port) = fleet.exited() {
            bail!(
                "the node on port {port} exited; see {}",
                log_dir.join(format!("node-{port}.log")).display()
            );
        }
        if let Ok(status) = leader_status(&founder).await {
            let members = status.map.nodes.len();
            if members > reported {
                println!("  {members}/{count} nodes in the cluster");
                reported = members;
            }
            if ready(&status, count, args.shards) {
                break status;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the cluster was not ready after 60 s; see the logs in {}",
                log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "cluster ready in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    print!("{}", describe(&status));
    println!();
    println!("connect:    redis-cli -c -p {}", args.base_port);
    println!("status:     shoal cluster status --node {founder}");
    if http_base != 0 {
        println!("HTTP API:   http://127.0.0.1:{http_base}/<key>");
        println!(
            "metrics:    http://127.0.0.1:{}/metrics .. http://127.0.0.1:{}/metrics",
            http_base,
            http_base as usize + count - 1
        );
    }
    println!("stop:       Ctrl-C");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = check.tick() => {
                // A node that dies is the cluster's to handle (its replica takes over); say so
                // and keep the others running.
                for port in fleet.reap() {
                    eprintln!(
                        "the node on port {port} exited (see {}); the cluster goes on without it",
                        log_dir.join(format!("node-{port}.log")).display()
                    );
                }
                if fleet.children.is_empty() {
                    return Err(anyhow!("every node exited"));
                }
            }
        }
    }
    println!("stopping {} nodes", fleet.children.len());
    fleet.stop();
    Ok(())
}

async fn wait_for_founder(founder: &str, fleet: &mut Fleet) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if fleet.exited().is_some() {
            bail!("the first node exited while starting");
        }
        if leader_status(founder).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the first node did not found the cluster within 20 s")
}

/// Whether every node is in the map, every shard exists, every slot is owned, and every node
/// has reported holding the final map.
fn ready(status: &ClusterStatus, nodes: usize, shards: usize) -> bool {
    let map = &status.map;
    map.nodes.len() == nodes
        && map.shards.len() == shards
        && map.slots_assigned() == shoal_cluster::SLOTS
        && map.nodes.values().all(|n| n.health == Health::Ok)
        && status.nodes.iter().all(|n| n.epoch == map.epoch)
}
