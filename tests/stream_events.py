"""Shared by the streaming tests: web shop events over midnight UTC and a TestStream runner.

    from stream_events import EVENTS, in_windows, run_streaming
    out = run_streaming(tmp_path, in_windows([(f"m:{i}", e) for i, e in enumerate(EVENTS)], [t1, t2]))
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream as EventStream
from apache_beam.transforms.window import TimestampedValue

from contracts import load_contract
from pipelines.config import load_config
from pipelines.stream_options import StreamingSourceOptions
from pipelines.streaming import build_streaming_graph
from transforms.stream_sources import ParseMessages

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
FILE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)-(stream|keys|dead-letter)-[0-9a-f-]{36}---(\d+)\.jsonl$")


def at(text: str) -> int:
    """Epoch milliseconds of a UTC time 'YYYY-MM-DD HH:MM:SS'."""
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() * 1000)


def shop_event(n: int, user: str, when: str, consent: list[int], size: str = "M") -> dict:
    return {
        "strmMeta": {"eventContractRef": WEBSHOP, "nonce": 1000 + n, "timestamp": at(when), "keyLink": None,
                     "billingId": None, "consentLevels": consent},
        "transactionId": str(n), "userId": user, "email": f"{user}@example.com", "age": 20 + n, "tshirtSize": size,
        "fullName": f"Name {user}", "phoneNumber": f"555-01{n:02d}", "address": f"{n} Main St",
        "transactionAmount": 10 * n, "items": [n, n + 1], "totalItems": 2, "date": when, "purposeConsent": max(consent or [0]),
    }


# Two users over midnight UTC 2024-03-09/10, in four 60 s windows; nothing in 23:58, two bad events.
EVENTS = [
    shop_event(1, "u1", "2024-03-09 23:57:10", [1, 2]),
    shop_event(2, "u2", "2024-03-09 23:57:40", [1]),
    shop_event(3, "u1", "2024-03-09 23:59:30", [1, 2]),      # same day, another window: same key
    shop_event(4, "u2", "2024-03-09 23:59:50", [], size="XXL"),  # dead letter: regex
    shop_event(5, "u1", "2024-03-10 00:00:05", [2]),         # next UTC day: another key
    shop_event(6, "u2", "2024-03-10 00:00:30", [1, 2]),
    shop_event(7, "u1", "2024-03-10 00:02:15", []),
    {**shop_event(8, "", "2024-03-10 00:02:20", [1]), "userId": ""},  # dead letter: empty key field
]


def config_for(root: Path):
    return load_config(None, {"output": str(root / "out"), "key_store": f"sqlite://{root / 'keys.sqlite'}",
                              "kek": f"local://{root / 'kek.json'}"})


class _Messages(beam.PTransform):
    """A TestStream of gateway messages, parsed as Pub/Sub or Kafka messages would be."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def expand(self, pbegin):
        return pbegin | self.stream | ParseMessages({WEBSHOP: load_contract(WEBSHOP)})


def message(position: str, event: dict) -> TimestampedValue:
    return TimestampedValue((position, json.dumps(event).encode(), {}), event["strmMeta"]["timestamp"] / 1000)


def run_streaming(root: Path, stream, exporters=(), flags=(), exports=None) -> Path:
    """Run the streaming graph on the DirectRunner; ``exports`` (pipelines.connectors.Exports) sets
    the connectors' Beam options. Returns the output root."""
    config = config_for(root)
    options = PipelineOptions(["--streaming", *flags])
    if exports is not None:
        exports.apply(options, environ={})
        exporters = exports.exporters
    pipeline = beam.Pipeline(options=options)
    build_streaming_graph(pipeline, config, options.view_as(StreamingSourceOptions), list(exporters),
                          source=_Messages(stream))
    pipeline.run().wait_until_finish()
    return root / "out"


def in_windows(events_with_positions, watermark_steps) -> EventStream:
    """A TestStream adding each event, then moving the watermark past each step (epoch seconds)."""
    stream = EventStream().advance_watermark_to(at("2024-03-09 23:50:00") / 1000)
    pending = sorted(events_with_positions, key=lambda pair: pair[1]["strmMeta"]["timestamp"])
    for step in watermark_steps:
        batch = [pair for pair in pending if pair[1]["strmMeta"]["timestamp"] / 1000 < step]
        pending = [pair for pair in pending if pair not in batch]
        if batch:
            stream = stream.add_elements([message(position, event) for position, event in batch])
        stream = stream.advance_watermark_to(step)
    if pending:
        stream = stream.add_elements([message(position, event) for position, event in pending])
    return stream.advance_watermark_to_infinity()
