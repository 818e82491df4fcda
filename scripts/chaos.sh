#!/usr/bin/env bash
# Chaos run: proves that any API replica serves any request and that replicas (and Redis) can
# die, roll, scale and change signing keys while clients keep working.
#
# Starts a private cluster on 127.0.0.1 (redis-server with append-only persistence, N
# conduit-api replicas, nginx in front), drives it with conduit-load (reads and writes, every
# write with an Idempotency-Key), and on a fixed schedule:
#   1. kills a random replica with SIGKILL and starts a new one;
#   2. rolls every replica (SIGTERM, wait for the exit, start a replacement), one at a time;
#   3. scales 3 -> 6 -> 2;
#   4. rotates the signing key ring (new key added second, roll, moved first, roll) and checks
#      that a token issued before the rotation still works on every replica;
#   5. crashes Redis (SIGKILL) and starts it again from its append-only file; with --cluster
#      (a 6-node Redis Cluster instead of one redis-server) it SIGKILLs a Redis primary
#      instead, waits for its replica to be promoted and restarts the killed node.
# Before the phases it measures what the setup serves at saturation (a short load run with the
# rate uncapped) and runs every phase at 60 % of that.
# After each phase it checks every acknowledged write against Redis, and at the end prints one
# table for all phases and draws out/chaos/chaos.png (and .svg). Exit code 0 only when every
# requirement held: no failed request and no lost or duplicated write in phases 1-4; in phase
# 5 failures only as 503 while Redis is down, the API answering 200 within 2 s of Redis
# answering PING, and no acknowledged write lost (--cluster: failures only within the cluster
# node timeout + 3 s of the kill, none lost or duplicated). docs/CHAOS.md explains the output.
#
# With --compose the same phases run against the container stack (compose.yaml) instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
Usage: scripts/chaos.sh [--quick] [--cluster | --compose] [--out-dir DIR] [--no-build] [--seed N]

Runs five fault phases against a cluster under load and checks that no client notices.
First measures the saturation throughput (a short load run with the rate uncapped, same users
and mix); every phase then runs at 60 % of it. Both numbers are printed at the start and in
the table header.

  --quick       every phase lasts a few seconds (for CI; the whole run takes about 3 minutes)
  --cluster     business data in a local Redis Cluster (3 primaries, 3 replicas, node timeout
                2 s, append-only) instead of one redis-server; phase 5 becomes "redis primary
                SIGKILL": a primary is killed under load, its replica promoted, the killed node
                restarted (it rejoins as a replica)
  --compose     run against the container stack (podman-compose) instead of local processes
  --out-dir DIR where results go (default: out/chaos); emptied first
  --no-build    do not run cargo build; use the binaries already in the target directory
  --seed N      seed for the random choices (which replica dies), to repeat a run
  -h, --help    this help

Environment:
  CARGO_TARGET_DIR      where cargo puts the binaries (default: <repo>/target)
  CHAOS_BASE_PORT       first loopback port used (default 18400; Redis on it, nginx on +1,
                        a scratch Redis for the --cluster dump on +2, replicas from +10,
                        cluster nodes on +70..+75 and their bus ports +10000)
  CHAOS_RATE            load in operations per second for the phases (default: 60 % of the
                        measured saturation throughput)
  CHAOS_SAT_SECONDS     length of the saturation run (default 10, --quick 5)
  CHAOS_USERS           virtual users of the load (default 8)

Results in the output directory: table.txt (the phase table), rows.jsonl, chaos.png and
chaos.svg (responses per second per replica over time, faults marked), events.tsv, one
directory per phase (load summary, timeline, write log, verdict) and logs/.

Needs: cargo, redis-server, redis-cli, nginx, curl (and for --compose: podman, podman-compose).
EOF
}

QUICK=0
CLUSTER=0
COMPOSE=0
BUILD=1
OUT="$ROOT/out/chaos"
SEED=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --compose) COMPOSE=1 ;;
    --cluster) CLUSTER=1 ;;
    --no-build) BUILD=0 ;;
    --out-dir) OUT="${2:?--out-dir needs a directory}"; shift ;;
    --seed) SEED="${2:?--seed needs a number}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "chaos.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

SCRIPT_NAME=chaos
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"
now_ms() { date +%s%3N; }
if [[ $CLUSTER -eq 1 && $COMPOSE -eq 1 ]]; then
  echo "chaos.sh: --cluster runs local processes; it does not combine with --compose" >&2
  exit 2
fi

# ---------------------------------------------------------------------------------------------
# Settings per mode. Durations are the load run of each phase; the faults of a phase must be
# over before its load run ends (checked).
if [[ $QUICK -eq 1 ]]; then
  SAT_SECONDS="${CHAOS_SAT_SECONDS:-5}"
  DRAIN=2
  REDIS_DOWN=3
  DUR_KILL=10 DUR_ROLL=18 DUR_SCALE=16 DUR_KEYS=26 DUR_REDIS=12 DUR_PRIMARY=24
  HOLD=2
else
  SAT_SECONDS="${CHAOS_SAT_SECONDS:-10}"
  DRAIN=5
  REDIS_DOWN=5
  DUR_KILL=30 DUR_ROLL=45 DUR_SCALE=40 DUR_KEYS=60 DUR_REDIS=30 DUR_PRIMARY=40
  HOLD=8
fi
# The phases run at this share (percent) of the measured saturation throughput.
RATE_SHARE=60
RATE="${CHAOS_RATE:-}"
SATURATION=
# Containers start and stop more slowly, and nginx there needs a second or two to re-resolve.
if [[ $COMPOSE -eq 1 ]]; then
  DUR_KILL=$((DUR_KILL + 6)) DUR_ROLL=$((DUR_ROLL * 2)) DUR_SCALE=$((DUR_SCALE * 2))
  DUR_KEYS=$((DUR_KEYS * 2)) DUR_REDIS=$((DUR_REDIS + 6))
fi
USERS="${CHAOS_USERS:-8}"
BASE_PORT="${CHAOS_BASE_PORT:-18400}"
REDIS_PORT=$BASE_PORT
NGINX_PORT=$((BASE_PORT + 1))
PREFIX=chaos
REDIS_STOP_LABEL="redis SIGKILL"
MAX_RECOVERY_MS=2000
SCRATCH_PORT=$((BASE_PORT + 2))
CLUSTER_PORTS=()
for i in 0 1 2 3 4 5; do CLUSTER_PORTS+=($((BASE_PORT + 70 + i))); done
NODE_TIMEOUT_MS=2000
if [[ -n "$SEED" ]]; then RANDOM=$SEED; fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

# ---------------------------------------------------------------------------------------------
# Prerequisites, each named with the Debian package that brings it (lib/common.sh).
need curl date sed grep base64
# The picture at the end needs a sans font; find out now rather than after the whole run.
compgen -G '/usr/share/fonts/*/dejavu/DejaVuSans.ttf' >/dev/null ||
  compgen -G '/usr/share/fonts/*/liberation/LiberationSans-Regular.ttf' >/dev/null ||
  compgen -G '/usr/share/fonts/*/DejaVuSans.ttf' >/dev/null ||
  die "no DejaVu Sans or Liberation Sans font for the picture (apt-get install -y --no-install-recommends fonts-dejavu-core)"
if [[ $COMPOSE -eq 1 ]]; then
  need redis-cli python3
  # shellcheck source=scripts/lib/podman.sh
  source "$ROOT/scripts/lib/podman.sh"
  podman_prereqs containers
  podman_compose_on_path
else
  need redis-server redis-cli nginx
  find_nginx NGINX
fi
if [[ $BUILD -eq 1 ]]; then
  need cargo
  log "building conduit-api, conduit-load and chaos-report (release) in $TARGET_DIR"
  (cd "$ROOT" && nice -n 10 cargo build --release --quiet -p conduit-api -p conduit-load -p chaos-report)
fi
for b in conduit-api conduit-load chaos-report; do
  [[ -x "$BIN/$b" ]] || die "$BIN/$b missing (run without --no-build)"
done

# Ports must be free: a stray process would answer in our place.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [[ $COMPOSE -eq 0 ]]; then
  mapfile -t ports < <(seq $((BASE_PORT + 10)) $((BASE_PORT + 60)))
  ports+=("$REDIS_PORT" "$NGINX_PORT")
  if [[ $CLUSTER -eq 1 ]]; then
    ports+=("$SCRATCH_PORT")
    for p in "${CLUSTER_PORTS[@]}"; do ports+=("$p" $((p + 10000))); done
  fi
  for p in "${ports[@]}"; do
    if port_busy "$p"; then die "port $p on 127.0.0.1 is in use (set CHAOS_BASE_PORT)"; fi
  done
fi

# Only ever empty a directory that is empty or holds an earlier chaos run.
if [[ -d "$OUT" && -n "$(ls -A "$OUT")" && ! -e "$OUT/events.tsv" ]]; then
  die "$OUT is not empty and holds no earlier chaos run; choose another --out-dir"
fi
rm -rf "$OUT"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
LOGS="$OUT/logs"
EVENTS="$OUT/events.tsv"
: >"$EVENTS"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/conduit-chaos.XXXXXX")"
# nginx workers run as an unprivileged user when started by root; they only need to traverse.
chmod 755 "$TMP"

event() {
  printf '%s\t%s\t%s\n' "$(now_ms)" "$1" "$2" >>"$EVENTS"
  log "[$1] $2"
}

# ---------------------------------------------------------------------------------------------
# Process bookkeeping (local mode). Every replica process gets a new name (api-N) and port, so
# the picture shows each process as its own line.
declare -A PID=() PORT=()
LIVE=()          # replicas in the nginx upstream, in start order
SEQ=0
REDIS_PID=""
SCRATCH_PID=""     # --cluster: the scratch Redis the dump copies keys into
CLUSTER_UP=0       # --cluster: redis_cluster_start ran (lib/redis-cluster.sh)
NGINX_PID=""
LOAD_PID=""
PHASE_PROBLEMS=() # problems of the running phase (also: replicas that did not stop cleanly)
PHASE_NOTES=()
EXTRA_ARGS=()
OUTAGE=0

cleanup() {
  local rc=$?
  set +e
  [[ -n "$LOAD_PID" ]] && kill -INT "$LOAD_PID" 2>/dev/null
  if [[ $COMPOSE -eq 1 ]]; then
    compose_cleanup
  else
    for name in "${!PID[@]}"; do
      kill -KILL "${PID[$name]}" 2>/dev/null
    done
    [[ -n "$NGINX_PID" ]] && kill -TERM "$NGINX_PID" 2>/dev/null
    [[ -n "$REDIS_PID" ]] && kill -TERM "$REDIS_PID" 2>/dev/null
    [[ -n "$SCRATCH_PID" ]] && kill -TERM "$SCRATCH_PID" 2>/dev/null
  fi
  wait 2>/dev/null
  # The cluster nodes run daemonized (lib/redis-cluster.sh): not children to wait for.
  [[ $CLUSTER_UP -eq 0 ]] || redis_cluster_stop
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Redis
redis_start() {
  mkdir -p "$TMP/redis"
  # appendfsync always: a crash (SIGKILL) after an acknowledgement cannot lose the write.
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP/redis" \
    --appendonly yes --appendfsync always --save '' --daemonize no \
    --logfile "$LOGS/redis.log" &
  REDIS_PID=$!
}
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
redis_wait() {
  local deadline=$(($(now_ms) + 15000))
  until [[ "$(rcli ping 2>/dev/null)" == PONG ]]; do
    [[ $(now_ms) -lt $deadline ]] || die "redis did not answer PING within 15 s"
    sleep 0.02
  done
}

# ---------------------------------------------------------------------------------------------
# --cluster: six redis-server processes on CLUSTER_PORTS (lib/redis-cluster.sh), each with a
# directory of its own (its nodes.conf and append-only file survive a restart there), formed
# into 3 primaries with a replica each.
# shellcheck source=scripts/lib/redis-cluster.sh
source "$ROOT/scripts/lib/redis-cluster.sh"
REDIS_CLUSTER_FIXED_PORTS=("${CLUSTER_PORTS[@]}")
REDIS_CLUSTER_NODE_TIMEOUT=$NODE_TIMEOUT_MS
# appendfsync always: a primary SIGKILLed after an acknowledgement cannot lose the write.
REDIS_CLUSTER_PERSISTENCE=(--appendonly yes --appendfsync always --save '')
REDIS_CLUSTER_LOG_DIR=$LOGS
ccli() { local port=$1; shift; redis-cli -h 127.0.0.1 -p "$port" "$@"; }
# A node that answers, for questions about the whole cluster.
cnode_any() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    if [[ "$(ccli "$port" ping 2>/dev/null)" == PONG ]]; then echo "$port"; return 0; fi
  done
  return 1
}
# `CLUSTER NODES` as seen by a live node: "port flags master-id" per node.
cluster_nodes() {
  local port
  port=$(cnode_any) || return 1
  ccli "$port" cluster nodes 2>/dev/null | awk '{ split($2, a, "[:@]"); print a[2], $3, $4 }'
}
# Ports of the primaries that serve slots and are not failing.
cluster_primaries() {
  local port
  port=$(cnode_any) || return 1
  ccli "$port" cluster nodes 2>/dev/null |
    awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 { split($2, a, "[:@]"); print a[2] }'
}
cluster_start() {
  CLUSTER_UP=1
  # On failure the library prints the reason and redis-cli's output (kept in
  # $TMP/cluster-create.log) on stderr; on success that output is kept with the logs.
  redis_cluster_start "$TMP" 2>>"$LOGS/cluster-create.log" ||
    die "the Redis Cluster did not form (see $LOGS/cluster-create.log and $LOGS/redis-*.log)"
  cat "$TMP/cluster-create.log" >>"$LOGS/cluster-create.log"
  CLUSTER_URLS=$REDIS_CLUSTER_URLS
  # A scratch redis-server (no persistence) that the dump copies every key into.
  redis-server --bind 127.0.0.1 --port "$SCRATCH_PORT" --save '' --appendonly no \
    --dir "$TMP" --daemonize no --logfile "$LOGS/redis-scratch.log" &
  SCRATCH_PID=$!
  local deadline=$(($(now_ms) + 15000))
  until [[ "$(ccli "$SCRATCH_PORT" ping 2>/dev/null)" == PONG ]]; do
    [[ $(now_ms) -lt $deadline ]] || die "the scratch redis-server did not answer PING within 15 s"
    sleep 0.05
  done
}
# The dump of a cluster, through the scratch Redis (scripts/lib/cluster-dump.sh).
source "$ROOT/scripts/lib/cluster-dump.sh"
scratch_cli() { ccli "$SCRATCH_PORT" "$@"; }
dump_cluster() {
  # shellcheck disable=SC2046 # one argument per primary port
  cluster_dump "$1" "$PREFIX" ccli scratch_cli 127.0.0.1 "$SCRATCH_PORT" $(cluster_primaries) ||
    die "the cluster dump failed (see above)"
}

# ---------------------------------------------------------------------------------------------
# Replicas
KEYS_FILE="$TMP/jwt-keys"
replica_start() {
  SEQ=$((SEQ + 1))
  local name="api-$SEQ" port=$((BASE_PORT + 10 + SEQ))
  ((port <= BASE_PORT + 60)) || die "out of replica ports"
  local redis_env=(REDIS_URL="redis://127.0.0.1:$REDIS_PORT")
  [[ $CLUSTER -eq 0 ]] || redis_env=(REDIS_CLUSTER_URLS="$CLUSTER_URLS")
  env "${redis_env[@]}" CONDUIT_ADDR="127.0.0.1:$port" CONDUIT_REPLICA_ID="$name" \
    CONDUIT_REDIS_PREFIX="$PREFIX" \
    CONDUIT_JWT_KEYS_FILE="$KEYS_FILE" CONDUIT_DRAIN_SECONDS="$DRAIN" \
    CONDUIT_WORKERS=2 CONDUIT_TRUST_FORWARDED=true RUST_LOG=info OTEL_SDK_DISABLED=true \
    CONDUIT_REGISTRATIONS_PER_ADDRESS=0 \
    "$BIN/conduit-api" serve >>"$LOGS/$name.log" 2>&1 &
  PID[$name]=$!
  PORT[$name]=$port
  STARTED="$name"
}
replica_wait_ready() {
  local name=$1 deadline=$(($(now_ms) + 20000))
  until curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:${PORT[$name]}/readyz" 2>/dev/null; do
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      local rc=0
      wait "${PID[$name]}" || rc=$?
      die "$name exited with code $rc while starting (see $LOGS/$name.log)"
    fi
    [[ $(now_ms) -lt $deadline ]] || die "$name not ready within 20 s"
    sleep 0.05
  done
}
# SIGTERM and wait for the exit; the exit code must be 0 (a drained, clean stop).
replica_stop() {
  kill -TERM "${PID[$1]}"
  replica_stop_wait "$1"
}
live_remove() {
  local gone=$1 keep=() n
  for n in "${LIVE[@]}"; do [[ "$n" == "$gone" ]] || keep+=("$n"); done
  LIVE=("${keep[@]}")
}

# ---------------------------------------------------------------------------------------------
# nginx: a static upstream of the live replicas, rewritten and reloaded (HUP) on every change.
#
# Retries: a request is passed to the next replica on a connection error, a timeout, 502 or 503
# (`proxy_next_upstream`). nginx never retries a POST that already reached a replica unless
# told to (`non_idempotent`), because a POST may have been executed before the connection
# broke. Ours may be retried only when it carries an Idempotency-Key: the API then executes it
# at most once per key, whichever replica sees the retry (a replay returns the stored answer,
# a retry while the first execution still holds the key gets 409). So requests with the
# header go through a named location that adds `non_idempotent`; those without keep nginx's
# safe default. `max_fails=0`: with 503 counted as a failure, a Redis outage would otherwise
# mark every replica down and turn the 503s into nginx's own 502 "no live upstreams".
NGX="$TMP/nginx"
nginx_conf() {
  mkdir -p "$NGX"
  cat >"$NGX/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $NGX/nginx.pid;
error_log $LOGS/nginx-error.log notice;
events { worker_connections 1024; }
http {
  log_format chaos '\$msec \$request_method \$uri \$status up=\$upstream_addr us=\$upstream_status rt=\$request_time';
  access_log $LOGS/nginx-access.log chaos;
  client_body_temp_path $NGX/body;
  proxy_temp_path $NGX/proxy;
  fastcgi_temp_path $NGX/fastcgi;
  uwsgi_temp_path $NGX/uwsgi;
  scgi_temp_path $NGX/scgi;
  # Bodies and answers stay in memory (the API refuses bodies over 64 KiB anyway).
  client_max_body_size 128k;
  client_body_buffer_size 128k;
  proxy_buffers 32 16k;
  proxy_max_temp_file_size 0;
  include $NGX/upstream.conf;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      error_page 418 = @keyed;
      if (\$http_idempotency_key != "") { return 418; }
      proxy_pass http://api;
      include $NGX/proxy.conf;
      proxy_next_upstream error timeout http_502 http_503;
    }
    location @keyed {
      proxy_pass http://api;
      include $NGX/proxy.conf;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
    }
  }
}
EOF
  cat >"$NGX/proxy.conf" <<'EOF'
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header Host $host;
proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
proxy_connect_timeout 1s;
proxy_send_timeout 4s;
proxy_read_timeout 4s;
proxy_next_upstream_tries 3;
proxy_next_upstream_timeout 4s;
EOF
}
nginx_upstream() {
  local n
  {
    echo "upstream api {"
    for n in "${LIVE[@]}"; do echo "  server 127.0.0.1:${PORT[$n]} max_fails=0;"; done
    echo "  keepalive 16;"
    echo "}"
  } >"$NGX/upstream.conf"
}
# Worker processes of the nginx master, from /proc (no ps needed).
nginx_workers() {
  local f stat fields
  for f in /proc/[0-9]*/stat; do
    read -r stat 2>/dev/null <"$f" || continue
    # Fields after "(comm) ": state, ppid, ...
    read -r -a fields <<<"${stat##*) }"
    [[ "${fields[1]}" == "$NGINX_PID" ]] && echo "${f//[^0-9]/}"
  done
  return 0
}
# Rewrites the upstream, reloads, and waits until the old workers have finished (their
# in-flight requests done), so no request can reach a replica removed from the list.
nginx_reload() {
  local old new w deadline
  nginx_upstream
  "$NGINX" -t -q -p "$NGX" -c "$NGX/nginx.conf" 2>>"$LOGS/nginx-error.log" ||
    die "nginx rejected its configuration (see $LOGS/nginx-error.log)"
  old=$(nginx_workers)
  kill -HUP "$NGINX_PID"
  deadline=$(($(now_ms) + 15000))
  while :; do
    new=$(nginx_workers)
    local left=0
    for w in $old; do grep -qx "$w" <<<"$new" && left=1; done
    if [[ $left -eq 0 && -n "$new" ]]; then break; fi
    [[ $(now_ms) -lt $deadline ]] || die "nginx old workers still running 15 s after reload"
    sleep 0.05
  done
}
nginx_start() {
  nginx_conf
  nginx_upstream
  "$NGINX" -p "$NGX" -c "$NGX/nginx.conf" 2>>"$LOGS/nginx-error.log" &
  NGINX_PID=$!
  local deadline=$(($(now_ms) + 10000))
  until curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$NGINX_PORT/readyz" 2>/dev/null; do
    kill -0 "$NGINX_PID" 2>/dev/null || die "nginx exited (see $LOGS/nginx-error.log)"
    [[ $(now_ms) -lt $deadline ]] || die "nginx not answering within 10 s"
    sleep 0.05
  done
}

# ---------------------------------------------------------------------------------------------
# Cluster operations, the same verbs for both modes (compose versions further down).
API_URL="http://127.0.0.1:$NGINX_PORT"

op_kill_random() {
  local victim=${LIVE[$((RANDOM % ${#LIVE[@]}))]}
  event fault "SIGKILL $victim"
  kill -KILL "${PID[$victim]}"
  wait "${PID[$victim]}" 2>/dev/null || true
  unset "PID[$victim]"
  # For a second nginx still sends to the dead port: connection refused, next replica.
  sleep 1
  live_remove "$victim"
  nginx_reload
  replica_start
  local new=$STARTED
  replica_wait_ready "$new"
  LIVE+=("$new")
  nginx_reload
  event fault "+$new"
}

# One replica at a time: out of nginx first, then SIGTERM (drain, exit 0), then a replacement.
op_roll_all() {
  local name new
  for name in "${LIVE[@]}"; do
    live_remove "$name"
    nginx_reload
    event fault "SIGTERM $name"
    replica_stop "$name"
    replica_start
    new=$STARTED
    replica_wait_ready "$new"
    LIVE+=("$new")
    nginx_reload
  done
}

op_scale() {
  local want=$1 have=${#LIVE[@]} name started=() stopping=()
  event fault "scale $have->$want"
  if ((want > have)); then
    for ((i = have; i < want; i++)); do
      replica_start
      started+=("$STARTED")
    done
    for name in "${started[@]}"; do replica_wait_ready "$name"; done
    LIVE+=("${started[@]}")
    nginx_reload
  else
    stopping=("${LIVE[@]:0:have-want}")
    LIVE=("${LIVE[@]:have-want}")
    nginx_reload
    for name in "${stopping[@]}"; do kill -TERM "${PID[$name]}"; done
    for name in "${stopping[@]}"; do replica_stop_wait "$name"; done
  fi
}
# Waits for a replica already sent SIGTERM; the exit code must be 0 (a drained, clean stop).
replica_stop_wait() {
  local name=$1 pid=${PID[$1]} rc=0
  local deadline=$(($(now_ms) + (DRAIN + 20) * 1000))
  while kill -0 "$pid" 2>/dev/null; do
    if [[ $(now_ms) -gt $deadline ]]; then
      PHASE_PROBLEMS+=("$name did not exit within $((DRAIN + 20)) s of SIGTERM")
      kill -KILL "$pid"
      break
    fi
    sleep 0.05
  done
  wait "$pid" || rc=$?
  [[ $rc -eq 0 ]] || PHASE_PROBLEMS+=("$name exited with code $rc after SIGTERM (see $LOGS/$name.log)")
  unset "PID[$name]"
}

keys_write() {
  # Replace atomically so a starting replica never reads half a file.
  printf '%s\n' "$@" >"$KEYS_FILE.new"
  chmod 600 "$KEYS_FILE.new"
  mv "$KEYS_FILE.new" "$KEYS_FILE"
}

op_redis_crash() {
  kill -KILL "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
}
op_redis_start() { redis_start; }

# ---------------------------------------------------------------------------------------------
# HTTP helpers for the key-rotation check (no jq: the fields are picked with sed).
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
jwt_kid() {
  local h=${1%%.*}
  h=$(tr '_-' '/+' <<<"$h")
  while ((${#h} % 4)); do h="$h="; done
  base64 -d <<<"$h" 2>/dev/null | json_field kid
}
# POST /api/users through nginx; prints the token.
register_user() {
  local name=$1
  curl -fsS --max-time 10 -X POST "$API_URL/api/users" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: chaos-register-$name" \
    -d "{\"user\":{\"username\":\"$name\",\"email\":\"$name@chaos.example\",\"password\":\"pw-$name-secret\"}}" |
    json_field token
}
# POST /api/users/login against one base URL; prints the token.
login_user() {
  local base=$1 name=$2
  curl -fsS --max-time 10 -X POST "$base/api/users/login" \
    -H 'Content-Type: application/json' \
    -d "{\"user\":{\"email\":\"$name@chaos.example\",\"password\":\"pw-$name-secret\"}}" |
    json_field token
}
# Status of GET /api/user with a token against one base URL.
whoami_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Authorization: Token $2" "$1/api/user"
}
replica_urls() {
  local n
  for n in "${LIVE[@]}"; do echo "http://127.0.0.1:${PORT[$n]}"; done
}

# ---------------------------------------------------------------------------------------------
# Load runs: one conduit-load run per phase, through nginx.
load_start() {
  local dir=$1 duration=$2
  mkdir -p "$dir"
  "$BIN/conduit-load" --target "$API_URL" --users "$USERS" --rate "$RATE" \
    --duration "$duration" --write-ratio 0.3 --seed-users 2 --seed-articles 10 --follows 2 \
    --timeout-ms 5000 --attempts 6 --no-tui --json \
    --timeline "$dir/timeline.jsonl" --log-writes "$dir/writes.jsonl" \
    >"$dir/summary.json" 2>"$dir/load.log" &
  LOAD_PID=$!
  # Faults start once the mixed phase runs (seeding is over).
  local deadline=$(($(now_ms) + 60000))
  until grep -q '"phase":"mix"' "$dir/timeline.jsonl" 2>/dev/null; do
    kill -0 "$LOAD_PID" 2>/dev/null || die "conduit-load exited during seeding (see $dir/load.log)"
    [[ $(now_ms) -lt $deadline ]] || die "conduit-load still seeding after 60 s"
    sleep 0.1
  done
}
# What the setup serves at saturation: the same users and mix with the rate uncapped (each
# user sends its next operation when the answer to the last one is in), bounded by
# SAT_SECONDS and by a timeout. Sets SATURATION (operations per second of the mixed phase).
measure_saturation() {
  local dir="$OUT/saturation" rc=0
  mkdir -p "$dir"
  log "measuring saturation: $USERS users, rate uncapped, $SAT_SECONDS s"
  timeout $((SAT_SECONDS + 90)) "$BIN/conduit-load" --target "$API_URL" --users "$USERS" --rate 0 \
    --duration "$SAT_SECONDS" --write-ratio 0.3 --seed-users 2 --seed-articles 10 --follows 2 \
    --timeout-ms 5000 --attempts 6 --no-tui --json --log-writes "$dir/writes.jsonl" \
    >"$dir/summary.json" 2>"$dir/load.log" || rc=$?
  [[ $rc -eq 0 ]] || die "the saturation run failed with code $rc (see $dir/load.log)"
  SATURATION=$(sed -n 's/^  "rps": *\([0-9.]*\).*/\1/p' "$dir/summary.json" | head -1)
  [[ -n "$SATURATION" ]] || die "no rps in the saturation summary ($dir/summary.json)"
  SATURATION=$(printf '%.0f' "$SATURATION")
  ((SATURATION > 0)) || die "the saturation run served nothing (see $dir/load.log)"
  if [[ -z "$RATE" ]]; then
    RATE=$(((SATURATION * RATE_SHARE + 99) / 100))
  elif ((RATE * 2 < SATURATION)); then
    log "WARNING: CHAOS_RATE=$RATE is below half of the saturation throughput ($SATURATION ops/s)"
  fi
  log "saturation: $SATURATION ops/s; every phase runs at $RATE ops/s"
}
# The rate a phase's load run achieved, as a note (marked when below half of saturation; not a
# failure: on a shared machine the achieved rate follows what else runs). In phase 5
# (OUTAGE=1) requests wait or fail while Redis or a primary is down, so its average includes
# the outage.
note_rate() {
  local dir=$1 rps
  rps=$(sed -n 's/^  "rps": *\([0-9.]*\).*/\1/p' "$dir/summary.json" | head -1)
  rps=$(printf '%.0f' "${rps:-0}")
  if [[ $OUTAGE -eq 1 ]]; then
    PHASE_NOTES+=("load: $rps ops/s achieved over the whole phase, outage included (target $RATE ops/s; saturation $SATURATION ops/s)")
    return
  fi
  if ((rps * 2 < SATURATION)); then
    PHASE_NOTES+=("load: $rps ops/s achieved, BELOW half of saturation (target $RATE ops/s; saturation $SATURATION ops/s)")
  else
    PHASE_NOTES+=("load: $rps ops/s achieved (target $RATE ops/s; saturation $SATURATION ops/s)")
  fi
}

# Waits for the load run; records a problem if it ended before the faults were over.
load_finish() {
  local dir=$1 rc=0
  if ! kill -0 "$LOAD_PID" 2>/dev/null; then
    PHASE_PROBLEMS+=("the load run ended before the faults were over (raise the duration)")
  fi
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=""
  # conduit-load exits 1 when a request failed; the verdict below says what failed.
  [[ $rc -le 1 ]] || die "conduit-load failed with code $rc (see $dir/load.log)"
  [[ -s "$dir/summary.json" ]] || die "conduit-load wrote no summary (see $dir/load.log)"
}

dump_redis() {
  if [[ $CLUSTER -eq 1 ]]; then dump_cluster "$1"; return; fi
  rcli --raw EVAL "$(cat "$ROOT/scripts/chaos-dump.lua")" 0 "$PREFIX" >"$1"
}

# verify_phase DIR DUMP ROWS: one verdict row for the phase in DIR against a Redis dump, with
# the arguments the phase saved in DIR/verify.args (NUL-separated).
verify_phase() {
  local dir=$1 dump=$2 rows=$3 args=()
  mapfile -d '' args <"$dir/verify.args"
  "$BIN/chaos-report" verify "${args[@]}" --dump "$dump" >"$dir/verdict.json" 2>>"$dir/verdict.log" || true
  [[ -s "$dir/verdict.json" ]] || die "chaos-report verify failed (see $dir/verdict.log)"
  cat "$dir/verdict.json" >>"$rows"
}

PHASE_DIRS=()
run_phase() {
  local n=$1 name=$2 duration=$3 fn=$4 dir="$OUT/phase$1" p
  PHASE_PROBLEMS=()
  PHASE_NOTES=()
  EXTRA_ARGS=()
  OUTAGE=0
  event phase "$n $name"
  load_start "$dir" "$duration"
  "$fn"
  load_finish "$dir"
  note_rate "$dir"
  [[ "$fn" != phase_redis ]] || explain_redis_failures
  local args=(--phase "$n $name" --summary "$dir/summary.json" --writes "$dir/writes.jsonl"
    --timeline "$dir/timeline.jsonl" "${EXTRA_ARGS[@]}")
  for p in "${PHASE_PROBLEMS[@]}"; do args+=(--problem "$p"); done
  for p in "${PHASE_NOTES[@]}"; do args+=(--note "$p"); done
  printf '%s\0' "${args[@]}" >"$dir/verify.args"
  # Checked at once (what Redis held right after the phase) and again at the end.
  dump_redis "$dir/dump.tsv"
  verify_phase "$dir" "$dir/dump.tsv" "$OUT/rows-after-each-phase.jsonl"
  "$BIN/chaos-report" table "$dir/verdict.json" >&2 || true
  PHASE_DIRS+=("$dir")
}

# A 500 during the Redis restart is the API's fault, not the outage's: name the cause when the
# replica logs show it.
explain_redis_failures() {
  local answered500 loading c
  if [[ $COMPOSE -eq 1 ]]; then
    for c in $(podman ps -a --format '{{.Names}}' --filter "label=io.podman.compose.project=$PROJECT" \
      --filter "label=io.podman.compose.service=api"); do
      podman logs "$c" >"$LOGS/$c.log" 2>&1 || true
    done
  fi
  answered500=$(cat "$LOGS"/*api*.log 2>/dev/null | grep -c 'conduit_api::access: request .*status=500' || true)
  loading=$(cat "$LOGS"/*api*.log 2>/dev/null | grep -c 'BusyLoading' || true)
  if ((answered500 > 0 && loading > 0)); then
    PHASE_PROBLEMS+=("conduit-api answered 500 instead of 503 to $answered500 requests right after the restart, while Redis was loading its append-only file: the redis error BusyLoading ('LOADING Redis is loading the dataset in memory') is not classified as unavailable, and clients do not retry a 500 (replica logs: grep BusyLoading)")
  fi
}

# ---------------------------------------------------------------------------------------------
# The phases.
phase_kill() {
  sleep "$HOLD"
  op_kill_random
  sleep "$HOLD"
}
phase_roll() {
  sleep "$HOLD"
  op_roll_all
  sleep 1
}
phase_scale() {
  sleep "$HOLD"
  op_scale 6
  sleep "$HOLD"
  op_scale 2
  sleep 1
}
phase_keys() {
  local user="chaoskeys$RANDOM$RANDOM" token_before token_after kid url st
  token_before=$(register_user "$user")
  [[ -n "$token_before" ]] || die "could not register $user before the rotation"
  kid=$(jwt_kid "$token_before")
  [[ "$kid" == k1 ]] || PHASE_PROBLEMS+=("the token from before the rotation is signed by '$kid', not k1")
  sleep 1
  event fault "key k2 added second"
  keys_write "$KEY1" "$KEY2"
  op_roll_all
  event fault "key k2 first"
  keys_write "$KEY2" "$KEY1"
  op_roll_all
  # Against every replica directly: the old token works, a fresh login is signed by k2, and
  # that new token works on every replica.
  local good=0 replicas=0 fine other
  while read -r url; do
    replicas=$((replicas + 1))
    fine=1
    st=$(whoami_status "$url" "$token_before")
    if [[ "$st" != 200 ]]; then
      PHASE_PROBLEMS+=("token from before the rotation: GET $url/api/user answered $st")
      fine=0
    fi
    token_after=$(login_user "$url" "$user" || true)
    kid=$(jwt_kid "$token_after")
    if [[ "$kid" != k2 ]]; then
      PHASE_PROBLEMS+=("login at $url after the rotation gave a token signed by '$kid', not k2")
      fine=0
    fi
    while read -r other; do
      st=$(whoami_status "$other" "$token_after")
      if [[ "$st" != 200 ]]; then
        PHASE_PROBLEMS+=("the new token from $url was refused by $other ($st)")
        fine=0
      fi
    done < <(replica_urls)
    good=$((good + fine))
  done < <(replica_urls)
  PHASE_NOTES+=("a k1 token from before the rotation still accepted, and a fresh login signed by k2 and accepted everywhere, on $good of $replicas replicas")
  sleep 1
}
phase_redis() {
  OUTAGE=1
  sleep "$HOLD"
  local down up pong first_ok ready_all
  event fault "$REDIS_STOP_LABEL"
  down=$(now_ms)
  op_redis_crash
  sleep "$REDIS_DOWN"
  event fault "redis start"
  op_redis_start
  until [[ "$(rcli ping 2>/dev/null)" == PONG ]]; do
    [[ $(($(now_ms) - down)) -lt 60000 ]] || die "redis did not come back within 60 s"
    sleep 0.01
  done
  pong=$(now_ms)
  until [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$API_URL/api/tags")" == 200 ]]; do
    [[ $(($(now_ms) - pong)) -lt 30000 ]] || break
    sleep 0.01
  done
  first_ok=$(now_ms)
  event fault "API answers 200"
  # Every replica ready again (informational).
  local url
  while read -r url; do
    until curl -fsS -o /dev/null --max-time 1 "$url/readyz" 2>/dev/null; do
      [[ $(($(now_ms) - pong)) -lt 30000 ]] || break
      sleep 0.02
    done
  done < <(replica_urls)
  ready_all=$(now_ms)
  up=$pong
  RECOVERY_MS=$((first_ok - pong))
  PHASE_NOTES+=("redis answered PING again $((pong - down)) ms after it went down; first 200 from the API $RECOVERY_MS ms after PING OK; every replica ready after $((ready_all - pong)) ms")
  EXTRA_ARGS=(--allow-failures 503 --failures-from "$down" --failures-until "$((first_ok + 2000))"
    --recovery-ms "$RECOVERY_MS" --max-recovery-ms "$MAX_RECOVERY_MS")
  : "$up"
  sleep "$HOLD"
}

# --cluster: SIGKILL one primary under load; its replica must be promoted; the killed node is
# started again from its directory (nodes.conf, append-only file) and rejoins as a replica.
# Failed requests are allowed only from the kill to node timeout + 3 s after it.
phase_primary() {
  OUTAGE=1
  sleep "$HOLD"
  local victims=() victim replica="" killed promoted_at line port master vid
  mapfile -t victims < <(cluster_primaries)
  ((${#victims[@]} == 3)) || die "expected 3 primaries, found ${#victims[@]}"
  victim=${victims[$((RANDOM % 3))]}
  vid=$(ccli "$victim" cluster myid)
  while read -r port _ master; do
    [[ "$master" == "$vid" ]] && replica=$port
  done < <(cluster_nodes)
  [[ -n "$replica" ]] || die "primary :$victim has no replica"
  event fault "primary :$victim killed"
  killed=$(now_ms)
  redis_cluster_node_kill "$victim" KILL || die "primary :$victim still runs after SIGKILL"
  # The replica is promoted once the others agree the primary failed (node timeout) and it
  # wins the election.
  while :; do
    line=$(ccli "$replica" role 2>/dev/null | head -1)
    [[ "$line" == master ]] && cluster_ok_everywhere_but "$victim" && break
    (($(now_ms) - killed < 30000)) || die "replica :$replica not promoted within 30 s of the kill"
    sleep 0.05
  done
  promoted_at=$(now_ms)
  event fault "replica :$replica promoted"
  PHASE_NOTES+=("primary :$victim SIGKILLed; its replica :$replica promoted and the cluster ok again after $((promoted_at - killed)) ms")
  sleep 2
  redis_cluster_node_start "$victim" || die "could not start node :$victim again (see $LOGS/redis-$victim.log)"
  local deadline=$(($(now_ms) + 30000))
  until [[ "$(ccli "$victim" role 2>/dev/null | sed -n '1p;4p' | tr '\n' ' ')" == "slave connected " ]]; do
    [[ $(now_ms) -lt $deadline ]] || die "the restarted node :$victim did not rejoin as a synced replica within 30 s"
    sleep 0.1
  done
  event fault "node :$victim back as replica of :$replica"
  PHASE_NOTES+=("node :$victim restarted; back as a synced replica of :$replica $(($(now_ms) - killed)) ms after the kill")
  EXTRA_ARGS=(--allow-failures "500,502,503,504,connect,timeout,other" --failures-from "$killed"
    --failures-until "$((killed + NODE_TIMEOUT_MS + 3000))")
  sleep "$HOLD"
}
cluster_ok_everywhere_but() {
  local port
  for port in "${CLUSTER_PORTS[@]}"; do
    [[ "$port" == "$1" ]] && continue
    ccli "$port" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || return 1
  done
}

# ---------------------------------------------------------------------------------------------
# --compose: the same verbs against the container stack (compose.yaml with the offline
# override). nginx there re-resolves the `api` service name every second (`resolve` in the
# upstream), so it needs no reload: a new replica joins within a second or two, a stopped one
# leaves when its container stops. Redis and the replicas are reached from the host at their
# container addresses (rootful podman), so the same curl and redis-cli checks work.
if [[ $COMPOSE -eq 1 ]]; then
  PROJECT="conduit-chaos-$$"
  PREFIX=conduit
  REDIS_STOP_LABEL="redis stop (SIGTERM)"
  COMPOSE_CMD=(podman-compose -p "$PROJECT" -f "$ROOT/compose.yaml" -f "$ROOT/deploy/compose.offline.yaml")
  export CONDUIT_HTTP_PORT=$NGINX_PORT OTLP_REPORT_PORT=$((BASE_PORT + 2)) JAEGER_UI_PORT=$((BASE_PORT + 3))
  export CONDUIT_DRAIN_SECONDS=$DRAIN
  # Every virtual user registers from this one address (nginx's view of it).
  export CONDUIT_REGISTRATIONS_PER_ADDRESS=0
  export CONDUIT_KEYS_DIR="$TMP/keys"
  # compose.yaml's Redis takes no connection without credentials: fresh passwords for this
  # run, and redis-cli from the host authenticates as its `default` user.
  export REDIS_ADMIN_PASSWORD CONDUIT_REDIS_PASSWORD
  REDIS_ADMIN_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  CONDUIT_REDIS_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  export REDISCLI_AUTH=$REDIS_ADMIN_PASSWORD
  export CONDUIT_API_IMAGE="${CONDUIT_API_IMAGE:-localhost/conduit-api:0.1.0}"
  KEYS_FILE="$CONDUIT_KEYS_DIR/jwt-keys"

  compose() { "${COMPOSE_CMD[@]}" "$@" >>"$LOGS/compose.log" 2>&1; }
  ctr_ip() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
  api_containers() {
    podman ps --filter "label=io.podman.compose.project=$PROJECT" \
      --filter "label=io.podman.compose.service=api" --format '{{.Names}}' | sort
  }
  redis_container() { printf '%s_redis_1' "$PROJECT"; }
  rcli() { redis-cli -h "$REDIS_IP" -p 6379 "$@"; }
  compose_cleanup() {
    local c
    for c in $(podman ps -a --format '{{.Names}}' --filter "label=io.podman.compose.project=$PROJECT" 2>/dev/null); do
      podman logs "$c" >"$LOGS/$c.log" 2>&1 || true
    done
    compose down -v -t 5 || true
    # podman-compose down can leave scaled replicas behind.
    podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman rm -f -t 0 >/dev/null 2>&1 || true
    podman volume ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman volume rm -f >/dev/null 2>&1 || true
    podman network ls -q --filter "label=io.podman.compose.project=$PROJECT" | xargs -r podman network rm -f >/dev/null 2>&1 || true
    podman pod rm -f "pod_$PROJECT" >/dev/null 2>&1 || true
  }
  # Waits until every api container answers /readyz and nginx has seen all of them.
  compose_wait_ready() {
    local want=$1 c ip deadline=$(($(now_ms) + 60000))
    while :; do
      mapfile -t LIVE < <(api_containers)
      local ready=0
      for c in "${LIVE[@]}"; do
        ip=$(ctr_ip "$c")
        curl -fsS -o /dev/null --max-time 1 "http://$ip:8080/readyz" 2>/dev/null && ready=$((ready + 1))
      done
      ((ready >= want && ${#LIVE[@]} == want)) && break
      if [[ $(now_ms) -ge $deadline ]]; then
        for c in "${LIVE[@]}"; do
          log "$c /readyz: $(curl -s --max-time 2 "http://$(ctr_ip "$c"):8080/readyz" 2>&1 | head -c 200)"
        done
        die "only $ready of $want api containers ready after 60 s (logs in $LOGS)"
      fi
      sleep 0.2
    done
    # nginx re-resolves every second; give it two.
    sleep 2
  }
  replica_urls() {
    local c
    for c in $(api_containers); do echo "http://$(ctr_ip "$c"):8080"; done
  }
  cluster_up_compose() {
    local image
    for image in "$CONDUIT_API_IMAGE" "${NGINX_OFFLINE_IMAGE:-localhost/nginx:offline}" \
      "${REDIS_OFFLINE_IMAGE:-localhost/redis:offline}" "${OTLP_RECEIVER_IMAGE:-localhost/otlp-receiver:0.1.0}"; do
      podman image exists "$image" || die "image $image is missing (run scripts/build-images.sh)"
    done
    mkdir -p "$CONDUIT_KEYS_DIR"
    KEY1="k1:$(head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
    KEY2="k2:$(head -c 48 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '=')"
    keys_write "$KEY1"
    chown -R 65532:65532 "$CONDUIT_KEYS_DIR" 2>/dev/null || chmod -R a+rX "$CONDUIT_KEYS_DIR"
    log "starting compose project $PROJECT (3 replicas, nginx on $API_URL)"
    compose up -d --no-build --scale api=3 || die "podman-compose up failed (see $LOGS/compose.log)"
    REDIS_IP=$(ctr_ip "$(redis_container)")
    redis_wait
    compose_wait_ready 3
    local deadline=$(($(now_ms) + 30000))
    until curl -fsS -o /dev/null --max-time 1 "$API_URL/readyz" 2>/dev/null; do
      [[ $(now_ms) -lt $deadline ]] || die "nginx not answering on $API_URL within 30 s"
      sleep 0.2
    done
    log "cluster up: ${LIVE[*]}"
  }
  keys_write() {
    printf '%s\n' "$@" >"$KEYS_FILE.new"
    chown 65532:65532 "$KEYS_FILE.new" 2>/dev/null || chmod a+r "$KEYS_FILE.new"
    mv "$KEYS_FILE.new" "$KEYS_FILE"
  }
  # The killed container is started again: a new replica process in the same container (a
  # container nginx depends on cannot be removed, so compose cannot replace it by another).
  op_kill_random() {
    mapfile -t LIVE < <(api_containers)
    local victim=${LIVE[$((RANDOM % ${#LIVE[@]}))]}
    event fault "SIGKILL $victim"
    podman kill --signal KILL "$victim" >>"$LOGS/compose.log" 2>&1
    sleep 1
    podman start "$victim" >>"$LOGS/compose.log" 2>&1 || die "podman start $victim failed (see $LOGS/compose.log)"
    compose_wait_ready ${#LIVE[@]}
    event fault "$victim started again"
  }
  # podman stop sends SIGTERM and waits for the exit; nginx keeps the replica while it drains
  # (it still serves) and drops it when its address stops resolving.
  op_roll_all() {
    local c rc
    mapfile -t LIVE < <(api_containers)
    for c in "${LIVE[@]}"; do
      event fault "SIGTERM $c"
      podman stop -t $((DRAIN + 20)) "$c" >>"$LOGS/compose.log" 2>&1 || die "podman stop $c failed (see $LOGS/compose.log)"
      rc=$(podman inspect -f '{{.State.ExitCode}}' "$c")
      [[ "$rc" == 0 ]] || PHASE_PROBLEMS+=("$c exited with code $rc after SIGTERM")
      podman start "$c" >>"$LOGS/compose.log" 2>&1
      compose_wait_ready ${#LIVE[@]}
    done
  }
  op_scale() {
    local want=$1 have c rc
    mapfile -t LIVE < <(api_containers)
    have=${#LIVE[@]}
    event fault "scale $have->$want"
    if ((want > have)); then
      compose up -d --no-build --scale "api=$want" || die "podman-compose up failed (see $LOGS/compose.log)"
    else
      # The newest containers go.
      local stopping=()
      mapfile -t stopping < <(printf '%s\n' "${LIVE[@]}" | sort -t_ -k3,3n | tail -n $((have - want)))
      podman stop -t $((DRAIN + 20)) "${stopping[@]}" >>"$LOGS/compose.log" 2>&1 ||
        die "podman stop ${stopping[*]} failed (see $LOGS/compose.log)"
      for c in "${stopping[@]}"; do
        rc=$(podman inspect -f '{{.State.ExitCode}}' "$c")
        [[ "$rc" == 0 ]] || PHASE_PROBLEMS+=("$c exited with code $rc after SIGTERM")
        podman logs "$c" >"$LOGS/$c.log" 2>&1 || true
      done
      # Stopped, not removed: nginx's container depends on the first three replicas, and
      # podman refuses to remove those while it exists. The clean-up removes them all.
    fi
    compose_wait_ready "$want"
  }
  # The compose Redis syncs its append-only file once a second, and on shutdown: it is stopped
  # (SIGTERM), not crashed, so every acknowledged write must survive.
  op_redis_crash() { podman stop -t 10 "$(redis_container)" >>"$LOGS/compose.log" 2>&1; }
  op_redis_start() {
    podman start "$(redis_container)" >>"$LOGS/compose.log" 2>&1
    REDIS_IP=$(ctr_ip "$(redis_container)")
  }
fi

# ---------------------------------------------------------------------------------------------
# Start, run the phases, judge.
cluster_up_local() {
  KEY1=$("$BIN/conduit-api" keygen --kid k1)
  KEY2=$("$BIN/conduit-api" keygen --kid k2)
  keys_write "$KEY1"
  if [[ $CLUSTER -eq 1 ]]; then
    cluster_start
  else
    redis_start
    redis_wait
  fi
  local started=() name
  for _ in 1 2 3; do
    replica_start
    started+=("$STARTED")
  done
  for name in "${started[@]}"; do replica_wait_ready "$name"; done
  LIVE=("${started[@]}")
  nginx_start
  if [[ $CLUSTER -eq 1 ]]; then
    log "cluster up: redis cluster on :${CLUSTER_PORTS[*]}, nginx $API_URL, replicas ${LIVE[*]}"
  else
    log "cluster up: redis 127.0.0.1:$REDIS_PORT, nginx $API_URL, replicas ${LIVE[*]}"
  fi
}

T_START=$(now_ms)
MODE="local processes, one redis-server"
[[ $CLUSTER -eq 0 ]] || MODE="local processes, Redis Cluster 3+3"
[[ $COMPOSE -eq 0 ]] || MODE=compose
if [[ $COMPOSE -eq 1 ]]; then
  cluster_up_compose
else
  cluster_up_local
fi

measure_saturation
run_phase 1 "kill -9 + replace" "$DUR_KILL" phase_kill
run_phase 2 "rolling restart" "$DUR_ROLL" phase_roll
run_phase 3 "scale 3->6->2" "$DUR_SCALE" phase_scale
run_phase 4 "key rotation" "$DUR_KEYS" phase_keys
if [[ $CLUSTER -eq 1 ]]; then
  run_phase 5 "redis primary SIGKILL" "$DUR_PRIMARY" phase_primary
else
  run_phase 5 "redis restart" "$DUR_REDIS" phase_redis
fi
event end end

# Every phase's writes once more against Redis as it is now (after the Redis restart).
dump_redis "$OUT/dump-final.tsv"
: >"$OUT/rows.jsonl"
for dir in "${PHASE_DIRS[@]}"; do
  verify_phase "$dir" "$OUT/dump-final.tsv" "$OUT/rows.jsonl"
done
verdict=0
HEADER="Load: saturation $SATURATION ops/s ($USERS users, rate uncapped, $SAT_SECONDS s); every phase at $RATE ops/s"
{ echo "$HEADER"; "$BIN/chaos-report" table "$OUT/rows.jsonl"; } >"$OUT/table.txt" || verdict=1
{ echo "$HEADER"; "$BIN/chaos-report" table "$OUT/rows-after-each-phase.jsonl"; } >"$OUT/table-after-each-phase.txt" || verdict=1

timelines=()
for dir in "${PHASE_DIRS[@]}"; do timelines+=(--timeline "$dir/timeline.jsonl"); done
if ! "$BIN/chaos-report" plot "${timelines[@]}" --events "$EVENTS" \
  --svg "$OUT/chaos.svg" --png "$OUT/chaos.png" \
  --title "Responses per second per replica (conduit-load at $RATE ops/s through nginx, $MODE)" \
  2>>"$LOGS/plot.log"; then
  log "could not draw the picture (see $LOGS/plot.log)"
  verdict=1
fi

echo "Chaos run ($MODE$([[ $QUICK -eq 1 ]] && echo ', quick')), $((($(now_ms) - T_START) / 1000)) s; writes checked against Redis after the last phase:"
cat "$OUT/table.txt"
if [[ $verdict -ne 0 ]]; then
  echo "Checked right after each phase:"
  cat "$OUT/table-after-each-phase.txt"
  log "FAILED: see $OUT/table.txt and the phase directories in $OUT"
  exit 1
fi
log "all requirements held; picture: $OUT/chaos.png"
