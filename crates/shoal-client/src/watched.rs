//! Optimistic locking (`WATCH`): a connection of its own to a slot's primary, held from
//! `WATCH` to `EXEC`, since a node keeps a connection's watched keys and the shared
//! connections carry everyone's requests.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use shoal_cluster::Slot;
use shoal_proto::reply::Value;

use crate::client::{Client, Target};
use crate::codec::encode;
use crate::config::ReadFrom;
use crate::conn::Conn;
use crate::error::Error;
use crate::router::{self, Route};
use crate::transaction;

/// What [`transaction::refuse_state`] says of `MULTI`, `EXEC`, `DISCARD` and `WATCH` sent
/// through [`Watched::command`].
const ON_WATCHED: &str = "through Watched::command; use Watched::watch and Watched::exec";

/// Keys watched on a connection of their own to their slot's primary, from
/// [`Client::watch`] until [`Watched::exec`] runs a transaction on it, which runs nothing
/// (`EXEC` answers a null) if a watched key changed in between (Redis's optimistic
/// locking). Dropping it closes the connection, and so unwatches.
///
/// Requests made through it go to that one node and are not redirected: keys of another slot
/// are refused ([`Error::CrossSlot`]), and a `-MOVED` (the slot moved: the watch no longer
/// holds) comes back as the reply. Start over with a new [`Client::watch`] then, as after a
/// null from `EXEC`.
pub struct Watched {
    client: Client,
    conn: Conn,
    node: Arc<str>,
    slot: Slot,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched")
            .field("node", &self.node)
            .field("slot", &self.slot)
            .finish()
    }
}

impl Client {
    /// `WATCH`es `keys` (one slot: [`Error::CrossSlot`] otherwise) on a new connection to
    /// their slot's primary, following redirections and retrying as [`Client::command`]
    /// does, and returns it for reads and the transaction that depends on them.
    ///
    /// ```no_run
    /// # async fn demo(client: shoal_client::Client) -> Result<(), shoal_client::Error> {
    /// use shoal_client::Value;
    ///
    /// // Doubles {acct:1}.balance, unless someone changes it meanwhile: then try again.
    /// loop {
    ///     let watched = client.watch(&["{acct:1}.balance"]).await?;
    ///     let balance: i64 = match watched.get("{acct:1}.balance").await? {
    ///         Some(v) => std::str::from_utf8(&v).ok().and_then(|v| v.parse().ok()).unwrap_or(0),
    ///         None => 0,
    ///     };
    ///     let doubled = (balance * 2).to_string();
    ///     match watched.exec(&[["SET", "{acct:1}.balance", doubled.as_str()]]).await? {
    ///         Value::Array(_) => break,  // ran
    ///         Value::Null => continue,   // the balance changed: nothing ran
    ///         other => panic!("{other:?}"),
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn watch<K: AsRef<[u8]>>(&self, keys: &[K]) -> Result<Watched, Error> {
        let slot = keys_slot(keys)?;
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + keys.len());
        args.push(b"WATCH");
        args.extend(keys.iter().map(AsRef::as_ref));
        let frame = encode(&args);
        let timeout = self.config().request_timeout;
        // Each attempt opens a connection of its own; the last one is kept.
        let opened: Mutex<Option<(Arc<str>, Conn)>> = Mutex::new(None);
        let attempt = self.retrying(
            Target::Slot(slot),
            ReadFrom::Primary,
            // A failed attempt's connection is dropped with whatever it watched.
            true,
            |addr, asking| {
                let conn = self.pools().open_dedicated(&addr);
                *opened.lock() = Some((addr, conn.clone()));
                let frame = frame.clone();
                async move { conn.request(frame, asking, timeout).await }
            },
        );
        match self.observed(attempt).await? {
            Value::Simple(ok) if ok == b"OK" => {}
            Value::Error(line) | Value::BulkError(line) => {
                return Err(Error::from_server_line(&line));
            }
            other => return Err(Error::unexpected_reply("WATCH", &other)),
        }
        let (node, conn) = opened
            .into_inner()
            .ok_or_else(|| Error::Config("WATCH was answered without a connection".into()))?;
        Ok(Watched {
            client: self.clone(),
            conn,
            node,
            slot,
        })
    }
}

impl Watched {
    /// The slot of the watched keys.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    /// The node (`host:port`) the connection is to: the slot's primary when it was watched.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `WATCH`es more keys on the connection (of the same slot, else [`Error::CrossSlot`]).
    pub async fn watch<K: AsRef<[u8]>>(&mut self, keys: &[K]) -> Result<(), Error> {
        if keys_slot(keys)? != self.slot {
            return Err(Error::CrossSlot);
        }
        let mut args: Vec<&[u8]> = Vec::with_capacity(1 + keys.len());
        args.push(b"WATCH");
        args.extend(keys.iter().map(AsRef::as_ref));
        match self.send(&args).await? {
            Value::Simple(ok) if ok == b"OK" => Ok(()),
            Value::Error(line) | Value::BulkError(line) => Err(Error::from_server_line(&line)),
            other => Err(Error::unexpected_reply("WATCH", &other)),
        }
    }

    /// Sends a command on the connection (reads the transaction depends on, typically) and
    /// returns its reply, error replies as `Ok(Value::Error)` as [`Client::command`] does. Its
    /// keys must be in the watched slot ([`Error::CrossSlot`]); `MULTI`, `EXEC`, `DISCARD`
    /// and `WATCH` are refused ([`Error::Config`]: use [`Watched::exec`] and
    /// [`Watched::watch`]). Nothing is retried: the connection holds the watch.
    pub async fn command<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, Error> {
        transaction::refuse_state(args, ON_WATCHED)?;
        match router::route(args)?.route {
            Route::Any => {}
            Route::Slot(slot) if slot == self.slot => {}
            Route::Slot(_) | Route::Split(_) => return Err(Error::CrossSlot),
        }
        self.send(args).await
    }

    /// `GET key` on the connection (`key` in the watched slot).
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>, Error> {
        match self.command(&[&b"GET"[..], key.as_ref()]).await? {
            Value::Bulk(value) => Ok(Some(Bytes::from(value))),
            Value::Null => Ok(None),
            Value::Error(line) | Value::BulkError(line) => Err(Error::from_server_line(&line)),
            other => Err(Error::unexpected_reply("GET", &other)),
        }
    }

    /// Runs `commands` as one transaction on the connection, as [`Client::transaction`] does
    /// (their keys in the watched slot, or none), and returns `EXEC`'s reply: the array of
    /// the commands' replies, or a null if a watched key changed since it was watched (nothing
    /// ran), or an error reply if the node refused the transaction (`-MOVED` when the slot
    /// moved meanwhile). Nothing is retried. The connection closes afterwards.
    pub async fn exec<C, A>(self, commands: &[C]) -> Result<Value, Error>
    where
        C: AsRef<[A]>,
        A: AsRef<[u8]>,
    {
        let batch = transaction::batch(commands)?;
        if batch.slot.is_some_and(|slot| slot != self.slot) {
            return Err(Error::CrossSlot);
        }
        let timeout = self.client.config().request_timeout;
        let written: Vec<&[u8]> = commands
            .iter()
            .flat_map(|command| crate::router::keys(command.as_ref()))
            .collect();
        self.forget(&written);
        let sent = async {
            let replies = self
                .conn
                .request_batch(batch.frame.clone(), false, batch.replies, timeout)
                .await?;
            Ok(transaction::outcome(replies))
        };
        let reply = self.client.observed(sent).await;
        self.forget(&written);
        if !batch.readonly {
            self.client.drop_copies(written).await;
        }
        reply
    }

    /// Drops `keys` from the client's near cache (they are being written), if it has one.
    fn forget(&self, keys: &[&[u8]]) {
        if let Some(near) = self.client.near_cache() {
            near.forget(keys);
        }
    }

    /// Sends one command on the connection, counted in the client's statistics.
    async fn send<A: AsRef<[u8]>>(&self, args: &[A]) -> Result<Value, Error> {
        let timeout = self.client.config().request_timeout;
        let written = match crate::router::readonly(args) {
            true => Vec::new(),
            false => crate::router::keys(args),
        };
        self.forget(&written);
        let sent = self.conn.request(encode(args), false, timeout);
        let reply = self.client.observed(sent).await;
        self.forget(&written);
        self.client.drop_copies(written).await;
        reply
    }
}

/// The one slot of `keys`: [`Error::Config`] for none, [`Error::CrossSlot`] for several.
fn keys_slot<K: AsRef<[u8]>>(keys: &[K]) -> Result<Slot, Error> {
    let mut slots = keys.iter().map(|k| shoal_cluster::key_slot(k.as_ref()));
    let first = slots
        .next()
        .ok_or_else(|| Error::Config("WATCH needs at least one key".into()))?;
    if slots.any(|s| s != first) {
        return Err(Error::CrossSlot);
    }
    Ok(first)
}
