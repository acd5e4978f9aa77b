//! The layout of one entry in the arena: a single blob holding the LRU links, metadata, the
//! optional TTL section, the key and the value.
//!
//! ```text
//! narrow (key < 256 B, value < 64 KiB)      wide
//! 0  prev      u32  LRU neighbour (newer)    same
//! 4  next      u32  LRU neighbour (older)    same
//! 8  meta      u24  flags:4 | access clock:20 same, then the value's kind: u8
//! 11 klen      u8                            12 klen u32
//! 12 vlen      u16                           16 vlen u32
//! 14 [ttl]     expiry u64 ms, vprev u32, vnext u32   (20) [ttl]
//! .. key, value
//! ```
//!
//! A 16-byte key with a 100-byte value and no TTL is 130 bytes. Everything is read and written
//! unaligned (blobs are 2-byte aligned), which costs nothing on the targets Shoal runs on.
//!
//! The value's [`Kind`] is byte 11 of the wide form; a narrow entry is always a string. So a
//! value of another type (a hash...) always takes the wide form, six bytes more per key, and
//! strings, the common case, pay nothing for the other types.

use crate::arena::Ref;

const NARROW_HEADER: usize = 14;
const WIDE_HEADER: usize = 20;
const TTL_SECTION: usize = 16;

/// The entry has an expiry and a TTL section.
const FLAG_TTL: u32 = 1;
/// The lengths are stored as u32s.
const FLAG_WIDE: u32 = 2;
/// The value was modified in place (`APPEND`, `SETRANGE`): Redis reports such strings as `raw`.
const FLAG_RAW: u32 = 4;
/// The value was written as text (`INCRBYFLOAT`): Redis never reports it as `int`.
const FLAG_TEXT: u32 = 8;

// The arena marks its free blocks with a flag pair no entry has (`arena::FREE_MARK`, in the
// low four bits of byte 8, where an entry keeps its flags): a value is modified in place or
// written as text, not both. So the arena can walk a page block by block.
const _: () = assert!(crate::arena::FREE_MARK as u32 == FLAG_RAW | FLAG_TEXT);

/// How a value came to be, which decides the encoding Redis would report for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// Written whole by a command that lets Redis pick: `int` if it reads as one.
    #[default]
    Auto,
    /// Written whole as text: `embstr` or `raw` by length, never `int`.
    Text,
    /// Modified in place: `raw`.
    Raw,
}

/// What a key holds (Redis's object type). Stored in the wide header; narrow entries are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Kind {
    /// A string: the value is its bytes.
    #[default]
    String = 0,
    /// A hash: the value is an encoded hash (see `crate::value`).
    Hash = 1,
}

impl Kind {
    /// Redis's name for the type (`TYPE`, `SCAN ... TYPE`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
        }
    }

    fn from_u8(byte: u8) -> Kind {
        match byte {
            1 => Kind::Hash,
            _ => Kind::String,
        }
    }
}

/// Bits of the access clock (seconds); it wraps after about 12 days.
pub const CLOCK_BITS: u32 = 20;
/// Mask of the access clock.
pub const CLOCK_MASK: u32 = (1 << CLOCK_BITS) - 1;

/// The shape of an entry: what its blob's size depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Key length.
    pub klen: usize,
    /// Value length.
    pub vlen: usize,
    /// Whether the entry has a TTL section.
    pub ttl: bool,
    /// What the value is.
    pub kind: Kind,
}

impl Shape {
    /// Whether the entry needs the wide header: long lengths, or a value that is not a string.
    #[inline]
    pub fn is_wide(&self) -> bool {
        self.klen > u8::MAX as usize || self.vlen > u16::MAX as usize || self.kind != Kind::String
    }

    #[inline]
    fn header(&self) -> usize {
        if self.is_wide() {
            WIDE_HEADER
        } else {
            NARROW_HEADER
        }
    }

    /// The blob's length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.header() + if self.ttl { TTL_SECTION } else { 0 } + self.klen + self.vlen
    }
}

/// A view of one entry's blob. Copyable and unchecked: whoever holds one must know the blob is
/// alive (not freed or moved) for as long as the view and any slice it hands out are used.
#[derive(Debug, Clone, Copy)]
pub struct Blob {
    ptr: *mut u8,
}

impl Blob {
    /// A view of the blob at `ptr`.
    ///
    /// # Safety
    /// `ptr` must point to a live blob initialised by [`Blob::init`] (or be about to be
    /// initialised by it), and the blob must outlive every use of the view.
    #[inline]
    pub unsafe fn at(ptr: *mut u8) -> Blob {
        Blob { ptr }
    }

    /// Writes a new entry's header, key and value; links and expiry start as NIL / 0.
    pub fn init(self, shape: Shape, key: &[u8], value: &[u8], clock: u32) {
        debug_assert_eq!((key.len(), value.len()), (shape.klen, shape.vlen));
        let mut flags = 0;
        if shape.ttl {
            flags |= FLAG_TTL;
        }
        if shape.is_wide() {
            flags |= FLAG_WIDE;
            self.write_u32(12, key.len() as u32);
            self.write_u32(16, value.len() as u32);
            self.write_u8(11, shape.kind as u8);
        } else {
            self.write_u8(11, key.len() as u8);
            self.write_u16(12, value.len() as u16);
        }
        self.set_prev(Ref::NIL);
        self.set_next(Ref::NIL);
        self.write_meta(flags, clock);
        if shape.ttl {
            self.write_u64(shape.header(), 0);
            self.set_vprev(Ref::NIL);
            self.set_vnext(Ref::NIL);
        }
        // SAFETY: the blob was allocated with `shape.len()` bytes, so key and value fit, and
        // `key`/`value` are caller slices that cannot overlap a blob being initialised.
        unsafe {
            std::ptr::copy_nonoverlapping(key.as_ptr(), self.key_ptr(), key.len());
            std::ptr::copy_nonoverlapping(value.as_ptr(), self.value_ptr(), value.len());
        }
    }

    /// The entry's shape.
    #[inline]
    pub fn shape(self) -> Shape {
        Shape {
            klen: self.klen(),
            vlen: self.vlen(),
            ttl: self.flags() & FLAG_TTL != 0,
            kind: self.kind(),
        }
    }

    /// What the value is.
    #[inline]
    pub fn kind(self) -> Kind {
        if self.flags() & FLAG_WIDE != 0 {
            Kind::from_u8(self.read_u8(11))
        } else {
            Kind::String
        }
    }

    /// The blob's length.
    #[inline]
    pub fn len(self) -> usize {
        self.shape().len()
    }

    /// LRU neighbour towards the head (more recently used).
    #[inline]
    pub fn prev(self) -> Ref {
        Ref(self.read_u32(0))
    }

    /// LRU neighbour towards the tail (less recently used).
    #[inline]
    pub fn next(self) -> Ref {
        Ref(self.read_u32(4))
    }

    /// Sets the LRU neighbour towards the head.
    #[inline]
    pub fn set_prev(self, r: Ref) {
        self.write_u32(0, r.0)
    }

    /// Sets the LRU neighbour towards the tail.
    #[inline]
    pub fn set_next(self, r: Ref) {
        self.write_u32(4, r.0)
    }

    /// Whether the entry has an expiry.
    #[inline]
    pub fn has_ttl(self) -> bool {
        self.flags() & FLAG_TTL != 0
    }

    /// How the value came to be.
    #[inline]
    pub fn form(self) -> Form {
        let flags = self.flags();
        if flags & FLAG_RAW != 0 {
            Form::Raw
        } else if flags & FLAG_TEXT != 0 {
            Form::Text
        } else {
            Form::Auto
        }
    }

    /// Records how the value came to be.
    pub fn set_form(self, form: Form) {
        let base = self.flags() & !(FLAG_RAW | FLAG_TEXT);
        let flags = match form {
            Form::Auto => base,
            Form::Text => base | FLAG_TEXT,
            Form::Raw => base | FLAG_RAW,
        };
        self.write_meta(flags, self.clock());
    }

    /// The access clock (seconds, [`CLOCK_BITS`] wide) of the last read or write.
    #[inline]
    pub fn clock(self) -> u32 {
        self.read_meta() >> 4
    }

    /// Sets the access clock.
    #[inline]
    pub fn set_clock(self, clock: u32) {
        self.write_meta(self.flags(), clock);
    }

    /// Absolute expiry in Unix milliseconds; only meaningful when [`has_ttl`](Self::has_ttl).
    #[inline]
    pub fn expiry(self) -> u64 {
        self.read_u64(self.header_len())
    }

    /// Sets the expiry; the entry must have a TTL section.
    #[inline]
    pub fn set_expiry(self, at_ms: u64) {
        debug_assert!(self.has_ttl());
        self.write_u64(self.header_len(), at_ms)
    }

    /// Volatile-list neighbour towards the head; the entry must have a TTL section.
    #[inline]
    pub fn vprev(self) -> Ref {
        Ref(self.read_u32(self.header_len() + 8))
    }

    /// Volatile-list neighbour towards the tail; the entry must have a TTL section.
    #[inline]
    pub fn vnext(self) -> Ref {
        Ref(self.read_u32(self.header_len() + 12))
    }

    /// Sets the volatile-list neighbour towards the head.
    #[inline]
    pub fn set_vprev(self, r: Ref) {
        self.write_u32(self.header_len() + 8, r.0)
    }

    /// Sets the volatile-list neighbour towards the tail.
    #[inline]
    pub fn set_vnext(self, r: Ref) {
        self.write_u32(self.header_len() + 12, r.0)
    }

    /// The key. The slice is valid while the blob is (see the type's contract).
    #[inline]
    pub fn key<'a>(self) -> &'a [u8] {
        // SAFETY: the blob is live and holds `klen` key bytes at `key_ptr`.
        unsafe { std::slice::from_raw_parts(self.key_ptr(), self.klen()) }
    }

    /// The value. The slice is valid while the blob is (see the type's contract).
    #[inline]
    pub fn value<'a>(self) -> &'a [u8] {
        // SAFETY: the blob is live and holds `vlen` value bytes at `value_ptr`.
        unsafe { std::slice::from_raw_parts(self.value_ptr(), self.vlen()) }
    }

    /// The value, writable (for in-place updates that keep its length).
    #[inline]
    pub fn value_mut<'a>(self) -> &'a mut [u8] {
        // SAFETY: as in `value`; the shard's `&mut` access makes this the only live view.
        unsafe { std::slice::from_raw_parts_mut(self.value_ptr(), self.vlen()) }
    }

    /// Changes the stored value length of a blob whose block already has room for `vlen`
    /// bytes and whose shape stays the same width.
    pub fn set_vlen(self, vlen: usize) {
        if self.flags() & FLAG_WIDE != 0 {
            self.write_u32(16, vlen as u32);
        } else {
            debug_assert!(vlen <= u16::MAX as usize);
            self.write_u16(12, vlen as u16);
        }
    }

    #[inline]
    fn header_len(self) -> usize {
        if self.flags() & FLAG_WIDE != 0 {
            WIDE_HEADER
        } else {
            NARROW_HEADER
        }
    }

    #[inline]
    fn klen(self) -> usize {
        if self.flags() & FLAG_WIDE != 0 {
            self.read_u32(12) as usize
        } else {
            self.read_u8(11) as usize
        }
    }

    #[inline]
    fn vlen(self) -> usize {
        if self.flags() & FLAG_WIDE != 0 {
            self.read_u32(16) as usize
        } else {
            self.read_u16(12) as usize
        }
    }

    #[inline]
    fn key_ptr(self) -> *mut u8 {
        let ttl = if self.has_ttl() { TTL_SECTION } else { 0 };
        // SAFETY: the key starts inside the blob, after the header and TTL section.
        unsafe { self.ptr.add(self.header_len() + ttl) }
    }

    #[inline]
    fn value_ptr(self) -> *mut u8 {
        // SAFETY: the value follows the key inside the blob.
        unsafe { self.key_ptr().add(self.klen()) }
    }

    #[inline]
    fn flags(self) -> u32 {
        self.read_meta() & 0xF
    }

    #[inline]
    fn read_meta(self) -> u32 {
        u32::from(self.read_u8(8))
            | u32::from(self.read_u8(9)) << 8
            | u32::from(self.read_u8(10)) << 16
    }

    #[inline]
    fn write_meta(self, flags: u32, clock: u32) {
        // The pair is the arena's mark of a free block (see above).
        debug_assert!(flags & (FLAG_RAW | FLAG_TEXT) != FLAG_RAW | FLAG_TEXT);
        let meta = (flags & 0xF) | (clock & CLOCK_MASK) << 4;
        self.write_u8(8, meta as u8);
        self.write_u8(9, (meta >> 8) as u8);
        self.write_u8(10, (meta >> 16) as u8);
    }

    #[inline]
    fn read_u8(self, at: usize) -> u8 {
        // SAFETY: every offset used is inside the blob's header (see the layout above).
        unsafe { self.ptr.add(at).read() }
    }

    #[inline]
    fn write_u8(self, at: usize, v: u8) {
        // SAFETY: as in `read_u8`.
        unsafe { self.ptr.add(at).write(v) }
    }

    #[inline]
    fn read_u16(self, at: usize) -> u16 {
        // SAFETY: as in `read_u8`; the read is unaligned.
        unsafe { self.ptr.add(at).cast::<u16>().read_unaligned() }
    }

    #[inline]
    fn write_u16(self, at: usize, v: u16) {
        // SAFETY: as in `read_u16`.
        unsafe { self.ptr.add(at).cast::<u16>().write_unaligned(v) }
    }

    #[inline]
    fn read_u32(self, at: usize) -> u32 {
        // SAFETY: as in `read_u8`; the read is unaligned.
        unsafe { self.ptr.add(at).cast::<u32>().read_unaligned() }
    }

    #[inline]
    fn write_u32(self, at: usize, v: u32) {
        // SAFETY: as in `read_u32`.
        unsafe { self.ptr.add(at).cast::<u32>().write_unaligned(v) }
    }

    #[inline]
    fn read_u64(self, at: usize) -> u64 {
        // SAFETY: as in `read_u8`; the read is unaligned.
        unsafe { self.ptr.add(at).cast::<u64>().read_unaligned() }
    }

    #[inline]
    fn write_u64(self, at: usize, v: u64) {
        // SAFETY: as in `read_u64`.
        unsafe { self.ptr.add(at).cast::<u64>().write_unaligned(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_blob(shape: Shape, key: &[u8], value: &[u8], f: impl FnOnce(Blob)) {
        let mut mem = vec![0u8; shape.len()];
        // SAFETY: `mem` is `shape.len()` bytes and outlives the view.
        let blob = unsafe { Blob::at(mem.as_mut_ptr()) };
        blob.init(shape, key, value, 12345);
        f(blob);
    }

    #[test]
    fn a_typical_entry_is_130_bytes() {
        assert_eq!(
            Shape {
                klen: 16,
                vlen: 100,
                ttl: false,
                kind: Kind::String,
            }
            .len(),
            130
        );
        assert_eq!(
            Shape {
                klen: 16,
                vlen: 100,
                ttl: true,
                kind: Kind::String,
            }
            .len(),
            146
        );
        assert_eq!(
            Shape {
                klen: 300,
                vlen: 10,
                ttl: false,
                kind: Kind::String,
            }
            .len(),
            330
        );
    }

    #[test]
    fn narrow_entries_round_trip() {
        let shape = Shape {
            klen: 3,
            vlen: 5,
            ttl: true,
            kind: Kind::String,
        };
        with_blob(shape, b"key", b"value", |b| {
            assert_eq!(b.shape(), shape);
            assert_eq!((b.key(), b.value()), (&b"key"[..], &b"value"[..]));
            assert_eq!(b.clock(), 12345);
            assert!(b.prev().is_nil() && b.next().is_nil() && b.vprev().is_nil());
            b.set_expiry(1_700_000_000_123);
            b.set_prev(Ref(7));
            b.set_vnext(Ref(9));
            b.set_clock(CLOCK_MASK);
            b.set_form(Form::Raw);
            assert_eq!(b.expiry(), 1_700_000_000_123);
            assert_eq!(
                (b.prev(), b.vnext(), b.clock()),
                (Ref(7), Ref(9), CLOCK_MASK)
            );
            assert!(b.form() == Form::Raw && b.has_ttl());
            b.set_form(Form::Text);
            assert!(b.form() == Form::Text && b.has_ttl());
            assert_eq!(b.key(), b"key");
        });
    }

    #[test]
    fn other_kinds_are_wide_and_keep_their_kind() {
        let shape = Shape {
            klen: 3,
            vlen: 4,
            ttl: true,
            kind: Kind::Hash,
        };
        assert!(shape.is_wide());
        assert_eq!(shape.len(), 20 + 16 + 7);
        with_blob(shape, b"key", b"\0abc", |b| {
            assert_eq!(b.shape(), shape);
            assert_eq!(b.kind(), Kind::Hash);
            assert_eq!(b.value(), b"\0abc");
        });
        let string = Shape {
            kind: Kind::String,
            ..shape
        };
        with_blob(string, b"key", b"abcd", |b| {
            assert_eq!(b.kind(), Kind::String);
            assert_eq!(b.value(), b"abcd");
        });
    }

    #[test]
    fn wide_entries_hold_long_keys_and_values() {
        let key = vec![b'k'; 1000];
        let value = vec![b'v'; 70_000];
        let shape = Shape {
            klen: key.len(),
            vlen: value.len(),
            ttl: false,
            kind: Kind::String,
        };
        with_blob(shape, &key, &value, |b| {
            assert_eq!(b.shape(), shape);
            assert_eq!(b.key(), &key[..]);
            assert_eq!(b.value(), &value[..]);
            assert!(!b.has_ttl());
        });
    }
}
