#!/usr/bin/env bash
# The sharded, replicated cache, measured (issue 16):
#  1. per node: hits/s and GET p50/p99 of one `essaim cache node` (and, for the cost of
#     the extra hop, of a proxy over 3 nodes with R = 2), against Debian's memcached
#     with the same memory, same driver, same Zipf workload;
#  2. hit rate against cache size, seed 000's arithmetic measured: N = 10 nodes of
#     F % of the data each, reached without sharding (each request to a random node, as
#     a load balancer in front of independent caches would) and with sharding (the
#     proxy, R = 1 and R = 2), for a uniform workload (the seed's 8 % vs 80 %) and a
#     Zipf one (s = 0.99).
#
# usage: bench/cache.sh                     (from the repository root or bench/)
# env:   ESSAIM_BIN (default <repo>/target/release/essaim), WORK_DIR (/tmp/essaim-cache),
#        KEYS (20000), VALUE_BYTES (1000), WARMUP (100000), REQUESTS (50000),
#        CONCURRENCY (8), FRACTIONS ("0.02 0.04 0.08": each node's share of the data),
#        PARTS ("node size": which series to run).
#
# The driver is `essaim bench cache` (cache-aside: a miss is written back). Each
# configuration gets fresh processes. memcached is installed with apt-get if missing;
# without it its rows are skipped with a message.
#
# Results: bench/results/cache.jsonl (one JSON object per run) and tables on stdout.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "cache.sh: $bin missing; run: cargo build --release -p essaim" >&2; exit 2; }
work=${WORK_DIR:-/tmp/essaim-cache}
keys=${KEYS:-20000}
value_bytes=${VALUE_BYTES:-1000}
warmup=${WARMUP:-100000}
requests=${REQUESTS:-50000}
concurrency=${CONCURRENCY:-8}
fractions=${FRACTIONS:-0.02 0.04 0.08}
parts=${PARTS:-node size}
results=$bench/results/cache.jsonl
mkdir -p "$bench/results" "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM
wait_http() { # ADDRESS PATH
  for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' "http://$1$2") == 200 ]] && return 0
    sleep 0.05
  done
  echo "cache.sh: $1$2 never answered" >&2; exit 1
}
start_nodes() { # COUNT MAX_BYTES; sets nodes (comma-separated)
  local list=() address
  for index in $(seq "$1"); do
    address=127.0.0.1:$(free_port)
    "$bin" cache node --listen "$address" --max-bytes "$2" --max-value-bytes 65536 > "$work/node-$index.log" 2>&1 &
    pids+=($!)
    list+=("$address")
  done
  for address in "${list[@]}"; do wait_http "$address" /healthz; done
  nodes=$(IFS=,; echo "${list[*]}")
}
start_proxy() { # NODES REPLICAS; sets proxy
  proxy=127.0.0.1:$(free_port)
  "$bin" cache proxy --listen "$proxy" --nodes "$1" --replicas "$2" > "$work/proxy.log" 2>&1 &
  pids+=($!)
  wait_http "$proxy" /readyz
}
measure() { # LABEL_JSON DRIVER_ARGS...
  local label=$1; shift
  "$bin" bench cache --keys "$keys" --value-bytes "$value_bytes" --warmup "$warmup" \
    --requests "$requests" --concurrency "$concurrency" "$@" > "$work/driver.out"
  python3 - "$label" "$work/driver.out" <<'PY' | tee -a "$results"
import json, sys
row = json.loads(sys.argv[1])
for line in open(sys.argv[2]):
    if line.startswith('METRIC '):
        key, value = line[7:].strip().split('=', 1)
        row[key] = float(value)
print(json.dumps(row))
PY
}

session=$(date -u +%Y-%m-%dT%H:%MZ)
echo "{\"session\": \"$session\", \"binary\": \"$(sha256sum "$bin" | cut -c1-12)\", \"head\": \"$(git -C "$repo" rev-parse --short HEAD)\", \"keys\": $keys, \"value_bytes\": $value_bytes, \"warmup\": $warmup, \"requests\": $requests, \"concurrency\": $concurrency}" >> "$results"
# Bytes a store charges for one entry: key ("k" + rank), value, 64 of bookkeeping.
entry_bytes=$(( value_bytes + 6 + 64 ))
data_bytes=$(( keys * entry_bytes ))

if [[ " $parts " == *" node "* ]]; then
  big=$(( 256 * 1024 * 1024 ))
  start_nodes 1 "$big"
  measure "{\"run\": \"node\", \"session\": \"$session\", \"target\": \"essaim node\"}" --targets "$nodes" --zipf 0.99
  stop_all
  start_nodes 3 "$big"; start_proxy "$nodes" 2
  measure "{\"run\": \"node\", \"session\": \"$session\", \"target\": \"essaim proxy (3 nodes, R=2)\"}" --targets "$proxy" --zipf 0.99
  stop_all
  if ! command -v memcached > /dev/null; then
    py=python3
    # shellcheck source=bench/install_common.sh
    source "$bench/install_common.sh"
    apt_install memcached > "$work/apt.log" 2>&1 || true
  fi
  if command -v memcached > /dev/null; then
    port=$(free_port)
    memcached -u nobody -l 127.0.0.1 -p "$port" -m 256 -t 1 > "$work/memcached.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    measure "{\"run\": \"node\", \"session\": \"$session\", \"target\": \"memcached $(memcached -V | cut -d' ' -f2) (-t 1)\"}" \
      --targets "127.0.0.1:$port" --protocol memcached --zipf 0.99
    stop_all
  else
    echo "cache.sh: memcached not installable here; its baseline row is skipped" >&2
  fi
fi

if [[ " $parts " == *" size "* ]]; then
  for fraction in $fractions; do
    per_node=$(python3 -c "print(int($data_bytes * $fraction))")
    for zipf in 0 0.99; do
      start_nodes 10 "$per_node"
      measure "{\"run\": \"size\", \"session\": \"$session\", \"fraction\": $fraction, \"zipf\": $zipf, \"mode\": \"unsharded\"}" --targets "$nodes" --zipf "$zipf"
      stop_all
      for replicas in 1 2; do
        start_nodes 10 "$per_node"; start_proxy "$nodes" "$replicas"
        measure "{\"run\": \"size\", \"session\": \"$session\", \"fraction\": $fraction, \"zipf\": $zipf, \"mode\": \"sharded R=$replicas\"}" --targets "$proxy" --zipf "$zipf"
        stop_all
      done
    done
  done
fi

python3 - "$results" "$session" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
rows = [row for row in rows if row.get('session') == sys.argv[2] and 'run' in row]
print('\n| target | hit rate | GETs/s | hits/s | GET p50 µs | GET p99 µs |')
print('|---|---|---|---|---|---|')
for row in rows:
    if row['run'] == 'node':
        print(f"| {row['target']} | {100 * row['hit_rate']:.1f} % | {row['gets_per_s']:.0f} | "
              f"{row['hits_per_s']:.0f} | {row['get_p50_us']:.0f} | {row['get_p99_us']:.0f} |")
print('\n| each node holds | workload | unsharded (10 nodes) | sharded R=1 | sharded R=2 | seed: F vs N·F |')
print('|---|---|---|---|---|---|')
sizes = sorted({(row['fraction'], row['zipf']) for row in rows if row['run'] == 'size'})
for fraction, zipf in sizes:
    cell = {row['mode']: row['hit_rate'] for row in rows
            if row['run'] == 'size' and row['fraction'] == fraction and row['zipf'] == zipf}
    workload = 'uniform' if zipf == 0 else f'Zipf s={zipf}'
    print(f"| {100 * fraction:.0f} % of the data | {workload} | {100 * cell.get('unsharded', 0):.1f} % | "
          f"{100 * cell.get('sharded R=1', 0):.1f} % | {100 * cell.get('sharded R=2', 0):.1f} % | "
          f"{100 * fraction:.0f} % vs {100 * min(1, 10 * fraction):.0f} % |")
PY
