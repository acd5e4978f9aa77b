//! Decoding of server replies (RESP2 and RESP3), for clients, proxies and tests, and encoding
//! of decoded replies (for proxies, which relay them in their own client's protocol).

use crate::encode::Protocol;

/// One decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `+...`
    Simple(Vec<u8>),
    /// `-...` (the whole line after `-`, code included).
    Error(Vec<u8>),
    /// `:...`
    Int(i64),
    /// `$...`
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or `_`.
    Null,
    /// A null known to be a null array, which RESP2 writes `*-1` (Redis's reply to `EXEC`
    /// after a watched key changed): for a relay to send as Redis would. Never decoded (a
    /// decoded `*-1` is [`Value::Null`]); see [`Value::as_exec_reply`].
    NullArray,
    /// `*...`
    Array(Vec<Value>),
    /// `%...` as key/value pairs.
    Map(Vec<(Value, Value)>),
    /// `~...`
    Set(Vec<Value>),
    /// `>...`
    Push(Vec<Value>),
    /// `,...`, kept as Redis's text so it round-trips exactly.
    Double(Vec<u8>),
    /// `#t` / `#f`
    Boolean(bool),
    /// `=...`: the three-letter format and the text.
    Verbatim(Vec<u8>, Vec<u8>),
    /// `(...`
    BigNumber(Vec<u8>),
    /// `!...`
    BulkError(Vec<u8>),
}

impl Value {
    /// `EXEC`'s reply, decoded, as a relay sends it on: its null (the transaction ran nothing
    /// because a watched key changed) is a [`Value::NullArray`], as Redis sends it.
    pub fn as_exec_reply(self) -> Value {
        match self {
            Value::Null => Value::NullArray,
            other => other,
        }
    }
}

/// A reply that does not follow RESP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply: {0}")]
pub struct MalformedReply(pub &'static str);

/// Decodes the reply at the start of `buf`: `Ok(None)` if it is not complete yet, else the value
/// and the number of bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Value, usize)>, MalformedReply> {
    let mut pos = 0;
    match decode_at(buf, &mut pos, 0)? {
        Some(value) => Ok(Some((value, pos))),
        None => Ok(None),
    }
}

const MAX_DEPTH: usize = 128;

fn decode_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, MalformedReply> {
    if depth > MAX_DEPTH {
        return Err(MalformedReply("nested too deep"));
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    if !b"+-:,(_#$=!*~>%".contains(&kind) {
        return Err(MalformedReply("unknown type byte"));
    }
    let Some(line_end) = buf[*pos + 1..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| i + *pos + 1)
    else {
        return Ok(None);
    };
    let line = &buf[*pos + 1..line_end];
    let after_line = line_end + 2;
    let number = || -> Result<i64, MalformedReply> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(MalformedReply("bad number"))
    };
    let value = match kind {
        b'+' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Int(number()?),
        b',' => Value::Double(line.to_vec()),
        b'(' => Value::BigNumber(line.to_vec()),
        b'_' => Value::Null,
        b'#' => match line {
            b"t" => Value::Boolean(true),
            b"f" => Value::Boolean(false),
            _ => return Err(MalformedReply("bad boolean")),
        },
        b'$' | b'=' | b'!' => {
            let len = number()?;
            if len < 0 {
                *pos = after_line;
                return Ok(Some(Value::Null));
            }
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| after_line.checked_add(len))
                .filter(|end| end.checked_add(2).is_some())
                .ok_or(MalformedReply("bulk length out of range"))?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(MalformedReply("bulk without CRLF"));
            }
            let data = buf[after_line..end].to_vec();
            *pos = end + 2;
            return Ok(Some(match kind {
                b'$' => Value::Bulk(data),
                b'!' => Value::BulkError(data),
                _ => {
                    if data.len() < 4 || data[3] != b':' {
                        return Err(MalformedReply("verbatim without format"));
                    }
                    Value::Verbatim(data[..3].to_vec(), data[4..].to_vec())
                }
            }));
        }
        b'*' | b'~' | b'>' | b'%' => {
            let len = number()?;
            *pos = after_line;
            if len < 0 {
                return Ok(Some(Value::Null));
            }
            let count = if kind == b'%' {
                len.checked_mul(2)
            } else {
                Some(len)
            }
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(MalformedReply("aggregate length out of range"))?;
            let mut items = Vec::with_capacity(count.min(1024));
            for _ in 0..count {
                match decode_at(buf, pos, depth + 1)? {
                    Some(item) => items.push(item),
                    None => return Ok(None),
                }
            }
            return Ok(Some(match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                b'>' => Value::Push(items),
                _ => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Value::Map(pairs)
                }
            }));
        }
        _ => return Err(MalformedReply("unknown type byte")),
    };
    *pos = after_line;
    Ok(Some(value))
}

/// Appends `value` to `out` in `protocol`, as a server would send it. RESP3-only types fall
/// back as Redis 7 downgrades them for RESP2 clients: maps to flat arrays, sets and pushes to
/// arrays, doubles, big numbers and verbatim text to bulk strings, booleans to 1/0, bulk
/// errors to simple errors (line breaks replaced by spaces); every null is `$-1` in RESP2 but
/// a [`Value::NullArray`], `*-1`.
pub fn encode_value(value: &Value, protocol: Protocol, out: &mut Vec<u8>) {
    let resp3 = protocol == Protocol::Resp3;
    let header = |out: &mut Vec<u8>, kind: u8, n: usize| {
        out.push(kind);
        let mut digits = decimal(n as i64);
        out.append(&mut digits);
        out.extend_from_slice(b"\r\n");
    };
    let bulk = |out: &mut Vec<u8>, kind: u8, data: &[u8]| {
        header(out, kind, data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    };
    let line = |out: &mut Vec<u8>, kind: u8, data: &[u8]| {
        out.push(kind);
        out.extend(
            data.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    };
    match value {
        Value::Simple(s) => line(out, b'+', s),
        Value::Error(e) => line(out, b'-', e),
        Value::Int(n) => {
            out.push(b':');
            out.append(&mut decimal(*n));
            out.extend_from_slice(b"\r\n");
        }
        Value::Bulk(data) => bulk(out, b'$', data),
        Value::Null | Value::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
        Value::Null => out.extend_from_slice(b"$-1\r\n"),
        Value::NullArray => out.extend_from_slice(b"*-1\r\n"),
        Value::Array(items) => {
            header(out, b'*', items.len());
            items.iter().for_each(|v| encode_value(v, protocol, out));
        }
        Value::Set(items) | Value::Push(items) => {
            let kind = match (resp3, value) {
                (true, Value::Set(_)) => b'~',
                (true, _) => b'>',
                (false, _) => b'*',
            };
            header(out, kind, items.len());
            items.iter().for_each(|v| encode_value(v, protocol, out));
        }
        Value::Map(pairs) => {
            if resp3 {
                header(out, b'%', pairs.len());
            } else {
                header(out, b'*', pairs.len() * 2);
            }
            for (k, v) in pairs {
                encode_value(k, protocol, out);
                encode_value(v, protocol, out);
            }
        }
        Value::Double(text) if resp3 => line(out, b',', text),
        Value::BigNumber(text) if resp3 => line(out, b'(', text),
        Value::Double(text) | Value::BigNumber(text) => bulk(out, b'$', text),
        Value::Boolean(b) if resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Value::Boolean(b) => out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
        Value::Verbatim(format, text) if resp3 => {
            header(out, b'=', text.len() + 4);
            out.extend_from_slice(format);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
        Value::Verbatim(_, text) => bulk(out, b'$', text),
        Value::BulkError(e) if resp3 => bulk(out, b'!', e),
        Value::BulkError(e) => line(out, b'-', e),
    }
}

/// `n` in decimal ASCII.
fn decimal(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_through_decoding() {
        let value = Value::Map(vec![
            (Value::Simple(b"a".to_vec()), Value::Int(-1)),
            (
                Value::Bulk(b"b\r\n".to_vec()),
                Value::Set(vec![
                    Value::Null,
                    Value::Boolean(true),
                    Value::Double(b"1.5".to_vec()),
                ]),
            ),
            (
                Value::Verbatim(b"txt".to_vec(), b"x".to_vec()),
                Value::Array(vec![
                    Value::Error(b"ERR no".to_vec()),
                    Value::BulkError(b"E".to_vec()),
                ]),
            ),
        ]);
        let mut out = Vec::new();
        encode_value(&value, Protocol::Resp3, &mut out);
        assert_eq!(decode(&out).unwrap().unwrap(), (value, out.len()));
    }

    #[test]
    fn resp2_gets_redis_s_fallbacks() {
        let mut out = Vec::new();
        let value = Value::Array(vec![
            Value::Null,
            Value::Map(vec![(Value::Bulk(b"k".to_vec()), Value::Boolean(false))]),
            Value::Double(b"2.5".to_vec()),
            Value::BulkError(b"ERR a\nb".to_vec()),
        ]);
        encode_value(&value, Protocol::Resp2, &mut out);
        assert_eq!(
            out,
            b"*4\r\n$-1\r\n*2\r\n$1\r\nk\r\n:0\r\n$3\r\n2.5\r\n-ERR a b\r\n".to_vec()
        );
    }

    #[test]
    fn exec_s_null_is_a_null_array() {
        let relayed = Value::Null.as_exec_reply();
        let mut out = Vec::new();
        encode_value(&relayed, Protocol::Resp2, &mut out);
        assert_eq!(out, b"*-1\r\n");
        out.clear();
        encode_value(&relayed, Protocol::Resp3, &mut out);
        assert_eq!(out, b"_\r\n");
        assert_eq!(decode(b"*-1\r\n").unwrap().unwrap().0, Value::Null);
        let ran = Value::Array(vec![Value::Null]);
        assert_eq!(ran.clone().as_exec_reply(), ran);
    }

    #[test]
    fn decodes_every_type_and_reports_the_length() {
        let buf = b"%2\r\n+a\r\n:1\r\n$1\r\nb\r\n~2\r\n_\r\n#t\r\nrest";
        let (value, used) = decode(buf).unwrap().unwrap();
        assert_eq!(used, buf.len() - 4);
        assert_eq!(
            value,
            Value::Map(vec![
                (Value::Simple(b"a".to_vec()), Value::Int(1)),
                (
                    Value::Bulk(b"b".to_vec()),
                    Value::Set(vec![Value::Null, Value::Boolean(true)])
                ),
            ])
        );
    }

    #[test]
    fn incomplete_replies_ask_for_more() {
        for cut in 0..b"*2\r\n$3\r\nabc\r\n:5\r\n".len() {
            assert_eq!(decode(&b"*2\r\n$3\r\nabc\r\n:5\r\n"[..cut]).unwrap(), None);
        }
        assert_eq!(
            decode(b"=8\r\ntxt:abcd\r\n").unwrap().unwrap().0,
            Value::Verbatim(b"txt".to_vec(), b"abcd".to_vec())
        );
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode(b"?x\r\n").is_err());
        assert!(decode(b"$3\r\nabcXY").is_err());
        assert!(decode(b":x\r\n").is_err());
        // Found by the fuzzer: a line ending where the type byte should be.
        assert!(decode(b"\r\n").is_err());
        assert_eq!(
            decode(b"+\r\n").unwrap().unwrap().0,
            Value::Simple(Vec::new())
        );
    }
}
