#!/usr/bin/env bash
# Failover and replication cost on this machine.
#
# Part 1: for each case, RUNS times (default 10), a fresh cluster of 9 nodes, 3 shards x (1
#         primary + 2 replicas), every node controller-eligible (node timeout 1000 ms);
#         shoal-client's `failover_probe` example writes keys of every shard (2 writers each),
#         and after a second kills (-9): a primary that is no voter ("primary"), a voter that
#         is neither leader nor primary ("voter"), the controller leader's node ("leader"), or
#         the leader's node and a primary at once ("leader+primary"). It reports the longest
#         time any shard went without an acknowledged write (for a shard whose primary died:
#         the failover as a client sees it) and the acknowledged writes lost under
#         asynchronous replication. Prints each run and, per case, median, p90 and max
#         (target: median < 1 s; Redis Cluster's default cluster-node-timeout alone is 15 s).
# Part 2: a primary's SET throughput (redis-benchmark -P 16, 50 clients, 100 B values) with
#         no replica and with 2 replicas attached, for Shoal and for the real Redis side by
#         side; the primaries are pinned to CPU 0, the replicas and the benchmark share CPU 1.
#         Prints the ratios (target >= 0.85x) and the primary's CPU time per request.
#
# Usage: bench/failover.sh [--runs N] [--requests N]
# Needs: redis-benchmark and redis-cli (Debian: redis-tools), python3, taskset.
set -euo pipefail

RUNS=10
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

# pick CASE PORT: the pids to kill for CASE (comma-separated), from the cluster's status seen
# at PORT: "primary" a primary that is no voter, "voter" a voter that neither leads nor is a
# primary, "leader" the controller leader's node, "leader+primary" both of the first and the
# third at once.
pick() {
  "$SHOAL" cluster status --node "127.0.0.1:$2" --json | python3 -c '
import json, sys
case, pids = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
status = json.load(sys.stdin)
m = status["map"]
nodes = {n["id"]: n for n in m["nodes"]}
primaries = [s["primary"] for s in m["shards"]]
voters = m["controllers"]
port = lambda i: str(nodes[i]["port"])
leader = status["leader"]
primary = next((p for p in primaries if p not in voters), next(p for p in primaries if p != leader))
voter = next((v for v in voters if v != leader and v not in primaries), None)
chosen = {"primary": [primary], "voter": [voter], "leader": [leader],
          "leader+primary": [leader, primary]}[case]
if None in chosen:
    sys.exit(f"no node fits case {case}")
print(",".join(pids[port(i)] for i in chosen))
' "$1" $(for p in "${!pid_of[@]}"; do echo "$p=${pid_of[$p]}"; done)
}

# settled PORT: whether the controller seen from PORT has 5 voters and a leader that is no
# primary (it moves off the founder a few seconds after the start).
settled() {
  "$SHOAL" cluster status --node "127.0.0.1:$1" --json 2>/dev/null | python3 -c '
import json, sys
s = json.load(sys.stdin)
ok = len(s["map"]["controllers"]) == 5 and all(sh["primary"] != s["leader"] for sh in s["map"]["shards"])
sys.exit(0 if ok else 1)'
}

echo "Part 1: kill -9 under writes to every shard, 9 nodes (3 shards x 3), $RUNS runs per case"
: >"$work/failover.csv"
for case in primary voter leader leader+primary; do
  for run in $(seq 1 "$RUNS"); do
    seed=$(free_port)
    declare -A pid_of=()
    pid_of[$seed]=$(start_node 0-1 "$seed" --controller --replicas 2)
    for _ in $(seq 2 9); do
      port=$(free_port)
      pid_of[$port]=$(start_node 0-1 "$port" --cluster-join "127.0.0.1:$seed" --controller)
    done
    wait_ready "$seed" 9 3
    for _ in $(seq 1 100); do settled "$seed" && break; sleep 0.1; done
    victims=$(pick "$case" "$seed")
    result=$("$PROBE" "127.0.0.1:$seed" "$victims" 2 3)
    echo "  $case run $run: $result"
    echo "$case $result" >>"$work/failover.csv"
    for pid in "${pid_of[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    unset pid_of
    sleep 0.2
  done
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
runs = [(l.split(" ", 1)[0], json.loads(l.split(" ", 1)[1])) for l in open(sys.argv[1]) if l.strip()]
print()
print("longest time any shard went without an acknowledged write after kill -9 (ms):")
print(f"{'killed':<16} {'median':>7} {'p90':>6} {'max':>6}  lost/acked  runs")
for case in ("primary", "voter", "leader", "leader+primary"):
    rs = [r for c, r in runs if c == case]
    if not rs:
        continue
    times = sorted(r["failover_ms"] for r in rs)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    lost, acked = sum(r["lost"] for r in rs), sum(r["acked"] for r in rs)
    print(f"{case:<16} {statistics.median(times):>7.0f} {p90:>6} {times[-1]:>6}  {lost}/{acked}  "
          f"{', '.join(str(t) for t in times)}")
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
