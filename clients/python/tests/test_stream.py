"""A streaming pipeline submitted from Python: a tailed directory of CSV files, a filter
and an enrichment with a dimension table sent inline, into rolling JSON files; the
pipeline runs to the end of its input and its records are compared with a filter
computed here."""

from __future__ import annotations

import json

import pytest

from essaim import EssaimError

SPEC = """
version = 1
[[source]]
name = "events"
time = "t"
connector = { kind = "files", dir = "in", partitions = 2 }
columns = [
  { name = "t", type = "int" }, { name = "word", type = "string" }, { name = "n", type = "int" },
]
[[table]]
name = "categories"
key = "word"
header = true
columns = [ { name = "word", type = "string" }, { name = "category", type = "string" } ]
[[operator]]
name = "positive"
kind = "filter"
input = "events"
predicate = "n > 0"
[[operator]]
name = "labelled"
kind = "enrich"
input = "positive"
table = "categories"
key = "word"
fields = { category = "category" }
[[sink]]
name = "files"
input = "labelled"
connector = { kind = "files", dir = "out" }
"""


def test_tables_come_inline_over_the_api(cluster, postgres, tmp_path):
    (tmp_path / "categories.csv").write_text("word,category\n")
    spec = SPEC.replace('key = "word"\nheader = true', 'key = "word"\nheader = true\npath = "categories.csv"', 1)
    with pytest.raises(EssaimError) as refused:
        cluster.stream.submit(spec, name="py_paths", postgres=postgres, base_dir=str(tmp_path))
    assert refused.value.status == 400 and "inline" in str(refused.value)


def test_a_pipeline_runs_to_the_end_of_its_files(cluster, postgres, tmp_path):
    rows = [(1000 + i, f"w{i % 7}", i % 5) for i in range(600)]
    for partition in range(2):
        directory = tmp_path / "in" / str(partition)
        directory.mkdir(parents=True)
        mine = [row for index, row in enumerate(rows) if index % 2 == partition]
        lines = "".join(f"{t},{word},{n}\n" for t, word, n in mine)
        (directory / "part-001.csv").write_text(lines)
        (directory / "_END").write_text("")
    categories = "word,category\n" + "".join(f"w{i},{'even' if i % 2 == 0 else 'odd'}\n" for i in range(7))
    job = cluster.stream.submit(
        SPEC,
        name="py_words",
        postgres=postgres,
        tables={"categories": categories},
        base_dir=str(tmp_path),
        exit_at_end=True,
    )
    assert job.plan["pipeline"] == "py_words"
    with pytest.raises(EssaimError) as twice:
        cluster.stream.submit(SPEC, name="py_words", postgres=postgres, tables={"categories": categories},
                              base_dir=str(tmp_path))
    assert twice.value.status == 409
    job.wait(timeout=180)
    written = []
    for path in sorted((tmp_path / "out").rglob("*")):
        if path.is_file():
            written += [json.loads(line) for line in path.read_text().splitlines()]
    by_key = {record["key"]: record["value"] for record in written}
    assert len(by_key) == sum(1 for _, _, n in rows if n > 0)
    text = json.dumps(list(by_key.values()))
    assert "even" in text and "odd" in text
    assert cluster.stream.running("py_words") == []
