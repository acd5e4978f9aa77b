//! Reading node addresses out of a `CLUSTER NODES` reply.

/// One node's addresses, from a `CLUSTER NODES` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddrs {
    /// `host:port` of its RESP listener.
    pub resp: String,
    /// `host:port` of its cluster bus.
    pub bus: String,
    /// Whether its flags say it failed (`fail` or `fail?`).
    pub failed: bool,
}

/// Parses a `CLUSTER NODES` reply (Redis's format: `<id> <ip:port@cport[,hostname]> <flags>
/// ...`, one node a line). A line without an address (`noaddr`, a port of 0) is skipped; a
/// line without a host (`:7000@17000`) gets `default_host`, the host that was asked. Lines
/// that do not parse are skipped: this never fails.
pub fn parse_cluster_nodes(text: &str, default_host: &str) -> Vec<NodeAddrs> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_id), Some(addr), Some(flags)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if flags.split(',').any(|f| f == "noaddr" || f == "handshake") {
            continue;
        }
        let addr = addr.split(',').next().unwrap_or(addr);
        let Some((hostport, bus_port)) = addr.split_once('@') else {
            continue;
        };
        let Some((host, port)) = hostport.rsplit_once(':') else {
            continue;
        };
        let (Ok(port), Ok(bus_port)) = (port.parse::<u16>(), bus_port.parse::<u16>()) else {
            continue;
        };
        if port == 0 || bus_port == 0 {
            continue;
        }
        let host = if host.is_empty() { default_host } else { host };
        out.push(NodeAddrs {
            resp: join(host, port),
            bus: join(host, bus_port),
            failed: flags.split(',').any(|f| f == "fail" || f == "fail?"),
        });
    }
    out
}

/// `host:port`, bracketing IPv6 hosts.
pub(crate) fn join(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The host part of `host:port` (brackets kept off).
pub(crate) fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_cluster_nodes_lines() {
        let text = "\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,host-a slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f :30003@31003 myself,master - 0 0 3 connected 10923-16383
6ec23923021cf3ffec47632106199cb7f496ce01 :0@0 master,noaddr - 0 0 0 disconnected
824fe116063bc5fcf9f4ffd895bc17aee7731ac3 ::1:30006@31006 slave,fail 292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 0 1426238317741 6 connected
garbage
x y:z@w master
";
        let nodes = parse_cluster_nodes(text, "10.1.1.1");
        assert_eq!(
            nodes,
            vec![
                NodeAddrs {
                    resp: "127.0.0.1:30004".into(),
                    bus: "127.0.0.1:31004".into(),
                    failed: false
                },
                NodeAddrs {
                    resp: "127.0.0.1:30002".into(),
                    bus: "127.0.0.1:31002".into(),
                    failed: false
                },
                NodeAddrs {
                    resp: "10.1.1.1:30003".into(),
                    bus: "10.1.1.1:31003".into(),
                    failed: false
                },
                NodeAddrs {
                    resp: "[::1]:30006".into(),
                    bus: "[::1]:31006".into(),
                    failed: true
                },
            ]
        );
        assert!(parse_cluster_nodes("", "h").is_empty());
        assert_eq!(host_of("[::1]:7000"), "::1");
        assert_eq!(host_of("127.0.0.1:7000"), "127.0.0.1");
    }
}
