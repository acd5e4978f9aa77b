//! Conversions between replies and Lua values, by Redis 7.0's rules
//! (`redisProtocolToLuaType`, `luaReplyToRedisReply`).
//!
//! A command's reply, to Lua: an integer is a number, a bulk string a string, a null (RESP2)
//! `false`, a status `{ok=...}`, an error `{err=...}`, an array a table; in RESP3 (after
//! `redis.setresp(3)`) a null is `nil`, a map `{map={...}}`, a set `{set={k=true}}`, a double
//! `{double=n}`, a big number `{big_number=s}`, a verbatim string
//! `{verbatim_string={format=f, string=s}}` and a boolean a boolean.
//!
//! A script's value, to the client: a string is a bulk string, a number an integer (truncated
//! as C casts it), `true` `:1` and `false` a null (RESP3 scripts: booleans), a table with a
//! string `err` an error, with `ok` a status, with `double`, `big_number`,
//! `verbatim_string`, `map` or `set` those types (in the client's protocol), any other table
//! an array of its items up to the first `nil`; anything else a null.

use mlua::{Lua, Table, Value as Lua_};
#[cfg(test)]
use shoal_proto::reply::Value;
use shoal_proto::{Protocol, Reply};

/// How deep a script's value may nest before Redis's "reached lua stack limit".
const MAX_DEPTH: usize = 1000;

/// A command's reply (decoded in the script's protocol) as a Lua value: the reference that
/// [`super::raw::push_reply`], which scripts use, is tested against.
#[cfg(test)]
pub(crate) fn reply_to_lua(lua: &Lua, value: Value, resp3: bool) -> mlua::Result<Lua_> {
    Ok(match value {
        Value::Int(n) => Lua_::Number(n as f64),
        Value::Bulk(data) => Lua_::String(lua.create_string(data)?),
        Value::Null | Value::NullArray if resp3 => Lua_::Nil,
        Value::Null | Value::NullArray => Lua_::Boolean(false),
        Value::Simple(text) => single(lua, "ok", Lua_::String(lua.create_string(text)?))?,
        Value::Error(line) | Value::BulkError(line) => error_table(lua, &line)?,
        Value::Array(items) | Value::Push(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                table.raw_set(i + 1, reply_to_lua(lua, item, resp3)?)?;
            }
            Lua_::Table(table)
        }
        Value::Map(pairs) => {
            let map = lua.create_table_with_capacity(0, pairs.len())?;
            for (k, v) in pairs {
                map.raw_set(reply_to_lua(lua, k, resp3)?, reply_to_lua(lua, v, resp3)?)?;
            }
            single(lua, "map", Lua_::Table(map))?
        }
        Value::Set(items) => {
            let set = lua.create_table_with_capacity(0, items.len())?;
            for item in items {
                set.raw_set(reply_to_lua(lua, item, resp3)?, true)?;
            }
            single(lua, "set", Lua_::Table(set))?
        }
        Value::Double(text) => {
            let number = std::str::from_utf8(&text)
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .unwrap_or(0.0);
            single(lua, "double", Lua_::Number(number))?
        }
        Value::Boolean(b) => Lua_::Boolean(b),
        Value::BigNumber(text) => {
            single(lua, "big_number", Lua_::String(lua.create_string(text)?))?
        }
        Value::Verbatim(format, text) => {
            let inner = lua.create_table()?;
            inner.raw_set("format", lua.create_string(format)?)?;
            inner.raw_set("string", lua.create_string(text)?)?;
            single(lua, "verbatim_string", Lua_::Table(inner))?
        }
    })
}

/// `{field = value}`.
fn single(lua: &Lua, field: &str, value: Lua_) -> mlua::Result<Lua_> {
    let table = lua.create_table_with_capacity(0, 1)?;
    table.raw_set(field, value)?;
    Ok(Lua_::Table(table))
}

/// `{err = line}`: an error as a script sees it.
pub(crate) fn error_table(lua: &Lua, line: &[u8]) -> mlua::Result<Lua_> {
    single(lua, "err", Lua_::String(lua.create_string(line)?))
}

/// 2^63.
pub(crate) const TWO_63: f64 = 9_223_372_036_854_775_808.0;

/// A Lua number as C casts it to `long long` (out of range and NaN: the x86 result,
/// `i64::MIN`).
pub(crate) fn c_long_long(n: f64) -> i64 {
    if n.is_nan() || !(-TWO_63..TWO_63).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// A Lua number as Lua 5.1's `tostring` writes it (`%.14g`).
pub(crate) fn number_text(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n > 0.0 { "inf" } else { "-inf" }.into();
    }
    shoal_proto::encode::format_g(n, 14)
}

/// Writes a script's value as the reply to its client (`protocol`), booleans as the script's
/// protocol (`script_resp3`) says.
pub(crate) fn write_lua_reply(
    out: &mut Vec<u8>,
    protocol: Protocol,
    script_resp3: bool,
    value: &Lua_,
) {
    write_value(out, protocol, script_resp3, value, 0);
}

fn write_value(out: &mut Vec<u8>, protocol: Protocol, resp3: bool, value: &Lua_, depth: usize) {
    let mut reply = Reply::new(out, protocol);
    match value {
        Lua_::String(s) => reply.bulk(&s.as_bytes()),
        Lua_::Boolean(b) if resp3 => reply.boolean(*b),
        Lua_::Boolean(true) => reply.int(1),
        Lua_::Integer(n) => reply.int(*n),
        Lua_::Number(n) => reply.int(c_long_long(*n)),
        Lua_::Table(table) if depth >= MAX_DEPTH => {
            let _ = table;
            shoal_frontdoor::write_error_line(out, b"ERR reached lua stack limit");
        }
        Lua_::Table(table) => write_table(out, protocol, resp3, table, depth),
        _ => reply.null(),
    }
}

fn string_field(table: &Table, field: &str) -> Option<mlua::LuaString> {
    match table.raw_get::<Lua_>(field) {
        Ok(Lua_::String(s)) => Some(s),
        _ => None,
    }
}

fn write_table(out: &mut Vec<u8>, protocol: Protocol, resp3: bool, table: &Table, depth: usize) {
    if let Some(err) = string_field(table, "err") {
        let mut line = b"-".to_vec();
        line.extend_from_slice(&err.as_bytes());
        write_error(out, &line);
        return;
    }
    if let Some(ok) = string_field(table, "ok") {
        write_status(out, &ok.as_bytes());
        return;
    }
    if let Ok(Lua_::Number(n)) = table.raw_get::<Lua_>("double") {
        Reply::new(out, protocol).double(n);
        return;
    }
    if let Ok(Lua_::Integer(n)) = table.raw_get::<Lua_>("double") {
        Reply::new(out, protocol).double(n as f64);
        return;
    }
    if let Some(big) = string_field(table, "big_number") {
        let text: Vec<u8> = big.as_bytes().iter().map(|&b| clean(b)).collect();
        match protocol {
            Protocol::Resp2 => Reply::new(out, protocol).bulk(&text),
            Protocol::Resp3 => {
                out.push(b'(');
                out.extend_from_slice(&text);
                out.extend_from_slice(b"\r\n");
            }
        }
        return;
    }
    if let Ok(Lua_::Table(verbatim)) = table.raw_get::<Lua_>("verbatim_string")
        && let (Some(format), Some(text)) = (
            string_field(&verbatim, "format"),
            string_field(&verbatim, "string"),
        )
    {
        write_verbatim(out, protocol, &format.as_bytes(), &text.as_bytes());
        return;
    }
    if let Ok(Lua_::Table(map)) = table.raw_get::<Lua_>("map") {
        let pairs: Vec<(Lua_, Lua_)> = map.pairs::<Lua_, Lua_>().filter_map(Result::ok).collect();
        Reply::new(out, protocol).map(pairs.len());
        for (k, v) in &pairs {
            write_value(out, protocol, resp3, k, depth + 1);
            write_value(out, protocol, resp3, v, depth + 1);
        }
        return;
    }
    if let Ok(Lua_::Table(set)) = table.raw_get::<Lua_>("set") {
        let keys: Vec<Lua_> = set
            .pairs::<Lua_, Lua_>()
            .filter_map(|p| p.ok().map(|(k, _)| k))
            .collect();
        Reply::new(out, protocol).set(keys.len());
        for k in &keys {
            write_value(out, protocol, resp3, k, depth + 1);
        }
        return;
    }
    let mut items = Vec::new();
    for i in 1.. {
        match table.raw_get::<Lua_>(i) {
            Ok(Lua_::Nil) | Err(_) => break,
            Ok(v) => items.push(v),
        }
    }
    Reply::new(out, protocol).array(items.len());
    for item in &items {
        write_value(out, protocol, resp3, item, depth + 1);
    }
}

/// `\r` and `\n` as spaces, as Redis's `sdsmapchars` makes them in status lines.
fn clean(b: u8) -> u8 {
    if b == b'\r' || b == b'\n' { b' ' } else { b }
}

/// A status line (`+...`), its line breaks turned into spaces.
fn write_status(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'+');
    out.extend(text.iter().map(|&b| clean(b)));
    out.extend_from_slice(b"\r\n");
}

/// An error line as Redis's `addReplyErrorFormat("-%s")` writes it: the text up to a NUL
/// byte, `-ERR ` added unless it starts with `-`.
pub(crate) fn write_error(out: &mut Vec<u8>, line: &[u8]) {
    let line = shoal_proto::args::c_str(line);
    match line.strip_prefix(b"-") {
        Some(rest) => shoal_frontdoor::write_error_line(out, rest),
        None => {
            let mut with_code = b"ERR ".to_vec();
            with_code.extend_from_slice(line);
            shoal_frontdoor::write_error_line(out, &with_code);
        }
    }
}

fn write_verbatim(out: &mut Vec<u8>, protocol: Protocol, format: &[u8], text: &[u8]) {
    match protocol {
        Protocol::Resp2 => Reply::new(out, protocol).bulk(text),
        Protocol::Resp3 => {
            let format = &format[..format.len().min(3)];
            let mut padded = [b' '; 3];
            padded[..format.len()].copy_from_slice(format);
            out.push(b'=');
            out.extend_from_slice((text.len() + 4).to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&padded);
            out.push(b':');
            out.extend_from_slice(text);
            out.extend_from_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_truncate_as_c_casts_them() {
        assert_eq!(c_long_long(3.99), 3);
        assert_eq!(c_long_long(-3.7), -3);
        assert_eq!(c_long_long(1e20), i64::MIN);
        assert_eq!(c_long_long(f64::NAN), i64::MIN);
        assert_eq!(number_text(1.5), "1.5");
        assert_eq!(number_text(1e100), "1e+100");
        assert_eq!(number_text(3.0), "3");
    }
}
