"""WriteJsonlBatches: a batch run's JSONL outputs, committed in one step for all of them.

    from transforms.write_jsonl import RunOutputs, WriteJsonlBatches
    events | WriteJsonlBatches("out/encrypted")                  # a run of its own: written and committed
    batches | WriteJsonlBatches("out/encrypted", batches=True)   # [(position, event), ...] elements

    run = RunOutputs(pipeline, OutputRun.create("out", ["encrypted", "keys"], mode="replace"))
    events | "Write encrypted" >> WriteJsonlBatches("out/encrypted", run=run)
    keys | "Write keys" >> WriteJsonlBatches("out/keys", kind="keys", run=run)
    files = run.commit()                                         # one commit for every output

File names follow the reference's batch exporter:
``<dir>/[date=YYYY-MM-DD/]<run start yyyy-MM-ddTHH:mm:ss>-<kind>-<run uuid>---<shard>.jsonl``
(``run_commit.run_file_name``). Shards roll at ``max_bytes``; an output without events writes no
file. Paths go through Beam's ``FileSystems``: local paths, gs://, s3://, azfs://. Without
partitions each bundle writes its own files (only file names are shuffled); with
``partition_by_day`` events are grouped by day first. Batch only: streaming runs write per
export window with ``transforms.windowed_export``.

**Rows or batches.** One writer for both kinds of PCollection: by default each element is one row
(keys, dead letters, reports); with ``batches=True`` each element is a batch of (position, event)
pairs (``transforms.event_batches``: the graph's event outputs) and every event of it is a line,
written with one writer look-up per batch; positions are not written. With ``partition_by_day``
a batch is split by day into (day, [events]) before the GroupByKey, so what is shuffled is a few
lists per batch, not one element per event. The files are the same either way.

**A run is one commit.** Readers see all of a run's files or none, never a mix of two runs:

1. *Begin* (a singleton step that every writer waits for, as a side input): the run writes its
   record ``<root>/.pstream/runs/<run id>.json`` (state ``running``; host, pid and process start
   of the launching process, the runner, the write mode, the directories it writes), then
   cleans the root (``run_commit.recover``) and, with ``--write_mode=fail``, refuses an output
   that already holds a committed run.
2. *Write*: every file is written under the run-scoped hidden temp directory
   ``<output dir>/.temp-<run id>/`` (so ``*.jsonl`` globs and readers never see it).
3. *Commit* (a singleton step after every write of every output, exporters included): the
   record lists every (temp, final) pair (state ``committing``), the temp files are renamed to
   their final names, and the record is rewritten as ``done`` with the commit time. **Writing
   ``done`` is the commit**; on object stores, where a rename is a copy and a delete, one small
   object written in one request is what is atomic. Then files that this run supersedes are
   deleted and the temp directory removed.

Readers (``run_commit.committed_files``, used by ``pstream decrypt``, ``keys export``,
``subjects export``/``forget``, the DuckDB views and the local exporters) return a run's files
only once its record says ``done``; files of a run with no record (streaming runs, versions
before records) are visible too. A directory written by a ``replace`` run shows only runs
committed after it: the old run's files stay visible until the new run commits, and their
deletion afterwards is only cleanup. Each exporter directory outside the output root is a root
of its own with its own record (written ``done`` right after the primary one), so its readers
see whole runs too.

**Killed runs.** A run killed before its ``done`` record left temp files, perhaps renamed files,
and a record that is not ``done``: the next run into the root rolls it back (deletes them). A
run killed after it is finished: superseded files are deleted, exporter roots marked ``done``.
Only what provably belongs to a dead run is removed: a record's run is dead when it ran on this
host under an in-process runner (FnApiRunner, DirectRunner) and its process is gone (its pid is
absent or now belongs to a process that started at another time). Runs of other hosts and of job
services (Dataflow, Flink) are never judged dead: their leftovers are kept and reported (remove
``.pstream/runs/<id>.json`` and ``.temp-<id>/`` by hand once that job has ended). A temp file
without a record is a dead run's: records are written before any temp file. So two runs into
one output never delete each other's work; if both commit, the commit times order them.

**Write modes** (``--write_mode``, default ``replace``): ``replace`` - when the run commits, its
directories show only its files (a rerun of the same input gives one copy, never two); ``append``
- the run's files are added to what is there (the local real-time loop's micro-batches); ``fail``
- refuse to write into directories that hold a committed run. Nothing in ``keystore.sqlite`` or
the KEK is touched by any mode.

Local files are owner-only from their creation (0600, directories 0700: ``privacy.private_files``).
The test hook ``PSTREAM_COMMIT_STEP_DELAY`` (seconds) sleeps after each commit step.
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
from privacy.private_files import open_private
from transforms.run_commit import DEFAULT_WRITE_MODE, OutputRun, Report, TempFile, temp_dir

DEFAULT_MAX_BYTES = 128 * 1024 * 1024
_GLOBAL_WINDOW = GlobalWindow()


def _label(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def day_partition(event: dict) -> str:
    """``date=YYYY-MM-DD`` of the event's strmMeta.timestamp (UTC), or of its ``createdAt``."""
    meta = event.get("strmMeta")
    millis = meta.get("timestamp") if isinstance(meta, dict) else event.get("createdAt", 0)
    return "date=" + utc_day(millis or 0)  # zero-padded years: date=0999-12-31


def create_output_file(path: str):
    """A new file for writing: owner-only for a local path, through Beam's FileSystems for a URI."""
    if "://" not in path:
        return open_private(path, "wb")
    return FileSystems.create(path, mime_type="application/x-ndjson")


def runner_name(pipeline) -> str:
    runner = getattr(pipeline, "runner", None)
    return type(runner).__name__ if runner is not None else "unknown"


class _ShardWriter:
    """Writes lines to temp files in one run-scoped temp directory, rolling to a new file at max_bytes."""

    def __init__(self, directory: str, max_bytes: int):
        self.directory = directory
        self.max_bytes = max_bytes
        self.finished: list[str] = []
        self._handle = None
        self._path = None
        self._bytes = 0

    def write(self, line: bytes) -> None:
        if self._handle is None:
            self._path = FileSystems.join(self.directory, f"{uuid.uuid4().hex}.jsonl.tmp")
            self._handle = create_output_file(self._path)
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
    """Writes each bundle's elements per (window, partition) to temp files; emits TempFile rows."""

    def __init__(self, directory: str, kind: str, run_id: str, run_label: str, partition, max_bytes: int,
                 counter: str, batches: bool = False):
        self.directory = directory
        self.batches = batches
        self.kind = kind
        self.temps = temp_dir(directory, run_id)
        self.run_label = run_label
        self.partition = partition
        self.max_bytes = max_bytes
        self.written = Metrics.counter("written", counter)

    def start_bundle(self):
        self.writers = {}
        self.lines = 0  # the written counter goes up once per bundle, not once per line

    def _writer(self, window, partition):
        writer = self.writers.get((window, partition))
        if writer is None:
            directory = FileSystems.join(self.temps, partition) if partition else self.temps
            writer = self.writers[(window, partition)] = _ShardWriter(directory, self.max_bytes)
        return writer

    def process(self, element, windowed=beam.DoFn.WindowedValueParam, begun=None):
        # Windows from the WindowedValue: with WindowParam, Beam would split every element per
        # window and rebuild the call's arguments, which costs more than writing the line.
        for window in windowed.windows:
            self._write(element, window)

    def _write(self, element, window):
        dumps = orjson.dumps
        if isinstance(element, tuple):  # grouped by partition: (partition, events or lists of events)
            partition, grouped = element
            write, count = self._writer(window, partition).write, 0
            if self.batches:
                for events in grouped:  # an iterable of a GroupByKey: each a list of one batch's events
                    for event in events:
                        write(dumps(event) + b"\n")
                    count += len(events)
            else:
                for event in grouped:  # counted as it goes
                    write(dumps(event) + b"\n")
                    count += 1
            self.lines += count
        elif self.batches:  # [(position, event), ...]; partition_by_day batches come grouped
            write = self._writer(window, "").write
            for _, event in element:
                write(dumps(event) + b"\n")
            self.lines += len(element)
        else:
            partition = self.partition(element) if self.partition else ""
            self._writer(window, partition).write(dumps(element) + b"\n")
            self.lines += 1

    def finish_bundle(self):
        if self.lines:
            self.written.inc(self.lines)
            self.lines = 0
        for (window, partition), writer in self.writers.items():
            label = self.run_label if isinstance(window, GlobalWindow) else _label(window.start.micros / 1e6)
            for path in writer.close():
                temp = TempFile(self.directory, partition, label, self.kind, path)
                yield WindowedValue(temp, window.max_timestamp(), [window])


class _WriteGlobalBundleFn(_WriteBundleFn):
    """_WriteBundleFn in the global window (batch): no window parameter, so Beam calls it directly."""

    def process(self, element, begun=None):
        self._write(element, _GLOBAL_WINDOW)


def _count(report: Report, kept: bool = True) -> None:
    for name, value in (("runs_rolled_back", len(report.rolled_back)), ("runs_completed", len(report.completed)),
                        ("runs_replaced", len(set(report.replaced_runs))),
                        ("replaced_files_deleted", report.replaced_files), ("temp_files_deleted", report.temp_files),
                        ("leftovers_kept", len(report.kept) if kept else 0)):
        if value:
            Metrics.counter("commit", name).inc(value)


class _BeginRunFn(beam.DoFn):
    def __init__(self, run: OutputRun):
        self.run = run

    def process(self, _):
        import logging
        report = self.run.begin()
        for kept in report.kept:
            logging.getLogger(__name__).warning("output %s: leftovers kept: %s", self.run.primary, kept)
        _count(report)
        yield self.run.run_id


class _CommitRunFn(beam.DoFn):
    def __init__(self, run: OutputRun):
        self.run = run
        self.files = Metrics.counter("commit", "files_committed")

    def process(self, _, temps=()):
        finals, report = self.run.commit(list(temps))
        self.files.inc(len(finals))
        _count(report, kept=False)  # what may still be running was counted when the run began
        yield from finals


class RunOutputs:
    """The outputs of one batch run at graph construction: the begin step, the writers' temp
    files, and ``commit()``, the one commit step after all of them."""

    def __init__(self, pipeline, run: OutputRun, label: str = "BeginRun"):
        self.run = run
        self.begun = pipeline | label >> beam.Create([None]) | f"{label}/Record" >> beam.ParDo(_BeginRunFn(run))
        self.temps = []

    def commit(self, label: str = "CommitRun"):
        """All the writers' temp files -> rename and commit, once; the final paths.

        The commit is a step on the begin step's single element, with every temp file as a side
        input: it runs once, after all writers finished (an empty run commits too). No combiner,
        so the graph also round-trips through the runner API for Flink.
        """
        temps = (self.temps | f"{label}/Flatten" >> beam.Flatten() if self.temps
                 else self.begun.pipeline | f"{label}/NoFiles" >> beam.Create([]))
        temps = temps | f"{label}/InGlobalWindow" >> beam.WindowInto(GlobalWindows())
        return self.begun | f"{label}/RenameAndCommit" >> beam.ParDo(
            _CommitRunFn(self.run), temps=beam.pvalue.AsList(temps))


def _by_day(batch):
    """A batch of (position, event) pairs -> (day partition, [events]) per day it holds."""
    days: dict[str, list] = {}
    for _, event in batch:
        part = day_partition(event)
        events = days.get(part)
        if events is None:
            days[part] = [event]
        else:
            events.append(event)
    return days.items()


class WriteJsonlBatches(beam.PTransform):
    """Writes dicts as JSONL file sets. With ``run`` (a ``RunOutputs``): temp files only, returned
    as ``TempFile`` rows and committed by ``run.commit()``; without: a run of its own (root =
    ``directory``, mode ``write_mode``), written and committed, returning the final paths.
    ``batches``: the elements are batches of (position, event) pairs, not rows (module docstring)."""

    def __init__(self, directory: str, kind: str = "stream", partition_by_day: bool = False,
                 max_bytes: int = DEFAULT_MAX_BYTES, run_id: str | None = None, run_started: float | None = None,
                 counter: str | None = None, run: RunOutputs | None = None, write_mode: str = DEFAULT_WRITE_MODE,
                 batches: bool = False):
        super().__init__()
        self.batches = batches
        self.directory = directory.rstrip("/")
        self.kind = kind
        self.counter = counter or directory.rstrip("/").rsplit("/", 1)[-1]
        self.partition_by_day = partition_by_day
        self.max_bytes = max_bytes
        self.run_id = run_id
        self.run_started = run_started
        self.run = run
        self.write_mode = write_mode

    def expand(self, events):
        run = self.run
        if run is None:
            started = self.run_started if self.run_started is not None else time.time()
            run = RunOutputs(events.pipeline, OutputRun.create(self.directory, [""], self.write_mode, self.run_id,
                                                               started, runner_name(events.pipeline)))
        directory = run.run.directory(self.directory)  # registered before the begin step was built
        global_window = isinstance(events.windowing.windowfn, GlobalWindows)
        writer = (_WriteGlobalBundleFn if global_window else _WriteBundleFn)(
            directory, self.kind, run.run.run_id, _label(run.run.started),
            day_partition if self.partition_by_day else None, self.max_bytes, self.counter, self.batches)
        if self.partition_by_day:
            by_day = beam.FlatMap(_by_day) if self.batches else beam.Map(lambda event: (day_partition(event), event))
            events = (events
                      | "KeyByDay" >> by_day
                      | "GroupByDay" >> beam.GroupByKey())
        temps = events | "WriteTempFiles" >> beam.ParDo(writer, begun=beam.pvalue.AsSingleton(run.begun))
        run.temps.append(temps)
        if self.run is not None:
            return temps
        return run.commit("Commit")

