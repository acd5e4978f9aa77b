//! Property tests: the bit functions against a plain model, a vector of bits read one at a
//! time, with Redis 7.0's range rules written out index by index.

use proptest::prelude::*;

use super::field::{self, FieldType};
use super::op::{self, BitOp};
use super::range::Unit;
use super::{bit_at, count, pos, set_bit};

/// The model: the string's bits, first byte's top bit first.
fn model(bytes: &[u8]) -> Vec<bool> {
    (0..bytes.len() * 8)
        .map(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
        .collect()
}

/// Whether bit `i` lies in `start..=end` (in `unit`, negative from the end, the end capped at
/// the last index) of a string of `len` bytes, as Redis 7.0 resolves the range.
fn in_range(i: usize, len: usize, start: i64, end: i64, unit: Unit) -> bool {
    let (index, total) = match unit {
        Unit::Byte => ((i / 8) as i128, len as i128),
        Unit::Bit => (i as i128, len as i128 * 8),
    };
    let (mut start, mut end) = (i128::from(start), i128::from(end));
    if start < 0 {
        start = (total + start).max(0);
    }
    if end < 0 {
        end = (total + end).max(0);
    }
    end = end.min(total - 1);
    start <= index && index <= end
}

/// Strings with long runs of zeros and ones, as bitmaps have.
fn bitmap() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![3 => Just(0x00u8), 3 => Just(0xFFu8), 4 => any::<u8>()],
        0..80,
    )
}

fn index() -> impl Strategy<Value = i64> {
    prop_oneof![8 => -700i64..700, 1 => Just(i64::MIN), 1 => Just(i64::MAX)]
}

fn unit() -> impl Strategy<Value = Unit> {
    prop_oneof![Just(Unit::Byte), Just(Unit::Bit)]
}

fn bit_op() -> impl Strategy<Value = BitOp> {
    prop_oneof![
        Just(BitOp::And),
        Just(BitOp::Or),
        Just(BitOp::Xor),
        Just(BitOp::Not)
    ]
}

fn field_type() -> impl Strategy<Value = FieldType> {
    prop_oneof![
        (1u32..=64).prop_map(|bits| FieldType { signed: true, bits }),
        (1u32..=63).prop_map(|bits| FieldType {
            signed: false,
            bits
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn bitcount_counts_the_set_bits_of_the_range(
        bytes in bitmap(),
        range in prop::option::of((index(), index(), unit())),
    ) {
        let bits = model(&bytes);
        let expected = match range {
            None => bits.iter().filter(|&&b| b).count(),
            Some((start, end, _)) if start < 0 && end < 0 && start > end => 0,
            Some((start, end, unit)) => (0..bits.len())
                .filter(|&i| bits[i] && in_range(i, bytes.len(), start, end, unit))
                .count(),
        };
        prop_assert_eq!(count::bitcount(&bytes, range), expected as u64);
    }

    #[test]
    fn bitpos_finds_the_first_such_bit_of_the_range(
        bytes in bitmap(),
        bit: bool,
        start in index(),
        end in prop::option::of(index()),
        unit in unit(),
    ) {
        let bits = model(&bytes);
        let unit = if end.is_none() { Unit::Byte } else { unit };
        let range: Vec<usize> = (0..bits.len())
            .filter(|&i| in_range(i, bytes.len(), start, end.unwrap_or(-1), unit))
            .collect();
        let expected = match range.iter().find(|&&i| bits[i] == bit) {
            Some(&i) => i as i64,
            // Past the string, with no end given, every bit is clear.
            None if !bit && end.is_none() && !range.is_empty() => *range.last().unwrap() as i64 + 1,
            None => -1,
        };
        prop_assert_eq!(pos::bitpos(&bytes, bit, start, end, unit), expected);
    }

    #[test]
    fn bitop_combines_bit_by_bit(
        op in bit_op(),
        sources in prop::collection::vec(prop::option::of(bitmap()), 1..5),
    ) {
        let sources = if op == BitOp::Not { &sources[..1] } else { &sources[..] };
        let views: Vec<Option<&[u8]>> = sources.iter().map(|s| s.as_deref()).collect();
        let models: Vec<Vec<bool>> = views.iter().map(|s| model(s.unwrap_or_default())).collect();
        let len = models.iter().map(Vec::len).max().unwrap_or(0);
        let bit = |m: &Vec<bool>, i: usize| m.get(i).copied().unwrap_or(false);
        let expected: Vec<bool> = (0..len)
            .map(|i| {
                let mut each = models.iter().map(|m| bit(m, i));
                match op {
                    BitOp::And => each.all(|b| b),
                    BitOp::Or => each.any(|b| b),
                    BitOp::Xor => each.filter(|&b| b).count() % 2 == 1,
                    BitOp::Not => !bit(&models[0], i),
                }
            })
            .collect();
        let mut out = vec![0xAA; 3];
        op::apply(op, &views, &mut out);
        prop_assert_eq!(model(&out), expected);
    }

    #[test]
    fn single_bits_read_and_write_one_bit(bytes in bitmap(), offset in 0u64..700, on: bool) {
        let mut bits = model(&bytes);
        prop_assert_eq!(bit_at(&bytes, offset), bits.get(offset as usize) == Some(&true));
        if (offset as usize) < bits.len() {
            let mut bytes = bytes;
            set_bit(&mut bytes, offset, on);
            bits[offset as usize] = on;
            prop_assert_eq!(model(&bytes), bits);
        }
    }

    #[test]
    fn fields_read_and_write_their_bits(
        bytes in bitmap(),
        offset in 0u64..700,
        ty in field_type(),
        value: i64,
    ) {
        let bits = model(&bytes);
        let width = ty.bits as usize;
        let at = |i: usize| bits.get(offset as usize + i).copied().unwrap_or(false);
        let raw = (0..width).fold(0u64, |acc, i| acc << 1 | u64::from(at(i)));
        let expected = if ty.signed && width < 64 && raw >> (width - 1) == 1 {
            (raw | (u64::MAX << width)) as i64
        } else {
            raw as i64
        };
        prop_assert_eq!(field::get(&bytes, offset, ty), expected);

        let mut grown = bytes.clone();
        grown.resize(grown.len().max((offset as usize + width).div_ceil(8)), 0);
        field::put(&mut grown, offset, ty, value);
        let mut want = model(&grown);
        let old = model(&{
            let mut b = bytes.clone();
            b.resize(grown.len(), 0);
            b
        });
        for i in 0..want.len() {
            let inside = (offset as usize..offset as usize + width).contains(&i);
            if !inside {
                prop_assert_eq!(want[i], old[i], "bit {} outside the field changed", i);
            } else {
                want[i] = (value as u64) >> (offset as usize + width - 1 - i) & 1 == 1;
            }
        }
        prop_assert_eq!(model(&grown), want);
    }
}
