//! The HTTP API against hostile clients, on a node started in-process: connections that send
//! half a request are closed after `http-timeout` and cannot take more than `http-maxclients`
//! (so the RESP port keeps serving), request bodies are held within `http-max-inflight-bytes`
//! and a stalled one is given up, a browser cannot be made to write (cross-site requests) or to
//! reach the API under a name it was not given (DNS rebinding), and a wrong password is logged
//! with the client's address.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use shoal_server::{ByteSize, Server};
use shoal_testkit::LocalNode;

/// Starts a node whose HTTP API has tight guards: 4 connections, a 1 s timeout, 1 MiB of
/// bodies in flight.
fn start_guarded() -> LocalNode {
    LocalNode::start_with(|config| {
        config.http_port = shoal_testkit::free_port().expect("a free port");
        config.threads = 1;
        config.http_maxclients = 4;
        config.http_timeout = 1;
        config.http_max_inflight_bytes = ByteSize(1024 * 1024);
    })
    .expect("the node starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    stream
}

/// Sends `request` on a new connection and reads the answer until the server closes.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = connect(addr);
    stream.write_all(request).expect("sends");
    read_to_close(&mut stream)
}

/// Everything the server sends until it closes the connection (or 10 s pass).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

fn resp_ping(server: &Server) -> String {
    let mut stream = connect(server.resp_addr());
    stream.write_all(b"PING\r\n").expect("sends");
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).expect("a reply");
    String::from_utf8_lossy(&reply).into_owned()
}

fn metric(server: &Server, name: &str) -> f64 {
    let http = server.http_addr().expect("HTTP runs");
    let page = exchange(
        http,
        b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} on the metrics page"))
}

#[test]
fn half_sent_requests_are_closed_after_the_timeout_and_cannot_take_the_node() {
    let node = start_guarded();
    let server = node.server();
    let http = server.http_addr().expect("HTTP runs");
    let started = Instant::now();
    // Four connections that never finish their headers take every HTTP slot...
    let mut slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = connect(http);
            stream
                .write_all(b"GET /k HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                .expect("sends");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // ...so a fifth is answered 503 at once and closed,
    let turned_away = exchange(http, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    assert_eq!(status_of(&turned_away), 503, "{turned_away}");
    assert!(turned_away.contains("too many HTTP connections"));
    // while RESP clients are served as ever.
    assert_eq!(resp_ping(server), "+PONG\r\n");
    // The slow ones are closed once their headers are late.
    for stream in &mut slow {
        read_to_close(stream);
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    // The slots are free again.
    let served = exchange(
        http,
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&served), 200, "{served}");
    assert_eq!(metric(server, "shoal_http_connections_rejected_total"), 1.0);
    assert_eq!(
        metric(server, "shoal_http_connections_timed_out_total"),
        4.0
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let node = start_guarded();
    let server = node.server();
    let http = server.http_addr().expect("HTTP runs");
    let mut stream = connect(http);
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("sends");
    let started = Instant::now();
    let answer = read_to_close(&mut stream);
    assert_eq!(status_of(&answer), 200, "{answer}");
    let idle = started.elapsed();
    assert!(
        idle >= Duration::from_millis(900) && idle < Duration::from_secs(5),
        "closed after {idle:?}"
    );
}

#[test]
fn bodies_wait_for_the_inflight_budget_and_a_stalled_body_is_given_up() {
    let node = start_guarded();
    let server = node.server();
    let http = server.http_addr().expect("HTTP runs");
    // A body larger than the whole budget cannot ever fit: 503 without reading it.
    let answer = exchange(
        http,
        b"POST /big HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
          Content-Length: 2097152\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("http-max-inflight-bytes"), "{answer}");

    // A body that holds most of the budget and comes slowly (a byte every 300 ms, for 1.5 s)...
    let mut slow = connect(http);
    slow.write_all(
        b"POST /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/octet-stream\r\nContent-Length: 800000\r\n\r\nabc",
    )
    .expect("sends");
    let mut trickle = slow.try_clone().expect("a second handle");
    let trickling = std::thread::spawn(move || {
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(300));
            if trickle.write_all(b"x").is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    // ...makes another large body wait, then give up with a 503 after the timeout,
    let second_body = [
        &b"POST /second HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
           Content-Length: 500000\r\nConnection: close\r\n\r\n"[..],
        &vec![b'x'; 500_000],
    ]
    .concat();
    let waited = Instant::now();
    let second = exchange(http, &second_body);
    assert_eq!(status_of(&second), 503, "{second}");
    assert!(waited.elapsed() >= Duration::from_millis(900));
    // and the slow body is given up (408) once nothing more has come for the timeout.
    trickling.join().expect("the trickle ends");
    let slow_answer = read_to_close(&mut slow);
    assert_eq!(status_of(&slow_answer), 408, "{slow_answer}");
    // With the budget back, the same body is stored.
    let stored = exchange(http, &second_body);
    assert_eq!(status_of(&stored), 204, "{stored}");
}

#[test]
fn a_browser_cannot_be_made_to_write_or_to_reach_the_api_under_another_name() {
    let node = start_guarded();
    let server = node.server();
    let http = server.http_addr().expect("HTTP runs");
    let port = http.port();
    let post = |host: &str, origin: Option<&str>, key: &str| {
        let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        let body = r#"{"value":"written"}"#;
        let request = format!(
            "POST /{key} HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: text/plain\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        exchange(http, request.as_bytes())
    };
    let get = |key: &str| {
        let request =
            format!("GET /{key} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        status_of(&exchange(http, request.as_bytes()))
    };
    let here = format!("127.0.0.1:{port}");

    // A page on another site posting a text/plain "form" (a request a browser sends without
    // asking first): refused, nothing written.
    let answer = post(&here, Some("http://evil.example"), "csrf");
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(answer.contains("cross-origin"), "{answer}");
    assert_eq!(get("csrf"), 404);

    // DNS rebinding: the attacker's name, now pointing at the node, in the Host header.
    let answer = post(&format!("rebound.evil.example:{port}"), None, "rebound");
    assert_eq!(status_of(&answer), 403, "{answer}");
    assert!(answer.contains("http-allowed-hosts"), "{answer}");
    assert_eq!(get("rebound"), 404);

    // What clients and the node's own pages send is served.
    assert_eq!(status_of(&post(&here, None, "plain")), 204);
    assert_eq!(
        status_of(&post(&format!("localhost:{port}"), None, "named")),
        204
    );
    let same_origin = format!("http://{here}");
    assert_eq!(status_of(&post(&here, Some(&same_origin), "same")), 204);
    assert_eq!(get("plain"), 200);
}

#[test]
fn a_wrong_http_password_is_logged_with_the_client_s_address() {
    let node = LocalNode::start_with(|config| {
        config.http_port = shoal_testkit::free_port().expect("a free port");
        config.threads = 1;
        config.requirepass = "right".into();
    })
    .expect("the node starts");
    let http = node.server().http_addr().expect("HTTP runs");
    // `default:wrong`, as curl -u sends it.
    let answer = exchange(
        http,
        b"GET /k HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ZGVmYXVsdDp3cm9uZw==\r\n\
          Connection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 401, "{answer}");
    let mut resp = connect(node.server().resp_addr());
    resp.write_all(b"AUTH right\r\nACL LOG 1\r\n")
        .expect("sends");
    let mut log = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&log).contains("proto=http") {
        let n = resp.read(&mut chunk).expect("the log comes");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&log));
        log.extend_from_slice(&chunk[..n]);
    }
    let log = String::from_utf8_lossy(&log);
    assert!(log.contains("addr=127.0.0.1:"), "{log}");
}
