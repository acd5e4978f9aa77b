//! Connection commands: `PING`, `ECHO`, `HELLO`, `AUTH`, `SELECT`, `QUIT`, `RESET`, `CLIENT`.

use std::sync::atomic::Ordering::Relaxed;

pub use shoal_proto::connection::REDIS_VERSION;
use shoal_proto::connection::{
    ClientKill, ClientList, HELLO_NOAUTH, HelloOption, WRONGPASS, auth_args, hello_options,
    hello_protocol, select_db, valid_client_name, write_hello,
};
use shoal_proto::{Argv, Protocol};

use crate::clients::ClientInfo;
use crate::dispatch::Ctx;
use crate::error::{CommandError, CommandResult};

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
    select_db(argv.get(1))?;
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
    let args: Vec<&[u8]> = argv.iter().collect();
    let (user, password) = auth_args(&args, ctx.shared.live.password_required())?;
    if !check_password(ctx, user, password) {
        return Err(CommandError::fixed(WRONGPASS));
    }
    ctx.client.authenticated = true;
    ctx.reply().ok();
    Ok(())
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
    let args: Vec<&[u8]> = argv.iter().collect();
    let version = hello_protocol(&args)?;
    // Redis 7.0 applies the options in order as it reads them: a successful AUTH or a valid
    // SETNAME takes effect even if a later option is refused.
    for option in hello_options(&args) {
        match option? {
            HelloOption::Auth { user, password } if check_password(ctx, user, password) => {
                ctx.client.authenticated = true;
            }
            HelloOption::Auth { .. } => return Err(CommandError::fixed(WRONGPASS)),
            HelloOption::SetName(name) => set_name(&ctx.client.info, name),
        }
    }
    if !ctx.client.authenticated {
        return Err(CommandError::fixed(HELLO_NOAUTH));
    }
    if let Some(version) = version {
        ctx.client.protocol = version;
        ctx.client.info.resp.store(version.version(), Relaxed);
    }
    let (protocol, id) = (ctx.client.protocol, ctx.client.info.id);
    write_hello(&mut ctx.reply(), protocol, id);
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
    let args: Vec<&[u8]> = argv.iter().collect();
    let list = ClientList::parse(&args)?;
    // This client's own line shows the command running now, as Redis's does.
    ctx.client
        .info
        .last_command
        .store(ctx.client.last_command, Relaxed);
    let mut text = String::new();
    for client in ctx.shared.clients.all() {
        if list.shows(client.id) {
            text.push_str(&describe(ctx, &client));
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
    let args: Vec<&[u8]> = argv.iter().collect();
    let request = ClientKill::parse(&args, me)?;
    let mut close_self = false;
    let clients = &ctx.shared.clients;
    let killed = request
        .filter()
        .map_or(0, |f| clients.kill(f, me, || close_self = true));
    let answer = request.answer(killed)?;
    ctx.client.close_after_reply |= close_self;
    match answer {
        Some(count) => ctx.reply().int(count),
        None => ctx.reply().ok(),
    }
    Ok(())
}
