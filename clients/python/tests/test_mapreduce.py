"""MapReduce jobs submitted from Python, planned by the coordinator, compared with
word counts computed here with collections.Counter."""

from __future__ import annotations

import gzip
import random
from collections import Counter

import pytest

from essaim import EssaimError, JobFailed

WORDS = ["essaim", "bee", "swarm", "hive", "queen", "drone", "nectar", "pollen", "wax", "été"]


def corpus(seed: int, lines: int) -> str:
    rng = random.Random(seed)
    return "".join(" ".join(rng.choices(WORDS, k=rng.randint(1, 12))) + "\n" for _ in range(lines))


def counts_of(lines) -> Counter:
    counts: Counter = Counter()
    for line in lines:
        word, _, count = line.rpartition("\t")
        assert word not in counts, f"{word} counted twice"
        counts[word] = int(count)
    return counts


def test_the_cluster_lists_its_jobs_and_workers(cluster):
    jobs = cluster.mapreduce_jobs()
    assert "wordcount" in jobs and "sort" in jobs
    assert len(cluster.workers()) == 2
    assert cluster.overview()["workers"] == 2


def test_wordcount_over_local_gz_and_plain_files_equals_counter(cluster, tmp_path):
    texts = [corpus(seed, 3000) for seed in range(4)]
    (tmp_path / "in").mkdir()
    for index, text in enumerate(texts):
        if index % 2:
            (tmp_path / "in" / f"part{index}.txt.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (tmp_path / "in" / f"part{index}.txt").write_text(text, encoding="utf-8")
    job = cluster.submit_mapreduce(
        "wordcount", inputs=[str(tmp_path / "in")], output=str(tmp_path / "out"), reducers=3
    )
    assert job.plan["input_files"] == 4 and job.plan["reducers"] == 3
    status = job.wait(timeout=120, progress=True)
    assert status.state == "succeeded"
    expected = Counter(word for text in texts for word in text.split())
    assert counts_of(job.output()) == expected
    # The word count's own counters reached the coordinator.
    assert status.counters


def test_a_job_the_cluster_cannot_plan_is_refused_with_the_reason(cluster, tmp_path):
    with pytest.raises(EssaimError) as refused:
        cluster.submit_mapreduce("wordcuont", inputs=[str(tmp_path)], output=str(tmp_path / "o"))
    assert refused.value.status == 400 and "wordcount" in str(refused.value)
    with pytest.raises(EssaimError) as refused:
        cluster.submit_mapreduce("wordcount", inputs=[str(tmp_path / "nothing")], output=str(tmp_path / "o"))
    assert refused.value.status == 400 and "nothing" in str(refused.value)
    # An existing directory that is not a job's output is never replaced over the API.
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    (tmp_path / "in.txt").write_text("a b\n")
    with pytest.raises(EssaimError) as refused:
        cluster.submit_mapreduce(
            "wordcount", inputs=[str(tmp_path / "in.txt")], output=str(tmp_path / "keep"), overwrite=True
        )
    assert refused.value.status == 400 and "not an earlier job's committed output" in str(refused.value)
    assert (tmp_path / "keep" / "notes.txt").read_text() == "mine"


def test_wordcount_from_a_bucket_to_a_bucket(cluster, s3):
    boto3 = pytest.importorskip("boto3")
    store = boto3.client("s3", endpoint_url=s3["endpoint"], region_name=s3["region"])
    for bucket in ("books", "counts"):
        store.create_bucket(Bucket=bucket)
    texts = [corpus(100 + seed, 4000) for seed in range(3)]
    for index, text in enumerate(texts):
        store.put_object(Bucket="books", Key=f"shelf/{index}.txt.gz", Body=gzip.compress(text.encode()))
    job = cluster.submit_mapreduce(
        "wordcount", inputs=["s3://books/shelf"], output="s3://counts/wc", reducers=2, s3=s3
    )
    assert job.plan["input_files"] == 3
    job.wait(timeout=120, progress=True)
    expected = Counter(word for text in texts for word in text.split())
    assert counts_of(job.output(s3=s3)) == expected
    # Submitting again over a committed output needs overwrite, which replaces it.
    with pytest.raises(EssaimError):
        cluster.submit_mapreduce("wordcount", inputs=["s3://books/shelf"], output="s3://counts/wc", s3=s3)
    again = cluster.submit_mapreduce(
        "wordcount", inputs=["s3://books/shelf"], output="s3://counts/wc", s3=s3, overwrite=True
    )
    again.wait(timeout=120)
    assert counts_of(again.output(s3=s3)) == expected


def test_a_failed_job_raises_with_its_reason(cluster, tmp_path):
    (tmp_path / "in.txt").write_text("one line\n")
    job = cluster.submit_mapreduce(
        "streaming",
        inputs=[str(tmp_path / "in.txt")],
        output=str(tmp_path / "out"),
        params={"step.0.mapper": "sh -c 'exit 7'"},
        max_attempts=1,
    )
    with pytest.raises(JobFailed) as failed:
        job.wait(timeout=120)
    assert failed.value.job_status.state == "failed"
    assert job.dead_letters(), "the failing map task is dead-lettered"


MAPPER = """import sys
from stopwords import STOP
for line in sys.stdin:
    for word in line.split():
        if word not in STOP:
            print(f"{word}\t1")
"""


def test_a_streaming_job_runs_a_mapper_only_the_client_had(cluster, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "map.py").write_text(MAPPER)
    (code / "stop.py").write_text('STOP = {"bee", "wax"}\n')
    text = corpus(7, 2000)
    (tmp_path / "in.txt").write_text(text)
    job = cluster.submit_mapreduce(
        "streaming",
        inputs=[str(tmp_path / "in.txt")],
        output=str(tmp_path / "out"),
        params={"step.0.mapper": "python3 map.py"},
        files=[str(code / "map.py"), f"{code / 'stop.py'}#stopwords.py"],
        reducers=1,
    )
    # The workers never see the client's copy.
    for path in code.iterdir():
        path.unlink()
    code.rmdir()
    job.wait(timeout=120)
    counted = Counter(line.split("\t")[0] for line in job.output())
    assert counted == Counter(w for w in text.split() if w not in {"bee", "wax"})
    with pytest.raises(EssaimError):
        cluster.submit_mapreduce("streaming", inputs=[str(tmp_path / "in.txt")],
                                 output=str(tmp_path / "o2"), files=[str(tmp_path / "nope.py")])
