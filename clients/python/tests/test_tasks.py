"""Task farms, results, cancelling, dead letters and the token, from Python."""

from __future__ import annotations

import pytest

from essaim import Client, EssaimError


def test_commands_run_and_their_output_comes_back(cluster):
    job = cluster.submit_commands("py-echo", [f"echo task-{i}" for i in range(6)])
    status = job.wait(timeout=60)
    assert status.total == 6 and status.tasks["succeeded"] == 6
    texts = sorted(result.text.strip() for result in job.results())
    assert texts == [f"task-{i}" for i in range(6)]


def test_commands_run_where_their_shipped_files_appear(cluster, tmp_path):
    script = tmp_path / "greet.sh"
    script.write_text('echo "hello $1 from $(cat name.txt)"\n')
    who = tmp_path / "who.txt"
    who.write_text("essaim\n")
    commands = [f"sh greet.sh {i}" for i in range(3)]
    job = cluster.submit_commands("py-files", commands, files=[str(script), f"{who}#name.txt"])
    job.wait(timeout=60)
    texts = sorted(result.text.strip() for result in job.results())
    assert texts == [f"hello {i} from essaim" for i in range(3)]


def test_dead_letters_can_be_listed_requeued_and_purged(cluster):
    job = cluster.submit_commands("py-poison", ["exit 3"], max_attempts=1)
    status = job.wait(timeout=60, check=False)
    assert status.state == "failed"
    letters = cluster.dead_letters(job=job.id)
    assert len(letters) == 1 and letters[0]["job_id"] == job.id
    cluster.purge_dead_letters(job.id)
    assert cluster.dead_letters(job=job.id) == []


def test_a_running_job_can_be_cancelled(cluster):
    job = cluster.submit_tasks("py-sleepers", [{"kind": "sleep", "payload": "60000"}] * 4)
    status = job.cancel()
    assert status.state == "cancelled"


def test_malformed_submissions_and_wrong_tokens_are_refused(cluster):
    with pytest.raises(EssaimError) as refused:
        cluster._transport.call("POST", "/api/v1/jobs", {"kind": "teleport"})
    assert refused.value.status == 400
    with pytest.raises(EssaimError) as refused:
        Client(cluster.url, token="wrong").jobs()
    assert refused.value.status == 401 and "token" in str(refused.value)
    with pytest.raises(EssaimError) as unreachable:
        Client("http://127.0.0.1:9", timeout=2).jobs()
    assert unreachable.value.status is None


def test_a_pipeline_spec_is_checked_by_the_coordinator(cluster):
    with pytest.raises(EssaimError) as refused:
        cluster.stream.submit("this is not toml [", name="broken", postgres="postgres://x/y")
    assert refused.value.status == 400 and "spec" in str(refused.value)
