//! A node end to end through the `redis` crate, as applications use it: string and keyspace
//! commands in RESP2 and RESP3, TTLs and active expiry, binary safety, large values,
//! pipelining, concurrent clients, `CLIENT`, `INFO`, `CONFIG`, `SLOWLOG`, `SHUTDOWN`, and
//! an idle node's CPU use.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Node, Rng, eventually, exclusive, gate};
use redis::{Connection, RedisResult, Value as RV, cmd};

fn q<T: redis::FromRedisValue>(con: &mut Connection, args: &[&[u8]]) -> T {
    let mut c = cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        c.arg(*arg);
    }
    c.query(con)
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", String::from_utf8_lossy(&args.concat())))
}

fn qs<T: redis::FromRedisValue>(con: &mut Connection, line: &str) -> T {
    let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
    q(con, &args)
}

/// The error a command (given as words) answers; panics if it succeeds.
fn err(con: &mut Connection, line: &str) -> String {
    let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
    err_args(con, &args)
}

fn err_args(con: &mut Connection, args: &[&[u8]]) -> String {
    let mut c = cmd(std::str::from_utf8(args[0]).unwrap());
    for arg in &args[1..] {
        c.arg(*arg);
    }
    match c.query::<RV>(con) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
    }
}

/// Everything the string commands promise, in whichever protocol `con` speaks.
fn exercise_strings(con: &mut Connection, resp3: bool) {
    let _: () = qs(con, "FLUSHALL");
    // SET and its options.
    assert_eq!(qs::<String>(con, "SET k v1"), "OK");
    assert_eq!(qs::<Option<String>>(con, "GET k").as_deref(), Some("v1"));
    assert_eq!(
        qs::<RV>(con, "SET k v2 NX"),
        RV::Nil,
        "NX on an existing key"
    );
    assert_eq!(qs::<RV>(con, "SET fresh v NX"), RV::Okay);
    assert_eq!(
        qs::<RV>(con, "SET missing v XX"),
        RV::Nil,
        "XX on a missing key"
    );
    assert_eq!(qs::<i64>(con, "EXISTS missing"), 0);
    assert_eq!(qs::<RV>(con, "SET k v3 XX"), RV::Okay);
    assert_eq!(
        qs::<Option<String>>(con, "SET k v4 GET").as_deref(),
        Some("v3")
    );
    assert_eq!(qs::<Option<String>>(con, "SET nokey x GET"), None);
    assert_eq!(qs::<String>(con, "SET k v5 EX 100"), "OK");
    let ttl: i64 = qs(con, "TTL k");
    assert!((99..=100).contains(&ttl), "TTL after EX 100: {ttl}");
    assert_eq!(qs::<String>(con, "SET k v6 PX 100000"), "OK");
    let pttl: i64 = qs(con, "PTTL k");
    assert!(
        (99_000..=100_000).contains(&pttl),
        "PTTL after PX 100000: {pttl}"
    );
    assert_eq!(qs::<String>(con, "SET k v7 KEEPTTL"), "OK");
    let pttl: i64 = qs(con, "PTTL k");
    assert!(pttl > 90_000, "KEEPTTL keeps the TTL: {pttl}");
    assert_eq!(qs::<String>(con, "SET k v8"), "OK");
    assert_eq!(qs::<i64>(con, "TTL k"), -1, "a plain SET clears the TTL");
    assert_eq!(qs::<i64>(con, "TTL missing"), -2);
    assert!(err(con, "SET k v EX 0").contains("invalid expire time"));
    assert!(err(con, "SET k v NX XX").contains("syntax error"));
    // MSET / MGET.
    assert_eq!(qs::<String>(con, "MSET a 1 b 2 c 3"), "OK");
    let values: Vec<Option<String>> = qs(con, "MGET a b nothing c");
    assert_eq!(
        values,
        vec![Some("1".into()), Some("2".into()), None, Some("3".into())]
    );
    // The INCR family.
    assert_eq!(qs::<i64>(con, "INCR counter"), 1);
    assert_eq!(qs::<i64>(con, "INCRBY counter 41"), 42);
    assert_eq!(qs::<i64>(con, "DECR counter"), 41);
    assert_eq!(qs::<i64>(con, "DECRBY counter 50"), -9);
    assert_eq!(qs::<String>(con, "INCRBYFLOAT counter 0.5"), "-8.5");
    assert_eq!(qs::<String>(con, "INCRBYFLOAT counter 10"), "1.5");
    assert_eq!(qs::<String>(con, "SET big 9223372036854775807"), "OK");
    assert!(err(con, "INCR big").contains("increment or decrement would overflow"));
    assert!(err(con, "INCR k").contains("value is not an integer or out of range"));
    assert!(err(con, "INCRBYFLOAT k 1").contains("value is not a valid float"));
    // APPEND, GETRANGE, SETRANGE.
    assert_eq!(qs::<i64>(con, "APPEND s Hello"), 5);
    assert_eq!(qs::<i64>(con, "APPEND s World"), 10);
    assert_eq!(qs::<String>(con, "GETRANGE s 0 4"), "Hello");
    assert_eq!(qs::<String>(con, "GETRANGE s -5 -1"), "World");
    assert_eq!(qs::<String>(con, "GETRANGE s 100 200"), "");
    assert_eq!(qs::<i64>(con, "SETRANGE s 5 ,"), 10);
    assert_eq!(qs::<String>(con, "GET s"), "Hello,orld");
    assert_eq!(qs::<i64>(con, "SETRANGE padded 3 xy"), 5);
    assert_eq!(qs::<Vec<u8>>(con, "GET padded"), b"\0\0\0xy");
    assert_eq!(qs::<i64>(con, "STRLEN padded"), 5);
    // GETEX and GETDEL.
    assert_eq!(qs::<String>(con, "GETEX s EX 50"), "Hello,orld");
    let ttl: i64 = qs(con, "TTL s");
    assert!((49..=50).contains(&ttl), "GETEX EX 50: {ttl}");
    assert_eq!(qs::<String>(con, "GETEX s PERSIST"), "Hello,orld");
    assert_eq!(qs::<i64>(con, "TTL s"), -1);
    assert_eq!(qs::<Option<String>>(con, "GETEX nothing"), None);
    assert_eq!(
        qs::<Option<String>>(con, "GETDEL s").as_deref(),
        Some("Hello,orld")
    );
    assert_eq!(qs::<Option<String>>(con, "GETDEL s"), None);
    assert_eq!(qs::<i64>(con, "EXISTS s"), 0);
    // Reply shapes that differ between the protocols.
    let config: RV = qs(con, "CONFIG GET maxmemory");
    if resp3 {
        assert!(
            matches!(config, RV::Map(ref m) if m.len() == 1),
            "{config:?}"
        );
    } else {
        assert!(
            matches!(config, RV::Array(ref a) if a.len() == 2),
            "{config:?}"
        );
    }
    assert_eq!(qs::<RV>(con, "GET nothing"), RV::Nil);
}

#[test]
fn string_commands_in_resp2() {
    let _gate = gate();
    let node = Node::start();
    exercise_strings(&mut node.con_with(false), false);
}

#[test]
fn string_commands_in_resp3() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con_with(true);
    let hello: RV = qs(&mut con, "HELLO 3");
    assert!(
        matches!(hello, RV::Map(_)),
        "HELLO 3 answers a map: {hello:?}"
    );
    exercise_strings(&mut con, true);
}

#[test]
fn keys_expire_on_time_and_persist_keeps_them() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    assert_eq!(qs::<String>(&mut con, "SET short v PX 100"), "OK");
    assert_eq!(qs::<String>(&mut con, "SET kept v PX 100"), "OK");
    assert_eq!(qs::<i64>(&mut con, "PERSIST kept"), 1);
    assert_eq!(
        qs::<i64>(&mut con, "PERSIST kept"),
        0,
        "no TTL left to remove"
    );
    assert_eq!(qs::<i64>(&mut con, "TTL kept"), -1);
    let started = Instant::now();
    let gone = eventually(Duration::from_secs(2), Duration::from_millis(10), || {
        qs::<Option<String>>(&mut con, "GET short").is_none()
    });
    assert!(gone, "a PX 100 key still readable after 2 s");
    assert!(
        started.elapsed() >= Duration::from_millis(80),
        "expired too early"
    );
    assert_eq!(qs::<i64>(&mut con, "EXISTS short"), 0);
    assert_eq!(qs::<i64>(&mut con, "TTL short"), -2);
    assert_eq!(
        qs::<String>(&mut con, "GET kept"),
        "v",
        "PERSIST keeps the key"
    );
    // EXPIRE on an existing key, then PEXPIRE in the past deletes it.
    assert_eq!(qs::<i64>(&mut con, "EXPIRE kept 100"), 1);
    assert_eq!(qs::<i64>(&mut con, "PEXPIREAT kept 1"), 1);
    assert_eq!(qs::<i64>(&mut con, "EXISTS kept"), 0);
}

#[test]
fn del_exists_keys_and_a_full_scan_of_10k_keys() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let mut pipe = redis::pipe();
    for i in 0..10_000 {
        pipe.cmd("SET").arg(format!("scan:{i}")).arg(i).ignore();
    }
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("other:{i}")).arg(i).ignore();
    }
    let _: () = pipe.query(&mut con).unwrap();
    assert_eq!(qs::<i64>(&mut con, "DBSIZE"), 10_100);
    assert_eq!(qs::<Vec<String>>(&mut con, "KEYS other:*").len(), 100);
    assert_eq!(qs::<Vec<String>>(&mut con, "KEYS scan:*").len(), 10_000);

    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    let mut rounds = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("scan:*")
            .arg("COUNT")
            .arg(100)
            .query(&mut con)
            .unwrap();
        for key in keys {
            assert!(key.starts_with("scan:"), "MATCH let {key} through");
            seen.insert(key);
        }
        cursor = next;
        rounds += 1;
        if cursor == 0 {
            break;
        }
        assert!(rounds < 100_000, "SCAN never finished");
    }
    assert_eq!(
        seen.len(),
        10_000,
        "SCAN must return every key at least once"
    );

    assert_eq!(
        qs::<i64>(&mut con, "EXISTS scan:1 scan:1 scan:2 nothing"),
        3,
        "EXISTS counts repeats"
    );
    assert_eq!(qs::<i64>(&mut con, "DEL scan:1 scan:2 nothing"), 2);
    assert_eq!(qs::<i64>(&mut con, "UNLINK scan:3"), 1);
    assert_eq!(qs::<i64>(&mut con, "DBSIZE"), 10_097);
}

#[test]
fn rename_copy_dbsize_and_flushall() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let _: () = qs(&mut con, "SET a 1");
    let _: () = qs(&mut con, "SET b 2");
    assert_eq!(qs::<String>(&mut con, "SET ttl 3 EX 100"), "OK");
    assert_eq!(qs::<String>(&mut con, "RENAME a a2"), "OK");
    assert_eq!(qs::<Option<String>>(&mut con, "GET a"), None);
    assert_eq!(qs::<String>(&mut con, "GET a2"), "1");
    assert!(err(&mut con, "RENAME nothing x").contains("no such key"));
    assert_eq!(qs::<i64>(&mut con, "RENAMENX a2 b"), 0);
    assert_eq!(qs::<i64>(&mut con, "COPY a2 c"), 1);
    assert_eq!(
        qs::<i64>(&mut con, "COPY a2 b"),
        0,
        "COPY does not overwrite"
    );
    assert_eq!(qs::<i64>(&mut con, "COPY a2 b REPLACE"), 1);
    assert_eq!(qs::<String>(&mut con, "GET b"), "1");
    assert_eq!(qs::<i64>(&mut con, "COPY ttl ttl2"), 1);
    let ttl: i64 = qs(&mut con, "TTL ttl2");
    assert!((99..=100).contains(&ttl), "COPY keeps the TTL: {ttl}");
    assert_eq!(qs::<String>(&mut con, "RENAME ttl ttl3"), "OK");
    assert!(qs::<i64>(&mut con, "TTL ttl3") > 0, "RENAME keeps the TTL");
    assert_eq!(qs::<i64>(&mut con, "DBSIZE"), 5);
    assert_eq!(qs::<String>(&mut con, "FLUSHALL"), "OK");
    assert_eq!(qs::<i64>(&mut con, "DBSIZE"), 0);
    assert_eq!(qs::<String>(&mut con, "FLUSHDB"), "OK");
}

#[test]
fn keys_and_values_are_binary_safe() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let reversed: Vec<u8> = every_byte.iter().rev().copied().collect();
    let _: () = q(&mut con, &[b"SET", &every_byte, &reversed]);
    assert_eq!(q::<Vec<u8>>(&mut con, &[b"GET", &every_byte]), reversed);
    let keys: Vec<Vec<u8>> = qs(&mut con, "KEYS *");
    assert_eq!(keys, vec![every_byte.clone()]);
    let crlf = b"line1\r\nline2\r\n\r\n*1\r\n$4\r\nPING\r\n".to_vec();
    let _: () = q(&mut con, &[b"SET", b"k\r\n", &crlf]);
    assert_eq!(q::<Vec<u8>>(&mut con, &[b"GET", b"k\r\n"]), crlf);
    assert_eq!(
        q::<i64>(&mut con, &[b"APPEND", b"k\r\n", b"\0"]),
        crlf.len() as i64 + 1
    );
    // Every single byte as a key of its own, and as its value.
    let mut mset = cmd("MSET");
    for b in 0..=255u8 {
        mset.arg(&[b][..]).arg(&[b, b][..]);
    }
    let _: () = mset.query(&mut con).unwrap();
    let mut mget = cmd("MGET");
    for b in 0..=255u8 {
        mget.arg(&[b][..]);
    }
    let values: Vec<Vec<u8>> = mget.query(&mut con).unwrap();
    for (b, value) in (0..=255u8).zip(values) {
        assert_eq!(value, vec![b, b]);
    }
    assert_eq!(qs::<i64>(&mut con, "DBSIZE"), 2 + 256);
}

#[test]
fn a_ten_megabyte_value_round_trips() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let value = Rng::new(10).bytes(10 * 1024 * 1024);
    let _: () = q(&mut con, &[b"SET", b"huge", &value]);
    assert_eq!(
        q::<i64>(&mut con, &[b"STRLEN", b"huge"]),
        value.len() as i64
    );
    let back: Vec<u8> = q(&mut con, &[b"GET", b"huge"]);
    assert!(back == value, "the 10 MB value came back different");
    let tail: Vec<u8> = qs(&mut con, "GETRANGE huge -3 -1");
    assert_eq!(tail, value[value.len() - 3..]);
    assert_eq!(
        qs::<String>(&mut con, "PING"),
        "PONG",
        "the connection goes on"
    );
}

#[test]
fn a_pipeline_of_10k_commands_gets_every_reply_in_order() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let mut pipe = redis::pipe();
    for i in 0..10_000u64 {
        match i % 4 {
            0 => pipe.cmd("SET").arg(format!("p:{i}")).arg(i),
            1 => pipe.cmd("GET").arg(format!("p:{}", i - 1)),
            2 => pipe.cmd("INCR").arg("p:counter"),
            _ => pipe.cmd("ECHO").arg(format!("echo {i}")),
        };
    }
    let replies: Vec<RV> = pipe.query(&mut con).unwrap();
    assert_eq!(replies.len(), 10_000);
    for (i, reply) in replies.iter().enumerate() {
        let expected = match i % 4 {
            0 => RV::Okay,
            1 => RV::BulkString((i - 1).to_string().into_bytes()),
            2 => RV::Int(i as i64 / 4 + 1),
            _ => RV::BulkString(format!("echo {i}").into_bytes()),
        };
        assert_eq!(reply, &expected, "reply {i}");
    }
}

#[test]
fn many_concurrent_clients_each_see_their_own_keys() {
    let _gate = gate();
    let node = Node::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(concurrent_clients(node.client(false)));
    let mut con = node.con();
    assert_eq!(qs::<i64>(&mut con, "DBSIZE"), 32 * 501);
}

/// 32 tasks, each with its own connection, 500 SET/GET/INCR rounds each on its own keys.
async fn concurrent_clients(client: redis::Client) {
    let mut tasks = Vec::new();
    for t in 0..32u64 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut con = client.get_multiplexed_async_connection().await.unwrap();
            for i in 0..500u64 {
                let key = format!("c{t}:{i}");
                let value = format!("value of {t}/{i}");
                let (ok, got, n): (String, String, u64) = redis::pipe()
                    .cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .cmd("GET")
                    .arg(&key)
                    .cmd("INCR")
                    .arg(format!("c{t}:count"))
                    .query_async(&mut con)
                    .await
                    .unwrap();
                assert_eq!(
                    (ok.as_str(), got.as_str(), n),
                    ("OK", value.as_str(), i + 1)
                );
            }
            let keys: Vec<String> = (0..500).map(|i| format!("c{t}:{i}")).collect();
            let values: Vec<String> = cmd("MGET").arg(&keys).query_async(&mut con).await.unwrap();
            for (i, value) in values.iter().enumerate() {
                assert_eq!(value, &format!("value of {t}/{i}"), "task {t} key {i}");
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client task failed");
    }
}

#[test]
fn client_setname_getname_list_and_kill() {
    let _gate = gate();
    let node = Node::start();
    let mut victim = node.con();
    let mut admin = node.con();
    assert_eq!(qs::<Option<String>>(&mut victim, "CLIENT GETNAME"), None);
    assert_eq!(qs::<String>(&mut victim, "CLIENT SETNAME victim-1"), "OK");
    assert_eq!(qs::<String>(&mut victim, "CLIENT GETNAME"), "victim-1");
    assert!(
        err_args(&mut victim, &[b"CLIENT", b"SETNAME", b"bad name"])
            .contains("cannot contain spaces")
    );
    let id: i64 = qs(&mut victim, "CLIENT ID");
    let list: String = qs(&mut admin, "CLIENT LIST");
    let line = list
        .lines()
        .find(|l| l.contains("name=victim-1"))
        .unwrap_or_else(|| panic!("CLIENT LIST lacks the named client:\n{list}"));
    assert!(line.starts_with(&format!("id={id} ")), "{line}");
    assert!(
        line.contains(" cmd=client|id "),
        "last command shown: {line}"
    );
    assert_eq!(list.lines().count(), 2, "{list}");
    // Asked on `admin`: a connection opened just for INFO might still be closing on the
    // server when the SKIPME kill below counts clients.
    let info = common::parse_info(qs::<String>(&mut admin, "INFO clients").as_bytes());
    assert_eq!(info["connected_clients"], "2");

    assert_eq!(qs::<i64>(&mut admin, &format!("CLIENT KILL ID {id}")), 1);
    assert_eq!(qs::<i64>(&mut admin, &format!("CLIENT KILL ID {id}")), 0);
    let after: RedisResult<String> = cmd("PING").query(&mut victim);
    assert!(
        after.is_err(),
        "a killed client's next command must fail: {after:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), Duration::from_millis(10), || {
            !qs::<String>(&mut admin, "CLIENT LIST").contains("victim-1")
        }),
        "a killed client must leave CLIENT LIST"
    );
    // The old form, by address; and SKIPME.
    let mut other = node.raw();
    assert_eq!(common::text(&other.cmd(&[b"PING"])), "PONG");
    let addr = other.stream.local_addr().unwrap().to_string();
    assert_eq!(
        qs::<String>(&mut admin, &format!("CLIENT KILL {addr}")),
        "OK"
    );
    other.assert_closed(Duration::from_secs(2), "CLIENT KILL addr");
    assert!(err(&mut admin, "CLIENT KILL 127.0.0.1:1").contains("No such client"));
    assert_eq!(qs::<i64>(&mut admin, "CLIENT KILL SKIPME yes"), 0);
    assert_eq!(qs::<String>(&mut admin, "PING"), "PONG");
}

#[test]
fn info_fields_follow_what_happens() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let _extra = node.con();
    let before = node.info();
    let n = |info: &std::collections::HashMap<String, String>, k: &str| -> u64 {
        info[k].parse().unwrap()
    };
    let _: () = qs(&mut con, "SET present v");
    for _ in 0..3 {
        let _: Option<String> = qs(&mut con, "GET present");
    }
    for _ in 0..2 {
        let _: Option<String> = qs(&mut con, "GET absent");
    }
    let after = node.info();
    assert_eq!(n(&after, "keyspace_hits") - n(&before, "keyspace_hits"), 3);
    assert_eq!(
        n(&after, "keyspace_misses") - n(&before, "keyspace_misses"),
        2
    );
    assert_eq!(n(&after, "connected_clients"), 3, "two + the INFO one");
    // 6 commands, plus the previous INFO (counted once it has run).
    let processed = n(&after, "total_commands_processed") - n(&before, "total_commands_processed");
    assert_eq!(processed, 7, "total_commands_processed");
    assert!(after.contains_key("used_memory"));
    assert!(after["db0"].starts_with("keys=1,"), "{}", after["db0"]);
}

#[test]
fn config_set_then_get() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    assert_eq!(qs::<String>(&mut con, "CONFIG SET maxmemory 50mb"), "OK");
    let got: Vec<String> = qs(&mut con, "CONFIG GET maxmemory");
    assert_eq!(got, vec!["maxmemory".to_string(), (50 << 20).to_string()]);
    assert_eq!(node.info()["maxmemory"], (50u64 << 20).to_string());
    assert_eq!(
        qs::<String>(
            &mut con,
            "CONFIG SET maxmemory-policy volatile-ttl maxclients 77"
        ),
        "OK"
    );
    let got: Vec<String> = qs(&mut con, "CONFIG GET maxmemory-policy");
    assert_eq!(got[1], "volatile-ttl");
    assert_eq!(node.info()["maxclients"], "77");
    assert!(err(&mut con, "CONFIG SET maxmemory lots").contains("argument must be a memory value"));
    assert!(err(&mut con, "CONFIG SET port 1").contains("can't set immutable config"));
    assert!(err(&mut con, "CONFIG SET no-such-thing 1").contains("Unknown option"));
    let got: Vec<String> = qs(&mut con, "CONFIG GET maxmemory");
    assert_eq!(
        got[1],
        (50 << 20).to_string(),
        "a failed SET changes nothing"
    );
}

#[test]
fn slowlog_records_commands_over_the_threshold() {
    let _gate = gate();
    let node = Node::start();
    let mut con = node.con();
    let _: () = qs(&mut con, "CLIENT SETNAME slowpoke");
    assert_eq!(
        qs::<String>(&mut con, "CONFIG SET slowlog-log-slower-than 0"),
        "OK"
    );
    assert_eq!(qs::<String>(&mut con, "SLOWLOG RESET"), "OK");
    let _: () = qs(&mut con, "SET slow:key some-value");
    assert_eq!(
        qs::<String>(&mut con, "CONFIG SET slowlog-log-slower-than -1"),
        "OK"
    );
    let len: i64 = qs(&mut con, "SLOWLOG LEN");
    assert!(len >= 2, "SLOWLOG LEN {len}");
    let entries: Vec<RV> = qs(&mut con, "SLOWLOG GET 10");
    let set_entry = entries
        .iter()
        .find_map(|e| match e {
            RV::Array(fields)
                if matches!(&fields[3], RV::Array(args)
                    if args.first() == Some(&RV::BulkString(b"SET".to_vec()))) =>
            {
                Some(fields.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no SET in the slow log: {entries:?}"));
    assert_eq!(
        set_entry[3],
        RV::Array(vec![
            RV::BulkString(b"SET".to_vec()),
            RV::BulkString(b"slow:key".to_vec()),
            RV::BulkString(b"some-value".to_vec()),
        ])
    );
    assert!(matches!(set_entry[2], RV::Int(us) if us >= 0));
    assert_eq!(set_entry[5], RV::BulkString(b"slowpoke".to_vec()));
    assert_eq!(qs::<String>(&mut con, "SLOWLOG RESET"), "OK");
    assert_eq!(qs::<i64>(&mut con, "SLOWLOG LEN"), 0, "-1 records nothing");
}

#[test]
fn shutdown_stops_the_node() {
    let _gate = gate();
    let node = Node::start();
    let addr = node.addr();
    let mut con = node.con();
    let _: () = qs(&mut con, "SET k v");
    let server = node.into_server();
    let result: RedisResult<RV> = cmd("SHUTDOWN").arg("NOSAVE").query(&mut con);
    assert!(result.is_err(), "SHUTDOWN has no reply: {result:?}");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.wait();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("Server::wait returns after SHUTDOWN");
    assert!(
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the stopped node still accepts connections"
    );
}

/// Active expiry reclaims keys nobody reads, and then the node idles: the test measures the
/// whole process's CPU time, so it runs alone (see `common::gate`).
#[test]
fn active_expiry_reclaims_unread_keys_and_an_idle_node_sleeps() {
    let _alone = exclusive();
    let node = Node::start();
    let mut con = node.con();
    const KEYS: usize = 100_000;
    let mut loaded = 0;
    while loaded < KEYS {
        let mut pipe = redis::pipe();
        for i in loaded..(loaded + 10_000).min(KEYS) {
            pipe.cmd("SET")
                .arg(format!("exp:{i}"))
                .arg("v")
                .arg("PX")
                .arg(300)
                .ignore();
        }
        let _: () = pipe.query(&mut con).unwrap();
        loaded += 10_000;
    }
    let last_expiry = Instant::now() + Duration::from_millis(300);
    let dbsize = |con: &mut Connection| qs::<i64>(con, "DBSIZE");
    assert!(
        dbsize(&mut con) > 0,
        "the keys were all gone before they expired"
    );
    std::thread::sleep(last_expiry.saturating_duration_since(Instant::now()));
    let all_gone = eventually(Duration::from_secs(2), Duration::from_millis(20), || {
        dbsize(&mut con) == 0
    });
    assert!(
        all_gone,
        "{} of {KEYS} expired keys still held 2 s after they expired",
        dbsize(&mut con)
    );
    eprintln!(
        "all {KEYS} keys reclaimed {:?} after the last one expired",
        last_expiry.elapsed()
    );
    assert!(node.info_u64("expired_keys") >= KEYS as u64);
    drop(con);

    // Idle: nobody connected, nothing stored. Only the node's own threads run.
    std::thread::sleep(Duration::from_millis(200));
    let (user0, sys0) = shoal_server::cpu_seconds();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let (user1, sys1) = shoal_server::cpu_seconds();
    let wall = started.elapsed().as_secs_f64();
    let share = ((user1 - user0) + (sys1 - sys0)) / wall;
    eprintln!("idle node: {:.2}% of a core", share * 100.0);
    assert!(
        share < 0.05,
        "an idle node used {:.1}% of a core",
        share * 100.0
    );
}
