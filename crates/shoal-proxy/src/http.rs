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
//! As on a node: keys are the whole path after `/`, percent-decoded into bytes; a body sent as
//! `application/octet-stream` is stored raw, any other body is read as the JSON object above
//! (`value` a string, `ttl_ms` a positive integer or null, nothing else); `?ttl_ms=n` sets a
//! TTL too (the body's wins); a body over `proto-max-bulk-len` is a `413`; with `requirepass`
//! set, every path but `/health` needs `Authorization: Bearer <password>` or Basic credentials
//! for the user `default`. Every error body is `{"error": "..."}`.
//!
//! Failures of the cluster, as a node's own HTTP API answers for keys it forwards: a node's
//! `-OOM` is `507`; another error reply is `400` with the node's line (or `503` for
//! `-CLUSTERDOWN`/`-TRYAGAIN`/`-LOADING`); no reply at all (timeouts, unreachable nodes, no map
//! or slot owner) is `503` with the text a RESP client would get (`ERR proxy: ...`,
//! `CLUSTERDOWN ...`); a reply of an unexpected type is `502`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value as JsonValue};
use shoal_client::{Error as ClientError, Value};

use crate::metrics::{self, Exporter, HttpStats};
use crate::shared::Shared;
use crate::upstream::error_line;

/// The media type of raw values.
const OCTET_STREAM: &str = "application/octet-stream";
/// Client-supplied text quoted in an error message is cut to this many bytes.
const MAX_QUOTED: usize = 64;

/// Why a request failed; each maps to a status code and a JSON `{"error": ...}` body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("no such endpoint")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("key must not be empty")]
    EmptyKey,
    #[error("key is not validly percent-encoded")]
    KeyEncoding,
    #[error("body is too large (proto-max-bulk-len is {max} bytes)")]
    BodyTooLarge { max: usize },
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("body must be a JSON object like {{\"value\": \"...\"}}")]
    NotAnObject,
    #[error("missing field \"value\"")]
    MissingValue,
    #[error("value must be a JSON string")]
    ValueNotString,
    #[error("unknown field \"{0}\" (expected \"value\" and optionally \"ttl_ms\")")]
    UnknownField(String),
    #[error("ttl_ms must be a positive integer")]
    BadTtl,
    #[error(
        "the value is not valid UTF-8; send \"Accept: application/octet-stream\" to get its raw bytes"
    )]
    NotUtf8,
    #[error(
        "authentication required: send the password as 'Authorization: Bearer <password>' or basic auth for user 'default'"
    )]
    Unauthorized,
    /// A node's `-OOM` reply.
    #[error("{0}")]
    OutOfMemory(String),
    /// Another error reply of a node, to a request it refused.
    #[error("{0}")]
    Refused(String),
    /// The cluster cannot serve the key now (no reply could be had).
    #[error("{0}")]
    Unavailable(String),
    /// A reply of a type the request does not expect.
    #[error("{0}")]
    BadGateway(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotUtf8 => StatusCode::NOT_ACCEPTABLE,
            ApiError::OutOfMemory(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::EmptyKey
            | ApiError::KeyEncoding
            | ApiError::Json(_)
            | ApiError::NotAnObject
            | ApiError::MissingValue
            | ApiError::ValueNotString
            | ApiError::UnknownField(_)
            | ApiError::BadTtl
            | ApiError::Refused(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The error for a failure to get a reply.
    fn upstream(err: &ClientError) -> ApiError {
        let line = String::from_utf8_lossy(&error_line(err).0).into_owned();
        match err {
            ClientError::CrossSlot | ClientError::Server(_) => ApiError::Refused(line),
            _ => ApiError::Unavailable(line),
        }
    }

    /// The error for a node's error reply.
    fn reply(line: &[u8]) -> ApiError {
        let text = String::from_utf8_lossy(line).into_owned();
        let code = text.split(' ').next().unwrap_or("");
        match code {
            "OOM" => ApiError::OutOfMemory(text),
            "CLUSTERDOWN" | "TRYAGAIN" | "LOADING" | "MOVED" | "ASK" => ApiError::Unavailable(text),
            _ => ApiError::Refused(text),
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

#[derive(Clone)]
struct AppState {
    shared: Arc<Shared>,
    exporter: Arc<Exporter>,
}

/// The HTTP API's routes for the proxy `shared`.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
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

async fn count_request(State(stats): State<Arc<HttpStats>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let response = next.run(req).await;
    stats.record(&method, response.status());
    response
}

async fn require_password(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.shared.password_required() || req.uri().path() == "/health" {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(password_from_header);
    match given {
        Some(given) if state.shared.check_password(b"default", given.as_bytes()) => {
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

/// Standard base64 (with or without padding), as Basic credentials use.
fn base64_decode(input: &[u8]) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
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

async fn health() -> Json<JsonValue> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let content_type = HeaderValue::from_static(metrics::CONTENT_TYPE);
    ([(CONTENT_TYPE, content_type)], state.exporter.render()).into_response()
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

/// Sends a command; error replies become errors.
async fn run(shared: &Shared, args: &[&[u8]]) -> Result<Value, ApiError> {
    match shared.client.command(args).await {
        Ok(Value::Error(line) | Value::BulkError(line)) => Err(ApiError::reply(&line)),
        Ok(value) => Ok(value),
        Err(err) => Err(ApiError::upstream(&err)),
    }
}

fn unexpected(value: &Value) -> ApiError {
    ApiError::BadGateway(format!("unexpected reply from the cluster: {value:?}"))
}

/// `GET /{key}`.
async fn get_key(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = key_of(&uri)?;
    let value = match run(&state.shared, &[b"GET", &key]).await? {
        Value::Bulk(value) => value,
        Value::Null => return Err(ApiError::NotFound),
        other => return Err(unexpected(&other)),
    };
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
    let key = key_of(&uri)?;
    let query_ttl = query_ttl(&uri)?;
    let max = state.shared.config.proto_max_bulk_len;
    let body = read_body(body, &headers, max).await?;
    let (value, ttl_ms) = if is_octet_stream(&headers) {
        (body, query_ttl)
    } else {
        let write = parse_json_write(&body)?;
        (Bytes::from(write.value), write.ttl_ms.or(query_ttl))
    };
    let ttl = ttl_ms.map(|ms| ms.to_string());
    let mut args: Vec<&[u8]> = vec![b"SET", &key, &value];
    if let Some(ttl) = &ttl {
        args.extend([&b"PX"[..], ttl.as_bytes()]);
    }
    match run(&state.shared, &args).await? {
        Value::Simple(ok) if ok == b"OK" => Ok(StatusCode::NO_CONTENT),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /{key}`.
async fn delete_key(State(state): State<AppState>, uri: Uri) -> Result<StatusCode, ApiError> {
    let key = key_of(&uri)?;
    match run(&state.shared, &[b"DEL", &key]).await? {
        Value::Int(n) if n > 0 => Ok(StatusCode::NO_CONTENT),
        Value::Int(_) => Err(ApiError::NotFound),
        other => Err(unexpected(&other)),
    }
}

/// The key a request's path names, percent-decoded.
fn key_of(uri: &Uri) -> Result<Vec<u8>, ApiError> {
    let raw = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let key = percent_decode(raw.as_bytes()).ok_or(ApiError::KeyEncoding)?;
    if key.is_empty() {
        return Err(ApiError::EmptyKey);
    }
    Ok(key)
}

/// Decodes `%XX` escapes; `None` if a `%` is not followed by two hex digits.
fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let hex = |d: u8| {
        char::from(d)
            .to_digit(16)
            .and_then(|v| u8::try_from(v).ok())
    };
    let mut out = Vec::with_capacity(input.len());
    let mut rest = input;
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let (digits, tail) = tail.split_first_chunk::<2>()?;
            out.push((hex(digits[0])? << 4) | hex(digits[1])?);
            rest = tail;
        } else {
            out.push(byte);
            rest = tail;
        }
    }
    Some(out)
}

/// The `ttl_ms` query parameter (the first one).
fn query_ttl(uri: &Uri) -> Result<Option<u64>, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let value = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find_map(|(name, value)| (name == "ttl_ms").then_some(value));
    match value.map(str::parse::<u64>) {
        None => Ok(None),
        Some(Ok(ms)) if ms > 0 && i64::try_from(ms).is_ok() => Ok(Some(ms)),
        Some(_) => Err(ApiError::BadTtl),
    }
}

fn media_type_is(value: &str, wanted: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(wanted))
}

fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| media_type_is(v, OCTET_STREAM))
}

fn accepts_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| media_type_is(range, OCTET_STREAM))
}

/// The whole body, refused (`413`) once it is known to exceed `max` bytes.
async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(ApiError::BodyTooLarge { max });
    }
    // Past the limit or not, a body that cannot be read has nobody to read the answer but a
    // client that sent too much.
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| ApiError::BodyTooLarge { max })
}

/// A JSON write request.
#[derive(Debug, PartialEq, Eq)]
struct JsonWrite {
    value: String,
    ttl_ms: Option<u64>,
}

/// Parses `{"value": "<string>", "ttl_ms": <positive integer>}`.
fn parse_json_write(body: &[u8]) -> Result<JsonWrite, ApiError> {
    let parsed: JsonValue =
        serde_json::from_slice(body).map_err(|e| ApiError::Json(e.to_string()))?;
    let JsonValue::Object(mut fields) = parsed else {
        return Err(ApiError::NotAnObject);
    };
    let value = match fields.remove("value") {
        Some(JsonValue::String(s)) => s,
        Some(_) => return Err(ApiError::ValueNotString),
        None => return Err(ApiError::MissingValue),
    };
    let ttl_ms = match fields.remove("ttl_ms") {
        None | Some(JsonValue::Null) => None,
        Some(v) => match v.as_u64() {
            Some(ms) if ms > 0 && i64::try_from(ms).is_ok() => Some(ms),
            _ => return Err(ApiError::BadTtl),
        },
    };
    reject_unknown_fields(&fields)?;
    Ok(JsonWrite { value, ttl_ms })
}

fn reject_unknown_fields(rest: &Map<String, JsonValue>) -> Result<(), ApiError> {
    match rest.keys().next() {
        None => Ok(()),
        Some(name) => {
            let mut end = name.len().min(MAX_QUOTED);
            while !name.is_char_boundary(end) {
                end -= 1;
            }
            Err(ApiError::UnknownField(name[..end].to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_writes_are_validated() {
        let ok = parse_json_write(br#"{"value":"x","ttl_ms":5}"#).unwrap();
        assert_eq!((ok.value.as_str(), ok.ttl_ms), ("x", Some(5)));
        assert!(matches!(
            parse_json_write(br#"{"value":1}"#),
            Err(ApiError::ValueNotString)
        ));
        assert!(matches!(
            parse_json_write(br#"{"value":"x","ttl_ms":0}"#),
            Err(ApiError::BadTtl)
        ));
        assert!(matches!(
            parse_json_write(br#"{"value":"x","ttl":5}"#),
            Err(ApiError::UnknownField(_))
        ));
        assert!(matches!(
            parse_json_write(b"[1]"),
            Err(ApiError::NotAnObject)
        ));
        assert!(matches!(parse_json_write(b"{"), Err(ApiError::Json(_))));
    }

    #[test]
    fn keys_and_credentials_decode() {
        assert_eq!(percent_decode(b"a%2Fb").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(percent_decode(b"%ff").as_deref(), Some(&b"\xff"[..]));
        assert_eq!(percent_decode(b"100%"), None);
        assert_eq!(
            password_from_header("Basic ZGVmYXVsdDpzM2NyZXQ=").as_deref(),
            Some("s3cret")
        );
        assert_eq!(password_from_header("Bearer x").as_deref(), Some("x"));
        assert_eq!(password_from_header("Basic YWxpY2U6czNjcmV0"), None);
        assert!(crate::shared::constant_time_eq(b"a", b"a"));
    }

    #[test]
    fn cluster_failures_have_the_node_s_codes() {
        let timeout = ClientError::Timeout {
            addr: "a:1".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(
            ApiError::upstream(&timeout).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::upstream(&ClientError::SlotUnassigned(1)).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::reply(b"OOM command not allowed").status(),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            ApiError::reply(b"ERR key is too large").status(),
            StatusCode::BAD_REQUEST
        );
    }
}
