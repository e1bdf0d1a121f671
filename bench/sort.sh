#!/usr/bin/env bash
# Sort benchmark (TeraSort style): essaim's `sort` job against GNU sort given the same
# memory, in the METRIC format of the peer scripts so that bench.py records both alike.
#
# usage:
#   bench/sort.sh gen ROWS FILES DIR            essaim gen sort (100-byte lines, 10-byte keys)
#   bench/sort.sh essaim INPUT_DIR OUTDIR [R]   essaim run sort, 2 workers, R reducers (2)
#   bench/sort.sh gnu INPUT_DIR OUTFILE         LC_ALL=C sort -S 512M --parallel=2 (whole lines)
#   bench/sort.sh validate SORTED OUTDIR        essaim run sort-validate --reducers 1
#
# What is compared:
#   essaim: `essaim run sort --input INPUT_DIR --output OUTDIR --overwrite --reducers R
#     --sort-buffer 256MiB --workers 2 --format json`: a local cluster of 2 worker
#     processes × 1 slot; each map task sorts its split (64 MiB by default) in a sort
#     buffer of 256 MiB, so the two workers hold at most 2 × 256 MiB of buffers; keys are
#     the first 10 bytes, range-partitioned on sampled cut points; R sorted part files.
#   GNU: `LC_ALL=C sort -S 512M --parallel=2 -T TMP -o OUTFILE INPUT_DIR/input-*`: the
#     same 512 MiB of sort memory in all, 2 threads, temporary runs in TMP (next to
#     OUTFILE by default). It sorts whole lines by bytes. A generated line is
#     `key(10) ' ' row-id(32 hex) ' ' filler`, and the row ids are distinct, so the order
#     of whole lines is the order by key with ties broken by row id. essaim's sort is
#     stable (equal keys keep input order, and the generator writes rows in row-id
#     order), so both outputs are the same bytes; `cmp` of GNU's file against essaim's
#     parts concatenated checks it (run_mapreduce_all.sh does, once).
#     A key-only GNU sort needs `-t` with a byte that never occurs (keys hold spaces),
#     e.g. `sort -s -t $'\x01' -k1.1,1.10`, which is slower than whole-line
#     comparison; the whole-line sort is GNU's fastest configuration here.
# Every command runs under bench/peak_rss.py (peak RSS of each process; for essaim:
# rss_main_mib = client + coordinator, rss_worker<i>_mib per worker).
# env: ESSAIM_BIN (default <repo>/target/release/essaim), WORKERS (2), SORT_BUFFER
#      (256MiB), SPLIT_SIZE (64MiB), GNU_MEM (512M), GNU_PARALLEL (2), SORT_TMP (GNU's -T),
#      GNU_COMPRESS (e.g. lz4: GNU's --compress-program for its temporary files, as essaim
#      compresses its map outputs with LZ4)
set -uo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
export RUST_LOG=${RUST_LOG:-warn}
mode=${1:-}
shift || true
tmpjson=$(mktemp "${TMPDIR:-/tmp}/essaim-sort-XXXXXX.json")
trap 'rm -f "$tmpjson"' EXIT
need_bin() { [[ -x $bin ]] || { echo "sort.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }; }
dir_bytes() { du -sb --apparent-size "$@" 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'; }
version() { echo "essaim $("$bin" --version 2>/dev/null | awk '{print $2}') ${ESSAIM_BUILD:-binary $bin, repo HEAD now $(git -C "$repo" rev-parse --short HEAD 2>/dev/null)}"; }

case $mode in
gen)
  need_bin
  [[ $# == 3 ]] || { echo "usage: $0 gen ROWS FILES DIR" >&2; exit 2; }
  t0=$EPOCHREALTIME
  "$bin" gen sort --rows "$1" --files "$2" --output "$3" --overwrite || exit 1
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "METRIC job_s=%.4f\n", b - a }'
  echo "METRIC output_bytes=$(dir_bytes "$3")"
  ;;
essaim)
  need_bin
  [[ $# -ge 2 ]] || { echo "usage: $0 essaim INPUT_DIR OUTDIR [REDUCERS]" >&2; exit 2; }
  python3 "$bench/peak_rss.py" -- "$bin" run sort --input "$1" --output "$2" --overwrite \
    --reducers "${3:-2}" --workers "${WORKERS:-2}" --sort-buffer "${SORT_BUFFER:-256MiB}" \
    --split-size "${SPLIT_SIZE:-64MiB}" --format json > "$tmpjson"
  rc=$?
  cat "$tmpjson"
  python3 "$bench/mr_metrics.py" "$tmpjson" || { [[ $rc == 0 ]] && rc=1; }
  echo "METRIC output_bytes=$(dir_bytes "$2"/part-*)"
  echo "METRIC sort_buffer=${SORT_BUFFER:-256MiB}"
  version
  exit "$rc"
  ;;
gnu)
  [[ $# == 2 ]] || { echo "usage: $0 gnu INPUT_DIR OUTFILE" >&2; exit 2; }
  tmp=${SORT_TMP:-$(dirname "$2")/gnu-sort-tmp}
  mkdir -p "$tmp"
  t0=$EPOCHREALTIME
  compress=()
  [[ -n ${GNU_COMPRESS:-} ]] && compress=(--compress-program="$GNU_COMPRESS")
  LC_ALL=C python3 "$bench/peak_rss.py" -- sort -S "${GNU_MEM:-512M}" --parallel="${GNU_PARALLEL:-2}" \
    "${compress[@]}" -T "$tmp" -o "$2" "$1"/input-*
  rc=$?
  awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "METRIC job_s=%.4f\n", b - a }'
  echo "METRIC input_bytes=$(dir_bytes "$1"/input-*)"
  echo "METRIC output_bytes=$(dir_bytes "$2")"
  rmdir "$tmp" 2>/dev/null
  sort --version | head -1
  exit "$rc"
  ;;
validate)
  need_bin
  [[ $# == 2 ]] || { echo "usage: $0 validate SORTED OUTDIR" >&2; exit 2; }
  in=$1
  inputs=("$in")
  [[ -d $in ]] && mapfile -t inputs < <(ls -d "$in"/part-* 2>/dev/null || ls -d "$in"/input-*)
  python3 "$bench/peak_rss.py" -- "$bin" run sort-validate --input "${inputs[@]}" --output "$2" \
    --overwrite --reducers 1 --workers "${WORKERS:-2}" --format json > "$tmpjson"
  rc=$?
  cat "$tmpjson"
  python3 "$bench/mr_metrics.py" "$tmpjson" || { [[ $rc == 0 ]] && rc=1; }
  # records <N> / checksum <hex> / misordered <M> / OK
  cat "$2"/part-* | awk '
    $1 == "records"    { print "METRIC records=" $2 }
    $1 == "checksum"   { print "METRIC checksum=" $2 }
    $1 == "misordered" { print "METRIC misordered=" $2 }
    $1 == "OK"         { ok = 1 }
    { print "validate: " $0 }
    END { print "METRIC sorted_ok=" (ok ? 1 : 0) }'
  version
  exit "$rc"
  ;;
*)
  sed -n '2,12p' "$0" >&2
  exit 2
  ;;
esac
