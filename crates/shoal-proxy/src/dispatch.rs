//! Where each command goes, checked in the order Redis 7 checks: unknown command, unknown
//! subcommand, arity, authentication. Then:
//!
//! * connection commands run here, at once and in order, since later commands of the same
//!   batch depend on them (`HELLO 3` changes how the next reply is encoded);
//! * `CLUSTER ...`, `READONLY`, `READWRITE`, `ASKING`: `-ERR This instance has cluster support
//!   disabled` (the proxy hides the cluster);
//! * `INFO`, `DBSIZE`, `KEYS`, `SCAN`, `FLUSHALL`, `FLUSHDB`, `RANDOMKEY`, `CONFIG SET`,
//!   `CONFIG RESETSTAT` and `SLOWLOG RESET` ask several nodes ([`crate::commands::fanout`]);
//! * `SHUTDOWN` is refused (it would stop whichever node it reached);
//! * everything else, unknown commands included (a node answers those with Redis's error),
//!   goes to [`Client::command`](shoal_client::Client::command), which routes by key and
//!   splits `MGET`, `MSET`, `DEL`, `EXISTS`, `UNLINK` and `TOUCH` by slot.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use shoal_proto::command_table::{self, CommandSpec, flags};

use crate::args::{ErrorLine, truncated_arg};
use crate::commands::fanout::{self, Nodes};
use crate::commands::{ConnState, Handler, Local, connection, info};
use crate::shared::Shared;
use crate::stats::ProxyStats;
use crate::upstream::Outcome;

/// Containers whose subcommands the proxy answers itself (an unknown one is an error here).
const LOCAL_CONTAINERS: &[&str] = &["client", "cluster"];

/// Where a command's reply comes from.
pub(crate) enum Dispatched {
    /// It is written already.
    Local,
    /// This future gives it.
    Remote(BoxFuture<'static, Outcome>),
}

/// Runs or starts one command. A local reply (or error) is appended to `out`.
pub(crate) fn dispatch(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    args: Vec<Bytes>,
    out: &mut Vec<u8>,
) -> Dispatched {
    match check(conn, &args) {
        Ok(spec) => {
            conn.info.touch(spec.map_or("NULL", |s| s.name));
            route(shared, conn, spec, args, out)
        }
        Err(error) => {
            reject(shared, &error, out);
            Dispatched::Local
        }
    }
}

/// The command's spec (`None` for a command unknown here), or why it is refused.
fn check(conn: &ConnState, args: &[Bytes]) -> Result<Option<&'static CommandSpec>, ErrorLine> {
    let Some(top) = command_table::lookup(&args[0]) else {
        return Ok(None);
    };
    let mut spec = top;
    if !top.subcommands.is_empty() && args.len() >= 2 {
        match top.subcommand(&args[1]) {
            Some(sub) => spec = sub,
            None if LOCAL_CONTAINERS.contains(&top.name) => {
                let mut line = b"ERR unknown subcommand '".to_vec();
                line.extend_from_slice(truncated_arg(&args[1]));
                line.extend_from_slice(
                    format!("'. Try {} HELP.", top.name.to_ascii_uppercase()).as_bytes(),
                );
                return Err(ErrorLine(line));
            }
            // A node answers it (with the same error, or with what it knows more).
            None => return Ok(None),
        }
    }
    if !spec.arity_ok(args.len()) {
        return Err(ErrorLine::wrong_arity(spec.name));
    }
    if !conn.authenticated && !spec.has(flags::NO_AUTH) {
        return Err(ErrorLine::fixed("NOAUTH Authentication required."));
    }
    Ok(Some(spec))
}

fn reject(shared: &Shared, error: &ErrorLine, out: &mut Vec<u8>) {
    ProxyStats::add(&shared.stats.error_replies, 1);
    error.write(out);
}

/// The handler of a command the proxy answers itself.
fn local_handler(name: &str) -> Option<Handler> {
    let handler: Handler = match name {
        "ping" => connection::ping,
        "echo" => connection::echo,
        "quit" => connection::quit,
        "reset" => connection::reset,
        "select" => connection::select,
        "auth" => connection::auth,
        "hello" => connection::hello,
        "client|id" => connection::client_id,
        "client|setname" => connection::client_setname,
        "client|getname" => connection::client_getname,
        "client|list" => connection::client_list,
        "client|info" => connection::client_info,
        "client|kill" => connection::client_kill,
        _ => return None,
    };
    Some(handler)
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

fn route(
    shared: &Arc<Shared>,
    conn: &mut ConnState,
    spec: Option<&'static CommandSpec>,
    args: Vec<Bytes>,
    out: &mut Vec<u8>,
) -> Dispatched {
    let client = shared.client.clone();
    let Some(spec) = spec else {
        return forward(client, args);
    };
    if let Some(handler) = local_handler(spec.name) {
        let mut ctx = Local { shared, conn, out };
        if let Err(error) = handler(&mut ctx, &args) {
            reject(shared, &error, out);
        }
        return Dispatched::Local;
    }
    if let Some(line) = refusal(spec.name) {
        reject(shared, &ErrorLine::fixed(line), out);
        return Dispatched::Local;
    }
    if spec.name == "client|help" {
        if let Some(container) = command_table::lookup(b"client") {
            connection::help(&mut Local { shared, conn, out }, container);
        }
        return Dispatched::Local;
    }
    let fanned = match spec.name {
        "info" => info::info(shared.clone(), args),
        "dbsize" => fanout::dbsize(client, args),
        "keys" => fanout::keys(client, args),
        "scan" => fanout::scan(client, args),
        "randomkey" => fanout::randomkey(client, args),
        "flushall" | "flushdb" => fanout::all_ok(client, args, Nodes::Primaries),
        "config|set" | "config|resetstat" | "slowlog|reset" => {
            fanout::all_ok(client, args, Nodes::All)
        }
        _ => return forward(client, args),
    };
    Dispatched::Remote(fanned)
}

/// Sends the command through the client, routed by its keys.
fn forward(client: shoal_client::Client, args: Vec<Bytes>) -> Dispatched {
    Dispatched::Remote(Box::pin(async move { client.command(&args).await }))
}
