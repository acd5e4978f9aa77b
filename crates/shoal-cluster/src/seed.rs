//! Finding a node's cluster bus from its RESP address, the address people know: one
//! `CLUSTER NODES` exchange, and the `@busport` of the line flagged `myself`. On a node's TLS
//! port the exchange runs over TLS.

use crate::PeerAuth;
use crate::bus_tls::{BusStream, BusTlsConnector};
use std::time::Duration;

use shoal_proto::reply::{Value, decode};
use shoal_proto::request::encode_into;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A text that is not a node's address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not host:port (e.g. 127.0.0.1:7000)")]
pub struct BadAddr(pub String);

/// A node's RESP address given as `host:port` (an IPv6 host in brackets), normalized to
/// `host:port`; with `default_port`, a bare host (IPv6 with or without brackets) is taken for
/// that port.
pub fn parse_node_addr(text: &str, default_port: Option<u16>) -> Result<String, BadAddr> {
    let bad = || BadAddr(text.to_string());
    let trimmed = text.trim();
    let (host, port) = if trimmed.starts_with('[') && trimmed.ends_with(']') {
        (trimmed.to_string(), None)
    } else if trimmed.parse::<std::net::Ipv6Addr>().is_ok() {
        // A bare IPv6 address: its colons are not a port's.
        (format!("[{trimmed}]"), None)
    } else {
        match trimmed.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (trimmed.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad());
    }
    let port = match port {
        None => default_port.ok_or_else(bad)?,
        Some(port) => port.parse::<u16>().map_err(|_| bad())?,
    };
    Ok(format!("{host}:{port}"))
}

/// Why a seed's bus address could not be learned.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The seed could not be reached or did not answer in time.
    #[error("seed {addr}: {reason}")]
    Unreachable {
        /// The seed.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// An HTTP server answered: the address is a node's HTTP port, not its RESP port.
    #[error(
        "{addr} answered in HTTP, not the Redis protocol: give a node's RESP port, not its HTTP port"
    )]
    Http {
        /// The seed.
        addr: String,
    },
    /// The seed answered bytes that are not the Redis protocol.
    #[error("{addr} does not speak the Redis protocol ({reason}): give a node's RESP port")]
    NotRedis {
        /// The seed.
        addr: String,
        /// What was wrong with its answer.
        reason: String,
    },
    /// The seed wants a password and did not take the one given (or the lack of one).
    #[error("{addr} refused: {reason}")]
    Auth {
        /// The seed.
        addr: String,
        /// Its answer (`NOAUTH ...`, `WRONGPASS ...`).
        reason: String,
    },
    /// The TLS handshake with the seed failed: not a TLS port, or a certificate not trusted
    /// one way or the other.
    #[error(
        "TLS with {addr} failed: {reason} (is it the node's TLS port, and does the node trust \
         this process's certificate?)"
    )]
    Tls {
        /// The seed.
        addr: String,
        /// Whether the seed answered with bytes that are not TLS (a plain port), rather than
        /// refusing a certificate or closing.
        plain: bool,
        /// What failed.
        reason: String,
    },
    /// The seed answered something other than a cluster node list.
    #[error("seed {addr} is not a cluster node: {reason}")]
    NotClustered {
        /// The seed.
        addr: String,
        /// What it answered.
        reason: String,
    },
}

/// Whether a failed TLS handshake got bytes that are not TLS at all (a plain RESP port's
/// error line), as rustls reports a record of an unknown content type.
fn answered_in_plain_text(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidMessage(_)))
}

/// How an HTTP server's answer starts.
const HTTP: &[u8] = b"HTTP/";

/// What a node says of itself: the line of its `CLUSTER NODES` flagged `myself`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Myself {
    /// Its id, as that line (and `CLUSTER MYID`) gives it.
    pub id: String,
    /// Its cluster bus address (`host:busport`), as it announces it.
    pub bus: String,
}

/// The bus address (`host:busport`) of the node whose RESP listener is at `resp_addr`,
/// authenticating first with `auth` if given (the nodes' `masteruser`/`masterauth`, or
/// `requirepass`). With `tls`, `resp_addr` is a TLS port: the exchange runs over TLS, and the
/// node's certificate must be valid for the host dialled.
pub async fn bus_addr_of(
    resp_addr: &str,
    auth: Option<&PeerAuth>,
    tls: Option<&BusTlsConnector>,
    timeout: Duration,
) -> Result<String, SeedError> {
    myself_of(resp_addr, auth, tls, timeout)
        .await
        .map(|myself| myself.bus)
}

/// The id and bus address of the node whose RESP listener is at `resp_addr`, from the same
/// one `CLUSTER NODES` exchange as [`bus_addr_of`] (`auth`, `tls` and `timeout` as there).
pub async fn myself_of(
    resp_addr: &str,
    auth: Option<&PeerAuth>,
    tls: Option<&BusTlsConnector>,
    timeout: Duration,
) -> Result<Myself, SeedError> {
    let unreachable = |reason: String| SeedError::Unreachable {
        addr: resp_addr.to_string(),
        reason,
    };
    let refused = |line: &[u8]| SeedError::Auth {
        addr: resp_addr.to_string(),
        reason: String::from_utf8_lossy(line).into_owned(),
    };
    let exchange = async {
        let tcp = TcpStream::connect(resp_addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut stream = match tls {
            Some(tls) => tls
                .connect(tcp, resp_addr)
                .await
                .map_err(|e| SeedError::Tls {
                    addr: resp_addr.to_string(),
                    plain: answered_in_plain_text(&e),
                    reason: e.to_string(),
                })?,
            None => BusStream::Plain(tcp),
        };
        let mut request = Vec::new();
        if let Some(auth) = auth {
            encode_into(&mut request, &auth.auth_command());
        }
        encode_into(&mut request, &["CLUSTER", "NODES"]);
        stream
            .write_all(&request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut buf = Vec::with_capacity(4096);
        if auth.is_some() {
            match next_value(&mut stream, &mut buf, resp_addr).await? {
                Value::Simple(ok) if ok == b"OK" => {}
                Value::Error(line) => return Err(refused(&line)),
                other => {
                    return Err(SeedError::NotRedis {
                        addr: resp_addr.to_string(),
                        reason: format!("AUTH answered {other:?}"),
                    });
                }
            }
        }
        next_value(&mut stream, &mut buf, resp_addr).await
    };
    let value = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))??;
    let text = match value {
        Value::Bulk(text) | Value::Verbatim(_, text) => text,
        Value::Error(e) if e.starts_with(b"NOAUTH") => return Err(refused(&e)),
        Value::Error(e) => {
            return Err(SeedError::NotClustered {
                addr: resp_addr.to_string(),
                reason: String::from_utf8_lossy(&e).into_owned(),
            });
        }
        other => {
            return Err(SeedError::NotClustered {
                addr: resp_addr.to_string(),
                reason: format!("unexpected reply {other:?}"),
            });
        }
    };
    let text = String::from_utf8_lossy(&text);
    own_line(&text).ok_or_else(|| SeedError::NotClustered {
        addr: resp_addr.to_string(),
        reason: "no line flagged myself".into(),
    })
}

/// Reads the next reply from `stream` (`buf` holds what was read and not used yet), telling
/// an HTTP server or another protocol from a Redis-protocol server.
async fn next_value(
    stream: &mut BusStream,
    buf: &mut Vec<u8>,
    addr: &str,
) -> Result<Value, SeedError> {
    let unreachable = |reason: String| SeedError::Unreachable {
        addr: addr.to_string(),
        reason,
    };
    loop {
        match decode(buf) {
            Ok(Some((value, used))) => {
                buf.drain(..used);
                return Ok(value);
            }
            Ok(None) => {}
            // Too little to tell an HTTP status line from other garbage yet.
            Err(_) if buf.len() < HTTP.len() && HTTP.starts_with(buf) => {}
            Err(_) if buf.starts_with(HTTP) => {
                return Err(SeedError::Http {
                    addr: addr.to_string(),
                });
            }
            Err(e) => {
                return Err(SeedError::NotRedis {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                });
            }
        }
        if buf.len() > 16 << 20 {
            return Err(unreachable("reply too large".into()));
        }
        let n = stream
            .read_buf(buf)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        if n == 0 {
            return Err(unreachable("closed the connection".into()));
        }
    }
}

/// The node's own line of `cluster_nodes` (Redis's `CLUSTER NODES` text): the one flagged
/// `myself`, with an address that names a bus port.
fn own_line(cluster_nodes: &str) -> Option<Myself> {
    cluster_nodes.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (id, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
        if id.is_empty() || !flags.split(',').any(|f| f == "myself") {
            return None;
        }
        Some(Myself {
            id: id.to_string(),
            bus: bus_of_field(addr)?,
        })
    })
}

/// `ip:port@cport[,hostname]` -> `ip:cport`.
fn bus_of_field(field: &str) -> Option<String> {
    let (addr, rest) = field.split_once('@')?;
    let bus_port = rest.split(',').next()?;
    let (host, _) = addr.rsplit_once(':')?;
    bus_port.parse::<u16>().ok()?;
    Some(format!("{host}:{bus_port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_read_as_host_and_port() {
        assert_eq!(
            parse_node_addr("127.0.0.1:7100", None).unwrap(),
            "127.0.0.1:7100"
        );
        assert_eq!(parse_node_addr("[::1]:7100", None).unwrap(), "[::1]:7100");
        assert!(
            parse_node_addr("::1", None).is_err(),
            "a bare IPv6 host has no port"
        );
        assert_eq!(parse_node_addr("::1", Some(7000)).unwrap(), "[::1]:7000");
        assert!(parse_node_addr("localhost", None).is_err());
        assert_eq!(
            parse_node_addr("localhost:http", Some(7000))
                .unwrap_err()
                .to_string(),
            "'localhost:http' is not host:port (e.g. 127.0.0.1:7000)"
        );
    }

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 myself,master - 0 1426238316232 2 connected 5461-10922
";

    #[test]
    fn the_myself_line_gives_the_id_and_the_bus_address() {
        assert_eq!(
            own_line(NODES),
            Some(Myself {
                id: "67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1".into(),
                bus: "127.0.0.1:31002".into(),
            })
        );
    }

    /// The address of a one-shot server that answers any request with `answer`.
    async fn answering(answer: &'static [u8]) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn an_http_port_is_named_as_one() {
        let addr = answering(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let error = bus_addr_of(&addr, None, None, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, SeedError::Http { addr: a } if *a == addr),
            "{error:?}"
        );
        assert!(error.to_string().contains("not its HTTP port"), "{error}");
    }

    #[tokio::test]
    async fn another_protocol_is_not_redis() {
        let addr = answering(b"SSH-2.0-OpenSSH_9.2\r\n").await;
        let error = bus_addr_of(&addr, None, None, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(error, SeedError::NotRedis { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_seed_that_wants_a_password_is_named_as_one() {
        let addr = answering(b"-NOAUTH Authentication required.\r\n").await;
        let error = bus_addr_of(&addr, None, None, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(error, SeedError::Auth { .. }), "{error:?}");
        assert!(error.to_string().contains("NOAUTH"), "{error}");
        let addr = answering(b"-WRONGPASS invalid username-password pair\r\n").await;
        let error = bus_addr_of(
            &addr,
            Some(&PeerAuth::password("nope")),
            None,
            Duration::from_secs(2),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, SeedError::Auth { .. }), "{error:?}");
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(own_line("garbage\n\nid 1.2.3.4:5 myself\n"), None);
    }
}
