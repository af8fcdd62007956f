"""ReadBatchInput: CSV (with header) or JSONL files -> batches of (position, event) pairs with strmMeta.

    from transforms.read_input import ReadBatchInput
    read = p | ReadBatchInput("data/*.csv", batch_input, input_format="csv")
    read[ReadBatchInput.EVENTS]        # batches: [(position, event), ...] (transforms.event_batches)
    read[ReadBatchInput.DEAD_LETTER]   # malformed rows and values that do not convert, one per row

Each file range's events leave in batches of at most ``event_batches.BATCH_SIZE``, in file order,
each timestamped with the earliest ``strmMeta.timestamp`` in it (``Unbatch`` gives every event its
own again); dead letters stay one element per row.

Files are matched with Beam's ``fileio`` (local paths, gs://, s3://, azfs://). A file larger than
``split_bytes`` (default 8 MiB, uncompressed) is cut into ranges of whole records by one quick
pass of the same CSV reader, and the ranges are spread over the workers (a Reshuffle of a few
small elements), so several workers parse, encrypt and write one big file; positions stay exact
(``file:line``) and quoted CSV values may still span lines. A pattern that matches nothing fails
the run at once with a clear message.

No row stops a run: a row that cannot be read, parsed or converted is a dead letter (stage
``read``) with its position and a reason that names contract fields only; a catch-all behind
the specific checks makes any other failure of a row one too (its exception's class, never its
text). A UTF-8 byte order mark is dropped. A CSV header that names a column twice is one dead
letter for the file (position ``file:1``, counted as one row read) and the file's rows are not
read: which of the two columns was meant cannot be known, and guessing could put a value in the
wrong field.
"""
from __future__ import annotations

import csv
import io
import itertools
import re

import apache_beam as beam
import orjson
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressedFile
from apache_beam.metrics import Metrics

from contracts.batch_input import BatchInput
from contracts.events import EventError
from transforms import read_progress
from transforms.dead_letters import DEAD_LETTER, FailureLog, dead_letter
from transforms.event_batches import BATCH_SIZE, BatchOf
from transforms.worker_tuning import tune_worker

FORMATS = ("csv", "jsonl")
DEFAULT_SPLIT_BYTES = 8 * 1024 * 1024
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8, kept by surrogateescape
BOM = "\ufeff"


def infer_format(pattern: str) -> str:
    lowered = pattern.lower()
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    return "csv"


def _csv_problem(exc: csv.Error) -> str:
    """The reader's complaint in words of our own (its messages are templates, but say it safely)."""
    message = str(exc)
    if message.startswith("field larger than field limit"):
        return f"malformed CSV row: a value is longer than {csv.field_size_limit():,} characters"
    if "NUL" in message:
        return "malformed CSV row: it holds a NUL character"
    return "malformed CSV row: quotes or line ends do not pair up"


def duplicate_column(header: list[str], field_names=frozenset()) -> str | None:
    """The problem of a CSV header that names a column twice, or None; names only contract fields."""
    first: dict[str, int] = {}
    for number, name in enumerate(header, 1):
        if name in first:
            named = f" '{name}'" if name in field_names else ""
            return (f"the CSV header has the column name{named} twice (columns {first[name]} and {number}); "
                    "the file's rows are not read")
        first[name] = number
    return None


def csv_rows(text, path: str, header: list[str] | None = None, first_line: int = 0, records: int | None = None,
             field_names=frozenset()):
    """(position, row dict, None) per CSV row of a text stream, or (position, None, problem).

    A whole file by default. A range of one (see ``_SplitFilesFn``): ``text`` positioned at the
    range's start, the file's ``header``, the lines before the range and the number of records.
    A UTF-8 byte order mark before the header is dropped; a header with a column name twice is
    one problem for the whole file (position ``file:1``; ``field_names``: the contract's fields,
    the only names a problem may show).
    """
    reader = csv.reader(text)
    if header is None:
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield f"{path}:1", None, f"unreadable CSV header: {_csv_problem(exc)}"
            return
        if header and header[0].startswith(BOM):
            header[0] = header[0][1:]
        problem = duplicate_column(header, field_names)
        if problem:
            yield f"{path}:1", None, problem
            return
    width = len(header)
    line = first_line + reader.line_num
    remaining = -1 if records is None else records
    while remaining:
        remaining -= 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield f"{path}:{line + 1}", None, _csv_problem(exc)
            line = first_line + reader.line_num
            continue
        position = f"{path}:{line + 1}"
        line = first_line + reader.line_num
        if not values:
            continue
        if len(values) != width:
            yield position, None, f"row has {len(values)} columns, the header has {width}"
        elif _UNDECODABLE.search("".join(values)):  # one search over the row, not one per value
            yield position, None, "row is not valid UTF-8"
        else:
            yield position, dict(zip(header, values)), None


def jsonl_rows(text, path: str, first_line: int = 0, records: int | None = None):
    """(position, object, None) per JSON line of a text stream, or (position, None, problem).

    Lines parse with orjson: strict JSON (no NaN or Infinity, no lone surrogates, numbers that
    fit a double), nesting at most 1024 deep; a UTF-8 byte order mark on line 1 is dropped.
    """
    lines = text if records is None else itertools.islice(text, records)
    for number, line in enumerate(lines, start=first_line + 1):
        if number == 1 and line.startswith(BOM):
            line = line[1:]
        if not line.strip():
            continue
        position = f"{path}:{number}"
        if _UNDECODABLE.search(line):
            yield position, None, "line is not valid UTF-8"
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield position, None, f"not valid JSON (column {exc.colno})"
            continue
        if row.__class__ is not dict:
            yield position, None, "a JSONL line must be a JSON object"
        else:
            yield position, row, None


def _text(raw):
    return io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")


def _record_ranges(readable_file, input_format: str, split_bytes: int):
    """(start, first line, records, header) ranges of whole records, each about split_bytes long.

    One pass of the same reader the parser uses (CSV records may span lines), reading lines with
    readline so that ``tell()`` gives each cut's position. None: parse the file in one piece.
    """
    if readable_file.metadata.size_in_bytes <= split_bytes:
        return None
    with readable_file.open() as raw:
        if isinstance(raw, CompressedFile) or not raw.seekable():
            return None
        text = _text(raw)
        lines = iter(text.readline, "")
        header = None
        if input_format == "csv":
            reader = csv.reader(lines)
            try:
                header = next(reader)
            except (StopIteration, csv.Error):
                return None  # the parser reports it
            if header and header[0].startswith(BOM):
                header[0] = header[0][1:]
            if duplicate_column(header):
                return None  # the parser reports it, once for the file
            step, line_count = reader.__next__, lambda: reader.line_num
        else:
            counted = [0]

            def step():
                next(lines)
                counted[0] += 1

            line_count = lambda: counted[0]  # noqa: E731
        ranges = []
        start, first_line, records = text.tell(), line_count(), 0
        cut_at = raw.tell() + split_bytes
        while True:
            if not records & 1023 and records and raw.tell() >= cut_at:
                cut = text.tell()
                ranges.append((start, first_line, records, header))
                start, first_line, records = cut, line_count(), 0
                cut_at = raw.tell() + split_bytes
            try:
                step()
            except StopIteration:
                break
            except csv.Error:
                pass  # a malformed record is still one record: the parser reports it
            records += 1
        if records or not ranges:
            ranges.append((start, first_line, records, header))
        return ranges


class _SplitFilesFn(beam.DoFn):
    """A file -> (file, start, first line, records, header) ranges; (file, None, ...) = whole file."""

    def __init__(self, input_format: str, split_bytes: int):
        self.input_format = input_format
        self.split_bytes = split_bytes

    def process(self, readable_file):
        ranges = _record_ranges(readable_file, self.input_format, self.split_bytes)
        if not ranges:
            yield readable_file, None, 0, None, None
            return
        for start, first_line, records, header in ranges:
            yield readable_file, start, first_line, records, header


class _ParseRowsFn(beam.DoFn):
    def __init__(self, batch_input: BatchInput, input_format: str, batch_size: int = BATCH_SIZE):
        self.batch_input = batch_input
        self.input_format = input_format
        self.batch_size = batch_size
        self.rows_read = Metrics.counter("pipeline", "rows_read")
        self.rejected = Metrics.counter("pipeline", "dead_letter_read")

    def setup(self):
        tune_worker()
        self.failures = FailureLog("read")
        self.field_names = frozenset(node.name for node in self.batch_input.contract.nodes)

    def _reject(self, position: str, reason: str):
        self.rejected.inc()
        return beam.pvalue.TaggedOutput(
            DEAD_LETTER, dead_letter(position, "read", reason, self.batch_input.contract.ref))

    def process(self, file_range, timestamp=beam.DoFn.TimestampParam):
        readable_file, start, first_line, records, header = file_range
        path = readable_file.metadata.path
        to_event = self.batch_input.to_event
        batch = BatchOf(self.batch_size, fallback=timestamp)
        add = batch.add
        count = 0
        with readable_file.open() as raw:
            text = _text(raw)
            if start:
                text.seek(start)
            read_at = start or 0   # the progress display's bytes (transforms.read_progress)
            if self.input_format == "csv":
                rows = csv_rows(text, path, header, first_line, records, self.field_names)
            else:
                rows = jsonl_rows(text, path, first_line, records)
            try:
                for position, row, problem in rows:
                    count += 1
                    if not count % read_progress.EVERY:
                        read_at = read_progress.advance(read_progress.EVERY, raw, read_at)
                    if problem:
                        yield self._reject(position, problem)
                        continue
                    try:
                        event = to_event(row)
                    except EventError as err:
                        yield self._reject(position, err.reason)
                        continue
                    except Exception as exc:  # the catch-all: class and stage, never the text
                        yield self._reject(position, self.failures.record(exc, position))
                        continue
                    # An event whose timestamp is not a time (a spool line's own) goes on in the
                    # batch too, without a time of its own: the contract check rejects it.
                    full = add(position, event)
                    if full is not None:
                        yield full
                rest = batch.flush()
                if rest is not None:
                    yield rest
            finally:
                self.rows_read.inc(count)
                read_progress.advance(count % read_progress.EVERY, raw, read_at)


class ReadBatchInput(beam.PTransform):
    """Reads CSV/JSONL files into batches of (position, event) pairs; see the module docstring."""

    EVENTS = "events"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, pattern: str, batch_input: BatchInput, input_format: str | None = None,
                 split_bytes: int = DEFAULT_SPLIT_BYTES):
        super().__init__()
        self.pattern = pattern
        self.batch_input = batch_input
        self.split_bytes = split_bytes
        self.input_format = input_format or infer_format(pattern)
        if self.input_format not in FORMATS:
            raise ValueError(f"input format '{self.input_format}' is not one of {', '.join(FORMATS)}")

    def expand(self, pbegin):
        return (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(self.pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            | "OpenFiles" >> fileio.ReadMatches()
            | "SplitFiles" >> beam.ParDo(_SplitFilesFn(self.input_format, self.split_bytes))
            | "SpreadRanges" >> beam.Reshuffle()
            | "ParseRows" >> beam.ParDo(_ParseRowsFn(self.batch_input, self.input_format)).with_outputs(
                DEAD_LETTER, main=self.EVENTS)
        )
