//! The Raft log and state machine, in memory (see the module above for why nothing is on disk).
//!
//! The state machine is one [`ClusterMap`]; every map it applies is published on a
//! `tokio::sync::watch` channel, which is how the hosting node (and through it every subscriber)
//! learns of a commit without polling.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot_free::Mutex;

use super::{ProposalOutcome, TypeConfig};
use crate::map::ClusterMap;
use crate::map_channel::{MapSender, publish_newer};

/// `std`'s mutex, poison ignored: the guarded data stays consistent between statements.
mod parking_lot_free {
    /// A mutex whose `lock` never fails.
    #[derive(Default)]
    pub(super) struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        /// Wraps `value`.
        pub(super) fn new(value: T) -> Self {
            Mutex(std::sync::Mutex::new(value))
        }

        /// Locks, ignoring poison.
        pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

type NodeIdT = u64;
type Node = openraft::BasicNode;

#[derive(Default)]
struct LogInner {
    last_purged: Option<LogId<NodeIdT>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    committed: Option<LogId<NodeIdT>>,
    vote: Option<Vote<NodeIdT>>,
}

/// The Raft log. Clones share one log.
#[derive(Clone, Default)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeIdT>> {
        let inner = self.inner.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeIdT>> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeIdT>) -> Result<(), StorageError<NodeIdT>> {
        self.inner.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeIdT>>, StorageError<NodeIdT>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeIdT>>,
    ) -> Result<(), StorageError<NodeIdT>> {
        self.inner.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeIdT>>, StorageError<NodeIdT>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeIdT>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        {
            let mut inner = self.inner.lock();
            for entry in entries {
                inner.entries.insert(entry.get_log_id().index, entry);
            }
        }
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeIdT>) -> Result<(), StorageError<NodeIdT>> {
        let mut inner = self.inner.lock();
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeIdT>) -> Result<(), StorageError<NodeIdT>> {
        let mut inner = self.inner.lock();
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.last_purged = Some(log_id);
        Ok(())
    }
}

/// What a snapshot holds: the map and the membership, as of a log position.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotBody {
    map: ClusterMap,
}

#[derive(Default)]
struct MachineInner {
    /// The map as of `last_applied`: the machine's own, apart from the channel it publishes
    /// on, which the node may advance first with a map a faster member pushed it.
    applied: Arc<ClusterMap>,
    last_applied: Option<LogId<NodeIdT>>,
    membership: StoredMembership<NodeIdT, Node>,
    snapshot: Option<(SnapshotMeta<NodeIdT, Node>, Vec<u8>)>,
    snapshots_built: u64,
}

/// The state machine: the cluster map. Clones share one machine.
#[derive(Clone)]
pub(crate) struct MapMachine {
    inner: Arc<Mutex<MachineInner>>,
    map: MapSender,
}

impl MapMachine {
    /// A machine holding the empty map, publishing on `map`.
    pub(crate) fn new(map: MapSender) -> MapMachine {
        MapMachine {
            inner: Arc::new(Mutex::new(MachineInner::default())),
            map,
        }
    }

    /// The map as of the last applied entry.
    pub(crate) fn current(&self) -> Arc<ClusterMap> {
        self.inner.lock().applied.clone()
    }

    /// Publishes `map`, the machine's own now, unless the channel has a newer one.
    fn publish(&self, map: ClusterMap) {
        publish_newer(&self.map, map);
    }

    // openraft's storage traits fix the error type, large as it is.
    #[allow(clippy::result_large_err)]
    fn snapshot_now(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeIdT>> {
        // The map, its log position and the membership are read under one lock, as `apply`
        // changes them under one: openraft builds snapshots while it applies entries.
        let mut inner = self.inner.lock();
        let body = SnapshotBody {
            map: (*inner.applied).clone(),
        };
        let data = serde_json::to_vec(&body).map_err(|e| StorageIOError::read_state_machine(&e))?;
        inner.snapshots_built += 1;
        let snapshot_id = format!(
            "{}-{}",
            inner.last_applied.map_or(0, |l| l.index),
            inner.snapshots_built
        );
        let meta = SnapshotMeta {
            last_log_id: inner.last_applied,
            last_membership: inner.membership.clone(),
            snapshot_id,
        };
        inner.snapshot = Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftSnapshotBuilder<TypeConfig> for MapMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeIdT>> {
        self.snapshot_now()
    }
}

impl RaftStateMachine<TypeConfig> for MapMachine {
    type SnapshotBuilder = MapMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeIdT>>, StoredMembership<NodeIdT, Node>), StorageError<NodeIdT>>
    {
        let inner = self.inner.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalOutcome>, StorageError<NodeIdT>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        for entry in entries {
            let log_id = *entry.get_log_id();
            // Each entry's effects and its log position change under one lock (see
            // `snapshot_now`); the map is published after.
            let mut adopted = None;
            let outcome = {
                let mut inner = self.inner.lock();
                let outcome = match entry.payload {
                    EntryPayload::Blank => ProposalOutcome::NotAProposal,
                    EntryPayload::Membership(membership) => {
                        inner.membership = StoredMembership::new(Some(log_id), membership);
                        ProposalOutcome::NotAProposal
                    }
                    EntryPayload::Normal(proposal) => {
                        let current = inner.applied.epoch;
                        if proposal.base == current && proposal.map.epoch == current + 1 {
                            inner.applied = Arc::new(proposal.map.clone());
                            adopted = Some(proposal.map);
                            ProposalOutcome::Applied
                        } else {
                            ProposalOutcome::Stale { current }
                        }
                    }
                };
                inner.last_applied = Some(log_id);
                outcome
            };
            if let Some(map) = adopted {
                self.publish(map);
            }
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeIdT>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeIdT, Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeIdT>> {
        let data = snapshot.into_inner();
        let body: SnapshotBody = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        {
            let mut inner = self.inner.lock();
            inner.applied = Arc::new(body.map.clone());
            inner.last_applied = meta.last_log_id;
            inner.membership = meta.last_membership.clone();
            inner.snapshot = Some((meta.clone(), data));
        }
        // The channel may hold a newer map already (pushed by a faster member); `publish`
        // publishes only a newer one.
        self.publish(body.map);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeIdT>> {
        let inner = self.inner.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, data)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::watch;

    use super::*;

    #[test]
    fn the_log_store_passes_openraft_s_storage_suite() {
        openraft::testing::Suite::test_all(StoreBuilder).unwrap();
    }

    fn proposal(index: u64, base: u64, map: &ClusterMap) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(super::super::Proposal {
                base,
                map: map.clone(),
            }),
        }
    }

    fn map_at(epoch: u64) -> ClusterMap {
        ClusterMap {
            epoch,
            ..ClusterMap::empty()
        }
    }

    #[tokio::test]
    async fn a_map_pushed_ahead_of_raft_does_not_make_its_own_entry_stale() {
        let (tx, rx) = watch::channel(Arc::new(ClusterMap::empty()));
        let mut machine = MapMachine::new(tx.clone());
        let outcomes = machine.apply([proposal(1, 0, &map_at(1))]).await.unwrap();
        assert!(matches!(outcomes[..], [ProposalOutcome::Applied]));
        // A follower applied epoch 2 first and pushed it to this node, which published it.
        publish_newer(&tx, map_at(2));
        let outcomes = machine.apply([proposal(2, 1, &map_at(2))]).await.unwrap();
        assert!(
            matches!(outcomes[..], [ProposalOutcome::Applied]),
            "{outcomes:?}"
        );
        assert_eq!(machine.current().epoch, 2);
        // A proposal on an old base is still refused, and publishing never goes back.
        let outcomes = machine.apply([proposal(3, 1, &map_at(2))]).await.unwrap();
        assert!(matches!(
            outcomes[..],
            [ProposalOutcome::Stale { current: 2 }]
        ));
        assert_eq!(rx.borrow().epoch, 2);
    }

    struct StoreBuilder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, MapMachine, ()> for StoreBuilder {
        async fn build(&self) -> Result<((), LogStore, MapMachine), StorageError<NodeIdT>> {
            let (tx, _) = watch::channel(Arc::new(ClusterMap::empty()));
            Ok(((), LogStore::default(), MapMachine::new(tx)))
        }
    }
}
