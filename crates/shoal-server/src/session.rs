//! One client connection: read, run every complete command in the buffer, write all replies
//! in one go, repeat.
//!
//! Limits enforced here:
//! - `client-query-buffer-limit`: unprocessed input, a single frame still arriving included
//!   (room is never reserved past the limit, however large a frame claims to be);
//! - the output buffer limits. With none set (Redis's default for normal clients), replies are
//!   written every [`FLUSH_AT`] bytes and nothing more is read or run until the client takes
//!   them, so a pipeline of large replies to a client that does not read holds bounded memory.
//!   With a hard or soft limit set, the session behaves as Redis does: while the socket takes
//!   no more, it goes on reading and running commands, and a client whose pending replies
//!   exceed the hard limit, or the soft one for longer than its grace time, is disconnected;
//! - the idle `timeout` is enforced by the server's cron ([`crate::clients::Clients::kill_idle`]),
//!   so reads carry no timer.
//!
//! A protocol error gets Redis's message and the connection closes; a command that panics (a
//! bug) gets an error and the connection closes; nothing else is affected.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use shoal_proto::{Parsed, Protocol, Reply, RequestParser, peek_key};
use tokio::io::{AsyncReadExt, Interest};
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
    /// `READONLY` was sent: a replica serves this client's reads (cluster mode).
    pub readonly: bool,
    /// The current command already waited once for a newer cluster map.
    pub map_awaited: bool,
    /// The connection is another node's forwarder: its commands are never forwarded again.
    pub forwarded: bool,
    /// The replication offset after this client's last write (for `WAIT`).
    pub write_offset: u64,
    /// The port a replica said it listens on (`REPLCONF listening-port`).
    pub replica_port: Option<u16>,
    /// The address a replica said it is known by (`REPLCONF ip-address`).
    pub replica_ip: Option<String>,
    /// The pending `CLUSTER FAILOVER` skips the primary (`FORCE`/`TAKEOVER`).
    pub failover_force: bool,
}

/// Work a command hands back to its session because it needs to wait (the request path itself
/// never blocks).
#[derive(Debug)]
pub enum Pending {
    /// Wait for the cluster map this node knows is newer, then run the command again.
    AwaitMap,
    /// Wait until writes are no longer paused (a planned failover), then run it again.
    AwaitUnpause,
    /// Send the command to the node at this address and relay its reply.
    Forward(String),
    /// `WAIT`: reply how many replicas acknowledged this client's last write, once that many
    /// did or the timeout (none: forever) passed.
    Wait {
        /// How many to wait for.
        replicas: usize,
        /// How long at most.
        timeout: Option<Duration>,
    },
    /// `PSYNC`: this connection becomes a replica's stream.
    ServeReplica(crate::replication::primary::PsyncRequest),
    /// `CLUSTER FAILOVER` on a replica: take over from the primary without losing writes.
    Failover,
}

/// What a session waits for between commands.
enum Deferred {
    /// The command stays in the buffer and runs again after the wait.
    Retry(Pending),
    /// The command is relayed to another node.
    Forward { addr: String, frame: Vec<u8> },
    /// The command was taken from the buffer; its reply comes after the wait.
    Run(Pending),
}

/// A registered client connection. Dropping it unregisters the client *before* its socket is
/// closed (`Drop::drop` runs before the fields are dropped), however the session ends: finished,
/// panicked, or dropped unpolled with its runtime. `CLIENT KILL` relies on that order.
pub struct Connection {
    stream: TcpStream,
    info: Arc<ClientInfo>,
    shared: Arc<Shared>,
}

impl Connection {
    /// Wraps an accepted socket whose client `info` is registered in `shared.clients`.
    pub fn new(stream: TcpStream, info: Arc<ClientInfo>, shared: Arc<Shared>) -> Connection {
        Connection {
            stream,
            info,
            shared,
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.clients.unregister(self.info.id);
    }
}

/// What a wait for the socket brought.
enum Ready {
    /// More input was read.
    Input,
    /// Output may have been written; no input came.
    Output,
    /// The client closed its side.
    Eof,
    /// The soft output limit's grace time ran out.
    OverLimit,
}

/// Why processing of the read buffer stopped.
enum Progress {
    /// Every complete command ran; more input is needed.
    NeedInput,
    /// Replies reached [`FLUSH_AT`]; write them, then continue with the buffered commands.
    OutputFull,
    /// The connection must close after the pending replies are written.
    Close,
    /// A command must wait for something first; the commands after it are still buffered.
    Wait(Deferred),
}

/// Serves one client until it disconnects, is killed, breaks a limit or the node stops.
pub async fn serve(mut connection: Connection, worker: Arc<WorkerStats>) {
    let shared = connection.shared.clone();
    let info = connection.info.clone();
    let mut session = Session {
        client: ClientState {
            info: info.clone(),
            protocol: Protocol::Resp2,
            authenticated: !shared.live.password_required(),
            close_after_reply: false,
            last_command: u32::MAX,
            readonly: false,
            map_awaited: false,
            forwarded: false,
            write_offset: 0,
            replica_port: None,
            replica_ip: None,
            failover_force: false,
        },
        parser: RequestParser::new(shared.live.limits()),
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::with_capacity(READ_CHUNK),
        written: 0,
        over_soft_since: None,
    };
    let mut shutdown = shared.shutdown_signal();
    tokio::select! {
        result = session.run(&mut connection.stream, &shared, &worker) => {
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
    /// Replies; the first `written` bytes are already sent.
    output: Vec<u8>,
    written: usize,
    /// Since when more than the soft output limit has been pending.
    over_soft_since: Option<Instant>,
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
                let got_input = if self.pending() == 0 {
                    self.reserve_read_room();
                    let n = stream.read_buf(&mut self.input).await?;
                    if n == 0 {
                        return Ok(());
                    }
                    worker.record_input(n);
                    true
                } else {
                    // Only with output limits set: replies are pending and every complete
                    // command has run. Wait for the socket to take more output or bring more
                    // input, whichever comes first.
                    match self.wait_ready(stream, shared, worker).await? {
                        Ready::Input => true,
                        Ready::Output => false,
                        Ready::Eof => {
                            self.flush_all(stream, shared, worker).await?;
                            return Ok(());
                        }
                        Ready::OverLimit => return Ok(()),
                    }
                };
                if self.client.info.killed.load(Relaxed) {
                    return Ok(());
                }
                if !got_input {
                    self.client.info.touch();
                    if self.soft_limit_exceeded(shared) {
                        return Ok(());
                    }
                    continue;
                }
            }
            let progress = match self.process(shared, worker) {
                Progress::Wait(Deferred::Run(Pending::ServeReplica(request))) => {
                    // The connection is a replica's from here on: replies so far go first.
                    self.input.clear();
                    self.flush_all(stream, shared, worker).await?;
                    return crate::replication::serve_replica(
                        shared,
                        stream,
                        request,
                        &self.client,
                    )
                    .await;
                }
                Progress::Wait(deferred) => {
                    // Earlier replies go out first; the deferred one follows them.
                    self.write_some(stream, worker)?;
                    self.resolve(deferred, shared).await;
                    Progress::OutputFull
                }
                progress => progress,
            };
            if let Progress::Close = progress {
                self.flush_all(stream, shared, worker).await?;
                return Ok(());
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
            // What CLIENT LIST shows is published before the replies go out, so a client
            // that has its reply sees itself (and others see it) as of that command.
            let info = &self.client.info;
            info.touch();
            info.last_command.store(self.client.last_command, Relaxed);
            info.query_buffer.store(self.input.len(), Relaxed);
            info.query_buffer_capacity
                .store(self.input.capacity(), Relaxed);
            self.write_some(stream, worker)?;
            if self.pending() > 0 {
                let (hard, soft, _) = shared.live.output_limits();
                if hard == 0 && soft == 0 {
                    // No limits: back-pressure. Nothing more runs until the client has read.
                    if !self.flush_all(stream, shared, worker).await? {
                        return Ok(());
                    }
                } else if self.soft_limit_exceeded(shared) {
                    return Ok(());
                }
            }
            need_input = matches!(progress, Progress::NeedInput);
            let info = &self.client.info;
            info.output_buffer.store(self.pending(), Relaxed);
            if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
                self.input = BytesMut::with_capacity(READ_CHUNK);
            }
            if info.killed.load(Relaxed) {
                return Ok(());
            }
        }
    }

    /// Reply bytes not yet written.
    #[inline]
    fn pending(&self) -> usize {
        self.output.len() - self.written
    }

    /// Makes sure a read has room to land in.
    #[inline]
    fn reserve_read_room(&mut self) {
        if self.input.capacity() - self.input.len() < READ_CHUNK / 4 {
            self.input.reserve(READ_CHUNK);
        }
    }

    /// Runs every complete command at the start of the input buffer, until the replies grow by
    /// [`FLUSH_AT`] bytes.
    fn process(&mut self, shared: &Shared, worker: &WorkerStats) -> Progress {
        let Session {
            client,
            parser,
            input,
            output,
            written,
            ..
        } = self;
        parser.set_limits(shared.live.limits());
        let (hard_limit, _, _) = shared.live.output_limits();
        let stop_at = output.len() + FLUSH_AT;
        let mut consumed_total = 0;
        let mut reserve_for_frame = 0;
        let progress = loop {
            parser.set_unauthenticated(!client.authenticated);
            match parser.parse(&input[consumed_total..]) {
                Ok(Parsed::Command { consumed }) => {
                    let argv = parser.argv(&input[consumed_total..]);
                    // With pipelining, the next command is usually already here: start
                    // fetching its index entry now so the miss overlaps with this command.
                    if let Some(next_key) = peek_key(&input[consumed_total + consumed..]) {
                        shared.store.prefetch(next_key);
                    }
                    let mark = output.len();
                    let mut ctx = Ctx {
                        shared,
                        client: &mut *client,
                        out: &mut *output,
                        pending: None,
                    };
                    // A panicking handler is a bug, but it must cost one connection, not the
                    // node. The cost when nothing panics is nil (no code runs on this path).
                    let ran = catch_unwind(AssertUnwindSafe(|| {
                        dispatch::execute(&mut ctx, &argv, worker)
                    }));
                    match ctx.pending.take() {
                        // The frame stays in the buffer, to run again after the wait.
                        Some(wait @ (Pending::AwaitMap | Pending::AwaitUnpause)) => {
                            client.map_awaited = true;
                            break Progress::Wait(Deferred::Retry(wait));
                        }
                        Some(Pending::Forward(addr)) => {
                            let frame = input[consumed_total..consumed_total + consumed].to_vec();
                            consumed_total += consumed;
                            client.map_awaited = false;
                            break Progress::Wait(Deferred::Forward { addr, frame });
                        }
                        Some(other) => {
                            consumed_total += consumed;
                            client.map_awaited = false;
                            break Progress::Wait(Deferred::Run(other));
                        }
                        None => client.map_awaited = false,
                    }
                    consumed_total += consumed;
                    if let Err(panic) = ran {
                        let message = panic
                            .downcast_ref::<&str>()
                            .copied()
                            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                            .unwrap_or("(no message)");
                        tracing::error!(
                            client = client.info.id,
                            addr = %client.info.addr,
                            command = %String::from_utf8_lossy(argv.get(0)),
                            "command panicked, closing the connection: {message}"
                        );
                        shared.stats.command_panics.fetch_add(1, Relaxed);
                        shared.stats.record_error("ERR");
                        output.truncate(mark);
                        Reply::new(output, client.protocol).error(
                            "ERR internal error while running the command; closing the connection",
                        );
                        break Progress::Close;
                    }
                    if client.close_after_reply {
                        break Progress::Close;
                    }
                    if hard_limit > 0 && output.len() - *written > hard_limit {
                        tracing::warn!(
                            client = client.info.id,
                            addr = %client.info.addr,
                            bytes = output.len() - *written,
                            "closing client for overcoming of output buffer limits"
                        );
                        shared
                            .stats
                            .output_buffer_disconnections
                            .fetch_add(1, Relaxed);
                        output.clear();
                        *written = 0;
                        break Progress::Close;
                    }
                    if output.len() >= stop_at {
                        break Progress::OutputFull;
                    }
                }
                Ok(Parsed::Empty { consumed }) => consumed_total += consumed,
                Ok(Parsed::Incomplete { frame_len }) => {
                    if let Some(frame_len) = frame_len {
                        // Room for the whole frame at once (one copy of a large value, not
                        // many), but never more than the query buffer limit lets the client
                        // send: a frame that claims more is cut off when it gets there.
                        let limit = shared.live.query_buffer_limit().saturating_add(1);
                        let have = input.len() - consumed_total;
                        reserve_for_frame = frame_len.min(limit).saturating_sub(have);
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
        if reserve_for_frame > 0 {
            input.reserve(reserve_for_frame);
        }
        progress
    }

    /// Waits for what a command deferred, and appends its reply if it has one.
    async fn resolve(&mut self, deferred: Deferred, shared: &Shared) {
        let cluster = shared.cluster.as_ref();
        match deferred {
            Deferred::Retry(Pending::AwaitMap) => {
                if let Some(cluster) = cluster {
                    cluster.await_current_map().await;
                }
            }
            Deferred::Retry(_) => shared.replication.await_unpause().await,
            Deferred::Forward { addr, frame } => {
                if let Some(cluster) = cluster {
                    cluster
                        .forward(&addr, &frame, self.client.protocol, &mut self.output)
                        .await
                }
            }
            Deferred::Run(Pending::Wait { replicas, timeout }) => {
                let acked = shared
                    .replication
                    .wait_for_acks(self.client.write_offset, replicas, timeout)
                    .await;
                Reply::new(&mut self.output, self.client.protocol).int(acked as i64);
            }
            Deferred::Run(Pending::Failover) => {
                let outcome = match cluster {
                    Some(cluster) => {
                        cluster
                            .planned_failover(shared, self.client.failover_force)
                            .await
                    }
                    None => Err("ERR This instance has cluster support disabled".to_string()),
                };
                let mut reply = Reply::new(&mut self.output, self.client.protocol);
                match outcome {
                    Ok(()) => reply.ok(),
                    Err(line) => reply.error(&line),
                }
            }
            Deferred::Run(_) => {}
        }
    }

    /// Writes as much of the pending replies as the socket takes without waiting.
    fn write_some(&mut self, stream: &TcpStream, worker: &WorkerStats) -> std::io::Result<()> {
        while self.written < self.output.len() {
            match stream.try_write(&self.output[self.written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    worker.record_output(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
            if self.output.capacity() > KEEP_CAPACITY {
                self.output = Vec::with_capacity(READ_CHUNK);
            }
        } else if self.written >= FLUSH_AT {
            self.output.drain(..self.written);
            self.written = 0;
        }
        Ok(())
    }

    /// Writes every pending reply, waiting for the socket as needed. Returns `false` if the
    /// client was disconnected for keeping more than the soft limit pending for too long.
    async fn flush_all(
        &mut self,
        stream: &TcpStream,
        shared: &Shared,
        worker: &WorkerStats,
    ) -> std::io::Result<bool> {
        loop {
            self.write_some(stream, worker)?;
            if self.pending() == 0 {
                return Ok(true);
            }
            if self.soft_limit_exceeded(shared) {
                return Ok(false);
            }
            let writable = stream.writable();
            match self.soft_deadline(shared) {
                None => writable.await?,
                Some(deadline) => {
                    if let Ok(ready) = tokio::time::timeout_at(deadline.into(), writable).await {
                        ready?;
                    }
                }
            }
        }
    }

    /// Waits until the socket takes more output or brings more input (or the soft limit's
    /// grace time runs out), and makes that progress.
    async fn wait_ready(
        &mut self,
        stream: &TcpStream,
        shared: &Shared,
        worker: &WorkerStats,
    ) -> std::io::Result<Ready> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        let ready = match self.soft_deadline(shared) {
            None => stream.ready(interest).await?,
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), stream.ready(interest)).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Ok(if self.soft_limit_exceeded(shared) {
                            Ready::OverLimit
                        } else {
                            Ready::Output
                        });
                    }
                }
            }
        };
        if ready.is_writable() {
            self.write_some(stream, worker)?;
        }
        if ready.is_readable() || ready.is_read_closed() {
            self.reserve_read_room();
            match stream.try_read_buf(&mut self.input) {
                Ok(0) => return Ok(Ready::Eof),
                Ok(n) => {
                    worker.record_input(n);
                    return Ok(Ready::Input);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Ready::Output)
    }

    /// When the soft output limit's grace time runs out, if it is running.
    fn soft_deadline(&self, shared: &Shared) -> Option<Instant> {
        let (_, soft, seconds) = shared.live.output_limits();
        let since = self.over_soft_since?;
        (soft > 0).then(|| since + Duration::from_secs(seconds))
    }

    /// Whether more than the soft output limit has been pending for longer than its grace
    /// time (then the disconnection is counted and logged). Starts or stops the grace time.
    fn soft_limit_exceeded(&mut self, shared: &Shared) -> bool {
        let (_, soft, seconds) = shared.live.output_limits();
        if soft == 0 || self.pending() <= soft {
            self.over_soft_since = None;
            return false;
        }
        let since = *self.over_soft_since.get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_secs(seconds) {
            return false;
        }
        tracing::warn!(
            client = self.client.info.id,
            addr = %self.client.info.addr,
            bytes = self.pending(),
            "closing client for overcoming of output buffer limits"
        );
        shared
            .stats
            .output_buffer_disconnections
            .fetch_add(1, Relaxed);
        true
    }
}
