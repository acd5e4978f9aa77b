//! `math.random` and `math.randomseed` as Redis 7.0 gives them to scripts: its own `rand48`,
//! one generator per node, never reseeded but by `math.randomseed` (Redis 7 replicates a
//! script's effects, not the script, so its numbers need not repeat on replicas).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use mlua::{Lua, MultiValue, Value};

use crate::scripting::call::with_run;
use crate::scripting::errors::lua_error;

/// A node's generator: its 48-bit state (read and written by the one running script).
#[derive(Debug)]
pub(crate) struct Rand48(AtomicU64);

impl Default for Rand48 {
    /// The state `rand48` starts from without a seed.
    fn default() -> Rand48 {
        Rand48(AtomicU64::new(0x1234_ABCD_330E))
    }
}

const A: u64 = 0x5DEE_CE66D;
const C: u64 = 0xB;
const MASK: u64 = (1 << 48) - 1;
/// Redis's `REDIS_LRAND48_MAX`.
const LRAND48_MAX: i64 = i32::MAX as i64;

/// The state after `redisSrand48(seed)`.
const fn seeded(seed: i32) -> u64 {
    ((seed as u32 as u64) << 16) | 0x330E
}

/// The next 31-bit value (`redisLrand48`) of the running script's node.
fn lrand48() -> i64 {
    with_run(|run| {
        let state = &run.shared.scripts.random.0;
        let next = (A.wrapping_mul(state.load(Relaxed)).wrapping_add(C)) & MASK;
        state.store(next, Relaxed);
        (next >> 17) as i64
    })
    .unwrap_or(0)
}

/// Lua's `luaL_checkint` of argument `n` (1-based).
fn check_int(lua: &Lua, args: &MultiValue, n: usize) -> mlua::Result<i64> {
    match args.get(n - 1) {
        Some(Value::Integer(i)) => Ok(*i),
        Some(Value::Number(f)) => Ok(*f as i64),
        Some(Value::String(s)) => s
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .map(|f| f as i64)
            .ok_or_else(|| bad_arg(lua, n, "number expected, got string")),
        other => Err(bad_arg(
            lua,
            n,
            &format!(
                "number expected, got {}",
                other.map_or("no value", Value::type_name)
            ),
        )),
    }
}

fn bad_arg(lua: &Lua, n: usize, what: &str) -> mlua::Error {
    lua_error(lua, format!("bad argument #{n} to 'random' ({what})"))
}

/// Registers `math.random` and `math.randomseed` in the real `math` table.
pub(crate) fn register(lua: &Lua, globals: &mlua::Table) -> mlua::Result<()> {
    let math: mlua::Table = globals.raw_get("math")?;
    let random = lua.create_function(|lua, args: MultiValue| {
        let r = (lrand48() % LRAND48_MAX) as f64 / LRAND48_MAX as f64;
        match args.len() {
            0 => Ok(r),
            1 => {
                let u = check_int(lua, &args, 1)?;
                if u < 1 {
                    return Err(bad_arg(lua, 1, "interval is empty"));
                }
                Ok((r * u as f64).floor() + 1.0)
            }
            2 => {
                let l = check_int(lua, &args, 1)?;
                let u = check_int(lua, &args, 2)?;
                if l > u {
                    return Err(bad_arg(lua, 2, "interval is empty"));
                }
                Ok((r * (u - l + 1) as f64).floor() + l as f64)
            }
            _ => Err(lua_error(lua, "wrong number of arguments")),
        }
    })?;
    let randomseed = lua.create_function(|lua, args: MultiValue| {
        let seed = check_int(lua, &args, 1)?;
        with_run(|run| {
            run.shared
                .scripts
                .random
                .0
                .store(seeded(seed as i32), Relaxed)
        });
        Ok(())
    })?;
    math.raw_set("random", random)?;
    math.raw_set("randomseed", randomseed)?;
    Ok(())
}
