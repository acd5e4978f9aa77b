//! Connection commands: `PING`, `ECHO`, `HELLO`, `AUTH`, `SELECT`, `QUIT`, `RESET`, `CLIENT`.

use std::sync::atomic::Ordering::Relaxed;

use shoal_proto::{Argv, Protocol};

use super::{int32_arg, is};
use crate::clients::{ClientInfo, KillFilter};
use crate::dispatch::Ctx;
use crate::error::{CommandError, CommandResult};

/// The Redis version Shoal answers as (`HELLO`, `INFO`): the command set and replies it matches.
pub const REDIS_VERSION: &str = "7.0.15";

const WRONGPASS: CommandError =
    CommandError::fixed("WRONGPASS invalid username-password pair or user is disabled.");

/// `PING [message]`
pub fn ping(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() > 2 {
        return Err(CommandError::WrongArity("ping"));
    }
    match argv.try_get(1) {
        Some(message) => ctx.reply().bulk(message),
        None => ctx.reply().simple("PONG"),
    }
    Ok(())
}

/// `ECHO message`
pub fn echo(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    ctx.reply().bulk(argv.get(1));
    Ok(())
}

/// `QUIT`: replies `OK`, then the connection closes.
pub fn quit(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.reply().ok();
    ctx.client.close_after_reply = true;
    Ok(())
}

/// `RESET`: back to a fresh connection's state (RESP2, no name, not authenticated if a
/// password is required).
pub fn reset(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    ctx.client.protocol = Protocol::Resp2;
    ctx.client.info.resp.store(2, Relaxed);
    *ctx.client.info.name.lock() = None;
    ctx.client.authenticated = !ctx.shared.live.password_required();
    ctx.client.readonly = false;
    ctx.reply().simple("RESET");
    Ok(())
}

/// `SELECT index`: Shoal has one database, 0.
pub fn select(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let index = int32_arg(argv.get(1))?;
    if index != 0 {
        return Err(CommandError::DbIndexOutOfRange);
    }
    ctx.reply().ok();
    Ok(())
}

/// Checks a username and password against `requirepass` (the `default` user is the only one).
fn check_password(ctx: &Ctx<'_>, user: &[u8], password: &[u8]) -> bool {
    if user != b"default" {
        return false;
    }
    let config = ctx.shared.config.read();
    config.requirepass.is_empty() || config.requirepass.as_bytes() == password
}

/// `AUTH [username] password`
pub fn auth(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    if argv.len() > 3 {
        return Err(CommandError::Syntax);
    }
    let (user, password) = if argv.len() == 2 {
        if !ctx.shared.live.password_required() {
            return Err(CommandError::fixed(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        (&b"default"[..], argv.get(1))
    } else {
        (argv.get(1), argv.get(2))
    };
    if !check_password(ctx, user, password) {
        return Err(WRONGPASS);
    }
    ctx.client.authenticated = true;
    ctx.reply().ok();
    Ok(())
}

/// Validates a client name as Redis does: printable ASCII without spaces.
fn valid_client_name(name: &[u8]) -> Result<(), CommandError> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(CommandError::fixed(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

fn set_name(info: &ClientInfo, name: &[u8]) {
    *info.name.lock() = if name.is_empty() {
        None
    } else {
        Some(name.to_vec())
    };
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub fn hello(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let mut version = None;
    if argv.len() >= 2 {
        let v = shoal_store::parse_i64(argv.get(1)).ok_or(CommandError::fixed(
            "ERR Protocol version is not an integer or out of range",
        ))?;
        version = Some(match v {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => return Err(CommandError::fixed("NOPROTO unsupported protocol version")),
        });
    }
    // Redis 7.0 applies the options in order as it reads them: a successful AUTH or a valid
    // SETNAME takes effect even if a later option is refused.
    let mut i = 2;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = argv.get(i);
        if is(opt, "AUTH") && more >= 2 {
            if !check_password(ctx, argv.get(i + 1), argv.get(i + 2)) {
                return Err(WRONGPASS);
            }
            ctx.client.authenticated = true;
            i += 3;
        } else if is(opt, "SETNAME") && more >= 1 {
            valid_client_name(argv.get(i + 1))?;
            set_name(&ctx.client.info, argv.get(i + 1));
            i += 2;
        } else {
            return Err(CommandError::quoting(
                "ERR Syntax error in HELLO option '",
                opt,
                "'",
            ));
        }
    }
    if !ctx.client.authenticated {
        return Err(CommandError::fixed(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(version) = version {
        ctx.client.protocol = version;
        ctx.client.info.resp.store(version.version(), Relaxed);
    }
    let id = ctx.client.info.id;
    let proto = ctx.client.protocol.version();
    let mut reply = ctx.reply();
    reply.map(7);
    for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
        reply.bulk(k.as_bytes());
        reply.bulk(v.as_bytes());
    }
    reply.bulk(b"proto");
    reply.int(i64::from(proto));
    reply.bulk(b"id");
    reply.int(id as i64);
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        reply.bulk(k.as_bytes());
        reply.bulk(v.as_bytes());
    }
    reply.bulk(b"modules");
    reply.array(0);
    Ok(())
}

/// `CLIENT ID`
pub fn client_id(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let id = ctx.client.info.id;
    ctx.reply().int(id as i64);
    Ok(())
}

/// `CLIENT SETNAME name`
pub fn client_setname(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    valid_client_name(argv.get(2))?;
    set_name(&ctx.client.info, argv.get(2));
    ctx.client.forwarded = argv.get(2) == crate::cluster::FORWARDER_NAME.as_bytes();
    ctx.reply().ok();
    Ok(())
}

/// `CLIENT GETNAME`
pub fn client_getname(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let name = ctx.client.info.name.lock().clone();
    match name {
        Some(name) => ctx.reply().bulk(&name),
        None => ctx.reply().null(),
    }
    Ok(())
}

fn describe(ctx: &Ctx<'_>, client: &ClientInfo) -> String {
    let commands = &ctx.shared.commands;
    let mut line = client.describe(|id| commands.name(id));
    line.push('\n');
    line
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id [id ...]]`
pub fn client_list(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let mut ids: Option<Vec<u64>> = None;
    let mut normal = true;
    if argv.len() == 4 && is(argv.get(2), "TYPE") {
        let kind = argv.get(3);
        if is(kind, "normal") {
            normal = true;
        } else if ["master", "replica", "slave", "pubsub"]
            .iter()
            .any(|k| is(kind, k))
        {
            normal = false;
        } else {
            return Err(CommandError::quoting(
                "ERR Unknown client type '",
                kind,
                "'",
            ));
        }
    } else if argv.len() > 3 && is(argv.get(2), "ID") {
        let mut list = Vec::new();
        for i in 3..argv.len() {
            // Redis refuses only what is not an integer; ids no client has match nothing.
            match shoal_store::parse_i64(argv.get(i)) {
                Some(id) => list.extend(u64::try_from(id).ok()),
                None => return Err(CommandError::fixed("ERR Invalid client ID")),
            }
        }
        ids = Some(list);
    } else if argv.len() != 2 {
        return Err(CommandError::Syntax);
    }
    // This client's own line shows the command running now, as Redis's does.
    ctx.client
        .info
        .last_command
        .store(ctx.client.last_command, Relaxed);
    let mut text = String::new();
    if normal {
        for client in ctx.shared.clients.all() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&client.id)) {
                text.push_str(&describe(ctx, &client));
            }
        }
    }
    ctx.reply().verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT INFO`
pub fn client_info(ctx: &mut Ctx<'_>, _argv: &Argv<'_>) -> CommandResult {
    let info = ctx.client.info.clone();
    info.last_command.store(ctx.client.last_command, Relaxed);
    let text = describe(ctx, &info);
    ctx.reply().verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT KILL addr:port` (old form) or `CLIENT KILL <filter> <value> ...` (Redis 7's filters
/// `ID`, `ADDR`, `LADDR`, `TYPE`, `USER`, `SKIPME`).
pub fn client_kill(ctx: &mut Ctx<'_>, argv: &Argv<'_>) -> CommandResult {
    let me = ctx.client.info.id;
    let mut close_self = false;
    if argv.len() == 3 {
        let filter = KillFilter {
            addr: Some(String::from_utf8_lossy(argv.get(2)).into_owned()),
            ..KillFilter::default()
        };
        let killed = ctx.shared.clients.kill(&filter, me, || close_self = true);
        if killed == 0 {
            return Err(CommandError::fixed("ERR No such client"));
        }
        ctx.client.close_after_reply |= close_self;
        ctx.reply().ok();
        return Ok(());
    }
    let mut filter = KillFilter {
        skip: Some(me),
        ..KillFilter::default()
    };
    let mut matches_nothing = false;
    let mut i = 2;
    while i < argv.len() {
        let Some(value) = argv.try_get(i + 1) else {
            return Err(CommandError::Syntax);
        };
        let text = String::from_utf8_lossy(value).into_owned();
        let opt = argv.get(i);
        if is(opt, "ID") {
            match shoal_store::parse_i64(value) {
                Some(id) if id > 0 => filter.id = Some(id as u64),
                _ => {
                    return Err(CommandError::fixed(
                        "ERR client-id should be greater than 0",
                    ));
                }
            }
        } else if is(opt, "ADDR") {
            filter.addr = Some(text);
        } else if is(opt, "LADDR") {
            filter.laddr = Some(text);
        } else if is(opt, "TYPE") {
            if ["master", "replica", "slave", "pubsub"]
                .iter()
                .any(|k| is(value, k))
            {
                matches_nothing = true;
            } else if !is(value, "normal") {
                return Err(CommandError::quoting(
                    "ERR Unknown client type '",
                    value,
                    "'",
                ));
            }
        } else if is(opt, "USER") {
            if value != b"default" {
                return Err(CommandError::quoting("ERR No such user '", value, "'"));
            }
        } else if is(opt, "SKIPME") {
            if is(value, "yes") {
                filter.skip = Some(me);
            } else if is(value, "no") {
                filter.skip = None;
            } else {
                return Err(CommandError::Syntax);
            }
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    let killed = if matches_nothing {
        0
    } else {
        ctx.shared.clients.kill(&filter, me, || close_self = true)
    };
    ctx.client.close_after_reply |= close_self;
    ctx.reply().int(killed as i64);
    Ok(())
}
