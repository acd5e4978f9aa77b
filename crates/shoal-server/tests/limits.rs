//! Bad input gets a clear error and loses nothing; a node never panics on input; every limit
//! holds. Raw TCP where a client library would get in the way.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Closed, Node, Raw, Rng, Value, eventually, frame, text};
use shoal_server::Config;
use shoal_store::EvictionPolicy;

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";
const MAX_CLIENTS: &str = "ERR max number of clients reached";

fn ok(value: Value) {
    assert_eq!(value, Value::Simple(b"OK".to_vec()));
}

fn error_text(value: &Value) -> String {
    match value {
        Value::Error(e) => String::from_utf8_lossy(e).into_owned(),
        other => panic!("expected an error, got {other:?}"),
    }
}

/// A numeric field of `INFO <section>` read over `raw`.
fn info_field(raw: &mut Raw, section: &str, field: &str) -> u64 {
    let reply = raw.cmd(&[b"INFO", section.as_bytes()]);
    let (Value::Bulk(body) | Value::Verbatim(_, body)) = &reply else {
        panic!("INFO answered {reply:?}");
    };
    common::parse_info(body)
        .get(field)
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
        .parse()
        .unwrap()
}

/// A client that holds data and checks, after each bad client, that it still works and its
/// data is intact.
struct Witness {
    raw: Raw,
}

impl Witness {
    fn new(node: &Node) -> Witness {
        let mut raw = node.raw();
        ok(raw.cmd(&[b"SET", b"witness", b"precious \r\n data"]));
        ok(raw.cmd(&[b"SET", b"witness:ttl", b"v", b"EX", b"1000"]));
        Witness { raw }
    }

    fn check(&mut self, after: &str) {
        let started = Instant::now();
        assert_eq!(
            self.raw.cmd(&[b"GET", b"witness"]),
            Value::Bulk(b"precious \r\n data".to_vec()),
            "the witness's data after {after}"
        );
        assert_eq!(self.raw.cmd(&[b"EXISTS", b"witness:ttl"]), Value::Int(1));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the witness waited {:?} after {after}",
            started.elapsed()
        );
    }
}

#[test]
fn malformed_frames_get_a_protocol_error_and_are_disconnected() {
    let node = Node::start();
    let mut witness = Witness::new(&node);
    let mut long_count = b"*".to_vec();
    long_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let mut long_bulk_count = b"*1\r\n$".to_vec();
    long_bulk_count.extend(std::iter::repeat_n(b'1', 70 * 1024));
    let long_inline = vec![b'a'; 70 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "negative bulk length",
            b"*1\r\n$-5\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "huge bulk length",
            b"*2\r\n$3\r\nGET\r\n$99999999999\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "bulk length not a number",
            b"*1\r\n$abc\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "bulk length with a plus",
            b"*1\r\n$+3\r\nGET\r\n".to_vec(),
            "invalid bulk length",
        ),
        (
            "huge multibulk count",
            b"*99999999999\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "multibulk count over 2^31",
            b"*3000000000\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "multibulk count not a number",
            b"*x1\r\n".to_vec(),
            "invalid multibulk length",
        ),
        (
            "no dollar",
            b"*1\r\nPING\r\n".to_vec(),
            "expected '$', got 'P'",
        ),
        (
            "garbage in a frame",
            b"*2\r\n$3\r\nGET\r\n\x00\xff\xfe\r\n".to_vec(),
            "expected '$', got '\0'",
        ),
        (
            "unbalanced quotes",
            b"SET \"abc\r\n".to_vec(),
            "unbalanced quotes in request",
        ),
        ("too long inline", long_inline, "too big inline request"),
        (
            "too long multibulk count",
            long_count,
            "too big mbulk count string",
        ),
        (
            "too long bulk count",
            long_bulk_count,
            "too big bulk count string",
        ),
    ];
    for (what, bytes, message) in cases {
        let mut bad = node.raw();
        // A valid command first: it runs, and its reply comes before the error.
        bad.send(&frame(&[b"INCR", b"bad-client-commands"]));
        bad.send(&bytes);
        assert_eq!(bad.reply(), Value::Int(1), "{what}: the command before");
        assert_eq!(
            bad.reply(),
            Value::Error(format!("ERR Protocol error: {message}").into_bytes()),
            "{what}"
        );
        bad.assert_closed(Duration::from_secs(2), what);
        witness.check(what);
        assert_eq!(
            witness.raw.cmd(&[b"DEL", b"bad-client-commands"]),
            Value::Int(1)
        );
    }
    // Garbage that is a valid inline command is only an unknown command.
    let mut odd = node.raw();
    odd.send(b"\x01\x02 \xff\r\n");
    assert!(error_text(&odd.reply()).starts_with("ERR unknown command"));
    assert_eq!(
        text(&odd.cmd(&[b"PING"])),
        "PONG",
        "an unknown command keeps the connection"
    );
    assert_eq!(
        witness.raw.cmd(&[b"DBSIZE"]),
        Value::Int(2),
        "nothing else was written"
    );
}

#[test]
fn a_frame_split_byte_by_byte_runs_exactly_once() {
    let node = Node::start();
    let mut raw = node.raw();
    let mut value = b"v\r\n".to_vec();
    value.extend(0..=255u8);
    let mut bytes = frame(&[b"INCR", b"split"]);
    bytes.extend(frame(&[b"SET", b"split:value", &value]));
    bytes.extend(b"INCR split\r\n");
    for byte in &bytes {
        raw.stream.write_all(&[*byte]).unwrap();
        raw.stream.flush().unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(raw.reply(), Value::Int(1));
    ok(raw.reply());
    assert_eq!(raw.reply(), Value::Int(2));
    assert_eq!(raw.cmd(&[b"GET", b"split"]), Value::Bulk(b"2".to_vec()));
    assert_eq!(raw.cmd(&[b"GET", b"split:value"]), Value::Bulk(value));
    let (closed, extra) = raw.closed_within(Duration::from_millis(100));
    assert_eq!(
        (closed, extra),
        (Closed::No, 0),
        "exactly one reply per command"
    );
}

#[test]
fn ten_thousand_pipelined_commands_in_one_write_get_ten_thousand_replies_in_order() {
    let node = Node::start();
    let mut raw = node.raw();
    let mut bytes = Vec::new();
    for i in 0..10_000u32 {
        let key = format!("k{}", i / 3);
        let i_text = i.to_string();
        bytes.extend(match i % 3 {
            0 => frame(&[b"SET", key.as_bytes(), i_text.as_bytes()]),
            1 => frame(&[b"GET", key.as_bytes()]),
            _ => frame(&[b"INCR", b"counter"]),
        });
    }
    raw.send(&bytes);
    for i in 0..10_000u32 {
        let reply = raw.reply();
        let expected = match i % 3 {
            0 => Value::Simple(b"OK".to_vec()),
            1 => Value::Bulk((i - 1).to_string().into_bytes()),
            _ => Value::Int(i64::from(i / 3 + 1)),
        };
        assert_eq!(reply, expected, "reply {i}");
    }
}

#[test]
fn a_stalled_half_frame_blocks_nobody_and_completes_later() {
    let node = Node::start();
    let mut stalled = node.raw();
    stalled.send(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10\r\n01234");
    let mut other = node.raw();
    let started = Instant::now();
    for i in 0..200 {
        let key = format!("busy:{i}");
        ok(other.cmd(&[b"SET", key.as_bytes(), b"v"]));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "200 commands took {:?} next to a stalled client",
        started.elapsed()
    );
    assert_eq!(other.cmd(&[b"EXISTS", b"half"]), Value::Int(0));
    stalled.assert_open_and_quiet(Duration::from_millis(300), "a stalled client");
    let list = text(&other.cmd(&[b"CLIENT", b"LIST"]));
    assert_eq!(
        list.lines().count(),
        2,
        "the stalled client is still connected:\n{list}"
    );
    stalled.send(b"56789\r\n");
    ok(stalled.reply());
    assert_eq!(
        other.cmd(&[b"GET", b"half"]),
        Value::Bulk(b"0123456789".to_vec())
    );
}

#[test]
fn idle_clients_are_disconnected_after_the_timeout() {
    let node = Node::start();
    // Connected before the timeout is set: it must apply to clients already waiting.
    let mut idle = node.raw();
    assert_eq!(text(&idle.cmd(&[b"PING"])), "PONG");
    let mut half = node.raw();
    half.send(b"*2\r\n$3\r\nGET\r\n");
    let mut active = node.raw();
    ok(active.cmd(&[b"CONFIG", b"SET", b"timeout", b"1"]));
    let set_at = Instant::now();
    // Wait for the idle one to go, while the active one keeps talking (it is never idle).
    let mut idle_closed_after = None;
    let mut half_closed = false;
    while set_at.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            text(&active.cmd(&[b"PING"])),
            "PONG",
            "an active client was cut off"
        );
        if idle_closed_after.is_none()
            && idle.closed_within(Duration::from_millis(100)).0 == Closed::Yes
        {
            idle_closed_after = Some(set_at.elapsed());
        }
        if !half_closed {
            half_closed = half.closed_within(Duration::from_millis(100)).0 == Closed::Yes;
        }
        if idle_closed_after.is_some() && half_closed && set_at.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let waited = idle_closed_after.expect("an idle client outlived timeout 1");
    assert!(
        waited >= Duration::from_millis(900) && waited <= Duration::from_secs(3),
        "closed after {waited:?} with timeout 1"
    );
    assert!(
        half_closed,
        "an idle client with half a frame outlived timeout 1"
    );
    ok(active.cmd(&[b"CONFIG", b"SET", b"timeout", b"0"]));
    let mut late = node.raw();
    assert_eq!(text(&late.cmd(&[b"PING"])), "PONG");
    late.assert_open_and_quiet(Duration::from_millis(1500), "timeout 0");
}

#[test]
fn maxclients_refuses_the_extra_connection_only() {
    let node = Node::start();
    let mut admin = node.raw();
    ok(admin.cmd(&[b"CONFIG", b"SET", b"maxclients", b"5"]));
    let mut clients: Vec<Raw> = (0..4).map(|_| node.raw()).collect();
    for c in &mut clients {
        assert_eq!(text(&c.cmd(&[b"PING"])), "PONG");
    }
    let mut extra = node.raw();
    assert_eq!(extra.reply(), Value::Error(MAX_CLIENTS.as_bytes().to_vec()));
    extra.assert_closed(Duration::from_secs(2), "the refused connection");
    for c in &mut clients {
        assert_eq!(
            text(&c.cmd(&[b"PING"])),
            "PONG",
            "existing clients keep working"
        );
    }
    assert_eq!(info_field(&mut admin, "stats", "rejected_connections"), 1);
    assert_eq!(info_field(&mut admin, "clients", "connected_clients"), 5);

    // One leaves: its slot is free again.
    drop(clients.pop());
    assert!(
        eventually(Duration::from_secs(2), Duration::from_millis(10), || {
            info_field(&mut admin, "clients", "connected_clients") == 4
        }),
        "a closed connection must be unregistered"
    );
    let mut again = node.raw();
    assert_eq!(
        text(&again.cmd(&[b"PING"])),
        "PONG",
        "a freed slot is reusable"
    );
    clients.push(again);

    // A burst never overshoots: with 2 of 5 slots taken, 20 connections at once get 3 slots.
    clients.truncate(1);
    assert!(
        eventually(Duration::from_secs(2), Duration::from_millis(10), || {
            info_field(&mut admin, "clients", "connected_clients") == 2
        }),
        "closed connections must be unregistered"
    );
    let mut burst: Vec<Raw> = (0..20).map(|_| node.raw()).collect();
    let mut served = 0;
    let mut refused = 0;
    for c in &mut burst {
        c.send(&frame(&[b"PING"]));
        match c.try_reply(Duration::from_secs(5)) {
            Ok(Some(Value::Simple(pong))) if pong == b"PONG" => served += 1,
            Ok(Some(Value::Error(e))) if e == MAX_CLIENTS.as_bytes() => refused += 1,
            Err(_) => refused += 1,
            other => panic!("unexpected answer in the burst: {other:?}"),
        }
    }
    assert_eq!((served, refused), (3, 17), "maxclients 5 with 2 connected");
    assert_eq!(info_field(&mut admin, "clients", "connected_clients"), 5);
    drop(burst);
    assert!(
        eventually(Duration::from_secs(2), Duration::from_millis(10), || {
            info_field(&mut admin, "clients", "connected_clients") == 2
        }),
        "refused and closed connections must not stay counted"
    );
}

#[test]
fn the_query_buffer_limit_cuts_off_a_frame_that_never_ends() {
    let node = Node::start();
    let mut witness = Witness::new(&node);
    ok(witness
        .raw
        .cmd(&[b"CONFIG", b"SET", b"client-query-buffer-limit", b"1mb"]));
    let mut greedy = node.raw();
    let greedy_addr = greedy.stream.local_addr().unwrap().to_string();
    // Claims a 500 MB value (under proto-max-bulk-len) and keeps sending.
    greedy.send(b"*3\r\n$3\r\nSET\r\n$6\r\ngreedy\r\n$524288000\r\n");
    let chunk = vec![b'x'; 64 * 1024];
    greedy.send(&chunk);
    // The node reserves no more room for the frame than the limit allows.
    let mut line = String::new();
    assert!(
        eventually(Duration::from_secs(2), Duration::from_millis(10), || {
            let list = text(&witness.raw.cmd(&[b"CLIENT", b"LIST"]));
            line = list
                .lines()
                .find(|l| l.contains(&format!("addr={greedy_addr} ")))
                .unwrap_or_default()
                .to_string();
            field(&line, "qbuf") > 0
        }),
        "the greedy client's input never showed in CLIENT LIST: {line}"
    );
    let reserved = field(&line, "rbs");
    assert!(
        reserved <= 2 * 1024 * 1024,
        "{reserved} bytes reserved for a frame under a 1mb limit: {line}"
    );
    let mut sent = chunk.len();
    let mut write_failed = false;
    while sent < 16 * 1024 * 1024 {
        if greedy.stream.write_all(&chunk).is_err() {
            write_failed = true;
            break;
        }
        sent += chunk.len();
    }
    if !write_failed {
        greedy.assert_closed(Duration::from_secs(2), "over the query buffer limit");
    }
    assert_eq!(
        info_field(
            &mut witness.raw,
            "stats",
            "client_query_buffer_limit_disconnections"
        ),
        1
    );
    witness.check("a client over the query buffer limit");
    assert_eq!(witness.raw.cmd(&[b"EXISTS", b"greedy"]), Value::Int(0));
    // Under the limit, a large value is fine.
    let value = vec![b'v'; 900 * 1024];
    ok(witness.raw.cmd(&[b"SET", b"fits", &value]));
}

/// `name=<number>` in a CLIENT LIST line.
fn field(line: &str, name: &str) -> usize {
    line.split(' ')
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Sends `count` GETs of `key` in one write without reading the replies.
fn pipeline_gets(node: &Node, key: &[u8], count: usize) -> Raw {
    let mut raw = node.raw();
    let one = frame(&[b"GET", key]);
    let bytes: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * count)
        .collect();
    raw.send(&bytes);
    raw
}

#[test]
fn output_buffer_limits_disconnect_clients_that_do_not_read() {
    let node = Node::start();
    let mut admin = node.raw();
    let value = Rng::new(1).bytes(100 * 1024);
    ok(admin.cmd(&[b"SET", b"big", &value]));
    let disconnections =
        |admin: &mut Raw| info_field(admin, "stats", "client_output_buffer_limit_disconnections");

    // No limit (the default): replies wait for the client, nothing is lost.
    let mut patient = pipeline_gets(&node, b"big", 400);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(disconnections(&mut admin), 0);
    for i in 0..400 {
        assert!(patient.reply() == Value::Bulk(value.clone()), "reply {i}");
    }

    // Hard limit.
    ok(admin.cmd(&[
        b"CONFIG",
        b"SET",
        b"client-output-buffer-limit",
        b"normal 1mb 0 0",
    ]));
    let mut greedy = pipeline_gets(&node, b"big", 400);
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(10), || {
            disconnections(&mut admin) == 1
        }),
        "a client over the hard output limit was not disconnected"
    );
    let (closed, received) = greedy.closed_within(Duration::from_secs(5));
    assert_eq!(closed, Closed::Yes);
    assert!(
        received < 400 * value.len(),
        "got every reply ({received} bytes)"
    );

    // Soft limit: over it for longer than its grace time.
    ok(admin.cmd(&[
        b"CONFIG",
        b"SET",
        b"client-output-buffer-limit",
        b"normal 0 512kb 1",
    ]));
    let started = Instant::now();
    let mut slow = pipeline_gets(&node, b"big", 400);
    assert!(
        eventually(Duration::from_secs(5), Duration::from_millis(10), || {
            disconnections(&mut admin) == 2
        }),
        "a client over the soft output limit was not disconnected"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "soft limit cut off after {waited:?}"
    );
    assert_eq!(slow.closed_within(Duration::from_secs(5)).0, Closed::Yes);

    // The node is healthy, and a client that reads is served.
    assert_eq!(text(&admin.cmd(&[b"PING"])), "PONG");
    assert!(admin.cmd(&[b"GET", b"big"]) == Value::Bulk(value.clone()));
    ok(admin.cmd(&[
        b"CONFIG",
        b"SET",
        b"client-output-buffer-limit",
        b"normal 64mb 0 0",
    ]));
    let mut reader = pipeline_gets(&node, b"big", 100);
    for _ in 0..100 {
        assert!(reader.reply() == Value::Bulk(value.clone()));
    }
    assert_eq!(disconnections(&mut admin), 2);
}

#[test]
fn proto_max_bulk_len_and_max_key_size() {
    let node = Node::start();
    let mut admin = node.raw();
    ok(admin.cmd(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"1mb"]));
    let mut big = node.raw();
    big.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1048577\r\n");
    assert_eq!(
        big.reply(),
        Value::Error(b"ERR Protocol error: invalid bulk length".to_vec())
    );
    big.assert_closed(Duration::from_secs(2), "a bulk over proto-max-bulk-len");
    let fits = vec![b'x'; 1024 * 1024];
    ok(admin.cmd(&[b"SET", b"k", &fits]));
    assert!(
        error_text(&admin.cmd(&[b"APPEND", b"k", b"y"])).contains("exceeds maximum allowed size"),
        "a string may not grow past proto-max-bulk-len"
    );
    let refused = error_text(&admin.cmd(&[b"CONFIG", b"SET", b"proto-max-bulk-len", b"10"]));
    assert!(
        refused.starts_with(
            "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len')"
        ),
        "{refused}"
    );

    ok(admin.cmd(&[b"CONFIG", b"SET", b"max-key-size", b"16"]));
    let reply = admin.cmd(&[b"SET", b"seventeen-bytes!!", b"v"]);
    assert_eq!(
        error_text(&reply),
        "ERR key is too large (max-key-size is 16 bytes)"
    );
    assert_eq!(admin.cmd(&[b"EXISTS", b"seventeen-bytes!!"]), Value::Int(0));
    ok(admin.cmd(&[b"SET", b"sixteen-bytes!!!", b"v"]));
    let reply = admin.cmd(&[b"MSET", b"a", b"1", b"seventeen-bytes!!", b"2"]);
    assert!(error_text(&reply).contains("max-key-size"));
    assert_eq!(
        admin.cmd(&[b"EXISTS", b"a"]),
        Value::Int(0),
        "MSET is all or nothing"
    );
    assert_eq!(text(&admin.cmd(&[b"PING"])), "PONG", "the connection stays");
}

/// Every command, with odd arguments: nothing may panic or close the connection.
#[test]
fn no_command_panics_or_drops_the_connection_on_odd_arguments() {
    let node = Node::start();
    let shared = node.shared().clone();
    // Commands that would end the test's own connection or node, change its limits, turn
    // the connection into a replica's stream (`PSYNC`) or a subscriber (whose commands answer
    // once per channel, and whose messages come unasked: tests/compat/pubsub.txt covers
    // them), or block it (`WAIT n 0` waits for replicas forever).
    let skip = [
        "subscribe",
        "psubscribe",
        "ssubscribe",
        "unsubscribe",
        "punsubscribe",
        "sunsubscribe",
        "shutdown",
        "quit",
        "client|kill",
        "config|set",
        "reset",
        "hello",
        "psync",
        "wait",
    ];
    let mut commands: Vec<Vec<&'static [u8]>> = Vec::new();
    for command in shoal_frontdoor::table().iter() {
        if command.subcommands.is_empty() {
            if !skip.contains(&command.spec.name) {
                commands.push(vec![command.spec.name.as_bytes()]);
            }
        } else {
            for sub in command.subcommands.iter() {
                if !skip.contains(&sub.spec.name) {
                    let (container, name) = sub.spec.name.split_once('|').unwrap();
                    commands.push(vec![container.as_bytes(), name.as_bytes()]);
                }
            }
        }
    }
    assert!(commands.len() > 50, "only {} commands", commands.len());
    let pool: Vec<&[u8]> = vec![
        b"k",
        b"n",
        b"f",
        b"t",
        b"missing",
        b"",
        b"0",
        b"1",
        b"-1",
        b"3",
        b"-100",
        b"100000",
        b"9223372036854775807",
        b"-9223372036854775808",
        b"18446744073709551616",
        b"4611686018427387904",
        b"-4611686018427387904",
        b"9223372036854775",
        b"1.5",
        b"-0",
        b"1e400",
        b"-1e400",
        b"nan",
        b"inf",
        b"-inf",
        b"+inf",
        b"0x10",
        b" 1",
        b"abc",
        b"\x00\xff\r\n",
        b"*",
        b"[",
        b"\\",
        b"?*[a-",
        b"EX",
        b"PX",
        b"EXAT",
        b"PXAT",
        b"NX",
        b"XX",
        b"GT",
        b"LT",
        b"GET",
        b"KEEPTTL",
        b"PERSIST",
        b"MATCH",
        b"COUNT",
        b"TYPE",
        b"ID",
        b"ADDR",
        b"SKIPME",
        b"REPLACE",
        b"SAMPLES",
        b"string",
        b"normal",
        b"no",
        b"yes",
        b"AUTH",
        b"SETNAME",
        b"default",
        b"2",
        b"3",
        b"maxmemory",
        b"*mem*",
        b"db",
    ];
    let mut rng = Rng::new(0x5EED);
    let mut raw = node.raw();
    let mut sent = 0;
    for round in 0..40 {
        // A `MULTI` sent earlier queues what follows (and `EXEC` ran the queue, which must
        // not panic either): end it, if one is open, before the round's keys are set.
        match raw.cmd(&[b"DISCARD"]) {
            Value::Simple(_) => {}
            Value::Error(e) => assert_eq!(e, b"ERR DISCARD without MULTI"),
            other => panic!("DISCARD: {other:?}"),
        }
        if round == 20 {
            // The second half in RESP3, whose replies are encoded differently.
            assert!(matches!(raw.cmd(&[b"HELLO", b"3"]), Value::Map(_)));
        }
        ok(raw.cmd(&[b"SET", b"k", b"abc"]));
        ok(raw.cmd(&[b"SET", b"n", b"10"]));
        ok(raw.cmd(&[b"SET", b"f", b"1.5"]));
        ok(raw.cmd(&[b"SET", b"t", b"v", b"EX", b"100"]));
        for prefix in &commands {
            let mut argv: Vec<&[u8]> = prefix.clone();
            for _ in 0..rng.below(7) {
                argv.push(pool[rng.below(pool.len())]);
            }
            raw.send(&frame(&argv));
            sent += 1;
            match raw.try_reply(Duration::from_secs(10)) {
                Ok(Some(Value::Error(e))) if e.starts_with(b"ERR internal error") => {
                    panic!(
                        "{:?} panicked the command (round {round})",
                        printable(&argv)
                    )
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("no reply to {:?}", printable(&argv)),
                Err(e) => panic!("{:?} closed the connection: {e}", printable(&argv)),
            }
        }
    }
    assert_eq!(
        shared
            .door
            .stats
            .command_panics
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert!(sent > 2000);
    assert_eq!(text(&node.raw().cmd(&[b"PING"])), "PONG");
}

fn printable(argv: &[&[u8]]) -> Vec<String> {
    argv.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Memory limits

const MAXMEMORY: u64 = 2 * 1024 * 1024;
const VALUE_LEN: usize = 1000;

fn memory_node(policy: EvictionPolicy) -> Node {
    Node::start_with(|c: &mut Config| {
        c.maxmemory = shoal_server::ByteSize(MAXMEMORY);
        c.maxmemory_policy = policy;
    })
}

fn used_memory(raw: &mut Raw) -> u64 {
    info_field(raw, "memory", "used_memory")
}

/// Writes `count` keys `prefix:i` (1000-byte values, `extra` arguments after the value) in
/// pipelined batches; after each batch, runs `between` and checks `used_memory` against
/// `maxmemory`. Returns the largest overshoot seen.
fn write_many(
    raw: &mut Raw,
    prefix: &str,
    count: usize,
    extra: impl Fn(usize) -> Vec<Vec<u8>>,
    mut between: impl FnMut(&mut Raw),
) -> u64 {
    let value = vec![b'v'; VALUE_LEN];
    let mut worst = 0;
    for batch in (0..count).collect::<Vec<_>>().chunks(100) {
        let mut bytes = Vec::new();
        for &i in batch {
            let key = format!("{prefix}:{i}");
            let extra = extra(i);
            let mut argv: Vec<&[u8]> = vec![b"SET", key.as_bytes(), &value];
            argv.extend(extra.iter().map(Vec::as_slice));
            bytes.extend(frame(&argv));
        }
        raw.send(&bytes);
        for &i in batch {
            let reply = raw.reply();
            assert_eq!(reply, Value::Simple(b"OK".to_vec()), "SET {prefix}:{i}");
        }
        between(raw);
        worst = worst.max(used_memory(raw).saturating_sub(MAXMEMORY));
    }
    worst
}

/// One entry's worth of slack: eviction runs before each write, as in Redis, so the last
/// write may leave `used_memory` over the limit by at most what it added.
const ONE_ENTRY: u64 = 2 * VALUE_LEN as u64;

fn dbsize(raw: &mut Raw) -> u64 {
    match raw.cmd(&[b"DBSIZE"]) {
        Value::Int(n) => n as u64,
        other => panic!("DBSIZE answered {other:?}"),
    }
}

fn exists(raw: &mut Raw, key: &str) -> bool {
    raw.cmd(&[b"EXISTS", key.as_bytes()]) == Value::Int(1)
}

/// Writes `count` small keys `prefix:i` in pipelined batches, with `extra` arguments.
fn write_small(raw: &mut Raw, prefix: &str, count: usize, extra: &[&[u8]]) {
    for batch in (0..count).collect::<Vec<_>>().chunks(1000) {
        let mut bytes = Vec::new();
        for &i in batch {
            let key = format!("{prefix}:{i}");
            let mut argv: Vec<&[u8]> = vec![b"SET", key.as_bytes(), b"0123456789abcdef"];
            argv.extend_from_slice(extra);
            bytes.extend(frame(&argv));
        }
        raw.send(&bytes);
        for _ in batch {
            ok(raw.reply());
        }
    }
}

/// The latency monitor's events, as `LATENCY LATEST` names them.
fn latency_events(raw: &mut Raw) -> Vec<String> {
    let Value::Array(events) = raw.cmd(&[b"LATENCY", b"LATEST"]) else {
        panic!("LATENCY LATEST");
    };
    events
        .iter()
        .map(|e| match e {
            Value::Array(fields) => text(&fields[0]),
            other => panic!("an event {other:?}"),
        })
        .collect()
}

/// Redis 7's latency events of background work: one round evicting tens of thousands of keys
/// (`maxmemory` cut to a sliver) and an active expiry cycle meeting as many expired keys each
/// take well over the 1 ms threshold, and `LATENCY LATEST` names them.
#[test]
fn slow_eviction_and_expiry_are_latency_events() {
    let node = Node::start();
    let mut raw = node.raw();
    ok(raw.cmd(&[b"CONFIG", b"SET", b"latency-monitor-threshold", b"1"]));
    write_small(&mut raw, "evict", 30_000, &[]);
    ok(raw.cmd(&[b"CONFIG", b"SET", b"maxmemory", b"256kb"]));
    // The next write makes room: one round evicts almost every key.
    ok(raw.cmd(&[b"SET", b"trigger", b"x"]));
    assert!(info_field(&mut raw, "stats", "evicted_keys") > 20_000);
    let events = latency_events(&mut raw);
    assert!(events.iter().any(|e| e == "eviction-cycle"), "{events:?}");
    let Value::Array(history) = raw.cmd(&[b"LATENCY", b"HISTORY", b"eviction-cycle"]) else {
        panic!("LATENCY HISTORY");
    };
    assert!(!history.is_empty());
    ok(raw.cmd(&[b"CONFIG", b"SET", b"maxmemory", b"0"]));
    ok(raw.cmd(&[b"FLUSHALL"]));

    // Keys that all expire at once: the cron's next cycles reclaim them.
    write_small(&mut raw, "expire", 30_000, &[b"PX", b"1"]);
    let seen = eventually(Duration::from_secs(10), Duration::from_millis(20), || {
        latency_events(&mut raw).iter().any(|e| e == "expire-cycle")
    });
    assert!(seen, "{:?}", latency_events(&mut raw));
    let doctor = text(&raw.cmd(&[b"LATENCY", b"DOCTOR"]));
    assert!(doctor.contains("expire-cycle: "), "{doctor}");
    assert!(
        doctor.contains("- Sudden changes to the 'maxmemory'"),
        "{doctor}"
    );
    ok(raw.cmd(&[b"CONFIG", b"SET", b"latency-monitor-threshold", b"0"]));
}

#[test]
fn noeviction_refuses_writes_but_serves_reads_and_deletes() {
    let node = memory_node(EvictionPolicy::NoEviction);
    let mut raw = node.raw();
    let value = vec![b'v'; VALUE_LEN];
    let mut stored = 0;
    let oom_at = (0..10_000).find(|i| {
        let key = format!("k:{i}");
        match raw.cmd(&[b"SET", key.as_bytes(), &value]) {
            Value::Simple(_) => {
                stored += 1;
                false
            }
            reply => {
                assert_eq!(error_text(&reply), OOM);
                true
            }
        }
    });
    assert!(
        oom_at.is_some(),
        "10 MB written under a 2 MB noeviction limit"
    );
    assert!(stored > 1000, "only {stored} keys fit in 2 MB");
    assert_eq!(error_text(&raw.cmd(&[b"SET", b"k:0", b"small"])), OOM);
    assert_eq!(error_text(&raw.cmd(&[b"INCR", b"counter"])), OOM);
    assert_eq!(error_text(&raw.cmd(&[b"APPEND", b"k:0", b"x"])), OOM);
    // Reads still work, and nothing was lost.
    assert_eq!(raw.cmd(&[b"GET", b"k:0"]), Value::Bulk(value.clone()));
    assert_eq!(dbsize(&mut raw), stored);
    let last = format!("k:{}", stored - 1);
    assert_eq!(
        raw.cmd(&[b"STRLEN", last.as_bytes()]),
        Value::Int(VALUE_LEN as i64)
    );
    assert_eq!(info_field(&mut raw, "stats", "evicted_keys"), 0);
    // Deleting makes room again.
    let keys: Vec<String> = (0..50).map(|i| format!("k:{i}")).collect();
    let mut del: Vec<&[u8]> = vec![b"DEL"];
    del.extend(keys.iter().map(|k| k.as_bytes()));
    assert_eq!(raw.cmd(&del), Value::Int(50));
    ok(raw.cmd(&[b"SET", b"after-delete", &value]));
    assert_eq!(text(&raw.cmd(&[b"PING"])), "PONG");
}

#[test]
fn allkeys_lru_stays_under_the_limit_and_evicts_the_oldest_keys() {
    let node = memory_node(EvictionPolicy::AllKeysLru);
    let mut raw = node.raw();
    let written = 10_000;
    let worst = write_many(&mut raw, "lru", written, |_| vec![], |_| {});
    assert!(
        worst <= ONE_ENTRY,
        "used_memory went {worst} bytes over maxmemory"
    );
    let keys = dbsize(&mut raw);
    assert!(
        keys > 500 && keys < 3000,
        "{keys} keys of 1000 bytes in 2 MB"
    );
    let evicted = info_field(&mut raw, "stats", "evicted_keys");
    assert_eq!(
        evicted,
        written as u64 - keys,
        "evicted_keys counts every eviction"
    );
    // LRU is exact within each of the store's shards (the README's promise): the shard that
    // needs room evicts its least recently used key, so a shard that happens to hold fewer
    // keys keeps some older than keys evicted elsewhere. With about 16 keys per shard, few
    // of the oldest survive, and none of the newest is evicted.
    let oldest_kept = (0..1000)
        .filter(|i| exists(&mut raw, &format!("lru:{i}")))
        .count();
    assert!(
        oldest_kept < 100,
        "of the 1000 oldest keys, {oldest_kept} survived"
    );
    let newest_lost = (written - 500..written)
        .filter(|i| !exists(&mut raw, &format!("lru:{i}")))
        .count();
    assert_eq!(
        newest_lost, 0,
        "of the 500 newest keys, {newest_lost} were evicted"
    );
}

/// A key read recently survives while much older keys are evicted, with the default shard
/// count (here about 16 keys per shard, where evicting shard by shard in turn would take a
/// hot key from a shard that happens to be small).
#[test]
fn allkeys_lru_keeps_recently_read_keys() {
    let node = memory_node(EvictionPolicy::AllKeysLru);
    let mut raw = node.raw();
    let hot: Vec<String> = (0..20).map(|i| format!("hot:{i}")).collect();
    write_many(&mut raw, "hot", hot.len(), |_| vec![], |_| {});
    let written = 10_000;
    let mut batches = 0;
    write_many(
        &mut raw,
        "cold",
        written,
        |_| vec![],
        |raw| {
            batches += 1;
            let mut get: Vec<&[u8]> = vec![b"MGET"];
            get.extend(hot.iter().map(|k| k.as_bytes()));
            let Value::Array(values) = raw.cmd(&get) else {
                panic!("MGET")
            };
            let lost: Vec<&String> = hot
                .iter()
                .zip(&values)
                .filter(|(_, v)| !matches!(v, Value::Bulk(_)))
                .map(|(k, _)| k)
                .collect();
            assert!(
                lost.is_empty(),
                "after {} writes, hot keys read 100 writes ago were evicted: {lost:?}",
                batches * 100
            );
        },
    );
    for i in written - 200..written {
        assert!(
            exists(&mut raw, &format!("cold:{i}")),
            "recent key cold:{i} was evicted"
        );
    }
}

#[test]
fn volatile_lru_evicts_only_keys_with_a_ttl_then_answers_oom() {
    let node = memory_node(EvictionPolicy::VolatileLru);
    let mut raw = node.raw();
    let persistent = 300;
    write_many(&mut raw, "p", persistent, |_| vec![], |_| {});
    let ex = |_| vec![b"EX".to_vec(), b"3600".to_vec()];
    let worst = write_many(&mut raw, "v", 5000, ex, |_| {});
    assert!(
        worst <= ONE_ENTRY,
        "used_memory went {worst} bytes over maxmemory"
    );
    assert!(info_field(&mut raw, "stats", "evicted_keys") > 0);
    for i in 0..persistent {
        assert!(
            exists(&mut raw, &format!("p:{i}")),
            "persistent p:{i} was evicted"
        );
    }
    // Keys without a TTL cannot be evicted: once the volatile ones are gone, OOM.
    let value = vec![b'v'; VALUE_LEN];
    let mut stored = 0;
    loop {
        let key = format!("q:{stored}");
        match raw.cmd(&[b"SET", key.as_bytes(), &value]) {
            Value::Simple(_) => stored += 1,
            reply => {
                assert_eq!(error_text(&reply), OOM);
                break;
            }
        }
        assert!(
            stored < 10_000,
            "10 MB of persistent keys under a 2 MB volatile-lru limit"
        );
    }
    let Value::Array(volatile) = raw.cmd(&[b"KEYS", b"v:*"]) else {
        panic!("KEYS")
    };
    assert!(
        volatile.is_empty(),
        "OOM while {} volatile keys were left",
        volatile.len()
    );
    for i in 0..persistent {
        assert!(
            exists(&mut raw, &format!("p:{i}")),
            "persistent p:{i} was evicted"
        );
    }
    let keys = dbsize(&mut raw);
    assert_eq!(keys, (persistent + stored) as u64);
    assert_eq!(info_field(&mut raw, "stats", "evicted_keys"), 5000);
}

#[test]
fn allkeys_random_stays_under_the_limit() {
    let node = memory_node(EvictionPolicy::AllKeysRandom);
    let mut raw = node.raw();
    let written = 10_000;
    let worst = write_many(&mut raw, "r", written, |_| vec![], |_| {});
    assert!(
        worst <= ONE_ENTRY,
        "used_memory went {worst} bytes over maxmemory"
    );
    let keys = dbsize(&mut raw);
    assert!(keys > 500 && keys < 3000, "{keys} keys left");
    assert_eq!(
        info_field(&mut raw, "stats", "evicted_keys"),
        written as u64 - keys
    );
}

#[test]
fn volatile_ttl_evicts_the_nearest_expiries_first() {
    let node = memory_node(EvictionPolicy::VolatileTtl);
    let mut raw = node.raw();
    let persistent = 200;
    write_many(&mut raw, "p", persistent, |_| vec![], |_| {});
    let ttl_of = |i: usize| 1000 + (i * 7919) % 9000;
    let low = |ttl: usize| ttl < 2800;
    let high = |ttl: usize| ttl >= 8200;
    let ex = |i| vec![b"EX".to_vec(), ttl_of(i).to_string().into_bytes()];
    let written = 8000;
    let worst = write_many(&mut raw, "v", written, ex, |_| {});
    assert!(
        worst <= ONE_ENTRY,
        "used_memory went {worst} bytes over maxmemory"
    );
    for i in 0..persistent {
        assert!(
            exists(&mut raw, &format!("p:{i}")),
            "persistent p:{i} was evicted"
        );
    }
    let survivors: Vec<usize> = (0..written)
        .filter(|&i| exists(&mut raw, &format!("v:{i}")))
        .map(ttl_of)
        .collect();
    assert!(!survivors.is_empty() && survivors.len() < written / 2);
    // Eviction samples (as Redis's does), so this is statistical: of the keys with the
    // shortest fifth of TTLs, far fewer survive than of those with the longest fifth.
    let band = |f: &dyn Fn(usize) -> bool| {
        let all = (0..written).filter(|&i| f(ttl_of(i))).count();
        let kept = survivors.iter().filter(|&&t| f(t)).count();
        kept as f64 / all as f64
    };
    let (low_kept, high_kept) = (band(&low), band(&high));
    eprintln!(
        "volatile-ttl kept {:.0}% of the shortest TTLs, {:.0}% of the longest",
        low_kept * 100.0,
        high_kept * 100.0
    );
    assert!(
        high_kept > 2.0 * low_kept,
        "kept {low_kept:.2} of the shortest TTLs and {high_kept:.2} of the longest"
    );
    let keys = dbsize(&mut raw);
    assert_eq!(
        info_field(&mut raw, "stats", "evicted_keys"),
        (persistent + written) as u64 - keys
    );
}

/// Keys read often a while ago survive a flood of keys written once under `allkeys-lfu`, where
/// `allkeys-lru` would have evicted them first (they are the least recently used).
#[test]
fn allkeys_lfu_keeps_frequently_read_keys() {
    let node = memory_node(EvictionPolicy::AllKeysLfu);
    let mut raw = node.raw();
    let hot: Vec<String> = (0..50).map(|i| format!("hot:{i}")).collect();
    write_many(&mut raw, "hot", hot.len(), |_| vec![], |_| {});
    // Each hot key read 30 times (one pipelined write), then never again.
    let mut reads = Vec::new();
    for _ in 0..30 {
        for k in &hot {
            reads.extend(frame(&[b"GET", k.as_bytes()]));
        }
    }
    raw.send(&reads);
    for _ in 0..30 * hot.len() {
        assert!(matches!(raw.reply(), Value::Bulk(_)));
    }
    let frequency = |raw: &mut Raw, key: &str| match raw.cmd(&[b"OBJECT", b"FREQ", key.as_bytes()])
    {
        Value::Int(n) => n,
        other => panic!("OBJECT FREQ {key}: {other:?}"),
    };
    // Redis's logarithmic counter starts at 5 and its first increment is certain; the next
    // come with probability 1/11, 1/21, ... (lfu-log-factor 10), so after 30 reads it is at
    // least 6, and more only usually (1 run in 16 stays at 6).
    assert!(frequency(&mut raw, "hot:0") >= 6, "30 reads count");
    let written = 10_000;
    let worst = write_many(&mut raw, "cold", written, |_| vec![], |_| {});
    assert!(
        worst <= ONE_ENTRY,
        "used_memory went {worst} bytes over maxmemory"
    );
    let lost: Vec<&String> = hot.iter().filter(|k| !exists(&mut raw, k)).collect();
    assert!(
        lost.is_empty(),
        "frequently read keys were evicted: {lost:?}"
    );
    let keys = dbsize(&mut raw);
    assert!(
        keys > 500 && keys < 3000,
        "{keys} keys of 1000 bytes in 2 MB"
    );
    assert_eq!(
        info_field(&mut raw, "stats", "evicted_keys"),
        (hot.len() + written) as u64 - keys,
        "evicted_keys counts every eviction"
    );
    assert_eq!(frequency(&mut raw, &format!("cold:{}", written - 1)), 5);
    // Switching to LRU at run time: the next evictions take the least recently used, the hot
    // keys first.
    ok(raw.cmd(&[b"CONFIG", b"SET", b"maxmemory-policy", b"allkeys-lru"]));
    write_many(&mut raw, "after", 3000, |_| vec![], |_| {});
    let kept = hot.iter().filter(|k| exists(&mut raw, k)).count();
    assert_eq!(kept, 0, "{kept} hot keys survived under allkeys-lru");
}

#[test]
fn volatile_random_evicts_only_keys_with_a_ttl() {
    let node = memory_node(EvictionPolicy::VolatileRandom);
    let mut raw = node.raw();
    let persistent = 300;
    write_many(&mut raw, "p", persistent, |_| vec![], |_| {});
    let ex = |_| vec![b"EX".to_vec(), b"1000".to_vec()];
    let worst = write_many(&mut raw, "v", 6000, ex, |_| {});
    assert!(
        worst <= ONE_ENTRY,
        "used_memory went {worst} bytes over maxmemory"
    );
    for i in 0..persistent {
        assert!(
            exists(&mut raw, &format!("p:{i}")),
            "persistent p:{i} was evicted"
        );
    }
    assert!(info_field(&mut raw, "stats", "evicted_keys") > 3000);
}

#[test]
fn a_refused_connection_is_answered_even_if_it_sent_first() {
    let node = Node::start_with(|c| c.maxclients = 1);
    let mut first = node.raw();
    assert_eq!(text(&first.cmd(&[b"PING"])), "PONG");
    // The second sends before it could know; it still reads the error, not a reset.
    let mut second = TcpStream::connect(node.addr()).unwrap();
    second.write_all(&frame(&[b"PING"])).unwrap();
    let mut second = Raw::from_stream(second);
    assert_eq!(
        second.reply(),
        Value::Error(MAX_CLIENTS.as_bytes().to_vec())
    );
    second.assert_closed(Duration::from_secs(2), "the refused connection");
}

#[test]
fn a_client_blocked_in_wait_is_spared_by_the_timeout_and_ended_by_client_kill() {
    // The primary of a one-node cluster has no replica: `WAIT 1 0` waits for ever.
    let node = Node::start_with(|c| c.cluster_enabled = true);
    let mut admin = node.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&admin.cmd(&[b"CLUSTER", b"INFO"])).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "the one-node cluster is up");
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(admin.cmd(&[b"CONFIG", b"SET", b"timeout", b"1"]));
    let mut blocked = node.raw();
    let id = match blocked.cmd(&[b"CLIENT", b"ID"]) {
        Value::Int(id) => id.to_string(),
        other => panic!("CLIENT ID answered {other:?}"),
    };
    blocked.send(&frame(&[b"WAIT", b"1", b"0"]));
    // Blocked is not idle: it outlives the timeout (Redis spares blocked clients too).
    blocked.assert_open_and_quiet(Duration::from_millis(1800), "a client blocked in WAIT");
    // (The idle admin connection is gone by now: a new one.)
    let mut admin = node.raw();
    let listed = text(&admin.cmd(&[b"CLIENT", b"LIST", b"ID", id.as_bytes()]));
    assert!(listed.contains(" cmd=wait "), "{listed}");
    // CLIENT KILL ends the blocked client's session at once, its slot with it.
    let clients_before = node.info_u64("connected_clients");
    assert_eq!(
        admin.cmd(&[b"CLIENT", b"KILL", b"ID", id.as_bytes()]),
        Value::Int(1)
    );
    blocked.assert_closed(Duration::from_secs(2), "a killed client blocked in WAIT");
    let deadline = Instant::now() + Duration::from_secs(2);
    while node.info_u64("connected_clients") >= clients_before {
        assert!(
            Instant::now() < deadline,
            "the killed client's slot came back"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(admin.cmd(&[b"CONFIG", b"SET", b"timeout", b"0"]));
}

#[test]
fn a_refused_command_is_the_one_client_list_shows() {
    let node = Node::start();
    let mut raw = node.raw();
    ok(raw.cmd(&[b"SET", b"k", b"v"]));
    assert!(matches!(raw.cmd(&[b"GET"]), Value::Error(_)));
    let mut other = node.raw();
    let list = text(&other.cmd(&[b"CLIENT", b"LIST"]));
    let line = list
        .lines()
        .find(|l| !l.contains("cmd=client|list"))
        .expect("the other client");
    assert!(line.contains(" cmd=get "), "{line}");
}

/// A connection to `node` from `source` (an address of the loopback network other than
/// 127.0.0.1 stands for another machine: Redis counts only 127.0.0.1 and ::1 as local).
fn raw_from(node: &Node, source: [u8; 4]) -> Raw {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket
            .bind(std::net::SocketAddr::from((source, 0)))
            .unwrap();
        socket.connect(node.addr()).await.unwrap()
    });
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    Raw::from_stream(stream)
}

#[test]
fn protected_mode_turns_away_clients_off_the_loopback_interface_without_a_password() {
    let node = Node::start();
    let mut admin = node.raw();
    let denied = shoal_frontdoor::DENIED
        .trim_start_matches('-')
        .trim_end_matches("\r\n");
    // From "another machine", with no password: Redis's text, then the connection closes.
    let mut outsider = raw_from(&node, [127, 0, 0, 2]);
    assert_eq!(outsider.reply(), Value::Error(denied.as_bytes().to_vec()));
    outsider.assert_closed(
        Duration::from_secs(2),
        "a client turned away by protected mode",
    );
    assert_eq!(info_field(&mut admin, "stats", "rejected_connections"), 1);
    // From 127.0.0.1, served.
    assert_eq!(text(&node.raw().cmd(&[b"PING"])), "PONG");
    // With a password, an outsider may connect (and must authenticate).
    ok(admin.cmd(&[b"CONFIG", b"SET", b"requirepass", b"s3cret"]));
    let mut outsider = raw_from(&node, [127, 0, 0, 2]);
    assert!(
        error_text(&outsider.cmd(&[b"PING"])).starts_with("NOAUTH"),
        "an outsider meets the password, not protected mode"
    );
    // Without a password but with protected mode off, served.
    ok(admin.cmd(&[b"AUTH", b"s3cret"]));
    ok(admin.cmd(&[b"CONFIG", b"SET", b"requirepass", b""]));
    ok(admin.cmd(&[b"CONFIG", b"SET", b"protected-mode", b"no"]));
    assert_eq!(
        admin.cmd(&[b"CONFIG", b"GET", b"protected-mode"]),
        Value::Array(vec![
            Value::Bulk(b"protected-mode".to_vec()),
            Value::Bulk(b"no".to_vec())
        ])
    );
    let mut outsider = raw_from(&node, [127, 0, 0, 2]);
    assert_eq!(text(&outsider.cmd(&[b"PING"])), "PONG");
    assert!(
        error_text(&admin.cmd(&[b"CONFIG", b"SET", b"protected-mode", b"maybe"]))
            .contains("'yes' or 'no'")
    );
}
