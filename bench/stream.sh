#!/usr/bin/env bash
# The end-to-end streaming benchmark: flights from NATS JetStream through the flights
# demo's operators into PostgreSQL, by essaim, a hand-written Rust consumer (the limit on
# this machine) and Bytewax (the peer). See bench/stream/README.md.
#
# usage: bench/stream.sh [--quick] [--runs K] [--rows N] [--live-rows L] [--live-rate R]
#                        [--only "SYSTEMS"]
#   --quick       100,000 rows instead of 1,000,000
#   --runs K      runs per system, interleaved (default 3); the tables show medians
#   --rows N      the first N rows of ../shared/data/flights-3m.csv.zst
#   --live-rows L rows published while a system runs, for the latency phase (default 5000)
#   --live-rate R their rate, rows per second on a fixed schedule (default 500)
#   --only S      a subset of "handwritten bytewax essaim"
# env: ESSAIM_BIN (default target/release/essaim; it is not built here: run
#      `cargo build --release -p essaim` first), DATA_DIR (default ../shared/data),
#      PARTITIONS (4), RUN_TIMEOUT (seconds per system run, 1800).
#
# Starts a NATS JetStream server (scripts/nats.sh, sync_interval: always) and a private
# PostgreSQL (scripts/postgres.sh, fsync on) in target/bench-stream/, creates the Python
# environment target/bench-stream-env (pinned Bytewax, nats-py, psycopg) and builds the
# hand-written consumer. Per run and system:
#   1. throughput: the system consumes the stream FLIGHTS (N rows + one end-of-stream
#      message per partition, loaded once per N), into a fresh database, and exits once
#      all is committed; events/s = N / (process start → exit), measured here;
#   2. latency: the stream FLIGHTS_LIVE (subjects flights_live.<p>) is recreated, the
#      system started on it (fresh database), and once its consumer exists L rows are
#      published at R rows/s, then the end-of-stream messages; the system reports
#      p50/p99 of (commit covering a record − the record's JetStream timestamp). essaim
#      does not: its positions in essaim_offsets (committed with its rows) are polled
#      every 10 ms, and a record counts as committed when a poll first sees its position.
# Every run's table is checked against the hand-written consumer's (windows, counts and
# means exactly, p95 within 1 %); a disagreement fails the benchmark (exit 1). Results:
# target/bench-stream/results.md (also printed), results.jsonl, logs/.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

rows=1000000
runs=3
live_rows=5000
live_rate=500
only="handwritten bytewax essaim"
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) rows=100000 ;;
    --runs) runs=$2; shift ;;
    --rows) rows=$2; shift ;;
    --live-rows) live_rows=$2; shift ;;
    --live-rate) live_rate=$2; shift ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "stream.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
partitions=${PARTITIONS:-4}
data_dir=${DATA_DIR:-$repo/../shared/data}
essaim_bin=${ESSAIM_BIN:-$repo/target/release/essaim}
run_timeout=${RUN_TIMEOUT:-1800}
out=$repo/target/bench-stream
logs=$out/logs
env_dir=$repo/target/bench-stream-env
py=$env_dir/bin/python
tool() { "$py" "$repo/bench/stream/tool.py" "$@"; }
log() { echo "stream.sh: $*" >&2; }
die() { log "$*"; exit 1; }
mkdir -p "$out" "$logs"
airports=$data_dir/airports.csv
flights_zst=$data_dir/flights-3m.csv.zst
[[ -f $airports && -f $flights_zst ]] || die "no $airports or $flights_zst (set DATA_DIR)"

# --- the Python environment of the peer (pinned; made once, like scripts/python-env.sh)
pins=("bytewax==0.21.1" "nats-py==2.16.0" "psycopg==3.3.9" "psycopg-binary==3.3.9"
      "prometheus-client==0.26.0" "typing-extensions==4.16.0")
if [[ ! -f $env_dir/.ready || "$(cat "$env_dir/.ready")" != "${pins[*]}" ]]; then
  log "creating $env_dir with ${pins[*]}"
  rm -rf "$env_dir"
  python3 -m venv "$env_dir" >&2 || die "python3 -m venv failed"
  "$py" -m pip install --quiet --disable-pip-version-check --no-input --timeout 30 --retries 2 \
    "${pins[@]}" >&2 || die "pip install ${pins[*]} failed"
  "$py" -c 'import bytewax, nats, psycopg' || die "the environment does not import"
  echo "${pins[*]}" >"$env_dir/.ready"
fi

# --- the hand-written consumer (its own Cargo project, its own target directory)
log "building bench/stream/handwritten"
CARGO_TARGET_DIR=$out/hw-target cargo build --release --quiet \
  --manifest-path "$repo/bench/stream/handwritten/Cargo.toml" >&2 || die "building the hand-written consumer failed"
handwritten_bin=$out/hw-target/release/bench-stream-handwritten

# --- services
nats_dir=$out/nats
nats_url=$(scripts/nats.sh start "$nats_dir") || die "scripts/nats.sh start failed"
pg_url=$(scripts/postgres.sh start "$out/postgres") || die "scripts/postgres.sh start failed"
log "NATS $nats_url, PostgreSQL $pg_url"

# --- data: the first N rows (and the header)
csv=$out/flights-$rows.csv
if [[ ! -s $csv ]] || (( $(wc -l <"$csv") != rows + 1 )); then
  # (zstd dies of SIGPIPE once head has its lines: not an error)
  (set +o pipefail; zstd -dc "$flights_zst" 2>/dev/null | head -n $((rows + 1))) >"$csv.tmp" && mv "$csv.tmp" "$csv"
fi
(( $(wc -l <"$csv") == rows + 1 )) || die "the data set has fewer than $rows rows"

# --- the stream FLIGHTS, loaded once per N. Loading is not what is measured, and with
# sync_interval: always the server fsyncs every message (about 1,000 messages/s here):
# the loader runs the same server binary on the same store without that option, then
# the server is restarted by scripts/nats.sh (sync always) for the measured runs.
load_marker=$out/stream.loaded
want_load="FLIGHTS rows=$rows partitions=$partitions"
if [[ "$(cat "$load_marker" 2>/dev/null)" != "$want_load" ]] \
   || [[ "$(tool messages "$nats_url" FLIGHTS)" != "$((rows + partitions))" ]]; then
  log "loading FLIGHTS with $rows rows ($partitions partitions)"
  rm -f "$load_marker"
  server=$(readlink "/proc/$(cat "$nats_dir/pid")/exe")
  port=$(cat "$nats_dir/port")
  scripts/nats.sh stop "$nats_dir"
  cat >"$out/nats-load.conf" <<CONF
listen: 127.0.0.1:$port
jetstream {
  store_dir: "$nats_dir/store"
  max_memory_store: 64MB
  max_file_store: 1GB
}
CONF
  "$server" -c "$out/nats-load.conf" >"$logs/nats-load.log" 2>&1 &
  loader_pid=$!
  for _ in $(seq 100); do
    timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && head -c 4 <&3" 2>/dev/null | grep -q INFO && break
    sleep 0.1
  done
  "$py" bench/stream/publish.py "$nats_url" "$csv" "$partitions" --stream FLIGHTS >"$logs/load.log" 2>&1
  load_rc=$?
  kill -TERM "$loader_pid"; wait "$loader_pid"
  [[ $load_rc == 0 ]] || { cat "$logs/load.log" >&2; die "loading the stream failed"; }
  nats_url=$(scripts/nats.sh start "$nats_dir") || die "scripts/nats.sh start failed"
  [[ "$(tool messages "$nats_url" FLIGHTS)" == "$((rows + partitions))" ]] || die "FLIGHTS does not hold $rows + $partitions messages"
  echo "$want_load" >"$load_marker"
  grep METRIC "$logs/load.log" >&2
fi

# --- essaim: available only if its binary has `stream run`
essaim_ok=0
essaim_why="$essaim_bin not found (cargo build --release -p essaim)"
if [[ -x $essaim_bin ]]; then
  if "$essaim_bin" stream run --help >/dev/null 2>&1; then
    essaim_ok=1
  else
    essaim_why="$essaim_bin has no 'stream run' command"
  fi
fi
# The spec with absolute paths, per stream.
essaim_spec() {  # STREAM SUBJECT → path of the spec to run
  local spec=$out/flights-$1.toml
  sed -e "s|path = \"../../../shared/data/airports.csv\"|path = \"$airports\"|" \
      -e "s|stream = \"FLIGHTS\", subject = \"flights\"|stream = \"$1\", subject = \"$2\"|" \
      -e "s|partitions = 4 }|partitions = $partitions }|" \
      "$repo/bench/stream/flights.toml" >"$spec"
  echo "$spec"
}

system_command() {  # SYSTEM STREAM SUBJECT DB_URL → the command, in the array cmd
  local system=$1 stream=$2 subject=$3 db=$4
  case $system in
    handwritten) cmd=("$handwritten_bin" "$nats_url" "$db" "$airports" --stream "$stream"
                      --subject "$subject" --partitions "$partitions" --table handwritten_flight_stats) ;;
    bytewax) cmd=("$py" "$repo/bench/stream/bytewax_flights.py" "$nats_url" "$db" "$airports"
                  --stream "$stream" --subject "$subject" --partitions "$partitions" --table bytewax_flight_stats) ;;
    essaim) cmd=("$essaim_bin" stream run "$(essaim_spec "$stream" "$subject")" --name flights
                 --nats "$nats_url" --postgres "$db" --exit-at-end) ;;
  esac
}

results=$out/results.jsonl
: >"$results"
started=$(date -u +%Y-%m-%dT%H:%M:%S)
commit=$(git rev-parse --short HEAD)
[[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]] || commit="$commit (work tree modified)"

run_one() {  # SYSTEM RUN
  local system=$1 k=$2 tag=$1.run$2 ok=true error="" rc
  local base="{\"kind\":\"run\",\"system\":\"$system\",\"run\":$k"
  rm -f "$logs/$tag".*
  if [[ $system == essaim && $essaim_ok != 1 ]]; then
    tool record "$results" "$base,\"ok\":false,\"available\":false,\"error\":\"not available: $essaim_why\"}"
    log "$tag: not available: $essaim_why"
    return
  fi
  # 1. throughput over the loaded stream
  tool clear "$nats_url" FLIGHTS
  local db; db=$(tool freshdb "$pg_url" "bench_$system") || die "cannot create a database"
  tool checkpoint "$pg_url"
  system_command "$system" FLIGHTS flights "$db"
  log "$tag: throughput: ${cmd[*]}"
  local t0=$EPOCHREALTIME
  timeout "$run_timeout" "${cmd[@]}" >"$logs/$tag.log" 2>&1
  rc=$?
  local t1=$EPOCHREALTIME
  local wall; wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
  local dump=$logs/$tag.tsv windows=0
  if [[ $rc != 0 ]]; then
    ok=false; error="exit $rc (log $logs/$tag.log): $(tail -3 "$logs/$tag.log" | tr -d '"\\' | tr '\n' ' ')"
  else
    windows=$(tool dump "$db" "${system}_flight_stats" "$dump" 2>"$logs/$tag.dump.err") \
      || { ok=false; windows=0; error="reading its table failed: $(tail -1 "$logs/$tag.dump.err" | tr -d '"\\')"; }
  fi
  # 2. latency on a live stream
  if [[ $ok == true ]]; then
    tool clear "$nats_url" FLIGHTS
    "$py" bench/stream/publish.py "$nats_url" "$csv" "$partitions" --stream FLIGHTS_LIVE --subject flights_live --create-only
    db=$(tool freshdb "$pg_url" "bench_${system}_live")
    tool checkpoint "$pg_url"
    system_command "$system" FLIGHTS_LIVE flights_live "$db"
    log "$tag: latency: ${cmd[*]}"
    local watcher=
    if [[ $system == essaim ]]; then
      # essaim reports no per-record latency on its standard output: its commits are
      # watched in essaim_offsets instead (positions commit with the rows).
      # (python itself, not the `tool` function: killing a backgrounded function's
      # subshell would leave its poller running through the next runs)
      "$py" "$repo/bench/stream/tool.py" watch "$db" "$logs/$tag.offsets" &
      watcher=$!
    fi
    timeout "$run_timeout" "${cmd[@]}" >"$logs/$tag.live.log" 2>&1 &
    local pid=$!
    "$py" bench/stream/publish.py "$nats_url" "$csv" "$partitions" --stream FLIGHTS_LIVE --subject flights_live --keep \
      --wait-consumers 1 --limit "$live_rows" --rate "$live_rate" >"$logs/$tag.publish.log" 2>&1 \
      || { ok=false; error="publishing the live stream failed: $(tail -1 "$logs/$tag.publish.log" | tr -d '"\\')"; }
    wait "$pid"; rc=$?
    if [[ $rc != 0 ]]; then ok=false; error="latency phase: exit $rc (log $logs/$tag.live.log)"; fi
    if [[ -n $watcher ]]; then
      kill -TERM "$watcher"; wait "$watcher"
      if ! grep -q '^METRIC latency_p50_ms=' "$logs/$tag.live.log"; then
        tool offset-latency "$nats_url" FLIGHTS_LIVE flights_live "$logs/$tag.offsets" >"$logs/$tag.offsets.log" 2>&1
        echo "METRIC latency_method=source positions in essaim_offsets polled every 10 ms" >>"$logs/$tag.offsets.log"
      fi
    fi
  fi
  tool record "$results" \
    "$base,\"ok\":$ok,\"error\":\"$error\",\"wall_s\":$wall,\"wall_events_per_s\":$(awk -v n="$rows" -v w="$wall" 'BEGIN { printf "%.1f", n / w }'),\"windows\":$windows,\"dump\":\"$dump\",\"load1\":$(cut -d' ' -f1 /proc/loadavg)}" \
    "$logs/$tag.log" "live=$logs/$tag.live.log" "live=$logs/$tag.offsets.log" "pub=$logs/$tag.publish.log"
  log "$tag: ok=$ok wall ${wall}s $(grep -h 'METRIC events_per_s\|METRIC latency_p' "$logs/$tag.log" "$logs/$tag.live.log" 2>/dev/null | tr '\n' ' ')"
}

for k in $(seq "$runs"); do
  for system in $only; do
    run_one "$system" "$k"
  done
done

essaim_sha=n/a
[[ -x $essaim_bin ]] && essaim_sha=$(sha256sum "$essaim_bin" | cut -c1-12)
tool record "$results" "{\"kind\":\"session\",\"rows\":$rows,\"partitions\":$partitions,\"live_rows\":$live_rows,\"live_rate\":$live_rate,\"runs\":$runs,\"started\":\"$started\",\"finished\":\"$(date -u +%Y-%m-%dT%H:%M:%S)\",\"commit\":\"$commit\",\"essaim_sha256\":\"$essaim_sha\",\"nproc\":$(nproc)}"
tool summarize "$results" "$out/results.md"
