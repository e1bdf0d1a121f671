#!/usr/bin/env bash
# Incremental re-runs measured: a word count over FILES files, then one file changed and
# the same job run again with the workers' task cache, which maps only the changed file
# (the other map outputs are taken from the cache). Prints both wall times and the ratio.
#
# usage: bench/incremental.sh            (from the repository root or bench/)
#   e.g. ESSAIM_BIN=target/release/essaim FILES=100 FILE_BYTES=4000000 bench/incremental.sh
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), WORK_DIR (/tmp/essaim-incremental),
#        FILES (100), FILE_BYTES (2000000), REDUCERS (2), WORKERS (2).
#
# Both runs are `essaim run wordcount --no-packing --task-cache DIR` on an embedded
# cluster (one map task per file); the first starts from an empty cache. The re-run's
# output is checked equal to the first run's, but for the changed file's words.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "incremental.sh: $bin missing; run: cargo build --release -p essaim" >&2; exit 2; }
work=${WORK_DIR:-/tmp/essaim-incremental}
files=${FILES:-100}
file_bytes=${FILE_BYTES:-2000000}
reducers=${REDUCERS:-2}
workers=${WORKERS:-2}

rm -rf "$work"
mkdir -p "$work/in"
python3 - "$work/in" "$files" "$file_bytes" <<'PY'
import random, sys
directory, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
words = [f"w{i}" for i in range(5000)]
for index in range(files):
    chunks, length = [], 0
    while length < size:
        line = " ".join(words[int(rng.paretovariate(1.2)) % len(words)] for _ in range(12))
        chunks.append(line)
        length += len(line) + 1
    with open(f"{directory}/doc-{index:04}.txt", "w") as out:
        out.write("\n".join(chunks) + "\n")
PY

run() { # OUTPUT_NAME: prints the wall seconds and the reused map tasks
  "$bin" run wordcount --input "$work/in" --output-dir "$work/$1" --no-packing \
    --reducers "$reducers" --workers "$workers" --task-cache "$work/cache" --format json \
    > "$work/$1.json"
  python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["succeeded"], s; print(s["wall_seconds"], s["reused_map_tasks"], s["map_tasks"])' "$work/$1.json"
}

read -r full_s full_reused maps < <(run full)
echo "the changed file's words" >> "$work/in/doc-$(printf %04d $((files / 2))).txt"
read -r rerun_s rerun_reused _ < <(run rerun)
cat "$work"/full/part-* | sort > "$work/full.sorted"
cat "$work"/rerun/part-* | sort > "$work/rerun.sorted"
differing=$(comm -3 "$work/full.sorted" "$work/rerun.sorted" | wc -l)

echo "files=$files file_bytes=$file_bytes map_tasks=$maps reducers=$reducers workers=$workers binary=$bin"
printf 'full run:  %8.2f s (%s reused)\n' "$full_s" "$full_reused"
printf 're-run:    %8.2f s (%s of %s map tasks reused)\n' "$rerun_s" "$rerun_reused" "$maps"
python3 -c 'import sys; print(f"ratio re-run/full: {float(sys.argv[2])/float(sys.argv[1]):.3f}")' "$full_s" "$rerun_s"
echo "output lines differing from the full run (the changed file's words only): $differing"
