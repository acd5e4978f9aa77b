//! The routing table derived from one cluster map: the addresses of every slot's primary and
//! replicas, ready for a lookup per request without formatting addresses.

use std::collections::HashMap;
use std::sync::Arc;

use shoal_cluster::{ClusterMap, Health, SLOTS, Slot};

use crate::config::ReadFrom;

/// One shard's addresses.
struct ShardAddrs {
    primary: Arc<str>,
    /// Its replicas the map calls healthy.
    replicas: Vec<Arc<str>>,
}

/// Slot -> shard addresses, for one map.
pub(crate) struct Table {
    pub map: Arc<ClusterMap>,
    slots: Box<[Option<Arc<ShardAddrs>>]>,
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
                let primary: Arc<str> = node.resp_addr().into();
                primaries.push(primary.clone());
                let replicas = shard
                    .replicas
                    .iter()
                    .filter_map(|id| map.node(*id))
                    .filter(|node| node.health == Health::Ok)
                    .map(|node| node.resp_addr().into())
                    .collect();
                by_shard.insert(shard.id, Arc::new(ShardAddrs { primary, replicas }));
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

    /// The addresses of the shard owning `slot`.
    fn shard(&self, slot: Slot) -> Result<&ShardAddrs, Miss> {
        match self.slots.get(slot as usize) {
            Some(Some(shard)) => Ok(shard),
            _ if self.nodes.is_empty() => Err(Miss::NoMap),
            _ => Err(Miss::Unassigned),
        }
    }

    /// The node to read `slot` from: its primary, a random healthy replica (the primary when
    /// it has none), or a random one of both, as `read_from` says.
    pub fn slot_for_read(&self, slot: Slot, read_from: ReadFrom) -> Result<Arc<str>, Miss> {
        let shard = self.shard(slot)?;
        let replicas = shard.replicas.len();
        let pick = match read_from {
            ReadFrom::Primary => None,
            ReadFrom::Replica if replicas == 0 => None,
            ReadFrom::Replica => Some(rand::random_range(0..replicas)),
            ReadFrom::Any => rand::random_range(0..=replicas).checked_sub(1),
        };
        Ok(match pick {
            Some(i) => shard.replicas[i].clone(),
            None => shard.primary.clone(),
        })
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
        for (id, port) in [(1, 7000), (2, 7001), (3, 7002)] {
            map.nodes.insert(
                NodeId(id),
                NodeInfo {
                    health: if id == 3 { Health::Failed } else { Health::Ok },
                    ..NodeInfo::local(NodeId(id), port)
                },
            );
        }
        map.shards = vec![ShardInfo {
            id: ShardId(0),
            primary: NodeId(1),
            replicas: vec![NodeId(2), NodeId(3)],
        }];
        map.slots = SlotTable::empty();
        for s in 0..100 {
            map.slots.set(s, Some(ShardId(0)));
        }
        let table = Table::new(Arc::new(map));
        assert_eq!(
            &*table.slot_for_read(5, ReadFrom::Primary).unwrap(),
            "127.0.0.1:7000"
        );
        assert_eq!(
            table.slot_for_read(200, ReadFrom::Primary),
            Err(Miss::Unassigned)
        );
        assert_eq!(&*table.any().unwrap(), "127.0.0.1:7000");
        assert!(table.has_node("127.0.0.1:7001"));
        // Reads: never the failed replica; `Replica` never the primary while a healthy
        // replica exists; `Any` both in time.
        let reads = |read_from| {
            (0..200)
                .map(|_| table.slot_for_read(5, read_from).unwrap().to_string())
                .collect::<std::collections::HashSet<_>>()
        };
        assert_eq!(
            reads(ReadFrom::Primary),
            ["127.0.0.1:7000".to_string()].into()
        );
        assert_eq!(
            reads(ReadFrom::Replica),
            ["127.0.0.1:7001".to_string()].into()
        );
        assert_eq!(
            reads(ReadFrom::Any),
            ["127.0.0.1:7000".to_string(), "127.0.0.1:7001".to_string()].into()
        );
        assert_eq!(
            table.slot_for_read(200, ReadFrom::Replica),
            Err(Miss::Unassigned)
        );
        let empty = Table::new(Arc::new(ClusterMap::empty()));
        assert_eq!(empty.slot_for_read(0, ReadFrom::Primary), Err(Miss::NoMap));
        assert!(empty.any().is_none());
    }
}
