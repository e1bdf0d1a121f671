#!/usr/bin/env bash
# Word count of a directory of many small files against the same bytes in one file,
# against rust-wc on that file, and against Spark local[2] on both; then the fixed cost
# of one map task.
#
# usage: bench/small_files.sh            (from the repository root or bench/)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), ROUNDS (5), WORK_DIR
#        (/tmp/essaim-small-files), RWC (default bench/results/rust-wc-target/release/rust-wc,
#        built from ../shared/bench/rust-wc when missing and the peer folder is there),
#        EMPTY_TASKS ("1 200 800": numbers of empty input files for the task cost; set
#        it empty to skip that part),
#        CORPORA ("man300 gen300", plus gen100k with BIG=1; see below),
#        SPARK_PYTHON (python3): a Python with pyspark 4.x, with Java 17 on the PATH;
#        without them the Spark runs are skipped, saying so. Install pyspark outside the
#        repository, e.g. python3 -m venv ~/.cache/essaim-bench-spark &&
#        ~/.cache/essaim-bench-spark/bin/pip install pyspark==4.3.0
#
# Corpora (made once under WORK_DIR; every file ends with a newline, so the concatenation
# has exactly the words of the files):
#   man300: the first 300 pages of /usr/share/man/man1, decompressed (about 2.1 MB);
#   manall: every page of /usr/share/man/man1, decompressed;
#   gen300: 300 generated files of 7 KB (words of wamerican or a fixed list, seed 18);
#   genNk: N thousand generated files of 10 KB (gen100k: 100,000 files, about 1 GB;
#          BIG=1 adds it to the default list).
# Each round runs, interleaved: rust-wc 2 threads on the concatenation, essaim on the
# directory (small files packed, the default), essaim on the concatenation, essaim on
# the directory with --no-packing (one map task per file; corpora of at most 1,000 files
# only), Spark local[2] on the directory (spark.read.text on the folder) and on the
# concatenation (bench/wc_spark_dir.py). Every output of round 1 is checked against
# rust-wc's counts. Each run records the 1-minute load average it started under.
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
spark_python=${SPARK_PYTHON:-python3}
if "$spark_python" -c 'import pyspark' 2>/dev/null && command -v java >/dev/null; then
  spark=1
else
  spark=0
  echo "small_files.sh: no pyspark for $spark_python (or no java): the Spark runs are skipped;" \
    "set SPARK_PYTHON to a Python with pyspark 4.x, with Java 17 on the PATH" >&2
fi
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
make_manall() {
  local dir=$work/manall
  [[ -d $dir ]] && return
  mkdir -p "$dir.tmp"
  find /usr/share/man/man1 -maxdepth 1 -type f -name '*.gz' -printf '%f\n' | LC_ALL=C sort |
    while read -r name; do
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
default_corpora="man300 gen300"
[[ ${BIG:-0} == 1 ]] && default_corpora="$default_corpora gen100k"
corpora=""
for corpus in ${CORPORA:-$default_corpora}; do
  case $corpus in
    man300|manall)
      if [[ ! -d /usr/share/man/man1 ]]; then
        echo "small_files.sh: no /usr/share/man/man1: $corpus skipped" >&2
        continue
      fi
      "make_$corpus" ;;
    gen300) make_generated gen300 300 7000 ;;
    gen*k) make_generated "$corpus" "$((${corpus//[!0-9]/} * 1000))" 10000 ;;
    *) echo "small_files.sh: unknown corpus $corpus" >&2; exit 2 ;;
  esac
  corpora="$corpora $corpus"
done
for corpus in $corpora; do concatenate "$corpus"; done
# A corpus of many files is not run with --no-packing: one map task per file would take
# minutes and measure again the task cost measured below.
file_count() { find "$work/$1" -type f | wc -l; }

# --- runs ---
load1() { cut -d' ' -f1 /proc/loadavg; }
essaim_wc() { # LABEL CORPUS INPUT [FLAGS...]
  local label=$1 corpus=$2 input=$3; shift 3
  local out=$work/out-$label-$corpus
  local json start end load
  load=$(load1)
  start=$(date +%s%N)
  json=$("$bin" run wordcount --input "$input" --output "$out" --overwrite --reducers 2 \
    --workers 2 --format json "$@")
  end=$(date +%s%N)
  python3 - "$label" "$corpus" "$results" "$json" "$((end - start))" "$load" <<'EOF'
import json, sys
label, corpus, results, text, nanos, load = sys.argv[1:7]
run = json.loads(text)
assert run['succeeded'], run
row = {'tool': 'essaim', 'config': label, 'corpus': corpus, 'wall_s': run['wall_seconds'],
       'cmd_wall_s': round(int(nanos) / 1e9, 4), 'load1': float(load),
       'map_tasks': run['map_tasks'], 'input_bytes': run['input_bytes'],
       'shuffle_requests': run['counters'].get('shuffle.requests', 0)}
open(results, 'a').write(json.dumps(row) + '\n')
EOF
}
# Spark's start_to_output_s (interpreter start to output written) is the counterpart of
# essaim's wall_seconds (cluster start to committed output); both also get the wall time
# of their process, its exit included (cmd_wall_s).
spark_wc() { # LABEL CORPUS INPUT
  [[ $spark == 1 ]] || return 0
  local label=$1 corpus=$2 input=$3
  local json start end load
  load=$(load1)
  start=$(date +%s%N)
  local log=$work/spark-$label-$corpus.log
  json=$("$spark_python" "$bench/wc_spark_dir.py" "$input" "$work/out-spark-$label-$corpus" 2>"$log" | tail -1)
  end=$(date +%s%N)
  if [[ $json != "{"* ]]; then
    echo "small_files.sh: Spark failed on $corpus ($label); the end of $log:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
  python3 - "$label" "$corpus" "$results" "$json" "$((end - start))" "$load" <<'EOF'
import json, sys
label, corpus, results, text, nanos, load = sys.argv[1:7]
run = json.loads(text)
row = {'tool': 'spark', 'config': label, 'corpus': corpus, 'wall_s': run['start_to_output_s'],
       'cmd_wall_s': round(int(nanos) / 1e9, 4), 'load1': float(load),
       'startup_s': run['startup_s'], 'job_s': run['job_s'],
       'partitions': run['partitions'], 'pyspark': run['pyspark']}
open(results, 'a').write(json.dumps(row) + '\n')
EOF
}
rust_wc() { # CORPUS
  [[ -x $rwc ]] || return 0
  local start end load
  load=$(load1)
  start=$(date +%s%N)
  "$rwc" "$work/$1.txt" --threads 2 --out "$work/rwc-$1.tsv" > /dev/null
  end=$(date +%s%N)
  printf '{"tool": "rust-wc", "config": "2 threads", "corpus": "%s", "wall_s": %s, "load1": %s}\n' \
    "$1" "$(awk -v ns=$((end - start)) 'BEGIN { printf "%.4f", ns / 1e9 }')" "$load" >> "$results"
}
# Spark reads text as UTF-8: its words are compared with rust-wc's decoded the same way
# (an invalid byte becomes U+FFFD), which is exact for UTF-8 corpora.
check_counts() { # CORPUS OUTPUT-LABEL
  [[ -f $work/rwc-$1.tsv ]] || return 0
  python3 - "$work/rwc-$1.tsv" "$work/out-$2-$1" "$2" <<'EOF'
import glob, sys
def read(paths, decode):
    counts = {}
    for path in paths:
        for line in open(path, 'rb'):
            word, _, count = line.rstrip(b'\n').rpartition(b'\t')
            if decode:
                word = word.decode('utf-8', 'replace').encode('utf-8')
            counts[word] = counts.get(word, 0) + int(count)
    return counts
spark = sys.argv[3].startswith('spark-')
want = read([sys.argv[1]], spark)
have = read(sorted(glob.glob(sys.argv[2] + '/part-*')), False)
assert have == want, f'{sys.argv[2]}: {len(have)} words, rust-wc {len(want)}'
EOF
}
session=$(date -u +%Y-%m-%dT%H:%MZ)
echo "{\"session\": \"$session\", \"binary\": \"$(sha256sum "$bin" | cut -c1-12)\", \"head\": \"$(git -C "$repo" rev-parse --short HEAD)\", \"cores\": $(nproc)}" >> "$results"
for round in $(seq "$rounds"); do
  for corpus in $corpora; do
    rust_wc "$corpus"
    essaim_wc packed "$corpus" "$work/$corpus"
    essaim_wc one-file "$corpus" "$work/$corpus.txt"
    (( $(file_count "$corpus") > 1000 )) || essaim_wc unpacked "$corpus" "$work/$corpus" --no-packing
    spark_wc directory "$corpus" "$work/$corpus"
    spark_wc one-file "$corpus" "$work/$corpus.txt"
    if [[ $round == 1 ]]; then
      for label in packed one-file unpacked spark-directory spark-one-file; do
        [[ -d $work/out-$label-$corpus ]] && check_counts "$corpus" "$label"
      done
    fi
  done
  echo "round $round of $rounds done (load average $(load1))" >&2
done

# --- the cost of one map task ---
for n in ${EMPTY_TASKS-1 200 800}; do
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
def runs(tool, config, corpus):
    return [r for r in rows if (r['tool'], r['config'], r['corpus']) == (tool, config, corpus)]
def field_median(tool, config, corpus, field):
    values = [r[field] for r in runs(tool, config, corpus) if field in r]
    return statistics.median(values) if values else None
for corpus in sorted({r['corpus'] for r in rows if not r['corpus'].startswith('empty-')}):
    loads = [r['load1'] for r in rows if r['corpus'] == corpus and 'load1' in r]
    load = f' (load average {min(loads):.2f}..{max(loads):.2f})' if loads else ''
    print(f'== {corpus}{load}')
    base = median('essaim', 'one-file', corpus)
    packed = median('essaim', 'packed', corpus)
    for tool, config in [('essaim', 'packed'), ('essaim', 'unpacked'), ('essaim', 'one-file'),
                         ('spark', 'directory'), ('spark', 'one-file'), ('rust-wc', '2 threads')]:
        m = median(tool, config, corpus)
        if not m:
            continue
        tasks = {r.get('map_tasks') or r.get('partitions') for r in runs(tool, config, corpus)}
        ratio = f'{m[0] / base[0]:.2f}x essaim one file' if base else ''
        if tool == 'spark' and packed:
            ratio += f', {m[0] / packed[0]:.2f}x essaim directory'
        process = field_median(tool, config, corpus, 'cmd_wall_s')
        extra = f' process {process:.3f} s' if process else ''
        if tool == 'spark':
            extra += (f' (startup {field_median(tool, config, corpus, "startup_s"):.2f} s,'
                      f' job {field_median(tool, config, corpus, "job_s"):.2f} s)')
        print(f'  {tool:8} {config:10} median {m[0]:.3f} s ({m[1]:.3f}..{m[2]:.3f}, n={m[3]}){extra}'
              f' tasks {sorted(t for t in tasks if t)} {ratio}')
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
