//! Pub/Sub fan-out load for `bench/pubsub.sh`: `SUBSCRIBERS` connections subscribe to one
//! channel of the server at `ADDR`, one publisher sends `MESSAGES` messages (pipelined, 16 at
//! a time), and the tool prints the messages delivered per second: from the first `PUBLISH`
//! until every subscriber has read every message. The same tool drives Redis and Shoal.
//!
//! `cargo run --release -p shoal --example pubsub_fanout -- ADDR SUBSCRIBERS MESSAGES SIZE`

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHANNEL: &str = "fanout";

fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads until `expected` bytes have arrived (or the deadline passes); how many did.
async fn read_bytes(stream: &mut TcpStream, expected: usize, deadline: Instant) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    got
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, addr, subscribers, messages, size] = args.as_slice() else {
        eprintln!("usage: pubsub_fanout ADDR SUBSCRIBERS MESSAGES SIZE");
        std::process::exit(2);
    };
    let subscribers: usize = subscribers.parse().expect("SUBSCRIBERS");
    let messages: usize = messages.parse().expect("MESSAGES");
    let size: usize = size.parse().expect("SIZE");
    let payload = vec![b'x'; size];
    let message_len = command(&[b"message", CHANNEL.as_bytes(), &payload]).len();
    let confirmation_len = command(&[b"subscribe", CHANNEL.as_bytes()]).len() + b":1\r\n".len();
    let mut connections = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut stream = TcpStream::connect(addr.as_str()).await.expect("connect");
        stream
            .write_all(&command(&[b"SUBSCRIBE", CHANNEL.as_bytes()]))
            .await
            .unwrap();
        connections.push(stream);
    }
    // Every confirmation (`*3 subscribe fanout :1`) is in before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(30);
    for stream in &mut connections {
        read_bytes(stream, confirmation_len, deadline).await;
    }
    let expected = messages * message_len;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    let readers: Vec<_> = connections
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move { read_bytes(&mut stream, expected, deadline).await })
        })
        .collect();
    let mut publisher = TcpStream::connect(addr.as_str()).await.expect("connect");
    let publish = command(&[b"PUBLISH", CHANNEL.as_bytes(), &payload]);
    let batch: Vec<u8> = publish.repeat(16);
    let reply_len = format!(":{subscribers}\r\n").len();
    let mut sent = 0;
    while sent < messages {
        let n = (messages - sent).min(16);
        publisher
            .write_all(&batch[..n * publish.len()])
            .await
            .unwrap();
        read_bytes(&mut publisher, n * reply_len, deadline).await;
        sent += n;
    }
    let mut complete = 0;
    for reader in readers {
        if reader.await.unwrap() >= expected {
            complete += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = (complete * messages) as f64;
    println!(
        "subscribers={subscribers} messages={messages} size={size} complete={complete} \
         seconds={elapsed:.3} deliveries_per_sec={:.0}",
        delivered / elapsed
    );
}
