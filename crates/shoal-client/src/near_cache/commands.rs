//! Which commands the near cache answers: read-only commands of one key (the key right after
//! the name) whose reply depends on nothing but that key's value, so that the key's
//! invalidation is the only event that can change it. Commands whose reply depends on the
//! time (`TTL`, `PTTL`, `OBJECT IDLETIME`), on randomness (`HRANDFIELD`) or on a cursor
//! (`HSCAN`) are not cached, nor commands with several keys.

use shoal_proto::Protocol;
use shoal_proto::command_table::{CommandSpec, flags};

/// Whether the near cache may answer `spec` with `argc` arguments (the name included) for a
/// client speaking `protocol`. `HGETALL`'s reply is a map in RESP3 and an array in RESP2, so it
/// is cached only for a client that speaks RESP3 (as the tracking connection does).
#[inline]
pub(crate) fn cacheable_spec(spec: &CommandSpec, argc: usize, protocol: Protocol) -> bool {
    let listed = match spec.name {
        "get" | "getrange" | "substr" | "strlen" | "getbit" | "bitcount" | "bitpos" => true,
        "hget" | "hmget" | "hkeys" | "hvals" | "hlen" | "hexists" | "hstrlen" | "type" => true,
        "hgetall" => protocol == Protocol::Resp3,
        _ => false,
    };
    let arity_ok = if spec.arity >= 0 {
        argc == spec.arity as usize
    } else {
        argc >= spec.arity.unsigned_abs() as usize
    };
    listed && argc >= 2 && arity_ok && spec.has(flags::READONLY)
}

/// Whether `args`' command is a flush of the whole keyspace (`FLUSHALL`, `FLUSHDB`).
pub(crate) fn is_flush<A: AsRef<[u8]>>(args: &[A]) -> bool {
    args.first().is_some_and(|name| {
        let name = name.as_ref();
        name.eq_ignore_ascii_case(b"flushall") || name.eq_ignore_ascii_case(b"flushdb")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::command_table::lookup;

    /// The spec of `args`' command if the near cache may answer it for a client speaking
    /// `protocol` (the client has the spec from routing; the tests ask by name).
    fn cacheable<A: AsRef<[u8]>>(args: &[A], protocol: Protocol) -> Option<&'static CommandSpec> {
        let spec = lookup(args.first()?.as_ref())?;
        cacheable_spec(spec, args.len(), protocol).then_some(spec)
    }

    #[test]
    fn only_single_key_reads_that_depend_on_the_value_are_cached() {
        let r2 = Protocol::Resp2;
        assert_eq!(cacheable(&["GET", "k"], r2).map(|s| s.name), Some("get"));
        assert_eq!(cacheable(&["get", "k"], r2).map(|s| s.name), Some("get"));
        assert!(cacheable(&["HGET", "h", "f"], r2).is_some());
        assert!(cacheable(&["HMGET", "h", "a", "b"], r2).is_some());
        assert!(cacheable(&["BITCOUNT", "k", "0", "1", "BYTE"], r2).is_some());
        // Wrong arity: the node answers the error.
        assert!(cacheable(&["GET", "k", "x"], r2).is_none());
        assert!(cacheable(&["GET"], r2).is_none());
        // Time, randomness, several keys, writes.
        for args in [
            &["PTTL", "k"][..],
            &["TTL", "k"],
            &["HRANDFIELD", "h"],
            &["MGET", "a", "b"],
            &["EXISTS", "a"],
            &["GETEX", "k"],
            &["GETDEL", "k"],
            &["SET", "k", "v"],
            &["NOPE", "k"],
        ] {
            assert!(cacheable(args, r2).is_none(), "{args:?}");
        }
        assert!(cacheable(&["HGETALL", "h"], r2).is_none());
        assert!(cacheable(&["HGETALL", "h"], Protocol::Resp3).is_some());
    }

    #[test]
    fn flushes_are_recognised_in_any_case() {
        assert!(is_flush(&["FLUSHALL"]));
        assert!(is_flush(&["flushdb", "ASYNC"]));
        assert!(!is_flush(&["FLUSH"]));
        assert!(!is_flush::<&str>(&[]));
    }
}
