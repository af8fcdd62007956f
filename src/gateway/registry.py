"""Contracts by reference only: the gateway's bounded cache over the project's contract registry.

    from controlplane.contracts import ContractRegistry
    from gateway.registry import ContractCache, parse_ref
    cache = ContractCache(ContractRegistry(project_dir, contracts_path=False), build=lambda contract: contract)
    entry = cache.cached(b"acme/Shop/1.0.0")          # the hot path: a dict lookup, or None
    entry = await cache.resolve(b"acme/Shop/1.0.0")   # loads off the event loop; or raises Refused
    parse_ref(b"../../etc/passwd")                     # Refused(400): not handle/name/version

A ``Strm-Schema-Ref`` header is a *reference*, ``handle/name/version``, and nothing else
(``controlplane.contracts.check_ref``: handle and name of letters, digits, ``_``, ``-`` and
``.``, not starting with a dot, so no ``..``; the version ``major.minor.patch``), at most
``MAX_REF_CHARS`` characters of ASCII. Anything else is a 400 before any file is looked at.
Which file a reference names, how it is read (without blocking, bounded in size before a byte is
read, strict YAML, the contract schema, the reference it declares) and its lifecycle state are
the project's contract registry's (``controlplane.contracts.ContractRegistry``: ``locate`` and
``read_at``); this module only caches. The gateway does not follow ``CONTRACTS_PATH``.

Only contracts whose state accepts events (ACTIVE, and DEPRECATED with a warning: logged once a
window, and the answer carries ``Strm-Contract-State: DEPRECATED``) are served; any other state
is a 400 naming it (``Schema 'acme/Shop/1.0.0' is not active (state DRAFT)``).

Loading is off the event loop, in a small thread pool. Requests for a reference that is loading
wait for that one load. A refused or unknown reference is remembered for ``ttl_seconds`` (the
negative cache: bounded to ``max_entries``, least recently used out first, and holding only a
status and a short message, never a traceback), and a known contract's file and lifecycle record
are checked (size, mtime, inode) at most every ``ttl_seconds``, so a contract added to or changed
in the project, or moved to another state, is used without a restart. Why a file was refused is
logged through ``gateway.problems`` (once per window per file), never sent to the client beyond
"could not be loaded".
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

from contracts.loader import ContractError
from contracts.model import DEPRECATED
from controlplane.contracts import MAX_REF_CHARS, ContractRegistry, check_ref
from gateway.problems import ProblemLog

log = logging.getLogger(__name__)

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
    try:
        check_ref(text)   # fullmatch: not even a trailing newline
    except ContractError:
        raise Refused(400, BAD_REF_MESSAGE) from None
    return text


class _Known:
    __slots__ = ("entry", "path", "signature", "checked")

    def __init__(self, entry, path: Path, signature: tuple, checked: float):
        self.entry, self.path, self.signature, self.checked = entry, path, signature, checked


class ContractCache:
    """References -> built contract entries (see the module docstring); one per gateway."""

    def __init__(self, registry: ContractRegistry, build: Callable, max_bytes: int = 256 * 1024,
                 ttl_seconds: float = 5.0, max_entries: int = 1024, problems: ProblemLog | None = None,
                 clock=time.monotonic, workers: int = 2):
        self.registry = registry
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
            try:
                found = self.registry.locate(ref)
            except OSError as exc:   # permissions, a name too long for the file system
                self._report_file(ref, ref, f"cannot be read: {exc.strerror}")
                return 400, f"Schema '{ref}' could not be loaded"
            if found is None:
                return 400, f"Schema '{ref}' not found"
            path, signature = found
            if known is not None and known.path == path and known.signature == signature:
                known.checked = self._clock()
                return known
            try:
                contract, signature = self.registry.read_at(path, ref, self.max_bytes)
            except (OSError, ContractError) as exc:
                why = str(exc) if isinstance(exc, ContractError) else exc.strerror
                self._report_file(ref, path, why + (" (--max-contract-bytes)" if "larger than" in why else ""))
                return 400, f"Schema '{ref}' could not be loaded"
            self.loads += 1
            if not contract.accepts_events:
                return 400, f"Schema '{ref}' is not active (state {contract.state})"
            if contract.state == DEPRECATED:
                self.problems.report(f"contract {ref} deprecated", f"contract {ref} is DEPRECATED: its events are "
                                     "still accepted; move the producers to a newer version")
            return _Known(self.build(contract), path, signature, self._clock())
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
