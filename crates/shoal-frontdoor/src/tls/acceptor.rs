//! [`TlsAcceptor`]: the server configuration new handshakes use, swapped whole on reload.

use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use super::{TlsError, TlsOptions};

/// How long a client has to finish its TLS handshake before its connection (and its slot
/// under `maxclients`) is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TLS connections with the configuration of the moment: a reload changes what new
/// handshakes get; connections already established keep the one they started with.
#[derive(Debug)]
pub struct TlsAcceptor {
    config: ArcSwap<ServerConfig>,
}

impl TlsAcceptor {
    /// An acceptor for `options`, or why they cannot be used.
    pub fn new(options: &TlsOptions) -> Result<TlsAcceptor, TlsError> {
        Ok(TlsAcceptor {
            config: ArcSwap::new(options.server_config()?),
        })
    }

    /// Reads the files of `options` again and, if they make a working configuration, gives
    /// it to every handshake from now on. Otherwise the configuration in use stays.
    pub fn reload(&self, options: &TlsOptions) -> Result<(), TlsError> {
        let config = options.server_config()?;
        self.config.store(config);
        Ok(())
    }

    /// Runs the server side of the handshake on `stream`, within the handshake timeout.
    pub async fn accept(&self, stream: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(done) => done,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the TLS handshake did not finish in time",
            )),
        }
    }
}
