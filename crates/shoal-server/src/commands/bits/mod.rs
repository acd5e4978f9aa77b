//! The bit logic of the bitmap commands, apart from the commands: pure functions over byte
//! strings, with Redis's bit order (bit 0 is the most significant bit of the first byte).
//!
//! | module | job |
//! | --- | --- |
//! | `offset` | reading a bit offset argument (`SETBIT`, `GETBIT`, `BITFIELD`'s `#N` too) |
//! | `range` | resolving `BITCOUNT`/`BITPOS` ranges (`BYTE`/`BIT`, negative indexes) |
//! | `count` | counting the set bits of a range (`BITCOUNT`) |
//! | `pos` | finding the first set or clear bit of a range (`BITPOS`) |
//! | `op` | combining strings (`BITOP AND/OR/XOR/NOT`) |
//! | `field` | integers of 1 to 64 bits at any bit offset, with overflow modes (`BITFIELD`) |

pub(crate) mod count;
pub(crate) mod field;
pub(crate) mod offset;
pub(crate) mod op;
pub(crate) mod pos;
pub(crate) mod range;

#[cfg(test)]
mod model_tests;

/// The mask of bit `offset` within its byte.
#[inline]
fn mask(offset: u64) -> u8 {
    0x80 >> (offset % 8)
}

/// Bit `offset` of `bytes`; bits past the end are clear.
#[inline]
pub(crate) fn bit_at(bytes: &[u8], offset: u64) -> bool {
    usize::try_from(offset / 8)
        .ok()
        .and_then(|byte| bytes.get(byte))
        .is_some_and(|&b| b & mask(offset) != 0)
}

/// Sets (`on`) or clears bit `offset` of `bytes`, which must hold it.
#[inline]
pub(crate) fn set_bit(bytes: &mut [u8], offset: u64, on: bool) {
    let byte = &mut bytes[(offset / 8) as usize];
    if on {
        *byte |= mask(offset);
    } else {
        *byte &= !mask(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_zero_is_the_first_bytes_top_bit() {
        let bytes = [0b1000_0001, 0b0100_0000];
        let set: Vec<u64> = (0..24).filter(|&i| bit_at(&bytes, i)).collect();
        assert_eq!(set, [0, 7, 9]);
        assert!(!bit_at(&bytes, u64::MAX), "past the end reads clear");
    }

    #[test]
    fn setting_and_clearing_touch_one_bit() {
        let mut bytes = [0u8; 2];
        set_bit(&mut bytes, 0, true);
        set_bit(&mut bytes, 15, true);
        assert_eq!(bytes, [0x80, 0x01]);
        set_bit(&mut bytes, 0, false);
        set_bit(&mut bytes, 15, true);
        assert_eq!(bytes, [0x00, 0x01]);
    }
}
