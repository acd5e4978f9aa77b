//! Test helpers: real Shoal nodes in-process, fake RESP servers, fake cluster buses, maps.
//!
//! Every wait is bounded: a test fails with a message rather than hangs.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use shoal_client::{Client, ClientConfig, ClusterMap, Value};
use shoal_cluster::bus::{self, Reply, Request};
use shoal_cluster::{NodeId, NodeInfo, ShardId, ShardInfo, Slot, SlotTable};
use shoal_proto::{Parsed, RequestParser};
use shoal_testkit::LocalNode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long any awaited condition may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// A client configuration for tests: short timeouts and backoffs, and the test kit's cluster
/// secret (every node and fake bus here has it).
pub fn config() -> ClientConfig {
    ClientConfig::default()
        .with_cluster_secret(shoal_testkit::cluster_secret())
        .with_connect_timeout(Duration::from_secs(2))
        .with_request_timeout(Duration::from_secs(2))
        .with_backoff(Duration::from_millis(5), Duration::from_millis(50))
}

/// Waits until `check` holds, polling every few milliseconds; panics after [`WAIT`].
pub async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until `client`'s map satisfies `check`, woken by each map change; panics with `what`
/// and the last map after `timeout`.
pub async fn until_map(
    client: &shoal_client::Client,
    what: &str,
    timeout: Duration,
    check: impl Fn(&ClusterMap) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let map = client.map();
        if check(&map) {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(
            tokio::time::timeout(left, client.map_changed())
                .await
                .is_ok(),
            "timed out waiting for {what}: {map:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Real nodes

/// A Shoal node running in this process ([`LocalNode`], one worker thread); dropping it
/// stops it.
pub struct Node {
    local: LocalNode,
    pub addr: SocketAddr,
}

impl Node {
    pub fn start() -> Node {
        Node::start_with(|_| {})
    }

    pub fn start_with(tweak: impl Fn(&mut shoal_server::Config)) -> Node {
        let local = LocalNode::start_with(|config| {
            config.threads = 1;
            tweak(config);
        })
        .expect("the node starts");
        let addr = local.addr();
        Node { local, addr }
    }

    /// A direct synchronous connection (the `redis` crate).
    pub fn con(&self) -> redis::Connection {
        let con = redis::Client::open(format!("redis://{}/", self.addr))
            .unwrap()
            .get_connection_with_timeout(WAIT)
            .expect("connects");
        con.set_read_timeout(Some(WAIT)).unwrap();
        con
    }

    /// Every key the node holds.
    pub fn keys(&self) -> Vec<String> {
        redis::cmd("KEYS").arg("*").query(&mut self.con()).unwrap()
    }
}

/// The `calls=` count of `cmdstat_<command>` in a node's `INFO commandstats`.
pub fn calls(node: &Node, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut node.con())
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Maps

/// A node entry for `addr`, with its bus at `bus_port`.
pub fn node_info(id: u64, addr: SocketAddr, bus_port: u16) -> NodeInfo {
    NodeInfo {
        host: addr.ip().to_string(),
        bus_port,
        ..NodeInfo::local(NodeId(id), addr.port())
    }
}

/// A map of one-primary shards: shard `i` is the node at `shards[i].0` (bus port
/// `shards[i].1`) and owns the slots `shards[i].2`.
pub fn map_with_buses(epoch: u64, shards: &[(SocketAddr, u16, Range<Slot>)]) -> ClusterMap {
    let mut map = ClusterMap::empty();
    map.epoch = epoch;
    map.slots = SlotTable::empty();
    for (i, (addr, bus_port, slots)) in shards.iter().enumerate() {
        let id = i as u64 + 1;
        map.nodes
            .insert(NodeId(id), node_info(id, *addr, *bus_port));
        map.shards.push(ShardInfo {
            id: ShardId(i as u32),
            primary: NodeId(id),
            replicas: vec![],
        });
        for slot in slots.clone() {
            map.slots.set(slot, Some(ShardId(i as u32)));
        }
    }
    map.next_shard = shards.len() as u32;
    map
}

/// [`map_with_buses`] without buses.
pub fn map(epoch: u64, shards: &[(SocketAddr, Range<Slot>)]) -> ClusterMap {
    let shards: Vec<_> = shards.iter().map(|(a, r)| (*a, 0, r.clone())).collect();
    map_with_buses(epoch, &shards)
}

/// The whole slot range.
pub const ALL: Range<Slot> = 0..16384;

// ---------------------------------------------------------------------------------------------
// Fake RESP servers

/// What a fake server does with one command.
pub enum Answer {
    /// Sends these bytes.
    Bytes(Vec<u8>),
    /// Sends nothing (the request stays in flight).
    Hold,
    /// Closes the connection.
    Close,
}

/// A command as a fake server saw it.
pub struct Call {
    pub args: Vec<Vec<u8>>,
    /// Which connection (0 for the first accepted).
    pub conn: usize,
}

impl Call {
    pub fn name(&self) -> String {
        String::from_utf8_lossy(&self.args[0]).to_ascii_uppercase()
    }
    pub fn arg(&self, i: usize) -> &[u8] {
        &self.args[i]
    }
}

pub type Handler = Arc<dyn Fn(&Call) -> Answer + Send + Sync>;

/// A bulk string reply.
pub fn bulk(data: &[u8]) -> Answer {
    let mut out = format!("${}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    Answer::Bytes(out)
}

/// A raw reply.
pub fn raw(text: &str) -> Answer {
    Answer::Bytes(text.as_bytes().to_vec())
}

/// Counters of a fake server.
#[derive(Default)]
pub struct FakeStats {
    pub connections: AtomicUsize,
    /// Reads that returned data.
    pub reads: AtomicUsize,
    pub commands: AtomicUsize,
    /// Every command name, in arrival order.
    pub log: Mutex<Vec<String>>,
}

/// A RESP server on loopback answering through a handler. Dropping or [`kill`](Self::kill)ing
/// it closes the listener and every connection.
pub struct FakeServer {
    pub addr: SocketAddr,
    pub stats: Arc<FakeStats>,
    task: JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(handler: impl Fn(&Call) -> Answer + Send + Sync + 'static) -> FakeServer {
        FakeServer::start_on("127.0.0.1:0".parse().unwrap(), Arc::new(handler)).await
    }

    pub async fn start_on(addr: SocketAddr, handler: Handler) -> FakeServer {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        socket.bind(addr).expect("binds");
        let listener = socket.listen(128).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(FakeStats::default());
        let task = tokio::spawn(serve(listener, handler, stats.clone()));
        FakeServer { addr, stats, task }
    }

    /// Closes the listener (its port is free when this returns) and every connection.
    pub async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    pub fn commands(&self) -> usize {
        self.stats.commands.load(Ordering::SeqCst)
    }

    pub fn log(&self) -> Vec<String> {
        self.stats.log.lock().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, handler: Handler, stats: Arc<FakeStats>) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let index = stats.connections.fetch_add(1, Ordering::SeqCst);
        conns.spawn(serve_conn(stream, index, handler.clone(), stats.clone()));
    }
}

async fn serve_conn(
    mut stream: tokio::net::TcpStream,
    conn: usize,
    handler: Handler,
    stats: Arc<FakeStats>,
) {
    let mut parser = RequestParser::new(Default::default());
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        stats.reads.fetch_add(1, Ordering::SeqCst);
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut close = false;
        loop {
            match parser.parse(&buf) {
                Ok(Parsed::Command { consumed }) => {
                    let args: Vec<Vec<u8>> = parser.argv(&buf).iter().map(|a| a.to_vec()).collect();
                    buf.drain(..consumed);
                    let call = Call { args, conn };
                    stats.log.lock().push(call.name());
                    stats.commands.fetch_add(1, Ordering::SeqCst);
                    match handler(&call) {
                        Answer::Bytes(bytes) => out.extend_from_slice(&bytes),
                        Answer::Hold => {}
                        Answer::Close => {
                            close = true;
                            break;
                        }
                    }
                }
                Ok(Parsed::Empty { consumed }) => {
                    buf.drain(..consumed);
                }
                Ok(Parsed::Incomplete { .. }) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() && stream.write_all(&out).await.is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fake cluster buses

/// What a fake bus sends on its subscriptions.
#[derive(Clone, Debug)]
pub enum Push {
    /// A map.
    Map(Box<ClusterMap>),
    /// Nothing more, ever (the connection stays open).
    Silence,
}

/// A cluster bus that answers `GetMap` with its current map and streams pushes to
/// subscribers, pinging every 100 ms while it has nothing to say.
pub struct FakeBus {
    pub addr: SocketAddr,
    /// The map `GetMap` answers.
    pub current: Arc<Mutex<ClusterMap>>,
    /// Requests received, as `GetMap` or `Subscribe(after)`.
    pub requests: Arc<Mutex<Vec<String>>>,
    push: watch::Sender<Vec<Push>>,
    task: JoinHandle<()>,
}

impl FakeBus {
    pub async fn start(map: ClusterMap) -> FakeBus {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let current = Arc::new(Mutex::new(map));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (push, _) = watch::channel(Vec::new());
        let task = tokio::spawn(bus_serve(
            listener,
            current.clone(),
            requests.clone(),
            push.clone(),
        ));
        FakeBus {
            addr,
            current,
            requests,
            push,
            task,
        }
    }

    /// Sends `push` on every subscription (present and future ones get the whole script).
    pub fn push(&self, push: Push) {
        self.push.send_modify(|script| script.push(push));
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().clone()
    }
}

impl Drop for FakeBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bus_serve(
    listener: TcpListener,
    current: Arc<Mutex<ClusterMap>>,
    requests: Arc<Mutex<Vec<String>>>,
    push: watch::Sender<Vec<Push>>,
) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let (current, requests, mut script) = (current.clone(), requests.clone(), push.subscribe());
        conns.spawn(async move {
            let secret = shoal_testkit::cluster_secret();
            if shoal_cluster::bus_auth::accept(&mut stream, &secret)
                .await
                .is_err()
            {
                return;
            }
            loop {
                let request: Request = match bus::read_frame(&mut stream).await {
                    Ok(r) => r,
                    Err(_) => return,
                };
                match request {
                    Request::GetMap => {
                        requests.lock().push("GetMap".into());
                        let map = current.lock().clone();
                        if bus::write_frame(&mut stream, &Reply::Map(map))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Request::Subscribe { after } => {
                        requests.lock().push(format!("Subscribe({after})"));
                        let mut sent = 0;
                        loop {
                            let pending: Vec<Push> = script.borrow_and_update()[sent..].to_vec();
                            for p in pending {
                                sent += 1;
                                match p {
                                    Push::Map(map) => {
                                        if bus::write_frame(&mut stream, &Reply::Map(*map))
                                            .await
                                            .is_err()
                                        {
                                            return;
                                        }
                                    }
                                    Push::Silence => {
                                        // Keep the socket open, say nothing.
                                        std::future::pending::<()>().await;
                                    }
                                }
                            }
                            tokio::select! {
                                _ = script.changed() => {}
                                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                                    if bus::write_frame(&mut stream, &Reply::Ping).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    }
                    other => {
                        requests.lock().push(format!("{other:?}"));
                        let _ = bus::write_frame(&mut stream, &Reply::Error("no".into())).await;
                    }
                }
            }
        });
    }
}

/// Three one-node shards started in this process, and a client following their map, once
/// every node says `cluster_state:ok` (until then a node answers `CLUSTERDOWN`).
pub async fn three_shards() -> (Vec<Node>, Client) {
    let founder = Node::start_with(|c| {
        c.cluster_enabled = true;
        c.controller = true;
    });
    let seed = founder.addr.to_string();
    let mut nodes = vec![founder];
    for _ in 0..2 {
        nodes.push(Node::start_with(|c| {
            c.cluster_join = seed.clone();
            c.controller = true;
        }));
    }
    let mut config = config();
    config.seeds = vec![seed];
    let client = Client::connect(config).await.unwrap();
    until_map(
        &client,
        "every slot placed on three shards",
        Duration::from_secs(15),
        |map| {
            map.shards.len() == 3
                && map.slots_assigned() == shoal_cluster::SLOTS
                && map.migrations.is_empty()
        },
    )
    .await;
    // The client has the map; each node must have it too (until then it answers
    // CLUSTERDOWN), which its CLUSTER INFO says.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    for node in shoal_client::all_nodes(&client.map()) {
        loop {
            let info = client.command_on(&node, &["CLUSTER", "INFO"]).await;
            if matches!(&info, Ok(Value::Bulk(text)) | Ok(Value::Verbatim(_, text))
                if String::from_utf8_lossy(text).contains("cluster_state:ok"))
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{node} never said cluster_state:ok: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    (nodes, client)
}
