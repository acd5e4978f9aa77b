//! Keys: deleting, counting, expiring, renaming, copying, describing and walking them (`DEL`,
//! `EXISTS`, `TOUCH`, `EXPIRE`, `PERSIST`, `TTL`, `OBJECT`, `MEMORY USAGE`, `RENAME`, `COPY`,
//! `KEYS`, `SCAN`, `RANDOMKEY`).

use crate::arena::Ref;
use crate::entry::{Blob, CLOCK_MASK, Form, Kind};
use crate::error::StoreError;
use crate::hash::random_seed;
use crate::shard::Now;
use crate::table::END;
use crate::value::{self, HashRef};

use super::Store;

/// The `NX`/`XX`/`GT`/`LT` conditions of `EXPIRE` and friends (Redis 7 semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// Only if the key has no expiry.
    pub nx: bool,
    /// Only if the key has an expiry.
    pub xx: bool,
    /// Only if the new expiry is later than the current one (no expiry counts as infinite).
    pub gt: bool,
    /// Only if the new expiry is earlier than the current one (no expiry counts as infinite).
    pub lt: bool,
}

/// What an `EXPIRE` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireOutcome {
    /// The key does not exist.
    NoKey,
    /// A condition was not met; nothing changed.
    NotApplied,
    /// The expiry was set.
    Applied,
    /// The time was not in the future, so the key was deleted.
    Deleted,
}

/// The expiry state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTtl {
    /// No such key.
    NoKey,
    /// The key never expires.
    Persistent,
    /// The key expires at this Unix time in ms.
    ExpiresAt(u64),
}

/// How Redis would encode a value (`OBJECT ENCODING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A canonical 64-bit integer of at most 20 characters.
    Int,
    /// A string of at most 44 bytes never modified in place.
    Embstr,
    /// Any other string.
    Raw,
    /// A small hash, its fields packed in the entry.
    Listpack,
    /// A hash in a table of its own.
    Hashtable,
}

impl Encoding {
    /// Redis's name for the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Int => "int",
            Encoding::Embstr => "embstr",
            Encoding::Raw => "raw",
            Encoding::Listpack => "listpack",
            Encoding::Hashtable => "hashtable",
        }
    }
}

/// What `OBJECT` reports about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The encoding Redis would use.
    pub encoding: Encoding,
    /// Seconds since the key was last read or written. Meaningful under an LRU policy (the
    /// entry keeps its LFU counter in the same bits under an LFU one).
    pub idle_seconds: u64,
    /// The key's LFU counter, decayed to now (`OBJECT FREQ`). Meaningful under an LFU policy.
    pub frequency: u8,
}

/// What a `RENAME` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameOutcome {
    /// The source key does not exist.
    NoSuchKey,
    /// `RENAMENX` found the destination taken; nothing changed.
    DestinationExists,
    /// The key was renamed.
    Renamed,
}

impl Store {
    /// Deletes keys (`DEL`, `UNLINK`) atomically; returns how many existed.
    pub fn remove_many<'k>(&self, keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone) -> usize {
        self.remove_many_noting(keys, |_| {})
    }

    /// [`Store::remove_many`], telling `removed` the position in `keys` of each key it
    /// deleted (called with shards locked: note it and return).
    pub fn remove_many_noting<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        mut removed_at: impl FnMut(usize),
    ) -> usize {
        let mut locks = self.lock_keys(keys.clone());
        let mut now = Now::new(&*self.clock);
        let mut removed = 0;
        for (i, key) in keys.enumerate() {
            let (shard, hash) = locks.shard_for(self, key);
            if let Some((slot, r)) = shard.live(hash, key, &mut now) {
                shard.remove_at(hash, slot, r, None);
                removed += 1;
                removed_at(i);
            }
        }
        locks.settle(self);
        removed
    }

    /// Deletes one key; returns whether it existed.
    pub fn remove(&self, key: &[u8]) -> bool {
        self.with_shard(key, |shard, hash, now| match shard.live(hash, key, now) {
            Some((slot, r)) => {
                shard.remove_at(hash, slot, r, None);
                true
            }
            None => false,
        })
    }

    /// Counts how many of `keys` exist (`EXISTS`; repeated keys count again). Does not mark
    /// them used.
    pub fn count_existing<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
    ) -> usize {
        self.count_keys(keys, false)
    }

    /// Marks keys used and counts how many exist (`TOUCH`).
    pub fn touch<'k>(&self, keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone) -> usize {
        self.count_keys(keys, true)
    }

    fn count_keys<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        touch: bool,
    ) -> usize {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(keys.clone());
        let mut now = Now::new(&*self.clock);
        let mut count = 0;
        for key in keys {
            let (shard, hash) = locks.shard_for(self, key);
            let found = shard.live(hash, key, &mut now);
            shard.count_read(found.is_some());
            if let Some((_, r)) = found {
                if touch {
                    shard.touch(r, clock);
                }
                count += 1;
            }
        }
        locks.settle(self);
        count
    }

    /// Sets a key's expiry to `at` (Unix ms) under Redis 7's `NX`/`XX`/`GT`/`LT` rules; a time
    /// not after now deletes the key.
    pub fn expire(
        &self,
        key: &[u8],
        at: i64,
        condition: ExpireCondition,
    ) -> Result<ExpireOutcome, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let Some((slot, r)) = shard.live(hash, key, now) else {
                return Ok(ExpireOutcome::NoKey);
            };
            let b = shard.blob(r);
            let current = b.has_ttl().then(|| b.expiry() as i64);
            let refused = (condition.nx && current.is_some())
                || (condition.xx && current.is_none())
                || (condition.gt && current.is_none_or(|c| at <= c))
                || (condition.lt && current.is_some_and(|c| at >= c));
            if refused {
                return Ok(ExpireOutcome::NotApplied);
            }
            if at <= now.get() as i64 {
                shard.remove_at(hash, slot, r, None);
                return Ok(ExpireOutcome::Deleted);
            }
            let r = shard.set_expiry(slot, r, Some(at as u64))?;
            shard.touch(r, clock);
            Ok(ExpireOutcome::Applied)
        })
    }

    /// Removes a key's expiry (`PERSIST`): `None` if the key does not exist, else whether it had one.
    pub fn persist(&self, key: &[u8]) -> Result<Option<bool>, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let Some((slot, r)) = shard.live(hash, key, now) else {
                return Ok(None);
            };
            let had = shard.blob(r).has_ttl();
            let r = shard.set_expiry(slot, r, None)?;
            shard.touch(r, clock);
            Ok(Some(had))
        })
    }

    /// A key's expiry (`TTL` family). Counts a hit or miss; does not mark the key used.
    pub fn ttl(&self, key: &[u8]) -> KeyTtl {
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            match found {
                None => KeyTtl::NoKey,
                Some((_, r)) => {
                    let b = shard.blob(r);
                    if b.has_ttl() {
                        KeyTtl::ExpiresAt(b.expiry())
                    } else {
                        KeyTtl::Persistent
                    }
                }
            }
        })
    }

    /// `OBJECT` information about a key (without marking it used).
    pub fn object_info(&self, key: &[u8]) -> Option<ObjectInfo> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            let (_, r) = found?;
            let b = shard.blob(r);
            Some(ObjectInfo {
                encoding: encoding_of(b),
                idle_seconds: u64::from(clock.seconds.wrapping_sub(b.clock()) & CLOCK_MASK),
                frequency: self.budget.lfu().decayed(b.clock()),
            })
        })
    }

    /// Bytes a key is charged (`MEMORY USAGE`).
    pub fn memory_usage(&self, key: &[u8]) -> Option<usize> {
        self.with_shard(key, |shard, hash, now| {
            let (_, r) = shard.live(hash, key, now)?;
            Some(shard.entry_charge(shard.blob(r)))
        })
    }

    /// Renames `from` to `to`, keeping the expiry; with `only_if_absent`, only if `to` does not
    /// exist (`RENAMENX`). Renaming a key to itself succeeds without change.
    pub fn rename(
        &self,
        from: &[u8],
        to: &[u8],
        only_if_absent: bool,
    ) -> Result<RenameOutcome, StoreError> {
        self.copy_or_move(
            from,
            to,
            if only_if_absent {
                Transfer::MoveIfAbsent
            } else {
                Transfer::Move
            },
        )
    }

    /// Copies `from` to `to`, keeping the expiry (`COPY`); with `replace`, over an existing `to`.
    /// Returns whether the copy happened.
    pub fn copy(&self, from: &[u8], to: &[u8], replace: bool) -> Result<bool, StoreError> {
        let transfer = if replace {
            Transfer::CopyReplace
        } else {
            Transfer::Copy
        };
        Ok(self.copy_or_move(from, to, transfer)? == RenameOutcome::Renamed)
    }

    fn copy_or_move(
        &self,
        from: &[u8],
        to: &[u8],
        transfer: Transfer,
    ) -> Result<RenameOutcome, StoreError> {
        let clock = self.clock_now();
        let mut locks = self.lock_keys([from, to].into_iter());
        let mut now = Now::new(&*self.clock);
        let result = (|| {
            let (src, src_hash) = locks.shard_for(self, from);
            let Some((_, src_ref)) = src.live(src_hash, from, &mut now) else {
                return Ok(RenameOutcome::NoSuchKey);
            };
            if from == to {
                return Ok(if transfer == Transfer::Move {
                    RenameOutcome::Renamed
                } else {
                    RenameOutcome::DestinationExists
                });
            }
            let b = src.blob(src_ref);
            let kind = b.kind();
            // A string's bytes, or another type's whole-state payload.
            let value = if kind == Kind::String {
                b.value().to_vec()
            } else {
                value::with_payload(kind, b.value(), <[u8]>::to_vec)
            };
            let as_table = value::owns_heap(kind, b.value());
            let expiry = b.has_ttl().then(|| b.expiry());
            let form = b.form();
            let moving = matches!(transfer, Transfer::Move | Transfer::MoveIfAbsent);
            // Redis moves the object, and with it its LFU counter (bumped by the lookup).
            let counted = moving
                .then(|| {
                    clock
                        .lfu
                        .map(|lfu| lfu.accessed(b.clock(), (src.next_random() >> 32) as u32))
                })
                .flatten();
            let (dst, dst_hash) = locks.shard_for(self, to);
            let existing = dst.live(dst_hash, to, &mut now);
            if existing.is_some() && matches!(transfer, Transfer::MoveIfAbsent | Transfer::Copy) {
                return Ok(RenameOutcome::DestinationExists);
            }
            // Redis moves (RENAME) or duplicates (COPY) the object, encoding included.
            if kind == Kind::String {
                let r = match existing {
                    Some((slot, r)) => dst.overwrite(slot, r, &value, expiry, clock)?,
                    None => dst.insert(dst_hash, to, &value, expiry, clock)?,
                };
                dst.blob(r).set_form(form);
                if let Some(field) = counted {
                    dst.blob(r).set_clock(field);
                }
            } else {
                let limits = self.hash_limits();
                let r = super::hashes::write_whole_hash(
                    dst, dst_hash, to, existing, &value, as_table, limits, expiry, clock,
                )?;
                match counted {
                    Some(field) => dst.blob(r).set_clock(field),
                    // A new key is stamped by its insert (a copy starts a new counter).
                    None if existing.is_some() => dst.touch(r, clock),
                    None => {}
                }
            }
            if moving {
                // The destination write may have moved entries of the same shard, so look the
                // source up again rather than trusting its old slot.
                let (src, src_hash) = locks.shard_for(self, from);
                // (It may even have been evicted to make room for the destination.)
                if let Some((slot, r)) = src.find(src_hash, from) {
                    src.remove_at(src_hash, slot, r, None);
                }
            }
            Ok(RenameOutcome::Renamed)
        })();
        locks.settle(self);
        result
    }

    /// Calls `f` with every live key (`KEYS`), shard by shard.
    pub fn for_each_key(&self, mut f: impl FnMut(&[u8])) {
        let now = self.clock.now_ms();
        for index in 0..self.shards.len() {
            let shard = self.lock(index);
            for r in shard.refs() {
                let b = shard.blob(r);
                if !b.has_ttl() || now <= b.expiry() {
                    f(b.key());
                }
            }
        }
    }

    /// One step of `SCAN`: reports about `count` live keys from `cursor` (0 to start), each
    /// with what it holds, and returns the cursor to continue with (0 when done). A key that
    /// exists for the whole scan is reported at least once, whatever happens to the keyspace
    /// meanwhile.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], Kind)) -> u64 {
        self.scan_live(cursor, count, |b| f(b.key(), b.kind()))
    }

    /// The walk behind [`Store::scan`] and [`Store::scan_entries`]: `f` gets each live entry.
    pub(super) fn scan_live(&self, cursor: u64, count: usize, mut f: impl FnMut(Blob)) -> u64 {
        let now = self.clock.now_ms();
        let mut index = (cursor >> 32) as usize;
        let mut position = cursor & 0xFFFF_FFFF;
        let mut reported = 0;
        while index < self.shards.len() {
            let shard = self.lock(index);
            let next = shard.scan(position, count.saturating_sub(reported).max(1), |v| {
                let b = shard.blob(Ref(v));
                if !b.has_ttl() || now <= b.expiry() {
                    f(b);
                }
                reported += 1;
            });
            drop(shard);
            if next != END {
                return ((index as u64) << 32) | next;
            }
            index += 1;
            position = 0;
            if reported >= count {
                break;
            }
        }
        if index >= self.shards.len() {
            0
        } else {
            (index as u64) << 32
        }
    }

    /// A random live key (`RANDOMKEY`), passed to `f`.
    pub fn random_key<R>(&self, mut f: impl FnMut(&[u8]) -> R) -> Option<R> {
        let start = random_seed() as usize;
        let mut now = Now::new(&*self.clock);
        for step in 0..self.shards.len() * 4 {
            let index = (start + step) % self.shards.len();
            let mut shard = self.lock(index);
            let before = shard.used;
            let Some(r) = shard.random() else {
                continue;
            };
            let b = shard.blob(r);
            if b.has_ttl() && now.get() > b.expiry() {
                let key = b.key().to_vec();
                let hash = self.hash(&key);
                shard.live(hash, &key, &mut now);
                self.settle(index, before, &shard);
                continue;
            }
            return Some(f(b.key()));
        }
        None
    }
}

fn encoding_of(b: Blob) -> Encoding {
    let value = b.value();
    if b.kind() == Kind::Hash {
        // SAFETY: a live hash entry of a locked shard (the caller's).
        return match unsafe { HashRef::of(value) }.encoding() {
            value::HashEncoding::Listpack => Encoding::Listpack,
            value::HashEncoding::Hashtable => Encoding::Hashtable,
        };
    }
    match b.form() {
        // A value modified in place is a raw string in Redis, whatever it holds.
        Form::Raw => return Encoding::Raw,
        Form::Text => {
            return if value.len() <= 44 {
                Encoding::Embstr
            } else {
                Encoding::Raw
            };
        }
        Form::Auto => {}
    }
    if value.len() <= 20 && crate::int::is_canonical_i64(value) {
        Encoding::Int
    } else if value.len() <= 44 {
        Encoding::Embstr
    } else {
        Encoding::Raw
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    Move,
    MoveIfAbsent,
    Copy,
    CopyReplace,
}
