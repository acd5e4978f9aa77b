#!/usr/bin/env bash
# Bitmap commands, Shoal vs Redis, side by side in one run, as ratios.
#
# Both servers run at once, each pinned to CPU 0 (`taskset -c 0`; Shoal then runs one worker
# thread); redis-benchmark runs pinned to CPU 1, 50 clients, pipelining 16 (-P 16), one server
# at a time. The tests:
#   small bitmaps  SETBIT / GETBIT / BITCOUNT on 100,000 keys of 126 bytes (bits:<n>)
#   one 1 MB bitmap SETBIT / GETBIT at its end, BITFIELD INCRBY u8 in its middle (a change
#                  every call: an implementation that copied the value per write would show
#                  it here), BITCOUNT over all of it (fewer requests: it counts 8M bits)
# Several rounds, alternating servers; the median requests per second of each test is
# reported with Shoal/Redis, and the servers' CPU time per request.
#
# Usage: bench/bitmaps.sh [--rounds N] [--requests N]
# Needs: redis-server, redis-benchmark, redis-cli, python3, taskset, and at least 2 CPUs.
set -euo pipefail

ROUNDS=3
REQUESTS=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-server redis-benchmark redis-cli python3 taskset
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 CPUs" >&2; exit 1; }
bench_workspace
cargo build --release -q -p shoal --bin shoal
SHOAL=$root/target/release/shoal

redis_port=$(free_port)
taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --daemonize no --logfile "$work/redis.log" &
redis_pid=$!
echo "$redis_pid" >>"$work/pids"
shoal_port=$(free_port)
taskset -c 0 "$SHOAL" server --port "$shoal_port" --http-port 0 --log-level warn \
  2>"$work/shoal.log" &
shoal_pid=$!
echo "$shoal_pid" >>"$work/pids"
wait_for_ping "$redis_port"
wait_for_ping "$shoal_port"
for port in "$redis_port" "$shoal_port"; do
  redis-cli -p "$port" setbit big 7999999 1 >/dev/null # 1,000,000 bytes
done

# name|requests|command (redis-benchmark's __rand_int__ is a 12-digit key suffix with -r)
tests=(
  "SETBIT small|$REQUESTS|SETBIT bits:__rand_int__ 1000 1"
  "GETBIT small|$REQUESTS|GETBIT bits:__rand_int__ 1000"
  "BITCOUNT small|$REQUESTS|BITCOUNT bits:__rand_int__"
  "SETBIT 1MB|$REQUESTS|SETBIT big 7999999 1"
  "GETBIT 1MB|$REQUESTS|GETBIT big 7999999"
  "BITFIELD INCRBY 1MB|$REQUESTS|BITFIELD big INCRBY u8 4000000 1"
  "BITCOUNT 1MB|$((REQUESTS / 500))|BITCOUNT big"
)

hz=$(getconf CLK_TCK)
raw=$work/raw.csv
echo "system,round,test,rps,cpu_us_per_req" >"$raw"
echo "Shoal $("$SHOAL" --version | awk '{print $2}') vs $(redis-server --version | awk '{print $3}'), 50 clients, -P 16, $ROUNDS rounds"
for round in $(seq 1 "$ROUNDS"); do
  for spec in "${tests[@]}"; do
    IFS='|' read -r name requests command <<<"$spec"
    for system in redis shoal; do
      port=$redis_port pid=$redis_pid
      [ "$system" = shoal ] && { port=$shoal_port; pid=$shoal_pid; }
      before=$(cpu_ticks "$pid")
      # shellcheck disable=SC2086 # the command is split into its words on purpose
      line=$(taskset -c 1 redis-benchmark -p "$port" -c 50 -n "$requests" -r 100000 -P 16 \
        --csv $command | tail -1)
      after=$(cpu_ticks "$pid")
      rps=$(echo "$line" | tr -d '"' | cut -d, -f2)
      cpu_us=$(python3 -c "print(f'{($after-$before)/$hz*1e6/$requests:.2f}')")
      echo "$system,$round,$name,$rps,$cpu_us" >>"$raw"
      printf '  round %s  %-20s %-5s %12s req/s  cpu %6s us/req\n' "$round" "$name" "$system" "$rps" "$cpu_us"
    done
  done
done
for port in "$redis_port" "$shoal_port"; do
  [ "$(redis-cli -p "$port" strlen big)" = 1000000 ] || { echo "big changed length on $port" >&2; exit 1; }
done

python3 - "$raw" <<'EOF2' | tee "$results/bitmaps-$(date +%Y%m%d-%H%M%S).txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
names = list(dict.fromkeys(r["test"] for r in rows))
def median(system, test, field):
    return statistics.median(float(r[field]) for r in rows if r["system"] == system and r["test"] == test)
print()
print(f"{'test':<20} {'Redis req/s':>12} {'Shoal req/s':>12} {'ratio':>6}   {'Redis cpu':>10} {'Shoal cpu':>10} {'ratio':>6}")
for name in names:
    r = [median("redis", name, f) for f in ("rps", "cpu_us_per_req")]
    s = [median("shoal", name, f) for f in ("rps", "cpu_us_per_req")]
    print(f"{name:<20} {r[0]:>12.0f} {s[0]:>12.0f} {s[0]/r[0]:>5.2f}x   {r[1]:>8.2f}us {s[1]:>8.2f}us {s[1]/max(r[1], 1e-9):>5.2f}x")
print("(medians; a req/s ratio above 1 and a cpu-per-request ratio below 1 favour Shoal)")
EOF2
