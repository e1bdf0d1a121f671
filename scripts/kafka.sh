#!/usr/bin/env bash
# Runs a Kafka-protocol broker for the streaming tests (crates/essaim-connect-kafka).
# Usage: scripts/kafka.sh start|stop|status [DIR]   (DIR defaults to target/kafka)
#
# - start: starts the broker on 127.0.0.1 only, on $KAFKA_PORT, else the port it had
#   before in DIR (so a restart on the same store keeps its bootstrap address), else a
#   free one; its store is DIR/store. Waits until it answers a Kafka ApiVersions
#   request, then prints the bootstrap address `127.0.0.1:PORT` on stdout and writes it
#   to DIR/url (and its pid to DIR/pid, its log to DIR/log). A broker already running
#   for DIR is reused: start is idempotent.
#   With $KAFKA_TLS_CERT and $KAFKA_TLS_KEY (PEM files) clients must speak TLS: the
#   broker listens on a second, internal port, and stunnel (Debian's `stunnel4`,
#   installed if missing; Tansu has no TLS listener of its own) terminates TLS on the
#   advertised one; the address printed is then `ssl://127.0.0.1:PORT`. With
#   $KAFKA_TLS_CLIENT_CA as well, stunnel requires client certificates signed by it.
# - stop: stops the broker of DIR (SIGTERM, SIGKILL after 10 s); nothing running is fine.
#   Tansu takes about 5 s to exit while clients are still connected.
# - status: prints the bootstrap address and exits 0 when the broker of DIR runs, exits
#   1 otherwise.
#
# The broker is Tansu (crates.io `tansu`, Apache-2.0, a Kafka-compatible broker written
# in Rust), pinned, built once with `cargo install --locked` into target/kafka-tools/
# (15 to 35 minutes on two cores) and copied to ~/.cache/essaim/ so that another clone
# on the same machine (CI's) reuses it instead of building again. Apache Kafka itself
# is not installable here: no Debian package, and the PyPI helpers that run it download
# the distribution from the Apache archive at run time. $TANSU names a binary to use
# instead.
#
# Durability: the store is SQLite (DIR/store/tansu.db, Tansu's `libsql` feature); every
# produce is one committed SQLite transaction before the broker answers. Tansu fixes the pragmas at `journal_mode = WAL, synchronous = NORMAL` and
# offers no setting for more: a committed transaction survives a crash of the broker
# process (SIGKILL included), but the last ones may be lost if the machine itself loses
# power. That is the most this broker allows; it is enough for tests, not for production.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:-}"
dir="${2:-$root/target/kafka}"
tansu_version="0.6.0"
tools="$root/target/kafka-tools/tansu-$tansu_version"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/essaim/tansu-$tansu_version"

process_pattern=tansu
# shellcheck source=scripts/lib/server.sh
source "$root/scripts/lib/server.sh"

# True when the binary is the pinned tansu.
is_pinned() {
    [[ -x "$1" ]] && [[ "$("$1" --version 2>/dev/null)" == "tansu $tansu_version" ]]
}

# Copies the built binary to the user's cache (best effort: it only saves a build).
keep_in_cache() {
    if mkdir -p "$cache/bin" 2>/dev/null && cp "$tools/bin/tansu" "$cache/bin/tansu.tmp" 2>/dev/null; then
        mv "$cache/bin/tansu.tmp" "$cache/bin/tansu"
    else
        log "could not keep a copy of tansu in $cache"
    fi
}

# Prints the path of a tansu binary, building the pinned version if needed.
find_broker() {
    if [[ -n "${TANSU:-}" ]]; then
        [[ -x "$TANSU" ]] || die "\$TANSU=$TANSU is not an executable"
        echo "$TANSU"
        return
    fi
    if is_pinned "$tools/bin/tansu"; then
        is_pinned "$cache/bin/tansu" || keep_in_cache
        echo "$tools/bin/tansu"
        return
    fi
    # A fresh clone (CI's) has an empty target/: a copy kept in the user's cache by an
    # earlier build on this machine saves the build.
    if is_pinned "$cache/bin/tansu"; then
        log "using the tansu $tansu_version kept in $cache"
        mkdir -p "$tools/bin"
        cp "$cache/bin/tansu" "$tools/bin/tansu.tmp" && mv "$tools/bin/tansu.tmp" "$tools/bin/tansu"
        echo "$tools/bin/tansu"
        return
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build tansu $tansu_version"
    log "building tansu $tansu_version (features libsql) into $tools: 15 to 35 minutes on two cores, once"
    # A target directory of its own: the workspace's is not disturbed, and the build
    # cache survives a failed attempt.
    CARGO_TARGET_DIR="$root/target/kafka-tools/build" \
        cargo install tansu --version "$tansu_version" --locked --features libsql \
        --root "$tools" >&2 || die "cargo install tansu $tansu_version failed"
    is_pinned "$tools/bin/tansu" || die "cargo install left no tansu $tansu_version in $tools/bin"
    rm -rf "$root/target/kafka-tools/build"
    keep_in_cache
    echo "$tools/bin/tansu"
}

# True once the broker answers an ApiVersions v0 request (correlation id 7, client id
# "p") with a response carrying that correlation id.
answers() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 \
        && printf '\x00\x00\x00\x0b\x00\x12\x00\x00\x00\x00\x00\x07\x00\x01p' >&3 \
        && head -c 8 <&3" 2>/dev/null | od -An -tx1 | tr -d ' \n' | grep -q '^........00000007$'
}

# Prints the path of stunnel, installing Debian's package if needed.
find_stunnel() {
    local binary
    for binary in stunnel4 stunnel; do
        if command -v "$binary" >/dev/null 2>&1; then command -v "$binary"; return; fi
    done
    log "installing the Debian package stunnel4 (TLS in front of the broker)"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends stunnel4)
    if ! as_root "${apt[@]}" >&2; then
        as_root apt-get update >&2 || true
        as_root "${apt[@]}" >&2 || die "failed to install the Debian package stunnel4"
    fi
    command -v stunnel4 || die "the stunnel4 package left no stunnel4 on the PATH"
}

# Starts stunnel on `tls_port`, passing decrypted connections to the broker's `port`.
start_tls_front() {
    local tls_port="$1" port="$2" stunnel
    stunnel="$(find_stunnel)"
    {
        echo "foreground = yes"
        echo "pid ="
        echo "[kafka]"
        echo "accept = 127.0.0.1:$tls_port"
        echo "connect = 127.0.0.1:$port"
        echo "cert = $KAFKA_TLS_CERT"
        echo "key = $KAFKA_TLS_KEY"
        if [[ -n ${KAFKA_TLS_CLIENT_CA:-} ]]; then
            echo "CAfile = $KAFKA_TLS_CLIENT_CA"
            echo "verify = 2"
        fi
    } >"$dir/stunnel.conf"
    setsid "$stunnel" "$dir/stunnel.conf" >>"$dir/stunnel.log" 2>&1 </dev/null 9>&- &
    echo "$!" >"$dir/stunnel.pid"
    echo "$tls_port" >"$dir/tls_port"
    for _ in $(seq 1 100); do
        if ! port_is_free "$tls_port"; then return; fi
        kill -0 "$(cat "$dir/stunnel.pid")" 2>/dev/null \
            || { tail -5 "$dir/stunnel.log" >&2; die "stunnel exited at start (log: $dir/stunnel.log)"; }
        sleep 0.05
    done
    die "stunnel did not listen on 127.0.0.1:$tls_port within 5 s (log: $dir/stunnel.log)"
}

# Stops the TLS front of DIR, if any (called by `stop`).
stop_companions() {
    [[ -f "$dir/stunnel.pid" ]] || return 0
    kill -TERM "$(cat "$dir/stunnel.pid")" 2>/dev/null || true
    rm -f "$dir/stunnel.pid"
}

start() {
    if running; then
        cat "$dir/url"
        return
    fi
    local broker port advertised url
    # Tests start brokers in several directories at once: one of them builds, the others
    # wait for it and reuse what it built.
    mkdir -p "$root/target/kafka-tools"
    broker="$(flock "$root/target/kafka-tools/install.lock" "$0" find-broker)"
    port="$(pick_port "${KAFKA_PORT:-}")"
    advertised="$port"
    url="127.0.0.1:$port"
    if [[ -n ${KAFKA_TLS_CERT:-} && -n ${KAFKA_TLS_KEY:-} ]]; then
        # Picked while the broker's port is still free: mark it taken first.
        advertised="$(pick_port "${KAFKA_TLS_PORT:-}" tls_port)"
        while [[ "$advertised" == "$port" ]]; do advertised="$(pick_port "" none)"; done
        stop_companions
        start_tls_front "$advertised" "$port"
        url="ssl://127.0.0.1:$advertised"
    fi
    mkdir -p "$dir/store"
    # setsid and closed descriptors: the broker outlives this script and holds none of
    # its caller's pipes open. Tansu opens a `sqlite://` URL relative to its working
    # directory (an absolute path included), hence `env -C` and a relative name.
    CLUSTER_ID=essaim-test \
        LISTENER_URL="tcp://127.0.0.1:$port" \
        ADVERTISED_LISTENER_URL="tcp://127.0.0.1:$advertised" \
        STORAGE_ENGINE="sqlite://tansu.db" \
        RUST_LOG="${KAFKA_LOG:-warn}" \
        setsid env -C "$dir/store" "$broker" broker >>"$dir/log" 2>&1 </dev/null 9>&- &
    await_server tansu "$broker" "$!" "$port" "$url" 600
}

server_main "$command" find-broker find_broker
