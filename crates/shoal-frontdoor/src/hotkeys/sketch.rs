//! A weighted Space-Saving summary (Metwally, Agrawal, El Abbadi, 2005): the heaviest keys of
//! a stream in a fixed number of counters.
//!
//! Each of the `capacity` counters holds a key, its estimated weight and the most that
//! estimate can exceed the true weight (`error`). A key already counted adds its weight; a new
//! key takes a free counter, or else the lightest counter's place, inheriting its weight as
//! its error. So for every key, `estimate - error <= true weight <= estimate`, every error is
//! at most `total / capacity`, and every key heavier than `total / capacity` is in the
//! summary. The counters sit in a binary min-heap (the lightest one at the root) indexed by
//! key: an update costs a hash lookup and `O(log capacity)` swaps, whatever the stream.

use std::collections::HashMap;

/// Keys longer than this are not counted (memory stays bounded by
/// `capacity * MAX_KEY_LEN`); [`SpaceSaving::skipped`] says how many weights were left out.
pub const MAX_KEY_LEN: usize = 1024;

/// One counter.
#[derive(Debug, Clone)]
struct Counter {
    /// The key (its buffer reused when the counter changes hands).
    key: Vec<u8>,
    hash: u64,
    count: u64,
    error: u64,
    /// Where it is in the heap.
    at: u32,
}

/// A key's estimate, as [`SpaceSaving::top`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heavy {
    /// The key.
    pub key: Vec<u8>,
    /// Its estimated weight: at least its true weight.
    pub count: u64,
    /// How much `count` may exceed the true weight.
    pub error: u64,
}

/// The keys' hashes are hashes already.
#[derive(Debug, Clone, Copy, Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdentityState = std::hash::BuildHasherDefault<Identity>;

/// A bounded summary of the heaviest keys of a weighted stream (see the module's doc).
#[derive(Debug, Clone)]
pub struct SpaceSaving {
    capacity: usize,
    counters: Vec<Counter>,
    /// Counter numbers, a min-heap by their `count`.
    heap: Vec<u32>,
    /// Each key's hash to its counter (two keys of one 64-bit hash: the second is skipped).
    index: HashMap<u64, u32, IdentityState>,
    total: u64,
    skipped: u64,
}

/// The hash [`SpaceSaving::add_hashed`] takes: the same for every summary.
pub fn key_hash(key: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::LazyLock<foldhash::fast::FixedState> =
        std::sync::LazyLock::new(|| foldhash::fast::FixedState::with_seed(rand::random()));
    SEED.hash_one(key)
}

impl SpaceSaving {
    /// A summary of `capacity` counters (at least one).
    pub fn new(capacity: usize) -> SpaceSaving {
        let capacity = capacity.max(1);
        SpaceSaving {
            capacity,
            counters: Vec::new(),
            heap: Vec::new(),
            index: HashMap::default(),
            total: 0,
            skipped: 0,
        }
    }

    /// How many counters it has.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many keys it counts now (at most [`SpaceSaving::capacity`]).
    pub fn len(&self) -> usize {
        self.counters.len()
    }

    /// Whether it counts no key.
    pub fn is_empty(&self) -> bool {
        self.counters.is_empty()
    }

    /// The sum of every weight added (skipped keys' included).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The weight of keys longer than [`MAX_KEY_LEN`] (or, rarely, sharing a hash with a
    /// counted key), not counted.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Forgets everything, keeping the capacity.
    pub fn clear(&mut self) {
        self.counters.clear();
        self.heap.clear();
        self.index.clear();
        self.total = 0;
        self.skipped = 0;
    }

    /// Forgets everything and takes a new capacity.
    pub fn reset(&mut self, capacity: usize) {
        self.clear();
        self.capacity = capacity.max(1);
        self.counters.shrink_to(self.capacity);
        self.heap.shrink_to(self.capacity);
        self.index.shrink_to(self.capacity);
    }

    /// Halves every weight, error and total (rounding down), so old weight fades: applied
    /// every period, a key's estimate is its weight of the last period plus half the one
    /// before, and so on. The order of the counters does not change, nor do the bounds on
    /// each estimate (both sides halve).
    pub fn decay(&mut self) {
        for c in &mut self.counters {
            c.count /= 2;
            c.error /= 2;
        }
        self.total /= 2;
        self.skipped /= 2;
    }

    /// Adds `weight` to `key`. A weight of zero changes nothing.
    pub fn add(&mut self, key: &[u8], weight: u64) {
        self.add_hashed(key_hash(key), key, weight);
    }

    /// [`SpaceSaving::add`] of a key whose [`key_hash`] is `hash`.
    pub fn add_hashed(&mut self, hash: u64, key: &[u8], weight: u64) {
        if weight == 0 {
            return;
        }
        self.total = self.total.saturating_add(weight);
        if key.len() > MAX_KEY_LEN {
            self.skipped = self.skipped.saturating_add(weight);
            return;
        }
        if let Some(&id) = self.index.get(&hash) {
            let c = &mut self.counters[id as usize];
            if c.key != key {
                self.skipped = self.skipped.saturating_add(weight);
                return;
            }
            c.count = c.count.saturating_add(weight);
            let at = c.at as usize;
            self.sift_down(at);
        } else if self.counters.len() < self.capacity {
            let id = self.counters.len() as u32;
            self.counters.push(Counter {
                key: key.to_vec(),
                hash,
                count: weight,
                error: 0,
                at: id,
            });
            self.heap.push(id);
            self.index.insert(hash, id);
            self.sift_up(id as usize);
        } else {
            // The lightest counter is the new key's now.
            let id = self.heap[0];
            let c = &mut self.counters[id as usize];
            self.index.remove(&c.hash);
            c.key.clear();
            c.key.extend_from_slice(key);
            c.hash = hash;
            c.error = c.count;
            c.count = c.count.saturating_add(weight);
            self.index.insert(hash, id);
            self.sift_down(0);
        }
    }

    /// The `k` heaviest keys, heaviest first (ties by key, so the order is deterministic).
    pub fn top(&self, k: usize) -> Vec<Heavy> {
        let mut all: Vec<Heavy> = self
            .counters
            .iter()
            .map(|c| Heavy {
                key: c.key.clone(),
                count: c.count,
                error: c.error,
            })
            .collect();
        sort_heavy(&mut all);
        all.truncate(k);
        all
    }

    /// Every counter's key and estimate, in no order.
    pub fn counters(&self) -> impl Iterator<Item = (&[u8], u64, u64)> {
        self.counters.iter().map(|c| (&c.key[..], c.count, c.error))
    }

    /// The estimate of `key` (zero if it has no counter).
    pub fn estimate(&self, key: &[u8]) -> u64 {
        self.index
            .get(&key_hash(key))
            .map(|&id| &self.counters[id as usize])
            .filter(|c| c.key == key)
            .map_or(0, |c| c.count)
    }

    fn count_at(&self, at: usize) -> u64 {
        self.counters[self.heap[at] as usize].count
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(at) <= self.count_at(child) {
                break;
            }
            self.swap(at, child);
            at = child;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.counters[self.heap[a] as usize].at = a as u32;
        self.counters[self.heap[b] as usize].at = b as u32;
    }
}

/// Sorts heaviest first, ties by key.
pub fn sort_heavy(list: &mut [Heavy]) {
    list.sort_unstable_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
}

/// The `k` heaviest keys over several summaries (one per thread): a key's estimates and
/// errors add up across the summaries that count it.
pub fn merge_top<'a>(summaries: impl IntoIterator<Item = &'a SpaceSaving>, k: usize) -> Vec<Heavy> {
    let mut sums: HashMap<&[u8], (u64, u64), foldhash::fast::RandomState> = HashMap::default();
    for s in summaries {
        for (key, count, error) in s.counters() {
            let e = sums.entry(key).or_default();
            e.0 = e.0.saturating_add(count);
            e.1 = e.1.saturating_add(error);
        }
    }
    let mut all: Vec<Heavy> = sums
        .into_iter()
        .map(|(key, (count, error))| Heavy {
            key: key.to_vec(),
            count,
            error,
        })
        .collect();
    sort_heavy(&mut all);
    all.truncate(k);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn check_heap(s: &SpaceSaving) {
        for (at, &id) in s.heap.iter().enumerate() {
            let c = &s.counters[id as usize];
            assert_eq!(c.at as usize, at);
            assert_eq!(s.index[&c.hash], id);
            if at > 0 {
                assert!(s.count_at((at - 1) / 2) <= c.count);
            }
        }
        assert_eq!(s.index.len(), s.heap.len());
        assert_eq!(s.counters.len(), s.heap.len());
        assert!(s.heap.len() <= s.capacity);
    }

    #[test]
    fn exact_while_it_has_room() {
        let mut s = SpaceSaving::new(8);
        for (k, w) in [(b"a", 3), (b"b", 1), (b"a", 2), (b"c", 7), (b"b", 1)] {
            s.add(k, w);
        }
        check_heap(&s);
        let top = s.top(10);
        let got: Vec<(&[u8], u64, u64)> =
            top.iter().map(|h| (&h.key[..], h.count, h.error)).collect();
        assert_eq!(
            got,
            vec![(&b"c"[..], 7, 0), (&b"a"[..], 5, 0), (&b"b"[..], 2, 0)]
        );
        assert_eq!(s.total(), 14);
        assert_eq!(s.top(1).len(), 1);
    }

    #[test]
    fn zero_weight_and_long_keys_are_not_counted() {
        let mut s = SpaceSaving::new(2);
        s.add(b"a", 0);
        assert!(s.is_empty());
        let long = vec![b'x'; MAX_KEY_LEN + 1];
        s.add(&long, 5);
        assert!(s.is_empty());
        assert_eq!((s.total(), s.skipped()), (5, 5));
        s.add(&long[..MAX_KEY_LEN], 1);
        assert_eq!(s.len(), 1);
    }

    /// A skewed stream: one key 80% of the weight, the rest spread over 10,000 keys, plus a
    /// Zipf-like tail of a few warm keys. The heavy hitters are found, with the error bound
    /// Space-Saving promises, and the summary never holds more than its capacity.
    #[test]
    fn skewed_stream_finds_heavy_hitters_within_the_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        let capacity = 100;
        let mut s = SpaceSaving::new(capacity);
        let mut truth: HashMap<Vec<u8>, u64> = HashMap::new();
        let n = 200_000;
        for _ in 0..n {
            let r: f64 = rng.random();
            let key = if r < 0.8 {
                b"hot".to_vec()
            } else if r < 0.85 {
                format!("warm:{}", rng.random_range(0..3)).into_bytes()
            } else {
                format!("cold:{}", rng.random_range(0..10_000)).into_bytes()
            };
            let weight = rng.random_range(1..=64u64);
            *truth.entry(key.clone()).or_default() += weight;
            s.add(&key, weight);
            assert!(s.len() <= capacity);
        }
        check_heap(&s);
        let total: u64 = truth.values().sum();
        assert_eq!(s.total(), total);
        let bound = total / capacity as u64;
        for (key, count, error) in s.counters() {
            let t = truth[key];
            assert!(count >= t, "estimate below the truth");
            assert!(count - error <= t, "error does not cover the estimate");
            assert!(error <= bound, "error {error} over total/capacity {bound}");
        }
        // Every key heavier than total/capacity is there.
        for (key, &t) in &truth {
            if t > bound {
                assert!(
                    s.estimate(key) >= t,
                    "{:?} missing",
                    String::from_utf8_lossy(key)
                );
            }
        }
        let top = s.top(4);
        assert_eq!(top[0].key, b"hot");
        let mut warm: Vec<&[u8]> = top[1..].iter().map(|h| &h.key[..]).collect();
        warm.sort();
        assert_eq!(warm, vec![&b"warm:0"[..], b"warm:1", b"warm:2"]);
    }

    /// Memory stays bounded: a stream of only distinct keys keeps `capacity` counters.
    #[test]
    fn distinct_keys_keep_the_capacity() {
        let mut s = SpaceSaving::new(16);
        for i in 0..10_000u32 {
            s.add(&i.to_be_bytes(), 1);
        }
        check_heap(&s);
        assert_eq!(s.len(), 16);
        assert_eq!(s.index.len(), 16);
        // Each estimate is at most total/capacity above the truth of 1.
        for (_, count, error) in s.counters() {
            assert!(count - error <= 1);
            assert!(error <= 10_000 / 16);
        }
        s.reset(4);
        assert!(s.is_empty());
        assert_eq!(s.capacity(), 4);
    }

    #[test]
    fn merge_adds_up_threads() {
        let mut a = SpaceSaving::new(4);
        let mut b = SpaceSaving::new(4);
        a.add(b"x", 10);
        a.add(b"y", 3);
        b.add(b"x", 5);
        b.add(b"z", 9);
        let top = merge_top([&a, &b], 2);
        assert_eq!(top.len(), 2);
        assert_eq!((&top[0].key[..], top[0].count), (&b"x"[..], 15));
        assert_eq!((&top[1].key[..], top[1].count), (&b"z"[..], 9));
    }

    #[test]
    fn decay_halves_every_estimate_and_keeps_the_heap() {
        let mut s = SpaceSaving::new(8);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..2_000 {
            let key = format!("k{}", rng.random_range(0..20));
            s.add(key.as_bytes(), rng.random_range(1..10));
        }
        let before = s.top(8);
        let total = s.total();
        s.decay();
        check_heap(&s);
        assert_eq!(s.total(), total / 2);
        for heavy in &before {
            assert_eq!(s.estimate(&heavy.key), heavy.count / 2);
        }
        // New weight counts fully against the halved old.
        s.add(b"k0", 1_000_000);
        assert_eq!(s.top(1)[0].key, b"k0");
    }
}
