//! The proxy's Prometheus `/metrics`: a prometheus-client [`Collector`] that reads, at scrape
//! time, the counters `INFO` reads (the front door's, the proxy's own, the upstream client's
//! [`ClientStats`](shoal_client::ClientStats), the cluster map) and the HTTP API's, in the
//! OpenMetrics text format ([`shoal_frontdoor::metrics::CONTENT_TYPE`]); the HTTP router
//! renders it with a [`shoal_frontdoor::metrics::Exporter`].
//!
//! The front door's families come with the prefix `shoal_proxy` (commands by name and result,
//! their latency, errors by code, connections, buffers, bytes: see
//! [`shoal_frontdoor::metrics`]); then
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `shoal_proxy_error_replies_total` | counter | `source` = `proxy` (failures to reach the cluster) / `other` |
//! | `shoal_proxy_upstream_requests_total`, `..._errors_total`, `..._error_replies_total`, `..._retries_total`, `..._redirects_total`, `..._map_refreshes_total`, `..._connects_total`, `..._connection_losses_total` | counter | |
//! | `shoal_proxy_upstream_latency_seconds` | gauge | `quantile` = `0.5` / `0.9` / `0.99` / `0.999` / `1` |
//! | `shoal_proxy_near_cache_hits_total`, `..._misses_total`, `..._invalidations_total`, `..._local_invalidations_total`, `..._evictions_total` | counter | (with `--near-cache` only) |
//! | `shoal_proxy_near_cache_flushes_total` | counter | `cause` = `connection` / `map` / `flushall` |
//! | `shoal_proxy_near_cache_entries`, `shoal_proxy_near_cache_bytes` | gauge | |
//! | `shoal_proxy_cluster_epoch`, `shoal_proxy_cluster_nodes`, `shoal_proxy_cluster_primaries` | gauge | |
//! | `shoal_proxy_uptime_seconds` | gauge | |
//! | `shoal_proxy_http_requests_total` | counter | `method`, `code` ([`HttpStats::encode`]) |
//! | `shoal_proxy_http_request_duration_seconds` | histogram | `method` |

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use shoal_frontdoor::metrics::{counter, encode_door, encode_gauges, single};
use shoal_http::HttpStats;

use crate::shared::Shared;
use crate::stats::ProxyStats;
use shoal_client::primaries;

/// Reads the proxy's counters at scrape time.
#[derive(Debug)]
pub(crate) struct ProxyCollector {
    shared: Arc<Shared>,
    http: Arc<HttpStats>,
}

impl ProxyCollector {
    /// A collector for the proxy `shared` and the HTTP API counted in `http`.
    pub fn new(shared: Arc<Shared>, http: Arc<HttpStats>) -> ProxyCollector {
        ProxyCollector { shared, http }
    }

    fn error_replies(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "shoal_proxy_error_replies",
            "Error replies sent: made by the proxy for failures to reach the cluster, or other (the nodes' and the proxy's command errors).",
            None,
            MetricType::Counter,
        )?;
        let by_proxy = ProxyStats::get(&self.shared.stats.proxy_errors);
        let all: u64 = self.shared.door.stats.errors().values().sum();
        counter(&mut family, &[("source", "proxy")], by_proxy)?;
        counter(
            &mut family,
            &[("source", "other")],
            all.saturating_sub(by_proxy),
        )
    }

    fn upstream(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let up = self.shared.client.stats();
        for (name, help, value) in up.counters() {
            let name = format!("shoal_proxy_upstream_{name}");
            single(encoder, &name, help, None, ConstCounter::new(value))?;
        }
        let mut family = encoder.encode_descriptor(
            "shoal_proxy_upstream_latency",
            "Latency quantiles of commands sent to the cluster (retries included).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        let l = up.latency;
        for (q, d) in [
            ("0.5", l.p50),
            ("0.9", l.p90),
            ("0.99", l.p99),
            ("0.999", l.p999),
            ("1", l.max),
        ] {
            ConstGauge::new(d.as_secs_f64()).encode(family.encode_family(&[("quantile", q)])?)?;
        }
        let map = self.shared.client.map();
        let gauges = [
            (
                "shoal_proxy_cluster_epoch",
                "Epoch of the cluster map routed by.",
                map.epoch,
            ),
            (
                "shoal_proxy_cluster_nodes",
                "Nodes in the cluster map.",
                map.nodes.len() as u64,
            ),
            (
                "shoal_proxy_cluster_primaries",
                "Shards (primaries) in the cluster map.",
                primaries(&map).len() as u64,
            ),
        ];
        encode_gauges(encoder, &gauges)?;
        let uptime = ConstGauge::new(self.shared.door.started().elapsed().as_secs_f64());
        single(
            encoder,
            "shoal_proxy_uptime",
            "Time since the proxy started.",
            Some(&Unit::Seconds),
            uptime,
        )
    }

    /// The near cache's counters, if the proxy keeps one.
    fn near_cache(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(near) = self.shared.client.near_cache_stats() else {
            return Ok(());
        };
        for (name, help, value) in near.counters() {
            if name.starts_with("flushes_") || name == "entries" || name == "bytes" {
                continue;
            }
            let name = format!("shoal_proxy_near_cache_{name}");
            single(encoder, &name, help, None, ConstCounter::new(value))?;
        }
        let mut family = encoder.encode_descriptor(
            "shoal_proxy_near_cache_flushes",
            "Near cache flushes by cause: a node's tracking connection ended or stalled (connection), a new map moved slots (map), FLUSHALL/FLUSHDB (flushall).",
            None,
            MetricType::Counter,
        )?;
        for (cause, value) in [
            ("connection", near.flushes_connection),
            ("map", near.flushes_map),
            ("flushall", near.flushes_flushall),
        ] {
            counter(&mut family, &[("cause", cause)], value)?;
        }
        encode_gauges(
            encoder,
            &[
                (
                    "shoal_proxy_near_cache_entries",
                    "Entries in the near cache.",
                    near.entries,
                ),
                (
                    "shoal_proxy_near_cache_bytes",
                    "Bytes the near cache's entries are counted for.",
                    near.bytes,
                ),
            ],
        )
    }
}

impl Collector for ProxyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_door(&mut encoder, "shoal_proxy", &self.shared.door)?;
        self.error_replies(&mut encoder)?;
        self.upstream(&mut encoder)?;
        self.near_cache(&mut encoder)?;
        self.http.encode(&mut encoder, "shoal_proxy")
    }
}
