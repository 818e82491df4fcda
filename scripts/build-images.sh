#!/usr/bin/env bash
# Builds every container image of the compose stack without a container registry.
#
# 1. Stand-ins for the public base images, made from Debian packages with debootstrap and
#    tagged localhost/...; each is skipped when the image already exists:
#      builder  bookworm + gcc, libc6-dev, ca-certificates, pkg-config and the environment of the
#               official Rust image (the Rust toolchain itself is mounted from the host at build
#               time, read-only)
#      runtime  a distroless-like root filesystem: glibc, libgcc, CA certificates, a non-root
#               user 65532 "nonroot", no shell
#      nginx    Debian testing's nginx-light (has `server ... resolve`), laid out like the
#               official nginx image (/etc/nginx/templates, NGINX_ENTRYPOINT_LOCAL_RESOLVERS)
#      redis    bookworm's redis-server, data in /data, runs as user redis
# 2. The application images, with the same deploy/Containerfile as the online build:
#      localhost/conduit-api:<version>, and localhost/otlp-receiver:<version> when
#      services/otlp-receiver exists.
# Jaeger has no stand-in: deploy/compose.offline.yaml puts the otlp-receiver in its place.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

usage() {
    cat <<'EOF'
Usage: scripts/build-images.sh [OPTIONS]

Builds the offline base image stand-ins (debootstrap) and the application images.

Options:
  --base-only        build only the base image stand-ins
  --apps-only        build only the application images (the stand-ins must exist)
  --rebuild-base     rebuild the stand-ins even when they exist
  --no-otlp          do not build the otlp-receiver image
  -h, --help         show this help

Environment (defaults in brackets):
  DEBIAN_MIRROR          [http://deb.debian.org/debian]
  BUILDER_IMAGE          builder stand-in tag [localhost/rust:offline-bookworm]
  RUNTIME_IMAGE          runtime stand-in tag [localhost/distroless-cc:offline-bookworm]
  NGINX_OFFLINE_IMAGE    nginx stand-in tag [localhost/nginx:offline]
  REDIS_OFFLINE_IMAGE    redis stand-in tag [localhost/redis:offline]
  CONDUIT_API_IMAGE      [localhost/conduit-api:<workspace version>]
  OTLP_RECEIVER_IMAGE    [localhost/otlp-receiver:<workspace version>]
  RUSTUP_HOME, CARGO_HOME  host Rust toolchain to mount into the build [from rustup]
  NICE                   niceness of the builds [15]
  WORK_DIR               scratch space for root filesystems [/var/tmp]
EOF
}

SCRIPT_NAME=build-images
# shellcheck source=scripts/lib/common.sh
source "$ROOT/scripts/lib/common.sh"

BASE=1
APPS=1
REBUILD_BASE=0
OTLP=1
while [[ $# -gt 0 ]]; do
    case "$1" in
        --base-only) APPS=0 ;;
        --apps-only) BASE=0 ;;
        --rebuild-base) REBUILD_BASE=1 ;;
        --no-otlp) OTLP=0 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml")
VERSION=${VERSION:-0.1.0}
BUILDER_IMAGE=${BUILDER_IMAGE:-localhost/rust:offline-bookworm}
RUNTIME_IMAGE=${RUNTIME_IMAGE:-localhost/distroless-cc:offline-bookworm}
NGINX_OFFLINE_IMAGE=${NGINX_OFFLINE_IMAGE:-localhost/nginx:offline}
REDIS_OFFLINE_IMAGE=${REDIS_OFFLINE_IMAGE:-localhost/redis:offline}
CONDUIT_API_IMAGE=${CONDUIT_API_IMAGE:-localhost/conduit-api:$VERSION}
OTLP_RECEIVER_IMAGE=${OTLP_RECEIVER_IMAGE:-localhost/otlp-receiver:$VERSION}
NICE=${NICE:-15}
WORK_DIR=${WORK_DIR:-/var/tmp}

# shellcheck source=scripts/lib/podman.sh
source "$ROOT/scripts/lib/podman.sh"
podman_prereqs containers
if [[ $BASE == 1 ]]; then
    need debootstrap
    [[ $(id -u) == 0 ]] || die "debootstrap needs root"
fi
if [[ $APPS == 1 ]]; then
    need rustup
fi

# Images carry HEALTHCHECK and STOPSIGNAL, which only the docker image format keeps.
export BUILDAH_FORMAT=docker

SCRATCH=$(mktemp -d "$WORK_DIR/conduit-images.XXXXXX")
cleanup() { rm -rf "$SCRATCH"; }
trap cleanup EXIT

wanted() {
    # wanted IMAGE: true when IMAGE must be (re)built
    [[ $REBUILD_BASE == 1 ]] || ! podman image exists "$1"
}

bootstrap() {
    # bootstrap SUITE DIR PACKAGES: a minimal Debian root filesystem in DIR
    local suite=$1 dir=$2 packages=$3 logfile="$2.debootstrap.log"
    log "debootstrap $suite with $packages"
    nice -n "$NICE" debootstrap --variant=minbase --include="$packages" "$suite" "$dir" \
        "$DEBIAN_MIRROR" >"$logfile" 2>&1 ||
        { tail -n 30 "$logfile" >&2; die "debootstrap $suite for $dir failed"; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* \
        "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/usr/share/locale/*
}

import_and_finish() {
    # import_and_finish DIR TAG CONTAINERFILE: import DIR as TAG-rootfs, then build TAG from
    # CONTAINERFILE (whose FROM is "rootfs"); `podman import -c ENV` is not applied at run time.
    local dir=$1 tag=$2 containerfile=$3 rootfs context
    rootfs="${tag%%:*}-rootfs:${tag#*:}"
    context=$(mktemp -d "$SCRATCH/context.XXXXXX")
    log "importing $rootfs"
    tar -C "$dir" --numeric-owner -c . | podman import --quiet - "$rootfs" >/dev/null
    sed "s|^FROM rootfs\$|FROM $rootfs|" "$containerfile" >"$context/Containerfile"
    nice -n "$NICE" podman build --quiet -f "$context/Containerfile" -t "$tag" "$context" >/dev/null
    podman rmi "$rootfs" >/dev/null
    rm -rf "$dir"
    log "built $tag ($(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=si)B)"
}

build_builder() {
    local dir="$SCRATCH/builder"
    bootstrap bookworm "$dir" gcc,libc6-dev,ca-certificates,pkg-config
    cat >"$SCRATCH/builder.Containerfile" <<'EOF'
FROM rootfs
# The environment of the official Rust image; the toolchain is mounted at build time.
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["/bin/bash"]
EOF
    import_and_finish "$dir" "$BUILDER_IMAGE" "$SCRATCH/builder.Containerfile"
}

build_runtime() {
    # Bootstrap bookworm, then copy out only what a dynamically linked Rust binary needs.
    local dir="$SCRATCH/runtime-full" slim="$SCRATCH/runtime" path parent
    bootstrap bookworm "$dir" ca-certificates,netbase
    mkdir -p "$slim"/usr/{bin,lib,lib64,sbin} "$slim"/{etc,tmp,home/nonroot,var/tmp}
    for link in bin lib lib64 sbin; do ln -s "usr/$link" "$slim/$link"; done
    chmod 1777 "$slim/tmp" "$slim/var/tmp"
    chroot "$dir" dpkg -L libc6 libgcc-s1 netbase base-files |
        grep -Ev '^/usr/share/(doc|lintian|locale|man|info|common-licenses)|/gconv/' |
        while read -r path; do
            [[ -d "$dir$path" && ! -L "$dir$path" ]] && continue
            [[ -e "$dir$path" || -L "$dir$path" ]] || continue
            # Resolve /lib -> /usr/lib etc. so the merged-/usr symlinks stay symlinks.
            parent=$(cd "$dir$(dirname "$path")" && pwd -P)
            parent=${parent#"$dir"}
            mkdir -p "$slim$parent"
            cp -a "$dir$path" "$slim$parent/"
        done
    cp -a "$dir/etc/ssl" "$slim/etc/"
    cp -a "$dir/usr/share/ca-certificates" "$slim/usr/share/"
    cat >"$slim/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
    cat >"$slim/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
nonroot:x:65532:
EOF
    printf 'passwd: files\ngroup: files\nhosts: files dns\nnetworks: files\n' >"$slim/etc/nsswitch.conf"
    chown 65532:65532 "$slim/home/nonroot"
    chmod 700 "$slim/home/nonroot"
    rm -rf "$dir"
    cat >"$SCRATCH/runtime.Containerfile" <<'EOF'
FROM rootfs
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
EOF
    import_and_finish "$slim" "$RUNTIME_IMAGE" "$SCRATCH/runtime.Containerfile"
}

build_nginx() {
    local dir="$SCRATCH/nginx"
    bootstrap testing "$dir" nginx-light,gettext-base,curl
    chroot "$dir" nginx -v 2>&1 | sed 's/^/[build-images] /' >&2
    chroot "$dir" useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin nginx
    rm -f "$dir"/etc/nginx/sites-enabled/* "$dir"/etc/nginx/conf.d/*
    install -m 0644 "$ROOT/deploy/offline/nginx.conf" "$dir/etc/nginx/nginx.conf"
    install -m 0755 "$ROOT/deploy/offline/nginx-entrypoint.sh" "$dir/docker-entrypoint.sh"
    install -d "$dir/docker-entrypoint.d"
    install -m 0755 "$ROOT"/deploy/offline/nginx-entrypoint.d/* "$dir/docker-entrypoint.d/"
    mkdir -p "$dir/etc/nginx/templates" "$dir/var/log/nginx" "$dir/var/cache/nginx"
    rm -f "$dir"/var/log/nginx/*.log
    ln -s /dev/stdout "$dir/var/log/nginx/access.log"
    ln -s /dev/stderr "$dir/var/log/nginx/error.log"
    cat >"$SCRATCH/nginx.Containerfile" <<'EOF'
FROM rootfs
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT ["/docker-entrypoint.sh"]
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
EOF
    import_and_finish "$dir" "$NGINX_OFFLINE_IMAGE" "$SCRATCH/nginx.Containerfile"
}

build_redis() {
    local dir="$SCRATCH/redis"
    bootstrap bookworm "$dir" redis-server
    mkdir -p "$dir/data"
    chroot "$dir" chown redis:redis /data
    cat >"$SCRATCH/redis.Containerfile" <<'EOF'
FROM rootfs
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
CMD ["redis-server", "--protected-mode", "no"]
EOF
    import_and_finish "$dir" "$REDIS_OFFLINE_IMAGE" "$SCRATCH/redis.Containerfile"
}

build_app() {
    # build_app TARGET TAG BINS: deploy/Containerfile with the stand-ins and the host toolchain;
    # the same BINS for every target lets them share the (cached) build stage.
    local target=$1 tag=$2 bins=$3 rustup_home cargo_bin
    rustup_home=${RUSTUP_HOME:-$(rustup show home)}
    cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin
    [[ -x "$cargo_bin/cargo" ]] || cargo_bin=$(dirname "$(command -v rustup)")
    [[ -x "$cargo_bin/cargo" ]] || die "no cargo next to rustup in $cargo_bin"
    log "building $tag (toolchain from $rustup_home and $cargo_bin)"
    nice -n "$NICE" podman build --format docker -f "$ROOT/deploy/Containerfile" \
        --build-arg BUILDER="$BUILDER_IMAGE" --build-arg RUNTIME="$RUNTIME_IMAGE" \
        --build-arg BIN="$bins" --target "$target" \
        -v "$rustup_home:/usr/local/rustup:ro" -v "$cargo_bin:/usr/local/cargo/bin:ro" \
        -v /etc/ssl/certs:/etc/ssl/certs:ro \
        -t "$tag" "$ROOT" >&2
    log "built $tag ($(podman image inspect --format '{{.Size}}' "$tag" | numfmt --to=si)B)"
}

if [[ $BASE == 1 ]]; then
    # The stand-ins are independent and mostly wait for the network: build them in parallel.
    pids=()
    names=()
    for kind in builder runtime nginx redis; do
        case $kind in
            builder) image=$BUILDER_IMAGE ;;
            runtime) image=$RUNTIME_IMAGE ;;
            nginx) image=$NGINX_OFFLINE_IMAGE ;;
            redis) image=$REDIS_OFFLINE_IMAGE ;;
        esac
        if wanted "$image"; then
            "build_$kind" &
            pids+=($!)
            names+=("$image")
        else
            log "$image exists"
        fi
    done
    failed=0
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { log "building ${names[$i]} failed"; failed=1; }
    done
    [[ $failed == 0 ]] || die "could not build every base image stand-in"
fi

if [[ $APPS == 1 ]]; then
    for image in "$BUILDER_IMAGE" "$RUNTIME_IMAGE"; do
        podman image exists "$image" || die "$image is missing; run without --apps-only"
    done
    bins=conduit-api
    if [[ $OTLP == 1 && -f "$ROOT/services/otlp-receiver/Cargo.toml" ]]; then
        bins="conduit-api otlp-receiver"
    elif [[ $OTLP == 1 ]]; then
        log "services/otlp-receiver does not exist yet: skipping $OTLP_RECEIVER_IMAGE"
    fi
    build_app conduit-api "$CONDUIT_API_IMAGE" "$bins"
    if [[ $bins == *otlp-receiver* ]]; then
        build_app otlp-receiver "$OTLP_RECEIVER_IMAGE" "$bins"
    fi
fi
log "done"
