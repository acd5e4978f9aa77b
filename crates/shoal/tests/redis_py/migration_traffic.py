"""An application on redis-py's RedisCluster while slots move: it writes and reads back keys
without pause until STOPFILE appears, and must see no error and no wrong value.

Usage: migration_traffic.py STOPFILE HOST:PORT [HOST:PORT ...]

Prints `rounds N errors 0` and `all checks passed`; any error or wrong read is printed and the
exit status is 1.
"""

import os
import sys
import time

from redis.cluster import ClusterNode, RedisCluster

LIMIT_S = 90


def main():
    stopfile, addrs = sys.argv[1], sys.argv[2:]
    nodes = [ClusterNode(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in addrs]
    rc = RedisCluster(startup_nodes=nodes, decode_responses=True)
    rounds, errors = 0, []
    started = time.monotonic()
    while not os.path.exists(stopfile) and time.monotonic() - started < LIMIT_S:
        rounds += 1
        key = f"py:{rounds % 1000}"
        value = str(rounds)
        try:
            rc.set(key, value)
            got = rc.get(key)
            if got != value:
                errors.append(f"GET {key} after SET {value}: {got!r}")
        except Exception as e:  # every error counts: the application would see it
            errors.append(f"round {rounds}: {type(e).__name__}: {e}")
    print(f"rounds {rounds} errors {len(errors)}")
    for e in errors[:10]:
        print(e)
    if errors or rounds < 100:
        sys.exit(1)
    print("all checks passed")


main()
