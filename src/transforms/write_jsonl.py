"""WriteJsonlBatches: one JSON object per line, written to temp files and renamed into place.

    from transforms.write_jsonl import WriteJsonlBatches
    events | WriteJsonlBatches("out/encrypted")                          # one file set per run
    events | WriteJsonlBatches("s3://bucket/shop", partition_by_day=True)  # date=YYYY-MM-DD/
    keys   | WriteJsonlBatches("out/keys", kind="keys")

File names follow the reference's batch exporter:
``<dir>/[date=YYYY-MM-DD/]<window start yyyy-MM-ddTHH:mm:ss>-<kind>-<run uuid>---<shard>.jsonl``.
The window start is the export window's start in a windowed (streaming) run, and the run's start
time in a batch run (the global window). Shards roll at ``max_bytes``. A window without events
writes no file. A reader never sees a half file: files are written as hidden
``.temp-*.jsonl.tmp`` names in the same directory and renamed when their window is complete.
Paths go through Beam's ``FileSystems``, so local paths, gs://, s3:// and azfs:// all work.

Without partitions, each bundle writes its own files (no shuffle of the data: only file names
are grouped). With ``partition_by_day`` the events are grouped by day first, so that a run over
history writes a few files per day rather than one per day per bundle.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import apache_beam as beam
import orjson
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from privacy.keyring import utc_day

DEFAULT_MAX_BYTES = 128 * 1024 * 1024
_GLOBAL_WINDOW = GlobalWindow()


def _label(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def day_partition(event: dict) -> str:
    """``date=YYYY-MM-DD`` of the event's strmMeta.timestamp (UTC), or of its ``createdAt``."""
    meta = event.get("strmMeta")
    millis = meta.get("timestamp") if isinstance(meta, dict) else event.get("createdAt", 0)
    return "date=" + utc_day(millis or 0)  # zero-padded years: date=0999-12-31


class _ShardWriter:
    """Writes lines to temp files under one directory, rolling to a new file at max_bytes."""

    def __init__(self, directory: str, run_id: str, max_bytes: int):
        self.directory = directory
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.finished: list[str] = []
        self._handle = None
        self._path = None
        self._bytes = 0

    def write(self, line: bytes) -> None:
        if self._handle is None:
            self._path = FileSystems.join(self.directory, f".temp-{self.run_id}-{uuid.uuid4().hex}.jsonl.tmp")
            self._handle = FileSystems.create(self._path, mime_type="application/x-ndjson")
            self._bytes = 0
        self._handle.write(line)
        self._bytes += len(line)
        if self._bytes >= self.max_bytes:
            self._finish()

    def _finish(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self.finished.append(self._path)
            self._handle = None

    def close(self) -> list[str]:
        self._finish()
        return self.finished


class _WriteBundleFn(beam.DoFn):
    """Writes each bundle's elements per (window, partition); emits ((label, partition), temp path)."""

    def __init__(self, directory: str, run_id: str, run_label: str, partition, max_bytes: int, counter: str):
        self.directory = directory
        self.run_id = run_id
        self.run_label = run_label
        self.partition = partition
        self.max_bytes = max_bytes
        self.written = Metrics.counter("written", counter)

    def start_bundle(self):
        self.writers = {}

    def _writer(self, window, partition):
        writer = self.writers.get((window, partition))
        if writer is None:
            directory = FileSystems.join(self.directory, partition) if partition else self.directory
            writer = self.writers[(window, partition)] = _ShardWriter(directory, self.run_id, self.max_bytes)
        return writer

    def process(self, element, windowed=beam.DoFn.WindowedValueParam):
        # Windows from the WindowedValue: with WindowParam, Beam would split every element per
        # window and rebuild the call's arguments, which costs more than writing the line.
        for window in windowed.windows:
            self._write(element, window)

    def _write(self, element, window):
        if isinstance(element, tuple):  # grouped by partition: (partition, events)
            partition, events = element
            writer = self._writer(window, partition)
            for event in events:
                writer.write(orjson.dumps(event) + b"\n")
                self.written.inc()
        else:
            partition = self.partition(element) if self.partition else ""
            self._writer(window, partition).write(orjson.dumps(element) + b"\n")
            self.written.inc()

    def finish_bundle(self):
        for (window, partition), writer in self.writers.items():
            label = self.run_label if isinstance(window, GlobalWindow) else _label(window.start.micros / 1e6)
            for path in writer.close():
                yield WindowedValue(((label, partition), path), window.max_timestamp(), [window])


class _WriteGlobalBundleFn(_WriteBundleFn):
    """_WriteBundleFn in the global window (batch): no window parameter, so Beam calls it directly."""

    def process(self, element):
        self._write(element, _GLOBAL_WINDOW)


class _FinalizeFn(beam.DoFn):
    """Renames one window's temp files to their final, numbered names."""

    def __init__(self, directory: str, kind: str, run_id: str):
        self.directory = directory
        self.kind = kind
        self.run_id = run_id

    def process(self, element):
        (label, partition), temp_paths = element
        directory = FileSystems.join(self.directory, partition) if partition else self.directory
        temps = sorted(temp_paths)
        finals = [FileSystems.join(directory, f"{label}-{self.kind}-{self.run_id}---{i}.jsonl") for i in range(len(temps))]
        FileSystems.rename(temps, finals)
        yield from finals


class WriteJsonlBatches(beam.PTransform):
    """Writes dicts as JSONL file sets; returns the PCollection of final file paths."""

    def __init__(self, directory: str, kind: str = "stream", partition_by_day: bool = False,
                 max_bytes: int = DEFAULT_MAX_BYTES, run_id: str | None = None, run_started: float | None = None,
                 counter: str | None = None):
        super().__init__()
        self.directory = directory.rstrip("/")
        self.kind = kind
        self.counter = counter or directory.rstrip("/").rsplit("/", 1)[-1]
        self.partition_by_day = partition_by_day
        self.max_bytes = max_bytes
        self.run_id = run_id or str(uuid.uuid4())
        self.run_label = _label(run_started if run_started is not None else time.time())

    def expand(self, events):
        global_window = isinstance(events.windowing.windowfn, GlobalWindows)
        writer = (_WriteGlobalBundleFn if global_window else _WriteBundleFn)(
            self.directory, self.run_id, self.run_label, day_partition if self.partition_by_day else None,
            self.max_bytes, self.counter)
        if self.partition_by_day:
            events = (events
                      | "KeyByDay" >> beam.Map(lambda event: (day_partition(event), event))
                      | "GroupByDay" >> beam.GroupByKey())
        return (
            events
            | "WriteTempFiles" >> beam.ParDo(writer)
            | "GroupByWindow" >> beam.GroupByKey()
            | "RenameIntoPlace" >> beam.ParDo(_FinalizeFn(self.directory, self.kind, self.run_id))
        )
