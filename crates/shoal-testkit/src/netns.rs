//! Network namespaces of our own (Linux, root only, optional): a process inside one has its own
//! loopback and one veth link to the test's namespace, which can be cut like a cable.
//!
//! [`NetNs::create`] makes an anonymous namespace (held by a file descriptor, never mounted)
//! and a veth pair: `10.200.a.(b+1)` on the test's side, `10.200.a.(b+2)` inside, a `/30`
//! chosen so that it overlaps no route the host already has. The namespace lives exactly as
//! long as the [`NetNs`]: when it is dropped, or when the test process dies however it dies,
//! the kernel destroys the namespace and both ends of the veth with it, so nothing is left
//! behind on the machine.
//!
//! * [`NetNs::wrap`] turns a [`ProcessSpec`] into one that runs inside (through `nsenter`,
//!   which execs the program: its pid, signals and `kill -9` are the program's own).
//! * [`NetNs::enter`] runs a closure on a thread inside, to bind or connect sockets there
//!   (a socket stays in the namespace it was made in).
//! * [`NetNs::disconnect`] / [`NetNs::reconnect`] take the link down and up again from
//!   inside: a real partition, where packets vanish, connects hang and TCP retransmits what
//!   was sent once the link is back. (Only the inside end goes down: the test's end keeps its
//!   route, so packets for the namespace never fall through to the host's default route.)
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
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};
use crate::process::ProcessSpec;

/// The block all namespaces' addresses come from: `10.200.0.0/16`.
pub const SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 200, 0, 0), 16);

/// A network namespace with a veth link to the test's namespace (see the module's doc).
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    host_if: String,
    ns_if: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
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

    /// Whether `test` can use namespaces; if not, prints that it is skipped and why.
    pub fn skip_unless_available(test: &str) -> bool {
        if NetNs::available() {
            return false;
        }
        eprintln!(
            "{test}: SKIPPED: network namespaces need root, `ip` (iproute2) and `nsenter` \
             (util-linux)"
        );
        true
    }

    /// Makes a namespace with its loopback up and a veth link to the test's namespace.
    pub fn create() -> Result<NetNs> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let fd = new_namespace()?;
        let pid = std::process::id();
        let host_if = format!("tk{pid:x}h{n}");
        let ns_if = format!("tk{pid:x}n{n}");
        let routes = command_output(Command::new("ip").args(["-4", "-o", "route", "show"]))?;
        let taken: Vec<(Ipv4Addr, u8)> = routes.lines().filter_map(parse_route).collect();
        let (host_ip, ns_ip) = pick_block(&taken, pid.wrapping_mul(97).wrapping_add(n * 13))
            .ok_or_else(|| Error::Usage("no free /30 left in 10.200.0.0/16".into()))?;
        // From here on, dropping `ns` (on an error too) removes what was made.
        let ns = NetNs {
            fd,
            host_if,
            ns_if,
            host_ip,
            ns_ip,
        };
        let path = ns.path();
        run(Command::new("ip").args([
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
            "netns",
            &path,
        ]))?;
        run(Command::new("ip").args([
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &ns.host_if,
        ]))?;
        run(Command::new("ip").args(["link", "set", &ns.host_if, "up"]))?;
        run(ns.command("ip").args(["link", "set", "lo", "up"]))?;
        run(ns
            .command("ip")
            .args(["addr", "add", &format!("{ns_ip}/30"), "dev", &ns.ns_if]))?;
        run(ns.command("ip").args(["link", "set", &ns.ns_if, "up"]))?;
        Ok(ns)
    }

    /// The address of the namespace's end of the link: what the test connects to.
    pub fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }

    /// The address of the test's end of the link: what processes inside connect to.
    pub fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The test's end of the link (an interface of the test's namespace).
    pub fn host_if(&self) -> &str {
        &self.host_if
    }

    /// The namespace's end of the link.
    pub fn ns_if(&self) -> &str {
        &self.ns_if
    }

    /// A path naming the namespace, for `nsenter --net=` or `ip ... netns`, valid while it
    /// lives.
    pub fn path(&self) -> String {
        format!("/proc/{}/fd/{}", std::process::id(), self.fd.as_raw_fd())
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program);
        command
    }

    /// `spec`, run inside the namespace (same name, log and environment).
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

    /// Runs `f` on a thread inside the namespace and returns what it returns: sockets it makes
    /// (`TcpListener::bind`, `TcpStream::connect`) belong to the namespace.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let fd = self.fd.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns on a namespace descriptor we hold open; it only changes
                    // this short-lived thread's network namespace.
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

    /// Takes the link down: nothing passes between the namespace and the test's namespace
    /// until [`NetNs::reconnect`]; connections stay open.
    pub fn disconnect(&self) -> Result<()> {
        run(self
            .command("ip")
            .args(["link", "set", &self.ns_if, "down"]))
    }

    /// Brings the link back up after [`NetNs::disconnect`].
    pub fn reconnect(&self) -> Result<()> {
        run(self.command("ip").args(["link", "set", &self.ns_if, "up"]))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Closing the descriptor lets the kernel destroy the namespace and the pair, but in the
        // background; deleting the pair now makes its addresses free at once.
        let _ = run(Command::new("ip").args(["link", "del", &self.host_if]));
    }
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

/// The destination of a line of `ip -4 -o route show` (`None` for the default route).
fn parse_route(line: &str) -> Option<(Ipv4Addr, u8)> {
    let mut fields = line.split_whitespace();
    let mut dest = fields.next()?;
    // Route types come first when present: `unreachable 10.0.0.0/8`, `blackhole ...`.
    if [
        "unicast",
        "local",
        "broadcast",
        "unreachable",
        "blackhole",
        "prohibit",
        "throw",
    ]
    .contains(&dest)
    {
        dest = fields.next()?;
    }
    if dest == "default" {
        return None;
    }
    match dest.split_once('/') {
        Some((ip, len)) => Some((ip.parse().ok()?, len.parse().ok().filter(|&l| l <= 32)?)),
        None => Some((dest.parse().ok()?, 32)),
    }
}

/// Whether two prefixes share an address.
fn overlaps((a, a_len): (Ipv4Addr, u8), (b, b_len): (Ipv4Addr, u8)) -> bool {
    let len = a_len.min(b_len);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(b) & mask
}

/// The two usable addresses of a `/30` in [`SUBNET`] that overlaps none of `taken`, trying
/// from block `start` on.
fn pick_block(taken: &[(Ipv4Addr, u8)], start: u32) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let blocks = 1u32 << (30 - SUBNET.1);
    let base = u32::from(SUBNET.0);
    (0..blocks).find_map(|i| {
        let block = base + ((start.wrapping_add(i)) % blocks) * 4;
        let prefix = (Ipv4Addr::from(block), 30);
        (!taken.iter().any(|&t| overlaps(t, prefix)))
            .then(|| (Ipv4Addr::from(block + 1), Ipv4Addr::from(block + 2)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Process;
    use crate::testdir::TestDir;
    use std::io::{Read as _, Write as _};
    use std::time::{Duration, Instant};

    #[test]
    fn routes_are_parsed() {
        assert_eq!(parse_route("default via 192.0.2.1 dev eth0"), None);
        assert_eq!(
            parse_route("192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2"),
            Some((Ipv4Addr::new(192, 0, 2, 0), 24))
        );
        assert_eq!(
            parse_route("unreachable 10.0.0.0/8"),
            Some((Ipv4Addr::new(10, 0, 0, 0), 8))
        );
        assert_eq!(
            parse_route("10.1.2.3 dev x"),
            Some((Ipv4Addr::new(10, 1, 2, 3), 32))
        );
        assert_eq!(parse_route("nonsense/99 dev x"), None);
        assert_eq!(parse_route(""), None);
    }

    #[test]
    fn blocks_avoid_every_route() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(overlaps((ip("10.0.0.0"), 8), (ip("10.200.3.4"), 30)));
        assert!(!overlaps((ip("10.201.0.0"), 16), (ip("10.200.3.4"), 30)));
        assert!(overlaps((ip("0.0.0.0"), 0), (ip("10.200.3.4"), 30)));
        assert_eq!(
            pick_block(&[], 0),
            Some((ip("10.200.0.1"), ip("10.200.0.2")))
        );
        assert_eq!(
            pick_block(&[(ip("10.200.0.0"), 30)], 0),
            Some((ip("10.200.0.5"), ip("10.200.0.6")))
        );
        let last = (1 << 14) - 1;
        assert_eq!(
            pick_block(&[], last),
            Some((ip("10.200.255.253"), ip("10.200.255.254")))
        );
        assert_eq!(pick_block(&[(ip("10.0.0.0"), 8)], 5), None);
    }

    #[test]
    fn a_wrapped_spec_runs_through_nsenter() {
        let spec = ProcessSpec {
            name: "n".into(),
            binary: "/bin/shoal".into(),
            args: vec!["server".into()],
            env: vec![],
            log: "/tmp/x.log".into(),
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
            log.contains("127.0.0.1") && !log.contains(&ns.host_ip().to_string()),
            "{log}"
        );
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
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).unwrap();
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
        let probe = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200));
        assert!(probe.is_err());

        ns.reconnect().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let healed = Instant::now();
        stream.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"yo", "TCP delivered what was sent into the cut");
        assert!(healed.elapsed() < Duration::from_secs(5));

        let host_if = ns.host_if().to_string();
        drop(ns);
        let left = Command::new("ip")
            .args(["link", "show", &host_if])
            .output()
            .unwrap();
        assert!(
            !left.status.success(),
            "{host_if} is gone with its namespace"
        );
    }

    #[test]
    fn namespaces_get_distinct_blocks() {
        if NetNs::skip_unless_available("namespaces_get_distinct_blocks") {
            return;
        }
        let a = NetNs::create().unwrap();
        let b = NetNs::create().unwrap();
        assert_ne!(a.ns_ip(), b.ns_ip());
        assert_ne!(a.host_if(), b.host_if());
        assert!(a.host_if().len() <= 15 && a.ns_if().len() <= 15);
        let inside = a.enter(|| 42).unwrap();
        assert_eq!(inside, 42);
    }
}
