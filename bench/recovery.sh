#!/usr/bin/env bash
# essaim recovery time: SIGKILL one of 2 busy workers (2 slots each, 60 s sleep tasks)
# and measure, from the client, the time until the coordinator has declared the worker
# dead and re-queued its 2 tasks (attempts_failed >= 2). Each run starts a fresh local
# cluster with heartbeat = timeout / 5.
#
# usage: bench/recovery.sh [RUNS=5] [WORKER_TIMEOUT_MS...=5000 1000]
# Prints METRIC recovery_t<MS>_run<K>_s, recovery_t<MS>_median_s,
# recovery_t<MS>_worker_timeout_s for each timeout (one key set per timeout so that
# bench.py keeps them apart). Exits non-zero if any run fails.
# env: ESSAIM_BIN (default: <repo>/target/release/essaim)
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "recovery.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
runs=${1:-5}
shift || true
timeouts=("$@")
((${#timeouts[@]})) || timeouts=(5000 1000)
export RUST_LOG=${RUST_LOG:-warn}
err=$(mktemp)
trap 'rm -f "$err"' EXIT
rc=0
for ms in "${timeouts[@]}"; do
  out=$("$bin" bench recovery --runs "$runs" --worker-timeout-ms "$ms" 2>"$err")
  r=$?
  sed -n "s/^METRIC recovery_/METRIC recovery_t${ms}_/p" <<<"$out"
  if [[ $r != 0 ]]; then echo "recovery.sh: essaim bench recovery --worker-timeout-ms $ms exited $r" >&2; tail -20 "$err" >&2; rc=1; fi
done
exit "$rc"
