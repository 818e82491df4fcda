# shellcheck shell=bash
# shellcheck disable=SC2034 # REDIS_CLUSTER_URLS is read by the scripts that source this file
# A throw-away Redis Cluster on 127.0.0.1: 3 primaries with one replica each. Sourced by
# scripts/test.sh, scripts/bench.sh and scripts/chaos.sh (needs redis-server and redis-cli,
# which the caller checks for).
#
# Settings, read by redis_cluster_start (set them before the call; the defaults suit tests):
#   REDIS_CLUSTER_FIXED_PORTS    array of six ports to use instead of free random ones
#   REDIS_CLUSTER_NODE_TIMEOUT   cluster-node-timeout in milliseconds [2000]
#   REDIS_CLUSTER_PERSISTENCE    redis-server arguments for persistence [--save '' --appendonly
#                                no]; e.g. (--save '' --appendonly yes --appendfsync always)
#   REDIS_CLUSTER_LOG_DIR        where each node logs (redis-<port>.log) [its own directory,
#                                redis.log]
#
#   redis_cluster_start DIR   starts six nodes, each in a directory of its own under DIR, forms
#                             the cluster and waits for cluster_state:ok on every node. Sets
#                             REDIS_CLUSTER_PORTS (array of the six ports) and
#                             REDIS_CLUSTER_URLS (comma-separated redis:// seeds, the value of
#                             REDIS_CLUSTER_URLS for a replica) once every replica has
#                             synced with its primary. Returns non-zero, with the reason on
#                             stderr, when the cluster does not form.
#   redis_cluster_node_start PORT
#                             starts the node on PORT (again) from its directory: its
#                             nodes.conf (same node id) and, with persistence, its data.
#   redis_cluster_node_kill PORT [SIGNAL]
#                             sends SIGNAL [KILL] to the node on PORT and waits until it is gone.
#   redis_cluster_primaries   prints the ports of the current primaries (that hold slots), one a
#                             line.
#   redis_cluster_pids        prints the pids of the six nodes, one a line.
#   redis_cluster_stop        shuts every node down (safe to call more than once).

REDIS_CLUSTER_PORTS=()
REDIS_CLUSTER_URLS=""
REDIS_CLUSTER_DIR=""
REDIS_CLUSTER_NODE_TIMEOUT=${REDIS_CLUSTER_NODE_TIMEOUT:-2000}
if [[ -z ${REDIS_CLUSTER_PERSISTENCE+set} ]]; then
  REDIS_CLUSTER_PERSISTENCE=(--save '' --appendonly no)
fi

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

redis_cluster_node_start() {
  local p=$1 dir="$REDIS_CLUSTER_DIR/cluster-$1" log
  mkdir -p "$dir"
  log="$dir/redis.log"
  [[ -z ${REDIS_CLUSTER_LOG_DIR:-} ]] || log="$REDIS_CLUSTER_LOG_DIR/redis-$p.log"
  redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT" \
    "${REDIS_CLUSTER_PERSISTENCE[@]}" --dir "$dir" \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$log" ||
    { echo "error: cluster node on port $p did not start" >&2; return 1; }
}

redis_cluster_node_kill() {
  local p=$1 pid i
  pid=$(cat "$REDIS_CLUSTER_DIR/cluster-$p/redis.pid" 2>/dev/null) || return 0
  kill -"${2:-KILL}" "$pid" 2>/dev/null || return 0
  for i in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  ! kill -0 "$pid" 2>/dev/null || { echo "error: cluster node on port $p (pid $pid) did not exit" >&2; return 1; }
  # A daemonized node removes its pid file only on a clean exit.
  rm -f "$REDIS_CLUSTER_DIR/cluster-$p/redis.pid"
}

redis_cluster_start() {
  local p i
  REDIS_CLUSTER_DIR=$1
  REDIS_CLUSTER_PORTS=()
  if [[ -n ${REDIS_CLUSTER_FIXED_PORTS+set} ]]; then
    ((${#REDIS_CLUSTER_FIXED_PORTS[@]} == 6)) ||
      { echo "error: REDIS_CLUSTER_FIXED_PORTS needs six ports" >&2; return 1; }
    REDIS_CLUSTER_PORTS=("${REDIS_CLUSTER_FIXED_PORTS[@]}")
  else
    for i in 1 2 3 4 5 6; do
      REDIS_CLUSTER_PORTS+=("$(_redis_cluster_free_port)")
    done
  fi
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis_cluster_node_start "$p" || return 1
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
  # Formed once every node says cluster_state:ok and the first one sees three replicas (the
  # replica roles reach it by gossip, after the slots).
  for i in $(seq 1 300); do
    if _redis_cluster_ok_everywhere &&
      [[ "$(redis-cli -p "${REDIS_CLUSTER_PORTS[0]}" cluster nodes | grep -c slave)" == 3 ]]; then
      break
    fi
    sleep 0.1
  done
  ((i < 300)) || { echo "error: the Redis Cluster did not reach cluster_state:ok with 3 replicas" >&2; return 1; }
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

_redis_cluster_ok_everywhere() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
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
    # A node that did not take the SHUTDOWN (busy, or its port unreachable) goes by signal.
    redis_cluster_node_kill "$p" TERM >/dev/null 2>&1 || redis_cluster_node_kill "$p" KILL || true
  done
  REDIS_CLUSTER_PORTS=()
}
