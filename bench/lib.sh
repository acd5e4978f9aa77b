# Helpers shared by the bench scripts. A script sources it, calls require_tools and then
# bench_workspace, and sets SHOAL (the shoal binary) before it starts nodes.

# require_tools TOOL...: exits with a hint unless every TOOL is on PATH.
require_tools() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "missing $tool (Debian: apt-get install redis-tools)" >&2; exit 1; }
  done
}

# bench_workspace: makes $work (a scratch directory, with the cluster secret every node and
# client shares: SHOAL_CLUSTER_SECRET_FILE) and $results (bench/results),
# and on exit kills every node started here and removes $work.
bench_workspace() {
  work=$(mktemp -d)
  results=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/results
  mkdir -p "$results"
  trap 'stop_nodes; rm -rf "$work"' EXIT
  # One cluster secret for every node, `shoal cluster` command and example client run here.
  export SHOAL_CLUSTER_SECRET_FILE=$work/cluster-secret
  (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SHOAL_CLUSTER_SECRET_FILE")
}

# wait_for_ping PORT: until the server on PORT answers PING (5 s at most, else exits).
wait_for_ping() {
  for _ in $(seq 1 100); do
    redis-cli -p "$1" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "server on port $1 did not start" >&2
  exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID...: user + system clock ticks of these processes, summed.
cpu_ticks() { local total=0; for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }

# start_node CPUS PORT [ARGS...]: a cluster node with one worker thread, pinned to CPUS (a
# taskset list such as 0 or 0-1; "any" pins nothing); prints its pid once it answers PING.
# The pid is also appended to $work/pids (start_node runs in command substitutions, so an
# array would not see it) for stop_nodes.
start_node() {
  local cpus=$1 port=$2; shift 2
  local pin=(taskset -c "$cpus")
  [ "$cpus" = any ] && pin=()
  "${pin[@]}" "$SHOAL" server --port "$port" --cluster-port "$(free_port)" --http-port 0 \
    --threads 1 --cluster-enabled --log-level warn "$@" >/dev/null 2>"$work/node-$port.log" &
  local pid=$!
  echo "$pid" >>"$work/pids"
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && { echo "$pid"; return; }
    kill -0 "$pid" 2>/dev/null || break # it exited (a port taken meanwhile, say)
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true # so that it cannot join late
  echo "node on port $port did not start; its log ends:" >&2
  tail -5 "$work/node-$port.log" >&2
  return 1
}

# start_joiner CPUS SEED [ARGS...]: start_node on a fresh port that joins SEED, trying again
# on other ports if one was taken between picking it and binding it. Prints the pid.
start_joiner() {
  local cpus=$1 seed=$2; shift 2
  for _ in 1 2 3; do
    start_node "$cpus" "$(free_port)" --cluster-join "$seed" "$@" && return
  done
  return 1
}

# stop_nodes: kills (-9) every node start_node started and waits for them.
stop_nodes() {
  [ -f "$work/pids" ] && while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$work/pids"
  wait 2>/dev/null || true
}

# wait_shards PORT N: until the cluster seen from PORT has N shards and every slot is owned.
wait_shards() {
  for _ in $(seq 1 200); do
    local info
    info=$(redis-cli -p "$1" cluster info 2>/dev/null || true)
    if echo "$info" | grep -q "cluster_size:$2" && echo "$info" | grep -q "cluster_slots_ok:16384"; then
      sleep 0.5 # every node's routing catches up
      return
    fi
    sleep 0.05
  done
  echo "cluster on port $1 never reached $2 shards" >&2; exit 1
}

# start_cluster SHARDS: prints "seed_port pid..." of a fresh cluster of SHARDS nodes.
start_cluster() {
  local shards=$1 seed pids_here=()
  seed=$(free_port)
  pids_here+=("$(start_node any "$seed" --controller)")
  for _ in $(seq 2 "$shards"); do
    pids_here+=("$(start_joiner any "127.0.0.1:$seed" --controller)")
  done
  wait_shards "$seed" "$shards"
  echo "$seed ${pids_here[*]}"
}
