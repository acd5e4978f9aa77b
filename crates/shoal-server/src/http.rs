//! The HTTP/JSON API, on the node's HTTP port, over the same keyspace as RESP.
//!
//! | request | success | notes |
//! | --- | --- | --- |
//! | `POST /{key}` | `204` | stores a value (see below) |
//! | `GET /{key}` | `200 {"value": "..."}` | raw bytes with `Accept: application/octet-stream` |
//! | `DELETE /{key}` | `204` | `404` if the key did not exist |
//! | `GET /health` | `200 {"status": "ok"}` | |
//! | `GET /metrics` | `200`, OpenMetrics text | see [`crate::metrics`] |
//!
//! **Keys** are the whole path after the first `/`, percent-decoded into bytes (`%2F` is `/`,
//! `%FF` is the byte 0xFF, `+` stays `+`), so keys may contain `/` and any binary byte. A `%`
//! not followed by two hex digits is a `400`. The paths `/health` and `/metrics` are the
//! endpoints above, so the keys `health` and `metrics` cannot be reached over HTTP (they can be
//! spelt `/%68ealth` and `/%6Detrics`). An empty key (`/`) is a `400`, and so is a key longer
//! than `max-key-size`, whatever the method.
//!
//! **Writing.** A body whose `Content-Type` is `application/octet-stream` is stored as is; any
//! other body, whatever its content type (or none, as `curl -d` sends), is read as JSON: an
//! object `{"value": "<string>", "ttl_ms": <positive integer>}`. `value` is required and must
//! be a JSON string (stored as its UTF-8 bytes); `ttl_ms` may be left out or `null`; any other
//! field is rejected with a `400` (so a misspelt `"ttl"` is not silently ignored). The query
//! parameter `?ttl_ms=N` sets a TTL for either kind of body; the body's `ttl_ms` wins when both
//! are given; other query parameters are ignored. TTLs are stored as an absolute time (now +
//! `ttl_ms`); without one, a write clears any TTL the key had (as `SET` does).
//!
//! **Reading.** `GET` answers `{"value": "..."}`; a value that is not valid UTF-8 gets a `406`
//! asking for `Accept: application/octet-stream`, which returns the raw bytes with that content
//! type.
//!
//! **Limits and errors**, as on the RESP side: a body larger than `proto-max-bulk-len` is a
//! `413`; a write while over `maxmemory` with nothing to evict is a `507` with Redis's OOM text.
//! Every error body is `{"error": "..."}` with `content-type: application/json`; see
//! [`ApiError`] for each status.
//!
//! **Authentication.** When the node has a `requirepass`, every request but `GET /health` must
//! carry it, as `Authorization: Bearer <password>` or as HTTP Basic credentials for the user
//! `default` (what `curl -u default:<password>` sends); otherwise it gets a `401`.
//!
//! **Cluster mode.** Every node's HTTP API serves the whole keyspace: a key whose slot this
//! node does not own is read, written or deleted at its owner through the node's forwarding
//! client; a `503` says the owner could not be reached.
//!
//! **Counting.** Every request is counted (method, status code, latency) in an
//! [`HttpStats`] owned by the router's state, which the `/metrics` exporter of the same router
//! reads. It is per router rather than a `static`, so several nodes in one process (as in tests)
//! each count their own requests.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use bytes::BytesMut;
use serde_json::{Map, Value};
use shoal_store::{SetOptions, StoreError, TtlUpdate};

use crate::metrics::{self, Exporter, HttpStats};
use crate::shared::Shared;

/// The media type of raw values.
const OCTET_STREAM: &str = "application/octet-stream";
/// At most this much is reserved up front from a request's `Content-Length`.
const MAX_PREALLOCATION: usize = 1024 * 1024;
/// A refused body is still read (and dropped) up to this many bytes, so the client gets the
/// `413`; a longer one is answered at once and its connection closed.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
/// Client-supplied text quoted in an error message is cut to this many bytes.
const MAX_QUOTED: usize = 64;

/// Why a request failed; each maps to a status code and a JSON `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `404`: the key does not exist.
    #[error("not found")]
    NotFound,
    /// `404`: the path is not one this API serves.
    #[error("no such endpoint")]
    NoRoute,
    /// `405`: the method is not served on this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// `400`: the path names no key.
    #[error("key must not be empty")]
    EmptyKey,
    /// `400`: the key has a `%` not followed by two hex digits.
    #[error("key is not validly percent-encoded")]
    KeyEncoding,
    /// `400`: the key is longer than `max-key-size`.
    #[error("key is too large (max-key-size is {max} bytes)")]
    KeyTooLarge {
        /// `max-key-size`.
        max: usize,
    },
    /// `413`: the body is longer than `proto-max-bulk-len`.
    #[error("body is too large (proto-max-bulk-len is {max} bytes)")]
    BodyTooLarge {
        /// `proto-max-bulk-len`.
        max: usize,
    },
    /// `400`: the body could not be received.
    #[error("cannot read the body: {0}")]
    BodyRead(String),
    /// `400`: the body is not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// `400`: the JSON body is not an object.
    #[error("body must be a JSON object like {{\"value\": \"...\"}}")]
    NotAnObject,
    /// `400`: the JSON body has no `value`.
    #[error("missing field \"value\"")]
    MissingValue,
    /// `400`: `value` is not a JSON string.
    #[error("value must be a JSON string")]
    ValueNotString,
    /// `400`: the JSON body has a field other than `value` and `ttl_ms`.
    #[error("unknown field \"{0}\" (expected \"value\" and optionally \"ttl_ms\")")]
    UnknownField(String),
    /// `400`: `ttl_ms` (body or query) is not a positive integer.
    #[error("ttl_ms must be a positive integer")]
    BadTtl,
    /// `400`: now + `ttl_ms` is past the largest time the store holds.
    #[error("ttl_ms is too large")]
    TtlTooLarge,
    /// `406`: the value is binary and the client did not accept raw bytes.
    #[error(
        "the value is not valid UTF-8; send \"Accept: application/octet-stream\" to get its raw bytes"
    )]
    NotUtf8,
    /// `401`: the node requires a password and the request did not carry the right one.
    #[error(
        "authentication required: send the password as 'Authorization: Bearer <password>' or basic auth for user 'default'"
    )]
    Unauthorized,
    /// `507`: over `maxmemory` and nothing can be evicted.
    #[error("OOM command not allowed when used memory > 'maxmemory'.")]
    OutOfMemory,
    /// `507` (no more address space) or `413` (value too large): the store refused the write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `503`: the key's owner in the cluster could not be reached, or no node owns its slot.
    #[error("cluster: {0}")]
    Cluster(String),
}

impl ApiError {
    /// The answer for a request forwarded to the key's owner that failed.
    fn from_forwarding(e: shoal_client::Error) -> ApiError {
        match &e {
            shoal_client::Error::Server(line) if line.starts_with("OOM") => ApiError::OutOfMemory,
            _ => ApiError::Cluster(crate::cluster::forward_error(&e)),
        }
    }
}

impl ApiError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } | ApiError::Store(StoreError::TooLarge) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::NotUtf8 => StatusCode::NOT_ACCEPTABLE,
            ApiError::OutOfMemory | ApiError::Store(StoreError::AddressSpace) => {
                StatusCode::INSUFFICIENT_STORAGE
            }
            ApiError::Cluster(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::EmptyKey
            | ApiError::KeyEncoding
            | ApiError::KeyTooLarge { .. }
            | ApiError::BodyRead(_)
            | ApiError::Json(_)
            | ApiError::NotAnObject
            | ApiError::MissingValue
            | ApiError::ValueNotString
            | ApiError::UnknownField(_)
            | ApiError::BadTtl
            | ApiError::TtlTooLarge => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer, Basic realm=\"shoal\""),
            );
        }
        response
    }
}

/// What every handler of the router shares.
#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    exporter: Arc<Exporter>,
}

/// The HTTP API's routes for the node `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    let http_stats = Arc::new(HttpStats::default());
    let state = AppState {
        exporter: Arc::new(Exporter::new(shared.clone(), http_stats.clone())),
        shared,
    };
    Router::new()
        .route("/health", get(health).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
        .route("/", any(empty_key))
        .route(
            "/{*key}",
            get(get_key)
                .post(post_key)
                .delete(delete_key)
                .fallback(method_not_allowed),
        )
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_password,
        ))
        .with_state(state)
        .layer(middleware::from_fn_with_state(http_stats, count_request))
}

/// Counts every request with its method, status code and latency.
async fn count_request(State(stats): State<Arc<HttpStats>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let response = next.run(req).await;
    stats.record(&method, response.status(), started.elapsed());
    response
}

/// Refuses requests without the node's password, when it has one (`/health` is always open).
async fn require_password(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.shared.live.password_required() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let expected = state.shared.config.read().requirepass.clone();
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(password_from_header);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => {
            next.run(req).await
        }
        _ => ApiError::Unauthorized.into_response(),
    }
}

/// The password in an `Authorization` header: `Bearer <password>`, or `Basic` credentials for
/// the user `default`.
fn password_from_header(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(rest.trim().to_string());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = String::from_utf8(base64_decode(rest.trim().as_bytes())?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        return (user == "default" || user.is_empty()).then(|| password.to_string());
    }
    None
}

/// Compares secrets without returning early, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 (RFC 4648, with or without padding), as HTTP Basic credentials use.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let input = input
        .strip_suffix(b"==")
        .or_else(|| input.strip_suffix(b"="))
        .unwrap_or(input);
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for chunk in input.chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = bits << 6 | value(c)?;
        }
        match chunk.len() {
            4 => out.extend_from_slice(&bits.to_be_bytes()[1..]),
            3 => out.extend_from_slice(&(bits << 6).to_be_bytes()[1..3]),
            2 => out.push((bits >> 4) as u8),
            _ => return None,
        }
    }
    Some(out)
}

async fn health() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let text = state.exporter.render();
    let content_type = HeaderValue::from_static(metrics::CONTENT_TYPE);
    ([(CONTENT_TYPE, content_type)], text).into_response()
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

async fn no_route() -> ApiError {
    ApiError::NoRoute
}

async fn empty_key() -> ApiError {
    ApiError::EmptyKey
}

/// `GET /{key}`.
async fn get_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_of(&uri, &state.shared)?;
    let value = match remote(&state.shared, &key) {
        Some(forwarder) => forwarder
            .get(&key)
            .await
            .map_err(ApiError::from_forwarding)?
            .map(|v| v.to_vec()),
        None => state.shared.store.get(&key, <[u8]>::to_vec),
    }
    .ok_or(ApiError::NotFound)?;
    if accepts_octet_stream(&headers) {
        let content_type = HeaderValue::from_static(OCTET_STREAM);
        return Ok(([(CONTENT_TYPE, content_type)], value).into_response());
    }
    let text = String::from_utf8(value).map_err(|_| ApiError::NotUtf8)?;
    Ok(Json(serde_json::json!({ "value": text })).into_response())
}

/// `POST /{key}`.
async fn post_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let shared = &state.shared;
    let key = key_of(&uri, shared)?;
    let query_ttl = query_ttl(&uri)?;
    let body = read_body(body, &headers, shared.live.max_bulk_len()).await?;
    let (value, ttl_ms) = if is_octet_stream(&headers) {
        (body, query_ttl)
    } else {
        let write = parse_json_write(&body)?;
        (Bytes::from(write.value), write.ttl_ms.or(query_ttl))
    };
    if let Some(forwarder) = remote(shared, &key) {
        if let Some(ms) = ttl_ms {
            expiry_at(shared.store.now_ms(), ms)?;
        }
        let ttl = ttl_ms.map(std::time::Duration::from_millis);
        forwarder
            .set(&key, &value, ttl)
            .await
            .map_err(ApiError::from_forwarding)?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let ttl = match ttl_ms {
        Some(ms) => TtlUpdate::At(expiry_at(shared.store.now_ms(), ms)?),
        None => TtlUpdate::Clear,
    };
    shared
        .store
        .make_room()
        .map_err(|_| ApiError::OutOfMemory)?;
    let options = SetOptions {
        ttl,
        ..SetOptions::default()
    };
    shared.store.set(&key, &value, options, |_| {})?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /{key}`.
async fn delete_key(State(state): State<AppState>, uri: Uri) -> Result<StatusCode, ApiError> {
    let key = key_of(&uri, &state.shared)?;
    let removed = match remote(&state.shared, &key) {
        Some(forwarder) => {
            forwarder
                .del(&[&key])
                .await
                .map_err(ApiError::from_forwarding)?
                > 0
        }
        None => state.shared.store.remove(&key),
    };
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound)
    }
}

/// In cluster mode, the forwarder to reach `key`'s owner with, when this node is not its
/// primary (the HTTP API of every node serves the whole keyspace).
fn remote<'a>(shared: &'a Shared, key: &[u8]) -> Option<&'a shoal_client::Client> {
    let cluster = shared.cluster.as_ref()?;
    if cluster.owns(key) {
        return None;
    }
    cluster.forwarder()
}

/// The key a request's path names, decoded and checked against `max-key-size`.
fn key_of(uri: &Uri, shared: &Shared) -> Result<Vec<u8>, ApiError> {
    let raw = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let key = percent_decode(raw.as_bytes()).ok_or(ApiError::KeyEncoding)?;
    if key.is_empty() {
        return Err(ApiError::EmptyKey);
    }
    let max = shared.live.max_key_size();
    if key.len() > max {
        return Err(ApiError::KeyTooLarge { max });
    }
    Ok(key)
}

/// Decodes `%XX` escapes; `None` if a `%` is not followed by two hex digits.
pub fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (hex, tail) = tail.split_first_chunk::<2>()?;
            out.push((hex_value(hex[0])? << 4) | hex_value(hex[1])?);
            rest = tail;
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    Some(out)
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The `ttl_ms` query parameter (the first one, if repeated).
fn query_ttl(uri: &Uri) -> Result<Option<u64>, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let value = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find_map(|(name, value)| (name == "ttl_ms").then_some(value));
    match value {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Some(ms)),
            _ => Err(ApiError::BadTtl),
        },
    }
}

/// The absolute expiry for a TTL of `ttl_ms` from `now_ms`.
fn expiry_at(now_ms: u64, ttl_ms: u64) -> Result<i64, ApiError> {
    now_ms
        .checked_add(ttl_ms)
        .and_then(|at| i64::try_from(at).ok())
        .ok_or(ApiError::TtlTooLarge)
}

/// Whether the request's body is raw bytes.
fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| media_type_is(v, OCTET_STREAM))
}

/// Whether any `Accept` header lists `application/octet-stream`.
fn accepts_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| media_type_is(range, OCTET_STREAM))
}

/// Whether a media type (or range), parameters aside, is `wanted`.
fn media_type_is(value: &str, wanted: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(wanted))
}

/// Reads the whole body, refusing it as soon as it is known to exceed `max` bytes.
async fn read_body(mut body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > max as u64) {
        if len <= DRAIN_LIMIT as u64 {
            discard(&mut body, DRAIN_LIMIT).await;
        }
        return Err(ApiError::BodyTooLarge { max });
    }
    let reserve = declared.map_or(0, |len| (len as usize).min(MAX_PREALLOCATION));
    let mut buf = BytesMut::with_capacity(reserve);
    while let Some(chunk) = next_chunk(&mut body).await {
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        let Some(data) = chunk else {
            continue; // trailers
        };
        if buf.len().saturating_add(data.len()) > max {
            discard(&mut body, DRAIN_LIMIT).await;
            return Err(ApiError::BodyTooLarge { max });
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// The next chunk of `body`: `None` at its end, `Some(Ok(None))` for trailers.
async fn next_chunk(body: &mut Body) -> Option<Result<Option<Bytes>, axum::Error>> {
    let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
    Some(frame.map(|f| f.into_data().ok()))
}

/// Reads and drops up to about `limit` more bytes of a refused body, so that a client still
/// sending it reads the error rather than a connection reset (closing a socket with unread
/// input resets it).
async fn discard(body: &mut Body, limit: usize) {
    let mut dropped = 0usize;
    while dropped <= limit {
        match next_chunk(body).await {
            Some(Ok(data)) => dropped += data.as_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
}

/// A JSON write request.
#[derive(Debug, PartialEq, Eq)]
struct JsonWrite {
    value: String,
    ttl_ms: Option<u64>,
}

/// Parses `{"value": "<string>", "ttl_ms": <positive integer>}`.
fn parse_json_write(body: &[u8]) -> Result<JsonWrite, ApiError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| ApiError::Json(e.to_string()))?;
    let Value::Object(mut fields) = parsed else {
        return Err(ApiError::NotAnObject);
    };
    let value = match fields.remove("value") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::ValueNotString),
        None => return Err(ApiError::MissingValue),
    };
    let ttl_ms = json_ttl(fields.remove("ttl_ms"))?;
    reject_unknown_fields(&fields)?;
    Ok(JsonWrite { value, ttl_ms })
}

fn json_ttl(ttl: Option<Value>) -> Result<Option<u64>, ApiError> {
    match ttl {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(ms) if ms > 0 => Ok(Some(ms)),
            _ => Err(ApiError::BadTtl),
        },
    }
}

fn reject_unknown_fields(rest: &Map<String, Value>) -> Result<(), ApiError> {
    match rest.keys().next() {
        None => Ok(()),
        Some(name) => Err(ApiError::UnknownField(quoted(name))),
    }
}

/// `text` cut to [`MAX_QUOTED`] bytes (at a character boundary), for error messages.
fn quoted(text: &str) -> String {
    let mut end = text.len().min(MAX_QUOTED);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_come_from_bearer_or_basic_credentials() {
        assert_eq!(
            password_from_header("Bearer s3cret").as_deref(),
            Some("s3cret")
        );
        // "default:s3cret" and ":s3cret" in base64.
        assert_eq!(
            password_from_header("Basic ZGVmYXVsdDpzM2NyZXQ=").as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            password_from_header("basic OnMzY3JldA==").as_deref(),
            Some("s3cret")
        );
        // "alice:s3cret": only the default user exists.
        assert_eq!(password_from_header("Basic YWxpY2U6czNjcmV0"), None);
        assert_eq!(password_from_header("Basic !!!"), None);
        assert_eq!(password_from_header("Digest x"), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn percent_decoding_is_strict_and_binary_safe() {
        assert_eq!(percent_decode(b"a%2Fb").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(
            percent_decode(b"%ff%00+").as_deref(),
            Some(&b"\xff\x00+"[..])
        );
        assert_eq!(percent_decode(b"a/b").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(percent_decode(b"100%"), None);
        assert_eq!(percent_decode(b"%4"), None);
        assert_eq!(percent_decode(b"%zz"), None);
    }

    #[test]
    fn json_writes_are_validated_field_by_field() {
        let ok = parse_json_write(br#"{"value":"x","ttl_ms":5}"#).expect("valid");
        assert_eq!((ok.value.as_str(), ok.ttl_ms), ("x", Some(5)));
        let null_ttl = parse_json_write(br#"{"value":"x","ttl_ms":null}"#).expect("valid");
        assert_eq!(null_ttl.ttl_ms, None);
        let err = |body: &[u8]| parse_json_write(body).expect_err("invalid").to_string();
        assert_eq!(err(br#"{"value":1}"#), "value must be a JSON string");
        assert_eq!(err(br#"{"ttl_ms":1}"#), "missing field \"value\"");
        assert_eq!(
            err(br#"{"value":"x","ttl_ms":0}"#),
            "ttl_ms must be a positive integer"
        );
        assert_eq!(
            err(br#"{"value":"x","ttl_ms":-1}"#),
            "ttl_ms must be a positive integer"
        );
        assert_eq!(
            err(br#"{"value":"x","ttl_ms":1.5}"#),
            "ttl_ms must be a positive integer"
        );
        assert_eq!(
            err(br#"{"value":"x","ttl_ms":"5"}"#),
            "ttl_ms must be a positive integer"
        );
        assert!(err(br#"{"value":"x","ttl":5}"#).starts_with("unknown field \"ttl\""));
        assert!(err(b"[1]").starts_with("body must be a JSON object"));
        assert!(err(b"{").starts_with("invalid JSON: "));
    }

    #[test]
    fn media_types_ignore_case_and_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("text/html, Application/Octet-Stream;q=0.9"),
        );
        assert!(accepts_octet_stream(&headers));
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        assert!(!accepts_octet_stream(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream; x=y"),
        );
        assert!(is_octet_stream(&headers));
    }

    #[test]
    fn query_ttl_must_be_positive() {
        let uri = |s: &str| s.parse::<Uri>().expect("a valid URI");
        assert_eq!(query_ttl(&uri("/k?a=1&ttl_ms=250")).ok(), Some(Some(250)));
        assert_eq!(query_ttl(&uri("/k?a=1")).ok(), Some(None));
        assert!(query_ttl(&uri("/k?ttl_ms=0")).is_err());
        assert!(query_ttl(&uri("/k?ttl_ms")).is_err());
        assert!(query_ttl(&uri("/k?ttl_ms=-3")).is_err());
        assert!(expiry_at(u64::MAX - 1, 5).is_err());
        assert_eq!(expiry_at(1000, 5).ok(), Some(1005));
    }

    #[test]
    fn quotes_are_cut_at_character_boundaries() {
        assert_eq!(quoted("short"), "short");
        let long = "é".repeat(100);
        assert!(quoted(&long).len() <= MAX_QUOTED);
    }
}
