//! Commands over the whole keyspace ([`ClusterWide`]), answered by asking the primaries (or
//! every node) with [`Client::command_on`] and merging their replies: what the proxy and a
//! forwarding node (`--routing forward`) answer a plain client that sends them.
//!
//! | command | how |
//! | --- | --- |
//! | `DBSIZE` | every primary's count, summed |
//! | `KEYS pattern` | every primary's keys, concatenated in shard order |
//! | `SCAN cursor [MATCH] [COUNT] [TYPE]` | one primary at a time; see `scan_cursor` for the cursor |
//! | `FLUSHALL`, `FLUSHDB` | every primary; `OK` once all say it |
//! | `RANDOMKEY` | primaries in random order until one has a key |
//! | `CONFIG SET`, `CONFIG RESETSTAT`, `SLOWLOG RESET`, `SCRIPT FLUSH` | every node of the map; `OK` once all say it |
//! | `SCRIPT LOAD` | every node of the map (each node has its own script cache); the SHA1 |
//! | `SCRIPT EXISTS` | every primary; 1 for a script every primary has |
//! | `SCRIPT KILL`, `FUNCTION KILL` | every primary; `OK` if one killed a script, else the first error |
//! | `FUNCTION LOAD` | every primary (replicas get functions from their primary); the library's name |
//! | `FUNCTION DELETE`, `FUNCTION FLUSH`, `FUNCTION RESTORE` | every primary; `OK` once all say it |
//!
//! A node's error reply is passed on as it is (the first one, in shard order); a failure to
//! reach a node fails the command.

use bytes::Bytes;
use futures_util::future::join_all;
use rand::seq::SliceRandom as _;
use shoal_cluster::ClusterMap;
use shoal_proto::reply::Value;

use crate::client::Client;
use crate::error::Error;
use crate::scan_cursor as scan;

/// A command a cluster answers as a whole, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterWide {
    /// `DBSIZE`: every primary's count, summed.
    DbSize,
    /// `KEYS`: every primary's keys.
    Keys,
    /// `SCAN`: one primary after the other.
    Scan,
    /// `RANDOMKEY`: primaries until one has a key.
    RandomKey,
    /// Sent to these nodes; `OK` once all say it (`FLUSHALL`, `CONFIG SET`, ...).
    Everywhere(Nodes),
    /// `SCRIPT LOAD`: every node (each has its own script cache).
    ScriptLoad,
    /// `SCRIPT EXISTS`: every primary.
    ScriptExists,
    /// `SCRIPT KILL`, `FUNCTION KILL`: every primary.
    ScriptKill,
    /// `FUNCTION LOAD`: every primary (a primary's functions reach its replicas).
    FunctionLoad,
}

impl ClusterWide {
    /// How the command (or subcommand) with this full name (`dbsize`, `config|set`) is
    /// answered for the whole cluster, if it is one of those.
    pub fn of(name: &str) -> Option<ClusterWide> {
        Some(match name {
            "dbsize" => ClusterWide::DbSize,
            "keys" => ClusterWide::Keys,
            "scan" => ClusterWide::Scan,
            "randomkey" => ClusterWide::RandomKey,
            "flushall" | "flushdb" => ClusterWide::Everywhere(Nodes::Primaries),
            "config|set" | "config|resetstat" | "slowlog|reset" | "script|flush" => {
                ClusterWide::Everywhere(Nodes::All)
            }
            "script|load" => ClusterWide::ScriptLoad,
            "script|exists" => ClusterWide::ScriptExists,
            "script|kill" | "function|kill" => ClusterWide::ScriptKill,
            "function|load" => ClusterWide::FunctionLoad,
            "function|delete" | "function|flush" | "function|restore" => {
                ClusterWide::Everywhere(Nodes::Primaries)
            }
            _ => return None,
        })
    }
}

/// Which nodes a fan-out asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nodes {
    /// Every shard's primary.
    Primaries,
    /// Every node of the map.
    All,
}

impl Nodes {
    fn of(self, map: &ClusterMap) -> Vec<String> {
        match self {
            Nodes::Primaries => primaries(map),
            Nodes::All => all_nodes(map),
        }
    }
}

fn no_nodes() -> Error {
    Error::NoMap("the cluster map has no primaries".into())
}

fn unexpected(command: &str, reply: &Value) -> Error {
    Error::unexpected_reply(command, reply)
}

impl Client {
    /// Answers `args` (a [`ClusterWide`] command, `which`) for the whole cluster.
    pub async fn cluster_wide(&self, which: ClusterWide, args: Vec<Bytes>) -> Result<Value, Error> {
        match which {
            ClusterWide::DbSize => dbsize(self, args).await,
            ClusterWide::Keys => keys(self, args).await,
            ClusterWide::Scan => scan(self, args).await,
            ClusterWide::RandomKey => randomkey(self, args).await,
            ClusterWide::Everywhere(nodes) => {
                let flush = crate::near_cache::is_flush(&args);
                let reply = all_ok(self, args, nodes).await;
                if flush && let Some(near) = self.near_cache() {
                    near.flush_all();
                }
                reply
            }
            ClusterWide::ScriptLoad => first_reply(self, args, Nodes::All).await,
            ClusterWide::ScriptExists => script_exists(self, args).await,
            ClusterWide::ScriptKill => script_kill(self, args).await,
            ClusterWide::FunctionLoad => first_reply(self, args, Nodes::Primaries).await,
        }
    }

    /// Sends `args` to each of `nodes` (`host:port`) at once; the replies in the same order,
    /// or the first failure. An empty list is an error (no cluster to ask).
    pub async fn on_each(&self, nodes: &[String], args: &[Bytes]) -> Result<Vec<Value>, Error> {
        if nodes.is_empty() {
            return Err(no_nodes());
        }
        join_all(nodes.iter().map(|node| self.command_on(node, args)))
            .await
            .into_iter()
            .collect()
    }

    /// The `keys` and `expires` of `INFO keyspace` summed over every primary; `None` if a
    /// node could not be asked.
    pub async fn keyspace_totals(&self) -> Option<(u64, u64)> {
        let args = [Bytes::from_static(b"INFO"), Bytes::from_static(b"keyspace")];
        let replies = self.on_each(&primaries(&self.map()), &args).await.ok()?;
        let mut totals = (0u64, 0u64);
        for reply in replies {
            let text = match reply {
                Value::Bulk(text) | Value::Verbatim(_, text) => text,
                _ => return None,
            };
            let text = String::from_utf8_lossy(&text);
            let (keys, expires) = parse_db0(&text);
            totals.0 += keys;
            totals.1 += expires;
        }
        Some(totals)
    }
}

/// The RESP address of every shard's primary, in shard order (stable while the map is).
pub fn primaries(map: &ClusterMap) -> Vec<String> {
    let mut shards: Vec<_> = map.shards.iter().collect();
    shards.sort_by_key(|s| s.id);
    shards
        .into_iter()
        .filter_map(|s| map.node(s.primary))
        .map(|n| n.resp_addr())
        .collect()
}

/// The RESP address of every node of the map.
pub fn all_nodes(map: &ClusterMap) -> Vec<String> {
    map.nodes.values().map(|n| n.resp_addr()).collect()
}

/// An error reply with this line.
fn error_value(line: &str) -> Value {
    Value::Error(line.as_bytes().to_vec())
}

/// The first error reply among `replies`, if any.
fn first_error(replies: &[Value]) -> Option<Value> {
    replies
        .iter()
        .find(|v| matches!(v, Value::Error(_) | Value::BulkError(_)))
        .cloned()
}

/// `DBSIZE`: the sum over every primary.
async fn dbsize(client: &Client, args: Vec<Bytes>) -> Result<Value, Error> {
    {
        let replies = client.on_each(&primaries(&client.map()), &args).await?;
        if let Some(error) = first_error(&replies) {
            return Ok(error);
        }
        let mut total: i64 = 0;
        for reply in &replies {
            match reply {
                Value::Int(n) => total = total.saturating_add(*n),
                other => return Err(unexpected("DBSIZE", other)),
            }
        }
        Ok(Value::Int(total))
    }
}

/// `KEYS pattern`: every primary's matches.
async fn keys(client: &Client, args: Vec<Bytes>) -> Result<Value, Error> {
    {
        let replies = client.on_each(&primaries(&client.map()), &args).await?;
        if let Some(error) = first_error(&replies) {
            return Ok(error);
        }
        let mut all = Vec::new();
        for reply in replies {
            match reply {
                Value::Array(keys) | Value::Set(keys) => all.extend(keys),
                other => return Err(unexpected("KEYS", &other)),
            }
        }
        Ok(Value::Array(all))
    }
}

/// A command every one of `nodes` must run, answered with the first node's reply once all
/// ran it, else the first error: `SCRIPT LOAD script` on every node (each keeps its own
/// cache, as Redis's nodes do, and a script's keys may send it to any: the SHA1), and
/// `FUNCTION LOAD [REPLACE] code` on every primary (each replicates its functions to its
/// replicas: the library's name).
async fn first_reply(client: &Client, args: Vec<Bytes>, nodes: Nodes) -> Result<Value, Error> {
    let replies = client.on_each(&nodes.of(&client.map()), &args).await?;
    if let Some(error) = first_error(&replies) {
        return Ok(error);
    }
    replies.into_iter().next().ok_or_else(no_nodes)
}

/// `SCRIPT EXISTS sha1 ...` on every primary: 1 for a script every primary has.
async fn script_exists(client: &Client, args: Vec<Bytes>) -> Result<Value, Error> {
    let replies = client.on_each(&primaries(&client.map()), &args).await?;
    if let Some(error) = first_error(&replies) {
        return Ok(error);
    }
    let mut all = vec![1i64; args.len().saturating_sub(2)];
    for reply in &replies {
        let Value::Array(found) = reply else {
            return Err(unexpected("SCRIPT EXISTS", reply));
        };
        for (seen, f) in all.iter_mut().zip(found) {
            *seen = (*seen).min(i64::from(matches!(f, Value::Int(1))));
        }
    }
    Ok(Value::Array(all.into_iter().map(Value::Int).collect()))
}

/// `SCRIPT KILL` on every primary: `OK` if one of them killed its script, else the first
/// error (`NOTBUSY`, `UNKILLABLE`).
async fn script_kill(client: &Client, args: Vec<Bytes>) -> Result<Value, Error> {
    let replies = client.on_each(&primaries(&client.map()), &args).await?;
    if replies
        .iter()
        .any(|v| matches!(v, Value::Simple(s) if s == b"OK"))
    {
        return Ok(Value::Simple(b"OK".to_vec()));
    }
    first_error(&replies).ok_or_else(no_nodes)
}

/// A command every one of `nodes` must answer `OK` to (`FLUSHALL`, `CONFIG SET`, ...).
async fn all_ok(client: &Client, args: Vec<Bytes>, nodes: Nodes) -> Result<Value, Error> {
    {
        let replies = client.on_each(&nodes.of(&client.map()), &args).await?;
        if let Some(error) = first_error(&replies) {
            return Ok(error);
        }
        match replies
            .iter()
            .find(|v| !matches!(v, Value::Simple(s) if s == b"OK"))
        {
            None => Ok(Value::Simple(b"OK".to_vec())),
            Some(other) => Err(unexpected(&String::from_utf8_lossy(&args[0]), other)),
        }
    }
}

/// `RANDOMKEY`: primaries in random order until one has a key; nil if none has.
async fn randomkey(client: &Client, args: Vec<Bytes>) -> Result<Value, Error> {
    {
        let mut nodes = primaries(&client.map());
        if nodes.is_empty() {
            return Err(no_nodes());
        }
        nodes.shuffle(&mut rand::rng());
        for node in &nodes {
            match client.command_on(node, &args).await? {
                Value::Null => continue,
                reply => return Ok(reply),
            }
        }
        Ok(Value::Null)
    }
}

/// `SCAN cursor [options]` across primaries, one primary per step (moving on at once past
/// primaries whose part of the scan turns out empty).
async fn scan(client: &Client, mut args: Vec<Bytes>) -> Result<Value, Error> {
    {
        let Some(cursor) = scan::parse(&args[1]) else {
            return Ok(error_value("ERR invalid cursor"));
        };
        let nodes = primaries(&client.map());
        if nodes.is_empty() {
            return Err(no_nodes());
        }
        let (mut index, mut node_cursor) = scan::decode(cursor);
        loop {
            let Some(node) = nodes.get(index) else {
                // A cursor past the last primary (the map shrank): the scan is over.
                return Ok(scan_reply(0, Vec::new()));
            };
            args[1] = Bytes::from(node_cursor.to_string());
            let (node_next, keys) = match client.command_on(node, &args).await? {
                Value::Array(parts) => match <[Value; 2]>::try_from(parts) {
                    Ok([Value::Bulk(next), Value::Array(keys) | Value::Set(keys)]) => {
                        match scan::parse(&next) {
                            Some(next) => (next, keys),
                            None => return Err(unexpected("SCAN", &Value::Bulk(next))),
                        }
                    }
                    Ok(parts) => return Err(unexpected("SCAN", &Value::Array(parts.into()))),
                    Err(parts) => return Err(unexpected("SCAN", &Value::Array(parts))),
                },
                reply @ (Value::Error(_) | Value::BulkError(_)) => return Ok(reply),
                other => return Err(unexpected("SCAN", &other)),
            };
            let Some(next) = scan::next(index, node_next, nodes.len()) else {
                return Ok(error_value(&format!(
                    "ERR the cursor of {node} ({node_next}) does not fit a cluster-wide cursor"
                )));
            };
            if !keys.is_empty() || next == 0 || node_next != 0 {
                return Ok(scan_reply(next, keys));
            }
            (index, node_cursor) = scan::decode(next);
        }
    }
}

fn scan_reply(cursor: u64, keys: Vec<Value>) -> Value {
    Value::Array(vec![
        Value::Bulk(cursor.to_string().into_bytes()),
        Value::Array(keys),
    ])
}

/// The `keys` and `expires` of an `INFO keyspace` text's `db0` line (0 and 0 without one).
fn parse_db0(text: &str) -> (u64, u64) {
    let Some(line) = text.lines().find_map(|l| l.trim().strip_prefix("db0:")) else {
        return (0, 0);
    };
    let field = |name: &str| {
        line.split(',')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("keys"), field("expires"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lines_are_read() {
        let text = "# Keyspace\r\ndb0:keys=12,expires=3,avg_ttl=100\r\n";
        assert_eq!(parse_db0(text), (12, 3));
        assert_eq!(parse_db0("# Keyspace\r\n"), (0, 0));
    }

    #[test]
    fn first_errors_are_found() {
        let replies = [Value::Int(1), error_value("ERR a"), error_value("ERR b")];
        assert_eq!(first_error(&replies), Some(error_value("ERR a")));
        assert_eq!(first_error(&replies[..1]), None);
    }
}
