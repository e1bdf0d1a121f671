#!/usr/bin/env bash
# A reducer's time per upstream map output: a word count with one map task per file
# (--no-packing) over a directory of small files, on `essaim local` (2 workers × 1 slot,
# 2 reducers), with the workers' debug lines that time each attempt and each shuffle.
#
# usage: bench/shuffle_per_upstream.sh INPUT_DIR [ROUNDS=3]
#   e.g. bench/shuffle_per_upstream.sh /tmp/essaim-small-files/man300 (made by small_files.sh)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim); PACKING_FLAG (default
#        --no-packing; empty for a binary older than packing, which never packs)
# Prints per round: the median map attempt, each reduce attempt and its fetch time, and
# the reduce attempt divided by the number of upstreams (ms per upstream).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
bin=${ESSAIM_BIN:-$bench/../target/release/essaim}
input=$1
rounds=${2:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/essaim-shuffle-XXXXXX")
local_pid=
# The local cluster stops with the script, even when a submission fails (SIGTERM: a
# background job ignores SIGINT until it installs its own handler).
trap '[[ -n $local_pid ]] && kill -TERM "$local_pid" 2>/dev/null; rm -rf "$work"' EXIT
for round in $(seq "$rounds"); do
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  RUST_LOG=warn,essaim_worker::attempt=debug,essaim_mapreduce::executor=debug \
    "$bin" local --workers 2 --slots 1 --listen "127.0.0.1:$port" 2> "$work/log" &
  local_pid=$!
  "$bin" submit wordcount --coordinator "http://127.0.0.1:$port" --input "$input" \
    --output "$work/out" --overwrite ${PACKING_FLAG---no-packing} --format json > "$work/run.json"
  kill -TERM "$local_pid"
  wait "$local_pid" || true
  local_pid=
  python3 - "$work/log" "$work/run.json" "$round" <<'PY'
import json, re, statistics, sys
run = json.load(open(sys.argv[2]))
maps, reduces, fetches = [], [], []
n = run['map_tasks']
for line in open(sys.argv[1]):
    found = re.search(r'task=(\d+) .*attempt succeeded duration_ms=(\d+)', line)
    if found:
        task, ms = int(found.group(1)), int(found.group(2))
        if task < n:
            maps.append(ms)
        elif task < n + run['reducers']:
            reduces.append(ms)
    found = re.search(r'fetch_ms=([\d.]+)', line)
    if found:
        fetches.append(float(found.group(1)))
print(f"round {sys.argv[3]}: {n} upstreams, map attempt median {statistics.median(maps)} ms, "
      f"reduce attempts {sorted(reduces)} ms (fetch {sorted(round(f, 1) for f in fetches)} ms), "
      f"{[round(r / n, 2) for r in sorted(reduces)]} ms per upstream, "
      f"{run['counters'].get('shuffle.requests', '?')} shuffle requests, job {run['wall_seconds']:.3f} s")
PY
done
