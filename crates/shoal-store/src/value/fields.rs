//! A large hash's encoding, Redis's `hashtable`: fields in an index of their own (the same
//! open-addressing [`Table`] the keyspace uses, so `HSCAN` gets the same cursor guarantees),
//! each field with its value and expiry in one heap allocation.
//!
//! The table lives on the heap; the entry's value holds a pointer to it. Every byte it takes
//! is counted ([`FieldTable::bytes`]) and charged to the entry in `used_memory`.

use crate::hash::KeyHasher;
use crate::table::{END, Table};

use super::packed::{Field, Packed, Pairs, encode_pair_into, header_len};

/// Bytes glibc's malloc takes for an allocation of `n` bytes (chunk header, 16-byte rounding,
/// 32-byte minimum).
pub fn heap_size(n: usize) -> usize {
    (n + 8).div_ceil(16).max(2) * 16
}

/// One field: `has_expiry u8, varint flen, field, varint vlen, value, [expiry u64]`.
struct Pair(Box<[u8]>);

impl Pair {
    fn new(field: &[u8], value: &[u8], expiry: Option<u64>) -> Pair {
        let mut buf = Vec::with_capacity(field.len() + value.len() + 12);
        buf.push(u8::from(expiry.is_some()));
        encode_pair_into(&mut buf, field, value, expiry, expiry.is_some());
        Pair(buf.into_boxed_slice())
    }

    fn get(&self) -> Field<'_> {
        let ttls = self.0[0] != 0;
        let flags = if ttls { super::packed::TTLS } else { 0 };
        // A one-pair buffer whose header is the flag byte: reuse the packed reader.
        Pairs::over(&self.0, header_len(0), flags)
            .next()
            .expect("a pair encodes one field")
    }
}

/// A hash's fields in a table.
pub struct FieldTable {
    index: Table,
    pairs: Vec<Pair>,
    hasher: KeyHasher,
    /// Heap bytes of the pairs.
    pair_bytes: usize,
    /// Fields with an expiry.
    expiring: usize,
}

impl FieldTable {
    /// An empty table hashing fields with `hasher`.
    pub fn new(hasher: KeyHasher) -> FieldTable {
        FieldTable {
            index: Table::new(),
            pairs: Vec::new(),
            hasher,
            pair_bytes: 0,
            expiring: 0,
        }
    }

    /// The fields of an encoded hash, in a table.
    pub fn from_packed(packed: Packed<'_>, hasher: KeyHasher) -> FieldTable {
        let mut table = FieldTable::new(hasher);
        for f in packed.iter() {
            table.set(f.name, f.value, f.expiry);
        }
        table
    }

    /// Bytes the table takes on the heap: itself, its index, its pair list and every pair.
    pub fn bytes(&self) -> usize {
        heap_size(size_of::<FieldTable>())
            + self.index.bytes()
            + heap_size(self.pairs.capacity() * size_of::<Pair>())
            + self.pair_bytes
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether any field has an expiry.
    pub fn has_ttls(&self) -> bool {
        self.expiring > 0
    }

    fn slot(&self, field: &[u8]) -> Option<(u64, usize)> {
        let hash = self.hasher.hash(field);
        let pairs = &self.pairs;
        let slot = self
            .index
            .find(hash, |v| pairs[v as usize].get().name == field)?;
        Some((hash, slot))
    }

    /// The field called `name`.
    pub fn get(&self, name: &[u8]) -> Option<Field<'_>> {
        let (_, slot) = self.slot(name)?;
        Some(self.pairs[self.index.get(slot) as usize].get())
    }

    /// Sets a field; returns whether it is new.
    pub fn set(&mut self, name: &[u8], value: &[u8], expiry: Option<u64>) -> bool {
        let pair = Pair::new(name, value, expiry);
        self.pair_bytes += heap_size(pair.0.len());
        self.expiring += usize::from(expiry.is_some());
        if let Some((_, slot)) = self.slot(name) {
            let i = self.index.get(slot) as usize;
            let old = std::mem::replace(&mut self.pairs[i], pair);
            self.forget(&old);
            return false;
        }
        let hash = self.hasher.hash(name);
        let i = self.pairs.len() as u32;
        self.pairs.push(pair);
        let (pairs, hasher) = (&self.pairs, &self.hasher);
        self.index
            .insert(hash, i, |v| hasher.hash(pairs[v as usize].get().name));
        true
    }

    /// Removes a field; returns whether it was there.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let Some((hash, slot)) = self.slot(name) else {
            return false;
        };
        let i = self.index.get(slot) as usize;
        self.index.erase(slot, hash);
        let last = self.pairs.len() - 1;
        if i != last {
            // The last pair moves into the hole: point its slot at its new place.
            let moved = self.hasher.hash(self.pairs[last].get().name);
            let at = self
                .index
                .find(moved, |v| v as usize == last)
                .expect("every pair is indexed");
            self.index.set(at, i as u32);
        }
        let old = self.pairs.swap_remove(i);
        self.forget(&old);
        if self.pairs.capacity() > 64 && self.pairs.len() < self.pairs.capacity() / 4 {
            self.pairs.shrink_to(self.pairs.len() * 2);
            let (pairs, hasher) = (&self.pairs, &self.hasher);
            self.index
                .maybe_shrink(|v| hasher.hash(pairs[v as usize].get().name));
        }
        true
    }

    fn forget(&mut self, old: &Pair) {
        self.pair_bytes -= heap_size(old.0.len());
        self.expiring -= usize::from(old.get().expiry.is_some());
    }

    /// Every field, in the table's order.
    pub fn iter(&self) -> impl Iterator<Item = Field<'_>> + '_ {
        self.pairs.iter().map(Pair::get)
    }

    /// The field at position `i` of [`iter`](Self::iter) (for random picks).
    pub fn nth(&self, i: usize) -> Option<Field<'_>> {
        self.pairs.get(i).map(Pair::get)
    }

    /// The earliest field expiry.
    pub fn min_expiry(&self) -> Option<u64> {
        if self.expiring == 0 {
            return None;
        }
        self.iter().filter_map(|f| f.expiry).min()
    }

    /// Removes every field expired at `now` (`now > expiry`), telling `removed` each name.
    pub fn purge(&mut self, now: u64, mut removed: impl FnMut(&[u8])) -> usize {
        if self.expiring == 0 {
            return 0;
        }
        let gone: Vec<Vec<u8>> = self
            .iter()
            .filter(|f| f.expiry.is_some_and(|at| now > at))
            .map(|f| f.name.to_vec())
            .collect();
        for name in &gone {
            removed(name);
            self.remove(name);
        }
        gone.len()
    }

    /// One step of `HSCAN`: fields whose hash position is at least `cursor`, about `count` of
    /// them; returns the cursor to continue from (0 when done).
    pub fn scan<'a>(&'a self, cursor: u64, count: usize, mut f: impl FnMut(Field<'a>)) -> u64 {
        if cursor >= END {
            return 0;
        }
        let (pairs, hasher) = (&self.pairs, &self.hasher);
        let next = self.index.scan(
            cursor,
            count,
            |v| hasher.hash(pairs[v as usize].get().name),
            |v| f(pairs[v as usize].get()),
        );
        if next >= END { 0 } else { next }
    }

    /// The fields as an encoded hash (the whole-state payload), in `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = super::packed::Builder::new(out, self.has_ttls());
        for f in self.iter() {
            b.push(f.name, f.value, f.expiry);
        }
        b.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn fields_are_set_found_and_removed_with_exact_accounting() {
        let mut t = FieldTable::new(KeyHasher::with_seed(3));
        let mut model = HashMap::new();
        for i in 0..2000u32 {
            let name = format!("f{}", i % 700).into_bytes();
            if i % 3 == 2 {
                assert_eq!(t.remove(&name), model.remove(&name).is_some());
            } else {
                let value = format!("v{i}").into_bytes();
                let expiry = (i % 5 == 0).then_some(u64::from(i) + 10);
                assert_eq!(
                    t.set(&name, &value, expiry),
                    model.insert(name.clone(), (value, expiry)).is_none()
                );
            }
        }
        assert_eq!(t.len(), model.len());
        for (name, (value, expiry)) in &model {
            let f = t.get(name).unwrap();
            assert_eq!((f.value, f.expiry), (&value[..], *expiry));
        }
        let pair_bytes: usize = t.pairs.iter().map(|p| heap_size(p.0.len())).sum();
        assert_eq!(pair_bytes, t.pair_bytes);
        let expiring = model.values().filter(|(_, e)| e.is_some()).count();
        assert_eq!(t.expiring, expiring);
        // A full scan sees every field once.
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            cursor = t.scan(cursor, 10, |f| seen.push(f.name.to_vec()));
            if cursor == 0 {
                break;
            }
        }
        seen.sort();
        let mut names: Vec<_> = model.keys().cloned().collect();
        names.sort();
        assert_eq!(seen, names);
        // Encoding and decoding keeps everything.
        let mut payload = Vec::new();
        t.encode(&mut payload);
        assert!(super::super::packed::validate(&payload));
        let back = FieldTable::from_packed(Packed::new(&payload), KeyHasher::with_seed(9));
        assert_eq!(back.len(), t.len());
        let now = 10_000;
        let mut purged = 0;
        t.purge(now, |_| purged += 1);
        assert_eq!(purged, expiring);
        assert!(!t.has_ttls());
    }
}
