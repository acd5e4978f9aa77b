//! The Raft log and state machine: in memory, and for a node with a directory (`--dir`) also on
//! disk (`super::disk`): the vote, the log and the committed log id are written before openraft
//! is told they are, and the state machine's snapshots are kept there; a restarted member
//! starts from its snapshot and re-applies the committed entries after it.
//!
//! The state machine is one [`ClusterMap`]; every map it applies is published on a
//! `tokio::sync::watch` channel, which is how the hosting node (and through it every subscriber)
//! learns of a commit without polling.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogId, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot_free::Mutex;

use super::disk::{LogFile, RaftDir};
use super::{ProposalOutcome, TypeConfig};
use crate::map::ClusterMap;
use crate::map_channel::{MapSender, publish_newer};
use crate::node_dir::DirError;

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

/// The vote file's name.
const VOTE: &str = "vote.json";
/// The committed log id's file name.
const COMMITTED: &str = "committed.json";
/// The snapshot's file name.
const SNAPSHOT: &str = "snapshot.json";
/// The log file's name.
const LOG: &str = "log";

#[derive(Default)]
struct LogInner {
    last_purged: Option<LogId<NodeIdT>>,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    committed: Option<LogId<NodeIdT>>,
    vote: Option<Vote<NodeIdT>>,
    /// Where it is kept, if on disk.
    disk: Option<(RaftDir, LogFile)>,
}

/// The Raft log. Clones share one log.
#[derive(Clone, Default)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// The log kept in `dir` (created if missing), with what it already holds.
    pub(crate) fn open(dir: &Path) -> Result<LogStore, DirError> {
        let dir = RaftDir::open(dir)?;
        let (file, loaded) = LogFile::open(&dir.file(LOG))?;
        let inner = LogInner {
            last_purged: loaded.last_purged,
            entries: loaded.entries,
            committed: dir.read_json(COMMITTED)?,
            vote: dir.read_json(VOTE)?,
            disk: Some((dir, file)),
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Appends `entries`, on disk first if it is kept there.
    fn append_now(&self, entries: Vec<Entry<TypeConfig>>) -> std::io::Result<()> {
        let mut inner = self.inner.lock();
        if let Some((_, file)) = &mut inner.disk {
            file.append(&entries)?;
        }
        for entry in entries {
            inner.entries.insert(entry.get_log_id().index, entry);
        }
        Ok(())
    }

    /// Whether it holds any Raft state (a vote or a log): a member that ran before.
    pub(crate) fn is_initialized(&self) -> bool {
        let inner = self.inner.lock();
        inner.vote.is_some() || !inner.entries.is_empty() || inner.last_purged.is_some()
    }
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
        let mut inner = self.inner.lock();
        if let Some((dir, _)) = &inner.disk {
            dir.write_json(VOTE, vote)
                .map_err(|e| StorageIOError::write_vote(&e))?;
        }
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeIdT>>, StorageError<NodeIdT>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeIdT>>,
    ) -> Result<(), StorageError<NodeIdT>> {
        let mut inner = self.inner.lock();
        if let Some((dir, _)) = &inner.disk {
            dir.write_json(COMMITTED, &committed)
                .map_err(|e| StorageIOError::write(&e))?;
        }
        inner.committed = committed;
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
        // On disk (and flushed) before openraft hears it is written.
        match self.append_now(entries.into_iter().collect()) {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::new(e.kind(), e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeIdT>) -> Result<(), StorageError<NodeIdT>> {
        let mut inner = self.inner.lock();
        if let Some((_, file)) = &mut inner.disk {
            file.truncate(log_id.index)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeIdT>) -> Result<(), StorageError<NodeIdT>> {
        let mut inner = self.inner.lock();
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.last_purged = Some(log_id);
        let inner = &mut *inner;
        if let Some((_, file)) = &mut inner.disk {
            file.purge(log_id, &inner.entries)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }
}

/// What a snapshot holds: the map and the membership, as of a log position.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotBody {
    map: ClusterMap,
}

/// A snapshot as kept on disk: its meta and its body (JSON, as text).
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeIdT, Node>,
    body: String,
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
    /// Where its snapshots are kept, if on disk.
    dir: Option<RaftDir>,
}

impl MapMachine {
    /// A machine holding the empty map, publishing on `map`.
    pub(crate) fn new(map: MapSender) -> MapMachine {
        MapMachine {
            inner: Arc::new(Mutex::new(MachineInner::default())),
            map,
            dir: None,
        }
    }

    /// A machine that keeps its snapshots in `dir`, starting from the last one there (whose
    /// map it publishes on `map`).
    pub(crate) fn open(map: MapSender, dir: &Path) -> Result<MapMachine, DirError> {
        let dir = RaftDir::open(dir)?;
        let mut inner = MachineInner::default();
        if let Some(stored) = dir.read_json::<StoredSnapshot>(SNAPSHOT)? {
            let body: SnapshotBody = serde_json::from_str(&stored.body)
                .map_err(|e| DirError::corrupt(&dir.file(SNAPSHOT), e.to_string()))?;
            inner.applied = Arc::new(body.map.clone());
            inner.last_applied = stored.meta.last_log_id;
            inner.membership = stored.meta.last_membership.clone();
            inner.snapshot = Some((stored.meta, stored.body.into_bytes()));
            publish_newer(&map, body.map);
        }
        Ok(MapMachine {
            inner: Arc::new(Mutex::new(inner)),
            map,
            dir: Some(dir),
        })
    }

    /// Keeps a snapshot on disk, if this machine has a directory.
    fn keep(&self, meta: &SnapshotMeta<NodeIdT, Node>, data: &[u8]) -> std::io::Result<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            body: String::from_utf8_lossy(data).into_owned(),
        };
        dir.write_json(SNAPSHOT, &stored)
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
        // On disk before openraft may purge the entries it covers.
        self.keep(&meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
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
        self.keep(meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
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
    use crate::node_dir::tests::Scratch;

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

    #[test]
    fn the_durable_store_passes_openraft_s_storage_suite() {
        openraft::testing::Suite::test_all(DiskStoreBuilder).unwrap();
    }

    /// Stores on disk, each in a directory of its own, removed with the guard.
    struct DiskStoreBuilder;

    impl openraft::testing::StoreBuilder<TypeConfig, LogStore, MapMachine, Scratch>
        for DiskStoreBuilder
    {
        async fn build(&self) -> Result<(Scratch, LogStore, MapMachine), StorageError<NodeIdT>> {
            let scratch = Scratch::new("suite");
            let (tx, _) = watch::channel(Arc::new(ClusterMap::empty()));
            let log = LogStore::open(&scratch.0).expect("opens");
            let machine = MapMachine::open(tx, &scratch.0).expect("opens");
            Ok((scratch, log, machine))
        }
    }

    fn blank(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
        log.append_now(entries).unwrap();
    }

    async fn indexes(log: &mut LogStore) -> Vec<u64> {
        log.try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.get_log_id().index)
            .collect()
    }

    #[tokio::test]
    async fn the_log_vote_and_committed_id_survive_a_reopen() {
        let scratch = Scratch::new("reopen");
        let mut log = LogStore::open(&scratch.0).unwrap();
        assert!(!log.is_initialized());
        let vote = Vote::new_committed(3, 7);
        log.save_vote(&vote).await.unwrap();
        append(&mut log, (1..=10).map(|i| blank(1, i)).collect()).await;
        append(&mut log, vec![proposal(11, 0, &map_at(1))]).await;
        log.save_committed(Some(*blank(1, 9).get_log_id()))
            .await
            .unwrap();
        drop(log);

        let mut log = LogStore::open(&scratch.0).unwrap();
        assert!(log.is_initialized());
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(
            log.read_committed().await.unwrap().map(|l| l.index),
            Some(9)
        );
        assert_eq!(indexes(&mut log).await, (1..=11).collect::<Vec<_>>());
        let last = log.try_get_log_entries(11..12).await.unwrap();
        assert!(
            matches!(&last[0].payload, EntryPayload::Normal(p) if p.map.epoch == 1),
            "the proposal comes back whole"
        );

        // Truncation and purging are kept too.
        log.truncate(*blank(1, 8).get_log_id()).await.unwrap();
        log.purge(*blank(1, 3).get_log_id()).await.unwrap();
        append(&mut log, vec![blank(2, 8)]).await;
        drop(log);
        let mut log = LogStore::open(&scratch.0).unwrap();
        assert_eq!(indexes(&mut log).await, vec![4, 5, 6, 7, 8]);
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(3));
        assert_eq!(state.last_log_id, Some(*blank(2, 8).get_log_id()));
    }

    #[tokio::test]
    async fn a_long_log_is_compacted_and_still_reads_back() {
        let scratch = Scratch::new("compact");
        let mut log = LogStore::open(&scratch.0).unwrap();
        for i in 1..=1000 {
            append(&mut log, vec![blank(1, i)]).await;
        }
        let big = std::fs::metadata(scratch.0.join(LOG)).unwrap().len();
        log.purge(*blank(1, 990).get_log_id()).await.unwrap();
        let small = std::fs::metadata(scratch.0.join(LOG)).unwrap().len();
        assert!(
            small * 20 < big,
            "{small} bytes after compaction, {big} before"
        );
        drop(log);
        let mut log = LogStore::open(&scratch.0).unwrap();
        assert_eq!(indexes(&mut log).await, (991..=1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_torn_last_record_is_dropped_and_damage_elsewhere_is_named() {
        let scratch = Scratch::new("torn");
        let mut log = LogStore::open(&scratch.0).unwrap();
        append(&mut log, (1..=3).map(|i| blank(1, i)).collect()).await;
        drop(log);
        let path = scratch.0.join(LOG);
        let whole = std::fs::read(&path).unwrap();
        // A crash in the middle of the last append.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        let mut log = LogStore::open(&scratch.0).unwrap();
        assert_eq!(indexes(&mut log).await, vec![1, 2]);
        append(&mut log, vec![blank(1, 3)]).await;
        drop(log);
        let mut log = LogStore::open(&scratch.0).unwrap();
        assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
        drop(log);
        // A flipped byte in the first record.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[30] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let err = LogStore::open(&scratch.0).err().unwrap();
        assert!(matches!(err, DirError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Not a log at all.
        std::fs::write(&path, b"hello").unwrap();
        let err = LogStore::open(&scratch.0).err().unwrap();
        assert!(err.to_string().contains("bad header"), "{err}");
        // A damaged vote.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(scratch.0.join(VOTE), b"{").unwrap();
        let err = LogStore::open(&scratch.0).err().unwrap();
        assert!(err.to_string().contains("vote.json"), "{err}");
    }

    #[tokio::test]
    async fn a_machine_starts_again_from_its_snapshot() {
        let scratch = Scratch::new("snapshot");
        let (tx, _) = watch::channel(Arc::new(ClusterMap::empty()));
        let mut machine = MapMachine::open(tx, &scratch.0).unwrap();
        machine.apply([proposal(1, 0, &map_at(1))]).await.unwrap();
        machine.apply([proposal(2, 1, &map_at(2))]).await.unwrap();
        let built = machine.build_snapshot().await.unwrap();
        drop(machine);
        let (tx, rx) = watch::channel(Arc::new(ClusterMap::empty()));
        let mut again = MapMachine::open(tx, &scratch.0).unwrap();
        assert_eq!(again.current().epoch, 2);
        assert_eq!(rx.borrow().epoch, 2, "the snapshot's map is published");
        let (applied, _) = again.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(2));
        let current = again.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
    }
}
