"""A real local cluster for the tests: ``essaim local`` (the binary named by
``$ESSAIM_BIN``, else ``essaim`` on the PATH) with two single-slot workers, a cluster
token, and the test object store's credentials in its environment."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from essaim import Client

TOKEN = "python-client-test-token"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    binary = os.environ.get("ESSAIM_BIN") or shutil.which("essaim")
    if not binary:
        pytest.fail("set ESSAIM_BIN to the essaim binary (or put essaim on the PATH)")
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("cluster")
    log = open(data_dir / "cluster.log", "wb")
    process = subprocess.Popen(
        [binary, "local", "--workers", "2", "--slots", "1", "--prefetch", "0",
         "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir / "data")],
        env={**os.environ, "ESSAIM_TOKEN": TOKEN, "RUST_LOG": "warn"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = Client(f"http://127.0.0.1:{port}", token=TOKEN)
    try:
        _wait_until_ready(client, process, data_dir / "cluster.log")
        yield client
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_until_ready(client: Client, process, log_path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"essaim local exited: {log_path.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(client.url + "/readyz", timeout=2):
                pass
            if len(client.workers()) == 2:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the local cluster was not ready in 60 s: {log_path.read_text(errors='replace')}")


@pytest.fixture(scope="session")
def s3():
    """The test object store (``$ESSAIM_TEST_S3_ENDPOINT``), as boto3 and essaim reach it."""
    endpoint = os.environ.get("ESSAIM_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.skip("no test object store (ESSAIM_TEST_S3_ENDPOINT)")
    return {"endpoint": endpoint, "region": "us-east-1", "allow_http": True}


@pytest.fixture(scope="session")
def postgres():
    """The test PostgreSQL (``$ESSAIM_TEST_POSTGRES_URL``), where pipelines keep state."""
    url = os.environ.get("ESSAIM_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no test PostgreSQL (ESSAIM_TEST_POSTGRES_URL)")
    return url
