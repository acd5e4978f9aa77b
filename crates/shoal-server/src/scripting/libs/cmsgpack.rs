//! `cmsgpack`: lua-cmsgpack 0.4 as Redis ships it: `cmsgpack.pack(...)` (each argument
//! encoded in turn; integral numbers as the smallest integer, others as a float if a float
//! holds them exactly, else a double; a table as an array when its keys are exactly 1..n,
//! else a map; tables nested deeper than 16 as nil), `cmsgpack.unpack(s)`,
//! `cmsgpack.unpack_one(s [, offset])` and `cmsgpack.unpack_limit(s, limit [, offset])`.

use mlua::{Lua, MultiValue, Table, Value};

use super::bit::number_arg;
use crate::scripting::errors::lua_error;

/// Tables nested deeper are packed as nil.
const MAX_NESTING: usize = 16;

/// The `cmsgpack` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.raw_set("pack", lua.create_function(pack)?)?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, args: MultiValue| unpack_full(lua, &args, 0, 0))?,
    )?;
    t.raw_set(
        "unpack_one",
        lua.create_function(|lua, args: MultiValue| {
            let offset = optional_int(lua, &args, 2, "unpack_one")?;
            unpack_full(lua, &args, 1, offset)
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(|lua, args: MultiValue| {
            let limit = number_arg(lua, &args, 2, "unpack_limit")? as i64;
            let offset = optional_int(lua, &args, 3, "unpack_limit")?;
            unpack_full(lua, &args, limit, offset)
        })?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}

fn optional_int(lua: &Lua, args: &MultiValue, n: usize, function: &str) -> mlua::Result<i64> {
    match args.get(n - 1) {
        None | Some(Value::Nil) => Ok(0),
        Some(_) => Ok(number_arg(lua, args, n, function)? as i64),
    }
}

fn pack(lua: &Lua, args: MultiValue) -> mlua::Result<mlua::LuaString> {
    if args.is_empty() {
        return Err(lua_error(
            lua,
            "bad argument #0 to 'pack' (MessagePack pack needs input.)",
        ));
    }
    let mut out = Vec::new();
    for value in args.iter() {
        encode(value, 0, &mut out)?;
    }
    lua.create_string(out)
}

fn encode(value: &Value, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    match value {
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(n) => encode_int(*n, out),
        Value::Number(n) => encode_number(*n, out),
        Value::String(s) => encode_bytes(&s.as_bytes(), out),
        Value::Table(t) if level < MAX_NESTING => encode_table(t, level, out)?,
        _ => out.push(0xc0),
    }
    Ok(())
}

fn encode_number(n: f64, out: &mut Vec<u8>) {
    if n.is_finite() && (n as i64) as f64 == n {
        encode_int(n as i64, out);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_int(n: i64, out: &mut Vec<u8>) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_bytes(s: &[u8], out: &mut Vec<u8>) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if len <= 0xff {
        out.extend_from_slice(&[0xd9, len as u8]);
    } else if len <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
    out.extend_from_slice(s);
}

/// An array's or a map's header.
fn header(out: &mut Vec<u8>, len: usize, fix: u8, sixteen: u8, thirty_two: u8) {
    if len < 16 {
        out.push(fix | len as u8);
    } else if len <= 0xffff {
        out.push(sixteen);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(thirty_two);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

fn encode_table(t: &Table, level: usize, out: &mut Vec<u8>) -> mlua::Result<()> {
    let pairs: Vec<(Value, Value)> = t
        .clone()
        .pairs::<Value, Value>()
        .collect::<mlua::Result<_>>()?;
    let mut max = 0.0f64;
    let is_array = pairs.iter().all(|(k, _)| {
        let n = match k {
            Value::Integer(i) => *i as f64,
            Value::Number(f) => *f,
            _ => return false,
        };
        max = max.max(n);
        n > 0.0 && n.is_finite() && (n as i64) as f64 == n
    }) && max == pairs.len() as f64;
    if is_array {
        header(out, pairs.len(), 0x90, 0xdc, 0xdd);
        for i in 1..=pairs.len() {
            encode(&t.raw_get::<Value>(i)?, level + 1, out)?;
        }
    } else {
        header(out, pairs.len(), 0x80, 0xde, 0xdf);
        for (k, v) in &pairs {
            encode(k, level + 1, out)?;
            encode(v, level + 1, out)?;
        }
    }
    Ok(())
}

/// Why decoding stopped.
enum Bad {
    Eof,
    Format,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Bad> {
        let bytes = self.data.get(self.pos..self.pos + n).ok_or(Bad::Eof)?;
        self.pos += n;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, Bad> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn decode(&mut self, lua: &Lua) -> Result<Value, Bad> {
        let tag = self.take(1)?[0];
        Ok(match tag {
            0x00..=0x7f => Value::Number(f64::from(tag)),
            0xe0..=0xff => Value::Number(f64::from(tag as i8)),
            0x80..=0x8f => self.map(lua, usize::from(tag & 0x0f))?,
            0x90..=0x9f => self.array(lua, usize::from(tag & 0x0f))?,
            0xa0..=0xbf => self.string(lua, usize::from(tag & 0x1f))?,
            0xc0 => Value::Nil,
            0xc2 => Value::Boolean(false),
            0xc3 => Value::Boolean(true),
            0xc4 | 0xd9 => {
                let n = self.uint(1)? as usize;
                self.string(lua, n)?
            }
            0xc5 | 0xda => {
                let n = self.uint(2)? as usize;
                self.string(lua, n)?
            }
            0xc6 | 0xdb => {
                let n = self.uint(4)? as usize;
                self.string(lua, n)?
            }
            0xca => Value::Number(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Number(f64::from_bits(self.uint(8)?)),
            0xcc => Value::Number(self.uint(1)? as f64),
            0xcd => Value::Number(self.uint(2)? as f64),
            0xce => Value::Number(self.uint(4)? as f64),
            0xcf => Value::Number(self.uint(8)? as f64),
            0xd0 => Value::Number(f64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Number(f64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Number(f64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Number(self.uint(8)? as i64 as f64),
            0xdc => {
                let n = self.uint(2)? as usize;
                self.array(lua, n)?
            }
            0xdd => {
                let n = self.uint(4)? as usize;
                self.array(lua, n)?
            }
            0xde => {
                let n = self.uint(2)? as usize;
                self.map(lua, n)?
            }
            0xdf => {
                let n = self.uint(4)? as usize;
                self.map(lua, n)?
            }
            _ => return Err(Bad::Format),
        })
    }

    fn string(&mut self, lua: &Lua, n: usize) -> Result<Value, Bad> {
        let bytes = self.take(n)?;
        lua.create_string(bytes)
            .map(Value::String)
            .map_err(|_| Bad::Format)
    }

    fn array(&mut self, lua: &Lua, n: usize) -> Result<Value, Bad> {
        let t = lua.create_table().map_err(|_| Bad::Format)?;
        for i in 1..=n {
            let v = self.decode(lua)?;
            t.raw_set(i, v).map_err(|_| Bad::Format)?;
        }
        Ok(Value::Table(t))
    }

    fn map(&mut self, lua: &Lua, n: usize) -> Result<Value, Bad> {
        let t = lua.create_table().map_err(|_| Bad::Format)?;
        for _ in 0..n {
            let k = self.decode(lua)?;
            let v = self.decode(lua)?;
            if !k.is_nil() {
                t.raw_set(k, v).map_err(|_| Bad::Format)?;
            }
        }
        Ok(Value::Table(t))
    }
}

/// `mp_unpack_full`: every value (`limit` 0 and `offset` 0), or up to `limit` values from
/// `offset` with the next offset (-1 at the end) first.
fn unpack_full(lua: &Lua, args: &MultiValue, limit: i64, offset: i64) -> mlua::Result<MultiValue> {
    let data = match args.front() {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(Value::Integer(n)) => n.to_string().into_bytes(),
        Some(Value::Number(n)) => crate::scripting::convert::number_text(*n).into_bytes(),
        other => {
            return Err(lua_error(
                lua,
                format!(
                    "bad argument #1 to 'unpack' (string expected, got {})",
                    other.map_or("no value", Value::type_name)
                ),
            ));
        }
    };
    let decode_all = limit == 0 && offset == 0;
    if offset < 0 || limit < 0 {
        return Err(lua_error(
            lua,
            format!(
                "Invalid request to unpack with offset of {offset} and limit of {}.",
                data.len()
            ),
        ));
    }
    if offset as usize > data.len() {
        return Err(lua_error(
            lua,
            format!(
                "Start offset {offset} greater than input length {}.",
                data.len()
            ),
        ));
    }
    let limit = if decode_all { i64::MAX } else { limit };
    let mut cursor = Cursor {
        data: &data,
        pos: offset as usize,
    };
    let mut values = Vec::new();
    while cursor.pos < data.len() && (values.len() as i64) < limit {
        match cursor.decode(lua) {
            Ok(v) => values.push(v),
            Err(Bad::Eof) => return Err(lua_error(lua, "Missing bytes in input.")),
            Err(Bad::Format) => return Err(lua_error(lua, "Bad data format in input.")),
        }
    }
    if !decode_all {
        let next = if cursor.pos == data.len() {
            -1.0
        } else {
            cursor.pos as f64
        };
        values.insert(0, Value::Number(next));
    }
    Ok(values.into_iter().collect())
}
