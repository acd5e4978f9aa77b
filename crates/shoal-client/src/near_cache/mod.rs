//! The near cache: replies of read commands kept in the client's memory and dropped when
//! their node says their key changed (`CLIENT TRACKING`, RESP3 `invalidate` pushes).
//!
//! * **Fills.** A miss sends the command, and `PTTL` of its key, to the key's primary on that
//!   node's tracking connection ([`tracker`]); the reply is stored unless the key was
//!   invalidated while it was on its way ([`store`]'s fill tokens), the connection changed
//!   generation, or the slot moved meanwhile. The entry expires with its key's TTL, and at
//!   the latest after [`NearCacheConfig::max_ttl`].
//! * **Invalidations.** A node's push drops the key's entries; a null one (`FLUSHALL`) drops
//!   everything the node gave. The client's own writes drop their keys before they are sent
//!   and again once answered, so a client reads its own writes.
//! * **Gaps.** Nothing is assumed about an invalidation that could not arrive: a tracking
//!   connection that ends, or whose heartbeat goes unanswered, drops everything it gave; a new
//!   map drops the entries of every slot whose primary changed (a failover, a slot that
//!   moved); and an entry is served only while its node has, within
//!   [`NearCacheConfig::max_staleness`], answered a request that proves every invalidation
//!   sent before it arrived ([`tracker`]).

mod commands;
mod store;
mod tracker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::RwLock;
use shoal_cluster::Slot;
use shoal_proto::command_table::CommandSpec;
use shoal_proto::reply::Value;
use tokio::task::AbortHandle;

use crate::config::{NearCacheConfig, ReadFrom};
use crate::conn::{Conn, ConnOptions, PushSink};
use crate::error::Error;
use crate::hot_keys::HotKeys;
use crate::map_source::MapState;
use crate::stats::Stats;

pub(crate) use commands::{cacheable_spec, is_flush};
use store::{Removed, Store, Variant};
use tracker::Tracker;

/// A snapshot of a near cache's counters, from
/// [`Client::near_cache_stats`](crate::Client::near_cache_stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Reads answered from the near cache.
    pub hits: u64,
    /// Cacheable reads that went to the cluster (nothing stored, expired, or not provably
    /// fresh).
    pub misses: u64,
    /// Keys invalidated by the nodes (`invalidate` pushes).
    pub invalidations: u64,
    /// Keys dropped because this client wrote them.
    pub local_invalidations: u64,
    /// Entries dropped to stay within the byte bound.
    pub evictions: u64,
    /// Entries held now.
    pub entries: u64,
    /// Bytes they are counted for.
    pub bytes: u64,
    /// Everything from one node dropped because its tracking connection ended or stalled.
    pub flushes_connection: u64,
    /// Entries of slots dropped because a new map gave them another primary.
    pub flushes_map: u64,
    /// Everything from one node dropped on its null invalidation (`FLUSHALL`, `FLUSHDB`), or
    /// everything on this client's own flush.
    pub flushes_flushall: u64,
}

impl NearCacheStats {
    /// The counters a metrics page shows: `(name, what it counts, value)`; `entries` and
    /// `bytes` are gauges, the rest counters.
    pub fn counters(&self) -> [(&'static str, &'static str, u64); 10] {
        [
            ("hits", "Reads answered from the near cache.", self.hits),
            (
                "misses",
                "Cacheable reads that went to the cluster.",
                self.misses,
            ),
            (
                "invalidations",
                "Keys the nodes invalidated.",
                self.invalidations,
            ),
            (
                "local_invalidations",
                "Keys dropped because this client wrote them.",
                self.local_invalidations,
            ),
            (
                "evictions",
                "Entries dropped to stay within the byte bound.",
                self.evictions,
            ),
            ("entries", "Entries held.", self.entries),
            ("bytes", "Bytes the entries are counted for.", self.bytes),
            (
                "flushes_connection",
                "Flushes of a node's entries: its tracking connection ended or stalled.",
                self.flushes_connection,
            ),
            (
                "flushes_map",
                "Flushes of slots whose primary changed in a new map.",
                self.flushes_map,
            ),
            (
                "flushes_flushall",
                "Flushes on FLUSHALL/FLUSHDB.",
                self.flushes_flushall,
            ),
        ]
    }
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    local_invalidations: AtomicU64,
    flushes_connection: AtomicU64,
    flushes_map: AtomicU64,
    flushes_flushall: AtomicU64,
}

/// A fill in flight: abandoned when dropped before [`Pending::finish`], so a caller that gives
/// up (a proxy client that leaves mid-pipeline) leaves no record in the store.
struct Pending<'a> {
    store: &'a Store,
    /// The cluster's hot keys, which the store keeps in preference when it must evict.
    hot: &'a HotKeys,
    key: Bytes,
    token: u64,
    finished: bool,
}

impl Pending<'_> {
    /// Ends the fill: see [`Store::finish`].
    fn finish(mut self, pushes_before: u64, variant: Variant, still_valid: impl FnOnce() -> bool) {
        self.finished = true;
        self.store.finish(
            self.key.clone(),
            self.token,
            pushes_before,
            variant,
            still_valid,
            |key| self.hot.is_hot(key),
        );
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.store.abandon(&self.key, self.token);
        }
    }
}

/// A node's tracker and its heartbeat task.
type Running = (Arc<Tracker>, AbortHandle);

/// A client's near cache.
pub(crate) struct NearCache {
    config: NearCacheConfig,
    store: Store,
    trackers: RwLock<HashMap<Arc<str>, Running>>,
    counters: Counters,
    /// The origin of the cache's millisecond clock.
    base: Instant,
    /// How tracking connections open (RESP3; the push sink is added per connection).
    options: ConnOptions,
    stats: Arc<Stats>,
    request_timeout: Duration,
    maps: Arc<MapState>,
    me: Weak<NearCache>,
}

impl Drop for NearCache {
    fn drop(&mut self) {
        for (tracker, task) in self.trackers.get_mut().values() {
            task.abort();
            tracker.retire();
        }
    }
}

impl NearCache {
    /// A near cache as `config` says, whose tracking connections open as `options` say
    /// (switched to RESP3) and which routes by `maps`.
    pub fn new(
        config: NearCacheConfig,
        options: &ConnOptions,
        stats: Arc<Stats>,
        request_timeout: Duration,
        maps: Arc<MapState>,
    ) -> Arc<NearCache> {
        Arc::new_cyclic(|me| NearCache {
            config,
            store: Store::new(config.max_bytes),
            trackers: RwLock::default(),
            counters: Counters::default(),
            base: Instant::now(),
            options: ConnOptions {
                protocol: shoal_proto::Protocol::Resp3,
                readonly: false,
                pushes: None,
                ..options.clone()
            },
            stats,
            request_timeout,
            maps,
            me: me.clone(),
        })
    }

    /// Milliseconds on the cache's clock (never 0).
    #[inline]
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64 + 1
    }

    fn staleness_ms(&self) -> u64 {
        self.config.max_staleness.as_millis() as u64
    }

    /// Opens a tracking connection to `addr` whose pushes go to `sink`.
    fn open_conn(&self, addr: &str, sink: Arc<dyn PushSink>) -> Conn {
        let options = ConnOptions {
            pushes: Some(sink),
            ..self.options.clone()
        };
        Conn::open(addr, &options, self.stats.clone())
    }

    /// The tracker of `addr`, started (with its heartbeat) if new.
    fn tracker(&self, addr: &Arc<str>) -> Arc<Tracker> {
        if let Some((tracker, _)) = self.trackers.read().get(addr) {
            return tracker.clone();
        }
        let mut trackers = self.trackers.write();
        if let Some((tracker, _)) = trackers.get(addr) {
            return tracker.clone();
        }
        let tracker = Arc::new(Tracker::new(addr.clone()));
        let task = tokio::spawn(tracker::heartbeat(
            self.me.clone(),
            tracker.clone(),
            self.config.max_staleness / 5,
            self.request_timeout,
        ));
        trackers.insert(addr.clone(), (tracker.clone(), task.abort_handle()));
        tracker
    }

    /// The stored reply to `args` (the command `spec`, its key second), if it may be served.
    /// Counts a hit; a miss is counted by [`NearCache::miss`] when the read goes on.
    #[inline]
    pub fn lookup<A: AsRef<[u8]>>(&self, args: &[A], spec: &CommandSpec) -> Option<Value> {
        let key = args[1].as_ref();
        let now = Instant::now();
        let now_ms = now.duration_since(self.base).as_millis() as u64 + 1;
        let bound = self.staleness_ms();
        let value = self.store.get(key, spec.name, &args[2..], |variant| {
            // Read or not, the node's heartbeats go on (or resume).
            variant.origin.touch(now_ms);
            now < variant.expires && variant.origin.fresh(variant.generation, now_ms, bound)
        });
        if value.is_some() {
            self.counters.hits.fetch_add(1, Relaxed);
        }
        value
    }

    /// A cacheable read was not answered from memory and goes to the cluster.
    pub fn miss(&self) {
        self.counters.misses.fetch_add(1, Relaxed);
    }

    /// Reads `args` (the command `spec`, its key second, in `slot`) from the slot's primary on
    /// its tracking connection, and stores the reply if it may be. `None` when that could not
    /// be done (no primary known, the node unreachable, an error reply such as `-MOVED`): the
    /// caller then sends the command the usual way.
    pub async fn fill<A: AsRef<[u8]>>(
        &self,
        args: &[A],
        spec: &'static CommandSpec,
        slot: Slot,
    ) -> Option<Result<Value, Error>> {
        let me = self.me.upgrade()?;
        let addr = self.maps.slot_read_addr(slot, ReadFrom::Primary).ok()?;
        let tracker = self.tracker(&addr);
        let conn = tracker.conn(&me)?;
        drop(me);
        let generation = tracker.generation();
        let key = Bytes::copy_from_slice(args[1].as_ref());
        // Abandoned if this future is dropped before it ends (a caller that gave up).
        let fill = Pending {
            token: self.store.begin(&key, &tracker),
            key,
            store: &self.store,
            hot: &self.maps.hot,
            finished: false,
        };
        // The command and `PTTL key`, written once into one buffer of their size.
        let pttl = [&b"PTTL"[..], &fill.key[..]];
        let mut frame = Vec::with_capacity(
            shoal_proto::request::encoded_len(args) + shoal_proto::request::encoded_len(&pttl),
        );
        shoal_proto::request::encode_into(&mut frame, args);
        shoal_proto::request::encode_into(&mut frame, &pttl);
        let sent = self.now_ms();
        tracker.touch(sent);
        let (mut replies, pushes_before) = conn
            .request_batch_counted(Bytes::from(frame), false, 2, self.request_timeout)
            .await
            .ok()?;
        let (Some(pttl), Some(value)) = (replies.pop(), replies.pop()) else {
            return None;
        };
        if matches!(value, Value::Error(_) | Value::BulkError(_)) {
            return None;
        }
        tracker.verified_by(sent, generation);
        let cap = self.config.max_ttl;
        let ttl = match pttl {
            Value::Int(ms) if ms >= 0 => Duration::from_millis(ms as u64).min(cap),
            _ => cap,
        };
        if ttl.is_zero() {
            return Some(Ok(value)); // the key expires now: nothing to keep
        }
        let extra: Box<[Bytes]> = args[2..]
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_ref()))
            .collect();
        let size = Store::size_of(&fill.key, &extra, &value);
        let variant = Variant {
            name: spec.name,
            extra,
            value: value.clone(),
            origin: tracker.clone(),
            generation,
            slot,
            expires: Instant::now() + ttl,
            size,
        };
        let maps = &self.maps;
        fill.finish(pushes_before, variant, || {
            tracker.admit(generation)
                && maps
                    .slot_read_addr(slot, ReadFrom::Primary)
                    .is_ok_and(|primary| primary == addr)
        });
        Some(Ok(value))
    }

    /// This client is about to write, or wrote, `keys`: their entries go, and fills of them
    /// in flight are not stored.
    pub fn forget<K: AsRef<[u8]>>(&self, keys: &[K]) {
        for key in keys {
            if self.store.invalidate(key.as_ref(), None).entries > 0 {
                self.counters.local_invalidations.fetch_add(1, Relaxed);
            }
        }
    }

    /// This client flushed the keyspace: every entry goes.
    pub fn flush_all(&self) {
        self.counters.flushes_flushall.fetch_add(1, Relaxed);
        for (tracker, _) in self.trackers.read().values() {
            tracker.new_generation();
        }
        self.store.retain(|_| false);
    }

    /// A push arrived on `tracker`'s connection.
    fn on_push(&self, tracker: &Arc<Tracker>, items: Vec<Value>, seq: u64) {
        let mut items = items.into_iter();
        let kind = items.next();
        if !matches!(&kind, Some(Value::Bulk(k) | Value::Simple(k)) if k == b"invalidate") {
            return; // not an invalidation: nothing the cache holds depends on it
        }
        match items.next() {
            Some(Value::Array(keys) | Value::Set(keys)) => {
                for key in keys {
                    if let Value::Bulk(key) | Value::Simple(key) = key {
                        self.store.invalidate(&key, Some((tracker, seq)));
                        self.counters.invalidations.fetch_add(1, Relaxed);
                    }
                }
            }
            // A null (the node flushed), or anything unexpected: drop all it gave.
            _ => {
                self.counters.flushes_flushall.fetch_add(1, Relaxed);
                self.flush_node(tracker);
            }
        }
    }

    /// `tracker`'s connection ended or stalled: what it gave may have missed invalidations.
    /// Counted as a flush if it dropped something (a node that is down ends a connection at
    /// every attempt to reach it).
    fn on_connection_end(&self, tracker: &Arc<Tracker>) {
        if self.flush_node(tracker).entries > 0 {
            self.counters.flushes_connection.fetch_add(1, Relaxed);
        }
    }

    /// Drops everything `tracker`'s node gave, and what its fills in flight would store. The
    /// store is scanned only if it may hold something of the node.
    fn flush_node(&self, tracker: &Arc<Tracker>) -> Removed {
        if !tracker.release() {
            return Removed::default();
        }
        self.store
            .retain(|variant| !Arc::ptr_eq(&variant.origin, tracker))
    }

    /// A new map was installed: entries of slots whose primary changed go, and trackers of
    /// nodes that left stop.
    pub fn on_map(&self) {
        let maps = &self.maps;
        let removed = self.store.retain(|variant| {
            maps.slot_read_addr(variant.slot, ReadFrom::Primary)
                .is_ok_and(|primary| primary == variant.origin.addr)
        });
        if removed.entries > 0 {
            self.counters.flushes_map.fetch_add(1, Relaxed);
        }
        let mut trackers = self.trackers.write();
        trackers.retain(|addr, (tracker, task)| {
            let keep = maps.has_node(addr);
            if !keep {
                task.abort();
                tracker.retire();
            }
            keep
        });
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NearCacheStats {
        let c = &self.counters;
        NearCacheStats {
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            invalidations: c.invalidations.load(Relaxed),
            local_invalidations: c.local_invalidations.load(Relaxed),
            evictions: self.store.evictions(),
            entries: self.store.entries() as u64,
            bytes: self.store.bytes() as u64,
            flushes_connection: c.flushes_connection.load(Relaxed),
            flushes_map: c.flushes_map.load(Relaxed),
            flushes_flushall: c.flushes_flushall.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;

    fn cache() -> Arc<NearCache> {
        let stats = Arc::new(Stats::default());
        NearCache::new(
            NearCacheConfig::new(1 << 20),
            &ConnOptions::of(&ClientConfig::default()),
            stats.clone(),
            Duration::from_secs(1),
            Arc::new(MapState::new(stats)),
        )
    }

    /// Stores `GET key` from `tracker`'s node, as a fill whose reply came does.
    fn fill(cache: &NearCache, tracker: &Arc<Tracker>, key: &str) -> bool {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let generation = tracker.generation();
        let token = cache.store.begin(&key, tracker);
        let value = Value::Bulk(b"v".to_vec());
        let variant = Variant {
            name: "get",
            extra: Box::new([]),
            size: Store::size_of(&key, &[], &value),
            value,
            origin: tracker.clone(),
            generation,
            slot: 0,
            expires: Instant::now() + Duration::from_secs(60),
        };
        cache.store.finish(
            key,
            token,
            0,
            variant,
            || tracker.admit(generation),
            |_| false,
        )
    }

    fn held(cache: &NearCache, key: &str) -> bool {
        let none: &[&[u8]] = &[];
        cache
            .store
            .get(key.as_bytes(), "get", none, |_| true)
            .is_some()
    }

    #[test]
    fn a_fill_given_up_leaves_nothing_in_flight() {
        let cache = cache();
        let node = Arc::new(Tracker::new("a:1".into()));
        let key = Bytes::from_static(b"k");
        for _ in 0..3 {
            let _fill = Pending {
                token: cache.store.begin(&key, &node),
                key: key.clone(),
                store: &cache.store,
                hot: &cache.maps.hot,
                finished: false,
            };
            assert_eq!(cache.store.fills_in_flight(), 1);
        }
        assert_eq!(cache.store.fills_in_flight(), 0);
    }

    #[test]
    fn a_connection_end_is_a_flush_only_if_it_drops_something() {
        let cache = cache();
        let down = Arc::new(Tracker::new("a:1".into()));
        let up = Arc::new(Tracker::new("b:1".into()));
        assert!(fill(&cache, &up, "kb"));
        // A node the cache holds nothing of, dialled again (once a second) for as long as it
        // is down: every failed attempt ends a connection, and none flushes anything.
        for _ in 0..100 {
            cache.on_connection_end(&down);
        }
        assert_eq!(cache.stats().flushes_connection, 0);
        assert!(held(&cache, "kb"));
        // What it gave goes with the next end, one flush; the next ends find nothing.
        assert!(fill(&cache, &down, "ka"));
        let old = down.generation();
        for _ in 0..10 {
            cache.on_connection_end(&down);
        }
        let stats = cache.stats();
        assert_eq!(
            (stats.flushes_connection, stats.entries),
            (1, 1),
            "{stats:?}"
        );
        assert!(!held(&cache, "ka") && held(&cache, "kb"));
        assert!(down.generation() > old, "a fill in flight is not stored");
        // A null invalidation (FLUSHALL on the node) is counted whatever it drops.
        cache.on_push(
            &down,
            vec![Value::Bulk(b"invalidate".to_vec()), Value::Null],
            1,
        );
        assert_eq!(cache.stats().flushes_flushall, 1);
        // The other node's connection ends: its entry goes.
        cache.on_connection_end(&up);
        let stats = cache.stats();
        assert_eq!(
            (stats.flushes_connection, stats.entries),
            (2, 0),
            "{stats:?}"
        );
    }
}
