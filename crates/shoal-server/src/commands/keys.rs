//! Keyspace commands: deletion, existence, expiry, iteration, renaming, flushing.

use shoal_proto::{Argv, Reply};
use shoal_store::{ExpireCondition, ExpireOutcome, KeyTtl, RenameOutcome, glob_match};

use super::CommandResult;
use super::Ctx;
use super::strings::ExpireUnit;
use super::{int_arg, is, store_error};
use crate::notify::class;
use shoal_frontdoor::CommandError;

fn keys_from<'a>(
    argv: &Argv<'a>,
    first: usize,
) -> impl ExactSizeIterator<Item = &'a [u8]> + Clone + use<'a> {
    let argv = *argv;
    (first..argv.len()).map(move |i| argv.get(i))
}

/// `DEL key [key ...]` and `UNLINK key [key ...]`
pub fn del(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let removed = remove(ctx, keys_from(argv, 1));
    ctx.reply().int(removed as i64);
    Ok(())
}

/// Deletes `keys` atomically, as `DEL` does, with a `del` event for each that existed;
/// returns how many did (no reply written).
pub(crate) fn remove<'k>(
    ctx: &mut Ctx<'_>,
    keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
) -> usize {
    let mut deleted = Vec::new();
    let noting = ctx.shared.events.wants(class::GENERIC);
    let removed = ctx.shared.store.remove_many_noting(keys.clone(), |i| {
        if noting {
            deleted.push(i);
        }
    });
    if !deleted.is_empty() {
        // The store visits the keys in order, so the positions come sorted.
        let mut deleted = deleted.into_iter().peekable();
        for (i, key) in keys.enumerate() {
            if deleted.next_if_eq(&i).is_some() {
                ctx.notify(class::GENERIC, "del", key);
            }
        }
    }
    removed
}

/// `EXISTS key [key ...]`
pub fn exists(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let count = ctx.shared.store.count_existing(keys_from(argv, 1));
    ctx.reply().int(count as i64);
    Ok(())
}

/// `TOUCH key [key ...]`
pub fn touch(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let count = ctx.shared.store.touch(keys_from(argv, 1));
    ctx.reply().int(count as i64);
    Ok(())
}

/// Shared body of the `EXPIRE` family, with Redis 7's option parsing and overflow checks.
fn expire_generic(
    ctx: &mut Ctx<'_>,
    argv: &Argv<'_>,
    unit: ExpireUnit,
    command: &'static str,
) -> CommandResult {
    let mut condition = ExpireCondition::default();
    for i in 3..argv.len() {
        let opt = argv.get(i);
        if is(opt, "NX") {
            condition.nx = true;
        } else if is(opt, "XX") {
            condition.xx = true;
        } else if is(opt, "GT") {
            condition.gt = true;
        } else if is(opt, "LT") {
            condition.lt = true;
        } else {
            return Err(CommandError::quoting("ERR Unsupported option ", opt, ""));
        }
    }
    if condition.nx && (condition.xx || condition.gt || condition.lt) {
        return Err(CommandError::fixed(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if condition.gt && condition.lt {
        return Err(CommandError::fixed(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let invalid = CommandError::InvalidExpireTime(command);
    let mut when = int_arg(argv.get(2))?;
    if matches!(unit, ExpireUnit::Seconds | ExpireUnit::UnixSeconds) {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(invalid);
        }
        when *= 1000;
    }
    if matches!(unit, ExpireUnit::Seconds | ExpireUnit::Milliseconds) {
        when = when
            .checked_add(ctx.shared.store.now_ms() as i64)
            .ok_or(invalid)?;
    }
    let outcome = ctx
        .shared
        .store
        .expire(argv.get(1), when, condition)
        .map_err(store_error)?;
    match outcome {
        ExpireOutcome::Applied => ctx.notify(class::GENERIC, "expire", argv.get(1)),
        ExpireOutcome::Deleted => ctx.notify(class::GENERIC, "del", argv.get(1)),
        ExpireOutcome::NoKey | ExpireOutcome::NotApplied => {}
    }
    let applied = matches!(outcome, ExpireOutcome::Applied | ExpireOutcome::Deleted);
    ctx.reply().int(i64::from(applied));
    Ok(())
}

/// `EXPIRE key seconds [NX|XX|GT|LT]`
pub fn expire(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    expire_generic(ctx, argv, ExpireUnit::Seconds, "expire")
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]`
pub fn pexpire(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    expire_generic(ctx, argv, ExpireUnit::Milliseconds, "pexpire")
}

/// `EXPIREAT key unix-seconds [NX|XX|GT|LT]`
pub fn expireat(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    expire_generic(ctx, argv, ExpireUnit::UnixSeconds, "expireat")
}

/// `PEXPIREAT key unix-milliseconds [NX|XX|GT|LT]`
pub fn pexpireat(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    expire_generic(ctx, argv, ExpireUnit::UnixMilliseconds, "pexpireat")
}

/// Which form of a key's expiry the `TTL` family reports.
enum TtlForm {
    RemainingSeconds,
    RemainingMilliseconds,
    UnixSeconds,
    UnixMilliseconds,
}

fn ttl_generic(ctx: &mut Ctx<'_>, argv: &Argv<'_>, form: TtlForm) -> CommandResult {
    let value = match ctx.shared.store.ttl(argv.get(1)) {
        KeyTtl::NoKey => -2,
        KeyTtl::Persistent => -1,
        KeyTtl::ExpiresAt(at) => {
            let remaining = (at as i64 - ctx.shared.store.now_ms() as i64).max(0);
            match form {
                TtlForm::RemainingSeconds => (remaining + 500) / 1000,
                TtlForm::RemainingMilliseconds => remaining,
                // Redis rounds here too: `(expire + 500) / 1000`.
                TtlForm::UnixSeconds => (at as i64 + 500) / 1000,
                TtlForm::UnixMilliseconds => at as i64,
            }
        }
    };
    ctx.reply().int(value);
    Ok(())
}

/// `TTL key`
pub fn ttl(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    ttl_generic(ctx, argv, TtlForm::RemainingSeconds)
}

/// `PTTL key`
pub fn pttl(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    ttl_generic(ctx, argv, TtlForm::RemainingMilliseconds)
}

/// `EXPIRETIME key`
pub fn expiretime(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    ttl_generic(ctx, argv, TtlForm::UnixSeconds)
}

/// `PEXPIRETIME key`
pub fn pexpiretime(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    ttl_generic(ctx, argv, TtlForm::UnixMilliseconds)
}

/// `PERSIST key`
pub fn persist(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let removed = ctx.shared.store.persist(argv.get(1)).map_err(store_error)?;
    if removed == Some(true) {
        ctx.notify(class::GENERIC, "persist", argv.get(1));
    }
    ctx.reply().int(i64::from(removed == Some(true)));
    Ok(())
}

/// `TYPE key`
pub fn type_(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let kind = ctx.shared.store.kind_of(argv.get(1));
    ctx.reply().simple(kind.map_or("none", |k| k.name()));
    Ok(())
}

/// Collects keys into one buffer (lengths and bytes) to reply once their number is known.
#[derive(Default)]
pub(crate) struct KeyList {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl KeyList {
    pub(crate) fn push(&mut self, key: &[u8]) {
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
    }

    pub(crate) fn write(&self, reply: &mut Reply<'_>) {
        reply.array(self.ends.len());
        let mut start = 0;
        for &end in &self.ends {
            reply.bulk(&self.bytes[start..end]);
            start = end;
        }
    }
}

/// `KEYS pattern`
pub fn keys(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let pattern = argv.get(1);
    let all = pattern == b"*";
    let mut list = KeyList::default();
    ctx.shared.store.for_each_key(|key| {
        if all || glob_match(pattern, key, false) {
            list.push(key);
        }
    });
    list.write(&mut ctx.reply());
    Ok(())
}

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]`
pub fn scan(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let cursor = parse_cursor(argv.get(1)).ok_or(CommandError::fixed("ERR invalid cursor"))?;
    let mut pattern: Option<&[u8]> = None;
    let mut count = 10usize;
    let mut only_type: Option<&[u8]> = None;
    let mut i = 2;
    while i < argv.len() {
        let Some(value) = argv.try_get(i + 1) else {
            return Err(CommandError::Syntax);
        };
        if is(argv.get(i), "MATCH") {
            pattern = Some(value).filter(|p| *p != b"*");
        } else if is(argv.get(i), "COUNT") {
            let n = int_arg(value)?;
            if n < 1 {
                return Err(CommandError::Syntax);
            }
            count = n as usize;
        } else if is(argv.get(i), "TYPE") {
            only_type = Some(value);
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let mut list = KeyList::default();
    let next = ctx.shared.store.scan(cursor, count, |key, kind| {
        let typed = only_type.is_none_or(|t| t.eq_ignore_ascii_case(kind.name().as_bytes()));
        if typed && pattern.is_none_or(|p| glob_match(p, key, false)) {
            list.push(key);
        }
    });
    let mut reply = ctx.reply();
    reply.array(2);
    reply.bulk(itoa::Buffer::new().format(next).as_bytes());
    list.write(&mut reply);
    Ok(())
}

/// Parses a `SCAN` cursor as Redis does with `strtoul(s, &end, 10)`: no leading space, an
/// optional sign (a negative cursor wraps around, as C's unsigned negation does), digits, nothing
/// after them, no overflow. An empty string is cursor 0.
pub(crate) fn parse_cursor(arg: &[u8]) -> Option<u64> {
    let arg = shoal_proto::args::c_str(arg);
    let (negative, digits) = match arg.split_first() {
        None => return Some(0),
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        Some(_) => (false, arg),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

/// `RANDOMKEY`
pub fn randomkey(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    if shared
        .store
        .random_key(|k| Reply::new(out, protocol).bulk(k))
        .is_none()
    {
        ctx.reply().null();
    }
    Ok(())
}

/// `RENAME key newkey`
pub fn rename(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    match ctx
        .shared
        .store
        .rename(argv.get(1), argv.get(2), false)
        .map_err(store_error)?
    {
        RenameOutcome::NoSuchKey => Err(CommandError::NoSuchKey),
        _ => {
            renamed(ctx, argv);
            ctx.reply().ok();
            Ok(())
        }
    }
}

/// `RENAMENX key newkey`
pub fn renamenx(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    match ctx
        .shared
        .store
        .rename(argv.get(1), argv.get(2), true)
        .map_err(store_error)?
    {
        RenameOutcome::NoSuchKey => Err(CommandError::NoSuchKey),
        RenameOutcome::DestinationExists => {
            ctx.reply().int(0);
            Ok(())
        }
        RenameOutcome::Renamed => {
            renamed(ctx, argv);
            ctx.reply().int(1);
            Ok(())
        }
    }
}

/// The notifications of a rename, as Redis sends them.
fn renamed(ctx: &mut Ctx<'_>, argv: &Argv<'_>) {
    ctx.notify(class::GENERIC, "rename_from", argv.get(1));
    ctx.notify(class::GENERIC, "rename_to", argv.get(2));
}

/// `COPY source destination [DB destination-db] [REPLACE]`
pub fn copy(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let mut replace = false;
    let mut i = 3;
    while i < argv.len() {
        if is(argv.get(i), "REPLACE") {
            replace = true;
        } else if is(argv.get(i), "DB") && i + 1 < argv.len() {
            if super::int32_arg(argv.get(i + 1))? != 0 {
                return Err(CommandError::DbIndexOutOfRange);
            }
            i += 1;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    if argv.get(1) == argv.get(2) {
        return Err(CommandError::fixed(
            "ERR source and destination objects are the same",
        ));
    }
    let copied = ctx
        .shared
        .store
        .copy(argv.get(1), argv.get(2), replace)
        .map_err(store_error)?;
    if copied {
        ctx.notify(class::GENERIC, "copy_to", argv.get(2));
    }
    ctx.reply().int(i64::from(copied));
    Ok(())
}

/// `DBSIZE`
pub fn dbsize(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let keys = ctx.shared.store.len();
    ctx.reply().int(keys as i64);
    Ok(())
}

/// `FLUSHALL [ASYNC|SYNC]` and `FLUSHDB [ASYNC|SYNC]`
pub fn flushall(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() > 2 || (argv.len() == 2 && !is(argv.get(1), "ASYNC") && !is(argv.get(1), "SYNC"))
    {
        return Err(CommandError::Syntax);
    }
    ctx.shared.store.clear();
    ctx.reply().ok();
    Ok(())
}
