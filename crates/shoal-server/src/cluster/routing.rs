//! The routing table a node's request path reads: for every slot, whether this node serves it
//! and, if not, where its primary listens. Built once per map, read lock-free through an
//! `ArcSwap`, so checking a key costs a CRC16 and two array reads.

use std::sync::Arc;

use shoal_cluster::{ClusterMap, Epoch, NodeId, Role, ShardId, Slot};

use super::migrating::SlotSet;

/// No shard owns the slot.
const UNOWNED: u16 = u16::MAX;

/// Where the commands for one slot go, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotOwner<'a> {
    /// This node is the slot's primary.
    Primary,
    /// This node replicates the slot; its primary listens at the address.
    Replica(&'a str),
    /// Another shard's primary, listening at the address.
    Elsewhere(&'a str),
    /// No shard owns the slot.
    Unowned,
}

/// Slot ownership as of one map.
pub struct Routing {
    /// The map this table was built from.
    pub map: Arc<ClusterMap>,
    /// Per slot, an index into `primaries` (or [`UNOWNED`]).
    owner: Box<[u16]>,
    /// Per shard index: its id and the RESP address of its primary.
    primaries: Vec<(ShardId, String)>,
    /// This node's shard index and role there, if it is in a shard.
    mine: Option<(u16, Role)>,
    /// Slots migrating to this node's shard: their keys arrive here before the slots do.
    importing: SlotSet,
}

impl Routing {
    /// The table for `map`, as seen by `myself`.
    pub fn new(map: Arc<ClusterMap>, myself: NodeId) -> Routing {
        let primaries: Vec<(ShardId, String)> = map
            .shards
            .iter()
            .map(|s| {
                let addr = map
                    .node(s.primary)
                    .map(|n| n.resp_addr())
                    .unwrap_or_default();
                (s.id, addr)
            })
            .collect();
        let index_of = |id: ShardId| primaries.iter().position(|(s, _)| *s == id);
        let owner = map
            .slots
            .iter()
            .map(|o| o.and_then(index_of).map_or(UNOWNED, |i| i as u16))
            .collect();
        let mine = map
            .placement_of(myself)
            .and_then(|(shard, role)| index_of(shard.id).map(|i| (i as u16, role)));
        let my_shard = mine.map(|(i, _)| primaries[usize::from(i)].0);
        let mut importing = SlotSet::default();
        for m in map.migrations.iter().filter(|m| Some(m.to) == my_shard) {
            // Clamped: a map from the bus is not trusted to name real slots.
            importing.union(&SlotSet::of_ranges(&m.slots));
        }
        Routing {
            map,
            owner,
            primaries,
            mine,
            importing,
        }
    }

    /// The table before any map arrived: every slot unowned.
    pub fn empty(myself: NodeId) -> Routing {
        Routing::new(Arc::new(ClusterMap::empty()), myself)
    }

    /// The map's epoch.
    pub fn epoch(&self) -> Epoch {
        self.map.epoch
    }

    /// Who serves `slot`.
    #[inline]
    pub fn owner(&self, slot: Slot) -> SlotOwner<'_> {
        let index = self.owner[slot as usize];
        if index == UNOWNED {
            return SlotOwner::Unowned;
        }
        let addr = self.primaries[index as usize].1.as_str();
        match self.mine {
            Some((mine, Role::Primary)) if mine == index => SlotOwner::Primary,
            Some((mine, Role::Replica)) if mine == index => SlotOwner::Replica(addr),
            _ => SlotOwner::Elsewhere(addr),
        }
    }

    /// The slots migrating to this node's shard.
    pub fn importing_slots(&self) -> &SlotSet {
        &self.importing
    }

    /// Whether `slot` is migrating to this node's shard.
    #[inline]
    pub fn importing(&self, slot: Slot) -> bool {
        self.importing.contains(slot)
    }

    /// Whether this node keeps the keys of `slot`: it serves it, or the slot is on its way
    /// here.
    pub fn keeps(&self, slot: Slot) -> bool {
        self.importing(slot)
            || !matches!(
                self.owner(slot),
                SlotOwner::Elsewhere(_) | SlotOwner::Unowned
            )
    }

    /// Whether this node is the primary of its shard.
    pub fn is_primary_of_shard(&self) -> bool {
        matches!(self.mine, Some((_, Role::Primary)))
    }

    /// Whether this node is the primary of `slot`.
    #[inline]
    pub fn is_mine(&self, slot: Slot) -> bool {
        self.owner(slot) == SlotOwner::Primary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_cluster::{NodeInfo, ShardInfo, SlotTable};

    fn map() -> ClusterMap {
        let mut map = ClusterMap::empty();
        map.epoch = 3;
        for (id, port) in [(1u64, 7000u16), (2, 7001), (3, 7002)] {
            map.nodes
                .insert(NodeId(id), NodeInfo::local(NodeId(id), port));
        }
        map.shards = vec![
            ShardInfo {
                id: ShardId(0),
                primary: NodeId(1),
                replicas: vec![NodeId(3)],
            },
            ShardInfo {
                id: ShardId(5),
                primary: NodeId(2),
                replicas: vec![],
            },
        ];
        map.next_shard = 6;
        map.slots = SlotTable::empty();
        for slot in 0..8000 {
            map.slots.set(slot, Some(ShardId(0)));
        }
        for slot in 8000..16000 {
            map.slots.set(slot, Some(ShardId(5)));
        }
        map
    }

    #[test]
    fn each_node_sees_its_own_part() {
        let map = Arc::new(map());
        let primary = Routing::new(map.clone(), NodeId(1));
        assert_eq!(primary.owner(0), SlotOwner::Primary);
        assert_eq!(primary.owner(9000), SlotOwner::Elsewhere("127.0.0.1:7001"));
        assert_eq!(primary.owner(16100), SlotOwner::Unowned);
        let replica = Routing::new(map.clone(), NodeId(3));
        assert_eq!(replica.owner(0), SlotOwner::Replica("127.0.0.1:7000"));
        assert!(primary.is_primary_of_shard() && !replica.is_primary_of_shard());
        let stranger = Routing::new(map, NodeId(9));
        assert_eq!(stranger.owner(0), SlotOwner::Elsewhere("127.0.0.1:7000"));
        assert!(!stranger.is_primary_of_shard());
        assert_eq!(Routing::empty(NodeId(1)).owner(0), SlotOwner::Unowned);
    }
}
