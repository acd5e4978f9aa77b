//! The front door's settings that can change while it runs (`CONFIG SET` on a node), read on
//! the request path from atomics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use parking_lot::RwLock;

/// Redis's `client-output-buffer-limit` for normal clients: a client whose pending replies
/// exceed `hard` bytes, or stay above `soft` bytes for `soft_seconds`, is disconnected. Zeros
/// disable a limit (Redis's default for normal clients, `0 0 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputLimit {
    /// The hard limit in bytes (0: none).
    pub hard: usize,
    /// The soft limit in bytes (0: none).
    pub soft: usize,
    /// How long the soft limit may be exceeded.
    pub soft_seconds: u64,
}

/// The front door's limits, as plain values (see [`Settings`] for the live copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `proto-max-bulk-len`: the largest bulk string a client may send.
    pub max_bulk_len: usize,
    /// `proto-max-multibulk-len`: the most arguments in one command.
    pub max_args: usize,
    /// `client-query-buffer-limit`: the largest unprocessed input before the client is closed.
    pub query_buffer_limit: usize,
    /// `client-output-buffer-limit` for normal clients.
    pub output: OutputLimit,
    /// `maxclients`.
    pub maxclients: usize,
    /// `timeout`: seconds a client may stay idle (0: forever).
    pub timeout_seconds: u64,
}

impl Default for Limits {
    /// Redis's defaults.
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: i32::MAX as usize,
            query_buffer_limit: 1024 * 1024 * 1024,
            output: OutputLimit::default(),
            maxclients: 10_000,
            timeout_seconds: 0,
        }
    }
}

/// The live settings: [`Limits`] in atomics, and the `default` user's password.
#[derive(Debug)]
pub struct Settings {
    max_bulk_len: AtomicUsize,
    max_args: AtomicUsize,
    query_buffer_limit: AtomicUsize,
    output_hard: AtomicUsize,
    output_soft: AtomicUsize,
    output_soft_seconds: AtomicU64,
    maxclients: AtomicUsize,
    timeout_seconds: AtomicU64,
    requirepass: RwLock<Option<Arc<str>>>,
}

impl Settings {
    /// Settings with these limits and password (`None` or empty: none).
    pub fn new(limits: &Limits, requirepass: Option<&str>) -> Settings {
        let settings = Settings {
            max_bulk_len: AtomicUsize::new(0),
            max_args: AtomicUsize::new(0),
            query_buffer_limit: AtomicUsize::new(0),
            output_hard: AtomicUsize::new(0),
            output_soft: AtomicUsize::new(0),
            output_soft_seconds: AtomicU64::new(0),
            maxclients: AtomicUsize::new(0),
            timeout_seconds: AtomicU64::new(0),
            requirepass: RwLock::new(None),
        };
        settings.set_limits(limits);
        settings.set_password(requirepass);
        settings
    }

    /// Applies new limits; sessions pick them up with their next command.
    pub fn set_limits(&self, l: &Limits) {
        self.max_bulk_len.store(l.max_bulk_len, Relaxed);
        self.max_args.store(l.max_args, Relaxed);
        self.query_buffer_limit.store(l.query_buffer_limit, Relaxed);
        self.output_hard.store(l.output.hard, Relaxed);
        self.output_soft.store(l.output.soft, Relaxed);
        self.output_soft_seconds
            .store(l.output.soft_seconds, Relaxed);
        self.maxclients.store(l.maxclients, Relaxed);
        self.timeout_seconds.store(l.timeout_seconds, Relaxed);
    }

    /// Sets the `default` user's password (`requirepass`; `None` or empty: none). Connections
    /// already authenticated stay so, as in Redis.
    pub fn set_password(&self, password: Option<&str>) {
        let password = password.filter(|p| !p.is_empty());
        *self.requirepass.write() = password.map(Arc::from);
    }

    /// The `default` user's password, if one is set (for the HTTP API's credentials).
    pub fn password(&self) -> Option<Arc<str>> {
        self.requirepass.read().clone()
    }

    /// Whether clients must authenticate.
    #[inline]
    pub fn password_required(&self) -> bool {
        self.requirepass.read().is_some()
    }

    /// Whether `user` and `password` are valid credentials (the `default` user is the only
    /// one; without a password, any password is). Compared in constant time.
    pub fn check_password(&self, user: &[u8], password: &[u8]) -> bool {
        if user != b"default" {
            return false;
        }
        match &*self.requirepass.read() {
            None => true,
            Some(expected) => constant_time_eq(expected.as_bytes(), password),
        }
    }

    /// The parser limits.
    #[inline]
    pub fn parser_limits(&self) -> shoal_proto::Limits {
        shoal_proto::Limits {
            max_bulk_len: self.max_bulk_len.load(Relaxed),
            max_args: self.max_args.load(Relaxed),
        }
    }

    /// `proto-max-bulk-len`: also the largest string a command may build.
    #[inline]
    pub fn max_bulk_len(&self) -> usize {
        self.max_bulk_len.load(Relaxed)
    }

    /// `client-query-buffer-limit`.
    #[inline]
    pub fn query_buffer_limit(&self) -> usize {
        self.query_buffer_limit.load(Relaxed)
    }

    /// `client-output-buffer-limit` for normal clients: (hard, soft, soft seconds).
    #[inline]
    pub fn output_limits(&self) -> (usize, usize, u64) {
        (
            self.output_hard.load(Relaxed),
            self.output_soft.load(Relaxed),
            self.output_soft_seconds.load(Relaxed),
        )
    }

    /// `maxclients`.
    pub fn maxclients(&self) -> usize {
        self.maxclients.load(Relaxed)
    }

    /// `timeout` in seconds (0: none).
    pub fn timeout_seconds(&self) -> u64 {
        self.timeout_seconds.load(Relaxed)
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_for_the_default_user_only() {
        let settings = Settings::new(&Limits::default(), Some("s3cret"));
        assert!(settings.password_required());
        assert!(settings.check_password(b"default", b"s3cret"));
        assert!(!settings.check_password(b"default", b"s3cre"));
        assert!(!settings.check_password(b"admin", b"s3cret"));
        settings.set_password(Some(""));
        assert!(!settings.password_required());
        assert!(settings.check_password(b"default", b"anything"));
    }
}
