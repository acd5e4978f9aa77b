//! TLS on the bus end to end, over loopback connections with certificates made here: a member
//! talks, a process without a certificate (or with another CA's) is refused, and a plain
//! process and a TLS one that meet each get an error that says why.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::bus::{self, BusConnection, BusError, Reply, Request};
use crate::bus_auth::BusSecret;
use crate::bus_credentials::BusCredentials;

const TIMEOUT: Duration = Duration::from_secs(5);

/// A certificate chain and its key.
type Leaf = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A test CA.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca {
            issuer: Issuer::new(params, key),
            cert,
        }
    }

    /// A node's certificate (server and client) for `names`.
    fn node(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (vec![cert.der().clone()], key)
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        roots
    }
}

fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A bus's server configuration: `leaf`, and client certificates of `ca` required.
fn server_config(ca: &Ca, (chain, key): Leaf) -> Arc<rustls::ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
        .build()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

/// A connecting side's configuration: trusting `ca`, showing `leaf` if given.
fn client_config(ca: &Ca, leaf: Option<Leaf>) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots());
    Arc::new(match leaf {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

fn secret() -> BusSecret {
    BusSecret::new(vec![3u8; 40]).unwrap()
}

/// Credentials with the test secret over TLS with `config`.
fn tls_credentials(config: Arc<rustls::ClientConfig>) -> BusCredentials {
    BusCredentials::new(secret()).with_tls(BusTlsConnector::new(config))
}

/// How an accepted connection went: whether it runs TLS, or why it failed.
type Outcome = Result<bool, HandshakeError>;

/// A bus on a loopback port that accepts with `tls` (plain TCP if `None`) and answers the
/// first request of each connection with [`Reply::Noted`]. Returns its address, and each
/// accepted connection's outcome as it comes.
async fn serve(tls: Option<BusTlsAcceptor>) -> (String, mpsc::UnboundedReceiver<Outcome>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (outcomes, received) = mpsc::unbounded_channel();
    let tls = tls.map(Arc::new);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tls, outcomes) = (tls.clone(), outcomes.clone());
            tokio::spawn(async move {
                match bus::accept(tcp, tls.as_deref(), &secret()).await {
                    Ok(mut stream) => {
                        let _ = outcomes.send(Ok(matches!(stream, BusStream::Tls(_))));
                        if bus::read_frame::<_, Request>(&mut stream).await.is_ok() {
                            let _ = bus::write_frame(&mut stream, &Reply::Noted).await;
                        }
                    }
                    Err(e) => {
                        let _ = outcomes.send(Err(e));
                    }
                }
            });
        }
    });
    (addr, received)
}

/// A bus with a node certificate for 127.0.0.1 from `ca`, and a member's configuration.
async fn tls_bus(
    ca: &Ca,
) -> (
    String,
    mpsc::UnboundedReceiver<Outcome>,
    Arc<rustls::ClientConfig>,
) {
    let acceptor = BusTlsAcceptor::new(server_config(ca, ca.node(&["127.0.0.1"])));
    let (addr, outcomes) = serve(Some(acceptor)).await;
    let member = client_config(ca, Some(ca.node(&["127.0.0.1"])));
    (addr, outcomes, member)
}

#[tokio::test]
async fn a_member_talks_over_tls_and_proves_the_secret_inside() {
    let ca = Ca::new("cluster");
    let (addr, mut outcomes, member) = tls_bus(&ca).await;
    let mut connection = BusConnection::connect(&addr, &tls_credentials(member), TIMEOUT)
        .await
        .unwrap();
    let reply = connection.call(&Request::GetMap, TIMEOUT).await.unwrap();
    assert!(matches!(reply, Reply::Noted), "{reply:?}");
    assert!(matches!(outcomes.recv().await, Some(Ok(true))));
}

#[tokio::test]
async fn a_wrong_secret_is_refused_inside_tls() {
    let ca = Ca::new("cluster");
    let (addr, mut outcomes, member) = tls_bus(&ca).await;
    let other = BusSecret::new(vec![4u8; 40]).unwrap();
    let credentials = BusCredentials::new(other).with_tls(BusTlsConnector::new(member));
    let refused = BusConnection::connect(&addr, &credentials, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, BusError::Auth { .. }), "{refused}");
    assert!(matches!(
        outcomes.recv().await,
        Some(Err(HandshakeError::BadProof))
    ));
}

#[tokio::test]
async fn a_process_without_a_certificate_of_the_ca_is_refused() {
    let ca = Ca::new("cluster");
    let (addr, mut outcomes, _) = tls_bus(&ca).await;
    let anonymous = tls_credentials(client_config(&ca, None));
    let refused = BusConnection::connect(&addr, &anonymous, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, BusError::Tls { .. }), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("refused this process's certificate"),
        "{refused}"
    );
    assert!(matches!(
        outcomes.recv().await,
        Some(Err(HandshakeError::Tls(_)))
    ));
    // A certificate another CA signed is no better.
    let stranger = Ca::new("stranger");
    let foreign = tls_credentials(client_config(&ca, Some(stranger.node(&["127.0.0.1"]))));
    let refused = BusConnection::connect(&addr, &foreign, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, BusError::Tls { .. }), "{refused}");
    assert!(matches!(
        outcomes.recv().await,
        Some(Err(HandshakeError::Tls(_)))
    ));
}

#[tokio::test]
async fn a_node_whose_certificate_does_not_name_the_bus_host_is_not_trusted() {
    let ca = Ca::new("cluster");
    let acceptor = BusTlsAcceptor::new(server_config(&ca, ca.node(&["node-7.example"])));
    let (addr, _outcomes) = serve(Some(acceptor)).await;
    let member = tls_credentials(client_config(&ca, Some(ca.node(&["127.0.0.1"]))));
    let refused = BusConnection::connect(&addr, &member, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, BusError::Tls { .. }), "{refused}");
    assert!(refused.to_string().contains("not trusted"), "{refused}");
    // Nor one from a CA this process does not trust.
    let stranger = Ca::new("stranger");
    let acceptor = BusTlsAcceptor::new(server_config(&ca, stranger.node(&["127.0.0.1"])));
    let (addr, _outcomes) = serve(Some(acceptor)).await;
    let refused = BusConnection::connect(&addr, &member, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(refused.to_string().contains("not trusted"), "{refused}");
}

#[tokio::test]
async fn a_plain_process_gets_no_hello_from_a_tls_bus_and_is_told_why() {
    let ca = Ca::new("cluster");
    let (addr, mut outcomes, _) = tls_bus(&ca).await;
    let plain = BusCredentials::new(secret());
    let started = std::time::Instant::now();
    let refused = BusConnection::connect(&addr, &plain, Duration::from_millis(300))
        .await
        .err()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "no hang");
    assert!(matches!(refused, BusError::NoHello { .. }), "{refused}");
    assert!(refused.to_string().contains("tls-cluster yes"), "{refused}");
    // It said nothing and left: a probe, not a failure to count.
    assert!(matches!(
        outcomes.recv().await,
        Some(Err(HandshakeError::Silent))
    ));
}

#[tokio::test]
async fn a_tls_process_is_told_that_a_plain_bus_does_not_speak_tls() {
    let ca = Ca::new("cluster");
    let (addr, mut outcomes) = serve(None).await;
    let member = tls_credentials(client_config(&ca, Some(ca.node(&["127.0.0.1"]))));
    let refused = BusConnection::connect(&addr, &member, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, BusError::Tls { .. }), "{refused}");
    assert!(refused.to_string().contains("tls-cluster"), "{refused}");
    assert!(matches!(
        outcomes.recv().await,
        Some(Err(HandshakeError::NotABus))
    ));
}

#[tokio::test]
async fn reloads_reach_every_clone_and_new_connections_only() {
    let ca = Ca::new("cluster");
    let (addr, _outcomes, member) = tls_bus(&ca).await;
    let connector = BusTlsConnector::new(member);
    let credentials = BusCredentials::new(secret()).with_tls(connector.clone());
    let mut open = BusConnection::connect(&addr, &credentials, TIMEOUT)
        .await
        .unwrap();
    // The connector given to the credentials loses its certificate.
    connector.reload(client_config(&ca, None));
    let refused = BusConnection::connect(&addr, &credentials, TIMEOUT)
        .await
        .err()
        .unwrap();
    assert!(matches!(refused, BusError::Tls { .. }), "{refused}");
    // The connection opened before goes on.
    let reply = open.call(&Request::GetMap, TIMEOUT).await.unwrap();
    assert!(matches!(reply, Reply::Noted), "{reply:?}");
}

#[test]
fn the_server_name_is_the_host_of_the_bus_address() {
    let ip = |text: &str| ServerName::IpAddress(text.parse::<std::net::IpAddr>().unwrap().into());
    assert_eq!(server_name("127.0.0.1:17000").unwrap(), ip("127.0.0.1"));
    assert_eq!(server_name("[::1]:17000").unwrap(), ip("::1"));
    assert_eq!(
        server_name("node-1.example:17000").unwrap(),
        ServerName::try_from("node-1.example").unwrap()
    );
    assert!(server_name("bad host:1").is_err());
}
