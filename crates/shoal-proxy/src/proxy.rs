//! Starting and stopping a proxy: the listeners, the runtime, the upstream client.
//!
//! [`Proxy::start`] binds the listeners, then starts a thread that owns a multi-thread tokio
//! runtime (`threads` workers). On it the upstream [`Client`] connects to the cluster (the
//! start fails if no map arrives in time), connections to every node are opened ahead of the
//! first request (and again whenever the map changes), and the accept loop hands each client
//! its own task.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use shoal_client::Client;
use shoal_frontdoor::listen::{Accepted, BindError, Ports, accept_loop, bind_all, log_ready};
use shoal_frontdoor::tls::{TlsAcceptor, TlsError};
use shoal_frontdoor::{Door, session};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ConfigError, ProxyConfig};
use crate::http;
use crate::shared::Shared;
use crate::stats::ProxyStats;
use shoal_client::all_nodes;

/// How long the runtime waits for tasks to finish when the proxy stops.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not bind.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The runtime or its thread could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// The cluster could not be reached (no map arrived from the seeds in time).
    #[error("cannot reach the cluster: {0}")]
    Cluster(#[from] shoal_client::Error),
    /// The TLS certificate, key or CA cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ACL file (`aclfile`) cannot be loaded.
    #[error("cannot start because of ACL errors: {0}")]
    Acl(String),
    /// The access log (`access-log`) cannot be opened.
    #[error(transparent)]
    AccessLog(#[from] shoal_frontdoor::access_log::AccessLogError),
}

/// A running proxy. Dropping it asks it to stop (as [`Proxy::shutdown`]).
pub struct Proxy {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    tls_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("resp_addr", &self.shared.resp_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Binds the listeners, connects to the cluster and starts serving. Returns once the
    /// proxy accepts connections, with the cluster's map in hand; it blocks the calling thread
    /// meanwhile (from async code, call it in `spawn_blocking`).
    ///
    /// ```no_run
    /// use shoal_client::BusSecret;
    /// use shoal_proxy::{Proxy, ProxyConfig};
    ///
    /// let proxy = Proxy::start(ProxyConfig {
    ///     port: 6380,
    ///     cluster: vec!["127.0.0.1:7000".into()],
    ///     cluster_secret: Some(BusSecret::load("/etc/shoal/cluster-secret".as_ref())?),
    ///     ..ProxyConfig::default()
    /// })?;
    /// println!("redis-cli -p {} mget a b c", proxy.resp_addr().port());
    /// proxy.shutdown();
    /// proxy.wait();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(config: ProxyConfig) -> Result<Proxy, StartError> {
        config.validate()?;
        // The certificate and key are read before any port is taken.
        let tls = match config.serves_tls() {
            true => Some(Arc::new(TlsAcceptor::new(&config.tls)?)),
            false => None,
        };
        let upstream = config.upstream_config()?;
        let ports = Ports {
            resp: config.serves_plain().then_some(config.port),
            tls: config.tls_port,
            http: config.http_port,
        };
        let mut bound = bind_all(&config.bind, ports)?;
        let resp_addr = bound.client_addr();
        let tls_addr = bound.tls.as_ref().map(|(_, addr)| *addr);
        let http_addr = bound.http.as_ref().map(|(_, addr)| *addr);
        let threads = config.effective_threads();
        log_ready("proxy", &bound, threads);
        let mut client_listeners = Vec::new();
        if let Some((listener, _)) = bound.resp.take() {
            client_listeners.push((listener, None));
        }
        if let Some((listener, _)) = bound.tls.take() {
            client_listeners.push((listener, tls.clone()));
        }
        let http_listener = bound.http.take().map(|(listener, _)| listener);
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<Arc<Shared>, StartError>>();
        let thread = std::thread::Builder::new()
            .name("shoal-proxy".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("shoal-proxy-worker")
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(StartError::Runtime(e)));
                        return;
                    }
                };
                runtime.block_on(run(
                    config,
                    upstream,
                    client_listeners,
                    resp_addr,
                    http_listener,
                    tls,
                    ready_tx,
                ));
                runtime.shutdown_timeout(STOP_GRACE);
            })
            .map_err(StartError::Runtime)?;
        let shared = match ready_rx.recv() {
            Ok(Ok(shared)) => shared,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(StartError::Runtime(std::io::Error::other(
                    "the proxy's thread ended before it started serving",
                )));
            }
        };
        Ok(Proxy {
            shared,
            thread: Some(thread),
            tls_addr,
            http_addr,
        })
    }

    /// Where the proxy listens for RESP clients (the port picked, if port 0 was asked for).
    pub fn resp_addr(&self) -> SocketAddr {
        self.shared.resp_addr
    }

    /// Where the proxy listens for TLS clients, if it does.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the TLS certificate, key and CA files again (`SIGHUP`): new handshakes use
    /// them, established connections keep theirs; if they do not work, the ones in use stay
    /// and the error says why. `Ok(false)` if the proxy serves no TLS.
    pub fn reload_tls(&self) -> Result<bool, TlsError> {
        let Some(tls) = &self.shared.tls else {
            return Ok(false);
        };
        tls.reload(&self.shared.config.tls)?;
        tracing::info!(cert = %self.shared.config.tls.cert_file, "TLS certificates reloaded");
        Ok(true)
    }

    /// Where the proxy's HTTP API listens, if it has one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The upstream client every command goes through (its map and counters).
    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// A receiver that turns true once the proxy is asked to stop.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.shared.door.shutdown_signal()
    }

    /// Asks the proxy to stop: it stops accepting, and closes every connection.
    pub fn shutdown(&self) {
        self.shared.door.request_shutdown();
    }

    /// Waits until the proxy has stopped (after [`Proxy::shutdown`]).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Everything that runs on the proxy's runtime, until the proxy stops.
async fn run(
    config: ProxyConfig,
    upstream: shoal_client::ClientConfig,
    client_listeners: Vec<(StdListener, Option<Arc<TlsAcceptor>>)>,
    resp_addr: SocketAddr,
    http_listener: Option<StdListener>,
    tls: Option<Arc<TlsAcceptor>>,
    ready: std_mpsc::Sender<Result<Arc<Shared>, StartError>>,
) {
    let listeners = client_listeners
        .into_iter()
        .map(|(listener, tls)| Ok((TcpListener::from_std(listener)?, tls)))
        .collect::<std::io::Result<Vec<_>>>()
        .and_then(|clients| {
            let http = http_listener.map(TcpListener::from_std).transpose()?;
            Ok((clients, http))
        });
    let (client_listeners, http_listener) = match listeners {
        Ok(listeners) => listeners,
        Err(e) => {
            let _ = ready.send(Err(StartError::Runtime(e)));
            return;
        }
    };
    let client = match Client::connect(upstream).await {
        Ok(client) => client,
        Err(e) => {
            let _ = ready.send(Err(StartError::Cluster(e)));
            return;
        }
    };
    let door = Door::new(config.door_limits(), config.requirepass.as_deref());
    door.settings.set_protected_mode(config.protected_mode);
    if let Some(path) = &config.aclfile {
        door.acl.set_file(Some(path.clone()));
        if let Err(e) = door.acl.load_file() {
            let e = e.strip_prefix("ERR ").unwrap_or(&e).to_string();
            let _ = ready.send(Err(StartError::Acl(e)));
            return;
        }
    }
    if let Some(path) = &config.access_log {
        let log = shoal_frontdoor::access_log::AccessLog::open(
            path,
            config.access_log_sample,
            config.access_log_max_size,
        );
        match log {
            Ok(log) => {
                let _ = door.access_log.set(log);
            }
            Err(e) => {
                let _ = ready.send(Err(StartError::AccessLog(e)));
                return;
            }
        }
    }
    let shared = Arc::new(Shared {
        config,
        client,
        door: Arc::new(door),
        stats: ProxyStats::default(),
        resp_addr,
        tls,
    });
    // Connections to the nodes are opened before the first client arrives, so its first
    // commands do not wait for a connect.
    warm_up(&shared.client).await;
    crate::pubsub::relay(&shared.door, &shared.client);
    tokio::spawn(follow_map(shared.client.clone()));
    let door = shared.door.clone();
    tokio::spawn(async move { door.run_ticks().await });
    if let Some(listener) = http_listener {
        tokio::spawn(serve_http(shared.clone(), listener));
    }
    if ready.send(Ok(shared.clone())).is_err() {
        return;
    }
    let loops = client_listeners
        .into_iter()
        .map(|(listener, tls)| accept(shared.clone(), listener, tls));
    futures_util::future::join_all(loops).await;
}

/// Opens a connection to every node of the map (a `PING` each; failures are for the
/// client's retries to deal with later).
async fn warm_up(client: &Client) {
    let ping = [Bytes::from_static(b"PING")];
    let nodes = all_nodes(&client.map());
    let _ = tokio::time::timeout(
        client.config().connect_timeout,
        client.on_each(&nodes, &ping),
    )
    .await;
}

/// Warms up connections to the nodes of every new map.
async fn follow_map(client: Client) {
    let mut maps = client.subscribe_map();
    while maps.changed().await.is_ok() {
        warm_up(&client).await;
    }
}

/// The HTTP API: plain HTTP, or HTTPS with `http-tls`.
async fn serve_http(shared: Arc<Shared>, listener: TcpListener) {
    let stop = shared.door.shutdown_signal();
    let tls = shared.tls.clone().filter(|_| shared.config.http_tls);
    let api = http::api(shared);
    let served = match tls {
        None => api.serve(listener, stop).await,
        Some(tls) => api.serve_tls(listener, tls, stop).await,
    };
    if let Err(e) = served {
        tracing::error!("HTTP server stopped: {e}");
    }
}

/// Accepts RESP clients until the proxy stops, each served by its own task (which runs the
/// TLS handshake first on the TLS port).
async fn accept(shared: Arc<Shared>, listener: TcpListener, tls: Option<Arc<TlsAcceptor>>) {
    let door = shared.door.clone();
    accept_loop(door, listener, tls.clone(), |stream, reservation| {
        let accepted = Accepted::register(reservation, stream);
        let shared = shared.clone();
        match tls.clone() {
            None => {
                tokio::spawn(session::serve(shared, accepted));
            }
            Some(tls) => {
                tokio::spawn(async move {
                    if let Some(accepted) = accepted.secure(&tls).await {
                        session::serve(shared, accepted).await;
                    }
                });
            }
        }
    })
    .await;
}
