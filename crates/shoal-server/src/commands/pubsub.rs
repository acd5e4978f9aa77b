//! `PUBLISH`, `SPUBLISH` and `PUBSUB`: the node's side of Pub/Sub. Subscriptions are the front
//! door's (`shoal_frontdoor::pubsub`); publishing delivers to this node's subscribers.

use bytes::Bytes;
use shoal_proto::Argv;

use super::{CommandResult, Ctx};

/// `PUBLISH channel message`: how many of this node's subscribers received it. In a cluster
/// it reaches every node's subscribers too (relayed over the bus), as in Redis Cluster, whose
/// reply also counts this node's only.
pub fn publish(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let channel = Bytes::copy_from_slice(argv.get(1));
    let payload = Bytes::copy_from_slice(argv.get(2));
    if let Some(cluster) = &ctx.shared.cluster {
        cluster.relay_publication(&channel, &payload, false);
    }
    let received = ctx.shared.door.publish(&channel, &payload);
    ctx.conn.deliver_messages(ctx.out);
    ctx.reply().int(received as i64);
    Ok(())
}

/// `SPUBLISH shardchannel message`: how many of this node's subscribers of the shard channel
/// received it. In a cluster it reaches the subscribers on the other nodes of the channel's
/// shard too (relayed over the bus).
pub fn spublish(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let channel = Bytes::copy_from_slice(argv.get(1));
    let payload = Bytes::copy_from_slice(argv.get(2));
    if let Some(cluster) = &ctx.shared.cluster {
        cluster.relay_publication(&channel, &payload, true);
    }
    let received = ctx.shared.door.publish_shard(&channel, &payload);
    ctx.conn.deliver_messages(ctx.out);
    ctx.reply().int(received as i64);
    Ok(())
}

/// `PUBSUB CHANNELS [pattern]` and `PUBSUB SHARDCHANNELS [pattern]`.
pub fn channels(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let shard = argv.get(1).eq_ignore_ascii_case(b"shardchannels");
    let names = ctx.shared.door.pubsub.channels(shard, argv.try_get(2));
    let mut reply = ctx.reply();
    reply.array(names.len());
    for name in &names {
        reply.bulk(name);
    }
    Ok(())
}

/// `PUBSUB NUMSUB [channel ...]` and `PUBSUB SHARDNUMSUB [channel ...]`: each channel and its
/// subscribers, flat (as Redis, in both protocols).
pub fn numsub(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let shard = argv.get(1).eq_ignore_ascii_case(b"shardnumsub");
    let pubsub = ctx.shared.door.pubsub.clone();
    let mut reply = ctx.reply();
    reply.array(2 * (argv.len() - 2));
    for channel in argv.iter().skip(2) {
        reply.bulk(channel);
        reply.int(pubsub.subscribers(shard, channel) as i64);
    }
    Ok(())
}

/// `PUBSUB NUMPAT`: patterns subscribed to.
pub fn numpat(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let patterns = ctx.shared.door.pubsub.patterns();
    ctx.reply().int(patterns as i64);
    Ok(())
}
