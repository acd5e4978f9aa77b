//! Commands over the whole keyspace, answered by asking the primaries (or every node) with
//! [`Client::command_on`] and merging their replies:
//!
//! | command | how |
//! | --- | --- |
//! | `DBSIZE` | every primary's count, summed |
//! | `KEYS pattern` | every primary's keys, concatenated in shard order |
//! | `SCAN cursor [MATCH] [COUNT] [TYPE]` | one primary at a time; see [`crate::scan`] for the cursor |
//! | `FLUSHALL`, `FLUSHDB` | every primary; `OK` once all say it |
//! | `RANDOMKEY` | primaries in random order until one has a key |
//! | `CONFIG SET`, `CONFIG RESETSTAT`, `SLOWLOG RESET` | every node of the map; `OK` once all say it |
//!
//! A node's error reply is passed on as it is (the first one, in shard order); a failure to
//! reach a node fails the command.

use bytes::Bytes;
use futures_util::future::{BoxFuture, join_all};
use rand::seq::SliceRandom as _;
use shoal_client::{Client, ClusterMap, Error, Value};

use crate::scan;
use crate::upstream::{Reply, all_nodes, error_value, primaries};

/// Which nodes a fan-out asks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Nodes {
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

/// Sends `args` to each of `nodes` at once; the replies in the same order, or the first
/// failure. An empty list is an error (no cluster to ask).
pub(crate) async fn on_each(
    client: &Client,
    nodes: &[String],
    args: &[Bytes],
) -> Result<Vec<Value>, Error> {
    if nodes.is_empty() {
        return Err(no_nodes());
    }
    join_all(nodes.iter().map(|node| client.command_on(node, args)))
        .await
        .into_iter()
        .collect()
}

/// The first error reply among `replies`, if any.
fn first_error(replies: &[Value]) -> Option<Value> {
    replies
        .iter()
        .find(|v| matches!(v, Value::Error(_) | Value::BulkError(_)))
        .cloned()
}

/// `DBSIZE`: the sum over every primary.
pub(crate) fn dbsize(client: Client, args: Vec<Bytes>) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
        let replies = on_each(&client, &primaries(&client.map()), &args).await?;
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
    })
}

/// `KEYS pattern`: every primary's matches.
pub(crate) fn keys(client: Client, args: Vec<Bytes>) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
        let replies = on_each(&client, &primaries(&client.map()), &args).await?;
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
    })
}

/// A command every one of `nodes` must answer `OK` to (`FLUSHALL`, `CONFIG SET`, ...).
pub(crate) fn all_ok(client: Client, args: Vec<Bytes>, nodes: Nodes) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
        let replies = on_each(&client, &nodes.of(&client.map()), &args).await?;
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
    })
}

/// `RANDOMKEY`: primaries in random order until one has a key; nil if none has.
pub(crate) fn randomkey(client: Client, args: Vec<Bytes>) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
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
    })
}

/// `SCAN cursor [options]` across primaries, one primary per step (moving on at once past
/// primaries whose part of the scan turns out empty).
pub(crate) fn scan(client: Client, mut args: Vec<Bytes>) -> BoxFuture<'static, Reply> {
    Box::pin(async move {
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
                    "ERR proxy: the cursor of {node} ({node_next}) does not fit a proxy cursor"
                )));
            };
            if !keys.is_empty() || next == 0 || node_next != 0 {
                return Ok(scan_reply(next, keys));
            }
            (index, node_cursor) = scan::decode(next);
        }
    })
}

fn scan_reply(cursor: u64, keys: Vec<Value>) -> Value {
    Value::Array(vec![
        Value::Bulk(cursor.to_string().into_bytes()),
        Value::Array(keys),
    ])
}

/// Sums `db0:keys=..,expires=..` over every primary's `INFO keyspace`; `None` if a node could
/// not be asked.
pub(crate) async fn keyspace(client: &Client) -> Option<(u64, u64)> {
    let args = [Bytes::from_static(b"INFO"), Bytes::from_static(b"keyspace")];
    let replies = on_each(client, &primaries(&client.map()), &args)
        .await
        .ok()?;
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
