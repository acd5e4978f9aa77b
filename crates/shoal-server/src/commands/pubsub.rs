//! `PUBLISH` and `SPUBLISH`: the node's side of Pub/Sub. Subscriptions and `PUBSUB`'s
//! questions are the front door's (`shoal_frontdoor::pubsub`); publishing delivers to this
//! node's subscribers and, in a cluster, relays to the other nodes'.

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
