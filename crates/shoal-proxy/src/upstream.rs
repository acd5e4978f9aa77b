//! What comes back from the cluster, turned into what a client reads: replies re-encoded in
//! the client's protocol, and the client's failures turned into error replies.
//!
//! | [`shoal_client::Error`] | reply |
//! | --- | --- |
//! | `CrossSlot` | `-CROSSSLOT Keys in request don't hash to the same slot` |
//! | `ClusterDown(line)` | the node's `-CLUSTERDOWN ...` / `-TRYAGAIN ...` line |
//! | `SlotUnassigned` | `-CLUSTERDOWN Hash slot not served` (Redis Cluster's text) |
//! | `NoMap` | `-CLUSTERDOWN proxy: no cluster map: <why>` |
//! | `Server(line)` | the node's line |
//! | anything else (timeouts, I/O, lost connections, redirect loops, malformed replies, refused authentication) | `-ERR proxy: <the error>` |

use shoal_client::{Error, Value};
use shoal_frontdoor::{CommandError, error_code};
use shoal_proto::Protocol;
use shoal_proto::reply::encode_value;

/// The error reply a client gets for a failure to get a reply.
pub(crate) fn error_line(err: &Error) -> CommandError {
    let line = match err {
        Error::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".to_string(),
        Error::ClusterDown(line) if starts_with_code(line, &["CLUSTERDOWN", "TRYAGAIN"]) => {
            line.clone()
        }
        Error::ClusterDown(line) => format!("CLUSTERDOWN {line}"),
        Error::SlotUnassigned(_) => "CLUSTERDOWN Hash slot not served".to_string(),
        Error::NoMap(_) => format!("CLUSTERDOWN proxy: {err}"),
        Error::Server(line) => line.clone(),
        other => format!("ERR proxy: {other}"),
    };
    CommandError::Other(line.into())
}

fn starts_with_code(line: &str, codes: &[&str]) -> bool {
    let code = line.split(' ').next().unwrap_or("");
    codes.contains(&code)
}

/// What came of one command sent upstream.
pub(crate) type Reply = Result<Value, Error>;

/// What [`encode_reply`] wrote.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Encoded {
    /// The error code, if the reply is an error (`ERR`, `MOVED`, ...).
    pub error_code: Option<String>,
    /// Whether the proxy made the error, for a failure to reach the cluster.
    pub by_proxy: bool,
}

/// Appends `reply` to `out` in `protocol`, and says whether it is an error and whose.
pub(crate) fn encode_reply(reply: &Reply, protocol: Protocol, out: &mut Vec<u8>) -> Encoded {
    match reply {
        Ok(value) => {
            encode_value(value, protocol, out);
            let error_code = match value {
                Value::Error(line) | Value::BulkError(line) => Some(error_code(line)),
                _ => None,
            };
            Encoded {
                error_code,
                by_proxy: false,
            }
        }
        Err(err) => {
            let error = error_line(err);
            error.write(out);
            Encoded {
                error_code: Some(error.code()),
                by_proxy: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn text(err: &Error) -> String {
        error_line(err).line().into_owned()
    }

    #[test]
    fn client_errors_become_readable_replies() {
        assert_eq!(
            text(&Error::CrossSlot),
            "CROSSSLOT Keys in request don't hash to the same slot"
        );
        assert_eq!(
            text(&Error::ClusterDown(
                "CLUSTERDOWN The cluster is down".into()
            )),
            "CLUSTERDOWN The cluster is down"
        );
        assert_eq!(
            text(&Error::ClusterDown("no primary".into())),
            "CLUSTERDOWN no primary"
        );
        assert_eq!(
            text(&Error::SlotUnassigned(5)),
            "CLUSTERDOWN Hash slot not served"
        );
        assert!(
            text(&Error::NoMap("empty".into())).starts_with("CLUSTERDOWN proxy: no cluster map")
        );
        let timeout = Error::Timeout {
            addr: "127.0.0.1:7000".into(),
            after: Duration::from_secs(2),
        };
        assert_eq!(
            text(&timeout),
            "ERR proxy: 127.0.0.1:7000 did not answer within 2s"
        );
        let io = Error::Io {
            addr: "127.0.0.1:7000".into(),
            source: Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        };
        assert!(text(&io).starts_with("ERR proxy: I/O with 127.0.0.1:7000"));
    }

    #[test]
    fn replies_are_encoded_in_the_client_s_protocol() {
        let mut out = Vec::new();
        let encoded = encode_reply(&Ok(Value::Null), Protocol::Resp3, &mut out);
        assert_eq!((encoded.error_code, encoded.by_proxy), (None, false));
        assert_eq!(out, b"_\r\n");
        out.clear();
        let encoded = encode_reply(
            &Ok(Value::Error(b"WRONGTYPE x".to_vec())),
            Protocol::Resp2,
            &mut out,
        );
        assert_eq!(
            (encoded.error_code.as_deref(), encoded.by_proxy),
            (Some("WRONGTYPE"), false)
        );
        out.clear();
        let encoded = encode_reply(&Err(Error::CrossSlot), Protocol::Resp2, &mut out);
        assert_eq!(
            (encoded.error_code.as_deref(), encoded.by_proxy),
            (Some("CROSSSLOT"), true)
        );
        assert!(out.starts_with(b"-CROSSSLOT "));
    }
}
