//! TLS under the cluster bus (`tls-cluster yes`, Redis's setting): every bus connection is a
//! mutual TLS session, each side's certificate checked against the cluster's CA, and the
//! secret's handshake ([`crate::bus_auth`]) runs inside it. TLS authenticates the
//! certificates and encrypts what follows; the secret still proves membership of this cluster
//! (a certificate of the same CA may well belong to something else).
//!
//! * [`BusTlsConnector`]: the connecting side, a rustls client configuration (the CA a node's
//!   certificate must chain to, the certificate this process shows). The node's certificate
//!   must be valid for the host of the bus address dialled (an IP address as an IP SAN).
//! * [`BusTlsAcceptor`]: the accepting side, a rustls server configuration that demands a
//!   client certificate chaining to the CA.
//! * `BusStream`: one bus connection, plain or TLS.
//!
//! The configurations are built by whoever reads the files (a node, from its `tls-*`
//! settings) and can be replaced whole on reload: connections already open keep theirs.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::bus_auth::HandshakeError;

/// The connecting side of TLS on the bus: the rustls client configuration every new
/// connection uses. Clones share it, so a [`BusTlsConnector::reload`] reaches every holder.
#[derive(Clone)]
pub struct BusTlsConnector {
    config: Arc<ArcSwap<rustls::ClientConfig>>,
}

impl std::fmt::Debug for BusTlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusTlsConnector { .. }")
    }
}

impl BusTlsConnector {
    /// Connections with `config`: it trusts the cluster's CA and shows a certificate the CA
    /// signed (nodes require one on their bus).
    pub fn new(config: Arc<rustls::ClientConfig>) -> BusTlsConnector {
        BusTlsConnector {
            config: Arc::new(ArcSwap::new(config)),
        }
    }

    /// Gives `config` to every connection opened from now on, by this connector and every
    /// clone of it.
    pub fn reload(&self, config: Arc<rustls::ClientConfig>) {
        self.config.store(config);
    }

    /// Runs the client side of the TLS handshake on `tcp`, checking that the peer's
    /// certificate is valid for the host of `addr` (the bus address dialled, `host:port`).
    pub(crate) async fn connect(&self, tcp: TcpStream, addr: &str) -> io::Result<BusStream> {
        let name = server_name(addr)?;
        let connector = tokio_rustls::TlsConnector::from(self.config.load_full());
        let stream = connector.connect(name, tcp).await?;
        Ok(BusStream::Tls(Box::new(stream.into())))
    }
}

/// The TLS server name of the bus at `addr`: its host, an IP address or a DNS name.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{host}' is not a TLS server name: {e}"),
        )
    })
}

/// The accepting side of TLS on a node's bus: the rustls server configuration new
/// connections get, replaced whole by [`BusTlsAcceptor::reload`].
#[derive(Debug)]
pub struct BusTlsAcceptor {
    config: ArcSwap<rustls::ServerConfig>,
}

impl BusTlsAcceptor {
    /// Accepts with `config`, which must require a client certificate chaining to the
    /// cluster's CA (every member shows one).
    pub fn new(config: Arc<rustls::ServerConfig>) -> BusTlsAcceptor {
        BusTlsAcceptor {
            config: ArcSwap::new(config),
        }
    }

    /// Gives `config` to every connection accepted from now on.
    pub fn reload(&self, config: Arc<rustls::ServerConfig>) {
        self.config.store(config);
    }

    /// Runs the server side of the TLS handshake on `tcp` within `timeout`. A peer that
    /// closes before finishing it (a port probe) is [`HandshakeError::Silent`].
    pub(crate) async fn accept(
        &self,
        tcp: TcpStream,
        timeout: Duration,
    ) -> Result<BusStream, HandshakeError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.load_full());
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Err(_) => Err(HandshakeError::Timeout(timeout)),
            Ok(Ok(stream)) => Ok(BusStream::Tls(Box::new(stream.into()))),
            Ok(Err(e)) if is_hang_up(&e) => Err(HandshakeError::Silent),
            Ok(Err(e)) => Err(HandshakeError::Tls(e)),
        }
    }
}

/// Whether `e` is the peer going away rather than saying something wrong.
fn is_hang_up(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}

/// Why the TLS handshake with the bus of a node failed, in words for whoever runs the
/// connecting side.
pub(crate) fn handshake_failure(e: &io::Error) -> String {
    if is_hang_up(e) {
        return "it closed the connection during the TLS handshake: its bus may not speak TLS \
                (tls-cluster no), or it refused this process's certificate"
            .into();
    }
    session_failure(e).unwrap_or_else(|| e.to_string())
}

/// What a TLS error on a bus connection means to the connecting side (under TLS 1.3 a node
/// refuses a client certificate after the handshake, on the first read); `None` if `e` is
/// not TLS's.
pub(crate) fn session_failure(e: &io::Error) -> Option<String> {
    let error = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match error {
        rustls::Error::InvalidMessage(_) => {
            "it does not speak TLS on its bus (is tls-cluster off there?)".into()
        }
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            match alert {
                A::CertificateRequired
                | A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::AccessDenied => format!(
                    "it refused this process's certificate ({alert:?}): show one that the \
                     cluster's CA signed (tls-cert-file and tls-key-file)"
                ),
                _ => format!("it ended the TLS session ({alert:?})"),
            }
        }
        rustls::Error::InvalidCertificate(why) => format!(
            "its certificate is not trusted ({why}): it must chain to the CA given \
             (tls-ca-cert-file) and name the host of its bus address"
        ),
        other => other.to_string(),
    })
}

/// One bus connection: plain TCP, or a TLS session over it (either side's).
pub(crate) enum BusStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl AsyncRead for BusStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BusStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BusStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BusStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BusStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BusStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BusStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BusStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BusStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BusStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests;
