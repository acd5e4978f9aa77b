//! A shard's index: an open-addressing hash table of 32-bit entry refs, in cache-line chunks.
//!
//! Each 64-byte chunk holds 12 one-byte tags (7 bits of the hash, or `EMPTY`), an overflow
//! counter and 12 `u32` values, so a lookup reads one cache line per chunk probed (the layout of
//! Facebook's F14 tables). The overflow counter of a chunk counts the values whose probe went
//! past it; a lookup stops at the first chunk whose counter is zero, which keeps probes short at
//! high occupancy and lets deletion simply empty a slot (no tombstones).
//!
//! Two choices serve a cache's needs:
//!
//! * The chunk count is arbitrary: a hash's home chunk is `(low32(hash) * chunks) >> 32` and the
//!   table grows by 1.5x, so occupancy stays between 58% and 87.5% (5.3 bytes a slot).
//! * The home chunk is monotonic in the hash, so a position in hash space is a stable cursor:
//!   [`Table::scan`] returns every value whose hash lies in a range, whatever resizes happen
//!   between calls. That is what `SCAN` needs (no key present throughout is ever missed).
//!
//! The table stores no hashes or keys; callers pass a closure that recomputes a value's hash
//! (from its key) when the table resizes or scans.

const SLOTS: usize = 12;
const EMPTY: u8 = 0x80;
const OVERFLOW_SATURATED: u8 = u8::MAX;
const MIN_CHUNKS: usize = 2;
const LSB: u128 = 0x0101_0101_0101_0101_0101_0101_0101_0101;
const MSB: u128 = 0x8080_8080_8080_8080_8080_8080_8080_8080;
/// Tag-word mask of the 12 slot bytes (the 13th byte is the overflow counter, then padding).
const SLOT_BYTES: u128 = (1u128 << (SLOTS * 8)) - 1;

/// One past the largest position in hash space (positions are the low 32 bits of a hash).
pub const END: u64 = 1 << 32;

#[inline]
fn tag(hash: u64) -> u8 {
    ((hash >> 32) & 0x7F) as u8
}

/// One cache line of the table.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Chunk {
    /// Tags of the 12 slots, then the overflow counter, then 3 bytes of padding.
    meta: [u8; 16],
    values: [u32; SLOTS],
}

impl Chunk {
    const EMPTY: Chunk = Chunk {
        meta: [
            EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, 0,
            0, 0, 0,
        ],
        values: [0; SLOTS],
    };

    #[inline]
    fn tags(&self) -> u128 {
        u128::from_le_bytes(self.meta) & SLOT_BYTES
    }

    /// Bit mask (bit 7 of each byte) of slots whose tag is `tag`. SWAR may report a false match
    /// after a true one; callers confirm every candidate.
    #[inline]
    fn match_tag(&self, tag: u8) -> u128 {
        let x = self.tags() ^ (LSB * u128::from(tag));
        x.wrapping_sub(LSB) & !x & MSB & SLOT_BYTES
    }

    /// Bit mask of empty slots.
    #[inline]
    fn match_empty(&self) -> u128 {
        self.tags() & MSB & SLOT_BYTES
    }

    /// Bit mask of full slots.
    #[inline]
    fn match_full(&self) -> u128 {
        !self.tags() & MSB & SLOT_BYTES
    }

    #[inline]
    fn overflow(&self) -> u8 {
        self.meta[SLOTS]
    }

    #[inline]
    fn add_overflow(&mut self) {
        if self.meta[SLOTS] != OVERFLOW_SATURATED {
            self.meta[SLOTS] += 1;
        }
    }

    #[inline]
    fn remove_overflow(&mut self) {
        // A saturated counter no longer knows its count: it stays saturated (lookups just probe on).
        if self.meta[SLOTS] != OVERFLOW_SATURATED {
            self.meta[SLOTS] -= 1;
        }
    }
}

/// Iterates the slot indices of the set bits of a match mask.
#[inline]
fn bits(mut mask: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize / 8;
        mask &= mask - 1;
        Some(i)
    })
}

/// The index of a shard.
pub struct Table {
    chunks: Box<[Chunk]>,
    items: usize,
}

impl Default for Table {
    fn default() -> Self {
        Self::new()
    }
}

impl Table {
    /// An empty table; it allocates on first insert.
    pub fn new() -> Table {
        Table {
            chunks: Box::new([]),
            items: 0,
        }
    }

    fn with_chunks(chunks: usize) -> Table {
        Table {
            chunks: vec![Chunk::EMPTY; chunks.max(MIN_CHUNKS)].into_boxed_slice(),
            items: 0,
        }
    }

    /// Number of values stored.
    #[inline]
    pub fn len(&self) -> usize {
        self.items
    }

    /// Bytes the table occupies.
    pub fn bytes(&self) -> usize {
        self.chunks.len() * size_of::<Chunk>()
    }

    /// Slots in the table.
    pub fn capacity(&self) -> usize {
        self.chunks.len() * SLOTS
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        home_of(hash, self.chunks.len())
    }

    /// Where the chunks are and how many there are, for [`chunk_address`].
    pub fn location(&self) -> (*const u8, usize) {
        (self.chunks.as_ptr().cast(), self.chunks.len())
    }

    #[inline]
    fn next(&self, chunk: usize) -> usize {
        if chunk + 1 == self.chunks.len() {
            0
        } else {
            chunk + 1
        }
    }

    /// The slot holding a value for which `eq` is true, among those stored under `hash`.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.chunks.is_empty() {
            return None;
        }
        let tag = tag(hash);
        let mut c = self.home(hash);
        for _ in 0..self.chunks.len() {
            let chunk = &self.chunks[c];
            for i in bits(chunk.match_tag(tag)) {
                if eq(chunk.values[i]) {
                    return Some(c * SLOTS + i);
                }
            }
            if chunk.overflow() == 0 {
                return None;
            }
            c = self.next(c);
        }
        None
    }

    /// The value in slot `i` (from [`find`](Self::find)).
    #[inline]
    pub fn get(&self, slot: usize) -> u32 {
        self.chunks[slot / SLOTS].values[slot % SLOTS]
    }

    /// Replaces the value in slot `i` (the hash must stay the same).
    #[inline]
    pub fn set(&mut self, slot: usize, value: u32) {
        self.chunks[slot / SLOTS].values[slot % SLOTS] = value;
    }

    /// Inserts `value` under `hash`. The caller guarantees no equal value is present.
    /// `rehash` gives the hash of any stored value, for when the table must grow.
    pub fn insert(&mut self, hash: u64, value: u32, rehash: impl Fn(u32) -> u64) {
        if self.items >= max_items(self.chunks.len()) {
            let chunks = chunks_for(self.items + 1).max(self.chunks.len() * 3 / 2);
            self.rebuild(chunks, &rehash);
        }
        self.place(hash, value);
        self.items += 1;
    }

    /// Puts a value in the first chunk with room along its probe, counting the overflow.
    fn place(&mut self, hash: u64, value: u32) {
        let mut c = self.home(hash);
        loop {
            let chunk = &mut self.chunks[c];
            if let Some(i) = bits(chunk.match_empty()).next() {
                chunk.meta[i] = tag(hash);
                chunk.values[i] = value;
                return;
            }
            chunk.add_overflow();
            c = self.next(c);
        }
    }

    /// Removes the value in `slot`, which was stored under `hash`.
    pub fn erase(&mut self, slot: usize, hash: u64) {
        let (target, i) = (slot / SLOTS, slot % SLOTS);
        debug_assert!(
            self.chunks[target].meta[i] & EMPTY == 0,
            "erasing an empty slot"
        );
        self.chunks[target].meta[i] = EMPTY;
        let mut c = self.home(hash);
        while c != target {
            self.chunks[c].remove_overflow();
            c = self.next(c);
        }
        self.items -= 1;
    }

    /// Empties the table and frees its memory.
    pub fn clear(&mut self) {
        *self = Table::new();
    }

    /// Shrinks the table if it is mostly empty (after mass deletion). Returns whether it did.
    pub fn maybe_shrink(&mut self, rehash: impl Fn(u32) -> u64) -> bool {
        if self.chunks.len() > MIN_CHUNKS && self.items < max_items(self.chunks.len()) / 4 {
            self.rebuild(chunks_for(self.items * 2), &rehash);
            true
        } else {
            false
        }
    }

    /// A stored value chosen at random from `seed` (the first full slot at or after a random one).
    pub fn random(&self, seed: u64) -> Option<u32> {
        if self.items == 0 {
            return None;
        }
        let slots = self.capacity();
        let start = (seed % slots as u64) as usize;
        (0..slots)
            .map(|k| (start + k) % slots)
            .find(|&s| self.chunks[s / SLOTS].meta[s % SLOTS] & EMPTY == 0)
            .map(|s| self.get(s))
    }

    /// Calls `f` for up to `count` stored values, distinct, those of the full slots at and after
    /// a random one chosen from `seed` (going round the table): a random sample of values
    /// whose keys hash apart, read from a few neighbouring chunks.
    pub fn sample(&self, seed: u64, count: usize, mut f: impl FnMut(u32)) {
        let slots = self.capacity();
        let mut left = count.min(self.items);
        if left == 0 {
            return;
        }
        let start = (seed % slots as u64) as usize;
        for k in 0..slots {
            let s = (start + k) % slots;
            if self.chunks[s / SLOTS].meta[s % SLOTS] & EMPTY == 0 {
                f(self.get(s));
                left -= 1;
                if left == 0 {
                    return;
                }
            }
        }
    }

    /// Every stored value, in slot order.
    pub fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks
            .iter()
            .flat_map(|chunk| bits(chunk.match_full()).map(move |i| chunk.values[i]))
    }

    /// Calls `f` for the values whose hash position (low 32 bits) is at least `from`, chunk by
    /// chunk, until at least `count` were found or the table ends; returns the position to resume
    /// from ([`END`] when done). A value present for a whole series of calls is reported at least once.
    pub fn scan(
        &self,
        from: u64,
        count: usize,
        hash_of: impl Fn(u32) -> u64,
        mut f: impl FnMut(u32),
    ) -> u64 {
        if self.chunks.is_empty() || from >= END {
            return END;
        }
        let mut start = self.home(from);
        let mut found = 0;
        let step = count.div_ceil(SLOTS).max(1);
        while start < self.chunks.len() {
            let end = (start + step).min(self.chunks.len());
            found += self.scan_chunks(start, end, from, &hash_of, &mut f);
            start = end;
            if found >= count {
                break;
            }
        }
        self.chunk_start(start)
    }

    /// Reports values whose home chunk is in `[first, end)` and whose position is `>= from`.
    fn scan_chunks(
        &self,
        first: usize,
        end: usize,
        from: u64,
        hash_of: &impl Fn(u32) -> u64,
        f: &mut impl FnMut(u32),
    ) -> usize {
        // A value lives in its home chunk or past chunks whose overflow counters count it, so
        // walking on while the previous chunk overflowed reaches every value homed in the range.
        let mut found = 0;
        let mut c = first;
        for walked in 0..self.chunks.len() {
            if walked >= end - first
                && self.chunks[(c + self.chunks.len() - 1) % self.chunks.len()].overflow() == 0
            {
                break;
            }
            let chunk = &self.chunks[c];
            for i in bits(chunk.match_full()) {
                let value = chunk.values[i];
                let hash = hash_of(value);
                let home = self.home(hash);
                if home >= first && home < end && (hash & 0xFFFF_FFFF) >= from {
                    f(value);
                    found += 1;
                }
            }
            c = self.next(c);
        }
        found
    }

    /// The first hash position whose home is chunk `c` (`END` for `c == chunks`).
    fn chunk_start(&self, c: usize) -> u64 {
        ((c as u64) << 32).div_ceil(self.chunks.len() as u64)
    }

    fn rebuild(&mut self, chunks: usize, rehash: &impl Fn(u32) -> u64) {
        let mut fresh = Table::with_chunks(chunks);
        for value in self.values() {
            fresh.place(rehash(value), value);
        }
        fresh.items = self.items;
        *self = fresh;
    }

    /// Values in full slots, counted from the tags (for consistency checks).
    #[cfg(test)]
    fn count_full(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.match_full().count_ones() as usize)
            .sum()
    }
}

#[inline]
fn home_of(hash: u64, chunks: usize) -> usize {
    (((hash & 0xFFFF_FFFF) * chunks as u64) >> 32) as usize
}

/// The address of the chunk a lookup of `hash` reads first, in a table at `location`
/// ([`Table::location`]). Only an address: it may be stale, so use it for prefetching only.
#[inline]
pub fn chunk_address(location: (*const u8, usize), hash: u64) -> *const u8 {
    let (base, chunks) = location;
    base.wrapping_add(home_of(hash, chunks) * size_of::<Chunk>())
}

/// Most values a table of `chunks` chunks holds before growing (7/8 of its slots).
fn max_items(chunks: usize) -> usize {
    chunks * SLOTS * 7 / 8
}

/// Chunk count for `items` values at about 3/4 occupancy.
fn chunks_for(items: usize) -> usize {
    (items * 4 / 3 / SLOTS + 1).max(MIN_CHUNKS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    #[test]
    fn a_chunk_is_one_cache_line() {
        assert_eq!(size_of::<Chunk>(), 64);
        assert_eq!(align_of::<Chunk>(), 64);
    }

    /// A model where the stored value is the key itself and the hash comes from a fixed function.
    fn hash_of(v: u32) -> u64 {
        let mut h = u64::from(v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h.wrapping_mul(0xBF58_476D_1CE4_E5B9)
    }

    fn insert(t: &mut Table, v: u32) {
        if t.find(hash_of(v), |x| x == v).is_none() {
            t.insert(hash_of(v), v, hash_of);
        }
    }

    fn remove(t: &mut Table, v: u32) -> bool {
        match t.find(hash_of(v), |x| x == v) {
            Some(slot) => {
                t.erase(slot, hash_of(v));
                true
            }
            None => false,
        }
    }

    fn scan_all(t: &Table, count: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut pos = 0;
        loop {
            pos = t.scan(pos, count, hash_of, |v| out.push(v));
            if pos == END {
                return out;
            }
        }
    }

    #[test]
    fn a_sample_is_distinct_values_and_at_most_what_the_table_holds() {
        let mut t = Table::new();
        let mut seen = Vec::new();
        t.sample(7, 5, |v| seen.push(v));
        assert!(seen.is_empty());
        for v in 0..3 {
            insert(&mut t, v);
        }
        t.sample(7, 5, |v| seen.push(v));
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2]);
        for v in 3..1000 {
            insert(&mut t, v);
        }
        for seed in 0..50 {
            let mut seen = Vec::new();
            t.sample(seed * 7919, 10, |v| seen.push(v));
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), 10);
        }
    }

    #[test]
    fn holds_a_million_values_at_high_occupancy() {
        let mut t = Table::new();
        for v in 0..1_000_000 {
            insert(&mut t, v);
        }
        assert_eq!(t.len(), 1_000_000);
        assert_eq!(t.count_full(), 1_000_000);
        let occupancy = t.len() as f64 / t.capacity() as f64;
        assert!(
            occupancy > 0.58 && occupancy <= 0.875,
            "occupancy {occupancy}"
        );
        assert!(
            (0..1_000_000)
                .step_by(997)
                .all(|v| t.find(hash_of(v), |x| x == v).is_some())
        );
        assert!(t.find(hash_of(2_000_000), |x| x == 2_000_000).is_none());
    }

    #[test]
    fn lookups_stay_short_at_high_occupancy() {
        let mut t = Table::new();
        for v in 0..100_000 {
            insert(&mut t, v);
        }
        let probes: usize = (0..100_000u32)
            .map(|v| {
                let mut chunks = 0;
                let mut c = t.home(hash_of(v));
                loop {
                    chunks += 1;
                    let found = t.chunks[c]
                        .values
                        .iter()
                        .enumerate()
                        .any(|(i, &x)| x == v && t.chunks[c].meta[i] & EMPTY == 0);
                    if found {
                        break chunks;
                    }
                    c = t.next(c);
                }
            })
            .sum();
        let mean = probes as f64 / 100_000.0;
        assert!(mean < 1.2, "mean chunks probed {mean}");
    }

    #[test]
    fn deletion_keeps_every_other_value_reachable() {
        let mut t = Table::new();
        for v in 0..50_000 {
            insert(&mut t, v);
        }
        for v in (0..50_000).filter(|v| v % 3 != 0) {
            assert!(remove(&mut t, v));
        }
        for v in 0..50_000 {
            assert_eq!(
                t.find(hash_of(v), |x| x == v).is_some(),
                v % 3 == 0,
                "value {v}"
            );
        }
        assert!(t.chunks.iter().all(|c| c.overflow() < OVERFLOW_SATURATED));
    }

    #[test]
    fn scan_reports_every_value_once_without_changes() {
        let mut t = Table::new();
        for v in 0..10_000 {
            insert(&mut t, v);
        }
        for count in [1, 10, 1000] {
            let mut seen = scan_all(&t, count);
            seen.sort_unstable();
            assert_eq!(seen, (0..10_000).collect::<Vec<_>>(), "count {count}");
        }
    }

    #[test]
    fn scan_survives_growth_and_shrinking_between_calls() {
        let mut t = Table::new();
        for v in 0..1000 {
            insert(&mut t, v);
        }
        let mut seen = BTreeSet::new();
        let mut pos = 0;
        let mut step = 0;
        loop {
            pos = t.scan(pos, 10, hash_of, |v| {
                seen.insert(v);
            });
            step += 1;
            // Grow the table a lot mid-scan, then delete the extra values again.
            if step == 5 {
                for v in 1000..50_000 {
                    insert(&mut t, v);
                }
            }
            if step == 20 {
                for v in 1000..50_000 {
                    remove(&mut t, v);
                }
                assert!(t.maybe_shrink(hash_of));
            }
            if pos == END {
                break;
            }
        }
        assert!(
            (0..1000).all(|v| seen.contains(&v)),
            "a value present throughout was missed"
        );
    }

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in prop::collection::vec((0u32..300, any::<bool>()), 1..2000)) {
            let mut t = Table::new();
            let mut model: HashMap<u32, ()> = HashMap::new();
            for (v, add) in ops {
                if add {
                    insert(&mut t, v);
                    model.insert(v, ());
                } else {
                    prop_assert_eq!(remove(&mut t, v), model.remove(&v).is_some());
                }
                prop_assert_eq!(t.len(), model.len());
            }
            prop_assert_eq!(t.count_full(), model.len());
            for v in 0..300 {
                prop_assert_eq!(t.find(hash_of(v), |x| x == v).is_some(), model.contains_key(&v));
            }
            let mut scanned = scan_all(&t, 7);
            scanned.sort_unstable();
            let mut expected: Vec<u32> = model.keys().copied().collect();
            expected.sort_unstable();
            prop_assert_eq!(scanned, expected);
        }
    }
}
