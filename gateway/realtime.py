"""The local real-time loop: spool segments -> pipeline micro-batches -> outputs -> batch exporters.

    from gateway.realtime import LocalLoop
    loop = LocalLoop(project_dir)
    loop.step()          # one pass: run the pipeline over new closed segments, run due exporters

For each pipeline of the project, closed spool segments that were not processed yet are split
by ``strmMeta.eventContractRef`` and run through ``python -m pipelines.run`` (in process, the
same Beam graph as every other run) with the project's privacy streams, into
``<project>/out/<pipeline>/``: encrypted/, streams/<name>/, keys/, dead_letter/, with one key
store and KEK per pipeline, so keys carry over between micro-batches. A segment is marked done
only after its run succeeded (``<project>/state/<pipeline>.json`` keeps the name of the last one;
segments close in name order): a crash repeats a batch, it never skips one.

Batch exporters copy the new output files of their stream to their data connector every
``interval`` seconds as one ``<prefix>/<UTC second>-stream-<exporter id>---0.jsonl`` file (no file
for an interval without events), through Beam's ``FileSystems`` (local paths, gs://, s3://,
azfs://). ``include_existing_events`` decides whether what was there before the exporter's first
pass is exported too.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import yaml

from gateway.project import Project
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

    # --------------------------------------------------------------- pipeline
    def step(self) -> int:
        """One pass; returns the number of events sent through the pipeline."""
        project = Project.open(self.project_dir)
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
                entry["mask_seed"] = stream.mask_seed
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
    def _export(self, project: Project) -> None:
        now = self._clock()
        for exporter in project.batch_exporters.values():
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
                connector = project.data_connectors.get(exporter.data_connector)
                if connector is None:
                    continue
                self._write_export(connector.location(self.project_dir), exporter, new, now)
            state.data = {"exported": sorted(exported | set(new)), "last": now}
            state.save()

    def _write_export(self, base: str, exporter, files: list[str], now: float) -> None:
        from apache_beam.io.filesystems import FileSystems

        label = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        directory = FileSystems.join(base, exporter.path_prefix) if exporter.path_prefix else base
        if "://" not in directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
        final = FileSystems.join(directory, f"{label}-stream-{exporter.id}---0.jsonl")
        temp = FileSystems.join(directory, f".temp-{uuid.uuid4().hex}.jsonl.tmp")
        events = 0
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
        self.echo(f"exporter {exporter.name}: {events} events to {final}")
