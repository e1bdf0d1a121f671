#!/usr/bin/env bash
# MapReduce benchmark session: essaim's word count and sort against their peers, all
# through the shared harness bench.py, interleaved round by round in one session so that
# the machine's drift hits every system alike.
#
# Word count, on the 100 MiB and 1 GiB corpora of shared/bench/gen_corpus.py (checked
# against shared/bench/corpus.sha256), each round in this order:
#   rust-wc 2 threads, essaim (2 workers), rust-wc 1 thread, Spark local[2] DataFrame,
#   essaim again (a second sample next to the Spark run), Spark RDD, Dask bag, GNU
#   coreutils (tr | sort | uniq -c, sort defaults)
# then every output is cross-checked against rust-wc 1 thread with check_wc.py.
# Sort: essaim gen sort (SORT_ROWS rows of 100 bytes, 100,000,000 = 10 GB by default),
# then per round essaim sort (--sort-buffer 256MiB, 2 workers) and GNU sort -S 512M
# --parallel=2, interleaved (in round 1 also essaim sort-validate of both outputs and of
# the input, and a cmp of the two outputs), then GNU sort with LZ4-compressed temporary
# files and essaim sort with 1 GiB splits (full sort buffers).
#
# usage: bench/run_mapreduce_all.sh
# env:   PEER_DIR     the shared peer scripts and bench.py (default: <repo>/../shared/bench)
#        CORPUS_DIR   where corpus_1g.txt and corpus_100m.txt are (generated if missing;
#                     default /tmp/corpus)
#        WORK_DIR     outputs and sort data (default /tmp/essaim-mr-bench; the sort needs
#                     about 3.5 × the input free: input, map outputs, two outputs)
#        ROUNDS       word-count runs per system, one per round (default 3)
#        SORT_ROUNDS  sort runs per system (default 2)
#        SORT_ROWS    rows to generate (default 100000000: 10 GB); SORT_FILES (default 40)
#        SIZES        corpora (default "100m 1g")
#        ONLY         subset, e.g. "essaim rust" (essaim|rust|spark|dask|gnu|sort)
#        SKIP_INSTALL=1 / SKIP_BUILD=1 / KEEP_SORT_DATA=1
# Output (bench/, git-ignored): results/mr.jsonl (one line per bench.py call; the
# previous session's file is kept as results/mr.<time>.jsonl), results/mr_session.txt
# (machine, versions, disk), results/mr_check.txt (cross-checks), logs/<name>.roundK.log.
# Then: python3 bench/summarize_mapreduce.py > bench/results/mapreduce.md
set -uo pipefail
# Sets bench, repo and peer (the shared peer scripts, from $PEER_DIR).
# shellcheck source=bench/session_common.sh
source "$(dirname "$0")/session_common.sh"
corpus=${CORPUS_DIR:-/tmp/corpus}
work=${WORK_DIR:-/tmp/essaim-mr-bench}
rounds=${ROUNDS:-3}
sort_rounds=${SORT_ROUNDS:-2}
sort_rows=${SORT_ROWS:-100000000}
sort_files=${SORT_FILES:-40}
sizes=${SIZES:-100m 1g}
only=${ONLY:-all}
want() { [[ $only == all || " $only " == *" $1 "* ]]; }

cd "$bench"
mkdir -p results logs "$work" "$corpus"
[[ ${SKIP_INSTALL:-0} == 1 ]] || "$bench/install_mapreduce_peers.sh" || { echo "installing the peers failed" >&2; exit 1; }

# --- corpora, checked against the shared hashes ---
for s in $sizes; do
  f=$corpus/corpus_$s.txt
  case $s in 1g) b=1GiB ;; 100m) b=100MiB ;; *) echo "unknown size $s" >&2; exit 2 ;; esac
  if [[ ! -f $f ]]; then
    echo "generating $f"
    python3 "$peer/gen_corpus.py" --bytes "$b" --out "$f" || { echo "gen_corpus.py failed" >&2; exit 1; }
  fi
  want_sum=$(awk -v n="corpus_$s.txt" '$2 == n { print $1 }' "$peer/corpus.sha256")
  have_sum=$(sha256sum "$f" | cut -d' ' -f1)
  if [[ $want_sum != "$have_sum" ]]; then
    echo "$f: sha256 $have_sum, expected $want_sum (is wamerican 2020.12.07-2 installed?)" >&2
    exit 1
  fi
done

# --- builds: essaim (pinned copy) and rust-wc (built from a copy, so that the shared
# folder is never written to) ---
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
  build_essaim_release "$repo"
  rm -rf results/rust-wc-src && mkdir -p results/rust-wc-src
  cp -r "$peer/rust-wc/Cargo.toml" "$peer/rust-wc/src" results/rust-wc-src/ && chmod -R u+w results/rust-wc-src
  printf '\n[workspace]\n' >> results/rust-wc-src/Cargo.toml  # not a member of essaim's workspace
  (cd results/rust-wc-src && CARGO_TARGET_DIR="$bench/results/rust-wc-target" cargo build --release) \
    || { echo "building rust-wc failed" >&2; exit 1; }
fi
RWC=$bench/results/rust-wc-target/release/rust-wc
[[ -x $RWC ]] || { echo "$RWC missing (run without SKIP_BUILD=1)" >&2; exit 1; }
mkdir -p results/bin
if [[ ${SKIP_BUILD:-0} != 1 || ! -x results/bin/essaim ]]; then
  cp "$repo/target/release/essaim" results/bin/essaim.new && mv results/bin/essaim.new results/bin/essaim \
    || { echo "no target/release/essaim" >&2; exit 1; }
  # which tree the binary was built from, for SKIP_BUILD=1 sessions that reuse it
  echo "$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- crates || echo '+uncommitted')" \
    > results/bin/essaim.commit
fi
export ESSAIM_BIN=$bench/results/bin/essaim
export ESSAIM_BUILD="$(cat results/bin/essaim.commit 2>/dev/null || echo unknown) sha256:$(sha256sum "$ESSAIM_BIN" | cut -c1-12)"

R=results/mr.jsonl
stamp=$(date -u +%Y%m%dT%H%M%SZ)
[[ -f $R ]] && mv "$R" "results/mr.$stamp.jsonl"
[[ -f results/mr_check.txt ]] && mv results/mr_check.txt "results/mr_check.$stamp.txt"
S=results/mr_session.txt
{
  echo "started $(date -u +%FT%TZ)"
  echo "nproc $(nproc)"
  lscpu | grep -E '^(Model name|CPU family|Model|Thread|Core|L2|L3|Hypervisor)'
  echo "kernel $(uname -r)"
  grep MemTotal /proc/meminfo
  df -h "$work" | tail -1
  echo "essaim binary: $ESSAIM_BUILD (built from $(git -C "$repo" rev-parse HEAD), copied to $ESSAIM_BIN)"
  rustc --version
  python3 --version
  java -version 2>&1 | head -1
  sort --version | head -1
  python3 - <<'PY'
import importlib
for m in ("pyspark", "dask", "distributed", "psutil"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:  # noqa: BLE001
        print(m, "MISSING", type(e).__name__)
PY
  dpkg-query -W -f='wamerican ${Version}\n' wamerican 2>/dev/null
} > "$S" 2>&1

# One run per call; the log of the kept run is renamed so that rounds do not overwrite it.
hb() {
  local name=$2
  python3 "$peer/bench.py" --runs 1 --out "$R" "$@"
  mv -f "logs/$name.run1.log" "logs/$name.round$round.log" 2>/dev/null
}
O=$work/wc
mkdir -p "$O"
for round in $(seq "$rounds"); do
  for s in $sizes; do
    f=$corpus/corpus_$s.txt
    b=$(stat -c %s "$f")
    echo "=== word count $s, round $round of $rounds ($(date -u +%T)) ==="
    want rust   && hb --name mr_rust_t2_$s --bytes "$b" -- "$RWC $f --threads 2 --out $O/rust_t2_$s.tsv"
    want essaim && hb --name mr_essaim_$s  --bytes "$b" -- "$bench/wordcount.sh $f $O/essaim_$s"
    want rust   && hb --name mr_rust_t1_$s --bytes "$b" -- "$RWC $f --threads 1 --out $O/rust_t1_$s.tsv"
    want spark  && hb --name mr_spark_df_$s --bytes "$b" -- "python3 $peer/wc_spark.py df $f $O/spark_df_$s"
    want essaim && hb --name mr_essaim_b_$s --bytes "$b" -- "$bench/wordcount.sh $f $O/essaim_b_$s"
    want spark  && hb --name mr_spark_rdd_$s --bytes "$b" -- "python3 $peer/wc_spark.py rdd $f $O/spark_rdd_$s"
    want dask   && hb --name mr_dask_$s --bytes "$b" -- "python3 $peer/wc_dask.py $f $O/dask_$s.tsv"
    want gnu    && hb --name mr_gnu_$s --bytes "$b" -- "$peer/wc_gnu.sh $f $O/gnu_$s.txt default"
  done
done

if [[ $only == all || $only != sort ]]; then
  C=results/mr_check.txt
  : > "$C"
  for s in $sizes; do
    ref=$O/rust_t1_$s.tsv
    [[ -f $ref ]] || continue
    others=()
    for o in rust_t2_$s.tsv essaim_$s essaim_b_$s spark_df_$s spark_rdd_$s dask_$s.tsv gnu_$s.txt; do
      [[ -e $O/$o ]] && others+=("$O/$o")
    done
    echo "== $s corpus (reference: rust-wc 1 thread) ==" | tee -a "$C"
    python3 "$peer/check_wc.py" "$ref" "${others[@]}" 2>&1 | tee -a "$C"
  done
fi

if want sort; then
  D=$work/sort
  in=$D/input
  bytes=$((sort_rows * 100))
  if [[ ! -f $in/.complete-$sort_rows-$sort_files ]]; then
    rm -rf "$in"
    avail=$(df -B1 --output=avail "$work" | tail -1)
    need=$((bytes * 7 / 2))
    if ((avail < need)); then
      echo "WARNING: $((avail >> 30)) GiB free in $work, the sort needs about $((need >> 30)) GiB" | tee -a "$S"
    fi
    round=gen
    hb --name mr_sort_gen --bytes "$bytes" -- "$bench/sort.sh gen $sort_rows $sort_files $in"
    got=$(du -cb --apparent-size "$in"/input-* 2>/dev/null | tail -1 | cut -f1)
    [[ $got == "$bytes" ]] || { echo "essaim gen sort wrote $got bytes, expected $bytes" >&2; exit 1; }
    touch "$in/.complete-$sort_rows-$sort_files"
  fi
  echo "sort input: $sort_rows rows, $sort_files files, $(du -sh "$in" | cut -f1) in $in" | tee -a "$S"
  for round in $(seq "$sort_rounds"); do
    echo "=== sort, round $round of $sort_rounds ($(date -u +%T)) ==="
    rm -rf "$D/gnu.txt" "$D/essaim" "$D/essaim_split1g"
    hb --name mr_sort_essaim --bytes "$bytes" -- "$bench/sort.sh essaim $in $D/essaim 2"
    df -h "$work" | tail -1
    hb --name mr_sort_gnu --bytes "$bytes" -- "$bench/sort.sh gnu $in $D/gnu.txt"
    if [[ $round == 1 ]]; then
      echo "=== sort: validation and comparison ($(date -u +%T)) ==="
      hb --name mr_sort_validate_essaim --bytes "$bytes" -- "$bench/sort.sh validate $D/essaim $D/validate_essaim"
      hb --name mr_sort_validate_gnu --bytes "$bytes" -- "$bench/sort.sh validate $D/gnu.txt $D/validate_gnu"
      hb --name mr_sort_validate_input --bytes "$bytes" -- "$bench/sort.sh validate $in $D/validate_input"
      if cat "$D"/essaim/part-* | cmp - "$D/gnu.txt"; then
        echo "sort: essaim's parts concatenated and GNU sort's output are identical" | tee -a "$S"
      else
        echo "sort: essaim's parts concatenated and GNU sort's output DIFFER" | tee -a "$S"
      fi
    fi
    rm -rf "$D/gnu.txt" "$D/essaim"
    # GNU sort with LZ4-compressed temporary files, as essaim's map outputs are.
    if command -v lz4 >/dev/null; then
      hb --name mr_sort_gnu_lz4 --bytes "$bytes" -- "GNU_COMPRESS=lz4 $bench/sort.sh gnu $in $D/gnu.txt"
      rm -f "$D/gnu.txt"
    fi
    # essaim with 1 GiB splits: one split per 250 MB input file, so each map task fills
    # its 256 MiB buffer and spills twice, the case where a worker's memory is largest.
    hb --name mr_sort_essaim_split1g --bytes "$bytes" -- "SPLIT_SIZE=1GiB $bench/sort.sh essaim $in $D/essaim_split1g 2"
    rm -rf "$D/essaim_split1g"
  done
  rm -rf "$D/gnu.txt" "$D/essaim" "$D/essaim_split1g"
  [[ ${KEEP_SORT_DATA:-0} == 1 ]] || rm -rf "$in"
fi
echo "finished $(date -u +%FT%TZ)" >> "$S"
python3 "$bench/summarize_mapreduce.py" --results "$bench/results" > results/mapreduce.md && cat results/mapreduce.md
