//! Pub/Sub on a cluster ([`Subscriber`]): the subscriptions asked for, kept on connections of
//! their own (a subscribed connection carries messages, not replies), in RESP3 so that
//! messages arrive as pushes. Channels and patterns live on one node (a `PUBLISH` anywhere
//! reaches every node); each shard channel lives on its slot's primary. A connection that
//! breaks is opened again, on whichever node the map then says, and its subscriptions are
//! made again: messages published meanwhile are lost, as with Redis.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use shoal_cluster::key_slot;
use shoal_proto::reply::{Value, decode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::Client;
use crate::codec::encode;
use crate::config::Protocol;
use crate::conn::{ConnOptions, establish};

/// What a subscription is to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubscriptionKind {
    /// A channel (`SUBSCRIBE`).
    Channel,
    /// A glob pattern of channels (`PSUBSCRIBE`).
    Pattern,
    /// A shard channel (`SSUBSCRIBE`).
    Shard,
}

impl SubscriptionKind {
    fn commands(self) -> (&'static str, &'static str) {
        match self {
            SubscriptionKind::Channel => ("SUBSCRIBE", "UNSUBSCRIBE"),
            SubscriptionKind::Pattern => ("PSUBSCRIBE", "PUNSUBSCRIBE"),
            SubscriptionKind::Shard => ("SSUBSCRIBE", "SUNSUBSCRIBE"),
        }
    }
}

/// A message a subscription brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Published to a subscribed channel.
    Channel {
        /// The channel.
        channel: Bytes,
        /// The message.
        payload: Bytes,
    },
    /// Published to a channel a subscribed pattern matches.
    Pattern {
        /// The pattern.
        pattern: Bytes,
        /// The channel.
        channel: Bytes,
        /// The message.
        payload: Bytes,
    },
    /// Published to a subscribed shard channel.
    Shard {
        /// The shard channel.
        channel: Bytes,
        /// The message.
        payload: Bytes,
    },
}

/// Where a [`Subscriber`]'s messages go (called on the client's runtime: keep it short).
pub type MessageSink = Arc<dyn Fn(Message) + Send + Sync>;

/// How long a broken subscription waits before it is made again.
const RETRY: Duration = Duration::from_millis(200);

/// Subscriptions kept on the cluster, their messages handed to a sink. Dropping it closes its
/// connections.
pub struct Subscriber {
    changes: mpsc::UnboundedSender<Change>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber").finish_non_exhaustive()
    }
}

/// A change asked of a [`Subscriber`].
enum Change {
    Subscribe(SubscriptionKind, Bytes),
    Unsubscribe(SubscriptionKind, Bytes),
}

impl Client {
    /// A [`Subscriber`] whose messages go to `sink`. Its connections use this client's
    /// settings (TLS, user and password), in RESP3; its task runs on the current runtime.
    pub fn subscriber(&self, sink: MessageSink) -> Subscriber {
        let (changes, queue) = mpsc::unbounded_channel();
        let mut options = ConnOptions::of(self.config());
        options.protocol = Protocol::Resp3;
        options.readonly = false;
        let manager = Manager {
            client: self.clone(),
            options,
            sink,
            wanted: BTreeSet::new(),
            links: HashMap::new(),
        };
        tokio::spawn(manager.run(queue));
        Subscriber { changes }
    }
}

impl Subscriber {
    /// Subscribes to `name` (a channel, pattern or shard channel, as `kind` says).
    pub fn subscribe(&self, kind: SubscriptionKind, name: Bytes) {
        let _ = self.changes.send(Change::Subscribe(kind, name));
    }

    /// Ends the subscription to `name`.
    pub fn unsubscribe(&self, kind: SubscriptionKind, name: Bytes) {
        let _ = self.changes.send(Change::Unsubscribe(kind, name));
    }
}

/// A connection carrying some subscriptions: what to send it, and what it carries.
struct Link {
    frames: mpsc::UnboundedSender<Bytes>,
    names: BTreeSet<(SubscriptionKind, Bytes)>,
}

/// What a link's task reports when its connection ends.
struct Broken(String);

/// Keeps the wanted subscriptions placed on links.
struct Manager {
    client: Client,
    options: ConnOptions,
    sink: MessageSink,
    wanted: BTreeSet<(SubscriptionKind, Bytes)>,
    links: HashMap<String, Link>,
}

impl Manager {
    async fn run(mut self, mut changes: mpsc::UnboundedReceiver<Change>) {
        let (broken_tx, mut broken) = mpsc::unbounded_channel::<Broken>();
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    None => return, // the Subscriber is gone: links close with their senders
                    Some(Change::Subscribe(kind, name)) => {
                        if self.wanted.insert((kind, name.clone())) {
                            self.place(kind, name, &broken_tx);
                        }
                    }
                    Some(Change::Unsubscribe(kind, name)) => {
                        if self.wanted.remove(&(kind, name.clone())) {
                            self.unplace(kind, name);
                        }
                    }
                },
                Some(Broken(addr)) = broken.recv() => {
                    if let Some(link) = self.links.remove(&addr) {
                        tokio::time::sleep(RETRY).await;
                        for (kind, name) in link.names {
                            if self.wanted.contains(&(kind, name.clone())) {
                                self.place(kind, name, &broken_tx);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The node a subscription belongs on, by the current map.
    fn home(&self, kind: SubscriptionKind, name: &[u8]) -> Option<String> {
        let map = self.client.map();
        match kind {
            SubscriptionKind::Shard => {
                let owner = map.slots.get(key_slot(name))?;
                map.node(map.shard(owner)?.primary).map(|n| n.resp_addr())
            }
            // Channels and patterns stay on a node that has some already, else any primary.
            _ => self
                .links
                .iter()
                .find(|(_, link)| {
                    link.names
                        .iter()
                        .any(|(k, _)| *k != SubscriptionKind::Shard)
                })
                .map(|(addr, _)| addr.clone())
                .or_else(|| crate::cluster_wide::primaries(&map).into_iter().next()),
        }
    }

    fn place(
        &mut self,
        kind: SubscriptionKind,
        name: Bytes,
        broken: &mpsc::UnboundedSender<Broken>,
    ) {
        let Some(addr) = self.home(kind, &name) else {
            tracing::warn!("pub/sub: no node for a subscription (no cluster map yet)");
            return;
        };
        let link = self.links.entry(addr.clone()).or_insert_with(|| {
            let (frames, queue) = mpsc::unbounded_channel();
            let task = LinkTask {
                addr: addr.clone(),
                options: self.options.clone(),
                sink: self.sink.clone(),
            };
            let broken = broken.clone();
            tokio::spawn(async move {
                let reason = task.run(queue).await;
                tracing::debug!(peer = %addr, "pub/sub connection ended: {reason}");
                let _ = broken.send(Broken(addr));
            });
            Link {
                frames,
                names: BTreeSet::new(),
            }
        });
        let (subscribe, _) = kind.commands();
        let _ = link.frames.send(encode(&[subscribe.as_bytes(), &name]));
        link.names.insert((kind, name));
    }

    fn unplace(&mut self, kind: SubscriptionKind, name: Bytes) {
        let key = (kind, name);
        let Some((addr, link)) = self.links.iter_mut().find(|(_, l)| l.names.contains(&key)) else {
            return;
        };
        let (_, unsubscribe) = kind.commands();
        let _ = link.frames.send(encode(&[unsubscribe.as_bytes(), &key.1]));
        link.names.remove(&key);
        if link.names.is_empty() {
            let addr = addr.clone();
            self.links.remove(&addr);
        }
    }
}

/// One subscription connection's task.
struct LinkTask {
    addr: String,
    options: ConnOptions,
    sink: MessageSink,
}

impl LinkTask {
    /// Connects, then writes the frames it is given and hands the messages it reads to the
    /// sink, until the connection or the queue ends; why it ended.
    async fn run(self, mut frames: mpsc::UnboundedReceiver<Bytes>) -> String {
        let (stream, mut buf) = match establish(&self.addr, &self.options).await {
            Ok(opened) => opened,
            Err(e) => return e.to_string(),
        };
        let (mut rd, mut wr) = stream.into_halves();
        let mut chunk = BytesMut::with_capacity(16 * 1024);
        loop {
            if let Err(reason) = self.deliver(&mut buf) {
                return reason;
            }
            tokio::select! {
                frame = frames.recv() => match frame {
                    None => return "no subscriptions left".into(),
                    Some(frame) => {
                        if let Err(e) = wr.write_all(&frame).await {
                            return e.to_string();
                        }
                    }
                },
                read = rd.read_buf(&mut chunk) => match read {
                    Ok(0) => return "closed by the node".into(),
                    Ok(_) => {
                        buf.extend_from_slice(&chunk);
                        chunk.clear();
                    }
                    Err(e) => return e.to_string(),
                },
            }
        }
    }

    /// Hands every complete message in `buf` to the sink (confirmations and replies are
    /// skipped; an error reply, such as a shard channel's `-MOVED`, ends the link so that its
    /// subscriptions are placed again by a newer map).
    fn deliver(&self, buf: &mut BytesMut) -> Result<(), String> {
        loop {
            let (value, used) = match decode(buf) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => return Ok(()),
                Err(e) => return Err(format!("malformed reply: {}", e.0)),
            };
            buf.advance(used);
            match value {
                Value::Push(items) => {
                    if let Some(message) = message(items) {
                        (self.sink)(message);
                    }
                }
                Value::Error(line) | Value::BulkError(line) => {
                    return Err(String::from_utf8_lossy(&line).into_owned());
                }
                _ => {}
            }
        }
    }
}

/// The message a push carries, if it is one (not a confirmation).
fn message(items: Vec<Value>) -> Option<Message> {
    let mut parts = items.into_iter().map(|v| match v {
        Value::Bulk(b) | Value::Simple(b) => Some(Bytes::from(b)),
        _ => None,
    });
    let kind = parts.next()??;
    match &kind[..] {
        b"message" => Some(Message::Channel {
            channel: parts.next()??,
            payload: parts.next()??,
        }),
        b"pmessage" => Some(Message::Pattern {
            pattern: parts.next()??,
            channel: parts.next()??,
            payload: parts.next()??,
        }),
        b"smessage" => Some(Message::Shard {
            channel: parts.next()??,
            payload: parts.next()??,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::Bulk(s.as_bytes().to_vec())
    }

    #[test]
    fn pushes_are_messages_and_confirmations_are_not() {
        assert_eq!(
            message(vec![bulk("message"), bulk("ch"), bulk("hi")]),
            Some(Message::Channel {
                channel: Bytes::from_static(b"ch"),
                payload: Bytes::from_static(b"hi"),
            })
        );
        assert_eq!(
            message(vec![bulk("pmessage"), bulk("c*"), bulk("ch"), bulk("hi")]),
            Some(Message::Pattern {
                pattern: Bytes::from_static(b"c*"),
                channel: Bytes::from_static(b"ch"),
                payload: Bytes::from_static(b"hi"),
            })
        );
        assert_eq!(
            message(vec![bulk("subscribe"), bulk("ch"), Value::Int(1)]),
            None
        );
        assert_eq!(message(vec![bulk("message"), bulk("ch")]), None);
    }
}
