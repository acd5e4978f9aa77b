//! The HTTP/JSON API on the proxy's HTTP port, with a node's paths, bodies and status codes,
//! served through the upstream client:
//!
//! | request | success | via |
//! | --- | --- | --- |
//! | `POST /{key}` `{"value": "...", "ttl_ms": n}` | `204` | `SET key value [PX n]` |
//! | `GET /{key}` | `200 {"value": "..."}` (raw bytes with `Accept: application/octet-stream`), `404 {"error": "not found"}` | `GET key` |
//! | `DELETE /{key}` | `204`, `404` | `DEL key` |
//! | `GET /health` | `200 {"status": "ok"}` | |
//! | `GET /metrics` | `200`, OpenMetrics text | see [`crate::metrics`] |
//!
//! It is a node's API, [`shoal_http`]'s router, over the upstream client: keys are the whole
//! path after `/`, percent-decoded into bytes; a body sent as `application/octet-stream` is
//! stored raw, any other body is read as the JSON object above (`value` a string, `ttl_ms` a
//! positive integer or null, nothing else); `?ttl_ms=n` sets a TTL too (the body's wins); a
//! body over `proto-max-bulk-len` is a `413`; with `requirepass` set, every path but `/health`
//! needs `Authorization: Bearer <password>` or Basic credentials for the user `default`. Every
//! error body is `{"error": "..."}`. Unlike a node, the proxy sets no limit on keys (the nodes
//! do), and refuses a `ttl_ms` past what `PX` takes (`i64::MAX`) as not a valid TTL.
//!
//! Failures of the cluster, as a node's own HTTP API answers for keys it forwards: a node's
//! `-OOM` is `507`; another error reply is `400` with the node's line (or `503` for
//! `-CLUSTERDOWN`/`-TRYAGAIN`/`-LOADING`); no reply at all (timeouts, unreachable nodes, no map
//! or slot owner) is `503` with the text a RESP client would get (`ERR proxy: ...`,
//! `CLUSTERDOWN ...`); a reply of an unexpected type is `502`.

use std::sync::Arc;

use bytes::Bytes;
use shoal_client::{Error as ClientError, Value};
use shoal_cluster::view::ClusterView;
use shoal_frontdoor::metrics::Exporter;
use shoal_http::{ApiError, Backend, HttpApi, HttpStats};

use crate::metrics::ProxyCollector;
use crate::shared::Shared;
use crate::upstream::error_line;

/// The HTTP API of the proxy `shared`, guarded as its configuration says.
pub(crate) fn api(shared: Arc<Shared>) -> HttpApi {
    let settings = shared.config.http.clone();
    HttpApi::new(Upstream { shared }, settings)
}

/// The cluster behind the API, through the upstream client.
struct Upstream {
    shared: Arc<Shared>,
}

impl Backend for Upstream {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ApiError> {
        match run(&self.shared, &[b"GET", key]).await? {
            Value::Bulk(value) => Ok(Some(Bytes::from(value))),
            Value::Null => Ok(None),
            other => Err(unexpected(&other)),
        }
    }

    async fn set(&self, key: &[u8], value: Bytes, ttl_ms: Option<u64>) -> Result<(), ApiError> {
        let ttl = ttl_ms.map(|ms| ms.to_string());
        let mut args: Vec<&[u8]> = vec![b"SET", key, &value];
        if let Some(ttl) = &ttl {
            args.extend([&b"PX"[..], ttl.as_bytes()]);
        }
        match run(&self.shared, &args).await? {
            Value::Simple(ok) if ok == b"OK" => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(&self, key: &[u8]) -> Result<bool, ApiError> {
        match run(&self.shared, &[b"DEL", key]).await? {
            Value::Int(n) => Ok(n > 0),
            other => Err(unexpected(&other)),
        }
    }

    fn cluster_view(
        &self,
    ) -> Option<impl std::future::Future<Output = Result<serde_json::Value, ApiError>> + Send> {
        Some(cluster_view(self.shared.clone()))
    }

    fn metrics_text(&self, http: &Arc<HttpStats>) -> String {
        let collector = ProxyCollector::new(self.shared.clone(), http.clone());
        Exporter::new(collector).render()
    }

    fn acl(&self) -> &shoal_frontdoor::Acl {
        &self.shared.door.acl
    }

    fn max_key_size(&self) -> usize {
        usize::MAX
    }

    fn max_body(&self) -> usize {
        self.shared.config.proto_max_bulk_len
    }

    fn max_ttl_ms(&self) -> u64 {
        i64::MAX as u64
    }
}

/// Sends a command; error replies become errors.
async fn run(shared: &Shared, args: &[&[u8]]) -> Result<Value, ApiError> {
    match shared.client.command(args).await {
        Ok(Value::Error(line) | Value::BulkError(line)) => Err(reply_error(&line)),
        Ok(value) => Ok(value),
        Err(err) => Err(upstream_error(&err)),
    }
}

/// The error for a failure to get a reply.
fn upstream_error(err: &ClientError) -> ApiError {
    let line = error_line(err).line().into_owned();
    match err {
        ClientError::CrossSlot | ClientError::Server(_) => ApiError::Refused(line),
        _ => ApiError::Unavailable(line),
    }
}

/// The error for a node's error reply.
fn reply_error(line: &[u8]) -> ApiError {
    let text = String::from_utf8_lossy(line).into_owned();
    let code = text.split(' ').next().unwrap_or("");
    match code {
        "OOM" => ApiError::OutOfMemory(text),
        "CLUSTERDOWN" | "TRYAGAIN" | "LOADING" | "MOVED" | "ASK" => ApiError::Unavailable(text),
        _ => ApiError::Refused(text),
    }
}

/// A reply of a type the request does not expect.
fn unexpected(value: &Value) -> ApiError {
    ApiError::BadGateway(format!("unexpected reply from the cluster: {value:?}"))
}

/// `GET /cluster` on the proxy: the controller leader's status, asked over the cluster bus with
/// the proxy's own credentials, as a node's dashboard shows it; the map the proxy routes by,
/// and why, when no leader answers.
async fn cluster_view(shared: Arc<Shared>) -> Result<serde_json::Value, ApiError> {
    let view = match shared.client.cluster_status().await {
        Ok(status) => ClusterView::of_status(&status),
        Err(e) => {
            let why = format!("{e}: the map as the proxy holds it, without the nodes' reports");
            ClusterView::of_map(&shared.client.map(), None, &[], Some(why))
        }
    };
    serde_json::to_value(view).map_err(|e| ApiError::Unavailable(format!("the view: {e}")))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn cluster_failures_have_the_node_s_codes() {
        let timeout = ClientError::Timeout {
            addr: "a:1".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            upstream_error(&timeout).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            upstream_error(&ClientError::SlotUnassigned(1)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            reply_error(b"OOM command not allowed").status(),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            reply_error(b"ERR key is too large").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
