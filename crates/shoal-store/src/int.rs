//! Integers as Redis reads them from strings (`string2ll`), for the `INCR` family.

/// Whether `s` is a 64-bit integer in canonical form (what Redis's `string2ll` accepts): an
/// optional `-`, no `+`, no leading zeros, no spaces, `-0` excluded.
pub fn is_canonical_i64(s: &[u8]) -> bool {
    parse_i64(s).is_some()
}

/// Parses a canonical 64-bit integer as Redis's `string2ll` does (see [`is_canonical_i64`]).
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if value > i64::MAX as u64 + 1 {
            None
        } else {
            Some((value as i64).wrapping_neg())
        }
    } else {
        i64::try_from(value).ok()
    }
}
