//! Shoal's RESP front door, written once for a node and for the proxy.
//!
//! It owns everything between a client's socket and the commands a backend runs:
//!
//! * [`listen`]: binding listeners, the accept loop, `maxclients` and refusing clients over it;
//! * [`session`]: the loop of one connection (read, parse every complete request, run, write
//!   the replies in one go), its limits (query buffer, output buffer, protocol errors) and
//!   pipelining of replies that come later;
//! * [`Clients`]: the registry behind `CLIENT LIST/INFO/KILL/ID/SETNAME/GETNAME` and the idle
//!   `timeout`;
//! * the connection commands (`PING ECHO HELLO AUTH SELECT RESET QUIT CLIENT ... ACL`) and the
//!   checks every command passes first, in Redis 7's order (unknown command, unknown
//!   subcommand, arity, authentication, the user's permissions), with its statistics and slow
//!   log;
//! * [`pubsub`]: subscriptions, the subscribed connection's mailbox and its messages;
//! * [`tracking`]: `CLIENT TRACKING` (client-side caching's invalidations);
//! * [`hotkeys`]: the sampled top-K of hot keys per server, and `HOTKEYS` sessions;
//! * transactions: the `MULTI` queue and `EXEC`'s reply, around the backend's atomic run
//!   ([`Transaction`]);
//! * [`acl`]: Redis 7.0's ACL users, their rules, the ACL file and the `ACL LOG`;
//! * [`CommandError`], the one type for a Redis error reply;
//! * what the server says it is ([`Mode`], [`Role`]), in `HELLO` and `INFO`;
//! * the shared [`info`] sections and [`metrics`] families.
//!
//! A backend (a node running commands on its store, the proxy sending them to the cluster)
//! implements [`Backend`]; a per-connection feature is then written once, here.
//!
//! ```text
//! accept_loop ─► session::serve ─► dispatch (checks, connection commands) ─► Backend::call
//!                     ▲                                                        │
//!                     └──────────── replies (now, or later in order) ◄─────────┘
//! ```

pub mod access_log;
pub mod acl;
mod backend;
pub mod busy;
mod clients;
mod commands;
mod connection;
mod dispatch;
mod door;
mod error;
mod exposition;
pub mod hotkeys;
mod identity;
pub mod info;
pub mod latency;
pub mod listen;
pub mod metrics;
mod multi;
pub mod pubsub;
pub mod session;
mod settings;
mod slowlog;
mod stats;
mod stream;
pub mod tls;
pub mod tracking;
mod unix_time;

pub use acl::{Acl, UserSlot};
pub use backend::{Backend, Call, Conn, Outcome};
pub use busy::{Busy, Gate, ScriptKind};
pub use clients::KillFilter;
pub use clients::{ClientInfo, Clients, Registration, Reservation};
pub use commands::{Command, CommandTable, table};
pub use connection::{REDIS_BEHAVIOUR, REDIS_VERSION, write_help};
pub use door::{Door, TICK};
pub use error::{
    CLUSTER_DOWN, CommandError, NOREPLICAS, WRONGPASS, error_code, subcommand_syntax_error,
    truncated_arg, write_error_line,
};
pub use identity::{Mode, Role};
pub use multi::{Admission, Relayed, Transaction};
pub use settings::{DENIED, Limits, OutputLimit, Settings, constant_time_eq};
pub use slowlog::{SlowEntry, SlowLog};
pub use stats::{CommandTotals, InsideCommand, Stats, WorkerStats};
pub use stream::Stream;
