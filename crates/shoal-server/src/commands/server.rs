//! Server commands: `INFO`, `CONFIG`, `SLOWLOG`, `MEMORY`, `OBJECT`, `TIME`, `SHUTDOWN`.

use std::time::{SystemTime, UNIX_EPOCH};

use shoal_proto::Argv;
use shoal_store::glob_match;

use super::CommandResult;
use super::Ctx;
use super::{int_arg, is};
use crate::config::{PARAMS, param};
use crate::info;
use shoal_frontdoor::CommandError;

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

/// Whether a `CONFIG GET` argument is a glob pattern (Redis: `strpbrk(name, "[*?")`).
fn is_pattern(arg: &[u8]) -> bool {
    arg.iter().any(|c| matches!(c, b'[' | b'*' | b'?'))
}

/// `CONFIG GET parameter [parameter ...]` (glob patterns allowed), as Redis 7.0 answers it: a
/// parameter named exactly is reported under the name as the client wrote it, one matched by a
/// pattern under its own name; each parameter once.
pub fn config_get(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let config = ctx.shared.config.read().clone();
    let mut matches: Vec<(Vec<u8>, &'static crate::config::Param)> = Vec::new();
    for arg in argv.iter().skip(2) {
        if !is_pattern(arg) {
            let found = std::str::from_utf8(arg).ok().and_then(param);
            if let Some(p) = found
                && !matches.iter().any(|(_, m)| std::ptr::eq(*m, p))
            {
                matches.push((arg.to_vec(), p));
            }
            continue;
        }
        for p in PARAMS {
            if !matches.iter().any(|(_, m)| std::ptr::eq(*m, p))
                && glob_match(arg, p.name.as_bytes(), true)
            {
                matches.push((p.name.as_bytes().to_vec(), p));
            }
        }
    }
    let mut reply = ctx.reply();
    reply.map(matches.len());
    for (name, p) in matches {
        reply.bulk(&name);
        reply.bulk((p.get)(&config).as_bytes());
    }
    Ok(())
}

/// How Redis 7.0 types a parameter Shoal shares with it, for `CONFIG SET`'s parsing and errors.
enum RedisParam {
    /// A number (`MEMORY_CONFIG` ones also take units); Redis's C type decides whether bounds
    /// are checked as signed or unsigned.
    Number {
        memory: bool,
        unsigned: bool,
        min: i128,
        max: i128,
    },
    /// `maxmemory-policy`.
    Policy,
    /// `client-output-buffer-limit`.
    OutputLimit,
}

fn redis_param(name: &str) -> Option<RedisParam> {
    let number = |memory, unsigned, min: i128, max: i128| {
        Some(RedisParam::Number {
            memory,
            unsigned,
            min,
            max,
        })
    };
    const INT_MAX: i128 = i32::MAX as i128;
    const LONG_MAX: i128 = i64::MAX as i128;
    match name {
        "maxmemory" => number(true, true, 0, u64::MAX as i128),
        "proto-max-bulk-len" => number(true, false, 1024 * 1024, LONG_MAX),
        "client-query-buffer-limit" => number(true, true, 1024 * 1024, LONG_MAX),
        "maxclients" => number(false, true, 1, u32::MAX as i128),
        "timeout" | "hz" | "lfu-log-factor" | "lfu-decay-time" => number(false, false, 0, INT_MAX),
        "slowlog-log-slower-than" => number(false, false, -1, LONG_MAX),
        "slowlog-max-len" => number(false, true, 0, LONG_MAX),
        "latency-monitor-threshold" => number(false, false, 0, LONG_MAX),
        "busy-reply-threshold" | "lua-time-limit" => number(false, false, 0, LONG_MAX),
        "hash-max-listpack-entries" | "hash-max-ziplist-entries" => {
            number(false, true, 0, LONG_MAX)
        }
        "hash-max-listpack-value" | "hash-max-ziplist-value" => number(true, true, 0, LONG_MAX),
        "maxmemory-policy" => Some(RedisParam::Policy),
        "client-output-buffer-limit" => Some(RedisParam::OutputLimit),
        _ => None,
    }
}

/// Redis's `memtoull`: digits and an optional unit (`b`, `k`, `kb`, `m`, `mb`, `g`, `gb`, any
/// case); no sign; the digits as `strtoull` reads them (saturating); the product wraps.
fn memtoull(value: &[u8]) -> Option<u64> {
    if value.first() == Some(&b'-') {
        return None;
    }
    let split = value
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(value.len());
    let (digits, unit) = value.split_at(split);
    let mul: u64 = match unit.to_ascii_lowercase().as_slice() {
        b"" | b"b" => 1,
        b"k" => 1000,
        b"kb" => 1024,
        b"m" => 1000 * 1000,
        b"mb" => 1024 * 1024,
        b"g" => 1000 * 1000 * 1000,
        b"gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    if digits.len() >= 128 {
        return None;
    }
    let n = digits.iter().fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .unwrap_or(u64::MAX)
    });
    Some(n.wrapping_mul(mul))
}

/// Parses a `CONFIG SET` value as Redis 7.0 would for a parameter it shares with Shoal, and
/// returns it in the form Shoal's own setter takes; the error is Redis's reason text.
fn redis_value(name: &str, kind: &RedisParam, value: &[u8]) -> Result<String, String> {
    match *kind {
        RedisParam::Number {
            memory,
            unsigned,
            min,
            max,
        } => {
            let ll: i64 = if memory {
                memtoull(value).ok_or("argument must be a memory value")? as i64
            } else {
                shoal_store::parse_i64(value)
                    .ok_or("argument couldn't be parsed into an integer")?
            };
            let n: i128 = if unsigned {
                i128::from(ll as u64)
            } else {
                i128::from(ll)
            };
            if n < min || n > max {
                return Err(format!(
                    "argument must be between {min} and {max} inclusive"
                ));
            }
            // Redis clamps `hz` to 1..=500 when it applies it.
            let n = if name == "hz" { n.clamp(1, 500) } else { n };
            Ok(n.to_string())
        }
        RedisParam::Policy => {
            const REDIS_POLICIES: &str = "volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction";
            let text = String::from_utf8_lossy(value);
            if text.parse::<shoal_store::EvictionPolicy>().is_ok() {
                return Ok(text.into_owned());
            }
            Err(format!(
                "argument(s) must be one of the following: {REDIS_POLICIES}"
            ))
        }
        RedisParam::OutputLimit => {
            // Redis splits on single spaces and takes `<class> <hard> <soft> <seconds>` groups.
            let words: Vec<&[u8]> = value.split(|&c| c == b' ').collect();
            if !words.len().is_multiple_of(4) {
                return Err("Wrong number of arguments in buffer limit configuration.".into());
            }
            let mut normal = None;
            for group in words.chunks(4) {
                let class = group[0].to_ascii_lowercase();
                if !matches!(
                    class.as_slice(),
                    b"normal" | b"slave" | b"replica" | b"pubsub"
                ) {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    );
                }
                let seconds = std::str::from_utf8(group[3])
                    .ok()
                    .and_then(c_strtoll)
                    // Redis keeps it in a C `int`.
                    .map(|s| s as i32)
                    .filter(|&s| s >= 0);
                match (memtoull(group[1]), memtoull(group[2]), seconds) {
                    (Some(hard), Some(soft), Some(seconds)) => {
                        if class == b"normal" {
                            normal = Some(format!("normal {hard} {soft} {seconds}"));
                        }
                    }
                    _ => {
                        return Err("Error in hard, soft or soft_seconds setting in buffer limit configuration.".into());
                    }
                }
            }
            // Shoal has only normal clients: limits of other classes are accepted and ignored.
            match normal {
                Some(normal) => Ok(normal),
                None => Err(String::new()),
            }
        }
    }
}

/// C's `strtoll(s, &end, 10)` with `*end == '\0'` required: leading spaces and a sign
/// allowed, saturating; an empty string reads as 0 (nothing converted, and nothing left over).
fn c_strtoll(s: &str) -> Option<i64> {
    if s.is_empty() {
        return Some(0);
    }
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: i128 = digits.parse().unwrap_or(i128::MAX);
    let n = if negative { -n } else { n };
    Some(n.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// `CONFIG SET parameter value [parameter value ...]`: all or nothing, checked in Redis 7.0's
/// order (every name first: unknown, immutable, repeated; then every value).
pub fn config_set(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if !argv.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    let failed = |name: &[u8], why: &str| {
        CommandError::quoting(
            "ERR CONFIG SET failed (possibly related to argument '",
            name,
            &format!("') - {why}"),
        )
    };
    let mut chosen: Vec<(&'static crate::config::Param, &[u8])> = Vec::new();
    for i in (2..argv.len()).step_by(2) {
        let name = argv.get(i);
        let Some(p) = std::str::from_utf8(name).ok().and_then(param) else {
            return Err(CommandError::quoting(
                "ERR Unknown option or number of arguments for CONFIG SET - '",
                name,
                "'",
            ));
        };
        if p.set.is_none() {
            return Err(failed(name, "can't set immutable config"));
        }
        if chosen.iter().any(|(c, _)| std::ptr::eq(*c, p)) {
            return Err(failed(name, "duplicate parameter"));
        }
        chosen.push((p, argv.get(i + 1)));
    }
    let mut config = ctx.shared.config.read().clone();
    let tls_param = chosen
        .iter()
        .find(|(p, _)| p.name.starts_with("tls-"))
        .map(|(p, _)| p.name);
    for (p, value) in chosen {
        let set = p.set.expect("immutable parameters were refused");
        // Values are reported against the parameter's own name from here on, as Redis does.
        let name = p.name.as_bytes();
        let value = match redis_param(p.name) {
            Some(kind) => match redis_value(p.name, &kind, value) {
                Ok(value) => value,
                // Only other classes' buffer limits: valid, nothing for Shoal to change.
                Err(why) if why.is_empty() => continue,
                Err(why) => return Err(failed(name, &why)),
            },
            None => String::from_utf8_lossy(value).into_owned(),
        };
        set(&mut config, &value).map_err(|why| failed(name, &why))?;
    }
    if let Err(crate::config::ConfigError::Value { name, reason }) = config.validate() {
        return Err(failed(name.as_bytes(), &reason));
    }
    // New TLS settings are tried before anything is applied: if they do not work, nothing
    // changes and handshakes go on with the old ones.
    if let Some(name) = tls_param
        && let Err(e) = ctx.shared.reload_tls_with(&config.tls_options())
    {
        tracing::warn!("CONFIG SET {name}: the TLS configuration is unchanged: {e}");
        return Err(failed(
            name.as_bytes(),
            "Unable to update TLS configuration. Check server logs.",
        ));
    }
    ctx.shared.apply_config(config);
    ctx.reply().ok();
    Ok(())
}

/// `CONFIG RESETSTAT`
pub fn config_resetstat(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.shared.door.stats.reset();
    ctx.shared.store.reset_stats();
    ctx.reply().ok();
    Ok(())
}

/// `SLOWLOG GET [count]`
pub fn slowlog_get(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() > 3 {
        return Err(super::subcommand_syntax_error(argv));
    }
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
    let entries = ctx.shared.door.slowlog.newest(count);
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
    let len = ctx.shared.door.slowlog.len();
    ctx.reply().int(len as i64);
    Ok(())
}

/// `SLOWLOG RESET`
pub fn slowlog_reset(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.shared.door.slowlog.reset();
    ctx.reply().ok();
    Ok(())
}

/// `MEMORY USAGE key [SAMPLES count]`: the bytes the key is charged (exact; samples are moot,
/// but checked as Redis checks them: any number of `SAMPLES n`, `n >= 0`).
pub fn memory_usage(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let mut i = 3;
    while i < argv.len() {
        if is(argv.get(i), "SAMPLES") && i + 1 < argv.len() {
            if int_arg(argv.get(i + 1))? < 0 {
                return Err(CommandError::Syntax);
            }
            i += 2;
        } else {
            return Err(CommandError::Syntax);
        }
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

/// `OBJECT IDLETIME key`: an error under an LFU policy, as in Redis (the entry's clock holds
/// its counter then).
pub fn object_idletime(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Some(info) = ctx.shared.store.object_info(argv.get(2)) else {
        ctx.reply().null();
        return Ok(());
    };
    if ctx.shared.store.policy().is_lfu() {
        return Err(CommandError::fixed(
            "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ));
    }
    ctx.reply().int(info.idle_seconds as i64);
    Ok(())
}

/// `OBJECT FREQ key`: the key's LFU counter (decayed to now) under an LFU policy; an error
/// otherwise, as in Redis (access frequency is not tracked).
pub fn object_freq(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Some(info) = ctx.shared.store.object_info(argv.get(2)) else {
        ctx.reply().null();
        return Ok(());
    };
    if !ctx.shared.store.policy().is_lfu() {
        return Err(CommandError::fixed(
            "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        ));
    }
    ctx.reply().int(i64::from(info.frequency));
    Ok(())
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
    tracing::warn!(client = %ctx.conn.info.addr, "SHUTDOWN requested by a client");
    ctx.shared.request_shutdown();
    ctx.conn.close_after_reply = true;
    Ok(())
}
