"""The audit log: an append-only, tamper-evident JSONL file of who did what, and when.

    from controlplane.audit import AuditLog
    log = AuditLog("/tmp/demo/audit.jsonl")
    log.append("contract", "approve", user="bob", target="acme/Shop/1.1.0", reason="fine",
               details={"from": "IN_REVIEW", "to": "APPROVED"})
    log.append("subjects", "forget", user="ann", counts={"subjects": 2, "keysDeleted": 7})
    problems = log.verify()           # [] when intact; else one message per problem, naming the entry
    entries = log.entries(since_ms=..., kind="contract")

One JSON object a line, in order::

    {"seq": 3, "at": "2026-12-01T23:41:07.123Z", "kind": "contract", "action": "approve", "user": "bob",
     "target": "acme/Shop/1.1.0", "reason": "fine", "counts": {}, "details": {...},
     "prev": "<hash of entry 2>", "hash": "<sha256 of this entry without 'hash'>"}

Every entry carries the hash of the one before it (the first one 64 zeros) and its own hash, a
SHA-256 of its canonical JSON (sorted keys, no spaces). ``verify`` recomputes the chain: an edited
entry no longer matches its hash, or (when the editor recomputed it) the next entry's ``prev``;
a deleted or reordered entry breaks the sequence numbers and the chain; a deleted last entry is
found through the head file ``<log>.head`` (the last entry's number and hash, replaced
atomically after each append). Someone who can rewrite the whole file and its head can rewrite
history: keep the head hash elsewhere too (``pstream audit verify`` prints it; ``--expect-head``
checks it) for that.

What an entry may hold: who (the user name), when, what (an action, a contract reference, a
store's kind and path without credentials), a reason, and counts. Never personal values, data
subject ids or key material: a data-subject request is logged with counts only.

Appending is serialised with ``flock`` on the log file; the file and its head are 0600
(``privacy.private_files``). An append to a log whose last entry does not match its head is
refused (``AuditError``): run ``pstream audit verify``; so is one to a log with entries and no
head file (a deleted head would otherwise be written anew, hiding entries cut off its end). An
append stopped after its line and before its head (a crash) leaves a log one entry past its
head, chained onto it: ``verify`` says so, and the next append completes the head. Lines are
split at ``\n`` only, so a reason holding U+2028 is one entry, not a false alarm.

Where the log lives: ``<project>/audit.jsonl`` for the project's commands (contracts, purposes);
for data-subject requests and key purges (``pstream subjects forget|export``, ``pstream keys
purge``), which work on a pipeline's output root and key store without a project, see
``log_for_store``.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from privacy.private_files import private_file, replace_private

AUDIT_ENV = "PSTREAM_AUDIT_LOG"
FILE_NAME = "audit.jsonl"
GENESIS = "0" * 64
KINDS = ("contract", "purpose", "subjects", "keys")
_TAIL_BYTES = 1 << 20   # the last entry is found in the last MiB of the file
MAX_ENTRY_BYTES = 64 << 10   # a longer entry is refused: the tail must always hold the last one


class AuditError(ValueError):
    """The audit log cannot be appended to or read; the message says why."""


def entry_hash(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                          .encode("utf-8")).hexdigest()


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


class AuditLog:
    """One audit log file (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")

    def append(self, kind: str, action: str, user: str, target: str | None = None, reason: str | None = None,
               counts: dict | None = None, details: dict | None = None, now: float | None = None) -> dict:
        """Add one entry (under an exclusive lock) and return it; AuditError if the log's end does not match its head."""
        if kind not in KINDS:
            raise AuditError(f"unknown audit kind '{kind}' (one of {', '.join(KINDS)})")
        private_file(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            last = _last_entry(fd, self.path)
            head = self.head()
            if _interrupted(last, head):   # the last append wrote its entry, not its head: complete it
                head = (last["seq"], last["hash"])
            _check_end(self.path, self.head_path, last, head)
            seq = (last or {}).get("seq", 0) + 1
            ms = int((time.time() if now is None else now) * 1000)
            entry = {"seq": seq, "at": iso_ms(ms), "kind": kind, "action": action, "user": user}
            if target is not None:
                entry["target"] = target
            if reason:
                entry["reason"] = reason
            entry["counts"] = dict(counts or {})
            if details:
                entry["details"] = dict(details)
            entry["prev"] = (last or {}).get("hash", GENESIS)
            entry["hash"] = entry_hash(entry)
            line = (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            if len(line) > MAX_ENTRY_BYTES:
                raise AuditError(f"an audit entry of {len(line):,} bytes is too long (at most {MAX_ENTRY_BYTES:,}): "
                                 "shorten the reason")
            os.write(fd, line)
            os.fsync(fd)
            replace_private(self.head_path, json.dumps({"seq": seq, "hash": entry["hash"]}).encode("ascii") + b"\n")
            return entry
        finally:
            os.close(fd)   # releases the lock

    def check(self) -> None:
        """AuditError unless an entry can be appended now (the file can be opened, its end matches its head)."""
        try:
            private_file(self.path)
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise AuditError(f"{self.path}: the audit log cannot be written: {exc.strerror}") from None
        try:
            last, head = _last_entry(fd, self.path), self.head()
        finally:
            os.close(fd)
        if not _interrupted(last, head):   # else the next append completes it
            _check_end(self.path, self.head_path, last, head)

    def head(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self.head_path.read_text())
            return int(data["seq"]), str(data["hash"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            raise AuditError(f"{self.head_path}: not a head file (edited?)") from None

    def lines(self) -> list[str]:
        """The file's lines, split at "\\n" only (an entry may hold U+2028 or U+0085, which
        ``str.splitlines`` would split at); a line that is not UTF-8 keeps U+FFFD in its place (it
        is then not an entry)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")
        if lines and not lines[-1]:
            lines.pop()
        return [line.decode("utf-8", "replace") for line in lines]

    def verify(self, expect_head: str | None = None) -> list[str]:
        """Every problem found, one message each naming the entry (empty: the log is intact)."""
        problems: list[str] = []
        prev_hash, expected_seq, last = GENESIS, 1, None
        try:
            head = self.head()
        except AuditError as exc:
            problems.append(str(exc))
            head = None
        for number, line in enumerate(self.lines(), start=1):
            try:
                entry = json.loads(line)
                seq = entry["seq"]
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {number}: not an audit entry (edited or damaged)")
                prev_hash, expected_seq = None, expected_seq + 1
                continue
            name = f"entry {seq} (line {number})"
            if seq != expected_seq:
                problems.append(f"{name}: expected entry {expected_seq} here: an entry was deleted or entries "
                                "were reordered")
            if entry.get("hash") != entry_hash(entry):
                problems.append(f"{name} was edited: its content does not match its hash")
            elif prev_hash is not None and entry.get("prev") != prev_hash:
                problems.append(f"{name}: its 'prev' is not the hash of the entry before it: an entry before it "
                                "was edited, deleted or moved")
            prev_hash, expected_seq, last = entry.get("hash"), (seq if isinstance(seq, int) else expected_seq) + 1, entry
        if _interrupted(last, head):
            problems.append(f"the head file names entry {head[0]} as the last one, but the log ends with entry "
                            f"{last.get('seq')}, which follows it: an append was interrupted before it wrote the "
                            "head file (the next append completes it), or an entry was added by hand")
        elif head is not None and (last is None or (last.get("seq"), last.get("hash")) != head):
            problems.append(f"the head file names entry {head[0]} as the last one, but the log ends "
                            f"{'empty' if last is None else 'with entry ' + str(last.get('seq'))}: "
                            "entries at the end were deleted, or edited")
        if head is None and last is not None:
            problems.append(f"{self.head_path} is missing: the end of the log cannot be checked")
        if expect_head is not None and (last is None or last.get("hash") != expect_head):
            problems.append(f"the last entry's hash is not {expect_head} (--expect-head)")
        return problems

    def entries(self, since_ms: int | None = None, kind: str | None = None) -> list[dict]:
        """The entries (those that parse), optionally from a moment on and of one kind."""
        found = []
        for line in self.lines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if kind and entry.get("kind") != kind:
                continue
            if since_ms is not None and _entry_ms(entry) < since_ms:
                continue
            found.append(entry)
        return found


def _entry_ms(entry: dict) -> int:
    try:
        return int(datetime.strptime(entry["at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
                   .timestamp() * 1000)
    except (KeyError, ValueError, TypeError):
        return 0


def _interrupted(last: dict | None, head: tuple[int, str] | None) -> bool:
    """Whether the log ends one entry past its head with an entry that chains onto it: an append
    that wrote its line and was stopped before it replaced the head file."""
    return (head is not None and isinstance(last, dict) and last.get("seq") == head[0] + 1
            and last.get("prev") == head[1] and last.get("hash") == entry_hash(last))


def _check_end(path: Path, head_path: Path, last: dict | None, head: tuple[int, str] | None) -> None:
    """AuditError unless the log's last entry is the one its head names (both absent: a new log)."""
    if head is None and last is not None:
        raise AuditError(f"{head_path} is missing but {path} has entries: the end of the log cannot be checked "
                         "(entries at its end may have been deleted); run `pstream audit verify`")
    if head is not None and (last is None or (last.get("seq"), last.get("hash")) != head):
        raise AuditError(f"{path} does not end with the entry its head file names (entry {head[0]}): "
                         "an entry was deleted or the file replaced; run `pstream audit verify`")


def _last_entry(fd: int, path: Path) -> dict | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - _TAIL_BYTES)
    data = os.pread(fd, size - start, start)
    lines = [line for line in data.split(b"\n") if line.strip()]
    try:
        last = json.loads(lines[-1])
        if isinstance(last, dict):
            return last
    except (ValueError, IndexError):
        pass
    raise AuditError(f"{path}: its last line is not an audit entry: run `pstream audit verify`") from None


def log_for_project(project_dir: str | os.PathLike) -> AuditLog:
    """``<project>/audit.jsonl`` (or ``$PSTREAM_AUDIT_LOG``)."""
    return AuditLog(os.environ.get(AUDIT_ENV) or Path(project_dir) / FILE_NAME)


def log_for_store(output: str | None, key_store_uri: str | None, given: str | None = None) -> AuditLog:
    """The audit log of a data-subject request or key purge on an output root and key store, the first of:

    1. ``given`` (``--audit-log``) or ``$PSTREAM_AUDIT_LOG``;
    2. the project's ``audit.jsonl`` when the output root is a project pipeline's ``<project>/out/<id>``;
    3. ``audit.jsonl`` next to a SQLite key store (``sqlite:///srv/keys/keystore.sqlite`` ->
       ``/srv/keys/audit.jsonl``): the log stays with the keys it speaks of;
    4. the output root's ``audit.jsonl`` when it is a local directory (a PostgreSQL key store);
    5. the default project directory's (``$PSTREAM_PROJECT_DIR`` or ``~/.config/pstream``).
    """
    if given or os.environ.get(AUDIT_ENV):
        return AuditLog(given or os.environ[AUDIT_ENV])
    local = output if output and "://" not in output and os.path.isdir(output) else None
    if local:
        root = Path(local).resolve()
        if root.parent.name == "out" and (root.parent.parent / "project.yaml").is_file():
            return AuditLog(root.parent.parent / FILE_NAME)
    if key_store_uri and key_store_uri.startswith("sqlite://"):
        return AuditLog(Path(key_store_uri[len("sqlite://"):]).resolve().parent / FILE_NAME)
    if key_store_uri is None and local and (Path(local) / "keystore.sqlite").exists():
        return AuditLog(Path(local).resolve() / FILE_NAME)
    if local:
        return AuditLog(Path(local).resolve() / FILE_NAME)
    from controlplane.project import default_project_dir
    return AuditLog(default_project_dir() / FILE_NAME)


def store_label(uri: str | None) -> str | None:
    """A key store URI without credentials (``postgresql://user:secret@db/keys`` -> ``postgresql://db/keys``)."""
    if not uri:
        return None
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path.split('?')[0]}"
