//! Counting set bits (`BITCOUNT`).

use super::range::{self, Unit};

/// `BITCOUNT`'s answer for a string and a range (`None`: the whole string), as Redis 7.0
/// gives it: an inverted range of negative indexes counts nothing.
pub(crate) fn bitcount(bytes: &[u8], range: Option<(i64, i64, Unit)>) -> u64 {
    let (start, end, unit) = range.unwrap_or((0, -1, Unit::Byte));
    if start < 0 && end < 0 && start > end {
        return 0;
    }
    range::resolve(bytes.len(), start, end, unit)
        .map_or(0, |(first, last)| count_ones(bytes, first, last))
}

/// The number of set bits in `bytes`.
pub(crate) fn popcount(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut total = 0u64;
    for word in &mut words {
        let word: [u8; 8] = word.try_into().expect("chunks of 8 bytes");
        total += u64::from(u64::from_ne_bytes(word).count_ones());
    }
    total
        + words
            .remainder()
            .iter()
            .map(|b| u64::from(b.count_ones()))
            .sum::<u64>()
}

/// The number of set bits among bits `first..=last` of `bytes` (which must hold `last`).
pub(crate) fn count_ones(bytes: &[u8], first: u64, last: u64) -> u64 {
    let (first_byte, last_byte) = ((first / 8) as usize, (last / 8) as usize);
    let whole = popcount(&bytes[first_byte..=last_byte]);
    // Take back the bits of the end bytes that lie outside the range.
    let before = bytes[first_byte] & !(0xFF >> (first % 8));
    let after = bytes[last_byte] & !(0xFF << (7 - last % 8));
    whole - u64::from(before.count_ones()) - u64::from(after.count_ones())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn popcount_counts_every_byte() {
        assert_eq!(popcount(b""), 0);
        assert_eq!(popcount(b"foobar"), 26);
        let long: Vec<u8> = (0..=255).collect();
        assert_eq!(popcount(&long), 1024);
    }

    #[test]
    fn ranges_cut_their_end_bytes() {
        let bytes = [0xFF, 0xFF, 0x0F];
        assert_eq!(count_ones(&bytes, 0, 23), 20);
        assert_eq!(count_ones(&bytes, 3, 3), 1);
        assert_eq!(count_ones(&bytes, 3, 12), 10);
        assert_eq!(count_ones(&bytes, 16, 19), 0);
        assert_eq!(count_ones(&bytes, 19, 20), 1);
        assert_eq!(count_ones(b"foobar", 5, 30), 17);
    }
}
