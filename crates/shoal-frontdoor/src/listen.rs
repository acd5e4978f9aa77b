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

/// Why a listener could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}{}", hint(source, *port))]
pub struct BindError {
    /// The address asked for.
    pub addr: String,
    /// The port asked for.
    pub port: u16,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// What to add to the OS's words so a user knows what to do.
fn hint(source: &std::io::Error, port: u16) -> String {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => {
            format!(" (port {port} is taken by another process: stop it or choose another port)")
        }
        std::io::ErrorKind::PermissionDenied if port < 1024 => {
            format!(" (port {port} is privileged: use a port above 1023)")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            " (no network interface of this machine has that address)".to_string()
        }
        _ => String::new(),
    }
}

/// Opens a TCP listener on `host:port` (`port` 0 picks a free one), with `SO_REUSEADDR` (a
/// restarted server gets its port back while old connections linger in `TIME_WAIT`), a
/// backlog of 1024, non-blocking, ready for tokio.
pub fn bind(host: &str, port: u16) -> Result<StdListener, BindError> {
    let err = |addr: String, source| BindError { addr, port, source };
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|e| {
            err(
                format!("{host}:{port}"),
                std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            )
        })?;
    let err = |source| err(addr.to_string(), source);
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
    /// The RESP listener.
    pub resp: StdListener,
    /// Its address.
    pub resp_addr: SocketAddr,
    /// The HTTP listener, if one was asked for, and its address.
    pub http: Option<(StdListener, SocketAddr)>,
}

/// Binds the RESP listener on `host:resp_port` and, if `http_port` is given, the HTTP one
/// (see [`bind`]).
pub fn bind_both(host: &str, resp_port: u16, http_port: Option<u16>) -> Result<Bound, BindError> {
    let (resp, resp_addr) = bind_with_addr(host, resp_port)?;
    let http = http_port
        .map(|port| bind_with_addr(host, port))
        .transpose()?;
    Ok(Bound {
        resp,
        resp_addr,
        http,
    })
}

fn bind_with_addr(host: &str, port: u16) -> Result<(StdListener, SocketAddr), BindError> {
    let listener = bind(host, port)?;
    let addr = listener.local_addr().map_err(|source| BindError {
        addr: format!("{host}:{port}"),
        port,
        source,
    })?;
    Ok((listener, addr))
}

/// Logs that `what` (`node`, `proxy`) serves from now on, where, and with how many threads.
pub fn log_ready(what: &str, resp_addr: SocketAddr, http_addr: Option<SocketAddr>, threads: usize) {
    tracing::info!(
        %resp_addr,
        http = http_addr.map(tracing::field::display),
        threads,
        "shoal {what} ready"
    );
}

/// A connection that was accepted and registered, for a session to serve.
#[derive(Debug)]
pub struct Accepted {
    /// Its place in the registry; drop it before the socket (see [`Registration`]).
    pub registration: Registration,
    /// The socket.
    pub stream: TcpStream,
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
            stream,
        }
    }
}

/// Accepts connections on `listener` until the door shuts down, and gives each one that fits
/// under `maxclients`, with its slot reserved, to `serve` (which registers it, with
/// [`Accepted::register`], on the runtime that serves it). One over the limit gets Redis's
/// `-ERR max number of clients reached` and is closed.
pub async fn accept_loop(
    door: Arc<Door>,
    listener: TcpListener,
    mut serve: impl FnMut(TcpStream, Reservation),
) {
    let mut shutdown = door.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // As in Redis, a refused connection counts in `rejected_connections` only.
        let Some(reservation) = Reservation::take(&door.clients, door.settings.maxclients()) else {
            door.stats.rejected_connections.fetch_add(1, Relaxed);
            tokio::spawn(refuse(stream));
            continue;
        };
        door.stats.connections_received.fetch_add(1, Relaxed);
        let _ = stream.set_nodelay(true);
        serve(stream, reservation);
    }
}

/// How long a refused connection is drained before it is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(200);

/// Answers a connection over `maxclients` as Redis does, then closes it. Whatever the client
/// sent meanwhile is read and dropped for a moment first: closing a socket with unread input
/// resets the connection, and the client could lose the error before reading it.
async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
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

    #[test]
    fn a_taken_port_is_named_in_the_error() {
        let first = bind("127.0.0.1", 0).expect("a free port");
        let port = first.local_addr().expect("bound").port();
        // SO_REUSEADDR does not let two sockets listen on one port.
        let error = bind("127.0.0.1", port).expect_err("the port is taken");
        let text = error.to_string();
        assert!(
            text.contains(&format!("cannot listen on 127.0.0.1:{port}"))
                && text.contains(&format!("port {port} is taken by another process")),
            "{text}"
        );
        let error = bind("not an address", 1).expect_err("not an address");
        assert!(
            error
                .to_string()
                .starts_with("cannot listen on not an address:1")
        );
    }
}
