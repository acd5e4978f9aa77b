//! The slow log: commands that took at least `slowlog-log-slower-than` microseconds, as Redis
//! records them (at most 32 arguments, each cut at 128 bytes).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use crate::clients::ClientInfo;

const MAX_ARGS: usize = 32;
const MAX_ARG_LEN: usize = 128;

/// One slow command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowEntry {
    /// Increasing id.
    pub id: u64,
    /// Unix time in seconds when it ran.
    pub timestamp: u64,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// The arguments, shortened as Redis shortens them.
    pub args: Vec<Vec<u8>>,
    /// The client's address.
    pub client_addr: String,
    /// The client's name.
    pub client_name: Vec<u8>,
}

/// The slow log.
#[derive(Debug)]
pub struct SlowLog {
    entries: Mutex<VecDeque<SlowEntry>>,
    next_id: AtomicU64,
    slower_than_us: AtomicI64,
    max_len: AtomicU64,
}

impl SlowLog {
    /// An empty log with the given thresholds.
    pub fn new(slower_than_us: i64, max_len: u64) -> SlowLog {
        SlowLog {
            entries: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            slower_than_us: AtomicI64::new(slower_than_us),
            max_len: AtomicU64::new(max_len),
        }
    }

    /// Changes the thresholds (`CONFIG SET`).
    pub fn configure(&self, slower_than_us: i64, max_len: u64) {
        self.slower_than_us.store(slower_than_us, Relaxed);
        self.max_len.store(max_len, Relaxed);
        let mut entries = self.entries.lock();
        entries.truncate(max_len as usize);
    }

    /// `slowlog-log-slower-than`, in microseconds (negative: the log is off).
    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Relaxed)
    }

    /// Whether a command that took `duration_us` belongs in the log.
    #[inline]
    pub fn should_log(&self, duration_us: u64) -> bool {
        let threshold = self.slower_than_us.load(Relaxed);
        threshold >= 0 && duration_us >= threshold as u64
    }

    /// Adds a command of `count` arguments, `argv`.
    pub(crate) fn record<'a>(
        &self,
        argv: impl Iterator<Item = &'a [u8]>,
        count: usize,
        duration_us: u64,
        client: &ClientInfo,
    ) {
        let shown = count.min(MAX_ARGS);
        let mut args: Vec<Vec<u8>> = argv
            .take(shown)
            .enumerate()
            .map(|(i, arg)| {
                if i == MAX_ARGS - 1 && count > MAX_ARGS {
                    format!("... ({} more arguments)", count - MAX_ARGS + 1).into_bytes()
                } else if arg.len() > MAX_ARG_LEN {
                    let mut short = arg[..MAX_ARG_LEN].to_vec();
                    short.extend_from_slice(
                        format!("... ({} more bytes)", arg.len() - MAX_ARG_LEN).as_bytes(),
                    );
                    short
                } else {
                    arg.to_vec()
                }
            })
            .collect();
        args.truncate(MAX_ARGS);
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Relaxed),
            timestamp: crate::unix_time::unix_secs(),
            duration_us,
            args,
            client_addr: client.addr.to_string(),
            client_name: client.name().unwrap_or_default(),
        };
        let max_len = self.max_len.load(Relaxed) as usize;
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(max_len);
    }

    /// The newest `count` entries, newest first (`None`: all).
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let entries = self.entries.lock();
        entries
            .iter()
            .take(count.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the log.
    pub fn reset(&self) {
        self.entries.lock().clear();
    }
}
