//! The cluster bus: how nodes, the controller, proxies and smart clients talk about the cluster
//! (never about keys). Every node listens on its bus port (by default its RESP port + 10000, as
//! Redis Cluster's bus).
//!
//! Every connection opens with the handshake of [`crate::bus_auth`]: each side proves that it
//! knows the cluster secret ([`BusSecret`]) before anything else is read. With `tls-cluster`,
//! a TLS session comes first and the handshake runs inside it (see `bus_tls`): what a process
//! needs to connect is its [`BusCredentials`]. Then frames flow: a
//! frame is a 4-byte big-endian length and that many bytes of JSON. A connection carries one
//! [`Request`] and its [`Reply`] at a time, except after [`Request::Subscribe`], when the server
//! sends a [`Reply::Map`] whenever its map changes, a [`Reply::HotKeys`] first and whenever the
//! cluster's hot keys change, and a [`Reply::Ping`] every [`SUBSCRIPTION_PING`] of silence,
//! until either side closes. A subscriber must take all three.
//!
//! JSON keeps the bus debuggable with a hex dump and costs nothing that matters here: the bus
//! carries a few small messages per node per second, not requests.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bus_auth::{self, BusSecret, HandshakeError};
use crate::bus_credentials::BusCredentials;
use crate::bus_tls::{self, BusStream, BusTlsAcceptor};
pub use crate::decide::ReplicationReport;
use crate::hot_keys::HotKeySet;
use crate::map::{ClusterMap, Epoch, NodeId, NodeInfo, Role, ShardId};
use crate::raft::TypeConfig;

/// Largest frame either side accepts.
const MAX_FRAME: usize = 64 << 20;

/// How often a subscription that has nothing new says it is alive.
pub(crate) const SUBSCRIPTION_PING: Duration = Duration::from_millis(500);

/// What went wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Connecting, reading or writing failed.
    #[error("cluster bus I/O with {addr}: {source}")]
    Io {
        /// The peer.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The peer did not answer in time.
    #[error("cluster bus: {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The peer.
        addr: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// The peer sent something that is not a bus message.
    #[error("cluster bus: bad frame from {addr}: {reason}")]
    BadFrame {
        /// The peer.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// The peer closed the connection.
    #[error("cluster bus: {addr} closed the connection")]
    Closed {
        /// The peer.
        addr: String,
    },
    /// The handshake failed: one side does not know the other's cluster secret.
    #[error("cluster bus: {addr}: {reason}")]
    Auth {
        /// The peer.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// TLS with the peer failed (`tls-cluster`): its bus does not speak TLS, or one side does
    /// not accept the other's certificate.
    #[error("cluster bus: TLS with {addr} failed: {reason}")]
    Tls {
        /// The peer.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// A plain connection was taken but no bus hello came: the peer's bus speaks TLS
    /// (`tls-cluster yes`) and waits for a TLS handshake, or the node is paused or overloaded.
    #[error(
        "cluster bus: {addr} sent no cluster bus hello {}: if its bus speaks TLS \
         (tls-cluster yes), give this process the cluster's TLS settings (its CA, and a \
         certificate the CA signed); else the node is paused or overloaded",
        if *closed { "and closed the connection".to_string() } else { format!("within {waited:?}") }
    )]
    NoHello {
        /// The peer.
        addr: String,
        /// Whether it closed the connection (else it said nothing).
        closed: bool,
        /// How long this side was willing to wait.
        waited: Duration,
    },
    /// The peer answered with an error.
    #[error("cluster bus: {addr} refused: {message}")]
    Refused {
        /// The peer.
        addr: String,
        /// Its message.
        message: String,
    },
}

/// A message to a node's bus.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// A Raft RPC between controller members, for the member with this id (a process that
    /// took over a departed member's port must not answer in its name).
    Raft(NodeId, RaftRequest),
    /// A node asks to become part of the cluster (handled by the controller's leader).
    Join(NodeInfo),
    /// A node reports that it is alive (to the controller's leader).
    Heartbeat(Heartbeat),
    /// The current map, once.
    GetMap,
    /// Every map newer than `after`, pushed as it comes.
    Subscribe {
        /// The epoch the subscriber already has.
        after: Epoch,
    },
    /// Retire a node (handled by the controller's leader).
    RemoveNode(NodeId),
    /// Make this replica its shard's primary, or have this primary hand its shard to its most
    /// advanced healthy replica (a planned failover; the replica has caught up with its
    /// primary, which takes no writes meanwhile).
    Failover(NodeId),
    /// The cluster as the controller's leader sees it.
    Status,
    /// A node's load and replication state now (the leader asks replicas before promoting
    /// one, so it picks the most advanced by their current offsets, not their last
    /// heartbeat's).
    Report,
    /// A node tells a controller member that does not lead which map it holds (every
    /// second), so that a new leader knows which maps a silent primary may still hold.
    EpochReport {
        /// The node.
        node: NodeId,
        /// The epoch of its map.
        epoch: Epoch,
    },
    /// A primary whose controller lease is running out asks for a peer lease by its map of
    /// `epoch` (see `peer_lease`).
    PeerLease {
        /// The primary asking.
        primary: NodeId,
        /// The epoch of its map.
        epoch: Epoch,
    },
    /// The controller's leader, about to replace `primary`, asks this node to stop granting
    /// it peer leases until it holds a map newer than `epoch` or `hold_ms` have passed.
    Fence {
        /// The primary to be replaced.
        primary: NodeId,
        /// The epoch of the map that the replacement will supersede.
        epoch: Epoch,
        /// For how long at most (ms).
        hold_ms: u64,
    },
    /// Deliver these publications to this node's subscribers (relayed by the node their
    /// clients published them on; see `publish`). Answered with [`Reply::Noted`].
    Publish {
        /// The publications, in the order they were published.
        publications: Vec<crate::publish::Publication>,
    },
    /// Record an ACL user cluster-wide, as `ACL SETUSER` left it on the node that ran it, or
    /// remove it (handled by the controller's leader).
    SetUser {
        /// The user's name.
        name: String,
        /// Its rules as `ACL LIST` shows them; `None` deletes the user.
        rules: Option<String>,
    },
    /// A source shard's primary handed these slots of a migration over (the target has every
    /// key of them, and their writes are paused until the map moves them): move them to the
    /// target (handled by the controller's leader). Answered with [`Reply::Map`], the map
    /// that moved them (or, if they were not moving any more, the current one).
    HandedOver(crate::map::Migration),
    /// Place the slots again and move those whose owner changes with their keys
    /// (`cluster rebalance`; handled by the controller's leader). Answered with
    /// [`Reply::Map`].
    Rebalance,
    /// Move slots, with their keys, each group to the shard of its node (`cluster
    /// move-slots`, `CLUSTER MIGRATESLOTS`; handled by the controller's leader): all groups or
    /// none. Answered with [`Reply::Map`], the map that holds the migrations, or
    /// [`Reply::Error`] saying why nothing moves.
    MoveSlots {
        /// Inclusive ranges of slots, and a node of the shard they go to.
        groups: crate::map::SlotGroups,
    },
}

/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// `RequestVote`.
    Vote(VoteRequest<u64>),
    /// `AppendEntries`.
    Append(AppendEntriesRequest<TypeConfig>),
    /// `InstallSnapshot` (one chunk).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// The answer to a Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftReply {
    /// To `RequestVote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `AppendEntries`.
    Append(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `InstallSnapshot`.
    Snapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
}

/// What a node reports every heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Who sends it.
    pub node: NodeId,
    /// The epoch of the map it holds.
    pub epoch: Epoch,
    /// Its load.
    pub stats: NodeStats,
    /// The version of the cluster's hot keys it holds ([`HotKeySet::version`]): the leader
    /// sends the set with its answer when its own differs.
    #[serde(default)]
    pub hot_keys_version: u64,
}

/// A node's load, as reported in heartbeats and shown by `shoal cluster status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Keys it holds.
    pub keys: u64,
    /// `used_memory`.
    pub used_memory: u64,
    /// `maxmemory` (0: none).
    pub maxmemory: u64,
    /// Commands per second, recently.
    pub ops_per_sec: u64,
    /// Connected clients.
    pub clients: u64,
    /// Seconds since it started.
    pub uptime_seconds: u64,
    /// Its replication state.
    #[serde(default)]
    pub replication: ReplicationReport,
    /// Reads that found their key since it started (`INFO`'s `keyspace_hits`).
    #[serde(default)]
    pub keyspace_hits: u64,
    /// Reads that did not (`INFO`'s `keyspace_misses`).
    #[serde(default)]
    pub keyspace_misses: u64,
    /// A primary: how far behind each of its replicas is, as it last acknowledged.
    #[serde(default)]
    pub replicas: Vec<ReplicaLag>,
    /// Its hottest keys of the last seconds by requests, hottest first (its background
    /// hot-key sample's top 5; none while a `HOTKEYS` session has the sample).
    #[serde(default)]
    pub hot_keys: Vec<HotKeyReport>,
}

/// One of a node's hottest keys, as its heartbeat reports it to the controller (and
/// `shoal cluster status` and the dashboard show it). The numbers are rates estimated from the
/// node's background sample of the last seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotKeyReport {
    /// The key (binary-safe).
    pub key: Vec<u8>,
    /// Requests a second that touch it, estimated from the node's sample.
    pub requests: u64,
    /// Network bytes a second of those requests and their replies (0 when the key is not
    /// among the sample's heaviest by bytes).
    pub net_bytes: u64,
}

/// How far one replica is behind its primary, as the primary sees it (what `INFO
/// replication` shows of each replica).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaLag {
    /// The replica's RESP address as it announced it (`ip:port`: in a cluster, the one the
    /// map lists).
    pub addr: String,
    /// Bytes of the replication stream it has not acknowledged yet.
    pub lag_bytes: u64,
    /// Milliseconds since its last acknowledgement (Redis's `lag=`, in ms).
    pub ack_age_ms: u64,
}

/// The controller leader's answer to a heartbeat.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The epoch of the leader's map: a node holding an older one fetches it.
    pub epoch: Epoch,
    /// For how long after it *sent* the heartbeat the node may go on serving as a primary
    /// (ms). Shorter than the node timeout, so a primary cut off from the controller stops
    /// before the controller may promote another.
    #[serde(default)]
    pub lease_ms: u64,
    /// The cluster's hot keys, when the node's heartbeat named another version.
    #[serde(default)]
    pub hot_keys: Option<HotKeySet>,
}

/// One node in a [`ClusterStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its shard and role, if it is in one.
    pub placement: Option<(ShardId, Role)>,
    /// How long ago its last heartbeat reached the leader (ms), if one has since it led.
    pub last_heartbeat_ms: Option<u64>,
    /// The epoch it reported holding.
    pub epoch: Epoch,
    /// What it reported.
    pub stats: NodeStats,
}

/// The cluster as the controller's leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The committed map.
    pub map: ClusterMap,
    /// The controller's leader (the node answering).
    pub leader: NodeId,
    /// Every node's last report.
    pub nodes: Vec<NodeStatus>,
    /// The hot keys the leader publishes.
    #[serde(default)]
    pub hot_keys: HotKeySet,
}

/// A node's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// To [`Request::Raft`].
    Raft(RaftReply),
    /// To [`Request::Join`]: the map that includes the new node.
    Joined(ClusterMap),
    /// To [`Request::Heartbeat`].
    HeartbeatAck(HeartbeatAck),
    /// To [`Request::GetMap`], and each push of a subscription.
    Map(ClusterMap),
    /// On a subscription with nothing new.
    Ping,
    /// On a subscription: the cluster's hot keys changed (sent first if there are any).
    HotKeys(HotKeySet),
    /// To [`Request::RemoveNode`]: the map without the node.
    Removed(ClusterMap),
    /// To [`Request::Failover`]: the map with the replica as primary.
    FailedOver(ClusterMap),
    /// To [`Request::Status`].
    Status(Box<ClusterStatus>),
    /// To [`Request::Report`].
    Report(NodeStats),
    /// To [`Request::EpochReport`].
    Noted,
    /// To [`Request::PeerLease`].
    PeerLease {
        /// Whether the lease is granted.
        granted: bool,
        /// The epoch of the answering node's map.
        epoch: Epoch,
    },
    /// To [`Request::SetUser`]: the epoch of the first map that holds the change.
    UserSet {
        /// That map's epoch.
        epoch: Epoch,
    },
    /// To [`Request::Fence`].
    Fenced {
        /// How long ago this node last granted the primary a peer lease (ms), if ever.
        last_grant_ms: Option<u64>,
    },
    /// The request must go to the controller's leader, at this bus address if known.
    NotLeader {
        /// The leader's bus address.
        leader: Option<String>,
    },
    /// The request was refused.
    Error(String),
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    message: &T,
) -> std::io::Result<()> {
    write_encoded(w, &encode_frame(message)?).await
}

/// `message` as a frame: its length, then its JSON.
fn encode_frame<T: Serialize>(message: &T) -> std::io::Result<Vec<u8>> {
    let mut frame = vec![0; 4];
    serde_json::to_writer(&mut frame, message).map_err(std::io::Error::other)?;
    let body = frame.len() - 4;
    if body > MAX_FRAME {
        return Err(std::io::Error::other("bus frame too large"));
    }
    frame[..4].copy_from_slice(&(body as u32).to_be_bytes());
    Ok(frame)
}

/// Writes a frame made by [`encode_frame`].
pub(crate) async fn write_encoded<W: AsyncWrite + Unpin>(
    w: &mut W,
    frame: &[u8],
) -> std::io::Result<()> {
    w.write_all(frame).await?;
    w.flush().await
}

/// [`Reply::Map`] with the map borrowed: the same frame, without a copy of the map.
#[derive(Serialize)]
enum MapReply<'a> {
    Map(&'a ClusterMap),
}

/// The [`Reply::Map`] frame of `map`.
pub(crate) fn encode_map_reply(map: &ClusterMap) -> std::io::Result<Vec<u8>> {
    encode_frame(&MapReply::Map(map))
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The stream ended cleanly between frames.
    #[error("closed")]
    Closed,
    /// The bytes are not a frame of the expected message.
    #[error("{0}")]
    Bad(String),
}

/// Reads one frame.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::Bad(format!(
            "frame of {len} bytes is over the limit"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(|e| FrameError::Bad(e.to_string()))
}

/// The environment variable that reroutes this process's outgoing bus connections:
/// `host:port=host:port[,...]`. A fault-injection aid: a test starts a node with its
/// connections to the controller members going through relays it can cut, and so partitions
/// the node from the controller while clients still reach it.
const CONNECT_VIA_ENV: &str = "SHOAL_BUS_CONNECT_VIA";

/// Opens and closes a connection to the bus at `addr` (through [`CONNECT_VIA_ENV`]'s
/// routes, as every bus connection): whether something listens there. A timeout is an
/// [`std::io::ErrorKind::TimedOut`] error.
pub(crate) async fn probe(addr: &str, timeout: Duration) -> std::io::Result<()> {
    match tokio::time::timeout(timeout, TcpStream::connect(route(addr))).await {
        Ok(connected) => connected.map(drop),
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Where a bus connection to `addr` really goes ([`CONNECT_VIA_ENV`]).
fn route(addr: &str) -> String {
    static ROUTES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        std::env::var(CONNECT_VIA_ENV)
            .map(|spec| parse_routes(&spec))
            .unwrap_or_default()
    });
    routes
        .iter()
        .find(|(from, _)| from == addr)
        .map_or_else(|| addr.to_string(), |(_, to)| to.clone())
}

/// Parses `a=b,c=d` into pairs, skipping malformed entries.
fn parse_routes(spec: &str) -> Vec<(String, String)> {
    spec.split(',')
        .filter_map(|pair| {
            let (from, to) = pair.split_once('=')?;
            let (from, to) = (from.trim(), to.trim());
            (!from.is_empty() && !to.is_empty()).then(|| (from.to_string(), to.to_string()))
        })
        .collect()
}

/// One client connection to a node's bus, for request/reply exchanges.
pub struct BusConnection {
    addr: String,
    stream: BusStream,
}

impl BusConnection {
    /// Connects to `addr` (`host:port` of a bus) with `credentials`: a TLS session first if
    /// they have TLS settings, then the proof of their secret (and the check that the peer
    /// knows it too), all within `timeout`.
    pub async fn connect(
        addr: &str,
        credentials: &BusCredentials,
        timeout: Duration,
    ) -> Result<BusConnection, BusError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || BusError::Timeout {
            addr: addr.to_string(),
            timeout,
        };
        let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(route(addr)))
            .await
            .map_err(|_| timed_out())?
            .map_err(|source| BusError::Io {
                addr: addr.to_string(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let mut stream = match credentials.tls() {
            Some(tls) => tokio::time::timeout_at(deadline, tls.connect(tcp, addr))
                .await
                .map_err(|_| timed_out())?
                .map_err(|e| BusError::Tls {
                    addr: addr.to_string(),
                    reason: bus_tls::handshake_failure(&e),
                })?,
            None => {
                await_hello(&tcp, addr, deadline, timeout).await?;
                BusStream::Plain(tcp)
            }
        };
        let secret = credentials.secret();
        tokio::time::timeout_at(deadline, bus_auth::connect(&mut stream, secret))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| handshake_error(addr, e))?;
        Ok(BusConnection {
            addr: addr.to_string(),
            stream,
        })
    }

    /// The peer's address.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits up to `timeout` for the reply. An error means the connection
    /// should be dropped: a late reply would otherwise answer the next request.
    pub async fn call(&mut self, request: &Request, timeout: Duration) -> Result<Reply, BusError> {
        let exchange = async {
            write_frame(&mut self.stream, request).await?;
            read_frame::<_, Reply>(&mut self.stream).await
        };
        match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(BusError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
            Ok(result) => result.map_err(|e| self.frame_error(e)),
        }
    }

    /// Sends a request without waiting (the start of a subscription).
    pub async fn send(&mut self, request: &Request) -> Result<(), BusError> {
        write_frame(&mut self.stream, request)
            .await
            .map_err(|source| BusError::Io {
                addr: self.addr.clone(),
                source,
            })
    }

    /// Waits up to `timeout` for the next message (on a subscription).
    pub async fn next(&mut self, timeout: Duration) -> Result<Reply, BusError> {
        match tokio::time::timeout(timeout, read_frame::<_, Reply>(&mut self.stream)).await {
            Err(_) => Err(BusError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
            Ok(result) => result.map_err(|e| self.frame_error(e)),
        }
    }

    fn frame_error(&self, e: FrameError) -> BusError {
        let addr = self.addr.clone();
        match e {
            FrameError::Io(source) => BusError::Io { addr, source },
            FrameError::Closed => BusError::Closed { addr },
            FrameError::Bad(reason) => BusError::BadFrame { addr, reason },
        }
    }
}

/// Waits (until `deadline`, `timeout` after the start) for the first byte of the bus hello on
/// a plain connection to `addr`. A bus that speaks TLS sends none: it waits for a TLS
/// handshake, then closes the connection.
async fn await_hello(
    tcp: &TcpStream,
    addr: &str,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<(), BusError> {
    let no_hello = |closed| BusError::NoHello {
        addr: addr.to_string(),
        closed,
        waited: timeout,
    };
    match tokio::time::timeout_at(deadline, tcp.peek(&mut [0u8; 1])).await {
        Err(_) => Err(no_hello(false)),
        Ok(Ok(0)) => Err(no_hello(true)),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(no_hello(true)),
        Ok(Err(source)) => Err(BusError::Io {
            addr: addr.to_string(),
            source,
        }),
    }
}

/// The accepting side's handshakes on a connection `tcp` to a node's bus: TLS first if the
/// bus speaks it (`tls`), then the check of the peer's proof of `secret`. `Ok` is the stream
/// that frames may follow on.
pub(crate) async fn accept(
    tcp: TcpStream,
    tls: Option<&BusTlsAcceptor>,
    secret: &BusSecret,
) -> Result<BusStream, HandshakeError> {
    let mut stream = match tls {
        Some(tls) => tls.accept(tcp, bus_auth::HANDSHAKE_TIMEOUT).await?,
        None => BusStream::Plain(tcp),
    };
    bus_auth::accept(&mut stream, secret).await?;
    Ok(stream)
}

/// What a failed handshake with `addr` means to the connecting side.
fn handshake_error(addr: &str, e: HandshakeError) -> BusError {
    let addr = addr.to_string();
    match e {
        HandshakeError::Io(source) => match bus_tls::session_failure(&source) {
            // Under TLS 1.3 a node refuses a client certificate here, on the first read.
            Some(reason) => BusError::Tls { addr, reason },
            None if source.kind() == std::io::ErrorKind::UnexpectedEof => BusError::Closed { addr },
            None => BusError::Io { addr, source },
        },
        HandshakeError::Refused => BusError::Auth {
            addr,
            reason: "the node refused this process's cluster secret: give it the cluster's \
                     (--cluster-secret-file)"
                .into(),
        },
        HandshakeError::BadProof => BusError::Auth {
            addr,
            reason: "the peer does not know the cluster secret: not a member of this cluster"
                .into(),
        },
        e => BusError::Auth {
            addr,
            reason: e.to_string(),
        },
    }
}

/// Connects to `addr` with `credentials`, sends `request`, and returns the reply (one
/// exchange, then the connection is closed). `timeout` bounds connecting and the exchange
/// each.
pub async fn call(
    addr: &str,
    credentials: &BusCredentials,
    request: &Request,
    timeout: Duration,
) -> Result<Reply, BusError> {
    BusConnection::connect(addr, credentials, timeout)
        .await?
        .call(request, timeout)
        .await
}

/// [`call`] to every `(key, address)` of `targets` at once; each reply with its key, in the
/// order of `targets`.
pub(crate) async fn call_all<K>(
    targets: impl IntoIterator<Item = (K, String)>,
    credentials: &BusCredentials,
    request: &Request,
    timeout: Duration,
) -> Vec<(K, Result<Reply, BusError>)> {
    let asks = targets
        .into_iter()
        .map(|(key, addr)| async move { (key, call(&addr, credentials, request, timeout).await) });
    futures_util::future::join_all(asks).await
}

/// Sends `request` to the controller's leader, starting at `addr` and following
/// [`Reply::NotLeader`] redirections (at most `hops`).
pub async fn call_leader(
    addr: &str,
    credentials: &BusCredentials,
    request: &Request,
    timeout: Duration,
    hops: usize,
) -> Result<Reply, BusError> {
    let mut addr = addr.to_string();
    for _ in 0..hops {
        match call(&addr, credentials, request, timeout).await? {
            Reply::NotLeader {
                leader: Some(leader),
            } if leader != addr => addr = leader,
            Reply::NotLeader { .. } => {
                return Err(BusError::Refused {
                    addr,
                    message: "the controller has no leader right now".into(),
                });
            }
            reply => return Ok(reply),
        }
    }
    Err(BusError::Refused {
        addr,
        message: format!("no controller leader after {hops} redirections"),
    })
}

/// The status in `reply`, the answer of `addr` to [`Request::Status`], or why there is none.
pub fn status_of(addr: &str, reply: Reply) -> Result<ClusterStatus, BusError> {
    match reply {
        Reply::Status(status) => Ok(*status),
        Reply::Error(message) => Err(BusError::Refused {
            addr: addr.to_string(),
            message,
        }),
        other => Err(BusError::BadFrame {
            addr: addr.to_string(),
            reason: format!("unexpected answer to a status request: {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversize_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, &Request::Subscribe { after: 41 })
            .await
            .unwrap();
        match read_frame::<_, Request>(&mut b).await.unwrap() {
            Request::Subscribe { after } => assert_eq!(after, 41),
            other => panic!("{other:?}"),
        }
        a.write_all(&(MAX_FRAME as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(matches!(
            read_frame::<_, Request>(&mut b).await,
            Err(FrameError::Bad(_))
        ));
        drop(a);
        assert!(matches!(
            read_frame::<_, Request>(&mut b).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_map_reply_encoded_from_a_borrowed_map_reads_as_reply_map() {
        let map = crate::decide::bootstrap(
            NodeInfo {
                controller: true,
                ..NodeInfo::local(NodeId(7), 7000)
            },
            2,
            5,
        );
        let frame = encode_map_reply(&map).unwrap();
        assert_eq!(frame, encode_frame(&Reply::Map(map.clone())).unwrap());
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_encoded(&mut a, &frame).await.unwrap();
        match read_frame::<_, Reply>(&mut b).await.unwrap() {
            Reply::Map(read) => assert_eq!(read, map),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn routes_parse_and_skip_garbage() {
        assert_eq!(
            parse_routes("127.0.0.1:1=127.0.0.1:2, bad ,=x,a=b"),
            vec![
                ("127.0.0.1:1".to_string(), "127.0.0.1:2".to_string()),
                ("a".to_string(), "b".to_string())
            ]
        );
        assert!(parse_routes("").is_empty());
    }

    #[tokio::test]
    async fn garbage_is_a_bad_frame_not_a_panic() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        a.write_all(&5u32.to_be_bytes()).await.unwrap();
        a.write_all(b"nope!").await.unwrap();
        assert!(matches!(
            read_frame::<_, Request>(&mut b).await,
            Err(FrameError::Bad(_))
        ));
    }
}
