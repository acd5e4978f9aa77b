"""redis-py's client-side cache (`cache_config=CacheConfig()`, redis-py >= 5.1), unmodified,
against Shoal: it turns on because Shoal reports Redis 7.4.0, and stays correct because
Shoal's CLIENT TRACKING tells it of every change.

Usage:
  client_cache.py node HOST:PORT            one node, redis.Redis
  client_cache.py cluster HOST:PORT ...     every node of a cluster, redis.cluster.RedisCluster

Checks, each printing one line when it passes (any failure raises, and the exit status says
so):
  - reads are served from the local cache: after the first GET of a key, further GETs do not
    reach the server (the primaries' `cmdstat_get` calls do not move) and the cache holds it;
  - a write by another connection: over 200 writes, the cached client never returns the old
    value 50 ms after the write was acknowledged (it may just after: a read at once finds the
    invalidation on its way about half the time; both are counted and printed);
  - a key deleted, a key that expires, FLUSHALL: the cached client stops returning the value.
"""

import sys
import time

import redis
from redis.cache import CacheConfig, CacheKey
from redis.cluster import ClusterNode, RedisCluster

# The bound the cache must be fresh within, after a write is acknowledged.
FRESH_S = 0.050
# Writes measured.
WRITES = 200
# Keys written per round (a round waits FRESH_S once for all of them).
KEYS_PER_ROUND = 10
# A key with a TTL must be seen gone within this long after its expiry (the server's active
# expiry cycle finds it, then invalidates it).
EXPIRED_WITHIN_S = 2.0


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


class Target:
    """The cached client, a plain one to write with, and the primaries' GET counts."""

    def __init__(self, mode, addrs):
        self.mode = mode
        if mode == "node":
            host, port = addr(addrs[0])
            self.cached = redis.Redis(
                host=host, port=port, protocol=3, cache_config=CacheConfig()
            )
            self.writer = redis.Redis(host=host, port=port)
            self.primaries = [redis.Redis(host=host, port=port)]
            self.cache = self.cached.get_cache()
        else:
            nodes = [ClusterNode(*addr(a)) for a in addrs]
            self.cached = RedisCluster(
                startup_nodes=nodes, protocol=3, cache_config=CacheConfig()
            )
            self.writer = RedisCluster(startup_nodes=nodes)
            self.primaries = [
                redis.Redis(host=n.host, port=n.port) for n in self.writer.get_primaries()
            ]
            assert len(self.primaries) >= 2, "a cluster of several primaries"
            # One cache for every node's connections.
            self.cache = self.cached.get_default_node().redis_connection.get_cache()
        assert self.cache is not None, "redis-py did not turn its cache on"

    def server_gets(self):
        """GET calls the primaries have served (their INFO commandstats)."""
        total = 0
        for primary in self.primaries:
            stats = primary.info("commandstats")
            total += stats.get("cmdstat_get", {}).get("calls", 0)
        return total

    def cached_value(self, key):
        entry = self.cache.get(CacheKey(command="GET", redis_keys=(key,)))
        return None if entry is None else entry.cache_value


def check_reads_are_local(t):
    t.writer.set("cc:local", "v1")
    assert t.cached.get("cc:local") == b"v1"
    before = t.server_gets()
    for _ in range(50):
        assert t.cached.get("cc:local") == b"v1"
    after = t.server_gets()
    assert after == before, f"cached GETs reached the server: {after - before} of 50"
    assert t.cached_value("cc:local") == b"v1", "the value is not in the cache"
    print(f"{t.mode}: 50 reads of a cached key served locally (server GETs {before} -> {after})")


def check_writes_invalidate(t):
    keys = [f"cc:w:{i}" for i in range(KEYS_PER_ROUND)]
    for key in keys:
        t.writer.set(key, "start")
        assert t.cached.get(key) == b"start"
    server_before = t.server_gets()
    reads = 0
    stale = 0
    stale_for = 0.0
    for round_ in range(WRITES // KEYS_PER_ROUND):
        value = f"v{round_}".encode()
        acknowledged = {}
        pending = set()
        for key in keys:
            t.writer.set(key, value)
            acknowledged[key] = time.monotonic()
            # At once: the invalidation may still be on its way.
            got = t.cached.get(key)
            reads += 1
            if got != value:
                stale += 1
                stale_for = max(stale_for, time.monotonic() - acknowledged[key])
                pending.add(key)
        # Read each key until it shows the new value: it must within FRESH_S of its write's
        # acknowledgement, and stay so.
        while pending:
            for key in sorted(pending):
                got = t.cached.get(key)
                reads += 1
                waited = time.monotonic() - acknowledged[key]
                if got == value:
                    pending.discard(key)
                else:
                    stale += 1
                    stale_for = max(stale_for, waited)
                    assert waited < FRESH_S, (
                        f"{key}: {got!r} {waited * 1000:.1f} ms after {value!r} was "
                        f"acknowledged"
                    )
        # At FRESH_S after the last acknowledgement, every key still reads the new value.
        rest = FRESH_S - (time.monotonic() - max(acknowledged.values()))
        if rest > 0:
            time.sleep(rest)
        for key in keys:
            got = t.cached.get(key)
            reads += 1
            assert got == value, f"{key}: {got!r} after {value!r} was read"
    server_reads = t.server_gets() - server_before
    assert server_reads < reads, "no read was served from the cache"
    print(
        f"{t.mode}: {WRITES} writes by another connection, never stale {FRESH_S * 1000:.0f} ms "
        f"after the acknowledgement ({reads} reads, {server_reads} reached the server; "
        f"{stale} returned the old value, the latest {stale_for * 1000:.1f} ms after it)"
    )


def wait_gone(t, key, within_s, what):
    """Reads `key` until the cached client answers None; fails after `within_s`."""
    start = time.monotonic()
    while True:
        got = t.cached.get(key)
        if got is None:
            return time.monotonic() - start
        if time.monotonic() - start >= within_s:
            raise AssertionError(f"{key} still reads {got!r} {within_s} s after {what}")
        time.sleep(0.001)


def check_delete(t):
    t.writer.set("cc:del", "v")
    assert t.cached.get("cc:del") == b"v"
    assert t.cached.get("cc:del") == b"v"
    assert t.cached_value("cc:del") == b"v"
    t.writer.delete("cc:del")
    took = wait_gone(t, "cc:del", FRESH_S, "its DEL was acknowledged")
    print(f"{t.mode}: a deleted key reads None within {took * 1000:.1f} ms")


def check_expiry(t):
    t.writer.set("cc:ttl", "v", px=200)
    assert t.cached.get("cc:ttl") == b"v"
    assert t.cached_value("cc:ttl") == b"v"
    time.sleep(0.2)
    took = wait_gone(t, "cc:ttl", EXPIRED_WITHIN_S, "it expired")
    print(f"{t.mode}: a key that expired reads None {took * 1000:.0f} ms after its TTL")


def check_flushall(t):
    keys = [f"cc:flush:{i}" for i in range(20)]
    for key in keys:
        t.writer.set(key, "v")
        assert t.cached.get(key) == b"v"
    assert all(t.cached_value(k) == b"v" for k in keys)
    t.writer.flushall()
    start = time.monotonic()
    left = list(keys)
    while left:
        left = [k for k in left if t.cached.get(k) is not None]
        took = time.monotonic() - start
        assert not left or took < FRESH_S, (
            f"{left} still read a value {took * 1000:.1f} ms after FLUSHALL was acknowledged"
        )
    assert all(t.cached_value(k) is None for k in keys), "the cache kept flushed keys"
    print(f"{t.mode}: FLUSHALL emptied the cache of 20 keys within {took * 1000:.1f} ms")


def main():
    mode, addrs = sys.argv[1], sys.argv[2:]
    assert mode in ("node", "cluster") and addrs, __doc__
    t = Target(mode, addrs)
    check_reads_are_local(t)
    check_writes_invalidate(t)
    check_delete(t)
    check_expiry(t)
    check_flushall(t)
    print(f"{mode}: all checks passed")


if __name__ == "__main__":
    main()
