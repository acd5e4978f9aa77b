//! Serving the API's router on a listener, guarded against clients that hold connections:
//! at most [`HttpSettings::max_connections`] at once (one more is answered `503` and closed),
//! and every connection closed when a request's headers take longer than
//! [`HttpSettings::timeout`] to arrive, or when it sits idle between requests that long.
//! Accept errors (out of file descriptors) back off rather than spin. With a
//! [`TlsAcceptor`] the connection's task runs the TLS handshake first (within the acceptor's
//! handshake timeout, holding its slot meanwhile): HTTPS with the RESP port's certificate.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use shoal_frontdoor::Stream;
use shoal_frontdoor::listen::AcceptBackoff;
use shoal_frontdoor::tls::TlsAcceptor;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::{HttpSettings, HttpStats};

/// The answer to a connection over the limit.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
connection: close\r\n\
content-length: 44\r\n\r\n\
{\"error\":\"too many HTTP connections open\"}\r\n";

/// Serves `app` on `listener` until `stop` turns true, then lets the requests in flight
/// finish. `settings` bounds the connections; `stats` counts what the bounds turned away.
/// With `tls`, every connection is HTTPS.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &HttpSettings,
    stats: Arc<HttpStats>,
    tls: Option<Arc<TlsAcceptor>>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let timeout = settings.timeout;
    let mut backoff = AcceptBackoff::new("HTTP");
    let mut open = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|stop| *stop) => break,
            // Reap finished connections so the set does not grow.
            Some(_) = open.join_next(), if !open.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                backoff.failed(&e).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            stats.connections.rejected.fetch_add(1, Relaxed);
            tokio::spawn(turn_away(stream, tls.clone()));
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Every request carries its peer's address (for failed authentications).
        let service = TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                })
                .service(app.clone()),
        );
        let stats = stats.clone();
        let mut stop = stop.clone();
        let tls = tls.clone();
        open.spawn(async move {
            let _slot = slot;
            let Some(stream) = secure(stream, tls.as_deref()).await else {
                return;
            };
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result
                && e.is_timeout()
            {
                stats.connections.timed_out.fetch_add(1, Relaxed);
            }
        });
    }
    // Requests in flight finish (each connection was told to close after its current one).
    while open.join_next().await.is_some() {}
    Ok(())
}

/// The connection as HTTP is to be spoken on it: as it is, or after a TLS handshake (`None`
/// if that fails).
async fn secure(stream: TcpStream, tls: Option<&TlsAcceptor>) -> Option<Stream> {
    let Some(tls) = tls else {
        return Some(Stream::Plain(stream));
    };
    let peer = stream.peer_addr().ok();
    match tls.accept(stream).await {
        Ok(stream) => Some(Stream::Tls(Box::new(stream))),
        Err(e) => {
            tracing::debug!(?peer, "HTTPS handshake failed: {e}");
            None
        }
    }
}

/// Answers a connection over the limit with a `503` and closes it, giving the client a moment
/// to read the answer (over TLS on an HTTPS port).
async fn turn_away(stream: TcpStream, tls: Option<Arc<TlsAcceptor>>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let Some(mut stream) = secure(stream, tls.as_deref()).await else {
            return;
        };
        let _ = stream.write_all(OVER_LIMIT).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_limit_answer_declares_its_length() {
        let text = std::str::from_utf8(OVER_LIMIT).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(serde_json::from_str::<serde_json::Value>(body.trim()).is_ok());
    }
}
