//! `FUNCTION DUMP`'s payload, in Redis 7.0's format, so that a dump taken from Redis restores
//! into Shoal and the other way round: for each library the opcode `RDB_OPCODE_FUNCTION2`
//! (245) and its code as an RDB string, then the RDB version (10, two bytes, little-endian)
//! and the CRC64 (Jones, as Redis's `crc64`) of everything before it, little-endian.
//!
//! Shoal writes its strings plain; it reads every RDB string encoding Redis writes: plain,
//! integers, and LZF-compressed (Redis compresses strings over 20 bytes).

/// `RDB_OPCODE_FUNCTION2`: a library's code follows.
pub(crate) const OPCODE_FUNCTION2: u8 = 245;

/// The RDB version Redis 7.0 writes (`RDB_VERSION`); a payload of a later one is refused.
pub(crate) const RDB_VERSION: u16 = 10;

/// Why a payload could not be read (Redis's reply lines, without `ERR `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PayloadError {
    /// Too short, of a later RDB version, or its checksum does not match.
    #[error("DUMP payload version or checksum are wrong")]
    Footer,
    /// An opcode other than a library's.
    #[error("given type is not a function")]
    NotAFunction,
    /// A library's code could not be read.
    #[error("Failed loading library payload")]
    Library,
}

/// The payload holding these libraries' codes.
pub(crate) fn dump<'a>(codes: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for code in codes {
        out.push(OPCODE_FUNCTION2);
        write_len(&mut out, code.len() as u64);
        out.extend_from_slice(code);
    }
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The libraries' codes a payload holds (Redis's `verifyDumpPayload`, then its
/// `functionRestoreCommand` loop). Strings are read within the whole payload, as Redis reads
/// them from its buffer.
pub(crate) fn parse(payload: &[u8]) -> Result<Vec<Vec<u8>>, PayloadError> {
    let len = payload.len();
    if len < 10 {
        return Err(PayloadError::Footer);
    }
    let version = u16::from_le_bytes([payload[len - 10], payload[len - 9]]);
    if version > RDB_VERSION {
        return Err(PayloadError::Footer);
    }
    let mut crc = [0u8; 8];
    crc.copy_from_slice(&payload[len - 8..]);
    if crc64(0, &payload[..len - 8]) != u64::from_le_bytes(crc) {
        return Err(PayloadError::Footer);
    }
    let mut reader = Reader {
        data: payload,
        at: 0,
    };
    let mut codes = Vec::new();
    while reader.at < len - 10 {
        let opcode = reader.byte().ok_or(PayloadError::Library)?;
        if opcode != OPCODE_FUNCTION2 {
            return Err(PayloadError::NotAFunction);
        }
        codes.push(reader.string().ok_or(PayloadError::Library)?);
    }
    Ok(codes)
}

/// Writes an RDB length (`rdbSaveLen`).
fn write_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.extend_from_slice(&[0x40 | (len >> 8) as u8, len as u8]);
    } else if len <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// An RDB length, or a string's special encoding.
enum Len {
    Plain(u64),
    Encoded(u8),
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.data.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    /// `rdbLoadLenByRef`.
    fn len(&mut self) -> Option<Len> {
        let first = self.byte()?;
        Some(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.byte()?)),
            2 => match first {
                0x80 => Len::Plain(u64::from(u32::from_be_bytes(
                    self.bytes(4)?.try_into().ok()?,
                ))),
                0x81 => Len::Plain(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?)),
                _ => return None,
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    fn plain_len(&mut self) -> Option<usize> {
        match self.len()? {
            Len::Plain(n) => usize::try_from(n).ok(),
            Len::Encoded(_) => None,
        }
    }

    /// `rdbGenericLoadStringObject`: a plain, integer or LZF string.
    fn string(&mut self) -> Option<Vec<u8>> {
        match self.len()? {
            Len::Plain(n) => Some(self.bytes(usize::try_from(n).ok()?)?.to_vec()),
            Len::Encoded(0) => Some((self.byte()? as i8).to_string().into_bytes()),
            Len::Encoded(1) => Some(
                i16::from_le_bytes(self.bytes(2)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            Len::Encoded(2) => Some(
                i32::from_le_bytes(self.bytes(4)?.try_into().ok()?)
                    .to_string()
                    .into_bytes(),
            ),
            Len::Encoded(3) => {
                let compressed = self.plain_len()?;
                let len = self.plain_len()?;
                lzf_decompress(self.bytes(compressed)?, len)
            }
            Len::Encoded(_) => None,
        }
    }
}

/// LZF decompression (`lzf_decompress`) of exactly `len` bytes.
fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = usize::from(input[i]);
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(i..i + run)?);
            i += run;
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += usize::from(*input.get(i)?);
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + usize::from(*input.get(i)?) + 1;
            i += 1;
            let from = out.len().checked_sub(back)?;
            for k in 0..run + 2 {
                let b = out[from + k];
                out.push(b);
            }
        }
        if out.len() > len {
            return None;
        }
    }
    (out.len() == len).then_some(out)
}

/// The reflected form of Jones's polynomial `0xad93d23594c935a9`, as Redis's `crc64` uses it.
const POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const CRC_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// Redis's `crc64(crc, data)`.
pub(crate) fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = CRC_TABLE[((crc ^ u64::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_redis_s() {
        // Redis's own test vector (crc64.c).
        assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn an_empty_dump_is_redis_s() {
        // `FUNCTION DUMP` of redis-server 7.0.15 with no library.
        assert_eq!(
            dump([]),
            b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda".to_vec()
        );
    }

    #[test]
    fn dumps_read_back_and_damage_is_refused() {
        let long = vec![b'x'; 20_000];
        let payload = dump([&b"#!lua name=a\n"[..], &long]);
        assert_eq!(parse(&payload), Ok(vec![b"#!lua name=a\n".to_vec(), long]));
        let mut bad = payload.clone();
        bad[3] ^= 1;
        assert_eq!(parse(&bad), Err(PayloadError::Footer));
        assert_eq!(parse(b"abc"), Err(PayloadError::Footer));
        let mut later = dump([]);
        later[0] = 11;
        let crc = crc64(0, &later[..2]).to_le_bytes();
        later[2..].copy_from_slice(&crc);
        assert_eq!(parse(&later), Err(PayloadError::Footer));
    }

    #[test]
    fn compressed_and_integer_strings_are_read() {
        // "aaaaaaaaaa": a literal 'a', then a back-reference of 9 bytes at distance 1.
        let lzf = [0x00, b'a', 0xe0, 0x00, 0x00];
        assert_eq!(lzf_decompress(&lzf, 10), Some(b"aaaaaaaaaa".to_vec()));
        assert_eq!(lzf_decompress(&lzf, 9), None);
        let mut reader = Reader {
            data: &[0xc3, 5, 10, 0x00, b'a', 0xe0, 0x00, 0x00, 0xc1, 0x39, 0x30],
            at: 0,
        };
        assert_eq!(reader.string(), Some(b"aaaaaaaaaa".to_vec()));
        assert_eq!(reader.string(), Some(b"12345".to_vec()));
    }
}
