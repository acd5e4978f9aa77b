//! One client connection: read, run every complete command in the buffer, write all replies
//! in one go, repeat.
//!
//! A command's reply is written at once when the backend has it ([`crate::Outcome::Ran`]). A reply
//! that comes later ([`crate::Outcome::Later`]) holds its place: replies after it queue behind it,
//! so the client reads them in the order it sent the commands. Without a barrier, later
//! commands start meanwhile (at most [`MAX_BATCH`] in flight), which is how the proxy
//! pipelines a client's commands to the cluster; with one, nothing runs until it is in.
//! Connection commands run as they are parsed, so `HELLO 3` in a pipeline changes the
//! protocol of exactly the replies after it.
//!
//! Limits enforced here:
//! - the parser's (`proto-max-bulk-len`, `proto-max-multibulk-len`, and the small limits
//!   before `AUTH` when a password is set); a protocol error gets Redis's message and the
//!   connection closes;
//! - `client-query-buffer-limit`: unprocessed input, a single frame still arriving included
//!   (room is never reserved past the limit, however large a frame claims to be);
//! - the output buffer limits. With none set (Redis's default for normal clients), replies are
//!   written every [`FLUSH_AT`] bytes and nothing more is read or run until the client takes
//!   them, so a pipeline of large replies to a client that does not read holds bounded memory.
//!   With a hard or soft limit set, the session behaves as Redis does: while the socket takes
//!   no more, it goes on reading and running commands, and a client whose pending replies
//!   exceed the hard limit, or the soft one for longer than its grace time, is disconnected;
//! - the idle `timeout` is enforced by [`crate::door::Door::tick`], so reads carry no timer.
//!
//! A command that panics (a bug) gets an error and the connection closes; nothing else is
//! affected.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use shoal_proto::{Parsed, Protocol, Reply, RequestParser, peek_key};
use tokio::io::Interest;

use crate::backend::{Backend, Conn};
use crate::clients::Registration;
use crate::dispatch::{Request, Step, dispatch};
use crate::listen::Accepted;
use crate::stats::ThreadStats;
use crate::stream::Stream;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// Replies are written out once this many bytes are pending, before running more commands.
pub const FLUSH_AT: usize = 256 * 1024;
/// Commands whose replies may be awaited at once on one connection.
pub const MAX_BATCH: usize = 4096;
/// Buffers larger than this are released after use rather than kept for the next batch.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// A registered connection. The registration is dropped before the socket (fields drop in
/// order), however the session ends: `CLIENT KILL` relies on that.
struct Connection {
    registration: Registration,
    stream: Stream,
}

/// Serves one client until it disconnects, is killed, breaks a limit or the door shuts down.
pub async fn serve<B: Backend>(backend: Arc<B>, accepted: Accepted) {
    let mut connection = Connection {
        registration: accepted.registration,
        stream: accepted.stream,
    };
    let info = connection.registration.info().clone();
    let door = backend.door().clone();
    let mut session = Session::<B> {
        conn: Conn::new(
            info.clone(),
            !door.acl.auth_required(),
            door.acl.default_user().clone(),
        ),
        state: backend.new_conn(),
        parser: RequestParser::new(door.settings.parser_limits()),
        input: BytesMut::with_capacity(READ_CHUNK),
        output: Vec::with_capacity(READ_CHUNK),
        written: 0,
        over_soft_since: None,
        pending: FuturesOrdered::new(),
        worker: ThreadStats::new(),
        backend,
    };
    let mut shutdown = door.shutdown_signal();
    tokio::select! {
        // The session first: a client that killed itself still gets its reply.
        biased;
        result = session.run(&mut connection.stream) => {
            if let Err(e) = result {
                tracing::debug!(client = info.id, addr = %info.addr, "connection ended: {e}");
            }
        }
        // Killed by another client or the idle timeout while it waits for a reply.
        _ = info.killed() => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
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
enum Progress<B: Backend> {
    /// Every complete command ran; more input is needed.
    NeedInput,
    /// Replies reached [`FLUSH_AT`]; write them, then continue with the buffered commands.
    OutputFull,
    /// The connection must close after the pending replies are written.
    Close,
    /// Replies that come later must be in before anything else runs.
    Gather,
    /// A command waits for this, then runs again; the commands after it are still buffered.
    Retry(BoxFuture<'static, ()>),
    /// The connection is the backend's once the replies so far are written.
    HandOff(B::HandOff),
    /// Wait this long before the replies go out and the next command runs (a failed
    /// authentication's delay).
    Pause(Duration),
}

/// A reply in its place.
enum Slot<R> {
    /// Encoded already (it followed a reply still to come).
    Ready(Vec<u8>),
    /// To come, and to be encoded in the protocol in force when its command came.
    Later(BoxFuture<'static, R>, Pending),
}

/// What is known of a command whose reply is still to come.
#[derive(Clone, Copy)]
struct Pending {
    /// The protocol in force when it came.
    protocol: Protocol,
    /// Its command id.
    command: u32,
}

/// A [`Slot`] whose reply is in.
enum Piece<R> {
    Bytes(Vec<u8>),
    Reply(R, Pending),
}

impl<R> Future for Slot<R> {
    type Output = Piece<R>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Piece<R>> {
        match self.get_mut() {
            Slot::Ready(bytes) => std::task::Poll::Ready(Piece::Bytes(std::mem::take(bytes))),
            Slot::Later(future, pending) => future
                .as_mut()
                .poll(cx)
                .map(|reply| Piece::Reply(reply, *pending)),
        }
    }
}

struct Session<B: Backend> {
    backend: Arc<B>,
    conn: Conn,
    state: B::Conn,
    parser: RequestParser,
    input: BytesMut,
    /// Replies; the first `written` bytes are already sent.
    output: Vec<u8>,
    written: usize,
    /// Since when more than the soft output limit has been pending.
    over_soft_since: Option<Instant>,
    /// Replies still to come, in order; `output` holds only replies before them.
    pending: FuturesOrdered<Slot<B::Reply>>,
    worker: ThreadStats,
}

impl<B: Backend> Session<B> {
    async fn run(&mut self, stream: &mut Stream) -> std::io::Result<()> {
        let door = self.backend.door().clone();
        let mut need_input = true;
        loop {
            if need_input {
                let got_input = if self.unwritten() == 0 {
                    self.reserve_read_room();
                    let n = match self.conn.info.pushes().cloned() {
                        None => {
                            // Another connection may give this one a mailbox meanwhile (a
                            // tracking redirect to it): it wakes this task, and the read
                            // gives way to the wait on both.
                            let info = &self.conn.info;
                            let mut read = std::pin::pin!(stream.read_buf(&mut self.input));
                            let read = std::future::poll_fn(|cx| {
                                if info.pushes().is_some() {
                                    return std::task::Poll::Ready(None);
                                }
                                read.as_mut().poll(cx).map(Some)
                            })
                            .await;
                            match read {
                                Some(n) => n?,
                                None => continue,
                            }
                        }
                        // A subscriber (or a tracking client) waits for a request or a
                        // message, whichever comes first.
                        Some(mailbox) => {
                            let read = tokio::select! {
                                read = stream.read_buf(&mut self.input) => Some(read?),
                                () = mailbox.arrived() => None,
                            };
                            match read {
                                Some(n) => n,
                                None => {
                                    self.deliver_messages();
                                    if !self.flush_all(stream).await? {
                                        return Ok(());
                                    }
                                    continue;
                                }
                            }
                        }
                    };
                    if n == 0 {
                        return Ok(());
                    }
                    self.worker.get(&door.stats).record_input(n);
                    true
                } else {
                    // Only with output limits set: replies are pending and every complete
                    // command has run. Wait for the socket to take more output or bring more
                    // input, whichever comes first.
                    match self.wait_ready(stream).await? {
                        Ready::Input => true,
                        Ready::Output => false,
                        Ready::Eof => {
                            self.flush_all(stream).await?;
                            return Ok(());
                        }
                        Ready::OverLimit => return Ok(()),
                    }
                };
                if self.conn.info.is_killed() {
                    return Ok(());
                }
                if !got_input {
                    self.conn.info.touch();
                    if self.soft_limit_exceeded() {
                        return Ok(());
                    }
                    continue;
                }
            }
            let progress = match self.process() {
                Progress::HandOff(how) => {
                    // The connection is the backend's from here on: replies so far go first.
                    self.input.clear();
                    if !self.gather(stream).await? || !self.flush_all(stream).await? {
                        return Ok(());
                    }
                    // A replica's stream is never idle as a client (Redis spares replicas from
                    // `timeout` too).
                    self.conn.info.set_blocked(true);
                    let backend = self.backend.clone();
                    return backend
                        .hand_off(stream, &self.conn, &mut self.state, how)
                        .await;
                }
                Progress::Retry(wait) => {
                    // Earlier replies go out first; the command runs again after the wait.
                    self.write_some(stream)?;
                    if !self.gather(stream).await? {
                        return Ok(());
                    }
                    wait.await;
                    Progress::OutputFull
                }
                Progress::Pause(pause) => {
                    // Replies that come later are in first; the failed authentication's
                    // reply, and every command after it, wait.
                    if !self.gather(stream).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(pause).await;
                    Progress::OutputFull
                }
                Progress::Gather => {
                    self.write_some(stream)?;
                    if !self.gather(stream).await? {
                        return Ok(());
                    }
                    Progress::OutputFull
                }
                progress => progress,
            };
            if let Progress::Close = progress {
                if self.gather(stream).await? {
                    self.flush_all(stream).await?;
                }
                return Ok(());
            }
            if self.input.len() > door.settings.query_buffer_limit() {
                tracing::warn!(
                    client = self.conn.info.id,
                    addr = %self.conn.info.addr,
                    bytes = self.input.len(),
                    "closing client that reached max query buffer length"
                );
                door.stats.query_buffer_disconnections.fetch_add(1, Relaxed);
                return Ok(());
            }
            // Every complete command has started: the replies still to come are awaited
            // before more is read.
            if !self.gather(stream).await? {
                return Ok(());
            }
            // What CLIENT LIST shows is published before the replies go out, so a client
            // that has its reply sees itself (and others see it) as of that command.
            let info = &self.conn.info;
            info.touch();
            info.last_command.store(self.conn.last_command, Relaxed);
            info.query_buffer.store(self.input.len(), Relaxed);
            info.query_buffer_capacity
                .store(self.input.capacity(), Relaxed);
            self.deliver_messages();
            self.write_some(stream)?;
            if self.unwritten() > 0 {
                let (hard, soft, _) = door.settings.output_limits();
                if hard == 0 && soft == 0 {
                    // No limits: back-pressure. Nothing more runs until the client has read.
                    if !self.flush_all(stream).await? {
                        return Ok(());
                    }
                } else if self.soft_limit_exceeded() {
                    return Ok(());
                }
            }
            need_input = matches!(progress, Progress::NeedInput);
            let info = &self.conn.info;
            info.output_buffer.store(self.unwritten(), Relaxed);
            if self.input.is_empty() && self.input.capacity() > KEEP_CAPACITY {
                self.input = BytesMut::with_capacity(READ_CHUNK);
            }
            if info.is_killed() {
                return Ok(());
            }
        }
    }

    /// Appends the messages waiting for this subscriber (if it is one) to the output, in the
    /// connection's protocol.
    fn deliver_messages(&mut self) {
        self.conn.deliver_messages(&mut self.output);
    }

    /// Reply bytes not yet written.
    #[inline]
    fn unwritten(&self) -> usize {
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
    /// [`FLUSH_AT`] bytes or a command must wait.
    fn process(&mut self) -> Progress<B> {
        let Session {
            backend,
            conn,
            state,
            parser,
            input,
            output,
            written,
            pending,
            worker,
            ..
        } = self;
        let door = backend.door();
        let worker = worker.get(&door.stats);
        parser.set_limits(door.settings.parser_limits());
        let (hard_limit, _, _) = door.settings.output_limits();
        let stop_at = output.len() + FLUSH_AT;
        let mut consumed_total = 0;
        let mut reserve_for_frame = 0;
        let progress = loop {
            parser.set_unauthenticated(!conn.authenticated && door.acl.auth_required());
            match parser.parse(&input[consumed_total..]) {
                Ok(Parsed::Command { consumed }) => {
                    // A backend that keeps arguments past this buffer gets them as shared
                    // slices of their own request.
                    let frame = if B::OWNED_ARGS {
                        let frame = input.split_to(consumed_total + consumed).freeze();
                        consumed_total = 0;
                        Some(frame.slice(frame.len() - consumed..))
                    } else {
                        None
                    };
                    // What is left to skip of this request in the buffer once it is taken (none
                    // when it was cut out of it).
                    let in_buffer = if frame.is_some() { 0 } else { consumed };
                    let request: &[u8] = match &frame {
                        Some(frame) => frame,
                        None => &input[consumed_total..consumed_total + consumed],
                    };
                    let argv = parser.argv(request);
                    // With pipelining, the next command is usually already here: start
                    // fetching its key now so the miss overlaps with this command.
                    let after = &input[consumed_total + in_buffer..];
                    if let Some(next_key) = peek_key(after) {
                        backend.prefetch(next_key);
                    }
                    // Behind a reply still to come, this one waits in its own buffer.
                    let mut behind = Vec::new();
                    let queued = !pending.is_empty();
                    let out = if queued { &mut behind } else { &mut *output };
                    let mark = out.len();
                    let protocol = conn.protocol;
                    // A panicking command is a bug, but it must cost one connection, not the
                    // process. The cost when nothing panics is nil (no code runs on this path).
                    let ran = catch_unwind(AssertUnwindSafe(|| {
                        let request = Request {
                            backend,
                            conn: &mut *conn,
                            state: &mut *state,
                            out: &mut *out,
                            worker,
                        };
                        dispatch(request, &argv, frame.as_ref())
                    }));
                    let step = match ran {
                        Ok(step) => step,
                        Err(panic) => {
                            let message = panic
                                .downcast_ref::<&str>()
                                .copied()
                                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                                .unwrap_or("(no message)");
                            tracing::error!(
                                client = conn.info.id,
                                addr = %conn.info.addr,
                                command = %String::from_utf8_lossy(argv.get(0)),
                                "command panicked, closing the connection: {message}"
                            );
                            door.stats.command_panics.fetch_add(1, Relaxed);
                            door.stats.record_error("ERR");
                            out.truncate(mark);
                            Reply::new(out, conn.protocol).error(
                                "ERR internal error while running the command; closing the connection",
                            );
                            if queued {
                                pending.push_back(Slot::Ready(behind));
                            }
                            consumed_total += in_buffer;
                            break Progress::Close;
                        }
                    };
                    if let Step::Retry(_) = step {
                        // Nothing of a command that runs again is kept from this run.
                        out.truncate(mark);
                    }
                    if queued && !behind.is_empty() {
                        pending.push_back(Slot::Ready(behind));
                    }
                    match step {
                        Step::Done => {
                            if let Some(pause) = conn.pause.take() {
                                consumed_total += in_buffer;
                                break Progress::Pause(pause);
                            }
                        }
                        Step::Retry(wait) => {
                            // The request stays in the buffer, to run again after the wait.
                            if let Some(frame) = frame {
                                let mut restored =
                                    BytesMut::with_capacity(frame.len() + input.len());
                                restored.extend_from_slice(&frame);
                                restored.extend_from_slice(input);
                                *input = restored;
                            }
                            break Progress::Retry(wait);
                        }
                        Step::Later {
                            reply,
                            barrier,
                            command,
                        } => {
                            let later = Pending { protocol, command };
                            pending.push_back(Slot::Later(reply, later));
                            consumed_total += in_buffer;
                            if barrier || pending.len() >= MAX_BATCH {
                                break Progress::Gather;
                            }
                            if conn.close_after_reply {
                                break Progress::Close;
                            }
                            continue;
                        }
                        Step::HandOff(how) => {
                            consumed_total += in_buffer;
                            break Progress::HandOff(how);
                        }
                        Step::Abort => {
                            // As Redis frees such a client: nothing more of it is answered.
                            output.truncate(*written);
                            pending.clear();
                            consumed_total += in_buffer;
                            break Progress::Close;
                        }
                    }
                    consumed_total += in_buffer;
                    if conn.close_after_reply {
                        break Progress::Close;
                    }
                    if over_hard_limit(door, conn, output.len() - *written, hard_limit) {
                        output.clear();
                        *written = 0;
                        pending.clear();
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
                        let limit = door.settings.query_buffer_limit().saturating_add(1);
                        let have = input.len() - consumed_total;
                        reserve_for_frame = frame_len.min(limit).saturating_sub(have);
                    }
                    break Progress::NeedInput;
                }
                Err(error) => {
                    tracing::debug!(client = conn.info.id, addr = %conn.info.addr, "protocol error: {error}");
                    door.stats.protocol_errors.fetch_add(1, Relaxed);
                    door.stats.record_error("ERR");
                    let mut line = Vec::new();
                    let out = if pending.is_empty() {
                        &mut *output
                    } else {
                        &mut line
                    };
                    Reply::new(out, conn.protocol).error(&format!("ERR {error}"));
                    if !line.is_empty() {
                        pending.push_back(Slot::Ready(line));
                    }
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

    /// Waits for the replies still to come, in order, appending each to the output. With no
    /// output limits set, replies are written out every [`FLUSH_AT`] bytes and the session
    /// waits for the client to take them; with limits, it writes what the socket takes and
    /// goes on, and a client over the hard limit (or the soft one for too long) is closed.
    /// Returns `false` if the client was closed for its output limits.
    async fn gather(&mut self, stream: &mut Stream) -> std::io::Result<bool> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        // Waiting for replies is not being idle, and `CLIENT LIST` shows what it waits on.
        let info = &self.conn.info;
        info.last_command.store(self.conn.last_command, Relaxed);
        info.set_blocked(true);
        let kept = self.gather_pending(stream).await;
        self.conn.info.set_blocked(false);
        self.conn.info.touch();
        kept
    }

    async fn gather_pending(&mut self, stream: &mut Stream) -> std::io::Result<bool> {
        while let Some(piece) = self.pending.next().await {
            match piece {
                Piece::Bytes(bytes) => self.output.extend_from_slice(&bytes),
                Piece::Reply(reply, later) => {
                    let error = self
                        .backend
                        .write_reply(reply, later.protocol, &mut self.output);
                    if let Some(code) = error {
                        // Counted as Redis counts a blocked command that ends in an error.
                        let door = self.backend.door();
                        door.stats.record_error(&code);
                        let worker = self.worker.get(&door.stats);
                        worker.record_failed(later.command as usize);
                    }
                }
            }
            let door = self.backend.door();
            let (hard, soft, _) = door.settings.output_limits();
            if over_hard_limit(door, &self.conn, self.unwritten(), hard) {
                self.pending.clear();
                return Ok(false);
            }
            if self.unwritten() < FLUSH_AT {
                continue;
            }
            let kept = if hard == 0 && soft == 0 {
                self.flush_all(stream).await?
            } else {
                self.write_some(stream)?;
                !self.soft_limit_exceeded()
            };
            if !kept {
                self.pending.clear();
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Writes as much of the pending replies as the socket takes without waiting.
    fn write_some(&mut self, stream: &mut Stream) -> std::io::Result<()> {
        while self.written < self.output.len() {
            match stream.try_write(&self.output[self.written..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.worker.get(&self.backend.door().stats).record_output(n);
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
    async fn flush_all(&mut self, stream: &mut Stream) -> std::io::Result<bool> {
        loop {
            self.write_some(stream)?;
            if self.unwritten() == 0 {
                return Ok(true);
            }
            if self.soft_limit_exceeded() {
                return Ok(false);
            }
            let writable = stream.writable();
            match self.soft_deadline() {
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
    async fn wait_ready(&mut self, stream: &mut Stream) -> std::io::Result<Ready> {
        let interest = Interest::READABLE | Interest::WRITABLE;
        let ready = match self.soft_deadline() {
            None => stream.ready(interest).await?,
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), stream.ready(interest)).await {
                    Ok(ready) => ready?,
                    Err(_) => {
                        return Ok(if self.soft_limit_exceeded() {
                            Ready::OverLimit
                        } else {
                            Ready::Output
                        });
                    }
                }
            }
        };
        if ready.is_writable() {
            self.write_some(stream)?;
        }
        if ready.is_readable() || ready.is_read_closed() {
            self.reserve_read_room();
            match stream.try_read_buf(&mut self.input) {
                Ok(0) => return Ok(Ready::Eof),
                Ok(n) => {
                    self.worker.get(&self.backend.door().stats).record_input(n);
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
    fn soft_deadline(&self) -> Option<Instant> {
        let (_, soft, seconds) = self.backend.door().settings.output_limits();
        let since = self.over_soft_since?;
        (soft > 0).then(|| since + Duration::from_secs(seconds))
    }

    /// Whether more than the soft output limit has been pending for longer than its grace
    /// time (then the disconnection is counted and logged). Starts or stops the grace time.
    fn soft_limit_exceeded(&mut self) -> bool {
        let door = self.backend.door();
        let (_, soft, seconds) = door.settings.output_limits();
        if soft == 0 || self.unwritten() <= soft {
            self.over_soft_since = None;
            return false;
        }
        let since = *self.over_soft_since.get_or_insert_with(Instant::now);
        if since.elapsed() < Duration::from_secs(seconds) {
            return false;
        }
        tracing::warn!(
            client = self.conn.info.id,
            addr = %self.conn.info.addr,
            bytes = self.unwritten(),
            "closing client for overcoming of output buffer limits"
        );
        door.stats
            .output_buffer_disconnections
            .fetch_add(1, Relaxed);
        true
    }
}

/// Whether `pending` bytes of replies are over the hard output limit (then the disconnection
/// is counted and logged).
fn over_hard_limit(door: &crate::door::Door, conn: &Conn, pending: usize, hard: usize) -> bool {
    if hard == 0 || pending <= hard {
        return false;
    }
    tracing::warn!(
        client = conn.info.id,
        addr = %conn.info.addr,
        bytes = pending,
        "closing client for overcoming of output buffer limits"
    );
    door.stats
        .output_buffer_disconnections
        .fetch_add(1, Relaxed);
    true
}
