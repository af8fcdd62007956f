"""Events travel as batches of (position, event) pairs: positions, per-event timestamps, dead letters
per row, no empty batches, the batch size bound (transforms.event_batches)."""
from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.utils.timestamp import Timestamp

from contracts.batch_input import BatchInput
from pipelines.config import PipelineConfig
from pipelines.graph import DEAD_LETTERS, ENCRYPTED, privacy_graph
from privacy.streams import StreamSpec
from tests.conftest import SIMULATOR
from transforms.event_batches import BATCH_SIZE, BatchOf, SingleBatches, Unbatch, batch_element
from transforms.read_input import ReadBatchInput
from transforms.validate import ValidateEvents
from transforms.write_jsonl import WriteJsonlBatches

T = 1_673_610_238_506  # epoch ms


def event(n: int, millis, consent=(0, 1, 2), ref: str = SIMULATOR) -> dict:
    return {"strmMeta": {"eventContractRef": ref, "nonce": n, "timestamp": millis, "keyLink": None,
                         "billingId": None, "consentLevels": list(consent)},
            "uniqueIdentifier": f"unique-{n}", "consistentValue": f"session-{n}",
            "someSensitiveValue": f"sensitive-{n}", "notSensitiveValue": f"not-sensitive-{n}"}


class _Emit(beam.DoFn):
    """None -> the given batches as elements, each timestamped as the readers do (batch_element)."""

    def __init__(self, batches):
        self.batches = batches

    def process(self, _):
        for batch in self.batches:
            yield batch_element(batch, fallback=Timestamp(micros=7))


def emitted(p, batches, label="Batches"):
    return p | f"{label}/Start" >> beam.Create([None]) | f"{label}/Emit" >> beam.ParDo(_Emit(batches))


def positions(batch) -> list[str]:
    return [position for position, _ in batch]


def test_a_batch_is_timestamped_with_its_earliest_event_and_unbatch_restores_each_events_time():
    batch = [("f:2", event(1, T + 5000)), ("f:3", event(2, T + 1000)), ("f:4", event(3, "no time")),
             ("f:5", event(4, T + 3000))]
    assert batch_element(batch).timestamp == Timestamp(micros=(T + 1000) * 1000)
    assert batch_element([("f:4", event(3, None))], fallback=Timestamp(micros=7)).timestamp == Timestamp(micros=7)
    with TestPipeline(runner="FnApiRunner") as p:
        batches = emitted(p, [batch])
        stamps = batches | "Batch time" >> beam.Map(lambda b, t=beam.DoFn.TimestampParam: (positions(b), t.micros))
        assert_that(stamps, equal_to([(["f:2", "f:3", "f:4", "f:5"], (T + 1000) * 1000)]), label="batch time")
        pairs = batches | "Pairs" >> Unbatch() | "Pair time" >> beam.Map(
            lambda pair, t=beam.DoFn.TimestampParam: (pair[0], pair[1]["strmMeta"]["nonce"], t.micros))
        assert_that(pairs, equal_to([("f:2", 1, (T + 5000) * 1000), ("f:3", 2, (T + 1000) * 1000),
                                     ("f:4", 3, (T + 1000) * 1000),   # no time of its own: the batch's
                                     ("f:5", 4, (T + 3000) * 1000)]), label="per event")
        events = batches | "Events" >> Unbatch(positions=False) | "Nonce" >> beam.Map(lambda e: e["strmMeta"]["nonce"])
        assert_that(events, equal_to([1, 2, 3, 4]), label="events alone")
        singles = pairs | "Singles" >> SingleBatches() | "Single" >> beam.Map(
            lambda b, t=beam.DoFn.TimestampParam: (len(b), b[0][0], t.micros))
        assert_that(singles, equal_to([(1, "f:2", (T + 5000) * 1000), (1, "f:3", (T + 1000) * 1000),
                                       (1, "f:4", (T + 1000) * 1000), (1, "f:5", (T + 3000) * 1000)]),
                    label="one-element batches keep each pair's time")


def test_batch_of_never_hands_out_an_empty_or_oversized_batch():
    builder = BatchOf(3)
    full = [builder.add(f"f:{i}", event(i, T + i)) for i in range(7)]
    handed = [b for b in full if b is not None] + [builder.flush()]
    assert [len(b.value) for b in handed] == [3, 3, 1]
    assert builder.flush() is None
    assert [b.timestamp for b in handed] == [Timestamp(micros=(T + i) * 1000) for i in (0, 3, 6)]


def test_validate_gives_the_valid_batch_and_one_dead_letter_per_bad_row(simulator_contract):
    mixed = [("in:2", event(1, T)), ("in:3", event(2, T, ref="nobody/nothing/1.0.0")), ("in:4", event(3, T + 1)),
             ("in:5", {"strmMeta": "not a dict"}), ("in:6", event(4, T + 2))]
    all_bad = [("in:7", event(5, T, ref="nobody/nothing/1.0.0"))]
    with TestPipeline(runner="FnApiRunner") as p:
        checked = emitted(p, [mixed, all_bad]) | ValidateEvents({simulator_contract.ref: simulator_contract})
        valid = checked[ValidateEvents.VALID] | "Valid" >> beam.Map(positions)
        assert_that(valid, equal_to([["in:2", "in:4", "in:6"]]), label="one valid batch, in order, none empty")
        dead = checked[ValidateEvents.DEAD_LETTER] | "Dead" >> beam.Map(lambda d: (d["position"], d["stage"]))
        assert_that(dead, equal_to([("in:3", "validate"), ("in:5", "validate"), ("in:7", "validate")]),
                    label="dead letters")


def test_the_graph_emits_no_empty_batches_and_keeps_positions_and_times(simulator_contract, tmp_path):
    config = PipelineConfig(
        name="demo", contract=simulator_contract, input_path=None, input_format=None, consent=None, timestamp=None,
        streams=[StreamSpec.cumulative("demo-1", 1), StreamSpec.cumulative("demo-2", 2)],
        output=str(tmp_path), key_store=str(tmp_path / "ks.sqlite"), kek=f"local://{tmp_path / 'kek.json'}")
    first = [("a", event(1, T + 5000, consent=[0, 1, 2])), ("bad", event(2, T, ref="nobody/nothing/1.0.0")),
             ("b", event(3, T + 1000, consent=[0, 1]))]
    only_bad = [("x", event(4, T, ref="nobody/nothing/1.0.0"))]
    no_stream = [("c", event(5, T + 9000, consent=[]))]
    with TestPipeline(runner="FnApiRunner") as p:
        outputs = privacy_graph(emitted(p, [first, only_bad, no_stream]), config)
        for name, expected in ((ENCRYPTED, [["a", "b"], ["c"]]), ("streams/demo-1", [["a", "b"]]),
                               ("streams/demo-2", [["a"]])):
            assert_that(outputs[name] | f"Positions {name}" >> beam.Map(positions), equal_to(expected),
                        label=f"batches of {name}")
        timed = outputs[ENCRYPTED] | Unbatch() | "Times" >> beam.Map(
            lambda pair, t=beam.DoFn.TimestampParam: (pair[0], t.micros == pair[1]["strmMeta"]["timestamp"] * 1000,
                                                      pair[1]["strmMeta"]["keyLink"] is not None))
        assert_that(timed, equal_to([("a", True, True), ("b", True, True), ("c", True, True)]), label="times")
        dead = (outputs[DEAD_LETTERS] | "Flatten dead" >> beam.Flatten()
                | "Dead" >> beam.Map(lambda d: (d["position"], d["stage"])))
        assert_that(dead, equal_to([("bad", "validate"), ("x", "validate")]), label="dead letters")


def test_read_batches_hold_at_most_the_batch_size(tmp_path, webshop_contract):
    path = tmp_path / "spool.jsonl"
    count = 2 * BATCH_SIZE + 3
    meta = {"eventContractRef": webshop_contract.ref, "consentLevels": [1]}
    stamps = [T + (i * 7919) % 10_000 for i in range(count)]
    path.write_text("".join(json.dumps({"strmMeta": {**meta, "timestamp": stamps[i]}, "transactionId": str(i),
                                        "userId": "7"}) + "\n" for i in range(count)))
    with TestPipeline(runner="FnApiRunner") as p:
        read = p | ReadBatchInput(str(path), BatchInput(webshop_contract))
        sizes = read[ReadBatchInput.EVENTS] | "Sizes" >> beam.Map(
            lambda b, t=beam.DoFn.TimestampParam: (len(b), t.micros == min(e["strmMeta"]["timestamp"]
                                                                       for _, e in b) * 1000))
        assert_that(sizes, equal_to([(BATCH_SIZE, True), (BATCH_SIZE, True), (3, True)]), label="sizes")
        lines = read[ReadBatchInput.EVENTS] | "Lines" >> Unbatch() | "Line" >> beam.Map(
            lambda pair: int(pair[0].rsplit(":", 1)[1]) - 1 == int(pair[1]["transactionId"]))
        assert_that(lines, equal_to([True] * count), label="positions")


def test_the_writer_writes_every_event_of_every_batch(tmp_path):
    def line_event(i, millis):
        return {"strmMeta": {"eventContractRef": "a/b/1.0.0", "timestamp": millis}, "n": i, "pad": "x" * 50}

    day = 86_400_000
    pairs = [(f"f:{i}", line_event(i, 1_700_000_000_000 + (i % 3) * day)) for i in range(200)]
    batches = [pairs[i:i + 30] for i in range(0, 200, 30)]
    with TestPipeline(runner="FnApiRunner") as p:
        made = p | beam.Create(batches)
        _ = made | "Shards" >> WriteJsonlBatches(str(tmp_path / "s"), max_bytes=2000, batches=True)
        _ = made | "Days" >> WriteJsonlBatches(str(tmp_path / "d"), partition_by_day=True, batches=True)
    rows = [json.loads(line) for path in (tmp_path / "s").glob("*.jsonl") for line in path.read_text().splitlines()]
    assert sorted(r["n"] for r in rows) == list(range(200)) and all("f:" not in json.dumps(r) for r in rows)
    assert len(list((tmp_path / "s").glob("*.jsonl"))) > 5
    days = sorted(p.name for p in (tmp_path / "d").iterdir() if not p.name.startswith("."))
    assert days == ["date=2023-11-14", "date=2023-11-15", "date=2023-11-16"]
    for name, expected in zip(days, range(3)):
        files = list((tmp_path / "d" / name).iterdir())
        numbers = sorted(json.loads(line)["n"] for f in files for line in f.read_text().splitlines())
        assert len(files) == 1 and numbers == [n for n in range(200) if n % 3 == expected]
