#!/usr/bin/env bash
# What hot-key sampling costs, in instructions per request: `shoal server --threads 1` under
# callgrind, driven by redis-benchmark (-P 16, 4 clients, random keys over 100k, so the
# summaries churn: their worst case), counters zeroed after startup and the prefill.
#
# Modes: `off` (SHOAL_HOTKEYS_SAMPLE_RATIO=0: no sampling), `bg` (background sampling, 1
# command in --bg-ratio, the default 64), `session` (HOTKEYS START METRICS 2 CPU NET, Redis's default
# SAMPLE 1: every command sampled). Instruction counts do not depend on the machine's noise.
#
# Usage: bench/hotkeys-cost.sh [--requests N] [--tests "get set"] [--modes "off bg session"]
#                              [--bg-ratio N (default 64)]
# Needs: valgrind (callgrind_control), redis-benchmark, redis-cli, python3.
set -euo pipefail

REQUESTS=200000
TESTS="get set"
MODES="off bg session"
BG_RATIO=64
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) REQUESTS=$2; shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    --modes) MODES=$2; shift 2 ;;
    --bg-ratio) BG_RATIO=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in valgrind callgrind_control redis-benchmark redis-cli python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q -p shoal
SHOAL=${CARGO_TARGET_DIR:-$root/target}/release/shoal
work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
source "$root/bench/lib.sh"

# Prints instructions per request of one mode and test.
measure() {
  local mode=$1 test=$2 ratio=$BG_RATIO port
  [ "$mode" = off ] && ratio=0
  port=$(free_port)
  SHOAL_HOTKEYS_SAMPLE_RATIO=$ratio valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" \
    "$SHOAL" server --threads 1 --port "$port" --http-port 0 --log-level warn 2>"$work/vg.log" &
  pid=$!
  for _ in $(seq 1 600); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
    sleep 0.1
  done
  redis-benchmark -p "$port" -q -n 100000 -r 100000 -P 16 -c 4 -t set -d 100 >/dev/null
  [ "$mode" = session ] && redis-cli -p "$port" hotkeys start metrics 2 cpu net >/dev/null
  callgrind_control -z "$pid" >/dev/null 2>&1
  redis-benchmark -p "$port" -q -n "$REQUESTS" -r 100000 -P 16 -c 4 -t "$test" -d 100 >/dev/null
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  # The dump taken after the benchmark is the one with the most instructions.
  python3 - "$work" "$REQUESTS" <<'PY'
import glob, sys
best = 0
for f in glob.glob(sys.argv[1] + "/cg.*.*"):  # the dump callgrind_control -d took
    for line in open(f, errors="replace"):
        if line.startswith("totals:") or line.startswith("summary:"):
            best = max(best, int(line.split()[1]))
print(f"{best / int(sys.argv[2]):.0f}")
PY
  rm -f "$work"/cg.*
}

printf '%-8s' test; for m in $MODES; do printf '%10s' "$m"; done; echo "   (instructions per request)"
for t in $TESTS; do
  printf '%-8s' "$t"
  for m in $MODES; do printf '%10s' "$(measure "$m" "$t")"; done
  echo
done
