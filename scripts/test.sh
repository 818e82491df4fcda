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
log() { echo "[test] $*" >&2; }

for tool in cargo redis-server redis-cli; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      cargo) hint="install a Rust toolchain with rustup" ;;
      redis-server) hint="apt-get install -y --no-install-recommends redis-server" ;;
      redis-cli) hint="apt-get install -y --no-install-recommends redis-tools" ;;
    esac
    echo "error: '$tool' is not installed ($hint)" >&2
    exit 1
  fi
done

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# A cluster node also listens on its port + 10000 (the cluster bus): pick a port below 55536
# whose bus port is free too.
free_cluster_port() {
  python3 -c '
import random, socket
while True:
    p = random.randint(20000, 45000)
    try:
        for q in (p, p + 10000):
            s = socket.socket(); s.bind(("127.0.0.1", q)); s.close()
        print(p); break
    except OSError:
        pass
'
}
port="$(free_port)"
workdir="$(mktemp -d)"
cluster_ports=()
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$workdir" \
  --daemonize yes --pidfile "$workdir/redis.pid" --logfile "$workdir/redis.log"
cleanup() {
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  for p in "${cluster_ports[@]}"; do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$workdir"
}
trap cleanup EXIT
for _ in $(seq 1 50); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$port" ping >/dev/null || { echo "error: redis-server did not start" >&2; cat "$workdir/redis.log" >&2; exit 1; }
export CONDUIT_TEST_REDIS_URL="redis://127.0.0.1:$port"
log "redis-server on $CONDUIT_TEST_REDIS_URL"

# Six cluster nodes, each in a directory of its own, formed into 3 primaries with a replica each.
start_cluster() {
  local p dir
  for _ in 1 2 3 4 5 6; do
    p="$(free_cluster_port)"
    dir="$workdir/cluster-$p"
    mkdir -p "$dir"
    redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes \
      --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 2000 \
      --save '' --appendonly no --dir "$dir" \
      --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
    cluster_ports+=("$p")
  done
  for p in "${cluster_ports[@]}"; do
    for _ in $(seq 1 50); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  local nodes=()
  for p in "${cluster_ports[@]}"; do nodes+=("127.0.0.1:$p"); done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$workdir/cluster-create.log" 2>&1 \
    || { echo "error: redis-cli --cluster create failed" >&2; cat "$workdir/cluster-create.log" >&2; exit 1; }
  for _ in $(seq 1 100); do
    if redis-cli -p "${cluster_ports[0]}" cluster info | grep -q '^cluster_state:ok'; then
      local urls=()
      for p in "${cluster_ports[@]}"; do urls+=("redis://127.0.0.1:$p"); done
      CLUSTER_URLS="$(IFS=,; echo "${urls[*]}")"
      return 0
    fi
    sleep 0.1
  done
  echo "error: the test cluster did not reach cluster_state:ok" >&2
  exit 1
}
if [[ $cluster == 1 ]]; then
  start_cluster
  log "redis cluster on $CLUSTER_URLS"
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
    CONDUIT_TEST_REDIS_CLUSTER_URLS="$CLUSTER_URLS" \
      cargo nextest run -p conduit-api --test api --no-fail-fast "${extra[@]}"
  else
    CONDUIT_TEST_REDIS_CLUSTER_URLS="$CLUSTER_URLS" \
      cargo test -p conduit-api --test api --no-fail-fast "${extra[@]}"
  fi
fi
