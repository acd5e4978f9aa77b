//! `shoal cluster up | status | remove-node | rebalance | myid`: run a local cluster of real
//! processes, show a cluster's state, retire a node, place the slots again, name a node.
//!
//! * `up`: starting the local cluster and watching over it.
//! * `ports`: the ports `up` will use, checked before anything starts.
//! * `status`: `status`, `remove-node` and `rebalance`, and the human-readable account of a
//!   cluster.
//! * `myid` (here): the id of one node, as its `CLUSTER MYID` gives it.

mod ports;
mod status;
mod up;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use shoal_cluster::bus::{self, ClusterStatus, Reply, Request};
use shoal_cluster::seed::{self, SeedError};
use shoal_cluster::{BusCredentials, BusSecret, BusTlsConnector};
use shoal_frontdoor::tls::TlsOptions;
use shoal_server::ByteSize;
use shoal_server::config::RoutingMode;

/// `shoal cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start a local cluster of `shoal server` processes and keep it running until Ctrl-C.
    Up(Box<UpArgs>),
    /// Show a cluster's shards, nodes, slot ranges, epoch and health.
    Status(StatusArgs),
    /// Retire a node: its shard keeps going without it, or (a primary without replicas) its
    /// slots move to the other shards with their keys first.
    RemoveNode(Box<RemoveArgs>),
    /// Place the slots again over the shards and move, with their keys, those whose owner
    /// changes; waits until they have moved.
    Rebalance(Box<MoveWait>),
    /// Move the given slots to a node's shard with their keys (the others stay where they
    /// are); waits until they have moved.
    MoveSlots(Box<MoveSlotsArgs>),
    /// Print the id of the node at --node (what its CLUSTER MYID answers), e.g. for a script
    /// that removes the node it runs beside.
    #[command(name = "myid")]
    MyId(MyIdArgs),
}

/// `shoal cluster up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Shards (primaries).
    #[arg(long, default_value_t = 3)]
    pub shards: usize,
    /// Replicas per shard.
    #[arg(long, default_value_t = 2)]
    pub replicas: u8,
    /// RESP port of the first node; the others follow it. Each node's cluster bus port is its
    /// RESP port + 10000.
    #[arg(long, default_value_t = 7000)]
    pub base_port: u16,
    /// HTTP port of the first node; the others follow it; 0 disables HTTP [default: base-port + 1000].
    #[arg(long)]
    pub http_base_port: Option<u16>,
    /// Memory limit per node, e.g. 100mb or 1gb.
    #[arg(long, value_parser = ByteSize::from_arg)]
    pub maxmemory: Option<ByteSize>,
    /// Worker threads per node.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Milliseconds without a heartbeat before a node is marked failed.
    #[arg(long, default_value_t = 1000)]
    pub node_timeout: u64,
    /// Directory for the nodes' logs (one node-<port>.log each, overwritten by every run),
    /// their directories and the cluster secret
    /// [default: shoal-cluster-<base-port> in the system's temp dir, the same for every run on
    /// that base port].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Routing mode of every node: redirect or forward.
    #[arg(long, default_value = "redirect")]
    pub routing: RoutingMode,
    /// Most controller voters (odd, 1 to 9): every node may vote, and the controller places
    /// this many (3 below 5 nodes) across shards.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub controller_voters: usize,
    /// Password every node requires (their --requirepass, given to them in their
    /// environment, not on their command line); the nodes authenticate to each other with it.
    #[arg(long, env = "SHOAL_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// TLS on the cluster bus: with --tls-cluster yes, every node runs with it and the files
    /// given here.
    #[command(flatten)]
    pub tls: BusTlsArgs,
}

impl UpArgs {
    /// The nodes' password, if one is set (empty: none).
    fn password(&self) -> Option<&str> {
        self.requirepass.as_deref().filter(|p| !p.is_empty())
    }
}

/// How a command reaches a running cluster: through a node, with the nodes' password and
/// the cluster secret.
#[derive(Debug, Args)]
pub struct NodeAccess {
    /// Any node's RESP address, host:port (the port defaults to 7000).
    #[arg(long, default_value = "127.0.0.1:7000", value_parser = parse_node_addr)]
    pub node: String,
    /// The nodes' password (their --requirepass), if they have one.
    #[arg(long, env = "SHOAL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// File holding the cluster secret (the nodes' --cluster-secret-file).
    #[arg(long, env = "SHOAL_CLUSTER_SECRET_FILE", value_name = "PATH")]
    pub cluster_secret_file: PathBuf,
    /// --node is the node's TLS port (its --tls-port): its bus address is asked there over
    /// TLS, showing --tls-cert-file and trusting --tls-ca-cert-file.
    #[arg(long)]
    pub tls: bool,
    /// TLS on the cluster bus, for nodes that run with --tls-cluster yes.
    #[command(flatten)]
    pub bus_tls: BusTlsArgs,
}

impl NodeAccess {
    /// The bus address of --node.
    async fn bus(&self) -> anyhow::Result<String> {
        let tls = resp_tls(self.tls, self.bus_tls.files())?;
        bus_of(&self.node, self.password.as_deref(), tls.as_ref()).await
    }

    /// What the command's bus connections are opened with: the cluster secret, over TLS with
    /// --tls-cluster yes.
    fn credentials(&self) -> anyhow::Result<BusCredentials> {
        self.bus_tls
            .credentials(load_secret(&self.cluster_secret_file)?)
    }
}

/// TLS on the cluster bus (the nodes' `--tls-cluster yes`): the command shows a certificate
/// the cluster's CA signed (the nodes require one) and checks theirs against the CA.
#[derive(Debug, Args)]
pub struct BusTlsArgs {
    /// Speak TLS on the cluster bus, as nodes with --tls-cluster yes do: yes or no
    /// [default: no].
    #[arg(long, env = "SHOAL_TLS_CLUSTER", value_name = "yes|no", value_parser = shoal_server::config::parse_yes_no)]
    pub tls_cluster: Option<bool>,
    /// With --tls-cluster yes: a certificate (PEM) that the cluster's CA signed, shown on the
    /// bus (by `cluster up`'s nodes, their own).
    #[arg(long, env = "SHOAL_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// With --tls-cluster yes: the certificate's private key (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<String>,
    /// With --tls-cluster yes: CA certificates (PEM) the nodes' certificates chain to.
    #[arg(long, env = "SHOAL_TLS_CA_CERT_FILE", value_name = "FILE")]
    pub tls_ca_cert_file: Option<String>,
    /// With --tls-cluster yes: a directory of more CA certificates (PEM files).
    #[arg(long, env = "SHOAL_TLS_CA_CERT_DIR", value_name = "DIR")]
    pub tls_ca_cert_dir: Option<String>,
}

impl BusTlsArgs {
    /// Whether the bus speaks TLS.
    fn enabled(&self) -> bool {
        self.tls_cluster == Some(true)
    }

    /// The files given, as the nodes take them, unchecked.
    fn files(&self) -> TlsOptions {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        TlsOptions {
            cert_file: text(&self.tls_cert_file),
            key_file: text(&self.tls_key_file),
            ca_cert_file: text(&self.tls_ca_cert_file),
            ca_cert_dir: text(&self.tls_ca_cert_dir),
            ..TlsOptions::default()
        }
    }

    /// The files given, as the nodes take them, or what is missing (`--tls-cluster yes` needs
    /// a certificate, its key and a CA).
    fn options(&self) -> anyhow::Result<TlsOptions> {
        let options = self.files();
        if options.cert_file.is_empty() || options.key_file.is_empty() {
            bail!(
                "--tls-cluster yes needs --tls-cert-file and --tls-key-file (a certificate that \
                 the cluster's CA signed, and its key: the nodes' bus requires one)"
            );
        }
        if options.ca_cert_file.is_empty() && options.ca_cert_dir.is_empty() {
            bail!(
                "--tls-cluster yes needs --tls-ca-cert-file or --tls-ca-cert-dir (the CA the \
                 nodes' certificates chain to)"
            );
        }
        Ok(options)
    }

    /// Connections proving `secret`, over TLS with `--tls-cluster yes` (its files read now).
    fn credentials(&self, secret: BusSecret) -> anyhow::Result<BusCredentials> {
        let credentials = BusCredentials::new(secret);
        if !self.enabled() {
            return Ok(credentials);
        }
        let config = self
            .options()?
            .client_config()
            .context("cannot speak TLS on the cluster bus")?;
        Ok(credentials.with_tls(BusTlsConnector::new(config)))
    }
}

/// `shoal cluster status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the controller's status as JSON.
    #[arg(long)]
    pub json: bool,
    /// The node to ask, and the credentials.
    #[command(flatten)]
    pub access: NodeAccess,
}

/// `shoal cluster remove-node` flags.
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The node's id (40 hex digits, or its first 16), as `cluster status` shows it.
    pub id: String,
    /// How long to wait for a drain, and the node to ask.
    #[command(flatten)]
    pub wait: MoveWait,
}

/// The flags of the commands that move slots and wait for them (`remove-node`, `rebalance`,
/// `move-slots`): how long to wait, and the node to ask. `rebalance` has no others.
#[derive(Debug, Args)]
pub struct MoveWait {
    /// How long to wait, in seconds, for the slots to move before giving up waiting (the
    /// migrations go on; `cluster status` follows them).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub wait_timeout: u64,
    /// The node to ask, and the credentials.
    #[command(flatten)]
    pub access: NodeAccess,
}

/// `shoal cluster move-slots` flags.
#[derive(Debug, Args)]
pub struct MoveSlotsArgs {
    /// The slots: numbers and inclusive ranges, as `5`, `100-200` or `0-99,200-299`.
    #[arg(required = true, value_name = "SLOTS", value_parser = parse_slot_ranges)]
    pub slots: Vec<Vec<(u16, u16)>>,
    /// The id of a node of the shard they go to (40 hex digits, or its first 16), as
    /// `cluster status` shows it.
    #[arg(long, value_name = "NODE_ID")]
    pub to: String,
    /// How long to wait for the slots, and the node to ask.
    #[command(flatten)]
    pub wait: MoveWait,
}

/// Slots as `move-slots` takes them: comma-separated numbers and `first-last` ranges.
fn parse_slot_ranges(text: &str) -> Result<Vec<(u16, u16)>, String> {
    let slot = |s: &str| -> Result<u16, String> {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|&n| usize::from(n) < shoal_cluster::SLOTS)
            .ok_or_else(|| format!("{s:?} is not a slot (0 to {})", shoal_cluster::SLOTS - 1))
    };
    text.split(',')
        .map(|part| {
            let (first, last) = match part.split_once('-') {
                Some((a, b)) => (slot(a)?, slot(b)?),
                None => (slot(part)?, slot(part)?),
            };
            if first > last {
                return Err(format!("{part:?}: the first slot is after the last"));
            }
            Ok((first, last))
        })
        .collect()
}

/// `shoal cluster myid` flags: the node is asked on its RESP port only (its `CLUSTER NODES`),
/// so neither the cluster secret nor the bus is needed.
#[derive(Debug, Args)]
pub struct MyIdArgs {
    /// The node's RESP address, host:port (the port defaults to 7000).
    #[arg(long, default_value = "127.0.0.1:7000", value_parser = parse_node_addr)]
    pub node: String,
    /// The node's password (its --requirepass), if it has one.
    #[arg(long, env = "SHOAL_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// --node is the node's TLS port (its --tls-port): it is asked over TLS, showing
    /// --tls-cert-file and trusting --tls-ca-cert-file.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: a certificate (PEM) the node's CA signed, if the node asks for one.
    #[arg(long, env = "SHOAL_TLS_CERT_FILE", value_name = "FILE")]
    pub tls_cert_file: Option<String>,
    /// With --tls: the certificate's private key (PEM).
    #[arg(long, env = "SHOAL_TLS_KEY_FILE", value_name = "FILE")]
    pub tls_key_file: Option<String>,
    /// With --tls: CA certificates (PEM) the node's certificate chains to.
    #[arg(long, env = "SHOAL_TLS_CA_CERT_FILE", value_name = "FILE")]
    pub tls_ca_cert_file: Option<String>,
    /// With --tls: a directory of more CA certificates (PEM files).
    #[arg(long, env = "SHOAL_TLS_CA_CERT_DIR", value_name = "DIR")]
    pub tls_ca_cert_dir: Option<String>,
}

/// `shoal cluster myid`: prints the id of the node at `--node`, in the 40-digit form
/// `CLUSTER MYID` answers (which `remove-node` takes).
async fn myid(args: MyIdArgs) -> anyhow::Result<()> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let files = TlsOptions {
        cert_file: text(&args.tls_cert_file),
        key_file: text(&args.tls_key_file),
        ca_cert_file: text(&args.tls_ca_cert_file),
        ca_cert_dir: text(&args.tls_ca_cert_dir),
        ..TlsOptions::default()
    };
    let tls = resp_tls(args.tls, files)?;
    let myself = myself_at(&args.node, args.password.as_deref(), tls.as_ref()).await?;
    println!("{}", myself.id);
    Ok(())
}

/// The RESP port `--node` means when it names none: `cluster up`'s first node's.
const DEFAULT_NODE_PORT: u16 = 7000;

/// How long one bus exchange may take.
const BUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs a `shoal cluster` subcommand.
pub fn run(command: ClusterCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    runtime.block_on(async move {
        match command {
            ClusterCommand::Up(args) => up::up(*args).await,
            ClusterCommand::Status(args) => status::status(args).await,
            ClusterCommand::RemoveNode(args) => status::remove_node(*args).await,
            ClusterCommand::Rebalance(args) => status::rebalance(*args).await,
            ClusterCommand::MoveSlots(args) => status::move_slots(*args).await,
            ClusterCommand::MyId(args) => myid(args).await,
        }
    })
}

/// A node's address as `--node` takes it: `host:port`, or a bare host (IPv6 in brackets or
/// not) for port [`DEFAULT_NODE_PORT`].
fn parse_node_addr(text: &str) -> Result<String, String> {
    seed::parse_node_addr(text, Some(DEFAULT_NODE_PORT)).map_err(|e| e.to_string())
}

/// The cluster secret in the file at `path`, or an error that says what to give.
fn load_secret(path: &std::path::Path) -> anyhow::Result<BusSecret> {
    BusSecret::load(path).context("the cluster bus needs the nodes' --cluster-secret-file")
}

/// The controller leader's status, asked through the node whose plain RESP address is `node`
/// (and password `password`, if it has one), on its bus with `credentials`.
async fn leader_status(
    node: &str,
    password: Option<&str>,
    credentials: &BusCredentials,
) -> anyhow::Result<ClusterStatus> {
    let bus = bus_of(node, password, None).await?;
    leader_status_via(&bus, node, credentials).await
}

/// With `tls` (a command's `--tls`), how a node's TLS port is reached with the files of
/// `options` (read now); `None` without.
fn resp_tls(tls: bool, options: TlsOptions) -> anyhow::Result<Option<BusTlsConnector>> {
    if !tls {
        return Ok(None);
    }
    if options.ca_cert_file.is_empty() && options.ca_cert_dir.is_empty() {
        bail!(
            "--tls needs --tls-ca-cert-file or --tls-ca-cert-dir (the CA the node's \
             certificate chains to), and --tls-cert-file and --tls-key-file if the node \
             asks for a client certificate"
        );
    }
    let config = options
        .client_config()
        .context("cannot speak TLS to --node")?;
    Ok(Some(BusTlsConnector::new(config)))
}

/// The bus address of the node whose RESP address is `node` (a TLS port, asked over TLS, with
/// `tls`), or what went wrong, with a hint when `node` is an HTTP port or wants a password.
async fn bus_of(
    node: &str,
    password: Option<&str>,
    tls: Option<&BusTlsConnector>,
) -> anyhow::Result<String> {
    myself_at(node, password, tls)
        .await
        .map(|myself| myself.bus)
}

/// What the node whose RESP address is `node` says of itself (its id and bus address), as
/// [`bus_of`] asks it.
async fn myself_at(
    node: &str,
    password: Option<&str>,
    tls: Option<&BusTlsConnector>,
) -> anyhow::Result<seed::Myself> {
    let auth = password
        .filter(|p| !p.is_empty())
        .map(shoal_cluster::PeerAuth::password);
    match seed::myself_of(node, auth.as_ref(), tls, BUS_TIMEOUT).await {
        Ok(myself) => Ok(myself),
        Err(e @ SeedError::Auth { .. }) => {
            bail!("{e} (give the nodes' password with --password or SHOAL_PASSWORD)")
        }
        Err(e @ SeedError::Http { .. }) => {
            let hint = node
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?.checked_sub(1000)?)))
                .map(|(host, port)| {
                    format!(
                        " (`shoal cluster up` gives each node an HTTP port 1000 above its RESP \
                         port: try {host}:{port})"
                    )
                })
                .unwrap_or_default();
            bail!("{e}{hint}")
        }
        Err(e) => Err(e.into()),
    }
}

/// The controller leader's status, asked through the bus at `bus` (of the node `node`).
async fn leader_status_via(
    bus: &str,
    node: &str,
    credentials: &BusCredentials,
) -> anyhow::Result<ClusterStatus> {
    match bus::call_leader(bus, credentials, &Request::Status, BUS_TIMEOUT, 4).await? {
        Reply::Status(status) => Ok(*status),
        Reply::Error(e) => bail!("{node}: {e}"),
        other => bail!("{node} answered {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_address_without_a_port_gets_the_default_one() {
        assert_eq!(parse_node_addr("localhost").unwrap(), "localhost:7000");
        assert_eq!(parse_node_addr("127.0.0.1:7100").unwrap(), "127.0.0.1:7100");
        assert_eq!(parse_node_addr("::1").unwrap(), "[::1]:7000");
        assert_eq!(parse_node_addr("[::1]:7001").unwrap(), "[::1]:7001");
        assert_eq!(parse_node_addr("[::1]").unwrap(), "[::1]:7000");
        for bad in ["", ":7000", "localhost:http", "localhost:70000"] {
            let error = parse_node_addr(bad).unwrap_err();
            assert!(error.contains("host:port"), "{bad}: {error}");
        }
    }
}
