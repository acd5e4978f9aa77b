//! The proxy in front of real in-process Shoal clusters, driven by the `redis` crate, raw
//! RESP and HTTP. One test binary, so the nodes' code is linked once; most tests share one
//! cluster (each with keys of its own), the keyspace-wide ones have their own.

mod common;

mod access_log;
mod acl;
mod connection;
mod counters;
mod data;
mod errors;
mod front_door;
mod http;
mod keyspace;
mod limits;
mod pubsub;
mod scripting;
mod transactions;
