//! The sampled access log (`--access-log PATH --access-log-sample RATE`): one JSON object a
//! line for a random share of the commands,
//!
//! ```text
//! {"ts":1796505514988,"client":"127.0.0.1:50412","cmd":"get","key":"user:1","bytes_in":16,"bytes_out":11,"latency_us":3,"result":"ok"}
//! ```
//!
//! `ts` in Unix milliseconds, `key` the command's first key (absent for keyless commands; bytes
//! that are not UTF-8 escaped as `\u00XX`, cut at 256), `result` `ok` or the error reply's code
//! (`ERR`, `WRONGTYPE`, ...).
//!
//! Off the request path: a sampled command formats its line and hands it to a bounded queue
//! ([`QUEUE`] lines; when full the line is dropped and counted, never waited for); a thread
//! of its own writes the lines, flushes at least every 200 ms, and when the file passes its
//! size cap renames it to `PATH.1` (replacing the older one) and starts a new one, so the log
//! never holds more than twice the cap. Which commands are sampled is decided per thread by a
//! countdown drawn at random, one load and one store per command.

use std::cell::Cell;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use parking_lot::Mutex;

/// Lines waiting for the writer at most.
pub const QUEUE: usize = 8192;
/// Bytes of a key shown at most.
const KEY_BYTES: usize = 256;

thread_local! {
    /// Commands left before this thread samples one (0: draw a countdown first).
    static COUNTDOWN: Cell<u64> = const { Cell::new(0) };
}

/// Why the access log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    /// The sample rate is not in 0..=1.
    #[error("access-log-sample must be between 0 and 1, not {0}")]
    Rate(f64),
    /// The file could not be opened for appending.
    #[error("cannot open the access log {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One sampled command, as the log writes it.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The client's address.
    pub client: &'a str,
    /// The command's full name (`get`, `config|get`).
    pub cmd: &'a str,
    /// Its first key, if it has keys.
    pub key: Option<&'a [u8]>,
    /// Bytes of the request.
    pub bytes_in: u64,
    /// Bytes of the reply (0 for a reply that comes later, through a proxy).
    pub bytes_out: u64,
    /// Microseconds it ran.
    pub latency_us: u64,
    /// `ok`, or the error reply's code.
    pub result: &'a str,
}

/// An open access log.
#[derive(Debug)]
pub struct AccessLog {
    /// One command in `1 / rate` on average is logged.
    mean_gap: f64,
    sender: Mutex<Option<SyncSender<String>>>,
    written: AtomicU64,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Opens (appends to) the log at `path`, logging a share `rate` (0 to 1) of the commands,
    /// rotating past `max_bytes`, and starts its writer thread.
    pub fn open(path: &Path, rate: f64, max_bytes: u64) -> Result<AccessLog, AccessLogError> {
        if !(0.0..=1.0).contains(&rate) || rate.is_nan() {
            return Err(AccessLogError::Rate(rate));
        }
        let file = open_append(path)?;
        let (sender, receiver) = sync_channel(QUEUE);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("shoal-access-log".into())
            .spawn(move || write_lines(receiver, file, path, max_bytes.max(4096)))
            .map_err(|source| AccessLogError::Open {
                path: PathBuf::from("(writer thread)"),
                source,
            })?;
        Ok(AccessLog {
            mean_gap: if rate > 0.0 {
                1.0 / rate
            } else {
                f64::INFINITY
            },
            sender: Mutex::new(Some(sender)),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    /// Whether the calling thread logs its current command (its countdown ran out).
    #[inline]
    pub fn due(&self) -> bool {
        COUNTDOWN.with(|c| {
            let left = match c.get() {
                0 => self.draw(),
                n => n,
            };
            if left <= 1 {
                c.set(self.draw());
                true
            } else {
                c.set(left - 1);
                false
            }
        })
    }

    /// A countdown: geometric with mean `1 / rate` (never 0; `u64::MAX` at rate 0).
    fn draw(&self) -> u64 {
        if self.mean_gap.is_infinite() {
            return u64::MAX;
        }
        if self.mean_gap <= 1.0 {
            return 1;
        }
        let p = 1.0 / self.mean_gap;
        let u: f64 = rand::random_range(f64::EPSILON..1.0);
        ((u.ln() / (1.0 - p).ln()).floor() as u64).saturating_add(1)
    }

    /// Queues `entry`'s line (dropped, and counted, if the writer is behind).
    pub fn record(&self, entry: &Entry<'_>) {
        let line = format_line(entry, crate::unix_time::unix_ms());
        let sender = self.sender.lock();
        let Some(sender) = sender.as_ref() else {
            return;
        };
        match sender.try_send(line) {
            Ok(()) => self.written.fetch_add(1, Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed)
            }
        };
    }

    /// Lines queued for writing so far.
    pub fn written(&self) -> u64 {
        self.written.load(Relaxed)
    }

    /// Lines dropped because the writer was behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Stops logging: the writer writes what is queued, flushes and ends.
    pub fn close(&self) {
        self.sender.lock().take();
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn open_append(path: &Path) -> Result<File, AccessLogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| AccessLogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// The writer thread: lines to the file, flushed at least every 200 ms, rotated past
/// `max_bytes`.
fn write_lines(receiver: Receiver<String>, file: File, path: PathBuf, max_bytes: u64) {
    let mut size = file.metadata().map_or(0, |m| m.len());
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    loop {
        match receiver.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if out.write_all(line.as_bytes()).is_err() {
                    continue;
                }
                size += line.len() as u64;
                if size >= max_bytes {
                    let _ = out.flush();
                    let rotated = path.with_extension(match path.extension() {
                        Some(ext) => format!("{}.1", ext.to_string_lossy()),
                        None => "1".to_string(),
                    });
                    if std::fs::rename(&path, &rotated).is_ok()
                        && let Ok(file) = open_append(&path)
                    {
                        out = BufWriter::with_capacity(64 * 1024, file);
                        size = 0;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                let _ = out.flush();
            }
            Err(RecvTimeoutError::Disconnected) => {
                let _ = out.flush();
                return;
            }
        }
    }
}

/// `entry` as a JSON line stamped `ts`.
fn format_line(entry: &Entry<'_>, ts: u64) -> String {
    let mut line = String::with_capacity(160);
    line.push_str("{\"ts\":");
    line.push_str(&ts.to_string());
    line.push_str(",\"client\":");
    json_string(&mut line, entry.client.as_bytes());
    line.push_str(",\"cmd\":");
    json_string(&mut line, entry.cmd.as_bytes());
    if let Some(key) = entry.key {
        line.push_str(",\"key\":");
        json_string(&mut line, &key[..key.len().min(KEY_BYTES)]);
    }
    for (name, value) in [
        ("bytes_in", entry.bytes_in),
        ("bytes_out", entry.bytes_out),
        ("latency_us", entry.latency_us),
    ] {
        line.push_str(",\"");
        line.push_str(name);
        line.push_str("\":");
        line.push_str(&value.to_string());
    }
    line.push_str(",\"result\":");
    json_string(&mut line, entry.result.as_bytes());
    line.push_str("}\n");
    line
}

/// Appends `bytes` as a JSON string: valid UTF-8 as it is (escaped where JSON wants), other
/// bytes as `\u00XX`.
fn json_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        for &b in chunk.invalid() {
            out.push_str(&format!("\\u00{b:02x}"));
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(key: Option<&'a [u8]>, result: &'a str) -> Entry<'a> {
        Entry {
            client: "127.0.0.1:5000",
            cmd: "get",
            key,
            bytes_in: 22,
            bytes_out: 9,
            latency_us: 3,
            result,
        }
    }

    #[test]
    fn lines_are_json_whatever_the_key() {
        let line = format_line(&entry(Some(b"a\"b\\c\n\xff\x01"), "ok"), 42);
        assert_eq!(
            line,
            "{\"ts\":42,\"client\":\"127.0.0.1:5000\",\"cmd\":\"get\",\"key\":\"a\\\"b\\\\c\\n\\u00ff\\u0001\",\"bytes_in\":22,\"bytes_out\":9,\"latency_us\":3,\"result\":\"ok\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(parsed["bytes_in"], 22);
        let keyless = format_line(&entry(None, "ERR"), 1);
        let parsed: serde_json::Value = serde_json::from_str(keyless.trim_end()).unwrap();
        assert!(parsed.get("key").is_none());
        assert_eq!(parsed["result"], "ERR");
        let long = vec![b'k'; 1000];
        let line = format_line(&entry(Some(&long), "ok"), 1);
        assert!(line.contains(&format!("\"{}\"", "k".repeat(KEY_BYTES))));
    }

    #[test]
    fn the_sample_rate_holds_on_average() {
        let dir = std::env::temp_dir().join(format!("shoal-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Each on a thread of its own: the countdown is the thread's.
        let count = |rate: f64, name: &str, commands: usize| {
            let log = AccessLog::open(&dir.join(name), rate, 1 << 20).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| (0..commands).filter(|_| log.due()).count())
                    .join()
                    .unwrap()
            })
        };
        let due = count(0.1, "rate.log", 100_000);
        assert!((8_000..12_000).contains(&due), "{due} of 100000 at 0.1");
        assert_eq!(count(1.0, "all.log", 1_000), 1_000);
        assert_eq!(count(0.0, "none.log", 1_000), 0);
        assert!(AccessLog::open(&dir.join("x.log"), 1.5, 1).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_rotates_past_its_cap() {
        let dir = std::env::temp_dir().join(format!("shoal-rotate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("access.log");
        let log = AccessLog::open(&path, 1.0, 4096).unwrap();
        for _ in 0..200 {
            log.record(&entry(Some(b"key"), "ok"));
        }
        log.close();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dir.join("access.log.1").exists() {
            assert!(std::time::Instant::now() < deadline, "never rotated");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(300));
        let current = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(dir.join("access.log.1")).unwrap().len();
        assert!(current < 4096 + 200 && old < 4096 + 200, "{current} {old}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
