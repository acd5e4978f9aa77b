//! `BITFIELD` and `BITFIELD_RO`: the operations are read first (any bad one fails the whole
//! command), then run in order on the string: reads only look it up, any write first grows it
//! to the farthest bit written, as Redis 7.0 does. The field arithmetic is
//! [`super::bits::field`].

use shoal_frontdoor::CommandError;
use shoal_proto::{Argv, Reply};

use super::bitmaps::offset_arg;
use super::bits::field::{self, FieldType, Overflow};
use super::{CommandResult, Ctx, int_arg, is_named, store_error};
use crate::notify::class;

/// What one operation does.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// `GET`: reply the field.
    Get,
    /// `SET value`: write it, reply the old value.
    Set(i64),
    /// `INCRBY increment`: add it, reply the new value.
    IncrBy(i64),
}

/// One `GET`, `SET` or `INCRBY`, with the `OVERFLOW` mode in force where it stands.
#[derive(Debug, Clone, Copy)]
struct FieldOp {
    action: Action,
    ty: FieldType,
    offset: u64,
    overflow: Overflow,
}

/// The operations of a command, and the last bit its writes reach (none if it only reads).
struct Ops {
    ops: Vec<FieldOp>,
    last_written_bit: Option<u64>,
}

/// Reads the operations from argument 2 on, as Redis 7.0 does (its errors, in its order).
fn parse(ctx: &Ctx<'_>, argv: &Argv<'_>) -> Result<Ops, CommandError> {
    let mut parsed = Ops {
        ops: Vec::new(),
        last_written_bit: None,
    };
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < argv.len() {
        let remaining = argv.len() - j - 1;
        let name = argv.get(j);
        let writes = if is_named(name, "get") && remaining >= 2 {
            false
        } else if (is_named(name, "set") || is_named(name, "incrby")) && remaining >= 3 {
            true
        } else if is_named(name, "overflow") && remaining >= 1 {
            overflow = Overflow::parse(argv.get(j + 1))
                .ok_or(CommandError::fixed("ERR Invalid OVERFLOW type specified"))?;
            j += 2;
            continue;
        } else {
            return Err(CommandError::Syntax);
        };
        let ty = FieldType::parse(argv.get(j + 1)).ok_or(CommandError::fixed(
            "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not \
             supported but i64 is.",
        ))?;
        let offset = offset_arg(ctx, argv.get(j + 2), Some(ty.bits))?;
        let action = if writes {
            let last = offset + u64::from(ty.bits) - 1;
            parsed.last_written_bit = parsed.last_written_bit.max(Some(last));
            let value = int_arg(argv.get(j + 3))?;
            if is_named(name, "set") {
                Action::Set(value)
            } else {
                Action::IncrBy(value)
            }
        } else {
            Action::Get
        };
        parsed.ops.push(FieldOp {
            action,
            ty,
            offset,
            overflow,
        });
        j += if writes { 4 } else { 3 };
    }
    Ok(parsed)
}

/// Runs a `SET` or `INCRBY` on `bytes` (which hold its field): its reply (`None`: a `FAIL`
/// overflow, nothing written) and whether the field's value changed.
fn write(op: &FieldOp, bytes: &mut [u8]) -> (Option<i64>, bool) {
    let old = field::get(bytes, op.offset, op.ty);
    let (value, increment) = match op.action {
        Action::Set(value) => (value, 0),
        Action::IncrBy(increment) => (old, increment),
        Action::Get => return (Some(old), false),
    };
    let Some(new) = field::step(op.ty, value, increment, op.overflow) else {
        return (None, false);
    };
    field::put(bytes, op.offset, op.ty, new);
    let reply = match op.action {
        Action::Set(_) => old,
        _ => new,
    };
    (Some(reply), new != old)
}

/// Writes the replies: an integer each, a null for a failed write.
fn reply_all(reply: &mut Reply<'_>, replies: &[Option<i64>]) {
    reply.array(replies.len());
    for r in replies {
        match r {
            Some(n) => reply.int(*n),
            None => reply.null(),
        }
    }
}

/// The `GET`s of a command without writes, on `value` (`None`: missing, read as empty).
fn read_all(ops: &[FieldOp], value: &[u8]) -> Vec<Option<i64>> {
    ops.iter()
        .map(|op| Some(field::get(value, op.offset, op.ty)))
        .collect()
}

/// `BITFIELD` (`read_only`: `BITFIELD_RO`).
fn run(ctx: &mut Ctx<'_>, argv: &Argv<'_>, read_only: bool) -> CommandResult {
    let Ops {
        ops,
        last_written_bit,
    } = parse(ctx, argv)?;
    let key = argv.get(1);
    let Some(last) = last_written_bit else {
        let found = ctx.shared.store.get(key, |v| read_all(&ops, v));
        let replies = match found.map_err(store_error)? {
            Some(replies) => replies,
            None => {
                ctx.key_miss(key);
                read_all(&ops, &[])
            }
        };
        reply_all(&mut ctx.reply(), &replies);
        return Ok(());
    };
    if read_only {
        return Err(CommandError::fixed(
            "ERR BITFIELD_RO only supports the GET subcommand",
        ));
    }
    let (replies, changes) = ctx
        .shared
        .store
        .edit(key, (last / 8) as usize + 1, |bytes, grown| {
            let mut changes = 0;
            let replies: Vec<Option<i64>> = ops
                .iter()
                .map(|op| {
                    let (reply, changed) = write(op, bytes);
                    // As Redis counts it: a write on a string just made or grown counts.
                    if reply.is_some() && !matches!(op.action, Action::Get) && (grown || changed) {
                        changes += 1;
                    }
                    reply
                })
                .collect();
            (changes > 0, (replies, changes))
        })
        .map_err(store_error)?;
    reply_all(&mut ctx.reply(), &replies);
    if changes > 0 {
        ctx.notify(class::STRING, "setbit", key);
    }
    Ok(())
}

/// `BITFIELD key [GET type offset | SET type offset value | INCRBY type offset increment |
/// OVERFLOW WRAP|SAT|FAIL] ...`
pub fn bitfield(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    run(ctx, argv, false)
}

/// `BITFIELD_RO key [GET type offset ...]`
pub fn bitfield_ro(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    run(ctx, argv, true)
}
