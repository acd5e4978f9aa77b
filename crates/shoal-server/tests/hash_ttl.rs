//! Hash field expiry (Redis 7.4's `HEXPIRE` family, `HTTL` family, `HPERSIST`; Redis 8.0's
//! `HGETDEL`, `HGETEX`, `HSETEX`) on one node. Redis 7.0, the differential suite's reference,
//! has none of them, so their replies, errors and events are checked here against Redis's
//! documentation: per-field codes, `FIELDS numfields` errors, fields reclaimed on access and
//! by the active expiry cycle, a hash whose last field expires disappearing, `hexpired`
//! events, and `WRONGTYPE`.

mod common;

use std::time::Duration;

use common::{Node, Raw, Value, eventually};

fn ints(values: &[i64]) -> Value {
    Value::Array(values.iter().map(|&n| Value::Int(n)).collect())
}

fn bulks(values: &[Option<&str>]) -> Value {
    Value::Array(
        values
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::Bulk(s.as_bytes().to_vec())))
            .collect(),
    )
}

fn err(line: &str) -> Value {
    Value::Error(line.as_bytes().to_vec())
}

fn run(raw: &mut Raw, line: &str) -> Value {
    raw.cmd_str(line)
}

#[test]
fn hexpire_answers_per_field_codes_under_its_conditions() {
    let node = Node::start();
    let mut r = node.raw();
    run(&mut r, "HSET h a 1 b 2 c 3");
    assert_eq!(run(&mut r, "HEXPIRE h 100 FIELDS 2 a nope"), ints(&[1, -2]));
    assert_eq!(
        run(&mut r, "HEXPIRE missing 100 FIELDS 2 a b"),
        ints(&[-2, -2])
    );
    // NX: only fields without an expiry; XX: only fields with one.
    assert_eq!(run(&mut r, "HEXPIRE h 200 NX FIELDS 2 a b"), ints(&[0, 1]));
    assert_eq!(run(&mut r, "HEXPIRE h 300 XX FIELDS 2 a c"), ints(&[1, 0]));
    // GT: no expiry counts as infinite (never greater); LT: no expiry is always greater.
    assert_eq!(run(&mut r, "HEXPIRE h 400 GT FIELDS 2 a c"), ints(&[1, 0]));
    assert_eq!(run(&mut r, "HEXPIRE h 50 LT FIELDS 2 a c"), ints(&[1, 1]));
    assert_eq!(
        run(&mut r, "HTTL h FIELDS 4 a b c nope"),
        ints(&[50, 200, 50, -2])
    );
    let pttl = run(&mut r, "HPTTL h FIELDS 1 a");
    assert!(
        matches!(&pttl, Value::Array(v) if matches!(v[0], Value::Int(n) if (49_000..=50_000).contains(&n))),
        "{pttl:?}"
    );
    // A time not in the future deletes the field: 2.
    assert_eq!(run(&mut r, "HPEXPIRE h 0 FIELDS 1 c"), ints(&[2]));
    assert_eq!(run(&mut r, "HEXPIREAT h 1 FIELDS 1 b"), ints(&[2]));
    assert_eq!(run(&mut r, "HGETALL h"), bulks(&[Some("a"), Some("1")]));
    let at = 4_000_000_000_000i64;
    assert_eq!(
        run(&mut r, &format!("HPEXPIREAT h {at} FIELDS 1 a")),
        ints(&[1])
    );
    assert_eq!(run(&mut r, "HPEXPIRETIME h FIELDS 1 a"), ints(&[at]));
    assert_eq!(run(&mut r, "HEXPIRETIME h FIELDS 1 a"), ints(&[at / 1000]));
    // The last field going takes the key.
    assert_eq!(run(&mut r, "HEXPIRE h 0 FIELDS 1 a"), ints(&[2]));
    assert_eq!(run(&mut r, "EXISTS h"), Value::Int(0));
}

#[test]
fn field_commands_check_their_arguments_as_redis_does() {
    let node = Node::start();
    let mut r = node.raw();
    run(&mut r, "HSET h a 1");
    run(&mut r, "SET s v");
    let fields = "ERR Mandatory argument FIELDS is missing or not at the right position";
    let count = "ERR Parameter `numFields` should be greater than 0";
    let mismatch = "ERR The `numfields` parameter must match the number of arguments";
    for (line, expected) in [
        ("HEXPIRE h 10 FIELD 1 a", err(fields)),
        ("HEXPIRE h 10 NX NX 1 a", err(fields)),
        ("HEXPIRE h 10 FIELDS 0 a", err(count)),
        ("HEXPIRE h 10 FIELDS x a", err(count)),
        ("HEXPIRE h 10 FIELDS 2 a", err(mismatch)),
        ("HEXPIRE h 10 FIELDS 1 a b", err(mismatch)),
        (
            "HEXPIRE h x FIELDS 1 a",
            err("ERR value is not an integer or out of range"),
        ),
        (
            "HEXPIRE h -1 FIELDS 1 a",
            err("ERR invalid expire time, must be >= 0"),
        ),
        (
            "HEXPIRE h 9223372036854775 FIELDS 1 a",
            err("ERR invalid expire time in 'hexpire' command"),
        ),
        (
            "HPEXPIREAT h 281474976710656 FIELDS 1 a",
            err("ERR invalid expire time in 'hpexpireat' command"),
        ),
        ("HTTL h FIELDS 2 a", err(mismatch)),
        ("HTTL h FOO 1 a", err(fields)),
        (
            "HPERSIST h FIELDS 0",
            err("ERR wrong number of arguments for 'hpersist' command"),
        ),
        ("HGETDEL h FIELDS -1 a", err(count)),
        (
            "HGETEX h EX 10 PERSIST FIELDS 1 a",
            err("ERR Only one of EX, PX, EXAT, PXAT or PERSIST arguments can be specified"),
        ),
        ("HGETEX h FOO FIELDS 1 a", err("ERR syntax error")),
        ("HSETEX h FIELDS 2 a 1", err(mismatch)),
        (
            "HSETEX h FNX FXX FIELDS 1 a 1",
            err("ERR Only one of FXX or FNX arguments can be specified"),
        ),
        (
            "HSETEX h EX 10 KEEPTTL FIELDS 1 a 1",
            err("ERR Only one of EX, PX, EXAT, PXAT or KEEPTTL arguments can be specified"),
        ),
        // WRONGTYPE comes before any argument error.
        (
            "HEXPIRE s 10 FIELDS 9 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
        (
            "HTTL s FIELDS 1 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
        (
            "HPERSIST s FIELDS 1 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
        (
            "HGETDEL s FIELDS 1 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
        (
            "HGETEX s FIELDS 1 a",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
        (
            "HSETEX s FIELDS 1 a 1",
            err("WRONGTYPE Operation against a key holding the wrong kind of value"),
        ),
    ] {
        assert_eq!(run(&mut r, line), expected, "{line}");
    }
    assert_eq!(run(&mut r, "HGETALL h"), bulks(&[Some("a"), Some("1")]));
}

#[test]
fn hpersist_hgetdel_hgetex_and_hsetex() {
    let node = Node::start();
    let mut r = node.raw();
    run(&mut r, "HSET h a 1 b 2 c 3");
    run(&mut r, "HEXPIRE h 100 FIELDS 1 a");
    assert_eq!(
        run(&mut r, "HPERSIST h FIELDS 3 a b nope"),
        ints(&[1, -1, -2])
    );
    assert_eq!(run(&mut r, "HPERSIST missing FIELDS 1 a"), ints(&[-2]));
    assert_eq!(run(&mut r, "HTTL h FIELDS 1 a"), ints(&[-1]));
    // HGETEX: values, and the fields' expiry changed.
    assert_eq!(
        run(&mut r, "HGETEX h EX 100 FIELDS 2 a nope"),
        bulks(&[Some("1"), None])
    );
    assert_eq!(run(&mut r, "HTTL h FIELDS 2 a b"), ints(&[100, -1]));
    assert_eq!(
        run(&mut r, "HGETEX h PERSIST FIELDS 1 a"),
        bulks(&[Some("1")])
    );
    assert_eq!(run(&mut r, "HTTL h FIELDS 1 a"), ints(&[-1]));
    assert_eq!(run(&mut r, "HGETEX h PX 0 FIELDS 1 b"), bulks(&[Some("2")]));
    assert_eq!(run(&mut r, "HEXISTS h b"), Value::Int(0));
    assert_eq!(run(&mut r, "HGETEX missing FIELDS 1 a"), bulks(&[None]));
    // HGETDEL: values, and the fields gone; the last one takes the key.
    assert_eq!(
        run(&mut r, "HGETDEL h FIELDS 2 c nope"),
        bulks(&[Some("3"), None])
    );
    assert_eq!(run(&mut r, "HGETDEL h FIELDS 1 a"), bulks(&[Some("1")]));
    assert_eq!(run(&mut r, "EXISTS h"), Value::Int(0));
    // HSETEX: 1 when the fields were set, 0 when FNX/FXX refused all of them.
    assert_eq!(
        run(&mut r, "HSETEX n FXX EX 100 FIELDS 1 a 1"),
        Value::Int(0)
    );
    assert_eq!(run(&mut r, "EXISTS n"), Value::Int(0));
    assert_eq!(
        run(&mut r, "HSETEX n FNX EX 100 FIELDS 2 a 1 b 2"),
        Value::Int(1)
    );
    assert_eq!(run(&mut r, "HTTL n FIELDS 2 a b"), ints(&[100, 100]));
    assert_eq!(run(&mut r, "HSETEX n FNX FIELDS 2 a 9 c 3"), Value::Int(0));
    assert_eq!(run(&mut r, "HSETEX n KEEPTTL FIELDS 1 a 10"), Value::Int(1));
    assert_eq!(run(&mut r, "HTTL n FIELDS 1 a"), ints(&[100]));
    assert_eq!(run(&mut r, "HSETEX n FXX FIELDS 1 a 11"), Value::Int(1));
    assert_eq!(
        run(&mut r, "HTTL n FIELDS 1 a"),
        ints(&[-1]),
        "without KEEPTTL the TTL goes"
    );
    // HSET on a field with an expiry clears it; HINCRBY keeps it.
    run(&mut r, "HEXPIRE n 100 FIELDS 2 a b");
    run(&mut r, "HSET n a 1");
    run(&mut r, "HINCRBY n b 1");
    assert_eq!(run(&mut r, "HTTL n FIELDS 2 a b"), ints(&[-1, 100]));
    assert_eq!(run(&mut r, "HGET n b"), Value::Bulk(b"3".to_vec()));
}

#[test]
fn expired_fields_are_reclaimed_on_access_and_actively() {
    let node = Node::start();
    let mut r = node.raw();
    // On access: the field is gone at once, the hash keeps its other fields.
    run(&mut r, "HSET h a 1 b 2");
    run(&mut r, "HPEXPIRE h 30 FIELDS 1 a");
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(run(&mut r, "HGETALL h"), bulks(&[Some("b"), Some("2")]));
    assert_eq!(run(&mut r, "HLEN h"), Value::Int(1));
    // Actively, in both encodings: hashes nobody reads lose their expired fields, and a
    // hash whose last field expired goes (DBSIZE does not look at the fields).
    run(&mut r, "FLUSHALL");
    for i in 0..20 {
        run(&mut r, &format!("HSET small{i} a 1 b 2"));
        run(&mut r, &format!("HPEXPIRE small{i} 400 FIELDS 2 a b"));
    }
    let mut big = String::from("HSET big");
    for i in 0..600 {
        big.push_str(&format!(" f{i} v"));
    }
    run(&mut r, &big);
    assert_eq!(
        run(&mut r, "OBJECT ENCODING big"),
        Value::Bulk(b"hashtable".to_vec())
    );
    let mut expire = String::from("HPEXPIRE big 400 FIELDS 300");
    for i in 0..300 {
        expire.push_str(&format!(" f{i}"));
    }
    run(&mut r, &expire);
    assert_eq!(run(&mut r, "DBSIZE"), Value::Int(21));
    let before = node.info_u64("used_memory");
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(20), || {
            r.cmd_str("DBSIZE") == Value::Int(1)
        }),
        "the expired hashes were not reclaimed"
    );
    let shared = node.shared().clone();
    assert!(eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            shared
                .store
                .hash_read(b"big", |h| h.map_or(0, |h| h.len()))
                .unwrap()
                == 300
        }
    ));
    assert!(node.info_u64("used_memory") < before);
}

#[test]
fn field_expiry_sends_redis_events() {
    let node = Node::start();
    let mut r = node.raw();
    run(&mut r, "CONFIG SET notify-keyspace-events KEA");
    let mut sub = node.raw();
    sub.cmd_str("PSUBSCRIBE __keyevent@0__:*");
    let event = |sub: &mut Raw| -> String {
        match sub.try_reply(Duration::from_secs(5)).unwrap() {
            Some(Value::Array(items)) => common::text(&items[2]),
            other => panic!("no event: {other:?}"),
        }
    };
    run(&mut r, "HSET h a 1 b 2");
    assert_eq!(event(&mut sub), "__keyevent@0__:hset");
    run(&mut r, "HEXPIRE h 100 FIELDS 1 a");
    assert_eq!(event(&mut sub), "__keyevent@0__:hexpire");
    run(&mut r, "HPERSIST h FIELDS 1 a");
    assert_eq!(event(&mut sub), "__keyevent@0__:hpersist");
    run(&mut r, "HPEXPIRE h 20 FIELDS 2 a b");
    assert_eq!(event(&mut sub), "__keyevent@0__:hexpire");
    // Both fields expire; the active cycle reclaims them: hexpired, then the key's del.
    assert_eq!(event(&mut sub), "__keyevent@0__:hexpired");
    assert_eq!(event(&mut sub), "__keyevent@0__:del");
    run(&mut r, "HSET g a 1");
    assert_eq!(event(&mut sub), "__keyevent@0__:hset");
    run(&mut r, "HGETDEL g FIELDS 1 a");
    assert_eq!(event(&mut sub), "__keyevent@0__:hgetdel");
    assert_eq!(event(&mut sub), "__keyevent@0__:del");
}
