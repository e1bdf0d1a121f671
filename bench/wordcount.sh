#!/usr/bin/env bash
# essaim word count on an embedded local cluster, in the METRIC format of the peer scripts
# (shared/bench/wc_*.py), so that bench.py records essaim and the peers alike.
#
# usage: bench/wordcount.sh INPUT OUTDIR [REDUCERS=2]
#   Runs `essaim run wordcount --input INPUT --output OUTDIR --overwrite --reducers R
#   --workers 2 --format json` (coordinator in this process, 2 `essaim worker` child
#   processes, 1 slot each on 2 cores), under bench/peak_rss.py, which reports the peak
#   RSS of each process. OUTDIR gets part-* files of `word<TAB>count` lines and _SUCCESS.
#   Exits non-zero if the job fails.
# env: ESSAIM_BIN (default <repo>/target/release/essaim), WORKERS (2), SLOTS (default:
#      essaim's, cores / workers), SPLIT_SIZE (64MiB), SORT_BUFFER (64MiB), EXTRA (more
#      `essaim run` flags, e.g. "-D wordcount.max_map_entries=100000")
# METRIC lines: cmd_wall_s (the `essaim run` process from start to exit: cluster start,
#   job and cluster stop, without this script's own ~0.1 s of bash and Python start-up),
#   job_s (essaim's wall_seconds: cluster start → output committed, cluster stop
#   excluded), input_bytes, map_tasks, reducers, one per counter (c_<name>), and the
#   rss_* lines of peak_rss.py (rss_main_mib = client + coordinator, rss_worker<i>_mib).
#
# Through the harness, from bench/:
#   python3 ../../shared/bench/bench.py --name mr_wc_essaim_1g --bytes 1073741823 \
#     --out results/mr.jsonl -- "./wordcount.sh /tmp/corpus/corpus_1g.txt /tmp/mr_out/essaim_1g"
set -uo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
[[ $# -ge 2 ]] || { echo "usage: $0 INPUT OUTDIR [REDUCERS]" >&2; exit 2; }
input=$1
out=$2
reducers=${3:-2}
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "wordcount.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
export RUST_LOG=${RUST_LOG:-warn}

slots=()
[[ -n ${SLOTS:-} ]] && slots=(--slots "$SLOTS")
json=$(mktemp "${TMPDIR:-/tmp}/essaim-wc-XXXXXX.json")
trap 'rm -f "$json"' EXIT
# shellcheck disable=SC2086  # EXTRA is a list of flags
python3 "$bench/peak_rss.py" -- "$bin" run wordcount --input "$input" --output "$out" --overwrite \
  --reducers "$reducers" --workers "${WORKERS:-2}" "${slots[@]}" \
  --split-size "${SPLIT_SIZE:-64MiB}" --sort-buffer "${SORT_BUFFER:-64MiB}" ${EXTRA:-} \
  --format json > "$json"
rc=$?
cat "$json"
python3 "$bench/mr_metrics.py" "$json" || { [[ $rc == 0 ]] && rc=1; }
if [[ -n ${ESSAIM_BUILD:-} ]]; then echo "essaim $ESSAIM_BUILD"; else
  echo "essaim $("$bin" --version 2>/dev/null | awk '{print $2}') binary $bin, repo HEAD now $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)"; fi
[[ $rc == 0 ]] || echo "wordcount.sh: essaim run exited $rc" >&2
exit "$rc"
