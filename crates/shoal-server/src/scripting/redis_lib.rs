//! The Rust half of the `redis` table (the sandbox's prelude adds the Lua half): the
//! functions that raise errors, written in Rust so that an error's position is the script's
//! line, as with Redis's C functions (a Lua wrapper would hide it behind a tail call).

use mlua::{Function, Lua, MultiValue, Table, Value};
use shoal_proto::Protocol;

use super::cache::sha1_hex;
use super::call::{self, with_run};
use super::convert::number_text;
use super::errors::{table_error, text_error};

/// The helpers the prelude receives (`rust.*`).
pub(crate) fn helpers(lua: &Lua) -> mlua::Result<Table> {
    let rust = lua.create_table()?;
    // SAFETY: C functions of Lua's C API; see `call::redis_call`.
    let (call, pcall) = unsafe {
        (
            lua.create_c_function(call::redis_call)?,
            lua.create_c_function(call::redis_pcall)?,
        )
    };
    rust.raw_set("call", call)?;
    rust.raw_set("pcall", pcall)?;
    rust.raw_set("acl_check_cmd", lua.create_function(call::acl_check)?)?;
    rust.raw_set("errtext", lua.create_function(error_value)?)?;
    rust.raw_set(
        "killed",
        lua.create_function(|_, ()| {
            Ok(with_run(|run| run.shared.door.busy.kill_requested()).unwrap_or(false))
        })?,
    )?;
    rust.raw_set("sha1hex", lua.create_function(sha1hex)?)?;
    rust.raw_set("log", lua.create_function(log)?)?;
    rust.raw_set("setresp", lua.create_function(setresp)?)?;
    rust.raw_set("set_repl", lua.create_function(set_repl)?)?;
    rust.raw_set(
        "register_function",
        lua.create_function(super::functions::register_function)?,
    )?;
    rust.raw_set("version", shoal_frontdoor::REDIS_VERSION)?;
    rust.raw_set("version_num", version_num(shoal_frontdoor::REDIS_VERSION))?;
    Ok(rust)
}

/// Replaces `rawset` and `setmetatable` with versions that refuse the read-only views
/// (`readonly`: view → table) as Redis's read-only tables refuse them.
pub(crate) fn guard_raw_writes(lua: &Lua, globals: &Table, readonly: Table) -> mlua::Result<()> {
    for name in ["rawset", "setmetatable"] {
        let original: Function = globals.raw_get(name)?;
        let readonly = readonly.clone();
        let guarded = lua.create_function(move |_, args: MultiValue| {
            if let Some(Value::Table(t)) = args.front()
                && !readonly.raw_get::<Value>(t.clone())?.is_nil()
            {
                return Err(text_error("Attempt to modify a readonly table"));
            }
            original.call::<MultiValue>(args)
        })?;
        globals.raw_set(name, guarded)?;
    }
    Ok(())
}

/// An argument as Lua's `tostring` of a string or number gives it (`None` otherwise).
fn text(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(n) => Some(n.to_string().into_bytes()),
        Value::Number(n) => Some(number_text(*n).into_bytes()),
        _ => None,
    }
}

/// A number argument as Lua's `lua_tonumber` reads it.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Integer(n) => Some(*n as f64),
        Value::Number(n) => Some(*n),
        Value::String(s) => s
            .to_str()
            .ok()
            .and_then(|s| super::libs::bit::lua_str_number(&s)),
        _ => None,
    }
}

/// `redis.sha1hex(x)`.
fn sha1hex(_: &Lua, args: MultiValue) -> mlua::Result<String> {
    if args.len() != 1 {
        return Err(table_error("ERR wrong number of arguments"));
    }
    Ok(sha1_hex(&args.front().and_then(text).unwrap_or_default()))
}

/// `redis.log(level, message, ...)`.
fn log(_: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() < 2 {
        return Err(table_error(
            "ERR redis.log() requires two arguments or more.",
        ));
    }
    let Some(level) = args.front().and_then(number) else {
        return Err(table_error(
            "ERR First argument must be a number (log level).",
        ));
    };
    if !(0.0..=3.0).contains(&level) {
        return Err(table_error("ERR Invalid debug level."));
    }
    let parts: Vec<String> = args
        .iter()
        .skip(1)
        .filter_map(text)
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .collect();
    let message = parts.join(" ");
    match level as i64 {
        0 => tracing::debug!(target: "shoal::script", "{message}"),
        1 | 2 => tracing::info!(target: "shoal::script", "{message}"),
        _ => tracing::warn!(target: "shoal::script", "{message}"),
    }
    Ok(())
}

/// `redis.setresp(2|3)`.
fn setresp(_: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() != 1 {
        return Err(table_error("ERR redis.setresp() requires one argument."));
    }
    let resp = match args.front().and_then(number).map(|n| n as i64) {
        Some(2) => Protocol::Resp2,
        Some(3) => Protocol::Resp3,
        _ => return Err(table_error("ERR RESP version must be 2 or 3.")),
    };
    with_run(|run| run.resp = resp);
    Ok(())
}

/// `redis.set_repl(flags)`: checked; a script's effects always replicate whole.
fn set_repl(_: &Lua, args: MultiValue) -> mlua::Result<()> {
    if args.len() != 1 {
        return Err(table_error("ERR redis.set_repl() requires two arguments."));
    }
    let flags = args.front().and_then(number).unwrap_or(0.0) as i64;
    if flags & !3 != 0 {
        return Err(table_error(
            "ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.",
        ));
    }
    Ok(())
}

/// `rust.errtext(e)`: an error raised from Rust as the script sees it (a table or a text).
fn error_value(lua: &Lua, value: Value) -> mlua::Result<Value> {
    let Value::Error(error) = value else {
        return Ok(value);
    };
    match super::errors::raised(&error) {
        super::errors::Raised::Table(line) => super::convert::error_table(lua, line.as_bytes()),
        super::errors::Raised::Text(text) => Ok(Value::String(lua.create_string(text)?)),
    }
}

/// Redis's `REDIS_VERSION_NUM`: `0x00MMmmpp`.
fn version_num(version: &str) -> i64 {
    let mut parts = version.split('.').map(|p| p.parse::<i64>().unwrap_or(0));
    let (major, minor, patch) = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    (major << 16) | (minor << 8) | patch
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_version_number_is_redis_s() {
        assert_eq!(super::version_num("7.0.15"), 458_767);
        // What scripts see: the version Shoal reports.
        assert_eq!(
            super::version_num(shoal_frontdoor::REDIS_VERSION),
            0x07_04_00
        );
    }
}
