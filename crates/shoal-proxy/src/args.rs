//! Reading command arguments and quoting them in error lines, as Redis does.

/// Case-insensitive comparison of an argument with an option name.
#[inline]
pub(crate) fn is(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

/// An integer argument parsed as Redis's `string2ll` does: an optional `-`, digits, no `+`,
/// no spaces, no leading zeros (but `0` itself), no overflow.
pub(crate) fn parse_i64(arg: &[u8]) -> Option<i64> {
    let (negative, digits) = match arg.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, arg),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || negative)) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative {
            value.checked_sub(d)?
        } else {
            value.checked_add(d)?
        };
    }
    Some(value)
}

/// An unsigned decimal (a `SCAN` cursor): digits only, no overflow.
pub(crate) fn parse_u64(arg: &[u8]) -> Option<u64> {
    if arg.is_empty() {
        return None;
    }
    arg.iter().try_fold(0u64, |acc, &d| {
        if !d.is_ascii_digit() {
            return None;
        }
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// `bytes` the way Redis's `%s` shows an argument (a C string): up to the first NUL byte.
pub(crate) fn c_str(bytes: &[u8]) -> &[u8] {
    bytes
        .iter()
        .position(|&b| b == 0)
        .map_or(bytes, |nul| &bytes[..nul])
}

/// `bytes` the way Redis's `%.128s` shows an argument: up to the first NUL, at most 128 bytes.
pub(crate) fn truncated_arg(bytes: &[u8]) -> &[u8] {
    let s = c_str(bytes);
    &s[..s.len().min(128)]
}

/// An error reply's line (after `-`), code included. Lines quote client bytes verbatim, so
/// they are bytes, not text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ErrorLine(pub Vec<u8>);

impl ErrorLine {
    /// A fixed text.
    pub fn fixed(line: &str) -> ErrorLine {
        ErrorLine(line.as_bytes().to_vec())
    }

    /// `prefix`, the argument as `%s` shows it, `suffix`.
    pub fn quoting(prefix: &str, arg: &[u8], suffix: &str) -> ErrorLine {
        let mut line = Vec::with_capacity(prefix.len() + arg.len() + suffix.len());
        line.extend_from_slice(prefix.as_bytes());
        line.extend_from_slice(c_str(arg));
        line.extend_from_slice(suffix.as_bytes());
        ErrorLine(line)
    }

    /// `ERR wrong number of arguments for '<name>' command`.
    pub fn wrong_arity(name: &str) -> ErrorLine {
        ErrorLine(format!("ERR wrong number of arguments for '{name}' command").into_bytes())
    }

    /// `ERR syntax error`.
    pub fn syntax() -> ErrorLine {
        ErrorLine::fixed("ERR syntax error")
    }

    /// Appends `-<line>\r\n` to `out`, line breaks turned into spaces.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.reserve(self.0.len() + 3);
        out.push(b'-');
        out.extend(
            self.0
                .iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_as_string2ll_does() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1x",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    #[test]
    fn error_lines_quote_like_percent_s() {
        let line = ErrorLine::quoting("ERR x '", b"ab\0cd", "'");
        assert_eq!(line.0, b"ERR x 'ab'");
        let mut out = Vec::new();
        ErrorLine::fixed("ERR a\r\nb").write(&mut out);
        assert_eq!(out, b"-ERR a  b\r\n");
        assert_eq!(truncated_arg(&[b'a'; 300]).len(), 128);
    }
}
