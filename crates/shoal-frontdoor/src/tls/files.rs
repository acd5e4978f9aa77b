//! Reading certificates, keys and CA certificates from PEM files, with errors that name the
//! setting and the file.

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Reads `path` (named by `setting`).
fn read(setting: &'static str, path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        setting,
        path: path.to_string(),
        error,
    })
}

fn contents(setting: &'static str, path: &str, reason: impl Into<String>) -> TlsError {
    TlsError::Contents {
        setting,
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// The certificates in the PEM file `path`.
fn certificates(
    setting: &'static str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| contents(setting, path, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(contents(
            setting,
            path,
            "holds no certificate (a PEM \"BEGIN CERTIFICATE\" block)",
        ));
    }
    Ok(certs)
}

/// The certificate chain of `cert_file` with the key of `key_file`, checked to belong
/// together.
pub(super) fn certified_key(
    cert_file: &str,
    key_file: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<CertifiedKey, TlsError> {
    if cert_file.is_empty() || key_file.is_empty() {
        return Err(TlsError::Missing(
            "TLS needs a certificate and its key: set tls-cert-file and tls-key-file",
        ));
    }
    let chain = certificates("tls-cert-file", cert_file)?;
    let pem = read("tls-key-file", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => contents(
            "tls-key-file",
            key_file,
            "holds no private key (a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \
             \"BEGIN EC PRIVATE KEY\" block)",
        ),
        e => contents("tls-key-file", key_file, format!("is not valid PEM: {e}")),
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        contents(
            "tls-key-file",
            key_file,
            format!("has an unusable key: {e}"),
        )
    })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::KeyMismatch {
            cert: cert_file.to_string(),
            key: key_file.to_string(),
        }),
        Err(e) => Err(contents(
            "tls-cert-file",
            cert_file,
            format!("has an unusable certificate: {e}"),
        )),
    }
}

/// The CA certificates in `ca_file` and in the PEM files of `ca_dir` (either may be empty;
/// files of the directory without certificates are skipped, as OpenSSL's hash links and
/// other files may sit beside them).
pub(super) fn roots(ca_file: &str, ca_dir: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut add = |setting: &'static str, path: &str, certs: Vec<CertificateDer<'static>>| {
        for cert in certs {
            roots.add(cert).map_err(|e| {
                contents(
                    setting,
                    path,
                    format!("has an unusable CA certificate: {e}"),
                )
            })?;
        }
        Ok::<(), TlsError>(())
    };
    if !ca_file.is_empty() {
        add(
            "tls-ca-cert-file",
            ca_file,
            certificates("tls-ca-cert-file", ca_file)?,
        )?;
    }
    if !ca_dir.is_empty() {
        let entries = std::fs::read_dir(ca_dir).map_err(|error| TlsError::Read {
            setting: "tls-ca-cert-dir",
            path: ca_dir.to_string(),
            error,
        })?;
        let mut paths: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let path = path.display().to_string();
            if let Ok(certs) = certificates("tls-ca-cert-dir", &path) {
                add("tls-ca-cert-dir", &path, certs)?;
            }
        }
        if roots.is_empty() && ca_file.is_empty() {
            return Err(contents(
                "tls-ca-cert-dir",
                ca_dir,
                "holds no PEM file with a certificate",
            ));
        }
    }
    Ok(roots)
}
