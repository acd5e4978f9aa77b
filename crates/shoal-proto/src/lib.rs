//! RESP2/RESP3 framing for Shoal.
//!
//! * [`parse`]: an incremental, zero-copy parser for client requests (multibulk frames and inline
//!   commands, as `redis-cli` sends them) that resumes where it stopped when a frame is split.
//! * [`encode`]: reply encoding into a byte buffer, aware of the protocol version a client chose
//!   with `HELLO`.
//! * [`command_table`]: Redis 7's command table for the commands Shoal implements.
//! * [`args`]: reading arguments as Redis does.
//! * [`request`]: encoding a command as a client sends it.
//! * [`glob`]: Redis's glob patterns (`KEYS`, `SCAN MATCH`, ACL key and channel patterns).
//!
//! The crate does no I/O and depends on no runtime, so it can be fuzzed and property-tested alone.

pub mod args;
pub mod command_table;
pub mod encode;
pub mod glob;
pub mod parse;
pub mod reply;
pub mod request;

pub use encode::{Protocol, Reply};
pub use glob::glob_match;
pub use parse::{Argv, Limits, Parsed, ProtocolError, RequestParser, peek_key, split_args};
