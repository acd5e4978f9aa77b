//! Cluster commands: `CLUSTER SHARDS/SLOTS/NODES/MYID/INFO/KEYSLOT/COUNTKEYSINSLOT/
//! GETKEYSINSLOT/FAILOVER/MIGRATESLOTS/HELP`, `READONLY`, `READWRITE`, `ASKING`. On a standalone node every one of
//! them answers Redis's `-ERR This instance has cluster support disabled`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use shoal_cluster::redis_format::{self, ClusterInfoStats, NodeFacts};
use shoal_cluster::{ClusterMap, NodeId, SLOTS, key_slot};
use shoal_proto::Argv;

use super::CommandResult;
use super::Ctx;
use super::{Waiting, int_arg};
use crate::cluster::ClusterState;
use shoal_frontdoor::CommandError;

const DISABLED: CommandError =
    CommandError::fixed("ERR This instance has cluster support disabled");

fn cluster_of(ctx: &Ctx<'_>) -> Result<Arc<ClusterState>, CommandError> {
    ctx.shared.cluster.clone().ok_or(DISABLED)
}

/// `CLUSTER SHARDS`
pub fn shards(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let cluster = cluster_of(ctx)?;
    let map = cluster.map();
    let facts = known_facts(ctx, &map, cluster.myself().id);
    redis_format::cluster_shards(&mut ctx.reply(), &map, &facts);
    Ok(())
}

/// `CLUSTER SLOTS`
pub fn slots(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let cluster = cluster_of(ctx)?;
    let map = cluster.map();
    let facts = known_facts(ctx, &map, cluster.myself().id);
    redis_format::cluster_slots(&mut ctx.reply(), &map, &facts);
    Ok(())
}

/// The replication facts this node knows: its own offset and whether it is still loading
/// (a replica not yet synced with its primary), and, as a primary, the offset each replica of
/// its shard acknowledged and whether it has acknowledged at all yet (a replica does once it
/// has loaded its snapshot; one not attached is loading as far as this primary knows).
/// Replicas are told apart by the address and port they announce. Other nodes' facts are not
/// known here: offset 0, not loading. So a client that asks a shard's primary for
/// `CLUSTER SLOTS` is not told of replicas that cannot serve reads yet.
fn known_facts(
    ctx: &Ctx<'_>,
    map: &ClusterMap,
    me: NodeId,
) -> impl Fn(NodeId) -> NodeFacts + use<> {
    let replication = &ctx.shared.replication;
    let own = NodeFacts {
        replication_offset: replication.offset(),
        loading: !replication.data_ready(),
    };
    let mut replicas: Vec<(NodeId, NodeFacts)> = Vec::new();
    if replication.is_primary()
        && let Some(shard) = map.shards.iter().find(|s| s.primary == me)
    {
        let attached = replication.replicas.lock();
        for id in &shard.replicas {
            // The newest link first: an older one of the same replica may linger.
            let peer = map.node(*id).and_then(|node| {
                attached
                    .iter()
                    .rev()
                    .find(|p| p.port == node.port && p.ip == node.host)
            });
            let facts = match peer {
                Some(peer) => NodeFacts {
                    replication_offset: peer.ack.load(Relaxed),
                    loading: !peer.synced.load(Relaxed),
                },
                None => NodeFacts {
                    replication_offset: 0,
                    loading: true,
                },
            };
            replicas.push((*id, facts));
        }
    }
    move |id| {
        if id == me {
            return own;
        }
        replicas
            .iter()
            .find(|(node, _)| *node == id)
            .map_or_else(NodeFacts::default, |(_, facts)| *facts)
    }
}

/// `CLUSTER NODES`
pub fn nodes(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let cluster = cluster_of(ctx)?;
    let map = cluster.map();
    let now = ctx.shared.store.now_ms();
    redis_format::cluster_nodes_reply(&mut ctx.reply(), &map, cluster.myself().id, now);
    Ok(())
}

/// `CLUSTER MYID`
pub fn myid(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let cluster = cluster_of(ctx)?;
    redis_format::cluster_myid(&mut ctx.reply(), cluster.myself().id);
    Ok(())
}

/// `CLUSTER INFO`
pub fn info(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let cluster = cluster_of(ctx)?;
    let map = cluster.map();
    let health = cluster.health();
    let stats = ClusterInfoStats {
        cut_off: !health.can_serve(),
        silent_primaries: health.silent_primaries,
        controller: Some((health.controller_quorum, health.lease.as_str())),
        ..ClusterInfoStats::default()
    };
    redis_format::cluster_info_reply(&mut ctx.reply(), &map, cluster.myself().id, &stats);
    Ok(())
}

/// `CLUSTER KEYSLOT key`
pub fn keyslot(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    ctx.reply().int(i64::from(key_slot(argv.get(2))));
    Ok(())
}

/// `CLUSTER COUNTKEYSINSLOT slot`: counts by walking the keyspace (Shoal keeps no per-slot
/// index), so it costs time in proportion to the node's keys.
pub fn countkeysinslot(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    let slot = int_arg(argv.get(2))?;
    if !(0..SLOTS as i64).contains(&slot) {
        return Err(CommandError::fixed("ERR Invalid slot"));
    }
    let mut count = 0i64;
    ctx.shared.store.for_each_key(|key| {
        if i64::from(key_slot(key)) == slot {
            count += 1;
        }
    });
    ctx.reply().int(count);
    Ok(())
}

/// `CLUSTER GETKEYSINSLOT slot count`: at most `count` keys of the slot, found by walking the
/// keyspace.
pub fn getkeysinslot(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    // Redis parses the count first.
    let count = int_arg(argv.get(3))?;
    let slot = int_arg(argv.get(2))?;
    if count < 0 || !(0..SLOTS as i64).contains(&slot) {
        return Err(CommandError::fixed("ERR Invalid slot or number of keys"));
    }
    let mut keys: Vec<Vec<u8>> = Vec::new();
    ctx.shared.store.for_each_key(|key| {
        if (keys.len() as i64) < count && i64::from(key_slot(key)) == slot {
            keys.push(key.to_vec());
        }
    });
    let mut reply = ctx.reply();
    reply.array(keys.len());
    for key in &keys {
        reply.bulk(key);
    }
    Ok(())
}

/// `CLUSTER HELP`
pub fn help(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    super::help(ctx, argv)
}

/// `CLUSTER FAILOVER [FORCE|TAKEOVER]` on a replica: it takes over its shard. The primary
/// stops taking writes, this replica catches up with it, and the controller hands it the
/// shard, so no acknowledged write is lost. `FORCE` and `TAKEOVER` skip the primary (for one
/// that is unreachable) and may lose what it had not yet streamed.
pub fn failover(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> Result<Option<Waiting>, CommandError> {
    cluster_of(ctx)?;
    let force = match argv.len() {
        2 => false,
        3 if super::is(argv.get(2), "force") || super::is(argv.get(2), "takeover") => true,
        _ => return Err(CommandError::Syntax),
    };
    if !matches!(
        ctx.shared.replication.role(),
        crate::replication::Role::Replica(_)
    ) {
        return Err(CommandError::fixed(
            "ERR You should send CLUSTER FAILOVER to a replica",
        ));
    }
    Ok(Some(Waiting::Failover { force }))
}

/// `CLUSTER MIGRATESLOTS SLOTSRANGE start end [start end ...] NODE node-id [SLOTSRANGE ...
/// NODE ...]` (Valkey 9): moves the slots, with their keys, to the shard of each node. Any
/// node takes it (the controller moves the slots from whichever shards own them) and answers
/// `OK` once the migrations are in the map, or an error and nothing moves; `CLUSTER SHARDS`,
/// `shoal cluster status` and `INFO cluster` follow them.
pub fn migrateslots(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> Result<Option<Waiting>, CommandError> {
    cluster_of(ctx)?;
    let mut groups = Vec::new();
    let mut i = 2;
    while i < argv.len() {
        if !super::is(argv.get(i), "slotsrange") {
            return Err(CommandError::Syntax);
        }
        i += 1;
        let mut ranges = Vec::new();
        while i < argv.len() && !super::is(argv.get(i), "node") {
            if i + 1 >= argv.len() {
                return Err(CommandError::Syntax);
            }
            let (start, end) = (slot_arg(argv.get(i))?, slot_arg(argv.get(i + 1))?);
            if start > end {
                // Valkey's words.
                return Err(CommandError::Other(
                    format!("ERR Start slot number {start} is greater than end slot number {end}.")
                        .into(),
                ));
            }
            ranges.push((start, end));
            i += 2;
        }
        if ranges.is_empty() || i + 1 >= argv.len() {
            return Err(CommandError::Syntax);
        }
        let id = std::str::from_utf8(argv.get(i + 1))
            .ok()
            .and_then(|text| text.parse::<NodeId>().ok())
            .ok_or_else(|| CommandError::quoting("ERR Invalid node name: ", argv.get(i + 1), ""))?;
        groups.push((ranges, id));
        i += 2;
    }
    Ok(Some(Waiting::MoveSlots(groups)))
}

/// A slot number argument: Redis's `-ERR Invalid or out of range slot` otherwise.
fn slot_arg(arg: &[u8]) -> Result<u16, CommandError> {
    int_arg(arg)
        .ok()
        .filter(|n| (0..SLOTS as i64).contains(n))
        .map(|n| n as u16)
        .ok_or(CommandError::fixed("ERR Invalid or out of range slot"))
}

/// `READONLY`: this connection may read from replicas.
pub fn readonly(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    ctx.client.readonly = true;
    ctx.reply().ok();
    Ok(())
}

/// `READWRITE`: back to reading from primaries only.
pub fn readwrite(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    ctx.client.readonly = false;
    ctx.reply().ok();
    Ok(())
}

/// `ASKING`: accepted for clients that follow `-ASK`. A migrating slot stays its source's until
/// the map hands it to the target whole (then `-MOVED`), so Shoal never answers `-ASK` and the
/// flag changes nothing.
pub fn asking(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    cluster_of(ctx)?;
    ctx.reply().ok();
    Ok(())
}
