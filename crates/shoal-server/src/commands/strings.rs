//! String commands: `GET`, `SET` and its family, counters, ranges.

use shoal_proto::{Argv, Reply};
use shoal_store::{Form, SetCondition, SetOptions, TtlUpdate, UpdateError};

use super::CommandResult;
use super::Ctx;
use super::{int_arg, is, store_error};
use crate::long_double::{self, FloatError};
use crate::notify::class;
use shoal_frontdoor::CommandError;

/// How an expiry argument is expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExpireUnit {
    /// `EX`: seconds from now.
    Seconds,
    /// `PX`: milliseconds from now.
    Milliseconds,
    /// `EXAT`: Unix seconds.
    UnixSeconds,
    /// `PXAT`: Unix milliseconds.
    UnixMilliseconds,
}

/// Converts an expiry argument to an absolute Unix time in ms, with Redis 7's checks (the
/// value must be a positive integer that does not overflow).
pub(crate) fn expire_at(
    ctx: &Ctx<'_>,
    unit: ExpireUnit,
    arg: &[u8],
    command: &'static str,
) -> Result<i64, CommandError> {
    let invalid = CommandError::InvalidExpireTime(command);
    let mut ms = int_arg(arg)?;
    let seconds = matches!(unit, ExpireUnit::Seconds | ExpireUnit::UnixSeconds);
    if ms <= 0 || (seconds && ms > i64::MAX / 1000) {
        return Err(invalid);
    }
    if seconds {
        ms *= 1000;
    }
    if matches!(unit, ExpireUnit::Seconds | ExpireUnit::Milliseconds) {
        ms = ms
            .checked_add(ctx.shared.store.now_ms() as i64)
            .ok_or(invalid.clone())?;
    }
    if ms <= 0 {
        return Err(invalid);
    }
    Ok(ms)
}

/// The options of `SET` and `GETEX`, parsed as Redis's `parseExtendedStringArgumentsOrReply`.
#[derive(Default)]
struct StringOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    persist: bool,
    expire: Option<(ExpireUnit, &'a [u8])>,
}

#[derive(PartialEq, Eq)]
enum OptionsFor {
    Set,
    GetEx,
}

fn parse_options<'a>(
    argv: &Argv<'a>,
    from: usize,
    target: OptionsFor,
) -> Result<StringOptions<'a>, CommandError> {
    let mut o = StringOptions::default();
    let set = target == OptionsFor::Set;
    let mut i = from;
    while i < argv.len() {
        let opt = argv.get(i);
        let next = argv.try_get(i + 1).filter(|_| i + 1 < argv.len());
        let has_expire = o.expire.is_some();
        let expire_unit = |name: &str, unit| (is(opt, name)).then_some(unit);
        let unit = expire_unit("EX", ExpireUnit::Seconds)
            .or_else(|| expire_unit("PX", ExpireUnit::Milliseconds))
            .or_else(|| expire_unit("EXAT", ExpireUnit::UnixSeconds))
            .or_else(|| expire_unit("PXAT", ExpireUnit::UnixMilliseconds));
        if set && is(opt, "NX") && !o.xx {
            o.nx = true;
        } else if set && is(opt, "XX") && !o.nx {
            o.xx = true;
        } else if set && is(opt, "GET") {
            o.get = true;
        } else if set && is(opt, "KEEPTTL") && !o.persist && !has_expire {
            o.keep_ttl = true;
        } else if !set && is(opt, "PERSIST") && !has_expire && !o.keep_ttl {
            o.persist = true;
        } else if let (Some(unit), Some(value)) = (unit, next) {
            // Redis lets the same unit repeat (the last wins) but not two different ones.
            if o.keep_ttl || o.persist || o.expire.is_some_and(|(u, _)| u != unit) {
                return Err(CommandError::Syntax);
            }
            o.expire = Some((unit, value));
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

/// `GET key`
pub fn get(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    if shared
        .store
        .get(argv.get(1), |v| Reply::new(out, protocol).bulk(v))
        .map_err(store_error)?
        .is_none()
    {
        ctx.key_miss(argv.get(1));
        ctx.reply().null();
    }
    Ok(())
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ms|KEEPTTL]`
pub fn set(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let options = parse_options(argv, 3, OptionsFor::Set)?;
    let ttl = match options.expire {
        Some((unit, arg)) => TtlUpdate::At(expire_at(ctx, unit, arg, "set")?),
        None if options.keep_ttl => TtlUpdate::Keep,
        None => TtlUpdate::Clear,
    };
    let condition = if options.nx {
        SetCondition::IfAbsent
    } else if options.xx {
        SetCondition::IfPresent
    } else {
        SetCondition::Always
    };
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    let get = options.get;
    let written = shared
        .store
        .set(
            argv.get(1),
            argv.get(2),
            SetOptions {
                condition,
                ttl,
                reads_old: get,
            },
            |old| {
                if get {
                    match old {
                        Some(v) => Reply::new(out, protocol).bulk(v),
                        None => Reply::new(out, protocol).null(),
                    }
                }
            },
        )
        .map_err(store_error)?;
    if written {
        ctx.notify(class::STRING, "set", argv.get(1));
        if matches!(ttl, TtlUpdate::At(_)) {
            ctx.notify(class::GENERIC, "expire", argv.get(1));
        }
    }
    if !get {
        if written {
            ctx.reply().ok();
        } else {
            ctx.reply().null();
        }
    }
    Ok(())
}

/// `SETNX key value`
pub fn setnx(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let options = SetOptions {
        condition: SetCondition::IfAbsent,
        ttl: TtlUpdate::Clear,
        reads_old: false,
    };
    let written = ctx
        .shared
        .store
        .set(argv.get(1), argv.get(2), options, |_| {})
        .map_err(store_error)?;
    if written {
        ctx.notify(class::STRING, "set", argv.get(1));
    }
    ctx.reply().int(i64::from(written));
    Ok(())
}

fn set_with_expiry(
    ctx: &mut Ctx<'_>,
    argv: &Argv<'_>,
    unit: ExpireUnit,
    command: &'static str,
) -> CommandResult {
    let at = expire_at(ctx, unit, argv.get(2), command)?;
    let options = SetOptions {
        condition: SetCondition::Always,
        ttl: TtlUpdate::At(at),
        reads_old: false,
    };
    ctx.shared
        .store
        .set(argv.get(1), argv.get(3), options, |_| {})
        .map_err(store_error)?;
    ctx.notify(class::STRING, "set", argv.get(1));
    ctx.notify(class::GENERIC, "expire", argv.get(1));
    ctx.reply().ok();
    Ok(())
}

/// `SETEX key seconds value`
pub fn setex(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    set_with_expiry(ctx, argv, ExpireUnit::Seconds, "setex")
}

/// `PSETEX key milliseconds value`
pub fn psetex(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    set_with_expiry(ctx, argv, ExpireUnit::Milliseconds, "psetex")
}

/// `GETEX key [EX s|PX ms|EXAT ts|PXAT ms|PERSIST]`
pub fn getex(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let options = parse_options(argv, 2, OptionsFor::GetEx)?;
    let ttl = match options.expire {
        Some((unit, arg)) => match expire_at(ctx, unit, arg, "getex") {
            Ok(at) => TtlUpdate::At(at),
            // Redis looks the key up before it checks the time: a missing key answers null,
            // a key of another type WRONGTYPE.
            Err(error) => {
                if ctx
                    .shared
                    .store
                    .get(argv.get(1), |_| ())
                    .map_err(store_error)?
                    .is_none()
                {
                    ctx.reply().null();
                    return Ok(());
                }
                return Err(error);
            }
        },
        None if options.persist => TtlUpdate::Clear,
        None => TtlUpdate::Keep,
    };
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    let found = shared
        .store
        .get_ex(argv.get(1), ttl, |v| Reply::new(out, protocol).bulk(v))
        .map_err(store_error)?;
    match found {
        None => ctx.reply().null(),
        Some(_) if matches!(ttl, TtlUpdate::At(_)) => {
            ctx.notify(class::GENERIC, "expire", argv.get(1));
        }
        Some(_) => {}
    }
    Ok(())
}

/// `GETDEL key`
pub fn getdel(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    if shared
        .store
        .get_del(argv.get(1), |v| Reply::new(out, protocol).bulk(v))
        .map_err(store_error)?
        .is_none()
    {
        ctx.reply().null();
    } else {
        ctx.notify(class::GENERIC, "del", argv.get(1));
    }
    Ok(())
}

/// `GETSET key value`
pub fn getset(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    shared
        .store
        .set(
            argv.get(1),
            argv.get(2),
            SetOptions {
                reads_old: true,
                ..SetOptions::default()
            },
            |old| match old {
                Some(v) => Reply::new(out, protocol).bulk(v),
                None => Reply::new(out, protocol).null(),
            },
        )
        .map_err(store_error)?;
    ctx.notify(class::STRING, "set", argv.get(1));
    Ok(())
}

/// `MGET key [key ...]`
pub fn mget(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    let keys = (1..argv.len()).map(|i| argv.get(i));
    Reply::new(out, protocol).array(keys.len());
    let events = &shared.events;
    shared.store.get_many(keys, |i, value| match value {
        Some(v) => Reply::new(out, protocol).bulk(v),
        None => {
            // As Redis: a miss's notification comes before its element, inside the array.
            if events.wants(class::KEY_MISS) {
                events.notify(class::KEY_MISS, "keymiss", argv.get(i + 1));
                conn.deliver_messages(out);
            }
            Reply::new(out, protocol).null()
        }
    });
    Ok(())
}

fn set_many(
    ctx: &mut Ctx<'_>,
    argv: &Argv<'_>,
    only_if_none_exist: bool,
    name: &'static str,
) -> Result<bool, CommandError> {
    if argv.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity(name));
    }
    let argv = *argv;
    let pairs = (1..argv.len())
        .step_by(2)
        .map(move |i| (argv.get(i), argv.get(i + 1)));
    ctx.shared
        .store
        .set_many(pairs, only_if_none_exist)
        .map_err(store_error)
}

/// `MSET key value [key value ...]`
/// `set` for every key of an `MSET`.
fn notify_set_many(ctx: &mut Ctx<'_>, argv: &Argv<'_>) {
    for i in (1..argv.len()).step_by(2) {
        ctx.notify(class::STRING, "set", argv.get(i));
    }
}

/// `MSET key value [key value ...]`
pub fn mset(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    set_many(ctx, argv, false, "mset")?;
    notify_set_many(ctx, argv);
    ctx.reply().ok();
    Ok(())
}

/// `MSETNX key value [key value ...]`
pub fn msetnx(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let written = set_many(ctx, argv, true, "msetnx")?;
    if written {
        notify_set_many(ctx, argv);
    }
    ctx.reply().int(i64::from(written));
    Ok(())
}

/// `APPEND key value`
pub fn append(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let max = ctx.shared.door.settings.max_bulk_len();
    let len = ctx
        .shared
        .store
        .append(argv.get(1), argv.get(2), max)
        .map_err(store_error)?;
    ctx.notify(class::STRING, "append", argv.get(1));
    ctx.reply().int(len as i64);
    Ok(())
}

/// `STRLEN key`
pub fn strlen(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let len = ctx
        .shared
        .store
        .get(argv.get(1), <[u8]>::len)
        .map_err(store_error)?
        .unwrap_or(0);
    ctx.reply().int(len as i64);
    Ok(())
}

/// The byte range `GETRANGE` returns, with Redis 7's index rules.
fn range_of(len: usize, start: i64, end: i64) -> Option<(usize, usize)> {
    let len = len as i64;
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return None;
    }
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let end = if end < 0 {
        (len + end).max(0)
    } else {
        end.min(len - 1)
    };
    (start <= end).then_some((start as usize, end as usize + 1))
}

/// `GETRANGE key start end`
pub fn getrange(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let start = int_arg(argv.get(2))?;
    let end = int_arg(argv.get(3))?;
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    let found = shared.store.get(argv.get(1), |v| {
        let slice = range_of(v.len(), start, end).map_or(&[][..], |(s, e)| &v[s..e]);
        Reply::new(out, protocol).bulk(slice);
    });
    if found.map_err(store_error)?.is_none() {
        ctx.reply().bulk(b"");
    }
    Ok(())
}

/// `SETRANGE key offset value`
pub fn setrange(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let offset = int_arg(argv.get(2))?;
    if offset < 0 {
        return Err(CommandError::fixed("ERR offset is out of range"));
    }
    let max = ctx.shared.door.settings.max_bulk_len();
    let len = ctx
        .shared
        .store
        .set_range(argv.get(1), offset as usize, argv.get(3), max)
        .map_err(store_error)?;
    if !argv.get(3).is_empty() {
        ctx.notify(class::STRING, "setrange", argv.get(1));
    }
    ctx.reply().int(len as i64);
    Ok(())
}

/// Adds `delta` to the integer `key` holds (a missing key counts 0), as `INCRBY` does, with
/// its errors and its `incrby` event; returns the new value (no reply written).
pub(crate) fn increment(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> Result<i64, CommandError> {
    let result = ctx.shared.store.update(key, Form::Auto, |current, out| {
        let old = match current {
            Some(v) => shoal_store::parse_i64(v).ok_or(CommandError::NotInteger)?,
            None => 0,
        };
        let new = old.checked_add(delta).ok_or(CommandError::Overflow)?;
        out.extend_from_slice(itoa::Buffer::new().format(new).as_bytes());
        Ok((true, new))
    });
    match result {
        Ok(n) => {
            ctx.notify(class::STRING, "incrby", key);
            Ok(n)
        }
        Err(UpdateError::Rejected(e)) => Err(e),
        Err(UpdateError::Store(e)) => Err(store_error(e)),
    }
}

fn incr_by(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> CommandResult {
    let n = increment(ctx, key, delta)?;
    ctx.reply().int(n);
    Ok(())
}

/// `INCR key`
pub fn incr(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    incr_by(ctx, argv.get(1), 1)
}

/// `DECR key`
pub fn decr(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    incr_by(ctx, argv.get(1), -1)
}

/// `INCRBY key increment`
pub fn incrby(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let delta = int_arg(argv.get(2))?;
    incr_by(ctx, argv.get(1), delta)
}

/// `DECRBY key decrement`
pub fn decrby(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let delta = int_arg(argv.get(2))?;
    if delta == i64::MIN {
        return Err(CommandError::fixed("ERR decrement would overflow"));
    }
    incr_by(ctx, argv.get(1), -delta)
}

/// `INCRBYFLOAT key increment`
pub fn incrbyfloat(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let increment = argv.get(2);
    let result = ctx
        .shared
        .store
        .update(argv.get(1), Form::Text, |current, out| {
            let text = long_double::incr_by_float(current, increment).map_err(|e| match e {
                FloatError::NotFloat => CommandError::NotFloat,
                FloatError::NanOrInfinity => CommandError::NanOrInfinity,
            })?;
            out.extend_from_slice(text.as_bytes());
            Ok((true, text))
        });
    match result {
        Ok(text) => {
            ctx.notify(class::STRING, "incrbyfloat", argv.get(1));
            ctx.reply().bulk(text.as_bytes());
            Ok(())
        }
        Err(UpdateError::Rejected(e)) => Err(e),
        Err(UpdateError::Store(e)) => Err(store_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::range_of;

    #[test]
    fn getrange_indices_follow_redis() {
        // "Hello World" (11 bytes), cases from Redis's documentation and tests.
        assert_eq!(range_of(11, 0, 3), Some((0, 4)));
        assert_eq!(range_of(11, -3, -1), Some((8, 11)));
        assert_eq!(range_of(11, 0, -1), Some((0, 11)));
        assert_eq!(range_of(11, 10, 100), Some((10, 11)));
        assert_eq!(range_of(11, 5, 3), None);
        assert_eq!(range_of(11, -1, -5), None);
        assert_eq!(range_of(11, -100, 2), Some((0, 3)));
        assert_eq!(range_of(0, 0, -1), None);
    }
}
