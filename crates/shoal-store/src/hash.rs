//! The keyspace's hash function: foldhash with a per-process random seed, so that clients
//! cannot choose keys that collide.

use std::hash::{BuildHasher, Hasher};

/// Hashes keys. The high bits pick a shard, bits 32-38 are the index's tag and the low 32 bits
/// place the key in its shard's index (and order `SCAN`).
#[derive(Debug, Clone)]
pub struct KeyHasher(foldhash::fast::FixedState);

impl KeyHasher {
    /// A hasher with the given seed.
    pub fn with_seed(seed: u64) -> KeyHasher {
        KeyHasher(foldhash::fast::FixedState::with_seed(seed))
    }

    /// The 64-bit hash of `key`.
    #[inline]
    pub fn hash(&self, key: &[u8]) -> u64 {
        let mut hasher = self.0.build_hasher();
        hasher.write(key);
        hasher.finish()
    }
}

/// A random 64-bit number from the standard library's per-process random keys.
pub fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x5_4d_4f_41_4cu64)
}
