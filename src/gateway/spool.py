"""The gateway's spool: append-only JSONL segments per pipeline, fsynced before an event is acknowledged.

    from gateway.spool import Spool, closed_segments
    spool = Spool(directory, max_bytes=64 << 20, max_age_seconds=60)
    await spool.append(b'{"strmMeta": {...}, ...}\\n')   # returns once the line is on disk
    spool.close()
    closed_segments(directory)                           # finished segments, oldest first

Segments are named ``<sequence:010d>-<start epoch ms>.jsonl``, created owner-only (0600, in a
0700 directory: they hold events in plaintext); the segment being written has the
suffix ``.open`` and is renamed (and the directory fsynced) when it reaches ``max_bytes`` or
``max_age_seconds``. Readers (the pipeline) take only closed segments; every line of a segment,
open or closed, was fsynced before its 204, so a killed gateway loses nothing it acknowledged.
On start, a leftover ``.open`` segment is cut back to its last complete line and closed.

Group commit: ``append`` queues the line and waits on its batch's future; one writer thread per
spool writes everything queued so far with one ``write`` and one ``fsync``, then resolves the
batch, waking all its requests. While it is on disk,
new lines gather for the next batch, so concurrent requests share fsyncs.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

OPEN_SUFFIX = ".open"
SEGMENT_SUFFIX = ".jsonl"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_AGE_SECONDS = 60.0


def closed_segments(directory: str | Path) -> list[Path]:
    """Closed segment files, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SEGMENT_SUFFIX) and not p.name.startswith("."))


def all_segments(directory: str | Path) -> list[Path]:
    """Closed and open segments, oldest first (what a reader after a crash would recover)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.endswith((SEGMENT_SUFFIX, SEGMENT_SUFFIX + OPEN_SUFFIX)) and not p.name.startswith("."))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """One pipeline's spool directory; see the module docstring."""

    def __init__(self, directory: str | Path, max_bytes: int = DEFAULT_MAX_BYTES,
                 max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS, clock=time.time):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.directory, 0o700)   # events in plaintext: owner only, whatever the umask or an older version
        self._lock = threading.Lock()  # guards the file between the writer thread and roll_if_old
        self._fd: int | None = None
        self._path: Path | None = None
        self._bytes = 0
        self._opened_at = 0.0
        self._sequence = self._recover()
        self._pending: list[bytes] = []
        self._batch: asyncio.Future | None = None
        self._flushing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spool-{self.directory.name}")
        self.batches = 0
        self.lines = 0

    # ------------------------------------------------------------ recovery
    def _recover(self) -> int:
        """Close leftover open segments; returns the next sequence number."""
        highest = 0
        for path in sorted(self.directory.iterdir()):
            name = path.name
            if name.endswith(OPEN_SUFFIX):
                self._truncate_partial(path)
                closed = path.with_name(name[: -len(OPEN_SUFFIX)])
                if path.stat().st_size == 0:
                    path.unlink()
                else:
                    os.replace(path, closed)
                name = closed.name
            if name.endswith(SEGMENT_SUFFIX) and name[:10].isdigit():
                highest = max(highest, int(name[:10]))
        _fsync_dir(self.directory)
        return highest + 1

    @staticmethod
    def _truncate_partial(path: Path) -> None:
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end != len(data):
            with open(path, "r+b") as handle:
                handle.truncate(end)
                handle.flush()
                os.fsync(handle.fileno())

    # ------------------------------------------------------------- writing
    def _open_segment(self) -> None:
        now = self._clock()
        self._path = self.directory / f"{self._sequence:010d}-{int(now * 1000)}{SEGMENT_SUFFIX}{OPEN_SUFFIX}"
        self._sequence += 1
        self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        _fsync_dir(self.directory)
        self._bytes = 0
        self._opened_at = now

    def _close_segment(self) -> None:
        if self._fd is None:
            return
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        if self._bytes:
            os.replace(self._path, self._path.with_name(self._path.name[: -len(OPEN_SUFFIX)]))
        else:
            self._path.unlink()
        _fsync_dir(self.directory)

    def write_sync(self, data: bytes) -> None:
        """Append complete lines and fsync them; rolls the segment when it is full or old."""
        with self._lock:
            if self._fd is None:
                self._open_segment()
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fdatasync(self._fd)  # the data and the file size; not the mtime
            self._bytes += len(data)
            if self._bytes >= self.max_bytes or self._clock() - self._opened_at >= self.max_age_seconds:
                self._close_segment()

    def roll_if_old(self) -> bool:
        """Close the open segment when it holds data and is older than max_age (called on a timer)."""
        with self._lock:
            if self._fd is not None and self._bytes and self._clock() - self._opened_at >= self.max_age_seconds:
                self._close_segment()
                return True
        return False

    def roll(self) -> None:
        with self._lock:
            self._close_segment()

    async def append(self, line: bytes) -> None:
        """Queue one line (ending in a newline) and return when it is fsynced."""
        batch = self._batch
        if batch is None:  # the first line of a new batch: one future that all its lines wait on
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            if not self._flushing:
                self._flushing = True
                loop.create_task(self._flush())
        self._pending.append(line)
        await batch

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                data, count, batch = b"".join(self._pending), len(self._pending), self._batch
                self._pending, self._batch = [], None
                try:
                    await loop.run_in_executor(self._executor, self.write_sync, data)
                except OSError as exc:
                    batch.set_exception(exc)
                    batch.exception()  # retrieved here; every waiter re-raises it
                    continue
                self.batches += 1
                self.lines += count
                batch.set_result(None)
        finally:
            self._flushing = False

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.roll()
