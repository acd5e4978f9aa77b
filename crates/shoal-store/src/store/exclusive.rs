//! Locking shards, and the exclusive section that makes a transaction or a script atomic.
//!
//! Every operation reaches a shard through [`Store::lock`]. Normally that takes the shard's
//! mutex for the operation. Inside [`Store::exclusive`] it takes it the first time the section
//! asks for that shard and keeps it until the section ends (strict two-phase locking): the
//! operations a transaction runs are the ordinary ones, a shard the section touched is
//! untouched by other threads until it ends, and a shard it never touches costs it nothing.
//!
//! # Why that is atomic
//!
//! Every change is made under its shard's lock, and a section releases no lock before it
//! ends: whatever another thread does is ordered entirely before the section (it touched a
//! shard before the section locked it) or entirely after (it waited for a shard the section
//! held), so no thread sees part of a section. That is conflict-serializability, the property
//! of two-phase locking.
//!
//! # Why it cannot deadlock
//!
//! A section locks shards in the order its operations touch them, not in index order. Every
//! operation that holds one shard while it waits for another (the multi-key operations, which
//! lock in index order) first takes the store's `order` lock to read ([`Store::multi_shard`]),
//! and a section takes it to write for its whole length: while a section runs, no other thread
//! waits for a shard while holding one, so whoever holds a shard the section waits for lets
//! it go. Operations that hold a single shard at a time need no `order` lock (the common case:
//! `GET`, `SET` and their kind pay nothing). Two sections are serialized by the same lock.
//!
//! The journal hears a section's changes as one unit ([`Journal::begin_unit`]), begun when the
//! section first locks a shard (before any change of it) and ended with the section; a section
//! that locks nothing opens no unit. Another thread's change to a shard the section has not
//! locked may be reported inside the unit: it touches none of the keys the section changed
//! before it (those shards are locked), so the replica's state is the same applied together.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::{MutexGuard, RwLockReadGuard};

use crate::events::Journal;
use crate::shard::Shard;

use super::{ShardSlot, Store};

thread_local! {
    /// The shards (of one store) of this thread's exclusive section; null outside one.
    static HELD: Cell<*const ShardSlot> = const { Cell::new(std::ptr::null()) };
    /// Which shards this thread's section has locked: a bit each, and the same indices in a
    /// list to unlock them (kept between sections, so a section allocates nothing).
    static LOCKED: RefCell<Locked> = RefCell::new(Locked::default());
}

/// The shards a section holds.
#[derive(Default)]
struct Locked {
    bits: Vec<u64>,
    indices: Vec<usize>,
    /// The unit the section opened in the journal, if it did.
    journal: Option<Arc<dyn Journal>>,
}

/// One shard, locked: by its own mutex, or by this thread's exclusive section.
pub(super) struct ShardGuard<'a> {
    /// The mutex's guard, unless the exclusive section holds the lock.
    _lock: Option<MutexGuard<'a, Shard>>,
    shard: NonNull<Shard>,
    _borrow: PhantomData<&'a mut Shard>,
}

impl Deref for ShardGuard<'_> {
    type Target = Shard;

    #[inline]
    fn deref(&self) -> &Shard {
        // SAFETY: `shard` points into the mutex of a shard whose lock this thread holds for
        // at least `'a`: through `_lock`, or through the exclusive section that created this
        // guard and outlives it (see `Store::lock`). No other guard of the same shard exists
        // meanwhile: outside a section a second one would wait for the mutex, and the store
        // never asks for a shard it holds already (outside a section that would deadlock).
        unsafe { self.shard.as_ref() }
    }
}

impl DerefMut for ShardGuard<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Shard {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference through the guard.
        unsafe { self.shard.as_mut() }
    }
}

/// Ends a section however it ends (a panic included): ends the journal's unit, unlocks the
/// shards the section locked and clears the mark.
struct Section<'a> {
    store: &'a Store,
}

impl Drop for Section<'_> {
    fn drop(&mut self) {
        LOCKED.with_borrow_mut(|locked| {
            if let Some(journal) = locked.journal.take() {
                journal.end_unit();
            }
            for index in locked.indices.drain(..) {
                locked.bits[index / 64] &= !(1 << (index % 64));
                // SAFETY: the section locked this shard (`Store::lock`) and forgot the guard;
                // nothing of the section refers to the shard any more (its guards borrow the
                // store for no longer than the section's closure).
                unsafe { self.store.shards[index].shard.force_unlock() };
            }
        });
        HELD.set(std::ptr::null());
    }
}

impl Store {
    /// Locks shard `index` for this thread (see the module's description).
    #[inline]
    pub(super) fn lock(&self, index: usize) -> ShardGuard<'_> {
        let mutex = &self.shards[index].shard;
        let lock = if HELD.get() == self.shards.as_ptr() {
            self.lock_in_section(index);
            None
        } else {
            Some(mutex.lock())
        };
        ShardGuard {
            _lock: lock,
            shard: NonNull::new(mutex.data_ptr()).expect("a mutex's data is never null"),
            _borrow: PhantomData,
        }
    }

    /// Whether this thread is inside this store's exclusive section ([`Store::exclusive`]).
    pub fn in_exclusive(&self) -> bool {
        HELD.get() == self.shards.as_ptr()
    }

    /// Inside this thread's section: locks shard `index` until the section ends, unless the
    /// section holds it already.
    #[cold]
    fn lock_in_section(&self, index: usize) {
        LOCKED.with_borrow_mut(|locked| {
            let (word, bit) = (index / 64, 1u64 << (index % 64));
            if locked.bits.len() <= word {
                locked.bits.resize(word + 1, 0);
            }
            if locked.bits[word] & bit != 0 {
                return;
            }
            // Safe to wait for: the section holds `order` to write, so whoever holds the
            // shard holds no other and waits for none (see the module's description).
            let guard = self.shards[index].shard.lock();
            if locked.journal.is_none()
                && let Some(journal) = guard.journal()
            {
                // Before the section's first change: every change is made under a lock.
                journal.begin_unit();
                locked.journal = Some(journal.clone());
            }
            // Unlocked by `Section::drop`.
            std::mem::forget(guard);
            locked.bits[word] |= bit;
            locked.indices.push(index);
        });
    }

    /// To be held by an operation that holds one shard while it waits for another (it locks
    /// several): keeps exclusive sections out meanwhile (see the module's description).
    /// `None` inside this thread's own section, which holds that lock already.
    pub(super) fn multi_shard(&self) -> Option<RwLockReadGuard<'_, ()>> {
        (HELD.get() != self.shards.as_ptr()).then(|| self.order.read())
    }

    /// Runs `f` as an exclusive section of this thread, so that what `f` does to this store is
    /// atomic: other threads' operations on the shards `f` touches wait until `f` returns, and
    /// no thread sees part of its changes (see the module's description). The operations `f`
    /// runs on this store work as usual; the journal hears their changes as one unit
    /// ([`Journal::begin_unit`]). A call inside `f` runs its closure directly.
    ///
    /// `f` must not block on another thread's store operation (it may wait for this section),
    /// and callbacks the store runs inside `f` follow the usual rule: they never call back
    /// into the store.
    pub fn exclusive<R>(&self, f: impl FnOnce() -> R) -> R {
        if HELD.get() == self.shards.as_ptr() {
            return f();
        }
        // Dropped after `_section`: the shards are unlocked before other sections may start.
        let _order = self.order.write();
        HELD.set(self.shards.as_ptr());
        let _section = Section { store: self };
        f()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::{SetOptions, StoreConfig};

    use super::*;

    fn store() -> Store {
        Store::new(StoreConfig {
            shards: 8,
            seed: Some(7),
            ..StoreConfig::default()
        })
    }

    fn set(store: &Store, key: &[u8], value: &[u8]) {
        store
            .set(key, value, SetOptions::default(), |_| {})
            .unwrap();
    }

    /// Two keys that live in different shards.
    fn keys_in_two_shards(store: &Store) -> (Vec<u8>, Vec<u8>) {
        let first = b"k0".to_vec();
        let shard = |key: &[u8]| store.shard_index(store.hash(key));
        let second = (1..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| shard(k) != shard(&first))
            .unwrap();
        (first, second)
    }

    #[test]
    fn every_operation_works_inside_a_section_and_locks_are_free_after_it() {
        let store = store();
        let (a, b) = keys_in_two_shards(&store);
        store.exclusive(|| {
            set(&store, &a, b"1");
            let pairs = [(&a[..], &b"2"[..]), (&b[..], &b"3"[..])];
            store.set_many(pairs.into_iter(), false).unwrap();
            store.rename(&a, b"renamed", false).unwrap();
            // A nested section runs inside the outer one.
            store.exclusive(|| assert_eq!(store.len(), 2));
            store.clear();
            set(&store, &b, b"4");
        });
        assert_eq!(
            store.get(&b, |v| v.to_vec()).unwrap().as_deref(),
            Some(&b"4"[..])
        );
        // Another thread can lock every shard again.
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(store.len(), 1)).join().unwrap();
        });
    }

    #[test]
    fn other_threads_never_see_half_of_a_section() {
        let store = store();
        let (a, b) = keys_in_two_shards(&store);
        set(&store, &a, b"0");
        set(&store, &b, b"0");
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=2_000u32 {
                    let value = i.to_string();
                    store.exclusive(|| {
                        set(&store, &a, value.as_bytes());
                        set(&store, &b, value.as_bytes());
                    });
                }
                done.store(true, Ordering::Relaxed);
            });
            s.spawn(|| {
                let mut reads = 0;
                while !done.load(Ordering::Relaxed) || reads == 0 {
                    let mut seen = [Vec::new(), Vec::new()];
                    store.get_many([&a[..], &b[..]].into_iter(), |i, v| {
                        seen[i] = v.unwrap().to_vec();
                    });
                    assert_eq!(seen[0], seen[1], "read half of a section");
                    reads += 1;
                }
            });
        });
    }

    #[test]
    fn a_section_locks_only_what_it_touches() {
        let store = store();
        let (a, b) = keys_in_two_shards(&store);
        store.exclusive(|| {
            set(&store, &a, b"1");
            // `b`'s shard is not the section's: another thread writes it meanwhile.
            std::thread::scope(|s| {
                s.spawn(|| set(&store, &b, b"2")).join().unwrap();
            });
            assert_eq!(
                store.get(&b, |v| v.to_vec()).unwrap().as_deref(),
                Some(&b"2"[..])
            );
        });
    }

    #[test]
    fn sections_out_of_shard_order_and_multi_key_operations_never_deadlock() {
        let store = store();
        let keys: Vec<Vec<u8>> = (0..32).map(|i| format!("k{i}").into_bytes()).collect();
        for key in &keys {
            set(&store, key, b"0");
        }
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            // Sections touch the keys from last to first: their shards out of index order.
            s.spawn(|| {
                for round in 0..300u32 {
                    let value = round.to_string();
                    store.exclusive(|| {
                        for key in keys.iter().rev() {
                            set(&store, key, value.as_bytes());
                        }
                    });
                }
                done.store(true, Ordering::Relaxed);
            });
            // Multi-key reads lock in index order, and must see every section whole.
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let mut seen = Vec::new();
                    store.get_many(keys.iter().map(|k| &k[..]), |_, v| {
                        seen.push(v.unwrap().to_vec());
                    });
                    assert!(
                        seen.windows(2).all(|w| w[0] == w[1]),
                        "read half of a section"
                    );
                }
            });
            // Single-key writes of other keys, in shards the sections hold or not.
            s.spawn(|| {
                let mut i = 0u32;
                while !done.load(Ordering::Relaxed) {
                    set(&store, format!("other{}", i % 64).as_bytes(), b"x");
                    i += 1;
                }
            });
        });
    }

    #[test]
    fn a_panic_inside_a_section_releases_every_shard() {
        let store = store();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            store.exclusive(|| panic!("a handler bug"));
        }));
        assert!(caught.is_err());
        assert!(HELD.get().is_null());
        std::thread::scope(|s| {
            s.spawn(|| set(&store, b"after", b"ok")).join().unwrap();
        });
        assert_eq!(store.len(), 1);
    }
}
