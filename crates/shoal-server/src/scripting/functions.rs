//! Redis 7 functions: the node's libraries (`FUNCTION LOAD`), what each registered, and each
//! thread's compiled copy of them.
//!
//! A library is loaded once on the thread that runs `FUNCTION LOAD` (its code runs with the
//! load-time globals and registers its functions, Redis's checks and errors), and kept as its
//! code and what it registered. Each worker thread has a Lua state for functions (apart from
//! its scripts' one, as Redis keeps a state per engine), and runs a library's code there again
//! the first time it calls one of its functions, to get its own callbacks.
//!
//! Every change of the set (load, delete, flush, restore) appends, while the set is locked,
//! the whole set to the replication stream as a `FUNCTION DUMP` payload (frame
//! `SHOAL.FUNCTIONS`), which a replica restores in place of its own.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mlua::{Function, Lua, MultiValue, Table, Value};
use parking_lot::{Mutex, RwLock};

use super::cache::ScriptFlags;
use super::errors::table_error;
use super::payload;
use super::vm::{Registered, Vm};
use crate::replication::Replication;

/// How long a library's code may run while it loads (Redis's `LOAD_TIMEOUT_MS`).
pub(crate) const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// A function a library registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FunctionInfo {
    /// Its name as registered.
    pub name: String,
    /// Its description, if given.
    pub description: Option<Vec<u8>>,
    /// Its flags (`shebang` set: a function's flags are always declared).
    pub flags: ScriptFlags,
}

/// A loaded library.
#[derive(Debug)]
pub(crate) struct Library {
    /// Its name (`#!lua name=...`).
    pub name: String,
    /// Its code as loaded, the shebang line included.
    pub code: Arc<[u8]>,
    /// Where the code after the shebang line starts.
    pub skip: usize,
    /// Its functions, by name.
    pub functions: Vec<FunctionInfo>,
}

/// The libraries, and their functions by name (any case, as Redis finds them).
#[derive(Debug, Default, Clone)]
pub(crate) struct Set {
    libraries: BTreeMap<String, Arc<Library>>,
    functions: HashMap<String, (Arc<Library>, usize)>,
}

impl Set {
    fn insert(&mut self, library: Arc<Library>) {
        for (i, f) in library.functions.iter().enumerate() {
            self.functions
                .insert(f.name.to_ascii_lowercase(), (library.clone(), i));
        }
        self.libraries.insert(library.name.clone(), library);
    }

    fn remove(&mut self, name: &str) -> Option<Arc<Library>> {
        let library = self.libraries.remove(name)?;
        for f in &library.functions {
            self.functions.remove(&f.name.to_ascii_lowercase());
        }
        Some(library)
    }

    /// The first of `library`'s functions another library has.
    fn clash<'a>(&self, library: &'a Library) -> Option<&'a str> {
        library
            .functions
            .iter()
            .find(|f| self.functions.contains_key(&f.name.to_ascii_lowercase()))
            .map(|f| f.name.as_str())
    }

    /// Adds a library as `FUNCTION LOAD` does (Redis's `functionsCreateWithLibraryCtx` once
    /// the code ran): `replace` drops the library of that name first.
    fn add(&mut self, library: Library, replace: bool) -> Result<(), String> {
        let old = if self.libraries.contains_key(&library.name) {
            if !replace {
                return Err(format!("Library '{}' already exists", library.name));
            }
            self.remove(&library.name)
        } else {
            None
        };
        if let Some(name) = self.clash(&library) {
            let error = format!("Function {name} already exists");
            if let Some(old) = old {
                self.insert(old);
            }
            return Err(error);
        }
        self.insert(Arc::new(library));
        Ok(())
    }

    /// The libraries, by name.
    pub fn libraries(&self) -> impl Iterator<Item = &Arc<Library>> {
        self.libraries.values()
    }

    /// The number of functions.
    pub fn function_count(&self) -> usize {
        self.functions.len()
    }

    /// The set as a `FUNCTION DUMP` payload.
    pub fn dump(&self) -> Vec<u8> {
        payload::dump(self.libraries.values().map(|l| &l.code[..]))
    }
}

/// How `FUNCTION RESTORE` joins the payload's libraries with the node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestorePolicy {
    /// `FLUSH`: the payload's set replaces the node's.
    Flush,
    /// `APPEND` (the default): a library the node has already is an error.
    Append,
    /// `REPLACE`: the payload's libraries replace the node's of the same name.
    Replace,
}

/// What runs now (`FUNCTION STATS`'s `running_script`).
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// The function's name.
    pub name: String,
    /// The `FCALL` line.
    pub command: Vec<Vec<u8>>,
    /// When it started.
    pub started: Instant,
}

/// The node's functions.
#[derive(Debug, Default)]
pub(crate) struct Functions {
    set: RwLock<Set>,
    /// Bumped by every change: threads drop their copies of libraries that are gone.
    generation: AtomicU64,
    /// The function running now, if one is.
    pub running: Mutex<Option<Running>>,
}

impl Functions {
    /// The library and index of the function with this name (any case).
    pub fn find(&self, name: &[u8]) -> Option<(Arc<Library>, usize)> {
        let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        self.set.read().functions.get(&name).cloned()
    }

    /// A copy of the set (cheap: libraries are shared).
    pub fn snapshot(&self) -> Set {
        self.set.read().clone()
    }

    /// The set as a `FUNCTION DUMP` payload.
    pub fn dump(&self) -> Vec<u8> {
        self.set.read().dump()
    }

    /// Changes the set with `change`; if it succeeds, the new set goes to the replication
    /// stream (while recording) before the set is unlocked, so the stream orders changes as
    /// the set saw them.
    fn change<R>(
        &self,
        replication: Option<&Replication>,
        change: impl FnOnce(&mut Set) -> Result<R, String>,
    ) -> Result<R, String> {
        let mut set = self.set.write();
        let result = change(&mut set)?;
        self.generation.fetch_add(1, Relaxed);
        if let Some(replication) = replication
            && replication.recording()
        {
            let mut frame = Vec::new();
            crate::replication::frames::functions(&mut frame, &set.dump());
            replication.record(&frame);
        }
        Ok(result)
    }

    /// `FUNCTION LOAD [REPLACE] code`: the library's name, or Redis's error text.
    pub fn load(
        &self,
        replication: &Replication,
        code: &[u8],
        replace: bool,
    ) -> Result<String, String> {
        let library = self.create(code)?;
        let name = library.name.clone();
        self.change(Some(replication), |set| set.add(library, replace))?;
        Ok(name)
    }

    /// `FUNCTION DELETE name`.
    pub fn delete(&self, replication: &Replication, name: &[u8]) -> Result<(), String> {
        let name = String::from_utf8_lossy(name);
        self.change(Some(replication), |set| {
            set.remove(&name)
                .map(drop)
                .ok_or_else(|| "Library not found".to_string())
        })
    }

    /// `FUNCTION FLUSH`.
    pub fn flush(&self, replication: &Replication) {
        let _ = self.change(Some(replication), |set| {
            *set = Set::default();
            Ok(())
        });
    }

    /// `FUNCTION RESTORE payload [policy]` (`replication` none: a replica restores its
    /// primary's set).
    pub fn restore(
        &self,
        replication: Option<&Replication>,
        payload: &[u8],
        policy: RestorePolicy,
    ) -> Result<(), String> {
        let codes = payload::parse(payload).map_err(|e| e.to_string())?;
        let mut restored = Set::default();
        for code in codes {
            restored.add(self.create(&code)?, false)?;
        }
        self.change(replication, |set| {
            if policy == RestorePolicy::Flush {
                *set = restored;
                return Ok(());
            }
            let mut joined = set.clone();
            for library in restored.libraries() {
                if joined.libraries.contains_key(&library.name) {
                    if policy == RestorePolicy::Append {
                        return Err(format!("Library {} already exists", library.name));
                    }
                    joined.remove(&library.name);
                }
            }
            for library in restored.libraries() {
                if let Some(name) = joined.clash(library) {
                    return Err(format!("Function {name} already exists"));
                }
            }
            for library in restored.libraries.into_values() {
                joined.insert(library);
            }
            *set = joined;
            Ok(())
        })
    }

    /// Reads a library's shebang and runs its code on this thread's state (Redis's
    /// `functionsCreateWithLibraryCtx` up to the set's checks).
    fn create(&self, code: &[u8]) -> Result<Library, String> {
        let (name, skip) = metadata(code)?;
        let registered = with_function_vm(self, |fvm| fvm.vm.load_library(code, skip))??;
        if registered.is_empty() {
            return Err("No functions registered".into());
        }
        let functions = registered
            .into_iter()
            .map(|r| FunctionInfo {
                name: String::from_utf8_lossy(&r.name).into_owned(),
                description: r.description,
                flags: r.flags,
            })
            .collect();
        Ok(Library {
            name,
            code: code.into(),
            skip,
            functions,
        })
    }
}

/// Reads a library's shebang line (Redis's `functionExtractLibMetaData` and the name and
/// engine checks): its name, and where its code starts.
fn metadata(code: &[u8]) -> Result<(String, usize), String> {
    if !code.starts_with(b"#!") {
        return Err("Missing library metadata".into());
    }
    let Some(end) = code.iter().position(|&b| b == b'\n') else {
        return Err("Invalid library metadata".into());
    };
    let Some(parts) = split_args(&code[..end]) else {
        return Err("Invalid library metadata".into());
    };
    let Some(first) = parts.first() else {
        return Err("Invalid library metadata".into());
    };
    let engine = String::from_utf8_lossy(first.get(2..).unwrap_or_default()).into_owned();
    let mut name: Option<Vec<u8>> = None;
    for part in &parts[1..] {
        if part.len() >= 5 && part[..5].eq_ignore_ascii_case(b"name=") {
            if name.is_some() {
                return Err(
                    "Invalid metadata value, name argument was given multiple times".into(),
                );
            }
            name = Some(part[5..].to_vec());
            continue;
        }
        return Err(format!(
            "Invalid metadata value given: {}",
            String::from_utf8_lossy(part)
        ));
    }
    let Some(name) = name else {
        return Err("Library name was not given".into());
    };
    if !valid_name(&name) {
        return Err(BAD_NAME.into());
    }
    if !engine.eq_ignore_ascii_case("lua") {
        return Err(format!("Engine '{engine}' not found"));
    }
    Ok((String::from_utf8_lossy(&name).into_owned(), end))
}

/// Redis's error for a bad library or function name (it says "Library" for both).
const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and \
                        must be at least one character long";

/// Redis's `functionsVerifyName`.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits a line into words as Redis's `sdssplitargs` does (quotes, escapes); `None` for
/// unbalanced quotes.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Some(words);
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = line.get(i) else {
                if quote.is_some() {
                    return None;
                }
                break;
            };
            match quote {
                Some(q) if c == b'\\' && q == b'"' && i + 1 < line.len() => {
                    word.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                    i += 1;
                }
                Some(q) if c == q => {
                    // A closing quote must be followed by a space or the end.
                    if line.get(i + 1).is_some_and(|b| !b.is_ascii_whitespace()) {
                        return None;
                    }
                    i += 1;
                    break;
                }
                Some(_) => word.push(c),
                None if c.is_ascii_whitespace() => break,
                None if c == b'"' || c == b'\'' => quote = Some(c),
                None => word.push(c),
            }
            i += 1;
        }
        words.push(word);
    }
}

thread_local! {
    /// The functions a library being loaded on this thread registered so far.
    static LOADING: RefCell<Option<Vec<Registered>>> = const { RefCell::new(None) };
    /// When the library being loaded on this thread must be done.
    static LOAD_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// This thread's state for functions, and its copies of the libraries.
    static FVM: RefCell<Option<FunctionVm>> = const { RefCell::new(None) };
}

/// Runs a library's code with `run`, collecting what it registers.
pub(crate) fn loading<R>(run: impl FnOnce() -> R) -> (R, Vec<Registered>) {
    LOADING.set(Some(Vec::new()));
    LOAD_DEADLINE.set(Some(Instant::now() + LOAD_TIMEOUT));
    let result = run();
    LOAD_DEADLINE.set(None);
    (result, LOADING.take().unwrap_or_default())
}

/// Whether a library loading on this thread has run out of time (the busy hook asks).
pub(crate) fn load_timed_out() -> bool {
    LOAD_DEADLINE.get().is_some_and(|at| Instant::now() >= at)
}

/// `redis.register_function(name, callback)` or `redis.register_function{...}`, with
/// Redis's checks and errors.
pub(crate) fn register_function(_: &Lua, args: MultiValue) -> mlua::Result<()> {
    let registered = read_registration(&args).map_err(|e| table_error(format!("ERR {e}")))?;
    LOADING.with_borrow_mut(|loading| {
        let Some(loading) = loading else {
            return Err(table_error(
                "ERR redis.register_function can only be called on FUNCTION LOAD command",
            ));
        };
        if !valid_name(&registered.name) {
            return Err(table_error(format!("ERR {BAD_NAME}")));
        }
        // A library's own functions are told apart by case (unlike the node's, in `FCALL`).
        if loading.iter().any(|r| r.name == registered.name) {
            return Err(table_error("ERR Function already exists in the library"));
        }
        loading.push(registered);
        Ok(())
    })
}

/// A string argument as Lua's `lua_isstring` takes it (strings and numbers).
fn lua_string(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::String(s) => Some(s.as_bytes().to_vec()),
        Value::Integer(n) => Some(n.to_string().into_bytes()),
        Value::Number(n) => Some(super::convert::number_text(*n).into_bytes()),
        _ => None,
    }
}

/// Reads `register_function`'s arguments (Redis's `luaRegisterFunctionReadArgs`).
fn read_registration(args: &MultiValue) -> Result<Registered, &'static str> {
    let mut flags = ScriptFlags {
        shebang: true,
        ..ScriptFlags::default()
    };
    match args.len() {
        2 => {
            let name = lua_string(&args[0])
                .ok_or("first argument to redis.register_function must be a string")?;
            let Value::Function(callback) = &args[1] else {
                return Err("second argument to redis.register_function must be a function");
            };
            Ok(Registered {
                name,
                callback: callback.clone(),
                description: None,
                flags,
            })
        }
        1 => {
            let Value::Table(table) = &args[0] else {
                return Err(
                    "calling redis.register_function with a single argument is only \
                            applicable to Lua table (representing named arguments).",
                );
            };
            let (mut name, mut description, mut callback) = (None, None, None);
            for pair in table.clone().pairs::<Value, Value>() {
                let (key, value) = pair.map_err(|_| "unknown argument given")?;
                let key = lua_string(&key)
                    .ok_or("named argument key given to redis.register_function is not a string")?;
                let key = String::from_utf8_lossy(&key).to_ascii_lowercase();
                match key.as_str() {
                    "function_name" => {
                        name = Some(lua_string(&value).ok_or(
                            "function_name argument given to redis.register_function must be \
                             a string",
                        )?);
                    }
                    "description" => {
                        description = Some(lua_string(&value).ok_or(
                            "description argument given to redis.register_function must be a \
                             string",
                        )?);
                    }
                    "callback" => {
                        let Value::Function(f) = value else {
                            return Err("callback argument given to redis.register_function \
                                        must be a function");
                        };
                        callback = Some(f);
                    }
                    "flags" => {
                        let Value::Table(list) = value else {
                            return Err("flags argument to redis.register_function must be a \
                                        table representing function flags");
                        };
                        read_flags(&list, &mut flags).ok_or("unknown flag given")?;
                    }
                    _ => return Err("unknown argument given to redis.register_function"),
                }
            }
            let name = name.ok_or("redis.register_function must get a function name argument")?;
            let callback =
                callback.ok_or("redis.register_function must get a callback argument")?;
            Ok(Registered {
                name,
                callback,
                description,
                flags,
            })
        }
        _ => Err("wrong number of arguments to redis.register_function"),
    }
}

/// Reads a function's flags (Redis's `luaRegisterFunctionReadFlags`).
fn read_flags(list: &Table, flags: &mut ScriptFlags) -> Option<()> {
    for i in 1.. {
        let value: Value = list.raw_get(i).ok()?;
        if value.is_nil() {
            return Some(());
        }
        let flag = String::from_utf8_lossy(&lua_string(&value)?).to_ascii_lowercase();
        match flag.as_str() {
            "no-writes" => flags.no_writes = true,
            "allow-oom" => flags.allow_oom = true,
            "allow-stale" => flags.allow_stale = true,
            "no-cluster" => flags.no_cluster = true,
            "allow-cross-slot-keys" => flags.allow_cross_slot = true,
            _ => return None,
        }
    }
    Some(())
}

/// The flags' names as `FUNCTION LIST` shows them, in Redis's order.
pub(crate) fn flag_names(flags: ScriptFlags) -> Vec<&'static str> {
    [
        (flags.no_writes, "no-writes"),
        (flags.allow_oom, "allow-oom"),
        (flags.allow_stale, "allow-stale"),
        (flags.no_cluster, "no-cluster"),
        (flags.allow_cross_slot, "allow-cross-slot-keys"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect()
}

/// A thread's state for functions and its copies of the node's libraries.
pub(crate) struct FunctionVm {
    /// The Lua state.
    pub vm: Vm,
    /// The set's generation the copies were last checked against.
    generation: u64,
    /// Each library's callbacks, by library name: the library they were made from, and the
    /// callbacks in its functions' order.
    libraries: HashMap<String, (Arc<Library>, Vec<Function>)>,
}

impl FunctionVm {
    /// The callback of `library`'s function `index`, loading the library on this thread
    /// first if it has not yet.
    pub fn callback(
        &mut self,
        functions: &Functions,
        library: &Arc<Library>,
        index: usize,
    ) -> Result<Function, String> {
        let generation = functions.generation.load(Relaxed);
        if generation != self.generation {
            let set = functions.set.read();
            self.libraries.retain(|name, (kept, _)| {
                set.libraries
                    .get(name)
                    .is_some_and(|now| Arc::ptr_eq(now, kept))
            });
            self.generation = generation;
        }
        let fresh = self
            .libraries
            .get(&library.name)
            .is_some_and(|(kept, _)| Arc::ptr_eq(kept, library));
        if !fresh {
            let registered = self
                .vm
                .load_library(&library.code, library.skip)
                .map_err(|e| format!("ERR {e}"))?;
            let callbacks = library
                .functions
                .iter()
                .map(|f| {
                    registered
                        .iter()
                        .find(|r| r.name == f.name.as_bytes())
                        .map(|r| r.callback.clone())
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| format!("ERR library {} changed", library.name))?;
            self.libraries
                .insert(library.name.clone(), (library.clone(), callbacks));
        }
        self.libraries
            .get(&library.name)
            .and_then(|(_, callbacks)| callbacks.get(index).cloned())
            .ok_or_else(|| "ERR Function not found".to_string())
    }
}

/// Runs `f` with this thread's state for `functions` (built first if needed).
pub(crate) fn with_function_vm<R>(
    functions: &Functions,
    f: impl FnOnce(&mut FunctionVm) -> R,
) -> Result<R, String> {
    let owner = (functions as *const Functions as usize, 0);
    FVM.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|fvm| fvm.vm.owner() != owner) {
            *slot = None;
            *slot = Some(FunctionVm {
                vm: Vm::new(owner).map_err(|e| format!("ERR {e}"))?,
                generation: u64::MAX,
                libraries: HashMap::new(),
            });
        }
        let fvm = slot
            .as_mut()
            .ok_or_else(|| "ERR no Lua state".to_string())?;
        Ok(f(fvm))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shebangs_name_libraries_as_redis_reads_them() {
        assert_eq!(metadata(b"#!lua name=a\nx"), Ok(("a".into(), 12)));
        assert_eq!(metadata(b"#!LUA  name=b_1  \n"), Ok(("b_1".into(), 17)));
        assert_eq!(
            metadata(b"return 1"),
            Err("Missing library metadata".into())
        );
        assert_eq!(
            metadata(b"#!lua name=a"),
            Err("Invalid library metadata".into())
        );
        assert_eq!(
            metadata(b"#!lua name=a name=b\n"),
            Err("Invalid metadata value, name argument was given multiple times".into())
        );
        assert_eq!(
            metadata(b"#!lua x=1\n"),
            Err("Invalid metadata value given: x=1".into())
        );
        assert_eq!(
            metadata(b"#!lua\n"),
            Err("Library name was not given".into())
        );
        assert_eq!(metadata(b"#!lua name=a-b\n"), Err(BAD_NAME.into()));
        assert_eq!(metadata(b"#!lua name=\"q w\"\n"), Err(BAD_NAME.into()));
        assert_eq!(
            metadata(b"#!py name=a\n"),
            Err("Engine 'py' not found".into())
        );
        assert_eq!(
            metadata(b"#!lua name=\"a\n"),
            Err("Invalid library metadata".into())
        );
    }
}
