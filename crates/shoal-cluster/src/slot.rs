//! The hash slot of a key, exactly as Redis Cluster computes it: CRC16-XMODEM of the key, or of
//! its hash tag, modulo 16384.
//!
//! A hash tag is the part between the first `{` and the first `}` after it, if that part is not
//! empty (`{user:1}.name` and `{user:1}.mail` share a slot; `{}x` hashes whole).

/// Number of hash slots.
pub const SLOTS: usize = 16384;

/// A hash slot, `0..16384`.
pub type Slot = u16;

/// The slot `key` belongs to.
#[inline]
pub fn key_slot(key: &[u8]) -> Slot {
    (crc16(hash_tag(key)) as usize % SLOTS) as Slot
}

/// The bytes of `key` that decide its slot: the hash tag if it has a non-empty one, else the
/// whole key.
#[inline]
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection), as Redis's `crc16.c`.
pub fn crc16(data: &[u8]) -> u16 {
    data.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[((crc >> 8) as u8 ^ byte) as usize]
    })
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_xmodem_check_value() {
        // The standard check value of CRC-16/XMODEM, also in Redis's crc16.c.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(hash_tag(b"{user1000}.following"), b"user1000");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{"), b"{");
        assert_eq!(hash_tag(b"}{"), b"}{");
        assert_eq!(hash_tag(b""), b"");
    }
}
