//! Whether a script (or function) is running, as every other client's commands must know
//! without touching the store: Redis runs one script at a time and answers nothing else
//! meanwhile, then, past `busy-reply-threshold`, `-BUSY` to everything but the commands
//! flagged `allow_busy` (`SCRIPT KILL`, `FUNCTION KILL`, `SHUTDOWN NOSAVE`, ...).
//!
//! A script runs on its worker thread in the store's exclusive section, holding every shard it
//! has touched until it ends. A command on another worker thread that touched one of them would
//! block that thread's whole event loop until the script ends, so that a `SCRIPT KILL` arriving
//! there could never run. So the front door asks [`Busy::gate`] first, one atomic
//! load when no script runs: while one runs, a command waits asynchronously (its connection's
//! task sleeps, the thread serves others) until the script ends or turns busy, and once it is
//! busy, every command but the `allow_busy` ones is refused with Redis's `-BUSY` line.
//!
//! A command that passed the gate an instant before a script started must not be caught
//! behind it either. So each thread marks itself inside a command before it looks at the gate
//! ([`crate::stats::WorkerStats::enter`]), and a script takes the busy state
//! ([`Busy::try_start`]) before it waits for every other thread to be outside a command
//! ([`crate::stats::Stats::wait_until_outside_commands`]) and only then takes the store. Both
//! sides write, then read the other's mark (sequentially consistent): either the command sees
//! the script and waits, or the script sees the command and lets it finish first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};

use futures_util::future::BoxFuture;
use shoal_proto::command_table::flags;
use tokio::sync::Notify;

use crate::error::CommandError;

/// Nothing runs.
const IDLE: u8 = 0;
/// A script runs, within its time.
const RUNNING: u8 = 1;
/// A script runs past `busy-reply-threshold`.
const BUSY: u8 = 2;

/// [`Busy::runner`] unknown.
const NO_RUNNER: usize = usize::MAX;

/// What `-BUSY` says while an `EVAL` script runs (Redis's `slowevalerr`).
pub const BUSY_SCRIPT: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
/// What `-BUSY` says while a function runs (Redis's `slowscripterr`).
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
/// `SCRIPT KILL` or `FUNCTION KILL` with nothing running.
pub const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
/// `SCRIPT KILL` of a script that wrote.
pub const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands \
     against the dataset. You can either wait the script termination or kill the server in a \
     hard way using the SHUTDOWN NOSAVE command.";

/// What runs: an `EVAL` script or a function (they are killed by different commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// `EVAL`, `EVALSHA` and their `_RO` forms.
    Eval,
    /// `FCALL`, `FCALL_RO`.
    Function,
}

/// The node's "a script is running" state (see the module's description).
#[derive(Debug, Default)]
pub struct Busy {
    state: Arc<AtomicU8>,
    /// The running script is a function.
    function: AtomicBool,
    /// The running script wrote (it cannot be killed).
    wrote: AtomicBool,
    /// `SCRIPT KILL` / `FUNCTION KILL` asked the running script to stop.
    kill: AtomicBool,
    /// The index of the worker thread the running script keeps busy ([`NO_RUNNER`]: none
    /// known), which new connections avoid.
    runner: AtomicUsize,
    /// Woken when a script ends or turns busy.
    changed: Arc<Notify>,
}

/// What [`Busy::gate`] decided about a command.
pub enum Gate {
    /// Wait for this (the script to end or turn busy), then try again.
    Wait(BoxFuture<'static, ()>),
    /// Refuse it (`-BUSY`).
    Refuse(CommandError),
}

impl Busy {
    /// Whether a command with `command_flags` may go on now. `None` (run it) when no script
    /// runs: one load (a plain one on x86). The calling thread is marked inside a command
    /// already.
    #[inline]
    pub fn gate(&self, command_flags: u32) -> Option<Gate> {
        let state = self.state.load(SeqCst);
        if state == IDLE {
            return None;
        }
        self.gate_slow(state, command_flags)
    }

    #[cold]
    fn gate_slow(&self, state: u8, command_flags: u32) -> Option<Gate> {
        if state == BUSY {
            if command_flags & flags::ALLOW_BUSY != 0 {
                return None;
            }
            return Some(Gate::Refuse(CommandError::fixed(self.busy_line())));
        }
        Some(Gate::Wait(Box::pin(wait_for_change(
            self.state.clone(),
            self.changed.clone(),
            state,
        ))))
    }

    /// Redis's `-BUSY` line for what runs.
    pub fn busy_line(&self) -> &'static str {
        if self.function.load(Relaxed) {
            BUSY_FUNCTION
        } else {
            BUSY_SCRIPT
        }
    }

    /// A script starts on this thread: other commands wait from now on. False if another
    /// script took the state first (one that started on another thread after this one's
    /// command passed the gate): this one waits for it ([`Busy::idle`]) and tries again.
    /// `worker` is the index of the worker thread it runs on, if known ([`Busy::runner`]).
    pub fn try_start(&self, kind: ScriptKind, worker: Option<usize>) -> bool {
        if self
            .state
            .compare_exchange(IDLE, RUNNING, SeqCst, Relaxed)
            .is_err()
        {
            return false;
        }
        self.function.store(kind == ScriptKind::Function, Relaxed);
        self.wrote.store(false, Relaxed);
        self.kill.store(false, Relaxed);
        self.runner.store(worker.unwrap_or(NO_RUNNER), Relaxed);
        true
    }

    /// The index of the worker thread a running script keeps busy, if one runs and it is
    /// known: a server hands new connections to other workers meanwhile.
    pub fn runner(&self) -> Option<usize> {
        if self.state.load(Relaxed) == IDLE {
            return None;
        }
        Some(self.runner.load(Relaxed)).filter(|&w| w != NO_RUNNER)
    }

    /// Whether no script runs now, for work outside commands that takes the store (the
    /// cron's): to be asked while marked inside a command, as [`Busy::gate`] is.
    pub fn idle_now(&self) -> bool {
        self.state.load(SeqCst) == IDLE
    }

    /// The running script has run past `busy-reply-threshold`: other commands get `-BUSY`,
    /// and it may be killed.
    pub fn turn_busy(&self) {
        if self.state.swap(BUSY, Relaxed) != BUSY {
            self.changed.notify_waiters();
        }
    }

    /// Whether the running script is busy already.
    pub fn is_busy(&self) -> bool {
        self.state.load(Relaxed) == BUSY
    }

    /// The script ended: commands waiting run.
    pub fn end(&self) {
        self.state.store(IDLE, Relaxed);
        self.kill.store(false, Relaxed);
        self.changed.notify_waiters();
    }

    /// The running script wrote: it can no longer be killed.
    pub fn wrote(&self) {
        self.wrote.store(true, Relaxed);
    }

    /// Whether the running script was asked to stop.
    #[inline]
    pub fn kill_requested(&self) -> bool {
        self.kill.load(Relaxed)
    }

    /// `SCRIPT KILL` (`kind` [`ScriptKind::Eval`]) or `FUNCTION KILL`: asks the running script
    /// to stop, or says why not with Redis's error.
    pub fn request_kill(&self, kind: ScriptKind) -> Result<(), CommandError> {
        if self.state.load(Relaxed) == IDLE {
            return Err(CommandError::fixed(NOTBUSY));
        }
        if self.wrote.load(Relaxed) {
            return Err(CommandError::fixed(UNKILLABLE));
        }
        let running = if self.function.load(Relaxed) {
            ScriptKind::Function
        } else {
            ScriptKind::Eval
        };
        if running != kind {
            return Err(CommandError::fixed(self.busy_line()));
        }
        self.kill.store(true, Relaxed);
        Ok(())
    }

    /// The server is shutting down: the running script, if any, stops at its next look at
    /// the kill flag, whether or not it wrote.
    pub fn stop_for_shutdown(&self) {
        if self.state.load(Relaxed) != IDLE {
            self.kill.store(true, Relaxed);
        }
    }

    /// Whether a script runs now and, if so, which kind.
    pub fn running(&self) -> Option<ScriptKind> {
        if self.state.load(Relaxed) == IDLE {
            return None;
        }
        Some(if self.function.load(Relaxed) {
            ScriptKind::Function
        } else {
            ScriptKind::Eval
        })
    }

    /// Waits (asynchronously) until no script runs.
    pub async fn idle(&self) {
        while self.state.load(Relaxed) != IDLE {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.state.load(Relaxed) == IDLE {
                return;
            }
            notified.await;
        }
    }
}

/// Waits until the state is no longer `seen` (the script ended or turned busy). The
/// notification is enabled before the state is looked at again, so a change in between is
/// not missed.
async fn wait_for_change(state: Arc<AtomicU8>, changed: Arc<Notify>, seen: u8) {
    let notified = changed.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    if state.load(Relaxed) != seen {
        return;
    }
    notified.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_pass_wait_or_are_refused_as_the_script_runs() {
        let busy = Busy::default();
        assert!(busy.gate(0).is_none());
        assert_eq!(
            busy.request_kill(ScriptKind::Eval),
            Err(CommandError::fixed(NOTBUSY))
        );
        assert!(busy.try_start(ScriptKind::Eval, None));
        assert!(
            !busy.try_start(ScriptKind::Eval, None),
            "two scripts at once"
        );
        assert!(!busy.idle_now());
        assert!(matches!(busy.gate(flags::ALLOW_BUSY), Some(Gate::Wait(_))));
        busy.turn_busy();
        assert!(busy.gate(flags::ALLOW_BUSY).is_none());
        assert!(matches!(busy.gate(0), Some(Gate::Refuse(e)) if e.line() == BUSY_SCRIPT));
        assert_eq!(
            busy.request_kill(ScriptKind::Function),
            Err(CommandError::fixed(BUSY_SCRIPT))
        );
        assert_eq!(busy.request_kill(ScriptKind::Eval), Ok(()));
        assert!(busy.kill_requested());
        busy.wrote();
        assert_eq!(
            busy.request_kill(ScriptKind::Eval),
            Err(CommandError::fixed(UNKILLABLE))
        );
        busy.end();
        assert!(busy.gate(0).is_none() && !busy.kill_requested());
        assert!(busy.idle_now());
        assert!(busy.try_start(ScriptKind::Function, Some(1)));
        assert_eq!(busy.runner(), Some(1));
        busy.turn_busy();
        assert!(matches!(busy.gate(0), Some(Gate::Refuse(e)) if e.line() == BUSY_FUNCTION));
    }
}
