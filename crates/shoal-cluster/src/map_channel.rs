//! The channel a node's current map lives in. The node's agent (pushes, fetches, joins) and
//! the controller's Raft state machine both publish on it, each only a newer map, so neither
//! needs the other: both import this module, and it imports only the map.

use std::sync::Arc;

use tokio::sync::watch;

use crate::map::ClusterMap;

/// The sending side of a node's map channel.
pub(crate) type MapSender = watch::Sender<Arc<ClusterMap>>;

/// Publishes `map` on `maps` if it supersedes the map there. Returns whether it did.
pub(crate) fn publish_newer(maps: &MapSender, map: ClusterMap) -> bool {
    maps.send_if_modified(|current| {
        if map.supersedes(current) {
            *current = Arc::new(map);
            true
        } else {
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_at(epoch: u64) -> ClusterMap {
        ClusterMap {
            epoch,
            ..ClusterMap::empty()
        }
    }

    #[test]
    fn only_a_newer_map_is_published() {
        let (maps, rx) = watch::channel(Arc::new(map_at(2)));
        assert!(!publish_newer(&maps, map_at(1)), "an older map");
        assert!(!publish_newer(&maps, map_at(2)), "the same epoch");
        assert_eq!(rx.borrow().epoch, 2);
        assert!(publish_newer(&maps, map_at(3)));
        assert_eq!(rx.borrow().epoch, 3);
    }
}
