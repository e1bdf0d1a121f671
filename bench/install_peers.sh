#!/usr/bin/env bash
# Installs what the task-farm peers need, only what is missing:
#   Debian: redis-server (Celery's broker), time (/usr/bin/time, used by bench.py)
#   pip:    dask[distributed], celery, redis (client), psutil, ray (optional: skipped
#           with a warning when it does not install)
# Versions are pinned to those of the shared peer results (shared/bench/RESULTS.md) so
# that figures compare; set UNPINNED=1 to take the newest instead.
# usage: bench/install_peers.sh
set -uo pipefail
py=${PYTHON:-python3}
apt_updated=0
apt_install() {
  if [[ $apt_updated == 0 ]]; then
    apt-get update -qq || { echo "apt-get update failed" >&2; return 1; }
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}
need_deb=()
command -v redis-server >/dev/null || need_deb+=(redis-server)
[[ -x /usr/bin/time ]] || need_deb+=(time)
if ((${#need_deb[@]})); then
  echo "installing Debian packages: ${need_deb[*]}"
  apt_install "${need_deb[@]}" || { echo "apt-get install ${need_deb[*]} failed" >&2; exit 1; }
fi

pin() { if [[ ${UNPINNED:-0} == 1 ]]; then echo "$1"; else echo "$1==$2"; fi; }
has() { "$py" -c "import $1" >/dev/null 2>&1; }
pip_install() {  # pinned first, then unpinned if the pinned version is not available
  "$py" -m pip install -q --disable-pip-version-check "$@" && return 0
  echo "pinned install failed, trying without pins: $*" >&2
  "$py" -m pip install -q --disable-pip-version-check "${@%%==*}"
}
want=()
has psutil || want+=(psutil)
has distributed || want+=("$(pin 'dask[distributed]' 2026.8.0)")
has celery || want+=("$(pin celery 5.7.0)")
has redis || want+=("$(pin redis 8.1.0)")
if ((${#want[@]})); then
  echo "pip install ${want[*]}"
  pip_install "${want[@]}" || { echo "pip install failed: ${want[*]}" >&2; exit 1; }
fi
if ! has ray; then
  echo "pip install ray (large; skipped if it does not install within ${RAY_INSTALL_TIMEOUT:-900} s)"
  timeout "${RAY_INSTALL_TIMEOUT:-900}" "$py" -m pip install -q --disable-pip-version-check "$(pin ray 2.60.0)" \
    || timeout "${RAY_INSTALL_TIMEOUT:-900}" "$py" -m pip install -q --disable-pip-version-check ray \
    || echo "WARNING: ray did not install; the Ray peer will be skipped" >&2
fi
"$py" - <<'PY'
import importlib
for m in ("psutil", "dask", "distributed", "celery", "kombu", "redis", "ray"):
    try:
        print(f"{m} {importlib.import_module(m).__version__}")
    except Exception as e:  # noqa: BLE001
        print(f"{m} MISSING ({type(e).__name__})")
PY
redis-server --version
exit 0
