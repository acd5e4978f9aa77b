//! Connection commands, answered by the proxy with a node's replies: `PING`, `ECHO`, `QUIT`,
//! `RESET`, `SELECT`, `AUTH`, `HELLO`, `CLIENT ID/SETNAME/GETNAME/LIST/INFO/KILL/HELP`.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use shoal_proto::Protocol;
use shoal_proto::command_table::CommandSpec;

use super::{Local, REDIS_VERSION};
use crate::args::{ErrorLine, is, parse_i64};
use crate::clients::KillFilter;

fn wrongpass() -> ErrorLine {
    ErrorLine::fixed("WRONGPASS invalid username-password pair or user is disabled.")
}

/// `PING [message]`
pub(crate) fn ping(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    match args {
        [_] => ctx.reply().simple("PONG"),
        [_, message] => ctx.reply().bulk(message),
        _ => return Err(ErrorLine::wrong_arity("ping")),
    }
    Ok(())
}

/// `ECHO message`
pub(crate) fn echo(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    ctx.reply().bulk(&args[1]);
    Ok(())
}

/// `QUIT`: `OK`, then the connection closes.
pub(crate) fn quit(ctx: &mut Local<'_>, _args: &[Bytes]) -> Result<(), ErrorLine> {
    ctx.reply().ok();
    ctx.conn.close_after_reply = true;
    Ok(())
}

/// `RESET`: back to a fresh connection's state.
pub(crate) fn reset(ctx: &mut Local<'_>, _args: &[Bytes]) -> Result<(), ErrorLine> {
    set_protocol(ctx, Protocol::Resp2);
    ctx.conn.info.set_name(b"");
    ctx.conn.authenticated = !ctx.shared.password_required();
    ctx.reply().simple("RESET");
    Ok(())
}

/// `SELECT index`: database 0 is the only one.
pub(crate) fn select(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let index = parse_i64(&args[1])
        .ok_or_else(|| ErrorLine::fixed("ERR value is not an integer or out of range"))?;
    if i32::try_from(index).is_err() {
        return Err(ErrorLine::fixed(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    if index != 0 {
        return Err(ErrorLine::fixed("ERR DB index is out of range"));
    }
    ctx.reply().ok();
    Ok(())
}

/// `AUTH [username] password`
pub(crate) fn auth(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let (user, password) = match args {
        [_, password] => {
            if !ctx.shared.password_required() {
                return Err(ErrorLine::fixed(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            (&b"default"[..], &password[..])
        }
        [_, user, password] => (&user[..], &password[..]),
        _ => return Err(ErrorLine::syntax()),
    };
    if !ctx.shared.check_password(user, password) {
        return Err(wrongpass());
    }
    ctx.conn.authenticated = true;
    ctx.reply().ok();
    Ok(())
}

fn set_protocol(ctx: &mut Local<'_>, protocol: Protocol) {
    ctx.conn.protocol = protocol;
    ctx.conn.info.resp.store(protocol.version(), Relaxed);
}

/// Client names are printable ASCII without spaces, as in Redis.
fn valid_client_name(name: &[u8]) -> Result<(), ErrorLine> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(ErrorLine::fixed(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`, answered as a standalone
/// node answers it (`mode` is `standalone`: the proxy hides the cluster).
pub(crate) fn hello(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let mut version = None;
    if let Some(arg) = args.get(1) {
        let v = parse_i64(arg).ok_or_else(|| {
            ErrorLine::fixed("ERR Protocol version is not an integer or out of range")
        })?;
        version = Some(match v {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => return Err(ErrorLine::fixed("NOPROTO unsupported protocol version")),
        });
    }
    // As Redis 7.0: options apply in order, so an AUTH or SETNAME before a bad option stays.
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        let opt = &args[i];
        if is(opt, "AUTH") && more >= 2 {
            if !ctx.shared.check_password(&args[i + 1], &args[i + 2]) {
                return Err(wrongpass());
            }
            ctx.conn.authenticated = true;
            i += 3;
        } else if is(opt, "SETNAME") && more >= 1 {
            valid_client_name(&args[i + 1])?;
            ctx.conn.info.set_name(&args[i + 1]);
            i += 2;
        } else {
            return Err(ErrorLine::quoting(
                "ERR Syntax error in HELLO option '",
                opt,
                "'",
            ));
        }
    }
    if !ctx.conn.authenticated {
        return Err(ErrorLine::fixed(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    if let Some(version) = version {
        set_protocol(ctx, version);
    }
    let id = ctx.conn.info.id;
    let proto = ctx.conn.protocol.version();
    let mut reply = ctx.reply();
    reply.map(7);
    for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
        reply.bulk(k.as_bytes());
        reply.bulk(v.as_bytes());
    }
    reply.bulk(b"proto");
    reply.int(i64::from(proto));
    reply.bulk(b"id");
    reply.int(i64::try_from(id).unwrap_or(i64::MAX));
    for (k, v) in [("mode", "standalone"), ("role", "master")] {
        reply.bulk(k.as_bytes());
        reply.bulk(v.as_bytes());
    }
    reply.bulk(b"modules");
    reply.array(0);
    Ok(())
}

/// `CLIENT ID`
pub(crate) fn client_id(ctx: &mut Local<'_>, _args: &[Bytes]) -> Result<(), ErrorLine> {
    let id = i64::try_from(ctx.conn.info.id).unwrap_or(i64::MAX);
    ctx.reply().int(id);
    Ok(())
}

/// `CLIENT SETNAME name`
pub(crate) fn client_setname(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    valid_client_name(&args[2])?;
    ctx.conn.info.set_name(&args[2]);
    ctx.reply().ok();
    Ok(())
}

/// `CLIENT GETNAME`
pub(crate) fn client_getname(ctx: &mut Local<'_>, _args: &[Bytes]) -> Result<(), ErrorLine> {
    match ctx.conn.info.name() {
        Some(name) => ctx.reply().bulk(&name),
        None => ctx.reply().null(),
    }
    Ok(())
}

/// `CLIENT INFO`: this connection's line.
pub(crate) fn client_info(ctx: &mut Local<'_>, _args: &[Bytes]) -> Result<(), ErrorLine> {
    let mut text = ctx.conn.info.describe();
    text.push('\n');
    ctx.reply().verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]`: the proxy's clients.
pub(crate) fn client_list(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let mut ids: Option<Vec<u64>> = None;
    let mut normal = true;
    if args.len() == 4 && is(&args[2], "TYPE") {
        let kind = &args[3];
        if is(kind, "normal") {
            normal = true;
        } else if ["master", "replica", "slave", "pubsub"]
            .iter()
            .any(|k| is(kind, k))
        {
            normal = false;
        } else {
            return Err(ErrorLine::quoting("ERR Unknown client type '", kind, "'"));
        }
    } else if args.len() > 3 && is(&args[2], "ID") {
        let mut list = Vec::new();
        for arg in &args[3..] {
            match parse_i64(arg) {
                Some(id) => list.extend(u64::try_from(id).ok()),
                None => return Err(ErrorLine::fixed("ERR Invalid client ID")),
            }
        }
        ids = Some(list);
    } else if args.len() != 2 {
        return Err(ErrorLine::syntax());
    }
    let mut text = String::new();
    if normal {
        for client in ctx.shared.clients.all() {
            if ids.as_ref().is_none_or(|ids| ids.contains(&client.id)) {
                text.push_str(&client.describe());
                text.push('\n');
            }
        }
    }
    ctx.reply().verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT KILL addr:port`, or `CLIENT KILL [ID id] [ADDR addr] [LADDR addr] [TYPE normal]
/// [USER default] [SKIPME yes|no]`.
pub(crate) fn client_kill(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let me = ctx.conn.info.id;
    if args.len() == 3 {
        let filter = KillFilter {
            addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
            ..KillFilter::default()
        };
        if ctx.shared.clients.kill(&filter) == 0 {
            return Err(ErrorLine::fixed("ERR No such client"));
        }
        ctx.conn.close_after_reply |= ctx.conn.info.is_killed();
        ctx.reply().ok();
        return Ok(());
    }
    let mut filter = KillFilter {
        skip: Some(me),
        ..KillFilter::default()
    };
    let mut matches_nothing = false;
    for pair in args[2..].chunks(2) {
        let [opt, value] = pair else {
            return Err(ErrorLine::syntax());
        };
        let text = || String::from_utf8_lossy(value).into_owned();
        if is(opt, "ID") {
            match parse_i64(value) {
                Some(id) if id > 0 => filter.id = Some(id as u64),
                _ => return Err(ErrorLine::fixed("ERR client-id should be greater than 0")),
            }
        } else if is(opt, "ADDR") {
            filter.addr = Some(text());
        } else if is(opt, "LADDR") {
            filter.laddr = Some(text());
        } else if is(opt, "TYPE") {
            if ["master", "replica", "slave", "pubsub"]
                .iter()
                .any(|k| is(value, k))
            {
                matches_nothing = true;
            } else if !is(value, "normal") {
                return Err(ErrorLine::quoting("ERR Unknown client type '", value, "'"));
            }
        } else if is(opt, "USER") {
            if &value[..] != b"default" {
                return Err(ErrorLine::quoting("ERR No such user '", value, "'"));
            }
        } else if is(opt, "SKIPME") {
            if is(value, "yes") {
                filter.skip = Some(me);
            } else if is(value, "no") {
                filter.skip = None;
            } else {
                return Err(ErrorLine::syntax());
            }
        } else {
            return Err(ErrorLine::syntax());
        }
    }
    let killed = if matches_nothing {
        0
    } else {
        ctx.shared.clients.kill(&filter)
    };
    ctx.conn.close_after_reply |= ctx.conn.info.is_killed();
    ctx.reply().int(i64::try_from(killed).unwrap_or(i64::MAX));
    Ok(())
}

/// `<CONTAINER> HELP`: the help lines recorded in the command table.
pub(crate) fn help(ctx: &mut Local<'_>, container: &CommandSpec) {
    let mut reply = ctx.reply();
    reply.array(container.help.len());
    for line in container.help {
        reply.simple(line);
    }
}
