//! Shoal's cluster layer.
//!
//! * [`slot`]: the hash slot of a key, exactly as Redis Cluster computes it.
//! * [`placement`]: slots placed on shards by consistent hashing with bounded loads.
//! * [`map`]: the cluster map (nodes, shards, slot owners) and its epoch rules.
//! * [`decide`]: the controller's decisions, a pure function of map, observations and time.
//! * [`redis_format`]: `CLUSTER SHARDS/SLOTS/NODES/INFO` replies in Redis 7's formats.
//! * [`bus`]: messages and framing of the cluster bus (controller RPCs, heartbeats, pushes).
//! * [`raft`]: the controller's Raft group (openraft): types, in-memory log and state machine,
//!   RPCs over the bus.
//! * [`controller`]: a controller member; while it leads, it decides and commits maps.
//! * [`node`]: a node's membership: bus listener, joining, heartbeats, map subscription.
//! * [`seed`]: finding a node's bus from its RESP address.
//!
//! Everything but the bus I/O and the Raft glue is pure, so it is tested without a network.

pub mod bus;
pub mod controller;
pub mod decide;
pub mod map;
pub mod node;
pub mod placement;
pub mod raft;
pub mod redis_format;
pub mod seed;
pub mod slot;

pub use map::{ClusterMap, Epoch, Health, NodeId, NodeInfo, Role, ShardId, ShardInfo, SlotTable};
pub use slot::{SLOTS, Slot, key_slot};
