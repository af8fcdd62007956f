"""How far the batch reader has got, for a progress display in the launching process.

    from transforms import read_progress
    read_progress.reset()
    ...                                   # ReadBatchInput's ParseRows calls advance() as it reads
    rows, nbytes = read_progress.snapshot()

Beam's counters are not visible while a job runs on the in-process runner, so the reader also
adds to this module's totals every ``EVERY`` rows (and at the end of each range): rows read, and
bytes read from the input files (the file object's position, so compressed files count what was
read of the uncompressed stream). Only a runner that runs the DoFns in this process (the
FnApiRunner's default in-memory mode) moves these totals; elsewhere they stay 0 and a display
shows elapsed time only. Nothing here holds or sees a row's content.
"""
from __future__ import annotations

import threading

EVERY = 1024
_lock = threading.Lock()
_totals = [0, 0]  # rows, bytes


def reset() -> None:
    with _lock:
        _totals[0] = _totals[1] = 0


def snapshot() -> tuple[int, int]:
    with _lock:
        return _totals[0], _totals[1]


def advance(rows: int, handle=None, last: int = 0) -> int:
    """Add ``rows`` and the bytes ``handle`` moved since position ``last``; returns its position now."""
    position = last
    if handle is not None:
        try:
            position = handle.tell()
        except (OSError, ValueError, AttributeError):
            position = last
    with _lock:
        _totals[0] += rows
        _totals[1] += max(0, position - last)
    return position
