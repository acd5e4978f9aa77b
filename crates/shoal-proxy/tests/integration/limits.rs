//! Input limits, and clients that misbehave: they cost their own connection only.

use std::time::{Duration, Instant};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_input_closes_only_that_connection() {
    let harness = shared();
    let proxy = start_proxy(&harness.seed(), |c| {
        c.proto_max_bulk_len = 1024;
        c.client_query_buffer_limit = 64 * 1024;
    });
    // A bulk string over proto-max-bulk-len: Redis's protocol error.
    let mut raw = Raw::connect(proxy.resp_addr()).await;
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000\r\n").await;
    assert_eq!(
        error_text(&raw.reply().await),
        "ERR Protocol error: invalid bulk length"
    );
    assert!(raw.closed().await);
    // Unprocessed input past client-query-buffer-limit: closed without a reply.
    let mut other = Raw::connect(proxy.resp_addr()).await;
    let mut flood = Raw::connect(proxy.resp_addr()).await;
    let mut partial = b"*100\r\n".to_vec();
    for _ in 0..90 {
        partial.extend_from_slice(b"$1000\r\n");
        partial.extend_from_slice(&[b'x'; 1000]);
        partial.extend_from_slice(b"\r\n");
    }
    // 90 of 100 arguments of 1000 bytes: over the 64 KiB limit, and never complete. (The proxy
    // may close the connection before it has taken it all.)
    for chunk in partial.chunks(4096) {
        if !flood.try_send(chunk).await {
            break;
        }
    }
    let got = flood.read_bytes(200).await;
    assert!(
        got.is_empty(),
        "the flooding client is closed: {}",
        String::from_utf8_lossy(&got)
    );
    assert_eq!(other.call(&["PING"]).await, simple("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_blocks_only_itself() {
    let harness = shared();
    let mut raw = Raw::connect(harness.addr()).await;
    let value = "v".repeat(64 * 1024);
    assert_eq!(raw.call(&["SET", "slow:big", &value]).await, simple("OK"));
    // 400 replies of 64 KiB (25 MiB) asked for and never read.
    let mut batch = Vec::new();
    for _ in 0..400 {
        batch.extend(frame(&[b"GET", b"slow:big"]));
    }
    let mut stalled = Raw::connect(harness.addr()).await;
    stalled.send(&batch).await;
    // Others are served meanwhile, promptly.
    let started = Instant::now();
    let mut other = Raw::connect(harness.addr()).await;
    for i in 0..50 {
        assert_eq!(
            other.call(&["ECHO", &i.to_string()]).await,
            bulk(&i.to_string())
        );
        assert_eq!(
            raw.call(&["STRLEN", "slow:big"]).await,
            shoal_client::Value::Int(65536)
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The stalled client still gets every reply once it reads.
    for _ in 0..400 {
        assert_eq!(stalled.reply().await, bulk(&value));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_and_clients_that_do_not_read_are_closed_as_on_a_node() {
    let harness = shared();
    let proxy = start_proxy(&harness.seed(), |c| {
        c.timeout = 1;
        c.client_output_buffer_limit = shoal_proxy::OutputLimit {
            hard: 1024 * 1024,
            soft: 0,
            soft_seconds: 0,
        };
    });
    // `timeout`: a client that sends nothing for more than a second is closed.
    let mut idle = Raw::connect(proxy.resp_addr()).await;
    assert_eq!(idle.call(&["PING"]).await, simple("PONG"));
    let started = Instant::now();
    assert!(idle.closed().await, "the idle client is closed");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // The hard output limit: 64 MiB of replies asked for and never read are not buffered.
    let mut writer = Raw::connect(proxy.resp_addr()).await;
    let value = "v".repeat(64 * 1024);
    assert_eq!(
        writer.call(&["SET", "olimit:big", &value]).await,
        simple("OK")
    );
    let mut flood = Raw::connect(proxy.resp_addr()).await;
    let mut batch = Vec::new();
    for _ in 0..1024 {
        batch.extend(frame(&[b"GET", b"olimit:big"]));
    }
    flood.send(&batch).await;
    // The client does not read for a while: the replies pile up at the proxy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut read = 0usize;
    loop {
        let got = flood.read_bytes(1 << 20).await;
        if got.is_empty() {
            break;
        }
        read += got.len();
    }
    assert!(
        read < 32 * 1024 * 1024,
        "the client was closed before its replies piled up ({read} bytes read)"
    );
    assert_eq!(writer.call(&["PING"]).await, simple("PONG"));
}
