//! Hashes: reading and writing a hash's fields (`HSET`, `HGET`, `HDEL`, `HINCRBY`, `HSCAN`,
//! `HEXPIRE`...), in either encoding, with fields that expire.
//!
//! A write works on the hash where it lives: a packed hash is edited in a scratch copy and
//! written back into its entry (converted to a table first when it outgrows
//! `hash-max-listpack-entries` / `hash-max-listpack-value`), a table in place, its byte count
//! kept in step with `used_memory`. Each field written or removed is reported to the journal as
//! it happens (`put_field`, `delete_field`); a hash left without fields is deleted.
//!
//! Field expiry follows key expiry: a field is alive while `now <= expiry`; every access to a
//! hash whose earliest field expiry has passed first removes its expired fields (reported as
//! deletions, and to [`KeyEvents::on_fields_expired`](crate::KeyEvents::on_fields_expired)),
//! and the active expiry cycle does the same for hashes nobody reads (see `maintenance`).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::arena::Ref;
use crate::entry::Kind;
use crate::error::StoreError;
use crate::events::Journal;
use crate::shard::{Now, Report, Shard, Stamp};
use crate::value::packed::{self, Packed, PackedMut};
use crate::value::{self, Field, FieldTable, HashRef};

use super::Store;

/// Default `hash-max-listpack-entries` (Redis 7's): a hash with more fields is held in a table.
pub const DEFAULT_MAX_PACKED_ENTRIES: usize = 512;
/// Default `hash-max-listpack-value`: a hash with a longer field or value is held in a table.
pub const DEFAULT_MAX_PACKED_VALUE: usize = 64;

thread_local! {
    /// Where a packed hash is edited (kept: no allocation per write).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A hash being written, in either encoding. Every change is reported to the journal as it
/// is made.
pub struct HashWrite<'a> {
    body: Body<'a>,
    key: &'a [u8],
    journal: Option<Arc<dyn Journal>>,
    changed: bool,
    /// A field or value longer than a packed hash may hold was written.
    too_long: bool,
    max_value: usize,
    now: u64,
}

enum Body<'a> {
    Packed(PackedMut<'a>),
    Table(&'a mut FieldTable),
}

impl HashWrite<'_> {
    /// The hash as it is now.
    pub fn view(&self) -> HashRef<'_> {
        match &self.body {
            Body::Packed(p) => HashRef::Packed(p.view()),
            Body::Table(t) => HashRef::Table(t),
        }
    }

    /// The field called `name`.
    pub fn get(&self, name: &[u8]) -> Option<Field<'_>> {
        self.view().get(name)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the hash has no fields (it is deleted if it stays so).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The time the operation runs at (Unix ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Sets a field to `value`, expiring at `expiry` or never. Returns whether it is new.
    pub fn set(&mut self, name: &[u8], value: &[u8], expiry: Option<u64>) -> bool {
        self.changed = true;
        if name.len() > self.max_value || value.len() > self.max_value {
            self.too_long = true;
        }
        if let Some(journal) = &self.journal {
            journal.put_field(self.key, name, value, expiry);
        }
        match &mut self.body {
            Body::Packed(p) => p.set(name, value, expiry),
            Body::Table(t) => t.set(name, value, expiry),
        }
    }

    /// Changes a field's expiry, keeping its value; false if there is no such field.
    pub fn set_expiry(&mut self, name: &[u8], expiry: Option<u64>) -> bool {
        let Some(field) = self.get(name) else {
            return false;
        };
        if field.expiry == expiry {
            return true;
        }
        let value = field.value.to_vec();
        self.set(name, &value, expiry);
        true
    }

    /// Removes a field; returns whether it was there.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let removed = match &mut self.body {
            Body::Packed(p) => p.remove(name),
            Body::Table(t) => t.remove(name),
        };
        if removed {
            self.changed = true;
            if let Some(journal) = &self.journal {
                journal.delete_field(self.key, name);
            }
        }
        removed
    }
}

/// What a write found under the key.
pub enum HashSlot<'w, 'a> {
    /// The hash (created empty if the write may create it).
    Hash(&'w mut HashWrite<'a>),
    /// No hash, and the write does not create one.
    Absent,
}

impl Store {
    /// The packed-hash limits: (`hash-max-listpack-entries`, `hash-max-listpack-value`).
    pub(super) fn hash_limits(&self) -> (usize, usize) {
        (
            self.hash_max_entries.load(Relaxed),
            self.hash_max_value.load(Relaxed),
        )
    }

    /// Sets `hash-max-listpack-entries` and `hash-max-listpack-value`: hashes that outgrow
    /// them from now on move to a table (hashes in a table stay there, as in Redis).
    pub fn set_hash_limits(&self, max_entries: usize, max_value: usize) {
        self.hash_max_entries.store(max_entries, Relaxed);
        self.hash_max_value.store(max_value, Relaxed);
    }

    /// Reads a hash: `f` gets it (`None` if the key is absent), after its expired fields are
    /// removed. Counts a hit or miss and marks the key used. [`StoreError::WrongType`] if the
    /// key holds another type.
    pub fn hash_read<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<HashRef<'_>>) -> R,
    ) -> Result<R, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = live_hash(shard, hash, key, now)?;
            shard.count_read(found.is_some());
            let Some((_, r)) = found else {
                return Ok(f(None));
            };
            shard.touch(r, clock);
            // SAFETY: a live hash entry of the locked shard, read while it is locked.
            Ok(f(Some(unsafe { HashRef::of(shard.blob(r).value()) })))
        })
    }

    /// Writes a hash: `f` gets it, created empty if the key is absent and `create` is set
    /// (kept only if `f` gives it a field), after its expired fields are removed. Changes are
    /// reported as `f` makes them; the key is marked used. A hash `f` leaves without fields is
    /// deleted. [`StoreError::WrongType`] if the key holds another type.
    pub fn hash_write<R>(
        &self,
        key: &[u8],
        create: bool,
        f: impl FnOnce(HashSlot<'_, '_>) -> R,
    ) -> Result<R, StoreError> {
        let clock = self.clock_now();
        let max_entries = self.hash_max_entries.load(Relaxed);
        let max_value = self.hash_max_value.load(Relaxed);
        self.with_shard(key, |shard, hash, now| {
            let found = live_hash(shard, hash, key, now)?;
            if found.is_none() && !create {
                return Ok(f(HashSlot::Absent));
            }
            let now = now.get();
            let journal = shard.journal().cloned();
            let value = found.map(|(_, r)| shard.blob(r).value());
            if let Some(value) = value.filter(|v| value::is_table(v)) {
                // SAFETY: a live hash entry of the locked shard; the table is used only here,
                // while the shard is locked, and the entry stays until the write is settled.
                let table = unsafe { value::table_mut(value) };
                let before = table.bytes();
                let mut write = HashWrite {
                    body: Body::Table(table),
                    key,
                    journal,
                    changed: false,
                    too_long: false,
                    max_value,
                    now,
                };
                let result = f(HashSlot::Hash(&mut write));
                let (empty, after) = (write.is_empty(), write.view_bytes());
                let (slot, r) = found.expect("a table is an existing hash");
                shard.used = shard.used + after - before;
                if empty {
                    shard.remove_at(hash, slot, r, None);
                } else {
                    shard.touch(r, clock);
                    note_field_expiry(shard, r);
                }
                return Ok(result);
            }
            SCRATCH.with_borrow_mut(|scratch| {
                scratch.clear();
                scratch.extend_from_slice(value.unwrap_or_default());
                let mut write = HashWrite {
                    body: Body::Packed(PackedMut::new(scratch)),
                    key,
                    journal,
                    changed: false,
                    too_long: false,
                    max_value,
                    now,
                };
                let result = f(HashSlot::Hash(&mut write));
                let (changed, too_long) = (write.changed, write.too_long);
                drop(write);
                if changed {
                    store_packed(
                        shard,
                        hash,
                        key,
                        found,
                        scratch,
                        too_long,
                        max_entries,
                        clock,
                    )?;
                } else if let Some((_, r)) = found {
                    shard.touch(r, clock);
                }
                if scratch.capacity() > 1 << 16 {
                    *scratch = Vec::new();
                }
                Ok(result)
            })
        })
    }

    /// Makes `key` hold the value of `kind` whose whole state is `payload` (as a
    /// [`Journal::put_value`] reports it), expiring at `expiry` (kept through its millisecond,
    /// as [`Store::restore`]): what a replica does with such a report or snapshot entry.
    /// A payload that is not well formed changes nothing and is refused (`WrongType`).
    pub fn restore_value(
        &self,
        key: &[u8],
        kind: Kind,
        payload: &[u8],
        expiry: Option<u64>,
    ) -> Result<(), StoreError> {
        if kind != Kind::Hash || !packed::validate(payload) {
            return Err(StoreError::WrongType);
        }
        let clock = self.clock_now();
        let max_entries = self.hash_max_entries.load(Relaxed);
        let max_value = self.hash_max_value.load(Relaxed);
        self.with_shard(key, |shard, hash, now| {
            let existing = shard.live(hash, key, now);
            if expiry.is_some_and(|at| now.get() > at) {
                if let Some((slot, r)) = existing {
                    shard.remove_at(hash, slot, r, None);
                }
                return Ok(());
            }
            let limits = (max_entries, max_value);
            let r = write_whole_hash(
                shard, hash, key, existing, payload, false, limits, expiry, clock,
            )?;
            shard.touch(r, clock);
            Ok(())
        })
    }

    /// Makes field `field` of the hash `key` hold `value` with `expiry`, or (`None`) removes
    /// it: what a replica does with a [`Journal::put_field`] or [`Journal::delete_field`]. A
    /// key holding another type is replaced by a new hash.
    pub fn restore_field(
        &self,
        key: &[u8],
        field: &[u8],
        state: Option<(&[u8], Option<u64>)>,
    ) -> Result<(), StoreError> {
        if self.kind_of(key).is_some_and(|k| k != Kind::Hash) {
            self.remove(key);
        }
        self.hash_write(key, state.is_some(), |slot| {
            if let HashSlot::Hash(h) = slot {
                match state {
                    Some((value, expiry)) => {
                        h.set(field, value, expiry);
                    }
                    None => {
                        h.remove(field);
                    }
                }
            }
        })
    }

    /// Sets the expiry of `key` to exactly `expiry` (deleting it only once `now > expiry`, as
    /// [`Store::restore`]): what a replica does with a [`Journal::set_expiry`].
    pub fn restore_expiry(&self, key: &[u8], expiry: Option<u64>) -> Result<(), StoreError> {
        self.with_shard(key, |shard, hash, now| {
            let Some((slot, r)) = shard.live(hash, key, now) else {
                return Ok(());
            };
            if expiry.is_some_and(|at| now.get() > at) {
                shard.remove_at(hash, slot, r, None);
            } else {
                shard.set_expiry(slot, r, expiry)?;
            }
            Ok(())
        })
    }

    /// What `key` holds (`TYPE`), without marking it used; counts a hit or miss.
    pub fn kind_of(&self, key: &[u8]) -> Option<Kind> {
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            found.map(|(_, r)| shard.blob(r).kind())
        })
    }
}

impl HashWrite<'_> {
    fn view_bytes(&self) -> usize {
        match &self.body {
            Body::Packed(p) => p.bytes().len(),
            Body::Table(t) => t.bytes(),
        }
    }
}

/// Whether a packed hash must move to a table.
fn exceeds(p: Packed<'_>, max_entries: usize, max_value: usize) -> bool {
    let mut count = 0;
    for f in p.iter() {
        count += 1;
        if count > max_entries || f.name.len() > max_value || f.value.len() > max_value {
            return true;
        }
    }
    false
}

/// Writes the hash whose whole state is `payload` under `key`, replacing what `existing` is
/// (of any type), with `expiry`, and reports it whole. It is held in a table if `as_table` or
/// if it exceeds the packed `limits` (entries, value length), else packed.
#[allow(clippy::too_many_arguments)]
pub(super) fn write_whole_hash(
    shard: &mut Shard,
    hash: u64,
    key: &[u8],
    existing: Option<(usize, Ref)>,
    payload: &[u8],
    as_table: bool,
    limits: (usize, usize),
    expiry: Option<u64>,
    clock: Stamp,
) -> Result<Ref, StoreError> {
    let p = Packed::new(payload);
    let table = (as_table || exceeds(p, limits.0, limits.1))
        .then(|| value::table_value(Box::new(FieldTable::from_packed(p, shard.hasher().clone()))));
    let value = table.as_ref().map_or(payload, |t| &t[..]);
    let written = match existing {
        Some((slot, r)) => shard.rewrite(slot, r, Some((Kind::Hash, value)), expiry, Report::Put),
        None => shard.insert_kind(hash, key, Kind::Hash, value, expiry, clock, Report::Put),
    };
    if let Ok(r) = written {
        note_field_expiry(shard, r);
    }
    written.map_err(|e| {
        if let Some(t) = table {
            // SAFETY: the entry never took the table: it is still ours to free.
            unsafe { value::release(Kind::Hash, &t) };
        }
        e.into()
    })
}

/// Stores an edited packed hash back under `key`: converted to a table if it outgrew the
/// packed limits, deleted if it has no field left, created if it is new.
#[allow(clippy::too_many_arguments)]
fn store_packed(
    shard: &mut Shard,
    hash: u64,
    key: &[u8],
    found: Option<(usize, Ref)>,
    scratch: &[u8],
    too_long: bool,
    max_entries: usize,
    clock: Stamp,
) -> Result<(), StoreError> {
    let p = Packed::new(scratch);
    let count = p.len();
    if count == 0 {
        if let Some((slot, r)) = found {
            shard.remove_at(hash, slot, r, None);
        }
        return Ok(());
    }
    let table = (too_long || count > max_entries)
        .then(|| value::table_value(Box::new(FieldTable::from_packed(p, shard.hasher().clone()))));
    let value = table.as_ref().map_or(scratch, |t| &t[..]);
    let written = match found {
        Some((slot, r)) => {
            let b = shard.blob(r);
            let expiry = b.has_ttl().then(|| b.expiry());
            shard.rewrite(slot, r, Some((Kind::Hash, value)), expiry, Report::Quiet)
        }
        None => shard.insert_kind(hash, key, Kind::Hash, value, None, clock, Report::Quiet),
    };
    match written {
        Ok(r) => {
            // A new hash is stamped by its insert (under LFU: a new key's counter, as Redis's).
            if found.is_some() {
                shard.touch(r, clock);
            }
            note_field_expiry(shard, r);
            Ok(())
        }
        Err(e) => {
            if let Some(t) = table {
                // SAFETY: the entry never took the table: it is still ours to free.
                unsafe { value::release(Kind::Hash, &t) };
            }
            Err(e.into())
        }
    }
}

/// The live hash entry of `key` with its expired fields removed: `Ok(None)` if the key is
/// absent (or its last field just expired), `WrongType` if it holds another type.
fn live_hash(
    shard: &mut Shard,
    hash: u64,
    key: &[u8],
    now: &mut Now,
) -> Result<Option<(usize, Ref)>, StoreError> {
    let Some((slot, r)) = shard.live(hash, key, now) else {
        return Ok(None);
    };
    let b = shard.blob(r);
    if b.kind() != Kind::Hash {
        return Err(StoreError::WrongType);
    }
    // SAFETY: a live hash entry of the locked shard.
    let min = unsafe { HashRef::of(b.value()) }.min_expiry();
    if min.is_some_and(|at| now.get() > at) {
        return Ok(purge_fields(shard, hash, slot, r, now.get()));
    }
    Ok(Some((slot, r)))
}

/// Removes the expired fields of the hash entry `r` (in `slot`, its key hashing to `hash`),
/// reporting each to the journal and the reclaim to the events observer; deletes the hash if
/// none is left. Returns where the entry is now (`None`: deleted).
pub(crate) fn purge_fields(
    shard: &mut Shard,
    hash: u64,
    slot: usize,
    r: Ref,
    now: u64,
) -> Option<(usize, Ref)> {
    let b = shard.blob(r);
    let key = b.key();
    let journal = shard.journal().cloned();
    let report = |name: &[u8]| {
        if let Some(journal) = &journal {
            journal.delete_field(key, name);
        }
    };
    let (removed, left, r) = if value::is_table(b.value()) {
        // SAFETY: a live hash entry of the locked shard.
        let table = unsafe { value::table_mut(b.value()) };
        let before = table.bytes();
        let removed = table.purge(now, report);
        shard.used = shard.used + table.bytes() - before;
        (removed, table.len(), r)
    } else {
        let result = SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            scratch.extend_from_slice(b.value());
            let mut p = PackedMut::new(scratch);
            let removed = p.purge(now, report);
            let left = p.view().len();
            if removed == 0 || left == 0 {
                return Ok((removed, left, r));
            }
            let expiry = b.has_ttl().then(|| b.expiry());
            shard
                .rewrite(slot, r, Some((Kind::Hash, scratch)), expiry, Report::Quiet)
                .map(|r| (removed, left, r))
        });
        // Out of address space while shrinking: the fields stay until the next try.
        result.ok()?
    };
    if removed > 0 {
        shard.stats.expired_fields += removed as u64;
        if let Some(events) = shard.events() {
            events.on_fields_expired(shard.blob(r).key(), left == 0);
        }
    }
    if left == 0 {
        shard.remove_at(hash, slot, r, None);
        return None;
    }
    Some((slot, r))
}

/// Registers the hash entry `r` for the active expiry cycle if any of its fields expires.
fn note_field_expiry(shard: &mut Shard, r: Ref) {
    let b = shard.blob(r);
    // SAFETY: a live hash entry of the locked shard.
    if unsafe { HashRef::of(b.value()) }.min_expiry().is_some()
        && !shard.field_expiring.contains(b.key())
    {
        shard.field_expiring.insert(b.key().into());
    }
}

/// One step of the active expiry of fields in one shard: visits up to `limit` registered
/// hashes from where the last step stopped, removing their expired fields (and a hash left
/// without fields), and forgets keys that no longer hold a hash with expiring fields.
/// Returns (hashes visited, hashes that had expired fields).
pub(crate) fn expire_fields_step(shard: &mut Shard, now: u64, limit: usize) -> (usize, usize) {
    let (mut visited, mut reclaimed) = (0, 0);
    while visited < limit {
        let next = match shard.field_cursor.take() {
            Some(after) => shard
                .field_expiring
                .range::<[u8], _>((
                    std::ops::Bound::Excluded(&*after),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .cloned(),
            None if visited > 0 => break, // one lap per step at most
            None => shard.field_expiring.first().cloned(),
        };
        let Some(key) = next else {
            break;
        };
        visited += 1;
        let hash = shard.hasher().hash(&key);
        let mut keep = false;
        if let Some((slot, r)) = shard.find(hash, &key) {
            let b = shard.blob(r);
            // SAFETY: a live entry of the locked shard, read as a hash only if it is one.
            let min = (b.kind() == Kind::Hash)
                .then(|| unsafe { HashRef::of(b.value()) }.min_expiry())
                .flatten();
            keep = min.is_some();
            if min.is_some_and(|at| now > at) {
                reclaimed += 1;
                keep = purge_fields(shard, hash, slot, r, now).is_some_and(|(_, r)| {
                    // SAFETY: as above: the entry is still a live hash.
                    unsafe { HashRef::of(shard.blob(r).value()) }
                        .min_expiry()
                        .is_some()
                });
            }
        }
        if !keep {
            shard.field_expiring.remove(&key);
        }
        shard.field_cursor = Some(key);
    }
    (visited, reclaimed)
}
