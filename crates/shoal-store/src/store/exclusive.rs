//! Locking shards, and the exclusive section that makes a transaction atomic.
//!
//! Every operation reaches a shard through [`Store::lock`]. Normally that takes the shard's
//! mutex. Inside [`Store::exclusive`] the calling thread holds every shard's mutex already, so
//! `lock` hands out the shard it holds instead of locking again (which would deadlock): the
//! operations a transaction runs are the ordinary ones, and other threads wait for the whole
//! section, as Redis's clients wait for a whole `EXEC`.

use std::cell::Cell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Arc;

use parking_lot::MutexGuard;

use crate::events::Journal;
use crate::shard::Shard;

use super::{ShardSlot, Store};

thread_local! {
    /// The shards (of one store) whose every lock this thread holds in an exclusive section;
    /// null outside one.
    static HELD: Cell<*const ShardSlot> = const { Cell::new(std::ptr::null()) };
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

/// Marks this thread as holding a store's shards, and on drop (a panic included) ends the
/// journal's unit and clears the mark, before the locks themselves are released.
struct Held {
    journal: Option<Arc<dyn Journal>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(journal) = &self.journal {
            journal.end_unit();
        }
        HELD.set(std::ptr::null());
    }
}

impl Store {
    /// Locks shard `index` for this thread (see the module's description).
    #[inline]
    pub(super) fn lock(&self, index: usize) -> ShardGuard<'_> {
        let mutex = &self.shards[index].shard;
        let lock = (HELD.get() != self.shards.as_ptr()).then(|| mutex.lock());
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

    /// Runs `f` with every shard locked by this thread, so that what `f` does to this store is
    /// atomic: other threads' operations wait until `f` returns, and see all of its changes or
    /// none. The operations `f` runs on this store work as usual (they use the locks held);
    /// the journal hears their changes as one unit ([`Journal::begin_unit`]). A call inside
    /// `f` runs its closure directly.
    ///
    /// `f` must not block on another thread's store operation (it waits for this section), and
    /// callbacks the store runs inside `f` follow the usual rule: they never call back into
    /// the store.
    pub fn exclusive<R>(&self, f: impl FnOnce() -> R) -> R {
        if HELD.get() == self.shards.as_ptr() {
            return f();
        }
        // In index order, as every operation that locks several shards.
        let guards: Vec<MutexGuard<'_, Shard>> =
            self.shards.iter().map(|slot| slot.shard.lock()).collect();
        let journal = guards[0].journal().cloned();
        if let Some(journal) = &journal {
            journal.begin_unit();
        }
        HELD.set(self.shards.as_ptr());
        // Dropped before `guards`: the mark is cleared before any lock is released.
        let _held = Held { journal };
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
