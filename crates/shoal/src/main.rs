//! `shoal`: the one binary. `shoal server` runs a node; `shoal cluster up` runs a local
//! cluster; `shoal cluster status` shows one; `shoal proxy` runs a proxy in front of one.

mod cli;
mod cluster_cmd;
mod logging;

use anyhow::Context as _;
use clap::Parser as _;

fn main() -> anyhow::Result<()> {
    let cli = cli::Cli::parse();
    match cli.command {
        cli::Command::Server(args) => run_server(*args),
        cli::Command::Cluster(command) => cluster_cmd::run(command),
        cli::Command::Proxy(args) => run_proxy(*args),
    }
}

fn run_proxy(args: cli::ProxyArgs) -> anyhow::Result<()> {
    let mut config = args.to_config()?;
    logging::init(args.log_format, &args.log_level)?;
    let http_clients = config
        .http_port
        .map_or(0, |_| config.http.max_connections as u64);
    let fitted = fitted_maxclients(config.maxclients as u64, http_clients)?;
    config.maxclients = usize::try_from(fitted).unwrap_or(usize::MAX);
    let proxy = shoal_proxy::Proxy::start(config).context("cannot start the proxy")?;
    let mut stopped = proxy.stopped();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, shutting down"),
                _ = terminate.recv() => tracing::info!("terminated, shutting down"),
                _ = stopped.wait_for(|stop| *stop) => tracing::info!("shutdown requested"),
                _ = hangup.recv() => {
                    log_reload(proxy.reload_tls());
                    continue;
                }
            }
            break;
        }
        anyhow::Ok(())
    })?;
    proxy.shutdown();
    proxy.wait();
    Ok(())
}

/// Logs what a `SIGHUP` did to the TLS certificates (the reload logs its own success).
fn log_reload(result: Result<bool, shoal_frontdoor::tls::TlsError>) {
    match result {
        Ok(true) => {}
        Ok(false) => tracing::info!("SIGHUP: no TLS listener, nothing to reload"),
        Err(e) => tracing::error!(
            "SIGHUP: the TLS certificates were not reloaded (the ones in use stay): {e}"
        ),
    }
}

/// `maxclients` fitted to the open-files limit with `http_clients` HTTP clients beside
/// ([`shoal_server::fit_open_files`]): lowered, with a warning, if the limit cannot be raised
/// enough; an error if not even the HTTP clients fit.
fn fitted_maxclients(maxclients: u64, http_clients: u64) -> anyhow::Result<u64> {
    match shoal_server::fit_open_files(maxclients, http_clients) {
        shoal_server::OpenFiles::Enough { .. } => Ok(maxclients),
        shoal_server::OpenFiles::Reduced {
            limit,
            maxclients: fit,
        } => {
            tracing::warn!(
                "maxclients {maxclients} needs at least {} open files with http-maxclients \
                 {http_clients}, but the limit is {limit} ('ulimit -n'): maxclients is reduced \
                 to {fit}; raise 'ulimit -n' for more",
                maxclients + http_clients + shoal_server::RESERVED_FDS,
            );
            Ok(fit)
        }
        shoal_server::OpenFiles::TooFew { limit } => anyhow::bail!(
            "the open-files limit ({limit}, 'ulimit -n') leaves no room for clients with \
             http-maxclients {http_clients}: raise 'ulimit -n' or lower --http-maxclients"
        ),
    }
}

fn run_server(args: cli::ServerArgs) -> anyhow::Result<()> {
    // Before any thread starts: see `use_one_malloc_arena`.
    shoal_server::use_one_malloc_arena();
    let config = args.to_config()?;
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    logging::init(config.log_format, &config.log_level)?;
    match shoal_server::disable_transparent_huge_pages() {
        Ok(true) => tracing::info!(
            "transparent huge pages are on for every process (\"always\"): turned them off for \
             this one, so that memory given back to the system stays given back"
        ),
        Ok(false) => {}
        Err(e) => tracing::warn!(
            "cannot turn transparent huge pages off ({e}): RSS may grow past maxmemory as \
             freed memory is folded into huge pages again"
        ),
    }
    let mut config = config;
    let http_clients = if config.http_port == 0 {
        0
    } else {
        config.http_maxclients
    };
    config.maxclients = fitted_maxclients(config.maxclients, http_clients)?;
    let server = shoal_server::Server::start(config).context("cannot start the node")?;
    let mut stopped = server.stopped();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let signalled = loop {
            break tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    tracing::info!("interrupted, shutting down");
                    true
                }
                _ = terminate.recv() => {
                    tracing::info!("terminated, shutting down");
                    true
                }
                _ = stopped.wait_for(|stop| *stop) => {
                    tracing::info!("shutdown requested");
                    false
                }
                _ = hangup.recv() => {
                    log_reload(server.reload_tls());
                    continue;
                }
            };
        };
        if signalled {
            // A primary hands its shard to a caught-up replica first: no write fails.
            match server.step_down().await {
                Ok(true) => tracing::info!("handed this node's shard to a replica"),
                Ok(false) => {}
                Err(e) => tracing::warn!("could not hand this node's shard over: {e}"),
            }
        }
        anyhow::Ok(())
    })?;
    // A node that stopped because it could not go on (it could not found or join its
    // cluster) exits with that error, not as after a clean stop.
    let failure = server.failure();
    server.shutdown();
    server.wait();
    match failure {
        Some(why) => anyhow::bail!("the node stopped: {why}"),
        None => Ok(()),
    }
}
