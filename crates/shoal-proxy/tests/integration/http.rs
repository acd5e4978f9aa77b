//! The HTTP/JSON API through the proxy.

use reqwest::StatusCode;
use serde_json::{Value as Json, json};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_writes_reads_and_deletes_through_the_proxy() {
    let harness = shared();
    let base = format!(
        "http://{}",
        harness.proxy.http_addr().expect("an HTTP listener")
    );
    let http = reqwest::Client::new();

    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.json::<Json>().await.unwrap(),
        json!({"status": "ok"})
    );

    for i in 0..30 {
        let response = http
            .post(format!("{base}/http:{i}"))
            .body(json!({"value": format!("v{i}")}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    for i in 0..30 {
        let response = http.get(format!("{base}/http:{i}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.json::<Json>().await.unwrap(),
            json!({"value": format!("v{i}")})
        );
    }
    // The same keys over RESP, and the other way round.
    let mut raw = Raw::connect(harness.addr()).await;
    assert_eq!(raw.call(&["GET", "http:7"]).await, bulk("v7"));
    assert_eq!(
        raw.call(&["SET", "http:resp", "from resp"]).await,
        simple("OK")
    );
    let response = http.get(format!("{base}/http:resp")).send().await.unwrap();
    assert_eq!(
        response.json::<Json>().await.unwrap(),
        json!({"value": "from resp"})
    );

    // TTLs reach the node.
    let response = http
        .post(format!("{base}/http:ttl"))
        .body(r#"{"value": "short", "ttl_ms": 60000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let shoal_client::Value::Int(ttl) = raw.call(&["PTTL", "http:ttl"]).await else {
        panic!("a TTL")
    };
    assert!((1..=60_000).contains(&ttl), "{ttl}");

    // Raw bytes both ways.
    let response = http
        .post(format!("{base}/http:bin"))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 255, 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = http
        .get(format!("{base}/http:bin"))
        .header("accept", "application/octet-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().as_ref(), &[0u8, 255, 1]);
    let response = http.get(format!("{base}/http:bin")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);

    // Deletes, and what is not there.
    let response = http.delete(format!("{base}/http:3")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = http.delete(format!("{base}/http:3")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = http.get(format!("{base}/http:3")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Json>().await.unwrap(),
        json!({"error": "not found"})
    );

    // Bad requests.
    let response = http
        .post(format!("{base}/http:bad"))
        .body(r#"{"value": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Json>().await.unwrap(),
        json!({"error": "value must be a JSON string"})
    );
    let response = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Metrics count what happened.
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    for line in [
        "shoal_proxy_cluster_nodes 3",
        "shoal_proxy_cluster_primaries 3",
        "shoal_proxy_http_requests_total{method=\"POST\",code=\"204\"}",
        "shoal_proxy_upstream_requests_total",
        "shoal_proxy_connected_clients",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{line} in\n{text}"
        );
    }
    assert!(text.ends_with("# EOF\n"));
}
