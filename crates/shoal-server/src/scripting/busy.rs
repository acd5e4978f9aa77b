//! The hook every running script passes every [`HOOK_EVERY`] Lua instructions (Redis's
//! `luaMaskCountHook`): past `busy-reply-threshold` the script turns busy (other clients get
//! `-BUSY`, `SCRIPT KILL` may stop it), and a script asked to stop ends with Redis's error.

use mlua::{HookTriggers, Lua, VmState};

use super::call::with_run;
use super::errors::table_error;

/// Lua instructions between two looks (Redis's count).
pub(crate) const HOOK_EVERY: u32 = 100_000;

/// Installs the hook on a Lua state.
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        |_, _| look(),
    )
}

/// Turns the running script busy once it has run too long, and stops it if it was killed;
/// stops a library that loads for too long.
fn look() -> mlua::Result<VmState> {
    if super::functions::load_timed_out() {
        return Err(table_error("ERR FUNCTION LOAD timeout"));
    }
    with_run(|run| {
        let busy = &run.shared.door.busy;
        if !busy.is_busy() && run.started.elapsed() >= run.threshold {
            tracing::warn!(
                script = %run.name,
                kind = ?run.kind,
                "Slow script detected: still in execution after {} milliseconds. You can try \
                 killing the script using the SCRIPT KILL command.",
                run.started.elapsed().as_millis()
            );
            busy.turn_busy();
        }
        if busy.kill_requested() {
            tracing::warn!("Lua script killed by user with SCRIPT KILL.");
            return Err(table_error("ERR Script killed by user with SCRIPT KILL..."));
        }
        Ok(VmState::Continue)
    })
    .unwrap_or(Ok(VmState::Continue))
}
