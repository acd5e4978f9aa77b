//! Reading a request: the key from the path, the TTL from the query, the body (raw or JSON)
//! within its limit, and the media types of `Content-Type` and `Accept`.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Uri};
use bytes::BytesMut;
use serde_json::{Map, Value};

use crate::ApiError;
use crate::inflight::{BodyBudget, Share};

/// The media type of raw values.
pub const OCTET_STREAM: &str = "application/octet-stream";
/// A refused body is still read (and dropped) up to this many bytes, so the client gets the
/// `413`; a longer one is answered at once and its connection closed.
const DRAIN_LIMIT: usize = 8 * 1024 * 1024;
/// Client-supplied text quoted in an error message is cut to this many bytes.
const MAX_QUOTED: usize = 64;

/// The key a request's path names: the whole path after the first `/`, percent-decoded, not
/// empty and at most `max_key_size` bytes.
pub fn key_from_path(uri: &Uri, max_key_size: usize) -> Result<Vec<u8>, ApiError> {
    let raw = uri.path().strip_prefix('/').unwrap_or(uri.path());
    let key = percent_decode(raw.as_bytes()).ok_or(ApiError::KeyEncoding)?;
    if key.is_empty() {
        return Err(ApiError::EmptyKey);
    }
    if key.len() > max_key_size {
        return Err(ApiError::KeyTooLarge { max: max_key_size });
    }
    Ok(key)
}

/// Decodes `%XX` escapes (`+` stays `+`); `None` if a `%` is not followed by two hex digits.
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

/// The `ttl_ms` query parameter (the first one, if repeated): a positive integer of at most
/// `max_ttl_ms`; other parameters are ignored.
pub fn query_ttl(uri: &Uri, max_ttl_ms: u64) -> Result<Option<u64>, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(None);
    };
    let value = query
        .split('&')
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find_map(|(name, value)| (name == "ttl_ms").then_some(value));
    match value.map(str::parse::<u64>) {
        None => Ok(None),
        Some(Ok(ms)) if ms > 0 && ms <= max_ttl_ms => Ok(Some(ms)),
        Some(_) => Err(ApiError::BadTtl),
    }
}

/// Whether the request's body is raw bytes (`Content-Type: application/octet-stream`).
pub fn is_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| media_type_is(v, OCTET_STREAM))
}

/// Whether any `Accept` header lists `application/octet-stream`.
pub fn accepts_octet_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| media_type_is(range, OCTET_STREAM))
}

/// Whether a media type (or range), parameters aside and whatever its case, is `wanted`.
fn media_type_is(value: &str, wanted: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(wanted))
}

/// Reads the whole body, refusing it (`413`) as soon as it is known to exceed `max` bytes:
/// from its `Content-Length`, or while it streams in. The body's bytes are taken from
/// `budget` first (the returned [`Share`] gives them back when dropped: hold it until the
/// value is stored); a body whose next piece takes longer than `timeout` to come is a `408`.
///
/// A body with a `Content-Length` is read into one buffer of exactly that size, so the
/// memory it takes is the value's size (the pages of a large buffer are only taken as the
/// body fills them); one sent in chunks grows its buffer as it comes.
pub(crate) async fn read_body(
    mut body: Body,
    headers: &HeaderMap,
    max: usize,
    budget: &BodyBudget,
    timeout: Duration,
) -> Result<(Bytes, Share), ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > max as u64) {
        if len <= DRAIN_LIMIT as u64 {
            discard(&mut body, DRAIN_LIMIT, timeout).await;
        }
        return Err(ApiError::BodyTooLarge { max });
    }
    let mut share = Share::default();
    let mut buf = match declared {
        Some(len) => {
            budget.take(&mut share, len as usize).await?;
            BytesMut::with_capacity(len as usize)
        }
        None => BytesMut::new(),
    };
    loop {
        let chunk = match tokio::time::timeout(timeout, next_chunk(&mut body)).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => return Err(ApiError::BodyTimeout(timeout)),
        };
        let chunk = chunk.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        let Some(data) = chunk else {
            continue; // trailers
        };
        let total = buf.len().saturating_add(data.len());
        if total > max {
            discard(&mut body, DRAIN_LIMIT, timeout).await;
            return Err(ApiError::BodyTooLarge { max });
        }
        let held = share.bytes();
        if total > held {
            budget.take(&mut share, total - held).await?;
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), share))
}

/// The next chunk of `body`: `None` at its end, `Some(Ok(None))` for trailers.
async fn next_chunk(body: &mut Body) -> Option<Result<Option<Bytes>, axum::Error>> {
    let frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
    Some(frame.map(|f| f.into_data().ok()))
}

/// Reads and drops up to about `limit` more bytes of a refused body, so that a client still
/// sending it reads the error rather than a connection reset (closing a socket with unread
/// input resets it).
async fn discard(body: &mut Body, limit: usize, timeout: Duration) {
    let mut dropped = 0usize;
    while dropped <= limit {
        match tokio::time::timeout(timeout, next_chunk(body))
            .await
            .ok()
            .flatten()
        {
            Some(Ok(data)) => dropped += data.as_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
}

/// A JSON write request: `{"value": "<string>", "ttl_ms": <positive integer>}`.
#[derive(Debug, PartialEq, Eq)]
pub struct JsonWrite {
    /// `value`, stored as its UTF-8 bytes.
    pub value: String,
    /// `ttl_ms`, if given and not `null`.
    pub ttl_ms: Option<u64>,
}

/// [`parse_json_write`] of a whole body, giving the value as bytes: a part of `body` itself
/// when the JSON string has no escapes (no copy: the value takes no memory beyond the
/// body's), else its unescaped text.
pub fn parse_json_write_bytes(
    body: &Bytes,
    max_ttl_ms: u64,
) -> Result<(Bytes, Option<u64>), ApiError> {
    /// The well-formed request, borrowing from the body.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Borrowed<'a> {
        #[serde(borrow)]
        value: std::borrow::Cow<'a, str>,
        #[serde(default)]
        ttl_ms: Option<Value>,
    }
    // Only an object (a derived struct would take `["v"]` as well).
    let object = body.trim_ascii_start().first() == Some(&b'{');
    match serde_json::from_slice::<Borrowed<'_>>(body)
        .ok()
        .filter(|_| object)
    {
        Some(write) => {
            let ttl_ms = json_ttl(write.ttl_ms, max_ttl_ms)?;
            let value = match write.value {
                std::borrow::Cow::Borrowed(text) => body.slice_ref(text.as_bytes()),
                std::borrow::Cow::Owned(text) => Bytes::from(text),
            };
            Ok((value, ttl_ms))
        }
        // Anything else gets the same answer as ever, from the full parse.
        None => {
            let write = parse_json_write(body, max_ttl_ms)?;
            Ok((Bytes::from(write.value), write.ttl_ms))
        }
    }
}

/// Parses `{"value": "<string>", "ttl_ms": <positive integer>}`: `value` is required and must
/// be a string; `ttl_ms` may be left out or `null`, and is at most `max_ttl_ms`; any other
/// field is refused (so a misspelt `"ttl"` is not silently ignored).
pub fn parse_json_write(body: &[u8], max_ttl_ms: u64) -> Result<JsonWrite, ApiError> {
    let parsed: Value = serde_json::from_slice(body).map_err(|e| ApiError::Json(e.to_string()))?;
    let Value::Object(mut fields) = parsed else {
        return Err(ApiError::NotAnObject);
    };
    let value = match fields.remove("value") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(ApiError::ValueNotString),
        None => return Err(ApiError::MissingValue),
    };
    let ttl_ms = json_ttl(fields.remove("ttl_ms"), max_ttl_ms)?;
    reject_unknown_fields(&fields)?;
    Ok(JsonWrite { value, ttl_ms })
}

fn json_ttl(ttl: Option<Value>, max_ttl_ms: u64) -> Result<Option<u64>, ApiError> {
    match ttl {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(ms) if ms > 0 && ms <= max_ttl_ms => Ok(Some(ms)),
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
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn percent_decoding_is_strict_and_binary_safe() {
        assert_eq!(percent_decode(b"a%2Fb").as_deref(), Some(&b"a/b"[..]));
        assert_eq!(percent_decode(b"%ff").as_deref(), Some(&b"\xff"[..]));
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
    fn keys_come_from_the_whole_path() {
        let uri = |s: &str| s.parse::<Uri>().expect("a valid URI");
        let key = |s: &str, max: usize| key_from_path(&uri(s), max);
        assert_eq!(key("/a/b%20c?ttl_ms=5", 64).ok(), Some(b"a/b c".to_vec()));
        assert!(matches!(key("/", 64), Err(ApiError::EmptyKey)));
        assert!(matches!(key("/%", 64), Err(ApiError::KeyEncoding)));
        assert!(matches!(
            key("/123456789", 8),
            Err(ApiError::KeyTooLarge { max: 8 })
        ));
        assert_eq!(key("/12345678", 8).ok(), Some(b"12345678".to_vec()));
    }

    #[test]
    fn json_writes_are_validated_field_by_field() {
        let parse = |body: &[u8]| parse_json_write(body, u64::MAX);
        let ok = parse(br#"{"value":"x","ttl_ms":5}"#).expect("valid");
        assert_eq!((ok.value.as_str(), ok.ttl_ms), ("x", Some(5)));
        let null_ttl = parse(br#"{"value":"x","ttl_ms":null}"#).expect("valid");
        assert_eq!(null_ttl.ttl_ms, None);
        let err = |body: &[u8]| parse(body).expect_err("invalid").to_string();
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
        assert!(matches!(
            parse(br#"{"value":1}"#),
            Err(ApiError::ValueNotString)
        ));
        assert!(matches!(parse(b"[1]"), Err(ApiError::NotAnObject)));
        assert!(matches!(parse(b"{"), Err(ApiError::Json(_))));
        assert!(matches!(
            parse(br#"{"value":"x","ttl":5}"#),
            Err(ApiError::UnknownField(_))
        ));
    }

    #[test]
    fn ttls_above_the_backend_s_limit_are_bad() {
        let max = i64::MAX as u64;
        let body = format!(r#"{{"value":"x","ttl_ms":{}}}"#, max + 1);
        assert!(matches!(
            parse_json_write(body.as_bytes(), max),
            Err(ApiError::BadTtl)
        ));
        let body = format!(r#"{{"value":"x","ttl_ms":{max}}}"#);
        assert_eq!(
            parse_json_write(body.as_bytes(), max)
                .ok()
                .and_then(|w| w.ttl_ms),
            Some(max)
        );
        let uri = format!("/k?ttl_ms={}", max + 1)
            .parse::<Uri>()
            .expect("a URI");
        assert!(query_ttl(&uri, max).is_err());
        assert_eq!(query_ttl(&uri, u64::MAX).ok(), Some(Some(max + 1)));
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
        assert!(!is_octet_stream(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream; x=y"),
        );
        assert!(is_octet_stream(&headers));
    }

    #[test]
    fn query_ttl_must_be_positive() {
        let uri = |s: &str| s.parse::<Uri>().expect("a valid URI");
        let ttl = |s: &str| query_ttl(&uri(s), u64::MAX);
        assert_eq!(ttl("/k?a=1&ttl_ms=250").ok(), Some(Some(250)));
        assert_eq!(ttl("/k?ttl_ms=1&ttl_ms=2").ok(), Some(Some(1)));
        assert_eq!(ttl("/k?a=1").ok(), Some(None));
        assert_eq!(ttl("/k").ok(), Some(None));
        assert!(ttl("/k?ttl_ms=0").is_err());
        assert!(ttl("/k?ttl_ms").is_err());
        assert!(ttl("/k?ttl_ms=-3").is_err());
    }

    #[test]
    fn quotes_are_cut_at_character_boundaries() {
        assert_eq!(quoted("short"), "short");
        let long = "é".repeat(100);
        assert!(quoted(&long).len() <= MAX_QUOTED);
    }

    #[tokio::test]
    async fn bodies_are_read_within_their_limit() {
        let budget = BodyBudget::new(1 << 20, Duration::from_secs(1));
        let wait = Duration::from_secs(1);
        let mut headers = HeaderMap::new();
        let body = read_body(Body::from("abc"), &headers, 3, &budget, wait).await;
        assert_eq!(body.ok().map(|(b, _)| b).as_deref(), Some(&b"abc"[..]));
        let body = read_body(Body::from("abcd"), &headers, 3, &budget, wait).await;
        assert!(matches!(body, Err(ApiError::BodyTooLarge { max: 3 })));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("1000000000"));
        let body = read_body(Body::from("x"), &headers, 3, &budget, wait).await;
        assert!(matches!(body, Err(ApiError::BodyTooLarge { max: 3 })));
    }

    #[test]
    fn a_json_value_without_escapes_is_a_part_of_the_body() {
        let body = Bytes::from_static(br#"{"value": "plain text", "ttl_ms": 5}"#);
        let (value, ttl) = parse_json_write_bytes(&body, u64::MAX).unwrap();
        assert_eq!((&value[..], ttl), (&b"plain text"[..], Some(5)));
        assert!(body.as_ptr_range().contains(&value.as_ptr()), "copied");
        let body = Bytes::from_static(br#"{"value": "line\nbreak"}"#);
        let (value, ttl) = parse_json_write_bytes(&body, u64::MAX).unwrap();
        assert_eq!((&value[..], ttl), (&b"line\nbreak"[..], None));
        let body = Bytes::from_static(br#"{"ttl_ms": 18446744073709551615, "value": "v"}"#);
        assert_eq!(
            parse_json_write_bytes(&body, u64::MAX).unwrap().1,
            Some(u64::MAX)
        );
        // Wrong requests get the full parse's answer.
        let body = Bytes::from_static(br#"["v"]"#);
        assert!(matches!(
            parse_json_write_bytes(&body, u64::MAX),
            Err(ApiError::NotAnObject)
        ));
        let body = Bytes::from_static(br#"{"value": 1}"#);
        assert!(matches!(
            parse_json_write_bytes(&body, u64::MAX),
            Err(ApiError::ValueNotString)
        ));
    }
}
