#!/bin/sh
# Forms a Redis Cluster of 3 primaries with one replica each from six empty nodes, once.
#
#   form-cluster.sh HOST1 HOST2 HOST3 HOST4 HOST5 HOST6
#
# Waits until every name resolves and its node answers PING, then runs
# `redis-cli --cluster create IP:PORT ... --cluster-replicas 1` with the resolved addresses
# (redis-cli 7.0 wants addresses, not names). Idempotent: when any node already belongs to a
# cluster (it knows other nodes or holds slots), nothing is created; members that one node
# does not know at their current addresses (they may all have changed) are introduced to it;
# then the script waits for cluster_state:ok and exits 0. Used by deploy/compose.cluster.yaml
# (one-shot service) and by the Job of this component.
#
# Environment: REDIS_PORT [6379], WAIT_SECONDS for the nodes and for cluster_state:ok [120].
# Needs redis-cli and getent (both in the Redis image).
set -eu

PORT=${REDIS_PORT:-6379}
WAIT_SECONDS=${WAIT_SECONDS:-120}

log() { printf '[form-cluster] %s\n' "$*" >&2; }

if [ "$#" -ne 6 ]; then
    log "usage: form-cluster.sh HOST1 ... HOST6 (got $# hosts)"
    exit 2
fi
for tool in redis-cli getent; do
    command -v "$tool" >/dev/null 2>&1 || { log "$tool is missing (Debian: redis-tools, libc-bin)"; exit 2; }
done

deadline=$(($(date +%s) + WAIT_SECONDS))
in_time() { [ "$(date +%s)" -lt "$deadline" ]; }

# info_field IP FIELD: one field of CLUSTER INFO
info_field() {
    redis-cli -h "$1" -p "$PORT" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"
}

addresses=""
first=""
for host in "$@"; do
    while :; do
        ip=$(getent hosts "$host" | awk 'NR == 1 { print $1 }')
        if [ -n "$ip" ] && [ "$(redis-cli -h "$ip" -p "$PORT" ping 2>/dev/null | tr -d '\r')" = PONG ]; then
            break
        fi
        in_time || { log "$host did not resolve and answer PING within ${WAIT_SECONDS}s"; exit 1; }
        sleep 1
    done
    enabled=$(redis-cli -h "$ip" -p "$PORT" info cluster 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_enabled://p')
    [ "$enabled" = 1 ] || { log "$host ($ip) does not run with cluster-enabled yes"; exit 1; }
    log "$host is $ip"
    addresses="$addresses $ip:$PORT"
    [ -n "$first" ] || first=$ip
done

formed=0
for address in $addresses; do
    ip=${address%:*}
    known=$(info_field "$ip" cluster_known_nodes)
    assigned=$(info_field "$ip" cluster_slots_assigned)
    if [ "${known:-1}" -gt 1 ] || [ "${assigned:-0}" -gt 0 ]; then
        log "$ip already belongs to a cluster (knows $known nodes, $assigned slots assigned): not creating"
        formed=1
        first=$ip
        break
    fi
done

if [ "$formed" = 0 ]; then
    log "creating the cluster from$addresses"
    # shellcheck disable=SC2086 # one argument per address
    redis-cli --cluster create $addresses --cluster-replicas 1 --cluster-yes
else
    # Nodes that all come back with new addresses (every container or pod recreated) cannot
    # find each other from nodes.conf alone. Each member that $first does not know at its
    # current address is introduced to it (CLUSTER MEET), which lets the cluster update the
    # address. A healthy cluster knows every current address, so nothing is sent.
    view=$(redis-cli -h "$first" -p "$PORT" cluster nodes | tr -d '\r')
    for address in $addresses; do
        ip=${address%:*}
        [ "$ip" != "$first" ] || continue
        if printf '%s\n' "$view" | grep -q " $address@[0-9]*[ ,].* connected"; then
            continue
        fi
        if [ "$(info_field "$ip" cluster_known_nodes)" -gt 1 ]; then
            redis-cli -h "$first" -p "$PORT" cluster meet "$ip" "$PORT" >/dev/null
            log "introduced $ip to $first: it knew no connected node there"
        else
            log "$ip is empty and in no cluster: not adding it (redis-cli --cluster add-node does)"
        fi
    done
fi

until [ "$(info_field "$first" cluster_state)" = ok ]; do
    in_time || { log "cluster_state is not ok within ${WAIT_SECONDS}s: $(info_field "$first" cluster_state)"; exit 1; }
    sleep 1
done
log "cluster_state:ok, $(info_field "$first" cluster_known_nodes) nodes, $(info_field "$first" cluster_size) primaries with slots"
