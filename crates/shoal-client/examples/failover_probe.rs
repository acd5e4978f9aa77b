//! Measures one failover, for `bench/failover.sh`: writers keep writing keys of one shard
//! through the smart client; after a second of steady writes the probe kills (SIGKILL) the
//! shard's primary, and reports as one line of JSON the time from the kill to the first write
//! acknowledged on its successor, and how many acknowledged writes the cluster lost (each key
//! has one writer writing increasing numbers: an acknowledged number above the key's final
//! value is lost; with asynchronous replication a primary may die with writes its replicas
//! never got).
//!
//! ```sh
//! failover_probe SEED PRIMARY_PID PRIMARY_ADDR [WRITERS] [SECONDS_AFTER]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shoal_client::{Client, ClientConfig};
use shoal_cluster::key_slot;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        return Err(
            "usage: failover_probe SEED PRIMARY_PID PRIMARY_ADDR [WRITERS] [SECONDS_AFTER]".into(),
        );
    }
    let (seed, pid, primary) = (&args[0], args[1].parse::<i32>()?, args[2].clone());
    let writers: usize = args.get(3).map_or(Ok(4), |a| a.parse())?;
    let after = Duration::from_secs(args.get(4).map_or(Ok(3), |a| a.parse())?);
    let mut config = ClientConfig::new([seed.as_str()]);
    config.max_attempts = 1000;
    config.backoff_max = Duration::from_millis(20);
    config.request_timeout = Duration::from_millis(500);
    config.retry_writes_after_timeout = false;
    let client = Client::connect(config).await?;
    let map = client.map();
    let keys: Vec<String> = (0..100_000)
        .map(|i| format!("probe:{i}"))
        .filter(|k| {
            map.primary_of_slot(key_slot(k.as_bytes()))
                .is_some_and(|n| n.resp_addr() == primary)
        })
        .take(writers * 50)
        .collect();
    if keys.is_empty() {
        return Err(format!("no key of the probe lives on {primary}").into());
    }
    // Every acknowledged value, per key (increasing: each key has one writer).
    let acked: Arc<Mutex<HashMap<String, Vec<u64>>>> = Arc::default();
    let first_after_kill: Arc<Mutex<Option<Instant>>> = Arc::default();
    let killed_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mine: Vec<String> = keys.iter().skip(w).step_by(writers).cloned().collect();
        let (client, acked, first, killed, stop) = (
            client.clone(),
            acked.clone(),
            first_after_kill.clone(),
            killed_at.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Relaxed) {
                n += 1;
                let key = &mine[n as usize % mine.len()];
                let started = Instant::now();
                if client.set(key, n.to_string(), None).await.is_ok() {
                    let done = Instant::now();
                    acked.lock().entry(key.clone()).or_default().push(n);
                    let kill = *killed.lock();
                    if let Some(kill) = kill
                        && started > kill
                    {
                        let mut first = first.lock();
                        if first.is_none_or(|f| done < f) {
                            *first = Some(done);
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // SAFETY: kill(2) with the pid we were given; no memory is touched.
    let killed = unsafe { libc::kill(pid, libc::SIGKILL) } == 0;
    *killed_at.lock() = Some(Instant::now());
    if !killed {
        return Err(format!("could not kill {pid}").into());
    }
    tokio::time::sleep(after).await;
    stop.store(true, Relaxed);
    for task in tasks {
        task.await?;
    }
    let acked = acked.lock().clone();
    let (mut lost, mut total) = (0usize, 0usize);
    for (key, values) in &acked {
        let now = client
            .get(key)
            .await?
            .and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok())
            .unwrap_or(0);
        total += values.len();
        lost += values.iter().filter(|&&v| v > now).count();
    }
    let kill = killed_at.lock().expect("set above");
    let failover = first_after_kill.lock().map(|f| f.duration_since(kill));
    println!(
        "{{\"failover_ms\":{},\"acked\":{total},\"lost\":{lost}}}",
        failover.map_or(-1, |d| d.as_millis() as i64)
    );
    Ok(())
}
