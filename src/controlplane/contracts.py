"""The project's contract registry (the only one): contracts by reference, never by path, and
their life cycle.

    from controlplane.contracts import ContractRegistry
    registry = ContractRegistry(project_dir)
    contract = registry.get("acme/Shop/1.0.0")       # contracts.Contract, or ContractError
    registry.path("acme/Shop/1.0.0")                 # the file it comes from, or None
    registry.refs()                                  # every reference it can resolve
    contract, report = registry.create("shop.yaml", user="ann")      # stored as DRAFT
    record, entry, contract = registry.transition("acme/Shop/1.0.0", "submit", user="ann")
    registry.transition("acme/Shop/1.0.0", "approve", user="bob")    # not by ann: LifecycleError

A user's own contracts live in the project: ``<project>/contracts/<handle>/<name>/<version>.yaml``;
then come the directories of ``$CONTRACTS_PATH`` (not for the gateway: ``contracts_path=False``)
and the shipped contracts (``src/contracts/``, always ACTIVE and read-only here), in that order.
A reference is checked before any file is looked at (``check_ref``: ``contracts.loader.REF_PATTERN``,
three parts of letters, digits, '_', '.' and '-', none starting with a dot, a numeric version, at
most ``MAX_REF_CHARS`` characters), so no reference can name a path outside those directories.

A file is read by ``load_contract_file``: opened without blocking, refused if it is not a regular
file or larger than the bound before a byte is read, strict YAML (no anchors or aliases), the
published contract schema, and it must declare the reference it is filed under. The gateway's
cache (``gateway.registry.ContractCache``) reads through ``locate`` and ``read_at`` of this
class, so the gateway and the command line cannot disagree about a contract.

Life cycle (``controlplane.lifecycle``): ``create`` validates a file with the strict loader,
refuses a reference that exists and a version number too small for its changes against the
latest earlier version (``contracts.compat``, the report names each change), and stores it as
DRAFT with a lifecycle record ``<version>.lifecycle.json`` next to it (both written atomically,
0600). ``transition`` checks the action against the state and the people (no self-approval),
writes the record, then the YAML's ``state:`` line; creates and transitions of one handle/name hold
an exclusive lock on its directory, so two reviewers at the same moment do not both decide. For
a contract with a record, the record's state is the contract's state, and a file whose content
changed after ``create`` is refused (``edited after pstream contracts create``): an approved
contract is the one that was reviewed.
A project contract without a record (a file put there by hand) keeps the state its file says.

Nothing is cached: ``get`` reads the file each time, so a contract added to the project is
seen at once; callers that serve many requests (the gateway) keep their own bounded cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from contracts.loader import (MAX_CONTRACT_BYTES, PACKAGE_DIR, REF_PATTERN, ContractError, parse_contract,
                              read_contract_file)
from controlplane.lifecycle import DRAFT, LifecycleError, Record

MAX_REF_CHARS = 231   # the longest reference REF_PATTERN allows: 100 + 1 + 100 + 1 + 29
RECORD_SUFFIX = ".lifecycle.json"
_STATE_LINE = re.compile(r"^state:[ \t]*['\"]?([A-Z_]+)['\"]?[ \t]*(#.*)?$", re.MULTILINE)
_REF_LINE = re.compile(r"^ref:.*$", re.MULTILINE)


def check_ref(ref) -> tuple[str, str, str]:
    """(handle, name, version) of a well-formed reference; ContractError (a bounded message) otherwise."""
    match = REF_PATTERN.fullmatch(ref) if isinstance(ref, str) and len(ref) <= MAX_REF_CHARS else None
    if match is None:
        text = ref if isinstance(ref, str) else repr(ref)
        shown = text[:80].encode("unicode_escape").decode("ascii") + ("..." if len(text) > 80 else "")
        raise ContractError(f"'{shown}' is not a contract reference of the form handle/name/1.2.3")
    return match.groups()


def contract_file(directory: Path, ref: str) -> Path:
    """Where a (checked) reference lives in one registry directory."""
    handle, name, version = check_ref(ref)
    return Path(directory) / handle / name / f"{version}.yaml"


def file_signature(info: os.stat_result) -> tuple:
    return (info.st_ino, info.st_size, info.st_mtime_ns)


def load_contract_file(path: Path, ref: str, max_bytes: int = MAX_CONTRACT_BYTES):
    """(Contract, file signature) of one contract file, or ContractError saying why it is refused.

    Opens without blocking (O_NONBLOCK) and refuses anything but a regular file of at most
    ``max_bytes``, before reading a byte of it; OSError when it cannot be opened.
    """
    from schemas import SchemaError, load_strict_yaml

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ContractError("not a regular file")
        if info.st_size > max_bytes:
            raise ContractError(f"the file is larger than {max_bytes:,} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ContractError(f"the file is larger than {max_bytes:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ContractError("the file is not UTF-8 text") from None
    try:
        contract = parse_contract(load_strict_yaml(text, ref, max_bytes=max_bytes), source=ref)
    except SchemaError as exc:
        raise ContractError(str(exc)) from None
    if contract.ref != ref:
        raise ContractError(f"declares ref '{contract.ref}', but lives at the place of '{ref}'")
    return contract, file_signature(info)


def content_sha256(contract) -> str:
    """The hash of what a contract says, its state aside (the record keeps it from ``create``)."""
    from contracts.writer import contract_data

    data = contract_data(replace(contract, state=DRAFT))
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def with_state(text: str, state: str, contract=None) -> str:
    """The contract YAML ``text`` with its top-level ``state:`` set to ``state`` (comments and
    layout kept). Checked by parsing the result: when that does not give ``contract`` with the new
    state, the contract is written anew by ``contracts.writer`` instead."""
    if _STATE_LINE.search(text):
        new = _STATE_LINE.sub(lambda m: f"state: {state}" + (f"  {m.group(2)}" if m.group(2) else ""), text, count=1)
    elif _REF_LINE.search(text):
        line = _REF_LINE.search(text)
        new = text[: line.end()] + f"\nstate: {state}" + text[line.end():]
    else:
        new = f"state: {state}\n" + text
    if contract is None:
        return new
    from schemas import SchemaError, load_strict_yaml

    wanted = replace(contract, state=state)
    try:
        if parse_contract(load_strict_yaml(new, contract.ref), source=contract.ref) == wanted:
            return new
    except (SchemaError, ContractError):
        pass
    from contracts.writer import contract_yaml
    return contract_yaml(wanted)


class ContractRegistry:
    """Contracts of one project by reference, and their life cycle; see the module docstring."""

    def __init__(self, project_dir: str | Path, contracts_path: bool = True):
        self.project_dir = Path(project_dir)
        self.contracts_dir = self.project_dir / "contracts"
        env = os.environ.get("CONTRACTS_PATH", "") if contracts_path else ""
        self.directories = [self.contracts_dir, *(Path(d) for d in env.split(os.pathsep) if d), PACKAGE_DIR]

    # ------------------------------------------------------------------ reading
    def path(self, ref: str) -> Path | None:
        """The file of a reference (the first directory that has it), or None; ContractError
        for a malformed reference."""
        for directory in self.directories:
            candidate = contract_file(directory, ref)
            if candidate.is_file():
                return candidate
        return None

    def locate(self, ref: str) -> tuple[Path, tuple] | None:
        """(file, signature) of a checked reference, or None when no directory has it; the
        signature changes when the file or its lifecycle record does. OSError when a file
        cannot be looked at (permissions)."""
        for directory in self.directories:
            path = contract_file(directory, ref)
            try:
                info = os.stat(path)
            except FileNotFoundError:
                continue
            signature = file_signature(info)
            if directory == self.contracts_dir:
                try:
                    signature += file_signature(os.stat(self.record_path(ref)))
                except FileNotFoundError:
                    pass
            return path, signature
        return None

    def read_at(self, path: Path, ref: str, max_bytes: int = MAX_CONTRACT_BYTES):
        """(Contract, signature) of the file ``locate`` found: ``load_contract_file``, then, for a
        project contract with a lifecycle record, the record's state (and ContractError when the
        file changed after ``create``). ContractError or OSError when it cannot be used."""
        contract, signature = load_contract_file(path, ref, max_bytes)
        if Path(path).parent.parent.parent != self.contracts_dir:
            if self.record_path(ref).exists():   # the project's file is gone: no other copy stands in for it
                raise ContractError(f"the project manages {ref} (its lifecycle record {self.record_path(ref)}) but "
                                    f"its file {contract_file(self.contracts_dir, ref)} is missing: put it back "
                                    f"rather than use the copy in {path}")
            return contract, signature
        try:   # stat before reading: a record replaced in between gives a signature that is already old
            record_signature = file_signature(os.stat(self.record_path(ref)))
        except FileNotFoundError:
            record_signature = None
        try:
            record = self.record(ref)
        except LifecycleError as exc:
            raise ContractError(str(exc)) from None
        if record is None:
            return contract, signature
        if content_sha256(contract) != record.content_sha256:
            raise ContractError(f"{path} was edited after `pstream contracts create` (its content is not what was "
                                "created and reviewed): put the original back, or create a new version")
        return replace(contract, state=record.state), signature + (record_signature or ())

    def read_file(self, file: str | Path):
        """The contract of a file named by path (``pipelines.run --contract FILE``) in its lifecycle
        state; ContractError when it cannot be used.

        The lifecycle record beside the file (a project's contract file, named by path or through a
        symlink), else this project's record of the reference the file declares (a copy of one of
        its contracts), decides the state, and the file must have the content that was created.
        A file with neither is as it says."""
        from contracts.loader import read_contract_file

        contract = read_contract_file(file)
        path = Path(file).resolve()
        beside = path.with_name(path.stem + RECORD_SUFFIX)
        try:
            record = read_record(beside) if path.suffix == ".yaml" and beside.is_file() else self.record(contract.ref)
        except LifecycleError as exc:
            raise ContractError(str(exc)) from None
        if record is None:
            return contract
        if record.ref != contract.ref or content_sha256(contract) != record.content_sha256:
            raise ContractError(f"{file} declares {contract.ref}, but its lifecycle record is of {record.ref} with "
                                "other content (edited after `pstream contracts create`, or a changed copy): use "
                                "the project's (by reference), put the original back, or create a new version")
        return replace(contract, state=record.state)

    def get(self, ref: str):
        """The contract of ``ref``; ContractError when it is malformed, unknown, too large or invalid."""
        found = self.locate(ref)
        if found is None:
            raise ContractError(f"contract '{ref}' not found (a project's own contracts go in "
                                f"{self.contracts_dir}/<handle>/<name>/<version>.yaml)")
        try:
            return self.read_at(found[0], ref)[0]
        except ContractError as exc:
            raise ContractError(f"{found[0]}: {exc}") from None
        except OSError as exc:
            raise ContractError(f"{found[0]}: cannot be read: {exc.strerror}") from None

    def refs(self) -> list[str]:
        """Every well-formed reference found in the registry's directories."""
        found = set()
        for directory in self.directories:
            for path in directory.glob("*/*/*.yaml"):
                ref = f"{path.parent.parent.name}/{path.parent.name}/{path.stem}"
                if REF_PATTERN.fullmatch(ref):
                    found.add(ref)
        return sorted(found)

    def where(self, ref: str) -> str:
        """'project', 'shipped' or 'CONTRACTS_PATH': where the file of ``ref`` comes from."""
        path = self.path(ref)
        if path is None:
            return "missing"
        root = path.parent.parent.parent
        return "project" if root == self.contracts_dir else "shipped" if root == PACKAGE_DIR else "CONTRACTS_PATH"

    # ---------------------------------------------------------------- life cycle
    def record_path(self, ref: str) -> Path:
        handle, name, version = check_ref(ref)
        return self.contracts_dir / handle / name / f"{version}{RECORD_SUFFIX}"

    def record(self, ref: str) -> Record | None:
        """The lifecycle record of a project contract, or None (shipped, or put there by hand)."""
        return read_record(self.record_path(ref))

    def create(self, file: str | Path, user: str, now: float | None = None, before_write=None):
        """Store the contract of ``file`` as a DRAFT of the project: (Contract, CompatibilityReport
        against the latest earlier version, or None for a first version).

        ContractError for an invalid file, a reference that exists, or a version number too small
        for its changes (``contracts.compat.VersionError``, with the report). ``before_write(contract,
        report)`` runs after every check and before any file is written (the audit log's entry)."""
        contract = read_contract_file(file)
        check_ref(contract.ref)
        existing = self.path(contract.ref)
        if existing is not None:
            raise ContractError(f"contract {contract.ref} exists ({existing}); a change needs a new version")
        with self._lock(contract.ref, make=True):
            return self._create(file, contract, user, now, before_write)

    def _create(self, file, contract, user, now, before_write):
        from contracts.compat import check_version_bump, latest_earlier

        existing = self.path(contract.ref)   # again, under the lock: a create at the same moment
        if existing is not None:
            raise ContractError(f"contract {contract.ref} exists ({existing}); a change needs a new version")
        previous = latest_earlier(self.versions(contract.handle, contract.name), contract)
        report = check_version_bump(previous, contract) if previous is not None else None
        if report is not None and not report.ok:
            raise VersionError(report)
        text = Path(file).read_text(encoding="utf-8")
        draft = replace(contract, state=DRAFT)
        yaml_text = with_state(text, DRAFT, contract)
        record = Record.new(contract.ref, user, content_sha256(draft), now)
        if before_write is not None:
            before_write(draft, report)
        from privacy.private_files import replace_private

        target = contract_file(self.contracts_dir, contract.ref)
        # the record first: stopped in between, the reference has a record and no file, which no
        # reader uses (read_at) and a second create replaces; the other way round it had a file
        # without a record, which create calls existing and transition unmanaged
        replace_private(self.record_path(contract.ref), _record_bytes(record))
        replace_private(target, yaml_text.encode("utf-8"))
        return replace(draft, source=str(target)), report

    def versions(self, handle: str, name: str) -> list:
        """Every readable version of handle/name in the registry's directories (unreadable ones are skipped:
        ``contracts show`` names them)."""
        found = []
        for ref in self.refs():
            if ref.startswith(f"{handle}/{name}/"):
                try:
                    found.append(self.get(ref))
                except (ContractError, LifecycleError):
                    continue
        return found

    def transition(self, ref: str, action: str, user: str, reason: str | None = None, now: float | None = None,
                   before_write=None):
        """Make a lifecycle transition: (Record, its new history entry, the Contract in its new state).

        LifecycleError when the contract is not the project's, was not created with ``create``, or
        the action is not allowed (state, self-approval, a reject without reason); ContractError
        when it cannot be read. ``before_write(record, entry, contract)`` runs after every check
        and before any file is written (the audit log's entry). The record is written first, then
        the YAML's ``state:`` line (a reader of the file by path sees the state too)."""
        check_ref(ref)
        path = self.path(ref)
        if path is None:
            raise ContractError(f"contract '{ref}' not found (see `pstream contracts list`)")
        if path.parent.parent.parent != self.contracts_dir:
            raise LifecycleError(f"contract {ref} is a {self.where(ref)} contract ({path}): it is ACTIVE and "
                                 "read-only here; create a new version in the project (pstream contracts create)")
        with self._lock(ref):   # read, check and write as one: two reviewers at once do not both decide
            record = self.record(ref)
            if record is None:
                raise LifecycleError(f"contract {ref} ({path}) has no lifecycle record: it was not created with "
                                     "`pstream contracts create`; create it (as a new version) that way to manage it")
            contract = self.get(ref)
            entry = record.apply(action, user, reason, now)
            contract = replace(contract, state=record.state)
            if before_write is not None:
                before_write(record, entry, contract)
            from privacy.private_files import replace_private

            replace_private(self.record_path(ref), _record_bytes(record))
            text = path.read_text(encoding="utf-8")
            replace_private(path, with_state(text, record.state, contract).encode("utf-8"))
            return record, entry, contract

    @contextmanager
    def _lock(self, ref: str, make: bool = False):
        """An exclusive ``flock`` on the project directory of ``ref``'s handle/name (files in it are
        replaced by renames, the directory stays): creates and transitions of one contract, one at a time."""
        import fcntl

        directory = contract_file(self.contracts_dir, ref).parent
        if make:
            from privacy.private_files import private_dirs

            private_dirs(directory)
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def load_for_running(ref_or_path: str):
    """The contract a job runs with, in its lifecycle state as the gateway sees it
    (``pipelines.run``; ``pipelines.run.accepted_contract`` then decides whether that state may
    run): a reference is the default project's own contract (``pstream contracts create``, its
    state from the lifecycle record) when the project has it, else a shipped or
    ``$CONTRACTS_PATH`` one; a path is read by ``ContractRegistry.read_file`` (a project's file, or
    a copy of one, gets its record's state: editing a ``state:`` line activates nothing).
    ContractError when it cannot be found or used."""
    from contracts.loader import is_contract_path, load_contract
    from controlplane.project import default_project_dir

    registry = ContractRegistry(default_project_dir())
    if is_contract_path(ref_or_path):
        if not Path(ref_or_path).is_file():
            raise ContractError(f"{ref_or_path}: no such contract file")
        return registry.read_file(ref_or_path)
    try:
        if registry.where(ref_or_path) == "project" or registry.record(ref_or_path) is not None:
            return registry.get(ref_or_path)
    except LifecycleError as exc:
        raise ContractError(str(exc)) from None
    return load_contract(ref_or_path)


def load_for_reading(ref_or_path: str):
    """The contract to read data already written with it, whatever its state (``decrypt``,
    ``subjects export|forget``): a YAML file path, or a reference as the default project's
    registry resolves it (its own contracts, then ``$CONTRACTS_PATH``, then the shipped ones).
    ContractError when it cannot be found or used."""
    from contracts.loader import is_contract_path, load_contract
    from controlplane.project import default_project_dir

    if isinstance(ref_or_path, str) and is_contract_path(ref_or_path):
        return load_contract(ref_or_path)
    try:
        return ContractRegistry(default_project_dir()).get(ref_or_path)
    except LifecycleError as exc:
        raise ContractError(str(exc)) from None


def read_record(path: Path) -> Record | None:
    """The lifecycle record in ``path``, None when there is none; LifecycleError when it is not one."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LifecycleError(f"{path}: the lifecycle record cannot be read ({type(exc).__name__})") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise LifecycleError(f"{path}: not a lifecycle record (invalid JSON)") from None
    if not isinstance(data, dict):
        raise LifecycleError(f"{path}: not a lifecycle record")
    return Record.from_file(data, str(path))


class VersionError(ContractError):
    """``create`` of a version whose number is too small for its changes; ``report`` says which."""

    def __init__(self, report):
        super().__init__(report.text())
        self.report = report


def _record_bytes(record: Record) -> bytes:
    return (json.dumps(record.to_file(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
