//! Command handlers, grouped as Redis groups them, and the registry mapping each name in
//! Redis's command table to its handler.

mod cluster;
mod connection;
pub use connection::REDIS_VERSION;
mod float;
mod introspection;
mod keys;
mod replication;
mod server;
mod strings;

use shoal_store::StoreError;

use crate::dispatch::{Ctx, Handler};
use crate::error::CommandError;

/// The handler of the command (or subcommand) with this full name.
pub fn handler(name: &str) -> Option<Handler> {
    Some(match name {
        // connection
        "ping" => connection::ping,
        "echo" => connection::echo,
        "quit" => connection::quit,
        "reset" => connection::reset,
        "select" => connection::select,
        "auth" => connection::auth,
        "hello" => connection::hello,
        "client|id" => connection::client_id,
        "client|setname" => connection::client_setname,
        "client|getname" => connection::client_getname,
        "client|list" => connection::client_list,
        "client|info" => connection::client_info,
        "client|kill" => connection::client_kill,
        "client|help" | "command|help" | "config|help" | "slowlog|help" | "memory|help"
        | "object|help" => help,
        // strings
        "get" => strings::get,
        "set" => strings::set,
        "setnx" => strings::setnx,
        "setex" => strings::setex,
        "psetex" => strings::psetex,
        "getex" => strings::getex,
        "getdel" => strings::getdel,
        "getset" => strings::getset,
        "mget" => strings::mget,
        "mset" => strings::mset,
        "msetnx" => strings::msetnx,
        "append" => strings::append,
        "strlen" => strings::strlen,
        "getrange" => strings::getrange,
        "setrange" => strings::setrange,
        "incr" => strings::incr,
        "decr" => strings::decr,
        "incrby" => strings::incrby,
        "decrby" => strings::decrby,
        "incrbyfloat" => strings::incrbyfloat,
        // keyspace
        "del" | "unlink" => keys::del,
        "exists" => keys::exists,
        "touch" => keys::touch,
        "expire" => keys::expire,
        "pexpire" => keys::pexpire,
        "expireat" => keys::expireat,
        "pexpireat" => keys::pexpireat,
        "ttl" => keys::ttl,
        "pttl" => keys::pttl,
        "expiretime" => keys::expiretime,
        "pexpiretime" => keys::pexpiretime,
        "persist" => keys::persist,
        "type" => keys::type_,
        "keys" => keys::keys,
        "scan" => keys::scan,
        "randomkey" => keys::randomkey,
        "rename" => keys::rename,
        "renamenx" => keys::renamenx,
        "copy" => keys::copy,
        "dbsize" => keys::dbsize,
        "flushdb" | "flushall" => keys::flushall,
        // server
        "info" => server::info,
        "time" => server::time,
        "config|get" => server::config_get,
        "config|set" => server::config_set,
        "config|resetstat" => server::config_resetstat,
        "slowlog|get" => server::slowlog_get,
        "slowlog|len" => server::slowlog_len,
        "slowlog|reset" => server::slowlog_reset,
        "memory|usage" => server::memory_usage,
        "object|encoding" => server::object_encoding,
        "object|idletime" => server::object_idletime,
        "object|freq" => server::object_freq,
        "object|refcount" => server::object_refcount,
        "shutdown" => server::shutdown,
        // cluster
        "cluster|shards" => cluster::shards,
        "cluster|slots" => cluster::slots,
        "cluster|nodes" => cluster::nodes,
        "cluster|myid" => cluster::myid,
        "cluster|info" => cluster::info,
        "cluster|keyslot" => cluster::keyslot,
        "cluster|countkeysinslot" => cluster::countkeysinslot,
        "cluster|getkeysinslot" => cluster::getkeysinslot,
        "cluster|help" => cluster::help,
        "cluster|failover" => cluster::failover,
        "readonly" => cluster::readonly,
        // replication
        "psync" => replication::psync,
        "replconf" => replication::replconf,
        "wait" => replication::wait,
        "readwrite" => cluster::readwrite,
        "asking" => cluster::asking,
        // introspection
        "command" => introspection::command,
        "command|count" => introspection::command_count,
        "command|info" => introspection::command_info,
        "command|docs" => introspection::command_docs,
        "command|list" => introspection::command_list,
        "command|getkeys" => introspection::command_getkeys,
        _ => return None,
    })
}

/// `<CONTAINER> HELP`: the help lines Redis prints, recorded in the command table.
fn help(ctx: &mut Ctx<'_>, argv: &shoal_proto::Argv<'_>) -> crate::error::CommandResult {
    let container = ctx
        .shared
        .commands
        .lookup(argv.get(0))
        .expect("HELP is only dispatched for a known container");
    let lines = container.spec.help;
    let mut reply = ctx.reply();
    reply.array(lines.len());
    for line in lines {
        reply.simple(line);
    }
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
pub(crate) fn subcommand_syntax_error(argv: &shoal_proto::Argv<'_>) -> CommandError {
    let container = String::from_utf8_lossy(crate::error::c_str(argv.get(0))).to_ascii_uppercase();
    CommandError::quoting(
        "ERR unknown subcommand or wrong number of arguments for '",
        &crate::error::truncated_arg(argv.get(1)),
        &format!("'. Try {container} HELP."),
    )
}

/// Maps a store failure to the reply Redis would give for the same situation.
pub(crate) fn store_error(error: StoreError) -> CommandError {
    match error {
        StoreError::TooLarge => CommandError::StringTooLong,
        StoreError::AddressSpace => CommandError::OutOfMemory,
    }
}

pub(crate) use shoal_proto::args::is;

#[cfg(test)]
mod tests {
    use crate::dispatch::CommandTable;

    #[test]
    fn every_command_in_the_table_has_a_handler() {
        assert_eq!(CommandTable::new().missing_handlers(), Vec::<&str>::new());
    }
}
