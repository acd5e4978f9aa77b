//! Tests of the journal (every change reported as the resulting state of its key) and of
//! `scan_entries`, through the public API with a manual clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::tests::{get, set, set_ex};

const T0: u64 = 1_700_000_000_000;

/// One call the journal heard.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Effect {
    Put(Vec<u8>, Vec<u8>, Option<u64>),
    Delete(Vec<u8>),
    PutValue(Vec<u8>, Kind, Vec<u8>, Option<u64>),
    PutField(Vec<u8>, Vec<u8>, Vec<u8>, Option<u64>),
    DeleteField(Vec<u8>, Vec<u8>),
    SetExpiry(Vec<u8>, Option<u64>),
    Flush,
    BeginUnit,
    EndUnit,
}

fn put(k: &str, v: &str, expiry: Option<u64>) -> Effect {
    Effect::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec(), expiry)
}

fn delete(k: &str) -> Effect {
    Effect::Delete(k.as_bytes().to_vec())
}

/// A journal that records what it hears.
#[derive(Default)]
struct Recorder(Mutex<Vec<Effect>>);

impl Journal for Recorder {
    fn put(&self, key: &[u8], value: &[u8], expiry: Option<u64>) {
        let effect = Effect::Put(key.to_vec(), value.to_vec(), expiry);
        self.0.lock().unwrap().push(effect);
    }
    fn delete(&self, key: &[u8]) {
        self.0.lock().unwrap().push(Effect::Delete(key.to_vec()));
    }
    fn put_value(&self, key: &[u8], kind: Kind, payload: &[u8], expiry: Option<u64>) {
        let effect = Effect::PutValue(key.to_vec(), kind, payload.to_vec(), expiry);
        self.0.lock().unwrap().push(effect);
    }
    fn put_field(&self, key: &[u8], field: &[u8], value: &[u8], expiry: Option<u64>) {
        let effect = Effect::PutField(key.to_vec(), field.to_vec(), value.to_vec(), expiry);
        self.0.lock().unwrap().push(effect);
    }
    fn delete_field(&self, key: &[u8], field: &[u8]) {
        let effect = Effect::DeleteField(key.to_vec(), field.to_vec());
        self.0.lock().unwrap().push(effect);
    }
    fn set_expiry(&self, key: &[u8], expiry: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(Effect::SetExpiry(key.to_vec(), expiry));
    }
    fn flush(&self, _existed: &dyn Fn(&[u8]) -> bool) {
        self.0.lock().unwrap().push(Effect::Flush);
    }
    fn begin_unit(&self) {
        self.0.lock().unwrap().push(Effect::BeginUnit);
    }
    fn end_unit(&self) {
        self.0.lock().unwrap().push(Effect::EndUnit);
    }
}

impl Recorder {
    /// What was heard since the last call.
    fn take(&self) -> Vec<Effect> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

type Entries = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn new_store(
    shards: usize,
    seed: u64,
    maxmemory: usize,
    policy: EvictionPolicy,
    clock: &ManualClock,
) -> Store {
    Store::new(StoreConfig {
        shards,
        maxmemory,
        policy,
        clock: Arc::new(clock.clone()),
        events: None,
        seed: Some(seed),
    })
}

/// A store of 4 shards with a recorder set as its journal.
fn journaled() -> (Store, Arc<Recorder>, ManualClock) {
    let clock = ManualClock::new(T0);
    let store = new_store(4, 42, 0, EvictionPolicy::AllKeysLru, &clock);
    let recorder = Arc::new(Recorder::default());
    store.set_journal(Some(recorder.clone()));
    (store, recorder, clock)
}

fn incr(s: &Store, k: &[u8], by: i64) -> Result<i64, UpdateError<()>> {
    s.update(k, Form::Auto, |current, out| {
        let n = match current {
            None => 0,
            Some(v) => parse_i64(v).ok_or(())?,
        };
        let n = n.checked_add(by).ok_or(())?;
        if by == 0 && current.is_some() {
            return Ok((false, n)); // nothing to write
        }
        out.extend_from_slice(n.to_string().as_bytes());
        Ok((true, n))
    })
}

/// Every live entry, read with `scan_entries` in small steps (a hash as its fields in order,
/// as `canonical` writes them).
pub(crate) fn entries(s: &Store) -> Entries {
    let mut all = Entries::new();
    let mut cursor = 0;
    loop {
        cursor = s.scan_entries(cursor, 7, |k, kind, v, e| {
            all.insert(k.to_vec(), (canonical(kind, v), e));
        });
        if cursor == 0 {
            return all;
        }
    }
}

/// A value as text that does not depend on its encoding: a string as it is, a hash as
/// `hash:field=value@expiry;...` in field order.
pub(crate) fn canonical(kind: Kind, value: &[u8]) -> Vec<u8> {
    if kind == Kind::String {
        return value.to_vec();
    }
    let mut fields: Vec<String> = crate::value::packed::Packed::new(value)
        .iter()
        .map(|f| {
            format!(
                "{}={}@{:?}",
                String::from_utf8_lossy(f.name),
                String::from_utf8_lossy(f.value),
                f.expiry
            )
        })
        .collect();
    fields.sort();
    format!("hash:{}", fields.join(";")).into_bytes()
}

/// Applies what a journal heard to `s`, as a replica would.
fn replay(s: &Store, effects: &[Effect]) {
    for effect in effects {
        match effect {
            Effect::Put(k, v, e) => s.restore(k, v, *e).unwrap(),
            Effect::Delete(k) => drop(s.remove(k)),
            Effect::PutValue(k, kind, v, e) => s.restore_value(k, *kind, v, *e).unwrap(),
            Effect::PutField(k, f, v, e) => s.restore_field(k, f, Some((v, *e))).unwrap(),
            Effect::DeleteField(k, f) => s.restore_field(k, f, None).unwrap(),
            Effect::SetExpiry(k, e) => s.restore_expiry(k, *e).unwrap(),
            Effect::Flush => s.clear(),
            Effect::BeginUnit | Effect::EndUnit => {}
        }
    }
}

#[test]
fn writes_report_the_resulting_state() {
    let (s, j, clock) = journaled();
    set(&s, "a", "1");
    assert_eq!(j.take(), [put("a", "1", None)]);
    set_ex(&s, "a", "2", T0 + 100);
    assert_eq!(j.take(), [put("a", "2", Some(T0 + 100))]);
    let keep = SetOptions {
        ttl: TtlUpdate::Keep,
        ..SetOptions::default()
    };
    s.set(b"a", b"3", keep, |_| {}).unwrap();
    assert_eq!(j.take(), [put("a", "3", Some(T0 + 100))]);
    // A SET whose expiry is not in the future deletes.
    set_ex(&s, "a", "4", T0);
    assert_eq!(j.take(), [delete("a")]);
    set_ex(&s, "missing", "4", T0);
    assert_eq!(j.take(), [], "deleting nothing changes nothing");

    assert!(
        s.set_many([(&b"m1"[..], &b"x"[..]), (b"m2", b"y")].into_iter(), false)
            .unwrap()
    );
    let mut heard = j.take();
    heard.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(heard, [put("m1", "x", None), put("m2", "y", None)]);

    // INCR keeps the expiry and reports the whole new value.
    set_ex(&s, "n", "41", T0 + 500);
    j.take();
    clock.advance(10);
    assert_eq!(incr(&s, b"n", 1), Ok(42));
    assert_eq!(j.take(), [put("n", "42", Some(T0 + 500))]);
    assert_eq!(incr(&s, b"fresh", 5), Ok(5));
    assert_eq!(j.take(), [put("fresh", "5", None)]);

    // APPEND and SETRANGE report the whole value, in place or not.
    s.append(b"n", b"0", 100).unwrap();
    assert_eq!(j.take(), [put("n", "420", Some(T0 + 500))]);
    s.append(b"n", "x".repeat(5000).as_bytes(), 1 << 20)
        .unwrap();
    let long = format!("420{}", "x".repeat(5000));
    assert_eq!(j.take(), [put("n", &long, Some(T0 + 500))]);
    set(&s, "r", "hello");
    j.take();
    s.set_range(b"r", 1, b"EL", 100).unwrap();
    assert_eq!(j.take(), [put("r", "hELlo", None)]);
    s.set_range(b"r", 7, b"!", 100).unwrap();
    assert_eq!(j.take(), [put("r", "hELlo\0\0!", None)]);
    s.set_range(b"new", 2, b"z", 100).unwrap();
    assert_eq!(j.take(), [put("new", "\0\0z", None)]);
}

#[test]
fn expiry_changes_report_puts_and_deletes() {
    let (s, j, _) = journaled();
    set(&s, "k", "v");
    j.take();
    let always = ExpireCondition::default();
    assert_eq!(
        s.expire(b"k", (T0 + 50) as i64, always),
        Ok(ExpireOutcome::Applied)
    );
    assert_eq!(j.take(), [put("k", "v", Some(T0 + 50))]);
    assert_eq!(s.persist(b"k"), Ok(Some(true)));
    assert_eq!(j.take(), [put("k", "v", None)]);
    assert_eq!(
        s.get_ex(b"k", TtlUpdate::At((T0 + 70) as i64), <[u8]>::to_vec),
        Ok(Some(b"v".to_vec()))
    );
    assert_eq!(j.take(), [put("k", "v", Some(T0 + 70))]);
    s.get_ex(b"k", TtlUpdate::Clear, |_| ()).unwrap();
    assert_eq!(j.take(), [put("k", "v", None)]);
    s.get_ex(b"k", TtlUpdate::At(T0 as i64), |_| ()).unwrap();
    assert_eq!(j.take(), [delete("k")], "GETEX to a past time deletes");
    set(&s, "k", "v");
    j.take();
    assert_eq!(s.expire(b"k", 0, always), Ok(ExpireOutcome::Deleted));
    assert_eq!(j.take(), [delete("k")]);
}

#[test]
fn deletes_renames_and_copies_report_each_key() {
    let (s, j, _) = journaled();
    set_ex(&s, "a", "1", T0 + 5000);
    set(&s, "b", "2");
    j.take();
    assert_eq!(
        s.get_del(b"b", <[u8]>::to_vec).unwrap(),
        Some(b"2".to_vec())
    );
    assert_eq!(j.take(), [delete("b")]);
    assert_eq!(s.rename(b"a", b"z", false), Ok(RenameOutcome::Renamed));
    // Both under the locks of both keys: the destination is written first, so that a failed
    // write leaves the source in place.
    assert_eq!(j.take(), [put("z", "1", Some(T0 + 5000)), delete("a")]);
    assert!(s.copy(b"z", b"c", false).unwrap());
    assert_eq!(j.take(), [put("c", "1", Some(T0 + 5000))]);
    set(&s, "d", "4");
    j.take();
    assert!(s.copy(b"d", b"c", true).unwrap());
    assert_eq!(j.take(), [put("c", "4", None)]);
    assert_eq!(s.rename(b"c", b"z", false), Ok(RenameOutcome::Renamed));
    assert_eq!(j.take(), [put("z", "4", None), delete("c")]);
    let keys: [&[u8]; 3] = [b"z", b"missing", b"d"];
    assert_eq!(s.remove_many(keys.into_iter()), 2);
    let mut heard = j.take();
    heard.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(heard, [delete("d"), delete("z")]);
    set(&s, "e", "5");
    assert!(s.remove(b"e"));
    assert_eq!(j.take(), [put("e", "5", None), delete("e")]);
    set(&s, "f", "6");
    s.clear();
    assert_eq!(j.take(), [put("f", "6", None), Effect::Flush]);
}

/// Sets bit `bit` (0 is the first byte's top bit) through [`Store::edit`], as `SETBIT` does;
/// returns the bit's old value.
fn set_bit(s: &Store, key: &[u8], bit: usize) -> bool {
    s.edit(key, bit / 8 + 1, |bytes, grown| {
        let mask = 0x80u8 >> (bit % 8);
        let old = bytes[bit / 8] & mask != 0;
        bytes[bit / 8] |= mask;
        (grown || !old, old)
    })
    .unwrap()
}

/// `BITOP OR dest sources...` through [`Store::combine`].
fn or_into(s: &Store, dest: &[u8], sources: &[&[u8]]) -> Combined {
    let (combined, ()) = s
        .combine(dest, sources.iter().copied(), |values, out| {
            for v in values.iter().flatten() {
                if out.len() < v.len() {
                    out.resize(v.len(), 0);
                }
                out.iter_mut().zip(v.iter()).for_each(|(o, b)| *o |= b);
            }
        })
        .unwrap();
    combined
}

#[test]
fn edits_report_a_new_padded_or_changed_value_once() {
    let (s, j, _) = journaled();
    assert!(!set_bit(&s, b"b", 9));
    assert_eq!(j.take(), [put("b", "\0@", None)], "created");
    assert!(set_bit(&s, b"b", 9));
    assert_eq!(j.take(), [], "the bit was set already");
    assert!(!set_bit(&s, b"b", 0));
    assert_eq!(
        j.take(),
        [Effect::Put(b"b".to_vec(), vec![0x80, 0x40], None)]
    );
    set_ex(&s, "t", "a", T0 + 100);
    j.take();
    // Padded past the small-block limit (the value moves) and in place, expiry kept.
    assert!(!set_bit(&s, b"t", 8 * 5000 + 7));
    let mut long = vec![0u8; 5001];
    long[0] = b'a';
    long[5000] = 1;
    assert_eq!(
        j.take(),
        [Effect::Put(b"t".to_vec(), long.clone(), Some(T0 + 100))]
    );
    assert!(!set_bit(&s, b"t", 8 * 5001 + 7));
    long.push(1);
    assert_eq!(
        j.take(),
        [Effect::Put(b"t".to_vec(), long.clone(), Some(T0 + 100))]
    );
    assert_eq!(s.get(b"t", <[u8]>::to_vec), Ok(Some(long)));
    assert_eq!(s.object_info(b"t").unwrap().encoding, Encoding::Raw);
    assert_eq!(
        s.edit(b"huge", MAX_VALUE_LEN + 1, |_, _| (true, ())),
        Err(StoreError::TooLarge)
    );
    assert_eq!(j.take(), []);
}

#[test]
fn combining_reports_the_destination_and_reads_the_sources() {
    let (s, j, _) = journaled();
    set(&s, "a", "\x01");
    set_ex(&s, "b", "\x02\x02", T0 + 100);
    set_ex(&s, "d", "old", T0 + 100);
    j.take();
    assert_eq!(
        or_into(&s, b"d", &[b"a", b"b", b"missing"]),
        Combined::Written
    );
    assert_eq!(
        j.take(),
        [put("d", "\x03\x02", None)],
        "written without expiry"
    );
    assert_eq!(or_into(&s, b"a", &[b"a", b"a"]), Combined::Written);
    assert_eq!(j.take(), [put("a", "\x01", None)]);
    assert_eq!(or_into(&s, b"d", &[b"missing"]), Combined::Deleted);
    assert_eq!(j.take(), [delete("d")]);
    assert_eq!(or_into(&s, b"d", &[b"missing"]), Combined::Nothing);
    assert_eq!(j.take(), []);
    assert_eq!(s.object_info(b"a").unwrap().encoding, Encoding::Raw);
}

#[test]
fn writes_that_change_nothing_report_nothing() {
    let (s, j, _) = journaled();
    set_ex(&s, "k", "v", T0 + 100);
    set(&s, "plain", "p");
    set(&s, "text", "abc");
    j.take();
    let nx = SetOptions {
        condition: SetCondition::IfAbsent,
        ..SetOptions::default()
    };
    let xx = SetOptions {
        condition: SetCondition::IfPresent,
        ..SetOptions::default()
    };
    assert!(!s.set(b"k", b"w", nx, |_| {}).unwrap());
    assert!(!s.set(b"missing", b"w", xx, |_| {}).unwrap());
    assert!(
        !s.set_many([(&b"new"[..], &b"x"[..]), (b"k", b"y")].into_iter(), true)
            .unwrap()
    );
    let nx_cond = ExpireCondition {
        nx: true,
        ..ExpireCondition::default()
    };
    let gt = ExpireCondition {
        gt: true,
        ..ExpireCondition::default()
    };
    let xx_cond = ExpireCondition {
        xx: true,
        ..ExpireCondition::default()
    };
    let always = ExpireCondition::default();
    assert_eq!(
        s.expire(b"k", (T0 + 500) as i64, nx_cond),
        Ok(ExpireOutcome::NotApplied)
    );
    assert_eq!(
        s.expire(b"k", (T0 + 50) as i64, gt),
        Ok(ExpireOutcome::NotApplied)
    );
    assert_eq!(
        s.expire(b"plain", (T0 + 50) as i64, xx_cond),
        Ok(ExpireOutcome::NotApplied)
    );
    assert_eq!(
        s.expire(b"missing", (T0 + 50) as i64, always),
        Ok(ExpireOutcome::NoKey)
    );
    assert_eq!(
        s.expire(b"k", (T0 + 100) as i64, always),
        Ok(ExpireOutcome::Applied),
        "the same expiry again"
    );
    assert_eq!(s.persist(b"plain"), Ok(Some(false)));
    assert_eq!(s.persist(b"missing"), Ok(None));
    s.get_ex(b"k", TtlUpdate::Keep, |_| ()).unwrap();
    s.get_ex(b"plain", TtlUpdate::Clear, |_| ()).unwrap();
    s.get_ex(b"missing", TtlUpdate::Clear, |_| ()).unwrap();
    assert!(!s.remove(b"missing"));
    assert_eq!(s.remove_many([&b"missing"[..], b"gone"].into_iter()), 0);
    assert_eq!(s.get_del(b"missing", |_| ()).unwrap(), None);
    assert_eq!(incr(&s, b"text", 1), Err(UpdateError::Rejected(())));
    assert_eq!(incr(&s, b"k", 0), Err(UpdateError::Rejected(())));
    set(&s, "n", "7");
    assert_eq!(j.take(), [put("n", "7", None)]);
    assert_eq!(incr(&s, b"n", 0), Ok(7), "read without writing");
    assert_eq!(s.append(b"k", b"xyz", 2), Err(StoreError::TooLarge));
    assert_eq!(s.set_range(b"k", 10, b"x", 5), Err(StoreError::TooLarge));
    assert_eq!(s.set_range(b"k", 0, b"", 5), Ok(1));
    assert_eq!(s.set_range(b"missing", 0, b"", 5), Ok(0));
    assert_eq!(
        s.rename(b"missing", b"x", false),
        Ok(RenameOutcome::NoSuchKey)
    );
    assert_eq!(
        s.rename(b"k", b"plain", true),
        Ok(RenameOutcome::DestinationExists)
    );
    assert_eq!(s.rename(b"k", b"k", false), Ok(RenameOutcome::Renamed));
    assert_eq!(s.copy(b"k", b"plain", false), Ok(false));
    assert_eq!(s.copy(b"k", b"k", true), Ok(false));
    // Reads, TOUCH, SCAN and compaction change no key.
    get(&s, "k");
    s.ttl(b"k");
    s.touch([&b"k"[..], b"plain"].into_iter());
    s.count_existing([&b"k"[..]].into_iter());
    s.scan(0, 100, |_, _| {});
    s.for_each_key(|_| {});
    s.random_key(|_| ());
    s.maintain();
    assert_eq!(j.take(), []);
}

#[test]
fn passive_and_active_expiry_report_deletes() {
    let (s, j, clock) = journaled();
    set_ex(&s, "read", "v", T0 + 10);
    set_ex(&s, "ttl", "v", T0 + 10);
    set_ex(&s, "exists", "v", T0 + 10);
    set_ex(&s, "overwritten", "v", T0 + 10);
    set_ex(&s, "cycled", "v", T0 + 10);
    set_ex(&s, "alive", "v", T0 + 1000);
    j.take();
    clock.advance(10);
    assert_eq!(
        get(&s, "read").as_deref(),
        Some("v"),
        "alive through its ms"
    );
    assert_eq!(j.take(), []);
    clock.advance(1);
    assert_eq!(get(&s, "read"), None);
    assert_eq!(j.take(), [delete("read")]);
    assert_eq!(s.ttl(b"ttl"), KeyTtl::NoKey);
    assert_eq!(j.take(), [delete("ttl")]);
    assert_eq!(s.count_existing([&b"exists"[..]].into_iter()), 0);
    assert_eq!(j.take(), [delete("exists")]);
    set(&s, "overwritten", "w");
    assert_eq!(
        j.take(),
        [delete("overwritten"), put("overwritten", "w", None)]
    );
    let cycle = s.expire_cycle(Duration::from_secs(1));
    assert_eq!(cycle.expired, 1);
    assert_eq!(j.take(), [delete("cycled")]);
}

#[test]
fn evictions_report_deletes_like_key_events() {
    #[derive(Default)]
    struct Events(Mutex<Vec<Vec<u8>>>);
    impl KeyEvents for Events {
        fn on_removed(&self, key: &[u8], _: Removal) {
            self.0.lock().unwrap().push(key.to_vec());
        }
    }
    let events = Arc::new(Events::default());
    let clock = ManualClock::new(T0);
    let s = Store::new(StoreConfig {
        shards: 1,
        clock: Arc::new(clock.clone()),
        events: Some(events.clone()),
        ..StoreConfig::default()
    });
    let j = Arc::new(Recorder::default());
    s.set_journal(Some(j.clone()));
    set(&s, "old", "v");
    set(&s, "mid", "v");
    set(&s, "new", "v");
    set_ex(&s, "temp", "v", T0 + 5);
    j.take();
    s.set_maxmemory(s.used_memory() - 1);
    s.make_room().unwrap();
    assert_eq!(j.take(), [delete("old")]);
    clock.advance(6);
    s.expire_cycle(Duration::from_secs(1));
    assert_eq!(j.take(), [delete("temp")]);
    // Every key the observer heard of leaving on its own, the journal heard deleted.
    assert_eq!(
        *events.0.lock().unwrap(),
        [b"old".to_vec(), b"temp".to_vec()]
    );
}

#[test]
fn without_a_journal_nothing_is_recorded() {
    let clock = ManualClock::new(T0);
    let s = new_store(4, 1, 0, EvictionPolicy::AllKeysLru, &clock);
    let j = Arc::new(Recorder::default());
    set(&s, "before", "v");
    s.set_journal(Some(j.clone()));
    set(&s, "during", "v");
    s.set_journal(None);
    set(&s, "after", "v");
    set_ex(&s, "t", "v", T0 + 1);
    s.rename(b"during", b"moved", false).unwrap();
    clock.advance(2);
    s.expire_cycle(Duration::from_secs(1));
    s.clear();
    assert_eq!(j.take(), [put("during", "v", None)]);
    assert_eq!(Arc::strong_count(&j), 1, "the store let go of the journal");
}

#[test]
fn restore_keeps_a_key_alive_through_its_expiry_millisecond() {
    // A key expiring at exactly now is still alive (`now <= expiry`), and a RENAME, INCR or
    // APPEND reports it with that expiry. A SET with that expiry would delete it instead (a
    // write's expiry must be after now, Redis's rule), so a replica applies puts with
    // `restore`.
    let (s, j, clock) = journaled();
    set_ex(&s, "a", "1", T0 + 10);
    j.take();
    clock.advance(10);
    s.rename(b"a", b"b", false).unwrap();
    let heard = j.take();
    assert_eq!(heard, [put("b", "1", Some(T0 + 10)), delete("a")]);
    let replica = new_store(2, 9, 0, EvictionPolicy::AllKeysLru, &clock);
    replay(&replica, &heard);
    assert_eq!(entries(&replica), entries(&s));
    assert_eq!(get(&replica, "b").as_deref(), Some("1"));
    // Already past: restore deletes.
    clock.advance(1);
    replica.restore(b"b", b"2", Some(T0 + 10)).unwrap();
    assert_eq!(replica.len(), 0);
    replica.restore(b"c", b"3", None).unwrap();
    assert_eq!(replica.ttl(b"c"), KeyTtl::Persistent);
    replica.check_invariants();
}

#[test]
fn scan_entries_sees_every_entry_present_throughout() {
    let (s, _, clock) = journaled();
    s.set_journal(None);
    for i in 0..3000 {
        if i % 2 == 0 {
            set_ex(
                &s,
                &format!("stable:{i}"),
                &format!("v{i}"),
                T0 + 1_000_000 + i,
            );
        } else {
            set(&s, &format!("stable:{i}"), &format!("v{i}"));
        }
    }
    for i in 0..500 {
        set_ex(&s, &format!("doomed:{i}"), "x", T0 + 10);
    }
    clock.advance(11);
    let mut seen = BTreeMap::new();
    let mut cursor = 0;
    let mut round = 0;
    loop {
        cursor = s.scan_entries(cursor, 10, |k, _, v, e| {
            assert!(!k.starts_with(b"doomed:"), "an expired key was reported");
            seen.insert(k.to_vec(), (v.to_vec(), e));
        });
        round += 1;
        // Churn the keyspace between calls: growth, deletion, shrinking, compaction.
        if round == 10 {
            for i in 0..20_000 {
                set(&s, &format!("churn:{i}"), "c");
            }
        }
        if round % 50 == 0 {
            for i in 0..20_000 {
                s.remove(format!("churn:{i}").as_bytes());
            }
            for _ in 0..8 {
                s.maintain();
            }
            for i in 0..(round as usize * 40) {
                set(&s, &format!("churn:{i}"), "c");
            }
        }
        if cursor == 0 {
            break;
        }
    }
    for i in 0..3000 {
        let key = format!("stable:{i}").into_bytes();
        let expiry = (i % 2 == 0).then_some(T0 + 1_000_000 + i);
        assert_eq!(
            seen.get(&key),
            Some(&(format!("v{i}").into_bytes(), expiry)),
            "stable:{i}"
        );
    }
}

#[test]
fn concurrent_writers_replay_to_the_same_keyspace() {
    let clock = ManualClock::new(T0);
    let s = new_store(16, 3, 0, EvictionPolicy::AllKeysLru, &clock);
    let j = Arc::new(Recorder::default());
    s.set_journal(Some(j.clone()));
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (s, clock) = (&s, &clock);
            scope.spawn(move || {
                for i in 0..5_000u64 {
                    let key = format!("k{}", (i * 7 + t) % 300);
                    let other = format!("k{}", (i * 13 + t) % 300);
                    match i % 9 {
                        0 => drop(s.remove(key.as_bytes())),
                        1 => drop(
                            s.set_many(
                                [(key.as_bytes(), &b"m"[..]), (other.as_bytes(), &b"s"[..])]
                                    .into_iter(),
                                false,
                            ),
                        ),
                        2 => drop(incr(s, key.as_bytes(), 1)),
                        3 => drop(s.rename(key.as_bytes(), other.as_bytes(), false)),
                        4 => drop(s.expire(
                            key.as_bytes(),
                            (clock.now_ms() + i % 5) as i64,
                            ExpireCondition::default(),
                        )),
                        5 => drop(s.append(key.as_bytes(), b"+", 1 << 20)),
                        6 if t == 0 && i % 900 == 6 => s.clear(),
                        6 => drop(s.copy(key.as_bytes(), other.as_bytes(), true)),
                        7 if t == 1 => {
                            clock.advance(1);
                            s.expire_cycle(Duration::from_millis(1));
                        }
                        _ => drop(s.set(key.as_bytes(), b"value", SetOptions::default(), |_| {})),
                    }
                }
            });
        }
    });
    let replica = new_store(4, 8, 0, EvictionPolicy::AllKeysLru, &clock);
    replay(&replica, &j.take());
    assert_eq!(entries(&replica), entries(&s));
    s.check_invariants();
}

/// One step of the journal's model-based test.
#[derive(Debug, Clone)]
enum Op {
    /// SET key value [NX|XX] [KEEPTTL | PXAT now+delta] (delta may be in the past).
    Set(u8, u8, u8, Option<Option<i16>>),
    SetInt(u8, i8),
    MSet(Vec<(u8, u8)>, bool),
    Incr(u8, i8),
    Append(u8, u8),
    SetRange(u8, u16, u8),
    SetBit(u8, u16),
    BitOr(u8, Vec<u8>),
    GetDel(u8),
    GetEx(u8, Option<Option<i16>>),
    Del(Vec<u8>),
    Remove(u8),
    Expire(u8, i16, u8),
    Persist(u8),
    Rename(u8, u8, bool),
    Copy(u8, u8, bool),
    Get(u8),
    Exists(Vec<u8>),
    RandomKey,
    Advance(u16),
    ExpireCycle,
    Maintain,
    Flush,
}

fn key_id() -> impl Strategy<Value = u8> {
    0u8..12
}

/// A time offset in ms, often a few ms so that keys are met right at their expiry.
fn delta() -> impl Strategy<Value = i16> {
    prop_oneof![-3i16..6, -20i16..400]
}

fn ttl_choice() -> impl Strategy<Value = Option<Option<i16>>> {
    prop_oneof![
        2 => Just(None),
        1 => Just(Some(None)),
        3 => delta().prop_map(|d| Some(Some(d))),
    ]
}

fn journal_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key_id(), any::<u8>(), 0u8..3, ttl_choice()).prop_map(|(k, v, c, t)| Op::Set(k, v, c, t)),
        2 => (key_id(), any::<i8>()).prop_map(|(k, n)| Op::SetInt(k, n)),
        2 => (prop::collection::vec((key_id(), any::<u8>()), 1..4), any::<bool>()).prop_map(|(p, nx)| Op::MSet(p, nx)),
        3 => (key_id(), any::<i8>()).prop_map(|(k, n)| Op::Incr(k, n)),
        2 => (key_id(), any::<u8>()).prop_map(|(k, v)| Op::Append(k, v)),
        2 => (key_id(), 0u16..300, any::<u8>()).prop_map(|(k, o, v)| Op::SetRange(k, o, v)),
        2 => (key_id(), prop_oneof![0u16..64, 0u16..40_000]).prop_map(|(k, b)| Op::SetBit(k, b)),
        1 => (key_id(), prop::collection::vec(key_id(), 1..4)).prop_map(|(d, s)| Op::BitOr(d, s)),
        1 => key_id().prop_map(Op::GetDel),
        2 => (key_id(), ttl_choice()).prop_map(|(k, t)| Op::GetEx(k, t)),
        1 => prop::collection::vec(key_id(), 1..4).prop_map(Op::Del),
        1 => key_id().prop_map(Op::Remove),
        3 => (key_id(), delta(), 0u8..16).prop_map(|(k, d, c)| Op::Expire(k, d, c)),
        1 => key_id().prop_map(Op::Persist),
        2 => (key_id(), key_id(), any::<bool>()).prop_map(|(a, b, nx)| Op::Rename(a, b, nx)),
        2 => (key_id(), key_id(), any::<bool>()).prop_map(|(a, b, r)| Op::Copy(a, b, r)),
        3 => key_id().prop_map(Op::Get),
        1 => prop::collection::vec(key_id(), 1..4).prop_map(Op::Exists),
        1 => Just(Op::RandomKey),
        3 => prop_oneof![0u16..4, 0u16..150].prop_map(Op::Advance),
        2 => Just(Op::ExpireCycle),
        1 => Just(Op::Maintain),
        1 => Just(Op::Flush),
    ]
}

/// Values of varied sizes (some past the small-block limit) derived from one byte.
fn value_of(v: u8) -> Vec<u8> {
    let len = match v % 4 {
        0 => 1,
        1 => v as usize / 4,
        2 => 300 + v as usize,
        _ => 4000 + 8 * v as usize,
    };
    vec![b'a' + v % 26; len]
}

fn to_ttl(now: u64, choice: Option<Option<i16>>) -> TtlUpdate {
    match choice {
        None => TtlUpdate::Clear,
        Some(None) => TtlUpdate::Keep,
        Some(Some(d)) => TtlUpdate::At(now as i64 + i64::from(d)),
    }
}

fn policy_of(p: u8) -> EvictionPolicy {
    match p % 5 {
        0 | 1 => EvictionPolicy::AllKeysLru,
        2 => EvictionPolicy::VolatileLru,
        3 => EvictionPolicy::VolatileTtl,
        _ => EvictionPolicy::AllKeysRandom,
    }
}

/// Runs `op` on `s` (calling `make_room` before writes, as the server does).
fn run(s: &Store, now: u64, op: &Op) {
    let key = |k: u8| format!("key{k}").into_bytes();
    let room = || {
        let _ = s.make_room();
    };
    match op {
        Op::Set(k, v, c, t) => {
            room();
            let condition = match c {
                0 => SetCondition::Always,
                1 => SetCondition::IfAbsent,
                _ => SetCondition::IfPresent,
            };
            let options = SetOptions {
                condition,
                ttl: to_ttl(now, *t),
                reads_old: false,
            };
            s.set(&key(*k), &value_of(*v), options, |_| {}).unwrap();
        }
        Op::SetInt(k, n) => {
            room();
            let value = n.to_string();
            s.set(&key(*k), value.as_bytes(), SetOptions::default(), |_| {})
                .unwrap();
        }
        Op::MSet(pairs, nx) => {
            room();
            let owned: Vec<(Vec<u8>, Vec<u8>)> =
                pairs.iter().map(|&(k, v)| (key(k), value_of(v))).collect();
            s.set_many(owned.iter().map(|(k, v)| (k.as_slice(), v.as_slice())), *nx)
                .unwrap();
        }
        Op::Incr(k, n) => {
            room();
            let _ = incr(s, &key(*k), i64::from(*n));
        }
        Op::Append(k, v) => {
            room();
            let _ = s.append(&key(*k), &value_of(*v), 20_000);
        }
        Op::SetRange(k, o, v) => {
            room();
            let data = value_of(*v);
            let data = &data[..data.len().min(40)];
            let _ = s.set_range(&key(*k), usize::from(*o), data, 20_000);
        }
        Op::SetBit(k, b) => {
            room();
            set_bit(s, &key(*k), usize::from(*b));
        }
        Op::BitOr(d, ks) => {
            room();
            let owned: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
            let sources: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            or_into(s, &key(*d), &sources);
        }
        Op::GetDel(k) => drop(s.get_del(&key(*k), |_| ())),
        Op::GetEx(k, t) => drop(s.get_ex(&key(*k), to_ttl(now, *t), |_| ()).unwrap()),
        Op::Del(ks) => {
            let owned: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
            s.remove_many(owned.iter().map(Vec::as_slice));
        }
        Op::Remove(k) => drop(s.remove(&key(*k))),
        Op::Expire(k, d, c) => {
            let condition = ExpireCondition {
                nx: c & 1 != 0 && c & 2 == 0,
                xx: c & 2 != 0 && c & 1 == 0,
                gt: c & 4 != 0 && c & 8 == 0,
                lt: c & 8 != 0 && c & 4 == 0,
            };
            let at = now as i64 + i64::from(*d);
            s.expire(&key(*k), at, condition).unwrap();
        }
        Op::Persist(k) => drop(s.persist(&key(*k)).unwrap()),
        Op::Rename(a, b, nx) => {
            room();
            s.rename(&key(*a), &key(*b), *nx).unwrap();
        }
        Op::Copy(a, b, replace) => {
            room();
            s.copy(&key(*a), &key(*b), *replace).unwrap();
        }
        Op::Get(k) => drop(s.get(&key(*k), |_| ())),
        Op::Exists(ks) => {
            let owned: Vec<Vec<u8>> = ks.iter().map(|&k| key(k)).collect();
            s.count_existing(owned.iter().map(Vec::as_slice));
        }
        Op::RandomKey => drop(s.random_key(|_| ())),
        Op::Advance(_) => {}
        Op::ExpireCycle => drop(s.expire_cycle(Duration::from_millis(5))),
        Op::Maintain => drop(s.maintain()),
        Op::Flush => s.clear(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Replaying what the journal heard into a second store (another shard count, another
    /// hash seed, no memory limit) gives the same keys, values and expiries after every step.
    #[test]
    fn replaying_the_journal_rebuilds_the_keyspace(
        ops in prop::collection::vec(journal_op(), 1..150),
        maxmemory in prop_oneof![1 => Just(0usize), 3 => 2_000usize..40_000],
        policy in any::<u8>(),
    ) {
        let clock = ManualClock::new(T0);
        let primary = new_store(4, 42, maxmemory, policy_of(policy), &clock);
        let journal = Arc::new(Recorder::default());
        primary.set_journal(Some(journal.clone()));
        let replica = new_store(2, 7, 0, EvictionPolicy::NoEviction, &clock);
        for op in &ops {
            if let Op::Advance(ms) = op {
                clock.advance(u64::from(*ms));
            }
            let before = primary.stats();
            run(&primary, clock.now_ms(), op);
            let heard = journal.take();
            let after = primary.stats();
            if after.evicted > before.evicted || after.expired > before.expired {
                prop_assert!(
                    heard.iter().any(|e| matches!(e, Effect::Delete(_))),
                    "an eviction or expiry without a delete: {:?}", heard
                );
            }
            if matches!(op, Op::Get(_) | Op::Exists(_) | Op::RandomKey | Op::ExpireCycle | Op::Maintain | Op::Advance(_)) {
                prop_assert!(
                    heard.iter().all(|e| matches!(e, Effect::Delete(_))),
                    "{:?} reported {:?}", op, heard
                );
            }
            replay(&replica, &heard);
            prop_assert_eq!(entries(&replica), entries(&primary), "after {:?}", op);
            primary.check_invariants();
        }
    }
}

#[test]
fn scan_entries_of_an_empty_store_ends_at_once() {
    let clock = ManualClock::new(T0);
    let s = new_store(8, 1, 0, EvictionPolicy::AllKeysLru, &clock);
    let mut calls = 0;
    let mut cursor = 0;
    loop {
        cursor = s.scan_entries(cursor, 100, |_, _, _, _| calls += 1);
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(calls, 0);
}

#[test]
fn an_exclusive_section_reports_its_changes_as_one_unit_and_flush_tells_what_existed() {
    let (store, recorder, _clock) = journaled();
    set(&store, "before", "1");
    recorder.take();
    store.exclusive(|| {
        set(&store, "a", "1");
        store.exclusive(|| set(&store, "b", "2"));
        store.remove(b"before");
    });
    assert_eq!(
        recorder.take(),
        [
            Effect::BeginUnit,
            put("a", "1", None),
            put("b", "2", None),
            delete("before"),
            Effect::EndUnit,
        ]
    );

    /// Answers, during a flush, whether two keys existed.
    #[derive(Default)]
    struct Existed(Mutex<Vec<(bool, bool)>>);
    impl Journal for Existed {
        fn put(&self, _: &[u8], _: &[u8], _: Option<u64>) {}
        fn delete(&self, _: &[u8]) {}
        fn put_value(&self, _: &[u8], _: Kind, _: &[u8], _: Option<u64>) {}
        fn put_field(&self, _: &[u8], _: &[u8], _: &[u8], _: Option<u64>) {}
        fn delete_field(&self, _: &[u8], _: &[u8]) {}
        fn set_expiry(&self, _: &[u8], _: Option<u64>) {}
        fn flush(&self, existed: &dyn Fn(&[u8]) -> bool) {
            self.0
                .lock()
                .unwrap()
                .push((existed(b"a"), existed(b"missing")));
        }
    }
    let existed = Arc::new(Existed::default());
    store.set_journal(Some(existed.clone()));
    store.clear();
    assert_eq!(*existed.0.lock().unwrap(), [(true, false)]);
    assert!(store.is_empty());
}
