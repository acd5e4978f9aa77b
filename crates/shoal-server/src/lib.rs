//! A Shoal node.
//!
//! [`Server::start`] binds the RESP listener (and the HTTP one), starts one worker thread per
//! core, each with its own single-threaded runtime, and a control thread for accepting
//! connections and periodic work. Connections go through the front door
//! ([`shoal_frontdoor`]); the commands it hands the node run against the shared
//! [`shoal_store::Store`].

mod backend;
mod changes;
mod cluster;
mod commands;
pub mod config;
mod conn;
pub mod http;
mod info;
mod long_double;
mod metrics;
mod migration;
mod notify;
mod process;
mod replication;
mod report;
mod scripting;
mod server;
mod shared;
mod transaction;
mod watch;

pub use config::{ByteSize, Config, ConfigError, LogFormat};
pub use process::{
    OpenFiles, RESERVED_FDS, cpu_seconds, disable_transparent_huge_pages, fit_open_files,
    use_one_malloc_arena,
};
pub use server::{Server, StartError};
pub use shared::Shared;
