//! Where a node's keyspace changes go: the store's one [`Journal`] hands each to replication
//! (the stream to replicas), to `WATCH` ([`Watches`]) and to `CLIENT TRACKING` (the door's
//! [`Tracking`](shoal_frontdoor::tracking::Tracking)): writes, deletions, expiry, eviction
//! and changes a replica applies from its primary's stream all pass here.

use std::sync::Arc;

use shoal_store::{Journal, Kind};

use crate::watch::Watches;

/// The node's journal: every change, to each of its listeners.
pub(crate) struct Changes {
    /// Replication's journal (records while the node has replicas).
    pub replication: Arc<dyn Journal>,
    /// The keys connections watch.
    pub watches: Arc<Watches>,
    /// The front door, whose tracking clients are told of changes.
    pub door: Arc<shoal_frontdoor::Door>,
}

impl Journal for Changes {
    #[inline]
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>) {
        self.watches.touched(key);
        self.door.invalidate(key);
        self.replication.put(key, value, expiry);
    }

    #[inline]
    fn delete(&self, key: &[u8]) {
        self.watches.touched(key);
        self.door.invalidate(key);
        self.replication.delete(key);
    }

    #[inline]
    fn put_value(&self, key: &[u8], kind: Kind, payload: &[u8], expiry: Option<u64>) {
        self.watches.touched(key);
        self.door.invalidate(key);
        self.replication.put_value(key, kind, payload, expiry);
    }

    #[inline]
    fn put_field(&self, key: &[u8], field: &[u8], value: &[u8], expiry: Option<u64>) {
        self.watches.touched(key);
        self.door.invalidate(key);
        self.replication.put_field(key, field, value, expiry);
    }

    #[inline]
    fn delete_field(&self, key: &[u8], field: &[u8]) {
        self.watches.touched(key);
        self.door.invalidate(key);
        self.replication.delete_field(key, field);
    }

    #[inline]
    fn set_expiry(&self, key: &[u8], expiry: Option<u64>) {
        self.watches.touched(key);
        self.door.invalidate(key);
        self.replication.set_expiry(key, expiry);
    }

    fn flush(&self, existed: &dyn Fn(&[u8]) -> bool) {
        self.watches.flushed(existed);
        self.door.invalidate_all();
        self.replication.flush(existed);
    }

    fn begin_unit(&self) {
        self.replication.begin_unit();
    }

    fn end_unit(&self) {
        self.replication.end_unit();
    }
}
