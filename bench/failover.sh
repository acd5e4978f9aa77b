#!/usr/bin/env bash
# Failover and replication cost on this machine.
#
# Part 1: five times, a fresh cluster of 2 shards x (1 primary + 2 replicas) (node timeout
#         1000 ms); shoal-client's `failover_probe` example writes keys of one shard with 4
#         writers, kills (-9) that shard's primary (not the controller's leader) after a
#         second, and reports the time from the
#         kill to the first write acknowledged on its successor, and the acknowledged writes
#         lost under asynchronous replication. Prints each run and the median (target < 2 s;
#         Redis Cluster's default cluster-node-timeout alone is 15 s).
# Part 2: a primary's SET throughput (redis-benchmark -P 16, 50 clients, 100 B values) with
#         no replica and with 2 replicas attached, for Shoal and for the real Redis side by
#         side; the primaries are pinned to CPU 0, the replicas and the benchmark share CPU 1.
#         Prints the ratios (target >= 0.85x) and the primary's CPU time per request.
#
# Usage: bench/failover.sh [--runs N] [--requests N]
# Needs: redis-benchmark and redis-cli (Debian: redis-tools), python3, taskset.
set -euo pipefail

RUNS=5
REQUESTS=2000000
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source "$root/bench/lib.sh"
require_tools redis-benchmark redis-cli python3 taskset
cargo build --release -q -p shoal
cargo build --release -q -p shoal-client --example failover_probe
SHOAL=$root/target/release/shoal
PROBE=$root/target/release/examples/failover_probe
bench_workspace


# wait_ready PORT NODES SHARDS: until the cluster seen from PORT has every node and shard.
wait_ready() {
  for _ in $(seq 1 200); do
    local info
    info=$(redis-cli -p "$1" cluster info 2>/dev/null || true)
    if echo "$info" | grep -q "cluster_known_nodes:$2" && echo "$info" | grep -q "cluster_size:$3" \
      && echo "$info" | grep -q "cluster_state:ok"; then
      sleep 1 # replicas finish their first sync
      return
    fi
    sleep 0.05
  done
  echo "the cluster on port $1 never got ready" >&2; exit 1
}

echo "Part 1: failover after kill -9 of a primary ($RUNS runs)"
: >"$work/failover.csv"
for run in $(seq 1 "$RUNS"); do
  seed=$(free_port)
  declare -A pid_of=()
  pid_of[$seed]=$(start_node 0-1 "$seed" --controller --replicas 2)
  for _ in $(seq 2 6); do
    port=$(free_port)
    pid_of[$port]=$(start_node 0-1 "$port" --cluster-join "127.0.0.1:$seed" --controller)
  done
  wait_ready "$seed" 6 2
  # A shard's primary that is not the controller's leader (killing both at once adds a leader
  # election and the new leader's grace period; tests/failover.rs covers that case).
  primary=$("$SHOAL" cluster status --node "127.0.0.1:$seed" --json | python3 -c '
import json, sys
status = json.load(sys.stdin)
nodes = {n["id"]: n for n in status["map"]["nodes"]}
for shard in status["map"]["shards"]:
    if shard["primary"] != status["leader"]:
        node = nodes[shard["primary"]]
        print(node["host"] + ":" + str(node["port"]))
        break')
  primary_port=${primary##*:}
  result=$("$PROBE" "127.0.0.1:$seed" "${pid_of[$primary_port]}" "$primary" 4 3)
  echo "  run $run: $result"
  echo "$result" >>"$work/failover.csv"
  for pid in "${pid_of[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  unset pid_of
  sleep 0.2
done

echo
echo "Part 2: primary SET throughput, no replica vs 2 replicas (redis-benchmark -P 16), Shoal and Redis"
hz=$(getconf CLK_TCK)
# bench_set PORT PID: "req/s cpu_us_per_request" of the primary at PORT (process PID).
bench_set() {
  local before after rps
  before=$(cpu_ticks "$2")
  rps=$(taskset -c 1 redis-benchmark -p "$1" -c 50 -n "$REQUESTS" -r 100000 -d 100 -P 16 -t set --csv \
    | tail -1 | tr -d '"' | cut -d, -f2)
  after=$(cpu_ticks "$2")
  python3 -c "print('$rps', '%.3f' % (($after - $before) / $hz * 1e6 / $REQUESTS))"
}
start_redis() { # CPU PORT [ARGS...]: prints its pid
  local cpu=$1 port=$2; shift 2
  taskset -c "$cpu" redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize no --dir "$work" --logfile "$work/redis-$port.log" "$@" >/dev/null &
  local pid=$!
  echo "$pid" >>"$work/pids"
  for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$pid"
}
# Shoal: a one-node cluster, and a primary with two replicas (replicas on CPU 1).
alone=$(free_port); alone_pid=$(start_node 0 "$alone" --controller)
wait_ready "$alone" 1 1
primary=$(free_port); primary_pid=$(start_node 0 "$primary" --controller --replicas 2)
for _ in 1 2; do start_joiner 1 "127.0.0.1:$primary" >/dev/null; done
wait_ready "$primary" 3 1
# Redis: the same, with --replicaof.
r_alone=$(free_port); r_alone_pid=$(start_redis 0 "$r_alone")
r_primary=$(free_port); r_primary_pid=$(start_redis 0 "$r_primary")
for _ in 1 2; do start_redis 1 "$(free_port)" --replicaof 127.0.0.1 "$r_primary" >/dev/null; done
for _ in $(seq 1 100); do
  [ "$(redis-cli -p "$r_primary" info replication | grep -c 'state=online')" -eq 2 ] && break
  sleep 0.05
done
: >"$work/throughput.csv"
for round in 1 2 3; do
  for setup in shoal-alone shoal-replicated redis-alone redis-replicated; do
    case $setup in
      shoal-alone) out=$(bench_set "$alone" "$alone_pid") ;;
      shoal-replicated) out=$(bench_set "$primary" "$primary_pid") ;;
      redis-alone) out=$(bench_set "$r_alone" "$r_alone_pid") ;;
      redis-replicated) out=$(bench_set "$r_primary" "$r_primary_pid") ;;
    esac
    echo "  round $round $setup: $out (req/s, primary CPU us per SET)"
    echo "$setup $out" >>"$work/throughput.csv"
  done
done
lag=$(redis-cli -p "$primary" info replication | grep -E '^slave[0-9]' | tr '\r\n' ' ')

python3 - "$work/failover.csv" "$work/throughput.csv" "$lag" <<'EOF' | tee "$results/failover-$(date +%Y%m%d-%H%M%S).txt"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
times = [r["failover_ms"] for r in runs]
print()
print(f"failover, kill -9 to the first acknowledged write on the successor: median {statistics.median(times):.0f} ms "
      f"(runs: {', '.join(str(t) for t in times)} ms)")
acked = sum(r["acked"] for r in runs)
lost = sum(r["lost"] for r in runs)
print(f"acknowledged writes lost under asynchronous replication: {lost} of {acked} "
      f"(per run: {', '.join(str(r['lost']) for r in runs)})")
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
med = lambda setup, i: statistics.median(float(r[i]) for r in rows if r[0] == setup)
for system in ("shoal", "redis"):
    a, r = med(f"{system}-alone", 1), med(f"{system}-replicated", 1)
    ca, cr = med(f"{system}-alone", 2), med(f"{system}-replicated", 2)
    print(f"{system}: SET {a:.0f} req/s alone, {r:.0f} with 2 replicas ({r/a:.2f}x); "
          f"primary CPU per SET {ca:.2f} us alone, {cr:.2f} us with 2 replicas ({cr/ca:.2f}x)")
print("(medians of 3 interleaved rounds; the replicas and redis-benchmark share CPU 1, so on this")
print(" 2-core machine the CPU ratio isolates the primary's cost better than the request rate)")
print(f"shoal replicas after the runs: {sys.argv[3]}")
EOF
