"""Contracts by reference only: the gateway's view of the project's contract registry.

    from gateway.registry import ContractRegistry, parse_ref
    registry = ContractRegistry([project_dir / "contracts", SHIPPED], build=lambda contract: contract)
    entry = registry.cached(b"acme/Shop/1.0.0")          # the hot path: a dict lookup, or None
    entry = await registry.resolve(b"acme/Shop/1.0.0")   # loads off the event loop; or raises Refused
    parse_ref(b"../../etc/passwd")                        # Refused(400): not handle/name/version

A ``Strm-Schema-Ref`` header is a *reference*, ``handle/name/version``, and nothing else
(``contracts.loader.REF_PATTERN``: handle and name of letters, digits, ``_``, ``-`` and ``.``, not
starting with a dot, so no ``..``; the version ``major.minor.patch``), at most ``MAX_REF_CHARS``
characters of ASCII. Anything else is a 400 before any file is looked at. A reference names one
file, ``<directory>/<handle>/<name>/<version>.yaml``, in the registry's directories: the
project's ``contracts/`` first, then the contracts shipped in ``contracts/`` (the package).

Loading is off the event loop, in a small thread pool, and bounded: a file larger than
``max_bytes`` is refused from its size, without being read; a non-regular file (a FIFO, a
device) is refused without blocking; the text goes through THE strict YAML loader
(``schemas.load_strict_yaml``: no anchors or aliases, so no alias bombs, bounded depth) and THE
contract parser (``contracts.loader.parse_contract``: the JSON Schema, then the semantic
checks); the file's ``ref`` must be the reference asked for. That is what
``contracts.loader.load_contract_ref`` does, with two differences that the gateway needs: the
size is checked before the file is read (``load_contract_ref`` reads it whole first), and the
file's signature is kept to notice a change; the gateway does not follow ``CONTRACTS_PATH``. Requests for a reference
that is loading wait for that one load. A refused or unknown reference is remembered for
``ttl_seconds`` (the negative cache: bounded to ``max_entries``, least recently used out first,
and holding only a status and a short message, never a traceback), and a known contract's file
is checked (size, mtime, inode) at most every ``ttl_seconds``, so a contract added to or changed
in the project is used without a restart. Why a file was refused is logged through
``gateway.problems`` (once per window per file), never sent to the client beyond
"could not be loaded".

The registry is a small class of the gateway's because the project model has no contract
registry of its own yet; when ``controlplane`` gets one, ``directories`` and the loading
function (``load_contract_file``) are the two places to point at it.
"""
from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from contracts.loader import PACKAGE_DIR as SHIPPED_CONTRACTS
from contracts.loader import REF_PATTERN, ContractError, parse_contract
from gateway.problems import ProblemLog
from schemas import SchemaError, load_strict_yaml

log = logging.getLogger(__name__)

MAX_REF_CHARS = 231   # the longest reference REF_PATTERN allows: 100 + 1 + 100 + 1 + 29
BAD_REF_MESSAGE = (f"Strm-Schema-Ref must be a contract reference handle/name/version (e.g. acme/Shop/1.0.0) of "
                   f"at most {MAX_REF_CHARS} characters: letters, digits, '_', '-' and '.'")
MAX_LOADING = 64     # distinct references loading at once; more get 503


class Refused(Exception):
    """A reference the gateway cannot use: an HTTP status and the message for the client."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def parse_ref(raw: bytes | str) -> str:
    """The reference in a header value, or Refused(400) when it is not exactly handle/name/version."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    if len(raw) > MAX_REF_CHARS or not raw.isascii():
        raise Refused(400, BAD_REF_MESSAGE)
    text = raw.decode("ascii")
    if REF_PATTERN.fullmatch(text) is None:   # fullmatch: not even a trailing newline
        raise Refused(400, BAD_REF_MESSAGE)
    return text


def contract_file(directory: Path, ref: str) -> Path:
    """Where a (checked) reference lives in one registry directory."""
    handle, name, version = REF_PATTERN.fullmatch(ref).groups()
    return directory / handle / name / f"{version}.yaml"


def load_contract_file(path: Path, ref: str, max_bytes: int):
    """(Contract, file signature) of one contract file, or ValueError saying why it is refused.

    Opens without blocking (O_NONBLOCK) and refuses anything but a regular file of at most
    ``max_bytes``, before reading a byte of it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file")
        if info.st_size > max_bytes:
            raise ValueError(f"the file is larger than {max_bytes:,} bytes (--max-contract-bytes)")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ValueError(f"the file is larger than {max_bytes:,} bytes (--max-contract-bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    try:
        contract = parse_contract(load_strict_yaml(text, ref, max_bytes=max_bytes), source=ref)
    except (SchemaError, ContractError) as exc:
        raise ValueError(str(exc)) from None
    if contract.ref != ref:
        raise ValueError(f"the file's ref is '{contract.ref}', not the reference it is filed under")
    return contract, _signature(info)


def _signature(info: os.stat_result) -> tuple:
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class _Known:
    __slots__ = ("entry", "path", "signature", "checked")

    def __init__(self, entry, path: Path, signature: tuple, checked: float):
        self.entry, self.path, self.signature, self.checked = entry, path, signature, checked


class ContractRegistry:
    """References -> built contract entries (see the module docstring); one per gateway."""

    def __init__(self, directories: list[Path], build: Callable, max_bytes: int = 256 * 1024,
                 ttl_seconds: float = 5.0, max_entries: int = 1024, problems: ProblemLog | None = None,
                 clock=time.monotonic, workers: int = 2):
        self.directories = [Path(d) for d in directories]
        self.build = build                  # Contract -> what the hot path keeps (validator, Avro schema...)
        self.max_bytes = max_bytes
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.problems = problems or ProblemLog(log)
        self._clock = clock
        self._known: OrderedDict[bytes, _Known] = OrderedDict()      # ref -> loaded contract
        self._refused: OrderedDict[bytes, tuple[float, int, str]] = OrderedDict()  # ref -> (until, status, text)
        self._loading: dict[bytes, asyncio.Future] = {}
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="contracts")
        self.loads = 0                      # files read (tests, metrics)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------- lookups
    def cached(self, raw: bytes):
        """The entry of a known, recently checked reference (exact header bytes), else None."""
        known = self._known.get(raw)
        if known is not None and self._clock() - known.checked < self.ttl_seconds:
            return known.entry
        return None

    async def resolve(self, raw: bytes):
        """The entry of a reference, loading (or re-checking) its file off the event loop; Refused."""
        ref = parse_ref(raw)
        key = ref.encode("ascii")
        known = self._known.get(key)
        if known is not None and self._clock() - known.checked < self.ttl_seconds:
            return known.entry
        refused = self._refused.get(key)
        if refused is not None:
            if self._clock() < refused[0]:
                raise Refused(refused[1], refused[2])   # a new exception: nothing cached holds a traceback
            del self._refused[key]
        future = self._loading.get(key)
        if future is None:
            if len(self._loading) >= MAX_LOADING:
                raise Refused(503, "Too many contracts loading at once, try again")
            loop = asyncio.get_running_loop()
            future = self._loading[key] = loop.run_in_executor(self._executor, self._load, ref, known)
            future.add_done_callback(lambda done, key=key: self._loaded(key, done))
        known = await asyncio.shield(future)
        if isinstance(known, tuple):
            raise Refused(*known)
        return known.entry

    # -------------------------------------------------------------- loading
    def _load(self, ref: str, known: _Known | None) -> _Known | tuple[int, str]:
        """In a pool thread: a _Known, or the (status, message) to answer (never raises)."""
        try:
            for directory in self.directories:
                path = contract_file(directory, ref)
                try:
                    info = os.stat(path)
                except FileNotFoundError:
                    continue
                except OSError as exc:   # permissions, a name too long for the file system
                    self._report_file(ref, path, f"cannot be read: {exc.strerror}")
                    return 400, f"Schema '{ref}' could not be loaded"
                if known is not None and known.path == path and known.signature == _signature(info):
                    known.checked = self._clock()
                    return known
                try:
                    contract, signature = load_contract_file(path, ref, self.max_bytes)
                except (OSError, ValueError) as exc:
                    self._report_file(ref, path, str(exc) if isinstance(exc, ValueError) else exc.strerror)
                    return 400, f"Schema '{ref}' could not be loaded"
                self.loads += 1
                if not contract.is_active:
                    return 400, f"Schema '{ref}' is not active"
                return _Known(self.build(contract), path, signature, self._clock())
            return 400, f"Schema '{ref}' not found"
        except Exception as exc:   # a bug in building the entry: refuse this reference, keep serving
            self.problems.report(f"contract {ref}", f"contract {ref}: could not be prepared", logging.ERROR, exc)
            return 400, f"Schema '{ref}' could not be loaded"

    def _report_file(self, ref: str, path: Path, why: str) -> None:
        self.problems.report(f"contract {ref}", f"contract {ref} ({path}) refused: {why}")

    def _loaded(self, key: bytes, future: asyncio.Future) -> None:
        """On the event loop: file the result in the caches."""
        self._loading.pop(key, None)
        if future.cancelled():
            return
        result = future.result()
        if isinstance(result, tuple):
            self._known.pop(key, None)
            self._refused[key] = (self._clock() + self.ttl_seconds, *result)
            self._refused.move_to_end(key)
            while len(self._refused) > self.max_entries:
                self._refused.popitem(last=False)
        else:
            self._known[key] = result
            self._known.move_to_end(key)
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)
