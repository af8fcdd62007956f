"""The local real-time loop: spool segments -> pipeline micro-batches -> outputs -> batch exporters.

    from controlplane.realtime import LocalLoop
    loop = LocalLoop(project_dir)
    loop.start_exporters()   # probe new batch exporters; returns why any were refused
    loop.step()              # one pass: start new exporters, run the pipeline over new closed segments,
                             # run due exporters

For each pipeline of the project, closed spool segments that were not processed yet are split
by ``strmMeta.eventContractRef`` and run through ``python -m pipelines.run`` (in process, the
same Beam graph as every other run) with the project's privacy streams, into
``<project>/out/<pipeline>/``: encrypted/, streams/<name>/, keys/, dead_letter/, with one key
store and KEK per pipeline, so keys carry over between micro-batches. A segment is marked done
only after its run succeeded (``<project>/state/<pipeline>.json`` keeps the name of the last one;
segments close in name order): a crash repeats a batch, it never skips one.

Batch exporters are ``pipelines.connectors`` exporters (the project's connectors and exporters
are a pipeline config's ``connectors:`` and ``exporters:``): each is started once, when the loop
first sees it, by applying its connector's ``connector_access`` (endpoint, credentials by file or
variable) and probing it (``.strm_test_<uuid>.jsonl`` written and deleted); one that cannot be
written is refused with a message naming it and its connector, and the others go on. A started
exporter copies the new output files of its stream to its connector every ``interval`` seconds
as one ``<prefix>/<UTC second>-stream-<exporter id>---0.jsonl`` file (no file for an interval
without events), through Beam's ``FileSystems`` (local paths, gs://, s3://, azfs://).
``include_existing_events`` decides whether what was there before the exporter's first pass is
exported too.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

from controlplane.project import BatchExporter, Project, ProjectError
from gateway.spool import closed_segments
from gateway.tail import visible_jsonl

log = logging.getLogger(__name__)


def _safe(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", ref)


class _State:
    """A small JSON file of names already handled, written atomically."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.data))
        os.replace(temp, self.path)


class LocalLoop:
    def __init__(self, project_dir: str | Path, echo=None, clock=time.time):
        self.project_dir = Path(project_dir)
        self.echo = echo or (lambda text: log.info(text))
        self._clock = clock
        self.runs = 0
        self._exporters: dict[str, _RunningExporter] = {}   # started batch exporters, by name
        self._reported: set[str] = set()

    # --------------------------------------------------------------- pipeline
    def step(self) -> int:
        """One pass; returns the number of events sent through the pipeline."""
        project = Project.open(self.project_dir)
        self.start_exporters(project)
        processed = 0
        for name in sorted(project.pipelines):
            processed += self._process_pipeline(project, name)
        self._export(project)
        return processed

    def _process_pipeline(self, project: Project, pipeline: str) -> int:
        state = _State(self.project_dir / "state" / f"{pipeline}.json")
        done_up_to = state.data.get("processed_up_to", "")  # segments close in name order: a high-water mark
        segments = [s for s in closed_segments(project.spool_dir(pipeline)) if s.name > done_up_to]
        if not segments:
            return 0
        work = self.project_dir / "work" / pipeline / uuid.uuid4().hex[:12]
        work.mkdir(parents=True)
        by_contract: dict[str, list[bytes]] = {}
        for segment in segments:
            for line in segment.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    ref = orjson.loads(line)["strmMeta"]["eventContractRef"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    ref = "unknown"
                by_contract.setdefault(ref, []).append(line)
        count = 0
        try:
            for ref, lines in sorted(by_contract.items()):
                input_path = work / f"{_safe(ref)}.jsonl"
                input_path.write_bytes(b"\n".join(lines) + b"\n")
                self._run_pipeline(project, pipeline, ref, input_path, work)
                count += len(lines)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        state.data["processed_up_to"] = segments[-1].name
        state.save()
        self.echo(f"{pipeline}: {count} events from {len(segments)} spool segment(s) through the pipeline")
        return count

    def _run_pipeline(self, project: Project, pipeline: str, ref: str, input_path: Path, work: Path) -> None:
        from pipelines.run import run  # Beam is imported only when there is work

        streams = []
        for stream in project.privacy_streams.values():
            if stream.source != pipeline:
                continue
            entry = {"name": stream.name}
            if stream.mode == "CUMULATIVE":
                entry["cumulative"] = stream.levels[0]
            else:
                entry["granular"] = list(stream.levels)
            if stream.masked_fields:
                entry["mask"] = list(stream.masked_fields)
                entry["mask_hash"] = stream.mask_hash
                if stream.mask_seed is not None:
                    entry["mask_seed"] = stream.mask_seed
            if stream.generalise:
                entry["generalise"] = stream.generalise   # checked against the events' contract by load_config
            streams.append(entry)
        contract = ref
        contract_file = project.contracts_dir()
        for candidate in (contract_file / f"{ref}.yaml",):
            if candidate.is_file():
                contract = str(candidate)
        config = {
            "name": pipeline,
            "contract": contract,
            "input": {"path": str(input_path), "format": "jsonl"},
            "streams": streams,
            "output": str(project.output_dir(pipeline)),
        }
        config_path = work / "pipeline.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        lines: list[str] = []
        status = run(["--config", str(config_path)], echo=lines.append)
        self.runs += 1
        if status == 2:  # a config error (e.g. the contract file was removed): retrying cannot help
            self.echo(f"{pipeline}: events of '{ref}' left in the spool, not processed: " + " ".join(lines))
            return
        if status != 0:
            raise RuntimeError(f"pipeline run for {pipeline} ({ref}) failed: " + " | ".join(lines[-5:]))

    # -------------------------------------------------------------- exporters
    def start_exporters(self, project: Project | None = None) -> list[str]:
        """Start the project's batch exporters that are new or changed; returns why any were refused.

        Each is the ``pipelines.connectors.Exporter`` that ``Project.pipeline_exporters`` builds
        (``parse_exporters``, as for a pipeline config), reached with its connector's
        ``connector_access`` (Beam options, environment), and probed once with
        ``pipelines.connectors.probe`` (write and delete ``.strm_test_<uuid>.jsonl``). One that
        cannot be written is refused with the probe's message, which names the exporter and the
        connector, and is not tried again until its definition changes.
        """
        project = project or Project.open(self.project_dir)
        refused, wanted = [], set()
        for pipeline in sorted(project.pipelines):
            try:
                pairs = project.pipeline_exporters(pipeline)
            except ProjectError as exc:
                refused.append(self._refuse(f"{pipeline}: batch exporters not started: {exc}"))
                continue
            for record, exporter in pairs:
                wanted.add(record.name)
                running = self._exporters.get(record.name)
                if running is None or running.definition != (exporter, record.id):
                    if running is not None:
                        self._reported.discard(running.error)  # a changed definition may fail the same way
                    running = self._exporters[record.name] = self._start(record, exporter)
                if running.error:
                    refused.append(running.error)
        for name in set(self._exporters) - wanted:
            del self._exporters[name]
        return refused

    def _start(self, record: BatchExporter, exporter) -> "_RunningExporter":
        from apache_beam.options.pipeline_options import PipelineOptions
        from pipelines.connectors import ConnectorError, Exports, connector_access, probe

        connector = exporter.connector
        running = _RunningExporter((exporter, record.id), record, exporter, PipelineOptions([]), {})
        try:
            access = connector_access(connector, where=f"exporter '{record.name}': {connector.describe()}")
            Exports({connector.name: connector}, [exporter], access).apply(running.options, running.env)
            with running.use():
                probe(exporter)
        except ConnectorError as exc:
            running.error = self._refuse(f"{exc}; exporter not started")
            return running
        self.echo(f"exporter {record.name}: exporting {record.stream} to {exporter.directory}")
        return running

    def _refuse(self, message: str) -> str:
        if message not in self._reported:  # once, not on every pass
            self._reported.add(message)
            self.echo(message)
        return message

    def _export(self, project: Project) -> None:
        now = self._clock()
        for running in list(self._exporters.values()):
            if running.error:
                continue
            exporter = running.record
            state = _State(self.project_dir / "state" / f"exporter-{exporter.name}.json")
            try:
                pipeline = project.source_of(exporter.stream)
            except ValueError:
                continue
            out = project.output_dir(pipeline)
            directory = out / "encrypted" if exporter.stream == pipeline else out / "streams" / exporter.stream
            files = [str(p) for p in visible_jsonl(directory)]
            if "exported" not in state.data:
                state.data = {"exported": [] if exporter.include_existing_events else files, "last": 0}
                state.save()
            if now - state.data.get("last", 0) < exporter.interval:
                continue
            exported = set(state.data["exported"])
            new = [f for f in files if f not in exported]
            if new:
                self._write_export(running, new, now)
            state.data = {"exported": sorted(exported | set(new)), "last": now}
            state.save()

    def _write_export(self, running: "_RunningExporter", files: list[str], now: float) -> None:
        """One ``<prefix>/<UTC second>-stream-<exporter id>---0.jsonl``, written under a temp name."""
        from apache_beam.io.filesystems import FileSystems

        if not any(Path(path).stat().st_size for path in files):
            return  # no events: no file (and S3 cannot complete an upload of nothing)
        exporter, record = running.exporter, running.record
        label = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        directory = exporter.directory
        if exporter.connector.kind == "local":
            Path(directory).mkdir(parents=True, exist_ok=True)
        final = f"{directory}/{label}-{exporter.file_kind}-{record.id}---0.jsonl"
        temp = f"{directory}/.temp-{uuid.uuid4().hex}.jsonl.tmp"
        events = 0
        with running.use():
            handle = FileSystems.create(temp, mime_type="application/x-ndjson")
            try:
                for path in files:
                    data = Path(path).read_bytes()
                    if data and not data.endswith(b"\n"):
                        data += b"\n"
                    events += data.count(b"\n")
                    handle.write(data)
            finally:
                handle.close()
            FileSystems.rename([temp], [final])
        self.echo(f"exporter {record.name}: {events} events to {final}")


@dataclass
class _RunningExporter:
    """A started batch exporter: its project record, its Exporter, and what Beam needs to reach it."""

    definition: tuple               # (Exporter, record id): a change starts it again
    record: BatchExporter
    exporter: object                # pipelines.connectors.Exporter
    options: object                 # PipelineOptions with the connector's Beam options
    env: dict = field(default_factory=dict)
    error: str = ""                 # why it was refused, if it was

    @contextmanager
    def use(self):
        """Beam's file systems pointed at this exporter's connector, as before afterwards."""
        from apache_beam.io.filesystems import FileSystems

        options, environ = FileSystems._pipeline_options, {name: os.environ.get(name) for name in self.env}
        FileSystems.set_options(self.options)
        os.environ.update(self.env)
        try:
            yield
        finally:
            FileSystems.set_options(options)
            for name, value in environ.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
