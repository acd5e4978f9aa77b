//! The map from the cluster bus: a subscription that follows pushes, resubscribes elsewhere
//! when it fails or goes silent, and one-shot fetches when the client is redirected.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use rand::seq::SliceRandom;
use shoal_cluster::bus::{self, BusConnection, Reply, Request};
use shoal_cluster::{BusCredentials, BusTlsConnector};
use shoal_proto::reply::Value;

use super::nodes::{host_of, join, parse_cluster_nodes};
use super::{MapSink, MapSource};
use crate::codec::encode;
use crate::config::ClientConfig;
use crate::conn::{Conn, ConnOptions};
use crate::stats::Stats;

/// Least time between two one-shot fetches asked for by redirections.
const REFRESH_INTERVAL: Duration = Duration::from_millis(50);
/// Longest wait between two rounds of failed subscription attempts.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// Follows the cluster map on the cluster bus.
///
/// To find a bus, it asks the seeds (RESP addresses) for `CLUSTER NODES` and reads each
/// node's `ip:port@busport`; a seed that does not answer that is assumed to have its bus at
/// its port + 10000, Redis Cluster's convention. Once it has a map it subscribes at the nodes
/// the map lists (healthy ones first, in random order, so clients spread over the nodes),
/// falling back to the seeds when none answers. On each node it first fetches the map
/// ([`Request::GetMap`]), then subscribes ([`Request::Subscribe`] after the epoch it holds); a
/// subscription silent for longer than
/// [`ClientConfig::subscription_silence`] (the bus pings every 500 ms) is dropped for another
/// node. When the client asks for a refresh (after `-MOVED`), it fetches the map once from
/// the node it is subscribed at. Every bus connection proves the cluster secret
/// ([`ClientConfig::cluster_secret`]), inside TLS if [`ClientConfig::bus_tls`] is set.
#[derive(Debug, Clone)]
pub struct BusMapSource {
    seeds: Vec<String>,
    credentials: BusCredentials,
    conn: ConnOptions,
    request_timeout: Duration,
    silence: Duration,
    retry_base: Duration,
    /// Whether a node has refused the credentials (logged once).
    refused: Arc<std::sync::atomic::AtomicBool>,
}

/// How one subscription attempt went.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    /// The node answered at least the first fetch, then the subscription ended.
    Worked,
    /// The node could not be used at all.
    Failed,
}

/// What `config`'s connections to the cluster bus prove: the cluster secret, over TLS with
/// [`ClientConfig::bus_tls`]; fails without a [`ClientConfig::cluster_secret`].
pub(crate) fn bus_credentials(config: &ClientConfig) -> Result<BusCredentials, crate::Error> {
    let secret = config.cluster_secret.clone().ok_or_else(|| {
        crate::Error::Config(
            "the cluster bus needs the cluster secret: set cluster_secret (the nodes' \
             --cluster-secret-file) to follow the cluster map"
                .into(),
        )
    })?;
    Ok(match &config.bus_tls {
        Some(tls) => BusCredentials::new(secret).with_tls(BusTlsConnector::new(tls.clone())),
        None => BusCredentials::new(secret),
    })
}

impl BusMapSource {
    /// A source with `config`'s seeds, timeouts and credentials; fails without a
    /// [`ClientConfig::cluster_secret`].
    pub fn new(config: &ClientConfig) -> Result<BusMapSource, crate::Error> {
        let credentials = bus_credentials(config)?;
        Ok(BusMapSource {
            seeds: config.seeds.clone(),
            credentials,
            // Map requests are not reads of the keyspace.
            conn: ConnOptions {
                readonly: false,
                ..ConnOptions::of(config)
            },
            request_timeout: config.request_timeout,
            silence: config.subscription_silence,
            retry_base: config.backoff_base.max(Duration::from_millis(10)),
            refused: Arc::default(),
        })
    }

    async fn follow(&self, sink: &MapSink, current: &Mutex<Option<String>>) {
        let mut last: Option<String> = None;
        let mut failures = 0u32;
        loop {
            let mut outcome = Attempt::Failed;
            for addr in map_candidates(sink, last.as_deref()) {
                outcome = self.attempt(&addr, sink, current, &mut last).await;
                if outcome == Attempt::Worked {
                    break;
                }
            }
            if outcome == Attempt::Failed {
                'seeds: for seed in &self.seeds {
                    for addr in self.discover(seed).await {
                        outcome = self.attempt(&addr, sink, current, &mut last).await;
                        if outcome == Attempt::Worked {
                            break 'seeds;
                        }
                    }
                }
            }
            if outcome == Attempt::Worked {
                failures = 0;
                // A node that takes the fetch and then drops the subscription at once must not
                // make this a busy loop.
                tokio::time::sleep(self.retry_base).await;
                continue;
            }
            failures = failures.saturating_add(1);
            let delay = self
                .retry_base
                .saturating_mul(1 << failures.min(16))
                .min(RETRY_MAX);
            tracing::debug!(?delay, "no cluster bus answered; retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        addr: &str,
        sink: &MapSink,
        current: &Mutex<Option<String>>,
        last: &mut Option<String>,
    ) -> Attempt {
        *current.lock() = Some(addr.to_string());
        let (outcome, why) = self.subscribe(addr, sink).await;
        tracing::debug!(addr, ?outcome, why, "map subscription ended");
        *last = Some(addr.to_string());
        outcome
    }

    /// Fetches the map from the bus at `addr`, then follows its pushes until the subscription
    /// fails.
    async fn subscribe(&self, addr: &str, sink: &MapSink) -> (Attempt, String) {
        let mut conn = match BusConnection::connect(
            addr,
            &self.credentials,
            self.conn.connect_timeout,
        )
        .await
        {
            Ok(conn) => conn,
            Err(
                e @ (bus::BusError::Auth { .. }
                | bus::BusError::Tls { .. }
                | bus::BusError::NoHello { .. }),
            ) => {
                // Most likely not a node that is down but credentials that do not fit the
                // cluster: a secret that is not its own, or TLS where its bus has none (or
                // the reverse). Said once.
                if !self
                    .refused
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!("cannot follow the cluster map: {e}");
                }
                return (Attempt::Failed, e.to_string());
            }
            Err(e) => return (Attempt::Failed, e.to_string()),
        };
        match conn.call(&Request::GetMap, self.request_timeout).await {
            Ok(Reply::Map(map)) => {
                sink.offer(map);
            }
            Ok(other) => return (Attempt::Failed, format!("GetMap answered {other:?}")),
            Err(e) => return (Attempt::Failed, e.to_string()),
        }
        let after = sink.current().epoch;
        if let Err(e) = conn.send(&Request::Subscribe { after }).await {
            return (Attempt::Worked, e.to_string());
        }
        loop {
            match conn.next(self.silence).await {
                Ok(Reply::Map(map)) => {
                    sink.offer(map);
                }
                Ok(Reply::Ping) => {}
                Ok(Reply::HotKeys(set)) => sink.offer_hot_keys(&set),
                Ok(other) => return (Attempt::Worked, format!("the subscription got {other:?}")),
                Err(e) => return (Attempt::Worked, e.to_string()),
            }
        }
    }

    /// Bus addresses of the cluster, as the seed `seed` tells them.
    async fn discover(&self, seed: &str) -> Vec<String> {
        let mut buses = Vec::new();
        let conn = Conn::open(seed, &self.conn, Arc::new(Stats::default()));
        let frame = encode(&["CLUSTER", "NODES"]);
        if let Ok(Value::Bulk(text) | Value::Verbatim(_, text)) =
            conn.request(frame, false, self.request_timeout).await
        {
            let mut nodes = parse_cluster_nodes(&String::from_utf8_lossy(&text), host_of(seed));
            nodes.sort_by_key(|n| n.failed);
            buses.extend(nodes.into_iter().map(|n| n.bus));
        }
        if buses.is_empty()
            && let Some((host, port)) = seed.rsplit_once(':')
            && let Ok(port) = port.parse::<u16>()
            && let Some(bus) = port.checked_add(shoal_cluster::BUS_PORT_OFFSET)
        {
            buses.push(join(
                host.trim_start_matches('[').trim_end_matches(']'),
                bus,
            ));
        }
        buses
    }

    async fn refresh_on_request(&self, sink: &MapSink, current: &Mutex<Option<String>>) {
        loop {
            sink.refresh_requested().await;
            let mut candidates: Vec<String> = current.lock().iter().cloned().collect();
            candidates.extend(map_candidates(sink, None).into_iter().take(2));
            candidates.dedup();
            for addr in candidates {
                match bus::call(
                    &addr,
                    &self.credentials,
                    &Request::GetMap,
                    self.request_timeout,
                )
                .await
                {
                    Ok(Reply::Map(map)) => {
                        sink.offer(map);
                        break;
                    }
                    other => tracing::debug!(addr, ?other, "map refresh failed"),
                }
            }
            tokio::time::sleep(REFRESH_INTERVAL).await;
        }
    }
}

/// Bus addresses of the map's nodes: healthy ones first, shuffled, and `last` at the end.
fn map_candidates(sink: &MapSink, last: Option<&str>) -> Vec<String> {
    let map = sink.current();
    let mut rng = rand::rng();
    let mut healthy: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for node in map.nodes.values() {
        if node.bus_port == 0 {
            continue;
        }
        if node.is_ok() {
            healthy.push(node.bus_addr());
        } else {
            failed.push(node.bus_addr());
        }
    }
    healthy.shuffle(&mut rng);
    healthy.extend(failed);
    if let Some(last) = last
        && let Some(i) = healthy.iter().position(|a| a == last)
    {
        let addr = healthy.remove(i);
        healthy.push(addr);
    }
    healthy
}

impl MapSource for BusMapSource {
    fn run(self: Box<Self>, sink: MapSink) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let current = Mutex::new(None);
            tokio::join!(
                self.follow(&sink, &current),
                self.refresh_on_request(&sink, &current)
            );
        })
    }
}
