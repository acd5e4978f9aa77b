//! A node's transactions (`MULTI` ... `EXEC`), as Redis 7 runs them:
//!
//! * a command about to be queued passes the checks of a command about to run
//!   ([`Shared::check`]: routing, memory, a replica's read-only state...), and a refusal fails
//!   the transaction;
//! * `EXEC` checks the transaction as a whole: in a cluster its keys must share one slot
//!   (`-CROSSSLOT`) that this node serves (`-MOVED`), or, on a node that forwards
//!   (`--routing forward`), the whole transaction goes to the slot's primary through the
//!   forwarder ([`ClusterState::forward_transaction`]) and its `EXEC` reply comes back; writes
//!   wait while writes are paused and need enough replicas and memory;
//! * then the queued commands run inside the store's exclusive section: no other client, on
//!   any thread, sees part of them, a watched key's change is seen before anything runs, and
//!   replicas receive the effects as one unit (see `replication::frames`).

use std::sync::Arc;

use shoal_cluster::key_slot;
use shoal_frontdoor::{Admission, Call, CommandError, Outcome, Transaction};
use shoal_proto::Argv;
use shoal_proto::command_table::{CommandSpec, flags};

use crate::backend::Check;
use crate::cluster::ClusterState;
use crate::commands::{Ctx, handler, run_now};
use crate::shared::Shared;
use crate::watch::Watching;

/// Keys of one command, or of a transaction, in several slots.
const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";

/// `EXEC` on a forwarding node of a transaction that runs on another node while this
/// connection watches keys here.
const WATCH_HERE_EXEC_THERE: &str = "ERR this connection WATCHes keys of this \
     node, but the transaction's keys are served by another node: WATCH keys of the \
     transaction's slot (through the proxy or the smart client) instead";

/// `WATCH` on a forwarding node of keys another node serves.
pub(crate) const WATCH_FORWARDED: &str = "ERR WATCH of keys another node serves is not \
     forwarded (--routing forward): send WATCH, MULTI and EXEC to the keys' node, or use the \
     smart client's Client::watch or the proxy";

impl Shared {
    /// Decides about a command about to be queued in a transaction.
    pub(crate) fn admit_queued(self: &Arc<Self>, mut call: Call<'_, Self>) -> Admission {
        match self.check(&mut call) {
            // Keys in several slots that a forwarding node would split: not in a transaction.
            Check::Forward(addr) if addr.is_empty() => {
                Admission::Refuse(CommandError::fixed(CROSSSLOT))
            }
            // A forwarding node sends the whole transaction to its slot's node at `EXEC`.
            Check::Pass | Check::Forward(_) => Admission::Queue,
            Check::Stop(Outcome::Retry(wait)) => Admission::Retry(wait),
            Check::Stop(Outcome::Refused(error) | Outcome::Failed(error)) => {
                Admission::Refuse(error)
            }
            Check::Stop(_) => Admission::Refuse(CommandError::fixed(
                "ERR this command cannot be queued in a transaction",
            )),
        }
    }

    /// `EXEC`: checks the transaction, then runs it as one.
    pub(crate) fn exec_transaction(
        self: &Arc<Self>,
        mut transaction: Transaction<'_, Self>,
    ) -> Outcome<Self> {
        if let Some(refusal) = self.check_transaction(&mut transaction) {
            return refusal;
        }
        self.store.exclusive(|| {
            // Inside the section every change made before it has been reported. A watched
            // key whose time ran out since it was watched changed too (Redis's
            // `isWatchedKeyExpired`): looking it up reclaims it, which raises the flag.
            if let Some(watching) = &transaction.state.watching {
                self.store.count_existing(watching.keys());
            }
            if transaction
                .state
                .watching
                .as_ref()
                .is_some_and(Watching::changed)
            {
                transaction.abort_watched();
            } else {
                transaction.run(|call| self.run_queued(call));
            }
        });
        Outcome::Ran
    }

    /// Redis's checks of `EXEC`, over the queued commands as a whole.
    fn check_transaction(
        self: &Arc<Self>,
        transaction: &mut Transaction<'_, Self>,
    ) -> Option<Outcome<Self>> {
        let flags = transaction.flags();
        if let Some(cluster) = &self.cluster {
            let keyless_write = transaction
                .commands()
                .any(|(command, _)| command.spec.first_key == 0 && command.spec.has(flags::WRITE));
            if keyless_write && let Some(error) = self.keyless_write_refusal() {
                return Some(Outcome::Refused(error));
            }
            let routed = match routed_command(transaction) {
                Err(error) => return Some(Outcome::Refused(error)),
                Ok(None) => None,
                Ok(Some(routed)) => Some(routed),
            };
            if let Some((spec, argv)) = routed {
                let retried = std::mem::take(&mut transaction.state.map_awaited);
                let route = cluster.route(spec, &argv, transaction.state, retried);
                match self.settle_route(cluster, route, transaction.state) {
                    Ok(None) => {}
                    Ok(Some(addr)) => return Some(forward(cluster.clone(), transaction, addr)),
                    Err(stop) => return Some(stop),
                }
            }
        }
        self.state_refusal(transaction.state, flags)
    }

    /// Runs one queued command of a transaction, inside the exclusive section: its handler,
    /// without the checks `EXEC` made for the whole (see [`run_now`]).
    fn run_queued(&self, mut call: Call<'_, Self>) -> Result<(), CommandError> {
        let Some(handler) = handler(call.command.id) else {
            return Err(CommandError::WrongArity(call.command.spec.name));
        };
        call.start_clock();
        let argv = call.argv;
        let mut ctx = Ctx {
            shared: self,
            conn: call.conn,
            client: call.state,
            out: call.out,
        };
        let result = run_now(&mut ctx, handler, argv);
        if call.command.spec.has(flags::WRITE) && self.replication.recording() {
            ctx.client.write_offset = self.replication.offset();
        }
        result
    }
}

/// A transaction whose slot another node serves, on a node that forwards: sent whole to
/// the slot's primary (the commands the user may still run: see [`Transaction::relay`]),
/// `EXEC`'s reply relayed. Keys this connection watches here cannot guard it (refused with
/// [`WATCH_HERE_EXEC_THERE`]).
fn forward(
    cluster: Arc<ClusterState>,
    transaction: &Transaction<'_, Shared>,
    addr: String,
) -> Outcome<Shared> {
    if transaction.state.watching.is_some() {
        return Outcome::Refused(CommandError::fixed(WATCH_HERE_EXEC_THERE));
    }
    let relayed = transaction.relay();
    Outcome::Later {
        reply: Box::pin(async move {
            let reply = cluster.forward_transaction(&addr, &relayed.commands).await;
            relayed.reply(reply)
        }),
        barrier: true,
    }
}

/// The queued command a transaction is routed by: one with keys, a write if there is one
/// (a replica serves a transaction to a `READONLY` client only if it only reads). `None`
/// if no command has keys; `-CROSSSLOT` if the keys are in more than one slot.
fn routed_command<'a>(
    transaction: &Transaction<'a, Shared>,
) -> Result<Option<(&'static CommandSpec, Argv<'a>)>, CommandError> {
    let mut slot = None;
    let mut routed: Option<(&'static CommandSpec, Argv<'a>)> = None;
    for (command, argv) in transaction.commands() {
        let spec = command.spec;
        let mut keys = spec.key_positions_in(&argv).peekable();
        if keys.peek().is_none() {
            continue;
        }
        for position in keys {
            let this = key_slot(argv.get(position));
            if slot.is_some_and(|s| s != this) {
                return Err(CommandError::fixed(CROSSSLOT));
            }
            slot = Some(this);
        }
        if routed.is_none_or(|(chosen, _)| !chosen.has(flags::WRITE) && spec.has(flags::WRITE)) {
            routed = Some((spec, argv));
        }
    }
    Ok(routed)
}
