//! The Lua side of the sandbox (`sandbox.lua`): Redis 7.0's environment for scripts.
//!
//! * globals are read-only, as are the tables reachable from them (Redis's read-only tables:
//!   "Attempt to modify a readonly table"), through read-only views; reading a global that
//!   does not exist is an error ("Script attempted to access nonexistent global variable");
//! * no `os`, `io`, `loadfile`, `dofile`, `print`, `debug`, `setfenv`, `getfenv`;
//! * `pcall` and `xpcall` catch `redis.call`'s error tables as their text (Redis's
//!   `luaRedisPcall`), and cannot catch a killed script's end;
//! * Redis's error handler (`__redis__err__handler`) gives an error its source and line;
//! * the `redis` table, its functions in Lua over the Rust helpers.

/// The prelude's source.
pub(crate) const PRELUDE: &str = include_str!("sandbox.lua");
