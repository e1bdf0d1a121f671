#!/usr/bin/env bash
# Word count of a directory of many small files against the same bytes in one file,
# and against rust-wc on that file; then the fixed cost of one map task.
#
# usage: bench/small_files.sh            (from the repository root or bench/)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), ROUNDS (5), WORK_DIR
#        (/tmp/essaim-small-files), RWC (default bench/results/rust-wc-target/release/rust-wc,
#        built from ../shared/bench/rust-wc when missing and the peer folder is there),
#        EMPTY_TASKS ("1 200 800": numbers of empty input files for the task cost),
#        BIG=1 also runs 100,000 generated files of 10 KB (1 GB) against one 1 GB file.
#
# Corpora (made once under WORK_DIR; every file ends with a newline, so the concatenation
# has exactly the words of the files):
#   man300: the first 300 pages of /usr/share/man/man1, decompressed (about 2.1 MB);
#   gen300: 300 generated files of 7 KB (words of wamerican or a fixed list, seed 18);
#   gen100k (BIG=1): 100,000 generated files of 10 KB.
# Each round runs, interleaved: essaim on the directory (small files packed, the
# default), essaim on the directory with --no-packing (one map task per file), essaim
# on the concatenation, and rust-wc 2 threads on the concatenation. Every essaim output
# is checked against rust-wc's counts.
#
# The task cost: essaim run over N empty files with --no-packing and one reducer, for
# each N in EMPTY_TASKS; the slope of the job's wall time against N is the cost of one
# map task end to end (plan, grant, read, spill, commit, report, and its reducer's
# fetch), divided among the 2 slots; it is also reported times 2 (per slot).
#
# Results: bench/results/small_files.jsonl (one JSON object per run) and a summary on
# standard output (medians, ratios, the slope).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "small_files.sh: $bin missing; run: cargo build --release -p essaim" >&2; exit 2; }
work=${WORK_DIR:-/tmp/essaim-small-files}
rounds=${ROUNDS:-5}
results=$bench/results/small_files.jsonl
mkdir -p "$bench/results" "$work"
rwc=${RWC:-$bench/results/rust-wc-target/release/rust-wc}
peer=${PEER_DIR:-$repo/../shared/bench}
if [[ ! -x $rwc && -d $peer/rust-wc ]]; then
  rm -rf "$bench/results/rust-wc-src" && mkdir -p "$bench/results/rust-wc-src"
  cp -r "$peer/rust-wc/Cargo.toml" "$peer/rust-wc/src" "$bench/results/rust-wc-src/"
  chmod -R u+w "$bench/results/rust-wc-src"
  printf '\n[workspace]\n' >> "$bench/results/rust-wc-src/Cargo.toml"
  (cd "$bench/results/rust-wc-src" && CARGO_TARGET_DIR="$bench/results/rust-wc-target" cargo build --release -q)
fi

# --- corpora ---
make_man300() {
  local dir=$work/man300
  [[ -d $dir ]] && return
  mkdir -p "$dir.tmp"
  find /usr/share/man/man1 -maxdepth 1 -name '*.gz' -printf '%f\n' | LC_ALL=C sort | awk 'NR <= 300' |
    while read -r name; do
      # A page that does not end with a newline gets one, so that the concatenation
      # does not glue two words together.
      { zcat "/usr/share/man/man1/$name"; } | sed -e '$a\' > "$dir.tmp/${name%.gz}"
    done
  mv "$dir.tmp" "$dir"
}
make_generated() { # NAME FILES BYTES
  local dir=$work/$1
  [[ -d $dir ]] && return
  python3 - "$dir.tmp" "$2" "$3" <<'EOF'
import os, random, sys
out, files, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(18)
try:
    words = [w.strip() for w in open('/usr/share/dict/words', encoding='utf-8', errors='replace')]
    words = [w for w in words if w and ' ' not in w][:50000]
except OSError:
    words = [f'w{i}' for i in range(50000)]
weights = [1.0 / (rank + 1) for rank in range(len(words))]
os.makedirs(out, exist_ok=True)
width = len(str(files))
for index in range(files):
    picked = rng.choices(words, weights, k=size // 6)
    lines, line = [], []
    for word in picked:
        line.append(word)
        if len(line) == 12:
            lines.append(' '.join(line)); line = []
    lines.append(' '.join(line))
    text = ('\n'.join(lines) + '\n').encode()[:size]
    text = text[:text.rfind(b'\n') + 1] if b'\n' in text else text + b'\n'
    sub = os.path.join(out, f'{index // 1000:03d}') if files > 1000 else out
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f'doc-{index:0{width}d}.txt'), 'wb') as f:
        f.write(text)
EOF
  mv "$dir.tmp" "$dir"
}
concatenate() { # NAME
  [[ -f $work/$1.txt ]] || find "$work/$1" -type f -print0 | LC_ALL=C sort -z | xargs -0 cat > "$work/$1.txt"
}
corpora="gen300"
make_generated gen300 300 7000
if [[ -d /usr/share/man/man1 ]]; then make_man300; corpora="man300 $corpora"; fi
if [[ ${BIG:-0} == 1 ]]; then make_generated gen100k 100000 10000; corpora="$corpora gen100k"; fi
for corpus in $corpora; do concatenate "$corpus"; done

# --- runs ---
essaim_wc() { # LABEL CORPUS INPUT [FLAGS...]
  local label=$1 corpus=$2 input=$3; shift 3
  local out=$work/out-$label-$corpus
  local json
  json=$("$bin" run wordcount --input "$input" --output "$out" --overwrite --reducers 2 \
    --workers 2 --format json "$@")
  python3 - "$label" "$corpus" "$results" "$json" <<'EOF'
import json, sys
label, corpus, results, text = sys.argv[1:5]
run = json.loads(text)
assert run['succeeded'], run
row = {'tool': 'essaim', 'config': label, 'corpus': corpus, 'wall_s': run['wall_seconds'],
       'map_tasks': run['map_tasks'], 'input_bytes': run['input_bytes'],
       'shuffle_requests': run['counters'].get('shuffle.requests', 0)}
open(results, 'a').write(json.dumps(row) + '\n')
EOF
}
rust_wc() { # CORPUS
  [[ -x $rwc ]] || return 0
  local start end
  start=$(date +%s%N)
  "$rwc" "$work/$1.txt" --threads 2 --out "$work/rwc-$1.tsv" > /dev/null
  end=$(date +%s%N)
  printf '{"tool": "rust-wc", "config": "2 threads", "corpus": "%s", "wall_s": %s}\n' \
    "$1" "$(awk -v ns=$((end - start)) 'BEGIN { printf "%.4f", ns / 1e9 }')" >> "$results"
}
check_counts() { # CORPUS LABEL
  [[ -f $work/rwc-$1.tsv ]] || return 0
  python3 - "$work/rwc-$1.tsv" "$work/out-$2-$1" <<'EOF'
import glob, sys
def read(paths):
    counts = {}
    for path in paths:
        for line in open(path, 'rb'):
            word, _, count = line.rstrip(b'\n').rpartition(b'\t')
            counts[word] = counts.get(word, 0) + int(count)
    return counts
want = read([sys.argv[1]])
have = read(sorted(glob.glob(sys.argv[2] + '/part-*')))
assert have == want, f'{sys.argv[2]}: {len(have)} words, rust-wc {len(want)}'
EOF
}
session=$(date -u +%Y-%m-%dT%H:%MZ)
echo "{\"session\": \"$session\", \"binary\": \"$(sha256sum "$bin" | cut -c1-12)\", \"head\": \"$(git -C "$repo" rev-parse --short HEAD)\"}" >> "$results"
for round in $(seq "$rounds"); do
  for corpus in $corpora; do
    rust_wc "$corpus"
    essaim_wc packed "$corpus" "$work/$corpus"
    essaim_wc one-file "$corpus" "$work/$corpus.txt"
    [[ $corpus == gen100k ]] || essaim_wc unpacked "$corpus" "$work/$corpus" --no-packing
    if [[ $round == 1 ]]; then
      for label in packed one-file unpacked; do
        [[ -d $work/out-$label-$corpus ]] && check_counts "$corpus" "$label"
      done
    fi
  done
  echo "round $round of $rounds done" >&2
done

# --- the cost of one map task ---
for n in ${EMPTY_TASKS:-1 200 800}; do
  dir=$work/empty-$n
  if [[ ! -d $dir ]]; then
    mkdir -p "$dir.tmp" && (cd "$dir.tmp" && seq -f 'e%05g' "$n" | xargs touch) && mv "$dir.tmp" "$dir"
  fi
  for round in $(seq "$rounds"); do essaim_wc "empty-tasks" "empty-$n" "$dir" --no-packing; done
done

python3 - "$results" "$session" <<'EOF'
import json, statistics, sys
rows, session, seen = [], sys.argv[2], False
for line in open(sys.argv[1]):
    row = json.loads(line)
    if 'session' in row:
        seen = row['session'] == session
    elif seen:
        rows.append(row)
def median(tool, config, corpus):
    walls = [r['wall_s'] for r in rows if (r['tool'], r['config'], r['corpus']) == (tool, config, corpus)]
    return (statistics.median(walls), min(walls), max(walls), len(walls)) if walls else None
for corpus in sorted({r['corpus'] for r in rows if not r['corpus'].startswith('empty-')}):
    print(f'== {corpus}')
    base = median('essaim', 'one-file', corpus)
    for tool, config in [('essaim', 'packed'), ('essaim', 'unpacked'), ('essaim', 'one-file'), ('rust-wc', '2 threads')]:
        m = median(tool, config, corpus)
        if not m:
            continue
        tasks = {r.get('map_tasks') for r in rows if (r['tool'], r['config'], r['corpus']) == (tool, config, corpus)}
        ratio = f'{m[0] / base[0]:.2f}x one file' if base else ''
        print(f'  {tool:8} {config:10} median {m[0]:.3f} s ({m[1]:.3f}..{m[2]:.3f}, n={m[3]}) map tasks {sorted(t for t in tasks if t)} {ratio}')
points = []
for corpus in sorted({r['corpus'] for r in rows if r['corpus'].startswith('empty-')}):
    m = median('essaim', 'empty-tasks', corpus)
    points.append((int(corpus.split('-')[1]), m[0]))
    print(f'== {corpus}: median {m[0]:.3f} s ({m[1]:.3f}..{m[2]:.3f}, n={m[3]})')
if len(points) >= 2:
    n = [p[0] for p in points]; w = [p[1] for p in points]
    slope = statistics.linear_regression(n, w).slope
    print(f'== one empty map task: {slope * 1e3:.2f} ms of job wall time per task with 2 slots, '
          f'{2 * slope * 1e3:.2f} ms per slot (least squares over N = {n})')
EOF
