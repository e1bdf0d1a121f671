#!/usr/bin/env bash
# Word count of one corpus kept five ways: plain files, gzip files and zstd files on the
# local disk, and plain and gzip objects in an S3-compatible bucket (s3s-fs on loopback,
# from scripts/s3.sh); plus the plain files with gzip-compressed output parts.
#
# usage: bench/storage.sh            (from the repository root or bench/)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), ROUNDS (3), WORK_DIR
#        (/tmp/essaim-storage), FILES (4), MB_PER_FILE (25)
#
# The corpus: FILES files of MB_PER_FILE MB of words drawn (seed 7, Zipf-like) from a
# list of 5,000, made once under WORK_DIR; .gz with `gzip -6`, .zst with `zstd -3`.
# Each round runs every variant once, interleaved, on `essaim run` (2 workers, default
# split size 64 MiB: a plain 25 MB file is one split, as a compressed one always is).
# Every output is compared byte for byte with the plain local run's parts (the
# compressed parts after `gzip -dc`).
#
# Results: bench/results/storage.jsonl (one JSON object per run) and the median wall
# time of each variant on standard output.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "storage.sh: $bin missing; run: cargo build --release -p essaim" >&2; exit 2; }
work=${WORK_DIR:-/tmp/essaim-storage}
rounds=${ROUNDS:-3}
files=${FILES:-4}
mb=${MB_PER_FILE:-25}
results=$bench/results/storage.jsonl
mkdir -p "$bench/results" "$work"

corpus=$work/plain-$files-$mb
if [[ ! -d $corpus ]]; then
  mkdir -p "$corpus.tmp"
  python3 - "$corpus.tmp" "$files" "$mb" <<'EOF'
import random, sys
out, files, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(7)
words = [f"w{i}" for i in range(5000)]
weights = [1 / (rank + 1) for rank in range(5000)]
for index in range(files):
    with open(f"{out}/part-{index}.txt", "w") as handle:
        written = 0
        while written < mb * 1_000_000:
            line = " ".join(rng.choices(words, weights, k=12)) + "\n"
            handle.write(line)
            written += len(line)
EOF
  mv "$corpus.tmp" "$corpus"
fi
for codec in gz zst; do
  dir=$corpus-$codec
  [[ -d $dir ]] && continue
  mkdir -p "$dir.tmp"
  for file in "$corpus"/*.txt; do
    name=$(basename "$file")
    if [[ $codec == gz ]]; then gzip -6 -c "$file" > "$dir.tmp/$name.gz"; else zstd -q -3 -c "$file" > "$dir.tmp/$name.zst"; fi
  done
  mv "$dir.tmp" "$dir"
done

s3_dir=$work/s3
endpoint=$("$repo/scripts/s3.sh" start "$s3_dir" | tail -1)
trap '"$repo/scripts/s3.sh" stop "$s3_dir"' EXIT
rm -rf "$s3_dir/store/bench"
mkdir -p "$s3_dir/store/bench/plain" "$s3_dir/store/bench/gz" "$s3_dir/store/out"
cp "$corpus"/*.txt "$s3_dir/store/bench/plain/"
cp "$corpus-gz"/*.gz "$s3_dir/store/bench/gz/"
export AWS_ACCESS_KEY_ID=essaim-test AWS_SECRET_ACCESS_KEY=essaim-test-secret

bytes=$(cat "$corpus"/*.txt | wc -c)
# Runs one variant; prints its wall seconds.
run() {
  local name=$1 input=$2 output=$3; shift 3
  local summary
  summary=$("$bin" run wordcount --workers 2 --reducers 2 --input "$input" --output "$output" \
    --overwrite --format json "$@" 2>/dev/null)
  local seconds
  seconds=$(python3 -c 'import json,sys; s=json.load(sys.stdin); assert s["succeeded"], s; print(s["wall_seconds"])' <<<"$summary")
  printf '{"variant":"%s","bytes":%s,"wall_seconds":%s}\n' "$name" "$bytes" "$seconds" >> "$results"
  echo "$seconds"
}
# Compares an output's parts with the plain local run's.
same_as_reference() {
  local dir=$1 suffix=${2:-}
  for part in part-00000 part-00001; do
    if [[ -n $suffix ]]; then
      gzip -dc "$dir/$part$suffix" | cmp -s - "$work/out-local/$part" || { echo "storage.sh: $dir/$part$suffix differs" >&2; exit 1; }
    else
      cmp -s "$dir/$part" "$work/out-local/$part" || { echo "storage.sh: $dir/$part differs" >&2; exit 1; }
    fi
  done
}

declare -A times
s3=(--s3-endpoint "$endpoint" --s3-allow-http)
for round in $(seq 1 "$rounds"); do
  times[local]+="$(run local "$corpus" "$work/out-local") "
  times[local-gz]+="$(run local-gz "$corpus-gz" "$work/out-gz") "
  same_as_reference "$work/out-gz"
  times[local-zst]+="$(run local-zst "$corpus-zst" "$work/out-zst") "
  same_as_reference "$work/out-zst"
  times[s3]+="$(run s3 s3://bench/plain s3://out/plain "${s3[@]}") "
  same_as_reference "$s3_dir/store/out/plain"
  times[s3-gz]+="$(run s3-gz s3://bench/gz s3://out/gz "${s3[@]}") "
  same_as_reference "$s3_dir/store/out/gz"
  times[local-gz-output]+="$(run local-gz-output "$corpus" "$work/out-gzout" --compress-output gz) "
  same_as_reference "$work/out-gzout" .gz
  echo "round $round done" >&2
done
echo "corpus: $files files, $((bytes / 1000000)) MB; median wall seconds over $rounds rounds"
for variant in local local-gz local-zst s3 s3-gz local-gz-output; do
  # shellcheck disable=SC2086
  median=$(printf '%s\n' ${times[$variant]} | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '%-16s %6.2f s  %6.1f MB/s\n' "$variant" "$median" "$(python3 -c "print($bytes/1e6/$median)")"
done
