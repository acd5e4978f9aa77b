//! The connection commands, answered by the front door the same way for every backend:
//! `PING`, `ECHO`, `QUIT`, `RESET`, `SELECT`, `AUTH`, `HELLO`, `MULTI`, `DISCARD`, and
//! `CLIENT ID`, `SETNAME`, `GETNAME`, `LIST`, `INFO`, `KILL`, `TRACKING`, `CACHING`,
//! `GETREDIR`, `TRACKINGINFO` and `HELP`.

mod args;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use args::{
    ClientKill, ClientList, HELLO_NOAUTH, HelloOption, auth_args, hello_options, hello_protocol,
    select_db, valid_client_name, write_hello,
};
pub use args::{REDIS_BEHAVIOUR, REDIS_VERSION};
use shoal_proto::{Argv, Protocol, Reply};

use crate::acl::{Reason, UserSlot};
use crate::backend::{Backend, Conn};
use crate::commands::{ConnCommand, table};
use crate::error::{CommandError, WRONGPASS};
use crate::multi::Multi;

/// What a connection command works with.
pub(crate) struct ConnCall<'a, B: Backend> {
    pub(crate) backend: &'a B,
    pub(crate) conn: &'a mut Conn,
    pub(crate) state: &'a mut B::Conn,
    pub(crate) out: &'a mut Vec<u8>,
}

/// Runs connection command `which`; a success reply is written, an error returned.
pub(crate) fn run<B: Backend>(
    which: ConnCommand,
    call: &mut ConnCall<'_, B>,
    argv: &Argv<'_>,
) -> Result<(), CommandError> {
    match which {
        ConnCommand::Ping => ping(call, argv),
        ConnCommand::Echo => {
            call.conn.reply(call.out).bulk(argv.get(1));
            Ok(())
        }
        ConnCommand::Quit => {
            call.conn.reply(call.out).ok();
            call.conn.close_after_reply = true;
            Ok(())
        }
        ConnCommand::Reset => {
            reset(call);
            Ok(())
        }
        ConnCommand::Multi => {
            if call.conn.multi.is_some() {
                return Err(CommandError::fixed("ERR MULTI calls can not be nested"));
            }
            call.conn.multi = Some(Multi::default());
            call.conn.reply(call.out).ok();
            Ok(())
        }
        ConnCommand::Discard => {
            if call.conn.multi.take().is_none() {
                return Err(CommandError::fixed("ERR DISCARD without MULTI"));
            }
            call.backend.unwatch(call.state);
            call.conn.reply(call.out).ok();
            Ok(())
        }
        // Run by the dispatcher, which hands the queue to the backend.
        ConnCommand::Exec => Err(CommandError::fixed("ERR EXEC without MULTI")),
        ConnCommand::PubSub(question) => {
            let registry = call.backend.door().pubsub.clone();
            crate::pubsub::answer(question, &registry, call.conn.protocol, call.out, argv);
            Ok(())
        }
        ConnCommand::Subscription(which) => {
            let registry = call.backend.door().pubsub.clone();
            crate::pubsub::run(which, &registry, call.conn, call.out, argv)
        }
        ConnCommand::Select => {
            select_db(argv.get(1))?;
            call.conn.reply(call.out).ok();
            Ok(())
        }
        ConnCommand::Auth => auth(call, argv),
        ConnCommand::Hello => hello(call, argv),
        ConnCommand::ClientId => {
            let id = i64::try_from(call.conn.info.id).unwrap_or(i64::MAX);
            call.conn.reply(call.out).int(id);
            Ok(())
        }
        ConnCommand::ClientSetname => {
            valid_client_name(argv.get(2))?;
            set_name(call, argv.get(2));
            call.conn.reply(call.out).ok();
            Ok(())
        }
        ConnCommand::ClientGetname => {
            match call.conn.info.name() {
                Some(name) => call.conn.reply(call.out).bulk(&name),
                None => call.conn.reply(call.out).null(),
            }
            Ok(())
        }
        ConnCommand::ClientList => client_list(call, argv),
        ConnCommand::ClientInfo => {
            publish_current_command(call.conn);
            let text = call.conn.info.describe() + "\n";
            call.conn.reply(call.out).verbatim(text.as_bytes());
            Ok(())
        }
        ConnCommand::ClientKill => client_kill(call, argv),
        ConnCommand::ClientTracking => {
            let registry = call.backend.door().tracking.clone();
            let supported = call.backend.tracks_keys();
            let conn = &mut *call.conn;
            crate::tracking::client_tracking(
                &registry,
                &conn.info,
                &mut conn.tracking,
                argv,
                supported,
            )
            .map_err(crate::tracking::TrackingError::into_error)?;
            call.conn.reply(call.out).ok();
            Ok(())
        }
        ConnCommand::ClientCaching => {
            crate::tracking::client_caching(&mut call.conn.tracking, argv)
                .map_err(crate::tracking::TrackingError::into_error)?;
            call.conn.reply(call.out).ok();
            Ok(())
        }
        ConnCommand::ClientGetredir => {
            let redirect = crate::tracking::redirect_of(call.conn.tracking.as_deref());
            call.conn.reply(call.out).int(redirect);
            Ok(())
        }
        ConnCommand::ClientTrackinginfo => {
            let mut reply = Reply::new(call.out, call.conn.protocol);
            crate::tracking::write_info(call.conn.tracking.as_deref(), &mut reply);
            Ok(())
        }
        ConnCommand::ClientHelp => {
            write_help(call.conn, call.out, argv.get(0));
            Ok(())
        }
        ConnCommand::Acl(sub) => {
            publish_current_command(call.conn);
            crate::acl::commands::run(sub, call, argv)
        }
    }
}

/// `<CONTAINER> HELP`: the help lines Redis prints, recorded in the command table, for the
/// container `argv[0]` names.
pub fn write_help(conn: &Conn, out: &mut Vec<u8>, container: &[u8]) {
    let lines = table().lookup(container).map_or(&[][..], |c| c.spec.help);
    let mut reply = conn.reply(out);
    reply.array(lines.len());
    for line in lines {
        reply.simple(line);
    }
}

/// `PING [message]`
fn ping<B: Backend>(call: &mut ConnCall<'_, B>, argv: &Argv<'_>) -> Result<(), CommandError> {
    if argv.len() > 2 {
        return Err(CommandError::WrongArity("ping"));
    }
    if call.conn.subscribed() && call.conn.protocol == Protocol::Resp2 {
        // A subscribed RESP2 connection reads replies among messages: `["pong", message]`.
        let mut reply = call.conn.reply(call.out);
        reply.array(2);
        reply.bulk(b"pong");
        reply.bulk(argv.try_get(1).unwrap_or_default());
        return Ok(());
    }
    match argv.try_get(1) {
        Some(message) => call.conn.reply(call.out).bulk(message),
        None => call.conn.reply(call.out).simple("PONG"),
    }
    Ok(())
}

/// `RESET`: back to a fresh connection's state (RESP2, no name, not authenticated if a
/// password is required, and whatever the backend resets).
fn reset<B: Backend>(call: &mut ConnCall<'_, B>) {
    set_protocol(call.conn, Protocol::Resp2);
    call.conn.info.set_name(b"");
    let acl = &call.backend.door().acl;
    call.conn.authenticated = !acl.auth_required();
    set_user(call.conn, acl.default_user().clone());
    call.conn.multi = None;
    call.conn.subscriptions = None;
    call.conn.tracking = None;
    call.backend.unwatch(call.state);
    call.backend.reset(call.state);
    call.conn.reply(call.out).simple("RESET");
}

fn set_protocol(conn: &mut Conn, protocol: Protocol) {
    conn.protocol = protocol;
    conn.info.resp.store(protocol.version(), Relaxed);
}

fn set_name<B: Backend>(call: &mut ConnCall<'_, B>, name: &[u8]) {
    call.conn.info.set_name(name);
    call.backend.named(call.state, name);
}

fn set_user(conn: &mut Conn, user: Arc<UserSlot>) {
    conn.info.set_user(user.name());
    conn.user = user;
}

/// Failed authentications on one connection before each further one is slowed down.
const FREE_AUTH_FAILURES: u32 = 3;
/// The first delay after those, doubled with each further failure up to [`MAX_AUTH_DELAY`].
const FIRST_AUTH_DELAY: Duration = Duration::from_millis(10);
/// The longest a failed authentication's reply waits.
const MAX_AUTH_DELAY: Duration = Duration::from_secs(1);

/// How long the reply to the `failures`-th failed authentication in a row waits: nothing for
/// the first few (a mistyped password costs nothing), then 10 ms doubling up to a second, so
/// one connection cannot try more than about a password a second for long.
pub(crate) fn auth_delay(failures: u32) -> Option<Duration> {
    let over = failures.checked_sub(FREE_AUTH_FAILURES + 1)?;
    let delay = FIRST_AUTH_DELAY.saturating_mul(1u32 << over.min(16));
    Some(delay.min(MAX_AUTH_DELAY))
}

/// Authenticates the connection as `user`, or counts, logs and slows down the failure and
/// returns [`WRONGPASS`] (`ACLAuthenticateUser`).
fn authenticate<B: Backend>(
    call: &mut ConnCall<'_, B>,
    command: &[u8],
    user: &[u8],
    password: &[u8],
) -> Result<(), CommandError> {
    let acl = &call.backend.door().acl;
    match acl.authenticate(user, password) {
        Some(slot) => {
            call.conn.authenticated = true;
            call.conn.auth_failures = 0;
            set_user(call.conn, slot);
            Ok(())
        }
        None => {
            let by_source = acl.auth_failure_from(user, call.conn.info.addr);
            publish_current_command(call.conn);
            acl.log(Reason::Auth, command, user, call.conn.info.describe());
            call.conn.auth_failures = call.conn.auth_failures.saturating_add(1);
            call.conn.pause = auth_delay(call.conn.auth_failures).max(by_source);
            Err(CommandError::fixed(WRONGPASS))
        }
    }
}

/// `AUTH [username] password`
fn auth<B: Backend>(call: &mut ConnCall<'_, B>, argv: &Argv<'_>) -> Result<(), CommandError> {
    let acl = &call.backend.door().acl;
    let args: Vec<&[u8]> = argv.iter().collect();
    let (user, password) = auth_args(&args, !acl.default_nopass())?;
    authenticate(call, args[0], user, password)?;
    call.conn.reply(call.out).ok();
    Ok(())
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
fn hello<B: Backend>(call: &mut ConnCall<'_, B>, argv: &Argv<'_>) -> Result<(), CommandError> {
    let args: Vec<&[u8]> = argv.iter().collect();
    let version = hello_protocol(&args)?;
    // Redis 7.0 applies the options in order as it reads them: a successful AUTH or a valid
    // SETNAME takes effect even if a later option is refused.
    for option in hello_options(&args) {
        match option? {
            HelloOption::Auth { user, password } => {
                authenticate(call, args[0], user, password)?;
            }
            HelloOption::SetName(name) => set_name(call, name),
        }
    }
    if !call.conn.authenticated {
        return Err(CommandError::fixed(HELLO_NOAUTH));
    }
    if let Some(version) = version {
        set_protocol(call.conn, version);
    }
    let (protocol, id) = (call.conn.protocol, call.conn.info.id);
    let (mode, role) = (call.backend.mode(), call.backend.role());
    write_hello(&mut call.conn.reply(call.out), protocol, id, mode, role);
    Ok(())
}

/// Makes this client's own `CLIENT LIST` / `CLIENT INFO` line show the command running now,
/// as Redis's does.
fn publish_current_command(conn: &Conn) {
    conn.info.last_command.store(conn.last_command, Relaxed);
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id [id ...]]`
fn client_list<B: Backend>(
    call: &mut ConnCall<'_, B>,
    argv: &Argv<'_>,
) -> Result<(), CommandError> {
    let args: Vec<&[u8]> = argv.iter().collect();
    let list = ClientList::parse(&args)?;
    publish_current_command(call.conn);
    let mut text = String::new();
    for client in call.backend.door().clients.all() {
        if list.shows(client.id) {
            text.push_str(&client.describe());
            text.push('\n');
        }
    }
    call.conn.reply(call.out).verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT KILL addr:port` (old form) or `CLIENT KILL <filter> <value> ...` (Redis 7's filters
/// `ID`, `ADDR`, `LADDR`, `TYPE`, `USER`, `SKIPME`).
fn client_kill<B: Backend>(
    call: &mut ConnCall<'_, B>,
    argv: &Argv<'_>,
) -> Result<(), CommandError> {
    let me = call.conn.info.id;
    let args: Vec<&[u8]> = argv.iter().collect();
    let door = call.backend.door();
    let request = ClientKill::parse(&args, me, |user| door.acl.user(user).is_some())?;
    let clients = &door.clients;
    let (killed, killed_self) = request.filter().map_or((0, false), |f| clients.kill(f, me));
    let answer = request.answer(killed)?;
    call.conn.close_after_reply |= killed_self;
    match answer {
        Some(count) => call.conn.reply(call.out).int(count),
        None => call.conn.reply(call.out).ok(),
    }
    Ok(())
}
