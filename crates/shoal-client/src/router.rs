//! Where a command goes: its slot (from Redis's key positions), or any node, or, for the
//! multi-key commands the client splits, one sub-command per slot and how to merge their replies.

use std::collections::HashMap;

use bytes::Bytes;
use shoal_cluster::{Slot, key_slot};
use shoal_proto::command_table::{CommandSpec, flags, lookup};
use shoal_proto::reply::Value;

use crate::codec::encode;
use crate::error::Error;

/// How a command is routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// No keys: any node.
    Any,
    /// Every key is in this slot.
    Slot(Slot),
    /// Keys in several slots, and the command can be split by slot.
    Split(Split),
}

/// The multi-key commands the client splits by slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// `MGET`: replies reassembled in key order.
    Mget,
    /// `MSET`: key/value pairs; `OK` when every part is.
    Mset,
    /// `DEL`, `UNLINK`, `EXISTS`, `TOUCH`: the integers summed.
    Sum,
}

/// A command's route, whether it only reads (and so may be retried after a timeout), and its
/// spec, if Shoal knows the command (for the near cache, which looks no further).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Routed {
    pub route: Route,
    pub readonly: bool,
    pub spec: Option<&'static CommandSpec>,
}

/// The spec of `args`' command (a subcommand's when it has one), if Shoal knows it.
fn spec_of<A: AsRef<[u8]>>(args: &[A]) -> Option<&'static CommandSpec> {
    let spec = lookup(args.first()?.as_ref())?;
    if !spec.subcommands.is_empty()
        && let Some(sub) = args.get(1)
        && let Some(sub) = spec.subcommand(sub.as_ref())
    {
        return Some(sub);
    }
    Some(spec)
}

/// Whether `args`' command only reads.
pub(crate) fn readonly<A: AsRef<[u8]>>(args: &[A]) -> bool {
    spec_of(args).is_some_and(|spec| spec.has(flags::READONLY))
}

/// The keys of `args`' command (none for a command Shoal does not know).
pub(crate) fn keys<A: AsRef<[u8]>>(args: &[A]) -> Vec<&[u8]> {
    spec_of(args).map_or_else(Vec::new, |spec| keys_of(spec, args))
}

/// The keys of `args`, a command of `spec`.
pub(crate) fn keys_of<'a, A: AsRef<[u8]>>(spec: &CommandSpec, args: &'a [A]) -> Vec<&'a [u8]> {
    let third = args.get(2).map(AsRef::as_ref);
    spec.key_positions_at(args.len(), third)
        .map_while(|pos| args.get(pos).map(AsRef::as_ref))
        .collect()
}

/// The first key of `args`, a command of `spec`.
pub(crate) fn first_key<'a, A: AsRef<[u8]>>(spec: &CommandSpec, args: &'a [A]) -> Option<&'a [u8]> {
    let third = args.get(2).map(AsRef::as_ref);
    let pos = spec.key_positions_at(args.len(), third).next()?;
    args.get(pos).map(AsRef::as_ref)
}

fn split_kind(spec: &CommandSpec, argc: usize) -> Option<Split> {
    match spec.name {
        "mget" if argc >= 2 => Some(Split::Mget),
        "mset" if argc >= 3 && argc % 2 == 1 => Some(Split::Mset),
        "del" | "unlink" | "exists" | "touch" if argc >= 2 => Some(Split::Sum),
        _ => None,
    }
}

/// Routes `args` (the command name first).
pub(crate) fn route<A: AsRef<[u8]>>(args: &[A]) -> Result<Routed, Error> {
    if args.is_empty() {
        return Err(Error::Config("empty command".into()));
    }
    let Some(spec) = spec_of(args) else {
        // Unknown here: let a node answer (it will say what is wrong).
        return Ok(Routed {
            route: Route::Any,
            readonly: false,
            spec: None,
        });
    };
    let readonly = spec.has(flags::READONLY);
    let mut slot = None;
    let mut cross = false;
    let third = args.get(2).map(AsRef::as_ref);
    for pos in spec.key_positions_at(args.len(), third) {
        let Some(key) = args.get(pos) else { break };
        let s = key_slot(key.as_ref());
        match slot {
            None => slot = Some(s),
            Some(first) if first != s => {
                cross = true;
                break;
            }
            Some(_) => {}
        }
    }
    let route = match (slot, cross) {
        (None, _) => Route::Any,
        (Some(slot), false) => Route::Slot(slot),
        (Some(_), true) => match split_kind(spec, args.len()) {
            Some(split) => Route::Split(split),
            None => return Err(Error::CrossSlot),
        },
    };
    Ok(Routed {
        route,
        readonly,
        spec: Some(spec),
    })
}

/// The slot every key of a command (`args`, the name first) hashes to, as a transaction
/// needs it: `None` for a command without keys, [`Error::CrossSlot`] for keys in several
/// slots (also for `MGET` and the other commands [`Client::command`](crate::Client::command)
/// splits: a transaction cannot split them), [`Error::Config`] for an empty command.
pub fn command_slot<A: AsRef<[u8]>>(args: &[A]) -> Result<Option<Slot>, Error> {
    match route(args)?.route {
        Route::Any => Ok(None),
        Route::Slot(slot) => Ok(Some(slot)),
        Route::Split(_) => Err(Error::CrossSlot),
    }
}

/// One part of a split command: the keys of one slot.
#[derive(Debug)]
pub(crate) struct Part {
    /// Their slot.
    pub slot: Slot,
    /// Their indices in the command's key order.
    pub keys: Vec<usize>,
    /// The sub-command's frame.
    pub frame: Bytes,
}

/// Splits `args` by slot, in the order slots first appear. Returns the parts and the number
/// of keys.
pub(crate) fn split<A: AsRef<[u8]>>(args: &[A], kind: Split) -> (Vec<Part>, usize) {
    let (step, first) = (if kind == Split::Mset { 2 } else { 1 }, 1);
    let nkeys = (args.len() - first) / step;
    let mut parts: Vec<(Slot, Vec<usize>)> = Vec::new();
    let mut by_slot: HashMap<Slot, usize> = HashMap::new();
    for k in 0..nkeys {
        let slot = key_slot(args[first + k * step].as_ref());
        let i = *by_slot.entry(slot).or_insert_with(|| {
            parts.push((slot, Vec::new()));
            parts.len() - 1
        });
        parts[i].1.push(k);
    }
    let name = args[0].as_ref();
    let parts = parts
        .into_iter()
        .map(|(slot, keys)| {
            let mut sub: Vec<&[u8]> = Vec::with_capacity(1 + keys.len() * step);
            sub.push(name);
            for &k in &keys {
                let at = first + k * step;
                sub.extend(args[at..at + step].iter().map(AsRef::as_ref));
            }
            Part {
                slot,
                frame: encode(&sub),
                keys,
            }
        })
        .collect();
    (parts, nkeys)
}

/// Merges the parts' replies into the reply the unsplit command would have had. The first
/// error reply of any part is the reply.
pub(crate) fn merge(
    kind: Split,
    parts: &[Part],
    nkeys: usize,
    replies: Vec<Value>,
) -> Result<Value, String> {
    if let Some(err) = replies
        .iter()
        .find(|r| matches!(r, Value::Error(_) | Value::BulkError(_)))
    {
        return Ok(err.clone());
    }
    match kind {
        Split::Mget => {
            let mut out = vec![Value::Null; nkeys];
            for (part, reply) in parts.iter().zip(replies) {
                let Value::Array(items) = reply else {
                    return Err(format!("MGET answered {reply:?}"));
                };
                if items.len() != part.keys.len() {
                    return Err(format!(
                        "MGET of {} keys answered {} values",
                        part.keys.len(),
                        items.len()
                    ));
                }
                for (&k, item) in part.keys.iter().zip(items) {
                    out[k] = item;
                }
            }
            Ok(Value::Array(out))
        }
        Split::Mset => match replies
            .iter()
            .find(|r| !matches!(r, Value::Simple(s) if s == b"OK"))
        {
            Some(other) => Err(format!("MSET answered {other:?}")),
            None => Ok(Value::Simple(b"OK".to_vec())),
        },
        Split::Sum => {
            let mut sum: i64 = 0;
            for reply in replies {
                match reply {
                    Value::Int(n) => sum = sum.saturating_add(n),
                    other => return Err(format!("expected an integer, got {other:?}")),
                }
            }
            Ok(Value::Int(sum))
        }
    }
}

/// A redirection a node answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// `-MOVED slot host:port`: the slot lives there now.
    Moved(Slot, String),
    /// `-ASK slot host:port`: this once, ask there (after `ASKING`).
    Ask(Slot, String),
}

/// Parses `MOVED`/`ASK` error lines. An address without a host (`:6380`) means the host of
/// `from`, the node that answered.
pub(crate) fn parse_redirect(line: &[u8], from: &str) -> Option<Redirect> {
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_ascii_whitespace();
    let kind = words.next()?;
    let slot: Slot = words.next()?.parse().ok()?;
    if slot as usize >= shoal_cluster::SLOTS {
        return None;
    }
    let addr = words.next()?;
    let addr = if addr.starts_with(':') {
        let host = from.rsplit_once(':').map_or(from, |(h, _)| h);
        format!("{host}{addr}")
    } else {
        addr.to_string()
    };
    match kind {
        "MOVED" => Some(Redirect::Moved(slot, addr)),
        "ASK" => Some(Redirect::Ask(slot, addr)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Result<Routed, Error> {
        route(args)
    }

    #[test]
    fn single_key_commands_route_by_slot() {
        let slot = key_slot(b"foo");
        assert_eq!(r(&["GET", "foo"]).unwrap().route, Route::Slot(slot));
        assert!(r(&["get", "foo"]).unwrap().readonly);
        assert!(!r(&["SET", "foo", "1"]).unwrap().readonly);
        assert_eq!(
            r(&["set", "foo", "1", "PX", "10"]).unwrap().route,
            Route::Slot(slot)
        );
        assert_eq!(
            r(&["MEMORY", "USAGE", "foo"]).unwrap().route,
            Route::Slot(slot)
        );
        assert_eq!(r(&["PING"]).unwrap().route, Route::Any);
        assert_eq!(
            r(&["GET"]).unwrap().route,
            Route::Any,
            "arity errors come from a node"
        );
        assert_eq!(r(&["NOSUCHCMD", "x"]).unwrap().route, Route::Any);
        assert!(r(&[]).is_err());
    }

    #[test]
    fn hash_tags_keep_multi_key_commands_whole() {
        let slot = key_slot(b"user1");
        assert_eq!(
            r(&["MGET", "{user1}.a", "{user1}.b"]).unwrap().route,
            Route::Slot(slot)
        );
        assert_eq!(
            r(&["RENAME", "{user1}.a", "{user1}.b"]).unwrap().route,
            Route::Slot(slot)
        );
    }

    #[test]
    fn cross_slot_commands_split_or_fail() {
        assert_ne!(key_slot(b"a"), key_slot(b"b"));
        assert_eq!(
            r(&["MGET", "a", "b"]).unwrap().route,
            Route::Split(Split::Mget)
        );
        assert_eq!(
            r(&["MSET", "a", "1", "b", "2"]).unwrap().route,
            Route::Split(Split::Mset)
        );
        for cmd in ["DEL", "unlink", "EXISTS", "touch"] {
            assert_eq!(
                r(&[cmd, "a", "b"]).unwrap().route,
                Route::Split(Split::Sum),
                "{cmd}"
            );
        }
        assert!(matches!(r(&["RENAME", "a", "b"]), Err(Error::CrossSlot)));
        assert!(matches!(
            r(&["MSETNX", "a", "1", "b", "2"]),
            Err(Error::CrossSlot)
        ));
        assert!(
            matches!(r(&["MSET", "a", "1", "b"]), Err(Error::CrossSlot)),
            "a malformed MSET is not split"
        );
    }

    #[test]
    fn splits_group_by_slot_and_merge_in_key_order() {
        let args = ["MGET", "a", "b", "{a}x", "c", "b"];
        let (parts, nkeys) = split(&args, Split::Mget);
        assert_eq!(nkeys, 5);
        let total: usize = parts.iter().map(|p| p.keys.len()).sum();
        assert_eq!(total, 5);
        assert_eq!(parts[0].slot, key_slot(b"a"));
        assert_eq!(parts[0].keys, vec![0, 2]);
        assert_eq!(&parts[0].frame[..], &encode(&["MGET", "a", "{a}x"])[..]);
        let replies: Vec<Value> = parts
            .iter()
            .map(|p| {
                Value::Array(
                    p.keys
                        .iter()
                        .map(|&k| Value::Bulk(args[1 + k].as_bytes().to_vec()))
                        .collect(),
                )
            })
            .collect();
        let merged = merge(Split::Mget, &parts, nkeys, replies).unwrap();
        let expect: Vec<Value> = args[1..]
            .iter()
            .map(|k| Value::Bulk(k.as_bytes().to_vec()))
            .collect();
        assert_eq!(merged, Value::Array(expect));
    }

    #[test]
    fn mset_splits_pairs_and_sums_add_up() {
        let args = ["MSET", "a", "1", "b", "2", "{a}y", "3"];
        let (parts, nkeys) = split(&args, Split::Mset);
        assert_eq!(nkeys, 3);
        assert_eq!(
            &parts[0].frame[..],
            &encode(&["MSET", "a", "1", "{a}y", "3"])[..]
        );
        assert_eq!(&parts[1].frame[..], &encode(&["MSET", "b", "2"])[..]);
        let ok = || Value::Simple(b"OK".to_vec());
        assert_eq!(
            merge(Split::Mset, &parts, 3, vec![ok(), ok()]).unwrap(),
            ok()
        );
        let err = Value::Error(b"OOM command not allowed".to_vec());
        assert_eq!(
            merge(Split::Mset, &parts, 3, vec![ok(), err.clone()]).unwrap(),
            err
        );
        assert_eq!(
            merge(Split::Sum, &parts, 3, vec![Value::Int(2), Value::Int(1)]).unwrap(),
            Value::Int(3)
        );
        assert!(merge(Split::Sum, &parts, 3, vec![Value::Int(2), Value::Null]).is_err());
        assert!(
            merge(
                Split::Mget,
                &parts,
                3,
                vec![Value::Array(vec![]), Value::Null]
            )
            .is_err()
        );
    }

    #[test]
    fn a_command_has_one_slot_or_none() {
        assert_eq!(command_slot(&["GET", "a"]).unwrap(), Some(key_slot(b"a")));
        assert_eq!(command_slot(&["PING"]).unwrap(), None);
        assert!(matches!(
            command_slot(&["MGET", "a", "b"]),
            Err(Error::CrossSlot)
        ));
        assert!(matches!(
            command_slot(&["RENAME", "a", "b"]),
            Err(Error::CrossSlot)
        ));
        let none: [&str; 0] = [];
        assert!(matches!(command_slot(&none), Err(Error::Config(_))));
    }

    #[test]
    fn redirects_parse() {
        assert_eq!(
            parse_redirect(b"MOVED 1234 127.0.0.1:7001", "127.0.0.1:7000"),
            Some(Redirect::Moved(1234, "127.0.0.1:7001".into()))
        );
        assert_eq!(
            parse_redirect(b"ASK 5 :7002", "10.0.0.1:7000"),
            Some(Redirect::Ask(5, "10.0.0.1:7002".into()))
        );
        assert_eq!(parse_redirect(b"MOVED 99999 a:1", "x:1"), None);
        assert_eq!(parse_redirect(b"MOVED x a:1", "x:1"), None);
        assert_eq!(parse_redirect(b"ERR MOVED", "x:1"), None);
        assert_eq!(parse_redirect(b"MOVED 1", "x:1"), None);
        assert_eq!(parse_redirect(&[0xff, 0xfe], "x:1"), None);
    }
}
