//! Tests of hashes in the store: both encodings and the move between them, accounting,
//! eviction, field expiry, wrong-type access, the journal's reports and their replay, and a
//! model-based property test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;

use super::*;
use crate::journal_tests::entries;
use crate::tests::{get, set};

const T0: u64 = 1_700_000_000_000;

fn store() -> (Store, ManualClock) {
    let clock = ManualClock::new(T0);
    let store = Store::new(StoreConfig {
        shards: 4,
        clock: Arc::new(clock.clone()),
        seed: Some(11),
        ..StoreConfig::default()
    });
    (store, clock)
}

/// `HSET k f v` with an optional field expiry; whether the field is new.
fn hset_ex(s: &Store, k: &str, f: &str, v: &str, expiry: Option<u64>) -> bool {
    s.hash_write(k.as_bytes(), true, |slot| match slot {
        HashSlot::Hash(h) => h.set(f.as_bytes(), v.as_bytes(), expiry),
        HashSlot::Absent => unreachable!("created"),
    })
    .unwrap()
}

fn hset(s: &Store, k: &str, f: &str, v: &str) -> bool {
    hset_ex(s, k, f, v, None)
}

fn hdel(s: &Store, k: &str, f: &str) -> bool {
    s.hash_write(k.as_bytes(), false, |slot| match slot {
        HashSlot::Hash(h) => h.remove(f.as_bytes()),
        HashSlot::Absent => false,
    })
    .unwrap()
}

fn hget(s: &Store, k: &str, f: &str) -> Option<String> {
    s.hash_read(k.as_bytes(), |h| {
        h.and_then(|h| h.get(f.as_bytes()))
            .map(|f| String::from_utf8(f.value.to_vec()).unwrap())
    })
    .unwrap()
}

fn hlen(s: &Store, k: &str) -> usize {
    s.hash_read(k.as_bytes(), |h| h.map_or(0, HashRef::len))
        .unwrap()
}

fn encoding(s: &Store, k: &str) -> Encoding {
    s.object_info(k.as_bytes()).unwrap().encoding
}

#[test]
fn a_hash_moves_to_a_table_past_the_entry_limit_and_stays_there() {
    let (s, _) = store();
    for i in 0..DEFAULT_MAX_PACKED_ENTRIES {
        assert!(hset(&s, "default", &format!("f{i}"), "v"));
    }
    assert_eq!(encoding(&s, "default"), Encoding::Listpack);
    hset(&s, "default", "one more", "v");
    assert_eq!(encoding(&s, "default"), Encoding::Hashtable);
    s.remove(b"default");
    s.set_hash_limits(128, DEFAULT_MAX_PACKED_VALUE);
    for i in 0..128 {
        assert!(hset(&s, "h", &format!("f{i}"), "v"));
    }
    assert_eq!(encoding(&s, "h"), Encoding::Listpack);
    assert_eq!(s.kind_of(b"h"), Some(Kind::Hash));
    s.check_invariants();
    assert!(hset(&s, "h", "f128", "v"));
    assert_eq!(encoding(&s, "h"), Encoding::Hashtable);
    assert_eq!(hlen(&s, "h"), 129);
    s.check_invariants();
    for i in 0..120 {
        assert!(hdel(&s, "h", &format!("f{i}")));
    }
    assert_eq!(
        encoding(&s, "h"),
        Encoding::Hashtable,
        "as Redis: no way back"
    );
    assert_eq!(hget(&s, "h", "f125").as_deref(), Some("v"));
    s.check_invariants();
    for i in 120..129 {
        hdel(&s, "h", &format!("f{i}"));
    }
    assert_eq!(s.kind_of(b"h"), None, "a hash without fields is gone");
    assert_eq!(s.used_memory(), 0);
    s.check_invariants();
}

#[test]
fn a_long_field_or_value_moves_a_hash_to_a_table() {
    let (s, _) = store();
    hset(&s, "v", "f", &"x".repeat(64));
    hset(&s, "n", &"x".repeat(64), "v");
    assert_eq!(encoding(&s, "v"), Encoding::Listpack);
    assert_eq!(encoding(&s, "n"), Encoding::Listpack);
    hset(&s, "v", "g", &"x".repeat(65));
    hset(&s, "n", &"x".repeat(65), "v");
    assert_eq!(encoding(&s, "v"), Encoding::Hashtable);
    assert_eq!(encoding(&s, "n"), Encoding::Hashtable);
    s.set_hash_limits(2, 8);
    hset(&s, "small", "a", "1");
    hset(&s, "small", "b", "2");
    assert_eq!(encoding(&s, "small"), Encoding::Listpack);
    hset(&s, "small", "c", "3");
    assert_eq!(encoding(&s, "small"), Encoding::Hashtable);
    s.check_invariants();
}

#[test]
fn a_table_is_charged_and_freed_with_its_key() {
    let (s, _) = store();
    for i in 0..1000 {
        hset(&s, "big", &format!("field:{i}"), &format!("value:{i}"));
    }
    let with = s.used_memory();
    assert!(with > 1000 * 20, "fields are charged: {with}");
    assert_eq!(s.memory_usage(b"big"), Some(with));
    s.check_invariants();
    // Overwritten by a string (SET replaces any type).
    set(&s, "big", "now a string");
    assert_eq!(get(&s, "big").as_deref(), Some("now a string"));
    assert!(s.used_memory() < 100);
    s.check_invariants();
    assert_eq!(
        s.hash_write(b"big", true, |_| ()),
        Err(StoreError::WrongType),
        "HSET on a string is refused"
    );
    assert_eq!(s.kind_of(b"big"), Some(Kind::String));
}

#[test]
fn wrong_type_access_is_refused_both_ways() {
    let (s, _) = store();
    hset(&s, "h", "f", "v");
    set(&s, "s", "v");
    let wrong = Err(StoreError::WrongType);
    assert_eq!(s.get(b"h", |_| ()).map(|_| ()), wrong);
    assert_eq!(s.get_del(b"h", |_| ()).map(|_| ()), wrong);
    assert_eq!(s.append(b"h", b"x", 100).map(|_| ()), wrong);
    assert_eq!(s.set_range(b"h", 0, b"x", 100).map(|_| ()), wrong);
    let incr = s.update(b"h", Form::Auto, |_, _| Ok::<_, ()>((false, ())));
    assert_eq!(incr, Err(UpdateError::Store(StoreError::WrongType)));
    let get_set = SetOptions {
        reads_old: true,
        ..SetOptions::default()
    };
    assert_eq!(s.set(b"h", b"x", get_set, |_| {}).map(|_| ()), wrong);
    assert_eq!(s.hash_read(b"s", |_| ()), wrong);
    let mut seen = Vec::new();
    s.get_many([&b"h"[..], b"s"].into_iter(), |_, v| {
        seen.push(v.map(<[u8]>::to_vec))
    });
    assert_eq!(
        seen,
        [None, Some(b"v".to_vec())],
        "MGET reads a hash as nil"
    );
    assert_eq!(hget(&s, "h", "f").as_deref(), Some("v"));
}

#[test]
fn hashes_are_evicted_by_every_policy() {
    for policy in EvictionPolicy::ALL
        .into_iter()
        .filter(|&p| p != EvictionPolicy::NoEviction)
    {
        let (s, _) = store();
        s.set_policy(policy);
        for k in 0..40 {
            let key = format!("h{k}");
            for i in 0..(k % 3) * 100 + 5 {
                hset(&s, &key, &format!("f{i}"), "value");
            }
            s.expire(
                key.as_bytes(),
                (T0 + 10_000) as i64,
                ExpireCondition::default(),
            )
            .unwrap();
        }
        s.check_invariants();
        s.set_maxmemory(s.used_memory() / 3);
        s.make_room().unwrap();
        assert!(s.used_memory() <= s.maxmemory(), "{policy:?}");
        assert!(s.len() < 40);
        s.check_invariants();
    }
}

#[test]
fn fields_expire_on_access_and_the_last_one_takes_the_key() {
    let (s, clock) = store();
    for table in [false, true] {
        if table {
            s.set_hash_limits(0, 64);
        }
        hset_ex(&s, "h", "a", "1", Some(T0 + 100));
        hset_ex(&s, "h", "b", "2", Some(T0 + 200));
        hset(&s, "h", "c", "3");
        clock.set(T0 + 100);
        assert_eq!(hlen(&s, "h"), 3, "alive through its millisecond");
        clock.set(T0 + 101);
        assert_eq!(hget(&s, "h", "a"), None);
        assert_eq!(hlen(&s, "h"), 2);
        s.check_invariants();
        hdel(&s, "h", "c");
        clock.set(T0 + 201);
        assert_eq!(hlen(&s, "h"), 0);
        assert_eq!(s.kind_of(b"h"), None);
        assert_eq!(s.stats().expired_fields, if table { 4 } else { 2 });
        s.check_invariants();
        clock.set(T0);
    }
}

#[test]
fn copy_and_rename_keep_the_fields_and_the_encoding() {
    let (s, _) = store();
    s.set_hash_limits(128, DEFAULT_MAX_PACKED_VALUE);
    hset(&s, "small", "a", "1");
    for i in 0..200 {
        hset(&s, "big", &format!("f{i}"), "v");
    }
    assert!(s.copy(b"small", b"small2", false).unwrap());
    assert!(s.copy(b"big", b"big2", false).unwrap());
    assert_eq!(encoding(&s, "small2"), Encoding::Listpack);
    assert_eq!(encoding(&s, "big2"), Encoding::Hashtable);
    hset(&s, "big2", "f0", "changed");
    assert_eq!(
        hget(&s, "big", "f0").as_deref(),
        Some("v"),
        "a copy is separate"
    );
    s.rename(b"big", b"moved", false).unwrap();
    assert_eq!(hlen(&s, "moved"), 200);
    assert_eq!(s.kind_of(b"big"), None);
    s.check_invariants();
    s.clear();
    assert_eq!(s.used_memory(), 0);
}

/// A journal replaying what it hears into another store, as a replica does.
/// A change heard, to apply later.
type Replay = Box<dyn FnOnce(&Store) + Send>;

struct Mirror(Mutex<Vec<Replay>>);

impl Mirror {
    fn push(&self, f: impl FnOnce(&Store) + Send + 'static) {
        self.0.lock().unwrap().push(Box::new(f));
    }

    fn replay(&self, s: &Store) {
        for f in self.0.lock().unwrap().drain(..) {
            f(s);
        }
    }
}

impl Journal for Mirror {
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>) {
        let (k, v) = (key.to_vec(), value.to_vec());
        self.push(move |s| s.restore(&k, &v, expiry).unwrap());
    }
    fn delete(&self, key: &[u8]) {
        let k = key.to_vec();
        self.push(move |s| {
            s.remove(&k);
        });
    }
    fn put_value(&self, key: &[u8], kind: Kind, payload: &[u8], expiry: Option<u64>) {
        let (k, v) = (key.to_vec(), payload.to_vec());
        self.push(move |s| s.restore_value(&k, kind, &v, expiry).unwrap());
    }
    fn put_field(&self, key: &[u8], field: &[u8], value: &[u8], expiry: Option<u64>) {
        let (k, f, v) = (key.to_vec(), field.to_vec(), value.to_vec());
        self.push(move |s| s.restore_field(&k, &f, Some((&v, expiry))).unwrap());
    }
    fn delete_field(&self, key: &[u8], field: &[u8]) {
        let (k, f) = (key.to_vec(), field.to_vec());
        self.push(move |s| s.restore_field(&k, &f, None).unwrap());
    }
    fn set_expiry(&self, key: &[u8], expiry: Option<u64>) {
        let k = key.to_vec();
        self.push(move |s| s.restore_expiry(&k, expiry).unwrap());
    }
    fn flush(&self, _existed: &dyn Fn(&[u8]) -> bool) {
        self.push(Store::clear);
    }
}

#[derive(Debug, Clone)]
enum Op {
    Set(u8, u8, u8, Option<u8>),
    Del(u8, u8),
    Expire(u8, u8),
    Persist(u8),
    Rename(u8, u8),
    Copy(u8, u8),
    SetString(u8),
    DelKey(u8),
    Advance(u8),
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..4u8, 0..40u8, any::<u8>(), proptest::option::weighted(0.2, 0..50u8))
            .prop_map(|(k, f, v, e)| Op::Set(k, f, v, e)),
        4 => (0..4u8, 0..40u8).prop_map(|(k, f)| Op::Del(k, f)),
        1 => (0..4u8, 1..50u8).prop_map(|(k, t)| Op::Expire(k, t)),
        1 => (0..4u8).prop_map(Op::Persist),
        1 => (0..4u8, 0..4u8).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => (0..4u8, 0..4u8).prop_map(|(a, b)| Op::Copy(a, b)),
        1 => (0..4u8).prop_map(Op::SetString),
        1 => (0..4u8).prop_map(Op::DelKey),
        2 => (0..30u8).prop_map(Op::Advance),
        1 => Just(Op::Snapshot),
    ]
}

/// A hash of the model: field -> (value, expiry).
type Fields = HashMap<String, (String, Option<u64>)>;

/// The model: per key, its fields (`None`: a string) and expiry.
#[derive(Default, Clone)]
struct Model {
    keys: HashMap<String, (Option<Fields>, Option<u64>)>,
}

impl Model {
    /// Drops what is expired at `now`.
    fn settle(&mut self, now: u64) {
        self.keys.retain(|_, (fields, expiry)| {
            if expiry.is_some_and(|at| now > at) {
                return false;
            }
            if let Some(fields) = fields {
                fields.retain(|_, (_, e)| e.is_none_or(|at| now <= at));
                return !fields.is_empty();
            }
            true
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Random hash operations agree with a model, in both encodings, with exact accounting
    /// after every step; the journal's reports replayed on another store rebuild the same
    /// keyspace (and so does a snapshot taken at any point followed by the reports after it).
    #[test]
    fn hash_operations_agree_with_a_model(ops in proptest::collection::vec(op(), 1..120), small in any::<bool>()) {
        let (s, clock) = store();
        if small {
            s.set_hash_limits(6, 2);
        }
        let mirror = Arc::new(Mirror(Mutex::new(Vec::new())));
        s.set_journal(Some(mirror.clone()));
        let (replica, replica_clock) = store();
        let mut model = Model::default();
        let key = |k: u8| format!("k{k}");
        for op in &ops {
            let now = clock.now_ms();
            model.settle(now);
            match *op {
                Op::Set(k, f, v, e) => {
                    let expiry = e.map(|e| now + u64::from(e));
                    let (field, value) = (format!("f{f}"), format!("v{v}"));
                    let entry = model.keys.entry(key(k)).or_insert((Some(HashMap::new()), None));
                    match &mut entry.0 {
                        Some(fields) => {
                            let new = fields.insert(field.clone(), (value.clone(), expiry)).is_none();
                            prop_assert_eq!(hset_ex(&s, &key(k), &field, &value, expiry), new);
                        }
                        None => prop_assert_eq!(
                            s.hash_write(key(k).as_bytes(), true, |_| ()),
                            Err(StoreError::WrongType)
                        ),
                    }
                }
                Op::Del(k, f) => {
                    let field = format!("f{f}");
                    match model.keys.get_mut(&key(k)) {
                        Some((Some(fields), _)) => {
                            let was = fields.remove(&field).is_some();
                            prop_assert_eq!(hdel(&s, &key(k), &field), was);
                            if fields.is_empty() {
                                model.keys.remove(&key(k));
                            }
                        }
                        Some((None, _)) => {}
                        None => prop_assert!(!hdel(&s, &key(k), &field)),
                    }
                }
                Op::Expire(k, t) => {
                    let at = now + u64::from(t);
                    s.expire(key(k).as_bytes(), at as i64, ExpireCondition::default()).unwrap();
                    if let Some(entry) = model.keys.get_mut(&key(k)) {
                        entry.1 = Some(at);
                    }
                }
                Op::Persist(k) => {
                    s.persist(key(k).as_bytes()).unwrap();
                    if let Some(entry) = model.keys.get_mut(&key(k)) {
                        entry.1 = None;
                    }
                }
                Op::Rename(a, b) => {
                    s.rename(key(a).as_bytes(), key(b).as_bytes(), false).unwrap();
                    if let Some(v) = model.keys.remove(&key(a)) {
                        model.keys.insert(key(b), v);
                    }
                }
                Op::Copy(a, b) => {
                    if a != b {
                        s.copy(key(a).as_bytes(), key(b).as_bytes(), true).unwrap();
                        if let Some(v) = model.keys.get(&key(a)).cloned() {
                            model.keys.insert(key(b), v);
                        }
                    }
                }
                Op::SetString(k) => {
                    set(&s, &key(k), "text");
                    model.keys.insert(key(k), (None, None));
                }
                Op::DelKey(k) => {
                    s.remove(key(k).as_bytes());
                    model.keys.remove(&key(k));
                }
                Op::Advance(ms) => {
                    clock.advance(u64::from(ms));
                    if ms % 3 == 0 {
                        s.expire_cycle(std::time::Duration::from_secs(1));
                    }
                }
                Op::Snapshot => {
                    // A full resync: the replica starts over from a snapshot taken now.
                    replica.clear();
                    mirror.0.lock().unwrap().clear();
                    let mut cursor = 0;
                    loop {
                        cursor = s.scan_entries(cursor, 3, |k, kind, v, e| match kind {
                            Kind::String => replica.restore(k, v, e).unwrap(),
                            kind => replica.restore_value(k, kind, v, e).unwrap(),
                        });
                        if cursor == 0 {
                            break;
                        }
                    }
                }
            }
            s.check_invariants();
            let now = clock.now_ms();
            model.settle(now);
            for (k, (fields, expiry)) in &model.keys {
                match fields {
                    Some(fields) => {
                        prop_assert_eq!(hlen(&s, k), fields.len(), "key {}", k);
                        for (f, (v, _)) in fields {
                            prop_assert_eq!(hget(&s, k, f), Some(v.clone()));
                        }
                    }
                    None => prop_assert_eq!(get(&s, k), Some("text".to_string())),
                }
                let ttl = s.ttl(k.as_bytes());
                prop_assert_eq!(ttl, expiry.map_or(KeyTtl::Persistent, KeyTtl::ExpiresAt));
            }
            // A hash whose fields all expired is counted until it is next accessed (or the
            // active cycle meets it), as Redis counts expired keys.
            for k in 0..4 {
                if !model.keys.contains_key(&key(k)) {
                    prop_assert_eq!(s.hash_read(key(k).as_bytes(), |h| h.is_some()), Ok(false));
                }
            }
            prop_assert_eq!(s.len(), model.keys.len());
            replica_clock.set(now);
            mirror.replay(&replica);
            prop_assert_eq!(entries(&replica), entries(&s));
            replica.check_invariants();
        }
        s.clear();
        prop_assert_eq!(s.used_memory(), 0);
    }
}

#[test]
fn the_whole_state_payload_is_the_same_in_both_encodings() {
    let (s, _) = store();
    hset_ex(&s, "h", "a", "1", Some(T0 + 5));
    hset(&s, "h", "b", "2");
    let packed = entries(&s);
    s.set_hash_limits(0, 0);
    hset(&s, "h", "c", "3");
    hdel(&s, "h", "c");
    assert_eq!(encoding(&s, "h"), Encoding::Hashtable);
    assert_eq!(entries(&s), packed);
    let expected = format!("hash:a=1@Some({});b=2@None", T0 + 5).into_bytes();
    assert_eq!(packed[&b"h"[..]].0, expected);
}
