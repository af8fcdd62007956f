"""The streaming writers: event-time export windows for events, processing-time batches for keys and dead letters.

    from transforms.windowed_export import WriteProcessingTimeJsonl, WriteWindowedJsonl
    written = admitted | WriteWindowedJsonl(["out/encrypted", "s3://lake/shop/encrypted"], interval=60,
                                            allowed_lateness=60, run_id=run_id, counter="encrypted")
    written[WriteWindowedJsonl.FILES]         # the final paths, one per window, shard and directory
    written[WriteWindowedJsonl.AFTER_CLOSE]   # dead letters: events that reached a window already written
    rows | WriteProcessingTimeJsonl("out/keys", interval=60, kind="keys", run_id=run_id, counter="keys")

**Event-time windows** (``WriteWindowedJsonl``: encrypted/, streams/<name>/, their exporters).
Fixed windows of ``interval`` seconds of event time (the element timestamp, which the sources
set from ``strmMeta.timestamp``), aligned on the epoch, so in UTC. A window's files are written
once, when the watermark passes *window end + allowed lateness* (its close). Which events are in
time is not decided here but once per event, before the fan-out, by
``transforms.lateness.AdmitInTime``; its pending timers hold the watermark back, so every event it
admitted reaches this writer before the window is written. An event that nevertheless reaches a
window already written (a runner that does not hold the watermark for timers, or a writer used
without AdmitInTime) is not appended and not dropped: it becomes a dead letter on ``AFTER_CLOSE``
(stage ``export``) and is counted in ``export/after_close_<output>``.

**Processing-time batches** (``WriteProcessingTimeJsonl``: keys/, dead_letter/, key exporters).
Rows are never too late for these: a writer collects the rows that reach it and writes them when
the wall-clock interval of ``interval`` seconds in which the first of them arrived has ended (and
at the end of a drained or finished run: the watermark reaching the end of time). The file is
named after that interval's UTC start; a writer never uses one name twice (a later batch of the
same interval takes the next interval's name). Each row carries the time it was made
(``createdAt`` for keys, ``rejectedAt`` for dead letters).

**Files.** ``<dir>/<window or interval start yyyy-MM-ddTHH:mm:ss>-<kind>-<run uuid>---<shard>.jsonl``,
one JSON object per line, written under a hidden temp name and renamed when complete. ``shard`` is
which of ``shards`` writer keys wrote it (``shards=1``: one file per window); a file that reaches
``max_bytes`` continues in ``---<shard>_1.jsonl``, ``_2``, ... A window or interval without rows
writes nothing. Names depend only on the window and the shard, so a retried write replaces its
own file instead of adding a second one.

**How.** Elements are keyed by shard (round robin) and buffered in Beam state in the global
window; event-time timers write windows when due, processing-time timers write batches. This
works on every runner with state and timers (DirectRunner, Dataflow, Flink).
"""
from __future__ import annotations

import logging
import random
import time
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
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.timestamp import Timestamp

from transforms.dead_letters import dead_letter
from transforms.write_jsonl import DEFAULT_MAX_BYTES, create_output_file

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
            self.handle, self.size = create_output_file(temp), 0   # local: owner-only (0600)
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



def _write_file_sets(batches: dict[int, list[bytes]], directories: list[str], stem: typing.Callable[[int], str],
                     max_bytes: int, written: list) -> list[str]:
    """Write each batch (label start -> JSON lines) to every directory; returns the final paths."""
    paths = []
    for start in sorted(batches):
        for index, directory in enumerate(directories):
            file_set = _FileSet(directory, stem(start), max_bytes)
            for line in batches[start]:
                file_set.write(line)
            written[index].inc(len(batches[start]))
            paths.extend(file_set.commit())
    return paths


def _just_after(seconds: int) -> Timestamp:
    """1 µs after a close time: a writer fires once the watermark has passed it, after AdmitInTime's tick at it."""
    return Timestamp(micros=seconds * 1_000_000 + 1)


class _ExportWindowsFn(beam.DoFn):
    """Buffers admitted events per shard until their window closes, then writes it."""

    BUFFER = BagStateSpec("buffer", coders.TupleCoder((coders.VarIntCoder(), coders.BytesCoder())))  # JSON lines
    CLOSED_UNTIL = ReadModifyWriteStateSpec("closed_until", coders.VarIntCoder())
    NEXT_FLUSH = ReadModifyWriteStateSpec("next_flush", coders.VarIntCoder())
    FLUSH = TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, directories: list[str], counters: list[str], interval: int, allowed_lateness: int,
                 kind: str, run_id: str, max_bytes: int, output: str):
        self.directories = directories
        self.interval = interval
        self.lateness = allowed_lateness
        self.kind = kind
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.output = output
        self.written = [Metrics.counter("written", name) for name in counters]
        metric_name = output.replace("/", "_")
        self.files = Metrics.counter("export", f"files_{metric_name}")
        self.after_close = Metrics.counter("export", f"after_close_{metric_name}")

    def _close(self, start: int) -> int:
        return start + self.interval + self.lateness

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                buffer=beam.DoFn.StateParam(BUFFER), closed_until=beam.DoFn.StateParam(CLOSED_UNTIL),
                next_flush=beam.DoFn.StateParam(NEXT_FLUSH), flush=beam.DoFn.TimerParam(FLUSH)):
        _, event = element
        start = window_start(timestamp, self.interval)
        close = self._close(start)
        if close <= (closed_until.read() or 0):
            yield self._reached_after_close(event, start)
            return
        buffer.add((start, orjson.dumps(event) + b"\n"))
        pending = next_flush.read()
        if pending is None or close < pending:
            next_flush.write(close)
            flush.set(_just_after(close))

    def _reached_after_close(self, event, start: int):
        self.after_close.inc()
        _LOG.error("%s: an admitted event of window %s reached the writer after the window was written; it is a "
                    "dead letter, not in this output", self.output, window_label(start))
        row = dead_letter(
            _position(event), "export",
            f"{self.output}: reached the writer after export window {window_label(start)} (+{self.interval} s) "
            "was written, although the lateness decision had admitted it (the runner did not hold the watermark "
            "for the decision's timers); it is in no file of this output",
            (event.get("strmMeta") or {}).get("eventContractRef") if isinstance(event, dict) else None)
        return beam.pvalue.TaggedOutput(WriteWindowedJsonl.AFTER_CLOSE, {**row, "window": window_label(start),
                                                                          "outputs": [self.output]})

    @on_timer(FLUSH)
    def write_due_windows(self, key=beam.DoFn.KeyParam, fired=beam.DoFn.TimestampParam,
                          buffer=beam.DoFn.StateParam(BUFFER), closed_until=beam.DoFn.StateParam(CLOSED_UNTIL),
                          next_flush=beam.DoFn.StateParam(NEXT_FLUSH), flush=beam.DoFn.TimerParam(FLUSH)):
        now = (fired.micros - 1) // 1_000_000   # the close time whose timer fired
        due: dict[int, list[bytes]] = {}
        kept = []
        for start, line in buffer.read():
            if self._close(start) > now:
                kept.append((start, line))
            else:
                due.setdefault(start, []).append(line)
        buffer.clear()
        for item in kept:
            buffer.add(item)
        closed_until.write(max(closed_until.read() or 0, now))
        if kept:
            close = min(self._close(start) for start, _ in kept)
            next_flush.write(close)
            flush.set(_just_after(close))
        else:
            next_flush.clear()
        paths = _write_file_sets(due, self.directories,
                                 lambda start: f"{window_label(start)}-{self.kind}-{self.run_id}---{key}",
                                 self.max_bytes, self.written)
        self.files.inc(len(paths))
        yield from paths


class _ProcessingTimeBatchesFn(beam.DoFn):
    """Buffers rows per shard and writes them when the wall-clock interval of the first one has ended."""

    BUFFER = BagStateSpec("buffer", coders.BytesCoder())                              # JSON lines
    OPENED = ReadModifyWriteStateSpec("opened", coders.VarIntCoder())    # name (interval start) of this batch
    LAST = ReadModifyWriteStateSpec("last", coders.VarIntCoder())        # name of the last batch written
    FLUSH = TimerSpec("flush", TimeDomain.REAL_TIME)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(self, directories: list[str], counters: list[str], interval: int, kind: str, run_id: str,
                 max_bytes: int, output: str):
        self.directories = directories
        self.interval = interval
        self.kind = kind
        self.run_id = run_id
        self.max_bytes = max_bytes
        self.written = [Metrics.counter("written", name) for name in counters]
        self.files = Metrics.counter("export", f"files_{output.replace('/', '_')}")

    def process(self, element, buffer=beam.DoFn.StateParam(BUFFER), opened=beam.DoFn.StateParam(OPENED),
                last=beam.DoFn.StateParam(LAST), flush=beam.DoFn.TimerParam(FLUSH),
                end=beam.DoFn.TimerParam(END)):
        _, row = element
        if opened.read() is None:
            start = int(time.time()) // self.interval * self.interval
            previous = last.read()
            if previous is not None and start <= previous:   # a clock behind the last batch's: never reuse a name
                start = previous + self.interval
            opened.write(start)
            flush.set(Timestamp(seconds=start + self.interval))
            end.set(GlobalWindow().max_timestamp())
        buffer.add(orjson.dumps(row) + b"\n")

    @on_timer(FLUSH)
    def write_when_the_interval_ended(self, key=beam.DoFn.KeyParam, buffer=beam.DoFn.StateParam(BUFFER),
                                      opened=beam.DoFn.StateParam(OPENED), last=beam.DoFn.StateParam(LAST),
                                      flush=beam.DoFn.TimerParam(FLUSH), end=beam.DoFn.TimerParam(END)):
        yield from self._write(key, buffer, opened, last, flush, end)

    @on_timer(END)
    def write_at_the_end(self, key=beam.DoFn.KeyParam, buffer=beam.DoFn.StateParam(BUFFER),
                         opened=beam.DoFn.StateParam(OPENED), last=beam.DoFn.StateParam(LAST),
                         flush=beam.DoFn.TimerParam(FLUSH), end=beam.DoFn.TimerParam(END)):
        yield from self._write(key, buffer, opened, last, flush, end)

    def _write(self, key, buffer, opened, last, flush, end):
        start = opened.read()
        if start is None:
            return
        lines = list(buffer.read())
        buffer.clear()
        opened.clear()
        last.write(start)
        flush.clear()
        end.clear()
        paths = _write_file_sets({start: lines} if lines else {}, self.directories,
                                 lambda s: f"{window_label(s)}-{self.kind}-{self.run_id}---{key}",
                                 self.max_bytes, self.written)
        self.files.inc(len(paths))
        yield from paths


class _ShardedJsonlWriter(beam.PTransform):
    """What both writers share: directories, file names, shards; elements keyed by shard in the global window."""

    def __init__(self, directories: list[str] | str, interval: int, kind: str, run_id: str | None, shards: int,
                 max_bytes: int, counter: str | None, counters: list[str] | None):
        super().__init__()
        directories = [directories] if isinstance(directories, str) else list(directories)
        if not directories:
            raise ValueError("a writer needs at least one directory")
        if interval < 1 or shards < 1:
            raise ValueError("interval must be >= 1 s and shards >= 1")
        self.directories = [d.rstrip("/") for d in directories]
        self.interval, self.shards = int(interval), int(shards)
        self.kind = kind
        self.run_id = run_id or str(uuid.uuid4())
        self.max_bytes = max_bytes
        self.counter = counter or self.directories[0].rsplit("/", 1)[-1]
        self.counters = counters or [self.counter] * len(self.directories)

    def _by_shard(self, pcoll):
        return (pcoll
                | "InGlobalWindow" >> beam.WindowInto(GlobalWindows())
                | "AssignShard" >> beam.ParDo(_AssignShardFn(self.shards)).with_output_types(
                    typing.Tuple[int, typing.Any]))


class WriteWindowedJsonl(_ShardedJsonlWriter):
    """Writes admitted events as JSONL file sets per event-time export window to one or more directories."""

    FILES = "files"
    AFTER_CLOSE = "after_close"

    def __init__(self, directories: list[str] | str, interval: int, allowed_lateness: int = DEFAULT_ALLOWED_LATENESS,
                 kind: str = "stream", run_id: str | None = None, shards: int = 1,
                 max_bytes: int = DEFAULT_MAX_BYTES, counter: str | None = None,
                 counters: list[str] | None = None):
        super().__init__(directories, interval, kind, run_id, shards, max_bytes, counter, counters)
        if allowed_lateness < 0:
            raise ValueError("allowed_lateness must be >= 0 s")
        self.allowed_lateness = int(allowed_lateness)

    def expand(self, events):
        writer = _ExportWindowsFn(self.directories, self.counters, self.interval, self.allowed_lateness, self.kind,
                                  self.run_id, self.max_bytes, self.counter)
        return self._by_shard(events) | "WriteDueWindows" >> beam.ParDo(writer).with_outputs(
            self.AFTER_CLOSE, main=self.FILES)


class WriteProcessingTimeJsonl(_ShardedJsonlWriter):
    """Writes rows (keys, dead letters) as JSONL file sets per processing-time interval; returns the paths."""

    def __init__(self, directories: list[str] | str, interval: int, kind: str, run_id: str | None = None,
                 shards: int = 1, max_bytes: int = DEFAULT_MAX_BYTES, counter: str | None = None,
                 counters: list[str] | None = None):
        super().__init__(directories, interval, kind, run_id, shards, max_bytes, counter, counters)

    def expand(self, rows):
        writer = _ProcessingTimeBatchesFn(self.directories, self.counters, self.interval, self.kind, self.run_id,
                                          self.max_bytes, self.counter)
        return self._by_shard(rows) | "WriteBatches" >> beam.ParDo(writer)
