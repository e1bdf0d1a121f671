#!/usr/bin/env bash
# Model quality and training time of `essaim train naive-bayes` against scikit-learn's
# MultinomialNB on the same seeded split and the same tokenisation (issue 15's first
# acceptance check: accuracy and F1 within 1 point).
#
# usage: bench/naive_bayes.sh [DATA.tsv or DATA.tsv.zst]
#   default DATA: ../shared/data/spamassassin-messages.tsv.zst (label, group, id,
#   subject, body). Starts `essaim local --workers 2 --slots 1` on a free port, runs
#   `essaim train naive-bayes --positive-class spam --output json` (training and
#   evaluation jobs on the cluster, then registration), then bench/naive_bayes_sklearn.py
#   in the `sklearn` Python environment (scripts/python-env.sh), and prints both.
# env: ESSAIM_BIN (default <repo>/target/release/essaim), SEED (42), HOLDOUT (0.2),
#      LABEL (label), TEXT (body), POSITIVE (spam), REPLICATE (1: the rows are written
#      N times after one header, e.g. 50 for about 1 GB of SpamAssassin; the split is
#      by content, so every copy of a row lands on the same side), SKLEARN (1; 0 skips
#      the scikit-learn side)
# METRIC lines: essaim_<metric> and sklearn_<metric> for accuracy, precision, recall,
#   f1; diff_accuracy_points and diff_f1_points (essaim − scikit-learn, in points);
#   essaim_train_wall_s (the whole command: hashing, two jobs, registration),
#   rss_worker_max_mib and rss_coordinator_mib (peak resident sets, VmHWM, of the
#   local cluster's processes), input_mib; sklearn_fit_predict_s (vectorise, fit,
#   predict; reading excluded) and sklearn_peak_rss_mib.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
bin=${ESSAIM_BIN:-$repo/target/release/essaim}
[[ -x $bin ]] || { echo "naive_bayes.sh: $bin not found; run: cargo build --release -p essaim" >&2; exit 2; }
data=${1:-$repo/../shared/data/spamassassin-messages.tsv.zst}
seed=${SEED:-42} holdout=${HOLDOUT:-0.2} positive=${POSITIVE:-spam}
label=${LABEL:-label} text=${TEXT:-body}

work=$(mktemp -d "${TMPDIR:-/tmp}/essaim-nb-XXXXXX")
cluster_pid=
cleanup() {
    [[ -n $cluster_pid ]] && kill "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
tsv=$work/data.tsv
case $data in
    *.zst) zstd -q -d -c "$data" > "$work/once.tsv" ;;
    *) cp "$data" "$work/once.tsv" ;;
esac
head -n 1 "$work/once.tsv" > "$tsv"
for _ in $(seq "${REPLICATE:-1}"); do tail -n +2 "$work/once.tsv" >> "$tsv"; done
rm "$work/once.tsv"
python=$("$repo/scripts/python-env.sh" sklearn)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
RUST_LOG=warn "$bin" local --workers 2 --slots 1 --listen "127.0.0.1:$port" \
    --data-dir "$work/cluster" > "$work/cluster.log" 2>&1 &
cluster_pid=$!
for _ in $(seq 100); do
    "$bin" workers --coordinator "$url" --connect-timeout 1 --output json 2>/dev/null \
        | grep -q worker_id && break
    sleep 0.2
done

started=$(date +%s.%N)
"$bin" train naive-bayes --coordinator "$url" --input "$tsv" --label-column "$label" \
    --text-column "$text" --model bench-nb --seed "$seed" --holdout "$holdout" \
    --positive-class "$positive" --work-dir "$work/train" --output json > "$work/essaim.json"
ended=$(date +%s.%N)
# Peak resident sets of the cluster's processes (the workers are its children).
peak_mib() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
worker_max=0
for pid in $(pgrep -P "$cluster_pid"); do
    worker_max=$(python3 -c "print(max($worker_max, $(peak_mib "$pid")))")
done
echo "METRIC rss_worker_max_mib=$worker_max"
echo "METRIC rss_coordinator_mib=$(peak_mib "$cluster_pid")"
echo "METRIC input_mib=$(du -m "$tsv" | cut -f1)"
if [[ ${SKLEARN:-1} == 0 ]]; then
    python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["metrics"]))' \
        "$work/essaim.json"
    echo "METRIC essaim_train_wall_s=$(python3 -c "print(round($ended - $started, 3))")"
    exit 0
fi
"$python" "$bench/naive_bayes_sklearn.py" "$tsv" "$label" "$text" "$seed" "$holdout" \
    "$positive" > "$work/sklearn.json"

python3 - "$work/essaim.json" "$work/sklearn.json" "$started" "$ended" <<'PY'
import json, sys
essaim = json.load(open(sys.argv[1]))["metrics"]
sklearn = json.load(open(sys.argv[2]))
print(f"{'metric':<12} {'essaim':>10} {'sklearn':>10}")
for name in ["accuracy", "precision", "recall", "f1", "train_rows", "eval_rows", "vocabulary"]:
    print(f"{name:<12} {essaim[name]:>10.4f} {sklearn[name]:>10.4f}")
for name in ["accuracy", "precision", "recall", "f1"]:
    print(f"METRIC essaim_{name}={essaim[name]:.6f}")
    print(f"METRIC sklearn_{name}={sklearn[name]:.6f}")
for name in ["accuracy", "f1"]:
    print(f"METRIC diff_{name}_points={100 * (essaim[name] - sklearn[name]):.6f}")
print(f"METRIC essaim_train_wall_s={float(sys.argv[4]) - float(sys.argv[3]):.3f}")
print(f"METRIC sklearn_fit_predict_s={sklearn['fit_and_predict_seconds']:.3f}")
print(f"METRIC sklearn_peak_rss_mib={sklearn['peak_rss_mib']:.1f}")
PY
echo "essaim $("$bin" --version | awk '{print $2}') binary $bin, repo HEAD $(git -C "$repo" rev-parse --short HEAD)"
