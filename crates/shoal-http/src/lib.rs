//! Shoal's HTTP/JSON API, written once for a node and for the proxy, which serve it over
//! their own keyspace by implementing [`Backend`] (a node: its store, or the key's owner in
//! its cluster; the proxy: its upstream client) and serving [`router`].
//!
//! | request | success | notes |
//! | --- | --- | --- |
//! | `POST /{key}` | `204` | stores a value (see below) |
//! | `GET /{key}` | `200 {"value": "..."}` | raw bytes with `Accept: application/octet-stream` |
//! | `DELETE /{key}` | `204` | `404` if the key did not exist |
//! | `GET /health` | `200 {"status": "ok"}`, or `200 {"status": "degraded", "reason": "..."}` while it serves with something wrong | `503 {"status": "unavailable", "reason": "..."}` while the backend cannot serve ([`Backend::health`]) |
//! | `GET /metrics` | `200`, OpenMetrics text | [`Backend::metrics_text`] |
//! | `GET /cluster` | `200`, the cluster as JSON | [`Backend::cluster_view`]; `404` if the backend has none |
//! | `GET /dashboard` | `200`, an HTML page that draws `/cluster` every second | see `dashboard.rs`; `404` as `/cluster` |
//!
//! **Keys** are the whole path after the first `/`, percent-decoded into bytes (`%2F` is `/`,
//! `%FF` is the byte 0xFF, `+` stays `+`), so keys may contain `/` and any binary byte. A `%`
//! not followed by two hex digits is a `400`. The paths `/health`, `/metrics`, `/cluster` and
//! `/dashboard` are the endpoints above, so the keys `health`, `metrics`, `cluster` and
//! `dashboard` cannot be reached over HTTP by those names (they can be spelt `/%68ealth`,
//! `/%6Detrics`, `/%63luster` and `/%64ashboard`). An empty key (`/`) is a `400`, and so is a key longer
//! than [`Backend::max_key_size`], whatever the method.
//!
//! **Writing.** A body whose `Content-Type` is `application/octet-stream` is stored as is; any
//! other body, whatever its content type (or none, as `curl -d` sends), is read as JSON: an
//! object `{"value": "<string>", "ttl_ms": <positive integer>}`. `value` is required and must
//! be a JSON string (stored as its UTF-8 bytes); `ttl_ms` may be left out or `null`; any other
//! field is rejected with a `400` (so a misspelt `"ttl"` is not silently ignored). The query
//! parameter `?ttl_ms=N` sets a TTL for either kind of body; the body's `ttl_ms` wins when both
//! are given; other query parameters are ignored. Without a TTL, a write clears any TTL the key
//! had (as `SET` does).
//!
//! **Reading.** `GET` answers `{"value": "..."}`; a value that is not valid UTF-8 gets a `406`
//! asking for `Accept: application/octet-stream`, which returns the raw bytes with that content
//! type.
//!
//! **Limits and errors.** A body larger than [`Backend::max_body`] is a `413` (a refused body
//! of up to 8 MiB is still read and dropped, so the client gets the answer rather than a
//! connection reset). Every error body is `{"error": "..."}` with `content-type:
//! application/json`; see [`ApiError`] for each status.
//!
//! **Authentication and permissions.** Requests are checked against the front door's ACL
//! users ([`Backend::acl`]). When the `default` user has a password, every request but
//! `GET /health` must authenticate, with HTTP Basic credentials `user:password` (what
//! `curl -u alice:<password>` sends; an empty user is `default`) or `Authorization: Bearer
//! <password>` (the `default` user's) or `Bearer <user>:<password>`; otherwise it gets a `401`
//! with `WWW-Authenticate`. The user then needs the permissions of the command a request maps
//! to (`GET` → `get`, `POST` → `set`, `DELETE` → `del`) on its key, or gets a `403`;
//! `/metrics`, `/cluster` and `/dashboard` need no permission beyond authenticating.
//!
//! **HTTPS.** [`HttpApi::serve_tls`] serves the same router over TLS with a node's or a proxy's
//! [`shoal_frontdoor::tls::TlsAcceptor`] (its certificate, reloaded with it, and its client
//! certificate rule), running each handshake in the connection's own task.
//!
//! **Counting.** Every request is counted (method, status code, latency) in the router's own
//! [`HttpStats`] (per router rather than a `static`, so several servers in one process, as in
//! tests, each count their own), which [`Backend::metrics_text`] is given to show on the
//! `/metrics` page with [`HttpStats::encode`]; [`shoal_frontdoor::metrics`] has the rest of
//! what such a page is made with.

mod app;
pub mod auth;
mod dashboard;
mod error;
mod guard;
mod inflight;
pub mod request;
mod serve;
mod settings;
mod stats;

pub use app::{Backend, Health, HttpApi, router};
pub use error::ApiError;
pub use serve::serve;
pub use settings::{AllowedHosts, HttpSettings};
pub use stats::ConnectionStats;
pub use stats::HttpStats;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::future::Future;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    type Keys = HashMap<Vec<u8>, (Bytes, Option<u64>)>;

    /// A keyspace in a map (shared with the test), with small limits.
    #[derive(Default)]
    struct Memory {
        keys: Arc<Mutex<Keys>>,
        acl: shoal_frontdoor::Acl,
        health: Health,
        /// What `/cluster` answers (none: the backend has no view).
        view: Option<Result<serde_json::Value, ApiError>>,
    }

    impl Memory {
        fn keys(&self) -> std::sync::MutexGuard<'_, Keys> {
            self.keys.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    impl Backend for Memory {
        async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ApiError> {
            if key == b"down" {
                return Err(ApiError::Unavailable("CLUSTERDOWN x".into()));
            }
            Ok(self.keys().get(key).map(|(v, _)| v.clone()))
        }

        async fn set(&self, key: &[u8], value: Bytes, ttl_ms: Option<u64>) -> Result<(), ApiError> {
            self.keys().insert(key.to_vec(), (value, ttl_ms));
            Ok(())
        }

        async fn delete(&self, key: &[u8]) -> Result<bool, ApiError> {
            Ok(self.keys().remove(key).is_some())
        }

        fn metrics_text(&self, http: &Arc<HttpStats>) -> String {
            let count = |method, status| http.requests(method, status);
            format!(
                "post_204 {}\nget_200 {}\nget_404 {}\nother_405 {}\n# EOF\n",
                count("POST", 204),
                count("GET", 200),
                count("GET", 404),
                count("other", 405)
            )
        }

        fn acl(&self) -> &shoal_frontdoor::Acl {
            &self.acl
        }

        fn max_key_size(&self) -> usize {
            8
        }

        fn max_body(&self) -> usize {
            64
        }

        fn max_ttl_ms(&self) -> u64 {
            1000
        }

        fn health(&self) -> Health {
            self.health.clone()
        }

        fn cluster_view(
            &self,
        ) -> Option<impl Future<Output = Result<serde_json::Value, ApiError>> + Send> {
            let view = self.view.as_ref()?.as_ref().map_err(|e| match e {
                ApiError::Unavailable(why) => ApiError::Unavailable(why.clone()),
                _ => ApiError::NoRoute,
            });
            Some(std::future::ready(view.cloned()))
        }
    }

    /// The router over `backend`, and a view of the backend's keys.
    fn app(backend: Memory) -> (Memory, Router) {
        let view = Memory {
            keys: backend.keys.clone(),
            acl: shoal_frontdoor::Acl::default(),
            health: Health::Ok,
            view: None,
        };
        (view, router(backend))
    }

    async fn call(
        router: &Router,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> (StatusCode, Vec<(String, String)>, String) {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::from(body)).expect("a request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn writes_reads_and_deletes_reach_the_backend() {
        let (backend, router) = app(Memory::default());
        let (status, ..) = call(&router, "POST", "/a%2Fb?ttl_ms=5", &[], r#"{"value":"v"}"#).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        assert_eq!(
            backend.keys().get(&b"a/b"[..]).cloned(),
            Some((Bytes::from("v"), Some(5)))
        );
        let body_ttl = r#"{"value":"w","ttl_ms":7}"#;
        call(&router, "POST", "/a%2Fb?ttl_ms=5", &[], body_ttl).await;
        assert_eq!(
            backend.keys()[&b"a/b"[..]].1,
            Some(7),
            "the body's ttl wins"
        );
        let (status, headers, body) = call(&router, "GET", "/a/b", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, r#"{"value":"w"}"#);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));

        let raw = [("content-type", "application/octet-stream")];
        call(&router, "POST", "/bin", &raw, "\u{0}\u{1}").await;
        assert_eq!(backend.keys()[&b"bin"[..]].1, None);
        let accept = [("accept", "application/octet-stream")];
        let (status, headers, body) = call(&router, "GET", "/bin", &accept, "").await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "\u{0}\u{1}"));
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/octet-stream")
        );
        backend
            .keys()
            .insert(b"bad".to_vec(), (Bytes::from_static(b"\xff"), None));
        let (status, ..) = call(&router, "GET", "/bad", &[], "").await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE);

        let (status, ..) = call(&router, "DELETE", "/bin", &[], "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _, body) = call(&router, "DELETE", "/bin", &[], "").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#)
        );
        let (status, _, body) = call(&router, "GET", "/down", &[], "").await;
        assert_eq!(
            (status, body.as_str()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"CLUSTERDOWN x"}"#
            )
        );
    }

    #[tokio::test]
    async fn bad_requests_are_refused_before_the_backend() {
        let (backend, router) = app(Memory::default());
        let cases: [(&str, &str, &'static str, StatusCode, &str); 8] = [
            (
                "GET",
                "/",
                "",
                StatusCode::BAD_REQUEST,
                "key must not be empty",
            ),
            (
                "GET",
                "/%zz",
                "",
                StatusCode::BAD_REQUEST,
                "key is not validly percent-encoded",
            ),
            (
                "GET",
                "/123456789",
                "",
                StatusCode::BAD_REQUEST,
                "key is too large (max-key-size is 8 bytes)",
            ),
            (
                "PUT",
                "/k",
                "",
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            ),
            (
                "POST",
                "/health",
                "",
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            ),
            (
                "POST",
                "/k?ttl_ms=1001",
                r#"{"value":"v"}"#,
                StatusCode::BAD_REQUEST,
                "ttl_ms must be a positive integer",
            ),
            (
                "POST",
                "/k",
                r#"{"value":"v","ttl_ms":1001}"#,
                StatusCode::BAD_REQUEST,
                "ttl_ms must be a positive integer",
            ),
            (
                "POST",
                "/k",
                r#"{"value":"01234567890123456789012345678901234567890123456789012345678901234567890"}"#,
                StatusCode::PAYLOAD_TOO_LARGE,
                "body is too large (proto-max-bulk-len is 64 bytes)",
            ),
        ];
        for (method, uri, body, status, error) in cases {
            let (got, headers, text) = call(&router, method, uri, &[], body).await;
            assert_eq!(got, status, "{method} {uri}");
            let expected = serde_json::json!({ "error": error }).to_string();
            assert_eq!(text, expected, "{method} {uri}");
            assert_eq!(header(&headers, "content-type"), Some("application/json"));
        }
        assert!(backend.keys().is_empty());
    }

    fn with_password(password: &str) -> shoal_frontdoor::Acl {
        let acl = shoal_frontdoor::Acl::default();
        acl.set_default_password(Some(password));
        acl
    }

    #[tokio::test]
    async fn a_password_protects_every_endpoint_but_health() {
        let (_, router) = app(Memory {
            acl: with_password("s3cret"),
            ..Memory::default()
        });
        let (status, headers, _) = call(&router, "GET", "/k", &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenges: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(challenges, ["Bearer", "Basic realm=\"shoal\""]);
        let (status, ..) = call(&router, "GET", "/metrics", &[], "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let wrong = [("authorization", "Bearer s3cre")];
        let (status, ..) = call(&router, "GET", "/k", &wrong, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _, body) = call(&router, "GET", "/health", &[], "").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, r#"{"status":"ok"}"#)
        );
        let bearer = [("authorization", "Bearer s3cret")];
        let (status, ..) = call(&router, "GET", "/k", &bearer, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // "default:s3cret"
        let basic = [("authorization", "Basic ZGVmYXVsdDpzM2NyZXQ=")];
        let (status, ..) = call(&router, "GET", "/k", &basic, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn acl_users_are_authenticated_and_their_permissions_checked() {
        let acl = with_password("s3cret");
        // alice may read and write keys under a:, and only read r:.
        acl.set_user(b"alice", &["on", ">pw", "~a:*", "%R~r:*", "+get", "+set"])
            .unwrap();
        let (view, router) = app(Memory {
            acl,
            ..Memory::default()
        });
        // "alice:pw" and "alice:no" in base64.
        let alice = [("authorization", "Basic YWxpY2U6cHc=")];
        let wrong = [("authorization", "Basic YWxpY2U6bm8=")];
        let started = std::time::Instant::now();
        let (status, headers, _) = call(&router, "GET", "/a:1", &wrong, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(200),
            "wrong credentials are answered slowly"
        );
        assert!(header(&headers, "www-authenticate").is_some());
        let (status, ..) = call(&router, "POST", "/a:1", &alice, r#"{"value":"v"}"#).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, ..) = call(&router, "GET", "/a:1", &alice, "").await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = call(&router, "POST", "/r:1", &alice, r#"{"value":"v"}"#).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let expected = serde_json::json!({
            "error": "NOPERM this user has no permissions to access one of the keys used as arguments"
        });
        assert_eq!(body, expected.to_string());
        let (status, ..) = call(&router, "GET", "/r:1", &alice, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "reading r:* is allowed");
        let (status, _, body) = call(&router, "DELETE", "/a:1", &alice, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let expected = serde_json::json!({
            "error": "NOPERM this user has no permissions to run the 'del' command"
        });
        assert_eq!(body, expected.to_string());
        let bearer = [("authorization", "Bearer alice:pw")];
        let (status, ..) = call(&router, "GET", "/a:1", &bearer, "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(view.keys().len(), 1, "the denied write changed nothing");
    }

    #[tokio::test]
    async fn health_is_a_503_with_the_reason_while_the_backend_cannot_serve() {
        let (_, router) = app(Memory {
            acl: with_password("s3cret"),
            health: Health::Unavailable("joining the cluster".into()),
            ..Memory::default()
        });
        let (status, _, body) = call(&router, "GET", "/health", &[], "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "unavailable", "reason": "joining the cluster"})
        );
    }

    #[tokio::test]
    async fn health_is_a_200_saying_degraded_with_the_reason_while_the_backend_serves_degraded() {
        let (_, router) = app(Memory {
            health: Health::Degraded("the controller has lost its majority".into()),
            ..Memory::default()
        });
        let (status, _, body) = call(&router, "GET", "/health", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"status": "degraded", "reason": "the controller has lost its majority"})
        );
    }

    #[tokio::test]
    async fn every_request_is_counted_and_metrics_come_from_the_backend() {
        let (_, router) = app(Memory::default());
        call(&router, "POST", "/k", &[], r#"{"value":"v"}"#).await;
        call(&router, "GET", "/k", &[], "").await;
        call(&router, "GET", "/nope", &[], "").await;
        call(&router, "PATCH", "/k", &[], "").await;
        let (status, headers, body) = call(&router, "GET", "/metrics", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            header(&headers, "content-type"),
            Some(shoal_frontdoor::metrics::CONTENT_TYPE)
        );
        assert_eq!(
            body,
            "post_204 1\nget_200 1\nget_404 1\nother_405 1\n# EOF\n"
        );
        // A second router counts its own requests.
        let (_, other) = app(Memory::default());
        let (_, _, body) = call(&other, "GET", "/metrics", &[], "").await;
        assert_eq!(
            body,
            "post_204 0\nget_200 0\nget_404 0\nother_405 0\n# EOF\n"
        );
    }

    fn with_view() -> Memory {
        Memory {
            view: Some(Ok(
                serde_json::json!({"mode": "cluster", "nodes": [{"address": "a:1"}]}),
            )),
            ..Memory::default()
        }
    }

    #[tokio::test]
    async fn cluster_is_the_backends_view_as_json_and_dashboard_the_page_that_draws_it() {
        let (_, router) = app(with_view());
        let (status, headers, body) = call(&router, "GET", "/cluster", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert_eq!(header(&headers, "cache-control"), Some("no-store"));
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["nodes"][0]["address"], "a:1");

        let (status, headers, body) = call(&router, "GET", "/dashboard", &[], "").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/html; charset=utf-8")
        );
        let policy = header(&headers, "content-security-policy").expect("a policy");
        assert!(policy.starts_with("default-src 'none';"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        assert!(body.contains("<title>Shoal dashboard</title>"));

        for path in ["/cluster", "/dashboard"] {
            let (status, ..) = call(&router, "POST", path, &[], "").await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        }
        let (status, _, body) = call(&router, "GET", "/%63luster", &[], "").await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::NOT_FOUND, r#"{"error":"not found"}"#),
            "the key named cluster is still a key"
        );
    }

    #[tokio::test]
    async fn a_backend_without_a_view_has_neither_path() {
        let (_, router) = app(Memory::default());
        for path in ["/cluster", "/dashboard"] {
            let (status, _, body) = call(&router, "GET", path, &[], "").await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(body, r#"{"error":"no such endpoint"}"#, "{path}");
        }
        let (_, router) = app(Memory {
            view: Some(Err(ApiError::Unavailable("not in its cluster yet".into()))),
            ..Memory::default()
        });
        let (status, _, body) = call(&router, "GET", "/cluster", &[], "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"error":"not in its cluster yet"}"#);
    }

    #[tokio::test]
    async fn the_dashboard_and_its_view_need_the_password_and_the_same_origin() {
        let (_, router) = app(Memory {
            acl: with_password("s3cret"),
            ..with_view()
        });
        let bearer = ("authorization", "Bearer s3cret");
        for path in ["/cluster", "/dashboard"] {
            let (status, headers, _) = call(&router, "GET", path, &[], "").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert!(header(&headers, "www-authenticate").is_some(), "{path}");
            let (status, ..) = call(&router, "GET", path, &[bearer], "").await;
            assert_eq!(status, StatusCode::OK, "{path}");
        }
        // The page's own fetch: same origin (a browser may send the Origin header or not).
        let host = ("host", "127.0.0.1:8080");
        let same = [bearer, host, ("origin", "http://127.0.0.1:8080")];
        let (status, ..) = call(&router, "GET", "/cluster", &same, "").await;
        assert_eq!(status, StatusCode::OK);
        // Another site's page reading it with the browser's credentials is refused.
        let other = [bearer, host, ("origin", "http://evil.example")];
        let (status, ..) = call(&router, "GET", "/cluster", &other, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
}
