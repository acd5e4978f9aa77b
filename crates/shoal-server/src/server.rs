//! Starting and stopping a node: listeners, worker threads, background tasks.
//!
//! Each worker thread runs its own single-threaded tokio runtime and serves the connections
//! handed to it, so a connection never migrates and its hot state stays in one core's cache.
//! A control thread accepts connections (spreading them round-robin), enforces `maxclients`,
//! and runs the periodic tasks; the HTTP API has its own small runtime.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use shoal_cluster::{Health, NodeId, NodeInfo};
use shoal_store::ExpireCycle;

use crate::cluster::ClusterState;
use crate::config::Config;
use crate::session;
use crate::shared::Shared;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A thread or runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running node.
pub struct Server {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    resp_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
}

impl Server {
    /// Binds the listeners and starts serving. Returns once the node accepts connections.
    pub fn start(config: Config) -> Result<Server, StartError> {
        config.validate()?;
        let resp_listener = bind(&config.bind, config.port)?;
        let resp_addr = resp_listener.local_addr().map_err(StartError::Runtime)?;
        let http_listener = match config.http_port {
            0 => None,
            port => Some(bind(&config.bind, port)?),
        };
        let http_addr = http_listener
            .as_ref()
            .map(|l| l.local_addr().map_err(StartError::Runtime))
            .transpose()?;
        let threads = config.effective_threads();
        // Port 0 means "pick one": CONFIG GET and INFO show the one picked.
        let mut config = config;
        config.port = resp_addr.port();
        config.http_port = http_addr.map_or(0, |a| a.port());
        let bus_listener = if config.cluster_mode() {
            let bus_port = match config.cluster_port {
                0 if resp_addr.port() > 55535 => {
                    return Err(StartError::Bind {
                        addr: format!("{}:{}+10000", config.bind, resp_addr.port()),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "the cluster bus port (port + 10000) is out of range: set cluster-port",
                        ),
                    });
                }
                0 => resp_addr.port() + 10000,
                port => port,
            };
            let listener = bind(&config.bind, bus_port)?;
            config.cluster_port = listener.local_addr().map_err(StartError::Runtime)?.port();
            Some(listener)
        } else {
            None
        };
        let cluster = bus_listener.as_ref().map(|_| {
            let myself = NodeInfo {
                id: NodeId::random(),
                host: config.announced_ip(),
                port: config.port,
                bus_port: config.cluster_port,
                http_port: config.http_port,
                controller: config.controller || config.cluster_join.is_empty(),
                health: Health::Ok,
                spare: config.cluster_spare,
            };
            ClusterState::new(myself, config.routing)
        });
        let shared = Shared::with_cluster(config, cluster);
        *shared.resp_addr.write() = Some(resp_addr);
        *shared.http_addr.write() = http_addr;

        let mut handles = Vec::new();
        let mut workers = Vec::new();
        for index in 0..threads {
            let (tx, rx) = mpsc::unbounded_channel::<NewConnection>();
            workers.push(tx);
            let shared = shared.clone();
            handles.push(spawn_thread(format!("shoal-worker-{index}"), move || {
                run_worker(shared, rx)
            })?);
        }
        let control_shared = shared.clone();
        handles.push(spawn_thread("shoal-control".into(), move || {
            run_control(control_shared, resp_listener, workers)
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
                run_http(http_shared, listener, threads)
            })?);
        }
        tracing::info!(%resp_addr, http = ?http_addr, threads, "shoal node ready");
        Ok(Server {
            shared,
            threads: handles,
            resp_addr,
            http_addr,
        })
    }

    /// The RESP listener's address.
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    /// The HTTP listener's address, if it runs.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The node's shared state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks the node to stop (as `SHUTDOWN` does).
    pub fn shutdown(&self) {
        self.shared.request_shutdown();
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

fn bind(host: &str, port: u16) -> Result<StdListener, StartError> {
    let addr: SocketAddr = format!("{host}:{port}")
        .parse()
        .or_else(|_| format!("[{host}]:{port}").parse())
        .map_err(|e| StartError::Bind {
            addr: format!("{host}:{port}"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
    let err = |source| StartError::Bind {
        addr: addr.to_string(),
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket.into())
}

fn spawn_thread(
    name: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(StartError::Runtime)
}

fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// A connection accepted by the control thread, for a worker to serve.
struct NewConnection {
    stream: std::net::TcpStream,
    peer: SocketAddr,
}

fn run_worker(shared: Arc<Shared>, mut incoming: mpsc::UnboundedReceiver<NewConnection>) {
    let runtime = current_thread_runtime();
    let local = tokio::task::LocalSet::new();
    let worker = shared.stats.register_worker();
    let mut shutdown = shared.shutdown_signal();
    local.block_on(&runtime, async move {
        loop {
            let connection = tokio::select! {
                c = incoming.recv() => c,
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(NewConnection { stream, peer }) = connection else {
                break;
            };
            let Ok(stream) = TcpStream::from_std(stream) else {
                shared.clients.release();
                continue;
            };
            let local_addr = stream.local_addr().unwrap_or(peer);
            let fd = std::os::fd::AsRawFd::as_raw_fd(&stream);
            let info = shared.clients.register(peer, local_addr, fd);
            // The task owns the registration from here on, so it is undone however the task
            // ends: finished, panicked, or dropped unpolled with the runtime.
            let connection = session::Connection::new(stream, info, shared.clone());
            tokio::task::spawn_local(session::serve(connection, worker.clone()));
        }
    });
    // Dropping the runtime cancels the remaining sessions; each unregisters itself.
}

fn run_control(
    shared: Arc<Shared>,
    listener: StdListener,
    workers: Vec<mpsc::UnboundedSender<NewConnection>>,
) {
    let runtime = current_thread_runtime();
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("a bound listener registers");
        let cron = tokio::spawn(cron(shared.clone()));
        let mut shutdown = shared.shutdown_signal();
        let mut next = 0usize;
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            // As in Redis, a refused connection counts in `rejected_connections` only.
            if !shared.clients.try_reserve(shared.live.maxclients()) {
                shared.stats.rejected_connections.fetch_add(1, Relaxed);
                tokio::spawn(refuse(stream));
                continue;
            }
            shared.stats.connections_received.fetch_add(1, Relaxed);
            let _ = stream.set_nodelay(true);
            let Ok(stream) = stream.into_std() else {
                shared.clients.release();
                continue;
            };
            if workers[next % workers.len()]
                .send(NewConnection { stream, peer })
                .is_err()
            {
                shared.clients.release();
            }
            next = next.wrapping_add(1);
        }
        cron.abort();
    });
}

/// Answers a connection over `maxclients` as Redis does, then closes it. Whatever the client
/// sent meanwhile is read and dropped for a moment first: closing a socket with unread input
/// resets the connection, and the client could lose the error before reading it.
async fn refuse(mut stream: TcpStream) {
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0;
        while total < 64 * 1024 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(REFUSE_LINGER, drain).await;
}

/// How long a refused connection is drained before it is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(200);

/// The cron asks the allocator to give its free memory back to the system when the store has
/// handed back this much since the last upkeep ...
const TRIM_AFTER_BYTES: u64 = 1 << 20;
/// ... and at least this often (buffers of busy connections free memory too).
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// How often idle clients are looked for when `timeout` is set.
const IDLE_SWEEP_EVERY: Duration = Duration::from_millis(100);

/// Periodic work, `hz` times a second: the access clock, active expiry (a quarter of each
/// period at most, repeated sooner while keys keep expiring), rate sampling, closing clients
/// idle for longer than `timeout`, and upkeep (after which the allocator is asked to give
/// memory back to the system when the store freed much).
async fn cron(shared: Arc<Shared>) {
    let mut last_sample = Instant::now();
    let mut last_idle_sweep = Instant::now();
    let mut last_trim = Instant::now();
    loop {
        let period = Duration::from_millis(1000 / shared.live.hz().max(1));
        shared.store.refresh_clock();
        // A fenced primary changes nothing (see `Replication::fenced`); its keys expire on
        // whichever node serves them next.
        let fenced = shared.replication.fenced();
        let cycle = if fenced {
            ExpireCycle::default()
        } else {
            shared.store.expire_cycle(period / 4)
        };
        if last_sample.elapsed() >= Duration::from_millis(100) {
            shared
                .stats
                .sample_rates(shared.started.elapsed().as_millis() as u64);
            last_sample = Instant::now();
        }
        // Sessions do not time their reads (no timer per read on the request path, and a
        // changed `timeout` reaches clients already waiting): idle ones are found here.
        let timeout = shared.live.timeout_seconds();
        if timeout > 0 && last_idle_sweep.elapsed() >= IDLE_SWEEP_EVERY {
            let closed = shared.clients.kill_idle(timeout.saturating_mul(1000));
            if closed > 0 {
                tracing::debug!(closed, "closed idle clients");
            }
            last_idle_sweep = Instant::now();
        }
        if shared.store.maintain().returned_bytes >= TRIM_AFTER_BYTES
            || last_trim.elapsed() >= TRIM_EVERY
        {
            crate::process::trim_heap();
            last_trim = Instant::now();
        }
        if let Some(cluster) = &shared.cluster
            && !fenced
        {
            cluster.drop_step(&shared.store, period / 4);
        }
        shared.replication.keep_alive();
        let pause = if cycle.out_of_time {
            period / 4
        } else {
            period
        };
        tokio::time::sleep(pause).await;
    }
}

fn run_http(shared: Arc<Shared>, listener: StdListener, threads: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(1, 4))
        .thread_name("shoal-http")
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async move {
        let listener = TcpListener::from_std(listener).expect("a bound listener registers");
        let app = crate::http::router(shared.clone());
        if let Err(e) = shoal_http::serve(listener, app, shared.shutdown_signal()).await {
            tracing::error!("HTTP server stopped: {e}");
        }
    });
}
