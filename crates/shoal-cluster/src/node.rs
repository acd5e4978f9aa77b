//! A node's membership in the cluster: its bus listener, its controller member (if it is
//! one), and the agent that joins, sends heartbeats and keeps the node's map current.
//!
//! The node's map lives in one `watch` channel. Three things feed it, each only with a newer
//! epoch: the Raft state machine (on controller members), a subscription to a controller
//! member's bus, and a fetch whenever a heartbeat ack reveals a newer epoch. Whatever reads the
//! map (routing, `CLUSTER` commands, subscribers of this node) reads that channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::bus::{
    self, BusConnection, BusError, ClusterStatus, Heartbeat, NodeStats, Reply, Request,
    SUBSCRIPTION_PING,
};
use crate::bus_auth::AuthFailures;
use crate::bus_credentials::BusCredentials;
use crate::bus_tls::{BusStream, BusTlsAcceptor};
use crate::controller::{Controller, ControllerConfig, ControllerError};
use crate::decide::Settings;
use crate::hot_keys::HotKeySet;
use crate::map::Role;
use crate::map::{ClusterMap, Epoch, NodeId, NodeInfo};
use crate::map_channel::{MapSender, publish_newer};
use crate::node_dir::NodeDir;
use crate::peer_lease::{self, Answer, Grantor};
use crate::publish::{Publication, Relay};
use crate::seed::{self, SeedError};

/// How often a node reports to the controller's leader.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

/// How often to send heartbeats under leases of `lease_ms`: [`HEARTBEAT_INTERVAL`], or a
/// quarter of a lease when leases are short (a node timeout of a few hundred milliseconds), so that a
/// healthy primary renews its lease well before it runs out.
fn heartbeat_interval(lease_ms: u64) -> Duration {
    HEARTBEAT_INTERVAL.min(Duration::from_millis((lease_ms / 4).max(10)))
}

/// How soon a failed heartbeat is retried (at another controller member).
const HEARTBEAT_RETRY: Duration = Duration::from_millis(50);

/// How often a node tells the controller members that do not lead which map it holds (so
/// that a new leader knows which maps a silent primary may still hold).
const EPOCH_REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a peer lease request may take (it is sent to every node at once).
const PEER_LEASE_TIMEOUT: Duration = Duration::from_millis(250);

/// How long one heartbeat exchange may take before another member is tried.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(250);

/// How long a bus exchange may take.
const BUS_TIMEOUT: Duration = Duration::from_millis(500);

/// A subscription silent for this long is given up for another.
const SUBSCRIPTION_SILENCE: Duration = Duration::from_secs(2);

/// Most bus connections in their handshake at once: beyond, new ones are closed at once, so
/// that connections that never finish theirs cannot take every file descriptor.
const PENDING_HANDSHAKES: usize = 256;

/// Where a node's right to serve as a primary comes from right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseSource {
    /// The controller's leader granted it (the normal case).
    Controller,
    /// A majority of the nodes granted it, the controller being unable to (see `peer_lease`).
    Peers,
    /// No lease: a primary serves nothing.
    None,
}

impl LeaseSource {
    /// Its name in `CLUSTER INFO`, `INFO` and `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseSource::Controller => "controller",
            LeaseSource::Peers => "peers",
            LeaseSource::None => "none",
        }
    }
}

/// Why a node could not take its place in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The controller member could not start.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The configuration cannot work.
    #[error("cluster: {0}")]
    Config(String),
    /// No attempt to join through the seed succeeded within the join timeout.
    #[error(
        "could not join the cluster through {seed} within {} s: {last_error}",
        waited.as_secs()
    )]
    JoinTimedOut {
        /// The member the node tried to join through.
        seed: Seed,
        /// How long it tried.
        waited: Duration,
        /// Why the last attempt failed.
        last_error: String,
    },
}

/// A member of the cluster to join through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seed {
    /// Its RESP address (`host:port`), the one people know; its bus is asked for there.
    Resp(String),
    /// Its bus address.
    Bus(String),
}

impl std::fmt::Display for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Seed::Resp(addr) => write!(f, "{addr}"),
            Seed::Bus(addr) => write!(f, "bus {addr}"),
        }
    }
}

/// How a node asks a [`Seed::Resp`] for its bus address.
#[derive(Clone, Debug, Default)]
pub struct SeedAccess {
    /// The credentials for the seed's RESP port, if it wants them (the nodes'
    /// `masteruser`/`masterauth`, or `requirepass`).
    pub auth: Option<crate::PeerAuth>,
    /// With `tls-replication`, the node's TLS settings for RESP links (its CA, its certificate
    /// as the client's): the seed is asked over TLS, or in plain text if its address is a
    /// plain port and no password is to be sent.
    pub tls: Option<crate::BusTlsConnector>,
}

impl SeedAccess {
    /// The bus address of the seed whose RESP port is at `addr`: with TLS settings, asked over
    /// TLS first, and in plain text if that port answered in plain text (the seed's plain port
    /// was named) and there is no password to send.
    async fn bus_addr_of(&self, addr: &str) -> Result<String, SeedError> {
        let auth = self.auth.as_ref();
        let Some(tls) = &self.tls else {
            return seed::bus_addr_of(addr, auth, None, BUS_TIMEOUT).await;
        };
        match seed::bus_addr_of(addr, auth, Some(tls), BUS_TIMEOUT).await {
            // Only a port that answered in plain text is asked again in plain text, and only
            // with no password to send: a certificate refused either way, or credentials that
            // would cross the wire in clear, stop here.
            Err(tls_error @ SeedError::Tls { plain: true, .. }) if auth.is_none() => {
                tracing::debug!("{tls_error}; asking in plain text");
                match seed::bus_addr_of(addr, auth, None, BUS_TIMEOUT).await {
                    Err(SeedError::Unreachable { .. }) => Err(tls_error),
                    answer => answer,
                }
            }
            answer => answer,
        }
    }
}

/// How a node takes part.
#[derive(Clone)]
pub struct NodeConfig {
    /// The node as others reach it.
    pub myself: NodeInfo,
    /// A member to join through; `None` founds a new cluster.
    pub join: Option<Seed>,
    /// How to ask a [`Seed::Resp`] for its bus.
    pub seed_access: SeedAccess,
    /// Controller tunables; the node is a controller member if `myself.controller`.
    pub settings: Settings,
    /// Replicas per shard, if this node founds the cluster.
    pub replicas: u8,
    /// How long to keep trying to join through `join` before giving up; `None` tries forever.
    pub join_timeout: Option<Duration>,
    /// Reads the node's load for heartbeats.
    pub stats: Arc<dyn Fn() -> NodeStats + Send + Sync>,
    /// The node's directory (`--dir`): its Raft state, and the last map it held, through
    /// whose controller members it rejoins after a restart. `None` keeps nothing.
    pub dir: Option<Arc<NodeDir>>,
    /// What the node's own bus connections are opened with: the cluster secret, which every
    /// bus connection, both ways, proves, and with `tls-cluster` the TLS settings of the
    /// connections it opens.
    pub credentials: BusCredentials,
    /// With `tls-cluster`, the TLS settings of the connections its bus accepts (which must
    /// demand a client certificate); `None` accepts plain TCP. Given exactly when
    /// `credentials` has TLS settings: a cluster's bus speaks TLS both ways or not at all.
    pub bus_tls: Option<Arc<BusTlsAcceptor>>,
}

/// A node's cluster membership. Its tasks run on the runtime that called [`ClusterNode::start`].
pub struct ClusterNode {
    myself: NodeInfo,
    maps: MapSender,
    controller: Option<Arc<Controller>>,
    /// The controller leader's bus address, as last learned.
    leader: Mutex<Option<String>>,
    /// The highest epoch anyone told this node about.
    heard_epoch: AtomicU64,
    /// Becomes true once a map without this node arrives after one with it.
    removed: watch::Sender<bool>,
    /// Reads the node's load and replication state (heartbeats and `Request::Report`).
    stats: Arc<dyn Fn() -> NodeStats + Send + Sync>,
    /// Until when (µs after `clock_base`) this node may serve as a primary.
    lease_until: AtomicU64,
    /// The origin of `lease_until` and `controller_lease_at`.
    clock_base: Instant,
    /// The controller's timings: the node timeout, and the lease it implies (whoever grants
    /// the lease).
    settings: Settings,
    /// When (µs after `clock_base`) the controller last granted this node a lease; 0 never.
    controller_lease_at: AtomicU64,
    /// When (µs after `clock_base`) peers last granted this node a lease; 0 never.
    peer_lease_at: AtomicU64,
    /// The peer leases this node grants and the primaries it fences.
    grantor: Grantor,
    /// The [`Reply::Map`] frame of the latest map served, by epoch: encoded once for every
    /// subscriber and `GetMap`.
    map_frame: Mutex<Option<(Epoch, Arc<[u8]>)>>,
    /// What this node's bus connections are opened with.
    credentials: BusCredentials,
    /// TLS on the connections its bus accepts (`tls-cluster`).
    bus_tls: Option<Arc<BusTlsAcceptor>>,
    /// Bus connections that failed the handshake.
    auth_failures: AuthFailures,
    /// Room for connections in their handshake ([`PENDING_HANDSHAKES`]).
    handshakes: Arc<tokio::sync::Semaphore>,
    /// Relays this node's publications to its peers.
    relay: Relay,
    /// Where publications relayed by peers go (the node's subscribers), once set.
    publication_sink: std::sync::OnceLock<PublicationSink>,
    /// The cluster's hot keys, as the controller's leader last sent them.
    hot_keys: watch::Sender<Arc<HotKeySet>>,
}

/// What delivers a publication to a node's subscribers.
pub type PublicationSink = Arc<dyn Fn(Publication) + Send + Sync>;

impl ClusterNode {
    /// Starts serving the bus on `listener`, founds or joins the cluster, and keeps at it.
    /// Returns once the node is in a committed map, or with [`ClusterError::JoinTimedOut`] when
    /// joining did not work within [`NodeConfig::join_timeout`].
    pub async fn start(
        config: NodeConfig,
        listener: TcpListener,
    ) -> Result<Arc<ClusterNode>, ClusterError> {
        // A node its directory shows in a map was in the cluster before: it rejoins as itself
        // (through that map's controller members, or the seed), and founds nothing.
        let known = config
            .dir
            .as_ref()
            .and_then(|d| d.last_map())
            .filter(|m| m.nodes.contains_key(&config.myself.id))
            .cloned();
        if config.join.is_none() && known.is_none() && !config.myself.controller {
            return Err(ClusterError::Config(
                "a node that founds a cluster must be a controller member".into(),
            ));
        }
        if config.credentials.tls().is_some() != config.bus_tls.is_some() {
            return Err(ClusterError::Config(
                "a node's bus speaks TLS both ways (accepting and connecting) or not at all".into(),
            ));
        }
        let (maps, _) = watch::channel(Arc::new(ClusterMap::empty()));
        let controller = if config.myself.controller {
            Some(
                Controller::start(
                    ControllerConfig {
                        myself: config.myself.clone(),
                        settings: config.settings.clone(),
                        replicas: config.replicas,
                        raft_dir: config.dir.as_ref().map(|d| d.raft_path()),
                        credentials: config.credentials.clone(),
                    },
                    maps.clone(),
                )
                .await?,
            )
        } else {
            None
        };
        let node = Arc::new(ClusterNode {
            myself: config.myself.clone(),
            maps,
            controller,
            leader: Mutex::new(None),
            heard_epoch: AtomicU64::new(0),
            removed: watch::channel(false).0,
            stats: config.stats.clone(),
            lease_until: AtomicU64::new(0),
            clock_base: Instant::now(),
            settings: config.settings.clone(),
            controller_lease_at: AtomicU64::new(0),
            peer_lease_at: AtomicU64::new(0),
            grantor: Grantor::default(),
            map_frame: Mutex::new(None),
            credentials: config.credentials.clone(),
            bus_tls: config.bus_tls.clone(),
            auth_failures: AuthFailures::default(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(PENDING_HANDSHAKES)),
            relay: Relay::new(config.credentials.clone()),
            publication_sink: std::sync::OnceLock::new(),
            hot_keys: watch::channel(Arc::new(HotKeySet::default())).0,
        });
        tokio::spawn(node.clone().serve_bus(listener));
        tokio::spawn(node.clone().watch_membership());
        let resumed = node.controller.as_ref().is_some_and(|c| c.resumed());
        match &config.join {
            seed if known.is_some() || resumed => {
                tracing::info!(id = ?node.myself.id, "rejoining the cluster as the same node");
                let access = &config.seed_access;
                node.join(seed.as_ref(), known.as_ref(), access, config.join_timeout)
                    .await?
            }
            None => {
                node.controller
                    .as_ref()
                    .expect("checked above: a founder is a controller")
                    .found()
                    .await?;
                *node.leader_lock() = Some(node.myself.bus_addr());
            }
            Some(seed) => {
                let access = &config.seed_access;
                node.join(Some(seed), None, access, config.join_timeout)
                    .await?
            }
        }
        // In the cluster now, by the leader's map: it may grant peer leases (see `peer_lease`).
        node.grantor.joined();
        tokio::spawn(node.clone().send_heartbeats());
        tokio::spawn(node.clone().renew_by_peers());
        tokio::spawn(node.clone().report_epoch_to_followers());
        tokio::spawn(node.clone().subscribe());
        Ok(node)
    }

    /// This node.
    pub fn myself(&self) -> &NodeInfo {
        &self.myself
    }

    /// Sends what this node's clients published to the peers whose subscribers must get it:
    /// every other node for `PUBLISH`, the other nodes of this node's shard for `SPUBLISH`
    /// (Redis Cluster's rules). Returns at once; the relay sends in the background.
    pub fn publish(&self, publication: Publication) {
        let map = self.map();
        let me = self.myself.id;
        let publication = Arc::new(publication);
        let send = |id: &NodeId| {
            if *id != me
                && let Some(node) = map.nodes.get(id)
            {
                self.relay.send(&node.bus_addr(), &publication);
            }
        };
        if publication.shard {
            if let Some((shard, _)) = map.placement_of(me) {
                std::iter::once(&shard.primary)
                    .chain(&shard.replicas)
                    .for_each(send);
            }
        } else {
            map.nodes.keys().for_each(send);
        }
    }

    /// Delivers what peers relay from now on to `sink` (the node's subscribers). Set once.
    pub fn deliver_publications(&self, sink: PublicationSink) {
        let _ = self.publication_sink.set(sink);
    }

    /// The current map.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.maps.borrow().clone()
    }

    /// A receiver of every new map.
    pub fn maps(&self) -> watch::Receiver<Arc<ClusterMap>> {
        self.maps.subscribe()
    }

    /// The highest epoch this node has heard of; above [`ClusterNode::map`]'s while a newer
    /// map is on its way. A lease ([`ClusterNode::lease_valid`]) holds for maps at least this
    /// new: a primary routing by an older map must wait for the newer one before serving.
    #[inline]
    pub fn heard_epoch(&self) -> Epoch {
        self.heard_epoch.load(Ordering::Acquire)
    }

    /// A receiver that turns true when this node is removed from the cluster.
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }

    /// The cluster's hot keys as the controller's leader last sent them, and each new set.
    pub fn hot_keys(&self) -> watch::Receiver<Arc<HotKeySet>> {
        self.hot_keys.subscribe()
    }

    /// The controller member this node hosts, if any.
    pub fn controller(&self) -> Option<&Arc<Controller>> {
        self.controller.as_ref()
    }

    /// Publications this node could not relay to a peer (its queue was full, or the peer
    /// could not be reached): Pub/Sub messages are fire-and-forget, as in Redis Cluster.
    pub fn publications_dropped(&self) -> u64 {
        self.relay.dropped()
    }

    /// How many connections to this node's bus failed the handshake (did not prove the
    /// cluster secret or, with `tls-cluster`, failed the TLS handshake) since it started.
    pub fn bus_auth_failures(&self) -> u64 {
        self.auth_failures.count()
    }

    /// Fetches the map from the controller's leader now (when a node suspects its map is old).
    pub async fn refresh(&self) {
        if let Some(addr) = self.leader_addr()
            && let Ok(Reply::Map(map)) =
                bus::call(&addr, &self.credentials, &Request::GetMap, BUS_TIMEOUT).await
        {
            self.apply(map);
        }
    }

    /// Asks the controller's leader to make this replica its shard's primary, or (on a
    /// primary) to hand this node's shard to its most advanced healthy replica, and installs
    /// the map that does. The caller has made sure nothing acknowledged is lost (the primary
    /// paused its writes and a replica caught up), or accepted the loss (`FORCE`).
    pub async fn request_failover(&self) -> Result<(), String> {
        let start = self
            .leader_addr()
            .ok_or_else(|| "no controller member is known".to_string())?;
        let request = Request::Failover(self.myself.id);
        match self
            .call_leader(&start, &request, Duration::from_secs(12))
            .await
        {
            Ok(Reply::FailedOver(map)) => {
                self.apply(map);
                Ok(())
            }
            Ok(Reply::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Tells the controller's leader that this shard's primary handed `migration`'s slots
    /// over (the target has all their keys; their writes wait here), and installs the map the
    /// leader answers with. Returns that map: the slots moved if it gives them to the target.
    pub async fn hand_over(
        &self,
        migration: crate::map::Migration,
    ) -> Result<Arc<ClusterMap>, String> {
        self.ask_leader_for_map(Request::HandedOver(migration))
            .await
    }

    /// Sends `request` to the controller's leader and installs the map it answers with. The
    /// error is the leader's refusal, or why it could not be asked (the request may still
    /// have been decided: a newer map will say).
    async fn ask_leader_for_map(&self, request: Request) -> Result<Arc<ClusterMap>, String> {
        let start = self
            .leader_addr()
            .ok_or_else(|| "no controller member is known".to_string())?;
        match self
            .call_leader(&start, &request, Duration::from_secs(5))
            .await
        {
            Ok(Reply::Map(map)) => {
                self.apply(map);
                Ok(self.map())
            }
            Ok(Reply::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Asks the controller's leader to move each group of slots, with their keys, to the shard
    /// of its node (all groups or none), and takes the map that holds the migrations. The
    /// error is the leader's refusal, or why it could not be asked.
    pub async fn move_slots(
        &self,
        groups: crate::map::SlotGroups,
    ) -> Result<Arc<ClusterMap>, String> {
        self.ask_leader_for_map(Request::MoveSlots { groups }).await
    }

    /// Records an ACL user cluster-wide (`rules` as `ACL LIST` shows them; `None` deletes
    /// it) through the controller's leader, and fetches the map that holds the change, so
    /// this node's map has it when this returns.
    pub async fn set_user(&self, name: String, rules: Option<String>) -> Result<(), String> {
        let start = self
            .leader_addr()
            .ok_or_else(|| "no controller member is known".to_string())?;
        let request = Request::SetUser { name, rules };
        match self
            .call_leader(&start, &request, Duration::from_secs(12))
            .await
        {
            Ok(Reply::UserSet { epoch }) => {
                if self.map().epoch < epoch {
                    self.hear(epoch);
                    self.refresh().await;
                }
                Ok(())
            }
            Ok(Reply::Error(e)) => Err(e),
            Ok(other) => Err(format!("unexpected answer {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The cluster as the controller's leader sees it ([`Request::Status`]): its map, and
    /// every node's last heartbeat. Asked at the leader this node knows of, following
    /// redirections; `timeout` bounds each exchange.
    pub async fn status(&self, timeout: Duration) -> Result<ClusterStatus, BusError> {
        let start = self.leader_addr().ok_or_else(|| BusError::Refused {
            addr: self.myself.bus_addr(),
            message: "no controller member is known".into(),
        })?;
        let reply = self.call_leader(&start, &Request::Status, timeout).await?;
        bus::status_of(&start, reply)
    }

    /// Installs `map` if it is newer than the current one. Returns whether it was.
    fn apply(&self, map: ClusterMap) -> bool {
        let epoch = map.epoch;
        let applied = publish_newer(&self.maps, map);
        self.hear(epoch);
        applied
    }

    fn hear(&self, epoch: Epoch) {
        self.heard_epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    fn leader_lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.leader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where to send controller requests: the known leader, else any controller member of the
    /// map, else the seed's bus (learned at join).
    fn leader_addr(&self) -> Option<String> {
        if let Some(controller) = &self.controller
            && let Some(addr) = controller.leader_addr()
        {
            return Some(addr);
        }
        if let Some(addr) = self.leader_lock().clone() {
            return Some(addr);
        }
        let map = self.map();
        map.controllers
            .iter()
            .filter_map(|id| map.node(*id))
            .find(|n| n.is_ok())
            .map(NodeInfo::bus_addr)
    }

    /// Candidates to send controller requests to, best first.
    fn controller_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<String> = self.leader_addr().into_iter().collect();
        for addr in self.member_addrs(&self.map()) {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    /// The bus addresses of `map`'s controller members, this node's at the address it runs
    /// at (the map may keep one from before a restart on another address).
    fn member_addrs(&self, map: &ClusterMap) -> Vec<String> {
        map.controllers
            .iter()
            .filter_map(|id| {
                if *id == self.myself.id {
                    Some(self.myself.bus_addr())
                } else {
                    map.node(*id).map(NodeInfo::bus_addr)
                }
            })
            .collect()
    }

    /// Joins through the controller members this node knows of (the leader, the members of
    /// its map and of `known`, the last map it held before a restart), then `seed` (asked for
    /// its bus with `access`), retrying with a growing pause until it works or `timeout`
    /// (from now) has passed. An attempt under way when the time is up is let finish.
    async fn join(
        &self,
        seed: Option<&Seed>,
        known: Option<&ClusterMap>,
        access: &SeedAccess,
        timeout: Option<Duration>,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let last_error = match self.try_join(seed, known, access).await {
                Ok(map) => {
                    tracing::info!(epoch = map.epoch, "joined the cluster");
                    self.apply(map);
                    return Ok(());
                }
                Err(e) => e,
            };
            let pause = match timeout {
                None => backoff,
                Some(timeout) => {
                    let left = timeout.saturating_sub(started.elapsed());
                    if left.is_zero() {
                        let seed = seed.cloned().unwrap_or_else(|| {
                            Seed::Bus(
                                known
                                    .map(controller_bus_addrs)
                                    .unwrap_or_default()
                                    .join(","),
                            )
                        });
                        return Err(ClusterError::JoinTimedOut {
                            seed,
                            waited: timeout,
                            last_error,
                        });
                    }
                    backoff.min(left)
                }
            };
            tracing::warn!("joining: {last_error}; retrying in {pause:?}");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// One round of join attempts: every controller member this node knows of, then `seed`.
    async fn try_join(
        &self,
        seed: Option<&Seed>,
        known: Option<&ClusterMap>,
        access: &SeedAccess,
    ) -> Result<ClusterMap, String> {
        let mut addrs = self.controller_addrs();
        for addr in known.map(|m| self.member_addrs(m)).unwrap_or_default() {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        let mut last_error = "no controller member to ask".to_string();
        for addr in addrs {
            match self.join_at(&addr).await {
                Ok(map) => return Ok(map),
                Err(e) => last_error = format!("through {addr}: {e}"),
            }
        }
        let Some(seed) = seed else {
            return Err(last_error);
        };
        let bus = match seed {
            Seed::Bus(addr) => addr.clone(),
            Seed::Resp(addr) => access.bus_addr_of(addr).await.map_err(|e| match e {
                SeedError::Auth { .. } => format!(
                    "through {seed}: {e} (a cluster's nodes share one password: give this \
                         node the same requirepass, or masteruser and masterauth, as the others)"
                ),
                e => format!("through {seed}: {e}"),
            })?,
        };
        self.join_at(&bus)
            .await
            .map_err(|e| format!("through {seed}: {e}"))
    }

    /// Asks the controller member at `bus` (or the leader it names) to let this node in.
    async fn join_at(&self, bus: &str) -> Result<ClusterMap, String> {
        let request = Request::Join(self.myself.clone());
        let reply = self
            .call_leader(bus, &request, Duration::from_secs(12))
            .await
            .map_err(|e| e.to_string())?;
        match reply {
            Reply::Joined(map) => Ok(map),
            Reply::Error(e) => Err(e),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    /// [`bus::call_leader`], remembering where the leader was found.
    async fn call_leader(
        &self,
        start: &str,
        request: &Request,
        timeout: Duration,
    ) -> Result<Reply, BusError> {
        let mut addr = start.to_string();
        for _ in 0..4 {
            match bus::call(&addr, &self.credentials, request, timeout).await? {
                Reply::NotLeader {
                    leader: Some(leader),
                } if leader != addr => addr = leader,
                Reply::NotLeader { .. } => {
                    return Err(BusError::Refused {
                        addr,
                        message: "the controller has no leader right now".into(),
                    });
                }
                reply => {
                    *self.leader_lock() = Some(addr);
                    return Ok(reply);
                }
            }
        }
        Err(BusError::Refused {
            addr,
            message: "too many redirections".into(),
        })
    }

    async fn send_heartbeats(self: Arc<Self>) {
        let mut connection: Option<BusConnection> = None;
        // Which candidate to try first after a failure: rotating past one that failed keeps a
        // dead (or paused) controller member from eating every retry's timeout.
        let mut skip = 0usize;
        let mut retry_soon = false;
        let mut first = true;
        let mut interval = HEARTBEAT_INTERVAL;
        loop {
            let pause = if first {
                Duration::ZERO // The first one at once: a primary serves only with a lease.
            } else if retry_soon {
                HEARTBEAT_RETRY.min(interval)
            } else {
                interval
            };
            first = false;
            tokio::time::sleep(pause).await;
            if *self.removed.borrow() {
                return;
            }
            let heartbeat = Request::Heartbeat(Heartbeat {
                node: self.myself.id,
                epoch: self.map().epoch,
                stats: (self.stats)(),
                hot_keys_version: self.hot_keys.borrow().version,
            });
            if connection.is_none() {
                // The leader, if known, first; then the other members, rotated.
                let leader = self.leader_addr();
                let mut others: Vec<String> = self
                    .controller_addrs()
                    .into_iter()
                    .filter(|a| Some(a) != leader.as_ref())
                    .collect();
                if !others.is_empty() {
                    let turn = skip % others.len();
                    others.rotate_left(turn);
                }
                for addr in leader.into_iter().chain(others) {
                    if let Ok(c) =
                        BusConnection::connect(&addr, &self.credentials, HEARTBEAT_TIMEOUT).await
                    {
                        connection = Some(c);
                        break;
                    }
                }
            }
            let Some(conn) = connection.as_mut() else {
                *self.leader_lock() = None;
                retry_soon = true;
                continue;
            };
            let sent = Instant::now();
            tracing::trace!(to = conn.addr(), "heartbeat");
            match conn.call(&heartbeat, HEARTBEAT_TIMEOUT).await {
                Ok(Reply::HeartbeatAck(ack)) => {
                    *self.leader_lock() = Some(conn.addr().to_string());
                    if let Some(hot_keys) = ack.hot_keys {
                        self.hot_keys.send_replace(Arc::new(hot_keys));
                    }
                    if ack.epoch > self.map().epoch {
                        self.hear(ack.epoch);
                        if let Ok(Reply::Map(map)) = conn.call(&Request::GetMap, BUS_TIMEOUT).await
                        {
                            self.apply(map);
                        }
                    }
                    // A lease only counts for the map it was granted with: a primary that
                    // has not yet seen the map that demoted it must not serve on it.
                    let granted = ack.lease_ms > 0 && self.map().epoch >= ack.epoch;
                    if granted {
                        // The lease is for the map of `ack.epoch`: whoever routes by an older
                        // one must wait for it first (see `heard_epoch`).
                        self.hear(ack.epoch);
                        self.extend_lease(sent, Duration::from_millis(ack.lease_ms));
                        self.controller_lease_at
                            .store(self.micros_since_base(Instant::now()), Ordering::Release);
                        interval = heartbeat_interval(ack.lease_ms);
                    }
                    // No lease (the leader could not confirm its majority just now, or this
                    // node's map lagged): ask again soon rather than in a full interval.
                    retry_soon = !granted;
                }
                Ok(Reply::NotLeader { leader }) => {
                    tracing::trace!(from = conn.addr(), ?leader, "heartbeat: not the leader");
                    let known = leader.is_some();
                    *self.leader_lock() = leader;
                    connection = None;
                    if !known {
                        skip += 1;
                    }
                    retry_soon = true;
                }
                Ok(other) => {
                    tracing::debug!("heartbeat answered with {other:?}");
                    connection = None;
                    skip += 1;
                    retry_soon = true;
                }
                Err(e) => {
                    tracing::debug!("heartbeat: {e}");
                    *self.leader_lock() = None;
                    connection = None;
                    skip += 1;
                    retry_soon = true;
                }
            }
        }
    }

    /// Every [`EPOCH_REPORT_INTERVAL`], tells each controller member but the leader (which
    /// hears heartbeats far more often) the epoch of this node's map.
    async fn report_epoch_to_followers(self: Arc<Self>) {
        loop {
            tokio::time::sleep(EPOCH_REPORT_INTERVAL).await;
            if *self.removed.borrow() {
                return;
            }
            let map = self.map();
            let leader = self.leader_addr();
            let report = Request::EpochReport {
                node: self.myself.id,
                epoch: map.epoch,
            };
            let followers = self
                .member_addrs(&map)
                .into_iter()
                .filter(|addr| Some(addr) != leader.as_ref())
                .map(|addr| ((), addr));
            bus::call_all(followers, &self.credentials, &report, HEARTBEAT_TIMEOUT).await;
        }
    }

    /// Lets this node serve as a primary until `lease` after `from` (never shortening it).
    fn extend_lease(&self, from: Instant, lease: Duration) {
        let until = self.micros_since_base(from + lease);
        self.lease_until.fetch_max(until, Ordering::Release);
    }

    fn micros_since_base(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.clock_base).as_micros() as u64
    }

    /// How long ago something happened that was recorded as µs after `clock_base` (`None`
    /// if it never did).
    fn since(&self, micros: &AtomicU64) -> Option<Duration> {
        let at = micros.load(Ordering::Acquire);
        (at > 0).then(|| {
            Duration::from_micros((self.clock_base.elapsed().as_micros() as u64).saturating_sub(at))
        })
    }

    /// How long ago the controller last granted this node a lease (answered one of its
    /// heartbeats as a leader sure of its majority), if it ever did.
    pub fn since_controller_lease(&self) -> Option<Duration> {
        self.since(&self.controller_lease_at)
    }

    /// How long ago a majority of the nodes last granted this node a peer lease, if ever.
    pub fn since_peer_lease(&self) -> Option<Duration> {
        self.since(&self.peer_lease_at)
    }

    /// The node timeout.
    fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.node_timeout_ms)
    }

    /// Whether the controller's leader, sure of its majority, answered this node within a
    /// node timeout: otherwise the controller has lost its majority (or this node is cut off
    /// from it), and no failover, join or removal can happen meanwhile.
    pub fn controller_has_quorum(&self) -> bool {
        self.since_controller_lease()
            .is_some_and(|ago| ago <= self.node_timeout())
    }

    /// Where this node's lease comes from now (whether or not it is a primary).
    pub fn lease_source(&self) -> LeaseSource {
        if !self.lease_valid() {
            LeaseSource::None
        } else if self
            .since_controller_lease()
            .is_some_and(|ago| ago < Duration::from_millis(self.settings.lease_ms()))
        {
            LeaseSource::Controller
        } else {
            LeaseSource::Peers
        }
    }

    /// The primaries of the map, this node aside, that seem gone while the controller cannot
    /// tell: once it has lost its majority for a node timeout, those that have not asked this
    /// node for a peer lease within one (every live primary asks every node several times a
    /// lease then). Empty while the controller has its majority: the map's health says it.
    pub fn silent_primaries(&self) -> Vec<NodeId> {
        if self.controller_has_quorum() {
            return Vec::new();
        }
        let map = self.map();
        map.shards
            .iter()
            .map(|s| s.primary)
            .filter(|p| *p != self.myself.id)
            .filter(|p| {
                self.grantor
                    .since_asked(*p)
                    .is_none_or(|ago| ago > self.node_timeout())
            })
            .collect()
    }

    /// While this node is a primary whose lease is half gone without a renewal from the
    /// controller, asks every other node of its map for a peer lease (see `peer_lease`).
    async fn renew_by_peers(self: Arc<Self>) {
        let lease_ms = self.settings.lease_ms();
        let lease = Duration::from_millis(lease_ms);
        let interval = heartbeat_interval(lease_ms);
        loop {
            tokio::time::sleep(interval).await;
            if *self.removed.borrow() {
                return;
            }
            let map = self.map();
            if !matches!(map.placement_of(self.myself.id), Some((_, Role::Primary))) {
                continue;
            }
            let until = self.lease_until.load(Ordering::Acquire);
            let now = self.micros_since_base(Instant::now());
            if until > now + lease.as_micros() as u64 / 2 {
                continue; // The controller keeps it fresh.
            }
            let sent = Instant::now();
            let request = Request::PeerLease {
                primary: self.myself.id,
                epoch: map.epoch,
            };
            let others = map
                .nodes
                .values()
                .filter(|n| n.id != self.myself.id)
                .map(|n| ((), n.bus_addr()));
            let mut grants = 0;
            for (_, reply) in
                bus::call_all(others, &self.credentials, &request, PEER_LEASE_TIMEOUT).await
            {
                match reply {
                    Ok(Reply::PeerLease {
                        granted: true,
                        epoch,
                    }) if epoch == map.epoch => {
                        grants += 1;
                    }
                    Ok(Reply::PeerLease { epoch, .. }) if epoch > map.epoch => {
                        // A newer map exists: it may demote this node; serve nothing until
                        // it is here.
                        self.hear(epoch);
                    }
                    _ => {}
                }
            }
            if grants >= peer_lease::grants_needed(map.nodes.len())
                && self.heard_epoch() <= map.epoch
            {
                self.extend_lease(sent, lease);
                self.peer_lease_at
                    .store(self.micros_since_base(Instant::now()), Ordering::Release);
                tracing::debug!(grants, nodes = map.nodes.len(), "peer lease");
            } else if self.heard_epoch() > map.epoch {
                self.refresh().await;
            } else {
                tracing::debug!(grants, nodes = map.nodes.len(), "no peer lease");
            }
        }
    }

    /// Whether the controller's last word still lets this node serve as a primary: a heartbeat
    /// acknowledged within the lease ([`Settings::lease_ms`]).
    pub fn lease_valid(&self) -> bool {
        let now = self.clock_base.elapsed().as_micros() as u64;
        now < self.lease_until.load(Ordering::Acquire)
    }

    async fn subscribe(self: Arc<Self>) {
        loop {
            if *self.removed.borrow() {
                return;
            }
            for addr in self.controller_addrs() {
                if addr == self.myself.bus_addr() {
                    continue; // Our own state machine feeds us already.
                }
                if let Err(e) = self.follow(&addr).await {
                    tracing::debug!("map subscription to {addr}: {e}");
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Follows the map pushes of the node at `addr` until the subscription breaks.
    async fn follow(&self, addr: &str) -> Result<(), BusError> {
        let mut connection = BusConnection::connect(addr, &self.credentials, BUS_TIMEOUT).await?;
        connection
            .send(&Request::Subscribe {
                after: self.map().epoch,
            })
            .await?;
        loop {
            match connection.next(SUBSCRIPTION_SILENCE).await? {
                Reply::Map(map) => {
                    self.apply(map);
                }
                Reply::Ping => {}
                // Every subscription carries the cluster's hot keys too (the node has them
                // from its heartbeats' acknowledgements as well).
                Reply::HotKeys(set) => {
                    if set.version != self.hot_keys.borrow().version {
                        self.hot_keys.send_replace(Arc::new(set));
                    }
                }
                other => {
                    return Err(BusError::BadFrame {
                        addr: addr.to_string(),
                        reason: format!("unexpected {other:?} on a subscription"),
                    });
                }
            }
        }
    }

    /// Turns `removed` on when a map without this node follows one with it.
    async fn watch_membership(self: Arc<Self>) {
        let mut maps = self.maps.subscribe();
        let mut was_member = false;
        while maps.changed().await.is_ok() {
            let member = maps.borrow().nodes.contains_key(&self.myself.id);
            if was_member && !member {
                tracing::warn!("this node was removed from the cluster");
                self.removed.send_replace(true);
                return;
            }
            was_member |= member;
        }
    }

    async fn serve_bus(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Ok(room) = self.handshakes.clone().try_acquire_owned() else {
                        // Too many connections stuck in their handshake: this one waits for
                        // none (a member retries).
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(self.clone().serve_peer(stream, peer, room));
                }
                Err(e) => {
                    tracing::warn!("cluster bus accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    /// Serves one bus connection: its handshake (holding `room` meanwhile), then its
    /// requests.
    async fn serve_peer(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: std::net::SocketAddr,
        room: tokio::sync::OwnedSemaphorePermit,
    ) {
        let opened = bus::accept(tcp, self.bus_tls.as_deref(), self.credentials.secret()).await;
        drop(room);
        let stream = match opened {
            Ok(stream) => stream,
            Err(e) => {
                self.auth_failures.record(peer, &e);
                return;
            }
        };
        let mut heartbeats_from = None;
        self.serve_peer_requests(stream, &mut heartbeats_from).await;
        // A node's heartbeat connection to a controller leader closed: if its process is
        // gone, the controller need not wait a node timeout to tell.
        if let (Some(node), Some(controller)) = (heartbeats_from, &self.controller) {
            controller.heartbeat_link_closed(node);
        }
    }

    /// Answers the requests of one bus connection until it closes; notes in `heartbeats_from`
    /// the node whose heartbeats it carried, if any.
    async fn serve_peer_requests(
        self: &Arc<Self>,
        mut stream: BusStream,
        heartbeats_from: &mut Option<NodeId>,
    ) {
        loop {
            let request: Request = match bus::read_frame(&mut stream).await {
                Ok(r) => r,
                Err(bus::FrameError::Closed) => return,
                Err(e) => {
                    tracing::debug!("cluster bus: dropping a peer: {e}");
                    let _ = bus::write_frame(&mut stream, &Reply::Error(e.to_string())).await;
                    return;
                }
            };
            if let Request::Heartbeat(heartbeat) = &request {
                *heartbeats_from = Some(heartbeat.node);
            }
            let reply = match request {
                Request::Subscribe { after } => {
                    self.push_maps(stream, after).await;
                    return;
                }
                Request::GetMap => {
                    let sent = match self.map_frame(&self.map()) {
                        Ok(frame) => bus::write_encoded(&mut stream, &frame).await,
                        Err(e) => bus::write_frame(&mut stream, &Reply::Error(e.to_string())).await,
                    };
                    if sent.is_err() {
                        return;
                    }
                    continue;
                }
                Request::Report => Reply::Report((self.stats)()),
                Request::Publish { publications } => {
                    if let Some(sink) = self.publication_sink.get() {
                        publications.into_iter().for_each(|p| sink(p));
                    }
                    Reply::Noted
                }
                Request::PeerLease { primary, epoch } => {
                    let map = self.map();
                    match self.grantor.answer(&map, primary, epoch) {
                        Answer::Granted => Reply::PeerLease {
                            granted: true,
                            epoch,
                        },
                        Answer::OtherEpoch(mine) => {
                            if epoch > mine {
                                self.hear(epoch);
                                let node = self.clone();
                                tokio::spawn(async move { node.refresh().await });
                            }
                            Reply::PeerLease {
                                granted: false,
                                epoch: mine,
                            }
                        }
                        Answer::Refused => Reply::PeerLease {
                            granted: false,
                            epoch: map.epoch,
                        },
                    }
                }
                Request::Fence {
                    primary,
                    epoch,
                    hold_ms,
                } => {
                    let since = self
                        .grantor
                        .fence(primary, epoch, Duration::from_millis(hold_ms));
                    Reply::Fenced {
                        last_grant_ms: since.map(|d| d.as_millis() as u64),
                    }
                }
                other => match &self.controller {
                    // A member that never heard from a leader (eligible, not a voter) points
                    // where the node would send its own requests.
                    Some(controller) => match controller.handle(other).await {
                        Reply::NotLeader { leader: None } => Reply::NotLeader {
                            leader: self.leader_addr(),
                        },
                        reply => reply,
                    },
                    None if matches!(other, Request::Raft(..)) => {
                        Reply::Error("this node is not a controller member".into())
                    }
                    None => Reply::NotLeader {
                        leader: self.leader_addr(),
                    },
                },
            };
            if bus::write_frame(&mut stream, &reply).await.is_err() {
                return;
            }
        }
    }

    /// The [`Reply::Map`] frame of `map`, encoded at most once per epoch.
    fn map_frame(&self, map: &ClusterMap) -> std::io::Result<Arc<[u8]>> {
        let mut cached = self.map_frame.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((epoch, frame)) = &*cached
            && *epoch == map.epoch
        {
            return Ok(frame.clone());
        }
        let frame: Arc<[u8]> = bus::encode_map_reply(map)?.into();
        *cached = Some((map.epoch, frame.clone()));
        Ok(frame)
    }

    /// Pushes every map newer than `after` to a subscriber, with pings while nothing changes.
    async fn push_maps(&self, mut stream: BusStream, mut after: Epoch) {
        let mut maps = self.maps.subscribe();
        let mut hot_keys = self.hot_keys.subscribe();
        // Every subscription starts with the current set, empty or not: a subscriber that
        // comes back may hold one that has changed since.
        let mut hot_version = None;
        loop {
            let map = maps.borrow_and_update().clone();
            if map.epoch > after {
                after = map.epoch;
                let Ok(frame) = self.map_frame(&map) else {
                    return;
                };
                if bus::write_encoded(&mut stream, &frame).await.is_err() {
                    return;
                }
            }
            let hot = hot_keys.borrow_and_update().clone();
            if hot_version != Some(hot.version) {
                hot_version = Some(hot.version);
                let reply = Reply::HotKeys((*hot).clone());
                if bus::write_frame(&mut stream, &reply).await.is_err() {
                    return;
                }
            }
            let changed = async {
                tokio::select! {
                    changed = maps.changed() => changed.is_ok(),
                    changed = hot_keys.changed() => changed.is_ok(),
                }
            };
            match tokio::time::timeout(SUBSCRIPTION_PING, changed).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(_) => {
                    if bus::write_frame(&mut stream, &Reply::Ping).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The bus addresses of `map`'s controller members.
fn controller_bus_addrs(map: &ClusterMap) -> Vec<String> {
    map.controllers
        .iter()
        .filter_map(|id| map.node(*id))
        .map(NodeInfo::bus_addr)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_come_at_least_four_times_a_lease() {
        // Leases of 80 ms, 800 ms and 12 s.
        assert_eq!(heartbeat_interval(80), Duration::from_millis(20));
        assert_eq!(heartbeat_interval(800), HEARTBEAT_INTERVAL);
        assert_eq!(heartbeat_interval(12_000), HEARTBEAT_INTERVAL);
        assert_eq!(heartbeat_interval(0), Duration::from_millis(10));
    }
}
