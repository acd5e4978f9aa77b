//! Bit offset arguments, read as Redis's `getBitOffsetFromArgument` reads them.

use shoal_proto::args::parse_i64;

/// The offset `arg` names: a non-negative integer whose byte (offset / 8) is below
/// `max_bulk_len` (`proto-max-bulk-len`, which so bounds how far a write can grow a string).
/// With `field_bits` (`BITFIELD`'s type width), `#N` is also accepted and means N fields of
/// that width. `None` for anything else.
pub(crate) fn parse(arg: &[u8], field_bits: Option<u32>, max_bulk_len: usize) -> Option<u64> {
    let (digits, scale) = match (arg.split_first(), field_bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, i64::from(bits)),
        _ => (arg, 1),
    };
    // Redis multiplies in a C `long long` and checks the product: keep its wrap-around.
    let offset = u64::try_from(parse_i64(digits)?.wrapping_mul(scale)).ok()?;
    (offset >> 3 < max_bulk_len as u64).then_some(offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 512 * 1024 * 1024;

    #[test]
    fn offsets_stay_below_the_bulk_limit() {
        assert_eq!(parse(b"0", None, MAX), Some(0));
        assert_eq!(parse(b"4294967295", None, MAX), Some(4_294_967_295));
        assert_eq!(parse(b"4294967296", None, MAX), None);
        assert_eq!(parse(b"8388607", None, 1024 * 1024), Some(8_388_607));
        assert_eq!(parse(b"8388608", None, 1024 * 1024), None);
        for bad in [
            &b"-1"[..],
            b"",
            b"1.5",
            b"+1",
            b"01",
            b"#1",
            b" 1",
            b"9223372036854775808",
        ] {
            assert_eq!(parse(bad, None, MAX), None, "{bad:?}");
        }
    }

    #[test]
    fn hash_offsets_count_fields() {
        assert_eq!(parse(b"#3", Some(8), MAX), Some(24));
        assert_eq!(parse(b"#0", Some(64), MAX), Some(0));
        assert_eq!(parse(b"3", Some(8), MAX), Some(3));
        assert_eq!(parse(b"#-1", Some(8), MAX), None);
        assert_eq!(parse(b"#", Some(8), MAX), None);
        assert_eq!(parse(b"##1", Some(8), MAX), None);
        // The product wraps as Redis's does, and is then checked.
        assert_eq!(parse(b"#9223372036854775807", Some(2), MAX), None);
        assert_eq!(parse(b"#4611686018427387904", Some(4), MAX), Some(0));
    }
}
