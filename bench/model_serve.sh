#!/usr/bin/env bash
# Serving: predictions/s and p50/p99 latency of `essaim serve` against `mlflow models
# serve`, each serving its own naive Bayes text classifier trained on the same split of
# the same data (essaim's by `essaim train naive-bayes` on a local cluster, MLflow's a
# scikit-learn CountVectorizer + MultinomialNB pipeline saved with mlflow.sklearn), driven
# by the same client (wrk, closed loop, one message per request) at the same
# concurrency levels, interleaved round by round.
#
# usage: bench/model_serve.sh [DATA.tsv or DATA.tsv.zst]
#   default DATA: ../shared/data/spamassassin-messages.tsv.zst (label, group, id,
#   subject, body).
# env: ESSAIM_BIN (default <repo>/target/release/essaim), ROUNDS (3), DURATION (10, in
#      seconds per run), CONCURRENCY ("1 8 64"), REQUESTS (200 held-out messages sent
#      in turn), MLFLOW_WORKERS (2: one per core; MLflow's default is 1), SEED (42),
#      HOLDOUT (0.2), IN_PROCESS (1: also time the same predictions called in-process,
#      the hop a central runner adds), WORK_DIR (a new temporary directory).
#
# Before measuring, both servers are sent each of the REQUESTS messages once: every
# answer must be 200 and the two must agree on the label (they are the same model up
# to floating point), else the script stops. Then, for each round, concurrency level
# and system (order alternating by round): wrk for DURATION seconds after 2 s of
# warm-up, requests/s and latency percentiles read from its report; a run with any
# non-2xx answer or socket error fails the benchmark.
#
# Results: one JSON object per run in bench/results/model_serve.jsonl, and a table of
# medians on standard output with the ratios essaim / MLflow.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "model_serve.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
command -v wrk >/dev/null || {
    echo "installing wrk (Debian)"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; }
data=${1:-$repo/../shared/data/spamassassin-messages.tsv.zst}
rounds=${ROUNDS:-3} duration=${DURATION:-10} concurrency=${CONCURRENCY:-"1 8 64"}
requests=${REQUESTS:-200} mlflow_workers=${MLFLOW_WORKERS:-2}
seed=${SEED:-42} holdout=${HOLDOUT:-0.2}
results=$bench/results/model_serve.jsonl
mkdir -p "$bench/results"

work=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/essaim-model-serve-XXXXXX")}
mkdir -p "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for() {  # URL: waits up to 120 s for a 200
    for _ in $(seq 600); do curl -sf -o /dev/null "$1" && return 0; sleep 0.2; done
    echo "model_serve.sh: $1 never answered" >&2; exit 1
}

case $data in
    *.zst) zstd -q -d -c "$data" > "$work/data.tsv" ;;
    *) cp "$data" "$work/data.tsv" ;;
esac
python=$("$repo/scripts/python-env.sh" mlflow)
echo "preparing MLflow's model and the requests"
"$python" "$bench/model_serve_prepare.py" "$work/data.tsv" label body "$seed" "$holdout" \
    "$work/mlflow-model" "$work/requests" "$requests"

echo "training essaim's model on a local cluster"
cluster_port=$(free_port)
coordinator=http://127.0.0.1:$cluster_port
RUST_LOG=warn "$bin" local --workers 2 --slots 1 --listen "127.0.0.1:$cluster_port" \
    --data-dir "$work/cluster" > "$work/cluster.log" 2>&1 &
pids+=($!)
wait_for "$coordinator/readyz"
"$bin" train naive-bayes --coordinator "$coordinator" --input "$work/data.tsv" \
    --label-column label --text-column body --model spam-filter --seed "$seed" \
    --holdout "$holdout" --positive-class spam --work-dir "$work/train" --output json \
    > "$work/train.json"
"$bin" models alias spam-filter production 1 --coordinator "$coordinator" > /dev/null

essaim_port=$(free_port) mlflow_port=$(free_port)
RUST_LOG=warn "$bin" serve --coordinator "$coordinator" --model spam-filter@production \
    --listen "127.0.0.1:$essaim_port" > "$work/serve.log" 2>&1 &
pids+=($!)
PATH=$(dirname "$python"):$PATH "$python" -m mlflow models serve -m "$work/mlflow-model" \
    --env-manager local -h 127.0.0.1 -p "$mlflow_port" -w "$mlflow_workers" \
    > "$work/mlflow.log" 2>&1 &
pids+=($!)
wait_for "http://127.0.0.1:$essaim_port/v2/models/spam-filter/ready"
wait_for "http://127.0.0.1:$mlflow_port/ping"
essaim_url=http://127.0.0.1:$essaim_port/v2/models/spam-filter/infer
mlflow_url=http://127.0.0.1:$mlflow_port/invocations

echo "checking that both answer every request and agree"
python3 "$bench/model_serve_check.py" "$work/requests" "$essaim_url" "$mlflow_url"

if [[ ${IN_PROCESS:-1} == 1 ]]; then
    "$bin" models download spam-filter@production --out "$work/artifact.json" \
        --coordinator "$coordinator" > /dev/null
    "$bin" bench predict --artifact "$work/artifact.json" \
        --requests "$work/requests/essaim" --seconds "$duration" > "$work/in_process.json"
fi

commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
run_wrk() {  # ROUND SYSTEM CONNECTIONS URL SCRIPT
    local threads=$(( $3 < 2 ? 1 : 2 ))
    wrk -t"$threads" -c"$3" -d2s -s "$5" "$4" > /dev/null
    wrk -t"$threads" -c"$3" -d"${duration}s" --latency -s "$5" "$4" > "$work/wrk.txt"
    python3 "$bench/model_serve_wrk.py" "$work/wrk.txt" "$1" "$2" "$3" "$commit" \
        "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$results" > "$work/last.json"
}
: > "$work/runs.jsonl"
for round in $(seq "$rounds"); do
    for c in $concurrency; do
        if (( round % 2 )); then order="essaim mlflow"; else order="mlflow essaim"; fi
        for system in $order; do
            if [[ $system == essaim ]]; then url=$essaim_url; else url=$mlflow_url; fi
            run_wrk "$round" "$system" "$c" "$url" "$work/requests/$system.lua"
            cat "$work/last.json" >> "$work/runs.jsonl"
            echo "round $round c=$c $system: $(cat "$work/last.json")"
        done
    done
done
python3 "$bench/model_serve_wrk.py" --summary "$work/runs.jsonl" "$work/in_process.json"
echo "essaim $("$bin" --version | awk '{print $2}') ($commit), MLflow with $mlflow_workers workers; work dir $work"
