#!/usr/bin/env bash
# Benchmarks of the Conduit API on one machine, everything on 127.0.0.1.
#
# Starts a throw-away redis-server, API replicas, an nginx in front of two of them and the OTLP
# test receiver; seeds a data set through the API; measures throughput and latency with wrk,
# Redis commands and round trips per request from Redis itself, the growth of list and feed
# cost with the data set, GET /api/user during a login flood, bounded work at scale (SLOWLOG
# around a publish to many followers, a delete of a much-commented article, a follow of a
# prolific author), feed delivery time under read load, the same rows on a local 3-primary Redis
# Cluster with how keys and commands split over the primaries, replica memory, start-up time
# and the raw Redis ceiling. Prints Markdown tables and writes them to docs/BENCHMARKS.md.
# Each target is reported as met or missed; the script never fails because of a number, only
# when it cannot measure.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench.sh [--quick] [--no-write] [--out FILE] [--no-build] [--keep]

Benchmarks the Conduit API on 127.0.0.1 (redis-server, a 3-primary, 3-replica Redis Cluster,
replicas, nginx, OTLP receiver, wrk) and writes the tables to docs/BENCHMARKS.md (also printed
on stdout): single-Redis rows, a login flood, SLOWLOG around writes with much data behind them,
feed delivery time, and cluster rows next to the single-Redis ones.

  --quick      short rows (2 s) and small data sets (at scale: 10 000 followers, 1 000
               comments, 1 000 articles by one author, 50 articles delivered to 2 000
               followers; full mode: 100 000, 10 000, 10 000, 200 to 10 000): a smoke run of
               the whole script
  --no-write   print the tables only, leave docs/BENCHMARKS.md alone
  --out FILE   write the tables to FILE instead of docs/BENCHMARKS.md
  --no-build   use the binaries already built (no cargo build)
  --keep       keep the temporary directory (logs, configs) and print its path
  -h, --help   this text

Environment:
  CARGO_TARGET_DIR   where cargo builds (default: <repo>/target)
  BENCH_DURATION     seconds per measured row (default 10, --quick 2)

Needs: cargo, wrk, redis-server, redis-cli, redis-benchmark, nginx, curl, jq, awk (podman
only to report the image size, if present). scripts/bench/FINDINGS.md, the written analysis,
is appended to the report as it is. Full mode takes about 25 minutes on 2 cores, quick mode
about 5.
EOF
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib/redis-cluster.sh
. "$ROOT/scripts/lib/redis-cluster.sh"
LUA="$ROOT/scripts/bench/wrk.lua"
QUICK=0
WRITE=1
BUILD=1
KEEP=0
OUT="$ROOT/docs/BENCHMARKS.md"

while (($#)); do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-write) WRITE=0 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --out)
      [[ $# -ge 2 ]] || { echo "--out needs a file" >&2; exit 2; }
      OUT="$2"
      shift
      ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

SCRIPT_NAME=bench
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"

need cargo wrk redis-server redis-cli redis-benchmark nginx curl jq awk
# SLOWLOG is read with redis-cli --json (Redis 7).
redis_major="$(redis-cli -v | sed -nE 's/^redis-cli ([0-9]+)\..*/\1/p')"
((${redis_major:-0} >= 7)) || die "redis-cli $(redis-cli -v) is too old: 7 or newer needed (redis-tools from Debian 12 or later)"
[[ -f $LUA ]] || die "missing $LUA"

if ((QUICK)); then
  DUR="${BENCH_DURATION:-2}" WARM=1 CONNS=16
  SMALL=200 LARGE=2000 AUTHORS=50 LOAD_SECS=5 STARTS=3 RB_N=20000 ROUNDS=1 MODE="quick"
else
  DUR="${BENCH_DURATION:-10}" WARM=2 CONNS=32
  SMALL=1000 LARGE=100000 AUTHORS=500 LOAD_SECS=60 STARTS=10 RB_N=200000 ROUNDS=2 MODE="full"
fi
COUNT_REQS=5 # requests per endpoint when counting Redis commands

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"
RUN_START=$SECONDS
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M UTC')"

if ((BUILD)); then
  log "building release binaries (target dir $TARGET_DIR)"
  (cd "$ROOT" && cargo build --release --quiet -p conduit-api -p otlp-receiver -p conduit-load -p chaos-report)
fi
for b in conduit-api otlp-receiver conduit-load chaos-report; do
  [[ -x $BIN/$b ]] || die "$BIN/$b missing (build it or drop --no-build)"
done

WORK="$(mktemp -d -t conduit-bench.XXXXXX)"
chmod 755 "$WORK"
declare -a PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  redis_cluster_stop
  if ((KEEP)); then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A sleep without a fork: read with a timeout from a FIFO nobody writes to.
mkfifo "$WORK/nap"
exec {NAP_FD}<>"$WORK/nap"
nap() { read -r -t "$1" -u "$NAP_FD" _ || true; }

# HTTP/1.0 GET without a fork; succeeds on a 200.
probe() {
  local port=$1 path=$2 line="" fd
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&"$fd"
  IFS= read -r -t 2 line <&"$fd" || true
  exec {fd}>&-
  [[ $line == HTTP/1.?" 200"* ]]
}

wait_ready() {
  local port=$1 path=${2:-/readyz} i
  for ((i = 0; i < 1000; i++)); do
    if probe "$port" "$path" 2>/dev/null; then return 0; fi
    nap 0.02
  done
  die "nothing ready on 127.0.0.1:$port$path after 20 s"
}

# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------
free_port REDIS_PORT
log "redis-server on 127.0.0.1:$REDIS_PORT"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
  --dir "$WORK" --logfile "$WORK/redis.log" --daemonize no &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
REDIS_PIDS=("$REDIS_PID") # the Redis CPU column of measure: this one, or the cluster's nodes
rcli() { redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
for ((i = 0; i < 100; i++)); do
  [[ "$(rcli ping 2>/dev/null)" == PONG ]] && break
  nap 0.05
done
[[ "$(rcli ping 2>/dev/null)" == PONG ]] || die "redis-server did not start (see $WORK/redis.log)"

"$BIN/conduit-api" keygen --kid bench --out "$WORK/jwt-keys" >/dev/null

declare -A PID_OF=() PORT_OF=()
# start_replica NAME WORKERS [VAR=VALUE...]: a replica on a free port, tracing off unless the
# extra variables turn it on. Logs (the default filter: one access line per request) go to a file.
# Every replica's environment is set here (registrations from one address unlimited: the bench
# registers all its accounts from 127.0.0.1).
start_replica() {
  local name=$1 workers=$2 port
  shift 2
  free_port port
  env -u RUST_LOG -u RUST_BACKTRACE -u RUST_LIB_BACKTRACE -u OTEL_EXPORTER_OTLP_ENDPOINT \
    -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -u OTEL_TRACES_SAMPLER -u OTEL_TRACES_SAMPLER_ARG \
    -u OTEL_RESOURCE_ATTRIBUTES \
    CONDUIT_ADDR="127.0.0.1:$port" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
    CONDUIT_JWT_KEYS_FILE="$WORK/jwt-keys" CONDUIT_REPLICA_ID="$name" \
    CONDUIT_WORKERS="$workers" CONDUIT_DRAIN_SECONDS=0 OTEL_SDK_DISABLED=true \
    CONDUIT_REGISTRATIONS_PER_ADDRESS=0 CONDUIT_IDEMPOTENCY_RECORDS_PER_USER=0 \
    "$@" "$BIN/conduit-api" >>"$WORK/$name.log" 2>&1 &
  PID_OF[$name]=$!
  PORT_OF[$name]=$port
  PIDS+=("$!")
}

stop_pid() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
# Sum of user+system CPU ticks of the given pids (threads included).
cpu_ticks() {
  local pid total=0 t
  for pid in "$@"; do
    t="$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)"
    total=$((total + t))
  done
  echo "$total"
}
rss_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

declare -A RPS=() P50=() P99=() ERRS=() REQS=() CPU_APP=() CPU_REDIS=() CPU_NGINX=() RSS_AFTER=()
APP_PIDS=()
NGINX_PIDS=()

# measure KEY URL [VAR=VALUE...]: a warm-up, then one wrk row of $DUR seconds. CPU is
# accounted to APP_PIDS (replicas), REDIS_PIDS and NGINX_PIDS.
measure() {
  local key=$1 url=$2 out line a0 r0 n0 a1 r1 n1
  shift 2
  log "row $key: $url (${DUR}s)"
  # BENCH_RUN differs between warm-up and row, so idempotency keys are never replayed.
  env "$@" BENCH_RUN="w$key" wrk -t1 -c"$CONNS" -d"${WARM}s" --timeout 5s -s "$LUA" "$url" >/dev/null
  a0="$(cpu_ticks "${APP_PIDS[@]}")"
  r0="$(cpu_ticks "${REDIS_PIDS[@]}")"
  n0="$(cpu_ticks "${NGINX_PIDS[@]}")"
  out="$(env "$@" BENCH_RUN="m$key" wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 5s -s "$LUA" "$url")"
  a1="$(cpu_ticks "${APP_PIDS[@]}")"
  r1="$(cpu_ticks "${REDIS_PIDS[@]}")"
  n1="$(cpu_ticks "${NGINX_PIDS[@]}")"
  line="$(grep '^BENCH_RESULT' <<<"$out")" || die "no result from wrk for $key: $out"
  local -A f=()
  local kv
  for kv in ${line#BENCH_RESULT }; do f[${kv%%=*}]=${kv#*=}; done
  REQS[$key]=${f[requests]}
  RPS[$key]=${f[rps]}
  P50[$key]="$(awk -v u="${f[p50_us]}" 'BEGIN { printf "%.2f", u / 1000 }')"
  P99[$key]="$(awk -v u="${f[p99_us]}" 'BEGIN { printf "%.2f", u / 1000 }')"
  ERRS[$key]=$((f[status_errors] + f[socket_errors]))
  local per_req='function per(t, n) { return n > 0 ? sprintf("%.0f", t * 1e6 / tck / n) : "-" }'
  CPU_APP[$key]="$(awk -v t=$((a1 - a0)) -v n="${f[requests]}" -v tck="$CLK_TCK" "$per_req BEGIN { print per(t, n) }")"
  CPU_REDIS[$key]="$(awk -v t=$((r1 - r0)) -v n="${f[requests]}" -v tck="$CLK_TCK" "$per_req BEGIN { print per(t, n) }")"
  CPU_NGINX[$key]="$(awk -v t=$((n1 - n0)) -v n="${f[requests]}" -v tck="$CLK_TCK" "$per_req BEGIN { print per(t, n) }")"
  RSS_AFTER[$key]="$(mib "$(rss_kib VmRSS "${APP_PIDS[0]}")")"
  if ((ERRS[$key] > 0)); then
    log "row $key: ${ERRS[$key]} failed requests (non-2xx or socket errors)"
  fi
  log "row $key: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, RSS ${RSS_AFTER[$key]} MiB"
}

# keep_best KEY: copies the round KEY#r with the highest throughput to KEY; ROUNDS alternate
# between the setups compared, and noise from other processes only ever slows a round down.
keep_best() {
  local key=$1 r best=""
  for ((r = 1; r <= ROUNDS; r++)); do
    if [[ -z $best ]] || awk -v a="${RPS[$key#$r]}" -v b="${RPS[$best]}" 'BEGIN { exit !(a > b) }'; then
      best="$key#$r"
    fi
  done
  RPS[$key]=${RPS[$best]} P50[$key]=${P50[$best]} P99[$key]=${P99[$best]} ERRS[$key]=${ERRS[$best]}
  REQS[$key]=${REQS[$best]} CPU_APP[$key]=${CPU_APP[$best]} CPU_REDIS[$key]=${CPU_REDIS[$best]}
  CPU_NGINX[$key]=${CPU_NGINX[$best]} RSS_AFTER[$key]=${RSS_AFTER[$best]}
  ALL_ROUNDS[$key]="$(for ((r = 1; r <= ROUNDS; r++)); do fmt_rps "${RPS[$key#$r]}"; echo; done | paste -sd/)"
}
declare -A ALL_ROUNDS=()

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
# verdict VALUE OP LIMIT -> "met" or "**missed**"
verdict() {
  if awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN { exit !((op == ">=") ? v >= l : v <= l) }'; then
    echo "met"
  else
    echo "**missed**"
  fi
}
fmt_rps() { awk -v r="$1" 'BEGIN { printf "%.0f", r }'; }
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "-" }'; }
# in_range VALUE LOW HIGH -> "met" or "**missed**"
in_range() {
  if awk -v v="$1" -v l="$2" -v h="$3" 'BEGIN { exit !(v >= l && v <= h) }'; then echo "met"; else echo "**missed**"; fi
}

# ---------------------------------------------------------------------------------------------
# Replicas and nginx
# ---------------------------------------------------------------------------------------------
start_replica direct 2
start_replica lb-1 1 CONDUIT_TRUST_FORWARDED=true
start_replica lb-2 1 CONDUIT_TRUST_FORWARDED=true
for r in direct lb-1 lb-2; do wait_ready "${PORT_OF[$r]}"; done
API="http://127.0.0.1:${PORT_OF[direct]}"

free_port NGINX_PORT
mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
chmod -R 755 "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
# Written by scripts/bench.sh: one nginx worker in front of two replicas, keepalive upstream.
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  upstream conduit {
    server 127.0.0.1:${PORT_OF[lb-1]};
    server 127.0.0.1:${PORT_OF[lb-2]};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://conduit;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    }
  }
}
EOF
nginx -e "$WORK/nginx/logs/error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
  -g 'daemon off;' &
NGINX_MASTER=$!
PIDS+=("$NGINX_MASTER")
wait_ready "$NGINX_PORT" /readyz
read -r -a nginx_workers <"/proc/$NGINX_MASTER/task/$NGINX_MASTER/children" || true
NGINX_PIDS=("$NGINX_MASTER" "${nginx_workers[@]}")
LB="http://127.0.0.1:$NGINX_PORT"

# ---------------------------------------------------------------------------------------------
# Seeding through the API
# ---------------------------------------------------------------------------------------------
PASSWORD="bench-password-1"
register() {
  curl -sf -X POST -H 'Content-Type: application/json' \
    -d "{\"user\":{\"username\":\"$1\",\"email\":\"$1@bench.example\",\"password\":\"$PASSWORD\"}}" \
    "$API/api/users" | jq -r .user.token || true # the caller checks for a token
}

# Batches of background jobs; waited for by pid (a bare `wait` would wait for the servers too).
declare -a batch=()
wait_batch() {
  local pid
  for pid in "${batch[@]}"; do wait "$pid" || true; done
  batch=()
}
# kcli: redis-cli on the Redis the API under test uses (-c follows a cluster's redirections).
KCLI_PORT=$REDIS_PORT
kcli() { redis-cli -c -h 127.0.0.1 -p "$KCLI_PORT" "$@"; }
# user_id USERNAME: the user's id, from the username claim.
user_id() { kcli HGET "conduit:{name:$1}:claim" owner; }

follow() { # TOKEN USERNAME
  curl -sf -o /dev/null -X POST -H "Authorization: Token $1" "$API/api/profiles/$2/follow"
}

# seed_users: through $API, a reader and $AUTHORS authors (tokens in $WORK/tokens, one a line),
# the reader following every author; sets READER_TOKEN and register_secs.
seed_users() {
  local seed_start=$SECONDS i tok following
  log "registering 1 reader and $AUTHORS authors"
  rm -rf "$WORK/tok"
  mkdir -p "$WORK/tok"
  READER_TOKEN="$(register reader)"
  [[ -n $READER_TOKEN && $READER_TOKEN != null ]] || die "registration failed (see the replica's log in $WORK)"
  for ((i = 1; i <= AUTHORS; i++)); do
    register "author$i" >"$WORK/tok/$i" &
    batch+=("$!")
    if ((${#batch[@]} == 8)); then wait_batch; fi
  done
  wait_batch
  : >"$WORK/tokens"
  for ((i = 1; i <= AUTHORS; i++)); do
    tok="$(<"$WORK/tok/$i")"
    [[ -n $tok && $tok != null ]] || die "registering author$i failed"
    echo "$tok" >>"$WORK/tokens"
  done
  register_secs=$((SECONDS - seed_start))

  log "reader follows $AUTHORS authors"
  for ((i = 1; i <= AUTHORS; i++)); do
    follow "$READER_TOKEN" "author$i" &
    batch+=("$!")
    if ((${#batch[@]} == 16)); then wait_batch; fi
  done
  wait_batch
  following="$(kcli SCARD "conduit:{u:$(user_id reader)}:following")"
  ((following == AUTHORS)) || die "reader follows $following authors, expected $AUTHORS"
}
seed_users

# Articles stored, as the API counts them (the global index is spread over buckets).
article_count() { curl -sf "$API/api/articles?limit=0" | jq -r .articlesCount; }

# seed_articles TARGET RUN_ID [TOKENS_FILE]: new articles spread over the authors (wrk, seed mode,
# the tokens of $WORK/tokens unless given) until Redis holds TARGET articles. wrk always runs for its whole -d, so it is stopped (SIGINT) once Redis
# holds the target or stops growing.
seed_articles() {
  local target=$1 run=$2 tokens=${3:-$WORK/tokens} t0=$SECONDS have attempt wrk_pid last stalled
  for ((attempt = 1; attempt <= 5; attempt++)); do
    have="$(article_count)"
    ((have < target)) || break
    env BENCH_MODE=seed BENCH_TOTAL=$((target - have)) BENCH_THREADS=2 \
      BENCH_RUN="$run$attempt" BENCH_TOKENS_FILE="$tokens" \
      wrk -t2 -c32 -d600s --timeout 10s -s "$LUA" "$API/api/articles" >"$WORK/seed.out" &
    wrk_pid=$!
    PIDS+=("$wrk_pid")
    last=-1 stalled=0
    while kill -0 "$wrk_pid" 2>/dev/null; do
      nap 0.5
      have="$(article_count)"
      ((have < target)) || break
      if ((have == last)); then stalled=$((stalled + 1)); else stalled=0; fi
      ((stalled < 10)) || break
      last=$have
    done
    kill -INT "$wrk_pid" 2>/dev/null || true
    wait "$wrk_pid" 2>/dev/null || true
    grep -q 'failed=0' "$WORK/seed.out" ||
      log "seeding reported failures: $(grep BENCH_RESULT "$WORK/seed.out" || true)"
  done
  log "Redis holds $(article_count) articles after $((SECONDS - t0)) s of seeding"
}

log "seeding $SMALL articles"
t0=$SECONDS
seed_articles "$SMALL" s1
small_seed_secs=$((SECONDS - t0))
n_small="$(article_count)"
((n_small == SMALL)) || die "expected $SMALL articles, Redis has $n_small"

APP_PIDS=("${PID_OF[direct]}")
RSS_AFTER_SEED="$(mib "$(rss_kib VmRSS "${PID_OF[direct]}")")"
NGINX_PIDS_SAVED=("${NGINX_PIDS[@]}")
NGINX_PIDS=()
get_env=(BENCH_MODE=get "BENCH_TOKEN=$READER_TOKEN")

for ((r = 1; r <= ROUNDS; r++)); do
  measure "growth-list-small#$r" "$API/api/articles?limit=20" "${get_env[@]}"
  measure "growth-feed-small#$r" "$API/api/articles/feed" "${get_env[@]}"
done
keep_best growth-list-small
keep_best growth-feed-small
feed_small="$(curl -sf -H "Authorization: Token $READER_TOKEN" "$API/api/articles/feed?limit=1" | jq .articlesCount)"

log "seeding up to $LARGE articles"
t0=$SECONDS
seed_articles "$LARGE" s2
large_seed_secs=$((SECONDS - t0))
n_large="$(article_count)"
((n_large == LARGE)) || die "expected $LARGE articles, Redis has $n_large"
feed_large="$(curl -sf -H "Authorization: Token $READER_TOKEN" "$API/api/articles/feed?limit=1" | jq .articlesCount)"
redis_mem_large="$(rcli INFO memory | awk -F: '/^used_memory_human/ { gsub(/\r/, ""); print $2 }')"

for ((r = 1; r <= ROUNDS; r++)); do
  measure "growth-list-large#$r" "$API/api/articles?limit=20" "${get_env[@]}"
  measure "growth-feed-large#$r" "$API/api/articles/feed" "${get_env[@]}"
done
keep_best growth-list-large
keep_best growth-feed-large

SLUG="$(curl -sf -H "Authorization: Token $READER_TOKEN" "$API/api/articles?limit=1&offset=$((LARGE / 2))" | jq -r '.articles[0].slug')"
[[ -n $SLUG && $SLUG != null ]] || die "no article slug found"

# ---------------------------------------------------------------------------------------------
# Rows on the large data set
# ---------------------------------------------------------------------------------------------
for ((r = 1; r <= ROUNDS; r++)); do
  measure "healthz#$r" "$API/healthz" BENCH_MODE=get
  measure "user#$r" "$API/api/user" "${get_env[@]}"
done
keep_best healthz
keep_best user

# ---------------------------------------------------------------------------------------------
# GET /api/user during a login flood
# ---------------------------------------------------------------------------------------------
# A replica of its own (2 workers) whose failed-login limits are out of reach, so every login of
# the flood is checked against the account's argon2 hash: the worst case, a flood from more
# addresses than the limits cover. GET /api/user alone on it, then with wrk sending logins with
# wrong passwords for the authors' accounts to the same replica.
start_replica flood 2 CONDUIT_LOGIN_MAX_FAILURES=1000000000 \
  CONDUIT_LOGIN_MAX_FAILURES_PER_ADDRESS=1000000000 CONDUIT_LOGIN_MAX_FAILURES_PER_ACCOUNT=1000000000
wait_ready "${PORT_OF[flood]}"
FLOOD_API="http://127.0.0.1:${PORT_OF[flood]}"
FLOOD_CONNS=16
declare -A FLOOD=()
APP_PIDS=("${PID_OF[flood]}")
for ((r = 1; r <= ROUNDS; r++)); do
  measure "flood-alone#$r" "$FLOOD_API/api/user" "${get_env[@]}"
  env BENCH_MODE=login BENCH_ACCOUNTS="$AUTHORS" BENCH_RUN="flood$r" \
    wrk -t1 -c"$FLOOD_CONNS" -d"$((WARM + DUR + 3))s" --timeout 10s -s "$LUA" \
    "$FLOOD_API/api/users/login" >"$WORK/flood-$r.out" &
  flood_pid=$!
  PIDS+=("$flood_pid")
  nap 1 # the flood is under way before the warm-up starts
  measure "flood-under#$r" "$FLOOD_API/api/user" "${get_env[@]}"
  wait "$flood_pid" || true
  line="$(grep '^BENCH_RESULT' "$WORK/flood-$r.out")" || die "no result from the login flood: $(cat "$WORK/flood-$r.out")"
  for kv in ${line#BENCH_RESULT }; do FLOOD[${kv%%=*}#$r]=${kv#*=}; done
done
keep_best flood-alone
keep_best flood-under
stop_pid "${PID_OF[flood]}"
APP_PIDS=("${PID_OF[direct]}")

declare -a EP_KEYS=(list feed article comment)
declare -A EP_NAME=(
  [list]='GET /api/articles?limit=20'
  [feed]='GET /api/articles/feed'
  [article]='GET /api/articles/:slug'
  [comment]='POST /api/articles/:slug/comments'
)
declare -A EP_PATH=(
  [list]='/api/articles?limit=20'
  [feed]='/api/articles/feed'
  [article]="/api/articles/$SLUG"
  [comment]="/api/articles/$SLUG/comments"
)
ep_env() {
  if [[ $1 == comment ]]; then
    echo BENCH_MODE=comment "BENCH_TOKEN=$READER_TOKEN" "BENCH_SLUG=$SLUG" BENCH_IDEMPOTENCY=1
  else
    echo BENCH_MODE=get "BENCH_TOKEN=$READER_TOKEN"
  fi
}
for ep in "${EP_KEYS[@]}"; do
  read -r -a envs <<<"$(ep_env "$ep")"
  for ((r = 1; r <= ROUNDS; r++)); do
    APP_PIDS=("${PID_OF[direct]}")
    NGINX_PIDS=()
    measure "$ep-direct#$r" "$API${EP_PATH[$ep]}" "${envs[@]}"
    APP_PIDS=("${PID_OF[lb-1]}" "${PID_OF[lb-2]}")
    NGINX_PIDS=("${NGINX_PIDS_SAVED[@]}")
    measure "$ep-nginx#$r" "$LB${EP_PATH[$ep]}" "${envs[@]}"
  done
  keep_best "$ep-direct"
  keep_best "$ep-nginx"
done
NGINX_PIDS=()

# The other two page requests the page-cost targets cover, on the direct replica: the list
# without a token, and filtered by a tag (with the reader's token).
declare -a PAGE_EXTRA=(list-anon list-tag)
EP_PATH[list-anon]='/api/articles?limit=20'
EP_PATH[list-tag]='/api/articles?tag=redis&limit=20'
APP_PIDS=("${PID_OF[direct]}")
for pk in "${PAGE_EXTRA[@]}"; do
  envs=(BENCH_MODE=get)
  [[ $pk == list-tag ]] && envs+=("BENCH_TOKEN=$READER_TOKEN")
  for ((r = 1; r <= ROUNDS; r++)); do
    measure "$pk-direct#$r" "$API${EP_PATH[$pk]}" "${envs[@]}"
  done
  keep_best "$pk-direct"
done

# Requests per replica behind nginx, from the access logs, to show both replicas served.
lb1_lines="$(grep -c 'conduit_api::access' "$WORK/lb-1.log" || true)"
lb2_lines="$(grep -c 'conduit_api::access' "$WORK/lb-2.log" || true)"

# ---------------------------------------------------------------------------------------------
# Tracing on and off
# ---------------------------------------------------------------------------------------------
free_port OTLP_GRPC
free_port OTLP_HTTP
"$BIN/otlp-receiver" --grpc-addr "127.0.0.1:$OTLP_GRPC" --http-addr "127.0.0.1:$OTLP_HTTP" \
  --max-spans 100000 >>"$WORK/otlp-receiver.log" 2>&1 &
OTLP_PID=$!
PIDS+=("$OTLP_PID")
wait_ready "$OTLP_HTTP" /healthz
# Two traced replicas: every request sampled, and the production setting (10 %, the caller's
# decision kept when there is one).
start_replica traced 2 OTEL_SDK_DISABLED=false \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_GRPC" OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
  OTEL_TRACES_SAMPLER=always_on
start_replica sampled 2 OTEL_SDK_DISABLED=false \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$OTLP_GRPC" OTEL_EXPORTER_OTLP_PROTOCOL=grpc \
  OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1
wait_ready "${PORT_OF[traced]}"
wait_ready "${PORT_OF[sampled]}"

declare -a TRACE_KEYS=(list user)
declare -A TRACE_PATH=([list]='/api/articles?limit=20' [user]='/api/user')
# Tracing settings: the replica each is measured on, and its name in the table.
declare -a TRACE_MODES=(off ratio on)
declare -A TRACE_REPLICA=([off]=direct [ratio]=sampled [on]=traced)
declare -A TRACE_LABEL=([off]=off [ratio]="10 % (parentbased_traceidratio 0.1)" [on]="100 % (always_on)")
declare -A SPANS_PER_REQ=()
for tk in "${TRACE_KEYS[@]}"; do
  for ((r = 1; r <= ROUNDS; r++)); do
    for mode in "${TRACE_MODES[@]}"; do
      replica="${TRACE_REPLICA[$mode]}"
      APP_PIDS=("${PID_OF[$replica]}")
      NGINX_PIDS=("$OTLP_PID") # the receiver's CPU, in the third column
      curl -sf -X POST "http://127.0.0.1:$OTLP_HTTP/reset" >/dev/null
      measure "trace-$mode-$tk#$r" "http://127.0.0.1:${PORT_OF[$replica]}${TRACE_PATH[$tk]}" "${get_env[@]}"
      if [[ $mode == off ]]; then
        SPANS_PER_REQ[$mode-$tk#$r]=0
        continue
      fi
      nap 6 # the batch exporter sends every 5 s
      report="$(curl -sf "http://127.0.0.1:$OTLP_HTTP/report?spans=false")"
      spans="$(jq '.total_spans + .dropped_spans' <<<"$report")"
      # The warm-up requests are exported too.
      SPANS_PER_REQ[$mode-$tk#$r]="$(awk -v s="$spans" -v n="${REQS[trace-$mode-$tk#$r]}" -v d="$DUR" -v w="$WARM" \
        'BEGIN { printf "%.2f", s / (n * (d + w) / d) }')"
    done
  done
  NGINX_PIDS=()
  for mode in "${TRACE_MODES[@]}"; do
    SPANS_PER_REQ[$mode-$tk]=${SPANS_PER_REQ[$mode-$tk#1]}
    keep_best "trace-$mode-$tk"
  done
done

# ---------------------------------------------------------------------------------------------
# Redis commands and round trips per request
# ---------------------------------------------------------------------------------------------
# One INFO call on each node of SNAP_PORTS (the single Redis, or the cluster's primaries); prints
# "name value" for every command's calls, total_commands_processed and total_reads_processed (one
# read event per round trip of a client), summed over the nodes, and each node's reads and
# commands as @reads:<port> and @commands:<port>. @bg and @bg:<port> count the commands no request
# sends, each a read event of its own: the replicas' fan-out workers polling the job stream
# (XREADGROUP, XAUTOCLAIM every 50 ms when idle), Redis replicas acknowledging replication
# (REPLCONF) and the cluster client's slot map refreshes (CLUSTER ...); @fg and @fg:<port> are
# the reads without them: the round trips of requests (and of the INFO calls, calibrated away).
SNAP_PORTS=("$REDIS_PORT")
BG_COMMANDS='xreadgroup|xautoclaim|replconf|cluster' # lower case, as INFO and MONITOR name them
redis_snapshot() {
  local p
  for p in "${SNAP_PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" INFO all
  done | tr -d '\r' | awk -F'[:,=]' -v bg="^($BG_COMMANDS)" '
    /^tcp_port:/ { port = $2 }
    /^cmdstat_/ { sub(/^cmdstat_/, "", $1); s[$1] += $3
      if ($1 ~ bg) { s["@bg"] += $3; s["@bg:" port] += $3 } }
    /^total_commands_processed:/ { s["@commands"] += $2; s["@commands:" port] = $2 }
    /^total_reads_processed:/ { s["@reads"] += $2; s["@reads:" port] = $2; ports[port] = 1 }
    END {
      s["@fg"] = s["@reads"] - s["@bg"]
      for (p in ports) s["@fg:" p] = s["@reads:" p] - s["@bg:" p]
      for (k in s) print k, s[k]
    }'
}
# snapshot_delta BEFORE AFTER -> "name delta" for every changed counter
snapshot_delta() {
  awk 'NR == FNR { b[$1] = $2; next } { d = $2 - b[$1]; if (d != 0) print $1, d }' "$1" "$2"
}

redis_request() { # key -> one request to the direct replica, prints the status
  local auth=(-H "Authorization: Token $READER_TOKEN")
  case "$1" in
    healthz) curl -s -o /dev/null -w '%{http_code}' "$API/healthz" ;;
    readyz) curl -s -o /dev/null -w '%{http_code}' "$API/readyz" ;;
    user) curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$API/api/user" ;;
    list) curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$API/api/articles?limit=20" ;;
    list-anon) curl -s -o /dev/null -w '%{http_code}' "$API/api/articles?limit=20" ;;
    list-tag) curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$API/api/articles?tag=redis&limit=20" ;;
    feed) curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$API/api/articles/feed" ;;
    article) curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$API/api/articles/$SLUG" ;;
    comment | comment-idem)
      local idem=()
      [[ $1 == comment-idem ]] && idem=(-H "Idempotency-Key: count-$RANDOM-$RANDOM-$RANDOM")
      curl -s -o /dev/null -w '%{http_code}' -X POST "${auth[@]}" "${idem[@]}" \
        -H 'Content-Type: application/json' -d '{"comment":{"body":"counted"}}' \
        "$API/api/articles/$SLUG/comments"
      ;;
    tags) curl -s -o /dev/null -w '%{http_code}' "$API/api/tags" ;;
    profile) curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "$API/api/profiles/author1" ;;
  esac
}

declare -a COUNT_KEYS=(healthz readyz user list list-anon list-tag feed article comment comment-idem tags profile)
declare -A COUNT_NAME=(
  [healthz]='GET /healthz' [readyz]='GET /readyz' [user]='GET /api/user'
  [list]='GET /api/articles?limit=20' [list-anon]='GET /api/articles?limit=20 (no token)'
  [list-tag]='GET /api/articles?tag=redis&limit=20'
  [feed]='GET /api/articles/feed' [article]='GET /api/articles/:slug'
  [comment]='POST /api/articles/:slug/comments'
  [comment-idem]='POST /api/articles/:slug/comments + Idempotency-Key'
  [tags]='GET /api/tags' [profile]='GET /api/profiles/:username'
)
# Round-trip limits from docs/DATA_MODEL.md (the ones stated there).
declare -A RT_LIMIT=([user]=1 [list]=3 [list-anon]=3)
declare -A RT=() CMDS=() OWN_CMDS=() CLIENT_CMDS=() LUA_CMDS=() CMD_MIX=()
# per NAME: per-request delta of a counter in $WORK/d, without the cost of the INFO call itself.
per() {
  awk -v k="$1" -v n="$COUNT_REQS" 'NR == FNR { if ($1 == k) c = $2; next }
    $1 == k { d = $2 } END { printf "%.1f", (d - c) / n }' "$WORK/cal" "$WORK/d"
}

# calibrate: the cost of the snapshots themselves, taken off every count
calibrate() {
  redis_snapshot >"$WORK/s0"
  redis_snapshot >"$WORK/s1"
  snapshot_delta "$WORK/s0" "$WORK/s1" >"$WORK/cal"
}
# count KEY REQUEST: $COUNT_REQS requests of kind REQUEST (see redis_request); sets RT, CMDS,
# CMD_MIX and RT_MAX (the round trips of the node that got the most) under KEY.
declare -A RT_MAX=()
count() {
  local key=$1 req=$2 i st
  redis_request "$req" >/dev/null # warm: scripts loaded, connection open
  redis_snapshot >"$WORK/s0"
  for ((i = 0; i < COUNT_REQS; i++)); do
    st="$(redis_request "$req")"
    [[ $st == 2* ]] || die "counting $req: status $st"
  done
  redis_snapshot >"$WORK/s1"
  snapshot_delta "$WORK/s0" "$WORK/s1" >"$WORK/d"
  RT[$key]="$(per @fg)"
  CMDS[$key]="$(per @commands)"
  # The request's own commands: all of them but the background ones (see redis_snapshot).
  OWN_CMDS[$key]="$(awk -v a="${CMDS[$key]}" -v b="$(per @bg)" 'BEGIN { printf "%.1f", a - b }')"
  RT_MAX[$key]="$(awk -v n="$COUNT_REQS" 'NR == FNR { c[$1] = $2; next }
    $1 ~ /^@fg:/ { v = ($2 - c[$1]) / n; if (v > m) m = v } END { printf "%.1f", m }' "$WORK/cal" "$WORK/d")"
  CMD_MIX[$key]="$(awk -v n="$COUNT_REQS" 'NR == FNR { c[$1] = $2; next }
    $1 !~ /^@/ { v = ($2 - c[$1]) / n; if (v > 0) { printf "%s%s %g", sep, toupper($1), v; sep = ", " } }' \
    "$WORK/cal" "$WORK/d")"
}

log "counting Redis commands per request ($COUNT_REQS requests each)"
calibrate
for ck in "${COUNT_KEYS[@]}"; do
  count "$ck" "$ck"
  # MONITOR one request: client commands vs commands run inside Lua scripts.
  rcli MONITOR >"$WORK/monitor-$ck" 2>/dev/null &
  mon=$!
  nap 0.3
  redis_request "$ck" >/dev/null
  nap 0.3
  kill "$mon" 2>/dev/null || true
  wait "$mon" 2>/dev/null || true
  # Without the background commands (and the snapshots' INFO and MONITOR itself).
  grep -viE "^[0-9.]* \\[[^]]*\\] \"($BG_COMMANDS|info|monitor)\"" \
    "$WORK/monitor-$ck" >"$WORK/monitor-$ck.own" || true
  LUA_CMDS[$ck]="$(grep -c '^[0-9.]* \[[0-9]* lua\]' "$WORK/monitor-$ck.own" || true)"
  CLIENT_CMDS[$ck]="$(grep -c '^[0-9.]* \[[0-9]* 127\.' "$WORK/monitor-$ck.own" || true)"
done

# ---------------------------------------------------------------------------------------------
# Bounded work at scale: SLOWLOG
# ---------------------------------------------------------------------------------------------
# Three writes whose cost could grow with the data behind them, each on the direct replica with
# Redis logging every command slower than 1 ms (slowlog-log-slower-than 1000, SLOWLOG RESET just
# before the write): publishing by an author with FOLLOWERS followers (fan-out included, until
# the job stream is empty), deleting an article with COMMENTS comments, following an author with
# PROLIFIC articles.
if ((QUICK)); then
  FOLLOWERS=10000 COMMENTS=1000 PROLIFIC=1000 DELIVER_N=50 DELIVER_FOLLOWERS=2000
else
  FOLLOWERS=100000 COMMENTS=10000 PROLIFIC=10000 DELIVER_N=200 DELIVER_FOLLOWERS=10000
fi
FANOUT_INLINE=100 # CONDUIT_FANOUT_INLINE, left at its default on every replica

# add_followers USERNAME N FIRST_ID: N follower ids FIRST_ID.. written straight into the user's
# followers set (SADD, 1000 ids a command). Only the fan-out reads the set; the ids need no user.
add_followers() {
  local id
  id="$(user_id "$1")"
  awk -v key="conduit:{u:$id}:followers" -v n="$2" -v first="$3" 'BEGIN {
    for (i = 0; i < n; i += 1000) {
      line = "SADD " key
      for (j = i; j < i + 1000 && j < n; j++) line = line " " (first + j)
      print line
    } }' | kcli >/dev/null
  kcli SCARD "conduit:{u:$id}:followers"
}
# slowlog_reset: every slower-than-1-ms command logged from here on, on every node of SLOW_PORTS.
slowlog_reset() {
  local p
  for p in "${SLOW_PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" CONFIG SET slowlog-log-slower-than 1000 >/dev/null
    redis-cli -h 127.0.0.1 -p "$p" SLOWLOG RESET >/dev/null
  done
}
# slowlog_read KEY: SLOW_LEN[KEY] (entries over every node) and SLOW_TOP[KEY] (the 3 slowest).
declare -A SLOW_LEN=() SLOW_TOP=()
slowlog_read() {
  local p
  for p in "${SLOW_PORTS[@]}"; do
    redis-cli -h 127.0.0.1 -p "$p" --json SLOWLOG GET 128
  done | jq -s 'add' >"$WORK/slowlog-$1.json"
  SLOW_LEN[$1]="$(jq 'length' "$WORK/slowlog-$1.json")"
  SLOW_TOP[$1]="$(jq -r 'sort_by(-.[2]) | .[:3] | map("\(.[2]) µs `\(.[3][:5] | join(" "))`") | join("; ")' "$WORK/slowlog-$1.json")"
  [[ -n ${SLOW_TOP[$1]} ]] || SLOW_TOP[$1]="-"
}
# fanout_drained: waits until the fan-out job stream is empty (a job deletes itself once done
# and its next batch is queued); fails after 300 s.
fanout_drained() {
  local limit=$((SECONDS + 300)) n
  while ((SECONDS < limit)); do
    n="$(kcli XLEN 'conduit:{fanout}:jobs')"
    [[ $n == 0 ]] && return 0
    nap 0.05
  done
  return 1
}
now_us() { echo "${EPOCHREALTIME/./}"; }
ms_since() { awk -v d=$(($(now_us) - $1)) 'BEGIN { printf "%.0f", d / 1000 }'; }
post_article() { # TOKEN TITLE -> the new article's slug
  curl -sf -X POST -H "Authorization: Token $1" -H 'Content-Type: application/json' \
    -d "{\"article\":{\"title\":\"$2\",\"description\":\"bounded work\",\"body\":\"One article.\",\"tagList\":[\"scale\"]}}" \
    "$API/api/articles" | jq -r .article.slug
}
article_id() { kcli HGET "conduit:{slug:$1}:claim" owner; }

declare -A SLOW_MS=() SLOW_NOTE=()
# SLOWLOG times are wall-clock time inside Redis, so a one-key command during which Redis lost
# its core to another process on these two shared cores is logged as well. For the bounded-work
# writes only, Redis runs at a higher priority (niceness -10), as it would on a machine of its
# own; that needs root (or CAP_SYS_NICE). Without it the writes run as the rest and the report
# says so. redis_priority NICENESS PID...
SLOW_NICE="-10"
redis_priority() {
  local level=$1
  shift
  if ! renice -n "$level" -p "$@" >/dev/null 2>&1; then
    SLOW_NICE="0 (raising it was not permitted)"
  fi
}

# bounded_work SUFFIX: the three writes on $API, SLOWLOG on every node of SLOW_PORTS; results
# under publish/delete/follow + SUFFIX.
SLOW_PORTS=("$REDIS_PORT")
bounded_work() {
  local sx=$1 have slug t0 fanout_ms aid sampled wrk_pid comments_secs n_comments st left
  local prolific_secs n_prolific in_feed
  log "bounded work: publishing to $FOLLOWERS followers"
  CELEB_TOKEN="$(register celebrity)"
  [[ -n $CELEB_TOKEN && $CELEB_TOKEN != null ]] || die "registering celebrity failed"
  have="$(add_followers celebrity "$FOLLOWERS" 1000000000)"
  ((have == FOLLOWERS)) || die "celebrity has $have followers, expected $FOLLOWERS"
  fanout_drained || die "the fan-out stream did not drain"
  slowlog_reset
  t0="$(now_us)"
  slug="$(post_article "$CELEB_TOKEN" "To $FOLLOWERS followers")"
  SLOW_MS[publish$sx]="$(ms_since "$t0")"
  [[ -n $slug && $slug != null ]] || die "publishing by celebrity failed"
  fanout_drained || die "the fan-out to $FOLLOWERS feeds did not finish in 300 s"
  fanout_ms="$(ms_since "$t0")"
  slowlog_read "publish$sx"
  aid="$(article_id "$slug")"
  # A sample of 100 followers spread over the set: how many feeds hold the article.
  sampled="$(awk -v n="$FOLLOWERS" -v a="$aid" 'BEGIN { for (i = 0; i < 100; i++)
    printf "ZSCORE conduit:{u:%d}:feed %s\n", 1000000000 + int(i * n / 100), a }' | kcli | grep -c '^[0-9]' || true)"
  SLOW_NOTE[publish$sx]="followers written with SADD into \`conduit:{u:<id>}:followers\` (ids without users; the fan-out needs nothing else); request ${SLOW_MS[publish$sx]} ms, fan-out to every feed done ${fanout_ms} ms after the request was sent; $sampled of 100 sampled feeds hold the article"

  log "bounded work: deleting an article with $COMMENTS comments"
  AUTHOR1_TOKEN="$(head -1 "$WORK/tokens")"
  slug="$(post_article "$AUTHOR1_TOKEN" "Commented $COMMENTS times")"
  [[ -n $slug && $slug != null ]] || die "publishing by author1 failed"
  aid="$(article_id "$slug")"
  t0=$SECONDS
  env BENCH_MODE=comment "BENCH_TOKEN=$READER_TOKEN" "BENCH_SLUG=$slug" BENCH_RUN=slowc \
    wrk -t1 -c16 -d600s --timeout 10s -s "$LUA" "$API/api/articles/$slug/comments" >"$WORK/comments.out" &
  wrk_pid=$!
  PIDS+=("$wrk_pid")
  while (($(kcli ZCARD "conduit:{a:$aid}:comment_ids") < COMMENTS)); do
    kill -0 "$wrk_pid" 2>/dev/null || die "commenting stopped: $(cat "$WORK/comments.out")"
    ((SECONDS - t0 < 300)) || die "$COMMENTS comments not written in 300 s"
    nap 0.2
  done
  kill -INT "$wrk_pid" 2>/dev/null || true
  wait "$wrk_pid" 2>/dev/null || true
  comments_secs=$((SECONDS - t0))
  n_comments="$(kcli ZCARD "conduit:{a:$aid}:comment_ids")"
  fanout_drained || die "the fan-out stream did not drain"
  slowlog_reset
  t0="$(now_us)"
  st="$(curl -s -o /dev/null -w '%{http_code}' -X DELETE -H "Authorization: Token $AUTHOR1_TOKEN" "$API/api/articles/$slug")"
  SLOW_MS[delete$sx]="$(ms_since "$t0")"
  [[ $st == 2* ]] || die "deleting the commented article: status $st"
  fanout_drained || die "the fan-out stream did not drain"
  slowlog_read "delete$sx"
  left="$(kcli EXISTS "conduit:{a:$aid}:comments" "conduit:{a:$aid}:comment_ids" "conduit:{a:$aid}:article")"
  SLOW_NOTE[delete$sx]="$n_comments comments POSTed through the API (wrk, ${comments_secs} s); request ${SLOW_MS[delete$sx]} ms; article keys left: $left"

  log "bounded work: following an author with $PROLIFIC articles"
  PROLIFIC_TOKEN="$(register prolific)"
  [[ -n $PROLIFIC_TOKEN && $PROLIFIC_TOKEN != null ]] || die "registering prolific failed"
  echo "$PROLIFIC_TOKEN" >"$WORK/tokens-prolific"
  t0=$SECONDS
  seed_articles "$(($(article_count) + PROLIFIC))" p "$WORK/tokens-prolific"
  prolific_secs=$((SECONDS - t0))
  n_prolific="$(kcli ZCARD "conduit:{u:$(user_id prolific)}:articles")"
  ((n_prolific >= PROLIFIC)) || die "prolific wrote $n_prolific articles, expected $PROLIFIC"
  NEWREADER_TOKEN="$(register newreader)"
  [[ -n $NEWREADER_TOKEN && $NEWREADER_TOKEN != null ]] || die "registering newreader failed"
  fanout_drained || die "the fan-out stream did not drain"
  slowlog_reset
  t0="$(now_us)"
  follow "$NEWREADER_TOKEN" prolific || die "following prolific failed"
  SLOW_MS[follow$sx]="$(ms_since "$t0")"
  slowlog_read "follow$sx"
  in_feed="$(curl -sf -H "Authorization: Token $NEWREADER_TOKEN" "$API/api/articles/feed?limit=1" | jq .articlesCount)"
  SLOW_NOTE[follow$sx]="$n_prolific articles POSTed through the API (wrk, ${prolific_secs} s); request ${SLOW_MS[follow$sx]} ms; the follower's feed then holds $in_feed articles"
}
redis_priority -10 "$REDIS_PID"
bounded_work ""
redis_priority 0 "$REDIS_PID"

# ---------------------------------------------------------------------------------------------
# Feed delivery under read load
# ---------------------------------------------------------------------------------------------
# An author with DELIVER_FOLLOWERS followers (one of them a registered user, the rest written
# with SADD as above) publishes DELIVER_N articles one after the other on the direct replica,
# while wrk reads GET /api/articles?limit=20 from it; each time, the follower's
# GET /api/articles/feed?limit=1 is polled until it shows the new article. p50, p99 and max of
# the delivery times come from `chaos-report percentiles` (an HDR histogram, as conduit-load
# keeps its latencies).
log "feed delivery: $DELIVER_N articles to $DELIVER_FOLLOWERS followers under read load"
POPULAR_TOKEN="$(register popular)"
FAN_TOKEN="$(register fan)"
[[ -n $POPULAR_TOKEN && $POPULAR_TOKEN != null && -n $FAN_TOKEN && $FAN_TOKEN != null ]] ||
  die "registering popular and fan failed"
follow "$FAN_TOKEN" popular || die "fan could not follow popular"
have="$(add_followers popular $((DELIVER_FOLLOWERS - 1)) 2000000000)"
((have == DELIVER_FOLLOWERS)) || die "popular has $have followers, expected $DELIVER_FOLLOWERS"
fanout_drained || die "the fan-out stream did not drain"
env BENCH_MODE=get "BENCH_TOKEN=$READER_TOKEN" BENCH_RUN=deliver \
  wrk -t1 -c"$CONNS" -d600s --timeout 5s -s "$LUA" "$API/api/articles?limit=20" >"$WORK/deliver-load.out" &
load_pid=$!
PIDS+=("$load_pid")
nap 1
: >"$WORK/delivery"
deliver_lost=0
for ((n = 1; n <= DELIVER_N; n++)); do
  t0="$(now_us)"
  slug="$(post_article "$POPULAR_TOKEN" "Delivered $n")"
  [[ -n $slug && $slug != null ]] || die "publishing by popular failed"
  until [[ "$(curl -sf -H "Authorization: Token $FAN_TOKEN" "$API/api/articles/feed?limit=1" | jq -r '.articles[0].slug')" == "$slug" ]]; do
    if (($(now_us) - t0 > 30000000)); then
      deliver_lost=$((deliver_lost + 1))
      break
    fi
    nap 0.005
  done
  ms_since "$t0" >>"$WORK/delivery"
  echo >>"$WORK/delivery"
done
kill -INT "$load_pid" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true
deliver_load_rps="$(sed -nE 's/^BENCH_RESULT .* rps=([0-9.]+) .*/\1/p' "$WORK/deliver-load.out")"
read -r DELIVER_P50 DELIVER_P99 DELIVER_MAX < <("$BIN/chaos-report" percentiles --quantiles 0.5,0.99 "$WORK/delivery" ||
  echo "- - -")
[[ $DELIVER_MAX != - ]] || die "no percentiles of the delivery times in $WORK/delivery"
fanout_drained || log "the fan-out stream had not drained 300 s after the last delivery"

# ---------------------------------------------------------------------------------------------
# Redis Cluster
# ---------------------------------------------------------------------------------------------
# The same data set seeded through the API into a local 3-primary, 3-replica Redis Cluster
# (scripts/lib/redis-cluster.sh), served by one replica in cluster mode (REDIS_CLUSTER_URLS, 2
# workers, CONDUIT_REDIS_MIN_REPLICAS at its cluster default of 1); the same rows and counts,
# summed over the primaries, and how keys and commands split over them.
log "Redis Cluster: 3 primaries with a replica each"
redis_cluster_start "$WORK/cluster" || die "the Redis Cluster did not start"
mapfile -t PRIMARIES < <(redis_cluster_primaries)
((${#PRIMARIES[@]} == 3)) || die "expected 3 primaries in the cluster, found ${#PRIMARIES[@]}"
mapfile -t CLUSTER_PIDS < <(redis_cluster_pids)
((${#CLUSTER_PIDS[@]} == 6)) || die "expected 6 cluster nodes, found ${#CLUSTER_PIDS[@]}"
start_replica cluster 2 REDIS_CLUSTER_URLS="$REDIS_CLUSTER_URLS"
wait_ready "${PORT_OF[cluster]}"
curl -sf "http://127.0.0.1:${PORT_OF[cluster]}/readyz" | grep -q '"cluster"' ||
  die "the cluster replica does not report cluster mode: $(curl -s "http://127.0.0.1:${PORT_OF[cluster]}/readyz")"
SINGLE_API=$API SINGLE_READER_TOKEN=$READER_TOKEN SINGLE_REGISTER_SECS=$register_secs
API="http://127.0.0.1:${PORT_OF[cluster]}"
KCLI_PORT=${PRIMARIES[0]}
SNAP_PORTS=("${PRIMARIES[@]}")
redis_snapshot >"$WORK/c-seed0"
t0=$SECONDS
seed_users
cluster_register_secs=$register_secs
register_secs=$SINGLE_REGISTER_SECS
seed_articles "$LARGE" c
n_cluster="$(article_count)"
((n_cluster == LARGE)) || die "expected $LARGE articles in the cluster, it holds $n_cluster"
cluster_seed_secs=$((SECONDS - t0))
redis_snapshot >"$WORK/c-seed1"
snapshot_delta "$WORK/c-seed0" "$WORK/c-seed1" >"$WORK/c-seed"
declare -A C_KEYS=() C_SEED_CMDS=() C_ROW_CMDS=() C_SLOTS=()
C_KEYS_TOTAL=0 C_SEED_TOTAL=0
for p in "${PRIMARIES[@]}"; do
  C_KEYS[$p]="$(redis-cli -h 127.0.0.1 -p "$p" DBSIZE)"
  C_KEYS_TOTAL=$((C_KEYS_TOTAL + C_KEYS[$p]))
  C_SEED_CMDS[$p]="$(awk -v k="@commands:$p" '$1 == k { print $2 }' "$WORK/c-seed")"
  C_SEED_TOTAL=$((C_SEED_TOTAL + C_SEED_CMDS[$p]))
  C_SLOTS[$p]="$(redis-cli -h 127.0.0.1 -p "$p" CLUSTER NODES | awk '$3 ~ /myself/ {
    n = 0; for (i = 9; i <= NF; i++) { split($i, r, "-"); n += (r[2] == "" ? 1 : r[2] - r[1] + 1) } print n }')"
done

APP_PIDS=("${PID_OF[cluster]}")
REDIS_PIDS=("${CLUSTER_PIDS[@]}")
c_env=(BENCH_MODE=get "BENCH_TOKEN=$READER_TOKEN")
redis_snapshot >"$WORK/c-rows0"
# Each cluster row right after the same row on the single Redis (the direct replica, its reader),
# so both see the same machine.
declare -A C_PATH=([user]='/api/user' [list]='/api/articles?limit=20' [feed]='/api/articles/feed')
for ((r = 1; r <= ROUNDS; r++)); do
  for ck in user list feed; do
    APP_PIDS=("${PID_OF[direct]}")
    REDIS_PIDS=("$REDIS_PID")
    measure "s-$ck#$r" "$SINGLE_API${C_PATH[$ck]}" BENCH_MODE=get "BENCH_TOKEN=$SINGLE_READER_TOKEN"
    APP_PIDS=("${PID_OF[cluster]}")
    REDIS_PIDS=("${CLUSTER_PIDS[@]}")
    measure "c-$ck#$r" "$API${C_PATH[$ck]}" "${c_env[@]}"
  done
done
for ck in user list feed; do
  keep_best "s-$ck"
  keep_best "c-$ck"
done
redis_snapshot >"$WORK/c-rows1"
snapshot_delta "$WORK/c-rows0" "$WORK/c-rows1" >"$WORK/c-rows"
C_ROW_TOTAL=0
for p in "${PRIMARIES[@]}"; do
  C_ROW_CMDS[$p]="$(awk -v k="@commands:$p" '$1 == k { print $2 }' "$WORK/c-rows")"
  C_ROW_TOTAL=$((C_ROW_TOTAL + ${C_ROW_CMDS[$p]:-0}))
done

log "counting Redis commands per request in the cluster ($COUNT_REQS requests each)"
calibrate
for ck in user list feed; do
  count "c-$ck" "$ck"
done

SLOW_PORTS=("${REDIS_CLUSTER_PORTS[@]}")
redis_priority -10 "${CLUSTER_PIDS[@]}"
bounded_work -cluster
redis_priority 0 "${CLUSTER_PIDS[@]}"
SLOW_PORTS=("$REDIS_PORT")

stop_pid "${PID_OF[cluster]}"
redis_cluster_stop
API=$SINGLE_API READER_TOKEN=$SINGLE_READER_TOKEN KCLI_PORT=$REDIS_PORT
SNAP_PORTS=("$REDIS_PORT")
REDIS_PIDS=("$REDIS_PID")
APP_PIDS=("${PID_OF[direct]}")

# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
log "memory: a fresh replica idle, then $LOAD_SECS s of mixed load (conduit-load)"
# mem_run NAME [VAR=VALUE...]: a fresh replica, RSS idle, then under conduit-load; sets MEM_*.
declare -A MEM_IDLE=() MEM_LOAD=() MEM_HWM=() MEM_RPS=() MEM_REQS=() MEM_FAILED=()
mem_run() {
  local name=$1 pid json="$WORK/load-$1.json"
  shift
  start_replica "$name" 2 "$@"
  wait_ready "${PORT_OF[$name]}"
  nap 2
  pid="${PID_OF[$name]}"
  MEM_IDLE[$name]="$(rss_kib VmRSS "$pid")"
  "$BIN/conduit-load" --target "http://127.0.0.1:${PORT_OF[$name]}" --users 16 \
    --duration "$LOAD_SECS" --seed-users 4 --seed-articles 50 --follows 3 --no-tui --json \
    >"$json" 2>"$WORK/conduit-load-$name.log" || log "conduit-load exited non-zero (see its summary)"
  MEM_LOAD[$name]="$(rss_kib VmRSS "$pid")"
  MEM_HWM[$name]="$(rss_kib VmHWM "$pid")"
  MEM_RPS[$name]="$(jq -r '.rps // "n/a"' "$json" 2>/dev/null || echo n/a)"
  MEM_FAILED[$name]="$(jq -r '.requests.failed // "n/a"' "$json" 2>/dev/null || echo n/a)"
  MEM_REQS[$name]="$(jq -r '.requests.total // "n/a"' "$json" 2>/dev/null || echo n/a)"
  stop_pid "$pid"
}
mem_run memory
# The same with glibc's malloc returning large freed blocks to the system at once (a fixed
# mmap threshold), to show how much of the growth is the allocator keeping freed memory.
mem_run memory-mmap GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576
rss_direct="$(rss_kib VmRSS "${PID_OF[direct]}")"
hwm_direct="$(rss_kib VmHWM "${PID_OF[direct]}")"

# ---------------------------------------------------------------------------------------------
# Start-up
# ---------------------------------------------------------------------------------------------
log "start-up: $STARTS starts to /readyz 200"
STARTUP_MS=()
for ((s = 0; s < STARTS; s++)); do
  t0="${EPOCHREALTIME/./}"
  start_replica "startup-$s" 2
  port="${PORT_OF[startup-$s]}"
  until probe "$port" /readyz 2>/dev/null; do
    nap 0.002
    (($(("${EPOCHREALTIME/./}" - t0)) < 20000000)) || die "replica startup-$s not ready in 20 s"
  done
  t1="${EPOCHREALTIME/./}"
  STARTUP_MS+=("$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.1f", d / 1000 }')")
  stop_pid "${PID_OF[startup-$s]}"
done
startup_median="$(printf '%s\n' "${STARTUP_MS[@]}" | sort -n | awk '{ a[NR] = $1 }
  END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.1f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }')"

image_size="not built"
if command -v podman >/dev/null 2>&1; then
  if size="$(podman image inspect --format '{{.Size}}' localhost/conduit-api:0.1.0 2>/dev/null)"; then
    image_size="$(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }')"
  fi
fi

# ---------------------------------------------------------------------------------------------
# Redis ceiling
# ---------------------------------------------------------------------------------------------
log "redis-benchmark ceiling ($RB_N requests per command)"
declare -a RB_ROWS=()
# The rows name real keys of the seeded data set: each must exist.
for key in "conduit:{a:$((LARGE / 2))}:article" 'conduit:{u:2}:user' 'conduit:{u:1}:following' \
  'conduit:{all:0}:articles'; do
  [[ "$(rcli EXISTS "$key")" == 1 ]] || die "redis-benchmark row key $key does not exist in the seeded data set"
done
rb() { # label args...
  local label=$1 out rps p50
  shift
  out="$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -q -n "$RB_N" -c 32 "$@" 2>/dev/null | tr '\r' '\n' | grep 'requests per second' | tail -1)"
  rps="$(sed -E 's/.*: ([0-9.]+) requests per second.*/\1/' <<<"$out")"
  p50="$(sed -nE 's/.*p50=([0-9.]+) msec.*/\1/p' <<<"$out")"
  RB_ROWS+=("| $label | $(fmt_rps "$rps") | ${p50:--} |")
}
rb 'PING (inline)' -t ping_inline
rb 'GET' -t get
rb 'SET' -t set
rb 'HGETALL conduit:{a:<id>}:article (an article)' HGETALL "conduit:{a:$((LARGE / 2))}:article"
rb 'HMGET conduit:{u:<id>}:user username bio image' HMGET 'conduit:{u:2}:user' username bio image
rb 'SISMEMBER conduit:{u:1}:following <id>' SISMEMBER 'conduit:{u:1}:following' 2
rb 'ZREVRANGE conduit:{all:0}:articles 0 19 (one of 16 buckets)' ZREVRANGE 'conduit:{all:0}:articles' 0 19
rb 'HGETALL article, pipelined 20 deep (-P 20)' -P 20 HGETALL "conduit:{a:$((LARGE / 2))}:article"

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
total_secs=$((SECONDS - RUN_START))
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
api_version="$("$BIN/conduit-api" --version 2>/dev/null || echo conduit-api)"
commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
rustc_v="$(rustc --version 2>/dev/null || echo rustc)"
wrk_v="$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')"
nginx_v="$(nginx -v 2>&1 | sed 's/.*: //')"
redis_v="$(redis-server --version | awk '{ print $3 }' | sed 's/v=//')"

report="$WORK/report.md"
{
  echo "# Benchmarks"
  echo
  echo "Written by \`scripts/bench.sh\` ($MODE mode). Rerun it to refresh this file; \`--quick --no-write\`"
  echo "is a smoke run. Numbers from one machine where the load generator, nginx, Redis and the"
  echo "replicas share the same cores: compare rows with each other, not with other machines."
  echo
  echo "## Run"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| date | $DATE_START |"
  echo "| machine | $(nproc) cores, $cpu_model, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r) |"
  echo "| load average (1/5/15 min) at start | $LOAD_START |"
  echo "| load average at end | $LOAD_END |"
  echo "| versions | $api_version (commit $commit, release profile), $rustc_v, $wrk_v, nginx $nginx_v, redis $redis_v |"
  echo "| duration | ${DUR} s per row after a ${WARM} s warm-up; $ROUNDS round(s) per row, rounds of compared setups alternate, the table shows the round with the highest throughput (all rounds' req/s in the \"rounds\" column); whole run $((total_secs / 60)) min $((total_secs % 60)) s |"
  echo "| load generator | wrk, 1 thread, $CONNS connections, keep-alive, on the same machine |"
  echo "| replicas | direct rows: 1 replica with 2 workers (\`CONDUIT_WORKERS=2\`); nginx rows: 2 replicas with 1 worker each behind 1 nginx worker (upstream keepalive 64), so both setups have 2 worker threads for 2 cores |"
  echo "| replica settings | default log filter (\`RUST_LOG\` unset: one access log line per request, to a file), tracing off (\`OTEL_SDK_DISABLED=true\`) except in the tracing rows |"
  echo "| requests | authenticated as a user following $AUTHORS authors (\`Authorization: Token ...\`); comments are POSTed with a unique \`Idempotency-Key\` each |"
  echo "| data set | $LARGE articles by $AUTHORS authors (2 tags each), seeded through the API with wrk (\`scripts/bench/wrk.lua\`): $AUTHORS registrations in ${register_secs} s, $SMALL articles in ${small_seed_secs} s, $((LARGE - SMALL)) more in ${large_seed_secs} s; Redis used_memory $redis_mem_large |"
  echo
  echo "CPU columns: CPU time (user+system, from /proc/<pid>/stat) used during the row divided by"
  echo "the requests served, in microseconds: what one request costs each process."
  echo
  echo "## Token check vs health check (direct, 1 replica)"
  echo
  echo "| request | req/s | rounds | p50 ms | p99 ms | failed | API CPU µs/req | Redis CPU µs/req |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|"
  for k in healthz user; do
    name='GET /healthz'
    [[ $k == user ]] && name='GET /api/user'
    echo "| $name | $(fmt_rps "${RPS[$k]}") | ${ALL_ROUNDS[$k]} | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | ${CPU_APP[$k]} | ${CPU_REDIS[$k]} |"
  done
  r="$(ratio "${RPS[user]}" "${RPS[healthz]}")"
  echo
  echo "Target: \`GET /api/user\` >= 0.5 of \`GET /healthz\`. Ratio **$r**: $(verdict "$r" ">=" 0.5)."
  echo
  echo "## Endpoints, direct and through nginx"
  echo
  echo "| endpoint | setup | req/s | rounds | p50 ms | p99 ms | failed | API CPU µs/req | Redis CPU µs/req | nginx CPU µs/req | API RSS after, MiB |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for ep in "${EP_KEYS[@]}"; do
    for s in direct nginx; do
      k="$ep-$s"
      label="1 replica"
      [[ $s == nginx ]] && label="nginx + 2 replicas"
      ngx="${CPU_NGINX[$k]}"
      [[ $s == direct ]] && ngx="-"
      echo "| \`${EP_NAME[$ep]}\` | $label | $(fmt_rps "${RPS[$k]}") | ${ALL_ROUNDS[$k]} | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | ${CPU_APP[$k]} | ${CPU_REDIS[$k]} | $ngx | ${RSS_AFTER[$k]} |"
    done
  done
  echo
  echo "| endpoint | nginx / direct | target >= 0.7 |"
  echo "|---|---:|---|"
  for ep in "${EP_KEYS[@]}"; do
    r="$(ratio "${RPS[$ep-nginx]}" "${RPS[$ep-direct]}")"
    echo "| \`${EP_NAME[$ep]}\` | $r | $(verdict "$r" ">=" 0.7) |"
  done
  echo
  echo "Requests logged by the replicas behind nginx over the whole run: lb-1 $lb1_lines, lb-2 $lb2_lines."
  echo
  echo "## Tracing: what exporting spans costs the replica"
  echo
  echo "Three replicas of 2 workers each: tracing off (\`OTEL_SDK_DISABLED=true\`), 10 % sampled"
  echo "(\`OTEL_TRACES_SAMPLER=parentbased_traceidratio\`, \`OTEL_TRACES_SAMPLER_ARG=0.1\`, the"
  echo "production setting), and every request sampled (\`always_on\`), exporting over OTLP/gRPC to"
  echo "\`otlp-receiver\` on the same machine. The receiver runs during every row and takes cores from"
  echo "the replica as a co-located collector would; its CPU is shown apart, so the API CPU column is"
  echo "what tracing costs the replica itself. Spans per request come from the receiver's report"
  echo "(received plus refused once full), over round 1."
  echo
  echo "| request | sampling | req/s | rounds | p50 ms | p99 ms | failed | API CPU µs/req | receiver CPU µs/req | Redis CPU µs/req | spans/request |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for tk in "${TRACE_KEYS[@]}"; do
    name="GET ${TRACE_PATH[$tk]}"
    for mode in "${TRACE_MODES[@]}"; do
      k="trace-$mode-$tk"
      echo "| \`$name\` | ${TRACE_LABEL[$mode]} | $(fmt_rps "${RPS[$k]}") | ${ALL_ROUNDS[$k]} | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | ${CPU_APP[$k]} | ${CPU_NGINX[$k]} | ${CPU_REDIS[$k]} | ${SPANS_PER_REQ[$mode-$tk]} |"
    done
  done
  echo
  echo "| request | API CPU 100 % / off | target | req/s 10 % / off | target >= 0.95 | req/s 100 % / off |"
  echo "|---|---:|---|---:|---|---:|"
  for tk in "${TRACE_KEYS[@]}"; do
    limit=1.1
    [[ $tk == user ]] && limit=1.3
    cpu="$(ratio "${CPU_APP[trace-on-$tk]}" "${CPU_APP[trace-off-$tk]}")"
    sampled="$(ratio "${RPS[trace-ratio-$tk]}" "${RPS[trace-off-$tk]}")"
    full="$(ratio "${RPS[trace-on-$tk]}" "${RPS[trace-off-$tk]}")"
    echo "| \`GET ${TRACE_PATH[$tk]}\` | $cpu | <= $limit ($(verdict "$cpu" "<=" "$limit")) | $sampled | $(verdict "$sampled" ">=" 0.95) | $full |"
  done
  echo
  echo "## Redis commands and round trips per request"
  echo
  echo "Counted by Redis itself: \`INFO commandstats\` and \`total_commands_processed\` deltas over"
  echo "$COUNT_REQS requests each (after one warm-up request), minus the cost of the \`INFO\` call."
  echo "Round trips are \`total_reads_processed\` deltas: Redis handles one read event per"
  echo "pipeline or script call a client sends and waits for; the commands no request sends, each"
  echo "a read of its own (the fan-out workers' \`XREADGROUP\`/\`XAUTOCLAIM\` polling, \`REPLCONF\` from"
  echo "Redis replicas, \`CLUSTER\` slot map refreshes), are taken off the round trips and still shown"
  echo "among the commands. The client/Lua split comes from"
  echo "\`redis-cli MONITOR\` during one more request (commands run inside \`EVALSHA\` show as \`lua\`;"
  echo "the background commands above are left out of both)."
  echo
  echo "| request | round trips | limit | commands (all) | sent by the API | run in Lua | commands per request |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for ck in "${COUNT_KEYS[@]}"; do
    lim="${RT_LIMIT[$ck]:-}"
    if [[ -n $lim ]]; then
      lim="$lim ($(verdict "${RT[$ck]}" "<=" "$lim"))"
    else
      lim="-"
    fi
    echo "| \`${COUNT_NAME[$ck]}\` | ${RT[$ck]} | $lim | ${CMDS[$ck]} | ${CLIENT_CMDS[$ck]} | ${LUA_CMDS[$ck]} | ${CMD_MIX[$ck]:--} |"
  done
  echo
  echo "## What a page of 20 articles costs"
  echo
  echo "The page requests on the direct replica (1 replica, 2 workers, single Redis), from the rows"
  echo "above and two more rows measured the same way (the list without a token, and filtered by a"
  echo "tag). Throughput is compared with \`GET /api/user\` of the first table; Redis commands are the"
  echo "request's own (the table above without the background commands)."
  echo
  echo "| page | req/s | of \`GET /api/user\` | target >= 0.15 | API CPU µs/req | target <= 150 | Redis CPU µs/req | target <= 60 | Redis commands | target <= 45 |"
  echo "|---|---:|---:|---|---:|---|---:|---|---:|---|"
  for pk in list list-anon list-tag feed; do
    row="$pk-direct"
    share="$(ratio "${RPS[$row]}" "${RPS[user]}")"
    share_verdict="-"
    [[ $pk == list || $pk == feed ]] && share_verdict="$(verdict "$share" ">=" 0.15)"
    echo "| \`${COUNT_NAME[$pk]}\` | $(fmt_rps "${RPS[$row]}") | $share | $share_verdict | ${CPU_APP[$row]} | $(verdict "${CPU_APP[$row]}" "<=" 150) | ${CPU_REDIS[$row]} | $(verdict "${CPU_REDIS[$row]}" "<=" 60) | ${OWN_CMDS[$pk]} | $(verdict "${OWN_CMDS[$pk]}" "<=" 45) |"
  done
  echo
  echo "## Growth: $SMALL vs $LARGE articles"
  echo
  echo "Same replica (1 replica, 2 workers), same reader, who follows all $AUTHORS authors, so the"
  echo "feed holds every article ($feed_small, then $feed_large)."
  echo
  echo "| request | articles | req/s | rounds | p50 ms | p99 ms | failed | API CPU µs/req | Redis CPU µs/req |"
  echo "|---|---:|---:|---|---:|---:|---:|---:|---:|"
  for g in list feed; do
    name='GET /api/articles?limit=20'
    [[ $g == feed ]] && name='GET /api/articles/feed'
    for size in small large; do
      k="growth-$g-$size"
      n=$SMALL
      [[ $size == large ]] && n=$LARGE
      echo "| \`$name\` | $n | $(fmt_rps "${RPS[$k]}") | ${ALL_ROUNDS[$k]} | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | ${CPU_APP[$k]} | ${CPU_REDIS[$k]} |"
    done
  done
  echo
  echo "| request | $LARGE / $SMALL | target >= 0.8 |"
  echo "|---|---:|---|"
  for g in list feed; do
    name='GET /api/articles?limit=20'
    [[ $g == feed ]] && name='GET /api/articles/feed'
    r="$(ratio "${RPS[growth-$g-large]}" "${RPS[growth-$g-small]}")"
    echo "| \`$name\` | $r | $(verdict "$r" ">=" 0.8) |"
  done
  echo
  echo "## Redis Cluster: the same rows on 3 primaries"
  echo
  echo "A local Redis Cluster (3 primaries, 1 replica each, \`scripts/lib/redis-cluster.sh\`), one"
  echo "replica in cluster mode (\`REDIS_CLUSTER_URLS\`, 2 workers, every write waits for 1 Redis"
  echo "replica: \`CONDUIT_REDIS_MIN_REPLICAS\` at its cluster default), the same data set seeded"
  echo "through the API ($AUTHORS registrations in ${cluster_register_secs} s, $LARGE articles; ${cluster_seed_secs} s in all)."
  echo "Single-Redis req/s: the direct replica above (1 replica, 2 workers) measured again just"
  echo "before each cluster row (rounds alternate). Redis CPU: the six nodes."
  echo
  echo "| request | single Redis req/s | cluster req/s | rounds | cluster p50 ms | p99 ms | failed | API CPU µs/req | Redis CPU µs/req | cluster / single | target |"
  echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"
  for ck in user list feed; do
    case $ck in
      user) name='GET /api/user' ;;
      list) name='GET /api/articles?limit=20' ;;
      feed) name='GET /api/articles/feed' ;;
    esac
    single="s-$ck"
    k="c-$ck"
    r="$(ratio "${RPS[$k]}" "${RPS[$single]}")"
    target="-"
    [[ $ck != feed ]] && target=">= 0.8: $(verdict "$r" ">=" 0.8)"
    echo "| \`$name\` | $(fmt_rps "${RPS[$single]}") | $(fmt_rps "${RPS[$k]}") | ${ALL_ROUNDS[$k]} | ${P50[$k]} | ${P99[$k]} | ${ERRS[$k]} | ${CPU_APP[$k]} | ${CPU_REDIS[$k]} | $r | $target |"
  done
  echo
  echo "Round trips and commands per request, counted as on the single Redis (\`total_reads_processed\`,"
  echo "\`total_commands_processed\` and \`INFO commandstats\` deltas over $COUNT_REQS requests), summed over the"
  echo "three primaries. A wave sends its calls to the primaries holding their slots at once, so the"
  echo "sum counts one round trip per primary a wave reached; the busiest primary's count is the"
  echo "waves that reached it (when a wave's calls to one primary arrive in one read) and is checked"
  echo "against the waves of docs/DATA_MODEL.md."
  echo
  echo "| request | single Redis round trips | cluster round trips (sum) | busiest primary | waves | single Redis commands | cluster commands | cluster commands per request |"
  echo "|---|---:|---:|---:|---|---:|---:|---|"
  for ck in user list feed; do
    case $ck in
      user) lim=1 name='GET /api/user' ;;
      list) lim=3 name='GET /api/articles?limit=20' ;;
      feed) lim=3 name='GET /api/articles/feed' ;;
    esac
    echo "| \`$name\` | ${RT[$ck]} | ${RT[c-$ck]} | ${RT_MAX[c-$ck]} | <= $lim: $(verdict "${RT_MAX[c-$ck]}" "<=" "$lim") | ${CMDS[$ck]} | ${CMDS[c-$ck]} | ${CMD_MIX[c-$ck]:--} |"
  done
  echo
  echo "How the data set and the work split over the primaries: keys (\`DBSIZE\`) after seeding,"
  echo "commands (\`total_commands_processed\` deltas) while seeding through the API and during the"
  echo "three rows above (one reader: \`GET /api/user\` reads one user's slot, so the rows' split"
  echo "follows the reader and has no target). Target: every primary holds 20-45 % of the keys and"
  echo "takes 20-45 % of the seeding commands."
  echo
  echo "| primary | slots | keys | share | target | commands while seeding | share | target | commands during the rows | share |"
  echo "|---|---:|---:|---:|---|---:|---:|---|---:|---:|"
  for p in "${PRIMARIES[@]}"; do
    ks="$(pct "${C_KEYS[$p]}" "$C_KEYS_TOTAL")"
    cs="$(pct "${C_SEED_CMDS[$p]}" "$C_SEED_TOTAL")"
    echo "| 127.0.0.1:$p | ${C_SLOTS[$p]} | ${C_KEYS[$p]} | $ks % | $(in_range "$ks" 20 45) | ${C_SEED_CMDS[$p]} | $cs % | $(in_range "$cs" 20 45) | ${C_ROW_CMDS[$p]:-0} | $(pct "${C_ROW_CMDS[$p]:-0}" "$C_ROW_TOTAL") % |"
  done
  echo
  echo "## GET /api/user during a login flood"
  echo
  echo "One replica with 2 workers and failed-login limits out of reach (every login of the flood"
  echo "is checked against the account's argon2 hash, as in a flood from more addresses than the"
  echo "limits cover); \`GET /api/user\` alone on it, then while wrk (1 thread, $FLOOD_CONNS connections)"
  echo "sends logins with wrong passwords for the $AUTHORS authors' accounts to the same replica."
  echo
  echo "| request | login flood | req/s | rounds | p50 ms | p99 ms | failed | API CPU µs/req |"
  echo "|---|---|---:|---|---:|---:|---:|---:|"
  echo "| \`GET /api/user\` | none | $(fmt_rps "${RPS[flood-alone]}") | ${ALL_ROUNDS[flood-alone]} | ${P50[flood-alone]} | ${P99[flood-alone]} | ${ERRS[flood-alone]} | ${CPU_APP[flood-alone]} |"
  echo "| \`GET /api/user\` | running | $(fmt_rps "${RPS[flood-under]}") | ${ALL_ROUNDS[flood-under]} | ${P50[flood-under]} | ${P99[flood-under]} | ${ERRS[flood-under]} | ${CPU_APP[flood-under]} |"
  echo
  echo "| flood round | logins/s | wrong password (401/422) | refused by the limit (429) | shed (503) |"
  echo "|---|---:|---:|---:|---:|"
  for ((r = 1; r <= ROUNDS; r++)); do
    echo "| $r | $(fmt_rps "${FLOOD[rps#$r]}") | ${FLOOD[rejected#$r]} | ${FLOOD[limited#$r]} | ${FLOOD[shed#$r]} |"
  done
  r="$(ratio "${RPS[flood-under]}" "${RPS[flood-alone]}")"
  echo
  echo "Target: \`GET /api/user\` during the flood >= 0.5 of alone. Ratio **$r**: $(verdict "$r" ">=" 0.5)."
  echo
  echo "## Bounded work at scale: SLOWLOG"
  echo
  echo "Sizes ($MODE mode): $FOLLOWERS followers, $COMMENTS comments, $PROLIFIC articles. Each write"
  echo "on the direct replica (single Redis), then again on the cluster replica (every node of the"
  echo "cluster), with \`CONFIG SET slowlog-log-slower-than 1000\` and \`SLOWLOG RESET\` on every"
  echo "node just before it; the log is read once the fan-out job stream is empty"
  echo "(\`CONDUIT_FANOUT_INLINE\` at its default, $FANOUT_INLINE followers in the request, then jobs of 1000)."
  echo "SLOWLOG times are wall-clock time inside Redis: on a machine whose cores are busy, a command"
  echo "Redis was descheduled during shows up too; the command and its key tell whether the cost"
  echo "grew with the data (a whole-set or whole-history read would) or not. To keep the replicas'"
  echo "fan-out work from taking Redis's core mid-command on these two shared cores, Redis runs at"
  echo "niceness $SLOW_NICE during these writes only (every other section at 0), as it would on a"
  echo "machine of its own."
  echo
  echo "| write | Redis | data behind it | SLOWLOG entries (> 1 ms) | target | slowest entries | how it was seeded and checked |"
  echo "|---|---|---|---:|---|---|---|"
  for sx in "" -cluster; do
    where="single"
    [[ $sx == -cluster ]] && where="cluster (all 6 nodes)"
    echo "| \`POST /api/articles\` (fan-out included) | $where | author with $FOLLOWERS followers | ${SLOW_LEN[publish$sx]} | 0: $(verdict "${SLOW_LEN[publish$sx]}" "<=" 0) | ${SLOW_TOP[publish$sx]} | ${SLOW_NOTE[publish$sx]} |"
    echo "| \`DELETE /api/articles/:slug\` | $where | article with $COMMENTS comments | ${SLOW_LEN[delete$sx]} | 0: $(verdict "${SLOW_LEN[delete$sx]}" "<=" 0) | ${SLOW_TOP[delete$sx]} | ${SLOW_NOTE[delete$sx]} |"
    echo "| \`POST /api/profiles/:username/follow\` | $where | author with $PROLIFIC articles | ${SLOW_LEN[follow$sx]} | 0: $(verdict "${SLOW_LEN[follow$sx]}" "<=" 0) | ${SLOW_TOP[follow$sx]} | ${SLOW_NOTE[follow$sx]} |"
  done
  echo
  echo "## Feed delivery under read load"
  echo
  echo "An author with $DELIVER_FOLLOWERS followers (1 registered user following through the API, $((DELIVER_FOLLOWERS - 1))"
  echo "ids written with SADD) publishes $DELIVER_N articles one after the other on the direct replica while"
  echo "wrk reads \`GET /api/articles?limit=20\` from it ($CONNS connections, $(fmt_rps "${deliver_load_rps:-0}") req/s meanwhile);"
  echo "after each, the follower's \`GET /api/articles/feed?limit=1\` is polled until it shows the new"
  echo "article. Time from sending the POST to the article in the feed:"
  echo
  echo "| articles | p50 ms | p99 ms | max ms | not delivered in 30 s | target p99 < 1000 ms |"
  echo "|---:|---:|---:|---:|---:|---|"
  echo "| $DELIVER_N | $DELIVER_P50 | $DELIVER_P99 | $DELIVER_MAX | $deliver_lost | $(verdict "$DELIVER_P99" "<=" 999) |"
  echo
  echo "## Memory (VmRSS from /proc/<pid>/status)"
  echo
  echo "| replica | when | RSS MiB | peak RSS (VmHWM) MiB | target |"
  echo "|---|---|---:|---:|---|"
  echo "| fresh, 2 workers | idle, 2 s after /readyz | $(mib "${MEM_IDLE[memory]}") | - | <= 20: $(verdict "$(mib "${MEM_IDLE[memory]}")" "<=" 20) |"
  echo "| same | after $LOAD_SECS s of \`conduit-load\` (16 users, mixed reads and writes) | $(mib "${MEM_LOAD[memory]}") | $(mib "${MEM_HWM[memory]}") | <= 64: $(verdict "$(mib "${MEM_LOAD[memory]}")" "<=" 64) |"
  echo "| fresh, with \`GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576\` | idle | $(mib "${MEM_IDLE[memory-mmap]}") | - | (for comparison) |"
  echo "| same | after the same load | $(mib "${MEM_LOAD[memory-mmap]}") | $(mib "${MEM_HWM[memory-mmap]}") | (for comparison) |"
  echo "| the direct replica (2 workers) | after seeding ($AUTHORS registrations, $LARGE articles), before the first row | ${RSS_AFTER_SEED} | - | - |"
  echo "| the direct replica | after all the rows above | $(mib "$rss_direct") | $(mib "$hwm_direct") | - |"
  echo
  echo "The load: \`conduit-load --users 16 --duration $LOAD_SECS\` (it registers its 20 accounts first):"
  echo "${MEM_REQS[memory]} requests, ${MEM_FAILED[memory]} failed, ${MEM_RPS[memory]} operations/s in the mixed phase"
  echo "(with the tunable: ${MEM_REQS[memory-mmap]} requests, ${MEM_FAILED[memory-mmap]} failed, ${MEM_RPS[memory-mmap]} operations/s)."
  echo
  echo "## Start-up"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| process start to first \`/readyz\` 200, median of $STARTS | **$startup_median ms** (target <= 300: $(verdict "$startup_median" "<=" 300)) |"
  echo "| all starts, ms | ${STARTUP_MS[*]} |"
  echo "| image \`localhost/conduit-api:0.1.0\` | $image_size |"
  echo
  echo "## Redis ceiling on this machine"
  echo
  echo "\`redis-benchmark -q -n $RB_N -c 32\` against the same redis-server with the seeded data:"
  echo "the physical reference for the rows above (one command per request unless pipelined)."
  echo
  echo "| command | req/s | p50 ms |"
  echo "|---|---:|---:|"
  printf '%s\n' "${RB_ROWS[@]}"
  if [[ -f $ROOT/scripts/bench/FINDINGS.md ]]; then
    echo
    cat "$ROOT/scripts/bench/FINDINGS.md"
  fi
} >"$report"

cat "$report"
if ((WRITE)); then
  cp "$report" "$OUT"
  log "wrote $OUT"
fi
log "done in $((SECONDS - RUN_START)) s"
