//! Measures how long a new cluster map takes to reach every node, for `bench/cluster.sh`: it
//! subscribes to the cluster bus of every node in the map (and of nodes as they join), and for
//! each new epoch records when each node pushed it, against the time the controller committed
//! it (`ClusterMap::committed_at_ms`; same machine, same clock). It stops after `epochs` new
//! epochs or `seconds`, and prints one line of JSON: per-node delays' p50/p99/max and each
//! epoch's slowest node.
//! The cluster secret comes from the file `SHOAL_CLUSTER_SECRET_FILE` names (the nodes'
//! `--cluster-secret-file`).
//!
//! ```sh
//! cargo run --release -p shoal-client --example propagation -- 127.0.0.1:7000 5 30
//! ```

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal_cluster::bus::{BusConnection, Reply, Request};
use shoal_cluster::{BusCredentials, ClusterMap, NodeId, seed};
use tokio::sync::mpsc;

type Arrival = (NodeId, u64, u64); // node, epoch, delay in ms

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [seed_addr, epochs, seconds] = args.as_slice() else {
        return Err("usage: propagation SEED EPOCHS SECONDS".into());
    };
    let (wanted, seconds): (usize, u64) = (epochs.parse()?, seconds.parse()?);
    let secret = BusCredentials::new(shoal_cluster::BusSecret::load(std::path::Path::new(
        &std::env::var("SHOAL_CLUSTER_SECRET_FILE")?,
    ))?);
    let bus = seed::bus_addr_of(seed_addr, None, None, Duration::from_secs(2)).await?;
    let Reply::Map(first) =
        shoal_cluster::bus::call(&bus, &secret, &Request::GetMap, Duration::from_secs(2)).await?
    else {
        return Err("the seed did not answer with a map".into());
    };
    let start_epoch = first.epoch;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Arrival, ClusterMap)>();
    let mut watched = HashSet::new();
    watch_new_nodes(&first, &mut watched, &tx, &secret);
    println!(
        "watching {} nodes from epoch {start_epoch}; change the cluster now",
        watched.len()
    );
    let mut delays: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let Ok(Some(((_node, epoch, delay), map))) =
            tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
        else {
            if done(&delays, wanted, &watched) {
                break;
            }
            continue;
        };
        watch_new_nodes(&map, &mut watched, &tx, &secret);
        if epoch > start_epoch {
            delays.entry(epoch).or_default().push(delay);
        }
    }
    let mut all: Vec<u64> = delays.values().flatten().copied().collect();
    all.sort_unstable();
    let quantile = |q: f64| {
        all.get(((all.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    let slowest: Vec<u64> = delays
        .values()
        .map(|d| d.iter().copied().max().unwrap_or(0))
        .collect();
    println!(
        "{{\"epochs\":{},\"arrivals\":{},\"p50_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"slowest_node_per_epoch_ms\":{:?}}}",
        delays.len(),
        all.len(),
        quantile(0.5),
        quantile(0.99),
        all.last().copied().unwrap_or(0),
        slowest
    );
    Ok(())
}

/// Whether `wanted` new epochs have reached every watched node.
fn done(delays: &BTreeMap<u64, Vec<u64>>, wanted: usize, watched: &HashSet<NodeId>) -> bool {
    delays.len() >= wanted
        && delays
            .values()
            .last()
            .is_some_and(|d| d.len() >= watched.len())
}

fn watch_new_nodes(
    map: &ClusterMap,
    watched: &mut HashSet<NodeId>,
    tx: &mpsc::UnboundedSender<(Arrival, ClusterMap)>,
    secret: &BusCredentials,
) {
    // A node first seen in this map is watched from the next epoch on: its arrival for this
    // one would only measure how late we subscribed.
    let seen_in = map.epoch;
    for node in map.nodes.values() {
        if watched.insert(node.id) {
            let (id, addr, tx, secret) = (node.id, node.bus_addr(), tx.clone(), secret.clone());
            tokio::spawn(async move {
                let Ok(mut connection) =
                    BusConnection::connect(&addr, &secret, Duration::from_secs(1)).await
                else {
                    return;
                };
                if connection
                    .send(&Request::Subscribe { after: 0 })
                    .await
                    .is_err()
                {
                    return;
                }
                while let Ok(reply) = connection.next(Duration::from_secs(5)).await {
                    if let Reply::Map(map) = reply
                        && map.epoch > seen_in
                    {
                        let delay = now_ms().saturating_sub(map.committed_at_ms);
                        if tx.send(((id, map.epoch, delay), map)).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
