//! Pub/Sub, written once for the node and the proxy: the registry of subscriptions
//! ([`PubSub`], in the [`Door`](crate::Door)), each subscribed connection's mailbox, and the
//! subscription commands (`SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE SSUBSCRIBE
//! SUNSUBSCRIBE`) with Redis 7's replies: arrays in RESP2 (where a subscribed connection may
//! only run those, `PING`, `QUIT` and `RESET`), push messages in RESP3 (where it may run
//! anything).
//!
//! A publisher (a backend's `PUBLISH`) puts each message in its subscribers' mailboxes; a
//! subscribed connection's session waits for its socket and its mailbox at once, and writes
//! the messages in the protocol the connection speaks then. A subscriber whose unwritten
//! messages and replies pass `client-output-buffer-limit pubsub` (Redis's default 32mb, or
//! 8mb for 60 s) is disconnected.

mod introspect;
pub(crate) mod mailbox;
mod registry;
mod subscriptions;

pub(crate) use introspect::{Question, answer};
pub(crate) use mailbox::{Invalidation, Mailbox, Message};
pub use registry::{Kind, PubSub, Published, SubscriptionObserver};
pub(crate) use subscriptions::{
    KindName, SubscriptionCommand, Subscriptions, run, unsubscribed_context_error,
};
