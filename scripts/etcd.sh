#!/usr/bin/env bash
# Runs a single-member etcd for tests (the coordinator's high-availability journal).
# Usage: scripts/etcd.sh start|stop|status [DIR]   (DIR defaults to target/etcd)
#
# - start: starts etcd on 127.0.0.1 only: clients on $ETCD_PORT, else the port it had
#   before in DIR (so a restart on the same store keeps its URL), else a free one; its
#   peer port likewise (in DIR/peer_port); its store is DIR/store. Waits until /health
#   says healthy, then prints the client URL `http://127.0.0.1:PORT` on stdout and
#   writes it to DIR/url (and its pid to DIR/pid, its log to DIR/log). An etcd already
#   running for DIR is reused: start is idempotent.
# - stop: stops the etcd of DIR (SIGTERM, SIGKILL after 10 s); nothing running is fine.
# - status: prints the URL and exits 0 when the etcd of DIR runs, exits 1 otherwise.
#
# A member of a multi-member cluster: set ESSAIM_ETCD_NAME (this member's name),
# ESSAIM_ETCD_PEER_PORT (its peer port) and ESSAIM_ETCD_INITIAL_CLUSTER (every member, as
# `name=http://127.0.0.1:PEER_PORT,…`), and start every member at once: a member
# answers only once a quorum of them runs. `essaim-testkit`'s `EtcdCluster` does this.
#
# etcd comes from the Debian package etcd-server, installed when there is no etcd on
# the PATH. $ETCD names a binary to use instead. etcd fsyncs its write-ahead log before
# acknowledging a write: no setting is needed for durability.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
command="${1:-}"
dir="${2:-$root/target/etcd}"

process_pattern=etcd
# shellcheck source=scripts/lib/server.sh
source "$root/scripts/lib/server.sh"

# Prints the path of an etcd binary, installing the Debian package if needed.
find_etcd() {
    if [[ -n "${ETCD:-}" ]]; then
        [[ -x "$ETCD" ]] || die "\$ETCD=$ETCD is not an executable"
        echo "$ETCD"
        return
    fi
    if ! command -v etcd >/dev/null 2>&1; then
        log "installing the Debian package etcd-server"
        local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server)
        if ! as_root "${apt[@]}" >&2; then
            as_root apt-get update >&2 || true
            as_root "${apt[@]}" >&2 || die "failed to install the Debian package etcd-server"
        fi
    fi
    command -v etcd || die "etcd-server is installed but there is no etcd on the PATH"
}

# True once etcd says it is healthy (its cluster has a leader).
answers() {
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 \
        && printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 \
        && cat <&3" 2>/dev/null | grep -q '"health":"true"'
}

start() {
    if running; then
        cat "$dir/url"
        return
    fi
    local etcd port peer_port
    # Tests start servers in several directories at once: one of them installs, the
    # others wait for it.
    mkdir -p "$root/target"
    etcd="$(flock "$root/target/etcd-install.lock" "$0" find-etcd)"
    port="$(pick_port "${ETCD_PORT:-}")"
    peer_port="$(pick_port "${ESSAIM_ETCD_PEER_PORT:-}" peer_port)"
    [[ "$peer_port" != "$port" ]] || peer_port="$(pick_port "" peer_port)"
    echo "$peer_port" >"$dir/peer_port"
    local name="${ESSAIM_ETCD_NAME:-essaim-test}"
    local initial_cluster="${ESSAIM_ETCD_INITIAL_CLUSTER:-$name=http://127.0.0.1:$peer_port}"
    mkdir -p "$dir/store"
    # setsid and closed descriptors: etcd outlives this script and holds none of its
    # caller's pipes open.
    setsid "$etcd" --name "$name" --data-dir "$dir/store" \
        --listen-client-urls "http://127.0.0.1:$port" \
        --advertise-client-urls "http://127.0.0.1:$port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "$initial_cluster" \
        >>"$dir/log" 2>&1 </dev/null 9>&- &
    await_server etcd "$etcd" "$!" "$port" "http://127.0.0.1:$port" 400
}

server_main "$command" find-etcd find_etcd
