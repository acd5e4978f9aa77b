//! HTTPS: the API served over TLS with the RESP port's [`TlsAcceptor`] (the same certificate,
//! reloaded with it). Handshakes run in tasks of their own, so a client that never finishes
//! one delays no other; finished connections are handed to axum.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::serve::Listener;
use shoal_frontdoor::Stream;
use shoal_frontdoor::tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Connections whose handshake is done, waiting for axum to take them.
const READY_BACKLOG: usize = 64;

/// The TLS connections of one listener, as axum takes them.
struct TlsListener {
    ready: mpsc::Receiver<(Stream, SocketAddr)>,
    local: SocketAddr,
}

impl Listener for TlsListener {
    type Io = Stream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Stream, SocketAddr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accepting task ended (shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Accepts on `listener` until `stop`, running each handshake in its own task.
async fn accept_handshakes(
    listener: TcpListener,
    tls: Arc<TlsAcceptor>,
    ready: mpsc::Sender<(Stream, SocketAddr)>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("HTTPS accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (tls, ready) = (tls.clone(), ready.clone());
        tokio::spawn(async move {
            match tls.accept(tcp).await {
                Ok(stream) => {
                    let _ = ready.send((Stream::Tls(Box::new(stream)), peer)).await;
                }
                Err(e) => tracing::debug!(%peer, "HTTPS handshake failed: {e}"),
            }
        });
    }
}

/// Serves `app` over TLS on `listener` until `stop` turns true, then lets the requests in
/// flight finish.
pub async fn serve_tls(
    listener: TcpListener,
    app: Router,
    tls: Arc<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let (ready_tx, ready) = mpsc::channel(READY_BACKLOG);
    tokio::spawn(accept_handshakes(listener, tls, ready_tx, stop.clone()));
    let mut stop = stop;
    axum::serve(TlsListener { ready, local }, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
}
