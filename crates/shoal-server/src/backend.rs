//! The node behind the front door: the checks a command passes after the front door's (in
//! Redis 7's order: cluster routing, loading, paused writes, `min-replicas-to-write`, memory,
//! key size), then its handler on the store, and what a handler waits for turned into a reply
//! that comes later or a connection handed over to replication.

use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shoal_frontdoor::{
    Backend, CLUSTER_DOWN, Call, CommandError, Conn, Door, Mode, NOREPLICAS, Outcome, error_code,
};
use shoal_proto::Protocol;
use shoal_proto::command_table::flags;
use shoal_proto::reply::{Value, encode_value};

use crate::cluster::{FORWARDER_NAME, Route};
use crate::commands::{Ctx, Handler, Waiting, handler};
use crate::conn::NodeConn;
use crate::replication::primary::PsyncRequest;
use crate::replication::{ReplicaAddress, Role, serve_replica};
use crate::shared::Shared;

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
            stream,
            request,
            replica,
        ))
    }
}

impl Shared {
    /// Runs one command after the front door's checks.
    fn run(self: &Arc<Self>, mut call: Call<'_, Self>) -> Outcome<Self> {
        let spec = call.command.spec;
        let argv = call.argv;
        // A retried command waited already: routing does not make it wait again.
        let retried = std::mem::take(&mut call.state.map_awaited);
        if self.cluster.is_some()
            && spec.first_key == 0
            && spec.has(flags::WRITE)
            && let Some(error) = self.keyless_write_refusal()
        {
            return Outcome::Refused(error);
        }
        if let Some(cluster) = &self.cluster
            && spec.first_key > 0
        {
            match cluster.route(spec, argv, call.state, retried) {
                Route::Local if !self.replication.data_ready() => {
                    return Outcome::Refused(CommandError::fixed(
                        "LOADING Redis is loading the dataset in memory",
                    ));
                }
                Route::Local => {}
                Route::Reject(error) => return Outcome::Refused(error),
                Route::AwaitMap => {
                    call.state.map_awaited = true;
                    let cluster = cluster.clone();
                    return Outcome::Retry(Box::pin(async move {
                        cluster.await_current_map().await;
                    }));
                }
                Route::Forward(addr) => {
                    let cluster = cluster.clone();
                    let args: Vec<Vec<u8>> = argv.iter().map(<[u8]>::to_vec).collect();
                    return Outcome::Later {
                        reply: Box::pin(async move { cluster.forward(&addr, &args).await }),
                        barrier: true,
                    };
                }
            }
        }
        if spec.has(flags::WRITE) {
            if self.replication.writes_paused() {
                call.state.map_awaited = true;
                let replication = self.replication.clone();
                return Outcome::Retry(Box::pin(async move {
                    replication.await_unpause().await;
                }));
            }
            if self.too_few_good_replicas() {
                return Outcome::Refused(CommandError::fixed(NOREPLICAS));
            }
        }
        if spec.has(flags::DENYOOM) && self.store.make_room().is_err() {
            return Outcome::Refused(CommandError::OutOfMemory);
        }
        if spec.has(flags::WRITE) {
            let max = self.live.max_key_size();
            if spec
                .key_positions(argv.len())
                .any(|i| argv.get(i).len() > max)
            {
                return Outcome::Refused(CommandError::Other(
                    format!("ERR key is too large (max-key-size is {max} bytes)").into(),
                ));
            }
        }
        let Some(handler) = handler(call.command.id) else {
            return Outcome::Refused(CommandError::WrongArity(spec.name));
        };
        call.start_clock();
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
        if spec.has(flags::WRITE) && self.replication.recording() {
            ctx.client.write_offset = self.replication.offset();
        }
        match result {
            Ok(None) => Outcome::Ran,
            Ok(Some(waiting)) => self.wait_for(waiting, ctx.client),
            Err(error) => Outcome::Failed(error),
        }
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
                let shared = self.clone();
                Outcome::Later {
                    reply: Box::pin(async move {
                        let outcome = match &shared.cluster {
                            Some(cluster) => {
                                cluster.planned_failover(&shared.replication, force).await
                            }
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
        }
    }

    /// Why a keyless write (`FLUSHALL`, `FLUSHDB`) may not run on this cluster node: a replica
    /// takes its changes from its primary only (Redis's `-READONLY`), and a fenced primary (see
    /// `Replication::fenced`) changes nothing.
    fn keyless_write_refusal(&self) -> Option<CommandError> {
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
