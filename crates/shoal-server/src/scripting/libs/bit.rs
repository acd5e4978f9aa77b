//! `bit`: LuaBitOp 1.0, the library Redis ships: 32-bit operations on Lua numbers, results as
//! signed 32-bit numbers.

use mlua::{Lua, MultiValue, Table, Value};

/// A Lua number as LuaBitOp reads it (`luaL_checknumber`: a number, or a string that reads
/// as one), or the `bad argument` error naming `function`.
pub(crate) fn number_arg(
    lua: &Lua,
    args: &MultiValue,
    n: usize,
    function: &str,
) -> mlua::Result<f64> {
    let got = match args.get(n - 1) {
        Some(Value::Integer(i)) => return Ok(*i as f64),
        Some(Value::Number(f)) => return Ok(*f),
        Some(Value::String(s)) => {
            if let Some(f) = s.to_str().ok().and_then(|s| lua_str_number(&s)) {
                return Ok(f);
            }
            "string"
        }
        Some(other) => other.type_name(),
        None => "no value",
    };
    Err(crate::scripting::errors::lua_error(
        lua,
        format!("bad argument #{n} to '{function}' (number expected, got {got})"),
    ))
}

/// A string as Lua's `lua_tonumber` reads it (decimal or `0x` hex, surrounding spaces).
pub(crate) fn lua_str_number(s: &str) -> Option<f64> {
    let t = s.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    if t.is_empty() || t.contains(['n', 'N', 'i', 'I']) && !t.contains(['e', 'E']) {
        return t.parse::<f64>().ok().filter(|f| f.is_finite());
    }
    t.parse::<f64>().ok()
}

/// LuaBitOp's `barg`: a number reduced to 32 bits (rounded to the nearest integer, modulo
/// 2^32) through the 2^52 + 2^51 trick.
fn barg(n: f64) -> u32 {
    let shifted = n + 6_755_399_441_055_744.0;
    shifted.to_bits() as u32
}

fn ret(b: u32) -> f64 {
    f64::from(b as i32)
}

/// The `bit` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "tobit",
        lua.create_function(|lua, a: MultiValue| Ok(ret(barg(number_arg(lua, &a, 1, "tobit")?))))?,
    )?;
    t.raw_set(
        "bnot",
        lua.create_function(|lua, a: MultiValue| Ok(ret(!barg(number_arg(lua, &a, 1, "bnot")?))))?,
    )?;
    t.raw_set(
        "bswap",
        lua.create_function(|lua, a: MultiValue| {
            Ok(ret(barg(number_arg(lua, &a, 1, "bswap")?).swap_bytes()))
        })?,
    )?;
    for (name, op) in [
        ("band", (|x, y| x & y) as fn(u32, u32) -> u32),
        ("bor", |x, y| x | y),
        ("bxor", |x, y| x ^ y),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |lua, a: MultiValue| {
                let mut b = barg(number_arg(lua, &a, 1, name)?);
                for i in 2..=a.len() {
                    b = op(b, barg(number_arg(lua, &a, i, name)?));
                }
                Ok(ret(b))
            })?,
        )?;
    }
    for (name, op) in [
        ("lshift", (|x: u32, n: u32| x << n) as fn(u32, u32) -> u32),
        ("rshift", |x, n| x >> n),
        ("arshift", |x, n| ((x as i32) >> n) as u32),
        ("rol", |x, n| x.rotate_left(n)),
        ("ror", |x, n| x.rotate_right(n)),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |lua, a: MultiValue| {
                let x = barg(number_arg(lua, &a, 1, name)?);
                let n = barg(number_arg(lua, &a, 2, name)?) & 31;
                Ok(ret(op(x, n)))
            })?,
        )?;
    }
    t.raw_set(
        "tohex",
        lua.create_function(|lua, a: MultiValue| {
            let b = barg(number_arg(lua, &a, 1, "tohex")?);
            let mut n = match a.get(1) {
                None | Some(Value::Nil) => 8,
                Some(_) => barg(number_arg(lua, &a, 2, "tohex")?) as i32,
            };
            let upper = n < 0;
            if upper {
                n = n.wrapping_neg();
            }
            let n = n.clamp(0, 8) as usize;
            let hex = if upper {
                format!("{b:08X}")
            } else {
                format!("{b:08x}")
            };
            Ok(hex[8 - n..].to_string())
        })?,
    )?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_reduce_to_32_bits_as_luabitop_does() {
        assert_eq!(ret(barg(1.0)), 1.0);
        assert_eq!(ret(barg(-1.0)), -1.0);
        assert_eq!(ret(barg(4_294_967_296.0 + 5.0)), 5.0);
        assert_eq!(ret(barg(2_147_483_648.0)), -2_147_483_648.0);
        assert_eq!(ret(barg(2.5)), 2.0, "rounds half to even");
    }
}
