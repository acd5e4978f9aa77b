#!/usr/bin/env bash
# Live slot migration: how long it takes to move a quarter of the slots of a cluster holding
# KEYS keys of 100 bytes with their keys, and how long the writes of each batch of slots wait
# while it is handed over.
#
# Part 1 (idle): three one-node shards hold the keys; a fourth node joins, and a quarter of
#         the slots (and of the keys) move to it. Printed: the time from the join until the
#         map has no migration left, the keys the new node received, and the write pauses of
#         the hand-overs (p99 and max over the sources).
# Part 2 (under traffic): while redis-benchmark --cluster sends SETs and GETs to the cluster,
#         the fourth node is removed: its shard drains, the same quarter moving back. The same
#         numbers, and what redis-benchmark reported.
#
# Usage: bench/migration.sh [--keys N] [--bandwidth BYTES]   (default 1000000 keys, no limit)
# Needs: redis-benchmark and redis-cli (Debian: redis-tools), python3.
set -euo pipefail

KEYS=1000000
BANDWIDTH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) KEYS=$2; shift 2 ;;
    --bandwidth) BANDWIDTH=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-benchmark redis-cli python3
cargo build --release -q -p shoal
SHOAL=$root/target/release/shoal
bench_workspace

read -r seed _ <<<"$(start_cluster 3)"
ports=("$seed")
for port in $(redis-cli -p "$seed" cluster nodes | awk '{print $2}' | cut -d@ -f1 | cut -d: -f2); do
  [ "$port" = "$seed" ] || ports+=("$port")
done
for port in "${ports[@]}"; do
  redis-cli -p "$port" config set migration-max-bandwidth "$BANDWIDTH" >/dev/null
done

# The keys: every number below KEYS once (redis-benchmark's -r draws at random, so the
# sequence comes from redis-cli --pipe, one stream per owner).
echo "writing $KEYS keys of 100 bytes"
python3 - "$KEYS" "$work" "$seed" <<'PY'
import json, subprocess, sys
keys, work, seed = int(sys.argv[1]), sys.argv[2], sys.argv[3]
slots = json.loads(subprocess.run(["redis-cli", "--json", "-p", seed, "cluster", "slots"],
                                  capture_output=True, text=True, check=True).stdout)
owner = [None] * 16384
for entry in slots:
    for s in range(entry[0], entry[1] + 1):
        owner[s] = str(entry[2][1])
table = []
for i in range(256):
    crc = i << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    table.append(crc)
def slot(key):
    crc = 0
    for b in key:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ b]
    return crc % 16384
value = b"x" * 100
streams = {p: open(f"{work}/fill-{p}.resp", "wb") for p in set(o for o in owner if o)}
for n in range(keys):
    key = b"key:%012d" % n
    streams[owner[slot(key)]].write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value))
for p, f in streams.items():
    f.close()
    with open(f.name, "rb") as data:
        subprocess.run(["redis-cli", "-p", p, "--pipe"], stdin=data, check=True, capture_output=True)
PY
total_keys() { local t=0; for port in "$@"; do t=$((t + $(redis-cli -p "$port" dbsize))); done; echo "$t"; }
echo "held: $(total_keys "${ports[@]}") keys"

info_field() { redis-cli -p "$1" info cluster | tr -d '\r' | sed -n "s/^$2://p"; }
# pauses PORT...: the hand-overs' write pauses, p99 and max, over these nodes (in ms).
pauses() {
  local p99=0 max=0
  for port in "$@"; do
    local a b
    a=$(info_field "$port" shoal_migration_pause_p99_us); b=$(info_field "$port" shoal_migration_pause_max_us)
    [ "${a:-0}" -gt "$p99" ] && p99=$a
    [ "${b:-0}" -gt "$max" ] && max=$b
  done
  python3 -c "print('p99 %.1f ms, max %.1f ms' % ($p99 / 1000, $max / 1000))"
}
# phases: the longest of each part of the pauses, in ms, from INFO cluster text on stdin
# (one node's, or several nodes' one after the other: the longest over them).
phases() {
  python3 -c "
import sys
best = {}
for line in sys.stdin:
    key, _, value = line.strip().partition(':')
    if key.startswith('shoal_migration_pause_') and value.isdigit():
        best[key] = max(best.get(key, 0), int(value))
ms = lambda n: best.get('shoal_migration_pause_%s_max_us' % n, 0) / 1000
print('longest drain %.1f ms, catch-up %.1f ms, commit %.1f ms' % (ms('drain'), ms('catch_up'), ms('commit')))"
}
# phases_of PORT...: [phases] over these nodes.
phases_of() { for port in "$@"; do redis-cli -p "$port" info cluster | tr -d '\r'; done | phases; }
# settle PORT: until the map seen from PORT has no migration left; prints the seconds taken.
settle() {
  local start; start=$(date +%s.%N)
  for _ in $(seq 1 6000); do
    [ "$(info_field "$1" shoal_slots_migrating)" = 0 ] && break
    sleep 0.05
  done
  python3 -c "import time; print('%.2f' % (time.time() - $start))"
}

# Part 1: a fourth shard joins, idle.
start=$(date +%s.%N)
joiner=$(start_joiner any "127.0.0.1:$seed" --controller)
new_port=$(ps -o args= -p "$joiner" | sed -n 's/.* --port \([0-9]*\) .*/\1/p')
sleep 0.2
settle "$seed" >/dev/null
took=$(python3 -c "import time; print('%.2f' % (time.time() - $start))")
received=$(info_field "$new_port" shoal_migration_keys_received)
echo "idle join: a quarter of the slots moved in ${took}s (from starting the node): the new node received $received keys, holds $(redis-cli -p "$new_port" dbsize); hand-over pauses: $(pauses "${ports[@]}"); $(phases_of "${ports[@]}")"
echo "held: $(total_keys "${ports[@]}" "$new_port") keys in 4 shards"

# Part 2: the fourth shard drains under traffic.
redis-benchmark --cluster -p "$seed" -c 50 -n 100000000 -r "$KEYS" -d 100 -t set,get -l >"$work/traffic.log" 2>&1 &
traffic=$!
sleep 2
id=$(redis-cli -p "$new_port" cluster myid)
# The draining node is the source now: its pauses are read until it leaves.
(while redis-cli -p "$new_port" info cluster 2>/dev/null | tr -d '\r' >"$work/drain-info.tmp"; do
  [ -s "$work/drain-info.tmp" ] && mv "$work/drain-info.tmp" "$work/drain-info"
  sleep 0.05
done) &
poller=$!
start=$(date +%s.%N)
"$SHOAL" cluster remove-node "$id" --node "127.0.0.1:$seed" >"$work/remove.log" 2>&1
took=$(python3 -c "import time; print('%.2f' % (time.time() - $start))")
sleep 1
kill "$traffic" "$poller" 2>/dev/null || true
wait "$traffic" "$poller" 2>/dev/null || true
drain_p99=$(sed -n 's/^shoal_migration_pause_p99_us://p' "$work/drain-info")
drain_max=$(sed -n 's/^shoal_migration_pause_max_us://p' "$work/drain-info")
hand_overs=$(sed -n 's/^shoal_migration_hand_overs://p' "$work/drain-info")
echo "drain under traffic: the quarter moved back in ${took}s (from the removal request); the draining node's $hand_overs hand-overs paused writes p99 $((drain_p99 / 1000)) ms, max $((drain_max / 1000)) ms; $(phases <"$work/drain-info")"
echo "redis-benchmark said (errors, if any):"
grep -i "error" "$work/traffic.log" | sort | uniq -c | head -5 || true
mine=0
for port in "${ports[@]}"; do
  mine=$((mine + $(redis-cli -p "$port" --scan --pattern 'key:[0-9]*' | wc -l)))
done
echo "held: $mine of the $KEYS keys written before the join, on 3 shards ($(total_keys "${ports[@]}") keys in all with redis-benchmark's own)"
