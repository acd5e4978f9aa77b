//! What the store tells its observers: keys that leave on their own ([`KeyEvents`]) and
//! every change, for replication ([`Journal`]).

/// Why a key left the store on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its TTL passed.
    Expired,
    /// It was evicted to stay under `maxmemory`.
    Evicted,
}

/// Observer of keys that leave the store without a command deleting them (for metrics,
/// replication and client-side caching). Called with the shard locked: keep it short.
pub trait KeyEvents: Send + Sync {
    /// `key` was removed for `cause`.
    fn on_removed(&self, key: &[u8], cause: Removal);

    /// `key` was created (it did not exist): Redis's `new` event. Called under the shard's
    /// lock, before the command that created it reports anything of its own.
    fn on_added(&self, key: &[u8]) {
        let _ = key;
    }

    /// Fields of the hash `key` expired and were removed (once per reclaim, as Redis's
    /// `hexpired` event); `emptied`: that was its last field, so the key is deleted too.
    fn on_fields_expired(&self, key: &[u8], emptied: bool) {
        let _ = (key, emptied);
    }
}

/// Hears every change of the keyspace's state, as the resulting state of each changed key, in
/// an order consistent with the changes (called under the lock of the key's shard, so two
/// changes of one key are reported in the order they happened).
///
/// This is what replication streams: replaying the calls in order into an empty store (`put` as
/// a `SET` with `TtlUpdate::At(expiry)`, `delete` as a `DEL`, `flush` as a `FLUSHALL`, the
/// others through [`Store::restore_value`](crate::Store::restore_value),
/// [`Store::restore_field`](crate::Store::restore_field) and
/// [`Store::restore_expiry`](crate::Store::restore_expiry)) rebuilds the keyspace.
///
/// A string's change is always reported as its whole state (`put`). A value of another type is
/// reported whole (`put_value`) when it is written whole (`RENAME`, `COPY`, a replica's
/// restore), and otherwise by what changed: one field of a hash (`put_field`,
/// `delete_field`; a hash whose last field goes is a `delete`), or the key's expiry
/// (`set_expiry`), so that a write to a large hash costs the stream what it changed. Every call is made with the shard of the key locked (all shards locked for
/// [`Journal::flush`]; both shards for a `RENAME` or `COPY` across shards), so an
/// implementation must be quick and must never call back into the [`Store`](crate::Store) (it would
/// deadlock). Calls for different shards can come from different threads at once.
///
/// A write that changes nothing (a refused `SET NX`, an `EXPIRE` whose condition fails, a `DEL`
/// of a missing key, a `PERSIST` of a key without expiry) reports nothing. Compaction moves
/// entries in memory without changing any key, so it reports nothing either.
pub trait Journal: Send + Sync {
    /// `key` now holds `value`, expiring at `expiry` (absolute Unix ms) or never.
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>);
    /// `key` no longer exists (deleted, renamed away, expired, evicted).
    fn delete(&self, key: &[u8]);
    /// `key` now holds a value of `kind` (not a string) whose whole state is `payload` (for a
    /// hash, its fields packed as `Store::restore_value` reads them), expiring at `expiry`.
    fn put_value(&self, key: &[u8], kind: crate::Kind, payload: &[u8], expiry: Option<u64>);
    /// Field `field` of the hash `key` now holds `value`, expiring at `expiry` or never (the
    /// hash exists, created if it did not; its own expiry is unchanged).
    fn put_field(&self, key: &[u8], field: &[u8], value: &[u8], expiry: Option<u64>);
    /// Field `field` of the hash `key` is gone (the hash still has others).
    fn delete_field(&self, key: &[u8], field: &[u8]);
    /// `key`, which holds a value other than a string, now expires at `expiry` or never.
    fn set_expiry(&self, key: &[u8], expiry: Option<u64>);
    /// Every key is gone (FLUSHALL / `Store::clear`). `existed` tells, during the call,
    /// whether a key was in the store before (for observers of single keys, such as `WATCH`).
    fn flush(&self, existed: &dyn Fn(&[u8]) -> bool);

    /// The changes reported from now until [`Journal::end_unit`] are one unit (the effects of
    /// a transaction): a consumer applies them together, never half of them. Called by
    /// [`Store::exclusive`](crate::Store::exclusive) when its section first locks a shard,
    /// before any change of the section. Until the unit ends, changes other threads make to
    /// shards the section never locked may be reported too: none touches a key the section
    /// changed before it, so applying them with the unit gives the same state.
    fn begin_unit(&self) {}

    /// The unit begun by [`Journal::begin_unit`] is complete.
    fn end_unit(&self) {}
}
