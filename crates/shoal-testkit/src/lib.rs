//! Tests that run real `shoal` processes, and the fault-injection kit built on them.
//!
//! * [`ports`]: free ports on 127.0.0.1 ([`free_port`], [`NodePorts`]), so every node gets
//!   explicit RESP, bus and HTTP ports and nothing collides.
//! * [`process`]: a child process under control: kill (-9), pause (SIGSTOP), resume, terminate
//!   (SIGTERM), restart. Children die with the test, even if the test runner crashes.
//!   [`tcp_links`] lists a process's TCP connections (a replica's link to its primary).
//! * [`node`]: one `shoal server` ([`NodeProcess`]): its addresses, environment, readiness, id,
//!   raw commands, `INFO` sections ([`Info`]).
//! * [`local`]: a node in the test's own process ([`LocalNode`]), on free ports.
//! * [`cluster`]: a cluster of them ([`TestCluster`]): start (short of replicas, if asked),
//!   join (with a node's own environment and flags: [`JoinOptions`]), remove, bounded waits on
//!   the controller's status and on the primaries' leases, and the shards by process index
//!   ([`ShardNodes`]).
//! * [`resp`]: a minimal RESP client that shows raw replies (`-MOVED`, `-CROSSSLOT`).
//! * [`router`]: a small cluster client ([`Router`]) that follows `-MOVED` itself and never
//!   retries what may have run, for exact accounting in fault tests (`SET` + `WAIT`).
//! * [`secret`]: the cluster secret every node the kit starts is given.
//! * [`testdir`]: a directory for logs, kept when a test fails.
//! * [`tls`]: a test CA ([`TestCa`]) and the server and client certificates it signs.
//! * [`tools`]: skipping tests whose external tools (`redis-cli`, `chromium`) are missing.
//! * [`browser`]: a page as headless Chromium renders it, its scripts run ([`browser::dump_dom`]).
//!
//! Fault injection and checking:
//!
//! * [`relay`]: a TCP relay ([`Relay`]) to put between two nodes (or a client and a node):
//!   cut it (a blackhole that holds bytes, or resets), cut one direction, add latency.
//! * [`netns`]: optional, root only: network namespaces of our own ([`NetNs`]) with a veth link
//!   that can be taken down, for processes that must be partitioned at the IP level.
//! * [`history`]: a workload recorder ([`Recorder`]) and a checker ([`check`]) for acknowledged
//!   writes lost, stale reads and unavailable time.
//!
//! Every wait is bounded and polls every 20-50 ms. Errors print the log tails or the last
//! cluster status they saw, so a failing test explains itself.
//!
//! ```no_run
//! # async fn example() -> shoal_testkit::Result<()> {
//! use shoal_testkit::{ClusterOptions, TestCluster};
//! let cluster = TestCluster::start("target/debug/shoal", 3, 0, ClusterOptions::default()).await?;
//! let leader = cluster.leader_index().await?;
//! cluster.node(leader).kill()?;
//! # Ok(()) }
//! ```

pub mod browser;
pub mod cluster;
pub mod command;
pub mod error;
pub mod history;
pub mod local;
pub mod netns;
pub mod node;
pub mod ports;
pub mod process;
pub mod relay;
pub mod resp;
pub mod router;
pub mod secret;
pub mod testdir;
pub mod tls;
pub mod tools;
pub mod turns;

pub use cluster::{ClusterOptions, JoinOptions, ShardNodes, TestCluster, is_settled, summarize};
pub use command::{output_within, run_within};
pub use error::{Error, Result};
pub use history::{History, Op, OpKind, Outcome, Recorder, Report, Workload, check};
pub use local::LocalNode;
pub use netns::NetNs;
pub use node::{Info, NodeProcess, NodeSpec};
pub use ports::{NodePorts, free_port, free_ports};
pub use process::{Process, ProcessSpec, TcpLink};
pub use relay::{CutMode, Direction, Relay, RelayStats};
pub use resp::{RespConnection, Value};
pub use router::{Ack, Routed, Router};
pub use secret::{cluster_secret, cluster_secret_file};
pub use testdir::TestDir;
pub use tls::{CertFiles, TestCa};
pub use tools::{have_chromium, have_tools};
pub use turns::run_alone;
