//! The one error type of the kit. Its `Debug` is its `Display`, so a test's `.unwrap()` or
//! `.expect()` prints the whole story (log path, log tail, last cluster status) readably.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use shoal_cluster::bus::BusError;
use shoal_cluster::seed::SeedError;

/// What went wrong while running or observing processes.
#[derive(thiserror::Error)]
pub enum Error {
    /// A process could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The program.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A process exited while it was expected to run.
    #[error("{name} exited ({status}); log {log}:\n{tail}")]
    Exited {
        /// The process's name in the test.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// A bounded wait ran out.
    #[error("timed out after {waited:?} waiting for {what}\n{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The last thing observed (a cluster status, a log tail, the last error).
        detail: String,
    },
    /// A RESP exchange failed or answered something unexpected.
    #[error("RESP {addr}: {reason}")]
    Resp {
        /// The node.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// A cluster bus exchange failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A node's bus address could not be learned.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// The cluster refused or answered something unexpected.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The caller asked for something that cannot be done (no such node, no running node...).
    #[error("{0}")]
    Usage(String),
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Error {
    /// An [`Error::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The kit's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_like_display() {
        let e = Error::Timeout {
            what: "the cluster".into(),
            waited: Duration::from_secs(3),
            detail: "line one\nline two".into(),
        };
        assert_eq!(format!("{e:?}"), format!("{e}"));
        assert!(format!("{e:?}").contains("line one\nline two"));
    }
}
