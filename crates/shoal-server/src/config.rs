//! A node's configuration: every setting with its Redis name and default, Redis's syntax for
//! sizes (`100mb`, `1gb`), TOML loading, and the parameter table `CONFIG GET`/`CONFIG SET` use.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use shoal_cluster::BUS_PORT_OFFSET;
use shoal_frontdoor::OutputLimit;
use shoal_frontdoor::tls::{ClientAuth, TlsOptions};
use shoal_store::EvictionPolicy;

/// A byte count written the way Redis accepts one: a plain number, or a number with `k` (1000),
/// `kb` (1024), `m`, `mb`, `g`, `gb` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses a size as a flag or a file gives it, with a message that says what a size looks
    /// like.
    pub fn from_arg(s: &str) -> Result<ByteSize, String> {
        s.parse()
            .map_err(|_| format!("'{s}' is not a size (use e.g. 100mb, 1gb, or bytes)"))
    }
}

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("argument must be a memory value")]
pub struct BadSize;

impl FromStr for ByteSize {
    type Err = BadSize;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| BadSize)?;
        let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" => 1000,
            "kb" => 1024,
            "m" => 1000 * 1000,
            "mb" => 1024 * 1024,
            "g" => 1000 * 1000 * 1000,
            "gb" => 1024 * 1024 * 1024,
            _ => return Err(BadSize),
        };
        n.checked_mul(multiplier).map(ByteSize).ok_or(BadSize)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => ByteSize::from_arg(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// Redis's `client-output-buffer-limit`: a client whose pending output exceeds `hard` bytes,
/// or stays above `soft` bytes for `soft_seconds`, is disconnected; zeros disable a limit.
/// Shoal keeps the `normal` class (Redis's default `0 0 0`) and the `pubsub` class for
/// subscribed clients (Redis's default `32mb 8mb 60`); the `replica` class is accepted and
/// shown with Redis's default, since a replica's stream has its own backlog bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputBufferLimit {
    /// Hard limit in bytes (normal clients).
    pub hard: u64,
    /// Soft limit in bytes (normal clients).
    pub soft: u64,
    /// How long the soft limit may be exceeded (normal clients).
    pub soft_seconds: u64,
    /// The limits of subscribed clients: hard, soft, soft seconds.
    pub pubsub: (u64, u64, u64),
}

impl Default for OutputBufferLimit {
    fn default() -> Self {
        OutputBufferLimit {
            hard: 0,
            soft: 0,
            soft_seconds: 0,
            pubsub: (32 << 20, 8 << 20, 60),
        }
    }
}

impl OutputBufferLimit {
    /// Parses `<class> <hard> <soft> <seconds> [<class> ...]` (sizes in Redis's syntax; a
    /// lone triple without a class is the `normal` class), as `CONFIG SET
    /// client-output-buffer-limit "normal 64mb 16mb 60 pubsub 32mb 8mb 60"`: the classes named
    /// change, the others keep their limits from `self`.
    pub fn with(self, s: &str) -> Result<Self, String> {
        const WRONG: &str = "Wrong number of arguments in buffer limit configuration.";
        const BAD: &str =
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let mut words: Vec<&str> = s.split_whitespace().collect();
        if words.len() == 3 {
            words.insert(0, "normal");
        }
        if words.is_empty() || !words.len().is_multiple_of(4) {
            return Err(WRONG.into());
        }
        let size = |w: &str| {
            w.parse::<ByteSize>()
                .map(|b| b.0)
                .map_err(|_| BAD.to_string())
        };
        let mut limits = self;
        for class in words.chunks(4) {
            let triple = (
                size(class[1])?,
                size(class[2])?,
                class[3].parse::<u64>().map_err(|_| BAD.to_string())?,
            );
            match class[0].to_ascii_lowercase().as_str() {
                "normal" => {
                    (limits.hard, limits.soft, limits.soft_seconds) = triple;
                }
                "pubsub" => limits.pubsub = triple,
                "replica" | "slave" => {}
                _ => {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    );
                }
            }
        }
        Ok(limits)
    }

    /// Parses a value from nothing (see [`OutputBufferLimit::with`]).
    pub fn parse(s: &str) -> Result<Self, String> {
        OutputBufferLimit::default().with(s)
    }

    /// The limits of subscribed clients.
    pub fn pubsub_limit(&self) -> OutputLimit {
        let (hard, soft, soft_seconds) = self.pubsub;
        OutputBufferLimit {
            hard,
            soft,
            soft_seconds,
            ..*self
        }
        .into()
    }
}

impl From<OutputBufferLimit> for OutputLimit {
    /// The `normal` class's limits.
    fn from(limit: OutputBufferLimit) -> OutputLimit {
        let bytes = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        OutputLimit {
            hard: bytes(limit.hard),
            soft: bytes(limit.soft),
            soft_seconds: limit.soft_seconds,
        }
    }
}

impl fmt::Display for OutputBufferLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hard, soft, seconds) = self.pubsub;
        write!(
            f,
            "normal {} {} {} slave 268435456 67108864 60 pubsub {hard} {soft} {seconds}",
            self.hard, self.soft, self.soft_seconds
        )
    }
}

impl Serialize for OutputBufferLimit {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for OutputBufferLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OutputBufferLimit::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "human" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format '{s}' (expected human or json)")),
        }
    }
}

fn policy_to_str<S: Serializer>(p: &EvictionPolicy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

fn policy_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<EvictionPolicy, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// Every setting of a node. Field names are Redis's configuration names in kebab case, which
/// is also how they appear in the TOML file, in `CONFIG GET` and (upper case, `_`) in `SHOAL_*`
/// environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Address the RESP and HTTP listeners bind to.
    pub bind: String,
    /// RESP port (0 picks a free one).
    pub port: u16,
    /// HTTP port for the JSON API and `/metrics` (0 disables it).
    pub http_port: u16,
    /// Worker threads serving clients (0: one per available CPU).
    pub threads: usize,
    /// Keyspace shards (0: 64 per worker thread, a power of two).
    pub shards: usize,
    /// Memory limit for `used_memory` (0: none).
    pub maxmemory: ByteSize,
    /// What to evict above `maxmemory`.
    #[serde(serialize_with = "policy_to_str", deserialize_with = "policy_from_str")]
    pub maxmemory_policy: EvictionPolicy,
    /// `lfu-log-factor`: how many accesses it takes to grow a key's LFU counter (Redis's
    /// default 10: about a million to saturate it).
    pub lfu_log_factor: u64,
    /// `lfu-decay-time`: minutes of idleness that take one off a key's LFU counter (0:
    /// never).
    pub lfu_decay_time: u64,
    /// `notify-keyspace-events`: the classes of keyspace notifications sent (Redis's letters;
    /// empty: none).
    pub notify_keyspace_events: String,
    /// `hash-max-listpack-entries` (alias `hash-max-ziplist-entries`): a hash with more
    /// fields is held in a table rather than packed in its entry.
    pub hash_max_listpack_entries: u64,
    /// `hash-max-listpack-value` (alias `hash-max-ziplist-value`): a hash with a longer field
    /// or value is held in a table rather than packed in its entry.
    pub hash_max_listpack_value: ByteSize,
    /// Largest bulk string a client may send.
    pub proto_max_bulk_len: ByteSize,
    /// Most arguments in one command.
    pub proto_max_multibulk_len: u64,
    /// Largest key a write may create.
    pub max_key_size: ByteSize,
    /// Largest unprocessed input a client may accumulate before it is disconnected.
    pub client_query_buffer_limit: ByteSize,
    /// Output limits for normal clients.
    pub client_output_buffer_limit: OutputBufferLimit,
    /// `tracking-table-max-keys`: most keys `CLIENT TRACKING` remembers (0: no limit); past
    /// it, keys are forgotten with an invalidation to their readers.
    pub tracking_table_max_keys: u64,
    /// Most simultaneous clients.
    pub maxclients: u64,
    /// Seconds of idleness after which a client is disconnected (0: never).
    pub timeout: u64,
    /// Password clients must give with `AUTH` or `HELLO ... AUTH` (empty: none).
    pub requirepass: String,
    /// The ACL file: users loaded at start and by `ACL LOAD`, written by `ACL SAVE` (empty:
    /// none; users then live until restart).
    pub aclfile: String,
    /// Without a password, turn away clients that are not on the loopback interface with
    /// Redis's `-DENIED` (Redis's `protected-mode`, on by default).
    pub protected_mode: bool,
    /// The user this node authenticates as to other nodes (replication, forwarding, joining),
    /// with `masterauth` (empty: the `default` user).
    pub masteruser: String,
    /// The password this node gives other nodes (empty: its `requirepass`).
    pub masterauth: String,
    /// RESP port for TLS clients (0: none). With it, `port = 0` serves TLS only.
    pub tls_port: u16,
    /// The server's certificate chain (PEM), for the TLS port and HTTPS.
    pub tls_cert_file: String,
    /// The certificate's private key (PEM).
    pub tls_key_file: String,
    /// CA certificates (PEM) client certificates must chain to.
    pub tls_ca_cert_file: String,
    /// A directory of more CA certificates (PEM files).
    pub tls_ca_cert_dir: String,
    /// Whether TLS clients must show a certificate: `yes` (Redis's default), `optional`
    /// or `no`.
    pub tls_auth_clients: String,
    /// TLS versions offered: `"TLSv1.2 TLSv1.3"`, either, or empty for both.
    pub tls_protocols: String,
    /// TLS 1.3 cipher suites, `:`-separated (empty: all).
    pub tls_ciphersuites: String,
    /// TLS 1.2 cipher suites, `:`-separated (empty: all).
    pub tls_ciphers: String,
    /// Whether the HTTP API is served over TLS (HTTPS), with the TLS port's certificate.
    pub http_tls: bool,
    /// Whether this node's links to other nodes' RESP ports (a replica's to its primary,
    /// forwarded commands) speak TLS, and the node announces its TLS port to the cluster.
    pub tls_replication: bool,
    /// Whether the cluster bus speaks TLS (Redis's `tls-cluster`): the node's bus accepts
    /// only TLS with a client certificate that the CA signed (whatever `tls-auth-clients`
    /// says), and its own bus connections speak TLS, checking their peers against the CA and
    /// showing `tls-cert-file`. The cluster secret is still proved, inside TLS.
    pub tls_cluster: bool,
    /// Most HTTP connections open at once (apart from RESP's `maxclients`).
    pub http_maxclients: u64,
    /// Seconds an HTTP connection may take to send a request's headers or the next piece of
    /// a body, or sit idle between requests, before it is closed.
    pub http_timeout: u64,
    /// Most bytes of HTTP request bodies held at once, over every connection.
    pub http_max_inflight_bytes: ByteSize,
    /// Host names HTTP requests may be addressed to (IP addresses always may): names,
    /// `.suffix` for a whole domain, or `*` for any. The node's announced hostname is added.
    pub http_allowed_hosts: String,
    /// Commands slower than this many microseconds go to the slow log (negative: none).
    pub slowlog_log_slower_than: i64,
    /// Entries the slow log keeps.
    pub slowlog_max_len: u64,
    /// The sampled access log's file (empty: no access log): one JSON line per sampled command
    /// (see [`shoal_frontdoor::access_log`]).
    pub access_log: String,
    /// The share of commands the access log records, 0 to 1.
    pub access_log_sample: f64,
    /// Past this size the access log is renamed `<file>.1` and a new one started.
    pub access_log_max_size: ByteSize,
    /// Commands that take at least this many milliseconds are samples of the latency monitor
    /// (`LATENCY ...`; 0: off, Redis's default).
    pub latency_monitor_threshold: u64,
    /// Background task frequency in Hz (active expiry, stats sampling), 1 to 500.
    pub hz: u64,
    /// Milliseconds a script (or function) may run before other clients are answered
    /// `-BUSY` and `SCRIPT KILL` / `FUNCTION KILL` may stop it (Redis's
    /// `busy-reply-threshold`, formerly `lua-time-limit`, also accepted; 0: at once).
    #[serde(alias = "lua-time-limit")]
    pub busy_reply_threshold: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter, as `RUST_LOG` takes it (`info`, `shoal_server=debug`, ...).
    pub log_level: String,
    /// The node's directory (Redis's `dir`): its id, the controller's Raft state and the last
    /// map it held, so a restart brings it back as itself. Keys are never written (empty: keep
    /// nothing, and a restarted node joins as a new one).
    pub dir: String,
    /// Whether the node is part of a cluster (implied by `cluster-join` and `controller`).
    pub cluster_enabled: bool,
    /// A member's RESP address (`host:port`) to join the cluster through; empty founds one.
    pub cluster_join: String,
    /// Seconds to keep trying to join through `cluster-join` before giving up (0: forever).
    pub cluster_join_timeout: u64,
    /// The file holding the cluster secret, which every bus connection proves (private to its
    /// owner: mode 0600). Empty: the one in `dir`, or for a node that founds a cluster a new
    /// one, written to `dir` (else `./shoal-cluster-secret`).
    pub cluster_secret_file: String,
    /// Cluster bus port (0: the RESP port + 10000, as Redis Cluster's bus).
    pub cluster_port: u16,
    /// Milliseconds without a heartbeat after which the controller marks a node failed.
    pub cluster_node_timeout: u64,
    /// Replicas per shard, for the cluster this node founds.
    pub cluster_replicas: u8,
    /// Whether the node may be a voter of the controller's Raft group.
    pub controller: bool,
    /// Whether the node joins as a spare: in no shard until one lacks a healthy replica.
    pub cluster_spare: bool,
    /// Whether the node joins to found a shard of its own even while a shard lacks a replica
    /// (it fills such a seat otherwise).
    pub cluster_new_shard: bool,
    /// The IP address other nodes and clients reach this node at (empty: `bind`, which must
    /// then be a single address in cluster mode).
    pub cluster_announce_ip: String,
    /// The RESP port other nodes and clients reach this node at, when a port mapping (a
    /// container's) puts it elsewhere than `port` (0: `port`).
    pub cluster_announce_port: u16,
    /// The cluster bus port other nodes reach this node at (0: the bus port it listens on).
    pub cluster_announce_bus_port: u16,
    /// The DNS name clients may know this node by, shown beside its address in `CLUSTER
    /// NODES`, `SHARDS` and `SLOTS` (empty: none).
    pub cluster_announce_hostname: String,
    /// The failure domain this node runs in (a rack, an availability zone); the controller
    /// spreads its voters across zones (empty: none).
    pub zone: String,
    /// Most voters of the controller's Raft group (odd): 3 while a cluster has fewer
    /// controller-eligible nodes than this, 1 below 3. Give every node the same value.
    pub controller_voters: usize,
    /// The share of its shard's requests that makes a key hot (0 to 1; 0 finds none): the
    /// controller publishes hot keys, and the proxy, smart clients and forwarding nodes spread
    /// their reads over the shard's replicas. The controller's leader's value counts.
    pub hot_key_share: f64,
    /// The requests a second below which no key is hot, whatever its share.
    pub hot_key_min_rate: u64,
    /// What a command for a slot another node owns gets: a redirection (`-MOVED`) or the
    /// owner's answer, forwarded by this node.
    pub routing: RoutingMode,
    /// Bytes of the replication stream a primary keeps for replicas that reconnect.
    pub repl_backlog_size: ByteSize,
    /// A primary refuses writes while fewer replicas than this acknowledged within
    /// `min-replicas-max-lag` seconds (0: never refuses).
    pub min_replicas_to_write: u64,
    /// How recent (seconds) a replica's acknowledgement must be to count as good.
    pub min_replicas_max_lag: u64,
    /// In a cluster, a replica serves a `READONLY` client's read only if its primary's stream
    /// reached it within this many milliseconds, and redirects it to the primary (`-MOVED`)
    /// otherwise; a primary with replicas writes to its stream at least every fifth of it.
    /// 0: replicas serve reads however long they have not heard from their primary (Redis's
    /// behaviour).
    pub replica_read_max_staleness: u64,
    /// Bytes a second at most that this node sends of a migration's snapshot to the shard
    /// importing its slots (0: as fast as the link goes). The slots' live changes are not
    /// held back.
    pub migration_max_bandwidth: ByteSize,
}

/// What a node does with a command for a slot it does not own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMode {
    /// Answer `-MOVED <slot> <host>:<port>`, as Redis Cluster does (cluster-aware clients).
    #[default]
    Redirect,
    /// Forward it to the owner and relay the reply, so plain clients can use any node.
    Forward,
}

impl fmt::Display for RoutingMode {
    /// The name `routing` takes (`CONFIG GET`, `--routing`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoutingMode::Redirect => "redirect",
            RoutingMode::Forward => "forward",
        })
    }
}

impl FromStr for RoutingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "redirect" | "moved" => Ok(RoutingMode::Redirect),
            "forward" => Ok(RoutingMode::Forward),
            _ => Err(format!(
                "unknown routing mode '{s}' (expected redirect or forward)"
            )),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: "127.0.0.1".into(),
            port: 6379,
            http_port: 8080,
            threads: 0,
            shards: 0,
            maxmemory: ByteSize(0),
            maxmemory_policy: EvictionPolicy::AllKeysLru,
            lfu_log_factor: u64::from(shoal_store::DEFAULT_LFU_LOG_FACTOR),
            lfu_decay_time: u64::from(shoal_store::DEFAULT_LFU_DECAY_TIME),
            notify_keyspace_events: String::new(),
            hash_max_listpack_entries: shoal_store::DEFAULT_MAX_PACKED_ENTRIES as u64,
            hash_max_listpack_value: ByteSize(shoal_store::DEFAULT_MAX_PACKED_VALUE as u64),
            proto_max_bulk_len: ByteSize(512 * 1024 * 1024),
            proto_max_multibulk_len: i32::MAX as u64,
            max_key_size: ByteSize(512 * 1024 * 1024),
            client_query_buffer_limit: ByteSize(1024 * 1024 * 1024),
            client_output_buffer_limit: OutputBufferLimit::default(),
            tracking_table_max_keys: shoal_frontdoor::tracking::DEFAULT_MAX_KEYS as u64,
            maxclients: 10_000,
            timeout: 0,
            requirepass: String::new(),
            aclfile: String::new(),
            protected_mode: true,
            masteruser: String::new(),
            masterauth: String::new(),
            tls_port: 0,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_ca_cert_file: String::new(),
            tls_ca_cert_dir: String::new(),
            tls_auth_clients: "yes".into(),
            tls_protocols: String::new(),
            tls_ciphersuites: String::new(),
            tls_ciphers: String::new(),
            http_tls: false,
            tls_replication: false,
            tls_cluster: false,
            http_maxclients: 1024,
            http_timeout: 10,
            http_max_inflight_bytes: ByteSize(1024 * 1024 * 1024),
            http_allowed_hosts: "localhost".into(),
            slowlog_log_slower_than: 10_000,
            slowlog_max_len: 128,
            latency_monitor_threshold: 0,
            access_log: String::new(),
            access_log_sample: 0.01,
            access_log_max_size: ByteSize(64 * 1024 * 1024),
            hz: 10,
            busy_reply_threshold: 5000,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            dir: String::new(),
            cluster_enabled: false,
            cluster_join: String::new(),
            cluster_join_timeout: 30,
            cluster_secret_file: String::new(),
            cluster_port: 0,
            cluster_node_timeout: 1000,
            cluster_replicas: 0,
            controller: false,
            cluster_spare: false,
            cluster_new_shard: false,
            cluster_announce_ip: String::new(),
            cluster_announce_port: 0,
            cluster_announce_bus_port: 0,
            cluster_announce_hostname: String::new(),
            zone: String::new(),
            controller_voters: 5,
            hot_key_share: 0.2,
            hot_key_min_rate: 1000,
            routing: RoutingMode::Redirect,
            repl_backlog_size: ByteSize(64 * 1024 * 1024),
            min_replicas_to_write: 0,
            min_replicas_max_lag: 10,
            replica_read_max_staleness: 50,
            migration_max_bandwidth: ByteSize(0),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The TOML file does not parse or names an unknown setting.
    #[error("invalid configuration file: {0}")]
    File(String),
    /// A setting has a value out of its range.
    #[error("invalid value for '{name}': {reason}")]
    Value {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// For a file written in redis.conf's `name value` lines instead of TOML's `name = value`:
/// a sentence saying so, with its first such line rewritten as TOML.
fn redis_conf_hint(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|line| {
        !line.is_empty() && !line.starts_with('#') && !line.starts_with('[') && !line.contains('=')
    })?;
    let (name, value) = line.split_once(char::is_whitespace)?;
    let value = value.trim().trim_matches('"');
    let value = match value {
        "yes" => "true".to_string(),
        "no" => "false".to_string(),
        v if v.parse::<i64>().is_ok() => v.to_string(),
        v => format!("\"{v}\""),
    };
    Some(format!(
        "the file must be TOML, not redis.conf: write `{name} = {value}` instead of `{line}`"
    ))
}

impl Config {
    /// Parses a TOML configuration; settings it leaves out keep their defaults.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| match redis_conf_hint(text) {
            Some(hint) => ConfigError::File(format!("{hint}\n{e}")),
            None => ConfigError::File(e.to_string()),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The TLS settings, as the front door takes them.
    pub fn tls_options(&self) -> TlsOptions {
        TlsOptions {
            cert_file: self.tls_cert_file.clone(),
            key_file: self.tls_key_file.clone(),
            ca_cert_file: self.tls_ca_cert_file.clone(),
            ca_cert_dir: self.tls_ca_cert_dir.clone(),
            auth_clients: ClientAuth::parse(&self.tls_auth_clients).unwrap_or_default(),
            protocols: self.tls_protocols.clone(),
            ciphersuites: self.tls_ciphersuites.clone(),
            ciphers: self.tls_ciphers.clone(),
        }
    }

    /// Whether the node serves plain RESP clients: on `port`, unless it has a TLS port and
    /// `port` is 0 (TLS only, as Redis's `port 0`).
    pub fn serves_plain(&self) -> bool {
        self.port != 0 || self.tls_port == 0
    }

    /// Whether any listener of the node serves TLS (the TLS port, or HTTPS).
    pub fn serves_tls(&self) -> bool {
        self.tls_port != 0 || (self.http_tls && self.http_port != 0)
    }

    /// The TLS rules that need no file: a TLS port needs a certificate and a key, and
    /// `tls-auth-clients` is `yes`, `no` or `optional` (the files are read at start).
    fn validate_tls(&self) -> Result<(), ConfigError> {
        let bad = |name, reason: String| Err(ConfigError::Value { name, reason });
        if let Err(reason) = ClientAuth::parse(&self.tls_auth_clients) {
            return bad("tls-auth-clients", reason);
        }
        if self.tls_replication && self.tls_port == 0 {
            return bad(
                "tls-replication",
                "needs tls-port: the nodes reach each other on their TLS ports".into(),
            );
        }
        if self.tls_replication
            && self.tls_ca_cert_file.is_empty()
            && self.tls_ca_cert_dir.is_empty()
        {
            return bad(
                "tls-replication",
                "needs tls-ca-cert-file or tls-ca-cert-dir (the CA the other nodes' \
                 certificates chain to)"
                    .into(),
            );
        }
        if self.tls_cluster && (self.tls_cert_file.is_empty() || self.tls_key_file.is_empty()) {
            return bad(
                "tls-cluster",
                "needs tls-cert-file and tls-key-file (the certificate the node shows the other \
                 nodes on the cluster bus, and its key)"
                    .into(),
            );
        }
        if self.tls_cluster && self.tls_ca_cert_file.is_empty() && self.tls_ca_cert_dir.is_empty() {
            return bad(
                "tls-cluster",
                "needs tls-ca-cert-file or tls-ca-cert-dir (the CA the other nodes' \
                 certificates chain to)"
                    .into(),
            );
        }
        if !self.serves_tls() {
            return Ok(());
        }
        if self.tls_cert_file.is_empty() || self.tls_key_file.is_empty() {
            return bad(
                if self.tls_port != 0 {
                    "tls-port"
                } else {
                    "http-tls"
                },
                "needs tls-cert-file and tls-key-file (the certificate and its key)".into(),
            );
        }
        if self.tls_port == 0 {
            return Ok(());
        }
        if self.tls_port == self.port {
            return bad("tls-port", "must differ from port".into());
        }
        if self.cluster_mode() && !self.serves_plain() && !self.tls_replication {
            return bad(
                "port",
                "a cluster node without a plain port needs tls-replication yes: its peers, the \
                 nodes that join through it and the cluster's clients then reach it on its TLS \
                 port"
                    .into(),
            );
        }
        Ok(())
    }

    /// The configuration as TOML (what `shoal server --print-config` shows).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("every setting serialises")
    }

    /// Checks every range rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |name, reason: &str| {
            Err(ConfigError::Value {
                name,
                reason: reason.to_string(),
            })
        };
        if self.proto_max_bulk_len.0 < 1024 * 1024 {
            return bad("proto-max-bulk-len", "must be at least 1mb");
        }
        if self.proto_max_multibulk_len == 0 || self.proto_max_multibulk_len > i32::MAX as u64 {
            return bad(
                "proto-max-multibulk-len",
                "must be between 1 and 2147483647",
            );
        }
        if self.client_query_buffer_limit.0 < 1024 * 1024 {
            return bad("client-query-buffer-limit", "must be at least 1mb");
        }
        if self.max_key_size.0 == 0 {
            return bad("max-key-size", "must be at least 1");
        }
        if let Err(reason) = crate::notify::parse_classes(&self.notify_keyspace_events) {
            return bad("notify-keyspace-events", &reason);
        }
        if self.maxclients == 0 {
            return bad("maxclients", "must be at least 1");
        }
        if self.cluster_spare && self.cluster_new_shard {
            return bad(
                "cluster-new-shard",
                "a node joins either as a spare or to found a shard, not both",
            );
        }
        if self.http_maxclients == 0 {
            return bad("http-maxclients", "must be at least 1");
        }
        if self.http_timeout == 0 {
            return bad("http-timeout", "must be at least 1 second");
        }
        if self.http_max_inflight_bytes.0 < 1024 * 1024 {
            return bad("http-max-inflight-bytes", "must be at least 1mb");
        }
        // Redis's range for both (a C `int`, at least 0).
        if self.lfu_log_factor > i32::MAX as u64 {
            return bad(
                "lfu-log-factor",
                "argument must be between 0 and 2147483647 inclusive",
            );
        }
        if self.lfu_decay_time > i32::MAX as u64 {
            return bad(
                "lfu-decay-time",
                "argument must be between 0 and 2147483647 inclusive",
            );
        }
        if !(1..=500).contains(&self.hz) {
            return bad("hz", "must be between 1 and 500");
        }
        if self.bind.parse::<std::net::IpAddr>().is_err() {
            return bad("bind", "must be an IP address");
        }
        self.validate_tls()?;
        if !self.cluster_announce_ip.is_empty()
            && self
                .cluster_announce_ip
                .parse::<std::net::IpAddr>()
                .is_err()
        {
            return bad("cluster-announce-ip", "must be an IP address");
        }
        self.validate_addressing()?;
        if !(0.0..=1.0).contains(&self.hot_key_share) {
            return bad("hot-key-share", "must be from 0 to 1 (0 finds no hot key)");
        }
        if self.controller_voters.is_multiple_of(2) || !(1..=9).contains(&self.controller_voters) {
            return bad("controller-voters", "must be odd, from 1 to 9");
        }
        if self.zone.len() > 64
            || self
                .zone
                .contains(|c: char| c.is_whitespace() || c.is_control())
        {
            return bad(
                "zone",
                "must be at most 64 characters, without spaces or control characters",
            );
        }
        if self.repl_backlog_size.0 < 16 * 1024 {
            return bad("repl-backlog-size", "must be at least 16kb");
        }
        if self.cluster_node_timeout < 100 {
            return bad(
                "cluster-node-timeout",
                "must be at least 100 (milliseconds)",
            );
        }
        if !self.cluster_join.is_empty()
            && shoal_cluster::seed::parse_node_addr(&self.cluster_join, None).is_err()
        {
            return bad("cluster-join", "must be host:port, e.g. 127.0.0.1:7000");
        }
        if self.cluster_mode()
            && self.cluster_port == 0
            && self.port.checked_add(BUS_PORT_OFFSET).is_none()
        {
            return bad(
                "cluster-port",
                "must be set when port + 10000 is not a valid port",
            );
        }
        Ok(())
    }

    /// Checks what the node announces to the cluster: a hostname Redis would accept, and an
    /// address others can reach (a node bound to every address must say which one that is).
    fn validate_addressing(&self) -> Result<(), ConfigError> {
        let hostname = &self.cluster_announce_hostname;
        if hostname.len() > 255
            || !hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ConfigError::Value {
                name: "cluster-announce-hostname",
                reason: "Hostnames may only contain alphanumeric characters, hyphens or dots \
                         (at most 255)"
                    .into(),
            });
        }
        let unspecified = |ip: &str| {
            ip.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified())
        };
        if self.cluster_mode() && unspecified(&self.cluster_announce_ip) {
            return Err(ConfigError::Value {
                name: "cluster-announce-ip",
                reason: format!(
                    "{} is no address another node can reach: give this node's own \
                     (--cluster-announce-ip)",
                    self.cluster_announce_ip
                ),
            });
        }
        if self.cluster_mode() && self.cluster_announce_ip.is_empty() && unspecified(&self.bind) {
            return Err(ConfigError::Value {
                name: "cluster-announce-ip",
                reason: format!(
                    "the node binds every address ({}) in cluster mode, so it cannot tell \
                     which one other nodes and clients reach it at: set --cluster-announce-ip \
                     (cluster-announce-ip in the file, SHOAL_CLUSTER_ANNOUNCE_IP) to that \
                     address, or bind a single address",
                    self.bind
                ),
            });
        }
        Ok(())
    }

    /// Whether the node runs as part of a cluster.
    pub fn cluster_mode(&self) -> bool {
        self.cluster_enabled || !self.cluster_join.is_empty() || self.controller
    }

    /// How long to keep trying to join the cluster: `None` for ever.
    pub fn join_timeout(&self) -> Option<std::time::Duration> {
        (self.cluster_join_timeout > 0)
            .then(|| std::time::Duration::from_secs(self.cluster_join_timeout))
    }

    /// The credentials this node gives other nodes' RESP ports (its replication link, the
    /// forwarding client, the seed it joins through): `masteruser` and `masterauth` when
    /// `masterauth` is set (as a Redis replica gives its primary), else the `default` user's
    /// `requirepass`, since a cluster's nodes connect to each other both ways. `None`
    /// without either.
    pub fn peer_auth(&self) -> Option<shoal_cluster::PeerAuth> {
        if !self.masterauth.is_empty() {
            return Some(shoal_cluster::PeerAuth {
                user: (!self.masteruser.is_empty()).then(|| self.masteruser.clone()),
                password: self.masterauth.clone(),
            });
        }
        (!self.requirepass.is_empty()).then(|| shoal_cluster::PeerAuth::password(&self.requirepass))
    }

    /// The cluster bus port for a RESP listener on `port`.
    pub fn effective_cluster_port(&self, port: u16) -> u16 {
        if self.cluster_port != 0 {
            self.cluster_port
        } else {
            port.saturating_add(BUS_PORT_OFFSET)
        }
    }

    /// The IP address announced to the cluster: `cluster-announce-ip`, else `bind` (which
    /// [`Config::validate`] refuses to be every address in cluster mode).
    pub fn announced_ip(&self) -> String {
        if !self.cluster_announce_ip.is_empty() {
            return self.cluster_announce_ip.clone();
        }
        match self.bind.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => self.bind.clone(),
        }
    }

    /// The RESP port announced to the cluster: `cluster-announce-port`, else the TLS port
    /// with `tls-replication` (peers then reach it over TLS, as Redis announces its TLS port),
    /// else `port`.
    pub fn announced_port(&self) -> u16 {
        match self.cluster_announce_port {
            0 if self.tls_replication && self.tls_port != 0 => self.tls_port,
            0 => self.port,
            port => port,
        }
    }

    /// The cluster bus port announced to the cluster: `cluster-announce-bus-port`, else the
    /// bus port it listens on.
    pub fn announced_bus_port(&self) -> u16 {
        match self.cluster_announce_bus_port {
            0 => self.effective_cluster_port(self.port),
            port => port,
        }
    }

    /// The hostname announced to the cluster, if any.
    pub fn announced_hostname(&self) -> Option<String> {
        (!self.cluster_announce_hostname.is_empty()).then(|| self.cluster_announce_hostname.clone())
    }

    /// The HTTP API's guards: its limits, and the host names it answers to (the allowed
    /// list, with the announced hostname).
    pub fn http_settings(&self) -> shoal_http::HttpSettings {
        let mut allowed_hosts = shoal_http::AllowedHosts::parse(&self.http_allowed_hosts);
        if !self.cluster_announce_hostname.is_empty() {
            allowed_hosts.add(&self.cluster_announce_hostname);
        }
        shoal_http::HttpSettings {
            max_connections: usize::try_from(self.http_maxclients).unwrap_or(usize::MAX),
            timeout: std::time::Duration::from_secs(self.http_timeout),
            max_inflight_bytes: usize::try_from(self.http_max_inflight_bytes.0)
                .unwrap_or(usize::MAX),
            allowed_hosts,
        }
    }

    /// Worker threads to run: the setting, or one per CPU this process may use.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// The classes of keyspace notifications `notify-keyspace-events` asks for (none if it
    /// does not parse: it was checked when it was set).
    pub fn keyspace_event_classes(&self) -> u32 {
        crate::notify::parse_classes(&self.notify_keyspace_events).unwrap_or(0)
    }

    /// Keyspace shards to create.
    pub fn effective_shards(&self) -> usize {
        if self.shards > 0 {
            self.shards.next_power_of_two()
        } else {
            (self.effective_threads() * 64).next_power_of_two()
        }
    }
}

/// Parses a `CONFIG SET` value into the configuration, or says why it cannot.
pub type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// One parameter `CONFIG GET` shows and `CONFIG SET` may change.
pub struct Param {
    /// Redis's name.
    pub name: &'static str,
    /// Reads the value as `CONFIG GET` shows it.
    pub get: fn(&Config) -> String,
    /// Parses and stores a new value; `None` for parameters fixed at startup.
    pub set: Option<Setter>,
}

fn set_size(
    field: fn(&mut Config) -> &mut ByteSize,
) -> impl Fn(&mut Config, &str) -> Result<(), String> {
    move |c, v| {
        *field(c) = v
            .parse()
            .map_err(|_| "argument must be a memory value".to_string())?;
        Ok(())
    }
}

/// `yes` or `no`, in any case, as Redis's boolean parameters take them.
pub fn parse_yes_no(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

fn parse_number<T: FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())
}

/// Every parameter, in the order `CONFIG GET *` lists them. Parameters without a setter are
/// shown for clients that ask (`redis-benchmark` reads `save` and `appendonly`) but are fixed.
pub static PARAMS: &[Param] = &[
    Param {
        name: "bind",
        get: |c| c.bind.clone(),
        set: None,
    },
    Param {
        name: "port",
        get: |c| c.port.to_string(),
        set: None,
    },
    Param {
        name: "http-port",
        get: |c| c.http_port.to_string(),
        set: None,
    },
    Param {
        name: "threads",
        get: |c| c.effective_threads().to_string(),
        set: None,
    },
    Param {
        name: "shards",
        get: |c| c.effective_shards().to_string(),
        set: None,
    },
    Param {
        name: "databases",
        get: |_| "1".into(),
        set: None,
    },
    Param {
        name: "save",
        get: |_| String::new(),
        set: None,
    },
    Param {
        name: "appendonly",
        get: |_| "no".into(),
        set: None,
    },
    Param {
        name: "maxmemory",
        get: |c| c.maxmemory.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.maxmemory)(c, v)),
    },
    Param {
        name: "maxmemory-policy",
        get: |c| c.maxmemory_policy.name().into(),
        set: Some(|c, v| {
            c.maxmemory_policy = v.parse().map_err(|_| "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction".to_string())?;
            Ok(())
        }),
    },
    Param {
        name: "lfu-log-factor",
        get: |c| c.lfu_log_factor.to_string(),
        set: Some(|c, v| {
            c.lfu_log_factor = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lfu-decay-time",
        get: |c| c.lfu_decay_time.to_string(),
        set: Some(|c, v| {
            c.lfu_decay_time = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "notify-keyspace-events",
        get: |c| crate::notify::format_classes(c.keyspace_event_classes()),
        set: Some(|c, v| {
            crate::notify::parse_classes(v)?;
            c.notify_keyspace_events = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tracking-table-max-keys",
        get: |c| c.tracking_table_max_keys.to_string(),
        set: Some(|c, v| {
            c.tracking_table_max_keys = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "hash-max-listpack-entries",
        get: |c| c.hash_max_listpack_entries.to_string(),
        set: Some(|c, v| {
            c.hash_max_listpack_entries = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "hash-max-ziplist-entries",
        get: |c| c.hash_max_listpack_entries.to_string(),
        set: Some(|c, v| {
            c.hash_max_listpack_entries = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "hash-max-listpack-value",
        get: |c| c.hash_max_listpack_value.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.hash_max_listpack_value)(c, v)),
    },
    Param {
        name: "hash-max-ziplist-value",
        get: |c| c.hash_max_listpack_value.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.hash_max_listpack_value)(c, v)),
    },
    Param {
        name: "proto-max-bulk-len",
        get: |c| c.proto_max_bulk_len.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.proto_max_bulk_len)(c, v)),
    },
    Param {
        name: "proto-max-multibulk-len",
        get: |c| c.proto_max_multibulk_len.to_string(),
        set: Some(|c, v| {
            c.proto_max_multibulk_len = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "max-key-size",
        get: |c| c.max_key_size.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.max_key_size)(c, v)),
    },
    Param {
        name: "client-query-buffer-limit",
        get: |c| c.client_query_buffer_limit.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.client_query_buffer_limit)(c, v)),
    },
    Param {
        name: "client-output-buffer-limit",
        get: |c| c.client_output_buffer_limit.to_string(),
        set: Some(|c, v| {
            c.client_output_buffer_limit = c.client_output_buffer_limit.with(v)?;
            Ok(())
        }),
    },
    Param {
        name: "maxclients",
        get: |c| c.maxclients.to_string(),
        set: Some(|c, v| {
            c.maxclients = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        get: |c| c.timeout.to_string(),
        set: Some(|c, v| {
            c.timeout = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "requirepass",
        get: |c| c.requirepass.clone(),
        set: Some(|c, v| {
            c.requirepass = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "aclfile",
        get: |c| c.aclfile.clone(),
        set: None,
    },
    Param {
        name: "protected-mode",
        get: |c| if c.protected_mode { "yes" } else { "no" }.into(),
        set: Some(|c, v| {
            c.protected_mode = parse_yes_no(v)?;
            Ok(())
        }),
    },
    Param {
        name: "masteruser",
        get: |c| c.masteruser.clone(),
        set: None,
    },
    Param {
        name: "masterauth",
        get: |c| c.masterauth.clone(),
        set: None,
    },
    Param {
        name: "tls-port",
        get: |c| c.tls_port.to_string(),
        set: None,
    },
    Param {
        name: "tls-cert-file",
        get: |c| c.tls_cert_file.clone(),
        set: Some(|c, v| {
            c.tls_cert_file = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-key-file",
        get: |c| c.tls_key_file.clone(),
        set: Some(|c, v| {
            c.tls_key_file = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-ca-cert-file",
        get: |c| c.tls_ca_cert_file.clone(),
        set: Some(|c, v| {
            c.tls_ca_cert_file = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-ca-cert-dir",
        get: |c| c.tls_ca_cert_dir.clone(),
        set: Some(|c, v| {
            c.tls_ca_cert_dir = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-auth-clients",
        get: |c| c.tls_auth_clients.clone(),
        set: Some(|c, v| {
            c.tls_auth_clients = ClientAuth::parse(v)?.name().to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-protocols",
        get: |c| c.tls_protocols.clone(),
        set: Some(|c, v| {
            c.tls_protocols = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-ciphersuites",
        get: |c| c.tls_ciphersuites.clone(),
        set: Some(|c, v| {
            c.tls_ciphersuites = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-ciphers",
        get: |c| c.tls_ciphers.clone(),
        set: Some(|c, v| {
            c.tls_ciphers = v.to_string();
            Ok(())
        }),
    },
    Param {
        name: "tls-replication",
        get: |c| if c.tls_replication { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "tls-cluster",
        get: |c| if c.tls_cluster { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "http-tls",
        get: |c| if c.http_tls { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "http-maxclients",
        get: |c| c.http_maxclients.to_string(),
        set: None,
    },
    Param {
        name: "http-timeout",
        get: |c| c.http_timeout.to_string(),
        set: None,
    },
    Param {
        name: "http-max-inflight-bytes",
        get: |c| c.http_max_inflight_bytes.0.to_string(),
        set: None,
    },
    Param {
        name: "http-allowed-hosts",
        get: |c| c.http_allowed_hosts.clone(),
        set: None,
    },
    Param {
        name: "slowlog-log-slower-than",
        get: |c| c.slowlog_log_slower_than.to_string(),
        set: Some(|c, v| {
            c.slowlog_log_slower_than = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "slowlog-max-len",
        get: |c| c.slowlog_max_len.to_string(),
        set: Some(|c, v| {
            c.slowlog_max_len = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "access-log",
        get: |c| c.access_log.clone(),
        set: None,
    },
    Param {
        name: "access-log-sample",
        get: |c| c.access_log_sample.to_string(),
        set: None,
    },
    Param {
        name: "access-log-max-size",
        get: |c| c.access_log_max_size.0.to_string(),
        set: None,
    },
    Param {
        name: "latency-monitor-threshold",
        get: |c| c.latency_monitor_threshold.to_string(),
        set: Some(|c, v| {
            c.latency_monitor_threshold = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "hz",
        get: |c| c.hz.to_string(),
        set: Some(|c, v| {
            c.hz = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "busy-reply-threshold",
        get: |c| c.busy_reply_threshold.to_string(),
        set: Some(|c, v| {
            c.busy_reply_threshold = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "lua-time-limit",
        get: |c| c.busy_reply_threshold.to_string(),
        set: Some(|c, v| {
            c.busy_reply_threshold = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "log-format",
        get: |c| format!("{:?}", c.log_format).to_lowercase(),
        set: None,
    },
    Param {
        name: "log-level",
        get: |c| c.log_level.clone(),
        set: None,
    },
    Param {
        name: "dir",
        get: |c| c.dir.clone(),
        set: None,
    },
    Param {
        name: "cluster-enabled",
        get: |c| if c.cluster_mode() { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "cluster-port",
        get: |c| c.effective_cluster_port(c.port).to_string(),
        set: None,
    },
    Param {
        name: "cluster-node-timeout",
        get: |c| c.cluster_node_timeout.to_string(),
        set: None,
    },
    Param {
        name: "cluster-announce-ip",
        get: |c| c.cluster_announce_ip.clone(),
        set: None,
    },
    Param {
        name: "cluster-announce-port",
        get: |c| c.cluster_announce_port.to_string(),
        set: None,
    },
    Param {
        name: "cluster-announce-bus-port",
        get: |c| c.cluster_announce_bus_port.to_string(),
        set: None,
    },
    Param {
        name: "cluster-announce-hostname",
        get: |c| c.cluster_announce_hostname.clone(),
        set: None,
    },
    Param {
        name: "zone",
        get: |c| c.zone.clone(),
        set: None,
    },
    Param {
        name: "controller-voters",
        get: |c| c.controller_voters.to_string(),
        set: None,
    },
    Param {
        name: "hot-key-share",
        get: |c| c.hot_key_share.to_string(),
        set: None,
    },
    Param {
        name: "hot-key-min-rate",
        get: |c| c.hot_key_min_rate.to_string(),
        set: None,
    },
    Param {
        name: "cluster-join",
        get: |c| c.cluster_join.clone(),
        set: None,
    },
    Param {
        name: "cluster-secret-file",
        get: |c| c.cluster_secret_file.clone(),
        set: None,
    },
    Param {
        name: "cluster-replicas",
        get: |c| c.cluster_replicas.to_string(),
        set: None,
    },
    Param {
        name: "cluster-spare",
        get: |c| if c.cluster_spare { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "cluster-new-shard",
        get: |c| if c.cluster_new_shard { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "controller",
        get: |c| if c.controller { "yes" } else { "no" }.into(),
        set: None,
    },
    Param {
        name: "routing",
        get: |c| c.routing.to_string(),
        set: None,
    },
    Param {
        name: "repl-backlog-size",
        get: |c| c.repl_backlog_size.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.repl_backlog_size)(c, v)),
    },
    Param {
        name: "min-replicas-to-write",
        get: |c| c.min_replicas_to_write.to_string(),
        set: Some(|c, v| {
            c.min_replicas_to_write = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "min-replicas-max-lag",
        get: |c| c.min_replicas_max_lag.to_string(),
        set: Some(|c, v| {
            c.min_replicas_max_lag = parse_number(v)?;
            Ok(())
        }),
    },
    Param {
        name: "migration-max-bandwidth",
        get: |c| c.migration_max_bandwidth.to_string(),
        set: Some(|c, v| set_size(|c| &mut c.migration_max_bandwidth)(c, v)),
    },
    Param {
        name: "replica-read-max-staleness",
        get: |c| c.replica_read_max_staleness.to_string(),
        set: Some(|c, v| {
            c.replica_read_max_staleness = parse_number(v)?;
            Ok(())
        }),
    },
];

/// The parameter called `name` (case-insensitive).
pub fn param(name: &str) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_redis_units() {
        assert_eq!("100".parse(), Ok(ByteSize(100)));
        assert_eq!("1k".parse(), Ok(ByteSize(1000)));
        assert_eq!("1kb".parse(), Ok(ByteSize(1024)));
        assert_eq!("100mb".parse(), Ok(ByteSize(100 << 20)));
        assert_eq!("1GB".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("2g".parse(), Ok(ByteSize(2_000_000_000)));
        assert_eq!("-1".parse::<ByteSize>(), Err(BadSize));
        assert_eq!("10xb".parse::<ByteSize>(), Err(BadSize));
        assert_eq!("".parse::<ByteSize>(), Err(BadSize));
        assert_eq!(ByteSize::from_arg("1kb"), Ok(ByteSize(1024)));
        let error = ByteSize::from_arg("1.5g").expect_err("not a size");
        assert!(error.contains("'1.5g' is not a size"), "{error}");
    }

    #[test]
    fn toml_uses_redis_names_and_keeps_defaults() {
        let config = Config::from_toml(
            "port = 7000\nmaxmemory = \"100mb\"\nmaxmemory-policy = \"volatile-ttl\"\nclient-output-buffer-limit = \"64mb 16mb 60\"\n",
        )
        .unwrap();
        assert_eq!(config.port, 7000);
        assert_eq!(config.maxmemory, ByteSize(100 << 20));
        assert_eq!(config.maxmemory_policy, EvictionPolicy::VolatileTtl);
        assert_eq!(config.client_output_buffer_limit.hard, 64 << 20);
        assert_eq!(config.maxclients, 10_000);
        assert!(matches!(
            Config::from_toml("no-such-setting = 1"),
            Err(ConfigError::File(_))
        ));
        assert!(matches!(
            Config::from_toml("hz = 0"),
            Err(ConfigError::Value { name: "hz", .. })
        ));
        let lfu = Config::from_toml(
            "maxmemory-policy = \"allkeys-lfu\"\nlfu-log-factor = 0\nlfu-decay-time = 5\n",
        )
        .unwrap();
        assert_eq!(lfu.maxmemory_policy, EvictionPolicy::AllKeysLfu);
        assert_eq!((lfu.lfu_log_factor, lfu.lfu_decay_time), (0, 5));
        assert_eq!(
            (config.lfu_log_factor, config.lfu_decay_time),
            (10, 1),
            "Redis's defaults"
        );
        assert!(matches!(
            Config::from_toml("lfu-decay-time = 2147483648"),
            Err(ConfigError::Value {
                name: "lfu-decay-time",
                ..
            })
        ));
        assert!(matches!(
            Config::from_toml("maxmemory-policy = \"volatile-random\""),
            Ok(Config {
                maxmemory_policy: EvictionPolicy::VolatileRandom,
                ..
            })
        ));
        let round_trip = Config::from_toml(&config.to_toml()).unwrap();
        assert_eq!(round_trip, config);
    }

    #[test]
    fn a_cluster_node_bound_to_every_address_must_announce_one() {
        for bind in ["0.0.0.0", "::"] {
            let config = Config {
                bind: bind.into(),
                cluster_enabled: true,
                ..Config::default()
            };
            let error = config
                .validate()
                .expect_err("no address to announce")
                .to_string();
            assert!(error.contains("--cluster-announce-ip"), "{error}");
            assert!(error.contains(bind), "{error}");
            let announced = Config {
                cluster_announce_ip: "10.0.0.5".into(),
                ..config.clone()
            };
            announced.validate().unwrap();
            assert_eq!(announced.announced_ip(), "10.0.0.5");
            // Outside a cluster, nothing is announced.
            Config {
                cluster_enabled: false,
                ..config
            }
            .validate()
            .unwrap();
        }
        let nowhere = Config {
            cluster_enabled: true,
            cluster_announce_ip: "0.0.0.0".into(),
            ..Config::default()
        };
        assert!(nowhere.validate().is_err());
    }

    #[test]
    fn announced_ports_and_hostname_default_to_the_node_s_own() {
        let config = Config::from_toml("port = 7000\ncluster-enabled = true\n").unwrap();
        assert_eq!(config.announced_port(), 7000);
        assert_eq!(config.announced_bus_port(), 17000);
        assert_eq!(config.announced_hostname(), None);
        let mapped = Config::from_toml(
            "port = 7000\ncluster-enabled = true\ncluster-announce-ip = \"10.0.0.5\"\n\
             cluster-announce-port = 32000\ncluster-announce-bus-port = 42000\n\
             cluster-announce-hostname = \"cache-1.example\"\nzone = \"eu-1a\"\n",
        )
        .unwrap();
        assert_eq!(mapped.announced_port(), 32000);
        assert_eq!(mapped.announced_bus_port(), 42000);
        assert_eq!(
            mapped.announced_hostname().as_deref(),
            Some("cache-1.example")
        );
        assert_eq!(
            (param("cluster-announce-port").unwrap().get)(&mapped),
            "32000"
        );
        assert_eq!((param("zone").unwrap().get)(&mapped), "eu-1a");
        let bad = Config {
            cluster_announce_hostname: "bad_name!".into(),
            ..Config::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::Value {
                name: "cluster-announce-hostname",
                ..
            })
        ));
    }

    #[test]
    fn controller_voters_are_odd() {
        for (voters, ok) in [
            (1, true),
            (3, true),
            (5, true),
            (9, true),
            (0, false),
            (4, false),
            (11, false),
        ] {
            let config = Config {
                controller_voters: voters,
                ..Config::default()
            };
            assert_eq!(config.validate().is_ok(), ok, "{voters}");
        }
    }

    #[test]
    fn tls_settings_use_redis_names_and_need_a_certificate() {
        let config = Config::from_toml(
            "port = 0\ntls-port = 6380\ntls-cert-file = \"s.crt\"\ntls-key-file = \"s.key\"\n\
             tls-ca-cert-file = \"ca.crt\"\ntls-auth-clients = \"optional\"\n\
             tls-protocols = \"TLSv1.3\"\nhttp-tls = true\n",
        )
        .unwrap();
        assert!(!config.serves_plain());
        let options = config.tls_options();
        assert_eq!(options.auth_clients, ClientAuth::Optional);
        assert_eq!(options.cert_file, "s.crt");
        assert_eq!((param("tls-port").unwrap().get)(&config), "6380");
        assert_eq!((param("http-tls").unwrap().get)(&config), "yes");
        assert!(param("tls-port").unwrap().set.is_none());
        // Without a TLS port, port 0 still picks a free port.
        assert!(Config::from_toml("port = 0\n").unwrap().serves_plain());
        for (text, name) in [
            ("tls-port = 6380\n", "tls-port"),
            ("http-tls = true\n", "http-tls"),
            ("tls-auth-clients = \"sometimes\"\n", "tls-auth-clients"),
            (
                "port = 0\ncluster-enabled = true\ntls-port = 6380\ntls-cert-file = \"c\"\n\
                 tls-key-file = \"k\"\ncluster-port = 16380\n",
                "port",
            ),
        ] {
            match Config::from_toml(text) {
                Err(ConfigError::Value { name: got, .. }) => assert_eq!(got, name, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // tls-replication announces the TLS port, and needs it and a CA.
        let replicating = Config::from_toml(
            "port = 7000\ncluster-enabled = true\ntls-port = 7100\ntls-cert-file = \"c\"\n\
             tls-key-file = \"k\"\ntls-ca-cert-file = \"ca\"\ntls-replication = true\n",
        )
        .unwrap();
        assert_eq!(replicating.announced_port(), 7100);
        assert_eq!((param("tls-replication").unwrap().get)(&replicating), "yes");
        for text in [
            "tls-replication = true\n",
            "tls-replication = true\ntls-port = 7100\ntls-cert-file = \"c\"\n\
             tls-key-file = \"k\"\n",
        ] {
            assert!(
                matches!(
                    Config::from_toml(text),
                    Err(ConfigError::Value {
                        name: "tls-replication",
                        ..
                    })
                ),
                "{text}"
            );
        }
        // tls-cluster needs a certificate, its key and a CA, and no TLS port.
        let bus_tls = Config::from_toml(
            "cluster-enabled = true\ntls-cert-file = \"c\"\ntls-key-file = \"k\"\n\
             tls-ca-cert-dir = \"cas\"\ntls-cluster = true\n",
        )
        .unwrap();
        assert_eq!((param("tls-cluster").unwrap().get)(&bus_tls), "yes");
        assert_eq!(
            (param("tls-cluster").unwrap().get)(&Config::default()),
            "no"
        );
        assert!(
            param("tls-cluster").unwrap().set.is_none(),
            "not at runtime"
        );
        for (text, reason) in [
            (
                "tls-cluster = true\n",
                "needs tls-cert-file and tls-key-file",
            ),
            (
                "tls-cluster = true\ntls-cert-file = \"c\"\ntls-ca-cert-file = \"ca\"\n",
                "needs tls-cert-file and tls-key-file",
            ),
            (
                "tls-cluster = true\ntls-cert-file = \"c\"\ntls-key-file = \"k\"\n",
                "needs tls-ca-cert-file or tls-ca-cert-dir",
            ),
        ] {
            match Config::from_toml(text) {
                Err(
                    error @ ConfigError::Value {
                        name: "tls-cluster",
                        ..
                    },
                ) => assert!(error.to_string().contains(reason), "{text}: {error}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        let mut config = Config::default();
        let set = param("tls-auth-clients").unwrap().set.unwrap();
        set(&mut config, "NO").unwrap();
        assert_eq!(config.tls_auth_clients, "no");
        assert!(set(&mut config, "maybe").is_err());
    }

    #[test]
    fn params_read_and_write_the_config() {
        let mut config = Config::default();
        let maxmemory = param("MAXMEMORY").unwrap();
        (maxmemory.set.unwrap())(&mut config, "1gb").unwrap();
        assert_eq!((maxmemory.get)(&config), "1073741824");
        assert!((maxmemory.set.unwrap())(&mut config, "lots").is_err());
        assert!(param("save").unwrap().set.is_none());
        assert_eq!(
            (param("client-output-buffer-limit").unwrap().get)(&config),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
    }
}
