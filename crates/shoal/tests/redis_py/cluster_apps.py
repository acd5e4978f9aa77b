"""What applications send, through an unmodified redis-py against a Shoal cluster.

Usage: cluster_apps.py HOST:PORT [HOST:PORT ...] (every node of the cluster).

Each check prints one line when it passes; any failure raises, and the exit status says so.
"""

import sys
import time

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import LockError, RedisClusterException, WatchError

DEADLINE_S = 10


def node_of(rc, key):
    """A plain connection to the primary that holds `key`'s slot."""
    node = rc.get_node_from_key(key)
    return redis.Redis(host=node.host, port=node.port)


def other_node(rc, key):
    """A plain connection to a primary that does not hold `key`'s slot."""
    owner = rc.get_node_from_key(key)
    for node in rc.get_primaries():
        if (node.host, node.port) != (owner.host, owner.port):
            return redis.Redis(host=node.host, port=node.port)
    raise AssertionError("the cluster has a single primary")


def wait_message(pubsub, want_channel):
    """The next message on `want_channel` (skipping subscribe confirmations)."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] in ("message", "pmessage"):
            assert message["channel"] == want_channel, message
            return message
    raise AssertionError(f"no message on {want_channel!r} within {DEADLINE_S} s")


def check_lock(rc):
    # redis-py's Lock is three Lua scripts (acquire is SET NX PX, release and extend are
    # EVALSHA with the lock's key): it must work unchanged on a cluster.
    lock = rc.lock("app:{lock}:orders", timeout=5, blocking_timeout=1)
    assert lock.acquire(), "the lock was not acquired"
    assert lock.owned() and lock.locked()
    rival = rc.lock("app:{lock}:orders", timeout=5)
    assert not rival.acquire(blocking=False), "a second holder took a held lock"
    lock.extend(5)
    assert rc.pttl("app:{lock}:orders") > 5000
    lock.release()
    assert not lock.locked()
    assert rival.acquire(blocking=False), "the released lock could not be taken"
    try:
        lock.release()
        raise AssertionError("releasing a lock someone else holds succeeded")
    except LockError:
        pass
    rival.release()
    print("lock: acquire, contention, extend and release work")


def check_transaction(rc):
    node = node_of(rc, "app:{tx}:a")
    pipe = node.pipeline(transaction=True)
    pipe.set("app:{tx}:a", 1).incr("app:{tx}:a").set("app:{tx}:b", "x").get("app:{tx}:b")
    assert pipe.execute() == [True, 2, True, b"x"]
    # A runtime error inside EXEC is that command's reply; the others run.
    pipe = node.pipeline(transaction=True)
    pipe.incr("app:{tx}:b").set("app:{tx}:c", 3)
    results = pipe.execute(raise_on_error=False)
    assert isinstance(results[0], redis.ResponseError) and results[1] is True, results
    # Keys of two slots in one transaction are refused as Redis Cluster refuses them.
    pipe = node.pipeline(transaction=True)
    pipe.set("app:{tx}:a", 1).set("app:{other}:a", 1)
    try:
        pipe.execute()
        raise AssertionError("a transaction across slots ran")
    except redis.ResponseError as e:
        assert "CROSSSLOT" in str(e) or "MOVED" in str(e), e
    print("transaction: MULTI/EXEC pipeline, per-command errors, CROSSSLOT")


def check_watch(rc):
    key = "app:{watch}:balance"
    rc.set(key, 100)
    node = node_of(rc, key)
    with node.pipeline() as pipe:
        pipe.watch(key)
        balance = int(pipe.get(key))
        rc.set(key, 50)  # another client changes the watched key
        pipe.multi()
        pipe.set(key, balance - 10)
        try:
            pipe.execute()
            raise AssertionError("EXEC ran after the watched key changed")
        except WatchError:
            pass
    assert rc.get(key) == b"50"
    # Unchanged, the same sequence commits.
    with node.pipeline() as pipe:
        pipe.watch(key)
        balance = int(pipe.get(key))
        pipe.multi()
        pipe.set(key, balance - 10)
        assert pipe.execute() == [True]
    assert rc.get(key) == b"40"
    print("watch: a changed key aborts EXEC, an unchanged one commits")


def check_eval(rc):
    script = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])"
    assert rc.eval(script, 2, "app:{ev}:name", "app:{ev}:count", "shoal", 5) == 5
    assert rc.get("app:{ev}:name") == b"shoal"
    counter = rc.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert counter(keys=["app:{ev}:count"], args=[3]) == 8
    try:
        rc.eval("return 1", 2, "app:{a}:x", "app:{b}:y")
        raise AssertionError("a script declaring keys of two slots ran")
    except RedisClusterException:
        pass  # redis-py itself refuses keys of two slots
    except redis.ResponseError as e:
        assert "CROSSSLOT" in str(e), e
    print("eval: scripts with keys, EVALSHA through register_script")


def check_hashes(rc):
    rc.hset("app:user:1", mapping={"name": "Ada", "visits": 1, "lang": "en"})
    assert rc.hgetall("app:user:1") == {b"name": b"Ada", b"visits": b"1", b"lang": b"en"}
    assert rc.hincrby("app:user:1", "visits", 2) == 3
    assert rc.hmget("app:user:1", ["name", "missing"]) == [b"Ada", None]
    assert rc.hdel("app:user:1", "lang") == 1
    assert rc.hlen("app:user:1") == 2
    assert rc.type("app:user:1") == b"hash"
    try:
        rc.get("app:user:1")
        raise AssertionError("GET of a hash answered")
    except redis.ResponseError as e:
        assert str(e).startswith("WRONGTYPE"), e
    print("hashes: HSET mapping, HGETALL, HINCRBY, HMGET, HDEL, WRONGTYPE")


def check_publish_across_nodes(rc):
    channel = "app:news"
    owner_of_channel = node_of(rc, channel)
    subscriber = other_node(rc, channel).pubsub()
    subscriber.subscribe(channel)
    subscriber.get_message(timeout=1)  # the subscribe confirmation
    end = time.monotonic() + DEADLINE_S
    # The relay between nodes may take a moment to link up: publish until one arrives.
    while True:
        owner_of_channel.publish(channel, "hello")
        message = subscriber.get_message(timeout=0.3)
        if message and message["type"] == "message":
            assert message["data"] == b"hello", message
            break
        assert time.monotonic() < end, "PUBLISH never reached another node's subscriber"
    subscriber.close()
    print("pubsub: PUBLISH on one node reaches a subscriber on another")


def check_expired_event(rc):
    key = "app:session:42"
    rc.config_set("notify-keyspace-events", "Ex", target_nodes=RedisCluster.ALL_NODES)
    holder = node_of(rc, key)
    pubsub = holder.pubsub()
    pubsub.subscribe("__keyevent@0__:expired")
    pubsub.get_message(timeout=1)
    rc.set(key, "token", px=100)
    message = wait_message(pubsub, b"__keyevent@0__:expired")
    assert message["data"] == key.encode(), message
    pubsub.close()
    rc.config_set("notify-keyspace-events", "", target_nodes=RedisCluster.ALL_NODES)
    print("keyspace events: an expired key is announced on its node")


def main():
    nodes = []
    for arg in sys.argv[1:]:
        host, port = arg.rsplit(":", 1)
        nodes.append(ClusterNode(host, int(port)))
    rc = RedisCluster(startup_nodes=nodes, socket_timeout=5)
    assert len(rc.get_primaries()) >= 2, "the test wants at least two primaries"
    checks = [
        check_lock,
        check_transaction,
        check_watch,
        check_eval,
        check_hashes,
        check_publish_across_nodes,
        check_expired_event,
    ]
    for check in checks:
        check(rc)
    print("all checks passed")


if __name__ == "__main__":
    main()
