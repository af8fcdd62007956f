"""ReadBatchInput: CSV (with header) or JSONL files -> (position, event) pairs with strmMeta.

    from transforms.read_input import ReadBatchInput
    read = p | ReadBatchInput("data/*.csv", batch_input, input_format="csv")
    read[ReadBatchInput.EVENTS]        # (position, event), timestamped with strmMeta.timestamp
    read[ReadBatchInput.DEAD_LETTER]   # malformed rows and values that do not convert

Files are matched with Beam's ``fileio`` (local paths, gs://, s3://, azfs://) and parsed one file
per element, so positions are exact (``file:line``) and quoted CSV values may span lines. A
pattern that matches nothing fails the run at once with a clear message.
"""
from __future__ import annotations

import csv
import io
import json
import re

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.metrics import Metrics

from contracts.batch_input import BatchInput
from contracts.events import EventError
from transforms.dead_letters import DEAD_LETTER, dead_letter

FORMATS = ("csv", "jsonl")
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape


def infer_format(pattern: str) -> str:
    lowered = pattern.lower()
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "csv"


def csv_rows(text, path: str):
    """(position, row dict, None) per CSV row of a text stream, or (position, None, problem)."""
    reader = csv.reader(text)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as exc:
        yield f"{path}:1", None, f"unreadable CSV header: {exc}"
        return
    width = len(header)
    line = reader.line_num
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield f"{path}:{line + 1}", None, f"malformed CSV row: {type(exc).__name__}"
            line = reader.line_num
            continue
        position = f"{path}:{line + 1}"
        line = reader.line_num
        if not values:
            continue
        if len(values) != width:
            yield position, None, f"row has {len(values)} columns, the header has {width}"
        elif any(_UNDECODABLE.search(v) for v in values):
            yield position, None, "row is not valid UTF-8"
        else:
            yield position, dict(zip(header, values)), None


def jsonl_rows(text, path: str):
    """(position, object, None) per JSON line of a text stream, or (position, None, problem)."""
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        position = f"{path}:{number}"
        if _UNDECODABLE.search(line):
            yield position, None, "line is not valid UTF-8"
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield position, None, f"not valid JSON (column {getattr(exc, 'colno', '?')})"
            continue
        if not isinstance(row, dict):
            yield position, None, "a JSONL line must be a JSON object"
        else:
            yield position, row, None


class _ParseRowsFn(beam.DoFn):
    def __init__(self, batch_input: BatchInput, input_format: str):
        self.batch_input = batch_input
        self.input_format = input_format
        self.rows_read = Metrics.counter("pipeline", "rows_read")
        self.rejected = Metrics.counter("pipeline", "dead_letter_read")

    def _reject(self, position: str, reason: str):
        self.rejected.inc()
        return beam.pvalue.TaggedOutput(
            DEAD_LETTER, dead_letter(position, "read", reason, self.batch_input.contract.ref))

    def _convert(self, position: str, row: dict):
        try:
            event = self.batch_input.to_event(row)
        except EventError as err:
            return self._reject(position, err.reason)
        return beam.window.TimestampedValue((position, event), event["strmMeta"]["timestamp"] / 1000)

    def process(self, readable_file):
        path = readable_file.metadata.path
        with readable_file.open() as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
            rows = csv_rows(text, path) if self.input_format == "csv" else jsonl_rows(text, path)
            for position, row, problem in rows:
                self.rows_read.inc()
                yield self._reject(position, problem) if problem else self._convert(position, row)


class ReadBatchInput(beam.PTransform):
    """Reads CSV/JSONL files into (position, event) pairs; see the module docstring."""

    EVENTS = "events"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, pattern: str, batch_input: BatchInput, input_format: str | None = None):
        super().__init__()
        self.pattern = pattern
        self.batch_input = batch_input
        self.input_format = input_format or infer_format(pattern)
        if self.input_format not in FORMATS:
            raise ValueError(f"input format '{self.input_format}' is not one of {', '.join(FORMATS)}")

    def expand(self, pbegin):
        return (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            | "OpenFiles" >> fileio.ReadMatches()
            | "ParseRows" >> beam.ParDo(_ParseRowsFn(self.batch_input, self.input_format)).with_outputs(
                DEAD_LETTER, main=self.EVENTS)
        )
