//! A node's own state of one client connection, next to the front door's
//! ([`shoal_frontdoor::Conn`]): what cluster routing, `WAIT`, `WATCH` and a replica's
//! handshake keep.

/// The node's state of one connection.
#[derive(Debug, Default)]
pub struct NodeConn {
    /// `READONLY` was sent: a replica serves this client's reads (cluster mode).
    pub(crate) readonly: bool,
    /// The command being retried already waited once for a newer cluster map (or for writes
    /// to resume): routing does not ask it to wait again.
    pub(crate) map_awaited: bool,
    /// The command (a script) found another script starting on another thread an instant
    /// after it passed the busy gate: it runs again once that one ends.
    pub(crate) wait_for_script: bool,
    /// The connection is another node's forwarder: its commands are never forwarded again.
    pub(crate) forwarded: bool,
    /// The replication offset after this client's last write (for `WAIT`).
    pub(crate) write_offset: u64,
    /// The port a replica said it listens on (`REPLCONF listening-port`).
    pub(crate) replica_port: Option<u16>,
    /// The address a replica said it is known by (`REPLCONF ip-address`).
    pub(crate) replica_ip: Option<String>,
    /// What a shard importing slots from this node asked for (`REPLCONF shoal-import`): its
    /// `PSYNC` then starts a migration instead of a replica's stream.
    pub(crate) import: Option<crate::migration::source::ImportRequest>,
    /// The keys this connection watches (`WATCH`), until its transaction ends.
    pub(crate) watching: Option<crate::watch::Watching>,
}
