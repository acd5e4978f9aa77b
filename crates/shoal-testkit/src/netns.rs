//! Network namespaces of our own (Linux, root only, optional): a pair of them joined by one
//! veth link, which can be cut like a cable. Nothing is added to the machine's own network:
//! both ends of the link, and their addresses, live in namespaces the test made.
//!
//! [`NetNs::create`] makes two anonymous namespaces (held by file descriptors, never
//! mounted): the *inner* one, where the processes under test run, and the *outer* one, the
//! test's side of the link. The link has `10.200.0.1` outside and `10.200.0.2` inside (a `/30`
//! that exists only in these two namespaces, so every pair can use the same one). The
//! namespaces live exactly as long as the [`NetNs`]: when it is dropped, or when the test
//! process dies however it dies, the kernel destroys both and the link with them.
//!
//! * [`NetNs::wrap`] turns a [`ProcessSpec`] into one that runs inside (through `nsenter`,
//!   which execs the program: its pid, signals and `kill -9` are the program's own).
//! * [`NetNs::enter`] runs a closure on a thread inside, [`NetNs::enter_outer`] on a thread
//!   outside, to bind or connect sockets there (a socket stays in the namespace it was made
//!   in, whichever thread uses it later).
//! * [`NetNs::disconnect`] / [`NetNs::reconnect`] take the link down and up again from
//!   inside: a real partition, where packets vanish, connects hang and TCP retransmits what
//!   was sent once the link is back.
//!
//! Everything needs root, `ip` (iproute2) and `nsenter` (util-linux): [`NetNs::available`]
//! says whether this machine has them, and tests call [`NetNs::skip_unless_available`].
//! Added latency is not offered (the `netem` qdisc is often missing): use a
//! [`crate::relay::Relay`] for that.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::process::ProcessSpec;

/// The address of the link's outer end (the test's side).
pub const OUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);

/// The address of the link's inner end (the processes under test).
pub const INNER_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);

/// The link's interface in the outer namespace.
const OUTER_IF: &str = "tk-outer";

/// The link's interface in the inner namespace.
const INNER_IF: &str = "tk-inner";

/// Two network namespaces of the test's own, joined by a veth link (see the module's doc).
#[derive(Debug)]
pub struct NetNs {
    inner: OwnedFd,
    outer: OwnedFd,
}

impl NetNs {
    /// Whether namespaces can be made here: running as root, with `ip` and `nsenter` on
    /// `PATH`, and the kernel allowing a new network namespace. Asked once per process.
    pub fn available() -> bool {
        static AVAILABLE: OnceLock<bool> = OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            // SAFETY: geteuid has no preconditions and touches no memory.
            let root = unsafe { libc::geteuid() } == 0;
            root && crate::tools::missing_tools(
                &["ip", "nsenter"],
                std::env::var_os("PATH").as_deref(),
            )
            .is_empty()
                && new_namespace().is_ok()
        })
    }

    /// Whether `test` is to be skipped because namespaces cannot be used here (printed, or a
    /// failure when skipping is forbidden: see [`crate::tools::runnable`]).
    pub fn skip_unless_available(test: &str) -> bool {
        let missing = (!NetNs::available()).then(|| {
            "network namespaces need root, `ip` (iproute2) and `nsenter` (util-linux)".to_string()
        });
        !crate::tools::runnable(test, missing)
    }

    /// Makes the two namespaces, their loopbacks up, and the link between them.
    pub fn create() -> Result<NetNs> {
        // From here on, dropping `ns` (on an error too) removes what was made.
        let ns = NetNs {
            inner: new_namespace()?,
            outer: new_namespace()?,
        };
        let inner = ns.path();
        run(ns.outer_command("ip").args([
            "link", "add", OUTER_IF, "type", "veth", "peer", "name", INNER_IF, "netns", &inner,
        ]))?;
        run(ns.outer_command("ip").args([
            "addr",
            "add",
            &format!("{OUTER_IP}/30"),
            "dev",
            OUTER_IF,
        ]))?;
        run(ns.outer_command("ip").args(["link", "set", OUTER_IF, "up"]))?;
        run(ns.outer_command("ip").args(["link", "set", "lo", "up"]))?;
        run(ns.command("ip").args(["link", "set", "lo", "up"]))?;
        run(ns
            .command("ip")
            .args(["addr", "add", &format!("{INNER_IP}/30"), "dev", INNER_IF]))?;
        run(ns.command("ip").args(["link", "set", INNER_IF, "up"]))?;
        Ok(ns)
    }

    /// The address of the link's inner end: what the test connects to.
    pub fn ns_ip(&self) -> Ipv4Addr {
        INNER_IP
    }

    /// The address of the link's outer end: what processes inside connect to.
    pub fn outer_ip(&self) -> Ipv4Addr {
        OUTER_IP
    }

    /// A path naming the inner namespace, for `nsenter --net=` or `ip ... netns`, valid while
    /// it lives.
    pub fn path(&self) -> String {
        fd_path(&self.inner)
    }

    /// A path naming the outer namespace.
    pub fn outer_path(&self) -> String {
        fd_path(&self.outer)
    }

    /// A command that runs `program` inside the inner namespace.
    pub fn command(&self, program: &str) -> Command {
        nsenter(&self.path(), program)
    }

    /// A command that runs `program` in the outer namespace.
    pub fn outer_command(&self, program: &str) -> Command {
        nsenter(&self.outer_path(), program)
    }

    /// `spec`, run inside the inner namespace (same name, log and environment).
    pub fn wrap(&self, spec: ProcessSpec) -> ProcessSpec {
        let mut args = vec![
            format!("--net={}", self.path()),
            "--".to_string(),
            spec.binary.to_string_lossy().into_owned(),
        ];
        args.extend(spec.args);
        ProcessSpec {
            binary: "nsenter".into(),
            args,
            ..spec
        }
    }

    /// Runs `f` on a thread inside the inner namespace and returns what it returns: sockets
    /// it makes (`TcpListener::bind`, `TcpStream::connect`) belong to that namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        run_in(&self.inner, f)
    }

    /// Runs `f` on a thread in the outer namespace (the test's side of the link).
    pub fn enter_outer<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        run_in(&self.outer, f)
    }

    /// Takes the link down: nothing passes between the two namespaces until
    /// [`NetNs::reconnect`]; connections stay open.
    pub fn disconnect(&self) -> Result<()> {
        run(self.command("ip").args(["link", "set", INNER_IF, "down"]))
    }

    /// Brings the link back up after [`NetNs::disconnect`].
    pub fn reconnect(&self) -> Result<()> {
        run(self.command("ip").args(["link", "set", INNER_IF, "up"]))
    }
}

/// The `/proc` path of a namespace descriptor of this process.
fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd())
}

/// `nsenter --net=<path> -- <program>`.
fn nsenter(path: &str, program: &str) -> Command {
    let mut command = Command::new("nsenter");
    command.arg(format!("--net={path}")).arg("--").arg(program);
    command
}

/// Runs `f` on a short-lived thread moved into the namespace `fd`.
fn run_in<T: Send>(fd: &OwnedFd, f: impl FnOnce() -> T + Send) -> Result<T> {
    let fd = fd.as_raw_fd();
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                // SAFETY: setns on a namespace descriptor we hold open; it only changes this
                // short-lived thread's network namespace.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(Error::io(
                        "cannot enter the network namespace",
                        std::io::Error::last_os_error(),
                    ));
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(Error::Usage("a closure in a namespace panicked".into())))
    })
}

/// A fresh network namespace, held by the returned descriptor.
fn new_namespace() -> Result<OwnedFd> {
    // unshare(CLONE_NEWNET) moves only the calling thread: a thread of its own, which ends
    // right away, leaving the namespace alive through the descriptor.
    std::thread::spawn(|| {
        // SAFETY: unshare with CLONE_NEWNET only changes this thread's network namespace.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(Error::io(
                "cannot make a network namespace",
                std::io::Error::last_os_error(),
            ));
        }
        File::open("/proc/thread-self/ns/net")
            .map(OwnedFd::from)
            .map_err(|e| Error::io("cannot open the new network namespace", e))
    })
    .join()
    .unwrap_or_else(|_| Err(Error::Usage("the namespace thread panicked".into())))
}

/// Runs `command`; its standard error explains a failure.
fn run(command: &mut Command) -> Result<()> {
    command_output(command).map(|_| ())
}

/// Runs `command` and returns its standard output.
fn command_output(command: &mut Command) -> Result<String> {
    let shown = format!("{command:?}");
    let output = command
        .output()
        .map_err(|e| Error::io(format!("cannot run {shown}"), e))?;
    if !output.status.success() {
        return Err(Error::io(
            format!("{shown} failed ({})", output.status),
            std::io::Error::other(String::from_utf8_lossy(&output.stderr).trim().to_string()),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Process;
    use crate::testdir::TestDir;
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};

    #[test]
    fn a_wrapped_spec_runs_through_nsenter() {
        let spec = ProcessSpec {
            name: "n".into(),
            binary: "/bin/shoal".into(),
            args: vec!["server".into()],
            env: vec![],
            log: "/tmp/x.log".into(),
            nice: 0,
        };
        // Wrapping needs no namespace of the machine's: build one only if we can.
        if NetNs::skip_unless_available("a_wrapped_spec_runs_through_nsenter") {
            return;
        }
        let ns = NetNs::create().unwrap();
        let wrapped = ns.wrap(spec);
        assert_eq!(wrapped.binary, std::path::PathBuf::from("nsenter"));
        assert_eq!(
            wrapped.args,
            [
                format!("--net={}", ns.path()),
                "--".into(),
                "/bin/shoal".into(),
                "server".into()
            ]
        );
    }

    #[test]
    fn a_process_inside_sees_only_its_namespace() {
        if NetNs::skip_unless_available("a_process_inside_sees_only_its_namespace") {
            return;
        }
        let dir = TestDir::new("netns-process").unwrap();
        let ns = NetNs::create().unwrap();
        let p = Process::spawn(ns.wrap(ProcessSpec {
            name: "inside".into(),
            binary: "/bin/sh".into(),
            args: vec!["-c".into(), "ip -o -4 addr show".into()],
            env: vec![],
            log: dir.join("inside.log"),
            nice: 0,
        }))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while p.exit_status().is_none() {
            assert!(Instant::now() < deadline, "{}", p.report());
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = p.log_tail(20);
        assert!(log.contains(&ns.ns_ip().to_string()), "{log}");
        assert!(
            log.contains("127.0.0.1") && !log.contains(&ns.outer_ip().to_string()),
            "{log}"
        );
    }

    #[test]
    fn the_machine_s_own_network_is_untouched() {
        if NetNs::skip_unless_available("the_machine_s_own_network_is_untouched") {
            return;
        }
        // Interfaces and their addresses (not their lifetimes, which count down).
        let machine = || {
            command_output(Command::new("ip").args(["-o", "addr", "show"]))
                .unwrap()
                .lines()
                .map(|line| {
                    line.split_whitespace()
                        .take(4)
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
        };
        let before = machine();
        let ns = NetNs::create().unwrap();
        assert_eq!(
            machine(),
            before,
            "no interface or address of ours on the machine"
        );
        let outer =
            command_output(ns.outer_command("ip").args(["-o", "-4", "addr", "show"])).unwrap();
        assert!(outer.contains(&OUTER_IP.to_string()), "{outer}");
    }

    #[test]
    fn the_link_carries_tcp_and_can_be_cut_and_healed() {
        if NetNs::skip_unless_available("the_link_carries_tcp_and_can_be_cut_and_healed") {
            return;
        }
        let ns = NetNs::create().unwrap();
        let listener = ns
            .enter(|| std::net::TcpListener::bind((ns.ns_ip(), 0)))
            .unwrap()
            .unwrap();
        let addr = listener.local_addr().unwrap();
        // An echo server inside (its socket is; the thread need not be).
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 64];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        });
        let connect = |timeout| {
            ns.enter_outer(|| std::net::TcpStream::connect_timeout(&addr, timeout))
                .unwrap()
        };
        let mut stream = connect(Duration::from_secs(3)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut back = [0u8; 2];
        stream.write_all(b"hi").unwrap();
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hi");

        ns.disconnect().unwrap();
        stream.write_all(b"yo").unwrap();
        assert!(stream.read_exact(&mut back).is_err(), "nothing while cut");
        // A new connection hangs: its handshake goes nowhere.
        assert!(connect(Duration::from_millis(200)).is_err());

        ns.reconnect().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let healed = Instant::now();
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"yo", "TCP delivered what was sent into the cut");
        assert!(healed.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn pairs_of_namespaces_coexist_with_the_same_addresses() {
        if NetNs::skip_unless_available("pairs_of_namespaces_coexist_with_the_same_addresses") {
            return;
        }
        let a = NetNs::create().unwrap();
        let b = NetNs::create().unwrap();
        assert_eq!(a.ns_ip(), b.ns_ip());
        assert_ne!(a.path(), b.path());
        // Each pair's link is its own: a listener in one is not reachable from the other.
        let listener = a
            .enter(|| std::net::TcpListener::bind((a.ns_ip(), 0)))
            .unwrap()
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let from_b = b
            .enter_outer(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)))
            .unwrap();
        assert!(from_b.is_err(), "b reached a's listener");
        let from_a = a
            .enter_outer(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
            .unwrap();
        assert!(from_a.is_ok());
        assert_eq!(a.enter(|| 42).unwrap(), 42);
    }
}
