"""Replays a flights CSV into NATS JetStream, as fast as the server confirms.

usage: publish.py NATS_URL CSV PARTITIONS [--stream FLIGHTS] [--subject flights]
                  [--limit N] [--rate R] [--keep] [--create-only] [--wait-consumers K]

(Re)creates the stream (file storage, subjects `<subject>.*`; --keep: use it as it is),
publishes data line i (the header is skipped) to `<subject>.<i mod P>`, then one
end-of-stream message per partition: header `Essaim-End-Of-Stream: 1`, empty body.
Every publish is confirmed by the server (at most --in-flight unconfirmed at once).
--rate R: R lines per second on a fixed schedule (default: as fast as possible).
--wait-consumers K: first wait until the stream has K consumers (a system is ready).
Prints METRIC lines (replay_rate: data lines per second, first publish → last
confirmation).
"""
import argparse
import asyncio
import time

import nats
from nats.js.api import StorageType, StreamConfig


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("csv")
    parser.add_argument("partitions", type=int)
    parser.add_argument("--stream", default="FLIGHTS")
    parser.add_argument("--subject", default="flights")
    parser.add_argument("--in-flight", type=int, default=4096)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--create-only", action="store_true")
    parser.add_argument("--wait-consumers", type=int, default=0)
    parser.add_argument("--wait-timeout", type=float, default=120.0)
    parser.add_argument("--rate", type=float, default=0.0, help="lines per second (0: as fast as possible)")
    args = parser.parse_args()

    nc = await nats.connect(args.url, pending_size=64 * 1024 * 1024)
    js = nc.jetstream(publish_async_max_pending=args.in_flight)
    if not args.keep:
        try:
            await js.delete_stream(args.stream)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(
            StreamConfig(name=args.stream, subjects=[f"{args.subject}.*"], storage=StorageType.FILE)
        )
    if args.create_only:
        await nc.close()
        return
    if args.wait_consumers:
        deadline = time.monotonic() + args.wait_timeout
        while (await js.stream_info(args.stream)).state.consumer_count < args.wait_consumers:
            if time.monotonic() > deadline:
                raise SystemExit(f"publish.py: no {args.wait_consumers} consumers on {args.stream} in time")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let them issue their first pull requests
    subjects = [f"{args.subject}.{p}" for p in range(args.partitions)]
    lines = 0
    start = time.time()
    with open(args.csv, "rb") as f:
        f.readline()  # header
        for line in f:
            if args.limit is not None and lines >= args.limit:
                break
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            if args.rate > 0:
                # Paced: line i leaves at start + i / rate (a fixed schedule, not a
                # fixed gap, so a slow publish does not lower the rate).
                delay = start + lines / args.rate - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await js.publish_async(subjects[lines % args.partitions], line)
            lines += 1
    await js.publish_async_completed()
    end = time.time()
    for subject in subjects:
        await js.publish(subject, b"", headers={"Essaim-End-Of-Stream": "1"})
    await nc.close()
    print(f"METRIC replay_lines={lines}")
    print(f"METRIC replay_start_ns={int(start * 1e9)}")
    print(f"METRIC replay_end_ns={int(end * 1e9)}")
    print(f"METRIC replay_rate={lines / (end - start):.1f}")


asyncio.run(main())
