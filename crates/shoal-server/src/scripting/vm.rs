//! One Lua 5.1 state per worker thread, set up as Redis sets up its own: the base, `table`,
//! `string`, `math` and `coroutine` libraries, `bit`, `cjson`, `cmsgpack`, `struct`, the
//! `redis` table, the sandbox ([`super::sandbox`]), the busy hook. Each script is compiled
//! once per state; a state is rebuilt when its node flushes its scripts.

use std::cell::RefCell;
use std::collections::HashMap;

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use super::errors::{Raised, raised};
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
    /// The node it serves (its address) and that node's script generation.
    owner: (usize, u64),
    /// Compiled scripts, by SHA1.
    compiled: HashMap<String, Function>,
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

impl Vm {
    fn new(owner: (usize, u64)) -> mlua::Result<Vm> {
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
        let (view, runner, readonly): (Table, Function, Table) =
            lua.load(sandbox::PRELUDE).set_name("=shoal").call(rust)?;
        redis_lib::guard_raw_writes(&lua, &globals, readonly)?;
        busy::install(&lua)?;
        Ok(Vm {
            lua,
            view,
            runner,
            owner,
            compiled: HashMap::new(),
        })
    }

    /// Compiles a script's body (after its shebang line, whose line feed stays) as Redis
    /// does: chunk `@user_script`, the sandbox's globals. The error is Redis's reply line.
    pub(crate) fn compile(&mut self, sha: &str, body: &[u8], skip: usize) -> Result<(), String> {
        if self.compiled.contains_key(sha) {
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
        self.compiled.insert(sha.to_string(), function);
        Ok(())
    }

    /// Runs the compiled script `sha` with these `KEYS` and `ARGV`: `(true, value)` or
    /// `(false, error)` (Redis's error table, or a string for an error the handler never saw).
    pub(crate) fn run(
        &mut self,
        sha: &str,
        keys: &[&[u8]],
        argv: &[&[u8]],
        reply: impl FnOnce(bool, &Value),
    ) -> Result<(), String> {
        let function = self
            .compiled
            .get(sha)
            .cloned()
            .ok_or_else(|| "NOSCRIPT No matching script. Please use EVAL.".to_string())?;
        let array = |items: &[&[u8]]| -> mlua::Result<Table> {
            let table = self.lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, self.lua.create_string(item)?)?;
            }
            Ok(table)
        };
        let outcome: mlua::Result<MultiValue> = (|| {
            let (keys, argv) = (array(keys)?, array(argv)?);
            self.runner.call((function, keys, argv))
        })();
        match outcome {
            Ok(values) => {
                let mut values = values.into_iter();
                let ok = matches!(values.next(), Some(Value::Boolean(true)));
                let value = values.next().unwrap_or(Value::Nil);
                reply(ok, &value);
            }
            Err(e) => {
                let (Raised::Table(text) | Raised::Text(text)) = raised(&e);
                let value =
                    Value::String(self.lua.create_string(&text).map_err(|e| e.to_string())?);
                reply(false, &value);
            }
        }
        Ok(())
    }
}
