#!/usr/bin/env bash
# One node vs a 3-shard cluster on this machine: the servers' CPU time per operation, and how
# long a new cluster map takes to reach every node.
#
# Part 1: a one-node cluster and a 3-shard cluster (one process per shard, one worker thread
#         each, 100-byte values, a 100k-key space), each driven in turn by
#         `redis-benchmark --cluster` (50 clients) and by the smart client (shoal-client's
#         `load` example, 50 concurrent tasks per node over one pipelined connection per node,
#         so each node sees as many requests per socket read as with one node). The
#         servers' CPU time (all processes, user + system) is divided by the requests served:
#         the ratio cluster / one node is the cost of sharding and routing (target <= 1.1).
# Part 2: while a watcher subscribes to every node's cluster bus, nodes join the 3-shard
#         cluster one by one; for each new map, the delay from the controller's commit to
#         each node holding it (p50 / p99 / max; target p99 < 200 ms).
#
# Usage: bench/cluster.sh [--requests N] [--joins N]
# Needs: redis-benchmark and redis-cli (Debian: redis-tools), python3.
set -euo pipefail

REQUESTS=300000
JOINS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2 ;;
    --joins) JOINS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-benchmark redis-cli python3
cargo build --release -q -p shoal
cargo build --release -q -p shoal-client --example load --example propagation
SHOAL=$root/target/release/shoal
LOAD=$root/target/release/examples/load
PROPAGATION=$root/target/release/examples/propagation
bench_workspace

hz=$(getconf CLK_TCK)

# measure LABEL DRIVER SEED PIDS...: runs SET then GET with DRIVER, prints CPU us per request.
measure() {
  local label=$1 driver=$2 seed=$3; shift 3
  for test in set get; do
    local before after rps
    before=$(cpu_ticks "$@")
    if [ "$driver" = redis-benchmark ]; then
      # redis-benchmark refuses --cluster for a single node: it talks to that node directly.
      local cluster_flag=--cluster
      [ $# -eq 1 ] && cluster_flag=
      rps=$(redis-benchmark -p "$seed" $cluster_flag -c 50 -n "$REQUESTS" -r 100000 -d 100 -t "$test" --csv \
        | tail -1 | tr -d '"' | cut -d, -f2)
    else
      # 50 requests in flight per node, as redis-benchmark's 50 clients each keep one per node:
      # the server's cost per request depends on how many share one socket read and write.
      rps=$("$LOAD" "127.0.0.1:$seed" "$test" "$REQUESTS" $((50 * $#)) 100000 100 \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["failed"]==0, d; print(d["rps"])')
    fi
    after=$(cpu_ticks "$@")
    local cpu_us
    cpu_us=$(python3 -c "print('%.2f' % (($after - $before) / $hz * 1e6 / $REQUESTS))")
    echo "$label,$driver,$test,$rps,$cpu_us" >>"$work/cpu.csv"
    printf '  %-8s %-16s %-4s %10.0f req/s  %6.2f us CPU/req\n' "$label" "$driver" "$test" "$rps" "$cpu_us"
  done
}

echo "Part 1: servers' CPU per request, one node vs 3 shards ($REQUESTS requests per test)"
: >"$work/cpu.csv"
read -r -a one <<<"$(start_cluster 1)"
measure "1 node" redis-benchmark "${one[0]}" "${one[@]:1}"
measure "1 node" shoal-client "${one[0]}" "${one[@]:1}"
for pid in "${one[@]:1}"; do kill "$pid"; done
read -r -a three <<<"$(start_cluster 3)"
measure "3 shards" redis-benchmark "${three[0]}" "${three[@]:1}"
measure "3 shards" shoal-client "${three[0]}" "${three[@]:1}"

echo
echo "Part 2: map propagation while $JOINS nodes join the 3-shard cluster"
"$PROPAGATION" "127.0.0.1:${three[0]}" "$JOINS" 60 >"$work/propagation.txt" &
watcher=$!
sleep 1
for _ in $(seq 1 "$JOINS"); do
  start_joiner any "127.0.0.1:${three[0]}" >/dev/null
  sleep 0.5
done
wait "$watcher"
cat "$work/propagation.txt"

python3 - "$work/cpu.csv" "$work/propagation.txt" <<'EOF' | tee "$results/cluster-$(date +%Y%m%d-%H%M%S).txt"
import csv, json, sys
rows = list(csv.reader(open(sys.argv[1])))
cpu = {(r[0], r[1], r[2]): float(r[4]) for r in rows}
rps = {(r[0], r[1], r[2]): float(r[3]) for r in rows}
print()
print(f"{'driver':<16} {'test':<4} {'1 node us/req':>14} {'3 shards us/req':>16} {'ratio':>6}   {'1 node req/s':>12} {'3 shards req/s':>14}")
for driver in ("redis-benchmark", "shoal-client"):
    for test in ("set", "get"):
        one, three = cpu[("1 node", driver, test)], cpu[("3 shards", driver, test)]
        print(f"{driver:<16} {test:<4} {one:>14.2f} {three:>16.2f} {three/one:>5.2f}x   {rps[('1 node', driver, test)]:>12.0f} {rps[('3 shards', driver, test)]:>14.0f}")
lines = [l for l in open(sys.argv[2]) if l.startswith("{")]
if lines:
    p = json.loads(lines[-1])
    print(f"map propagation: {p['epochs']} epochs, {p['arrivals']} node arrivals: p50 {p['p50_ms']} ms, p99 {p['p99_ms']} ms, max {p['max_ms']} ms")
EOF
