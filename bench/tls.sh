#!/usr/bin/env bash
# TLS vs plaintext, Shoal vs Redis, side by side in one run, as ratios.
#
# Both servers run pinned to CPU 0 (`taskset -c 0`), each with a plain and a TLS port and the
# same certificate (made here with openssl: a CA and a P-256 server certificate);
# redis-benchmark runs pinned to CPU 1. GET and SET (50 clients, 100-byte values, a key space
# pre-filled in both) at -P 16, several rounds interleaved; the median of each is reported:
# each server's TLS/plain ratio, and Shoal's over Redis's with TLS. Clients are not asked for
# certificates (tls-auth-clients no) in either server: mutual TLS changes the handshake only.
#
# Usage: bench/tls.sh [--rounds N] [--requests N] [--keys N] [--pipeline N]
# Needs: redis-server and redis-benchmark built with TLS (Debian's are), redis-cli, openssl,
#        python3, taskset, and at least 2 CPUs.
set -euo pipefail

ROUNDS=3
REQUESTS=2000000
KEYS=100000
PIPELINE=16
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --keys) KEYS=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/bench/lib.sh"
require_tools redis-server redis-benchmark redis-cli openssl python3 taskset
[ "$(nproc)" -ge 2 ] || { echo "needs at least 2 CPUs" >&2; exit 1; }
cd "$root"
cargo build --release -q -p shoal
SHOAL=$root/target/release/shoal
bench_workspace

# A CA and a server certificate for 127.0.0.1, as a user would make them.
make_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$work/ext"
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -days 2 -extfile "$work/ext" -out "$work/server.crt" 2>/dev/null
}
make_certs
tls_files=(--tls-cert-file "$work/server.crt" --tls-key-file "$work/server.key"
  --tls-ca-cert-file "$work/ca.crt" --tls-auth-clients no)

# start PROGRAM PLAIN_PORT TLS_PORT: a server pinned to CPU 0; its pid goes to $work/pids
# (for stop_nodes) and to $started.
start() {
  local program=$1 port=$2 tls_port=$3
  if [ "$program" = redis ]; then
    taskset -c 0 redis-server --port "$port" --tls-port "$tls_port" "${tls_files[@]}" \
      --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
      --logfile "$work/redis.log" &
  else
    taskset -c 0 "$SHOAL" server --port "$port" --tls-port "$tls_port" "${tls_files[@]}" \
      --http-port 0 --log-level warn 2>"$work/shoal.log" &
  fi
  started=$!
  echo "$started" >>"$work/pids"
  wait_for_ping "$port"
}

prefill() {
  python3 - "$KEYS" <<'PY' | redis-cli -p "$1" --pipe >/dev/null
import sys
n = int(sys.argv[1]); value = b"x" * 100; out = sys.stdout.buffer
for i in range(n):
    key = b"key:%012d" % i
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$100\r\n%s\r\n" % (len(key), key, value))
PY
}

redis_port=$(free_port); redis_tls=$(free_port)
shoal_port=$(free_port); shoal_tls=$(free_port)
start redis "$redis_port" "$redis_tls"; redis_pid=$started
start shoal "$shoal_port" "$shoal_tls"; shoal_pid=$started
hz=$(getconf CLK_TCK)
prefill "$redis_port"
prefill "$shoal_port"

echo "Shoal $("$SHOAL" --version | awk '{print $2}') vs $(redis-server --version | awk '{print $1, $2, $3}'), TLS and plain, $KEYS keys of 100 B, 50 clients, -P $PIPELINE, $ROUNDS rounds"
raw=$work/raw.csv
echo "system,transport,round,test,rps,p99,cpu_us_per_req,client_cpu" >"$raw"
for round in $(seq 1 "$ROUNDS"); do
  for system in redis shoal; do
    for transport in plain tls; do
      case "$system-$transport" in
        redis-plain) args=(-p "$redis_port") ;;
        redis-tls) args=(-p "$redis_tls" --tls --cacert "$work/ca.crt") ;;
        shoal-plain) args=(-p "$shoal_port") ;;
        shoal-tls) args=(-p "$shoal_tls" --tls --cacert "$work/ca.crt") ;;
      esac
      pid=$redis_pid; [ "$system" = shoal ] && pid=$shoal_pid
      for test in get set; do
        before=$(cpu_ticks "$pid")
        line=$( { TIMEFORMAT='%U %S %R'; time taskset -c 1 redis-benchmark "${args[@]}" -c 50 \
          -n "$REQUESTS" -r "$KEYS" -d 100 -P "$PIPELINE" -t "$test" --csv >"$work/out"; } 2>"$work/time"
          tail -1 "$work/out")
        after=$(cpu_ticks "$pid")
        client_cpu=$(awk '{printf "%.0f", ($1 + $2) / $3 * 100}' "$work/time")
        IFS=, read -r _ rps _ _ _ _ p99 _ <<<"$(echo "$line" | tr -d '"')"
        # The server's own CPU time per request: what TLS costs it, whatever else the
        # machine runs meanwhile.
        cpu_us=$(python3 -c "print(f'{($after-$before)/$hz*1e6/$REQUESTS:.2f}')")
        echo "$system,$transport,$round,$test,$rps,$p99,$cpu_us,$client_cpu" >>"$raw"
        printf '  round %s  %-5s %-5s %-4s %12s req/s  p99 %6s ms  cpu %5s us/req  client cpu %3s%%\n' \
          "$round" "$system" "$transport" "$test" "$rps" "$p99" "$cpu_us" "$client_cpu"
      done
    done
  done
done

python3 - "$raw" <<'PY' | tee "$results/tls-$(date +%Y%m%d-%H%M%S).txt"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def median(system, transport, test, field):
    return statistics.median(float(r[field]) for r in rows
                             if (r["system"], r["transport"], r["test"]) == (system, transport, test))
print()
print("Throughput (req/s)")
print(f"{'test':<5} {'Redis':>10} {'Redis TLS':>10} {'TLS/plain':>9}   {'Shoal':>10} {'Shoal TLS':>10} {'TLS/plain':>9}   {'Shoal/Redis, TLS':>16}")
for test in ("get", "set"):
    rp, rt = median("redis", "plain", test, "rps"), median("redis", "tls", test, "rps")
    sp, st = median("shoal", "plain", test, "rps"), median("shoal", "tls", test, "rps")
    print(f"{test.upper():<5} {rp:>10.0f} {rt:>10.0f} {rt/rp:>8.2f}x   {sp:>10.0f} {st:>10.0f} {st/sp:>8.2f}x   {st/rt:>15.2f}x")
print()
print("Server CPU per request (us), and what 100% of one core would serve at that cost")
print(f"{'test':<5} {'Redis':>7} {'Redis TLS':>10}   {'Shoal':>7} {'Shoal TLS':>10} {'plain/TLS':>9}   {'Shoal TLS/Redis TLS':>19}   {'client cpu Redis TLS/Shoal TLS':>30}")
for test in ("get", "set"):
    rp, rt = median("redis", "plain", test, "cpu_us_per_req"), median("redis", "tls", test, "cpu_us_per_req")
    sp, st = median("shoal", "plain", test, "cpu_us_per_req"), median("shoal", "tls", test, "cpu_us_per_req")
    rc, sc = median("redis", "tls", test, "client_cpu"), median("shoal", "tls", test, "client_cpu")
    print(f"{test.upper():<5} {rp:>7.2f} {rt:>10.2f}   {sp:>7.2f} {st:>10.2f} {sp/st:>8.2f}x   {rt/st:>18.2f}x   {rc:>25.0f}%/{sc:.0f}%")
print("(medians; plain/TLS is the share of plaintext throughput a saturated core keeps with TLS;")
print(" Shoal TLS/Redis TLS above 1 means Shoal spends less CPU per TLS request; client cpu")
print(" near 100% means redis-benchmark's own core, not the server, set the rate)")
PY
