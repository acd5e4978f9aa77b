//! What plugs into the front door: a [`Backend`] runs the commands that pass the front door's
//! checks (a node on its store, the proxy through the cluster), and keeps its own state per
//! connection next to the front door's [`Conn`].

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use shoal_proto::{Argv, Protocol, Reply};

use crate::clients::ClientInfo;
use crate::commands::Command;
use crate::door::Door;
use crate::error::CommandError;
use crate::identity::{Mode, Role};
use crate::multi::{Admission, Transaction};

/// A connection's state that the front door keeps and every backend shares.
#[derive(Debug)]
pub struct Conn {
    /// What other connections see of this one.
    pub info: Arc<ClientInfo>,
    /// The protocol chosen with `HELLO`.
    pub protocol: Protocol,
    /// Whether the client authenticated (or connected while the `default` user needed no
    /// password).
    pub authenticated: bool,
    /// The user it runs commands as (`default` until it authenticates as another).
    pub user: Arc<crate::acl::UserSlot>,
    /// Failed authentications in a row on this connection (each further one waits longer).
    pub auth_failures: u32,
    /// Wait this long before the reply just written goes out and the next command runs (a
    /// failed authentication's delay).
    pub pause: Option<std::time::Duration>,
    /// Close the connection once the current replies are written (`QUIT`, `CLIENT KILL` of
    /// itself, `SHUTDOWN`).
    pub close_after_reply: bool,
    /// Id of the command running or last run (`u32::MAX`: none).
    pub last_command: u32,
    /// The transaction being queued, between `MULTI` and `EXEC`.
    pub(crate) multi: Option<crate::multi::Multi>,
    /// Its Pub/Sub subscriptions, once it subscribed.
    pub(crate) subscriptions: Option<crate::pubsub::Subscriptions>,
    /// Its `CLIENT TRACKING` state, while tracking is on.
    pub(crate) tracking: Option<Box<crate::tracking::ConnTracking>>,
}

impl Conn {
    /// A new connection's state: RESP2, running as `user`, nothing else chosen yet.
    pub(crate) fn new(
        info: Arc<ClientInfo>,
        authenticated: bool,
        user: Arc<crate::acl::UserSlot>,
    ) -> Conn {
        Conn {
            info,
            protocol: Protocol::Resp2,
            authenticated,
            user,
            auth_failures: 0,
            pause: None,
            close_after_reply: false,
            last_command: u32::MAX,
            multi: None,
            subscriptions: None,
            tracking: None,
        }
    }

    /// A reply writer for `out` in this connection's protocol.
    #[inline]
    pub fn reply<'a>(&self, out: &'a mut Vec<u8>) -> Reply<'a> {
        Reply::new(out, self.protocol)
    }

    /// Whether the connection subscribes to any channel, pattern or shard channel.
    #[inline]
    pub fn subscribed(&self) -> bool {
        self.subscriptions.is_some()
    }

    /// Writes the messages waiting for this connection, if it subscribes, into `out`: a
    /// backend's `PUBLISH` calls it before its reply, so that a RESP3 connection publishing
    /// to a channel it subscribes to reads the message first, as from Redis.
    pub fn deliver_messages(&mut self, out: &mut Vec<u8>) {
        if let Some(subscriptions) = &mut self.subscriptions {
            subscriptions.deliver(self.protocol, out);
            // The server may have ended its last subscription (a shard channel's slot left).
            if subscriptions.is_empty() {
                self.subscriptions = None;
            }
        } else if let Some(mailbox) = self.info.pushes() {
            // Invalidations (its own tracking's, or another connection's redirected here).
            for message in mailbox.take() {
                message.encode(self.protocol, false, out);
            }
        }
    }

    /// A read a script ran for this connection (`redis.call('GET', k)`): with `CLIENT
    /// TRACKING` on, the keys of a read-only command are remembered for it, as Redis remembers
    /// those of the commands a script runs for its caller.
    pub fn remember_script_read(
        &self,
        spec: &shoal_proto::command_table::CommandSpec,
        argv: &shoal_proto::Argv<'_>,
        limit: crate::OutputLimit,
    ) {
        if crate::dispatch::remembers_keys(spec) {
            self.remember_reads(spec.key_positions_in(argv).map(|i| argv.get(i)), limit);
        }
    }

    /// Keys a command read that are not among its arguments (`COUNTER.GET key parts` reads
    /// `key#1` .. `key#N`): with `CLIENT TRACKING` on (and remembering now), they are
    /// remembered, so that a change of any of them invalidates what the reply was made of.
    /// Called before the keys are read (a change between the two costs a spurious
    /// invalidation, never a stale cache).
    pub fn remember_reads<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
        limit: crate::OutputLimit,
    ) {
        if let Some(tracking) = self.tracking.as_deref()
            && tracking.remembers()
        {
            tracking.remember(keys, limit);
        }
    }

    /// Whether the connection has `CLIENT TRACKING` on.
    #[inline]
    pub fn tracking(&self) -> bool {
        self.tracking.is_some()
    }

    /// Whether the connection is inside `MULTI` (queuing a transaction).
    #[inline]
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }
}

/// A node or the proxy, as the front door sees it.
///
/// The front door reads requests, answers the connection commands and the checks Redis makes
/// before running anything (unknown command or subcommand, arity, authentication), times and
/// records every command, and writes the replies; the backend runs the rest through
/// [`Backend::call`].
pub trait Backend: Send + Sync + Sized + 'static {
    /// The backend's own state of one connection (a node's `READONLY`, `WAIT` offset, ...).
    type Conn: Send + 'static;
    /// What a reply that comes later ([`Outcome::Later`]) resolves to, written by
    /// [`Backend::write_reply`].
    type Reply: Send + 'static;
    /// What a connection is handed over for ([`Outcome::HandOff`]): a node's replication
    /// stream.
    type HandOff: Send + 'static;
    /// Whether [`Call::owned_args`] is used: the front door then cuts each request out of the
    /// read buffer as shared bytes, so arguments can outlive the buffer without a copy.
    const OWNED_ARGS: bool = false;

    /// The front door's shared state: settings, clients, statistics.
    fn door(&self) -> &Arc<Door>;

    /// The backend's state for a new connection.
    fn new_conn(&self) -> Self::Conn;

    /// Runs a command that passed the front door's checks (see [`Outcome`]), calling
    /// [`Call::start_clock`] when the command itself starts.
    fn call(self: &Arc<Self>, call: Call<'_, Self>) -> Outcome<Self>;

    /// Appends a reply that came later, in `protocol` (the connection's when the command
    /// came). Returns the error code (`ERR`, `WRONGTYPE`, ...) if the reply is an error: the
    /// call then counts as failed, and the error in `errorstats`.
    fn write_reply(
        &self,
        reply: Self::Reply,
        protocol: Protocol,
        out: &mut Vec<u8>,
    ) -> Option<String>;

    /// What `HELLO`'s `mode` and `INFO`'s `redis_mode` say: [`Mode::Cluster`] on a node of a
    /// cluster; [`Mode::Standalone`] (the default) on a node alone and on the proxy, which
    /// hides the cluster.
    fn mode(&self) -> Mode {
        Mode::Standalone
    }

    /// Whether it reports its key changes to [`Door::tracking`] (a node does): `CLIENT
    /// TRACKING ON` is refused otherwise (the proxy).
    fn tracks_keys(&self) -> bool {
        false
    }

    /// What `HELLO`'s `role` says: [`Role::Replica`] on a node that follows a primary,
    /// [`Role::Master`] (the default) otherwise.
    fn role(&self) -> Role {
        Role::Master
    }

    /// The next command in the buffer has this key: a chance to start fetching it.
    #[inline]
    fn prefetch(&self, _next_key: &[u8]) {}

    /// Redis's checks of a command about to be queued inside `MULTI`, or of a connection
    /// command with keys about to run here (`SSUBSCRIBE`): those [`Backend::call`] makes
    /// before it runs a command (cluster routing, a replica's read-only state, memory). A
    /// refusal inside `MULTI` fails the transaction (`EXECABORT` at `EXEC`). By default
    /// everything passes.
    fn admit(self: &Arc<Self>, _call: Call<'_, Self>) -> Admission {
        Admission::Queue
    }

    /// `EXEC` of a transaction that queued without errors: runs its commands as one (see
    /// [`Transaction::run`]), answers that a watched key changed
    /// ([`Transaction::abort_watched`]), or refuses the whole of it (an error: the
    /// transaction is dropped; [`Outcome::Retry`]: it stays queued and `EXEC` runs again).
    fn exec(self: &Arc<Self>, transaction: Transaction<'_, Self>) -> Outcome<Self>;

    /// The connection's transaction ended (`EXEC`, `DISCARD`, `RESET`): forget the keys it
    /// watched.
    fn unwatch(&self, _state: &mut Self::Conn) {}

    /// `RESET`: puts the backend's part of a connection back as it was when it connected.
    fn reset(&self, _state: &mut Self::Conn) {}

    /// The connection was given a name (`CLIENT SETNAME`, `HELLO ... SETNAME`; empty: cleared).
    fn named(&self, _state: &mut Self::Conn, _name: &[u8]) {}

    /// `ACL SETUSER`, `ACL DELUSER` or `ACL LOAD` changed the users named `names` in the
    /// door's ACL (a deleted one is gone from it): a chance to tell others (a cluster node
    /// records them cluster-wide).
    fn users_changed(&self, _names: &[Vec<u8>]) {}

    /// Serves the connection from here on, as [`Outcome::HandOff`] asked. The replies before
    /// are written; the connection closes when the returned future ends.
    fn hand_off<'a>(
        self: &'a Arc<Self>,
        stream: &'a mut crate::Stream,
        conn: &'a Conn,
        state: &'a mut Self::Conn,
        how: Self::HandOff,
    ) -> BoxFuture<'a, io::Result<()>>;
}

/// One command, as the backend gets it.
pub struct Call<'a, B: Backend> {
    /// The command (the subcommand, for containers).
    pub command: &'static Command,
    /// Its arguments, the name first.
    pub argv: &'a Argv<'a>,
    /// The request as sent, when [`Backend::OWNED_ARGS`].
    frame: Option<&'a Bytes>,
    /// The front door's state of the connection.
    pub conn: &'a mut Conn,
    /// The backend's state of the connection.
    pub state: &'a mut B::Conn,
    /// Where the reply goes.
    pub out: &'a mut Vec<u8>,
    /// When the command's time started, once the backend started it.
    clock: &'a mut Option<Instant>,
}

impl<'a, B: Backend> Call<'a, B> {
    pub(crate) fn new(
        command: &'static Command,
        argv: &'a Argv<'a>,
        frame: Option<&'a Bytes>,
        conn: &'a mut Conn,
        state: &'a mut B::Conn,
        out: &'a mut Vec<u8>,
        clock: &'a mut Option<Instant>,
    ) -> Call<'a, B> {
        Call {
            command,
            argv,
            frame,
            conn,
            state,
            out,
            clock,
        }
    }

    /// Starts the command's time now, once the backend's checks (routing, eviction) are done:
    /// Redis times only the command itself. A command whose clock never starts (refused) is
    /// not timed.
    #[inline]
    pub fn start_clock(&mut self) {
        *self.clock = Some(Instant::now());
    }

    /// A reply writer in the connection's protocol.
    #[inline]
    pub fn reply(&mut self) -> Reply<'_> {
        Reply::new(self.out, self.conn.protocol)
    }

    /// The arguments as owned byte strings: slices of the request where they are in it
    /// (multibulk requests, with [`Backend::OWNED_ARGS`]: no copy), copies otherwise (inline
    /// commands, which the parser unescapes).
    pub fn owned_args(&self) -> Vec<Bytes> {
        owned_args(self.argv, self.frame)
    }
}

fn owned_args(argv: &Argv<'_>, frame: Option<&Bytes>) -> Vec<Bytes> {
    let Some(frame) = frame else {
        return argv.iter().map(Bytes::copy_from_slice).collect();
    };
    let start = frame.as_ptr() as usize;
    let end = start + frame.len();
    argv.iter()
        .map(|arg| {
            let at = arg.as_ptr() as usize;
            if !arg.is_empty() && at >= start && at + arg.len() <= end {
                frame.slice_ref(arg)
            } else {
                Bytes::copy_from_slice(arg)
            }
        })
        .collect()
}

/// What became of a command the backend was given.
pub enum Outcome<B: Backend> {
    /// It ran, and its reply is written (a reply that is an error included).
    Ran,
    /// It ran and failed: the front door writes the error and counts a failed call.
    Failed(CommandError),
    /// It was refused before it ran (`-MOVED`, `-OOM`, ...): the front door writes the error
    /// and counts a rejected call.
    Refused(CommandError),
    /// Its reply comes from this future. With `barrier`, no later command of the connection
    /// runs before it is in (`WAIT` blocks its client, as in Redis); without, later commands
    /// start meanwhile and their replies queue behind it (the proxy's pipelining). The call is
    /// recorded with the time it took to start it (as Redis counts a blocked command: the
    /// time it worked, not the time it waited), and as failed if its reply is an error.
    Later {
        /// The reply.
        reply: BoxFuture<'static, B::Reply>,
        /// Whether later commands wait for it.
        barrier: bool,
    },
    /// It must wait for this first, then run again (a newer cluster map on its way, writes
    /// paused for a failover): nothing later runs meanwhile.
    Retry(BoxFuture<'static, ()>),
    /// The connection is the backend's from here on ([`Backend::hand_off`]), once the
    /// replies so far are written.
    HandOff(B::HandOff),
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::{Limits, Parsed, RequestParser};

    #[test]
    fn arguments_are_sliced_from_multibulk_frames_and_copied_from_inline_ones() {
        for (input, expected) in [
            (&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..], [&b"GET"[..], b"k"]),
            (b"GET \"k\"\r\n", [b"GET", b"k"]),
        ] {
            let mut parser = RequestParser::new(Limits::default());
            let Ok(Parsed::Command { consumed }) = parser.parse(input) else {
                panic!("a command");
            };
            let frame = Bytes::copy_from_slice(&input[..consumed]);
            let args = owned_args(&parser.argv(&frame), Some(&frame));
            assert_eq!(args, expected);
            let copied = owned_args(&parser.argv(&frame), None);
            assert_eq!(copied, expected);
        }
    }
}
