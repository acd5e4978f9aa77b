//! Test helpers: a real three-node cluster in-process, proxies in front of it, `redis` crate
//! connections, and a raw RESP connection that shows replies byte for byte.
//!
//! Every wait is bounded: a test fails with a message rather than hangs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shoal_client::Value;
use shoal_proxy::{Proxy, ProxyConfig};
use shoal_testkit::LocalNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any awaited condition may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// Slots in a cluster.
pub const SLOTS: usize = 16384;

/// A cluster of three one-node shards running in this process, and a proxy in front of it.
/// Never stopped: the process ends with the test binary.
pub struct Harness {
    pub nodes: Vec<LocalNode>,
    pub proxy: Proxy,
}

impl Harness {
    /// Starts three nodes and a proxy (`tweak`ed), and waits until the proxy's map places
    /// every slot on three shards.
    pub fn start(tweak: impl FnOnce(&mut ProxyConfig)) -> Harness {
        let founder = start_node(|c| {
            c.cluster_enabled = true;
            c.controller = true;
        });
        let seed = founder.addr().to_string();
        let mut nodes = vec![founder];
        for _ in 0..2 {
            nodes.push(start_node(|c| {
                c.cluster_join = seed.clone();
                c.controller = true;
            }));
        }
        let proxy = start_proxy(&seed, tweak);
        let deadline = Instant::now() + WAIT;
        loop {
            let map = proxy.client().map();
            if map.shards.len() == 3 && map.slots_assigned() == SLOTS && map.migrations.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster never placed every slot on three shards: {map:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Harness { nodes, proxy }
    }

    /// The proxy's RESP address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.resp_addr()
    }

    /// A seed for more proxies.
    pub fn seed(&self) -> String {
        self.nodes[0].addr().to_string()
    }

    /// The RESP address of the primary owning `slot`, by the proxy's map.
    pub fn owner(&self, slot: u16) -> String {
        self.proxy
            .client()
            .map()
            .primary_of_slot(slot)
            .expect("every slot has an owner")
            .resp_addr()
    }
}

/// The cluster most tests share (each uses keys of its own).
pub fn shared() -> &'static Harness {
    static SHARED: OnceLock<Harness> = OnceLock::new();
    SHARED.get_or_init(|| {
        Harness::start(|c| {
            c.http_port = Some(0);
        })
    })
}

/// Starts a node in this process, with one worker thread.
pub fn start_node(tweak: impl Fn(&mut shoal_server::Config)) -> LocalNode {
    LocalNode::start_with(|config| {
        config.threads = 1;
        tweak(config);
    })
    .expect("the node starts")
}

/// Starts a proxy for the cluster `seed` belongs to, on a free port, with two threads.
pub fn start_proxy(seed: &str, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
    let mut config = ProxyConfig {
        port: 0,
        threads: 2,
        cluster: vec![seed.to_string()],
        cluster_secret: Some(shoal_testkit::cluster_secret()),
        ..ProxyConfig::default()
    };
    tweak(&mut config);
    Proxy::start(config).expect("the proxy starts")
}

/// An async `redis` connection to `addr` (`resp3` or RESP2).
pub async fn connect(addr: SocketAddr, resp3: bool) -> redis::aio::MultiplexedConnection {
    let protocol = if resp3 { "?protocol=resp3" } else { "" };
    let client = redis::Client::open(format!("redis://{addr}/{protocol}")).unwrap();
    tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("connects in time")
        .expect("connects")
}

/// A synchronous `redis` connection straight to a node.
pub fn direct(addr: &str) -> redis::Connection {
    let con = redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_connection_with_timeout(WAIT)
        .expect("connects");
    con.set_read_timeout(Some(WAIT)).unwrap();
    con
}

/// A RESP connection that sends bytes and decodes replies itself.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: impl tokio::net::ToSocketAddrs) -> Raw {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connects in time")
            .expect("connects");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("sends");
    }

    /// Sends raw bytes; false if the peer is gone.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Sends one command as a multibulk frame.
    pub async fn send_command(&mut self, args: &[&[u8]]) {
        self.send(&frame(args)).await;
    }

    /// Sends a command and reads its reply.
    pub async fn call(&mut self, args: &[&str]) -> Value {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send_command(&args).await;
        self.reply().await
    }

    /// Reads until `n` more bytes have arrived (or the peer closed), and returns them.
    pub async fn read_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill().await == 0 {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// Reads one reply.
    pub async fn reply(&mut self) -> Value {
        loop {
            if let Some((value, used)) = shoal_proto::reply::decode(&self.buf).expect("RESP") {
                self.buf.drain(..used);
                return value;
            }
            assert!(
                self.fill().await > 0,
                "the connection closed before a reply"
            );
        }
    }

    /// Whether the peer closes the connection (with nothing more to read).
    pub async fn closed(&mut self) -> bool {
        self.buf.is_empty() && self.fill().await == 0
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("a reply in time")
            .unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }
}

/// An error reply's text.
pub fn error_text(value: &Value) -> String {
    match value {
        Value::Error(line) => String::from_utf8_lossy(line).into_owned(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// A bulk reply.
pub fn bulk(data: &str) -> Value {
    Value::Bulk(data.as_bytes().to_vec())
}

/// A simple string reply.
pub fn simple(data: &str) -> Value {
    Value::Simple(data.as_bytes().to_vec())
}

/// A request as a client sends it (a multibulk frame).
pub fn frame(args: &[&[u8]]) -> Vec<u8> {
    shoal_proto::request::encode(args)
}
