"""Time per pipeline stage by sampling the running thread's stack (a tiny statistical profiler).

    from benchmarks.stage_sampler import StageSampler
    with StageSampler() as sampler:               # in the main thread
        pipeline.run().wait_until_finish()       # on the FnApiRunner, in-process
    sampler.shares()                             # {'keys (key ring, ...)': 0.35, 'read + convert ...': 0.17, ...}

Every ``interval`` seconds of wall time a timer signal (SIGALRM) interrupts the main thread,
where the FnApiRunner runs bundles in-process, and the sample is charged to the innermost frame
of one of our Beam stages (``transforms/<module>``): the stage whose DoFn is running, including
the core code it calls; the encrypt stage's key work (key ring, KEK, key store) is counted
apart. A sample with no stage on the stack is Beam's own work (the runner between and around
our DoFns) or, outside Beam, "other". Unlike cProfile this adds almost no overhead (about 1,000
tiny handler calls a second), so the shares hold for the timed run. A signal that arrives
during a C call (SQLite, a file write) is handled right after it, so the call's time goes to the
frame that made it. Main thread only; Linux and macOS.
"""
from __future__ import annotations

import signal
from collections import Counter

STAGES = {
    "read_input.py": "read + convert (CSV -> typed events)",
    "validate.py": "validate (contract check)",
    "encrypt.py": "encrypt (AES-SIV per PII field)",
    "privacy_streams.py": "privacy streams (decrypt + mask)",
    "write_jsonl.py": "write JSONL",
    "dead_letters.py": "dead letters",
    "event_batches.py": "event batches (build, unbatch)",
}
KEYS = "keys (key ring, KEK, SQLite key store)"  # the key work inside the encrypt stage
_KEY_MODULES = ("/privacy/keyring.py", "/privacy/keystore.py", "/privacy/kek.py")
BEAM = "Beam runner (between and around DoFns)"
OTHER = "other (start-up, graph building, idle)"


def classify(frame) -> str:
    """The stage a stack belongs to: the innermost transforms/ module on it, else Beam or other."""
    in_beam = in_keys = False
    while frame is not None:
        filename = frame.f_code.co_filename
        if "/transforms/" in filename:
            stage = STAGES.get(filename.rsplit("/", 1)[-1])
            if stage:
                return KEYS if in_keys and filename.endswith("encrypt.py") else stage
        if filename.endswith(_KEY_MODULES):
            in_keys = True
        if "/apache_beam/" in filename:
            in_beam = True
        frame = frame.f_back
    return BEAM if in_beam else OTHER


PLAIN_STAGES = {  # benchmarks/plain_loop.py's functions -> the stage they are
    "numbered_rows": "read (csv.reader)",
    "convert": "convert + validate",
    "resolve": "keys (make, wrap, SQLite store)",
    "_select": "keys (make, wrap, SQLite store)",
    "named_key": "keys (make, wrap, SQLite store)",
    "flush": "encrypt + streams + write JSONL",
    "run_batches": "loop (dispatch, dead letters)",
}


def classify_plain(frame) -> str:
    """The stage of a plain-loop stack: the innermost function of benchmarks/plain_loop.py on it."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.endswith("plain_loop.py"):
            return PLAIN_STAGES.get(code.co_name, OTHER)
        frame = frame.f_back
    return OTHER


class StageSampler:
    """Samples the main thread on a wall-clock timer (SIGALRM); see the module docstring.
    ``classify``: a stack's stage (default: the Beam graph's stages, ``classify``)."""

    def __init__(self, interval: float = 0.001, classify=classify):
        self.classify = classify
        self.interval = interval
        self.counts: Counter[str] = Counter()
        self._previous = None

    def _sample(self, signum, frame) -> None:
        self.counts[self.classify(frame)] += 1

    def __enter__(self) -> "StageSampler":
        self._previous = signal.signal(signal.SIGALRM, self._sample)
        signal.setitimer(signal.ITIMER_REAL, self.interval, self.interval)
        return self

    def __exit__(self, *exc) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)

    def shares(self, include_other: bool = False) -> dict[str, float]:
        """Fraction of the samples per stage, largest first."""
        counts = {k: v for k, v in self.counts.items() if include_other or k != OTHER}
        total = sum(counts.values()) or 1
        return {k: v / total for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
