//! The static command table: every command and subcommand of Redis's table that Shoal
//! serves, looked up by name, with a dense id for statistics and handler tables.
//!
//! Built once, on first use, from [`shoal_proto::command_table`]. The front door answers the
//! connection commands itself ([`Command::is_connection`]); a backend keeps its own handlers
//! in a table indexed by [`Command::id`].

use std::collections::HashMap;
use std::sync::LazyLock;

use shoal_proto::command_table::acl::{KeySpec, acl_id, key_specs};
use shoal_proto::command_table::{self, CommandSpec};

/// A connection command the front door answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnCommand {
    Ping,
    Echo,
    Quit,
    Reset,
    Select,
    Auth,
    Hello,
    ClientId,
    ClientSetname,
    ClientGetname,
    ClientList,
    ClientInfo,
    ClientKill,
    ClientHelp,
    ClientTracking,
    ClientCaching,
    ClientGetredir,
    ClientTrackinginfo,
    Multi,
    Exec,
    Discard,
    Subscription(crate::pubsub::SubscriptionCommand),
    PubSub(crate::pubsub::Question),
    Acl(crate::acl::commands::AclCommand),
}

impl ConnCommand {
    /// The connection command with this full name (`ping`, `client|list`), if it is one.
    pub(crate) fn named(name: &str) -> Option<ConnCommand> {
        use crate::pubsub::SubscriptionCommand::{Subscribe, Unsubscribe};
        use crate::pubsub::{KindName, Question};
        use ConnCommand::Subscription;
        Some(match name {
            "ping" => ConnCommand::Ping,
            "echo" => ConnCommand::Echo,
            "quit" => ConnCommand::Quit,
            "reset" => ConnCommand::Reset,
            "select" => ConnCommand::Select,
            "auth" => ConnCommand::Auth,
            "hello" => ConnCommand::Hello,
            "client|id" => ConnCommand::ClientId,
            "client|setname" => ConnCommand::ClientSetname,
            "client|getname" => ConnCommand::ClientGetname,
            "client|list" => ConnCommand::ClientList,
            "client|info" => ConnCommand::ClientInfo,
            "client|kill" => ConnCommand::ClientKill,
            "client|help" => ConnCommand::ClientHelp,
            "client|tracking" => ConnCommand::ClientTracking,
            "client|caching" => ConnCommand::ClientCaching,
            "client|getredir" => ConnCommand::ClientGetredir,
            "client|trackinginfo" => ConnCommand::ClientTrackinginfo,
            "multi" => ConnCommand::Multi,
            "exec" => ConnCommand::Exec,
            "discard" => ConnCommand::Discard,
            "subscribe" => Subscription(Subscribe(KindName::Channel)),
            "psubscribe" => Subscription(Subscribe(KindName::Pattern)),
            "ssubscribe" => Subscription(Subscribe(KindName::Shard)),
            "unsubscribe" => Subscription(Unsubscribe(KindName::Channel)),
            "punsubscribe" => Subscription(Unsubscribe(KindName::Pattern)),
            "sunsubscribe" => Subscription(Unsubscribe(KindName::Shard)),
            "pubsub|channels" => ConnCommand::PubSub(Question::Channels { shard: false }),
            "pubsub|shardchannels" => ConnCommand::PubSub(Question::Channels { shard: true }),
            "pubsub|numsub" => ConnCommand::PubSub(Question::NumSub { shard: false }),
            "pubsub|shardnumsub" => ConnCommand::PubSub(Question::NumSub { shard: true }),
            "pubsub|numpat" => ConnCommand::PubSub(Question::NumPat),
            other => ConnCommand::Acl(crate::acl::commands::AclCommand::named(other)?),
        })
    }
}

/// One command or subcommand.
#[derive(Debug)]
pub struct Command {
    /// Its entry in Redis's table.
    pub spec: &'static CommandSpec,
    /// Dense id, from 0, for statistics and handler tables.
    pub id: u32,
    /// Subcommands, for containers (`CONFIG`, `CLIENT`, ...).
    pub subcommands: Box<[Command]>,
    /// The connection command this is, when the front door answers it.
    pub(crate) connection: Option<ConnCommand>,
    /// Its id among every Redis command, for ACL rules.
    pub(crate) acl_id: usize,
    /// Where its keys are, and the access each gets (for ACL key checks).
    pub(crate) key_specs: Box<[KeySpec]>,
}

impl Command {
    /// The subcommand called `name` (any case), for containers.
    pub fn subcommand(&self, name: &[u8]) -> Option<&Command> {
        let prefix = self.spec.name.len() + 1;
        self.subcommands
            .iter()
            .find(|c| c.spec.name.as_bytes()[prefix..].eq_ignore_ascii_case(name))
    }

    /// Whether this is a container, which runs through a subcommand.
    pub fn is_container(&self) -> bool {
        !self.subcommands.is_empty()
    }

    /// Whether the front door answers it itself (`PING`, `HELLO`, `CLIENT LIST`, ...), for
    /// every backend alike.
    pub fn is_connection(&self) -> bool {
        self.connection.is_some()
    }
}

/// Every command, by name.
#[derive(Debug)]
pub struct CommandTable {
    commands: Vec<Command>,
    by_name: HashMap<&'static [u8], usize, foldhash::fast::RandomState>,
    names: Vec<&'static str>,
}

/// The command table.
pub fn table() -> &'static CommandTable {
    static TABLE: LazyLock<CommandTable> = LazyLock::new(CommandTable::build);
    &TABLE
}

impl CommandTable {
    fn build() -> CommandTable {
        let mut names = Vec::new();
        let build = |spec: &'static CommandSpec, names: &mut Vec<&'static str>| -> Command {
            names.push(spec.name);
            Command {
                spec,
                id: names.len() as u32 - 1,
                subcommands: Box::new([]),
                connection: ConnCommand::named(spec.name),
                acl_id: acl_id(spec.name.as_bytes())
                    .expect("every command Shoal serves is in Redis's table"),
                key_specs: key_specs(spec).into_boxed_slice(),
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

    /// The command or subcommand with a full name (`get`, `config|get`), any case.
    pub fn find(&self, full_name: &[u8]) -> Option<&Command> {
        let mut parts = full_name.splitn(2, |&b| b == b'|');
        let top = self.lookup(parts.next()?)?;
        match parts.next() {
            None => Some(top),
            Some(sub) => top.subcommand(sub),
        }
    }

    /// Number of ids (commands and subcommands).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the table is empty (never, in practice).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The full name (`get`, `config|get`) of id `id`.
    pub fn name(&self, id: u32) -> Option<&'static str> {
        self.names.get(id as usize).copied()
    }

    /// Every top-level command.
    pub fn iter(&self) -> impl Iterator<Item = &Command> {
        self.commands.iter()
    }

    /// Every command and subcommand.
    pub fn all(&self) -> impl Iterator<Item = &Command> {
        self.commands
            .iter()
            .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_found_by_any_case_and_full_name() {
        let t = table();
        let get = t.lookup(b"GeT").expect("GET");
        assert_eq!(t.name(get.id), Some("get"));
        let config_get = t.find(b"CONFIG|get").expect("CONFIG GET");
        assert_eq!(config_get.spec.name, "config|get");
        assert!(t.lookup(b"nosuchcommand").is_none());
        assert!(t.lookup(&[b'a'; 40]).is_none(), "longer than any name");
        assert!(t.lookup(b"client").is_some_and(Command::is_container));
        assert!(t.find(b"client|list").is_some_and(Command::is_connection));
        assert!(!get.is_connection());
        let ids: Vec<u32> = t.all().map(|c| c.id).collect();
        assert_eq!(ids.len(), t.len());
        assert!(ids.iter().enumerate().all(|(i, &id)| id as usize == i));
    }
}
