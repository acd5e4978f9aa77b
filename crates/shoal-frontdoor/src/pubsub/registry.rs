//! Who subscribes to what, on this server: channels, patterns and shard channels, each with
//! the mailboxes of its subscribers. Publishing walks them under one lock per kind.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_proto::glob::glob_match;

use super::mailbox::{Delivery, Mailbox, Message};
use crate::settings::OutputLimit;

/// The kinds of subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SUBSCRIBE`: a channel.
    Channel,
    /// `PSUBSCRIBE`: a glob pattern of channels.
    Pattern,
    /// `SSUBSCRIBE`: a shard channel (cluster mode's channels bound to a slot).
    Shard,
}

/// Subscribers of one name.
type Subscribers = Vec<Arc<Mailbox>>;

/// Told when a name gets its first subscriber on this server, or loses its last: a proxy
/// subscribes upstream then, and unsubscribes. Called outside the registry's locks.
pub trait SubscriptionObserver: Send + Sync {
    /// `name` (of `kind`) has its first subscriber.
    fn first(&self, kind: Kind, name: &Bytes);
    /// `name` (of `kind`) lost its last subscriber.
    fn last(&self, kind: Kind, name: &Bytes);
}

/// Every subscription on this server.
#[derive(Default)]
pub struct PubSub {
    channels: Mutex<HashMap<Bytes, Subscribers>>,
    patterns: Mutex<HashMap<Bytes, Subscribers>>,
    shard_channels: Mutex<HashMap<Bytes, Subscribers>>,
    /// Pattern subscriptions, over every connection: publishing looks at patterns only if
    /// there are any.
    pattern_subscriptions: AtomicUsize,
    observer: std::sync::OnceLock<Arc<dyn SubscriptionObserver>>,
}

/// What a publication did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Subscribers that received it (Redis counts one it closes for its limit too: the
    /// message was sent its way).
    pub received: usize,
    /// Subscribers closed because it took them over `client-output-buffer-limit pubsub`.
    pub closed: usize,
}

impl Published {
    fn count(&mut self, delivery: Delivery) {
        match delivery {
            Delivery::Queued => self.received += 1,
            Delivery::Closed => {
                self.received += 1;
                self.closed += 1;
            }
            Delivery::Dropped => {}
        }
    }
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("channels", &self.channels.lock().len())
            .field("patterns", &self.patterns.lock().len())
            .field("shard_channels", &self.shard_channels.lock().len())
            .finish()
    }
}

impl PubSub {
    fn table(&self, kind: Kind) -> &Mutex<HashMap<Bytes, Subscribers>> {
        match kind {
            Kind::Channel => &self.channels,
            Kind::Pattern => &self.patterns,
            Kind::Shard => &self.shard_channels,
        }
    }

    /// Tells `observer` of every name's first subscriber and last unsubscription from now
    /// on. Set once.
    pub fn observe(&self, observer: Arc<dyn SubscriptionObserver>) {
        let _ = self.observer.set(observer);
    }

    /// Adds `mailbox` to the subscribers of `name`.
    pub(crate) fn add(&self, kind: Kind, name: &Bytes, mailbox: &Arc<Mailbox>) {
        let first = {
            let mut table = self.table(kind).lock();
            let subscribers = table.entry(name.clone()).or_default();
            subscribers.push(mailbox.clone());
            subscribers.len() == 1
        };
        if kind == Kind::Pattern {
            self.pattern_subscriptions.fetch_add(1, Relaxed);
        }
        if first && let Some(observer) = self.observer.get() {
            observer.first(kind, name);
        }
    }

    /// Removes `mailbox` from the subscribers of `name`.
    pub(crate) fn remove(&self, kind: Kind, name: &Bytes, mailbox: &Arc<Mailbox>) {
        let last = {
            let mut table = self.table(kind).lock();
            let Some(subscribers) = table.get_mut(name) else {
                return;
            };
            let before = subscribers.len();
            subscribers.retain(|m| !Arc::ptr_eq(m, mailbox));
            if kind == Kind::Pattern {
                self.pattern_subscriptions
                    .fetch_sub(before - subscribers.len(), Relaxed);
            }
            let empty = subscribers.is_empty();
            if empty {
                table.remove(name);
            }
            empty
        };
        if last && let Some(observer) = self.observer.get() {
            observer.last(kind, name);
        }
    }

    /// Whether `mailbox` holds a subscription that `allowed` (given its kind and name) refuses.
    /// Walks every subscription: for rare events (an ACL change), not per message.
    pub(crate) fn holds_any(
        &self,
        mailbox: &Arc<Mailbox>,
        mut allowed: impl FnMut(Kind, &[u8]) -> bool,
    ) -> bool {
        [Kind::Channel, Kind::Pattern, Kind::Shard]
            .into_iter()
            .any(|kind| {
                self.table(kind).lock().iter().any(|(name, subscribers)| {
                    subscribers.iter().any(|m| Arc::ptr_eq(m, mailbox)) && !allowed(kind, name)
                })
            })
    }

    /// Delivers a message another server relayed to exactly the subscribers it was for: a
    /// `message` to `channel`'s, a `pmessage` to pattern `name`'s (`channel` is the channel
    /// it matched), an `smessage` to shard channel `channel`'s. (Publishing here would reach
    /// the patterns as well, which get their own `pmessage` from upstream.)
    pub fn deliver_relayed(
        &self,
        kind: Kind,
        name: &Bytes,
        channel: &Bytes,
        payload: &Bytes,
        limit: OutputLimit,
    ) -> Published {
        let mut published = Published::default();
        if let Some(subscribers) = self.table(kind).lock().get(name) {
            for mailbox in subscribers {
                let message = match kind {
                    Kind::Channel => Message::Channel {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    },
                    Kind::Pattern => Message::Pattern {
                        pattern: name.clone(),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    },
                    Kind::Shard => Message::Shard {
                        channel: channel.clone(),
                        payload: payload.clone(),
                    },
                };
                published.count(mailbox.deliver(message, limit));
            }
        }
        published
    }

    /// `PUBLISH`: delivers `payload` to the subscribers of `channel` and of the patterns that
    /// match it, closing those it would take over `limit`.
    pub fn publish(&self, channel: &Bytes, payload: &Bytes, limit: OutputLimit) -> Published {
        let mut published = Published::default();
        if let Some(subscribers) = self.channels.lock().get(channel) {
            for mailbox in subscribers {
                let message = Message::Channel {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                published.count(mailbox.deliver(message, limit));
            }
        }
        if self.pattern_subscriptions.load(Relaxed) > 0 {
            for (pattern, subscribers) in self.patterns.lock().iter() {
                if !glob_match(pattern, channel, false) {
                    continue;
                }
                for mailbox in subscribers {
                    let message = Message::Pattern {
                        pattern: pattern.clone(),
                        channel: channel.clone(),
                        payload: payload.clone(),
                    };
                    published.count(mailbox.deliver(message, limit));
                }
            }
        }
        published
    }

    /// `SPUBLISH`: delivers `payload` to the subscribers of shard channel `channel` (as
    /// [`PubSub::publish`]).
    pub fn publish_shard(&self, channel: &Bytes, payload: &Bytes, limit: OutputLimit) -> Published {
        let mut published = Published::default();
        if let Some(subscribers) = self.shard_channels.lock().get(channel) {
            for mailbox in subscribers {
                let message = Message::Shard {
                    channel: channel.clone(),
                    payload: payload.clone(),
                };
                published.count(mailbox.deliver(message, limit));
            }
        }
        published
    }

    /// Ends every subscription to the shard channels `lost` picks (their slot left this
    /// server, as Redis Cluster ends them when a slot moves away): each subscriber reads
    /// `sunsubscribe channel count` and may subscribe again where the slot went. How many
    /// channels ended.
    pub fn end_shard_channels(&self, mut lost: impl FnMut(&[u8]) -> bool) -> usize {
        let ended: Vec<(Bytes, Subscribers)> = {
            let mut table = self.shard_channels.lock();
            let names: Vec<Bytes> = table.keys().filter(|name| lost(name)).cloned().collect();
            names
                .into_iter()
                .filter_map(|name| table.remove(&name).map(|subscribers| (name, subscribers)))
                .collect()
        };
        for (channel, subscribers) in &ended {
            for mailbox in subscribers {
                let message = Message::ShardEnded {
                    channel: channel.clone(),
                };
                // Not bounded: the end of a subscription always reaches its subscriber.
                mailbox.deliver(message, OutputLimit::default());
            }
            if let Some(observer) = self.observer.get() {
                observer.last(Kind::Shard, channel);
            }
        }
        ended.len()
    }

    /// `PUBSUB CHANNELS [pattern]` (or `SHARDCHANNELS` with `shard`): the names with at least
    /// one subscriber, matching `pattern` if given.
    pub fn channels(&self, shard: bool, pattern: Option<&[u8]>) -> Vec<Bytes> {
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        self.table(kind)
            .lock()
            .keys()
            .filter(|name| pattern.is_none_or(|p| glob_match(p, name, false)))
            .cloned()
            .collect()
    }

    /// `PUBSUB NUMSUB` (or `SHARDNUMSUB` with `shard`): subscribers of `channel`.
    pub fn subscribers(&self, shard: bool, channel: &[u8]) -> usize {
        let kind = if shard { Kind::Shard } else { Kind::Channel };
        self.table(kind).lock().get(channel).map_or(0, Vec::len)
    }

    /// `PUBSUB NUMPAT`: pattern subscriptions.
    pub fn patterns(&self) -> usize {
        self.patterns.lock().len()
    }
}
