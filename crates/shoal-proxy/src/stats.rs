//! The proxy's own counters, read by `INFO` and `/metrics` (the front door's are in
//! [`shoal_frontdoor::Stats`], the upstream ones are the client's:
//! [`shoal_client::Client::stats`]).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters updated lock-free by every session.
#[derive(Debug, Default)]
pub(crate) struct ProxyStats {
    /// Error replies the proxy made for failures to reach the cluster (`-ERR proxy: ...`,
    /// `-CLUSTERDOWN ...`, `-CROSSSLOT ...` for commands it cannot split).
    pub proxy_errors: AtomicU64,
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
