"""The client: one coordinator, its jobs, pipelines, workers and dead letters."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from ._http import EssaimError, Transport
from .job import Job

#: Where the client looks for the coordinator when no URL is given.
DEFAULT_URL = "http://127.0.0.1:7070"


class Client:
    """A connection to an essaim coordinator's REST API.

    ``url`` defaults to ``$ESSAIM_COORDINATOR`` (else ``http://127.0.0.1:7070``);
    ``token`` to ``$ESSAIM_TOKEN``, else the contents of ``$ESSAIM_TOKEN_FILE``.

    >>> client = Client("http://127.0.0.1:7070")
    >>> job = client.submit_mapreduce("wordcount", inputs=["s3://books/*.gz"], output="s3://out/wc")
    >>> job.wait(progress=True)
    """

    def __init__(
        self, url: Optional[str] = None, token: Optional[str] = None, timeout: float = 60.0
    ) -> None:
        # $ESSAIM_COORDINATOR may list several coordinators, as for the CLI; REST calls
        # go to the first (a standby answers them with where the leader is).
        listed = os.environ.get("ESSAIM_COORDINATOR", "").split(",")[0].strip()
        url = url or listed or DEFAULT_URL
        self._transport = Transport(url, token or _token_from_environment(), timeout)
        self.stream = Pipelines(self._transport)

    @property
    def url(self) -> str:
        """The coordinator's base URL."""
        return self._transport.base

    # ------------------------------------------------------------------ submitting

    def submit_mapreduce(
        self,
        job: str,
        inputs: Union[str, Sequence[str]],
        output: str,
        *,
        params: Optional[Mapping[str, Any]] = None,
        reducers: Optional[int] = None,
        split_bytes: Optional[int] = None,
        open_cost_bytes: Optional[int] = None,
        sort_buffer_bytes: Optional[int] = None,
        merge_factor: Optional[int] = None,
        compress_output: Optional[str] = None,
        overwrite: bool = False,
        max_attempts: Optional[int] = None,
        slow_start: Optional[float] = None,
        s3: Optional[Mapping[str, Any]] = None,
        files: Sequence[str] = (),
    ) -> Job:
        """Submits a MapReduce job the cluster knows (``mapreduce_jobs()`` lists them).

        The coordinator plans it: ``inputs`` (paths, directories, globs or
        ``s3://bucket/prefix``, as the cluster sees them; ``.gz``, ``.zst`` and ``.bz2``
        files are decompressed) are listed and split, and ``output`` (a directory or
        ``s3://bucket/prefix``) is prepared; it is refused if it exists unless
        ``overwrite`` (which replaces only an earlier job's output). ``params`` are the
        job's parameters (``{"pattern": "..."}`` for grep, ``{"step.0.mapper": ...}`` for
        streaming); ``s3`` is ``{"endpoint": ..., "region": ..., "allow_http": ...}``.
        ``slow_start`` is the share of map tasks (0.0 to 1.0) after which the reducers
        start fetching the map outputs committed so far (default 0.05; 1.0 waits for
        every map task).

        ``files`` are local files the job's programs need (``"map.py"``, or
        ``"lib/v2.py#helper.py"`` to rename one), like Hadoop's ``-files``: uploaded once,
        by content, to the cluster, and found by their names in the working directory of
        every task, so workers need not have them.
        """
        body: Dict[str, Any] = {
            "kind": "mapreduce",
            "job": job,
            "inputs": [inputs] if isinstance(inputs, str) else list(inputs),
            "output": output,
            "params": {str(k): str(v) for k, v in (params or {}).items()},
            "overwrite": overwrite,
        }
        optional = {
            "reducers": reducers,
            "split_bytes": split_bytes,
            "open_cost_bytes": open_cost_bytes,
            "sort_buffer_bytes": sort_buffer_bytes,
            "merge_factor": merge_factor,
            "compress_output": compress_output,
            "max_attempts": max_attempts,
            "slow_start": slow_start,
            "s3": dict(s3) if s3 else None,
        }
        _add_given(body, optional)
        if files:
            body["files"] = self.upload_files(files)
        return self._submit(body)

    def upload_files(self, files: Sequence[str]) -> Dict[str, str]:
        """Uploads ``files`` (``PATH`` or ``PATH#NAME``) to the cluster's content-addressed
        store; returns their names and SHA-256 hashes, as a job's ``files`` takes them."""
        shipped: Dict[str, str] = {}
        for spec in files:
            # As the CLI's --files: the last `#` separates a new name.
            path, sep, name = spec.rpartition("#")
            if not sep:
                path, name = spec, os.path.basename(spec)
            if not os.path.isfile(path):
                raise EssaimError(f"files: {path} is not a file")
            if name in shipped:
                raise EssaimError(f"files: two files would appear as {name}; rename one with #NAME")
            digest = hashlib.sha256()
            with open(path, "rb") as file:
                for block in iter(lambda: file.read(1 << 20), b""):
                    digest.update(block)
            stored = self._transport.upload(path, digest.hexdigest(), os.path.getsize(path))
            shipped[name] = stored["sha256"]
        return shipped

    def submit_tasks(
        self,
        name: str,
        tasks: Iterable[Mapping[str, Any]],
        *,
        max_attempts: Optional[int] = None,
        priority: Optional[int] = None,
        max_concurrency: Optional[int] = None,
        task_timeout_ms: Optional[int] = None,
        required_labels: Optional[Mapping[str, str]] = None,
    ) -> Job:
        """Submits a task farm. Each task is ``{"kind": ..., "payload": ..., "stage": 0}``:
        ``kind`` names the executor (``command``, ``sleep``, or one a worker registers);
        a string payload is passed as its UTF-8 bytes, any other value as JSON text.
        ``required_labels`` (``{"gpu": "yes"}``) runs the tasks only on workers carrying
        every one of those labels; the job waits, queued, while no live worker does."""
        body: Dict[str, Any] = {"kind": "tasks", "name": name, "tasks": [dict(t) for t in tasks]}
        optional = {
            "max_attempts": max_attempts,
            "priority": priority,
            "max_concurrency": max_concurrency,
            "task_timeout_ms": task_timeout_ms,
            "required_labels": dict(required_labels) if required_labels else None,
        }
        _add_given(body, optional)
        return self._submit(body)

    def submit_commands(
        self, name: str, commands: Iterable[str], *, files: Sequence[str] = (), **options: Any
    ) -> Job:
        """Submits one ``command`` task per shell command line (run by ``sh -c`` on a
        worker that allows commands). ``files`` (``PATH`` or ``PATH#NAME``) travel with
        the job, as the CLI's ``essaim submit --files``: each command runs in a directory
        where they appear under their names."""
        payload: Dict[str, Any] = {}
        if files:
            payload["files"] = self.upload_files(files)
        tasks = [
            {"kind": "command", "payload": {"argv": ["sh", "-c", line], **payload}}
            for line in commands
        ]
        return self.submit_tasks(name, tasks, **options)

    def _submit(self, body: Dict[str, Any]) -> Job:
        answer = self._transport.call("POST", "/api/v1/jobs", body)
        return Job(self._transport, answer["job_id"], answer.get("plan"))

    # ------------------------------------------------------------------ reading

    def job(self, job_id: int) -> Job:
        """The job of that id (its status is read when asked for)."""
        return Job(self._transport, int(job_id))

    def jobs(self) -> List[Dict[str, Any]]:
        """Every job the coordinator remembers, newest first."""
        return self._transport.call("GET", "/api/v1/jobs")

    def mapreduce_jobs(self) -> Dict[str, str]:
        """The MapReduce jobs the cluster can plan, with their descriptions."""
        listed = self._transport.call("GET", "/api/v1/mapreduce-jobs")
        return {job["name"]: job["description"] for job in listed}

    def workers(self) -> List[Dict[str, Any]]:
        """The live workers, with their slots and what they run."""
        return self._transport.call("GET", "/api/v1/workers")

    def overview(self) -> Dict[str, Any]:
        """The cluster at a glance: workers, slots, jobs, queue statistics."""
        return self._transport.call("GET", "/api/v1/overview")

    # ------------------------------------------------------------------ dead letters

    def dead_letters(self, job: Optional[int] = None) -> List[Dict[str, Any]]:
        """Dead letters (of one job, or of every job), with their error history."""
        return self._transport.call("GET", "/api/v1/dead-letters", query={"job": job})

    def requeue_dead_letters(self, job: int, tasks: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """Gives a job's dead letters (or some of its tasks') another round of attempts."""
        return self._transport.call(
            "POST", "/api/v1/dead-letters/requeue", _selection(job, tasks)
        )

    def purge_dead_letters(self, job: int, tasks: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """Gives up on a job's dead letters for good."""
        return self._transport.call("POST", "/api/v1/dead-letters/purge", _selection(job, tasks))


class Pipelines:
    """Streaming pipelines (``client.stream``): each runs as one job ``stream:<name>``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def submit(
        self,
        spec: str,
        *,
        name: str,
        postgres: str,
        tables: Optional[Mapping[str, str]] = None,
        base_dir: Optional[str] = None,
        nats: Optional[str] = None,
        kafka: Optional[str] = None,
        parallelism: Optional[int] = None,
        exit_at_end: bool = False,
        batch_max: Optional[int] = None,
        batch_wait_ms: Optional[int] = None,
        migrate: Optional[str] = None,
    ) -> Job:
        """Submits a pipeline from its TOML ``spec`` (text). Its dimension tables are
        given as CSV text in ``tables``, or read by the cluster from their ``path``
        relative to ``base_dir``. Refused while a pipeline of that name runs. State the
        pipeline's units made under another spec is refused unless ``migrate`` says
        what to do with it: ``"keep"``, ``"reset"`` or ``"rebuild"``."""
        body: Dict[str, Any] = {
            "kind": "stream",
            "name": name,
            "spec": spec,
            "postgres": postgres,
            "tables": dict(tables or {}),
            "exit_at_end": exit_at_end,
        }
        optional = {
            "base_dir": base_dir,
            "nats": nats,
            "kafka": kafka,
            "parallelism": parallelism,
            "batch_max": batch_max,
            "batch_wait_ms": batch_wait_ms,
            "migrate": migrate,
        }
        _add_given(body, optional)
        answer = self._transport.call("POST", "/api/v1/jobs", body)
        return Job(self._transport, answer["job_id"], answer.get("plan"))

    def running(self, name: str) -> List[Job]:
        """The running jobs of pipeline ``name``."""
        jobs = self._transport.call("GET", "/api/v1/jobs")
        return [
            Job(self._transport, job["id"])
            for job in jobs
            if job["name"] == f"stream:{name}" and job["state"] == "running"
        ]

    def stop(self, name: str) -> int:
        """Stops pipeline ``name`` (its state stays in PostgreSQL); returns how many jobs
        were cancelled."""
        running = self.running(name)
        for job in running:
            job.cancel()
        return len(running)


def _add_given(body: Dict[str, Any], optional: Mapping[str, Any]) -> None:
    """Adds the options that were given: an absent one takes the coordinator's default."""
    body.update({k: v for k, v in optional.items() if v is not None})


def _selection(job: int, tasks: Optional[Sequence[int]]) -> Dict[str, Any]:
    selection: Dict[str, Any] = {"job_id": job}
    if tasks is not None:
        selection["task_indexes"] = list(tasks)
    return selection


def _token_from_environment() -> Optional[str]:
    token = os.environ.get("ESSAIM_TOKEN")
    if token:
        return token
    path = os.environ.get("ESSAIM_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                # Its first line, as the CLI reads it.
                return file.readline().strip()
        except OSError as error:
            raise EssaimError(f"ESSAIM_TOKEN_FILE {path}: {error}") from None
    return None
