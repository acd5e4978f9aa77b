//! What a node reports of itself ([`NodeStats`]): its load, its replication, its hit counts and
//! its hottest keys, for its heartbeats and the controller's `Report` requests
//! (`cluster/host.rs`), and for the HTTP API's view of a node in no cluster (`http.rs`).

use shoal_cluster::bus::{HotKeyReport, NodeStats};
use shoal_frontdoor::hotkeys::{BACKGROUND_CAPACITY, Background};

use crate::shared::Shared;

/// How many of its hottest keys a node reports.
const HOT_KEYS_REPORTED: usize = 5;

/// The node's report now.
pub(crate) fn node_stats(shared: &Shared) -> NodeStats {
    let store = shared.store.stats();
    let door = &shared.door;
    let hot = door
        .stats
        .hotkeys
        .background_top(&door.stats, BACKGROUND_CAPACITY);
    NodeStats {
        keys: store.keys as u64,
        used_memory: store.used_memory as u64,
        maxmemory: shared.store.maxmemory() as u64,
        ops_per_sec: door.stats.instantaneous().0 as u64,
        clients: door.clients.count() as u64,
        uptime_seconds: door.uptime_seconds(),
        replication: shared.replication.report(),
        keyspace_hits: store.hits,
        keyspace_misses: store.misses,
        replicas: shared.replication.replica_lags(),
        hot_keys: hot_keys(&hot, u64::from(door.stats.hotkeys.background_ratio())),
    }
}

/// The [`HOT_KEYS_REPORTED`] hottest keys of the background sample `top` by requests, with
/// their network bytes, the sampled counts scaled by the sample `ratio` (one command in that
/// many is sampled). A key whose count may be more than half overcount (Space-Saving's error:
/// what the counter it took over had counted) is left out: under an even load every counter is
/// mostly that, and no key is hot.
fn hot_keys(top: &Background, ratio: u64) -> Vec<HotKeyReport> {
    top.by_requests
        .iter()
        .filter(|h| h.error.saturating_mul(2) <= h.count)
        .take(HOT_KEYS_REPORTED)
        .map(|h| HotKeyReport {
            key: h.key.clone(),
            requests: h.count.saturating_mul(ratio),
            net_bytes: top
                .by_net_bytes
                .iter()
                .find(|n| n.key == h.key)
                .map_or(0, |n| n.count.saturating_mul(ratio)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use shoal_frontdoor::hotkeys::Heavy;

    use super::*;

    fn heavy(key: &str, count: u64) -> Heavy {
        Heavy {
            key: key.as_bytes().to_vec(),
            count,
            error: 0,
        }
    }

    #[test]
    fn the_hottest_five_by_requests_are_scaled_by_the_ratio() {
        let mut by_requests: Vec<Heavy> = (0..7).map(|i| heavy(&format!("k{i}"), 10 - i)).collect();
        // Mostly overcount: not known to be hot.
        by_requests.insert(
            1,
            Heavy {
                error: 6,
                ..heavy("noise", 10)
            },
        );
        let top = Background {
            by_requests,
            by_net_bytes: vec![heavy("k1", 500), heavy("k0", 100)],
            by_cpu_nanos: Vec::new(),
        };
        let hot = hot_keys(&top, 64);
        let got: Vec<_> = hot
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.key).into_owned(),
                    h.requests,
                    h.net_bytes,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("k0".to_string(), 640, 6400),
                ("k1".to_string(), 576, 32000),
                ("k2".to_string(), 512, 0),
                ("k3".to_string(), 448, 0),
                ("k4".to_string(), 384, 0),
            ]
        );
    }
}
