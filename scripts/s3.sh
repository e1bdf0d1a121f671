#!/usr/bin/env bash
# Runs an S3-compatible object store for the tests of s3:// inputs and outputs
# (crates/essaim/tests/e2e/mapreduce_s3.rs).
# Usage: scripts/s3.sh start|stop|status [DIR]   (DIR defaults to target/s3)
#
# - start: starts the server on 127.0.0.1 only, on $S3_PORT, else the port it had before
#   in DIR, else a free one; its objects are files under DIR/store (a bucket is a
#   directory there: `mkdir DIR/store/BUCKET` creates one). Waits until it answers HTTP,
#   then prints its endpoint `http://127.0.0.1:PORT` on stdout and writes it to DIR/url
#   (its pid to DIR/pid, its log to DIR/log). A server already running for DIR is
#   reused: start is idempotent.
# - stop: stops the server of DIR (SIGTERM, SIGKILL after 10 s); nothing running is fine.
# - status: prints the endpoint and exits 0 when the server of DIR runs, exits 1
#   otherwise.
#
# Credentials: every request must be signed (AWS Signature V4) with the access key
# `essaim-test` and the secret key `essaim-test-secret` ($S3_ACCESS_KEY and
# $S3_SECRET_KEY change them); a request signed with other keys is refused.
#
# The server is s3s-fs (crates.io `s3s-fs`, Apache-2.0: the file-system back end of the
# s3s project's S3 protocol implementation, in Rust), pinned, built once with
# `cargo install --locked --features binary` into target/s3-tools/ (4 to 10 minutes on
# two cores) and copied to ~/.cache/essaim/ so that another clone on the same machine
# (CI's) reuses it. Version 0.14.1 is the newest that builds with the project's
# toolchain (later ones need Rust 1.96). MinIO and SeaweedFS are packaged neither by
# Debian nor on PyPI; moto's server mode (PyPI) is an emulator of AWS rather than a
# store. $S3S_FS names a binary to use instead.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:-}"
dir="${2:-$root/target/s3}"
s3s_version="0.14.1"
tools="$root/target/s3-tools/s3s-fs-$s3s_version"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/essaim/s3s-fs-$s3s_version"

process_pattern=s3s-fs
# shellcheck source=scripts/lib/server.sh
source "$root/scripts/lib/server.sh"

# True when the binary is the pinned s3s-fs.
is_pinned() {
    [[ -x "$1" ]] && [[ "$("$1" --version 2>/dev/null)" == "s3s-fs $s3s_version" ]]
}

# Copies the built binary to the user's cache (best effort: it only saves a build).
keep_in_cache() {
    if mkdir -p "$cache/bin" 2>/dev/null && cp "$tools/bin/s3s-fs" "$cache/bin/s3s-fs.tmp" 2>/dev/null; then
        mv "$cache/bin/s3s-fs.tmp" "$cache/bin/s3s-fs"
    else
        log "could not keep a copy of s3s-fs in $cache"
    fi
}

# Prints the path of an s3s-fs binary, building the pinned version if needed.
find_server() {
    if [[ -n "${S3S_FS:-}" ]]; then
        [[ -x "$S3S_FS" ]] || die "\$S3S_FS=$S3S_FS is not an executable"
        echo "$S3S_FS"
        return
    fi
    if is_pinned "$tools/bin/s3s-fs"; then
        is_pinned "$cache/bin/s3s-fs" || keep_in_cache
        echo "$tools/bin/s3s-fs"
        return
    fi
    if is_pinned "$cache/bin/s3s-fs"; then
        log "using the s3s-fs $s3s_version kept in $cache"
        mkdir -p "$tools/bin"
        cp "$cache/bin/s3s-fs" "$tools/bin/s3s-fs.tmp" && mv "$tools/bin/s3s-fs.tmp" "$tools/bin/s3s-fs"
        echo "$tools/bin/s3s-fs"
        return
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build s3s-fs $s3s_version"
    log "building s3s-fs $s3s_version into $tools: 4 to 10 minutes on two cores, once"
    # A target directory of its own: the workspace's is not disturbed.
    CARGO_TARGET_DIR="$root/target/s3-tools/build" \
        cargo install s3s-fs --version "$s3s_version" --locked --features binary \
        --root "$tools" >&2 || die "cargo install s3s-fs $s3s_version failed"
    is_pinned "$tools/bin/s3s-fs" || die "cargo install left no s3s-fs $s3s_version in $tools/bin"
    rm -rf "$root/target/s3-tools/build"
    keep_in_cache
    echo "$tools/bin/s3s-fs"
}

# True once the server answers an HTTP request (an unsigned one is refused, with an
# S3 error document: that is an answer).
answers() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 \
        && printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 \
        && head -c 12 <&3" 2>/dev/null | grep -q '^HTTP/1\.[01] '
}

start() {
    if running; then
        cat "$dir/url"
        return
    fi
    local server port
    mkdir -p "$root/target/s3-tools"
    server="$(flock "$root/target/s3-tools/install.lock" "$0" find-server)"
    port="$(pick_port "${S3_PORT:-}")"
    mkdir -p "$dir/store"
    # setsid and closed descriptors: the server outlives this script and holds none of
    # its caller's pipes open.
    RUST_LOG="${S3_LOG:-warn}" setsid "$server" --host 127.0.0.1 --port "$port" \
        --access-key "${S3_ACCESS_KEY:-essaim-test}" \
        --secret-key "${S3_SECRET_KEY:-essaim-test-secret}" \
        "$dir/store" >>"$dir/log" 2>&1 </dev/null 9>&- &
    await_server s3s-fs "$server" "$!" "$port" "http://127.0.0.1:$port" 400
}

server_main "$command" find-server find_server
