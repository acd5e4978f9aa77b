//! A Shoal node.
//!
//! [`Server::start`] binds the RESP listener (and the HTTP one), starts one worker thread per
//! core, each with its own single-threaded runtime, and a control thread for accepting
//! connections and periodic work. Commands run against the shared [`shoal_store::Store`].

pub mod clients;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod info;
pub mod metrics;
pub mod process;
pub mod replication;
pub mod server;
pub mod session;
pub mod shared;
pub mod slowlog;
pub mod stats;

pub use config::{ByteSize, Config, ConfigError, LogFormat};
pub use server::{Server, StartError};
pub use shared::Shared;
