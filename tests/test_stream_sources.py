"""ParseMessages: Pub/Sub and Kafka messages (JSON or Avro) -> events with event time, or dead letters."""
from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import apache_beam as beam
import fastavro
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from contracts import load_contract
from contracts.avro import avro_schema
from stream_events import EVENTS, WEBSHOP, at
from transforms.stream_sources import ParseMessages, kafka_message, pubsub_message

CONTRACTS = {WEBSHOP: load_contract(WEBSHOP)}


def avro_bytes(event: dict) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(avro_schema(CONTRACTS[WEBSHOP])), event)
    return out.getvalue()


def parse(messages, payload_format="json"):
    """Run ParseMessages; returns (events as (position, transactionId, event seconds), dead letters)."""
    with TestPipeline(runner="FnApiRunner") as p:
        parsed = p | beam.Create(messages) | ParseMessages(CONTRACTS, payload_format)
        events = parsed[ParseMessages.EVENTS] | "Stamp" >> beam.Map(
            lambda pair, t=beam.DoFn.TimestampParam: (pair[0], pair[1]["transactionId"], int(t.micros // 1_000_000)))
        # fastavro's exception for garbage varies by version: keep the reason, drop the type name
        dead = parsed[ParseMessages.DEAD_LETTER] | beam.Map(
            lambda d: (d["position"], d["stage"], re.sub(r" \(\w+Error\)$", "", d["reason"])))
        yield events, dead


def test_json_and_avro_payloads_become_events_timestamped_with_strm_meta():
    first, second = EVENTS[0], EVENTS[1]
    messages = [
        ("pubsub:1", json.dumps(first).encode(), {}),
        ("pubsub:2", avro_bytes(second), {"Strm-Serialization-Type": "application/x-avro-binary",
                                          "Strm-Schema-Ref": WEBSHOP}),
    ]
    for events, dead in parse(messages):
        assert_that(events, equal_to([("pubsub:1", "1", at("2024-03-09 23:57:10") // 1000),
                                      ("pubsub:2", "2", at("2024-03-09 23:57:40") // 1000)]), label="events")
        assert_that(dead, equal_to([]), label="dead")


def test_avro_by_default_with_the_pipelines_only_contract():
    for events, dead in parse([("kafka:e/0@7", avro_bytes(EVENTS[2]), {})], payload_format="avro"):
        assert_that(events, equal_to([("kafka:e/0@7", "3", at("2024-03-09 23:59:30") // 1000)]), label="events")
        assert_that(dead, equal_to([]), label="dead")


def test_messages_that_are_not_events_are_dead_letters_without_their_content():
    no_time = {**EVENTS[0], "strmMeta": {**EVENTS[0]["strmMeta"], "timestamp": None}}
    messages = [
        ("pubsub:1", b"{not json", {}),
        ("pubsub:2", b"[1, 2]", {}),
        ("pubsub:3", json.dumps(no_time).encode(), {}),
        ("pubsub:4", b"\x00\x01garbage", {"Strm-Serialization-Type": "application/x-avro-binary"}),
        ("pubsub:5", json.dumps(EVENTS[0]).encode(), {"Strm-Serialization-Type": "text/csv"}),
        ("pubsub:6", avro_bytes(EVENTS[0]), {"Strm-Serialization-Type": "application/x-avro-binary",
                                             "Strm-Schema-Ref": "acme/Other/1.0.0"}),
    ]
    for events, dead in parse(messages):
        assert_that(events, equal_to([]), label="events")
        assert_that(dead, equal_to([
            ("pubsub:1", "read", "not valid JSON (column 2)"),
            ("pubsub:2", "read", "an event must be a JSON object with strmMeta"),
            ("pubsub:3", "read", "strmMeta/timestamp is missing or not epoch milliseconds"),
            ("pubsub:4", "read", f"not an Avro record of {WEBSHOP}"),
            ("pubsub:5", "read", "Strm-Serialization-Type is not one of application/json, "
                                 "application/x-avro-binary"),  # the attribute's own text is not echoed
            ("pubsub:6", "read", "an Avro message needs a known contract in Strm-Schema-Ref, got 'acme/Other/1.0.0'"),
        ]), label="dead")


def test_pubsub_and_kafka_records_become_messages():
    message = SimpleNamespace(message_id="17", data=b"{}", attributes={"Strm-Schema-Ref": WEBSHOP})
    assert pubsub_message(message) == ("pubsub:17", b"{}", {"Strm-Schema-Ref": WEBSHOP})
    record = SimpleNamespace(topic="events", partition=3, offset=42, value=b"{}",
                             headers=[SimpleNamespace(key="Strm-Serialization-Type", value=b"application/json")])
    assert kafka_message(record) == ("kafka:events/3@42", b"{}", {"Strm-Serialization-Type": "application/json"})
