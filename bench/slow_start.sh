#!/usr/bin/env bash
# Slow start against none: the same word count with --slowstart 0.05 (the default) and
# --slowstart 1.0 (reducers wait for every map task), interleaved round by round on an
# embedded local cluster, plus a skewed job where one map task is far slower than the
# others (a streaming word count whose mapper sleeps on one file), where overlapping the
# shuffle with the map stage has the most to win.
#
# usage: bench/slow_start.sh            (from the repository root or bench/)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), ROUNDS (5), WORK_DIR
#        (/tmp/essaim-slow-start), MB (200: size of the generated corpus), SPLIT (8MiB),
#        REDUCERS (4), SLOTS (the local cluster's default, one per core)
#
# Every output is checked against the first run's. Results: bench/results/slow_start.jsonl
# (one JSON object per run: workload, share, seconds, early attempts) and medians on
# standard output.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "slow_start.sh: $bin missing; run: cargo build --release -p essaim" >&2; exit 2; }
work=${WORK_DIR:-/tmp/essaim-slow-start}
rounds=${ROUNDS:-5}
mb=${MB:-200}
split=${SPLIT:-8MiB}
reducers=${REDUCERS:-4}
slots_args=()
[[ -n ${SLOTS:-} ]] && slots_args=(--slots "$SLOTS")
results=$bench/results/slow_start.jsonl
mkdir -p "$bench/results" "$work"

corpus=$work/corpus-${mb}mb
if [[ ! -d $corpus ]]; then
  mkdir -p "$corpus"
  python3 - "$corpus" "$mb" <<'PY'
import random, sys
out, mb = sys.argv[1], int(sys.argv[2])
rng = random.Random(18)
words = [f"w{i}" for i in range(20000)]
files = max(1, mb // 8)
for n in range(files):
    with open(f"{out}/part-{n:04d}.txt", "w") as f:
        size = 0
        while size < 8 * 1024 * 1024:
            line = " ".join(words[int(rng.paretovariate(1.1)) % len(words)] for _ in range(12)) + "\n"
            f.write(line)
            size += len(line)
PY
fi
skewed=$work/skewed
if [[ ! -d $skewed ]]; then
  mkdir -p "$skewed"
  for n in $(seq 0 15); do head -c 2000000 "$corpus/part-0000.txt" > "$skewed/part-$n.txt"; done
  printf 'SLOWDOWN here\nw1 w2\n' > "$skewed/slow.txt"
fi
mapper='awk -F "[ \t]+" '"'"'{ if ($1 == "SLOWDOWN") system("sleep 3"); for (i = 1; i <= NF; i++) if ($i != "") print $i "\t1" }'"'"
reducer='awk -F "\t" '"'"'$1 != k { if (NR > 1) print k "\t" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k "\t" n }'"'"

run() {  # workload share round
  local workload=$1 share=$2 round=$3 output=$work/out-$1-$2 start end
  rm -rf "$output"
  start=$EPOCHREALTIME
  if [[ $workload == wordcount ]]; then
    "$bin" run wordcount "${slots_args[@]}" --input "$corpus" --output-dir "$output" \
      --reducers "$reducers" --split-size "$split" --slowstart "$share" --format json > "$work/summary.json"
  else
    "$bin" run streaming "${slots_args[@]}" --input "$skewed" --output-dir "$output" \
      --reducers 2 --no-packing --mapper "$mapper" --reducer "$reducer" --slowstart "$share" \
      --format json > "$work/summary.json"
  fi
  end=$EPOCHREALTIME
  local reference=$work/reference-$workload
  if [[ ! -d $reference ]]; then
    mkdir -p "$reference" && cat "$output"/part-* | sort > "$reference/sorted"
  elif ! cmp -s <(cat "$output"/part-* | sort) "$reference/sorted"; then
    echo "slow_start.sh: $workload with --slowstart $share differs from the first run" >&2; exit 1
  fi
  python3 - "$workload" "$share" "$round" "$start" "$end" "$work/summary.json" >> "$results" <<'PY'
import json, sys
workload, share, round_, start, end, summary = sys.argv[1:]
counters = json.load(open(summary)).get("counters", {})
print(json.dumps({"workload": workload, "share": float(share), "round": int(round_),
                  "seconds": round(float(end) - float(start), 3),
                  "shuffle_rounds": counters.get("shuffle.rounds", 0),
                  "load1": float(open("/proc/loadavg").read().split()[0])}))
PY
  tail -n 1 "$results"
}

: > "$results"
for round in $(seq "$rounds"); do
  for workload in wordcount skewed; do
    if (( round % 2 )); then order="0.05 1.0"; else order="1.0 0.05"; fi
    for share in $order; do run "$workload" "$share" "$round"; done
  done
done

python3 - "$results" <<'PY'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    run = json.loads(line)
    runs.setdefault((run["workload"], run["share"]), []).append(run["seconds"])
for workload in ("wordcount", "skewed"):
    early, late = (statistics.median(runs[(workload, s)]) for s in (0.05, 1.0))
    print(f"{workload}: slowstart 0.05 median {early:.2f} s, 1.0 median {late:.2f} s, "
          f"ratio {early / late:.3f} ({len(runs[(workload, 0.05)])} runs each)")
PY
