//! One client connection: read, start every complete command in the buffer, gather their
//! replies in order, write them in one go, repeat.
//!
//! Commands of one batch run concurrently: each command that goes to the cluster is a future
//! in a [`FuturesOrdered`], so their requests share the client's socket writes, and replies are
//! appended in the order the commands came. The futures are first polled in order (outside
//! tokio's cooperative budget, which would wake them in reverse), and the client keeps one
//! pipelined connection per node, which queues requests in order even while it is being
//! opened, so the commands of a batch reach each node in order: a pipeline's `SET k v` and
//! `GET k` stay in order. (A retry after a failure, a
//! connection being reopened, or a redirection while slots move can reorder commands of one
//! batch against each other.)
//! Connection commands run as they are parsed, so `HELLO 3` in a pipeline switches the
//! protocol of exactly the replies after it.
//!
//! Limits, as on a node: the parser's (`proto-max-bulk-len`, `proto-max-multibulk-len`, the
//! small limits before `AUTH`), `client-query-buffer-limit` on unprocessed input, and a
//! protocol error gets Redis's `-ERR Protocol error: ...` and closes the connection. At most
//! [`MAX_BATCH`] commands are in flight per connection, and replies are written out every
//! [`FLUSH_AT`] bytes, so a client that pipelines without reading holds bounded memory. A
//! client that stops reading blocks only its own task.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use shoal_proto::{Argv, Parsed, Protocol, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::ClientInfo;
use crate::commands::ConnState;
use crate::dispatch::{Dispatched, dispatch};
use crate::shared::Shared;
use crate::stats::ProxyStats;
use crate::upstream::{Outcome, encode_outcome};

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Replies are written out once this many bytes are gathered.
pub const FLUSH_AT: usize = 256 * 1024;
/// Commands started before their replies are gathered.
pub const MAX_BATCH: usize = 4096;
/// Buffers larger than this are released after use.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Unregisters the client however its task ends.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.clients.unregister(self.id);
    }
}

/// Serves one registered client until it disconnects, is killed, breaks a limit, or the
/// proxy stops.
pub(crate) async fn serve(mut stream: TcpStream, shared: Arc<Shared>, info: Arc<ClientInfo>) {
    let _registration = Registration {
        shared: shared.clone(),
        id: info.id,
    };
    let mut session = Session {
        conn: ConnState {
            info: info.clone(),
            protocol: Protocol::Resp2,
            authenticated: !shared.password_required(),
            close_after_reply: false,
        },
        parser: RequestParser::new(shared.config.limits()),
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::with_capacity(READ_CHUNK),
        shared: shared.clone(),
    };
    let mut shutdown = shared.shutdown_signal();
    tokio::select! {
        // The session first: a client that killed itself still gets its `OK`.
        biased;
        result = session.run(&mut stream) => {
            if let Err(e) = result {
                tracing::debug!(client = info.id, addr = %info.addr, "connection ended: {e}");
            }
        }
        _ = info.killed() => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

/// What stopped the processing of the read buffer.
enum Progress {
    /// Every complete command ran; more input is needed.
    NeedInput,
    /// A batch is full; more complete commands may wait in the buffer.
    More,
    /// The connection closes once the replies so far are written.
    Close,
}

/// One command's reply, in the making.
enum Slot {
    /// Encoded already (a local command, or a protocol error).
    Ready(Option<Vec<u8>>),
    /// From the cluster, to be encoded in the protocol in force when the command came.
    Remote(BoxFuture<'static, Outcome>, Protocol),
}

/// A finished [`Slot`].
enum Piece {
    Bytes(Vec<u8>),
    Outcome(Outcome, Protocol),
}

impl Future for Slot {
    type Output = Piece;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Piece> {
        match self.get_mut() {
            Slot::Ready(bytes) => Poll::Ready(Piece::Bytes(bytes.take().unwrap_or_default())),
            Slot::Remote(future, protocol) => future
                .as_mut()
                .poll(cx)
                .map(|outcome| Piece::Outcome(outcome, *protocol)),
        }
    }
}

struct Session {
    shared: Arc<Shared>,
    conn: ConnState,
    parser: RequestParser,
    input: BytesMut,
    output: Vec<u8>,
}

impl Session {
    async fn run(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        loop {
            if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
                self.input.reserve(READ_CHUNK);
            }
            let n = stream.read_buf(&mut self.input).await?;
            if n == 0 {
                return Ok(());
            }
            ProxyStats::add(&self.shared.stats.net_input_bytes, n as u64);
            loop {
                let progress = self.process_batch(stream).await?;
                if let Progress::Close = progress {
                    return Ok(());
                }
                if self.input.len() > self.shared.config.client_query_buffer_limit {
                    tracing::warn!(
                        client = self.conn.info.id,
                        addr = %self.conn.info.addr,
                        bytes = self.input.len(),
                        "closing client that reached max query buffer length"
                    );
                    ProxyStats::add(&self.shared.stats.query_buffer_disconnections, 1);
                    return Ok(());
                }
                if let Progress::NeedInput = progress {
                    break;
                }
            }
            if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
                self.input = BytesMut::with_capacity(READ_CHUNK);
            }
        }
    }

    /// Starts up to [`MAX_BATCH`] complete commands from the input, then gathers and writes
    /// their replies.
    async fn process_batch(&mut self, stream: &mut TcpStream) -> std::io::Result<Progress> {
        let mut pending: FuturesOrdered<Slot> = FuturesOrdered::new();
        let mut started = 0usize;
        let progress = loop {
            self.parser.set_unauthenticated(!self.conn.authenticated);
            match self.parser.parse(&self.input) {
                Ok(Parsed::Command { consumed }) => {
                    let frame = self.input.split_to(consumed).freeze();
                    let args = owned_args(&self.parser.argv(&frame), &frame);
                    started += 1;
                    self.start(args, &mut pending);
                    if self.conn.close_after_reply {
                        break Progress::Close;
                    }
                    if started >= MAX_BATCH {
                        break Progress::More;
                    }
                }
                Ok(Parsed::Empty { consumed }) => self.input.advance(consumed),
                Ok(Parsed::Incomplete { frame_len }) => {
                    if let Some(frame_len) = frame_len {
                        // Room for the whole frame at once, but never past the query buffer
                        // limit: a frame that claims more is cut off when it gets there.
                        let limit = self.shared.config.client_query_buffer_limit;
                        let wanted = frame_len.min(limit.saturating_add(1));
                        let more = wanted.saturating_sub(self.input.len());
                        if more > 0 {
                            self.input.reserve(more);
                        }
                    }
                    break Progress::NeedInput;
                }
                Err(error) => {
                    tracing::debug!(client = self.conn.info.id, addr = %self.conn.info.addr, "protocol error: {error}");
                    ProxyStats::add(&self.shared.stats.protocol_errors, 1);
                    ProxyStats::add(&self.shared.stats.error_replies, 1);
                    let line = crate::args::ErrorLine(format!("ERR {error}").into_bytes());
                    let mut bytes = Vec::new();
                    line.write(&mut bytes);
                    self.place(bytes, &mut pending);
                    break Progress::Close;
                }
            }
        };
        // The batch's commands are queued on their connections in the order they are first
        // polled (the client queues without waiting while there is room), so they reach each
        // node in order.
        self.gather(stream, pending).await?;
        Ok(progress)
    }

    /// Runs or starts one command, its reply placed after those of the commands before it.
    fn start(&mut self, args: Vec<Bytes>, pending: &mut FuturesOrdered<Slot>) {
        let shared = &self.shared;
        ProxyStats::add(&shared.stats.commands_processed, 1);
        if pending.is_empty() {
            // Nothing is in flight: a local reply can go straight to the output.
            if let Dispatched::Remote(future) =
                dispatch(shared, &mut self.conn, args, &mut self.output)
            {
                pending.push_back(Slot::Remote(future, self.conn.protocol));
            }
            return;
        }
        let mut bytes = Vec::new();
        match dispatch(shared, &mut self.conn, args, &mut bytes) {
            Dispatched::Local => pending.push_back(Slot::Ready(Some(bytes))),
            Dispatched::Remote(future) => {
                pending.push_back(Slot::Remote(future, self.conn.protocol))
            }
        }
    }

    /// Appends an encoded reply after every reply before it.
    fn place(&mut self, bytes: Vec<u8>, pending: &mut FuturesOrdered<Slot>) {
        if pending.is_empty() {
            self.output.extend_from_slice(&bytes);
        } else {
            pending.push_back(Slot::Ready(Some(bytes)));
        }
    }

    /// Waits for the replies in order, appending them to the output, and writes it.
    async fn gather(
        &mut self,
        stream: &mut TcpStream,
        mut pending: FuturesOrdered<Slot>,
    ) -> std::io::Result<()> {
        while let Some(piece) = pending.next().await {
            match piece {
                Piece::Bytes(bytes) => self.output.extend_from_slice(&bytes),
                Piece::Outcome(outcome, protocol) => {
                    let (error, by_proxy) = encode_outcome(&outcome, protocol, &mut self.output);
                    let stats = &self.shared.stats;
                    if error {
                        ProxyStats::add(&stats.error_replies, 1);
                    }
                    if by_proxy {
                        ProxyStats::add(&stats.proxy_errors, 1);
                    }
                }
            }
            if self.output.len() >= FLUSH_AT {
                self.write_output(stream).await?;
            }
        }
        self.write_output(stream).await
    }

    async fn write_output(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        stream.write_all(&self.output).await?;
        ProxyStats::add(
            &self.shared.stats.net_output_bytes,
            self.output.len() as u64,
        );
        self.output.clear();
        if self.output.capacity() > KEEP_CAPACITY {
            self.output = Vec::with_capacity(READ_CHUNK);
        }
        Ok(())
    }
}

/// The arguments as owned byte strings: slices of the frame where they are in it (multibulk
/// requests: no copy), copies otherwise (inline commands, unescaped by the parser).
fn owned_args(argv: &Argv<'_>, frame: &Bytes) -> Vec<Bytes> {
    let start = frame.as_ptr() as usize;
    let end = start + frame.len();
    argv.iter()
        .map(|arg| {
            let at = arg.as_ptr() as usize;
            if !arg.is_empty() && at >= start && at + arg.len() <= end {
                frame.slice_ref(arg)
            } else {
                Bytes::copy_from_slice(arg)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::Limits;

    #[test]
    fn arguments_are_sliced_from_multibulk_frames_and_copied_from_inline_ones() {
        for (input, expected) in [
            (&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..], [&b"GET"[..], b"k"]),
            (b"GET \"k\"\r\n", [b"GET", b"k"]),
        ] {
            let mut parser = RequestParser::new(Limits::default());
            let Ok(Parsed::Command { consumed }) = parser.parse(input) else {
                panic!("a command");
            };
            let frame = Bytes::copy_from_slice(&input[..consumed]);
            let args = owned_args(&parser.argv(&frame), &frame);
            assert_eq!(args, expected);
        }
    }
}
