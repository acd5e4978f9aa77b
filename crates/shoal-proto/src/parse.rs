//! Incremental, zero-copy parsing of client requests.
//!
//! A request is either a RESP multibulk frame (`*<n>\r\n` followed by `n` bulk strings) or an
//! inline command (a line of space-separated words, with Redis's quoting rules), exactly as Redis
//! accepts them. The parser is fed the unconsumed part of a connection's read buffer; it returns
//! one command at a time, or [`Parsed::Incomplete`] when the frame is not all there yet. State is
//! kept across calls, so a frame that arrives in many small reads is not re-scanned from its start.
//!
//! Arguments are not copied: a parsed command is a list of ranges into the caller's buffer (inline
//! commands, whose quoting may need unescaping, are the one exception and go through a scratch
//! buffer). Errors carry Redis's exact messages; after one the connection must be closed, as Redis does.

use std::ops::Range;

/// Longest inline command, and longest `*<n>` / `$<n>` header line, Redis accepts (`PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE_LEN: usize = 64 * 1024;

/// Limits an unauthenticated client is held to when a password is required (Redis 7's values).
const UNAUTHENTICATED_MAX_ARGS: usize = 10;
const UNAUTHENTICATED_MAX_BULK: usize = 16 * 1024;

/// Bulk strings larger than this get their whole length reserved in the read buffer at once.
const BIG_ARG: usize = 32 * 1024;

/// The limits a parser enforces; the server fills them from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`, 512 MiB by default).
    pub max_bulk_len: usize,
    /// Most arguments in one command (`proto-max-multibulk-len`).
    pub max_args: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: i32::MAX as usize,
        }
    }
}

/// A malformed request. The message is Redis's (sent as `-ERR <message>`); the connection closes after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A `*<n>` header line longer than [`MAX_INLINE_LEN`].
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `*<n>` count that is not a number or exceeds the limit.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$<n>` header line longer than [`MAX_INLINE_LEN`].
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// A `$<n>` length that is not a number, is negative, or exceeds `proto-max-bulk-len`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// Something other than `$` where a bulk string must start.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// Bulk data not followed by `\r\n` (Redis skips those two bytes unchecked; Shoal refuses).
    #[error("Protocol error: expected '\\r\\n' after bulk data")]
    ExpectedCrlf,
    /// An inline command longer than [`MAX_INLINE_LEN`].
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline command with an unterminated quote, or a closing quote not followed by a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A client that has not authenticated sent more than 10 arguments.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A client that has not authenticated sent a bulk string over 16 KiB.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulkLength,
}

/// What one call to [`RequestParser::parse`] found at the start of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command of `consumed` bytes; read its arguments with [`RequestParser::argv`]
    /// before the buffer changes.
    Command {
        /// Bytes the frame took, to be skipped before the next call.
        consumed: usize,
    },
    /// A frame that holds no command (a blank line, `*0` or `*-1`): skip `consumed` bytes.
    Empty {
        /// Bytes to skip.
        consumed: usize,
    },
    /// More bytes are needed. `frame_len` is how long the frame is known to be at least (the
    /// caller may reserve that much room); the buffer must be passed again starting at the same byte.
    Incomplete {
        /// A lower bound on the whole frame's length, when known.
        frame_len: Option<usize>,
    },
}

/// Where a multibulk frame in progress stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a frame.
    Start,
    /// Inside a multibulk frame with `remaining` arguments to go; the next one starts at `pos`.
    Multibulk { remaining: usize, pos: usize },
    /// Inside a multibulk frame, waiting for the data of a bulk of `len` bytes starting at `pos`.
    Bulk {
        remaining: usize,
        pos: usize,
        len: usize,
    },
}

/// An incremental request parser; one per connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    unauthenticated: bool,
    state: State,
    ranges: Vec<Range<usize>>,
    inline: Vec<u8>,
    is_inline: bool,
    /// While a line (inline command or `*`/`$` header) is incomplete: where the search for its
    /// end resumes, so bytes arriving one at a time are not rescanned from the line's start.
    scanned: usize,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            unauthenticated: false,
            state: State::Start,
            ranges: Vec::with_capacity(8),
            inline: Vec::new(),
            is_inline: false,
            scanned: 0,
        }
    }

    /// Replaces the limits (after `CONFIG SET`); takes effect from the next frame.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Holds the client to Redis's small frame limits until it authenticates.
    pub fn set_unauthenticated(&mut self, unauthenticated: bool) {
        self.unauthenticated = unauthenticated;
    }

    /// Whether a frame is partly parsed (bytes of it must stay at the start of the buffer).
    pub fn in_frame(&self) -> bool {
        self.state != State::Start
    }

    /// Parses the request at the start of `buf`.
    ///
    /// After [`Parsed::Incomplete`], call again with a buffer that starts at the same byte and
    /// holds more data. After an error, the parser is reset, but the connection should be closed.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let result = match self.state {
            State::Start => match buf.first() {
                None => Ok(Parsed::Incomplete { frame_len: None }),
                Some(b'*') => self.start_multibulk(buf),
                Some(_) => self.parse_inline(buf),
            },
            State::Multibulk { .. } | State::Bulk { .. } => self.continue_multibulk(buf),
        };
        if result.is_err() {
            self.state = State::Start;
            self.ranges.clear();
            self.scanned = 0;
        }
        result
    }

    /// The arguments of the command the last [`parse`](Self::parse) returned, read from the same `buf`.
    pub fn argv<'a>(&'a self, buf: &'a [u8]) -> Argv<'a> {
        Argv {
            src: if self.is_inline { &self.inline } else { buf },
            ranges: &self.ranges,
        }
    }

    /// Finds the `\r\n` ending the header line that starts at `start` (with its `*` or `$`):
    /// `Ok(Some(cr))`, or `Ok(None)` if it has not arrived yet (remembering how far the search
    /// got), or `Err(too_long)` once more than [`MAX_INLINE_LEN`] bytes wait without one.
    fn line_end(
        &mut self,
        buf: &[u8],
        start: usize,
        too_long: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        let Some(cr) = find_cr(buf, self.scanned.max(start + 1)) else {
            self.scanned = buf.len();
            return if buf.len() - start > MAX_INLINE_LEN {
                Err(too_long)
            } else {
                Ok(None)
            };
        };
        if cr + 1 >= buf.len() {
            self.scanned = cr;
            return Ok(None);
        }
        self.scanned = 0;
        Ok(Some(cr))
    }

    fn start_multibulk(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let Some(line_end) = self.line_end(buf, 0, ProtocolError::TooBigMultibulkCount)? else {
            return Ok(Parsed::Incomplete { frame_len: None });
        };
        let count = parse_len(&buf[1..line_end]).ok_or(ProtocolError::InvalidMultibulkLength)?;
        let pos = line_end + 2;
        if count <= 0 {
            return Ok(Parsed::Empty { consumed: pos });
        }
        let count = count as usize;
        if count > self.limits.max_args {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        if self.unauthenticated && count > UNAUTHENTICATED_MAX_ARGS {
            return Err(ProtocolError::UnauthenticatedMultibulkLength);
        }
        self.is_inline = false;
        self.ranges.clear();
        // Never trust the declared count for an allocation: it is only a claim.
        self.ranges.reserve(count.min(1024));
        self.state = State::Multibulk {
            remaining: count,
            pos,
        };
        self.continue_multibulk(buf)
    }

    fn continue_multibulk(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        loop {
            match self.state {
                State::Start => unreachable!("continue_multibulk outside a frame"),
                State::Multibulk { remaining: 0, pos } => {
                    self.state = State::Start;
                    return Ok(Parsed::Command { consumed: pos });
                }
                State::Multibulk { remaining, pos } => {
                    let Some(&first) = buf.get(pos) else {
                        return Ok(Parsed::Incomplete { frame_len: None });
                    };
                    let Some(line_end) = self.line_end(buf, pos, ProtocolError::TooBigBulkCount)?
                    else {
                        return Ok(Parsed::Incomplete { frame_len: None });
                    };
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedDollar(first));
                    }
                    let len = parse_len(&buf[pos + 1..line_end])
                        .filter(|&len| len >= 0 && len as usize <= self.limits.max_bulk_len)
                        .ok_or(ProtocolError::InvalidBulkLength)?
                        as usize;
                    if self.unauthenticated && len > UNAUTHENTICATED_MAX_BULK {
                        return Err(ProtocolError::UnauthenticatedBulkLength);
                    }
                    self.state = State::Bulk {
                        remaining,
                        pos: line_end + 2,
                        len,
                    };
                }
                State::Bulk {
                    remaining,
                    pos,
                    len,
                } => {
                    let end = pos + len;
                    if buf.len() < end + 2 {
                        let frame_len = (len >= BIG_ARG).then_some(end + 2);
                        return Ok(Parsed::Incomplete { frame_len });
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(ProtocolError::ExpectedCrlf);
                    }
                    self.ranges.push(pos..end);
                    self.state = State::Multibulk {
                        remaining: remaining - 1,
                        pos: end + 2,
                    };
                }
            }
        }
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Result<Parsed, ProtocolError> {
        let from = self.scanned;
        let Some(newline) = buf[from..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| i + from)
        else {
            self.scanned = buf.len();
            return if buf.len() > MAX_INLINE_LEN {
                Err(ProtocolError::TooBigInline)
            } else {
                Ok(Parsed::Incomplete { frame_len: None })
            };
        };
        self.scanned = 0;
        if newline > MAX_INLINE_LEN {
            return Err(ProtocolError::TooBigInline);
        }
        let consumed = newline + 1;
        let line = &buf[..newline];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.is_inline = true;
        self.ranges.clear();
        self.inline.clear();
        split_inline(line, &mut self.inline, &mut self.ranges)?;
        if self.ranges.is_empty() {
            Ok(Parsed::Empty { consumed })
        } else {
            Ok(Parsed::Command { consumed })
        }
    }
}

/// The arguments of one command: the command name first.
#[derive(Debug, Clone, Copy)]
pub struct Argv<'a> {
    src: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Argv<'a> {
    /// The arguments at `ranges` of `src` (a command kept after its request buffer is gone,
    /// such as one queued in a transaction). Every range must lie within `src`.
    pub fn from_parts(src: &'a [u8], ranges: &'a [Range<usize>]) -> Argv<'a> {
        debug_assert!(ranges.iter().all(|r| r.end <= src.len()));
        Argv { src, ranges }
    }

    /// Number of arguments, the command name included.
    #[inline]
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are no arguments (never true for a parsed command).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i` (0 is the command name). Panics if `i >= len()`, as slice indexing does.
    #[inline]
    pub fn get(&self, i: usize) -> &'a [u8] {
        &self.src[self.ranges[i].clone()]
    }

    /// Argument `i`, or `None` past the end.
    #[inline]
    pub fn try_get(&self, i: usize) -> Option<&'a [u8]> {
        self.ranges.get(i).map(|r| &self.src[r.clone()])
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let src = self.src;
        self.ranges.iter().map(move |r| &src[r.clone()])
    }

    /// Total bytes of argument data.
    pub fn data_len(&self) -> usize {
        self.ranges.iter().map(|r| r.len()).sum()
    }
}

/// The second argument (for most commands, the key) of the multibulk frame at the start of
/// `buf`, if that much of the frame is already there. Stateless and cheap: it lets a server
/// prefetch the next command's data while it runs the current one. Anything unexpected gives
/// `None`; the real parse decides what the frame is.
pub fn peek_key(buf: &[u8]) -> Option<&[u8]> {
    if buf.first() != Some(&b'*') {
        return None;
    }
    let mut pos = find_cr(buf, 1)? + 2;
    for arg in 0..2 {
        if buf.get(pos) != Some(&b'$') {
            return None;
        }
        let line_end = find_cr(buf, pos + 1)?;
        let len = usize::try_from(parse_len(&buf[pos + 1..line_end])?).ok()?;
        let start = line_end + 2;
        let data = buf.get(start..start.checked_add(len)?)?;
        if arg == 1 {
            return Some(data);
        }
        pos = start + len + 2;
    }
    None
}

/// Position of the first `\r` at or after `from`.
#[inline]
fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .iter()
        .position(|&b| b == b'\r')
        .map(|i| i + from)
}

/// Parses a length the way Redis's `string2ll` does: an optional `-`, then digits with no
/// leading zero (other than `0` itself), no sign `+`, no spaces, at most 19 digits.
fn parse_len(digits: &[u8]) -> Option<i64> {
    let (negative, digits) = match digits.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(d - b'0');
    }
    Some(if negative { -value } else { value })
}

/// Splits a line into arguments as Redis's `sdssplitargs` does (an inline command, an ACL rule
/// line, a selector's inside): `None` for unbalanced quotes or a quote not followed by a space.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let (mut out, mut ranges) = (Vec::new(), Vec::new());
    split_inline(line, &mut out, &mut ranges).ok()?;
    Some(ranges.into_iter().map(|r| out[r].to_vec()).collect())
}

/// Splits an inline command line into arguments as Redis's `sdssplitargs` does: words separated
/// by spaces; `"..."` with `\n \r \t \b \a \\ \" \xHH` escapes; `'...'` with `\'`. A closing quote
/// must be followed by a space or the end of the line.
fn split_inline(
    line: &[u8],
    out: &mut Vec<u8>,
    ranges: &mut Vec<Range<usize>>,
) -> Result<(), ProtocolError> {
    let mut i = 0;
    loop {
        while i < line.len() && is_c_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let start = out.len();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\'
                    && line.get(i + 1) == Some(&b'x')
                    && let (Some(hi), Some(lo)) = (
                        line.get(i + 2).and_then(|&h| hex_value(h)),
                        line.get(i + 3).and_then(|&l| hex_value(l)),
                    )
                {
                    out.push(hi * 16 + lo);
                    i += 4;
                } else if c == b'\\' && i + 1 < line.len() {
                    out.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    if line.get(i + 1).is_some_and(|&c| !is_c_space(c)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else if in_single {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|&c| !is_c_space(c)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    out.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    // Only these end a word (`\v` and `\f` do not), as in `sdssplitargs`.
                    Some(b' ' | b'\n' | b'\r' | b'\t') => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => out.push(c),
                }
                i += 1;
            }
        }
        ranges.push(start..out.len());
    }
}

/// C's `isspace` (in the C locale): what `sdssplitargs` skips between words.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex_value(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests;
