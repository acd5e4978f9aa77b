//! `ACL LOG`: the latest denials (commands, keys, channels, failed authentications), with
//! identical ones grouped into one entry as Redis 7.0 groups them.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

/// Entries within this many milliseconds of each other may be grouped (Redis's
/// `ACL_LOG_GROUPING_MAX_TIME_DELTA`).
const GROUPING_MS: u64 = 60_000;
/// How many recent entries are looked at for a match.
const SCAN: usize = 10;

/// Why something was denied, as `ACL LOG`'s `reason` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The command.
    Command,
    /// A key.
    Key,
    /// A channel.
    Channel,
    /// A failed `AUTH` or `HELLO ... AUTH`.
    Auth,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

/// One entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// How many times it happened.
    pub count: u64,
    /// Why.
    pub reason: Reason,
    /// The command, key, channel, or (for `auth`) the command name as sent.
    pub object: Vec<u8>,
    /// The user (for `auth`, the name given).
    pub username: Vec<u8>,
    /// When it last happened, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// The client's `CLIENT LIST` line when it last happened.
    pub client_info: String,
}

impl Entry {
    /// The entry as `ACL LOG` shows it: `(field, value)` in Redis's order, `age-seconds` as of
    /// `now_ms`.
    pub fn age_seconds(&self, now_ms: u64) -> f64 {
        now_ms.saturating_sub(self.updated_ms) as f64 / 1000.0
    }

    /// The `reason` field.
    pub fn reason(&self) -> &'static str {
        self.reason.as_str()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The log, newest first.
#[derive(Debug)]
pub struct Log {
    entries: VecDeque<Entry>,
    max_len: usize,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            entries: VecDeque::new(),
            // Redis's `acllog-max-len`.
            max_len: 128,
        }
    }
}

impl Log {
    /// Records a denial: bumps a matching recent entry (same reason, object and user, within a
    /// minute) to the front, or adds a new one, dropping the oldest past the maximum length.
    pub fn add(&mut self, mut entry: Entry) {
        let found = self.entries.iter().take(SCAN).position(|e| {
            e.reason == entry.reason
                && e.updated_ms.abs_diff(entry.updated_ms) <= GROUPING_MS
                && e.object == entry.object
                && e.username == entry.username
        });
        if let Some(at) = found {
            let mut existing = self.entries.remove(at).expect("found");
            existing.count += 1;
            existing.updated_ms = entry.updated_ms;
            existing.client_info = std::mem::take(&mut entry.client_info);
            self.entries.push_front(existing);
            return;
        }
        self.entries.push_front(entry);
        self.entries.truncate(self.max_len);
    }

    /// The newest `count` entries.
    pub fn newest(&self, count: usize) -> Vec<Entry> {
        self.entries.iter().take(count).cloned().collect()
    }

    /// Empties the log (`ACL LOG RESET`).
    pub fn reset(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(object: &str, at: u64) -> Entry {
        Entry {
            count: 1,
            reason: Reason::Command,
            object: object.into(),
            username: b"alice".to_vec(),
            updated_ms: at,
            client_info: format!("at={at}"),
        }
    }

    #[test]
    fn identical_denials_are_grouped_within_a_minute() {
        let mut log = Log::default();
        log.add(entry("set", 1_000));
        log.add(entry("get", 2_000));
        log.add(entry("set", 3_000));
        let all = log.newest(10);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].object.as_slice(), all[0].count), (&b"set"[..], 2));
        assert_eq!(all[0].client_info, "at=3000");
        log.add(entry("set", 3_000 + GROUPING_MS + 1));
        assert_eq!(log.newest(10).len(), 3, "too late to group");
        log.reset();
        assert!(log.newest(10).is_empty());
    }

    #[test]
    fn the_log_keeps_the_newest_entries() {
        let mut log = Log::default();
        for i in 0..200 {
            log.add(entry(&format!("cmd{i}"), 0));
        }
        let all = log.newest(usize::MAX);
        assert_eq!(all.len(), 128);
        assert_eq!(all[0].object, b"cmd199");
    }
}
