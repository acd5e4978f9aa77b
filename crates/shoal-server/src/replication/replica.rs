//! A replica's link to its primary: connect, `PSYNC`, load the snapshot if it must, apply the
//! stream, acknowledge, and reconnect when the link breaks, until the role changes.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use shoal_proto::reply::{Value, decode};
use shoal_proto::request::{encode, encode_into};
use shoal_store::Store;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frames::{Applied, Applier};
use super::{LINK_SILENCE, Replication};

/// How often a replica acknowledges when nothing arrives.
const ACK_PERIOD: Duration = Duration::from_millis(100);

/// How long connecting and the handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a replica says about itself to its primary.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The RESP port it listens on (`REPLCONF listening-port`).
    pub listening_port: u16,
    /// The address it is known by in the cluster map (`REPLCONF ip-address`, as Redis's
    /// `replica-announce-ip`), so its primary can tell which node it is.
    pub announce_ip: Option<String>,
    /// The credentials the primary requires, if any (`masteruser`/`masterauth`).
    pub auth: Option<shoal_cluster::PeerAuth>,
    /// TLS to the primary (`tls-replication`): its certificate must chain to this
    /// configuration's CA, which shows this node's certificate if asked for one.
    pub tls: Option<Arc<shoal_frontdoor::tls::ClientConfig>>,
}

/// Follows `primary` while this node is its replica (the role says so and the role
/// generation is still `generation`), applying its stream to `store`.
pub async fn follow(
    store: Arc<Store>,
    replication: Arc<Replication>,
    functions: Arc<crate::scripting::Functions>,
    primary: String,
    generation: u64,
    config: LinkConfig,
) {
    let replication = &*replication;
    let current =
        |r: &Replication| r.generation.load(Relaxed) == generation && r.is_replica_of(&primary);
    // The previous link (to the previous primary) stops at its next step; wait for it, so
    // the offset this link starts from is final.
    let _link = replication.link_lock.lock().await;
    let mut backoff = Duration::from_millis(50);
    while current(replication) {
        let link = Link {
            replication,
            store: &store,
            functions: &functions,
            primary: &primary,
            config: &config,
            generation,
        };
        match link_once(link, &current).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => tracing::warn!(%primary, "replication link: {e}"),
        }
        replication.link.up.store(false, Relaxed);
        replication.link.loading.store(false, Relaxed);
        if !current(replication) {
            break;
        }
        let changed = replication.role_changed.notified();
        let _ = tokio::time::timeout(backoff, changed).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// A link error.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the primary answered {0}")]
    Refused(String),
    #[error(transparent)]
    Stream(#[from] super::frames::StreamError),
    #[error("no word from the primary for {0:?}")]
    Silent(Duration),
}

/// One link to the primary, until it breaks or this node stops being its replica:
/// [`handshake`], a full resync if the primary asks for one, then [`apply_stream`].
async fn link_once(
    link: Link<'_>,
    current: &impl Fn(&Replication) -> bool,
) -> Result<(), LinkError> {
    let stream = connect_peer(link.primary, link.config.tls.as_ref()).await?;
    link.run(stream, current).await
}

/// A connection to another node's RESP port, plain or TLS.
pub(crate) trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}

/// Connects to another node's RESP port at `addr` (`host:port`), over TLS if `tls` is given
/// (the node's certificate must name `host`), each step within the handshake timeout.
pub(crate) async fn connect_peer(
    addr: &str,
    tls: Option<&Arc<shoal_frontdoor::tls::ClientConfig>>,
) -> std::io::Result<Box<dyn PeerIo>> {
    let tcp = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let secured = shoal_frontdoor::tls::connect(tls.clone(), tcp, host);
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, secured)
        .await
        .map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
        })??;
    Ok(Box::new(tls))
}

/// What one link needs, whatever it runs over.
struct Link<'a> {
    replication: &'a Replication,
    store: &'a Store,
    functions: &'a Arc<crate::scripting::Functions>,
    primary: &'a str,
    config: &'a LinkConfig,
    generation: u64,
}

impl Link<'_> {
    /// [`link_once`] over an open connection, plain or TLS.
    async fn run(
        self,
        mut stream: impl AsyncRead + AsyncWrite + Unpin,
        current: &impl Fn(&Replication) -> bool,
    ) -> Result<(), LinkError> {
        let Link {
            replication,
            store,
            functions,
            primary,
            config,
            generation,
        } = self;
        let stream = &mut stream;
        let mut input: Vec<u8> = Vec::with_capacity(64 * 1024);
        let (replid, offset) = {
            let history = replication.history();
            (history.replid.clone(), history.backlog.end())
        };
        let psync = handshake(stream, &mut input, config, &replid, offset).await?;
        let mut words = psync.split(' ');
        let mut applier = Applier::new().with_functions(functions.clone());
        let counted = match (words.next(), words.next(), words.next()) {
            (Some("CONTINUE"), Some(id), _) => {
                let mut history = replication.history();
                if id != history.replid {
                    // The primary continues our history under a new id (it was promoted).
                    let old = std::mem::replace(&mut history.replid, id.to_string());
                    let end = history.backlog.end();
                    history.replid2 = Some((old, end));
                }
                drop(history);
                replication.link.partial_syncs.fetch_add(1, Relaxed);
                tracing::info!(%primary, offset, "partial resync");
                offset
            }
            (Some("FULLRESYNC"), Some(id), Some(from)) => {
                let from: u64 = from
                    .parse()
                    .map_err(|_| LinkError::Refused(psync.clone()))?;
                full_sync(
                    replication,
                    store,
                    stream,
                    &mut input,
                    &mut applier,
                    id,
                    from,
                )
                .await?;
                tracing::info!(%primary, keys = store.len(), from, "full resync done");
                from
            }
            _ => return Err(LinkError::Refused(psync)),
        };
        replication.link.up.store(true, Relaxed);
        replication
            .link
            .synced_generation
            .store(generation + 1, Relaxed);
        apply_stream(
            replication,
            store,
            stream,
            &mut input,
            &mut applier,
            counted,
            current,
        )
        .await
    }
}

/// Introduces this replica to its primary (`AUTH`, `REPLCONF listening-port`, `ip-address`,
/// `capa`) and asks to continue from `offset` of history `replid`. Returns the primary's
/// answer to `PSYNC` (`CONTINUE <replid>` or `FULLRESYNC <replid> <offset>`).
async fn handshake(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    input: &mut Vec<u8>,
    config: &LinkConfig,
    replid: &str,
    offset: u64,
) -> Result<String, LinkError> {
    let mut hello = Vec::new();
    if let Some(auth) = &config.auth {
        encode_into(&mut hello, &auth.auth_command());
    }
    let port = config.listening_port.to_string();
    encode_into(&mut hello, &["REPLCONF", "listening-port", &port]);
    if let Some(ip) = &config.announce_ip {
        encode_into(&mut hello, &["REPLCONF", "ip-address", ip]);
    }
    encode_into(&mut hello, &["REPLCONF", "capa", "psync2"]);
    let next = (offset + 1).to_string();
    encode_into(&mut hello, &["PSYNC", replid, &next]);
    stream.write_all(&hello).await?;
    stream.flush().await?;
    let answers =
        3 + usize::from(config.auth.is_some()) + usize::from(config.announce_ip.is_some());
    let mut last = String::new();
    for _ in 0..answers {
        let value = tokio::time::timeout(HANDSHAKE_TIMEOUT, next_reply(stream, input))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake reply")
            })??;
        match value {
            Value::Simple(line) => last = String::from_utf8_lossy(&line).into_owned(),
            Value::Error(line) => {
                return Err(LinkError::Refused(
                    String::from_utf8_lossy(&line).into_owned(),
                ));
            }
            other => return Err(LinkError::Refused(format!("{other:?}"))),
        }
    }
    Ok(last)
}

/// A full resync: empties the store, loads the primary's snapshot into it, and starts this
/// node's history over at `from` under the primary's `replid`.
async fn full_sync(
    replication: &Replication,
    store: &Store,
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    input: &mut Vec<u8>,
    applier: &mut Applier,
    replid: &str,
    from: u64,
) -> Result<(), LinkError> {
    replication.link.loading.store(true, Relaxed);
    replication.link.synced_generation.store(0, Relaxed);
    replication.link.up.store(true, Relaxed);
    store.clear();
    load_snapshot(replication, store, stream, input, applier).await?;
    replication.restart_history(replid.to_string(), from);
    replication.link.loading.store(false, Relaxed);
    replication.link.full_syncs.fetch_add(1, Relaxed);
    Ok(())
}

/// Applies the primary's stream from offset `counted` on, and acknowledges it, until the link
/// breaks or this node stops being the replica (`current` turns false).
async fn apply_stream(
    replication: &Replication,
    store: &Store,
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    input: &mut Vec<u8>,
    applier: &mut Applier,
    mut counted: u64,
    current: &impl Fn(&Replication) -> bool,
) -> Result<(), LinkError> {
    send_ack(stream, counted).await?;
    let mut next_ack = tokio::time::Instant::now() + ACK_PERIOD;
    loop {
        if !current(replication) {
            return Ok(());
        }
        // Apply whatever arrived; the applied bytes join this node's own backlog, so its
        // offsets are its primary's.
        let mut ack_now = false;
        let used = applier.apply(input, store, |n, applied| {
            ack_now |= applied == Applied::AckRequested;
            counted += n as u64;
        })?;
        if used > 0 {
            replication.append(&input[..used]);
            input.drain(..used);
        }
        // Acknowledged when asked (a client waits in WAIT) and every ACK_PERIOD otherwise:
        // an ack per received batch would cost a write per batch.
        if ack_now {
            send_ack(stream, counted).await?;
        }
        input.reserve(64 * 1024);
        tokio::select! {
            read = stream.read_buf(input) => {
                if read? == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
                }
                replication.link.last_io_ms.store(replication.now_ms(), Relaxed);
            }
            _ = tokio::time::sleep_until(next_ack) => {
                next_ack = tokio::time::Instant::now() + ACK_PERIOD;
                send_ack(stream, counted).await?;
                let silent = replication.now_ms().saturating_sub(replication.link.last_io_ms.load(Relaxed));
                if silent > LINK_SILENCE.as_millis() as u64 {
                    return Err(LinkError::Silent(LINK_SILENCE));
                }
            }
            _ = replication.role_changed.notified() => {}
        }
    }
}

async fn load_snapshot(
    replication: &Replication,
    store: &Store,
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    input: &mut Vec<u8>,
    applier: &mut Applier,
) -> Result<(), LinkError> {
    loop {
        let mut ended = false;
        let used = applier.apply(input, store, |_, applied| {
            ended |= applied == Applied::SnapshotEnd;
        })?;
        input.drain(..used);
        if ended {
            replication
                .link
                .last_io_ms
                .store(replication.now_ms(), Relaxed);
            return Ok(());
        }
        input.reserve(256 * 1024);
        let read = tokio::time::timeout(LINK_SILENCE, stream.read_buf(input))
            .await
            .map_err(|_| LinkError::Silent(LINK_SILENCE))??;
        if read == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
        replication
            .link
            .last_io_ms
            .store(replication.now_ms(), Relaxed);
    }
}

async fn next_reply(
    stream: &mut (impl AsyncRead + Unpin),
    input: &mut Vec<u8>,
) -> Result<Value, LinkError> {
    read_reply(stream, input).await?.map_err(LinkError::Refused)
}

/// Reads the next reply of a peer (the bytes after it stay in `input`); the inner error says
/// what could not be decoded.
pub(crate) async fn read_reply(
    stream: &mut (impl AsyncRead + Unpin),
    input: &mut Vec<u8>,
) -> std::io::Result<Result<Value, String>> {
    loop {
        match decode(input) {
            Ok(Some((value, used))) => {
                input.drain(..used);
                return Ok(Ok(value));
            }
            Ok(None) => {}
            Err(e) => return Ok(Err(e.to_string())),
        }
        input.reserve(4096);
        if stream.read_buf(input).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
    }
}

async fn send_ack(stream: &mut (impl AsyncWrite + Unpin), offset: u64) -> std::io::Result<()> {
    stream
        .write_all(&encode(&["REPLCONF", "ACK", &offset.to_string()]))
        .await?;
    // With TLS, what rustls holds goes out now; a plain socket has nothing to flush.
    stream.flush().await
}
