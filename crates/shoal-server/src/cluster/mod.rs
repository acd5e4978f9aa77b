//! A node's cluster mode: the routing check every keyed command passes, the `CLUSTER`
//! commands' view of the map, and the background removal of keys whose slots left this node.
//!
//! The membership itself (bus, controller, heartbeats, map subscription) is
//! [`shoal_cluster::node::ClusterNode`], run on its own thread by [`host`].

pub mod bus_tls;
pub(crate) mod counters;
pub mod health;
pub mod host;
pub mod migrating;
pub mod routing;
pub mod secret;
mod users;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use shoal_client::{Client, ClusterWide, Nodes};
use shoal_cluster::node::ClusterNode;
use shoal_cluster::{BusCredentials, BusSecret, ClusterMap, NodeDir, NodeInfo, key_slot};
use shoal_frontdoor::{CLUSTER_DOWN, CommandError};
use shoal_proto::Argv;
use shoal_proto::command_table::{CommandSpec, flags};
use shoal_proto::reply::Value;
use shoal_store::Store;

use crate::config::RoutingMode;
use crate::conn::NodeConn;
use crate::replication::Replication;
pub(crate) use routing::{Routing, SlotOwner};

use migrating::{MigrationStats, WriteGate};

/// What the routing check decided for one command.
pub enum Route {
    /// Run it here.
    Local,
    /// A `READONLY` client's read of this slot, which this node replicates: run it here if
    /// the node's copy is fresh enough, else redirect it ([`ClusterState::stale_replica_read`]).
    ReplicaRead(shoal_cluster::Slot),
    /// Answer with this error (`-MOVED`, `-CROSSSLOT`, `-CLUSTERDOWN`).
    Reject(CommandError),
    /// The map is older than one this node has heard of: wait for it, then route again.
    AwaitMap,
    /// A write to a slot this node is handing over: wait until the hand-over ends (the slot
    /// is then another's, or stays here), then route again.
    AwaitHandOver(shoal_cluster::Slot),
    /// Forward it to the primary at this address and relay its reply.
    Forward(String),
}

/// The name a node gives the connections it forwards commands on. A node never forwards a
/// command that arrived on such a connection again (it answers `-MOVED`, which the forwarding
/// node follows), so two nodes with different maps cannot pass a command back and forth.
pub const FORWARDER_NAME: &str = "shoal:forwarder";

/// Commands a forwarding node splits by slot when their keys span several (not atomic).
const SPLITTABLE: &[&str] = &["mget", "mset", "del", "unlink", "exists", "touch"];

/// Keys of slots that left this node, being removed in the background.
struct DropJob {
    cursor: u64,
    started: Instant,
    removed: u64,
}

/// Counters of the routing check.
#[derive(Default)]
pub struct ClusterStats {
    /// `-MOVED` answers.
    pub redirects: AtomicU64,
    /// Commands forwarded to their owner.
    pub forwarded: AtomicU64,
    /// Keys removed because their slot left this node.
    pub keys_dropped: AtomicU64,
    /// Commands refused because this primary's lease had run out.
    pub fenced: AtomicU64,
    /// `READONLY` reads this replica redirected to its primary because it had not heard from
    /// it within `replica-read-max-staleness`.
    pub stale_reads: AtomicU64,
}

/// A node's cluster state, shared by every connection.
pub struct ClusterState {
    myself: NodeInfo,
    mode: RoutingMode,
    routing: ArcSwap<Routing>,
    node: OnceLock<Arc<ClusterNode>>,
    forwarder: OnceLock<Client>,
    /// The node's Pub/Sub: shard channels of slots that leave the node end here.
    pubsub: OnceLock<Arc<shoal_frontdoor::pubsub::PubSub>>,
    /// The node's front door, whose tracking clients are told when keys' slots leave.
    tracking: OnceLock<Arc<shoal_frontdoor::Door>>,
    dropping: Mutex<Option<DropJob>>,
    /// The node's directory (`--dir`), if it has one.
    dir: Option<Arc<NodeDir>>,
    /// What the node's bus connections are opened with: the cluster secret, and TLS settings
    /// with `tls-cluster`.
    credentials: BusCredentials,
    /// TLS on the bus (`tls-cluster`).
    bus_tls: Option<bus_tls::BusTls>,
    /// The cluster's ACL users as this node last took them up.
    users: users::AdoptedUsers,
    /// Counters.
    pub stats: ClusterStats,
    /// Writes held while slots are handed over to another shard.
    pub gate: WriteGate,
    /// What this node's slot migrations did.
    pub migration_stats: MigrationStats,
    /// The source shards this node imports slots from now (one task each).
    pub(crate) importers: Mutex<std::collections::HashSet<shoal_cluster::ShardId>>,
    /// The newest migration session this node serves as a source, per source and target
    /// shard: an older one ends when it sees a newer one began.
    sources:
        Mutex<std::collections::HashMap<(shoal_cluster::ShardId, shoal_cluster::ShardId), u64>>,
}

/// How long a command waits for a map the node knows is on its way.
const AWAIT_MAP: Duration = Duration::from_millis(200);

/// Keys one background step looks at.
const DROP_BATCH: usize = 1000;

impl ClusterState {
    /// Whether this node serves `slot` now: as its primary, or as a replica of it for a
    /// read (`read_here`: a `READONLY` client's read).
    pub fn serves_here(&self, slot: shoal_cluster::Slot, read_here: bool) -> bool {
        match self.routing.load().owner(slot) {
            SlotOwner::Primary => true,
            SlotOwner::Replica(_) => read_here,
            _ => false,
        }
    }

    /// The state of a node that is about to take its place as `myself` in the cluster whose
    /// secret is `secret`.
    pub fn new(myself: NodeInfo, mode: RoutingMode, secret: BusSecret) -> ClusterState {
        ClusterState {
            routing: ArcSwap::from_pointee(Routing::empty(myself.id)),
            myself,
            mode,
            node: OnceLock::new(),
            forwarder: OnceLock::new(),
            pubsub: OnceLock::new(),
            tracking: OnceLock::new(),
            dropping: Mutex::new(None),
            dir: None,
            credentials: BusCredentials::new(secret),
            bus_tls: None,
            users: users::AdoptedUsers::default(),
            gate: WriteGate::default(),
            migration_stats: MigrationStats::default(),
            importers: Mutex::default(),
            sources: Mutex::default(),
            stats: ClusterStats::default(),
        }
    }

    /// Records the ACL users named `names` cluster-wide, as `door` now has them
    /// (`ACL SETUSER`/`DELUSER`/`LOAD` changed them), once the node runs in its cluster.
    pub fn record_users(&self, door: &shoal_frontdoor::Door, names: &[Vec<u8>]) {
        if let Some(node) = self.node.get() {
            users::record(node, door, names);
        }
    }

    /// Takes up `map`'s ACL users into `door`, if they changed.
    pub fn adopt_users(&self, door: &shoal_frontdoor::Door, map: &ClusterMap) {
        users::adopt(&self.users, door, map);
    }

    /// The same, keeping what it must remember in `dir` (see [`NodeDir`]).
    pub fn with_dir(self, dir: Option<Arc<NodeDir>>) -> ClusterState {
        ClusterState { dir, ..self }
    }

    /// The node's directory, if it has one.
    pub fn dir(&self) -> Option<&Arc<NodeDir>> {
        self.dir.as_ref()
    }

    /// The same, its bus speaking TLS with `tls` (`tls-cluster`).
    pub fn with_bus_tls(self, tls: bus_tls::BusTls) -> ClusterState {
        ClusterState {
            credentials: self.credentials.clone().with_tls(tls.connector().clone()),
            bus_tls: Some(tls),
            ..self
        }
    }

    /// What the node's bus connections are opened with.
    pub fn credentials(&self) -> &BusCredentials {
        &self.credentials
    }

    /// TLS on the node's bus, if it speaks TLS (`tls-cluster`).
    pub fn bus_tls(&self) -> Option<&bus_tls::BusTls> {
        self.bus_tls.as_ref()
    }

    /// This node as the cluster knows it.
    pub fn myself(&self) -> &NodeInfo {
        &self.myself
    }

    /// The current routing table.
    #[inline]
    pub fn routing(&self) -> arc_swap::Guard<Arc<Routing>> {
        self.routing.load()
    }

    /// The current map.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.routing.load().map.clone()
    }

    /// The membership, once the node has started it.
    pub fn node(&self) -> Option<&Arc<ClusterNode>> {
        self.node.get()
    }

    /// What this node can tell about the cluster's health now (one account for `CLUSTER
    /// INFO`, `INFO`, `/health` and the metrics).
    pub fn health(&self) -> health::ClusterHealth {
        health::ClusterHealth::of(self)
    }

    /// Records the running membership (once).
    /// Relays a publication of this node's clients to the nodes whose subscribers must get
    /// it (every node for `PUBLISH`, this node's shard for `SPUBLISH`).
    pub fn relay_publication(&self, channel: &[u8], message: &[u8], shard: bool) {
        if let Some(node) = self.node.get() {
            node.publish(shoal_cluster::Publication {
                channel: channel.to_vec(),
                message: message.to_vec(),
                shard,
            });
        }
    }

    pub fn attach(&self, node: Arc<ClusterNode>) {
        let _ = self.node.set(node);
    }

    /// Records the node's Pub/Sub (once), whose shard channels end when their slot leaves.
    pub fn attach_pubsub(&self, pubsub: Arc<shoal_frontdoor::pubsub::PubSub>) {
        let _ = self.pubsub.set(pubsub);
    }

    /// Records the node's front door (once), whose `CLIENT TRACKING` clients are told when
    /// the slots of keys they read leave the node.
    pub fn attach_tracking(&self, door: Arc<shoal_frontdoor::Door>) {
        let _ = self.tracking.set(door);
    }

    /// Records the client this node forwards commands with (once). It is kept on this node's
    /// map by [`ClusterState::install`].
    pub fn attach_forwarder(&self, client: Client) {
        client.install_map((*self.map()).clone());
        let _ = self.forwarder.set(client);
    }

    /// The client this node forwards commands with (HTTP requests and `routing forward`).
    pub fn forwarder(&self) -> Option<&Client> {
        self.forwarder.get()
    }

    /// Whether this node is the primary of `key`'s slot.
    pub fn owns(&self, key: &[u8]) -> bool {
        self.routing.load().is_mine(key_slot(key))
    }

    /// Whether this node may act as the primary its routing says it is: its lease from the
    /// controller is fresh and was granted for a map no newer than the one routing uses (a
    /// lease renewed under a newer map may come with a demotion not yet installed).
    pub fn primary_authority(&self) -> bool {
        self.node.get().is_some_and(|n| n.lease_valid()) && !self.map_is_stale()
    }

    /// Whether a newer map than the one routing uses is known to exist.
    pub fn map_is_stale(&self) -> bool {
        self.node
            .get()
            .is_some_and(|n| n.heard_epoch() > self.routing.load().epoch())
    }

    /// Installs the routing for `map` (if newer), and starts removing keys of slots this node
    /// no longer serves.
    pub fn install(&self, map: Arc<ClusterMap>) {
        let current = self.routing.load();
        if !map.supersedes(&current.map) {
            return;
        }
        if let Some(forwarder) = self.forwarder.get() {
            forwarder.install_map((*map).clone());
        }
        let next = Arc::new(Routing::new(map, self.myself.id));
        let lost: Vec<bool> = (0..shoal_cluster::SLOTS as u16)
            .map(|s| serves(&current, s) && !serves(&next, s))
            .collect();
        let lost_slot = |s: u16| lost[usize::from(s)];
        // Keys of a slot this node stops keeping go: one it served, or one that was on its
        // way here and no longer is (a migration called off).
        let dropped = (0..shoal_cluster::SLOTS as u16).any(|s| current.keeps(s) && !next.keeps(s));
        self.routing.store(next.clone());
        if dropped {
            let mut job = self.dropping.lock().unwrap_or_else(|e| e.into_inner());
            *job = Some(DropJob {
                cursor: 0,
                started: Instant::now(),
                removed: 0,
            });
        }
        if lost.contains(&true) {
            // As Redis Cluster does: the subscribers of a shard channel whose slot left are
            // told (`sunsubscribe`), and may subscribe where it went.
            if let Some(pubsub) = self.pubsub.get() {
                let ended = pubsub.end_shard_channels(|channel| lost_slot(key_slot(channel)));
                if ended > 0 {
                    tracing::info!(ended, "shard channels of slots that left ended");
                }
            }
            // Tracking clients must drop what they cached of those slots: changes to them are
            // made on their new owner now, and this node would never tell. Shoal's choice
            // (Redis 7.0 invalidates only the keys it deletes): every remembered key of a lost
            // slot, a miss included, is invalidated now, and `BCAST` clients, whose keys
            // cannot be listed, get a null (they drop their whole cache).
            if let Some(door) = self.tracking.get() {
                let done = door.invalidate_where(|key| lost_slot(key_slot(key)));
                if done.keys > 0 || done.broadcast > 0 {
                    tracing::info!(
                        keys = done.keys,
                        broadcast_clients = done.broadcast,
                        "tracked keys of slots that left invalidated"
                    );
                }
            }
        }
    }

    /// Where `argv` must run. `spec` is its (sub)command; `retried` says it waited for a map
    /// already (it is not made to wait again).
    pub fn route(
        &self,
        spec: &CommandSpec,
        argv: &Argv<'_>,
        client: &NodeConn,
        retried: bool,
    ) -> Route {
        let forwarding = self.mode == RoutingMode::Forward && !client.forwarded;
        let mut slot = None;
        for position in spec.key_positions_in(argv) {
            let s = key_slot(argv.get(position));
            match slot {
                Some(previous) if previous != s => {
                    if forwarding && SPLITTABLE.contains(&spec.name) {
                        // The forwarder splits it by slot, this node's part included.
                        self.stats.forwarded.fetch_add(1, Relaxed);
                        return Route::Forward(String::new());
                    }
                    return Route::Reject(CommandError::fixed(
                        "CROSSSLOT Keys in request don't hash to the same slot",
                    ));
                }
                _ => slot = Some(s),
            }
        }
        let Some(slot) = slot else {
            return Route::Local;
        };
        let routing = self.routing.load();
        let node = self.node.get();
        // Whether a newer map than this routing is known (as `map_is_stale`, on the routing
        // loaded here).
        let stale = || node.is_some_and(|n| n.heard_epoch() > routing.epoch());
        let elsewhere = |addr: &str| {
            if !retried && stale() {
                Route::AwaitMap
            } else if forwarding {
                self.stats.forwarded.fetch_add(1, Relaxed);
                Route::Forward(addr.to_string())
            } else {
                self.stats.redirects.fetch_add(1, Relaxed);
                Route::Reject(CommandError::Other(format!("MOVED {slot} {addr}").into()))
            }
        };
        match routing.owner(slot) {
            SlotOwner::Primary => {
                let leased = node.is_some_and(|n| n.lease_valid());
                if leased && !stale() && !spec.has(flags::READONLY) && self.gate.holds(slot) {
                    // Being handed over: the write waits for the new owner (or for the
                    // hand-over to fail), then routes again; one that waited already is told
                    // to try again, as Redis Cluster answers during a migration.
                    if retried {
                        Route::Reject(CommandError::fixed(
                            "TRYAGAIN Slot is being handed over to another shard, try again",
                        ))
                    } else {
                        Route::AwaitHandOver(slot)
                    }
                } else if leased && !stale() {
                    Route::Local
                } else if leased && !retried {
                    // The lease is for a newer map than this routing: it may no longer make
                    // this node the slot's primary. Wait for it (milliseconds), then route again.
                    Route::AwaitMap
                } else {
                    // Cut off from the controller for longer than its lease: another node may
                    // be promoted in this one's place, so it serves nothing (Redis's minority
                    // answer).
                    self.stats.fenced.fetch_add(1, Relaxed);
                    Route::Reject(CommandError::fixed(CLUSTER_DOWN))
                }
            }
            SlotOwner::Replica(_) if client.readonly && spec.has(flags::READONLY) => {
                Route::ReplicaRead(slot)
            }
            // A shard channel is served by every node of its shard (`SSUBSCRIBE`,
            // `SPUBLISH`), as in Redis Cluster.
            SlotOwner::Replica(_) if spec.has(flags::PUBSUB) && !spec.has(flags::WRITE) => {
                Route::Local
            }
            // On its way here: the hand-over may have been committed in a map this node has
            // not installed yet (the source sends its writers here as soon as it has): fetch
            // the newest map once before sending the client back.
            SlotOwner::Elsewhere(_) if !retried && routing.importing(slot) => Route::AwaitMap,
            SlotOwner::Replica(addr) | SlotOwner::Elsewhere(addr) => elsewhere(addr),
            SlotOwner::Unowned if !retried && stale() => Route::AwaitMap,
            SlotOwner::Unowned if routing.epoch() == 0 => {
                Route::Reject(CommandError::fixed(CLUSTER_DOWN))
            }
            SlotOwner::Unowned => {
                Route::Reject(CommandError::fixed("CLUSTERDOWN Hash slot not served"))
            }
        }
    }

    /// Registers a new migration session from shard `from` to shard `to` served here; returns
    /// its generation (the older sessions of the pair end).
    pub fn begin_source(&self, from: shoal_cluster::ShardId, to: shoal_cluster::ShardId) -> u64 {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let generation = sources.entry((from, to)).or_insert(0);
        *generation += 1;
        *generation
    }

    /// Whether the session of `generation` is still the newest from `from` to `to`.
    pub fn is_source(
        &self,
        from: shoal_cluster::ShardId,
        to: shoal_cluster::ShardId,
        generation: u64,
    ) -> bool {
        let sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.get(&(from, to)) == Some(&generation)
    }

    /// The answer to a `READONLY` read of `slot` this replica's data is too stale to serve
    /// (`replica-read-max-staleness`): `-MOVED` to the slot's primary, which Redis Cluster
    /// clients follow without dropping `READONLY` for other reads.
    pub fn stale_replica_read(&self, slot: shoal_cluster::Slot) -> CommandError {
        self.stats.stale_reads.fetch_add(1, Relaxed);
        match self.routing.load().owner(slot) {
            SlotOwner::Replica(addr) | SlotOwner::Elsewhere(addr) => {
                self.stats.redirects.fetch_add(1, Relaxed);
                CommandError::Other(format!("MOVED {slot} {addr}").into())
            }
            SlotOwner::Primary | SlotOwner::Unowned => CommandError::fixed(CLUSTER_DOWN),
        }
    }

    /// Waits (briefly) until the node holds the newest map it has heard of.
    pub async fn await_current_map(&self) {
        let Some(node) = self.node.get() else {
            return;
        };
        let mut maps = node.maps();
        let wanted = node.heard_epoch();
        let wait = async {
            node.refresh().await;
            loop {
                if self.routing.load().epoch() >= wanted || maps.borrow().epoch >= wanted {
                    self.install(maps.borrow().clone());
                    return;
                }
                if maps.changed().await.is_err() {
                    return;
                }
            }
        };
        let _ = tokio::time::timeout(AWAIT_MAP, wait).await;
    }

    /// One step of removing keys whose slots this node no longer serves, within `budget`.
    /// Called from the node's cron; does nothing when no slot left.
    pub fn drop_step(&self, store: &Store, budget: Duration) {
        let mut job = self.dropping.lock().unwrap_or_else(|e| e.into_inner());
        let Some(state) = job.as_mut() else {
            return;
        };
        let routing = self.routing.load();
        let deadline = Instant::now() + budget;
        let mut doomed: Vec<Vec<u8>> = Vec::new();
        loop {
            state.cursor = store.scan(state.cursor, DROP_BATCH, |key, _| {
                if !routing.keeps(key_slot(key)) {
                    doomed.push(key.to_vec());
                }
            });
            for key in doomed.drain(..) {
                if store.remove(&key) {
                    state.removed += 1;
                    self.stats.keys_dropped.fetch_add(1, Relaxed);
                }
            }
            if state.cursor == 0 {
                tracing::info!(
                    keys = state.removed,
                    took = ?state.started.elapsed(),
                    "removed the keys of slots this node no longer serves"
                );
                // A read that routed by the previous map while `install` ran may have
                // remembered its key again after `install` invalidated it (a key that existed
                // was invalidated by its removal above; a miss was not): its reader is told
                // now, long after any such read ended.
                if let Some(door) = self.tracking.get() {
                    door.forget_where(|key| !serves(&routing, key_slot(key)));
                }
                *job = None;
                return;
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Runs a command (`args`, the name first) where the cluster map says, through the
    /// forwarder, and returns its reply (an error reply if it could not be run). `addr` is
    /// where this node's map sends it; the forwarder routes by the same map and follows
    /// redirections.
    pub async fn forward(&self, addr: &str, args: &[Vec<u8>]) -> Value {
        let Some(forwarder) = self.forwarder.get() else {
            return Value::Error(CLUSTER_DOWN.as_bytes().to_vec());
        };
        relayed(addr, forwarder.command(args).await)
    }

    /// The way this node answers `name` (a command's full name) for the whole cluster, if it
    /// forwards for `client` (`--routing forward`, a plain client) and `name` is a keyspace
    /// command (`DBSIZE`, `KEYS`, `SCAN`, `RANDOMKEY`, `FLUSHALL`, `FLUSHDB`), a script
    /// cache command (`SCRIPT LOAD|EXISTS|FLUSH|KILL`: a forwarded `EVALSHA` runs on its key's
    /// node) or a change of the functions (`FUNCTION LOAD|DELETE|FLUSH|RESTORE|KILL`: a
    /// forwarded `FCALL` runs on its key's node), as the proxy answers them. Node-local settings (`CONFIG SET`, `SLOWLOG RESET`)
    /// stay local.
    pub fn cluster_wide(&self, name: &str, client: &NodeConn) -> Option<ClusterWide> {
        if self.mode != RoutingMode::Forward || client.forwarded {
            return None;
        }
        let node_local = ClusterWide::Everywhere(Nodes::All);
        ClusterWide::of(name).filter(|which| *which != node_local || name == "script|flush")
    }

    /// Answers a [`ClusterWide`] command for the whole cluster through the forwarder (which
    /// asks every primary, this node included); an error reply if it could not.
    pub async fn run_cluster_wide(&self, which: ClusterWide, args: Vec<bytes::Bytes>) -> Value {
        let Some(forwarder) = self.forwarder.get() else {
            return Value::Error(CLUSTER_DOWN.as_bytes().to_vec());
        };
        relayed("the primaries", forwarder.cluster_wide(which, args).await)
    }

    /// Runs a transaction (`commands`, each the name first, every key in one slot) on the
    /// primary of its slot through the forwarder ([`Client::transaction`]), and returns
    /// `EXEC`'s reply (an error reply if it could not be run). `addr` is where this node's
    /// map sends it.
    pub async fn forward_transaction(&self, addr: &str, commands: &[Vec<Vec<u8>>]) -> Value {
        let Some(forwarder) = self.forwarder.get() else {
            return Value::Error(CLUSTER_DOWN.as_bytes().to_vec());
        };
        relayed(addr, forwarder.transaction(commands).await)
    }

    /// `CLUSTER MIGRATESLOTS`: has the controller's leader move each group of slots to the
    /// shard of its node (all or none). The error is the reply line.
    pub async fn move_slots(&self, groups: shoal_cluster::SlotGroups) -> Result<(), String> {
        let node = self
            .node
            .get()
            .ok_or("CLUSTERDOWN The cluster is down")?
            .clone();
        node.move_slots(groups)
            .await
            .map(|_| ())
            .map_err(|e| format!("ERR {e}"))
    }

    /// `CLUSTER FAILOVER` on this replica: unless `force`, pauses the primary's writes and
    /// catches up with it first, so no acknowledged write is lost; then has the controller
    /// make this node the shard's primary. The error is the reply line.
    pub async fn planned_failover(
        &self,
        replication: &Replication,
        force: bool,
    ) -> Result<(), String> {
        let node = self
            .node
            .get()
            .ok_or("CLUSTERDOWN The cluster is down")?
            .clone();
        let map = self.map();
        let Some((shard, shoal_cluster::Role::Replica)) = map.placement_of(self.myself.id) else {
            return Err("ERR You should send CLUSTER FAILOVER to a replica".into());
        };
        let primary = map
            .node(shard.primary)
            .map(NodeInfo::resp_addr)
            .ok_or("ERR failover: the primary is not in the map")?;
        if !force {
            let forwarder = self
                .forwarder
                .get()
                .ok_or("ERR failover: no connection to the primary")?;
            catch_up_with_paused_primary(forwarder, &primary, replication).await?;
        }
        node.request_failover()
            .await
            .map_err(|e| format!("ERR failover: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.routing().is_primary_of_shard() {
            if Instant::now() >= deadline {
                return Err("ERR failover: the new map did not arrive".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

impl ClusterState {
    /// Before this node shuts down: if it is a primary with a healthy replica, pauses its
    /// writes until a replica has acknowledged everything, and has the controller hand the
    /// shard to the most advanced replica (paused writes then get `-MOVED`). Returns whether
    /// it handed its shard over; an error says why it could not (writes resume then).
    pub async fn step_down(&self, replication: &Replication) -> Result<bool, String> {
        let Some(node) = self.node.get() else {
            return Ok(false);
        };
        let map = self.map();
        let Some((shard, shoal_cluster::Role::Primary)) = map.placement_of(self.myself.id) else {
            return Ok(false);
        };
        if !shard
            .replicas
            .iter()
            .any(|r| map.node(*r).is_some_and(NodeInfo::is_ok))
        {
            return Ok(false);
        }
        let handed = async {
            let mut offset = replication.pause_writes(FAILOVER_PAUSE);
            // Writes already past the pause may still land: until the offset stops moving.
            loop {
                let acked = replication
                    .wait_for_acks(offset, 1, Some(STEP_DOWN_CATCH_UP))
                    .await;
                if acked == 0 {
                    return Err(format!(
                        "no replica acknowledged offset {offset} within {STEP_DOWN_CATCH_UP:?}"
                    ));
                }
                let now = replication.offset();
                if now == offset {
                    break;
                }
                offset = now;
            }
            node.request_failover().await?;
            let deadline = Instant::now() + STEP_DOWN_CATCH_UP;
            while self.routing().is_primary_of_shard() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(true)
        }
        .await;
        // The writes that waited run again: on the new map they are answered `-MOVED`
        // (after a failed handover, they run here). Let them be answered, and clients follow
        // the redirections to the new primary, before the node closes its connections.
        replication.unpause_writes();
        let deadline = Instant::now() + Duration::from_millis(500);
        while replication.paused_writers() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if matches!(handed, Ok(true)) {
            tokio::time::sleep(STEP_DOWN_LINGER).await;
        }
        handed
    }
}

/// How long a primary that handed its shard over keeps answering (`-MOVED`) before it
/// closes its connections: clients with commands on their way get their redirection.
const STEP_DOWN_LINGER: Duration = Duration::from_millis(300);

/// How long a primary stepping down waits for a replica to catch up, and for the map that
/// hands its shard over.
const STEP_DOWN_CATCH_UP: Duration = Duration::from_secs(2);

/// Whether this node keeps the keys of `slot`: it is in the shard that owns it.
fn serves(routing: &Routing, slot: u16) -> bool {
    matches!(
        routing.owner(slot),
        SlotOwner::Primary | SlotOwner::Replica(_)
    )
}

/// The reply a client gets for a command (or transaction) forwarded to `addr`.
fn relayed(addr: &str, result: Result<Value, shoal_client::Error>) -> Value {
    match result {
        Ok(reply) => reply,
        Err(e) => {
            tracing::debug!(to = addr, "forwarding failed: {e}");
            Value::Error(forward_error(&e).into_bytes())
        }
    }
}

/// The error line a client gets when a forwarded command could not be run.
pub fn forward_error(e: &shoal_client::Error) -> String {
    match e {
        shoal_client::Error::CrossSlot => {
            "CROSSSLOT Keys in request don't hash to the same slot".to_string()
        }
        shoal_client::Error::ClusterDown(line) | shoal_client::Error::Server(line) => line.clone(),
        other => format!("TRYAGAIN forwarding to the slot's owner failed: {other}"),
    }
}

/// How long a planned failover lets the primary refuse writes at most.
const FAILOVER_PAUSE: Duration = Duration::from_secs(5);

/// Pauses the primary's writes and waits until this replica has applied all it wrote (asking
/// again until the primary's offset stops moving: writes already running when it paused may
/// still land).
async fn catch_up_with_paused_primary(
    forwarder: &Client,
    primary: &str,
    replication: &Replication,
) -> Result<(), String> {
    let pause = FAILOVER_PAUSE.as_millis().to_string();
    let ask = |args: Vec<String>| async move {
        match forwarder.command_on(primary, &args).await {
            Ok(Value::Int(offset)) => Ok(offset.max(0) as u64),
            Ok(Value::Error(line)) => Err(format!(
                "ERR failover: the primary refused: {}",
                String::from_utf8_lossy(&line)
            )),
            Ok(other) => Err(format!("ERR failover: the primary answered {other:?}")),
            Err(e) => Err(format!("ERR failover: cannot reach the primary: {e}")),
        }
    };
    let mut target = ask(vec!["REPLCONF".into(), "failover-pause".into(), pause]).await?;
    let deadline = Instant::now() + FAILOVER_PAUSE;
    loop {
        while replication.offset() < target {
            if Instant::now() >= deadline {
                return Err("ERR failover: this replica did not catch up with its primary".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let now = ask(vec!["REPLCONF".into(), "failover-offset".into()]).await?;
        if now <= target {
            return Ok(());
        }
        target = now;
    }
}
