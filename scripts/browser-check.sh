#!/usr/bin/env bash
# Browser check: proves that a frontend served from another origin can use the API, in a real
# browser (Debian's headless Chromium), through nginx in front of several replicas.
#
# Starts, all on 127.0.0.1: a throwaway redis-server, 3 conduit-api replicas (release build),
# nginx in front of them, and a static web server for scripts/browser/index.html on another
# port (so another origin). Chromium opens the page, whose script, with fetch only, registers a
# user, reads GET /api/user with the token, creates an article with an Idempotency-Key, sends it
# again with the same key, and reads X-Served-By and X-Trace-Id from every response. It renders
# a table and a verdict element; the DOM is dumped after the scripts ran and the verdict parsed
# from it, and a second run takes a screenshot.
#
# Two rounds: with CORS on (the default `*`) every call must succeed; with CORS switched off on
# the replicas (CONDUIT_CORS_ORIGINS=none) every call must fail in the browser, which shows the
# check can fail. Exit code 0 only when both hold. Everything started is stopped at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

usage() {
  cat <<'EOF'
Usage: scripts/browser-check.sh [--out-dir DIR] [--no-build]

Runs the RealWorld calls from a page on another origin in headless Chromium, through nginx and
3 replicas on 127.0.0.1: with CORS on they must all succeed, with CORS off they must all fail.

  --out-dir DIR where results go (default: target/browser-check); emptied first
  --no-build    do not run cargo build; use the release binary already in the target directory
  -h, --help    this help

Environment:
  CARGO_TARGET_DIR   where cargo puts the binaries (default: <repo>/target)
  CHROMIUM           the browser to run (default: chromium)

Results in the output directory: summary.txt (the table printed at the end), on.dom.html and
off.dom.html (the page after its scripts ran), on.rows and off.rows (the table read from them),
on.png and off.png (screenshots), logs/.

Needs (Debian packages): chromium, redis-server, nginx-light, curl, python3, and cargo unless
--no-build.
EOF
}

BUILD=1
OUT="$ROOT/target/browser-check"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out-dir) [[ $# -ge 2 ]] || { usage >&2; exit 2; }; OUT="$2"; shift ;;
    --no-build) BUILD=0 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

SCRIPT_NAME=browser-check
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"

# ---------------------------------------------------------------------------------------------
# Prerequisites, each with the Debian package that provides it.
CHROMIUM="${CHROMIUM:-chromium}"
need "$CHROMIUM" redis-server redis-cli curl python3 timeout nginx
[[ $BUILD -eq 0 ]] || need cargo
find_nginx NGINX

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/conduit-api"
if [[ $BUILD -eq 1 ]]; then
  log "building conduit-api (release)"
  (cd "$ROOT" && nice -n 10 cargo build --release --quiet -p conduit-api)
fi
[[ -x "$BIN" ]] || die "$BIN missing (run without --no-build)"

# Only ever empty a directory that is empty or holds an earlier browser check.
if [[ -d "$OUT" && -n "$(ls -A "$OUT")" && ! -e "$OUT/summary.txt" ]]; then
  die "$OUT is not empty and holds no earlier browser check; choose another --out-dir"
fi
rm -rf "$OUT"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
LOGS="$OUT/logs"
# The marker that lets a later run empty this directory; the final table replaces it.
echo "browser check started $(date -u +%FT%TZ), not finished" >"$OUT/summary.txt"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/conduit-browser.XXXXXX")"
# nginx workers run as an unprivileged user when started by root; they only need to traverse.
chmod 755 "$TMP"

# ---------------------------------------------------------------------------------------------
# Everything started is recorded here and stopped on exit, whatever the exit.
PIDS=()
cleanup() {
  local rc=$? pid
  set +e
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every request goes to 127.0.0.1, never through a proxy. Tracing stays on (trace ids in
# X-Trace-Id) but exports nowhere.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY \
  OTEL_SDK_DISABLED OTEL_EXPORTER_OTLP_ENDPOINT OTEL_EXPORTER_OTLP_TRACES_ENDPOINT

wait_http() { # URL NAME PID
  local i
  for i in $(seq 1 200); do
    curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || die "$2 exited while starting (see $LOGS)"
    sleep 0.05
  done
  die "$2 did not answer $1 within 10 s"
}

free_port REDIS_PORT
free_port NGINX_PORT
free_port PAGE_PORT
REPLICA_PORTS=()
for _ in 1 2 3; do
  free_port port
  REPLICA_PORTS+=("$port")
done
API="http://127.0.0.1:$NGINX_PORT"
PAGE="http://127.0.0.1:$PAGE_PORT/index.html?api=$API"

redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$TMP" \
  --daemonize no --logfile "$LOGS/redis.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && break
  sleep 0.05
done
[[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] || die "redis-server did not start"

"$BIN" keygen --kid browser --out "$TMP/jwt-keys" 2>/dev/null

python3 -m http.server "$PAGE_PORT" --bind 127.0.0.1 --directory "$ROOT/scripts/browser" \
  >"$LOGS/page-server.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$PAGE_PORT/index.html" "the page server" "${PIDS[-1]}"

mkdir -p "$TMP/nginx"
{
  echo "upstream api {"
  for port in "${REPLICA_PORTS[@]}"; do echo "  server 127.0.0.1:$port;"; done
  echo "  keepalive 8;"
  echo "}"
} >"$TMP/nginx/upstream.conf"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $LOGS/nginx-error.log notice;
events { worker_connections 256; }
http {
  access_log $LOGS/nginx-access.log;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  include $TMP/nginx/upstream.conf;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF

# Starts the replicas and nginx with CONDUIT_CORS_ORIGINS=$1; stop_cluster stops them again.
CLUSTER=()
start_cluster() {
  local i port
  for i in 0 1 2; do
    port=${REPLICA_PORTS[$i]}
    CONDUIT_ADDR="127.0.0.1:$port" CONDUIT_REPLICA_ID="api-$((i + 1))" \
      REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CONDUIT_REDIS_PREFIX=browser \
      CONDUIT_JWT_KEYS_FILE="$TMP/jwt-keys" CONDUIT_CORS_ORIGINS="$1" CONDUIT_DRAIN_SECONDS=0 \
      CONDUIT_WORKERS=1 CONDUIT_TRUST_FORWARDED=true CONDUIT_REGISTRATIONS_PER_ADDRESS=0 RUST_LOG=info \
      "$BIN" serve >>"$LOGS/api-$((i + 1)).log" 2>&1 &
    PIDS+=($!)
    CLUSTER+=($!)
    wait_http "http://127.0.0.1:$port/readyz" "replica api-$((i + 1))" "$!"
  done
  "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>>"$LOGS/nginx-error.log" &
  PIDS+=($!)
  CLUSTER+=($!)
  wait_http "$API/readyz" nginx "$!"
}
stop_cluster() {
  local pid
  for pid in "${CLUSTER[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CLUSTER[@]}"; do wait "$pid" 2>/dev/null || true; done
  CLUSTER=()
}

# Headless Chromium on the page, with a new empty profile each time. Extra arguments select
# the output (--dump-dom or --screenshot=FILE).
browser() { # NAME ARGS...
  local name=$1 profile
  shift
  profile="$(mktemp -d "$TMP/profile.XXXXXX")"
  timeout -k 5 120 "$CHROMIUM" --headless=new --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --disable-dev-shm-usage --no-proxy-server --user-data-dir="$profile" --virtual-time-budget=20000 "$@" "$PAGE" \
    2>>"$LOGS/chromium-$name.log"
}

# Prints one tab-separated line per table row (step, ok, status, served by, trace id), then
# the verdict line, from a DOM dump.
parse_dom() {
  python3 - "$1" <<'PY'
import sys
from html.parser import HTMLParser

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.verdict, self.in_verdict, self.text = [], None, False, ""
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-step" in a:
            self.rows.append([a.get(k) or "-" for k in
                              ("data-step", "data-ok", "data-status", "data-served-by", "data-trace-id")])
        if a.get("id") == "verdict":
            self.verdict, self.in_verdict = a.get("data-verdict"), True
    def handle_endtag(self, tag):
        self.in_verdict = False
    def handle_data(self, data):
        if self.in_verdict:
            self.text += data

page = Page()
page.feed(open(sys.argv[1], encoding="utf-8").read())
for row in page.rows:
    print("\t".join(row))
print("verdict\t%s\t%s" % (page.verdict or "MISSING", page.text.strip()))
PY
}

# One round: cluster up with CORS set to $2, DOM dump and screenshot, cluster down.
# Leaves the parsed rows in $OUT/$1.rows.
round() { # NAME CORS
  local name=$1 cors=$2
  log "round '$name': CONDUIT_CORS_ORIGINS=$cors, page $PAGE"
  start_cluster "$cors"
  browser "$name" --dump-dom >"$OUT/$name.dom.html" || die "chromium failed (see $LOGS/chromium-$name.log)"
  browser "$name" --screenshot="$OUT/$name.png" --window-size=1280,800 >/dev/null ||
    die "chromium screenshot failed (see $LOGS/chromium-$name.log)"
  stop_cluster
  parse_dom "$OUT/$name.dom.html" >"$OUT/$name.rows"
}

round on '*'
round off none

# ---------------------------------------------------------------------------------------------
# Verdicts: with CORS on, PASS and every call ok; with CORS off, FAIL and no call got through.
problems=()
on_verdict=$(awk -F'\t' '$1 == "verdict" {print $2}' "$OUT/on.rows")
on_calls=$(awk -F'\t' '$1 != "verdict"' "$OUT/on.rows" | wc -l)
on_ok=$(awk -F'\t' '$1 != "verdict" && $2 == "yes"' "$OUT/on.rows" | wc -l)
off_verdict=$(awk -F'\t' '$1 == "verdict" {print $2}' "$OUT/off.rows")
off_calls=$(awk -F'\t' '$1 != "verdict"' "$OUT/off.rows" | wc -l)
off_blocked=$(awk -F'\t' '$1 != "verdict" && $3 == "blocked"' "$OUT/off.rows" | wc -l)
[[ "$on_verdict" == PASS && $on_calls -eq 4 && $on_ok -eq 4 ]] ||
  problems+=("CORS on: verdict $on_verdict, $on_ok of $on_calls calls succeeded (4 of 4 expected)")
[[ "$off_verdict" == FAIL && $off_calls -eq 4 && $off_blocked -eq 4 ]] ||
  problems+=("CORS off: verdict $off_verdict, $off_blocked of $off_calls calls blocked (4 of 4 expected)")
[[ -s "$OUT/on.png" && -s "$OUT/off.png" ]] || problems+=("a screenshot is missing")

{
  printf '%-5s %-16s %-3s %-8s %-10s %s\n' cors call ok status served_by trace_id
  for name in on off; do
    awk -F'\t' -v m="$name" '$1 != "verdict" {printf "%-5s %-16s %-3s %-8s %-10s %s\n", m, $1, $2, $3, $4, $5}' \
      "$OUT/$name.rows"
  done
  echo
  for name in on off; do
    awk -F'\t' -v m="$name" '$1 == "verdict" {printf "cors %-3s page verdict: %s\n", m, $3}' "$OUT/$name.rows"
  done
  if [[ ${#problems[@]} -eq 0 ]]; then
    echo "browser check: PASS (CORS on: every call succeeded in Chromium; CORS off: every call was blocked)"
  else
    printf 'browser check: FAIL: %s\n' "${problems[@]}"
  fi
  echo "screenshots: $OUT/on.png $OUT/off.png"
} | tee "$OUT/summary.txt"
[[ ${#problems[@]} -eq 0 ]]
