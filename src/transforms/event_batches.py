"""Event batches: how events travel between the stages of the privacy graph.

    from transforms.event_batches import BATCH_SIZE, BatchOf, SingleBatches, Unbatch
    batches = read[ReadBatchInput.EVENTS]          # [(position, event), ...] per element
    batches | ValidateEvents(contracts)            # batch in, VALID batches out
    pairs = batches | Unbatch()                    # one (position, event) per event, its own timestamp
    events = batches | Unbatch(positions=False)    # one event per event, its own timestamp
    singles = pairs | SingleBatches()              # [(position, event)] per pair (a streaming source)

    builder = BatchOf(BATCH_SIZE)                  # in a DoFn: collect pairs, emit full batches
    full = builder.add(position, event)           # a WindowedValue when BATCH_SIZE pairs are in
    rest = builder.flush()                         # the rest (None when empty)

**One shape.** A batch element is a plain ``list`` of ``(position, event)`` pairs: the event a
dict with ``strmMeta``, the position its ``file:line`` (or the message's). Every batch
PCollection of the graph (read, valid, encrypted, each privacy stream) holds that shape; the
writers ignore the positions. Batches are never empty and hold at most ``BATCH_SIZE`` events
where this module builds them (read); the stages after it emit at most one batch per input batch
and output (a subset of it), so the bound holds through the graph. Dead letters and key rows stay
one element per row: they are few, and key rows meet per keyLink in a GroupByKey.

Why explicit batches, not Beam's batched DoFns (``process_batch``): Beam only batches elements
that share timestamp, windows and pane (``HomogeneousWindowedBatch``), and every event here has
its own timestamp (``strmMeta.timestamp``). Beam's per-element cost (a WindowedValue, tagged
outputs, receivers, per DoFn) is now paid once per batch, not once per event.

**Timestamps.** A batch's element timestamp is the minimum of its events' timestamps (so never
later than any event in it: a safe watermark hold); its window is the global window. ``Unbatch``
gives each event its own timestamp again, exactly ``strmMeta.timestamp`` milliseconds
(``Timestamp(micros=ms * 1000)``), in the batch's windows; an event without a usable timestamp
keeps the batch's. The batch graph needs no per-event timestamps (its writers partition by
``strmMeta.timestamp``); the streaming graph unbatches before its per-event lateness decision and
before its windowed writers (``pipelines.graph.privacy_graph``, ``pipelines.streaming``).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Timestamp
from apache_beam.utils.windowed_value import WindowedValue

# Events per batch: Beam's per-element cost is already negligible at 500; bigger batches only keep
# more events alive between stages (colder caches, longer garbage-collector passes: 2,000 measured
# 0.5-1 s slower over 200,000 events).
BATCH_SIZE = 500
MAX_MILLIS = 10**15  # about the year 33,000; Beam's timestamps end near 294,000
_GLOBAL = (GlobalWindow(),)


def event_millis(event) -> int | None:
    """``strmMeta.timestamp`` of an event when it is a usable time (whole epoch milliseconds), else None."""
    meta = event.get("strmMeta") if event.__class__ is dict else None
    millis = meta.get("timestamp") if meta.__class__ is dict else None
    if millis.__class__ is int and -MAX_MILLIS < millis < MAX_MILLIS:
        return millis
    return None


def batch_element(batch: list, fallback: Timestamp = MIN_TIMESTAMP, windows=_GLOBAL) -> WindowedValue:
    """A batch as an element: timestamp the minimum of its events' (``fallback`` when none has one)."""
    least = None
    for _, event in batch:
        millis = event_millis(event)
        if millis is not None and (least is None or millis < least):
            least = millis
    return WindowedValue(batch, fallback if least is None else Timestamp(micros=least * 1000), windows)


class BatchOf:
    """Collects (position, event) pairs in a DoFn; hands out batch elements of at most ``size``."""

    def __init__(self, size: int = BATCH_SIZE, fallback: Timestamp = MIN_TIMESTAMP):
        if size < 1:
            raise ValueError("a batch holds at least one event")
        self.size = size
        self.fallback = fallback
        self.pairs: list = []

    def add(self, position: str, event: dict) -> WindowedValue | None:
        pairs = self.pairs
        pairs.append((position, event))
        if len(pairs) >= self.size:
            return self.flush()
        return None

    def flush(self) -> WindowedValue | None:
        if not self.pairs:
            return None
        batch, self.pairs = self.pairs, []
        return batch_element(batch, self.fallback)


class _UnbatchFn(beam.DoFn):
    def __init__(self, positions: bool):
        self.positions = positions

    def process(self, batch, element=beam.DoFn.WindowedValueParam):
        windows, fallback, pane = element.windows, element.timestamp, element.pane_info
        positions = self.positions
        for pair in batch:
            millis = event_millis(pair[1])
            stamp = fallback if millis is None else Timestamp(micros=millis * 1000)
            yield WindowedValue(pair if positions else pair[1], stamp, windows, pane)


class Unbatch(beam.PTransform):
    """Batches -> one element per event, timestamped with its ``strmMeta.timestamp``: the
    (position, event) pair, or with ``positions=False`` the event alone."""

    def __init__(self, positions: bool = True):
        super().__init__()
        self.positions = positions

    def expand(self, batches):
        return batches | "OnePerEvent" >> beam.ParDo(_UnbatchFn(self.positions))


class SingleBatches(beam.PTransform):
    """(position, event) pairs -> one-element batches, each keeping its pair's timestamp and
    windows (a streaming source, or the events after a per-event step)."""

    def expand(self, pairs):
        return pairs | "OneElementBatch" >> beam.Map(lambda pair: [pair])
