#!/usr/bin/env bash
# Map-task and reduce-task throughput on one core, without a cluster (the split reader,
# a mapper, the sort buffer, spills, merges and a reducer on generated data), next to
# GNU sort for scale. Prints one line per measurement; compare two builds on the same
# machine, in the same session.
#
# usage: bench/map_task.sh [MEGABYTES=200]
#   Builds and runs crates/essaim-mapreduce/examples/map_throughput.rs in release mode
#   (see its doc for what each line measures).
#   The shuffle over HTTP between real worker processes is measured by bench/sort.sh
#   (whole sort jobs; the reduce tasks' durations are in the job's history).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
megabytes=${1:-200}
cd "$repo"
ESSAIM_BENCH_MB=$megabytes cargo run --quiet --release -p essaim-mapreduce --example map_throughput
