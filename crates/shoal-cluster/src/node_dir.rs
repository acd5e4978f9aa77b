//! A node's directory (`--dir`): what lets a restarted node come back as itself.
//!
//! * `lock`: held (`flock`) by the running node, with its pid inside: a second node given the
//!   same directory refuses to start and names the holder.
//! * `node-id`: the node's id (16 hex digits), chosen at its first start.
//! * `map.json`: the last map it held, replaced atomically on every change; a restarted node
//!   finds the controller's members there.
//! * `raft/`: a controller member's Raft state (see `raft::disk`).
//!
//! Keys are not kept: Shoal is a cache, and a restarted node comes back empty.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use crate::files::{read_if_exists, write_atomically};
use crate::map::{ClusterMap, NodeId};

/// The lock file's name.
const LOCK: &str = "lock";
/// The node id file's name.
const NODE_ID: &str = "node-id";
/// The last map's file name.
const MAP: &str = "map.json";
/// The Raft state's subdirectory.
const RAFT: &str = "raft";

/// Why a node's directory (or a file in it) cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Another running node holds the directory.
    #[error(
        "{} is in use by another running node (pid {}): give each node its own --dir",
        path.display(),
        pid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    Busy {
        /// The directory.
        path: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        pid: Option<u32>,
    },
    /// A file holds something this build cannot read.
    #[error("{} is damaged or not Shoal's: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl DirError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> DirError {
        DirError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> DirError {
        DirError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// A node's directory, locked for this process while the value lives.
#[derive(Debug)]
pub struct NodeDir {
    path: PathBuf,
    id: NodeId,
    last_map: Option<ClusterMap>,
    /// Held for the lock's sake.
    _lock: File,
}

impl NodeDir {
    /// Opens the directory at `path` (created if missing): takes its lock, reads the node's
    /// id (or chooses one and writes it) and the last map it held.
    pub fn open(path: &Path) -> Result<NodeDir, DirError> {
        std::fs::create_dir_all(path).map_err(|e| DirError::io(path, e))?;
        let path = path.canonicalize().map_err(|e| DirError::io(path, e))?;
        let lock = lock(&path)?;
        let id_path = path.join(NODE_ID);
        let id = match read_if_exists(&id_path).map_err(|e| DirError::io(&id_path, e))? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let text = text.trim();
                let id: NodeId = text.parse().map_err(|_| {
                    DirError::corrupt(
                        &id_path,
                        format!("{text:?} is not a node id (16 hex digits)"),
                    )
                })?;
                if id.0 == 0 {
                    return Err(DirError::corrupt(&id_path, "node id 0 is reserved"));
                }
                id
            }
            None => {
                let id = NodeId::random();
                write_atomically(&id_path, format!("{:016x}\n", id.0).as_bytes())
                    .map_err(|e| DirError::io(&id_path, e))?;
                id
            }
        };
        let map_path = path.join(MAP);
        let last_map: Option<ClusterMap> = crate::raft::disk::read_json(&map_path)?;
        if let Some(map) = &last_map {
            map.validate()
                .map_err(|why| DirError::corrupt(&map_path, why))?;
        }
        Ok(NodeDir {
            path,
            id,
            last_map,
            _lock: lock,
        })
    }

    /// Its path (absolute).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The last map the node held when it last ran, if any.
    pub fn last_map(&self) -> Option<&ClusterMap> {
        self.last_map.as_ref()
    }

    /// Records `map` as the last one the node held.
    pub fn save_map(&self, map: &ClusterMap) -> Result<(), DirError> {
        let path = self.path.join(MAP);
        let bytes = serde_json::to_vec(map).map_err(|e| DirError::io(&path, e.into()))?;
        write_atomically(&path, &bytes).map_err(|e| DirError::io(&path, e))
    }

    /// Where the controller keeps its Raft state.
    pub(crate) fn raft_path(&self) -> PathBuf {
        self.path.join(RAFT)
    }
}

/// Takes the lock of the directory at `dir` and writes this process's pid in it.
fn lock(dir: &Path) -> Result<File, DirError> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| DirError::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DirError::Busy {
                path: dir.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(DirError::io(&path, e)),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.sync_all())
        .map_err(|e| DirError::io(&path, e))?;
    Ok(file)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory under the system's temp dir, removed when dropped.
    pub(crate) struct Scratch(pub(crate) PathBuf);

    impl Scratch {
        pub(crate) fn new(name: &str) -> Scratch {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("shoal-cluster-{}-{n}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_directory_keeps_its_id_and_map() {
        let scratch = Scratch::new("dir");
        let dir = NodeDir::open(&scratch.0).unwrap();
        let id = dir.id();
        assert!(dir.last_map().is_none());
        let mut map = ClusterMap::empty();
        map.epoch = 7;
        dir.save_map(&map).unwrap();
        drop(dir);
        let again = NodeDir::open(&scratch.0).unwrap();
        assert_eq!(again.id(), id);
        assert_eq!(again.last_map().map(|m| m.epoch), Some(7));
    }

    #[test]
    fn a_held_directory_names_its_holder() {
        let scratch = Scratch::new("busy");
        let _held = NodeDir::open(&scratch.0).unwrap();
        let err = NodeDir::open(&scratch.0).unwrap_err();
        assert!(
            matches!(err, DirError::Busy { pid: Some(pid), .. } if pid == std::process::id()),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(&scratch.0.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn bad_files_are_named() {
        let scratch = Scratch::new("bad");
        drop(NodeDir::open(&scratch.0).unwrap());
        std::fs::write(scratch.0.join(NODE_ID), "not an id\n").unwrap();
        let err = NodeDir::open(&scratch.0).unwrap_err();
        assert!(matches!(err, DirError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("node-id"), "{err}");
        std::fs::write(scratch.0.join(NODE_ID), "00000000000000ab\n").unwrap();
        std::fs::write(scratch.0.join(MAP), "{ torn").unwrap();
        let err = NodeDir::open(&scratch.0).unwrap_err();
        assert!(err.to_string().contains("map.json"), "{err}");
    }
}
