//! The proxy's settings.

use std::time::Duration;

use shoal_client::{BusSecret, ClientConfig, HotKeyCopies, NearCacheConfig, Protocol, ReadFrom};
use shoal_frontdoor::tls::{TlsError, TlsOptions};
use shoal_frontdoor::{Limits, OutputLimit};

/// The name the proxy gives its connections to the nodes (`CLIENT LIST` on a node shows it).
pub const UPSTREAM_CLIENT_NAME: &str = "shoal:proxy";

/// Every setting of a proxy. [`Default`] gives the defaults of `shoal proxy`; only
/// [`cluster`](Self::cluster) and [`cluster_secret`](Self::cluster_secret) have to be filled
/// in.
#[derive(Clone)]
pub struct ProxyConfig {
    /// Address the RESP and HTTP listeners bind to.
    pub bind: String,
    /// RESP port (0 picks a free one).
    pub port: u16,
    /// HTTP port for the JSON API and `/metrics`: `None` runs none, `Some(0)` picks a free
    /// port (`shoal proxy --http-port 0` means `None`).
    pub http_port: Option<u16>,
    /// Worker threads of the proxy's runtime (0: one per available CPU).
    pub threads: usize,
    /// RESP addresses (`host:port`) of some cluster nodes, to learn the cluster map from.
    pub cluster: Vec<String>,
    /// Password the proxy authenticates to the nodes with (`None`: none).
    pub cluster_password: Option<String>,
    /// The cluster secret, which the proxy proves on the cluster bus to follow the map
    /// (required).
    pub cluster_secret: Option<BusSecret>,
    /// Password clients of the proxy must give with `AUTH` or `HELLO ... AUTH` (`None`: none).
    pub requirepass: Option<String>,
    /// The ACL file of the proxy's own users (loaded at start, `ACL LOAD`, `ACL SAVE`;
    /// `None`: users live until restart).
    pub aclfile: Option<std::path::PathBuf>,
    /// Without a password, turn away clients not on the loopback interface with Redis's
    /// `-DENIED` (protected mode, on by default as a node's).
    pub protected_mode: bool,
    /// RESP port for TLS clients (`None`: none); with it, `port` 0 serves TLS only.
    pub tls_port: Option<u16>,
    /// The TLS settings of the TLS port (certificate, key, CA, client certificates,
    /// protocols and suites).
    pub tls: TlsOptions,
    /// Whether the HTTP API is served over TLS (HTTPS), with the TLS settings' certificate.
    pub http_tls: bool,
    /// Whether the proxy speaks TLS to the nodes (`tls-cluster`), on their RESP ports and on
    /// their cluster bus, where it follows the map: their certificates must chain to the CA
    /// of [`tls`](Self::tls), whose certificate and key are shown as a client certificate
    /// (the nodes' bus requires one). The cluster's map must then give the nodes' TLS ports
    /// (`tls-replication`, or `cluster-announce-port`), `cluster` name them, and the nodes
    /// run with `tls-cluster yes`.
    pub tls_cluster: bool,
    /// Most simultaneous clients; extra ones get `-ERR max number of clients reached`.
    pub maxclients: usize,
    /// Largest unprocessed input a client may accumulate before it is disconnected.
    pub client_query_buffer_limit: usize,
    /// Most replies a client may leave unread (`client-output-buffer-limit` for normal
    /// clients; zeros: no limit, the client is made to wait instead).
    pub client_output_buffer_limit: OutputLimit,
    /// Seconds a client may stay idle before it is closed (0: forever).
    pub timeout: u64,
    /// Largest bulk string a client may send (`proto-max-bulk-len`); also the largest HTTP body.
    pub proto_max_bulk_len: usize,
    /// Most arguments in one command (`proto-max-multibulk-len`).
    pub proto_max_multibulk_len: usize,
    /// Longest wait for one node's reply (retries come on top, as the client's policy says).
    pub upstream_timeout: Duration,
    /// Longest wait at start for the first cluster map.
    pub map_timeout: Duration,
    /// Which members of a shard serve reads (replicas may lag the primary's writes).
    pub read_from: ReadFrom,
    /// The HTTP API's guards: connections, timeouts, bodies in flight, allowed host names.
    pub http: shoal_http::HttpSettings,
    /// The near cache the proxy keeps for all its clients (`None`: none), as the smart
    /// client keeps it ([`NearCacheConfig`]): reads of cacheable commands are answered from
    /// memory until a node invalidates their key.
    pub near_cache: Option<NearCacheConfig>,
    /// Write batching for hot keys (`None`: none): plain `SET`s and increments of a key the
    /// cluster finds hot, within this window, are sent as one (see shoal-client's
    /// `ClientConfig::hot_write_batch`).
    pub hot_write_batch: Option<Duration>,
    /// Copies of hot keys on other shards (`None`: none): `GET`s of a hot key spread over it
    /// and its copies (see shoal-client's `ClientConfig::hot_key_copies`).
    pub hot_key_copies: Option<HotKeyCopies>,
    /// The sampled access log's file (`None`: none): one JSON line per sampled command, as a
    /// node writes it ([`shoal_frontdoor::access_log`]).
    pub access_log: Option<std::path::PathBuf>,
    /// The share of commands the access log records, 0 to 1.
    pub access_log_sample: f64,
    /// Past this many bytes the access log is renamed `<file>.1` and a new one started.
    pub access_log_max_size: u64,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("ProxyConfig")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("http_port", &self.http_port)
            .field("threads", &self.threads)
            .field("cluster", &self.cluster)
            .field("cluster_password", &redact(&self.cluster_password))
            .field("cluster_secret", &self.cluster_secret)
            .field("requirepass", &redact(&self.requirepass))
            .field("aclfile", &self.aclfile)
            .field("protected_mode", &self.protected_mode)
            .field("tls_port", &self.tls_port)
            .field("tls", &self.tls)
            .field("http_tls", &self.http_tls)
            .field("tls_cluster", &self.tls_cluster)
            .field("maxclients", &self.maxclients)
            .field("client_query_buffer_limit", &self.client_query_buffer_limit)
            .field(
                "client_output_buffer_limit",
                &self.client_output_buffer_limit,
            )
            .field("timeout", &self.timeout)
            .field("proto_max_bulk_len", &self.proto_max_bulk_len)
            .field("proto_max_multibulk_len", &self.proto_max_multibulk_len)
            .field("upstream_timeout", &self.upstream_timeout)
            .field("map_timeout", &self.map_timeout)
            .field("read_from", &self.read_from)
            .field("http", &self.http)
            .finish()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            bind: "127.0.0.1".into(),
            port: 6380,
            http_port: None,
            threads: 0,
            cluster: Vec::new(),
            cluster_password: None,
            cluster_secret: None,
            requirepass: None,
            aclfile: None,
            protected_mode: true,
            tls_port: None,
            tls: TlsOptions::default(),
            http_tls: false,
            tls_cluster: false,
            maxclients: 10_000,
            client_query_buffer_limit: 1024 * 1024 * 1024,
            client_output_buffer_limit: OutputLimit::default(),
            timeout: 0,
            proto_max_bulk_len: 512 * 1024 * 1024,
            proto_max_multibulk_len: i32::MAX as usize,
            upstream_timeout: Duration::from_secs(2),
            map_timeout: Duration::from_secs(5),
            read_from: ReadFrom::Primary,
            http: shoal_http::HttpSettings::default(),
            near_cache: None,
            hot_write_batch: None,
            hot_key_copies: None,
            access_log: None,
            access_log_sample: 0.01,
            access_log_max_size: 64 * 1024 * 1024,
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid proxy setting {setting}: {reason}")]
pub struct ConfigError {
    /// The setting's name.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ProxyConfig {
    /// Checks that the values are usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |setting, reason: &str| {
            Err(ConfigError {
                setting,
                reason: reason.to_string(),
            })
        };
        if self.cluster.iter().all(|s| s.trim().is_empty()) {
            return bad("cluster", "needs the address of at least one node");
        }
        if self.serves_tls() && (self.tls.cert_file.is_empty() || self.tls.key_file.is_empty()) {
            return bad(
                if self.tls_port.is_some() {
                    "tls-port"
                } else {
                    "http-tls"
                },
                "needs tls-cert-file and tls-key-file (the certificate and its key)",
            );
        }
        if self.cluster_secret.is_none() {
            return bad(
                "cluster-secret-file",
                "the proxy needs the cluster's secret to follow its map (--cluster-secret-file)",
            );
        }
        if self.maxclients == 0 {
            return bad("maxclients", "must be at least 1");
        }
        if let Some(near) = &self.near_cache {
            if near.max_staleness < Duration::from_millis(5) {
                return bad(
                    "near-cache-max-staleness",
                    "must be at least 5 (milliseconds)",
                );
            }
            if near.max_ttl.is_zero() {
                return bad("near-cache-ttl", "must be at least 1 (second)");
            }
        }
        if self.client_query_buffer_limit == 0 {
            return bad("client-query-buffer-limit", "must be positive");
        }
        if self.proto_max_bulk_len == 0 {
            return bad("proto-max-bulk-len", "must be positive");
        }
        if self.proto_max_multibulk_len == 0 {
            return bad("proto-max-multibulk-len", "must be positive");
        }
        if self.upstream_timeout.is_zero() || self.map_timeout.is_zero() {
            return bad("upstream-timeout", "timeouts must be positive");
        }
        Ok(())
    }

    /// Whether the proxy serves plain RESP clients: on `port`, unless it has a TLS port and
    /// `port` is 0 (TLS only).
    pub fn serves_plain(&self) -> bool {
        self.port != 0 || self.tls_port.is_none()
    }

    /// Whether any listener of the proxy serves TLS (the TLS port, or HTTPS).
    pub fn serves_tls(&self) -> bool {
        self.tls_port.is_some() || (self.http_tls && self.http_port.is_some())
    }

    /// The worker threads the runtime gets.
    pub fn effective_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    /// The limits the front door enforces.
    pub(crate) fn door_limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.proto_max_bulk_len,
            max_args: self.proto_max_multibulk_len,
            query_buffer_limit: self.client_query_buffer_limit,
            output: self.client_output_buffer_limit,
            pubsub_output: shoal_frontdoor::OutputLimit::PUBSUB_DEFAULT,
            maxclients: self.maxclients,
            timeout_seconds: self.timeout,
        }
    }

    /// [`ProxyConfig::client_config`], with TLS to the nodes' RESP ports and cluster bus if
    /// `tls-cluster` asks for it (reading the CA, certificate and key files).
    pub fn upstream_config(&self) -> Result<ClientConfig, TlsError> {
        let config = self.client_config();
        Ok(match self.tls_cluster {
            true => {
                let tls = self.tls.client_config()?;
                config.with_tls(tls.clone(), None).with_bus_tls(tls)
            }
            false => config,
        })
    }

    /// The configuration of the proxy's upstream client: RESP3 to the nodes (so replies keep
    /// their types and are re-encoded for each client's protocol), the cluster password, and
    /// [`UPSTREAM_CLIENT_NAME`].
    pub fn client_config(&self) -> ClientConfig {
        let seeds = self
            .cluster
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let mut config = ClientConfig::new(seeds)
            .with_protocol(Protocol::Resp3)
            .with_client_name(UPSTREAM_CLIENT_NAME)
            .with_request_timeout(self.upstream_timeout)
            .with_read_from(self.read_from);
        config.password = self.cluster_password.clone();
        config.cluster_secret = self.cluster_secret.clone();
        config.map_timeout = self.map_timeout;
        config.near_cache = self.near_cache;
        config.hot_write_batch = self.hot_write_batch;
        config.hot_key_copies = self.hot_key_copies;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_seeds_and_the_secret() {
        assert!(ProxyConfig::default().validate().is_err());
        let seeds_only = ProxyConfig {
            cluster: vec!["127.0.0.1:7000".into()],
            ..ProxyConfig::default()
        };
        let error = seeds_only.validate().unwrap_err();
        assert_eq!(error.setting, "cluster-secret-file");
        let config = ProxyConfig {
            cluster_secret: Some(BusSecret::new([7u8; 32]).unwrap()),
            ..seeds_only
        };
        assert!(config.validate().is_ok());
        let client = config.client_config();
        assert_eq!(client.seeds, vec!["127.0.0.1:7000".to_string()]);
        assert_eq!(client.protocol, Protocol::Resp3);
        assert!(client.validate().is_ok());
    }

    #[test]
    fn passwords_are_not_shown() {
        let config = ProxyConfig {
            requirepass: Some("s3cret".into()),
            cluster_password: Some("t0p".into()),
            cluster_secret: Some(BusSecret::new(*b"the-cluster-secret-0123456789abcdef").unwrap()),
            ..ProxyConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("t0p") && !shown.contains("the-cluster"),
            "{shown}"
        );
    }
}
