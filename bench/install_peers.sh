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
# shellcheck source=bench/install_common.sh
source "$(dirname "$0")/install_common.sh"
need_deb=()
command -v redis-server >/dev/null || need_deb+=(redis-server)
[[ -x /usr/bin/time ]] || need_deb+=(time)
install_debian_packages "${need_deb[@]}"

want=()
has psutil || want+=(psutil)
has distributed || want+=("$(pin 'dask[distributed]' 2026.8.0)")
has celery || want+=("$(pin celery 5.7.0)")
has redis || want+=("$(pin redis 8.1.0)")
install_pip_packages "${want[@]}"
if ! has ray; then
  echo "pip install ray (large; skipped if it does not install within ${RAY_INSTALL_TIMEOUT:-900} s)"
  timeout "${RAY_INSTALL_TIMEOUT:-900}" "$py" -m pip install -q --disable-pip-version-check "$(pin ray 2.60.0)" \
    || timeout "${RAY_INSTALL_TIMEOUT:-900}" "$py" -m pip install -q --disable-pip-version-check ray \
    || echo "WARNING: ray did not install; the Ray peer will be skipped" >&2
fi
print_python_versions psutil dask distributed celery kombu redis ray
redis-server --version
exit 0
