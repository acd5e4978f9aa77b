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
    let hotkeys = &door.stats.hotkeys;
    let ops_per_sec = door.stats.instantaneous().0 as u64;
    // One snapshot of the summaries (empty while a `HOTKEYS` session has them).
    let hot = hotkeys.background_top(&door.stats, BACKGROUND_CAPACITY);
    let ratio = hotkeys.background_ratio();
    NodeStats {
        keys: store.keys as u64,
        used_memory: store.used_memory as u64,
        maxmemory: shared.store.maxmemory() as u64,
        ops_per_sec,
        clients: door.clients.count() as u64,
        uptime_seconds: door.uptime_seconds(),
        replication: shared.replication.report(),
        keyspace_hits: store.hits,
        keyspace_misses: store.misses,
        replicas: shared.replication.replica_lags(),
        hot_keys: hot_keys(&hot, ratio),
    }
}

/// The [`HOT_KEYS_REPORTED`] hottest keys of the recent sample `top`, sampled one command in
/// `ratio`, each with its requests a
/// second and its network bytes a second (those requests times the bytes a sampled request of
/// it took; 0 when it is not among the heaviest by bytes). The summaries halve every second, so
/// under a steady rate a count holds between one and two seconds' samples, 1.5 on average: a
/// second's requests are the count times the sample ratio divided by 1.5. A key whose count may
/// be more than half overcount (Space-Saving's error: what the counter it took over had
/// counted) is left out: under an even load every counter is mostly that, and no key is hot.
fn hot_keys(top: &Background, ratio: u32) -> Vec<HotKeyReport> {
    let ratio = u64::from(ratio);
    top.by_requests
        .iter()
        .filter(|h| h.error.saturating_mul(2) <= h.count)
        .take(HOT_KEYS_REPORTED)
        .map(|h| {
            let requests = h.count.saturating_mul(ratio).saturating_mul(2) / 3;
            let bytes_per_request = top
                .by_net_bytes
                .iter()
                .find(|n| n.key == h.key)
                .map_or(0, |n| n.count / h.count.max(1));
            HotKeyReport {
                key: h.key.clone(),
                requests,
                net_bytes: requests.saturating_mul(bytes_per_request),
            }
        })
        // Sampled long ago and decayed away: not hot.
        .filter(|report| report.requests > 0)
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
    fn requests_are_the_keys_share_of_the_node_s_rate() {
        let by_net_bytes = vec![heavy("k0", 6_000), heavy("k9", 100)];
        let top = Background {
            by_requests: vec![
                heavy("k0", 60),
                // Mostly overcount: not known to be hot.
                Heavy {
                    error: 31,
                    ..heavy("noise", 40)
                },
                heavy("k1", 30),
            ],
            by_net_bytes: by_net_bytes.clone(),
            by_cpu_nanos: Vec::new(),
        };
        let decayed = Background {
            by_requests: vec![heavy("k0", 0)],
            by_net_bytes,
            by_cpu_nanos: Vec::new(),
        };
        assert!(hot_keys(&decayed, 64).is_empty(), "decayed away");
        let got: Vec<_> = hot_keys(&top, 64)
            .iter()
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.key).into_owned(),
                    h.requests,
                    h.net_bytes,
                )
            })
            .collect();
        // k0: 60 samples of 1 in 64, over 1.5 s; 100 bytes a request. k1: not heavy by bytes.
        assert_eq!(
            got,
            [
                ("k0".to_string(), 2_560, 256_000),
                ("k1".to_string(), 1_280, 0),
            ]
        );
    }
}
