#!/usr/bin/env bash
# The large sort (TeraSort style) against GNU sort, for sizes whose plain text the disk
# cannot hold three times over: input, intermediate data and output are compressed.
#
# usage: bench/sort_large.sh ROWS FILES WORKDIR [gen|essaim|gnu|all]   (default: all)
#   ROWS 1000000000 is 100 GB of 100-byte lines (essaim gen sort --rows).
#
# Steps (each prints METRIC lines; `all` runs them in this order):
#   gen     essaim gen sort --rows ROWS --files FILES --compress-output zst → WORKDIR/input
#           (each .zst file is read whole by one map task: FILES bounds the parallelism)
#   essaim  essaim run sort, 2 workers × 1 slot, 2 reducers, --sort-buffer 256MiB,
#           --compress-output zst (map outputs are LZ4 as always), then sort-validate of
#           the parts; the parts are deleted after validation, before GNU runs
#   gnu     zstd -dc input | LC_ALL=C sort -S 512M --parallel=2 --compress-program=lz4
#           -T WORKDIR/gnu-tmp | zstd -1 → WORKDIR/gnu/sorted.zst, then sort-validate
#           (the same 512 MiB and 2 threads; temporary runs compressed as essaim's are)
# Both validations must report the input's record count and checksum, and sorted.
# While each step runs, the free space of WORKDIR's file system is sampled every second:
# METRIC disk_used_peak_gib is the most the step used beyond what was used before it.
# env: ESSAIM_BIN (default <repo>/target/release/essaim), GNU_MEM (512M), SORT_BUFFER
#      (256MiB), GNU_COMPRESS (lz4)
set -uo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
export RUST_LOG=${RUST_LOG:-warn}
[[ $# -ge 3 ]] || { sed -n '2,21p' "$0" >&2; exit 2; }
rows=$1 files=$2 work=$3 step=${4:-all}
[[ -x $bin ]] || { echo "sort_large.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
for tool in zstd lz4 sort; do
  command -v "$tool" > /dev/null || { echo "sort_large.sh: $tool is missing" >&2; exit 2; }
done
mkdir -p "$work"

free_bytes() { df -B1 --output=avail "$work" | tail -1; }
# Runs "$@" while sampling free space; prints the step's wall time and peak disk use.
measured() {
  local name=$1
  shift
  local before samples
  before=$(free_bytes)
  samples=$(mktemp)
  (while :; do free_bytes >> "$samples"; sleep 1; done) &
  local sampler=$! t0=$EPOCHREALTIME
  "$@"
  local rc=$?
  kill "$sampler" 2> /dev/null
  wait "$sampler" 2> /dev/null
  awk -v a="$t0" -v b="$EPOCHREALTIME" -v n="$name" 'BEGIN { printf "METRIC %s_wall_s=%.1f\n", n, b - a }'
  sort -n "$samples" | head -1 | awk -v b="$before" -v n="$name" \
    '{ printf "METRIC %s_disk_used_peak_gib=%.2f\n", n, (b - $1) / 2^30 }'
  rm -f "$samples"
  return "$rc"
}

validate() { # validate NAME INPUT...: sort-validate with one reducer, prints its report
  local name=$1
  shift
  "$bin" run sort-validate --input "$@" --output "$work/validate-$name" --overwrite \
    --reducers 1 --workers 2 --format json > /dev/null || return 1
  awk -v n="$name" '$1 == "records" || $1 == "checksum" || $1 == "misordered" {
      print "METRIC " n "_" $1 "=" $2 } $1 == "OK" { ok = 1 }
    END { print "METRIC " n "_sorted=" (ok ? 1 : 0) }' "$work/validate-$name"/part-*
  rm -rf "$work/validate-$name"
}

gen() {
  measured gen "$bin" gen sort --rows "$rows" --files "$files" --compress-output zst \
    --output-dir "$work/input" --overwrite || return 1
  echo "METRIC input_stored_gib=$(du -sb "$work/input" | awk '{ printf "%.2f", $1 / 2^30 }')"
  validate input "$work"/input/input-*.zst
}

essaim_job() { # the sort itself, its summary in essaim.json
  python3 "$bench/peak_rss.py" -- "$bin" run sort --input "$work/input" \
    --output "$work/essaim" --overwrite --reducers 2 --workers 2 \
    --sort-buffer "${SORT_BUFFER:-256MiB}" --compress-output zst --format json \
    > "$work/essaim.json"
}

essaim_sort() {
  measured essaim essaim_job || return 1
  grep '^METRIC' "$work/essaim.json"  # peak RSS per process (bench/peak_rss.py)
  python3 "$bench/mr_metrics.py" "$work/essaim.json"
  echo "METRIC essaim_output_stored_gib=$(du -sb "$work/essaim" | awk '{ printf "%.2f", $1 / 2^30 }')"
  validate essaim "$work"/essaim/part-*
  rm -rf "$work/essaim"
}

gnu_sort() {
  mkdir -p "$work/gnu" "$work/gnu-tmp"
  measured gnu python3 "$bench/peak_rss.py" -- bash -c "zstd -dcq '$work'/input/input-*.zst \
    | LC_ALL=C sort -S '${GNU_MEM:-512M}' --parallel=2 --compress-program='${GNU_COMPRESS:-lz4}' \
        -T '$work/gnu-tmp' | zstd -1 -q -o '$work/gnu/sorted.zst'" || return 1
  echo "METRIC gnu_output_stored_gib=$(du -sb "$work/gnu" | awk '{ printf "%.2f", $1 / 2^30 }')"
  validate gnu "$work/gnu/sorted.zst"
  rm -rf "$work/gnu" "$work/gnu-tmp"
}

echo "sort_large: $rows rows in $files files under $work, $(date -u +%FT%TZ)"
echo "essaim $("$bin" --version | awk '{ print $2 }'), repo HEAD $(git -C "$repo" rev-parse --short HEAD)"
sort --version | head -1
case $step in
gen) gen ;;
essaim) essaim_sort ;;
gnu) gnu_sort ;;
all) gen && essaim_sort && gnu_sort ;;
*) echo "sort_large.sh: unknown step $step" >&2; exit 2 ;;
esac
