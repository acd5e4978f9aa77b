//! One node's tracking connection: the near cache's fills go on it, and the node's
//! invalidations of what they read come back on it, as RESP3 pushes among the replies.
//!
//! Because pushes and replies share one ordered connection, and a node writes the
//! invalidations waiting for a connection ahead of any reply it sends there, a reply to a
//! request sent at time `t` proves that the cache has seen the invalidation of every write the
//! node acknowledged before `t`. The tracker keeps the send time of the latest request so
//! answered ([`Tracker::verified_by`]); entries are served only while it is recent
//! ([`Tracker::fresh`]). A heartbeat `PING` every fifth of the staleness bound keeps it
//! recent while the node's entries are being read. When the connection ends, or a heartbeat
//! goes unanswered for the request timeout, the tracker starts a new generation: entries and
//! fills of older generations are never served or stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_proto::reply::Value;
use tokio::sync::Notify;

use crate::conn::{Conn, PushSink};
use crate::error::Error;

use super::NearCache;

/// How long after its entries were last read a node stops getting heartbeats.
const IDLE_AFTER_MS: u64 = 1_000;
/// How long after a tracking connection could not be opened the next attempt waits.
const RETRY_OPEN_AFTER: Duration = Duration::from_secs(1);

/// A node's tracking connection and what it has proved.
pub(crate) struct Tracker {
    /// The node (`host:port`).
    pub addr: Arc<str>,
    conn: Mutex<Option<Conn>>,
    /// Bumped when the connection ends or is replaced, and on a null invalidation.
    generation: AtomicU64,
    /// When (the cache's clock, ms) the latest request answered in this generation was sent;
    /// 0: none yet.
    verified: AtomicU64,
    /// When an entry of the node was last read or filled (ms).
    used: AtomicU64,
    /// Wakes an idle heartbeat.
    wake: Notify,
    /// Set when the node left the map: the heartbeat stops.
    retired: AtomicBool,
    /// Whether the store may hold entries of the node: set by every fill that reaches the
    /// store ([`Tracker::admit`]), cleared by a flush of the node ([`Tracker::release`]). A
    /// flush of a node the store holds nothing of skips the scan of the whole store: a node
    /// that is down is dialled again (once a second) for as long as it is down, and each
    /// failed attempt ends a connection.
    held: AtomicBool,
}

impl Tracker {
    /// A tracker for `addr`, not connected yet.
    pub fn new(addr: Arc<str>) -> Tracker {
        Tracker {
            addr,
            conn: Mutex::new(None),
            generation: AtomicU64::new(1),
            verified: AtomicU64::new(0),
            used: AtomicU64::new(0),
            wake: Notify::new(),
            retired: AtomicBool::new(false),
            held: AtomicBool::new(false),
        }
    }

    /// The current generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether an entry filled in `generation` may be served at `now` (ms): the generation is
    /// current and a request answered on it was sent within `bound` ms.
    #[inline]
    pub fn fresh(&self, generation: u64, now: u64, bound: u64) -> bool {
        let verified = self.verified.load(Ordering::Acquire);
        verified != 0 && self.generation() == generation && now.saturating_sub(verified) <= bound
    }

    /// A request sent at `sent` (ms) in `generation` was answered.
    pub fn verified_by(&self, sent: u64, generation: u64) {
        if self.generation() == generation {
            self.verified.fetch_max(sent, Ordering::AcqRel);
        }
    }

    /// Starts a new generation: nothing filled before is served or stored.
    pub fn new_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.verified.store(0, Ordering::Release);
    }

    /// Whether a fill sent in `generation` may be stored (checked under the store's lock of
    /// its key): the generation is still current. Notes first that the store may hold an
    /// entry of the node, so that a flush that starts a new generation after the check sees
    /// the note ([`Tracker::release`]). A refused fill leaves the note too: one more scan at
    /// the next flush, never a missed one.
    pub fn admit(&self, generation: u64) -> bool {
        self.held.store(true, Ordering::Relaxed);
        // With the fence in `release`: either this check sees the new generation, or the
        // flush sees the note.
        fence(Ordering::SeqCst);
        self.generation() == generation
    }

    /// Starts a new generation ([`Tracker::new_generation`]) and says whether the store may
    /// hold entries of the node: whether a fill was admitted since the last release. The
    /// caller that gets `true` removes them.
    pub fn release(&self) -> bool {
        self.new_generation();
        fence(Ordering::SeqCst);
        self.held.swap(false, Ordering::Relaxed)
    }

    /// An entry of the node was read or filled at `now` (ms): heartbeats go on (and resume if
    /// they had stopped).
    #[inline]
    pub fn touch(&self, now: u64) {
        let used = self.used.load(Ordering::Relaxed);
        if now > used + 5 {
            self.used.store(now, Ordering::Relaxed);
            if now > used + IDLE_AFTER_MS {
                self.wake.notify_one();
            }
        }
    }

    /// The tracking connection, opened (with `CLIENT TRACKING ON`) if there is none alive;
    /// `None` for a second after one could not be opened (a node down, or one that refuses
    /// `CLIENT TRACKING`: reads then go the usual way, without a connection attempt each).
    pub fn conn(self: &Arc<Self>, cache: &Arc<NearCache>) -> Option<Conn> {
        let mut slot = self.conn.lock();
        if let Some(conn) = &*slot {
            if conn.is_alive() {
                return Some(conn.clone());
            }
            if conn
                .open_failure()
                .is_some_and(|(at, _)| at.elapsed() < RETRY_OPEN_AFTER)
            {
                return None;
            }
        }
        let sink = Arc::new(Sink {
            cache: Arc::downgrade(cache),
            tracker: Arc::downgrade(self),
        });
        let conn = cache.open_conn(&self.addr, sink);
        *slot = Some(conn.clone());
        Some(conn)
    }

    /// Drops the connection (a new one opens at the next request).
    fn drop_conn(&self) {
        self.conn.lock().take();
    }

    /// Stops the heartbeat and closes the connection: the node left the map.
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.wake.notify_one();
        self.drop_conn();
    }
}

/// Where a tracking connection's pushes and end go.
struct Sink {
    cache: std::sync::Weak<NearCache>,
    tracker: std::sync::Weak<Tracker>,
}

impl PushSink for Sink {
    fn push(&self, items: Vec<Value>, seq: u64) {
        if let (Some(cache), Some(tracker)) = (self.cache.upgrade(), self.tracker.upgrade()) {
            cache.on_push(&tracker, items, seq);
        }
    }

    fn ended(&self) {
        if let (Some(cache), Some(tracker)) = (self.cache.upgrade(), self.tracker.upgrade()) {
            cache.on_connection_end(&tracker);
        }
    }
}

/// Sends `PING` on `tracker`'s connection every `interval` while its entries are read, and
/// records what each answer proves; a `PING` unanswered within `timeout` ends the connection.
/// Runs until the tracker is retired or the cache is gone.
pub(crate) async fn heartbeat(
    cache: std::sync::Weak<NearCache>,
    tracker: Arc<Tracker>,
    interval: Duration,
    timeout: Duration,
) {
    let ping = Bytes::from_static(b"*1\r\n$4\r\nPING\r\n");
    loop {
        tokio::time::sleep(interval).await;
        if tracker.retired.load(Ordering::Acquire) {
            return;
        }
        let (conn, generation, sent) = {
            let Some(cache) = cache.upgrade() else { return };
            let now = cache.now_ms();
            if now > tracker.used.load(Ordering::Relaxed) + IDLE_AFTER_MS {
                drop(cache);
                tracker.wake.notified().await;
                continue;
            }
            let Some(conn) = tracker.conn(&cache) else {
                continue;
            };
            (conn, tracker.generation(), now)
        };
        match conn.request(ping.clone(), false, timeout).await {
            Ok(Value::Simple(_)) => tracker.verified_by(sent, generation),
            Ok(_) => {}
            Err(Error::Timeout { .. }) => {
                // A node that does not answer within the request timeout may have lost
                // invalidations with it: start afresh.
                tracker.drop_conn();
                if let Some(cache) = cache.upgrade() {
                    cache.on_connection_end(&tracker);
                }
            }
            Err(_) => {} // the connection ended: its sink said so
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_says_whether_a_fill_was_admitted_since_the_last_one() {
        let tracker = Tracker::new("a:1".into());
        assert!(!tracker.release(), "nothing admitted yet");
        let generation = tracker.generation();
        assert!(tracker.admit(generation));
        assert!(tracker.admit(generation));
        assert!(tracker.release(), "admitted fills may have stored entries");
        assert!(!tracker.release(), "nothing since");
        assert!(!tracker.release());
        // A fill of an older generation is refused, and noted all the same.
        assert!(!tracker.admit(generation));
        assert!(tracker.release());
    }

    #[test]
    fn freshness_needs_a_recent_proof_in_the_current_generation() {
        let tracker = Tracker::new("a:1".into());
        let generation = tracker.generation();
        assert!(!tracker.fresh(generation, 100, 50), "nothing proved yet");
        tracker.verified_by(100, generation);
        assert!(tracker.fresh(generation, 100, 50));
        assert!(tracker.fresh(generation, 150, 50));
        assert!(!tracker.fresh(generation, 151, 50), "the proof is too old");
        // An older proof does not move it back.
        tracker.verified_by(90, generation);
        assert!(tracker.fresh(generation, 150, 50));
        tracker.new_generation();
        assert!(
            !tracker.fresh(generation, 100, 50),
            "an older generation is never fresh"
        );
        let next = tracker.generation();
        assert!(
            !tracker.fresh(next, 100, 50),
            "the new one has proved nothing yet"
        );
        // A proof of the old generation does not count for the new one.
        tracker.verified_by(120, generation);
        assert!(!tracker.fresh(next, 120, 50));
        tracker.verified_by(120, next);
        assert!(tracker.fresh(next, 120, 50));
    }
}
