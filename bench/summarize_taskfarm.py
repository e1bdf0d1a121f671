#!/usr/bin/env python3
"""Markdown tables of a task-farm session (bench/run_taskfarm_all.sh).

usage: python3 bench/summarize_taskfarm.py [--results bench/results]

Reads RESULTS/tf.jsonl (lines written by the shared bench.py; several lines of the same
name, e.g. one per round, are pooled) and RESULTS/recovery.jsonl if present, and prints:
  1. per system and config: tasks/s median (min..max over runs), round-trip p50/p99 in
     µs (median over runs), startup, process wall, peak RSS of the process tree, runs kept
     and disturbed runs repeated;
  2. ratios essaim / peer for throughput (>1: essaim faster) and p99 (<1: essaim
     faster), as the ratio of the medians and the range of the per-round ratios
     (the k-th run of essaim against the k-th run of the peer, made minutes apart);
  3. the goals (>= 20,000 tasks/s, p99 < 5 ms, ahead of every peer), met or not;
  4. recovery time after SIGKILL of a worker.
Only the standard library is used.
"""
import argparse
import json
import os
import statistics
import sys
from collections import OrderedDict

# name -> (tool, config, throughput metric prefix, latency metric prefix, N label)
SYSTEMS = OrderedDict([
    ("tf_essaim_p0", ("essaim", "local, 2 workers x 2 slots, prefetch 0, durable journal", "thr", "lat")),
    ("tf_essaim_p256", ("essaim", "local, 2 workers x 2 slots, prefetch 256, durable journal", "thr", "lat")),
    ("tf_essaim_auto", ("essaim", "local, 2 workers x 2 slots, prefetch auto (default), durable journal", "thr", "lat")),
    ("tf_essaim_p256_1m", ("essaim", "as above, prefetch 256, one 1,000,000-task job", "thr", "lat")),
    ("tf_mp", ("multiprocessing.Pool", "Pool(2), fork, imap_unordered chunksize=1", "thr_c1", "lat_lat")),
    ("tf_mp#c100", ("multiprocessing.Pool", "Pool(2), fork, imap_unordered chunksize=100 (batched)", "thr_c100", None)),
    ("tf_dask", ("Dask distributed", "LocalCluster 2 procs x 1 thread", "thr", "lat_lat")),
    ("tf_celery", ("Celery + Redis", "prefork --concurrency=2, Redis broker+backend (no persistence)", "thr", "lat_lat")),
    ("tf_ray", ("Ray", "ray.init(num_cpus=2), private netns", "thr", "lat_lat")),
])
ESSAIM = ["tf_essaim_p0", "tf_essaim_p256", "tf_essaim_auto"]
PEERS = ["tf_mp", "tf_mp#c100", "tf_dask", "tf_celery", "tf_ray"]
GOAL_TPS = 20_000
GOAL_P99_US = 5_000


def load(path):
    runs, lines = {}, {}
    if not os.path.exists(path):
        return runs, lines
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            runs.setdefault(d["name"], []).extend(d["runs"])
            lines.setdefault(d["name"], []).append(d)
    return runs, lines


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_int(x):
    return "" if x is None else f"{x:,.0f}"


def fmt(x, nd=2):
    return "" if x is None else f"{x:.{nd}f}"


def metric(runs, key):
    return [r["metrics"][key] for r in runs if isinstance(r["metrics"].get(key), float)]


class Row:
    def __init__(self, name, runs, lines):
        base = name.split("#")[0]
        self.name = name
        self.tool, self.config, thr, lat = SYSTEMS[name]
        self.runs = runs.get(base, [])
        self.ok_runs = [r for r in self.runs if r["rc"] == 0]
        self.failed = len(self.runs) - len(self.ok_runs)
        self.disturbed = sum(len(d.get("discarded_disturbed_runs", [])) for d in lines.get(base, []))
        self.kept_disturbed = sum(1 for r in self.runs if r.get("disturbed"))
        self.tps = metric(self.ok_runs, f"{thr}_tasks_per_s")
        self.tps_by_run = [r["metrics"].get(f"{thr}_tasks_per_s") for r in self.runs]
        n = metric(self.ok_runs, f"{thr}_n")
        self.n = int(n[0]) if n else None
        self.p50 = self.p99 = None
        self.p99_by_run = [None] * len(self.runs)
        if lat:
            self.p50 = med(metric(self.ok_runs, f"{lat}_p50_us"))
            self.p99 = med(metric(self.ok_runs, f"{lat}_p99_us"))
            self.p99_by_run = [r["metrics"].get(f"{lat}_p99_us") for r in self.runs]
            ln = metric(self.ok_runs, f"{lat}_n")
            self.lat_n = int(ln[0]) if ln else None
        else:
            self.lat_n = None
        self.startup = med(metric(self.ok_runs, "startup_s") or metric(self.ok_runs, "warmup_s"))
        self.wall = med([r["wall_s"] for r in self.ok_runs])
        rss = [r["tree_rss_kb"] for r in self.ok_runs if r.get("tree_rss_kb")]
        self.rss_mib = max(rss) / 1024 if rss else None
        self.commits = med(metric(self.ok_runs, "journal_commits"))
        self.events = med(metric(self.ok_runs, "journal_events"))

    @property
    def present(self):
        return bool(self.runs)

    @property
    def tps_med(self):
        return med(self.tps)


def fr(x):
    return f"{x:.2f}" if x >= 0.1 else f"{x:.2g}"


def ratio_range(a_by_run, b_by_run):
    rs = [a / b for a, b in zip(a_by_run, b_by_run) if a and b]
    return (min(rs), max(rs)) if rs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args()
    runs, lines = load(os.path.join(a.results, "tf.jsonl"))
    if not runs:
        sys.exit(f"no results in {a.results}/tf.jsonl")
    rows = {name: Row(name, runs, lines) for name in SYSTEMS}
    out = print

    out("### Throughput and round trip\n")
    out("| tool | config | N | tasks/s median (min..max) | p50 round trip µs | p99 round trip µs | startup s | process wall s | peak RSS, tree (MiB) | runs ok | disturbed runs repeated | kept although disturbed |")
    out("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        if not r.present:
            out(f"| {r.tool} | {r.config} | | not run | | | | | | 0 | | |")
            continue
        rng = f"{fmt_int(r.tps_med)} ({fmt_int(min(r.tps))}..{fmt_int(max(r.tps))})" if r.tps else "failed"
        out(f"| {r.tool} | {r.config} | {fmt_int(r.n)} | {rng} | {fmt_int(r.p50)} | {fmt_int(r.p99)} | "
            f"{fmt(r.startup)} | {fmt(r.wall, 1)} | {fmt_int(r.rss_mib)} | {len(r.ok_runs)}/{len(r.runs)} | {r.disturbed} | {r.kept_disturbed} |")
    out("")
    out("p50/p99: sequential one-task round trips (essaim: 2,000 one-task jobs, submit → committed; "
        "mp, Ray: 2,000; Dask, Celery: 1,000), the median over the runs of each run's percentile.")
    for name in ESSAIM + ["tf_essaim_p256_1m"]:
        r = rows[name]
        if r.commits:
            out(f"{name}: median {r.commits:,.0f} group commits (fdatasync) for {r.events:,.0f} journal events "
                f"in a run (≈{r.events / r.commits:,.1f} events per commit).")
    out("")

    out("### essaim / peer ratios (same session)\n")
    out("Throughput ratio > 1 and p99 ratio < 1 mean essaim is ahead. Ratio of the medians; "
        "in brackets the range of the per-round ratios (run k of essaim against run k of the peer).\n")
    out("| peer | " + " | ".join(f"throughput {e.split('_')[-1]} / peer" for e in ESSAIM)
        + " | " + " | ".join(f"p99 {e.split('_')[-1]} / peer" for e in ESSAIM) + " |")
    out("|---|" + "---|" * (2 * len(ESSAIM)))
    for p in PEERS:
        pr = rows[p]
        if not pr.present or not pr.tps:
            out(f"| {pr.tool} | not run |" + " |" * (2 * len(ESSAIM) - 1))
            continue
        cells = []
        for e in ESSAIM:
            er = rows[e]
            if er.tps and pr.tps:
                rr = ratio_range(er.tps_by_run, pr.tps_by_run)
                cells.append(f"{fr(er.tps_med / pr.tps_med)}×" + (f" [{fr(rr[0])}..{fr(rr[1])}]" if rr else ""))
            else:
                cells.append("")
        for e in ESSAIM:
            er = rows[e]
            if er.p99 and pr.p99:
                rr = ratio_range(er.p99_by_run, pr.p99_by_run)
                cells.append(f"{fr(er.p99 / pr.p99)}×" + (f" [{fr(rr[0])}..{fr(rr[1])}]" if rr else ""))
            else:
                cells.append("–")
        label = f"{pr.tool}" + (" (chunksize=100)" if p.endswith("c100") else "")
        out(f"| {label} | " + " | ".join(cells) + " |")
    out("")

    out("### Goals\n")
    out("| goal | " + " | ".join(ESSAIM) + " |")
    out("|---|" + "---|" * len(ESSAIM))

    def yes(b):
        return "**met**" if b else "**not met**"
    cells = [f"{fmt_int(rows[e].tps_med)} tasks/s: {yes((rows[e].tps_med or 0) >= GOAL_TPS)}" for e in ESSAIM]
    out(f"| ≥ {GOAL_TPS:,} no-op tasks/s through one coordinator | " + " | ".join(cells) + " |")
    cells = [f"p99 {fmt_int(rows[e].p99)} µs: {yes(rows[e].p99 is not None and rows[e].p99 < GOAL_P99_US)}" for e in ESSAIM]
    out(f"| p99 round trip < {GOAL_P99_US / 1000:g} ms | " + " | ".join(cells) + " |")
    for p in PEERS:
        pr = rows[p]
        if not pr.present or not pr.tps:
            continue
        cells = []
        for e in ESSAIM:
            er = rows[e]
            thr_ok = (er.tps_med or 0) > pr.tps_med
            lat_ok = None if pr.p99 is None else (er.p99 or 1e18) < pr.p99
            parts = [f"throughput {yes(thr_ok)}"]
            if lat_ok is not None:
                parts.append(f"p99 {yes(lat_ok)}")
            cells.append(", ".join(parts))
        label = pr.tool + (" (chunksize=100)" if p.endswith("c100") else "")
        out(f"| ahead of {label} | " + " | ".join(cells) + " |")
    out("")

    rruns, _ = load(os.path.join(a.results, "recovery.jsonl"))
    rec = rruns.get("recovery", [])
    if rec:
        out("### Recovery after SIGKILL of a worker\n")
        out("| worker timeout | heartbeat | runs | time to re-queue, min / median / max (s) |")
        out("|---|---|---|---|")
        timeouts = sorted({int(k.split("_")[1][1:]) for r in rec for k in r["metrics"] if k.startswith("recovery_t")},
                          reverse=True)
        for t in timeouts:
            xs = sorted(v for r in rec if r["rc"] == 0 for k, v in r["metrics"].items()
                        if k.startswith(f"recovery_t{t}_run") and isinstance(v, float))
            if xs:
                out(f"| {t / 1000:g} s | {max(t / 5, 50) / 1000:g} s | {len(xs)} | "
                    f"{xs[0]:.3f} / {statistics.median(xs):.3f} / {xs[-1]:.3f} |")
            else:
                out(f"| {t / 1000:g} s | | 0 | failed |")
        out("")


if __name__ == "__main__":
    main()
