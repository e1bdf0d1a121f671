#!/usr/bin/env bash
# Installs what the MapReduce peers need, only what is missing:
#   Debian: wamerican (the corpus vocabulary, /usr/share/dict/american-english),
#           time (/usr/bin/time, used by bench.py), a headless Java runtime (for PySpark),
#           lz4 (GNU sort's --compress-program in the sort benchmark)
#   pip:    pyspark, dask[bag,distributed], psutil (bench.py's process-tree sampler)
# Versions are pinned to those of the shared peer results (shared/bench/RESULTS.md) so
# that figures compare; set UNPINNED=1 to take the newest instead.
# rust-wc (the hand-written Rust word count) is built by run_mapreduce_all.sh, not here.
# usage: bench/install_mapreduce_peers.sh
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
[[ -f /usr/share/dict/american-english ]] || need_deb+=(wamerican)
[[ -x /usr/bin/time ]] || need_deb+=(time)
command -v java >/dev/null || need_deb+=(default-jre-headless)
command -v lz4 >/dev/null || need_deb+=(lz4)
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
has psutil || want+=("$(pin psutil 7.2.2)")
has pyspark || want+=("$(pin pyspark 4.3.0)")
if ! has dask.bag || ! has distributed; then
  want+=("$(pin 'dask[bag,distributed]' 2026.8.0)" "$(pin distributed 2026.8.0)")
fi
if ((${#want[@]})); then
  echo "pip install ${want[*]}"
  pip_install "${want[@]}" || { echo "pip install failed: ${want[*]}" >&2; exit 1; }
fi
"$py" - <<'PY'
import importlib
for m in ("psutil", "pyspark", "dask", "distributed"):
    try:
        print(f"{m} {importlib.import_module(m).__version__}")
    except Exception as e:  # noqa: BLE001
        print(f"{m} MISSING ({type(e).__name__})")
PY
java -version 2>&1 | head -1
dpkg-query -W -f='wamerican ${Version}\n' wamerican 2>/dev/null
exit 0
