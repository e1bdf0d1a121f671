# Shared by the benchmark sessions (bench/run_taskfarm_all.sh, bench/run_mapreduce_all.sh):
# sourced, never run.

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
