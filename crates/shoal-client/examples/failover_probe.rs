//! Measures what a fault costs the writers, for `bench/failover.sh`: writers keep writing keys
//! of every shard through the smart client (their own keys, `WRITERS` per shard); after a
//! second of steady writes the probe kills (SIGKILL) the given processes at once, and reports
//! as one line of JSON, for each shard (named by its primary before the kill), the longest
//! time without an acknowledged write from the kill on (`gap_ms`: for a shard whose primary
//! died, the failover as a client sees it; for the others, what the fault cost them), the
//! worst of them (`failover_ms`), and how many acknowledged writes the cluster lost (each key
//! has one writer writing increasing numbers: an acknowledged number above the key's final
//! value is lost; with asynchronous replication a primary may die with writes its replicas
//! never got).
//!
//!
//! The cluster secret comes from the file `SHOAL_CLUSTER_SECRET_FILE` names (the nodes'
//! `--cluster-secret-file`).
//!
//! ```sh
//! failover_probe SEED PID[,PID...] [WRITERS] [SECONDS_AFTER]
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use shoal_client::{Client, ClientConfig};
use shoal_cluster::key_slot;

/// Every acknowledged write: the key, its value, and when it was acknowledged.
type Acks = Arc<Mutex<Vec<(String, u64, Instant)>>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: failover_probe SEED PID[,PID...] [WRITERS] [SECONDS_AFTER]".into());
    }
    let seed = &args[0];
    let pids: Vec<i32> = args[1]
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let writers: usize = args.get(2).map_or(Ok(2), |a| a.parse())?;
    let after = Duration::from_secs(args.get(3).map_or(Ok(3), |a| a.parse())?);
    let secret = shoal_cluster::BusSecret::load(std::path::Path::new(&std::env::var(
        "SHOAL_CLUSTER_SECRET_FILE",
    )?))?;
    let mut config = ClientConfig::new([seed.as_str()]).with_cluster_secret(secret);
    config.max_attempts = 1000;
    config.backoff_max = Duration::from_millis(20);
    config.request_timeout = Duration::from_millis(500);
    config.retry_writes_after_timeout = false;
    let client = Client::connect(config).await?;
    let map = client.map();
    // Each shard's keys, by its primary's address now.
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..200_000 {
        let key = format!("probe:{i}");
        if let Some(primary) = map.primary_of_slot(key_slot(key.as_bytes())) {
            let mine = keys.entry(primary.resp_addr()).or_default();
            if mine.len() < writers * 50 {
                mine.push(key);
            }
        }
    }
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for shard_keys in keys.values() {
        for w in 0..writers {
            let mine: Vec<String> = shard_keys
                .iter()
                .skip(w)
                .step_by(writers)
                .cloned()
                .collect();
            let (client, acks, stop) = (client.clone(), acks.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Relaxed) {
                    n += 1;
                    let key = &mine[n as usize % mine.len()];
                    if client.set(key, n.to_string(), None).await.is_ok() {
                        acks.lock().push((key.clone(), n, Instant::now()));
                    }
                }
            }));
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kill = Instant::now();
    for pid in &pids {
        // SAFETY: kill(2) with a pid we were given; no memory is touched.
        if unsafe { libc::kill(*pid, libc::SIGKILL) } != 0 {
            return Err(format!("could not kill {pid}").into());
        }
    }
    tokio::time::sleep(after).await;
    stop.store(true, Relaxed);
    for task in tasks {
        task.await?;
    }
    let end = Instant::now();
    let acks = acks.lock().clone();
    // The longest time without an acknowledged write, per shard, from the kill to the end.
    let shard_of: HashMap<&str, &str> = keys
        .iter()
        .flat_map(|(primary, ks)| ks.iter().map(move |k| (k.as_str(), primary.as_str())))
        .collect();
    let mut times: BTreeMap<&str, Vec<Instant>> =
        keys.keys().map(|p| (p.as_str(), vec![kill])).collect();
    for (key, _, at) in &acks {
        if *at > kill {
            times.entry(shard_of[key.as_str()]).or_default().push(*at);
        }
    }
    let gaps: BTreeMap<&str, u128> = times
        .into_iter()
        .map(|(shard, mut at)| {
            at.sort();
            at.push(end);
            let gap = at.windows(2).map(|w| w[1] - w[0]).max().unwrap_or_default();
            (shard, gap.as_millis())
        })
        .collect();
    let mut values: HashMap<&str, Vec<u64>> = HashMap::new();
    for (key, n, _) in &acks {
        values.entry(key.as_str()).or_default().push(*n);
    }
    let (mut lost, mut total) = (0usize, 0usize);
    for (key, acked) in &values {
        let now = client
            .get(key)
            .await?
            .and_then(|v| String::from_utf8_lossy(&v).parse::<u64>().ok())
            .unwrap_or(0);
        total += acked.len();
        lost += acked.iter().filter(|&&v| v > now).count();
    }
    let worst = gaps.values().copied().max().unwrap_or_default();
    let per_shard: Vec<String> = gaps
        .iter()
        .map(|(shard, gap)| format!("\"{shard}\":{gap}"))
        .collect();
    println!(
        "{{\"failover_ms\":{worst},\"gap_ms\":{{{}}},\"acked\":{total},\"lost\":{lost}}}",
        per_shard.join(",")
    );
    Ok(())
}
