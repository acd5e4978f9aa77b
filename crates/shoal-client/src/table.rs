//! The routing table derived from one cluster map: the address of every slot's primary, ready
//! for a lookup per request without formatting addresses.

use std::collections::HashMap;
use std::sync::Arc;

use shoal_cluster::{ClusterMap, SLOTS, Slot};

/// Slot -> primary address, for one map.
pub(crate) struct Table {
    pub map: Arc<ClusterMap>,
    slots: Box<[Option<Arc<str>>]>,
    primaries: Vec<Arc<str>>,
    nodes: Vec<Arc<str>>,
}

/// Why a slot has no address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Miss {
    /// The map is empty.
    NoMap,
    /// No shard (or no known primary) owns the slot.
    Unassigned,
}

impl Table {
    pub fn new(map: Arc<ClusterMap>) -> Table {
        let mut by_shard = HashMap::new();
        let mut primaries = Vec::new();
        for shard in &map.shards {
            if let Some(node) = map.node(shard.primary) {
                let addr: Arc<str> = node.resp_addr().into();
                primaries.push(addr.clone());
                by_shard.insert(shard.id, addr);
            }
        }
        let slots = (0..SLOTS)
            .map(|s| {
                map.slots
                    .get(s as Slot)
                    .and_then(|shard| by_shard.get(&shard).cloned())
            })
            .collect();
        let nodes = map.nodes.values().map(|n| n.resp_addr().into()).collect();
        Table {
            map,
            slots,
            primaries,
            nodes,
        }
    }

    /// The primary serving `slot`.
    pub fn slot(&self, slot: Slot) -> Result<Arc<str>, Miss> {
        match self.slots.get(slot as usize) {
            Some(Some(addr)) => Ok(addr.clone()),
            _ if self.nodes.is_empty() => Err(Miss::NoMap),
            _ => Err(Miss::Unassigned),
        }
    }

    /// A node for a keyless command: a random primary, else a random node.
    pub fn any(&self) -> Option<Arc<str>> {
        let pool = if self.primaries.is_empty() {
            &self.nodes
        } else {
            &self.primaries
        };
        if pool.is_empty() {
            return None;
        }
        Some(pool[rand::random_range(0..pool.len())].clone())
    }

    /// Whether `addr` is a node of the map.
    pub fn has_node(&self, addr: &str) -> bool {
        self.nodes.iter().any(|n| &**n == addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::{Health, NodeId, NodeInfo, ShardId, ShardInfo, SlotTable};

    #[test]
    fn slots_resolve_to_their_primary() {
        let mut map = ClusterMap::empty();
        map.epoch = 1;
        for (id, port) in [(1, 7000), (2, 7001)] {
            map.nodes.insert(
                NodeId(id),
                NodeInfo {
                    id: NodeId(id),
                    host: "127.0.0.1".into(),
                    port,
                    bus_port: port + 10000,
                    http_port: 0,
                    controller: false,
                    health: Health::Ok,
                    spare: false,
                },
            );
        }
        map.shards = vec![ShardInfo {
            id: ShardId(0),
            primary: NodeId(1),
            replicas: vec![NodeId(2)],
        }];
        map.slots = SlotTable::empty();
        for s in 0..100 {
            map.slots.set(s, Some(ShardId(0)));
        }
        let table = Table::new(Arc::new(map));
        assert_eq!(&*table.slot(5).unwrap(), "127.0.0.1:7000");
        assert_eq!(table.slot(200), Err(Miss::Unassigned));
        assert_eq!(&*table.any().unwrap(), "127.0.0.1:7000");
        assert!(table.has_node("127.0.0.1:7001"));
        let empty = Table::new(Arc::new(ClusterMap::empty()));
        assert_eq!(empty.slot(0), Err(Miss::NoMap));
        assert!(empty.any().is_none());
    }
}
