#!/usr/bin/env bash
# SET then GET throughput of one shoal binary under allkeys-lru and allkeys-lfu, interleaved
# rounds: 1 worker thread on CPU 0, redis-benchmark on CPU 1 (50 clients, -P 16, 100-byte
# values, a 1M-key space loaded first). With MAXMEM=64mb (the default) the keys do not fit, so
# every SET evicts; MAXMEM=0 measures without eviction. Prints requests per second and the
# server's CPU time per request (/proc utime+stime), steadier than throughput on a busy host.
# Usage: [MAXMEM=64mb] bench/policies.sh SHOAL_BINARY [ROUNDS]
# Needs: redis-benchmark, redis-cli, taskset, 2 CPUs.
set -euo pipefail
BIN=$1; ROUNDS=${2:-3}; PORT=7481; N=2000000
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
for round in $(seq 1 "$ROUNDS"); do
  for policy in allkeys-lru allkeys-lfu; do
    taskset -c 0 "$BIN" server --port $PORT --http-port 0 --threads 1 --maxmemory ${MAXMEM:-64mb} --maxmemory-policy $policy >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
    taskset -c 1 redis-benchmark -p $PORT -t set -n 1000000 -r 1000000 -d 100 -c 50 -P 16 -q >/dev/null
    line="round $round $policy:"
    for t in set get; do
      c0=$(cpu $pid)
      rps=$(taskset -c 1 redis-benchmark -p $PORT -t $t -n $N -r 1000000 -d 100 -c 50 -P 16 -q | tr '\r' '\n' | grep "requests per second" | sed "s/.*: \([0-9.]*\) requests per second.*/\1/")
      c1=$(cpu $pid)
      ns=$(( (c1 - c0) * 10000000 / N ))
      line="$line $t ${rps} rps ${ns} ns-cpu/req;"
    done
    echo "$line"
    kill $pid; wait $pid 2>/dev/null || true
  done
done
