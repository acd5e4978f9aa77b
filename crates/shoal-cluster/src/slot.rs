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

/// `slots` (ascending) as inclusive ranges of consecutive slots, in order.
pub fn slot_ranges(slots: impl IntoIterator<Item = Slot>) -> Vec<(Slot, Slot)> {
    let mut out: Vec<(Slot, Slot)> = Vec::new();
    for slot in slots {
        match out.last_mut() {
            Some((_, last)) if *last + 1 == slot => *last = slot,
            _ => out.push((slot, slot)),
        }
    }
    out
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
pub(crate) fn crc16(data: &[u8]) -> u16 {
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

    /// `CLUSTER KEYSLOT` of each key, as answered by a real `redis-server` 7.0.15 with
    /// `cluster-enabled yes`.
    const REDIS_KEYSLOTS: &[(&[u8], Slot)] = &[
        (b"", 0),
        (b"a", 15495),
        (b"foo", 12182),
        (b"bar", 5061),
        (b"hello", 866),
        (b"123456789", 12739),
        (b"key:1", 6657),
        (b"user:1000", 1649),
        (b"somekey", 11058),
        (b"Foo", 10576),
        (b"FOO", 3028),
        (b"{user1000}.following", 3443),
        (b"{user1000}.followers", 3443),
        (b"foo{}{bar}", 8363),
        (b"foo{{bar}}zap", 4015),
        (b"{bar", 4015),
        (b"foo{bar}{zap}", 5061),
        (b"{", 4092),
        (b"}", 12090),
        (b"}{", 12793),
        (b"{}", 15257),
        (b"{}{}", 15786),
        (b"{{}}", 4092),
        (b"a{b}c", 3300),
        (b"b", 3300),
        (b"{a}", 15495),
        (b"{a", 10276),
        (b"a}", 5921),
        (b"x{}y{z}", 15453),
        (b"\0", 0),
        (b"\0\x01\x02\xff", 4002),
        (b"\xff\xfe\xfd", 287),
        (b"a\r\nb", 3608),
        (b"tab\tkey", 460),
        (b" ", 9314),
        ("café".as_bytes(), 5735),
        ("日本語".as_bytes(), 12788),
        ("{ユーザ}:1".as_bytes(), 4018),
        ("emoji😀".as_bytes(), 3827),
        (&[b'x'; 100], 2134),
        (&[b'k'; 1000], 15858),
    ];

    #[test]
    fn key_slots_match_redis_cluster_keyslot() {
        for &(key, slot) in REDIS_KEYSLOTS {
            assert_eq!(
                key_slot(key),
                slot,
                "key {:?}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn long_key_slots_match_redis_cluster_keyslot() {
        let long = [b"long:".as_slice(), &b"0123456789".repeat(30)].concat();
        assert_eq!(key_slot(&long), 8789);
        let long_tag = [b"{".as_slice(), &[b'z'; 500], b"}suffix"].concat();
        assert_eq!(key_slot(&long_tag), 7860);
    }
}
