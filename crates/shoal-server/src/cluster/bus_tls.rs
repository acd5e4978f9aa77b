//! TLS on the node's cluster bus (`tls-cluster`): its two rustls configurations, built from
//! the node's `tls-*` settings, and their reload with the other TLS listeners'.
//!
//! The accepting side always requires a client certificate that the CA signed, whatever
//! `tls-auth-clients` says for the client ports (as Redis's `tls-cluster`); the connecting
//! side trusts the same CA and shows `tls-cert-file` as its client certificate.

use std::sync::Arc;

use shoal_cluster::{BusTlsAcceptor, BusTlsConnector};
use shoal_frontdoor::tls::{ClientAuth, ClientConfig, ServerConfig, TlsError, TlsOptions};

/// The bus's TLS: what its connections are opened with, and what it accepts them with.
#[derive(Debug)]
pub struct BusTls {
    connector: BusTlsConnector,
    acceptor: Arc<BusTlsAcceptor>,
}

/// Both configurations, built before either is used.
pub(crate) struct BusTlsConfigs {
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
}

impl BusTls {
    /// The bus's TLS with the settings of `options` (its files read now), or why they do not
    /// make one.
    pub fn new(options: &TlsOptions) -> Result<BusTls, TlsError> {
        let configs = BusTls::build(options)?;
        Ok(BusTls {
            connector: BusTlsConnector::new(configs.client),
            acceptor: Arc::new(BusTlsAcceptor::new(configs.server)),
        })
    }

    /// The configurations `options` make (the files read now).
    pub(crate) fn build(options: &TlsOptions) -> Result<BusTlsConfigs, TlsError> {
        let accepting = TlsOptions {
            auth_clients: ClientAuth::Required,
            ..options.clone()
        };
        Ok(BusTlsConfigs {
            client: options.client_config()?,
            server: accepting.server_config()?,
        })
    }

    /// Gives `configs` to every bus connection opened or accepted from now on (those open
    /// keep theirs).
    pub(crate) fn install(&self, configs: BusTlsConfigs) {
        self.connector.reload(configs.client);
        self.acceptor.reload(configs.server);
    }

    /// The connecting side (shared with every holder of a clone: a reload reaches them).
    pub fn connector(&self) -> &BusTlsConnector {
        &self.connector
    }

    /// The accepting side.
    pub fn acceptor(&self) -> &Arc<BusTlsAcceptor> {
        &self.acceptor
    }
}
