#!/usr/bin/env bash
# Prints the path of a Python interpreter that has mrjob, creating it first if needed.
#
# The streaming tests (crates/essaim-mapreduce/tests/mrjob_compat.rs) run mrjob's own
# example jobs, unmodified, as Hadoop Streaming programs. They need mrjob at a pinned
# version, isolated from the system's Python: a virtual environment under
# target/python-env, created once and reused (cargo clean removes it).
#
# Needs CPython 3 with the venv module (3.11 is what mrjob 0.7.4 is tested with here)
# and PyPI. mrjob 0.7.4 has one hard dependency, PyYAML; both are pinned. Python to use:
# $PYTHON, else python3. Progress goes to stderr; stdout is the interpreter's path only.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
env_dir="$root/target/python-env"
# Written last: an environment without it is half-made (interrupted, no network) and is
# made again rather than trusted.
marker="$env_dir/.essaim-ready"
pins=("mrjob==0.7.4" "PyYAML==6.0.2")
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
    exec 9>"$root/target/python-env.lock"
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
"$env_dir/bin/python" -c 'import mrjob.job, yaml' >&2
echo "$wanted" > "$marker"
echo "$env_dir/bin/python"
