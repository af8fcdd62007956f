"""AdmitInTime: the streaming job's one late-data decision, made per event before anything is fanned out.

    from transforms.lateness import AdmitInTime
    decided = valid_events | AdmitInTime(intervals=[60], allowed_lateness=60, shards=2,
                                         outputs_of=lambda event: ["encrypted"])
    decided[AdmitInTime.ADMITTED]   # the events in time for every export window they belong to, timestamps kept
    decided[AdmitInTime.TOO_LATE]   # one dead-letter row per too-late event, naming the outputs it is in none of

Elements are events (dicts with ``strmMeta``) or (position, event) pairs; they leave as they came.
A too-late row names the pair's position, or ``nonce:<strmMeta.nonce>`` for a bare event.

**The rule.** An event's export windows are the fixed windows of event time (the element
timestamp, ``strmMeta.timestamp``) of each interval in ``intervals`` (the output root's and each
exporter's), aligned on the epoch. The window that ends first decides: the event *closes* at
that window's end + ``allowed_lateness``. It is admitted if it reaches this transform while the
watermark is before its close, and too late from the moment the watermark reaches the close
(exclusive bound). The decision is made once, here, before encryption and before the event is
fanned out into the encrypted output and the privacy streams, so an event is in all of its
outputs or in none; a too-late event creates no key and gets exactly one dead-letter row (stage
``export``, with ``window`` and ``outputs``). A window that had no events is closed like any
other: the decision never depends on which windows happen to hold data.

**How.** A Python DoFn cannot read the watermark, only learn that it passed a time (an
event-time timer fired). So events are keyed by a shard (a hash of nonce and timestamp:
deterministic across retries) and each shard runs a *ticker*: an event-time timer at every
possible close time (every window end + lateness of every interval), re-armed when it fires.
``closed_until`` is the latest close time whose timer fired: an event that closes at or before
it is too late. A pending tick also holds this stage's output watermark at the next close, so
the writers downstream (``transforms.windowed_export``), which write a window once the watermark
has passed its close (1 µs after it), receive every admitted event of a window before they write
it. Every bundle
also sends each shard a *ping* (no event, the bundle's times; with more than one shard), so that
a shard that has not yet seen an event of its own starts ticking with the others.

Limits, by construction: (1) until a shard's first tick fires (the job's first events), there is
no watermark history to compare with and events are admitted; (2) the ticker steps one close
time at a time while events arrive, and after a day of event time without any event it steps
ever further apart (so that draining to the end of time terminates), and returns to every close
time when events come again: the first events after such a silence are judged against the
watermark as it was when ticking thinned out; (3) runners fire timers in their own order relative
to elements of the same moment: on the DirectRunner and Flink every timer due at a watermark
fires before later elements are processed; on Dataflow a work item's elements may be decided
just before its timers. In every case the decision stays one decision, the same for every output.

Counters: ``export/too_late`` (events) and ``export/too_late_<output>`` ('/' becomes '_').
"""
from __future__ import annotations

import logging
import typing
import zlib

import apache_beam as beam
from apache_beam.coders import coders
from apache_beam.metrics import Metrics
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.userstate import ReadModifyWriteStateSpec, TimerSpec, on_timer
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from transforms.dead_letters import dead_letter
from transforms.windowed_export import DEFAULT_ALLOWED_LATENESS, window_label, window_start

FINE_TICKS_FOR = 24 * 3600   # seconds of event time after the last event during which every close time ticks
_END_OF_TIME = GlobalWindow().max_timestamp()
_LOG = logging.getLogger(__name__)


class Closing:
    """When events close, for a set of window intervals and one allowed lateness (all in seconds)."""

    def __init__(self, intervals, allowed_lateness: int):
        self.intervals = sorted({int(i) for i in intervals})
        if not self.intervals or self.intervals[0] < 1 or allowed_lateness < 0:
            raise ValueError("export intervals must be >= 1 s and the allowed lateness >= 0 s")
        self.lateness = int(allowed_lateness)

    def window_of(self, timestamp: Timestamp) -> tuple[int, int]:
        """(start, interval) of the event's window that closes first."""
        return min(((window_start(timestamp, i), i) for i in self.intervals), key=lambda w: w[0] + w[1])

    def close_of(self, timestamp: Timestamp) -> int:
        """Epoch seconds from which an event of this timestamp is too late."""
        start, interval = self.window_of(timestamp)
        return start + interval + self.lateness

    def next_after(self, seconds: int) -> int:
        """The first close time of any window after ``seconds``."""
        return min(((seconds - self.lateness) // i + 1) * i + self.lateness for i in self.intervals)


def _event(element) -> dict:
    """The event of an element: a bare event or a (position, event) pair."""
    return element[1] if isinstance(element, tuple) else element


def _shard_of(event: dict, shards: int) -> int:
    meta = event.get("strmMeta") or {}
    return zlib.crc32(f"{meta.get('nonce')}:{meta.get('timestamp')}".encode()) % shards


class _ShardAndPingFn(beam.DoFn):
    """element -> (shard, element); at the end of a bundle, (shard, latest close) to every shard."""

    def __init__(self, shards: int, closing: Closing):
        self.shards, self.closing = shards, closing

    def start_bundle(self):
        self.earliest = self.latest = None

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        if self.earliest is None or timestamp < self.earliest:
            self.earliest = timestamp
        if self.latest is None or timestamp > self.latest:
            self.latest = timestamp
        yield _shard_of(_event(element), self.shards), element

    def finish_bundle(self):
        if self.earliest is None or self.shards == 1:
            return
        latest_close = self.closing.close_of(self.latest)
        for shard in range(self.shards):
            yield WindowedValue((shard, latest_close), self.earliest, [GlobalWindow()])


class _DecideFn(beam.DoFn):
    """Per shard: a ticker that learns the watermark, and the decision for each event."""

    CLOSED_UNTIL = ReadModifyWriteStateSpec("closed_until", coders.VarIntCoder())  # latest close time fired
    NEXT_TICK = ReadModifyWriteStateSpec("next_tick", coders.VarIntCoder())        # the pending tick, if any
    ACTIVE_UNTIL = ReadModifyWriteStateSpec("active_until", coders.VarIntCoder())  # latest close time seen
    TICK = TimerSpec("tick", TimeDomain.WATERMARK)
    END = TimerSpec("end", TimeDomain.WATERMARK)

    def __init__(self, closing: Closing, outputs_of):
        self.closing = closing
        self.outputs_of = outputs_of
        self.too_late = Metrics.counter("export", "too_late")
        self.too_late_by_output: dict[str, typing.Any] = {}

    def process(self, element, timestamp=beam.DoFn.TimestampParam,
                closed_until=beam.DoFn.StateParam(CLOSED_UNTIL), next_tick=beam.DoFn.StateParam(NEXT_TICK),
                active_until=beam.DoFn.StateParam(ACTIVE_UNTIL), tick=beam.DoFn.TimerParam(TICK),
                end=beam.DoFn.TimerParam(END)):
        _, value = element
        close = self.closing.close_of(timestamp)
        latest = value if isinstance(value, int) else close        # a ping carries its bundle's latest close
        active = active_until.read()
        if active is None or latest > active:
            active_until.write(latest)
        closed, pending = closed_until.read(), next_tick.read()
        start = close if closed is None else self.closing.next_after(closed)
        if pending is None or start < pending:   # not ticking yet, an earlier first tick, or back from a silence
            if pending is None:
                end.set(_END_OF_TIME)
            next_tick.write(start)
            tick.set(Timestamp(seconds=start))
        if isinstance(value, int):
            return
        if closed is not None and close <= closed:
            yield from self._reject(value, timestamp)
            return
        yield value

    def _reject(self, element, timestamp: Timestamp):
        event = _event(element)
        start, interval = self.closing.window_of(timestamp)
        outputs = list(self.outputs_of(event))
        self.too_late.inc()
        for output in outputs:
            counter = self.too_late_by_output.get(output)
            if counter is None:
                counter = self.too_late_by_output[output] = Metrics.counter(
                    "export", f"too_late_{output.replace('/', '_')}")
            counter.inc()
        meta = event.get("strmMeta") or {}
        label = window_label(start)
        _LOG.warning("an event of export window %s came after the window's end plus %s s; exported to none of "
                     "its outputs", label, self.closing.lateness)
        position = element[0] if isinstance(element, tuple) else f"nonce:{meta.get('nonce')}"
        row = dead_letter(
            position, "export",
            f"too late for export window {label} (+{interval} s): the watermark had reached the window's end plus "
            f"the allowed lateness of {self.closing.lateness} s when it arrived; exported to none of its outputs "
            f"({', '.join(outputs) or 'none'})", meta.get("eventContractRef"))
        yield beam.pvalue.TaggedOutput(AdmitInTime.TOO_LATE, {**row, "window": label, "outputs": outputs})

    @on_timer(TICK)
    def advance(self, fired=beam.DoFn.TimestampParam, closed_until=beam.DoFn.StateParam(CLOSED_UNTIL),
                next_tick=beam.DoFn.StateParam(NEXT_TICK), active_until=beam.DoFn.StateParam(ACTIVE_UNTIL),
                tick=beam.DoFn.TimerParam(TICK)):
        now = fired.micros // 1_000_000
        closed_until.write(max(closed_until.read() or now, now))
        following = self.closing.next_after(now)
        silent_for = now - (active_until.read() or now)
        if silent_for > FINE_TICKS_FOR:          # a long silence: step ever further apart, until the end of time
            following = self.closing.next_after(now + silent_for)
        if Timestamp(seconds=following) >= _END_OF_TIME:
            next_tick.clear()
            return
        next_tick.write(following)
        tick.set(Timestamp(seconds=following))

    @on_timer(END)
    def stop(self, next_tick=beam.DoFn.StateParam(NEXT_TICK), tick=beam.DoFn.TimerParam(TICK)):
        next_tick.clear()
        tick.clear()


class AdmitInTime(beam.PTransform):
    """Splits events into those in time for all of their export windows and too-late dead letters."""

    ADMITTED = "admitted"
    TOO_LATE = "too_late"

    def __init__(self, intervals, allowed_lateness: int = DEFAULT_ALLOWED_LATENESS, shards: int = 1,
                 outputs_of=None):
        super().__init__()
        if shards < 1:
            raise ValueError("shards must be >= 1")
        self.closing = Closing(intervals, allowed_lateness)
        self.shards = int(shards)
        self.outputs_of = outputs_of or (lambda event: [])

    def expand(self, events):
        return (
            events
            | "InGlobalWindow" >> beam.WindowInto(beam.transforms.window.GlobalWindows())
            | "ShardAndPing" >> beam.ParDo(_ShardAndPingFn(self.shards, self.closing)).with_output_types(
                typing.Tuple[int, typing.Any])
            | "Decide" >> beam.ParDo(_DecideFn(self.closing, self.outputs_of)).with_outputs(
                self.TOO_LATE, main=self.ADMITTED)
        )
