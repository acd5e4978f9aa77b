//! Where the client's cluster map comes from.
//!
//! A [`MapSource`] runs as a task for the client's lifetime and offers maps to a [`MapSink`];
//! the sink installs a map only if it is newer than the one held ([`ClusterMap::supersedes`]),
//! so sources need not care about order or repeats. Two sources come with the crate:
//!
//! * [`BusMapSource`]: subscribes on the cluster bus of some node (found through the seeds'
//!   `CLUSTER NODES`) and follows pushes, resubscribing elsewhere when the subscription fails
//!   or goes silent; fetches the map once more when the client is redirected.
//! * [`StaticMap`]: one fixed map, for tests and fixed deployments.

mod bus;
pub(crate) mod nodes;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use shoal_cluster::hot_keys::HotKeySet;
use shoal_cluster::{ClusterMap, Slot};
use tokio::sync::{Notify, watch};

pub use bus::BusMapSource;
pub(crate) use bus::bus_credentials;
pub use nodes::{NodeAddrs, parse_cluster_nodes};

use crate::config::ReadFrom;
use crate::hot_keys::HotKeys;
use crate::stats::Stats;
use crate::table::{Miss, Table};

/// A source of cluster maps, run by the client as a task until the client is dropped.
///
/// ```
/// use shoal_client::{BoxFuture, ClusterMap, MapSink, MapSource};
///
/// /// Offers maps that arrive on a channel.
/// struct FromChannel(tokio::sync::mpsc::Receiver<ClusterMap>);
///
/// impl MapSource for FromChannel {
///     fn run(mut self: Box<Self>, sink: MapSink) -> BoxFuture<'static, ()> {
///         Box::pin(async move {
///             while let Some(map) = self.0.recv().await {
///                 sink.offer(map);
///             }
///         })
///     }
/// }
/// ```
pub trait MapSource: Send + 'static {
    /// Feeds `sink` with maps. May return when it has nothing more to offer (a fixed map);
    /// the task is aborted when the client is dropped.
    fn run(self: Box<Self>, sink: MapSink) -> BoxFuture<'static, ()>;
}

/// One fixed map.
#[derive(Debug, Clone)]
pub struct StaticMap(pub ClusterMap);

impl MapSource for StaticMap {
    fn run(self: Box<Self>, sink: MapSink) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            sink.offer(self.0);
        })
    }
}

/// The client's end of a [`MapSource`]: where maps are offered, and where the client asks for
/// a fresh one.
#[derive(Clone)]
pub struct MapSink {
    state: Arc<MapState>,
}

impl MapSink {
    pub(crate) fn new(state: Arc<MapState>) -> MapSink {
        MapSink { state }
    }

    /// Installs `map` if it is newer than the client's; returns whether it was.
    pub fn offer(&self, map: ClusterMap) -> bool {
        self.state.offer(map)
    }

    /// The map the client holds (the empty map of epoch 0 before the first one).
    pub fn current(&self) -> Arc<ClusterMap> {
        self.state.map()
    }

    /// Makes `set` the cluster's hot keys, whose reads the client spreads over their shard.
    pub fn offer_hot_keys(&self, set: &HotKeySet) {
        self.state.hot.install(set);
    }

    /// Completes when the client has seen a sign that its map is stale (a `-MOVED`, a node
    /// that cannot be reached) and wants a fresh one. Requests made while nobody waits are
    /// kept (one at a time) for the next call.
    pub async fn refresh_requested(&self) {
        self.state.refresh.notified().await;
    }
}

/// The map the client routes by, shared by the client and its source.
pub(crate) struct MapState {
    table: ArcSwap<Table>,
    install: Mutex<()>,
    watch: watch::Sender<Arc<ClusterMap>>,
    refresh: Notify,
    /// Slots learned from `-MOVED` since the map was installed, by address.
    moved: RwLock<HashMap<Slot, Arc<str>>>,
    any_moved: AtomicBool,
    stats: Arc<Stats>,
    /// The cluster's hot keys.
    pub(crate) hot: HotKeys,
}

impl MapState {
    pub fn new(stats: Arc<Stats>) -> MapState {
        let empty = Arc::new(ClusterMap::empty());
        MapState {
            table: ArcSwap::from_pointee(Table::new(empty.clone())),
            install: Mutex::new(()),
            watch: watch::Sender::new(empty),
            refresh: Notify::new(),
            moved: RwLock::new(HashMap::new()),
            any_moved: AtomicBool::new(false),
            stats,
            hot: HotKeys::default(),
        }
    }

    pub fn map(&self) -> Arc<ClusterMap> {
        self.table.load().map.clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.watch.subscribe()
    }

    /// Installs `map` if newer.
    pub fn offer(&self, map: ClusterMap) -> bool {
        let _guard = self.install.lock();
        if !map.supersedes(&self.table.load().map) {
            Stats::bump(&self.stats.stale_maps);
            return false;
        }
        self.install_locked(map);
        true
    }

    /// Installs `map` whatever its epoch (a map given by the user).
    pub fn force(&self, map: ClusterMap) {
        let _guard = self.install.lock();
        self.install_locked(map);
    }

    fn install_locked(&self, map: ClusterMap) {
        let map = Arc::new(map);
        tracing::debug!(epoch = map.epoch, "cluster map installed");
        self.table.store(Arc::new(Table::new(map.clone())));
        self.moved.write().clear();
        self.any_moved.store(false, Ordering::Release);
        Stats::bump(&self.stats.map_refreshes);
        self.watch.send_replace(map);
    }

    /// The node to read `slot` from as `read_from` says: where a `-MOVED` sent it since the
    /// last map (the node that answered it knows better than the map), else from the map.
    pub fn slot_read_addr(&self, slot: Slot, read_from: ReadFrom) -> Result<Arc<str>, Miss> {
        if self.any_moved.load(Ordering::Acquire)
            && let Some(addr) = self.moved.read().get(&slot)
        {
            return Ok(addr.clone());
        }
        self.table.load().slot_for_read(slot, read_from)
    }

    /// A node for a keyless command.
    pub fn any_addr(&self) -> Option<Arc<str>> {
        self.table.load().any()
    }

    /// Whether `addr` is a node of the current map.
    pub fn has_node(&self, addr: &str) -> bool {
        self.table.load().has_node(addr)
    }

    /// Remembers that `slot` moved to `addr` (until the next map). A redirection to the
    /// slot's primary in the map (from a replica, which sends writes and, without
    /// `READONLY`, reads there) is not news and is not kept: kept, it would pin the slot's
    /// reads to the primary until the next epoch.
    pub fn note_moved(&self, slot: Slot, addr: &str) {
        if self
            .table
            .load()
            .slot_for_read(slot, ReadFrom::Primary)
            .is_ok_and(|primary| &*primary == addr)
        {
            return;
        }
        self.moved.write().insert(slot, addr.into());
        self.any_moved.store(true, Ordering::Release);
    }

    /// Forgets every slot a `-MOVED` pinned to `addr` (a node that cannot be reached: the
    /// redirection may have come from a node whose map was older than this client's).
    pub fn unpin(&self, addr: &str) {
        if self.any_moved.load(Ordering::Acquire) {
            self.moved.write().retain(|_, to| &**to != addr);
        }
    }

    /// Asks the source for a fresh map.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(epoch: u64) -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = epoch;
        map
    }

    #[test]
    fn only_newer_maps_are_installed_and_moves_are_forgotten() {
        let stats = Arc::new(Stats::default());
        let state = Arc::new(MapState::new(stats.clone()));
        let sink = MapSink::new(state.clone());
        let rx = state.subscribe();
        assert!(sink.offer(map(3)));
        assert!(!sink.offer(map(3)));
        assert!(!sink.offer(map(2)));
        assert_eq!(sink.current().epoch, 3);
        assert_eq!(rx.borrow().epoch, 3);
        state.note_moved(7, "127.0.0.1:1");
        assert_eq!(
            &*state.slot_read_addr(7, ReadFrom::Primary).unwrap(),
            "127.0.0.1:1"
        );
        assert!(sink.offer(map(4)));
        assert_eq!(state.slot_read_addr(7, ReadFrom::Primary), Err(Miss::NoMap));
        state.force(map(1));
        assert_eq!(sink.current().epoch, 1);
        let s = stats.snapshot();
        assert_eq!((s.map_refreshes, s.stale_maps), (3, 2));
    }
}
