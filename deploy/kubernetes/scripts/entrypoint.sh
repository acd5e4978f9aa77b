#!/bin/sh
# Starts this pod's Shoal node: `shoal server` with the flags the StatefulSet passes as its
# arguments, and those that depend on the pod, derived here:
#
#   --cluster-announce-ip        the pod's IP (POD_IP, the downward API's status.podIP)
#   --cluster-announce-hostname  its stable DNS name, <pod>.<headless service>.<namespace>.svc.<domain>
#   --cluster-enabled            pod 0 founds the cluster (when no member answers elsewhere)
#   --cluster-join <seed>        every other pod joins through pod 0's DNS name
#
# A node whose --dir holds its identity (the pod restarted) comes back as itself, through the
# members its last map names, whatever else it is given.
#
# Environment: POD_NAME, POD_NAMESPACE, POD_IP (downward API), HEADLESS_SERVICE,
# CLUSTER_DOMAIN (default cluster.local), SHOAL_PORT (default 6379),
# SHOAL_CLUSTER_SECRET_FILE (where shoal reads the secret) and CLUSTER_SECRET_SOURCE (the
# mounted Secret's file, copied there), RUN_DIR (default /run/shoal), SEED_PROBES (default 4).
set -eu

: "${POD_NAME:?is not set (the downward API's metadata.name)}"
: "${POD_NAMESPACE:?is not set (the downward API's metadata.namespace)}"
: "${POD_IP:?is not set (the downward API's status.podIP)}"
: "${HEADLESS_SERVICE:?is not set (the StatefulSet's serviceName)}"
domain="${CLUSTER_DOMAIN:-cluster.local}"
port="${SHOAL_PORT:-6379}"
run_dir="${RUN_DIR:-/run/shoal}"

# shoal-3 -> StatefulSet shoal, ordinal 3.
statefulset="${POD_NAME%-*}"
ordinal="${POD_NAME##*-}"
case "$ordinal" in
  '' | *[!0-9]*)
    echo "entrypoint: $POD_NAME is not <statefulset>-<ordinal>" >&2
    exit 1
    ;;
esac
suffix="$HEADLESS_SERVICE.$POD_NAMESPACE.svc.$domain"

# The directory given with --dir (or SHOAL_DIR).
dir="${SHOAL_DIR:-}"
previous=""
for arg in "$@"; do
  case "$previous" in --dir) dir="$arg" ;; esac
  case "$arg" in --dir=*) dir="${arg#--dir=}" ;; esac
  previous="$arg"
done

mkdir -p "$run_dir"
# A pod marked for removal drains in its preStop hook (pre-stop.sh); a mark left from an
# earlier start of this container must not drain this one.
rm -f "$run_dir/remove-on-stop"

# Kubernetes mounts a Secret's files readable by the pod's group (fsGroup), and shoal refuses a
# cluster secret that anyone but its owner may read: it gets a private copy.
if [ -n "${CLUSTER_SECRET_SOURCE:-}" ]; then
  : "${SHOAL_CLUSTER_SECRET_FILE:?is not set (where the copy of CLUSTER_SECRET_SOURCE goes)}"
  (umask 077 && cat "$CLUSTER_SECRET_SOURCE" > "$SHOAL_CLUSTER_SECRET_FILE.new")
  mv -f "$SHOAL_CLUSTER_SECRET_FILE.new" "$SHOAL_CLUSTER_SECRET_FILE"
fi

set -- server "$@" \
  --cluster-announce-ip "$POD_IP" \
  --cluster-announce-hostname "$POD_NAME.$suffix"

if [ "$ordinal" != 0 ]; then
  set -- "$@" --cluster-join "$statefulset-0.$suffix:$port"
elif [ -n "$dir" ] && [ -s "$dir/map.json" ]; then
  # Pod 0 restarted with its directory: it comes back as itself.
  set -- "$@" --cluster-enabled
else
  # Pod 0 with a new directory: before founding a cluster, look for one that runs (pod 0 lost
  # its volume, or the cluster was founded without it): founding a second one beside it
  # would split the pods in two clusters. A member answers `cluster status` (a controller
  # leader answers through it); a pod that is itself waiting to join does not.
  seed=""
  i=1
  while [ "$i" -le "${SEED_PROBES:-4}" ]; do
    peer="$statefulset-$i.$suffix:$port"
    if shoal cluster status --node "$peer" > /dev/null 2>&1; then
      seed="$peer"
      break
    fi
    i=$((i + 1))
  done
  if [ -n "$seed" ]; then
    echo "entrypoint: a cluster runs: joining it through $seed"
    set -- "$@" --cluster-join "$seed"
  else
    set -- "$@" --cluster-enabled
  fi
fi

exec shoal "$@"
