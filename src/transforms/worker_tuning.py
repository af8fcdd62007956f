"""Process-wide tuning for a process that runs our DoFns; ``tune_worker()`` is called from setup().

    from transforms.worker_tuning import tune_worker
    tune_worker()          # idempotent: the first call in a process does the work

Python's cyclic garbage collector, with its default thresholds (700, 10, 10), scans every live
object (all of Beam's modules, the key cache, the batches being encrypted) about 30 times per
200,000 events: a quarter of the CPU of a run. Elements are freed by reference counting; the
collector only finds reference cycles, which the pipeline hardly makes. Collecting the youngest
generation every 10,000 allocations instead of 700 saves most of that time for no measurable
memory (benchmarks/README.md). A threshold already raised above ours is left alone.
"""
from __future__ import annotations

import gc

GC_THRESHOLD_0 = 10_000
_tuned = False


def tune_worker() -> None:
    global _tuned
    if _tuned:
        return
    _tuned = True
    threshold = gc.get_threshold()
    if 0 < threshold[0] < GC_THRESHOLD_0:
        gc.set_threshold(GC_THRESHOLD_0, *threshold[1:])
