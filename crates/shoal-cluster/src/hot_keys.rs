//! The cluster's hot keys: keys that take a large share of their shard's requests, as the
//! controller's leader finds them in the nodes' heartbeats. The leader hands the set to every
//! node with its heartbeat acknowledgements; nodes push it to the proxies and smart clients
//! that follow their map, which then spread the reads of those keys over the shard's primary
//! and replicas.
//!
//! A set is named by a hash of its contents ([`HotKeySet::version`]), so a node tells the
//! leader which set it holds in each heartbeat and gets the set again only when it changed,
//! and two leaders that find the same keys publish the same version.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::bus::Heartbeat;
use crate::decide::Settings;
use crate::map::{ClusterMap, NodeId, ShardId};

/// Most keys in a set.
pub const MAX_HOT_KEYS: usize = 32;

/// How often the leader looks at the heartbeats for hot keys.
const REFRESH_MS: u64 = 250;

/// Reports older than this are left out (the node is silent, or failed).
const FRESH_MS: u64 = 2_000;

/// One hot key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotKey {
    /// The key (binary-safe).
    pub key: Vec<u8>,
    /// The shard that holds it.
    pub shard: ShardId,
    /// Its requests per second over the shard's members, estimated from their samples.
    pub requests: u64,
    /// Its share of the shard's requests, in thousandths.
    pub share_permille: u32,
}

/// The cluster's hot keys at one moment, hottest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HotKeySet {
    /// A hash of the keys (0 for none): what a node reports holding.
    pub version: u64,
    /// The keys, hottest first.
    pub keys: Vec<HotKey>,
}

impl HotKeySet {
    /// The set of `keys`, named by their contents (the keys and shards; not the rates, which
    /// change every heartbeat while the set stays the same).
    pub fn new(keys: Vec<HotKey>) -> HotKeySet {
        let mut names: Vec<(&[u8], u32)> = keys.iter().map(|k| (&k.key[..], k.shard.0)).collect();
        names.sort_unstable();
        let version = match names.is_empty() {
            true => 0,
            false => fnv1a(names.iter().flat_map(|(key, shard)| {
                (key.len() as u64)
                    .to_le_bytes()
                    .into_iter()
                    .chain(key.iter().copied())
                    .chain(shard.to_le_bytes())
            }))
            .max(1),
        };
        HotKeySet { version, keys }
    }

    /// Whether it names no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The leader's finder of hot keys (in its view of the nodes; a new leader starts afresh).
#[derive(Debug, Default)]
pub(crate) struct HotKeysFinder {
    current: HotKeySet,
    refreshed_ms: Option<u64>,
}

impl HotKeysFinder {
    /// Looks at the nodes' last heartbeats (each with when it arrived) at most every
    /// [`REFRESH_MS`]: a key is hot when, summed over its shard's members, it has at least
    /// `settings.hot_key_share_permille` of the shard's requests and at least
    /// `settings.hot_key_min_rate` requests a second; a hot key stays hot until it falls below
    /// half of either, so a key on the edge does not flap. A share of 0 finds none.
    pub(crate) fn refresh(
        &mut self,
        map: &ClusterMap,
        heartbeats: &HashMap<NodeId, (u64, Heartbeat)>,
        settings: &Settings,
        now_ms: u64,
    ) {
        if !self.due(now_ms) {
            return;
        }
        self.refreshed_ms = Some(now_ms);
        let mut keys = Vec::new();
        if settings.hot_key_share_permille == 0 {
            self.current = HotKeySet::default();
            return;
        }
        for shard in &map.shards {
            let members = std::iter::once(shard.primary).chain(shard.replicas.iter().copied());
            let mut ops = 0u64;
            let mut requests: HashMap<&[u8], u64> = HashMap::new();
            for node in members {
                let Some((at, heartbeat)) = heartbeats.get(&node) else {
                    continue;
                };
                if now_ms.saturating_sub(*at) > FRESH_MS {
                    continue;
                }
                ops += heartbeat.stats.ops_per_sec;
                for report in &heartbeat.stats.hot_keys {
                    *requests.entry(&report.key).or_default() += report.requests;
                }
            }
            if ops == 0 {
                continue;
            }
            for (key, rate) in requests {
                let share_permille = (rate.min(ops) * 1000 / ops) as u32;
                let was_hot = self
                    .current
                    .keys
                    .iter()
                    .any(|k| k.shard == shard.id && k.key == key);
                let (min_share, min_rate) = match was_hot {
                    true => (
                        settings.hot_key_share_permille / 2,
                        settings.hot_key_min_rate / 2,
                    ),
                    false => (settings.hot_key_share_permille, settings.hot_key_min_rate),
                };
                if share_permille >= min_share && rate >= min_rate {
                    keys.push(HotKey {
                        key: key.to_vec(),
                        shard: shard.id,
                        requests: rate,
                        share_permille,
                    });
                }
            }
        }
        keys.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.key.cmp(&b.key)));
        keys.truncate(MAX_HOT_KEYS);
        self.current = HotKeySet::new(keys);
    }

    /// Whether [`HotKeysFinder::refresh`] at `now_ms` would look at the heartbeats (at most
    /// every [`REFRESH_MS`]).
    pub(crate) fn due(&self, now_ms: u64) -> bool {
        self.refreshed_ms
            .is_none_or(|at| now_ms.saturating_sub(at) >= REFRESH_MS)
    }

    /// The current set, for a node that holds version `held`: `None` when it holds it.
    pub(crate) fn for_holder_of(&self, held: u64) -> Option<HotKeySet> {
        (held != self.current.version).then(|| self.current.clone())
    }

    /// The current set.
    pub(crate) fn current(&self) -> &HotKeySet {
        &self.current
    }
}

/// 64-bit FNV-1a: stable across processes and versions (unlike the standard hasher).
fn fnv1a(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(key: &str, shard: u32, requests: u64) -> HotKey {
        HotKey {
            key: key.as_bytes().to_vec(),
            shard: ShardId(shard),
            requests,
            share_permille: 500,
        }
    }

    /// A map of one shard (node 1 primary, 2 and 3 replicas) and their heartbeats at `at`,
    /// each node with `ops` commands a second and its reports of `(key, requests a second)`.
    fn shard_of_three(
        at: u64,
        reports: [(u64, &[(&str, u64)]); 3],
    ) -> (ClusterMap, HashMap<NodeId, (u64, Heartbeat)>) {
        use crate::bus::{HotKeyReport, NodeStats};
        use crate::map::{NodeInfo, ShardInfo, SlotTable};
        let mut map = ClusterMap::empty();
        map.epoch = 1;
        for id in 1..=3 {
            map.nodes
                .insert(NodeId(id), NodeInfo::local(NodeId(id), 7000 + id as u16));
        }
        map.shards = vec![ShardInfo {
            id: ShardId(0),
            primary: NodeId(1),
            replicas: vec![NodeId(2), NodeId(3)],
        }];
        map.slots = SlotTable::all(ShardId(0));
        let heartbeats = reports
            .iter()
            .enumerate()
            .map(|(i, (ops, keys))| {
                let node = NodeId(i as u64 + 1);
                let stats = NodeStats {
                    ops_per_sec: *ops,
                    hot_keys: keys
                        .iter()
                        .map(|(key, requests)| HotKeyReport {
                            key: key.as_bytes().to_vec(),
                            requests: *requests,
                            net_bytes: 0,
                        })
                        .collect(),
                    ..NodeStats::default()
                };
                let heartbeat = Heartbeat {
                    node,
                    epoch: 1,
                    stats,
                    hot_keys_version: 0,
                };
                (node, (at, heartbeat))
            })
            .collect();
        (map, heartbeats)
    }

    #[test]
    fn a_key_with_a_large_share_of_its_shard_is_hot_until_it_falls_below_half() {
        let settings = Settings::default(); // 20%, 1000 a second
        let mut finder = HotKeysFinder::default();
        // 9,000 of the shard's 30,000 requests a second (30%), summed over its members.
        let (map, beats) = shard_of_three(
            1_000,
            [
                (10_000, &[("hot", 5_000), ("warm", 900)]),
                (10_000, &[("hot", 2_000)]),
                (10_000, &[("hot", 2_000)]),
            ],
        );
        finder.refresh(&map, &beats, &settings, 1_000);
        let set = finder.current().clone();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].key, b"hot");
        assert_eq!(
            (set.keys[0].requests, set.keys[0].share_permille),
            (9_000, 300)
        );
        assert!(finder.for_holder_of(0).is_some());
        assert!(finder.for_holder_of(set.version).is_none());
        // At 12% it stays hot (above half the share); a new key at 12% is not.
        let (map, beats) = shard_of_three(
            2_000,
            [
                (10_000, &[("hot", 1_200), ("new", 3_600)]),
                (10_000, &[("hot", 1_200)]),
                (10_000, &[("hot", 1_200)]),
            ],
        );
        finder.refresh(&map, &beats, &settings, 2_000);
        let keys: Vec<&[u8]> = finder.current().keys.iter().map(|k| &k.key[..]).collect();
        assert_eq!(keys, [&b"hot"[..]]);
        // Below 10% it cools.
        let (map, beats) = shard_of_three(
            3_000,
            [(10_000, &[("hot", 900)]), (10_000, &[]), (10_000, &[])],
        );
        finder.refresh(&map, &beats, &settings, 3_000);
        assert!(finder.current().is_empty());
        assert_eq!(finder.current().version, 0);
    }

    #[test]
    fn quiet_shards_stale_reports_and_a_zero_share_find_nothing() {
        let mut finder = HotKeysFinder::default();
        // All of a shard's requests, but only 600 a second: under the floor.
        let (map, beats) = shard_of_three(0, [(600, &[("k", 600)]), (0, &[]), (0, &[])]);
        finder.refresh(&map, &beats, &Settings::default(), 0);
        assert!(finder.current().is_empty());
        // Reports older than FRESH_MS are not counted.
        let (map, beats) = shard_of_three(0, [(9_000, &[("k", 9_000)]), (0, &[]), (0, &[])]);
        finder.refresh(&map, &beats, &Settings::default(), FRESH_MS + 1_000);
        assert!(finder.current().is_empty());
        // Looked at no more than every REFRESH_MS.
        let (map, beats) = shard_of_three(
            FRESH_MS + 1_100,
            [(9_000, &[("k", 9_000)]), (0, &[]), (0, &[])],
        );
        finder.refresh(&map, &beats, &Settings::default(), FRESH_MS + 1_100);
        assert!(finder.current().is_empty(), "too soon after the last look");
        finder.refresh(&map, &beats, &Settings::default(), FRESH_MS + 1_300);
        assert_eq!(finder.current().keys.len(), 1);
        // A share of 0 turns finding off.
        let off = Settings {
            hot_key_share_permille: 0,
            ..Settings::default()
        };
        finder.refresh(&map, &beats, &off, FRESH_MS + 2_000);
        assert!(finder.current().is_empty());
    }

    #[test]
    fn a_set_is_named_by_its_keys_not_their_order_or_rates() {
        let a = HotKeySet::new(vec![hot("a", 0, 10), hot("b", 1, 20)]);
        let b = HotKeySet::new(vec![hot("b", 1, 99), hot("a", 0, 5)]);
        assert_eq!(a.version, b.version);
        assert_ne!(a.version, 0);
        let c = HotKeySet::new(vec![hot("a", 0, 10)]);
        assert_ne!(a.version, c.version);
        // Lengths are hashed too: ("ab", "c") is not ("a", "bc").
        let d = HotKeySet::new(vec![hot("ab", 0, 1), hot("c", 0, 1)]);
        let e = HotKeySet::new(vec![hot("a", 0, 1), hot("bc", 0, 1)]);
        assert_ne!(d.version, e.version);
        assert_eq!(HotKeySet::new(Vec::new()).version, 0);
    }
}
