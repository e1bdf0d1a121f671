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

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

step "tests (unit, deterministic simulation, end-to-end with real processes)"
# The end-to-end tests start real coordinator and worker processes of the binary built here.
if cargo nextest --version >/dev/null 2>&1; then
    # nextest skips doctests; run them first so the suite's summary is the last line.
    cargo test --workspace --doc --quiet
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
