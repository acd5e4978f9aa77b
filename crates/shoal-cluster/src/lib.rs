//! Shoal's cluster layer.
//!
//! * `slot`: the hash slot of a key, exactly as Redis Cluster computes it ([`key_slot`]).
//! * `placement`: slots placed on shards by consistent hashing with bounded loads.
//! * `map`: the cluster map ([`ClusterMap`]: nodes, shards, slot owners) and its epoch rules.
//! * [`decide`]: the controller's decisions, a pure function of map, observations and time.
//! * [`redis_format`]: `CLUSTER SHARDS/SLOTS/NODES/INFO` replies in Redis 7's formats.
//! * [`bus`]: messages and framing of the cluster bus (controller RPCs, heartbeats, pushes).
//! * [`bus_auth`]: the cluster secret ([`BusSecret`]) and the handshake that opens every bus
//!   connection.
//! * `bus_tls`: TLS under the bus (`tls-cluster`): [`BusTlsConnector`], [`BusTlsAcceptor`], and
//!   the stream a bus connection runs on, plain or TLS.
//! * `bus_credentials`: [`BusCredentials`], the secret and the TLS settings every bus
//!   connection is opened with.
//! * `raft`: the controller's Raft group (openraft): types, log and state machine (in memory,
//!   and on disk for a node with a directory), RPCs over the bus.
//! * `node_dir`: a node's directory (`--dir`): its lock, its id, its last map, its Raft state.
//! * `files`: atomic file replacement and a CRC-32, for what the directory holds.
//! * `controller`: a controller member; while it leads, it decides and commits maps.
//! * `map_channel`: the channel a node's current map lives in, fed by the node and by the
//!   controller's state machine.
//! * `electorate`: the node sets of recent maps, from the history a map carries.
//! * `peer_lease`: leases a primary collects from a majority of nodes while the controller
//!   cannot renew its own.
//! * [`node`]: a node's membership: bus listener, joining, heartbeats, map subscription.
//! * [`seed`]: finding a node's bus from its RESP address.
//! * [`view`]: what a person is shown of a cluster: a node's `GET /cluster` document, and the
//!   state word, hot keys and printable keys `shoal cluster status` shows.
//!
//! Everything but the bus I/O and the Raft glue is pure, so it is tested without a network.
//!
//! Modules are private unless other crates name them: the cluster map's and the slot's types
//! are re-exported here; [`bus`], [`bus_auth`], [`decide`], [`node`], [`redis_format`], [`seed`] and [`view`] are
//! public namespaces whose items are `pub` only where another crate uses them.

#![warn(unreachable_pub)]

pub mod bus;
pub mod bus_auth;
mod bus_credentials;
mod bus_tls;
mod controller;
pub mod decide;
mod electorate;
mod files;
pub mod hot_keys;
mod map;
mod map_channel;
pub mod node;
mod node_dir;
mod peer_auth;
mod peer_lease;
mod placement;
mod publish;
mod raft;
pub mod redis_format;
pub mod seed;
mod slot;
pub mod view;

pub use bus_auth::{BusSecret, SecretError};
pub use bus_credentials::BusCredentials;
pub use bus_tls::{BusTlsAcceptor, BusTlsConnector};
pub use map::{
    BUS_PORT_OFFSET, BadNodeId, ClusterMap, Epoch, Health, Migration, NodeId, NodeInfo, Role,
    ShardId, ShardInfo, SlotGroups, SlotTable,
};
pub use node_dir::{DirError, NodeDir};
pub use peer_auth::PeerAuth;
pub use publish::Publication;
pub use slot::{SLOTS, Slot, hash_tag, key_slot, slot_ranges};
