#!/usr/bin/env bash
# essaim task-farm benchmark: no-op throughput and single-task round trip, in the
# METRIC format of the peer scripts (shared/bench/tf_*.py), so bench.py records both alike.
#
# usage: bench/taskfarm.sh [PREFETCH=0] [TASKS=100000] [LATENCY_SAMPLES=2000]
#   PREFETCH: a number (0 = pure pull), auto or auto:MAX (see `essaim worker --help`)
#   Starts `essaim local --workers 2 --slots 2 --prefetch PREFETCH` on a free loopback
#   port with a fresh temporary data dir (durable journal), runs
#   `essaim bench taskfarm` against it, then stops the cluster with SIGINT and waits.
#   Exits non-zero if the cluster does not come up, the benchmark fails, or the cluster
#   does not stop cleanly.
# env: ESSAIM_BIN (default: <repo>/target/release/essaim), WORKERS (2), SLOTS (2)
#
# Through the harness, from the repo root:
#   python3 ../shared/bench/bench.py --name tf_essaim_p0 --out bench/results/tf.jsonl -- "bench/taskfarm.sh 0 100000 2000"
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prefetch=${1:-0}
tasks=${2:-100000}
lat=${3:-2000}
workers=${WORKERS:-2}
slots=${SLOTS:-2}
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "taskfarm.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
export RUST_LOG=${RUST_LOG:-warn}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
dir=$(mktemp -d "${TMPDIR:-/tmp}/essaim-tf-XXXXXX")
log=$dir/local.log
cluster_pid=
cleanup() {
  if [[ -n $cluster_pid ]] && kill -0 "$cluster_pid" 2>/dev/null; then
    kill -KILL "$cluster_pid" 2>/dev/null; wait "$cluster_pid" 2>/dev/null
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$EPOCHREALTIME
"$bin" local --workers "$workers" --slots "$slots" --prefetch "$prefetch" \
  --listen "127.0.0.1:$port" --data-dir "$dir/data" 2>"$log" &
cluster_pid=$!
up=0
for _ in $(seq 600); do  # 60 s
  if grep -q "local cluster is up" "$log" 2>/dev/null; then up=1; break; fi
  kill -0 "$cluster_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ $up != 1 ]]; then
  echo "taskfarm.sh: the local cluster did not come up; its log:" >&2
  cat "$log" >&2
  exit 1
fi
awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "METRIC startup_s=%.4f\n", b - a }'
echo "METRIC prefetch=$prefetch"
echo "METRIC workers=$workers"
echo "METRIC slots=$slots"

"$bin" bench taskfarm --coordinator "http://127.0.0.1:$port" --tasks "$tasks" --latency-samples "$lat"
rc=$?
[[ $rc == 0 ]] || echo "taskfarm.sh: essaim bench taskfarm exited $rc" >&2

# Journal counters of the whole session (warm-up job + throughput job + latency jobs):
# how many group commits (one fdatasync each) carried how many journal events.
if command -v curl >/dev/null; then
  curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null | awk '
    /^essaim_coordinator_journal_commit_seconds_count / { print "METRIC journal_commits=" $2 }
    /^essaim_coordinator_journal_commit_seconds_sum /   { s = $2 }
    /^essaim_coordinator_journal_commit_seconds_count / { c = $2 }
    /^essaim_coordinator_journal_batch_events_sum /     { print "METRIC journal_events=" $2 }
    /^essaim_coordinator_tasks_committed_total /        { print "METRIC tasks_committed=" $2 }
    END { if (c > 0) printf "METRIC journal_commit_mean_us=%.1f\n", s / c * 1e6 }'
fi

kill -INT "$cluster_pid"
stopped=0
for _ in $(seq 600); do  # 60 s
  kill -0 "$cluster_pid" 2>/dev/null || { stopped=1; break; }
  sleep 0.1
done
if [[ $stopped == 1 ]]; then
  wait "$cluster_pid"; crc=$?
  cluster_pid=
  if [[ $crc != 0 ]]; then echo "taskfarm.sh: essaim local exited $crc" >&2; [[ $rc == 0 ]] && rc=1; fi
else
  echo "taskfarm.sh: essaim local did not stop within 60 s of SIGINT; killed" >&2
  rc=1
fi
# Warnings and errors of the cluster (RUST_LOG=warn), for the harness log.
grep -v -e '^essaim local cluster is up' -e '^  ' -e '^Press Ctrl-C' -e '^stopping' -e '^stopped' "$log" | tail -20 >&2
echo "essaim $("$bin" --version 2>/dev/null | awk '{print $2}') ${ESSAIM_BUILD:-binary $bin, repo HEAD now $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)}"
exit "$rc"
