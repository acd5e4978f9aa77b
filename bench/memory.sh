#!/usr/bin/env bash
# Shoal vs the real Redis: resident memory against maxmemory when filled past the limit.
#
# Each run starts a fresh server with --maxmemory 64mb (Redis: redis-server --maxmemory 64mb
# --save '' --appendonly no; Shoal: shoal server with its default threads, one per CPU) under
# allkeys-lru, or volatile-lru with a one-hour TTL on every key, and writes 200 MB of values
# over two pipelined connections at once (redis-cli --pipe), then reads VmRSS after a pause
# that lets background upkeep run. Scenarios: each value size alone (100 B, 1 KB, 4 KB,
# 100 KB), and a changing mix on one server: 100 B, then 100 KB, then 100 B, then 1 KB.
# Printed: RSS / maxmemory (whole process), and for Shoal also (RSS - idle RSS) / maxmemory.
#
# Usage: bench/memory.sh [--mb N] [--maxmemory-mb N] [--settle SECONDS] [--shoal PATH]
#        (--shoal: a shoal binary to measure instead of building this tree's)
# Needs: redis-server, redis-cli (Debian: redis-server redis-tools), python3.
set -euo pipefail

MB=200
MAXMEMORY_MB=64
SETTLE=1.5
SHOAL=
while [ $# -gt 0 ]; do
  case "$1" in
    --mb) MB=$2; shift 2 ;;
    --maxmemory-mb) MAXMEMORY_MB=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --shoal) SHOAL=$(realpath "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-server redis-cli python3
bench_workspace
if [ -z "$SHOAL" ]; then
  cargo build --release -q -p shoal
  SHOAL=$root/target/release/shoal
fi
MAXMEMORY=$((MAXMEMORY_MB * 1024 * 1024))

# start SYSTEM POLICY: starts a fresh server, prints "PORT PID".
start() {
  local port
  port=$(free_port)
  if [ "$1" = redis ]; then
    redis-server --port "$port" --bind 127.0.0.1 --maxmemory "${MAXMEMORY_MB}mb" \
      --maxmemory-policy "$2" --save '' --appendonly no --daemonize no \
      --logfile "$work/redis-$port.log" >/dev/null &
  else
    "$SHOAL" server --port "$port" --http-port 0 --maxmemory "${MAXMEMORY_MB}mb" \
      --maxmemory-policy "$2" --log-level warn >/dev/null 2>"$work/shoal-$port.log" &
  fi
  local pid=$!
  echo "$pid" >>"$work/pids"
  wait_for_ping "$port"
  echo "$port $pid"
}

rss_bytes() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }

# commands SIZE TTL PREFIX PART: the SETs of one of two halves of MB megabytes of SIZE-byte
# values under PREFIX:PART:N (with EX TTL unless TTL is 0), cached in $work.
commands() {
  local file=$work/cmd-$1-$2-$3-$4
  [ -f "$file" ] || python3 - "$1" "$2" "$3:$4" "$((MB * 1024 * 1024 / 2))" >"$file" <<'EOF'
import sys
size, ttl, prefix, total = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), int(sys.argv[4])
value = b"x" * size
tail = b"$2\r\nEX\r\n$%d\r\n%d\r\n" % (len(str(ttl)), ttl) if ttl else b""
head = b"*5\r\n$3\r\nSET\r\n" if ttl else b"*3\r\n$3\r\nSET\r\n"
out, batch = sys.stdout.buffer, []
for i in range(total // size):
    key = prefix + b":%d" % i
    batch.append(b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (head, len(key), key, size, value, tail))
    if len(batch) == 1000:
        out.write(b"".join(batch)); batch = []
out.write(b"".join(batch))
EOF
  echo "$file"
}

# fill PORT SIZE TTL PREFIX: writes MB megabytes over two connections at once.
fill() {
  local a b
  a=$(commands "$2" "$3" "$4" a)
  b=$(commands "$2" "$3" "$4" b)
  redis-cli -p "$1" --pipe <"$a" >/dev/null &
  local first=$!
  redis-cli -p "$1" --pipe <"$b" >/dev/null
  wait "$first"
}

raw=$work/raw.csv
echo "policy,scenario,phase,system,rss,idle" >"$raw"
# run POLICY SCENARIO SIZES...: one server per system, the sizes written in turn.
run() {
  local policy=$1 scenario=$2; shift 2
  local ttl=0
  [ "$policy" = volatile-lru ] && ttl=3600
  for system in redis shoal; do
    local port pid idle phase=0
    read -r port pid <<<"$(start "$system" "$policy")"
    redis-cli -p "$port" set warm up >/dev/null
    redis-cli -p "$port" info memory >/dev/null
    idle=$(rss_bytes "$pid")
    for size in "$@"; do
      phase=$((phase + 1))
      fill "$port" "$size" "$ttl" "p$phase"
      sleep "$SETTLE"
      echo "$policy,$scenario,$phase:$size,$system,$(rss_bytes "$pid"),$idle" >>"$raw"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
  done
}

echo "Shoal $("$SHOAL" --version | awk '{print $2}') vs $(redis-server --version | awk '{print $1, $2, $3}'): RSS after writing $MB MB per phase, maxmemory ${MAXMEMORY_MB} MB, $(nproc) CPUs"
for policy in allkeys-lru volatile-lru; do
  for size in 100 1000 4096 100000; do
    run "$policy" "$size B" "$size"
  done
  run "$policy" mix 100 100000 100 1000
done

python3 - "$raw" "$MAXMEMORY" <<'EOF' | tee "$results/memory-$(date +%Y%m%d-%H%M%S).txt"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
maxmemory = int(sys.argv[2])
def get(policy, scenario, phase, system):
    return next(r for r in rows if (r["policy"], r["scenario"], r["phase"], r["system"]) == (policy, scenario, phase, system))
print()
print(f"{'policy':<13} {'scenario':<10} {'after':<10} {'Redis RSS/max':>13} {'Shoal RSS/max':>13} {'Shoal (RSS-idle)/max':>20}")
seen = []
for r in rows:
    key = (r["policy"], r["scenario"], r["phase"])
    if key in seen:
        continue
    seen.append(key)
    redis, shoal = get(*key, "redis"), get(*key, "shoal")
    size = r["phase"].split(":")[1]
    ratio = lambda x, idle=0: (int(x["rss"]) - idle) / maxmemory
    print(f"{key[0]:<13} {key[1]:<10} {size + ' B':<10} {ratio(redis):>12.2f}x {ratio(shoal):>12.2f}x {ratio(shoal, int(shoal['idle'])):>19.2f}x")
idle = {s: sorted(int(r["idle"]) for r in rows if r["system"] == s) for s in ("redis", "shoal")}
print(f"(idle RSS: Redis {idle['redis'][len(idle['redis']) // 2] / 2**20:.1f} MiB, "
      f"Shoal {idle['shoal'][len(idle['shoal']) // 2] / 2**20:.1f} MiB, medians)")
EOF
