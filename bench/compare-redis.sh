#!/usr/bin/env bash
# Shoal vs the real Redis on the same machine, side by side, as ratios.
#
# Both servers run pinned to CPU 0 (`taskset -c 0`); redis-benchmark runs pinned to CPU 1.
# Part 1: throughput and p99 of GET and SET (50 clients, 100-byte values, a 1M-key space
#         pre-filled in both), of HSET and HGET (one field of 10 in each of 250k small hashes
#         pre-filled in both; HSET overwrites it with 100 bytes) and of EVALSHA of a small script
#         (`redis.call('get', KEYS[1])`, loaded with SCRIPT LOAD first) at -P 1 and -P 16,
#         several rounds interleaved; the median of each is reported with the Shoal/Redis ratio.
#         Server CPU time per request is reported too, because at -P 1 a single
#         redis-benchmark process can saturate its own core first.
# Part 2: RSS bytes per key after loading 1M keys of 100 bytes into fresh instances, and RSS and
#         used_memory bytes per field after loading 100k hashes of 10 fields (`field:N` ->
#         10-byte values: Redis keeps them as listpacks) into fresh instances.
#
# Usage: bench/compare-redis.sh [--rounds N] [--requests-p1 N] [--requests-p16 N] [--keys N]
#                               [--tests "set get hset hget evalsha"] [--skip-memory]
#                               [--memory-only] [--against SHOAL_BINARY] [--against-env VAR=VALUE]
# --against runs another shoal binary (say, a build of the commit before a change) in Redis's
# place, so a change shows its before/after ratios in one run. --against-env sets a variable
# for that binary only: `--against target/release/shoal --against-env
# SHOAL_HOTKEYS_SAMPLE_RATIO=0` measures hot-key sampling on (Shoal) against off (Base).
# Needs: redis-server, redis-benchmark, redis-cli (Debian: redis-server redis-tools), python3,
#        taskset, and at least 2 CPUs.
set -euo pipefail

ROUNDS=3
REQUESTS_P1=400000
REQUESTS_P16=2000000
KEYS=1000000
SKIP_MEMORY=0
SKIP_THROUGHPUT=0
AGAINST=
AGAINST_ENV=()
TESTS="set get hset hget evalsha"
HASHES=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests-p1) REQUESTS_P1=$2; shift 2 ;;
    --requests-p16) REQUESTS_P16=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --skip-memory) SKIP_MEMORY=1; shift ;;
    --memory-only) SKIP_THROUGHPUT=1; shift ;;
    --against) AGAINST=$(realpath "$2"); shift 2 ;;
    --against-env) AGAINST_ENV+=("$2"); shift 2 ;;
    --tests) TESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

for tool in redis-server redis-benchmark redis-cli python3 taskset; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 CPUs" >&2; exit 1; }

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release -q -p shoal
SHOAL=$root/target/release/shoal
work=$(mktemp -d)
results=$root/bench/results
mkdir -p "$results"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

source "$root/bench/lib.sh"

# The server Shoal is compared with: Redis, or the binary given with --against.
start_redis() {
  if [ -n "$AGAINST" ]; then
    env "${AGAINST_ENV[@]}" taskset -c 0 "$AGAINST" server --port "$1" --http-port 0 \
      --log-level warn 2>"$work/base-$1.log" &
  else
    taskset -c 0 redis-server --port "$1" --bind 127.0.0.1 --save '' --appendonly no \
      --daemonize no --logfile "$work/redis-$1.log" &
  fi
  pids+=($!)
  wait_for_ping "$1"
}
BASE=Redis
[ -n "$AGAINST" ] && BASE=Base

start_shoal() {
  taskset -c 0 "$SHOAL" server --port "$1" --http-port 0 --log-level warn 2>"$work/shoal-$1.log" &
  pids+=($!)
  wait_for_ping "$1"
}

pid_on_port() { python3 - "$1" <<'EOF'
import os, sys
port = int(sys.argv[1])
inodes = set()
for line in open("/proc/net/tcp").readlines()[1:]:
    f = line.split()
    if int(f[1].split(":")[1], 16) == port and f[3] == "0A":
        inodes.add(f[9])
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:[") and link[8:-1] in inodes:
                print(pid); sys.exit(0)
    except OSError:
        pass
sys.exit(1)
EOF
}

rss_bytes() { awk '/VmRSS/ {print $2 * 1024}' "/proc/$1/status"; }

# Loads keys key:000000000000 .. (the names redis-benchmark's -r uses) with 100-byte values.
prefill() {
  python3 - "$KEYS" <<'EOF' | redis-cli -p "$1" --pipe >/dev/null
import sys
n = int(sys.argv[1]); value = b"x" * 100; out = sys.stdout.buffer
for i in range(n):
    key = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value))
EOF
  local keys
  keys=$(redis-cli -p "$1" dbsize)
  [ "$keys" -eq "$KEYS" ] || { echo "prefill of port $1 left $keys keys" >&2; exit 1; }
}

# Loads `count` hashes hash:000000000000 .. (redis-benchmark's -r names) of 10 fields
# field:0 .. field:9 with 10-byte values.
prefill_hashes() {
  python3 - "$2" <<'EOF' | redis-cli -p "$1" --pipe >/dev/null
import sys
n = int(sys.argv[1]); out = sys.stdout.buffer
for i in range(n):
    key = b"hash:%012d" % i
    out.write(b"*22\r\n$4\r\nHSET\r\n$%d\r\n%s\r\n" % (len(key), key))
    for f in range(10):
        field = b"field:%d" % f
        out.write(b"$%d\r\n%s\r\n$10\r\n%010d\r\n" % (len(field), field, i))
EOF
}

# The redis-benchmark arguments of a test: GET/SET by -t, HSET/HGET as commands of their own.
HASH_KEYS=$((KEYS / 4))
VALUE100=$(printf 'v%.0s' $(seq 1 100))
bench_args() {
  case "$1" in
    set|get) echo "-r $KEYS -d 100 -t $1" ;;
    hset) echo "-r $HASH_KEYS HSET hash:__rand_int__ field:5 $VALUE100" ;;
    hget) echo "-r $HASH_KEYS HGET hash:__rand_int__ field:5" ;;
    evalsha) echo "-r $KEYS EVALSHA $sha 1 key:__rand_int__" ;;
  esac
}

if [ "$SKIP_THROUGHPUT" -eq 0 ]; then
redis_port=$(free_port); start_redis "$redis_port"
shoal_port=$(free_port); start_shoal "$shoal_port"
prefill "$redis_port"
prefill "$shoal_port"
# The script EVALSHA runs: loaded into both (its SHA1 is the same everywhere).
script="return redis.call('get', KEYS[1])"
sha=$(redis-cli -p "$redis_port" script load "$script")
[ "$(redis-cli -p "$shoal_port" script load "$script")" = "$sha" ] || { echo "SCRIPT LOAD differs" >&2; exit 1; }
case " $TESTS " in
  *" hset "*|*" hget "*)
    prefill_hashes "$redis_port" "$HASH_KEYS"
    prefill_hashes "$shoal_port" "$HASH_KEYS" ;;
esac
redis_pid=$(pid_on_port "$redis_port")
shoal_pid=$(pid_on_port "$shoal_port")
hz=$(getconf CLK_TCK)

base_version=$(redis-server --version | awk '{print $1, $2, $3}')
[ -n "$AGAINST" ] && base_version="$AGAINST (Base)"
echo "Shoal $("$SHOAL" --version | awk '{print $2}') vs $base_version, $KEYS keys of 100 B, 50 clients, $ROUNDS rounds"
raw=$work/raw.csv
echo "system,round,pipeline,test,rps,p50,p99,cpu_us_per_req,client_cpu" >"$raw"
for round in $(seq 1 "$ROUNDS"); do
  for pipeline in 1 16; do
    requests=$REQUESTS_P1; [ "$pipeline" -eq 16 ] && requests=$REQUESTS_P16
    for system in redis shoal; do
      port=$redis_port; pid=$redis_pid
      [ "$system" = shoal ] && { port=$shoal_port; pid=$shoal_pid; }
      for test in $TESTS; do
        before=$(cpu_ticks "$pid")
        # bash's `time` reports the benchmark's own CPU use: at -P 1 it is the bottleneck.
        # shellcheck disable=SC2046 # the test's arguments are words
        line=$( { TIMEFORMAT='%U %S %R'; time taskset -c 1 redis-benchmark -p "$port" -c 50 \
          -n "$requests" -P "$pipeline" --csv $(bench_args "$test") >"$work/out"; } 2>"$work/time"
          tail -1 "$work/out")
        after=$(cpu_ticks "$pid")
        client_cpu=$(awk '{printf "%.0f", ($1 + $2) / $3 * 100}' "$work/time")
        # "test","rps","avg","min","p50","p95","p99","max"
        IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$(echo "$line" | tr -d '"')"
        cpu_us=$(python3 -c "print(f'{($after-$before)/$hz*1e6/$requests:.2f}')")
        echo "$system,$round,$pipeline,$test,$rps,$p50,$p99,$cpu_us,$client_cpu" >>"$raw"
        printf '  round %s  P=%-2s %-5s %-4s %12s req/s  p99 %6s ms  cpu %5s us/req  client cpu %3s%%\n' \
          "$round" "$pipeline" "$system" "$test" "$rps" "$p99" "$cpu_us" "$client_cpu"
      done
    done
  done
done

python3 - "$raw" "$BASE" "$TESTS" <<'EOF' | tee "$results/compare-redis-$(date +%Y%m%d-%H%M%S).txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
B = sys.argv[2]
def median(system, pipeline, test, field):
    return statistics.median(float(r[field]) for r in rows
                             if r["system"] == system and r["pipeline"] == pipeline and r["test"] == test)
print()
print(f"{'test':<10} {B + ' req/s':>12} {'Shoal req/s':>12} {'ratio':>6}   {B + ' p99':>9} {'Shoal p99':>9} {'ratio':>6}   {B + ' cpu':>9} {'Shoal cpu':>9} {'ratio':>6}   {'client cpu':>10}")
for pipeline in ("1", "16"):
    for test in sys.argv[3].split():
        if not any(r["test"] == test for r in rows):
            continue
        r = [median("redis", pipeline, test, f) for f in ("rps", "p99", "cpu_us_per_req", "client_cpu")]
        s = [median("shoal", pipeline, test, f) for f in ("rps", "p99", "cpu_us_per_req", "client_cpu")]
        name = f"{test.upper()} P={pipeline}"
        print(f"{name:<10} {r[0]:>12.0f} {s[0]:>12.0f} {s[0]/r[0]:>5.2f}x   {r[1]:>7.3f}ms {s[1]:>7.3f}ms {s[1]/r[1]:>5.2f}x   {r[2]:>7.2f}us {s[2]:>7.2f}us {s[2]/r[2]:>5.2f}x   {r[3]:>4.0f}%/{s[3]:>3.0f}%")
print("(medians; req/s ratio above 1 is better for Shoal, p99 and cpu-per-request ratios below 1 are;")
print(f" client cpu is redis-benchmark's own core, against {B}/Shoal: near 100% means the load")
print(" generator, not the server, set the request rate)")
EOF
fi

if [ "$SKIP_MEMORY" -eq 0 ]; then
  echo
  echo "Memory: RSS growth per key after loading $KEYS keys of 100 bytes into fresh servers"
  for system in redis shoal; do
    port=$(free_port)
    if [ "$system" = redis ]; then start_redis "$port"; else start_shoal "$port"; fi
    pid=$(pid_on_port "$port")
    before=$(rss_bytes "$pid")
    prefill "$port"
    sleep 1
    after=$(rss_bytes "$pid")
    python3 -c "print(f'  {\"$system\":<6} RSS before {$before/2**20:7.1f} MiB  after {$after/2**20:7.1f} MiB  = {($after-$before)/$KEYS:6.1f} bytes/key ({$after/$KEYS:6.1f} incl. startup)')"
  done
  echo
  echo "Memory: per field after loading $HASHES hashes of 10 fields (field:N -> 10 bytes) into fresh servers"
  for system in redis shoal; do
    port=$(free_port)
    if [ "$system" = redis ]; then start_redis "$port"; else start_shoal "$port"; fi
    pid=$(pid_on_port "$port")
    before=$(rss_bytes "$pid")
    used_before=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
    prefill_hashes "$port" "$HASHES"
    sleep 1
    after=$(rss_bytes "$pid")
    used_after=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '/^used_memory:/ {print $2}')
    encoding=$(redis-cli -p "$port" object encoding hash:000000000000)
    fields=$((HASHES * 10))
    python3 -c "print(f'  {\"$system\":<6} RSS growth {($after-$before)/$fields:6.1f} bytes/field ({($after-$before)/$HASHES:7.1f}/hash), used_memory growth {($used_after-$used_before)/$fields:6.1f} bytes/field, encoding $encoding')"
  done
fi
