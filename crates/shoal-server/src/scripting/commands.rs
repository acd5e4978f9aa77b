//! `EVAL`, `EVALSHA`, `EVAL_RO`, `EVALSHA_RO` and `SCRIPT LOAD|EXISTS|FLUSH|KILL`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_cluster::key_slot;
use shoal_frontdoor::{CommandError, ScriptKind};
use shoal_proto::{Argv, Protocol};

use super::cache::{Script, hex_of, sha1_digest, shebang};
use super::call::{Buffers, Current, Run, with_run};
use super::convert::{c_long_long, write_error, write_lua_reply};
use super::vm::{ScriptReply, Simple, with_vm};
use crate::commands::{CommandResult, Ctx, int_arg};
use crate::shared::Shared;

/// `EVALSHA` of a script the node does not have.
pub(crate) const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";

/// `EVAL script numkeys [key ...] [arg ...]`.
pub(crate) fn eval(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    eval_generic(ctx, argv, false, false)
}

/// `EVAL_RO`: `EVAL` of a script that may not write.
pub(crate) fn eval_ro(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    eval_generic(ctx, argv, false, true)
}

/// `EVALSHA sha1 numkeys [key ...] [arg ...]`.
pub(crate) fn evalsha(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    eval_generic(ctx, argv, true, false)
}

/// `EVALSHA_RO`.
pub(crate) fn evalsha_ro(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    eval_generic(ctx, argv, true, true)
}

/// The number of keys a script call declares (Redis's checks of `numkeys`).
pub(crate) fn declared_keys(argv: &Argv<'_>) -> Result<usize, CommandError> {
    let numkeys = int_arg(argv.get(2))?;
    if numkeys > argv.len() as i64 - 3 {
        return Err(CommandError::fixed(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    if numkeys < 0 {
        return Err(CommandError::fixed("ERR Number of keys can't be negative"));
    }
    Ok(numkeys as usize)
}

fn eval_generic(ctx: &mut Ctx<'_>, argv: &Argv<'_>, by_sha: bool, ro: bool) -> CommandResult {
    let numkeys = declared_keys(argv)?;
    let script = if by_sha {
        ctx.shared
            .scripts
            .get(argv.get(1))
            .ok_or(CommandError::fixed(NOSCRIPT))?
    } else {
        load(ctx.shared, argv.get(1))?
    };
    let flags = script.flags;
    let read_only = prepare(ctx.shared, flags, ro)?;
    let invocation = Invocation {
        name: &script.sha,
        kind: ScriptKind::Eval,
        read_only,
        flags,
        slot: (numkeys > 0).then(|| key_slot(argv.get(3))),
    };
    let shared = ctx.shared;
    run_script(ctx, &invocation, |reply| {
        with_vm(shared, |vm| {
            vm.compile(&script.digest, &script.body, shebang_len(&script))?;
            let keys = (3..3 + numkeys).map(|i| argv.get(i));
            let args = (3 + numkeys..argv.len()).map(|i| argv.get(i));
            vm.run(&script.digest, keys, args, reply)
        })
        .and_then(|r| r)
    })
}

/// The checks before a script or function with declared flags runs (Redis's
/// `scriptPrepareForRun`, and what its `processCommand` checks of the flags the script
/// declares): whether it runs read-only, or the error.
pub(crate) fn prepare(
    shared: &Shared,
    flags: super::cache::ScriptFlags,
    ro: bool,
) -> Result<bool, CommandError> {
    if flags.no_cluster && shared.cluster.is_some() {
        return Err(CommandError::fixed(
            "ERR Can not run script on cluster, 'no-cluster' flag is set.",
        ));
    }
    if flags.shebang && !flags.no_writes {
        if !flags.allow_oom && shared.store.make_room().is_err() {
            return Err(CommandError::OutOfMemory);
        }
        if shared.replication.is_replica() {
            return Err(CommandError::fixed(
                "READONLY You can't write against a read only replica.",
            ));
        }
        if ro {
            return Err(CommandError::fixed(
                "ERR Can not execute a script with write flag using *_ro command.",
            ));
        }
    }
    Ok(ro || flags.no_writes)
}

/// How to run a script or function.
pub(crate) struct Invocation<'a> {
    /// Its name in errors: the SHA1, or the function's name.
    pub name: &'a str,
    /// Script or function.
    pub kind: ScriptKind,
    /// Writes are refused.
    pub read_only: bool,
    /// Its declared flags.
    pub flags: super::cache::ScriptFlags,
    /// The slot of its declared keys.
    pub slot: Option<u16>,
}

/// Runs a script in the store's exclusive section, as the busy state's one running script,
/// and writes its reply (or its error, as Redis words it) to the client.
pub(crate) fn run_script(
    ctx: &mut Ctx<'_>,
    invocation: &Invocation<'_>,
    body: impl FnOnce(&mut dyn ScriptReply) -> Result<(), String>,
) -> CommandResult {
    let shared = ctx.shared;
    let threshold = Duration::from_millis(shared.config.read().busy_reply_threshold);
    let protocol = ctx.conn.protocol;
    // Inside `EXEC` the store is held already (other threads wait for the transaction) and
    // the command cannot be retried alone: the script runs within the transaction's section.
    let in_transaction = shared.store.in_exclusive();
    let busy = &shared.door.busy;
    let started = busy.try_start(invocation.kind, crate::server::worker_index());
    if !started && !in_transaction {
        // Another script took the state after this command passed the gate.
        ctx.client.wait_for_script = true;
        return Ok(());
    }
    // Ends the busy state however the script ends (only if this one took it).
    let _ended = started.then_some(Ended(shared));
    if !in_transaction {
        // Commands that passed the gate before the state changed finish first: none of them
        // may wait for the store on its thread while this runs (see shoal_frontdoor::busy).
        shared.door.stats.wait_until_outside_commands();
    }
    let Ctx {
        conn, client, out, ..
    } = ctx;
    let result = shared.store.exclusive(|| {
        let mut run = Run {
            shared,
            conn,
            client,
            name: invocation.name,
            kind: invocation.kind,
            read_only: invocation.read_only,
            flags: invocation.flags,
            resp: Protocol::Resp2,
            slot: invocation.slot,
            wrote: false,
            started: Instant::now(),
            threshold,
            buffers: Buffers::take(),
        };
        let current = Current::install(&mut run);
        let mut reply = Replying {
            out,
            protocol,
            name: invocation.name,
        };
        let outcome = body(&mut reply);
        drop(current);
        run.buffers.keep();
        outcome
    });
    result.map_err(|line| CommandError::Other(line.into()))
}

/// Writes a script's outcome to its client.
struct Replying<'a> {
    out: &'a mut Vec<u8>,
    /// The client's protocol.
    protocol: Protocol,
    /// The script's name in errors.
    name: &'a str,
}

impl Replying<'_> {
    /// Whether the script asked for RESP3 (`redis.setresp(3)`): its booleans are RESP3's.
    fn script_resp3() -> bool {
        // The script is done: `run` is read only through the pointer's owner now.
        with_run(|run| run.resp == Protocol::Resp3).unwrap_or(false)
    }
}

impl ScriptReply for Replying<'_> {
    fn simple(&mut self, value: Simple<'_>) {
        // As `write_lua_reply` writes these values.
        let mut reply = shoal_proto::Reply::new(self.out, self.protocol);
        match value {
            Simple::Bytes(bytes) => reply.bulk(bytes),
            Simple::Number(n) => reply.int(c_long_long(n)),
            Simple::Boolean(b) if Self::script_resp3() => reply.boolean(b),
            Simple::Boolean(true) => reply.int(1),
            Simple::Boolean(false) | Simple::Null => reply.null(),
        }
    }

    fn value(&mut self, ok: bool, value: &mlua::Value) {
        if ok {
            write_lua_reply(self.out, self.protocol, Self::script_resp3(), value);
        } else {
            write_script_error(self.out, self.name, value);
        }
    }
}

/// Ends the busy state however the script ended.
struct Ended<'a>(&'a Shared);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.door.busy.end();
    }
}

/// A script's error as Redis's `luaCallFunction` replies it: the error table's text with the
/// script's name, source and line, or `Error running script` for an error that is no table.
fn write_script_error(out: &mut Vec<u8>, name: &str, value: &mlua::Value) {
    let mlua::Value::Table(table) = value else {
        let message = match value {
            mlua::Value::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
            _ => "execution failure".into(),
        };
        let message: String = message.chars().take(100).collect();
        write_error(
            out,
            format!("Error running script {name}, {message}").as_bytes(),
        );
        return;
    };
    let text = |field: &str| match table.raw_get::<mlua::Value>(field) {
        Ok(mlua::Value::String(s)) => Some(s.as_bytes().to_vec()),
        Ok(mlua::Value::Integer(n)) => Some(n.to_string().into_bytes()),
        Ok(mlua::Value::Number(n)) => Some(super::convert::number_text(n).into_bytes()),
        _ => None,
    };
    let mut line = b"-".to_vec();
    line.extend_from_slice(&text("err").unwrap_or_default());
    if let (Some(source), Some(at)) = (text("source"), text("line")) {
        line.extend_from_slice(format!(" script: {name}, on ").as_bytes());
        line.extend_from_slice(&source);
        line.push(b':');
        line.extend_from_slice(&at);
        line.push(b'.');
    }
    write_error(out, &line);
}

/// Where a cached script's code starts (after its shebang line).
fn shebang_len(script: &Script) -> usize {
    shebang(&script.body).map_or(0, |(_, len)| len)
}

/// Compiles `body` on this thread and caches it (Redis's `luaCreateFunction`): the cached
/// script, or Redis's error.
pub(crate) fn load(shared: &Shared, body: &[u8]) -> Result<Arc<Script>, CommandError> {
    let digest = sha1_digest(body);
    let sha = hex_of(&digest);
    if let Some(script) = shared.scripts.get(sha.as_bytes()) {
        return Ok(script);
    }
    let (flags, skip) = shebang(body).map_err(|e| CommandError::Other(e.into()))?;
    with_vm(shared, |vm| vm.compile(&digest, body, skip))
        .and_then(|r| r)
        .map_err(|e| CommandError::Other(e.into()))?;
    Ok(shared.scripts.insert(Script {
        sha,
        digest,
        body: body.into(),
        flags,
    }))
}

/// `SCRIPT LOAD script`.
pub(crate) fn script_load(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let script = load(ctx.shared, argv.get(2))?;
    ctx.reply().bulk(script.sha.as_bytes());
    Ok(())
}

/// `SCRIPT EXISTS sha1 [sha1 ...]`.
pub(crate) fn script_exists(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let found: Vec<bool> = (2..argv.len())
        .map(|i| ctx.shared.scripts.contains(argv.get(i)))
        .collect();
    let mut reply = ctx.reply();
    reply.array(found.len());
    for f in found {
        reply.int(i64::from(f));
    }
    Ok(())
}

/// `SCRIPT FLUSH [ASYNC|SYNC]`.
pub(crate) fn script_flush(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let mode_ok = match argv.len() {
        2 => true,
        3 => {
            argv.get(2).eq_ignore_ascii_case(b"sync") || argv.get(2).eq_ignore_ascii_case(b"async")
        }
        _ => false,
    };
    if !mode_ok {
        return Err(CommandError::fixed(
            "ERR SCRIPT FLUSH only support SYNC|ASYNC option",
        ));
    }
    ctx.shared.scripts.flush();
    ctx.reply().ok();
    Ok(())
}

/// `SCRIPT KILL`.
pub(crate) fn script_kill(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.shared.door.busy.request_kill(ScriptKind::Eval)?;
    ctx.reply().ok();
    Ok(())
}
