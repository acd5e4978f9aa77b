//! Why a request failed: [`ApiError`], each with its status code and a JSON `{"error": ...}`
//! body.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};

/// Why a request failed; each maps to a status code ([`ApiError::status`]) and a JSON
/// `{"error": "<the Display text>"}` body with `content-type: application/json`.
///
/// The variants up to [`ApiError::Unauthorized`] are the API's own (the request is wrong); the
/// ones after it are what a [`Backend`](crate::Backend) answers when the keyspace behind it
/// refuses or cannot be reached, with the text it chooses.
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
    /// `400`: `ttl_ms` (body or query) is not a positive integer (or is above the backend's
    /// [`max_ttl_ms`](crate::Backend::max_ttl_ms)).
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
    /// `401`: a password is required and the request did not carry the right one. The answer
    /// carries two `WWW-Authenticate` headers, `Bearer` and `Basic realm="shoal"`: one
    /// header listing both schemes is not understood by browsers (Chromium then neither asks
    /// for a password nor uses one given in the URL).
    #[error(
        "authentication required: send 'Authorization: Basic <user:password>' or 'Authorization: Bearer <password>' (or 'Bearer <user>:<password>')"
    )]
    Unauthorized,
    /// `403`: the user may not run the command the request maps to, or not on that key (the
    /// front door's `-NOPERM` line).
    #[error("{0}")]
    Forbidden(String),
    /// `403`: the request's `Host` is a name not on `http-allowed-hosts` (a DNS rebinding
    /// attempt, or a name the operator has not listed yet).
    #[error("host '{0}' is not allowed: add its name to http-allowed-hosts")]
    HostNotAllowed(String),
    /// `403`: a web page of another origin sent the request (a cross-site request).
    #[error("cross-origin request refused: origin '{0}' is not this server")]
    CrossOrigin(String),
    /// `408`: the body stopped coming for longer than `http-timeout`.
    #[error("the body stalled for more than {0:?}")]
    BodyTimeout(std::time::Duration),
    /// `503`: too many bytes of request bodies are held at once; the client may retry.
    #[error("{0}")]
    Busy(String),
    /// `507`: the write does not fit: over `maxmemory` with nothing to evict (Redis's `OOM`
    /// line), or no memory left to address.
    #[error("{0}")]
    OutOfMemory(String),
    /// `413`: the keyspace refused the value as too large.
    #[error("{0}")]
    ValueTooLarge(String),
    /// `409`: the key holds a value of another type than the request works on (a hash, for
    /// the string API): Redis's `WRONGTYPE` line.
    #[error("{0}")]
    WrongType(String),
    /// `400`: the keyspace refused the request (a node's error reply, say).
    #[error("{0}")]
    Refused(String),
    /// `503`: the keyspace cannot serve the key now (its owner could not be reached, no node
    /// owns its slot, the cluster is down).
    #[error("{0}")]
    Unavailable(String),
    /// `502`: the keyspace answered with something the request does not expect.
    #[error("{0}")]
    BadGateway(String),
}

impl ApiError {
    /// The status code this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::HostNotAllowed(_) | ApiError::CrossOrigin(_) => StatusCode::FORBIDDEN,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTooLarge { .. } | ApiError::ValueTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::NotUtf8 => StatusCode::NOT_ACCEPTABLE,
            ApiError::WrongType(_) => StatusCode::CONFLICT,
            ApiError::OutOfMemory(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Unavailable(_) | ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
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
            | ApiError::TtlTooLarge
            | ApiError::Refused(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, ApiError::Unauthorized) {
            let headers = response.headers_mut();
            headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            headers.append(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"shoal\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_status() {
        let cases = [
            (ApiError::NotFound, 404),
            (ApiError::NoRoute, 404),
            (ApiError::MethodNotAllowed, 405),
            (ApiError::EmptyKey, 400),
            (ApiError::KeyTooLarge { max: 8 }, 400),
            (ApiError::BodyTooLarge { max: 8 }, 413),
            (ApiError::BadTtl, 400),
            (ApiError::TtlTooLarge, 400),
            (ApiError::NotUtf8, 406),
            (ApiError::Unauthorized, 401),
            (ApiError::HostNotAllowed("x".into()), 403),
            (ApiError::CrossOrigin("x".into()), 403),
            (
                ApiError::BodyTimeout(std::time::Duration::from_secs(1)),
                408,
            ),
            (ApiError::Busy("x".into()), 503),
            (ApiError::OutOfMemory("OOM x".into()), 507),
            (ApiError::ValueTooLarge("too big".into()), 413),
            (ApiError::Refused("ERR x".into()), 400),
            (ApiError::Unavailable("CLUSTERDOWN x".into()), 503),
            (ApiError::BadGateway("what".into()), 502),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
        assert_eq!(
            ApiError::KeyTooLarge { max: 8 }.to_string(),
            "key is too large (max-key-size is 8 bytes)"
        );
        assert_eq!(
            ApiError::Unavailable("cluster: x".into()).to_string(),
            "cluster: x"
        );
    }

    #[tokio::test]
    async fn errors_answer_json_and_401_names_the_schemes() {
        let response = ApiError::Unauthorized.into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let schemes: Vec<&[u8]> = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(schemes, [&b"Bearer"[..], b"Basic realm=\"shoal\""]);
        let response = ApiError::NotFound.into_response();
        assert_eq!(
            response.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        assert!(response.headers().get(WWW_AUTHENTICATE).is_none());
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("a body");
        assert_eq!(&body[..], br#"{"error":"not found"}"#);
    }
}
