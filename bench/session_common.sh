# Shared by the benchmark sessions (bench/run_taskfarm_all.sh, bench/run_mapreduce_all.sh):
# sourced, never run. Sets the folders of a session: bench (this folder), repo (the
# repository) and peer (the shared peer scripts and bench.py: $PEER_DIR, by default
# <repo>/../shared/bench), and exits with 2 when there is no peer folder.

bench=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$bench/.." && pwd)
peer=$(cd "${PEER_DIR:-$repo/../shared/bench}" && pwd) || { echo "no peer dir; set PEER_DIR" >&2; exit 2; }
[[ -f $peer/bench.py ]] || { echo "$peer/bench.py not found; set PEER_DIR" >&2; exit 2; }

# Builds the release binary of essaim in the repository $1, retrying for a few minutes:
# others may be mid-edit on a shared machine. Exits when it never builds.
build_essaim_release() {
  local repo="$1" built=0 attempt
  for attempt in 1 2 3 4 5; do  # others may be mid-edit: wait and retry
    if (cd "$repo" && cargo build --release -p essaim); then built=1; break; fi
    echo "cargo build failed (attempt $attempt); retrying in 60 s" >&2
    sleep 60
  done
  [[ $built == 1 ]] || { echo "cargo build --release -p essaim failed" >&2; exit 1; }
}
