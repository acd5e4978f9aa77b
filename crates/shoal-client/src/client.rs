//! The client: the typed API, the raw command paths, and the retry loop under both.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use shoal_cluster::bus::{self, ClusterStatus, Request};
use shoal_cluster::hot_keys::HotKeySet;
use shoal_cluster::{ClusterMap, Slot, key_slot};
use shoal_proto::command_table::CommandSpec;
use shoal_proto::reply::Value;
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::codec::encode;
use crate::config::{ClientConfig, ReadFrom};
use crate::conn::ConnOptions;
use crate::copies::Copies;
use crate::counter::ShardedCounter;
use crate::error::{Error, error_code};
use crate::map_source::{BusMapSource, MapSink, MapSource, MapState};
use crate::near_cache::{self, NearCache, NearCacheStats};
use crate::pool::Pools;
use crate::router::{self, Redirect, Route, Split, parse_redirect};
use crate::stats::{ClientStats, Stats};
use crate::table::Miss;
use crate::transaction;
use crate::write_batch::{Batcher, Write};

/// What `TTL` says about a key, from [`Client::ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (Redis's `-2`).
    Missing,
    /// The key exists and does not expire (Redis's `-1`).
    Persistent,
    /// The key expires after this long (millisecond precision).
    Expires(Duration),
}

/// A smart client for a Shoal cluster. Cheap to clone (the clones share connections, map
/// and counters); `Send + Sync`, so one client serves every task.
///
/// Commands go to the primary owning their key's slot over one pipelined connection per node
/// (requests from many tasks share each socket write). See the [crate docs](crate) for the
/// retry policy and the error model.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    maps: Arc<MapState>,
    pools: Arc<Pools>,
    /// Connections that send `READONLY` when they open, for reads sent to replicas: `pools`
    /// itself when the configuration reads from replicas, else a pool of their own (used
    /// for hot keys' reads).
    readonly_pools: Arc<Pools>,
    stats: Arc<Stats>,
    near: Option<Arc<NearCache>>,
    /// Write batching for hot keys, if configured.
    batcher: Option<Arc<Batcher>>,
    /// Copies of hot keys on other shards, if configured.
    copies: Option<Copies>,
    tasks: Vec<AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("epoch", &self.inner.maps.map().epoch)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// What [`transaction::refuse_state`] says of `MULTI`, `EXEC`, `DISCARD` and `WATCH` sent on
/// their own.
const ON_SHARED: &str =
    "on the client's shared connections; use Client::transaction or Client::watch";

/// Where one request goes.
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    /// The node serving this slot (following redirections).
    Slot(Slot),
    /// Any primary.
    Any,
    /// This node, whatever it answers.
    Node(&'a str),
}

impl Client {
    /// Connects to the cluster that [`ClientConfig::seeds`] belong to: learns the map from the
    /// cluster bus, proving [`ClientConfig::cluster_secret`] (an [`Error::Config`] without
    /// one), and keeps following it ([`BusMapSource`]). Returns once the first map has
    /// arrived (or fails with [`Error::NoMap`] after [`ClientConfig::map_timeout`]).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use shoal_client::{Client, ClientConfig};
    ///
    /// let config = ClientConfig::new(["127.0.0.1:7000", "127.0.0.1:7001"])
    ///     .with_cluster_secret_file("/etc/shoal/cluster-secret".as_ref())?;
    /// let client = Client::connect(config).await?;
    /// client.set("greeting", "hello", None).await?;
    /// assert_eq!(client.get("greeting").await?.as_deref(), Some(&b"hello"[..]));
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        if config.seeds.is_empty() {
            return Err(Error::Config(
                "no seeds to learn the cluster map from".into(),
            ));
        }
        let source = BusMapSource::new(&config)?;
        Client::with_source(source, config).await
    }

    /// A client routing by `map`, which never changes (except by [`Client::install_map`]).
    /// `config.seeds` is not used.
    ///
    /// ```no_run
    /// # async fn demo(map: shoal_cluster::ClusterMap) -> Result<(), shoal_client::Error> {
    /// use shoal_client::{Client, ClientConfig};
    ///
    /// let client = Client::with_map(map, ClientConfig::default()).await?;
    /// let n = client.del(&["a", "b", "c"]).await?; // split by slot, summed
    /// # Ok(()) }
    /// ```
    pub async fn with_map(map: ClusterMap, config: ClientConfig) -> Result<Client, Error> {
        let client = Client::build(config, None)?;
        client.inner.maps.force(map);
        Ok(client)
    }

    /// A client fed by `source`. Returns once the source has offered a map of an epoch above
    /// 0 (or fails with [`Error::NoMap`] after [`ClientConfig::map_timeout`]).
    pub async fn with_source(
        source: impl MapSource,
        config: ClientConfig,
    ) -> Result<Client, Error> {
        let map_timeout = config.map_timeout;
        let client = Client::build(config, Some(Box::new(source)))?;
        let mut rx = client.inner.maps.subscribe();
        match tokio::time::timeout(map_timeout, rx.wait_for(|map| map.epoch > 0)).await {
            Ok(Ok(_)) => Ok(client),
            _ => Err(Error::NoMap(format!(
                "no cluster map arrived within {map_timeout:?}"
            ))),
        }
    }

    fn build(config: ClientConfig, source: Option<Box<dyn MapSource>>) -> Result<Client, Error> {
        config.validate()?;
        let stats = Arc::new(Stats::default());
        let maps = Arc::new(MapState::new(stats.clone()));
        let options = ConnOptions::of(&config);
        let pools = Arc::new(Pools::new(
            options.clone(),
            config.pool_size,
            config.backoff_base,
            stats.clone(),
        ));
        let readonly_pools = match options.readonly {
            true => pools.clone(),
            false => Arc::new(Pools::new(
                ConnOptions {
                    readonly: true,
                    ..options.clone()
                },
                config.pool_size,
                config.backoff_base,
                stats.clone(),
            )),
        };
        let near = config.near_cache.map(|near| {
            NearCache::new(
                near,
                &options,
                stats.clone(),
                config.request_timeout,
                maps.clone(),
            )
        });
        // Connections to nodes that left the map are closed when a new map arrives, and the
        // near cache drops what the map moved.
        let mut rx = maps.subscribe();
        let weak = [Arc::downgrade(&pools), Arc::downgrade(&readonly_pools)];
        let weak_near = near.as_ref().map(Arc::downgrade);
        let pruner = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let map = rx.borrow_and_update().clone();
                for pools in weak.iter().filter_map(std::sync::Weak::upgrade) {
                    pools.retain(|addr| map.nodes.values().any(|n| n.resp_addr() == addr));
                }
                if let Some(near) = weak_near.as_ref().and_then(|n| n.upgrade()) {
                    near.on_map();
                }
            }
        });
        let mut tasks = vec![pruner.abort_handle()];
        if let Some(source) = source {
            let sink = MapSink::new(maps.clone());
            tasks.push(tokio::spawn(source.run(sink)).abort_handle());
        }
        let batcher = config.hot_write_batch.map(Batcher::new);
        let copies = config.hot_key_copies.map(Copies::new);
        Ok(Client {
            inner: Arc::new(Inner {
                batcher,
                copies,
                config,
                maps,
                pools,
                readonly_pools,
                stats,
                near,
                tasks,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The map the client routes by.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.inner.maps.map()
    }

    /// A receiver of every map the client installs (it holds the current one), for a proxy
    /// that reacts to map changes.
    pub fn subscribe_map(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.inner.maps.subscribe()
    }

    /// Waits for the next map newer than the one held now, and returns it.
    pub async fn map_changed(&self) -> Arc<ClusterMap> {
        let mut rx = self.inner.maps.subscribe();
        let _ = rx.changed().await;
        rx.borrow().clone()
    }

    /// Installs `map` if it is newer than the client's (a map learned elsewhere, e.g. by a
    /// node that follows the bus itself). Returns whether it was installed.
    pub fn install_map(&self, map: ClusterMap) -> bool {
        self.inner.maps.offer(map)
    }

    /// Makes `set` the cluster's hot keys (a set learned elsewhere, e.g. by a node that
    /// follows the controller itself; a client following the bus gets them with the map):
    /// reads of these keys go to any member of their shard. Returns whether it changed them.
    pub fn install_hot_keys(&self, set: &HotKeySet) -> bool {
        self.inner.maps.hot.install(set)
    }

    /// The hot keys whose reads the client spreads, in no order.
    pub fn hot_keys(&self) -> Vec<Vec<u8>> {
        self.inner.maps.hot.keys()
    }

    /// The controller leader's account of the cluster: the map, every node's last report
    /// (load, memory, replication, hot keys) and the hot keys it publishes, as `shoal cluster
    /// status` and the nodes' dashboard show them. Asked over the cluster bus (it needs
    /// [`ClientConfig::cluster_secret`]) at the map's controller members in turn.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, Error> {
        let config = &self.inner.config;
        let credentials = crate::map_source::bus_credentials(config)?;
        let map = self.map();
        let mut last = String::from("the map names no controller member");
        for id in &map.controllers {
            let Some(node) = map.node(*id) else {
                continue;
            };
            let addr = node.bus_addr();
            let request = Request::Status;
            match bus::call_leader(&addr, &credentials, &request, config.request_timeout, 4).await {
                Ok(reply) => match bus::status_of(&addr, reply) {
                    Ok(status) => return Ok(status),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::NoMap(format!(
            "no controller leader answered: {last}"
        )))
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> ClientStats {
        self.inner.stats.snapshot()
    }

    /// A snapshot of the near cache's counters (`None`: the client has no near cache).
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.inner.near.as_ref().map(|near| near.stats())
    }

    /// The near cache's reply to `args` (the command `spec`, looked up in Shoal's command
    /// table, and its arguments, the name first), if it holds one it may serve; `None` if
    /// not (or the client has no near cache). For a proxy that has the spec at hand and
    /// answers a hit without a task; a miss then goes through [`Client::command`], which
    /// fills the cache.
    #[inline]
    pub fn cached<A: AsRef<[u8]>>(&self, spec: &CommandSpec, args: &[A]) -> Option<Value> {
        let near = self.inner.near.as_ref()?;
        if !near_cache::cacheable_spec(spec, args.len(), self.inner.config.protocol) {
            return None;
        }
        near.lookup(args, spec)
    }

    /// Whether the client keeps a near cache.
    pub fn has_near_cache(&self) -> bool {
        self.inner.near.is_some()
    }

    /// The near cache, for the paths that write around [`Client::command`].
    pub(crate) fn near_cache(&self) -> Option<&NearCache> {
        self.inner.near.as_deref()
    }

    /// Sends a command (name first) to the node owning its keys, following redirections and
    /// retrying as configured. `MGET`, `MSET`, `DEL`, `UNLINK`, `EXISTS` and `TOUCH` whose
    /// keys span slots are split by slot and their replies merged; other commands whose keys
    /// span slots fail with [`Error::CrossSlot`]. Keyless commands go to a random primary.
    ///
    /// A server error reply is `Ok(Value::Error(line))`, exactly as the server sent it (a proxy
    /// passes it on); `Err` is for failures to get a reply at all.
    ///
    /// `MULTI`, `EXEC`, `DISCARD` and `WATCH` are refused ([`Error::Config`]): they would act
    /// on a connection every task shares. Use [`Client::transaction`] and [`Client::watch`].
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
    /// use shoal_client::Value;
    ///
    /// let reply = client.command(&["APPEND", "log", "line\n"]).await?;
    /// assert!(matches!(reply, Value::Int(_)));
    /// # Ok(()) }
    /// ```
    pub async fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, Error> {
        self.observed(self.route_and_run(args)).await
    }

    /// Sends a command to the node at `node` (`host:port`) whatever its keys, for a proxy or
    /// an admin tool. Connection failures are retried as for [`Client::command`]; `-MOVED` and
    /// `-ASK` are not followed but returned, like every error reply, as `Ok(Value::Error)`.
    /// `MULTI`, `EXEC`, `DISCARD` and `WATCH` are refused as by [`Client::command`].
    pub async fn command_on<A: AsRef<[u8]>>(&self, node: &str, args: &[A]) -> Result<Value, Error> {
        if args.is_empty() {
            return Err(Error::Config("empty command".into()));
        }
        transaction::refuse_state(args, ON_SHARED)?;
        let readonly = router::readonly(args);
        self.observed(self.exec(&encode(args), Target::Node(node), readonly))
            .await
    }

    /// `GET key`.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        match self.typed(&[&b"GET"[..], key.as_ref()]).await? {
            Value::Bulk(value) => Ok(Some(Bytes::from(value))),
            Value::Null => Ok(None),
            other => Err(unexpected("GET", &other)),
        }
    }

    /// `SET key value [PX ttl]`. A TTL is sent in milliseconds, rounded up (so a TTL under
    /// 1 ms is 1 ms).
    pub async fn set(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let reply = self
            .set_with(key.as_ref(), value.as_ref(), ttl, false)
            .await?;
        expect_ok("SET", reply)
    }

    /// `SET key value NX [PX ttl]`: whether the key was set (it did not exist).
    pub async fn set_nx(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool, Error> {
        match self
            .set_with(key.as_ref(), value.as_ref(), ttl, true)
            .await?
        {
            Value::Simple(s) if s == b"OK" => Ok(true),
            Value::Null => Ok(false),
            other => Err(unexpected("SET NX", &other)),
        }
    }

    async fn set_with(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
        nx: bool,
    ) -> Result<Value, Error> {
        let ms = ttl.map(|t| millis_ceil(t).to_string());
        let mut args: Vec<&[u8]> = Vec::with_capacity(6);
        args.extend([&b"SET"[..], key, value]);
        if nx {
            args.push(b"NX");
        }
        if let Some(ms) = &ms {
            args.extend([&b"PX"[..], ms.as_bytes()]);
        }
        self.typed(&args).await
    }

    /// `DEL key...`: how many of the keys existed. Keys may span slots.
    pub async fn del<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, Error> {
        self.count("DEL", keys).await
    }

    /// `UNLINK key...`: how many of the keys existed. Keys may span slots.
    pub async fn unlink<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, Error> {
        self.count("UNLINK", keys).await
    }

    /// `EXISTS key...`: how many of the keys exist (a key given twice counts twice). Keys may
    /// span slots.
    pub async fn exists<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, Error> {
        self.count("EXISTS", keys).await
    }

    /// `TOUCH key...`: how many of the keys exist. Keys may span slots.
    pub async fn touch<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<u64, Error> {
        self.count("TOUCH", keys).await
    }

    async fn count<K: AsRef<[u8]>>(&self, name: &'static str, keys: &[K]) -> Result<u64, Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        match self.typed(&with_name(name, keys)).await? {
            Value::Int(n) => Ok(n.max(0) as u64),
            other => Err(unexpected(name, &other)),
        }
    }

    /// `MGET key...`: the values in key order. Keys may span slots (one `MGET` per slot, sent
    /// concurrently).
    pub async fn mget<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Vec<Option<Bytes>>, Error> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self.typed(&with_name("MGET", keys)).await? {
            Value::Array(items) if items.len() == keys.len() => items
                .into_iter()
                .map(|item| match item {
                    Value::Bulk(v) => Ok(Some(Bytes::from(v))),
                    Value::Null => Ok(None),
                    other => Err(unexpected("MGET", &other)),
                })
                .collect(),
            other => Err(unexpected("MGET", &other)),
        }
    }

    /// `MSET key value...`. Pairs may span slots: then one `MSET` per slot is sent, so the
    /// whole is not atomic (an error may leave some slots' pairs set), as with Redis Cluster.
    pub async fn mset<K: AsRef<[u8]>, V: AsRef<[u8]>>(
        &self,
        pairs: &[(K, V)],
    ) -> Result<(), Error> {
        if pairs.is_empty() {
            return Ok(());
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * pairs.len());
        args.push(b"MSET");
        for (k, v) in pairs {
            args.extend([k.as_ref(), v.as_ref()]);
        }
        expect_ok("MSET", self.typed(&args).await?)
    }

    /// The counter `key` kept in `parts` sub-counters spread over the cluster (see
    /// [`ShardedCounter`]): for a counter too hot for one primary.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
    /// let views = client.sharded_counter("page:home:views", 8)?;
    /// views.incr_by(1).await?;
    /// let total = views.get().await?;
    /// # Ok(()) }
    /// ```
    pub fn sharded_counter(
        &self,
        key: impl AsRef<[u8]>,
        parts: usize,
    ) -> Result<ShardedCounter, Error> {
        ShardedCounter::new(self.clone(), key.as_ref(), parts)
    }

    /// `INCR key`.
    pub async fn incr(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        self.int("INCR", &[&b"INCR"[..], key.as_ref()]).await
    }

    /// `INCRBY key by`.
    pub async fn incr_by(&self, key: impl AsRef<[u8]>, by: i64) -> Result<i64, Error> {
        let by = by.to_string();
        self.int("INCRBY", &[&b"INCRBY"[..], key.as_ref(), by.as_bytes()])
            .await
    }

    /// `DECR key`.
    pub async fn decr(&self, key: impl AsRef<[u8]>) -> Result<i64, Error> {
        self.int("DECR", &[&b"DECR"[..], key.as_ref()]).await
    }

    /// `DECRBY key by`.
    pub async fn decr_by(&self, key: impl AsRef<[u8]>, by: i64) -> Result<i64, Error> {
        let by = by.to_string();
        self.int("DECRBY", &[&b"DECRBY"[..], key.as_ref(), by.as_bytes()])
            .await
    }

    /// `PEXPIRE key ttl`: whether the key exists (and now expires).
    pub async fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool, Error> {
        let ms = millis_ceil(ttl).to_string();
        let n = self
            .int("PEXPIRE", &[&b"PEXPIRE"[..], key.as_ref(), ms.as_bytes()])
            .await?;
        Ok(n == 1)
    }

    /// `PTTL key`, as a [`Ttl`].
    pub async fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl, Error> {
        match self.int("PTTL", &[&b"PTTL"[..], key.as_ref()]).await? {
            -2 => Ok(Ttl::Missing),
            -1 => Ok(Ttl::Persistent),
            ms if ms >= 0 => Ok(Ttl::Expires(Duration::from_millis(ms as u64))),
            other => Err(unexpected("PTTL", &Value::Int(other))),
        }
    }

    /// `PING` to a random primary.
    pub async fn ping(&self) -> Result<(), Error> {
        match self.typed(&["PING"]).await? {
            Value::Simple(s) if s == b"PONG" => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    async fn int<A: AsRef<[u8]>>(&self, name: &str, args: &[A]) -> Result<i64, Error> {
        match self.typed(args).await? {
            Value::Int(n) => Ok(n),
            other => Err(unexpected(name, &other)),
        }
    }

    /// [`Client::command`] with error replies made errors.
    async fn typed<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, Error> {
        match self.command(args).await? {
            Value::Error(line) | Value::BulkError(line) => Err(Error::from_server_line(&line)),
            value => Ok(value),
        }
    }

    /// Runs `commands` (each the name first) as one transaction on the primary of their
    /// slot, and returns `EXEC`'s reply: the array of the commands' replies (a command's
    /// error reply in its place), or an error reply if the transaction ran nothing
    /// (`-EXECABORT` when a node refused a command while queuing it).
    ///
    /// Every key of every command must hash to one slot (use hash tags: `{user1}.a`,
    /// `{user1}.b`), else [`Error::CrossSlot`] before anything is sent; commands the client
    /// splits elsewhere (`MGET` over several slots) are not split here. Keyless commands may
    /// join (a transaction with no keys goes to any primary). `MULTI`, `EXEC`, `DISCARD`,
    /// `WATCH`, `RESET` and `QUIT` may not be among the commands ([`Error::Config`]).
    ///
    /// `MULTI`, the commands and `EXEC` are written as one piece on the node's shared,
    /// pipelined connection: requests of other tasks go before or after it, never between.
    ///
    /// A transaction that ran nothing because of where it was sent is sent again: after
    /// `-MOVED`/`-ASK` (to a queued command or to `EXEC`) at the new address, after
    /// `-TRYAGAIN`, `-CLUSTERDOWN` or `-LOADING` after a backoff, and after a connection that
    /// failed before the transaction was written. Once it may have reached the node (a
    /// timeout, a connection lost with it in flight) it is not sent again, unless every
    /// command only reads or [`ClientConfig::retry_writes_after_timeout`] is set: the error is
    /// returned, and the transaction may or may not have run ([`Error::is_ambiguous`]). When
    /// retries run out, the refusal is the reply (`-CLUSTERDOWN ...` rather than
    /// `-EXECABORT`).
    ///
    /// For optimistic locking (`WATCH`), see [`Client::watch`].
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
    /// use shoal_client::Value;
    ///
    /// let reply = client
    ///     .transaction(&[
    ///         &["SET", "{cart:7}.owner", "alice"][..],
    ///         &["INCR", "{cart:7}.items"],
    ///         &["EXPIRE", "{cart:7}.items", "3600"],
    ///     ])
    ///     .await?;
    /// let Value::Array(replies) = reply else {
    ///     panic!("the transaction did not run: {reply:?}");
    /// };
    /// assert_eq!(replies.len(), 3);
    /// # Ok(()) }
    /// ```
    pub async fn transaction<C, A>(&self, commands: &[C]) -> Result<Value, Error>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        self.observed(self.run_transaction(commands)).await
    }

    async fn run_transaction<C, A>(&self, commands: &[C]) -> Result<Value, Error>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        let batch = transaction::batch(commands)?;
        let written: Vec<&[u8]> = match self.near_cache() {
            Some(near) => {
                let keys: Vec<&[u8]> = commands
                    .iter()
                    .flat_map(|command| router::keys(command.as_ref()))
                    .collect();
                near.forget(&keys);
                keys
            }
            None => Vec::new(),
        };
        let outcome = self.send_transaction(&batch).await;
        if let Some(near) = self.near_cache() {
            near.forget(&written);
        }
        if !batch.readonly {
            let keys = commands
                .iter()
                .flat_map(|command| router::keys(command.as_ref()));
            self.drop_copies(keys).await;
        }
        outcome
    }

    async fn send_transaction(&self, batch: &transaction::Batch) -> Result<Value, Error> {
        let target = batch.slot.map_or(Target::Any, Target::Slot);
        let timeout = self.inner.config.request_timeout;
        let pools = &self.inner.pools;
        let replies = self
            .retrying(
                target,
                ReadFrom::Primary,
                batch.readonly,
                |addr, asking| async move {
                    pools
                        .get(&addr)?
                        .request_batch(batch.frame.clone(), asking, batch.replies, timeout)
                        .await
                },
            )
            .await?;
        Ok(transaction::outcome(replies))
    }

    /// The connections, for requests that need one of their own ([`Client::watch`]).
    pub(crate) fn pools(&self) -> &Pools {
        &self.inner.pools
    }

    /// Counts and times one API call.
    pub(crate) async fn observed(
        &self,
        call: impl Future<Output = Result<Value, Error>>,
    ) -> Result<Value, Error> {
        let stats = &self.inner.stats;
        let start = std::time::Instant::now();
        Stats::bump(&stats.requests);
        let result = call.await;
        stats.record_latency(start.elapsed());
        match &result {
            Err(_) => Stats::bump(&stats.errors),
            Ok(Value::Error(_) | Value::BulkError(_)) => Stats::bump(&stats.server_errors),
            Ok(_) => {}
        }
        result
    }

    async fn route_and_run<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, Error> {
        transaction::refuse_state(args, ON_SHARED)?;
        if let Some(batcher) = &self.inner.batcher
            && let Some(result) = self.through_batch(batcher, args).await
        {
            return result;
        }
        self.route_and_run_now(args).await
    }

    /// With write batching: a plain write of a hot key joins its batch and returns its reply
    /// (`Some`); any other command on keys with something batched takes its place in their
    /// queues and runs when its turn comes (`None` after its run, with the result); other
    /// commands return `None` at once, to be run as usual.
    async fn through_batch<A: AsRef<[u8]>>(
        &self,
        batcher: &Arc<Batcher>,
        args: &[A],
    ) -> Option<Result<Value, Error>> {
        if let Some(key) = Write::key_of(args)
            && (self.inner.maps.hot.is_hot(key) || batcher.keeps(key))
            && let Some((key, write)) = Write::of(args)
        {
            let joined = batcher.offer(key, write);
            if let Some(pending) = joined.started {
                let client = self.clone();
                let batcher = batcher.clone();
                tokio::spawn(async move {
                    let send = |command: Vec<Bytes>| async move {
                        Stats::bump(&client.inner.stats.write_batches);
                        client.route_and_run_now(&command).await
                    };
                    batcher.send(pending, send).await;
                });
            }
            Stats::bump(&self.inner.stats.batched_writes);
            return Some(joined.reply.await.unwrap_or_else(|_| {
                Err(Error::Config(
                    "the client closed with the batch unsent".into(),
                ))
            }));
        }
        if !batcher.any_queued() {
            return None;
        }
        let keys = router::keys(args);
        let mut places = batcher.barrier(&keys);
        if places.is_empty() {
            return None;
        }
        for place in &mut places {
            place.wait().await;
        }
        // The places are released (and the next entries go) once the command is answered.
        let result = self.route_and_run_now(args).await;
        drop(places);
        Some(result)
    }

    async fn route_and_run_now<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, Error> {
        let routed = router::route(args)?;
        let writes_copies = self.inner.copies.is_some()
            && !routed.readonly
            && self.inner.maps.hot.any()
            && routed.spec.is_some();
        let result = match &self.inner.near {
            None => self.run_routed(args, routed).await,
            Some(near) => self.through_near_cache(near, args, routed).await,
        };
        if writes_copies {
            self.drop_copies(router::keys(args)).await;
        }
        result
    }

    /// Deletes the copies of those of `keys` that have any (keys just written), once: a
    /// failure is only logged, as the copies end with their TTL anyway.
    pub(crate) async fn drop_copies<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) {
        let Some(copies) = &self.inner.copies else {
            return;
        };
        let hot = &self.inner.maps.hot;
        if !hot.any() {
            return;
        }
        // Nothing is allocated for a write of no key with copies (every write while any key
        // is hot comes here).
        let mut del: Vec<Bytes> = Vec::new();
        for key in keys {
            if let Some(names) = copies.of_hot(key, hot, || self.inner.maps.map()) {
                if del.is_empty() {
                    del.push(Bytes::from_static(b"DEL"));
                }
                del.extend(names.iter().cloned());
            }
        }
        if del.is_empty() {
            return;
        }
        Stats::bump(&self.inner.stats.copy_drops);
        let dropped = match router::route(&del) {
            Ok(routed) => self.run_routed(&del, routed).await,
            Err(err) => Err(err),
        };
        if !matches!(dropped, Ok(Value::Int(_))) {
            tracing::debug!(
                ?dropped,
                "deleting hot keys' copies failed; they end with their TTL"
            );
        }
    }

    /// A `GET` of a hot key with copies, answered by one of them picked at random (`None`:
    /// not such a `GET`, or the pick was the key itself).
    async fn read_copy<A: AsRef<[u8]>>(&self, args: &[A]) -> Option<Result<Value, Error>> {
        let copies = self.inner.copies.as_ref()?;
        let [name, key] = args else { return None };
        if !name.as_ref().eq_ignore_ascii_case(b"get") {
            return None;
        }
        let key = key.as_ref();
        let names = copies.of_hot(key, &self.inner.maps.hot, || self.inner.maps.map())?;
        let copy = names.get(rand::random_range(0..=names.len()).checked_sub(1)?)?;
        let get = encode(&[&b"GET"[..], copy]);
        let reply = self
            .exec_from(&get, Target::Slot(key_slot(copy)), true, ReadFrom::Any)
            .await;
        if let Ok(Value::Bulk(_)) = reply {
            Stats::bump(&self.inner.stats.copy_reads);
            return Some(reply);
        }
        Some(self.fill_copy(copies, key, copy).await)
    }

    /// Reads `key` from its primary for a reader whose copy was missing, and fills `copy` with
    /// it (unless this client is filling it already: the reader then only reads the key, or
    /// another copy got there first).
    async fn fill_copy(&self, copies: &Copies, key: &[u8], copy: &Bytes) -> Result<Value, Error> {
        let slot = Target::Slot(key_slot(key));
        let get = encode(&[&b"GET"[..], key]);
        let Some(_filling) = copies.start_fill(copy) else {
            return self.exec_from(&get, slot, true, ReadFrom::Primary).await;
        };
        let pttl = encode(&[&b"PTTL"[..], key]);
        let (value, pttl) = futures_util::future::join(
            self.exec_from(&get, slot, true, ReadFrom::Primary),
            self.exec_from(&pttl, slot, true, ReadFrom::Primary),
        )
        .await;
        let value = value?;
        if let (Value::Bulk(bytes), Ok(Value::Int(pttl))) = (&value, pttl)
            && let Some(px) = copies.ttl_ms(pttl)
        {
            let px = px.to_string();
            let set = encode(&[&b"SET"[..], copy, bytes, b"PX", px.as_bytes(), b"NX"]);
            let filled = self
                .exec_from(&set, Target::Slot(key_slot(copy)), false, ReadFrom::Primary)
                .await;
            if let Ok(Value::Simple(_)) = filled {
                Stats::bump(&self.inner.stats.copy_fills);
            }
        }
        Ok(value)
    }

    /// Runs `args` with the near cache: a cacheable read is answered from it, or filled into
    /// it; a write drops its keys before it is sent and again once it is answered (so the
    /// writer never reads its old value back, whatever the order its reply and the node's
    /// invalidation arrive in).
    async fn through_near_cache<A: AsRef<[u8]>>(
        &self,
        near: &NearCache,
        args: &[A],
        routed: router::Routed,
    ) -> Result<Value, Error> {
        if routed.readonly {
            if let Route::Slot(slot) = routed.route
                && let Some(spec) = routed.spec
                && near_cache::cacheable_spec(spec, args.len(), self.inner.config.protocol)
            {
                if let Some(value) = near.lookup(args, spec) {
                    // A hit awaits nothing: it spends the task's budget as a socket read
                    // would, so a task that only hits still lets the runtime run the near
                    // cache's heartbeats (without them, no entry is served).
                    tokio::task::consume_budget().await;
                    return Ok(value);
                }
                near.miss();
                if let Some(result) = near.fill(args, spec, slot).await {
                    return result;
                }
            }
            return self.run_routed(args, routed).await;
        }
        let keys = routed
            .spec
            .map_or_else(Vec::new, |spec| router::keys_of(spec, args));
        near.forget(&keys);
        let result = self.run_routed(args, routed).await;
        near.forget(&keys);
        if near_cache::is_flush(args) {
            near.flush_all();
        }
        result
    }

    async fn run_routed<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        routed: router::Routed,
    ) -> Result<Value, Error> {
        match routed.route {
            Route::Any => self.exec(&encode(args), Target::Any, routed.readonly).await,
            Route::Slot(slot) if routed.readonly && self.is_hot_read(args, &routed) => {
                Stats::bump(&self.inner.stats.hot_key_reads);
                if let Some(copied) = self.read_copy(args).await {
                    return copied;
                }
                let target = Target::Slot(slot);
                self.exec_from(&encode(args), target, true, ReadFrom::Any)
                    .await
            }
            Route::Slot(slot) => {
                self.exec(&encode(args), Target::Slot(slot), routed.readonly)
                    .await
            }
            Route::Split(kind) => self.exec_split(args, kind, routed.readonly).await,
        }
    }

    /// Sends one part per slot, all at once (parts for one node share its socket writes), and
    /// merges the replies.
    async fn exec_split<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        kind: Split,
        readonly: bool,
    ) -> Result<Value, Error> {
        let (parts, nkeys) = router::split(args, kind);
        let replies = join_all(
            parts
                .iter()
                .map(|part| self.exec(&part.frame, Target::Slot(part.slot), readonly)),
        )
        .await;
        let replies = replies.into_iter().collect::<Result<Vec<Value>, Error>>()?;
        router::merge(kind, &parts, nkeys, replies).map_err(|reason| Error::UnexpectedReply {
            command: String::from_utf8_lossy(args[0].as_ref()).to_ascii_uppercase(),
            reply: reason,
        })
    }

    /// The node to send a command for `target` to: for a slot, the member `read_from` says.
    fn resolve(&self, target: Target<'_>, read_from: ReadFrom) -> Result<Arc<str>, Error> {
        let maps = &self.inner.maps;
        match target {
            Target::Slot(slot) => maps
                .slot_read_addr(slot, read_from)
                .map_err(|miss| match miss {
                    Miss::NoMap => Error::NoMap("the client's map is empty".into()),
                    Miss::Unassigned => Error::SlotUnassigned(slot),
                }),
            Target::Any => maps
                .any_addr()
                .ok_or_else(|| Error::NoMap("the client's map has no nodes".into())),
            Target::Node(addr) => Ok(addr.into()),
        }
    }

    /// Waits before retry number `failures + 1`; false if the attempts are used up.
    async fn backoff(&self, failures: &mut u32) -> bool {
        let config = &self.inner.config;
        *failures += 1;
        if *failures >= config.max_attempts {
            return false;
        }
        Stats::bump(&self.inner.stats.retries);
        tokio::time::sleep(jitter(config.backoff(*failures))).await;
        true
    }

    /// Whether `args`, a read of one slot, reads a hot key: its reads go to any member of
    /// the shard ([`crate::hot_keys`]).
    fn is_hot_read<A: AsRef<[u8]>>(&self, args: &[A], routed: &router::Routed) -> bool {
        let hot = &self.inner.maps.hot;
        hot.any()
            && routed
                .spec
                .and_then(|spec| router::first_key(spec, args))
                .is_some_and(|key| hot.is_hot(key))
    }

    /// Sends `frame` to `target` until it gets a reply or a final error.
    async fn exec(
        &self,
        frame: &Bytes,
        target: Target<'_>,
        readonly: bool,
    ) -> Result<Value, Error> {
        // Reads go where the configuration says, until a replica says it cannot serve yet.
        let read_from = if readonly {
            self.inner.config.read_from
        } else {
            ReadFrom::Primary
        };
        self.exec_from(frame, target, readonly, read_from).await
    }

    /// [`Client::exec`], a read going to the member `read_from` says.
    async fn exec_from(
        &self,
        frame: &Bytes,
        target: Target<'_>,
        readonly: bool,
        read_from: ReadFrom,
    ) -> Result<Value, Error> {
        let config = &self.inner.config;
        let timeout = config.request_timeout;
        let pools = match read_from {
            ReadFrom::Primary => &self.inner.pools,
            // Replicas serve only connections that sent READONLY.
            ReadFrom::Replica | ReadFrom::Any => &self.inner.readonly_pools,
        };
        self.retrying(target, read_from, readonly, |addr, asking| async move {
            pools
                .get(&addr)?
                .request(frame.clone(), asking, timeout)
                .await
        })
        .await
    }

    /// Sends a request to `target` with `send(addr, asking)` until it gets a reply or a final
    /// error: follows the redirections its [`Verdict`] names, retries after a backoff when it
    /// says the cluster is not ready (`-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`) or the request
    /// failed; after an ambiguous failure (it may have run) only if `retry_ambiguous` (or the
    /// configuration retries writes after timeouts). `read_from` picks a slot's member until
    /// a replica answers `-LOADING`.
    pub(crate) async fn retrying<R, F, Fut>(
        &self,
        target: Target<'_>,
        mut read_from: ReadFrom,
        retry_ambiguous: bool,
        send: F,
    ) -> Result<R, Error>
    where
        R: Verdict,
        F: Fn(Arc<str>, bool) -> Fut,
        Fut: Future<Output = Result<R, Error>>,
    {
        let config = &self.inner.config;
        let maps = &self.inner.maps;
        let mut failures = 0u32;
        let mut redirects = 0u32;
        let mut redirect: Option<(Arc<str>, bool)> = None;
        loop {
            let (addr, asking) = match redirect.take() {
                Some(to) => to,
                None => match self.resolve(target, read_from) {
                    Ok(addr) => (addr, false),
                    Err(err) => {
                        maps.request_refresh();
                        if self.backoff(&mut failures).await {
                            continue;
                        }
                        return Err(err);
                    }
                },
            };
            let err = match send(addr.clone(), asking).await {
                Ok(reply) => {
                    let Some(line) = reply.verdict() else {
                        return Ok(reply);
                    };
                    let follow = !matches!(target, Target::Node(_));
                    if follow && let Some(to) = parse_redirect(line, &addr) {
                        Stats::bump(&self.inner.stats.redirects);
                        redirects += 1;
                        let (to, ask) = match to {
                            Redirect::Moved(slot, to) => {
                                maps.note_moved(slot, &to);
                                maps.request_refresh();
                                (to, false)
                            }
                            Redirect::Ask(_, to) => (to, true),
                        };
                        if redirects > config.max_redirects {
                            return Err(Error::TooManyRedirects(config.max_redirects, to));
                        }
                        redirect = Some((to.into(), ask));
                        continue;
                    }
                    let code = error_code(line);
                    if code == b"LOADING" && read_from != ReadFrom::Primary {
                        // A replica still syncing: its primary has the data now.
                        read_from = ReadFrom::Primary;
                        continue;
                    }
                    if matches!(code, b"TRYAGAIN" | b"CLUSTERDOWN" | b"LOADING") {
                        if code == b"CLUSTERDOWN" {
                            maps.request_refresh();
                        }
                        if self.backoff(&mut failures).await {
                            continue;
                        }
                    }
                    return Ok(reply);
                }
                Err(err) => err,
            };
            let may_retry = err.is_retryable()
                && (!err.is_ambiguous() || retry_ambiguous || config.retry_writes_after_timeout);
            if !may_retry {
                return Err(err);
            }
            let unreachable = matches!(err, Error::Io { .. } | Error::ConnectionLost { .. });
            if unreachable {
                maps.unpin(&addr);
                if maps.has_node(&addr) {
                    // The node may have failed over: the map may be news already.
                    maps.request_refresh();
                }
            }
            if unreachable && read_from != ReadFrom::Primary {
                // A read sent to any member (a replica, or a hot key's spread) that could not
                // reach its node goes to the primary at once: the replica may be down, and
                // its map entry says so only after the node timeout.
                read_from = ReadFrom::Primary;
                continue;
            }
            tracing::debug!(%addr, error = %err, "request failed; retrying");
            if !self.backoff(&mut failures).await {
                return Err(err);
            }
        }
    }
}

/// What the retry loop reads in a reply: the error line that decides whether the request is
/// redirected, tried again or answered (`None`: answered).
pub(crate) trait Verdict {
    /// The deciding error line, if any.
    fn verdict(&self) -> Option<&[u8]>;
}

/// A command's reply decides by itself.
impl Verdict for Value {
    fn verdict(&self) -> Option<&[u8]> {
        match self {
            Value::Error(line) | Value::BulkError(line) => Some(line),
            _ => None,
        }
    }
}

/// `name` followed by `keys`, as arguments.
fn with_name<'a, K: AsRef<[u8]>>(name: &'static str, keys: &'a [K]) -> Vec<&'a [u8]> {
    let mut args: Vec<&[u8]> = Vec::with_capacity(1 + keys.len());
    args.push(name.as_bytes());
    args.extend(keys.iter().map(AsRef::as_ref));
    args
}

/// A delay between half of `nominal` and all of it, picked at random (so clients that failed
/// together do not retry together).
fn jitter(nominal: Duration) -> Duration {
    let nanos = u64::try_from(nominal.as_nanos()).unwrap_or(u64::MAX);
    let half = nanos / 2;
    Duration::from_nanos(half + rand::random_range(0..=nanos - half))
}

fn millis_ceil(d: Duration) -> u128 {
    let ms = d.as_millis();
    if Duration::from_millis(ms as u64) < d || ms == 0 {
        ms + 1
    } else {
        ms
    }
}

fn expect_ok(name: &str, reply: Value) -> Result<(), Error> {
    match reply {
        Value::Simple(s) if s == b"OK" => Ok(()),
        other => Err(unexpected(name, &other)),
    }
}

fn unexpected(name: &str, reply: &Value) -> Error {
    Error::unexpected_reply(name, reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_milliseconds() {
        assert_eq!(millis_ceil(Duration::ZERO), 1);
        assert_eq!(millis_ceil(Duration::from_micros(1)), 1);
        assert_eq!(millis_ceil(Duration::from_millis(5)), 5);
        assert_eq!(millis_ceil(Duration::from_micros(5001)), 6);
    }

    #[test]
    fn jitter_stays_within_half_and_all() {
        for ms in [0u64, 1, 10, 500] {
            let d = Duration::from_millis(ms);
            let j = jitter(d);
            assert!(j <= d && j >= d / 2, "{d:?} -> {j:?}");
        }
        assert!(jitter(Duration::MAX) <= Duration::MAX);
    }

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn clients_are_shareable() {
        assert_send_sync::<Client>();
    }
}
