//! `WATCH`: the keys connections watch, and the flag a change of one of them raises, so that
//! the connection's `EXEC` runs nothing (Redis's optimistic locking).
//!
//! Every change of the keyspace reaches [`Watches::touched`] through the store's journal
//! (writes, deletes, expiry, eviction, a replicated change on a replica, the keys of a slot
//! that left the node), under the lock of the key's shard; `EXEC` reads its flag inside the
//! store's exclusive section, after every earlier change reported. While nobody watches, a
//! change costs one atomic load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use parking_lot::Mutex;

/// Every watched key, with the connections watching it.
#[derive(Default)]
pub(crate) struct Watches {
    /// How many (key, connection) pairs are watched.
    watched: AtomicUsize,
    keys: Mutex<Watchers>,
}

/// Each watched key, with the flags of the connections watching it.
type Watchers = HashMap<Box<[u8]>, Vec<Arc<WatchFlag>>>;

/// Raised when a key its connection watches changes.
#[derive(Debug, Default)]
struct WatchFlag(AtomicBool);

/// The keys one connection watches; dropping it (`EXEC`, `DISCARD`, `UNWATCH`, `RESET`, the
/// connection closing) unwatches them.
pub(crate) struct Watching {
    watches: Arc<Watches>,
    flag: Arc<WatchFlag>,
    keys: Vec<Box<[u8]>>,
}

impl std::fmt::Debug for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watching")
            .field("keys", &self.keys.len())
            .field("changed", &self.changed())
            .finish()
    }
}

impl Watches {
    /// Adds `key` to what `watching` watches (starting it if needed); a key watched already
    /// is not added twice.
    pub(crate) fn watch(self: &Arc<Self>, watching: &mut Option<Watching>, key: &[u8]) {
        let watching = watching.get_or_insert_with(|| Watching {
            watches: self.clone(),
            flag: Arc::default(),
            keys: Vec::new(),
        });
        if watching.keys.iter().any(|k| **k == *key) {
            return;
        }
        watching.keys.push(key.into());
        self.keys
            .lock()
            .entry(key.into())
            .or_default()
            .push(watching.flag.clone());
        self.watched.fetch_add(1, Relaxed);
    }

    /// `key` changed: raises the flag of every connection watching it.
    #[inline]
    pub(crate) fn touched(&self, key: &[u8]) {
        if self.watched.load(Relaxed) == 0 {
            return;
        }
        if let Some(flags) = self.keys.lock().get(key) {
            flags.iter().for_each(|flag| flag.0.store(true, Relaxed));
        }
    }

    /// Every key is gone: raises the flags of the watched keys that existed (as Redis, a
    /// `FLUSHALL` does not disturb a watch on a key that was not there).
    pub(crate) fn flushed(&self, existed: &dyn Fn(&[u8]) -> bool) {
        if self.watched.load(Relaxed) == 0 {
            return;
        }
        for (key, flags) in self.keys.lock().iter() {
            if existed(key) {
                flags.iter().for_each(|flag| flag.0.store(true, Relaxed));
            }
        }
    }

    /// How many distinct keys are watched.
    #[cfg(test)]
    fn keys(&self) -> usize {
        self.keys.lock().len()
    }
}

impl Watching {
    /// Whether a watched key changed since it was watched.
    pub(crate) fn changed(&self) -> bool {
        self.flag.0.load(Relaxed)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut keys = self.watches.keys.lock();
        for key in &self.keys {
            if let Some(flags) = keys.get_mut(key) {
                flags.retain(|flag| !Arc::ptr_eq(flag, &self.flag));
                if flags.is_empty() {
                    keys.remove(key);
                }
            }
        }
        self.watches.watched.fetch_sub(self.keys.len(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_raises_only_the_flags_of_its_watchers_and_unwatching_forgets_them() {
        let watches = Arc::new(Watches::default());
        let (mut first, mut second) = (None, None);
        watches.watch(&mut first, b"a");
        watches.watch(&mut first, b"a");
        watches.watch(&mut second, b"b");
        watches.touched(b"b");
        assert!(!first.as_ref().unwrap().changed());
        assert!(second.as_ref().unwrap().changed());
        watches.touched(b"a");
        assert!(first.as_ref().unwrap().changed());
        assert_eq!(watches.keys(), 2);
        drop(first.take());
        drop(second.take());
        assert_eq!(watches.keys(), 0);
        assert_eq!(watches.watched.load(Relaxed), 0);
    }

    #[test]
    fn a_flush_raises_the_flags_of_keys_that_existed_only() {
        let watches = Arc::new(Watches::default());
        let (mut present, mut absent) = (None, None);
        watches.watch(&mut present, b"there");
        watches.watch(&mut absent, b"missing");
        watches.flushed(&|key| key == b"there");
        assert!(present.unwrap().changed());
        assert!(!absent.unwrap().changed());
    }
}
