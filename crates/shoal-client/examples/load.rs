//! A load generator on the smart client, for `bench/cluster.sh`: `concurrency` tasks issue
//! `requests` GETs or SETs in all over a key space of `keys` keys (the names redis-benchmark's
//! `-r` uses), through one [`Client`], and it prints what it measured as one line of JSON.
//!
//! ```sh
//! cargo run --release -p shoal-client --example load -- 127.0.0.1:7000 set 200000 50 100000 100
//! ```
//! Arguments: seeds (comma-separated RESP addresses), `get` or `set`, requests, concurrency,
//! keys, value size in bytes, and optionally the near cache's size in bytes (none, or 0: no
//! near cache; `bench/near-cache.sh` compares the two).
//! The cluster secret comes from the file `SHOAL_CLUSTER_SECRET_FILE` names (the nodes'
//! `--cluster-secret-file`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use shoal_client::{Client, ClientConfig, NearCacheConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (args, near) = match args.as_slice() {
        [rest @ .., near] if rest.len() == 6 => (rest, near.parse::<usize>()?),
        args => (args, 0),
    };
    let [seeds, op, requests, concurrency, keys, size] = args else {
        return Err(
            "usage: load SEEDS get|set REQUESTS CONCURRENCY KEYS VALUE_SIZE [NEAR_CACHE_BYTES]"
                .into(),
        );
    };
    let (requests, concurrency): (u64, u64) = (requests.parse()?, concurrency.parse()?);
    let (keys, size): (u64, usize) = (keys.parse()?, size.parse()?);
    let write = match op.as_str() {
        "set" => true,
        "get" => false,
        other => return Err(format!("unknown operation {other} (get or set)").into()),
    };
    let secret = shoal_cluster::BusSecret::load(std::path::Path::new(&std::env::var(
        "SHOAL_CLUSTER_SECRET_FILE",
    )?))?;
    let mut config = ClientConfig::new(seeds.split(',')).with_cluster_secret(secret);
    if near > 0 {
        config = config.with_near_cache(NearCacheConfig::new(near));
    }
    let client = Client::connect(config).await?;
    let value = Arc::new(vec![b'x'; size]);
    let issued = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (client, value, issued, failed) = (
            client.clone(),
            value.clone(),
            issued.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut state = task.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while issued.fetch_add(1, Relaxed) < requests {
                // xorshift: a cheap, even spread over the key space.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let key = format!("key:{:012}", state % keys);
                let ok = if write {
                    client.set(&key, value.as_slice(), None).await.is_ok()
                } else {
                    client.get(&key).await.is_ok()
                };
                if !ok {
                    failed.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = client.stats();
    let hits = client.near_cache_stats().map_or(0, |n| n.hits);
    println!(
        "{{\"requests\":{requests},\"failed\":{},\"seconds\":{elapsed:.3},\"rps\":{:.0},\"p50_us\":{},\"p99_us\":{},\"redirects\":{},\"socket_writes\":{},\"frames_sent\":{},\"near_cache_hits\":{hits}}}",
        failed.load(Relaxed),
        requests as f64 / elapsed,
        stats.latency.p50.as_micros(),
        stats.latency.p99.as_micros(),
        stats.redirects,
        stats.socket_writes,
        stats.frames_sent,
    );
    Ok(())
}
