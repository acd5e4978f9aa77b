//! Shoal's sharded-counter commands (`COUNTER.INCRBY`, `COUNTER.GET`, `COUNTER.DEL`) on a
//! cluster node. Their parts `key#1` .. `key#N` hash to many slots, so no one node serves them
//! and a Redis Cluster client, which routes by the one key it sees, cannot send them where they
//! run:
//!
//! * a node started with `--routing forward` serves a plain client's through its forwarder
//!   (the same [`CounterCommand::run`] the proxy uses: `INCRBY` of one part, `MGET` and `DEL`
//!   of the parts, each on its owner);
//! * otherwise (`--routing redirect`, or a connection that is itself a node's forwarder) the
//!   node refuses them with [`refusal`], which says where they work.
//!
//! Either way the command does not pass the routing check of its key: it is answered before.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use shoal_client::counter::CounterCommand;
use shoal_frontdoor::{CLUSTER_DOWN, CommandError};
use shoal_proto::reply::Value;

use super::{ClusterState, relayed};
use crate::config::RoutingMode;
use crate::conn::NodeConn;

/// The refusal of sharded-counter command `name` (its full name, lower case) on a node that
/// cannot serve it.
pub(crate) fn refusal(name: &str) -> CommandError {
    CommandError::Other(
        format!(
            "ERR {}'s parts key#1..key#N span hash slots, which a Redis Cluster client cannot \
             route: send it through shoal proxy, a node running with --routing forward, or \
             shoal-client's sharded_counter",
            name.to_ascii_uppercase()
        )
        .into(),
    )
}

impl ClusterState {
    /// Whether this node serves `client`'s sharded-counter commands (through its forwarder):
    /// with `--routing forward`, to a client that is not itself a node's forwarder.
    pub(crate) fn serves_counters(&self, client: &NodeConn) -> bool {
        self.mode == RoutingMode::Forward && !client.forwarded
    }

    /// Runs `command` through the forwarder; its reply (an error reply if none could be had).
    pub(crate) fn run_counter(
        self: &Arc<Self>,
        command: CounterCommand,
    ) -> BoxFuture<'static, Value> {
        let cluster = self.clone();
        Box::pin(async move {
            let Some(forwarder) = cluster.forwarder.get() else {
                return Value::Error(CLUSTER_DOWN.as_bytes().to_vec());
            };
            relayed("the counter's parts", command.run(forwarder).await)
        })
    }
}
