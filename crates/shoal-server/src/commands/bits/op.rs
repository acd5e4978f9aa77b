//! Combining strings bit by bit (`BITOP`).

use crate::commands::is_named;

/// A `BITOP` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BitOp {
    /// `AND`
    And,
    /// `OR`
    Or,
    /// `XOR`
    Xor,
    /// `NOT` (of one string)
    Not,
}

impl BitOp {
    /// The operation `name` names (any case; read as a C string, as Redis's `strcasecmp`).
    pub(crate) fn parse(name: &[u8]) -> Option<BitOp> {
        [
            ("and", BitOp::And),
            ("or", BitOp::Or),
            ("xor", BitOp::Xor),
            ("not", BitOp::Not),
        ]
        .into_iter()
        .find_map(|(n, op)| is_named(name, n).then_some(op))
    }
}

/// Fills `out` (cleared first) with `op` applied to `sources` (`None`: a missing key, read as
/// empty). The result is as long as the longest source; shorter ones read as zero-padded.
/// `NOT` applies to the first source only.
pub(crate) fn apply(op: BitOp, sources: &[Option<&[u8]>], out: &mut Vec<u8>) {
    fn bytes<'a>(source: &Option<&'a [u8]>) -> &'a [u8] {
        source.unwrap_or_default()
    }
    let len = sources.iter().map(|s| bytes(s).len()).max().unwrap_or(0);
    out.clear();
    let Some((first, rest)) = sources.split_first() else {
        return;
    };
    out.extend_from_slice(bytes(first));
    out.resize(len, 0);
    for source in rest.iter().map(bytes) {
        let pairs = out.iter_mut().zip(source);
        match op {
            BitOp::And => {
                pairs.for_each(|(o, b)| *o &= b);
                out[source.len()..].fill(0);
            }
            BitOp::Or => pairs.for_each(|(o, b)| *o |= b),
            BitOp::Xor => pairs.for_each(|(o, b)| *o ^= b),
            BitOp::Not => {}
        }
    }
    if op == BitOp::Not {
        out.iter_mut().for_each(|o| *o = !*o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: BitOp, sources: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = vec![9, 9, 9];
        apply(op, sources, &mut out);
        out
    }

    #[test]
    fn names_are_read_as_redis_reads_them() {
        assert_eq!(BitOp::parse(b"and"), Some(BitOp::And));
        assert_eq!(BitOp::parse(b"Or"), Some(BitOp::Or));
        assert_eq!(BitOp::parse(b"XOR"), Some(BitOp::Xor));
        assert_eq!(BitOp::parse(b"not\0junk"), Some(BitOp::Not));
        assert_eq!(BitOp::parse(b"nand"), None);
        assert_eq!(BitOp::parse(b""), None);
    }

    #[test]
    fn shorter_and_missing_sources_read_as_zeros() {
        let (a, b): (&[u8], &[u8]) = (&[0xF0, 0xFF], &[0x3C]);
        assert_eq!(run(BitOp::And, &[Some(a), Some(b)]), [0x30, 0x00]);
        assert_eq!(run(BitOp::Or, &[Some(a), Some(b), None]), [0xFC, 0xFF]);
        assert_eq!(run(BitOp::Xor, &[Some(b), Some(a)]), [0xCC, 0xFF]);
        assert_eq!(run(BitOp::And, &[Some(a), None]), [0, 0]);
        assert_eq!(run(BitOp::Not, &[Some(a)]), [0x0F, 0x00]);
        assert_eq!(run(BitOp::Not, &[None]), Vec::<u8>::new());
        assert_eq!(run(BitOp::Or, &[None, None]), Vec::<u8>::new());
    }
}
