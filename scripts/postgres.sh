#!/usr/bin/env bash
# A private PostgreSQL cluster for tests: never the system one.
#
#   scripts/postgres.sh start  [DIR] [PORT]   start (initdb first if needed); prints the URL
#   scripts/postgres.sh stop   [DIR]          pg_ctl stop -m fast (nothing to do if stopped)
#   scripts/postgres.sh status [DIR]          exit 0 and print the URL when running
#
# DIR (default target/postgres) holds data/ (the cluster), socket/ (the unix socket,
# so nothing is written to /var/run/postgresql), log, port and url. The server listens
# on 127.0.0.1 only, with trust authentication for loopback (no password, no TLS: it
# is a throwaway test cluster) and fsync=on, so a stop or a crash behaves as in
# production. PORT defaults to the port recorded in DIR, else a free one, so a restart
# keeps the URL. Every command is idempotent.
#
# PostgreSQL refuses to run as root: as root, DIR is given to the `postgres` user that
# the Debian package creates, and the server tools run as that user through runuser.
set -euo pipefail

command=${1:-}
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${2:-$root/target/postgres}
requested_port=${3:-}
bin=/usr/lib/postgresql/15/bin

# Messages (log, die) and port_is_free; this script's own stop and status replace the
# library's.
# shellcheck source=scripts/lib/server.sh
source "$root/scripts/lib/server.sh"

install_postgres() {
    [[ -x $bin/initdb ]] && return 0
    local as_root=()
    [[ $(id -u) == 0 ]] || as_root=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get install -y --no-install-recommends postgresql >&2 \
        || { "${as_root[@]}" apt-get update >&2 \
             && "${as_root[@]}" apt-get install -y --no-install-recommends postgresql >&2; } \
        || die "failed to install the Debian package postgresql"
    [[ -x $bin/initdb ]] || die "postgresql is installed but $bin/initdb is missing"
}

# Runs a server tool as the user that owns the cluster.
as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pick_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 30000))
        if port_is_free "$port"; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

is_running() {
    [[ -f $dir/data/PG_VERSION ]] && as_owner "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

start() {
    install_postgres
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if is_running; then
        cat "$dir/url"
        return 0
    fi
    if [[ $(id -u) == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "running as root but there is no postgres user to run the server"
        chown postgres: "$dir"
    fi
    if [[ ! -f $dir/data/PG_VERSION ]]; then
        rm -rf "$dir/data"
        # --no-sync only for initdb's own files (the cluster is fresh); the server
        # itself runs with fsync=on below.
        as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
            || die "initdb failed: $(tail -5 "$dir/initdb.log")"
        cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
fsync = on
synchronous_commit = on
unix_socket_directories = '$dir/socket'
max_connections = 50
EOF
        # Loopback only, trust: a private test cluster on one machine.
        cat >"$dir/data/pg_hba.conf" <<'EOF'
local all all trust
host all all 127.0.0.1/32 trust
EOF
    fi
    as_owner mkdir -p "$dir/socket"
    local port=$requested_port
    [[ -n $port ]] || port=$(cat "$dir/port" 2>/dev/null || true)
    [[ -n $port ]] || port=$(pick_port)
    local attempt
    for attempt in 1 2 3 4 5; do
        if as_owner "$bin/pg_ctl" start -D "$dir/data" -l "$dir/log" -w -t 30 \
            -o "-p $port" >/dev/null 2>&1; then
            break
        fi
        # Another process may have taken the port between the check and the start.
        if [[ -n $requested_port || $attempt == 5 ]]; then
            die "pg_ctl start failed on port $port: $(tail -5 "$dir/log" 2>/dev/null)"
        fi
        port=$(pick_port)
    done
    echo "$port" | as_owner tee "$dir/port" >/dev/null
    for _ in $(seq 1 100); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || die "server on port $port is not ready"
    echo "postgresql://postgres@127.0.0.1:$port/postgres" | as_owner tee "$dir/url"
}

stop() {
    [[ -d $dir ]] || return 0
    if is_running; then
        as_owner "$bin/pg_ctl" stop -D "$dir/data" -m fast -w >/dev/null
    fi
}

status() {
    if is_running; then
        cat "$dir/url"
    else
        echo "postgres.sh: not running in $dir" >&2
        return 3
    fi
}

case $command in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: postgres.sh start|stop|status [DIR] [PORT]" ;;
esac
