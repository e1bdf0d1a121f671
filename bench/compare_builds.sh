#!/usr/bin/env bash
# Two builds of essaim side by side, interleaved round by round in one session: task-farm
# no-op throughput (bench/taskfarm.sh) and word count against rust-wc 2 threads
# (bench/wordcount.sh), so that a change that should not move performance (a
# restructuring, a dependency bump) is shown not to, within the machine's noise.
#
# usage: bench/compare_builds.sh BIN_A BIN_B CORPUS RUST_WC [ROUNDS=3] [TASKS=100000]
#   BIN_A, BIN_B: two release binaries of essaim (e.g. built from two commits with
#     `git worktree add DIR REV && CARGO_TARGET_DIR=DIR/target cargo build --release -p essaim`)
#   CORPUS: a word-count input (shared/bench/gen_corpus.py --bytes 1GiB --vocab generated)
#   RUST_WC: the rust-wc binary (built from shared/bench/rust-wc, see run_mapreduce_all.sh)
# Each round runs: A task farm, B task farm, rust-wc, A word count, rust-wc, B word count
# (each essaim word count right after a rust-wc run, as in run_mapreduce_all.sh). Prints
# one line per run and, at the end, the medians and the ratios B/A and essaim/rust-wc.
set -uo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 4 ]] || { sed -n '2,15p' "$0" >&2; exit 2; }
bin_a=$1 bin_b=$2 corpus=$3 rust_wc=$4 rounds=${5:-3} tasks=${6:-100000}
for f in "$bin_a" "$bin_b" "$rust_wc"; do [[ -x $f ]] || { echo "$f: not executable" >&2; exit 2; }; done
[[ -r $corpus ]] || { echo "$corpus: not readable" >&2; exit 2; }
out=$(mktemp -d "${TMPDIR:-/tmp}/essaim-compare-XXXXXX")
trap 'rm -rf "$out"' EXIT
results=$out/results.tsv

taskfarm() {  # name bin
  local rate
  rate=$(ESSAIM_BIN=$2 "$bench/taskfarm.sh" auto "$tasks" 200 2>/dev/null \
    | awk -F= '/^METRIC thr_tasks_per_s=/ { print $2 }')
  [[ -n $rate ]] || { echo "task farm of $1 failed" >&2; exit 1; }
  printf 'tf\t%s\t%s\n' "$1" "$rate" | tee -a "$results"
}
wordcount() {  # name bin
  local start end
  start=$EPOCHREALTIME
  ESSAIM_BIN=$2 "$bench/wordcount.sh" "$corpus" "$out/wc-$1" >/dev/null 2>&1 \
    || { echo "word count of $1 failed" >&2; exit 1; }
  end=$EPOCHREALTIME
  printf 'wc\t%s\t%s\n' "$1" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" | tee -a "$results"
}
rust_wc_run() {
  local start end
  start=$EPOCHREALTIME
  "$rust_wc" "$corpus" --threads 2 --out "$out/rust-wc.tsv" >/dev/null || { echo "rust-wc failed" >&2; exit 1; }
  end=$EPOCHREALTIME
  printf 'wc\trust-wc\t%s\n' "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')" | tee -a "$results"
}

for round in $(seq "$rounds"); do
  echo "# round $round"
  taskfarm A "$bin_a"; taskfarm B "$bin_b"
  rust_wc_run; wordcount A "$bin_a"; rust_wc_run; wordcount B "$bin_b"
done

python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    bench, name, value = line.split()
    runs.setdefault((bench, name), []).append(float(value))
med = {key: statistics.median(values) for key, values in runs.items()}
print(f"task farm no-ops/s, median: A {med['tf','A']:,.0f}  B {med['tf','B']:,.0f}  B/A {med['tf','B'] / med['tf','A']:.3f}")
print(f"word count s, median: rust-wc {med['wc','rust-wc']:.2f}  A {med['wc','A']:.2f}  B {med['wc','B']:.2f}")
print(f"word count ratio to rust-wc: A {med['wc','A'] / med['wc','rust-wc']:.3f}  B {med['wc','B'] / med['wc','rust-wc']:.3f}  B/A {med['wc','B'] / med['wc','A']:.3f}")
PY
