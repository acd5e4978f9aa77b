//! The controller's Raft group, built with openraft 0.9 (the stable line: 0.10 is still in
//! alpha and changes its storage and network traits between releases).
//!
//! The replicated state is one [`ClusterMap`]. The only command is [`Proposal`]: "replace the map
//! of epoch `base` by this one", applied only if the state machine still holds epoch `base`.
//! Everything that changes the cluster is decided by the leader ([`crate::decide`]) and lands
//! through a proposal, so two leaders in a row can never interleave half-changes.
//!
//! A node started with `--dir` keeps its id and its Raft state (vote, log, snapshot) there
//! (`disk`), so a restarted member takes its seat back and a cluster whose members all
//! restart recovers its map; without a directory they live in memory, and a restarted node
//! comes back as a new member that the group puts in the old one's place.

pub(crate) mod disk;
pub(crate) mod network;
pub(crate) mod store;

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::map::{ClusterMap, Epoch};

openraft::declare_raft_types!(
    /// Shoal's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = ProposalOutcome,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft member.
pub(crate) type Raft = openraft::Raft<TypeConfig>;

/// A request to replace the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The epoch the proposer based its change on.
    pub base: Epoch,
    /// The new map; its epoch must be `base + 1`.
    pub map: ClusterMap,
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "map {} -> {}", self.base, self.map.epoch)
    }
}

/// What applying a proposal did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ProposalOutcome {
    /// The map was replaced.
    #[default]
    Applied,
    /// The state machine held another epoch (the proposer's view was stale): nothing changed.
    Stale {
        /// The epoch it holds.
        current: Epoch,
    },
    /// A membership change or blank entry, which carries no proposal.
    NotAProposal,
}
