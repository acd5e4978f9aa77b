//! Connection commands, answered by the proxy with a node's replies: `PING`, `ECHO`, `QUIT`,
//! `RESET`, `SELECT`, `AUTH`, `HELLO`, `CLIENT ID/SETNAME/GETNAME/LIST/INFO/KILL/HELP`.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use shoal_proto::Protocol;
use shoal_proto::command_table::CommandSpec;
use shoal_proto::connection::{
    ClientKill, ClientList, HELLO_NOAUTH, HelloOption, WRONGPASS, auth_args, hello_options,
    hello_protocol, select_db, valid_client_name, write_hello,
};

use super::Local;
use crate::args::ErrorLine;

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
    select_db(&args[1])?;
    ctx.reply().ok();
    Ok(())
}

/// `AUTH [username] password`
pub(crate) fn auth(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let (user, password) = auth_args(args, ctx.shared.password_required())?;
    if !ctx.shared.check_password(user, password) {
        return Err(ErrorLine::fixed(WRONGPASS));
    }
    ctx.conn.authenticated = true;
    ctx.reply().ok();
    Ok(())
}

fn set_protocol(ctx: &mut Local<'_>, protocol: Protocol) {
    ctx.conn.protocol = protocol;
    ctx.conn.info.resp.store(protocol.version(), Relaxed);
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`, answered as a standalone
/// node answers it (`mode` is `standalone`: the proxy hides the cluster).
pub(crate) fn hello(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let version = hello_protocol(args)?;
    // As Redis 7.0: options apply in order, so an AUTH or SETNAME before a bad option stays.
    for option in hello_options(args) {
        match option? {
            HelloOption::Auth { user, password } => {
                if !ctx.shared.check_password(user, password) {
                    return Err(ErrorLine::fixed(WRONGPASS));
                }
                ctx.conn.authenticated = true;
            }
            HelloOption::SetName(name) => ctx.conn.info.set_name(name),
        }
    }
    if !ctx.conn.authenticated {
        return Err(ErrorLine::fixed(HELLO_NOAUTH));
    }
    if let Some(version) = version {
        set_protocol(ctx, version);
    }
    let (protocol, id) = (ctx.conn.protocol, ctx.conn.info.id);
    write_hello(&mut ctx.reply(), protocol, id);
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
    let list = ClientList::parse(args)?;
    let clients = ctx.shared.clients.all();
    let shown = clients.iter().filter(|client| list.shows(client.id));
    let text: String = shown.map(|client| client.describe() + "\n").collect();
    ctx.reply().verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT KILL addr:port`, or `CLIENT KILL [ID id] [ADDR addr] [LADDR addr] [TYPE normal]
/// [USER default] [SKIPME yes|no]`.
pub(crate) fn client_kill(ctx: &mut Local<'_>, args: &[Bytes]) -> Result<(), ErrorLine> {
    let kill = ClientKill::parse(args, ctx.conn.info.id)?;
    let killed = kill.filter().map_or(0, |f| ctx.shared.clients.kill(f));
    let answer = kill.answer(killed)?;
    ctx.conn.close_after_reply |= ctx.conn.info.is_killed();
    match answer {
        Some(count) => ctx.reply().int(count),
        None => ctx.reply().ok(),
    }
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
