# shellcheck shell=bash
# The dump of a Redis Cluster for `chaos-report verify`: every key of every primary is copied
# (MIGRATE ... COPY) into one empty scratch Redis, and scripts/chaos-dump.lua runs there, the
# same Lua as for a single Redis. No EVAL on a cluster node could do it: a node may only touch
# the keys of the slots it serves. Sourced by scripts/chaos.sh (nodes on the host) and
# scripts/e2e-compose.sh (nodes in containers); each says how to reach a node.
#
#   cluster_dump OUT PREFIX NODE_CLI SCRATCH_CLI SCRATCH_HOST SCRATCH_PORT NODE...
#       copies the keys under PREFIX: of each NODE into the scratch Redis (emptied first; the
#       nodes keep their keys), checks that it then holds as many keys as the nodes do, and
#       writes the Lua's dump to OUT. Returns non-zero, with the reason on stderr, otherwise.
#       NODE_CLI NODE [ARGS...] runs redis-cli against one node, reading commands from stdin
#       when given no ARGS; SCRATCH_CLI [ARGS...] runs it against the scratch Redis, whose
#       address as the nodes reach it is SCRATCH_HOST SCRATCH_PORT.

CLUSTER_DUMP_LUA="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/chaos-dump.lua"

cluster_dump() {
    local out=$1 prefix=$2 node_cli=$3 scratch_cli=$4 scratch_host=$5 scratch_port=$6
    shift 6
    local node n want=0 replies failed
    "$scratch_cli" FLUSHALL >/dev/null || { echo "cannot empty the scratch Redis" >&2; return 1; }
    for node in "$@"; do
        n=$("$node_cli" "$node" DBSIZE | tr -d '\r')
        want=$((want + n))
        replies=$("$node_cli" "$node" --scan --pattern "$prefix:*" | tr -d '\r' |
            awk -v h="$scratch_host" -v p="$scratch_port" \
                '{ print "MIGRATE " h " " p " \"" $0 "\" 0 5000 COPY REPLACE" }' |
            "$node_cli" "$node" 2>&1 | tr -d '\r')
        failed=$(grep -vx 'OK' <<<"$replies" | grep -v '^$' | head -n 3 || true)
        if [[ -n $failed ]]; then
            echo "copying the keys of node $node failed: $failed" >&2
            return 1
        fi
    done
    n=$("$scratch_cli" DBSIZE | tr -d '\r')
    if [[ $n != "$want" ]]; then
        echo "the dump copied $n keys, the primaries hold $want" >&2
        return 1
    fi
    "$scratch_cli" --raw EVAL "$(cat "$CLUSTER_DUMP_LUA")" 0 "$prefix" >"$out"
}
