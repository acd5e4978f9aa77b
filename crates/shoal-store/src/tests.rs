//! Behaviour tests of the store through its public API, with a manual clock.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const T0: u64 = 1_700_000_000_000;

fn store_with(shards: usize, maxmemory: usize, policy: EvictionPolicy) -> (Store, ManualClock) {
    let clock = ManualClock::new(T0);
    let store = Store::new(StoreConfig {
        shards,
        maxmemory,
        policy,
        clock: Arc::new(clock.clone()),
        events: None,
        seed: Some(42),
    });
    (store, clock)
}

fn store() -> (Store, ManualClock) {
    store_with(4, 0, EvictionPolicy::AllKeysLru)
}

/// Sets `k` to `v` (no TTL), which must succeed.
pub(crate) fn set(s: &Store, k: &str, v: &str) {
    assert!(
        s.set(k.as_bytes(), v.as_bytes(), SetOptions::default(), |_| {})
            .unwrap()
    );
}

/// Sets `k` to `v` expiring at `at` (ms), which must succeed.
pub(crate) fn set_ex(s: &Store, k: &str, v: &str, at: u64) {
    let options = SetOptions {
        ttl: TtlUpdate::At(at as i64),
        ..SetOptions::default()
    };
    assert!(s.set(k.as_bytes(), v.as_bytes(), options, |_| {}).unwrap());
}

/// `k`'s value, as text.
pub(crate) fn get(s: &Store, k: &str) -> Option<String> {
    s.get(k.as_bytes(), |v| String::from_utf8(v.to_vec()).unwrap())
        .unwrap()
}

fn keys_of(s: &Store) -> Vec<String> {
    let mut keys = Vec::new();
    s.for_each_key(|k| keys.push(String::from_utf8(k.to_vec()).unwrap()));
    keys.sort();
    keys
}

#[test]
fn values_are_binary_safe() {
    let (s, _) = store();
    let value: Vec<u8> = (0..=255).collect();
    s.set(b"\x00key\r\n", &value, SetOptions::default(), |_| {})
        .unwrap();
    assert_eq!(s.get(b"\x00key\r\n", <[u8]>::to_vec).unwrap(), Some(value));
    assert_eq!(s.get(b"\x00key", <[u8]>::to_vec).unwrap(), None);
}

#[test]
fn lru_order_follows_reads_and_writes() {
    let (s, _) = store_with(1, 0, EvictionPolicy::AllKeysLru);
    for k in ["a", "b", "c"] {
        set(&s, k, "v");
    }
    assert_eq!(s.lru_keys(), [b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    get(&s, "a");
    assert_eq!(s.lru_keys(), [b"a".to_vec(), b"c".to_vec(), b"b".to_vec()]);
    set(&s, "b", "longer value that moves the blob");
    assert_eq!(s.lru_keys(), [b"b".to_vec(), b"a".to_vec(), b"c".to_vec()]);
    // EXISTS and TTL do not count as use, as in Redis.
    s.count_existing([&b"c"[..]].into_iter());
    s.ttl(b"c");
    assert_eq!(s.lru_keys()[2], b"c");
    s.check_invariants();
}

#[test]
fn allkeys_lru_evicts_the_least_recently_used_keys() {
    let (s, _) = store_with(1, 0, EvictionPolicy::AllKeysLru);
    for i in 0..100 {
        set(&s, &format!("key:{i:03}"), "0123456789");
    }
    for i in 0..10 {
        get(&s, &format!("key:{i:03}")); // keys 0..10 become the most recently used
    }
    s.set_maxmemory(s.used_memory() - 1);
    s.make_room().unwrap();
    assert_eq!(s.len(), 99);
    assert_eq!(
        get(&s, "key:010"),
        None,
        "the least recently used key goes first"
    );
    s.set_maxmemory(s.used_memory() / 2);
    s.make_room().unwrap();
    assert!(s.used_memory() <= s.maxmemory());
    for i in 0..10 {
        assert!(
            get(&s, &format!("key:{i:03}")).is_some(),
            "recently read key:{i:03} was evicted"
        );
    }
    assert_eq!(s.stats().evicted, 1 + (99 - s.len() as u64));
    s.check_invariants();
}

#[test]
fn recently_read_keys_survive_eviction_however_keys_fall_into_shards() {
    // Few keys per shard: the case where evicting shard by shard in turn would take a key
    // read a moment ago from a shard that happens to be small.
    let (s, _) = store_with(128, 0, EvictionPolicy::AllKeysLru);
    let value = "v".repeat(1000);
    let hot: Vec<String> = (0..20).map(|i| format!("hot:{i}")).collect();
    for k in &hot {
        set(&s, k, &value);
    }
    s.set_maxmemory(2 << 20);
    for i in 0..10_000 {
        s.make_room().unwrap();
        set(&s, &format!("cold:{i}"), &value);
        if i % 100 == 0 {
            for k in &hot {
                assert!(get(&s, k).is_some(), "{k} was evicted after {i} writes");
            }
        }
    }
    assert!(s.used_memory() <= (2 << 20) + 2000);
    for i in 9_800..10_000 {
        assert!(
            get(&s, &format!("cold:{i}")).is_some(),
            "recent cold:{i} was evicted"
        );
    }
    s.check_invariants();
}

#[test]
fn noeviction_refuses_writes_when_full() {
    let (s, _) = store_with(4, 0, EvictionPolicy::NoEviction);
    for i in 0..50 {
        set(&s, &format!("k{i}"), "value");
    }
    s.set_maxmemory(s.used_memory() - 1);
    assert_eq!(s.make_room(), Err(OutOfMemory));
    assert_eq!(s.len(), 50, "noeviction never deletes");
    s.set_maxmemory(s.used_memory());
    assert_eq!(s.make_room(), Ok(()));
}

#[test]
fn volatile_lru_only_evicts_keys_with_a_ttl() {
    let (s, _) = store_with(4, 0, EvictionPolicy::VolatileLru);
    for i in 0..20 {
        set(&s, &format!("keep{i}"), "value");
        set_ex(&s, &format!("temp{i}"), "value", T0 + 60_000);
    }
    s.set_maxmemory(s.used_memory() - 1);
    s.make_room().unwrap();
    assert_eq!(s.len(), 39);
    s.set_maxmemory(1);
    assert_eq!(
        s.make_room(),
        Err(OutOfMemory),
        "nothing volatile is left to evict"
    );
    assert_eq!(keys_of(&s).len(), 20);
    assert!(keys_of(&s).iter().all(|k| k.starts_with("keep")));
}

#[test]
fn volatile_ttl_prefers_the_nearest_expiry() {
    let (s, _) = store_with(1, 0, EvictionPolicy::VolatileTtl);
    set(&s, "persistent", "v");
    set_ex(&s, "late", "v", T0 + 90_000);
    set_ex(&s, "soon", "v", T0 + 1_000);
    set_ex(&s, "middle", "v", T0 + 50_000);
    s.set_maxmemory(s.used_memory() - 1);
    s.make_room().unwrap();
    assert_eq!(keys_of(&s), ["late", "middle", "persistent"]);
}

#[test]
fn allkeys_random_gets_under_the_limit() {
    let (s, _) = store_with(8, 0, EvictionPolicy::AllKeysRandom);
    for i in 0..1000 {
        set(&s, &format!("k{i}"), "some value");
    }
    s.set_maxmemory(s.used_memory() / 3);
    s.make_room().unwrap();
    assert!(s.used_memory() <= s.maxmemory());
    assert!(s.len() > 250 && s.len() < 340, "{} keys left", s.len());
    s.check_invariants();
}

#[test]
fn ttl_boundaries_match_redis() {
    let (s, clock) = store();
    set_ex(&s, "k", "v", T0 + 100);
    assert_eq!(s.ttl(b"k"), KeyTtl::ExpiresAt(T0 + 100));
    clock.advance(100);
    assert_eq!(
        get(&s, "k").as_deref(),
        Some("v"),
        "a key lives through its expiry millisecond"
    );
    clock.advance(1);
    assert_eq!(get(&s, "k"), None);
    assert_eq!(s.stats().expired, 1);
    assert_eq!(s.len(), 0, "passive expiry reclaims the key");

    // A SET with an expiry that is not in the future deletes instead of writing.
    set(&s, "k", "v");
    let now = clock.now_ms();
    set_ex(&s, "k", "v2", now);
    assert_eq!(get(&s, "k"), None);
    let options = SetOptions {
        ttl: TtlUpdate::At(-5),
        ..SetOptions::default()
    };
    assert!(s.set(b"k", b"v", options, |_| {}).unwrap());
    assert_eq!(s.len(), 0);

    // EXPIRE to a past time deletes; to a future time applies.
    set(&s, "k", "v");
    assert_eq!(
        s.expire(b"k", 0, ExpireCondition::default()),
        Ok(ExpireOutcome::Deleted)
    );
    assert_eq!(
        s.expire(b"k", now as i64 + 10, ExpireCondition::default()),
        Ok(ExpireOutcome::NoKey)
    );
    set(&s, "k", "v");
    assert_eq!(
        s.expire(b"k", now as i64 + 10, ExpireCondition::default()),
        Ok(ExpireOutcome::Applied)
    );
    assert_eq!(s.persist(b"k"), Ok(Some(true)));
    assert_eq!(s.persist(b"k"), Ok(Some(false)));
    assert_eq!(s.persist(b"missing"), Ok(None));
    assert_eq!(s.ttl(b"k"), KeyTtl::Persistent);
    s.check_invariants();
}

#[test]
fn expire_conditions_follow_redis_7() {
    let (s, _) = store();
    let at = |d: u64| (T0 + d) as i64;
    let c = |nx, xx, gt, lt| ExpireCondition { nx, xx, gt, lt };
    set(&s, "k", "v");
    assert_eq!(
        s.expire(b"k", at(100), c(false, true, false, false)),
        Ok(ExpireOutcome::NotApplied)
    );
    assert_eq!(
        s.expire(b"k", at(100), c(false, false, true, false)),
        Ok(ExpireOutcome::NotApplied),
        "GT: no TTL is infinite"
    );
    assert_eq!(
        s.expire(b"k", at(100), c(false, false, false, true)),
        Ok(ExpireOutcome::Applied),
        "LT: no TTL is infinite"
    );
    assert_eq!(
        s.expire(b"k", at(200), c(true, false, false, false)),
        Ok(ExpireOutcome::NotApplied)
    );
    assert_eq!(
        s.expire(b"k", at(50), c(false, false, true, false)),
        Ok(ExpireOutcome::NotApplied)
    );
    assert_eq!(
        s.expire(b"k", at(200), c(false, true, true, false)),
        Ok(ExpireOutcome::Applied)
    );
    assert_eq!(s.ttl(b"k"), KeyTtl::ExpiresAt(T0 + 200));
    assert_eq!(
        s.expire(b"k", at(300), c(false, false, false, true)),
        Ok(ExpireOutcome::NotApplied)
    );
}

#[test]
fn set_options_keep_or_clear_the_ttl() {
    let (s, _) = store();
    set_ex(&s, "k", "v", T0 + 1000);
    let keep = SetOptions {
        ttl: TtlUpdate::Keep,
        ..SetOptions::default()
    };
    s.set(b"k", b"v2", keep, |_| {}).unwrap();
    assert_eq!(s.ttl(b"k"), KeyTtl::ExpiresAt(T0 + 1000));
    set(&s, "k", "v3");
    assert_eq!(
        s.ttl(b"k"),
        KeyTtl::Persistent,
        "a plain SET clears the TTL"
    );

    let nx = SetOptions {
        condition: SetCondition::IfAbsent,
        ..SetOptions::default()
    };
    let mut old = None;
    assert!(
        !s.set(b"k", b"new", nx, |v| old = v.map(<[u8]>::to_vec))
            .unwrap()
    );
    assert_eq!(
        old.as_deref(),
        Some(&b"v3"[..]),
        "SET NX GET still returns the old value"
    );
    let xx = SetOptions {
        condition: SetCondition::IfPresent,
        ..SetOptions::default()
    };
    assert!(!s.set(b"absent", b"v", xx, |_| {}).unwrap());
    assert_eq!(s.len(), 1);
}

#[test]
fn getex_and_getdel() {
    let (s, clock) = store();
    set(&s, "k", "v");
    assert_eq!(
        s.get_ex(b"k", TtlUpdate::At((T0 + 500) as i64), <[u8]>::to_vec),
        Ok(Some(b"v".to_vec()))
    );
    assert_eq!(s.ttl(b"k"), KeyTtl::ExpiresAt(T0 + 500));
    assert_eq!(s.get_ex(b"k", TtlUpdate::Clear, |_| ()), Ok(Some(())));
    assert_eq!(s.ttl(b"k"), KeyTtl::Persistent);
    assert_eq!(
        s.get_ex(b"k", TtlUpdate::At(clock.now_ms() as i64), <[u8]>::to_vec),
        Ok(Some(b"v".to_vec()))
    );
    assert_eq!(
        s.len(),
        0,
        "GETEX with a past time returns the value and deletes the key"
    );
    set(&s, "k", "v");
    assert_eq!(
        s.get_del(b"k", <[u8]>::to_vec).unwrap(),
        Some(b"v".to_vec())
    );
    assert_eq!(s.get_del(b"k", <[u8]>::to_vec).unwrap(), None);
}

#[test]
fn active_expiry_reclaims_keys_nobody_reads() {
    let (s, clock) = store_with(64, 0, EvictionPolicy::AllKeysLru);
    for i in 0..100_000 {
        set_ex(&s, &format!("session:{i}"), "x", T0 + 300);
    }
    for i in 0..1000 {
        set(&s, &format!("stays:{i}"), "x");
    }
    let used_before = s.used_memory();
    // Nothing has expired yet: a cycle looks at a little and stops.
    let idle = s.expire_cycle(Duration::from_millis(25));
    assert_eq!(idle.expired, 0);
    assert!(idle.examined <= 64 * 20);
    clock.advance(301);
    // The server runs a cycle every 100 ms with a 25 ms budget: 2 s is 20 cycles.
    let mut cycles = 0;
    while s.len() > 1000 {
        s.expire_cycle(Duration::from_millis(25));
        cycles += 1;
        assert!(
            cycles <= 20,
            "{} expired keys left after 2 s of cycles",
            s.len() - 1000
        );
    }
    assert_eq!(s.stats().expired, 100_000);
    assert!(s.used_memory() < used_before / 50);
    s.check_invariants();
}

#[test]
fn an_idle_store_without_ttls_does_no_expiry_work() {
    let (s, _) = store_with(64, 0, EvictionPolicy::AllKeysLru);
    for i in 0..10_000 {
        set(&s, &format!("k{i}"), "x");
    }
    assert_eq!(
        s.expire_cycle(Duration::from_millis(25)),
        ExpireCycle::default()
    );
}

#[test]
fn accounting_equals_the_sum_of_entries() {
    let (s, _) = store();
    assert_eq!(s.used_memory(), 0);
    set(&s, "a", "1");
    let one = s.used_memory();
    assert_eq!(one, arena::block_size(14 + 2) + ENTRY_OVERHEAD);
    set_ex(&s, "b", &"x".repeat(100), T0 + 1000);
    assert_eq!(
        s.used_memory(),
        one + arena::block_size(14 + 16 + 1 + 100) + ENTRY_OVERHEAD
    );
    assert_eq!(s.memory_usage(b"a"), Some(one));
    s.remove(b"b");
    assert_eq!(s.used_memory(), one);
    s.clear();
    assert_eq!(s.used_memory(), 0);
    assert_eq!(s.len(), 0);
}

#[test]
fn a_typical_entry_costs_under_140_bytes() {
    let (s, _) = store_with(1, 0, EvictionPolicy::AllKeysLru);
    for i in 0..100_000 {
        s.set(
            format!("key:{i:012}").as_bytes(),
            &[b'x'; 100],
            SetOptions::default(),
            |_| {},
        )
        .unwrap();
    }
    let stats = s.stats();
    let per_key = (stats.arena_bytes + stats.index_bytes) as f64 / 100_000.0;
    assert!(per_key < 140.0, "{per_key:.1} bytes per key");
}

#[test]
fn scan_sees_every_key_present_throughout() {
    let (s, _) = store_with(8, 0, EvictionPolicy::AllKeysLru);
    for i in 0..5000 {
        set(&s, &format!("stable:{i}"), "v");
    }
    let mut seen = HashSet::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
        cursor = s.scan(cursor, 10, |k, _| {
            seen.insert(k.to_vec());
        });
        round += 1;
        // Churn the keyspace between calls: growth, deletion, shrinking.
        if round == 10 {
            for i in 0..20_000 {
                set(&s, &format!("churn:{i}"), "v");
            }
        }
        if round == 200 {
            for i in 0..20_000 {
                s.remove(format!("churn:{i}").as_bytes());
            }
            for _ in 0..8 {
                s.maintain();
            }
        }
        if cursor == 0 {
            break;
        }
    }
    for i in 0..5000 {
        assert!(
            seen.contains(format!("stable:{i}").as_bytes()),
            "stable:{i} missed"
        );
    }
}

#[test]
fn rename_and_copy_keep_the_ttl() {
    let (s, _) = store();
    set_ex(&s, "a", "1", T0 + 5000);
    assert_eq!(s.rename(b"a", b"b", false), Ok(RenameOutcome::Renamed));
    assert_eq!(get(&s, "a"), None);
    assert_eq!(s.ttl(b"b"), KeyTtl::ExpiresAt(T0 + 5000));
    assert_eq!(s.rename(b"nope", b"x", false), Ok(RenameOutcome::NoSuchKey));
    set(&s, "c", "3");
    assert_eq!(
        s.rename(b"b", b"c", true),
        Ok(RenameOutcome::DestinationExists)
    );
    assert_eq!(s.rename(b"c", b"c", false), Ok(RenameOutcome::Renamed));
    assert_eq!(s.copy(b"b", b"c", false), Ok(false));
    assert_eq!(s.copy(b"b", b"c", true), Ok(true));
    assert_eq!(get(&s, "c").as_deref(), Some("1"));
    assert_eq!(s.ttl(b"c"), KeyTtl::ExpiresAt(T0 + 5000));
    assert_eq!(get(&s, "b").as_deref(), Some("1"));
    s.check_invariants();
}

#[test]
fn append_and_setrange_grow_values() {
    let (s, _) = store();
    assert_eq!(s.append(b"k", b"hello", 1 << 20), Ok(5));
    assert_eq!(s.append(b"k", b" world", 1 << 20), Ok(11));
    assert_eq!(s.object_info(b"k").unwrap().encoding, Encoding::Raw);
    for _ in 0..2000 {
        s.append(b"big", &[b'z'; 50], 1 << 20).unwrap();
    }
    assert_eq!(s.get(b"big", <[u8]>::len).unwrap(), Some(100_000));
    assert_eq!(s.append(b"k", b"x", 11), Err(StoreError::TooLarge));
    assert_eq!(s.set_range(b"k", 6, b"WORLD", 1 << 20), Ok(11));
    assert_eq!(get(&s, "k").as_deref(), Some("hello WORLD"));
    assert_eq!(s.set_range(b"n", 3, b"x", 1 << 20), Ok(4));
    assert_eq!(
        s.get(b"n", <[u8]>::to_vec).unwrap(),
        Some(b"\0\0\0x".to_vec())
    );
    assert_eq!(s.set_range(b"none", 3, b"", 1 << 20), Ok(0));
    assert_eq!(s.len(), 3);
    s.check_invariants();
}

#[test]
fn object_encoding_follows_redis_rules() {
    let (s, clock) = store();
    set(&s, "i", "12345");
    set(&s, "neg", "-7");
    set(&s, "lead", "012");
    set(&s, "short", "hello");
    set(&s, "long", &"x".repeat(45));
    let enc = |k: &[u8]| s.object_info(k).unwrap().encoding;
    assert_eq!(enc(b"i"), Encoding::Int);
    assert_eq!(enc(b"neg"), Encoding::Int);
    assert_eq!(enc(b"lead"), Encoding::Embstr);
    assert_eq!(enc(b"short"), Encoding::Embstr);
    assert_eq!(enc(b"long"), Encoding::Raw);
    let as_text = |k: &[u8], v: &'static [u8]| {
        s.update(k, Form::Text, |_, out| {
            out.extend_from_slice(v);
            Ok::<_, ()>((true, ()))
        })
        .unwrap()
    };
    as_text(b"float", b"3");
    assert_eq!(enc(b"float"), Encoding::Embstr, "text is never int-encoded");
    s.update(b"float", Form::Auto, |_, out| {
        out.extend_from_slice(b"4");
        Ok::<_, ()>((true, ()))
    })
    .unwrap();
    assert_eq!(enc(b"float"), Encoding::Int);
    clock.advance(7_000);
    s.refresh_clock();
    assert_eq!(s.object_info(b"i").unwrap().idle_seconds, 7);
    get(&s, "i");
    assert_eq!(s.object_info(b"i").unwrap().idle_seconds, 0);
}

#[test]
fn compaction_releases_pages_and_keeps_data() {
    let (s, _) = store_with(1, 0, EvictionPolicy::AllKeysLru);
    for i in 0..50_000 {
        set_ex(
            &s,
            &format!("k{i}"),
            &"v".repeat(i % 90),
            T0 + 1_000_000 + i as u64,
        );
    }
    for i in (0..50_000).filter(|i| i % 5 != 0) {
        s.remove(format!("k{i}").as_bytes());
    }
    let before = s.stats().arena_bytes;
    // Each call does a bounded amount of work: call it until it has nothing left to do.
    let mut released = 0;
    loop {
        let upkeep = s.maintain();
        if upkeep.pages_released == 0 {
            break;
        }
        released += upkeep.pages_released;
    }
    assert!(released > 0, "nothing was compacted");
    assert!(s.stats().arena_bytes < before / 2);
    for i in (0..50_000).step_by(5) {
        assert_eq!(
            s.get(format!("k{i}").as_bytes(), <[u8]>::len).unwrap(),
            Some(i % 90)
        );
        assert_eq!(
            s.ttl(format!("k{i}").as_bytes()),
            KeyTtl::ExpiresAt(T0 + 1_000_000 + i as u64)
        );
    }
    s.check_invariants();
}

/// Writes `count` keys `{prefix}{i}` of `size`-byte values (with a TTL for `volatile-lru`),
/// making room before each as the server does, with an upkeep call every `tick` writes and
/// until it is done at the end. Returns the bytes the upkeep said were handed back.
fn fill(s: &Store, prefix: &str, count: usize, size: usize, tick: usize) -> u64 {
    let value = vec![b'v'; size];
    let ttl = if s.policy() == EvictionPolicy::VolatileLru {
        TtlUpdate::At((T0 + 3_600_000) as i64)
    } else {
        TtlUpdate::Clear
    };
    let mut returned = 0;
    for i in 0..count {
        s.make_room().unwrap();
        let key = format!("{prefix}{i}");
        let options = SetOptions {
            ttl,
            ..SetOptions::default()
        };
        s.set(key.as_bytes(), &value, options, |_| {}).unwrap();
        if i % tick == 0 {
            returned += s.maintain().returned_bytes;
        }
    }
    s.make_room().unwrap();
    loop {
        let upkeep = s.maintain();
        returned += upkeep.returned_bytes;
        if !upkeep.out_of_time {
            return returned;
        }
    }
}

#[test]
fn memory_stays_near_used_memory_when_value_sizes_change() {
    const MAX: usize = 4 << 20;
    const SHARDS: usize = 8;
    for policy in [EvictionPolicy::AllKeysLru, EvictionPolicy::VolatileLru] {
        let (s, _) = store_with(SHARDS, MAX, policy);
        for (phase, size) in [100, 20_000, 100, 1000, 100].into_iter().enumerate() {
            fill(&s, &format!("{phase}:"), 3 * MAX / size, size, 64);
            let stats = s.stats();
            assert!(stats.used_memory <= MAX);
            // Each shard may keep part of a page and a little in free lists, the store a few
            // spare pages; everything else holds entries.
            let slack = stats.arena_bytes - stats.arena_live_bytes;
            assert!(
                slack <= (SHARDS + 8) * arena::PAGE_SIZE,
                "{policy:?} after {size}-byte values: {slack} bytes of arena hold no entry"
            );
            assert!(stats.arena_bytes <= MAX + (SHARDS + 8) * arena::PAGE_SIZE);
            s.check_invariants();
        }
    }
}

#[test]
fn the_store_reports_memory_it_handed_back() {
    let (s, _) = store_with(4, 1 << 20, EvictionPolicy::AllKeysLru);
    // The large values evicted to make room go back to the allocator.
    let returned = fill(&s, "big:", 100, 50_000, 10);
    assert!(returned >= 2 << 20, "only {returned} bytes reported");
    let upkeep = s.maintain();
    assert!(upkeep.shards == 4 && !upkeep.out_of_time && upkeep.returned_bytes == 0);
    s.clear();
    assert!(
        s.maintain().returned_bytes > 0,
        "a flush frees pages and indexes"
    );
}

#[test]
fn observers_hear_about_expirations_and_evictions() {
    #[derive(Default)]
    struct Log(Mutex<Vec<(Vec<u8>, Removal)>>);
    impl KeyEvents for Log {
        fn on_removed(&self, key: &[u8], cause: Removal) {
            self.0.lock().unwrap().push((key.to_vec(), cause));
        }
    }
    let log = Arc::new(Log::default());
    let clock = ManualClock::new(T0);
    let s = Store::new(StoreConfig {
        shards: 1,
        clock: Arc::new(clock.clone()),
        events: Some(log.clone()),
        ..StoreConfig::default()
    });
    set_ex(&s, "temp", "v", T0 + 10);
    set(&s, "old", "v");
    set(&s, "new", "v");
    clock.advance(11);
    assert_eq!(get(&s, "temp"), None);
    s.set_maxmemory(s.used_memory() - 1);
    s.make_room().unwrap();
    s.remove(b"new");
    assert_eq!(
        *log.0.lock().unwrap(),
        [
            (b"temp".to_vec(), Removal::Expired),
            (b"old".to_vec(), Removal::Evicted)
        ],
        "explicit deletes are not reported"
    );
}

#[test]
fn concurrent_writers_keep_the_store_consistent() {
    let (s, _) = store_with(16, 0, EvictionPolicy::AllKeysLru);
    let s = Arc::new(s);
    std::thread::scope(|scope| {
        for t in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..20_000 {
                    let key = format!("k{}", (i * 7 + t) % 5000);
                    match i % 5 {
                        0 => drop(s.remove(key.as_bytes())),
                        1 => drop(s.set_many(
                            [(key.as_bytes(), &b"m"[..]), (&b"shared"[..], &b"s"[..])].into_iter(),
                            false,
                        )),
                        2 => drop(s.update(key.as_bytes(), Form::Auto, |_, out| {
                            out.extend_from_slice(b"1");
                            Ok::<_, ()>((true, ()))
                        })),
                        _ => drop(s.set(key.as_bytes(), b"value", SetOptions::default(), |_| {})),
                    }
                }
            });
        }
    });
    s.check_invariants();
}

#[test]
fn prefetch_is_harmless_for_any_key_and_state() {
    let (s, _) = store();
    s.prefetch(b"nothing stored yet");
    for i in 0..10_000 {
        set(&s, &format!("k{i}"), "v");
        s.prefetch(format!("k{}", i * 7).as_bytes());
    }
    s.clear();
    s.prefetch(b"k1");
    assert_eq!(s.len(), 0);
}

#[test]
fn integers_parse_like_string2ll() {
    assert_eq!(parse_i64(b"0"), Some(0));
    assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
    for bad in [
        &b"9223372036854775808"[..],
        b"-0",
        b"01",
        b"+1",
        b" 1",
        b"",
        b"-",
        b"1a",
    ] {
        assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8, Option<u16>),
    Get(u8),
    Del(u8),
    Expire(u8, i16),
    Persist(u8),
    Append(u8, u8),
    Rename(u8, u8),
    Advance(u16),
    Expire_,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..24, any::<u8>(), prop::option::of(1u16..500)).prop_map(|(k, v, t)| Op::Set(k, v, t)),
        3 => (0u8..24).prop_map(Op::Get),
        1 => (0u8..24).prop_map(Op::Del),
        1 => (0u8..24, -50i16..500).prop_map(|(k, t)| Op::Expire(k, t)),
        1 => (0u8..24).prop_map(Op::Persist),
        1 => (0u8..24, any::<u8>()).prop_map(|(k, v)| Op::Append(k, v)),
        1 => (0u8..24, 0u8..24).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0u16..300).prop_map(Op::Advance),
        1 => Just(Op::Expire_),
    ]
}

/// Values of varied sizes (some past the small-block limit) derived from one byte.
fn value_of(v: u8) -> Vec<u8> {
    let len = match v % 4 {
        0 => 0,
        1 => v as usize,
        2 => 300 + v as usize,
        _ => 4000 + 8 * v as usize,
    };
    vec![v; len]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn behaves_like_a_map_with_expiry(
        ops in prop::collection::vec(op(), 1..200),
        // Under LFU an access updates a counter and leaves the lists alone.
        policy in prop::sample::select(vec![EvictionPolicy::AllKeysLru, EvictionPolicy::AllKeysLfu]),
    ) {
        let (s, clock) = store_with(2, 0, policy);
        let mut model: BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)> = BTreeMap::new();
        let key = |k: u8| format!("key{k}").into_bytes();
        for op in ops {
            let now = clock.now_ms();
            model.retain(|_, (_, exp)| exp.is_none_or(|e| now <= e));
            match op {
                Op::Set(k, v, ttl) => {
                    let ttl_update = ttl.map_or(TtlUpdate::Clear, |t| TtlUpdate::At((now + u64::from(t)) as i64));
                    s.set(&key(k), &value_of(v), SetOptions { ttl: ttl_update, ..SetOptions::default() }, |_| {}).unwrap();
                    model.insert(key(k), (value_of(v), ttl.map(|t| now + u64::from(t))));
                }
                Op::Get(k) => {
                    prop_assert_eq!(s.get(&key(k), <[u8]>::to_vec).unwrap(), model.get(&key(k)).map(|(v, _)| v.clone()));
                }
                Op::Del(k) => {
                    prop_assert_eq!(s.remove(&key(k)), model.remove(&key(k)).is_some());
                }
                Op::Expire(k, delta) => {
                    let at = now as i64 + i64::from(delta);
                    let outcome = s.expire(&key(k), at, ExpireCondition::default()).unwrap();
                    match model.get_mut(&key(k)) {
                        None => prop_assert_eq!(outcome, ExpireOutcome::NoKey),
                        Some(_) if at <= now as i64 => {
                            prop_assert_eq!(outcome, ExpireOutcome::Deleted);
                            model.remove(&key(k));
                        }
                        Some(entry) => {
                            prop_assert_eq!(outcome, ExpireOutcome::Applied);
                            entry.1 = Some(at as u64);
                        }
                    }
                }
                Op::Persist(k) => {
                    let result = s.persist(&key(k)).unwrap();
                    let expected = model.get_mut(&key(k)).map(|e| e.1.take().is_some());
                    prop_assert_eq!(result, expected);
                }
                Op::Append(k, v) => {
                    let len = s.append(&key(k), &value_of(v), 1 << 20).unwrap();
                    let entry = model.entry(key(k)).or_insert((Vec::new(), None));
                    entry.0.extend(value_of(v));
                    prop_assert_eq!(len, entry.0.len());
                }
                Op::Rename(a, b) => {
                    let outcome = s.rename(&key(a), &key(b), false).unwrap();
                    match model.remove(&key(a)) {
                        None => prop_assert_eq!(outcome, RenameOutcome::NoSuchKey),
                        Some(entry) => {
                            prop_assert_eq!(outcome, RenameOutcome::Renamed);
                            model.insert(key(b), entry);
                        }
                    }
                }
                Op::Advance(ms) => clock.advance(u64::from(ms)),
                Op::Expire_ => {
                    s.expire_cycle(Duration::from_millis(5));
                }
            }
            s.check_invariants();
        }
        let now = clock.now_ms();
        model.retain(|_, (_, exp)| exp.is_none_or(|e| now <= e));
        let live: Vec<String> = keys_of(&s);
        let expected: Vec<String> = model.keys().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
        prop_assert_eq!(live, expected);
        for (k, (_, exp)) in &model {
            let ttl = s.ttl(k);
            prop_assert_eq!(ttl, exp.map_or(KeyTtl::Persistent, KeyTtl::ExpiresAt));
        }
    }
}
