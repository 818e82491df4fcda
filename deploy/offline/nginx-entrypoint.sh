#!/bin/sh
# Entrypoint of the offline nginx stand-in (built by scripts/build-images.sh from Debian's
# nginx-light), with the official nginx image's contract: when the command is nginx, every
# executable /docker-entrypoint.d/*.envsh is sourced (it may export variables) and every
# executable *.sh is run, in version order; then the command is executed. The stand-in ships
# 15-local-resolvers.envsh and 20-envsubst-on-templates.sh, like the official image.
set -eu

log() {
    if [ -z "${NGINX_ENTRYPOINT_QUIET_LOGS:-}" ]; then
        echo "$0: $*" >&2
    fi
}

if [ "${1:-}" = "nginx" ] || [ "${1:-}" = "nginx-debug" ]; then
    for f in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
        case "$f" in
            *.envsh)
                # shellcheck source=/dev/null
                if [ -x "$f" ]; then log "sourcing $f"; . "$f"; else log "ignoring $f, not executable"; fi ;;
            *.sh)
                if [ -x "$f" ]; then log "running $f"; "$f"; else log "ignoring $f, not executable"; fi ;;
            *) log "ignoring $f" ;;
        esac
    done
    log "configuration complete; ready for start up"
fi

exec "$@"
