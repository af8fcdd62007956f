"""WriteJsonlBatches: reference file names, size shards, day partitions, windows, no half files."""
from __future__ import annotations

import json
import re

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.transforms.window import FixedWindows, TimestampedValue

from transforms.write_jsonl import WriteJsonlBatches

NAME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d-(stream|keys)-[0-9a-f-]{36}---\d+\.jsonl$")
DAY_MS = 86_400_000


def event(i: int, millis: int) -> dict:
    return {"strmMeta": {"eventContractRef": "a/b/1.0.0", "timestamp": millis}, "n": i, "pad": "x" * 50}


def names(folder) -> list[str]:
    """The entries a reader sees: the run's record directory (.pstream) and nothing else is hidden."""
    entries = sorted(p.name for p in folder.iterdir())
    assert [e for e in entries if e.startswith(".")] in ([], [".pstream"]), entries
    return [e for e in entries if not e.startswith(".")]


def lines(folder):
    return [json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()]


def test_shards_roll_by_size_and_keep_every_line(tmp_path):
    events = [event(i, 1_700_000_000_000) for i in range(200)]
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(events) | WriteJsonlBatches(str(tmp_path / "s"), max_bytes=2000, run_started=0)
    files = names(tmp_path / "s")
    assert len(files) > 5 and all(NAME.match(f) for f in files)
    assert all(f.startswith("1970-01-01T00:00:00-stream-") for f in files)  # batch: run start
    assert sorted(e["n"] for e in lines(tmp_path / "s")) == list(range(200))
    assert sorted(int(f.rsplit("---", 1)[1][:-6]) for f in files) == list(range(len(files)))
    assert not list((tmp_path / "s").glob(".temp-*"))


def test_daily_partitions(tmp_path):
    start = 1_700_000_000_000  # 2023-11-14
    events = [event(i, start + (i % 3) * DAY_MS) for i in range(30)]
    with TestPipeline(runner="FnApiRunner") as p:
        _ = p | beam.Create(events) | WriteJsonlBatches(str(tmp_path / "s"), partition_by_day=True)
    days = names(tmp_path / "s")
    assert days == ["date=2023-11-14", "date=2023-11-15", "date=2023-11-16"]
    for day in days:
        files = list((tmp_path / "s" / day).iterdir())
        assert len(files) == 1 and NAME.match(files[0].name)
        assert len(files[0].read_text().splitlines()) == 10


def test_windows_write_one_file_set_each_and_nothing_for_empty_windows(tmp_path):
    # events in windows [0, 60) and [120, 180): nothing in [60, 120)
    stamped = [(event(i, 0), 5 + i) for i in range(3)] + [(event(10 + i, 0), 125 + i) for i in range(2)]
    with TestPipeline(runner="FnApiRunner") as p:
        _ = (p | beam.Create(stamped)
             | beam.Map(lambda pair: TimestampedValue(pair[0], pair[1]))
             | beam.WindowInto(FixedWindows(60))
             | WriteJsonlBatches(str(tmp_path / "w"), kind="keys"))
    files = names(tmp_path / "w")
    assert [f[:19] for f in files] == ["1970-01-01T00:00:00", "1970-01-01T00:02:00"]
    assert all("-keys-" in f for f in files)
    assert sorted(e["n"] for e in lines(tmp_path / "w")) == [0, 1, 2, 10, 11]
