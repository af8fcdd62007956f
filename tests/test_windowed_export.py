"""WriteWindowedJsonl under TestStream: one file set per window, lateness, too-late events reported.

The Python DirectRunner loses counter updates of bundles after the first watermark step (its
executor threads have no metrics container), so the counters are checked by driving the DoFn
directly with in-memory state, timers and a metrics container.
"""
from __future__ import annotations

import json
import re

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.transforms.window import TimestampedValue

from transforms.windowed_export import WriteWindowedJsonl

NAME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)-(stream|keys)-([0-9a-f-]{36})---(\d+)(_\d+)?\.jsonl$")
T0 = 1_700_000_040  # 2023-11-14T22:14:00Z, a minute boundary


def event(n: int, second: float) -> TimestampedValue:
    millis = int((T0 + second) * 1000)
    return TimestampedValue({"strmMeta": {"eventContractRef": "a/b/1.0.0", "nonce": n, "timestamp": millis},
                             "n": n}, T0 + second)


def run(stream: EventStream, tmp_path, **kwargs):
    """Run the writer on the DirectRunner; returns (files by name, too-late rows)."""
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    written = (p | stream | WriteWindowedJsonl([str(tmp_path / "a"), str(tmp_path / "b")], counter="encrypted",
                                               run_id="0b3c2a8e-1111-4222-8333-944455556666", **kwargs))
    # too-late rows are timestamped when rejected, so a dead-letter writer exports them in a current window
    _ = written[WriteWindowedJsonl.TOO_LATE] | "WriteDeadLetters" >> WriteWindowedJsonl(
        str(tmp_path / "dead"), interval=60, counter="dead_letter", report_too_late=False)
    p.run().wait_until_finish()
    files = {path.name: [json.loads(line)["n"] for line in path.read_text().splitlines()]
             for path in sorted((tmp_path / "a").iterdir())} if (tmp_path / "a").exists() else {}
    too_late_rows = [json.loads(line) for path in sorted(tmp_path.glob("dead/*.jsonl"))
                     for line in path.read_text().splitlines()]
    return files, too_late_rows


def test_one_file_set_per_window_late_data_within_lateness_included_later_data_reported(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 5), event(2, 50), event(3, 70)])      # windows [0,60) and [60,120)
              .advance_watermark_to(T0 + 65)                               # window 0 ended, lateness 30 s
              .add_elements([event(4, 20)])                                # 45 s late: within lateness
              .advance_watermark_to(T0 + 95)                               # window 0 written at 60 + 30
              .add_elements([event(5, 30)])                                # too late for window 0
              .add_elements([event(6, 250)])                               # window [240,300); none in [120,240)
              .advance_watermark_to_infinity())
    files, too_late = run(stream, tmp_path, interval=60, allowed_lateness=30)
    labels = {name: NAME.match(name).group(1) for name in files}
    assert sorted(labels.values()) == ["2023-11-14T22:14:00", "2023-11-14T22:15:00", "2023-11-14T22:18:00"]
    assert all(NAME.match(name).group(3) == "0b3c2a8e-1111-4222-8333-944455556666" for name in files)
    by_label = {labels[name]: sorted(values) for name, values in files.items()}
    assert by_label == {"2023-11-14T22:14:00": [1, 2, 4], "2023-11-14T22:15:00": [3], "2023-11-14T22:18:00": [6]}
    # the same file set in the second directory
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(files)
    assert not list(tmp_path.rglob(".temp-*"))
    # the too-late event: a dead letter, and counted
    assert len(too_late) == 1
    assert too_late[0]["position"] == "nonce:5" and too_late[0]["stage"] == "export"
    assert "too late for export window 2023-11-14T22:14:00" in too_late[0]["reason"]
    assert "allowed lateness of 30 s" in too_late[0]["reason"]


def test_without_lateness_any_event_after_the_window_end_is_too_late(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 10)])
              .advance_watermark_to(T0 + 61)
              .add_elements([event(2, 59), event(3, 61)])
              .advance_watermark_to_infinity())
    files, too_late = run(stream, tmp_path, interval=60, allowed_lateness=0)
    assert sorted(files.values()) == [[1], [3]]
    assert [row["position"] for row in too_late] == ["nonce:2"]


def test_shards_write_one_file_each_per_window_and_big_files_roll(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(n, n) for n in range(40)])
              .advance_watermark_to_infinity())
    files, too_late = run(stream, tmp_path, interval=60, allowed_lateness=0, shards=2, max_bytes=400)
    shards = {NAME.match(name).group(4) for name in files}
    assert shards == {"0", "1"} and too_late == []
    assert any(NAME.match(name).group(5) for name in files)            # rolled parts: ---0_1.jsonl
    assert sorted(n for values in files.values() for n in values) == list(range(40))


# -- the counters, with the DoFn driven directly ---------------------------------------------------
class _Bag:
    def __init__(self):
        self.items = []

    def add(self, item):
        self.items.append(item)

    def read(self):
        return list(self.items)

    def clear(self):
        self.items = []


class _Value:
    def __init__(self):
        self.value = None

    def read(self):
        return self.value

    def write(self, value):
        self.value = value

    def clear(self):
        self.value = None


class _Timer:
    def __init__(self):
        self.at = None

    def set(self, timestamp):
        self.at = timestamp


def test_counters_of_written_files_events_and_too_late_events(tmp_path):
    from apache_beam.metrics.execution import MetricsContainer
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils import counters as beam_counters
    from apache_beam.utils.timestamp import Timestamp

    from transforms.windowed_export import _ExportWindowsFn

    fn = _ExportWindowsFn([str(tmp_path / "out")], ["encrypted"], interval=60, allowed_lateness=30, kind="stream",
                          run_id="r", max_bytes=1 << 20, output="encrypted", report_too_late=True)
    state = {"buffer": _Bag(), "closed_until": _Value(), "next_flush": _Value(), "flush": _Timer()}
    sampler = statesampler.StateSampler("test", beam_counters.CounterFactory())
    container = MetricsContainer("WriteDueWindows")
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state("WriteDueWindows", "process", metrics_container=container):
            for n, second in [(1, 5), (2, 50)]:
                value = event(n, second)
                assert list(fn.process((0, value.value), Timestamp(T0 + second), **state)) == []
            assert state["flush"].at == Timestamp(T0 + 90)
            paths = list(fn.write_due_windows(0, Timestamp(T0 + 90), **state))
            late = list(fn.process((0, event(3, 10).value), Timestamp(T0 + 10), **state))
    finally:
        statesampler.set_current_tracker(None)
    assert [p.rsplit("/", 1)[1] for p in paths] == ["2023-11-14T22:14:00-stream-r---0.jsonl"]
    assert len(late) == 1 and late[0].tag == WriteWindowedJsonl.TOO_LATE
    counted = {key.metric.name: value for key, value in container.get_cumulative().counters.items()}
    assert counted == {"encrypted": 2, "files_encrypted": 1, "too_late_encrypted": 1}
