//! A real node's resident memory stays within 1.2x of `maxmemory` when it is filled past the
//! limit, whatever the value size and however the sizes change (`allkeys-lru`, and
//! `volatile-lru` with a TTL on every key).
//!
//! Each test starts a `shoal server` with two worker threads (so that values written on one
//! thread are evicted by writes on the other, as in production) and `maxmemory 64mb`, writes
//! 1.5 x `maxmemory` of values of one size over two pipelined connections (one per worker),
//! which replaces every older key, then the next size: 100 B, 1 KB, 4 KB, 100 KB, back to
//! 100 B, then 1 KB. After each size it reads `VmRSS` from `/proc/<pid>/status`.
//!
//! What is compared with `maxmemory` is the RSS *growth*: RSS minus the node's RSS when idle
//! (after a few commands, so that the code they run is paged in). A debug binary's own RSS is
//! about 18 MB, mostly code: more than a quarter of `maxmemory` here, and not what `maxmemory`
//! bounds; a `maxmemory` large enough to dwarf it would make the test slow on a debug build.
//! 64 MB rather than less because each of the node's 128 shards keeps up to one partly used
//! 64 KiB page (4 MiB on average, see `docs/store.md`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use shoal_testkit::testdir::TestDir;
use shoal_testkit::{Info, NodePorts, NodeProcess, NodeSpec};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
const MAXMEMORY: u64 = 64 << 20;
/// The bound on RSS growth over idle, as a multiple of `maxmemory`.
const BOUND: f64 = 1.2;
/// How long a node may take after a fill to give memory back: its upkeep runs ten times a
/// second for at most 2 ms each, which in a debug build covers only a few shards' index
/// shrinking or compaction per run.
const SETTLE: Duration = Duration::from_secs(5);

/// A `shoal server` child process (the test kit's, on ports below the ephemeral range);
/// killed when dropped.
struct Node {
    process: NodeProcess,
    _dir: TestDir,
}

impl Node {
    fn start(policy: &str) -> Node {
        let dir = TestDir::new("memory").expect("a log directory");
        let spec = NodeSpec {
            name: format!("node-{policy}"),
            binary: SHOAL.into(),
            ports: NodePorts::reserve_without_http().expect("free ports"),
            args: [
                "--threads",
                "2",
                "--log-level",
                "warn",
                "--maxmemory",
                &MAXMEMORY.to_string(),
                "--maxmemory-policy",
                policy,
            ]
            .map(String::from)
            .to_vec(),
            log: dir.path().join(format!("node-{policy}.log")),
            env: Vec::new(),
            nice: 0,
            password: None,
            dir: None,
        };
        let process = NodeProcess::spawn(spec).expect("shoal starts");
        let started = Instant::now();
        while TcpStream::connect(process.resp_addr()).is_err() {
            assert!(
                process.is_running(),
                "shoal exited:\n{}",
                process.log_tail(20)
            );
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "shoal did not listen on {} within 10 s",
                process.resp_addr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Node { process, _dir: dir }
    }

    fn addr(&self) -> String {
        self.process.resp_addr()
    }

    /// Resident set size in bytes, from `/proc/<pid>/status`.
    fn rss(&self) -> u64 {
        let pid = self.process.process().pid().expect("the node runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kb * 1024
    }

    /// `INFO memory`.
    fn info_memory(&self) -> String {
        let mut conn = TcpStream::connect(self.addr()).unwrap();
        let reply = roundtrip(&mut conn, &command_of(&[b"INFO", b"memory"]), 1);
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// Runs a few commands (so that the code serving them is paged in) and returns the RSS.
    fn idle_rss(&self) -> u64 {
        let mut conn = TcpStream::connect(self.addr()).unwrap();
        let mut batch = Vec::new();
        for i in 0..100 {
            let key = format!("warm:{i}");
            batch.extend(command_of(&[b"SET", key.as_bytes(), b"v", b"EX", b"3600"]));
            batch.extend(command_of(&[b"GET", key.as_bytes()]));
            batch.extend(command_of(&[b"DEL", key.as_bytes()]));
        }
        roundtrip(&mut conn, &batch, 300);
        self.info_memory();
        self.rss()
    }

    /// Writes `bytes` of `size`-byte values under fresh keys `{prefix}:{i}`, over two
    /// connections at once, pipelined; with a one-hour TTL when `ttl`.
    fn fill(&self, prefix: &str, size: usize, bytes: u64, ttl: bool) {
        let keys = (bytes / size as u64) as usize;
        std::thread::scope(|scope| {
            for part in 0..2 {
                let addr = self.addr();
                scope.spawn(move || {
                    let mut conn = TcpStream::connect(&addr).unwrap();
                    let value = vec![b'x'; size];
                    let (mut batch, mut pending) = (Vec::with_capacity(1 << 20), 0);
                    for i in (part..keys).step_by(2) {
                        let key = format!("{prefix}:{i}");
                        if ttl {
                            batch.extend(command_of(&[
                                b"SET",
                                key.as_bytes(),
                                &value,
                                b"EX",
                                b"3600",
                            ]));
                        } else {
                            batch.extend(command_of(&[b"SET", key.as_bytes(), &value]));
                        }
                        pending += 1;
                        if batch.len() >= 256 << 10 || pending == 1000 {
                            roundtrip(&mut conn, &batch, pending);
                            (batch, pending) = (Vec::with_capacity(1 << 20), 0);
                        }
                    }
                    if pending > 0 {
                        roundtrip(&mut conn, &batch, pending);
                    }
                });
            }
        });
    }
}

/// A numeric field of an `INFO` reply.
fn field(info: &str, name: &str) -> Option<u64> {
    Info::parse(info).u64(name)
}

/// A command in RESP.
fn command_of(args: &[&[u8]]) -> Vec<u8> {
    shoal_proto::request::encode(args)
}

/// Sends `batch` and reads `replies` replies (simple strings, integers, nulls or one bulk
/// string at most, as the commands here answer); panics on an error reply. Returns what it read.
fn roundtrip(conn: &mut TcpStream, batch: &[u8], replies: usize) -> Vec<u8> {
    conn.write_all(batch).unwrap();
    let mut input = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    let (mut seen, mut at) = (0, 0);
    while seen < replies {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "the node closed the connection");
        input.extend_from_slice(&chunk[..n]);
        // Count the complete replies read so far.
        while let Some(end) = reply_end(&input[at..]) {
            let reply = &input[at..at + end];
            assert!(
                reply[0] != b'-',
                "error reply: {}",
                String::from_utf8_lossy(reply)
            );
            at += end;
            seen += 1;
        }
    }
    input
}

/// The length of the complete reply at the start of `input`, if there is one.
fn reply_end(input: &[u8]) -> Option<usize> {
    let line = input.windows(2).position(|w| w == b"\r\n")? + 2;
    if input[0] != b'$' {
        return Some(line);
    }
    let len: i64 = std::str::from_utf8(&input[1..line - 2])
        .ok()?
        .parse()
        .ok()?;
    if len < 0 {
        return Some(line);
    }
    let end = line + len as usize + 2;
    (input.len() >= end).then_some(end)
}

/// Fills a node under `policy` with each value size in turn and checks its RSS growth after
/// each.
fn rss_stays_bounded(policy: &str) {
    let started = Instant::now();
    let node = Node::start(policy);
    let idle = node.idle_rss();
    let ttl = policy.starts_with("volatile");
    let mut failures = Vec::new();
    for (phase, size) in [100, 1000, 4096, 100_000, 100, 1000]
        .into_iter()
        .enumerate()
    {
        node.fill(&format!("p{phase}"), size, MAXMEMORY * 3 / 2, ttl);
        // Room is made before each write, so the last write may be over by its own size.
        let used = field(&node.info_memory(), "used_memory").expect("used_memory in INFO");
        assert!(
            used <= MAXMEMORY + size as u64 + 64,
            "used_memory {used} over maxmemory after {size}-byte values"
        );
        // Give the node's upkeep (compaction, handing memory back) a few ticks.
        let settle = Instant::now();
        let ratio = loop {
            let ratio = node.rss().saturating_sub(idle) as f64 / MAXMEMORY as f64;
            if ratio <= BOUND || settle.elapsed() >= SETTLE {
                break ratio;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let info = node.info_memory();
        let mib = |name: &str| field(&info, name).map_or(f64::NAN, |v| v as f64 / (1 << 20) as f64);
        eprintln!(
            "{policy}: after {size:>6}-byte values (RSS - idle) / maxmemory = {ratio:.3} \
             (settled in {:.2?}; idle RSS {:.1} MiB; MiB: used {:.1}, malloc allocated {:.1} \
             free {:.1}, arena reserved {:.1} used {:.1} free {:.1}, index {:.1})",
            settle.elapsed(),
            idle as f64 / (1 << 20) as f64,
            mib("used_memory"),
            mib("allocator_allocated"),
            mib("allocator_free"),
            mib("shoal_arena_reserved"),
            mib("shoal_arena_used"),
            mib("shoal_arena_free"),
            mib("used_memory_overhead"),
        );
        if ratio > BOUND {
            failures.push(format!("{size}-byte values (phase {phase}): {ratio:.3}"));
        }
    }
    eprintln!("{policy}: {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{policy}: RSS growth over {BOUND} x maxmemory after {failures:?}"
    );
}

#[test]
fn rss_stays_within_bound_under_allkeys_lru() {
    rss_stays_bounded("allkeys-lru");
}

#[test]
fn rss_stays_within_bound_under_volatile_lru() {
    rss_stays_bounded("volatile-lru");
}
