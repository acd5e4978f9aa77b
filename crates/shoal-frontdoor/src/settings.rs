//! The front door's settings that can change while it runs (`CONFIG SET` on a node), read on
//! the request path from atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

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

impl OutputLimit {
    /// Redis's default for subscribed clients: `pubsub 32mb 8mb 60`.
    pub const PUBSUB_DEFAULT: OutputLimit = OutputLimit {
        hard: 32 << 20,
        soft: 8 << 20,
        soft_seconds: 60,
    };
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
    /// `client-output-buffer-limit` for subscribed clients (class `pubsub`).
    pub pubsub_output: OutputLimit,
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
            pubsub_output: OutputLimit::PUBSUB_DEFAULT,
            maxclients: 10_000,
            timeout_seconds: 0,
        }
    }
}

/// The live settings: [`Limits`] and protected mode in atomics.
#[derive(Debug)]
pub struct Settings {
    max_bulk_len: AtomicUsize,
    max_args: AtomicUsize,
    query_buffer_limit: AtomicUsize,
    output_hard: AtomicUsize,
    output_soft: AtomicUsize,
    output_soft_seconds: AtomicU64,
    pubsub_hard: AtomicUsize,
    pubsub_soft: AtomicUsize,
    pubsub_soft_seconds: AtomicU64,
    maxclients: AtomicUsize,
    timeout_seconds: AtomicU64,
    protected_mode: AtomicBool,
}

/// What a client that is not on the loopback interface reads before its connection closes,
/// while protected mode is on and no password is set: Redis 7's text, byte for byte (its
/// "Setup a an" included).
pub const DENIED: &str = "-DENIED Redis is running in protected mode because protected mode is \
enabled and no password is set for the default user. In this mode connections are only accepted \
from the loopback interface. If you want to connect from external computers to Redis you may \
adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG \
SET protected-mode no' from the loopback interface by connecting to Redis from the same host the \
server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. \
Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the \
protected mode by editing the Redis configuration file, and setting the protected mode option to \
'no', and then restarting the server. 3) If you started the server manually just for testing, \
restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the \
default user. NOTE: You only need to do one of the above things in order for the server to start \
accepting connections from the outside.\r\n";

impl Settings {
    /// Settings with these limits.
    pub fn new(limits: &Limits) -> Settings {
        let settings = Settings {
            max_bulk_len: AtomicUsize::new(0),
            max_args: AtomicUsize::new(0),
            query_buffer_limit: AtomicUsize::new(0),
            output_hard: AtomicUsize::new(0),
            output_soft: AtomicUsize::new(0),
            output_soft_seconds: AtomicU64::new(0),
            pubsub_hard: AtomicUsize::new(0),
            pubsub_soft: AtomicUsize::new(0),
            pubsub_soft_seconds: AtomicU64::new(0),
            maxclients: AtomicUsize::new(0),
            timeout_seconds: AtomicU64::new(0),
            protected_mode: AtomicBool::new(true),
        };
        settings.set_limits(limits);
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
        self.pubsub_hard.store(l.pubsub_output.hard, Relaxed);
        self.pubsub_soft.store(l.pubsub_output.soft, Relaxed);
        self.pubsub_soft_seconds
            .store(l.pubsub_output.soft_seconds, Relaxed);
        self.maxclients.store(l.maxclients, Relaxed);
        self.timeout_seconds.store(l.timeout_seconds, Relaxed);
    }

    /// Turns protected mode on or off (`protected-mode`, on by default as in Redis).
    pub fn set_protected_mode(&self, on: bool) {
        self.protected_mode.store(on, Relaxed);
    }

    /// Whether protected mode is on.
    pub fn protected_mode(&self) -> bool {
        self.protected_mode.load(Relaxed)
    }

    /// Whether a client connecting from `peer` is turned away with [`DENIED`]: protected mode
    /// is on, the `default` user has no password (`default_nopass`), and the client is not on
    /// the loopback interface (as Redis 7.0 decides it: its address is 127.0.0.1 or ::1,
    /// nothing else of 127.0.0.0/8).
    pub fn denies(&self, peer: &std::net::SocketAddr, default_nopass: bool) -> bool {
        if !self.protected_mode() || !default_nopass {
            return false;
        }
        let local = match peer.ip() {
            std::net::IpAddr::V4(ip) => ip == std::net::Ipv4Addr::LOCALHOST,
            std::net::IpAddr::V6(ip) => {
                ip.is_loopback() || ip.to_ipv4_mapped() == Some(std::net::Ipv4Addr::LOCALHOST)
            }
        };
        !local
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

    /// `client-output-buffer-limit` for subscribed clients.
    pub fn pubsub_output_limit(&self) -> OutputLimit {
        OutputLimit {
            hard: self.pubsub_hard.load(Relaxed),
            soft: self.pubsub_soft.load(Relaxed),
            soft_seconds: self.pubsub_soft_seconds.load(Relaxed),
        }
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
    fn protected_mode_turns_away_remote_clients_while_default_has_no_password() {
        let settings = Settings::new(&Limits::default());
        let remote: std::net::SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let local: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(settings.denies(&remote, true));
        assert!(!settings.denies(&local, true));
        assert!(!settings.denies(&remote, false));
        settings.set_protected_mode(false);
        assert!(!settings.denies(&remote, true));
    }
}
