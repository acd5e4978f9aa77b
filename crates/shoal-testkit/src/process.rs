//! Child processes under a test's control: start, kill (-9), pause (SIGSTOP), resume
//! (SIGCONT), terminate (SIGTERM), restart, each bounded and observable.
//!
//! Children never outlive the test: dropping a [`Process`] kills it, and every child is started
//! with `PR_SET_PDEATHSIG = SIGKILL`, so a test runner that crashes (or is killed) takes its
//! children with it. The kernel sends that signal when the *thread* that forked the child ends,
//! so every child is forked by one spawner thread that lives as long as the test process.

use std::collections::HashSet;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::testdir;

/// How often waits look again.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// Lines of a log shown in errors and failure reports.
pub const LOG_TAIL_LINES: usize = 20;

/// How to start a process.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    /// Its name in messages (`node-2`).
    pub name: String,
    /// The program.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment variables to set (after `SHOAL_*` and `RUST_LOG` are cleared).
    pub env: Vec<(String, String)>,
    /// Where its standard output and error go (appended to).
    pub log: PathBuf,
    /// Niceness added for it and its threads (as `nice -n`): 0 keeps the test's; 10 lets a
    /// process that stands for another machine (a replica loading a snapshot) yield the CPU
    /// to the one being measured.
    pub nice: i32,
}

/// A running (or stopped) child process.
pub struct Process {
    spec: ProcessSpec,
    state: Mutex<State>,
}

struct State {
    child: Option<Child>,
    exit: Option<ExitStatus>,
    paused: bool,
    starts: u32,
}

impl Process {
    /// Starts the process.
    pub fn spawn(spec: ProcessSpec) -> Result<Process> {
        let child = start(&spec, 0)?;
        Ok(Process {
            spec,
            state: Mutex::new(State {
                child: Some(child),
                exit: None,
                paused: false,
                starts: 1,
            }),
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// How it was started.
    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.spec.log
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        testdir::tail(&self.spec.log, lines)
    }

    /// How many times it was started (1, then +1 per restart).
    pub fn starts(&self) -> u32 {
        self.state().starts
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        let mut state = self.state();
        state.poll();
        state.child.as_ref().map(Child::id)
    }

    /// Whether it is alive (a paused process is alive).
    pub fn is_running(&self) -> bool {
        let mut state = self.state();
        state.poll();
        state.child.is_some()
    }

    /// Whether it is stopped by [`Process::pause`].
    pub fn is_paused(&self) -> bool {
        let mut state = self.state();
        state.poll();
        state.paused && state.child.is_some()
    }

    /// How it ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        let mut state = self.state();
        state.poll();
        state.exit
    }

    /// Kills it with SIGKILL and reaps it. Does nothing if it already ended.
    pub fn kill(&self) -> Result<()> {
        let mut state = self.state();
        state.poll();
        if let Some(mut child) = state.child.take() {
            child
                .kill()
                .map_err(|e| Error::io(format!("cannot kill {}", self.spec.name), e))?;
            let status = child
                .wait()
                .map_err(|e| Error::io(format!("cannot reap {}", self.spec.name), e))?;
            state.exit = Some(status);
            state.paused = false;
        }
        Ok(())
    }

    /// Stops it with SIGSTOP: it keeps its sockets but does nothing until [`Process::resume`].
    pub fn pause(&self) -> Result<()> {
        self.signal(libc::SIGSTOP)?;
        self.state().paused = true;
        Ok(())
    }

    /// Lets a paused process go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.signal(libc::SIGCONT)?;
        self.state().paused = false;
        Ok(())
    }

    /// Sends `signal` to it.
    pub fn signal(&self, signal: libc::c_int) -> Result<()> {
        let mut state = self.state();
        state.poll();
        let Some(child) = state.child.as_ref() else {
            return Err(Error::Usage(format!(
                "{} is not running: cannot signal it",
                self.spec.name
            )));
        };
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        if rc != 0 {
            return Err(Error::io(
                format!("cannot send signal {signal} to {}", self.spec.name),
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Asks it to stop (SIGTERM, after SIGCONT if paused) and waits up to `timeout` for it to
    /// exit. If it has not by then it is killed and this is an error.
    pub async fn terminate(&self, timeout: Duration) -> Result<ExitStatus> {
        if !self.is_running() {
            return self.wait_exit(Duration::ZERO).await;
        }
        if self.is_paused() {
            self.resume()?;
        }
        self.signal(libc::SIGTERM)?;
        match self.wait_exit(timeout).await {
            Ok(status) => Ok(status),
            Err(e) => {
                self.kill()?;
                Err(e)
            }
        }
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub async fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Ok(status);
            }
            if started.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!("{} to exit", self.spec.name),
                    waited: timeout,
                    detail: self.report(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts it again with the same command line, once it has ended (after [`Process::kill`]
    /// or [`Process::terminate`]). Its log continues in the same file.
    pub fn restart(&self) -> Result<()> {
        self.restart_with(self.spec.args.clone())
    }

    /// Starts it again with other arguments (a node that founded a cluster rejoins it).
    pub fn restart_with(&self, args: Vec<String>) -> Result<()> {
        let mut state = self.state();
        state.poll();
        if state.child.is_some() {
            return Err(Error::Usage(format!(
                "{} is still running: kill or terminate it before restarting",
                self.spec.name
            )));
        }
        let spec = ProcessSpec {
            args,
            ..self.spec.clone()
        };
        state.child = Some(start(&spec, state.starts)?);
        state.exit = None;
        state.paused = false;
        state.starts += 1;
        Ok(())
    }

    /// Its name, state, log path and log tail: what a failure report needs.
    pub fn report(&self) -> String {
        let state = match self.exit_status() {
            Some(status) => format!("exited ({status})"),
            None if self.is_paused() => "paused".to_string(),
            None => "running".to_string(),
        };
        format!(
            "{} ({state}), log {}:\n{}",
            self.spec.name,
            self.spec.log.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Notices whether the child ended.
    fn poll(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit = Some(status);
            self.child = None;
            self.paused = false;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("shoal-testkit: {}", self.report());
        }
        let _ = self.kill();
    }
}

/// One established TCP connection of a process, as `/proc` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLink {
    /// Its local end.
    pub local: SocketAddrV4,
    /// Its remote end.
    pub remote: SocketAddrV4,
}

/// The established IPv4 TCP connections of process `pid`: its sockets (`/proc/<pid>/fd`)
/// looked up in its network namespace's table (`/proc/<pid>/net/tcp`).
pub fn tcp_links(pid: u32) -> Result<Vec<TcpLink>> {
    let fd_dir = format!("/proc/{pid}/fd");
    let entries =
        std::fs::read_dir(&fd_dir).map_err(|e| Error::io(format!("cannot list {fd_dir}"), e))?;
    let inodes: HashSet<u64> = entries
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table_path = format!("/proc/{pid}/net/tcp");
    let table = std::fs::read_to_string(&table_path)
        .map_err(|e| Error::io(format!("cannot read {table_path}"), e))?;
    Ok(parse_tcp_table(&table)
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(link, _)| link)
        .collect())
}

/// The established connections of a `/proc/net/tcp` table, with their socket inodes.
fn parse_tcp_table(table: &str) -> Vec<(TcpLink, u64)> {
    const ESTABLISHED: &str = "01";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != ESTABLISHED {
                return None;
            }
            let link = TcpLink {
                local: parse_proc_addr(fields[1])?,
                remote: parse_proc_addr(fields[2])?,
            };
            Some((link, fields[9].parse().ok()?))
        })
        .collect()
}

/// `0100007F:1F90` (the address as the host's u32 in hex, the port in hex) as an address.
fn parse_proc_addr(text: &str) -> Option<SocketAddrV4> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    // The kernel prints the address's bytes in memory order as one native u32.
    Some(SocketAddrV4::new(Ipv4Addr::from(ip.to_ne_bytes()), port))
}

/// Starts `spec` (the `starts`-th time), with its output appended to its log.
fn start(spec: &ProcessSpec, starts: u32) -> Result<Child> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|e| Error::io(format!("cannot open {}", spec.log.display()), e))?;
    if starts > 0 {
        use std::io::Write as _;
        let _ = writeln!(&log, "--- shoal-testkit: restart {starts} ---");
    }
    let stderr = log
        .try_clone()
        .map_err(|e| Error::io("cannot duplicate a log file", e))?;
    let mut command = Command::new(&spec.binary);
    command
        .args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SHOAL_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    let parent = std::process::id();
    let nice = spec.nice;
    // SAFETY: the closure runs in the forked child before exec and only makes plain system
    // calls (prctl, getpriority/setpriority through nice, getppid, _exit) that allocate
    // nothing and touch no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if nice != 0 {
                // Before exec: every thread the program starts inherits it.
                libc::nice(nice);
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() as u32 != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    spawn_on_spawner(command).map_err(|source| Error::Spawn {
        binary: spec.binary.clone(),
        source,
    })
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Forks `command` on the spawner thread (see the module's doc).
fn spawn_on_spawner(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("shoal-testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply_tx))
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    fn sleeper(dir: &TestDir, name: &str) -> Process {
        Process::spawn(ProcessSpec {
            name: name.into(),
            binary: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo started; trap 'echo bye; exit 3' TERM; while true; do sleep 0.02; done"
                    .into(),
            ],
            env: vec![],
            nice: 0,
            log: dir.join(&format!("{name}.log")),
        })
        .unwrap()
    }

    /// Waits until the log holds `text` (the shell has set its trap once it echoes).
    async fn wait_for_log(p: &Process, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.log_tail(10).contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in {}",
                p.log_tail(10)
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The process's state letter from /proc (R, S, T for stopped...).
    fn proc_state(pid: u32) -> char {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let after = stat.rsplit_once(')').unwrap().1;
        after.trim_start().chars().next().unwrap()
    }

    #[tokio::test]
    async fn kill_pause_resume_and_restart() {
        let dir = TestDir::new("process").unwrap();
        let p = sleeper(&dir, "sleeper");
        assert!(p.is_running());
        let pid = p.pid().unwrap();
        p.pause().unwrap();
        assert!(p.is_paused());
        let deadline = Instant::now() + Duration::from_secs(5);
        while proc_state(pid) != 'T' {
            assert!(Instant::now() < deadline, "not stopped");
            tokio::time::sleep(POLL).await;
        }
        p.resume().unwrap();
        assert!(!p.is_paused());
        p.kill().unwrap();
        assert!(!p.is_running());
        assert!(p.pid().is_none());
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(p.exit_status().unwrap().signal(), Some(libc::SIGKILL));
        assert!(p.signal(libc::SIGCONT).is_err(), "no signals to the dead");

        p.restart().unwrap();
        assert_eq!(p.starts(), 2);
        assert!(p.is_running());
        assert!(p.restart().is_err(), "not while running");
        wait_for_log(&p, "restart 1 ---\nstarted").await;
        let status = p.terminate(Duration::from_secs(5)).await.unwrap();
        assert_eq!(status.code(), Some(3));
        let log = p.log_tail(10);
        assert!(log.contains("restart 1") && log.contains("bye"), "{log}");
    }

    #[tokio::test]
    async fn waits_are_bounded_and_report_the_log() {
        let dir = TestDir::new("bounded").unwrap();
        let p = sleeper(&dir, "stubborn");
        wait_for_log(&p, "started").await;
        let err = p.wait_exit(Duration::from_millis(100)).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("stubborn to exit") && text.contains("started"),
            "{text}"
        );
        p.pause().unwrap();
        let status = p.terminate(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            status.code(),
            Some(3),
            "a paused process is resumed to terminate"
        );
    }

    #[test]
    fn dropping_kills_the_child() {
        let dir = TestDir::new("drop").unwrap();
        let p = sleeper(&dir, "dropped");
        let pid = p.pid().unwrap();
        drop(p);
        // Reaped by the drop: the pid is gone (or reused by an unrelated process, unlikely).
        assert!(!Path::new(&format!("/proc/{pid}/stat")).exists() || proc_state(pid) != 'S');
    }

    #[test]
    fn proc_tcp_tables_parse() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n\
            1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n";
        let links = parse_tcp_table(table);
        assert_eq!(links.len(), 1, "listening sockets are left out");
        let (link, inode) = links[0];
        assert_eq!(link.local, "127.0.0.1:50000".parse().unwrap());
        assert_eq!(link.remote, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(inode, 222);
    }

    #[test]
    fn a_process_s_own_connections_are_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(target).unwrap();
        let local = client.local_addr().unwrap();
        let links = tcp_links(std::process::id()).unwrap();
        assert!(
            links
                .iter()
                .any(|l| std::net::SocketAddr::V4(l.local) == local
                    && std::net::SocketAddr::V4(l.remote) == target),
            "{links:?}"
        );
    }

    #[test]
    fn a_missing_binary_is_a_spawn_error() {
        let dir = TestDir::new("missing").unwrap();
        let err = Process::spawn(ProcessSpec {
            name: "ghost".into(),
            binary: "/nonexistent/shoal".into(),
            args: vec![],
            env: vec![],
            nice: 0,
            log: dir.join("ghost.log"),
        })
        .err()
        .unwrap();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }
}
