//! The source's side of a migration, on the connection the target's primary opened: a
//! snapshot of the slots, then their part of the replication stream, then hand-overs, a batch
//! of slots at a time, until every slot asked for is the target's.
//!
//! A hand-over: the slots' writes wait ([`WriteGate`](crate::cluster::migrating::WriteGate));
//! every command other threads were running when the gate closed finishes (so a write that
//! passed its routing check just before is in the stream); the stream is sent up to its end
//! with a numbered `REPLCONF GETACK` after it, which the target acknowledges once it has
//! applied everything before it; then the controller's leader is told, and the map it answers
//! (the slots the target's) is installed here before the writes go on, and are redirected. If
//! the leader's answer is lost, the writes stay held until a newer map says how it went (or
//! this node's lease runs out, which stops its writes anyway). If anything else fails, the
//! writes go on here, the slots stay this shard's, and the target starts over later.
//!
//! One session per source and target shard runs at a time: a newer one (the target connected
//! again) makes the older one end. Before every step the session's slots are cut down to what
//! the installed map still has migrating to that target's current primary.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_cluster::{ClusterMap, Migration, NodeId, Role, ShardId, Slot};
use shoal_frontdoor::Stream;
use shoal_proto::{Limits, Parsed, RequestParser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::filter::SlotFilter;
use super::{SNAPSHOT_CHUNK, SNAPSHOT_STEP};
use crate::cluster::ClusterState;
use crate::cluster::migrating::{PausePhases, SlotSet};
use crate::replication::frames;
use crate::shared::Shared;

/// Snapshot steps between two yields when they find little to send.
const SNAPSHOT_YIELD_STEPS: u32 = 16;

/// Slots handed over at once at most.
const HAND_OVER_BATCH: usize = 1024;

/// How long the target may take to acknowledge a round of a hand-over.
const ROUND_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the source waits at a time for the target to apply what it was sent before a
/// hand-over (a snapshot's tail, which it may still be loading); no write waits on it, and the
/// source looks again at the map between waits.
const CATCH_UP_WAIT: Duration = Duration::from_secs(1);

/// Stream bytes read from the backlog at once.
const CHUNK: usize = 256 * 1024;

/// What a target asks for: `REPLCONF shoal-import <from>:<to>:<node>:<first>-<last>,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRequest {
    /// The source shard.
    pub from: ShardId,
    /// The target shard.
    pub to: ShardId,
    /// The node asking: the target shard's primary (as it believes).
    pub target: NodeId,
    /// The slots it wants, as inclusive ranges.
    pub slots: Vec<(Slot, Slot)>,
}

impl ImportRequest {
    /// Parses the value of `REPLCONF shoal-import`.
    pub fn parse(text: &str) -> Option<ImportRequest> {
        let mut parts = text.split(':');
        let from = ShardId(parts.next()?.parse().ok()?);
        let to = ShardId(parts.next()?.parse().ok()?);
        let target: NodeId = parts.next()?.parse().ok()?;
        let slots = parse_ranges(parts.next()?)?;
        (parts.next().is_none() && !slots.is_empty()).then_some(ImportRequest {
            from,
            to,
            target,
            slots,
        })
    }

    /// What `parse` reads back.
    pub fn render(&self) -> String {
        format!(
            "{}:{}:{:?}:{}",
            self.from.0,
            self.to.0,
            self.target,
            render_ranges(&self.slots)
        )
    }
}

/// `first-last,...` of inclusive slot ranges.
pub(crate) fn render_ranges(ranges: &[(Slot, Slot)]) -> String {
    let ranges: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    ranges.join(",")
}

/// What [`render_ranges`] wrote (`None` for anything else, or a slot out of range).
pub(crate) fn parse_ranges(text: &str) -> Option<Vec<(Slot, Slot)>> {
    text.split(',')
        .map(|range| {
            let (a, b) = range.split_once('-').unwrap_or((range, range));
            let (a, b): (Slot, Slot) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b && usize::from(b) < shoal_cluster::SLOTS).then_some((a, b))
        })
        .collect()
}

/// Why an import session ended early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SourceError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("refused: {0}")]
    Refused(String),
    #[error(transparent)]
    Stream(#[from] frames::StreamError),
    #[error("the target fell behind the backlog")]
    Behind,
    #[error("the keyspace was flushed: the target must start over")]
    Flushed,
    #[error("the stream started over (recording paused): the target must start over")]
    NewHistory,
    #[error("a newer session for these shards took over")]
    Superseded,
    /// The target did not answer in time.
    #[error("{0}")]
    TimedOut(&'static str),
}

/// Serves the target that sent `request` on `stream` until every slot it asked for is its, or
/// the session fails (the target then connects again).
pub(crate) async fn serve_import(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    request: ImportRequest,
) -> std::io::Result<()> {
    let result = serve(shared, stream, &request).await;
    match &result {
        Ok(()) => tracing::info!(from = %request.from, to = %request.to, "migration source done"),
        Err(SourceError::Refused(why)) => {
            let line = format!("-ERR {why}\r\n");
            let _ = stream.write_all(line.as_bytes()).await;
            tracing::info!(from = %request.from, to = %request.to, "migration refused: {why}");
        }
        Err(e) => tracing::warn!(from = %request.from, to = %request.to, "migration source: {e}"),
    }
    Ok(())
}

async fn serve(
    shared: &Arc<Shared>,
    stream: &mut Stream,
    request: &ImportRequest,
) -> Result<(), SourceError> {
    let cluster = shared
        .cluster
        .clone()
        .ok_or_else(|| SourceError::Refused("not a cluster node".into()))?;
    let mut slots = offered(&cluster, request)?;
    let generation = cluster.begin_source(request.from, request.to);
    let replication = &shared.replication;
    // Recording before the snapshot's offset is read: every change after it is in the
    // backlog, and replaying those states over the snapshot converges on this node's.
    replication.set_recording(true);
    let (replid, mut offset) = {
        let history = replication.history();
        (history.replid.clone(), history.backlog.end())
    };
    // The target clears, loads and applies these slots only: what this node sends.
    let line = format!("+IMPORT {offset} {}\r\n", render_ranges(&slots.ranges()));
    stream.write_all(line.as_bytes()).await?;
    let started = Instant::now();
    let keys = send_snapshot(shared, stream, &slots).await?;
    tracing::info!(
        from = %request.from,
        to = %request.to,
        slots = slots.len(),
        keys,
        took = ?started.elapsed(),
        "migration snapshot sent"
    );
    cluster
        .migration_stats
        .keys_sent
        .fetch_add(keys, std::sync::atomic::Ordering::Relaxed);
    let mut session = Session {
        shared,
        cluster: &cluster,
        stream,
        filter: SlotFilter::default(),
        raw: Vec::with_capacity(CHUNK),
        out: Vec::with_capacity(CHUNK),
        acks: RequestParser::new(Limits {
            max_bulk_len: 1024,
            max_args: 8,
        }),
        input: Vec::with_capacity(1024),
        marker: 0,
        replid,
    };
    loop {
        // Still this pair's session, and only what the map still moves to this target.
        if !cluster.is_source(request.from, request.to, generation) {
            return Err(SourceError::Superseded);
        }
        match offered(&cluster, request) {
            Ok(still) => slots.intersect(&still),
            Err(_) => return Ok(()),
        }
        if slots.is_empty() {
            return Ok(());
        }
        session.forward(&mut offset, &slots, true).await?;
        // The target applies what it has been sent (above all the snapshot's tail, which it may
        // still be loading) before the writes pause: the pause then waits only for the
        // changes made in the meantime. A target still busy is waited for again after a look
        // at the map.
        if !session.caught_up(CATCH_UP_WAIT).await? {
            continue;
        }
        session.forward(&mut offset, &slots, false).await?;
        let batch = first(&slots, HAND_OVER_BATCH);
        let handed = session
            .hand_over(request, &mut offset, &slots, &batch)
            .await?;
        if !handed.is_empty() {
            slots.subtract(&handed);
            cluster
                .migration_stats
                .slots_handed_over
                .fetch_add(handed.len() as u64, std::sync::atomic::Ordering::Relaxed);
        } else {
            // Not taken (a leader change, a map that moved on): keep streaming, try again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The slots of `request` this node sends: it is its shard's primary, the shard is the
/// request's source, and the map has them migrating to the request's target.
fn offered(cluster: &ClusterState, request: &ImportRequest) -> Result<SlotSet, SourceError> {
    let map = cluster.map();
    let me = cluster.myself().id;
    match map.placement_of(me) {
        Some((shard, Role::Primary)) if shard.id == request.from => {}
        _ => {
            return Err(SourceError::Refused(format!(
                "this node is not the primary of shard {}",
                request.from
            )));
        }
    }
    if map.shard(request.to).map(|s| s.primary) != Some(request.target) {
        return Err(SourceError::Refused(format!(
            "node {:?} is not the primary of shard {} in map {}",
            request.target, request.to, map.epoch
        )));
    }
    let mut slots = SlotSet::default();
    if let Some(m) = map
        .migrations
        .iter()
        .find(|m| m.from == request.from && m.to == request.to)
    {
        for &(a, b) in &request.slots {
            for slot in a..=b {
                if m.contains(slot) {
                    slots.insert(slot);
                }
            }
        }
    }
    if slots.is_empty() {
        return Err(SourceError::Refused(format!(
            "no slot of those is migrating from shard {} to shard {} in map {}",
            request.from, request.to, map.epoch
        )));
    }
    Ok(slots)
}

/// The first `n` slots of `slots`.
fn first(slots: &SlotSet, n: usize) -> SlotSet {
    let mut batch = SlotSet::default();
    for (a, b) in slots.ranges() {
        for slot in a..=b {
            if batch.len() == n {
                return batch;
            }
            batch.insert(slot);
        }
    }
    batch
}

/// Sends every live key of `slots` as stream frames, then the snapshot's end; returns how
/// many keys it sent.
async fn send_snapshot(
    shared: &Shared,
    stream: &mut Stream,
    slots: &SlotSet,
) -> Result<u64, SourceError> {
    let mut cursor = 0;
    let mut keys = 0u64;
    let mut buf = Vec::with_capacity(SNAPSHOT_CHUNK + 4096);
    let bandwidth = shared.config.read().migration_max_bandwidth.0;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut steps = 0u32;
    loop {
        steps += 1;
        cursor = shared
            .store
            .scan_entries(cursor, SNAPSHOT_STEP, |key, kind, value, expiry| {
                if slots.contains(shoal_cluster::key_slot(key)) {
                    frames::put_any(&mut buf, key, kind, value, expiry);
                    keys += 1;
                }
            });
        if buf.len() >= SNAPSHOT_CHUNK || cursor == 0 {
            stream.write_all(&buf).await?;
            sent += buf.len() as u64;
            buf.clear();
            tokio::task::yield_now().await;
            if bandwidth > 0 {
                // Held to `migration-max-bandwidth`: sleep until the bytes sent are due.
                let due = Duration::from_secs_f64(sent as f64 / bandwidth as f64);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(ahead).await;
                }
            }
        } else if steps.is_multiple_of(SNAPSHOT_YIELD_STEPS) {
            // Few keys of these slots here: the walk still lets the worker's clients run.
            tokio::task::yield_now().await;
        }
        if shared.replication.role() != crate::replication::Role::Primary {
            return Err(SourceError::Refused("no longer a primary".into()));
        }
        if cursor == 0 {
            stream.write_all(frames::SNAPSHOT_END).await?;
            return Ok(keys);
        }
    }
}

/// One import session's streaming state.
struct Session<'a> {
    shared: &'a Shared,
    cluster: &'a ClusterState,
    stream: &'a mut Stream,
    filter: SlotFilter,
    raw: Vec<u8>,
    out: Vec<u8>,
    acks: RequestParser,
    input: Vec<u8>,
    /// The last `GETACK` number sent.
    marker: u64,
    /// The stream's history the session's offsets count in.
    replid: String,
}

impl Session<'_> {
    /// Sends the stream from `offset` to the backlog's end (as it is now), cut down to
    /// `slots`. With `patient`, waits a little for news first when there is none (between
    /// hand-overs; never while writes are held).
    async fn forward(
        &mut self,
        offset: &mut u64,
        slots: &SlotSet,
        patient: bool,
    ) -> Result<(), SourceError> {
        let replication = &self.shared.replication;
        if patient && replication.offset() == *offset {
            replication
                .wait_for_growth(*offset, Duration::from_millis(20))
                .await;
        }
        loop {
            self.raw.clear();
            let read = {
                let history = replication.history();
                if history.role != crate::replication::Role::Primary {
                    return Err(SourceError::Refused("no longer a primary".into()));
                }
                if history.replid != self.replid {
                    return Err(SourceError::NewHistory);
                }
                history.backlog.read(*offset, CHUNK, &mut self.raw)
            };
            let n = read.ok_or(SourceError::Behind)?;
            if n == 0 {
                break;
            }
            *offset += n as u64;
            self.out.clear();
            let fed = self.filter.feed(&self.raw, slots, &mut self.out)?;
            if fed.flushed {
                return Err(SourceError::Flushed);
            }
            if !self.out.is_empty() {
                self.stream.write_all(&self.out).await?;
            } else {
                tokio::task::yield_now().await;
            }
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Hands `batch` over: holds its writes, streams until the target has everything of it,
    /// and has the controller move it. Returns the slots the map now gives the target: none
    /// if the hand-over was not taken, fewer than `batch` if some were no longer this
    /// source's to hand over (see [`WriteGate::close`](crate::cluster::migrating::WriteGate)).
    async fn hand_over(
        &mut self,
        request: &ImportRequest,
        offset: &mut u64,
        slots: &SlotSet,
        batch: &SlotSet,
    ) -> Result<SlotSet, SourceError> {
        let cluster = self.cluster;
        let started = Instant::now();
        // Only the slots this hand-over closed: one the map moved to another target meanwhile
        // may be held by that target's hand-over, which alone may open it.
        let mut batch = cluster.gate.close(batch);
        // And only those the map still moves to this target, now that their writes wait.
        match offered(cluster, request) {
            Ok(still) => {
                let mut gone = batch.clone();
                gone.subtract(&still);
                cluster.gate.open(&gone);
                batch.intersect(&still);
            }
            Err(_) => {
                cluster.gate.open(&batch);
                return Ok(SlotSet::default());
            }
        }
        if batch.is_empty() {
            return Ok(batch);
        }
        let mut phases = PausePhases::default();
        let result = self
            .hand_over_held(request, offset, slots, &batch, &mut phases)
            .await;
        cluster.gate.open(&batch);
        let paused = started.elapsed();
        cluster.migration_stats.record_pause(paused, phases);
        match &result {
            Ok(true) => tracing::info!(
                from = %request.from,
                to = %request.to,
                slots = batch.len(),
                ?paused,
                drain = ?phases.drain,
                catch_up = ?phases.catch_up,
                commit = ?phases.commit,
                "slots handed over"
            ),
            Ok(false) => {
                tracing::info!(from = %request.from, to = %request.to, "hand-over not taken")
            }
            Err(e) => {
                tracing::warn!(from = %request.from, to = %request.to, "hand-over failed: {e}")
            }
        }
        match result? {
            true => Ok(batch),
            false => Ok(SlotSet::default()),
        }
    }

    async fn hand_over_held(
        &mut self,
        request: &ImportRequest,
        offset: &mut u64,
        slots: &SlotSet,
        batch: &SlotSet,
        phases: &mut PausePhases,
    ) -> Result<bool, SourceError> {
        let started = Instant::now();
        // Every write that passed its check before the gate closed has run by now (its
        // changes are in the backlog), and none can pass it any more.
        self.shared.door.stats.commands_drained().await;
        phases.drain = started.elapsed();
        // Bounded as a whole, writes included: a target that stops reading without closing
        // the connection must not hold the batch's writes.
        let caught_up = async {
            self.forward(offset, slots, false).await?;
            self.round_trip(ROUND_TIMEOUT).await
        };
        tokio::time::timeout(ROUND_TIMEOUT, caught_up)
            .await
            .map_err(|_| {
                SourceError::TimedOut("the target did not take the batch's last changes")
            })??;
        phases.catch_up = started.elapsed() - phases.drain;
        let Some(node) = self.cluster.node() else {
            return Ok(false);
        };
        // The target may have changed (a failover) while it caught up: hand over only to the
        // primary the map names.
        if offered(self.cluster, request).is_err() {
            return Ok(false);
        }
        let before = self.cluster.map().epoch;
        let moved_in = |map: &ClusterMap| {
            batch
                .ranges()
                .iter()
                .all(|&(a, b)| (a..=b).all(|s| map.slots.get(s) == Some(request.to)))
        };
        let migration = Migration {
            from: request.from,
            to: request.to,
            slots: batch.ranges(),
        };
        let map = match node.hand_over(migration).await {
            Ok(map) => map,
            Err(e) => {
                // The leader may have committed it and the answer been lost: the held writes
                // must not run here if the slots are the target's. They wait until a newer
                // map says how it went, or until this node's lease runs out (which stops its
                // writes anyway).
                tracing::info!("the controller's answer to a hand-over: {e}; asking again");
                loop {
                    node.refresh().await;
                    let map = node.map();
                    if moved_in(&map) || map.epoch > before || !node.lease_valid() {
                        break map;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        let moved = moved_in(&map);
        // The held writes are redirected once they run again: this node must route by the
        // map that moved the slots before the gate opens.
        self.cluster.install(map);
        phases.commit = started.elapsed() - phases.drain - phases.catch_up;
        Ok(moved)
    }

    /// [`Session::round_trip`], waiting up to `wait` for the acknowledgement: whether it came.
    /// One that comes later is taken by the next round trip (they are numbered). Writing is not
    /// bounded, as the stream's is not outside a hand-over: a target busy loading a large
    /// snapshot reads late, and nothing waits on it.
    async fn caught_up(&mut self, wait: Duration) -> Result<bool, SourceError> {
        match self.round_trip(wait).await {
            Ok(()) => Ok(true),
            Err(SourceError::TimedOut(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sends a numbered `REPLCONF GETACK` after what was sent, and waits up to `limit` for the
    /// target to acknowledge it: it has then applied everything sent before.
    async fn round_trip(&mut self, limit: Duration) -> Result<(), SourceError> {
        self.marker += 1;
        let marker = self.marker.to_string();
        let getack = shoal_proto::request::encode(&["REPLCONF", "GETACK", &marker]);
        self.stream.write_all(&getack).await?;
        self.stream.flush().await?;
        self.await_ack(self.marker, limit).await
    }

    /// Reads the target's acknowledgements until `marker`'s, for up to `limit`.
    async fn await_ack(&mut self, marker: u64, limit: Duration) -> Result<(), SourceError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut consumed = 0;
            let mut acked = 0;
            while let Ok(Parsed::Command { consumed: n }) = self.acks.parse(&self.input[consumed..])
            {
                let argv = self.acks.argv(&self.input[consumed..]);
                if argv.len() == 3
                    && argv.get(0).eq_ignore_ascii_case(b"REPLCONF")
                    && argv.get(1).eq_ignore_ascii_case(b"ACK")
                {
                    acked =
                        acked.max(shoal_store::parse_i64(argv.get(2)).unwrap_or(0).max(0) as u64);
                }
                consumed += n;
            }
            self.input.drain(..consumed);
            if acked >= marker {
                return Ok(());
            }
            self.input.reserve(256);
            let read = tokio::time::timeout_at(
                deadline,
                AsyncReadExt::read_buf(&mut *self.stream, &mut self.input),
            )
            .await
            .map_err(|_| SourceError::TimedOut("the target did not acknowledge"))??;
            if read == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_requests_read_back_what_they_render() {
        let r = ImportRequest {
            from: ShardId(0),
            to: ShardId(3),
            target: NodeId(0xab),
            slots: vec![(0, 10), (42, 42), (16000, 16383)],
        };
        assert_eq!(r.render(), "0:3:00000000000000ab:0-10,42-42,16000-16383");
        assert_eq!(ImportRequest::parse(&r.render()), Some(r));
        let node = "00000000000000ab";
        for bad in [
            String::new(),
            "0:1".into(),
            format!("0:1:{node}:"),
            format!("0:1:{node}:5-3"),
            format!("0:1:{node}:0-16384"),
            format!("x:1:{node}:0-1"),
            format!("0:1:{node}:0-1:9"),
            "0:1:zz:0-1".into(),
        ] {
            assert_eq!(ImportRequest::parse(&bad), None, "{bad:?}");
        }
    }
}
