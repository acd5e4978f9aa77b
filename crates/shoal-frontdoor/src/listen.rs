//! Listening sockets and the accept loop: binding (with a clear error when the port is
//! taken), `maxclients`, refusing the connections over it as Redis does, and registering the
//! others.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::clients::{Registration, Reservation};
use crate::door::Door;
use crate::stream::Stream;
use crate::tls::TlsAcceptor;

/// Which of a server's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The RESP port (`--port`).
    Resp,
    /// The RESP port for TLS clients (`--tls-port`).
    Tls,
    /// The HTTP API's port (`--http-port`).
    Http,
    /// A node's cluster bus port (`--cluster-port`, by default `--port` + 10000).
    ClusterBus,
}

impl Listener {
    /// What people call it.
    fn name(self) -> &'static str {
        match self {
            Listener::Resp => "RESP port",
            Listener::Tls => "TLS port",
            Listener::Http => "HTTP port",
            Listener::ClusterBus => "cluster bus port",
        }
    }

    /// The flags that choose its port.
    fn flags(self) -> &'static str {
        match self {
            Listener::Resp => "--port",
            Listener::Tls => "--tls-port",
            Listener::Http => "--http-port, or 0 for no HTTP API",
            Listener::ClusterBus => "--port or --cluster-port",
        }
    }
}

/// Why a listener could not be opened: which one, where, and the OS's reason with what to do
/// about it (`cannot listen on the cluster bus port 127.0.0.1:17000: address already in use
/// (another process holds it; pick another --port or --cluster-port)`).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on the {} {addr}: {}{}",
    listener.name(),
    reason(error),
    hint(error, *listener, *port)
)]
pub struct BindError {
    /// Which listener.
    pub listener: Listener,
    /// The address asked for.
    pub addr: String,
    /// The port asked for.
    pub port: u16,
    /// The OS error (its words are in the message, so it is not given as a source again).
    pub error: std::io::Error,
}

/// The OS's words for `error`, without the error number: `address already in use`.
fn reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => &text[..],
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", error.kind()),
    }
}

/// What to add to the OS's words so a user knows what to do.
fn hint(error: &std::io::Error, listener: Listener, port: u16) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            " (another process holds it; pick another {})",
            listener.flags()
        ),
        std::io::ErrorKind::PermissionDenied if port < 1024 => format!(
            " (ports below 1024 are privileged; pick another {})",
            listener.flags()
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            " (no network interface of this machine has that address; check --bind)".to_string()
        }
        _ => String::new(),
    }
}

/// Opens a TCP listener for `listener` on `host:port` (`port` 0 picks a free one), with
/// `SO_REUSEADDR` (a restarted server gets its port back while old connections linger in
/// `TIME_WAIT`), a backlog of 1024, non-blocking, ready for tokio.
pub fn bind(host: &str, port: u16, listener: Listener) -> Result<StdListener, BindError> {
    let err = |addr: String, error| BindError {
        listener,
        addr,
        port,
        error,
    };
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|e| {
            err(
                format!("{host}:{port}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
    let err = |error| err(addr.to_string(), error);
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

/// The listeners of a node or a proxy, bound, with the addresses they got (port 0 picks one).
#[derive(Debug)]
pub struct Bound {
    /// The plain RESP listener and its address, unless the server serves TLS only.
    pub resp: Option<(StdListener, SocketAddr)>,
    /// The TLS RESP listener and its address, if one was asked for.
    pub tls: Option<(StdListener, SocketAddr)>,
    /// The HTTP listener and its address, if one was asked for.
    pub http: Option<(StdListener, SocketAddr)>,
}

impl Bound {
    /// Where clients reach the server: the plain RESP port, else the TLS one.
    pub fn client_addr(&self) -> SocketAddr {
        self.resp
            .as_ref()
            .or(self.tls.as_ref())
            .map(|(_, addr)| *addr)
            .expect("a server has a plain or a TLS port")
    }
}

/// The ports a server listens on; `None` for a listener it does not run.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The plain RESP port (0 picks one).
    pub resp: Option<u16>,
    /// The TLS RESP port.
    pub tls: Option<u16>,
    /// The HTTP port (0 picks one).
    pub http: Option<u16>,
}

/// Binds the listeners of `ports` on `host` (see [`bind`]).
pub fn bind_all(host: &str, ports: Ports) -> Result<Bound, BindError> {
    let resp = ports
        .resp
        .map(|port| bind_with_addr(host, port, Listener::Resp))
        .transpose()?;
    let tls = ports
        .tls
        .map(|port| bind_with_addr(host, port, Listener::Tls))
        .transpose()?;
    let http = ports
        .http
        .map(|port| bind_with_addr(host, port, Listener::Http))
        .transpose()?;
    Ok(Bound { resp, tls, http })
}

fn bind_with_addr(
    host: &str,
    port: u16,
    which: Listener,
) -> Result<(StdListener, SocketAddr), BindError> {
    let listener = bind(host, port, which)?;
    let addr = listener.local_addr().map_err(|error| BindError {
        listener: which,
        addr: format!("{host}:{port}"),
        port,
        error,
    })?;
    Ok((listener, addr))
}

/// Logs that `what` (`node`, `proxy`) serves from now on, where, and with how many threads.
pub fn log_ready(what: &str, bound: &Bound, threads: usize) {
    let addr = |listener: &Option<(StdListener, SocketAddr)>| {
        listener
            .as_ref()
            .map(|(_, addr)| tracing::field::display(*addr))
    };
    tracing::info!(
        resp_addr = addr(&bound.resp),
        tls_addr = addr(&bound.tls),
        http = addr(&bound.http),
        threads,
        "shoal {what} ready"
    );
}

/// A connection that was accepted and registered, for a session to serve.
#[derive(Debug)]
pub struct Accepted {
    /// Its place in the registry; drop it before the socket (see [`Registration`]).
    pub registration: Registration,
    /// The connection.
    pub stream: Stream,
}

impl Accepted {
    /// Registers `stream`, which holds `reservation`, in the client registry.
    pub fn register(reservation: Reservation, stream: TcpStream) -> Accepted {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
        let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
        let addr = stream.peer_addr().unwrap_or(unknown);
        let laddr = stream.local_addr().unwrap_or(unknown);
        let registration = reservation.register(addr, laddr, fd);
        Accepted {
            registration,
            stream: Stream::Plain(stream),
        }
    }

    /// Runs the TLS handshake (within [`crate::tls::HANDSHAKE_TIMEOUT`]) on a connection of
    /// the TLS port; `None` if it fails, and then the connection and its slot are given up.
    pub async fn secure(self, tls: &TlsAcceptor) -> Option<Accepted> {
        let Accepted {
            registration,
            stream: Stream::Plain(tcp),
        } = self
        else {
            return Some(self);
        };
        match tls.accept(tcp).await {
            Ok(tls) => Some(Accepted {
                registration,
                stream: Stream::Tls(Box::new(tls)),
            }),
            Err(e) => {
                let info = registration.info();
                tracing::debug!(client = info.id, addr = %info.addr, "TLS handshake failed: {e}");
                None
            }
        }
    }
}

/// Accepts connections on `listener` until the door shuts down, and gives each one that fits
/// under `maxclients`, with its slot reserved, to `serve` (which registers it, with
/// [`Accepted::register`], on the runtime that serves it). One over the limit gets Redis's
/// `-ERR max number of clients reached` and is closed; one that protected mode turns away
/// ([`Settings::denies`](crate::Settings::denies)) gets Redis's `-DENIED ...`. On a TLS port
/// (`tls` given) those errors are sent after a handshake, as Redis does; the handshake of an
/// accepted connection is for `serve`'s task ([`Accepted::secure`]), never this loop's.
pub async fn accept_loop(
    door: Arc<Door>,
    listener: TcpListener,
    tls: Option<Arc<TlsAcceptor>>,
    mut serve: impl FnMut(TcpStream, Reservation),
) {
    let mut shutdown = door.shutdown_signal();
    let mut backoff = AcceptBackoff::new("RESP");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff.succeeded();
                a
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        // As in Redis, a refused connection counts in `rejected_connections` only.
        let Some(reservation) = Reservation::take(&door.clients, door.settings.maxclients()) else {
            door.stats.rejected_connections.fetch_add(1, Relaxed);
            tokio::spawn(refuse(stream, tls.clone(), MAX_CLIENTS));
            continue;
        };
        // Then protected mode, in Redis's order (it counts as rejected there too).
        if door.denies(&peer) {
            drop(reservation);
            door.stats.rejected_connections.fetch_add(1, Relaxed);
            tokio::spawn(refuse(stream, tls.clone(), crate::settings::DENIED));
            continue;
        }
        door.stats.connections_received.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        serve(stream, reservation);
    }
}

/// How an accept loop waits after a failed `accept` (out of file descriptors, say): 10 ms
/// after the first failure, doubling up to a second while failures go on, so that a loop
/// whose every accept fails neither spins nor floods the log (one line for the first failure,
/// then at most one every [`BACKOFF_LOG_EVERY`] with the count since).
#[derive(Debug)]
pub struct AcceptBackoff {
    listener: &'static str,
    wait: Duration,
    failures: u64,
    last_logged: Option<std::time::Instant>,
}

/// The first wait after a failed accept.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// The longest wait after failed accepts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Least time between two log lines about failed accepts.
const BACKOFF_LOG_EVERY: Duration = Duration::from_secs(10);

impl AcceptBackoff {
    /// No failures yet, for the listener named `listener` in the log ("RESP", "HTTP").
    pub fn new(listener: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            listener,
            wait: BACKOFF_FIRST,
            failures: 0,
            last_logged: None,
        }
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    #[inline]
    pub fn succeeded(&mut self) {
        self.wait = BACKOFF_FIRST;
    }

    /// An accept failed with `error`: logs it (rate-limited) and waits before the next one.
    pub async fn failed(&mut self, error: &std::io::Error) {
        self.failures += 1;
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= BACKOFF_LOG_EVERY)
        {
            tracing::warn!(
                listener = self.listener,
                failures = self.failures,
                "accepting a connection failed: {error}; waiting {:?} before the next accept",
                self.wait
            );
            self.last_logged = Some(now);
            self.failures = 0;
        }
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(BACKOFF_MAX);
    }

    /// How long the next failure waits.
    #[cfg(test)]
    fn next_wait(&self) -> Duration {
        self.wait
    }
}

/// How long a refused connection is drained before it is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(200);

/// What a connection over `maxclients` reads before it is closed.
const MAX_CLIENTS: &str = "-ERR max number of clients reached\r\n";

/// Answers a connection turned away (over `maxclients`, or by protected mode) with `error`
/// as Redis does, then closes it. Whatever the client sent meanwhile is read and dropped for a
/// moment first: closing a socket with unread input resets the connection, and the client
/// could lose the error before reading it.
async fn refuse(stream: TcpStream, tls: Option<Arc<TlsAcceptor>>, error: &'static str) {
    let mut stream = match tls {
        None => Stream::Plain(stream),
        Some(tls) => match tls.accept(stream).await {
            Ok(tls) => Stream::Tls(Box::new(tls)),
            Err(_) => return,
        },
    };
    let _ = stream.write_all(error.as_bytes()).await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_back_off_up_to_a_second_and_a_success_resets_the_wait() {
        let mut backoff = AcceptBackoff::new("test");
        let error = std::io::Error::from_raw_os_error(24); // EMFILE
        let started = tokio::time::Instant::now();
        for _ in 0..12 {
            backoff.failed(&error).await;
        }
        // 10 + 20 + ... + 640 ms, then 1 s five more times.
        assert_eq!(started.elapsed(), Duration::from_millis(1270 + 5000));
        assert_eq!(backoff.next_wait(), BACKOFF_MAX);
        backoff.succeeded();
        assert_eq!(backoff.next_wait(), BACKOFF_FIRST);
    }

    #[test]
    fn a_taken_port_is_named_in_the_error() {
        let first = bind("127.0.0.1", 0, Listener::Resp).expect("a free port");
        let port = first.local_addr().expect("bound").port();
        // SO_REUSEADDR does not let two sockets listen on one port.
        for (listener, words) in [
            (
                Listener::Resp,
                "RESP port 127.0.0.1:{port}: address already in use (another process holds it; \
                 pick another --port)",
            ),
            (
                Listener::Http,
                "HTTP port 127.0.0.1:{port}: address already in use (another process holds it; \
                 pick another --http-port, or 0 for no HTTP API)",
            ),
            (
                Listener::ClusterBus,
                "cluster bus port 127.0.0.1:{port}: address already in use (another process \
                 holds it; pick another --port or --cluster-port)",
            ),
        ] {
            let error = bind("127.0.0.1", port, listener).expect_err("the port is taken");
            let expected = format!(
                "cannot listen on the {}",
                words.replace("{port}", &port.to_string())
            );
            assert_eq!(error.to_string(), expected);
            assert!(
                std::error::Error::source(&error).is_none(),
                "the OS's words are said once"
            );
        }
        let error = bind("not an address", 1, Listener::Resp).expect_err("not an address");
        assert!(
            error
                .to_string()
                .starts_with("cannot listen on the RESP port not an address:1: invalid"),
            "{error}"
        );
    }
}
