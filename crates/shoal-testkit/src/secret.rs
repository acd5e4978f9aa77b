//! The cluster secret of every node the kit starts ([`cluster_secret`]): one per test
//! process, in a private file ([`cluster_secret_file`]) that every [`NodeProcess`] is given
//! (`SHOAL_CLUSTER_SECRET_FILE`, which a test's own flags or environment override) and every
//! [`LocalNode`] in cluster mode uses, so that tests need not care about it. The kit's own
//! bus exchanges ([`TestCluster::status`], ...) prove it.
//!
//! [`NodeProcess`]: crate::NodeProcess
//! [`LocalNode`]: crate::LocalNode
//! [`TestCluster::status`]: crate::TestCluster::status

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use shoal_cluster::BusSecret;

/// The file and the secret in it.
static SECRET: OnceLock<(PathBuf, BusSecret)> = OnceLock::new();

fn secret() -> &'static (PathBuf, BusSecret) {
    SECRET.get_or_init(|| {
        let path =
            std::env::temp_dir().join(format!("shoal-test-{}-cluster-secret", std::process::id()));
        // Left by an earlier process with the same pid: ours is new.
        let _ = std::fs::remove_file(&path);
        let secret = BusSecret::create(&path)
            .unwrap_or_else(|e| panic!("the test kit cannot write its cluster secret: {e}"));
        // SAFETY: `atexit` only records the function, which takes no arguments and touches
        // nothing but the path, set before it is registered and never changed.
        unsafe {
            libc::atexit(remove_secret_file);
        }
        (path, secret)
    })
}

/// Removes the secret's file when the test process exits.
extern "C" fn remove_secret_file() {
    if let Some((path, _)) = SECRET.get() {
        let _ = std::fs::remove_file(path);
    }
}

/// The cluster secret of the nodes this process starts.
pub fn cluster_secret() -> BusSecret {
    secret().1.clone()
}

/// The file holding [`cluster_secret`] (mode 0600, removed when the process exits).
pub fn cluster_secret_file() -> &'static Path {
    &secret().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_file_holds_the_secret_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = cluster_secret_file();
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = BusSecret::load(path).unwrap();
        assert_eq!(format!("{loaded:?}"), format!("{:?}", cluster_secret()));
    }
}
