"""Privacy-stream rules, and the notebook's cumulative-1 and cumulative-2 examples through the graph."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

from pipelines.config import PipelineConfig
from pipelines.graph import ENCRYPTED, privacy_graph
from transforms.event_batches import Unbatch
from privacy.daead import key_id_of
from privacy.streams import CUMULATIVE, StreamSpec
from tests.conftest import SIMULATOR

LEVELS = st.lists(st.integers(0, 6), max_size=6, unique=True)


@given(consent=LEVELS, level=st.integers(0, 6))
def test_cumulative_rule(consent, level):
    spec = StreamSpec.cumulative("c", level)
    assert spec.admits(consent) == (bool(consent) and max(consent) >= level)
    assert all(spec.decrypts(p) == (p <= level) for p in range(8))


@given(consent=LEVELS, wanted=st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True))
def test_granular_rule(consent, wanted):
    spec = StreamSpec.granular("g", wanted)
    assert spec.admits(consent) == set(wanted).issubset(consent)
    assert all(spec.decrypts(p) == (p in wanted) for p in range(8))


def test_reference_granular_example_leaves_level_3_encrypted():
    spec = StreamSpec.granular("demo-0-1-2", [0, 1, 2])
    assert spec.admits([0, 1, 2, 3]) and not spec.decrypts(3) and not spec.admits([0, 1])


def test_stream_spec_checks():
    with pytest.raises(ValueError, match="exactly one level"):
        StreamSpec("x", CUMULATIVE, (1, 2))
    with pytest.raises(ValueError, match="strmMeta cannot be masked"):
        StreamSpec.granular("x", [1], masked_fields=["strmMeta"])
    with pytest.raises(ValueError, match="lowercase"):
        StreamSpec.granular("Bad Name", [1])


def notebook_event(consent, n=37):
    return {"strmMeta": {"eventContractRef": SIMULATOR, "nonce": 485472365, "timestamp": 1673610238506,
                         "keyLink": None, "billingId": None, "consentLevels": consent},
            "uniqueIdentifier": f"unique-{n}", "consistentValue": f"session-{600 + n}",
            "someSensitiveValue": f"sensitive-{n}", "notSensitiveValue": f"not-sensitive-{n}"}


def test_notebook_cumulative_1_and_2_examples(simulator_contract, tmp_path):
    config = PipelineConfig(
        name="demo", contract=simulator_contract, input_path=None, input_format=None, consent=None, timestamp=None,
        streams=[StreamSpec.cumulative("demo-1", 1), StreamSpec.cumulative("demo-2", 2)],
        output=str(tmp_path), key_store=str(tmp_path / "ks.sqlite"), kek=f"local://{tmp_path / 'kek.json'}")
    inputs = [("a", notebook_event([0, 1, 2], 37)), ("b", notebook_event([], 38)), ("c", notebook_event([0], 39)),
              ("d", notebook_event([1], 40))]

    def check_encrypted(events):
        assert len(events) == 4
        for event in events:
            for field in ("uniqueIdentifier", "consistentValue", "someSensitiveValue"):
                assert key_id_of(event[field]) is not None
            assert event["notSensitiveValue"].startswith("not-sensitive-")

    def check_cumulative(level):
        def check(events):
            by_id = {e["notSensitiveValue"]: e for e in events}
            expected = {"not-sensitive-37", "not-sensitive-40"} if level == 1 else {"not-sensitive-37"}
            assert set(by_id) == expected  # no consent, or too little: absent
            event = by_id["not-sensitive-37"]
            assert event["strmMeta"]["consentLevels"] == [0, 1, 2] and event["strmMeta"]["nonce"] == 485472365
            assert event["uniqueIdentifier"] == "unique-37"
            if level == 1:
                assert key_id_of(event["consistentValue"]) is not None
            else:
                assert event["consistentValue"] == "session-637"
            assert key_id_of(event["someSensitiveValue"]) is not None  # level 3 stays encrypted
            assert event["notSensitiveValue"] == "not-sensitive-37"
        return check

    with TestPipeline(runner="FnApiRunner") as p:
        outputs = privacy_graph(p | beam.Create([inputs]), config)   # one batch of the four pairs
        events = {name: outputs[name] | f"Unbatch {name}" >> Unbatch(positions=False)
                  for name in (ENCRYPTED, "streams/demo-1", "streams/demo-2")}
        assert_that(events[ENCRYPTED], check_encrypted, label="encrypted")
        assert_that(events["streams/demo-1"], check_cumulative(1), label="cumulative 1")
        assert_that(events["streams/demo-2"], check_cumulative(2), label="cumulative 2")
        assert_that(outputs["keys"] | beam.Map(lambda row: row["day"]), equal_to(["2023-01-13"] * 4), label="keys")
