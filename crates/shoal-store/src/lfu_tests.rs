//! The LFU policies through the store's API, with a manual clock: counters as `OBJECT FREQ`
//! reads them, decay, eviction of the coldest keys, `volatile-lfu` and `volatile-random`.

use std::sync::Arc;

use super::tests::{get, set, set_ex};
use super::*;

const T0: u64 = 1_700_000_000_000;
const MINUTE: u64 = 60_000;

fn store_with(shards: usize, policy: EvictionPolicy) -> (Store, ManualClock) {
    let clock = ManualClock::new(T0);
    let store = Store::new(StoreConfig {
        shards,
        maxmemory: 0,
        policy,
        clock: Arc::new(clock.clone()),
        events: None,
        seed: Some(7),
    });
    (store, clock)
}

fn freq(s: &Store, k: &str) -> u8 {
    s.object_info(k.as_bytes())
        .expect("the key exists")
        .frequency
}

fn advance_minutes(s: &Store, clock: &ManualClock, minutes: u64) {
    clock.advance(minutes * MINUTE);
    s.refresh_clock();
}

#[test]
fn counters_start_at_five_and_count_accesses_as_redis_does() {
    let (s, clock) = store_with(4, EvictionPolicy::AllKeysLfu);
    set(&s, "k", "v");
    assert_eq!(freq(&s, "k"), LFU_INIT_VAL, "a new key");
    assert_eq!(freq(&s, "k"), 5, "OBJECT does not count as an access");
    assert_eq!(s.count_existing([&b"k"[..]].into_iter()), 1);
    s.ttl(b"k");
    assert_eq!(freq(&s, "k"), 5, "neither do EXISTS and TTL");
    get(&s, "k");
    assert_eq!(freq(&s, "k"), 6, "the first access always counts");
    // With lfu-log-factor 0 every access counts.
    s.set_lfu(0, 1);
    for _ in 0..10 {
        get(&s, "k");
    }
    assert_eq!(freq(&s, "k"), 16);
    set(&s, "k", "overwritten");
    assert_eq!(
        freq(&s, "k"),
        17,
        "an overwrite keeps the counter and counts"
    );
    s.touch([&b"k"[..]].into_iter());
    assert_eq!(freq(&s, "k"), 18, "TOUCH counts");
    // RENAME carries the counter (bumped by its lookup, as Redis's).
    s.rename(b"k", b"renamed", false).unwrap();
    assert_eq!(freq(&s, "renamed"), 19);
    // Decay: one per lfu-decay-time minutes since the last access.
    advance_minutes(&s, &clock, 3);
    assert_eq!(freq(&s, "renamed"), 16);
    s.set_lfu(0, 2);
    assert_eq!(freq(&s, "renamed"), 18, "decay is computed when read");
    s.set_lfu(0, 0);
    assert_eq!(freq(&s, "renamed"), 19, "decay time 0: no decay");
    s.set_lfu(0, 1);
    get(&s, "renamed");
    assert_eq!(freq(&s, "renamed"), 17, "an access decays, then counts");
    advance_minutes(&s, &clock, 100);
    assert_eq!(freq(&s, "renamed"), 0);
    s.check_invariants();
}

#[test]
fn with_the_default_factor_the_counter_grows_slowly() {
    let (s, _) = store_with(1, EvictionPolicy::AllKeysLfu);
    set(&s, "k", "v");
    for _ in 0..1000 {
        get(&s, "k");
    }
    // redis.conf: 1000 hits at factor 10 is about 18.
    let f = freq(&s, "k");
    assert!((14..=23).contains(&f), "1000 reads: {f}");
}

/// Writes 20 hot keys and reads each `reads` times, then writes 10,000 cold keys of 1000 bytes
/// under a 2 MB limit (about 2000 keys fit) without reading the hot ones again. Returns how
/// many hot keys survived.
fn hot_keys_surviving(policy: EvictionPolicy, reads: usize) -> usize {
    let (s, _) = store_with(128, policy);
    let value = "v".repeat(1000);
    let hot: Vec<String> = (0..20).map(|i| format!("hot:{i}")).collect();
    for k in &hot {
        set(&s, k, &value);
        for _ in 0..reads {
            get(&s, k);
        }
    }
    s.set_maxmemory(2 << 20);
    for i in 0..10_000 {
        s.make_room().unwrap();
        set(&s, &format!("cold:{i}"), &value);
    }
    assert!(s.used_memory() <= (2 << 20) + 2000);
    assert!(s.stats().evicted > 7000);
    s.check_invariants();
    hot.iter().filter(|k| get(&s, k).is_some()).count()
}

#[test]
fn under_allkeys_lfu_frequently_read_keys_survive_and_cold_keys_go() {
    assert_eq!(hot_keys_surviving(EvictionPolicy::AllKeysLfu, 20), 20);
    // A single read is enough to beat keys never read once (6 against 5).
    assert_eq!(hot_keys_surviving(EvictionPolicy::AllKeysLfu, 1), 20);
    // The same workload under allkeys-lru loses them: they were read long ago.
    assert_eq!(hot_keys_surviving(EvictionPolicy::AllKeysLru, 20), 0);
}

#[test]
fn evicted_keys_are_the_coldest_of_the_shard() {
    let (s, _) = store_with(1, EvictionPolicy::AllKeysLfu);
    s.set_lfu(0, 1);
    // key:i is read i % 8 times: eight temperatures of 50 keys.
    for i in 0..400 {
        let k = format!("key:{i}");
        set(&s, &k, "0123456789");
        for _ in 0..i % 8 {
            get(&s, &k);
        }
    }
    s.set_maxmemory(s.used_memory() / 2);
    s.make_room().unwrap();
    let left = |reads: usize| {
        (0..400)
            .filter(|i| i % 8 == reads && get(&s, &format!("key:{i}")).is_some())
            .count()
    };
    // Half the keys went; sampling 10 at a time takes mostly the coldest ones.
    let (never, often) = (left(0), left(7));
    assert!(never < 10, "{never} of 50 keys never read survived");
    assert_eq!(often, 50, "keys read 7 times were evicted");
}

#[test]
fn decayed_keys_are_evicted_before_new_ones() {
    let (s, clock) = store_with(1, EvictionPolicy::AllKeysLfu);
    for i in 0..100 {
        let k = format!("old:{i}");
        set(&s, &k, "value");
        for _ in 0..5 {
            get(&s, &k);
        }
    }
    // An hour without a read: every old counter decays to 0, under a new key's 5.
    advance_minutes(&s, &clock, 60);
    for i in 0..100 {
        set(&s, &format!("new:{i}"), "value");
    }
    // Half the old keys go.
    let per_key = s.used_memory() / 200;
    s.set_maxmemory(s.used_memory() - 50 * per_key);
    s.make_room().unwrap();
    let new_left = (0..100)
        .filter(|i| get(&s, &format!("new:{i}")).is_some())
        .count();
    assert!(new_left >= 97, "only {new_left} of 100 new keys left");
}

#[test]
fn the_sweep_keeps_decay_right_past_the_minute_clock_s_wrap() {
    for sweep in [true, false] {
        let (s, clock) = store_with(1, EvictionPolicy::AllKeysLfu);
        s.set_lfu(0, 10);
        set(&s, "k", "v");
        for _ in 0..200 {
            get(&s, "k");
        }
        assert_eq!(freq(&s, "k"), 205);
        // 4100 minutes in steps (the server's maintenance runs ten times a second).
        for _ in 0..41 {
            advance_minutes(&s, &clock, 100);
            if sweep {
                s.maintain();
            }
        }
        // 410 decay periods: nothing left. Without the sweep the 12-bit minute wrapped and
        // only 4 minutes seem to have passed (the limit the sweep is there for).
        assert_eq!(freq(&s, "k"), if sweep { 0 } else { 205 }, "sweep: {sweep}");
    }
}

#[test]
fn volatile_random_never_evicts_a_key_without_a_ttl() {
    // Many keys with a TTL (found by sampling the index), then few (by walking their list).
    for (persistent, volatile) in [(50, 50), (400, 10)] {
        let (s, _) = store_with(4, EvictionPolicy::VolatileRandom);
        for i in 0..persistent {
            set(&s, &format!("keep:{i}"), "value");
        }
        for i in 0..volatile {
            set_ex(&s, &format!("temp:{i}"), "value", T0 + 600_000);
        }
        s.set_maxmemory(s.used_memory() - 1);
        s.make_room().unwrap();
        assert_eq!(s.len(), persistent + volatile - 1);
        s.set_maxmemory(1);
        assert_eq!(s.make_room(), Err(OutOfMemory), "nothing volatile is left");
        assert_eq!(s.len(), persistent);
        assert!((0..persistent).all(|i| get(&s, &format!("keep:{i}")).is_some()));
        assert_eq!(s.stats().evicted, volatile as u64);
        s.check_invariants();
    }
}

#[test]
fn volatile_random_picks_keys_at_random() {
    // Not the LRU tail every time: over 40 evictions out of 200 keys, some of the most
    // recently written are among the victims.
    let (s, _) = store_with(1, EvictionPolicy::VolatileRandom);
    for i in 0..200 {
        set_ex(&s, &format!("t:{i}"), "value", T0 + 600_000);
    }
    let per_key = s.used_memory() / 200;
    s.set_maxmemory(s.used_memory() - 40 * per_key);
    s.make_room().unwrap();
    let newest_gone = (100..200)
        .filter(|i| get(&s, &format!("t:{i}")).is_none())
        .count();
    assert!(newest_gone > 5, "{newest_gone} of the newest half evicted");
}

#[test]
fn volatile_lfu_evicts_only_keys_with_a_ttl_the_coldest_first() {
    for persistent in [20, 1000] {
        let (s, _) = store_with(2, EvictionPolicy::VolatileLfu);
        for i in 0..persistent {
            set(&s, &format!("keep:{i}"), "value");
        }
        for i in 0..100 {
            let k = format!("temp:{i}");
            set_ex(&s, &k, "value", T0 + 600_000);
            if i < 20 {
                for _ in 0..3 {
                    get(&s, &k);
                }
            }
        }
        let per_key = s.used_memory() / (persistent + 100);
        s.set_maxmemory(s.used_memory() - 60 * per_key);
        s.make_room().unwrap();
        assert!((0..persistent).all(|i| get(&s, &format!("keep:{i}")).is_some()));
        let hot_left = (0..20)
            .filter(|i| get(&s, &format!("temp:{i}")).is_some())
            .count();
        assert_eq!(
            hot_left, 20,
            "{persistent} persistent keys: hot volatile keys evicted"
        );
        s.set_maxmemory(1);
        assert_eq!(s.make_room(), Err(OutOfMemory));
        assert_eq!(s.len(), persistent);
        s.check_invariants();
    }
}

#[test]
fn switching_policies_at_run_time_keeps_the_store_sound() {
    let (s, clock) = store_with(4, EvictionPolicy::AllKeysLru);
    for i in 0..300 {
        set(&s, &format!("k:{i}"), "value");
        if i % 3 == 0 {
            set_ex(&s, &format!("t:{i}"), "value", T0 + 600_000);
        }
    }
    let full = s.used_memory();
    for (step, policy) in [
        EvictionPolicy::AllKeysLfu,
        EvictionPolicy::AllKeysLru,
        EvictionPolicy::VolatileLfu,
        EvictionPolicy::VolatileRandom,
        EvictionPolicy::AllKeysLfu,
    ]
    .into_iter()
    .enumerate()
    {
        s.set_policy(policy);
        for i in 0..50 {
            get(&s, &format!("k:{i}"));
        }
        advance_minutes(&s, &clock, 1);
        s.maintain();
        s.set_maxmemory(full - (step + 1) * full / 10);
        s.make_room().unwrap();
        assert!(s.used_memory() <= s.maxmemory(), "{policy}");
        assert!(s.object_info(b"k:1").is_some());
        s.check_invariants();
    }
}
