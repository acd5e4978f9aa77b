//! `cjson`: lua-cjson 2.1.0 as Redis ships it: `cjson.encode`, `cjson.decode`, `cjson.null`
//! and the configuration functions at their defaults (numbers written with `%.14g`, an empty
//! table as `{}`, `/` escaped, excessively sparse arrays refused, 1000 levels deep at most).

use mlua::{LightUserData, Lua, MultiValue, Table, Value};

use crate::scripting::convert::number_text;
use crate::scripting::errors::lua_error;

/// Deepest nesting `encode` and `decode` take.
const MAX_DEPTH: usize = 1000;

/// The `cjson` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("encode", lua.create_function(encode)?)?;
    t.raw_set("new", lua.create_function(|lua, ()| library(lua))?)?;
    t.raw_set("decode", lua.create_function(decode)?)?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    for (name, value) in [
        ("encode_max_depth", 1000.0),
        ("decode_max_depth", 1000.0),
        ("encode_number_precision", 14.0),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |_, _: MultiValue| Ok(value))?,
        )?;
    }
    t.raw_set(
        "encode_keep_buffer",
        lua.create_function(|_, _: MultiValue| Ok(true))?,
    )?;
    t.raw_set(
        "encode_invalid_numbers",
        lua.create_function(|_, _: MultiValue| Ok(false))?,
    )?;
    t.raw_set(
        "decode_invalid_numbers",
        lua.create_function(|_, _: MultiValue| Ok(true))?,
    )?;
    t.raw_set(
        "encode_sparse_array",
        lua.create_function(|_, _: MultiValue| Ok((false, 2.0, 10.0)))?,
    )?;
    Ok(t)
}

/// `cjson.null`: a light userdata holding NULL.
fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

fn encode(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    if args.len() != 1 {
        return Err(lua_error(
            lua,
            "bad argument #1 to 'encode' (expected 1 argument)",
        ));
    }
    let mut out = Vec::new();
    encode_value(lua, &args[0], 0, &mut out)?;
    lua.create_string(out)
}

fn encode_value(lua: &Lua, value: &Value, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(n) => encode_number(lua, *n as f64, out)?,
        Value::Number(n) => encode_number(lua, *n, out)?,
        Value::String(s) => encode_string(&s.as_bytes(), out),
        Value::Table(t) => encode_table(lua, t, depth + 1, out)?,
        other => {
            return Err(lua_error(
                lua,
                format!("Cannot serialise {}: type not supported", other.type_name()),
            ));
        }
    }
    Ok(())
}

fn encode_number(lua: &Lua, n: f64, out: &mut Vec<u8>) -> mlua::Result<()> {
    if !n.is_finite() {
        return Err(lua_error(
            lua,
            "Cannot serialise number: must not be NaN or Inf",
        ));
    }
    out.extend_from_slice(number_text(n).as_bytes());
    Ok(())
}

/// A string as lua-cjson escapes it: `"`, `\`, `/`, control characters and DEL.
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// The array length of a table as lua-cjson finds it: `Some(n)` if every key is a positive
/// integer (and the array is not excessively sparse), `None` for an object.
fn array_length(lua: &Lua, t: &Table) -> mlua::Result<Option<usize>> {
    let mut max = 0usize;
    let mut items = 0usize;
    for pair in t.clone().pairs::<Value, Value>() {
        let (key, _) = pair?;
        let index = match key {
            Value::Integer(i) if i >= 1 => i as f64,
            Value::Number(f) if f >= 1.0 && f.floor() == f => f,
            _ => return Ok(None),
        };
        max = max.max(index as usize);
        items += 1;
    }
    if max > 10 && max > items * 2 {
        return Err(lua_error(
            lua,
            "Cannot serialise table: excessively sparse array",
        ));
    }
    Ok(Some(max))
}

fn encode_table(lua: &Lua, t: &Table, depth: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    if depth > MAX_DEPTH {
        return Err(lua_error(
            lua,
            format!("Cannot serialise, excessive nesting ({depth})"),
        ));
    }
    match array_length(lua, t)? {
        Some(len) if len > 0 => {
            out.push(b'[');
            for i in 1..=len {
                if i > 1 {
                    out.push(b',');
                }
                encode_value(lua, &t.raw_get::<Value>(i)?, depth, out)?;
            }
            out.push(b']');
        }
        _ => {
            out.push(b'{');
            let mut first = true;
            for pair in t.clone().pairs::<Value, Value>() {
                let (key, value) = pair?;
                if !first {
                    out.push(b',');
                }
                first = false;
                match &key {
                    Value::String(s) => encode_string(&s.as_bytes(), out),
                    Value::Integer(n) => encode_string(number_text(*n as f64).as_bytes(), out),
                    Value::Number(n) => encode_string(number_text(*n).as_bytes(), out),
                    other => {
                        return Err(lua_error(
                            lua,
                            format!(
                                "Cannot serialise {}: table key must be a number or string",
                                other.type_name()
                            ),
                        ));
                    }
                }
                out.push(b':');
                encode_value(lua, &value, depth, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// A token of lua-cjson's parser.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    ObjBegin,
    ObjEnd,
    ArrBegin,
    ArrEnd,
    String(Vec<u8>),
    Number(f64),
    Boolean(bool),
    Null,
    Colon,
    Comma,
    End,
    Error(&'static str),
}

impl Token {
    /// lua-cjson's name of the token's type in errors (an error token: its message).
    fn name(&self) -> &'static str {
        match self {
            Token::ObjBegin => "T_OBJ_BEGIN",
            Token::ObjEnd => "T_OBJ_END",
            Token::ArrBegin => "T_ARR_BEGIN",
            Token::ArrEnd => "T_ARR_END",
            Token::String(_) => "T_STRING",
            Token::Number(_) => "T_NUMBER",
            Token::Boolean(_) => "T_BOOLEAN",
            Token::Null => "T_NULL",
            Token::Colon => "T_COLON",
            Token::Comma => "T_COMMA",
            Token::End => "T_END",
            Token::Error(message) => message,
        }
    }
}

struct Parser<'a> {
    json: &'a [u8],
    pos: usize,
    depth: usize,
}

fn decode(lua: &Lua, args: MultiValue) -> mlua::Result<Value> {
    if args.len() != 1 {
        return Err(lua_error(
            lua,
            "bad argument #1 to 'decode' (expected 1 argument)",
        ));
    }
    let json = match &args[0] {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(n) => n.to_string().into_bytes(),
        Value::Number(n) => number_text(*n).into_bytes(),
        other => {
            return Err(lua_error(
                lua,
                format!(
                    "bad argument #1 to 'decode' (string expected, got {})",
                    other.type_name()
                ),
            ));
        }
    };
    let mut parser = Parser {
        json: &json,
        pos: 0,
        depth: 0,
    };
    let (token, at) = parser.next_token();
    let value = parser.value(lua, token, at)?;
    let (token, at) = parser.next_token();
    if token != Token::End {
        return Err(parse_error(lua, "the end", &token, at));
    }
    Ok(value)
}

fn parse_error(lua: &Lua, expected: &str, found: &Token, at: usize) -> mlua::Error {
    lua_error(
        lua,
        format!(
            "Expected {expected} but found {} at character {}",
            found.name(),
            at + 1
        ),
    )
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.json.get(self.pos).copied()
    }

    /// The next token and where it starts.
    fn next_token(&mut self) -> (Token, usize) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
        let at = self.pos;
        let Some(ch) = self.peek() else {
            return (Token::End, at);
        };
        let single = match ch {
            b'{' => Some(Token::ObjBegin),
            b'}' => Some(Token::ObjEnd),
            b'[' => Some(Token::ArrBegin),
            b']' => Some(Token::ArrEnd),
            b',' => Some(Token::Comma),
            b':' => Some(Token::Colon),
            _ => None,
        };
        if let Some(token) = single {
            self.pos += 1;
            return (token, at);
        }
        let rest = &self.json[self.pos..];
        let token = if ch == b'"' {
            // A string's error is reported where it was found.
            return match self.string() {
                Err(message) => (Token::Error(message), self.pos),
                Ok(s) => (Token::String(s), at),
            };
        } else if ch == b'-' || ch.is_ascii_digit() {
            self.number()
        } else if rest.starts_with(b"true") {
            self.pos += 4;
            Token::Boolean(true)
        } else if rest.starts_with(b"false") {
            self.pos += 5;
            Token::Boolean(false)
        } else if rest.starts_with(b"null") {
            self.pos += 4;
            Token::Null
        } else if invalid_number(rest) {
            self.number()
        } else {
            Token::Error("invalid token")
        };
        (token, at)
    }

    /// A number as `strtod` reads it (hex, `inf` and `nan` included, as lua-cjson allows).
    fn number(&mut self) -> Token {
        let rest = &self.json[self.pos..];
        let text = String::from_utf8_lossy(&rest[..rest.len().min(64)]);
        match strtod_prefix(&text) {
            Some((value, len)) => {
                self.pos += len;
                Token::Number(value)
            }
            None => Token::Error("invalid number"),
        }
    }

    /// A string's contents, or an error with the position left where it was found.
    fn string(&mut self) -> Result<Vec<u8>, &'static str> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(ch) = self.peek() else {
                return Err("unexpected end of string");
            };
            match ch {
                b'"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let backslash = self.pos;
                    let Some(escaped) = self.json.get(self.pos + 1).copied() else {
                        return Err("invalid escape code");
                    };
                    self.pos += 2;
                    match escaped {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => match self.unicode() {
                            Some(c) => {
                                let mut buf = [0; 4];
                                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                            }
                            None => {
                                self.pos = backslash;
                                return Err("invalid unicode escape code");
                            }
                        },
                        _ => {
                            self.pos = backslash;
                            return Err("invalid escape code");
                        }
                    }
                }
                _ => {
                    self.pos += 1;
                    out.push(ch);
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.json.get(self.pos..self.pos + 4)?;
        let value = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
        self.pos += 4;
        Some(value)
    }

    /// `\uXXXX` (after `\u`), a surrogate pair included.
    fn unicode(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if (0xD800..0xDC00).contains(&first) {
            if self.json.get(self.pos..self.pos + 2) != Some(b"\\u") {
                return None;
            }
            self.pos += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return None;
            }
            return char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00));
        }
        if (0xDC00..0xE000).contains(&first) {
            return None;
        }
        char::from_u32(first)
    }

    fn value(&mut self, lua: &Lua, token: Token, at: usize) -> mlua::Result<Value> {
        Ok(match token {
            Token::String(s) => Value::String(lua.create_string(s)?),
            Token::Number(n) => Value::Number(n),
            Token::Boolean(b) => Value::Boolean(b),
            Token::Null => null(),
            Token::ObjBegin => self.object(lua)?,
            Token::ArrBegin => self.array(lua)?,
            other => return Err(parse_error(lua, "value", &other, at)),
        })
    }

    fn descend(&mut self, lua: &Lua, at: usize) -> mlua::Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(lua_error(
                lua,
                format!(
                    "Found too many nested data structures ({}) at character {}",
                    self.depth,
                    at + 1
                ),
            ));
        }
        Ok(())
    }

    fn object(&mut self, lua: &Lua) -> mlua::Result<Value> {
        self.descend(lua, self.pos - 1)?;
        let table = lua.create_table()?;
        let (mut token, mut at) = self.next_token();
        if token == Token::ObjEnd {
            self.depth -= 1;
            return Ok(Value::Table(table));
        }
        loop {
            let Token::String(key) = token else {
                return Err(parse_error(lua, "object key string", &token, at));
            };
            let (colon, colon_at) = self.next_token();
            if colon != Token::Colon {
                return Err(parse_error(lua, "colon", &colon, colon_at));
            }
            let (value, value_at) = self.next_token();
            let value = self.value(lua, value, value_at)?;
            table.raw_set(lua.create_string(key)?, value)?;
            let (next, next_at) = self.next_token();
            match next {
                Token::ObjEnd => break,
                Token::Comma => {}
                other => return Err(parse_error(lua, "comma or object end", &other, next_at)),
            }
            (token, at) = self.next_token();
        }
        self.depth -= 1;
        Ok(Value::Table(table))
    }

    fn array(&mut self, lua: &Lua) -> mlua::Result<Value> {
        self.descend(lua, self.pos - 1)?;
        let table = lua.create_table()?;
        let (mut token, mut at) = self.next_token();
        if token == Token::ArrEnd {
            self.depth -= 1;
            return Ok(Value::Table(table));
        }
        let mut i = 1;
        loop {
            let value = self.value(lua, token, at)?;
            table.raw_set(i, value)?;
            i += 1;
            let (next, next_at) = self.next_token();
            match next {
                Token::ArrEnd => break,
                Token::Comma => {}
                other => return Err(parse_error(lua, "comma or array end", &other, next_at)),
            }
            (token, at) = self.next_token();
        }
        self.depth -= 1;
        Ok(Value::Table(table))
    }
}

/// Whether the text starts like a number JSON does not allow but lua-cjson reads
/// (`inf`, `nan`, hex).
fn invalid_number(rest: &[u8]) -> bool {
    let rest = rest.strip_prefix(b"-").unwrap_or(rest);
    let lower: Vec<u8> = rest.iter().take(3).map(u8::to_ascii_lowercase).collect();
    lower.starts_with(b"0x") || lower == b"inf" || lower == b"nan"
}

/// C's `strtod` on the start of `text`: the value and how many bytes it read.
fn strtod_prefix(text: &str) -> Option<(f64, usize)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let negative = bytes.first() == Some(&b'-');
    let lower = text[i..].to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix("0x") {
        let digits = hex.bytes().take_while(u8::is_ascii_hexdigit).count();
        if digits == 0 {
            return Some((0.0, i + 1));
        }
        let value = u64::from_str_radix(&hex[..digits.min(16)], 16).ok()? as f64;
        return Some((if negative { -value } else { value }, i + 2 + digits));
    }
    if lower.starts_with("infinity") || lower.starts_with("inf") {
        let len = if lower.starts_with("infinity") { 8 } else { 3 };
        return Some((
            if negative {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            },
            i + len,
        ));
    }
    if lower.starts_with("nan") {
        return Some((f64::NAN, i + 3));
    }
    let int_digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if bytes.get(i) == Some(&b'.') {
        frac_digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if int_digits + frac_digits > 0 {
            i += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = bytes[j..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp_digits > 0 {
            i = j + exp_digits;
        }
    }
    text[..i].parse::<f64>().ok().map(|v| (v, i))
}
