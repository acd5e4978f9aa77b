//! Reading command arguments and quoting them in error lines, as Redis does (the parts a node
//! shares are in [`shoal_proto::args`]).

use shoal_proto::args::c_str;
use shoal_proto::connection::ArgError;

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

    /// `ERR wrong number of arguments for '<name>' command`.
    pub fn wrong_arity(name: &str) -> ErrorLine {
        ErrorLine(format!("ERR wrong number of arguments for '{name}' command").into_bytes())
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

impl From<ArgError<'_>> for ErrorLine {
    fn from(error: ArgError<'_>) -> ErrorLine {
        ErrorLine(error.line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_as_unsigned_decimals() {
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    #[test]
    fn error_lines_quote_like_percent_s() {
        let line = ErrorLine::from(ArgError::Quoting {
            prefix: "ERR x '",
            arg: b"ab\0cd",
            suffix: "'",
        });
        assert_eq!(line.0, b"ERR x 'ab'");
        let mut out = Vec::new();
        ErrorLine::fixed("ERR a\r\nb").write(&mut out);
        assert_eq!(out, b"-ERR a  b\r\n");
        assert_eq!(truncated_arg(&[b'a'; 300]).len(), 128);
    }
}
