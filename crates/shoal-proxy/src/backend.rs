//! The proxy behind the front door: where each command that passed the front door's checks
//! goes.
//!
//! * `CLUSTER ...`, `READONLY`, `READWRITE`, `ASKING`: `-ERR This instance has cluster
//!   support disabled` (the proxy hides the cluster);
//! * `SHUTDOWN` is refused (it would stop whichever node it reached);
//! * `INFO`, `DBSIZE`, `KEYS`, `SCAN`, `FLUSHALL`, `FLUSHDB`, `RANDOMKEY`, `CONFIG SET`,
//!   `CONFIG RESETSTAT` and `SLOWLOG RESET` ask several nodes ([`crate::commands::fanout`]);
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
use shoal_frontdoor::{Backend, Call, CommandError, Conn, Door, Outcome, Transaction};
use shoal_proto::Protocol;

use crate::commands::fanout::{self, Nodes};
use crate::commands::info;
use crate::shared::Shared;
use crate::stats::ProxyStats;
use crate::upstream::{Reply, encode_reply};

impl Backend for Shared {
    type Conn = ();
    type Reply = Reply;
    type HandOff = Infallible;
    const OWNED_ARGS: bool = true;

    fn door(&self) -> &Arc<Door> {
        &self.door
    }

    fn new_conn(&self) {}

    fn call(self: &Arc<Self>, mut call: Call<'_, Self>) -> Outcome<Self> {
        call.start_clock();
        let name = call.command.spec.name;
        if let Some(line) = refusal(name) {
            return Outcome::Failed(CommandError::fixed(line));
        }
        let client = self.client.clone();
        let args = call.owned_args();
        let reply: BoxFuture<'static, Reply> = match name {
            "info" => info::info(self.clone(), args),
            "dbsize" => fanout::dbsize(client, args),
            "keys" => fanout::keys(client, args),
            "scan" => fanout::scan(client, args),
            "randomkey" => fanout::randomkey(client, args),
            "flushall" | "flushdb" => fanout::all_ok(client, args, Nodes::Primaries),
            "config|set" | "config|resetstat" | "slowlog|reset" => {
                fanout::all_ok(client, args, Nodes::All)
            }
            _ => Box::pin(async move { client.command(&args).await }),
        };
        Outcome::Later {
            reply,
            barrier: false,
        }
    }

    fn exec(self: &Arc<Self>, _transaction: Transaction<'_, Self>) -> Outcome<Self> {
        Outcome::Failed(CommandError::fixed(
            "ERR proxy: transactions are not served through the proxy yet; send MULTI/EXEC to the keys' node",
        ))
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
        _state: &'a mut (),
        how: Infallible,
    ) -> BoxFuture<'a, io::Result<()>> {
        match how {}
    }
}

/// The error line of a command the proxy refuses.
fn refusal(name: &str) -> Option<&'static str> {
    const NO_CLUSTER: &str = "ERR This instance has cluster support disabled";
    match name {
        "asking" | "readonly" | "readwrite" => Some(NO_CLUSTER),
        name if name.starts_with("cluster|") => Some(NO_CLUSTER),
        "shutdown" => {
            Some("ERR proxy: SHUTDOWN is not served through the proxy; stop the nodes themselves")
        }
        _ => None,
    }
}
