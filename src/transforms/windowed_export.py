"""WriteWindowedJsonl: the streaming writer. One file set per export window, late data accounted for.

    from transforms.windowed_export import WriteWindowedJsonl
    written = events | WriteWindowedJsonl(["out/encrypted", "s3://lake/shop/encrypted"], interval=60,
                                          allowed_lateness=60, run_id=run_id, counter="encrypted")
    written[WriteWindowedJsonl.FILES]      # the final paths, one per window, shard and directory
    written[WriteWindowedJsonl.TOO_LATE]   # dead-letter rows: events that came after their window was written

**Windows.** Fixed windows of ``interval`` seconds of event time (the element timestamp, which
the sources set from ``strmMeta.timestamp``), aligned on the epoch, so in UTC. A window's
files are written once, when the watermark passes *window end + allowed lateness*: events up to
``allowed_lateness`` seconds late are in them, and nothing is ever appended to a written window.

**Late data.** An event whose window was already written is *too late*: it is counted in the
Beam counter ``export/too_late_<output>`` ('/' becomes '_'), logged without its values, and
emitted on ``TOO_LATE`` as a dead-letter row (stage ``export``; timestamped with the time it
was rejected, so the dead-letter writer exports it in a current window). Too-late dead letters
themselves are counted and logged only. No event disappears without a trace.

**Files.** ``<dir>/<window start yyyy-MM-ddTHH:mm:ss>-<kind>-<run uuid>---<shard>.jsonl``, one
JSON object per line, written under a hidden temp name and renamed when complete. ``shard`` is
which of ``shards`` writer keys wrote it (``shards=1``: one file per window); a file that
reaches ``max_bytes`` continues in ``---<shard>_1.jsonl``, ``_2``, ... A window without events
writes nothing. Names depend only on the window and the shard, so a retried write replaces its
own file instead of adding a second one.

**How.** Elements are keyed by shard (round robin) and buffered in Beam state in the global
window; one event-time timer per shard fires at the earliest pending window's end + lateness.
This works on every runner with state and timers (DirectRunner, Dataflow, Flink) and, unlike a
windowed GroupByKey, lets the pipeline see the events that arrive too late instead of the runner
dropping them silently.
"""
from __future__ import annotations

import logging
import random
import typing
import uuid
from datetime import datetime, timezone

import apache_beam as beam
import orjson
from apache_beam.coders import coders
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import BagStateSpec, ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindows, TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.dead_letters import dead_letter
from transforms.write_jsonl import DEFAULT_MAX_BYTES

DEFAULT_ALLOWED_LATENESS = 60
_LOG = logging.getLogger(__name__)


def window_label(start_seconds: int) -> str:
    return datetime.fromtimestamp(start_seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def window_start(timestamp: Timestamp, interval: int) -> int:
    """Start (epoch seconds) of the export window holding ``timestamp``."""
    return (timestamp.micros // 1_000_000) // interval * interval


def _position(event: dict) -> str:
    meta = event.get("strmMeta")
    if isinstance(meta, dict):
        return f"nonce:{meta.get('nonce')}"
    if "keyLink" in event:
        return f"keyLink:{event['keyLink']}"
    return str(event.get("position", "unknown"))


class _AssignShardFn(beam.DoFn):
    def __init__(self, shards: int):
        self.shards = shards

    def start_bundle(self):
        self.next = random.randrange(self.shards)

    def process(self, element):
        self.next = (self.next + 1) % self.shards
        yield self.next, element


def _exists(path: str) -> bool:
    try:
        return FileSystems.exists(path)
    except BeamIOError:  # Beam's Azure file system raises for a missing blob instead of answering False
        return False


class _FileSet:
    """The files of one window in one directory: temp files, rolled at max_bytes, then renamed."""

    def __init__(self, directory: str, final_stem: str, max_bytes: int):
        self.directory, self.final_stem, self.max_bytes = directory, final_stem, max_bytes
        self.parts: list[str] = []
        self.handle, self.size = None, 0

    def write(self, line: bytes) -> None:
        if self.handle is None:
            temp = FileSystems.join(self.directory, f".temp-{uuid.uuid4().hex}.jsonl.tmp")
            self.handle, self.size = FileSystems.create(temp, mime_type="application/x-ndjson"), 0
            self.parts.append(temp)
        self.handle.write(line)
        self.size += len(line)
        if self.size >= self.max_bytes:
            self.handle.close()
            self.handle = None

    def commit(self) -> list[str]:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        finals = [FileSystems.join(self.directory, f"{self.final_stem}{'' if i == 0 else f'_{i}'}.jsonl")
                  for i in range(len(self.parts))]
        if finals:
            stale = [final for final in finals if _exists(final)]  # a retried window's own files
            if stale:
                FileSystems.delete(stale)
            FileSystems.rename(self.parts, finals)
        return finals


class _ExportWindowsFn(beam.DoFn):
    """Buffers events per shard until their window is due, then writes it; flags too-late events."""

    BUFFER = BagStateSpec("buffer", coders.TupleCoder((coders.VarIntCoder(), coders.BytesCoder())))  # JSON lines
    CLOSED_UNTIL = ReadModifyWriteStateSpec("closed_until", coders.VarIntCoder())
    NEXT_FLUSH = ReadModifyWriteStateSpec("next_flush", coders.VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, directories: list[str], counters: list[str], interval: int, allowed_lateness: int,
                 kind: str, run_id: str, max_bytes: int, output: str, report_too_late: bool):
        self.directories = directories
        self.interval = interval
        self.lateness = allowed_lateness
        self.kind = kind
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.output = output
        self.report_too_late = report_too_late
        self.written = [Metrics.counter("written", name) for name in counters]
        metric_name = output.replace("/", "_")
        self.files = Metrics.counter("export", f"files_{metric_name}")
        self.too_late = Metrics.counter("export", f"too_late_{metric_name}")

    def _due(self, start: int) -> int:
        return start + self.interval + self.lateness

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                buffer=beam.DoFn.StateParam(BUFFER), closed_until=beam.DoFn.StateParam(CLOSED_UNTIL),
                next_flush=beam.DoFn.StateParam(NEXT_FLUSH), flush=beam.DoFn.TimerParam(FLUSH)):
        _, event = element
        start = window_start(timestamp, self.interval)
        due = self._due(start)
        if due <= (closed_until.read() or 0):
            yield from self._reject(event, start)
            return
        buffer.add((start, orjson.dumps(event) + b"\n"))
        pending = next_flush.read()
        if pending is None or due < pending:
            next_flush.write(due)
            flush.set(Timestamp(seconds=due))

    def _reject(self, event, start: int):
        self.too_late.inc()
        _LOG.warning("%s: an event of window %s came more than %s s after the window ended; its files were "
                     "already written", self.output, window_label(start), self.lateness)
        if not self.report_too_late:
            return
        row = dead_letter(
            _position(event), "export",
            f"{self.output}: too late for export window {window_label(start)} (+{self.interval} s): it arrived "
            f"more than the allowed lateness of {self.lateness} s after the window ended, when the window's "
            "files were already written",
            (event.get("strmMeta") or {}).get("eventContractRef") if isinstance(event, dict) else None)
        # Timestamped at rejection, so that the dead-letter output writes it in a current window.
        yield beam.pvalue.TaggedOutput(WriteWindowedJsonl.TOO_LATE, TimestampedValue(row, row["rejectedAt"] / 1000))

    @on_timer(FLUSH)
    def write_due_windows(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
                          buffer=beam.DoFn.StateParam(BUFFER), closed_until=beam.DoFn.StateParam(CLOSED_UNTIL),
                          next_flush=beam.DoFn.StateParam(NEXT_FLUSH), flush=beam.DoFn.TimerParam(FLUSH)):
        now = fired.micros // 1_000_000
        file_sets: dict[tuple[int, int], _FileSet] = {}
        kept = []
        for start, line in buffer.read():
            if self._due(start) > now:
                kept.append((start, line))
                continue
            for index, directory in enumerate(self.directories):
                file_set = file_sets.get((start, index))
                if file_set is None:
                    stem = f"{window_label(start)}-{self.kind}-{self.run_id}---{key}"
                    file_set = file_sets[(start, index)] = _FileSet(directory, stem, self.max_bytes)
                file_set.write(line)
                self.written[index].inc()
        buffer.clear()
        for item in kept:
            buffer.add(item)
        closed_until.write(max(closed_until.read() or 0, now))
        if kept:
            due = min(self._due(start) for start, _ in kept)
            next_flush.write(due)
            flush.set(Timestamp(seconds=due))
        else:
            next_flush.clear()
        for (start, _), file_set in sorted(file_sets.items()):
            for path in file_set.commit():
                self.files.inc()
                yield path


class WriteWindowedJsonl(beam.PTransform):
    """Writes events as JSONL file sets per export window to one or more directories."""

    FILES = "files"
    TOO_LATE = "too_late"

    def __init__(self, directories: list[str] | str, interval: int, allowed_lateness: int = DEFAULT_ALLOWED_LATENESS,
                 kind: str = "stream", run_id: str | None = None, shards: int = 1,
                 max_bytes: int = DEFAULT_MAX_BYTES, counter: str | None = None,
                 counters: list[str] | None = None, report_too_late: bool = True):
        super().__init__()
        self.directories = [directories] if isinstance(directories, str) else [d.rstrip("/") for d in directories]
        if not self.directories:
            raise ValueError("WriteWindowedJsonl needs at least one directory")
        if interval < 1 or allowed_lateness < 0 or shards < 1:
            raise ValueError("interval must be >= 1 s, allowed_lateness >= 0 s and shards >= 1")
        self.interval, self.allowed_lateness, self.shards = int(interval), int(allowed_lateness), int(shards)
        self.kind = kind
        self.run_id = run_id or str(uuid.uuid4())
        self.max_bytes = max_bytes
        self.counter = counter or self.directories[0].rsplit("/", 1)[-1]
        self.counters = counters or [self.counter] * len(self.directories)
        self.report_too_late = report_too_late

    def expand(self, events):
        writer = _ExportWindowsFn(self.directories, self.counters, self.interval, self.allowed_lateness, self.kind,
                                  self.run_id, self.max_bytes, self.counter, self.report_too_late)
        return (
            events
            | "InGlobalWindow" >> beam.WindowInto(GlobalWindows())
            | "AssignShard" >> beam.ParDo(_AssignShardFn(self.shards)).with_output_types(
                typing.Tuple[int, typing.Any])
            | "WriteDueWindows" >> beam.ParDo(writer).with_outputs(self.TOO_LATE, main=self.FILES)
        )

