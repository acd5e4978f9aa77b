//! Redis 8.6's `HOTKEYS` on one node, against Redis's documentation and `src/hotkeys.c`: a
//! skewed workload's hot key comes first by time and by bytes; `START`/`STOP`/`RESET`/`GET`
//! semantics; the errors of wrong arguments; `SLOTS` on a one-node cluster. And the always-on
//! background sampling finds the same key without a session.

mod common;

use std::time::{Duration, Instant};

use common::{Node, Raw, Value, text};

fn err(line: &str) -> Value {
    Value::Error(line.as_bytes().to_vec())
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn run(raw: &mut Raw, line: &str) -> Value {
    raw.cmd_str(line)
}

/// `HOTKEYS GET`'s one map, as (field, value) pairs, in RESP2 (a flat array) or RESP3.
fn fields(reply: Value) -> Vec<(String, Value)> {
    let Value::Array(mut outer) = reply else {
        panic!("HOTKEYS GET: expected an array, got {reply:?}");
    };
    assert_eq!(outer.len(), 1, "an array of one map");
    let pairs: Vec<(Value, Value)> = match outer.remove(0) {
        Value::Map(pairs) => pairs,
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        other => panic!("expected a map, got {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| match k {
            Value::Bulk(k) => (String::from_utf8(k).unwrap(), v),
            other => panic!("field name {other:?}"),
        })
        .collect()
}

fn field<'a>(f: &'a [(String, Value)], name: &str) -> &'a Value {
    &f.iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no field {name} in {f:?}"))
        .1
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("expected an integer, got {other:?}"),
    }
}

/// `(key, value)` pairs of a `by-*` list.
fn ranking(v: &Value) -> Vec<(String, i64)> {
    let Value::Array(items) = v else {
        panic!("expected an array, got {v:?}");
    };
    items
        .chunks(2)
        .map(|kv| match (&kv[0], &kv[1]) {
            (Value::Bulk(k), Value::Int(n)) => (String::from_utf8(k.clone()).unwrap(), *n),
            other => panic!("pair {other:?}"),
        })
        .collect()
}

/// One key takes 80% of the reads, the rest go to 10,000 others; a fixed number of reads in
/// pipelines of 1000.
fn skewed_reads(node: &Node, reads: usize) {
    let mut con = node.con();
    let _: () = redis::cmd("SET")
        .arg("hot")
        .arg(vec![b'v'; 100])
        .query(&mut con)
        .unwrap();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..reads / 1000 {
        let mut pipe = redis::pipe();
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 10 < 8 {
                pipe.cmd("GET").arg("hot");
            } else {
                pipe.cmd("GET").arg(format!("cold:{}", (x >> 8) % 10_000));
            }
        }
        let _: Vec<Option<Vec<u8>>> = pipe.query(&mut con).unwrap();
    }
}

#[test]
fn the_hot_key_comes_first_by_time_and_by_bytes() {
    let node = Node::start();
    for (resp3, sample) in [(false, 1), (true, 8)] {
        let mut r = node.raw();
        if resp3 {
            assert!(matches!(run(&mut r, "HELLO 3"), Value::Map(_)));
        }
        let start = format!("HOTKEYS START METRICS 2 CPU NET COUNT 5 SAMPLE {sample}");
        assert_eq!(run(&mut r, &start), ok());
        skewed_reads(&node, 20_000);
        let f = fields(run(&mut r, "HOTKEYS GET"));
        assert_eq!(int(field(&f, "tracking-active")), 1);
        assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
        let f = fields(run(&mut r, "HOTKEYS GET"));
        let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "tracking-active",
                "sample-ratio",
                "selected-slots",
                "all-commands-all-slots-us",
                "net-bytes-all-commands-all-slots",
                "collection-start-time-unix-ms",
                "collection-duration-ms",
                "total-cpu-time-user-ms",
                "total-cpu-time-sys-ms",
                "total-net-bytes",
                "by-cpu-time-us",
                "by-net-bytes",
            ]
        );
        assert_eq!(int(field(&f, "tracking-active")), 0);
        assert_eq!(int(field(&f, "sample-ratio")), sample);
        assert_eq!(
            field(&f, "selected-slots"),
            &Value::Array(vec![Value::Array(vec![Value::Int(0), Value::Int(16383)])])
        );
        let net = ranking(field(&f, "by-net-bytes"));
        let cpu = ranking(field(&f, "by-cpu-time-us"));
        assert!(net.len() <= 5 && cpu.len() <= 5, "COUNT 5: {net:?} {cpu:?}");
        assert_eq!(net[0].0, "hot", "by bytes: {net:?}");
        assert_eq!(cpu[0].0, "hot", "by time: {cpu:?}");
        // Each sampled GET of `hot` is 23 bytes in and 107 out: about 16,000 of them.
        let expected = 16_000 * 130 / sample;
        assert!(
            (expected / 2..expected * 2).contains(&net[0].1),
            "hot's bytes {} vs about {expected}",
            net[0].1
        );
        assert!(
            net.iter().skip(1).all(|(_, b)| *b < net[0].1 / 20),
            "{net:?}"
        );
        assert!(int(field(&f, "total-net-bytes")) >= net[0].1);
        assert!(int(field(&f, "net-bytes-all-commands-all-slots")) >= 20_000 * 20);
        assert!(int(field(&f, "collection-duration-ms")) >= 0);
        // Stopped: more reads change nothing.
        let before = ranking(field(&f, "by-net-bytes"));
        skewed_reads(&node, 1000);
        let f = fields(run(&mut r, "HOTKEYS GET"));
        assert_eq!(ranking(field(&f, "by-net-bytes")), before);
        assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
        assert_eq!(run(&mut r, "HOTKEYS GET"), Value::Null);
    }
}

#[test]
fn only_the_chosen_metrics_are_reported() {
    let node = Node::start();
    let mut r = node.raw();
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 NET"), ok());
    run(&mut r, "SET k v");
    let f = fields(run(&mut r, "HOTKEYS GET"));
    for absent in [
        "total-cpu-time-user-ms",
        "total-cpu-time-sys-ms",
        "by-cpu-time-us",
    ] {
        assert!(f.iter().all(|(k, _)| k != absent), "{absent} in {f:?}");
    }
    assert_eq!(ranking(field(&f, "by-net-bytes"))[0].0, "k");
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 CPU"), ok());
    run(&mut r, "GET k");
    let f = fields(run(&mut r, "HOTKEYS GET"));
    for absent in ["total-net-bytes", "by-net-bytes"] {
        assert!(f.iter().all(|(k, _)| k != absent), "{absent} in {f:?}");
    }
    assert_eq!(int(field(&f, "sample-ratio")), 1);
    assert_eq!(ranking(field(&f, "by-cpu-time-us"))[0].0, "k");
    // An unknown metric beside a known one is accepted (Redis's forward compatibility).
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 2 GPU CPU"), ok());
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
}

#[test]
fn start_stop_reset_get_semantics() {
    let node = Node::start();
    let mut r = node.raw();
    // Nothing started: GET and STOP answer a null, RESET is fine.
    assert_eq!(run(&mut r, "HOTKEYS GET"), Value::Null);
    assert_eq!(run(&mut r, "HOTKEYS STOP"), Value::Null);
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 CPU"), ok());
    assert_eq!(
        run(&mut r, "HOTKEYS START METRICS 1 NET"),
        err("ERR hotkey tracking session already in progress")
    );
    assert_eq!(
        run(&mut r, "HOTKEYS RESET"),
        err("ERR hotkey tracking session in progress, stop tracking first")
    );
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS STOP"), Value::Null);
    // Stopped, not reset: a new session may start, and replaces the old results.
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 NET SAMPLE 5"), ok());
    let f = fields(run(&mut r, "HOTKEYS GET"));
    assert_eq!(int(field(&f, "sample-ratio")), 5);
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
    assert_eq!(run(&mut r, "HOTKEYS GET"), Value::Null);

    // DURATION stops the session by itself.
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 CPU DURATION 1"), ok());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let f = fields(run(&mut r, "HOTKEYS GET"));
        if int(field(&f, "tracking-active")) == 0 {
            assert_eq!(int(field(&f, "collection-duration-ms")), 1000);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "DURATION 1 did not stop the session"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
}

#[test]
fn wrong_arguments_answer_redis_errors() {
    let node = Node::start();
    let mut r = node.raw();
    let cases = [
        ("HOTKEYS START", "ERR METRICS parameter is required"),
        ("HOTKEYS START COUNT 5", "ERR METRICS parameter is required"),
        ("HOTKEYS START METRICS", "ERR METRICS parameter is required"),
        (
            "HOTKEYS START METRICS 0",
            "ERR METRICS count must be > 0 and <= 2",
        ),
        (
            "HOTKEYS START METRICS -1",
            "ERR METRICS count must be > 0 and <= 2",
        ),
        (
            "HOTKEYS START METRICS 3 CPU NET",
            "ERR METRICS count must be > 0 and <= 2",
        ),
        (
            "HOTKEYS START METRICS x CPU",
            "ERR METRICS count must be > 0 and <= 2",
        ),
        (
            "HOTKEYS START METRICS 2 CPU",
            "ERR METRICS count does not match number of metric types provided",
        ),
        ("HOTKEYS START METRICS 1 CPU NET", "ERR syntax error"),
        (
            "HOTKEYS START METRICS 1 GPU",
            "ERR METRICS no valid metrics passed. Supported: CPU|NET",
        ),
        (
            "HOTKEYS START METRICS 2 CPU CPU",
            "ERR METRICS CPU defined more than once!",
        ),
        (
            "HOTKEYS START METRICS 2 NET NET",
            "ERR METRICS NET defined more than once!",
        ),
        (
            "HOTKEYS START METRICS 1 CPU COUNT 0",
            "ERR COUNT must be between 1 and 64",
        ),
        (
            "HOTKEYS START METRICS 1 CPU COUNT 65",
            "ERR COUNT must be between 1 and 64",
        ),
        (
            "HOTKEYS START METRICS 1 CPU DURATION 0",
            "ERR DURATION must be between 1 and 1000000",
        ),
        (
            "HOTKEYS START METRICS 1 CPU SAMPLE 0",
            "ERR SAMPLE ratio must be positive",
        ),
        (
            "HOTKEYS START METRICS 1 CPU SAMPLE x",
            "ERR SAMPLE ratio must be positive",
        ),
        ("HOTKEYS START METRICS 1 CPU COUNT", "ERR syntax error"),
        (
            "HOTKEYS START METRICS 1 CPU SLOTS 2 0 5",
            "ERR SLOTS parameter cannot be used in non-cluster mode",
        ),
        (
            "HOTKEYS GET x",
            "ERR wrong number of arguments for 'hotkeys|get' command",
        ),
        (
            "HOTKEYS STOP x",
            "ERR wrong number of arguments for 'hotkeys|stop' command",
        ),
        (
            "HOTKEYS RESET x",
            "ERR wrong number of arguments for 'hotkeys|reset' command",
        ),
        (
            "HOTKEYS",
            "ERR wrong number of arguments for 'hotkeys' command",
        ),
        (
            "HOTKEYS NOPE",
            "ERR unknown subcommand 'NOPE'. Try HOTKEYS HELP.",
        ),
    ];
    for (line, error) in cases {
        assert_eq!(run(&mut r, line), err(error), "{line}");
    }
    // None of them started anything.
    assert_eq!(run(&mut r, "HOTKEYS GET"), Value::Null);
}

#[test]
fn command_info_describes_hotkeys() {
    let node = Node::start();
    let mut r = node.raw();
    let Value::Array(info) = run(&mut r, "COMMAND INFO hotkeys") else {
        panic!("COMMAND INFO");
    };
    let Value::Array(entry) = &info[0] else {
        panic!("entry {info:?}");
    };
    assert_eq!(entry[0], Value::Bulk(b"hotkeys".to_vec()));
    assert_eq!(entry[1], Value::Int(-2));
    let Value::Array(subs) = &entry[9] else {
        panic!("subcommands {entry:?}");
    };
    let names: Vec<Value> = subs
        .iter()
        .map(|s| match s {
            Value::Array(e) => e[0].clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    let expected: Vec<Value> = ["get", "reset", "start", "stop"]
        .iter()
        .map(|s| Value::Bulk(format!("hotkeys|{s}").into_bytes()))
        .collect();
    assert_eq!(names, expected);
    // ACL categories as Redis's JSON says: the subcommands are admin commands.
    assert_eq!(
        run(&mut r, "ACL DRYRUN default HOTKEYS GET"),
        ok(),
        "the default user may"
    );
    run(&mut r, "ACL SETUSER watcher on nopass +@all -@admin");
    assert!(matches!(
        run(&mut r, "ACL DRYRUN watcher HOTKEYS START METRICS 1 CPU"),
        Value::Bulk(_)
    ));
}

/// Without any session, the background summaries (1 command in 64) find the hot key too.
#[test]
fn background_sampling_finds_the_hot_key() {
    let node = Node::start();
    skewed_reads(&node, 20_000);
    let door = &node.shared().door;
    assert_eq!(door.stats.hotkeys.current_ratio(), 64);
    let top = door.stats.hotkeys.background_top(&door.stats, 3);
    assert_eq!(top.by_requests[0].key, b"hot");
    assert_eq!(top.by_net_bytes[0].key, b"hot");
    assert_eq!(top.by_cpu_nanos[0].key, b"hot");
    // About 16,000 reads of `hot`, one in 64 sampled (fewer if a decay came between).
    let n = top.by_requests[0].count;
    assert!((20..600).contains(&n), "{n} sampled reads of hot");
    // Its share of the recent requests is about the 80% it was read with.
    let recent = door.stats.hotkeys.recent(&door.stats, 3).unwrap();
    assert_eq!(recent.keys[0].key, b"hot");
    assert_eq!(recent.ratio, 64);
    let share = recent.keys[0].count as f64 / recent.total as f64;
    assert!((0.6..0.95).contains(&share), "share {share}");
}

/// The background summaries halve every second: a key read no more cools down.
#[test]
fn background_counts_decay_when_the_key_cools() {
    let node = Node::start();
    skewed_reads(&node, 10_000);
    let door = &node.shared().door;
    let before = door.stats.hotkeys.recent(&door.stats, 1).unwrap().keys[0].count;
    assert!(before > 0);
    // Three decays, with no reads between.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let cooled = loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let recent = door.stats.hotkeys.recent(&door.stats, 1).unwrap();
        let now = recent.keys.first().map_or(0, |h| h.count);
        if now <= before / 8 {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
    };
    assert!(cooled, "the hot key's count never decayed from {before}");
    // A session's counts do not decay: they are the session's whole run.
    let mut r = node.raw();
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 CPU SAMPLE 1"), ok());
    skewed_reads(&node, 2_000);
    assert!(door.stats.hotkeys.recent(&door.stats, 1).is_none());
}

/// A one-node cluster, once it serves every slot.
fn cluster_node() -> Node {
    let node = Node::start_with(|c| c.cluster_enabled = true);
    let mut r = node.raw();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&run(&mut r, "CLUSTER INFO")).contains("cluster_state:ok") {
        assert!(Instant::now() < deadline, "the one-node cluster is up");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

fn slot_of(r: &mut Raw, key: &str) -> i64 {
    int(&run(r, &format!("CLUSTER KEYSLOT {key}")))
}

/// `HOTKEYS START ... SLOTS` on a cluster's node (Redis's `tests/unit/hotkeys.tcl`, cluster
/// part): only keys of the selected slots are tracked, `GET` lists the slots as ranges and adds
/// the `*-selected-slots` fields, and wrong slot lists answer Redis's errors.
#[test]
fn slots_restrict_a_session_on_a_cluster_node() {
    let node = cluster_node();
    let mut r = node.raw();
    let (a, b, other) = ("{06S}key", "{4oi}key", "{zzz}key");
    let (slot_a, slot_b, slot_other) = (
        slot_of(&mut r, a),
        slot_of(&mut r, b),
        slot_of(&mut r, other),
    );
    assert!(slot_a != slot_b && slot_a != slot_other && slot_b != slot_other);

    let start = format!("HOTKEYS START METRICS 2 CPU NET SLOTS 2 {slot_b} {slot_a}");
    assert_eq!(run(&mut r, &start), ok());
    for i in 0..50 {
        for key in [a, b, other] {
            let line = format!("SET {key}_{} value_{i}", i % 5);
            assert_eq!(run(&mut r, &line), ok());
        }
    }
    // A keyless command is on no slot.
    assert_eq!(run(&mut r, "PING"), Value::Simple(b"PONG".to_vec()));
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    let f = fields(run(&mut r, "HOTKEYS GET"));
    let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "tracking-active",
            "sample-ratio",
            "selected-slots",
            "all-commands-selected-slots-us",
            "all-commands-all-slots-us",
            "net-bytes-all-commands-selected-slots",
            "net-bytes-all-commands-all-slots",
            "collection-start-time-unix-ms",
            "collection-duration-ms",
            "total-cpu-time-user-ms",
            "total-cpu-time-sys-ms",
            "total-net-bytes",
            "by-cpu-time-us",
            "by-net-bytes",
        ]
    );
    let mut sorted = [slot_a, slot_b];
    sorted.sort();
    assert_eq!(
        field(&f, "selected-slots"),
        &Value::Array(
            sorted
                .iter()
                .map(|&s| Value::Array(vec![Value::Int(s)]))
                .collect()
        )
    );
    for list in ["by-net-bytes", "by-cpu-time-us"] {
        let keys = ranking(field(&f, list));
        assert!(!keys.is_empty(), "{list}");
        assert!(
            keys.iter().all(|(k, _)| !k.starts_with(other)),
            "{list}: {keys:?}"
        );
        for tag in [a, b] {
            assert!(
                keys.iter().any(|(k, _)| k.starts_with(tag)),
                "{list}: {keys:?}"
            );
        }
    }
    // Every SET of a selected slot is counted (100 of them, at least 35 bytes each), the
    // others are not: the node's totals have all 150, and more.
    let selected_net = int(field(&f, "net-bytes-all-commands-selected-slots"));
    let all_net = int(field(&f, "net-bytes-all-commands-all-slots"));
    assert!(selected_net >= 100 * 35, "{selected_net}");
    assert_eq!(
        int(field(&f, "total-net-bytes")),
        selected_net,
        "SAMPLE 1: every command"
    );
    assert!(
        all_net > selected_net * 3 / 2,
        "{all_net} vs {selected_net}"
    );
    assert!(
        int(field(&f, "all-commands-selected-slots-us"))
            <= int(field(&f, "all-commands-all-slots-us"))
    );
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());

    // With SAMPLE above 1 the sampled commands' fields come too, each before its sibling.
    let start = format!("HOTKEYS START METRICS 1 NET SAMPLE 10 SLOTS 1 {slot_a}");
    assert_eq!(run(&mut r, &start), ok());
    for i in 0..200 {
        run(&mut r, &format!("GET {a}_{}", i % 50));
    }
    let f = fields(run(&mut r, "HOTKEYS GET"));
    let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names[..9],
        [
            "tracking-active",
            "sample-ratio",
            "selected-slots",
            "sampled-commands-selected-slots-us",
            "all-commands-selected-slots-us",
            "all-commands-all-slots-us",
            "net-bytes-sampled-commands-selected-slots",
            "net-bytes-all-commands-selected-slots",
            "net-bytes-all-commands-all-slots",
        ]
    );
    assert_eq!(int(field(&f, "tracking-active")), 1);
    assert_eq!(
        field(&f, "selected-slots"),
        &Value::Array(vec![Value::Array(vec![Value::Int(slot_a)])])
    );
    let sampled = int(field(&f, "net-bytes-sampled-commands-selected-slots"));
    let all = int(field(&f, "net-bytes-all-commands-selected-slots"));
    assert!(sampled < all, "{sampled} of {all} bytes sampled");
    assert_eq!(int(field(&f, "total-net-bytes")), sampled);
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());

    // Adjacent slots merge into ranges, in order.
    assert_eq!(
        run(&mut r, "HOTKEYS START METRICS 1 CPU SLOTS 6 10 5 1 0 6 2"),
        ok()
    );
    let f = fields(run(&mut r, "HOTKEYS GET"));
    let ranges = |pairs: &[&[i64]]| {
        Value::Array(
            pairs
                .iter()
                .map(|p| Value::Array(p.iter().map(|&s| Value::Int(s)).collect()))
                .collect(),
        )
    };
    assert_eq!(
        field(&f, "selected-slots"),
        &ranges(&[&[0, 2], &[5, 6], &[10]])
    );
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());
    // Without SLOTS: the node's slots, all of them here, and no `*-selected-slots` fields.
    assert_eq!(run(&mut r, "HOTKEYS START METRICS 1 CPU SAMPLE 2"), ok());
    let f = fields(run(&mut r, "HOTKEYS GET"));
    assert_eq!(field(&f, "selected-slots"), &ranges(&[&[0, 16383]]));
    assert!(
        f.iter()
            .all(|(k, _)| !k.contains("selected-slots-") && !k.ends_with("-selected-slots")),
        "{f:?}"
    );
    assert_eq!(run(&mut r, "HOTKEYS STOP"), ok());
    assert_eq!(run(&mut r, "HOTKEYS RESET"), ok());

    let cases = [
        ("SLOTS 2 0", "ERR not enough slot numbers provided"),
        ("SLOTS 2 0 0", "ERR duplicate slot number"),
        (
            "SLOTS 1 0 SLOTS 1 5",
            "ERR SLOTS parameter already specified",
        ),
        ("SLOTS 1 -1", "ERR Invalid or out of range slot"),
        ("SLOTS 1 16384", "ERR Invalid or out of range slot"),
        ("SLOTS 1 abc", "ERR Invalid or out of range slot"),
        ("SLOTS 0 1", "ERR SLOTS count must be between 1 and 16384"),
        (
            "SLOTS 16385 1",
            "ERR SLOTS count must be between 1 and 16384",
        ),
        ("SLOTS 1", "ERR not enough slot numbers provided"),
        ("SLOTS", "ERR syntax error"),
    ];
    for (tail, error) in cases {
        let line = format!("HOTKEYS START METRICS 1 CPU {tail}");
        assert_eq!(run(&mut r, &line), err(error), "{line}");
    }
    // None of them started anything.
    assert_eq!(run(&mut r, "HOTKEYS GET"), Value::Null);
}
