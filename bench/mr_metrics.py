#!/usr/bin/env python3
"""Turns the output of `essaim run JOB --format json` into METRIC lines for bench.py.

usage: python3 bench/mr_metrics.py FILE [PREFIX]

FILE holds what `essaim run … --format json` printed; METRIC lines of other tools
(e.g. bench/peak_rss.py) may follow the JSON object and are passed through untouched
by the caller, not here. Prints:
  METRIC <prefix>job_s=…         wall_seconds: cluster start → output committed
  METRIC <prefix>input_bytes=…, map_tasks, reducers, attempts_failed, outputs_lost
  METRIC <prefix>c_<counter>=…   one line per counter
Exits 1 if there is no JSON object or the job did not succeed.
"""
import json
import re
import sys


def main():
    path = sys.argv[1]
    prefix = sys.argv[2] if len(sys.argv) > 2 else ""
    text = open(path, errors="replace").read()
    start = text.find("{")
    if start < 0:
        print("mr_metrics.py: no JSON summary in the output", file=sys.stderr)
        return 1
    try:
        d, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as e:
        print(f"mr_metrics.py: bad JSON summary: {e}", file=sys.stderr)
        return 1
    print(f"METRIC {prefix}job_s={d['wall_seconds']:.4f}")
    for k in ("input_bytes", "map_tasks", "reducers", "attempts_failed", "outputs_lost"):
        if k in d:
            print(f"METRIC {prefix}{k}={d[k]}")
    for k, v in sorted(d.get("counters", {}).items()):
        print(f"METRIC {prefix}c_{re.sub(r'[^A-Za-z0-9_]', '_', k)}={v}")
    if not d.get("succeeded"):
        print(f"mr_metrics.py: job {d.get('job')} did not succeed: {d.get('state')} {d.get('reason')}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
