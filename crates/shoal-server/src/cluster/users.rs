//! The cluster's ACL users: `ACL SETUSER`, `ACL DELUSER` and `ACL LOAD` on any node are
//! recorded in the controller's map ([`ClusterNode::set_user`]), and every node takes the
//! map's users up when they change, so a user exists (or is gone) on every node at once.
//!
//! Until the first such change the map holds no users and each node keeps those of its own
//! configuration (`aclfile`, `requirepass`); from then on the map's list is the cluster's.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_cluster::ClusterMap;
use shoal_cluster::node::ClusterNode;
use shoal_frontdoor::Door;
use shoal_frontdoor::acl::adopt_users;

/// The users a node last took up from its map, so that maps that change something else do
/// not make it set its users again.
#[derive(Debug, Default)]
pub(crate) struct AdoptedUsers(Mutex<Option<BTreeMap<String, String>>>);

/// Records the users named `names`, as the door's ACL now has them (gone: deleted), in the
/// cluster's map, in the background. A failure is logged: the change stays on this node
/// until the next change of the cluster's users replaces it.
pub(crate) fn record(node: &Arc<ClusterNode>, door: &Door, names: &[Vec<u8>]) {
    let mut changes = Vec::with_capacity(names.len());
    for name in names {
        let Ok(text) = String::from_utf8(name.clone()) else {
            tracing::warn!(
                user = %String::from_utf8_lossy(name),
                "ACL user not recorded cluster-wide: its name is not UTF-8"
            );
            continue;
        };
        let rules = door.acl.user(name).map(|slot| slot.current().describe());
        changes.push((text, rules));
    }
    if changes.is_empty() {
        return;
    }
    let node = node.clone();
    tokio::spawn(async move {
        for (name, rules) in changes {
            if let Err(e) = node.set_user(name.clone(), rules).await {
                tracing::warn!(
                    user = %name,
                    "ACL change not recorded cluster-wide (it holds on this node only): {e}"
                );
            }
        }
    });
}

/// Takes up `map`'s users if they changed since the last map that had them.
pub(crate) fn adopt(adopted: &AdoptedUsers, door: &Door, map: &ClusterMap) {
    let Some(users) = &map.users else {
        return;
    };
    let mut last = adopted.0.lock();
    if last.as_ref() == Some(users) {
        return;
    }
    let outcome = adopt_users(door, users);
    for (name, why) in &outcome.refused {
        tracing::warn!(user = %name, "cannot take up the cluster's ACL user: {why}");
    }
    if outcome.set > 0 || outcome.deleted > 0 {
        tracing::info!(
            set = outcome.set,
            deleted = outcome.deleted,
            epoch = map.epoch,
            "took up the cluster's ACL users"
        );
    }
    *last = Some(users.clone());
}
