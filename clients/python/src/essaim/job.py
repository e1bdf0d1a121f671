"""A submitted job: its status, following it to its end, its results and output."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from ._http import EssaimError, Transport

#: The states a job ends in.
FINISHED = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class JobStatus:
    """Where a job stands, as ``GET /api/v1/jobs/{id}`` answers."""

    id: int
    name: str
    state: str
    reason: str
    total: int
    tasks: Dict[str, int]
    counters: Dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the job ended (succeeded, failed or was cancelled)."""
        return self.state in FINISHED

    @property
    def done_tasks(self) -> int:
        """Tasks that will not run again: committed, dead-lettered or skipped."""
        t = self.tasks
        return t["succeeded"] + t["dead_lettered"] + t["purged"] + t["skipped"]


@dataclass(frozen=True)
class TaskResult:
    """A committed task's result."""

    task_index: int
    worker_id: str
    duration_ms: int
    text: Optional[str]
    counters: Dict[str, int]
    file_url: Optional[str] = None


class JobFailed(EssaimError):
    """The job ended without succeeding; ``status`` holds why."""

    def __init__(self, status: JobStatus) -> None:
        super().__init__(f"job {status.id} ({status.name}) {status.state}: {status.reason}")
        self.job_status = status


class Job:
    """A job on the cluster. ``plan`` is what the coordinator decided when planning it
    (map tasks, reducers, input files and bytes, output of a MapReduce job)."""

    def __init__(self, transport: Transport, job_id: int, plan: Optional[Dict[str, Any]] = None):
        self._transport = transport
        self.id = job_id
        self.plan: Dict[str, Any] = dict(plan or {})

    def __repr__(self) -> str:
        return f"Job(id={self.id})"

    def status(self) -> JobStatus:
        """Reads the job's status now."""
        detail = self._transport.call("GET", f"/api/v1/jobs/{self.id}")
        job = detail["job"]
        return JobStatus(
            id=job["id"],
            name=job["name"],
            state=job["state"],
            reason=job["reason"],
            total=job["total"],
            tasks=job["tasks"],
            counters=detail.get("counters", {}),
        )

    def wait(
        self,
        timeout: Optional[float] = None,
        progress: bool = False,
        poll: float = 0.25,
        check: bool = True,
    ) -> JobStatus:
        """Waits for the job to end; returns its final status.

        ``progress`` shows the tasks done (a tqdm bar when tqdm is installed, else a
        line on stderr). With ``check`` (the default) a job that did not succeed raises
        :class:`JobFailed`. A ``timeout`` (seconds) raises :class:`TimeoutError`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = _progress_bar(self.id) if progress else None
        try:
            while True:
                status = self.status()
                if bar is not None:
                    bar.update(status)
                if status.finished:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {self.id} still {status.state} after {timeout} s")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()
        if check and status.state != "succeeded":
            raise JobFailed(status)
        return status

    def cancel(self) -> JobStatus:
        """Cancels the job: pending tasks are skipped, running attempts stopped."""
        self._transport.call("POST", f"/api/v1/jobs/{self.id}/cancel")
        return self.status()

    def results(self) -> Iterator[TaskResult]:
        """The committed results of the job's tasks, in task order, page by page."""
        start = 0
        while True:
            page = self._transport.call(
                "GET", f"/api/v1/jobs/{self.id}/results", query={"from": start}
            )
            for result in page["results"]:
                yield TaskResult(
                    task_index=result["task_index"],
                    worker_id=result["worker_id"],
                    duration_ms=result["duration_ms"],
                    text=result.get("inline_text"),
                    counters=result.get("counters", {}),
                    file_url=result.get("file_url"),
                )
            if not page["results"] or page["next_task"] <= start:
                return
            start = page["next_task"]

    def dead_letters(self) -> List[Dict[str, Any]]:
        """The job's dead letters, with each one's error history."""
        return self._transport.call("GET", "/api/v1/dead-letters", query={"job": self.id})

    def output(self, s3: Optional[Dict[str, Any]] = None) -> Iterator[str]:
        """The lines of a MapReduce job's committed output, part after part.

        The output is read where the job wrote it: a directory this machine can read, or
        ``s3://bucket/prefix`` (needs ``boto3``: ``pip install essaim[s3]``; ``s3`` takes
        ``endpoint``, ``region`` and credentials as boto3 does, else boto3's environment).
        """
        from . import output

        location = self.plan.get("output")
        if not location:
            raise EssaimError(f"job {self.id} is not a MapReduce job submitted by this client")
        return output.read_lines(str(location), s3 or {})


class _TextBar:
    """A one-line progress report on stderr, for when tqdm is not installed."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id

    def update(self, status: JobStatus) -> None:
        sys.stderr.write(
            f"\rjob {self.job_id}: {status.done_tasks}/{status.total} tasks, {status.state}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


class _TqdmBar:
    def __init__(self, job_id: int, tqdm: Any) -> None:
        self.bar = tqdm(desc=f"job {job_id}", unit="task", total=None)

    def update(self, status: JobStatus) -> None:
        self.bar.total = status.total
        self.bar.n = status.done_tasks
        self.bar.set_postfix_str(status.state)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _progress_bar(job_id: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return _TextBar(job_id)
    return _TqdmBar(job_id, tqdm)
