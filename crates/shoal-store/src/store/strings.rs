//! Values: reading and writing strings (`GET`, `SET`, `MSET`, `MSETNX`, the `INCR` family,
//! `APPEND`, `SETRANGE`, `GETDEL`, `GETEX`, the bitmap commands' `edit` and `combine`).

use crate::arena::{ArenaFull, Ref};
use crate::entry::{Form, Kind};
use crate::error::StoreError;
use crate::shard::{Now, Shard, Stamp};

use super::Store;

/// Which existing state a `SET` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SetCondition {
    /// Always write.
    #[default]
    Always,
    /// Only if the key does not exist (`NX`).
    IfAbsent,
    /// Only if the key exists (`XX`).
    IfPresent,
}

/// What a write does to the key's expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TtlUpdate {
    /// Remove any expiry (a plain `SET`).
    #[default]
    Clear,
    /// Keep the current expiry (`KEEPTTL`, and every in-place update).
    Keep,
    /// Expire at this Unix time in ms; a time not after now deletes the key instead.
    At(i64),
}

/// Options of a `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SetOptions {
    /// Required existing state.
    pub condition: SetCondition,
    /// Expiry to set.
    pub ttl: TtlUpdate,
    /// The old value is read (`SET ... GET`, `GETSET`): a key holding another type than a
    /// string fails with [`StoreError::WrongType`] and is left alone. Otherwise `SET` replaces
    /// a value of any type, as in Redis.
    pub reads_old: bool,
}

/// The live string entry of `key`: `Ok(None)` if the key is absent, `WrongType` if it holds
/// another type.
#[inline]
pub(super) fn live_string(
    shard: &mut Shard,
    hash: u64,
    key: &[u8],
    now: &mut Now,
) -> Result<Option<(usize, Ref)>, StoreError> {
    match shard.live(hash, key, now) {
        Some((_, r)) if shard.blob(r).kind() != Kind::String => Err(StoreError::WrongType),
        found => Ok(found),
    }
}

impl Store {
    /// Reads a string (`GET`): counts a hit or miss and marks the key used. `Ok(None)` if the
    /// key is absent, [`StoreError::WrongType`] if it holds another type.
    #[inline]
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = shard.live(hash, key, now);
            shard.count_read(found.is_some());
            let Some((_, r)) = found else {
                return Ok(None);
            };
            let b = shard.blob(r);
            if b.kind() != Kind::String {
                return Err(StoreError::WrongType);
            }
            let result = f(b.value());
            shard.touch(r, clock);
            Ok(Some(result))
        })
    }

    /// Reads several keys at once, atomically (`MGET`): `f(i, value)` for each key in order (a
    /// key holding another type than a string reads as absent, as in Redis).
    pub fn get_many<'k>(
        &self,
        keys: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        mut f: impl FnMut(usize, Option<&[u8]>),
    ) {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(keys.clone());
        let mut now = Now::new(&*self.clock);
        for (i, key) in keys.enumerate() {
            let (shard, hash) = locks.shard_for(self, key);
            let found = shard.live(hash, key, &mut now);
            shard.count_read(found.is_some());
            match found {
                Some((_, r)) => {
                    shard.touch(r, clock);
                    let b = shard.blob(r);
                    f(i, (b.kind() == Kind::String).then(|| b.value()));
                }
                None => f(i, None),
            }
        }
        locks.settle(self);
    }

    /// Writes a key (`SET` and its variants), replacing a value of any type. `on_old` sees the
    /// previous value (`None` if absent or not a string) before anything changes, for `SET ...
    /// GET` (see [`SetOptions::reads_old`]). Returns whether the write happened.
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        options: SetOptions,
        on_old: impl FnOnce(Option<&[u8]>),
    ) -> Result<bool, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let existing = shard.live(hash, key, now);
            let old = existing.map(|(_, r)| shard.blob(r));
            if options.reads_old && old.is_some_and(|b| b.kind() != Kind::String) {
                return Err(StoreError::WrongType);
            }
            on_old(old.filter(|b| b.kind() == Kind::String).map(|b| b.value()));
            write_entry(shard, hash, key, value, existing, options, now, clock)
        })
    }

    /// Writes several keys atomically (`MSET`; with `only_if_none_exist`, `MSETNX`). Returns
    /// whether the keys were written.
    pub fn set_many<'k>(
        &self,
        pairs: impl Iterator<Item = (&'k [u8], &'k [u8])> + Clone,
        only_if_none_exist: bool,
    ) -> Result<bool, StoreError> {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(pairs.clone().map(|(k, _)| k));
        let mut now = Now::new(&*self.clock);
        if only_if_none_exist {
            for (key, _) in pairs.clone() {
                let (shard, hash) = locks.shard_for(self, key);
                if shard.live(hash, key, &mut now).is_some() {
                    locks.settle(self);
                    return Ok(false);
                }
            }
        }
        let mut result = Ok(true);
        for (key, value) in pairs {
            let (shard, hash) = locks.shard_for(self, key);
            let existing = shard.live(hash, key, &mut now);
            let options = SetOptions::default();
            if let Err(e) = write_entry(shard, hash, key, value, existing, options, &mut now, clock)
            {
                result = Err(e);
                break;
            }
        }
        locks.settle(self);
        result
    }

    /// Read-modify-write of one value (`INCR` family): `f` gets the current value and a cleared
    /// buffer, and returns `(write, result)`; if `write`, the buffer becomes the new value,
    /// recorded as `written_as` (`Form::Text` for `INCRBYFLOAT`, whose results Redis never
    /// reports as `int`). The expiry is kept; a new key gets none.
    pub fn update<R, E>(
        &self,
        key: &[u8],
        written_as: Form,
        f: impl FnOnce(Option<&[u8]>, &mut Vec<u8>) -> Result<(bool, R), E>,
    ) -> Result<R, UpdateError<E>> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let clock = self.clock_now();
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            self.with_shard(key, |shard, hash, now| {
                let existing = live_string(shard, hash, key, now)?;
                let current = existing.map(|(_, r)| shard.blob(r).value());
                let (write, result) = f(current, scratch).map_err(UpdateError::Rejected)?;
                if write {
                    let r = match existing {
                        Some((slot, r)) => {
                            let b = shard.blob(r);
                            let expiry = b.has_ttl().then(|| b.expiry());
                            shard.overwrite(slot, r, scratch, expiry, clock)?
                        }
                        None => shard.insert(hash, key, scratch, None, clock)?,
                    };
                    shard.blob(r).set_form(written_as);
                }
                Ok(result)
            })
        })
    }

    /// Appends to a value, creating the key if needed (`APPEND`); refuses to grow it past
    /// `max_len`. Returns the new length.
    pub fn append(&self, key: &[u8], suffix: &[u8], max_len: usize) -> Result<usize, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            match live_string(shard, hash, key, now)? {
                Some((slot, r)) => {
                    let len = shard.blob(r).value().len() + suffix.len();
                    if len > max_len {
                        return Err(StoreError::TooLarge);
                    }
                    let r = shard.append(slot, r, suffix)?;
                    shard.touch(r, clock);
                    Ok(len)
                }
                None => {
                    if suffix.len() > max_len {
                        return Err(StoreError::TooLarge);
                    }
                    shard.insert(hash, key, suffix, None, clock)?;
                    Ok(suffix.len())
                }
            }
        })
    }

    /// Overwrites part of a value at `offset`, zero-padding as needed (`SETRANGE`); refuses to
    /// grow it past `max_len`. Returns the new length (0 without creating the key when it is
    /// absent and `data` is empty).
    pub fn set_range(
        &self,
        key: &[u8],
        offset: usize,
        data: &[u8],
        max_len: usize,
    ) -> Result<usize, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let existing = live_string(shard, hash, key, now)?;
            let current_len = existing.map_or(0, |(_, r)| shard.blob(r).value().len());
            if data.is_empty() {
                if let Some((_, r)) = existing {
                    shard.touch(r, clock);
                }
                return Ok(current_len);
            }
            let end = offset.checked_add(data.len()).ok_or(StoreError::TooLarge)?;
            if end > max_len {
                return Err(StoreError::TooLarge);
            }
            match existing {
                Some((_, r)) if end <= current_len => {
                    let b = shard.blob(r);
                    b.value_mut()[offset..end].copy_from_slice(data);
                    b.set_form(Form::Raw);
                    shard.touch(r, clock);
                    shard.report_put(r);
                    Ok(current_len)
                }
                Some((slot, r)) => {
                    let b = shard.blob(r);
                    let mut value = b.value().to_vec();
                    value.resize(end.max(current_len), 0);
                    value[offset..end].copy_from_slice(data);
                    let expiry = b.has_ttl().then(|| b.expiry());
                    let r = shard.overwrite(slot, r, &value, expiry, clock)?;
                    shard.blob(r).set_form(Form::Raw);
                    Ok(value.len())
                }
                None => {
                    let mut value = vec![0u8; end];
                    value[offset..].copy_from_slice(data);
                    let r = shard.insert(hash, key, &value, None, clock)?;
                    shard.blob(r).set_form(Form::Raw);
                    Ok(end)
                }
            }
        })
    }

    /// Edits a value's bytes where they lie (`SETBIT`, `BITFIELD`), without copying the value:
    /// first pads it with zero bytes to at least `min_len` bytes (a missing key gets `min_len`
    /// zero bytes and no expiry; past [`MAX_VALUE_LEN`] is [`StoreError::TooLarge`]), then `f`
    /// gets the bytes and whether they were just created or padded, and returns whether it
    /// changed them and a result; a key of another type is [`StoreError::WrongType`]. The
    /// value keeps its expiry, becomes raw (as Redis's
    /// `dbUnshareStringValue` leaves a string it is about to edit) and is marked used; a new,
    /// padded or changed value is reported to the journal, once.
    pub fn edit<R>(
        &self,
        key: &[u8],
        min_len: usize,
        f: impl FnOnce(&mut [u8], bool) -> (bool, R),
    ) -> Result<R, StoreError> {
        if min_len > MAX_VALUE_LEN {
            return Err(StoreError::TooLarge);
        }
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            match live_string(shard, hash, key, now)? {
                Some((slot, r)) => {
                    let len = shard.blob(r).value().len();
                    let grown = len < min_len;
                    let r = if grown {
                        shard.lengthen(slot, r, min_len)?
                    } else {
                        r
                    };
                    let b = shard.blob(r);
                    let (changed, result) = f(b.value_mut(), grown);
                    b.set_form(Form::Raw);
                    shard.touch(r, clock);
                    if changed || grown {
                        shard.report_put(r);
                    }
                    Ok(result)
                }
                None => {
                    // Edited before it is stored, so that the journal hears of it once.
                    let mut value = vec![0u8; min_len];
                    let (_, result) = f(&mut value, true);
                    let r = shard.insert(hash, key, &value, None, clock)?;
                    shard.blob(r).set_form(Form::Raw);
                    Ok(result)
                }
            }
        })
    }

    /// Computes a value from other keys' values and stores it under `dest`, atomically
    /// (`BITOP`): `f` gets the values of `sources` in order (`None` for a missing key, each
    /// read counted as a hit or a miss) and an empty buffer to fill; a source of another type
    /// is [`StoreError::WrongType`], before anything changes. A result that is not empty
    /// replaces `dest`'s value (of whatever type), raw and without expiry; an empty one deletes
    /// `dest`.
    /// `dest` may be one of the sources.
    pub fn combine<'k, R>(
        &self,
        dest: &'k [u8],
        sources: impl ExactSizeIterator<Item = &'k [u8]> + Clone,
        f: impl FnOnce(&[Option<&[u8]>], &mut Vec<u8>) -> R,
    ) -> Result<(Combined, R), StoreError> {
        let clock = self.clock_now();
        let mut locks = self.lock_keys(sources.clone().chain(std::iter::once(dest)));
        let mut now = Now::new(&*self.clock);
        let mut found = Vec::with_capacity(sources.len());
        for key in sources.clone() {
            let (shard, hash) = locks.shard_for(self, key);
            let live = shard.live(hash, key, &mut now);
            shard.count_read(live.is_some());
            if let Some((_, r)) = live {
                shard.touch(r, clock);
            }
            if live.is_some_and(|(_, r)| shard.blob(r).kind() != Kind::String) {
                locks.settle(self);
                return Err(StoreError::WrongType);
            }
            found.push(live.map(|(_, r)| r));
        }
        let mut out = Vec::new();
        let values: Vec<Option<&[u8]>> = sources
            .zip(&found)
            .map(|(key, r)| r.map(|r| locks.shard_of(self, key).blob(r).value()))
            .collect();
        let result = f(&values, &mut out);
        drop(values);
        let (shard, hash) = locks.shard_for(self, dest);
        let written = match (shard.live(hash, dest, &mut now), out.is_empty()) {
            (Some((slot, r)), true) => {
                shard.remove_at(hash, slot, r, None);
                Ok(Combined::Deleted)
            }
            (None, true) => Ok(Combined::Nothing),
            (existing, false) => match existing {
                Some((slot, r)) => shard.overwrite(slot, r, &out, None, clock),
                None => shard.insert(hash, dest, &out, None, clock),
            }
            .map(|r| {
                shard.blob(r).set_form(Form::Raw);
                Combined::Written
            }),
        };
        locks.settle(self);
        Ok((written?, result))
    }

    /// Reads and deletes a string (`GETDEL`).
    pub fn get_del<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StoreError> {
        self.with_shard(key, |shard, hash, now| {
            let found = live_string(shard, hash, key, now);
            shard.count_read(found.as_ref().is_ok_and(Option::is_some));
            let Some((slot, r)) = found? else {
                return Ok(None);
            };
            let result = f(shard.blob(r).value());
            shard.remove_at(hash, slot, r, None);
            Ok(Some(result))
        })
    }

    /// Reads a key and changes its expiry (`GETEX`): `Keep` leaves it, `Clear` is `PERSIST`,
    /// `At` sets it (deleting the key if the time has passed, after the read).
    pub fn get_ex<R>(
        &self,
        key: &[u8],
        ttl: TtlUpdate,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let found = live_string(shard, hash, key, now);
            shard.count_read(found.as_ref().is_ok_and(Option::is_some));
            let Some((slot, r)) = found? else {
                return Ok(None);
            };
            let result = f(shard.blob(r).value());
            shard.touch(r, clock);
            match ttl {
                TtlUpdate::Keep => {}
                TtlUpdate::Clear => {
                    shard.set_expiry(slot, r, None)?;
                }
                TtlUpdate::At(at) if at <= now.get() as i64 => shard.remove_at(hash, slot, r, None),
                TtlUpdate::At(at) => {
                    shard.set_expiry(slot, r, Some(at as u64))?;
                }
            }
            Ok(Some(result))
        })
    }
}

/// The longest value [`Store::edit`] makes: an entry records its value's length in 32 bits.
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;

/// What [`Store::combine`] did to its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combined {
    /// It holds the result.
    Written,
    /// The result was empty and the key was deleted.
    Deleted,
    /// The result was empty and the key did not exist.
    Nothing,
}

/// Writes `value` under `key` given what is there (`existing`), honouring `options`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn write_entry(
    shard: &mut Shard,
    hash: u64,
    key: &[u8],
    value: &[u8],
    existing: Option<(usize, Ref)>,
    options: SetOptions,
    now: &mut Now,
    clock: Stamp,
) -> Result<bool, StoreError> {
    let allowed = match options.condition {
        SetCondition::Always => true,
        SetCondition::IfAbsent => existing.is_none(),
        SetCondition::IfPresent => existing.is_some(),
    };
    if !allowed {
        return Ok(false);
    }
    let expiry = match options.ttl {
        TtlUpdate::Clear => None,
        TtlUpdate::Keep => existing.and_then(|(_, r)| {
            let b = shard.blob(r);
            b.has_ttl().then(|| b.expiry())
        }),
        TtlUpdate::At(at) if at <= now.get() as i64 => {
            if let Some((slot, r)) = existing {
                shard.remove_at(hash, slot, r, None);
            }
            return Ok(true);
        }
        TtlUpdate::At(at) => Some(at as u64),
    };
    match existing {
        Some((slot, r)) => shard.overwrite(slot, r, value, expiry, clock)?,
        None => shard.insert(hash, key, value, expiry, clock)?,
    };
    Ok(true)
}

/// Why an [`Store::update`] did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError<E> {
    /// The closure refused the current value.
    #[error("update rejected")]
    Rejected(E),
    /// The store could not hold the new value.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<E> From<ArenaFull> for UpdateError<E> {
    fn from(e: ArenaFull) -> Self {
        UpdateError::Store(StoreError::from(e))
    }
}
