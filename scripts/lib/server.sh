# Shared by the scripts that run a test server (scripts/nats.sh, scripts/kafka.sh,
# scripts/etcd.sh and, for its first helpers, scripts/postgres.sh): sourced, never run.
#
# What is the same for every server lives here: messages, the pid file of DIR, picking
# a loopback port (the one DIR had before, so that a restart keeps its URL), waiting
# until a started server answers, stopping it, and the command line
# `start|stop|status [DIR]` under a lock of DIR. What differs (installing the server,
# its configuration, how it answers) stays in each script, which sets before sourcing:
#
#   dir              the server's directory
#   process_pattern  a word of the server's command line, to recognise its pid
#
# and defines `start` (with `await_server`), `answers PORT` and its internal install
# command.

script_name="$(basename "$0")"

log() { echo "$script_name: $*" >&2; }
die() { log "$*"; exit 1; }

# Runs a command as root (installing a Debian package), through sudo when not root.
as_root() {
    if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

# True when DIR/pid names a live process of the server.
running() {
    [[ -f "$dir/pid" ]] || return 1
    local pid
    pid="$(cat "$dir/pid")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$process_pattern"
}

port_is_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Prints the port to use: the one asked for (argument 1, from the script's variable),
# else the one DIR had before (in DIR/port, or the file named by argument 2) if it is
# free, else a free one.
pick_port() {
    local recorded="$dir/${2:-port}"
    if [[ -n "${1:-}" ]]; then echo "$1"; return; fi
    if [[ -f "$recorded" ]] && port_is_free "$(cat "$recorded")"; then cat "$recorded"; return; fi
    local port
    for _ in $(seq 1 200); do
        port=$((20000 + RANDOM % 40000))
        if port_is_free "$port"; then echo "$port"; return; fi
    done
    die "no free port found"
}

# Records the server just started in the background, waits until `answers PORT`
# (polling every 50 ms, `steps` times at most), then writes URL to DIR/url and prints it.
# Usage: await_server NAME BINARY PID PORT URL STEPS
await_server() {
    local name="$1" binary="$2" pid="$3" port="$4" url="$5" steps="$6"
    echo "$pid" >"$dir/pid"
    echo "$port" >"$dir/port"
    for _ in $(seq 1 "$steps"); do
        if answers "$port"; then
            echo "$url" >"$dir/url"
            log "$name $pid ($binary) listens on 127.0.0.1:$port, store $dir/store"
            cat "$dir/url"
            return
        fi
        kill -0 "$pid" 2>/dev/null || { tail -5 "$dir/log" >&2; die "$name exited at start (log: $dir/log)"; }
        sleep 0.05
    done
    kill "$pid" 2>/dev/null || true
    die "$name did not answer on 127.0.0.1:$port within $((steps / 20)) s (log: $dir/log)"
}

# Stops the server of DIR (SIGTERM, SIGKILL after 10 s); nothing running is fine. A
# script whose server runs with companions (kafka.sh's TLS front) stops them in its
# `stop_companions`.
stop() {
    if declare -F stop_companions >/dev/null; then stop_companions; fi
    if ! running; then
        rm -f "$dir/pid" "$dir/url"
        return
    fi
    local pid
    pid="$(cat "$dir/pid")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 200); do
        running || break
        sleep 0.05
    done
    if running; then kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$dir/pid" "$dir/url"
}

# Runs the script's command line: `start|stop|status [DIR]` under a lock of DIR, or the
# internal install command (which `start` calls under the install lock).
# Usage: server_main COMMAND INTERNAL_COMMAND INTERNAL_FUNCTION
server_main() {
    local command="$1" internal_command="$2" internal_function="$3"
    if [[ "$command" == "$internal_command" ]]; then
        "$internal_function"
        exit 0
    fi
    mkdir -p "$dir"
    exec 9>"$dir/.lock"
    flock 9
    case "$command" in
        start) start ;;
        stop) stop ;;
        status)
            if running; then cat "$dir/url"; else exit 1; fi
            ;;
        *)
            echo "usage: scripts/$script_name start|stop|status [DIR]" >&2
            exit 2
            ;;
    esac
}
