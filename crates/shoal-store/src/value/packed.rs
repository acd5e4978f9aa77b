//! A small hash's encoding, Redis's `listpack` in spirit: one contiguous buffer of field/value
//! pairs, stored as the entry's value in the arena, so a small hash costs its entry and the bytes
//! of its fields and nothing else (no pointer, no allocation of its own).
//!
//! ```text
//! flags u8 (TTLS: the pairs carry expiries)
//! [min_expiry u64]                         if TTLS: the earliest field expiry (u64::MAX: none)
//! pairs: varint flen, field, varint vlen, value, [expiry u64, 0 = none]  (expiry if TTLS)
//! ```
//!
//! Lengths are LEB128 varints (one byte up to 127). Fields keep the order they were added in,
//! and a value written again stays in its place (as Redis's listpack does). The same bytes are
//! the hash's whole-state payload in the replication stream and in snapshots, whatever its
//! in-memory encoding ([`validate`] checks one that came from outside).

/// The value is a pointer to a [`super::FieldTable`] (never set in a payload).
pub const TABLE: u8 = 1;
/// The pairs carry expiries, and the header the earliest of them.
pub const TTLS: u8 = 2;

/// One field of a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field's name.
    pub name: &'a [u8],
    /// Its value.
    pub value: &'a [u8],
    /// When it expires (absolute Unix ms), if it does.
    pub expiry: Option<u64>,
}

/// Appends `n` as a LEB128 varint.
pub fn put_varint(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(varint_bytes(&mut [0; 10], n));
}

/// Reads a varint at the start of `buf`: `(value, bytes read)`.
fn get_varint(buf: &[u8]) -> Option<(usize, usize)> {
    let mut n = 0usize;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let part = usize::from(b & 0x7F).checked_shl(7 * i as u32)?;
        n |= part;
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// Bytes a pair takes.
pub fn pair_len(field: usize, value: usize, ttls: bool) -> usize {
    varint_len(field) + field + varint_len(value) + value + if ttls { 8 } else { 0 }
}

fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.max(1).leading_zeros();
    bits.div_ceil(7) as usize
}

/// Where the pairs start in a buffer with these flags.
pub fn header_len(flags: u8) -> usize {
    if flags & TTLS != 0 { 9 } else { 1 }
}

/// A read-only view of an encoded hash (the buffer is trusted: it was built by this module or
/// passed [`validate`]).
#[derive(Debug, Clone, Copy)]
pub struct Packed<'a> {
    buf: &'a [u8],
}

impl<'a> Packed<'a> {
    /// A view of `buf`.
    pub fn new(buf: &'a [u8]) -> Packed<'a> {
        Packed { buf }
    }

    /// The flags byte.
    pub fn flags(self) -> u8 {
        self.buf.first().copied().unwrap_or(0)
    }

    /// Whether the pairs carry expiries.
    pub fn has_ttls(self) -> bool {
        self.flags() & TTLS != 0
    }

    /// The earliest field expiry, if any field has one.
    pub fn min_expiry(self) -> Option<u64> {
        if !self.has_ttls() {
            return None;
        }
        let at = u64::from_le_bytes(self.buf[1..9].try_into().ok()?);
        (at != u64::MAX).then_some(at)
    }

    /// The pairs, in order, each with its offset in the buffer.
    pub fn iter(self) -> Pairs<'a> {
        Pairs {
            buf: self.buf,
            at: header_len(self.flags()).min(self.buf.len()),
            ttls: self.has_ttls(),
        }
    }

    /// Number of fields.
    pub fn len(self) -> usize {
        self.iter().count()
    }

    /// The field called `name`, with its offset and length in the buffer.
    pub fn find(self, name: &[u8]) -> Option<(usize, usize, Field<'a>)> {
        let mut pairs = self.iter();
        loop {
            let at = pairs.at;
            let field = pairs.next()?;
            if field.name == name {
                return Some((at, pairs.at - at, field));
            }
        }
    }
}

/// The pairs of a [`Packed`].
#[derive(Debug, Clone)]
pub struct Pairs<'a> {
    buf: &'a [u8],
    at: usize,
    ttls: bool,
}

impl<'a> Pairs<'a> {
    /// The pairs of `buf` from offset `at`, carrying expiries if `flags` says so.
    pub fn over(buf: &'a [u8], at: usize, flags: u8) -> Pairs<'a> {
        Pairs {
            buf,
            at,
            ttls: flags & TTLS != 0,
        }
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let (field, next) = read_pair(self.buf, self.at, self.ttls)?;
        self.at = next;
        Some(field)
    }
}

/// The pair at `at`, and where the next one starts; `None` at the end or on bad bytes.
fn read_pair(buf: &[u8], at: usize, ttls: bool) -> Option<(Field<'_>, usize)> {
    let rest = buf.get(at..)?;
    let (flen, a) = get_varint(rest)?;
    let name = rest.get(a..a.checked_add(flen)?)?;
    let rest2 = &rest[a + flen..];
    let (vlen, b) = get_varint(rest2)?;
    let value = rest2.get(b..b.checked_add(vlen)?)?;
    let mut used = a + flen + b + vlen;
    let mut expiry = None;
    if ttls {
        let bytes = rest.get(used..used + 8)?;
        let at = u64::from_le_bytes(bytes.try_into().ok()?);
        expiry = (at != 0).then_some(at);
        used += 8;
    }
    Some((
        Field {
            name,
            value,
            expiry,
        },
        at + used,
    ))
}

/// Whether `payload` is a well-formed encoded hash (from a replication stream or snapshot):
/// every pair complete, no field twice, no table flag, at least one field.
pub fn validate(payload: &[u8]) -> bool {
    let Some(&flags) = payload.first() else {
        return false;
    };
    if flags & !TTLS != 0 || payload.len() < header_len(flags) {
        return false;
    }
    let ttls = flags & TTLS != 0;
    let mut at = header_len(flags);
    let mut seen = std::collections::HashSet::new();
    while at < payload.len() {
        let Some((field, next)) = read_pair(payload, at, ttls) else {
            return false;
        };
        if !seen.insert(field.name) {
            return false;
        }
        at = next;
    }
    !seen.is_empty()
}

/// Builds an encoded hash in a buffer (cleared first).
pub struct Builder<'b> {
    buf: &'b mut Vec<u8>,
    ttls: bool,
    min: u64,
}

impl<'b> Builder<'b> {
    /// Starts an encoded hash in `buf`; `ttls`: whether its pairs carry expiries.
    pub fn new(buf: &'b mut Vec<u8>, ttls: bool) -> Builder<'b> {
        buf.clear();
        buf.push(if ttls { TTLS } else { 0 });
        if ttls {
            buf.extend_from_slice(&u64::MAX.to_le_bytes());
        }
        Builder {
            buf,
            ttls,
            min: u64::MAX,
        }
    }

    /// Appends a pair (`expiry` is dropped unless the hash carries expiries).
    pub fn push(&mut self, field: &[u8], value: &[u8], expiry: Option<u64>) {
        encode_pair_into(self.buf, field, value, expiry, self.ttls);
        if let Some(at) = expiry.filter(|_| self.ttls) {
            self.min = self.min.min(at);
        }
    }

    /// Finishes the header.
    pub fn finish(self) {
        if self.ttls {
            self.buf[1..9].copy_from_slice(&self.min.to_le_bytes());
        }
    }
}

/// Appends one pair (with its expiry, 0 for none, when `ttls`).
pub fn encode_pair_into(
    out: &mut Vec<u8>,
    field: &[u8],
    value: &[u8],
    expiry: Option<u64>,
    ttls: bool,
) {
    put_varint(out, field.len());
    out.extend_from_slice(field);
    put_varint(out, value.len());
    out.extend_from_slice(value);
    if ttls {
        out.extend_from_slice(&expiry.unwrap_or(0).to_le_bytes());
    }
}

/// Writes one pair into `out`, which is exactly [`pair_len`] bytes.
fn write_pair(out: &mut [u8], field: &[u8], value: &[u8], expiry: Option<u64>, ttls: bool) {
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let mut varint = [0u8; 10];
    put(varint_bytes(&mut varint, field.len()));
    put(field);
    put(varint_bytes(&mut varint, value.len()));
    put(value);
    if ttls {
        put(&expiry.unwrap_or(0).to_le_bytes());
    }
}

/// `n` as a LEB128 varint, in `buf`.
fn varint_bytes(buf: &mut [u8; 10], mut n: usize) -> &[u8] {
    let mut len = 0;
    while n >= 0x80 {
        buf[len] = (n as u8) | 0x80;
        n >>= 7;
        len += 1;
    }
    buf[len] = n as u8;
    &buf[..=len]
}

/// An encoded hash being edited in place (a scratch copy of the entry's value).
pub struct PackedMut<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> PackedMut<'b> {
    /// Edits the encoded hash in `buf` (an empty buffer is an empty hash).
    pub fn new(buf: &'b mut Vec<u8>) -> PackedMut<'b> {
        if buf.is_empty() {
            buf.push(0);
        }
        PackedMut { buf }
    }

    /// The hash as it is now.
    pub fn view(&self) -> Packed<'_> {
        Packed::new(self.buf)
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        self.buf
    }

    /// Sets `field` to `value` with `expiry`, in place if it exists, else at the end. Returns
    /// whether the field is new.
    pub fn set(&mut self, field: &[u8], value: &[u8], expiry: Option<u64>) -> bool {
        if expiry.is_some() && !self.view().has_ttls() {
            self.add_ttls();
        }
        let ttls = self.view().has_ttls();
        let found = self.view().find(field).map(|(at, len, _)| (at, len));
        let new = match found {
            Some((at, len)) => {
                // Make the old pair's room the new pair's size, then write it there.
                let want = pair_len(field.len(), value.len(), ttls);
                if want > len {
                    let extra = want - len;
                    self.buf.splice(at..at, std::iter::repeat_n(0, extra));
                } else {
                    self.buf.drain(at..at + (len - want));
                }
                write_pair(&mut self.buf[at..at + want], field, value, expiry, ttls);
                false
            }
            None => {
                encode_pair_into(self.buf, field, value, expiry, ttls);
                true
            }
        };
        if ttls {
            self.refresh_min();
        }
        new
    }

    /// Removes `field`; returns whether it was there.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        let Some((at, len, _)) = self.view().find(field) else {
            return false;
        };
        self.buf.drain(at..at + len);
        self.refresh_min();
        true
    }

    /// Removes every field expired at `now` (`now > expiry`), telling `removed` each one's
    /// name. Returns how many went.
    pub fn purge(&mut self, now: u64, mut removed: impl FnMut(&[u8])) -> usize {
        if self.view().min_expiry().is_none_or(|min| now <= min) {
            return 0;
        }
        let ttls = true;
        let mut kept = Vec::with_capacity(self.buf.len());
        kept.extend_from_slice(&self.buf[..header_len(TTLS)]);
        let mut count = 0;
        for f in self.view().iter() {
            if f.expiry.is_some_and(|at| now > at) {
                removed(f.name);
                count += 1;
            } else {
                encode_pair_into(&mut kept, f.name, f.value, f.expiry, ttls);
            }
        }
        *self.buf = kept;
        self.refresh_min();
        count
    }

    /// Converts to pairs that carry expiries.
    fn add_ttls(&mut self) {
        let mut out = Vec::with_capacity(self.buf.len() + 16);
        let mut b = Builder::new(&mut out, true);
        for f in self.view().iter() {
            b.push(f.name, f.value, None);
        }
        b.finish();
        *self.buf = out;
    }

    /// Recomputes the header's earliest expiry.
    fn refresh_min(&mut self) {
        if !self.view().has_ttls() {
            return;
        }
        let min = self
            .view()
            .iter()
            .filter_map(|f| f.expiry)
            .min()
            .unwrap_or(u64::MAX);
        self.buf[1..9].copy_from_slice(&min.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>, Option<u64>)> {
        Packed::new(buf)
            .iter()
            .map(|f| (f.name.to_vec(), f.value.to_vec(), f.expiry))
            .collect()
    }

    #[test]
    fn pairs_keep_their_order_and_place() {
        let mut buf = Vec::new();
        let mut h = PackedMut::new(&mut buf);
        assert!(h.set(b"a", b"1", None));
        assert!(h.set(b"b", b"2", None));
        assert!(!h.set(b"a", b"one", None));
        assert!(h.set(b"c", &[7u8; 300], None));
        assert_eq!(h.view().len(), 3);
        assert!(h.remove(b"b"));
        assert!(!h.remove(b"b"));
        assert!(validate(h.bytes()));
        assert_eq!(
            fields(&buf),
            vec![
                (b"a".to_vec(), b"one".to_vec(), None),
                (b"c".to_vec(), vec![7u8; 300], None)
            ]
        );
        assert_eq!(buf.len(), 1 + 1 + 1 + 1 + 3 + 1 + 1 + 2 + 300);
    }

    #[test]
    fn expiries_are_carried_and_purged() {
        let mut buf = Vec::new();
        let mut h = PackedMut::new(&mut buf);
        h.set(b"a", b"1", None);
        h.set(b"b", b"2", Some(500));
        h.set(b"c", b"3", Some(100));
        assert_eq!(h.view().min_expiry(), Some(100));
        h.set(b"c", b"3", None);
        assert_eq!(h.view().min_expiry(), Some(500));
        assert_eq!(h.purge(500, |_| panic!("alive through its millisecond")), 0);
        let mut gone = Vec::new();
        assert_eq!(h.purge(501, |f| gone.push(f.to_vec())), 1);
        assert_eq!(gone, vec![b"b".to_vec()]);
        assert_eq!(h.view().min_expiry(), None);
        assert_eq!(h.view().len(), 2);
        assert!(validate(h.bytes()));
    }

    #[test]
    fn bad_payloads_are_refused() {
        for bad in [
            &b""[..],
            b"\x00",
            b"\x01\x01a\x01b",
            b"\x00\x05ab",
            b"\x00\x01a\x01b\x01a\x01c",
            b"\x02\xff",
            b"\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        ] {
            assert!(!validate(bad), "{bad:?}");
        }
        assert!(validate(b"\x00\x01a\x01b"));
    }

    #[test]
    fn varints_round_trip() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 40] {
            let mut buf = Vec::new();
            put_varint(&mut buf, n);
            assert_eq!(buf.len(), varint_len(n));
            assert_eq!(get_varint(&buf), Some((n, buf.len())));
        }
    }
}
