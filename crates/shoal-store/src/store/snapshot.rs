//! Replication: the journal that hears every change, the walk that streams a snapshot of the
//! keyspace while it serves, and the replay of what either produced.

use std::sync::Arc;

use crate::entry::Kind;
use crate::error::StoreError;
use crate::events::Journal;
use crate::value;

use super::Store;

impl Store {
    /// Sets (or with `None` removes) the [`Journal`] that hears every change of the keyspace.
    ///
    /// Takes every shard's lock at once, so the switch is atomic: each change, multi-key
    /// commands included, happens either before it (not reported to the new journal) or after
    /// it (reported in full). Without a journal the write path pays one test of a field of the
    /// shard it has locked anyway.
    pub fn set_journal(&self, journal: Option<Arc<dyn Journal>>) {
        let _order = self.multi_shard();
        let mut guards: Vec<_> = (0..self.shards.len()).map(|i| self.lock(i)).collect();
        for shard in &mut guards {
            shard.set_journal(journal.clone());
        }
    }

    /// Makes `key` hold `value` with exactly `expiry` (absolute Unix ms, `None` for none),
    /// whatever was there: what a replica does with a [`Journal::put`], or with an entry of a
    /// snapshot read by [`Store::scan_entries`]. A key whose expiry has passed (`now > expiry`)
    /// is deleted instead. Unlike a `SET` with `TtlUpdate::At`, which deletes when the time is
    /// not *after* now, an expiry of exactly now is kept: the key is alive through that
    /// millisecond on the primary, so it must be on the replica too.
    pub fn restore(&self, key: &[u8], value: &[u8], expiry: Option<u64>) -> Result<(), StoreError> {
        let clock = self.clock_now();
        self.with_shard(key, |shard, hash, now| {
            let existing = shard.live(hash, key, now);
            if expiry.is_some_and(|at| now.get() > at) {
                if let Some((slot, r)) = existing {
                    shard.remove_at(hash, slot, r, None);
                }
                return Ok(());
            }
            match existing {
                Some((slot, r)) => shard.overwrite(slot, r, value, expiry, clock)?,
                None => shard.insert(hash, key, value, expiry, clock)?,
            };
            Ok(())
        })
    }

    /// One step of a scan of entries, for streaming a snapshot (a replica's full resync) while
    /// the store keeps serving: like [`Store::scan`] (same cursors, same guarantee that a key
    /// present for the whole scan is seen at least once), but `f` gets each live key with what
    /// it holds, its value (a string's bytes, another type's whole-state payload, as
    /// [`Store::restore_value`] reads it) and expiry (absolute Unix ms, `None` for none).
    /// Expired keys are skipped, not removed. `f` runs with the key's shard locked: copy what
    /// it needs and return.
    pub fn scan_entries(
        &self,
        cursor: u64,
        count: usize,
        mut f: impl FnMut(&[u8], Kind, &[u8], Option<u64>),
    ) -> u64 {
        self.scan_live(cursor, count, |b| {
            let expiry = b.has_ttl().then(|| b.expiry());
            match b.kind() {
                Kind::String => f(b.key(), Kind::String, b.value(), expiry),
                kind => value::with_payload(kind, b.value(), |payload| {
                    f(b.key(), kind, payload, expiry)
                }),
            }
        })
    }
}
