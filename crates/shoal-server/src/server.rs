//! Starting and stopping a node: listeners, worker threads, background tasks.
//!
//! Each worker thread runs its own single-threaded tokio runtime and serves the connections
//! handed to it, so a connection never migrates and its hot state stays in one core's cache.
//! A control thread accepts connections (spreading them round-robin), enforces `maxclients`,
//! and runs the periodic tasks; the HTTP API has its own small runtime.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shoal_frontdoor::listen::{
    Accepted, BindError, Listener, Ports, accept_loop, bind, bind_all, log_ready,
};
use shoal_frontdoor::tls::{TlsAcceptor, TlsError};
use shoal_frontdoor::{Reservation, TICK, session};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use shoal_cluster::{BUS_PORT_OFFSET, DirError, Health, NodeDir, NodeId, NodeInfo};
use shoal_store::ExpireCycle;

use crate::cluster::ClusterState;
use crate::cluster::bus_tls::BusTls;
use crate::config::Config;
use crate::replication::PING_PERIOD;
use crate::shared::Shared;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// A thread or runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The node's directory (`--dir`) cannot be used.
    #[error(transparent)]
    Dir(#[from] DirError),
    /// The TLS certificate, key or CA cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ACL file (`aclfile`) cannot be loaded.
    #[error("cannot start because of ACL errors: {0}")]
    Acl(String),
    /// The node has no usable cluster secret.
    #[error(transparent)]
    ClusterSecret(#[from] crate::cluster::secret::NoSecret),
    /// The access log (`access-log`) cannot be opened.
    #[error(transparent)]
    AccessLog(#[from] shoal_frontdoor::access_log::AccessLogError),
}

/// A running node.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    resp_addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

impl Server {
    /// Binds the listeners and starts serving. Returns once the node accepts connections.
    pub fn start(config: Config) -> Result<Server, StartError> {
        config.validate()?;
        // The directory first: a node whose directory another node holds must not take ports.
        let dir = if config.dir.is_empty() {
            None
        } else {
            Some(Arc::new(NodeDir::open(std::path::Path::new(&config.dir))?))
        };
        let mut config = config;
        if let Some(dir) = &dir {
            config.dir = dir.path().display().to_string();
            tracing::info!(dir = %config.dir, id = ?dir.id(), "node directory");
        }
        let id = dir.as_ref().map_or_else(NodeId::random, |d| d.id());
        // Before any port: a node that could not prove itself on the bus must not take them.
        let secret = if config.cluster_mode() {
            Some(crate::cluster::secret::plan(&config, dir.as_deref(), id)?)
        } else {
            None
        };
        // The certificate and key are read before any port is taken: a wrong file stops
        // the start with its name.
        let tls = match config.serves_tls() {
            false => None,
            true => Some(Arc::new(TlsAcceptor::new(&config.tls_options())?)),
        };
        let http_tls = tls.clone().filter(|_| config.http_tls);
        if config.tls_replication {
            // The links to other nodes read the same files; a wrong one stops the start here.
            config.tls_options().client_config()?;
        }
        let bus_tls = match config.tls_cluster && config.cluster_mode() {
            false => None,
            true => Some(BusTls::new(&config.tls_options())?),
        };
        // Opened before any port is taken: a file that cannot be written stops the start.
        let access_log = match config.access_log.is_empty() {
            true => None,
            false => Some(shoal_frontdoor::access_log::AccessLog::open(
                std::path::Path::new(&config.access_log),
                config.access_log_sample,
                config.access_log_max_size.0,
            )?),
        };
        let ports = Ports {
            resp: config.serves_plain().then_some(config.port),
            tls: (config.tls_port != 0).then_some(config.tls_port),
            http: (config.http_port != 0).then_some(config.http_port),
        };
        let mut bound = bind_all(&config.bind, ports)?;
        let resp_addr = bound.client_addr();
        let tls_addr = bound.tls.as_ref().map(|(_, addr)| *addr);
        let http_addr = bound.http.as_ref().map(|(_, addr)| *addr);
        let threads = config.effective_threads();
        log_ready("node", &bound, threads);
        let mut client_listeners = Vec::new();
        if let Some((listener, addr)) = bound.resp.take() {
            // Port 0 means "pick one": CONFIG GET and INFO show the one picked.
            config.port = addr.port();
            client_listeners.push((listener, None));
        }
        if let Some((listener, _)) = bound.tls.take() {
            client_listeners.push((listener, tls.clone()));
        }
        let http_listener = bound.http.take().map(|(listener, _)| listener);
        config.http_port = http_addr.map_or(0, |a| a.port());
        let bus_listener = if config.cluster_mode() {
            if config.cluster_port == 0 && resp_addr.port().checked_add(BUS_PORT_OFFSET).is_none() {
                return Err(StartError::Bind(BindError {
                    listener: Listener::ClusterBus,
                    addr: format!("{}:{}+{BUS_PORT_OFFSET}", config.bind, resp_addr.port()),
                    port: resp_addr.port(),
                    error: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("port + {BUS_PORT_OFFSET} is past 65535 (set --cluster-port)"),
                    ),
                }));
            }
            let listener = bind(
                &config.bind,
                config.effective_cluster_port(resp_addr.port()),
                Listener::ClusterBus,
            )?;
            config.cluster_port = listener.local_addr().map_err(StartError::Runtime)?.port();
            Some(listener)
        } else {
            None
        };
        // The ports are taken: a founder's new secret may be written now.
        let secret = secret.map(|plan| plan.secret()).transpose()?;
        let cluster = bus_listener.zip(secret).map(|(listener, secret)| {
            let myself = NodeInfo {
                id,
                host: config.announced_ip(),
                port: config.announced_port(),
                bus_port: config.announced_bus_port(),
                hostname: config.announced_hostname(),
                zone: (!config.zone.is_empty()).then(|| config.zone.clone()),
                http_port: config.http_port,
                controller: config.controller || config.cluster_join.is_empty(),
                health: Health::Ok,
                spare: config.cluster_spare,
                new_shard: config.cluster_new_shard,
                incarnation: NodeInfo::fresh_incarnation(),
            };
            let state = ClusterState::new(myself, config.routing, secret).with_dir(dir.clone());
            let state = match bus_tls {
                Some(tls) => state.with_bus_tls(tls),
                None => state,
            };
            (listener, state)
        });
        let (bus_listener, cluster) = cluster.unzip();
        let shared = Shared::with_cluster(config, cluster);
        if let Some(log) = access_log {
            let _ = shared.door.access_log.set(log);
        }
        if let Some(tls) = tls {
            let _ = shared.tls.set(tls);
        }
        if shared.door.acl.file().is_some() {
            shared
                .door
                .acl
                .load_file()
                .map_err(|e| StartError::Acl(e.strip_prefix("ERR ").unwrap_or(&e).to_string()))?;
        }
        *shared.resp_addr.write() = Some(resp_addr);
        *shared.http_addr.write() = http_addr;

        let mut handles = Vec::new();
        let mut workers = Vec::new();
        for index in 0..threads {
            let (tx, rx) = mpsc::unbounded_channel::<Handed>();
            workers.push(tx);
            let shared = shared.clone();
            handles.push(spawn_thread(format!("shoal-worker-{index}"), move || {
                WORKER_INDEX.set(Some(index));
                run_worker(shared, rx)
            })?);
        }
        let control_shared = shared.clone();
        handles.push(spawn_thread("shoal-control".into(), move || {
            run_control(control_shared, client_listeners, workers)
        })?);
        if let Some(listener) = bus_listener {
            let cluster_shared = shared.clone();
            handles.push(spawn_thread("shoal-cluster-host".into(), move || {
                crate::cluster::host::run(cluster_shared, listener)
            })?);
        }
        if let Some(listener) = http_listener {
            let http_shared = shared.clone();
            handles.push(spawn_thread("shoal-http".into(), move || {
                run_http(http_shared, listener, http_tls, threads)
            })?);
        }
        Ok(Server {
            shared,
            threads: handles,
            resp_addr,
            tls_addr,
            http_addr,
        })
    }

    /// Where the node listens for RESP clients (the port picked, if port 0 was asked for);
    /// its TLS port if it serves TLS only.
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    /// Where the node listens for TLS clients, if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the TLS certificate, key and CA files again (see [`Shared::reload_tls`]).
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        self.shared.reload_tls()
    }

    /// Where the node's HTTP API listens, if it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The node's shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Before a shutdown: a cluster primary with a healthy replica hands its shard to it
    /// (see [`crate::cluster::ClusterState::step_down`]); returns whether it did. Outside a
    /// cluster, `Ok(false)`.
    pub async fn step_down(&self) -> Result<bool, String> {
        match &self.shared.cluster {
            Some(cluster) => cluster.step_down(&self.shared.replication).await,
            None => Ok(false),
        }
    }

    /// Asks the node to stop (as `SHUTDOWN` does).
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
    }

    /// Why the node stopped by itself, if it could not go on (it could not found or join its
    /// cluster, say); `None` if it runs or was asked to stop.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure()
    }

    /// A receiver that sees `true` once the node is asked to stop (by `SHUTDOWN` too).
    pub fn stopped(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shared.door.shutdown_signal()
    }

    /// Waits until every thread of the node has stopped (after a shutdown request).
    pub fn wait(mut self) {
        for handle in std::mem::take(&mut self.threads) {
            let _ = handle.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.request_shutdown();
    }
}

/// A thread's stack: room for a script's deepest values (`cjson` and replies nest up to 1000
/// levels, converted recursively) and Lua's own C recursion. Only what is touched is mapped.
const THREAD_STACK: usize = 64 << 20;

fn spawn_thread(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(THREAD_STACK)
        .spawn(f)
        .map_err(StartError::Runtime)
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// A connection the control thread accepted, with its slot in `maxclients`, for a worker to
/// register and serve (a socket moves between runtimes as a std one).
struct Handed {
    reservation: Reservation,
    stream: std::net::TcpStream,
    /// For a connection of the TLS port, the handshake to run first.
    tls: Option<Arc<TlsAcceptor>>,
}

thread_local! {
    /// This thread's index among the node's workers (`None` on other threads).
    static WORKER_INDEX: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The index of the worker thread the caller runs on, if it runs on one.
pub(crate) fn worker_index() -> Option<usize> {
    WORKER_INDEX.get()
}

fn run_worker(shared: Arc<Shared>, mut incoming: mpsc::UnboundedReceiver<Handed>) {
    let runtime = current_thread_runtime();
    let local = tokio::task::LocalSet::new();
    let mut shutdown = shared.door.shutdown_signal();
    local.block_on(&runtime, async move {
        loop {
            let handed = tokio::select! {
                c = incoming.recv() => c,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(Handed {
                reservation,
                stream,
                tls,
            }) = handed
            else {
                break;
            };
            serve_here(&shared, reservation, stream, tls);
        }
    });
    // Dropping the runtime cancels the remaining sessions; each unregisters itself.
}

/// Serves a connection on the calling thread (a worker's, or the control thread's), whose
/// runtime runs a `LocalSet`.
fn serve_here(
    shared: &Arc<Shared>,
    reservation: Reservation,
    stream: std::net::TcpStream,
    tls: Option<Arc<TlsAcceptor>>,
) {
    // A socket that cannot join this runtime is closed; its slot is given back.
    let Ok(stream) = TcpStream::from_std(stream) else {
        return;
    };
    let accepted = Accepted::register(reservation, stream);
    match tls {
        None => {
            tokio::task::spawn_local(session::serve(shared.clone(), accepted));
        }
        // The handshake runs in the connection's own task, so a slow client holds its slot
        // (until the handshake timeout) and nothing else.
        Some(tls) => {
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                if let Some(accepted) = accepted.secure(&tls).await {
                    session::serve(shared, accepted).await;
                }
            });
        }
    }
}

/// The control thread: accepts on every client listener (the plain one, the TLS one with its
/// acceptor), spreading connections over the workers, and runs the cron.
fn run_control(
    shared: Arc<Shared>,
    listeners: Vec<(StdListener, Option<Arc<TlsAcceptor>>)>,
    workers: Vec<mpsc::UnboundedSender<Handed>>,
) {
    let runtime = current_thread_runtime();
    // A `LocalSet`: with a single worker busy with a script, this thread serves the new
    // connections itself (see below).
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let cron = tokio::spawn(cron(shared.clone()));
        let keep_alive = tokio::spawn(keep_replicas_fresh(shared.clone()));
        let next = std::cell::Cell::new(0usize);
        let loops = listeners.into_iter().map(|(listener, tls)| {
            let listener = TcpListener::from_std(listener).expect("a bound listener registers");
            let (next, workers) = (&next, &workers);
            let door = shared.door.clone();
            let shared = shared.clone();
            accept_loop(
                shared.door.clone(),
                listener,
                tls.clone(),
                move |stream, reservation| {
                    let Ok(stream) = stream.into_std() else {
                        return;
                    };
                    // Not to the worker a script keeps busy (it could not be served until the
                    // script ends, and it may be the connection that sends `SCRIPT KILL`):
                    // to another worker, or, when there is no other, here.
                    let mut target = next.get() % workers.len();
                    if door.busy.runner() == Some(target) {
                        if workers.len() == 1 {
                            serve_here(&shared, reservation, stream, tls.clone());
                            return;
                        }
                        target = (target + 1) % workers.len();
                    }
                    let handed = Handed {
                        reservation,
                        stream,
                        tls: tls.clone(),
                    };
                    // A worker that is gone drops the connection and gives its slot back.
                    let _ = workers[target].send(handed);
                    next.set(target.wrapping_add(1));
                },
            )
        });
        futures_util::future::join_all(loops).await;
        cron.abort();
        keep_alive.abort();
    });
}

/// The cron asks the allocator to give its free memory back to the system when the store has
/// handed back this much since the last trim ...
const TRIM_AFTER_BYTES: u64 = 1 << 20;
/// ... and at least this often (buffers of busy connections free memory too).
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Keeps this primary's replicas hearing from it: a keep-alive in the stream whenever nothing
/// else was written for a fifth of `replica-read-max-staleness` (a second without the bound),
/// so a replica whose link works always has news within its bound and serves its reads.
async fn keep_replicas_fresh(shared: Arc<Shared>) {
    loop {
        let bound = shared.live.replica_read_max_staleness();
        let idle = match bound.is_zero() {
            true => PING_PERIOD,
            false => (bound / 5).clamp(Duration::from_millis(1), PING_PERIOD),
        };
        shared.replication.keep_alive(idle);
        tokio::time::sleep(idle).await;
    }
}

/// Periodic work, `hz` times a second: the access clock, active expiry (a quarter of each
/// period at most, repeated sooner while keys keep expiring), rate sampling, closing clients
/// idle for longer than `timeout`, and upkeep (after which the allocator is asked to give
/// memory back to the system when the store freed much).
async fn cron(shared: Arc<Shared>) {
    let mut last_tick = Instant::now();
    let mut last_trim = Instant::now();
    // Bytes the store handed back to the allocator since the last trim.
    let mut returned = 0;
    // The cron is this (control) thread's one user of the store: marked as a command is, it
    // never waits on the store behind a running script, which would stop this thread
    // accepting the connection that sends `SCRIPT KILL` (see shoal_frontdoor::busy).
    let me = shared.door.stats.this_thread();
    loop {
        let period = Duration::from_millis(1000 / shared.live.hz().max(1));
        shared.store.refresh_clock();
        // Background work: it routes no client's write, so a slot hand-over does not wait for it.
        let inside = me.enter_background();
        let script_runs = !shared.door.busy.idle_now();
        // A fenced primary changes nothing (see `Replication::fenced`); its keys expire on
        // whichever node serves them next.
        let fenced = shared.replication.fenced();
        let cycle = if fenced || script_runs {
            ExpireCycle::default()
        } else {
            shared.store.expire_cycle(period / 4)
        };
        if last_tick.elapsed() >= TICK {
            shared.door.tick();
            last_tick = Instant::now();
        }
        if !script_runs {
            returned += shared.store.maintain().returned_bytes;
        }
        if returned >= TRIM_AFTER_BYTES || last_trim.elapsed() >= TRIM_EVERY {
            crate::process::trim_heap();
            last_trim = Instant::now();
            returned = 0;
        }
        if let Some(cluster) = &shared.cluster
            && !fenced
            && !script_runs
        {
            cluster.drop_step(&shared.store, period / 4);
        }
        drop(inside);
        let pause = if cycle.out_of_time {
            period / 4
        } else {
            period
        };
        tokio::time::sleep(pause).await;
    }
}

/// The HTTP API's runtime: plain HTTP, or HTTPS when `tls` is given.
fn run_http(
    shared: Arc<Shared>,
    listener: StdListener,
    tls: Option<Arc<TlsAcceptor>>,
    threads: usize,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(1, 4))
        .thread_name("shoal-http")
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("a bound listener registers");
        let api = crate::http::api(shared.clone());
        let stop = shared.door.shutdown_signal();
        let served = match tls {
            None => api.serve(listener, stop).await,
            Some(tls) => api.serve_tls(listener, tls, stop).await,
        };
        if let Err(e) = served {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
}
