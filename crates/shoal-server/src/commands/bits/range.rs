//! The ranges of `BITCOUNT` and `BITPOS`: `start` and `end` in bytes or in bits, a negative
//! index counting from the end, resolved as Redis 7.0 resolves them.

/// What a range's indexes count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// `BYTE` (the default).
    Byte,
    /// `BIT`.
    Bit,
}

/// The bits, `first..=last` (absolute positions), that `start..=end` in `unit` covers in a
/// string of `len` bytes: negative indexes count from the end and stop at the start, the
/// end stops at the last bit or byte. `None` when nothing is left.
pub(crate) fn resolve(len: usize, start: i64, end: i64, unit: Unit) -> Option<(u64, u64)> {
    let total = match unit {
        Unit::Byte => len as i64,
        Unit::Bit => len as i64 * 8,
    };
    let from_end = |i: i64| if i < 0 { (total + i).max(0) } else { i };
    let start = from_end(start);
    let end = from_end(end).min(total - 1);
    if start > end {
        return None;
    }
    let (start, end) = (start as u64, end as u64);
    Some(match unit {
        Unit::Byte => (start * 8, end * 8 + 7),
        Unit::Bit => (start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Unit::{Bit, Byte};

    #[test]
    fn byte_ranges_cover_whole_bytes() {
        assert_eq!(resolve(6, 0, -1, Byte), Some((0, 47)));
        assert_eq!(resolve(6, 1, 1, Byte), Some((8, 15)));
        assert_eq!(resolve(6, -2, -1, Byte), Some((32, 47)));
        assert_eq!(resolve(6, -100, 100, Byte), Some((0, 47)));
        assert_eq!(resolve(6, 4, 2, Byte), None);
        assert_eq!(resolve(6, 6, 10, Byte), None);
        assert_eq!(
            resolve(6, -100, -200, Byte),
            Some((0, 7)),
            "both stop at the start"
        );
        assert_eq!(resolve(0, 0, -1, Byte), None);
        assert_eq!(resolve(0, 0, 0, Byte), None);
    }

    #[test]
    fn bit_ranges_count_bits() {
        assert_eq!(resolve(2, 5, 30, Bit), Some((5, 15)));
        assert_eq!(resolve(2, -3, -1, Bit), Some((13, 15)));
        assert_eq!(resolve(2, 3, 3, Bit), Some((3, 3)));
        assert_eq!(resolve(2, 16, 20, Bit), None);
        assert_eq!(resolve(0, 0, -1, Bit), None);
    }

    #[test]
    fn extreme_indexes_do_not_overflow() {
        assert_eq!(
            resolve(1 << 29, i64::MIN, i64::MAX, Bit),
            Some((0, (1 << 32) - 1))
        );
        assert_eq!(resolve(3, i64::MAX, i64::MIN, Byte), None);
    }
}
