"""Log a repeated problem once per window, then how often it happened: bounded logs under abuse.

    from gateway.problems import ProblemLog
    problems = ProblemLog(logging.getLogger("gateway"), window_seconds=60)
    problems.report("invalid HTTP request", "invalid HTTP request received; connection closed")
    ...                                   # the same kind again within 60 s: counted, not logged
    problems.flush()                      # "invalid HTTP request: 1234 more times in the last 60 s"
    problems.report("spool write", "spool write failed", exc_info=exc)   # a traceback, once a window

A client can send the same bad request thousands of times a second; logging each one (with a
traceback, as uvicorn does for an exception in the app) turns a flood of requests into a flood of
disk writes. Here the first occurrence of a *kind* in a window is logged as it happens, later
ones only counted, and the count is logged when the window ends (``flush``, called on a timer
and at shutdown). Kinds are fixed strings of the code, or names of files the operator put in
the project (a broken contract), never text a client chose, so the table stays small.
"""
from __future__ import annotations

import logging
import time


class ProblemLog:
    def __init__(self, logger: logging.Logger, window_seconds: float = 60.0, clock=time.monotonic):
        self.logger = logger
        self.window_seconds = window_seconds
        self._clock = clock
        self._windows: dict[str, list] = {}   # kind -> [window start, count not yet logged, level]
        self.total: dict[str, int] = {}       # kind -> occurrences since start (tests, metrics)

    def report(self, kind: str, message: str, level: int = logging.WARNING, exc_info=None) -> None:
        self.total[kind] = self.total.get(kind, 0) + 1
        now = self._clock()
        window = self._windows.get(kind)
        if window is not None and now - window[0] < self.window_seconds:
            window[1] += 1
            return
        if window is not None:
            self._summary(kind, window)
        self._windows[kind] = [now, 0, level]
        self.logger.log(level, "%s", message, exc_info=exc_info)

    def flush(self, force: bool = False) -> None:
        """Log the counts of windows that ended (all of them with ``force``, at shutdown)."""
        now = self._clock()
        for kind, window in list(self._windows.items()):
            if force or now - window[0] >= self.window_seconds:
                self._summary(kind, window)
                del self._windows[kind]

    def _summary(self, kind: str, window: list) -> None:
        if window[1]:
            seconds = min(self._clock() - window[0], self.window_seconds)
            self.logger.log(window[2], "%s: %d more times in the last %.0f s", kind, window[1], seconds)
            window[1] = 0
