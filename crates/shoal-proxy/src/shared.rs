//! What every session, the listeners and the HTTP API share.

use std::net::SocketAddr;
use std::time::Instant;

use shoal_client::Client;
use shoal_http::auth::constant_time_eq;
use tokio::sync::watch;

use crate::clients::Clients;
use crate::config::ProxyConfig;
use crate::stats::ProxyStats;

/// The proxy's shared state.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The settings.
    pub config: ProxyConfig,
    /// The upstream client every command goes through.
    pub client: Client,
    /// Connected RESP clients.
    pub clients: Clients,
    /// Counters.
    pub stats: ProxyStats,
    /// When the proxy started.
    pub started: Instant,
    /// A random id for this run (`INFO`'s `run_id`).
    pub run_id: String,
    /// The RESP listener's address.
    pub resp_addr: SocketAddr,
    /// Set to true to stop the proxy.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Whether clients must authenticate.
    pub fn password_required(&self) -> bool {
        self.config
            .requirepass
            .as_deref()
            .is_some_and(|p| !p.is_empty())
    }

    /// Checks credentials against `requirepass` (the `default` user is the only one).
    pub fn check_password(&self, user: &[u8], password: &[u8]) -> bool {
        if user != b"default" {
            return false;
        }
        match self.config.requirepass.as_deref() {
            None | Some("") => true,
            Some(expected) => constant_time_eq(expected.as_bytes(), password),
        }
    }

    /// A receiver that turns true when the proxy stops.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

/// A random 40-hex-digit run id, as Redis's.
pub(crate) fn new_run_id() -> String {
    (0..40)
        .map(|_| char::from_digit(rand::random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_forty_hex_digits() {
        let id = new_run_id();
        assert_eq!(id.len(), 40);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
