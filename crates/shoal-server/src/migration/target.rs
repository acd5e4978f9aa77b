//! The target's side of a migration: while the map has slots migrating from a shard to this
//! node's shard and this node is its primary, a task connects to that shard's primary (as a
//! replica would, with `masteruser`/`masterauth` and `tls-replication`), asks for the slots,
//! drops whatever an earlier attempt left of those the source says it will send (and this
//! node still imports), loads their snapshot, and applies their stream, answering the
//! source's numbered `GETACK`s. What it applies goes through the store's journal like any
//! change, so this node's replicas receive the slots too. It connects again after a failure,
//! for as long as slots from that shard are on their way here, and ends a session once the
//! map no longer moves any.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use shoal_cluster::{ClusterMap, Role, ShardId};
use shoal_proto::reply::Value;
use shoal_proto::request::encode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::source::ImportRequest;
use crate::cluster::migrating::SlotSet;
use crate::replication::frames::{Applied, Applier, StreamError};
use crate::replication::replica::{HANDSHAKE_TIMEOUT, PeerIo, connect_peer, read_reply};
use crate::replication::{LINK_SILENCE, Role as ReplRole};
use crate::shared::Shared;

/// Keys looked at per step of dropping an earlier attempt's keys.
const CLEAR_STEP: usize = 1000;

/// Why an import session ended.
#[derive(Debug, thiserror::Error)]
enum TargetError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the source answered {0}")]
    Refused(String),
    /// The source answered with an error: it does not send these slots (any more).
    #[error("the source answered: {0}")]
    NotSent(String),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Starts an import task for every shard slots migrate from to this node's shard, if this
/// node is its primary and none runs for that shard yet.
pub(crate) fn on_map(shared: &Arc<Shared>, map: &ClusterMap) {
    let Some(cluster) = &shared.cluster else {
        return;
    };
    let Some((shard, Role::Primary)) = map.placement_of(cluster.myself().id) else {
        return;
    };
    for m in map.migrations.iter().filter(|m| m.to == shard.id) {
        let fresh = cluster
            .importers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(m.from);
        if fresh {
            tokio::spawn(import_from(shared.clone(), m.from));
        }
    }
}

/// What this node should import from `from` now: the slots the map has migrating from it to
/// this node's shard, while this node is that shard's primary.
fn wanted(shared: &Shared, from: ShardId) -> Option<(ImportRequest, String)> {
    let cluster = shared.cluster.as_ref()?;
    let map = cluster.map();
    let (shard, Role::Primary) = map.placement_of(cluster.myself().id)? else {
        return None;
    };
    let m = map
        .migrations
        .iter()
        .find(|m| m.from == from && m.to == shard.id)?;
    let source = map.node(map.shard(from)?.primary)?.resp_addr();
    let request = ImportRequest {
        from,
        to: shard.id,
        target: cluster.myself().id,
        slots: m.slots.clone(),
    };
    Some((request, source))
}

/// Imports from shard `from` for as long as the map wants it.
async fn import_from(shared: Arc<Shared>, from: ShardId) {
    let Some(cluster) = shared.cluster.clone() else {
        return;
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some((request, source)) = wanted(&shared, from) else {
            cluster
                .importers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&from);
            // A map that wants it again may have come between the check and the removal.
            if wanted(&shared, from).is_some()
                && cluster
                    .importers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(from)
            {
                continue;
            }
            return;
        };
        match session(&shared, &source, &request).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                match e {
                    // The source refuses slots it no longer sends: the map that says so is
                    // on its way.
                    TargetError::NotSent(_) => {
                        tracing::info!(%source, from = %request.from, "migration import: {e}")
                    }
                    _ => tracing::warn!(%source, from = %request.from, "migration import: {e}"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One connection to the source, until it has handed every slot over or the link fails.
async fn session(
    shared: &Shared,
    source: &str,
    request: &ImportRequest,
) -> Result<(), TargetError> {
    let (auth, tls) = {
        let config = shared.config.read();
        let tls = match crate::cluster::host::peer_tls(&config) {
            Ok(tls) => tls,
            Err(e) => return Err(TargetError::Refused(format!("tls-replication: {e}"))),
        };
        (config.peer_auth(), tls)
    };
    let mut stream = connect_peer(source, tls.as_ref()).await?;
    let mut input = Vec::with_capacity(64 * 1024);
    let mut hello = Vec::new();
    if let Some(auth) = &auth {
        shoal_proto::request::encode_into(&mut hello, &auth.auth_command());
    }
    let asked = request.render();
    shoal_proto::request::encode_into(&mut hello, &["REPLCONF", "shoal-import", &asked]);
    shoal_proto::request::encode_into(&mut hello, &["PSYNC", "?", "-1"]);
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let mut last = String::new();
    for _ in 0..2 + usize::from(auth.is_some()) {
        let reply = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_reply(&mut stream, &mut input))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake reply"))??
            .map_err(TargetError::Refused)?;
        match reply {
            Value::Simple(line) => last = String::from_utf8_lossy(&line).into_owned(),
            Value::Error(line) => {
                return Err(TargetError::NotSent(
                    String::from_utf8_lossy(&line).into_owned(),
                ));
            }
            other => return Err(TargetError::Refused(format!("{other:?}"))),
        }
    }
    // `IMPORT <offset> <ranges>`: the slots the source will send.
    let sent = last
        .strip_prefix("IMPORT ")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(_, ranges)| super::source::parse_ranges(ranges))
        .ok_or_else(|| TargetError::Refused(last.clone()))?;
    let mut slots = SlotSet::of_ranges(&sent);
    slots.intersect(&importing(shared));
    let cleared = clear(shared, &slots).await;
    tracing::info!(
        %source,
        from = %request.from,
        slots = slots.len(),
        cleared,
        "importing slots"
    );
    let mut applier = Applier::new();
    let keys = load_snapshot(shared, &mut stream, &mut input, &mut applier).await?;
    if let Some(cluster) = &shared.cluster {
        cluster
            .migration_stats
            .keys_received
            .fetch_add(keys, Relaxed);
    }
    tracing::info!(%source, from = %request.from, keys, "migrated snapshot loaded");
    apply_stream(shared, request, &mut stream, &mut input, &mut applier).await
}

/// The slots migrating to this node's shard, as its installed map says.
fn importing(shared: &Shared) -> SlotSet {
    shared
        .cluster
        .as_ref()
        .map(|cluster| cluster.routing().importing_slots().clone())
        .unwrap_or_default()
}

/// Removes every key of `slots` (what an earlier attempt left: the source's may have changed
/// since), a step at a time between which the runtime's other tasks run; returns how many.
async fn clear(shared: &Shared, slots: &SlotSet) -> u64 {
    if slots.is_empty() {
        return 0;
    }
    let mut cursor = 0;
    let mut doomed = Vec::new();
    let mut removed = 0;
    loop {
        cursor = shared.store.scan(cursor, CLEAR_STEP, |key, _| {
            if slots.contains(shoal_cluster::key_slot(key)) {
                doomed.push(key.to_vec());
            }
        });
        for key in doomed.drain(..) {
            removed += u64::from(shared.store.remove(&key));
        }
        if cursor == 0 {
            return removed;
        }
        tokio::task::yield_now().await;
    }
}

/// Applies the snapshot up to its end; what it applied joins this node's own stream.
async fn load_snapshot(
    shared: &Shared,
    stream: &mut Box<dyn PeerIo>,
    input: &mut Vec<u8>,
    applier: &mut Applier,
) -> Result<u64, TargetError> {
    let mut keys = 0;
    loop {
        let mut end = None;
        let used = applier.apply(input, &shared.store, |n, applied| match applied {
            Applied::SnapshotEnd => end = Some(n),
            _ => keys += 1,
        })?;
        input.drain(..used);
        if end.is_some() {
            return Ok(keys);
        }
        input.reserve(256 * 1024);
        let read = tokio::time::timeout(LINK_SILENCE, stream.read_buf(input))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the source went silent")
            })??;
        if read == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// Applies the slots' stream and acknowledges each `GETACK` with how many arrived, until the
/// source closes the link (every slot handed over) or this node stops being a primary.
async fn apply_stream(
    shared: &Shared,
    request: &ImportRequest,
    stream: &mut Box<dyn PeerIo>,
    input: &mut Vec<u8>,
    applier: &mut Applier,
) -> Result<(), TargetError> {
    let mut markers = 0u64;
    let from = request.from;
    loop {
        if shared.replication.role() != ReplRole::Primary || wanted(shared, from).is_none() {
            return Ok(());
        }
        let before = markers;
        let used = applier.apply(input, &shared.store, |_, applied| {
            markers += u64::from(applied == Applied::AckRequested);
        })?;
        input.drain(..used);
        if markers > before {
            stream
                .write_all(&encode(&["REPLCONF", "ACK", &markers.to_string()]))
                .await?;
            stream.flush().await?;
        }
        input.reserve(64 * 1024);
        let read = tokio::time::timeout(LINK_SILENCE, stream.read_buf(input))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "the source went silent")
            })??;
        if read == 0 {
            return Ok(());
        }
    }
}
