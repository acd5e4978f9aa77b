//! State every connection and background task of a node shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;
use shoal_proto::Limits;
use shoal_store::{Store, StoreConfig, SystemClock};

use crate::clients::Clients;
use crate::cluster::ClusterState;
use crate::config::Config;
use crate::dispatch::CommandTable;
use crate::replication::Replication;
use crate::slowlog::SlowLog;
use crate::stats::Stats;

/// Settings read on the request path, mirrored from the [`Config`] into atomics.
#[derive(Default)]
pub struct LiveSettings {
    max_bulk_len: AtomicUsize,
    max_args: AtomicUsize,
    max_key_size: AtomicUsize,
    query_buffer_limit: AtomicUsize,
    output_hard: AtomicUsize,
    output_soft: AtomicUsize,
    output_soft_seconds: AtomicU64,
    maxclients: AtomicUsize,
    timeout_seconds: AtomicU64,
    password_required: AtomicBool,
    hz: AtomicU64,
    min_replicas_to_write: AtomicUsize,
    min_replicas_max_lag: AtomicU64,
}

impl LiveSettings {
    fn apply(&self, c: &Config) {
        self.max_bulk_len
            .store(c.proto_max_bulk_len.0 as usize, Relaxed);
        self.max_args
            .store(c.proto_max_multibulk_len as usize, Relaxed);
        self.max_key_size.store(c.max_key_size.0 as usize, Relaxed);
        self.query_buffer_limit
            .store(c.client_query_buffer_limit.0 as usize, Relaxed);
        self.output_hard
            .store(c.client_output_buffer_limit.hard as usize, Relaxed);
        self.output_soft
            .store(c.client_output_buffer_limit.soft as usize, Relaxed);
        self.output_soft_seconds
            .store(c.client_output_buffer_limit.soft_seconds, Relaxed);
        self.maxclients.store(c.maxclients as usize, Relaxed);
        self.timeout_seconds.store(c.timeout, Relaxed);
        self.password_required
            .store(!c.requirepass.is_empty(), Relaxed);
        self.hz.store(c.hz, Relaxed);
        self.min_replicas_to_write
            .store(c.min_replicas_to_write as usize, Relaxed);
        self.min_replicas_max_lag
            .store(c.min_replicas_max_lag, Relaxed);
    }

    /// `min-replicas-to-write` and `min-replicas-max-lag` (0 replicas: no requirement).
    #[inline]
    pub fn min_replicas(&self) -> (usize, Duration) {
        (
            self.min_replicas_to_write.load(Relaxed),
            Duration::from_secs(self.min_replicas_max_lag.load(Relaxed)),
        )
    }

    /// The parser limits.
    #[inline]
    pub fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.max_bulk_len.load(Relaxed),
            max_args: self.max_args.load(Relaxed),
        }
    }

    /// `proto-max-bulk-len`: also the largest string a command may build.
    #[inline]
    pub fn max_bulk_len(&self) -> usize {
        self.max_bulk_len.load(Relaxed)
    }

    /// `max-key-size`.
    #[inline]
    pub fn max_key_size(&self) -> usize {
        self.max_key_size.load(Relaxed)
    }

    /// `client-query-buffer-limit`.
    #[inline]
    pub fn query_buffer_limit(&self) -> usize {
        self.query_buffer_limit.load(Relaxed)
    }

    /// `client-output-buffer-limit` for normal clients: (hard, soft, soft seconds).
    #[inline]
    pub fn output_limits(&self) -> (usize, usize, u64) {
        (
            self.output_hard.load(Relaxed),
            self.output_soft.load(Relaxed),
            self.output_soft_seconds.load(Relaxed),
        )
    }

    /// `maxclients`.
    pub fn maxclients(&self) -> usize {
        self.maxclients.load(Relaxed)
    }

    /// `timeout` in seconds (0: none).
    pub fn timeout_seconds(&self) -> u64 {
        self.timeout_seconds.load(Relaxed)
    }

    /// Whether `requirepass` is set.
    #[inline]
    pub fn password_required(&self) -> bool {
        self.password_required.load(Relaxed)
    }

    /// `hz`.
    pub fn hz(&self) -> u64 {
        self.hz.load(Relaxed)
    }
}

/// A node's shared state.
pub struct Shared {
    /// The keyspace.
    pub store: Store,
    /// The whole configuration (for `CONFIG GET` and rare readers).
    pub config: RwLock<Config>,
    /// Settings read on the request path.
    pub live: LiveSettings,
    /// Connected clients.
    pub clients: Clients,
    /// Statistics.
    pub stats: Stats,
    /// The slow log.
    pub slowlog: SlowLog,
    /// Every command.
    pub commands: CommandTable,
    /// When the node started.
    pub started: Instant,
    /// When the node started, in Unix seconds.
    pub started_unix: u64,
    /// A random id for this run (`run_id` in `INFO`).
    pub run_id: String,
    /// Where the RESP listener is bound.
    pub resp_addr: RwLock<Option<SocketAddr>>,
    /// Where the HTTP listener is bound, if it runs.
    pub http_addr: RwLock<Option<SocketAddr>>,
    /// Cluster mode's state, if the node runs in a cluster.
    pub cluster: Option<Arc<ClusterState>>,
    /// Replication: the stream to replicas, or the link to a primary.
    pub replication: Arc<Replication>,
    shutdown: tokio::sync::watch::Sender<bool>,
    memory_peak: AtomicU64,
}

impl Shared {
    /// Whether `min-replicas-to-write` refuses writes now (Redis's semantics): this node is
    /// not a replica and fewer replicas acknowledged within `min-replicas-max-lag` than it
    /// asks. Both the RESP and the HTTP write paths ask.
    pub fn too_few_good_replicas(&self) -> bool {
        let (min_replicas, max_lag) = self.live.min_replicas();
        min_replicas > 0
            && !matches!(
                self.replication.role(),
                crate::replication::Role::Replica(_)
            )
            && self.replication.good_replicas(max_lag) < min_replicas
    }

    /// Shared state for `config` (which must be valid), standalone.
    pub fn new(config: Config) -> Arc<Shared> {
        Shared::with_cluster(config, None)
    }

    /// Shared state for `config` (which must be valid), in a cluster if `cluster` is given.
    pub fn with_cluster(config: Config, cluster: Option<ClusterState>) -> Arc<Shared> {
        let store = Store::new(StoreConfig {
            shards: config.effective_shards(),
            maxmemory: config.maxmemory.0 as usize,
            policy: config.maxmemory_policy,
            clock: Arc::new(SystemClock),
            events: None,
            seed: None,
        });
        let replication = Replication::new(config.repl_backlog_size.0 as usize);
        store.set_journal(Some(replication.journal()));
        let commands = CommandTable::new();
        let live = LiveSettings::default();
        live.apply(&config);
        let run_id = (0..40)
            .map(|i| {
                let nibble = (shoal_store_random() >> ((i % 16) * 4)) & 0xF;
                char::from_digit(nibble as u32, 16).expect("a nibble is a hex digit")
            })
            .collect();
        Arc::new(Shared {
            stats: Stats::new(commands.len()),
            slowlog: SlowLog::new(config.slowlog_log_slower_than, config.slowlog_max_len),
            store,
            live,
            clients: Clients::default(),
            commands,
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            run_id,
            resp_addr: RwLock::new(None),
            http_addr: RwLock::new(None),
            cluster: cluster.map(Arc::new),
            replication,
            shutdown: tokio::sync::watch::channel(false).0,
            memory_peak: AtomicU64::new(0),
            config: RwLock::new(config),
        })
    }

    /// Replaces the configuration (after `CONFIG SET`) and applies what can change at run time.
    pub fn apply_config(&self, config: Config) {
        self.live.apply(&config);
        self.store.set_maxmemory(config.maxmemory.0 as usize);
        self.store.set_policy(config.maxmemory_policy);
        self.replication
            .history()
            .backlog
            .set_capacity(config.repl_backlog_size.0 as usize);
        self.slowlog
            .configure(config.slowlog_log_slower_than, config.slowlog_max_len);
        *self.config.write() = config;
    }

    /// Asks every listener, connection and background task to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether shutdown was requested.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that sees `true` once shutdown is requested.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Records `used` bytes as a candidate peak; returns the peak so far (`used_memory_peak`).
    pub fn note_memory_peak(&self, used: u64) -> u64 {
        self.memory_peak.fetch_max(used, Relaxed).max(used)
    }

    /// Seconds since the node started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

fn shoal_store_random() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(Instant::now())
}

use std::hash::BuildHasher as _;
