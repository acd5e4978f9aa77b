//! Server commands: `INFO`, `CONFIG`, `SLOWLOG`, `MEMORY`, `OBJECT`, `TIME`, `SHUTDOWN`.

use std::time::{SystemTime, UNIX_EPOCH};

use shoal_proto::Argv;
use shoal_store::glob_match;

use super::{int_arg, is};
use crate::config::{PARAMS, param};
use crate::dispatch::Ctx;
use crate::error::{CommandError, CommandResult};
use crate::info;

/// `INFO [section ...]`
pub fn info(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let args: Vec<&[u8]> = argv.iter().skip(1).collect();
    let text = info::render(ctx.shared, &info::sections(&args));
    ctx.reply().verbatim(text.as_bytes());
    Ok(())
}

/// `TIME`
pub fn time(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut reply = ctx.reply();
    reply.array(2);
    reply.bulk(now.as_secs().to_string().as_bytes());
    reply.bulk(now.subsec_micros().to_string().as_bytes());
    Ok(())
}

/// `CONFIG GET parameter [parameter ...]` (glob patterns allowed)
pub fn config_get(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let config = ctx.shared.config.read().clone();
    let matching: Vec<_> = PARAMS
        .iter()
        .filter(|p| {
            argv.iter()
                .skip(2)
                .any(|pattern| glob_match(pattern, p.name.as_bytes(), true))
        })
        .collect();
    let mut reply = ctx.reply();
    reply.map(matching.len());
    for p in matching {
        reply.bulk(p.name.as_bytes());
        reply.bulk((p.get)(&config).as_bytes());
    }
    Ok(())
}

/// `CONFIG SET parameter value [parameter value ...]`: all or nothing, as in Redis 7.
pub fn config_set(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if !argv.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity("config|set"));
    }
    let failed = |name: &str, why: &str| {
        CommandError::Other(
            format!("ERR CONFIG SET failed (possibly related to argument '{name}') - {why}").into(),
        )
    };
    let mut config = ctx.shared.config.read().clone();
    let mut seen = Vec::new();
    for i in (2..argv.len()).step_by(2) {
        let name = String::from_utf8_lossy(argv.get(i)).into_owned();
        let Some(p) = param(&name) else {
            return Err(CommandError::Other(
                format!("ERR Unknown option or number of arguments for CONFIG SET - '{name}'")
                    .into(),
            ));
        };
        if seen.contains(&p.name) {
            return Err(failed(&name, "duplicate parameter"));
        }
        seen.push(p.name);
        let Some(set) = p.set else {
            return Err(failed(&name, "can't set immutable config"));
        };
        let value = String::from_utf8_lossy(argv.get(i + 1));
        set(&mut config, &value).map_err(|why| failed(&name, &why))?;
    }
    if let Err(crate::config::ConfigError::Value { name, reason }) = config.validate() {
        return Err(failed(name, &reason));
    }
    ctx.shared.apply_config(config);
    ctx.reply().ok();
    Ok(())
}

/// `CONFIG RESETSTAT`
pub fn config_resetstat(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.shared.stats.reset();
    ctx.shared.store.reset_stats();
    ctx.reply().ok();
    Ok(())
}

/// `SLOWLOG GET [count]`
pub fn slowlog_get(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let count = match argv.try_get(2) {
        None => Some(10),
        Some(arg) => match int_arg(arg) {
            Ok(-1) => None,
            Ok(n) if n >= 0 => Some(n as usize),
            _ => {
                return Err(CommandError::fixed(
                    "ERR count should be greater than or equal to -1",
                ));
            }
        },
    };
    let entries = ctx.shared.slowlog.newest(count);
    let mut reply = ctx.reply();
    reply.array(entries.len());
    for e in entries {
        reply.array(6);
        reply.int(e.id as i64);
        reply.int(e.timestamp as i64);
        reply.int(e.duration_us as i64);
        reply.array(e.args.len());
        for arg in &e.args {
            reply.bulk(arg);
        }
        reply.bulk(e.client_addr.as_bytes());
        reply.bulk(&e.client_name);
    }
    Ok(())
}

/// `SLOWLOG LEN`
pub fn slowlog_len(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let len = ctx.shared.slowlog.len();
    ctx.reply().int(len as i64);
    Ok(())
}

/// `SLOWLOG RESET`
pub fn slowlog_reset(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.shared.slowlog.reset();
    ctx.reply().ok();
    Ok(())
}

/// `MEMORY USAGE key [SAMPLES count]`: the bytes the key is charged (exact; samples are moot).
pub fn memory_usage(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    match argv.len() {
        3 => {}
        5 if is(argv.get(3), "SAMPLES") => {
            int_arg(argv.get(4))?;
        }
        _ => return Err(CommandError::Syntax),
    }
    match ctx.shared.store.memory_usage(argv.get(2)) {
        Some(bytes) => ctx.reply().int(bytes as i64),
        None => ctx.reply().null(),
    }
    Ok(())
}

/// `OBJECT ENCODING key`
pub fn object_encoding(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    match ctx.shared.store.object_info(argv.get(2)) {
        Some(info) => ctx.reply().bulk(info.encoding.name().as_bytes()),
        None => ctx.reply().null(),
    }
    Ok(())
}

/// `OBJECT IDLETIME key`
pub fn object_idletime(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    match ctx.shared.store.object_info(argv.get(2)) {
        Some(info) => ctx.reply().int(info.idle_seconds as i64),
        None => ctx.reply().null(),
    }
    Ok(())
}

/// `OBJECT FREQ key`: Shoal's policies are all LRU-based, so (like Redis under an LRU policy)
/// access frequency is not tracked.
pub fn object_freq(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if ctx.shared.store.object_info(argv.get(2)).is_none() {
        ctx.reply().null();
        return Ok(());
    }
    Err(CommandError::fixed(
        "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
    ))
}

/// `OBJECT REFCOUNT key`: values are never shared, so 1.
pub fn object_refcount(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    match ctx.shared.store.object_info(argv.get(2)) {
        Some(_) => ctx.reply().int(1),
        None => ctx.reply().null(),
    }
    Ok(())
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: stops the node (nothing is persisted, so
/// the save options change nothing). Like Redis, no reply: the connection closes.
pub fn shutdown(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let (mut save, mut nosave, mut abort, mut other) = (false, false, false, false);
    for arg in argv.iter().skip(1) {
        if is(arg, "SAVE") {
            save = true;
        } else if is(arg, "NOSAVE") {
            nosave = true;
        } else if is(arg, "ABORT") {
            abort = true;
        } else if is(arg, "NOW") || is(arg, "FORCE") {
            other = true;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    if (save && nosave) || (abort && (save || nosave || other)) {
        return Err(CommandError::Syntax);
    }
    if abort {
        return Err(CommandError::fixed("ERR No shutdown in progress."));
    }
    tracing::warn!(client = %ctx.client.info.addr, "SHUTDOWN requested by a client");
    ctx.shared.request_shutdown();
    ctx.client.close_after_reply = true;
    Ok(())
}
