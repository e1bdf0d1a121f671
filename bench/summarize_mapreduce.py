#!/usr/bin/env python3
"""Markdown tables of a MapReduce session (bench/run_mapreduce_all.sh).

usage: python3 bench/summarize_mapreduce.py [--results bench/results]

Reads RESULTS/mr.jsonl (lines written by the shared bench.py, one per run; lines of the
same name, e.g. one per round, are pooled) and RESULTS/mr_check.txt if present, and
prints:
  1. word count per system and corpus: wall median (min..max), MB/s on the median,
     startup and job time where the tool reports them, CPU, peak RSS (largest process,
     process tree, and for essaim the largest worker and the client + coordinator);
  2. ratios against essaim, as the ratio of the medians and the min, median and max of
     the per-round ratios (run k against run k, minutes apart): essaim / rust-wc (<= 1.33
     is the goal against 2 threads) and peer / essaim (>= 5 is the goal against Spark);
     a goal is met when both aggregates pass, borderline when one does;
  3. sort: essaim against GNU sort, per-process peak RSS, validation;
  4. the goals, met or not.
Only the standard library is used.
"""
import argparse
import json
import os
import statistics
import sys

WC = [  # name stem, tool, config
    ("mr_rust_t2", "rust-wc", "2 threads, mmap, FxHash, SSE2 tokenizer"),
    ("mr_rust_t1", "rust-wc", "1 thread"),
    ("mr_essaim", "essaim", "run wordcount, local cluster 2 workers × 1 slot, 2 reducers, split 64 MiB (run after rust-wc 2 threads)"),
    ("mr_essaim_b", "essaim", "same, second sample of the round (run after Spark DataFrame)"),
    ("mr_spark_df", "PySpark DataFrame", "local[2], split/explode/groupBy.count, write.csv"),
    ("mr_spark_rdd", "PySpark RDD", "local[2], flatMap/map/reduceByKey, saveAsTextFile"),
    ("mr_dask", "Dask bag", "LocalCluster 2 procs × 1 thread, blocksize 32 MiB, frequencies()"),
    ("mr_gnu", "GNU tr / sort / uniq -c", "LC_ALL=C, sort defaults"),
]
SORT = [
    ("mr_sort_essaim", "essaim sort", "run sort, 2 workers × 1 slot, 2 reducers, --sort-buffer 256MiB, split 64 MiB"),
    ("mr_sort_gnu", "GNU sort", "LC_ALL=C sort -S 512M --parallel=2 (whole lines)"),
    ("mr_sort_gnu_lz4", "GNU sort", "same with --compress-program=lz4 (compressed temporary files)"),
    ("mr_sort_essaim_split1g", "essaim sort", "same with --split-size 1GiB: one split per 250 MB input file, so each map task fills its buffer and spills twice"),
]
GOAL_RUST = 1.33
GOAL_SPARK = 5.0
GOAL_SORT = 2.0
GOAL_WORKER_RSS_MIB = 1024


def load(path):
    runs = {}
    if not os.path.exists(path):
        return runs
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                d = json.loads(line)
                for r in d["runs"]:
                    r["_bytes"] = d.get("bytes", 0)
                    r["_discarded"] = len(d.get("discarded_disturbed_runs", []))
                runs.setdefault(d["name"], []).extend(d["runs"])
    return runs


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def f2(x, nd=2):
    return "" if x is None else f"{x:.{nd}f}"


def fi(x):
    return "" if x is None else f"{x:,.0f}"


def m(r, k):
    v = r["metrics"].get(k)
    return v if isinstance(v, float) else None


class Row:
    def __init__(self, runs, name):
        self.name = name
        self.runs = runs.get(name, [])
        self.ok = [r for r in self.runs if r["rc"] == 0]
        # The command's own wall time when the script measured it (essaim: the `essaim run`
        # process, from bench/peak_rss.py), else bench.py's wall of the whole command.
        self.wall_of = lambda r: r["metrics"].get("cmd_wall_s") if isinstance(r["metrics"].get("cmd_wall_s"), float) else r["wall_s"]
        self.walls = [self.wall_of(r) for r in self.ok]
        self.walls_by_run = [self.wall_of(r) if r["rc"] == 0 else None for r in self.runs]
        self.harness_walls = [r["wall_s"] for r in self.ok]
        self.bytes = self.runs[0]["_bytes"] if self.runs else 0
        self.discarded = sum(r["_discarded"] for r in self.runs)

    def __bool__(self):
        return bool(self.ok)

    @property
    def wall(self):
        return med(self.walls)

    def mbs(self):
        return self.bytes / 1e6 / self.wall if self.wall and self.bytes else None

    def metric(self, k):
        return med([m(r, k) for r in self.ok])

    def metric_max(self, k):
        xs = [m(r, k) for r in self.ok if m(r, k) is not None]
        return max(xs) if xs else None

    def tree_mib(self):
        xs = [r["tree_rss_kb"] for r in self.ok if r.get("tree_rss_kb")]
        return max(xs) / 1024 if xs else None

    def maxrss_mib(self):
        xs = [r["maxrss_kb"] for r in self.ok if r.get("maxrss_kb")]
        return max(xs) / 1024 if xs else None

    def cpu(self):
        return med([r["own_cpu_s"] for r in self.ok])

    def wall_range(self):
        if not self.walls:
            return "failed" if self.runs else "not run"
        return f"{self.wall:.2f} ({min(self.walls):.2f}..{max(self.walls):.2f})"


def ratio(a, b, inverse=False):
    """median(a) / median(b) and the range of per-round ratios a_k / b_k."""
    if not a or not b:
        return None, None
    if inverse:
        a, b = b, a
    rs = [x / y for x, y in zip(a.walls_by_run, b.walls_by_run) if x and y]
    return a.wall / b.wall, ((min(rs), statistics.median(rs), max(rs)) if rs else None)


def fmt_ratio(rr):
    """ratio of the medians, then [min, median, max] of the per-round (paired) ratios"""
    r, rng = rr
    if r is None:
        return "–"
    return f"{r:.2f}×" + (f" [{rng[0]:.2f}, **{rng[1]:.2f}**, {rng[2]:.2f}]" if rng else "")


def verdict(rr, ok):
    """met when both the ratio of the medians and the median paired ratio pass"""
    r, rng = rr
    both = [ok(r)] + ([ok(rng[1])] if rng else [])
    if all(both):
        return "**met**"
    if not any(both):
        return "**not met**"
    return "**borderline** (one of the two aggregates passes)"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = ap.parse_args()
    runs = load(os.path.join(a.results, "mr.jsonl"))
    if not runs:
        sys.exit(f"no results in {a.results}/mr.jsonl")
    out = print
    sizes = [s for s in ("1g", "100m") if any(k.endswith("_" + s) for k in runs)]
    label = {"1g": "1 GiB", "100m": "100 MiB"}

    out("### Word count\n")
    out("| tool | config | input | wall s median (min..max) | MB/s (median) | bench.py wall s (median) | startup s | job s excl. startup | CPU s (median) | peak RSS, largest process (MiB) | peak RSS, process tree (MiB) | essaim: largest worker / client+coordinator (MiB) | runs ok | disturbed runs repeated |")
    out("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        for stem, tool, config in WC:
            r = Row(runs, f"{stem}_{s}")
            if not r.runs:
                continue
            startup = r.metric("startup_s")
            job = r.metric("job_s")
            if stem.startswith("mr_essaim"):
                startup = None  # job_s includes the cluster start; reported as job s
                wk = f"{fi(r.metric_max('rss_worker_max_mib'))} / {fi(r.metric_max('rss_main_mib'))}"
            else:
                wk = ""
            out(f"| {tool} | {config} | {label[s]} | {r.wall_range()} | {f2(r.mbs(), 1)} | {f2(med(r.harness_walls))} | {f2(startup)} | "
                f"{f2(job)} | {f2(r.cpu(), 1)} | {fi(r.maxrss_mib())} | {fi(r.tree_mib())} | {wk} | "
                f"{len(r.ok)}/{len(r.runs)} | {r.discarded} |")
    out("")
    out("wall: the whole process, interpreter, JVM or local cluster start and stop included. For "
        "essaim it is the `essaim run` process from start to exit, measured by bench/peak_rss.py "
        "(`cmd_wall_s`); bench.py's wall of bench/wordcount.sh adds about 0.2 s of bash and Python "
        "start-up of the script itself. essaim's job s is its own wall_seconds: cluster start → output "
        "committed, cluster stop excluded. Peak RSS of the tree: sum over the process tree, sampled "
        "every 50 ms by bench.py; for essaim it includes the ~14 MiB of bench/peak_rss.py.")
    out("")

    out("### Word count ratios (same session)\n")
    out("Ratio of the medians; in brackets the per-round ratios (run k against run k, made minutes apart): "
        "[min, **median**, max].\n")
    out("| input | essaim / rust-wc 2 threads (goal ≤ 1.33) | essaim / rust-wc 1 thread | Spark DF / essaim (goal ≥ 5) | Spark RDD / essaim | Dask bag / essaim | GNU / essaim |")
    out("|---|---|---|---|---|---|---|")
    for s in sizes:
        e = Row(runs, f"mr_essaim_{s}")
        eb = Row(runs, f"mr_essaim_b_{s}") or e
        cells = [fmt_ratio(ratio(e, Row(runs, f"mr_rust_t2_{s}"))),
                 fmt_ratio(ratio(e, Row(runs, f"mr_rust_t1_{s}")))]
        for p in ("mr_spark_df", "mr_spark_rdd", "mr_dask", "mr_gnu"):
            cells.append(fmt_ratio(ratio(eb, Row(runs, f"{p}_{s}"), inverse=True)))
        out(f"| {label[s]} | " + " | ".join(cells) + " |")
    out("")
    out("essaim / rust-wc pairs the essaim run made right after rust-wc 2 threads; the peers / essaim "
        "pairs the essaim run made right after Spark DataFrame (`mr_essaim_b`).")
    out("")

    for s in sizes:
        e = Row(runs, f"mr_essaim_{s}")
        if not e:
            continue
        counters = sorted({k for r in e.ok for k in r["metrics"] if k.startswith("c_")})
        if counters:
            out(f"essaim counters, {label[s]} (median over runs): " + ", ".join(
                f"{k[2:]} {fi(e.metric(k))}" for k in counters) + ".")
            out("")

    srt = {stem: Row(runs, stem) for stem, _, _ in SORT}
    if any(srt.values()):
        out("### Sort\n")
        out("| tool | config | input | wall s median (min..max) | MB/s (median) | CPU s (median) | peak RSS per worker, max (MiB) | peak RSS, client+coordinator or sort (MiB) | peak RSS, process tree (MiB) | runs ok |")
        out("|---|---|---|---|---|---|---|---|---|---|")
        for stem, tool, config in SORT:
            r = srt[stem]
            if not r.runs:
                continue
            workers = ""
            if stem.startswith("mr_sort_essaim"):
                per = sorted({k for x in r.ok for k in x["metrics"] if k.startswith("rss_worker") and k[10:-4].isdigit()})
                workers = ", ".join(f"w{k[10:-4]} {fi(r.metric_max(k))}" for k in per)
                main_rss = r.metric_max("rss_main_mib")
            else:
                main_rss = r.metric_max("rss_max_mib")
            out(f"| {tool} | {config} | {r.bytes / 1e9:g} GB | {r.wall_range()} | {f2(r.mbs(), 1)} | "
                f"{f2(r.cpu(), 1)} | {workers} | {fi(main_rss)} | {fi(r.tree_mib())} | {len(r.ok)}/{len(r.runs)} |")
        out("")
        rr = ratio(srt["mr_sort_essaim"], srt["mr_sort_gnu"])
        out(f"essaim / GNU sort wall: {fmt_ratio(rr)} (goal ≤ {GOAL_SORT:g}×).")
        out("")
        for v in ("input", "essaim", "gnu"):
            r = Row(runs, f"mr_sort_validate_{v}")
            if r.runs:
                x = r.runs[-1]["metrics"]
                out(f"- sort-validate of the {v}: records {fi(x.get('records'))}, checksum {x.get('checksum')}, "
                    f"misordered {fi(x.get('misordered'))}, sorted {'yes' if x.get('sorted_ok') == 1.0 else 'no'} "
                    f"({r.wall_range()} s, {f2(r.mbs(), 1)} MB/s)")
        g = Row(runs, "mr_sort_gen")
        if g.runs:
            out(f"- essaim gen sort: {g.wall_range()} s, {f2(g.mbs(), 1)} MB/s")
        out("")

    out("### Goals\n")
    out("| goal | result | verdict |")
    out("|---|---|---|")

    def yes(b):
        return "**met**" if b else "**not met**"
    if "1g" in sizes:
        e, t2 = Row(runs, "mr_essaim_1g"), Row(runs, "mr_rust_t2_1g")
        r, rng = ratio(e, t2)
        if r is not None:
            out(f"| essaim wordcount ≤ {GOAL_RUST}× rust-wc 2 threads, 1 GiB | {e.wall:.2f} s / {t2.wall:.2f} s = "
                f"{fmt_ratio((r, rng))} | {verdict((r, rng), lambda x: x <= GOAL_RUST)} |")
        eb = Row(runs, "mr_essaim_b_1g") or e
        for p, name in (("mr_spark_df_1g", "Spark local[2] DataFrame"), ("mr_spark_rdd_1g", "Spark local[2] RDD")):
            r, rng = ratio(eb, Row(runs, p), inverse=True)
            if r is not None:
                out(f"| ≥ {GOAL_SPARK:g}× faster than {name}, start-up included, 1 GiB | "
                    f"{Row(runs, p).wall:.2f} s / {eb.wall:.2f} s = {fmt_ratio((r, rng))} | "
                    f"{verdict((r, rng), lambda x: x >= GOAL_SPARK)} |")
    if srt["mr_sort_essaim"] and srt["mr_sort_gnu"]:
        r, rng = ratio(srt["mr_sort_essaim"], srt["mr_sort_gnu"])
        out(f"| sort {srt['mr_sort_essaim'].bytes / 1e9:g} GB ≤ {GOAL_SORT:g}× GNU sort with the same memory | "
            f"{srt['mr_sort_essaim'].wall:.1f} s / {srt['mr_sort_gnu'].wall:.1f} s = {fmt_ratio((r, rng))} | "
            f"{verdict((r, rng), lambda x: x <= GOAL_SORT)} |")
        w = srt["mr_sort_essaim"].metric_max("rss_worker_max_mib")
        if w is not None:
            out(f"| each worker's peak RSS under about 1 GiB (sort, 256 MiB buffer) | largest worker {w:,.0f} MiB | "
                f"{yes(w < GOAL_WORKER_RSS_MIB)} |")
    out("")
    chk = os.path.join(a.results, "mr_check.txt")
    if os.path.exists(chk):
        out("### Cross-check of the word-count outputs (check_wc.py)\n")
        out("```")
        out(open(chk).read().rstrip())
        out("```")


if __name__ == "__main__":
    main()
