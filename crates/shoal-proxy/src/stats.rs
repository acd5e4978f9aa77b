//! The proxy's own counters, read by `INFO` and `/metrics` (the upstream ones are the client's:
//! [`shoal_client::Client::stats`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters updated lock-free by every session.
#[derive(Debug, Default)]
pub struct ProxyStats {
    /// RESP connections accepted.
    pub connections_received: AtomicU64,
    /// RESP connections refused for `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Commands run (local and forwarded).
    pub commands_processed: AtomicU64,
    /// Error replies sent (local, relayed and proxy errors).
    pub error_replies: AtomicU64,
    /// Error replies the proxy made for failures to reach the cluster (`-ERR proxy: ...`,
    /// `-CLUSTERDOWN ...`, `-CROSSSLOT ...` for commands it cannot split).
    pub proxy_errors: AtomicU64,
    /// Clients closed for a protocol error.
    pub protocol_errors: AtomicU64,
    /// Clients closed for exceeding `client-query-buffer-limit`.
    pub query_buffer_disconnections: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
}

impl ProxyStats {
    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// The value of `counter`.
    #[inline]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
