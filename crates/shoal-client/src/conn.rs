//! One multiplexed, pipelined connection to a node.
//!
//! A connection's handle exists from the moment it is asked for: it connects in the
//! background, and requests made meanwhile queue in order, so a pipeline that starts on a
//! connection being opened still reaches the node in its order.
//! Callers hand an encoded frame and a oneshot to the connection's queue. A writer task takes
//! everything queued at that moment and writes it with one `write_all`; a reader task decodes
//! replies and completes the oneshots in FIFO order (the order the writer put them on the wire).
//! A frame is written whole, so a batch of requests in one frame (a transaction's `MULTI` ...
//! `EXEC`, [`Conn::request_batch`]) reaches the node with nothing of another caller between
//! its requests, and its replies are gathered for its one oneshot.
//! When the connection fails, every request written and unanswered gets
//! [`Error::ConnectionLost`] (it may have run), every request still queued gets [`Error::Io`]
//! (it did not), and the connection is marked dead so the pool opens a new one.
//!
//! Out-of-band RESP3 pushes (`>`) go to the connection's [`PushSink`] if it has one (a near
//! cache's tracking connection: its invalidations), in the order they arrive among the
//! replies, and are dropped otherwise. A push is handed over before any reply that follows
//! it on the wire is completed, so a caller that got a reply knows every push sent ahead of
//! it was seen.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use shoal_proto::Protocol;
use shoal_proto::reply::{Value, decode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::codec::{ASKING, encode};
use crate::config::{ClientConfig, ClientTls, ReadFrom};
use crate::error::{Error, error_code};
use crate::stats::Stats;

/// Requests that may wait in a connection's queue before senders wait for room.
const QUEUE: usize = 4096;
/// Bytes one socket write gathers at most.
const MAX_BATCH: usize = 512 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// How to open connections.
#[derive(Clone)]
pub(crate) struct ConnOptions {
    pub protocol: Protocol,
    pub username: Option<String>,
    pub password: Option<String>,
    pub client_name: Option<String>,
    pub connect_timeout: Duration,
    /// Send `READONLY` on connect, so that replicas serve this connection's reads. A node
    /// that refuses it (not in cluster mode) is still used.
    pub readonly: bool,
    /// TLS to the node, if configured.
    pub tls: Option<ClientTls>,
    /// Where RESP3 pushes go; with one, the connection also sends `CLIENT TRACKING ON` when
    /// it opens (and must speak RESP3).
    pub pushes: Option<Arc<dyn PushSink>>,
}

/// Takes the RESP3 pushes (`>`) a connection receives, from its reader task.
pub(crate) trait PushSink: Send + Sync + 'static {
    /// One push's items, in arrival order among the connection's replies; `seq` counts the
    /// connection's pushes from 1 ([`Conn::request_batch_counted`] says how many came before
    /// a reply).
    fn push(&self, items: Vec<Value>, seq: u64);

    /// The connection ended (or could not be opened): pushes sent on it may have been lost.
    /// Called before the requests in flight get their errors.
    fn ended(&self);
}

impl ConnOptions {
    /// The options `config` asks for.
    pub fn of(config: &ClientConfig) -> ConnOptions {
        ConnOptions {
            protocol: config.protocol,
            username: config.username.clone(),
            password: config.password.clone(),
            client_name: config.client_name.clone(),
            connect_timeout: config.connect_timeout,
            readonly: config.read_from != ReadFrom::Primary,
            tls: config.tls.clone(),
            pushes: None,
        }
    }
}

impl std::fmt::Debug for ConnOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnOptions")
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("client_name", &self.client_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("readonly", &self.readonly)
            .field("tls", &self.tls.is_some())
            .field("tracking", &self.pushes.is_some())
            .finish()
    }
}

/// A reply, with the number of pushes the connection received before it.
type ReplyTx = oneshot::Sender<Result<(Value, u64), Error>>;

struct Pending {
    frame: Bytes,
    asking: bool,
    /// For a batch ([`Conn::request_batch`]), how many replies the frame gets; a command
    /// gets one.
    batch: Option<usize>,
    reply: ReplyTx,
}

/// An in-flight request: `skip` replies (to `ASKING`) come before its own; a batch gathers
/// its replies until it has them all.
struct Sink {
    skip: u8,
    batch: Option<Gathered>,
    reply: ReplyTx,
}

/// The replies of a batch so far.
struct Gathered {
    want: usize,
    got: Vec<Value>,
    /// Pushes received before the first reply.
    pushes_before: u64,
}

struct State {
    dead: bool,
    inflight: VecDeque<Sink>,
}

struct Shared {
    addr: String,
    state: Mutex<State>,
    dead: AtomicBool,
    stop_writer: Notify,
    /// Set once the connection is open and its writer runs: before, no request was written.
    open: AtomicBool,
    /// Set when the connection could not be opened.
    open_failure: Mutex<Option<(Instant, Error)>>,
    stats: Arc<Stats>,
    pushes: Option<Arc<dyn PushSink>>,
}

/// Why a connection ended.
enum End {
    /// The client dropped it (every handle is gone).
    Dropped,
    /// The peer closed it or the socket failed.
    Lost(String),
    /// The peer sent a malformed or unsolicited reply.
    Protocol(String),
}

impl Shared {
    /// Marks the connection dead and fails every request in flight.
    fn fail_all(&self, end: &End) {
        let sinks = {
            let mut state = self.state.lock();
            if state.dead {
                return;
            }
            state.dead = true;
            self.dead.store(true, Ordering::Release);
            std::mem::take(&mut state.inflight)
        };
        // Before the requests in flight hear of it: a near cache's fill that fails must find
        // its generation over.
        if let Some(sink) = &self.pushes {
            sink.ended();
        }
        if matches!(end, End::Lost(_) | End::Protocol(_)) {
            Stats::bump(&self.stats.connection_losses);
        }
        let lost = |reason: &str| Error::ConnectionLost {
            addr: self.addr.clone(),
            reason: reason.to_string(),
        };
        for (i, sink) in sinks.into_iter().enumerate() {
            let err = match end {
                End::Dropped => lost("the client closed the connection"),
                End::Lost(reason) => lost(reason),
                End::Protocol(reason) if i == 0 => Error::protocol(&self.addr, reason.clone()),
                End::Protocol(reason) => lost(&format!("an earlier reply was malformed: {reason}")),
            };
            let _ = sink.reply.send(Err(err));
        }
    }

    /// The error of a request that was never written: why the connection could not be
    /// opened, or that it closed.
    fn not_sent(&self) -> Error {
        if let Some((_, err)) = &*self.open_failure.lock() {
            return err.clone();
        }
        Error::io(
            &self.addr,
            std::io::Error::new(std::io::ErrorKind::NotConnected, "connection closed"),
        )
    }
}

/// A handle to one pipelined connection; clones share it. The connection closes when the
/// last handle is dropped.
#[derive(Clone)]
pub(crate) struct Conn {
    tx: mpsc::Sender<Pending>,
    shared: Arc<Shared>,
}

impl Conn {
    /// A connection to `addr`, opened in the background: the handle is usable at once, and
    /// requests made before the connection is up (connected, authenticated, protocol
    /// switched as `options` say) queue in the order they were made and are written in that
    /// order once it is. If it cannot be opened, each of them gets the error.
    pub fn open(addr: &str, options: &ConnOptions, stats: Arc<Stats>) -> Conn {
        let shared = Arc::new(Shared {
            addr: addr.to_string(),
            state: Mutex::new(State {
                dead: false,
                inflight: VecDeque::new(),
            }),
            dead: AtomicBool::new(false),
            stop_writer: Notify::new(),
            open: AtomicBool::new(false),
            open_failure: Mutex::new(None),
            stats,
            pushes: options.pushes.clone(),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx, options.clone(), shared.clone()));
        Conn { tx, shared }
    }

    /// When and why opening this connection failed, if it did.
    pub fn open_failure(&self) -> Option<(Instant, Error)> {
        self.shared.open_failure.lock().clone()
    }

    /// Whether the connection may still carry requests.
    pub fn is_alive(&self) -> bool {
        !self.shared.dead.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Sends one encoded request (after `ASKING` if `asking`) and waits for its reply until
    /// `timeout` passes.
    pub async fn request(
        &self,
        frame: Bytes,
        asking: bool,
        timeout: Duration,
    ) -> Result<Value, Error> {
        Ok(self.submit(frame, asking, None, timeout).await?.0)
    }

    /// Sends `frame`, several encoded requests that get `replies` replies in all (a
    /// transaction's `MULTI` ... `EXEC`), in one piece: no other request of the connection is
    /// written between them. Waits for every reply until `timeout` passes, and returns them in
    /// order.
    pub async fn request_batch(
        &self,
        frame: Bytes,
        asking: bool,
        replies: usize,
        timeout: Duration,
    ) -> Result<Vec<Value>, Error> {
        Ok(self
            .request_batch_counted(frame, asking, replies, timeout)
            .await?
            .0)
    }

    /// [`Conn::request_batch`], and how many pushes the connection had received when the
    /// batch's first reply arrived: a push numbered above it came after that reply.
    pub async fn request_batch_counted(
        &self,
        frame: Bytes,
        asking: bool,
        replies: usize,
        timeout: Duration,
    ) -> Result<(Vec<Value>, u64), Error> {
        if replies == 0 {
            return Ok((Vec::new(), 0));
        }
        match self.submit(frame, asking, Some(replies), timeout).await? {
            (Value::Array(values), pushes) if values.len() == replies => Ok((values, pushes)),
            (other, _) => Err(Error::protocol(
                &self.shared.addr,
                format!("a batch of {replies} replies was answered {other:?}"),
            )),
        }
    }

    /// Queues `frame` and waits for its reply, or for a batch's replies, gathered in an
    /// array.
    async fn submit(
        &self,
        frame: Bytes,
        asking: bool,
        batch: Option<usize>,
        timeout: Duration,
    ) -> Result<(Value, u64), Error> {
        let deadline = deadline_after(timeout);
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            frame,
            asking,
            batch,
            reply,
        };
        let timed_out = || Error::Timeout {
            addr: self.shared.addr.clone(),
            after: timeout,
        };
        // Queued at once when there is room: `try_send` does not wait and is not subject to
        // tokio's cooperative budget, so requests issued in order (a proxy's pipeline, polled
        // in order) are queued, and so written, in that order. Only a full queue waits.
        match self.tx.try_send(pending) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.shared.not_sent()),
            Err(mpsc::error::TrySendError::Full(pending)) => {
                match tokio::time::timeout_at(deadline, self.tx.send(pending)).await {
                    Err(_) => return Err(timed_out()),
                    Ok(Err(_)) => return Err(self.shared.not_sent()),
                    Ok(Ok(())) => {}
                }
            }
        }
        match tokio::time::timeout_at(deadline, rx).await {
            // The reply's receiver is gone now, so a writer starting later skips the request:
            // if the connection is not open yet, it was never written (and may be retried).
            Err(_) if !self.shared.open.load(Ordering::Acquire) => Err(Error::io(
                &self.shared.addr,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("not connected within {timeout:?}"),
                ),
            )),
            Err(_) => Err(timed_out()),
            Ok(Err(_)) => Err(Error::ConnectionLost {
                addr: self.shared.addr.clone(),
                reason: "the connection's task ended".into(),
            }),
            Ok(Ok(result)) => result,
        }
    }
}

/// `timeout` from now; a timeout too long to add (`Duration::MAX`) means some decades.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Sends `AUTH`/`HELLO` as configured and checks the replies. Returns bytes read past them.
async fn prelude(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    addr: &str,
    options: &ConnOptions,
) -> Result<BytesMut, Error> {
    let user = options.username.as_deref().unwrap_or("default");
    let mut frames = Vec::new();
    let mut expect = 0;
    match (&options.protocol, &options.password) {
        (Protocol::Resp3, Some(password)) => {
            frames.extend_from_slice(&encode(&["HELLO", "3", "AUTH", user, password]));
            expect += 1;
        }
        (Protocol::Resp3, None) => {
            frames.extend_from_slice(&encode(&["HELLO", "3"]));
            expect += 1;
        }
        (Protocol::Resp2, Some(password)) => {
            match &options.username {
                Some(user) => frames.extend_from_slice(&encode(&["AUTH", user, password])),
                None => frames.extend_from_slice(&encode(&["AUTH", password])),
            }
            expect += 1;
        }
        (Protocol::Resp2, None) => {}
    }
    if let Some(name) = &options.client_name {
        frames.extend_from_slice(&encode(&["CLIENT", "SETNAME", name]));
        expect += 1;
    }
    if options.pushes.is_some() {
        frames.extend_from_slice(&encode(&["CLIENT", "TRACKING", "ON"]));
        expect += 1;
    }
    // Last, so that its reply is the last one: an error to it (a node not in cluster mode)
    // does not fail the connection.
    if options.readonly {
        frames.extend_from_slice(&encode(&["READONLY"]));
        expect += 1;
    }
    let mut buf = BytesMut::new();
    if expect == 0 {
        return Ok(buf);
    }
    stream
        .write_all(&frames)
        .await
        .map_err(|e| Error::io(addr, e))?;
    stream.flush().await.map_err(|e| Error::io(addr, e))?;
    let mut got = 0;
    while got < expect {
        match decode(&buf) {
            Ok(Some((value, used))) => {
                buf.advance(used);
                match value {
                    Value::Push(_) => continue,
                    Value::Error(_) | Value::BulkError(_)
                        if options.readonly && got + 1 == expect =>
                    {
                        got += 1
                    }
                    Value::Error(line) | Value::BulkError(line) => {
                        let message = String::from_utf8_lossy(&line).into_owned();
                        return Err(match error_code(&line) {
                            b"WRONGPASS" | b"NOAUTH" | b"NOPERM" => Error::Auth {
                                addr: addr.to_string(),
                                message,
                            },
                            _ if message.contains("password") => Error::Auth {
                                addr: addr.to_string(),
                                message,
                            },
                            _ => Error::Server(message),
                        });
                    }
                    _ => got += 1,
                }
            }
            Ok(None) => {
                buf.reserve(4096);
                match stream.read_buf(&mut buf).await {
                    Ok(0) => {
                        return Err(Error::io(addr, std::io::ErrorKind::UnexpectedEof.into()));
                    }
                    Ok(_) => {}
                    Err(e) => return Err(Error::io(addr, e)),
                }
            }
            Err(e) => return Err(Error::protocol(addr, e.0)),
        }
    }
    Ok(buf)
}

/// Opens the connection, then carries its requests until it ends; if it cannot be opened,
/// fails every request queued (and every later one) with the reason.
async fn run(rx: mpsc::Receiver<Pending>, options: ConnOptions, shared: Arc<Shared>) {
    match establish(&shared.addr, &options).await {
        Ok((stream, leftover)) => {
            Stats::bump(&shared.stats.connects);
            match stream {
                NodeStream::Plain(tcp) => {
                    let (rd, wr) = tcp.into_split();
                    carry(rd, wr, leftover, rx, shared).await;
                }
                NodeStream::Tls(tls) => {
                    let (rd, wr) = tokio::io::split(*tls);
                    carry(rd, wr, leftover, rx, shared).await;
                }
            }
        }
        Err(err) => {
            *shared.open_failure.lock() = Some((Instant::now(), err));
            shared.fail_all(&End::Dropped); // marks it dead; nothing was in flight
            refuse_queued(rx, &shared).await;
        }
    }
}

/// A connection to a node: plain TCP, or TLS over it.
pub(crate) enum NodeStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// A stream's halves, whichever its kind.
pub(crate) type Halves = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

impl NodeStream {
    /// Its read and write halves.
    pub(crate) fn into_halves(self) -> Halves {
        match self {
            NodeStream::Plain(tcp) => {
                let (rd, wr) = tcp.into_split();
                (Box::new(rd), Box::new(wr))
            }
            NodeStream::Tls(tls) => {
                let (rd, wr) = tokio::io::split(*tls);
                (Box::new(rd), Box::new(wr))
            }
        }
    }
}

/// Carries requests over an open connection's halves until it ends.
async fn carry(
    rd: impl AsyncRead + Unpin + Send + 'static,
    wr: impl AsyncWrite + Unpin,
    leftover: BytesMut,
    rx: mpsc::Receiver<Pending>,
    shared: Arc<Shared>,
) {
    let reader = tokio::spawn(read_loop(rd, leftover, shared.clone()));
    shared.open.store(true, Ordering::Release);
    write_loop(wr, rx, shared, reader.abort_handle()).await;
}

/// Runs the TLS handshake with the node at `addr` on `tcp`.
async fn secure(
    tcp: TcpStream,
    addr: &str,
    tls: &ClientTls,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let host = match &tls.server_name {
        Some(name) => name.as_str(),
        None => crate::map_source::nodes::host_of(addr),
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        Error::io(
            addr,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("'{host}' is not a TLS server name: {e}"),
            ),
        )
    })?;
    tokio_rustls::TlsConnector::from(tls.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| Error::io(addr, e))
}

/// Connects to `addr` (with TLS if configured) and runs the prelude, within the connect
/// timeout. Returns the stream and the bytes read past the prelude's replies.
pub(crate) async fn establish(
    addr: &str,
    options: &ConnOptions,
) -> Result<(NodeStream, BytesMut), Error> {
    let deadline = deadline_after(options.connect_timeout);
    let timed_out = || {
        Error::io(
            addr,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {:?}", options.connect_timeout),
            ),
        )
    };
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| timed_out())?
        .map_err(|e| Error::io(addr, e))?;
    let _ = tcp.set_nodelay(true);
    let mut stream = match &options.tls {
        None => NodeStream::Plain(tcp),
        Some(tls) => {
            let tls = tokio::time::timeout_at(deadline, secure(tcp, addr, tls))
                .await
                .map_err(|_| timed_out())??;
            NodeStream::Tls(Box::new(tls))
        }
    };
    let prelude = async {
        match &mut stream {
            NodeStream::Plain(tcp) => prelude(tcp, addr, options).await,
            NodeStream::Tls(tls) => prelude(&mut **tls, addr, options).await,
        }
    };
    let leftover = tokio::time::timeout_at(deadline, prelude)
        .await
        .map_err(|_| timed_out())??;
    Ok((stream, leftover))
}

/// Closes the queue and fails what it holds: those requests were never written. (`recv`
/// after `close` also waits for senders that had reserved room, which `try_recv` would miss.)
async fn refuse_queued(mut rx: mpsc::Receiver<Pending>, shared: &Shared) {
    rx.close();
    while let Some(pending) = rx.recv().await {
        let _ = pending.reply.send(Err(shared.not_sent()));
    }
}

async fn write_loop(
    mut wr: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Pending>,
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut sinks: Vec<Sink> = Vec::new();
    let end = loop {
        let first = tokio::select! {
            biased;
            _ = shared.stop_writer.notified() => break None,
            next = rx.recv() => match next {
                Some(pending) => pending,
                None => break Some(End::Dropped),
            },
        };
        buf.clear();
        let mut add = |pending: Pending, buf: &mut Vec<u8>| {
            if pending.reply.is_closed() {
                return; // the caller gave up before it was written: don't send it
            }
            if pending.asking {
                buf.extend_from_slice(ASKING);
            }
            buf.extend_from_slice(&pending.frame);
            sinks.push(Sink {
                skip: pending.asking as u8,
                batch: pending.batch.map(|want| Gathered {
                    pushes_before: 0,
                    want,
                    got: Vec::with_capacity(want),
                }),
                reply: pending.reply,
            });
        };
        add(first, &mut buf);
        while buf.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(pending) => add(pending, &mut buf),
                Err(_) => break,
            }
        }
        if sinks.is_empty() {
            continue;
        }
        {
            let mut state = shared.state.lock();
            if state.dead {
                drop(state);
                for sink in sinks.drain(..) {
                    let _ = sink.reply.send(Err(shared.not_sent()));
                }
                break None;
            }
            shared
                .stats
                .frames_sent
                .fetch_add(sinks.len() as u64, Ordering::Relaxed);
            state.inflight.extend(sinks.drain(..));
        }
        Stats::bump(&shared.stats.socket_writes);
        tokio::select! {
            biased;
            _ = shared.stop_writer.notified() => break None,
            // With TLS, `flush` sends what rustls still holds; on TCP it does nothing.
            written = async { wr.write_all(&buf).await?; wr.flush().await } => if let Err(e) = written {
                break Some(End::Lost(format!("write failed: {e}")));
            },
        }
    };
    if let Some(end) = end {
        shared.fail_all(&end);
    }
    reader.abort();
    refuse_queued(rx, &shared).await;
}

async fn read_loop(mut rd: impl AsyncRead + Unpin, mut buf: BytesMut, shared: Arc<Shared>) {
    // Each reply with the number of pushes before it.
    let mut replies: Vec<(Value, u64)> = Vec::new();
    let mut pushes = 0u64;
    let end = 'outer: loop {
        let mut malformed = None;
        loop {
            match decode(&buf) {
                Ok(Some((value, used))) => {
                    buf.advance(used);
                    match value {
                        Value::Push(items) => {
                            pushes += 1;
                            if let Some(sink) = &shared.pushes {
                                sink.push(items, pushes);
                            }
                        }
                        value => replies.push((value, pushes)),
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    malformed = Some(e.0.to_string());
                    break;
                }
            }
        }
        if !replies.is_empty() {
            let mut state = shared.state.lock();
            for (value, pushes) in replies.drain(..) {
                let Some(front) = state.inflight.front_mut() else {
                    break 'outer End::Protocol("a reply nobody asked for".into());
                };
                if front.skip > 0 {
                    front.skip -= 1;
                    continue;
                }
                let value = match &mut front.batch {
                    None => (value, pushes),
                    Some(batch) => {
                        if batch.got.is_empty() {
                            batch.pushes_before = pushes;
                        }
                        batch.got.push(value);
                        if batch.got.len() < batch.want {
                            continue;
                        }
                        (
                            Value::Array(std::mem::take(&mut batch.got)),
                            batch.pushes_before,
                        )
                    }
                };
                if let Some(sink) = state.inflight.pop_front() {
                    let _ = sink.reply.send(Ok(value));
                }
            }
        }
        if let Some(reason) = malformed {
            break End::Protocol(reason);
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break End::Lost("closed by the server".into()),
            Ok(_) => {}
            Err(e) => break End::Lost(format!("read failed: {e}")),
        }
    };
    shared.fail_all(&end);
    shared.stop_writer.notify_one();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn endless_timeouts_do_not_overflow() {
        assert!(deadline_after(Duration::MAX) > Instant::now() + Duration::from_secs(86_400));
        assert!(
            deadline_after(Duration::from_millis(5)) <= Instant::now() + Duration::from_millis(5)
        );
    }
}
