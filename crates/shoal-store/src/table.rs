//! A shard's index: an open-addressing hash table of 32-bit entry refs.
//!
//! The layout follows SwissTable: one control byte per bucket (`EMPTY`, `DELETED`, or 7 bits of
//! the hash) scanned 8 at a time with word-sized bit tricks, and a parallel array of `u32` values.
//! That is 5 bytes per bucket. Two choices differ from hashbrown, for a cache's needs:
//!
//! * The bucket count is any multiple of 8, not a power of two: a hash's home bucket is
//!   `(low32(hash) * buckets) >> 32` and the table grows by 1.5x, so occupancy stays between 58%
//!   and 87.5% instead of dropping to 44% after each doubling.
//! * The home bucket is monotonic in the hash, so a position in hash space is a stable cursor:
//!   [`Table::scan`] returns every value whose hash lies in a range, whatever resizes happen
//!   between calls. That is what `SCAN` needs (no key present throughout is ever missed).
//!
//! The table stores no hashes or keys; callers pass a closure that recomputes a value's hash
//! (from its key) when the table resizes or scans.

const GROUP: usize = 8;
const EMPTY: u8 = 0xFF;
const DELETED: u8 = 0x80;
const MIN_BUCKETS: usize = 16;
const LSB: u64 = 0x0101_0101_0101_0101;
const MSB: u64 = 0x8080_8080_8080_8080;

/// One past the largest position in hash space (positions are the low 32 bits of a hash).
pub const END: u64 = 1 << 32;

#[inline]
fn tag(hash: u64) -> u8 {
    ((hash >> 32) & 0x7F) as u8
}

/// Bit mask (bit 7 of each byte) of the bytes of `group` equal to `byte`. May report false
/// positives after a true match; callers confirm every candidate.
#[inline]
fn match_byte(group: u64, byte: u8) -> u64 {
    let x = group ^ (LSB * u64::from(byte));
    x.wrapping_sub(LSB) & !x & MSB
}

#[inline]
fn match_empty(group: u64) -> u64 {
    group & (group << 1) & MSB
}

#[inline]
fn match_empty_or_deleted(group: u64) -> u64 {
    group & MSB
}

#[cfg(test)]
#[inline]
fn match_full(group: u64) -> u64 {
    !group & MSB
}

/// Iterates the byte indices of the set bits of a match mask.
#[inline]
fn bits(mut mask: u64) -> impl Iterator<Item = usize> {
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
    ctrl: Box<[u8]>,
    slots: Box<[u32]>,
    buckets: usize,
    items: usize,
    growth_left: usize,
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
            ctrl: Box::new([]),
            slots: Box::new([]),
            buckets: 0,
            items: 0,
            growth_left: 0,
        }
    }

    fn with_buckets(buckets: usize) -> Table {
        debug_assert!(buckets >= MIN_BUCKETS && buckets.is_multiple_of(GROUP));
        Table {
            ctrl: vec![EMPTY; buckets + GROUP].into_boxed_slice(),
            slots: vec![0u32; buckets].into_boxed_slice(),
            buckets,
            items: 0,
            growth_left: max_items(buckets),
        }
    }

    /// Number of values stored.
    #[inline]
    pub fn len(&self) -> usize {
        self.items
    }

    /// Bytes the table occupies (control bytes and slots).
    pub fn bytes(&self) -> usize {
        self.ctrl.len() + self.slots.len() * 4
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (((hash & 0xFFFF_FFFF) * self.buckets as u64) >> 32) as usize
    }

    #[inline]
    fn group_at(&self, pos: usize) -> u64 {
        let bytes: [u8; GROUP] = self.ctrl[pos..pos + GROUP].try_into().expect("group of 8");
        u64::from_le_bytes(bytes)
    }

    #[inline]
    fn wrap(&self, i: usize) -> usize {
        if i >= self.buckets {
            i - self.buckets
        } else {
            i
        }
    }

    #[inline]
    fn set_ctrl(&mut self, i: usize, byte: u8) {
        self.ctrl[i] = byte;
        if i < GROUP {
            self.ctrl[self.buckets + i] = byte;
        }
    }

    /// The slot holding a value for which `eq` is true, among those stored under `hash`.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.buckets == 0 {
            return None;
        }
        let tag = tag(hash);
        let mut pos = self.home(hash);
        let mut probed = 0;
        loop {
            let group = self.group_at(pos);
            for bit in bits(match_byte(group, tag)) {
                let i = self.wrap(pos + bit);
                if eq(self.slots[i]) {
                    return Some(i);
                }
            }
            if match_empty(group) != 0 {
                return None;
            }
            probed += GROUP;
            if probed >= self.buckets {
                return None;
            }
            pos = self.wrap(pos + GROUP);
        }
    }

    /// The value in slot `i` (from [`find`](Self::find)).
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        self.slots[i]
    }

    /// Replaces the value in slot `i` (the hash must stay the same).
    #[inline]
    pub fn set(&mut self, i: usize, value: u32) {
        self.slots[i] = value;
    }

    /// Inserts `value` under `hash`. The caller guarantees no equal value is present.
    /// `rehash` gives the hash of any stored value, for when the table must grow.
    pub fn insert(&mut self, hash: u64, value: u32, rehash: impl Fn(u32) -> u64) {
        if self.buckets == 0 {
            *self = Table::with_buckets(MIN_BUCKETS);
        }
        let mut i = self.find_insert_slot(hash);
        if self.ctrl[i] == EMPTY && self.growth_left == 0 {
            self.reserve_one(&rehash);
            i = self.find_insert_slot(hash);
        }
        if self.ctrl[i] == EMPTY {
            self.growth_left -= 1;
        }
        self.set_ctrl(i, tag(hash));
        self.slots[i] = value;
        self.items += 1;
    }

    /// Removes the value in slot `i`.
    pub fn erase(&mut self, i: usize) {
        debug_assert!(self.ctrl[i] & 0x80 == 0, "erasing an empty slot");
        let before = self.group_at((i + self.buckets - GROUP) % self.buckets);
        let after = self.group_at(i);
        let run = match_empty(before).leading_zeros() / 8 + match_empty(after).trailing_zeros() / 8;
        let byte = if run as usize >= GROUP {
            DELETED
        } else {
            self.growth_left += 1;
            EMPTY
        };
        self.set_ctrl(i, byte);
        self.items -= 1;
    }

    /// Empties the table and frees its memory.
    pub fn clear(&mut self) {
        *self = Table::new();
    }

    /// Shrinks the table if it is mostly empty (after mass deletion). Returns whether it did.
    pub fn maybe_shrink(&mut self, rehash: impl Fn(u32) -> u64) -> bool {
        if self.buckets > MIN_BUCKETS && self.items < max_items(self.buckets) / 4 {
            self.rebuild(buckets_for(self.items * 2), &rehash);
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
        let start = (seed % self.buckets as u64) as usize;
        (0..self.buckets)
            .map(|k| self.wrap(start + k))
            .find(|&i| self.ctrl[i] & 0x80 == 0)
            .map(|i| self.slots[i])
    }

    /// Every stored value, in slot order.
    pub fn values(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.buckets)
            .filter(|&i| self.ctrl[i] & 0x80 == 0)
            .map(|i| self.slots[i])
    }

    /// Calls `f` for the values whose hash position (low 32 bits) is at least `from`, bucket by
    /// bucket, until at least `count` were found or the table ends; returns the position to resume
    /// from ([`END`] when done). A value present for a whole series of calls is reported at least once.
    pub fn scan(
        &self,
        from: u64,
        count: usize,
        hash_of: impl Fn(u32) -> u64,
        mut f: impl FnMut(u32),
    ) -> u64 {
        if self.buckets == 0 || from >= END {
            return END;
        }
        let mut start = self.home(from);
        let mut found = 0;
        let chunk = count.max(GROUP);
        while start < self.buckets {
            let end = (start + chunk).min(self.buckets);
            found += self.scan_buckets(start, end, from, &hash_of, &mut f);
            start = end;
            if found >= count {
                break;
            }
        }
        self.bucket_start(start)
    }

    /// Reports values whose home bucket is in `[first, end)` and whose position is `>= from`.
    fn scan_buckets(
        &self,
        first: usize,
        end: usize,
        from: u64,
        hash_of: &impl Fn(u32) -> u64,
        f: &mut impl FnMut(u32),
    ) -> usize {
        // Values with a home in the range sit between `first` and 8 slots past the first EMPTY
        // at or after the range's last bucket: no probe sequence from the range goes further.
        let mut empty = end - 1;
        let mut overflow = 0;
        while self.ctrl[empty] != EMPTY && overflow < self.buckets {
            empty = self.wrap(empty + 1);
            overflow += 1;
        }
        let span = (end - first + overflow + GROUP).min(self.buckets);
        let mut found = 0;
        for k in 0..span {
            let i = self.wrap(first + k);
            if self.ctrl[i] & 0x80 != 0 {
                continue;
            }
            let value = self.slots[i];
            let hash = hash_of(value);
            let home = self.home(hash);
            if home >= first && home < end && (hash & 0xFFFF_FFFF) >= from {
                f(value);
                found += 1;
            }
        }
        found
    }

    /// The first hash position whose home is bucket `b` (`END` for `b == buckets`).
    fn bucket_start(&self, b: usize) -> u64 {
        ((b as u64) << 32).div_ceil(self.buckets as u64)
    }

    fn find_insert_slot(&self, hash: u64) -> usize {
        let mut pos = self.home(hash);
        loop {
            let mask = match_empty_or_deleted(self.group_at(pos));
            if mask != 0 {
                return self.wrap(pos + mask.trailing_zeros() as usize / 8);
            }
            pos = self.wrap(pos + GROUP);
        }
    }

    fn reserve_one(&mut self, rehash: &impl Fn(u32) -> u64) {
        // Plenty of tombstones: rebuild at the same size; otherwise grow by half.
        let buckets = if self.items < max_items(self.buckets) / 2 {
            self.buckets
        } else {
            buckets_for(self.items + 1).max(self.buckets * 3 / 2)
        };
        self.rebuild(buckets, rehash);
    }

    fn rebuild(&mut self, buckets: usize, rehash: &impl Fn(u32) -> u64) {
        let mut fresh = Table::with_buckets(buckets.max(MIN_BUCKETS).next_multiple_of(GROUP));
        for value in self.values() {
            let hash = rehash(value);
            let i = fresh.find_insert_slot(hash);
            fresh.set_ctrl(i, tag(hash));
            fresh.slots[i] = value;
            fresh.items += 1;
            fresh.growth_left -= 1;
        }
        *self = fresh;
    }

    /// Values in full slots, counted from the control bytes (for consistency checks).
    #[cfg(test)]
    fn count_full(&self) -> usize {
        (0..self.buckets)
            .step_by(GROUP)
            .map(|pos| {
                let mut mask = match_full(self.group_at(pos));
                // Ignore mirrored bytes past the end.
                if pos + GROUP > self.buckets {
                    mask &= (1u64 << ((self.buckets - pos) * 8)) - 1;
                }
                mask.count_ones() as usize
            })
            .sum()
    }
}

/// Most values a table of `buckets` buckets holds before growing (7/8 occupancy).
fn max_items(buckets: usize) -> usize {
    buckets / 8 * 7
}

/// Bucket count for `items` values at about 3/4 occupancy.
fn buckets_for(items: usize) -> usize {
    (items * 4 / 3 + 1).max(MIN_BUCKETS).next_multiple_of(GROUP)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

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
            Some(i) => {
                t.erase(i);
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
    fn holds_a_million_values_at_high_occupancy() {
        let mut t = Table::new();
        for v in 0..1_000_000 {
            insert(&mut t, v);
        }
        assert_eq!(t.len(), 1_000_000);
        assert_eq!(t.count_full(), 1_000_000);
        let occupancy = t.len() as f64 / t.buckets as f64;
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
