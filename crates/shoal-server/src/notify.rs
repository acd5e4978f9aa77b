//! Keyspace notifications (`notify-keyspace-events`), as Redis 7 sends them: a command that
//! changes a key, and the store when a key expires or is evicted, publish the event on this
//! node's `__keyspace@0__:<key>` (the event's name as message) and `__keyevent@0__:<event>`
//! (the key as message) channels, for the classes configured. Like Redis Cluster's, they
//! reach this node's subscribers only. While no class is on, an event costs one atomic load.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use bytes::Bytes;
use shoal_frontdoor::Door;
use shoal_store::{KeyEvents, Removal};

/// The classes of events, with Redis's bits.
pub(crate) mod class {
    /// `K`: publish on `__keyspace@0__:<key>`.
    pub const KEYSPACE: u32 = 1 << 0;
    /// `E`: publish on `__keyevent@0__:<event>`.
    pub const KEYEVENT: u32 = 1 << 1;
    /// `g`: generic commands (`DEL`, `EXPIRE`, `RENAME`, ...).
    pub const GENERIC: u32 = 1 << 2;
    /// `$`: string commands.
    pub const STRING: u32 = 1 << 3;
    /// `l`: list commands.
    pub const LIST: u32 = 1 << 4;
    /// `s`: set commands.
    pub const SET: u32 = 1 << 5;
    /// `h`: hash commands.
    pub const HASH: u32 = 1 << 6;
    /// `z`: sorted set commands.
    pub const ZSET: u32 = 1 << 7;
    /// `x`: a key expired.
    pub const EXPIRED: u32 = 1 << 8;
    /// `e`: a key was evicted.
    pub const EVICTED: u32 = 1 << 9;
    /// `t`: stream commands.
    pub const STREAM: u32 = 1 << 10;
    /// `m`: a read missed its key (not part of `A`).
    pub const KEY_MISS: u32 = 1 << 11;
    /// `d`: module key types.
    pub const MODULE: u32 = 1 << 12;
    /// `n`: a key was created (not part of `A`).
    pub const NEW: u32 = 1 << 13;
    /// `A`: `g$lshzxetd`.
    pub const ALL: u32 =
        GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;
}

/// Parses `notify-keyspace-events`'s value into classes, as Redis does.
pub fn parse_classes(value: &str) -> Result<u32, String> {
    value.chars().try_fold(0, |flags, c| {
        Ok(flags
            | match c {
                'A' => class::ALL,
                'g' => class::GENERIC,
                '$' => class::STRING,
                'l' => class::LIST,
                's' => class::SET,
                'h' => class::HASH,
                'z' => class::ZSET,
                'x' => class::EXPIRED,
                'e' => class::EVICTED,
                'K' => class::KEYSPACE,
                'E' => class::KEYEVENT,
                't' => class::STREAM,
                'm' => class::KEY_MISS,
                'd' => class::MODULE,
                'n' => class::NEW,
                _ => return Err("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.".into()),
            })
    })
}

/// Shows classes as Redis's `CONFIG GET notify-keyspace-events` does.
pub fn format_classes(flags: u32) -> String {
    let mut out = String::new();
    if flags & class::ALL == class::ALL {
        out.push('A');
    } else {
        for (bit, c) in [
            (class::GENERIC, 'g'),
            (class::STRING, '$'),
            (class::LIST, 'l'),
            (class::SET, 's'),
            (class::HASH, 'h'),
            (class::ZSET, 'z'),
            (class::EXPIRED, 'x'),
            (class::EVICTED, 'e'),
            (class::STREAM, 't'),
            (class::MODULE, 'd'),
            (class::NEW, 'n'),
        ] {
            if flags & bit != 0 {
                out.push(c);
            }
        }
    }
    for (bit, c) in [
        (class::KEYSPACE, 'K'),
        (class::KEYEVENT, 'E'),
        (class::KEY_MISS, 'm'),
    ] {
        if flags & bit != 0 {
            out.push(c);
        }
    }
    out
}

/// The node's keyspace notifications.
pub(crate) struct KeyspaceEvents {
    classes: AtomicU32,
    door: Arc<Door>,
}

impl KeyspaceEvents {
    /// Notifications for `door`'s subscribers, off until [`KeyspaceEvents::set_classes`].
    pub(crate) fn new(door: Arc<Door>) -> KeyspaceEvents {
        KeyspaceEvents {
            classes: AtomicU32::new(0),
            door,
        }
    }

    /// Sets the classes sent (`notify-keyspace-events`).
    pub(crate) fn set_classes(&self, classes: u32) {
        self.classes.store(classes, Relaxed);
    }

    /// Whether events of `class` are published (to skip noting them otherwise).
    #[inline]
    pub(crate) fn wants(&self, class: u32) -> bool {
        let classes = self.classes.load(Relaxed);
        classes & class != 0 && classes & (class::KEYSPACE | class::KEYEVENT) != 0
    }

    /// `event` of class `class` happened to `key`: published if that class is on.
    #[inline]
    pub(crate) fn notify(&self, class: u32, event: &str, key: &[u8]) {
        if self.wants(class) {
            self.publish(self.classes.load(Relaxed), event, key);
        }
    }

    #[cold]
    fn publish(&self, classes: u32, event: &str, key: &[u8]) {
        if classes & class::KEYSPACE != 0 {
            let mut channel = b"__keyspace@0__:".to_vec();
            channel.extend_from_slice(key);
            self.door.publish(
                &Bytes::from(channel),
                &Bytes::copy_from_slice(event.as_bytes()),
            );
        }
        if classes & class::KEYEVENT != 0 {
            let channel = format!("__keyevent@0__:{event}");
            self.door
                .publish(&Bytes::from(channel), &Bytes::copy_from_slice(key));
        }
    }
}

impl KeyEvents for KeyspaceEvents {
    fn on_removed(&self, key: &[u8], cause: Removal) {
        match cause {
            Removal::Expired => self.notify(class::EXPIRED, "expired", key),
            Removal::Evicted => self.notify(class::EVICTED, "evicted", key),
        }
    }

    fn on_added(&self, key: &[u8]) {
        self.notify(class::NEW, "new", key);
    }

    fn on_fields_expired(&self, key: &[u8], emptied: bool) {
        self.notify(class::HASH, "hexpired", key);
        if emptied {
            self.notify(class::GENERIC, "del", key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_parse_and_show_as_redis_shows_them() {
        for (set, shown) in [
            ("Ex", "xE"),
            ("KEA", "AKE"),
            ("g$xK", "g$xK"),
            ("KEAnmt", "AKEm"),
            ("", ""),
            ("Kn", "nK"),
        ] {
            assert_eq!(format_classes(parse_classes(set).unwrap()), shown, "{set}");
        }
        assert!(parse_classes("Q").is_err());
    }
}
