//! Redis 7's command table, restricted to the commands Shoal implements.
//!
//! The data in [`redis7`] is recorded from a real `redis-server` 7.0 by
//! `tools/gen-command-table.py`, so `COMMAND`, `COMMAND INFO` and `COMMAND DOCS` answer byte for
//! byte as Redis does, and the arity and key positions that cluster clients route by are Redis's own.
//!
//! Commands of later Redis versions (7.4's hash field expiry: `HEXPIRE`..., 8.0's `HGETDEL`,
//! `HGETEX`, `HSETEX`) cannot be recorded from Redis 7.0: the generator's `LATER_COMMANDS`
//! describes them by hand and builds their entries in the recorded ones' shapes, so they live in
//! the same table and need nothing special here.
//!
//! Shoal's own commands, which no Redis has (the sharded counters' `COUNTER.INCRBY`,
//! `COUNTER.GET` and `COUNTER.DEL`, with module-style names), are described by hand the same
//! way (the generator's `SHOAL_COMMANDS`) and live in the same table. Their key spec names the
//! counter's key only (the first argument), not its parts `key#1`..`key#N`.

use std::ops::Range;

pub mod acl;
mod acl_redis7;
mod redis7;

/// A reply value recorded from Redis, kept as static data and encoded on demand in RESP2 or RESP3.
#[derive(Debug)]
pub enum StaticValue {
    /// A simple string (`+...`), as Redis uses for command flags and ACL categories.
    Simple(&'static str),
    /// A bulk string (`$...`).
    Bulk(&'static str),
    /// An integer (`:...`).
    Int(i64),
    /// An array (`*...`).
    Array(&'static [StaticValue]),
    /// A set: `~` in RESP3, an array in RESP2.
    Set(&'static [StaticValue]),
    /// A map given as alternating keys and values: `%` in RESP3, a flat array in RESP2.
    Map(&'static [StaticValue]),
}

/// Command flags, as bits. Names follow Redis's `CMD_*` flags (`COMMAND INFO` shows them in lower case).
pub mod flags {
    /// The command may modify the keyspace.
    pub const WRITE: u32 = 1 << 0;
    /// The command only reads.
    pub const READONLY: u32 = 1 << 1;
    /// The command may grow memory use, so it is refused (`-OOM`) when over `maxmemory`.
    pub const DENYOOM: u32 = 1 << 2;
    /// An administrative command.
    pub const ADMIN: u32 = 1 << 3;
    /// A pub/sub command.
    pub const PUBSUB: u32 = 1 << 4;
    /// Not allowed in scripts.
    pub const NOSCRIPT: u32 = 1 << 5;
    /// May block the client.
    pub const BLOCKING: u32 = 1 << 6;
    /// Allowed while the dataset loads.
    pub const LOADING: u32 = 1 << 7;
    /// Allowed on a replica with stale data.
    pub const STALE: u32 = 1 << 8;
    /// Not shown to `MONITOR`.
    pub const SKIP_MONITOR: u32 = 1 << 9;
    /// Not recorded in the slow log.
    pub const SKIP_SLOWLOG: u32 = 1 << 10;
    /// Constant or `O(log n)` time.
    pub const FAST: u32 = 1 << 11;
    /// Allowed before the client authenticates.
    pub const NO_AUTH: u32 = 1 << 12;
    /// May replicate even when read-only.
    pub const MAY_REPLICATE: u32 = 1 << 13;
    /// Key arguments are optional.
    pub const NO_MANDATORY_KEYS: u32 = 1 << 14;
    /// Not allowed inside `MULTI`.
    pub const NO_MULTI: u32 = 1 << 15;
    /// Key positions cannot be found from first/last/step alone.
    pub const MOVABLE_KEYS: u32 = 1 << 16;
    /// Allowed while a script is busy.
    pub const ALLOW_BUSY: u32 = 1 << 17;
    /// Not propagated to replicas.
    pub const NO_PROPAGATE: u32 = 1 << 18;
}

/// One command (or subcommand) of the table.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case name; a subcommand's is `container|sub`, e.g. `config|get` (Redis's "full name").
    pub name: &'static str,
    /// Redis arity: `n` means exactly `n` arguments including the name, `-n` means at least `n`.
    pub arity: i32,
    /// A set of [`flags`] bits.
    pub flags: u32,
    /// Position of the first key argument (0 if the command takes none).
    pub first_key: i32,
    /// Position of the last key argument (negative counts from the end).
    pub last_key: i32,
    /// Distance between key arguments.
    pub step: i32,
    /// The command's entry in `COMMAND` / `COMMAND INFO`, exactly as Redis returns it.
    pub info: &'static StaticValue,
    /// The command's value in `COMMAND DOCS` (a map), exactly as Redis returns it.
    pub docs: &'static StaticValue,
    /// Subcommands Shoal implements (empty for plain commands).
    pub subcommands: &'static [CommandSpec],
    /// Lines of the `HELP` subcommand's reply, for container commands (empty otherwise).
    pub help: &'static [&'static str],
}

impl CommandSpec {
    /// Whether `argc` arguments (the name included) satisfy this command's arity.
    #[inline]
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= self.arity.unsigned_abs() as usize
        }
    }

    /// Whether the command has every flag in `mask`.
    #[inline]
    pub fn has(&self, mask: u32) -> bool {
        self.flags & mask == mask
    }

    /// The subcommand called `sub` (matched case-insensitively), if Shoal implements it.
    pub fn subcommand(&self, sub: &[u8]) -> Option<&'static CommandSpec> {
        let prefix = self.name.len() + 1;
        self.subcommands
            .iter()
            .find(|s| s.name.as_bytes()[prefix..].eq_ignore_ascii_case(sub))
    }

    /// Positions of the key arguments in a command line of `argc` arguments, from first/last/step.
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> + use<> {
        self.key_range(argc)
    }
}

impl CommandSpec {
    /// Whether the command declares its keys by a count (`EVAL`, `EVALSHA`, `FCALL` and their
    /// `_RO` forms: `numkeys` at position 2, then that many keys).
    pub fn declares_keys(&self) -> bool {
        matches!(
            self.name,
            "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro"
        )
    }

    /// Positions of the key arguments in a command line: from first/last/step, or, for a
    /// command that declares its keys by a count ([`CommandSpec::declares_keys`]), the keys
    /// that count declares (none if it is not a number of keys the line holds, as Redis's
    /// `evalGetKeys` finds none then).
    pub fn key_positions_in(&self, argv: &crate::Argv<'_>) -> std::iter::StepBy<Range<usize>> {
        let argc = argv.len();
        self.key_positions_at(argc, (argc > 2).then(|| argv.get(2)))
    }

    /// [`CommandSpec::key_positions_in`] for a line of `argc` arguments whose third argument
    /// (the count of a command that declares its keys) is `third`.
    pub fn key_positions_at(
        &self,
        argc: usize,
        third: Option<&[u8]>,
    ) -> std::iter::StepBy<Range<usize>> {
        if !self.declares_keys() {
            return self.key_range(argc);
        }
        let count = third
            .and_then(crate::args::parse_i64)
            .and_then(|n| usize::try_from(n).ok())
            .filter(|&n| argc >= 3 && n <= argc - 3);
        match count {
            Some(n) => (3..3 + n).step_by(1),
            None => (0..0).step_by(1),
        }
    }

    fn key_range(&self, argc: usize) -> std::iter::StepBy<Range<usize>> {
        let first = self.first_key.max(0) as usize;
        let last = if self.last_key < 0 {
            argc as i64 + self.last_key as i64
        } else {
            self.last_key as i64
        };
        let step = self.step.max(1) as usize;
        let end = if first == 0 || last < first as i64 {
            first
        } else {
            (last as usize).min(argc.saturating_sub(1)) + 1
        };
        (first..end).step_by(step)
    }
}

/// Every top-level command Shoal implements, sorted by name.
pub fn commands() -> &'static [CommandSpec] {
    redis7::COMMANDS
}

/// Looks up a top-level command by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut lower = [0u8; 32];
    if name.len() > lower.len() {
        return None;
    }
    let lower = &mut lower[..name.len()];
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let table = redis7::COMMANDS;
    table
        .binary_search_by(|spec| spec.name.as_bytes().cmp(lower))
        .ok()
        .map(|i| &table[i])
}

#[cfg(test)]
mod tests;
