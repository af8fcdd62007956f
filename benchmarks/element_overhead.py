"""Beam's own per-element cost in the graph's shape, per event and per batch, without our work.

    python -m benchmarks.element_overhead                 # 200,000 events, 2 rounds each, interleaved
    python -m benchmarks.element_overhead --events 1000000 --batch 500 --rounds 3

The element flow of the batch graph with DoFns that do nothing: a source, validate (one output),
encrypt (two outputs, as the encrypted events and the stream input were before batches), streams
(two outputs: the two web shop streams) and a sink per output, on the in-process FnApiRunner.
Once with one element per event, once with batches of ``--batch`` (position, event) pairs
(``transforms.event_batches``). The difference is the most that explicit batches can save in the
real graph; the rest of the graph's time is the stages' own work.
"""
from __future__ import annotations

import argparse
import statistics
import time

import apache_beam as beam


class _Source(beam.DoFn):
    def __init__(self, events: int, batch: int | None):
        self.events, self.batch = events, batch

    def process(self, _):
        pairs = [(f"in.csv:{i + 2}", {"strmMeta": {"timestamp": 1_700_000_000_000 + i}, "n": i})
                 for i in range(self.events)]
        if self.batch:
            for start in range(0, len(pairs), self.batch):
                yield pairs[start:start + self.batch]
        else:
            yield from pairs


class _Step(beam.DoFn):
    def __init__(self, second_output: bool):
        self.second_output = second_output

    def process(self, element):
        yield element
        if self.second_output:
            yield beam.pvalue.TaggedOutput("second", element)


class _Sink(beam.DoFn):
    def process(self, element):
        return ()


def run_once(events: int, batch: int | None) -> float:
    started = time.perf_counter()
    with beam.Pipeline(runner="FnApiRunner") as p:
        read = p | beam.Create([None]) | "Read" >> beam.ParDo(_Source(events, batch))
        valid = read | "Validate" >> beam.ParDo(_Step(False))
        encrypted = valid | "Encrypt" >> beam.ParDo(_Step(True)).with_outputs("second", main="main")
        streams = encrypted["second"] | "Streams" >> beam.ParDo(_Step(True)).with_outputs("second", main="main")
        for name, pcoll in (("encrypted", encrypted["main"]), ("stream 1", streams["main"]),
                            ("stream 2", streams["second"])):
            pcoll | f"Write {name}" >> beam.ParDo(_Sink())
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.element_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="events per batch (default 500)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    seconds: dict[str, list[float]] = {"per event": [], "batches": []}
    for _ in range(args.rounds):
        seconds["per event"].append(run_once(args.events, None))
        seconds["batches"].append(run_once(args.events, args.batch))
    for name, runs in seconds.items():
        print(f"{name:<10} {statistics.median(runs):6.2f} s  runs {[round(s, 2) for s in runs]}")
    saved = statistics.median(seconds["per event"]) - statistics.median(seconds["batches"])
    print(f"Beam's per-element cost that batches of {args.batch} remove: {saved:.2f} s for {args.events:,} events "
          f"({saved / args.events * 1e6:.1f} us per event)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
