//! Property tests of the store's exclusive section ([`Store::exclusive`], what `MULTI`/`EXEC`
//! and scripts run in) under threads that race it: for any number of writer threads, keys and
//! rounds, sections that read every key and write them all one higher behave as if they ran
//! one after the other (no update is lost, so the keys end at the number of sections), and a
//! reader's multi-key read never sees part of a section.

use std::sync::atomic::{AtomicBool, Ordering};

use proptest::prelude::*;
use shoal_store::{SetOptions, Store, StoreConfig};

fn read(store: &Store, key: &[u8]) -> u64 {
    store
        .get(key, |v| {
            std::str::from_utf8(v).unwrap().parse::<u64>().unwrap()
        })
        .unwrap()
        .unwrap_or(0)
}

fn write(store: &Store, key: &[u8], value: u64) {
    store
        .set(
            key,
            value.to_string().as_bytes(),
            SetOptions::default(),
            |_| {},
        )
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn sections_are_serializable_and_never_seen_in_part(
        writers in 2usize..5,
        key_count in 2usize..10,
        rounds in 10u64..120,
        shards in prop::sample::select(vec![1usize, 4, 16, 64]),
        // Each writer visits the keys in its own order (a rotation), so sections lock shards
        // in different orders.
        rotations in prop::collection::vec(0usize..10, 4),
    ) {
        let store = Store::new(StoreConfig {
            shards,
            seed: Some(11),
            ..StoreConfig::default()
        });
        let keys: Vec<Vec<u8>> = (0..key_count).map(|i| format!("key:{i}").into_bytes()).collect();
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let mut handles = Vec::new();
            for writer in 0..writers {
                let (store, keys) = (&store, &keys);
                let rotation = rotations[writer % rotations.len()] % key_count;
                handles.push(s.spawn(move || {
                    let mut order: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                    order.rotate_left(rotation);
                    for _ in 0..rounds {
                        store.exclusive(|| {
                            let current = read(store, order[0]);
                            for key in &order {
                                assert_eq!(read(store, key), current, "a section saw another in part");
                                write(store, key, current + 1);
                            }
                        });
                    }
                }));
            }
            let reader = s.spawn(|| {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let mut seen = Vec::with_capacity(keys.len());
                    store.get_many(keys.iter().map(Vec::as_slice), |_, v| {
                        seen.push(v.map(<[u8]>::to_vec));
                    });
                    assert!(
                        seen.windows(2).all(|w| w[0] == w[1]),
                        "a reader saw part of a section: {seen:?}"
                    );
                    reads += 1;
                }
            });
            for handle in handles {
                handle.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
            reader.join().unwrap();
        });
        let total = writers as u64 * rounds;
        for key in &keys {
            prop_assert_eq!(read(&store, key), total, "an update was lost");
        }
    }
}
