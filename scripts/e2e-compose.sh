#!/usr/bin/env bash
# End-to-end test of the compose cluster, through nginx only: builds the images
# (scripts/build-images.sh), starts redis, keygen, 3 API replicas, nginx and the trace receiver
# with podman-compose under a unique project name, then checks
#   - the RealWorld flow (register, login, create and read articles) and W3C trace propagation,
#   - 3 distinct replicas answer (X-Served-By), and a token issued by one works on all,
#   - scaling to 5 replicas is picked up by nginx without a restart,
#   - under continuous traffic (conduit-load, reads not retried), scaling down to 2 and
#     SIGKILLing one replica fails no read and loses or duplicates no acknowledged write
#     (Idempotency-Key retries; each one checked against a Redis dump by chaos-report verify,
#     and the articles counted in Redis),
#   - Redis restarts with its data (append-only file) and the API recovers by itself.
# With --cluster the data lives in a Redis Cluster of six nodes (deploy/compose.cluster.yaml)
# instead; after the same RealWorld flow it checks
#   - the cluster formed (3 primaries with a replica each, cluster_state:ok) and every replica
#     runs in cluster mode (/readyz),
#   - under continuous traffic, SIGKILLing a Redis primary container: its replica takes over,
#     reads fail only within the failover window (cluster node timeout + 3 s) and none after,
#     every write is acknowledged (Idempotency-Key retries) and all of them are in the cluster
#     (chaos-report verify against a dump of every primary),
#   - the killed node comes back from its volume (nodes.conf) as a replica.
# Everything the test started is removed at the end, also on failure. Prints a summary table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<'EOF'
Usage: scripts/e2e-compose.sh [OPTIONS]

Runs the compose cluster end to end with podman-compose and checks it through nginx.

Options:
  --cluster        run the data in a Redis Cluster (deploy/compose.cluster.yaml) and kill a
                   Redis primary under traffic instead of scaling the API and restarting Redis
  --no-build       use the existing images (do not run scripts/build-images.sh)
  --keep           leave the stack running at the end (for debugging); remove it later with
                   podman-compose -p <project> -f compose.yaml -f deploy/compose.offline.yaml down -v
                   (with --cluster add -f deploy/compose.cluster.yaml)
  -h, --help       show this help

Needs on the host: podman, podman-compose (installed when missing), curl, python3, cargo
(builds conduit-load and chaos-report in release).

Environment:
  E2E_PROJECT      compose project name [conduit-e2e-<pid>]
  E2E_HTTP_PORT    host port for nginx [a free port]
  E2E_TRAFFIC_SECONDS  length of the traffic phase (conduit-load --duration) [40]; it must
                   outlast the faults (checked)
  CONDUIT_REDIS_PREFIX Redis key prefix of the API [conduit]
  REDIS_ADMIN_PASSWORD, CONDUIT_REDIS_PASSWORD  Redis passwords of the `default` and `conduit`
                   users [fresh random ones]
  CONDUIT_REGISTRATIONS_PER_ADDRESS  registrations per hour per client address [100]; the run
                   registers fewer than 20 users, all from nginx's address, so the default
                   limit stays on
  Image variables as in scripts/build-images.sh and deploy/compose.offline.yaml; with
  --cluster the Redis nodes run REDIS_OFFLINE_IMAGE too.
EOF
}

SCRIPT_NAME=e2e-compose
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"

BUILD=1
KEEP=0
CLUSTER=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cluster) CLUSTER=1 ;;
        --no-build) BUILD=0 ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

need curl python3 cargo
# shellcheck source=scripts/lib/podman.sh
source "$ROOT/scripts/lib/podman.sh"
podman_prereqs containers
podman_compose_on_path

if [[ $CLUSTER == 1 ]]; then
    PROJECT=${E2E_PROJECT:-conduit-e2e-cluster-$$}
else
    PROJECT=${E2E_PROJECT:-conduit-e2e-$$}
fi
PREFIX=${CONDUIT_REDIS_PREFIX:-conduit}
TRAFFIC_SECONDS=${E2E_TRAFFIC_SECONDS:-40}
free_port port
export CONDUIT_HTTP_PORT=${E2E_HTTP_PORT:-$port}
free_port port
export OTLP_REPORT_PORT=${OTLP_REPORT_PORT:-$port}
free_port port
export JAEGER_UI_PORT=${JAEGER_UI_PORT:-$port}
export CONDUIT_REGISTRATIONS_PER_ADDRESS=${CONDUIT_REGISTRATIONS_PER_ADDRESS:-100}
# Redis passwords of this run (compose.yaml): fresh ones unless given.
export REDIS_ADMIN_PASSWORD=${REDIS_ADMIN_PASSWORD:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
export CONDUIT_REDIS_PASSWORD=${CONDUIT_REDIS_PASSWORD:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}
BASE="http://127.0.0.1:$CONDUIT_HTTP_PORT"
REPORT_URL="http://127.0.0.1:$OTLP_REPORT_PORT/report?spans=false"
COMPOSE=(podman-compose -p "$PROJECT" -f "$ROOT/compose.yaml" -f "$ROOT/deploy/compose.offline.yaml")
if [[ $CLUSTER == 1 ]]; then
    COMPOSE+=(-f "$ROOT/deploy/compose.cluster.yaml")
    # The cluster nodes take REDIS_IMAGE; offline that is the Redis stand-in.
    export REDIS_IMAGE=${REDIS_OFFLINE_IMAGE:-localhost/redis:offline}
    NODES=(redis-node-1 redis-node-2 redis-node-3 redis-node-4 redis-node-5 redis-node-6)
fi
TMP=$(mktemp -d)
COMPOSE_LOG="$TMP/compose.log"
START=$SECONDS

# --- summary ---------------------------------------------------------------------------------
RESULTS=()
FAILURES=0
record() {
    # record CHECK ok|FAIL DETAIL
    RESULTS+=("$1|$2|$3")
    if [[ $2 == ok ]]; then log "ok    $1: $3"; else FAILURES=$((FAILURES + 1)); log "FAIL  $1: $3"; fi
}
check() {
    # check NAME DETAIL CONDITION...: records ok when the condition command succeeds
    local name=$1 detail=$2
    shift 2
    if "$@"; then record "$name" ok "$detail"; else record "$name" FAIL "$detail"; fi
}
summary() {
    local row name result detail
    printf '\n%-44s %-6s %s\n' "CHECK" "RESULT" "DETAIL" >&2
    printf '%-44s %-6s %s\n' "--------------------------------------------" "------" "------" >&2
    for row in "${RESULTS[@]}"; do
        IFS='|' read -r name result detail <<<"$row"
        printf '%-44s %-6s %s\n' "$name" "$result" "$detail" >&2
    done
    printf '\n%d checks, %d failed, %d s (project %s)\n' "${#RESULTS[@]}" "$FAILURES" \
        "$((SECONDS - START))" "$PROJECT" >&2
}

# ends: the first 4 and the last 8 lines of its input (the first says why a thing began to fail).
ends() { awk '{ line[NR] = $0 } END { for (i = 1; i <= NR; i++) if (i <= 4 || i > NR - 8) print line[i] }'; }
teardown() {
    local status=$?
    # On the way out (die, interrupt): no conduit-load left behind.
    [[ -z ${TRAFFIC_PID:-} ]] || kill -TERM "$TRAFFIC_PID" 2>/dev/null || true
    if [[ $status != 0 || $FAILURES != 0 ]]; then
        log "failure: last lines of the compose log and of the containers, then each container's"
        log "warnings and errors and nginx's answers other than 2xx (marked !)"
        grep -v 'systemd connection' "$COMPOSE_LOG" 2>/dev/null | tail -n 20 >&2 || true
        for c in $(podman ps -a --format '{{.Names}}' --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null); do
            log "--- $c"
            podman logs --tail 8 "$c" 2>&1 | cut -c1-240 | sed 's/^/    /' >&2 || true
            podman logs "$c" 2>&1 | grep -E ' (WARN|ERROR) | status=[^2]' | ends | cut -c1-300 | sed 's/^/  ! /' >&2 || true
        done
        for f in "$TMP"/removed-*.log; do
            if [[ -e $f ]]; then
                log "--- $(basename "$f" .log) (removed during the test)"
                grep -E ' (WARN|ERROR) ' "$f" | ends | cut -c1-300 | sed 's/^/  ! /' >&2 || true
            fi
        done
    fi
    if [[ $KEEP == 1 ]]; then
        log "--keep: the stack keeps running as project $PROJECT on $BASE"
    else
        log "tearing down project $PROJECT"
        "${COMPOSE[@]}" down -v -t 5 >>"$COMPOSE_LOG" 2>&1 || true
        # podman-compose down can leave scaled replicas behind.
        podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f -v -t 0 >/dev/null 2>&1 || true
        podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
        podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman network rm -f >/dev/null 2>&1 || true
    fi
    summary
    rm -rf "$TMP"
    if [[ $status == 0 && $FAILURES != 0 ]]; then status=1; fi
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- helpers ---------------------------------------------------------------------------------
STATUS=000
SERVED_BY=
api() {
    # api METHOD PATH [JSON BODY] [TOKEN] [EXTRA CURL ARGS...]: sets STATUS and SERVED_BY,
    # the body is in $TMP/body and the headers in $TMP/headers.
    local method=$1 path=$2 body=${3:-} token=${4:-}
    local args=(-sS -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' -X "$method" --max-time 15)
    shift 2
    shift $(($# > 2 ? 2 : $#))
    [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data "$body")
    [[ -n $token ]] && args+=(-H "Authorization: Token $token")
    STATUS=$(curl "${args[@]}" "$@" "$BASE$path" 2>"$TMP/curl.err") || STATUS=000
    SERVED_BY=$(header X-Served-By)
}
header() { sed -n "s/^$1: *//Ip" "$TMP/headers" 2>/dev/null | tr -d '\r' | tail -n 1; }
json() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/body" "$1"; }
compose() { "${COMPOSE[@]}" "$@" >>"$COMPOSE_LOG" 2>&1; }
container() { printf '%s_%s_%s' "$PROJECT" "$1" "${2:-1}"; }
redis_cli() { podman exec "$(container redis)" redis-cli "$@" | tr -d '\r'; }
wait_until() {
    # wait_until SECONDS DESCRIPTION COMMAND...: polls once a second
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || { log "timed out after waiting for $what"; return 1; }
        sleep 1
    done
}
http_ok() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$BASE$1") == 200 ]]; }
distinct_replicas() {
    # distinct_replicas WANT MAX_REQUESTS PATH [TOKEN]: GETs PATH until WANT distinct
    # X-Served-By values answered 200; sets SEEN (space-separated) and NON_200.
    local want=$1 max=$2 path=$3 token=${4:-} i
    declare -A seen=()
    NON_200=0
    for ((i = 0; i < max; i++)); do
        api GET "$path" "" "$token"
        if [[ $STATUS == 200 && -n $SERVED_BY ]]; then
            seen[$SERVED_BY]=1
        else
            NON_200=$((NON_200 + 1))
        fi
        ((${#seen[@]} >= want)) && break
        ((i % 10 == 9)) && sleep 0.5
    done
    SEEN="${!seen[*]}"
    ((${#seen[@]} >= want))
}
check_acknowledged_articles_listed() {
    # The API lists as many articles with the traffic's tag as the traffic had acknowledged.
    api GET "/api/articles?tag=e2e-traffic&limit=1"
    TAGGED=-1
    [[ $STATUS == 200 ]] && TAGGED=$(json 'd["articlesCount"]')
    check "acknowledged writes readable via the API" \
        "articlesCount for tag e2e-traffic: $TAGGED, $ACKED_ARTICLES articles acknowledged" \
        test "$TAGGED" = "$ACKED_ARTICLES"
}
count_words() { wc -w <<<"$1" | tr -d ' '; }
# tr_get EXPR: EXPR over the traffic run's files: d (conduit-load's --json summary), v
# (chaos-report's verdict, once made), writes (the --log-writes records), timeline (the
# --timeline lines) and READS (the read operations of conduit-load's mix).
tr_get() {
    python3 - "$TRAFFIC_DIR" "$1" <<'PY'
import json, os, sys
t = sys.argv[1]
def load(name):
    path = os.path.join(t, name)
    return json.load(open(path)) if os.path.exists(path) and os.path.getsize(path) else {}
def lines(name):
    path = os.path.join(t, name)
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
d, v = load("summary.json"), load("verdict.json")
writes, timeline = lines("writes.jsonl"), lines("timeline.jsonl")
READS = ("list_articles", "read_article", "feed", "tags", "profile", "list_comments")
print(eval(sys.argv[2]))
PY
}
zcard_sum() {
    # zcard_sum CLI...: the number of articles in the global index one Redis holds, where CLI
    # runs redis-cli against it. Counts the single index key `<prefix>:articles` and the
    # buckets `<prefix>:{all:<n>}:articles` of the cluster key layout, whichever exist.
    local total=0 key n
    while read -r key; do
        [[ -n $key ]] || continue
        n=$("$@" ZCARD "$key")
        total=$((total + n))
    done < <("$@" --scan --pattern "$PREFIX:articles" && "$@" --scan --pattern "$PREFIX:{all:*}:articles")
    echo "$total"
}

# --- Redis Cluster helpers (--cluster) -----------------------------------------------------------
# Nodes announce their container addresses, so redis-cli runs inside a node container
# ($CLIENT_NODE, one that stays up) and reaches the others by address.
CLIENT_NODE=
node_ip() { podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
node_with_ip() {
    # node_with_ip IP: the node container with that address
    local node
    for node in "${NODES[@]}"; do
        [[ $(node_ip "$(container "$node")") == "$1" ]] && { container "$node"; return 0; }
    done
    return 1
}
ncli() { podman exec "$CLIENT_NODE" redis-cli "$@" | tr -d '\r'; }
cluster_field() { ncli CLUSTER INFO | sed -n "s/^$1://p"; }
serving_primaries() {
    # The addresses of the primaries that are not marked failed.
    ncli CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, ":"); print a[1] }'
}
articles_in_cluster() {
    local ip total=0 n
    for ip in $(serving_primaries); do
        n=$(zcard_sum ncli -h "$ip")
        total=$((total + n))
    done
    echo "$total"
}
cluster_shape() {
    # Sets CLUSTER_SHAPE to "P primaries with slots (C with a replica), R replicas, F failed" as
    # $CLIENT_NODE sees it; true for 3 primaries each with a connected replica, nothing failed
    # and cluster_state:ok.
    ncli CLUSTER NODES >"$TMP/cluster-nodes" || return 1
    CLUSTER_SHAPE=$(awk '
        $3 ~ /master/ && NF >= 9 { primaries[$1] = 1 }
        $3 ~ /slave/ && $8 == "connected" { replicated[$4] = 1; replicas++ }
        $3 ~ /fail/ { failed++ }
        END {
            covered = 0
            for (p in primaries) { n++; if (p in replicated) covered++ }
            printf "%d primaries with slots (%d with a replica), %d replicas, %d failed\n", n, covered, replicas, failed
        }' "$TMP/cluster-nodes")
    [[ $CLUSTER_SHAPE == "3 primaries with slots (3 with a replica), 3 replicas, 0 failed" &&
        $(cluster_field cluster_state) == ok ]]
}
# The dump of a cluster, through a scratch Redis beside the nodes (scripts/lib/cluster-dump.sh);
# redis-cli runs in the client node's container, as the nodes' addresses are the network's.
source "$ROOT/scripts/lib/cluster-dump.sh"
SCRATCH=
node_cli() {
    # node_cli IP [ARGS...]: ncli against the node at IP; with no ARGS, commands from stdin.
    local ip=$1
    shift
    if (($#)); then
        ncli -h "$ip" "$@"
    else
        podman exec -i "$CLIENT_NODE" redis-cli -h "$ip"
    fi
}
scratch_cli() { podman exec "$SCRATCH" redis-cli "$@" | tr -d '\r'; }
dump_cluster() {
    local network
    if [[ -z $SCRATCH ]]; then
        SCRATCH="${PROJECT}_dump-scratch_1"
        network=$(podman inspect --format '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' "$CLIENT_NODE" | awk '{ print $1 }')
        # The project label: the teardown removes it with the rest.
        podman run -d --name "$SCRATCH" --label "io.podman.compose.project=$PROJECT" --network "$network" \
            "$REDIS_IMAGE" redis-server --port 6379 --protected-mode no --save '' --appendonly no \
            >>"$COMPOSE_LOG" 2>&1 || { log "could not start the scratch Redis"; return 1; }
        wait_until 15 "the scratch Redis" test "$(scratch_cli PING 2>/dev/null)" = PONG || return 1
    fi
    # shellcheck disable=SC2046 # one argument per primary address
    cluster_dump "$1" "$PREFIX" node_cli scratch_cli "$(node_ip "$SCRATCH")" 6379 $(serving_primaries) ||
        return 1
}
readyz_modes() {
    # readyz_modes N: GETs /readyz N times through nginx; sets MODES ("replica=mode ...") and
    # is true when every answer was 200 and named the cluster mode.
    local i bad=0 mode
    declare -A modes=()
    for ((i = 0; i < $1; i++)); do
        api GET /readyz
        mode=$(json 'd.get("redis", "(none)")' 2>/dev/null || echo '(no body)')
        [[ $STATUS == 200 && $mode == cluster ]] || bad=$((bad + 1))
        modes[${SERVED_BY:-?}]=$mode
    done
    MODES=
    for i in "${!modes[@]}"; do MODES+="${MODES:+ }$i=${modes[$i]}"; done
    ((bad == 0))
}

# --- build and start ---------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
    log "building images (scripts/build-images.sh)"
    "$ROOT/scripts/build-images.sh"
fi
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")
export CONDUIT_API_IMAGE=${CONDUIT_API_IMAGE:-localhost/conduit-api:${VERSION:-0.1.0}}
export OTLP_RECEIVER_IMAGE=${OTLP_RECEIVER_IMAGE:-localhost/otlp-receiver:${VERSION:-0.1.0}}
for image in "$CONDUIT_API_IMAGE" "${NGINX_OFFLINE_IMAGE:-localhost/nginx:offline}" \
    "${REDIS_OFFLINE_IMAGE:-localhost/redis:offline}"; do
    podman image exists "$image" || die "image $image is missing (run scripts/build-images.sh)"
done
if [[ $CLUSTER == 1 ]]; then
    SERVICES=("${NODES[@]}" redis-cluster-init keygen api nginx)
else
    SERVICES=(redis keygen api nginx)
fi
if podman image exists "$OTLP_RECEIVER_IMAGE"; then
    SERVICES+=(jaeger)
else
    log "$OTLP_RECEIVER_IMAGE is missing: running without a trace receiver"
fi

log "starting project $PROJECT with 3 replicas, nginx on $BASE"
UP_START=$SECONDS
compose up -d --no-build --scale api=3 "${SERVICES[@]}" || die "podman-compose up failed (log: see above)"
if [[ $CLUSTER == 1 ]]; then
    INIT=$(container redis-cluster-init)
    init_done() { [[ $(podman inspect --format '{{.State.Status}}' "$INIT") == exited ]]; }
    wait_until 120 "redis-cluster-init to finish" init_done || true
    INIT_EXIT=$(podman inspect --format '{{.State.ExitCode}}' "$INIT")
    check "the cluster forms (redis-cluster-init)" \
        "$(init_done && echo "exit $INIT_EXIT" || echo 'still running'), $((SECONDS - UP_START)) s after up: $(podman logs --tail 1 "$INIT" 2>&1 | cut -c1-100)" \
        test "$(init_done && echo "$INIT_EXIT")" = 0
    CLIENT_NODE=$(container redis-node-1)
    wait_until 20 "cluster_state:ok with 3 primaries and 3 replicas" cluster_shape || true
    CLUSTER_SHAPE=
    if cluster_shape; then
        record "cluster_state:ok, 3 primaries + 3 replicas" ok "$CLUSTER_SHAPE"
    else
        record "cluster_state:ok, 3 primaries + 3 replicas" FAIL "state $(cluster_field cluster_state); $CLUSTER_SHAPE"
    fi
fi
# Redis: a connection without credentials is refused, and the API's user may not administer.
if [[ $CLUSTER == 1 ]]; then REDIS_CONTAINER=$(container redis-node-1); else REDIS_CONTAINER=$(container redis); fi
wait_until 60 "Redis to answer with credentials" \
    test "$(podman exec "$REDIS_CONTAINER" redis-cli PING 2>/dev/null | tr -d '\r')" = PONG || true
ANON_REPLY=$(podman exec "$REDIS_CONTAINER" env -u REDISCLI_AUTH redis-cli PING 2>&1 | tr -d '\r')
check "Redis refuses a connection without credentials" "PING: $ANON_REPLY" \
    grep -q '^NOAUTH' <<<"$ANON_REPLY"
API_CONFIG_REPLY=$(podman exec -e REDISCLI_AUTH="$CONDUIT_REDIS_PASSWORD" "$REDIS_CONTAINER" \
    redis-cli --user conduit CONFIG GET appendonly 2>&1 | tr -d '\r')
check "the API's Redis user may not run CONFIG" "CONFIG GET as conduit: $API_CONFIG_REPLY" \
    grep -q '^NOPERM' <<<"$API_CONFIG_REPLY"
wait_until 60 "nginx" http_ok /nginx-health
check "nginx answers /nginx-health" "$((SECONDS - UP_START)) s after up" http_ok /nginx-health
# The first 200 is the result (asking again could reach a replica that is not ready yet); then
# every replica must answer 200 too, each within the same kind of bound.
if wait_until 90 "a ready replica behind nginx" http_ok /readyz; then
    record "API ready through nginx (/readyz)" ok "$((SECONDS - UP_START)) s after up"
else
    record "API ready through nginx (/readyz)" FAIL "no 200 within 90 s"
fi
if wait_until 60 "3 ready replicas behind nginx" distinct_replicas 3 12 /readyz; then
    record "3 replicas serve" ok "$((SECONDS - UP_START)) s after up: $SEEN"
else
    record "3 replicas serve" FAIL "only '$SEEN' answered 200 within 60 s more"
fi
if [[ $CLUSTER == 1 ]]; then
    if readyz_modes 12; then
        record "replicas run in cluster mode (/readyz)" ok "$MODES"
    else
        record "replicas run in cluster mode (/readyz)" FAIL "$MODES"
    fi
fi

# --- the RealWorld flow through nginx --------------------------------------------------------
USERNAME="e2e_$(date +%s)_$$"
PASSWORD="e2e-password-$RANDOM$RANDOM"
api POST /api/users "{\"user\":{\"username\":\"$USERNAME\",\"email\":\"$USERNAME@example.com\",\"password\":\"$PASSWORD\"}}"
REGISTER_STATUS=$STATUS
check "register a user (POST /api/users)" "status $STATUS via ${SERVED_BY:-?}" test "$STATUS" = 201
api POST /api/users/login "{\"user\":{\"email\":\"$USERNAME@example.com\",\"password\":\"$PASSWORD\"}}"
TOKEN=
ISSUER=$SERVED_BY
[[ $STATUS == 200 ]] && TOKEN=$(json 'd["user"]["token"]')
check "log in (POST /api/users/login)" "status $STATUS via ${ISSUER:-?}" test -n "$TOKEN"
[[ $REGISTER_STATUS == 201 && -n $TOKEN ]] || die "cannot continue without a user"

api POST /api/articles '{"article":{"title":"Scaling stateless replicas","description":"e2e","body":"Written through nginx.","tagList":["e2e"]}}' "$TOKEN"
SLUG=
[[ $STATUS == 201 ]] && SLUG=$(json 'd["article"]["slug"]')
check "create an article (POST /api/articles)" "status $STATUS via ${SERVED_BY:-?}, slug ${SLUG:-none}" test -n "$SLUG"
[[ -n $SLUG ]] || die "cannot continue without an article"
api GET "/api/articles/$SLUG"
TITLE=
[[ $STATUS == 200 ]] && TITLE=$(json 'd["article"]["title"]')
check "read it back (GET /api/articles/{slug})" "status $STATUS via ${SERVED_BY:-?}" \
    test "$TITLE" = "Scaling stateless replicas"
api GET "/api/articles?author=$USERNAME"
COUNT=-1
[[ $STATUS == 200 ]] && COUNT=$(json 'd["articlesCount"]')
check "list by author (GET /api/articles?author=)" "status $STATUS, articlesCount $COUNT" test "$COUNT" = 1

if distinct_replicas 3 60 /api/user "$TOKEN" && ((NON_200 == 0)); then
    record "token from $ISSUER works on every replica" ok "GET /api/user 200 on $SEEN"
else
    record "token from $ISSUER works on every replica" FAIL "$NON_200 non-200 answers; 200 from '$SEEN'"
fi

TRACE_ID=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
api GET /api/tags "" "" -H "traceparent: 00-$TRACE_ID-$(python3 -c 'import secrets; print(secrets.token_hex(8))')-01"
check "traceparent passes nginx (X-Trace-Id)" "sent trace $TRACE_ID, got $(header X-Trace-Id)" \
    test "$(header X-Trace-Id)" = "$TRACE_ID"

# --- the traffic generator through nginx ---------------------------------------------------------
# conduit-load's virtual users (one trace each) through nginx: every replica must serve, nothing
# may fail, and each replica that served must show up in the trace receiver.
LOAD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/conduit-load"
REPORT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/chaos-report"
log "building conduit-load and chaos-report"
(cd "$ROOT" && cargo build --release --quiet -p conduit-load -p chaos-report) >>"$COMPOSE_LOG" 2>&1 ||
    die "cargo build -p conduit-load -p chaos-report failed"
LOAD_STATUS=0
"$LOAD_BIN" --target "$BASE" --users 3 --seed-users 2 --seed-articles 6 --duration 8 --rate 40 \
    --min-replicas 3 --max-errors 0 --no-tui --json >"$TMP/load.json" 2>"$TMP/load.log" || LOAD_STATUS=$?
LOAD_DETAIL=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d requests, %d failed, replicas %s" % (d["requests"]["total"], d["requests"]["failed"], " ".join(sorted(d["by_replica"]))))' "$TMP/load.json" 2>/dev/null || echo "no summary (exit $LOAD_STATUS)")
check "conduit-load --min-replicas 3 --max-errors 0" "$LOAD_DETAIL" test "$LOAD_STATUS" = 0
if [[ " ${SERVICES[*]} " == *" jaeger "* ]]; then
    load_spans_ok() {
        curl -fsS --max-time 5 -o "$TMP/load-report.json" "$REPORT_URL" &&
            python3 - "$TMP/load.json" "$TMP/load-report.json" >"$TMP/load-report.txt" <<'PY'
import json, sys
served = set(json.load(open(sys.argv[1]))["by_replica"])
seen = set(json.load(open(sys.argv[2]))["spans_per_instance"])
missing = sorted(served - seen)
print("spans from %d of %d replicas that served the load%s" % (
    len(served - set(missing)), len(served), (", missing " + " ".join(missing)) if missing else ""))
sys.exit(0 if served and not missing else 1)
PY
    }
    wait_until 20 "spans from every replica that served conduit-load" load_spans_ok || true
    check "trace receiver has every serving replica" "$(cat "$TMP/load-report.txt" 2>/dev/null || echo 'no report')" load_spans_ok
fi

# --- traffic under faults: conduit-load, then every acknowledged write against Redis -----------
# conduit-load's virtual users read and write (articles tagged e2e-traffic, comments, favorites)
# through nginx while the phase breaks things. Reads are not retried (--read-attempts 1): every
# read that nginx lets fail counts. Writes carry an Idempotency-Key and are retried with it for
# up to about 30 s (--attempts 30; a 409 while the key is in flight elsewhere for 12 s more).
# Afterwards the Redis data is dumped (scripts/chaos-dump.lua) and chaos-report verify checks
# every acknowledged write against it: none lost, none stored twice.
TRAFFIC_DIR="$TMP/traffic"
TRAFFIC_PID=
traffic_start() {
    mkdir -p "$TRAFFIC_DIR"
    "$LOAD_BIN" --target "$BASE" --users 6 --seed-users 1 --seed-articles 4 --follows 1 \
        --rate 60 --write-ratio 0.3 --tags e2e-traffic --duration "$TRAFFIC_SECONDS" \
        --timeout-ms 10000 --read-attempts 1 --attempts 30 --no-tui --json \
        --timeline "$TRAFFIC_DIR/timeline.jsonl" --log-writes "$TRAFFIC_DIR/writes.jsonl" \
        >"$TRAFFIC_DIR/summary.json" 2>"$TRAFFIC_DIR/load.log" &
    TRAFFIC_PID=$!
    # The faults start once the mixed phase runs (seeding is over).
    local deadline=$((SECONDS + 60))
    until grep -q '"phase":"mix"' "$TRAFFIC_DIR/timeline.jsonl" 2>/dev/null; do
        kill -0 "$TRAFFIC_PID" 2>/dev/null ||
            die "conduit-load exited while seeding: $(tail -n 3 "$TRAFFIC_DIR/load.log" | tr '\n' ' ')"
        ((SECONDS < deadline)) || die "conduit-load still seeding after 60 s"
        sleep 0.2
    done
    TRAFFIC_START=$SECONDS
}
traffic_finish() {
    # The faults are over: the traffic must still be running (else they were not under traffic).
    local rc=0 running=0
    kill -0 "$TRAFFIC_PID" 2>/dev/null && running=1
    check "the traffic outlasts the faults" \
        "$((SECONDS - TRAFFIC_START)) s of $TRAFFIC_SECONDS s (E2E_TRAFFIC_SECONDS) when the faults were over" \
        test "$running" = 1
    wait "$TRAFFIC_PID" || rc=$?
    TRAFFIC_PID=
    [[ -s $TRAFFIC_DIR/summary.json ]] ||
        die "conduit-load wrote no summary (exit $rc): $(tail -n 3 "$TRAFFIC_DIR/load.log" | tr '\n' ' ')"
    check "conduit-load ran to its end" "exit $rc" test "$rc" = 0
    log "traffic: $(tr_get '"%d requests, %d ok, %d failed %s, %d retries; writes %d acknowledged, %d failed; replicas %s" % (d["requests"]["total"], d["requests"]["ok"], d["requests"]["failed"], d["errors"], d["requests"]["retries"], d["writes"]["acknowledged"], d["writes"]["failed"], " ".join(sorted(d["by_replica"])))')"
    READS_FAILED=$(tr_get 'sum(d["operations"].get(op, {}).get("failed", 0) for op in READS)')
    READS_OK=$(tr_get 'sum(d["operations"].get(op, {}).get("count", 0) for op in READS)')
    READS_OK=$((READS_OK - READS_FAILED))
    ACKED=$(tr_get 'd["writes"]["acknowledged"]')
    UNACKED=$(tr_get 'd["writes"]["failed"]')
    RETRIES=$(tr_get 'd["requests"]["retries"]')
    ACKED_ARTICLES=$(tr_get 'sum(1 for w in writes if w["kind"] == "article" and w["acked"])')
    DISTINCT_ARTICLES=$(tr_get 'len(set(w["slug"] for w in writes if w["kind"] == "article" and w["acked"]))')
}
# traffic_verify DUMP ARGS...: chaos-report verify of the traffic run against DUMP, with the
# phase's requirements in ARGS; sets VERIFY_PASSED (true or false) and VERIFY_DETAIL.
traffic_verify() {
    local dump=$1
    shift
    "$REPORT_BIN" verify --phase e2e --summary "$TRAFFIC_DIR/summary.json" \
        --writes "$TRAFFIC_DIR/writes.jsonl" --timeline "$TRAFFIC_DIR/timeline.jsonl" \
        --dump "$dump" "$@" >"$TRAFFIC_DIR/verdict.json" 2>"$TRAFFIC_DIR/verdict.log" || true
    [[ -s $TRAFFIC_DIR/verdict.json ]] || die "chaos-report verify failed: $(tail -n 3 "$TRAFFIC_DIR/verdict.log" | tr '\n' ' ')"
    VERIFY_PASSED=$(tr_get 'str(v["passed"] and v["unacknowledged"] == 0 and v["checked"] > 0).lower()')
    VERIFY_DETAIL=$(tr_get '"chaos-report verify: %d acknowledged writes checked, %d found, %d lost, %d stored twice, %d executed but unacknowledged%s" % (v["checked"], v["found"], v["lost"], v["duplicates"], v["unacknowledged"], "; " + "; ".join(v["problems"][:2]).replace("|", "/") if v["problems"] else "")')
}

# --- single Redis: scale the API, kill a replica, restart Redis ----------------------------------
# --- the largest legal pages, 50 at once, under the replicas' memory limit --------------------------
largest_pages_phase() {
    local limit token slug i path ok c state bad=() pids=()
    limit=$(podman inspect --format '{{.HostConfig.Memory}}' "$(container api)")
    check "replicas run under a memory limit" "$((limit / 1048576)) MiB (compose.yaml, as in k8s)" \
        test "$limit" -gt 0 -a "$limit" -le $((256 * 1048576))
    # One author, every field at its longest in 4-byte characters: 100 articles (a full list
    # page) and 60 comments of 10 000 characters on one of them (a page asking for 500 stops
    # at about 1 MiB).
    python3 - "$TMP/big" <<'PY'
import json, os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
w = "\U0001F600"
def save(name, value):
    # As UTF-8, not \u escapes: a 10 000-character comment is 40 KB then, under the 64 KiB limit.
    with open(f"{d}/{name}.json", "w", encoding="utf-8") as out:
        json.dump(value, out, ensure_ascii=False)
save("profile", {"user": {"bio": w * 1000, "image": "https://" + "i" * 2040}})
tags = ["%02d" % i + w * 38 for i in range(20)]
for i in range(100):
    article = {"title": "%03d" % i + w * 197, "description": w * 1000, "body": "b", "tagList": tags}
    save(f"article-{i}", {"article": article})
save("comment", {"comment": {"body": w * 10000}})
PY
    api POST /api/users "{\"user\":{\"username\":\"big$$\",\"email\":\"big$$@example.com\",\"password\":\"$PASSWORD\"}}"
    [[ $STATUS == 201 ]] || { record "largest pages: data set" FAIL "register: $STATUS"; return; }
    token=$(json 'd["user"]["token"]')
    api PUT /api/user "@$TMP/big/profile.json" "$token"
    [[ $STATUS == 200 ]] || { record "largest pages: data set" FAIL "profile: $STATUS"; return; }
    for i in $(seq 0 99); do
        api POST /api/articles "@$TMP/big/article-$i.json" "$token"
        [[ $STATUS == 201 ]] || { record "largest pages: data set" FAIL "article $i: $STATUS"; return; }
    done
    slug=$(json 'd["article"]["slug"]')
    for i in $(seq 60); do
        api POST "/api/articles/$slug/comments" "@$TMP/big/comment.json" "$token"
        [[ $STATUS == 200 ]] || { record "largest pages: data set" FAIL "comment $i: $STATUS"; return; }
    done
    # 50 at once through nginx, half of each kind.
    for i in $(seq 50); do
        path="/api/articles?limit=100"
        ((i % 2)) || path="/api/articles/$slug/comments?limit=500"
        curl -s -o /dev/null -w '%{http_code} %{size_download}\n' --max-time 60 "$BASE$path" \
            >"$TMP/big/page-$i" 2>/dev/null &
        pids+=("$!")
    done
    wait "${pids[@]}" || true
    ok=$(cat "$TMP/big"/page-* | grep -c '^200 ' || true)
    check "50 largest pages at once: every one 200" \
        "$ok of 50; largest $(cat "$TMP/big"/page-* | awk '$2 > m { m = $2 } END { print m + 0 }') bytes" \
        test "$ok" = 50
    for c in $(podman ps -a --format '{{.Names}}' | grep "^${PROJECT}_api_"); do
        state=$(podman inspect --format '{{.State.OOMKilled}} {{.RestartCount}} {{.State.Running}}' "$c")
        [[ $state == "false 0 true" ]] || bad+=("$c: $state")
    done
    check "no replica OOM-killed or restarted by them" "${bad[*]:-every replica running, none OOM-killed}" \
        test "${#bad[@]}" = 0
}

single_node_phases() {
    largest_pages_phase

    # --- scale up to 5 -----------------------------------------------------------------------------
    NGINX_STARTED=$(podman inspect --format '{{.State.StartedAt}}' "$(container nginx)")
    log "scaling to 5 replicas"
    SCALE_START=$SECONDS
    compose up -d --no-build --scale api=5 "${SERVICES[@]}" || die "podman-compose up --scale api=5 failed"
    # A new replica's first seconds can go to DNS (docs/CONTAINERS.md): up to 90 s, polled.
    if wait_until 90 "5 ready replicas behind nginx" distinct_replicas 5 20 /readyz; then
        record "scale to 5: nginx finds 5 replicas" ok "$((SECONDS - SCALE_START)) s: $SEEN"
    else
        record "scale to 5: nginx finds 5 replicas" FAIL "only '$SEEN' answered 200 within 90 s"
    fi
    check "nginx was not restarted" "started $NGINX_STARTED" \
        test "$(podman inspect --format '{{.State.StartedAt}}' "$(container nginx)")" = "$NGINX_STARTED"

    # --- scale down and kill under traffic -----------------------------------------------------------
    ARTICLES_BEFORE=$(zcard_sum redis_cli)
    log "traffic for $TRAFFIC_SECONDS s; $ARTICLES_BEFORE articles in Redis"
    traffic_start
    sleep 4
    log "scaling down to 2: stopping replicas 5, 4 and 3 (SIGTERM, drain)"
    podman stop -t 20 "$(container api 5)" "$(container api 4)" "$(container api 3)" >>"$COMPOSE_LOG" 2>&1
    # podman-compose created nginx with a dependency on the first 3 replicas, so replica 3 can be
    # stopped but not removed while nginx exists; the later ones go away completely.
    for c in "$(container api 5)" "$(container api 4)"; do
        podman logs "$c" >"$TMP/removed-$c.log" 2>&1 || true
    done
    podman rm "$(container api 5)" "$(container api 4)" >>"$COMPOSE_LOG" 2>&1
    sleep 3
    VICTIM=$(container api 2)
    log "SIGKILL $VICTIM, $((SECONDS - TRAFFIC_START)) s into the traffic"
    podman kill --signal KILL "$VICTIM" >>"$COMPOSE_LOG" 2>&1
    sleep 8
    traffic_finish

    check "no failed read under scale-down + SIGKILL" \
        "$READS_OK ok, $READS_FAILED failed, none retried (errors of all requests: $(tr_get 'd["errors"]'))" \
        test "$READS_FAILED" = 0 -a "$READS_OK" -gt 0
    check "every write acknowledged (with retries)" \
        "$ACKED acknowledged ($ACKED_ARTICLES articles, $DISTINCT_ARTICLES distinct slugs), $UNACKED not, $RETRIES retries" \
        test "$UNACKED" = 0 -a "$ACKED" -gt 0 -a "$DISTINCT_ARTICLES" = "$ACKED_ARTICLES"
    redis_cli --raw EVAL "$(cat "$ROOT/scripts/chaos-dump.lua")" 0 "$PREFIX" >"$TRAFFIC_DIR/dump.tsv" ||
        die "the Redis dump (scripts/chaos-dump.lua) failed"
    traffic_verify "$TRAFFIC_DIR/dump.tsv"
    ARTICLES_AFTER=$(zcard_sum redis_cli)
    check "no write lost or duplicated (Redis)" \
        "$VERIFY_DETAIL; articles in the global index $ARTICLES_BEFORE -> $ARTICLES_AFTER, expected +$ACKED_ARTICLES" \
        test "$VERIFY_PASSED" = true -a "$ARTICLES_AFTER" = "$((ARTICLES_BEFORE + ACKED_ARTICLES))"
    check_acknowledged_articles_listed

    # --- restart Redis -----------------------------------------------------------------------------
    log "restarting Redis"
    check "Redis runs with appendonly" "CONFIG GET appendonly" \
        test "$(redis_cli CONFIG GET appendonly | tail -n 1)" = yes
    REDIS_START=$SECONDS
    podman restart -t 10 "$(container redis)" >>"$COMPOSE_LOG" 2>&1
    wait_until 60 "Redis" test "$(redis_cli PING 2>/dev/null)" = PONG || true
    wait_until 60 "the API to reconnect" http_ok "/api/articles/$SLUG" || true
    check "API recovers after a Redis restart" "$((SECONDS - REDIS_START)) s until GET article 200" \
        http_ok "/api/articles/$SLUG"
    ARTICLES_RESTARTED=$(zcard_sum redis_cli 2>/dev/null || echo none)
    check "data survives the Redis restart" "articles in the global index $ARTICLES_RESTARTED, expected $ARTICLES_AFTER" \
        test "$ARTICLES_RESTARTED" = "$ARTICLES_AFTER"
    VERIFY_PASSED=false VERIFY_DETAIL="no dump after the restart"
    if redis_cli --raw EVAL "$(cat "$ROOT/scripts/chaos-dump.lua")" 0 "$PREFIX" >"$TRAFFIC_DIR/dump-restarted.tsv"; then
        traffic_verify "$TRAFFIC_DIR/dump-restarted.tsv"
    fi
    check "acknowledged writes survive the restart" "$VERIFY_DETAIL" test "$VERIFY_PASSED" = true
    api POST /api/users/login "{\"user\":{\"email\":\"$USERNAME@example.com\",\"password\":\"$PASSWORD\"}}"
    check "log in again after the restart" "status $STATUS via ${SERVED_BY:-?}" test "$STATUS" = 200
}

# --- Redis Cluster: kill a primary under traffic ---------------------------------------------------
cluster_phases() {
    # The victim: the primary holding the most keys; its replica must take over.
    local ip size best=-1 victim_ip='' victim_id='' replica_ip=''
    ncli CLUSTER NODES >"$TMP/cluster-nodes"
    for ip in $(serving_primaries); do
        size=$(ncli -h "$ip" DBSIZE)
        if ((size > best)); then best=$size victim_ip=$ip; fi
    done
    victim_id=$(awk -v ip="$victim_ip:" 'index($2, ip) == 1 { print $1 }' "$TMP/cluster-nodes")
    replica_ip=$(awk -v id="$victim_id" '$4 == id && $3 ~ /slave/ { split($2, a, ":"); print a[1]; exit }' "$TMP/cluster-nodes")
    VICTIM=$(node_with_ip "$victim_ip") || die "no node container has the primary's address $victim_ip"
    REPLICA=$(node_with_ip "$replica_ip") || die "no replica of $VICTIM ($victim_ip) in CLUSTER NODES"
    # redis-cli from the replica from now on: it stays up.
    CLIENT_NODE=$REPLICA
    NODE_TIMEOUT_MS=$(ncli CONFIG GET cluster-node-timeout | tail -n 1)
    WINDOW=$(((NODE_TIMEOUT_MS + 999) / 1000 + 3))

    ARTICLES_BEFORE=$(articles_in_cluster)
    log "traffic for $TRAFFIC_SECONDS s; $ARTICLES_BEFORE articles in the cluster"
    traffic_start
    sleep 5
    log "SIGKILL primary $VICTIM ($victim_ip, $best keys), $((SECONDS - TRAFFIC_START)) s into the traffic; its replica is $REPLICA ($replica_ip)"
    KILL_AT=$(date +%s.%N)
    podman kill --signal KILL "$VICTIM" >>"$COMPOSE_LOG" 2>&1

    # The replica takes over once the others saw the primary fail for the node timeout.
    PROMOTED_AFTER=
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if [[ $(ncli ROLE | head -n 1) == master ]]; then
            PROMOTED_AFTER=$(python3 -c 'import sys, time; print("%.1f" % (time.time() - float(sys.argv[1])))' "$KILL_AT")
            break
        fi
        sleep 0.25
    done
    if [[ -n $PROMOTED_AFTER ]]; then
        record "the killed primary's replica takes over" ok "$REPLICA is primary $PROMOTED_AFTER s after the kill (node timeout $NODE_TIMEOUT_MS ms)"
    else
        record "the killed primary's replica takes over" FAIL "$REPLICA is still a replica 30 s after the kill"
    fi
    state_ok() { [[ $(cluster_field cluster_state) == ok ]]; }
    wait_until 10 "cluster_state:ok after the failover" state_ok || true
    check "cluster_state:ok after the failover" \
        "killed node marked $(ncli CLUSTER NODES | awk -v ip="$victim_ip:" 'index($2, ip) == 1 { print $3 }')" state_ok

    # Traffic goes on until the failover window has passed, and 8 s more.
    local until_s
    until_s=$(python3 -c 'import sys, time; print(max(0, float(sys.argv[1]) + int(sys.argv[2]) + 8 - time.time()))' "$KILL_AT" "$WINDOW")
    sleep "$until_s"
    traffic_finish

    # Reads are judged by when they were sent: before the kill none may fail, within the window
    # (node timeout + 3 s) some may, after it none, and some must have succeeded after it. Reads
    # are not retried, so every failed read is in conduit-load's list of failed requests (with
    # the failed writes, which the next check requires to be none).
    local verdict status=0
    verdict=$(python3 - "$TRAFFIC_DIR" "$KILL_AT" "$WINDOW" <<'PY'
import json, os, sys
t, kill, window = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
d = json.load(open(os.path.join(t, "summary.json")))
timeline = [json.loads(l) for l in open(os.path.join(t, "timeline.jsonl")) if l.strip()]
reads = ("list_articles", "read_article", "feed", "tags", "profile", "list_comments")
end = kill + window
starts = [sent / 1000 for sent, _ in d["failure_spans_ms"]]
complete = len(starts) == d["requests"]["failed"]
before = [s for s in starts if s < kill]
inside = [s for s in starts if kill <= s <= end]
after = [s for s in starts if s > end]
# Timeline lines cover the second before unix_ms: the ones that began after the window.
ok_after = sum(l["requests"] - l["failed"] - l["writes_acked"] for l in timeline
               if l["phase"] == "mix" and l["unix_ms"] / 1000 - 1 > end)
reads_ok = sum(d["operations"].get(op, {}).get("count", 0) - d["operations"].get(op, {}).get("failed", 0) for op in reads)
reads_failed = sum(d["operations"].get(op, {}).get("failed", 0) for op in reads)
last = ", last %.1f s after the kill" % (max(inside) - kill) if inside else ""
print("%d reads ok, %d failed; failed requests: %d before the kill, %d within the %d s window%s, %d after it%s; %d reads ok after it"
      % (reads_ok, reads_failed, len(before), len(inside), window, last, len(after),
         "" if complete else " (the list of failures is incomplete)", ok_after))
sys.exit(0 if complete and not before and not after and ok_after > 0 else 1)
PY
) || status=$?
    check "reads fail only within the failover window" "$verdict" test "$status" = 0

    check "every write acknowledged (with retries)" \
        "$ACKED acknowledged ($ACKED_ARTICLES articles, $DISTINCT_ARTICLES distinct slugs), $UNACKED not, $RETRIES retries (errors: $(tr_get 'd["errors"]'))" \
        test "$UNACKED" = 0 -a "$ACKED" -gt 0 -a "$DISTINCT_ARTICLES" = "$ACKED_ARTICLES"
    expected_articles() { ARTICLES_AFTER=$(articles_in_cluster) && [[ $ARTICLES_AFTER == "$((ARTICLES_BEFORE + ACKED_ARTICLES))" ]]; }
    wait_until 10 "every acknowledged article in the cluster" expected_articles || true
    VERIFY_PASSED=false VERIFY_DETAIL="no dump of the cluster"
    if dump_cluster "$TRAFFIC_DIR/dump.tsv"; then
        # Failed requests were judged above; here the writes.
        traffic_verify "$TRAFFIC_DIR/dump.tsv" --allow-failures "500,502,503,504,connect,timeout,other" \
            --failures-from "${KILL_AT%%.*}000" --failures-until "$(( ${KILL_AT%%.*} + WINDOW + 1 ))000"
    fi
    check "no write lost or duplicated (cluster)" \
        "$VERIFY_DETAIL; articles in the global index over the primaries $ARTICLES_BEFORE -> $ARTICLES_AFTER, expected +$ACKED_ARTICLES" \
        test "$VERIFY_PASSED" = true -a "$ARTICLES_AFTER" = "$((ARTICLES_BEFORE + ACKED_ARTICLES))"
    check_acknowledged_articles_listed
    if distinct_replicas 3 60 /api/user "$TOKEN" && ((NON_200 == 0)); then
        record "every replica serves after the failover" ok "GET /api/user 200 on $SEEN"
    else
        record "every replica serves after the failover" FAIL "$NON_200 non-200 answers; 200 from '$SEEN'"
    fi
    api POST /api/users/login "{\"user\":{\"email\":\"$USERNAME@example.com\",\"password\":\"$PASSWORD\"}}"
    check "log in after the failover" "status $STATUS via ${SERVED_BY:-?}" test "$STATUS" = 200

    # The killed node restarts from its volume: same node id (nodes.conf), now a replica.
    log "starting $VICTIM again"
    podman start "$VICTIM" >>"$COMPOSE_LOG" 2>&1
    rejoined() {
        [[ $(podman exec "$VICTIM" redis-cli ROLE 2>/dev/null | head -n 1 | tr -d '\r') == slave &&
            $(podman exec "$VICTIM" redis-cli CLUSTER MYID 2>/dev/null | tr -d '\r') == "$victim_id" ]] &&
            cluster_shape
    }
    wait_until 30 "$VICTIM to rejoin as a replica" rejoined || true
    if rejoined; then
        record "the killed node rejoins as a replica" ok "same node id from nodes.conf on its volume; $CLUSTER_SHAPE"
    else
        record "the killed node rejoins as a replica" FAIL "ROLE $(podman exec "$VICTIM" redis-cli ROLE 2>&1 | head -n 1 | tr -d '\r'); $CLUSTER_SHAPE"
    fi
    check "data intact after the node rejoins" "$(articles_in_cluster) articles, expected $ARTICLES_AFTER" \
        test "$(articles_in_cluster)" = "$ARTICLES_AFTER"
}

if [[ $CLUSTER == 1 ]]; then
    cluster_phases
else
    single_node_phases
fi

# --- traces ------------------------------------------------------------------------------------
if [[ " ${SERVICES[*]} " == *" jaeger "* ]]; then
    # The replicas export in batches: give the last batch a few seconds.
    report_ok() {
        curl -fsS --max-time 5 -o "$TMP/report.json" "$REPORT_URL" &&
            python3 - "$TMP/report.json" "$TRACE_ID" >"$TMP/report.txt" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
instances = sorted(k for k in d["spans_per_instance"] if k != "(none)")
trace = d["traces"].get(sys.argv[2].lower(), {})
print("%d spans from %d replicas; trace %s: %d spans" % (
    d["total_spans"], len(instances), sys.argv[2][:8], trace.get("span_count", 0)))
sys.exit(0 if len(instances) >= 3 and trace.get("span_count", 0) > 0 else 1)
PY
    }
    wait_until 20 "spans in the OTLP receiver" report_ok || true
    check "traces reach the OTLP receiver" "$(cat "$TMP/report.txt" 2>/dev/null || echo 'no report')" report_ok
fi
log "done"
