"""MicroAggregate: k-anonymous records from encrypted events (``privacy.kanonymity`` does the work).

    from transforms.microaggregate import MicroAggregate
    spec = MicroAggregationSpec.for_contract(contract, k=5, quasi_identifiers=["age"])
    out = encrypted | MicroAggregate(spec)                  # events, one per element
    out = batches | MicroAggregate(spec, batches=True)     # EncryptPii's batches of (position, event)
    out[MicroAggregate.RECORDS]   # events with each quasi-identifier replaced by its group's aggregate
    out[MicroAggregate.REPORT]    # one dict: k, groups, smallest group, information loss, suppressed

MDAV is a global algorithm: it needs every record at once, so the events meet on one worker
(``ToList``, which also gives an empty input its one report) and are grouped there with numpy. It runs after EncryptPii, so what
travels through that shuffle has its PII encrypted already; quasi-identifiers are not PII. A
problem the data causes (k larger than the records that can be grouped) gives no records and a
report whose ``error`` says why; ``pipelines.run`` prints it and exits 1.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from privacy.kanonymity import MicroAggregationError, MicroAggregationSpec, microaggregate


class _MicroAggregateFn(beam.DoFn):
    def __init__(self, spec: MicroAggregationSpec, batches: bool = False):
        self.spec = spec
        self.batches = batches
        self.published = Metrics.counter("microaggregation", "records_out")
        self.suppressed = Metrics.counter("microaggregation", "suppressed")
        self.groups = Metrics.counter("microaggregation", "groups")

    def process(self, events):
        if self.batches:
            events = [event for batch in events for _, event in batch]
        try:
            published, report = microaggregate(events, self.spec)
        except MicroAggregationError as exc:
            report = {"k": self.spec.k, "records_in": len(events), "records_out": 0, "error": str(exc)}
            published = []
        self.published.inc(len(published))
        self.suppressed.inc(report.get("suppressed", {}).get("records", len(events) - len(published)))
        self.groups.inc(report.get("groups", 0))
        yield beam.pvalue.TaggedOutput(MicroAggregate.REPORT, report)
        yield from published


class MicroAggregate(beam.PTransform):
    """Micro-aggregates a PCollection of events (or, with ``batches``, of batches of (position,
    event) pairs: ``transforms.event_batches``); outputs RECORDS (events, one per element) and REPORT."""

    RECORDS = "records"
    REPORT = "report"

    def __init__(self, spec: MicroAggregationSpec, batches: bool = False):
        super().__init__()
        self.spec = spec
        self.batches = batches

    def expand(self, events):
        return (
            events
            | "Gather" >> beam.combiners.ToList()
            | "Aggregate" >> beam.ParDo(_MicroAggregateFn(self.spec, self.batches)).with_outputs(
                self.REPORT, main=self.RECORDS)
        )
