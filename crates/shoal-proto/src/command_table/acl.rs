//! What Redis's ACL needs of the command table: the categories (`@read`, `@admin`, ...) of
//! every Redis command and subcommand (Shoal's and the others, which rules may name too), and
//! where a command's keys are with the access each key spec declares.

use super::{CommandSpec, StaticValue};

/// The `@keyspace` category.
pub const KEYSPACE: u32 = 1 << 0;
/// The `@read` category.
pub const READ: u32 = 1 << 1;
/// The `@write` category.
pub const WRITE: u32 = 1 << 2;
/// The `@set` category.
pub const SET: u32 = 1 << 3;
/// The `@sortedset` category.
pub const SORTEDSET: u32 = 1 << 4;
/// The `@list` category.
pub const LIST: u32 = 1 << 5;
/// The `@hash` category.
pub const HASH: u32 = 1 << 6;
/// The `@string` category.
pub const STRING: u32 = 1 << 7;
/// The `@bitmap` category.
pub const BITMAP: u32 = 1 << 8;
/// The `@hyperloglog` category.
pub const HYPERLOGLOG: u32 = 1 << 9;
/// The `@geo` category.
pub const GEO: u32 = 1 << 10;
/// The `@stream` category.
pub const STREAM: u32 = 1 << 11;
/// The `@pubsub` category.
pub const PUBSUB: u32 = 1 << 12;
/// The `@admin` category.
pub const ADMIN: u32 = 1 << 13;
/// The `@fast` category.
pub const FAST: u32 = 1 << 14;
/// The `@slow` category.
pub const SLOW: u32 = 1 << 15;
/// The `@blocking` category.
pub const BLOCKING: u32 = 1 << 16;
/// The `@dangerous` category.
pub const DANGEROUS: u32 = 1 << 17;
/// The `@connection` category.
pub const CONNECTION: u32 = 1 << 18;
/// The `@transaction` category.
pub const TRANSACTION: u32 = 1 << 19;
/// The `@scripting` category.
pub const SCRIPTING: u32 = 1 << 20;

/// Category names in Redis's order (`ACL CAT` lists them so); category `i` is bit `1 << i`.
pub const CATEGORIES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The category bit called `name` (any case), if there is one.
pub fn category(name: &[u8]) -> Option<u32> {
    CATEGORIES
        .iter()
        .position(|c| c.as_bytes().eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

/// Every Redis command and subcommand by full name (`get`, `config|get`), sorted, with its
/// categories. Its index is the command's ACL id.
pub fn acl_commands() -> &'static [(&'static str, u32)] {
    super::acl_redis7::ACL_COMMANDS
}

/// The ACL id of the command or subcommand with this full name (any case).
pub fn acl_id(full_name: &[u8]) -> Option<usize> {
    let lower = full_name.to_ascii_lowercase();
    acl_commands()
        .binary_search_by(|(name, _)| name.as_bytes().cmp(&lower))
        .ok()
}

/// The ACL ids of a container's subcommands (`config` → `config|get`, `config|set`, ...).
pub fn acl_subcommands(id: usize) -> impl Iterator<Item = usize> {
    let all = acl_commands();
    let prefix = format!("{}|", all[id].0);
    (id + 1..all.len()).take_while(move |&i| all[i].0.starts_with(&prefix))
}

/// Read access to a key (a key spec's `access` flag).
pub const KEY_READ: u8 = 1;
/// Write access to a key (a key spec's `insert`, `update` or `delete` flag).
pub const KEY_WRITE: u8 = 2;

/// Where a range of keys is in a command line, and the access they get: one of Redis's key
/// specs with an `index` begin search and a `range` find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// [`KEY_READ`] and/or [`KEY_WRITE`].
    pub access: u8,
    index: i64,
    last_key: i64,
    key_step: i64,
    limit: i64,
}

impl KeySpec {
    /// The positions of the keys in a command line of `argc` arguments, as Redis finds them.
    pub fn positions(&self, argc: usize) -> impl Iterator<Item = usize> + use<> {
        let argc = argc as i64;
        let first = self.index;
        let last = if self.last_key >= 0 {
            first + self.last_key
        } else if self.limit <= 1 {
            argc + self.last_key
        } else {
            first + ((argc - first) / self.limit + self.last_key)
        };
        let step = self.key_step.max(1);
        let last = last.min(argc - 1);
        (first..=last)
            .step_by(step as usize)
            .filter(move |&i| i >= 1 && i < argc)
            .map(|i| i as usize)
    }
}

/// A command's key specs, read from its `COMMAND INFO` entry (key specs of other kinds than
/// `index`/`range`, which no command Shoal serves has, are left out).
pub fn key_specs(spec: &CommandSpec) -> Vec<KeySpec> {
    let StaticValue::Array(entry) = spec.info else {
        return Vec::new();
    };
    let Some(StaticValue::Set(specs) | StaticValue::Array(specs)) = entry.get(8) else {
        return Vec::new();
    };
    specs.iter().filter_map(key_spec).collect()
}

fn map_get<'a>(map: &'a StaticValue, key: &str) -> Option<&'a StaticValue> {
    let StaticValue::Map(items) = map else {
        return None;
    };
    items.chunks(2).find_map(|kv| match kv {
        [StaticValue::Bulk(k), v] if *k == key => Some(v),
        _ => None,
    })
}

fn int(value: Option<&StaticValue>) -> Option<i64> {
    match value? {
        StaticValue::Int(i) => Some(*i),
        _ => None,
    }
}

fn key_spec(value: &StaticValue) -> Option<KeySpec> {
    let mut access = 0;
    if let Some(StaticValue::Set(flags) | StaticValue::Array(flags)) = map_get(value, "flags") {
        for flag in flags.iter() {
            match flag {
                StaticValue::Simple("access") => access |= KEY_READ,
                StaticValue::Simple("insert" | "update" | "delete") => access |= KEY_WRITE,
                _ => {}
            }
        }
    }
    let begin = map_get(value, "begin_search")?;
    if !matches!(map_get(begin, "type"), Some(StaticValue::Bulk("index"))) {
        return None;
    }
    let index = int(map_get(map_get(begin, "spec")?, "index"))?;
    let find = map_get(value, "find_keys")?;
    if !matches!(map_get(find, "type"), Some(StaticValue::Bulk("range"))) {
        return None;
    }
    let range = map_get(find, "spec")?;
    Some(KeySpec {
        access,
        index,
        last_key: int(map_get(range, "lastkey"))?,
        key_step: int(map_get(range, "keystep"))?,
        limit: int(map_get(range, "limit"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command_table::lookup;

    #[test]
    fn categories_and_ids_come_from_redis() {
        let get = acl_id(b"GET").expect("get");
        assert_eq!(acl_commands()[get].1, READ | STRING | FAST);
        let config = acl_id(b"config").expect("config");
        let subs: Vec<&str> = acl_subcommands(config)
            .map(|i| acl_commands()[i].0)
            .collect();
        assert!(subs.contains(&"config|get") && subs.contains(&"config|set"));
        assert!(
            acl_id(b"lpush").is_some(),
            "commands Shoal lacks are named too"
        );
        assert_eq!(category(b"Admin"), Some(ADMIN));
        assert_eq!(category(b"nope"), None);
    }

    #[test]
    fn key_specs_give_positions_and_access() {
        let get = key_specs(lookup(b"get").expect("get"));
        assert_eq!(get.len(), 1);
        assert_eq!(get[0].access, KEY_READ);
        assert_eq!(get[0].positions(2).collect::<Vec<_>>(), [1]);
        let mset = key_specs(lookup(b"mset").expect("mset"));
        assert_eq!(mset[0].access, KEY_WRITE);
        assert_eq!(mset[0].positions(5).collect::<Vec<_>>(), [1, 3]);
        let del = key_specs(lookup(b"del").expect("del"));
        assert_eq!(del[0].positions(4).collect::<Vec<_>>(), [1, 2, 3]);
        let copy = key_specs(lookup(b"copy").expect("copy"));
        assert_eq!(copy.len(), 2);
        assert_eq!(copy[0].access, KEY_READ);
        assert_eq!(copy[1].access, KEY_WRITE);
        assert_eq!(copy[1].positions(3).collect::<Vec<_>>(), [2]);
    }
}
