//! The client's errors, and which of them a retry may cure.

use std::sync::Arc;
use std::time::Duration;

use shoal_cluster::Slot;
use shoal_proto::reply::Value;

/// What went wrong with a request.
///
/// Errors are cheap to clone (one connection failure fails every request in flight on it).
/// [`Error::is_retryable`] says whether trying again may succeed; [`Error::is_ambiguous`] says
/// whether the command may have run although no reply came.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Connecting failed, or the connection was gone before the request was written: the
    /// command certainly did not run.
    #[error("I/O with {addr}: {source}")]
    Io {
        /// The node (`host:port`).
        addr: String,
        /// The error.
        source: Arc<std::io::Error>,
    },
    /// The connection failed after the request was written, before its reply came: the
    /// command may or may not have run.
    #[error("connection to {addr} lost with the request in flight: {reason}")]
    ConnectionLost {
        /// The node.
        addr: String,
        /// Why the connection ended.
        reason: String,
    },
    /// No reply within the request timeout: the command may or may not have run.
    #[error("{addr} did not answer within {after:?}")]
    Timeout {
        /// The node.
        addr: String,
        /// How long the client waited.
        after: Duration,
    },
    /// The server answered with an error reply (the whole line after `-`, code included).
    #[error("server error: {0}")]
    Server(String),
    /// The keys of a command hash to different slots and the command cannot be split.
    #[error("CROSSSLOT Keys in request don't hash to the same slot")]
    CrossSlot,
    /// The cluster is down (`-CLUSTERDOWN`) or kept answering `-TRYAGAIN` after every retry.
    #[error("cluster unavailable: {0}")]
    ClusterDown(String),
    /// The client has no cluster map (yet): no node to send to.
    #[error("no cluster map: {0}")]
    NoMap(String),
    /// The map has no owner for the slot (after retries and map refreshes).
    #[error("no shard owns slot {0}")]
    SlotUnassigned(Slot),
    /// `-MOVED`/`-ASK` redirections went on past the configured limit.
    #[error("too many redirections ({0}); last to {1}")]
    TooManyRedirects(u32, String),
    /// The server sent something that is not RESP, or not the reply the command expects.
    /// After a malformed reply the connection is dropped.
    #[error("protocol error from {addr}: {reason}")]
    Protocol {
        /// The node.
        addr: String,
        /// What was wrong.
        reason: String,
    },
    /// A well-formed reply of a type the command does not answer with (a typed API call, or
    /// the parts of a split command that do not add up).
    #[error("{command} answered {reply}")]
    UnexpectedReply {
        /// The command.
        command: String,
        /// The reply, shown shortened.
        reply: String,
    },
    /// Authentication (`AUTH` or `HELLO ... AUTH`) was refused.
    #[error("authentication refused by {addr}: {message}")]
    Auth {
        /// The node.
        addr: String,
        /// The server's error line.
        message: String,
    },
    /// The configuration or an argument is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl Error {
    /// Whether trying again may succeed: I/O errors, lost connections, timeouts and an
    /// unavailable cluster. Server error replies, protocol errors and refused authentication
    /// are final.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::ConnectionLost { .. }
                | Error::Timeout { .. }
                | Error::ClusterDown(_)
                | Error::NoMap(_)
                | Error::SlotUnassigned(_)
        )
    }

    /// Whether the command may have run although no reply came (a timeout, or a connection
    /// lost with the request written). A write is retried after such an error only if
    /// [`ClientConfig::retry_writes_after_timeout`](crate::ClientConfig::retry_writes_after_timeout)
    /// is set.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self, Error::ConnectionLost { .. } | Error::Timeout { .. })
    }

    /// The error a server error reply becomes in the typed API: `CLUSTERDOWN` and `TRYAGAIN`
    /// are [`Error::ClusterDown`], `CROSSSLOT` is [`Error::CrossSlot`], the rest
    /// [`Error::Server`].
    pub fn from_server_line(line: &[u8]) -> Error {
        let text = String::from_utf8_lossy(line).into_owned();
        match error_code(line) {
            b"CLUSTERDOWN" | b"TRYAGAIN" => Error::ClusterDown(text),
            b"CROSSSLOT" => Error::CrossSlot,
            _ => Error::Server(text),
        }
    }

    /// [`Error::UnexpectedReply`]: `command` answered `reply`, which is shown shortened (to
    /// about 200 bytes).
    pub fn unexpected_reply(command: &str, reply: &Value) -> Error {
        let mut shown = format!("{reply:?}");
        if shown.len() > 200 {
            let mut end = 200;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            shown.push_str("...");
        }
        Error::UnexpectedReply {
            command: command.to_string(),
            reply: shown,
        }
    }

    pub(crate) fn io(addr: &str, source: std::io::Error) -> Error {
        Error::Io {
            addr: addr.to_string(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn protocol(addr: &str, reason: impl Into<String>) -> Error {
        Error::Protocol {
            addr: addr.to_string(),
            reason: reason.into(),
        }
    }
}

/// The first word of an error line (`MOVED`, `ERR`, ...).
pub(crate) fn error_code(line: &[u8]) -> &[u8] {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lines_map_to_typed_errors() {
        assert!(matches!(
            Error::from_server_line(b"CLUSTERDOWN The cluster is down"),
            Error::ClusterDown(_)
        ));
        assert!(matches!(
            Error::from_server_line(b"CROSSSLOT Keys in request don't hash to the same slot"),
            Error::CrossSlot
        ));
        match Error::from_server_line(b"ERR syntax error") {
            Error::Server(m) => assert_eq!(m, "ERR syntax error"),
            other => panic!("{other:?}"),
        }
        assert_eq!(error_code(b"MOVED 1 a:1"), b"MOVED");
        assert_eq!(error_code(b""), b"");
    }

    #[test]
    fn retryable_and_ambiguous_are_distinct() {
        let io = Error::io("a:1", std::io::ErrorKind::ConnectionRefused.into());
        assert!(io.is_retryable() && !io.is_ambiguous());
        let lost = Error::ConnectionLost {
            addr: "a:1".into(),
            reason: "reset".into(),
        };
        assert!(lost.is_retryable() && lost.is_ambiguous());
        assert!(!Error::Server("ERR x".into()).is_retryable());
        assert!(!Error::protocol("a:1", "bad").is_retryable());
    }
}
