//! Slots moving between shards with their keys (live slot migration).
//!
//! The controller puts a [`Migration`](shoal_cluster::Migration) in the map when a slot should
//! change shard (a shard joins, is drained, or `cluster rebalance`); the slot stays its source
//! shard's, which keeps serving it, until the source hands it over. The target shard's primary
//! pulls the slots ([`target`]): a snapshot of their keys, then their part of the source's
//! replication stream ([`filter`]). The source ([`source`]) hands slots over a batch at a time:
//! it holds their writes, streams until the target has everything, has the controller move
//! them to the target in one new map, installs it, and lets the held writes go on, which are
//! then redirected (`-MOVED`). Reads are served by the source throughout. The target's
//! replicas receive the slots through its own stream; the source drops the slots' keys once
//! they are the target's, and a target drops what it imported of a migration that was called
//! off (the routing table's "keeps"). A failure at any point leaves the slots with the source,
//! holding every acknowledged write, and the target starts over.

mod filter;
pub(crate) mod source;
pub(crate) mod target;

/// Keys per snapshot step (each step holds one store shard's lock).
const SNAPSHOT_STEP: usize = 256;

/// Snapshot bytes encoded between two yields to the clients sharing the worker.
const SNAPSHOT_CHUNK: usize = 64 * 1024;
