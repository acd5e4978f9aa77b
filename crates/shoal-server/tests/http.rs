//! The HTTP/JSON API and `/metrics`, driven by a real HTTP client against a node started
//! in-process on free loopback ports, next to a RESP client on the same node to show both see
//! one keyspace.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode as AxumStatus};
use proptest::prelude::*;
use redis::AsyncCommands;
use reqwest::header::{ACCEPT, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use shoal_server::{Config, Server, Shared, StartError};
use tower::ServiceExt;

const OCTET_STREAM: &str = "application/octet-stream";
const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// A running node with an HTTP client and a RESP connection to it.
struct Node {
    _server: Server,
    base: String,
    http: reqwest::Client,
    resp: redis::aio::MultiplexedConnection,
}

impl Node {
    async fn start() -> Node {
        let server = start_server();
        let http_addr = server.http_addr().expect("the HTTP listener runs");
        let resp_url = format!("redis://{}/", server.resp_addr());
        let resp = redis::Client::open(resp_url)
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("RESP connects");
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("an HTTP client");
        Node {
            _server: server,
            base: format!("http://{http_addr}"),
            http,
            resp,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Response {
        let request = self
            .http
            .post(self.url(path))
            .header(CONTENT_TYPE, content_type)
            .body(body);
        self.send(request).await
    }

    async fn get(&self, path: &str) -> Response {
        self.send(self.http.get(self.url(path))).await
    }

    async fn get_raw(&self, path: &str) -> Response {
        self.send(self.http.get(self.url(path)).header(ACCEPT, OCTET_STREAM))
            .await
    }

    async fn delete(&self, path: &str) -> Response {
        self.send(self.http.delete(self.url(path))).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Response {
        request.send().await.expect("the HTTP request completes")
    }

    /// The JSON `value` of `GET path`, which must answer 200.
    async fn value(&self, path: &str) -> String {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        let body: Value = response.json().await.expect("a JSON body");
        body["value"]
            .as_str()
            .expect("value is a string")
            .to_string()
    }

    async fn resp_get(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.resp.get(key).await.expect("RESP GET")
    }

    async fn config_set(&mut self, name: &str, value: &str) {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut self.resp)
            .await
            .expect("CONFIG SET");
    }

    async fn scrape(&self) -> String {
        let response = self.get("/metrics").await;
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = header(&response, CONTENT_TYPE);
        assert_eq!(
            content_type,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        response.text().await.expect("a text body")
    }
}

/// Starts a node on a free HTTP port, retrying if another process takes the port first.
fn start_server() -> Server {
    let mut last_error = None;
    for _ in 0..20 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = Config {
            port: 0,
            http_port: port,
            threads: 2,
            ..Config::default()
        };
        match Server::start(config) {
            Ok(server) => return server,
            Err(e @ StartError::Bind { .. }) => last_error = Some(e),
            Err(e) => panic!("the node does not start: {e}"),
        }
    }
    panic!("no free HTTP port: {last_error:?}");
}

fn header(response: &Response, name: reqwest::header::HeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Asserts `response` is an error with `status` and a JSON `{"error": ...}` body; returns the
/// message.
async fn expect_error(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    assert_eq!(header(&response, CONTENT_TYPE), "application/json");
    let body: Value = response.json().await.expect("a JSON error body");
    let fields = body.as_object().expect("an object");
    assert_eq!(fields.len(), 1, "only an error field: {body}");
    fields["error"]
        .as_str()
        .expect("error is a string")
        .to_string()
}

#[tokio::test]
async fn post_get_delete_round_trip_over_the_resp_keyspace() {
    let mut node = Node::start().await;
    let written = node
        .post_json("/greeting", &json!({"value": "héllo"}))
        .await;
    assert_eq!(written.status(), StatusCode::NO_CONTENT);
    assert_eq!(node.value("/greeting").await, "héllo");
    let get = node.get("/greeting").await;
    assert_eq!(header(&get, CONTENT_TYPE), "application/json");
    assert_eq!(
        node.resp_get(b"greeting").await.as_deref(),
        Some("héllo".as_bytes())
    );

    // What `curl -d` sends: a form content type, read as JSON all the same.
    let curl = node
        .post_raw(
            "/greeting",
            "application/x-www-form-urlencoded",
            br#"{"value":"replaced"}"#.to_vec(),
        )
        .await;
    assert_eq!(curl.status(), StatusCode::NO_CONTENT);
    assert_eq!(node.value("/greeting").await, "replaced");

    let _: () = node.resp.set("from-resp", "42").await.expect("RESP SET");
    assert_eq!(node.value("/from-resp").await, "42");

    assert_eq!(
        node.delete("/greeting").await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(node.resp_get(b"greeting").await, None);
    let missing = expect_error(node.get("/greeting").await, StatusCode::NOT_FOUND).await;
    assert_eq!(missing, "not found");
    let gone = expect_error(node.delete("/greeting").await, StatusCode::NOT_FOUND).await;
    assert_eq!(gone, "not found");
}

#[tokio::test]
async fn a_hash_key_is_a_conflict_to_read_and_replaced_by_a_write() {
    let mut node = Node::start().await;
    let _: i64 = node.resp.hset("h", "f", "v").await.expect("RESP HSET");
    let conflict = expect_error(node.get("/h").await, StatusCode::CONFLICT).await;
    assert_eq!(
        conflict,
        "WRONGTYPE Operation against a key holding the wrong kind of value"
    );
    // A write replaces the hash, as Redis's SET does; a delete removes it.
    let written = node
        .post_json("/h", &json!({"value": "now a string"}))
        .await;
    assert_eq!(written.status(), StatusCode::NO_CONTENT);
    assert_eq!(node.value("/h").await, "now a string");
    let _: i64 = node.resp.hset("h2", "f", "v").await.expect("RESP HSET");
    assert_eq!(node.delete("/h2").await.status(), StatusCode::NO_CONTENT);
    let exists: bool = node.resp.exists("h2").await.expect("RESP EXISTS");
    assert!(!exists);
}

#[tokio::test]
async fn ttl_ms_expires_the_key() {
    let mut node = Node::start().await;
    let started = Instant::now();
    let written = node
        .post_json("/short", &json!({"value": "v", "ttl_ms": 200}))
        .await;
    assert_eq!(written.status(), StatusCode::NO_CONTENT);
    let pttl: i64 = node.resp.pttl("short").await.expect("PTTL");
    assert!((1..=200).contains(&pttl), "PTTL {pttl}");
    assert_eq!(node.value("/short").await, "v");
    loop {
        let response = node.get("/short").await;
        if response.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the key outlived its TTL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(190));
    assert_eq!(node.resp_get(b"short").await, None);
}

#[tokio::test]
async fn ttl_comes_from_the_body_or_the_query_and_plain_writes_clear_it() {
    let mut node = Node::start().await;
    let body_wins = node
        .post_json(
            "/k?ttl_ms=100000000",
            &json!({"value": "v", "ttl_ms": 5000}),
        )
        .await;
    assert_eq!(body_wins.status(), StatusCode::NO_CONTENT);
    let pttl: i64 = node.resp.pttl("k").await.expect("PTTL");
    assert!((1..=5000).contains(&pttl), "the body's ttl_ms wins: {pttl}");

    let from_query = node
        .post_json("/k?ttl_ms=60000", &json!({"value": "v"}))
        .await;
    assert_eq!(from_query.status(), StatusCode::NO_CONTENT);
    let pttl: i64 = node.resp.pttl("k").await.expect("PTTL");
    assert!((5001..=60000).contains(&pttl), "query ttl_ms: {pttl}");

    let raw = node
        .post_raw("/k?ttl_ms=90000", OCTET_STREAM, b"raw".to_vec())
        .await;
    assert_eq!(raw.status(), StatusCode::NO_CONTENT);
    let pttl: i64 = node.resp.pttl("k").await.expect("PTTL");
    assert!((60001..=90000).contains(&pttl), "raw body ttl: {pttl}");

    let plain = node.post_json("/k", &json!({"value": "v"})).await;
    assert_eq!(plain.status(), StatusCode::NO_CONTENT);
    let pttl: i64 = node.resp.pttl("k").await.expect("PTTL");
    assert_eq!(pttl, -1, "a write without ttl_ms clears the TTL");
}

#[tokio::test]
async fn octet_stream_round_trips_every_byte() {
    let mut node = Node::start().await;
    let bytes: Vec<u8> = (0..=255).collect();
    let written = node.post_raw("/bin", OCTET_STREAM, bytes.clone()).await;
    assert_eq!(written.status(), StatusCode::NO_CONTENT);
    assert_eq!(node.resp_get(b"bin").await, Some(bytes.clone()));

    let read = node.get_raw("/bin").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(header(&read, CONTENT_TYPE), OCTET_STREAM);
    assert_eq!(read.bytes().await.expect("a body").to_vec(), bytes);

    let json = expect_error(node.get("/bin").await, StatusCode::NOT_ACCEPTABLE).await;
    assert!(json.contains("Accept: application/octet-stream"), "{json}");

    // A UTF-8 value is served raw too when asked.
    let _: () = node.resp.set("text", "plain").await.expect("RESP SET");
    let raw = node.get_raw("/text").await;
    assert_eq!(raw.bytes().await.expect("a body").as_ref(), b"plain");
}

#[tokio::test]
async fn binary_values_written_over_resp_need_octet_stream() {
    let mut node = Node::start().await;
    let value = b"\xff\xfe\x00binary".to_vec();
    let _: () = node.resp.set("blob", &value).await.expect("RESP SET");
    let error = expect_error(node.get("/blob").await, StatusCode::NOT_ACCEPTABLE).await;
    assert!(error.contains("not valid UTF-8"), "{error}");
    assert!(
        error.contains("Accept: application/octet-stream"),
        "{error}"
    );
    let raw = node.get_raw("/blob").await;
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.bytes().await.expect("a body").to_vec(), value);
}

#[tokio::test]
async fn keys_are_percent_decoded_and_may_contain_slashes() {
    let mut node = Node::start().await;
    let cases: [(&str, &[u8]); 5] = [
        ("/a/b/c", b"a/b/c"),
        ("/a%2Fb", b"a/b"),
        ("/with%20space", b"with space"),
        ("/%C3%A9t%C3%A9", "été".as_bytes()),
        ("/bin%FF%00", b"bin\xff\x00"),
    ];
    for (i, (path, key)) in cases.into_iter().enumerate() {
        let value = format!("v{i}");
        let written = node.post_json(path, &json!({ "value": value })).await;
        assert_eq!(written.status(), StatusCode::NO_CONTENT, "POST {path}");
        assert_eq!(
            node.resp_get(key).await,
            Some(value.clone().into_bytes()),
            "{path}"
        );
        assert_eq!(node.value(path).await, value);
    }
    // The same key spelt two ways.
    assert_eq!(node.value("/%61%2F%62").await, "v1");
    // `/health` is the endpoint, but the key `health` can be reached escaped.
    let _: () = node.resp.set("health", "key").await.expect("RESP SET");
    assert_eq!(node.value("/%68ealth").await, "key");
}

#[tokio::test]
async fn health_answers_ok() {
    let node = Node::start().await;
    let response = node.get("/health").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "application/json");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body, json!({"status": "ok"}));
}

#[tokio::test]
async fn bad_json_writes_are_refused_with_a_reason() {
    let node = Node::start().await;
    let cases = [
        (json!({"value": 42}), "value must be a JSON string"),
        (json!({"value": {"a": 1}}), "value must be a JSON string"),
        (json!({"value": null}), "value must be a JSON string"),
        (json!({"ttl_ms": 10}), "missing field \"value\""),
        (
            json!({"value": "v", "ttl_ms": 0}),
            "ttl_ms must be a positive integer",
        ),
        (
            json!({"value": "v", "ttl_ms": -5}),
            "ttl_ms must be a positive integer",
        ),
        (
            json!({"value": "v", "ttl_ms": 1.5}),
            "ttl_ms must be a positive integer",
        ),
        (
            json!({"value": "v", "ttl_ms": "10"}),
            "ttl_ms must be a positive integer",
        ),
        (
            json!({"value": "v", "ttl_ms": u64::MAX}),
            "ttl_ms is too large",
        ),
    ];
    for (body, message) in cases {
        let response = node.post_json("/k", &body).await;
        let error = expect_error(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(error, message, "{body}");
    }
    let unknown = node.post_json("/k", &json!({"value": "v", "ttl": 5})).await;
    let error = expect_error(unknown, StatusCode::BAD_REQUEST).await;
    assert!(error.starts_with("unknown field \"ttl\""), "{error}");
    let array = node.post_json("/k", &json!(["v"])).await;
    let error = expect_error(array, StatusCode::BAD_REQUEST).await;
    assert!(error.starts_with("body must be a JSON object"), "{error}");

    let broken = node
        .post_raw("/k", "application/json", br#"{"value": "#.to_vec())
        .await;
    let error = expect_error(broken, StatusCode::BAD_REQUEST).await;
    assert!(
        error.starts_with("invalid JSON: EOF while parsing"),
        "{error}"
    );
    let empty = node.post_raw("/k", "text/plain", Vec::new()).await;
    let error = expect_error(empty, StatusCode::BAD_REQUEST).await;
    assert!(error.starts_with("invalid JSON"), "{error}");

    let bad_query = node.post_json("/k?ttl_ms=0", &json!({"value": "v"})).await;
    let error = expect_error(bad_query, StatusCode::BAD_REQUEST).await;
    assert_eq!(error, "ttl_ms must be a positive integer");
    assert_eq!(node.get("/k").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_keys_and_methods_are_refused() {
    let mut node = Node::start().await;
    let empty = node.post_json("/", &json!({"value": "v"})).await;
    assert_eq!(
        expect_error(empty, StatusCode::BAD_REQUEST).await,
        "key must not be empty"
    );
    let empty_get = expect_error(node.get("/").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(empty_get, "key must not be empty");
    let escape = expect_error(node.get("/100%").await, StatusCode::BAD_REQUEST).await;
    assert_eq!(escape, "key is not validly percent-encoded");

    node.config_set("max-key-size", "8").await;
    let long = node.post_json("/123456789", &json!({"value": "v"})).await;
    let error = expect_error(long, StatusCode::BAD_REQUEST).await;
    assert_eq!(error, "key is too large (max-key-size is 8 bytes)");
    let long_get = node.get("/123456789").await;
    assert_eq!(long_get.status(), StatusCode::BAD_REQUEST);
    let fits = node.post_json("/12345678", &json!({"value": "v"})).await;
    assert_eq!(fits.status(), StatusCode::NO_CONTENT);

    let put = node.send(node.http.put(node.url("/k")).body("x")).await;
    assert_eq!(
        expect_error(put, StatusCode::METHOD_NOT_ALLOWED).await,
        "method not allowed"
    );
    let post_health = node.post_json("/health", &json!({"value": "v"})).await;
    assert_eq!(post_health.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bodies_over_proto_max_bulk_len_are_refused() {
    let mut node = Node::start().await;
    node.config_set("proto-max-bulk-len", "1mb").await;
    let max = 1024 * 1024;
    let too_big = node
        .post_raw("/big", OCTET_STREAM, vec![b'x'; max + 1])
        .await;
    let error = expect_error(too_big, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(
        error,
        format!("body is too large (proto-max-bulk-len is {max} bytes)")
    );
    let json = json!({ "value": "x".repeat(max) });
    let too_big_json = node.post_json("/big", &json).await;
    assert_eq!(too_big_json.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(node.resp_get(b"big").await, None);

    let fits = node.post_raw("/big", OCTET_STREAM, vec![b'x'; max]).await;
    assert_eq!(fits.status(), StatusCode::NO_CONTENT);
    let stored = node.resp_get(b"big").await.expect("stored");
    assert_eq!(stored.len(), max);
}

#[tokio::test]
async fn writes_refused_by_min_replicas_to_write_answer_503() {
    let mut node = Node::start().await;
    let first = node.post_json("/first", &json!({"value": "v"})).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    // No replica can acknowledge: every write is refused, over HTTP as over RESP.
    node.config_set("min-replicas-to-write", "1").await;
    let refused = node.post_json("/second", &json!({"value": "v"})).await;
    let error = expect_error(refused, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(error, "NOREPLICAS Not enough good replicas to write.");
    let deleted = node.delete("/first").await;
    assert_eq!(deleted.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(node.value("/first").await, "v", "reads still work");
    assert_eq!(node.resp_get(b"second").await, None);
    node.config_set("min-replicas-to-write", "0").await;
    let accepted = node.post_json("/second", &json!({"value": "v"})).await;
    assert_eq!(accepted.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn writes_over_maxmemory_under_noeviction_answer_507() {
    let mut node = Node::start().await;
    let first = node.post_json("/first", &json!({"value": "v"})).await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    node.config_set("maxmemory-policy", "noeviction").await;
    node.config_set("maxmemory", "1").await;

    let refused = node.post_json("/second", &json!({"value": "v"})).await;
    let error = expect_error(refused, StatusCode::INSUFFICIENT_STORAGE).await;
    assert_eq!(error, OOM);
    let raw = node.post_raw("/second", OCTET_STREAM, b"v".to_vec()).await;
    assert_eq!(raw.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(node.resp_get(b"second").await, None);

    // Reads and deletes still work, as over RESP.
    assert_eq!(node.value("/first").await, "v");
    assert_eq!(node.delete("/first").await.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn bodies_without_a_length_are_cut_off_at_the_limit() {
    let shared = Shared::new(Config {
        port: 0,
        http_port: 0,
        threads: 1,
        proto_max_bulk_len: shoal_server::ByteSize(1024 * 1024),
        ..Config::default()
    });
    let router = shoal_server::http::router(shared.clone());
    // No Content-Length header: the limit is enforced while the body streams in.
    let request = Request::builder()
        .method("POST")
        .uri("/streamed")
        .header("content-type", OCTET_STREAM)
        .body(Body::from(vec![0u8; 1024 * 1024 + 1]))
        .expect("a request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), AxumStatus::PAYLOAD_TOO_LARGE);
    assert_eq!(shared.store.get(b"streamed", |v| v.len()).unwrap(), None);

    // A declared length far over the limit is refused before any of the body is read.
    let request = Request::builder()
        .method("POST")
        .uri("/declared")
        .header("content-type", OCTET_STREAM)
        .header("content-length", "1000000000")
        .body(Body::from("x"))
        .expect("a request");
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), AxumStatus::PAYLOAD_TOO_LARGE);
}

/// The value of the sample `series` (the whole `name{labels}` text) in a scrape, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Checks the exposition's shape: `# HELP`/`# TYPE`/`# UNIT` comments, `name{labels} value`
/// samples whose families were declared, and the closing `# EOF`.
fn assert_parses_as_openmetrics(text: &str) {
    let mut families = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"));
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            families.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
        assert!(value.parse::<f64>().is_ok(), "value of {line}");
        let name = series.split('{').next().unwrap_or(series);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name in {line}"
        );
        assert!(
            families.iter().any(|f| name.starts_with(f.as_str())),
            "{line} has a # TYPE"
        );
        if let Some(labels) = series.split_once('{').map(|(_, l)| l) {
            assert!(labels.ends_with('}'), "labels of {line}");
        }
    }
}

#[tokio::test]
async fn metrics_name_the_hottest_keys() {
    let mut node = Node::start().await;
    for i in 0..4_000 {
        let key = if i % 4 == 0 {
            format!("cold:{i}")
        } else {
            "hot\"key".to_string()
        };
        let _: Option<Vec<u8>> = node.resp.get(key).await.unwrap();
    }
    let text = node.scrape().await;
    assert!(text.contains("\nshoal_hotkey_sample_ratio 64\n"), "{text}");
    // The quote is shown as `?`, and the hot key is the heaviest by requests and by bytes.
    for family in [
        "shoal_hotkey_sampled_requests",
        "shoal_hotkey_sampled_net_bytes",
    ] {
        let first = text
            .lines()
            .find(|l| l.starts_with(&format!("{family}{{")))
            .unwrap_or_else(|| panic!("no {family} in {text}"));
        assert!(
            first.starts_with(&format!("{family}{{key=\"hot?key\"}} ")),
            "{first}"
        );
    }
    let shown = text
        .lines()
        .filter(|l| l.starts_with("shoal_hotkey_sampled_requests{"))
        .count();
    assert!((1..=10).contains(&shown), "{shown} keys shown");
}

#[tokio::test]
async fn a_scraper_that_asks_for_the_text_format_gets_it() {
    let node = Node::start().await;
    let response = node
        .send(
            node.http
                .get(node.url("/metrics"))
                .header(ACCEPT, "text/plain; version=0.0.4"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, CONTENT_TYPE),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("# EOF") && !text.contains("# UNIT "),
        "{text}"
    );
    // A counter's comments name its `_total` series, as the text format wants; every
    // sample's family is declared.
    assert!(
        text.contains("# TYPE shoal_keyspace_hits_total counter\n"),
        "{text}"
    );
    let declared: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|base| declared.contains(base))
            .unwrap_or(name);
        assert!(declared.contains(&family), "{line} has no # TYPE");
    }
    // Prometheus's own Accept header still gets OpenMetrics.
    let response = node
        .send(node.http.get(node.url("/metrics")).header(
            ACCEPT,
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ))
        .await;
    assert_parses_as_openmetrics(&response.text().await.unwrap());
}

#[tokio::test]
async fn metrics_count_commands_and_parse_as_prometheus_text() {
    let mut node = Node::start().await;
    let get_ok = "shoal_commands_total{command=\"get\",result=\"ok\"}";
    let before = node.scrape().await;
    assert_parses_as_openmetrics(&before);
    let calls_before = sample(&before, get_ok).unwrap_or(0.0);
    let hits_before = sample(&before, "shoal_keyspace_hits_total").expect("hits");

    let _: () = node.resp.set("m", "1").await.expect("SET");
    for _ in 0..3 {
        let _: Option<String> = node.resp.get("m").await.expect("GET");
    }
    let _: redis::RedisResult<()> = redis::cmd("NOSUCHCOMMAND")
        .query_async(&mut node.resp)
        .await;

    let after = node.scrape().await;
    assert_parses_as_openmetrics(&after);
    assert_eq!(sample(&after, get_ok), Some(calls_before + 3.0));
    let set_ok = "shoal_commands_total{command=\"set\",result=\"ok\"}";
    assert!(sample(&after, set_ok).is_some_and(|v| v >= 1.0));
    let hits = sample(&after, "shoal_keyspace_hits_total").expect("hits");
    assert!(hits >= hits_before + 3.0);
    let count = "shoal_command_duration_seconds_count{command=\"get\"}";
    assert_eq!(sample(&after, count), Some(calls_before + 3.0));
    let inf = "shoal_command_duration_seconds_bucket{le=\"+Inf\",command=\"get\"}";
    assert_eq!(sample(&after, inf), Some(calls_before + 3.0));
    assert!(sample(&after, "shoal_errors_total{code=\"ERR\"}").is_some_and(|v| v >= 1.0));
    assert_eq!(sample(&after, "shoal_keys"), Some(1.0));
    assert!(sample(&after, "shoal_memory_used_bytes").is_some_and(|v| v > 0.0));
    assert!(sample(&after, "shoal_connected_clients").is_some_and(|v| v >= 1.0));
    assert!(sample(&after, "shoal_net_input_bytes_total").is_some_and(|v| v > 0.0));
    assert!(sample(&after, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
    assert!(sample(&after, "process_cpu_seconds_total").is_some_and(|v| v > 0.0));
    assert!(after.contains("# TYPE shoal_command_duration_seconds histogram"));
    // The first scrape is counted by the time of the second.
    let http = "shoal_http_requests_total{method=\"GET\",code=\"200\"}";
    assert!(sample(&after, http).is_some_and(|v| v >= 1.0));
}

#[tokio::test]
async fn metrics_count_http_requests_by_status() {
    let node = Node::start().await;
    assert_eq!(node.get("/absent").await.status(), StatusCode::NOT_FOUND);
    let written = node.post_json("/present", &json!({"value": "v"})).await;
    assert_eq!(written.status(), StatusCode::NO_CONTENT);
    let text = node.scrape().await;
    let not_found = "shoal_http_requests_total{method=\"GET\",code=\"404\"}";
    assert_eq!(sample(&text, not_found), Some(1.0));
    let created = "shoal_http_requests_total{method=\"POST\",code=\"204\"}";
    assert_eq!(sample(&text, created), Some(1.0));
    let count = "shoal_http_request_duration_seconds_count{method=\"POST\"}";
    assert_eq!(sample(&text, count), Some(1.0));
}

// ---------------------------------------------------------------------------------------------
// Fuzzing the handlers in-process (no sockets): random keys, bodies and headers.

fn fuzz_request(
    method: &str,
    path: String,
    content_type: Option<&str>,
    accept: bool,
    body: Vec<u8>,
) -> Option<Request<Body>> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    if accept {
        builder = builder.header("accept", OCTET_STREAM);
    }
    builder.body(Body::from(body)).ok()
}

fn fuzz_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (any::<String>(), proptest::option::of(any::<i64>()))
            .prop_map(|(v, ttl)| { json!({"value": v, "ttl_ms": ttl}).to_string().into_bytes() }),
        "\\PC{0,40}".prop_map(String::into_bytes),
    ]
}

fn fuzz_path() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|key| {
            let escaped: String = key.iter().map(|b| format!("%{b:02X}")).collect();
            format!("/{escaped}")
        }),
        "/[a-zA-Z0-9%/?=&._~-]{0,40}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_never_get_a_server_error(
        method in prop::sample::select(vec!["GET", "POST", "DELETE", "PUT", "HEAD"]),
        path in fuzz_path(),
        content_type in prop::sample::select(vec![
            None, Some("application/json"), Some(OCTET_STREAM), Some("text/plain; x"),
        ]),
        accept in any::<bool>(),
        body in fuzz_body(),
    ) {
        let Some(request) = fuzz_request(method, path, content_type, accept, body) else {
            return Ok(());
        };
        let router = shoal_server::http::router(fuzz_node());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let response = runtime
            .block_on(router.oneshot(request))
            .expect("the router is infallible");
        let status = response.status();
        prop_assert!(
            !status.is_server_error() || status == AxumStatus::INSUFFICIENT_STORAGE,
            "status {status}"
        );
        if status.is_client_error() {
            let content_type = response.headers().get("content-type").cloned();
            prop_assert_eq!(
                content_type.as_ref().and_then(|v| v.to_str().ok()),
                Some("application/json")
            );
        }
    }
}

/// One node's state for every fuzz case (small limits, so the limit paths are hit too).
fn fuzz_node() -> Arc<Shared> {
    static NODE: std::sync::OnceLock<Arc<Shared>> = std::sync::OnceLock::new();
    NODE.get_or_init(|| {
        let shared = Shared::new(Config {
            port: 0,
            http_port: 0,
            threads: 1,
            shards: 4,
            ..Config::default()
        });
        let mut config = shared.config.read().clone();
        config.max_key_size = shoal_server::ByteSize(16);
        shared.apply_config(config);
        shared
    })
    .clone()
}

#[tokio::test]
async fn a_password_protects_every_endpoint_but_health() {
    let mut node = Node::start().await;
    let _: () = node.resp.set("k", "v").await.expect("RESP SET");
    node.config_set("requirepass", "s3cret").await;

    let refused = node.get("/k").await;
    let challenges: Vec<&str> = refused
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(challenges, ["Bearer", "Basic realm=\"shoal\""]);
    let message = expect_error(refused, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("Authorization: Bearer"), "{message}");
    expect_error(node.get("/metrics").await, StatusCode::UNAUTHORIZED).await;
    let wrong = node
        .http
        .get(node.url("/k"))
        .bearer_auth("nope")
        .send()
        .await
        .expect("sent");
    expect_error(wrong, StatusCode::UNAUTHORIZED).await;

    let bearer = node
        .http
        .get(node.url("/k"))
        .bearer_auth("s3cret")
        .send()
        .await
        .expect("sent");
    assert_eq!(bearer.status(), StatusCode::OK);
    let basic = node
        .http
        .get(node.url("/k"))
        .basic_auth("default", Some("s3cret"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        basic.json::<Value>().await.expect("JSON"),
        json!({"value": "v"})
    );
    assert_eq!(node.get("/health").await.status(), StatusCode::OK);

    node.config_set("requirepass", "").await;
    assert_eq!(node.get("/k").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn cluster_shows_a_node_alone_with_its_numbers_and_hot_keys() {
    let mut node = Node::start().await;
    let address = node._server.resp_addr().to_string();
    let _: () = node.resp.set("dash:hot", "v").await.expect("RESP SET");
    // Hot enough for the background sample (one command in 64): about 47 samples.
    let mut reads = redis::pipe();
    for _ in 0..3000 {
        reads.get("dash:hot");
    }
    let _: Vec<Option<String>> = reads.query_async(&mut node.resp).await.expect("GETs");
    assert_eq!(node.resp_get(b"dash:missing").await, None);

    let response = node.get("/cluster").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, CONTENT_TYPE), "application/json");
    let view: Value = response.json().await.expect("a JSON body");
    assert_eq!(
        (&view["mode"], &view["state"]),
        (&json!("standalone"), &json!("ok"))
    );
    assert_eq!(view["shards"], json!([]));
    let nodes = view["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{view}");
    let me = &nodes[0];
    assert_eq!(me["address"], json!(address), "{view}");
    assert_eq!(
        (&me["role"], &me["health"]),
        (&json!("primary"), &json!("ok"))
    );
    assert_eq!(me["keys"], 1);
    assert!(me["used_memory"].as_u64().unwrap() > 0, "{view}");
    let ratio = me["hit_ratio"].as_f64().expect("a hit ratio");
    assert!(
        (0.99..1.0).contains(&ratio),
        "3000 hits and 1 miss: {ratio}"
    );
    let hot = &view["hot_keys"][0];
    assert_eq!(hot["key"], "dash:hot", "{view}");
    let requests = hot["requests"].as_u64().expect("requests");
    assert!(
        (1000..=6000).contains(&requests),
        "about 3000 estimated: {requests}"
    );
    assert!(hot["net_bytes"].as_u64().unwrap() > requests, "{hot}");

    let page = node.get("/dashboard").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, CONTENT_TYPE), "text/html; charset=utf-8");

    node.config_set("requirepass", "s3cret").await;
    for path in ["/cluster", "/dashboard"] {
        expect_error(node.get(path).await, StatusCode::UNAUTHORIZED).await;
        let authorized = node
            .http
            .get(node.url(path))
            .basic_auth("default", Some("s3cret"))
            .send()
            .await
            .expect("sent");
        assert_eq!(authorized.status(), StatusCode::OK, "{path}");
    }
}
