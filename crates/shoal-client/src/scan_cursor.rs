//! `SCAN` cursors across primaries (a cluster-wide `SCAN`, see `cluster_wide`).
//!
//! A proxy cursor is a node's cursor with the index of the primary it belongs to in its high
//! bits: `cursor = index << 52 | node_cursor`, where `index` is the primary's position among
//! the map's primaries in shard-id order (at most 4096 of them) and `node_cursor` is what that
//! node's `SCAN` returned (Shoal's node cursors use fewer than 52 bits). Cursor 0 starts at
//! primary 0; when a primary's scan ends, the proxy goes on at the next primary's cursor 0;
//! after the last primary the proxy answers 0. So a full iteration reports every key of a stable
//! cluster, each from its owner, with the node's guarantees (every key present for the whole
//! scan is reported). If shards are added or removed during a scan, indices shift and keys may
//! be missed or repeated, as in Redis Cluster when slots move.

/// Bits of a proxy cursor that hold the primary's index.
pub(crate) const INDEX_BITS: u32 = 12;
/// Bits of a proxy cursor that hold the node's cursor.
pub(crate) const NODE_BITS: u32 = u64::BITS - INDEX_BITS;
const NODE_MASK: u64 = (1 << NODE_BITS) - 1;

/// The primary index and node cursor a proxy cursor stands for.
pub(crate) fn decode(cursor: u64) -> (usize, u64) {
    ((cursor >> NODE_BITS) as usize, cursor & NODE_MASK)
}

/// A cursor as a client or a node writes it: an unsigned decimal, digits only, no overflow.
pub(crate) fn parse(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() {
        return None;
    }
    arg.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The proxy cursor for `node_cursor` at primary `index`, if both fit.
pub(crate) fn encode(index: usize, node_cursor: u64) -> Option<u64> {
    if index >= 1 << INDEX_BITS || node_cursor > NODE_MASK {
        return None;
    }
    Some(((index as u64) << NODE_BITS) | node_cursor)
}

/// The proxy cursor to answer after primary `index` (of `primaries`) answered `node_next`:
/// the same primary while its scan goes on, else the next primary's start, else 0 (done).
pub(crate) fn next(index: usize, node_next: u64, primaries: usize) -> Option<u64> {
    if node_next != 0 {
        encode(index, node_next)
    } else if index + 1 >= primaries {
        Some(0)
    } else {
        encode(index + 1, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_as_unsigned_decimals() {
        assert_eq!(parse(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse(b"18446744073709551616"), None);
        assert_eq!(parse(b"-1"), None);
        assert_eq!(parse(b""), None);
    }

    #[test]
    fn cursors_round_trip() {
        for (index, node) in [(0, 0), (0, 17), (2, 5 << 32 | 99), (4095, NODE_MASK)] {
            let cursor = encode(index, node).unwrap();
            assert_eq!(decode(cursor), (index, node));
        }
        assert_eq!(encode(4096, 0), None);
        assert_eq!(encode(0, 1 << NODE_BITS), None);
        assert_eq!(decode(0), (0, 0));
    }

    #[test]
    fn scans_walk_primaries_in_order_and_end_with_zero() {
        assert_eq!(next(0, 7, 3), encode(0, 7));
        let second = next(0, 0, 3).unwrap();
        assert_ne!(second, 0);
        assert_eq!(decode(second), (1, 0));
        assert_eq!(next(2, 0, 3), Some(0));
        assert_eq!(next(0, 0, 1), Some(0));
    }
}
