"""The commit protocol of a batch run's outputs, and the reader's view of it (``committed_files``).

    from transforms.run_commit import OutputRun, committed_files, recover
    run = OutputRun.create("out", ["encrypted", "keys"], mode="replace")   # at graph construction
    run.begin()                        # in the job, before any write: record, leftovers, mode check
    finals = run.commit(temp_files)    # in the job, after every write: one commit for every output
    committed_files(["out/encrypted"]) # what readers read: *.jsonl files of committed runs only
    recover("out")                     # remove what killed runs left (run.begin() does this too)

The design is described in ``transforms.write_jsonl`` (the writer that uses it). In short:
``<root>/.pstream/runs/<run id>.json`` is a run's record (``running`` -> ``committing`` ->
``done``); temp files live in ``<output dir>/.temp-<run id>/``; final names carry the run id
(``run_file_name``). Writing the ``done`` record in the primary root is the commit. A reader
sees a run's files only when its record says ``done`` (or when it has no record at all: files
of streaming runs and of versions before records), and not when a later ``replace`` run wrote
to the same directory. Everything here goes through Beam's ``FileSystems`` (gs://, s3://,
azfs://) and, for local paths, through ``os`` with owner-only modes (``privacy.private_files``).

``PSTREAM_COMMIT_STEP_DELAY`` (seconds; tests only) sleeps after each step of a commit, so that a
test can kill a run between two renames.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import NamedTuple

from privacy.private_files import open_private, private_dirs

_LOG = logging.getLogger(__name__)

RECORDS = ".pstream/runs"
TEMP_PREFIX = ".temp-"
WRITE_MODES = ("replace", "append", "fail")
DEFAULT_WRITE_MODE = "replace"
RUNNING, COMMITTING, DONE = "running", "committing", "done"
# Runners that run the job inside the launching process: that process's life is the run's.
IN_PROCESS_RUNNERS = {"FnApiRunner", "DirectRunner", "SwitchingDirectRunner", "BundleBasedDirectRunner",
                      "TestDirectRunner"}
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
RUN_FILE = re.compile(rf"^(?P<label>\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d)-(?P<kind>[a-z][a-z-]*)-(?P<run>{_UUID})"
                      rf"---(?P<shard>\d+)(?:_\d+)?\.jsonl$")
_TEMP_RUN = re.compile(rf"^\.temp-(?P<run>{_UUID})(?:$|-[0-9a-f]{{32}}\.jsonl\.tmp$)")


class OutputExistsError(RuntimeError):
    """``--write_mode=fail`` and the output already holds a committed run."""


class TempFile(NamedTuple):
    """A finished temp file and the final name it gets: ``<directory>/<partition>/<label>-<kind>-<run>---<n>.jsonl``."""

    directory: str
    partition: str
    label: str
    kind: str
    path: str


def run_file_name(label: str, kind: str, run_id: str, shard: int) -> str:
    """The reference's batch file name: ``<yyyy-MM-ddTHH:mm:ss>-<kind>-<run uuid>---<shard>.jsonl``."""
    return f"{label}-{kind}-{run_id}---{shard}.jsonl"


def temp_dir(directory: str, run_id: str) -> str:
    """Where a run writes its temp files for one output directory (hidden, run-scoped)."""
    return _join(directory, TEMP_PREFIX + run_id)


# -- storage: local paths through os (owner-only), URIs through Beam's FileSystems ----------------
def _remote(path: str) -> bool:
    return "://" in path


def _join(base: str, rel: str) -> str:
    return base.rstrip("/") + "/" + rel if rel else base.rstrip("/")


def _rel(root: str, path: str) -> str:
    return path[len(root.rstrip("/")) + 1:]


def _fs():
    from apache_beam.io.filesystems import FileSystems
    return FileSystems


def _list_tree(root: str) -> dict[str, float]:
    """Every file under root (hidden ones included): path relative to root -> modification time."""
    if not _remote(root):
        found = {}
        for directory, _, files in os.walk(root):
            for name in files:
                path = os.path.join(directory, name)
                try:
                    found[os.path.relpath(path, root).replace(os.sep, "/")] = os.stat(path).st_mtime
                except FileNotFoundError:
                    pass  # renamed or deleted meanwhile
        return found
    matched = _fs().match([_join(root, "**")])[0].metadata_list
    prefix = root.rstrip("/") + "/"
    return {_rel(root, m.path): float(m.last_updated_in_seconds or 0) for m in matched if m.path.startswith(prefix)}


def _read(path: str) -> bytes | None:
    try:
        if not _remote(path):
            with open(path, "rb") as handle:
                return handle.read()
        with _fs().open(path) as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except Exception:  # remote stores raise their own "not found"
        if _exists(path):
            raise
        return None


def _exists(path: str) -> bool:
    if not _remote(path):
        return os.path.exists(path)
    try:
        return _fs().exists(path)
    except Exception:  # Beam's Azure file system raises for a missing blob instead of answering False
        return False


def _write(path: str, data: bytes) -> None:
    """Replace a small file in one step: readers see the old or the new content."""
    if _remote(path):  # an object appears when its upload completes
        with _fs().create(path, mime_type="application/json") as handle:
            handle.write(data)
        return
    temp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open_private(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def _rename(source: str, target: str) -> None:
    if _remote(source):
        _fs().rename([source], [target])
        return
    private_dirs(os.path.dirname(os.path.abspath(target)))
    os.rename(source, target)


def _delete(paths: list[str]) -> None:
    """Delete files; a file that is already gone is not an error."""
    local = [p for p in paths if not _remote(p)]
    for path in local:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
    remote = [p for p in paths if _remote(p)]
    if remote:
        try:
            _fs().delete(remote)
        except Exception:
            still = [p for p in remote if _exists(p)]
            if still:
                _fs().delete(still)


def _remove_empty_dirs(root: str, rel_dirs: set[str]) -> None:
    """Remove local directories (relative to root) that are empty, deepest first."""
    if _remote(root):
        return
    for rel in sorted(rel_dirs, key=lambda d: -d.count("/")):
        try:
            os.rmdir(os.path.join(root, rel))
        except OSError:
            pass


def _remove_empty_tree(directories: list[str]) -> None:
    """Remove local directory trees that hold no files any more (temp directories after a commit)."""
    for top in directories:
        if _remote(top) or not os.path.isdir(top):
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda entry: -len(entry[0])):
            try:
                os.rmdir(directory)
            except OSError:
                pass


def _pause() -> None:
    delay = os.environ.get("PSTREAM_COMMIT_STEP_DELAY")
    if delay:
        time.sleep(float(delay))


# -- who runs a run: liveness ---------------------------------------------------------------------
def _process_start(pid: int, missing: str | None = None) -> str | None:
    """'<boot id>:<start tick>' of a Linux process; ``missing`` when there is no such process;
    None when it cannot be told (no /proc, or not allowed to read it)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            boot = handle.read().strip()
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return f"{boot}:{fields[19]}"
    except FileNotFoundError:
        return missing if os.path.isdir("/proc/self") else None
    except (OSError, IndexError):
        return None


def owner_of_this_process(runner: str) -> dict:
    """Who runs a run launched here: host, pid, process start, runner; ``checkable`` when the
    run lives exactly as long as this process (an in-process runner)."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "process": _process_start(pid), "runner": runner,
            "checkable": runner in IN_PROCESS_RUNNERS}


def is_dead(owner: dict) -> bool:
    """True only when the run provably ended: same host, in-process runner, its process gone."""
    if not owner.get("checkable") or owner.get("host") != socket.gethostname():
        return False  # another machine or a job service (Dataflow, Flink): we cannot know
    pid = int(owner.get("pid") or 0)
    if pid <= 0:
        return False
    if owner.get("process"):
        now = _process_start(pid, missing="gone")
        if now is not None:
            return now != owner["process"]   # gone, or the pid now belongs to a process started later
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# -- records --------------------------------------------------------------------------------------
def _record_path(root: str, run_id: str) -> str:
    return _join(root, f"{RECORDS}/{run_id}.json")


def _read_records(root: str, names: list[str] | None = None) -> dict[str, dict]:
    """The run records of a root by run id (unreadable ones are skipped with a warning)."""
    if names is None:
        names = [p for p in _list_tree(_join(root, RECORDS)) if "/" not in p]
    records = {}
    for name in names:
        if not (name.endswith(".json") and re.fullmatch(_UUID, name[:-5])):
            continue
        data = _read(_join(root, f"{RECORDS}/{name}"))
        if data is None:
            continue
        try:
            record = json.loads(data)
            records[record["run"]] = record
        except (ValueError, KeyError, TypeError):
            _LOG.warning("%s: run record %s cannot be read; left as it is", root, name)
    return records


def _write_record(root: str, record: dict) -> None:
    path = _record_path(root, record["run"])
    if not _remote(path):
        private_dirs(os.path.dirname(os.path.abspath(path)))
    _write(path, json.dumps(record, sort_keys=True).encode())
    _pause()


def _under(rel: str, directory: str) -> bool:
    return directory in ("", ".") or rel == directory or rel.startswith(directory.rstrip("/") + "/")


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


class _View:
    """Which run files of a root are visible, from its records and a listing."""

    def __init__(self, root: str, files: dict[str, float] | None = None):
        self.root = root
        self.files = _list_tree(root) if files is None else files   # rel -> modification time
        self.records = _read_records(root, [p[len(RECORDS) + 1:] for p in self.files
                                            if p.startswith(RECORDS + "/") and p.count("/") == 2])
        self.replacers = sorted(((r["committed_at"], r["run"], r.get("directories", []))
                                 for r in self.records.values()
                                 if r.get("state") == DONE and r.get("mode") == "replace"), reverse=True)

    def committed_at(self, rel: str, run_id: str) -> float:
        """When the run of a file committed: from its record, or (a run without one: streaming,
        older versions) when the file was written."""
        record = self.records.get(run_id)
        return float(record.get("committed_at") or 0) if record else self.files.get(rel, 0.0)

    def replaced(self, rel: str, run_id: str) -> bool:
        """A replace run that committed later wrote to the directory of this file."""
        mine = self.committed_at(rel, run_id)
        for committed, other, directories in self.replacers:
            if (committed, other) <= (mine, run_id):
                break
            if other != run_id and any(_under(rel, d) for d in directories):
                return True
        return False

    def visible(self, rel: str) -> bool:
        if _hidden(rel):
            return False
        match = RUN_FILE.match(rel.rsplit("/", 1)[-1])
        if not match:
            return rel.endswith(".jsonl")
        record = self.records.get(match["run"])
        if record is not None and record.get("state") != DONE:
            return False
        return not self.replaced(rel, match["run"])

    def run_files(self) -> list[tuple[str, str]]:
        """(relative path, run id) of every final-named file."""
        found = []
        for rel in self.files:
            if not _hidden(rel):
                match = RUN_FILE.match(rel.rsplit("/", 1)[-1])
                if match:
                    found.append((rel, match["run"]))
        return found


# -- readers ----------------------------------------------------------------------------------------
def find_root(directory: str) -> str | None:
    """The nearest directory at or above ``directory`` that holds run records, if any."""
    path = directory.rstrip("/")
    if not _remote(path):
        path = os.path.abspath(path)
        while True:
            if os.path.isdir(os.path.join(path, RECORDS)):
                return path
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent
    scheme, rest = path.split("://", 1)
    parts = rest.split("/")
    for end in range(len(parts), 0, -1):
        candidate = f"{scheme}://{'/'.join(parts[:end])}"
        if _list_tree(_join(candidate, RECORDS)):
            return candidate
    return None


def committed_files(paths: list[str], every: bool = False) -> list[str]:
    """The ``*.jsonl`` files that directories and globs name, of committed runs only; sorted.

    A directory is read recursively (``date=`` partitions); hidden files and directories (temp
    files, run records) are never returned. A file of a run whose record is not ``done``
    (running, committing, killed) is left out, and so is a file of a run that a later ``replace``
    run superseded in its directory. A path that names a file is returned as given.
    ``every=True``: every final-named file, committed or not (for ``forget``, which must reach
    copies that no reader sees yet); hidden temp files are still not listed.
    """
    import glob as globbing

    roots: dict[str, str | None] = {}
    views: dict[str, _View] = {}

    def visible(path: str) -> bool:
        full = _normal(path)
        directory = full.rsplit("/", 1)[0]
        if directory not in roots:
            roots[directory] = find_root(directory)
        root = roots[directory]
        if root is None or every:
            return not _hidden(_rel(root, full) if root else full.rsplit("/", 1)[-1])
        if root not in views:
            views[root] = _View(root)
        return views[root].visible(_rel(root, full))

    chosen: set[str] = set()
    for path in paths:
        wildcard = any(ch in path for ch in "*?[")
        if _remote(path):
            if not wildcard and path.endswith(".jsonl"):
                chosen.add(path)
                continue
            pattern = path if wildcard else _join(path, "**")
            candidates = [m.path for m in _fs().match([pattern])[0].metadata_list if m.path.endswith(".jsonl")]
        elif os.path.isdir(path):
            candidates = globbing.glob(os.path.join(path, "**", "*.jsonl"), recursive=True)
        elif wildcard:
            candidates = globbing.glob(path, recursive=True)
        else:
            if os.path.isfile(path) or path.endswith(".jsonl"):
                chosen.add(path)  # a file named by the caller (a missing one fails when it is opened)
            continue              # a directory that does not exist (yet) holds no committed file
        chosen.update(c for c in candidates if visible(c))
    return sorted(chosen)


# -- a run ------------------------------------------------------------------------------------------
@dataclass
class Report:
    """What begin() or recover() did, for the run's summary."""

    rolled_back: list[str] = field(default_factory=list)     # killed runs whose leftovers were removed
    completed: list[str] = field(default_factory=list)       # killed after their commit: finished
    replaced_runs: list[str] = field(default_factory=list)   # runs superseded by replace runs, files deleted
    replaced_files: int = 0                                  # files of superseded runs deleted
    temp_files: int = 0                                      # temp files of dead runs deleted
    kept: list[str] = field(default_factory=list)            # leftovers that cannot be proven dead

    def merge(self, other: "Report") -> "Report":
        self.rolled_back += other.rolled_back
        self.completed += other.completed
        self.replaced_runs += other.replaced_runs
        self.replaced_files += other.replaced_files
        self.temp_files += other.temp_files
        self.kept += other.kept
        return self


@dataclass
class OutputRun:
    """One batch run's identity and where it commits. Picklable: Beam's DoFns carry it.

    ``roots`` maps each commit root to the directories (relative to it) the run writes there:
    the output root first (the *primary*: its ``done`` record is the commit), then each exporter
    directory outside it (a root of its own, so that its readers see whole runs too).
    """

    run_id: str
    mode: str
    roots: dict[str, list[str]]
    owner: dict
    started: float

    @classmethod
    def create(cls, root: str, directories: list[str], mode: str = DEFAULT_WRITE_MODE, run_id: str | None = None,
               started: float | None = None, runner: str = "FnApiRunner") -> "OutputRun":
        if mode not in WRITE_MODES:
            raise ValueError(f"write mode '{mode}': use one of {', '.join(WRITE_MODES)}")
        run = cls(run_id or str(uuid.uuid4()), mode, {_normal(root): []}, owner_of_this_process(runner),
                  time.time() if started is None else started)
        for directory in directories:
            run.add_directory(_join(root, directory) if directory else root)
        return run

    @property
    def primary(self) -> str:
        return next(iter(self.roots))

    def add_directory(self, directory: str) -> str:
        """Register an output directory (a path or URI); returns it as the run writes it."""
        directory = _normal(directory)
        primary = self.primary
        if directory == primary or directory.startswith(primary + "/"):
            root = primary
        else:
            root = next((r for r in self.roots if directory == r or directory.startswith(r + "/")), directory)
            self.roots.setdefault(root, [])
        rel = _rel(root, directory) if directory != root else ""
        if rel not in self.roots[root]:
            self.roots[root].append(rel)
        return directory

    def directory(self, directory: str) -> str:
        """A registered output directory, normalized; ValueError for one the run does not write."""
        normal = _normal(directory)
        for root, rels in self.roots.items():
            if any(normal == _join(root, rel) for rel in rels):
                return normal
        raise ValueError(f"{directory}: not an output directory of run {self.run_id} (register it with "
                         "OutputRun.create or add_directory before building the graph)")

    def root_of(self, directory: str) -> str:
        directory = _normal(directory)
        return max((r for r in self.roots if directory == r or directory.startswith(r + "/")), key=len)

    def _record(self, root: str, state: str, **extra) -> dict:
        return {"run": self.run_id, "state": state, "mode": self.mode, "primary": self.primary,
                "is_primary": root == self.primary, "roots": list(self.roots), "directories": self.roots[root],
                "owner": self.owner, "started": self.started, **extra}

    # -- begin --------------------------------------------------------------------------------------
    def begin(self) -> Report:
        """Before any temp file: write this run's record in every root, remove what dead runs
        left, and refuse (``fail`` mode) an output that already holds a committed run."""
        report = Report()
        for root in self.roots:
            _write_record(root, self._record(root, RUNNING))
        for root in self.roots:
            report.merge(recover(root, self.run_id))
        if self.mode == "fail":
            self.refuse_existing()
        return report

    def refuse_existing(self) -> None:
        """OutputExistsError if a directory of this run holds a committed run's files."""
        for root, directories in self.roots.items():
            view = _View(root)
            taken = sorted({run for rel, run in view.run_files()
                            if run != self.run_id and view.visible(rel) and any(_under(rel, d) for d in directories)})
            if taken:
                raise OutputExistsError(
                    f"--write_mode=fail: {root} already holds the output of run {taken[0]}"
                    f"{f' and {len(taken) - 1} more' if len(taken) > 1 else ''}; use --write_mode=replace "
                    "(the default: the new run's files replace the old ones when it commits) or append")

    # -- commit -------------------------------------------------------------------------------------
    def finals(self, temps: list[TempFile]) -> list[tuple[str, str]]:
        """(temp path, final path) for every temp file: shards numbered per directory, partition, label."""
        groups: dict[tuple[str, str, str, str], list[str]] = {}
        for temp in temps:
            groups.setdefault((_normal(temp.directory), temp.partition, temp.label, temp.kind), []).append(temp.path)
        pairs = []
        for (directory, partition, label, kind), paths in sorted(groups.items()):
            target = _join(directory, partition)
            for shard, path in enumerate(sorted(set(paths))):
                pairs.append((path, _join(target, run_file_name(label, kind, self.run_id, shard))))
        return pairs

    def commit(self, temps: list[TempFile]) -> tuple[list[str], Report]:
        """Rename every temp file into place and commit, in one step for every output; then clean
        up. Returns the final paths and what the clean-up did. Idempotent (a retried commit
        finishes the renames a first attempt began)."""
        pairs = self.finals(temps)
        report = Report()
        mine = _read_records(self.primary, [f"{self.run_id}.json"]).get(self.run_id)
        if mine is not None and mine.get("state") == DONE:
            return [final for _, final in pairs], report  # a retried commit of a run that committed
        if self.mode == "fail":
            try:
                self.refuse_existing()
            except OutputExistsError:
                self.abort()
                raise
        by_root: dict[str, list[tuple[str, str]]] = {root: [] for root in self.roots}
        for temp, final in pairs:
            by_root[self.root_of(final)].append((temp, final))
        for root, root_pairs in by_root.items():
            _write_record(root, self._record(root, COMMITTING,
                                             files=[[_rel(root, t), _rel(root, f)] for t, f in root_pairs]))
        for temp, final in pairs:
            if _exists(final) and not _exists(temp):
                continue  # renamed by an earlier attempt of this commit
            _rename(temp, final)
            _pause()
        committed_at = time.time()
        for root in self.roots:  # the primary first: its done record is the commit
            _write_record(root, self._record(root, DONE, committed_at=committed_at))
        for root, rels in self.roots.items():
            report.merge(recover(root, self.run_id))
            _remove_empty_tree([temp_dir(_join(root, rel), self.run_id) for rel in rels])
        return [final for _, final in pairs], report

    def abort(self) -> None:
        """Remove this run's temp files, renamed files and records (the job failed or was refused)."""
        for root in self.roots:
            record = _read_records(root, [f"{self.run_id}.json"]).get(self.run_id)
            if record is not None and record.get("state") == DONE:
                continue
            _roll_back(root, record or self._record(root, RUNNING), _list_tree(root))


def _normal(path: str) -> str:
    path = path.rstrip("/")
    return path if _remote(path) else os.path.abspath(path)


# -- recovery -------------------------------------------------------------------------------------
def _roll_back(root: str, record: dict, files: list[str]) -> int:
    """Delete what a run that never committed left in a root: temp files, renamed files, record."""
    run_id = record["run"]
    doomed = [rel for rel in files if _temp_run(rel) == run_id]   # temp files, half-written records
    doomed += [rel for rel in files if not _hidden(rel) and (m := RUN_FILE.match(rel.rsplit("/", 1)[-1]))
               and m["run"] == run_id]
    _delete([_join(root, rel) for rel in doomed])
    _remove_empty_dirs(root, {_temp_dir_of(rel) for rel in doomed
                              if _temp_run(rel) == run_id and not rel.startswith(RECORDS + "/")})
    _delete([_record_path(root, run_id)])
    return len(doomed)


def _temp_run(rel: str) -> str | None:
    """The run id of a temp file (in ``.temp-<run>/``, named ``.temp-<run>-<hex>.jsonl.tmp``, or a
    record being written: ``.pstream/runs/<run>.json.<hex>.tmp``); '' for a temp file without
    one; None for a file that is not a temp file."""
    if rel.startswith(RECORDS + "/") and rel.endswith(".tmp"):
        match = re.match(rf"^({_UUID})\.json\.[0-9a-f]{{32}}\.tmp$", rel[len(RECORDS) + 1:])
        return match.group(1) if match else None
    for part in rel.split("/"):
        if part.startswith(TEMP_PREFIX):
            match = _TEMP_RUN.match(part)
            return match["run"] if match else ""
    return None


def _temp_dir_of(rel: str) -> str:
    parts = rel.split("/")
    index = next(i for i, part in enumerate(parts) if part.startswith(TEMP_PREFIX))
    return "/".join(parts[: index + 1])


def _primary_state(record: dict) -> str | None:
    primary = record.get("primary")
    other = _read_records(primary, [f"{record['run']}.json"]).get(record["run"]) if primary else None
    return other.get("state") if other else None


def recover(root: str, current_run: str | None = None) -> Report:
    """Clean a root: roll back runs that provably died before their commit, finish those that died
    after it, delete files that later ``replace`` runs superseded, and delete temp files of runs
    that are gone. Runs that may still be running (this host's live processes, other hosts, job
    services) are never touched, and are listed in ``Report.kept``."""
    report = Report()
    root = _normal(root)
    view = _View(root)
    for run_id, record in sorted(view.records.items()):
        if run_id == current_run or record.get("state") == DONE:
            continue
        if not is_dead(record.get("owner") or {}):
            owner = record.get("owner") or {}
            report.kept.append(f"run {run_id} ({owner.get('runner')} on {owner.get('host')}, pid {owner.get('pid')}, "
                               f"{record.get('state')}): it may still be running")
            continue
        if not record.get("is_primary", True) and _primary_state(record) == DONE:
            primary = _read_records(record["primary"], [f"{run_id}.json"])[run_id]
            _write_record(root, {**record, "state": DONE, "committed_at": primary["committed_at"], "files": None})
            report.completed.append(run_id)
            continue
        report.temp_files += _roll_back(root, record, view.files)
        report.rolled_back.append(run_id)
        for other in (record.get("roots") or [])[1:] if record.get("is_primary", True) else []:
            if _normal(other) != root:
                try:  # an exporter's directory of the dead run: its readers never saw the run anyway
                    _roll_back(_normal(other), record, _list_tree(_normal(other)))
                except Exception as exc:  # not reachable with this run's credentials: its next run cleans it
                    _LOG.warning("run %s: leftovers in %s not removed: %s", run_id, other, type(exc).__name__)
    view = _View(root)
    live = {run for run, record in view.records.items() if record.get("state") != DONE}
    superseded = [(rel, run) for rel, run in view.run_files() if run not in live and view.replaced(rel, run)]
    _delete([_join(root, rel) for rel, _ in superseded])
    report.replaced_files += len(superseded)
    report.replaced_runs += sorted({run for _, run in superseded})
    remaining = {run for _, run in view.run_files()} - {run for _, run in superseded}
    for run_id, record in view.records.items():
        if record.get("state") == DONE and run_id not in remaining and _fully_replaced(view, record):
            _delete([_record_path(root, run_id)])
    leftovers, unknown = [], 0
    for rel in view.files:
        run_id = _temp_run(rel)
        if run_id is None:
            continue
        if not run_id:
            unknown += 1
        elif run_id not in live and (not rel.startswith(RECORDS + "/") or run_id in view.records):
            leftovers.append(rel)  # no record (gone), or a done run's: nothing will rename it any more
    _delete([_join(root, rel) for rel in leftovers])
    _remove_empty_dirs(root, {_temp_dir_of(rel) for rel in leftovers if not rel.startswith(RECORDS + "/")})
    report.temp_files += len(leftovers)
    if unknown:
        report.kept.append(f"{unknown} temp files without a run id under {root} (a streaming writer's?)")
    return report


def _fully_replaced(view: _View, record: dict) -> bool:
    """Every directory of a done run was written by a later replace run: nothing of it is visible."""
    mine = (float(record.get("committed_at") or 0), record["run"])
    directories = record.get("directories") or [""]
    return all(any((committed, other) > mine and any(_under(d, r) for r in dirs)
                   for committed, other, dirs in view.replacers) for d in directories)
