//! Bitmap commands: `SETBIT`, `GETBIT`, `BITCOUNT`, `BITPOS`, `BITOP`. The bit logic is in
//! [`super::bits`]; this module reads the arguments and talks to the store in Redis 7.0's
//! order (so that a missing key answers before some argument errors, as it does there).

use shoal_frontdoor::CommandError;
use shoal_proto::Argv;
use shoal_proto::args::parse_i64;
use shoal_store::Combined;

use super::bits::op::{self, BitOp};
use super::bits::range::Unit;
use super::bits::{self, count, offset, pos};
use super::{CommandResult, Ctx, int_arg, is_named, store_error};
use crate::notify::class;

/// Redis's reply to a bad bit offset.
const BAD_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// A bit offset argument (`SETBIT`, `GETBIT`, and with the field width, `BITFIELD`'s `#N`),
/// bounded by `proto-max-bulk-len`.
pub(super) fn offset_arg(
    ctx: &Ctx<'_>,
    arg: &[u8],
    field_bits: Option<u32>,
) -> Result<u64, CommandError> {
    let max = ctx.shared.door.settings.max_bulk_len();
    offset::parse(arg, field_bits, max).ok_or(CommandError::fixed(BAD_OFFSET))
}

/// `SETBIT key offset value`
pub fn setbit(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let offset = offset_arg(ctx, argv.get(2), None)?;
    let on = match parse_i64(argv.get(3)) {
        Some(0) => false,
        Some(1) => true,
        _ => {
            return Err(CommandError::fixed(
                "ERR bit is not an integer or out of range",
            ));
        }
    };
    let key = argv.get(1);
    let (old, changed) = ctx
        .shared
        .store
        .edit(key, (offset / 8) as usize + 1, |bytes, grown| {
            let old = bits::bit_at(bytes, offset);
            let changed = grown || old != on;
            if changed {
                bits::set_bit(bytes, offset, on);
            }
            (changed, (old, changed))
        })
        .map_err(store_error)?;
    if changed {
        ctx.notify(class::STRING, "setbit", key);
    }
    ctx.reply().int(i64::from(old));
    Ok(())
}

/// `GETBIT key offset`
pub fn getbit(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let offset = offset_arg(ctx, argv.get(2), None)?;
    let found = ctx
        .shared
        .store
        .get(argv.get(1), |v| bits::bit_at(v, offset))
        .map_err(store_error)?;
    if found.is_none() {
        ctx.key_miss(argv.get(1));
    }
    ctx.reply().int(i64::from(found == Some(true)));
    Ok(())
}

/// A range's `BYTE|BIT` argument.
fn unit_arg(arg: &[u8]) -> Result<Unit, CommandError> {
    if is_named(arg, "bit") {
        Ok(Unit::Bit)
    } else if is_named(arg, "byte") {
        Ok(Unit::Byte)
    } else {
        Err(CommandError::Syntax)
    }
}

/// `BITCOUNT key [start end [BYTE|BIT]]`
pub fn bitcount(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    // Redis 7.0 looks the key up first: a missing key counts 0 whatever the arguments.
    let found = ctx.shared.store.get(argv.get(1), |v| {
        let range = match argv.len() {
            2 => None,
            4 | 5 => {
                let (start, end) = (int_arg(argv.get(2))?, int_arg(argv.get(3))?);
                // It answers an inverted range of negative indexes before it reads BYTE|BIT.
                let unit = match argv.try_get(4) {
                    Some(arg) if !(start < 0 && end < 0 && start > end) => unit_arg(arg)?,
                    _ => Unit::Byte,
                };
                Some((start, end, unit))
            }
            _ => return Err(CommandError::Syntax),
        };
        Ok(count::bitcount(v, range) as i64)
    });
    match found.map_err(store_error)? {
        Some(count) => ctx.reply().int(count?),
        None => {
            ctx.key_miss(argv.get(1));
            ctx.reply().int(0);
        }
    }
    Ok(())
}

/// `BITPOS key bit [start [end [BYTE|BIT]]]`
pub fn bitpos(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let bit = match int_arg(argv.get(2))? {
        0 => false,
        1 => true,
        _ => return Err(CommandError::fixed("ERR The bit argument must be 1 or 0.")),
    };
    let found = ctx.shared.store.get(argv.get(1), |v| {
        let (start, end, unit) = match argv.len() {
            3 => (0, None, Unit::Byte),
            4..=6 => {
                // Read in Redis's order: start, BYTE|BIT, end.
                let start = int_arg(argv.get(3))?;
                let unit = match argv.try_get(5) {
                    Some(arg) => unit_arg(arg)?,
                    None => Unit::Byte,
                };
                let end = argv.try_get(4).map(int_arg).transpose()?;
                (start, end, unit)
            }
            _ => return Err(CommandError::Syntax),
        };
        Ok(pos::bitpos(v, bit, start, end, unit))
    });
    match found.map_err(store_error)? {
        Some(position) => ctx.reply().int(position?),
        None => {
            // A missing key is an endless run of clear bits.
            ctx.key_miss(argv.get(1));
            ctx.reply().int(if bit { -1 } else { 0 });
        }
    }
    Ok(())
}

/// `BITOP AND|OR|XOR|NOT destkey key [key ...]`
pub fn bitop(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let op = BitOp::parse(argv.get(1)).ok_or(CommandError::Syntax)?;
    if op == BitOp::Not && argv.len() != 4 {
        return Err(CommandError::fixed(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let argv = *argv;
    let dest = argv.get(2);
    let sources = (3..argv.len()).map(move |i| argv.get(i));
    let mut missing = Vec::new();
    let (combined, len) = ctx
        .shared
        .store
        .combine(dest, sources, |values, out| {
            missing.extend((0..values.len()).filter(|&i| values[i].is_none()));
            op::apply(op, values, out);
            out.len()
        })
        .map_err(store_error)?;
    for i in missing {
        ctx.key_miss(argv.get(3 + i));
    }
    match combined {
        Combined::Written => ctx.notify(class::STRING, "set", dest),
        Combined::Deleted => ctx.notify(class::GENERIC, "del", dest),
        Combined::Nothing => {}
    }
    ctx.reply().int(len as i64);
    Ok(())
}
