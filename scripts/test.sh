#!/usr/bin/env bash
# The project's test command: starts a throwaway redis-server and a throwaway 3-primary,
# 3-replica Redis Cluster on free loopback ports, then runs cargo fmt --check, cargo clippy
# (warnings are errors), the whole test suite against the single node, and the API's
# integration suite again against the cluster.
set -euo pipefail

usage() {
  cat <<'HELP'
Usage: scripts/test.sh [--no-lint] [-- <extra cargo test args>]

Runs, from the repository root:
  1. cargo fmt --all -- --check
  2. cargo clippy --workspace --all-targets -- -D warnings
  3. cargo test --workspace (cargo nextest run when available), with a private redis-server
     on a free 127.0.0.1 port exported as CONDUIT_TEST_REDIS_URL.
  4. the conduit-api integration suite (--test api) again in cluster mode, against a private
     Redis Cluster (3 primaries, 3 replicas) whose seeds are exported as
     CONDUIT_TEST_REDIS_CLUSTER_URLS.

Options:
  --no-lint     skip steps 1 and 2
  --no-cluster  skip step 4
  -h, --help  show this help
Environment:
  TEST_LOG=1  show the replicas' logs in test output
HELP
}

lint=1
cluster=1
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-lint) lint=0; shift ;;
    --no-cluster) cluster=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
SCRIPT_NAME="test"
# shellcheck source=scripts/lib/common.sh
. "$root/scripts/lib/common.sh"
# shellcheck source=scripts/lib/redis-cluster.sh
. "$root/scripts/lib/redis-cluster.sh"

need cargo redis-server redis-cli
port=""
free_port port
workdir="$(mktemp -d)"
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir" \
  --daemonize yes --pidfile "$workdir/redis.pid" --logfile "$workdir/redis.log"
cleanup() {
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  redis_cluster_stop
  rm -rf "$workdir"
}
trap cleanup EXIT
for _ in $(seq 1 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$port" ping >/dev/null || { cat "$workdir/redis.log" >&2; die "redis-server did not start"; }
export CONDUIT_TEST_REDIS_URL="redis://127.0.0.1:$port"
log "redis-server on $CONDUIT_TEST_REDIS_URL"

if [[ $cluster == 1 ]]; then
  redis_cluster_start "$workdir" || exit 1
  log "redis cluster on $REDIS_CLUSTER_URLS"
fi

if [[ $lint == 1 ]]; then
  log "cargo fmt --check"
  cargo fmt --all -- --check
  log "cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
fi

log "cargo test"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "${extra[@]}"
  # nextest does not run doctests
  cargo test --workspace --doc "${extra[@]}"
else
  cargo test --workspace --no-fail-fast "${extra[@]}"
fi

if [[ $cluster == 1 ]]; then
  log "conduit-api integration suite in cluster mode"
  if cargo nextest --version >/dev/null 2>&1; then
    CONDUIT_TEST_REDIS_CLUSTER_URLS="$REDIS_CLUSTER_URLS" \
      cargo nextest run -p conduit-api --test api --no-fail-fast "${extra[@]}"
  else
    CONDUIT_TEST_REDIS_CLUSTER_URLS="$REDIS_CLUSTER_URLS" \
      cargo test -p conduit-api --test api --no-fail-fast "${extra[@]}"
  fi
fi
