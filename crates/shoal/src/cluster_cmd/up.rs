//! `shoal cluster up`: checks its settings and ports, starts the nodes (the first founds the
//! cluster, the others join it), waits until the cluster is ready, and watches over it until
//! Ctrl-C.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use shoal_cluster::bus::ClusterStatus;
use shoal_cluster::decide::desired_voters;
use shoal_cluster::{BusCredentials, BusSecret, Health, SLOTS};
use shoal_server::Config;

use shoal_cluster::BUS_PORT_OFFSET;

use super::ports;
use super::status::describe;
use super::{UpArgs, leader_status};

/// How many of a node's last log lines an error shows.
const LOG_TAIL: usize = 8;

/// `shoal cluster up`.
pub(super) async fn up(args: UpArgs) -> anyhow::Result<()> {
    if args.shards == 0 {
        bail!("--shards must be at least 1");
    }
    let count = args.shards * (1 + args.replicas as usize);
    let http_base = args
        .http_base_port
        .unwrap_or(args.base_port.saturating_add(1000));
    // Everything a node would refuse, refused before any starts.
    let ports = ports::plan(args.base_port, count, http_base)?;
    let tls_flags = tls_flags(&args).context("nothing was started")?;
    node_config(&args, args.base_port, http_base)
        .validate()
        .context("nothing was started")?;
    ports::check_free(&ports)?;
    let last_port = args.base_port as usize + count - 1;
    let log_dir = match &args.log_dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("shoal-cluster-{}", args.base_port)),
    };
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    // Absolute: each node's command line names its directory, to be run again from anywhere.
    let log_dir = log_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", log_dir.display()))?;
    // One secret for the new cluster, given to every node (a file private to this user).
    let secret_path = log_dir.join(SECRET_FILE);
    if secret_path.exists() {
        std::fs::remove_file(&secret_path)
            .with_context(|| format!("cannot replace {}", secret_path.display()))?;
    }
    let credentials = args.tls.credentials(BusSecret::create(&secret_path)?)?;
    let exe = std::env::current_exe().context("cannot find the shoal binary")?;
    let founder = format!("127.0.0.1:{}", args.base_port);
    println!(
        "starting {count} nodes ({} shards x {} each) on ports {}-{} (cluster bus {}-{}), logs in {}",
        args.shards,
        1 + args.replicas as usize,
        args.base_port,
        last_port,
        args.base_port as usize + BUS_PORT_OFFSET as usize,
        last_port + BUS_PORT_OFFSET as usize,
        log_dir.display()
    );
    let mut fleet = Fleet {
        children: Vec::new(),
        log_dir: log_dir.clone(),
    };
    // A new cluster: what an earlier one left in these directories would bring it back.
    for i in 0..count {
        let dir = node_dir(&log_dir, args.base_port + i as u16);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
    }
    let command_lines: Vec<Vec<String>> = (0..count)
        .map(|i| {
            let mut line = node_command_line(&args, i, http_base, &founder, &log_dir, &secret_path);
            line.extend(tls_flags.iter().cloned());
            line
        })
        .collect();
    let spawn_node = |i: usize| -> anyhow::Result<(u16, Child)> {
        let port = args.base_port + i as u16;
        let log = std::fs::File::create(log_path(&log_dir, port))?;
        {
            use std::io::Write as _;
            writeln!(&log, "# {} {}", exe.display(), command_lines[i].join(" "))?;
        }
        let mut command = Command::new(&exe);
        command
            .args(&command_lines[i])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // In the environment, not on the command line, where `ps` would show it.
        match args.password() {
            Some(password) => command.env("SHOAL_REQUIREPASS", password),
            None => command.env_remove("SHOAL_REQUIREPASS"),
        };
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours;
        // it makes the child get SIGTERM if `cluster up` dies without cleaning up.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the node on port {port}"))?;
        Ok((port, child))
    };
    fleet.children.push(spawn_node(0)?);
    wait_for_founder(&founder, args.password(), &credentials, &mut fleet).await?;
    println!("  node {} founded the cluster", args.base_port);
    for i in 1..count {
        fleet.children.push(spawn_node(i)?);
    }
    let started = Instant::now();
    let mut reported = 1;
    let status = loop {
        if let Some(port) = fleet.exited() {
            bail!("{}", fleet.exit_report(port, "exited while joining"));
        }
        if let Ok(status) = leader_status(&founder, args.password(), &credentials).await {
            let members = status.map.nodes.len();
            if members > count {
                bail!(
                    "the cluster at {founder} has {members} nodes, more than the {count} started \
                     here: is another cluster using these ports?"
                );
            }
            if members > reported {
                println!("  {members}/{count} nodes in the cluster");
                reported = members;
            }
            if ready(&status, count, args.shards, args.controller_voters) {
                break status;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "the cluster was not ready after 60 s; see the logs in {}",
                log_dir.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "cluster ready in {:.1} s\n",
        started.elapsed().as_secs_f64()
    );
    print!("{}", describe(&status));
    println!();
    // How a command reaches the cluster's bus: the secret, and its TLS files (absolute).
    let access_flags = format!(
        "--cluster-secret-file {}{}",
        secret_path.display(),
        tls_flags
            .iter()
            .fold(String::new(), |line, flag| format!("{line} {flag}"))
    );
    if args.password().is_some() {
        println!("connect:    redis-cli -c -p {} --askpass", args.base_port);
        println!(
            "status:     shoal cluster status --node {founder} {access_flags} --password <the password>"
        );
    } else {
        println!("connect:    redis-cli -c -p {}", args.base_port);
        println!("status:     shoal cluster status --node {founder} {access_flags}");
    }
    println!(
        "secret:     {} (the cluster bus's; every node, proxy and client of the cluster needs it)",
        secret_path.display()
    );
    if args.tls.enabled() {
        // A proxy's --tls-cluster is TLS to the nodes' RESP ports too, which these have not.
        println!(
            "proxy:      the bus speaks TLS and the RESP ports do not: a proxy (whose \
             --tls-cluster yes speaks TLS to both) needs nodes with --tls-port and \
             --tls-replication yes too"
        );
    } else {
        println!("proxy:      shoal proxy --cluster {founder} {access_flags}");
    }
    if http_base != 0 {
        println!("HTTP API:   http://127.0.0.1:{http_base}/<key>");
        println!(
            "metrics:    http://127.0.0.1:{}/metrics .. http://127.0.0.1:{}/metrics",
            http_base,
            http_base as usize + count - 1
        );
    }
    println!(
        "node dirs:  {} (id, Raft state, last map; keys are not kept)",
        node_dir(&log_dir, args.base_port)
            .with_file_name("node-<port>")
            .display()
    );
    println!(
        "restart:    a node stopped or killed comes back as itself when started again with \
         its command line (the first line of its log), e.g.\n            {} {}",
        exe.display(),
        command_lines
            .last()
            .map(|l| l.join(" "))
            .unwrap_or_default()
    );
    println!("stop:       Ctrl-C");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = check.tick() => {
                // A node that dies is the cluster's to handle (its replica takes over); say so
                // and keep the others running.
                for port in fleet.reap() {
                    eprintln!(
                        "{}\nthe cluster goes on without it",
                        fleet.exit_report(port, "exited")
                    );
                }
                if fleet.children.is_empty() {
                    return Err(anyhow!("every node exited"));
                }
            }
        }
    }
    println!("stopping {} nodes", fleet.children.len());
    fleet.stop();
    Ok(())
}

/// The settings every node of `args` runs with (the first node's ports), for checking them
/// before anything starts.
fn node_config(args: &UpArgs, port: u16, http_port: u16) -> Config {
    let mut config = Config {
        port,
        http_port,
        threads: args.threads,
        cluster_enabled: true,
        cluster_node_timeout: args.node_timeout,
        cluster_replicas: args.replicas,
        routing: args.routing,
        controller: true,
        controller_voters: args.controller_voters,
        requirepass: args.password().unwrap_or_default().to_string(),
        ..Config::default()
    };
    if let Some(maxmemory) = args.maxmemory {
        config.maxmemory = maxmemory;
    }
    if args.tls.enabled() {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        config.tls_cluster = true;
        config.tls_cert_file = text(&args.tls.tls_cert_file);
        config.tls_key_file = text(&args.tls.tls_key_file);
        config.tls_ca_cert_file = text(&args.tls.tls_ca_cert_file);
        config.tls_ca_cert_dir = text(&args.tls.tls_ca_cert_dir);
    }
    config
}

/// With `--tls-cluster yes`, the flags that give every node TLS on its cluster bus, with the
/// files as absolute paths (a node's command line is to be run again from anywhere); the
/// files are read now, so that a wrong one stops `up` before any node starts.
fn tls_flags(args: &UpArgs) -> anyhow::Result<Vec<String>> {
    if !args.tls.enabled() {
        return Ok(Vec::new());
    }
    let options = args.tls.options()?;
    options
        .client_config()
        .context("cannot speak TLS on the cluster bus")?;
    let mut flags = vec!["--tls-cluster".to_string(), "yes".to_string()];
    for (flag, file) in [
        ("--tls-cert-file", &options.cert_file),
        ("--tls-key-file", &options.key_file),
        ("--tls-ca-cert-file", &options.ca_cert_file),
        ("--tls-ca-cert-dir", &options.ca_cert_dir),
    ] {
        if file.is_empty() {
            continue;
        }
        let absolute = Path::new(file)
            .canonicalize()
            .with_context(|| format!("cannot resolve {flag} {file}"))?;
        flags.extend([flag.to_string(), absolute.display().to_string()]);
    }
    Ok(flags)
}

/// The cluster secret's file name in `up`'s directory.
const SECRET_FILE: &str = "cluster-secret";

/// The `shoal` arguments of node `i` (the first founds the cluster, every one is
/// controller-eligible, each keeps its directory under `log_dir`, all share the secret in
/// `secret`).
fn node_command_line(
    args: &UpArgs,
    i: usize,
    http_base: u16,
    founder: &str,
    log_dir: &Path,
    secret: &Path,
) -> Vec<String> {
    let port = args.base_port + i as u16;
    let http_port = if http_base == 0 {
        0
    } else {
        http_base + i as u16
    };
    let mut line: Vec<String> = vec![
        "server".into(),
        "--port".into(),
        port.to_string(),
        "--http-port".into(),
        http_port.to_string(),
        "--threads".into(),
        args.threads.to_string(),
        "--node-timeout".into(),
        args.node_timeout.to_string(),
        "--routing".into(),
        args.routing.to_string(),
        "--cluster-enabled".into(),
        "--dir".into(),
        node_dir(log_dir, port).display().to_string(),
        "--cluster-secret-file".into(),
        secret.display().to_string(),
    ];
    if let Some(maxmemory) = args.maxmemory {
        line.extend(["--maxmemory".into(), maxmemory.0.to_string()]);
    }
    // Every node may vote: the controller places its voters across shards itself.
    line.extend([
        "--controller".into(),
        "--controller-voters".into(),
        args.controller_voters.to_string(),
    ]);
    if i == 0 {
        line.extend(["--replicas".into(), args.replicas.to_string()]);
    } else {
        line.extend(["--cluster-join".into(), founder.to_string()]);
    }
    line
}

/// The directory of the node on `port` (`--dir`).
fn node_dir(log_dir: &Path, port: u16) -> PathBuf {
    log_dir.join(format!("node-{port}"))
}

/// Where the node on `port` logs.
fn log_path(log_dir: &Path, port: u16) -> PathBuf {
    log_dir.join(format!("node-{port}.log"))
}

/// The end of the log at `path`, indented: from the last `Error: ` line a failed `shoal`
/// printed up to its backtrace, if there is one, else the last `lines` non-empty lines; or a
/// note that it could not be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            if let Some(error) = tail.iter().rposition(|l| l.starts_with("Error: ")) {
                tail.drain(..error);
                if let Some(backtrace) = tail.iter().position(|l| *l == "Stack backtrace:") {
                    tail.truncate(backtrace);
                }
                tail.truncate(lines);
            }
            let skip = tail.len().saturating_sub(lines);
            tail.drain(..skip);
            if tail.is_empty() {
                "    (its log is empty)".into()
            } else {
                tail.iter()
                    .map(|l| format!("    {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Err(e) => format!("    (cannot read its log: {e})"),
    }
}

/// The children of `cluster up`, stopped (SIGTERM, then SIGKILL) when dropped.
struct Fleet {
    children: Vec<(u16, Child)>,
    log_dir: PathBuf,
}

impl Fleet {
    fn stop(&mut self) {
        for (_, child) in &self.children {
            // SAFETY: kill(2) with a child's pid has no memory-safety requirements.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }

    /// Forgets the children that exited, returning their ports.
    fn reap(&mut self) -> Vec<u16> {
        let mut gone = Vec::new();
        self.children.retain_mut(|(port, child)| {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited {
                gone.push(*port);
            }
            !exited
        });
        gone
    }

    /// The port of a child that exited, if one did.
    fn exited(&mut self) -> Option<u16> {
        self.children
            .iter_mut()
            .find_map(|(port, c)| matches!(c.try_wait(), Ok(Some(_))).then_some(*port))
    }

    /// "the node on `port` `what`", with the end of its log, where its own error is.
    fn exit_report(&self, port: u16, what: &str) -> String {
        let log = log_path(&self.log_dir, port);
        format!(
            "the node on port {port} {what}; the end of {}:\n{}",
            log.display(),
            log_tail(&log, LOG_TAIL)
        )
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the first node has founded the cluster, or fails with what stopped it.
async fn wait_for_founder(
    founder: &str,
    password: Option<&str>,
    credentials: &BusCredentials,
    fleet: &mut Fleet,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(port) = fleet.exited() {
            bail!("{}", fleet.exit_report(port, "exited while starting"));
        }
        if let Ok(status) = leader_status(founder, password, credentials).await {
            // Ours has just founded its cluster: it is alone in it.
            if status.map.nodes.len() != 1 {
                bail!(
                    "{founder} answers as a node of a cluster of {} nodes, not the one just \
                     started: is another cluster using these ports?",
                    status.map.nodes.len()
                );
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let port = fleet.children.first().map_or(0, |(port, _)| *port);
    bail!(
        "{}",
        fleet.exit_report(port, "did not found the cluster within 20 s")
    )
}

/// Whether every node is in the map, every shard exists, every slot is owned, and every node
/// has reported holding the final map.
/// Whether the cluster `up` started is complete: every node in, healthy and holding the last
/// map, every slot owned, and the controller's voters placed.
fn ready(status: &ClusterStatus, nodes: usize, shards: usize, max_voters: usize) -> bool {
    let map = &status.map;
    map.nodes.len() == nodes
        && desired_voters(map, &map.controllers, Some(status.leader), max_voters).is_none()
        && map.shards.len() == shards
        && map.slots_assigned() == SLOTS
        && map.nodes.values().all(|n| n.health == Health::Ok)
        && status.nodes.iter().all(|n| n.epoch == map.epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_tail_is_its_last_non_empty_lines() {
        let dir = std::env::temp_dir().join(format!("shoal-up-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.log");
        std::fs::write(&path, "one\n\ntwo\nthree\n\n").unwrap();
        assert_eq!(log_tail(&path, 2), "    two\n    three");
        assert_eq!(log_tail(&path, 10), "    one\n    two\n    three");
        std::fs::write(
            &path,
            "a log line\nError: cannot read x\n\nCaused by:\n    gone\n\nStack backtrace:\n   0: f\n",
        )
        .unwrap();
        assert_eq!(
            log_tail(&path, 10),
            "    Error: cannot read x\n    Caused by:\n        gone"
        );
        std::fs::write(&path, "").unwrap();
        assert_eq!(log_tail(&path, 2), "    (its log is empty)");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(log_tail(&path, 2).starts_with("    (cannot read its log: "));
    }
}
