//! Write batching for hot keys (opt-in, [`ClientConfig::hot_write_batch`]): writes to one of
//! the cluster's hot keys that arrive within a short window are sent as one. `SET key value`s
//! coalesce into the last one; `INCR`, `INCRBY`, `DECR` and `DECRBY`s into one `INCRBY` of
//! their sum. Every write of a batch is acknowledged once the batch's command is answered, with
//! that answer: a `SET` gets its `OK`; an increment gets the value the counter had just after
//! it, as if the batch's increments had run one by one in the order they arrived.
//!
//! A batched key stays batched while its batches keep gathering more than one write (for
//! [`STICKY`] after the last such batch), even once the cluster stops calling it hot: batching
//! is what made its node see few requests of it.
//!
//! Order is kept: each key with something batched has a queue of entries in arrival order, a
//! batch or another command (a read, a `DEL`, a write of the other kind: a barrier), and each
//! runs only once the one before it is done. A write joins the open batch only if nothing else
//! was queued after it; otherwise it starts a new batch behind. So even the pipelined
//! `INCR k; SET k 5; INCR k` of one connection ends at 6, and a read queued after a write is
//! answered after it (by the primary, or by a replica within the replication delay if the key's
//! reads are spread).
//!
//! [`ClientConfig::hot_write_batch`]: crate::ClientConfig::hot_write_batch

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_proto::args::parse_i64;
use tokio::sync::{oneshot, watch};

use crate::error::Error;
use shoal_proto::reply::Value;

/// How long a key stays batched after a batch of it gathered more than one write.
pub(crate) const STICKY: Duration = Duration::from_secs(3);

/// A write a batch can take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// `SET key value` (no options).
    Set(Bytes),
    /// An increment by this much (`INCR`, `INCRBY`, `DECR`, `DECRBY`).
    Add(i64),
}

impl Write {
    /// The key of `args` if it is a command a batch can take (by name and argument count
    /// only: nothing is parsed or copied).
    pub(crate) fn key_of<A: AsRef<[u8]>>(args: &[A]) -> Option<&[u8]> {
        let name = args.first()?.as_ref();
        let batchable = match args.len() {
            2 => name.eq_ignore_ascii_case(b"incr") || name.eq_ignore_ascii_case(b"decr"),
            3 => [&b"set"[..], b"incrby", b"decrby"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n)),
            _ => false,
        };
        batchable.then(|| args[1].as_ref())
    }

    /// The write `args` is, if a batch can take it: the key and the write.
    pub(crate) fn of<A: AsRef<[u8]>>(args: &[A]) -> Option<(&[u8], Write)> {
        let name = args.first()?.as_ref();
        let key = args.get(1)?.as_ref();
        let arg = |i: usize| args.get(i).map(AsRef::as_ref);
        let write = match args.len() {
            2 if name.eq_ignore_ascii_case(b"incr") => Write::Add(1),
            2 if name.eq_ignore_ascii_case(b"decr") => Write::Add(-1),
            3 if name.eq_ignore_ascii_case(b"set") => Write::Set(Bytes::copy_from_slice(arg(2)?)),
            3 if name.eq_ignore_ascii_case(b"incrby") => Write::Add(parse_i64(arg(2)?)?),
            3 if name.eq_ignore_ascii_case(b"decrby") => {
                Write::Add(parse_i64(arg(2)?)?.checked_neg()?)
            }
            _ => return None,
        };
        Some((key, write))
    }
}

/// What a batch sends for its writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Merged {
    /// `SET key value`: the last value.
    Set(Bytes),
    /// `INCRBY key sum`, with each write's increment in arrival order.
    Add(Vec<i64>),
}

impl Merged {
    /// The command's arguments for `key`.
    pub(crate) fn command(&self, key: &[u8]) -> Result<Vec<Bytes>, Error> {
        let key = Bytes::copy_from_slice(key);
        Ok(match self {
            Merged::Set(value) => vec![Bytes::from_static(b"SET"), key, value.clone()],
            Merged::Add(adds) => {
                let sum = adds.iter().map(|n| i128::from(*n)).sum::<i128>();
                let sum = i64::try_from(sum)
                    .map_err(|_| Error::Config("the batched increments overflow 64 bits".into()))?;
                vec![
                    Bytes::from_static(b"INCRBY"),
                    key,
                    Bytes::from(sum.to_string()),
                ]
            }
        })
    }

    /// The reply of each write of the batch, given the batch command's `reply`: the same for
    /// every `SET`; for increments, the value after each one in turn.
    pub(crate) fn replies(&self, reply: &Value) -> Vec<Value> {
        match (self, reply) {
            (Merged::Add(adds), Value::Int(total)) => {
                let mut after = Vec::with_capacity(adds.len());
                let mut value = *total;
                for n in adds.iter().rev() {
                    after.push(Value::Int(value));
                    value = value.wrapping_sub(*n);
                }
                after.reverse();
                after
            }
            (Merged::Set(_), reply) => vec![reply.clone()],
            (Merged::Add(adds), reply) => vec![reply.clone(); adds.len()],
        }
    }
}

/// One key's batch being gathered.
struct Batch {
    merged: Merged,
    waiters: Vec<oneshot::Sender<Result<Value, Error>>>,
}

/// What is queued on one key, in arrival order: batches and other commands (barriers), each
/// run only once the one before it is done.
struct Chain {
    /// The batch still taking writes: the last entry, if it is a batch not yet sent.
    open: Option<(u64, Batch)>,
    /// Batches sent or waiting to be sent, by id (taken by their sender).
    closed: HashMap<u64, Batch>,
    /// Turns true once the last entry is done: what the next entry waits for.
    tail: watch::Receiver<bool>,
    /// The last entry's id.
    tail_id: u64,
}

/// What a write handed to [`Batcher::offer`] gets.
pub(crate) struct Joined {
    /// Its reply.
    pub(crate) reply: oneshot::Receiver<Result<Value, Error>>,
    /// If it started a batch: the batch to send ([`Batcher::send`]) once the window has
    /// passed and the entry before it is done.
    pub(crate) started: Option<Pending>,
}

/// A batch to send: its key, its id, what it waits for, and how it tells the next entry. Hand
/// it to [`Batcher::send`] at once (a task spawned for it): dropped unsent, its writes would
/// wait for ever.
pub(crate) struct Pending {
    key: Bytes,
    id: u64,
    before: watch::Receiver<bool>,
    done: watch::Sender<bool>,
}

/// A command's place in its key's queue ([`Batcher::barrier`]): run it after `wait`, then drop
/// the place (which lets the next entry go).
pub(crate) struct Place<'a> {
    batcher: &'a Batcher,
    key: Bytes,
    id: u64,
    before: Option<watch::Receiver<bool>>,
    done: Option<watch::Sender<bool>>,
}

impl Place<'_> {
    /// Waits until every entry queued on the key before this command is done.
    pub(crate) async fn wait(&mut self) {
        if let Some(before) = self.before.as_mut() {
            let _ = before.wait_for(|done| *done).await;
        }
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(true);
            self.batcher.finished(&self.key, self.id);
        }
    }
}

/// The batches of a client.
pub(crate) struct Batcher {
    window: Duration,
    chains: Mutex<HashMap<Bytes, Chain>>,
    /// Keys with a queue: while 0, other commands look at nothing.
    queued: AtomicUsize,
    next_id: std::sync::atomic::AtomicU64,
    /// Keys whose last batch gathered more than one write, and when it was sent.
    busy: Mutex<HashMap<Bytes, Instant>>,
    /// Whether `busy` has any key: while not, writes of keys that are not hot look no further.
    any_busy: std::sync::atomic::AtomicBool,
}

impl Batcher {
    /// Batches gathered over `window`.
    pub(crate) fn new(window: Duration) -> Arc<Batcher> {
        Arc::new(Batcher {
            window,
            chains: Mutex::new(HashMap::new()),
            queued: AtomicUsize::new(0),
            next_id: std::sync::atomic::AtomicU64::new(1),
            busy: Mutex::new(HashMap::new()),
            any_busy: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Adds `write` to `key`'s open batch if it has one of its kind, or queues a new batch
    /// behind whatever the key has queued.
    pub(crate) fn offer(&self, key: &[u8], write: Write) -> Joined {
        let (tx, reply) = oneshot::channel();
        let mut chains = self.chains.lock();
        if let Some(chain) = chains.get_mut(key)
            && let Some((_, batch)) = chain.open.as_mut()
        {
            match (&mut batch.merged, &write) {
                (Merged::Set(value), Write::Set(new)) => {
                    *value = new.clone();
                    batch.waiters.push(tx);
                    return Joined {
                        reply,
                        started: None,
                    };
                }
                (Merged::Add(adds), Write::Add(n)) => {
                    adds.push(*n);
                    batch.waiters.push(tx);
                    return Joined {
                        reply,
                        started: None,
                    };
                }
                _ => {}
            }
        }
        let merged = match write {
            Write::Set(value) => Merged::Set(value),
            Write::Add(n) => Merged::Add(vec![n]),
        };
        let batch = Batch {
            merged,
            waiters: vec![tx],
        };
        let (id, before, done) = self.enqueue(&mut chains, key);
        let chain = chains.get_mut(key).expect("just queued");
        chain.open = Some((id, batch));
        Joined {
            reply,
            started: Some(Pending {
                key: Bytes::copy_from_slice(key),
                id,
                before,
                done,
            }),
        }
    }

    /// Queues an entry on `key`: its id, what it waits for, and its own signal. The open
    /// batch, if any, takes no more writes (they would overtake the new entry).
    fn enqueue(
        &self,
        chains: &mut HashMap<Bytes, Chain>,
        key: &[u8],
    ) -> (u64, watch::Receiver<bool>, watch::Sender<bool>) {
        let id = self.next_id.fetch_add(1, Relaxed);
        let (done, tail) = watch::channel(false);
        let before = match chains.get_mut(key) {
            Some(chain) => {
                if let Some((open_id, batch)) = chain.open.take() {
                    chain.closed.insert(open_id, batch);
                }
                chain.tail_id = id;
                std::mem::replace(&mut chain.tail, tail)
            }
            None => {
                self.queued.fetch_add(1, Relaxed);
                chains.insert(
                    Bytes::copy_from_slice(key),
                    Chain {
                        open: None,
                        closed: HashMap::new(),
                        tail,
                        tail_id: id,
                    },
                );
                watch::channel(true).1
            }
        };
        (id, before, done)
    }

    /// Places in the queues of those of `keys` that have one, for a command that is not
    /// batched: it runs after everything queued on them before it, and whatever comes after
    /// waits for it. Taken together under one lock, so two commands on the same keys queue in
    /// the same order on each (neither can wait for the other).
    pub(crate) fn barrier(&self, keys: &[&[u8]]) -> Vec<Place<'_>> {
        if self.queued.load(Relaxed) == 0 {
            return Vec::new();
        }
        let mut chains = self.chains.lock();
        let mut places = Vec::new();
        for key in keys {
            if !chains.contains_key(*key) || places.iter().any(|p: &Place<'_>| p.key == key) {
                continue;
            }
            let (id, before, done) = self.enqueue(&mut chains, key);
            places.push(Place {
                batcher: self,
                key: Bytes::copy_from_slice(key),
                id,
                before: Some(before),
                done: Some(done),
            });
        }
        places
    }

    /// Whether any key has a queue.
    pub(crate) fn any_queued(&self) -> bool {
        self.queued.load(Relaxed) > 0
    }

    /// Sends the batch `pending` once the window has passed and the entry before it is done,
    /// with `send` (the batch's command to its reply), and answers its writes. Whatever
    /// happens (an error, the task dropped), its writes get an answer and the next entry goes.
    pub(crate) async fn send<F, Fut>(&self, pending: Pending, send: F)
    where
        F: FnOnce(Vec<Bytes>) -> Fut,
        Fut: std::future::Future<Output = Result<Value, Error>>,
    {
        let Pending {
            key,
            id,
            mut before,
            done,
        } = pending;
        let mut sent = Sent {
            batcher: self,
            key,
            id,
            done: Some(done),
            batch: None,
        };
        tokio::time::sleep(self.window).await;
        let _ = before.wait_for(|done| *done).await;
        sent.batch = sent.batcher.take(&sent.key, id);
        let Some(batch) = sent.batch.as_ref() else {
            return;
        };
        let result = match batch.merged.command(&sent.key) {
            Ok(command) => send(command).await,
            Err(e) => Err(e),
        };
        sent.answer(result);
    }

    /// Takes batch `id` of `key` to send it (it takes no more writes).
    fn take(&self, key: &[u8], id: u64) -> Option<Batch> {
        let mut chains = self.chains.lock();
        let chain = chains.get_mut(key)?;
        let batch = match chain.open.take() {
            Some((open_id, batch)) if open_id == id => batch,
            other => {
                chain.open = other;
                chain.closed.remove(&id)?
            }
        };
        drop(chains);
        let mut busy = self.busy.lock();
        busy.retain(|_, at| at.elapsed() < STICKY);
        if batch.waiters.len() > 1 {
            busy.insert(Bytes::copy_from_slice(key), Instant::now());
        }
        self.any_busy.store(!busy.is_empty(), Relaxed);
        Some(batch)
    }

    /// Entry `id` of `key` is done: the key's queue goes if it was the last.
    fn finished(&self, key: &[u8], id: u64) {
        let mut chains = self.chains.lock();
        if chains
            .get(key)
            .is_some_and(|c| c.tail_id == id && c.open.is_none())
        {
            chains.remove(key);
            self.queued.fetch_sub(1, Relaxed);
        }
    }

    /// Whether `key` is still batched though the cluster may no longer call it hot (see
    /// [`STICKY`]).
    pub(crate) fn keeps(&self, key: &[u8]) -> bool {
        self.any_busy.load(Relaxed)
            && self
                .busy
                .lock()
                .get(key)
                .is_some_and(|at| at.elapsed() < STICKY)
    }
}

/// A batch being sent: answers its writes and lets the next entry go when dropped, whatever
/// happened before.
struct Sent<'a> {
    batcher: &'a Batcher,
    key: Bytes,
    id: u64,
    done: Option<watch::Sender<bool>>,
    batch: Option<Batch>,
}

impl Sent<'_> {
    /// Hands each write its reply, from the batch command's `result`.
    fn answer(&mut self, result: Result<Value, Error>) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        match &result {
            Ok(reply) => {
                let mut replies = batch.merged.replies(reply).into_iter();
                let mut last = None;
                for waiter in batch.waiters {
                    let reply = replies.next().or_else(|| last.clone());
                    last = reply.clone();
                    let _ = waiter.send(Ok(reply.unwrap_or(Value::Null)));
                }
            }
            Err(e) => {
                for waiter in batch.waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Drop for Sent<'_> {
    fn drop(&mut self) {
        // Not answered (the task was dropped, or the batch could not be taken).
        self.answer(Err(Error::Config(
            "the batch was not sent (the client is closing)".into(),
        )));
        if let Some(done) = self.done.take() {
            let _ = done.send(true);
            self.batcher.finished(&self.key, self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batchable_writes_are_plain_sets_and_increments() {
        let w = |args: &[&str]| Write::of(args).map(|(k, w)| (k.to_vec(), w));
        assert_eq!(
            w(&["SET", "k", "v"]),
            Some((b"k".to_vec(), Write::Set("v".into())))
        );
        assert_eq!(w(&["incr", "k"]), Some((b"k".to_vec(), Write::Add(1))));
        assert_eq!(
            w(&["DECRBY", "k", "5"]),
            Some((b"k".to_vec(), Write::Add(-5)))
        );
        assert_eq!(
            w(&["SET", "k", "v", "EX", "10"]),
            None,
            "options are not batched"
        );
        assert_eq!(
            w(&["INCRBY", "k", "x"]),
            None,
            "not an integer: the node says why"
        );
        assert_eq!(w(&["DECRBY", "k", "-9223372036854775808"]), None);
        assert_eq!(w(&["GET", "k"]), None);
        assert_eq!(Write::key_of(&["set", "k", "v"]), Some(&b"k"[..]));
        assert_eq!(
            Write::key_of(&["INCRBY", "k", "x"]),
            Some(&b"k"[..]),
            "parsed later"
        );
        assert_eq!(Write::key_of(&["SET", "k", "v", "EX", "1"]), None);
        assert_eq!(Write::key_of(&["GET", "k"]), None);
    }

    #[test]
    fn increments_are_summed_and_each_gets_the_value_after_it() {
        let merged = Merged::Add(vec![1, 5, -2]);
        let command = merged.command(b"c").unwrap();
        assert_eq!(command[0], "INCRBY");
        assert_eq!(command[2], "4");
        // The counter was 10: after each, 11, 16, 14.
        assert_eq!(
            merged.replies(&Value::Int(14)),
            [Value::Int(11), Value::Int(16), Value::Int(14)]
        );
        let error = Value::Error(b"ERR value is not an integer or out of range".to_vec());
        assert_eq!(merged.replies(&error), vec![error.clone(); 3]);
    }

    #[tokio::test]
    async fn entries_on_a_key_run_in_arrival_order() {
        let batcher = Batcher::new(Duration::from_millis(5));
        let log = Arc::new(Mutex::new(Vec::new()));
        // INCR, SET 5, INCR as one connection pipelines them: three entries, in order.
        let first = batcher.offer(b"k", Write::Add(1));
        let second = batcher.offer(b"k", Write::Set("5".into()));
        let third = batcher.offer(b"k", Write::Add(1));
        // A read queued last waits for all three.
        let mut read = batcher.barrier(&[b"k", b"other"]);
        assert_eq!(read.len(), 1, "only keys with a queue get a place");
        let mut senders = Vec::new();
        for joined in [&first, &second, &third] {
            assert!(joined.started.is_some(), "each starts its own batch");
        }
        let mut value = 0i64;
        let mut replies = Vec::new();
        for (i, joined) in [first, second, third].into_iter().enumerate() {
            let pending = joined.started.unwrap();
            let batcher = batcher.clone();
            let log = log.clone();
            senders.push(tokio::spawn(async move {
                batcher
                    .send(pending, |command| async move {
                        log.lock().push((i, command));
                        Ok(Value::Int(0))
                    })
                    .await
            }));
            replies.push(joined.reply);
        }
        read[0].wait().await;
        for (i, command) in log.lock().iter() {
            match command[0].as_ref() {
                b"INCRBY" => {
                    value += std::str::from_utf8(&command[2])
                        .unwrap()
                        .parse::<i64>()
                        .unwrap()
                }
                b"SET" => value = 5,
                other => panic!("{other:?} from entry {i}"),
            }
        }
        let order: Vec<usize> = log.lock().iter().map(|(i, _)| *i).collect();
        assert_eq!(order, [0, 1, 2]);
        assert_eq!(value, 6, "as Redis runs INCR; SET 5; INCR");
        drop(read);
        for sender in senders {
            sender.await.unwrap();
        }
        for reply in replies {
            assert_eq!(reply.await.unwrap().unwrap(), Value::Int(0));
        }
        assert!(!batcher.any_queued(), "the queue goes with its last entry");
    }

    #[tokio::test]
    async fn writes_of_one_kind_join_the_open_batch_and_all_get_answers() {
        let batcher = Batcher::new(Duration::from_millis(5));
        let first = batcher.offer(b"k", Write::Set("a".into()));
        let second = batcher.offer(b"k", Write::Set("b".into()));
        assert!(
            second.started.is_none(),
            "a second SET joins the open batch"
        );
        let pending = first.started.unwrap();
        batcher
            .send(pending, |command| async move {
                assert_eq!(command[2], "b", "the last SET wins");
                Ok(Value::Simple(b"OK".to_vec()))
            })
            .await;
        for rx in [first.reply, second.reply] {
            assert_eq!(rx.await.unwrap().unwrap(), Value::Simple(b"OK".to_vec()));
        }
        assert!(!batcher.any_queued());
    }
}
