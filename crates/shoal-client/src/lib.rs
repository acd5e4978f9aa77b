//! Shoal's smart client.
//!
//! Given seed addresses, a [`Client`] learns the cluster map from the cluster bus and keeps
//! following it, sends each command to the primary that owns its key's slot, keeps one
//! multiplexed, pipelined connection per node (requests from many tasks share each socket
//! write), retries with backoff, follows `-MOVED`/`-ASK`, splits multi-key commands by slot,
//! runs transactions on one slot ([`Client::transaction`], [`Client::watch`]), and counts
//! requests, errors and latency ([`Client::stats`]).
//!
//! ```no_run
//! use std::time::Duration;
//! use shoal_client::{Client, ClientConfig, Ttl};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The cluster bus wants the cluster's secret: the nodes' --cluster-secret-file.
//! let config = ClientConfig::new(["127.0.0.1:7000"])
//!     .with_cluster_secret_file("/etc/shoal/cluster-secret".as_ref())?;
//! let client = Client::connect(config).await?;
//! client.set("session:1", "alice", Some(Duration::from_secs(60))).await?;
//! assert!(matches!(client.ttl("session:1").await?, Ttl::Expires(_)));
//! client.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).await?; // one MSET per slot
//! let values = client.mget(&["a", "b", "nope"]).await?; // reassembled in key order
//! assert_eq!(values[2], None);
//! assert_eq!(client.incr_by("hits", 5).await?, 5);
//! // Any command, routed by its keys; error replies come back as values.
//! let reply = client.command(&["STRLEN", "a"]).await?;
//! # Ok(()) }
//! ```
//!
//! # Routing
//!
//! A command's keys are found with Redis 7's key positions
//! ([`CommandSpec::key_positions`](shoal_proto::command_table::CommandSpec::key_positions)) and
//! hashed to slots ([`shoal_cluster::key_slot`], hash tags included). Keys in one slot go to
//! that slot's primary; keyless commands to a random primary. `MGET`, `MSET`, `DEL`,
//! `UNLINK`, `EXISTS` and `TOUCH` over several slots are split into one command per slot
//! (nodes answer `-CROSSSLOT` otherwise, as Redis Cluster does); the parts are sent
//! concurrently, so the parts for one node share its socket writes, and the replies are merged
//! (values in key order, `OK`, or the sum). Any other command over several slots fails with
//! [`Error::CrossSlot`] before anything is sent. Reads go where [`ReadFrom`] says: the
//! primary (the default), a healthy replica, or any member of the shard.
//!
//! # Retries
//!
//! * `-MOVED slot addr`: the client retries at `addr` at once, remembers the slot's new home
//!   until the next map, and asks its map source for a fresh map. `-ASK`: it retries at `addr`
//!   once, after `ASKING`. At most [`ClientConfig::max_redirects`] per command.
//! * `-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`, connection failures, timeouts, and a map with no
//!   owner for the slot: retried after a jittered exponential backoff
//!   ([`ClientConfig::backoff_base`] doubling up to [`ClientConfig::backoff_max`]) up to
//!   [`ClientConfig::max_attempts`] tries in all; then the last error is returned (for an error
//!   reply, the reply itself).
//! * A timeout, or a connection lost after the request was written, is *ambiguous*: the
//!   command may have run ([`Error::is_ambiguous`]). Read-only commands (by the command
//!   table's flags) are retried after it; writes only with
//!   [`ClientConfig::retry_writes_after_timeout`] (off by default), since retrying `INCR`
//!   could apply it twice. A connection that failed before the request was written
//!   ([`Error::Io`]) is always retried.
//!
//! # Errors
//!
//! The raw paths ([`Client::command`], [`Client::command_on`]) return server error replies as
//! `Ok(Value::Error(line))`, byte for byte, so a proxy can pass them on; their `Err` means no
//! reply could be had. The typed methods turn error replies into `Err`:
//! [`Error::Server`] with the line, or [`Error::ClusterDown`] / [`Error::CrossSlot`]. A reply
//! that is not RESP is [`Error::Protocol`] and the connection is dropped; no server input
//! makes the client panic.
//!
//! # Transactions
//!
//! [`Client::transaction`] runs commands as one Redis transaction on the primary of their slot
//! (every key of every command in one slot, as Redis Cluster requires: use hash tags, e.g.
//! `{user1}.a` and `{user1}.b`; keys in several slots are [`Error::CrossSlot`] before
//! anything is sent). `MULTI`, the commands and `EXEC` go out as one frame on the node's shared
//! connection, so no request of another task comes between them, and the call returns
//! `EXEC`'s reply: the array of the commands' replies, or the error that made it run nothing
//! (`-EXECABORT`, ...). It is sent again when nothing ran (`-MOVED`/`-ASK` to a queued command
//! or to `EXEC`, `-TRYAGAIN`, `-CLUSTERDOWN`, `-LOADING`, a connection that failed before it
//! was written), never once `EXEC` may have reached the node, unless every command only reads
//! (or [`ClientConfig::retry_writes_after_timeout`] is set).
//!
//! Optimistic locking needs the connection that watched to run `EXEC`: [`Client::watch`]
//! opens one of its own to the keys' primary and returns it as a [`Watched`], for reads
//! ([`Watched::get`], [`Watched::command`]) and then [`Watched::exec`], which answers a null
//! if a watched key changed meanwhile. `MULTI`, `EXEC`, `DISCARD` and `WATCH` sent on their own
//! through [`Client::command`] are refused ([`Error::Config`]): the shared connections carry
//! every task's requests.
//!
//! ```no_run
//! # async fn demo(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
//! use shoal_client::Value;
//!
//! let reply = client
//!     .transaction(&[["INCR", "{user1}.visits"], ["GET", "{user1}.name"]])
//!     .await?;
//! assert!(matches!(reply, Value::Array(_)));
//! # Ok(()) }
//! ```
//!
//! # Near cache
//!
//! With [`ClientConfig::with_near_cache`], replies of reads of one key that depend only on its
//! value (`GET`, `STRLEN`, `GETRANGE`, `HGET`, `HMGET`, `HLEN`, ...; `HGETALL` in RESP3) are
//! kept in memory, bounded by bytes ([`NearCacheConfig`]), and answered from there until the
//! key's node invalidates them (`CLIENT TRACKING` on one RESP3 connection per node, where
//! misses are filled from the key's primary along with its `PTTL`). The client's own writes
//! drop their keys before they are sent and again when answered, so it reads its own writes.
//!
//! The freshness guarantee: once a write is acknowledged to its writer, no near cache serves
//! the old value for longer than the invalidation takes to arrive, and never longer than
//! [`NearCacheConfig::max_staleness`] while the key's primary stays its primary. A node writes
//! a connection's waiting invalidations ahead of any reply on it, so a reply to a request sent
//! after the acknowledgement proves the invalidation was read; the cache serves a node's
//! entries only while a request sent within `max_staleness` was answered (heartbeat `PING`s keep
//! it so), and drops everything a node gave when its tracking connection ends or stalls, when a
//! node flushes, and a slot's entries when a new map gives the slot another primary (then the
//! bound is the time until the client or the old primary has that map).
//! [`Client::near_cache_stats`] counts hits, misses, invalidations, evictions and flushes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use shoal_client::{Client, ClientConfig, NearCacheConfig};
//!
//! let config = ClientConfig::new(["127.0.0.1:7000"])
//!     .with_cluster_secret_file("/etc/shoal/cluster-secret".as_ref())?
//!     .with_near_cache(NearCacheConfig::new(64 << 20));
//! let client = Client::connect(config).await?;
//! client.get("config:flags").await?; // from the cluster, then kept
//! client.get("config:flags").await?; // from memory until the key changes
//! assert_eq!(client.near_cache_stats().unwrap().hits, 1);
//! # Ok(()) }
//! ```
//!
//! # Hot keys
//!
//! The cluster's controller finds keys that take a large share of their shard's requests and
//! publishes them with the map. The client then sends every read of a hot key to any member of
//! its shard, primary or replica (a replica may answer a value from before a write for as
//! long as replication takes), whatever [`ReadFrom`] says for other keys.
//! [`Client::hot_keys`] lists them and [`ClientStats::hot_key_reads`] counts those reads.
//!
//! With [`ClientConfig::hot_write_batch`], plain `SET`s and increments of a hot key within the
//! window are sent as one (the last `SET`; one `INCRBY` of the sum), each write acknowledged
//! with its batch's answer (an increment gets the value just after it, as if they had run one
//! by one); any other command on that key queues behind its batch, so one connection's
//! commands keep their order (a read spread to a replica sees a write within the replication
//! delay).
//!
//! With [`ClientConfig::hot_key_copies`], a key too hot even for all the members of its shard
//! is also copied to other shards (`key#1`, ...): its `GET`s are spread over it and its
//! copies, and its writes delete them ([`HotKeyCopies`] says what a reader may see);
//! [`ClientStats::copy_reads`] counts the reads copies answered.
//!
//! For a counter too hot for any one node, [`Client::sharded_counter`] keeps it in parts on
//! several shards ([`ShardedCounter`]): increments go to one part, a read sums them all.
//! [`counter::CounterCommand`] serves the same counters to plain Redis clients as the commands
//! `COUNTER.INCRBY`, `COUNTER.GET` and `COUNTER.DEL` (the proxy and the nodes use it).
//!
//! ```no_run
//! # async fn demo(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
//! let likes = client.sharded_counter("post:42:likes", 8)?;
//! likes.incr_by(1).await?;
//! println!("{} likes", likes.get().await?);
//! # Ok(()) }
//! ```
//!
//! # Map sources
//!
//! [`Client::connect`] follows the cluster bus ([`BusMapSource`]); [`Client::with_map`] uses a
//! fixed map; [`Client::with_source`] takes any [`MapSource`]. Maps only ever move forward in
//! epoch. [`Client::subscribe_map`] and [`Client::map_changed`] let a proxy react to new maps.
//!
//! # TLS
//!
//! Two settings, since a cluster may encrypt one and not the other:
//! [`ClientConfig::with_tls`] for the nodes' RESP ports (`tls-port`, announced with
//! `tls-replication`), [`ClientConfig::with_bus_tls`] for their cluster bus, where the client
//! follows the map (nodes with `tls-cluster yes`, which require a client certificate the
//! cluster's CA signed). The cluster secret is proved either way, inside TLS on a TLS bus.

mod client;
mod cluster_wide;
mod codec;
mod config;
mod conn;
mod copies;
pub mod counter;
mod error;
mod hot_keys;
mod map_source;
mod near_cache;
mod pool;
mod router;
mod scan_cursor;
mod script;
mod stats;
mod subscriber;
mod table;
mod transaction;
mod watched;
mod write_batch;

pub use client::{Client, Ttl};
pub use cluster_wide::{ClusterWide, Nodes, all_nodes, primaries};
pub use config::{
    BusSecret, ClientConfig, ClientTls, HotKeyCopies, NearCacheConfig, Protocol, ReadFrom,
};
pub use counter::{MAX_PARTS, ShardedCounter};
pub use error::Error;
pub use futures_util::future::BoxFuture;
pub use map_source::{BusMapSource, MapSink, MapSource, NodeAddrs, StaticMap, parse_cluster_nodes};
pub use near_cache::NearCacheStats;
pub use router::command_slot;
pub use rustls;
pub use script::Script;
pub use shoal_cluster::ClusterMap;
pub use shoal_proto::reply::Value;
pub use stats::{ClientStats, LatencySummary};
pub use subscriber::{Message, MessageSink, Subscriber, SubscriptionKind};
pub use watched::Watched;
