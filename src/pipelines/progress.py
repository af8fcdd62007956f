"""A progress line for long work on a terminal (rich): rows, rows/s, share of input bytes, elapsed.

    from pipelines.progress import Progress, track
    with Progress("reading example_input.csv", total_bytes=size, poll=read_progress.snapshot):
        pipeline.run().wait_until_finish()        # a thread polls the reader's totals
    for item in track(rows, "decrypting"):        # a loop in this thread advances it itself
        ...

Nothing is shown unless stderr is a terminal (so pipes, files, CI logs and tests that capture
output get nothing), when ``enabled`` is False (``--quiet``), or for work that ends within
``delay`` seconds (default 2; ``PSTREAM_PROGRESS_DELAY`` overrides it, for tests). The line is
drawn on stderr and erased at the end (the command's summary follows); it never shows a value
of the data, only counts.
"""
from __future__ import annotations

import os
import sys
import threading
import time

DEFAULT_DELAY = 2.0
REFRESH = 0.25


def on_terminal(stream=None) -> bool:
    stream = stream or sys.stderr
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """See the module docstring. ``poll``: a function returning (rows, bytes) so far (polled by a
    thread); without it, ``advance`` adds to the totals."""

    def __init__(self, description: str, total_bytes: int | None = None, poll=None, enabled: bool = True,
                 delay: float | None = None, unit: str = "rows", counts: bool = True):
        self.description = description
        self.total_bytes = total_bytes or None
        self.poll = poll
        self.unit = unit
        self.counts = counts   # False: the work has no row count to show (elapsed time only)
        self.enabled = enabled and on_terminal()
        self.delay = float(os.environ.get("PSTREAM_PROGRESS_DELAY", DEFAULT_DELAY)) if delay is None else delay
        self.rows = self.bytes = 0
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.shown = False

    def advance(self, rows: int = 1, nbytes: int = 0) -> None:
        self.rows += rows
        self.bytes += nbytes

    def __enter__(self) -> "Progress":
        self.started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._show, name="pstream-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _totals(self) -> tuple[int, int]:
        if self.poll is not None:
            try:
                return self.poll()
            except Exception:  # a display never breaks the work
                return self.rows, self.bytes
        return self.rows, self.bytes

    def _show(self) -> None:
        if self._stop.wait(self.delay):
            return
        try:
            self._draw()
        except Exception:  # a terminal that went away (EIO), a closed stderr: a display never breaks the work
            pass

    def _draw(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        # the description names a file: shown as it is, not read as rich markup ("in[/].csv": MarkupError)
        columns = [TextColumn("{task.description}", markup=False), BarColumn(bar_width=30),
                   TextColumn("{task.fields[share]}")]
        if self.counts:
            columns += [TextColumn("{task.fields[rows]} {task.fields[unit]}"),
                        TextColumn("{task.fields[rate]} {task.fields[unit]}/s")]
        columns.append(TimeElapsedColumn())
        console = Console(file=sys.stderr)
        with RichProgress(*columns, console=console, transient=True, redirect_stdout=False,
                          redirect_stderr=False, refresh_per_second=8) as display:
            task = display.add_task(self.description, total=self.total_bytes, share="", rows="0", rate="0",
                                    unit=self.unit)
            self.shown = True
            while True:
                rows, nbytes = self._totals()
                elapsed = max(time.monotonic() - self.started, 1e-9)
                share = f"{min(nbytes / self.total_bytes, 1.0):6.1%} of input" if self.total_bytes else ""
                display.update(task, completed=min(nbytes, self.total_bytes) if self.total_bytes else None,
                               share=share, rows=f"{rows:,}", rate=f"{rows / elapsed:,.0f}")
                if self._stop.wait(REFRESH):
                    break


def track(items, description: str, enabled: bool = True, total_bytes: int | None = None, size=None,
          unit: str = "rows"):
    """Yield ``items`` while a progress line counts them (``size(item)``: its bytes, for the share)."""
    with Progress(description, total_bytes=total_bytes, enabled=enabled, unit=unit) as progress:
        for item in items:
            progress.advance(1, size(item) if size is not None else 0)
            yield item


def input_bytes(pattern: str) -> int | None:
    """The size of the files a pattern matches (Beam FileSystems), or None when unknown."""
    try:
        from apache_beam.io.filesystems import FileSystems

        return sum(m.size_in_bytes or 0 for m in FileSystems.match([pattern])[0].metadata_list) or None
    except Exception:
        return None


def input_progress(config, enabled: bool = True) -> Progress:
    """The progress line of a batch job (``pipelines.run``): the reader's rows and bytes
    (``transforms.read_progress``) against the size of the input files."""
    from transforms import read_progress

    read_progress.reset()
    if config.database is not None:
        return Progress(f"reading {config.database.label}", poll=read_progress.snapshot, enabled=enabled)
    total = input_bytes(config.input_path) if enabled else None
    return Progress(f"reading {config.input_path}", total_bytes=total, poll=read_progress.snapshot, enabled=enabled)
