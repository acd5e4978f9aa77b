//! A primary's side of one replica's connection, after the replica sent `PSYNC`: a partial or
//! full resync, then the stream, while the replica's acknowledgements come back on the same
//! connection.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use shoal_frontdoor::Stream;
use shoal_proto::{Limits, Parsed, RequestParser};
use shoal_store::Store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{ReplicaPeer, Replication, Role, frames};
use crate::scripting::Functions;

/// Stream bytes sent per socket write at most.
const CHUNK: usize = 256 * 1024;

/// Keys per snapshot step (each step holds one shard's lock).
const SNAPSHOT_STEP: usize = 256;

/// Snapshot bytes encoded between two yields to the clients sharing the worker.
const SNAPSHOT_CHUNK: usize = 64 * 1024;

/// What a replica asked for: `PSYNC <replid> <offset>`, the offset being the next byte it
/// wants counted from 1, as Redis counts (`-1` and `?`: no history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsyncRequest {
    /// The history it has.
    pub replid: String,
    /// Its offset plus one.
    pub offset: i64,
}

/// How a resync starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resync {
    /// Stream from this offset of the current history.
    Continue {
        /// The current history's id.
        replid: String,
        /// Where the replica continues.
        from: u64,
    },
    /// Snapshot, then stream from this offset.
    Full {
        /// The current history's id.
        replid: String,
        /// The snapshot's offset.
        from: u64,
    },
}

/// Decides between a partial and a full resync (and starts recording if needed): a replica
/// continues if it has this history (or the one before, up to where that one ended) and the
/// backlog still holds its offset.
pub fn plan(replication: &Replication, request: &PsyncRequest) -> Resync {
    {
        let history = replication.history();
        let wanted = u64::try_from(request.offset - 1).ok();
        let same = request.replid == history.replid;
        let previous = history
            .replid2
            .as_ref()
            .is_some_and(|(id, end)| *id == request.replid && wanted.is_some_and(|w| w <= *end));
        if let Some(from) = wanted
            && (same || previous)
            && history.backlog.holds(from)
            && replication.recording()
        {
            replication.stats.sync_partial_ok.fetch_add(1, Relaxed);
            return Resync::Continue {
                replid: history.replid.clone(),
                from,
            };
        }
    }
    if request.replid != "?" {
        replication.stats.sync_partial_err.fetch_add(1, Relaxed);
        let history = replication.history();
        tracing::info!(
            asked_replid = %request.replid,
            asked_offset = request.offset,
            replid = %history.replid,
            replid2 = ?history.replid2,
            backlog_start = history.backlog.start(),
            backlog_end = history.backlog.end(),
            recording = replication.recording(),
            "partial resync refused"
        );
    }
    replication.stats.sync_full.fetch_add(1, Relaxed);
    // Recording starts before the snapshot's offset is read: every change after it is in the
    // backlog, and replaying those states over the snapshot converges on the primary's.
    replication.set_recording(true);
    let history = replication.history();
    Resync::Full {
        replid: history.replid.clone(),
        from: history.backlog.end(),
    }
}

/// Serves a replica on `stream` until it disconnects, falls too far behind, or this node
/// stops being a primary.
pub async fn serve(
    replication: &Arc<Replication>,
    store: &Store,
    functions: &Functions,
    stream: &mut Stream,
    request: PsyncRequest,
    peer: Arc<ReplicaPeer>,
) -> std::io::Result<()> {
    if replication.role() != Role::Primary {
        stream
            .write_all(b"-NOMASTERLINK this node is not a primary\r\n")
            .await?;
        return Ok(());
    }
    let resync = plan(replication, &request);
    let from = match &resync {
        Resync::Continue { replid, from } => {
            stream
                .write_all(format!("+CONTINUE {replid}\r\n").as_bytes())
                .await?;
            *from
        }
        Resync::Full { replid, from } => {
            stream
                .write_all(format!("+FULLRESYNC {replid} {from}\r\n").as_bytes())
                .await?;
            send_snapshot(replication, store, functions, stream).await?;
            *from
        }
    };
    tracing::info!(
        replica = %format!("{}:{}", peer.ip, peer.port),
        full = matches!(resync, Resync::Full { .. }),
        from,
        "streaming to a replica"
    );
    peer.online.store(true, Relaxed);
    stream_from(replication, stream, from, &peer).await
}

async fn send_snapshot(
    replication: &Replication,
    store: &Store,
    functions: &Functions,
    stream: &mut Stream,
) -> std::io::Result<()> {
    let mut cursor = 0;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    // The functions' set first (empty too: the replica's own set goes).
    frames::functions(&mut buf, &functions.dump());
    loop {
        cursor = store.scan_entries(cursor, SNAPSHOT_STEP, |key, kind, value, expiry| {
            frames::put_any(&mut buf, key, kind, value, expiry);
        });
        if buf.len() >= SNAPSHOT_CHUNK || cursor == 0 {
            stream.write_all(&buf).await?;
            buf.clear();
            // The snapshot shares the worker with clients: let them run between chunks
            // (a socket that keeps taking bytes would otherwise never make this task wait).
            tokio::task::yield_now().await;
        }
        if replication.role() != Role::Primary {
            return Err(std::io::Error::other("no longer a primary"));
        }
        if cursor == 0 {
            return stream.write_all(frames::SNAPSHOT_END).await;
        }
    }
}

async fn stream_from(
    replication: &Replication,
    stream: &mut Stream,
    offset: u64,
    peer: &ReplicaPeer,
) -> std::io::Result<()> {
    match stream {
        Stream::Plain(tcp) => {
            let (reader, writer) = tcp.split();
            stream_over(replication, reader, writer, offset, peer).await
        }
        Stream::Tls(tls) => {
            let (reader, writer) = tokio::io::split(tls);
            stream_over(replication, reader, writer, offset, peer).await
        }
    }
}

/// [`stream_from`] over the two halves of the connection.
async fn stream_over(
    replication: &Replication,
    mut reader: impl AsyncRead + Unpin,
    mut writer: impl AsyncWrite + Unpin,
    mut offset: u64,
    peer: &ReplicaPeer,
) -> std::io::Result<()> {
    let mut out: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut written = 0;
    let mut input: Vec<u8> = Vec::with_capacity(1024);
    let mut acks = RequestParser::new(Limits {
        max_bulk_len: 1024,
        max_args: 8,
    });
    loop {
        if written == out.len() {
            out.clear();
            written = 0;
            let history = replication.history();
            if history.role != Role::Primary {
                return Ok(());
            }
            match history.backlog.read(offset, CHUNK, &mut out) {
                Some(n) => offset += n as u64,
                None => {
                    return Err(std::io::Error::other(format!(
                        "the replica fell behind the backlog (offset {offset}, backlog from {})",
                        history.backlog.start()
                    )));
                }
            }
        }
        input.reserve(1024);
        if out.is_empty() {
            // All written: with TLS, what rustls still holds goes out before the wait (a
            // plain socket has nothing to flush).
            writer.flush().await?;
            tokio::select! {
                _ = replication.wait_for_growth(offset, Duration::from_secs(1)) => {
                    // Let the commands already waiting on this thread run first, so that one
                    // socket write carries all they write (as Redis flushes replica buffers
                    // once per event-loop turn) instead of one write per client batch.
                    tokio::task::yield_now().await;
                }
                read = reader.read_buf(&mut input) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    take_acks(&mut acks, &mut input, replication, peer);
                }
            }
        } else {
            tokio::select! {
                sent = writer.write(&out[written..]) => {
                    written += sent?;
                }
                read = reader.read_buf(&mut input) => {
                    if read? == 0 {
                        return Ok(());
                    }
                    take_acks(&mut acks, &mut input, replication, peer);
                }
            }
        }
    }
}

/// Reads `REPLCONF ACK <offset>` frames from a replica.
fn take_acks(
    parser: &mut RequestParser,
    input: &mut Vec<u8>,
    replication: &Replication,
    peer: &ReplicaPeer,
) {
    let mut consumed = 0;
    loop {
        match parser.parse(&input[consumed..]) {
            Ok(Parsed::Command { consumed: n }) => {
                let argv = parser.argv(&input[consumed..]);
                if argv.len() >= 3
                    && argv.get(0).eq_ignore_ascii_case(b"REPLCONF")
                    && argv.get(1).eq_ignore_ascii_case(b"ACK")
                    && let Some(ack) = shoal_store::parse_i64(argv.get(2))
                {
                    peer.ack.fetch_max(ack.max(0) as u64, Relaxed);
                    peer.last_ack_ms.store(replication.now_ms(), Relaxed);
                    peer.synced.store(true, Relaxed);
                    replication.acked.notify_waiters();
                }
                consumed += n;
            }
            Ok(Parsed::Empty { consumed: n }) => consumed += n,
            Ok(Parsed::Incomplete { .. }) => break,
            Err(e) => {
                tracing::debug!("a replica sent something other than acks: {e}");
                consumed = input.len();
                break;
            }
        }
    }
    input.drain(..consumed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(replid: &str, offset: i64) -> PsyncRequest {
        PsyncRequest {
            replid: replid.into(),
            offset,
        }
    }

    #[test]
    fn partial_resyncs_need_the_history_and_the_bytes() {
        let r = Replication::new(32);
        r.set_role_recording(Role::Primary, false);
        // No history yet: full.
        assert!(matches!(
            plan(&r, &request("?", -1)),
            Resync::Full { from: 0, .. }
        ));
        let journal = r.journal();
        journal.delete(b"k");
        let frame = r.offset();
        assert_eq!(frame, 20, "*2 $3 DEL $1 k");
        let id = r.history().replid.clone();
        // Same history, offset held: continue from it (the offset counts from 1).
        for from in [0, frame] {
            assert_eq!(
                plan(&r, &request(&id, from as i64 + 1)),
                Resync::Continue {
                    replid: id.clone(),
                    from
                }
            );
        }
        // Ahead of the primary, another history, or fallen out of the backlog: full.
        assert!(matches!(
            plan(&r, &request(&id, frame as i64 + 2)),
            Resync::Full { .. }
        ));
        assert!(matches!(
            plan(&r, &request("other", 1)),
            Resync::Full { .. }
        ));
        journal.delete(b"k2"); // 21 more bytes: the first ones fall out of 32
        assert!(matches!(plan(&r, &request(&id, 1)), Resync::Full { .. }));
        assert_eq!(r.stats.sync_partial_ok.load(Relaxed), 2);
        assert_eq!(r.stats.sync_partial_err.load(Relaxed), 3);
    }

    #[test]
    fn replicas_of_the_old_primary_continue_with_the_promoted_one() {
        let r = Replication::new(1024);
        r.set_role_recording(Role::Replica("p".into()), false);
        let old = r.history().replid.clone();
        r.append(&[b'x'; 100]);
        r.set_role_recording(Role::Primary, false);
        r.set_recording(true);
        // A replica at offset 80 of the old history continues; one past its end cannot.
        assert!(matches!(
            plan(&r, &request(&old, 81)),
            Resync::Continue { from: 80, .. }
        ));
        assert!(matches!(
            plan(&r, &request(&old, 101)),
            Resync::Continue { from: 100, .. }
        ));
        assert!(matches!(plan(&r, &request(&old, 102)), Resync::Full { .. }));
    }
}
