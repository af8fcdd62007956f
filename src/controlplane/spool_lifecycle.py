"""What happens to the gateway's spool segments once they are closed: committed ones are deleted
(or kept for an explicit retention), and a data subject's events are removed from the others.

    from controlplane.spool_lifecycle import spool_lock, expire_segments, forget_in_spool
    with spool_lock(spool_dir):                          # the local loop and a forget never overlap
        ...                                              # read segments, run the pipeline, commit
    expire_segments(spool_dir, processed, retention_seconds=0)   # delete committed segments
    report = forget_in_spool(project_dir, spool_dir, {"477049"}) # rewrite the others without them
    report = forget_in_output_spool("<project>/out/<pipeline id>", {"477049"})  # `subjects forget`

The spool holds accepted events in plaintext (``gateway/spool.py`` writes them, mode 0600). The
local loop (``controlplane.realtime``) deletes a segment as soon as the pipeline run over it
has committed its outputs; ``retention_seconds`` keeps committed segments that long for a
replay. ``forget_in_spool`` rewrites every closed segment (unprocessed, retained or held) that
holds an event of the subjects, matching the value of the event's contract's key field and
data-subject field (contracts resolved by reference, ``controlplane.contracts``); only lines
that mention a subject id are parsed. A segment is rewritten through a 0600 temp file in the
same directory and renamed over the old one (an emptied one is deleted), under the spool lock.
The segment the gateway is still writing (``*.jsonl.open``) cannot be rewritten safely: it is
counted in the report, and closes within the gateway's segment age.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from gateway.spool import OPEN_SUFFIX, SEGMENT_SUFFIX, closed_segments
from privacy.private_files import replace_private
from gateway.spool import _fsync_dir as fsync_dir   # the spool's own: renames are durable once it returns

HELD_DIR = "held"          # spool/<id>/held/: events whose contract cannot be resolved now
LOCK_FILE = ".lock"


def held_files(directory: Path) -> list[Path]:
    held = Path(directory) / HELD_DIR
    return sorted(held.glob("*.jsonl")) if held.is_dir() else []


@contextmanager
def spool_lock(spool_dir: Path):
    """An exclusive lock on one pipeline's spool (``<spool>/.lock``; blocks until it is free)."""
    spool_dir = Path(spool_dir)
    spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(spool_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)   # releases the lock


def expire_segments(spool_dir: Path, processed: set[str], retention_seconds: float = 0.0,
                    now: float | None = None) -> list[str]:
    """Delete committed segments (names in ``processed``) older than the retention; returns their names."""
    import time

    now = time.time() if now is None else now
    deleted = []
    for segment in closed_segments(spool_dir):
        if segment.name not in processed:
            continue
        try:
            if retention_seconds > 0 and segment.stat().st_mtime + retention_seconds > now:
                continue
            segment.unlink()
        except FileNotFoundError:
            pass
        deleted.append(segment.name)
    if deleted:
        fsync_dir(Path(spool_dir))
    return deleted


@dataclass
class ForgetReport:
    """What ``forget_in_spool`` did in one spool."""

    events_removed: int = 0
    segments_rewritten: int = 0
    segments_checked: int = 0
    open_segments: list[str] = field(default_factory=list)   # being written: not checked
    unchecked_lines: int = 0       # mention a subject, but their contract is unknown: kept

    def summary(self) -> str:
        text = (f"spool: removed {self.events_removed} events from {self.segments_rewritten} of "
                f"{self.segments_checked} segments")
        if self.unchecked_lines:
            text += f"; {self.unchecked_lines} lines kept: their contract is unknown, so their subject is not known"
        if self.open_segments:
            text += (f"; {len(self.open_segments)} segment still open in the gateway not checked: "
                     "run forget again once it is closed")
        return text


class _SubjectFields:
    """Key field and data-subject field (as path parts) of each contract, resolved once."""

    def __init__(self, project_dir: Path):
        from controlplane.contracts import ContractRegistry

        self.registry = ContractRegistry(project_dir)
        self.fields: dict[str, list[list[str]] | None] = {}

    def of(self, ref) -> list[list[str]] | None:
        if not isinstance(ref, str):
            return None
        if ref not in self.fields:
            from contracts import ContractError
            try:
                contract = self.registry.get(ref)
            except ContractError:
                self.fields[ref] = None
            else:
                paths = [contract.key_field] + ([contract.data_subject_field] if contract.data_subject_field else [])
                self.fields[ref] = [p.split("/") for p in paths]
        return self.fields[ref]


def _value(event, parts: list[str]):
    for part in parts:
        event = event.get(part) if isinstance(event, dict) else None
    return event


def forget_in_spool(project_dir: Path, spool_dir: Path, subjects: set[str]) -> ForgetReport:
    """Remove every event of ``subjects`` from the closed segments and held files of one spool."""
    report = ForgetReport()
    spool_dir = Path(spool_dir)
    if not spool_dir.is_dir() or not subjects:
        return report
    needles = [orjson.dumps(subject) for subject in subjects]   # as the gateway wrote them (orjson)
    fields = _SubjectFields(Path(project_dir))
    with spool_lock(spool_dir):
        report.open_segments = sorted(p.name for p in spool_dir.iterdir() if p.name.endswith(SEGMENT_SUFFIX + OPEN_SUFFIX)
                                      and p.stat().st_size)
        for path in [*closed_segments(spool_dir), *held_files(spool_dir)]:
            report.segments_checked += 1
            data = path.read_bytes()
            if not any(needle in data for needle in needles):
                continue
            kept, removed = [], 0
            for line in data.splitlines(keepends=True):
                if any(needle in line for needle in needles) and _is_theirs(line, subjects, fields, report):
                    removed += 1
                else:
                    kept.append(line)
            if not removed:
                continue
            if kept:
                replace_private(path, b"".join(kept))
            else:
                path.unlink()
                fsync_dir(path.parent)
            report.events_removed += removed
            report.segments_rewritten += 1
    return report


def _is_theirs(line: bytes, subjects: set[str], fields: _SubjectFields, report: ForgetReport) -> bool:
    try:
        event = orjson.loads(line)
        ref = event["strmMeta"]["eventContractRef"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        report.unchecked_lines += 1
        return False
    paths = fields.of(ref)
    if paths is None:
        report.unchecked_lines += 1
        return False
    return any(_value(event, parts) in subjects for parts in paths)


def project_pipeline_of_output(output: str) -> tuple[Path, str] | None:
    """(project directory, pipeline id) when ``output`` is a project pipeline's ``out/<id>`` root."""
    if "://" in str(output):
        return None
    root = Path(output).resolve()
    project_dir = root.parent.parent
    if root.parent.name != "out" or not (project_dir / "project.yaml").is_file():
        return None
    return project_dir, root.name


def forget_in_output_spool(output: str, subjects: set[str]) -> ForgetReport | None:
    """``forget_in_spool`` for the spool of the project pipeline whose output root is ``output``
    (``pstream subjects forget --output <project>/out/<id>``); None for any other output root."""
    found = project_pipeline_of_output(output)
    if found is None:
        return None
    project_dir, pipeline_id = found
    return forget_in_spool(project_dir, project_dir / "spool" / pipeline_id, subjects)
