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
# shellcheck source=bench/install_common.sh
source "$(dirname "$0")/install_common.sh"
need_deb=()
[[ -f /usr/share/dict/american-english ]] || need_deb+=(wamerican)
[[ -x /usr/bin/time ]] || need_deb+=(time)
command -v java >/dev/null || need_deb+=(default-jre-headless)
command -v lz4 >/dev/null || need_deb+=(lz4)
install_debian_packages "${need_deb[@]}"

want=()
has psutil || want+=("$(pin psutil 7.2.2)")
has pyspark || want+=("$(pin pyspark 4.3.0)")
if ! has dask.bag || ! has distributed; then
  want+=("$(pin 'dask[bag,distributed]' 2026.8.0)" "$(pin distributed 2026.8.0)")
fi
install_pip_packages "${want[@]}"
print_python_versions psutil pyspark dask distributed
java -version 2>&1 | head -1
dpkg-query -W -f='wamerican ${Version}\n' wamerican 2>/dev/null
exit 0
