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
    /// Evict the least frequently used key (Redis's approximated LFU: a logarithmic counter
    /// per key, the coldest of a sample of keys).
    AllKeysLfu,
    /// Evict the least frequently used key among keys with a TTL.
    VolatileLfu,
    /// Evict a random key.
    AllKeysRandom,
    /// Evict a random key among keys with a TTL.
    VolatileRandom,
    /// Evict the key with the nearest expiry among a few keys with a TTL.
    VolatileTtl,
    /// Evict nothing: refuse writes with `-OOM`.
    NoEviction,
}

impl EvictionPolicy {
    /// Every policy, in Redis's documentation order.
    pub const ALL: [EvictionPolicy; 8] = [
        EvictionPolicy::VolatileLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::VolatileTtl,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::AllKeysRandom,
        EvictionPolicy::NoEviction,
    ];

    /// Redis's name for the policy.
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::AllKeysLru => "allkeys-lru",
            EvictionPolicy::VolatileLru => "volatile-lru",
            EvictionPolicy::AllKeysLfu => "allkeys-lfu",
            EvictionPolicy::VolatileLfu => "volatile-lfu",
            EvictionPolicy::AllKeysRandom => "allkeys-random",
            EvictionPolicy::VolatileRandom => "volatile-random",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
            EvictionPolicy::NoEviction => "noeviction",
        }
    }

    /// Whether the policy only evicts keys that have a TTL.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            EvictionPolicy::VolatileLru
                | EvictionPolicy::VolatileLfu
                | EvictionPolicy::VolatileRandom
                | EvictionPolicy::VolatileTtl
        )
    }

    /// Whether the policy tracks access frequency (an LFU counter in each entry) rather than
    /// access time (`OBJECT FREQ` against `OBJECT IDLETIME`).
    pub fn is_lfu(self) -> bool {
        matches!(
            self,
            EvictionPolicy::AllKeysLfu | EvictionPolicy::VolatileLfu
        )
    }

    pub(crate) fn to_u8(self) -> u8 {
        match self {
            EvictionPolicy::AllKeysLru => 0,
            EvictionPolicy::VolatileLru => 1,
            EvictionPolicy::AllKeysRandom => 2,
            EvictionPolicy::VolatileTtl => 3,
            EvictionPolicy::NoEviction => 4,
            EvictionPolicy::AllKeysLfu => 5,
            EvictionPolicy::VolatileLfu => 6,
            EvictionPolicy::VolatileRandom => 7,
        }
    }

    pub(crate) fn from_u8(v: u8) -> EvictionPolicy {
        match v {
            1 => EvictionPolicy::VolatileLru,
            2 => EvictionPolicy::AllKeysRandom,
            3 => EvictionPolicy::VolatileTtl,
            4 => EvictionPolicy::NoEviction,
            5 => EvictionPolicy::AllKeysLfu,
            6 => EvictionPolicy::VolatileLfu,
            7 => EvictionPolicy::VolatileRandom,
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
    "unknown maxmemory policy '{0}' (expected one of volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction)"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_round_trips_by_name_and_number() {
        for p in EvictionPolicy::ALL {
            assert_eq!(p.name().parse::<EvictionPolicy>(), Ok(p));
            assert_eq!(p.name().to_uppercase().parse::<EvictionPolicy>(), Ok(p));
            assert_eq!(EvictionPolicy::from_u8(p.to_u8()), p);
        }
        assert!("allkeys-lfu".parse::<EvictionPolicy>().unwrap().is_lfu());
        assert!(EvictionPolicy::VolatileRandom.volatile_only());
        assert!(
            EvictionPolicy::VolatileLfu.volatile_only() && EvictionPolicy::VolatileLfu.is_lfu()
        );
        assert!(!EvictionPolicy::AllKeysLfu.volatile_only());
        assert!(!EvictionPolicy::AllKeysLru.is_lfu());
        assert!("lfu".parse::<EvictionPolicy>().is_err());
    }
}
