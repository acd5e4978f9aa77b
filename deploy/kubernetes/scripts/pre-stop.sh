#!/bin/sh
# The preStop hook: runs before Kubernetes sends the node SIGTERM.
#
# A pod cannot tell a scale-in from a restart (both delete it; only the API server knows the
# StatefulSet's new size, and the image has no client for it). So it drains only when it was
# marked for removal first:
#
#   kubectl exec shoal-5 -- touch /run/shoal/remove-on-stop
#   kubectl scale statefulset shoal --replicas=5
#
# Marked: `shoal cluster remove-node` of this node, which waits until the node is out of the
# cluster (a primary without replicas first drains its shard: its slots move to the other
# shards with their keys); the node then stops by itself. Not marked (a rolling update, an
# eviction, a node drain): nothing here; SIGTERM makes a primary hand its shard to a replica,
# and the pod comes back with its --dir as the same node.
#
# Environment: SHOAL_PORT (default 6379), RUN_DIR (default /run/shoal), SHOAL_PASSWORD and
# SHOAL_CLUSTER_SECRET_FILE (for the cluster commands), PRE_STOP_LOG (a file to append this
# hook's output to, such as /proc/1/fd/1: the container's log).
set -u

# (Only if it can be opened: a redirection that fails would end the hook before the drain.)
if [ -n "${PRE_STOP_LOG:-}" ] && (: >> "$PRE_STOP_LOG") 2> /dev/null; then
  exec >> "$PRE_STOP_LOG" 2>&1
fi

marker="${RUN_DIR:-/run/shoal}/remove-on-stop"
node="127.0.0.1:${SHOAL_PORT:-6379}"

if [ ! -e "$marker" ]; then
  echo "pre-stop: not marked for removal ($marker): stopping as a restart (SIGTERM hands a primary's shard to a replica)"
  exit 0
fi

if ! id="$(shoal cluster myid --node "$node")"; then
  echo "pre-stop: cannot learn the id of the node at $node: it stops without being removed" >&2
  exit 1
fi
echo "pre-stop: marked for removal: removing $id from the cluster (a primary without replicas drains its shard first)"
exec shoal cluster remove-node "$id" --node "$node"
