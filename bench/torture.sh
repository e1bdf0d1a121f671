#!/usr/bin/env bash
# The torture suite's long profile: seeded schedules of faults (SIGKILL and SIGSTOP of
# the leader coordinator and of workers, the leader cut off from etcd, an etcd member
# killed, a worker's scratch disk filled) against a real highly available cluster
# running a task farm, a MapReduce job or a streaming pipeline, each checked against
# its oracle (crates/essaim/tests/e2e/torture/mod.rs says what is checked).
#
# Usage: bench/torture.sh [SCHEDULES [FIRST_SEED]]     (defaults: 100 schedules from seed 1)
#
# Prints each schedule as it is drawn, then a `TORTURE schedules=… violations=0 faults=…`
# line; a violation fails with its seed, which replays with
# `bench/torture.sh 1 SEED`. 10 to 60 s per schedule on 2 cores (about 35 s on
# average; the pipelines take longest). The default test command runs 3 schedules.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESSAIM_TORTURE_SCHEDULES="${1:-100}"
export ESSAIM_TORTURE_SEED="${2:-1}"
# cargo test rather than nextest: no per-test time limit for a long profile.
exec cargo test -p essaim --test e2e -- --exact \
    torture::seeded_fault_schedules_lose_nothing_acknowledged_and_commit_every_task_once \
    --nocapture
