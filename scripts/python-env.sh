#!/usr/bin/env bash
# Prints the path of a Python interpreter with the tools a test needs, creating it first
# if needed. Usage: scripts/python-env.sh [mrjob|schemathesis|k8s|client|sklearn] (default mrjob).
#
# - mrjob: the streaming tests (crates/essaim-mapreduce/tests/mrjob_compat.rs and the
#   e2e MapReduce tests) run mrjob's own example jobs, unmodified, as Hadoop Streaming
#   programs. mrjob 0.7.4 has one hard dependency, PyYAML; both are pinned.
# - schemathesis: the REST API test (crates/essaim/tests/e2e/rest_api.rs) generates
#   requests from the coordinator's OpenAPI document and checks every answer against it.
# - k8s: the manifest test (crates/essaim/tests/manifests.rs) validates deploy/k8s/
#   offline with kubernetes-validate, which ships the API schemas of each Kubernetes
#   release, and reads the manifests with PyYAML.
# - client: the Python client's own tests (clients/python/tests, run by
#   crates/essaim/tests/e2e/python_client.rs): pytest, tqdm for progress bars, boto3 to
#   put inputs in and read outputs from the test object store, and setuptools to build
#   the client (the test installs it with `pip install ./clients/python` each run).
# - sklearn: the model-quality benchmark (bench/naive_bayes.sh) trains scikit-learn's
#   MultinomialNB on the same split and tokenisation as `essaim train naive-bayes`;
#   scikit-learn and its dependencies are pinned (the newest that CPython 3.11 takes).
# - mlflow: the serving benchmark (bench/model_serve.sh) serves scikit-learn's model with
#   `mlflow models serve`; MLflow and scikit-learn are pinned (mlflow-tracing, which
#   mlflow requires at its own version, has no 3.18 on PyPI yet: 3.17.2 is the newest).
#
# Each profile is a virtual environment under target/ (cargo clean removes it), isolated
# from the system's Python, created once and reused. Needs CPython 3 with the venv
# module (3.11 is what these pins are tested with here) and PyPI. Python to use:
# $PYTHON, else python3. Progress goes to stderr; stdout is the interpreter's path only.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
profile="${1:-mrjob}"
case "$profile" in
    mrjob)
        env_dir="$root/target/python-env"
        pins=("mrjob==0.7.4" "PyYAML==6.0.2")
        smoke_test='import mrjob.job, yaml'
        ;;
    schemathesis)
        env_dir="$root/target/python-env-schemathesis"
        pins=("schemathesis==4.32.5")
        smoke_test='import schemathesis'
        ;;
    k8s)
        env_dir="$root/target/python-env-k8s"
        pins=("kubernetes-validate==1.37.0" "PyYAML==6.0.2")
        smoke_test='import kubernetes_validate, yaml'
        ;;
    client)
        env_dir="$root/target/python-env-client"
        pins=("pytest==9.2.0" "tqdm==4.70.1" "boto3==1.44.5" "setuptools==84.2.1")
        smoke_test='import pytest, tqdm, boto3, setuptools'
        ;;
    sklearn)
        env_dir="$root/target/python-env-sklearn"
        pins=("scikit-learn==1.9.1" "numpy==2.4.6" "scipy==1.17.1" "joblib==1.6.0" "threadpoolctl==3.8.0")
        smoke_test='import sklearn.naive_bayes, sklearn.feature_extraction.text'
        ;;
    mlflow)
        env_dir="$root/target/python-env-mlflow"
        pins=("mlflow==3.17.2" "mlflow-skinny==3.17.2" "mlflow-tracing==3.17.2" "scikit-learn==1.9.1" "numpy==2.4.6" "scipy==1.17.1" "pandas==3.1.1")
        smoke_test='import mlflow.sklearn, sklearn.naive_bayes'
        ;;
    *)
        echo "python-env: unknown profile '$profile' (mrjob, schemathesis, k8s, client, sklearn or mlflow)" >&2
        exit 2
        ;;
esac
# Written last: an environment without it is half-made (interrupted, no network) and is
# made again rather than trusted.
marker="$env_dir/.essaim-ready"
wanted="${pins[*]}"

ready() { [[ -f "$marker" && "$(cat "$marker")" == "$wanted" ]]; }
if ready; then
    echo "$env_dir/bin/python"
    exit 0
fi

# Test processes may call this at the same time (nextest runs each test in a process of
# its own): one creates the environment, the others wait for it and reuse it.
mkdir -p "$root/target"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$env_dir.lock"
    flock 9
    if ready; then
        echo "$env_dir/bin/python"
        exit 0
    fi
fi

base_python="${PYTHON:-python3}"
if ! command -v "$base_python" >/dev/null 2>&1; then
    echo "python-env: no '$base_python' on PATH (set PYTHON to a CPython 3 interpreter)" >&2
    exit 1
fi

echo "python-env: creating $env_dir with ${wanted}" >&2
rm -rf "$env_dir"
"$base_python" -m venv "$env_dir" >&2
# --no-input and a bounded timeout: without network this must fail, not hang.
"$env_dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --timeout 30 --retries 2 "${pins[@]}" >&2
"$env_dir/bin/python" -c "$smoke_test" >&2
echo "$wanted" > "$marker"
echo "$env_dir/bin/python"
