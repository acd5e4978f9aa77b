//! A directory for one test's files (node logs), removed when the test passes and kept when it
//! fails, so its logs can be read afterwards.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Set to `1` to keep every test directory, passing or not.
pub const KEEP_ENV: &str = "SHOAL_TEST_KEEP";

/// A fresh directory under the system's temp dir. Dropped while the thread is panicking (the
/// test failed), or with `SHOAL_TEST_KEEP=1`, it stays and its path is printed; otherwise it is
/// removed with everything in it.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    /// Creates `<tmp>/shoal-test-<pid>-<n>-<name>`.
    pub fn new(name: &str) -> Result<TestDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let path =
            std::env::temp_dir().join(format!("shoal-test-{}-{n}-{name}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("cannot create {}", path.display()), e))?;
        Ok(TestDir { path })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `file` inside it.
    pub fn join(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    fn keep() -> bool {
        std::thread::panicking() || std::env::var(KEEP_ENV).as_deref() == Ok("1")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if Self::keep() {
            eprintln!("shoal-testkit: kept {} for debugging", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `lines` lines of the file at `path` (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passing_test_leaves_nothing_behind() {
        let dir = TestDir::new("passing/one").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(dir.join("node.log"), "hello").unwrap();
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("passing-one")
        );
        drop(dir);
        if std::env::var(KEEP_ENV).as_deref() != Ok("1") {
            assert!(!path.exists());
        }
    }

    #[test]
    fn a_failing_test_keeps_its_directory() {
        let kept = std::thread::spawn(|| {
            let dir = TestDir::new("failing").unwrap();
            let path = dir.path().to_path_buf();
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _dir = dir;
                panic!("the test failed");
            }));
            path
        })
        .join()
        .unwrap();
        assert!(kept.exists());
        std::fs::remove_dir_all(kept).unwrap();
    }

    #[test]
    fn tail_gives_the_last_lines() {
        let dir = TestDir::new("tail").unwrap();
        let file = dir.join("log");
        std::fs::write(&file, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&file, 2), "c\nd");
        assert_eq!(tail(&file, 10), "a\nb\nc\nd");
        assert_eq!(tail(&dir.join("missing"), 3), "");
    }
}
