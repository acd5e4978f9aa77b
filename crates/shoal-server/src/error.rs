//! Errors a command can answer with, each rendered as Redis 7 renders it.

use std::borrow::Cow;

/// A command's error reply. [`CommandError::line`] gives the text after `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `ERR unknown subcommand '<sub>'. Try <CONTAINER> HELP.`
    UnknownSubcommand {
        /// The subcommand as the client sent it.
        sub: String,
        /// The container command, upper case.
        container: String,
    },
    /// Any other error: the whole line, code included (`ERR ...`, `WRONGPASS ...`).
    Other(Cow<'static, str>),
}

impl CommandError {
    /// An error with a fixed text (code included).
    pub const fn fixed(line: &'static str) -> CommandError {
        CommandError::Other(Cow::Borrowed(line))
    }

    /// The reply line after `-`.
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
            CommandError::UnknownSubcommand { sub, container } => {
                format!("ERR unknown subcommand '{sub}'. Try {container} HELP.").into()
            }
            CommandError::Other(line) => Cow::Borrowed(line),
        }
    }

    /// The error code: the first word of the line (`ERR`, `OOM`, `NOAUTH`, ...), for `errorstats`.
    pub fn code(&self) -> String {
        let line = self.line();
        line.split(' ').next().unwrap_or("ERR").to_string()
    }
}

/// What a command handler returns; success replies are already written.
pub type CommandResult = Result<(), CommandError>;

/// Formats `bytes` the way Redis's `%.128s` would show an argument in an error message: at most
/// 128 bytes, lossy UTF-8.
pub fn truncated_arg(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(128)]).into_owned()
}
