//! One connection's subscriptions, and the subscription commands that change them.

use std::sync::Arc;

use bytes::Bytes;
use shoal_proto::{Argv, Protocol, Reply};

use super::mailbox::{Mailbox, Message};
use super::registry::{Kind, PubSub};
use crate::backend::Conn;
use crate::error::CommandError;

/// What one connection subscribes to, and its mailbox. Dropping it (the connection closing,
/// `RESET`) unsubscribes from everything.
#[derive(Debug)]
pub(crate) struct Subscriptions {
    registry: Arc<PubSub>,
    pub(crate) mailbox: Arc<Mailbox>,
    channels: Vec<Bytes>,
    patterns: Vec<Bytes>,
    shard_channels: Vec<Bytes>,
}

impl Subscriptions {
    fn names(&mut self, kind: Kind) -> &mut Vec<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shard_channels,
        }
    }

    /// The count a (un)subscription reply shows: channels and patterns together, or shard
    /// channels alone.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard_channels.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty()
    }

    /// Writes the messages waiting in the mailbox into `out`; a shard channel whose slot left
    /// the server ([`Message::ShardEnded`]) is dropped from the subscriptions and confirmed
    /// as an unsubscription, as Redis tells its subscribers. How many messages there were.
    pub(crate) fn deliver(&mut self, protocol: Protocol, out: &mut Vec<u8>) -> usize {
        let messages = self.mailbox.take();
        for message in &messages {
            match message {
                Message::ShardEnded { channel } => {
                    self.shard_channels.retain(|c| c != channel);
                    let count = self.shard_channels.len();
                    confirm(protocol, out, b"sunsubscribe", Some(channel), count);
                }
                published => published.encode(protocol, true, out),
            }
        }
        messages.len()
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for (kind, names) in [
            (Kind::Channel, &self.channels),
            (Kind::Pattern, &self.patterns),
            (Kind::Shard, &self.shard_channels),
        ] {
            for name in names {
                self.registry.remove(kind, name, &self.mailbox);
            }
        }
    }
}

/// Which subscription command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubscriptionCommand {
    /// `SUBSCRIBE`, `PSUBSCRIBE` or `SSUBSCRIBE`.
    Subscribe(KindName),
    /// `UNSUBSCRIBE`, `PUNSUBSCRIBE` or `SUNSUBSCRIBE`.
    Unsubscribe(KindName),
}

/// A kind of subscription, as the command table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KindName {
    /// Channels.
    Channel,
    /// Patterns.
    Pattern,
    /// Shard channels.
    Shard,
}

impl KindName {
    fn kind(self) -> Kind {
        match self {
            KindName::Channel => Kind::Channel,
            KindName::Pattern => Kind::Pattern,
            KindName::Shard => Kind::Shard,
        }
    }

    fn reply_name(self, subscribe: bool) -> &'static [u8] {
        match (self, subscribe) {
            (KindName::Channel, true) => b"subscribe",
            (KindName::Channel, false) => b"unsubscribe",
            (KindName::Pattern, true) => b"psubscribe",
            (KindName::Pattern, false) => b"punsubscribe",
            (KindName::Shard, true) => b"ssubscribe",
            (KindName::Shard, false) => b"sunsubscribe",
        }
    }
}

/// Runs a subscription command on `conn`, its replies (one per name) written to `out`.
pub(crate) fn run(
    which: SubscriptionCommand,
    registry: &Arc<PubSub>,
    conn: &mut Conn,
    out: &mut Vec<u8>,
    argv: &Argv<'_>,
) -> Result<(), CommandError> {
    match which {
        SubscriptionCommand::Subscribe(kind) => {
            let subscriptions = conn.subscriptions.get_or_insert_with(|| Subscriptions {
                registry: registry.clone(),
                mailbox: conn.info.mailbox().clone(),
                channels: Vec::new(),
                patterns: Vec::new(),
                shard_channels: Vec::new(),
            });
            for name in argv.iter().skip(1) {
                let names = subscriptions.names(kind.kind());
                if !names.iter().any(|n| **n == *name) {
                    let name = Bytes::copy_from_slice(name);
                    registry.add(kind.kind(), &name, &subscriptions.mailbox);
                    subscriptions.names(kind.kind()).push(name);
                }
                let count = subscriptions.count(kind.kind());
                confirm(conn.protocol, out, kind.reply_name(true), Some(name), count);
            }
        }
        SubscriptionCommand::Unsubscribe(kind) => {
            let named: Vec<Bytes> = if argv.len() > 1 {
                argv.iter().skip(1).map(Bytes::copy_from_slice).collect()
            } else {
                conn.subscriptions
                    .as_mut()
                    .map(|s| s.names(kind.kind()).clone())
                    .unwrap_or_default()
            };
            if named.is_empty() {
                // Nothing to unsubscribe from: one reply with a null name, as Redis.
                let count = conn
                    .subscriptions
                    .as_ref()
                    .map_or(0, |s| s.count(kind.kind()));
                confirm(conn.protocol, out, kind.reply_name(false), None, count);
            }
            for name in named {
                let mut count = 0;
                if let Some(subscriptions) = conn.subscriptions.as_mut() {
                    let names = subscriptions.names(kind.kind());
                    if let Some(at) = names.iter().position(|n| *n == name) {
                        names.remove(at);
                        registry.remove(kind.kind(), &name, &subscriptions.mailbox);
                    }
                    count = subscriptions.count(kind.kind());
                }
                confirm(
                    conn.protocol,
                    out,
                    kind.reply_name(false),
                    Some(&name),
                    count,
                );
            }
            if conn.subscriptions.as_ref().is_some_and(|s| s.is_empty()) {
                // The connection leaves the subscribed state; messages already in its
                // mailbox are still written.
                if let Some(mut subscriptions) = conn.subscriptions.take() {
                    subscriptions.deliver(conn.protocol, out);
                }
            }
        }
    }
    Ok(())
}

/// One (un)subscription's confirmation: `[kind, name, count]`, pushed in RESP3.
fn confirm(protocol: Protocol, out: &mut Vec<u8>, kind: &[u8], name: Option<&[u8]>, count: usize) {
    let mut reply = Reply::new(out, protocol);
    reply.push(3);
    reply.bulk(kind);
    match name {
        Some(name) => reply.bulk(name),
        None => reply.null(),
    }
    reply.int(count as i64);
}

/// Redis's refusal of a command a RESP2 connection may not run while it is subscribed, if
/// `command` is one.
pub(crate) fn unsubscribed_context_error(conn: &Conn, name: &str) -> Option<CommandError> {
    let subscribed = conn.subscriptions.as_ref().is_some_and(|s| !s.is_empty());
    if !subscribed || conn.protocol != Protocol::Resp2 {
        return None;
    }
    let allowed = matches!(
        name,
        "ping"
            | "subscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "sunsubscribe"
            | "psubscribe"
            | "punsubscribe"
            | "quit"
            | "reset"
    );
    (!allowed).then(|| {
        CommandError::Other(
            format!(
                "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / \
                 QUIT / RESET are allowed in this context"
            )
            .into(),
        )
    })
}
