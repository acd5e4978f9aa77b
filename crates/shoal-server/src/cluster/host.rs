//! The thread that hosts a node's cluster membership: a small runtime running the bus, the
//! controller member (if any), the agent, and the loop that turns each new map into routing.

use std::net::TcpListener as StdListener;
use std::sync::Arc;

use std::sync::atomic::Ordering::Relaxed;

use shoal_client::{Client, ClientConfig};
use shoal_cluster::decide::Settings;
use shoal_cluster::node::{ClusterNode, NodeConfig, Seed, SeedAccess};
use shoal_cluster::{ClusterMap, Role};
use shoal_proto::Protocol;
use tokio::net::TcpListener;

use crate::cluster::ClusterState;
use crate::replication::Role as ReplRole;
use crate::replication::replica::{self, LinkConfig};
use crate::shared::Shared;

/// How long a node removed from the cluster keeps answering (with redirections) before it
/// stops.
const REMOVED_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// Runs the node's cluster membership until the node stops. Blocks; run it on its own thread.
pub fn run(shared: Arc<Shared>, listener: StdListener) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shoal-cluster")
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            shared.fail(format!("cannot start the cluster runtime: {e}"));
            return;
        }
    };
    runtime.block_on(async move {
        let mut shutdown = shared.door.shutdown_signal();
        tokio::select! {
            _ = take_part(shared.clone(), listener) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        if let Some(controller) = shared
            .cluster
            .as_ref()
            .and_then(|c| c.node())
            .and_then(|n| n.controller())
        {
            controller.shutdown().await;
        }
    });
    // Dropping the runtime ends the bus and its connections.
}

async fn take_part(shared: Arc<Shared>, listener: StdListener) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            shared.fail(format!("cannot serve the cluster bus: {e}"));
            return;
        }
    };
    let config = shared.config.read().clone();
    let stats_source = Arc::downgrade(&shared);
    let node_config = NodeConfig {
        myself: cluster.myself().clone(),
        join: (!config.cluster_join.is_empty()).then(|| Seed::Resp(config.cluster_join.clone())),
        seed_access: SeedAccess {
            auth: config.peer_auth(),
            tls: seed_tls(&config),
        },
        settings: Settings {
            node_timeout_ms: config.cluster_node_timeout,
            max_voters: config.controller_voters,
            hot_key_share_permille: (config.hot_key_share * 1000.0).round() as u32,
            hot_key_min_rate: config.hot_key_min_rate,
        },
        replicas: config.cluster_replicas,
        join_timeout: config.join_timeout(),
        stats: Arc::new(move || {
            stats_source
                .upgrade()
                .map(|shared| crate::report::node_stats(&shared))
                .unwrap_or_default()
        }),
        dir: cluster.dir().cloned(),
        credentials: cluster.credentials().clone(),
        bus_tls: cluster.bus_tls().map(|tls| tls.acceptor().clone()),
    };
    let node = match ClusterNode::start(node_config, listener).await {
        Ok(node) => node,
        Err(e) => {
            shared.fail(format!("cannot take part in the cluster: {e}"));
            return;
        }
    };
    cluster.attach(node.clone());
    // What peers relay reaches this node's subscribers.
    let door = shared.door.clone();
    node.deliver_publications(Arc::new(move |publication| {
        let channel = bytes::Bytes::from(publication.channel);
        let message = bytes::Bytes::from(publication.message);
        if publication.shard {
            door.publish_shard(&channel, &message);
        } else {
            door.publish(&channel, &message);
        }
    }));
    shared.replication.set_authority({
        let cluster = cluster.clone();
        move || cluster.primary_authority()
    });
    let mut forwarder = ClientConfig::default().with_client_name(crate::cluster::FORWARDER_NAME);
    forwarder.protocol = Protocol::Resp3;
    if let Some(auth) = config.peer_auth() {
        forwarder.username = auth.user;
        forwarder.password = Some(auth.password);
    }
    match peer_tls(&config) {
        Ok(Some(tls)) => forwarder = forwarder.with_tls(tls, None),
        Ok(None) => {}
        Err(e) => tracing::error!("cannot forward over TLS (tls-replication): {e}"),
    }
    match Client::with_map((*node.map()).clone(), forwarder).await {
        Ok(client) => cluster.attach_forwarder(client),
        Err(e) => tracing::error!("cannot create the forwarding client: {e}"),
    }
    let mut maps = node.maps();
    let mut removed = node.removed();
    let mut hot_keys = node.hot_keys();
    // The set the first heartbeat brought, before this subscription: the node asks for it
    // again only when it changes.
    if let Some(forwarder) = cluster.forwarder() {
        forwarder.install_hot_keys(&hot_keys.borrow_and_update());
    }
    let first = maps.borrow_and_update().clone();
    remember(&cluster, &first);
    cluster.install(first.clone());
    cluster.adopt_users(&shared.door, &first);
    follow_role(&shared, &first);
    crate::migration::target::on_map(&shared, &first);
    loop {
        tokio::select! {
            changed = maps.changed() => {
                if changed.is_err() {
                    return;
                }
                let map = maps.borrow_and_update().clone();
                tracing::debug!(epoch = map.epoch, "new cluster map");
                // Routed by first; kept on disk after (a restart hint: a slow disk must not
                // hold the new map up).
                cluster.install(map.clone());
                cluster.adopt_users(&shared.door, &map);
                follow_role(&shared, &map);
                crate::migration::target::on_map(&shared, &map);
                remember(&cluster, &map);
            }
            changed = hot_keys.changed() => {
                if changed.is_err() {
                    return;
                }
                // Forwarded reads of hot keys spread over their shard, as the proxy's do.
                let set = hot_keys.borrow_and_update().clone();
                if let Some(forwarder) = cluster.forwarder() {
                    forwarder.install_hot_keys(&set);
                }
            }
            _ = removed.wait_for(|r| *r) => {
                // The map that removed it may have moved its last slots too: writes that
                // waited for that hand-over are being answered `-MOVED` now, and clients are
                // still learning the map. Answer them (every key is another node's) before the
                // connections close.
                tracing::warn!("removed from the cluster: stopping in {REMOVED_GRACE:?}");
                tokio::time::sleep(REMOVED_GRACE).await;
                shared.request_shutdown();
                return;
            }
        }
    }
}

/// Keeps `map` in the node's directory, if it has one: after a restart, the node finds its
/// cluster's controller members there.
fn remember(cluster: &ClusterState, map: &ClusterMap) {
    let Some(dir) = cluster.dir() else {
        return;
    };
    // A small file, rarely: blocking this runtime's thread for it is fine.
    if let Err(e) = tokio::task::block_in_place(|| dir.save_map(map)) {
        tracing::warn!("cannot keep the map: {e}");
    }
}

/// Plays the replication role the map gives this node: a primary records its changes while
/// its shard has replicas; a replica follows its shard's primary (a new link task whenever the
/// primary changes); a node in no shard does neither.
fn follow_role(shared: &Arc<Shared>, map: &ClusterMap) {
    let Some(cluster) = &shared.cluster else {
        return;
    };
    let me = cluster.myself().id;
    let (role, has_replicas) = match map.placement_of(me) {
        // A primary also records while slots migrate from its shard: the stream carries
        // their changes to the target.
        Some((shard, Role::Primary)) => (
            ReplRole::Primary,
            !shard.replicas.is_empty() || map.migrations.iter().any(|m| m.from == shard.id),
        ),
        Some((shard, Role::Replica)) => match map.node(shard.primary) {
            Some(primary) => (ReplRole::Replica(primary.resp_addr()), false),
            None => (ReplRole::Alone, false),
        },
        None => (ReplRole::Alone, false),
    };
    let replication = &shared.replication;
    let before = replication.role();
    replication.set_role_recording(role.clone(), has_replicas);
    if role != ReplRole::Primary {
        // A pause for a planned failover ends with the primary role.
        replication.unpause_writes();
    }
    if let ReplRole::Replica(primary) = role
        && before != ReplRole::Replica(primary.clone())
    {
        let config = shared.config.read();
        // The address and port the map lists: its primary tells its replicas apart by them.
        let tls = match peer_tls(&config) {
            Ok(tls) => tls,
            Err(e) => {
                tracing::error!("cannot follow the primary {primary}: tls-replication: {e}");
                return;
            }
        };
        let link = LinkConfig {
            listening_port: map.node(me).map_or(config.port, |n| n.port),
            announce_ip: map.node(me).map(|n| n.host.clone()),
            auth: config.peer_auth(),
            tls,
        };
        drop(config);
        let generation = replication.generation.load(Relaxed);
        tokio::spawn(replica::follow(
            shared.store.clone(),
            shared.replication.clone(),
            shared.functions.clone(),
            primary,
            generation,
            link,
        ));
    }
}

/// With `tls-replication`, how the seed of `--cluster-join` (its TLS port then) is asked for
/// its bus: over TLS, as the node's other links to RESP ports.
fn seed_tls(config: &crate::config::Config) -> Option<shoal_cluster::BusTlsConnector> {
    match peer_tls(config) {
        Ok(tls) => tls.map(shoal_cluster::BusTlsConnector::new),
        Err(e) => {
            tracing::error!("cannot ask the seed over TLS (tls-replication): {e}");
            None
        }
    }
}

/// With `tls-replication`, the TLS configuration for this node's links to other nodes' RESP
/// ports (its CA, its certificate as the client's), read from the files now so that a
/// reloaded certificate is used by the next link.
pub(crate) fn peer_tls(
    config: &crate::config::Config,
) -> Result<Option<Arc<shoal_frontdoor::tls::ClientConfig>>, shoal_frontdoor::tls::TlsError> {
    if !config.tls_replication {
        return Ok(None);
    }
    config.tls_options().client_config().map(Some)
}
