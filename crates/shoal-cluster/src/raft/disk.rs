//! The controller's Raft state on disk, for a node started with `--dir` (in its `raft/`
//! subdirectory):
//!
//! * `log`: the log, append-only. A header (`SHOALLOG` and a format version), then records,
//!   each a little-endian `u32` length, the CRC-32 of the payload, and the payload (JSON): an
//!   entry, a truncation (every entry from an index on is gone) or a purge (every entry up to
//!   a log id is gone). Appends are flushed (`fdatasync`) before openraft is told they are
//!   written. Reading replays the records; a record cut short at the end (a crash in the
//!   middle of an append that was never acknowledged) is dropped, damage anywhere else is an
//!   error. When most records are dead the file is rewritten (atomically) with the live ones.
//! * `vote.json`, `committed.json`: the vote and the last committed log id, each replaced
//!   atomically (see `files`).
//! * `snapshot.json`: the state machine's last snapshot (its meta and the map), replaced
//!   atomically; a restarted member starts from it and re-applies the committed entries after.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use openraft::{Entry, LogId, RaftLogId as _};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::TypeConfig;
use crate::files::{crc32, read_if_exists, sync_parent, write_atomically};
use crate::node_dir::DirError;

/// The log file's first bytes.
const MAGIC: &[u8; 8] = b"SHOALLOG";

/// The log file's format version.
const VERSION: u32 = 1;

/// Header length: magic and version.
const HEADER: usize = MAGIC.len() + 4;

/// Bytes before a record's payload: its length and its CRC.
const RECORD_HEADER: usize = 8;

/// Dead records tolerated beyond twice the live ones before the log is rewritten.
const COMPACT_SLACK: u64 = 256;

/// One record of the log file.
#[derive(Serialize, Deserialize)]
enum Record {
    /// An entry, appended (boxed: a map is large; serialized as the entry itself).
    Entry(Box<Entry<TypeConfig>>),
    /// Every entry from this index on was removed.
    Truncate(u64),
    /// Every entry up to this log id was removed.
    Purge(LogId<u64>),
}

/// What the log file holds.
#[derive(Default)]
pub(crate) struct Loaded {
    /// Its live entries, by index.
    pub(crate) entries: BTreeMap<u64, Entry<TypeConfig>>,
    /// The last purged log id.
    pub(crate) last_purged: Option<LogId<u64>>,
}

/// The controller's `raft/` directory.
#[derive(Clone, Debug)]
pub(crate) struct RaftDir {
    path: PathBuf,
}

impl RaftDir {
    /// The directory at `path`, created if missing.
    pub(crate) fn open(path: &Path) -> Result<RaftDir, DirError> {
        std::fs::create_dir_all(path).map_err(|e| DirError::io(path, e))?;
        Ok(RaftDir {
            path: path.to_path_buf(),
        })
    }

    /// The path of `name` in it.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The JSON value in file `name`, if there is one.
    pub(crate) fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, DirError> {
        read_json(&self.file(name))
    }

    /// Replaces file `name` by `value` as JSON, atomically.
    pub(crate) fn write_json<T: Serialize>(&self, name: &str, value: &T) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
        write_atomically(&self.file(name), &bytes)
    }
}

/// The JSON value in the file at `path`, if there is one; a file that does not parse is an
/// error naming it.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, DirError> {
    let Some(bytes) = read_if_exists(path).map_err(|e| DirError::io(path, e))? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DirError::corrupt(path, e.to_string()))
}

/// The log file, open for appending.
pub(crate) struct LogFile {
    path: PathBuf,
    file: File,
    /// Records in the file (live or not).
    records: u64,
}

impl LogFile {
    /// Opens (or creates) the log file at `path` and reads what it holds.
    pub(crate) fn open(path: &Path) -> Result<(LogFile, Loaded), DirError> {
        let bytes = read_if_exists(path).map_err(|e| DirError::io(path, e))?;
        let (loaded, records, good_len) = match &bytes {
            None => {
                let mut file = File::create(path).map_err(|e| DirError::io(path, e))?;
                file.write_all(&header())
                    .and_then(|()| file.sync_all())
                    .and_then(|()| sync_parent(path))
                    .map_err(|e| DirError::io(path, e))?;
                (Loaded::default(), 0, HEADER as u64)
            }
            Some(bytes) => parse(bytes).map_err(|reason| DirError::corrupt(path, reason))?,
        };
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| DirError::io(path, e))?;
        if let Some(bytes) = &bytes
            && (bytes.len() as u64) > good_len
        {
            tracing::warn!(
                file = %path.display(),
                dropped = bytes.len() as u64 - good_len,
                "the Raft log ends in an unfinished record (a crash during an append): dropped"
            );
            file.set_len(good_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| DirError::io(path, e))?;
        }
        let log = LogFile {
            path: path.to_path_buf(),
            file,
            records,
        };
        Ok((log, loaded))
    }

    /// Appends `entries` and flushes them to disk.
    pub(crate) fn append(&mut self, entries: &[Entry<TypeConfig>]) -> std::io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for entry in entries {
            encode(&mut buf, &Record::Entry(Box::new(entry.clone())))?;
        }
        self.write(&buf, entries.len() as u64)
    }

    /// Records that every entry from `since` on is gone.
    pub(crate) fn truncate(&mut self, since: u64) -> std::io::Result<()> {
        let mut buf = Vec::new();
        encode(&mut buf, &Record::Truncate(since))?;
        self.write(&buf, 1)
    }

    /// Records that every entry up to `upto` is gone; rewrites the file when most of its
    /// records are dead (`live` being what remains).
    pub(crate) fn purge(
        &mut self,
        upto: LogId<u64>,
        live: &BTreeMap<u64, Entry<TypeConfig>>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        encode(&mut buf, &Record::Purge(upto))?;
        self.write(&buf, 1)?;
        if self.records > 2 * live.len() as u64 + COMPACT_SLACK {
            self.rewrite(upto, live)?;
        }
        Ok(())
    }

    /// Replaces the file by one holding only `upto` and the `live` entries.
    fn rewrite(
        &mut self,
        upto: LogId<u64>,
        live: &BTreeMap<u64, Entry<TypeConfig>>,
    ) -> std::io::Result<()> {
        let mut buf = header();
        encode(&mut buf, &Record::Purge(upto))?;
        for entry in live.values() {
            encode(&mut buf, &Record::Entry(Box::new(entry.clone())))?;
        }
        write_atomically(&self.path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.records = 1 + live.len() as u64;
        Ok(())
    }

    fn write(&mut self, buf: &[u8], records: u64) -> std::io::Result<()> {
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.records += records;
        Ok(())
    }
}

fn header() -> Vec<u8> {
    let mut buf = MAGIC.to_vec();
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf
}

fn encode(buf: &mut Vec<u8>, record: &Record) -> std::io::Result<()> {
    let payload = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(std::io::Error::other)?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Replays the records of a log file: what it holds, how many records, and the length of its
/// good part (a record cut short at the end is not in it). Damage is an error saying where.
fn parse(bytes: &[u8]) -> Result<(Loaded, u64, u64), String> {
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a Shoal Raft log (bad header)".into());
    }
    let version = u32::from_le_bytes(bytes[MAGIC.len()..HEADER].try_into().unwrap_or_default());
    if version != VERSION {
        return Err(format!(
            "format version {version}, this build reads {VERSION}"
        ));
    }
    let mut loaded = Loaded::default();
    let mut at = HEADER;
    let mut records = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if rest.len() < RECORD_HEADER {
            break; // Cut short.
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let Some(payload) = rest.get(RECORD_HEADER..RECORD_HEADER + len) else {
            break; // Cut short.
        };
        let last = at + RECORD_HEADER + len == bytes.len();
        if crc32(payload) != crc {
            if last {
                break; // Its write did not finish.
            }
            return Err(format!("record at byte {at}: checksum mismatch"));
        }
        let record: Record =
            serde_json::from_slice(payload).map_err(|e| format!("record at byte {at}: {e}"))?;
        match record {
            Record::Entry(entry) => {
                loaded.entries.insert(entry.get_log_id().index, *entry);
            }
            Record::Truncate(since) => {
                loaded.entries.split_off(&since);
            }
            Record::Purge(upto) => {
                loaded.entries = loaded.entries.split_off(&(upto.index + 1));
                loaded.last_purged = Some(upto);
            }
        }
        records += 1;
        at += RECORD_HEADER + len;
    }
    Ok((loaded, records, at as u64))
}
