"""essaim's Python client: submit task farms, MapReduce jobs and streaming pipelines to
an essaim cluster, follow them, and read what they produced.

    from essaim import Client
    client = Client("http://127.0.0.1:7070", token="...")
    job = client.submit_mapreduce("wordcount", inputs=["s3://books/"], output="s3://out/wc",
                                  s3={"endpoint": "http://127.0.0.1:9000", "allow_http": True})
    job.wait(progress=True)
    for line in job.output(s3={"endpoint": "http://127.0.0.1:9000"}):
        print(line)

The client speaks the coordinator's REST API (``/api/v1``, described by its OpenAPI
document); the coordinator plans every job, so nothing but this package is needed here.
"""

from ._http import EssaimError
from .client import Client, Pipelines
from .job import FINISHED, Job, JobFailed, JobStatus, TaskResult

__all__ = [
    "Client",
    "EssaimError",
    "FINISHED",
    "Job",
    "JobFailed",
    "JobStatus",
    "Pipelines",
    "TaskResult",
]
__version__ = "0.1.0"
