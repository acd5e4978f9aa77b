//! The commands the proxy answers itself: connection state ([`connection`]), commands over
//! the whole keyspace that ask every primary ([`fanout`]), and `INFO` ([`info`]).

pub(crate) mod connection;
pub(crate) mod fanout;
pub(crate) mod info;

use std::sync::Arc;

use bytes::Bytes;
use shoal_proto::{Protocol, Reply};

use crate::args::ErrorLine;
use crate::clients::ClientInfo;
use crate::shared::Shared;

/// A connection's state that commands read and change.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// What other connections see of this one.
    pub info: Arc<ClientInfo>,
    /// Protocol chosen with `HELLO`.
    pub protocol: Protocol,
    /// Whether the client may run commands (always, without `requirepass`).
    pub authenticated: bool,
    /// Close once the replies so far are written (`QUIT`, `CLIENT KILL` of itself).
    pub close_after_reply: bool,
}

/// What a local command works with.
pub(crate) struct Local<'a> {
    /// The proxy.
    pub shared: &'a Shared,
    /// The calling connection.
    pub conn: &'a mut ConnState,
    /// Where the reply goes.
    pub out: &'a mut Vec<u8>,
}

impl Local<'_> {
    /// A reply writer in the connection's protocol.
    pub fn reply(&mut self) -> Reply<'_> {
        Reply::new(self.out, self.conn.protocol)
    }
}

/// A local command: writes its reply, or returns its error.
pub(crate) type Handler = fn(&mut Local<'_>, &[Bytes]) -> Result<(), ErrorLine>;
