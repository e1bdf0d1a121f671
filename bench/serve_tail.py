"""Load driver of bench/serve_tail.sh: closed-loop queries against a query root.

usage: serve_tail.py ROOT_PORT QUERIES CONCURRENCY SLOW_MS WAITED_MS LABEL_JSON

Each of CONCURRENCY threads keeps one HTTP/1.1 connection to the root and sends
`GET /query?q=...` back to back until QUERIES answers are in. Prints one JSON object:
the label fields, queries/s, the share of queries slower than SLOW_MS (by the root's
own `elapsed_ms`, so the client's overhead does not count) with its 95 % interval,
the share that waited at least WAITED_MS (a slow leaf's whole injected latency: what
hedging is meant to spare),
p50/p99/p99.9 of the root's time and of the client's wall time, hedges per leaf
request, and partial answers.
"""
import http.client
import json
import math
import sys
import threading
import time

port, total, concurrency = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
slow_ms, waited_ms = float(sys.argv[4]), float(sys.argv[5])
label = json.loads(sys.argv[6])
lock = threading.Lock()
rows = []  # (root_ms, wall_ms, hedges, partial, shards)
remaining = [total]


def worker():
    connection = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    while True:
        with lock:
            if remaining[0] == 0:
                return
            remaining[0] -= 1
        started = time.perf_counter()
        connection.request('GET', '/query?q=the')
        response = connection.getresponse()
        body = response.read()
        wall_ms = (time.perf_counter() - started) * 1000
        assert response.status == 200, body
        answer = json.loads(body)
        with lock:
            rows.append((answer['elapsed_ms'], wall_ms, answer['hedges'], answer['partial'], answer['shards']))


def quantile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


started = time.perf_counter()
threads = [threading.Thread(target=worker) for _ in range(concurrency)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
seconds = time.perf_counter() - started
root_ms = [row[0] for row in rows]
wall_ms = [row[1] for row in rows]
slow = sum(1 for value in root_ms if value >= slow_ms) / len(rows)
waited = sum(1 for value in root_ms if value >= waited_ms) / len(rows)


def ci95(share):
    # Normal approximation of the binomial; enough for the shares compared here.
    return round(1.96 * math.sqrt(max(share * (1 - share), 1e-12) / len(rows)), 4)


leaf_requests = sum(row[4] for row in rows)
result = dict(label)
result.update({
    'queries': len(rows),
    'qps': round(len(rows) / seconds, 1),
    'slow_share': round(slow, 4),
    'slow_share_ci95': ci95(slow),
    'waited_share': round(waited, 4),
    'waited_share_ci95': ci95(waited),
    'p50_ms': round(quantile(root_ms, 0.5), 2),
    'p99_ms': round(quantile(root_ms, 0.99), 2),
    'p999_ms': round(quantile(root_ms, 0.999), 2),
    'wall_p50_ms': round(quantile(wall_ms, 0.5), 2),
    'wall_p99_ms': round(quantile(wall_ms, 0.99), 2),
    'wall_p999_ms': round(quantile(wall_ms, 0.999), 2),
    'hedges_per_leaf_request': round(sum(row[2] for row in rows) / leaf_requests, 4),
    'partial': sum(1 for row in rows if row[3]),
})
print(json.dumps(result), flush=True)
