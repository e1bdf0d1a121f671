#!/usr/bin/env bash
# The tail at scale, measured: seed 000's table of 1 - p^N (the chance that a query
# waits for at least one slow leaf among N) reproduced with real leaves, then the same
# with hedged requests; and p50/p99/p99.9 with N = 10 and 50, without and with hedging.
#
# usage: bench/serve_tail.sh                (from the repository root or bench/)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), WORK_DIR
#        (/tmp/essaim-serve-tail), TABLE_QUERIES (1000 per row of the table),
#        TAIL_QUERIES (5000 per percentile run), CONCURRENCY (1: one query at a time,
#        for latencies), LOAD_CONCURRENCY (8 connections, for queries/s), LOAD_QUERIES (2000),
#        BASE_US (5000), SLOW_US (60000), SLOW_MS (30: a query is slow from here),
#        WAITED_MS (54: a query that waited out a slow leaf, 0.9 x SLOW_US),
#        PARTS ("table tail": which of the two series to run).
#
# Set-up: a local cluster of 4 workers of 64 slots; an index of 40 generated documents
# built by the `index` job; for each configuration, `essaim index serve --shards N
# --replicas 2` on that cluster with the leaves' bench-only injected latency (hidden
# flags `--bench-base-us`, `--bench-slow-us`, `--bench-slow-probability`): every search
# waits BASE_US, or SLOW_US (12x) with probability 1 - p. A query for `the` goes to
# every shard; it is slow when the root's own time reaches SLOW_MS, which only a slow
# leaf causes (the usual query takes BASE_US plus the fan-out's CPU time). Before each
# measured run, 300 queries warm the hedging policy's latency sketches.
#
# Results: bench/results/serve_tail.jsonl (one JSON object per run) and the tables on
# standard output.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "serve_tail.sh: $bin missing; run: cargo build --release -p essaim" >&2; exit 2; }
work=${WORK_DIR:-/tmp/essaim-serve-tail}
table_queries=${TABLE_QUERIES:-1000}
tail_queries=${TAIL_QUERIES:-5000}
concurrency=${CONCURRENCY:-1}
load_concurrency=${LOAD_CONCURRENCY:-8}
load_queries=${LOAD_QUERIES:-2000}
base_us=${BASE_US:-5000}
slow_us=${SLOW_US:-60000}
slow_ms=${SLOW_MS:-30}
waited_ms=${WAITED_MS:-54}
parts=${PARTS:-table tail}
results=$bench/results/serve_tail.jsonl
mkdir -p "$bench/results" "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
coordinator_port=$(free_port)
coordinator=http://127.0.0.1:$coordinator_port
local_pid=
serve_pid=
root_port=
cleanup() {
  [[ -n $serve_pid ]] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
  [[ -n $local_pid ]] && kill -TERM "$local_pid" 2>/dev/null && wait "$local_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin" local --workers 4 --slots 64 --listen "127.0.0.1:$coordinator_port" > "$work/local.log" 2>&1 &
local_pid=$!
for _ in $(seq 100); do "$bin" workers --coordinator "$coordinator" > /dev/null 2>&1 && break; sleep 0.2; done

# A small corpus: the leaves' work is the injected latency, not the index.
corpus=$work/corpus
if [[ ! -d $corpus ]]; then
  mkdir -p "$corpus.tmp"
  for index in $(seq -w 1 40); do
    printf 'the document %s holds the words alpha beta gamma %s\n' "$index" "$index" > "$corpus.tmp/doc-$index.txt"
  done
  mv "$corpus.tmp" "$corpus"
fi
index=$work/index
rm -rf "$index"
"$bin" submit index --coordinator "$coordinator" --input "$corpus" --output "$index" --reducers 2 > "$work/index.log"

serve() { # SHARDS SLOW_PROBABILITY HEDGE(on|off); sets root_port and serve_pid
  local flags=()
  root_port=$(free_port)
  [[ $3 == off ]] && flags+=(--no-hedge)
  "$bin" index serve --coordinator "$coordinator" --index "$index" --shards "$1" --replicas 2 \
    --listen "127.0.0.1:$root_port" --bench-base-us "$base_us" --bench-slow-us "$slow_us" \
    --bench-slow-probability "$2" --bench-seed 7 "${flags[@]}" > "$work/serve-$1.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 600); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$root_port/readyz") == 200 ]] && break
    sleep 0.1
  done
  # Every replica registered, not only one per shard.
  for _ in $(seq 600); do
    ready=$(curl -s "http://127.0.0.1:$root_port/shards" | python3 -c 'import json,sys; print(sum(1 for r in json.load(sys.stdin) if r["ready"]))')
    [[ $ready == $(( $1 * 2 )) ]] && break
    sleep 0.1
  done
}
stop_serving() {
  kill -TERM "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=
  sleep 1  # the cancelled leaves free their slots
}
measure() { # ROOT_PORT QUERIES LABEL_JSON [CONCURRENCY]
  python3 "$bench/serve_tail.py" "$1" 300 "$concurrency" "$slow_ms" "$waited_ms" '{}' > /dev/null
  python3 "$bench/serve_tail.py" "$1" "$2" "${4:-$concurrency}" "$slow_ms" "$waited_ms" "$3" | tee -a "$results"
}

session=$(date -u +%Y-%m-%dT%H:%MZ)
echo "{\"session\": \"$session\", \"binary\": \"$(sha256sum "$bin" | cut -c1-12)\", \"head\": \"$(git -C "$repo" rev-parse --short HEAD)\", \"base_us\": $base_us, \"slow_us\": $slow_us, \"slow_ms\": $slow_ms, \"waited_ms\": $waited_ms, \"concurrency\": $concurrency}" >> "$results"
table_probabilities="0.01 0.02"; tail_shards="10 50"
[[ " $parts " == *" table "* ]] || table_probabilities=""
[[ " $parts " == *" tail "* ]] || tail_shards=""
for probability in $table_probabilities; do
  for shards in 5 10 50 100; do
    for hedge in off on; do
      serve "$shards" "$probability" "$hedge"
      label="{\"run\": \"table\", \"session\": \"$session\", \"leaves\": $shards, \"slow_probability\": $probability, \"hedging\": \"$hedge\"}"
      measure "$root_port" "$table_queries" "$label"
      stop_serving
    done
  done
done
for shards in $tail_shards; do
  for hedge in off on; do
    serve "$shards" 0.01 "$hedge"
    label="{\"run\": \"tail\", \"session\": \"$session\", \"leaves\": $shards, \"slow_probability\": 0.01, \"hedging\": \"$hedge\"}"
    measure "$root_port" "$tail_queries" "$label"
    label="{\"run\": \"load\", \"session\": \"$session\", \"leaves\": $shards, \"slow_probability\": 0.01, \"hedging\": \"$hedge\", \"clients\": $load_concurrency}"
    measure "$root_port" "$load_queries" "$label" "$load_concurrency"
    stop_serving
  done
done

python3 - "$results" "$session" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
rows = [row for row in rows if row.get('session') == sys.argv[2] and 'run' in row]
print('\n| p (leaf fast) | N | seed: 1 - p^N | ≥ SLOW_MS, no hedging (95 % CI) | ≥ SLOW_MS, hedging | ≥ WAITED_MS, no hedging | ≥ WAITED_MS, hedging | hedges per leaf request |')
print('|---|---|---|---|---|---|---|---|')
for row in rows:
    if row['run'] != 'table' or row['hedging'] != 'off':
        continue
    fast = 1 - row['slow_probability']
    hedged = next(r for r in rows if r['run'] == 'table' and r['hedging'] == 'on'
                  and r['leaves'] == row['leaves'] and r['slow_probability'] == row['slow_probability'])
    print(f"| {fast:.2f} | {row['leaves']} | {100 * (1 - fast ** row['leaves']):.1f} % | "
          f"{100 * row['slow_share']:.1f} % ± {100 * row['slow_share_ci95']:.1f} | "
          f"{100 * hedged['slow_share']:.1f} % ± {100 * hedged['slow_share_ci95']:.1f} | "
          f"{100 * row['waited_share']:.1f} % ± {100 * row['waited_share_ci95']:.1f} | "
          f"{100 * hedged['waited_share']:.1f} % ± {100 * hedged['waited_share_ci95']:.1f} | "
          f"{100 * hedged['hedges_per_leaf_request']:.2f} % |")
print('\n| N | hedging | p50 ms | p99 ms | p99.9 ms | hedges per leaf request | queries/s (8 clients) | p99 ms (8 clients) | partial |')
print('|---|---|---|---|---|---|---|---|---|')
for row in rows:
    if row['run'] == 'tail':
        load = next(r for r in rows if r['run'] == 'load' and r['leaves'] == row['leaves'] and r['hedging'] == row['hedging'])
        print(f"| {row['leaves']} | {row['hedging']} | {row['p50_ms']} | {row['p99_ms']} | "
              f"{row['p999_ms']} | {100 * row['hedges_per_leaf_request']:.2f} % | {load['qps']} | {load['p99_ms']} | {row['partial'] + load['partial']} |")
PY
