//! Scripts on one node with concurrent clients: a long script makes other clients wait, then
//! answers them `-BUSY` past `busy-reply-threshold`; `SCRIPT KILL` stops it unless it wrote
//! (`-UNKILLABLE`); scripts are atomic under clients on both worker threads; a script cannot
//! take the node's memory; `redis::Script` (EVALSHA, then EVAL on NOSCRIPT) and a lock built
//! as redis-py's `Lock` builds it. Replies and errors of one connection are diffed against
//! Redis in `tests/compat/scripting.txt`.

mod common;

use std::time::{Duration, Instant};

use common::{Node, Raw, Value};
use redis::Commands;

/// A node whose scripts turn busy after 100 ms.
fn node() -> Node {
    Node::start_with(|c| c.busy_reply_threshold = 100)
}

fn error_line(value: &Value) -> String {
    match value {
        Value::Error(line) => String::from_utf8_lossy(line).into_owned(),
        other => panic!("an error, got {other:?}"),
    }
}

/// Two raw connections on different worker threads (the node hands connections out
/// round-robin to its two workers), the first running `script` without waiting for it.
fn running(node: &Node, script: &str) -> (Raw, Raw) {
    let mut runner = node.raw();
    let other = node.raw();
    runner.send(&frame(&[b"EVAL", script.as_bytes(), b"0"]));
    (runner, other)
}

fn frame(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn a_busy_script_is_answered_busy_to_others_and_script_kill_stops_it() {
    let node = node();
    let (mut runner, mut other) = running(&node, "local i = 0 while true do i = i + 1 end");
    let started = Instant::now();
    // Waits while the script is within its time, then is refused (a GET that arrives before
    // the script starts runs first).
    let busy = loop {
        match other.cmd_str("GET k") {
            Value::Null => continue,
            reply => break reply,
        }
    };
    assert_eq!(
        error_line(&busy),
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    );
    assert!(
        started.elapsed() >= Duration::from_millis(90),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(other.cmd_str("PING"), Value::Error(_)));
    // In a transaction: refused, so EXEC aborts.
    assert_eq!(other.cmd_str("MULTI"), Value::Simple(b"OK".to_vec()));
    assert!(matches!(other.cmd_str("SET a 1"), Value::Error(_)));
    assert!(matches!(other.cmd_str("DISCARD"), Value::Simple(_)));
    assert_eq!(other.cmd_str("SCRIPT KILL"), Value::Simple(b"OK".to_vec()));
    let killed = error_line(&runner.reply());
    assert!(
        killed.starts_with("ERR Script killed by user with SCRIPT KILL... script: "),
        "{killed}"
    );
    assert!(killed.ends_with(", on @user_script:1."), "{killed}");
    assert_eq!(
        other.cmd_str("SCRIPT KILL"),
        Value::Error(b"NOTBUSY No scripts in execution right now.".to_vec())
    );
    assert_eq!(other.cmd_str("SET k v"), Value::Simple(b"OK".to_vec()));
    assert_eq!(runner.cmd_str("GET k"), Value::Bulk(b"v".to_vec()));
}

#[test]
fn a_new_connection_can_kill_a_script_that_runs_forever() {
    let node = node();
    let (mut runner, _other) = running(&node, "while true do end");
    // Past the busy threshold and several cron periods: the thread that accepts connections
    // (and runs the cron) must not be waiting on the store behind the script.
    std::thread::sleep(Duration::from_millis(400));
    let mut fresh = node.raw();
    assert_eq!(fresh.cmd_str("SCRIPT KILL"), Value::Simple(b"OK".to_vec()));
    let killed = error_line(&runner.reply());
    assert!(killed.starts_with("ERR Script killed by user"), "{killed}");
    assert_eq!(fresh.cmd_str("PING"), Value::Simple(b"PONG".to_vec()));
}

#[test]
fn a_node_with_one_worker_still_takes_script_kill() {
    let node = Node::start_with(|c| {
        c.busy_reply_threshold = 100;
        c.threads = 1;
    });
    let mut runner = node.raw();
    runner.send(&frame(&[b"EVAL", b"while true do end", b"0"]));
    std::thread::sleep(Duration::from_millis(300));
    // The only worker runs the script: the thread that accepts serves this connection.
    let mut fresh = node.raw();
    assert_eq!(
        error_line(&fresh.cmd_str("GET k")),
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."
    );
    assert_eq!(fresh.cmd_str("SCRIPT KILL"), Value::Simple(b"OK".to_vec()));
    let killed = error_line(&runner.reply());
    assert!(killed.starts_with("ERR Script killed by user"), "{killed}");
    assert_eq!(fresh.cmd_str("SET k v"), Value::Simple(b"OK".to_vec()));
    assert_eq!(runner.cmd_str("GET k"), Value::Bulk(b"v".to_vec()));
}

#[test]
fn commands_sent_as_a_script_starts_never_leave_it_unkillable() {
    let node = node();
    for round in 0..20 {
        // The script's command and others (on both worker threads) arrive together: each
        // other command runs before the script or waits for it, never blocks its thread.
        let mut runner = node.raw();
        let mut others: Vec<Raw> = (0..3).map(|_| node.raw()).collect();
        runner.send(&frame(&[b"EVAL", b"while true do end", b"0"]));
        for other in &mut others {
            other.send(&frame(&[b"SET", b"k", b"v"]));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // A fresh connection each time: once the script runs, the node hands new
            // connections to the other worker (one handed out before may wait behind it).
            let mut killer = node.raw();
            killer.send(&frame(&[b"SCRIPT", b"KILL"]));
            match killer.try_reply(Duration::from_secs(1)) {
                Ok(Some(Value::Simple(ok))) if ok == b"OK" => break,
                // Not started yet, or this connection waits behind it.
                Ok(Some(Value::Error(e))) if e.starts_with(b"NOTBUSY") => {}
                Ok(None) => {}
                other => panic!("round {round}: SCRIPT KILL answered {other:?}"),
            }
            assert!(Instant::now() < deadline, "round {round}: never killed");
        }
        let killed = error_line(&runner.reply());
        assert!(killed.starts_with("ERR Script killed by user"), "{killed}");
        for other in &mut others {
            match other.reply() {
                Value::Simple(ok) if ok == b"OK" => {}
                Value::Error(e) if e.starts_with(b"BUSY") => {}
                reply => panic!("round {round}: SET answered {reply:?}"),
            }
        }
    }
}

#[test]
fn a_script_cannot_escape_script_kill_with_pcall() {
    let node = node();
    let (mut runner, mut other) = running(
        &node,
        "while true do pcall(function() while true do end end) end",
    );
    while other.cmd_str("GET k") == Value::Null {}
    assert_eq!(other.cmd_str("SCRIPT KILL"), Value::Simple(b"OK".to_vec()));
    let killed = error_line(&runner.reply());
    assert!(killed.starts_with("ERR Script killed by user"), "{killed}");
}

#[test]
fn a_script_that_wrote_cannot_be_killed_and_others_wait_for_it() {
    let node = node();
    // Writes, then runs for about a second.
    let script = "redis.call('set', 'x', '1') \
                  local t0 = tonumber(redis.call('time')[1]) * 1000000 + tonumber(redis.call('time')[2]) \
                  while true do \
                    local t = redis.call('time') \
                    if tonumber(t[1]) * 1000000 + tonumber(t[2]) - t0 > 1000000 then break end \
                  end \
                  return 'done'";
    let (mut runner, mut other) = running(&node, script);
    // (A GET that arrives before the script starts runs first.)
    while other.cmd_str("GET x") == Value::Null {}
    assert_eq!(
        error_line(&other.cmd_str("SCRIPT KILL")),
        "UNKILLABLE Sorry the script already executed write commands against the dataset. \
         You can either wait the script termination or kill the server in a hard way using the \
         SHUTDOWN NOSAVE command."
    );
    assert_eq!(runner.reply(), Value::Bulk(b"done".to_vec()));
    assert_eq!(other.cmd_str("GET x"), Value::Bulk(b"1".to_vec()));
}

#[test]
fn commands_wait_for_a_short_script_instead_of_failing() {
    let node = Node::start_with(|c| c.busy_reply_threshold = 5000);
    let (mut runner, mut other) = running(
        &node,
        "local t0 = redis.call('time')[1] local n = 0 \
         while n < 3000000 do n = n + 1 end return n",
    );
    // Within the threshold: the command waits for the script, then runs.
    assert_eq!(other.cmd_str("SET k v"), Value::Simple(b"OK".to_vec()));
    assert_eq!(runner.reply(), Value::Int(3_000_000));
}

#[test]
fn scripts_are_atomic_under_clients_on_both_threads() {
    let node = node();
    const WRITERS: usize = 4;
    const ROUNDS: usize = 300;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let script = redis::Script::new(
        "local a = redis.call('incr', KEYS[1]) local b = redis.call('incr', KEYS[2]) return {a, b}",
    );
    std::thread::scope(|s| {
        for _ in 0..WRITERS {
            s.spawn(|| {
                let mut con = node.con();
                for _ in 0..ROUNDS {
                    let (a, b): (i64, i64) = script.key("x").key("y").invoke(&mut con).unwrap();
                    assert_eq!(a, b, "another client ran inside a script");
                }
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
        s.spawn(|| {
            let mut con = node.con();
            while done.load(std::sync::atomic::Ordering::Relaxed) < WRITERS {
                let seen: Vec<Option<i64>> = con.mget(&["x", "y"]).unwrap();
                assert_eq!(seen[0], seen[1], "a reader saw half of a script");
            }
        });
    });
    let mut con = node.con();
    let total = (WRITERS * ROUNDS) as i64;
    assert_eq!(con.get::<_, i64>("x").unwrap(), total);
    assert_eq!(con.get::<_, i64>("y").unwrap(), total);
}

#[test]
fn a_memory_bomb_fails_and_the_node_goes_on() {
    let node = node();
    let mut con = node.raw();
    let reply = con.cmd(&[
        b"EVAL",
        // Distinct strings (Lua shares equal ones), 4 MiB each, until the limit stops it.
        b"local t = {} for i = 1, 100000 do t[i] = string.rep(tostring(i), 4194304 / #tostring(i)) end return #t",
        b"0",
    ]);
    let line = error_line(&reply);
    assert!(line.contains("not enough memory"), "{line}");
    assert_eq!(con.cmd(&[b"EVAL", b"return 1", b"0"]), Value::Int(1));
    let reply = con.cmd(&[b"EVAL", b"local s = string.rep('x', 2^30) return #s", b"0"]);
    assert!(error_line(&reply).contains("not enough memory"));
}

/// The scripts redis-py 5's `Lock` runs, with its `SET NX PX` acquire.
const LOCK_RELEASE: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1";

const LOCK_EXTEND: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
local expiration = redis.call('pttl', KEYS[1])
if not expiration then
    expiration = 0
end
if expiration < 0 then
    return 0
end
local newttl = ARGV[2]
if ARGV[3] == '0' then
    newttl = ARGV[2] + expiration
end
redis.call('pexpire', KEYS[1], newttl)
return 1";

const LOCK_REACQUIRE: &str = "local token = redis.call('get', KEYS[1])
if not token or token ~= ARGV[1] then
    return 0
end
redis.call('pexpire', KEYS[1], ARGV[2])
return 1";

#[test]
fn a_lock_as_redis_py_builds_it_works() {
    let node = node();
    let mut con = node.con();
    let (release, extend, reacquire) = (
        redis::Script::new(LOCK_RELEASE),
        redis::Script::new(LOCK_EXTEND),
        redis::Script::new(LOCK_REACQUIRE),
    );
    let acquire = |con: &mut redis::Connection, token: &str| -> bool {
        let set: Option<String> = redis::cmd("SET")
            .arg("lock")
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(10_000)
            .query(con)
            .unwrap();
        set.is_some()
    };
    assert!(acquire(&mut con, "a"));
    assert!(!acquire(&mut con, "b"), "held by a");
    let extended: i64 = extend
        .key("lock")
        .arg("a")
        .arg(5_000)
        .arg("0")
        .invoke(&mut con)
        .unwrap();
    assert_eq!(extended, 1);
    let pttl: i64 = con.pttl("lock").unwrap();
    assert!(pttl > 10_000, "extended by 5 s: {pttl}");
    let reacquired: i64 = reacquire
        .key("lock")
        .arg("a")
        .arg(3_000)
        .invoke(&mut con)
        .unwrap();
    assert_eq!(reacquired, 1);
    assert!(con.pttl::<_, i64>("lock").unwrap() <= 3_000);
    let not_mine: i64 = release.key("lock").arg("b").invoke(&mut con).unwrap();
    assert_eq!(not_mine, 0);
    let released: i64 = release.key("lock").arg("a").invoke(&mut con).unwrap();
    assert_eq!(released, 1);
    assert!(acquire(&mut con, "b"), "free again");
    // After a flush the scripts are sent again (EVALSHA answers NOSCRIPT, then EVAL).
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
    let released: i64 = release.key("lock").arg("b").invoke(&mut con).unwrap();
    assert_eq!(released, 1);
}

/// The `-BUSY` line `conn` gets once the script another connection sent runs (a command sent
/// before it started is answered normally, so this asks until one is refused).
fn busy_line(conn: &mut Raw) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Value::Error(line) = conn.cmd_str("GET k") {
            return String::from_utf8_lossy(&line).into_owned();
        }
        assert!(Instant::now() < deadline, "the script never turned busy");
    }
}

/// Sends one command (arguments as given) and reads its reply.
fn call(conn: &mut Raw, args: &[&[u8]]) -> Value {
    conn.send(&frame(args));
    conn.reply()
}

#[test]
fn function_kill_stops_a_busy_function_and_each_kill_refuses_the_other_kind() {
    let node = node();
    let mut runner = node.raw();
    let mut other = node.raw();
    let library = b"#!lua name=spinning\nredis.register_function('spin', function(keys, args)\n  local i = 0\n  while true do i = i + 1 end\nend)";
    assert_eq!(
        call(&mut other, &[b"FUNCTION", b"LOAD", library]),
        Value::Bulk(b"spinning".to_vec())
    );
    runner.send(&frame(&[b"FCALL", b"spin", b"1", b"somekey", b"arg"]));
    assert_eq!(
        busy_line(&mut other),
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    );
    // SCRIPT KILL does not stop a function (Redis answers its BUSY line).
    assert_eq!(
        error_line(&other.cmd_str("SCRIPT KILL")),
        "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE."
    );
    // FUNCTION STATS names the running function and its command.
    let Value::Array(stats) = other.cmd_str("FUNCTION STATS") else {
        panic!("FUNCTION STATS answers a map (an array in RESP2)");
    };
    assert_eq!(stats[0], Value::Bulk(b"running_script".to_vec()));
    let Value::Array(described) = &stats[1] else {
        panic!("a running function is described: {stats:?}");
    };
    assert_eq!(described[1], Value::Bulk(b"spin".to_vec()));
    let command: Vec<Value> = ["FCALL", "spin", "1", "somekey", "arg"]
        .iter()
        .map(|a| Value::Bulk(a.as_bytes().to_vec()))
        .collect();
    assert_eq!(described[3], Value::Array(command));
    assert!(
        matches!(described[5], Value::Int(ms) if ms >= 90),
        "{described:?}"
    );
    assert_eq!(
        other.cmd_str("FUNCTION KILL"),
        Value::Simple(b"OK".to_vec())
    );
    let killed = error_line(&runner.reply());
    assert_eq!(
        killed,
        "ERR Script killed by user with SCRIPT KILL... script: spin, on @user_function:4."
    );
    assert_eq!(
        other.cmd_str("FUNCTION KILL"),
        Value::Error(b"NOTBUSY No scripts in execution right now.".to_vec())
    );
    assert_eq!(other.cmd_str("SET k v"), Value::Simple(b"OK".to_vec()));

    // A busy EVAL: FUNCTION KILL and FUNCTION STATS answer the script's BUSY line.
    let (mut runner, mut other) = running(&node, "local i = 0 while true do i = i + 1 end");
    let script_busy =
        "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
    assert_eq!(busy_line(&mut other), script_busy);
    assert_eq!(error_line(&other.cmd_str("FUNCTION KILL")), script_busy);
    assert_eq!(error_line(&other.cmd_str("FUNCTION STATS")), script_busy);
    assert_eq!(other.cmd_str("SCRIPT KILL"), Value::Simple(b"OK".to_vec()));
    assert!(error_line(&runner.reply()).starts_with("ERR Script killed by user"));
}

#[test]
fn a_function_that_wrote_cannot_be_killed() {
    let node = node();
    let mut runner = node.raw();
    let mut other = node.raw();
    let library = b"#!lua name=writer\nredis.register_function('write_then_wait', function(keys)\n  redis.call('set', keys[1], '1')\n  local t0 = redis.call('time')\n  while true do\n    local t = redis.call('time')\n    if (t[1] - t0[1]) * 1000000 + t[2] - t0[2] > 500000 then return 'done' end\n  end\nend)";
    assert_eq!(
        call(&mut other, &[b"FUNCTION", b"LOAD", library]),
        Value::Bulk(b"writer".to_vec())
    );
    runner.send(&frame(&[b"FCALL", b"write_then_wait", b"1", b"x"]));
    busy_line(&mut other);
    assert!(error_line(&other.cmd_str("FUNCTION KILL")).starts_with("UNKILLABLE "));
    assert_eq!(runner.reply(), Value::Bulk(b"done".to_vec()));
    assert_eq!(other.cmd_str("GET x"), Value::Bulk(b"1".to_vec()));
}
