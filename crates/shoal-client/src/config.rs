//! The client's configuration.

use std::sync::Arc;
use std::time::Duration;

pub use shoal_cluster::BusSecret;
pub use shoal_proto::Protocol;

/// Which nodes of a shard serve reads (commands flagged read-only: `GET`, `MGET`, `TTL`, ...).
/// Writes always go to the primary.
///
/// With `Replica` or `Any`, every connection sends `READONLY` when it opens (the Redis Cluster
/// convention), and a read may see a replica that has not yet applied a write the primary
/// acknowledged: replication is asynchronous unless the writer used `WAIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// Only the shard's primary (always consistent with the client's own writes).
    #[default]
    Primary,
    /// A random healthy replica of the shard; the primary when it has none.
    Replica,
    /// A random member of the shard, primary or healthy replica: spreads reads over all.
    Any,
}

/// How a [`Client`](crate::Client) connects, times out and retries.
///
/// Every field is public; [`ClientConfig::new`] and [`Default`] give the defaults, and the
/// `with_*` methods change one field each:
///
/// ```
/// use std::time::Duration;
/// use shoal_client::{BusSecret, ClientConfig, Protocol};
///
/// // Usually `with_cluster_secret_file`, with the nodes' `--cluster-secret-file`.
/// let secret = BusSecret::new(*b"0123456789abcdef0123456789abcdef").unwrap();
/// let config = ClientConfig::new(["127.0.0.1:6379"])
///     .with_cluster_secret(secret)
///     .with_password("s3cret")
///     .with_protocol(Protocol::Resp3)
///     .with_request_timeout(Duration::from_millis(250));
/// assert_eq!(config.max_attempts, 5);
/// ```
///
/// Its `Debug` form hides the password and the cluster secret.
#[derive(Clone)]
pub struct ClientConfig {
    /// RESP addresses (`host:port`) of some nodes, used to find the cluster bus before the
    /// first map arrives and when every node of the latest map is unreachable.
    pub seeds: Vec<String>,
    /// ACL user for `AUTH` (`None`: the default user).
    pub username: Option<String>,
    /// Password for `AUTH` (`None`: do not authenticate).
    pub password: Option<String>,
    /// The cluster secret (the nodes' `--cluster-secret-file`), which the client proves on
    /// the cluster bus to follow the map: [`Client::connect`](crate::Client::connect) needs
    /// it. A client given its map ([`Client::with_map`](crate::Client::with_map)) does not.
    pub cluster_secret: Option<BusSecret>,
    /// RESP2 (the default) or RESP3 (`HELLO 3` is sent on connect).
    pub protocol: Protocol,
    /// Name given to every connection with `CLIENT SETNAME` (`None`: none), as `CLIENT LIST`
    /// shows it. A Shoal node that forwards commands names its connections so that the node
    /// receiving them never forwards them again.
    pub client_name: Option<String>,
    /// Longest wait to open a connection (including `AUTH`/`HELLO`).
    pub connect_timeout: Duration,
    /// Longest wait for one reply.
    pub request_timeout: Duration,
    /// Tries per command for failures a retry may cure (connection errors, timeouts,
    /// `-TRYAGAIN`, `-CLUSTERDOWN`); 1 means no retries. Redirections are counted apart.
    pub max_attempts: u32,
    /// `-MOVED`/`-ASK` redirections followed per command before giving up.
    pub max_redirects: u32,
    /// First retry delay; each further retry doubles it, up to [`backoff_max`](Self::backoff_max).
    /// Delays are jittered (between half and all of the nominal delay).
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Connections per node; requests are spread over them round-robin. Each connection is
    /// pipelined, so 1 is usually enough.
    pub pool_size: usize,
    /// Whether a write (a command not flagged read-only) is retried after a timeout or a
    /// connection lost with the request in flight. Such a write may have run already, so a
    /// retry may apply it twice (`INCR`) or report it wrongly (`SET NX` answers nil). Off by
    /// default: the caller gets the error and decides. Reads are always retried.
    pub retry_writes_after_timeout: bool,
    /// Which nodes serve reads (see [`ReadFrom`]).
    pub read_from: ReadFrom,
    /// Longest wait in [`Client::connect`](crate::Client::connect) for the first map.
    pub map_timeout: Duration,
    /// How long a map subscription may stay silent (the bus pings every 500 ms) before the
    /// client subscribes at another node.
    pub subscription_silence: Duration,
    /// TLS to the nodes' RESP ports (`None`: plain TCP). The map's addresses must then be the
    /// nodes' TLS ports (`cluster-announce-port`). The cluster bus is apart: see
    /// [`bus_tls`](Self::bus_tls).
    pub tls: Option<ClientTls>,
    /// TLS to the nodes' cluster bus, where the client follows the map, for a cluster whose
    /// nodes run with `tls-cluster yes` (`None`: plain TCP). The rustls configuration must
    /// trust the cluster's CA and show a client certificate it signed (the nodes require
    /// one); each node's certificate must name the host of its bus address. The cluster
    /// secret is still proved, inside TLS.
    pub bus_tls: Option<Arc<rustls::ClientConfig>>,
    /// The near cache in front of the cluster (`None`, the default: none). See
    /// [`NearCacheConfig`] and the crate docs' "Near cache".
    pub near_cache: Option<NearCacheConfig>,
    /// Write batching for the cluster's hot keys (`None`, the default: none): plain `SET`s
    /// and increments of a hot key within this window are sent as one (the last `SET`, or one
    /// `INCRBY` of the sum), each acknowledged when it is answered. At most 1 s. See the crate
    /// docs' "Hot keys".
    pub hot_write_batch: Option<Duration>,
    /// Copies of the cluster's hot keys on other shards (`None`, the default: none): `GET`s
    /// of a hot key are spread over the key and its copies, and writes of it drop the copies.
    /// See [`HotKeyCopies`] and the crate docs' "Hot keys".
    pub hot_key_copies: Option<HotKeyCopies>,
}

/// Copies of hot keys ([`ClientConfig::hot_key_copies`]): a `GET` of a hot key reads the key
/// itself or one of up to `copies` copies named `key#j`, picked at random; the suffixes are
/// chosen so that each copy lives on a shard of its own. A missing copy is filled from the
/// key's primary by the read that finds it missing, and lives `ttl` at most, never past the
/// key's own expiry. A write of the key (any command not read-only, in a transaction or a
/// script too) deletes its copies before the writer gets its answer.
///
/// What a reader may see: a read that begins after a write was acknowledged sees it, except
/// in three cases, each bounded by `ttl`: a fill that read the key just before the write and
/// stored the copy just after its delete (`SET ... NX` keeps every later fill out, not that
/// one); a copy read on a replica before the delete reached it (the replication delay); and a
/// write from a client that keeps no copies (another application, `redis-cli` on a node),
/// which deletes none. Copies are ordinary keys: `DBSIZE` counts them, `SCAN` lists them, and
/// they are evicted like any key. Once the key cools nobody fills them, and they are gone
/// within `ttl`. Their names are the key's with `#` and a number, as a sharded counter's
/// parts: an application's own key named that way (`user#1` beside a hot `user`) would be
/// taken for a copy, so keep such names apart when copies are on.
///
/// ```
/// use shoal_client::{ClientConfig, HotKeyCopies};
///
/// let config = ClientConfig::new(["127.0.0.1:7000"]).with_hot_key_copies(HotKeyCopies::new(2));
/// assert_eq!(config.hot_key_copies.unwrap().ttl.as_millis(), 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HotKeyCopies {
    /// Most copies of a key, 1 to [`HotKeyCopies::MAX`]: fewer when the cluster has fewer
    /// other shards.
    pub copies: usize,
    /// How long a copy lives once written, 1 ms to 60 s: the bound on what a reader of a copy
    /// may miss (50 ms by default, the near cache's bound).
    pub ttl: Duration,
}

impl HotKeyCopies {
    /// Most copies a key may have.
    pub const MAX: usize = 16;

    /// `copies` copies of each hot key, living 50 ms each.
    pub fn new(copies: usize) -> HotKeyCopies {
        HotKeyCopies {
            copies,
            ttl: Duration::from_millis(50),
        }
    }

    /// Sets [`ttl`](Self::ttl).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// A client's near cache: values of read commands kept in the client's memory, each dropped
/// as soon as its node says the key changed (`CLIENT TRACKING`).
///
/// ```
/// use std::time::Duration;
/// use shoal_client::{ClientConfig, NearCacheConfig};
///
/// let config = ClientConfig::new(["127.0.0.1:7000"])
///     .with_near_cache(NearCacheConfig::new(64 << 20).with_max_ttl(Duration::from_secs(60)));
/// assert_eq!(config.near_cache.unwrap().max_staleness, Duration::from_millis(50));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NearCacheConfig {
    /// Most bytes the cached values (with their keys and arguments) may take; the least
    /// recently used are dropped past it (CLOCK, an approximation of LRU).
    pub max_bytes: usize,
    /// Longest an entry is kept, whatever its key's TTL (an entry never outlives its key's
    /// TTL either).
    pub max_ttl: Duration,
    /// The freshness bound: an entry is served only while its node has answered, within this
    /// long, a request sent on the tracking connection (a fill or a heartbeat `PING`), which
    /// proves every invalidation sent before it arrived. A node that stalls or vanishes makes
    /// its entries unservable after this long, until it answers again. Heartbeats go every
    /// fifth of it, while the node's entries are being read.
    pub max_staleness: Duration,
}

impl NearCacheConfig {
    /// A near cache of at most `max_bytes`, entries kept at most 5 minutes, staleness bound
    /// 50 ms.
    pub fn new(max_bytes: usize) -> NearCacheConfig {
        NearCacheConfig {
            max_bytes,
            max_ttl: Duration::from_secs(300),
            max_staleness: Duration::from_millis(50),
        }
    }

    /// Sets [`max_ttl`](Self::max_ttl).
    pub fn with_max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// Sets [`max_staleness`](Self::max_staleness).
    pub fn with_max_staleness(mut self, bound: Duration) -> Self {
        self.max_staleness = bound;
        self
    }
}

/// How a client speaks TLS to the nodes.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The rustls configuration: the CA the nodes' certificates chain to, and a client
    /// certificate if the nodes ask for one.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the nodes' certificates must carry (`None`: each node's host, an IP address
    /// or a DNS name).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("seeds", &self.seeds)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cluster_secret", &self.cluster_secret)
            .field("protocol", &self.protocol)
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("max_redirects", &self.max_redirects)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("pool_size", &self.pool_size)
            .field(
                "retry_writes_after_timeout",
                &self.retry_writes_after_timeout,
            )
            .field("read_from", &self.read_from)
            .field("map_timeout", &self.map_timeout)
            .field("subscription_silence", &self.subscription_silence)
            .field("tls", &self.tls.as_ref().map(|t| &t.server_name))
            .field("bus_tls", &self.bus_tls.is_some())
            .field("near_cache", &self.near_cache)
            .field("hot_write_batch", &self.hot_write_batch)
            .field("hot_key_copies", &self.hot_key_copies)
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            seeds: Vec::new(),
            username: None,
            password: None,
            cluster_secret: None,
            protocol: Protocol::Resp2,
            client_name: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            max_attempts: 5,
            max_redirects: 5,
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_millis(500),
            pool_size: 1,
            retry_writes_after_timeout: false,
            read_from: ReadFrom::Primary,
            map_timeout: Duration::from_secs(5),
            subscription_silence: Duration::from_secs(2),
            tls: None,
            bus_tls: None,
            near_cache: None,
            hot_write_batch: None,
            hot_key_copies: None,
        }
    }
}

impl ClientConfig {
    /// The defaults, with these seeds.
    pub fn new<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            seeds: seeds.into_iter().map(Into::into).collect(),
            ..ClientConfig::default()
        }
    }

    /// Sets [`password`](Self::password).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets [`cluster_secret`](Self::cluster_secret).
    pub fn with_cluster_secret(mut self, secret: BusSecret) -> Self {
        self.cluster_secret = Some(secret);
        self
    }

    /// Sets [`cluster_secret`](Self::cluster_secret) to the secret in the file at `path` (see
    /// [`BusSecret::load`]).
    pub fn with_cluster_secret_file(
        self,
        path: &std::path::Path,
    ) -> Result<Self, shoal_cluster::SecretError> {
        Ok(self.with_cluster_secret(BusSecret::load(path)?))
    }

    /// Sets [`client_name`](Self::client_name).
    pub fn with_client_name(mut self, name: impl Into<String>) -> Self {
        self.client_name = Some(name.into());
        self
    }

    /// Sets [`username`](Self::username).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets [`protocol`](Self::protocol).
    pub fn with_protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = protocol;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`max_attempts`](Self::max_attempts).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets [`backoff_base`](Self::backoff_base) and [`backoff_max`](Self::backoff_max).
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// Sets [`pool_size`](Self::pool_size).
    pub fn with_pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections;
        self
    }

    /// Sets [`retry_writes_after_timeout`](Self::retry_writes_after_timeout).
    pub fn with_retry_writes_after_timeout(mut self, retry: bool) -> Self {
        self.retry_writes_after_timeout = retry;
        self
    }

    /// Sets [`read_from`](Self::read_from).
    pub fn with_read_from(mut self, read_from: ReadFrom) -> Self {
        self.read_from = read_from;
        self
    }

    /// Sets [`near_cache`](Self::near_cache).
    pub fn with_near_cache(mut self, near_cache: NearCacheConfig) -> Self {
        self.near_cache = Some(near_cache);
        self
    }

    /// Sets [`hot_write_batch`](Self::hot_write_batch).
    pub fn with_hot_write_batch(mut self, window: Duration) -> Self {
        self.hot_write_batch = Some(window);
        self
    }

    /// Sets [`hot_key_copies`](Self::hot_key_copies).
    pub fn with_hot_key_copies(mut self, copies: HotKeyCopies) -> Self {
        self.hot_key_copies = Some(copies);
        self
    }

    /// Checks that the values are usable.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let bad = |m: &str| Err(crate::Error::Config(m.to_string()));
        if self.max_attempts == 0 {
            return bad("max_attempts must be at least 1");
        }
        if self.pool_size == 0 {
            return bad("pool_size must be at least 1");
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.backoff_max < self.backoff_base {
            return bad("backoff_max must not be below backoff_base");
        }
        if let Some(window) = self.hot_write_batch
            && (window.is_zero() || window > Duration::from_secs(1))
        {
            return bad("hot_write_batch must be above 0 and at most 1s");
        }
        if let Some(copies) = self.hot_key_copies
            && (!(1..=HotKeyCopies::MAX).contains(&copies.copies)
                || copies.ttl < Duration::from_millis(1)
                || copies.ttl > Duration::from_secs(60))
        {
            return bad("hot_key_copies needs 1 to 16 copies and a ttl from 1ms to 60s");
        }
        if let Some(near) = &self.near_cache {
            if near.max_bytes == 0 {
                return bad("the near cache's max_bytes must be positive");
            }
            if near.max_ttl.is_zero() || near.max_staleness < Duration::from_millis(5) {
                return bad(
                    "the near cache's max_ttl must be positive and max_staleness at least 5ms",
                );
            }
        }
        Ok(())
    }

    /// Speaks TLS to the nodes' RESP ports (see [`ClientTls`]); for their cluster bus too,
    /// add [`with_bus_tls`](Self::with_bus_tls).
    pub fn with_tls(
        mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: Option<String>,
    ) -> Self {
        self.tls = Some(ClientTls {
            config,
            server_name,
        });
        self
    }

    /// Sets [`bus_tls`](Self::bus_tls): follows the map over TLS, for a cluster whose bus
    /// speaks TLS (`tls-cluster yes`). Often the same configuration as
    /// [`with_tls`](Self::with_tls)'s, with a client certificate.
    pub fn with_bus_tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.bus_tls = Some(config);
        self
    }

    /// The nominal delay before retry number `retry` (1 for the first retry), before jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 1u32 << retry.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let c = ClientConfig::default();
        assert_eq!(c.backoff(1), Duration::from_millis(10));
        assert_eq!(c.backoff(2), Duration::from_millis(20));
        assert_eq!(c.backoff(4), Duration::from_millis(80));
        assert_eq!(c.backoff(10), Duration::from_millis(500));
        assert_eq!(c.backoff(1000), Duration::from_millis(500));
    }

    #[test]
    fn validation_refuses_nonsense() {
        assert!(ClientConfig::default().validate().is_ok());
        assert!(
            ClientConfig::default()
                .with_max_attempts(0)
                .validate()
                .is_err()
        );
        assert!(
            ClientConfig::default()
                .with_pool_size(0)
                .validate()
                .is_err()
        );
        assert!(
            ClientConfig::default()
                .with_backoff(Duration::from_secs(1), Duration::from_millis(1))
                .validate()
                .is_err()
        );
    }
}
