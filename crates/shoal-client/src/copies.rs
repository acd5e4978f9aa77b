//! Copies of hot keys on other shards (opt-in,
//! [`ClientConfig::hot_key_copies`](crate::ClientConfig::hot_key_copies)): for a key
//! too hot even for all the members of its shard.
//!
//! A hot key `key` gets up to `copies` copies, `key#j` for the smallest suffixes `j` whose
//! slots belong to shards other than the key's and each other's (a key with a hash tag has
//! none: every `key#j` stays in its tag's slot). A `GET` of the key reads the key itself or
//! one of its copies, picked at random, each from any member of its shard. A copy that is
//! missing is filled from the key's primary as it is read: `SET key#j value PX t NX`, where
//! `t` is the copy TTL or the key's own remaining time if that is shorter. A write of the key
//! (any command that is not read-only, a transaction or a script among them) deletes the
//! copies once the key's node has answered, before the writer gets the answer.
//!
//! What a reader may see, and what copies cost, is [`HotKeyCopies`]'s to say.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use shoal_cluster::{ClusterMap, hash_tag, key_slot};

use crate::config::HotKeyCopies;
use crate::counter::part_key;
use crate::hot_keys::HotKeys;

/// Suffixes tried when looking for shards a key has no copy on yet.
const SEARCH: usize = 1024;
/// Placements kept: the hot set holds at most 32 keys, so this only bounds a set that keeps
/// changing within one map.
const MAX_PLACED: usize = 1024;

/// A client's copies of hot keys: where they are, and which are being filled.
pub(crate) struct Copies {
    config: HotKeyCopies,
    /// The copies of each key read or written since the map changed.
    placed: RwLock<Placed>,
    /// Copies this client is filling now: the other readers that miss them meanwhile read the
    /// key without filling again.
    filling: Mutex<HashSet<Bytes>>,
}

/// Copy names, for the map of one epoch.
#[derive(Default)]
struct Placed {
    epoch: u64,
    names: HashMap<Vec<u8>, Arc<[Bytes]>>,
}

/// A copy being filled by this client, until dropped.
pub(crate) struct Filling<'a> {
    copies: &'a Copies,
    copy: Bytes,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        self.copies.filling.lock().remove(&self.copy);
    }
}

impl Copies {
    /// Copies as `config` says.
    pub(crate) fn new(config: HotKeyCopies) -> Copies {
        Copies {
            config,
            placed: RwLock::default(),
            filling: Mutex::default(),
        }
    }

    /// The copies of `key` if it is hot and may have any (none for a copy of another hot key,
    /// a key with a hash tag, or a cluster of one shard).
    pub(crate) fn of_hot(
        &self,
        key: &[u8],
        hot: &HotKeys,
        map: impl FnOnce() -> Arc<ClusterMap>,
    ) -> Option<Arc<[Bytes]>> {
        if !hot.is_hot(key) || copy_of_hot(key, hot) {
            return None;
        }
        let names = self.of(key, &map());
        (!names.is_empty()).then_some(names)
    }

    /// The copies of `key` under `map`.
    fn of(&self, key: &[u8], map: &ClusterMap) -> Arc<[Bytes]> {
        {
            let placed = self.placed.read();
            if placed.epoch == map.epoch
                && let Some(names) = placed.names.get(key)
            {
                return names.clone();
            }
        }
        let names: Arc<[Bytes]> = place(key, self.config.copies, map).into();
        let mut placed = self.placed.write();
        if placed.epoch != map.epoch || placed.names.len() >= MAX_PLACED {
            placed.names.clear();
            placed.epoch = map.epoch;
        }
        placed.names.insert(key.to_vec(), names.clone());
        names
    }

    /// The `PX` of a copy filled from a key whose `PTTL` answered `pttl` (`None`: fill
    /// nothing, the key is gone or about to be).
    pub(crate) fn ttl_ms(&self, pttl: i64) -> Option<u64> {
        let ttl = u64::try_from(self.config.ttl.as_millis()).unwrap_or(u64::MAX);
        match pttl {
            -1 => Some(ttl),
            ms if ms > 0 => Some(ttl.min(ms.unsigned_abs())),
            _ => None,
        }
    }

    /// Claims the fill of `copy` (`None`: this client is filling it already).
    pub(crate) fn start_fill(&self, copy: &Bytes) -> Option<Filling<'_>> {
        self.filling.lock().insert(copy.clone()).then(|| Filling {
            copies: self,
            copy: copy.clone(),
        })
    }
}

/// Whether `key` is `base#j` for a hot `base`: a copy, which gets no copies of its own when it
/// turns hot on its shard.
fn copy_of_hot(key: &[u8], hot: &HotKeys) -> bool {
    let Some(hash) = key.iter().rposition(|&b| b == b'#') else {
        return false;
    };
    let suffix = &key[hash + 1..];
    !suffix.is_empty() && suffix.iter().all(u8::is_ascii_digit) && hot.is_hot(&key[..hash])
}

/// Up to `n` names `key#j`, `j` the smallest suffixes whose slots' shards differ from the
/// key's and from each other's.
fn place(key: &[u8], n: usize, map: &ClusterMap) -> Vec<Bytes> {
    let Some(own) = map.slots.get(key_slot(key)) else {
        return Vec::new();
    };
    if hash_tag(key).len() != key.len() {
        return Vec::new();
    }
    let mut used = vec![own];
    let mut names = Vec::with_capacity(n);
    for j in 1..=SEARCH {
        if names.len() == n {
            break;
        }
        let name = part_key(key, j);
        if let Some(shard) = map.slots.get(key_slot(&name))
            && !used.contains(&shard)
        {
            used.push(shard);
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::hot_keys::{HotKey, HotKeySet};
    use shoal_cluster::{SLOTS, ShardId, SlotTable};
    use std::time::Duration;

    /// A map of `shards` shards, the slots dealt round-robin.
    fn map(shards: u32, epoch: u64) -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = epoch;
        let mut slots = SlotTable::empty();
        for slot in 0..SLOTS {
            slots.set(slot as u16, Some(ShardId(slot as u32 % shards)));
        }
        map.slots = slots;
        map
    }

    fn hot(keys: &[&str]) -> HotKeys {
        let hot = HotKeys::default();
        hot.install(&HotKeySet::new(
            keys.iter()
                .map(|k| HotKey {
                    key: k.as_bytes().to_vec(),
                    shard: ShardId(0),
                    requests: 5000,
                    share_permille: 900,
                })
                .collect(),
        ));
        hot
    }

    #[test]
    fn copies_land_on_shards_of_their_own() {
        let map = map(5, 1);
        let names = place(b"config", 3, &map);
        assert_eq!(names.len(), 3);
        let mut shards: Vec<_> = std::iter::once(&b"config"[..])
            .chain(names.iter().map(|n| &n[..]))
            .map(|k| map.slots.get(key_slot(k)))
            .collect();
        shards.sort();
        shards.dedup();
        assert_eq!(shards.len(), 4, "the key and 3 copies on 4 shards");
        assert!(names.iter().all(|n| n.starts_with(b"config#")));
    }

    #[test]
    fn copies_are_as_many_as_other_shards_and_none_for_a_hash_tag() {
        assert_eq!(place(b"k", 8, &map(3, 1)).len(), 2);
        assert!(place(b"k", 2, &map(1, 1)).is_empty());
        assert!(place(b"{user:1}:name", 2, &map(3, 1)).is_empty());
        assert!(place(b"k", 2, &ClusterMap::empty()).is_empty());
    }

    #[test]
    fn only_hot_keys_have_copies_and_copies_have_none() {
        let copies = Copies::new(HotKeyCopies::new(2));
        let hot = hot(&["a", "a#2"]);
        let map = Arc::new(map(3, 7));
        let of = |key: &[u8]| copies.of_hot(key, &hot, || map.clone());
        assert_eq!(of(b"a").map(|n| n.len()), Some(2));
        assert!(of(b"b").is_none(), "not hot");
        assert!(of(b"a#2").is_none(), "a copy of a hot key");
        assert!(
            copy_of_hot(b"a#12", &hot) && !copy_of_hot(b"a#x", &hot) && !copy_of_hot(b"a#", &hot)
        );
    }

    #[test]
    fn placements_follow_the_map() {
        let copies = Copies::new(HotKeyCopies::new(4));
        assert_eq!(copies.of(b"k", &map(3, 1)).len(), 2);
        assert_eq!(
            copies.of(b"k", &map(5, 2)).len(),
            4,
            "a newer map places again"
        );
    }

    #[test]
    fn a_copy_lives_its_ttl_and_never_past_its_key() {
        let copies = Copies::new(HotKeyCopies::new(1).with_ttl(Duration::from_millis(50)));
        assert_eq!(copies.ttl_ms(-1), Some(50));
        assert_eq!(copies.ttl_ms(20), Some(20));
        assert_eq!(copies.ttl_ms(5000), Some(50));
        assert_eq!(copies.ttl_ms(-2), None);
        assert_eq!(copies.ttl_ms(0), None);
    }

    #[test]
    fn one_fill_per_copy_at_a_time() {
        let copies = Copies::new(HotKeyCopies::new(1));
        let copy = Bytes::from_static(b"k#1");
        let first = copies.start_fill(&copy);
        assert!(first.is_some());
        assert!(copies.start_fill(&copy).is_none());
        drop(first);
        assert!(copies.start_fill(&copy).is_some());
    }
}
