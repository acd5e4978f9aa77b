//! Errors raised from Rust into a script, in the two shapes Redis's C functions raise them:
//! an error table (`{err = "CODE text"}`, as `redis.call` raises a command's error), or a
//! text with the caller's position (as `luaL_error` does: `user_script:1: ...`).
//!
//! mlua carries a Rust error through Lua as a userdata; the sandbox's error handler and
//! `pcall` turn it back into the table or the text with [`raised`].

use mlua::Lua;

/// Marks an error that is a table's `err` line.
const TABLE: &str = "\u{0}shoal-table\u{0}";

/// What a Rust error raised into Lua stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Raised {
    /// Redis's error table `{err = line}`.
    Table(String),
    /// An error text.
    Text(String),
}

/// An error raised as Redis's error table `{err = line}`.
pub(crate) fn table_error(line: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{TABLE}{line}"))
}

/// An error raised as `luaL_error` raises it: the text after the position of the function
/// that called the raising one (`user_script:3: `), if that is Lua code.
pub(crate) fn lua_error(lua: &Lua, message: impl std::fmt::Display) -> mlua::Error {
    let position = lua
        .inspect_stack(1, |debug| {
            let line = debug.current_line()?;
            let source = debug.source();
            Some(format!("{}:{line}: ", source.short_src?))
        })
        .flatten()
        .unwrap_or_default();
    mlua::Error::RuntimeError(format!("{position}{message}"))
}

/// An error raised as a plain text (no position: a C function's own `lua_error`).
pub(crate) fn text_error(message: impl std::fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(message.to_string())
}

/// What an error raised from Rust stands for.
pub(crate) fn raised(error: &mlua::Error) -> Raised {
    let mut error = error;
    while let mlua::Error::CallbackError { cause, .. } = error {
        error = cause;
    }
    match error {
        mlua::Error::RuntimeError(text) => match text.strip_prefix(TABLE) {
            Some(line) => Raised::Table(line.to_string()),
            None => Raised::Text(text.clone()),
        },
        mlua::Error::MemoryError(_) => Raised::Text("not enough memory".into()),
        mlua::Error::SyntaxError { message, .. } => Raised::Text(message.clone()),
        other => Raised::Text(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_and_texts_survive_the_trip_through_lua() {
        assert_eq!(raised(&table_error("ERR x")), Raised::Table("ERR x".into()));
        assert_eq!(raised(&text_error("boom")), Raised::Text("boom".into()));
    }
}
