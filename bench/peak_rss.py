#!/usr/bin/env python3
"""Runs a command and reports the peak RSS of each process of its tree, as METRIC lines.

usage: python3 bench/peak_rss.py [--interval 0.1] [--prefix rss] -- CMD [ARG...]

Every INTERVAL seconds it walks /proc for the descendants of CMD and reads each one's
VmHWM (the kernel's own high-water mark of that process's resident set, so a sample
misses at most the growth of a process's last INTERVAL before it exits) and VmRSS.
It exits with CMD's exit status and prints, after CMD's own output:

  METRIC cmd_wall_s=…                CMD's own wall time, from its start to its exit (so
                                     without this sampler's and an outer script's start-up)

  METRIC <prefix>_main_mib=…         CMD itself (for `essaim run`: client + coordinator)
  METRIC <prefix>_worker<i>_mib=…    each `essaim worker --name local-<i>` process (the
                                     largest of its incarnations if it was restarted)
  METRIC <prefix>_worker_max_mib=…   the largest worker
  METRIC <prefix>_workers=…          worker processes seen (restarts included)
  METRIC <prefix>_max_mib=…          the largest process of the tree, whatever it is
  METRIC <prefix>_tree_sum_mib=…     the peak over samples of the sum of VmRSS over CMD's
                                     tree (this sampler excluded)
  METRIC <prefix>_sampler_mib=…      this sampler's own peak (it is part of the tree that
                                     an outer harness such as bench.py sees)
and one `peak_rss: pid … hwm … MiB: cmdline` line per process on stderr.

Only the standard library and Linux /proc are used.
"""
import argparse
import os
import re
import subprocess
import sys
import time


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def children_map():
    """ppid -> [pid] and pid -> start time (clock ticks) for every process in /proc."""
    kids, starts = {}, {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after the last ')'
        rest = stat[stat.rfind(")") + 2:].split()
        kids.setdefault(int(rest[1]), []).append(int(name))
        starts[int(name)] = int(rest[19])
    return kids, starts


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--prefix", default="rss")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    if not cmd:
        ap.error("no command")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    hwm = {}    # (pid, start time) -> [peak KiB, cmdline]
    tree_peak = 0

    def sample():
        nonlocal tree_peak
        kids, starts = children_map()
        todo, seen = [proc.pid], []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo.extend(kids.get(pid, []))
        total = 0
        for pid in seen:
            h = status_kib(pid, "VmHWM")
            r = status_kib(pid, "VmRSS")
            if h is None:
                continue
            key = (pid, starts.get(pid, 0))
            if key not in hwm:
                hwm[key] = [0, cmdline(pid)]
            hwm[key][0] = max(hwm[key][0], h)
            total += r or 0
        tree_peak = max(tree_peak, total)

    while proc.poll() is None:
        sample()
        try:
            proc.wait(timeout=a.interval)  # returns as soon as CMD exits
        except subprocess.TimeoutExpired:
            pass
    wall = time.perf_counter() - t0
    rc = proc.returncode

    p = a.prefix
    mib = lambda kib: kib / 1024  # noqa: E731
    main_kib = max((v[0] for (pid, _), v in hwm.items() if pid == proc.pid), default=0)
    workers = {}
    for (pid, _), (peak, cl) in hwm.items():
        m = re.search(r"\bworker\b.*--name local-(\d+)", cl)
        if m:
            i = int(m.group(1))
            workers[i] = max(workers.get(i, 0), peak)
        print(f"peak_rss: pid {pid} hwm {mib(peak):.1f} MiB: {cl[:200]}", file=sys.stderr)
    print(f"METRIC cmd_wall_s={wall:.4f}")
    print(f"METRIC {p}_main_mib={mib(main_kib):.1f}")
    for i in sorted(workers):
        print(f"METRIC {p}_worker{i}_mib={mib(workers[i]):.1f}")
    if workers:
        print(f"METRIC {p}_worker_max_mib={mib(max(workers.values())):.1f}")
    print(f"METRIC {p}_workers={sum(1 for _, cl in hwm.values() if re.search(r'--name local-', cl))}")
    print(f"METRIC {p}_max_mib={mib(max((v[0] for v in hwm.values()), default=0)):.1f}")
    print(f"METRIC {p}_tree_sum_mib={mib(tree_peak):.1f}")
    print(f"METRIC {p}_sampler_mib={mib(status_kib(os.getpid(), 'VmHWM') or 0):.1f}")
    sys.stdout.flush()
    sys.exit(rc)


if __name__ == "__main__":
    main()
