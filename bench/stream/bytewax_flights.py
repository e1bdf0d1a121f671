"""The Bytewax peer of the streaming benchmark (bench/stream.sh): the flights demo as a
Bytewax dataflow, with a NATS JetStream source and a PostgreSQL sink written for it
(Bytewax ships neither).

usage: bytewax_flights.py NATS_URL POSTGRES_URL AIRPORTS_CSV
         [--stream FLIGHTS] [--subject flights] [--partitions 4]
         [--table bytewax_flight_stats] [--batch 1000]

Dataflow (one worker, `bytewax.run.cli_main`):
  input   NatsSource: one partition per subject `<subject>.<p>`, each a durable pull
          consumer (ack policy "all") fetching what has arrived, at most --batch; the
          next fetch runs (on nats-py's event loop thread) while a batch is processed
  filter_map "valid"       parse; drop rows without a delay, distance <= 0, no origin
  branch  "by_delay"       delay > 15 (delayed) or not (on time), then merge
  filter_map "with_state"  the origin's state from the airports table (unknown: counted)
  key_on  "by_state_hour"  key = "<state>/<window start>" (hour of event time, UTC)
  stateful_map "hourly"    count, sum, every delay kept sorted: exact p95
                           (the value of rank floor(0.95 (n-1)))
  output  PgSink           per batch: one transaction upserting the changed rows (the
                           latest of each key), commit
Acknowledgements follow the commits: after a commit the sink records, per partition,
the highest stream sequence committed; the source then acknowledges that message (which
acknowledges every earlier one). The end-of-stream message of each partition (header
`Essaim-End-Of-Stream: 1`) ends that partition; once the dataflow has finished (the last
batch committed), the last message of every partition is acknowledged.

Prints METRIC lines like the hand-written consumer (bench/stream/handwritten).
"""
import argparse
import asyncio
import bisect
import calendar
import threading
import time

import nats
import psycopg
from nats.js.api import AckPolicy, ConsumerConfig

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.run import cli_main

HOUR_MS = 3_600_000
EOS_HEADER = "Essaim-End-Of-Stream"


class Shared:
    """What the source, the sink and the driver share (one worker, one process)."""

    def __init__(self, partitions):
        self.committed = {p: 0 for p in range(partitions)}  # highest committed sequence
        self.first_consumed_ns = None
        self.last_commit_ns = 0
        self.latencies_ns = []
        self.events = 0
        self.batches = 0
        self.rows_written = 0
        self.dropped = 0
        self.delayed = 0
        self.on_time = 0
        self.unknown = 0


class Loop:
    """An asyncio loop in a thread of its own, for nats-py from Bytewax's thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def submit(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def run(self, coroutine):
        return self.submit(coroutine).result()


def ack_info(reply):
    """(stream sequence, JetStream timestamp ns) from an ack subject (v1 or v2 format)."""
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.stream.consumer.delivered.sseq.cseq.ts.pending
        return int(tokens[5]), int(tokens[7])
    return int(tokens[7]), int(tokens[9])  # with domain and account hash


class NatsPartition(StatefulSourcePartition):
    def __init__(self, shared, loop, nc, subscription, partition, batch):
        self.shared, self.loop, self.nc = shared, loop, nc
        self.subscription = subscription
        self.partition = partition
        self.batch = batch
        self.pending = []  # (sequence, reply) of fetched, unacknowledged messages
        self.ended = False
        self.last_reply = None
        self.inflight = None  # the fetch under way, a concurrent.futures.Future

    def _ack_committed(self):
        committed = self.shared.committed[self.partition]
        reply = None
        keep = 0
        for keep, (sequence, candidate) in enumerate(self.pending):
            if sequence > committed:
                break
            reply = candidate
        else:
            keep = len(self.pending)
        if reply is not None:
            self.loop.run(self.nc.publish(reply, b"+ACK"))
            del self.pending[:keep]

    async def _fetch(self):
        try:
            return await self.subscription.fetch(self.batch, timeout=0.05)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            # Nothing arrived in time (nats-py raises either, depending on where it
            # was waiting).
            return []

    def next_batch(self):
        self._ack_committed()
        if self.ended:
            raise StopIteration()
        if self.inflight is None:
            self.inflight = self.loop.submit(self._fetch())
        messages = self.inflight.result()
        # The next fetch runs on the loop's thread while this batch goes through the
        # dataflow (nothing of it is acknowledged before its own commit).
        self.inflight = None
        if not messages:
            return []
        if self.shared.first_consumed_ns is None:
            self.shared.first_consumed_ns = time.time_ns()
        items = []
        for message in messages:
            reply = message.reply
            sequence, published_ns = ack_info(reply)
            self.pending.append((sequence, reply))
            self.last_reply = reply
            headers = message.headers
            if headers and headers.get(EOS_HEADER) == "1":
                self.ended = True
                continue
            items.append((self.partition, sequence, published_ns, message.data))
        self.shared.events += len(items)
        if not self.ended:
            self.inflight = self.loop.submit(self._fetch())
        return items

    def snapshot(self):
        return None


class NatsSource(FixedPartitionedSource):
    def __init__(self, shared, loop, url, stream, subject, partitions, batch):
        self.shared, self.loop = shared, loop
        self.url, self.stream, self.subject = url, stream, subject
        self.partitions, self.batch = partitions, batch
        self.built = []

    def list_parts(self):
        return [str(p) for p in range(self.partitions)]

    def build_part(self, step_id, for_part, resume_state):
        partition = int(for_part)

        async def subscribe():
            nc = await nats.connect(self.url)
            js = nc.jetstream()
            durable = f"bytewax_{partition}"
            try:
                await js.delete_consumer(self.stream, durable)
            except nats.js.errors.NotFoundError:
                pass
            config = ConsumerConfig(
                durable_name=durable,
                ack_policy=AckPolicy.ALL,
                max_ack_pending=1_000_000,
                filter_subject=f"{self.subject}.{partition}",
            )
            subscription = await js.pull_subscribe(
                f"{self.subject}.{partition}", durable=durable, stream=self.stream, config=config
            )
            return nc, js, subscription

        nc, js, subscription = self.loop.run(subscribe())
        part = NatsPartition(self.shared, self.loop, nc, subscription, partition, self.batch)
        self.built.append((part, js, durable_name(partition)))
        return part


def durable_name(partition):
    return f"bytewax_{partition}"


class PgPartition(StatelessSinkPartition):
    def __init__(self, shared, url, table):
        self.shared = shared
        self.connection = psycopg.connect(url)
        quoted = '"' + table.replace('"', '""') + '"'
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {quoted} (key text PRIMARY KEY, revision bigint NOT NULL, "
                "origin_state text, window_start bigint, window_end bigint, flights bigint, "
                "mean_delay double precision, p95_delay double precision)"
            )
        self.connection.commit()
        self.upsert = (
            f"INSERT INTO {quoted} (key, revision, origin_state, window_start, window_end, flights, "
            "mean_delay, p95_delay) SELECT * FROM unnest(%s::text[], %s::bigint[], %s::text[], "
            "%s::bigint[], %s::bigint[], %s::bigint[], %s::double precision[], %s::double precision[]) "
            "ON CONFLICT (key) DO UPDATE SET revision = excluded.revision, origin_state = excluded.origin_state, "
            "window_start = excluded.window_start, window_end = excluded.window_end, flights = excluded.flights, "
            "mean_delay = excluded.mean_delay, p95_delay = excluded.p95_delay "
            f"WHERE {quoted}.revision < excluded.revision"
        )

    def write_batch(self, items):
        latest = {}
        highest = {}
        published = []
        for key, (row, partition, sequence, published_ns) in items:
            latest[key] = row
            if sequence > highest.get(partition, 0):
                highest[partition] = sequence
            published.append(published_ns)
        columns = [list(column) for column in zip(*([key, *row] for key, row in latest.items()))]
        with self.connection.cursor() as cursor:
            cursor.execute(self.upsert, columns)
        self.connection.commit()
        now = time.time_ns()
        shared = self.shared
        shared.last_commit_ns = now
        shared.batches += 1
        shared.rows_written += len(latest)
        shared.latencies_ns.extend(now - p for p in published)
        for partition, sequence in highest.items():
            if sequence > shared.committed[partition]:
                shared.committed[partition] = sequence

    def close(self):
        self.connection.close()


class PgSink(DynamicSink):
    def __init__(self, shared, url, table):
        self.shared, self.url, self.table = shared, url, table

    def build(self, step_id, worker_index, worker_count):
        return PgPartition(self.shared, self.url, self.table)


def load_airports(path):
    """iata -> state; names may hold quoted commas: the state is 4th from the end."""
    states = {}
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            from_end = line.rstrip("\r\n").rsplit(",", 4)
            if len(from_end) < 5:
                continue
            iata = from_end[0].split(",")[0].strip().strip('"')
            states[iata] = from_end[1].strip().strip('"')
    return states


def parse_time_ms(s):
    """`YYYY-MM-DD HH:MM:SS[.ffffff]` UTC -> ms since the epoch."""
    seconds = calendar.timegm(
        (int(s[0:4]), int(s[5:7]), int(s[8:10]), int(s[11:13]), int(s[14:16]), int(s[17:19]), 0, 0, 0)
    )
    ms = int((s[20:23] + "000")[:3]) if len(s) > 20 and s[19] == "." else 0
    return seconds * 1000 + ms


def build_flow(shared, loop, args):
    states = load_airports(args.airports)
    flow = Dataflow("flights")
    source = NatsSource(shared, loop, args.nats, args.stream, args.subject, args.partitions, args.batch)
    records = op.input("nats", flow, source)

    def valid(item):
        partition, sequence, published_ns, data = item
        fields = data.decode().split(",")
        if len(fields) != 5:
            shared.dropped += 1
            return None
        delay, distance = fields[1].strip('"'), fields[2].strip('"')
        origin = fields[3].strip().strip('"')
        try:
            delay, distance = int(delay), int(distance)
            time_ms = parse_time_ms(fields[0].strip('"'))
        except ValueError:
            shared.dropped += 1
            return None
        if distance <= 0 or not origin:
            shared.dropped += 1
            return None
        return (partition, sequence, published_ns, time_ms, delay, origin)

    flights = op.filter_map("valid", records, valid)
    by_delay = op.branch("by_delay", flights, lambda r: r[4] > 15)

    def count_delayed(_step, _item):
        shared.delayed += 1

    def count_on_time(_step, _item):
        shared.on_time += 1

    delayed = op.inspect("count_delayed", by_delay.trues, count_delayed)
    on_time = op.inspect("count_on_time", by_delay.falses, count_on_time)
    both = op.merge("merge", delayed, on_time)

    def with_state(r):
        state = states.get(r[5])
        if state is None:
            shared.unknown += 1
            return None
        return (state, *r)

    enriched = op.filter_map("with_state", both, with_state)
    keyed = op.key_on("by_state_hour", enriched, lambda r: f"{r[0]}/{r[4] // HOUR_MS * HOUR_MS}")

    def hourly(state, r):
        origin_state, partition, sequence, published_ns, time_ms, delay, _origin = r
        if state is None:
            state = [0, 0, []]
        state[0] += 1
        state[1] += delay
        bisect.insort(state[2], delay)
        count = state[0]
        start = time_ms // HOUR_MS * HOUR_MS
        row = (
            count,  # revision
            origin_state,
            start,
            start + HOUR_MS,
            count,
            state[1] / count,
            float(state[2][int(0.95 * (count - 1))]),
        )
        return state, (row, partition, sequence, published_ns)

    stats = op.stateful_map("hourly", keyed, hourly)
    op.output("postgres", stats, PgSink(shared, args.postgres, args.table))
    return flow, source


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("nats")
    parser.add_argument("postgres")
    parser.add_argument("airports")
    parser.add_argument("--stream", default="FLIGHTS")
    parser.add_argument("--subject", default="flights")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--table", default="bytewax_flight_stats")
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()

    shared = Shared(args.partitions)
    loop = Loop()
    flow, source = build_flow(shared, loop, args)
    cli_main(flow, workers_per_process=1)

    # The dataflow has finished: every batch is committed. Acknowledge the rest.
    for part, js, durable in source.built:
        if part.last_reply is not None:
            loop.run(part.nc.publish(part.last_reply, b"+ACK"))
        loop.run(part.nc.flush())
        loop.run(js.delete_consumer(args.stream, durable))
        loop.run(part.nc.close())

    latencies = sorted(shared.latencies_ns)

    def pct(q):
        return latencies[int(q * (len(latencies) - 1))] / 1e6 if latencies else float("nan")

    first = shared.first_consumed_ns or shared.last_commit_ns
    seconds = (shared.last_commit_ns - first) / 1e9
    print(f"METRIC events={shared.events}")
    print(f"METRIC first_consumed_ns={first}")
    print(f"METRIC last_commit_ns={shared.last_commit_ns}")
    print(f"METRIC events_per_s={shared.events / seconds if seconds > 0 else float('nan'):.1f}")
    print(f"METRIC latency_p50_ms={pct(0.50):.3f}")
    print(f"METRIC latency_p99_ms={pct(0.99):.3f}")
    print(f"METRIC batches={shared.batches}")
    print(f"METRIC rows_written={shared.rows_written}")
    print(f"METRIC dropped={shared.dropped}")
    print(f"METRIC delayed={shared.delayed}")
    print(f"METRIC on_time={shared.on_time}")
    print(f"METRIC unknown_airports={shared.unknown}")


if __name__ == "__main__":
    main()
