//! Command handlers, grouped as Redis groups them, and the table from each command of
//! [`shoal_frontdoor::table`] to its handler. The connection commands (`PING`, `HELLO`,
//! `CLIENT ...`) are the front door's; everything else a node runs is here.

mod bitfield;
mod bitmaps;
mod bits;
mod cluster;
mod counter;
mod hash_ttl;
mod hashes;
mod hotkeys;
mod introspection;
mod keys;
mod latency;
mod lcs;
mod pubsub;
mod replication;
mod server;
mod strings;
mod transactions;

use std::sync::LazyLock;
use std::time::Duration;

use shoal_frontdoor::{CommandError, Conn, table};
use shoal_proto::{Argv, Reply};
use shoal_store::StoreError;

use crate::conn::NodeConn;
use crate::replication::primary::PsyncRequest;
use crate::scripting::commands as scripting;
use crate::scripting::function_commands as functions;
use crate::shared::Shared;

/// What a command handler works with.
pub(crate) struct Ctx<'a> {
    /// The node.
    pub shared: &'a Shared,
    /// The front door's state of the calling connection.
    pub conn: &'a mut Conn,
    /// The node's state of the calling connection.
    pub client: &'a mut NodeConn,
    /// The connection's output buffer.
    pub out: &'a mut Vec<u8>,
}

impl Ctx<'_> {
    /// A reply writer in the client's protocol. On a subscribed (RESP3) connection, the
    /// messages published meanwhile (a `new` event the store sent for a key the command
    /// created) are written first, as Redis writes a push the moment it is published.
    #[inline]
    pub fn reply(&mut self) -> Reply<'_> {
        if self.conn.subscribed() {
            self.conn.deliver_messages(self.out);
        }
        Reply::new(self.out, self.conn.protocol)
    }

    /// Sends keyspace notification `event` of `class` about `key` (if that class is on), and
    /// writes it here at once if this connection subscribes to it, so that it reads the
    /// message where Redis puts it among its replies (with the `new` event the store sent
    /// when the command created the key, whether or not `class` is on).
    #[inline]
    pub fn notify(&mut self, class: u32, event: &str, key: &[u8]) {
        if self.shared.events.wants(class) {
            self.shared.events.notify(class, event, key);
        }
        if self.conn.subscribed() {
            self.conn.deliver_messages(self.out);
        }
    }

    /// Sends `keymiss` for `key`, as a read that finds no key does in Redis.
    #[inline]
    pub fn key_miss(&mut self, key: &[u8]) {
        self.notify(crate::notify::class::KEY_MISS, "keymiss", key);
    }
}

/// What a handler returns; success replies are already written.
pub(crate) type CommandResult = Result<(), CommandError>;

/// What a handler may wait for before its reply: it returns it, and the node turns it into
/// the front door's [`shoal_frontdoor::Outcome`].
#[derive(Debug)]
pub(crate) enum Waiting {
    /// `WAIT`: reply how many replicas acknowledged this client's last write, once that many
    /// did or the timeout (none: forever) passed.
    Acks {
        /// How many to wait for.
        replicas: usize,
        /// How long at most.
        timeout: Option<Duration>,
    },
    /// `PSYNC`: this connection becomes a replica's stream.
    Replicate(PsyncRequest),
    /// `CLUSTER FAILOVER` on a replica: take over from the primary; unless `force`, without
    /// losing writes.
    Failover {
        /// `FORCE` or `TAKEOVER`: do not wait for the primary.
        force: bool,
    },
    /// `CLUSTER MIGRATESLOTS`: the controller's leader takes the groups of slots (inclusive
    /// ranges, each with the node whose shard they go to), or refuses them all.
    MoveSlots(shoal_cluster::SlotGroups),
}

/// A command's handler.
#[derive(Clone, Copy)]
pub(crate) enum Handler {
    /// Replies at once.
    Now(fn(&mut Ctx<'_>, &Argv<'_>) -> CommandResult),
    /// Replies at once, or says what it waits for.
    MayWait(fn(&mut Ctx<'_>, &Argv<'_>) -> Result<Option<Waiting>, CommandError>),
}

/// The handler of command id `id` (see [`shoal_frontdoor::Command::id`]).
#[inline]
pub(crate) fn handler(id: u32) -> Option<Handler> {
    static HANDLERS: LazyLock<Box<[Option<Handler>]>> =
        LazyLock::new(|| table().all().map(|c| handler_of(c.spec.name)).collect());
    HANDLERS.get(id as usize).copied().flatten()
}

/// The handler of the command (or subcommand) with this full name.
fn handler_of(name: &str) -> Option<Handler> {
    use Handler::{MayWait, Now};
    Some(match name {
        "command|help" | "config|help" | "slowlog|help" | "memory|help" | "object|help"
        | "pubsub|help" | "script|help" | "function|help" | "latency|help" => Now(help),
        "latency|latest" => Now(latency::latest),
        "latency|history" => Now(latency::history),
        "latency|reset" => Now(latency::reset),
        "latency|graph" => Now(latency::graph),
        "latency|doctor" => Now(latency::doctor),
        "latency|histogram" => Now(latency::histogram),
        // scripting
        "eval" => Now(scripting::eval),
        "eval_ro" => Now(scripting::eval_ro),
        "evalsha" => Now(scripting::evalsha),
        "evalsha_ro" => Now(scripting::evalsha_ro),
        "script|load" => Now(scripting::script_load),
        "script|exists" => Now(scripting::script_exists),
        "script|flush" => Now(scripting::script_flush),
        "script|kill" => Now(scripting::script_kill),
        "fcall" => Now(functions::fcall),
        "fcall_ro" => Now(functions::fcall_ro),
        "function|load" => Now(functions::function_load),
        "function|list" => Now(functions::function_list),
        "function|delete" => Now(functions::function_delete),
        "function|flush" => Now(functions::function_flush),
        "function|dump" => Now(functions::function_dump),
        "function|restore" => Now(functions::function_restore),
        "function|stats" => Now(functions::function_stats),
        "function|kill" => Now(functions::function_kill),
        // strings
        "get" => Now(strings::get),
        "set" => Now(strings::set),
        "setnx" => Now(strings::setnx),
        "setex" => Now(strings::setex),
        "psetex" => Now(strings::psetex),
        "getex" => Now(strings::getex),
        "getdel" => Now(strings::getdel),
        "getset" => Now(strings::getset),
        "mget" => Now(strings::mget),
        "mset" => Now(strings::mset),
        "msetnx" => Now(strings::msetnx),
        "append" => Now(strings::append),
        "strlen" => Now(strings::strlen),
        "getrange" => Now(strings::getrange),
        "setrange" => Now(strings::setrange),
        "incr" => Now(strings::incr),
        "decr" => Now(strings::decr),
        "incrby" => Now(strings::incrby),
        "decrby" => Now(strings::decrby),
        "incrbyfloat" => Now(strings::incrbyfloat),
        "lcs" => Now(lcs::lcs),
        // Shoal's sharded counters (standalone; a cluster node answers them before handlers)
        "counter.incrby" | "counter.get" | "counter.del" => Now(counter::counter),
        // bitmaps
        "setbit" => Now(bitmaps::setbit),
        "getbit" => Now(bitmaps::getbit),
        "bitcount" => Now(bitmaps::bitcount),
        "bitpos" => Now(bitmaps::bitpos),
        "bitop" => Now(bitmaps::bitop),
        "bitfield" => Now(bitfield::bitfield),
        "bitfield_ro" => Now(bitfield::bitfield_ro),
        // hashes
        "hset" => Now(hashes::hset),
        "hmset" => Now(hashes::hmset),
        "hsetnx" => Now(hashes::hsetnx),
        "hget" => Now(hashes::hget),
        "hmget" => Now(hashes::hmget),
        "hgetall" => Now(hashes::hgetall),
        "hkeys" => Now(hashes::hkeys),
        "hvals" => Now(hashes::hvals),
        "hlen" => Now(hashes::hlen),
        "hexists" => Now(hashes::hexists),
        "hstrlen" => Now(hashes::hstrlen),
        "hdel" => Now(hashes::hdel),
        "hincrby" => Now(hashes::hincrby),
        "hincrbyfloat" => Now(hashes::hincrbyfloat),
        "hscan" => Now(hashes::hscan),
        "hrandfield" => Now(hashes::hrandfield),
        "hexpire" => Now(hash_ttl::hexpire),
        "hpexpire" => Now(hash_ttl::hpexpire),
        "hexpireat" => Now(hash_ttl::hexpireat),
        "hpexpireat" => Now(hash_ttl::hpexpireat),
        "httl" => Now(hash_ttl::httl),
        "hpttl" => Now(hash_ttl::hpttl),
        "hexpiretime" => Now(hash_ttl::hexpiretime),
        "hpexpiretime" => Now(hash_ttl::hpexpiretime),
        "hpersist" => Now(hash_ttl::hpersist),
        "hgetdel" => Now(hash_ttl::hgetdel),
        "hgetex" => Now(hash_ttl::hgetex),
        "hsetex" => Now(hash_ttl::hsetex),
        // keyspace
        "del" | "unlink" => Now(keys::del),
        "exists" => Now(keys::exists),
        "touch" => Now(keys::touch),
        "expire" => Now(keys::expire),
        "pexpire" => Now(keys::pexpire),
        "expireat" => Now(keys::expireat),
        "pexpireat" => Now(keys::pexpireat),
        "ttl" => Now(keys::ttl),
        "pttl" => Now(keys::pttl),
        "expiretime" => Now(keys::expiretime),
        "pexpiretime" => Now(keys::pexpiretime),
        "persist" => Now(keys::persist),
        "type" => Now(keys::type_),
        "keys" => Now(keys::keys),
        "scan" => Now(keys::scan),
        "randomkey" => Now(keys::randomkey),
        "rename" => Now(keys::rename),
        "renamenx" => Now(keys::renamenx),
        "copy" => Now(keys::copy),
        "dbsize" => Now(keys::dbsize),
        "flushdb" | "flushall" => Now(keys::flushall),
        // server
        "info" => Now(server::info),
        "time" => Now(server::time),
        "config|get" => Now(server::config_get),
        "config|set" => Now(server::config_set),
        "config|resetstat" => Now(server::config_resetstat),
        "slowlog|get" => Now(server::slowlog_get),
        "slowlog|len" => Now(server::slowlog_len),
        "slowlog|reset" => Now(server::slowlog_reset),
        "memory|usage" => Now(server::memory_usage),
        "object|encoding" => Now(server::object_encoding),
        "object|idletime" => Now(server::object_idletime),
        "object|freq" => Now(server::object_freq),
        "object|refcount" => Now(server::object_refcount),
        "shutdown" => Now(server::shutdown),
        "hotkeys|start" => Now(hotkeys::start),
        "hotkeys|stop" => Now(hotkeys::stop),
        "hotkeys|get" => Now(hotkeys::get),
        "hotkeys|reset" => Now(hotkeys::reset),
        // cluster
        "cluster|shards" => Now(cluster::shards),
        "cluster|slots" => Now(cluster::slots),
        "cluster|nodes" => Now(cluster::nodes),
        "cluster|myid" => Now(cluster::myid),
        "cluster|info" => Now(cluster::info),
        "cluster|keyslot" => Now(cluster::keyslot),
        "cluster|countkeysinslot" => Now(cluster::countkeysinslot),
        "cluster|getkeysinslot" => Now(cluster::getkeysinslot),
        "cluster|help" => Now(cluster::help),
        "cluster|failover" => MayWait(cluster::failover),
        "cluster|migrateslots" => MayWait(cluster::migrateslots),
        "readonly" => Now(cluster::readonly),
        "readwrite" => Now(cluster::readwrite),
        "asking" => Now(cluster::asking),
        // replication
        "psync" => MayWait(replication::psync),
        "replconf" => Now(replication::replconf),
        "wait" => MayWait(replication::wait),
        // pub/sub (subscriptions are the front door's)
        "publish" => Now(pubsub::publish),
        "spublish" => Now(pubsub::spublish),
        // transactions
        "watch" => Now(transactions::watch),
        "unwatch" => Now(transactions::unwatch),
        // introspection
        "command" => Now(introspection::command),
        "command|count" => Now(introspection::command_count),
        "command|info" => Now(introspection::command_info),
        "command|docs" => Now(introspection::command_docs),
        "command|list" => Now(introspection::command_list),
        "command|getkeys" => Now(introspection::command_getkeys),
        _ => return None,
    })
}

/// Runs a handler to its reply now, inside a transaction or a script: a command that would
/// wait answers at once instead, as Redis's do inside `EXEC` and scripts (`WAIT` replies how
/// many replicas have acknowledged so far).
pub(crate) fn run_now(ctx: &mut Ctx<'_>, handler: Handler, argv: &Argv<'_>) -> CommandResult {
    match handler {
        Handler::Now(run) => run(ctx, argv),
        Handler::MayWait(run) => match run(ctx, argv)? {
            None => Ok(()),
            Some(Waiting::Acks { .. }) => {
                let acked = ctx
                    .shared
                    .replication
                    .acked_at_least(ctx.client.write_offset);
                ctx.reply().int(acked as i64);
                Ok(())
            }
            Some(Waiting::Replicate(_) | Waiting::Failover { .. } | Waiting::MoveSlots(_)) => Err(
                CommandError::fixed("ERR Command not allowed inside a transaction"),
            ),
        },
    }
}

/// `<CONTAINER> HELP`: the help lines Redis prints, recorded in the command table.
fn help(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    shoal_frontdoor::write_help(ctx.conn, ctx.out, argv.get(0));
    Ok(())
}

/// Parses an integer argument as Redis's `string2ll` does.
pub(crate) fn int_arg(arg: &[u8]) -> Result<i64, CommandError> {
    shoal_store::parse_i64(arg).ok_or(CommandError::NotInteger)
}

/// Parses an argument Redis reads as a C `int` (`getIntFromObjectOrReply`).
pub(crate) fn int32_arg(arg: &[u8]) -> Result<i32, CommandError> {
    i32::try_from(int_arg(arg)?).map_err(|_| {
        CommandError::fixed(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        )
    })
}

/// Redis's `addReplySubcommandSyntaxError`: a known subcommand with arguments it cannot take.
pub(crate) fn subcommand_syntax_error(argv: &Argv<'_>) -> CommandError {
    shoal_frontdoor::subcommand_syntax_error(argv.get(0), argv.get(1))
}

/// Maps a store failure to the reply Redis would give for the same situation.
pub(crate) fn store_error(error: StoreError) -> CommandError {
    match error {
        StoreError::TooLarge => CommandError::StringTooLong,
        StoreError::AddressSpace => CommandError::OutOfMemory,
        StoreError::WrongType => CommandError::WrongType,
    }
}

pub(crate) use shoal_proto::args::is;

/// Whether `arg` names `option` as Redis's `strcasecmp` compares them: in any case, and only
/// up to a NUL byte in `arg` (where a C string ends).
pub(crate) fn is_named(arg: &[u8], option: &str) -> bool {
    is(shoal_proto::args::c_str(arg), option)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_in_the_table_is_served_by_the_front_door_or_a_handler() {
        let missing: Vec<&str> = table()
            .all()
            .filter(|c| !c.is_container() && !c.is_connection() && handler(c.id).is_none())
            .map(|c| c.spec.name)
            .collect();
        assert_eq!(missing, Vec::<&str>::new());
        let doubled: Vec<&str> = table()
            .all()
            .filter(|c| c.is_connection() && handler(c.id).is_some())
            .map(|c| c.spec.name)
            .collect();
        assert_eq!(doubled, Vec::<&str>::new(), "the front door answers these");
    }
}
