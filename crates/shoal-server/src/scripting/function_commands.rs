//! `FUNCTION LOAD|LIST|DELETE|FLUSH|DUMP|RESTORE|STATS|KILL`, `FCALL` and `FCALL_RO`, with
//! Redis 7.0's replies and errors.

use std::time::Instant;

use shoal_cluster::key_slot;
use shoal_frontdoor::{CommandError, ScriptKind};
use shoal_proto::Argv;
use shoal_proto::glob::glob_match;

use super::commands::{Invocation, prepare, run_script};
use super::functions::{RestorePolicy, Running, flag_names, with_function_vm};
use crate::commands::{CommandResult, Ctx, is, subcommand_syntax_error};

/// An error line of Redis's `addReplyError` (`ERR ` before the text).
fn err(text: impl std::fmt::Display) -> CommandError {
    CommandError::Other(format!("ERR {text}").into())
}

/// `FCALL function numkeys [key ...] [arg ...]`.
pub(crate) fn fcall(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    fcall_generic(ctx, argv, false)
}

/// `FCALL_RO`: `FCALL` of a function that declares `no-writes`.
pub(crate) fn fcall_ro(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    fcall_generic(ctx, argv, true)
}

fn fcall_generic(ctx: &mut Ctx<'_>, argv: &Argv<'_>, ro: bool) -> CommandResult {
    let functions = &ctx.shared.functions;
    let (library, index) = functions
        .find(argv.get(1))
        .ok_or_else(|| err("Function not found"))?;
    let numkeys =
        shoal_store::parse_i64(argv.get(2)).ok_or_else(|| err("Bad number of keys provided"))?;
    if numkeys > argv.len() as i64 - 3 {
        return Err(err("Number of keys can't be greater than number of args"));
    }
    if numkeys < 0 {
        return Err(err("Number of keys can't be negative"));
    }
    let numkeys = numkeys as usize;
    let info = &library.functions[index];
    let read_only = prepare(ctx.shared, info.flags, ro)?;
    let invocation = Invocation {
        name: &info.name,
        kind: ScriptKind::Function,
        read_only,
        flags: info.flags,
        slot: (numkeys > 0).then(|| key_slot(argv.get(3))),
    };
    *functions.running.lock() = Some(Running {
        name: info.name.clone(),
        command: argv.iter().map(<[u8]>::to_vec).collect(),
        started: Instant::now(),
    });
    let _running = NotRunning(functions);
    run_script(ctx, &invocation, |reply| {
        with_function_vm(functions, |fvm| {
            let callback = fvm.callback(functions, &library, index)?;
            let keys = (3..3 + numkeys).map(|i| argv.get(i));
            let args = (3 + numkeys..argv.len()).map(|i| argv.get(i));
            fvm.vm.call_function(&callback, keys, args, reply)
        })
        .and_then(|r| r)
    })
}

/// Clears `FUNCTION STATS`'s running function however the call ended.
struct NotRunning<'a>(&'a super::Functions);

impl Drop for NotRunning<'_> {
    fn drop(&mut self) {
        *self.0.running.lock() = None;
    }
}

/// `FUNCTION LOAD [REPLACE] code`.
pub(crate) fn function_load(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let mut replace = false;
    let mut at = 2;
    while at < argv.len() - 1 {
        let option = argv.get(at);
        at += 1;
        if is(option, "replace") {
            replace = true;
            continue;
        }
        return Err(err(format_args!(
            "Unknown option given: {}",
            String::from_utf8_lossy(option)
        )));
    }
    if at >= argv.len() {
        return Err(err("Function code is missing"));
    }
    let shared = ctx.shared;
    let name = shared
        .functions
        .load(&shared.replication, argv.get(at), replace)
        .map_err(err)?;
    ctx.reply().bulk(name.as_bytes());
    Ok(())
}

/// `FUNCTION LIST [WITHCODE] [LIBRARYNAME pattern]`.
pub(crate) fn function_list(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let (mut with_code, mut pattern) = (false, None);
    let mut i = 2;
    while i < argv.len() {
        let arg = argv.get(i);
        if !with_code && is(arg, "withcode") {
            with_code = true;
        } else if pattern.is_none() && is(arg, "libraryname") {
            if i >= argv.len() - 1 {
                return Err(err("library name argument was not given"));
            }
            i += 1;
            pattern = Some(argv.get(i));
        } else {
            return Err(err(format_args!(
                "Unknown argument {}",
                String::from_utf8_lossy(arg)
            )));
        }
        i += 1;
    }
    let set = ctx.shared.functions.snapshot();
    let libraries: Vec<_> = set
        .libraries()
        .filter(|l| pattern.is_none_or(|p| glob_match(p, l.name.as_bytes(), true)))
        .collect();
    let mut reply = ctx.reply();
    reply.array(libraries.len());
    for library in libraries {
        reply.map(if with_code { 4 } else { 3 });
        reply.bulk(b"library_name");
        reply.bulk(library.name.as_bytes());
        reply.bulk(b"engine");
        reply.bulk(b"LUA");
        reply.bulk(b"functions");
        reply.array(library.functions.len());
        for function in &library.functions {
            reply.map(3);
            reply.bulk(b"name");
            reply.bulk(function.name.as_bytes());
            reply.bulk(b"description");
            match &function.description {
                Some(d) => reply.bulk(d),
                None => reply.null(),
            }
            reply.bulk(b"flags");
            let names = flag_names(function.flags);
            reply.set(names.len());
            for name in names {
                reply.simple(name);
            }
        }
        if with_code {
            reply.bulk(b"library_code");
            reply.bulk(&library.code);
        }
    }
    Ok(())
}

/// `FUNCTION DELETE library`.
pub(crate) fn function_delete(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let shared = ctx.shared;
    shared
        .functions
        .delete(&shared.replication, argv.get(2))
        .map_err(err)?;
    ctx.reply().ok();
    Ok(())
}

/// `FUNCTION FLUSH [ASYNC|SYNC]`.
pub(crate) fn function_flush(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() > 3 {
        return Err(subcommand_syntax_error(argv));
    }
    if argv.len() == 3 && !is(argv.get(2), "sync") && !is(argv.get(2), "async") {
        return Err(err("FUNCTION FLUSH only supports SYNC|ASYNC option"));
    }
    let shared = ctx.shared;
    shared.functions.flush(&shared.replication);
    ctx.reply().ok();
    Ok(())
}

/// `FUNCTION DUMP`.
pub(crate) fn function_dump(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let payload = ctx.shared.functions.dump();
    ctx.reply().bulk(&payload);
    Ok(())
}

/// `FUNCTION RESTORE payload [FLUSH|APPEND|REPLACE]`.
pub(crate) fn function_restore(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() > 4 {
        return Err(subcommand_syntax_error(argv));
    }
    let policy = match argv.len() {
        4 if is(argv.get(3), "append") => RestorePolicy::Append,
        4 if is(argv.get(3), "replace") => RestorePolicy::Replace,
        4 if is(argv.get(3), "flush") => RestorePolicy::Flush,
        4 => {
            return Err(err(
                "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ));
        }
        _ => RestorePolicy::Append,
    };
    let shared = ctx.shared;
    shared
        .functions
        .restore(Some(&shared.replication), argv.get(2), policy)
        .map_err(err)?;
    ctx.reply().ok();
    Ok(())
}

/// `FUNCTION STATS`.
pub(crate) fn function_stats(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let busy = &ctx.shared.door.busy;
    if busy.running() == Some(ScriptKind::Eval) {
        return Err(CommandError::fixed(shoal_frontdoor::busy::BUSY_SCRIPT));
    }
    let running = ctx.shared.functions.running.lock().clone();
    let set = ctx.shared.functions.snapshot();
    let mut reply = ctx.reply();
    reply.map(2);
    reply.bulk(b"running_script");
    match running {
        None => reply.null(),
        Some(running) => {
            reply.map(3);
            reply.bulk(b"name");
            reply.bulk(running.name.as_bytes());
            reply.bulk(b"command");
            reply.array(running.command.len());
            for arg in &running.command {
                reply.bulk(arg);
            }
            reply.bulk(b"duration_ms");
            reply.int(running.started.elapsed().as_millis() as i64);
        }
    }
    reply.bulk(b"engines");
    reply.map(1);
    reply.bulk(b"LUA");
    reply.map(2);
    reply.bulk(b"libraries_count");
    reply.int(set.libraries().count() as i64);
    reply.bulk(b"functions_count");
    reply.int(set.function_count() as i64);
    Ok(())
}

/// `FUNCTION KILL`.
pub(crate) fn function_kill(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.shared.door.busy.request_kill(ScriptKind::Function)?;
    ctx.reply().ok();
    Ok(())
}
