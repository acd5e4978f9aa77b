//! What a node's connections and background tasks share: the keyspace, the configuration,
//! the front door's state, cluster mode and replication.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use parking_lot::RwLock;
use shoal_frontdoor::tls::{TlsAcceptor, TlsError};
use shoal_frontdoor::{Door, Limits};
use shoal_store::{LatencyEvent, LatencySink, Store, StoreConfig, SystemClock};

use crate::changes::Changes;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::notify::KeyspaceEvents;
use crate::replication::{Replication, Role};
use crate::watch::Watches;

/// The node's settings read on the request path (the front door keeps its own), mirrored
/// from the [`Config`] into atomics.
#[derive(Default)]
pub(crate) struct LiveSettings {
    max_key_size: AtomicUsize,
    hz: AtomicU64,
    min_replicas_to_write: AtomicUsize,
    min_replicas_max_lag: AtomicU64,
    replica_read_max_staleness: AtomicU64,
}

impl LiveSettings {
    fn apply(&self, c: &Config) {
        self.max_key_size.store(c.max_key_size.0 as usize, Relaxed);
        self.hz.store(c.hz, Relaxed);
        self.min_replicas_to_write
            .store(c.min_replicas_to_write as usize, Relaxed);
        self.min_replicas_max_lag
            .store(c.min_replicas_max_lag, Relaxed);
        self.replica_read_max_staleness
            .store(c.replica_read_max_staleness, Relaxed);
    }

    /// `replica-read-max-staleness` (zero: no bound).
    #[inline]
    pub(crate) fn replica_read_max_staleness(&self) -> Duration {
        Duration::from_millis(self.replica_read_max_staleness.load(Relaxed))
    }

    /// `min-replicas-to-write` and `min-replicas-max-lag` (0 replicas: no requirement).
    #[inline]
    pub(crate) fn min_replicas(&self) -> (usize, Duration) {
        (
            self.min_replicas_to_write.load(Relaxed),
            Duration::from_secs(self.min_replicas_max_lag.load(Relaxed)),
        )
    }

    /// `max-key-size`.
    #[inline]
    pub(crate) fn max_key_size(&self) -> usize {
        self.max_key_size.load(Relaxed)
    }

    /// `hz`.
    pub(crate) fn hz(&self) -> u64 {
        self.hz.load(Relaxed)
    }
}

/// The front door's settings in `config`.
fn door_limits(c: &Config) -> Limits {
    Limits {
        max_bulk_len: c.proto_max_bulk_len.0 as usize,
        max_args: c.proto_max_multibulk_len as usize,
        query_buffer_limit: c.client_query_buffer_limit.0 as usize,
        output: c.client_output_buffer_limit.into(),
        pubsub_output: c.client_output_buffer_limit.pubsub_limit(),
        maxclients: c.maxclients as usize,
        timeout_seconds: c.timeout,
    }
}

/// A node's shared state.
pub struct Shared {
    /// The keyspace.
    pub store: Arc<Store>,
    /// The whole configuration (for `CONFIG GET` and rare readers).
    pub config: RwLock<Config>,
    /// The node's settings read on the request path.
    pub(crate) live: LiveSettings,
    /// The front door: its settings, clients, statistics, slow log, shutdown signal.
    pub door: Arc<Door>,
    /// Where the RESP listener is bound.
    pub(crate) resp_addr: RwLock<Option<SocketAddr>>,
    /// Where the HTTP listener is bound, if it runs.
    pub(crate) http_addr: RwLock<Option<SocketAddr>>,
    /// Cluster mode's state, if the node runs in a cluster.
    pub(crate) cluster: Option<Arc<ClusterState>>,
    /// Replication: the stream to replicas, or the link to a primary.
    pub(crate) replication: Arc<Replication>,
    /// The keys connections `WATCH`.
    pub(crate) watches: Arc<Watches>,
    /// Keyspace notifications (`notify-keyspace-events`).
    pub(crate) events: Arc<KeyspaceEvents>,
    /// The script cache.
    pub(crate) scripts: crate::scripting::Scripts,
    /// Redis 7 functions' libraries (shared with the replication link, which restores a
    /// primary's).
    pub(crate) functions: Arc<crate::scripting::Functions>,
    memory_peak: AtomicU64,
    /// The TLS port's handshakes, once the node serves one.
    pub(crate) tls: std::sync::OnceLock<Arc<TlsAcceptor>>,
    /// Why the node stopped by itself, if it did (see [`Shared::fail`]).
    failure: parking_lot::Mutex<Option<String>>,
}

/// The store's slow background work (`expire-cycle`, `eviction-cycle`, `eviction-del`) in the
/// front door's latency monitor, under its `latency-monitor-threshold`.
struct StoreLatency(Arc<Door>);

impl LatencySink for StoreLatency {
    fn threshold_ms(&self) -> u64 {
        self.0.latency.threshold()
    }

    fn record(&self, event: LatencyEvent, ms: u64) {
        self.0.latency.add(event.name(), ms);
    }
}

impl Shared {
    /// Shared state for `config` (which must be valid), standalone.
    pub fn new(config: Config) -> Arc<Shared> {
        Shared::with_cluster(config, None)
    }

    /// Shared state for `config` (which must be valid), in a cluster if `cluster` is given.
    pub(crate) fn with_cluster(config: Config, cluster: Option<ClusterState>) -> Arc<Shared> {
        let door = Door::new(door_limits(&config), Some(&config.requirepass));
        door.settings.set_protected_mode(config.protected_mode);
        if !config.aclfile.is_empty() {
            door.acl.set_file(Some(config.aclfile.clone().into()));
        }
        door.slowlog
            .configure(config.slowlog_log_slower_than, config.slowlog_max_len);
        door.latency.set_threshold(config.latency_monitor_threshold);
        door.tracking
            .set_max_keys(config.tracking_table_max_keys as usize);
        // The background hot-key sampling's ratio (0: off), for measuring its cost
        // (`bench/hotkeys-cost.sh`); 1 in 64 by default.
        if let Some(ratio) = std::env::var("SHOAL_HOTKEYS_SAMPLE_RATIO")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            door.stats.hotkeys.set_background_ratio(&door.stats, ratio);
        }
        let door = Arc::new(door);
        if let Some(cluster) = &cluster {
            cluster.attach_pubsub(door.pubsub.clone());
            cluster.attach_tracking(door.clone());
        }
        let events = Arc::new(KeyspaceEvents::new(door.clone()));
        events.set_classes(config.keyspace_event_classes());
        let store = Arc::new(Store::new(StoreConfig {
            shards: config.effective_shards(),
            maxmemory: config.maxmemory.0 as usize,
            policy: config.maxmemory_policy,
            clock: Arc::new(SystemClock),
            events: Some(events.clone()),
            seed: None,
        }));
        store.set_hash_limits(
            config.hash_max_listpack_entries as usize,
            config.hash_max_listpack_value.0 as usize,
        );
        store.set_lfu(config.lfu_log_factor as u32, config.lfu_decay_time as u32);
        store.set_latency_sink(Some(Arc::new(StoreLatency(door.clone()))));
        let replication = Replication::new(config.repl_backlog_size.0 as usize);
        let watches = Arc::new(Watches::default());
        store.set_journal(Some(Arc::new(Changes {
            replication: replication.journal(),
            watches: watches.clone(),
            door: door.clone(),
        })));
        let live = LiveSettings::default();
        live.apply(&config);
        Arc::new(Shared {
            store,
            live,
            door,
            events,
            resp_addr: RwLock::new(None),
            http_addr: RwLock::new(None),
            cluster: cluster.map(Arc::new),
            replication,
            watches,
            scripts: crate::scripting::Scripts::default(),
            functions: Arc::default(),
            memory_peak: AtomicU64::new(0),
            tls: std::sync::OnceLock::new(),
            failure: parking_lot::Mutex::new(None),
            config: RwLock::new(config),
        })
    }

    /// Replaces the configuration (after `CONFIG SET`) and applies what can change at run time.
    pub fn apply_config(&self, config: Config) {
        self.live.apply(&config);
        self.door.settings.set_limits(&door_limits(&config));
        if config.requirepass != self.config.read().requirepass {
            // As Redis's `CONFIG SET requirepass`: the default user's passwords are replaced.
            self.door
                .acl
                .set_default_password(Some(&config.requirepass));
        }
        self.door.settings.set_protected_mode(config.protected_mode);
        self.door
            .slowlog
            .configure(config.slowlog_log_slower_than, config.slowlog_max_len);
        self.door
            .latency
            .set_threshold(config.latency_monitor_threshold);
        self.store.set_maxmemory(config.maxmemory.0 as usize);
        self.store
            .set_lfu(config.lfu_log_factor as u32, config.lfu_decay_time as u32);
        self.store.set_policy(config.maxmemory_policy);
        self.store.set_hash_limits(
            config.hash_max_listpack_entries as usize,
            config.hash_max_listpack_value.0 as usize,
        );
        self.events.set_classes(config.keyspace_event_classes());
        self.door
            .tracking
            .set_max_keys(config.tracking_table_max_keys as usize);
        self.replication
            .history()
            .backlog
            .set_capacity(config.repl_backlog_size.0 as usize);
        *self.config.write() = config;
    }

    /// Reads the TLS certificate, key and CA files again (`SIGHUP`, `CONFIG SET tls-...`)
    /// with the configuration's TLS settings: new handshakes use them (on the TLS port, HTTPS,
    /// and with `tls-cluster` the cluster bus, both the connections it accepts and those the
    /// node opens), established connections keep theirs. If they do not make a working
    /// configuration, the ones in use stay and the error says why. `Ok(false)` if the node
    /// speaks no TLS there.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        let options = self.config.read().tls_options();
        self.reload_tls_with(&options)
    }

    /// [`Shared::reload_tls`] with these settings (`CONFIG SET`'s, before they are applied).
    pub(crate) fn reload_tls_with(
        &self,
        options: &shoal_frontdoor::tls::TlsOptions,
    ) -> Result<bool, TlsError> {
        let bus = self.cluster.as_ref().and_then(|c| c.bus_tls());
        if self.tls.get().is_none() && bus.is_none() {
            return Ok(false);
        }
        // Every configuration is built before any is swapped in: one that does not build
        // leaves them all as they were.
        let bus_configs = bus
            .map(|_| crate::cluster::bus_tls::BusTls::build(options))
            .transpose()?;
        if let Some(tls) = self.tls.get() {
            tls.reload(options)?;
        }
        if let (Some(bus), Some(configs)) = (bus, bus_configs) {
            bus.install(configs);
        }
        tracing::info!(cert = %options.cert_file, "TLS certificates reloaded");
        Ok(true)
    }

    /// Whether `min-replicas-to-write` refuses writes now (Redis's semantics): this node is
    /// not a replica and fewer replicas acknowledged within `min-replicas-max-lag` than it
    /// asks. Both the RESP and the HTTP write paths ask.
    pub(crate) fn too_few_good_replicas(&self) -> bool {
        let (min_replicas, max_lag) = self.live.min_replicas();
        min_replicas > 0
            && !matches!(self.replication.role(), Role::Replica(_))
            && self.replication.good_replicas(max_lag) < min_replicas
    }

    /// Asks every listener, connection and background task to stop.
    pub fn request_shutdown(&self) {
        self.door.request_shutdown();
    }

    /// Stops the node because it cannot go on (`reason` is logged and kept for
    /// [`Shared::failure`]).
    pub(crate) fn fail(&self, reason: String) {
        tracing::error!("{reason}");
        self.failure.lock().get_or_insert(reason);
        self.request_shutdown();
    }

    /// Why the node stopped by itself, if it failed.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.lock().clone()
    }

    /// Records `used` bytes as a candidate peak; returns the peak so far (`used_memory_peak`).
    pub(crate) fn note_memory_peak(&self, used: u64) -> u64 {
        self.memory_peak.fetch_max(used, Relaxed).max(used)
    }
}
