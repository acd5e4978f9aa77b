//! The cluster's hot keys as this client knows them (pushed with the map by the node it
//! follows, or installed by hand): reads of these keys go to any member of their shard, the
//! primary or a replica, so a key too hot for one node is served by all its copies.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use parking_lot::RwLock;
use shoal_cluster::hot_keys::HotKeySet;

/// The hot keys a client spreads the reads of.
#[derive(Debug, Default)]
pub(crate) struct HotKeys {
    /// Whether there are any: the only cost of a read while there are none.
    any: AtomicBool,
    /// The set's version and its keys, changed together.
    keys: RwLock<(u64, Arc<HashSet<Vec<u8>>>)>,
}

impl HotKeys {
    /// Makes `set` the hot keys; returns whether it differs from the ones held.
    pub(crate) fn install(&self, set: &HotKeySet) -> bool {
        let mut held = self.keys.write();
        if held.0 == set.version {
            return false;
        }
        let keys: HashSet<Vec<u8>> = set.keys.iter().map(|k| k.key.clone()).collect();
        self.any.store(!keys.is_empty(), Relaxed);
        *held = (set.version, Arc::new(keys));
        true
    }

    /// Whether any key is hot: the check every read makes first.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.any.load(Relaxed)
    }

    /// Whether `key` is hot.
    pub(crate) fn is_hot(&self, key: &[u8]) -> bool {
        self.any() && self.keys.read().1.contains(key)
    }

    /// The hot keys, in no order.
    pub(crate) fn keys(&self) -> Vec<Vec<u8>> {
        self.keys.read().1.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::ShardId;
    use shoal_cluster::hot_keys::HotKey;

    fn set(keys: &[&str]) -> HotKeySet {
        HotKeySet::new(
            keys.iter()
                .map(|k| HotKey {
                    key: k.as_bytes().to_vec(),
                    shard: ShardId(0),
                    requests: 5000,
                    share_permille: 900,
                })
                .collect(),
        )
    }

    #[test]
    fn installed_keys_are_hot_until_a_set_without_them() {
        let hot = HotKeys::default();
        assert!(!hot.is_hot(b"a"));
        assert!(hot.install(&set(&["a", "b"])));
        assert!(hot.is_hot(b"a") && hot.is_hot(b"b") && !hot.is_hot(b"c"));
        assert!(!hot.install(&set(&["b", "a"])), "the same set again");
        assert!(hot.install(&set(&[])));
        assert!(!hot.is_hot(b"a"));
    }
}
