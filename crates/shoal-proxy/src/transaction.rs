//! Transactions through the proxy (`MULTI` ... `EXEC`, `WATCH`, `UNWATCH`).
//!
//! The front door keeps the queue, as on a node. Each command is checked as it is queued: one
//! the proxy answers itself, or over several nodes, or that acts on the connection to the
//! proxy (all but `PING` and `ECHO`) is refused, and so is one whose keys span slots
//! (`-CROSSSLOT`); a refusal makes `EXEC` answer `-EXECABORT`, as Redis does. At `EXEC` the
//! whole transaction goes to the primary of its slot through
//! [`Client::transaction`](shoal_client::Client::transaction) (keys of the whole in several
//! slots: `-CROSSSLOT`, and it is dropped), and `EXEC`'s reply comes back.
//!
//! `WATCH` opens a connection of the client connection's own to the keys' primary
//! ([`Client::watch`](shoal_client::Client::watch)), held until the transaction ends (`EXEC`,
//! `DISCARD`, `UNWATCH`, `RESET`, or the client leaving): its `EXEC` runs on that connection,
//! so a change of a watched key makes it answer a null. Watched keys and the transaction's
//! keys must share one slot (`-CROSSSLOT`).

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use shoal_client::{Error, Value, Watched, command_slot};
use shoal_frontdoor::{Admission, Call, CommandError, Outcome, Transaction};

use crate::backend::{Upstream, refusal, upstream};
use crate::shared::Shared;
use crate::upstream::error_line;

/// The proxy's state of one client connection.
#[derive(Debug, Default)]
pub struct ProxyConn {
    /// The connection holding this client's `WATCH`, once it watches.
    watched: Option<WatchCell>,
}

/// Where a `WATCH`'s connection is kept: the `WATCH` reply's future puts it here, `EXEC`
/// takes it (the barrier on `WATCH` orders them).
type WatchCell = Arc<Mutex<Option<Watched>>>;

impl ProxyConn {
    /// Forgets the watch: its connection closes, and the node forgets the watched keys.
    pub(crate) fn unwatch(&mut self) {
        self.watched = None;
    }

    /// The connection holding the watch, if there is one.
    fn take_watched(&mut self) -> Option<Watched> {
        self.watched.take().and_then(|cell| locked(&cell).take())
    }
}

fn locked(cell: &WatchCell) -> MutexGuard<'_, Option<Watched>> {
    cell.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decides about a command about to be queued (see the module's docs).
pub(crate) fn admit(call: &Call<'_, Shared>) -> Admission {
    let name = call.command.spec.name;
    if let Some(line) = refusal(name) {
        return Admission::Refuse(CommandError::fixed(line));
    }
    let shown = || name.replace('|', " ").to_ascii_uppercase();
    if call.command.is_connection() && !matches!(name, "ping" | "echo") {
        return Admission::Refuse(CommandError::Other(
            format!(
                "ERR proxy: {} cannot be queued in a transaction: it acts on the connection to \
                 the proxy, and the transaction runs on a node",
                shown()
            )
            .into(),
        ));
    }
    if !matches!(upstream(name), Upstream::Routed | Upstream::Unwatch) {
        return Admission::Refuse(CommandError::Other(
            format!(
                "ERR proxy: {} cannot be queued in a transaction: it covers the whole cluster, \
                 and a transaction runs on one node",
                shown()
            )
            .into(),
        ));
    }
    let args: Vec<&[u8]> = call.argv.iter().collect();
    match command_slot(&args) {
        Ok(_) => Admission::Queue,
        Err(err) => Admission::Refuse(error_line(&err)),
    }
}

/// `EXEC`: the whole transaction to its slot's primary, on the watch's connection if the
/// client watches. Permissions are checked again first, as Redis does at `EXEC`: a command
/// the user may no longer run is not sent, and its refusal takes its place in the reply.
pub(crate) fn exec(shared: &Arc<Shared>, transaction: Transaction<'_, Shared>) -> Outcome<Shared> {
    let relayed = transaction.relay();
    match transaction.state.take_watched() {
        // Later commands go on the shared connections as the transaction did: in order.
        None => {
            let client = shared.client.clone();
            Outcome::Later {
                reply: Box::pin(async move {
                    let reply = client.transaction(&relayed.commands).await?;
                    Ok(relayed.reply(reply))
                }),
                barrier: false,
            }
        }
        // On a connection of its own: later commands wait for it.
        Some(watched) => Outcome::Later {
            reply: Box::pin(async move {
                let reply = watched.exec(&relayed.commands).await?;
                Ok(relayed.reply(reply))
            }),
            barrier: true,
        },
    }
}

/// `WATCH key...`: on the client connection's watch connection, opened to the keys' primary
/// by the first one. Later commands wait for it.
pub(crate) fn watch(shared: &Arc<Shared>, call: Call<'_, Shared>) -> Outcome<Shared> {
    if call.conn.in_multi() {
        return Outcome::Failed(CommandError::fixed("ERR WATCH inside MULTI is not allowed"));
    }
    let keys: Vec<Bytes> = call.owned_args().split_off(1);
    let cell = call
        .state
        .watched
        .get_or_insert_with(WatchCell::default)
        .clone();
    let client = shared.client.clone();
    let reply = async move {
        let held = locked(&cell).take();
        let watched = match held {
            None => client.watch(&keys).await?,
            Some(mut watched) => {
                let added = watched.watch(&keys).await;
                // Kept even if that failed: what it watched already still guards `EXEC` (a
                // broken connection fails it).
                *locked(&cell) = Some(watched);
                added?;
                return Ok(ok());
            }
        };
        *locked(&cell) = Some(watched);
        Ok::<Value, Error>(ok())
    };
    Outcome::Later {
        reply: Box::pin(reply),
        barrier: true,
    }
}

/// `UNWATCH` (outside a transaction; inside, it is queued).
pub(crate) fn unwatch(mut call: Call<'_, Shared>) -> Outcome<Shared> {
    call.state.unwatch();
    call.reply().ok();
    Outcome::Ran
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}
