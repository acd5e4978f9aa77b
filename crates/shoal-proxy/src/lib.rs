//! Shoal's proxy: a front door for plain (non-cluster-aware) Redis clients.
//!
//! A [`Proxy`] speaks RESP2/RESP3 on its port (and the HTTP/JSON API on its HTTP port, when
//! set) and sends every command through one shared [`shoal_client::Client`] connected to the
//! cluster, which routes by key, follows the map, retries and splits multi-key commands by
//! slot. `redis-cli -p 6380 mget a b c` works whichever nodes `a`, `b` and `c` live on.
//!
//! ```no_run
//! use shoal_client::BusSecret;
//! use shoal_proxy::{Proxy, ProxyConfig};
//!
//! let proxy = Proxy::start(ProxyConfig {
//!     port: 6380,
//!     http_port: Some(8081),
//!     cluster: vec!["127.0.0.1:7000".into(), "127.0.0.1:7001".into()],
//!     // The nodes' --cluster-secret-file: the proxy follows the map on the cluster bus.
//!     cluster_secret: Some(BusSecret::load("/etc/shoal/cluster-secret".as_ref())?),
//!     ..ProxyConfig::default()
//! })?;
//! // ... until it is time to stop:
//! proxy.shutdown();
//! proxy.wait();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Commands
//!
//! | commands | served |
//! | --- | --- |
//! | `PING ECHO QUIT RESET SELECT (0 only) AUTH HELLO (AUTH SETNAME) CLIENT ID/SETNAME/GETNAME/LIST/INFO/KILL/HELP` | by the front door a node has too ([`shoal_frontdoor`]), with a standalone node's replies (`HELLO` says `mode` `standalone`; ids and `CLIENT LIST` are the proxy's clients) |
//! | `CLUSTER ...`, `READONLY`, `READWRITE`, `ASKING` | `-ERR This instance has cluster support disabled`: the proxy hides the cluster |
//! | `INFO` | the proxy's own `server`, the front door's `clients`, `stats`, `commandstats`, `errorstats` and `latencystats` (Redis's field names, as on a node), `proxy` (map epoch, nodes, primaries, the upstream client's requests, errors, retries, redirects, latency) and `keyspace` (summed over primaries) |
//! | `DBSIZE KEYS SCAN FLUSHALL FLUSHDB RANDOMKEY` | every primary, merged: counts summed, keys concatenated, `OK` once all say it, a random primary with a key; `SCAN` as below |
//! | `CONFIG SET`, `CONFIG RESETSTAT`, `SLOWLOG RESET` | every node of the map |
//! | `SHUTDOWN` | refused: `-ERR proxy: SHUTDOWN is not served through the proxy; stop the nodes themselves` |
//! | `MULTI`, `DISCARD` | by the front door, which queues the transaction's commands, checking each as it comes: keys in several slots (`-CROSSSLOT`), the commands above that cover the cluster or answer locally, and connection commands other than `PING` and `ECHO`, are refused, and `EXEC` then answers `-EXECABORT` |
//! | `EXEC` | the whole transaction to the primary of its slot as one piece ([`Client::transaction`](shoal_client::Client::transaction)), `EXEC`'s reply relayed; keys of the whole in several slots: `-CROSSSLOT`, and the transaction is dropped; a transaction without keys goes to any primary |
//! | `WATCH`, `UNWATCH` | `WATCH` opens a connection of the client connection's own to the keys' primary ([`Client::watch`](shoal_client::Client::watch)) and watches there until the transaction ends (`EXEC`, `DISCARD`, `UNWATCH`, `RESET`, the client leaving); that `EXEC` runs on it and answers a null if a watched key changed. Watched keys and the transaction's share one slot (`-CROSSSLOT`) |
//! | `COUNTER.INCRBY key parts increment`, `COUNTER.GET key parts`, `COUNTER.DEL key parts` | Shoal's sharded counters, on the parts `key#1` .. `key#parts` (1 to 1024 parts) wherever their slots are, through the smart client's counters ([`shoal_client::counter`], which also says what a read sees: every increment acknowledged before it began, not one snapshot). Integer replies: `INCRBY` adds to one part picked at random and answers that part's new value, not the total; `GET` answers the sum of the parts (missing ones count 0); `DEL` how many parts existed. Bad arguments: `-ERR value is not an integer or out of range`, `-ERR parts is out of range, must be between 1 and 1024`; a part that holds no integer: the node's `INCRBY` error, or `-ERR counter part #<n> does not hold an integer` for `GET`. Refused inside `MULTI` and scripts, as everywhere |
//! | everything else | [`Client::command`](shoal_client::Client::command): to the owner of its keys' slot (keyless ones to any primary), `MGET MSET DEL EXISTS UNLINK TOUCH` split by slot; the reply re-encoded for the client's protocol |
//!
//! Commands are checked by the front door, in Redis 7's order, before anything is sent: unknown
//! commands (`-ERR unknown command '<name>', with args beginning with: ...`), unknown
//! subcommands (`-ERR unknown subcommand '<sub>'. Try CONFIG HELP.`), arity (`-ERR wrong number
//! of arguments for '<name>' command`), authentication (`-NOAUTH Authentication required.`). The
//! proxy talks RESP3 to the nodes, so replies keep their types, and re-encodes each reply in its
//! client's protocol with Redis's RESP2 fallbacks.
//!
//! # Errors
//!
//! A node's error reply reaches the client byte for byte. When no reply could be had:
//!
//! | failure | reply |
//! | --- | --- |
//! | keys in several slots, for a command that cannot be split (`RENAME a b`) | `-CROSSSLOT Keys in request don't hash to the same slot` |
//! | the cluster is down, or kept answering `-TRYAGAIN` | the node's `-CLUSTERDOWN ...` / `-TRYAGAIN ...` |
//! | no shard owns the slot | `-CLUSTERDOWN Hash slot not served` |
//! | no cluster map | `-CLUSTERDOWN proxy: no cluster map: <why>` |
//! | timeouts, connection failures, redirect loops, malformed replies | `-ERR proxy: <what happened>`, e.g. `-ERR proxy: 127.0.0.1:7001 did not answer within 2s` |
//!
//! A write that timed out is not retried (it may have run); the client gets the error.
//!
//! # `SCAN` cursors
//!
//! The proxy's cursor is a node's cursor with the primary's index in its high 12 bits:
//! `index << 52 | node_cursor`, primaries in shard-id order. The scan walks the primaries one
//! after the other and returns `0` after the last one, so for a stable cluster it reports
//! every key exactly as the nodes' scans do; when shards join or leave during a scan, keys may
//! be missed or repeated. A cursor past the last primary ends the scan (`0`, no keys).
//!
//! # Pipelining
//!
//! Every complete command of a read is started at once, in order (at most
//! [`MAX_BATCH`] in flight per connection), and their replies are written in order in one
//! write ([`shoal_frontdoor::session`]). A slow or vanished client costs only its own task.
//! A transaction's `EXEC` pipelines like any command (it goes on the shared connection to its
//! node, after the commands before it); `WATCH`, and an `EXEC` after one, run on the client
//! connection's own connection, so the commands after them wait for their replies.
//!
//! # Limits
//!
//! The front door's, as on a node: `maxclients` (default 10000; extra clients get `-ERR max
//! number of clients reached`), `timeout`, `client-query-buffer-limit` (1gb),
//! `client-output-buffer-limit` (none), `proto-max-bulk-len` (512mb),
//! `proto-max-multibulk-len`, the small frame limits before `AUTH` when `requirepass` is set,
//! and a malformed frame gets `-ERR Protocol error: ...` and the connection closes.

mod backend;
mod commands;
mod config;
mod http;
mod metrics;
mod proxy;
mod pubsub;
mod shared;
mod stats;
mod transaction;
mod upstream;

pub use config::{ConfigError, ProxyConfig, UPSTREAM_CLIENT_NAME};
pub use proxy::{Proxy, StartError};
pub use shoal_client::{HotKeyCopies, NearCacheConfig, ReadFrom};
pub use shoal_frontdoor::OutputLimit;
pub use shoal_frontdoor::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use shoal_frontdoor::session::{FLUSH_AT, MAX_BATCH};
