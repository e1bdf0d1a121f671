#!/usr/bin/env bash
# Task-farm benchmark session: essaim (prefetch 0, 256 and auto) and the peers of the shared
# benchmark folder (Python multiprocessing, Dask distributed, Celery + Redis, Ray), all
# through the shared harness bench.py, interleaved round by round in one session so that
# the machine's drift hits every system alike; then essaim's recovery time.
#
# usage: bench/run_taskfarm_all.sh
# env:   PEER_DIR  the shared peer scripts and bench.py (default: <repo>/../shared/bench)
#        ROUNDS    runs per system, one per round (default 3)
#        ONLY      e.g. "essaim mp" to run a subset (essaim|mp|dask|celery|ray|recovery)
# essaim configs: prefetch 0 (pure pull), 256 (fixed pipelining), auto (the default since
# adaptive prefetch), and 256 with one 1,000,000-task job (sustained rate).
#        SKIP_INSTALL=1 / SKIP_BUILD=1
# Output (bench/, git-ignored): results/tf.jsonl (one line per bench.py call; the
# previous session's file is kept as results/tf.<time>.jsonl), results/recovery.jsonl,
# results/session.txt (machine, versions, skipped peers), logs/<name>.runK.log.
# Then: python3 bench/summarize_taskfarm.py > bench/results/taskfarm.md
set -uo pipefail
# Sets bench, repo and peer (the shared peer scripts, from $PEER_DIR).
# shellcheck source=bench/session_common.sh
source "$(dirname "$0")/session_common.sh"
rounds=${ROUNDS:-3}
only=${ONLY:-all}
want() { [[ $only == all || " $only " == *" $1 "* ]]; }

cd "$bench"
mkdir -p results logs
[[ ${SKIP_INSTALL:-0} == 1 ]] || "$bench/install_peers.sh" || { echo "installing the peers failed" >&2; exit 1; }

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  build_essaim_release "$repo"
fi

# Pin the binary for the whole session: others may rebuild target/release meanwhile.
mkdir -p results/bin
cp "$repo/target/release/essaim" results/bin/essaim || { echo "no target/release/essaim" >&2; exit 1; }
export ESSAIM_BIN=$bench/results/bin/essaim
export ESSAIM_BUILD="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- crates || echo '+uncommitted') sha256:$(sha256sum "$ESSAIM_BIN" | cut -c1-12)"

R=results/tf.jsonl
stamp=$(date -u +%Y%m%dT%H%M%SZ)
for f in results/tf.jsonl results/recovery.jsonl; do [[ -f $f ]] && mv "$f" "${f%.jsonl}.$stamp.jsonl"; done
S=results/session.txt
{
  echo "started $(date -u +%FT%TZ)"
  echo "nproc $(nproc)"
  lscpu | grep -E '^(Model name|CPU family|Model|Thread|Core|L2|L3|Hypervisor)'
  echo "kernel $(uname -r)"
  grep MemTotal /proc/meminfo
  echo "essaim binary: $ESSAIM_BUILD (built from $(git -C "$repo" rev-parse HEAD), copied to $ESSAIM_BIN)"
  rustc --version
  python3 --version
  python3 - <<'PY'
import importlib
for m in ("dask", "distributed", "celery", "kombu", "redis", "ray", "psutil"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:  # noqa: BLE001
        print(m, "MISSING", type(e).__name__)
PY
  redis-server --version
} > "$S" 2>&1

ray_ok=1
if want ray && ! python3 -c 'import ray' 2>/dev/null; then
  ray_ok=0
  echo "SKIPPED ray: python3 cannot import ray (it did not install)" | tee -a "$S"
fi

# One run per call; the log of the kept run is renamed so that rounds do not overwrite it.
hb() {
  local name=$2
  python3 "$peer/bench.py" --runs 1 --out "$R" "$@"
  mv -f "logs/$name.run1.log" "logs/$name.round$round.log" 2>/dev/null
}
for round in $(seq "$rounds"); do
  echo "=== round $round of $rounds ($(date -u +%T)) ==="
  want essaim && hb --name tf_essaim_p0   -- "$bench/taskfarm.sh 0 100000 2000"
  want mp     && hb --name tf_mp          -- "python3 $peer/tf_mp.py 100000 2000"
  want essaim && hb --name tf_essaim_p256 -- "$bench/taskfarm.sh 256 100000 2000"
  want dask   && hb --name tf_dask        -- "python3 $peer/tf_dask.py 100000 1000"
  want essaim && hb --name tf_essaim_auto -- "$bench/taskfarm.sh auto 100000 2000"
  want celery && hb --name tf_celery      -- "$peer/tf_celery.sh 20000 1000"
  want ray && [[ $ray_ok == 1 ]] && hb --name tf_ray -- "$peer/tf_ray.sh 100000 2000"
  # Sustained rate: a 1,000,000-task job (the per-job maximum), 100 latency samples.
  want essaim && hb --name tf_essaim_p256_1m -- "$bench/taskfarm.sh 256 1000000 100"
done

if want recovery; then
  echo "=== recovery ($(date -u +%T)) ==="
  python3 "$peer/bench.py" --runs 1 --out results/recovery.jsonl --name recovery -- "$bench/recovery.sh 5 5000 1000"
fi
echo "finished $(date -u +%FT%TZ)" >> "$S"
python3 "$bench/summarize_taskfarm.py" --results "$bench/results" > results/taskfarm.md && cat results/taskfarm.md
