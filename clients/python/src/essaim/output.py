"""Reading a MapReduce job's committed output: its ``part-*`` files, in order,
decompressed (``.gz``; ``.zst`` with the ``zstandard`` package), from a directory or an
S3-compatible bucket. An output without its ``_SUCCESS`` marker was not committed and is
not read."""

from __future__ import annotations

import gzip
import io
import os
from typing import Any, Dict, Iterator, List, Tuple

from ._http import EssaimError

SUCCESS_MARKER = "_SUCCESS"


def read_lines(location: str, s3: Dict[str, Any]) -> Iterator[str]:
    """The lines of the output at ``location`` (a directory or ``s3://bucket/prefix``)."""
    if location.startswith("s3://"):
        return _s3_lines(location, s3)
    return _local_lines(location)


def _local_lines(directory: str) -> Iterator[str]:
    if not os.path.isfile(os.path.join(directory, SUCCESS_MARKER)):
        raise EssaimError(f"{directory} holds no committed output (no {SUCCESS_MARKER})")
    names = sorted(name for name in os.listdir(directory) if name.startswith("part-"))

    def lines() -> Iterator[str]:
        for name in names:
            with open(os.path.join(directory, name), "rb") as raw:
                yield from _decoded_lines(name, raw)

    return lines()


def _s3_lines(location: str, options: Dict[str, Any]) -> Iterator[str]:
    try:
        import boto3
    except ImportError:
        raise EssaimError(
            "reading s3:// outputs needs boto3: pip install 'essaim[s3]'"
        ) from None
    bucket, prefix = _split_s3(location)
    client = boto3.client(
        "s3",
        endpoint_url=options.get("endpoint"),
        region_name=options.get("region", "us-east-1"),
        aws_access_key_id=options.get("access_key_id"),
        aws_secret_access_key=options.get("secret_access_key"),
    )
    keys: List[str] = []
    committed = False
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix):]
            committed |= name == SUCCESS_MARKER
            if name.startswith("part-"):
                keys.append(item["Key"])
    if not committed:
        raise EssaimError(f"{location} holds no committed output (no {SUCCESS_MARKER})")

    def lines() -> Iterator[str]:
        for key in sorted(keys):
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            yield from _decoded_lines(key, io.BufferedReader(_Readable(body)))

    return lines()


def _split_s3(location: str) -> Tuple[str, str]:
    rest = location[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise EssaimError(f"{location}: no bucket")
    prefix = prefix.strip("/")
    return bucket, prefix + "/" if prefix else ""


def _decoded_lines(name: str, raw: Any) -> Iterator[str]:
    if name.endswith(".gz"):
        stream: Any = gzip.GzipFile(fileobj=raw)
    elif name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise EssaimError(f"{name}: reading .zst parts needs the zstandard package") from None
        stream = zstandard.ZstdDecompressor().stream_reader(raw)
    else:
        stream = raw
    for line in io.TextIOWrapper(stream, encoding="utf-8", newline="\n"):
        yield line.rstrip("\n")


class _Readable(io.RawIOBase):
    """A file-like view of anything with ``read(n)`` (an S3 object's body), read in
    pieces rather than held whole."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.source.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
