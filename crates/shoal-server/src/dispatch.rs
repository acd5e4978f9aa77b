//! Command lookup and execution, in the order Redis 7's `processCommand` checks things:
//! unknown command, unknown subcommand, arity, authentication, memory; then the handler runs
//! and its time is recorded (stats, latency histogram, slow log).

use std::collections::HashMap;
use std::time::Instant;

use shoal_proto::command_table::{self, CommandSpec, flags};
use shoal_proto::{Argv, Reply};

use crate::cluster::Route;
use crate::commands;
use crate::error::{CommandError, CommandResult, c_str, truncated_arg};
use crate::session::{ClientState, Pending};
use crate::shared::Shared;
use crate::stats::WorkerStats;

/// What runs a command: writes its success reply into the context, or returns the error.
pub type Handler = fn(&mut Ctx<'_>, &Argv<'_>) -> CommandResult;

/// What a command handler works with.
pub struct Ctx<'a> {
    /// The node's shared state.
    pub shared: &'a Shared,
    /// The calling client's connection state.
    pub client: &'a mut ClientState,
    /// The connection's output buffer.
    pub out: &'a mut Vec<u8>,
    /// Set instead of a reply when the command must wait (cluster routing).
    pub pending: Option<Pending>,
}

impl Ctx<'_> {
    /// A reply writer in the client's protocol.
    #[inline]
    pub fn reply(&mut self) -> Reply<'_> {
        Reply::new(self.out, self.client.protocol)
    }
}

/// One command (or subcommand) Shoal runs.
pub struct Command {
    /// Its entry in Redis's table.
    pub spec: &'static CommandSpec,
    /// Its handler; `None` only for containers, which run through a subcommand.
    pub handler: Option<Handler>,
    /// Dense id, for statistics.
    pub id: u32,
    /// Subcommands, for containers (`CONFIG`, `CLIENT`, ...).
    pub subcommands: Box<[Command]>,
}

impl Command {
    fn subcommand(&self, name: &[u8]) -> Option<&Command> {
        let prefix = self.spec.name.len() + 1;
        self.subcommands
            .iter()
            .find(|c| c.spec.name.as_bytes()[prefix..].eq_ignore_ascii_case(name))
    }
}

/// Every command, by name.
pub struct CommandTable {
    commands: Vec<Command>,
    by_name: HashMap<&'static [u8], usize, foldhash::fast::RandomState>,
    names: Vec<&'static str>,
}

impl CommandTable {
    /// Builds the table from Redis's command table and Shoal's handlers.
    pub fn new() -> CommandTable {
        let mut names = Vec::new();
        let build = |spec: &'static CommandSpec, names: &mut Vec<&'static str>| -> Command {
            let handler = commands::handler(spec.name);
            names.push(spec.name);
            Command {
                spec,
                handler,
                id: names.len() as u32 - 1,
                subcommands: Box::new([]),
            }
        };
        let mut commands = Vec::new();
        for spec in command_table::commands() {
            let mut command = build(spec, &mut names);
            command.subcommands = spec
                .subcommands
                .iter()
                .map(|s| build(s, &mut names))
                .collect();
            commands.push(command);
        }
        let by_name = commands
            .iter()
            .enumerate()
            .map(|(i, c)| (c.spec.name.as_bytes(), i))
            .collect();
        CommandTable {
            commands,
            by_name,
            names,
        }
    }

    /// The command called `name` (any case).
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<&Command> {
        let mut lower = [0u8; 24];
        let lower = lower.get_mut(..name.len())?;
        for (dst, src) in lower.iter_mut().zip(name) {
            *dst = src.to_ascii_lowercase();
        }
        self.by_name.get(&*lower).map(|&i| &self.commands[i])
    }

    /// Number of command ids (commands and subcommands).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table is empty (never, in practice).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The full name (`get`, `config|get`) of command id `id`.
    pub fn name(&self, id: u32) -> Option<&'static str> {
        self.names.get(id as usize).copied()
    }

    /// Every top-level command.
    pub fn iter(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter()
    }

    /// Commands (other than containers) that have no handler (must be none; a test checks).
    pub fn missing_handlers(&self) -> Vec<&'static str> {
        self.commands
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
            .filter(|c| c.handler.is_none() && c.subcommands.is_empty())
            .map(|c| c.spec.name)
            .collect()
    }
}

impl Default for CommandTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs one command and records it.
pub fn execute(ctx: &mut Ctx<'_>, argv: &Argv<'_>, worker: &WorkerStats) {
    let shared = ctx.shared;
    let Some(mut command) = shared.commands.lookup(argv.get(0)) else {
        return reject_unknown(ctx, argv);
    };
    if !command.subcommands.is_empty() && argv.len() >= 2 {
        match command.subcommand(argv.get(1)) {
            Some(sub) => command = sub,
            None => {
                let error = CommandError::UnknownSubcommand {
                    sub: truncated_arg(argv.get(1)),
                    container: command.spec.name.to_ascii_uppercase(),
                };
                reject(ctx, worker, command.id, error);
                // Redis found no command here: `CLIENT LIST` shows `cmd=NULL`.
                ctx.client.last_command = u32::MAX;
                return;
            }
        }
    }
    if !command.spec.arity_ok(argv.len()) {
        return reject(
            ctx,
            worker,
            command.id,
            CommandError::WrongArity(command.spec.name),
        );
    }
    let spec = command.spec;
    if !ctx.client.authenticated && !spec.has(flags::NO_AUTH) {
        return reject(ctx, worker, command.id, CommandError::NoAuth);
    }
    if shared.cluster.is_some()
        && spec.first_key == 0
        && spec.has(flags::WRITE)
        && let Some(error) = keyless_write_refusal(shared)
    {
        return reject(ctx, worker, command.id, error);
    }
    if let Some(cluster) = &shared.cluster
        && spec.first_key > 0
    {
        match cluster.route(spec, argv, ctx.client) {
            Route::Local if !shared.replication.data_ready() => {
                return reject(
                    ctx,
                    worker,
                    command.id,
                    CommandError::fixed("LOADING Redis is loading the dataset in memory"),
                );
            }
            Route::Local => {}
            Route::Reject(error) => return reject(ctx, worker, command.id, error),
            Route::AwaitMap => {
                ctx.pending = Some(Pending::AwaitMap);
                return;
            }
            Route::Forward(addr) => {
                ctx.pending = Some(Pending::Forward(addr));
                return;
            }
        }
    }
    if spec.has(flags::WRITE) {
        let replication = &shared.replication;
        if replication.writes_paused() {
            ctx.pending = Some(Pending::AwaitUnpause);
            return;
        }
        if shared.too_few_good_replicas() {
            return reject(
                ctx,
                worker,
                command.id,
                CommandError::fixed(crate::error::NOREPLICAS),
            );
        }
    }
    if spec.has(flags::DENYOOM) && shared.store.make_room().is_err() {
        return reject(ctx, worker, command.id, CommandError::OutOfMemory);
    }
    if spec.has(flags::WRITE) {
        let max = shared.live.max_key_size();
        if spec
            .key_positions(argv.len())
            .any(|i| argv.get(i).len() > max)
        {
            let error = CommandError::Other(
                format!("ERR key is too large (max-key-size is {max} bytes)").into(),
            );
            return reject(ctx, worker, command.id, error);
        }
    }
    let Some(handler) = command.handler else {
        return reject(ctx, worker, command.id, CommandError::WrongArity(spec.name));
    };
    // Set before the handler runs, as Redis does: `CLIENT INFO` shows `cmd=client|info`.
    ctx.client.last_command = command.id;
    let started = Instant::now();
    let result = handler(ctx, argv);
    if spec.has(flags::WRITE) && shared.replication.recording() {
        ctx.client.write_offset = shared.replication.offset();
    }
    let usec = started.elapsed().as_micros() as u64;
    worker.record_call(command.id as usize, usec, result.is_err());
    if let Err(error) = result {
        write_error(ctx, &error);
    }
    if shared.slowlog.should_log(usec) {
        match redacted(spec, argv) {
            None => shared.slowlog.record(argv, usec, &ctx.client.info),
            Some(args) => {
                // The slow log takes parsed arguments: parse the redacted line back.
                let frame = multibulk(&args);
                let mut parser = shoal_proto::RequestParser::new(shoal_proto::Limits::default());
                if let Ok(shoal_proto::Parsed::Command { .. }) = parser.parse(&frame) {
                    shared
                        .slowlog
                        .record(&parser.argv(&frame), usec, &ctx.client.info);
                }
            }
        }
    }
}

/// What Redis shows instead of a secret argument (`shared.redacted`).
const REDACTED: &[u8] = b"(redacted)";

/// Parameters whose `CONFIG SET` values Redis never shows (`SENSITIVE_CONFIG`), Shoal's and
/// those only Redis has (a client setting them on Shoal gets an error, but the secret must not
/// reach the slow log either).
const SENSITIVE_PARAMS: &[&str] = &[
    "requirepass",
    "masterauth",
    "tls-key-file-pass",
    "tls-client-key-file-pass",
];

/// The arguments as Redis records them in the slow log when some are secret (passwords of
/// `AUTH` and `HELLO ... AUTH`, values of sensitive `CONFIG SET` parameters), else `None`.
fn redacted<'a>(spec: &CommandSpec, argv: &Argv<'a>) -> Option<Vec<&'a [u8]>> {
    let mut args: Vec<&[u8]> = argv.iter().collect();
    let mut changed = false;
    let mut redact = |args: &mut Vec<&[u8]>, i: usize| {
        if i < args.len() {
            args[i] = REDACTED;
            changed = true;
        }
    };
    match spec.name {
        // `AUTH` refuses more than two arguments before it redacts them.
        "auth" if args.len() <= 3 => (1..args.len()).for_each(|i| redact(&mut args, i)),
        "hello" => {
            let version_ok =
                args.len() < 2 || matches!(shoal_store::parse_i64(args[1]), Some(2) | Some(3));
            let mut i = 2;
            while version_ok && i < args.len() {
                let more = args.len() - 1 - i;
                if args[i].eq_ignore_ascii_case(b"AUTH") && more >= 2 {
                    redact(&mut args, i + 1);
                    redact(&mut args, i + 2);
                    i += 3;
                } else if args[i].eq_ignore_ascii_case(b"SETNAME") && more >= 1 {
                    i += 2;
                } else {
                    break;
                }
            }
        }
        "config|set" if args.len().is_multiple_of(2) => {
            for i in (2..args.len()).step_by(2) {
                if SENSITIVE_PARAMS
                    .iter()
                    .any(|p| p.as_bytes().eq_ignore_ascii_case(args[i]))
                {
                    redact(&mut args, i + 1);
                }
            }
        }
        _ => {}
    }
    changed.then_some(args)
}

fn multibulk(args: &[&[u8]]) -> Vec<u8> {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg);
        frame.extend_from_slice(b"\r\n");
    }
    frame
}

fn reject(ctx: &mut Ctx<'_>, worker: &WorkerStats, id: u32, error: CommandError) {
    worker.record_rejected(id as usize);
    ctx.client.last_command = id;
    write_error(ctx, &error);
}

fn write_error(ctx: &mut Ctx<'_>, error: &CommandError) {
    ctx.shared.stats.record_error(&error.code());
    write_error_line(ctx.out, &error.bytes());
}

/// `-<line>\r\n`, with any `\r` or `\n` in the line turned into spaces (as Redis's
/// `addReplyErrorFormat` does), client bytes kept verbatim.
fn write_error_line(out: &mut Vec<u8>, line: &[u8]) {
    out.reserve(line.len() + 3);
    out.push(b'-');
    out.extend(
        line.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `-ERR unknown command '<name>', with args beginning with: '<a1>' '<a2>' ...`, exactly as
/// Redis 7 words it: each argument is shown as C's `%.*s` shows it (up to a NUL byte), quoted
/// and followed by a space, while the list is shorter than 128 bytes, each cut to the room left.
fn reject_unknown(ctx: &mut Ctx<'_>, argv: &Argv<'_>) {
    ctx.client.last_command = u32::MAX;
    ctx.shared
        .stats
        .unknown_commands
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut args: Vec<u8> = Vec::new();
    for arg in argv.iter().skip(1) {
        if args.len() >= 128 {
            break;
        }
        let room = 128 - args.len();
        let arg = c_str(arg);
        args.push(b'\'');
        args.extend_from_slice(&arg[..arg.len().min(room)]);
        args.extend_from_slice(b"' ");
    }
    let mut line = b"ERR unknown command '".to_vec();
    line.extend_from_slice(&truncated_arg(argv.get(0)));
    line.extend_from_slice(b"', with args beginning with: ");
    line.extend_from_slice(&args);
    ctx.shared.stats.record_error("ERR");
    write_error_line(ctx.out, &line);
}

/// Why a keyless write (`FLUSHALL`, `FLUSHDB`) may not run on this cluster node: a replica
/// takes its changes from its primary only (Redis's `-READONLY`), and a fenced primary (see
/// `Replication::fenced`) changes nothing.
fn keyless_write_refusal(shared: &Shared) -> Option<CommandError> {
    if matches!(
        shared.replication.role(),
        crate::replication::Role::Replica(_)
    ) {
        return Some(CommandError::fixed(
            "READONLY You can't write against a read only replica.",
        ));
    }
    if shared.replication.fenced() {
        return Some(CommandError::fixed(crate::error::CLUSTER_DOWN));
    }
    None
}
