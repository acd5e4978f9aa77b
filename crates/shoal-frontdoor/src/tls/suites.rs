//! `tls-protocols`, `tls-ciphersuites` and `tls-ciphers`: Redis's (OpenSSL's) spellings
//! mapped to what rustls has.

use rustls::SupportedCipherSuite;
use rustls::SupportedProtocolVersion;
use rustls::crypto::ring::cipher_suite as ring;
use rustls::version::{TLS12, TLS13};

use super::TlsError;

/// The protocol versions `tls-protocols` names (space-separated, any case); empty is both.
pub(super) fn protocol_versions(
    protocols: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, TlsError> {
    let mut versions = Vec::new();
    for word in protocols.split_whitespace() {
        let version = match word.to_ascii_lowercase().as_str() {
            "tlsv1.2" => &TLS12,
            "tlsv1.3" => &TLS13,
            _ => {
                return Err(TlsError::Setting {
                    setting: "tls-protocols",
                    reason: format!("'{word}' is not supported (use TLSv1.2, TLSv1.3 or both)"),
                });
            }
        };
        if !versions.contains(&version) {
            versions.push(version);
        }
    }
    if versions.is_empty() {
        versions = vec![&TLS13, &TLS12];
    }
    Ok(versions)
}

/// Every suite rustls offers with *ring*, with OpenSSL's name (the one Redis's settings use).
/// IANA's names (and rustls's) are accepted too.
const SUITES: [(&str, SupportedCipherSuite); 9] = [
    ("TLS_AES_256_GCM_SHA384", ring::TLS13_AES_256_GCM_SHA384),
    ("TLS_AES_128_GCM_SHA256", ring::TLS13_AES_128_GCM_SHA256),
    (
        "TLS_CHACHA20_POLY1305_SHA256",
        ring::TLS13_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        ring::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        ring::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        ring::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        ring::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        ring::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        ring::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Whether `suite` is called `name` (OpenSSL's name, or IANA's / rustls's).
fn named(name: &str, openssl: &str, suite: SupportedCipherSuite) -> bool {
    let official = suite.suite().as_str().unwrap_or_default();
    let iana = official.replacen("TLS13_", "TLS_", 1);
    [openssl, official, &iana]
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name))
}

/// The suites of one protocol version chosen by a `:`-separated list (empty: all of them).
fn chosen(
    setting: &'static str,
    list: &str,
    tls13: bool,
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let of_version = SUITES
        .iter()
        .filter(|(_, s)| matches!(s, SupportedCipherSuite::Tls13(_)) == tls13);
    let names: Vec<&str> = list
        .split([':', ',', ' '])
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(of_version.map(|(_, s)| *s).collect());
    }
    let mut suites = Vec::new();
    for name in names {
        let Some((_, suite)) = of_version
            .clone()
            .find(|(openssl, suite)| named(name, openssl, *suite))
        else {
            let known: Vec<&str> = of_version.clone().map(|(n, _)| *n).collect();
            return Err(TlsError::Setting {
                setting,
                reason: format!("unknown cipher '{name}' (known: {})", known.join(":")),
            });
        };
        if !suites.contains(suite) {
            suites.push(*suite);
        }
    }
    Ok(suites)
}

/// The cipher suites of `tls-ciphersuites` (TLS 1.3) and `tls-ciphers` (TLS 1.2), in the
/// order given.
pub(super) fn cipher_suites(
    ciphersuites: &str,
    ciphers: &str,
) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let mut suites = chosen("tls-ciphersuites", ciphersuites, true)?;
    suites.extend(chosen("tls-ciphers", ciphers, false)?);
    Ok(suites)
}
