//! The real `shoal` binary, driven as a user would: `redis-cli` and `redis-benchmark` against
//! it, configuration from file, environment and flags, and stopping with SIGTERM.
//!
//! `redis-cli` and `redis-benchmark` come with Debian's `redis-tools`; without them the tests
//! that need them say they are skipped, or fail when `SHOAL_REQUIRE_REDIS=1` (as in CI).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A `shoal server` child process; killed when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        let port = free_port();
        let mut command = shoal();
        command
            .args(["server", "--port", &port.to_string(), "--http-port", "0"])
            .args(["--threads", "1", "--log-level", "warn"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("shoal starts");
        let mut node = Node { child, port };
        let started = Instant::now();
        while TcpStream::connect(node.addr()).is_err() {
            if let Some(status) = node.child.try_wait().unwrap() {
                panic!("shoal exited before listening: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "shoal did not listen on {} within 10 s",
                node.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Runs `redis-cli -p PORT args...` and returns its standard output.
    fn cli(&self, args: &[&str]) -> String {
        let output = tool("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `redis-cli -p PORT args...` with `input` on its standard input.
    fn cli_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = tool("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        wait_output(child, Duration::from_secs(20), "redis-cli")
    }

    /// Waits for the process to exit by itself.
    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "shoal still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `shoal` command with no `SHOAL_*` variables inherited from the test's environment.
fn shoal() -> Command {
    let mut command = Command::new(SHOAL);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SHOAL_") {
            command.env_remove(name);
        }
    }
    command.env_remove("RUST_LOG");
    command
}

/// Whether the Redis tools `names` are installed. If not, the calling test is skipped with a
/// notice, unless `SHOAL_REQUIRE_REDIS=1` makes that a failure.
fn have_tools(test: &str, names: &[&str]) -> bool {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(name).is_file()))
            .unwrap_or(false)
    };
    let missing: Vec<&str> = names.iter().copied().filter(|n| !on_path(n)).collect();
    if missing.is_empty() {
        return true;
    }
    let help = format!("{missing:?} not on PATH: install them with `apt-get install redis-tools`");
    assert!(
        std::env::var("SHOAL_REQUIRE_REDIS").as_deref() != Ok("1"),
        "{help}"
    );
    eprintln!("{test}: SKIPPED: {help}");
    false
}

/// A command for one of the Redis tools (checked with [`have_tools`] first).
fn tool(name: &str) -> Command {
    Command::new(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Collects a child's output, failing if it runs longer than `within`.
fn wait_output(mut child: Child, within: Duration, what: &str) -> Output {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > within {
            let _ = child.kill();
            panic!("{what} ran longer than {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn redis_cli_sets_gets_and_reads_ttls() {
    if !have_tools("redis_cli_sets_gets_and_reads_ttls", &["redis-cli"]) {
        return;
    }
    let node = Node::start(&[]);
    assert_eq!(node.cli(&["set", "greeting", "hello", "EX", "60"]), "OK\n");
    assert_eq!(node.cli(&["get", "greeting"]), "hello\n");
    let ttl: i64 = node.cli(&["ttl", "greeting"]).trim().parse().unwrap();
    assert!((59..=60).contains(&ttl), "ttl {ttl}");
    assert_eq!(node.cli(&["get", "nothing"]), "\n");
    assert_eq!(node.cli(&["incrby", "n", "5"]), "5\n");
    assert_eq!(node.cli(&["mget", "greeting", "n"]), "hello\n5\n");
    assert_eq!(
        node.cli(&["set", "x", "y", "BOGUS"]),
        "ERR syntax error\n\n",
        "errors are printed (with an empty line after, as redis-cli does with Redis)"
    );
    // A value with spaces and newlines, from an argument and through -x (stdin).
    assert_eq!(
        node.cli(&["set", "spaced", "two words\nand a line"]),
        "OK\n"
    );
    assert_eq!(node.cli(&["get", "spaced"]), "two words\nand a line\n");
    let out = node.cli_stdin(&["-x", "set", "from-stdin"], b"piped \x00 bytes");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    assert_eq!(node.cli(&["strlen", "from-stdin"]), "13\n");
}

#[test]
fn redis_cli_takes_commands_piped_on_stdin() {
    if !have_tools("redis_cli_takes_commands_piped_on_stdin", &["redis-cli"]) {
        return;
    }
    let node = Node::start(&[]);
    // Interactive-style: one command per line, as typed.
    let out = node.cli_stdin(
        &[],
        b"set a 1\nincr a\nget a\nset \"quoted key\" \"with \\\"escapes\\\"\"\nget \"quoted key\"\nping\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "OK\n2\n2\nOK\nwith \"escapes\"\nPONG\n"
    );
    // Raw protocol, inline commands and multibulk mixed, through --pipe.
    let mut input = b"SET inline:1 one\r\nSET inline:2 \"two words\"\r\n".to_vec();
    input.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$6\r\nbulk:1\r\n$5\r\nthree\r\n");
    input.extend_from_slice(b"INCR counter\r\n");
    let out = node.cli_stdin(&["--pipe"], &input);
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("errors: 0, replies: 4"), "{report}");
    assert_eq!(node.cli(&["get", "inline:2"]), "two words\n");
    assert_eq!(
        node.cli(&["mget", "inline:1", "bulk:1", "counter"]),
        "one\nthree\n1\n"
    );
}

#[test]
fn redis_benchmark_runs_get_and_set() {
    if !have_tools("redis_benchmark_runs_get_and_set", &["redis-benchmark"]) {
        return;
    }
    let node = Node::start(&[]);
    let child = tool("redis-benchmark")
        .args(["-p", &node.port.to_string()])
        .args(["-t", "get,set", "-n", "10000", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_output(child, Duration::from_secs(60), "redis-benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "redis-benchmark failed: {out:?}");
    // -q prints progress with carriage returns; the final line of each test ends with "\n".
    let lines: Vec<&str> = stdout
        .split(['\n', '\r'])
        .filter(|l| l.contains("requests per second"))
        .collect();
    for name in ["SET", "GET"] {
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{name}: "))),
            "no {name} result in:\n{stdout}"
        );
    }
    assert_eq!(
        node.cli(&["dbsize"]),
        "1\n",
        "redis-benchmark uses key:__rand_int__"
    );
}

/// Writes a TOML file that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("shoal-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `shoal server --print-config` with `args` and `env`: the printed TOML as key -> value.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let out = shoal()
        .args(["server", "--print-config"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "--print-config {args:?} {env:?}: {out:?}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Runs `shoal server` expecting it to refuse; returns its standard error.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = shoal()
        .args(["server", "--print-config"])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{args:?} {env:?} should be refused: {out:?}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing printed on stdout when refused"
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn configuration_file_then_environment_then_flags() {
    let file = TempFile::new(
        "precedence.toml",
        "port = 7001\nmaxmemory = \"100mb\"\nmaxclients = 50\ntimeout = 5\nmaxmemory-policy = \"volatile-ttl\"\n",
    );
    let path = file.path().to_str().unwrap();

    let from_file = print_config(&["--config", path], &[]);
    assert_eq!(from_file["port"], "7001");
    assert_eq!(from_file["maxmemory"], (100u64 << 20).to_string(), "100mb");
    assert_eq!(from_file["maxclients"], "50");
    assert_eq!(from_file["maxmemory-policy"], "volatile-ttl");
    assert_eq!(from_file["hz"], "10", "unset keys keep their defaults");

    let env = [
        ("SHOAL_PORT", "7002"),
        ("SHOAL_MAXCLIENTS", "60"),
        ("SHOAL_MAXMEMORY", "1gb"),
    ];
    let with_env = print_config(&["--config", path], &env);
    assert_eq!(with_env["port"], "7002", "environment over file");
    assert_eq!(with_env["maxclients"], "60");
    assert_eq!(with_env["maxmemory"], (1u64 << 30).to_string());
    assert_eq!(
        with_env["timeout"], "5",
        "the file still counts where env is silent"
    );

    let with_flags = print_config(
        &["--config", path, "--port", "7003", "--maxmemory", "2mb"],
        &env,
    );
    assert_eq!(with_flags["port"], "7003", "flags over environment");
    assert_eq!(with_flags["maxmemory"], (2u64 << 20).to_string());
    assert_eq!(
        with_flags["maxclients"], "60",
        "environment where flags are silent"
    );
    assert_eq!(with_flags["maxmemory-policy"], "volatile-ttl");

    // The config file itself can come from the environment.
    let via_env = print_config(&[], &[("SHOAL_CONFIG", path)]);
    assert_eq!(via_env["port"], "7001");

    // What --print-config prints is a valid configuration file.
    let printed = shoal()
        .args([
            "server",
            "--print-config",
            "--config",
            path,
            "--maxclients",
            "77",
        ])
        .output()
        .unwrap();
    let round_trip = TempFile::new(
        "round-trip.toml",
        &String::from_utf8(printed.stdout).unwrap(),
    );
    let again = print_config(&["--config", round_trip.path().to_str().unwrap()], &[]);
    assert_eq!(again["maxclients"], "77");
    assert_eq!(again["maxmemory"], (100u64 << 20).to_string());
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let err = refused(&["--maxmemory", "lots"], &[]);
    assert!(err.contains("'lots' is not a size"), "{err}");
    let err = refused(&[], &[("SHOAL_MAXMEMORY", "12parsecs")]);
    assert!(err.contains("'12parsecs' is not a size"), "{err}");
    let err = refused(&["--maxmemory-policy", "sometimes"], &[]);
    assert!(err.contains("sometimes"), "{err}");
    let err = refused(&["--port", "70000"], &[]);
    assert!(err.contains("70000"), "{err}");
    let err = refused(&["--maxclients", "0"], &[]);
    assert!(err.contains("maxclients"), "{err}");
    let err = refused(&["--client-output-buffer-limit", "1 2"], &[]);
    assert!(err.contains("client-output-buffer-limit"), "{err}");
    let err = refused(&["--config", "/nonexistent/shoal.toml"], &[]);
    assert!(err.contains("/nonexistent/shoal.toml"), "{err}");
    let unknown = TempFile::new("unknown.toml", "prot = 6379\n");
    let err = refused(&["--config", unknown.path().to_str().unwrap()], &[]);
    assert!(err.contains("prot"), "names the unknown key: {err}");
    let out_of_range = TempFile::new("range.toml", "hz = 0\n");
    let err = refused(&["--config", out_of_range.path().to_str().unwrap()], &[]);
    assert!(err.contains("hz"), "{err}");
    let bad_size = TempFile::new("size.toml", "maxmemory = \"big\"\n");
    let err = refused(&["--config", bad_size.path().to_str().unwrap()], &[]);
    assert!(err.contains("'big' is not a size"), "{err}");
}

#[test]
fn sigterm_stops_the_node_cleanly() {
    let mut node = Node::start(&[]);
    let mut client = TcpStream::connect(node.addr()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(b"PING\r\n").unwrap();
    let mut reply = [0u8; 7];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+PONG\r\n");
    let status = Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = node.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        TcpStream::connect(node.addr()).is_err(),
        "a stopped node still accepts connections"
    );
    let mut rest = Vec::new();
    let ended = client.read_to_end(&mut rest);
    assert!(
        matches!(ended, Ok(0)) || ended.is_err(),
        "the open connection must end: {ended:?} {rest:?}"
    );
}
