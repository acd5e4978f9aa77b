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

use shoal_testkit::tools::have_tools;

const SHOAL: &str = env!("CARGO_BIN_EXE_shoal");

/// A `shoal server` child process; killed when dropped.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(extra: &[&str]) -> Node {
        Node::start_on(free_port(), &[&["--http-port", "0"], extra].concat())
    }

    /// A node on `port`, with `args` (which must include `--http-port`) and the test kit's
    /// cluster secret.
    fn start_on(port: u16, args: &[&str]) -> Node {
        let mut command = shoal();
        command
            .env("SHOAL_CLUSTER_SECRET_FILE", secret_file())
            .args(["server", "--port", &port.to_string()])
            .args(["--threads", "1", "--log-level", "warn"])
            .args(args)
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

/// The test kit's cluster secret file (nodes started here use it).
fn secret_file() -> &'static str {
    shoal_testkit::cluster_secret_file()
        .to_str()
        .expect("a UTF-8 temp path")
}

/// A command for one of the Redis tools (checked with `have_tools` first).
fn tool(name: &str) -> Command {
    Command::new(name)
}

/// A free loopback port (see [`shoal_testkit::free_port`]).
fn free_port() -> u16 {
    shoal_testkit::free_port().expect("a free port")
}

/// Collects a child's output, failing if it runs longer than `within`.
fn wait_output(child: Child, within: Duration, what: &str) -> Output {
    shoal_testkit::output_within(child, within, what).unwrap_or_else(|e| panic!("{e}"))
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

/// A first RESP port for `nodes` cluster nodes whose RESP ports, bus ports (RESP + 10000)
/// and HTTP ports (RESP + 1000) are all free and handed out to no one else (see
/// [`shoal_testkit::ports::free_base`]).
fn cluster_base_port(nodes: u16) -> u16 {
    shoal_testkit::ports::free_base(nodes, &[0, 1000, 10_000]).expect("free cluster ports")
}

/// Runs `shoal args...` with `env` to its end (at most `within`).
fn run_shoal(args: &[&str], env: &[(&str, &str)], within: Duration) -> Output {
    let child = shoal()
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child, within, &format!("shoal {args:?}"))
}

/// Runs `shoal args...`, expecting it to fail within `within`: its stdout and stderr.
fn failing(args: &[&str], env: &[(&str, &str)], within: Duration) -> (String, String) {
    let out = run_shoal(args, env, within);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "shoal {args:?} should fail:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// `GET path` on the HTTP port `port`: the status code and the body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Sends one RESP command on a new connection and returns the raw reply.
fn resp_command(port: u16, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&shoal_proto::request::encode(args))
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = stream.read(&mut reply).unwrap();
    String::from_utf8_lossy(&reply[..n]).into_owned()
}

/// Waits until the cluster node on `port` is in a cluster whose slots are all served.
fn wait_for_cluster(port: u16) {
    let started = Instant::now();
    while !resp_command(port, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the node on {port} formed no cluster within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn cluster_up_refuses_bad_node_settings_before_starting_anything() {
    let base = cluster_base_port(1).to_string();
    let up = [
        "cluster",
        "up",
        "--shards",
        "1",
        "--replicas",
        "0",
        "--base-port",
        &base,
    ];
    for (flag, value, says) in [
        ("--maxmemory", "1.5g", "'1.5g' is not a size"),
        ("--routing", "proxy", "unknown routing mode 'proxy'"),
        ("--node-timeout", "50", "cluster-node-timeout"),
    ] {
        let (stdout, stderr) = failing(
            &[&up[..], &[flag, value]].concat(),
            &[],
            Duration::from_secs(10),
        );
        assert!(stderr.contains(says), "{flag} {value}: {stderr}");
        assert!(
            !stdout.contains("starting"),
            "{flag} {value}: a node was started: {stdout}"
        );
    }
}

#[test]
fn cluster_up_shows_the_error_of_a_node_that_exits() {
    let base = cluster_base_port(1).to_string();
    let log_dir = std::env::temp_dir().join(format!("shoal-cli-up-exit-{}", std::process::id()));
    // The nodes inherit the environment: a configuration file that is not there stops them.
    let (_, stderr) = failing(
        &[
            "cluster",
            "up",
            "--shards",
            "1",
            "--replicas",
            "0",
            "--base-port",
            &base,
            "--log-dir",
            log_dir.to_str().unwrap(),
        ],
        &[("SHOAL_CONFIG", "/nonexistent/shoal-cli-test.toml")],
        Duration::from_secs(30),
    );
    let _ = std::fs::remove_dir_all(&log_dir);
    assert!(
        stderr.contains(&format!("the node on port {base} exited while starting")),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot read /nonexistent/shoal-cli-test.toml"),
        "the node's own error is shown: {stderr}"
    );
}

#[test]
fn cluster_up_names_taken_ports_and_starts_nothing() {
    let base = cluster_base_port(2);
    // A Shoal node already on the first RESP port, and another program on the second node's
    // cluster bus port.
    let _node = Node::start_on(base, &["--http-port", "0"]);
    let _program = TcpListener::bind(("127.0.0.1", base + 1 + 10_000)).unwrap();
    let (stdout, stderr) = failing(
        &[
            "cluster",
            "up",
            "--shards",
            "2",
            "--replicas",
            "0",
            "--base-port",
            &base.to_string(),
            "--http-base-port",
            "0",
        ],
        &[],
        Duration::from_secs(10),
    );
    assert!(!stdout.contains("founded"), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "port {base} (a node's RESP port) is in use: a Redis-protocol server answers there"
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "port {} (the cluster bus port of the node on {}: RESP + 10000) is in use",
            base + 1 + 10_000,
            base + 1
        )),
        "{stderr}"
    );
}

#[test]
fn a_node_names_the_port_it_cannot_listen_on_and_why() {
    // Another program holds the port each case asks for.
    let held = |port: u16| TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
    let taken = |port: u16, listener: &str, flags: &str| {
        format!(
            "cannot listen on the {listener} 127.0.0.1:{port}: address already in use (another \
             process holds it; pick another {flags})"
        )
    };
    let base = cluster_base_port(1);
    let (free, other) = (free_port().to_string(), free_port());
    let cases: [(u16, Vec<String>, String); 4] = [
        (
            base,
            vec![
                "--port".into(),
                base.to_string(),
                "--http-port".into(),
                "0".into(),
            ],
            taken(base, "RESP port", "--port"),
        ),
        (
            other,
            vec![
                "--port".into(),
                free.clone(),
                "--http-port".into(),
                other.to_string(),
            ],
            taken(other, "HTTP port", "--http-port, or 0 for no HTTP API"),
        ),
        // The cluster bus on its default port, RESP + 10000.
        (
            base + 10_000,
            vec![
                "--port".into(),
                base.to_string(),
                "--http-port".into(),
                "0".into(),
            ],
            taken(
                base + 10_000,
                "cluster bus port",
                "--port or --cluster-port",
            ),
        ),
        // ... and on the port given.
        (
            other,
            vec![
                "--port".into(),
                free.clone(),
                "--http-port".into(),
                "0".into(),
                "--cluster-port".into(),
                other.to_string(),
            ],
            taken(other, "cluster bus port", "--port or --cluster-port"),
        ),
    ];
    for (i, (port, args, expected)) in cases.into_iter().enumerate() {
        let _holder = held(port);
        let mut argv: Vec<&str> = vec!["server", "--threads", "1"];
        argv.extend(args.iter().map(String::as_str));
        if i >= 2 {
            argv.push("--cluster-enabled");
        }
        let (_, stderr) = failing(&argv, &[("RUST_BACKTRACE", "0")], Duration::from_secs(10));
        assert!(
            stderr.contains(&format!(
                "Error: cannot start the node\n\nCaused by:\n    {expected}\n"
            )),
            "case {i}: {stderr}"
        );
        assert_eq!(
            stderr.matches("in use").count(),
            1,
            "case {i}: the OS's words are said once: {stderr}"
        );
    }
}

/// A child process killed (and its nodes with it: `cluster up` sets their parent-death
/// signal) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn cluster_up_gives_every_node_its_password_and_status_asks_for_it() {
    let base = cluster_base_port(2);
    let log_dir = std::env::temp_dir().join(format!("shoal-cli-password-{base}"));
    let mut up = Killed(
        shoal()
            .args(["cluster", "up", "--shards", "1", "--replicas", "1"])
            .args(["--base-port", &base.to_string(), "--http-base-port", "0"])
            .args(["--log-dir", log_dir.to_str().unwrap()])
            .args(["--requirepass", "s3cret"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = up.0.stdout.take().unwrap();
    let (lines, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    // Up to the last line it prints once the cluster is ready.
    while !seen.iter().any(|l: &String| l.starts_with("stop:")) {
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no cluster within 30 s: {seen:?}"),
        }
    }
    let node = format!("127.0.0.1:{base}");
    // Every node requires it (the replica joined and follows its primary with it).
    for port in [base, base + 1] {
        assert_eq!(
            resp_command(port, &["GET", "k"]),
            "-NOAUTH Authentication required.\r\n"
        );
    }
    // One secret for the cluster, private, given to every node and shown with the commands.
    let secret = log_dir.canonicalize().unwrap().join("cluster-secret");
    let secret = secret.to_str().unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{secret}");
    assert!(
        seen.iter().any(|l| l.contains(&format!(
            "shoal cluster status --node {node} --cluster-secret-file {secret}"
        ))),
        "{seen:?}"
    );
    let (_, stderr) = failing(
        &["cluster", "status", "--node", &node],
        &[("SHOAL_CLUSTER_SECRET_FILE", secret)],
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains("NOAUTH") && stderr.contains("--password"),
        "{stderr}"
    );
    let out = run_shoal(
        &[
            "cluster",
            "status",
            "--node",
            &node,
            "--cluster-secret-file",
            secret,
        ],
        &[("SHOAL_PASSWORD", "s3cret")],
        Duration::from_secs(10),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("1 shards, 2 nodes (2 healthy)"), "{text}");
    // Another secret (the test kit's) gets nothing from the bus, and is told why.
    let (stdout, stderr) = failing(
        &[
            "cluster",
            "status",
            "--node",
            &node,
            "--cluster-secret-file",
            secret_file(),
        ],
        &[("SHOAL_PASSWORD", "s3cret")],
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains("refused this process's cluster secret"),
        "{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("shards"), "{stdout}");
    drop(up);
    let _ = std::fs::remove_dir_all(&log_dir);
}

#[test]
fn cluster_status_explains_an_http_port_and_a_bad_address() {
    let http_port = free_port();
    let _node = Node::start_on(free_port(), &["--http-port", &http_port.to_string()]);
    let addr = format!("127.0.0.1:{http_port}");
    let secret = [("SHOAL_CLUSTER_SECRET_FILE", secret_file())];
    let (_, stderr) = failing(
        &["cluster", "status", "--node", &addr],
        &secret,
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains(&format!("{addr} answered in HTTP, not the Redis protocol")),
        "{stderr}"
    );
    assert!(
        stderr.contains("RESP port"),
        "says which port to give: {stderr}"
    );
    let (_, stderr) = failing(
        &["cluster", "status", "--node", "localhost:http"],
        &secret,
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains("'localhost:http' is not host:port (e.g. 127.0.0.1:7000)"),
        "{stderr}"
    );
}

#[test]
fn remove_node_with_an_unknown_id_lists_the_cluster_s_ids() {
    let port = cluster_base_port(1);
    let _node = Node::start_on(port, &["--http-port", "0", "--cluster-enabled"]);
    wait_for_cluster(port);
    let myid = resp_command(port, &["CLUSTER", "MYID"]);
    let myid = myid.lines().nth(1).expect("a bulk reply").to_string();
    let (_, stderr) = failing(
        &[
            "cluster",
            "remove-node",
            "00000000000000aa",
            "--node",
            &format!("127.0.0.1:{port}"),
        ],
        &[("SHOAL_CLUSTER_SECRET_FILE", secret_file())],
        Duration::from_secs(20),
    );
    assert!(
        stderr.contains("node 00000000000000aa is not in the cluster; its nodes are: "),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{} (127.0.0.1:{port})", &myid[..16])),
        "lists the node's short id: {stderr}"
    );
}

/// Sends `commands` one after the other on one connection to `port`; the raw replies.
fn resp_session(port: u16, commands: &[&[&str]]) -> Vec<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    commands
        .iter()
        .map(|args| {
            stream
                .write_all(&shoal_proto::request::encode(args))
                .unwrap();
            let mut reply = vec![0u8; 4096];
            let n = stream.read(&mut reply).unwrap();
            String::from_utf8_lossy(&reply[..n]).into_owned()
        })
        .collect()
}

#[test]
fn cluster_myid_prints_the_id_cluster_myid_gives() {
    // A cluster node without a password: the same 40 digits as its CLUSTER MYID.
    let port = cluster_base_port(1);
    let _node = Node::start_on(port, &["--http-port", "0", "--cluster-enabled"]);
    wait_for_cluster(port);
    let myid = resp_command(port, &["CLUSTER", "MYID"]);
    let myid = myid.lines().nth(1).expect("a bulk reply").to_string();
    let out = run_shoal(
        &["cluster", "myid", "--node", &format!("127.0.0.1:{port}")],
        &[],
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{myid}\n"));

    // With a password: asked without it, the error says how to give it; with it, the id.
    let port = cluster_base_port(1);
    let mut secured = shoal();
    secured
        .env("SHOAL_CLUSTER_SECRET_FILE", secret_file())
        .env("SHOAL_REQUIREPASS", "s3cret")
        .args(["server", "--port", &port.to_string(), "--http-port", "0"])
        .args(["--threads", "1", "--log-level", "warn", "--cluster-enabled"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _secured = Killed(secured.spawn().unwrap());
    let node = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let myid = loop {
        let replies = if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            resp_session(port, &[&["AUTH", "s3cret"], &["CLUSTER", "MYID"]])
        } else {
            Vec::new()
        };
        if let Some(id) = replies
            .get(1)
            .and_then(|r| r.strip_prefix("$40\r\n"))
            .map(|r| r.trim_end().to_string())
        {
            break id;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no CLUSTER MYID from {node}: {replies:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (_, stderr) = failing(
        &["cluster", "myid", "--node", &node],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains("NOAUTH") && stderr.contains("--password"),
        "{stderr}"
    );
    let out = run_shoal(
        &["cluster", "myid", "--node", &node],
        &[("SHOAL_PASSWORD", "s3cret")],
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{myid}\n"));

    // A node outside any cluster has no id to give, and is named as such.
    let plain = Node::start(&[]);
    let (_, stderr) = failing(
        &["cluster", "myid", "--node", &plain.addr().to_string()],
        &[],
        Duration::from_secs(10),
    );
    assert!(stderr.contains("is not a cluster node"), "{stderr}");
}

#[test]
fn a_redis_conf_file_is_refused_with_its_toml_form() {
    let file = TempFile::new("redis.conf", "# a redis.conf\nmaxmemory 100mb\nport 7000\n");
    let err = refused(&["--config", file.path().to_str().unwrap()], &[]);
    assert!(
        err.contains("the file must be TOML, not redis.conf: write `maxmemory = \"100mb\"` instead of `maxmemory 100mb`"),
        "{err}"
    );
    let err = refused(&["--cluster-join", "localhost"], &[]);
    assert!(
        err.contains("cluster-join") && err.contains("host:port"),
        "{err}"
    );
}

/// `shoal <command> --help`: each heading with the long names of its options, in order.
fn help_sections(command: &str) -> Vec<(String, Vec<String>)> {
    let out = shoal().args([command, "--help"]).output().unwrap();
    assert!(out.status.success());
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        if let Some(heading) = line.strip_suffix(':').filter(|_| !line.starts_with(' ')) {
            sections.push((heading.to_string(), Vec::new()));
        } else if let Some(option) = line.trim_start().strip_prefix("--")
            && let Some((_, options)) = sections.last_mut()
        {
            options.push(option.split([' ', ',']).next().unwrap().to_string());
        }
    }
    sections
}

#[test]
fn server_and_proxy_help_group_and_order_options_alike() {
    let server = help_sections("server");
    let proxy = help_sections("proxy");
    let headings = |sections: &[(String, Vec<String>)]| -> Vec<String> {
        sections.iter().map(|(h, _)| h.clone()).collect()
    };
    for expected in ["Listening", "Cluster", "Limits", "Security", "Logging"] {
        assert!(
            headings(&proxy).contains(&expected.to_string()),
            "{proxy:?}"
        );
        assert!(
            headings(&server).contains(&expected.to_string()),
            "{server:?}"
        );
    }
    // The proxy's headings come in the server's order.
    let in_server: Vec<String> = headings(&server)
        .into_iter()
        .filter(|h| headings(&proxy).contains(h))
        .collect();
    assert_eq!(in_server, headings(&proxy));
    // An option both have is under the same heading, and in the same order within it.
    for (heading, options) in &proxy {
        let (_, server_options) = server.iter().find(|(h, _)| h == heading).unwrap();
        let shared: Vec<&String> = server_options
            .iter()
            .filter(|o| options.contains(o))
            .collect();
        let proxy_shared: Vec<&String> = options
            .iter()
            .filter(|o| server_options.contains(o))
            .collect();
        assert_eq!(shared, proxy_shared, "under {heading}");
    }
    for option in ["bind", "port", "http-port", "threads"] {
        assert!(
            proxy[0..]
                .iter()
                .any(|(h, o)| h == "Listening" && o.contains(&option.to_string())),
            "--{option} under Listening: {proxy:?}"
        );
    }
}

#[test]
fn a_node_s_log_file_is_plain_text_without_raft_internals() {
    let port = cluster_base_port(1);
    let log = TempFile::new("node.log", "");
    let mut child = shoal()
        .env("SHOAL_CLUSTER_SECRET_FILE", secret_file())
        .args(["server", "--port", &port.to_string(), "--http-port", "0"])
        .args(["--threads", "1", "--cluster-enabled", "--log-level", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log.path()).unwrap())
        .spawn()
        .unwrap();
    // Founding the cluster runs the Raft group through its start and first election.
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for_cluster(port);
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(text.contains("shoal node ready"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour codes in a log file: {text:?}"
    );
    assert!(
        !text.contains("openraft"),
        "Raft's internals at the info level: {text}"
    );
}

#[test]
fn joining_where_nothing_listens_fails_after_the_join_timeout_and_health_says_so() {
    let port = cluster_base_port(1);
    let http_port = port + 1000;
    let nowhere = format!("127.0.0.1:{}", free_port());
    let started = Instant::now();
    let child = shoal()
        .env("SHOAL_CLUSTER_SECRET_FILE", secret_file())
        .args(["server", "--port", &port.to_string()])
        .args(["--http-port", &http_port.to_string(), "--threads", "1"])
        .args(["--cluster-join", &nowhere, "--join-timeout", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = loop {
        if let Some(answer) = http_get(http_port, "/health") {
            break answer;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "no HTTP listener"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(health.0, 503, "health while joining: {health:?}");
    assert!(health.1.contains("\"unavailable\""), "{health:?}");
    let out = wait_output(child, Duration::from_secs(20), "shoal server");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status: {}", out.status);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "gave up after {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!(
            "could not join the cluster through {nowhere} within 2 s"
        )),
        "{stderr}"
    );
}

/// `shoal server args...` under an open-files limit of `limit` (`ulimit -n`).
fn shoal_with_open_files(limit: u64, args: &[&str]) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = shoal();
    command.args(["server", "--threads", "1"]).args(args);
    // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limits = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limits) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

#[test]
fn maxclients_is_fitted_to_the_open_files_limit_as_redis_does() {
    let mut limits = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limits) } == 0;
    if !read || limits.rlim_max < 1200 {
        // The child cannot be given 1,200 open files if this process may not have them.
        eprintln!("skipped: the hard open-files limit is below 1200");
        return;
    }
    // 1,200 open files: RESP clients get what HTTP clients (1,024) and the node's own 128
    // leave, and the node says so.
    let port = free_port();
    let http_port = free_port().to_string();
    let child = shoal_with_open_files(
        1200,
        &["--port", &port.to_string(), "--http-port", &http_port],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("shoal starts");
    let mut node = Node { child, port };
    let started = Instant::now();
    while TcpStream::connect(node.addr()).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        resp_command(port, &["CONFIG", "GET", "maxclients"]),
        "*2\r\n$10\r\nmaxclients\r\n$2\r\n48\r\n"
    );
    let _ = node.child.kill();
    let mut log = String::new();
    node.child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(
        log.contains("maxclients is reduced to 48") && log.contains("ulimit -n"),
        "{log}"
    );

    // 500 open files cannot hold the HTTP clients: the node refuses to start and says why.
    let out = wait_output(
        shoal_with_open_files(
            500,
            &[
                "--port",
                &free_port().to_string(),
                "--http-port",
                &http_port,
            ],
        )
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
        Duration::from_secs(10),
        "shoal under 500 open files",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("open-files limit (500") && stderr.contains("--http-maxclients"),
        "{stderr}"
    );
}

#[test]
fn a_founder_without_a_secret_writes_one_and_a_joiner_without_one_does_not_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let work = std::env::temp_dir().join(format!("shoal-cli-secret-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let port = cluster_base_port(1);
    let log = std::fs::File::create(work.join("founder.log")).unwrap();
    let founder = shoal()
        .current_dir(&work)
        .args(["server", "--port", &port.to_string(), "--http-port", "0"])
        .args(["--threads", "1", "--cluster-enabled"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _founder = Killed(founder);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_for_cluster(port);
    // Written in the working directory, private, and the log says where.
    let written = work.join("shoal-cluster-secret");
    let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = std::fs::read_to_string(&written).unwrap();
    assert_eq!(text.trim().len(), 64, "{text}");
    assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()), "{text}");
    let log = std::fs::read_to_string(work.join("founder.log")).unwrap();
    assert!(
        log.contains("wrote a new cluster secret to") && log.contains(&work.display().to_string()),
        "{log}"
    );
    // A node that joins without it does not start, and says what it needs.
    let joiner = free_port();
    let (_, stderr) = failing(
        &[
            "server",
            "--port",
            &joiner.to_string(),
            "--http-port",
            "0",
            "--cluster-join",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains("the cluster needs its secret: --cluster-secret-file"),
        "{stderr}"
    );
    // With it, it joins.
    let _joiner = Node::start_on(
        joiner,
        &[
            "--http-port",
            "0",
            "--cluster-join",
            &format!("127.0.0.1:{port}"),
            "--cluster-secret-file",
            written.to_str().unwrap(),
        ],
    );
    let started = Instant::now();
    while !resp_command(port, &["CLUSTER", "INFO"]).contains("cluster_known_nodes:2") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the joiner never joined"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A file others may read is refused, naming it and its mode.
    std::fs::set_permissions(&written, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, stderr) = failing(
        &[
            "server",
            "--port",
            &free_port().to_string(),
            "--http-port",
            "0",
            "--cluster-enabled",
            "--cluster-secret-file",
            written.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(10),
    );
    assert!(
        stderr.contains(&format!(
            "{} is accessible by group or others (mode 0644)",
            written.display()
        )),
        "{stderr}"
    );
    drop(_joiner);
    drop(_founder);
    let _ = std::fs::remove_dir_all(&work);
}
