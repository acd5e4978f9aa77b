//! `redis.call` and `redis.pcall`: a command run from a script, after Redis 7.0's checks
//! (`scriptCall`) in its order: the arguments, the command and its arity, `noscript`, the
//! user's permissions, writes in a read-only script or on a replica, memory, the cluster's
//! slots; then the command's handler, its reply decoded in the script's protocol.

use std::cell::Cell;
use std::ffi::c_int;
use std::io::Write as _;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use mlua::ffi::{self, lua_State};
use mlua::{Lua, MultiValue, Value as Lua_};
use shoal_cluster::key_slot;
use shoal_frontdoor::{Command, CommandError, Conn, ScriptKind, table};
use shoal_proto::command_table::flags;
use shoal_proto::{Argv, Protocol};

use super::cache::ScriptFlags;
use super::convert::{TWO_63, number_text};
use super::errors::table_error;
use super::raw::{push_error_table, push_reply};
use crate::commands::{Ctx, handler, run_now};
use crate::conn::NodeConn;
use crate::shared::Shared;

/// A script being run: what its calls need.
pub(crate) struct Run<'a> {
    /// The node.
    pub shared: &'a Shared,
    /// The calling connection, front door's part.
    pub conn: &'a mut Conn,
    /// The calling connection, node's part.
    pub client: &'a mut NodeConn,
    /// What the script is called in errors (`script: <name>`): its SHA1 or function name.
    pub name: &'a str,
    /// `EVAL` or a function.
    pub kind: ScriptKind,
    /// Writes are refused (`EVAL_RO`, `FCALL_RO`, `no-writes`).
    pub read_only: bool,
    /// Its declared flags.
    pub flags: ScriptFlags,
    /// The protocol its calls' replies come in (`redis.setresp`).
    pub resp: Protocol,
    /// The slot of the keys it declared or accessed first (cluster mode).
    pub slot: Option<u16>,
    /// It wrote.
    pub wrote: bool,
    /// When it started.
    pub started: Instant,
    /// `busy-reply-threshold`.
    pub threshold: Duration,
    /// Its calls' arguments and replies.
    pub buffers: Buffers,
}

/// What a script's calls are read and answered in: kept by each thread from one script to
/// the next, so that once grown a call allocates none of them.
#[derive(Default)]
pub(crate) struct Buffers {
    /// A call's arguments, back to back.
    args: Vec<u8>,
    /// Where each argument lies in `args`.
    ranges: Vec<Range<usize>>,
    /// The command's reply, RESP.
    reply: Vec<u8>,
    /// The error line of a call that failed.
    error: Vec<u8>,
}

thread_local! {
    /// This thread's buffers between scripts.
    static BUFFERS: Cell<Buffers> = Cell::default();
}

/// Buffers bigger than this are not kept between scripts (a script that read a big value
/// does not hold its memory for ever).
const KEEP_AT_MOST: usize = 64 << 10;

impl Buffers {
    /// This thread's buffers (empty ones the first time).
    pub(crate) fn take() -> Buffers {
        BUFFERS.take()
    }

    /// Gives the buffers back to this thread for its next script.
    pub(crate) fn keep(mut self) {
        for buffer in [&mut self.args, &mut self.reply, &mut self.error] {
            if buffer.capacity() > KEEP_AT_MOST {
                *buffer = Vec::new();
            }
        }
        if self.ranges.capacity() > KEEP_AT_MOST / 16 {
            self.ranges = Vec::new();
        }
        BUFFERS.set(self);
    }

    /// Reads a call's arguments from the Lua stack as Redis's `luaArgsToRedisArgv` takes
    /// them: strings, and numbers as Lua writes them.
    ///
    /// # Safety
    /// `state` is a live Lua state; its stack holds the arguments. Reads only (it never
    /// raises).
    unsafe fn read(&mut self, state: *mut lua_State) -> Result<(), String> {
        // SAFETY: the caller's contract.
        let count = unsafe { ffi::lua_gettop(state) };
        if count == 0 {
            return Err("ERR Please specify at least one argument for this redis lib call".into());
        }
        self.args.clear();
        self.ranges.clear();
        for index in 1..=count {
            let start = self.args.len();
            // SAFETY: `index` is on the stack; `lua_tolstring` of a string neither converts
            // nor allocates, and its bytes live while the string is on the stack.
            unsafe {
                match ffi::lua_type(state, index) {
                    ffi::LUA_TSTRING => {
                        let mut len = 0;
                        let data = ffi::lua_tolstring(state, index, &mut len);
                        self.args
                            .extend_from_slice(std::slice::from_raw_parts(data.cast(), len));
                    }
                    ffi::LUA_TNUMBER => {
                        write_number(&mut self.args, ffi::lua_tonumber(state, index));
                    }
                    _ => {
                        return Err(
                            "ERR Lua redis lib command arguments must be strings or integers"
                                .into(),
                        );
                    }
                }
            }
            self.ranges.push(start..self.args.len());
        }
        Ok(())
    }
}

/// A number argument as the script's call sends it: an integer in decimal (as mlua reads a
/// Lua 5.1 number with an exact `i64` value), any other number as Lua's `tostring` writes it.
fn write_number(out: &mut Vec<u8>, n: f64) {
    if (-TWO_63..TWO_63).contains(&n) && (n as i64 as f64).to_bits() == n.to_bits() {
        let _ = write!(out, "{}", n as i64);
    } else {
        out.extend_from_slice(number_text(n).as_bytes());
    }
}

thread_local! {
    /// The script running on this thread, while its Lua code runs.
    static CURRENT: Cell<*mut Run<'static>> = const { Cell::new(std::ptr::null_mut()) };
}

/// Makes `run` the script the callbacks of this thread's Lua state see until dropped.
pub(crate) struct Current(());

impl Current {
    /// Installs `run` (which must outlive the returned guard).
    pub(crate) fn install(run: &mut Run<'_>) -> Current {
        CURRENT.set((run as *mut Run<'_>).cast());
        Current(())
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.set(std::ptr::null_mut());
    }
}

/// Runs `f` with the script running on this thread (`None` when none is).
pub(crate) fn with_run<R>(f: impl FnOnce(&mut Run<'_>) -> R) -> Option<R> {
    let run = CURRENT.get();
    if run.is_null() {
        return None;
    }
    // SAFETY: `CURRENT` is set only by `Current::install` from a `&mut Run` that outlives the
    // guard, and cleared when the guard drops; it is read on this thread only, by the Lua
    // callbacks and hook, which never run nested inside one another, so this is the only
    // reference to the `Run` while `f` runs.
    Some(f(unsafe { &mut *run }))
}

/// `redis.call(...)` (a Lua C function): the reply, or the command's error raised as Redis's
/// error table.
///
/// # Safety
/// Called by Lua only, with a live state.
pub(crate) unsafe extern "C-unwind" fn redis_call(state: *mut lua_State) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { call_from_lua(state, true) }
}

/// `redis.pcall(...)` (a Lua C function): the reply, or the command's error table.
///
/// # Safety
/// Called by Lua only, with a live state.
pub(crate) unsafe extern "C-unwind" fn redis_pcall(state: *mut lua_State) -> c_int {
    // SAFETY: the caller's contract.
    unsafe { call_from_lua(state, false) }
}

/// What a call from Lua came to, once its Rust work is done.
#[derive(Clone, Copy)]
enum Called {
    /// The reply is in the buffers, in RESP3 or not.
    Reply { resp3: bool },
    /// The error line is in the buffers.
    Failed,
    /// No script runs on this thread.
    NoScript,
    /// The call panicked.
    Panicked,
}

/// A call from Lua: the command runs in Rust first, with everything it owns dropped when
/// that ends; only then does its reply go onto the Lua stack, because that may raise a Lua
/// error (out of memory), a `longjmp` that would skip the destructors of the frames it
/// leaves (see [`super::raw`]).
///
/// # Safety
/// As [`redis_call`].
unsafe fn call_from_lua(state: *mut lua_State, raise: bool) -> c_int {
    let called = match catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `state` is live (the caller's contract) and holds the call's arguments;
        // `call_from_stack` only reads them.
        with_run(|run| unsafe { run.call_from_stack(state) })
    })) {
        Ok(Some(Ok(resp3))) => Called::Reply { resp3 },
        Ok(Some(Err(()))) => Called::Failed,
        Ok(None) => Called::NoScript,
        Err(_) => Called::Panicked,
    };
    // SAFETY: `state` is live; each push below needs at most three stack slots (Lua
    // guarantees a C function twenty), and the closures own nothing. `lua_error` does not
    // return: the error table goes to the nearest protected call.
    unsafe {
        match called {
            Called::Reply { resp3 } => {
                with_run(|run| push_reply(state, &run.buffers.reply, resp3));
                return 1;
            }
            Called::Failed => {
                with_run(|run| push_error_table(state, &run.buffers.error));
            }
            Called::NoScript => push_error_table(state, b"ERR no script is running"),
            Called::Panicked => push_error_table(state, b"ERR the command panicked"),
        }
        if raise {
            ffi::lua_error(state);
        }
    }
    1
}

/// `redis.acl_check_cmd(...)`: whether the user may run the command.
pub(crate) fn acl_check(_: &Lua, args: MultiValue) -> mlua::Result<bool> {
    let outcome = with_run(|run| -> Result<bool, String> {
        if args.is_empty() {
            return Err("ERR Please specify at least one argument for this redis lib call".into());
        }
        let argv = arguments(&args)?;
        let parts = Parts::new(&argv);
        let command = lookup(&parts.argv())
            .ok_or_else(|| "ERR Invalid command passed to redis.acl_check_cmd()".to_string())?;
        let args: Vec<&[u8]> = parts.argv().iter().collect();
        let acl = &run.shared.door.acl;
        Ok(acl
            .permit(&run.conn.user, command, &args, String::new)
            .is_ok())
    });
    match outcome {
        Some(Ok(allowed)) => Ok(allowed),
        Some(Err(line)) => Err(table_error(line)),
        None => Ok(false),
    }
}

/// The arguments as Redis's `luaArgsToRedisArgv` takes them: strings, and numbers as Lua
/// writes them.
fn arguments(args: &MultiValue) -> Result<Vec<Vec<u8>>, String> {
    args.iter()
        .map(|arg| match arg {
            Lua_::String(s) => Ok(s.as_bytes().to_vec()),
            Lua_::Integer(n) => Ok(n.to_string().into_bytes()),
            Lua_::Number(n) => Ok(number_text(*n).into_bytes()),
            _ => Err("ERR Lua redis lib command arguments must be strings or integers".into()),
        })
        .collect()
}

/// Arguments laid out as an [`Argv`].
struct Parts {
    data: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Parts {
    fn new(args: &[Vec<u8>]) -> Parts {
        let mut data = Vec::with_capacity(args.iter().map(Vec::len).sum());
        let ranges = args
            .iter()
            .map(|a| {
                let start = data.len();
                data.extend_from_slice(a);
                start..data.len()
            })
            .collect();
        Parts { data, ranges }
    }

    fn argv(&self) -> Argv<'_> {
        Argv::from_parts(&self.data, &self.ranges)
    }
}

/// The command (or subcommand) a line names, if Shoal has it.
fn lookup(argv: &Argv<'_>) -> Option<&'static Command> {
    let command = table().lookup(argv.get(0))?;
    if command.is_container() && argv.len() >= 2 {
        return command.subcommand(argv.get(1));
    }
    Some(command)
}

/// Redis's words for a permission a script's user lacks.
fn acl_refusal(denied: &CommandError) -> String {
    let text = denied.line();
    let what = if text.starts_with("NOPERM this user has no permissions to run") {
        "run this command or subcommand"
    } else if text.ends_with("keys used as arguments") {
        "access at least one of the keys mentioned in the command"
    } else {
        "publish to the channel mentioned in the command"
    };
    format!("ERR The user executing the script can't {what}")
}

impl Run<'_> {
    /// A call whose arguments are on the Lua stack: `Ok(resp3)` with the reply in
    /// `self.buffers.reply` (in RESP3 or not), or `Err` with the error line in
    /// `self.buffers.error`.
    ///
    /// # Safety
    /// As [`Buffers::read`].
    unsafe fn call_from_stack(&mut self, state: *mut lua_State) -> Result<bool, ()> {
        let mut buffers = std::mem::take(&mut self.buffers);
        // SAFETY: the caller's contract.
        let outcome = unsafe { buffers.read(state) }.and_then(|()| {
            let argv = Argv::from_parts(&buffers.args, &buffers.ranges);
            self.call(&argv, &mut buffers.reply)
        });
        if let Err(line) = &outcome {
            buffers.error.clear();
            buffers.error.extend_from_slice(line.as_bytes());
        }
        self.buffers = buffers;
        outcome
            .map(|()| self.resp == Protocol::Resp3)
            .map_err(|_| ())
    }

    /// One call: its reply written to `reply`, or the error line.
    fn call(&mut self, argv: &Argv<'_>, reply: &mut Vec<u8>) -> Result<(), String> {
        let Some(command) = lookup(argv) else {
            return Err("ERR Unknown Redis command called from script".into());
        };
        let spec = command.spec;
        if !spec.arity_ok(argv.len()) || command.is_container() {
            return Err("ERR Wrong number of args calling Redis command from script".into());
        }
        if spec.has(flags::NOSCRIPT) {
            return Err("ERR This Redis command is not allowed from script".into());
        }
        if !self.conn.user.unrestricted() {
            let args: Vec<&[u8]> = argv.iter().collect();
            let acl = &self.shared.door.acl;
            let conn = &*self.conn;
            if let Err(denied) = acl.permit(&conn.user, command, &args, || conn.info.describe()) {
                return Err(acl_refusal(&denied));
            }
        }
        self.check_write(spec.flags)?;
        self.check_cluster(command, argv)?;
        if spec.has(flags::WRITE) {
            self.wrote = true;
            self.shared.door.busy.wrote();
        }
        self.run_command(command, argv, reply)
    }

    /// Writes in a read-only script, on a replica, and over `maxmemory` before the first
    /// write (Redis's `scriptVerifyWriteCommandAllow` and `scriptVerifyOOM`).
    fn check_write(&mut self, command_flags: u32) -> Result<(), String> {
        if command_flags & flags::WRITE != 0 {
            if self.read_only {
                return Err("ERR Write commands are not allowed from read-only scripts.".into());
            }
            if self.shared.replication.is_replica() {
                return Err("READONLY You can't write against a read only replica.".into());
            }
        }
        if command_flags & flags::DENYOOM != 0
            && !self.flags.allow_oom
            && !self.wrote
            && self.shared.store.make_room().is_err()
        {
            return Err(CommandError::OutOfMemory.line().into_owned());
        }
        Ok(())
    }

    /// In cluster mode: the command's keys must be this node's, in the slot the script uses
    /// (unless it declared `allow-cross-slot-keys`).
    fn check_cluster(&mut self, command: &Command, argv: &Argv<'_>) -> Result<(), String> {
        let Some(cluster) = &self.shared.cluster else {
            return Ok(());
        };
        let read_here = self.client.readonly && command.spec.has(flags::READONLY);
        let mut slot = None;
        for position in command.spec.key_positions_in(argv) {
            let this = key_slot(argv.get(position));
            if slot.is_some_and(|s| s != this) || !cluster.serves_here(this, read_here) {
                return Err(
                    "ERR Script attempted to access a non local key in a cluster node".into(),
                );
            }
            slot = Some(this);
        }
        if let Some(slot) = slot
            && !self.flags.allow_cross_slot
        {
            match self.slot {
                None => self.slot = Some(slot),
                Some(first) if first != slot => {
                    return Err(
                        "ERR Script attempted to access keys that do not hash to the \
                                same slot"
                            .into(),
                    );
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// Runs the command's handler with the script's protocol, its reply written to `out`.
    fn run_command(
        &mut self,
        command: &Command,
        argv: &Argv<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        out.clear();
        let protocol = std::mem::replace(&mut self.conn.protocol, self.resp);
        let result = match (command.spec.name, handler(command.id)) {
            (_, Some(handler)) => {
                let mut ctx = Ctx {
                    shared: self.shared,
                    conn: &mut *self.conn,
                    client: &mut *self.client,
                    out: &mut *out,
                };
                run_now(&mut ctx, handler, argv)
            }
            ("ping", None) => {
                let mut reply = self.conn.reply(out);
                match argv.len() {
                    1 => reply.simple("PONG"),
                    _ => reply.bulk(argv.get(1)),
                }
                Ok(())
            }
            ("echo", None) => {
                self.conn.reply(out).bulk(argv.get(1));
                Ok(())
            }
            ("select", None) => match shoal_proto::args::parse_i64(argv.get(1)) {
                Some(0) => {
                    self.conn.reply(out).ok();
                    Ok(())
                }
                Some(_) => Err(CommandError::DbIndexOutOfRange),
                None => Err(CommandError::NotInteger),
            },
            _ => Err(CommandError::fixed(
                "ERR This Redis command is not allowed from script",
            )),
        };
        self.conn.protocol = protocol;
        if self.conn.tracking() {
            let limit = self.shared.door.settings.pubsub_output_limit();
            self.conn.remember_script_read(command.spec, argv, limit);
        }
        if command.spec.has(flags::WRITE) && self.shared.replication.recording() {
            self.client.write_offset = self.shared.replication.offset();
        }
        result.map_err(|error| error.line().into_owned())
    }
}
