#!/usr/bin/env bash
# The near cache: GET of one hot key with it and without it, through the proxy and through the
# smart client, on a 3-shard cluster on this machine (one worker thread per node).
#
# Part 1: two proxies of the same cluster, one with `--near-cache 64mb` and one without, each
#         driven in turn by redis-benchmark (50 clients, pipelines of 16, GET of one key of
#         100 bytes); requests per second of each, and the ratio (target >= 2x).
# Part 2: the smart client (shoal-client's `load` example, 50 concurrent tasks) reading the
#         same key with a 64 MB near cache and without; the ratio (target >= 2x).
# Each pair runs alternately, ROUNDS times; the medians are compared.
#
# Usage: bench/near-cache.sh [--requests N] [--rounds N]
# Needs: redis-benchmark and redis-cli (Debian: redis-tools), python3.
set -euo pipefail

REQUESTS=1000000
ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-benchmark redis-cli python3
cargo build --release -q -p shoal
cargo build --release -q -p shoal-client --example load
SHOAL=$root/target/release/shoal
LOAD=$root/target/release/examples/load
bench_workspace

# A 3-shard cluster.
read -r -a cluster <<<"$(start_cluster 3)"
seed=${cluster[0]}

# start_proxy PORT [ARGS...]: a proxy of the cluster, one worker thread.
start_proxy() {
  local port=$1; shift
  "$SHOAL" proxy --port "$port" --cluster "127.0.0.1:$seed" --cluster-secret-file "$SHOAL_CLUSTER_SECRET_FILE" \
    --threads 1 --log-level warn "$@" \
    >/dev/null 2>"$work/proxy-$port.log" &
  echo "$!" >>"$work/pids"
  wait_for_ping "$port"
}
plain=$(free_port)
cached=$(free_port)
start_proxy "$plain"
start_proxy "$cached" --near-cache 64mb
# The hot key redis-benchmark reads (without -r, its key is "key:__rand_int__") and the one
# the load example reads (with a key space of 1).
value=$(head -c 100 /dev/zero | tr '\0' x)
redis-cli -p "$plain" set key:__rand_int__ "$value" >/dev/null
redis-cli -p "$plain" set key:000000000000 "$value" >/dev/null

bench_proxy() {
  redis-benchmark -p "$1" -c 50 -P 16 -n "$REQUESTS" -t get --csv | tail -1 | tr -d '"' | cut -d, -f2
}
bench_client() {
  "$LOAD" "127.0.0.1:$seed" get "$REQUESTS" 50 1 100 "$1" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["failed"]==0, d; print(d["rps"])'
}

: >"$work/rps.csv"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  for kind in plain cached; do
    port=$plain; [ "$kind" = cached ] && port=$cached
    rps=$(bench_proxy "$port"); echo "proxy,$kind,$rps" >>"$work/rps.csv"
    printf '  proxy  %-6s %12.0f req/s\n' "$kind" "$rps"
  done
  for kind in plain cached; do
    near=0; [ "$kind" = cached ] && near=$((64 << 20))
    rps=$(bench_client "$near"); echo "client,$kind,$rps" >>"$work/rps.csv"
    printf '  client %-6s %12.0f req/s\n' "$kind" "$rps"
  done
done
echo "near cache of the proxy: $(redis-cli -p "$cached" info proxy | grep -E '^near_cache_(hits|misses|entries)' | tr -d '\r' | tr '\n' ' ')"

python3 - "$work/rps.csv" "$REQUESTS" <<'PY' | tee "$results/near-cache-$(date +%Y%m%d-%H%M%S).txt"
import csv, statistics, sys
rows = list(csv.reader(open(sys.argv[1])))
med = lambda via, kind: statistics.median(float(r[2]) for r in rows if r[0] == via and r[1] == kind)
print()
print(f"GET of one hot key (100 bytes), {sys.argv[2]} requests per run, medians of {len(rows)//4} runs")
print(f"{'via':<8} {'no near cache':>14} {'near cache':>12} {'ratio':>7}")
for via in ("proxy", "client"):
    plain, cached = med(via, "plain"), med(via, "cached")
    print(f"{via:<8} {plain:>14.0f} {cached:>12.0f} {cached/plain:>6.2f}x")
PY
