//! The client against real in-process Shoal nodes, fake RESP servers and fake cluster buses.
//! One test binary, so the nodes' code is linked once.

mod common;

mod cluster;
mod failures;
mod near_cache;
mod pipelining;
mod read_from;
mod redirects;
mod routing;
mod subscription;
mod transactions;
