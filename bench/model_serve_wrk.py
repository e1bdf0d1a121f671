"""Reads wrk's report for bench/model_serve.sh, and summarises its runs.

Usage: model_serve_wrk.py WRK_REPORT ROUND SYSTEM CONNECTIONS COMMIT LOAD1
       model_serve_wrk.py --summary RUNS.jsonl [IN_PROCESS.json]

The first form prints one JSON object: requests/s and the p50/p90/p99 latencies in
milliseconds (wrk's `--latency` distribution); it exits 1 when wrk saw any non-2xx
answer or socket error, since a server that fails requests has no throughput to
compare. The second prints, per concurrency level, the median of each system's runs
and the ratios essaim / MLflow (throughput) and MLflow / essaim (latency), then the
in-process figures when given.
"""
import json
import re
import statistics
import sys

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def millis(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(number) * UNITS_MS[unit]


def parse(path, round_, system, connections, commit, load1) -> dict:
    report = open(path).read()
    if "Non-2xx" in report or "Socket errors" in report:
        raise SystemExit(f"{system} at {connections} connections failed requests:\n{report}")
    run = {"round": int(round_), "system": system, "connections": int(connections),
           "commit": commit, "load1": float(load1),
           "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", report)[1])}
    for share in ("50", "90", "99"):
        run[f"p{share}_ms"] = millis(re.search(rf"^\s+{share}%\s+(\S+)", report, re.M)[1])
    return run


def summary(runs_path, in_process_path=None) -> None:
    runs = [json.loads(line) for line in open(runs_path) if line.strip()]
    levels = sorted({run["connections"] for run in runs})
    print(f"{'conn':>4} {'system':<7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for level in levels:
        medians = {}
        for system in ("essaim", "mlflow"):
            mine = [run for run in runs if run["connections"] == level and run["system"] == system]
            medians[system] = {key: statistics.median(run[key] for run in mine)
                               for key in ("requests_per_s", "p50_ms", "p99_ms")}
            m = medians[system]
            print(f"{level:>4} {system:<7} {m['requests_per_s']:>9.0f} {m['p50_ms']:>8.2f} "
                  f"{m['p99_ms']:>8.2f}")
        e, f = medians["essaim"], medians["mlflow"]
        print(f"METRIC c{level}_throughput_ratio={e['requests_per_s'] / f['requests_per_s']:.2f} "
              f"c{level}_p99_ratio_mlflow_over_essaim={f['p99_ms'] / e['p99_ms']:.2f}")
    if in_process_path:
        print("in process:", open(in_process_path).read().strip())


def main() -> None:
    if sys.argv[1] == "--summary":
        summary(*sys.argv[2:4])
    else:
        print(json.dumps(parse(*sys.argv[1:7])))


if __name__ == "__main__":
    main()
