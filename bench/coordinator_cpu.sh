#!/usr/bin/env bash
# Coordinator CPU time per no-op task: a steadier figure than throughput on a noisy
# machine, for comparing two builds of the coordinator's hot path.
#
# usage: bench/coordinator_cpu.sh [TASKS=300000]
#   Starts `essaim local --workers 2 --slots 2` (the coordinator runs in that process,
#   the workers in children), runs `essaim bench taskfarm` with TASKS no-ops, and prints
#   the CPU time (user + system, from /proc/PID/stat) the coordinator's process spent
#   meanwhile, divided by TASKS.
# env: ESSAIM_BIN (default: <repo>/target/release/essaim)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
tasks=${1:-300000}
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "coordinator_cpu.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d "${TMPDIR:-/tmp}/essaim-cpu-XXXXXX")
RUST_LOG=warn "$bin" local --workers 2 --slots 2 --listen "127.0.0.1:$port" --data-dir "$dir/data" 2>"$dir/log" &
pid=$!
trap 'kill -KILL $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 600); do grep -q "local cluster is up" "$dir/log" && break; sleep 0.1; done
grep -q "local cluster is up" "$dir/log" || { cat "$dir/log" >&2; exit 1; }
ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
"$bin" bench taskfarm --coordinator "http://127.0.0.1:$port" --tasks "$tasks" --latency-samples 10 >/dev/null
after=$(ticks)
kill -INT "$pid"; wait "$pid" 2>/dev/null || true
awk -v b="$before" -v a="$after" -v n="$tasks" -v hz="$hz" \
    'BEGIN { printf "METRIC coordinator_cpu_us_per_task=%.2f\n", (a - b) * 1e6 / hz / n }'
