//! The node behind the front door: the checks a command passes after the front door's (in
//! Redis 7's order: cluster routing, loading, paused writes, `min-replicas-to-write`, memory,
//! key size), then its handler on the store, and what a handler waits for turned into a reply
//! that comes later or a connection handed over to replication.

use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shoal_client::counter::{CounterCommand, is_counter_command};
use shoal_frontdoor::{
    Admission, Backend, CLUSTER_DOWN, Call, CommandError, Conn, Door, Mode, NOREPLICAS, Outcome,
    Transaction, error_code,
};
use shoal_proto::Protocol;
use shoal_proto::command_table::flags;
use shoal_proto::reply::{Value, encode_value};

use crate::cluster::{FORWARDER_NAME, Route, counters};
use crate::commands::{Ctx, Handler, Waiting, handler};
use crate::conn::NodeConn;
use crate::replication::primary::PsyncRequest;
use crate::replication::{ReplicaAddress, Role, serve_replica};
use crate::shared::Shared;
use crate::transaction::WATCH_FORWARDED;

/// A cluster node's answer while its replica is still taking its first copy of the data.
pub(crate) const LOADING: &str = "LOADING Redis is loading the dataset in memory";

/// The longest a write waits for its slot's hand-over before it is answered `-TRYAGAIN`.
const HAND_OVER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What the node's checks decided about a command.
pub(crate) enum Check {
    /// Run it here.
    Pass,
    /// Its slot is another node's, and this node forwards (`--routing forward`).
    Forward(String),
    /// Not now: refused, or to wait first.
    Stop(Outcome<Shared>),
}

impl Backend for Shared {
    type Conn = NodeConn;
    type Reply = Value;
    type HandOff = PsyncRequest;

    fn door(&self) -> &Arc<Door> {
        &self.door
    }

    fn new_conn(&self) -> NodeConn {
        NodeConn::default()
    }

    fn call(self: &Arc<Self>, call: Call<'_, Self>) -> Outcome<Self> {
        self.run(call)
    }

    fn write_reply(&self, reply: Value, protocol: Protocol, out: &mut Vec<u8>) -> Option<String> {
        encode_value(&reply, protocol, out);
        match reply {
            Value::Error(line) | Value::BulkError(line) => Some(error_code(&line)),
            _ => None,
        }
    }

    /// `cluster` on a node of a cluster, as Redis with `cluster-enabled yes`.
    fn mode(&self) -> Mode {
        if self.cluster.is_some() {
            Mode::Cluster
        } else {
            Mode::Standalone
        }
    }

    /// The store's journal reports every change to the door's tracking ([`crate::changes`]).
    fn tracks_keys(&self) -> bool {
        true
    }

    fn role(&self) -> shoal_frontdoor::Role {
        if self.replication.is_replica() {
            shoal_frontdoor::Role::Replica
        } else {
            shoal_frontdoor::Role::Master
        }
    }

    #[inline]
    fn prefetch(&self, next_key: &[u8]) {
        self.store.prefetch(next_key);
    }

    fn admit(self: &Arc<Self>, call: Call<'_, Self>) -> Admission {
        self.admit_queued(call)
    }

    fn exec(self: &Arc<Self>, transaction: Transaction<'_, Self>) -> Outcome<Self> {
        self.exec_transaction(transaction)
    }

    fn unwatch(&self, state: &mut NodeConn) {
        state.watching = None;
    }

    fn reset(&self, state: &mut NodeConn) {
        state.readonly = false;
        state.forwarded = false;
    }

    fn named(&self, state: &mut NodeConn, name: &[u8]) {
        state.forwarded = name == FORWARDER_NAME.as_bytes();
    }

    fn users_changed(&self, names: &[Vec<u8>]) {
        if let Some(cluster) = &self.cluster {
            cluster.record_users(&self.door, names);
        }
    }

    fn hand_off<'a>(
        self: &'a Arc<Self>,
        stream: &'a mut shoal_frontdoor::Stream,
        conn: &'a Conn,
        state: &'a mut NodeConn,
        request: PsyncRequest,
    ) -> BoxFuture<'a, io::Result<()>> {
        if let Some(import) = state.import.take() {
            return Box::pin(crate::migration::source::serve_import(self, stream, import));
        }
        let replica = ReplicaAddress {
            client_id: conn.info.id,
            ip: state
                .replica_ip
                .clone()
                .unwrap_or_else(|| conn.info.addr.ip().to_canonical().to_string()),
            port: state.replica_port.unwrap_or(conn.info.addr.port()),
        };
        Box::pin(serve_replica(
            &self.replication,
            &self.store,
            &self.functions,
            stream,
            request,
            replica,
        ))
    }
}

impl Shared {
    /// Runs one command after the front door's checks.
    fn run(self: &Arc<Self>, mut call: Call<'_, Self>) -> Outcome<Self> {
        if let Some(cluster) = &self.cluster
            && is_counter_command(call.command.spec.name)
        {
            // Its parts span slots: served through the forwarder, or refused (see
            // `crate::cluster::counters`).
            let name = call.command.spec.name;
            if !cluster.serves_counters(call.state) {
                return Outcome::Refused(counters::refusal(name));
            }
            call.start_clock();
            let args: Vec<&[u8]> = call.argv.iter().collect();
            return match CounterCommand::parse(&args) {
                Ok(command) => Outcome::Later {
                    reply: cluster.run_counter(command),
                    barrier: true,
                },
                Err(e) => Outcome::Failed(CommandError::Other(e.line().into())),
            };
        }
        if let Some(cluster) = &self.cluster
            && let Some(which) = cluster.cluster_wide(call.command.spec.name, call.state)
        {
            // A plain client of a forwarding node sees the whole cluster's keyspace.
            let cluster = cluster.clone();
            let args = call.owned_args();
            call.start_clock();
            return Outcome::Later {
                reply: Box::pin(async move { cluster.run_cluster_wide(which, args).await }),
                barrier: true,
            };
        }
        match self.check(&mut call) {
            Check::Pass => {}
            Check::Stop(outcome) => return outcome,
            // A watch must stay on the connection that runs the transaction: not forwarded.
            Check::Forward(_) if call.command.spec.name == "watch" => {
                return Outcome::Refused(CommandError::fixed(WATCH_FORWARDED));
            }
            Check::Forward(addr) => {
                let cluster = self.cluster.clone().expect("only a cluster node forwards");
                let args: Vec<Vec<u8>> = call.argv.iter().map(<[u8]>::to_vec).collect();
                return Outcome::Later {
                    reply: Box::pin(async move { cluster.forward(&addr, &args).await }),
                    barrier: true,
                };
            }
        }
        let Some(handler) = handler(call.command.id) else {
            return Outcome::Refused(CommandError::WrongArity(call.command.spec.name));
        };
        call.start_clock();
        let argv = call.argv;
        let mut ctx = Ctx {
            shared: self,
            conn: call.conn,
            client: call.state,
            out: call.out,
        };
        let result = match handler {
            Handler::Now(run) => run(&mut ctx, argv).map(|()| None),
            Handler::MayWait(run) => run(&mut ctx, argv),
        };
        if std::mem::take(&mut ctx.client.wait_for_script) {
            let shared = self.clone();
            return Outcome::Retry(Box::pin(async move { shared.door.busy.idle().await }));
        }
        if call.command.spec.has(flags::WRITE) && self.replication.recording() {
            ctx.client.write_offset = self.replication.offset();
        }
        match result {
            Ok(None) => Outcome::Ran,
            Ok(Some(waiting)) => self.wait_for(waiting, ctx.client),
            Err(error) => Outcome::Failed(error),
        }
    }

    /// The node's checks of a command, after the front door's, in Redis 7's order: cluster
    /// routing, loading, paused writes, `min-replicas-to-write`, memory, key size. Made for
    /// a command about to run, and for one about to be queued in a transaction.
    pub(crate) fn check(self: &Arc<Self>, call: &mut Call<'_, Self>) -> Check {
        let spec = call.command.spec;
        let argv = call.argv;
        // A retried command waited already: routing does not make it wait again.
        let retried = std::mem::take(&mut call.state.map_awaited);
        if self.cluster.is_some()
            && spec.first_key == 0
            && spec.has(flags::WRITE)
            && let Some(error) = self.keyless_write_refusal()
        {
            return Check::Stop(Outcome::Refused(error));
        }
        if let Some(cluster) = &self.cluster
            && (spec.first_key > 0 || spec.declares_keys())
        {
            let route = cluster.route(spec, argv, call.state, retried);
            match self.settle_route(cluster, route, call.state) {
                Ok(None) => {}
                Ok(Some(addr)) => return Check::Forward(addr),
                Err(stop) => return Check::Stop(stop),
            }
        }
        if let Some(refusal) = self.state_refusal(call.state, spec.flags) {
            return Check::Stop(refusal);
        }
        if spec.has(flags::WRITE) {
            let max = self.live.max_key_size();
            if spec.key_positions_in(argv).any(|i| argv.get(i).len() > max) {
                return Check::Stop(Outcome::Refused(CommandError::Other(
                    format!("ERR key is too large (max-key-size is {max} bytes)").into(),
                )));
            }
        }
        Check::Pass
    }

    /// Whether this replica heard from its primary within `replica-read-max-staleness` (or
    /// has no such bound), so its data may serve a `READONLY` read.
    pub(crate) fn replica_fresh(&self) -> bool {
        let bound = self.live.replica_read_max_staleness();
        bound.is_zero() || self.replication.heard_within(bound)
    }

    /// What the node's own state makes of a routing decision, for a command or a
    /// transaction: `Ok(None)` runs it here, `Ok(Some(addr))` forwards it there, `Err` answers
    /// or waits instead (a replica still loading or too stale, a refusal, a map or a hand-over
    /// to wait for).
    pub(crate) fn settle_route(
        &self,
        cluster: &crate::cluster::ClusterState,
        route: Route,
        state: &mut NodeConn,
    ) -> Result<Option<String>, Outcome<Self>> {
        match route {
            Route::Local | Route::ReplicaRead(_) if !self.replication.data_ready() => {
                Err(Outcome::Refused(CommandError::fixed(LOADING)))
            }
            Route::ReplicaRead(slot) if !self.replica_fresh() => {
                Err(Outcome::Refused(cluster.stale_replica_read(slot)))
            }
            Route::Local | Route::ReplicaRead(_) => Ok(None),
            Route::Reject(error) => Err(Outcome::Refused(error)),
            Route::AwaitMap => Err(self.await_map(state)),
            Route::AwaitHandOver(slot) => Err(self.await_hand_over(state, slot)),
            Route::Forward(addr) => Ok(Some(addr)),
        }
    }

    /// Waits until the hand-over of `slot` ends (at most [`HAND_OVER_WAIT`]), then runs the
    /// command again: on the new map it is redirected to the slot's new owner.
    pub(crate) fn await_hand_over(&self, state: &mut NodeConn, slot: u16) -> Outcome<Self> {
        state.map_awaited = true;
        let cluster = self
            .cluster
            .clone()
            .expect("only a cluster node hands slots over");
        Outcome::Retry(Box::pin(async move {
            cluster.gate.wait(slot, HAND_OVER_WAIT).await;
        }))
    }

    /// Waits for the newest cluster map, then runs the command again.
    pub(crate) fn await_map(&self, state: &mut NodeConn) -> Outcome<Self> {
        state.map_awaited = true;
        let cluster = self.cluster.clone().expect("only a cluster node routes");
        Outcome::Retry(Box::pin(async move {
            cluster.await_current_map().await;
        }))
    }

    /// The checks of the node's state for a command (or a transaction) with `flags`: writes
    /// paused for a failover, too few replicas, memory.
    pub(crate) fn state_refusal(&self, state: &mut NodeConn, flags: u32) -> Option<Outcome<Self>> {
        if flags & flags::WRITE != 0 {
            if self.replication.writes_paused() {
                state.map_awaited = true;
                let replication = self.replication.clone();
                return Some(Outcome::Retry(Box::pin(async move {
                    replication.await_unpause().await;
                })));
            }
            if self.too_few_good_replicas() {
                return Some(Outcome::Refused(CommandError::fixed(NOREPLICAS)));
            }
        }
        if flags & flags::DENYOOM != 0 && self.store.make_room().is_err() {
            return Some(Outcome::Refused(CommandError::OutOfMemory));
        }
        None
    }

    /// What a handler waits for, as the front door's outcome.
    fn wait_for(self: &Arc<Self>, waiting: Waiting, client: &NodeConn) -> Outcome<Self> {
        match waiting {
            Waiting::Acks { replicas, timeout } => {
                let replication = self.replication.clone();
                let offset = client.write_offset;
                Outcome::Later {
                    reply: Box::pin(async move {
                        let acked = replication.wait_for_acks(offset, replicas, timeout).await;
                        Value::Int(acked as i64)
                    }),
                    barrier: true,
                }
            }
            Waiting::Replicate(request) => Outcome::HandOff(request),
            Waiting::Failover { force } => {
                self.cluster_operation(move |shared, cluster| async move {
                    cluster.planned_failover(&shared.replication, force).await
                })
            }
            Waiting::MoveSlots(groups) => {
                self.cluster_operation(
                    move |_, cluster| async move { cluster.move_slots(groups).await },
                )
            }
        }
    }

    /// A cluster operation (`CLUSTER FAILOVER`, `CLUSTER MIGRATESLOTS`) run after the
    /// command's turn: answered `+OK`, or with the error line `run` gives.
    fn cluster_operation<F, Fut>(self: &Arc<Self>, run: F) -> Outcome<Self>
    where
        F: FnOnce(Arc<Self>, Arc<crate::cluster::ClusterState>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let shared = self.clone();
        Outcome::Later {
            reply: Box::pin(async move {
                let outcome = match shared.cluster.clone() {
                    Some(cluster) => run(shared, cluster).await,
                    None => Err("ERR This instance has cluster support disabled".into()),
                };
                match outcome {
                    Ok(()) => Value::Simple(b"OK".to_vec()),
                    Err(line) => Value::Error(line.into_bytes()),
                }
            }),
            barrier: true,
        }
    }

    /// Why a keyless write (`FLUSHALL`, `FLUSHDB`) may not run on this cluster node: a replica
    /// takes its changes from its primary only (Redis's `-READONLY`), and a fenced primary (see
    /// `Replication::fenced`) changes nothing.
    pub(crate) fn keyless_write_refusal(&self) -> Option<CommandError> {
        if matches!(self.replication.role(), Role::Replica(_)) {
            return Some(CommandError::fixed(
                "READONLY You can't write against a read only replica.",
            ));
        }
        if self.replication.fenced() {
            return Some(CommandError::fixed(CLUSTER_DOWN));
        }
        None
    }
}
