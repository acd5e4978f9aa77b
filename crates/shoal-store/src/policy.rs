//! Eviction policies, with Redis's names.

use std::fmt;
use std::str::FromStr;

/// What to do when a write needs memory and `used_memory` is above `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvictionPolicy {
    /// Evict the least recently used key (exact LRU within a shard).
    #[default]
    AllKeysLru,
    /// Evict the least recently used key among keys with a TTL.
    VolatileLru,
    /// Evict a random key.
    AllKeysRandom,
    /// Evict the key with the nearest expiry among a few keys with a TTL.
    VolatileTtl,
    /// Evict nothing: refuse writes with `-OOM`.
    NoEviction,
}

impl EvictionPolicy {
    /// Every policy, in Redis's documentation order.
    pub const ALL: [EvictionPolicy; 5] = [
        EvictionPolicy::VolatileLru,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::NoEviction,
    ];

    /// Redis's name for the policy.
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
            EvictionPolicy::NoEviction => "noeviction",
        }
    }

    /// Whether the policy only evicts keys that have a TTL.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileLru | EvictionPolicy::VolatileTtl
        )
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            EvictionPolicy::AllKeysLru => 0,
            EvictionPolicy::VolatileLru => 1,
            EvictionPolicy::AllKeysRandom => 2,
            EvictionPolicy::VolatileTtl => 3,
            EvictionPolicy::NoEviction => 4,
        }
    }

    pub(crate) fn from_u8(v: u8) -> EvictionPolicy {
        match v {
            1 => EvictionPolicy::VolatileLru,
            2 => EvictionPolicy::AllKeysRandom,
            3 => EvictionPolicy::VolatileTtl,
            4 => EvictionPolicy::NoEviction,
            _ => EvictionPolicy::AllKeysLru,
        }
    }
}

impl fmt::Display for EvictionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name Shoal does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown maxmemory policy '{0}' (expected one of allkeys-lru, volatile-lru, allkeys-random, volatile-ttl, noeviction)"
)]
pub struct UnknownPolicy(pub String);

impl FromStr for EvictionPolicy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EvictionPolicy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}
