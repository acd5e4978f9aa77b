//! The Prometheus `/metrics` exporter.
//!
//! Nothing here keeps a copy of a counter: [`NodeCollector`] is a prometheus-client
//! [`Collector`] that reads, at scrape time, the very counters `INFO` reads (the front door's,
//! `Store::stats`, [`crate::process`]) plus the HTTP API's own [`HttpStats`], and encodes them
//! in the OpenMetrics text format ([`shoal_frontdoor::metrics::CONTENT_TYPE`]); the HTTP router
//! renders it with a [`shoal_frontdoor::metrics::Exporter`], and answers a scraper that asks
//! for Prometheus's text format 0.0.4 in that one ([`shoal_frontdoor::metrics::Format`]).
//!
//! Metric families (all counters end in `_total`, units are bytes and seconds): the front
//! door's with the prefix `shoal` (commands by name and result, their latency, errors by code,
//! connections, buffers, bytes: see [`shoal_frontdoor::metrics`]), and
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `shoal_keyspace_hits_total`, `shoal_keyspace_misses_total` | counter | |
//! | `shoal_evicted_keys_total`, `shoal_expired_keys_total` | counter | |
//! | `shoal_memory_used_bytes`, `shoal_memory_max_bytes` (0: no limit) | gauge | |
//! | `shoal_keys`, `shoal_keys_with_ttl` | gauge | |
//! | `shoal_uptime_seconds` | gauge | |
//! | `process_cpu_seconds_total` (user + system) | counter | |
//! | `process_resident_memory_bytes`, `process_start_time_seconds` | gauge | |
//! | `shoal_cluster_epoch`, `shoal_cluster_nodes`, `shoal_cluster_shards`, `shoal_cluster_failed_nodes`, `shoal_cluster_slots_owned` | gauge | (cluster mode) |
//! | `shoal_controller_quorum`, `shoal_controller_leader`, `shoal_controller_voters`, `shoal_controller_term`, `shoal_cluster_primary`, `shoal_cluster_serving`, `shoal_cluster_silent_primaries` | gauge | (cluster mode) |
//! | `shoal_cluster_lease_age_seconds` | gauge | `source` (`controller`, `peers`) |
//! | `shoal_cluster_shard_up` | gauge | `shard` |
//! | `shoal_cluster_redirects_total`, `shoal_cluster_forwarded_total`, `shoal_cluster_fenced_total`, `shoal_cluster_stale_replica_reads_total`, `shoal_cluster_keys_dropped_total`, `shoal_cluster_bus_auth_failures_total` | counter | (cluster mode) |
//! | `shoal_replication_offset_bytes`, `shoal_replication_lag_bytes` (the furthest-behind replica), `shoal_replication_replicas`, `shoal_replication_link_up` | gauge | |
//! | `shoal_replication_replica_lag_bytes`, `shoal_replication_replica_ack_age_seconds` | gauge | `replica` (`ip:port`, on a primary) |
//! | `shoal_replication_full_resyncs_served_total`, `shoal_replication_partial_resyncs_served_total`, `shoal_replication_full_resyncs_total`, `shoal_replication_partial_resyncs_total` | counter | |
//! | `shoal_hotkey_sampled_requests`, `shoal_hotkey_sampled_net_bytes` | gauge | `key` (the 10 hottest of the last seconds, printable ASCII, `?` for the rest) |
//! | `shoal_hotkey_sample_ratio` | gauge | |
//! | `shoal_tracking_invalidations_total` | counter | (each key to each client, and each null) |
//! | `shoal_tracking_clients`, `shoal_tracking_keys` | gauge | |
//! | `shoal_http_requests_total` | counter | `method`, `code` ([`HttpStats::encode`]) |
//! | `shoal_http_request_duration_seconds` | histogram | `method` |
//!

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;
use shoal_frontdoor::metrics::{encode_counters, encode_door, encode_gauges, gauge, single};
use shoal_http::HttpStats;

use crate::process;
use crate::shared::Shared;

/// The prometheus-client collector of one node: reads everything at scrape time.
#[derive(Clone)]
pub struct NodeCollector {
    shared: Arc<Shared>,
    http: Arc<HttpStats>,
}

impl std::fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

impl NodeCollector {
    /// A collector for the node `shared` and the HTTP API counted in `http`.
    pub fn new(shared: Arc<Shared>, http: Arc<HttpStats>) -> NodeCollector {
        NodeCollector { shared, http }
    }

    fn keyspace(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let store = self.shared.store.stats();
        let counters = [
            (
                "shoal_keyspace_hits",
                "Key lookups that found the key.",
                store.hits,
            ),
            (
                "shoal_keyspace_misses",
                "Key lookups that did not find the key.",
                store.misses,
            ),
            (
                "shoal_evicted_keys",
                "Keys evicted to stay under maxmemory.",
                store.evicted,
            ),
            (
                "shoal_expired_keys",
                "Keys removed because their TTL passed.",
                store.expired,
            ),
        ];
        encode_counters(encoder, &counters)?;
        let bytes = Some(&Unit::Bytes);
        let gauges = [
            (
                "shoal_memory_used",
                "Bytes of keys, values and entry overhead (used_memory).",
                bytes,
                store.used_memory,
            ),
            (
                "shoal_memory_max",
                "The maxmemory setting (0: no limit).",
                bytes,
                self.shared.store.maxmemory(),
            ),
            ("shoal_keys", "Keys in the keyspace.", None, store.keys),
            (
                "shoal_keys_with_ttl",
                "Keys that have an expiry.",
                None,
                store.volatile_keys,
            ),
        ];
        for (name, help, unit, value) in gauges {
            single(encoder, name, help, unit, gauge(value))?;
        }
        Ok(())
    }

    fn process(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let seconds = Some(&Unit::Seconds);
        let uptime = ConstGauge::new(self.shared.door.started().elapsed().as_secs_f64());
        single(
            encoder,
            "shoal_uptime",
            "Time since the node started.",
            seconds,
            uptime,
        )?;
        let (user, system) = process::cpu_seconds();
        let cpu = ConstCounter::new(user + system);
        single(
            encoder,
            "process_cpu",
            "User and system CPU time of the process.",
            seconds,
            cpu,
        )?;
        let rss = gauge(process::rss_bytes());
        single(
            encoder,
            "process_resident_memory",
            "Resident set size.",
            Some(&Unit::Bytes),
            rss,
        )?;
        let start = gauge(self.shared.door.started_unix());
        single(
            encoder,
            "process_start_time",
            "Start time of the node since the Unix epoch.",
            seconds,
            start,
        )?;
        Ok(())
    }
}

impl NodeCollector {
    /// `CLIENT TRACKING`'s families: the invalidations sent, and what `INFO` shows as
    /// `tracking_clients` and `tracking_total_keys`.
    fn tracking(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tracking = &self.shared.door.tracking;
        let counters = [(
            "shoal_tracking_invalidations",
            "Invalidations sent to tracking clients: each key to each client (directly, \
             redirected or broadcast), and each null (a flush, or slots leaving the node).",
            tracking.invalidations_sent(),
        )];
        encode_counters(encoder, &counters)?;
        let stats = tracking.stats();
        let gauges = [
            (
                "shoal_tracking_clients",
                "Connections with CLIENT TRACKING on (tracking_clients).",
                stats.clients as u64,
            ),
            (
                "shoal_tracking_keys",
                "Keys remembered for tracking clients (tracking_total_keys).",
                stats.keys as u64,
            ),
        ];
        encode_gauges(encoder, &gauges)
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_door(&mut encoder, "shoal", &self.shared.door)?;
        self.keyspace(&mut encoder)?;
        self.process(&mut encoder)?;
        self.tracking(&mut encoder)?;
        self.cluster(&mut encoder)?;
        self.replication(&mut encoder)?;
        self.hot_keys(&mut encoder)?;
        self.http.encode(&mut encoder, "shoal")
    }
}

/// Hot keys a page shows, per measure: few, so that the `key` label stays bounded.
const HOT_KEYS_SHOWN: usize = 10;

/// A key as a label value: printable ASCII kept (but `"` and `\`), anything else `?`, at
/// most 100 characters.
fn key_label(key: &[u8]) -> String {
    key.iter()
        .take(100)
        .map(|&b| match b {
            b'"' | b'\\' => '?',
            0x20..=0x7e => b as char,
            _ => '?',
        })
        .collect()
}

impl NodeCollector {
    /// The background hot-key sample's heaviest keys (none while a `HOTKEYS` session has the
    /// sample), by sampled requests and by sampled network bytes, and the sampling ratio.
    fn hot_keys(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.shared.door.stats;
        let top = stats.hotkeys.background_top(stats, HOT_KEYS_SHOWN);
        for (name, help, heavy) in [
            (
                "shoal_hotkey_sampled_requests",
                "The hottest keys by sampled requests (one request in shoal_hotkey_sample_ratio is sampled; an estimate, at most its error above the truth).",
                &top.by_requests,
            ),
            (
                "shoal_hotkey_sampled_net_bytes",
                "The hottest keys by network bytes of their sampled requests.",
                &top.by_net_bytes,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for h in heavy.iter() {
                let key = key_label(&h.key);
                gauge(h.count).encode(family.encode_family(&[("key", key.as_str())])?)?;
            }
        }
        encode_gauges(
            encoder,
            &[(
                "shoal_hotkey_sample_ratio",
                "One command in this many is sampled for hot keys in the background (0: none).",
                u64::from(stats.hotkeys.background_ratio()),
            )],
        )
    }

    /// On a primary, each replica's lag: in bytes not yet acknowledged, and in seconds since
    /// its last acknowledgement (Redis's `lag=` in `INFO replication`). One series per
    /// replica, labelled with its address.
    fn replica_lags(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let lags: Vec<(String, u64, f64)> = self
            .shared
            .replication
            .replica_lags()
            .into_iter()
            .map(|lag| (lag.addr, lag.lag_bytes, lag.ack_age_ms as f64 / 1000.0))
            .collect();
        let mut bytes = encoder.encode_descriptor(
            "shoal_replication_replica_lag_bytes",
            "A replica of this primary: bytes of the stream it has not acknowledged yet.",
            None,
            MetricType::Gauge,
        )?;
        for (replica, lag, _) in &lags {
            gauge(*lag).encode(bytes.encode_family(&[("replica", replica.as_str())])?)?;
        }
        let mut seconds = encoder.encode_descriptor(
            "shoal_replication_replica_ack_age",
            "A replica of this primary: time since its last acknowledgement (Redis's lag=).",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (replica, _, age) in &lags {
            ConstGauge::new(*age)
                .encode(seconds.encode_family(&[("replica", replica.as_str())])?)?;
        }
        Ok(())
    }

    /// Replication's families.
    fn replication(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let r = &self.shared.replication;
        let offset = r.offset();
        let (replicas, worst_lag) = {
            let peers = r.replicas.lock();
            let lag = peers
                .iter()
                .map(|p| offset.saturating_sub(p.ack.load(Relaxed)))
                .max()
                .unwrap_or(0);
            (peers.len(), lag)
        };
        self.replica_lags(encoder)?;
        let is_replica = matches!(r.role(), crate::replication::Role::Replica(_));
        let gauges = [
            (
                "shoal_replication_offset_bytes",
                "Bytes of the replication stream this node has written (primary) or applied (replica).",
                offset,
            ),
            (
                "shoal_replication_replicas",
                "Replicas streaming from this primary.",
                replicas as u64,
            ),
            (
                "shoal_replication_lag_bytes",
                "Bytes the furthest-behind replica has yet to acknowledge.",
                worst_lag,
            ),
            (
                "shoal_replication_link_up",
                "A replica: 1 while its link to its primary is up.",
                u64::from(is_replica && r.link.up.load(Relaxed)),
            ),
        ];
        encode_gauges(encoder, &gauges)?;
        let counters = [
            (
                "shoal_replication_full_resyncs_served",
                "Full resyncs this primary served (Redis's sync_full).",
                r.stats.sync_full.load(Relaxed),
            ),
            (
                "shoal_replication_partial_resyncs_served",
                "Partial resyncs this primary served (sync_partial_ok).",
                r.stats.sync_partial_ok.load(Relaxed),
            ),
            (
                "shoal_replication_full_resyncs",
                "Full resyncs this replica went through.",
                r.link.full_syncs.load(Relaxed),
            ),
            (
                "shoal_replication_partial_resyncs",
                "Partial resyncs this replica went through.",
                r.link.partial_syncs.load(Relaxed),
            ),
        ];
        encode_counters(encoder, &counters)?;
        Ok(())
    }

    /// Cluster mode's families (none on a standalone node).
    fn cluster(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(cluster) = &self.shared.cluster else {
            return Ok(());
        };
        let map = cluster.map();
        let count = |n: usize| n as u64;
        let gauges = [
            (
                "shoal_cluster_epoch",
                "Epoch of the cluster map this node routes by.",
                map.epoch,
            ),
            (
                "shoal_cluster_nodes",
                "Nodes in the cluster map.",
                count(map.nodes.len()),
            ),
            (
                "shoal_cluster_shards",
                "Shards in the cluster map.",
                count(map.shards.len()),
            ),
            (
                "shoal_cluster_failed_nodes",
                "Nodes the controller marked failed.",
                count(map.nodes.values().filter(|n| !n.is_ok()).count()),
            ),
            (
                "shoal_cluster_slots_owned",
                "Slots this node serves as primary.",
                count(
                    map.placement_of(cluster.myself().id)
                        .filter(|(_, role)| *role == shoal_cluster::Role::Primary)
                        .map_or(0, |(shard, _)| map.slots.count(shard.id)),
                ),
            ),
            (
                "shoal_cluster_slots_migrating",
                "Slots on their way from one shard to another with their keys (the map's migrations).",
                count(
                    map.migrations
                        .iter()
                        .map(shoal_cluster::Migration::count)
                        .sum(),
                ),
            ),
        ];
        encode_gauges(encoder, &gauges)?;
        let stats = &cluster.migration_stats;
        for (name, help, us) in [
            (
                "shoal_migration_pause_max",
                "The longest write pause of this node's slot hand-overs.",
                stats.pause_max_us.load(Relaxed),
            ),
            (
                "shoal_migration_pause_p99",
                "The 99th percentile write pause of this node's last 1024 slot hand-overs.",
                stats.pause_quantile_us(0.99),
            ),
            (
                "shoal_migration_pause_drain_max",
                "The longest wait of a hand-over for the writes under way when it paused them.",
                stats.phase_max_us.drain_us.load(Relaxed),
            ),
            (
                "shoal_migration_pause_catch_up_max",
                "The longest wait of a hand-over for the target to acknowledge the slots' last changes.",
                stats.phase_max_us.catch_up_us.load(Relaxed),
            ),
            (
                "shoal_migration_pause_commit_max",
                "The longest wait of a hand-over for the controller's map that moves the slots.",
                stats.phase_max_us.commit_us.load(Relaxed),
            ),
        ] {
            let seconds = ConstGauge::new(us as f64 / 1e6);
            single(encoder, name, help, Some(&Unit::Seconds), seconds)?;
        }
        let health = cluster.health();
        let node = cluster.node();
        let voters = map.controllers.len();
        let flags = [
            (
                "shoal_controller_quorum",
                "1 while the controller's leader, sure of its majority, answers this node; 0 \
                 once it has not for a node timeout (no failover, join or removal meanwhile).",
                u64::from(health.controller_quorum),
            ),
            (
                "shoal_controller_leader",
                "1 if this node hosts the controller's leader.",
                u64::from(health.leads),
            ),
            (
                "shoal_controller_voters",
                "Voters of the controller's Raft group, as the map records them.",
                count(voters),
            ),
            (
                "shoal_controller_term",
                "The Raft term of this node's controller member (0 on a node that is none).",
                node.and_then(|n| n.controller()).map_or(0, |c| c.term()),
            ),
            (
                "shoal_cluster_primary",
                "1 if this node is a primary in its map.",
                u64::from(health.primary),
            ),
            (
                "shoal_cluster_serving",
                "0 if this node is a primary without a lease (it serves no writes), else 1.",
                u64::from(health.serving),
            ),
            (
                "shoal_cluster_silent_primaries",
                "Primaries that stopped asking this node for peer leases while the controller \
                 has lost its majority (their slots are likely unserved).",
                count(health.silent_primaries.len()),
            ),
        ];
        encode_gauges(encoder, &flags)?;
        let mut family = encoder.encode_descriptor(
            "shoal_cluster_lease_age",
            "Time since this node last got a lease, by source: the controller, or a majority of \
             the nodes (peers). A primary serves while the newest is under half the node \
             timeout.",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        if let Some(node) = node {
            for (source, age) in [
                ("controller", node.since_controller_lease()),
                ("peers", node.since_peer_lease()),
            ] {
                if let Some(age) = age {
                    ConstGauge::new(age.as_secs_f64())
                        .encode(family.encode_family(&[("source", source)])?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "shoal_cluster_shard_up",
            "1 if the shard's primary is healthy in the map (and, while the controller has lost \
             its majority, still asks this node for peer leases), else 0.",
            None,
            MetricType::Gauge,
        )?;
        for shard in &map.shards {
            let up = map.node(shard.primary).is_some_and(|n| n.is_ok())
                && !health.silent_primaries.contains(&shard.primary);
            let id = shard.id.to_string();
            gauge(u64::from(up)).encode(family.encode_family(&[("shard", id.as_str())])?)?;
        }
        let stats = &cluster.stats;
        let counters = [
            (
                "shoal_cluster_redirects",
                "Commands answered -MOVED (their slot is another node's).",
                stats.redirects.load(Relaxed),
            ),
            (
                "shoal_cluster_forwarded",
                "Commands forwarded to their slot's owner (routing forward).",
                stats.forwarded.load(Relaxed),
            ),
            (
                "shoal_cluster_fenced",
                "Commands refused because this primary's lease (from the controller or its peers) had run out.",
                stats.fenced.load(Relaxed),
            ),
            (
                "shoal_cluster_stale_replica_reads",
                "READONLY reads this replica sent to its primary (-MOVED) because it had not heard from it within replica-read-max-staleness.",
                stats.stale_reads.load(Relaxed),
            ),
            (
                "shoal_cluster_keys_dropped",
                "Keys removed because their slot left this node.",
                stats.keys_dropped.load(Relaxed),
            ),
            (
                "shoal_migration_keys_sent",
                "Keys this node sent in snapshots of slots migrating away.",
                cluster.migration_stats.keys_sent.load(Relaxed),
            ),
            (
                "shoal_migration_keys_received",
                "Keys this node received in snapshots of slots migrating here.",
                cluster.migration_stats.keys_received.load(Relaxed),
            ),
            (
                "shoal_migration_hand_overs",
                "Slot hand-overs this node made as a migration's source (taken or not).",
                cluster.migration_stats.hand_overs.load(Relaxed),
            ),
            (
                "shoal_migration_slots_handed_over",
                "Slots this node handed over to another shard with their keys.",
                cluster.migration_stats.slots_handed_over.load(Relaxed),
            ),
            (
                "shoal_cluster_bus_auth_failures",
                "Cluster bus connections closed because they did not prove the cluster secret (or, with tls-cluster, failed the TLS handshake).",
                node.map_or(0, |n| n.bus_auth_failures()),
            ),
        ];
        encode_counters(encoder, &counters)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::http::{Method, StatusCode};
    use shoal_frontdoor::metrics::Exporter;

    use super::*;
    use crate::config::Config;

    fn exporter() -> (Arc<Shared>, Arc<HttpStats>, Exporter) {
        let shared = Shared::new(Config {
            port: 0,
            http_port: 0,
            threads: 1,
            ..Config::default()
        });
        let http = Arc::new(HttpStats::default());
        let exporter = Exporter::new(NodeCollector::new(shared.clone(), http.clone()));
        (shared, http, exporter)
    }

    #[test]
    fn commands_are_exported_by_name_and_result() {
        let (shared, _, exporter) = exporter();
        let worker = shared.door.stats.this_thread();
        let get = shoal_frontdoor::table()
            .lookup(b"get")
            .expect("GET exists")
            .id as usize;
        worker.record_call(get, 3, false);
        worker.record_call(get, 5_000_000, true);
        worker.record_rejected(get);
        shared.door.stats.record_error("WRONGTYPE");
        let text = exporter.render();
        for line in [
            "shoal_commands_total{command=\"get\",result=\"ok\"} 1",
            "shoal_commands_total{command=\"get\",result=\"error\"} 1",
            "shoal_commands_total{command=\"get\",result=\"rejected\"} 1",
            "shoal_command_duration_seconds_count{command=\"get\"} 2",
            "shoal_command_duration_seconds_bucket{le=\"+Inf\",command=\"get\"} 2",
            "shoal_errors_total{code=\"WRONGTYPE\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(
            !text.contains("command=\"set\""),
            "uncalled commands are skipped"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn tracking_families_are_exported() {
        let (shared, _, exporter) = exporter();
        // No tracking client: a flush sends nothing.
        shared.door.invalidate_all();
        let text = exporter.render();
        for line in [
            "# TYPE shoal_tracking_invalidations counter",
            "shoal_tracking_invalidations_total 0",
            "shoal_tracking_clients 0",
            "shoal_tracking_keys 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
    }

    #[test]
    fn http_requests_are_counted_by_method_and_code() {
        let (_, http, exporter) = exporter();
        http.record(
            &Method::GET,
            StatusCode::NOT_FOUND,
            Duration::from_micros(3),
        );
        http.record(
            &Method::PATCH,
            StatusCode::METHOD_NOT_ALLOWED,
            Duration::from_secs(9),
        );
        assert_eq!(http.requests("GET", 404), 1);
        assert_eq!(http.requests("other", 405), 1);
        let text = exporter.render();
        assert!(text.contains("shoal_http_requests_total{method=\"GET\",code=\"404\"} 1"));
        assert!(text.contains("shoal_http_request_duration_seconds_count{method=\"other\"} 1"));
    }
}
