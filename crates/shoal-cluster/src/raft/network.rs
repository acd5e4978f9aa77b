//! Raft RPCs over the cluster bus: one connection per peer, opened on first use and reopened
//! after any failure.

use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::TypeConfig;
use crate::bus::{BusConnection, BusError, RaftReply, RaftRequest, Reply, Request};
use crate::bus_credentials::BusCredentials;

/// How long connecting to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// Makes [`PeerLink`]s, opened with the node's bus credentials.
#[derive(Clone)]
pub(crate) struct BusNetwork {
    credentials: BusCredentials,
}

impl BusNetwork {
    /// Links opened with `credentials`.
    pub(crate) fn new(credentials: BusCredentials) -> BusNetwork {
        BusNetwork { credentials }
    }
}

impl RaftNetworkFactory<TypeConfig> for BusNetwork {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerLink {
        PeerLink {
            target,
            node: node.clone(),
            addr: node.addr.clone(),
            credentials: self.credentials.clone(),
            connection: None,
        }
    }
}

/// The link to one peer.
pub(crate) struct PeerLink {
    target: u64,
    node: BasicNode,
    addr: String,
    credentials: BusCredentials,
    connection: Option<BusConnection>,
}

type RpcError<E = openraft::error::Infallible> = RPCError<u64, BasicNode, RaftError<u64, E>>;

impl PeerLink {
    fn remote<E: std::error::Error>(
        &self,
        e: RaftError<u64, E>,
    ) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }

    async fn exchange(
        &mut self,
        request: RaftRequest,
        timeout: Duration,
    ) -> Result<RaftReply, BusError> {
        // The connection is out of `self` while its exchange runs, and goes back only once the
        // reply has been read: Openraft drops an RPC's future at its deadline (which is ours
        // too), and a connection left behind with its reply unread would hand that stale reply
        // to the next RPC (a conflict answered to another request, which Openraft takes for a
        // follower's log gone backwards, and panics).
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => BusConnection::connect(&self.addr, &self.credentials, CONNECT_TIMEOUT).await?,
        };
        let to = crate::map::NodeId(self.target);
        match connection.call(&Request::Raft(to, request), timeout).await {
            Ok(Reply::Raft(reply)) => {
                self.connection = Some(connection);
                Ok(reply)
            }
            // Another process now listens where the peer did: the peer is gone.
            Ok(Reply::Error(message)) => Err(BusError::Closed {
                addr: format!("{} ({message})", self.addr),
            }),
            Ok(other) => Err(BusError::BadFrame {
                addr: self.addr.clone(),
                reason: format!("expected a Raft reply, got {other:?}"),
            }),
            Err(e) => Err(e),
        }
    }
}

fn transport_error<E: std::error::Error>(
    e: BusError,
) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    match e {
        BusError::Io { .. } | BusError::Closed { .. } => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

fn mismatched<E: std::error::Error>(addr: &str) -> RPCError<u64, BasicNode, RaftError<u64, E>> {
    let e = std::io::Error::other(format!("{addr} answered a different Raft RPC"));
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RpcError> {
        match self
            .exchange(RaftRequest::Append(rpc), option.hard_ttl())
            .await
            .map_err(transport_error)?
        {
            RaftReply::Append(result) => result.map_err(|e| self.remote(e)),
            _ => Err(mismatched(&self.addr)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RpcError<InstallSnapshotError>> {
        match self
            .exchange(RaftRequest::Snapshot(rpc), option.hard_ttl())
            .await
            .map_err(transport_error)?
        {
            RaftReply::Snapshot(result) => result.map_err(|e| self.remote(e)),
            _ => Err(mismatched(&self.addr)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RpcError> {
        match self
            .exchange(RaftRequest::Vote(rpc), option.hard_ttl())
            .await
            .map_err(transport_error)?
        {
            RaftReply::Vote(result) => result.map_err(|e| self.remote(e)),
            _ => Err(mismatched(&self.addr)),
        }
    }
}
