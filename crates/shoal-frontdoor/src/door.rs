//! [`Door`]: what every session of a node or a proxy shares.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::clients::Clients;
use crate::commands::table;
use crate::settings::{Limits, Settings};
use crate::slowlog::SlowLog;
use crate::stats::Stats;

/// How often [`Door::tick`] wants to run.
pub const TICK: Duration = Duration::from_millis(100);

/// What every session of a node or a proxy shares: settings, the client registry,
/// statistics, the slow log, and the signal to stop.
#[derive(Debug)]
pub struct Door {
    /// The live settings.
    pub settings: Settings,
    /// Connected clients.
    pub clients: Arc<Clients>,
    /// Statistics.
    pub stats: Stats,
    /// Users and permissions, the ACL file and the ACL log.
    pub acl: crate::acl::Acl,
    /// The slow log (a proxy leaves it off: its nodes keep theirs).
    pub slowlog: SlowLog,
    /// The sampled access log, once opened (`--access-log`).
    pub access_log: std::sync::OnceLock<crate::access_log::AccessLog>,
    /// The latency monitor (`LATENCY ...`, `latency-monitor-threshold`).
    pub latency: crate::latency::LatencyMonitor,
    /// Pub/Sub subscriptions of this server's connections.
    pub pubsub: Arc<crate::pubsub::PubSub>,
    /// Whether a script runs (a node's; a proxy's never does): see [`crate::busy`].
    pub busy: crate::busy::Busy,
    /// `CLIENT TRACKING`: the keys tracking clients read, and who to tell when they change.
    pub tracking: Arc<crate::tracking::Tracking>,
    started: Instant,
    started_unix: u64,
    run_id: String,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Door {
    /// `PUBLISH` to this server's subscribers (of `channel` and of patterns matching it),
    /// within `client-output-buffer-limit pubsub`; how many received it.
    pub fn publish(&self, channel: &bytes::Bytes, payload: &bytes::Bytes) -> usize {
        let limit = self.settings.pubsub_output_limit();
        self.counted(self.pubsub.publish(channel, payload, limit))
    }

    /// `SPUBLISH` to this server's subscribers of shard channel `channel`; how many received
    /// it.
    pub fn publish_shard(&self, channel: &bytes::Bytes, payload: &bytes::Bytes) -> usize {
        let limit = self.settings.pubsub_output_limit();
        self.counted(self.pubsub.publish_shard(channel, payload, limit))
    }

    /// Delivers a message relayed from upstream (a proxy's subscription on a node) to the
    /// subscribers of `name` it was for ([`PubSub::deliver_relayed`](crate::pubsub::PubSub::deliver_relayed)).
    pub fn deliver_relayed(
        &self,
        kind: crate::pubsub::Kind,
        name: &bytes::Bytes,
        channel: &bytes::Bytes,
        payload: &bytes::Bytes,
    ) -> usize {
        let limit = self.settings.pubsub_output_limit();
        self.counted(
            self.pubsub
                .deliver_relayed(kind, name, channel, payload, limit),
        )
    }

    /// `key` changed: tracking clients that read it, or broadcast a prefix of it, are told
    /// (one atomic load while nobody tracks). Called with the key's shard locked.
    #[inline]
    pub fn invalidate(&self, key: &[u8]) {
        if self.tracking.armed() {
            self.tracking
                .invalidate(key, self.settings.pubsub_output_limit());
        }
    }

    /// Every key is gone: every tracking client gets a null invalidation.
    pub fn invalidate_all(&self) {
        self.tracking.flush(self.settings.pubsub_output_limit());
    }

    /// The keys for which `gone` holds left this server (their slots moved to another node):
    /// their readers are told and they are forgotten, and every `BCAST` client gets a null
    /// invalidation (see [`Tracking::invalidate_where`](crate::tracking::Tracking::invalidate_where)).
    pub fn invalidate_where(&self, gone: impl Fn(&[u8]) -> bool) -> crate::tracking::Invalidated {
        let limit = self.settings.pubsub_output_limit();
        self.tracking.invalidate_where(gone, limit)
    }

    /// The remembered keys for which `gone` holds are invalidated and forgotten, `BCAST`
    /// clients left alone (see [`Tracking::forget_where`](crate::tracking::Tracking::forget_where)).
    pub fn forget_where(&self, gone: impl Fn(&[u8]) -> bool) -> usize {
        let limit = self.settings.pubsub_output_limit();
        self.tracking.forget_where(gone, limit)
    }

    /// Counts the subscribers a publication closed; how many received it.
    fn counted(&self, published: crate::pubsub::Published) -> usize {
        if published.closed > 0 {
            self.stats.output_buffer_disconnections.fetch_add(
                published.closed as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        published.received
    }

    /// A door with these limits and `default` user's password (`requirepass`); the slow log
    /// is off until configured.
    pub fn new(limits: Limits, requirepass: Option<&str>) -> Door {
        let acl = crate::acl::Acl::default();
        acl.set_default_password(requirepass);
        let clients = Arc::new(Clients::default());
        Door {
            tracking: Arc::new(crate::tracking::Tracking::new(clients.clone())),
            settings: Settings::new(&limits),
            acl,
            clients,
            stats: Stats::new(table().len()),
            slowlog: SlowLog::new(-1, 0),
            latency: crate::latency::LatencyMonitor::default(),
            access_log: std::sync::OnceLock::new(),
            pubsub: Arc::default(),
            busy: crate::busy::Busy::default(),
            started: Instant::now(),
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            run_id: new_run_id(),
            shutdown: tokio::sync::watch::channel(false).0,
        }
    }

    /// Whether a client connecting from `peer` is turned away by protected mode (see
    /// [`Settings::denies`]).
    pub fn denies(&self, peer: &std::net::SocketAddr) -> bool {
        self.settings.denies(peer, self.acl.default_nopass())
    }

    /// A random id for this run (`run_id` in `INFO`).
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// When it started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// When it started, in seconds since the Unix epoch.
    pub fn started_unix(&self) -> u64 {
        self.started_unix
    }

    /// Seconds since it started.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Asks every listener, connection and background task to stop.
    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
        // A running script would keep its thread (and so the shutdown) waiting forever: it
        // is stopped, as Redis's `SHUTDOWN NOSAVE` stops a busy one.
        self.busy.stop_for_shutdown();
    }

    /// A receiver that sees `true` once shutdown is requested.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// The front door's periodic work, every [`TICK`]: a sample for the instantaneous rates,
    /// and closing clients idle for longer than `timeout`.
    pub fn tick(&self) {
        self.stats
            .sample_rates(self.started.elapsed().as_millis() as u64);
        // A `HOTKEYS` session's `DURATION` ends here.
        self.stats.hotkeys.tick(&self.stats);
        // Sessions do not time their reads (no timer per read on the request path, and a
        // changed `timeout` reaches clients already waiting): idle ones are found here.
        let timeout = self.settings.timeout_seconds();
        if timeout > 0 {
            let closed = self.clients.kill_idle(timeout.saturating_mul(1000));
            if closed > 0 {
                tracing::debug!(closed, "closed idle clients");
            }
        }
    }

    /// Runs [`Door::tick`] every [`TICK`] until shutdown.
    pub async fn run_ticks(&self) {
        let mut shutdown = self.shutdown_signal();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => self.tick(),
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// A random 40-hex-digit run id, as Redis's.
fn new_run_id() -> String {
    use std::hash::BuildHasher as _;
    (0..40)
        .map(|i| {
            let random =
                std::collections::hash_map::RandomState::new().hash_one((i, Instant::now()));
            char::from_digit((random & 0xF) as u32, 16).expect("a nibble is a hex digit")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_counts_any_password_of_the_default_user() {
        let remote: std::net::SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let door = Door::new(Limits::default(), None);
        assert!(door.denies(&remote));
        door.acl
            .set_user(b"alice", &["on", ">pw", "+@all"])
            .unwrap();
        assert!(
            door.denies(&remote),
            "other users do not count: default has nopass"
        );
        door.acl.set_user(b"default", &[">pw"]).unwrap();
        assert!(!door.denies(&remote));
        door.acl.set_user(b"default", &["nopass"]).unwrap();
        assert!(door.denies(&remote));
        assert!(!Door::new(Limits::default(), Some("pw")).denies(&remote));
    }

    #[test]
    fn run_ids_are_forty_hex_digits() {
        let door = Door::new(Limits::default(), None);
        assert_eq!(door.run_id().len(), 40);
        assert!(door.run_id().bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(door.run_id(), Door::new(Limits::default(), None).run_id());
    }
}
