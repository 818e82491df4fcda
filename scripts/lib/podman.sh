# shellcheck shell=bash
# Podman prerequisites shared by the container scripts (build-images, e2e-compose, chaos
# --compose, k8s-check). Source it after lib/common.sh; then call
#
#   podman_prereqs containers|kube
#                             podman, runc, netavark + aardvark-dns (container DNS) + iptables
#                             (container networks), and for
#                             kube catatonit (the pause binary of `podman kube play`); installs
#                             deploy/podman/containers.conf when the host's settings lack them
#   podman_compose_on_path    puts podman-compose on PATH, installing the pinned version into a
#                             private virtual environment when it is not there
#
# Each check fails at once with the Debian package that fixes it, instead of letting a slow
# step time out later (nginx cannot resolve the replicas, kube play cannot start a pod).

PODMAN_LIB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PODMAN_COMPOSE_VERSION=1.6.0

# Podman looks for its helper binaries in these directories (helper_binaries_dir).
podman_helper_found() {
    local dir
    for dir in /usr/local/libexec/podman /usr/local/lib/podman /usr/libexec/podman /usr/lib/podman; do
        [[ -x "$dir/$1" ]] && return 0
    done
    command -v "$1" >/dev/null 2>&1
}

# True when the host's containers.conf already names runc and netavark.
podman_conf_ok() {
    local conf=/etc/containers/containers.conf
    grep -qs '^ *runtime *= *"runc"' "$conf" && grep -qs '^ *network_backend *= *"netavark"' "$conf"
}

podman_prereqs() {
    local use=${1:?podman_prereqs needs containers or kube} missing=() tool backend
    for tool in podman runc; do
        command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
    done
    podman_helper_found netavark || missing+=(netavark)
    podman_helper_found aardvark-dns || missing+=(aardvark-dns)
    # Debian 12's netavark (1.4) sets up every container network with iptables, but its package
    # does not depend on it: without it, every container fails to start ("netavark: No such
    # file or directory").
    command -v iptables >/dev/null 2>&1 || [[ -x /usr/sbin/iptables ]] || missing+=(iptables)
    if [[ $use == kube ]]; then
        podman_helper_found catatonit || missing+=(catatonit)
    fi
    if [[ ${#missing[@]} -gt 0 ]]; then
        die "missing: ${missing[*]} (on Debian/Ubuntu: apt-get install -y --no-install-recommends ${missing[*]})"
    fi

    # runc: crun refuses hosts with hybrid cgroups; netavark: the CNI backend gives containers
    # no DNS for service names. The project's file also lowers the default ulimits.
    if ! podman_conf_ok; then
        [[ $(id -u) == 0 ]] ||
            die "/etc/containers/containers.conf must set runtime = \"runc\" and network_backend = \"netavark\" (as root: install -D -m 0644 deploy/podman/containers.conf /etc/containers/containers.conf)"
        if [[ -e /etc/containers/containers.conf && ! -e /etc/containers/containers.conf.orig ]]; then
            cp /etc/containers/containers.conf /etc/containers/containers.conf.orig
        fi
        printf 'installing deploy/podman/containers.conf as /etc/containers/containers.conf\n' >&2
        install -D -m 0644 "$PODMAN_LIB_ROOT/deploy/podman/containers.conf" /etc/containers/containers.conf
    fi

    backend=$(podman info --format '{{.Host.NetworkBackend}}' 2>/dev/null) ||
        die "podman info failed: $(podman info 2>&1 | tail -n 3)"
    [[ $backend == netavark ]] ||
        die "podman's network backend is '$backend', not netavark: compose service names would not resolve (apt-get install -y --no-install-recommends netavark aardvark-dns; network_backend = \"netavark\" under [network] in /etc/containers/containers.conf)"
}

podman_compose_on_path() {
    command -v podman-compose >/dev/null 2>&1 && return 0
    # Not packaged in Debian 12 at this version: a virtual environment of our own.
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/conduit/podman-compose-$PODMAN_COMPOSE_VERSION"
    if [[ ! -x "$venv/bin/podman-compose" ]]; then
        printf 'installing podman-compose %s into %s\n' "$PODMAN_COMPOSE_VERSION" "$venv" >&2
        python3 -m venv "$venv" >/dev/null 2>&1 ||
            die "python3 -m venv failed (apt-get install -y --no-install-recommends python3-venv)"
        "$venv/bin/pip" install --quiet "podman-compose==$PODMAN_COMPOSE_VERSION" ||
            die "pip install podman-compose==$PODMAN_COMPOSE_VERSION failed"
    fi
    PATH="$venv/bin:$PATH"
    export PATH
}
