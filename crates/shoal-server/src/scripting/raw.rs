//! The hot path of a script, on Lua's C API instead of mlua's values.
//!
//! mlua turns every string, table and argument that crosses between Rust and Lua into a
//! handle of its own, and (with a memory limit set, as here) runs each Lua allocation in a
//! protected call of its own, which allocates a C closure: for `EVALSHA` of a one-line script
//! that was most of the time spent. Here the values a script's call and its `redis.call`s
//! exchange are pushed and read on the Lua stack directly:
//!
//! * [`push_reply`] pushes a command's RESP reply as the Lua value Redis makes of it (what
//!   [`super::convert::reply_to_lua`] makes of a decoded reply), parsing it in place;
//! * [`push_error_table`] pushes Redis's error table `{err = line}`;
//! * [`push_array`] pushes `KEYS` and `ARGV`.
//!
//! # Raising
//!
//! A Lua error (out of memory, say) is a `longjmp` to the nearest protected call: it leaves
//! any Rust frame between without running its destructors. So every function here owns
//! nothing (no `Vec`, no guard) while it calls into Lua, and so must their callers: they work
//! on borrowed bytes, and finish all their Rust work before they push.

use std::ffi::c_int;

use mlua::ffi::{self, lua_State};

/// How deep a reply may nest (as [`shoal_proto::reply::decode`] allows).
const MAX_DEPTH: usize = 128;

/// A reply that does not parse: Lua gets `nil`, as from a reply that does not decode.
struct Malformed;

/// Pushes `bytes` as a Lua string.
///
/// # Safety
/// `state` is a live Lua state with a free stack slot; may raise a Lua error (see the module).
#[inline]
pub(crate) unsafe fn push_bytes(state: *mut lua_State, bytes: &[u8]) {
    // SAFETY: the caller's contract; the pointer and length describe `bytes`.
    unsafe { ffi::lua_pushlstring(state, bytes.as_ptr().cast(), bytes.len()) };
}

/// Pushes a table `{[field] = <the value on top of the stack>}` in the value's place.
///
/// # Safety
/// As [`push_bytes`], with a value on top of the stack and two more free slots.
unsafe fn wrap_in_field(state: *mut lua_State, field: &str) {
    // SAFETY: the caller's contract. Stack: value → value, table → value, table, field →
    // table, field, value (the value moved up) → table.
    unsafe {
        ffi::lua_createtable(state, 0, 1);
        ffi::lua_insert(state, -2);
        push_bytes(state, field.as_bytes());
        ffi::lua_insert(state, -2);
        ffi::lua_rawset(state, -3);
    }
}

/// Pushes Redis's error table `{err = line}`.
///
/// # Safety
/// As [`push_bytes`], with three free slots.
pub(crate) unsafe fn push_error_table(state: *mut lua_State, line: &[u8]) {
    // SAFETY: the caller's contract.
    unsafe {
        push_bytes(state, line);
        wrap_in_field(state, "err");
    }
}

/// Pushes a table of these strings as items 1..n (`KEYS`, `ARGV`).
///
/// # Safety
/// As [`push_bytes`], with two free slots.
pub(crate) unsafe fn push_array<'a>(
    state: *mut lua_State,
    items: impl ExactSizeIterator<Item = &'a [u8]>,
) {
    let len = c_int::try_from(items.len()).unwrap_or(c_int::MAX);
    // SAFETY: the caller's contract.
    unsafe {
        ffi::lua_createtable(state, len, 0);
        for (i, item) in items.enumerate() {
            push_bytes(state, item);
            ffi::lua_rawseti_(state, -2, (i + 1) as c_int);
        }
    }
}

/// Pushes the first reply in `buf` (RESP, in the protocol the script set: `resp3`) as Redis's
/// `redisProtocolToLuaType` makes it (see [`super::convert`]); a reply that does not parse,
/// or is cut short, as `nil`.
///
/// # Safety
/// `state` is a live Lua state; may raise a Lua error (see the module).
pub(crate) unsafe fn push_reply(state: *mut lua_State, buf: &[u8], resp3: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        let base = ffi::lua_gettop(state);
        let mut pos = 0;
        if push_at(state, buf, &mut pos, 0, resp3).is_err() {
            ffi::lua_settop(state, base);
            ffi::lua_pushnil(state);
        }
    }
}

/// The null of the script's protocol: `nil` (RESP3) or `false`.
unsafe fn push_null(state: *mut lua_State, resp3: bool) {
    // SAFETY: the caller's contract.
    unsafe {
        if resp3 {
            ffi::lua_pushnil(state);
        } else {
            ffi::lua_pushboolean(state, 0);
        }
    }
}

/// The position of the `\r\n` that ends the line starting at `from`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let mut at = 0;
    loop {
        let cr = at + rest[at..].iter().position(|&b| b == b'\r')?;
        if rest.get(cr + 1) == Some(&b'\n') {
            return Some(from + cr);
        }
        at = cr + 1;
    }
}

fn number(line: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(Malformed)
}

/// Pushes the value at `pos` (and moves past it); on `Err` the stack holds whatever was
/// pushed so far, for [`push_reply`] to drop.
unsafe fn push_at(
    state: *mut lua_State,
    buf: &[u8],
    pos: &mut usize,
    depth: usize,
    resp3: bool,
) -> Result<(), Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let &kind = buf.get(*pos).ok_or(Malformed)?;
    if !b"+-:,(_#$=!*~>%".contains(&kind) {
        return Err(Malformed);
    }
    let end = line_end(buf, *pos + 1).ok_or(Malformed)?;
    let line = &buf[*pos + 1..end];
    let after_line = end + 2;
    // SAFETY: the caller's contract; each value takes at most 3 slots beyond those of the
    // values it nests, which `lua_checkstack` makes room for.
    unsafe {
        if ffi::lua_checkstack(state, 4) == 0 {
            return Err(Malformed);
        }
        match kind {
            b'+' => {
                push_bytes(state, line);
                wrap_in_field(state, "ok");
            }
            b'-' => push_error_table(state, line),
            b':' => ffi::lua_pushnumber(state, number(line)? as f64),
            b',' => {
                let n = std::str::from_utf8(line)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .unwrap_or(0.0);
                ffi::lua_pushnumber(state, n);
                wrap_in_field(state, "double");
            }
            b'(' => {
                push_bytes(state, line);
                wrap_in_field(state, "big_number");
            }
            b'_' => push_null(state, resp3),
            b'#' => match line {
                b"t" => ffi::lua_pushboolean(state, 1),
                b"f" => ffi::lua_pushboolean(state, 0),
                _ => return Err(Malformed),
            },
            b'$' | b'=' | b'!' => {
                let len = number(line)?;
                if len < 0 {
                    push_null(state, resp3);
                    *pos = after_line;
                    return Ok(());
                }
                let data_end = usize::try_from(len)
                    .ok()
                    .and_then(|len| after_line.checked_add(len))
                    .filter(|end| end.checked_add(2).is_some())
                    .ok_or(Malformed)?;
                if buf.len() < data_end + 2 || &buf[data_end..data_end + 2] != b"\r\n" {
                    return Err(Malformed);
                }
                let data = &buf[after_line..data_end];
                match kind {
                    b'$' => push_bytes(state, data),
                    b'!' => push_error_table(state, data),
                    _ => {
                        if data.len() < 4 || data[3] != b':' {
                            return Err(Malformed);
                        }
                        ffi::lua_createtable(state, 0, 2);
                        push_bytes(state, b"format");
                        push_bytes(state, &data[..3]);
                        ffi::lua_rawset(state, -3);
                        push_bytes(state, b"string");
                        push_bytes(state, &data[4..]);
                        ffi::lua_rawset(state, -3);
                        wrap_in_field(state, "verbatim_string");
                    }
                }
                *pos = data_end + 2;
                return Ok(());
            }
            _ => {
                // `*`, `~`, `>`, `%`.
                let len = number(line)?;
                *pos = after_line;
                if len < 0 {
                    push_null(state, resp3);
                    return Ok(());
                }
                let count = c_int::try_from(len).map_err(|_| Malformed)?;
                match kind {
                    b'*' | b'>' => {
                        ffi::lua_createtable(state, count.min(1024), 0);
                        for i in 1..=count {
                            push_at(state, buf, pos, depth + 1, resp3)?;
                            ffi::lua_rawseti_(state, -2, i);
                        }
                    }
                    b'~' => {
                        ffi::lua_createtable(state, 0, count.min(1024));
                        for _ in 0..count {
                            push_at(state, buf, pos, depth + 1, resp3)?;
                            set_pair(state, |state| ffi::lua_pushboolean(state, 1));
                        }
                        wrap_in_field(state, "set");
                    }
                    _ => {
                        ffi::lua_createtable(state, 0, count.min(1024));
                        for _ in 0..count {
                            push_at(state, buf, pos, depth + 1, resp3)?;
                            push_at(state, buf, pos, depth + 1, resp3)?;
                            // Stack: map, key, value.
                            if ffi::lua_type(state, -2) == ffi::LUA_TNIL {
                                // A null key (never in a reply of Redis's commands) has no
                                // place in a Lua table.
                                ffi::lua_settop(state, -3);
                            } else {
                                ffi::lua_rawset(state, -3);
                            }
                        }
                        wrap_in_field(state, "map");
                    }
                }
                return Ok(());
            }
        }
    }
    *pos = after_line;
    Ok(())
}

/// With a table and a key on the stack: sets `table[key]` to the value `value` pushes and
/// pops the key (a `nil` key is dropped: Lua tables have no place for it).
unsafe fn set_pair(state: *mut lua_State, value: impl FnOnce(*mut lua_State)) {
    // SAFETY: the caller's contract: a table and a key on top of the stack, a free slot.
    unsafe {
        if ffi::lua_type(state, -1) == ffi::LUA_TNIL {
            ffi::lua_settop(state, -2);
            return;
        }
        value(state);
        ffi::lua_rawset(state, -3);
    }
}

#[cfg(test)]
mod tests {
    use mlua::{Lua, Value};

    use super::*;

    /// What [`push_reply`] makes of `reply`, next to what the decoding conversion makes.
    fn both(reply: &[u8], resp3: bool) -> (String, String) {
        let lua = Lua::new();
        let describe = lua
            .load(
                r#"
                local function d(v)
                  if type(v) ~= 'table' then return type(v) .. ':' .. tostring(v) end
                  local keys = {}
                  for k in pairs(v) do keys[#keys + 1] = k end
                  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
                  local parts = {}
                  for _, k in ipairs(keys) do parts[#parts + 1] = d(k) .. '=' .. d(v[k]) end
                  return '{' .. table.concat(parts, ',') .. '}'
                end
                return d
                "#,
            )
            .eval::<mlua::Function>()
            .unwrap();
        // SAFETY: a live state with room on its stack; the closure owns nothing.
        let pushed: Value = unsafe {
            lua.exec_raw((), |state| push_reply(state, reply, resp3))
                .unwrap()
        };
        let decoded = match shoal_proto::reply::decode(reply) {
            Ok(Some((value, _))) => {
                super::super::convert::reply_to_lua(&lua, value, resp3).unwrap()
            }
            _ => Value::Nil,
        };
        (
            describe.call(pushed).unwrap(),
            describe.call(decoded).unwrap(),
        )
    }

    #[test]
    fn replies_become_what_the_decoding_conversion_makes() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR boom\r\n",
            b":42\r\n",
            b":-7\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"_\r\n",
            b"#t\r\n",
            b"#f\r\n",
            b",3.25\r\n",
            b",inf\r\n",
            b",bogus\r\n",
            b"(123456789012345678901234567890\r\n",
            b"=8\r\ntxt:abcd\r\n",
            b"!5\r\nERR x\r\n",
            b"*3\r\n$1\r\na\r\n:1\r\n*2\r\n+x\r\n$-1\r\n",
            b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n*1\r\n#t\r\n",
            b"~2\r\n$1\r\na\r\n:5\r\n",
            b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n",
            b"*0\r\n",
            b"$5\r\nhel",
            b"*2\r\n$1\r\na\r\n",
            b"?\r\n",
            b":x\r\n",
            b"$3\r\nabcde\r\n",
            b"=3\r\nabc\r\n",
            b"",
            b"$3\r\na\rb\r\n",
        ];
        for reply in replies {
            for resp3 in [false, true] {
                let (pushed, decoded) = both(reply, resp3);
                assert_eq!(
                    pushed,
                    decoded,
                    "{:?} (resp3: {resp3})",
                    String::from_utf8_lossy(reply)
                );
            }
        }
    }
}
