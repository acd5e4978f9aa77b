//! Pub/Sub across the cluster, as Redis Cluster has it: what a node's clients `PUBLISH` goes to
//! every other node, what they `SPUBLISH` to the other nodes of the node's shard, and each
//! node delivers it to its own subscribers.
//!
//! A node keeps one long-lived bus connection per peer it relays to ([`Relay`]), fed by a
//! bounded queue: publications that pile up while one is sent go together in the next
//! [`Request::Publish`]. A peer that cannot keep up (or is down) costs at most
//! `LINK_QUEUE` queued publications; beyond, new ones for it are dropped and counted, as a
//! pub/sub message is fire-and-forget.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::bus::{BusConnection, Reply, Request};
use crate::bus_credentials::BusCredentials;

/// One publication, as the bus carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The channel (or shard channel).
    pub channel: Vec<u8>,
    /// The message.
    pub message: Vec<u8>,
    /// `SPUBLISH` (to a shard channel's subscribers), not `PUBLISH`.
    pub shard: bool,
}

/// Publications one peer's link holds before new ones for it are dropped.
const LINK_QUEUE: usize = 64 * 1024;

/// Publications sent in one request at most.
const BATCH: usize = 1024;

/// How long connecting to a peer, or its answer, may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The links to the peers a node relays publications to.
pub(crate) struct Relay {
    credentials: BusCredentials,
    /// The runtime the links run on (the cluster's, whatever thread publishes).
    runtime: tokio::runtime::Handle,
    links: std::sync::Mutex<HashMap<String, mpsc::Sender<Arc<Publication>>>>,
    dropped: Arc<AtomicU64>,
}

impl Relay {
    /// A relay whose links run on the current runtime.
    pub(crate) fn new(credentials: BusCredentials) -> Relay {
        Relay {
            credentials,
            runtime: tokio::runtime::Handle::current(),
            links: std::sync::Mutex::default(),
            dropped: Arc::default(),
        }
    }

    /// Queues `publication` for the peer whose bus is at `to`, starting its link if needed.
    pub(crate) fn send(&self, to: &str, publication: &Arc<Publication>) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let link = links
            .entry(to.to_string())
            .or_insert_with(|| self.start_link(to));
        match link.try_send(publication.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(publication)) => {
                // Its task ended (the runtime shuts down): one more try with a new one.
                let fresh = self.start_link(to);
                if fresh.try_send(publication).is_err() {
                    self.dropped.fetch_add(1, Relaxed);
                }
                *link = fresh;
            }
        }
    }

    fn start_link(&self, to: &str) -> mpsc::Sender<Arc<Publication>> {
        let (sender, receiver) = mpsc::channel(LINK_QUEUE);
        let link = Link {
            addr: to.to_string(),
            credentials: self.credentials.clone(),
            dropped: self.dropped.clone(),
        };
        self.runtime.spawn(link.run(receiver));
        sender
    }
}

/// One peer's link: its connection, opened when needed and dropped on an error.
struct Link {
    addr: String,
    credentials: BusCredentials,
    dropped: Arc<AtomicU64>,
}

impl Link {
    async fn run(self, mut queue: mpsc::Receiver<Arc<Publication>>) {
        let mut connection: Option<BusConnection> = None;
        let mut batch = Vec::with_capacity(BATCH);
        while queue.recv_many(&mut batch, BATCH).await > 0 {
            let request = Request::Publish {
                publications: batch.drain(..).map(|p| (*p).clone()).collect(),
            };
            if !self.deliver(&mut connection, &request).await
                && let Request::Publish { publications } = &request
            {
                self.dropped.fetch_add(publications.len() as u64, Relaxed);
            }
        }
    }

    /// Sends `request` on the connection (opening it first if needed, and once more on a
    /// fresh one if the old one failed); whether the peer took it.
    async fn deliver(&self, connection: &mut Option<BusConnection>, request: &Request) -> bool {
        for _ in 0..2 {
            if connection.is_none() {
                match BusConnection::connect(&self.addr, &self.credentials, TIMEOUT).await {
                    Ok(opened) => *connection = Some(opened),
                    Err(e) => {
                        tracing::debug!(peer = %self.addr, "cannot relay publications: {e}");
                        return false;
                    }
                }
            }
            let Some(open) = connection.as_mut() else {
                return false;
            };
            match open.call(request, TIMEOUT).await {
                Ok(Reply::Noted) => return true,
                Ok(other) => {
                    tracing::debug!(peer = %self.addr, "publications refused: {other:?}");
                    return false;
                }
                Err(e) => {
                    tracing::debug!(peer = %self.addr, "relaying publications: {e}");
                    *connection = None;
                }
            }
        }
        false
    }
}
