//! The libraries Redis gives scripts, written in Rust against the behaviour of
//! `redis-server` 7.0 (the differential tests compare them): `bit`, `cjson`, `cmsgpack`,
//! `struct`, and Redis's deterministic `math.random`.

pub(crate) mod bit;
pub(crate) mod cjson;
pub(crate) mod cmsgpack;
pub(crate) mod random;
pub(crate) mod structlib;

use mlua::Lua;

/// Registers every library in `globals` (the real globals table, before the sandbox).
pub(crate) fn register(lua: &Lua, globals: &mlua::Table) -> mlua::Result<()> {
    globals.raw_set("bit", bit::library(lua)?)?;
    globals.raw_set("cjson", cjson::library(lua)?)?;
    globals.raw_set("cmsgpack", cmsgpack::library(lua)?)?;
    globals.raw_set("struct", structlib::library(lua)?)?;
    random::register(lua, globals)?;
    Ok(())
}
