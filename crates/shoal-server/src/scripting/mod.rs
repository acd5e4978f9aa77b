//! Lua scripts, as Redis 7.0 runs them: `EVAL`, `EVALSHA`, their `_RO` forms and `SCRIPT`;
//! and functions: `FUNCTION`, `FCALL`, `FCALL_RO`.
//!
//! * [`cache`]: the node's script cache (SHA1 → body) and the shebang's flags;
//! * [`vm`]: one Lua 5.1 state per worker thread (Redis's libraries, its sandbox), each
//!   script compiled once per thread;
//! * [`sandbox`]: the Lua side of the sandbox (read-only globals, the error handler);
//! * [`call`]: `redis.call` / `redis.pcall`: a command run from a script, with Redis's checks;
//! * [`redis_lib`]: the `redis` table's functions that raise errors;
//! * [`convert`]: replies to Lua values and Lua values to replies, RESP2 and RESP3;
//! * [`raw`]: the hot path's values on Lua's C API (a reply onto the stack, `KEYS`, `ARGV`);
//! * [`errors`]: errors raised from Rust as Redis's C functions raise them;
//! * [`busy`]: the hook that turns a long script busy and stops a killed one;
//! * [`libs`]: `cjson`, `cmsgpack`, `bit`, `struct` and Redis's `math.random`;
//! * [`commands`]: the command handlers;
//! * [`functions`]: Redis 7 functions' libraries, [`payload`] their `FUNCTION DUMP` format,
//!   [`function_commands`] the `FUNCTION` and `FCALL` handlers.
//!
//! A script runs inside the store's exclusive section on the calling worker thread: no other
//! client sees part of it, and its effects reach replicas as one unit.

pub(crate) mod busy;
pub(crate) mod cache;
pub(crate) mod call;
pub(crate) mod commands;
pub(crate) mod convert;
pub(crate) mod errors;
pub(crate) mod function_commands;
pub(crate) mod functions;
pub(crate) mod libs;
pub(crate) mod payload;
pub(crate) mod raw;
pub(crate) mod redis_lib;
pub(crate) mod sandbox;
pub(crate) mod vm;

pub(crate) use cache::Scripts;
pub(crate) use functions::Functions;
