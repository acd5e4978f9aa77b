//! The one type for a Redis error reply, rendered as Redis 7 renders it.

use std::borrow::Cow;

use shoal_proto::args::c_str;

/// `min-replicas-to-write` not met (Redis's line).
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";

/// A cluster node that may not serve now (Redis's minority answer).
pub const CLUSTER_DOWN: &str = "CLUSTERDOWN The cluster is down";

/// `AUTH` or `HELLO ... AUTH` with the wrong credentials.
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// An error reply: what follows `-` on the wire, code included. [`CommandError::bytes`] gives
/// the line; client arguments it quotes are kept verbatim (they need not be UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.line())]
pub enum CommandError {
    /// `ERR syntax error`
    Syntax,
    /// `ERR value is not an integer or out of range`
    NotInteger,
    /// `ERR value is not a valid float`
    NotFloat,
    /// `ERR increment or decrement would overflow`
    Overflow,
    /// `ERR increment would produce NaN or Infinity`
    NanOrInfinity,
    /// `ERR invalid expire time in '<command>' command`
    InvalidExpireTime(&'static str),
    /// `ERR wrong number of arguments for '<command>' command`
    WrongArity(&'static str),
    /// `ERR no such key`
    NoSuchKey,
    /// `ERR string exceeds maximum allowed size (proto-max-bulk-len)`
    StringTooLong,
    /// `OOM command not allowed when used memory > 'maxmemory'.`
    OutOfMemory,
    /// `NOAUTH Authentication required.`
    NoAuth,
    /// `ERR DB index is out of range`
    DbIndexOutOfRange,
    /// `WRONGTYPE Operation against a key holding the wrong kind of value`
    WrongType,
    /// `ERR unknown subcommand '<sub>'. Try <CONTAINER> HELP.`
    UnknownSubcommand {
        /// The subcommand as the client sent it (as [`truncated_arg`] cuts it).
        sub: Vec<u8>,
        /// The container command, upper case.
        container: String,
    },
    /// Any other error: the whole line, code included (`ERR ...`, `WRONGPASS ...`).
    Other(Cow<'static, str>),
    /// An error line that quotes client bytes verbatim (which need not be UTF-8), code included.
    Raw(Vec<u8>),
}

impl CommandError {
    /// An error with a fixed text (code included).
    pub const fn fixed(line: &'static str) -> CommandError {
        CommandError::Other(Cow::Borrowed(line))
    }

    /// An error quoting a client argument as Redis's `%s` does: `prefix`, the argument up to
    /// its first NUL byte, `suffix`.
    pub fn quoting(prefix: &str, arg: &[u8], suffix: &str) -> CommandError {
        let arg = c_str(arg);
        let mut line = Vec::with_capacity(prefix.len() + arg.len() + suffix.len());
        line.extend_from_slice(prefix.as_bytes());
        line.extend_from_slice(arg);
        line.extend_from_slice(suffix.as_bytes());
        CommandError::Raw(line)
    }

    /// The reply line after `-`, as bytes (client arguments it quotes are kept verbatim).
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        match self {
            CommandError::Raw(line) => Cow::Borrowed(line),
            CommandError::UnknownSubcommand { sub, container } => {
                let mut line = b"ERR unknown subcommand '".to_vec();
                line.extend_from_slice(sub);
                line.extend_from_slice(format!("'. Try {container} HELP.").as_bytes());
                Cow::Owned(line)
            }
            other => match other.line() {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
        }
    }

    /// The reply line after `-` (client bytes that are not UTF-8 shown lossily; see
    /// [`bytes`](Self::bytes)).
    pub fn line(&self) -> Cow<'_, str> {
        match self {
            CommandError::Syntax => "ERR syntax error".into(),
            CommandError::NotInteger => "ERR value is not an integer or out of range".into(),
            CommandError::NotFloat => "ERR value is not a valid float".into(),
            CommandError::Overflow => "ERR increment or decrement would overflow".into(),
            CommandError::NanOrInfinity => "ERR increment would produce NaN or Infinity".into(),
            CommandError::InvalidExpireTime(cmd) => {
                format!("ERR invalid expire time in '{cmd}' command").into()
            }
            CommandError::WrongArity(cmd) => {
                format!("ERR wrong number of arguments for '{cmd}' command").into()
            }
            CommandError::NoSuchKey => "ERR no such key".into(),
            CommandError::StringTooLong => {
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)".into()
            }
            CommandError::OutOfMemory => {
                "OOM command not allowed when used memory > 'maxmemory'.".into()
            }
            CommandError::NoAuth => "NOAUTH Authentication required.".into(),
            CommandError::DbIndexOutOfRange => "ERR DB index is out of range".into(),
            CommandError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            }
            CommandError::UnknownSubcommand { .. } | CommandError::Raw(_) => match self.bytes() {
                Cow::Borrowed(b) => String::from_utf8_lossy(b),
                Cow::Owned(b) => Cow::Owned(String::from_utf8_lossy(&b).into_owned()),
            },
            CommandError::Other(line) => Cow::Borrowed(line),
        }
    }

    /// The error code: the first word of the line (`ERR`, `OOM`, `NOAUTH`, ...), for
    /// `errorstats`.
    pub fn code(&self) -> String {
        error_code(&self.bytes())
    }

    /// Appends `-<line>\r\n` to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_error_line(out, &self.bytes());
    }
}

/// The code of an error line (after `-`): its first word (`ERR`, `WRONGTYPE`, ...).
pub fn error_code(line: &[u8]) -> String {
    let code = line.split(|&b| b == b' ').next().unwrap_or(b"ERR");
    String::from_utf8_lossy(code).into_owned()
}

/// `-<line>\r\n`, with any `\r` or `\n` in the line turned into spaces (as Redis's
/// `addReplyErrorFormat` does), client bytes kept verbatim.
pub fn write_error_line(out: &mut Vec<u8>, line: &[u8]) {
    out.reserve(line.len() + 3);
    out.push(b'-');
    out.extend(
        line.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// `bytes` the way Redis's `%.128s` shows an argument in an error message: up to the first
/// NUL byte, at most 128 bytes.
pub fn truncated_arg(bytes: &[u8]) -> Vec<u8> {
    let s = c_str(bytes);
    s[..s.len().min(128)].to_vec()
}

/// Redis's `addReplySubcommandSyntaxError`: a known subcommand of `container` with
/// arguments it cannot take.
pub fn subcommand_syntax_error(container: &[u8], sub: &[u8]) -> CommandError {
    let container = String::from_utf8_lossy(c_str(container)).to_ascii_uppercase();
    CommandError::quoting(
        "ERR unknown subcommand or wrong number of arguments for '",
        &truncated_arg(sub),
        &format!("'. Try {container} HELP."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_client_bytes_as_percent_s_does() {
        let e = CommandError::quoting("ERR x '", b"ab\0cd", "'");
        assert_eq!(&*e.bytes(), b"ERR x 'ab'");
        let mut out = Vec::new();
        CommandError::fixed("ERR a\r\nb").write(&mut out);
        assert_eq!(out, b"-ERR a  b\r\n");
        assert_eq!(truncated_arg(&[b'a'; 300]).len(), 128);
        let e = CommandError::UnknownSubcommand {
            sub: b"nope".to_vec(),
            container: "CLIENT".into(),
        };
        assert_eq!(e.line(), "ERR unknown subcommand 'nope'. Try CLIENT HELP.");
        assert_eq!(e.code(), "ERR");
        assert_eq!(CommandError::OutOfMemory.code(), "OOM");
        assert_eq!(
            subcommand_syntax_error(b"config", b"get\0x").line(),
            "ERR unknown subcommand or wrong number of arguments for 'get'. Try CONFIG HELP."
        );
    }
}
