//! Helpers for the integration tests: a node started in-process on free loopback ports, raw
//! RESP connections for what a client library would smooth over, and `INFO` parsing.
//!
//! Every wait here is a bounded poll: tests fail with a message rather than hang.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

pub use shoal_proto::reply::Value;
use shoal_server::{Config, Server, Shared};
use shoal_testkit::LocalNode;

/// How long any single reply may take before a test gives up.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

static GATE: RwLock<()> = RwLock::new(());

/// Taken (shared) by every test of a binary that has a test measuring the whole process (CPU
/// time), which takes it exclusively with [`exclusive`]: tests of one binary share a process.
pub fn gate() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(|e| e.into_inner())
}

/// Runs alone among the tests that take [`gate`].
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GATE.write().unwrap_or_else(|e| e.into_inner())
}

/// A node running in this process ([`LocalNode`]), with the `redis` crate and raw RESP
/// connections to it. Dropping it stops the node and waits for its threads.
pub struct Node {
    local: LocalNode,
}

impl Node {
    /// A node with the default configuration (two worker threads, no HTTP listener).
    pub fn start() -> Node {
        Node::start_with(|_| {})
    }

    /// A node whose configuration `tweak` adjusts.
    pub fn start_with(tweak: impl Fn(&mut Config)) -> Node {
        Node {
            local: LocalNode::start_with(tweak).expect("the node starts"),
        }
    }

    /// The RESP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.local.addr()
    }

    /// The node's shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        self.local.shared()
    }

    /// `redis://` URL of the node (`resp3`: with `?protocol=resp3`).
    pub fn url(&self, resp3: bool) -> String {
        let protocol = if resp3 { "?protocol=resp3" } else { "" };
        format!("redis://{}/{protocol}", self.addr())
    }

    /// A `redis` crate client.
    pub fn client(&self, resp3: bool) -> redis::Client {
        redis::Client::open(self.url(resp3)).expect("a valid URL")
    }

    /// A synchronous `redis` crate connection (RESP2).
    pub fn con(&self) -> redis::Connection {
        self.con_with(false)
    }

    /// A synchronous `redis` crate connection, RESP3 if asked.
    pub fn con_with(&self, resp3: bool) -> redis::Connection {
        let con = self
            .client(resp3)
            .get_connection_with_timeout(REPLY_TIMEOUT)
            .expect("the node accepts a connection");
        con.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        con.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        con
    }

    /// A raw RESP connection.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr())
    }

    /// `INFO` (all sections) as field -> value.
    pub fn info(&self) -> HashMap<String, String> {
        let mut raw = self.raw();
        match raw.cmd(&[b"INFO", b"everything"]) {
            Value::Bulk(text) | Value::Verbatim(_, text) => parse_info(&text),
            other => panic!("INFO answered {other:?}"),
        }
    }

    /// One numeric `INFO` field.
    pub fn info_u64(&self, field: &str) -> u64 {
        let info = self.info();
        let value = info
            .get(field)
            .unwrap_or_else(|| panic!("INFO has no field {field}"));
        value
            .parse()
            .unwrap_or_else(|_| panic!("INFO field {field} is not a number: {value}"))
    }

    /// The HTTP listener's address, if the node serves HTTP (`http_port` set).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.local.server().http_addr()
    }

    /// The value of the unlabelled series `name` on the node's `/metrics` page (the node must
    /// serve HTTP).
    pub fn metric(&self, name: &str) -> u64 {
        let addr = self.http_addr().expect("the node serves HTTP");
        let mut stream = TcpStream::connect(addr).expect("connects to HTTP");
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .expect("a read timeout");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .expect("sends");
        let mut page = String::new();
        stream.read_to_string(&mut page).expect("the page");
        page.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} on the metrics page:\n{page}"))
    }

    /// Stops the node and waits for it.
    pub fn stop(self) {
        self.local.stop();
    }

    /// Takes the server out, for tests of how it stops.
    pub fn into_server(self) -> Server {
        self.local.into_server()
    }
}

/// Parses `INFO` text into field -> value.
pub fn parse_info(text: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// How a connection ended, as seen by a reader.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// The server closed it (end of stream or reset).
    Yes,
    /// Nothing happened within the wait: still open.
    No,
}

/// A raw RESP connection with a reply decoder.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::from_stream(TcpStream::connect_timeout(&addr, REPLY_TIMEOUT).expect("connects"))
    }

    /// Wraps a connected socket.
    pub fn from_stream(stream: TcpStream) -> Raw {
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .expect("the node takes the bytes");
    }

    /// Sends a command and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> Value {
        self.send(&frame(args));
        self.reply()
    }

    /// Sends a command given as words and reads its reply.
    pub fn cmd_str(&mut self, line: &str) -> Value {
        let args: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        self.cmd(&args)
    }

    /// Reads one reply; panics if none comes within [`REPLY_TIMEOUT`] or the connection ends.
    pub fn reply(&mut self) -> Value {
        match self.try_reply(REPLY_TIMEOUT) {
            Ok(Some(value)) => value,
            Ok(None) => panic!("no reply within {REPLY_TIMEOUT:?}"),
            Err(e) => panic!("the connection ended before a reply: {e}"),
        }
    }

    /// Reads one reply if one comes within `wait`: `Ok(None)` if none did, `Err` if the
    /// connection ended.
    pub fn try_reply(&mut self, wait: Duration) -> std::io::Result<Option<Value>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some((value, used)) = shoal_proto::reply::decode(&self.buf).expect("valid RESP")
            {
                self.buf.drain(..used);
                return Ok(Some(value));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 64 * 1024];
            let read = self.stream.read(&mut chunk);
            self.stream.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
            match read {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and drops whatever arrives for up to `wait`, and says whether the connection
    /// ended meanwhile. Returns how many bytes came, too.
    pub fn closed_within(&mut self, wait: Duration) -> (Closed, usize) {
        let deadline = Instant::now() + wait;
        let mut total = std::mem::take(&mut self.buf).len();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (Closed::No, total);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return (Closed::Yes, total),
                Ok(n) => total += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return (Closed::Yes, total),
            }
        }
    }

    /// Asserts the server closes the connection within `wait` (after any pending bytes).
    pub fn assert_closed(&mut self, wait: Duration, why: &str) {
        let (closed, _) = self.closed_within(wait);
        assert_eq!(
            closed,
            Closed::Yes,
            "{why}: the connection should be closed"
        );
    }

    /// Asserts nothing arrives and the connection stays open for `wait`.
    pub fn assert_open_and_quiet(&mut self, wait: Duration, why: &str) {
        let (closed, bytes) = self.closed_within(wait);
        assert_eq!(
            (closed, bytes),
            (Closed::No, 0),
            "{why}: the connection should stay open and quiet"
        );
    }
}

/// The simple-string or bulk text of a reply, for comparisons.
pub fn text(value: &Value) -> String {
    match value {
        Value::Simple(s) | Value::Bulk(s) | Value::Error(s) | Value::Verbatim(_, s) => {
            String::from_utf8_lossy(s).into_owned()
        }
        Value::Int(n) => n.to_string(),
        other => panic!("not a text reply: {other:?}"),
    }
}

/// Polls `check` every `step` until it holds or `within` passes; returns whether it held.
pub fn eventually(within: Duration, step: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(step);
    }
}

/// A small deterministic pseudo-random generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// A request as a client sends it (a multibulk frame).
pub fn frame(args: &[&[u8]]) -> Vec<u8> {
    shoal_proto::request::encode(args)
}
