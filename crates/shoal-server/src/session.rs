//! One client connection: read, run every complete command in the buffer, write all replies
//! in one go, repeat.
//!
//! Limits enforced here: `client-query-buffer-limit` (unprocessed input), the output buffer
//! limits (replies are flushed every [`FLUSH_AT`] bytes so a pipeline of large replies cannot
//! grow memory without bound; a client that does not read is cut off by the hard limit, or by
//! the soft limit after its grace time), and the idle `timeout`. A protocol error gets Redis's
//! message and the connection closes; nothing else is affected.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use shoal_proto::{Parsed, Protocol, Reply, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::clients::ClientInfo;
use crate::dispatch::{self, Ctx};
use crate::shared::Shared;
use crate::stats::WorkerStats;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Replies are written out once this many bytes are pending, before running more commands.
pub const FLUSH_AT: usize = 256 * 1024;
/// Buffers larger than this are released after use rather than kept for the next batch.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// A connection's state that commands may read or change.
pub struct ClientState {
    /// What other connections see of this one.
    pub info: Arc<ClientInfo>,
    /// Protocol chosen with `HELLO`.
    pub protocol: Protocol,
    /// Whether the client may run commands (always, when no password is set).
    pub authenticated: bool,
    /// Close the connection once the current replies are written (`QUIT`, `CLIENT KILL` of self).
    pub close_after_reply: bool,
    /// Id of the last command run.
    pub last_command: u32,
}

/// Why processing of the read buffer stopped.
enum Progress {
    /// Every complete command ran; more input is needed.
    NeedInput,
    /// Replies reached [`FLUSH_AT`]; write them, then continue with the buffered commands.
    OutputFull,
    /// The connection must close after the pending replies are written.
    Close,
}

/// Unregisters the client when the session ends, however it ends (even if its task is
/// dropped), and before the socket it guards is closed.
struct Registration<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.shared.clients.unregister(self.id);
    }
}

/// Serves one client until it disconnects, is killed, breaks a limit or the node stops.
pub async fn serve(
    mut stream: TcpStream,
    info: Arc<ClientInfo>,
    shared: Arc<Shared>,
    worker: Arc<WorkerStats>,
) {
    let _registration = Registration {
        shared: &shared,
        id: info.id,
    };
    let authenticated = !shared.live.password_required();
    let mut session = Session {
        client: ClientState {
            info: info.clone(),
            protocol: Protocol::Resp2,
            authenticated,
            close_after_reply: false,
            last_command: u32::MAX,
        },
        parser: RequestParser::new(shared.live.limits()),
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::with_capacity(READ_CHUNK),
    };
    let mut shutdown = shared.shutdown_signal();
    tokio::select! {
        result = session.run(&mut stream, &shared, &worker) => {
            if let Err(e) = result {
                tracing::debug!(client = info.id, addr = %info.addr, "connection ended: {e}");
            }
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

struct Session {
    client: ClientState,
    parser: RequestParser,
    input: BytesMut,
    output: Vec<u8>,
}

impl Session {
    async fn run(
        &mut self,
        stream: &mut TcpStream,
        shared: &Shared,
        worker: &WorkerStats,
    ) -> std::io::Result<()> {
        let mut need_input = true;
        loop {
            if need_input {
                if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
                    self.input.reserve(READ_CHUNK);
                }
                let read = stream.read_buf(&mut self.input);
                let n = match shared.live.timeout_seconds() {
                    0 => read.await?,
                    seconds => match tokio::time::timeout(Duration::from_secs(seconds), read).await
                    {
                        Ok(n) => n?,
                        Err(_) => {
                            tracing::debug!(client = self.client.info.id, "closing idle client");
                            return Ok(());
                        }
                    },
                };
                if n == 0 || self.client.info.killed.load(Relaxed) {
                    return Ok(());
                }
                worker.record_input(n);
            }
            let progress = self.process(shared, worker);
            self.flush(stream, shared, worker).await?;
            match progress {
                Progress::NeedInput => need_input = true,
                Progress::OutputFull => need_input = false,
                Progress::Close => return Ok(()),
            }
            if self.input.len() > shared.live.query_buffer_limit() {
                tracing::warn!(
                    client = self.client.info.id,
                    addr = %self.client.info.addr,
                    bytes = self.input.len(),
                    "closing client that reached max query buffer length"
                );
                shared
                    .stats
                    .query_buffer_disconnections
                    .fetch_add(1, Relaxed);
                return Ok(());
            }
            let info = &self.client.info;
            info.touch();
            info.last_command.store(self.client.last_command, Relaxed);
            info.query_buffer.store(self.input.len(), Relaxed);
            info.query_buffer_capacity
                .store(self.input.capacity(), Relaxed);
            if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
                self.input = BytesMut::with_capacity(READ_CHUNK);
            }
        }
    }

    /// Runs every complete command at the start of the input buffer.
    fn process(&mut self, shared: &Shared, worker: &WorkerStats) -> Progress {
        let Session {
            client,
            parser,
            input,
            output,
        } = self;
        parser.set_limits(shared.live.limits());
        let (hard_limit, _, _) = shared.live.output_limits();
        let mut consumed_total = 0;
        let progress = loop {
            parser.set_unauthenticated(!client.authenticated);
            match parser.parse(&input[consumed_total..]) {
                Ok(Parsed::Command { consumed }) => {
                    let argv = parser.argv(&input[consumed_total..]);
                    let mut ctx = Ctx {
                        shared,
                        client: &mut *client,
                        out: &mut *output,
                    };
                    dispatch::execute(&mut ctx, &argv, worker);
                    consumed_total += consumed;
                    if client.close_after_reply {
                        break Progress::Close;
                    }
                    if hard_limit > 0 && output.len() > hard_limit {
                        tracing::warn!(
                            client = client.info.id,
                            addr = %client.info.addr,
                            bytes = output.len(),
                            "closing client for overcoming of output buffer limits"
                        );
                        shared
                            .stats
                            .output_buffer_disconnections
                            .fetch_add(1, Relaxed);
                        output.clear();
                        break Progress::Close;
                    }
                    if output.len() >= FLUSH_AT {
                        break Progress::OutputFull;
                    }
                }
                Ok(Parsed::Empty { consumed }) => consumed_total += consumed,
                Ok(Parsed::Incomplete { frame_len }) => {
                    if let Some(frame_len) = frame_len {
                        let have = input.len() - consumed_total;
                        input.reserve(frame_len.saturating_sub(have));
                    }
                    break Progress::NeedInput;
                }
                Err(error) => {
                    tracing::debug!(client = client.info.id, addr = %client.info.addr, "protocol error: {error}");
                    shared.stats.record_error("ERR");
                    Reply::new(output, client.protocol).error(&format!("ERR {error}"));
                    break Progress::Close;
                }
            }
        };
        input.advance(consumed_total);
        progress
    }

    /// Writes the pending replies. A client that keeps more than the soft output limit pending
    /// for longer than its grace time is disconnected.
    async fn flush(
        &mut self,
        stream: &mut TcpStream,
        shared: &Shared,
        worker: &WorkerStats,
    ) -> std::io::Result<()> {
        if self.output.is_empty() {
            return Ok(());
        }
        self.client
            .info
            .output_buffer
            .store(self.output.len(), Relaxed);
        let (_, soft_limit, soft_seconds) = shared.live.output_limits();
        let write = stream.write_all(&self.output);
        if soft_limit > 0 && self.output.len() > soft_limit {
            let grace = Duration::from_secs(soft_seconds);
            if tokio::time::timeout(grace, write).await.is_err() {
                shared
                    .stats
                    .output_buffer_disconnections
                    .fetch_add(1, Relaxed);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client output over the soft limit for too long",
                ));
            }
        } else {
            write.await?;
        }
        worker.record_output(self.output.len());
        self.output.clear();
        self.client.info.output_buffer.store(0, Relaxed);
        if self.output.capacity() > KEEP_CAPACITY {
            self.output = Vec::with_capacity(READ_CHUNK);
        }
        Ok(())
    }
}
