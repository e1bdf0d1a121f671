"""Helpers of bench/stream.sh (run with the benchmark's Python environment).

  tool.py drop POSTGRES_URL TABLE...        drop the tables if they exist
  tool.py dump POSTGRES_URL TABLE OUT.tsv   the result rows, sorted, as TSV
                                            (origin_state, window_start, window_end,
                                            flights, mean_delay, p95_delay)
  tool.py metrics LOG                       the METRIC lines of a log as one JSON object
  tool.py summarize RESULTS.jsonl OUT.md    medians, ratios, agreement check → markdown
                                            (also printed); exits 1 if the systems disagree
  tool.py checkpoint POSTGRES_URL           CHECKPOINT (before a phase, so that the
                                            previous run's writes are not flushed in it)
  tool.py freshdb POSTGRES_URL NAME         drop and create database NAME; print its URL
  tool.py messages NATS_URL STREAM          the stream's message count (-1: no stream)
  tool.py clear NATS_URL STREAM             delete every consumer of the stream, and
                                            essaim's internal streams (ESSAIM_*)
  tool.py watch POSTGRES_URL OUT            until killed, poll essaim_offsets every 10 ms and
                                            log when a source position moves
                                            (t_ns partition position)
  tool.py offset-latency NATS_URL STREAM SUBJECT WATCH_LOG
                                            p50/p99 of (first poll that sees a message's
                                            position committed − its JetStream timestamp),
                                            as METRIC lines
  tool.py record OUT.jsonl JSON [LOG...]    append JSON merged with the METRIC lines of
                                            the logs (a log given as live=PATH: its
                                            metrics get the prefix live_)
"""
import json
import math
import statistics
import sys

SYSTEMS = ["handwritten", "bytewax", "essaim"]


def connect(url):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def drop(url, tables):
    with connect(url) as connection:
        for table in tables:
            connection.execute(f'DROP TABLE IF EXISTS "{table}"')


def dump(url, table, out):
    with connect(url) as connection:
        rows = connection.execute(
            f'SELECT origin_state, window_start, window_end, flights, mean_delay, p95_delay '
            f'FROM "{table}" ORDER BY origin_state, window_start'
        ).fetchall()
    with open(out, "w") as f:
        for row in rows:
            f.write("\t".join(repr(v) if isinstance(v, float) else str(v) for v in row) + "\n")
    print(len(rows))


def metrics(log):
    found = {}
    with open(log, errors="replace") as f:
        for line in f:
            if line.startswith("METRIC "):
                name, _, value = line[7:].strip().partition("=")
                try:
                    found[name] = float(value)
                except ValueError:
                    found[name] = value
    print(json.dumps(found))


def read_dump(path):
    rows = {}
    with open(path) as f:
        for line in f:
            state, start, end, flights, mean, p95 = line.rstrip("\n").split("\t")
            rows[(state, int(start))] = (int(end), int(flights), float(mean), float(p95))
    return rows


def compare(reference, other):
    """Problems of `other` against `reference` (counts and means exact, p95 within 1 %)."""
    problems = []
    missing = reference.keys() - other.keys()
    extra = other.keys() - reference.keys()
    if missing:
        problems.append(f"{len(missing)} windows missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} windows too many, e.g. {sorted(extra)[:3]}")
    bad = {"window_end": 0, "flights": 0, "mean_delay": 0, "p95_delay": 0}
    example = {}
    for key in reference.keys() & other.keys():
        (e1, n1, m1, p1), (e2, n2, m2, p2) = reference[key], other[key]
        checks = {
            "window_end": e1 == e2,
            "flights": n1 == n2,
            # sums of integers over the same count: equal up to the last bit of a double
            "mean_delay": abs(m1 - m2) <= 1e-9 * max(1.0, abs(m1)),
            "p95_delay": abs(p1 - p2) <= 0.01 * abs(p1) + 1e-9,
        }
        for name, ok in checks.items():
            if not ok:
                bad[name] += 1
                example.setdefault(name, (key, reference[key], other[key]))
    for name, count in bad.items():
        if count:
            problems.append(f"{count} windows differ in {name}, e.g. {example[name]}")
    return problems


def fmt(value, digits=0):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def summarize(results, out):
    runs = [json.loads(line) for line in open(results) if line.strip()]
    session = [r for r in runs if r.get("kind") == "session"]
    runs = [r for r in runs if r.get("kind") == "run"]
    info = session[-1] if session else {}
    by_system = {}
    for run in runs:
        by_system.setdefault(run["system"], []).append(run)

    # Agreement: every successful run's table against the hand-written consumer's first.
    failures = []
    reference_run = next((r for r in by_system.get("handwritten", []) if r.get("ok")), None)
    reference = read_dump(reference_run["dump"]) if reference_run else None
    for run in runs:
        if not run.get("ok") or reference is None or run is reference_run:
            continue
        problems = compare(reference, read_dump(run["dump"]))
        if problems:
            run["ok"] = False
            run["error"] = "disagrees with handwritten: " + "; ".join(problems)
            failures.append(f"{run['system']} run {run['run']}: {run['error']}")
    if reference is None:
        failures.append("no successful hand-written run: nothing to check the others against")

    def stat(system, field):
        return median([r.get(field) for r in by_system.get(system, []) if r.get("ok")])

    base = {f: stat("handwritten", f) for f in ("wall_events_per_s", "live_latency_p50_ms", "live_latency_p99_ms")}
    lines = []
    lines.append(f"# Streaming benchmark: flights, NATS JetStream → operators → PostgreSQL\n")
    lines.append(
        f"{info.get('rows', '?'):,} flights rows, {info.get('partitions', '?')} partitions; "
        f"latency phase {info.get('live_rows', '?'):,} rows at {info.get('live_rate', '?')} rows/s; medians of {info.get('runs', '?')} runs; "
        f"{info.get('started', '?')} → {info.get('finished', '?')} UTC; repository at {info.get('commit', '?')}; "
        f"essaim binary sha256 {info.get('essaim_sha256', '?')}….\n"
    )
    lines.append(
        "| system | events/s (wall) | × handwritten | events/s (in-process) | p50 latency ms | p99 latency ms "
        "| p99 × handwritten | windows | ok runs |"
    )
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for system in SYSTEMS:
        system_runs = by_system.get(system, [])
        ok = [r for r in system_runs if r.get("ok")]
        if not system_runs:
            continue
        if not ok:
            why = system_runs[-1].get("error", "failed")
            lines.append(f"| {system} | not available | | | | | | | 0/{len(system_runs)} |")
            failures.append(f"{system}: {why}") if system_runs[-1].get("available", True) else None
            continue
        wall = stat(system, "wall_events_per_s")
        p50, p99 = stat(system, "live_latency_p50_ms"), stat(system, "live_latency_p99_ms")
        ratio = f"{wall / base['wall_events_per_s']:.2f}" if wall and base["wall_events_per_s"] else "n/a"
        ratio99 = f"{p99 / base['live_latency_p99_ms']:.2f}" if p99 and base["live_latency_p99_ms"] else "n/a"
        lines.append(
            f"| {system} | {fmt(wall)} | {ratio} | {fmt(stat(system, 'events_per_s'))} | {fmt(p50, 1)} "
            f"| {fmt(p99, 1)} | {ratio99} | {fmt(stat(system, 'windows'))} | {len(ok)}/{len(system_runs)} |"
        )
    lines.append("")
    methods = sorted({r["live_latency_method"] for r in runs if r.get("live_latency_method")})
    for method in methods:
        systems = sorted({r["system"] for r in runs if r.get("live_latency_method") == method})
        lines.append(
            f"Latency of {', '.join(systems)}: {method} (a record counts as committed when a poll "
            "first sees its position; this adds 0–10 ms and a query to the figure). The "
            "others report their own commit times.\n"
        )
    lines.append("Per run:\n")
    lines.append("| system | run | wall s | events/s (wall) | events/s (in-process) | p50 ms | p99 ms | live publish rate/s | ok |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        lines.append(
            f"| {run['system']} | {run['run']} | {fmt(run.get('wall_s'), 2)} | {fmt(run.get('wall_events_per_s'))} "
            f"| {fmt(run.get('events_per_s'))} | {fmt(run.get('live_latency_p50_ms'), 1)} | {fmt(run.get('live_latency_p99_ms'), 1)} "
            f"| {fmt(run.get('pub_replay_rate'))} | {'yes' if run.get('ok') else 'no: ' + str(run.get('error', ''))[:200]} |"
        )
    lines.append("")
    if failures:
        lines.append("**FAILED**:\n")
        lines.extend(f"- {f}" for f in failures)
    else:
        lines.append(
            "All systems' tables agree with the hand-written consumer's (windows, counts and means "
            "exactly, p95 within 1 %)."
        )
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    print(text)
    return 1 if failures else 0


def checkpoint(url):
    with connect(url) as connection:
        connection.execute("CHECKPOINT")


def freshdb(url, name):
    with connect(url) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    print(f"{base}/{name}")


def nats_call(url, work):
    import asyncio

    import nats

    async def run():
        nc = await nats.connect(url)
        try:
            return await work(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())


def messages(url, stream):
    import nats

    async def work(js):
        try:
            return (await js.stream_info(stream)).state.messages
        except nats.js.errors.NotFoundError:
            return -1

    print(nats_call(url, work))


def clear(url, stream):
    """Deletes the stream's consumers and essaim's internal streams (ESSAIM_*: the
    shuffle between stages, keyed by pipeline name, which a fresh database does not
    reset)."""
    import nats

    async def work(js):
        try:
            for consumer in await js.consumers_info(stream):
                await js.delete_consumer(stream, consumer.name)
        except nats.js.errors.NotFoundError:
            pass
        for info in await js.streams_info():
            if info.config.name.startswith("ESSAIM_"):
                await js.delete_stream(info.config.name)

    nats_call(url, work)


def watch(url, out):
    import signal
    import time

    import psycopg

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    seen = {}
    with open(out, "w", buffering=1) as f:
        connection = None
        while not stop:
            try:
                if connection is None:
                    connection = psycopg.connect(url, autocommit=True)
                rows = connection.execute(
                    'SELECT "partition", position FROM essaim_offsets WHERE source <> \'_shuffle\''
                ).fetchall()
            except psycopg.Error:
                rows = []  # not created yet
                if connection is not None and connection.closed:
                    connection = None
            now = time.time_ns()
            for partition, position in rows:
                if seen.get(partition) != position:
                    seen[partition] = position
                    f.write(f"{now} {partition} {position}\n")
            time.sleep(0.01)


def offset_latency(url, stream, subject, watch_log):
    import bisect

    import nats

    commits = {}  # partition -> [(position, t_ns)] in order
    with open(watch_log) as f:
        for line in f:
            t, partition, position = (int(x) for x in line.split())
            commits.setdefault(partition, []).append((position, t))

    async def work(js):
        found = []
        sub = await js.subscribe(f"{subject}.*", ordered_consumer=True, stream=stream)
        info = await js.stream_info(stream)
        total = info.state.messages
        for _ in range(total):
            msg = await sub.next_msg(timeout=10)
            if msg.headers and msg.headers.get("Essaim-End-Of-Stream") == "1":
                continue
            meta = msg.metadata
            partition = int(msg.subject.rsplit(".", 1)[1])
            found.append((partition, meta.sequence.stream, int(meta.timestamp.timestamp() * 1e9)))
        return found

    latencies = []
    for partition, sequence, published_ns in nats_call(url, work):
        seen = commits.get(partition, [])
        i = bisect.bisect_left(seen, (sequence, -1))
        if i < len(seen):
            latencies.append(seen[i][1] - published_ns)
    latencies.sort()
    if latencies:
        for name, q in (("latency_p50_ms", 0.5), ("latency_p99_ms", 0.99)):
            print(f"METRIC {name}={latencies[int(q * (len(latencies) - 1))] / 1e6:.3f}")
    print(f"METRIC latency_samples={len(latencies)}")


def parse_metrics(log):
    found = {}
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("METRIC "):
                    name, _, value = line[7:].strip().partition("=")
                    try:
                        found[name] = float(value)
                    except ValueError:
                        found[name] = value
    except FileNotFoundError:
        pass
    return found


def record(out, obj, *logs):
    entry = json.loads(obj)
    for log in logs:
        prefix = ""
        if "=" in log:
            prefix, log = log.split("=", 1)
            prefix += "_"
        for name, value in parse_metrics(log).items():
            entry.setdefault(prefix + name, value)
    with open(out, "a") as f:
        f.write(json.dumps(entry) + "\n")


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "drop":
        drop(args[0], args[1:])
    elif command == "dump":
        dump(*args)
    elif command == "metrics":
        metrics(*args)
    elif command == "checkpoint":
        checkpoint(*args)
    elif command == "freshdb":
        freshdb(*args)
    elif command == "messages":
        messages(*args)
    elif command == "clear":
        clear(*args)
    elif command == "watch":
        watch(*args)
    elif command == "offset-latency":
        offset_latency(*args)
    elif command == "record":
        record(*args)
    elif command == "summarize":
        sys.exit(summarize(*args))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
