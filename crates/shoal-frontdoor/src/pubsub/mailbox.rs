//! A subscriber's mailbox: the messages published to it that its session has not written yet,
//! bounded by `client-output-buffer-limit pubsub` (a subscriber that does not read is
//! disconnected, never allowed to grow without limit).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_proto::{Protocol, Reply};
use tokio::sync::Notify;

use crate::clients::ClientInfo;
use crate::settings::OutputLimit;

/// What a message is, as its subscriber reads it.
#[derive(Debug, Clone)]
pub(crate) enum Message {
    /// `message channel payload`: published to a channel it subscribed to.
    Channel { channel: Bytes, payload: Bytes },
    /// `pmessage pattern channel payload`: published to a channel its pattern matches.
    Pattern {
        pattern: Bytes,
        channel: Bytes,
        payload: Bytes,
    },
    /// `smessage channel payload`: published to a shard channel it subscribed to.
    Shard { channel: Bytes, payload: Bytes },
    /// The server no longer serves the shard channel's slot: the subscription ends, and the
    /// subscriber reads `sunsubscribe channel count` ([`super::Subscriptions`] writes it, as
    /// only it knows the count).
    ShardEnded { channel: Bytes },
    /// Tracked keys changed (see [`crate::tracking`]): an `invalidate` push in RESP3, or a
    /// `message` on `__redis__:invalidate` to a RESP2 subscriber it is `redirected` to.
    Invalidate {
        /// What changed.
        invalidation: Invalidation,
        /// Sent to this connection for another one (`CLIENT TRACKING ... REDIRECT`).
        redirected: bool,
    },
    /// The connection this one redirects its invalidations to is gone (RESP3 only).
    RedirectBroken {
        /// The redirect id.
        id: u64,
    },
}

/// What an invalidation says changed.
#[derive(Debug, Clone)]
pub(crate) enum Invalidation {
    /// These keys.
    Keys(Vec<Bytes>),
    /// Everything (`FLUSHALL`): a null, written as the tracking client's protocol writes it
    /// (as Redis does, even when redirected to a connection that speaks the other).
    Flush(Protocol),
}

/// What a message's size counts for its framing, beside the bytes it holds.
const FRAMING: usize = 48;

/// What a message's size counts for each key of an invalidation.
fn key_size(key: &Bytes) -> usize {
    key.len() + 16
}

/// The channel RESP2 connections read invalidations on.
const INVALIDATE_CHANNEL: &[u8] = b"__redis__:invalidate";

impl Message {
    /// The bytes it holds (for the output limit), with a little for the framing.
    fn size(&self) -> usize {
        FRAMING
            + match self {
                Message::Channel { channel, payload } | Message::Shard { channel, payload } => {
                    channel.len() + payload.len()
                }
                Message::ShardEnded { channel } => channel.len(),
                Message::Invalidate { invalidation, .. } => match invalidation {
                    Invalidation::Keys(keys) => keys.iter().map(key_size).sum(),
                    Invalidation::Flush(_) => 0,
                },
                Message::RedirectBroken { .. } => 0,
                Message::Pattern {
                    pattern,
                    channel,
                    payload,
                } => pattern.len() + channel.len() + payload.len(),
            }
    }

    /// Writes a message as Redis does: an array in RESP2, a push in RESP3
    /// ([`Message::ShardEnded`] is written by [`super::Subscriptions`]). `subscribed`: the
    /// connection subscribes (a RESP2 one reads redirected invalidations only then).
    pub(crate) fn encode(&self, protocol: Protocol, subscribed: bool, out: &mut Vec<u8>) {
        let mut reply = Reply::new(out, protocol);
        match self {
            Message::Invalidate {
                invalidation,
                redirected,
            } => {
                if protocol == Protocol::Resp3 {
                    reply.push(2);
                    reply.bulk(b"invalidate");
                } else if *redirected && subscribed {
                    reply.array(3);
                    reply.bulk(b"message");
                    reply.bulk(INVALIDATE_CHANNEL);
                } else {
                    // RESP2 has no way to tell a connection that is not subscribed.
                    return;
                }
                match invalidation {
                    Invalidation::Keys(keys) => {
                        reply.array(keys.len());
                        for key in keys {
                            reply.bulk(key);
                        }
                    }
                    Invalidation::Flush(null_protocol) => Reply::new(out, *null_protocol).null(),
                }
            }
            Message::RedirectBroken { id } => {
                if protocol == Protocol::Resp3 {
                    reply.push(2);
                    reply.bulk(b"tracking-redir-broken");
                    reply.int(i64::try_from(*id).unwrap_or(i64::MAX));
                }
            }
            Message::Channel { channel, payload } => {
                reply.push(3);
                reply.bulk(b"message");
                reply.bulk(channel);
                reply.bulk(payload);
            }
            Message::Pattern {
                pattern,
                channel,
                payload,
            } => {
                reply.push(4);
                reply.bulk(b"pmessage");
                reply.bulk(pattern);
                reply.bulk(channel);
                reply.bulk(payload);
            }
            Message::Shard { channel, payload } => {
                reply.push(3);
                reply.bulk(b"smessage");
                reply.bulk(channel);
                reply.bulk(payload);
            }
            Message::ShardEnded { channel } => {
                reply.push(3);
                reply.bulk(b"sunsubscribe");
                reply.bulk(channel);
                reply.int(0);
            }
        }
    }
}

/// What became of a message given to a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// It waits for the session to write it.
    Queued,
    /// Its connection is closing: it is dropped.
    Dropped,
    /// It would take its connection over its limit: the connection is closed (now).
    Closed,
}

/// One subscribed connection's messages still to be written.
#[derive(Debug)]
pub(crate) struct Mailbox {
    queue: Mutex<Queue>,
    /// Bytes in the queue.
    bytes: AtomicUsize,
    /// Wakes the session when a message arrives.
    arrived: Notify,
    /// The connection, to close it when it overruns its limit (weak: the connection's
    /// [`ClientInfo`] holds its mailbox).
    client: Weak<ClientInfo>,
}

#[derive(Debug, Default)]
struct Queue {
    messages: VecDeque<Message>,
    /// Keys changed under broadcast (`BCAST`) prefixes, by (redirected, prefix): written
    /// after the other messages, one invalidation per prefix with its keys sorted, as Redis
    /// sends the keys of one event-loop turn.
    broadcast: BTreeMap<(bool, Bytes), BTreeSet<Bytes>>,
    /// Since when more than the soft limit has been waiting.
    over_soft_since: Option<Instant>,
}

impl Mailbox {
    pub(crate) fn new(client: &Arc<ClientInfo>) -> Mailbox {
        Mailbox {
            queue: Mutex::default(),
            bytes: AtomicUsize::new(0),
            arrived: Notify::new(),
            client: Arc::downgrade(client),
        }
    }

    /// Adds `message` unless that takes the connection over its limit (its output buffer
    /// counted too), in which case the connection is closed instead, as Redis closes a
    /// subscriber over `client-output-buffer-limit pubsub`.
    pub(crate) fn deliver(&self, message: Message, limit: OutputLimit) -> Delivery {
        let size = message.size();
        self.admit(size, limit, move |queue| {
            queue.messages.push_back(message);
            size
        })
    }

    /// `key` changed under the broadcast `prefix`: batched with the other keys under it until
    /// the session writes them (see [`Queue::broadcast`]), within the same limit as
    /// [`Mailbox::deliver`].
    pub(crate) fn deliver_broadcast(
        &self,
        prefix: &Bytes,
        key: &Bytes,
        redirected: bool,
        limit: OutputLimit,
    ) -> Delivery {
        self.admit(FRAMING + key_size(key), limit, |queue| {
            let mut added = 0;
            let keys = queue
                .broadcast
                .entry((redirected, prefix.clone()))
                .or_insert_with(|| {
                    added += FRAMING;
                    BTreeSet::new()
                });
            if keys.insert(key.clone()) {
                added += key_size(key);
            }
            added
        })
    }

    /// Queues what `add` adds (returning its size) unless `size` more takes the connection
    /// over its limit, in which case the connection is closed.
    fn admit(
        &self,
        size: usize,
        limit: OutputLimit,
        add: impl FnOnce(&mut Queue) -> usize,
    ) -> Delivery {
        let Some(client) = self.client.upgrade() else {
            return Delivery::Dropped;
        };
        if client.is_killed() {
            return Delivery::Dropped;
        }
        let mut queue = self.queue.lock();
        let pending = self.bytes.load(Relaxed) + size + client.output_buffer.load(Relaxed);
        let over_hard = limit.hard > 0 && pending > limit.hard;
        let over_soft = limit.soft > 0 && pending > limit.soft;
        if !over_soft {
            queue.over_soft_since = None;
        }
        let soft_expired = over_soft && {
            let since = *queue.over_soft_since.get_or_insert_with(Instant::now);
            since.elapsed().as_secs() >= limit.soft_seconds
        };
        if over_hard || soft_expired {
            drop(queue);
            tracing::warn!(
                client = client.id,
                addr = %client.addr,
                bytes = pending,
                "closing client for overcoming of output buffer limits (pubsub)"
            );
            return if client.kill_for_output_limit() {
                Delivery::Closed
            } else {
                Delivery::Dropped
            };
        }
        let added = add(&mut queue);
        self.bytes.fetch_add(added, Relaxed);
        drop(queue);
        self.arrived.notify_one();
        Delivery::Queued
    }

    /// Resolves once a message may have arrived since the last [`Mailbox::drain`].
    pub(crate) async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Takes every waiting message, for the session to write.
    pub(crate) fn take(&self) -> VecDeque<Message> {
        let mut queue = self.queue.lock();
        let mut messages = std::mem::take(&mut queue.messages);
        for ((redirected, _), keys) in std::mem::take(&mut queue.broadcast) {
            messages.push_back(Message::Invalidate {
                invalidation: Invalidation::Keys(keys.into_iter().collect()),
                redirected,
            });
        }
        drop(queue);
        let size: usize = messages.iter().map(Message::size).sum();
        self.bytes.fetch_sub(size, Relaxed);
        messages
    }
}
