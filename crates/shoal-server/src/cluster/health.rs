//! What a node can tell about its cluster's health, in one account that `CLUSTER INFO`,
//! `INFO cluster`, `GET /health` and the metrics all read, so they never disagree.

use shoal_cluster::node::LeaseSource;
use shoal_cluster::{NodeId, Role};

use super::ClusterState;

/// One reading of a node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterHealth {
    /// The node has taken its place in a cluster.
    pub joined: bool,
    /// It is a primary in its map.
    pub primary: bool,
    /// Where its lease comes from now.
    pub lease: LeaseSource,
    /// A primary that may serve its slots (a fresh lease, for the newest map it knows); true
    /// for a node that is no primary.
    pub serving: bool,
    /// The controller's leader, sure of its majority, answered this node within a node
    /// timeout.
    pub controller_quorum: bool,
    /// This node hosts the controller's leader.
    pub leads: bool,
    /// Primaries that seem gone while the controller cannot tell (see
    /// [`shoal_cluster::node::ClusterNode::silent_primaries`]).
    pub silent_primaries: Vec<NodeId>,
}

impl ClusterHealth {
    /// The reading of `cluster` now.
    pub fn of(cluster: &ClusterState) -> ClusterHealth {
        let Some(node) = cluster.node() else {
            return ClusterHealth {
                joined: false,
                primary: false,
                lease: LeaseSource::None,
                serving: false,
                controller_quorum: false,
                leads: false,
                silent_primaries: Vec::new(),
            };
        };
        let map = cluster.map();
        let primary = matches!(
            map.placement_of(cluster.myself().id),
            Some((_, Role::Primary))
        );
        ClusterHealth {
            joined: true,
            primary,
            lease: node.lease_source(),
            serving: !primary || cluster.primary_authority(),
            controller_quorum: node.controller_has_quorum(),
            leads: node.controller().is_some_and(|c| c.is_leader()),
            silent_primaries: node.silent_primaries(),
        }
    }

    /// `fail` (see [`ClusterHealth::unavailable`]), `degraded` (see
    /// [`ClusterHealth::degraded`]) or `ok`.
    pub fn state(&self) -> &'static str {
        if !self.can_serve() {
            "fail"
        } else if !self.controller_quorum {
            "degraded"
        } else {
            "ok"
        }
    }

    /// Whether clients get what they ask of this node: it is in the cluster and, if a
    /// primary, holds a lease (see [`ClusterHealth::unavailable`]).
    pub fn can_serve(&self) -> bool {
        self.joined && self.serving
    }

    /// Why a client may not get what it asks of this node, if it may not: `GET /health`
    /// answers `503` with it.
    pub fn unavailable(&self) -> Option<String> {
        if self.can_serve() {
            None
        } else if !self.joined {
            Some("not in the cluster yet".into())
        } else {
            Some(
                "this primary has no lease (cut off from the controller and from a majority of \
                 the nodes): it serves no writes"
                    .into(),
            )
        }
    }

    /// What a client may meet although this node serves, if anything: `GET /health` answers
    /// `200` with status `degraded` and it.
    pub fn degraded(&self) -> Option<String> {
        if self.controller_quorum {
            return None;
        }
        let mut why = "the controller has lost its majority: no failover, join or removal \
                       until it is back"
            .to_string();
        if !self.silent_primaries.is_empty() {
            why.push_str(&format!(
                "; {} primar{} silent: {}",
                self.silent_primaries.len(),
                if self.silent_primaries.len() == 1 {
                    "y is"
                } else {
                    "ies are"
                },
                self.silent_primaries
                    .iter()
                    .map(|id| format!("{id:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Some(why)
    }
}
