//! Integers of 1 to 64 bits at any bit offset (`BITFIELD`): reading, writing, and the
//! arithmetic of `SET` and `INCRBY` under each `OVERFLOW` mode, as Redis 7.0 does them.

use shoal_proto::args::{c_str, parse_i64};

use crate::commands::is_named;

/// A field's type: `i1`..`i64` (signed) or `u1`..`u63` (unsigned; `u64` is refused, as its
/// values could not all be replied as integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldType {
    /// `i` rather than `u`.
    pub signed: bool,
    /// The width in bits.
    pub bits: u32,
}

impl FieldType {
    /// The type `arg` names (Redis reads the width as a C string: up to a NUL byte).
    pub(crate) fn parse(arg: &[u8]) -> Option<FieldType> {
        let (&sign, width) = arg.split_first()?;
        let signed = match sign {
            b'i' => true,
            b'u' => false,
            _ => return None,
        };
        let bits = parse_i64(c_str(width))?;
        let widest = if signed { 64 } else { 63 };
        (1..=widest).contains(&bits).then_some(FieldType {
            signed,
            bits: bits as u32,
        })
    }

    /// The largest value the type holds.
    fn max(self) -> i128 {
        if self.signed {
            (1i128 << (self.bits - 1)) - 1
        } else {
            (1i128 << self.bits) - 1
        }
    }

    /// The smallest value the type holds.
    fn min(self) -> i128 {
        if self.signed {
            -(1i128 << (self.bits - 1))
        } else {
            0
        }
    }

    /// `value` cut to the type's width, as two's complement wraps it.
    fn wrap(self, value: i128) -> i64 {
        let unused = 128 - self.bits;
        if self.signed {
            ((value << unused) >> unused) as i64
        } else {
            (((value as u128) << unused) >> unused) as i64
        }
    }
}

/// What `SET` and `INCRBY` do with a result the type cannot hold (`OVERFLOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overflow {
    /// Wrap around (the default).
    Wrap,
    /// Stop at the type's minimum or maximum.
    Sat,
    /// Do nothing, and reply a null.
    Fail,
}

impl Overflow {
    /// The mode `name` names (any case, read as a C string).
    pub(crate) fn parse(name: &[u8]) -> Option<Overflow> {
        [
            ("wrap", Overflow::Wrap),
            ("sat", Overflow::Sat),
            ("fail", Overflow::Fail),
        ]
        .into_iter()
        .find_map(|(n, mode)| is_named(name, n).then_some(mode))
    }
}

/// The value to store when `value + increment` is written to a field of type `ty` under
/// `overflow` (`SET` writes `value` with no increment; `INCRBY` adds to the field's value),
/// or `None` when it does not fit and `overflow` is `FAIL`.
///
/// For an unsigned type, a negative `value` is read as its 64-bit two's complement (as
/// Redis casts it), so `SET u8 -1` overflows.
pub(crate) fn step(ty: FieldType, value: i64, increment: i64, overflow: Overflow) -> Option<i64> {
    let value = if ty.signed {
        i128::from(value)
    } else {
        i128::from(value as u64)
    };
    let sum = value + i128::from(increment);
    if (ty.min()..=ty.max()).contains(&sum) {
        return Some(sum as i64);
    }
    match overflow {
        Overflow::Wrap => Some(ty.wrap(sum)),
        Overflow::Sat if sum > ty.max() => Some(ty.max() as i64),
        Overflow::Sat => Some(ty.min() as i64),
        Overflow::Fail => None,
    }
}

/// The at most nine bytes a field of `bits` bits at `offset` spans: where they start, and
/// how many there are.
fn span(offset: u64, bits: u32) -> (u64, usize) {
    (
        offset / 8,
        (offset % 8 + u64::from(bits)).div_ceil(8) as usize,
    )
}

/// The field of type `ty` at bit `offset` of `bytes`; bits past the end read as zero.
pub(crate) fn get(bytes: &[u8], offset: u64, ty: FieldType) -> i64 {
    let (start, len) = span(offset, ty.bits);
    let mut window = [0u8; 16];
    if let Ok(start) = usize::try_from(start)
        && let Some(available) = bytes.get(start..)
    {
        let n = len.min(available.len());
        window[..n].copy_from_slice(&available[..n]);
    }
    let raw = (u128::from_be_bytes(window) << (offset % 8)) >> (128 - ty.bits);
    ty.wrap(raw as i128)
}

/// Writes the low `ty.bits` bits of `value` as the field at bit `offset` of `bytes`, which
/// must hold it.
pub(crate) fn put(bytes: &mut [u8], offset: u64, ty: FieldType, value: i64) {
    let (start, len) = span(offset, ty.bits);
    let target = &mut bytes[start as usize..start as usize + len];
    let mut window = [0u8; 16];
    window[..len].copy_from_slice(target);
    let shift = 128 - (offset % 8) as u32 - ty.bits;
    let mask = (u128::MAX >> (128 - ty.bits)) << shift;
    let word = (u128::from_be_bytes(window) & !mask) | (((value as u64 as u128) << shift) & mask);
    target.copy_from_slice(&word.to_be_bytes()[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(name: &str) -> FieldType {
        FieldType::parse(name.as_bytes()).unwrap()
    }

    #[test]
    fn types_are_i1_to_i64_and_u1_to_u63() {
        assert_eq!(
            ty("i64"),
            FieldType {
                signed: true,
                bits: 64
            }
        );
        assert_eq!(
            ty("u63"),
            FieldType {
                signed: false,
                bits: 63
            }
        );
        assert_eq!(
            ty("u1"),
            FieldType {
                signed: false,
                bits: 1
            }
        );
        assert_eq!(
            ty("i8\0x"),
            FieldType {
                signed: true,
                bits: 8
            }
        );
        for bad in [
            "u64", "i65", "i0", "u0", "I8", "U8", "8", "", "i", "i-1", "i08", "i 8",
        ] {
            assert_eq!(FieldType::parse(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn fields_read_big_endian_at_any_offset() {
        // Redis's example: u5 of value 23 at offset 7 of zeros is 00000001 01110000.
        let mut bytes = [0u8; 2];
        put(&mut bytes, 7, ty("u5"), 23);
        assert_eq!(bytes, [0b0000_0001, 0b0111_0000]);
        assert_eq!(get(&bytes, 7, ty("u5")), 23);
        assert_eq!(get(&bytes, 7, ty("i5")), -9);
        assert_eq!(get(&bytes, 0, ty("u16")), 0x0170);
        assert_eq!(get(&bytes, 12, ty("u8")), 0, "past the end reads zeros");
        assert_eq!(get(&[], u64::MAX - 70, ty("i64")), 0);
    }

    #[test]
    fn sixty_four_bit_fields_span_nine_bytes() {
        let mut bytes = [0xAAu8; 10];
        put(&mut bytes, 5, ty("i64"), -1);
        assert_eq!(bytes[0], 0xAF);
        assert_eq!(&bytes[1..8], &[0xFF; 7]);
        assert_eq!(bytes[8], 0xFA);
        assert_eq!(bytes[9], 0xAA);
        assert_eq!(get(&bytes, 5, ty("i64")), -1);
        put(&mut bytes, 5, ty("i64"), i64::MIN);
        assert_eq!(get(&bytes, 5, ty("i64")), i64::MIN);
        put(&mut bytes, 1, ty("u63"), i64::MAX);
        assert_eq!(get(&bytes, 1, ty("u63")), i64::MAX);
        assert_eq!(bytes[0] & 0x80, 0x80, "the bit before the field is kept");
    }

    #[test]
    fn overflow_modes() {
        use Overflow::{Fail, Sat, Wrap};
        assert_eq!(step(ty("u8"), 250, 10, Wrap), Some(4));
        assert_eq!(step(ty("u8"), 250, 10, Sat), Some(255));
        assert_eq!(step(ty("u8"), 250, 10, Fail), None);
        assert_eq!(step(ty("u8"), 3, -10, Wrap), Some(249));
        assert_eq!(step(ty("u8"), 3, -10, Sat), Some(0));
        assert_eq!(step(ty("i8"), 120, 10, Wrap), Some(-126));
        assert_eq!(step(ty("i8"), 120, 10, Sat), Some(127));
        assert_eq!(step(ty("i8"), -120, -10, Wrap), Some(126));
        assert_eq!(step(ty("i8"), -120, -10, Sat), Some(-128));
        assert_eq!(step(ty("i8"), -120, -10, Fail), None);
        assert_eq!(step(ty("i64"), i64::MAX, 1, Wrap), Some(i64::MIN));
        assert_eq!(step(ty("i64"), i64::MIN, -1, Sat), Some(i64::MIN));
        assert_eq!(step(ty("i64"), i64::MAX, i64::MIN, Fail), Some(-1));
        assert_eq!(step(ty("u63"), i64::MAX, 1, Wrap), Some(0));
        assert_eq!(step(ty("u63"), 0, i64::MIN, Sat), Some(0));
        assert_eq!(step(ty("u1"), 1, 1, Wrap), Some(0));
        assert_eq!(step(ty("i1"), 0, -1, Fail), Some(-1));
        assert_eq!(step(ty("i1"), 0, 1, Fail), None);
        // SET: the value itself, negative ones to unsigned types read as 64-bit.
        assert_eq!(step(ty("u8"), -1, 0, Wrap), Some(255));
        assert_eq!(step(ty("u8"), -1, 0, Sat), Some(255));
        assert_eq!(step(ty("u8"), 256, 0, Wrap), Some(0));
        assert_eq!(step(ty("i8"), 200, 0, Sat), Some(127));
        assert_eq!(step(ty("i8"), 200, 0, Wrap), Some(-56));
        assert_eq!(step(ty("u63"), -1, 0, Sat), Some(i64::MAX));
    }
}
