//! What a server says it is: `HELLO`'s `mode` and `role`, `INFO`'s `redis_mode`. A node of a
//! cluster says `cluster`, as Redis does with `cluster-enabled yes`; a node alone and the
//! proxy (which hides the cluster from its clients) say `standalone`. A backend tells the
//! front door through [`Backend::mode`](crate::Backend::mode) and
//! [`Backend::role`](crate::Backend::role).

/// How a server runs, as Redis names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Alone, or behind the proxy's front door (`standalone`).
    #[default]
    Standalone,
    /// A node of a cluster (`cluster`).
    Cluster,
}

impl Mode {
    /// Redis's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Cluster => "cluster",
        }
    }
}

/// Whether a server replicates another, as `HELLO`'s `role` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    /// It takes writes, or stands alone (`master`).
    #[default]
    Master,
    /// It follows a primary (`replica`).
    Replica,
}

impl Role {
    /// Redis's word for it in `HELLO`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Replica => "replica",
        }
    }
}
