//! Subscribers through the proxy: the proxy's clients subscribe in its front door as on a
//! node, and for each channel, pattern or shard channel one of them subscribes to, the proxy
//! keeps one subscription upstream ([`shoal_client::Subscriber`]: channels and patterns on one
//! node, each shard channel on its slot's primary). What upstream sends is delivered to the
//! local subscribers it was for. `PUBLISH` goes to a node like any command, which relays it
//! to every node, so it comes back through the upstream subscription.

use std::sync::Arc;

use bytes::Bytes;
use shoal_client::{Client, Message, Subscriber, SubscriptionKind};
use shoal_frontdoor::Door;
use shoal_frontdoor::pubsub::{Kind, SubscriptionObserver};

/// Subscribes upstream for the names the proxy's clients subscribe to.
struct Upstream(Subscriber);

fn upstream_kind(kind: Kind) -> SubscriptionKind {
    match kind {
        Kind::Channel => SubscriptionKind::Channel,
        Kind::Pattern => SubscriptionKind::Pattern,
        Kind::Shard => SubscriptionKind::Shard,
    }
}

impl SubscriptionObserver for Upstream {
    fn first(&self, kind: Kind, name: &Bytes) {
        self.0.subscribe(upstream_kind(kind), name.clone());
    }

    fn last(&self, kind: Kind, name: &Bytes) {
        self.0.unsubscribe(upstream_kind(kind), name.clone());
    }
}

/// Connects `door`'s subscriptions to the cluster through `client` (on the current runtime).
pub(crate) fn relay(door: &Arc<Door>, client: &Client) {
    let local = door.clone();
    let subscriber = client.subscriber(Arc::new(move |message| {
        match message {
            Message::Channel { channel, payload } => {
                local.deliver_relayed(Kind::Channel, &channel, &channel, &payload)
            }
            Message::Pattern {
                pattern,
                channel,
                payload,
            } => local.deliver_relayed(Kind::Pattern, &pattern, &channel, &payload),
            Message::Shard { channel, payload } => {
                local.deliver_relayed(Kind::Shard, &channel, &channel, &payload)
            }
        };
    }));
    door.pubsub.observe(Arc::new(Upstream(subscriber)));
}
