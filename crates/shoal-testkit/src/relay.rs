//! A fault-injecting TCP relay: a node is told to reach another node's RESP or bus port through
//! a [`Relay`], so cutting the relay partitions just that link.
//!
//! The relay listens on 127.0.0.1 and forwards every connection to its target, bytes both ways.
//! Its controls take effect at once on the connections it carries and on new ones:
//!
//! * [`Relay::cut`] with [`CutMode::Blackhole`]: nothing gets through, and nothing is closed,
//!   as in a network partition. Bytes sent into the cut are held, not forwarded, and not
//!   thrown away: TCP over a partition retransmits them and delivers them once the partition
//!   heals, so [`Relay::restore`] lets them through in order (throwing bytes away in the middle
//!   of a TCP stream is something no network does, and it would corrupt every RESP or bus
//!   frame after the restore). A new connection is accepted by the kernel (a listening socket
//!   completes the handshake by itself) but hangs: it reaches the target only after the
//!   restore. A peer notices the cut only through its own timeouts.
//! * [`Relay::cut`] with [`CutMode::Reset`]: every connection is reset (RST) on both sides, and
//!   every new one is reset as soon as it is accepted, as a peer that crashed would do.
//! * [`Relay::cut_one_way`]: a blackhole in one direction only (an asymmetric partition).
//! * [`Relay::delay`]: latency added to every chunk in each direction (a round trip gets twice
//!   it); chunks keep their order.
//!
//! Everything is bounded: at most [`MAX_CONNECTIONS`] connections at once, at most
//! [`QUEUE_CHUNKS`] chunks of [`CHUNK`] bytes in flight per direction, connecting to the
//! target within [`CONNECT_TIMEOUT`]. Dropping the relay closes its listener and every
//! connection it carries.
//!
//! ```no_run
//! # async fn example() -> shoal_testkit::Result<()> {
//! use shoal_testkit::relay::{CutMode, Relay};
//! let relay = Relay::start("127.0.0.1:7001".parse().unwrap())?;
//! // ... start a node that reaches 127.0.0.1:7001 at `relay.addr()` ...
//! relay.cut(CutMode::Blackhole); // partition that link
//! relay.restore(); // heal it
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Largest chunk read at once.
pub const CHUNK: usize = 16 * 1024;

/// Chunks in flight per direction of one connection (read, not yet written).
pub const QUEUE_CHUNKS: usize = 64;

/// Most connections a relay carries at once; further ones are reset.
pub const MAX_CONNECTIONS: u64 = 1024;

/// How long the relay tries to connect to its target for one accepted connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How a [`Relay::cut`] cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Keep every socket open and let nothing through (a network partition). New connections
    /// hang. Held bytes go on after [`Relay::restore`].
    Blackhole,
    /// Reset every connection, and every new one as soon as it is accepted.
    Reset,
}

/// One direction of a relayed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the connecting side to the target.
    ToTarget,
    /// From the target back to the connecting side.
    FromTarget,
}

/// What the relay does now, as [`Relay::state`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayState {
    /// Whether bytes toward the target are held.
    pub to_target_blocked: bool,
    /// Whether bytes from the target are held.
    pub from_target_blocked: bool,
    /// Whether connections are reset ([`CutMode::Reset`]).
    pub resetting: bool,
    /// Latency added to every chunk, each way.
    pub delay: Duration,
}

impl RelayState {
    /// Whether bytes flow both ways.
    pub fn is_open(&self) -> bool {
        !self.to_target_blocked && !self.from_target_blocked && !self.resetting
    }

    fn blocked(&self, direction: Direction) -> bool {
        match direction {
            Direction::ToTarget => self.to_target_blocked,
            Direction::FromTarget => self.from_target_blocked,
        }
    }
}

/// The control every connection task watches.
#[derive(Clone, Copy, Debug)]
struct Control {
    state: RelayState,
    /// Bumped by every [`CutMode::Reset`] cut: a connection older than the bump is reset even
    /// if the relay was restored before its task looked.
    resets: u64,
}

/// What a relay has carried, as [`Relay::stats`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Bytes delivered to the target.
    pub to_target: u64,
    /// Bytes delivered back from the target.
    pub from_target: u64,
    /// Connections reset by a [`CutMode::Reset`] cut (or over [`MAX_CONNECTIONS`]).
    pub reset: u64,
    /// Accepted connections whose target could not be reached (they were reset).
    pub connect_failures: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    to_target: AtomicU64,
    from_target: AtomicU64,
    reset: AtomicU64,
    connect_failures: AtomicU64,
}

/// A TCP relay from [`Relay::addr`] to a target, with faults on demand (see the module's doc).
/// Every control takes `&self`, so a relay can be shared by tasks.
pub struct Relay {
    addr: SocketAddr,
    target: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on a fresh port of 127.0.0.1 and relays to `target`. Needs a tokio runtime
    /// (it is an error outside one).
    pub fn start(target: SocketAddr) -> Result<Relay> {
        Relay::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), target)
    }

    /// Listens on `listen` (a port from [`crate::free_port`], say, to know it in advance) and
    /// relays to `target`.
    pub fn start_on(listen: SocketAddr, target: SocketAddr) -> Result<Relay> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Usage("a relay needs a tokio runtime".into()))?;
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|e| Error::io(format!("relay: cannot listen on {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("relay: cannot read its address", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("relay: cannot make its listener non-blocking", e))?;
        let listener = {
            let _guard = runtime.enter();
            TcpListener::from_std(listener)
                .map_err(|e| Error::io("relay: cannot register its listener", e))?
        };
        let (control, _) = watch::channel(Control {
            state: RelayState {
                to_target_blocked: false,
                from_target_blocked: false,
                resetting: false,
                delay: Duration::ZERO,
            },
            resets: 0,
        });
        let counters = Arc::new(Counters::default());
        let accept = runtime.spawn(accept_loop(
            listener,
            target,
            control.clone(),
            counters.clone(),
        ));
        Ok(Relay {
            addr,
            target,
            control,
            counters,
            accept,
        })
    }

    /// The address to connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the relay forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Cuts the link both ways, at once, for every connection and new ones (see [`CutMode`]).
    pub fn cut(&self, mode: CutMode) {
        self.control.send_modify(|c| {
            c.state.to_target_blocked = true;
            c.state.from_target_blocked = true;
            if mode == CutMode::Reset {
                c.state.resetting = true;
                c.resets += 1;
            }
        });
    }

    /// Holds the bytes of one direction only (an asymmetric partition); the other direction
    /// keeps flowing.
    pub fn cut_one_way(&self, direction: Direction) {
        self.control.send_modify(|c| match direction {
            Direction::ToTarget => c.state.to_target_blocked = true,
            Direction::FromTarget => c.state.from_target_blocked = true,
        });
    }

    /// Heals every cut: held bytes go on, new connections reach the target. The delay stays.
    pub fn restore(&self) {
        self.control.send_modify(|c| {
            c.state.to_target_blocked = false;
            c.state.from_target_blocked = false;
            c.state.resetting = false;
        });
    }

    /// Adds `delay` of latency to every chunk read from now on, in each direction
    /// (`Duration::ZERO` removes it).
    pub fn delay(&self, delay: Duration) {
        self.control.send_modify(|c| c.state.delay = delay);
    }

    /// What the relay does now.
    pub fn state(&self) -> RelayState {
        self.control.borrow().state
    }

    /// What it has carried so far.
    pub fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            to_target: c.to_target.load(Ordering::Relaxed),
            from_target: c.from_target.load(Ordering::Relaxed),
            reset: c.reset.load(Ordering::Relaxed),
            connect_failures: c.connect_failures.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The listener closes with the accept task; every connection task ends when it sees
        // the control's sender gone.
        self.accept.abort();
    }
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("addr", &self.addr)
            .field("target", &self.target)
            .field("state", &self.state())
            .field("stats", &self.stats())
            .finish()
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    control: watch::Sender<Control>,
    counters: Arc<Counters>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of descriptors or an aborted handshake: try again shortly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        let open = counters.open.load(Ordering::Relaxed);
        let now = *control.borrow();
        if now.state.resetting || open >= MAX_CONNECTIONS {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            reset(&stream);
            continue;
        }
        let guard = OpenGuard::new(counters.clone());
        tokio::spawn(serve(
            stream,
            target,
            control.subscribe(),
            now.resets,
            guard,
        ));
    }
}

/// Counts a connection as open while it lives.
struct OpenGuard(Arc<Counters>);

impl OpenGuard {
    fn new(counters: Arc<Counters>) -> OpenGuard {
        counters.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(counters)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection stopped.
enum End {
    /// Both directions ended cleanly.
    Closed,
    /// A side failed (reset, broken pipe): the other side is reset too.
    Failed,
    /// A [`CutMode::Reset`] cut.
    Reset,
    /// The relay was dropped.
    Gone,
}

/// Carries one accepted connection.
async fn serve(
    mut client: TcpStream,
    target: SocketAddr,
    mut control: watch::Receiver<Control>,
    born: u64,
    guard: OpenGuard,
) {
    let counters = guard.0.clone();
    let _ = client.set_nodelay(true);
    // A blackholed relay lets the connection hang here until it is restored.
    let mut connect_control = control.clone();
    let connect = async move {
        if let Err(e) = wait_open(&mut connect_control, None, born).await {
            return Err(if e.kind() == std::io::ErrorKind::NotConnected {
                End::Gone
            } else {
                End::Reset
            });
        }
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
            Ok(Ok(upstream)) => Ok(Some(upstream)),
            _ => Ok(None),
        }
    };
    let upstream = tokio::select! {
        r = connect => r,
        end = until_reset(&mut control, born) => Err(end),
    };
    let mut upstream = match upstream {
        Ok(Some(upstream)) => upstream,
        Ok(None) => {
            counters.connect_failures.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
        Err(End::Gone) => return,
        Err(_) => {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let end = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pump(
            client_read,
            upstream_write,
            Direction::ToTarget,
            control.clone(),
            born,
            &counters.to_target,
        );
        let down = pump(
            upstream_read,
            client_write,
            Direction::FromTarget,
            control.clone(),
            born,
            &counters.from_target,
        );
        tokio::select! {
            r = async { tokio::try_join!(up, down) } => match r {
                Ok(_) => End::Closed,
                Err(_) => End::Failed,
            },
            end = until_reset(&mut control, born) => end,
        }
    };
    // A pump that noticed the reset cut before the watcher did.
    let end = match end {
        End::Failed if control.borrow().resets > born => End::Reset,
        end => end,
    };
    match end {
        End::Closed | End::Gone => {}
        End::Reset => {
            counters.reset.fetch_add(1, Ordering::Relaxed);
            reset(&client);
            reset(&upstream);
        }
        End::Failed => {
            reset(&client);
            reset(&upstream);
        }
    }
    drop(guard);
}

/// Copies one direction: a reader queues chunks stamped with their delivery time, a writer
/// delivers them then; both hold while the direction is blocked.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    direction: Direction,
    control: watch::Receiver<Control>,
    born: u64,
    delivered: &AtomicU64,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (queue, mut chunks) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE_CHUNKS);
    let mut reader_control = control.clone();
    let reader = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut last = Instant::now();
        loop {
            wait_open(&mut reader_control, Some(direction), born).await?;
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            let delay = reader_control.borrow().state.delay;
            // Never before an earlier chunk: order is kept when the delay shrinks.
            let at = (Instant::now() + delay).max(last);
            last = at;
            if queue.send((at, buf[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut writer_control = control;
    let writer = async move {
        while let Some((at, chunk)) = chunks.recv().await {
            tokio::time::sleep_until(at).await;
            wait_open(&mut writer_control, Some(direction), born).await?;
            to.write_all(&chunk).await?;
            delivered.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        // The source closed its side: pass the half-close on.
        to.shutdown().await
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

/// Waits until `direction` (or, with `None`, both) may carry bytes. Fails on a reset cut since
/// `born` or once the relay is gone.
async fn wait_open(
    control: &mut watch::Receiver<Control>,
    direction: Option<Direction>,
    born: u64,
) -> std::io::Result<()> {
    loop {
        let now = *control.borrow_and_update();
        if now.resets > born || now.state.resetting {
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        let blocked = match direction {
            Some(d) => now.state.blocked(d),
            None => now.state.to_target_blocked || now.state.from_target_blocked,
        };
        if !blocked {
            return Ok(());
        }
        if control.changed().await.is_err() {
            return Err(std::io::ErrorKind::NotConnected.into());
        }
    }
}

/// Resolves when a reset cut happens after `born`, or the relay is dropped.
async fn until_reset(control: &mut watch::Receiver<Control>, born: u64) -> End {
    loop {
        if control.borrow_and_update().resets > born {
            return End::Reset;
        }
        if control.changed().await.is_err() {
            return End::Gone;
        }
    }
}

/// Makes the socket's close send RST instead of FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const SHORT: Duration = Duration::from_millis(150);
    const BOUND: Duration = Duration::from_secs(3);

    /// An echo server that counts the bytes it received.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                counter.fetch_add(n, Ordering::SeqCst);
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, received)
    }

    async fn connect(relay: &Relay) -> TcpStream {
        tokio::time::timeout(BOUND, TcpStream::connect(relay.addr()))
            .await
            .expect("connects in time")
            .expect("connects")
    }

    /// Sends `data` and reads as many bytes back, within `within`.
    async fn round_trip(stream: &mut TcpStream, data: &[u8], within: Duration) -> Option<Vec<u8>> {
        stream.write_all(data).await.ok()?;
        let mut back = vec![0u8; data.len()];
        match tokio::time::timeout(within, stream.read_exact(&mut back)).await {
            Ok(Ok(_)) => Some(back),
            _ => None,
        }
    }

    /// Whether the peer closed or reset the stream within `within`.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(within, stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + BOUND;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn data_flows_both_ways_and_is_counted() {
        let (target, received) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        assert_eq!(relay.target(), target);
        assert!(relay.addr().ip().is_loopback());
        let mut stream = connect(&relay).await;
        assert_eq!(
            round_trip(&mut stream, b"hello", BOUND).await.unwrap(),
            b"hello"
        );
        // A megabyte, more than the queues hold, comes back whole and in order.
        let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
        let (mut read, mut write) = stream.split();
        let send = async { write.write_all(&big).await.unwrap() };
        let mut back = vec![0u8; big.len()];
        let receive = async { read.read_exact(&mut back).await.unwrap() };
        tokio::time::timeout(BOUND, async { tokio::join!(send, receive) })
            .await
            .unwrap();
        assert!(back == big, "the megabyte came back altered");
        let total = 5 + big.len() as u64;
        wait_for("the counters", || relay.stats().from_target == total).await;
        let stats = relay.stats();
        assert_eq!(stats.to_target, total);
        assert_eq!(received.load(Ordering::SeqCst) as u64, total);
        assert_eq!((stats.accepted, stats.open, stats.reset), (1, 1, 0));
        drop(stream);
        wait_for("the connection to close", || relay.stats().open == 0).await;
    }

    #[tokio::test]
    async fn a_half_close_is_passed_on() {
        // A target that answers with everything it got once the sender is done.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            stream.read_to_end(&mut all).await.unwrap();
            stream.write_all(&all).await.unwrap();
        });
        let relay = Relay::start(target).unwrap();
        let mut stream = connect(&relay).await;
        stream.write_all(b"request").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(BOUND, stream.read_to_end(&mut reply))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(reply, b"request");
    }

    #[tokio::test]
    async fn a_blackhole_holds_bytes_and_connections_until_restored() {
        let (target, received) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        let mut old = connect(&relay).await;
        assert!(round_trip(&mut old, b"before", BOUND).await.is_some());

        relay.cut(CutMode::Blackhole);
        assert!(!relay.state().is_open());
        assert!(round_trip(&mut old, b"during", SHORT).await.is_none());
        // A new connection is accepted (the kernel does that) but goes nowhere.
        let mut new = connect(&relay).await;
        assert!(round_trip(&mut new, b"fresh", SHORT).await.is_none());
        assert_eq!(received.load(Ordering::SeqCst), 6, "nothing got through");
        assert_eq!(relay.stats().open, 2, "both sockets stay open");

        relay.restore();
        let mut back = [0u8; 6];
        tokio::time::timeout(BOUND, old.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"during", "held bytes are delivered, in order");
        let mut back = [0u8; 5];
        tokio::time::timeout(BOUND, new.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"fresh", "the held connection reached the target");
        assert!(round_trip(&mut old, b"after", BOUND).await.is_some());
        assert_eq!(relay.stats().reset, 0);
    }

    #[tokio::test]
    async fn a_one_way_cut_holds_one_direction_only() {
        let (target, received) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        let mut stream = connect(&relay).await;
        // Established first: a new connection hangs under any cut, one-way or not.
        assert!(round_trip(&mut stream, b"hi", BOUND).await.is_some());
        relay.cut_one_way(Direction::FromTarget);
        assert!(round_trip(&mut stream, b"ping", SHORT).await.is_none());
        assert_eq!(
            received.load(Ordering::SeqCst),
            6,
            "the request got through"
        );
        relay.restore();
        let mut back = [0u8; 4];
        tokio::time::timeout(BOUND, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"ping");

        relay.cut_one_way(Direction::ToTarget);
        assert!(round_trip(&mut stream, b"pong", SHORT).await.is_none());
        assert_eq!(received.load(Ordering::SeqCst), 6, "the request is held");
        relay.restore();
        tokio::time::timeout(BOUND, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"pong");
    }

    #[tokio::test]
    async fn a_reset_cut_closes_connections_and_refuses_new_ones() {
        let (target, _) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        let mut old = connect(&relay).await;
        assert!(round_trip(&mut old, b"x", BOUND).await.is_some());

        let started = Instant::now();
        relay.cut(CutMode::Reset);
        assert!(closed_within(&mut old, BOUND).await, "the old one is reset");
        let mut new = connect(&relay).await;
        assert!(closed_within(&mut new, BOUND).await, "a new one is reset");
        assert!(started.elapsed() < Duration::from_secs(1), "at once");
        wait_for("the resets to be counted", || relay.stats().reset == 2).await;
        assert_eq!(relay.stats().open, 0);

        relay.restore();
        let mut again = connect(&relay).await;
        assert!(round_trip(&mut again, b"y", BOUND).await.is_some());
    }

    #[tokio::test]
    async fn a_reset_counts_even_if_restored_at_once() {
        let (target, _) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        let mut old = connect(&relay).await;
        assert!(round_trip(&mut old, b"x", BOUND).await.is_some());
        relay.cut(CutMode::Reset);
        relay.restore();
        assert!(closed_within(&mut old, BOUND).await);
        let mut new = connect(&relay).await;
        assert!(round_trip(&mut new, b"y", BOUND).await.is_some());
    }

    #[tokio::test]
    async fn a_delay_adds_latency_each_way() {
        let (target, _) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        let mut stream = connect(&relay).await;
        assert!(round_trip(&mut stream, b"warm", BOUND).await.is_some());

        let delay = Duration::from_millis(60);
        relay.delay(delay);
        assert_eq!(relay.state().delay, delay);
        let started = Instant::now();
        assert!(round_trip(&mut stream, b"slow", BOUND).await.is_some());
        let rtt = started.elapsed();
        assert!(rtt >= 2 * delay, "{rtt:?}");
        assert!(rtt < 2 * delay + Duration::from_millis(500), "{rtt:?}");

        relay.delay(Duration::ZERO);
        let started = Instant::now();
        assert!(round_trip(&mut stream, b"fast", BOUND).await.is_some());
        assert!(started.elapsed() < delay, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn an_unreachable_target_resets_the_client() {
        // A port nothing listens on: bound, then closed.
        let target = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let relay = Relay::start(target).unwrap();
        let mut stream = connect(&relay).await;
        assert!(closed_within(&mut stream, BOUND).await);
        wait_for("the failure to be counted", || {
            relay.stats().connect_failures == 1
        })
        .await;
    }

    #[tokio::test]
    async fn dropping_the_relay_closes_everything() {
        let (target, _) = echo_server().await;
        let relay = Relay::start(target).unwrap();
        let addr = relay.addr();
        let mut stream = connect(&relay).await;
        assert!(round_trip(&mut stream, b"x", BOUND).await.is_some());
        drop(relay);
        assert!(closed_within(&mut stream, BOUND).await);
        // The listener is gone too (give the aborted task a moment to drop it).
        let deadline = Instant::now() + BOUND;
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still listening");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn a_relay_outside_a_runtime_is_an_error() {
        let err = Relay::start("127.0.0.1:1".parse().unwrap()).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }

    #[tokio::test]
    async fn a_taken_listen_address_is_an_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = Relay::start_on(taken.local_addr().unwrap(), "127.0.0.1:1".parse().unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }
}
