//! Finding a node's cluster bus from its RESP address, the address people know: one
//! `CLUSTER NODES` exchange, and the `@busport` of the line flagged `myself`.

use std::time::Duration;

use shoal_proto::reply::{Value, decode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// The seed answered something other than a cluster node list.
    #[error("seed {addr} is not a cluster node: {reason}")]
    NotClustered {
        /// The seed.
        addr: String,
        /// What it answered.
        reason: String,
    },
}

/// The bus address (`host:busport`) of the node whose RESP listener is at `resp_addr`.
pub async fn bus_addr_of(resp_addr: &str, timeout: Duration) -> Result<String, SeedError> {
    let unreachable = |reason: String| SeedError::Unreachable {
        addr: resp_addr.to_string(),
        reason,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(resp_addr)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        stream
            .write_all(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nNODES\r\n")
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let mut buf = Vec::with_capacity(4096);
        loop {
            if let Some((value, _)) = decode(&buf).map_err(|e| unreachable(e.to_string()))? {
                return Ok(value);
            }
            if buf.len() > 16 << 20 {
                return Err(unreachable("reply too large".into()));
            }
            let n = stream
                .read_buf(&mut buf)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            if n == 0 {
                return Err(unreachable("closed the connection".into()));
            }
        }
    };
    let value = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| unreachable(format!("no answer within {timeout:?}")))??;
    let text = match value {
        Value::Bulk(text) | Value::Verbatim(_, text) => text,
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
    own_bus_addr(&text).ok_or_else(|| SeedError::NotClustered {
        addr: resp_addr.to_string(),
        reason: "no line flagged myself".into(),
    })
}

fn own_bus_addr(cluster_nodes: &str) -> Option<String> {
    cluster_nodes.lines().find_map(|line| {
        let mut fields = line.split(' ');
        let (_id, addr, flags) = (fields.next()?, fields.next()?, fields.next()?);
        flags
            .split(',')
            .any(|f| f == "myself")
            .then(|| bus_of_field(addr))
            .flatten()
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

    const NODES: &str = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 myself,master - 0 1426238316232 2 connected 5461-10922
";

    #[test]
    fn the_myself_line_gives_the_bus_address() {
        assert_eq!(own_bus_addr(NODES).as_deref(), Some("127.0.0.1:31002"));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(own_bus_addr("garbage\n\nid 1.2.3.4:5 myself\n"), None);
    }
}
