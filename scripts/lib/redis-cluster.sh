# shellcheck shell=bash
# shellcheck disable=SC2034 # REDIS_CLUSTER_URLS is read by the scripts that source this file
# A throw-away Redis Cluster on 127.0.0.1: 3 primaries with one replica each, no persistence.
# Sourced by scripts/test.sh and scripts/bench.sh (needs redis-server and redis-cli, which the
# caller checks for).
#
#   redis_cluster_start DIR   starts six nodes, each in a directory of its own under DIR, forms
#                             the cluster and waits for cluster_state:ok. Sets
#                             REDIS_CLUSTER_PORTS (array of the six ports) and
#                             REDIS_CLUSTER_URLS (comma-separated redis:// seeds, the value of
#                             REDIS_CLUSTER_URLS for a replica) once every replica has
#                             synced with its primary. Returns non-zero, with the reason on
#                             stderr, when the cluster does not form.
#   redis_cluster_primaries   prints the ports of the current primaries (that hold slots), one a
#                             line.
#   redis_cluster_pids        prints the pids of the six nodes, one a line.
#   redis_cluster_stop        shuts every node down (safe to call more than once).

REDIS_CLUSTER_PORTS=()
REDIS_CLUSTER_URLS=""
REDIS_CLUSTER_DIR=""

# A node also listens on its port + 10000 (the cluster bus): pick a port whose bus port is free
# too, never one handed out before, and both below 32768, where Linux hands out the local ports
# of outgoing connections (a busy machine may hold any of those, which no listening test sees).
_redis_cluster_free_port() {
  local p q used taken
  while true; do
    p=$((10000 + RANDOM % 12000))
    taken=0
    for used in "${REDIS_CLUSTER_PORTS[@]}"; do
      if ((used == p || used + 10000 == p || used == p + 10000)); then taken=1; fi
    done
    ((taken)) && continue
    for q in "$p" $((p + 10000)); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$q") 2>/dev/null; then taken=1; fi
    done
    ((taken)) && continue
    echo "$p"
    return 0
  done
}

redis_cluster_start() {
  local p dir i
  REDIS_CLUSTER_DIR=$1
  REDIS_CLUSTER_PORTS=()
  for i in 1 2 3 4 5 6; do
    p="$(_redis_cluster_free_port)"
    dir="$REDIS_CLUSTER_DIR/cluster-$p"
    mkdir -p "$dir"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 \
      --save '' --appendonly no --dir "$dir" \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" ||
      { echo "error: cluster node $i (port $p) did not start" >&2; return 1; }
    REDIS_CLUSTER_PORTS+=("$p")
  done
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    for i in $(seq 1 50); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  local nodes=() urls=()
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    nodes+=("127.0.0.1:$p")
    urls+=("redis://127.0.0.1:$p")
  done
  if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
    >"$REDIS_CLUSTER_DIR/cluster-create.log" 2>&1; then
    echo "error: redis-cli --cluster create failed" >&2
    cat "$REDIS_CLUSTER_DIR/cluster-create.log" >&2
    return 1
  fi
  # Formed once the first node says cluster_state:ok and sees three replicas (the replica roles
  # reach it by gossip, after the slots).
  for i in $(seq 1 200); do
    if redis-cli -p "${REDIS_CLUSTER_PORTS[0]}" cluster info | grep -q '^cluster_state:ok' &&
      [[ "$(redis-cli -p "${REDIS_CLUSTER_PORTS[0]}" cluster nodes | grep -c slave)" == 3 ]]; then
      break
    fi
    sleep 0.1
  done
  ((i < 200)) || { echo "error: the Redis Cluster did not reach cluster_state:ok with 3 replicas" >&2; return 1; }
  # Ready for writes that WAIT for a replica once every replica has synced with its primary.
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    for i in $(seq 1 200); do
      redis-cli -p "$p" info replication | grep -q '^role:master' && break
      redis-cli -p "$p" info replication | grep -q '^master_link_status:up' && break
      sleep 0.1
    done
    ((i < 200)) || { echo "error: the cluster replica on port $p did not sync with its primary" >&2; return 1; }
  done
  REDIS_CLUSTER_URLS="$(IFS=,; echo "${urls[*]}")"
  return 0
}

redis_cluster_primaries() {
  redis-cli -p "${REDIS_CLUSTER_PORTS[0]}" cluster nodes |
    awk '$3 ~ /master/ && $3 !~ /fail/ && NF >= 9 { sub(/@.*/, "", $2); sub(/.*:/, "", $2); print $2 }' | sort -n
}

redis_cluster_pids() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    cat "$REDIS_CLUSTER_DIR/cluster-$p/redis.pid" 2>/dev/null || true
  done
}

redis_cluster_stop() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  REDIS_CLUSTER_PORTS=()
}
