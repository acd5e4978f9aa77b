//! The HTTP/JSON API on the node's HTTP port, over the same keyspace as RESP: [`shoal_http`]'s
//! router (paths, bodies, status codes and authentication are described there) over the
//! node's store.
//!
//! The node's settings give the API its limits and password: `max-key-size`,
//! `proto-max-bulk-len` (the largest body) and `requirepass`, read for every request, so a
//! `CONFIG SET` applies at once. TTLs are stored as an absolute time (now + `ttl_ms`); one past
//! the largest time the store holds is a `400`. A write while over `maxmemory` with nothing to
//! evict is a `507` with Redis's OOM text, as on the RESP side.
//!
//! **Cluster mode.** Every node's HTTP API serves the whole keyspace: a key whose slot this
//! node does not own is read, written or deleted at its owner through the node's forwarding
//! client; a `503` says the owner could not be reached.
//!
//! **The cluster view** (`GET /cluster`, drawn by `GET /dashboard`): the controller leader's
//! status, asked over the bus, as `shoal_cluster::view::ClusterView`; a node in no cluster
//! describes itself alone.
//!
//! **Counting.** Every request is counted (method, status code, latency) in the router's
//! [`HttpStats`], which the `/metrics` page of the same router shows next to the node's own
//! counters (the node's `/metrics`). They are per router rather than a `static`, so several
//! nodes in one process (as in tests) each count their own requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use shoal_cluster::view::ClusterView;
use shoal_frontdoor::metrics::Exporter;
use shoal_frontdoor::{CLUSTER_DOWN, CommandError, NOREPLICAS};
use shoal_http::{ApiError, Backend, Health, HttpApi, HttpStats};
use shoal_store::{SetOptions, StoreError, TtlUpdate};

use crate::metrics::NodeCollector;
use crate::replication::Role as ReplRole;
use crate::shared::Shared;

/// The HTTP API of the node `shared`, guarded as its configuration says.
pub fn api(shared: Arc<Shared>) -> HttpApi {
    let settings = shared.config.read().http_settings();
    HttpApi::new(Node(shared), settings)
}

/// The HTTP API's routes for the node `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    api(shared).router()
}

/// The node's keyspace behind the API.
struct Node(Arc<Shared>);

impl Backend for Node {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ApiError> {
        let Some(forwarder) = serving_node(&self.0, key, false).await? else {
            return self
                .0
                .store
                .get(key, Bytes::copy_from_slice)
                .map_err(store_error);
        };
        forwarder.get(key).await.map_err(from_forwarding)
    }

    async fn set(&self, key: &[u8], value: Bytes, ttl_ms: Option<u64>) -> Result<(), ApiError> {
        let shared = &self.0;
        if let Some(forwarder) = serving_node(shared, key, true).await? {
            if let Some(ms) = ttl_ms {
                expiry_at(shared.store.now_ms(), ms)?;
            }
            let ttl = ttl_ms.map(std::time::Duration::from_millis);
            forwarder
                .set(key, &value, ttl)
                .await
                .map_err(from_forwarding)?;
            return Ok(());
        }
        let ttl = match ttl_ms {
            Some(ms) => TtlUpdate::At(expiry_at(shared.store.now_ms(), ms)?),
            None => TtlUpdate::Clear,
        };
        shared.store.make_room().map_err(|_| out_of_memory())?;
        let options = SetOptions {
            ttl,
            ..SetOptions::default()
        };
        shared
            .store
            .set(key, &value, options, |_| {})
            .map_err(store_error)?;
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, ApiError> {
        let Some(forwarder) = serving_node(&self.0, key, true).await? else {
            return Ok(self.0.store.remove(key));
        };
        Ok(forwarder.del(&[key]).await.map_err(from_forwarding)? > 0)
    }

    fn metrics_text(&self, http: &Arc<HttpStats>) -> String {
        Exporter::new(NodeCollector::new(self.0.clone(), http.clone())).render()
    }

    fn acl(&self) -> &shoal_frontdoor::Acl {
        &self.0.door.acl
    }

    fn max_key_size(&self) -> usize {
        self.0.live.max_key_size()
    }

    fn max_body(&self) -> usize {
        self.0.door.settings.max_bulk_len()
    }

    fn cluster_view(
        &self,
    ) -> Option<impl Future<Output = Result<serde_json::Value, ApiError>> + Send> {
        Some(cluster_view(self.0.clone()))
    }

    fn health(&self) -> Health {
        let Some(cluster) = &self.0.cluster else {
            return Health::Ok;
        };
        let health = cluster.health();
        if let Some(why) = health.unavailable() {
            Health::Unavailable(why)
        } else if let Some(why) = health.degraded() {
            Health::Degraded(why)
        } else {
            Health::Ok
        }
    }
}

/// How long each exchange with the controller may take for `GET /cluster`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /cluster`: the controller leader's status as a [`ClusterView`] (the map as this node
/// holds it, and why, when no leader answers); for a node in no cluster, itself alone from
/// its own report; a `503` while a cluster node has not joined yet.
async fn cluster_view(shared: Arc<Shared>) -> Result<serde_json::Value, ApiError> {
    let view = match &shared.cluster {
        None => {
            let (address, http_port) = {
                let config = shared.config.read();
                let address = format!("{}:{}", config.announced_ip(), config.announced_port());
                (address, config.http_port)
            };
            let replica = matches!(shared.replication.role(), ReplRole::Replica(_));
            let stats = crate::report::node_stats(&shared);
            ClusterView::standalone(address, http_port, replica, &stats)
        }
        Some(cluster) => {
            let node = cluster
                .node()
                .ok_or_else(|| ApiError::Unavailable("not in its cluster yet".into()))?;
            match node.status(STATUS_TIMEOUT).await {
                Ok(status) => ClusterView::of_status(&status),
                Err(e) => {
                    let why = format!(
                        "no controller leader answers ({e}): the map as this node holds it, \
                         without the nodes' reports"
                    );
                    ClusterView::of_map(&node.map(), None, &[], Some(why))
                }
            }
        }
    };
    serde_json::to_value(view).map_err(|e| ApiError::Unavailable(format!("the view: {e}")))
}

/// Where a request for `key` is served: here (`None`), or, in cluster mode when this node
/// is not the key's primary, through the forwarder (the HTTP API of every node serves the
/// whole keyspace). The same rules as for RESP commands hold: a write waits out a planned
/// failover's pause and meets `min-replicas-to-write`, and a primary without its lease
/// (`Replication::fenced`) serves nothing (`503`, where RESP answers `-CLUSTERDOWN`).
async fn serving_node<'a>(
    shared: &'a Shared,
    key: &[u8],
    write: bool,
) -> Result<Option<&'a shoal_client::Client>, ApiError> {
    let unavailable = |line: &str| ApiError::Unavailable(line.to_string());
    if write {
        while shared.replication.writes_paused() {
            shared.replication.await_unpause().await;
        }
    }
    if let Some(cluster) = &shared.cluster {
        if cluster.map_is_stale() {
            // As a RESP command would: the newer map may move the key or demote this node.
            cluster.await_current_map().await;
        }
        if !cluster.owns(key) {
            if let Some(forwarder) = cluster.forwarder() {
                return Ok(Some(forwarder));
            }
        } else if !cluster.primary_authority() {
            return Err(unavailable(CLUSTER_DOWN));
        }
    }
    if write && shared.too_few_good_replicas() {
        return Err(unavailable(NOREPLICAS));
    }
    Ok(None)
}

/// `507` with Redis's OOM line: over `maxmemory` and nothing can be evicted.
fn out_of_memory() -> ApiError {
    ApiError::OutOfMemory(CommandError::OutOfMemory.line().into_owned())
}

/// The store refused: `413` (value too large), `507` (no more address space) or `409` (the
/// key holds another type than a string, with Redis's `WRONGTYPE` line).
fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::TooLarge => ApiError::ValueTooLarge(e.to_string()),
        StoreError::AddressSpace => ApiError::OutOfMemory(e.to_string()),
        StoreError::WrongType => ApiError::WrongType(e.to_string()),
    }
}

/// The answer for a request forwarded to the key's owner that failed: the owner's `-OOM` is a
/// `507`, anything else a `503`.
fn from_forwarding(e: shoal_client::Error) -> ApiError {
    match &e {
        shoal_client::Error::Server(line) if line.starts_with("OOM") => out_of_memory(),
        shoal_client::Error::Server(line) if line.starts_with("WRONGTYPE") => {
            ApiError::WrongType(line.clone())
        }
        _ => ApiError::Unavailable(format!("cluster: {}", crate::cluster::forward_error(&e))),
    }
}

/// The absolute expiry for a TTL of `ttl_ms` from `now_ms`.
fn expiry_at(now_ms: u64, ttl_ms: u64) -> Result<i64, ApiError> {
    now_ms
        .checked_add(ttl_ms)
        .and_then(|at| i64::try_from(at).ok())
        .ok_or(ApiError::TtlTooLarge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_times_must_fit_the_store() {
        assert!(expiry_at(u64::MAX - 1, 5).is_err());
        assert_eq!(expiry_at(1000, 5).ok(), Some(1005));
    }

    #[test]
    fn store_and_forwarding_failures_have_their_statuses() {
        assert_eq!(store_error(StoreError::TooLarge).status().as_u16(), 413);
        assert_eq!(store_error(StoreError::AddressSpace).status().as_u16(), 507);
        let oom = from_forwarding(shoal_client::Error::Server("OOM full".into()));
        assert_eq!(
            (oom.status().as_u16(), oom.to_string().as_str()),
            (
                507,
                "OOM command not allowed when used memory > 'maxmemory'."
            )
        );
        let down = from_forwarding(shoal_client::Error::ClusterDown("CLUSTERDOWN x".into()));
        assert_eq!(
            (down.status().as_u16(), down.to_string().as_str()),
            (503, "cluster: CLUSTERDOWN x")
        );
    }
}
