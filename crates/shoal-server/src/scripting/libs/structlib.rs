//! `struct`: Roberto Ierusalimschy's lua-struct 0.2 as Redis ships it: `struct.pack`,
//! `struct.unpack`, `struct.size` on a little-endian 64-bit machine (`l`, `L` and `T` are 8
//! bytes, alignment at most 8).

use mlua::{Lua, MultiValue, Table, Value};

use super::bit::number_arg;
use crate::scripting::errors::lua_error;

/// Largest integer size (`i32` is the most).
const MAX_INT_SIZE: usize = 32;
/// Largest alignment (`!` alone).
const MAX_ALIGN: usize = 8;

/// The `struct` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lua.create_function(pack)?)?;
    t.raw_set("unpack", lua.create_function(unpack)?)?;
    t.raw_set("size", lua.create_function(size)?)?;
    Ok(t)
}

/// Byte order and alignment in force.
struct Header {
    little: bool,
    align: usize,
}

/// Reads a format, option by option.
struct Format<'a> {
    fmt: &'a [u8],
    pos: usize,
    function: &'static str,
}

fn bad_arg(lua: &Lua, n: usize, function: &str, what: &str) -> mlua::Error {
    lua_error(lua, format!("bad argument #{n} to '{function}' ({what})"))
}

impl Format<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = self.fmt.get(self.pos).copied()?;
        self.pos += 1;
        Some(c)
    }

    /// An optional number after an option (`getnum`).
    fn number(&mut self, lua: &Lua, default: usize) -> mlua::Result<usize> {
        if !self.fmt.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(default);
        }
        let mut a: usize = 0;
        while let Some(d) = self.fmt.get(self.pos).filter(|d| d.is_ascii_digit()) {
            a = a * 10 + usize::from(d - b'0');
            if a > i32::MAX as usize {
                return Err(lua_error(lua, "integral size overflow"));
            }
            self.pos += 1;
        }
        Ok(a)
    }

    /// An option's size (`optsize`).
    fn size(&mut self, lua: &Lua, opt: u8) -> mlua::Result<usize> {
        Ok(match opt {
            b'B' | b'b' | b'x' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.number(lua, 1)?,
            b'i' | b'I' => {
                let size = self.number(lua, 4)?;
                if size > MAX_INT_SIZE {
                    return Err(lua_error(
                        lua,
                        format!("integral size {size} is larger than limit of {MAX_INT_SIZE}"),
                    ));
                }
                size
            }
            _ => 0,
        })
    }

    /// A control option (`controloptions`).
    fn control(&mut self, lua: &Lua, opt: u8, h: &mut Header) -> mlua::Result<()> {
        match opt {
            b' ' => {}
            b'>' => h.little = false,
            b'<' | b'=' => h.little = true,
            b'!' => {
                let a = self.number(lua, MAX_ALIGN)?;
                if !a.is_power_of_two() {
                    return Err(lua_error(lua, format!("alignment {a} is not a power of 2")));
                }
                h.align = a;
            }
            other => {
                return Err(bad_arg(
                    lua,
                    1,
                    self.function,
                    &format!("invalid format option '{}'", other as char),
                ));
            }
        }
        Ok(())
    }
}

/// Padding before an option at `len` (`gettoalign`).
fn to_align(len: usize, h: &Header, opt: u8, size: usize) -> usize {
    if size == 0 || opt == b'c' {
        return 0;
    }
    let size = size.min(h.align);
    (size - (len & (size - 1))) & (size - 1)
}

fn format_arg(lua: &Lua, args: &MultiValue, function: &'static str) -> mlua::Result<Vec<u8>> {
    match args.front() {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Integer(n)) => Ok(n.to_string().into_bytes()),
        Some(Value::Number(n)) => Ok(crate::scripting::convert::number_text(*n).into_bytes()),
        other => Err(bad_arg(
            lua,
            1,
            function,
            &format!(
                "string expected, got {}",
                other.map_or("no value", Value::type_name)
            ),
        )),
    }
}

fn string_arg(lua: &Lua, args: &MultiValue, n: usize, function: &str) -> mlua::Result<Vec<u8>> {
    match args.get(n - 1) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Integer(i)) => Ok(i.to_string().into_bytes()),
        Some(Value::Number(f)) => Ok(crate::scripting::convert::number_text(*f).into_bytes()),
        other => Err(bad_arg(
            lua,
            n,
            function,
            &format!(
                "string expected, got {}",
                other.map_or("no value", Value::type_name)
            ),
        )),
    }
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    let fmt = format_arg(lua, &args, "pack")?;
    // lua-struct pushes a nil after its arguments: a missing one reads as nil.
    let mut args = args;
    args.push_back(Value::Nil);
    let mut f = Format {
        fmt: &fmt,
        pos: 0,
        function: "pack",
    };
    let mut h = Header {
        little: true,
        align: 1,
    };
    let mut out = Vec::new();
    let mut arg = 2;
    while let Some(opt) = f.next() {
        let mut size = f.size(lua, opt)?;
        let pad = to_align(out.len(), &h, opt, size);
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = number_arg(lua, &args, arg, "pack")?;
                arg += 1;
                let mut value: u64 = if n < 0.0 { n as i64 as u64 } else { n as u64 };
                let mut bytes = vec![0u8; size];
                for i in 0..size {
                    let at = if h.little { i } else { size - 1 - i };
                    bytes[at] = (value & 0xff) as u8;
                    value = value.checked_shr(8).unwrap_or(0);
                }
                out.extend_from_slice(&bytes);
            }
            b'x' => out.push(0),
            b'f' => {
                let v = number_arg(lua, &args, arg, "pack")? as f32;
                arg += 1;
                out.extend_from_slice(&if h.little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                });
            }
            b'd' => {
                let v = number_arg(lua, &args, arg, "pack")?;
                arg += 1;
                out.extend_from_slice(&if h.little {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                });
            }
            b'c' | b's' => {
                let s = string_arg(lua, &args, arg, "pack")?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    return Err(bad_arg(lua, arg, "pack", "string too short"));
                }
                out.extend_from_slice(&s[..size]);
                if opt == b's' {
                    out.push(0);
                }
            }
            other => f.control(lua, other, &mut h)?,
        }
    }
    lua.create_string(out)
}

fn unpack(lua: &Lua, args: MultiValue) -> mlua::Result<MultiValue> {
    let fmt = format_arg(lua, &args, "unpack")?;
    let data = string_arg(lua, &args, 2, "unpack")?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1.0,
        Some(_) => number_arg(lua, &args, 3, "unpack")?,
    };
    if start < 1.0 {
        return Err(bad_arg(lua, 3, "unpack", "offset must be 1 or greater"));
    }
    let mut pos = (start as i64 - 1) as usize;
    let mut f = Format {
        fmt: &fmt,
        pos: 0,
        function: "unpack",
    };
    let mut h = Header {
        little: true,
        align: 1,
    };
    let mut results: Vec<Value> = Vec::new();
    while let Some(opt) = f.next() {
        let mut size = f.size(lua, opt)?;
        pos += to_align(pos, &h, opt, size);
        if size > data.len() || pos > data.len() - size {
            return Err(bad_arg(lua, 2, "unpack", "data string too short"));
        }
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let bytes = &data[pos..pos + size];
                let mut l: u64 = 0;
                for i in 0..size {
                    let b = if h.little {
                        bytes[size - 1 - i]
                    } else {
                        bytes[i]
                    };
                    l = (l << 8) | u64::from(b);
                }
                let value = if opt.is_ascii_lowercase() && size > 0 && size <= 8 {
                    let shift = 64 - size * 8;
                    (((l << shift) as i64) >> shift) as f64
                } else {
                    l as f64
                };
                results.push(Value::Number(value));
            }
            b'x' => {}
            b'f' => {
                let b: [u8; 4] = data[pos..pos + 4].try_into().unwrap_or_default();
                let v = if h.little {
                    f32::from_le_bytes(b)
                } else {
                    f32::from_be_bytes(b)
                };
                results.push(Value::Number(f64::from(v)));
            }
            b'd' => {
                let b: [u8; 8] = data[pos..pos + 8].try_into().unwrap_or_default();
                let v = if h.little {
                    f64::from_le_bytes(b)
                } else {
                    f64::from_be_bytes(b)
                };
                results.push(Value::Number(v));
            }
            b'c' => {
                if size == 0 {
                    let Some(Value::Number(n)) = results.pop() else {
                        return Err(lua_error(lua, "format 'c0' needs a previous size"));
                    };
                    size = n as usize;
                    if size > data.len() || pos > data.len() - size {
                        return Err(bad_arg(lua, 2, "unpack", "data string too short"));
                    }
                }
                results.push(Value::String(lua.create_string(&data[pos..pos + size])?));
            }
            b's' => {
                let Some(end) = data[pos..].iter().position(|&b| b == 0) else {
                    return Err(lua_error(lua, "unfinished string in data"));
                };
                size = end + 1;
                results.push(Value::String(lua.create_string(&data[pos..pos + end])?));
            }
            other => f.control(lua, other, &mut h)?,
        }
        pos += size;
    }
    results.push(Value::Number((pos + 1) as f64));
    Ok(results.into_iter().collect())
}

fn size(lua: &Lua, args: MultiValue) -> mlua::Result<f64> {
    let fmt = format_arg(lua, &args, "size")?;
    let mut f = Format {
        fmt: &fmt,
        pos: 0,
        function: "size",
    };
    let mut h = Header {
        little: true,
        align: 1,
    };
    let mut pos = 0;
    while let Some(opt) = f.next() {
        let size = f.size(lua, opt)?;
        pos += to_align(pos, &h, opt, size);
        if opt == b's' {
            return Err(bad_arg(lua, 1, "size", "option 's' has no fixed size"));
        }
        if opt == b'c' && size == 0 {
            return Err(bad_arg(lua, 1, "size", "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            f.control(lua, opt, &mut h)?;
        }
        pos += size;
    }
    Ok(pos as f64)
}
