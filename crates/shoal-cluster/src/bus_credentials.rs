//! [`BusCredentials`]: what a process needs to open connections on a cluster's bus.

use crate::bus_auth::BusSecret;
use crate::bus_tls::BusTlsConnector;

/// What a process needs to open connections on a cluster's bus (a node, a proxy, a smart
/// client, the CLI): the cluster secret it proves on every connection, and, when the
/// cluster's bus speaks TLS (`tls-cluster yes`), the TLS settings its connections use (the
/// cluster's CA, and the certificate it shows). Cheap to clone; its `Debug` form shows neither
/// the secret nor the TLS settings.
#[derive(Clone, Debug)]
pub struct BusCredentials {
    secret: BusSecret,
    tls: Option<BusTlsConnector>,
}

impl BusCredentials {
    /// Plain TCP connections proving `secret`.
    pub fn new(secret: BusSecret) -> BusCredentials {
        BusCredentials { secret, tls: None }
    }

    /// The same, each connection a TLS session with `tls` (the secret is proved inside it).
    pub fn with_tls(self, tls: BusTlsConnector) -> BusCredentials {
        BusCredentials {
            tls: Some(tls),
            ..self
        }
    }

    /// The cluster secret.
    pub fn secret(&self) -> &BusSecret {
        &self.secret
    }

    /// The TLS settings of its connections, if they speak TLS.
    pub fn tls(&self) -> Option<&BusTlsConnector> {
        self.tls.as_ref()
    }
}

impl From<BusSecret> for BusCredentials {
    fn from(secret: BusSecret) -> BusCredentials {
        BusCredentials::new(secret)
    }
}
