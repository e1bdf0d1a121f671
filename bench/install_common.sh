# Shared by bench/install_peers.sh and bench/install_mapreduce_peers.sh: sourced, never
# run. Installs only what is missing: Debian packages once per run (one apt-get update at
# most), pip packages pinned to the versions of the shared peer results unless
# UNPINNED=1. Uses $py, the Python to install into.

apt_updated=0
apt_install() {
  if [[ $apt_updated == 0 ]]; then
    apt-get update -qq || { echo "apt-get update failed" >&2; return 1; }
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

# Installs the Debian packages named (the ones found missing), or exits.
install_debian_packages() {
  if (($#)); then
    echo "installing Debian packages: $*"
    apt_install "$@" || { echo "apt-get install $* failed" >&2; exit 1; }
  fi
}

pin() { if [[ ${UNPINNED:-0} == 1 ]]; then echo "$1"; else echo "$1==$2"; fi; }
has() { "$py" -c "import $1" >/dev/null 2>&1; }
pip_install() {  # pinned first, then unpinned if the pinned version is not available
  "$py" -m pip install -q --disable-pip-version-check "$@" && return 0
  echo "pinned install failed, trying without pins: $*" >&2
  "$py" -m pip install -q --disable-pip-version-check "${@%%==*}"
}

# Installs the pip requirements named (the ones found missing), or exits.
install_pip_packages() {
  if (($#)); then
    echo "pip install $*"
    pip_install "$@" || { echo "pip install failed: $*" >&2; exit 1; }
  fi
}

# Prints the version of each Python module named, or that it is missing.
print_python_versions() {
  "$py" - "$@" <<'PY'
import importlib, sys
for m in sys.argv[1:]:
    try:
        print(f"{m} {importlib.import_module(m).__version__}")
    except Exception as e:  # noqa: BLE001
        print(f"{m} MISSING ({type(e).__name__})")
PY
}
