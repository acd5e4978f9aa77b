//! What the TLS tests share: certificates in a test directory, the TLS flags of a node, its
//! spec, rustls client configurations, and a TLS connection to a port.
//!
//! Each test binary uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use shoal_testkit::{CertFiles, NodePorts, NodeSpec, Process, ProcessSpec, TestCa, TestDir};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The binary under test.
pub const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");
/// How long a step may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate and a client certificate in a test directory.
pub struct Certs {
    /// The directory holding the files (and the tests' logs).
    pub dir: TestDir,
    /// The CA.
    pub ca: TestCa,
    /// The certificate nodes serve (a node's own, server and client, when a test needs it).
    pub server: CertFiles,
    /// A client certificate for applications.
    pub client: CertFiles,
}

/// A CA, a server certificate and a client certificate in a new test directory named `test`.
pub fn certs(test: &str) -> Certs {
    let dir = TestDir::new(test).unwrap();
    let ca = TestCa::new(dir.path(), "main").unwrap();
    let server = ca.server("server-1").unwrap();
    let client = ca.client("client-1").unwrap();
    Certs {
        dir,
        ca,
        server,
        client,
    }
}

/// `p` as a flag value.
pub fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The flags of a TLS port with `certs`' files.
pub fn tls_args(certs: &Certs, tls_port: u16) -> Vec<String> {
    [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path(&certs.server.cert),
        "--tls-key-file",
        &path(&certs.server.key),
        "--tls-ca-cert-file",
        &path(&certs.ca.cert),
    ]
    .map(String::from)
    .to_vec()
}

/// A `shoal` process of these tests (`args` from its subcommand on), logging to `log` in the
/// certificates' directory.
pub fn spawn_shoal(certs: &Certs, name: &str, log: &str, args: Vec<String>) -> Process {
    Process::spawn(ProcessSpec {
        name: name.into(),
        binary: SHOAL.into(),
        args,
        env: Vec::new(),
        log: certs.dir.join(log),
        nice: 0,
    })
    .unwrap()
}

/// A node of these tests: `name`, logging to `log` in the certificates' directory, with `args`
/// (the TLS settings among them), on fresh ports without HTTP.
pub fn tls_node_spec(certs: &Certs, name: &str, log: &str, args: Vec<String>) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        binary: SHOAL.into(),
        ports: NodePorts::reserve_without_http().unwrap(),
        args,
        log: certs.dir.join(log),
        env: Vec::new(),
        nice: 0,
        password: None,
        dir: None,
    }
}

/// A rustls client trusting `ca`, showing `client` if given.
pub fn client_config(ca: &Path, client: Option<&CertFiles>) -> Arc<rustls::ClientConfig> {
    client_config_with(ca, client, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] offering only `versions`.
pub fn client_config_with(
    ca: &Path,
    client: Option<&CertFiles>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_protocol_versions(versions)
        .with_root_certificates(roots);
    Arc::new(match client {
        None => builder.with_no_client_auth(),
        Some(files) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(&files.cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(&files.key).unwrap(),
            )
            .unwrap(),
    })
}

/// A TLS connection to `port` on 127.0.0.1, handshake done.
pub async fn connect_tls(
    port: u16,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// The certificate a new TLS connection to `port` is shown.
pub async fn served_certificate(port: u16, config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tls = connect_tls(port, config).await.expect("handshake");
    let (_, session) = tls.get_ref();
    session.peer_certificates().expect("a server certificate")[0].to_vec()
}
