"""The local real-time loop: spool segments -> pipeline micro-batches -> outputs -> batch exporters.

    from controlplane.realtime import LocalLoop
    loop = LocalLoop(project_dir, spool_retention=0)
    loop.start_exporters()   # probe new batch exporters; returns why any were refused
    loop.step()              # one pass: start new exporters, run the pipeline over new closed segments,
                             # run due exporters

For each pipeline of the project, the closed spool segments not processed yet are split by
``strmMeta.eventContractRef``; each contract (resolved by reference in the project's registry,
``controlplane.contracts``) gets a ``PipelineConfig`` built from the project model
(``PipelineConfig.build``: the pipeline's privacy streams, output ``<project>/out/<id>/``) and
is run by ``pipelines.run.run_config``: the same Beam graph and summary checks as
``python -m pipelines.run``, in process, with one key store and KEK per pipeline, so keys
carry over between micro-batches. The events of one contract are handed to the graph in a 0600
work file, deleted after the run.

A segment counts as processed once every run over it succeeded (``<project>/state/<id>.json``);
then it is deleted, at once or after ``spool_retention`` seconds (a window for replays). A
crash repeats a batch, it never skips one. Events whose contract cannot be resolved (removed
from the project after the gateway accepted them) are not lost: they are kept in
``spool/<id>/held/`` and run as soon as the contract is back; so are events of a contract in
which a privacy stream's generalisation rule does not fit its field's type (``privacy.generalise``;
a rule whose field the contract lacks does nothing to its events), until the stream is changed. The spool lock
(``controlplane.spool_lifecycle``) keeps ``pstream subjects forget`` from rewriting segments
while a pass reads them.

Batch exporters are ``pipelines.connectors`` exporters (``Project.pipeline_exporters``). Each is
started once, when the loop first sees it: its connector's credentials are read and its
directory probed (``.strm_test_<uuid>.jsonl`` written and deleted); one that cannot be written
is refused with a message naming it and its connector, said once, and the others go on. A
started exporter, every ``interval`` seconds, writes the stream's output files it has not
exported yet through ``pipelines.exporting.write_batch_exports`` (the exporters of
``pipelines.run``: one ``<prefix>/<UTC second>-stream-<exporter id>---<shard>.jsonl`` file set per
interval, none for an interval without events). ``include_existing_events`` decides whether
what was there before its first pass is exported too. An exporter that fails is reported and
the next one runs.
"""
from __future__ import annotations

import json
import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from controlplane.project import BatchExporter, Pipeline, Project, ProjectError
from controlplane.spool_lifecycle import HELD_DIR, expire_segments, held_files, spool_lock
from privacy.private_files import replace_private
from gateway.spool import closed_segments
from gateway.tail import visible_jsonl

log = logging.getLogger(__name__)
UNKNOWN = "unknown"
_LABEL = 19   # characters of "YYYY-MM-DDTHH:MM:SS" that start an output file's name


def _safe(ref: str) -> str:
    """A reference as a file name part; '~' is in no reference, so it reads back."""
    return re.sub(r"[^A-Za-z0-9_.-]", "~", ref)


class _State:
    """A small JSON file of what was handled, written atomically (0600)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        replace_private(self.path, json.dumps(self.data).encode())


class LocalLoop:
    def __init__(self, project_dir: str | Path, echo=None, clock=time.time, spool_retention: float = 0.0):
        self.project_dir = Path(project_dir)
        self.echo = echo or (lambda text: log.info(text))
        self._clock = clock
        self.spool_retention = spool_retention
        self.runs = 0
        self._exporters: dict[str, _RunningExporter] = {}   # started batch exporters, by name
        self._reported: set[str] = set()

    def _say_once(self, message: str) -> str:
        if message not in self._reported:  # once, not on every pass
            self._reported.add(message)
            self.echo(message)
        return message

    # --------------------------------------------------------------- pipeline
    def step(self) -> int:
        """One pass; returns the number of events sent through the pipeline. A pipeline whose run
        fails is reported and retried on the next pass; the other pipelines and exporters go on."""
        project = Project.open(self.project_dir)
        self.start_exporters(project)
        processed = 0
        for name in sorted(project.pipelines):
            try:
                processed += self._process_pipeline(project, project.pipelines[name])
            except Exception as exc:  # a Beam failure of one pipeline: retried next pass
                self.echo(f"{name}: pipeline pass failed, its segments stay in the spool: {exc}")
        self._export(project)
        return processed

    def _process_pipeline(self, project: Project, pipeline: Pipeline) -> int:
        spool = project.spool_dir(pipeline.name)
        if not spool.is_dir():
            return 0
        state = _State(project.state_dir() / f"{pipeline.id}.json")
        with spool_lock(spool):
            present = closed_segments(spool)
            processed = set(state.data.get("processed", []))
            if "processed_up_to" in state.data:   # an older state file: a high-water mark of names
                processed |= {s.name for s in present if s.name <= state.data["processed_up_to"]}
            segments = [s for s in present if s.name not in processed]
            count = self._run_segments(project, pipeline, segments) if segments or held_files(spool) else 0
            processed |= {s.name for s in segments}
            expired = set(expire_segments(spool, processed, self.spool_retention, self._clock()))
            kept = sorted(n for n in processed if n not in expired and (spool / n).exists())
            if kept != state.data.get("processed") or "processed_up_to" in state.data:
                state.data = {"processed": kept}
                state.save()
        return count

    def _run_segments(self, project: Project, pipeline: Pipeline, segments: list[Path]) -> int:
        """Run every contract's events of ``segments`` (and of held files whose contract is back)."""
        from contracts import ContractError
        from controlplane.contracts import ContractRegistry

        registry = ContractRegistry(project.directory)
        spool = project.spool_dir(pipeline.name)
        groups: dict[str, list[bytes]] = {}
        origin: dict[str, list[str]] = {}            # ref -> segments its events came from
        for segment in segments:
            for line in segment.read_bytes().splitlines():
                if line.strip():
                    ref = _ref_of(line)
                    groups.setdefault(ref, []).append(line)
                    origin.setdefault(ref, []).append(segment.name)
        contracts, held_now = {}, []
        for ref in list(groups):
            try:
                contracts[ref] = _usable(project, pipeline, registry.get(ref))
            except ContractError as exc:
                self._hold(spool, pipeline, ref, groups.pop(ref), origin[ref], exc)
        for path in held_files(spool):
            ref = path.name.rsplit(".jsonl", 1)[0].split("~", 1)[1].replace("~", "/") if "~" in path.name else UNKNOWN
            try:
                contracts[ref] = contracts.get(ref) or _usable(project, pipeline, registry.get(ref))
            except ContractError:
                continue
            groups.setdefault(ref, []).extend(line for line in path.read_bytes().splitlines() if line.strip())
            held_now.append(path)
        if not groups:
            return 0
        work = self.project_dir / "work" / pipeline.id / uuid.uuid4().hex[:12]
        work.mkdir(parents=True, mode=0o700)
        count = 0
        try:
            for ref, lines in sorted(groups.items()):
                input_path = work / f"{segments[0].stem if segments else 'held'}-{_safe(ref)}.jsonl"
                replace_private(input_path, b"\n".join(lines) + b"\n")
                self._run(project, pipeline, contracts[ref], input_path)
                count += len(lines)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for path in held_now:   # their events are in the outputs now
            path.unlink(missing_ok=True)
        self.echo(f"{pipeline.name}: {count} events from {len(segments)} spool segment(s)"
                  f"{f' and {len(held_now)} held file(s)' if held_now else ''} through the pipeline")
        return count

    def _hold(self, spool: Path, pipeline: Pipeline, ref: str, lines: list[bytes], sources: list[str], exc) -> None:
        """Keep events of a contract that cannot be resolved in held/<segment>~<ref>.jsonl (0600)."""
        held = spool / HELD_DIR
        held.mkdir(exist_ok=True, mode=0o700)
        target = held / f"{sources[0].rsplit('.jsonl', 1)[0]}~{_safe(ref)}.jsonl"
        replace_private(target, b"\n".join(lines) + b"\n")   # the same name on a repeated pass: no copies
        self._say_once(f"{pipeline.name}: {len(lines)} events of contract '{_safe(ref)}' held in {held}, "
                       f"not processed: {exc}")

    def _run(self, project: Project, pipeline: Pipeline, contract, input_path: Path) -> None:
        from apache_beam.options.pipeline_options import PipelineOptions
        from pipelines.config import PipelineConfig
        from pipelines.run import run_config   # Beam is imported only when there is work

        streams = [s.spec() for s in project.privacy_streams.values() if s.source == pipeline.name]
        config = PipelineConfig.build(pipeline.name, contract, str(input_path), streams,
                                      str(project.output_dir(pipeline.name)),
                                      source=f"{project.path}: pipeline '{pipeline.name}'", write_mode="append")
        lines: list[str] = []
        # append: each micro-batch adds its events to the pipeline's output (a rerun of a batch whose
        # run was killed finds nothing of it: an uncommitted run is rolled back)
        status = run_config(config, PipelineOptions([]), (), echo=lines.append)
        self.runs += 1
        if status != 0:
            raise RuntimeError(f"the run over {contract.ref} failed: " + " | ".join(lines[-5:]))

    # -------------------------------------------------------------- exporters
    def start_exporters(self, project: Project | None = None) -> list[str]:
        """Start the project's batch exporters that are new or changed; returns why any were refused.

        Each is the ``pipelines.connectors.Exporter`` that ``Project.pipeline_exporters`` builds
        (``parse_exporters``, as for a pipeline config), reached with its connector's
        credentials (``controlplane.connectors.beam_access``) and probed once with
        ``pipelines.connectors.probe``. One that cannot be written is refused with the probe's
        message, which names the exporter and the connector, and is not tried again until its
        definition changes.
        """
        project = project or Project.open(self.project_dir)
        refused, wanted = [], set()
        for pipeline in sorted(project.pipelines):
            try:
                pairs = project.pipeline_exporters(pipeline)
            except ProjectError as exc:
                refused.append(self._say_once(f"{pipeline}: batch exporters not started: {exc}"))
                continue
            for record, exporter in pairs:
                wanted.add(record.name)
                running = self._exporters.get(record.name)
                if running is None or running.definition != (exporter, record.id):
                    if running is not None:
                        self._reported.discard(running.error)  # a changed definition may fail the same way
                    running = self._exporters[record.name] = self._start(project, record, exporter)
                if running.error:
                    refused.append(running.error)
        for name in set(self._exporters) - wanted:
            del self._exporters[name]
        return refused

    def _start(self, project: Project, record: BatchExporter, exporter) -> "_RunningExporter":
        from controlplane.connectors import beam_access, quiet_storage_logs, reaching
        from pipelines.connectors import ConnectorError, probe

        connector = exporter.connector
        try:
            options, env = beam_access(connector, where=f"exporter '{record.name}': {connector.describe()}")
            running = _RunningExporter((exporter, record.id), record, exporter, options, env)
            with reaching(options, env), quiet_storage_logs():
                probe(exporter)
        except ConnectorError as exc:
            return _RunningExporter((exporter, record.id), record, exporter, None, {},
                                    error=self._say_once(f"{exc}; exporter not started"))
        self._export_state(project, record)
        self.echo(f"exporter {record.name}: exporting {record.stream} to {exporter.directory}")
        return running

    def _export(self, project: Project) -> None:
        for running in list(self._exporters.values()):
            if running.error:
                continue
            try:
                self._export_one(project, running)
            except Exception as exc:  # one exporter's failure never stops the next one
                self._say_once(f"exporter {running.record.name}: export failed, retried next interval: "
                               f"{' '.join(str(exc).split())[:300]}")

    def _export_one(self, project: Project, running: "_RunningExporter") -> None:
        now = self._clock()
        record = running.record
        try:
            directory = project.stream_dir(record.stream)
        except ProjectError:
            return
        state = self._export_state(project, record)
        files = [(p.name[:_LABEL], p) for p in visible_jsonl(directory)]
        if now - state.data.get("last", 0) < record.interval:
            return
        mark, at_mark = state.data["mark"], set(state.data["at_mark"])
        new = [(label, path) for label, path in files if label > mark or (label == mark and path.name not in at_mark)]
        if new:
            self._write_export(running, [str(path) for _, path in new], now)
        state.data = {"last": now, **(_advance(mark, sorted(at_mark), new) if new else {"mark": mark,
                                                                                       "at_mark": sorted(at_mark)})}
        state.save()

    def _export_state(self, project: Project, record: BatchExporter) -> _State:
        """What an exporter has exported (``state/exporter-<id>.json``), made when it first starts:
        the stream's files there at that moment are "existing events"."""
        state = _State(project.state_dir() / f"exporter-{record.id}.json")
        if "mark" not in state.data:
            state.data = {"mark": "", "at_mark": [], "last": 0}
            try:
                files = [(p.name[:_LABEL], p) for p in visible_jsonl(project.stream_dir(record.stream))]
            except ProjectError:
                files = []
            if not record.include_existing_events and files:
                state.data.update(_advance("", [], files))
            state.save()
        return state

    def _write_export(self, running: "_RunningExporter", files: list[str], now: float) -> None:
        """The files' events through ``write_batch_exports``: one file set named after ``now``."""
        import apache_beam as beam
        from controlplane.connectors import reaching
        from pipelines.exporting import output_key, write_batch_exports
        from pipelines.run import counters
        from transforms.write_jsonl import DEFAULT_MAX_BYTES

        exporter, record = running.exporter, running.record
        with reaching(running.options, running.env):
            pipeline = beam.Pipeline(options=running.options)
            events = (pipeline | "Files" >> beam.Create(files) | "Read" >> beam.io.ReadAllFromText()
                      | "Lines" >> beam.Filter(str.strip) | "Parse" >> beam.Map(orjson.loads))
            write_batch_exports({output_key(exporter): events}, [exporter], DEFAULT_MAX_BYTES,
                                write_mode="append", run_started=now,   # each pass: a run of its own
                                event_batches=False)                    # events read back from files
            result = pipeline.run()
            result.wait_until_finish()
        events = counters(result).get(f"written/exporter_{exporter.name}", 0)
        if events:
            self.echo(f"exporter {record.name}: {events} events to {exporter.directory}")


def _usable(project: Project, pipeline: Pipeline, contract):
    """The contract, or ContractError (its events are held) when a generalisation rule of one of
    the pipeline's privacy streams does not fit the type of its field in this contract."""
    from contracts import ContractError

    for stream in project.privacy_streams.values():
        problems = stream.spec().rule_problems(contract, missing=False) if stream.source == pipeline.name else ()
        if problems:
            raise ContractError(f"{project.path}: privacy stream '{stream.name}': {problems[0]}")
    return contract


def _ref_of(line: bytes) -> str:
    try:
        ref = orjson.loads(line)["strmMeta"]["eventContractRef"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return UNKNOWN
    return ref if isinstance(ref, str) else UNKNOWN


def _advance(mark: str, at_mark: list[str], exported: list[tuple[str, Path]]) -> dict:
    """The export mark after ``exported``: the latest file label, and the names exported with it
    (files of one UTC second can appear in two passes; a name is exported once)."""
    latest = max([mark, *(label for label, _ in exported)])
    names = {path.name for label, path in exported if label == latest} | (set(at_mark) if latest == mark else set())
    return {"mark": latest, "at_mark": sorted(names)}


@dataclass
class _RunningExporter:
    """A started batch exporter: its project record, its Exporter, and what Beam needs to reach it."""

    definition: tuple               # (Exporter, record id): a change starts it again
    record: BatchExporter
    exporter: object                # pipelines.connectors.Exporter
    options: object                 # PipelineOptions with the connector's Beam options
    env: dict = field(default_factory=dict)
    error: str = ""                 # why it was refused, if it was
