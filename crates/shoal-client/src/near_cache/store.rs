//! The near cache's memory: replies by key, bounded by bytes.
//!
//! Keys are spread over shards by hash, each behind a read-write lock: a hit takes the read
//! lock and sets the entry's referenced bit, so concurrent hits on one hot key do not queue.
//! Past its share of the byte budget, a shard drops entries with CLOCK (second chance): an
//! entry referenced since the hand last passed survives one more round; CLOCK approximates
//! LRU at the cost of a bit per entry.
//!
//! A fill ([`Store::begin`], [`Store::finish`]) is given a token for its key, and the store
//! notes the invalidations of the key that come while it is in flight. The reply is stored
//! only if every one of them arrived ahead of it on its connection (numbered pushes: the node
//! sends the invalidation of a change made after the read after the read's reply), and none
//! came from elsewhere (this client's own write, another node). Each key holds the replies of several commands ("variants": `GET k`,
//! `STRLEN k`, `HGET k f`), which its invalidation drops together.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use bytes::Bytes;
use parking_lot::RwLock;
use shoal_cluster::Slot;
use shoal_proto::reply::Value;

use super::tracker::Tracker;

/// Shards of the store.
const SHARDS: usize = 32;
/// Bytes an entry costs besides its key, arguments and value (maps, vectors, clock slot).
const OVERHEAD: usize = 96;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One cached reply.
pub(crate) struct Variant {
    /// The command (its spec's name).
    pub name: &'static str,
    /// The arguments after the key.
    pub extra: Box<[Bytes]>,
    /// The reply.
    pub value: Value,
    /// The node's tracking connection the reply came on.
    pub origin: Arc<Tracker>,
    /// That connection's generation when the fill was sent.
    pub generation: u64,
    /// The key's slot.
    pub slot: Slot,
    /// When the entry stops being served (its key's TTL, or the cache's cap).
    pub expires: Instant,
    /// Bytes it is counted for.
    pub size: usize,
}

impl Variant {
    /// Whether this is the reply to `name key extra...`.
    fn answers<A: AsRef<[u8]>>(&self, name: &str, extra: &[A]) -> bool {
        self.name == name
            && self.extra.len() == extra.len()
            && self
                .extra
                .iter()
                .zip(extra)
                .all(|(a, b)| a[..] == *b.as_ref())
    }
}

/// A fill in flight.
struct Fill {
    token: u64,
    origin: Arc<Tracker>,
    /// The highest push number of an invalidation of the key from `origin` meanwhile;
    /// `u64::MAX` after an invalidation from anywhere else.
    invalidated_at: u64,
}

struct Cached {
    /// Matches its clock slot.
    stamp: u64,
    referenced: AtomicBool,
    variants: Vec<Variant>,
}

#[derive(Default)]
struct Shard {
    keys: Map<Bytes, Cached>,
    /// Fills in flight, by key (concurrent reads of a hot key may fill it together).
    pending: Map<Bytes, Vec<Fill>>,
    /// The clock's ring: (key, stamp); slots of keys gone or re-added are skipped.
    clock: VecDeque<(Bytes, u64)>,
    next_stamp: u64,
    bytes: usize,
}

/// What a removal took out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Removed {
    /// Variants removed.
    pub entries: usize,
    /// Their bytes.
    pub bytes: usize,
}

/// The sharded store.
pub(crate) struct Store {
    shards: Box<[RwLock<Shard>]>,
    /// Byte budget per shard.
    budget: usize,
    hasher: foldhash::fast::RandomState,
    tokens: AtomicU64,
    entries: AtomicUsize,
    bytes: AtomicUsize,
    evictions: AtomicU64,
}

impl Store {
    /// An empty store of at most `max_bytes`.
    pub fn new(max_bytes: usize) -> Store {
        Store {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            budget: (max_bytes / SHARDS).max(1),
            hasher: foldhash::fast::RandomState::default(),
            tokens: AtomicU64::new(1),
            entries: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &[u8]) -> &RwLock<Shard> {
        let hash = self.hasher.hash_one(key);
        &self.shards[(hash as usize) % SHARDS]
    }

    /// The value of `name key extra...` if stored and `servable` says it may be served.
    #[inline]
    pub fn get<A: AsRef<[u8]>>(
        &self,
        key: &[u8],
        name: &str,
        extra: &[A],
        servable: impl FnOnce(&Variant) -> bool,
    ) -> Option<Value> {
        let shard = self.shard(key).read();
        let cached = shard.keys.get(key)?;
        let variant = cached.variants.iter().find(|v| v.answers(name, extra))?;
        if !servable(variant) {
            return None;
        }
        if !cached.referenced.load(Relaxed) {
            cached.referenced.store(true, Relaxed);
        }
        Some(variant.value.clone())
    }

    /// Starts a fill of `key` on `origin`'s connection: its token.
    pub fn begin(&self, key: &Bytes, origin: &Arc<Tracker>) -> u64 {
        let token = self.tokens.fetch_add(1, Relaxed);
        let fill = Fill {
            token,
            origin: origin.clone(),
            invalidated_at: 0,
        };
        let mut shard = self.shard(key).write();
        match shard.pending.get_mut(&key[..]) {
            Some(fills) => fills.push(fill),
            None => {
                shard.pending.insert(key.clone(), vec![fill]);
            }
        }
        token
    }

    /// Takes the fill `token` of `key` out of the fills in flight.
    fn take_fill(shard: &mut Shard, key: &[u8], token: u64) -> Option<Fill> {
        let fills = shard.pending.get_mut(key)?;
        let i = fills.iter().position(|f| f.token == token)?;
        let fill = fills.swap_remove(i);
        if fills.is_empty() {
            shard.pending.remove(key);
        }
        Some(fill)
    }

    /// Ends the fill `token` of `key` without storing anything.
    pub fn abandon(&self, key: &[u8], token: u64) {
        Self::take_fill(&mut self.shard(key).write(), key, token);
    }

    /// Ends the fill `token` of `key`, whose reply came after its connection's push number
    /// `pushes_before`: stores `variant` if no invalidation of the key came after the reply
    /// or from elsewhere, and `still_valid` (checked under the shard's lock) agrees. Returns
    /// whether it was stored.
    pub fn finish(
        &self,
        key: Bytes,
        token: u64,
        pushes_before: u64,
        variant: Variant,
        still_valid: impl FnOnce() -> bool,
        is_hot: impl Fn(&[u8]) -> bool,
    ) -> bool {
        let mut shard = self.shard(&key).write();
        match Self::take_fill(&mut shard, &key, token) {
            Some(fill) if fill.invalidated_at <= pushes_before => {}
            _ => return false,
        }
        if !still_valid() || variant.size > self.budget {
            return false;
        }
        let added = variant.size;
        let shard = &mut *shard;
        let mut replaced = Removed::default();
        match shard.keys.get_mut(&key[..]) {
            Some(cached) => {
                if let Some(i) = cached
                    .variants
                    .iter()
                    .position(|v| v.answers(variant.name, &variant.extra[..]))
                {
                    let old = std::mem::replace(&mut cached.variants[i], variant);
                    replaced = Removed {
                        entries: 1,
                        bytes: old.size,
                    };
                } else {
                    cached.variants.push(variant);
                }
            }
            None => {
                let stamp = shard.next_stamp;
                shard.next_stamp += 1;
                shard.clock.push_back((key.clone(), stamp));
                shard.keys.insert(
                    key,
                    Cached {
                        stamp,
                        referenced: AtomicBool::new(false),
                        variants: vec![variant],
                    },
                );
            }
        }
        shard.bytes = shard.bytes + added - replaced.bytes;
        self.entries.fetch_add(1 - replaced.entries, Relaxed);
        self.bytes.fetch_add(added, Relaxed);
        self.bytes.fetch_sub(replaced.bytes, Relaxed);
        self.evict(shard, &is_hot);
        if shard.clock.len() > 2 * shard.keys.len() + 64 {
            let keys = &shard.keys;
            shard
                .clock
                .retain(|(key, stamp)| keys.get(key).is_some_and(|c| c.stamp == *stamp));
        }
        true
    }

    /// Drops entries of `shard` with CLOCK until it is within its budget. Entries of the
    /// cluster's hot keys (`is_hot`) are kept in preference: the hand passes them over as if
    /// they had been read, and takes them only if nothing else can go.
    fn evict(&self, shard: &mut Shard, is_hot: &dyn Fn(&[u8]) -> bool) {
        for spare_hot in [true, false] {
            let mut steps = 2 * shard.clock.len() + 1;
            while shard.bytes > self.budget && steps > 0 {
                steps -= 1;
                let Some((key, stamp)) = shard.clock.pop_front() else {
                    break;
                };
                let Some(cached) = shard.keys.get(&key).filter(|c| c.stamp == stamp) else {
                    continue;
                };
                if cached.referenced.swap(false, Relaxed) || (spare_hot && is_hot(&key)) {
                    shard.clock.push_back((key, stamp));
                    continue;
                }
                if let Some(cached) = shard.keys.remove(&key) {
                    let removed = self.account(shard, &cached.variants);
                    self.evictions.fetch_add(removed.entries as u64, Relaxed);
                }
            }
        }
    }

    /// Uncounts `variants`, removed from `shard`.
    fn account(&self, shard: &mut Shard, variants: &[Variant]) -> Removed {
        let bytes: usize = variants.iter().map(|v| v.size).sum();
        shard.bytes -= bytes;
        self.entries.fetch_sub(variants.len(), Relaxed);
        self.bytes.fetch_sub(bytes, Relaxed);
        Removed {
            entries: variants.len(),
            bytes,
        }
    }

    /// `key` changed, as push number `seq` of `origin`'s connection says (`None`: as this
    /// client knows, having written it): its entries are dropped, and a fill in flight whose
    /// reply may predate the change will not be stored.
    pub fn invalidate(&self, key: &[u8], from: Option<(&Arc<Tracker>, u64)>) -> Removed {
        let mut shard = self.shard(key).write();
        for fill in shard.pending.get_mut(key).into_iter().flatten() {
            let at = match from {
                Some((origin, seq)) if Arc::ptr_eq(origin, &fill.origin) => seq,
                _ => u64::MAX,
            };
            fill.invalidated_at = fill.invalidated_at.max(at);
        }
        match shard.keys.remove(key) {
            Some(cached) => self.account(&mut shard, &cached.variants),
            None => Removed::default(),
        }
    }

    /// Drops every entry `keep` says no to.
    pub fn retain(&self, keep: impl Fn(&Variant) -> bool) -> Removed {
        let mut total = Removed::default();
        for shard in self.shards.iter() {
            let mut guard = shard.write();
            let shard = &mut *guard;
            let mut gone: Vec<Variant> = Vec::new();
            shard.keys.retain(|_, cached| {
                let mut i = 0;
                while i < cached.variants.len() {
                    if keep(&cached.variants[i]) {
                        i += 1;
                    } else {
                        gone.push(cached.variants.swap_remove(i));
                    }
                }
                !cached.variants.is_empty()
            });
            let removed = self.account(shard, &gone);
            total.entries += removed.entries;
            total.bytes += removed.bytes;
        }
        total
    }

    /// Fills in flight (for tests).
    #[cfg(test)]
    pub fn fills_in_flight(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().pending.values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Entries (variants) stored.
    pub fn entries(&self) -> usize {
        self.entries.load(Relaxed)
    }

    /// Bytes they are counted for.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Relaxed)
    }

    /// Entries dropped to stay within the budget.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    /// The bytes an entry is counted for.
    pub fn size_of(key: &[u8], extra: &[Bytes], value: &Value) -> usize {
        OVERHEAD + key.len() + extra.iter().map(|a| a.len() + 16).sum::<usize>() + value_size(value)
    }
}

/// Roughly the heap bytes of `value`.
fn value_size(value: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    NODE + match value {
        Value::Simple(b)
        | Value::Error(b)
        | Value::Bulk(b)
        | Value::Double(b)
        | Value::BigNumber(b)
        | Value::BulkError(b) => b.len(),
        Value::Verbatim(f, b) => f.len() + b.len(),
        Value::Array(items) | Value::Set(items) | Value::Push(items) => {
            items.iter().map(value_size).sum()
        }
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| value_size(k) + value_size(v))
            .sum(),
        Value::Int(_) | Value::Null | Value::NullArray | Value::Boolean(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const NONE: &[&[u8]] = &[];

    fn tracker(addr: &str) -> Arc<Tracker> {
        Arc::new(Tracker::new(addr.into()))
    }

    fn variant(origin: &Arc<Tracker>, value: &str) -> Variant {
        let value = Value::Bulk(value.as_bytes().to_vec());
        Variant {
            name: "get",
            extra: Box::new([]),
            size: Store::size_of(b"k", &[], &value),
            value,
            origin: origin.clone(),
            generation: 1,
            slot: 0,
            expires: Instant::now() + Duration::from_secs(60),
        }
    }

    fn get(store: &Store, key: &str) -> Option<Value> {
        store.get(key.as_bytes(), "get", NONE, |_| true)
    }

    /// Ends the fill `token` of `key` with `variant`, its reply after `pushes_before` pushes.
    fn finished(
        store: &Store,
        key: &Bytes,
        token: u64,
        pushes_before: u64,
        variant: Variant,
    ) -> bool {
        store.finish(
            key.clone(),
            token,
            pushes_before,
            variant,
            || true,
            |_| false,
        )
    }

    fn fill(store: &Store, origin: &Arc<Tracker>, key: &str, value: &str) -> bool {
        let key = Bytes::copy_from_slice(key.as_bytes());
        let token = store.begin(&key, origin);
        finished(store, &key, token, 0, variant(origin, value))
    }

    #[test]
    fn a_fill_is_stored_and_served_while_servable() {
        let store = Store::new(1 << 20);
        let node = tracker("a:1");
        assert!(fill(&store, &node, "k", "v"));
        assert_eq!(get(&store, "k"), Some(Value::Bulk(b"v".to_vec())));
        assert_eq!(store.get(b"k", "get", NONE, |_| false), None);
        assert_eq!(store.get(b"k", "strlen", NONE, |_| true), None);
        assert_eq!(store.get(b"k", "get", &[b"x"], |_| true), None);
        assert_eq!(
            (store.entries(), store.bytes()),
            (1, variant(&node, "v").size)
        );
        assert_eq!(store.invalidate(b"k", None).entries, 1);
        assert_eq!(get(&store, "k"), None);
        assert_eq!((store.entries(), store.bytes()), (0, 0));
    }

    #[test]
    fn only_invalidations_after_the_reply_stop_a_fill() {
        let store = Store::new(1 << 20);
        let (node, other) = (tracker("a:1"), tracker("b:1"));
        let key = Bytes::from_static(b"k");
        // Push 3 came before the reply (sent after push 5): the read saw that change.
        let token = store.begin(&key, &node);
        store.invalidate(b"k", Some((&node, 3)));
        assert!(finished(&store, &key, token, 5, variant(&node, "v")));
        // Push 6 came after it: the reply may predate the change.
        let token = store.begin(&key, &node);
        store.invalidate(b"k", Some((&node, 6)));
        assert!(!finished(&store, &key, token, 5, variant(&node, "v")));
        // Another node's push, or this client's own write: whatever the numbers.
        let token = store.begin(&key, &node);
        store.invalidate(b"k", Some((&other, 1)));
        assert!(!finished(&store, &key, token, 5, variant(&node, "v")));
        let token = store.begin(&key, &node);
        store.invalidate(b"k", None);
        assert!(!finished(&store, &key, token, 5, variant(&node, "v")));
        // A failed check stores nothing.
        let token = store.begin(&key, &node);
        assert!(!store.finish(
            key.clone(),
            token,
            5,
            variant(&node, "v"),
            || false,
            |_| false
        ));
        assert_eq!(get(&store, "k"), None);
    }

    #[test]
    fn concurrent_fills_of_a_hot_key_each_may_store() {
        // Readers of a hot key keep filling it while one fill is on its way: none may
        // starve the others (each fill is judged by the pushes before its own reply).
        let store = Store::new(1 << 20);
        let node = tracker("a:1");
        let key = Bytes::from_static(b"k");
        let first = store.begin(&key, &node);
        let second = store.begin(&key, &node);
        let third = store.begin(&key, &node);
        store.invalidate(b"k", Some((&node, 4)));
        // The first reply came before push 4 (3 pushes before it): not stored.
        assert!(!finished(&store, &key, first, 3, variant(&node, "old")));
        // The third reply came after push 4: stored, whichever finishes first.
        assert!(finished(&store, &key, third, 4, variant(&node, "new")));
        assert!(finished(&store, &key, second, 4, variant(&node, "new")));
        assert_eq!(get(&store, "k"), Some(Value::Bulk(b"new".to_vec())));
        store.abandon(b"k", 99);
        assert!(store.shards.iter().all(|s| s.read().pending.is_empty()));
    }

    #[test]
    fn variants_of_a_key_go_together() {
        let store = Store::new(1 << 20);
        let node = tracker("a:1");
        assert!(fill(&store, &node, "k", "v"));
        let token = store.begin(&Bytes::from_static(b"k"), &node);
        let strlen = Variant {
            name: "strlen",
            ..variant(&node, "1")
        };
        assert!(store.finish("k".into(), token, 0, strlen, || true, |_| false));
        assert_eq!(store.entries(), 2);
        // Refilling one replaces it.
        assert!(fill(&store, &node, "k", "w"));
        assert_eq!(store.entries(), 2);
        assert_eq!(get(&store, "k"), Some(Value::Bulk(b"w".to_vec())));
        assert_eq!(store.invalidate(b"k", Some((&node, 1))).entries, 2);
        assert_eq!(store.entries(), 0);
    }

    #[test]
    fn the_budget_holds_and_recently_read_keys_survive() {
        let one = variant(&tracker("a:1"), "0123456789").size;
        // About 64 entries in all (2 per shard).
        let store = Store::new(one * 2 * SHARDS);
        let node = tracker("a:1");
        let hot: Vec<String> = (0..16).map(|i| format!("hot:{i}")).collect();
        for key in &hot {
            assert!(fill(&store, &node, key, "0123456789"));
        }
        for i in 0..5_000 {
            for key in &hot {
                get(&store, key);
            }
            fill(&store, &node, &format!("cold:{i}"), "0123456789");
        }
        assert!(store.bytes() <= one * 2 * SHARDS, "{} bytes", store.bytes());
        assert!(store.evictions() >= 4_900);
        let kept = hot.iter().filter(|k| get(&store, k).is_some()).count();
        assert!(
            kept >= 12,
            "only {kept} of 16 keys read all along were kept"
        );
    }

    #[test]
    fn hot_keys_are_kept_in_preference_even_unread() {
        let one = variant(&tracker("a:1"), "0123456789").size;
        let store = Store::new(one * 2 * SHARDS);
        let node = tracker("a:1");
        let is_hot = |key: &[u8]| key.starts_with(b"hot:");
        let put = |key: &str| {
            let key = Bytes::copy_from_slice(key.as_bytes());
            let token = store.begin(&key, &node);
            let value = variant(&node, "0123456789");
            store.finish(key, token, 0, value, || true, is_hot)
        };
        let hot: Vec<String> = (0..16).map(|i| format!("hot:{i}")).collect();
        for key in &hot {
            assert!(put(key));
        }
        // A flood of cold keys, and the hot ones never read again.
        for i in 0..5_000 {
            put(&format!("cold:{i}"));
        }
        assert!(store.bytes() <= one * 2 * SHARDS, "{} bytes", store.bytes());
        // Each shard holds 2 entries: a shard that drew 3 hot keys keeps 2 of them.
        let mut per_shard: Vec<(*const RwLock<Shard>, usize)> = Vec::new();
        for key in &hot {
            let shard: *const RwLock<Shard> = store.shard(key.as_bytes());
            match per_shard.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, n)) => *n += 1,
                None => per_shard.push((shard, 1)),
            }
        }
        let room: usize = per_shard.iter().map(|(_, n)| (*n).min(2)).sum();
        let kept = hot.iter().filter(|k| get(&store, k).is_some()).count();
        assert_eq!(
            kept, room,
            "every hot key kept that fits while cold ones could go"
        );
        // When nothing but hot keys is left, the budget still holds.
        for i in 0..200 {
            put(&format!("hot:more:{i}"));
        }
        assert!(store.bytes() <= one * 2 * SHARDS, "{} bytes", store.bytes());
    }

    #[test]
    fn retain_drops_what_it_is_told_to() {
        let store = Store::new(1 << 20);
        let (a, b) = (tracker("a:1"), tracker("b:1"));
        for i in 0..100 {
            let origin = if i % 2 == 0 { &a } else { &b };
            assert!(fill(&store, origin, &format!("k{i}"), "v"));
        }
        let removed = store.retain(|v| !Arc::ptr_eq(&v.origin, &a));
        assert_eq!((removed.entries, store.entries()), (50, 50));
        assert!(get(&store, "k1").is_some() && get(&store, "k0").is_none());
    }
}
