//! Where a node's cluster secret comes from (see `shoal_cluster::bus_auth`):
//!
//! 1. `cluster-secret-file`, when set: that file, which must be private to its owner;
//! 2. else the secret kept in the node's directory (`--dir`), if it holds one;
//! 3. else, for a node that founds a new cluster, a new random secret, written where the user
//!    finds it: into the node's directory when it has one, else `./shoal-cluster-secret` (a
//!    file left there by an earlier run is used, never replaced); the log says where;
//! 4. else (a node that joins, or rejoins without it): no start, and an error that says what
//!    is missing.
//!
//! [`plan`] decides before the node takes its ports (a node without a usable secret takes
//! none); [`Plan::secret`] writes a new secret only once they are taken (a node that could
//! not start leaves no file behind).

use std::path::{Path, PathBuf};

use shoal_cluster::{BusSecret, NodeDir, NodeId, SecretError};

use crate::config::Config;

/// The secret's file name in a node's directory.
pub const DIR_SECRET_FILE: &str = "cluster-secret";

/// Where a founder without a directory writes its new secret (in the working directory).
pub const LOCAL_SECRET_FILE: &str = "shoal-cluster-secret";

/// Why a node has no cluster secret.
#[derive(Debug, thiserror::Error)]
pub enum NoSecret {
    /// The file given (or found) cannot be used.
    #[error(transparent)]
    Unusable(#[from] SecretError),
    /// A node that joins a cluster was given none.
    #[error(
        "the cluster needs its secret: --cluster-secret-file (cluster-secret-file in the \
         configuration file, SHOAL_CLUSTER_SECRET_FILE): give this node the file every member \
         was given, or the one the founding node wrote"
    )]
    Missing,
}

/// Where a node's secret comes from, once [`plan`] has decided.
#[derive(Debug)]
pub enum Plan {
    /// Read already.
    Ready(BusSecret),
    /// A founder's new secret, to be written at this path.
    Create(PathBuf),
}

impl Plan {
    /// The secret: the one read, or a new one written (and logged) now.
    pub fn secret(self) -> Result<BusSecret, NoSecret> {
        match self {
            Plan::Ready(secret) => Ok(secret),
            Plan::Create(path) => {
                let secret = BusSecret::create(&path)?;
                tracing::warn!(
                    path = %path.display(),
                    "founding a cluster without --cluster-secret-file: wrote a new cluster \
                     secret to {}; every other node, proxy and client needs it \
                     (--cluster-secret-file {})",
                    path.display(),
                    path.display()
                );
                Ok(secret)
            }
        }
    }
}

/// Where the secret of the node `config` describes (whose directory is `dir` and id `id`)
/// comes from (see the module's documentation for the order of the places it may come from).
pub fn plan(config: &Config, dir: Option<&NodeDir>, id: NodeId) -> Result<Plan, NoSecret> {
    if !config.cluster_secret_file.is_empty() {
        return Ok(Plan::Ready(BusSecret::load(Path::new(
            &config.cluster_secret_file,
        ))?));
    }
    let in_dir = dir.map(|d| d.path().join(DIR_SECRET_FILE));
    if let Some(path) = &in_dir
        && path.exists()
    {
        let secret = BusSecret::load(path)?;
        tracing::info!(path = %path.display(), "cluster secret from the node's directory");
        return Ok(Plan::Ready(secret));
    }
    let rejoins = dir
        .and_then(NodeDir::last_map)
        .is_some_and(|map| map.nodes.contains_key(&id));
    if !config.cluster_join.is_empty() || rejoins {
        return Err(NoSecret::Missing);
    }
    let path = match in_dir {
        Some(path) => path,
        None => working_dir().join(LOCAL_SECRET_FILE),
    };
    if path.exists() {
        let secret = BusSecret::load(&path)?;
        tracing::warn!(
            path = %path.display(),
            "founding a cluster without --cluster-secret-file: using the cluster secret an \
             earlier run left in {}; every other node, proxy and client needs it \
             (--cluster-secret-file {})",
            path.display(),
            path.display()
        );
        return Ok(Plan::Ready(secret));
    }
    Ok(Plan::Create(path))
}

/// The working directory, absolute (`.` if it cannot be told).
fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(config: &Config, dir: Option<&NodeDir>, id: NodeId) -> Result<BusSecret, NoSecret> {
        plan(config, dir, id)?.secret()
    }

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path =
                std::env::temp_dir().join(format!("shoal-secret-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_founder_with_a_directory_keeps_its_new_secret_there() {
        let scratch = Scratch::new("founder");
        let dir = NodeDir::open(&scratch.0.join("node")).unwrap();
        let config = Config {
            cluster_enabled: true,
            ..Config::default()
        };
        let first = resolve(&config, Some(&dir), dir.id()).unwrap();
        let path = dir.path().join(DIR_SECRET_FILE);
        let written = BusSecret::load(&path).unwrap();
        // The same secret after a restart, read back rather than made anew.
        let again = resolve(&config, Some(&dir), dir.id()).unwrap();
        let text = std::fs::read(&path).unwrap();
        assert_eq!(text.len(), 65, "64 hex digits and a newline");
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        drop((written, again));
        // A joining node may use that file.
        let joiner = Config {
            cluster_join: "127.0.0.1:7000".into(),
            cluster_secret_file: path.display().to_string(),
            ..Config::default()
        };
        resolve(&joiner, None, NodeId(1)).unwrap();
    }

    #[test]
    fn a_joining_node_without_a_secret_does_not_start() {
        let config = Config {
            cluster_join: "127.0.0.1:7000".into(),
            ..Config::default()
        };
        let error = resolve(&config, None, NodeId(1)).unwrap_err().to_string();
        assert!(
            error.contains("the cluster needs its secret: --cluster-secret-file"),
            "{error}"
        );
    }

    #[test]
    fn an_unusable_secret_file_is_named_with_what_is_wrong() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = Scratch::new("unusable");
        let path = scratch.0.join("secret");
        std::fs::write(&path, "k".repeat(64)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let config = Config {
            cluster_join: "127.0.0.1:7000".into(),
            cluster_secret_file: path.display().to_string(),
            ..Config::default()
        };
        let error = resolve(&config, None, NodeId(1)).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("mode 0640"), "{error}");
        let missing = Config {
            cluster_secret_file: scratch.0.join("missing").display().to_string(),
            ..config
        };
        let error = resolve(&missing, None, NodeId(1)).unwrap_err().to_string();
        assert!(
            error.contains("cannot read the cluster secret file"),
            "{error}"
        );
    }
}
