//! Reading the connection commands' arguments as Redis 7.0 does (`AUTH`, `SELECT`, `HELLO`,
//! `CLIENT SETNAME`, `CLIENT LIST` and `CLIENT KILL`), their error lines, and `HELLO`'s reply.
//! These functions change nothing: they say what to do, in the order Redis does it.

use shoal_proto::args::{is, parse_i64};
use shoal_proto::{Protocol, Reply};

use crate::clients::KillFilter;
use crate::error::CommandError;
use crate::identity::{Mode, Role};

/// The Redis version Shoal reports (`HELLO`'s `version`, `INFO`'s `redis_version`, scripts'
/// `redis.REDIS_VERSION`): 7.4.0, the first version with which client libraries (redis-py
/// 5.1+, Jedis 5.2, node-redis 5) turn their client-side caching on. The commands and replies
/// stay those of [`REDIS_BEHAVIOUR`] (see `docs/decisions.md`, "Reported version 7.4.0").
pub const REDIS_VERSION: &str = "7.4.0";

/// The Redis version whose command table, replies and errors Shoal matches (and is diffed
/// against): Redis 7.0.
pub const REDIS_BEHAVIOUR: &str = "7.0.15";

/// `HELLO` from a connection that is not authenticated (and gave no `AUTH` option).
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";

/// `AUTH <password>` without a password set.
const AUTH_WITHOUT_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";

const SYNTAX: &str = "ERR syntax error";

/// The Redis client types that are not a normal client (none of them is ever connected).
const OTHER_CLIENT_TYPES: [&str; 4] = ["master", "replica", "slave", "pubsub"];

/// `AUTH [username] password`: the user (`default` when left out) and the password.
/// `password_required` says whether the default user has a password (`AUTH <password>`
/// without one is an error).
pub fn auth_args<A: AsRef<[u8]>>(
    args: &[A],
    password_required: bool,
) -> Result<(&[u8], &[u8]), CommandError> {
    match args {
        [_, password] if password_required => Ok((b"default", password.as_ref())),
        [_, _] => Err(CommandError::fixed(AUTH_WITHOUT_PASSWORD)),
        [_, user, password] => Ok((user.as_ref(), password.as_ref())),
        _ => Err(CommandError::fixed(SYNTAX)),
    }
}

/// `SELECT index`: database 0 is the only one.
pub fn select_db(index: &[u8]) -> Result<(), CommandError> {
    let index = parse_i64(index).ok_or(CommandError::fixed(
        "ERR value is not an integer or out of range",
    ))?;
    if i32::try_from(index).is_err() {
        return Err(CommandError::fixed(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    if index != 0 {
        return Err(CommandError::fixed("ERR DB index is out of range"));
    }
    Ok(())
}

/// Client names are printable ASCII without spaces, as in Redis (`CLIENT SETNAME`, `HELLO
/// ... SETNAME`).
pub fn valid_client_name(name: &[u8]) -> Result<(), CommandError> {
    if name.iter().all(|&c| (b'!'..=b'~').contains(&c)) {
        Ok(())
    } else {
        Err(CommandError::fixed(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ))
    }
}

/// `HELLO [protover ...]`'s protocol version, if given.
pub fn hello_protocol<A: AsRef<[u8]>>(args: &[A]) -> Result<Option<Protocol>, CommandError> {
    let Some(arg) = args.get(1) else {
        return Ok(None);
    };
    let version = parse_i64(arg.as_ref()).ok_or(CommandError::fixed(
        "ERR Protocol version is not an integer or out of range",
    ))?;
    match version {
        2 => Ok(Some(Protocol::Resp2)),
        3 => Ok(Some(Protocol::Resp3)),
        _ => Err(CommandError::fixed("NOPROTO unsupported protocol version")),
    }
}

/// One option of `HELLO protover [AUTH username password] [SETNAME clientname]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloOption<'a> {
    /// `AUTH username password`: authenticate, or answer [`WRONGPASS`].
    Auth {
        /// The user name.
        user: &'a [u8],
        /// The password.
        password: &'a [u8],
    },
    /// `SETNAME clientname`, a valid name.
    SetName(&'a [u8]),
}

/// `HELLO`'s options after the protocol version, in order, ending at the first bad one (an
/// unknown option, one without its arguments, an invalid name). As in Redis 7.0, the caller
/// applies each as it comes, so an `AUTH` or a `SETNAME` before a bad option stays applied.
pub fn hello_options<A: AsRef<[u8]>>(
    args: &[A],
) -> impl Iterator<Item = Result<HelloOption<'_>, CommandError>> {
    let mut i = 2;
    std::iter::from_fn(move || {
        let opt = args.get(i)?.as_ref();
        let more = args.len() - 1 - i;
        let option = if is(opt, "AUTH") && more >= 2 {
            let (user, password) = (args[i + 1].as_ref(), args[i + 2].as_ref());
            i += 3;
            Ok(HelloOption::Auth { user, password })
        } else if is(opt, "SETNAME") && more >= 1 {
            let name = args[i + 1].as_ref();
            i += 2;
            valid_client_name(name).map(|()| HelloOption::SetName(name))
        } else {
            Err(CommandError::quoting(
                "ERR Syntax error in HELLO option '",
                opt,
                "'",
            ))
        };
        if option.is_err() {
            i = args.len();
        }
        Some(option)
    })
}

/// `HELLO`'s reply: the server's properties, as Redis 7.0 answers, with the `mode` and `role`
/// the backend gives (see [`Mode`]). `protocol` is the connection's after the command, `id`
/// its client id.
pub fn write_hello(reply: &mut Reply<'_>, protocol: Protocol, id: u64, mode: Mode, role: Role) {
    reply.map(7);
    for (k, v) in [("server", "redis"), ("version", REDIS_VERSION)] {
        reply.bulk(k.as_bytes());
        reply.bulk(v.as_bytes());
    }
    reply.bulk(b"proto");
    reply.int(i64::from(protocol.version()));
    reply.bulk(b"id");
    reply.int(i64::try_from(id).unwrap_or(i64::MAX));
    for (k, v) in [("mode", mode.as_str()), ("role", role.as_str())] {
        reply.bulk(k.as_bytes());
        reply.bulk(v.as_bytes());
    }
    reply.bulk(b"modules");
    reply.array(0);
}

/// Which clients `CLIENT LIST [TYPE normal|master|replica|pubsub] [ID id ...]` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientList {
    /// `TYPE` other than `normal`: no client is of those types.
    none: bool,
    /// `ID id ...`: only these (ids no client has match nothing).
    ids: Option<Vec<u64>>,
}

impl ClientList {
    /// Reads `CLIENT LIST`'s arguments.
    pub fn parse<A: AsRef<[u8]>>(args: &[A]) -> Result<ClientList, CommandError> {
        let arg = |i: usize| args[i].as_ref();
        let mut list = ClientList::default();
        if args.len() == 4 && is(arg(2), "TYPE") {
            let kind = arg(3);
            if OTHER_CLIENT_TYPES.iter().any(|k| is(kind, k)) {
                list.none = true;
            } else if !is(kind, "normal") {
                return Err(CommandError::quoting(
                    "ERR Unknown client type '",
                    kind,
                    "'",
                ));
            }
        } else if args.len() > 3 && is(arg(2), "ID") {
            let mut ids = Vec::new();
            for id in &args[3..] {
                // Redis refuses only what is not an integer; ids no client has match nothing.
                match parse_i64(id.as_ref()) {
                    Some(id) => ids.extend(u64::try_from(id).ok()),
                    None => return Err(CommandError::fixed("ERR Invalid client ID")),
                }
            }
            list.ids = Some(ids);
        } else if args.len() != 2 {
            return Err(CommandError::fixed(SYNTAX));
        }
        Ok(list)
    }

    /// Whether the client with this id is listed.
    pub fn shows(&self, id: u64) -> bool {
        !self.none && self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}

/// What `CLIENT KILL` asks for: `CLIENT KILL addr:port` (the old form), or `CLIENT KILL
/// <filter> <value> ...` with Redis 7's `ID`, `ADDR`, `LADDR`, `TYPE`, `USER` and `SKIPME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKill {
    /// The clients to close; `None` when the filters match no client at all (a `TYPE` no
    /// client is of).
    filter: Option<KillFilter>,
    /// The old form, answered `OK` (or an error when it closed none) rather than a count.
    old_form: bool,
}

impl ClientKill {
    /// Reads `CLIENT KILL`'s arguments, for the client `me` that sent it (spared unless
    /// `SKIPME no`; the old form spares nobody).
    pub fn parse<A: AsRef<[u8]>>(
        args: &[A],
        me: u64,
        user_exists: impl Fn(&[u8]) -> bool,
    ) -> Result<ClientKill, CommandError> {
        if let [_, _, addr] = args {
            let filter = KillFilter {
                addr: Some(String::from_utf8_lossy(addr.as_ref()).into_owned()),
                ..KillFilter::default()
            };
            return Ok(ClientKill {
                filter: Some(filter),
                old_form: true,
            });
        }
        let mut filter = KillFilter {
            skip: Some(me),
            ..KillFilter::default()
        };
        let mut matches_nothing = false;
        for pair in args[2..].chunks(2) {
            let [opt, value] = pair else {
                return Err(CommandError::fixed(SYNTAX));
            };
            let (opt, value) = (opt.as_ref(), value.as_ref());
            let text = || String::from_utf8_lossy(value).into_owned();
            if is(opt, "ID") {
                match parse_i64(value) {
                    Some(id) if id > 0 => filter.id = Some(id.unsigned_abs()),
                    _ => {
                        return Err(CommandError::fixed(
                            "ERR client-id should be greater than 0",
                        ));
                    }
                }
            } else if is(opt, "ADDR") {
                filter.addr = Some(text());
            } else if is(opt, "LADDR") {
                filter.laddr = Some(text());
            } else if is(opt, "TYPE") {
                if OTHER_CLIENT_TYPES.iter().any(|k| is(value, k)) {
                    matches_nothing = true;
                } else if !is(value, "normal") {
                    return Err(CommandError::quoting(
                        "ERR Unknown client type '",
                        value,
                        "'",
                    ));
                }
            } else if is(opt, "USER") {
                if !user_exists(value) {
                    return Err(CommandError::quoting("ERR No such user '", value, "'"));
                }
                filter.user = Some(value.to_vec());
            } else if is(opt, "SKIPME") {
                if is(value, "yes") {
                    filter.skip = Some(me);
                } else if is(value, "no") {
                    filter.skip = None;
                } else {
                    return Err(CommandError::fixed(SYNTAX));
                }
            } else {
                return Err(CommandError::fixed(SYNTAX));
            }
        }
        Ok(ClientKill {
            filter: (!matches_nothing).then_some(filter),
            old_form: false,
        })
    }

    /// The clients to close, if any can match.
    pub fn filter(&self) -> Option<&KillFilter> {
        self.filter.as_ref()
    }

    /// The answer once `killed` clients were closed: `None` for `OK` (the old form), the
    /// count to reply otherwise, or the old form's error when it closed none.
    pub fn answer(&self, killed: usize) -> Result<Option<i64>, CommandError> {
        match (self.old_form, killed) {
            (true, 0) => Err(CommandError::fixed("ERR No such client")),
            (true, _) => Ok(None),
            (false, n) => Ok(Some(i64::try_from(n).unwrap_or(i64::MAX))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn line(error: CommandError) -> String {
        error.line().into_owned()
    }

    #[test]
    fn auth_and_select_read_as_redis_reads_them() {
        assert_eq!(
            auth_args(&[&b"AUTH"[..], b"pw"], true),
            Ok((&b"default"[..], &b"pw"[..]))
        );
        assert_eq!(
            auth_args(&[&b"AUTH"[..], b"u", b"pw"], false),
            Ok((&b"u"[..], &b"pw"[..]))
        );
        assert!(
            line(auth_args(&[&b"AUTH"[..], b"pw"], false).unwrap_err())
                .starts_with("ERR AUTH <password> called without any password")
        );
        assert_eq!(
            auth_args(&[&b"AUTH"[..], b"a", b"b", b"c"], true),
            Err(CommandError::fixed(SYNTAX))
        );
        assert_eq!(select_db(b"0"), Ok(()));
        assert_eq!(
            select_db(b"1"),
            Err(CommandError::fixed("ERR DB index is out of range"))
        );
        assert!(line(select_db(b"x").unwrap_err()).starts_with("ERR value is not an integer"));
        assert!(
            line(select_db(b"4294967296").unwrap_err()).starts_with("ERR value is out of range")
        );
    }

    #[test]
    fn hello_reads_its_options_in_order() {
        let args: [&[u8]; 7] = [b"HELLO", b"3", b"setname", b"me", b"AUTH", b"u", b"p"];
        assert_eq!(hello_protocol(&args), Ok(Some(Protocol::Resp3)));
        let options: Vec<_> = hello_options(&args).collect();
        assert_eq!(
            options,
            [
                Ok(HelloOption::SetName(b"me")),
                Ok(HelloOption::Auth {
                    user: b"u",
                    password: b"p"
                })
            ]
        );
        assert_eq!(hello_protocol(&[b"HELLO"]), Ok(None));
        assert!(
            line(hello_protocol(&[&b"HELLO"[..], b"x"]).unwrap_err())
                .starts_with("ERR Protocol version")
        );
        assert_eq!(
            hello_protocol(&[&b"HELLO"[..], b"4"]),
            Err(CommandError::fixed("NOPROTO unsupported protocol version"))
        );
        // A SETNAME before a bad option comes first; nothing comes after the bad one.
        let args: [&[u8]; 7] = [
            b"HELLO",
            b"2",
            b"SETNAME",
            b"a",
            b"bogus\0x",
            b"SETNAME",
            b"b",
        ];
        let options: Vec<_> = hello_options(&args).collect();
        assert_eq!(options.len(), 2);
        assert_eq!(options[0], Ok(HelloOption::SetName(b"a")));
        assert_eq!(
            line(options[1].clone().unwrap_err()),
            "ERR Syntax error in HELLO option 'bogus'"
        );
        // AUTH without both its arguments is a bad option; so is an invalid name.
        let args: [&[u8]; 4] = [b"HELLO", b"2", b"AUTH", b"u"];
        assert!(hello_options(&args).next().is_some_and(|o| o.is_err()));
        let args: [&[u8]; 4] = [b"HELLO", b"2", b"SETNAME", b"a b"];
        assert!(
            line(hello_options(&args).next().unwrap().unwrap_err()).starts_with("ERR Client names")
        );
    }

    #[test]
    fn hello_replies_with_the_server_s_properties() {
        let mut out = Vec::new();
        write_hello(
            &mut Reply::new(&mut out, Protocol::Resp2),
            Protocol::Resp2,
            7,
            Mode::Standalone,
            Role::Master,
        );
        assert_eq!(
            out,
            b"*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.4.0\r\n\
              $5\r\nproto\r\n:2\r\n$2\r\nid\r\n:7\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n\
              $4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
        );
        let mut out = Vec::new();
        write_hello(
            &mut Reply::new(&mut out, Protocol::Resp3),
            Protocol::Resp3,
            7,
            Mode::Cluster,
            Role::Replica,
        );
        assert!(out.starts_with(b"%7\r\n"));
        assert!(out.windows(11).any(|w| w == b"proto\r\n:3\r\n"));
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"$4\r\nmode\r\n$7\r\ncluster\r\n"));
        assert!(has(b"$4\r\nrole\r\n$7\r\nreplica\r\n"));
    }

    #[test]
    fn client_names_are_printable_without_spaces() {
        assert!(valid_client_name(b"a-b_c:1").is_ok());
        assert!(valid_client_name(b"").is_ok());
        assert!(valid_client_name(b"a b").is_err());
        assert!(valid_client_name(b"a\nb").is_err());
        assert!(valid_client_name(b"\xff").is_err());
    }

    #[test]
    fn client_list_filters_by_type_and_id() {
        let list = |args: &[&[u8]]| ClientList::parse(args).map_err(line);
        let all = list(&[b"CLIENT", b"LIST"]).unwrap();
        assert!(all.shows(1) && all.shows(99));
        let normal = list(&[b"CLIENT", b"LIST", b"TYPE", b"Normal"]).unwrap();
        assert!(normal.shows(1));
        let replicas = list(&[b"CLIENT", b"LIST", b"TYPE", b"replica"]).unwrap();
        assert!(!replicas.shows(1));
        let ids = list(&[b"CLIENT", b"LIST", b"ID", b"3", b"-1", b"5"]).unwrap();
        assert!(ids.shows(3) && ids.shows(5) && !ids.shows(4));
        assert_eq!(
            list(&[b"CLIENT", b"LIST", b"TYPE", b"x\0y"]),
            Err("ERR Unknown client type 'x'".into())
        );
        assert_eq!(
            list(&[b"CLIENT", b"LIST", b"ID", b"3", b"x"]),
            Err("ERR Invalid client ID".into())
        );
        assert_eq!(list(&[b"CLIENT", b"LIST", b"ID"]), Err(SYNTAX.into()));
    }

    #[test]
    fn client_kill_reads_both_forms() {
        let kill = |args: &[&[u8]]| ClientKill::parse(args, 7, |u| u == b"default").map_err(line);
        let old = kill(&[b"CLIENT", b"KILL", b"1.2.3.4:5"]).unwrap();
        let only_addr = KillFilter {
            addr: Some("1.2.3.4:5".into()),
            ..KillFilter::default()
        };
        assert_eq!(old.filter(), Some(&only_addr));
        assert_eq!(old.answer(1), Ok(None));
        assert_eq!(
            old.answer(0),
            Err(CommandError::fixed("ERR No such client"))
        );
        let new = kill(&[
            b"CLIENT", b"KILL", b"ID", b"3", b"laddr", b"l:1", b"USER", b"default",
        ]);
        let new = new.unwrap();
        let expected = KillFilter {
            id: Some(3),
            laddr: Some("l:1".into()),
            skip: Some(7),
            user: Some(b"default".to_vec()),
            ..KillFilter::default()
        };
        assert_eq!(new.filter(), Some(&expected));
        assert_eq!((new.answer(0), new.answer(2)), (Ok(Some(0)), Ok(Some(2))));
        let everyone = kill(&[b"CLIENT", b"KILL", b"SKIPME", b"no", b"TYPE", b"normal"]);
        assert_eq!(everyone.unwrap().filter(), Some(&KillFilter::default()));
        let nobody = kill(&[b"CLIENT", b"KILL", b"TYPE", b"pubsub"]).unwrap();
        assert_eq!((nobody.filter(), nobody.answer(0)), (None, Ok(Some(0))));
        for (args, error) in [
            (
                &[&b"CLIENT"[..], b"KILL", b"ID", b"3", b"LADDR"][..],
                SYNTAX,
            ),
            (
                &[b"CLIENT", b"KILL", b"ID", b"0"],
                "ERR client-id should be greater than 0",
            ),
            (
                &[b"CLIENT", b"KILL", b"TYPE", b"x"],
                "ERR Unknown client type 'x'",
            ),
            (
                &[b"CLIENT", b"KILL", b"USER", b"bob"],
                "ERR No such user 'bob'",
            ),
            (&[b"CLIENT", b"KILL", b"SKIPME", b"maybe"], SYNTAX),
            (&[b"CLIENT", b"KILL", b"MAXAGE", b"1"], SYNTAX),
        ] {
            assert_eq!(kill(args), Err(error.into()), "{args:?}");
        }
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let filter = KillFilter {
            laddr: Some("127.0.0.1:6379".into()),
            skip: Some(7),
            ..KillFilter::default()
        };
        assert!(filter.matches(3, addr("10.0.0.1:1"), addr("127.0.0.1:6379")));
        assert!(!filter.matches(7, addr("10.0.0.1:1"), addr("127.0.0.1:6379")));
        assert!(!filter.matches(3, addr("10.0.0.1:1"), addr("127.0.0.1:6380")));
    }
}
