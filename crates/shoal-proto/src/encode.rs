//! Reply encoding into a byte buffer, in the protocol version the client chose.
//!
//! Every function appends one RESP element to `out`; aggregate headers ([`Reply::array`],
//! [`Reply::map`], ...) are followed by their elements. Where RESP2 has no such type the Redis 7
//! fallback is used (maps as flat arrays, sets as arrays, doubles and verbatim text as bulk strings,
//! booleans as integers, every null as `$-1` or `*-1`).

use crate::command_table::StaticValue;

/// Protocol version of a connection, switched with `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, every connection's starting protocol.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Protocol {
    /// The number `HELLO` and `CLIENT INFO` show for this version.
    pub fn version(self) -> u8 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// Appends replies to a connection's output buffer.
#[derive(Debug)]
pub struct Reply<'a> {
    /// The output buffer the replies go to.
    pub out: &'a mut Vec<u8>,
    /// The protocol the client speaks.
    pub protocol: Protocol,
}

impl<'a> Reply<'a> {
    /// A writer appending to `out` in `protocol`.
    #[inline]
    pub fn new(out: &'a mut Vec<u8>, protocol: Protocol) -> Self {
        Reply { out, protocol }
    }

    /// Whether the client speaks RESP3.
    #[inline]
    pub fn resp3(&self) -> bool {
        self.protocol == Protocol::Resp3
    }

    /// `+OK`.
    #[inline]
    pub fn ok(&mut self) {
        self.out.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string. It must not contain `\r` or `\n`.
    #[inline]
    pub fn simple(&mut self, s: &str) {
        self.out.push(b'+');
        self.out.extend_from_slice(s.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// An error reply. `line` is the whole message after `-`, code included (`ERR syntax error`,
    /// `WRONGTYPE ...`). Newlines are replaced by spaces so the reply stays one line, as Redis does.
    pub fn error(&mut self, line: &str) {
        self.out.push(b'-');
        self.out.extend(
            line.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.out.extend_from_slice(b"\r\n");
    }

    /// An integer.
    #[inline]
    pub fn int(&mut self, n: i64) {
        self.out.push(b':');
        self.number_line(n);
    }

    /// A bulk string.
    #[inline]
    pub fn bulk(&mut self, data: &[u8]) {
        self.bulk_header(data.len());
        self.out.extend_from_slice(data);
        self.out.extend_from_slice(b"\r\n");
    }

    /// The header of a bulk string of `len` bytes; the caller appends exactly `len` bytes and then
    /// calls [`bulk_end`](Self::bulk_end). Lets a value be copied straight from the store.
    #[inline]
    pub fn bulk_header(&mut self, len: usize) {
        self.out.push(b'$');
        self.number_line(len as i64);
    }

    /// The terminator of a bulk string started with [`bulk_header`](Self::bulk_header).
    #[inline]
    pub fn bulk_end(&mut self) {
        self.out.extend_from_slice(b"\r\n");
    }

    /// A bulk string holding the decimal form of `n` (as Redis replies to `INCRBYFLOAT` and friends
    /// with integers stored as strings).
    pub fn bulk_int(&mut self, n: i64) {
        let mut buf = itoa::Buffer::new();
        self.bulk(buf.format(n).as_bytes());
    }

    /// A null: `$-1` in RESP2 (a null bulk string), `_` in RESP3.
    #[inline]
    pub fn null(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.out.extend_from_slice(b"$-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// A null array: `*-1` in RESP2, `_` in RESP3.
    #[inline]
    pub fn null_array(&mut self) {
        match self.protocol {
            Protocol::Resp2 => self.out.extend_from_slice(b"*-1\r\n"),
            Protocol::Resp3 => self.out.extend_from_slice(b"_\r\n"),
        }
    }

    /// The header of an array of `len` elements.
    #[inline]
    pub fn array(&mut self, len: usize) {
        self.out.push(b'*');
        self.number_line(len as i64);
    }

    /// The header of a map of `pairs` key/value pairs (a flat array of `2 * pairs` in RESP2).
    #[inline]
    pub fn map(&mut self, pairs: usize) {
        match self.protocol {
            Protocol::Resp2 => self.array(pairs * 2),
            Protocol::Resp3 => {
                self.out.push(b'%');
                self.number_line(pairs as i64);
            }
        }
    }

    /// The header of a set of `len` elements (an array in RESP2).
    #[inline]
    pub fn set(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.array(len),
            Protocol::Resp3 => {
                self.out.push(b'~');
                self.number_line(len as i64);
            }
        }
    }

    /// The header of an out-of-band push message (an array in RESP2).
    pub fn push(&mut self, len: usize) {
        match self.protocol {
            Protocol::Resp2 => self.array(len),
            Protocol::Resp3 => {
                self.out.push(b'>');
                self.number_line(len as i64);
            }
        }
    }

    /// A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2.
    pub fn boolean(&mut self, value: bool) {
        match self.protocol {
            Protocol::Resp2 => self.int(i64::from(value)),
            Protocol::Resp3 => {
                self.out
                    .extend_from_slice(if value { b"#t\r\n" } else { b"#f\r\n" })
            }
        }
    }

    /// A double: `,<value>` in RESP3, a bulk string in RESP2, formatted as Redis's `%.17g`.
    pub fn double(&mut self, value: f64) {
        let text = format_double(value);
        match self.protocol {
            Protocol::Resp2 => self.bulk(text.as_bytes()),
            Protocol::Resp3 => {
                self.out.push(b',');
                self.out.extend_from_slice(text.as_bytes());
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Verbatim text (`INFO`, `CLIENT LIST`): `=<len>\r\ntxt:...` in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.protocol {
            Protocol::Resp2 => self.bulk(text),
            Protocol::Resp3 => {
                self.out.push(b'=');
                self.number_line(text.len() as i64 + 4);
                self.out.extend_from_slice(b"txt:");
                self.out.extend_from_slice(text);
                self.out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// A recorded Redis reply value (command table entries).
    pub fn static_value(&mut self, value: &StaticValue) {
        match value {
            StaticValue::Simple(s) => self.simple(s),
            StaticValue::Bulk(s) => self.bulk(s.as_bytes()),
            StaticValue::Int(n) => self.int(*n),
            StaticValue::Array(items) => {
                self.array(items.len());
                items.iter().for_each(|v| self.static_value(v));
            }
            StaticValue::Set(items) => {
                self.set(items.len());
                items.iter().for_each(|v| self.static_value(v));
            }
            StaticValue::Map(items) => {
                self.map(items.len() / 2);
                items.iter().for_each(|v| self.static_value(v));
            }
        }
    }

    #[inline]
    fn number_line(&mut self, n: i64) {
        let mut buf = itoa::Buffer::new();
        self.out.extend_from_slice(buf.format(n).as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }
}

/// Formats a double as C's `printf("%.17g")` does, which is how Redis 7 writes RESP3 doubles
/// (`inf`, `-inf` and `nan` for the special values).
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_owned();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    format_g(value, 17)
}

/// C's `%.<precision>g` for a finite value: shortest of fixed or exponent notation with
/// `precision` significant digits, trailing zeros removed.
pub fn format_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let precision = precision.max(1);
    // `{:e}` with precision-1 fraction digits rounds exactly like printf does.
    let sci = format!("{:.*e}", precision - 1, value);
    let (mantissa, exponent) = sci.split_once('e').expect("exponent in {:e} output");
    let exponent: i32 = exponent.parse().expect("integer exponent");
    if exponent < -4 || exponent >= precision as i32 {
        let mantissa = trim_fraction_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_fraction_zeros(&format!("{value:.decimals$}")).to_owned()
    }
}

fn trim_fraction_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(protocol: Protocol, f: impl FnOnce(&mut Reply)) -> Vec<u8> {
        let mut out = Vec::new();
        f(&mut Reply::new(&mut out, protocol));
        out
    }

    #[test]
    fn scalars_encode_as_redis_writes_them() {
        assert_eq!(encode(Protocol::Resp2, |r| r.ok()), b"+OK\r\n");
        assert_eq!(encode(Protocol::Resp2, |r| r.int(-42)), b":-42\r\n");
        assert_eq!(
            encode(Protocol::Resp2, |r| r.bulk(b"a\r\nb")),
            b"$4\r\na\r\nb\r\n"
        );
        assert_eq!(encode(Protocol::Resp2, |r| r.bulk(b"")), b"$0\r\n\r\n");
        assert_eq!(encode(Protocol::Resp2, |r| r.null()), b"$-1\r\n");
        assert_eq!(encode(Protocol::Resp3, |r| r.null()), b"_\r\n");
        assert_eq!(encode(Protocol::Resp2, |r| r.null_array()), b"*-1\r\n");
        assert_eq!(encode(Protocol::Resp2, |r| r.boolean(true)), b":1\r\n");
        assert_eq!(encode(Protocol::Resp3, |r| r.boolean(false)), b"#f\r\n");
    }

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(
            encode(Protocol::Resp2, |r| r.error("ERR bad\r\nthing")),
            b"-ERR bad  thing\r\n"
        );
    }

    #[test]
    fn aggregates_fall_back_to_arrays_in_resp2() {
        assert_eq!(encode(Protocol::Resp2, |r| r.map(2)), b"*4\r\n");
        assert_eq!(encode(Protocol::Resp3, |r| r.map(2)), b"%2\r\n");
        assert_eq!(encode(Protocol::Resp2, |r| r.set(3)), b"*3\r\n");
        assert_eq!(encode(Protocol::Resp3, |r| r.set(3)), b"~3\r\n");
        assert_eq!(encode(Protocol::Resp3, |r| r.push(2)), b">2\r\n");
    }

    #[test]
    fn verbatim_text_carries_its_format_in_resp3() {
        assert_eq!(
            encode(Protocol::Resp2, |r| r.verbatim(b"hi")),
            b"$2\r\nhi\r\n"
        );
        assert_eq!(
            encode(Protocol::Resp3, |r| r.verbatim(b"hi")),
            b"=6\r\ntxt:hi\r\n"
        );
    }

    #[test]
    fn doubles_match_printf_g17() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(0.1), "0.10000000000000001");
        assert_eq!(format_double(1e20), "1e+20");
        assert_eq!(format_double(1.5e-7), "1.4999999999999999e-07");
        assert_eq!(format_double(-2.5), "-2.5");
        assert_eq!(format_double(f64::INFINITY), "inf");
        assert_eq!(format_double(f64::NEG_INFINITY), "-inf");
        assert_eq!(format_double(123456789.0), "123456789");
        assert_eq!(format_g(0.0001, 17), "0.0001");
        assert_eq!(format_g(0.00001, 17), "1.0000000000000001e-05");
        assert_eq!(encode(Protocol::Resp3, |r| r.double(2.0)), b",2\r\n");
        assert_eq!(encode(Protocol::Resp2, |r| r.double(2.0)), b"$1\r\n2\r\n");
    }
}
