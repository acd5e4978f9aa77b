//! A node running inside the test's own process ([`LocalNode`]): it starts in milliseconds and
//! its state can be inspected directly, for tests of one node's behaviour and of the client
//! and the proxy against real nodes. Tests of failures (kill, pause, partition) run real
//! processes instead ([`crate::NodeProcess`]).

use std::net::SocketAddr;
use std::sync::Arc;

use shoal_server::{Config, Server, Shared, StartError};

use crate::error::{Error, Result};
use crate::ports::free_port;

/// How many times a node is started on new ports when one was taken meanwhile.
const ATTEMPTS: usize = 5;

/// A node in this process, on free loopback ports. Dropping it stops the node and waits for
/// its threads.
pub struct LocalNode {
    server: Option<Server>,
    addr: SocketAddr,
}

impl LocalNode {
    /// A node with the defaults of [`LocalNode::start_with`].
    pub fn start() -> Result<LocalNode> {
        LocalNode::start_with(|_| {})
    }

    /// A node whose configuration `tweak` adjusts, after the defaults for tests: two worker
    /// threads, no HTTP listener, a free RESP port and, in cluster mode, a free bus port (both
    /// below the ephemeral range, see [`free_port`]; a port `tweak` sets is kept) and the kit's
    /// cluster secret ([`crate::cluster_secret`], unless `tweak` sets another file).
    pub fn start_with(tweak: impl Fn(&mut Config)) -> Result<LocalNode> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let mut config = Config {
                port: 0,
                http_port: 0,
                threads: 2,
                ..Config::default()
            };
            tweak(&mut config);
            if config.port == 0 {
                config.port = free_port()?;
            }
            if config.cluster_mode() && config.cluster_port == 0 {
                config.cluster_port = free_port()?;
            }
            if config.cluster_mode() && config.cluster_secret_file.is_empty() {
                config.cluster_secret_file =
                    crate::secret::cluster_secret_file().display().to_string();
            }
            match Server::start(config) {
                Ok(server) => {
                    let addr = server.resp_addr();
                    return Ok(LocalNode {
                        server: Some(server),
                        addr,
                    });
                }
                // Another process took a port between its check and the bind: new ports.
                Err(e @ StartError::Bind(_)) => last = Some(e),
                Err(e) => return Err(Error::Usage(format!("the node did not start: {e}"))),
            }
        }
        Err(Error::Usage(format!(
            "the node did not start in {ATTEMPTS} attempts: {}",
            last.map_or_else(String::new, |e| e.to_string())
        )))
    }

    /// The RESP listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server
            .as_ref()
            .expect("a local node runs until it is stopped")
    }

    /// The node's shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        self.server().shared()
    }

    /// Stops the node and waits for it.
    pub fn stop(mut self) {
        self.stop_now();
    }

    /// Takes the server out, for tests of how it stops.
    pub fn into_server(mut self) -> Server {
        self.server
            .take()
            .expect("a local node runs until it is stopped")
    }

    fn stop_now(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait();
        }
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.stop_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_nodes_serve_on_free_ports_and_stop_when_dropped() {
        let node = LocalNode::start().expect("a node starts");
        let addr = node.addr();
        assert!(addr.ip().is_loopback());
        assert!(std::net::TcpStream::connect(addr).is_ok());
        let other = LocalNode::start_with(|c| c.threads = 1).expect("a second node starts");
        assert_ne!(other.addr(), addr);
        drop(node);
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "a dropped node no longer listens"
        );
    }
}
