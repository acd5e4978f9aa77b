//! Where a node's keyspace changes go: the store's one [`Journal`] hands each to replication
//! (the stream to replicas) and to `WATCH` ([`Watches`]).

use std::sync::Arc;

use shoal_store::Journal;

use crate::watch::Watches;

/// The node's journal: every change, to each of its listeners.
pub(crate) struct Changes {
    /// Replication's journal (records while the node has replicas).
    pub replication: Arc<dyn Journal>,
    /// The keys connections watch.
    pub watches: Arc<Watches>,
}

impl Journal for Changes {
    #[inline]
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>) {
        self.watches.touched(key);
        self.replication.put(key, value, expiry);
    }

    #[inline]
    fn delete(&self, key: &[u8]) {
        self.watches.touched(key);
        self.replication.delete(key);
    }

    fn flush(&self, existed: &dyn Fn(&[u8]) -> bool) {
        self.watches.flushed(existed);
        self.replication.flush(existed);
    }

    fn begin_unit(&self) {
        self.replication.begin_unit();
    }

    fn end_unit(&self) {
        self.replication.end_unit();
    }
}
