//! `redis.call` and `redis.pcall`: a command run from a script, after Redis 7.0's checks
//! (`scriptCall`) in its order: the arguments, the command and its arity, `noscript`, the
//! user's permissions, writes in a read-only script or on a replica, memory, the cluster's
//! slots; then the command's handler, its reply decoded in the script's protocol.

use std::cell::Cell;
use std::time::{Duration, Instant};

use mlua::{Lua, MultiValue, Value as Lua_};
use shoal_cluster::key_slot;
use shoal_frontdoor::{Command, CommandError, Conn, ScriptKind, table};
use shoal_proto::command_table::flags;
use shoal_proto::reply::decode;
use shoal_proto::{Argv, Protocol};

use super::cache::ScriptFlags;
use super::convert::{error_table, number_text, reply_to_lua};
use super::errors::table_error;
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
    pub name: String,
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
    /// Where its calls' replies are written.
    pub scratch: Vec<u8>,
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

/// `redis.call(...)`: the reply, or the command's error raised as Redis's error table.
pub(crate) fn call(lua: &Lua, args: MultiValue) -> mlua::Result<Lua_> {
    match with_run(|run| run.call(lua, &args)) {
        Some(Ok(value)) => Ok(value),
        Some(Err(line)) => Err(table_error(line)),
        None => Err(table_error("ERR no script is running")),
    }
}

/// `redis.pcall(...)`: the reply, or the command's error table.
pub(crate) fn pcall(lua: &Lua, args: MultiValue) -> mlua::Result<Lua_> {
    match with_run(|run| run.call(lua, &args)) {
        Some(Ok(value)) => Ok(value),
        Some(Err(line)) => error_table(lua, line.as_bytes()),
        None => error_table(lua, b"ERR no script is running"),
    }
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
    /// One call: its reply as a Lua value, or the error line.
    fn call(&mut self, lua: &Lua, args: &MultiValue) -> Result<Lua_, String> {
        if args.is_empty() {
            return Err("ERR Please specify at least one argument for this redis lib call".into());
        }
        let args = arguments(args)?;
        let parts = Parts::new(&args);
        let argv = parts.argv();
        let Some(command) = lookup(&argv) else {
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
        self.check_cluster(command, &argv)?;
        if spec.has(flags::WRITE) {
            self.wrote = true;
            self.shared.door.busy.wrote();
        }
        self.run_command(lua, command, &argv)
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

    /// Runs the command's handler with the script's protocol, its reply decoded to Lua.
    fn run_command(
        &mut self,
        lua: &Lua,
        command: &Command,
        argv: &Argv<'_>,
    ) -> Result<Lua_, String> {
        self.scratch.clear();
        let protocol = std::mem::replace(&mut self.conn.protocol, self.resp);
        let result = match (command.spec.name, handler(command.id)) {
            (_, Some(handler)) => {
                let mut ctx = Ctx {
                    shared: self.shared,
                    conn: &mut *self.conn,
                    client: &mut *self.client,
                    out: &mut self.scratch,
                };
                run_now(&mut ctx, handler, argv)
            }
            ("ping", None) => {
                let mut reply = self.conn.reply(&mut self.scratch);
                match argv.len() {
                    1 => reply.simple("PONG"),
                    _ => reply.bulk(argv.get(1)),
                }
                Ok(())
            }
            ("echo", None) => {
                self.conn.reply(&mut self.scratch).bulk(argv.get(1));
                Ok(())
            }
            ("select", None) => match shoal_proto::args::parse_i64(argv.get(1)) {
                Some(0) => {
                    self.conn.reply(&mut self.scratch).ok();
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
        if let Err(error) = result {
            return Err(error.line().into_owned());
        }
        let resp3 = self.resp == Protocol::Resp3;
        match decode(&self.scratch) {
            Ok(Some((value, _))) => reply_to_lua(lua, value, resp3).map_err(|e| e.to_string()),
            _ => Ok(Lua_::Nil),
        }
    }
}
