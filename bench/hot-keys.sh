#!/usr/bin/env bash
# Hot keys spread by themselves: one key read by everyone, on a cluster of 3 shards x (primary
# + 2 replicas), through `shoal proxy` started with no special flag.
#
# A 2-core machine cannot show what more machines give, so each node is held to the same slice
# of a core (a cgroup v1 CPU quota, --node-cpu, default 25%): a node's capacity then stands for
# a machine's, and the proxy and redis-benchmark have the rest of the machine.
#
# Part 1: what one primary gives: redis-benchmark GET of the hot key straight at its primary.
# Part 2: the same load through the proxy once the controller has found the key hot and the
#         proxy spreads its reads: requests per second (target >= 2x part 1), and the share of
#         the key's reads each member of its shard served (target: primary <= 40%).
# Part 4 (in the rounds of part 2): the same load through a proxy with --hot-key-copies 2,
#         which also reads the key's copies on the two other shards: requests per second, and
#         the share of the GETs the key's own shard served against the other two.
# Part 3: a write storm on one key (redis-benchmark INCR, 200 clients, -P 32) through a proxy
#         with --hot-write-batch-ms 50 and through one without: requests per second, and the
#         commands the key's primary ran per INCR sent.
# Also printed: how long after the load began the proxy had the key as hot.
# Each part runs ROUNDS times, alternately; the medians are compared.
#
# Usage: bench/hot-keys.sh [--requests N] [--rounds N] [--node-cpu PERCENT]
# Needs: root (cgroups), redis-benchmark and redis-cli (Debian: redis-tools), python3.
set -euo pipefail

REQUESTS=300000
ROUNDS=3
NODE_CPU=25
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --node-cpu) NODE_CPU=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-benchmark redis-cli python3
cgroups=/sys/fs/cgroup/cpu
[ -w "$cgroups" ] || { echo "needs a writable $cgroups (cgroup v1 cpu, as root)" >&2; exit 1; }
cargo build --release -q -p shoal
SHOAL=$root/target/release/shoal
bench_workspace
groups=()
cleanup_groups() {
  stop_nodes
  for g in "${groups[@]}"; do rmdir "$g" 2>/dev/null || true; done
}
trap cleanup_groups EXIT

# cap PID: holds the process to NODE_CPU% of one core.
cap() {
  local g="$cgroups/shoal-bench-$1"
  mkdir -p "$g"
  groups+=("$g")
  # A short period, so a capped node runs often (heartbeats and leases stay on time).
  echo 10000 >"$g/cpu.cfs_period_us"
  echo $((NODE_CPU * 100)) >"$g/cpu.cfs_quota_us"
  for task in /proc/"$1"/task/*; do echo "${task##*/}" >"$g/tasks"; done
}

seed=$(free_port)
pids=("$(start_node any "$seed" --controller --replicas 2)")
for _ in $(seq 2 9); do
  pids+=("$(start_joiner any "127.0.0.1:$seed" --controller)")
done
wait_shards "$seed" 3
for pid in "${pids[@]}"; do cap "$pid"; done

proxy=$(free_port)
"$SHOAL" proxy --port "$proxy" --cluster "127.0.0.1:$seed" \
  --cluster-secret-file "$SHOAL_CLUSTER_SECRET_FILE" --log-level warn \
  >/dev/null 2>"$work/proxy.log" &
echo "$!" >>"$work/pids"
wait_for_ping "$proxy"
copying=$(free_port)
"$SHOAL" proxy --port "$copying" --cluster "127.0.0.1:$seed" --hot-key-copies 2 \
  --cluster-secret-file "$SHOAL_CLUSTER_SECRET_FILE" --log-level warn \
  >/dev/null 2>"$work/proxy-copies.log" &
echo "$!" >>"$work/pids"
wait_for_ping "$copying"

# redis-benchmark's key without -r is "key:__rand_int__".
key=key:__rand_int__
value=$(head -c 100 /dev/zero | tr '\0' x)
redis-cli -p "$proxy" set "$key" "$value" >/dev/null
# The members of the key's shard: "primary_port replica_port replica_port".
read -r -a members <<<"$(redis-cli -p "$seed" cluster shards | python3 -c '
import sys
slot = int(sys.argv[1])
lines = [l.strip() for l in sys.stdin.read().splitlines()]
# CLUSTER SHARDS, as redis-cli prints it: "slots", the ranges, "nodes", then each node'"'"'s
# fields as name/value lines.
shards, cur = [], None
i = 0
while i < len(lines):
    if lines[i] == "slots":
        cur = {"ranges": [], "nodes": []}; shards.append(cur); i += 1
        while i < len(lines) and lines[i] != "nodes":
            cur["ranges"].append(int(lines[i])); i += 1
    elif lines[i] == "port" and cur is not None:
        port = int(lines[i + 1])
        role = lines[lines.index("role", i) + 1]
        cur["nodes"].append((role, port)); i += 2
    else:
        i += 1
for s in shards:
    r = s["ranges"]
    if any(r[j] <= slot <= r[j + 1] for j in range(0, len(r), 2)):
        ordered = sorted(s["nodes"], key=lambda n: n[0] != "master")
        print(" ".join(str(p) for _, p in ordered))
' "$(redis-cli -p "$seed" cluster keyslot "$key")")"
[ "${#members[@]}" -eq 3 ] || { echo "expected a primary and 2 replicas, got ${members[*]}" >&2; exit 1; }
echo "hot key $key on primary ${members[0]}, replicas ${members[1]} ${members[2]}; each node held to ${NODE_CPU}% of a core"

gets() { redis-cli -p "$1" info commandstats | tr -d '\r' | sed -n 's/^cmdstat_get:calls=\([0-9]*\),.*/\1/p'; }
bench() {
  redis-benchmark -p "$1" -c 50 -P 16 -n "$REQUESTS" -t get --csv | tail -1 | tr -d '"' | cut -d, -f2
}
# Every node's port, the key's shard first.
read -r -a everyone <<<"${members[*]} $(redis-cli -p "$seed" cluster nodes | awk '{print $2}' \
  | cut -d@ -f1 | cut -d: -f2 | grep -v -x -e "${members[0]}" -e "${members[1]}" -e "${members[2]}" | tr '\n' ' ')"
[ "${#everyone[@]}" -eq 9 ] || { echo "expected 9 nodes, got ${everyone[*]}" >&2; exit 1; }
hot_in_proxy() { redis-cli -p "$proxy" info proxy | tr -d '\r' | sed -n 's/^hot_keys:\([0-9]*\)/\1/p'; }

# Make the key hot and time how long the proxy takes to learn it.
start=$(date +%s.%N)
redis-benchmark -p "$proxy" -c 20 -P 16 -n 100000000 -t get >/dev/null 2>&1 &
warm=$!
for _ in $(seq 1 300); do
  [ "$(hot_in_proxy)" = 1 ] && break
  sleep 0.05
done
learned=$(python3 -c "import time; print('%.2f' % (time.time() - $start))")
kill "$warm" 2>/dev/null || true
wait "$warm" 2>/dev/null || true
[ "$(hot_in_proxy)" = 1 ] || { echo "the proxy never learned the hot key" >&2; exit 1; }
echo "the proxy had the key as hot ${learned}s after the load began"

: >"$work/rps.csv"
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS"
  rps=$(bench "${members[0]}"); echo "primary,$rps" >>"$work/rps.csv"
  printf '  one primary        %10.0f req/s\n' "$rps"
  before=(); for m in "${members[@]}"; do before+=("$(gets "$m")"); done
  rps=$(bench "$proxy"); echo "proxy,$rps" >>"$work/rps.csv"
  after=(); for m in "${members[@]}"; do after+=("$(gets "$m")"); done
  shares=$(python3 -c '
import sys
b, a = sys.argv[1].split(), sys.argv[2].split()
d = [int(y) - int(x) for x, y in zip(b, a)]
print(" ".join("%.0f%%" % (100 * x / max(1, sum(d))) for x in d))' "${before[*]}" "${after[*]}")
  echo "share,$shares" >>"$work/rps.csv"
  printf '  through the proxy  %10.0f req/s   served by primary/replica/replica: %s\n' "$rps" "$shares"
  before=(); for m in "${everyone[@]}"; do before+=("$(gets "$m")"); done
  rps=$(bench "$copying"); echo "copies,$rps" >>"$work/rps.csv"
  after=(); for m in "${everyone[@]}"; do after+=("$(gets "$m")"); done
  own=$(python3 -c '
import sys
b, a = sys.argv[1].split(), sys.argv[2].split()
d = [int(y) - int(x) for x, y in zip(b, a)]
print("%.0f%%" % (100 * sum(d[:3]) / max(1, sum(d))))' "${before[*]}" "${after[*]}")
  printf '  with 2 key copies  %10.0f req/s   served by the key'"'"'s own shard: %s\n' "$rps" "$own"
done
echo "copying proxy: $(redis-cli -p "$copying" info proxy | tr -d '\r' | grep -E '^(copy_reads|copy_fills|copy_drops):' | tr '\n' ' ')"
# Part 3: write storms, with and without batching.
batching=$(free_port)
"$SHOAL" proxy --port "$batching" --cluster "127.0.0.1:$seed" --hot-write-batch-ms 50 \
  --cluster-secret-file "$SHOAL_CLUSTER_SECRET_FILE" --log-level warn \
  >/dev/null 2>"$work/proxy-batching.log" &
echo "$!" >>"$work/pids"
wait_for_ping "$batching"
counter=counter:__rand_int__
redis-cli -p "$proxy" incr "$counter" >/dev/null
counter_primary=
for m in $(redis-cli -p "$seed" cluster nodes | awk '$3 ~ /master/ {print $2}' | cut -d@ -f1 | cut -d: -f2); do
  [ "$(redis-cli -p "$m" exists "$counter")" = 1 ] && counter_primary=$m
done
[ -n "$counter_primary" ] || { echo "cannot find the primary of $counter" >&2; exit 1; }
incrs_at() { redis-cli -p "$counter_primary" info commandstats | tr -d '\r' \
  | sed -n 's/^cmdstat_incr\(by\)\{0,1\}:calls=\([0-9]*\),.*/\2/p' | awk '{s += $1} END {print s + 0}'; }
storm() { redis-benchmark -p "$1" -c 200 -P 32 -n "$REQUESTS" -t incr --csv | tail -1 | tr -d '"' | cut -d, -f2; }
# Make the counter hot (the batching proxy learns it with the map).
redis-benchmark -p "$proxy" -c 20 -P 16 -n 100000000 -t incr >/dev/null 2>&1 &
warm=$!
for _ in $(seq 1 300); do
  [ "$(redis-cli -p "$batching" info proxy | tr -d '\r' | sed -n 's/^hot_keys:\([0-9]*\)/\1/p')" -ge 1 ] && break
  sleep 0.05
done
kill "$warm" 2>/dev/null || true; wait "$warm" 2>/dev/null || true
echo "write storm on $counter (primary $counter_primary)"
for round in $(seq 1 "$ROUNDS"); do
  for kind in plain batched; do
    port=$proxy; [ "$kind" = batched ] && port=$batching
    before=$(incrs_at); rps=$(storm "$port"); after=$(incrs_at)
    per=$(python3 -c "print('%.4f' % (($after - $before) / $REQUESTS))")
    echo "write_$kind,$rps" >>"$work/rps.csv"
    printf '  INCR through the proxy, %-8s %10.0f req/s   primary commands per INCR %s\n' "$kind" "$rps" "$per"
  done
done
echo "batching proxy: $(redis-cli -p "$batching" info proxy | tr -d '\r' | grep -E '^(batched_writes|write_batches):' | tr '\n' ' ')"

python3 - "$work/rps.csv" <<'PY'
import statistics, sys
rows = [l.strip().split(",", 1) for l in open(sys.argv[1])]
med = lambda kind: statistics.median(float(v) for k, v in rows if k == kind)
one, spread = med("primary"), med("proxy")
print(f"median: one primary {one:,.0f} req/s, through the proxy spread {spread:,.0f} req/s: "
      f"{spread / one:.2f}x")
copies = med("copies")
print(f"median with 2 key copies: {copies:,.0f} req/s: {copies / one:.2f}x one primary, "
      f"{copies / spread:.2f}x spread alone")
plain, batched = med("write_plain"), med("write_batched")
print(f"median write storm: {plain:,.0f} req/s without batching, {batched:,.0f} req/s with "
      f"--hot-write-batch-ms 50: {batched / plain:.2f}x")
PY
