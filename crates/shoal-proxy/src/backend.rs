//! The proxy behind the front door: where each command that passed the front door's checks
//! goes.
//!
//! * `CLUSTER ...`, `READONLY`, `READWRITE`, `ASKING`: `-ERR This instance has cluster
//!   support disabled` (the proxy hides the cluster);
//! * `SHUTDOWN` is refused (it would stop whichever node it reached);
//! * `INFO`, `DBSIZE`, `KEYS`, `SCAN`, `FLUSHALL`, `FLUSHDB`, `RANDOMKEY`, `CONFIG SET`,
//!   `CONFIG RESETSTAT`, `SLOWLOG RESET` and `SCRIPT LOAD|EXISTS|FLUSH|KILL` ask several nodes ([`shoal_client::ClusterWide`]);
//! * `WATCH`, `UNWATCH` and `EXEC` keep or use the client connection's own connection to a
//!   node ([`crate::transaction`]), which also checks the commands queued in a transaction;
//! * `COUNTER.INCRBY`, `COUNTER.GET` and `COUNTER.DEL` (sharded counters, whose parts span
//!   slots) run through the client's counters ([`CounterCommand`]);
//! * everything else goes to [`Client::command`](shoal_client::Client::command), which routes
//!   by key and splits `MGET`, `MSET`, `DEL`, `EXISTS`, `UNLINK` and `TOUCH` by slot.
//!
//! Replies from the cluster come later and without a barrier: the next commands of the
//! connection start meanwhile, and the client's one pipelined connection per node keeps them
//! in order on each node.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use shoal_frontdoor::{Admission, Backend, Call, CommandError, Conn, Door, Outcome, Transaction};
use shoal_proto::Protocol;
use shoal_proto::reply::encode_value;

use crate::commands::info;
use crate::shared::Shared;
use crate::stats::ProxyStats;
use crate::transaction::{self, ProxyConn};
use crate::upstream::{Reply, encode_reply};
use shoal_client::ClusterWide;
use shoal_client::counter::{CounterCommand, is_counter_command};

/// Where the proxy sends a command that passed the front door's checks.
pub(crate) enum Upstream {
    /// Answered by the proxy, with what it asks every primary (`INFO`).
    Info,
    /// Answered for the whole cluster (`DBSIZE`, `KEYS`, `SCAN`, `FLUSHALL`, ...).
    ClusterWide(ClusterWide),
    /// `WATCH`: on the client connection's own connection ([`crate::transaction`]).
    Watch,
    /// `UNWATCH`: closes that connection.
    Unwatch,
    /// A sharded counter's command (`COUNTER.INCRBY`, `COUNTER.GET`, `COUNTER.DEL`): on its
    /// parts, wherever they are ([`CounterCommand::run`]).
    Counter,
    /// To the owner of its keys ([`Client::command`](shoal_client::Client::command)).
    Routed,
}

/// Where `name` (a command's or subcommand's) goes.
pub(crate) fn upstream(name: &str) -> Upstream {
    match name {
        "info" => Upstream::Info,
        "watch" => Upstream::Watch,
        "unwatch" => Upstream::Unwatch,
        name if is_counter_command(name) => Upstream::Counter,
        name => ClusterWide::of(name).map_or(Upstream::Routed, Upstream::ClusterWide),
    }
}

impl Backend for Shared {
    type Conn = ProxyConn;
    type Reply = Reply;
    type HandOff = Infallible;
    const OWNED_ARGS: bool = true;

    fn door(&self) -> &Arc<Door> {
        &self.door
    }

    fn new_conn(&self) -> ProxyConn {
        ProxyConn::default()
    }

    fn call(self: &Arc<Self>, mut call: Call<'_, Self>) -> Outcome<Self> {
        call.start_clock();
        let name = call.command.spec.name;
        if let Some(line) = refusal(name) {
            return Outcome::Failed(CommandError::fixed(line));
        }
        if let Some(value) = near_cache_hit(&self.client, &call) {
            encode_value(&value, call.conn.protocol, call.out);
            return Outcome::Ran;
        }
        let client = self.client.clone();
        let upstream = upstream(name);
        let args = call.owned_args();
        let reply: BoxFuture<'static, Reply> = match upstream {
            Upstream::Info => info::info(self.clone(), args),
            Upstream::ClusterWide(which) => {
                Box::pin(async move { client.cluster_wide(which, args).await })
            }
            Upstream::Watch => return transaction::watch(self, call),
            Upstream::Unwatch => return transaction::unwatch(call),
            Upstream::Counter => match CounterCommand::parse(&args) {
                Ok(command) => Box::pin(async move { command.run(&client).await }),
                Err(e) => return Outcome::Failed(CommandError::Other(e.line().into())),
            },
            Upstream::Routed => Box::pin(async move { client.command(&args).await }),
        };
        Outcome::Later {
            reply,
            barrier: false,
        }
    }

    fn admit(self: &Arc<Self>, call: Call<'_, Self>) -> Admission {
        transaction::admit(&call)
    }

    fn exec(self: &Arc<Self>, transaction: Transaction<'_, Self>) -> Outcome<Self> {
        transaction::exec(self, transaction)
    }

    fn unwatch(&self, state: &mut ProxyConn) {
        state.unwatch();
    }

    fn reset(&self, state: &mut ProxyConn) {
        state.unwatch();
    }

    fn write_reply(&self, reply: Reply, protocol: Protocol, out: &mut Vec<u8>) -> Option<String> {
        let encoded = encode_reply(&reply, protocol, out);
        if encoded.by_proxy {
            ProxyStats::add(&self.stats.proxy_errors, 1);
        }
        encoded.error_code
    }

    fn hand_off<'a>(
        self: &'a Arc<Self>,
        _stream: &'a mut shoal_frontdoor::Stream,
        _conn: &'a Conn,
        _state: &'a mut ProxyConn,
        how: Infallible,
    ) -> BoxFuture<'a, io::Result<()>> {
        match how {}
    }
}

/// The near cache's reply to `call`, if the proxy keeps a near cache and it holds one: written
/// at once, with no task and no copy of the arguments.
#[inline]
fn near_cache_hit(
    client: &shoal_client::Client,
    call: &Call<'_, Shared>,
) -> Option<shoal_client::Value> {
    /// Arguments of the longest command looked up (`HMGET` of a few fields).
    const MAX_ARGS: usize = 8;
    let argv = call.argv;
    if argv.len() > MAX_ARGS || !client.has_near_cache() {
        return None;
    }
    let mut args: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
    for (slot, arg) in args.iter_mut().zip(argv.iter()) {
        *slot = arg;
    }
    client.cached(call.command.spec, &args[..argv.len()])
}

/// The error line of a command the proxy refuses.
pub(crate) fn refusal(name: &str) -> Option<&'static str> {
    const NO_CLUSTER: &str = "ERR This instance has cluster support disabled";
    match name {
        "asking" | "readonly" | "readwrite" => Some(NO_CLUSTER),
        name if name.starts_with("cluster|") => Some(NO_CLUSTER),
        name if name.starts_with("hotkeys|") => {
            Some("ERR proxy: HOTKEYS is per node; send it to each node")
        }
        "shutdown" => {
            Some("ERR proxy: SHUTDOWN is not served through the proxy; stop the nodes themselves")
        }
        _ => None,
    }
}
