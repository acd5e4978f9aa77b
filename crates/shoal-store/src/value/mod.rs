//! Values other than strings, as an entry's value bytes hold them. A key's [`Kind`] is in its
//! entry's header; what its value bytes mean depends on it:
//!
//! | kind | value bytes |
//! | --- | --- |
//! | string | the string |
//! | hash, small | the fields, encoded one after another ([`packed`], Redis's `listpack`) |
//! | hash, large | a flag byte and a pointer to a [`FieldTable`] on the heap (Redis's `hashtable`) |
//!
//! A small encoding lives in the arena like a string, so it costs no allocation and no pointer;
//! past `hash-max-listpack-entries` fields or a field or value longer than
//! `hash-max-listpack-value`, a hash moves to a table (and, as in Redis, never back). Lists,
//! sets and sorted sets fit the same pattern: a new [`Kind`], a packed encoding in the arena
//! while small, a heap structure behind a pointer past their own thresholds.
//!
//! An entry whose value points to a heap structure owns it: the shard frees it with the entry
//! and charges its bytes to the entry in `used_memory` ([`external_bytes`]).

pub mod fields;
pub mod packed;

pub use crate::entry::Kind;
pub use fields::FieldTable;
pub use packed::Field;
use packed::{Packed, TABLE};

/// The value bytes of a hash held in a table: the flag, then the table's address.
pub const TABLE_VALUE_LEN: usize = 9;

/// How a hash is encoded (`OBJECT ENCODING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashEncoding {
    /// Fields packed in the entry.
    Listpack,
    /// Fields in a table.
    Hashtable,
}

impl HashEncoding {
    /// Redis's name.
    pub fn name(self) -> &'static str {
        match self {
            HashEncoding::Listpack => "listpack",
            HashEncoding::Hashtable => "hashtable",
        }
    }
}

/// The value bytes that hand `table` to an entry (which then owns it).
pub fn table_value(table: Box<FieldTable>) -> [u8; TABLE_VALUE_LEN] {
    let mut value = [0u8; TABLE_VALUE_LEN];
    value[0] = TABLE;
    value[1..].copy_from_slice(&(Box::into_raw(table) as usize as u64).to_le_bytes());
    value
}

/// Whether a hash's value bytes point to a table.
#[inline]
pub fn is_table(value: &[u8]) -> bool {
    value.first().is_some_and(|f| f & TABLE != 0)
}

fn table_ptr(value: &[u8]) -> *mut FieldTable {
    let mut addr = [0u8; 8];
    addr.copy_from_slice(&value[1..TABLE_VALUE_LEN]);
    u64::from_le_bytes(addr) as usize as *mut FieldTable
}

/// The table a hash entry's value points to.
///
/// # Safety
/// `value` must be the value of a live hash entry for which [`is_table`] holds; the reference
/// must not outlive the entry, and the caller must hold the entry's shard exclusively while it
/// uses it mutably.
#[allow(clippy::mut_from_ref)]
pub unsafe fn table_mut<'a>(value: &[u8]) -> &'a mut FieldTable {
    // SAFETY: per the contract, the address came from `table_value` and the entry still owns
    // the table.
    unsafe { &mut *table_ptr(value) }
}

/// Frees what a value owns on the heap, if anything.
///
/// # Safety
/// `value` must be the value of an entry of `kind` that is being freed or replaced; nothing may
/// use its table afterwards.
pub unsafe fn release(kind: Kind, value: &[u8]) {
    if kind == Kind::Hash && is_table(value) {
        // SAFETY: per the contract, the entry owned the table and gives it up now.
        drop(unsafe { Box::from_raw(table_ptr(value)) });
    }
}

/// Heap bytes an entry's value owns beyond its blob (charged to it in `used_memory`).
///
/// # Safety
/// As [`table_mut`]: `value` is a live entry's of `kind`.
pub unsafe fn external_bytes(kind: Kind, value: &[u8]) -> usize {
    if kind == Kind::Hash && is_table(value) {
        // SAFETY: per the contract.
        unsafe { table_mut(value) }.bytes()
    } else {
        0
    }
}

/// A hash, read-only, in either encoding.
#[derive(Clone, Copy)]
pub enum HashRef<'a> {
    /// Packed in the entry.
    Packed(Packed<'a>),
    /// In a table.
    Table(&'a FieldTable),
}

impl<'a> HashRef<'a> {
    /// The hash held by a live hash entry's `value`.
    ///
    /// # Safety
    /// As [`table_mut`].
    pub unsafe fn of(value: &'a [u8]) -> HashRef<'a> {
        if is_table(value) {
            // SAFETY: per the contract.
            HashRef::Table(unsafe { table_mut(value) })
        } else {
            HashRef::Packed(Packed::new(value))
        }
    }

    /// The encoding.
    pub fn encoding(self) -> HashEncoding {
        match self {
            HashRef::Packed(_) => HashEncoding::Listpack,
            HashRef::Table(_) => HashEncoding::Hashtable,
        }
    }

    /// Number of fields.
    pub fn len(self) -> usize {
        match self {
            HashRef::Packed(p) => p.len(),
            HashRef::Table(t) => t.len(),
        }
    }

    /// Whether there are no fields.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// The field called `name`.
    pub fn get(self, name: &[u8]) -> Option<Field<'a>> {
        match self {
            HashRef::Packed(p) => p.find(name).map(|(_, _, f)| f),
            HashRef::Table(t) => t.get(name),
        }
    }

    /// Calls `f` with every field, in the encoding's order (insertion order when packed).
    pub fn for_each(self, mut f: impl FnMut(Field<'a>)) {
        match self {
            HashRef::Packed(p) => p.iter().for_each(f),
            HashRef::Table(t) => t.iter().for_each(&mut f),
        }
    }

    /// The field at position `i` of [`for_each`](Self::for_each)'s order.
    pub fn nth(self, i: usize) -> Option<Field<'a>> {
        match self {
            HashRef::Packed(p) => p.iter().nth(i),
            HashRef::Table(t) => t.nth(i),
        }
    }

    /// The earliest field expiry.
    pub fn min_expiry(self) -> Option<u64> {
        match self {
            HashRef::Packed(p) => p.min_expiry(),
            HashRef::Table(t) => t.min_expiry(),
        }
    }

    /// One step of `HSCAN` from `cursor`; returns the next cursor (0 when done). A packed hash
    /// is returned whole, with cursor 0, as Redis does for a listpack.
    pub fn scan(self, cursor: u64, count: usize, f: impl FnMut(Field<'a>)) -> u64 {
        match self {
            HashRef::Packed(p) => {
                p.iter().for_each(f);
                0
            }
            HashRef::Table(t) => t.scan(cursor, count, f),
        }
    }

    /// The whole-state payload (a packed encoding of every field) in `out`, or the bytes to
    /// send directly.
    pub fn payload<'o>(self, out: &'o mut Vec<u8>, value: &'o [u8]) -> &'o [u8] {
        match self {
            HashRef::Packed(_) => value,
            HashRef::Table(t) => {
                t.encode(out);
                out
            }
        }
    }
}

/// Whether a value of `kind` owns heap memory (a hash in a table).
#[inline]
pub fn owns_heap(kind: Kind, value: &[u8]) -> bool {
    kind == Kind::Hash && is_table(value)
}

/// Calls `f` with the whole-state payload of a live entry's value of `kind` (not a string):
/// the value itself when packed, else its encoding, made in a scratch buffer.
pub fn with_payload<R>(kind: Kind, value: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    debug_assert_eq!(kind, Kind::Hash);
    if !is_table(value) {
        return f(value);
    }
    let mut out = Vec::new();
    // SAFETY: callers pass the value of a live entry of a locked shard.
    let hash = unsafe { HashRef::of(value) };
    f(hash.payload(&mut out, value))
}
