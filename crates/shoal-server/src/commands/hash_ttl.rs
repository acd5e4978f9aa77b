//! Hash field expiry, as Redis 7.4 and 8.0 have it: `HEXPIRE`, `HPEXPIRE`, `HEXPIREAT`,
//! `HPEXPIREAT`, `HTTL`, `HPTTL`, `HEXPIRETIME`, `HPEXPIRETIME`, `HPERSIST` (7.4), and
//! `HGETDEL`, `HGETEX`, `HSETEX` (8.0).
//!
//! Redis 7.0 (the differential suite's reference) has none of them: replies, error texts and
//! events follow Redis's documentation and source, and `tests/hash_ttl.rs` checks them.
//! Every command takes its fields as `FIELDS numfields field [field ...]` at the end. A key
//! holding another type answers `WRONGTYPE` before any argument error; a missing key answers
//! per field as a missing field does (`-2`, or nil for the commands that return values).

use shoal_frontdoor::CommandError;
use shoal_proto::{Argv, Reply};
use shoal_store::{HashSlot, HashWrite};

use super::{CommandResult, Ctx, int_arg, is, store_error};
use crate::notify::class;

/// Field expiry is kept to 48 bits of milliseconds, as Redis's `EB_EXPIRE_TIME_MAX`.
const MAX_EXPIRY_MS: i64 = (1 << 48) - 1;

/// Per-field replies of the `HEXPIRE` family and `HPERSIST`.
const NO_FIELD: i64 = -2;
const NO_TTL: i64 = -1;

/// Runs `f` on the hash at `key` (`None`: no such key; never created) with a reply writer.
fn with_hash<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(Option<&mut HashWrite<'_>>, &mut Reply<'_>) -> R,
) -> Result<R, CommandError> {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    shared
        .store
        .hash_write(key, false, |slot| {
            let mut reply = Reply::new(out, protocol);
            match slot {
                HashSlot::Hash(h) => f(Some(h), &mut reply),
                HashSlot::Absent => f(None, &mut reply),
            }
        })
        .map_err(store_error)
}

/// The `FIELDS numfields ...` block at `at`, which must end the command with `per_field`
/// arguments per field: the position of the first field and the number of fields.
fn fields_block(
    argv: &Argv<'_>,
    at: usize,
    per_field: usize,
) -> Result<(usize, usize), CommandError> {
    if at >= argv.len() || !is(argv.get(at), "FIELDS") {
        return Err(CommandError::fixed(
            "ERR Mandatory argument FIELDS is missing or not at the right position",
        ));
    }
    let count = argv
        .try_get(at + 1)
        .filter(|_| at + 1 < argv.len())
        .and_then(shoal_store::parse_i64)
        .filter(|&n| n >= 1)
        .ok_or(CommandError::fixed(
            "ERR Parameter `numFields` should be greater than 0",
        ))?;
    let given = (argv.len() - at - 2) as i64;
    if count.checked_mul(per_field as i64) != Some(given) {
        return Err(CommandError::fixed(
            "ERR The `numfields` parameter must match the number of arguments",
        ));
    }
    Ok((at + 2, count as usize))
}

/// How a time argument is given.
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Milliseconds,
    UnixSeconds,
    UnixMilliseconds,
}

/// An expiry argument as an absolute Unix time in ms, with Redis's field-expiry checks.
fn expiry_ms(
    ctx: &Ctx<'_>,
    arg: &[u8],
    unit: Unit,
    command: &'static str,
) -> Result<u64, CommandError> {
    let mut value = int_arg(arg)?;
    if value < 0 {
        return Err(CommandError::fixed("ERR invalid expire time, must be >= 0"));
    }
    let invalid = CommandError::InvalidExpireTime(command);
    if matches!(unit, Unit::Seconds | Unit::UnixSeconds) {
        if value > MAX_EXPIRY_MS / 1000 {
            return Err(invalid);
        }
        value *= 1000;
    }
    let base = match unit {
        Unit::Seconds | Unit::Milliseconds => ctx.shared.store.now_ms() as i64,
        Unit::UnixSeconds | Unit::UnixMilliseconds => 0,
    };
    if value > MAX_EXPIRY_MS - base {
        return Err(invalid);
    }
    Ok((value + base) as u64)
}

/// What a field-expiry command changed, for its events.
#[derive(Default)]
struct Changes {
    set: usize,
    expired: usize,
    persisted: usize,
    emptied: bool,
}

impl Changes {
    /// Sends the events of what changed: `hexpired` for fields deleted by a time in the
    /// past, `hexpire` for expiries set, `hpersist`, and `del` if the hash went.
    fn notify(&self, ctx: &mut Ctx<'_>, key: &[u8]) {
        if self.expired > 0 {
            ctx.notify(class::HASH, "hexpired", key);
        }
        if self.set > 0 {
            ctx.notify(class::HASH, "hexpire", key);
        }
        if self.persisted > 0 {
            ctx.notify(class::HASH, "hpersist", key);
        }
        if self.emptied {
            ctx.notify(class::GENERIC, "del", key);
        }
    }
}

/// Sets or clears a field's expiry (`at`: `None` clears); a time not after now deletes it.
fn apply_expiry(h: &mut HashWrite<'_>, field: &[u8], at: Option<u64>, changes: &mut Changes) {
    match at {
        Some(at) if at <= h.now() => {
            h.remove(field);
            changes.expired += 1;
        }
        Some(at) => {
            h.set_expiry(field, Some(at));
            changes.set += 1;
        }
        None => {
            h.set_expiry(field, None);
            changes.persisted += 1;
        }
    }
}

fn hexpire_generic(
    ctx: &mut Ctx<'_>,
    argv: &Argv<'_>,
    unit: Unit,
    command: &'static str,
) -> CommandResult {
    let parsed = (|| {
        let at = expiry_ms(ctx, argv.get(2), unit, command)?;
        let option = argv.get(3);
        let condition = ["NX", "XX", "GT", "LT"].into_iter().find(|c| is(option, c));
        let fields = fields_block(argv, if condition.is_some() { 4 } else { 3 }, 1)?;
        Ok::<_, CommandError>((at, condition, fields))
    })();
    let mut changes = Changes::default();
    with_hash(ctx, argv.get(1), |h, reply| {
        let (at, condition, (first, count)) = parsed?;
        reply.array(count);
        let Some(h) = h else {
            (0..count).for_each(|_| reply.int(NO_FIELD));
            return Ok(());
        };
        for i in first..first + count {
            let field = argv.get(i);
            let Some(current) = h.get(field).map(|f| f.expiry) else {
                reply.int(NO_FIELD);
                continue;
            };
            let refused = match condition {
                Some("NX") => current.is_some(),
                Some("XX") => current.is_none(),
                Some("GT") => current.is_none_or(|c| at <= c),
                Some("LT") => current.is_some_and(|c| at >= c),
                _ => false,
            };
            if refused {
                reply.int(0);
                continue;
            }
            let expired_before = changes.expired;
            apply_expiry(h, field, Some(at), &mut changes);
            reply.int(if changes.expired > expired_before {
                2
            } else {
                1
            });
        }
        changes.emptied = h.is_empty();
        Ok(())
    })??;
    changes.notify(ctx, argv.get(1));
    Ok(())
}

/// `HEXPIRE key seconds [NX|XX|GT|LT] FIELDS numfields field [field ...]`
pub fn hexpire(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    hexpire_generic(ctx, argv, Unit::Seconds, "hexpire")
}

/// `HPEXPIRE key milliseconds [NX|XX|GT|LT] FIELDS numfields field [field ...]`
pub fn hpexpire(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    hexpire_generic(ctx, argv, Unit::Milliseconds, "hpexpire")
}

/// `HEXPIREAT key unix-seconds [NX|XX|GT|LT] FIELDS numfields field [field ...]`
pub fn hexpireat(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    hexpire_generic(ctx, argv, Unit::UnixSeconds, "hexpireat")
}

/// `HPEXPIREAT key unix-milliseconds [NX|XX|GT|LT] FIELDS numfields field [field ...]`
pub fn hpexpireat(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    hexpire_generic(ctx, argv, Unit::UnixMilliseconds, "hpexpireat")
}

/// Which form of a field's expiry the `HTTL` family reports.
#[derive(Clone, Copy)]
enum TtlForm {
    Remaining(Unit),
    At(Unit),
}

fn httl_generic(ctx: &mut Ctx<'_>, argv: &Argv<'_>, form: TtlForm) -> CommandResult {
    let parsed = fields_block(argv, 2, 1);
    let now = ctx.shared.store.now_ms();
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    shared
        .store
        .hash_read(argv.get(1), |h| {
            let (first, count) = parsed?;
            let mut reply = Reply::new(out, protocol);
            reply.array(count);
            for i in first..first + count {
                let value = match h.and_then(|h| h.get(argv.get(i))) {
                    None => NO_FIELD,
                    Some(f) => match f.expiry {
                        None => NO_TTL,
                        Some(at) => {
                            let (base, unit) = match form {
                                TtlForm::Remaining(unit) => (now, unit),
                                TtlForm::At(unit) => (0, unit),
                            };
                            let ms = at.saturating_sub(base) as i64;
                            match unit {
                                Unit::Seconds | Unit::UnixSeconds => (ms + 999) / 1000,
                                _ => ms,
                            }
                        }
                    },
                };
                reply.int(value);
            }
            Ok(())
        })
        .map_err(store_error)?
}

/// `HTTL key FIELDS numfields field [field ...]`
pub fn httl(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    httl_generic(ctx, argv, TtlForm::Remaining(Unit::Seconds))
}

/// `HPTTL key FIELDS numfields field [field ...]`
pub fn hpttl(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    httl_generic(ctx, argv, TtlForm::Remaining(Unit::Milliseconds))
}

/// `HEXPIRETIME key FIELDS numfields field [field ...]`
pub fn hexpiretime(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    httl_generic(ctx, argv, TtlForm::At(Unit::UnixSeconds))
}

/// `HPEXPIRETIME key FIELDS numfields field [field ...]`
pub fn hpexpiretime(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    httl_generic(ctx, argv, TtlForm::At(Unit::UnixMilliseconds))
}

/// `HPERSIST key FIELDS numfields field [field ...]`
pub fn hpersist(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let parsed = fields_block(argv, 2, 1);
    let mut changes = Changes::default();
    with_hash(ctx, argv.get(1), |mut h, reply| {
        let (first, count) = parsed?;
        reply.array(count);
        for i in first..first + count {
            let field = argv.get(i);
            let code = match h.as_deref().and_then(|h| h.get(field)).map(|f| f.expiry) {
                None => NO_FIELD,
                Some(None) => NO_TTL,
                Some(Some(_)) => {
                    if let Some(h) = h.as_deref_mut() {
                        apply_expiry(h, field, None, &mut changes);
                    }
                    1
                }
            };
            reply.int(code);
        }
        Ok(())
    })??;
    changes.notify(ctx, argv.get(1));
    Ok(())
}

/// `HGETDEL key FIELDS numfields field [field ...]`
pub fn hgetdel(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let parsed = fields_block(argv, 2, 1);
    let (deleted, emptied) = with_hash(ctx, argv.get(1), |h, reply| {
        let (first, count) = parsed?;
        reply.array(count);
        let mut deleted = 0;
        let mut h = h;
        for i in first..first + count {
            let field = argv.get(i);
            match h.as_deref().and_then(|h| h.get(field)) {
                Some(f) => reply.bulk(f.value),
                None => {
                    reply.null();
                    continue;
                }
            }
            if let Some(h) = h.as_deref_mut() {
                h.remove(field);
                deleted += 1;
            }
        }
        Ok::<_, CommandError>((deleted, h.is_some_and(|h| h.is_empty())))
    })??;
    if deleted > 0 {
        ctx.notify(class::HASH, "hgetdel", argv.get(1));
        if emptied {
            ctx.notify(class::GENERIC, "del", argv.get(1));
        }
    }
    Ok(())
}

/// What `HGETEX` and `HSETEX` do to the fields' expiry.
#[derive(Clone, Copy, PartialEq)]
enum ExpiryChange {
    /// Leave it (`HGETEX` without option, `HSETEX ... KEEPTTL`).
    Keep,
    /// Remove it (`HGETEX ... PERSIST`, `HSETEX` without option).
    Clear,
    /// Set it (a time not after now deletes the field).
    At(u64),
}

/// Parses the options of `HGETEX` (`PERSIST`) or `HSETEX` (`FNX`, `FXX`, `KEEPTTL`) up to
/// their `FIELDS` block: the expiry change, the field condition, where `FIELDS` is.
fn expiry_options(
    ctx: &Ctx<'_>,
    argv: &Argv<'_>,
    setting: bool,
    command: &'static str,
) -> Result<(ExpiryChange, Option<bool>, usize), CommandError> {
    let mut change = None;
    let mut condition = None;
    let mut i = 2;
    let only_one = || {
        CommandError::fixed(if setting {
            "ERR Only one of EX, PX, EXAT, PXAT or KEEPTTL arguments can be specified"
        } else {
            "ERR Only one of EX, PX, EXAT, PXAT or PERSIST arguments can be specified"
        })
    };
    while i < argv.len() && !is(argv.get(i), "FIELDS") {
        let opt = argv.get(i);
        let unit = [
            ("EX", Unit::Seconds),
            ("PX", Unit::Milliseconds),
            ("EXAT", Unit::UnixSeconds),
            ("PXAT", Unit::UnixMilliseconds),
        ]
        .into_iter()
        .find(|(name, _)| is(opt, name))
        .map(|(_, unit)| unit);
        if let Some(unit) = unit {
            if change.is_some() {
                return Err(only_one());
            }
            let value = argv
                .try_get(i + 1)
                .filter(|_| i + 1 < argv.len())
                .ok_or(CommandError::Syntax)?;
            change = Some(ExpiryChange::At(expiry_ms(ctx, value, unit, command)?));
            i += 2;
            continue;
        }
        if (setting && is(opt, "KEEPTTL")) || (!setting && is(opt, "PERSIST")) {
            if change.is_some() {
                return Err(only_one());
            }
            change = Some(if setting {
                ExpiryChange::Keep
            } else {
                ExpiryChange::Clear
            });
        } else if setting && (is(opt, "FNX") || is(opt, "FXX")) {
            if condition.is_some() {
                return Err(CommandError::fixed(
                    "ERR Only one of FXX or FNX arguments can be specified",
                ));
            }
            condition = Some(is(opt, "FNX"));
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    let default = if setting {
        ExpiryChange::Clear
    } else {
        ExpiryChange::Keep
    };
    Ok((change.unwrap_or(default), condition, i))
}

/// `HGETEX key [EX seconds|PX ms|EXAT unix-seconds|PXAT unix-ms|PERSIST] FIELDS numfields field [field ...]`
pub fn hgetex(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let parsed = expiry_options(ctx, argv, false, "hgetex")
        .and_then(|(change, _, at)| Ok((change, fields_block(argv, at, 1)?)));
    let mut changes = Changes::default();
    with_hash(ctx, argv.get(1), |h, reply| {
        let (change, (first, count)) = parsed?;
        reply.array(count);
        let mut h = h;
        for i in first..first + count {
            let field = argv.get(i);
            let current = match h.as_deref().and_then(|h| h.get(field)) {
                Some(f) => {
                    reply.bulk(f.value);
                    f.expiry
                }
                None => {
                    reply.null();
                    continue;
                }
            };
            if let Some(h) = h.as_deref_mut() {
                match change {
                    ExpiryChange::Keep => {}
                    ExpiryChange::Clear if current.is_none() => {}
                    ExpiryChange::Clear => apply_expiry(h, field, None, &mut changes),
                    ExpiryChange::At(at) => apply_expiry(h, field, Some(at), &mut changes),
                }
            }
        }
        changes.emptied = h.is_some_and(|h| h.is_empty());
        Ok(())
    })??;
    changes.notify(ctx, argv.get(1));
    Ok(())
}

/// `HSETEX key [FNX|FXX] [EX seconds|PX ms|EXAT unix-seconds|PXAT unix-ms|KEEPTTL] FIELDS numfields field value [field value ...]`
pub fn hsetex(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let (change, condition, at) = expiry_options(ctx, argv, true, "hsetex")?;
    let (first, count) = fields_block(argv, at, 2)?;
    let pairs = (0..count).map(|i| (argv.get(first + 2 * i), argv.get(first + 2 * i + 1)));
    let mut changes = Changes::default();
    let written = ctx
        .shared
        .store
        .hash_write(argv.get(1), condition != Some(false), |slot| {
            let HashSlot::Hash(h) = slot else {
                return false;
            };
            let allowed = match condition {
                Some(absent) => pairs.clone().all(|(f, _)| h.get(f).is_some() != absent),
                None => true,
            };
            if !allowed {
                return false;
            }
            for (field, value) in pairs.clone() {
                let expiry = match change {
                    ExpiryChange::Keep => h.get(field).and_then(|f| f.expiry),
                    ExpiryChange::Clear => None,
                    ExpiryChange::At(at) => Some(at),
                };
                h.set(field, value, None);
                if let Some(at) = expiry {
                    apply_expiry(h, field, Some(at), &mut changes);
                }
            }
            changes.emptied = h.is_empty();
            true
        })
        .map_err(store_error)?;
    ctx.reply().int(i64::from(written));
    if written {
        ctx.notify(class::HASH, "hset", argv.get(1));
        // Only the fields whose expiry changed are told apart.
        if matches!(change, ExpiryChange::At(_)) {
            changes.notify(ctx, argv.get(1));
        }
    }
    Ok(())
}
