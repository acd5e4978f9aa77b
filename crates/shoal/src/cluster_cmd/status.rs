//! `shoal cluster status` and `shoal cluster remove-node`, and the human-readable account of a
//! cluster both `status` and `up` print.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use shoal_cluster::bus::{self, ClusterStatus, NodeStatus, Reply, Request};
use shoal_cluster::hot_keys::HotKeySet;
use shoal_cluster::view;
use shoal_cluster::{ClusterMap, Health, NodeId, NodeInfo, Role};

use shoal_cluster::BusCredentials;

use super::{RemoveArgs, StatusArgs, leader_status_via};

/// `shoal cluster status`.
pub(super) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let credentials = args.access.credentials()?;
    let bus = args.access.bus().await?;
    let status = match leader_status_via(&bus, &args.access.node, &credentials).await {
        Ok(status) => status,
        Err(no_leader) => return leaderless_status(&args, &bus, &credentials, no_leader).await,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", describe(&status));
    }
    Ok(())
}

/// `shoal cluster status` when no controller leader answers: the node's own map, under a line
/// that says the controller has lost its majority (or is electing a leader), and what that
/// means. Fails (with `no_leader`) if the node does not answer either.
async fn leaderless_status(
    args: &StatusArgs,
    bus: &str,
    credentials: &BusCredentials,
    no_leader: anyhow::Error,
) -> anyhow::Result<()> {
    let map = match bus::call(bus, credentials, &Request::GetMap, Duration::from_secs(2)).await {
        Ok(Reply::Map(map)) => map,
        // The node itself refuses: that, not the controller, is what to fix.
        Err(
            e @ (bus::BusError::Auth { .. }
            | bus::BusError::Tls { .. }
            | bus::BusError::NoHello { .. }),
        ) => return Err(e.into()),
        _ => return Err(no_leader),
    };
    let why = format!(
        "no controller leader answers ({no_leader}): the controller has lost its majority, or \
         is electing a leader; primaries keep serving on leases from their peers, but nothing is \
         failed over, joined or removed until it is back"
    );
    if args.json {
        let view = serde_json::json!({ "leader": null, "controller": why, "map": map });
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        println!("controller DOWN: {why}");
        println!("the map as {} holds it:", args.access.node);
        print!("{}", describe_view(&map, None, &[]));
    }
    Ok(())
}

/// `shoal cluster remove-node`.
pub(super) async fn remove_node(args: RemoveArgs) -> anyhow::Result<()> {
    let access = &args.wait.access;
    let credentials = access.credentials()?;
    let bus = access.bus().await?;
    let first = leader_status_via(&bus, &access.node, &credentials)
        .await?
        .map;
    let id = find_node(&first, &args.id)?;
    // The node asked may be the one removed (a node that removes itself, as a Kubernetes
    // preStop hook does): it stops once it is out, so the command follows the removal
    // through the other members too.
    let buses = through(&bus, &first, Some(id));
    let request = Request::RemoveNode(id);
    let answer = bus::call_leader(&bus, &credentials, &request, Duration::from_secs(12), 4).await;
    let mut map = match answer {
        Ok(Reply::Removed(map)) => map,
        // A refusal is final unless the node is gone already ("no such node" from a leader
        // asked again after an earlier one committed the removal).
        Ok(Reply::Error(e)) => {
            removed_anyway(&buses, &credentials, id, anyhow!(e), Duration::ZERO).await?
        }
        Ok(other) => bail!("unexpected answer {other:?}"),
        // No answer, or no leader for now: the removal may still commit.
        Err(e) => {
            removed_anyway(&buses, &credentials, id, e.into(), Duration::from_secs(5)).await?
        }
    };
    if map.nodes.contains_key(&id) {
        // A primary without replicas: its shard drains (its slots move with their keys)
        // before it goes.
        println!(
            "draining {id}'s shard: its slots move to the other shards with their keys; the node \
             leaves (and stops) once it owns none"
        );
        let limit = Duration::from_secs(args.wait.wait_timeout);
        map = wait_for_migrations(&buses, &credentials, limit, |map| {
            !map.nodes.contains_key(&id)
        })
        .await?;
    }
    println!(
        "removed {id}; the cluster is at epoch {} with {} shards",
        map.epoch,
        map.shards.len()
    );
    Ok(())
}

/// Sends `request` to the controller's leader (through the bus at `bus`) and returns the map
/// it answers with; its refusal is the error.
async fn controller_map(
    bus: &str,
    credentials: &BusCredentials,
    request: &Request,
) -> anyhow::Result<ClusterMap> {
    match bus::call_leader(bus, credentials, request, Duration::from_secs(12), 4).await? {
        Reply::Map(map) => Ok(map),
        Reply::Error(e) => bail!("the controller refused: {e}"),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// `shoal cluster rebalance`.
pub(super) async fn rebalance(args: super::MoveWait) -> anyhow::Result<()> {
    let credentials = args.access.credentials()?;
    let bus = args.access.bus().await?;
    let map = controller_map(&bus, &credentials, &Request::Rebalance).await?;
    if map.migrations.is_empty() {
        println!("the slots are where placement wants them: nothing to move");
        return Ok(());
    }
    print!("{}", migrations_part(&map));
    let buses = through(&bus, &map, None);
    let limit = Duration::from_secs(args.wait_timeout);
    let map =
        wait_for_migrations(&buses, &credentials, limit, |map| map.migrations.is_empty()).await?;
    println!("done: the cluster is at epoch {}", map.epoch);
    Ok(())
}

/// `shoal cluster move-slots`.
pub(super) async fn move_slots(args: super::MoveSlotsArgs) -> anyhow::Result<()> {
    let to: NodeId = args.to.parse()?;
    let slots: Vec<(u16, u16)> = args.slots.into_iter().flatten().collect();
    let credentials = args.wait.access.credentials()?;
    let bus = args.wait.access.bus().await?;
    let request = Request::MoveSlots {
        groups: vec![(slots.clone(), to)],
    };
    let mut map = controller_map(&bus, &credentials, &request).await?;
    let requested = |m: &ClusterMap| {
        m.migrations
            .iter()
            .any(|mig| slots.iter().any(|&(a, b)| (a..=b).any(|s| mig.contains(s))))
    };
    if requested(&map) {
        print!("{}", migrations_part(&map));
        let buses = through(&bus, &map, None);
        let limit = Duration::from_secs(args.wait.wait_timeout);
        map = wait_for_migrations(&buses, &credentials, limit, |m| !requested(m)).await?;
    }
    let shard = map.placement_of(to).map(|(s, _)| s.id);
    let count: usize = slots
        .iter()
        .flat_map(|&(a, b)| a..=b)
        .filter(|&s| shard.is_some() && map.slots.get(s) == shard)
        .count();
    let asked: usize = slots.iter().map(|&(a, b)| usize::from(b - a) + 1).sum();
    match shard {
        Some(shard) if count == asked => {
            println!(
                "done: the slots are shard {shard}'s (node {to}'s); epoch {}",
                map.epoch
            )
        }
        _ => bail!(
            "{count} of the {asked} slots are node {to}'s shard's at epoch {} (a rebalance or \
             a removal may have placed them since)",
            map.epoch
        ),
    }
    Ok(())
}

/// The buses to ask the leader through: `bus` (the one the command was given), then every
/// other member's of `map` but `leaving`'s (a node being removed, which stops once out).
fn through(bus: &str, map: &ClusterMap, leaving: Option<NodeId>) -> Vec<String> {
    let mut buses = vec![bus.to_string()];
    for node in map.nodes.values().filter(|n| Some(n.id) != leaving) {
        let addr = node.bus_addr();
        if !buses.contains(&addr) {
            buses.push(addr);
        }
    }
    buses
}

/// The controller leader's status, asked through the first of `buses` that answers.
async fn leader_status_through(
    buses: &[String],
    credentials: &BusCredentials,
) -> Option<ClusterStatus> {
    for bus in buses {
        if let Ok(status) = leader_status_via(bus, bus, credentials).await {
            return Some(status);
        }
    }
    None
}

/// Polls the leader's map (through the first of `buses` that answers) until `done` holds
/// for it, saying how many slots are still on their way whenever that changes.
async fn wait_for_migrations(
    buses: &[String],
    credentials: &BusCredentials,
    limit: Duration,
    done: impl Fn(&ClusterMap) -> bool,
) -> anyhow::Result<ClusterMap> {
    let deadline = Instant::now() + limit;
    let mut said = usize::MAX;
    loop {
        if Instant::now() >= deadline {
            bail!(
                "still moving after {limit:?} (the migrations go on: `shoal cluster status` \
                 follows them; a source whose primary failed without a replica holds them up)"
            );
        }
        if let Some(status) = leader_status_through(buses, credentials).await {
            if done(&status.map) {
                return Ok(status.map);
            }
            let left: usize = status.map.migrations.iter().map(|m| m.count()).sum();
            if left != said {
                println!("{left} slots still moving");
                said = left;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The node of `map` whose id is `given`, in its long (40 hex digits) or short (16) form, or
/// an error that lists the ids the cluster has.
fn find_node(map: &ClusterMap, given: &str) -> anyhow::Result<NodeId> {
    if let Ok(id) = given.trim().parse::<NodeId>()
        && map.nodes.contains_key(&id)
    {
        return Ok(id);
    }
    let known: Vec<String> = map
        .nodes
        .values()
        .map(|n| format!("{} ({})", short(n.id), n.resp_addr()))
        .collect();
    bail!(
        "node {given} is not in the cluster; its nodes are: {}",
        known.join(", ")
    )
}

/// After a removal request failed with `error`: the map once `id` is gone from it, if it goes
/// within `patience`, else `error`. A leader that loses its leadership while committing a
/// removal answers "not the leader" (or nothing), yet the next leader commits it; asked
/// again, it would find no such node. The node was there when the command started.
async fn removed_anyway(
    buses: &[String],
    credentials: &BusCredentials,
    id: NodeId,
    error: anyhow::Error,
    patience: Duration,
) -> anyhow::Result<ClusterMap> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(status) = leader_status_through(buses, credentials).await
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
pub(super) fn describe(status: &ClusterStatus) -> String {
    let mut out = describe_view(&status.map, Some(status.leader), &status.nodes);
    out.push_str(&published_part(&status.map, &status.hot_keys));
    out
}

/// The hot keys the controller publishes (whose reads the proxy, smart clients and forwarding
/// nodes spread over their shard), in [`describe`]; nothing when there are none.
fn published_part(map: &ClusterMap, published: &HotKeySet) -> String {
    if published.is_empty() {
        return String::new();
    }
    let mut out = String::from("hot keys published (reads spread over their shard):\n");
    for hot in &published.keys {
        let members = map.shard(hot.shard).map_or(0, |s| 1 + s.replicas.len());
        out.push_str(&format!(
            "  {:<32} shard {} {} req/s, {:.1}% of the shard's, over {members} members\n",
            view::printable(&hot.key),
            hot.shard,
            hot.requests,
            f64::from(hot.share_permille) / 10.0,
        ));
    }
    out
}

/// [`describe`] of `map`, with the controller's `leader` (if one answered) and the nodes'
/// last reports to it.
fn describe_view(map: &ClusterMap, leader: Option<NodeId>, reports: &[NodeStatus]) -> String {
    let mut out = String::new();
    let healthy = map
        .nodes
        .values()
        .filter(|n| n.health == Health::Ok)
        .count();
    // Without a leader the map's health is as of its last commit: not a verdict.
    let state = view::state(map, leader);
    out.push_str(&format!(
        "cluster {state}: epoch {}, {} shards, {} nodes ({} healthy), controller leader {}, {} voters {}\n",
        map.epoch,
        map.shards.len(),
        map.nodes.len(),
        healthy,
        leader.map_or("none".to_string(), short),
        map.controllers.len(),
        map.controllers
            .iter()
            .map(|id| short(*id))
            .collect::<Vec<_>>()
            .join(",")
    ));
    let by_id: BTreeMap<NodeId, &NodeStatus> = reports.iter().map(|n| (n.id, n)).collect();
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
        let draining = map.draining.contains(&shard.id);
        out.push_str(&format!(
            "shard {}{}{}: {} slots [{}]\n",
            shard.id,
            if degraded { " (degraded)" } else { "" },
            if draining { " (draining)" } else { "" },
            map.slots.count(shard.id),
            abbreviate(&ranges)
        ));
        for member in shard.members() {
            out.push_str(&node_line(map, leader, member, by_id.get(&member).copied()));
        }
    }
    for spare in map.spares() {
        out.push_str("spare:\n");
        out.push_str(&node_line(
            map,
            leader,
            spare.id,
            by_id.get(&spare.id).copied(),
        ));
    }
    out.push_str(&migrations_part(map));
    out.push_str(&hot_keys_part(map, reports));
    out
}

/// The slots on their way to another shard in [`describe`], one line per source and target;
/// nothing when none move.
fn migrations_part(map: &ClusterMap) -> String {
    if map.migrations.is_empty() {
        return String::new();
    }
    let mut out = String::from("slots moving with their keys:\n");
    for m in &map.migrations {
        out.push_str(&format!(
            "  shard {} -> shard {}: {} slots to go\n",
            m.from,
            m.to,
            m.count()
        ));
    }
    out
}

/// The cluster's hottest keys in [`describe`]: each on a line with the node that reported
/// it, its shard and the estimated requests; nothing when no node reported any.
fn hot_keys_part(map: &ClusterMap, reports: &[NodeStatus]) -> String {
    let keys = view::hot_keys(map, reports);
    if keys.is_empty() {
        return String::new();
    }
    let mut out = String::from("hot keys by node (rates estimated from each node's sample):\n");
    for hot in keys {
        let shard = hot.shard.map_or("-".to_string(), |s| s.to_string());
        out.push_str(&format!(
            "  {:<32} {} {:<21} shard {:<3} {:>8} req/s {:>10} bytes/s\n",
            hot.key,
            hot.node.map_or_else(|| "-".to_string(), short),
            hot.address,
            shard,
            hot.requests,
            hot.net_bytes
        ));
    }
    out
}

/// One member's line in [`describe`]: its place, address, health, what it last reported, its
/// zone, and whether it is a controller voter (and the leader).
fn node_line(
    map: &ClusterMap,
    leader: Option<NodeId>,
    id: NodeId,
    status: Option<&NodeStatus>,
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
        controller_part(map, leader, node)
    )
}

/// What a node's line says of its zone and its part in the controller: `  zone eu-1a`,
/// `  voter` or `  voter, leader`.
fn controller_part(map: &ClusterMap, leader: Option<NodeId>, node: &NodeInfo) -> String {
    let mut part = String::new();
    if let Some(zone) = &node.zone {
        part.push_str(&format!("  zone {zone}"));
    }
    if leader == Some(node.id) {
        part.push_str("  voter, leader");
    } else if map.controllers.contains(&node.id) {
        part.push_str("  voter");
    }
    part
}

/// A node id's short form (its first 16 hex digits), as `status` shows it.
fn short(id: NodeId) -> String {
    format!("{id:?}")
}

/// At most six slot ranges: the first three, a count, the last two.
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

#[cfg(test)]
mod tests {
    use shoal_cluster::bus::{HotKeyReport, NodeStats};
    use shoal_cluster::hot_keys::HotKey;
    use shoal_cluster::{ShardId, ShardInfo, SlotTable};

    use super::*;

    fn map_of(ids: &[u64]) -> ClusterMap {
        let mut map = ClusterMap::empty();
        for (i, &id) in ids.iter().enumerate() {
            let node = NodeInfo::local(NodeId(id), 7000 + i as u16);
            map.nodes.insert(node.id, node);
        }
        map
    }

    #[test]
    fn a_removal_is_followed_through_the_other_members_too() {
        let map = map_of(&[1, 2, 3]);
        // Asked through the node that leaves (bus 17000): then the two others'.
        assert_eq!(
            through("127.0.0.1:17000", &map, Some(NodeId(1))),
            ["127.0.0.1:17000", "127.0.0.1:17001", "127.0.0.1:17002"]
        );
        // Asked through another: the one that leaves is not asked.
        assert_eq!(
            through("127.0.0.1:17001", &map, Some(NodeId(3))),
            ["127.0.0.1:17001", "127.0.0.1:17000"]
        );
        assert_eq!(through("127.0.0.1:17001", &map, None).len(), 3);
    }

    #[test]
    fn a_node_is_found_by_its_short_or_long_id() {
        let map = map_of(&[0xabc, 0xdef]);
        let id = NodeId(0xdef);
        assert_eq!(find_node(&map, "0000000000000def").unwrap(), id);
        assert_eq!(find_node(&map, &id.to_string()).unwrap(), id);
        assert_eq!(find_node(&map, &id.to_string().to_uppercase()).unwrap(), id);
    }

    #[test]
    fn an_unknown_id_is_refused_with_the_ids_there_are() {
        let map = map_of(&[0xabc, 0xdef]);
        let error = find_node(&map, "00000000000000aa").unwrap_err().to_string();
        assert!(
            error.starts_with("node 00000000000000aa is not in the cluster"),
            "{error}"
        );
        assert!(
            error.contains("0000000000000abc (127.0.0.1:7000)"),
            "{error}"
        );
        assert!(
            error.contains("0000000000000def (127.0.0.1:7001)"),
            "{error}"
        );
    }

    #[test]
    fn status_lists_the_hot_keys_printable_with_their_node_and_shard() {
        let mut map = map_of(&[1, 2]);
        map.shards.push(ShardInfo {
            id: ShardId(0),
            primary: NodeId(1),
            replicas: vec![NodeId(2)],
        });
        map.slots = SlotTable::all(ShardId(0));
        let report = |id: u64, hot_keys: Vec<HotKeyReport>| NodeStatus {
            id: NodeId(id),
            placement: None,
            last_heartbeat_ms: Some(10),
            epoch: 0,
            stats: NodeStats {
                hot_keys,
                ..NodeStats::default()
            },
        };
        let hot = |key: &[u8], requests: u64| HotKeyReport {
            key: key.to_vec(),
            requests,
            net_bytes: requests * 20,
        };
        let quiet = ClusterStatus {
            map: map.clone(),
            leader: NodeId(1),
            nodes: vec![report(1, Vec::new())],
            hot_keys: HotKeySet::default(),
        };
        assert!(
            !describe(&quiet).contains("hot keys"),
            "{}",
            describe(&quiet)
        );
        let status = ClusterStatus {
            map,
            leader: NodeId(1),
            nodes: vec![
                report(1, vec![hot(b"user:\xff\n", 6400), hot(b"cold", 64)]),
                report(2, vec![hot(b"user:2", 1280)]),
            ],
            hot_keys: HotKeySet::new(vec![HotKey {
                key: b"user:\xff\n".to_vec(),
                shard: ShardId(0),
                requests: 7680,
                share_permille: 412,
            }]),
        };
        let text = describe(&status);
        let part: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("hot keys by node"))
            .collect();
        assert_eq!(part.len(), 6, "{text}");
        assert!(
            part[1].starts_with("  user:\\xff\\x0a ")
                && part[1].contains("0000000000000001 127.0.0.1:7000"),
            "{text}"
        );
        assert!(
            part[1].contains("shard 0") && part[1].contains("6400 req/s"),
            "{text}"
        );
        assert!(part[1].ends_with("128000 bytes/s"), "{text}");
        assert!(
            part[2].starts_with("  user:2 ") && part[2].contains("127.0.0.1:7001"),
            "{text}"
        );
        assert!(part[3].starts_with("  cold "), "{text}");
        assert_eq!(
            part[4],
            "hot keys published (reads spread over their shard):"
        );
        assert!(
            part[5].starts_with("  user:\\xff\\x0a ")
                && part[5].ends_with("shard 0 7680 req/s, 41.2% of the shard's, over 2 members"),
            "{text}"
        );
    }

    #[test]
    fn status_names_the_voters_the_leader_and_zones() {
        let mut map = map_of(&[1, 2, 3]);
        map.epoch = 4;
        map.shards.push(ShardInfo {
            id: ShardId(0),
            primary: NodeId(1),
            replicas: vec![NodeId(2), NodeId(3)],
        });
        map.next_shard = 1;
        map.slots = SlotTable::all(ShardId(0));
        map.controllers = vec![NodeId(2), NodeId(3)];
        map.nodes.get_mut(&NodeId(3)).unwrap().zone = Some("eu-1b".into());
        let status = ClusterStatus {
            map,
            leader: NodeId(2),
            nodes: Vec::new(),
            hot_keys: Default::default(),
        };
        let text = describe(&status);
        assert!(
            text.contains(
                "controller leader 0000000000000002, 2 voters 0000000000000002,0000000000000003"
            ),
            "{text}"
        );
        let line = |id: &str| text.lines().find(|l| l.contains(id)).unwrap().to_string();
        assert!(
            line("0000000000000001 primary").ends_with("ops/s 0"),
            "{text}"
        );
        assert!(
            line("0000000000000002 replica").ends_with("voter, leader"),
            "{text}"
        );
        assert!(
            line("0000000000000003 replica").ends_with("zone eu-1b  voter"),
            "{text}"
        );
    }
}
