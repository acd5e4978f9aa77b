//! One Lua 5.1 state per worker thread, set up as Redis sets up its own: the base, `table`,
//! `string`, `math` and `coroutine` libraries, `bit`, `cjson`, `cmsgpack`, `struct`, the
//! `redis` table, the sandbox ([`super::sandbox`]), the busy hook. Each script is compiled
//! once per state; a state is rebuilt when its node flushes its scripts.

use std::cell::RefCell;

use mlua::ffi;
use mlua::{Function, Lua, LuaOptions, StdLib, Table, Value};

use super::cache::Digest20;
use super::errors::{Raised, raised};
use super::raw::push_array;
use super::{busy, libs, redis_lib, sandbox};
use crate::shared::Shared;

/// Most memory a thread's Lua state may take: a script that wants more fails with
/// "not enough memory" instead of taking the node down.
pub(crate) const LUA_MEMORY_LIMIT: usize = 512 << 20;

/// A thread's Lua state.
pub(crate) struct Vm {
    lua: Lua,
    /// The scripts' globals (the read-only view).
    view: Table,
    /// Runs a script under Redis's error handler.
    runner: Function,
    /// Functions' part of the state (see [`super::functions`]).
    functions: FunctionEnv,
    /// The node it serves (its address) and that node's script generation.
    owner: (usize, u64),
    /// Compiled scripts, by SHA1.
    compiled: foldhash::HashMap<Digest20, Function>,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's Lua state for `shared` (built, or rebuilt after a flush, first).
pub(crate) fn with_vm<R>(shared: &Shared, f: impl FnOnce(&mut Vm) -> R) -> Result<R, String> {
    let owner = (
        shared as *const Shared as usize,
        shared.scripts.generation(),
    );
    VM.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|vm| vm.owner != owner) {
            *slot = None;
            *slot = Some(Vm::new(owner).map_err(|e| format!("ERR {e}"))?);
        }
        let vm = slot
            .as_mut()
            .ok_or_else(|| "ERR no Lua state".to_string())?;
        Ok(f(vm))
    })
}

/// What a state keeps for functions: the libraries' globals, their metatable (whose `__index`
/// is the load-time API while a library loads), that API, and the function caller.
struct FunctionEnv {
    env: Table,
    meta: Table,
    load_api: Table,
    caller: Function,
    /// Runs a library's code: `(true)` or `(false, error)`.
    load_run: Function,
}

/// A function a library registered while it loaded (`redis.register_function`).
pub(crate) struct Registered {
    /// Its name as given.
    pub name: Vec<u8>,
    /// The Lua function.
    pub callback: Function,
    /// Its description, if given.
    pub description: Option<Vec<u8>>,
    /// Its flags.
    pub flags: super::cache::ScriptFlags,
}

impl Vm {
    /// A new state, set up for scripts and functions, serving `owner` (an address and a
    /// generation: [`with_vm`] rebuilds the state when they change).
    pub(crate) fn new(owner: (usize, u64)) -> mlua::Result<Vm> {
        // SAFETY: the debug library is loaded for the error handler only; the sandbox takes
        // it out of the scripts' reach before any script runs.
        let lua = unsafe {
            Lua::unsafe_new_with(
                StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG,
                LuaOptions::new(),
            )
        };
        lua.set_memory_limit(LUA_MEMORY_LIMIT)?;
        let globals = lua.globals();
        libs::register(&lua, &globals)?;
        let rust = redis_lib::helpers(&lua)?;
        #[allow(clippy::type_complexity)]
        let (view, runner, readonly, env, meta, load_api, caller, load_run): (
            Table,
            Function,
            Table,
            Table,
            Table,
            Table,
            Function,
            Function,
        ) = lua.load(sandbox::PRELUDE).set_name("=shoal").call(rust)?;
        redis_lib::guard_raw_writes(&lua, &globals, readonly)?;
        busy::install(&lua)?;
        Ok(Vm {
            lua,
            view,
            runner,
            functions: FunctionEnv {
                env,
                meta,
                load_api,
                caller,
                load_run,
            },
            owner,
            compiled: foldhash::HashMap::default(),
        })
    }

    /// The node (and generation) this state serves.
    pub(crate) fn owner(&self) -> (usize, u64) {
        self.owner
    }

    /// Compiles a script's body (after its shebang line, whose line feed stays) as Redis
    /// does: chunk `@user_script`, the sandbox's globals. The error is Redis's reply line.
    pub(crate) fn compile(
        &mut self,
        digest: &Digest20,
        body: &[u8],
        skip: usize,
    ) -> Result<(), String> {
        if self.compiled.contains_key(digest) {
            return Ok(());
        }
        let function = self
            .lua
            .load(&body[skip..])
            .set_name("@user_script")
            .set_environment(self.view.clone())
            .into_function()
            .map_err(|e| {
                let message = match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => match raised(&other) {
                        Raised::Table(t) | Raised::Text(t) => t,
                    },
                };
                format!("ERR Error compiling script (new function): {message}")
            })?;
        self.compiled.insert(*digest, function);
        Ok(())
    }

    /// Runs the compiled script `digest` with these `KEYS` and `ARGV` and hands what it
    /// returned to `reply`: a value that is no table as [`Simple`] (read on the Lua stack),
    /// else `(true, value)`, or `(false, error)` (Redis's error table, or a string for an
    /// error the handler never saw).
    pub(crate) fn run<'k>(
        &mut self,
        digest: &Digest20,
        keys: impl ExactSizeIterator<Item = &'k [u8]>,
        argv: impl ExactSizeIterator<Item = &'k [u8]>,
        reply: &mut dyn ScriptReply,
    ) -> Result<(), String> {
        let function = self
            .compiled
            .get(digest)
            .ok_or_else(|| "NOSCRIPT No matching script. Please use EVAL.".to_string())?;
        self.run_with(&self.runner, function, keys, argv, reply)
    }

    /// Calls a function with its keys and arguments (the callback's two tables), as
    /// [`Vm::run`] runs a script.
    pub(crate) fn call_function<'k>(
        &self,
        function: &Function,
        keys: impl ExactSizeIterator<Item = &'k [u8]>,
        args: impl ExactSizeIterator<Item = &'k [u8]>,
        reply: &mut dyn ScriptReply,
    ) -> Result<(), String> {
        self.run_with(&self.functions.caller, function, keys, args, reply)
    }

    /// Runs `function` through `runner` (which gives it the two tables), and hands what it
    /// returned to `reply` (see [`Vm::run`]).
    fn run_with<'k>(
        &self,
        runner: &Function,
        function: &Function,
        keys: impl ExactSizeIterator<Item = &'k [u8]>,
        argv: impl ExactSizeIterator<Item = &'k [u8]>,
        reply: &mut dyn ScriptReply,
    ) -> Result<(), String> {
        let mut handled = false;
        // One protected call for the whole run: `KEYS` and `ARGV` are built and the runner
        // called on the C API, and a simple returned value is written from the stack.
        // SAFETY: the closure owns nothing (its captures are references and iterators over
        // borrowed arguments), so a Lua error raised inside it skips no destructor; it leaves
        // either nothing (handled) or the runner's two results on the stack, which mlua
        // reads back.
        let outcome: mlua::Result<(Option<bool>, Value)> = unsafe {
            self.lua.exec_raw((runner, function), |state| {
                // Stack: runner, function.
                push_array(state, keys);
                push_array(state, argv);
                // The runner catches the script's errors (xpcall): this raises only when Lua
                // itself fails (memory), to `exec_raw`'s protected call.
                ffi::lua_call(state, 3, 2);
                if ffi::lua_type(state, -2) != ffi::LUA_TBOOLEAN
                    || ffi::lua_toboolean(state, -2) == 0
                {
                    return;
                }
                let simple = match ffi::lua_type(state, -1) {
                    ffi::LUA_TTABLE => return,
                    ffi::LUA_TSTRING => {
                        let mut len = 0;
                        let data = ffi::lua_tolstring(state, -1, &mut len);
                        // The string stays on the stack while `reply` reads it.
                        Simple::Bytes(std::slice::from_raw_parts(data.cast(), len))
                    }
                    ffi::LUA_TNUMBER => Simple::Number(ffi::lua_tonumber(state, -1)),
                    ffi::LUA_TBOOLEAN => Simple::Boolean(ffi::lua_toboolean(state, -1) != 0),
                    _ => Simple::Null,
                };
                reply.simple(simple);
                handled = true;
                ffi::lua_settop(state, -3);
            })
        };
        match outcome {
            Ok(_) if handled => {}
            Ok((ok, value)) => reply.value(ok == Some(true), &value),
            Err(e) => {
                let (Raised::Table(text) | Raised::Text(text)) = raised(&e);
                let value =
                    Value::String(self.lua.create_string(&text).map_err(|e| e.to_string())?);
                reply.value(false, &value);
            }
        }
        Ok(())
    }
}

impl Vm {
    /// Loads a library's code (after its shebang line, whose line feed stays) as Redis's
    /// functions engine does: compiled as `@user_function`, run with the load-time globals
    /// (only `redis.register_function`, `redis.log` and the constants) and a time limit.
    /// Returns the functions it registered, or Redis's error text (without `ERR `).
    pub(crate) fn load_library(&self, code: &[u8], skip: usize) -> Result<Vec<Registered>, String> {
        let FunctionEnv {
            env,
            meta,
            load_api,
            load_run,
            ..
        } = &self.functions;
        let chunk = self
            .lua
            .load(&code[skip..])
            .set_name("@user_function")
            .set_environment(env.clone())
            .into_function()
            .map_err(|e| {
                let message = match e {
                    mlua::Error::SyntaxError { message, .. } => message,
                    other => match raised(&other) {
                        Raised::Table(t) | Raised::Text(t) => t,
                    },
                };
                format!("Error compiling function: {message}")
            })?;
        let view = self.view.clone();
        meta.raw_set("__index", load_api.clone())
            .map_err(|e| e.to_string())?;
        let outcome = super::functions::loading(|| load_run.call::<(bool, Value)>(chunk));
        meta.raw_set("__index", view).map_err(|e| e.to_string())?;
        let (outcome, registered) = outcome;
        let error = match outcome {
            Ok((true, _)) => return Ok(registered),
            Ok((false, Value::Error(e))) => raised(&e),
            Ok((false, Value::Table(t))) => Raised::Table(
                t.raw_get::<mlua::LuaString>("err")
                    .map(|s| s.to_string_lossy())
                    .unwrap_or_default(),
            ),
            Ok((false, Value::String(s))) => Raised::Text(s.to_string_lossy()),
            Ok((false, other)) => Raised::Text(format!("{other:?}")),
            Err(e) => raised(&e),
        };
        Err(match error {
            Raised::Table(line) => format!("Error registering functions: {line}"),
            Raised::Text(text) => format!("Error registering functions: ERR {text}"),
        })
    }
}

/// A value a script returned that is no table.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Simple<'a> {
    /// A string.
    Bytes(&'a [u8]),
    /// A number.
    Number(f64),
    /// A boolean.
    Boolean(bool),
    /// `nil`, or a value with no reply (a function, ...).
    Null,
}

/// Where a script's outcome goes.
pub(crate) trait ScriptReply {
    /// The script returned a value that is no table. Must not call into Lua.
    fn simple(&mut self, value: Simple<'_>);
    /// The script returned `value` (`ok`), or failed with it.
    fn value(&mut self, ok: bool, value: &Value);
}
