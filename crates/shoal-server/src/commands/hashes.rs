//! Hash commands: `HSET`, `HGET`, `HDEL`, `HINCRBY`, `HSCAN`, `HRANDFIELD`... with Redis 7's
//! replies, errors and keyspace events (field expiry, Redis 7.4's, is in `hash_ttl`).
//!
//! Replies that list fields are written while the store holds the key's shard, straight into
//! the output buffer. Events are sent where Redis sends them relative to the reply: after it
//! for `HSET`, `HSETNX`, `HINCRBY`, `HINCRBYFLOAT`; before it for `HDEL`.

use shoal_frontdoor::CommandError;
use shoal_proto::{Argv, Reply};
use shoal_store::{Field, HashRef, HashSlot, glob_match};

use super::keys::{KeyList, parse_cursor};
use super::{CommandResult, Ctx, int_arg, is, store_error};
use crate::long_double::{self, FloatError};
use crate::notify::class;

/// Reads the hash at `key` with `f`, which writes the reply (`None`: no such key).
fn read<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    f: impl FnOnce(Option<HashRef<'_>>, &mut Reply<'_>) -> R,
) -> Result<R, CommandError> {
    let Ctx {
        shared, conn, out, ..
    } = ctx;
    let protocol = conn.protocol;
    shared
        .store
        .hash_read(key, |h| f(h, &mut Reply::new(out, protocol)))
        .map_err(store_error)
}

/// Field/value arguments from `from` to the end, which must come in pairs.
fn pairs<'a>(
    argv: &Argv<'a>,
    from: usize,
    name: &'static str,
) -> Result<impl Iterator<Item = (&'a [u8], &'a [u8])> + use<'a>, CommandError> {
    if argv.len() < from + 2 || !(argv.len() - from).is_multiple_of(2) {
        return Err(CommandError::WrongArity(name));
    }
    let argv = *argv;
    Ok((from..argv.len())
        .step_by(2)
        .map(move |i| (argv.get(i), argv.get(i + 1))))
}

/// Sets the fields of `HSET`/`HMSET`; returns how many were new.
fn set_fields(ctx: &mut Ctx<'_>, argv: &Argv<'_>, name: &'static str) -> Result<i64, CommandError> {
    let fields = pairs(argv, 2, name)?;
    let added = ctx
        .shared
        .store
        .hash_write(argv.get(1), true, |slot| match slot {
            HashSlot::Hash(h) => fields.filter(|(f, v)| h.set(f, v, None)).count(),
            HashSlot::Absent => 0,
        })
        .map_err(store_error)?;
    Ok(added as i64)
}

/// `HSET key field value [field value ...]`
pub fn hset(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let added = set_fields(ctx, argv, "hset")?;
    ctx.reply().int(added);
    ctx.notify(class::HASH, "hset", argv.get(1));
    Ok(())
}

/// `HMSET key field value [field value ...]`
pub fn hmset(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    set_fields(ctx, argv, "hmset")?;
    ctx.reply().ok();
    ctx.notify(class::HASH, "hset", argv.get(1));
    Ok(())
}

/// `HSETNX key field value`
pub fn hsetnx(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let (field, value) = (argv.get(2), argv.get(3));
    let set = ctx
        .shared
        .store
        .hash_write(argv.get(1), true, |slot| match slot {
            HashSlot::Hash(h) if h.get(field).is_none() => h.set(field, value, None),
            _ => false,
        })
        .map_err(store_error)?;
    ctx.reply().int(i64::from(set));
    if set {
        ctx.notify(class::HASH, "hset", argv.get(1));
    }
    Ok(())
}

/// `HGET key field`
pub fn hget(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    read(ctx, argv.get(1), |h, reply| {
        match h.and_then(|h| h.get(argv.get(2))) {
            Some(f) => reply.bulk(f.value),
            None => reply.null(),
        }
    })
}

/// `HMGET key field [field ...]`
pub fn hmget(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    read(ctx, argv.get(1), |h, reply| {
        reply.array(argv.len() - 2);
        for i in 2..argv.len() {
            match h.and_then(|h| h.get(argv.get(i))) {
                Some(f) => reply.bulk(f.value),
                None => reply.null(),
            }
        }
    })
}

/// What `HGETALL`, `HKEYS` and `HVALS` list.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listing {
    Both,
    Names,
    Values,
}

fn list(ctx: &mut Ctx<'_>, argv: &Argv<'_>, listing: Listing) -> CommandResult {
    read(ctx, argv.get(1), |h, reply| {
        let len = h.map_or(0, HashRef::len);
        match listing {
            Listing::Both => reply.map(len),
            _ => reply.array(len),
        }
        if let Some(h) = h {
            h.for_each(|f| {
                if listing != Listing::Values {
                    reply.bulk(f.name);
                }
                if listing != Listing::Names {
                    reply.bulk(f.value);
                }
            });
        }
    })
}

/// `HGETALL key`
pub fn hgetall(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    list(ctx, argv, Listing::Both)
}

/// `HKEYS key`
pub fn hkeys(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    list(ctx, argv, Listing::Names)
}

/// `HVALS key`
pub fn hvals(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    list(ctx, argv, Listing::Values)
}

/// `HLEN key`
pub fn hlen(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    read(ctx, argv.get(1), |h, reply| {
        reply.int(h.map_or(0, HashRef::len) as i64)
    })
}

/// `HEXISTS key field`
pub fn hexists(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    read(ctx, argv.get(1), |h, reply| {
        reply.int(i64::from(h.and_then(|h| h.get(argv.get(2))).is_some()))
    })
}

/// `HSTRLEN key field`
pub fn hstrlen(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    read(ctx, argv.get(1), |h, reply| {
        let len = h
            .and_then(|h| h.get(argv.get(2)))
            .map_or(0, |f| f.value.len());
        reply.int(len as i64)
    })
}

/// `HDEL key field [field ...]`
pub fn hdel(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let (removed, emptied) = ctx
        .shared
        .store
        .hash_write(argv.get(1), false, |slot| match slot {
            HashSlot::Hash(h) => {
                let removed = (2..argv.len()).filter(|&i| h.remove(argv.get(i))).count();
                (removed, h.is_empty())
            }
            HashSlot::Absent => (0, false),
        })
        .map_err(store_error)?;
    if removed > 0 {
        ctx.notify(class::HASH, "hdel", argv.get(1));
        if emptied {
            ctx.notify(class::GENERIC, "del", argv.get(1));
        }
    }
    ctx.reply().int(removed as i64);
    Ok(())
}

/// Read-modify-write of one field, keeping its expiry: `f` gets its value (`None`: absent) and
/// returns the new one and what to reply.
fn update_field<R>(
    ctx: &mut Ctx<'_>,
    key: &[u8],
    field: &[u8],
    f: impl FnOnce(Option<&[u8]>) -> Result<(Vec<u8>, R), CommandError>,
) -> Result<R, CommandError> {
    ctx.shared
        .store
        .hash_write(key, true, |slot| {
            let HashSlot::Hash(h) = slot else {
                unreachable!("a write that creates always gets a hash");
            };
            let current = h.get(field);
            let expiry = current.and_then(|c| c.expiry);
            let (value, result) = f(current.map(|c| c.value))?;
            h.set(field, &value, expiry);
            Ok(result)
        })
        .map_err(store_error)?
}

/// `HINCRBY key field increment`
pub fn hincrby(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let delta = int_arg(argv.get(3))?;
    let n = update_field(ctx, argv.get(1), argv.get(2), |current| {
        let old = match current {
            Some(v) => shoal_store::parse_i64(v)
                .ok_or(CommandError::fixed("ERR hash value is not an integer"))?,
            None => 0,
        };
        let new = old.checked_add(delta).ok_or(CommandError::Overflow)?;
        Ok((itoa::Buffer::new().format(new).as_bytes().to_vec(), new))
    })?;
    ctx.reply().int(n);
    ctx.notify(class::HASH, "hincrby", argv.get(1));
    Ok(())
}

/// `HINCRBYFLOAT key field increment`
pub fn hincrbyfloat(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let increment = argv.get(3);
    // The increment alone is checked first, as Redis does before it looks the key up.
    match long_double::incr_by_float(None, increment) {
        Err(FloatError::NotFloat) => return Err(CommandError::NotFloat),
        Err(FloatError::NanOrInfinity) => {
            return Err(CommandError::fixed("ERR value is NaN or Infinity"));
        }
        Ok(_) => {}
    }
    let text =
        update_field(ctx, argv.get(1), argv.get(2), |current| {
            let text = long_double::incr_by_float(Some(current.unwrap_or(b"0")), increment)
                .map_err(|e| match e {
                    FloatError::NotFloat => CommandError::fixed("ERR hash value is not a float"),
                    FloatError::NanOrInfinity => CommandError::NanOrInfinity,
                })?;
            Ok((text.as_bytes().to_vec(), text))
        })?;
    ctx.reply().bulk(text.as_bytes());
    ctx.notify(class::HASH, "hincrbyfloat", argv.get(1));
    Ok(())
}

/// The options of `HSCAN`, parsed as Redis's `scanGenericCommand`.
struct ScanOptions<'a> {
    pattern: Option<&'a [u8]>,
    count: usize,
    values: bool,
}

fn scan_options<'a>(argv: &Argv<'a>, from: usize) -> Result<ScanOptions<'a>, CommandError> {
    let mut options = ScanOptions {
        pattern: None,
        count: 10,
        values: true,
    };
    let mut i = from;
    while i < argv.len() {
        let opt = argv.get(i);
        if is(opt, "NOVALUES") {
            options.values = false;
            i += 1;
            continue;
        }
        let Some(value) = argv.try_get(i + 1).filter(|_| i + 1 < argv.len()) else {
            return Err(CommandError::Syntax);
        };
        if is(opt, "MATCH") {
            options.pattern = Some(value).filter(|p| *p != b"*");
        } else if is(opt, "COUNT") {
            let n = int_arg(value)?;
            if n < 1 {
                return Err(CommandError::Syntax);
            }
            options.count = n as usize;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    Ok(options)
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count] [NOVALUES]`
pub fn hscan(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let cursor = parse_cursor(argv.get(2)).ok_or(CommandError::fixed("ERR invalid cursor"))?;
    // Redis looks the key up before it reads the options: a missing key answers an empty
    // scan whatever they are.
    let options = scan_options(argv, 3);
    read(ctx, argv.get(1), |h, reply| {
        let Some(h) = h else {
            reply.array(2);
            reply.bulk(b"0");
            reply.array(0);
            return Ok(());
        };
        let options = options?;
        let mut found = KeyList::default();
        let next = h.scan(cursor, options.count, |f: Field<'_>| {
            if options.pattern.is_none_or(|p| glob_match(p, f.name, false)) {
                found.push(f.name);
                if options.values {
                    found.push(f.value);
                }
            }
        });
        reply.array(2);
        reply.bulk(itoa::Buffer::new().format(next).as_bytes());
        found.write(reply);
        Ok(())
    })?
}

/// `HRANDFIELD key [count [WITHVALUES]]`
pub fn hrandfield(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() == 2 {
        return read(ctx, argv.get(1), |h, reply| {
            match h.and_then(|h| h.nth(rand::random_range(0..h.len()))) {
                Some(f) => reply.bulk(f.name),
                None => reply.null(),
            }
        });
    }
    let with_values = argv.len() == 4 && is(argv.get(3), "WITHVALUES");
    if argv.len() > 3 && !with_values {
        return Err(CommandError::Syntax);
    }
    let count = int_arg(argv.get(2))?;
    if count == i64::MIN {
        return Err(CommandError::fixed(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    // Twice the count must fit (a field and a value each).
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(CommandError::fixed("ERR value is out of range"));
    }
    read(ctx, argv.get(1), |h, reply| {
        let len = h.map_or(0, HashRef::len);
        // With repeats (a negative count) every pick is drawn on its own; else a sample.
        let picks = if count < 0 || len == 0 {
            Vec::new()
        } else {
            sample(len, count as u64)
        };
        let n = if count < 0 && len > 0 {
            count.unsigned_abs() as usize
        } else {
            picks.len()
        };
        let resp3 = reply.resp3();
        reply.array(if with_values && !resp3 { n * 2 } else { n });
        let Some(h) = h else { return };
        for k in 0..n {
            let i = picks
                .get(k)
                .copied()
                .unwrap_or_else(|| rand::random_range(0..len));
            let f = h.nth(i).expect("picked among the fields");
            if with_values && resp3 {
                reply.array(2);
            }
            reply.bulk(f.name);
            if with_values {
                reply.bulk(f.value);
            }
        }
    })
}

/// `count` distinct positions among `len` (all of them if `count >= len`), at random.
fn sample(len: usize, count: u64) -> Vec<usize> {
    let want = count.min(len as u64) as usize;
    let mut all: Vec<usize> = (0..len).collect();
    // A partial Fisher-Yates shuffle: the first `want` are a uniform sample.
    for i in 0..want {
        let j = rand::random_range(i..len);
        all.swap(i, j);
    }
    all.truncate(want);
    all
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn samples_are_distinct_and_capped() {
        let mut all = sample(5, 10);
        all.sort();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        let mut some = sample(100, 7);
        some.sort();
        some.dedup();
        assert_eq!(some.len(), 7);
        assert!(some.iter().all(|&i| i < 100));
    }
}
