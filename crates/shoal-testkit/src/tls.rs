//! Certificates for TLS tests, made by rcgen in the test's directory: a CA, server
//! certificates for `127.0.0.1` and `localhost` signed by it, and a client certificate.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// The certificate's DER bytes (what a peer sees in the handshake).
    pub der: Vec<u8>,
}

/// A CA that signs server and client certificates for a test.
pub struct TestCa {
    dir: PathBuf,
    name: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate file (`tls-ca-cert-file`).
    pub cert: PathBuf,
}

fn failed(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Usage(format!("cannot make the test {what}: {error}"))
}

impl TestCa {
    /// A new CA called `name`, its certificate written to `dir/<name>-ca.crt`.
    pub fn new(dir: &Path, name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().map_err(|e| failed("CA key", e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| failed("CA", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(|e| failed("CA", e))?;
        let path = dir.join(format!("{name}-ca.crt"));
        write(&path, &cert.pem())?;
        Ok(TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            issuer: Issuer::new(params, key),
            cert: path,
        })
    }

    /// A server certificate for `127.0.0.1` and `localhost` with the common name
    /// `common_name`, written to `<dir>/<ca>-<common_name>.crt` and `.key`.
    pub fn server(&self, common_name: &str) -> Result<CertFiles> {
        self.sign(
            common_name,
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![ExtendedKeyUsagePurpose::ServerAuth],
        )
    }

    /// A client certificate with the common name `common_name`.
    pub fn client(&self, common_name: &str) -> Result<CertFiles> {
        self.sign(
            common_name,
            Vec::new(),
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        )
    }

    /// A node's certificate: a server certificate for `127.0.0.1` and `localhost` that is also
    /// a client certificate (a node shows it when it connects to another node).
    pub fn node(&self, common_name: &str) -> Result<CertFiles> {
        self.sign(
            common_name,
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    fn sign(
        &self,
        common_name: &str,
        names: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<CertFiles> {
        let key = KeyPair::generate().map_err(|e| failed("key", e))?;
        let mut params = CertificateParams::new(names).map_err(|e| failed("certificate", e))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = usages;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| failed("certificate", e))?;
        let stem = self.dir.join(format!("{}-{common_name}", self.name));
        let files = CertFiles {
            cert: stem.with_extension("crt"),
            key: stem.with_extension("key"),
            der: cert.der().to_vec(),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| failed(&path.display().to_string(), e))
}
