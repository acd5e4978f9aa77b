use super::flags::*;
use super::{CommandSpec, StaticValue, commands, lookup};

/// Every command and subcommand in the table, containers first.
fn all_specs() -> impl Iterator<Item = &'static CommandSpec> {
    commands()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands.iter()))
}

fn info_fields(spec: &CommandSpec) -> &'static [StaticValue] {
    match spec.info {
        StaticValue::Array(fields) => fields,
        other => panic!("{}: info is not an array: {other:?}", spec.name),
    }
}

/// The flag names in the info entry (position 2), which Redis sends as a set of simple strings.
fn info_flag_names(spec: &CommandSpec) -> Vec<&'static str> {
    match &info_fields(spec)[2] {
        StaticValue::Set(items) => items
            .iter()
            .map(|v| match v {
                StaticValue::Simple(s) => *s,
                other => panic!("{}: flag is not a simple string: {other:?}", spec.name),
            })
            .collect(),
        other => panic!("{}: flags are not a set: {other:?}", spec.name),
    }
}

/// Names of the subcommand entries in the info entry (position 9).
fn info_subcommand_names(spec: &CommandSpec) -> Vec<&'static str> {
    let subs = match &info_fields(spec)[9] {
        StaticValue::Array(items) | StaticValue::Set(items) => *items,
        other => panic!("{}: subcommands are not an array: {other:?}", spec.name),
    };
    subs.iter()
        .map(|entry| match entry {
            StaticValue::Array(fields) => match fields[0] {
                StaticValue::Bulk(name) => name,
                ref other => panic!("{}: subcommand name is {other:?}", spec.name),
            },
            other => panic!("{}: subcommand entry is {other:?}", spec.name),
        })
        .collect()
}

/// Keys of the docs map's "subcommands" map, if any.
fn docs_subcommand_names(spec: &CommandSpec) -> Vec<&'static str> {
    let StaticValue::Map(items) = spec.docs else {
        panic!("{}: docs is not a map: {:?}", spec.name, spec.docs);
    };
    let Some(pair) = items
        .chunks(2)
        .find(|kv| matches!(kv[0], StaticValue::Bulk("subcommands")))
    else {
        return Vec::new();
    };
    let StaticValue::Map(subs) = &pair[1] else {
        panic!("{}: docs subcommands is not a map", spec.name);
    };
    subs.chunks(2)
        .map(|kv| match kv[0] {
            StaticValue::Bulk(name) => name,
            ref other => panic!("{}: docs subcommand key is {other:?}", spec.name),
        })
        .collect()
}

fn int(v: &StaticValue) -> i64 {
    match v {
        StaticValue::Int(i) => *i,
        other => panic!("expected an integer, got {other:?}"),
    }
}

#[test]
fn get_is_found_case_insensitively() {
    for name in [&b"GET"[..], b"get", b"GeT"] {
        let get = lookup(name).expect("GET is in the table");
        assert_eq!(get.name, "get");
        assert_eq!(get.arity, 2);
        assert_eq!((get.first_key, get.last_key, get.step), (1, 1, 1));
        assert!(get.has(READONLY | FAST));
        assert!(!get.has(WRITE));
        assert!(get.subcommands.is_empty());
        assert!(get.help.is_empty());
    }
}

#[test]
fn mset_spec() {
    let mset = lookup(b"mset").unwrap();
    assert_eq!(mset.arity, -3);
    assert_eq!((mset.first_key, mset.last_key, mset.step), (1, -1, 2));
    assert!(mset.has(DENYOOM | WRITE));
    assert!(!mset.has(READONLY));
    assert!(!mset.arity_ok(2));
    assert!(mset.arity_ok(3));
    assert!(mset.arity_ok(7));
}

#[test]
fn arity_ok_for_fixed_arity() {
    let get = lookup(b"get").unwrap();
    assert!(!get.arity_ok(1));
    assert!(get.arity_ok(2));
    assert!(!get.arity_ok(3));
}

#[test]
fn config_get_subcommand() {
    let config = lookup(b"CONFIG").unwrap();
    for sub in [&b"GET"[..], b"get", b"Get"] {
        let get = config.subcommand(sub).expect("CONFIG GET is in the table");
        assert_eq!(get.name, "config|get");
        assert_eq!(get.arity, -3);
    }
    assert!(config.subcommand(b"SET").is_some());
    assert!(config.subcommand(b"help").is_some());
    // Redis has CONFIG REWRITE, but Shoal does not implement it.
    assert!(config.subcommand(b"rewrite").is_none());
    assert!(config.subcommand(b"").is_none());
    assert!(
        config.help[0].starts_with("CONFIG <subcommand>"),
        "{:?}",
        config.help
    );
}

#[test]
fn later_redis_commands_described_by_hand_have_redis_shapes() {
    // HEXPIRE (7.4) and HSETEX (8.0) are not in the recorded Redis 7.0: the generator builds
    // their entries from LATER_COMMANDS, in the recorded commands' shapes.
    for (name, arity, flags) in [
        ("hexpire", -6, WRITE | DENYOOM | FAST),
        ("httl", -5, READONLY | FAST),
        ("hpersist", -5, WRITE | FAST),
        ("hgetdel", -5, WRITE | FAST),
        ("hsetex", -6, WRITE | DENYOOM | FAST),
    ] {
        let spec = lookup(name.as_bytes()).unwrap();
        assert_eq!((spec.arity, spec.flags), (arity, flags), "{name}");
        assert_eq!(
            (spec.first_key, spec.last_key, spec.step),
            (1, 1, 1),
            "{name}"
        );
        assert_eq!(int(&info_fields(spec)[1]), i64::from(arity));
        let StaticValue::Map(docs) = spec.docs else {
            panic!("{name}: docs");
        };
        assert!(matches!(docs[0], StaticValue::Bulk("summary")), "{name}");
    }
    let acl = super::acl::acl_commands();
    let hexpire = acl.iter().find(|(name, _)| *name == "hexpire").unwrap();
    let fast = super::acl::category(b"fast").unwrap();
    assert_eq!(hexpire.1, super::acl::WRITE | super::acl::HASH | fast);
}

#[test]
fn shoal_only_counter_commands_have_redis_shapes() {
    // No Redis has them: the generator describes them by hand (SHOAL_COMMANDS).
    for (name, arity, flags) in [
        (
            "counter.incrby",
            4,
            WRITE | DENYOOM | NOSCRIPT | FAST | NO_MULTI,
        ),
        ("counter.get", 3, READONLY | NOSCRIPT | FAST | NO_MULTI),
        ("counter.del", 3, WRITE | NOSCRIPT | NO_MULTI),
    ] {
        let spec = lookup(name.to_ascii_uppercase().as_bytes()).unwrap();
        assert_eq!(spec.name, name);
        assert_eq!((spec.arity, spec.flags), (arity, flags), "{name}");
        // The counter's key is the first argument (ACL key patterns check it); the parts
        // `key#1..N` are not arguments.
        assert_eq!(
            (spec.first_key, spec.last_key, spec.step),
            (1, 1, 1),
            "{name}"
        );
        assert_eq!(spec.key_positions(arity as usize).collect::<Vec<_>>(), [1]);
        let StaticValue::Map(docs) = spec.docs else {
            panic!("{name}: docs");
        };
        let group = docs
            .chunks(2)
            .find(|kv| matches!(kv[0], StaticValue::Bulk("group")))
            .map(|kv| &kv[1]);
        assert!(matches!(group, Some(StaticValue::Bulk("string"))), "{name}");
    }
    let acl = super::acl::acl_commands();
    let categories = |name: &str| acl.iter().find(|(n, _)| *n == name).unwrap().1;
    let fast = super::acl::category(b"fast").unwrap();
    let slow = super::acl::category(b"slow").unwrap();
    use super::acl::{KEYSPACE, READ, STRING, WRITE as ACL_WRITE};
    assert_eq!(categories("counter.incrby"), ACL_WRITE | STRING | fast);
    assert_eq!(categories("counter.get"), READ | STRING | fast);
    assert_eq!(
        categories("counter.del"),
        KEYSPACE | ACL_WRITE | STRING | slow
    );
}

#[test]
fn expected_commands_and_subcommands() {
    let names: Vec<&str> = commands().iter().map(|c| c.name).collect();
    let expected = "acl append asking auth bitcount bitfield bitfield_ro bitop bitpos client cluster command \
        config copy counter.del counter.get counter.incrby dbsize decr decrby del discard echo eval eval_ro evalsha evalsha_ro exec \
        exists expire expireat expiretime fcall fcall_ro flushall flushdb function get getbit getdel getex getrange getset \
        hdel hello hexists hexpire hexpireat hexpiretime hget hgetall hgetdel hgetex hincrby \
        hincrbyfloat hkeys hlen hmget hmset hotkeys hpersist hpexpire hpexpireat hpexpiretime hpttl \
        hrandfield hscan hset hsetex hsetnx hstrlen httl hvals incr incrby incrbyfloat info keys \
        latency lcs memory mget mset msetnx multi object persist pexpire pexpireat pexpiretime ping psetex \
        psubscribe psync pttl publish pubsub punsubscribe quit randomkey readonly readwrite rename \
        renamenx replconf reset scan script select set setbit setex setnx setrange shutdown \
        slowlog spublish ssubscribe strlen subscribe sunsubscribe time touch ttl type unlink \
        unsubscribe unwatch wait watch";
    assert_eq!(names, expected.split_whitespace().collect::<Vec<_>>());

    let subs = |name: &str| -> Vec<&str> {
        let spec = lookup(name.as_bytes()).unwrap();
        spec.subcommands
            .iter()
            .map(|s| &s.name[name.len() + 1..])
            .collect()
    };
    assert_eq!(
        subs("latency"),
        [
            "doctor",
            "graph",
            "help",
            "histogram",
            "history",
            "latest",
            "reset"
        ]
    );
    assert_eq!(
        subs("client"),
        [
            "caching",
            "getname",
            "getredir",
            "help",
            "id",
            "info",
            "kill",
            "list",
            "setname",
            "tracking",
            "trackinginfo"
        ]
    );
    assert_eq!(
        subs("command"),
        ["count", "docs", "getkeys", "help", "info", "list"]
    );
    assert_eq!(subs("config"), ["get", "help", "resetstat", "set"]);
    assert_eq!(
        subs("cluster"),
        [
            "countkeysinslot",
            "failover",
            "getkeysinslot",
            "help",
            "info",
            "keyslot",
            "migrateslots",
            "myid",
            "nodes",
            "shards",
            "slots"
        ]
    );
    assert_eq!(subs("slowlog"), ["get", "help", "len", "reset"]);
    assert_eq!(subs("script"), ["exists", "flush", "help", "kill", "load"]);
    assert_eq!(
        subs("function"),
        [
            "delete", "dump", "flush", "help", "kill", "list", "load", "restore", "stats"
        ]
    );
    assert_eq!(
        subs("pubsub"),
        [
            "channels",
            "help",
            "numpat",
            "numsub",
            "shardchannels",
            "shardnumsub"
        ]
    );
    assert_eq!(
        subs("acl"),
        [
            "cat", "deluser", "dryrun", "genpass", "getuser", "help", "list", "load", "log",
            "save", "setuser", "users", "whoami"
        ]
    );
    assert_eq!(subs("memory"), ["help", "usage"]);
    assert_eq!(
        subs("object"),
        ["encoding", "freq", "help", "idletime", "refcount"]
    );
}

#[test]
fn info_entries_match_the_spec_fields() {
    for spec in all_specs() {
        let fields = info_fields(spec);
        assert_eq!(fields.len(), 10, "{}", spec.name);
        assert!(
            matches!(fields[0], StaticValue::Bulk(n) if n == spec.name),
            "{}",
            spec.name
        );
        assert_eq!(int(&fields[1]), i64::from(spec.arity), "{}", spec.name);
        assert_eq!(int(&fields[3]), i64::from(spec.first_key), "{}", spec.name);
        assert_eq!(int(&fields[4]), i64::from(spec.last_key), "{}", spec.name);
        assert_eq!(int(&fields[5]), i64::from(spec.step), "{}", spec.name);
        assert!(matches!(spec.docs, StaticValue::Map(_)), "{}", spec.name);
    }
}

#[test]
fn flag_bits_match_the_info_flags() {
    let known = [
        ("write", WRITE),
        ("readonly", READONLY),
        ("denyoom", DENYOOM),
        ("admin", ADMIN),
        ("pubsub", PUBSUB),
        ("noscript", NOSCRIPT),
        ("blocking", BLOCKING),
        ("loading", LOADING),
        ("stale", STALE),
        ("skip_monitor", SKIP_MONITOR),
        ("skip_slowlog", SKIP_SLOWLOG),
        ("fast", FAST),
        ("no_auth", NO_AUTH),
        ("may_replicate", MAY_REPLICATE),
        ("no_mandatory_keys", NO_MANDATORY_KEYS),
        ("no_multi", NO_MULTI),
        ("movablekeys", MOVABLE_KEYS),
        ("allow_busy", ALLOW_BUSY),
    ];
    for spec in all_specs() {
        let names = info_flag_names(spec);
        let expected = known
            .iter()
            .filter(|(n, _)| names.contains(n))
            .fold(0, |acc, (_, bit)| acc | bit);
        assert_eq!(spec.flags, expected, "{}: {names:?}", spec.name);
    }
    // Spot checks against Redis's documented flags.
    assert!(lookup(b"auth").unwrap().has(NO_AUTH | NOSCRIPT));
    assert!(lookup(b"hello").unwrap().has(NO_AUTH));
    assert!(lookup(b"keys").unwrap().has(READONLY));
    assert!(lookup(b"flushall").unwrap().has(WRITE));
    assert_eq!(lookup(b"client").unwrap().flags, 0);
}

#[test]
fn table_is_sorted_and_every_name_is_found() {
    let table = commands();
    assert!(table.windows(2).all(|w| w[0].name < w[1].name));
    for spec in table {
        assert!(!spec.name.contains('|'));
        assert_eq!(spec.name, spec.name.to_ascii_lowercase());
        assert!(std::ptr::eq(lookup(spec.name.as_bytes()).unwrap(), spec));
        let upper = spec.name.to_ascii_uppercase();
        assert!(std::ptr::eq(lookup(upper.as_bytes()).unwrap(), spec));
    }
}

#[test]
fn containers_have_sorted_prefixed_subcommands_and_help() {
    let mut containers = 0;
    for spec in commands() {
        let from_info = info_subcommand_names(spec);
        let from_docs = docs_subcommand_names(spec);
        if spec.subcommands.is_empty() {
            assert!(from_info.is_empty(), "{}", spec.name);
            assert!(from_docs.is_empty(), "{}", spec.name);
            assert!(spec.help.is_empty(), "{}", spec.name);
            continue;
        }
        containers += 1;
        let prefix = format!("{}|", spec.name);
        assert!(
            spec.subcommands.windows(2).all(|w| w[0].name < w[1].name),
            "{}",
            spec.name
        );
        let names: Vec<&str> = spec.subcommands.iter().map(|s| s.name).collect();
        for (sub, name) in spec.subcommands.iter().zip(&names) {
            assert!(
                name.starts_with(&prefix) && name.len() > prefix.len(),
                "{name}"
            );
            assert!(sub.subcommands.is_empty() && sub.help.is_empty(), "{name}");
            assert!(std::ptr::eq(
                spec.subcommand(&name.as_bytes()[prefix.len()..]).unwrap(),
                sub
            ));
        }
        // The info entry's and the docs map's subcommands are exactly the table's, in the same
        // (sorted) order: Redis's own order is a random hash-table order, so the generator sorts.
        assert_eq!(from_info, names, "{}", spec.name);
        assert_eq!(from_docs, names, "{}", spec.name);
        // Redis 8.6's HOTKEYS (described by hand) has no HELP subcommand in Redis's table.
        if spec.name == "hotkeys" {
            assert!(spec.help.is_empty());
            assert_eq!(
                names,
                [
                    "hotkeys|get",
                    "hotkeys|reset",
                    "hotkeys|start",
                    "hotkeys|stop"
                ]
            );
            continue;
        }
        // HELP replies start with "<NAME> <subcommand> [<arg> [value] [opt] ...]. Subcommands are:".
        let upper = spec.name.to_ascii_uppercase();
        assert!(spec.help.len() > 2, "{}", spec.name);
        assert!(
            spec.help[0].starts_with(&format!("{upper} <subcommand>")),
            "{:?}",
            spec.help
        );
        assert!(
            spec.help.iter().any(|l| l.starts_with("HELP")),
            "{:?}",
            spec.help
        );
        assert!(spec.help.iter().all(|l| !l.contains(['\r', '\n'])));
    }
    assert_eq!(containers, 13);
}

#[test]
fn simple_strings_have_no_line_breaks() {
    fn walk(v: &StaticValue, name: &str) {
        match v {
            StaticValue::Simple(s) => assert!(!s.contains(['\r', '\n']), "{name}: {s:?}"),
            StaticValue::Bulk(_) | StaticValue::Int(_) => {}
            StaticValue::Map(items) => {
                assert_eq!(items.len() % 2, 0, "{name}: odd map");
                items.iter().for_each(|v| walk(v, name));
            }
            StaticValue::Array(items) | StaticValue::Set(items) => {
                items.iter().for_each(|v| walk(v, name));
            }
        }
    }
    for spec in all_specs() {
        walk(spec.info, spec.name);
        walk(spec.docs, spec.name);
    }
}

#[test]
fn key_positions() {
    let positions = |name: &[u8], argc| {
        lookup(name)
            .unwrap()
            .key_positions(argc)
            .collect::<Vec<_>>()
    };
    assert_eq!(positions(b"mset", 7), [1, 3, 5]);
    assert_eq!(positions(b"MSET", 3), [1]);
    assert_eq!(positions(b"get", 2), [1]);
    assert_eq!(positions(b"del", 4), [1, 2, 3]);
    assert_eq!(positions(b"rename", 3), [1, 2]);
    assert_eq!(positions(b"bitop", 6), [2, 3, 4, 5]);
    assert_eq!(positions(b"lcs", 5), [1, 2]);
    assert_eq!(positions(b"bitfield", 7), [1]);
    assert_eq!(positions(b"ping", 1), Vec::<usize>::new());
    assert_eq!(positions(b"dbsize", 1), Vec::<usize>::new());
}

#[test]
fn unknown_or_overlong_names_are_not_found() {
    assert!(lookup(b"nosuchcommand").is_none());
    assert!(lookup(b"").is_none());
    assert!(lookup(b"gett").is_none());
    assert!(lookup(b"ge").is_none());
    assert!(lookup(b"config|get").is_none());
    assert!(lookup(&[b'a'; 32]).is_none());
    assert!(lookup(&[b'a'; 33]).is_none());
    let mut long = b"get".to_vec();
    long.resize(40, b' ');
    assert!(lookup(&long).is_none());
}
