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
//! Order is kept for everything else: any other command on a key that has a batch waiting
//! (a read, another kind of write, a `DEL`) waits until the batch is answered, and a write of
//! the other kind starts a new batch after it. So a writer that reads after its write's
//! acknowledgement sees it.
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

    fn same_kind(&self, other: &Write) -> bool {
        matches!(
            (self, other),
            (Write::Set(_), Write::Set(_)) | (Write::Add(_), Write::Add(_))
        )
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
                let sum = adds
                    .iter()
                    .try_fold(0i64, |sum, n| sum.checked_add(*n))
                    .ok_or_else(|| {
                        Error::Config("the batched increments overflow 64 bits".into())
                    })?;
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
            (Merged::Set(_), reply) => vec![reply.clone(); 1],
            (Merged::Add(adds), reply) => vec![reply.clone(); adds.len()],
        }
    }
}

/// One key's batch being gathered.
struct Batch {
    merged: Merged,
    waiters: Vec<oneshot::Sender<Result<Value, Error>>>,
    /// Turns true once the batch is answered.
    done: watch::Sender<bool>,
}

/// What a write handed to [`Batcher::offer`] should do.
pub(crate) enum Offer {
    /// It joined a batch: its reply comes on this receiver. `Some(merged)` if it started the
    /// batch, whose caller sends it after the window ([`Batcher::take`]).
    Joined(oneshot::Receiver<Result<Value, Error>>, bool),
    /// A batch of the other kind is waiting: wait for it, then offer again.
    Wait(watch::Receiver<bool>),
}

/// The batches of a client.
pub(crate) struct Batcher {
    window: Duration,
    batches: Mutex<HashMap<Bytes, Batch>>,
    /// Batches waiting: while 0, other commands look at nothing.
    waiting: AtomicUsize,
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
            batches: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            busy: Mutex::new(HashMap::new()),
            any_busy: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// How long a batch gathers writes.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Adds `write` to `key`'s batch, starting one if there is none.
    pub(crate) fn offer(&self, key: &[u8], write: Write) -> Offer {
        let mut batches = self.batches.lock();
        let (tx, rx) = oneshot::channel();
        if let Some(batch) = batches.get_mut(key) {
            let kind = match &batch.merged {
                Merged::Set(v) => Write::Set(v.clone()),
                Merged::Add(_) => Write::Add(0),
            };
            if !kind.same_kind(&write) {
                return Offer::Wait(batch.done.subscribe());
            }
            match (&mut batch.merged, write) {
                (Merged::Set(value), Write::Set(new)) => *value = new,
                (Merged::Add(adds), Write::Add(n)) => adds.push(n),
                _ => unreachable!("same kind"),
            }
            batch.waiters.push(tx);
            return Offer::Joined(rx, false);
        }
        let merged = match write {
            Write::Set(value) => Merged::Set(value),
            Write::Add(n) => Merged::Add(vec![n]),
        };
        batches.insert(
            Bytes::copy_from_slice(key),
            Batch {
                merged,
                waiters: vec![tx],
                done: watch::channel(false).0,
            },
        );
        self.waiting.fetch_add(1, Relaxed);
        Offer::Joined(rx, true)
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

    /// Takes `key`'s batch to send it: what to send, and where its answer goes.
    pub(crate) fn take(&self, key: &[u8]) -> Option<Taken<'_>> {
        let batch = self.batches.lock().remove(key)?;
        let mut busy = self.busy.lock();
        busy.retain(|_, at| at.elapsed() < STICKY);
        if batch.waiters.len() > 1 {
            busy.insert(Bytes::copy_from_slice(key), Instant::now());
        }
        self.any_busy.store(!busy.is_empty(), Relaxed);
        drop(busy);
        Some(Taken {
            merged: batch.merged,
            waiters: batch.waiters,
            done: batch.done,
            batcher_waiting: &self.waiting,
        })
    }

    /// Whether any batch waits.
    pub(crate) fn any_waiting(&self) -> bool {
        self.waiting.load(Relaxed) > 0
    }

    /// If `key` has a batch waiting, a receiver that turns true once it is answered.
    pub(crate) fn pending(&self, key: &[u8]) -> Option<watch::Receiver<bool>> {
        if self.waiting.load(Relaxed) == 0 {
            return None;
        }
        self.batches.lock().get(key).map(|b| b.done.subscribe())
    }
}

/// A batch taken to be sent.
pub(crate) struct Taken<'a> {
    /// What it sends.
    pub(crate) merged: Merged,
    waiters: Vec<oneshot::Sender<Result<Value, Error>>>,
    done: watch::Sender<bool>,
    batcher_waiting: &'a AtomicUsize,
}

impl Taken<'_> {
    /// Hands each write its reply, from the batch command's `result`, and releases whoever
    /// waits for the batch.
    pub(crate) fn answer(self, result: Result<Value, Error>) {
        match &result {
            Ok(reply) => {
                let replies = self.merged.replies(reply);
                let mut replies = replies.into_iter();
                let mut last = None;
                for waiter in self.waiters {
                    let reply = replies.next().or_else(|| last.clone());
                    last = reply.clone();
                    let _ = waiter.send(Ok(reply.unwrap_or(Value::Null)));
                }
            }
            Err(e) => {
                for waiter in self.waiters {
                    let _ = waiter.send(Err(e.clone()));
                }
            }
        }
        self.batcher_waiting.fetch_sub(1, Relaxed);
        let _ = self.done.send(true);
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
    async fn a_batch_takes_writes_of_its_kind_and_makes_others_wait() {
        let batcher = Batcher::new(Duration::from_millis(50));
        assert!(batcher.pending(b"k").is_none());
        let Offer::Joined(first, true) = batcher.offer(b"k", Write::Set("a".into())) else {
            panic!("the first write starts the batch");
        };
        let Offer::Joined(second, false) = batcher.offer(b"k", Write::Set("b".into())) else {
            panic!("a second SET joins it");
        };
        let Offer::Wait(mut wait) = batcher.offer(b"k", Write::Add(1)) else {
            panic!("an increment waits for the SETs");
        };
        let mut pending = batcher.pending(b"k").expect("a batch waits");
        let taken = batcher.take(b"k").unwrap();
        assert_eq!(taken.merged, Merged::Set("b".into()), "the last SET wins");
        taken.answer(Ok(Value::Simple(b"OK".to_vec())));
        for rx in [first, second] {
            assert_eq!(rx.await.unwrap().unwrap(), Value::Simple(b"OK".to_vec()));
        }
        wait.wait_for(|done| *done).await.unwrap();
        pending.wait_for(|done| *done).await.unwrap();
        assert!(batcher.pending(b"k").is_none());
    }
}
