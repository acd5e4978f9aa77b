//! TLS for every listener of a node or a proxy (rustls, with the *ring* provider), configured
//! with Redis's settings (`tls-cert-file`, `tls-key-file`, `tls-ca-cert-file`,
//! `tls-ca-cert-dir`, `tls-auth-clients`, `tls-protocols`, `tls-ciphersuites`,
//! `tls-ciphers`).
//!
//! * [`TlsOptions`] holds those settings; [`TlsOptions::server_config`] reads the files and
//!   builds a rustls server configuration, or says which file is wrong and why.
//! * [`TlsAcceptor`] holds the configuration new handshakes use and swaps it on
//!   [`TlsAcceptor::reload`] (`SIGHUP`, `CONFIG SET tls-cert-file ...`): established
//!   connections keep theirs, and a configuration that does not build leaves the old one in
//!   place.
//! * [`TlsOptions::client_config`] is the other side, for a node's or a proxy's own outgoing
//!   links (the same CA, and the same certificate as a client certificate for mutual TLS).

mod acceptor;
mod files;
mod suites;

use std::sync::Arc;

pub use acceptor::{HANDSHAKE_TIMEOUT, TlsAcceptor};
pub use rustls::{ClientConfig, ServerConfig};
pub use tokio_rustls::client::TlsStream as ClientStream;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;

/// Whether clients of a TLS port must show a certificate signed by the CA
/// (`tls-auth-clients`, Redis's default `yes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A client without a valid certificate is refused (mutual TLS).
    #[default]
    Required,
    /// A client may show a certificate (it must then be valid) or none.
    Optional,
    /// Certificates of clients are not asked for.
    Off,
}

impl ClientAuth {
    /// Parses Redis's `yes`, `no` or `optional` (any case).
    pub fn parse(value: &str) -> Result<ClientAuth, String> {
        match value.to_ascii_lowercase().as_str() {
            "yes" => Ok(ClientAuth::Required),
            "optional" => Ok(ClientAuth::Optional),
            "no" => Ok(ClientAuth::Off),
            _ => Err("argument(s) must be one of the following: no, yes, optional".into()),
        }
    }

    /// Redis's name for it (`CONFIG GET tls-auth-clients`).
    pub fn name(self) -> &'static str {
        match self {
            ClientAuth::Required => "yes",
            ClientAuth::Optional => "optional",
            ClientAuth::Off => "no",
        }
    }
}

/// The TLS settings of a node or a proxy, with Redis's names. Empty strings are unset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// `tls-cert-file`: the server's certificate chain (PEM), leaf first.
    pub cert_file: String,
    /// `tls-key-file`: its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// `tls-ca-cert-file`: CA certificates (PEM) that client and peer certificates must chain
    /// to.
    pub ca_cert_file: String,
    /// `tls-ca-cert-dir`: a directory whose PEM files hold more CA certificates.
    pub ca_cert_dir: String,
    /// `tls-auth-clients`.
    pub auth_clients: ClientAuth,
    /// `tls-protocols`: `"TLSv1.2 TLSv1.3"`, either, or empty for both.
    pub protocols: String,
    /// `tls-ciphersuites`: TLS 1.3 suites, `:`-separated (OpenSSL's or IANA's names); empty
    /// for all that rustls has.
    pub ciphersuites: String,
    /// `tls-ciphers`: TLS 1.2 suites, `:`-separated; empty for all that rustls has.
    pub ciphers: String,
}

/// Why a TLS configuration cannot be used. Each names the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A setting TLS needs is not given.
    #[error("{0}")]
    Missing(&'static str),
    /// A file cannot be read.
    #[error("cannot read the {setting} file {path}: {error}")]
    Read {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// The OS's reason.
        error: std::io::Error,
    },
    /// A file has no usable PEM contents.
    #[error("the {setting} file {path} {reason}")]
    Contents {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error(
        "the private key in {key} (tls-key-file) does not match the certificate in {cert} (tls-cert-file)"
    )]
    KeyMismatch {
        /// The certificate file.
        cert: String,
        /// The key file.
        key: String,
    },
    /// `tls-protocols`, `tls-ciphersuites` or `tls-ciphers` has a value rustls cannot use.
    #[error("invalid {setting}: {reason}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsOptions {
    /// The rustls server configuration these settings describe: the certificate and key
    /// (which must match), client certificates as `tls-auth-clients` asks, checked against
    /// the CA, and the protocols and suites chosen.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(self.provider()?);
        let versions = suites::protocol_versions(&self.protocols)?;
        let certified = files::certified_key(&self.cert_file, &self.key_file, &provider)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?;
        let builder = match self.auth_clients {
            ClientAuth::Off => builder.with_no_client_auth(),
            auth => {
                let roots = Arc::new(self.roots()?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
                let verifier = match auth {
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        Ok(Arc::new(builder.with_cert_resolver(Arc::new(
            rustls::sign::SingleCertAndKey::from(certified),
        ))))
    }

    /// The rustls client configuration for this server's own outgoing links (to a primary,
    /// to cluster peers, to nodes): servers must chain to the CA, and the server's certificate
    /// and key are shown when the other side asks for a client certificate.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = Arc::new(self.provider()?);
        let versions = suites::protocol_versions(&self.protocols)?;
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)?
            .with_root_certificates(self.roots()?);
        let config = if self.cert_file.is_empty() && self.key_file.is_empty() {
            builder.with_no_client_auth()
        } else {
            let certified = files::certified_key(&self.cert_file, &self.key_file, &provider)?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                certified,
            )))
        };
        Ok(Arc::new(config))
    }

    /// The *ring* provider with the cipher suites chosen.
    fn provider(&self) -> Result<CryptoProvider, TlsError> {
        // Shoal uses *ring* (it needs no C toolchain, unlike aws-lc): rustls marks its provider deprecated
        // only for lacking post-quantum key exchange, which Redis's OpenSSL builds lack too.
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites = suites::cipher_suites(&self.ciphersuites, &self.ciphers)?;
        Ok(provider)
    }

    /// The CA certificates of `tls-ca-cert-file` and `tls-ca-cert-dir`.
    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        if self.ca_cert_file.is_empty() && self.ca_cert_dir.is_empty() {
            // Redis's words.
            return Err(TlsError::Missing(
                "Either tls-ca-cert-file or tls-ca-cert-dir must be specified when \
                 tls-cluster, tls-replication or tls-auth-clients are enabled!",
            ));
        }
        files::roots(&self.ca_cert_file, &self.ca_cert_dir)
    }
}

/// Runs the client side of a TLS handshake on `tcp` with `config`, checking the server's
/// certificate for `host` (an IP address or a DNS name).
pub async fn connect(
    config: Arc<ClientConfig>,
    tcp: tokio::net::TcpStream,
    host: &str,
) -> std::io::Result<ClientStream<tokio::net::TcpStream>> {
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("'{host}' is not a TLS server name: {e}"),
        )
    })?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

#[cfg(test)]
mod tests;
