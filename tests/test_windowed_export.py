"""AdmitInTime and the streaming writers under TestStream (DirectRunner).

- One late-data decision per event, from the watermark: in time while the watermark is before
  window end + allowed lateness, too late from that instant on (exclusive bound); a window
  without events is closed like any other; every shard decides alike, also one that never saw
  an event of its own.
- WriteWindowedJsonl: one file set per window and directory, none for empty windows, shards and
  rolled parts; an event that reaches a window already written is a dead letter, never appended.
- WriteProcessingTimeJsonl: rows are never too late; batches are named after the processing-time
  interval they started in, and a name is never used twice.

The DirectRunner loses counter updates of bundles after the first watermark step (its executor
threads have no metrics container), so the counters are checked by driving the DoFns directly
with in-memory state, timers and a metrics container.
"""
from __future__ import annotations

import json
import re
import time

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.lateness import AdmitInTime, Closing, _DecideFn
from transforms.windowed_export import WriteProcessingTimeJsonl, WriteWindowedJsonl, window_label

NAME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)-(stream|keys|dead-letter)-([0-9a-f-]{36})---(\d+)(_\d+)?\.jsonl$")
RUN = "0b3c2a8e-1111-4222-8333-944455556666"
T0 = 1_700_000_040  # 2023-11-14T22:14:00Z, a minute boundary


def event(n: int, second: float, consent=(1,)) -> TimestampedValue:
    millis = int((T0 + second) * 1000)
    return TimestampedValue({"strmMeta": {"eventContractRef": "a/b/1.0.0", "nonce": n, "timestamp": millis,
                                          "consentLevels": list(consent)}, "n": n}, T0 + second)


def outputs_of(event: dict) -> list[str]:
    return ["a"] + (["b"] if 2 in event["strmMeta"]["consentLevels"] else [])


def numbers(folder) -> dict[str, list[int]]:
    if not folder.exists():
        return {}
    return {path.name: sorted(json.loads(line)["n"] for line in path.read_text().splitlines())
            for path in sorted(folder.iterdir())}


def rows(folder) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.read_text().splitlines()]


def by_window(files: dict[str, list[int]]) -> dict[str, list[int]]:
    merged: dict[str, list[int]] = {}
    for name, values in files.items():
        merged.setdefault(NAME.match(name).group(1), []).extend(values)
    return {label: sorted(values) for label, values in merged.items()}


def run_decided(stream: EventStream, tmp_path, interval=60, allowed_lateness=30, shards=1, **writer):
    """AdmitInTime, then output "a" (every event) and "b" (consent 2) written per window, as the graph does."""
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    decided = p | stream | AdmitInTime([interval], allowed_lateness, shards, outputs_of)
    admitted = decided[AdmitInTime.ADMITTED]
    after_close = []
    for name, selected in (("a", admitted),
                           ("b", admitted | beam.Filter(lambda e: 2 in e["strmMeta"]["consentLevels"]))):
        written = selected | f"Write {name}" >> WriteWindowedJsonl(
            [str(tmp_path / name), str(tmp_path / f"{name}-copy")], interval, allowed_lateness, run_id=RUN,
            shards=shards, counter=name, **writer)
        after_close.append(written[WriteWindowedJsonl.AFTER_CLOSE])
    _ = ((decided[AdmitInTime.TOO_LATE], *after_close) | beam.Flatten()
         | WriteProcessingTimeJsonl(str(tmp_path / "dead"), interval, kind="dead-letter", run_id=RUN))
    p.run().wait_until_finish()
    return numbers(tmp_path / "a"), numbers(tmp_path / "b"), rows(tmp_path / "dead")


def test_in_time_and_late_within_lateness_are_exported_later_events_are_one_dead_letter_each(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 5), event(2, 50, (1, 2)), event(3, 70)])   # windows [0,60) and [60,120)
              .advance_watermark_to(T0 + 65)                                  # window 0 ended, lateness 30 s
              .add_elements([event(4, 20, (2,))])                             # 5 s past the end: in time
              .advance_watermark_to(T0 + 95)                                  # window 0 closed at 60 + 30
              .add_elements([event(5, 30, (1, 2))])                           # too late for window 0
              .add_elements([event(6, 250)])                                  # window [240,300); none in [120,240)
              .advance_watermark_to_infinity())
    a, b, dead = run_decided(stream, tmp_path)
    assert by_window(a) == {"2023-11-14T22:14:00": [1, 2, 4], "2023-11-14T22:15:00": [3],
                            "2023-11-14T22:18:00": [6]}
    assert by_window(b) == {"2023-11-14T22:14:00": [2, 4]}
    assert all(NAME.match(name).group(3) == RUN for name in a)
    assert numbers(tmp_path / "a-copy") == a and numbers(tmp_path / "b-copy") == b   # every directory alike
    assert not list(tmp_path.rglob(".temp-*"))
    # the too-late event: one row for all of its outputs, naming them, never its values
    assert len(dead) == 1
    assert dead[0]["position"] == "nonce:5" and dead[0]["stage"] == "export"
    assert dead[0]["window"] == "2023-11-14T22:14:00" and dead[0]["outputs"] == ["a", "b"]
    assert "too late for export window 2023-11-14T22:14:00 (+60 s)" in dead[0]["reason"]
    assert "allowed lateness of 30 s" in dead[0]["reason"]


def test_a_window_without_events_is_closed_like_any_other(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 10, (2,))])                 # window 0 only
              .advance_watermark_to(T0 + 200)                     # window [60,120) closed at 150, [120,180) closes at 210
              .add_elements([event(2, 75, (2,))])                 # window [60,120) closed at 150: too late
              .add_elements([event(3, 130, (2,))])                # window [120,180) closes at 210: in time
              .advance_watermark_to(T0 + 400)
              .add_elements([event(4, 300, (2,))])                # window [300,360) closed at 390: too late
              .advance_watermark_to_infinity())
    a, b, dead = run_decided(stream, tmp_path)
    assert by_window(a) == by_window(b) == {"2023-11-14T22:14:00": [1], "2023-11-14T22:16:00": [3]}
    assert sorted((row["position"], row["window"]) for row in dead) == [
        ("nonce:2", "2023-11-14T22:15:00"), ("nonce:4", "2023-11-14T22:19:00")]   # no file for either window


@pytest.mark.parametrize("lateness", [0, 30])
def test_the_lateness_bound_is_exclusive(tmp_path, lateness):
    close = T0 + 60 + lateness        # window [0, 60) closes at 60 + lateness
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 10)])
              .advance_watermark_to(close - 0.001)                # 1 ms before the close
              .add_elements([event(2, 59)])                       # in time
              .advance_watermark_to(close)                        # exactly at the close
              .add_elements([event(3, 0)])                        # too late
              .advance_watermark_to_infinity())
    a, _, dead = run_decided(stream, tmp_path, allowed_lateness=lateness)
    assert by_window(a) == {"2023-11-14T22:14:00": [1, 2]}
    assert [row["position"] for row in dead] == ["nonce:3"]


def test_every_shard_decides_alike_even_one_without_events_of_its_own(tmp_path):
    # four decision shards, few in-time events: some shards see their first event only when it is too late
    late = [event(n, n % 60) for n in range(10, 22)]
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 1), event(2, 61)])
              .advance_watermark_to(T0 + 130)                    # window 0 closed at 90, window 60 not (150)
              .add_elements(late + [event(3, 100)])
              .advance_watermark_to_infinity())
    a, _, dead = run_decided(stream, tmp_path, shards=4)
    assert by_window(a) == {"2023-11-14T22:14:00": [1], "2023-11-14T22:15:00": [2, 3]}
    assert sorted(row["position"] for row in dead) == sorted(f"nonce:{n}" for n in range(10, 22))
    assert len({NAME.match(name).group(4) for name in a}) >= 2          # written by more than one shard
    from transforms.lateness import _shard_of
    assert len({_shard_of(e.value, 4) for e in late}) == 4              # the late events reached every shard


def test_position_event_pairs_pass_as_they_came_and_too_late_rows_name_the_position():
    from apache_beam.testing.util import assert_that, equal_to

    def pair(position, n, second):
        value = event(n, second)
        return TimestampedValue((position, value.value), value.timestamp)

    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([pair("in.jsonl:1", 1, 10)])
              .advance_watermark_to(T0 + 90)                     # window 0 closed at 60 + 30
              .add_elements([pair("in.jsonl:2", 2, 20), pair("in.jsonl:3", 3, 70)])
              .advance_watermark_to_infinity())
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    decided = p | stream | AdmitInTime([60], 30, 2, outputs_of)
    assert_that(decided[AdmitInTime.ADMITTED] | beam.Map(lambda pair: (pair[0], pair[1]["n"])),
                equal_to([("in.jsonl:1", 1), ("in.jsonl:3", 3)]))
    assert_that(decided[AdmitInTime.TOO_LATE] | beam.Map(lambda row: (row["position"], row["outputs"])),
                equal_to([("in.jsonl:2", ["a"])]), label="TooLate")
    p.run().wait_until_finish()


def test_writer_shards_write_one_file_each_per_window_and_big_files_roll(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(n, n) for n in range(40)])
              .advance_watermark_to_infinity())
    a, _, dead = run_decided(stream, tmp_path, allowed_lateness=0, shards=2, max_bytes=400)
    assert {NAME.match(name).group(4) for name in a} == {"0", "1"} and dead == []
    assert any(NAME.match(name).group(5) for name in a)            # rolled parts: ---0_1.jsonl
    assert sorted(n for values in a.values() for n in values) == list(range(40))


def test_an_event_reaching_a_window_already_written_is_a_dead_letter_not_appended(tmp_path):
    # WriteWindowedJsonl without AdmitInTime in front: the writer's own guard
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements([event(1, 10)])
              .advance_watermark_to(T0 + 100)                    # window 0 written at 60 + 30
              .add_elements([event(2, 20)])
              .advance_watermark_to_infinity())
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    written = p | stream | WriteWindowedJsonl(str(tmp_path / "a"), 60, 30, run_id=RUN, counter="encrypted")
    _ = written[WriteWindowedJsonl.AFTER_CLOSE] | WriteProcessingTimeJsonl(str(tmp_path / "dead"), 60,
                                                                            kind="dead-letter", run_id=RUN)
    p.run().wait_until_finish()
    assert by_window(numbers(tmp_path / "a")) == {"2023-11-14T22:14:00": [1]}
    [row] = rows(tmp_path / "dead")
    assert row["position"] == "nonce:2" and row["outputs"] == ["encrypted"]
    assert "encrypted: reached the writer after export window 2023-11-14T22:14:00" in row["reason"]


def test_processing_time_batches_take_every_row_however_late_and_never_reuse_a_name(tmp_path):
    interval = 60
    old = [TimestampedValue({"row": n}, T0 - 86_400 + n) for n in range(3)]   # a day behind the watermark
    stream = (EventStream()
              .advance_watermark_to(T0)
              .add_elements(old)
              # the DirectRunner's test clock starts at 0: move it past the wall-clock interval's end
              .advance_processing_time(int(time.time()) + 2 * interval)
              .advance_watermark_to(T0 + 10_000)
              .add_elements([TimestampedValue({"row": 3}, T0 - 86_400)])
              .advance_watermark_to_infinity())
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    _ = p | stream | WriteProcessingTimeJsonl(str(tmp_path / "keys"), interval, kind="keys", run_id=RUN)
    before = int(time.time()) // interval * interval
    p.run().wait_until_finish()
    files = sorted((tmp_path / "keys").iterdir())
    contents = [sorted(json.loads(line)["row"] for line in path.read_text().splitlines()) for path in files]
    assert contents == [[0, 1, 2], [3]]                         # the first batch written when its interval ended
    labels = [NAME.match(path.name).group(1) for path in files]
    assert all(NAME.match(path.name).group(2) == "keys" for path in files)
    assert labels[0] >= window_label(before) and labels[1] > labels[0]   # wall-clock names, each used once


# -- the counters, with the DoFns driven directly ---------------------------------------------------
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

    def clear(self):
        self.at = None


def test_the_decision_counts_too_late_events_per_output():
    from apache_beam.metrics.execution import MetricsContainer
    from apache_beam.runners.worker import statesampler
    from apache_beam.utils import counters as beam_counters

    fn = _DecideFn(Closing([60], 30), outputs_of)
    state = {"closed_until": _Value(), "next_tick": _Value(), "active_until": _Value(), "tick": _Timer(),
             "end": _Timer()}
    timer_state = {k: state[k] for k in ("closed_until", "next_tick", "active_until", "tick")}
    sampler = statesampler.StateSampler("test", beam_counters.CounterFactory())
    container = MetricsContainer("Decide")
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state("Decide", "process", metrics_container=container):
            admitted = list(fn.process((0, event(1, 5).value), Timestamp(T0 + 5), **state))
            assert state["tick"].at == Timestamp(T0 + 90)          # the first close time: window end + 30 s
            fn.advance(Timestamp(T0 + 90), **timer_state)
            assert state["tick"].at == Timestamp(T0 + 150)         # then every close time
            late = [out for n, consent in [(2, (1,)), (3, (1, 2))]
                    for out in fn.process((0, event(n, 10, consent).value), Timestamp(T0 + 10), **state)]
    finally:
        statesampler.set_current_tracker(None)
    assert [e["n"] for e in admitted] == [1]
    assert [out.tag for out in late] == [AdmitInTime.TOO_LATE] * 2
    counted = {key.metric.name: value for key, value in container.get_cumulative().counters.items()}
    assert counted == {"too_late": 2, "too_late_a": 2, "too_late_b": 1}


def test_closing_times_of_several_intervals_the_first_to_close_decides():
    closing = Closing([60, 30, 300], 10)
    assert closing.close_of(Timestamp(T0 + 5)) == T0 + 30 + 10       # the 30 s window ends first
    assert closing.window_of(Timestamp(T0 + 45)) == (T0 + 30, 30)
    assert closing.next_after(T0 + 40) == T0 + 60 + 10
    assert closing.next_after(T0 + 70) == T0 + 90 + 10
    with pytest.raises(ValueError):
        Closing([], 10)


def test_after_a_day_without_events_ticks_thin_out_an_event_brings_them_back_and_they_end():
    from transforms.lateness import FINE_TICKS_FOR, _END_OF_TIME

    closing = Closing([60], 30)
    fn = _DecideFn(closing, outputs_of)
    state = {"closed_until": _Value(), "next_tick": _Value(), "active_until": _Value(), "tick": _Timer(),
             "end": _Timer()}
    timer_state = {k: state[k] for k in ("closed_until", "next_tick", "active_until", "tick")}

    def fire(most: int) -> list[int]:   # the watermark far ahead: each pending tick fires in turn
        fired = []
        while state["tick"].at is not None and len(fired) < most:
            at, state["tick"].at = state["tick"].at, None
            fired.append(at.micros // 1_000_000)
            fn.advance(at, **timer_state)
        return fired

    list(fn.process((0, event(1, 5).value), Timestamp(T0 + 5), **state))
    assert state["end"].at == _END_OF_TIME
    fine = FINE_TICKS_FOR // 60
    fired = fire(fine + 6)
    steps = [b - a for a, b in zip(fired, fired[1:])]
    assert set(steps[:fine]) == {60}                          # every close time while events are recent
    assert steps[-1] > 2 * 86_400 and steps[-1] >= 1.9 * steps[-2]   # then ever further apart
    # an event after the silence is judged against the last tick; ticks return to every close time
    assert list(fn.process((0, event(2, 0).value), Timestamp(fired[-1] + 100), **state))
    assert state["tick"].at == Timestamp(seconds=closing.next_after(fired[-1]))
    assert fire(3) == [closing.next_after(fired[-1]) + 60 * i for i in range(3)]
    # with no more events the ticks thin out again and stop before the end of time
    assert len(fire(10_000)) < fine + 100 and state["tick"].at is None
