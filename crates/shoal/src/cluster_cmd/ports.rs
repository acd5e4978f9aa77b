//! The ports `shoal cluster up` listens on, checked before any node starts: every node's RESP
//! port, its cluster bus port (RESP + 10000) and its HTTP port must be valid, distinct and free.

use std::fmt;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::bail;

use shoal_cluster::BUS_PORT_OFFSET;

/// What a node listens on a port for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Redis clients.
    Resp,
    /// The cluster bus.
    Bus,
    /// The HTTP API.
    Http,
}

/// One port one node of the cluster will listen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NodePort {
    /// The port.
    pub(super) port: u16,
    /// The RESP port of the node it belongs to (how `cluster up` names its nodes).
    pub(super) node: u16,
    /// What it is for.
    pub(super) purpose: Purpose,
}

impl fmt::Display for NodePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.purpose {
            Purpose::Resp => write!(f, "port {} (a node's RESP port)", self.port),
            Purpose::Bus => write!(
                f,
                "port {} (the cluster bus port of the node on {}: RESP + {BUS_PORT_OFFSET})",
                self.port, self.node
            ),
            Purpose::Http => write!(
                f,
                "port {} (the HTTP port of the node on {})",
                self.port, self.node
            ),
        }
    }
}

/// Every port of `nodes` nodes whose RESP ports start at `base` and HTTP ports at `http_base`
/// (0: no HTTP), or why they cannot all exist: a port past 65535, or one port with two uses.
pub(super) fn plan(base: u16, nodes: usize, http_base: u16) -> anyhow::Result<Vec<NodePort>> {
    let port_of = |first: u16, offset: usize, what: &str| -> anyhow::Result<u16> {
        u16::try_from(usize::from(first) + offset).map_err(|_| {
            anyhow::anyhow!(
                "{nodes} nodes need {what} ports {first}-{}, past 65535: choose a lower port",
                usize::from(first) + nodes - 1
            )
        })
    };
    let mut ports = Vec::with_capacity(nodes * 3);
    for i in 0..nodes {
        let node = port_of(base, i, "RESP")?;
        ports.push(NodePort {
            port: node,
            node,
            purpose: Purpose::Resp,
        });
        let bus = base.checked_add(BUS_PORT_OFFSET).ok_or_else(|| {
            anyhow::anyhow!(
                "the cluster bus ports (RESP + {BUS_PORT_OFFSET}) of nodes from {base} are past \
                 65535: choose a --base-port of at most {}",
                usize::from(u16::MAX - BUS_PORT_OFFSET + 1).saturating_sub(nodes)
            )
        })?;
        ports.push(NodePort {
            port: port_of(bus, i, "cluster bus")?,
            node,
            purpose: Purpose::Bus,
        });
        if http_base != 0 {
            ports.push(NodePort {
                port: port_of(http_base, i, "HTTP")?,
                node,
                purpose: Purpose::Http,
            });
        }
    }
    for (i, a) in ports.iter().enumerate() {
        if let Some(b) = ports[..i].iter().find(|b| b.port == a.port) {
            bail!(
                "port {} would be used twice, as {} and as {}: choose --base-port and \
                 --http-base-port so that the RESP ports, the bus ports (RESP + {BUS_PORT_OFFSET}) \
                 and the HTTP ports do not overlap",
                a.port,
                role(b),
                role(a)
            );
        }
    }
    Ok(ports)
}

/// What `port` is for, in words.
fn role(port: &NodePort) -> String {
    match port.purpose {
        Purpose::Resp => format!("the RESP port of the node on {}", port.node),
        Purpose::Bus => format!("the cluster bus port of the node on {}", port.node),
        Purpose::Http => format!("the HTTP port of the node on {}", port.node),
    }
}

/// Checks that nothing listens on any of `ports` on 127.0.0.1; the error names every port that
/// is taken and what holds it.
pub(super) fn check_free(ports: &[NodePort]) -> anyhow::Result<()> {
    let taken: Vec<String> = ports
        .iter()
        .filter_map(|port| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port.port));
            let error = TcpListener::bind(addr).err()?;
            let why = match error.kind() {
                std::io::ErrorKind::AddrInUse => format!("is in use: {}", holder(addr)),
                std::io::ErrorKind::PermissionDenied => {
                    "cannot be listened on without privileges".to_string()
                }
                _ => format!("cannot be listened on: {error}"),
            };
            Some(format!("{port} {why}"))
        })
        .collect();
    if taken.is_empty() {
        return Ok(());
    }
    bail!(
        "nothing was started: {}; choose another --base-port{}",
        taken.join("; "),
        if ports.iter().any(|p| p.purpose == Purpose::Http) {
            " (or --http-base-port)"
        } else {
            ""
        }
    )
}

/// What listens at `addr`, as far as a `PING` tells.
fn holder(addr: SocketAddr) -> String {
    const WAIT: Duration = Duration::from_millis(300);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, WAIT) else {
        return "another process holds it".into();
    };
    let _ = stream.set_read_timeout(Some(WAIT));
    let _ = stream.write_all(b"PING\r\n");
    let mut answer = [0u8; 64];
    let n = stream.read(&mut answer).unwrap_or(0);
    let answer = &answer[..n];
    if answer.starts_with(b"+PONG") || answer.starts_with(b"-") {
        format!(
            "a Redis-protocol server answers there (a Shoal or Redis node; a cluster still \
             running? `shoal cluster status --node {addr}`)"
        )
    } else if answer.starts_with(b"HTTP/") {
        "an HTTP server answers there".into()
    } else if answer.len() > 4 && answer[4] == b'{' {
        "a Shoal node's cluster bus answers there".into()
    } else {
        "another program listens there".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_has_a_resp_a_bus_and_an_http_port() {
        let ports = plan(7000, 2, 8000).unwrap();
        let numbers: Vec<u16> = ports.iter().map(|p| p.port).collect();
        assert_eq!(numbers, [7000, 17000, 8000, 7001, 17001, 8001]);
        assert!(ports.iter().all(|p| p.node == 7000 || p.node == 7001));
        assert_eq!(plan(7000, 2, 0).unwrap().len(), 4, "no HTTP ports");
    }

    #[test]
    fn overlapping_ranges_are_refused_naming_both_uses() {
        let error = plan(7000, 9, 7005).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "port 7005 would be used twice, as the HTTP port of the node on 7000 and as \
                 the RESP port of the node on 7005"
            ),
            "{error}"
        );
        let error = plan(7000, 3, 17001).unwrap_err().to_string();
        assert!(error.contains("port 17001 would be used twice"), "{error}");
    }

    #[test]
    fn ports_past_65535_are_refused() {
        let error = plan(60000, 3, 0).unwrap_err().to_string();
        assert!(error.contains("past 65535"), "{error}");
        let error = plan(55535, 2, 0).unwrap_err().to_string();
        assert!(error.contains("cluster bus ports 65535-65536"), "{error}");
        let error = plan(7000, 3, 65534).unwrap_err().to_string();
        assert!(error.contains("HTTP ports 65534-65536"), "{error}");
    }

    #[test]
    fn a_taken_port_is_named_with_what_holds_it() {
        let holder = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let ports = [NodePort {
            port,
            node: port,
            purpose: Purpose::Resp,
        }];
        let error = check_free(&ports).unwrap_err().to_string();
        assert!(
            error.contains(&format!("port {port} (a node's RESP port) is in use")),
            "{error}"
        );
        drop(holder);
        check_free(&ports).unwrap();
    }
}
