//! The controller hosted by a node started with `--controller`: a Raft member, and while it
//! leads, the one place where cluster decisions are made.
//!
//! The leader collects heartbeats, join and removal requests, runs [`decide`] every tick (and at
//! once when a request arrives), commits the resulting map through Raft, answers the requests
//! that waited for it, and keeps Raft's voters in line with [`desired_voters`]. Followers only
//! replicate the log and apply maps, and send requests that reach them to the leader
//! ([`Reply::NotLeader`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openraft::{BasicNode, ChangeMembers, ServerState};
use tokio::sync::{Notify, oneshot};

mod crash;
mod fence;
mod steering;

use crate::bus::{
    self, ClusterStatus, Heartbeat, HeartbeatAck, NodeStats, NodeStatus, RaftReply, RaftRequest,
    Reply, Request,
};
use crate::decide::{self, Action, Observations, Refusable, Settings};
use crate::hot_keys::HotKeysFinder;
use crate::map::{ClusterMap, Epoch, Migration, NodeId, NodeInfo, SlotGroups};
use crate::map_channel::MapSender;
use crate::raft::network::BusNetwork;
use crate::raft::store::{LogStore, MapMachine};
use crate::raft::{Proposal, ProposalOutcome, Raft};

/// How often the leader reconsiders the cluster.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// How recently a majority must have acknowledged the leader for it to grant leases (ms).
const QUORUM_FRESHNESS_MS: u64 = 300;

/// The shortest Raft election timeout (ms): a follower that heard from a leader votes for no
/// other within it (openraft 0.9 refuses votes for longer, up to the longest election timeout;
/// the argument below needs only this floor).
const ELECTION_TIMEOUT_MIN_MS: u64 = 200;

/// The longest Raft election timeout (ms); openraft's followers also refuse votes for this
/// long after hearing from their leader.
const ELECTION_TIMEOUT_MAX_MS: u64 = 400;

/// How long after it takes over a new leader fails a node it has not heard from, beyond a
/// lease (ms). The previous leader may have granted leases up to [`QUORUM_FRESHNESS_MS`]
/// after the start of its last confirmed quorum round, and this one was elected no sooner
/// than [`ELECTION_TIMEOUT_MIN_MS`] after it: the difference, and 50 ms more, after a lease
/// (half a node timeout) any such lease has ended, whatever the node timeout. (Peer leases
/// are fenced, see `fence`.) A node heard from since is failed a node timeout after its last
/// heartbeat, as always.
const TAKEOVER_MARGIN_MS: u64 = QUORUM_FRESHNESS_MS - ELECTION_TIMEOUT_MIN_MS + 50;

/// How long a replica may take to report its offset before a failover.
const REPORT_TIMEOUT: Duration = Duration::from_millis(150);

/// How often a leader confirms that a majority still follows it.
const QUORUM_CHECK: Duration = Duration::from_millis(100);

/// How long a membership step (catching a learner up, changing voters) may take.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// Raft refused to start or initialise.
    #[error("controller: {0}")]
    Raft(String),
    /// Its Raft state on disk cannot be read.
    #[error("controller: {0}")]
    Dir(#[from] crate::node_dir::DirError),
}

/// What a controller needs to know.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The node hosting it.
    pub myself: NodeInfo,
    /// Decision tunables.
    pub settings: Settings,
    /// Replicas per shard, for a cluster this controller founds.
    pub replicas: u8,
    /// Where its Raft state is kept (`raft/` in the node's directory); `None` keeps it in
    /// memory.
    pub raft_dir: Option<PathBuf>,
    /// What every bus connection it opens is opened with (the cluster secret, and TLS
    /// settings with `tls-cluster`).
    pub credentials: crate::bus_credentials::BusCredentials,
}

type Waiter = oneshot::Sender<Reply>;

/// The requests waiting for a decision.
#[derive(Default)]
struct Waiters {
    joins: Vec<(NodeInfo, Waiter)>,
    removals: Vec<(NodeId, Waiter)>,
    failovers: Vec<(NodeId, Waiter)>,
    user_changes: Vec<((String, Option<String>), Waiter)>,
    handovers: Vec<(Migration, Waiter)>,
    rebalances: Vec<Waiter>,
    moves: Vec<(SlotGroups, Waiter)>,
}

impl Waiters {
    fn is_empty(&self) -> bool {
        self.joins.is_empty()
            && self.removals.is_empty()
            && self.failovers.is_empty()
            && self.user_changes.is_empty()
            && self.handovers.is_empty()
            && self.rebalances.is_empty()
            && self.moves.is_empty()
    }

    /// Puts `other`'s requests after these.
    fn extend(&mut self, other: Waiters) {
        self.joins.extend(other.joins);
        self.removals.extend(other.removals);
        self.failovers.extend(other.failovers);
        self.user_changes.extend(other.user_changes);
        self.handovers.extend(other.handovers);
        self.rebalances.extend(other.rebalances);
        self.moves.extend(other.moves);
    }

    /// Where every request's answer goes.
    fn into_senders(self) -> impl Iterator<Item = Waiter> {
        let joins = self.joins.into_iter().map(|(_, tx)| tx);
        let nodes = self.removals.into_iter().chain(self.failovers);
        let users = self.user_changes.into_iter().map(|(_, tx)| tx);
        let handovers = self.handovers.into_iter().map(|(_, tx)| tx);
        let moves = self.moves.into_iter().map(|(_, tx)| tx);
        joins
            .chain(nodes.map(|(_, tx)| tx))
            .chain(users)
            .chain(handovers)
            .chain(self.rebalances)
            .chain(moves)
    }
}

/// What only the leader keeps, in memory (a new leader starts afresh).
#[derive(Default)]
struct LeaderView {
    /// The term this view belongs to.
    term: u64,
    since_ms: u64,
    heartbeats: HashMap<NodeId, (u64, Heartbeat)>,
    /// Requests for the next decision.
    waiting: Waiters,
    /// The cluster's hot keys, as found in the heartbeats.
    hot: HotKeysFinder,
}

/// A running controller member.
pub struct Controller {
    raft: Raft,
    machine: MapMachine,
    config: ControllerConfig,
    view: Mutex<LeaderView>,
    wake: Notify,
    /// When the last successful confirmation that a majority follows this leader began.
    quorum_confirmed: Mutex<Option<Instant>>,
    /// The newest epoch each node reported in a heartbeat to this member, leader or not
    /// (nodes also tell the followers, every second): a new leader knows which maps a silent
    /// primary may still hold, back to which epoch.
    epochs_seen: Mutex<HashMap<NodeId, Epoch>>,
    /// When a leader last sent this member log entries or a heartbeat.
    leader_contact: Mutex<Instant>,
    /// This leader is handing its leadership over (see `steering`): no quorum checks.
    handing_over: AtomicBool,
    /// When this leader last said it could not fence a primary it means to replace.
    fence_warned: Mutex<Option<Instant>>,
    /// Nodes whose heartbeat connection closed and whose bus then refused a connection: their
    /// process is gone (see `crash`). Cleared by their next heartbeat.
    refused: Mutex<HashSet<NodeId>>,
    /// Whether it started from Raft state a previous run left on disk.
    resumed: bool,
}

impl Controller {
    /// Starts a Raft member that publishes every map it applies on `maps`. It does nothing
    /// until it founds a cluster ([`Controller::found`]) or a leader adds it.
    pub async fn start(
        config: ControllerConfig,
        maps: MapSender,
    ) -> Result<Arc<Controller>, ControllerError> {
        let raft_config = openraft::Config {
            cluster_name: "shoal".into(),
            heartbeat_interval: 50,
            election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
            election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(500),
            max_in_snapshot_log_to_keep: 100,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let (log, machine) = match &config.raft_dir {
            Some(dir) => (LogStore::open(dir)?, MapMachine::open(maps, dir)?),
            None => (LogStore::default(), MapMachine::new(maps)),
        };
        let resumed = log.is_initialized();
        let raft = Raft::new(
            config.myself.id.0,
            Arc::new(raft_config),
            BusNetwork::new(config.credentials.clone()),
            log,
            machine.clone(),
        )
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let controller = Arc::new(Controller {
            raft,
            machine,
            config,
            view: Mutex::new(LeaderView::default()),
            wake: Notify::new(),
            quorum_confirmed: Mutex::new(None),
            epochs_seen: Mutex::new(HashMap::new()),
            leader_contact: Mutex::new(Instant::now()),
            handing_over: AtomicBool::new(false),
            fence_warned: Mutex::new(None),
            refused: Mutex::new(HashSet::new()),
            resumed,
        });
        tokio::spawn(controller.clone().lead());
        tokio::spawn(controller.clone().confirm_quorum());
        tokio::spawn(controller.clone().steer_elections());
        Ok(controller)
    }

    /// Founds a new cluster: this node becomes the only voter and commits the first map (itself,
    /// owning every slot). Returns once that map is committed.
    pub async fn found(&self) -> Result<(), ControllerError> {
        let me = &self.config.myself;
        let members = BTreeMap::from([(me.id.0, BasicNode::new(me.bus_addr()))]);
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))?;
        let first = decide::bootstrap(me.clone(), self.config.replicas, now_ms());
        for _ in 0..50 {
            match self
                .raft
                .client_write(Proposal {
                    base: 0,
                    map: first.clone(),
                })
                .await
            {
                Ok(_) => return Ok(()),
                // Not leader yet: the election of a single voter takes a moment.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        Err(ControllerError::Raft(
            "could not commit the first map: no leadership".into(),
        ))
    }

    /// Whether it started from the Raft state of a previous run (a member restarted with its
    /// directory): it is in its group already, and must not found another.
    pub fn resumed(&self) -> bool {
        self.resumed
    }

    /// The committed map as this member has applied it.
    pub fn map(&self) -> Arc<ClusterMap> {
        self.machine.current()
    }

    /// The bus address of the current leader, if known: `None` once no leader has sent this
    /// member anything for an election timeout (a member the group dropped, or one cut off,
    /// would otherwise keep naming a leader that no longer leads, and every request it
    /// redirects would go round in a circle).
    pub fn leader_addr(&self) -> Option<String> {
        // Its own address as it runs now: Raft's record of it may be an address it had before
        // a restart (a pod recreated on a new IP) until the map and the membership catch up,
        // and whoever is sent there would never reach it.
        if self.is_leader() {
            return Some(self.config.myself.bus_addr());
        }
        if self.since_leader_contact() > Duration::from_millis(ELECTION_TIMEOUT_MAX_MS) {
            return None;
        }
        let metrics = self.raft.server_metrics();
        let metrics = metrics.borrow();
        let leader = metrics.current_leader?;
        metrics
            .membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
    }

    /// How long since a leader last sent this member anything (zero while it leads).
    fn since_leader_contact(&self) -> Duration {
        if self.is_leader() {
            return Duration::ZERO;
        }
        self.leader_contact
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// The Raft term this member is in (an election raises it; a member that grants a vote
    /// for a later term takes that term).
    pub fn term(&self) -> u64 {
        self.raft
            .server_metrics()
            .borrow()
            .vote
            .leader_id()
            .get_term()
    }

    /// Whether this member leads right now.
    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.server_metrics();
        let metrics = metrics.borrow();
        metrics.state == ServerState::Leader && metrics.current_leader == Some(metrics.id)
    }

    /// Stops the Raft member.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }

    /// Answers a bus request meant for the controller.
    pub async fn handle(&self, request: Request) -> Reply {
        match request {
            Request::Raft(to, _) if to != self.config.myself.id => {
                Reply::Error(format!("this is node {}, not {to}", self.config.myself.id))
            }
            Request::Raft(_, rpc) => Reply::Raft(self.raft_rpc(rpc).await),
            Request::Heartbeat(heartbeat) => self.heartbeat(heartbeat),
            Request::EpochReport { node, epoch } => {
                self.saw_epoch(node, epoch);
                Reply::Noted
            }
            Request::Join(node) => {
                self.wait_for_decision(|view, tx| view.waiting.joins.push((node, tx)))
                    .await
            }
            Request::RemoveNode(node) => {
                self.wait_for_decision(|view, tx| view.waiting.removals.push((node, tx)))
                    .await
            }
            Request::Failover(node) => {
                self.wait_for_decision(|view, tx| view.waiting.failovers.push((node, tx)))
                    .await
            }
            Request::SetUser { name, rules } => {
                self.wait_for_decision(|view, tx| {
                    view.waiting.user_changes.push(((name, rules), tx))
                })
                .await
            }
            Request::HandedOver(migration) => {
                self.wait_for_decision(|view, tx| view.waiting.handovers.push((migration, tx)))
                    .await
            }
            Request::Rebalance => {
                self.wait_for_decision(|view, tx| view.waiting.rebalances.push(tx))
                    .await
            }
            Request::MoveSlots { groups } => {
                self.wait_for_decision(|view, tx| view.waiting.moves.push((groups, tx)))
                    .await
            }
            Request::Status => self.status(),
            Request::GetMap
            | Request::Subscribe { .. }
            | Request::Report
            | Request::PeerLease { .. }
            | Request::Publish { .. }
            | Request::Fence { .. } => {
                Reply::Error("served by the node, not the controller".into())
            }
        }
    }

    async fn raft_rpc(&self, rpc: RaftRequest) -> RaftReply {
        match rpc {
            RaftRequest::Vote(r) => RaftReply::Vote(self.raft.vote(r).await),
            RaftRequest::Append(r) => {
                *self
                    .leader_contact
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Instant::now();
                RaftReply::Append(self.raft.append_entries(r).await)
            }
            RaftRequest::Snapshot(r) => RaftReply::Snapshot(self.raft.install_snapshot(r).await),
        }
    }

    fn not_leader(&self) -> Reply {
        Reply::NotLeader {
            leader: self.leader_addr(),
        }
    }

    fn view(&self) -> MutexGuard<'_, LeaderView> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest epoch each node reported (a copy, read when a map is about to be fenced).
    fn epochs_seen(&self) -> HashMap<NodeId, Epoch> {
        self.epochs_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn saw_epoch(&self, node: NodeId, epoch: Epoch) {
        let mut seen = self.epochs_seen.lock().unwrap_or_else(|e| e.into_inner());
        let known = seen.entry(node).or_default();
        *known = (*known).max(epoch);
    }

    fn heartbeat(&self, heartbeat: Heartbeat) -> Reply {
        self.saw_epoch(heartbeat.node, heartbeat.epoch);
        self.heard_again(heartbeat.node);
        if !self.is_leader() {
            return self.not_leader();
        }
        let held = heartbeat.hot_keys_version;
        let hot_keys = {
            let now = monotonic_ms();
            let mut view = self.view();
            view.heartbeats.insert(heartbeat.node, (now, heartbeat));
            if view.hot.due(now) {
                let map = self.map();
                let view = &mut *view;
                view.hot
                    .refresh(&map, &view.heartbeats, &self.config.settings, now);
            }
            view.hot.for_holder_of(held)
        };
        Reply::HeartbeatAck(HeartbeatAck {
            hot_keys,
            epoch: self.map().epoch,
            lease_ms: if self.quorum_fresh() {
                self.config.settings.lease_ms()
            } else {
                0
            },
        })
    }

    /// Whether a majority acknowledged this leader within
    /// [`QUORUM_FRESHNESS_MS`]. Only then may it grant leases: a deposed leader cut off from
    /// the majority still believes it leads until it hears of a newer term, and must not keep
    /// a primary on its side serving while the majority's leader promotes another. A majority
    /// that acknowledged this leader at time t elects no other before t + the election timeout
    /// (at least [`ELECTION_TIMEOUT_MIN_MS`]), and that leader fails nobody for a lease plus
    /// [`TAKEOVER_MARGIN_MS`] after it takes over; a lease granted before
    /// t + `QUORUM_FRESHNESS_MS` (half a node timeout, from before it was granted) ends
    /// before that.
    ///
    /// Its caller has just checked that this member leads.
    fn quorum_fresh(&self) -> bool {
        let confirmed = *self
            .quorum_confirmed
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        confirmed.is_some_and(|at| at.elapsed() < Duration::from_millis(QUORUM_FRESHNESS_MS))
    }

    /// While this member leads, confirms every [`QUORUM_CHECK`] that a majority still
    /// follows it (a round of Raft heartbeats), recording when each successful check *began*.
    async fn confirm_quorum(self: Arc<Self>) {
        loop {
            tokio::time::sleep(QUORUM_CHECK).await;
            if !self.is_leader() || self.handing_over.load(Ordering::Acquire) {
                continue;
            }
            let began = Instant::now();
            let confirmed = tokio::time::timeout(
                Duration::from_millis(QUORUM_FRESHNESS_MS),
                self.raft.ensure_linearizable(),
            )
            .await;
            if matches!(confirmed, Ok(Ok(_))) {
                let mut at = self
                    .quorum_confirmed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if at.is_none_or(|previous| previous < began) {
                    *at = Some(began);
                }
            }
        }
    }

    async fn wait_for_decision(&self, enqueue: impl FnOnce(&mut LeaderView, Waiter)) -> Reply {
        if !self.is_leader() {
            return self.not_leader();
        }
        let (tx, rx) = oneshot::channel();
        enqueue(&mut self.view(), tx);
        self.wake.notify_one();
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => self.not_leader(),
            Err(_) => Reply::Error("the controller did not decide within 10 s".into()),
        }
    }

    fn status(&self) -> Reply {
        if !self.is_leader() {
            return self.not_leader();
        }
        let map = (*self.map()).clone();
        let now = monotonic_ms();
        let view = self.view();
        let nodes = map
            .nodes
            .values()
            .map(|n| {
                let seen = view.heartbeats.get(&n.id);
                NodeStatus {
                    id: n.id,
                    placement: map.placement_of(n.id).map(|(s, r)| (s.id, r)),
                    last_heartbeat_ms: seen.map(|(at, _)| now.saturating_sub(*at)),
                    epoch: seen.map_or(0, |(_, h)| h.epoch),
                    stats: seen.map(|(_, h)| h.stats.clone()).unwrap_or_default(),
                }
            })
            .collect();
        Reply::Status(Box::new(ClusterStatus {
            map,
            leader: self.config.myself.id,
            nodes,
            hot_keys: view.hot.current().clone(),
        }))
    }

    /// The leader's loop: every tick, or at once when a request arrives.
    async fn lead(self: Arc<Self>) {
        // The server metrics change only with the vote, the state, the leader or the
        // membership (all this loop reads); the full metrics change on every append.
        let mut metrics = self.raft.server_metrics();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = self.wake.notified() => {}
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return; // Raft stopped.
                    }
                }
            }
            let (leads, term, voters) = {
                let state = metrics.borrow();
                let voters: Vec<NodeId> = state
                    .membership_config
                    .membership()
                    .voter_ids()
                    .map(NodeId)
                    .collect();
                let leads = state.state == ServerState::Leader;
                (leads, state.vote.leader_id().get_term(), voters)
            };
            if !leads {
                self.step_down();
                continue;
            }
            self.take_over_if_new(term);
            self.decide_and_commit(voters.clone()).await;
            self.reconcile_voters(&voters).await;
        }
    }

    fn step_down(&self) {
        let mut view = self.view();
        if view.term == 0 && view.waiting.is_empty() {
            return;
        }
        let view = std::mem::take(&mut *view);
        self.redirect_waiters(view.waiting);
    }

    /// Tells every waiting request where the leader went.
    fn redirect_waiters(&self, waiters: Waiters) {
        let leader = self.leader_addr();
        for tx in waiters.into_senders() {
            let _ = tx.send(Reply::NotLeader {
                leader: leader.clone(),
            });
        }
    }

    fn take_over_if_new(&self, term: u64) {
        let mut view = self.view();
        if view.term != term {
            tracing::info!(term, "controller: this node leads");
            view.term = term;
            view.since_ms = monotonic_ms();
            view.heartbeats.clear();
        }
        // The leader's own node is alive by definition.
        let me = self.config.myself.id;
        let epoch = self.map().epoch;
        let stats = view
            .heartbeats
            .get(&me)
            .map(|(_, h)| h.stats.clone())
            .unwrap_or_default();
        view.heartbeats.insert(
            me,
            (
                monotonic_ms(),
                Heartbeat {
                    node: me,
                    epoch,
                    stats,
                    hot_keys_version: 0,
                },
            ),
        );
    }

    async fn decide_and_commit(&self, voters: Vec<NodeId>) {
        let current = self.map();
        if current.epoch == 0 {
            return; // Not founded yet.
        }
        let (observations, waiters) = {
            let mut view = self.view();
            let waiters = std::mem::take(&mut view.waiting);
            // A join request is word from the node: it counts as a heartbeat, or the node
            // would be marked failed before its first one if this leader has led for longer
            // than the node timeout. Epoch 0 marks it as no real heartbeat (a joined node's
            // carry its map's epoch): readiness checks do not take it for one, and a join
            // still waiting (its commit failed) stays fresh.
            let now = monotonic_ms();
            for (node, _) in &waiters.joins {
                let (at, heartbeat) = view.heartbeats.entry(node.id).or_insert_with(|| {
                    let heartbeat = Heartbeat {
                        node: node.id,
                        epoch: 0,
                        stats: NodeStats::default(),
                        hot_keys_version: 0,
                    };
                    (now, heartbeat)
                });
                if heartbeat.epoch == 0 {
                    *at = now;
                }
            }
            let observations = Observations {
                last_heartbeat: view
                    .heartbeats
                    .iter()
                    .map(|(id, (at, _))| (*id, *at))
                    .collect(),
                // A node never heard from since the takeover is failed a lease plus the
                // margin after it (see TAKEOVER_MARGIN_MS), not a whole node timeout.
                fail_none_before_ms: view.since_ms
                    + TAKEOVER_MARGIN_MS
                    + self.config.settings.lease_ms(),
                joins: waiters.joins.iter().map(|(n, _)| n.clone()).collect(),
                removals: waiters.removals.iter().map(|(n, _)| *n).collect(),
                voters,
                reports: view
                    .heartbeats
                    .iter()
                    .map(|(id, (_, h))| (*id, h.stats.replication.clone()))
                    .collect(),
                failovers: waiters.failovers.iter().map(|(n, _)| *n).collect(),
                refused: self.refused_nodes(),
                user_changes: waiters
                    .user_changes
                    .iter()
                    .map(|(c, _)| c.clone())
                    .collect(),
                handed_over: waiters.handovers.iter().map(|(m, _)| m.clone()).collect(),
                rebalance: !waiters.rebalances.is_empty(),
                moves: waiters.moves.iter().map(|(m, _)| m.clone()).collect(),
            };
            (observations, waiters)
        };
        let mut observations = observations;
        let mut decision = decide::decide(
            &current,
            &observations,
            monotonic_ms(),
            &self.config.settings,
        );
        if self
            .refresh_candidates(&current, &decision, &mut observations)
            .await
        {
            // Promote by the replicas' offsets now, not as of their last heartbeats: the
            // others must not be ahead of the one promoted, or they need a full resync.
            decision = decide::decide(
                &current,
                &observations,
                monotonic_ms(),
                &self.config.settings,
            );
        }
        for action in &decision.actions {
            if !matches!(action, Action::AlreadyMember(_)) {
                tracing::info!(?action, epoch = current.epoch + 1, "controller decision");
            }
        }
        let committed = match decision.map.take() {
            None => Some(current.clone()),
            Some(map) => match self.fence(&current, &map, &self.epochs_seen()).await {
                Ok(()) => self.commit(current.epoch, map).await,
                Err(why) => {
                    // Retried every tick until enough nodes answer: said once a second.
                    let mut warned = self.fence_warned.lock().unwrap_or_else(|e| e.into_inner());
                    if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                        *warned = Some(Instant::now());
                        tracing::warn!("controller: not replacing a primary yet: {why}");
                    }
                    None
                }
            },
        };
        let Some(map) = committed else {
            // Not committed (lost leadership, or a stale base): the requests wait for the
            // next tick, or are told where the leader went.
            let mut view = self.view();
            if self.is_leader() {
                view.waiting.extend(waiters);
            } else {
                drop(view);
                self.redirect_waiters(waiters);
            }
            return;
        };
        let Waiters {
            joins,
            removals,
            failovers,
            user_changes,
            handovers,
            rebalances,
            moves,
        } = waiters;
        for tx in handovers.into_iter().map(|(_, tx)| tx).chain(rebalances) {
            let _ = tx.send(Reply::Map((*map).clone()));
        }
        for (index, (_, tx)) in moves.into_iter().enumerate() {
            let refusal = decision.refusal(Refusable::Move(index));
            let _ = tx.send(match refusal {
                Some(why) => Reply::Error(format!("cannot move the slots: {why}")),
                None => Reply::Map((*map).clone()),
            });
        }
        for (_, tx) in user_changes {
            let _ = tx.send(Reply::UserSet { epoch: map.epoch });
        }
        for (node, tx) in joins {
            let _ = tx.send(Reply::Joined((*map).clone()));
            tracing::debug!(node = ?node.id, "join answered");
        }
        for (node, tx) in removals {
            let refusal = decision.refusal(Refusable::Removal(node));
            let _ = tx.send(match refusal {
                Some(why) => Reply::Error(format!("cannot remove node {node}: {why}")),
                None => Reply::Removed((*map).clone()),
            });
        }
        for (node, tx) in failovers {
            let refusal = decision.refusal(Refusable::Handover(node));
            let _ = tx.send(match refusal {
                Some(why) => Reply::Error(format!("cannot fail over to node {node}: {why}")),
                None => Reply::FailedOver((*map).clone()),
            });
        }
    }

    /// Before a failover, asks the failed primaries' replicas for their replication state;
    /// returns whether any answered (the decision should be made again with it).
    async fn refresh_candidates(
        &self,
        current: &ClusterMap,
        decision: &decide::Decision,
        observations: &mut Observations,
    ) -> bool {
        let shards: Vec<_> = decision
            .actions
            .iter()
            .filter_map(|a| match a {
                // A failed primary, or one removed (or restarted) whose replica takes over.
                Action::FailedOver(shard, ..)
                | Action::Promoted(_, shard)
                | Action::HandedOver(shard, ..) => Some(*shard),
                // A primary restarted with its directory: it hands its shard to a replica
                // that holds keys, which only fresh reports may show.
                Action::Reincarnated(node) => current
                    .shards
                    .iter()
                    .find(|s| s.primary == *node)
                    .map(|s| s.id),
                _ => None,
            })
            .collect();
        let candidates: Vec<NodeInfo> = shards
            .iter()
            .filter_map(|id| current.shard(*id))
            .flat_map(|s| s.replicas.iter())
            .filter_map(|r| current.node(*r))
            .filter(|n| n.is_ok())
            .cloned()
            .collect();
        let targets = candidates.iter().map(|node| (node.id, node.bus_addr()));
        let mut refreshed = false;
        for (id, reply) in bus::call_all(
            targets,
            &self.config.credentials,
            &Request::Report,
            REPORT_TIMEOUT,
        )
        .await
        {
            match reply {
                Ok(Reply::Report(stats)) => {
                    tracing::info!(node = %id, report = ?stats.replication, "failover candidate");
                    observations.reports.insert(id, stats.replication);
                    refreshed = true;
                }
                other => {
                    let last = observations.reports.get(&id);
                    tracing::warn!(node = %id, reply = ?other, ?last, "failover candidate did not report; using its last heartbeat's offset");
                }
            }
        }
        refreshed
    }

    /// Commits `map` (stamped with the wall-clock time, for whoever measures how fast maps
    /// travel) on top of epoch `base`; returns the map then current, if it was applied.
    async fn commit(&self, base: u64, mut map: ClusterMap) -> Option<Arc<ClusterMap>> {
        map.committed_at_ms = now_ms();
        match self.raft.client_write(Proposal { base, map }).await {
            Ok(response) => match response.data {
                ProposalOutcome::Applied => Some(self.map()),
                other => {
                    tracing::warn!(?other, "controller: proposal not applied");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("controller: could not commit a map: {e}");
                None
            }
        }
    }

    async fn reconcile_voters(&self, voters: &[NodeId]) {
        let map = self.map();
        self.prune_learners(&map).await;
        self.readdress_members(&map).await;
        let me = Some(self.config.myself.id);
        let Some(next) = decide::desired_voters(&map, voters, me, self.config.settings.max_voters)
        else {
            return;
        };
        for id in next.iter().filter(|id| !voters.contains(id)) {
            let Some(node) = map.node(*id) else { continue };
            let added = tokio::time::timeout(
                MEMBERSHIP_TIMEOUT,
                self.raft
                    .add_learner(id.0, BasicNode::new(node.bus_addr()), true),
            )
            .await;
            if !matches!(added, Ok(Ok(_))) {
                tracing::warn!(node = ?id, "controller: could not add a voter: {added:?}");
                return;
            }
        }
        let set: BTreeSet<u64> = next.iter().map(|id| id.0).collect();
        // Voters let go stay learners: they then learn that they no longer vote. A healthy one
        // dropped outright may never hear of the final configuration and campaign with the one
        // before, deposing the leader again and again (Raft's disruptive servers).
        match self
            .change_members(ChangeMembers::ReplaceAllVoters(set), true)
            .await
        {
            Ok(()) => {
                let added: Vec<_> = next.iter().filter(|v| !voters.contains(v)).collect();
                let removed: Vec<_> = voters.iter().filter(|v| !next.contains(v)).collect();
                tracing::info!(voters = ?next, ?added, ?removed, "controller: voters changed");
            }
            Err(e) => tracing::warn!("controller: could not change voters: {e}"),
        }
    }
}

impl Controller {
    /// Points the Raft group at every member's bus address as the map has it now. A member
    /// restarted with its directory on another address (a recreated container or pod gets a
    /// new IP) is the same member (its id, vote and log), and the map takes its new address
    /// when it joins again; Raft's own record of it would otherwise keep sending there, and
    /// every "not the leader" answer would name its old address.
    async fn readdress_members(&self, map: &ClusterMap) {
        let moved: BTreeMap<u64, BasicNode> = {
            let metrics = self.raft.server_metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .nodes()
                .filter_map(|(id, node)| {
                    let now = map.node(NodeId(*id))?.bus_addr();
                    (now != node.addr).then(|| (*id, BasicNode::new(now)))
                })
                .collect()
        };
        if moved.is_empty() {
            return;
        }
        let change = ChangeMembers::SetNodes(moved.clone());
        match self.change_members(change, false).await {
            Ok(()) => {
                let moved: Vec<(NodeId, String)> = moved
                    .into_iter()
                    .map(|(id, n)| (NodeId(id), n.addr))
                    .collect();
                tracing::info!(?moved, "controller: members' new bus addresses recorded");
            }
            Err(e) => tracing::warn!("controller: could not record new addresses: {e}"),
        }
    }

    /// Drops the learners (voters let go, see [`Controller::reconcile_voters`]) that failed or
    /// left the map: the leader would go on replicating to them.
    async fn prune_learners(&self, map: &ClusterMap) {
        let gone: BTreeSet<u64> = {
            let metrics = self.raft.server_metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .learner_ids()
                .filter(|id| map.node(NodeId(*id)).is_none_or(|n| !n.is_ok()))
                .collect()
        };
        if gone.is_empty() {
            return;
        }
        match self
            .change_members(ChangeMembers::RemoveNodes(gone.clone()), false)
            .await
        {
            Ok(()) => {
                let learners: Vec<NodeId> = gone.into_iter().map(NodeId).collect();
                tracing::info!(?learners, "controller: dropped failed learners");
            }
            Err(e) => tracing::warn!("controller: could not drop learners: {e}"),
        }
    }

    /// Changes the Raft group's membership (`retain`: members let go stay learners), waiting
    /// [`MEMBERSHIP_TIMEOUT`] at most; the error says why it did not.
    async fn change_members(
        &self,
        change: ChangeMembers<u64, BasicNode>,
        retain: bool,
    ) -> Result<(), String> {
        match tokio::time::timeout(
            MEMBERSHIP_TIMEOUT,
            self.raft.change_membership(change, retain),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {MEMBERSHIP_TIMEOUT:?}")),
        }
    }
}

/// Milliseconds on a monotonic clock, since this process first asked: heartbeat arrivals
/// and a leader's takeover are timed by it, so a jump of the wall clock fails nobody.
fn monotonic_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deposed_leader_s_leases_end_before_a_new_leader_fails_anyone() {
        // The last lease the old leader grants starts (from the heartbeat's sending) before
        // t + QUORUM_FRESHNESS_MS, t being the start of its last confirmed quorum round; the
        // new leader is elected after t + ELECTION_TIMEOUT_MIN_MS and fails a node it never
        // heard from only a lease plus TAKEOVER_MARGIN_MS after that.
        for node_timeout_ms in [100, 250, 500, 1000, 2000, 15_000] {
            let settings = Settings {
                node_timeout_ms,
                max_voters: 3,
                ..Settings::default()
            };
            let last_lease_ends = QUORUM_FRESHNESS_MS + settings.lease_ms();
            let first_failure = ELECTION_TIMEOUT_MIN_MS + settings.lease_ms() + TAKEOVER_MARGIN_MS;
            assert!(
                last_lease_ends < first_failure,
                "node timeout {node_timeout_ms} ms: a lease may run until +{last_lease_ends} ms, \
                 a failover may start at +{first_failure} ms"
            );
        }
    }
}
