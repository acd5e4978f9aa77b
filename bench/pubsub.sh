#!/usr/bin/env bash
# PUBLISH fan-out, Shoal vs Redis, side by side in one run, as a ratio.
#
# Each server runs alone, pinned to CPU 0 (`taskset -c 0`; Shoal then runs one worker
# thread); the load (crates/shoal/examples/pubsub_fanout.rs) runs pinned to CPU 1: SUBSCRIBERS
# connections subscribe to one channel, one publisher sends MESSAGES messages of SIZE bytes
# (16 pipelined), and the tool times from the first PUBLISH until every subscriber has read
# every message. Several rounds, alternating servers; the median deliveries per second of
# each is reported with Shoal/Redis.
#
# Usage: bench/pubsub.sh [--rounds N] [--subscribers N] [--messages N] [--size N]
# Needs: redis-server, redis-cli, python3, taskset, and at least 2 CPUs.
set -euo pipefail

ROUNDS=3
SUBSCRIBERS=1000
MESSAGES=2000
SIZE=32
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --subscribers) SUBSCRIBERS=$2; shift 2 ;;
    --messages) MESSAGES=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-server redis-cli python3 taskset
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 CPUs" >&2; exit 1; }
bench_workspace
cargo build --release -q -p shoal --bin shoal --example pubsub_fanout
SHOAL=$root/target/release/shoal
LOAD=$root/target/release/examples/pubsub_fanout
ulimit -n "$((SUBSCRIBERS + 1024))" 2>/dev/null || true

# run_round NAME: starts the server NAME (redis or shoal) on CPU 0, runs the load on CPU 1,
# prints its deliveries per second, and stops the server.
run_round() {
  local port pid
  port=$(free_port)
  if [ "$1" = redis ]; then
    taskset -c 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --maxclients "$((SUBSCRIBERS + 100))" --daemonize no --logfile "$work/redis.log" &
  else
    taskset -c 0 "$SHOAL" server --port "$port" --http-port 0 --log-level warn \
      --maxclients "$((SUBSCRIBERS + 100))" 2>"$work/shoal.log" &
  fi
  pid=$!
  wait_for_ping "$port"
  local line
  line=$(taskset -c 1 "$LOAD" "127.0.0.1:$port" "$SUBSCRIBERS" "$MESSAGES" "$SIZE")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  case "$line" in
    *complete="$SUBSCRIBERS"*) ;;
    *) echo "$1: not every subscriber got every message: $line" >&2; exit 1 ;;
  esac
  echo "  $1: $line" >&2
  echo "${line##*deliveries_per_sec=}"
}

redis=() shoal=()
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round" >&2
  redis+=("$(run_round redis)")
  shoal+=("$(run_round shoal)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
r=$(median "${redis[@]}") s=$(median "${shoal[@]}")
printf 'PUBLISH to %d subscribers (%d messages of %d B): Redis %s, Shoal %s deliveries/s: %.2fx\n' \
  "$SUBSCRIBERS" "$MESSAGES" "$SIZE" "$r" "$s" "$(python3 -c "print($s/$r)")"
