//! One `shoal server` process with known ports.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shoal_cluster::NodeId;

use crate::error::{Error, Result};
use crate::ports::NodePorts;
use crate::process::{POLL, Process, ProcessSpec, TcpLink, tcp_links};
use crate::resp::{self, Value};

/// How long one RESP exchange of the kit may take.
pub const RESP_TIMEOUT: Duration = Duration::from_secs(2);

/// The host every test node listens on.
pub const HOST: &str = "127.0.0.1";

/// How to start a node: `<binary> server --port P --cluster-port B --http-port H <args>`.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its name in messages and its log file's name (`node-0`).
    pub name: String,
    /// The `shoal` binary (in a test of the `shoal` crate, `env!("CARGO_BIN_EXE_shoal")`).
    pub binary: PathBuf,
    /// Its ports.
    pub ports: NodePorts,
    /// Further `shoal server` flags (`--cluster-enabled`, `--threads 1`, ...).
    pub args: Vec<String>,
    /// Its log file.
    pub log: PathBuf,
    /// Environment variables to set for it (after the kit clears `SHOAL_*` and `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Its niceness (see [`ProcessSpec::nice`]).
    pub nice: i32,
    /// The password it requires (`--requirepass`, given in its environment), if any: the kit's
    /// own exchanges with it ([`NodeProcess::command`], ...) authenticate with it.
    pub password: Option<String>,
    /// Its directory (`--dir`: id, Raft state, last map), if it keeps one: restarted with it,
    /// the node comes back as itself.
    pub dir: Option<PathBuf>,
}

/// A `shoal server` child process. Every method takes `&self`, so a node can be killed or
/// paused while other tasks use it; dropping it kills the process.
pub struct NodeProcess {
    process: Process,
    ports: NodePorts,
    password: Option<String>,
    dir: Option<PathBuf>,
    /// The id of the current incarnation (`(start number, id)`), once asked.
    id: Mutex<Option<(u32, NodeId)>>,
}

impl NodeProcess {
    /// Starts the node (without waiting for it: see [`NodeProcess::wait_ready`]).
    pub fn spawn(spec: NodeSpec) -> Result<NodeProcess> {
        let mut args = vec!["server".to_string()];
        args.extend(spec.ports.args());
        args.extend(spec.args);
        if let Some(dir) = &spec.dir {
            args.extend(["--dir".to_string(), dir.display().to_string()]);
        }
        // Plain text logs: tracing's colours are escape codes in a file.
        let mut env = vec![("NO_COLOR".to_string(), "1".to_string())];
        if let Some(password) = &spec.password {
            env.push(("SHOAL_REQUIREPASS".to_string(), password.clone()));
        }
        // The kit's cluster secret, unless the test gives its own (its environment comes
        // after; a flag beats the environment).
        env.push((
            "SHOAL_CLUSTER_SECRET_FILE".to_string(),
            crate::secret::cluster_secret_file().display().to_string(),
        ));
        env.extend(spec.env);
        let process = Process::spawn(ProcessSpec {
            name: spec.name,
            binary: spec.binary,
            args,
            env,
            log: spec.log,
            nice: spec.nice,
        })?;
        Ok(NodeProcess {
            process,
            ports: spec.ports,
            password: spec.password,
            dir: spec.dir,
            id: Mutex::new(None),
        })
    }

    /// Starts the node and waits up to `timeout` for it to answer `PING`.
    pub async fn start(spec: NodeSpec, timeout: Duration) -> Result<NodeProcess> {
        let node = NodeProcess::spawn(spec)?;
        node.wait_ready(timeout).await?;
        Ok(node)
    }

    /// The process, for signals and restarts.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Its name.
    pub fn name(&self) -> &str {
        self.process.name()
    }

    /// Its ports.
    pub fn ports(&self) -> NodePorts {
        self.ports
    }

    /// `127.0.0.1:<port>` of its RESP listener.
    pub fn resp_addr(&self) -> String {
        format!("{HOST}:{}", self.ports.resp)
    }

    /// `127.0.0.1:<cluster-port>` of its cluster bus.
    pub fn bus_addr(&self) -> String {
        format!("{HOST}:{}", self.ports.bus)
    }

    /// `127.0.0.1:<http-port>` of its HTTP API, if it serves one.
    pub fn http_addr(&self) -> Option<String> {
        (self.ports.http != 0).then(|| format!("{HOST}:{}", self.ports.http))
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Whether the process is alive (paused counts as alive).
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.process.is_paused()
    }

    /// Kills it with SIGKILL (`kill -9`), as a crash would.
    pub fn kill(&self) -> Result<()> {
        self.process.kill()
    }

    /// Freezes it with SIGSTOP: connections stay open, nothing is answered.
    pub fn pause(&self) -> Result<()> {
        self.process.pause()
    }

    /// Lets it go on after [`NodeProcess::pause`] (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.process.resume()
    }

    /// Stops it with SIGTERM and waits up to `timeout` for a clean exit.
    pub async fn terminate(&self, timeout: Duration) -> Result<ExitStatus> {
        self.process.terminate(timeout).await
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub async fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        self.process.wait_exit(timeout).await
    }

    /// Starts it again after it ended, with the same ports and flags. With its directory (see
    /// [`NodeSpec::dir`]) it comes back as the same node (same id, its keys gone); without one
    /// it has a new id, and the cluster sees a new node.
    pub fn restart(&self) -> Result<()> {
        self.process.restart()
    }

    /// Starts it again after it ended, with the same ports and flags but without its
    /// directory: a new node (new id) on the old one's address. The directory stays as it
    /// was; a later [`NodeProcess::restart`] uses it again.
    pub fn restart_without_dir(&self) -> Result<()> {
        let mut args = self.process.spec().args.clone();
        if let Some(at) = args.iter().position(|a| a == "--dir") {
            args.drain(at..(at + 2).min(args.len()));
        }
        self.process.restart_with(args)
    }

    /// Its directory, if it keeps one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Waits up to `timeout` until it answers `PING` with `PONG`. Fails at once if it exits.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last;
        loop {
            if let Some(status) = self.process.exit_status() {
                return Err(self.exited(status));
            }
            let addr = self.resp_addr();
            let ping = resp::command_as(
                &addr,
                self.password(),
                &["PING"],
                Duration::from_millis(500),
            );
            match ping.await {
                Ok(Value::Simple(pong)) if pong == b"PONG" => return Ok(()),
                Ok(other) => last = format!("PING answered {other:?}"),
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!("{} to answer PING", self.name()),
                    waited: timeout,
                    detail: format!("last: {last}\n{}", self.process.report()),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The password it requires, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A connection to its RESP port, authenticated if it requires a password.
    pub async fn connect(&self) -> Result<resp::RespConnection> {
        resp::RespConnection::connect_as(&self.resp_addr(), self.password(), RESP_TIMEOUT).await
    }

    /// Sends one command (authenticated if it requires a password) and returns the reply; an
    /// error reply is `Ok(Value::Error(..))`.
    pub async fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value> {
        resp::command_as(&self.resp_addr(), self.password(), args, RESP_TIMEOUT).await
    }

    /// `INFO <section>`, parsed ([`Info`]).
    pub async fn info(&self, section: &str) -> Result<Info> {
        let reply = self.command(&["INFO", section]).await?;
        match &reply {
            Value::Bulk(_) | Value::Verbatim(..) => {
                Ok(Info::parse(&resp::text(&reply).unwrap_or_default()))
            }
            other => Err(Error::Resp {
                addr: self.resp_addr(),
                reason: format!("INFO {section} answered {other:?}"),
            }),
        }
    }

    /// The established TCP connections of this process to `remote` (`host:port`): for
    /// instance a replica's link to its primary's RESP port, whose local address is the
    /// client address the primary sees (`CLIENT KILL ADDR`). IPv4 only.
    pub fn connections_to(&self, remote: &str) -> Result<Vec<TcpLink>> {
        let remote: SocketAddrV4 = remote
            .parse()
            .map_err(|e| Error::Usage(format!("{remote} is no IPv4 address: {e}")))?;
        let pid = self
            .process
            .pid()
            .ok_or_else(|| Error::Usage(format!("{} is not running", self.name())))?;
        Ok(tcp_links(pid)?
            .into_iter()
            .filter(|link| link.remote == remote)
            .collect())
    }

    /// Its cluster node id, from `CLUSTER MYID` (asked once per start).
    pub async fn id(&self) -> Result<NodeId> {
        let starts = self.process.starts();
        if let Some((at, id)) = *self.id_lock()
            && at == starts
        {
            return Ok(id);
        }
        let reply = self.command(&["CLUSTER", "MYID"]).await?;
        let text = match &reply {
            Value::Bulk(_) | Value::Simple(_) => resp::text(&reply).unwrap_or_default(),
            other => {
                return Err(Error::Resp {
                    addr: self.resp_addr(),
                    reason: format!("CLUSTER MYID answered {other:?}"),
                });
            }
        };
        let id: NodeId = text.trim().parse().map_err(|e| Error::Resp {
            addr: self.resp_addr(),
            reason: format!("CLUSTER MYID: {e}"),
        })?;
        *self.id_lock() = Some((starts, id));
        Ok(id)
    }

    /// Its id if [`NodeProcess::id`] has learned it for the current start.
    pub fn known_id(&self) -> Option<NodeId> {
        let starts = self.process.starts();
        self.id_lock()
            .filter(|(at, _)| *at == starts)
            .map(|(_, id)| id)
    }

    fn id_lock(&self) -> std::sync::MutexGuard<'_, Option<(u32, NodeId)>> {
        self.id.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exited(&self, status: ExitStatus) -> Error {
        Error::Exited {
            name: self.name().to_string(),
            status,
            log: self.log_path().to_path_buf(),
            tail: self.log_tail(crate::process::LOG_TAIL_LINES),
        }
    }
}

/// An `INFO` reply: its `field:value` lines (section headers and blank lines left out).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info(pub BTreeMap<String, String>);

impl Info {
    /// Parses the text of an `INFO` reply.
    pub fn parse(text: &str) -> Info {
        Info(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.trim_end().split_once(':'))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    /// The value of `field`.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The value of `field` as a number.
    pub fn u64(&self, field: &str) -> Option<u64> {
        self.get(field)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_replies_become_fields() {
        let info = Info::parse(
            "# Replication\r\nrole:slave\r\nmaster_port:7001\r\n\r\n# Stats\r\n\
             slave0:ip=127.0.0.1,port=7002,state=online\r\nsync_full:2\r\n",
        );
        assert_eq!(info.get("role"), Some("slave"));
        assert_eq!(info.u64("master_port"), Some(7001));
        assert_eq!(info.u64("sync_full"), Some(2));
        assert_eq!(
            info.get("slave0"),
            Some("ip=127.0.0.1,port=7002,state=online")
        );
        assert_eq!(info.get("# Replication"), None);
        assert_eq!(info.u64("role"), None);
    }
}
