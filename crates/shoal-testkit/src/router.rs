//! A small cluster client for fault tests ([`Router`]): one command at a time (or a short
//! sequence on one connection, as `SET` then `WAIT`), sent to the owner of the key's slot as
//! last learned.
//!
//! It follows `-MOVED` itself (the node that answers it did not run the command). When a node
//! cannot be reached, drops the connection, or answers `-CLUSTERDOWN` or `-TRYAGAIN`, it
//! relearns the slots (`CLUSTER SLOTS` of the next seed, in turn) and reports the failure
//! *without retrying*: a command that may have run is never sent twice, so a history records
//! exactly what the cluster acknowledged, and the caller sees every error the cluster gave.
//!
//! ```no_run
//! # async fn example() -> shoal_testkit::Result<()> {
//! use std::time::Duration;
//! use shoal_testkit::router::{Ack, Router};
//! use shoal_testkit::OpKind;
//! let router = Router::new(vec!["127.0.0.1:7000".into()], Duration::from_millis(500)).await?;
//! let ack = Ack::Replicas { replicas: 1, timeout: Duration::from_millis(200) };
//! let acked = router.run_op(&OpKind::write("k", "v1"), &ack).await;
//! # let _ = acked;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shoal_cluster::{SLOTS, Slot, key_slot};

use crate::error::{Error, Result};
use crate::history::OpKind;
use crate::resp::{RespConnection, Value, text};

/// Most `-MOVED` answers one call follows.
const MAX_REDIRECTS: usize = 5;

/// The shortest time between two refreshes of the slot table.
const REFRESH_GAP: Duration = Duration::from_millis(50);

/// Idle connections kept per node.
const POOL_PER_NODE: usize = 16;

/// What a routed call got: the node that answered last and its replies, in order. The
/// sequence stops at the first error reply, which is the last one.
#[derive(Clone, Debug, PartialEq)]
pub struct Routed {
    /// The node (`host:port`) that answered.
    pub addr: String,
    /// Its replies.
    pub replies: Vec<Value>,
}

impl Routed {
    /// The last reply.
    pub fn last(&self) -> &Value {
        self.replies.last().unwrap_or(&Value::Null)
    }
}

/// When [`Router::run_op`] counts a write as acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ack {
    /// Once the primary answered `OK` (asynchronous replication).
    Primary,
    /// Once `WAIT replicas timeout` after the `SET`, on the same connection, answered at least
    /// `replicas`.
    Replicas {
        /// `numreplicas` of the `WAIT`.
        replicas: usize,
        /// Its timeout.
        timeout: Duration,
    },
}

/// How one node answered a call.
enum Exchange {
    /// `-MOVED` to this address.
    Moved(String),
    /// These replies.
    Done(Vec<Value>),
}

/// The seed to ask next and when the slots were last asked for.
struct RefreshState {
    next_seed: usize,
    last: Option<Instant>,
}

/// A cluster client that routes by slot and follows `-MOVED` (see the module's doc). Shared
/// by tasks: every method takes `&self`.
pub struct Router {
    seeds: Vec<String>,
    owners: Mutex<Vec<Option<String>>>,
    pool: Mutex<HashMap<String, Vec<RespConnection>>>,
    timeout: Duration,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl Router {
    /// A router that learns the slots from `seeds` (RESP addresses) and bounds every
    /// connection and exchange by `timeout`. Fails if no seed answers `CLUSTER SLOTS`.
    pub async fn new(seeds: Vec<String>, timeout: Duration) -> Result<Router> {
        if seeds.is_empty() {
            return Err(Error::Usage("a router needs a seed".into()));
        }
        let router = Router {
            seeds,
            owners: Mutex::new(vec![None; SLOTS]),
            pool: Mutex::new(HashMap::new()),
            timeout,
            refresh: tokio::sync::Mutex::new(RefreshState {
                next_seed: 0,
                last: None,
            }),
        };
        router.refresh_now().await?;
        Ok(router)
    }

    /// The owner of `slot` as last learned.
    pub fn owner(&self, slot: Slot) -> Option<String> {
        self.owners()[slot as usize].clone()
    }

    /// Relearns the slots from the seeds, in turn from the one after the last asked: the first
    /// that answers wins.
    async fn refresh_now(&self) -> Result<()> {
        let mut state = self.refresh.lock().await;
        self.refresh_locked(&mut state).await
    }

    /// Relearns the slots unless another task is at it or did it within [`REFRESH_GAP`].
    async fn refresh_soon(&self) {
        let Ok(mut state) = self.refresh.try_lock() else {
            return;
        };
        if state.last.is_some_and(|at| at.elapsed() < REFRESH_GAP) {
            return;
        }
        let _ = self.refresh_locked(&mut state).await;
    }

    async fn refresh_locked(&self, state: &mut RefreshState) -> Result<()> {
        let mut errors = Vec::new();
        for _ in 0..self.seeds.len() {
            let seed = &self.seeds[state.next_seed % self.seeds.len()];
            state.next_seed += 1;
            match self.slots_of(seed).await {
                Ok(owners) => {
                    *self.owners() = owners;
                    state.last = Some(Instant::now());
                    return Ok(());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        state.last = Some(Instant::now());
        Err(Error::Cluster(format!(
            "no seed told the slots: {}",
            errors.join("; ")
        )))
    }

    /// The owner of every slot from `addr`'s `CLUSTER SLOTS`.
    async fn slots_of(&self, addr: &str) -> Result<Vec<Option<String>>> {
        let mut conn = RespConnection::connect(addr, self.timeout).await?;
        let reply = conn.call(&["CLUSTER", "SLOTS"]).await?;
        parse_cluster_slots(&reply).map_err(|reason| Error::Resp {
            addr: addr.to_string(),
            reason,
        })
    }

    /// Sends `commands` about `key`, one after the other on one connection, to the owner of
    /// its slot, following `-MOVED` answers to the first command. Stops at the first error
    /// reply. `Err` when no owner is known or a node could not be reached or did not answer
    /// (the commands may or may not have run).
    pub async fn call<A: AsRef<[u8]>>(&self, key: &[u8], commands: &[&[A]]) -> Result<Routed> {
        let slot = key_slot(key);
        if self.owner(slot).is_none() {
            self.refresh_soon().await;
        }
        let mut addr = self
            .owner(slot)
            .ok_or_else(|| Error::Cluster(format!("no owner known for slot {slot}")))?;
        for _ in 0..=MAX_REDIRECTS {
            match self.call_at(&addr, commands).await? {
                Exchange::Moved(to) => {
                    self.owners()[slot as usize] = Some(to.clone());
                    addr = to;
                }
                Exchange::Done(replies) => return Ok(Routed { addr, replies }),
            }
        }
        Err(Error::Cluster(format!(
            "more than {MAX_REDIRECTS} redirections for slot {slot}"
        )))
    }

    /// Sends `commands` to `addr` on one connection, until an error reply (see
    /// [`Router::call`]).
    async fn call_at<A: AsRef<[u8]>>(&self, addr: &str, commands: &[&[A]]) -> Result<Exchange> {
        let mut conn = match self.take(addr).await {
            Ok(conn) => conn,
            Err(e) => {
                self.refresh_soon().await;
                return Err(e);
            }
        };
        let mut replies = Vec::with_capacity(commands.len());
        for (i, command) in commands.iter().enumerate() {
            let reply = match conn.call(command).await {
                Ok(reply) => reply,
                Err(e) => {
                    // The connection is dropped: a reply may still be on its way.
                    self.refresh_soon().await;
                    return Err(e);
                }
            };
            let error = error_text(&reply);
            if i == 0
                && let Some(to) = error.as_deref().and_then(moved_to)
            {
                self.give_back(addr, conn);
                return Ok(Exchange::Moved(to));
            }
            replies.push(reply);
            if let Some(error) = error {
                if error.starts_with("CLUSTERDOWN") || error.starts_with("TRYAGAIN") {
                    self.refresh_soon().await;
                }
                break;
            }
        }
        self.give_back(addr, conn);
        Ok(Exchange::Done(replies))
    }

    /// Runs one operation of a history workload: a read is `GET` (`Ok(value)`); a write is
    /// `SET`, and with [`Ack::Replicas`] a `WAIT` after it, and is `Ok(Some(the address of the
    /// node that acknowledged it))` only if `SET` answered `OK` and `WAIT` enough replicas.
    /// Everything else is `Err(what happened)`.
    pub async fn run_op(
        &self,
        kind: &OpKind,
        ack: &Ack,
    ) -> std::result::Result<Option<String>, String> {
        match kind {
            OpKind::Read { key } => {
                let routed = self
                    .call(key.as_bytes(), &[&["GET", key.as_str()]])
                    .await
                    .map_err(|e| e.to_string())?;
                match routed.last() {
                    Value::Bulk(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
                    Value::Null => Ok(None),
                    other => Err(describe(&routed.addr, other)),
                }
            }
            OpKind::Write { key, value } => match ack {
                Ack::Primary => {
                    let routed = self
                        .call(key.as_bytes(), &[&["SET", key.as_str(), value.as_str()]])
                        .await
                        .map_err(|e| e.to_string())?;
                    match routed.last() {
                        Value::Simple(ok) if ok == b"OK" => Ok(Some(routed.addr)),
                        other => Err(describe(&routed.addr, other)),
                    }
                }
                Ack::Replicas { replicas, timeout } => {
                    let wait = [
                        "WAIT".to_string(),
                        replicas.to_string(),
                        timeout.as_millis().max(1).to_string(),
                    ];
                    let set = ["SET".to_string(), key.clone(), value.clone()];
                    self.write_and_wait(key, &set, &wait, *replicas).await
                }
            },
        }
    }

    async fn write_and_wait(
        &self,
        key: &str,
        set: &[String],
        wait: &[String],
        replicas: usize,
    ) -> std::result::Result<Option<String>, String> {
        let routed = self
            .call(key.as_bytes(), &[set, wait])
            .await
            .map_err(|e| e.to_string())?;
        match routed.replies.as_slice() {
            [Value::Simple(ok), Value::Int(n)] if ok == b"OK" => {
                if *n >= replicas as i64 {
                    Ok(Some(routed.addr))
                } else {
                    Err(format!(
                        "{}: SET OK but WAIT {replicas} answered {n}",
                        routed.addr
                    ))
                }
            }
            _ => Err(describe(&routed.addr, routed.last())),
        }
    }

    /// An idle connection to `addr`, or a new one.
    async fn take(&self, addr: &str) -> Result<RespConnection> {
        let idle = self.pool().get_mut(addr).and_then(Vec::pop);
        match idle {
            Some(conn) => Ok(conn),
            None => RespConnection::connect(addr, self.timeout).await,
        }
    }

    /// Keeps `conn` (after a complete exchange) for the next call to `addr`.
    fn give_back(&self, addr: &str, conn: RespConnection) {
        let mut pool = self.pool();
        let idle = pool.entry(addr.to_string()).or_default();
        if idle.len() < POOL_PER_NODE {
            idle.push(conn);
        }
    }

    fn owners(&self) -> std::sync::MutexGuard<'_, Vec<Option<String>>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pool(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<RespConnection>>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The text of an error reply.
fn error_text(value: &Value) -> Option<String> {
    match value {
        Value::Error(_) | Value::BulkError(_) => text(value),
        _ => None,
    }
}

/// `host:port` of a `MOVED <slot> <host:port>` error.
fn moved_to(error: &str) -> Option<String> {
    let mut words = error.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("MOVED"), Some(_), Some(addr)) => Some(addr.to_string()),
        _ => None,
    }
}

/// `addr: <reply>` for an unexpected reply.
fn describe(addr: &str, value: &Value) -> String {
    match text(value) {
        Some(t) => format!("{addr}: {t}"),
        None => format!("{addr}: {value:?}"),
    }
}

/// The owner (`host:port` of the primary) of every slot in a `CLUSTER SLOTS` reply.
pub fn parse_cluster_slots(reply: &Value) -> std::result::Result<Vec<Option<String>>, String> {
    let Value::Array(ranges) = reply else {
        return Err(format!("CLUSTER SLOTS answered {reply:?}"));
    };
    let mut owners = vec![None; SLOTS];
    for range in ranges {
        let Value::Array(fields) = range else {
            return Err(format!("a CLUSTER SLOTS entry: {range:?}"));
        };
        let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(format!("a CLUSTER SLOTS entry: {fields:?}"));
        };
        let (Some(host), Some(Value::Int(port))) = (primary.first().and_then(text), primary.get(1))
        else {
            return Err(format!("a CLUSTER SLOTS primary: {primary:?}"));
        };
        if *first < 0 || *last >= SLOTS as i64 || first > last {
            return Err(format!("a CLUSTER SLOTS range {first}-{last}"));
        }
        for slot in *first..=*last {
            owners[slot as usize] = Some(format!("{host}:{port}"));
        }
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::reply::decode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A node on a random port that answers each command with `answer(its address, args)`.
    async fn fake_node(
        answer: impl Fn(&str, &[String]) -> Vec<u8> + Send + Sync + 'static,
    ) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let answer = std::sync::Arc::new(answer);
        let me = addr.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let answer = answer.clone();
                let me = me.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        while let Ok(Some((Value::Array(args), used))) = decode(&buf) {
                            buf.drain(..used);
                            let args: Vec<String> = args.iter().filter_map(text).collect();
                            if stream.write_all(&answer(&me, &args)).await.is_err() {
                                return;
                            }
                        }
                        if matches!(stream.read_buf(&mut buf).await, Ok(0) | Err(_)) {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// `CLUSTER SLOTS` giving every slot to `addr`.
    fn all_slots_to(addr: &str) -> Vec<u8> {
        let (host, port) = addr.split_once(':').unwrap();
        format!(
            "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n${}\r\n{host}\r\n:{port}\r\n",
            host.len()
        )
        .into_bytes()
    }

    #[test]
    fn moved_errors_name_the_owner() {
        assert_eq!(
            moved_to("MOVED 3999 127.0.0.1:6381").as_deref(),
            Some("127.0.0.1:6381")
        );
        assert_eq!(moved_to("ASK 3999 127.0.0.1:6381"), None);
        assert_eq!(moved_to("CLUSTERDOWN The cluster is down"), None);
    }

    #[test]
    fn cluster_slots_replies_give_every_slot_s_owner() {
        let (value, _) = decode(&all_slots_to("127.0.0.1:7000")).unwrap().unwrap();
        let owners = parse_cluster_slots(&value).unwrap();
        assert!(
            owners
                .iter()
                .all(|o| o.as_deref() == Some("127.0.0.1:7000"))
        );
        assert!(parse_cluster_slots(&Value::Int(1)).is_err());
    }

    #[tokio::test]
    async fn moved_is_followed_and_wait_decides_the_ack() {
        // B owns the slots really and acknowledges with one replica; A still thinks it owns
        // every slot and redirects.
        let b = fake_node(|_, args| match args[0].as_str() {
            "SET" => b"+OK\r\n".to_vec(),
            "WAIT" => b":1\r\n".to_vec(),
            "GET" => b"$1\r\nv\r\n".to_vec(),
            _ => b"-ERR unknown\r\n".to_vec(),
        })
        .await;
        let to_b = b.clone();
        let a = fake_node(move |me, args| match args[0].as_str() {
            "CLUSTER" => all_slots_to(me),
            _ => format!("-MOVED 1 {to_b}\r\n").into_bytes(),
        })
        .await;
        // A's CLUSTER SLOTS names A itself (stale): the write goes there first, then to B.
        let router = Router::new(vec![a.clone()], Duration::from_secs(2))
            .await
            .unwrap();
        let ack = Ack::Replicas {
            replicas: 1,
            timeout: Duration::from_millis(100),
        };
        let done = router.run_op(&OpKind::write("k", "1"), &ack).await;
        assert_eq!(done, Ok(Some(b.clone())));
        assert_eq!(router.owner(key_slot(b"k")).as_deref(), Some(b.as_str()));
        let two = Ack::Replicas {
            replicas: 2,
            timeout: Duration::from_millis(100),
        };
        let short = router.run_op(&OpKind::write("k", "2"), &two).await;
        assert!(short.unwrap_err().contains("WAIT 2 answered 1"));
        assert_eq!(
            router.run_op(&OpKind::read("k"), &Ack::Primary).await,
            Ok(Some("v".into()))
        );
    }

    #[tokio::test]
    async fn errors_are_reported_not_retried() {
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = calls.clone();
        let node = fake_node(move |_, args| match args[0].as_str() {
            "CLUSTER" => b"*0\r\n".to_vec(),
            _ => {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                b"-CLUSTERDOWN The cluster is down\r\n".to_vec()
            }
        })
        .await;
        let router = Router::new(vec![node.clone()], Duration::from_secs(2))
            .await
            .unwrap();
        // No slot has an owner: nothing is sent.
        let err = router.run_op(&OpKind::read("k"), &Ack::Primary).await;
        assert!(err.unwrap_err().contains("no owner"));
        router.owners()[key_slot(b"k") as usize] = Some(node.clone());
        let err = router
            .run_op(&OpKind::write("k", "1"), &Ack::Primary)
            .await
            .unwrap_err();
        assert!(err.contains("CLUSTERDOWN"), "{err}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A node that is gone is an error, and the router relearns the slots.
        let gone = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        router.owners()[key_slot(b"k") as usize] = Some(gone);
        tokio::time::sleep(REFRESH_GAP).await;
        assert!(
            router
                .run_op(&OpKind::read("k"), &Ack::Primary)
                .await
                .is_err()
        );
        assert_eq!(router.owner(key_slot(b"k")), None, "relearned: no owner");
    }
}
