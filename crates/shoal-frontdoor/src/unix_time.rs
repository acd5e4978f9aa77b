//! The wall clock as the logs and replies that show it read it (`LATENCY`, `SLOWLOG`,
//! `HOTKEYS`, the access log).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_secs() -> u64 {
    unix_ms() / 1000
}
