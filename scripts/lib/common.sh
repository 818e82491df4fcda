# shellcheck shell=bash
# The parts every script shares. Set SCRIPT_NAME, then source this file first:
#
#   SCRIPT_NAME=chaos
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
#
#   log MESSAGE...   one line on stderr: "[<name> HH:MM:SS] MESSAGE"
#   die MESSAGE...   log "error: MESSAGE" and exit 1
#   need TOOL...     fail at once, naming every missing tool and the Debian packages (or the
#                    other source) that bring them
#   find_nginx VAR   the nginx binary (also in /usr/sbin, which a non-root PATH may lack)
#   free_port VAR    a loopback port nothing listens on, below the kernel's ephemeral range and
#                    never handed out twice in one run, stored in VAR (not printed: a `$(...)`
#                    subshell could not remember what it handed out)

log() { printf '[%s %s] %s\n' "${SCRIPT_NAME:-script}" "$(date -u +%H:%M:%S)" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The Debian packages that bring TOOL ("apt:<packages>"), or where else it comes from.
source_of() {
    case "$1" in
        cargo | rustup) echo "other:a Rust toolchain (https://rustup.rs)" ;;
        kubectl) echo "other:npm install kubectl" ;;
        kubernetes-validate | checkov) echo "other:pip install $1" ;;
        redis-cli | redis-benchmark) echo apt:redis-tools ;;
        nginx) echo apt:nginx-light ;;
        awk) echo apt:gawk ;;
        date | base64 | sha256sum | timeout) echo apt:coreutils ;;
        python3) echo "apt:python3 python3-venv" ;;
        *) echo "apt:$1" ;;
    esac
}

need() {
    local missing=() apt=() other=() tool from
    for tool in "$@"; do
        if [[ $tool == nginx ]]; then
            command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] && continue
        else
            command -v "$tool" >/dev/null 2>&1 && continue
        fi
        missing+=("$tool")
        from=$(source_of "$tool")
        case "$from" in
            apt:*) apt+=("${from#apt:}") ;;
            *) other+=("${from#other:}") ;;
        esac
    done
    ((${#missing[@]} == 0)) && return 0
    local how=()
    ((${#apt[@]} == 0)) || how+=("apt-get install -y --no-install-recommends ${apt[*]}")
    how+=("${other[@]}")
    local text
    text=$(printf '%s; ' "${how[@]}")
    die "missing: ${missing[*]} (${text%; })"
}

find_nginx() {
    local _find_nginx_path
    _find_nginx_path=$(command -v nginx || true)
    [[ -n $_find_nginx_path ]] || { [[ -x /usr/sbin/nginx ]] && _find_nginx_path=/usr/sbin/nginx; }
    [[ -n $_find_nginx_path ]] || need nginx
    printf -v "$1" '%s' "$_find_nginx_path"
}

COMMON_PORTS_GIVEN=" "
free_port() {
    # Locals carry a prefix of their own: `free_port port` must set the caller's `port`.
    local _free_port_candidate _free_port_tries=0
    while ((_free_port_tries++ < 500)); do
        # 20000-32767: below the ephemeral range (32768 and up) the kernel gives to clients.
        _free_port_candidate=$((20000 + RANDOM % 12768))
        [[ $COMMON_PORTS_GIVEN == *" $_free_port_candidate "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$_free_port_candidate") 2>/dev/null; then
            COMMON_PORTS_GIVEN+="$_free_port_candidate "
            printf -v "$1" '%s' "$_free_port_candidate"
            return 0
        fi
    done
    die "no free port on 127.0.0.1 after 500 tries"
}
