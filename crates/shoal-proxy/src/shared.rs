//! What every session, the listeners and the HTTP API share.

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_client::Client;
use shoal_frontdoor::Door;
use shoal_frontdoor::tls::TlsAcceptor;

use crate::config::ProxyConfig;
use crate::stats::ProxyStats;

/// The proxy's shared state.
#[derive(Debug)]
pub struct Shared {
    /// The settings.
    pub(crate) config: ProxyConfig,
    /// The upstream client every command goes through.
    pub(crate) client: Client,
    /// The front door: its settings, clients, statistics and shutdown signal.
    pub(crate) door: Arc<Door>,
    /// The proxy's own counters.
    pub(crate) stats: ProxyStats,
    /// The RESP listener's address (the TLS one's if the proxy serves TLS only).
    pub(crate) resp_addr: SocketAddr,
    /// The TLS port's handshakes, if the proxy serves one.
    pub(crate) tls: Option<Arc<TlsAcceptor>>,
}
