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
    /// Fills in flight: the latest one per key.
    pending: Map<Bytes, Fill>,
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

    /// Starts a fill of `key` on `origin`'s connection: its token. A fill of the key started
    /// later supersedes it.
    pub fn begin(&self, key: &Bytes, origin: &Arc<Tracker>) -> u64 {
        let token = self.tokens.fetch_add(1, Relaxed);
        let fill = Fill {
            token,
            origin: origin.clone(),
            invalidated_at: 0,
        };
        self.shard(key).write().pending.insert(key.clone(), fill);
        token
    }

    /// Ends the fill `token` of `key` without storing anything.
    pub fn abandon(&self, key: &[u8], token: u64) {
        let mut shard = self.shard(key).write();
        if shard.pending.get(key).is_some_and(|f| f.token == token) {
            shard.pending.remove(key);
        }
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
    ) -> bool {
        let mut shard = self.shard(&key).write();
        match shard.pending.get(&key[..]) {
            Some(fill) if fill.token == token => {
                let invalidated_after = fill.invalidated_at > pushes_before;
                shard.pending.remove(&key[..]);
                if invalidated_after {
                    return false;
                }
            }
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
        self.evict(shard);
        if shard.clock.len() > 2 * shard.keys.len() + 64 {
            let keys = &shard.keys;
            shard
                .clock
                .retain(|(key, stamp)| keys.get(key).is_some_and(|c| c.stamp == *stamp));
        }
        true
    }

    /// Drops entries of `shard` with CLOCK until it is within its budget.
    fn evict(&self, shard: &mut Shard) {
        let mut steps = 2 * shard.clock.len() + 1;
        while shard.bytes > self.budget && steps > 0 {
            steps -= 1;
            let Some((key, stamp)) = shard.clock.pop_front() else {
                break;
            };
            let Some(cached) = shard.keys.get(&key).filter(|c| c.stamp == stamp) else {
                continue;
            };
            if cached.referenced.swap(false, Relaxed) {
                shard.clock.push_back((key, stamp));
                continue;
            }
            if let Some(cached) = shard.keys.remove(&key) {
                let removed = self.account(shard, &cached.variants);
                self.evictions.fetch_add(removed.entries as u64, Relaxed);
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
        if let Some(fill) = shard.pending.get_mut(key) {
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
