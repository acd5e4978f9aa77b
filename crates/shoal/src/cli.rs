//! Command-line interface. Settings come from the TOML file (`--config`), then `SHOAL_*`
//! environment variables, then flags: each overrides the one before.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use shoal_server::config::OutputBufferLimit;
use shoal_server::{ByteSize, Config, LogFormat};
use shoal_store::EvictionPolicy;

/// Shoal: a distributed in-memory cache that speaks the Redis protocol.
#[derive(Debug, Parser)]
#[command(name = "shoal", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a cache node.
    Server(Box<ServerArgs>),
    /// Run, inspect and change a cluster.
    #[command(subcommand)]
    Cluster(crate::cluster_cmd::ClusterCommand),
    /// Run a proxy: a Redis front door to a cluster for clients that do not know about clusters.
    Proxy(Box<ProxyArgs>),
}

/// Help headings, shared by `shoal server` and `shoal proxy` so that both list their options
/// in the same groups and the same order.
mod heading {
    /// Where it listens and with how many threads.
    pub const LISTENING: &str = "Listening";
    /// The cluster it belongs to or fronts.
    pub const CLUSTER: &str = "Cluster";
    /// The keyspace's memory.
    pub const MEMORY: &str = "Memory";
    /// Limits on clients and what they send.
    pub const LIMITS: &str = "Limits";
    /// Who may connect.
    pub const SECURITY: &str = "Security";
    /// TLS on the client port.
    pub const TLS: &str = "TLS";
    /// What it logs.
    pub const LOGGING: &str = "Logging";
}

/// `shoal server` flags. Each also reads `SHOAL_<NAME>` from the environment.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML configuration file (`name = value` lines with Redis's names: port, maxmemory, ...).
    #[arg(long, env = "SHOAL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the resulting configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "SHOAL_BIND", help_heading = heading::LISTENING)]
    pub bind: Option<String>,
    /// RESP port [default: 6379].
    #[arg(long, env = "SHOAL_PORT", help_heading = heading::LISTENING)]
    pub port: Option<u16>,
    /// HTTP API port; 0 disables it [default: 8080].
    #[arg(long, env = "SHOAL_HTTP_PORT", help_heading = heading::LISTENING)]
    pub http_port: Option<u16>,
    /// Worker threads; 0 means one per available CPU [default: 0].
    #[arg(long, env = "SHOAL_THREADS", help_heading = heading::LISTENING)]
    pub threads: Option<usize>,

    /// Directory for the node's id, the controller's Raft state and the last map it held
    /// (created if missing; keys are never written): restarted with it, the node rejoins its
    /// cluster as itself. Without it, a restarted node joins as a new node.
    #[arg(long, env = "SHOAL_DIR", value_name = "PATH", help_heading = heading::CLUSTER)]
    pub dir: Option<String>,
    /// Run as part of a cluster; without --cluster-join this founds a new one.
    #[arg(long, env = "SHOAL_CLUSTER_ENABLED", help_heading = heading::CLUSTER)]
    pub cluster_enabled: bool,
    /// Join the cluster that the node at this RESP address (host:port) belongs to.
    #[arg(
        long,
        env = "SHOAL_CLUSTER_JOIN",
        value_name = "HOST:PORT",
        help_heading = heading::CLUSTER
    )]
    pub cluster_join: Option<String>,
    /// Seconds to keep trying to join before giving up; 0 tries forever [default: 30].
    #[arg(
        long = "join-timeout",
        alias = "cluster-join-timeout",
        env = "SHOAL_CLUSTER_JOIN_TIMEOUT",
        value_name = "SECONDS",
        help_heading = heading::CLUSTER
    )]
    pub cluster_join_timeout: Option<u64>,
    /// File holding the cluster secret (mode 0600), which every cluster bus connection
    /// proves; a founding node without one writes a new one to --dir (else
    /// ./shoal-cluster-secret) and logs where.
    #[arg(long, env = "SHOAL_CLUSTER_SECRET_FILE", value_name = "PATH", help_heading = heading::CLUSTER)]
    pub cluster_secret_file: Option<String>,
    /// Cluster bus port; 0 means the RESP port + 10000 [default: 0].
    #[arg(long, env = "SHOAL_CLUSTER_PORT", help_heading = heading::CLUSTER)]
    pub cluster_port: Option<u16>,
    /// Milliseconds without a heartbeat before the controller marks a node failed [default: 1000].
    #[arg(
        long = "node-timeout",
        alias = "cluster-node-timeout",
        env = "SHOAL_CLUSTER_NODE_TIMEOUT",
        value_name = "MS",
        help_heading = heading::CLUSTER
    )]
    pub cluster_node_timeout: Option<u64>,
    /// Replicas per shard, for the cluster this node founds [default: 0].
    #[arg(
        long = "replicas",
        alias = "cluster-replicas",
        env = "SHOAL_CLUSTER_REPLICAS",
        help_heading = heading::CLUSTER
    )]
    pub cluster_replicas: Option<u8>,
    /// Let this node be a voter of the cluster's controller (its Raft group).
    #[arg(long, env = "SHOAL_CONTROLLER", help_heading = heading::CLUSTER)]
    pub controller: bool,
    /// Join as a spare: the node waits in no shard until one lacks a healthy replica.
    #[arg(long = "spare", env = "SHOAL_CLUSTER_SPARE", help_heading = heading::CLUSTER)]
    pub cluster_spare: bool,
    /// Join to found a shard of its own, even while a shard lacks a replica (by default a
    /// joining node fills such a seat first, so that --replicas holds as the cluster grows).
    #[arg(long = "new-shard", env = "SHOAL_CLUSTER_NEW_SHARD", help_heading = heading::CLUSTER)]
    pub cluster_new_shard: bool,
    /// IP address other nodes and clients reach this node at; required in a cluster when
    /// --bind is 0.0.0.0 or :: [default: --bind].
    #[arg(long, env = "SHOAL_CLUSTER_ANNOUNCE_IP", help_heading = heading::CLUSTER)]
    pub cluster_announce_ip: Option<String>,
    /// RESP port other nodes and clients reach this node at, behind a port mapping; 0 means
    /// --port [default: 0].
    #[arg(long, env = "SHOAL_CLUSTER_ANNOUNCE_PORT", value_name = "PORT", help_heading = heading::CLUSTER)]
    pub cluster_announce_port: Option<u16>,
    /// Cluster bus port other nodes reach this node at, behind a port mapping; 0 means the
    /// bus port it listens on [default: 0].
    #[arg(long, env = "SHOAL_CLUSTER_ANNOUNCE_BUS_PORT", value_name = "PORT", help_heading = heading::CLUSTER)]
    pub cluster_announce_bus_port: Option<u16>,
    /// DNS name of this node, shown to clients beside its address (CLUSTER NODES, SHARDS,
    /// SLOTS).
    #[arg(long, env = "SHOAL_CLUSTER_ANNOUNCE_HOSTNAME", value_name = "NAME", help_heading = heading::CLUSTER)]
    pub cluster_announce_hostname: Option<String>,
    /// Failure domain of this node (rack, availability zone): controller voters are spread
    /// across zones.
    #[arg(long, env = "SHOAL_ZONE", value_name = "NAME", help_heading = heading::CLUSTER)]
    pub zone: Option<String>,
    /// Most voters of the controller's Raft group: odd, 1 to 9; give every node the same
    /// [default: 5].
    #[arg(long, env = "SHOAL_CONTROLLER_VOTERS", value_name = "N", help_heading = heading::CLUSTER)]
    pub controller_voters: Option<usize>,
    /// Share of its shard's requests that makes a key hot, 0 to 1 (0: none is); the proxy,
    /// smart clients and forwarding nodes spread a hot key's reads over its shard's replicas
    /// [default: 0.2].
    #[arg(long, env = "SHOAL_HOT_KEY_SHARE", value_name = "SHARE", help_heading = heading::CLUSTER)]
    pub hot_key_share: Option<f64>,
    /// Requests a second below which no key is hot, whatever its share [default: 1000].
    #[arg(long, env = "SHOAL_HOT_KEY_MIN_RATE", value_name = "N", help_heading = heading::CLUSTER)]
    pub hot_key_min_rate: Option<u64>,
    /// For keys of other nodes: redirect (answer -MOVED) or forward (relay the owner's reply)
    /// [default: redirect].
    #[arg(long, env = "SHOAL_ROUTING", help_heading = heading::CLUSTER)]
    pub routing: Option<shoal_server::config::RoutingMode>,

    /// Memory limit, e.g. 100mb or 1gb; 0 means none [default: 0].
    #[arg(long, env = "SHOAL_MAXMEMORY", value_parser = ByteSize::from_arg, help_heading = heading::MEMORY)]
    pub maxmemory: Option<ByteSize>,
    /// allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random,
    /// volatile-ttl or noeviction [default: allkeys-lru].
    #[arg(long, env = "SHOAL_MAXMEMORY_POLICY", help_heading = heading::MEMORY)]
    pub maxmemory_policy: Option<EvictionPolicy>,
    /// How slowly LFU counters grow with accesses, 0 to 2147483647 (the LFU policies)
    /// [default: 10].
    #[arg(long, env = "SHOAL_LFU_LOG_FACTOR", value_name = "N", help_heading = heading::MEMORY)]
    pub lfu_log_factor: Option<u64>,
    /// Minutes of idleness that take one off a key's LFU counter; 0 never [default: 1].
    #[arg(long, env = "SHOAL_LFU_DECAY_TIME", value_name = "MINUTES", help_heading = heading::MEMORY)]
    pub lfu_decay_time: Option<u64>,
    /// Keyspace notifications to publish, in Redis's letters (e.g. `Ex` for expiry events,
    /// `KEA` for all) [default: none].
    #[arg(long, env = "SHOAL_NOTIFY_KEYSPACE_EVENTS", help_heading = heading::MEMORY)]
    pub notify_keyspace_events: Option<String>,
    /// Keyspace shards (a power of two); 0 means 64 per thread [default: 0].
    #[arg(long, env = "SHOAL_SHARDS", help_heading = heading::MEMORY)]
    pub shards: Option<usize>,

    /// Most simultaneous clients [default: 10000].
    #[arg(long, env = "SHOAL_MAXCLIENTS", help_heading = heading::LIMITS)]
    pub maxclients: Option<u64>,
    /// Close clients idle for this many seconds; 0 never [default: 0].
    #[arg(long, env = "SHOAL_TIMEOUT", help_heading = heading::LIMITS)]
    pub timeout: Option<u64>,
    /// Most HTTP connections at once, apart from maxclients [default: 1024].
    #[arg(long, env = "SHOAL_HTTP_MAXCLIENTS", help_heading = heading::LIMITS)]
    pub http_maxclients: Option<u64>,
    /// Seconds an HTTP client may take to send headers or the next piece of a body, or stay
    /// idle between requests [default: 10].
    #[arg(long, env = "SHOAL_HTTP_TIMEOUT", help_heading = heading::LIMITS)]
    pub http_timeout: Option<u64>,
    /// Most bytes of HTTP request bodies held at once [default: 1gb].
    #[arg(long, env = "SHOAL_HTTP_MAX_INFLIGHT_BYTES", value_parser = ByteSize::from_arg, help_heading = heading::LIMITS)]
    pub http_max_inflight_bytes: Option<ByteSize>,
    /// Most unprocessed input per client [default: 1gb].
    #[arg(long, env = "SHOAL_CLIENT_QUERY_BUFFER_LIMIT", value_parser = ByteSize::from_arg, help_heading = heading::LIMITS)]
    pub client_query_buffer_limit: Option<ByteSize>,
    /// Output limit for normal clients: "<hard> <soft> <seconds>" [default: "0 0 0"].
    #[arg(long, env = "SHOAL_CLIENT_OUTPUT_BUFFER_LIMIT", value_parser = OutputBufferLimit::parse, help_heading = heading::LIMITS)]
    pub client_output_buffer_limit: Option<OutputBufferLimit>,
    /// Largest bulk string a client may send (and largest HTTP body) [default: 512mb].
    #[arg(long, env = "SHOAL_PROTO_MAX_BULK_LEN", value_parser = ByteSize::from_arg, help_heading = heading::LIMITS)]
    pub proto_max_bulk_len: Option<ByteSize>,
    /// Most arguments per command [default: 2147483647].
    #[arg(long, env = "SHOAL_PROTO_MAX_MULTIBULK_LEN", help_heading = heading::LIMITS)]
    pub proto_max_multibulk_len: Option<u64>,
    /// Largest key a write may create [default: 512mb].
    #[arg(long, env = "SHOAL_MAX_KEY_SIZE", value_parser = ByteSize::from_arg, help_heading = heading::LIMITS)]
    pub max_key_size: Option<ByteSize>,

    /// Password clients must send with AUTH (or HELLO AUTH, or HTTP Bearer/Basic).
    #[arg(long, env = "SHOAL_REQUIREPASS", help_heading = heading::SECURITY)]
    pub requirepass: Option<String>,
    /// ACL file of users (Redis's format: `user <name> <rules...>` per line), loaded at start,
    /// reloaded by ACL LOAD, written by ACL SAVE.
    #[arg(long, env = "SHOAL_ACLFILE", value_name = "PATH", help_heading = heading::SECURITY)]
    pub aclfile: Option<String>,
    /// Without a password, turn away clients not on the loopback interface (127.0.0.1, ::1)
    /// with Redis's -DENIED: yes or no [default: yes].
    #[arg(long, env = "SHOAL_PROTECTED_MODE", value_name = "yes|no", value_parser = yes_no, help_heading = heading::SECURITY)]
    pub protected_mode: Option<bool>,
    /// The user this node authenticates as to other nodes of its cluster (replication,
    /// forwarding, joining), with --masterauth [default: the default user].
    #[arg(long, env = "SHOAL_MASTERUSER", help_heading = heading::SECURITY)]
    pub masteruser: Option<String>,
    /// The password this node gives other nodes of its cluster [default: its requirepass].
    #[arg(long, env = "SHOAL_MASTERAUTH", help_heading = heading::SECURITY)]
    pub masterauth: Option<String>,
    /// Host names HTTP requests may be addressed to (IP addresses always may), comma-separated:
    /// names, .suffix for a domain, or * for any [default: localhost].
    #[arg(long, env = "SHOAL_HTTP_ALLOWED_HOSTS", value_name = "NAMES", help_heading = heading::SECURITY)]
    pub http_allowed_hosts: Option<String>,

    /// RESP port for TLS clients; with it, --port 0 serves TLS only [default: none].
    #[arg(long, env = "SHOAL_TLS_PORT", help_heading = heading::TLS)]
    pub tls_port: Option<u16>,
    /// The server's certificate chain (PEM), leaf first.
    #[arg(long, env = "SHOAL_TLS_CERT_FILE", value_name = "FILE", help_heading = heading::TLS)]
    pub tls_cert_file: Option<String>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY_FILE", value_name = "FILE", help_heading = heading::TLS)]
    pub tls_key_file: Option<String>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, env = "SHOAL_TLS_CA_CERT_FILE", value_name = "FILE", help_heading = heading::TLS)]
    pub tls_ca_cert_file: Option<String>,
    /// A directory of more CA certificates (PEM files).
    #[arg(long, env = "SHOAL_TLS_CA_CERT_DIR", value_name = "DIR", help_heading = heading::TLS)]
    pub tls_ca_cert_dir: Option<String>,
    /// Whether TLS clients must show a certificate signed by the CA: yes, optional or no
    /// [default: yes].
    #[arg(long, env = "SHOAL_TLS_AUTH_CLIENTS", value_name = "yes|no|optional", value_parser = auth_clients, help_heading = heading::TLS)]
    pub tls_auth_clients: Option<String>,
    /// TLS versions offered: "TLSv1.2 TLSv1.3", or either [default: both].
    #[arg(long, env = "SHOAL_TLS_PROTOCOLS", value_name = "VERSIONS", help_heading = heading::TLS)]
    pub tls_protocols: Option<String>,
    /// TLS 1.3 cipher suites, colon-separated (e.g. TLS_AES_128_GCM_SHA256) [default: all].
    #[arg(long, env = "SHOAL_TLS_CIPHERSUITES", value_name = "SUITES", help_heading = heading::TLS)]
    pub tls_ciphersuites: Option<String>,
    /// TLS 1.2 cipher suites, colon-separated (e.g. ECDHE-RSA-AES128-GCM-SHA256) [default: all].
    #[arg(long, env = "SHOAL_TLS_CIPHERS", value_name = "SUITES", help_heading = heading::TLS)]
    pub tls_ciphers: Option<String>,
    /// Serve the HTTP API over TLS (HTTPS) with the same certificate: yes or no [default: no].
    #[arg(long, env = "SHOAL_HTTP_TLS", value_name = "yes|no", value_parser = yes_no, help_heading = heading::TLS)]
    pub http_tls: Option<bool>,
    /// Speak TLS to other nodes' RESP ports (replication, forwarding), trusting
    /// --tls-ca-cert-file and showing --tls-cert-file, and announce --tls-port to the cluster:
    /// yes or no [default: no].
    #[arg(long, env = "SHOAL_TLS_REPLICATION", value_name = "yes|no", value_parser = yes_no, help_heading = heading::TLS)]
    pub tls_replication: Option<bool>,
    /// Speak TLS on the cluster bus, both ways: accept only peers showing a certificate
    /// signed by --tls-ca-cert-file (whatever --tls-auth-clients says), connect showing
    /// --tls-cert-file; the cluster secret is still proved inside. Every node of the cluster,
    /// and every proxy, client and `shoal cluster` command, must then speak TLS to the bus:
    /// yes or no [default: no].
    #[arg(long, env = "SHOAL_TLS_CLUSTER", value_name = "yes|no", value_parser = yes_no, help_heading = heading::TLS)]
    pub tls_cluster: Option<bool>,

    /// Sampled access log: one JSON line (ts, client, cmd, key, bytes_in, bytes_out, latency_us,
    /// result) per sampled command, written off the request path [default: none].
    #[arg(long, env = "SHOAL_ACCESS_LOG", value_name = "PATH", help_heading = heading::LOGGING)]
    pub access_log: Option<String>,
    /// Share of commands the access log records, 0 to 1 [default: 0.01].
    #[arg(long, env = "SHOAL_ACCESS_LOG_SAMPLE", value_name = "RATE", help_heading = heading::LOGGING)]
    pub access_log_sample: Option<f64>,
    /// Size past which the access log is renamed PATH.1 and a new one started [default: 64mb].
    #[arg(long, env = "SHOAL_ACCESS_LOG_MAX_SIZE", value_name = "SIZE", value_parser = ByteSize::from_arg, help_heading = heading::LOGGING)]
    pub access_log_max_size: Option<ByteSize>,
    /// Log format: human or json [default: human].
    #[arg(long, env = "SHOAL_LOG_FORMAT", help_heading = heading::LOGGING)]
    pub log_format: Option<LogFormat>,
    /// Log level or filter (info, debug, shoal_server=debug...); Raft's own logs stay at warn
    /// unless the filter names openraft [default: info].
    #[arg(long, env = "SHOAL_LOG_LEVEL", help_heading = heading::LOGGING)]
    pub log_level: Option<String>,
}

impl ServerArgs {
    /// The configuration: the file's (or the defaults), overridden by environment and flags.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let mut config = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Config::from_toml(&text).with_context(|| format!("in {}", path.display()))?
            }
            None => Config::default(),
        };
        macro_rules! take {
            ($($field:ident),*) => {$(
                if let Some(value) = &self.$field {
                    config.$field = value.clone();
                }
            )*};
        }
        take!(
            access_log,
            access_log_sample,
            access_log_max_size,
            bind,
            port,
            http_port,
            maxmemory,
            maxmemory_policy,
            lfu_log_factor,
            lfu_decay_time,
            notify_keyspace_events,
            threads,
            shards,
            maxclients,
            timeout,
            requirepass,
            aclfile,
            protected_mode,
            masteruser,
            masterauth,
            tls_port,
            tls_cert_file,
            tls_key_file,
            tls_ca_cert_file,
            tls_ca_cert_dir,
            tls_auth_clients,
            tls_protocols,
            tls_ciphersuites,
            tls_ciphers,
            http_tls,
            tls_replication,
            tls_cluster,
            http_maxclients,
            http_timeout,
            http_max_inflight_bytes,
            http_allowed_hosts,
            proto_max_bulk_len,
            proto_max_multibulk_len,
            max_key_size,
            client_query_buffer_limit,
            log_format,
            log_level,
            cluster_join_timeout,
            cluster_secret_file,
            cluster_port,
            cluster_node_timeout,
            cluster_replicas,
            cluster_announce_ip,
            cluster_announce_port,
            cluster_announce_bus_port,
            cluster_announce_hostname,
            zone,
            controller_voters,
            hot_key_share,
            hot_key_min_rate,
            routing,
            dir
        );
        if let Some(seed) = &self.cluster_join {
            config.cluster_join = seed.clone();
        }
        config.cluster_enabled |= self.cluster_enabled;
        config.controller |= self.controller;
        config.cluster_spare |= self.cluster_spare;
        config.cluster_new_shard |= self.cluster_new_shard;
        if let Some(limit) = self.client_output_buffer_limit {
            config.client_output_buffer_limit = limit;
        }
        config.validate()?;
        Ok(config)
    }
}

/// `shoal proxy` flags. Each also reads `SHOAL_PROXY_<NAME>` from the environment. Grouped and
/// ordered as `shoal server`'s.
#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, env = "SHOAL_PROXY_BIND", default_value = "127.0.0.1", help_heading = heading::LISTENING)]
    pub bind: String,
    /// RESP port.
    #[arg(long, env = "SHOAL_PROXY_PORT", default_value_t = 6380, help_heading = heading::LISTENING)]
    pub port: u16,
    /// HTTP API port; 0 disables it.
    #[arg(long, env = "SHOAL_PROXY_HTTP_PORT", default_value_t = 0, help_heading = heading::LISTENING)]
    pub http_port: u16,
    /// Worker threads; 0 means one per available CPU.
    #[arg(long, env = "SHOAL_PROXY_THREADS", default_value_t = 0, help_heading = heading::LISTENING)]
    pub threads: usize,

    /// RESP addresses (host:port) of some cluster nodes, comma-separated.
    #[arg(
        long,
        env = "SHOAL_PROXY_CLUSTER",
        value_name = "HOST:PORT,...",
        value_delimiter = ',',
        required = true,
        help_heading = heading::CLUSTER
    )]
    pub cluster: Vec<String>,
    /// Password the proxy authenticates to the nodes with.
    #[arg(long, env = "SHOAL_PROXY_CLUSTER_PASSWORD", help_heading = heading::CLUSTER)]
    pub cluster_password: Option<String>,
    /// File holding the cluster secret (the nodes' --cluster-secret-file, mode 0600): the
    /// proxy proves it on the cluster bus to follow the map.
    #[arg(
        long,
        env = "SHOAL_PROXY_CLUSTER_SECRET_FILE",
        value_name = "PATH",
        required = true,
        help_heading = heading::CLUSTER
    )]
    pub cluster_secret_file: PathBuf,
    /// Which members of a shard serve reads: primary, replica (may lag the primary's writes;
    /// the primary when there is none) or any.
    #[arg(
        long,
        env = "SHOAL_PROXY_READ_FROM",
        value_enum,
        default_value_t = ReadFromArg::Primary,
        hide_possible_values = true,
        help_heading = heading::CLUSTER
    )]
    pub read_from: ReadFromArg,
    /// Milliseconds to wait for a node's reply (retries come on top).
    #[arg(
        long,
        env = "SHOAL_PROXY_UPSTREAM_TIMEOUT",
        default_value_t = 2000,
        value_name = "MS",
        help_heading = heading::CLUSTER
    )]
    pub upstream_timeout: u64,
    /// Near cache for all the proxy's clients, at most this big (e.g. 64mb); 0 disables it.
    /// Reads (GET, HGET, ...) are answered from memory until a node invalidates their key.
    #[arg(long, env = "SHOAL_PROXY_NEAR_CACHE", value_name = "SIZE", value_parser = ByteSize::from_arg, default_value = "0", help_heading = heading::CLUSTER)]
    pub near_cache: ByteSize,
    /// The near cache's freshness bound in milliseconds: an entry is served only while its
    /// node has proved, within this long, that every invalidation before it arrived.
    #[arg(long, env = "SHOAL_PROXY_NEAR_CACHE_MAX_STALENESS", value_name = "MS", default_value_t = 50, help_heading = heading::CLUSTER)]
    pub near_cache_max_staleness: u64,
    /// The longest a near cache entry is kept, in seconds, whatever its key's TTL.
    #[arg(long, env = "SHOAL_PROXY_NEAR_CACHE_TTL", value_name = "SECONDS", default_value_t = 300, help_heading = heading::CLUSTER)]
    pub near_cache_ttl: u64,
    /// Batch writes to hot keys over this many milliseconds (1 to 1000; 0: off): plain SETs
    /// of a key the cluster finds hot become the last one, INCR/INCRBY/DECR/DECRBYs one INCRBY
    /// of their sum, each acknowledged once its batch is.
    #[arg(long, env = "SHOAL_PROXY_HOT_WRITE_BATCH_MS", value_name = "MS", default_value_t = 0, help_heading = heading::CLUSTER)]
    pub hot_write_batch_ms: u64,
    /// Keep up to this many copies of each hot key on other shards (0: none, at most 16):
    /// GETs of a hot key are spread over it and its copies `key#j`; a write of it deletes them.
    #[arg(long, env = "SHOAL_PROXY_HOT_KEY_COPIES", value_name = "N", default_value_t = 0, help_heading = heading::CLUSTER)]
    pub hot_key_copies: usize,
    /// How long a hot key's copy lives once filled, in milliseconds (1 to 60000): the most a
    /// reader of a copy can lag a write another client made.
    #[arg(long, env = "SHOAL_PROXY_HOT_KEY_COPY_TTL_MS", value_name = "MS", default_value_t = 50, help_heading = heading::CLUSTER)]
    pub hot_key_copy_ttl_ms: u64,

    /// Most simultaneous clients.
    #[arg(long, env = "SHOAL_PROXY_MAXCLIENTS", default_value_t = 10_000, help_heading = heading::LIMITS)]
    pub maxclients: usize,
    /// Close clients idle for this many seconds; 0 never.
    #[arg(long, env = "SHOAL_PROXY_TIMEOUT", default_value_t = 0, help_heading = heading::LIMITS)]
    pub timeout: u64,
    /// Most HTTP connections at once, apart from maxclients.
    #[arg(long, env = "SHOAL_PROXY_HTTP_MAXCLIENTS", default_value_t = 1024, help_heading = heading::LIMITS)]
    pub http_maxclients: usize,
    /// Seconds an HTTP client may take to send headers or the next piece of a body, or stay
    /// idle between requests.
    #[arg(long, env = "SHOAL_PROXY_HTTP_TIMEOUT", default_value_t = 10, help_heading = heading::LIMITS)]
    pub http_timeout: u64,
    /// Most bytes of HTTP request bodies held at once.
    #[arg(long, env = "SHOAL_PROXY_HTTP_MAX_INFLIGHT_BYTES", value_parser = ByteSize::from_arg, default_value = "1gb", help_heading = heading::LIMITS)]
    pub http_max_inflight_bytes: ByteSize,
    /// Most unprocessed input per client.
    #[arg(long, env = "SHOAL_PROXY_CLIENT_QUERY_BUFFER_LIMIT", value_parser = ByteSize::from_arg, default_value = "1gb", help_heading = heading::LIMITS)]
    pub client_query_buffer_limit: ByteSize,
    /// Output limit for normal clients: "<hard> <soft> <seconds>".
    #[arg(
        long,
        env = "SHOAL_PROXY_CLIENT_OUTPUT_BUFFER_LIMIT",
        default_value = "0 0 0",
        value_parser = OutputBufferLimit::parse,
        help_heading = heading::LIMITS
    )]
    pub client_output_buffer_limit: OutputBufferLimit,
    /// Largest bulk string a client may send (and largest HTTP body).
    #[arg(long, env = "SHOAL_PROXY_PROTO_MAX_BULK_LEN", value_parser = ByteSize::from_arg, default_value = "512mb", help_heading = heading::LIMITS)]
    pub proto_max_bulk_len: ByteSize,
    /// Most arguments per command.
    #[arg(
        long,
        env = "SHOAL_PROXY_PROTO_MAX_MULTIBULK_LEN",
        default_value_t = 2_147_483_647,
        help_heading = heading::LIMITS
    )]
    pub proto_max_multibulk_len: u64,

    /// Password clients must send with AUTH (or HELLO AUTH, or HTTP Bearer/Basic).
    #[arg(long, env = "SHOAL_PROXY_REQUIREPASS", help_heading = heading::SECURITY)]
    pub requirepass: Option<String>,
    /// ACL file of the proxy's own users (Redis's format), loaded at start, reloaded by ACL
    /// LOAD, written by ACL SAVE.
    #[arg(long, env = "SHOAL_PROXY_ACLFILE", value_name = "PATH", help_heading = heading::SECURITY)]
    pub aclfile: Option<std::path::PathBuf>,
    /// Without a password, turn away clients not on the loopback interface (127.0.0.1, ::1)
    /// with Redis's -DENIED: yes or no.
    #[arg(long, env = "SHOAL_PROXY_PROTECTED_MODE", value_name = "yes|no", value_parser = yes_no, default_value = "yes", help_heading = heading::SECURITY)]
    pub protected_mode: bool,
    /// Host names HTTP requests may be addressed to (IP addresses always may), comma-separated:
    /// names, .suffix for a domain, or * for any.
    #[arg(long, env = "SHOAL_PROXY_HTTP_ALLOWED_HOSTS", value_name = "NAMES", default_value = "localhost", help_heading = heading::SECURITY)]
    pub http_allowed_hosts: String,

    /// RESP port for TLS clients; with it, --port 0 serves TLS only [default: none].
    #[arg(long, env = "SHOAL_PROXY_TLS_PORT", help_heading = heading::TLS)]
    pub tls_port: Option<u16>,
    /// The server's certificate chain (PEM), leaf first.
    #[arg(long, env = "SHOAL_PROXY_TLS_CERT_FILE", value_name = "FILE", help_heading = heading::TLS)]
    pub tls_cert_file: Option<String>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "SHOAL_PROXY_TLS_KEY_FILE", value_name = "FILE", help_heading = heading::TLS)]
    pub tls_key_file: Option<String>,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, env = "SHOAL_PROXY_TLS_CA_CERT_FILE", value_name = "FILE", help_heading = heading::TLS)]
    pub tls_ca_cert_file: Option<String>,
    /// A directory of more CA certificates (PEM files).
    #[arg(long, env = "SHOAL_PROXY_TLS_CA_CERT_DIR", value_name = "DIR", help_heading = heading::TLS)]
    pub tls_ca_cert_dir: Option<String>,
    /// Whether TLS clients must show a certificate signed by the CA: yes, optional or no
    /// [default: yes].
    #[arg(long, env = "SHOAL_PROXY_TLS_AUTH_CLIENTS", value_name = "yes|no|optional", value_parser = auth_clients, help_heading = heading::TLS)]
    pub tls_auth_clients: Option<String>,
    /// TLS versions offered: "TLSv1.2 TLSv1.3", or either [default: both].
    #[arg(long, env = "SHOAL_PROXY_TLS_PROTOCOLS", value_name = "VERSIONS", help_heading = heading::TLS)]
    pub tls_protocols: Option<String>,
    /// TLS 1.3 cipher suites, colon-separated (e.g. TLS_AES_128_GCM_SHA256) [default: all].
    #[arg(long, env = "SHOAL_PROXY_TLS_CIPHERSUITES", value_name = "SUITES", help_heading = heading::TLS)]
    pub tls_ciphersuites: Option<String>,
    /// TLS 1.2 cipher suites, colon-separated (e.g. ECDHE-RSA-AES128-GCM-SHA256) [default: all].
    #[arg(long, env = "SHOAL_PROXY_TLS_CIPHERS", value_name = "SUITES", help_heading = heading::TLS)]
    pub tls_ciphers: Option<String>,
    /// Serve the HTTP API over TLS (HTTPS) with the same certificate: yes or no [default: no].
    #[arg(long, env = "SHOAL_PROXY_HTTP_TLS", value_name = "yes|no", value_parser = yes_no, help_heading = heading::TLS)]
    pub http_tls: Option<bool>,
    /// Speak TLS to the nodes, on their RESP ports and their cluster bus (nodes with
    /// --tls-cluster yes), trusting --tls-ca-cert-file and showing --tls-cert-file as a client
    /// certificate; --cluster must then name the nodes' TLS ports (the ports their map
    /// announces): yes or no [default: no].
    #[arg(long, env = "SHOAL_PROXY_TLS_CLUSTER", value_name = "yes|no", value_parser = yes_no, help_heading = heading::TLS)]
    pub tls_cluster: Option<bool>,

    /// Sampled access log: one JSON line (ts, client, cmd, key, bytes_in, bytes_out, latency_us,
    /// result) per sampled command, written off the request path [default: none].
    #[arg(long, env = "SHOAL_PROXY_ACCESS_LOG", value_name = "PATH", help_heading = heading::LOGGING)]
    pub access_log: Option<PathBuf>,
    /// Share of commands the access log records, 0 to 1.
    #[arg(long, env = "SHOAL_PROXY_ACCESS_LOG_SAMPLE", value_name = "RATE", default_value_t = 0.01, help_heading = heading::LOGGING)]
    pub access_log_sample: f64,
    /// Size past which the access log is renamed PATH.1 and a new one started.
    #[arg(long, env = "SHOAL_PROXY_ACCESS_LOG_MAX_SIZE", value_name = "SIZE", value_parser = ByteSize::from_arg, default_value = "64mb", help_heading = heading::LOGGING)]
    pub access_log_max_size: ByteSize,
    /// Log format: human or json.
    #[arg(long, env = "SHOAL_PROXY_LOG_FORMAT", default_value = "human", help_heading = heading::LOGGING)]
    pub log_format: LogFormat,
    /// Log level or filter (info, debug, shoal_proxy=debug...).
    #[arg(long, env = "SHOAL_PROXY_LOG_LEVEL", default_value = "info", help_heading = heading::LOGGING)]
    pub log_level: String,
}

/// `--read-from` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadFromArg {
    /// The shard's primary.
    Primary,
    /// A healthy replica (the primary when there is none).
    Replica,
    /// Any member of the shard.
    Any,
}

impl From<ReadFromArg> for shoal_proxy::ReadFrom {
    fn from(arg: ReadFromArg) -> Self {
        match arg {
            ReadFromArg::Primary => shoal_proxy::ReadFrom::Primary,
            ReadFromArg::Replica => shoal_proxy::ReadFrom::Replica,
            ReadFromArg::Any => shoal_proxy::ReadFrom::Any,
        }
    }
}

impl ProxyArgs {
    /// The proxy's configuration.
    pub fn to_config(&self) -> anyhow::Result<shoal_proxy::ProxyConfig> {
        let size = |s: ByteSize, name: &str| {
            usize::try_from(s.0).map_err(|_| anyhow::anyhow!("--{name} is too large"))
        };
        let config = shoal_proxy::ProxyConfig {
            bind: self.bind.clone(),
            port: self.port,
            http_port: (self.http_port != 0).then_some(self.http_port),
            threads: self.threads,
            cluster: self.cluster.clone(),
            cluster_password: self.cluster_password.clone(),
            cluster_secret: Some(shoal_cluster::BusSecret::load(&self.cluster_secret_file)?),
            requirepass: self.requirepass.clone().filter(|p| !p.is_empty()),
            aclfile: self.aclfile.clone(),
            protected_mode: self.protected_mode,
            tls_port: self.tls_port.filter(|p| *p != 0),
            tls: self.tls_options(),
            http_tls: self.http_tls.unwrap_or(false),
            tls_cluster: self.tls_cluster.unwrap_or(false),
            maxclients: self.maxclients,
            client_query_buffer_limit: size(
                self.client_query_buffer_limit,
                "client-query-buffer-limit",
            )?,
            client_output_buffer_limit: self.client_output_buffer_limit.into(),
            timeout: self.timeout,
            proto_max_bulk_len: size(self.proto_max_bulk_len, "proto-max-bulk-len")?,
            proto_max_multibulk_len: usize::try_from(self.proto_max_multibulk_len)
                .map_err(|_| anyhow::anyhow!("--proto-max-multibulk-len is too large"))?,
            upstream_timeout: std::time::Duration::from_millis(self.upstream_timeout),
            read_from: self.read_from.into(),
            access_log: self.access_log.clone(),
            access_log_sample: self.access_log_sample,
            access_log_max_size: self.access_log_max_size.0,
            near_cache: match size(self.near_cache, "near-cache")? {
                0 => None,
                bytes => Some(
                    shoal_proxy::NearCacheConfig::new(bytes)
                        .with_max_staleness(std::time::Duration::from_millis(
                            self.near_cache_max_staleness,
                        ))
                        .with_max_ttl(std::time::Duration::from_secs(self.near_cache_ttl)),
                ),
            },
            hot_write_batch: match self.hot_write_batch_ms {
                0 => None,
                1..=1000 => Some(std::time::Duration::from_millis(self.hot_write_batch_ms)),
                _ => anyhow::bail!("--hot-write-batch-ms must be from 0 (off) to 1000"),
            },
            hot_key_copies: match (self.hot_key_copies, self.hot_key_copy_ttl_ms) {
                (0, _) => None,
                (copies @ 1..=shoal_proxy::HotKeyCopies::MAX, ttl @ 1..=60_000) => Some(
                    shoal_proxy::HotKeyCopies::new(copies)
                        .with_ttl(std::time::Duration::from_millis(ttl)),
                ),
                (1..=shoal_proxy::HotKeyCopies::MAX, _) => {
                    anyhow::bail!("--hot-key-copy-ttl-ms must be from 1 to 60000")
                }
                _ => anyhow::bail!("--hot-key-copies must be from 0 (off) to 16"),
            },
            http: shoal_http::HttpSettings {
                max_connections: self.http_maxclients.max(1),
                timeout: std::time::Duration::from_secs(self.http_timeout.max(1)),
                max_inflight_bytes: size(self.http_max_inflight_bytes, "http-max-inflight-bytes")?,
                allowed_hosts: shoal_http::AllowedHosts::parse(&self.http_allowed_hosts),
            },
            ..shoal_proxy::ProxyConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

impl ProxyArgs {
    /// The TLS flags, as the front door takes them.
    fn tls_options(&self) -> shoal_frontdoor::tls::TlsOptions {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        shoal_frontdoor::tls::TlsOptions {
            cert_file: text(&self.tls_cert_file),
            key_file: text(&self.tls_key_file),
            ca_cert_file: text(&self.tls_ca_cert_file),
            ca_cert_dir: text(&self.tls_ca_cert_dir),
            auth_clients: self
                .tls_auth_clients
                .as_deref()
                .map(shoal_frontdoor::tls::ClientAuth::parse)
                .transpose()
                .ok()
                .flatten()
                .unwrap_or_default(),
            protocols: text(&self.tls_protocols),
            ciphersuites: text(&self.tls_ciphersuites),
            ciphers: text(&self.tls_ciphers),
        }
    }
}

/// `yes`, `no` or `optional`, for `--tls-auth-clients`.
fn auth_clients(value: &str) -> Result<String, String> {
    shoal_frontdoor::tls::ClientAuth::parse(value).map(|auth| auth.name().to_string())
}

/// `yes` or `no`, for Redis's boolean settings.
fn yes_no(value: &str) -> Result<bool, String> {
    shoal_server::config::parse_yes_no(value)
}
