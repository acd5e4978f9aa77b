//! The cluster secret ([`BusSecret`]) and the handshake that opens every bus connection.
//!
//! Before any JSON frame, each side proves that it knows the secret, in fixed-size frames read
//! before any parser runs (so garbage costs a 72-byte buffer and a short timeout):
//!
//! 1. the accepting side sends its hello: `SHOALBS1` and a fresh 32-byte nonce `sn`;
//! 2. the connecting side answers `SHOALBC1`, its own nonce `cn` and
//!    `HMAC-SHA256(secret, "shoal-bus-v1 client" || sn || cn)`;
//! 3. the accepting side checks the MAC (in constant time) and answers one byte, 1 (accepted)
//!    or 0 (refused), and `HMAC-SHA256(secret, "shoal-bus-v1 server" || cn || sn)` (zeros
//!    when it refused), which the connecting side checks in turn: a process that does not
//!    know the secret can neither talk to a node nor pass for one.
//!
//! A fresh nonce on each side makes every proof good for one connection only: bytes captured
//! from one connection prove nothing on another. The two labels keep a proof from being
//! reflected back. The handshake authenticates; it does not encrypt what follows: with
//! `tls-cluster` it runs inside a TLS session (see `bus_tls`), which does.

use std::collections::HashMap;
use std::io::Read as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type HmacSha256 = Hmac<Sha256>;

/// Fewest bytes a secret may have.
pub const MIN_SECRET_LEN: usize = 32;

/// Most bytes a secret file may hold (a secret is a line, not a document).
const MAX_SECRET_LEN: usize = 4096;

/// What the accepting side's hello starts with.
const SERVER_MAGIC: &[u8; 8] = b"SHOALBS1";
/// What the connecting side's proof starts with.
const CLIENT_MAGIC: &[u8; 8] = b"SHOALBC1";
/// A nonce's length.
const NONCE: usize = 32;
/// A MAC's length (SHA-256).
const MAC: usize = 32;
/// The hello: magic and nonce.
const HELLO_LEN: usize = 8 + NONCE;
/// The connecting side's proof: magic, nonce, MAC.
const PROOF_LEN: usize = 8 + NONCE + MAC;
/// The verdict: accepted or not, and the accepting side's MAC.
const VERDICT_LEN: usize = 1 + MAC;

/// The label of the connecting side's MAC.
const CLIENT_LABEL: &[u8] = b"shoal-bus-v1 client";
/// The label of the accepting side's MAC.
const SERVER_LABEL: &[u8] = b"shoal-bus-v1 server";

/// How long the accepting side waits for a connecting side's proof.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The secret every member of a cluster shares, and everything that talks on its bus (nodes,
/// proxies, smart clients, the CLI). Cheap to clone; its `Debug` form does not show it.
#[derive(Clone)]
pub struct BusSecret(Arc<[u8]>);

impl std::fmt::Debug for BusSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusSecret(<redacted>)")
    }
}

/// Why a cluster secret cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read the cluster secret file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file holds nothing but whitespace.
    #[error("the cluster secret file {} is empty", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The secret is too short to be one.
    #[error(
        "the cluster secret{} is too short: {len} bytes, at least {MIN_SECRET_LEN} (e.g. 64 hex \
         digits of 32 random bytes)",
        path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
    )]
    TooShort {
        /// The file, if it came from one.
        path: Option<PathBuf>,
        /// Its length.
        len: usize,
    },
    /// The file is larger than a secret.
    #[error("the cluster secret file {} is larger than {MAX_SECRET_LEN} bytes: not a secret", path.display())]
    TooLong {
        /// The file.
        path: PathBuf,
    },
    /// Other users may read (or change) the file.
    #[error(
        "the cluster secret file {} is accessible by group or others (mode {mode:04o}): make it \
         private with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A new secret could not be written.
    #[error("cannot write the cluster secret file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

impl BusSecret {
    /// A secret of these bytes (at least [`MIN_SECRET_LEN`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<BusSecret, SecretError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: None,
                len: bytes.len(),
            });
        }
        Ok(BusSecret(bytes.into()))
    }

    /// A new random secret: 32 random bytes, as 64 hex digits.
    pub fn generate() -> BusSecret {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        BusSecret(hex(&bytes).into_bytes().into())
    }

    /// Reads the secret in the file at `path`: its content without the whitespace around it.
    /// Refuses a file that group or others may access (as ssh does a private key), an empty
    /// one, and a secret shorter than [`MIN_SECRET_LEN`].
    pub fn load(path: &Path) -> Result<BusSecret, SecretError> {
        let read = |source| SecretError::Read {
            path: path.to_path_buf(),
            source,
        };
        // A pipe or a device would block the open or never end: a secret is a file.
        if !std::fs::metadata(path).map_err(read)?.is_file() {
            return Err(read(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let file = std::fs::File::open(path).map_err(read)?;
        let mode = file.metadata().map_err(read)?.permissions();
        let mode = std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777;
        if mode & 0o077 != 0 {
            return Err(SecretError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Vec::new();
        file.take(MAX_SECRET_LEN as u64 + 1)
            .read_to_end(&mut text)
            .map_err(read)?;
        if text.len() > MAX_SECRET_LEN {
            return Err(SecretError::TooLong {
                path: path.to_path_buf(),
            });
        }
        let secret = text.trim_ascii();
        if secret.is_empty() {
            return Err(SecretError::Empty {
                path: path.to_path_buf(),
            });
        }
        BusSecret::new(secret).map_err(|e| match e {
            SecretError::TooShort { len, .. } => SecretError::TooShort {
                path: Some(path.to_path_buf()),
                len,
            },
            e => e,
        })
    }

    /// Writes a new random secret to a new file at `path` (mode 0600, never replacing a file
    /// that exists) and returns it.
    pub fn create(path: &Path) -> Result<BusSecret, SecretError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let write = |source| SecretError::Write {
            path: path.to_path_buf(),
            source,
        };
        let secret = BusSecret::generate();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        file.write_all(&secret.0).map_err(write)?;
        file.write_all(b"\n").map_err(write)?;
        file.sync_all().map_err(write)?;
        Ok(secret)
    }

    /// `HMAC-SHA256(secret, label || first || second)`.
    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(label);
        mac.update(first);
        mac.update(second);
        mac
    }
}

/// `bytes` in lower-case hex.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection without sending a byte (a port probe, not an attack).
    #[error("closed before the handshake")]
    Silent,
    /// The peer does not speak the bus's handshake.
    #[error("not a cluster bus handshake")]
    NotABus,
    /// The peer's proof does not match: it does not know the cluster secret.
    #[error("wrong proof of the cluster secret")]
    BadProof,
    /// The accepting side turned down this side's proof.
    #[error("the node refused this process's cluster secret")]
    Refused,
    /// The peer took too long.
    #[error("no handshake within {0:?}")]
    Timeout(Duration),
    /// The TLS handshake under a bus that speaks TLS (`tls-cluster`) failed: the peer does not
    /// speak TLS, or shows no certificate that the cluster's CA signed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
}

/// A fresh random nonce.
fn nonce() -> [u8; NONCE] {
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// The accepting side of the handshake on `stream`, within [`HANDSHAKE_TIMEOUT`]. `Ok` means
/// the peer knows `secret`, and frames may follow.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &BusSecret,
) -> Result<(), HandshakeError> {
    accept_within(stream, secret, HANDSHAKE_TIMEOUT).await
}

/// [`accept`] with another bound on the time the peer may take.
async fn accept_within<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &BusSecret,
    timeout: Duration,
) -> Result<(), HandshakeError> {
    match tokio::time::timeout(timeout, accept_unbounded(stream, secret)).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::Timeout(timeout)),
    }
}

async fn accept_unbounded<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &BusSecret,
) -> Result<(), HandshakeError> {
    let server_nonce = nonce();
    let mut hello = [0u8; HELLO_LEN];
    hello[..8].copy_from_slice(SERVER_MAGIC);
    hello[8..].copy_from_slice(&server_nonce);
    if stream.write_all(&hello).await.is_err() {
        // Gone before it read anything: a probe of the port.
        return Err(HandshakeError::Silent);
    }
    stream.flush().await.map_err(|_| HandshakeError::Silent)?;
    let mut proof = [0u8; PROOF_LEN];
    let first = match stream.read(&mut proof).await {
        Ok(0) => return Err(HandshakeError::Silent),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            return Err(HandshakeError::Silent);
        }
        Ok(n) => n,
        Err(e) => return Err(e.into()),
    };
    if proof[..first.min(8)] != CLIENT_MAGIC[..first.min(8)] {
        return Err(HandshakeError::NotABus);
    }
    stream.read_exact(&mut proof[first..]).await?;
    if &proof[..8] != CLIENT_MAGIC {
        return Err(HandshakeError::NotABus);
    }
    let client_nonce = &proof[8..8 + NONCE];
    let verified = secret
        .mac(CLIENT_LABEL, &server_nonce, client_nonce)
        .verify_slice(&proof[8 + NONCE..])
        .is_ok();
    let mut verdict = [0u8; VERDICT_LEN];
    if verified {
        verdict[0] = 1;
        let answer = secret.mac(SERVER_LABEL, client_nonce, &server_nonce);
        verdict[1..].copy_from_slice(&answer.finalize().into_bytes());
    }
    // A refused peer is told so (its operator gets a clear error), and learns nothing else.
    stream.write_all(&verdict).await?;
    stream.flush().await?;
    if verified {
        Ok(())
    } else {
        Err(HandshakeError::BadProof)
    }
}

/// The connecting side of the handshake on `stream` (the caller bounds it in time). `Ok`
/// means the peer knows `secret`, and frames may follow.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    secret: &BusSecret,
) -> Result<(), HandshakeError> {
    let mut hello = [0u8; HELLO_LEN];
    stream.read_exact(&mut hello).await?;
    if &hello[..8] != SERVER_MAGIC {
        return Err(HandshakeError::NotABus);
    }
    let server_nonce = &hello[8..];
    let client_nonce = nonce();
    let mut proof = [0u8; PROOF_LEN];
    proof[..8].copy_from_slice(CLIENT_MAGIC);
    proof[8..8 + NONCE].copy_from_slice(&client_nonce);
    let mac = secret.mac(CLIENT_LABEL, server_nonce, &client_nonce);
    proof[8 + NONCE..].copy_from_slice(&mac.finalize().into_bytes());
    stream.write_all(&proof).await?;
    stream.flush().await?;
    let mut verdict = [0u8; VERDICT_LEN];
    stream.read_exact(&mut verdict).await?;
    match verdict[0] {
        1 => {}
        0 => return Err(HandshakeError::Refused),
        _ => return Err(HandshakeError::NotABus),
    }
    secret
        .mac(SERVER_LABEL, &client_nonce, server_nonce)
        .verify_slice(&verdict[1..])
        .map_err(|_| HandshakeError::BadProof)
}

/// How often at most one peer's failed handshakes are logged.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// Most peers whose last logged failure is remembered (beyond, the memory is cleared).
const LOGGED_PEERS: usize = 1024;

/// Failed handshakes on a node's bus: counted, and logged at most once per peer address
/// every `LOG_EVERY` (5 s), so that garbage cannot flood the log.
#[derive(Debug, Default)]
pub struct AuthFailures {
    count: AtomicU64,
    logged: Mutex<HashMap<IpAddr, Instant>>,
}

impl AuthFailures {
    /// How many handshakes failed so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Counts the failure of a handshake with `peer`, and logs it unless this peer's last
    /// failure was logged less than `LOG_EVERY` ago. A peer that closed without a byte
    /// ([`HandshakeError::Silent`]) is not a failure.
    pub fn record(&self, peer: SocketAddr, error: &HandshakeError) {
        if matches!(error, HandshakeError::Silent) {
            return;
        }
        let count = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.should_log(peer.ip(), Instant::now()) {
            let what = match error {
                HandshakeError::Tls(_) => {
                    "failed the TLS handshake (the bus takes TLS only, with a client \
                     certificate that the cluster's CA signed)"
                }
                _ => "did not prove the cluster secret",
            };
            tracing::warn!(
                %peer,
                "cluster bus: refused a connection that {what} ({error}); {count} refused so far \
                 (one line per peer every {} s at most)",
                LOG_EVERY.as_secs()
            );
        }
    }

    /// Whether a failure of `ip` at `now` is to be logged (and notes it if so).
    fn should_log(&self, ip: IpAddr, now: Instant) -> bool {
        let mut logged = self.logged.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(last) = logged.get(&ip)
            && now.saturating_duration_since(*last) < LOG_EVERY
        {
            return false;
        }
        if logged.len() >= LOGGED_PEERS {
            logged.retain(|_, last| now.saturating_duration_since(*last) < LOG_EVERY);
            if logged.len() >= LOGGED_PEERS {
                // Many peers at once: forget them all rather than grow.
                logged.clear();
            }
        }
        logged.insert(ip, now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn secret(byte: u8) -> BusSecret {
        BusSecret::new(vec![byte; 40]).unwrap()
    }

    async fn handshake(
        server: &BusSecret,
        client: &BusSecret,
    ) -> (Result<(), HandshakeError>, Result<(), HandshakeError>) {
        let (mut a, mut b) = duplex(1024);
        tokio::join!(accept(&mut a, server), connect(&mut b, client))
    }

    #[tokio::test]
    async fn the_right_secret_passes_both_ways() {
        let (server, client) = handshake(&secret(1), &secret(1)).await;
        server.unwrap();
        client.unwrap();
    }

    #[tokio::test]
    async fn a_wrong_secret_fails_both_ways() {
        let (server, client) = handshake(&secret(1), &secret(2)).await;
        assert!(
            matches!(server, Err(HandshakeError::BadProof)),
            "{server:?}"
        );
        assert!(matches!(client, Err(HandshakeError::Refused)), "{client:?}");
    }

    /// A fake accepting side that does not know the secret, answering "accepted" with a MAC
    /// made with its own guess: the connecting side does not believe it.
    #[tokio::test]
    async fn a_fake_node_cannot_pass_for_a_member() {
        let (mut a, mut b) = duplex(1024);
        let fake = async {
            let mut hello = [0u8; HELLO_LEN];
            hello[..8].copy_from_slice(SERVER_MAGIC);
            a.write_all(&hello).await.unwrap();
            let mut proof = [0u8; PROOF_LEN];
            a.read_exact(&mut proof).await.unwrap();
            let guess = secret(9).mac(SERVER_LABEL, &proof[8..8 + NONCE], &hello[8..]);
            let mut verdict = [1u8; VERDICT_LEN];
            verdict[1..].copy_from_slice(&guess.finalize().into_bytes());
            a.write_all(&verdict).await.unwrap();
        };
        let member = secret(1);
        let (_, client) = tokio::join!(fake, connect(&mut b, &member));
        assert!(
            matches!(client, Err(HandshakeError::BadProof)),
            "{client:?}"
        );
    }

    #[tokio::test]
    async fn a_proof_replayed_on_another_connection_fails() {
        let member = secret(7);
        // A member's handshake, through a tap that keeps its proof.
        let (mut server_side, mut tap_server) = duplex(1024);
        let (mut tap_client, mut client_side) = duplex(1024);
        let tap = async {
            let mut hello = [0u8; HELLO_LEN];
            tap_server.read_exact(&mut hello).await.unwrap();
            tap_client.write_all(&hello).await.unwrap();
            let mut proof = [0u8; PROOF_LEN];
            tap_client.read_exact(&mut proof).await.unwrap();
            tap_server.write_all(&proof).await.unwrap();
            let mut verdict = [0u8; VERDICT_LEN];
            tap_server.read_exact(&mut verdict).await.unwrap();
            tap_client.write_all(&verdict).await.unwrap();
            proof
        };
        let (server, client, proof) = tokio::join!(
            accept(&mut server_side, &member),
            connect(&mut client_side, &member),
            tap
        );
        server.unwrap();
        client.unwrap();
        // The same proof on a new connection: the node's nonce is new, the proof worthless.
        let (mut a, mut b) = duplex(1024);
        let replay = async {
            let mut hello = [0u8; HELLO_LEN];
            b.read_exact(&mut hello).await.unwrap();
            b.write_all(&proof).await.unwrap();
            let mut verdict = [0u8; VERDICT_LEN];
            b.read_exact(&mut verdict).await.unwrap();
            verdict
        };
        let (server, verdict) = tokio::join!(accept(&mut a, &member), replay);
        assert!(
            matches!(server, Err(HandshakeError::BadProof)),
            "{server:?}"
        );
        assert_eq!(verdict, [0u8; VERDICT_LEN], "refused, and told nothing");
    }

    /// Sends `bytes` to an accepting side (then keeps the stream open) and returns its verdict.
    async fn accept_after(bytes: &[u8], timeout: Duration) -> Result<(), HandshakeError> {
        let (mut a, mut b) = duplex(64 * 1024);
        let peer = async {
            let mut hello = [0u8; HELLO_LEN];
            b.read_exact(&mut hello).await.unwrap();
            let _ = b.write_all(bytes).await;
            b
        };
        let member = secret(1);
        let (result, _b) = tokio::join!(accept_within(&mut a, &member, timeout), peer);
        result
    }

    #[tokio::test(start_paused = true)]
    async fn garbage_short_and_oversized_input_fails_fast() {
        let long = Duration::from_secs(3600);
        // Garbage: refused at its first byte, whatever follows.
        let http = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            accept_after(http, long).await,
            Err(HandshakeError::NotABus)
        ));
        // A bus frame announcing 4 GB, as a client without the handshake would send.
        let mut frame = u32::MAX.to_be_bytes().to_vec();
        frame.extend(vec![b'x'; 32 * 1024]);
        assert!(matches!(
            accept_after(&frame, long).await,
            Err(HandshakeError::NotABus)
        ));
        // The magic and then garbage where the proof goes.
        let mut wrong = CLIENT_MAGIC.to_vec();
        wrong.extend([0u8; NONCE + MAC]);
        assert!(matches!(
            accept_after(&wrong, long).await,
            Err(HandshakeError::BadProof)
        ));
        // A proof cut short, the stream left open: the timeout ends it.
        let started = tokio::time::Instant::now();
        assert!(matches!(
            accept_after(&CLIENT_MAGIC[..5], Duration::from_millis(300)).await,
            Err(HandshakeError::Timeout(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_peer_gone_without_a_byte_is_silent_and_a_cut_proof_is_an_error() {
        let (mut a, b) = duplex(1024);
        drop(b);
        assert!(matches!(
            accept(&mut a, &secret(1)).await,
            Err(HandshakeError::Silent)
        ));
        let (mut a, mut b) = duplex(1024);
        let peer = async move {
            let mut hello = [0u8; HELLO_LEN];
            b.read_exact(&mut hello).await.unwrap();
            b.write_all(&CLIENT_MAGIC[..]).await.unwrap();
        };
        let member = secret(1);
        let (result, ()) = tokio::join!(accept(&mut a, &member), peer);
        assert!(matches!(result, Err(HandshakeError::Io(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_connecting_side_refuses_what_is_no_node() {
        let (mut a, mut b) = duplex(1024);
        a.write_all(&[b'-'; HELLO_LEN]).await.unwrap();
        assert!(matches!(
            connect(&mut b, &secret(1)).await,
            Err(HandshakeError::NotABus)
        ));
    }

    #[test]
    fn failures_are_counted_and_logged_once_per_peer_per_window() {
        let failures = AuthFailures::default();
        let peer: SocketAddr = "127.0.0.9:4000".parse().unwrap();
        for _ in 0..100 {
            failures.record(peer, &HandshakeError::NotABus);
        }
        failures.record(peer, &HandshakeError::Silent);
        assert_eq!(failures.count(), 100, "a silent close is no failure");
        let now = Instant::now();
        let ip: IpAddr = "127.0.0.10".parse().unwrap();
        assert!(failures.should_log(ip, now));
        assert!(!failures.should_log(ip, now + Duration::from_secs(1)));
        assert!(failures.should_log(ip, now + LOG_EVERY));
        // Many peers do not grow the memory without bound.
        for n in 0..(LOGGED_PEERS as u32 * 3) {
            failures.should_log(IpAddr::from(n.to_be_bytes()), now);
        }
        assert!(failures.logged.lock().unwrap().len() <= LOGGED_PEERS);
    }

    #[test]
    fn secrets_load_from_private_files_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("shoal-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let _ = std::fs::remove_file(&path);
        let created = BusSecret::create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = BusSecret::load(&path).unwrap();
        assert_eq!(loaded.0, created.0);
        assert_eq!(loaded.0.len(), 64, "64 hex digits");
        assert_eq!(format!("{loaded:?}"), "BusSecret(<redacted>)");
        // Never over an existing file.
        assert!(matches!(
            BusSecret::create(&path),
            Err(SecretError::Write { .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = BusSecret::load(&path).unwrap_err().to_string();
        assert!(error.contains("mode 0644"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            BusSecret::load(&path)
        };
        assert!(matches!(write(" \n"), Err(SecretError::Empty { .. })));
        assert!(matches!(
            write("short\n"),
            Err(SecretError::TooShort { .. })
        ));
        assert!(matches!(
            write(&"x".repeat(MAX_SECRET_LEN + 1)),
            Err(SecretError::TooLong { .. })
        ));
        let padded = write(&format!("  {}\n", "k".repeat(40))).unwrap();
        assert_eq!(&*padded.0, "k".repeat(40).as_bytes());
        assert!(matches!(
            BusSecret::load(&dir.join("missing")),
            Err(SecretError::Read { .. })
        ));
        let error = BusSecret::load(Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a regular file"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
