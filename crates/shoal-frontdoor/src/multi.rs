//! Transactions, as Redis 7 runs them: after `MULTI` a connection's commands are checked and
//! queued (`+QUEUED`); a command refused while queuing fails the transaction, so that `EXEC`
//! answers `-EXECABORT` and runs nothing; `EXEC` runs the queue as one, each command's reply
//! (an error included) in one array; `DISCARD` drops it.
//!
//! The front door keeps the queue ([`Multi`], in the connection's [`Conn`]) and runs the
//! connection commands of an `EXEC`; the backend makes the whole of it atomic and runs the rest
//! ([`Backend::exec`] with a [`Transaction`]), or refuses it (`-CROSSSLOT`, `-READONLY`, ...).

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use shoal_proto::Argv;
use shoal_proto::command_table::flags;
use shoal_proto::reply::Value;

use crate::backend::{Backend, Call, Conn};
use crate::commands::Command;
use crate::connection::{self, ConnCall};
use crate::error::{CommandError, write_error_line};
use crate::stats::WorkerStats;

/// `EXEC` of a transaction that failed while queuing.
pub(crate) const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// What a refused `EXEC` answers: `-EXECABORT Transaction discarded because of: ` and the
/// refusal (without its `ERR `, as Redis formats it).
pub(crate) fn exec_abort(refusal: &CommandError) -> CommandError {
    let line = refusal.bytes();
    let reason = line.strip_prefix(b"ERR ").unwrap_or(&line);
    let mut text = b"EXECABORT Transaction discarded because of: ".to_vec();
    text.extend_from_slice(reason);
    CommandError::Raw(text)
}

/// Whether `error` is a cluster's redirection or refusal of a slot, which a refused `EXEC`
/// answers as it is (Redis's `clusterRedirectClient`).
pub(crate) fn is_redirection(error: &CommandError) -> bool {
    matches!(
        error.code().as_str(),
        "MOVED" | "ASK" | "CROSSSLOT" | "TRYAGAIN" | "CLUSTERDOWN"
    )
}

/// What a command refused inside `MULTI` for its `NO_MULTI` flag is told.
pub(crate) const NOT_IN_MULTI: &str = "ERR Command not allowed inside a transaction";

/// A connection's transaction between `MULTI` and `EXEC`.
#[derive(Debug, Default)]
pub(crate) struct Multi {
    queued: Vec<Queued>,
    /// A command was refused while queuing: `EXEC` aborts.
    pub(crate) failed: bool,
}

impl Multi {
    /// Queues `command` with its arguments (copied: the request buffer moves on).
    pub(crate) fn queue(&mut self, command: &'static Command, argv: &Argv<'_>) {
        let mut data = Vec::with_capacity(argv.data_len());
        let ranges = argv
            .iter()
            .map(|arg| {
                let start = data.len();
                data.extend_from_slice(arg);
                start..data.len()
            })
            .collect();
        self.queued.push(Queued {
            command,
            data,
            ranges,
        });
    }
}

impl Multi {
    /// The keys of the queued commands whose keys tracking remembers (read-only ones).
    pub(crate) fn read_keys(&self) -> Vec<bytes::Bytes> {
        let mut keys = Vec::new();
        for queued in &self.queued {
            let spec = queued.command.spec;
            if crate::dispatch::remembers_keys(spec) {
                let argv = queued.argv();
                keys.extend(
                    spec.key_positions_in(&argv)
                        .map(|i| bytes::Bytes::copy_from_slice(argv.get(i))),
                );
            }
        }
        keys
    }
}

/// One command queued in a transaction.
#[derive(Debug)]
struct Queued {
    command: &'static Command,
    data: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Queued {
    fn argv(&self) -> Argv<'_> {
        Argv::from_parts(&self.data, &self.ranges)
    }
}

/// Whether `command` runs at once inside `MULTI` instead of being queued (Redis's list).
pub(crate) fn runs_inside_multi(command: &Command) -> bool {
    matches!(
        command.spec.name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    )
}

/// Whether `command` may not be queued at all.
pub(crate) fn refused_inside_multi(command: &Command) -> bool {
    command.spec.has(flags::NO_MULTI)
}

/// What a backend decides about a command about to be queued ([`Backend::admit`]).
pub enum Admission {
    /// Queue it.
    Queue,
    /// Refuse it with this error: the transaction fails (`EXECABORT` at `EXEC`).
    Refuse(CommandError),
    /// Wait for this, then decide again (a newer cluster map on its way).
    Retry(futures_util::future::BoxFuture<'static, ()>),
}

/// A transaction's queued commands at `EXEC`, for the backend to run as one
/// ([`Backend::exec`]).
pub struct Transaction<'a, B: Backend> {
    queued: &'a [Queued],
    /// The front door's state of the connection.
    pub conn: &'a mut Conn,
    /// The backend's state of the connection.
    pub state: &'a mut B::Conn,
    /// Where the reply goes.
    pub out: &'a mut Vec<u8>,
    backend: &'a Arc<B>,
    worker: &'a WorkerStats,
}

impl<'a, B: Backend> Transaction<'a, B> {
    pub(crate) fn new(
        multi: &'a Multi,
        conn: &'a mut Conn,
        state: &'a mut B::Conn,
        out: &'a mut Vec<u8>,
        backend: &'a Arc<B>,
        worker: &'a WorkerStats,
    ) -> Transaction<'a, B> {
        Transaction {
            queued: &multi.queued,
            conn,
            state,
            out,
            backend,
            worker,
        }
    }

    /// The queued commands with their arguments, in order.
    pub fn commands(&self) -> impl Iterator<Item = (&'static Command, Argv<'a>)> + 'a {
        self.queued.iter().map(|q| (q.command, q.argv()))
    }

    /// The flags of the queued commands together (`flags::WRITE` if any writes, ...).
    pub fn flags(&self) -> u32 {
        self.queued
            .iter()
            .fold(0, |all, q| all | q.command.spec.flags)
    }

    /// The transaction for a backend that runs it elsewhere (the proxy, a forwarding node):
    /// the user's permissions are checked again first, as [`Transaction::run`] does (they may
    /// have changed since the commands were queued), and only the commands still permitted
    /// are to be sent; [`Relayed::reply`] puts the others' refusals back in `EXEC`'s reply.
    pub fn relay(&self) -> Relayed {
        let mut commands = Vec::with_capacity(self.queued.len());
        let refused = self
            .queued
            .iter()
            .map(|q| {
                let argv = q.argv();
                let refusal = recheck_permission(self.backend, self.conn, q.command, &argv).err();
                if refusal.is_none() {
                    commands.push(argv.iter().map(<[u8]>::to_vec).collect());
                }
                refusal
            })
            .collect();
        Relayed { commands, refused }
    }

    /// Answers that the transaction did not run because a watched key changed (a null array).
    pub fn abort_watched(self) {
        self.conn.reply(self.out).null_array();
    }

    /// Runs every queued command in order and answers with the array of their replies: the
    /// connection commands here, the others through `run` (which writes a success reply and
    /// returns an error). Permissions are checked again first, as Redis does, since they may
    /// have changed since the commands were queued. Each command is counted in the
    /// statistics as if it ran alone.
    pub fn run(self, mut run: impl FnMut(Call<'_, B>) -> Result<(), CommandError>) {
        self.conn.reply(self.out).array(self.queued.len());
        for queued in self.queued {
            let command = queued.command;
            let argv = queued.argv();
            self.conn.last_command = command.id;
            let mut started = None;
            let result = match recheck_permission(self.backend, self.conn, command, &argv) {
                Err(error) => Err(error),
                Ok(()) => match command.connection {
                    Some(which) => {
                        started = Some(Instant::now());
                        let mut call = ConnCall {
                            backend: &**self.backend,
                            conn: &mut *self.conn,
                            state: &mut *self.state,
                            out: &mut *self.out,
                        };
                        connection::run(which, &mut call, &argv)
                    }
                    None => run(Call::new(
                        command,
                        &argv,
                        None,
                        &mut *self.conn,
                        &mut *self.state,
                        &mut *self.out,
                        &mut started,
                    )),
                },
            };
            let usec = started.map_or(0, |t| t.elapsed().as_micros() as u64);
            if let Err(error) = &result {
                self.backend.door().stats.record_error(&error.code());
                write_error_line(self.out, &error.bytes());
            }
            if started.is_some() {
                self.worker
                    .record_call(command.id as usize, usec, result.is_err());
            }
        }
    }
}

/// A transaction to run elsewhere ([`Transaction::relay`]).
#[derive(Debug)]
pub struct Relayed {
    /// The commands to run, each with its arguments (the name first), in order: those the
    /// user may still run.
    pub commands: Vec<Vec<Vec<u8>>>,
    /// Each queued command's refusal, in order (`None`: it is in `commands`).
    refused: Vec<Option<CommandError>>,
}

impl Relayed {
    /// `EXEC`'s reply from where the transaction ran, as the client gets it: each refused
    /// command's refusal in its place in the array, and a null as Redis's null array (a
    /// watched key changed). Another reply (an error) stays as it is.
    pub fn reply(&self, reply: Value) -> Value {
        let Value::Array(ran) = reply else {
            return reply.as_exec_reply();
        };
        if self.refused.iter().all(Option::is_none) {
            return Value::Array(ran);
        }
        let mut ran = ran.into_iter();
        let replies = self
            .refused
            .iter()
            .map(|refusal| match refusal {
                Some(error) => Value::Error(error.bytes().into_owned()),
                None => ran.next().unwrap_or(Value::Null),
            })
            .collect();
        Value::Array(replies)
    }
}

/// Checks the user's permissions for a queued command again at `EXEC`, with Redis's words for
/// a permission lost since it was queued.
fn recheck_permission<B: Backend>(
    backend: &Arc<B>,
    conn: &Conn,
    command: &Command,
    argv: &Argv<'_>,
) -> Result<(), CommandError> {
    if conn.user.unrestricted() {
        return Ok(());
    }
    let args: Vec<&[u8]> = argv.iter().collect();
    let acl = &backend.door().acl;
    acl.permit(&conn.user, command, &args, || conn.info.describe())
        .map_err(|denied| {
            let text = denied.bytes();
            let reason = if text.starts_with(b"NOPERM this user has no permissions to run") {
                format!(
                    "no permission to execute the '{}' command.",
                    command.spec.name
                )
            } else if text.ends_with(b"keys used as arguments") {
                "no permission to touch the specified keys.".into()
            } else {
                "no permission to access one of the channels used as arguments.".into()
            };
            CommandError::Other(
                format!(
                    "NOPERM ACLs rules changed between the moment the transaction was \
                     accumulated and the EXEC call. This command is no longer allowed for the \
                     following reason: {reason}"
                )
                .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_commands_keep_their_place_in_exec_s_reply() {
        let relayed = Relayed {
            commands: vec![vec![b"GET".to_vec()], vec![b"GET".to_vec()]],
            refused: vec![None, Some(CommandError::fixed("NOPERM no")), None],
        };
        let ran = Value::Array(vec![Value::Int(1), Value::Int(2)]);
        assert_eq!(
            relayed.reply(ran),
            Value::Array(vec![
                Value::Int(1),
                Value::Error(b"NOPERM no".to_vec()),
                Value::Int(2)
            ])
        );
        assert_eq!(relayed.reply(Value::Null), Value::NullArray);
        let error = Value::Error(b"CROSSSLOT x".to_vec());
        assert_eq!(relayed.reply(error.clone()), error);
        let all = Relayed {
            commands: vec![vec![b"GET".to_vec()]],
            refused: vec![None],
        };
        let ran = Value::Array(vec![Value::Int(1)]);
        assert_eq!(all.reply(ran.clone()), ran);
    }
}
