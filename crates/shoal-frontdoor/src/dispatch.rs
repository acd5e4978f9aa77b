//! One command through the front door, in the order Redis 7's `processCommand` checks things:
//! unknown command, unknown subcommand, arity, authentication, the user's ACL permissions
//! (before the backend's own checks, such as `-MOVED`); then the connection commands
//! run here and every other one goes to the backend; its time is recorded (statistics,
//! latency histogram, slow log).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use shoal_proto::Argv;
use shoal_proto::command_table::{CommandSpec, flags};

use crate::backend::{Backend, Call, Conn, Outcome};
use crate::busy::Gate;
use crate::commands::{Command, ConnCommand, table};
use crate::connection::{self, ConnCall};
use crate::error::{CommandError, truncated_arg, write_error_line};
use crate::multi::{self, Admission, Multi, Transaction};
use crate::pubsub;
use crate::stats::WorkerStats;

/// What a session does after a command.
pub(crate) enum Step<B: Backend> {
    /// The reply is written.
    Done,
    /// The reply comes later ([`Outcome::Later`]). The call is recorded now, with the time it
    /// took to start (as Redis counts a blocked command: the time it worked, not the time it
    /// waited); if its reply is an error, it counts as failed then.
    Later {
        reply: futures_util::future::BoxFuture<'static, B::Reply>,
        barrier: bool,
        command: u32,
    },
    /// Wait, then run the command again ([`Outcome::Retry`]).
    Retry(futures_util::future::BoxFuture<'static, ()>),
    /// Hand the connection over ([`Outcome::HandOff`]).
    HandOff(B::HandOff),
    /// Close the connection now, dropping the replies not yet written: the client sent an
    /// HTTP request ([`cross_protocol`]).
    Abort,
}

/// Everything one command touches.
pub(crate) struct Request<'a, B: Backend> {
    pub(crate) backend: &'a Arc<B>,
    pub(crate) conn: &'a mut Conn,
    pub(crate) state: &'a mut B::Conn,
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) worker: &'a WorkerStats,
}

/// Checks and runs one command, and records it.
pub(crate) fn dispatch<B: Backend>(
    mut r: Request<'_, B>,
    argv: &Argv<'_>,
    frame: Option<&Bytes>,
) -> Step<B> {
    // The messages waiting for a tracking connection, or a subscriber (a RESP2 client's
    // invalidations arrive on its redirect connection, subscribed to
    // `__redis__:invalidate`), go out before anything the command answers, an error
    // included: any reply then proves that every invalidation queued for the connection before
    // the command started is written ahead of it (see `crate::tracking`). Those the command
    // causes itself follow its reply ([`after_tracked`]).
    if r.conn.tracking.is_some() || r.conn.subscriptions.is_some() {
        r.conn.deliver_messages(r.out);
    }
    let Some(mut command) = table().lookup(argv.get(0)) else {
        if cross_protocol(argv.get(0)) {
            warn_cross_protocol(&r);
            return Step::Abort;
        }
        reject_unknown(&mut r, argv);
        return Step::Done;
    };
    if command.is_container() && argv.len() >= 2 {
        match command.subcommand(argv.get(1)) {
            Some(sub) => command = sub,
            None => {
                let error = CommandError::UnknownSubcommand {
                    sub: truncated_arg(argv.get(1)),
                    container: command.spec.name.to_ascii_uppercase(),
                };
                reject(&mut r, command.id, &error);
                // Redis found no command here: `CLIENT LIST` shows `cmd=NULL`.
                r.conn.last_command = u32::MAX;
                return Step::Done;
            }
        }
    }
    let spec = command.spec;
    if !spec.arity_ok(argv.len()) {
        reject(&mut r, command.id, &CommandError::WrongArity(spec.name));
        return Step::Done;
    }
    if !r.conn.authenticated && !spec.has(flags::NO_AUTH) && r.backend.door().acl.auth_required() {
        reject(&mut r, command.id, &CommandError::NoAuth);
        return Step::Done;
    }
    // One relaxed load for a user that may run everything (the `default` user, unless
    // restricted).
    if !r.conn.user.unrestricted() && !permitted(&mut r, command, argv) {
        return Step::Done;
    }
    if let Some(error) = pubsub::unsubscribed_context_error(r.conn, spec.name) {
        reject(&mut r, command.id, &error);
        return Step::Done;
    }
    // While a script runs on another thread: wait, or `-BUSY` (one load otherwise). The
    // thread is marked inside a command first, until the command's synchronous part is done
    // (see `crate::busy`).
    let worker = r.worker;
    let _inside = worker.enter();
    match r.backend.door().busy.gate(spec.flags) {
        None => {}
        Some(Gate::Wait(wait)) => return Step::Retry(wait),
        Some(Gate::Refuse(error)) => {
            reject(&mut r, command.id, &error);
            return Step::Done;
        }
    }
    if r.conn.multi.is_some() && !multi::runs_inside_multi(command) {
        return queue(&mut r, command, argv, frame);
    }
    // On a cluster's node, a connection command with keys (`SSUBSCRIBE`) is routed as any
    // keyed command.
    if command.connection.is_some()
        && spec.first_key > 0
        && r.backend.mode() == crate::identity::Mode::Cluster
    {
        let mut unused_clock = None;
        let call = Call::new(
            command,
            argv,
            frame,
            &mut *r.conn,
            &mut *r.state,
            &mut *r.out,
            &mut unused_clock,
        );
        match r.backend.admit(call) {
            Admission::Queue => {}
            Admission::Refuse(error) => {
                reject(&mut r, command.id, &error);
                return Step::Done;
            }
            Admission::Retry(wait) => return Step::Retry(wait),
        }
    }
    // Set before the command runs, as Redis does: `CLIENT INFO` shows `cmd=client|info`.
    r.conn.last_command = command.id;
    // The clock is read once a command starts running: a refusal is not timed.
    let mut started = None;
    // Where this command's reply starts, for a hot-key sample's bytes out.
    let out_before = r.out.len();
    // A connection without tracking pays a test of one field before and after.
    if command.connection.is_none() && r.conn.tracking.is_some() {
        before_tracked(&mut r, command, argv);
    }
    let outcome = match command.connection {
        Some(ConnCommand::Exec) if r.conn.tracking.is_some() => {
            started = Some(Instant::now());
            tracked_exec(&mut r)
        }
        Some(ConnCommand::Exec) => {
            started = Some(Instant::now());
            exec(&mut r)
        }
        Some(which) => {
            started = Some(Instant::now());
            let mut call = ConnCall {
                backend: &**r.backend,
                conn: &mut *r.conn,
                state: &mut *r.state,
                out: &mut *r.out,
            };
            match connection::run(which, &mut call, argv) {
                Ok(()) => Outcome::Ran,
                Err(error) => Outcome::Failed(error),
            }
        }
        None => r.backend.call(Call::new(
            command,
            argv,
            frame,
            &mut *r.conn,
            &mut *r.state,
            &mut *r.out,
            &mut started,
        )),
    };
    if r.conn.tracking.is_some() {
        finish_tracked(&mut r, command, argv);
    }
    let elapsed = started.map(|t| t.elapsed());
    let usec = elapsed.map_or(0, |d| d.as_micros() as u64);
    // One load and one store of this thread's own countdown per command.
    if worker.hot.due() && !matches!(outcome, Outcome::Retry(_)) {
        sample_hot(&r, command, argv, out_before, elapsed);
    }
    if let Some(log) = r.backend.door().access_log.get()
        && log.due()
        && !matches!(outcome, Outcome::Retry(_))
    {
        log_access(&r, log, command, argv, out_before, usec, &outcome);
    }
    let step = match outcome {
        Outcome::Ran => Step::Done,
        Outcome::Failed(error) => {
            r.worker.record_call(command.id as usize, usec, true);
            write_error(&mut r, &error);
            record_slow(&r, spec, argv, usec);
            return Step::Done;
        }
        Outcome::Refused(error) => {
            reject(&mut r, command.id, &error);
            return Step::Done;
        }
        Outcome::Later { reply, barrier } => Step::Later {
            reply,
            barrier,
            command: command.id,
        },
        // Not run yet: it is recorded when it runs.
        Outcome::Retry(wait) => return Step::Retry(wait),
        Outcome::HandOff(how) => Step::HandOff(how),
    };
    r.worker.record_call(command.id as usize, usec, false);
    record_slow(&r, spec, argv, usec);
    step
}

/// Writes a line of the access log for `command`, which ran (or failed) in `usec`.
#[cold]
#[inline(never)]
fn log_access<B: Backend>(
    r: &Request<'_, B>,
    log: &crate::access_log::AccessLog,
    command: &'static Command,
    argv: &Argv<'_>,
    out_before: usize,
    usec: u64,
    outcome: &Outcome<B>,
) {
    let reply = &r.out[out_before.min(r.out.len())..];
    let code;
    let result = match outcome {
        Outcome::Failed(error) | Outcome::Refused(error) => {
            code = error.code();
            code.as_str()
        }
        _ if reply.first().is_some_and(|&b| b == b'-' || b == b'!') => {
            let line = reply.get(1..).unwrap_or_default();
            let end = line
                .iter()
                .position(|&b| b == b' ' || b == b'\r')
                .unwrap_or(line.len());
            code = String::from_utf8_lossy(&line[..end]).into_owned();
            code.as_str()
        }
        _ => "ok",
    };
    let key = command
        .spec
        .key_positions_in(argv)
        .next()
        .and_then(|i| argv.try_get(i));
    let client = r.conn.info.addr.to_string();
    log.record(&crate::access_log::Entry {
        client: &client,
        cmd: command.spec.name,
        key,
        bytes_in: crate::hotkeys::request_bytes(argv.iter(), argv.len()),
        bytes_out: reply.len() as u64,
        latency_us: usec,
        result,
    });
}

/// A sampled command's keys go to this thread's hot-key summaries ([`crate::hotkeys`]), with
/// its bytes in and out and its run time. Connection commands (`SSUBSCRIBE`'s channels) are
/// not keys of the store.
#[cold]
#[inline(never)]
fn sample_hot<B: Backend>(
    r: &Request<'_, B>,
    command: &'static Command,
    argv: &Argv<'_>,
    out_before: usize,
    elapsed: Option<std::time::Duration>,
) {
    let hotkeys = &r.backend.door().stats.hotkeys;
    let sample = crate::hotkeys::Sample {
        bytes_in: crate::hotkeys::request_bytes(argv.iter(), argv.len()),
        bytes_out: r.out.len().saturating_sub(out_before) as u64,
        nanos: elapsed.map_or(0, |d| d.as_nanos() as u64),
    };
    if command.connection.is_some() {
        hotkeys.sample(&r.worker.hot, std::iter::empty(), sample);
        return;
    }
    let keys = command
        .spec
        .key_positions_in(argv)
        .map(|i| argv.try_get(i).unwrap_or_default());
    hotkeys.sample(&r.worker.hot, keys, sample);
}

/// Before a command of a connection with `CLIENT TRACKING` on: its own changes are known as
/// its own (for `NOLOOP`, until [`crate::tracking::ran`]), and the keys of a read-only command
/// are remembered; [`after_tracked`] follows it.
#[inline(never)]
fn before_tracked<B: Backend>(r: &mut Request<'_, B>, command: &'static Command, argv: &Argv<'_>) {
    crate::tracking::mark_running(r.conn.info.id);
    // Remembered before the read as well as after it: a write on another thread between the
    // read and the remembering would otherwise go unannounced (Redis, single-threaded, has no
    // such gap). A change meanwhile costs a spurious invalidation, never a stale cache.
    if remembers_keys(command.spec)
        && let Some(tracking) = r.conn.tracking.as_deref()
        && tracking.remembers()
    {
        let limit = r.backend.door().settings.pubsub_output_limit();
        let spec = command.spec;
        tracking.remember(spec.key_positions_in(argv).map(|i| argv.get(i)), limit);
    }
}

/// After a command of a tracking connection (see [`after_tracked`]): `EXEC` did its part
/// already, and Redis keeps `CLIENT CACHING`'s flag through any `CLIENT` subcommand.
#[inline(never)]
fn finish_tracked<B: Backend>(r: &mut Request<'_, B>, command: &'static Command, argv: &Argv<'_>) {
    match command.connection {
        None => {
            crate::tracking::ran();
            after_tracked(r, command.spec, Some(argv));
        }
        Some(ConnCommand::Exec) => {}
        Some(_) if command.spec.name.starts_with("client|") => {}
        Some(_) => after_tracked(r, command.spec, None),
    }
}

/// `EXEC` on a tracking connection: the keys of its read-only commands are remembered.
#[inline(never)]
fn tracked_exec<B: Backend>(r: &mut Request<'_, B>) -> Outcome<B> {
    let read: Vec<Bytes> = r
        .conn
        .multi
        .as_ref()
        .filter(|m| !m.failed)
        .map(Multi::read_keys)
        .unwrap_or_default();
    // Before and after, as for a single command (see `tracked`).
    let remember = |r: &mut Request<'_, B>| {
        if !read.is_empty()
            && let Some(tracking) = r.conn.tracking.as_deref()
            && tracking.remembers()
        {
            let limit = r.backend.door().settings.pubsub_output_limit();
            tracking.remember(read.iter().map(|k| &k[..]), limit);
        }
    };
    remember(r);
    let outcome = {
        let _running = crate::tracking::running(r.conn.info.id);
        exec(r)
    };
    remember(r);
    after_tracked(r, table().lookup(b"exec").expect("EXEC").spec, None);
    outcome
}

/// After a tracking connection's command: remembers the keys it read (`argv`, if it is one
/// read-only command whose keys count), clears `CLIENT CACHING`'s flag (unless inside
/// `MULTI`), and writes the invalidations waiting for it.
fn after_tracked<B: Backend>(r: &mut Request<'_, B>, spec: &CommandSpec, argv: Option<&Argv<'_>>) {
    let in_multi = r.conn.multi.is_some();
    let Some(tracking) = r.conn.tracking.as_deref_mut() else {
        return;
    };
    if let Some(argv) = argv
        && remembers_keys(spec)
        && tracking.remembers()
    {
        let limit = r.backend.door().settings.pubsub_output_limit();
        tracking.remember(spec.key_positions_in(argv).map(|i| argv.get(i)), limit);
    }
    if !in_multi {
        tracking.caching = false;
    }
    r.conn.deliver_messages(r.out);
}

/// Whether a command's keys are remembered for tracking: a read-only command's, but for the
/// read-only scripts' (their commands would be; Redis leaves the script itself out) and
/// Pub/Sub's.
pub(crate) fn remembers_keys(spec: &CommandSpec) -> bool {
    spec.has(flags::READONLY)
        && !spec.has(flags::PUBSUB)
        && !matches!(spec.name, "eval_ro" | "evalsha_ro" | "fcall_ro")
}

/// Queues a command inside `MULTI`, once it passes the backend's checks too (Redis checks a
/// queued command as one it runs); a refusal fails the transaction.
fn queue<B: Backend>(
    r: &mut Request<'_, B>,
    command: &'static Command,
    argv: &Argv<'_>,
    frame: Option<&Bytes>,
) -> Step<B> {
    if multi::refused_inside_multi(command) {
        reject(r, command.id, &CommandError::fixed(multi::NOT_IN_MULTI));
        return Step::Done;
    }
    let mut unused_clock = None;
    let call = Call::new(
        command,
        argv,
        frame,
        &mut *r.conn,
        &mut *r.state,
        &mut *r.out,
        &mut unused_clock,
    );
    match r.backend.admit(call) {
        Admission::Queue => {
            r.conn.last_command = command.id;
            if let Some(multi) = &mut r.conn.multi {
                multi.queue(command, argv);
            }
            r.conn.reply(r.out).simple("QUEUED");
            Step::Done
        }
        Admission::Refuse(error) => {
            reject(r, command.id, &error);
            Step::Done
        }
        Admission::Retry(wait) => Step::Retry(wait),
    }
}

/// `EXEC`: the backend runs the queue, unless it failed while queuing (`EXECABORT`). The
/// transaction ends either way, but for a retry (it stays queued, and `EXEC` runs again).
fn exec<B: Backend>(r: &mut Request<'_, B>) -> Outcome<B> {
    let Some(multi) = r.conn.multi.take() else {
        return Outcome::Failed(CommandError::fixed("ERR EXEC without MULTI"));
    };
    if multi.failed {
        r.backend.unwatch(r.state);
        return Outcome::Failed(CommandError::fixed(multi::EXECABORT));
    }
    let transaction = Transaction::new(
        &multi,
        &mut *r.conn,
        &mut *r.state,
        &mut *r.out,
        r.backend,
        r.worker,
    );
    let outcome = r.backend.exec(transaction);
    if matches!(outcome, Outcome::Retry(_)) {
        r.conn.multi = Some(multi);
    } else {
        r.backend.unwatch(r.state);
    }
    outcome
}

/// Checks the connection's user's permissions for the command (Redis's `ACLCheckAllPerm`):
/// a denial is counted, logged in the `ACL LOG` and answered with Redis's `-NOPERM` line.
fn permitted<B: Backend>(r: &mut Request<'_, B>, command: &Command, argv: &Argv<'_>) -> bool {
    if r.conn.user.removed() {
        // Its user was deleted while it authenticated: closed, as Redis frees such a client.
        r.conn.close_after_reply = true;
        return false;
    }
    let args: Vec<&[u8]> = argv.iter().collect();
    let conn = &*r.conn;
    let permit = r.backend.door().acl.permit(&conn.user, command, &args, || {
        // As Redis sets `lastcmd` first: the log's client info shows the refused command.
        conn.info
            .last_command
            .store(command.id, std::sync::atomic::Ordering::Relaxed);
        conn.info.describe()
    });
    match permit {
        Ok(()) => true,
        Err(error) => {
            reject(r, command.id, &error);
            false
        }
    }
}

/// Whether a command name is the first word of an HTTP request line (`POST`) or of a header
/// (`Host:`): what a cross-protocol attack, a web page making a browser post RESP commands in
/// an HTTP body to the RESP port, sends first. Redis closes such a connection at once.
fn cross_protocol(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:")
}

/// Counts a cross-protocol attempt and logs it as Redis does, at most once a minute so that
/// attempts cannot flood the log.
fn warn_cross_protocol<B: Backend>(r: &Request<'_, B>) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static LAST_LOGGED_SECS: AtomicU64 = AtomicU64::new(0);
    let stats = &r.backend.door().stats;
    stats.cross_protocol_attempts.fetch_add(1, Relaxed);
    let now = crate::unix_time::unix_secs();
    let last = LAST_LOGGED_SECS.load(Relaxed);
    if now.abs_diff(last) > 60
        && LAST_LOGGED_SECS
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_ok()
    {
        tracing::warn!(
            client = r.conn.info.id,
            addr = %r.conn.info.addr,
            "Possible SECURITY ATTACK detected. It looks like somebody is sending POST or Host: \
             commands to Redis. This is likely due to an attacker attempting to use Cross \
             Protocol Scripting to compromise your Redis instance. Connection aborted."
        );
    }
}

/// A command that ran took `usec`: a sample for the latency monitor and an entry of the slow
/// log if it took long enough.
fn record_slow<B: Backend>(r: &Request<'_, B>, spec: &CommandSpec, argv: &Argv<'_>, usec: u64) {
    let door = r.backend.door();
    door.latency.command_ran(spec.has(flags::FAST), usec);
    let slowlog = &door.slowlog;
    if !slowlog.should_log(usec) {
        return;
    }
    match redacted(spec, argv) {
        None => slowlog.record(argv.iter(), argv.len(), usec, &r.conn.info),
        Some(args) => slowlog.record(args.iter().copied(), args.len(), usec, &r.conn.info),
    }
}

/// What Redis shows instead of a secret argument (`shared.redacted`).
const REDACTED: &[u8] = b"(redacted)";

/// Parameters whose `CONFIG SET` values Redis never shows (`SENSITIVE_CONFIG`), Shoal's and
/// those only Redis has (a client setting them on Shoal gets an error, but the secret must not
/// reach the slow log either).
const SENSITIVE_PARAMS: &[&str] = &[
    "requirepass",
    "masterauth",
    "tls-key-file-pass",
    "tls-client-key-file-pass",
];

/// The arguments as Redis records them in the slow log when some are secret (passwords of
/// `AUTH` and `HELLO ... AUTH`, the rules of `ACL SETUSER`, values of sensitive `CONFIG SET`
/// parameters), else `None`.
fn redacted<'a>(spec: &CommandSpec, argv: &Argv<'a>) -> Option<Vec<&'a [u8]>> {
    let mut args: Vec<&[u8]> = argv.iter().collect();
    let mut changed = false;
    let mut redact = |args: &mut Vec<&[u8]>, i: usize| {
        if i < args.len() {
            args[i] = REDACTED;
            changed = true;
        }
    };
    match spec.name {
        // `AUTH` refuses more than two arguments before it redacts them.
        "auth" if args.len() <= 3 => (1..args.len()).for_each(|i| redact(&mut args, i)),
        "hello" => {
            let version_ok = args.len() < 2
                || matches!(shoal_proto::args::parse_i64(args[1]), Some(2) | Some(3));
            let mut i = 2;
            while version_ok && i < args.len() {
                let more = args.len() - 1 - i;
                if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                    redact(&mut args, i + 1);
                    redact(&mut args, i + 2);
                    i += 3;
                } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                    i += 2;
                } else {
                    break;
                }
            }
        }
        // Every argument after the subcommand, the user name included, as Redis does.
        "acl|setuser" => (2..args.len()).for_each(|i| redact(&mut args, i)),
        "config|set" if args.len().is_multiple_of(2) => {
            for i in (2..args.len()).step_by(2) {
                if SENSITIVE_PARAMS
                    .iter()
                    .any(|p| p.as_bytes().eq_ignore_ascii_case(args[i]))
                {
                    redact(&mut args, i + 1);
                }
            }
        }
        _ => {}
    }
    changed.then_some(args)
}

/// Refuses a command, as Redis's `rejectCommand`: inside `MULTI` that fails the transaction,
/// and a refused `EXEC` drops it and says so (`-EXECABORT ...`), but for a cluster's
/// redirections, which it answers as they are.
fn reject<B: Backend>(r: &mut Request<'_, B>, id: u32, error: &CommandError) {
    if let Some(multi) = &mut r.conn.multi {
        multi.failed = true;
    }
    r.worker.record_rejected(id as usize);
    // As Redis sets `lastcmd` before its checks: `CLIENT LIST` shows the refused command.
    r.conn.last_command = id;
    if table().name(id) == Some("exec") && !multi::is_redirection(error) {
        r.conn.multi = None;
        r.backend.unwatch(r.state);
        write_error(r, &multi::exec_abort(error));
    } else {
        write_error(r, error);
    }
}

fn write_error<B: Backend>(r: &mut Request<'_, B>, error: &CommandError) {
    r.backend.door().stats.record_error(&error.code());
    write_error_line(r.out, &error.bytes());
}

/// `-ERR unknown command '<name>', with args beginning with: '<a1>' '<a2>' ...`, exactly as
/// Redis 7 words it: each argument is shown as C's `%.*s` shows it (up to a NUL byte), quoted
/// and followed by a space, while the list is shorter than 128 bytes, each cut to the room left.
fn reject_unknown<B: Backend>(r: &mut Request<'_, B>, argv: &Argv<'_>) {
    r.conn.last_command = u32::MAX;
    if let Some(multi) = &mut r.conn.multi {
        multi.failed = true;
    }
    let stats = &r.backend.door().stats;
    stats
        .unknown_commands
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut args: Vec<u8> = Vec::new();
    for arg in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        let arg = shoal_proto::args::c_str(arg);
        args.push(b'\'');
        args.extend_from_slice(&arg[..arg.len().min(room)]);
        args.extend_from_slice(b"' ");
    }
    let mut line = b"ERR unknown command '".to_vec();
    line.extend_from_slice(&truncated_arg(argv.get(0)));
    line.extend_from_slice(b"', with args beginning with: ");
    line.extend_from_slice(&args);
    stats.record_error("ERR");
    write_error_line(r.out, &line);
}

#[cfg(test)]
mod tests {
    use std::io;

    use futures_util::future::BoxFuture;
    use shoal_proto::{Limits, Parsed, Protocol, RequestParser};

    use super::*;
    use crate::door::Door;
    use crate::stats::ThreadStats;

    /// A backend that keeps no keys: `SET key ...` reports a change of `key` (as a node's
    /// store does, on the command's thread) and answers `+OK`; anything else answers `+OK`.
    struct Bare {
        door: Arc<Door>,
    }

    impl Backend for Bare {
        type Conn = ();
        type Reply = ();
        type HandOff = ();

        fn door(&self) -> &Arc<Door> {
            &self.door
        }

        fn new_conn(&self) {}

        fn call(self: &Arc<Self>, mut call: Call<'_, Self>) -> Outcome<Self> {
            if call.command.spec.name == "set" {
                self.door.invalidate(call.argv.get(1));
            }
            call.reply().simple("OK");
            Outcome::Ran
        }

        fn write_reply(&self, _: (), _: Protocol, _: &mut Vec<u8>) -> Option<String> {
            None
        }

        fn tracks_keys(&self) -> bool {
            true
        }

        fn exec(self: &Arc<Self>, _: Transaction<'_, Self>) -> Outcome<Self> {
            Outcome::Ran
        }

        fn hand_off<'a>(
            self: &'a Arc<Self>,
            _: &'a mut crate::Stream,
            _: &'a Conn,
            _: &'a mut (),
            _: (),
        ) -> BoxFuture<'a, io::Result<()>> {
            unreachable!("no hand-off")
        }
    }

    /// One connection of a [`Bare`] backend (RESP3 once [`Client::new`] said `HELLO 3`),
    /// running inline commands through [`dispatch`].
    struct Client {
        backend: Arc<Bare>,
        conn: Conn,
        stats: ThreadStats,
    }

    impl Client {
        fn new() -> Client {
            let backend = Arc::new(Bare {
                door: Arc::new(Door::new(crate::settings::Limits::default(), None)),
            });
            let door = &backend.door;
            let conn = Conn::new(
                door.clients.test_client(),
                true,
                door.acl.default_user().clone(),
            );
            let mut client = Client {
                backend,
                conn,
                stats: ThreadStats::new(),
            };
            assert!(client.run("HELLO 3").starts_with('%'));
            client
        }

        /// Runs `line` and returns what the connection writes for it.
        fn run(&mut self, line: &str) -> String {
            let input = format!("{line}\r\n");
            let mut parser = RequestParser::new(Limits::default());
            let Ok(Parsed::Command { .. }) = parser.parse(input.as_bytes()) else {
                panic!("{line} is a command");
            };
            let argv = parser.argv(input.as_bytes());
            let mut out = Vec::new();
            let request = Request {
                backend: &self.backend,
                conn: &mut self.conn,
                state: &mut (),
                out: &mut out,
                worker: self.stats.get(&self.backend.door.stats),
            };
            assert!(matches!(dispatch(request, &argv, None), Step::Done));
            String::from_utf8(out).expect("text")
        }
    }

    const INVALIDATE_K: &str = ">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n";

    #[test]
    fn invalidations_queued_before_a_command_are_written_before_its_reply() {
        let mut client = Client::new();
        assert_eq!(client.run("CLIENT TRACKING on"), "+OK\r\n");
        assert_eq!(client.run("GET k"), "+OK\r\n");
        // Another client changes `k` (not this thread's tracking client) before the next
        // command comes: its invalidation is waiting in the mailbox.
        client.backend.door.invalidate(b"k");
        assert_eq!(client.run("PING"), format!("{INVALIDATE_K}+PONG\r\n"));
        // So before an error reply, and before a keyed command's.
        client.run("GET k");
        client.backend.door.invalidate(b"k");
        let unknown = client.run("NOSUCH");
        assert!(unknown.starts_with(INVALIDATE_K), "{unknown:?}");
        client.run("GET k");
        client.backend.door.invalidate(b"k");
        assert_eq!(client.run("GET k"), format!("{INVALIDATE_K}+OK\r\n"));
    }

    #[test]
    fn a_redirect_target_reads_invalidations_queued_before_a_command_first() {
        let mut reader = Client::new();
        let mut listener = Client {
            backend: reader.backend.clone(),
            conn: Conn::new(
                reader.backend.door.clients.test_client(),
                true,
                reader.conn.user.clone(),
            ),
            stats: ThreadStats::new(),
        };
        listener.conn.protocol = Protocol::Resp2;
        listener.run("SUBSCRIBE __redis__:invalidate");
        let id = listener.conn.info.id;
        reader.run(&format!("CLIENT TRACKING on REDIRECT {id}"));
        reader.run("GET k");
        reader.backend.door.invalidate(b"k");
        assert_eq!(
            listener.run("PING"),
            "*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n\
             *2\r\n$4\r\npong\r\n$0\r\n\r\n"
        );
    }

    #[test]
    fn a_connection_s_own_invalidation_follows_its_reply() {
        let mut client = Client::new();
        client.run("CLIENT TRACKING on");
        client.run("GET k");
        assert_eq!(client.run("SET k v"), format!("+OK\r\n{INVALIDATE_K}"));
        // With NOLOOP, none.
        client.run("CLIENT TRACKING on NOLOOP");
        client.run("GET k");
        assert_eq!(client.run("SET k v"), "+OK\r\n");
    }
}
