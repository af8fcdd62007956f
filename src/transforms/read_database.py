"""Database tables as batch input: PostgreSQL key ranges and BigQuery tables -> batches of (position, event) pairs.

    from transforms.read_database import ReadPostgresTable, ReadBigQueryTable
    read = p | ReadPostgresTable(postgres_source, batch_input)        # transforms.postgres_ranges
    read = p | ReadBigQueryTable("project.dataset.orders", batch_input)
    read[ReadPostgresTable.EVENTS]        # batches: [(position, event), ...] (transforms.event_batches)
    read[ReadPostgresTable.DEAD_LETTER]   # rows whose values do not convert (reason and position only)

Both yield what ``ReadBatchInput`` yields for a CSV file, so the rest of the graph is the same
(batches of at most ``event_batches.BATCH_SIZE`` events per key range, or per bundle for BigQuery;
dead letters one per row):
a row becomes the text a CSV export would hold (``contracts.table_rows``) and goes through the
same ``BatchInput`` (consent, timestamp, the contract's types).

PostgreSQL: one step on a worker plans the read (columns checked against the contract, the key
range cut points: ``postgres_ranges.plan_read``), the ranges are spread over the workers (a
Reshuffle of a few small descriptors, as ``ReadBatchInput`` spreads file ranges) and each range
is read through its own server-side cursor with a Python driver; no Java expansion service.

BigQuery: Beam's own ``ReadFromBigQuery`` (the Storage Read API, ``DIRECT_READ``), which splits
the table into streams itself; rows have no stable position, so dead letters name the table,
the worker's bundle and the row's number in it.
"""
from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.metrics import Metrics

from contracts.batch_input import BatchInput
from contracts.events import EventError
from contracts.table_rows import text_form
from transforms import read_progress
from transforms.dead_letters import DEAD_LETTER, FailureLog, dead_letter
from transforms.event_batches import BATCH_SIZE, BatchOf
from transforms.postgres_ranges import PostgresSource, plan_read, read_range


class _RowsToEvents:
    """Shared by the readers: a row dict -> its event added to ``batch`` (a full batch element is
    returned), or a dead letter. An event whose timestamp is no time goes on too: the contract
    check rejects it."""

    def __init__(self, batch_input: BatchInput):
        self.batch_input = batch_input
        self.rows_read = Metrics.counter("pipeline", "rows_read")
        self.rejected = Metrics.counter("pipeline", "dead_letter_read")
        self.failures = FailureLog("read")

    def convert(self, position: str, row: dict, batch: BatchOf):
        self.rows_read.inc()
        read_progress.advance(1)   # the progress line's rows (no input bytes for a table)
        try:
            event = self.batch_input.to_event(row)
            return batch.add(position, event)
        except EventError as err:
            reason = err.reason
        except Exception as exc:  # the catch-all, as ReadBatchInput's: class and stage, never the text
            reason = self.failures.record(exc, position)
        self.rejected.inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(position, "read", reason, self.batch_input.contract.ref))


class _PlanRangesFn(beam.DoFn):
    """None -> (plan, range) descriptors of one PostgreSQL read."""

    def __init__(self, source: PostgresSource, batch_input: BatchInput):
        self.source = source
        self.batch_input = batch_input

    def process(self, _):
        with self.source.connect() as conn:
            plan = plan_read(conn, self.source, self.batch_input.contract)
        Metrics.counter("pipeline", "read_ranges").inc(len(plan.ranges))
        for key_range in plan.ranges:
            yield plan, key_range


class _ReadRangeFn(beam.DoFn):
    """(plan, range) -> the range's rows as events; one connection per worker, opened when needed."""

    def __init__(self, source: PostgresSource, batch_input: BatchInput):
        self.source = source
        self.batch_input = batch_input

    def setup(self):
        self.conn = None
        self.rows = _RowsToEvents(self.batch_input)

    def process(self, element, timestamp=beam.DoFn.TimestampParam):
        plan, key_range = element
        if self.conn is None or self.conn.closed:
            self.conn = self.source.connect()
        batch, convert = BatchOf(BATCH_SIZE, fallback=timestamp), self.rows.convert
        for position, row in read_range(self.conn, self.source, plan, key_range):
            out = convert(position, row, batch)
            if out is not None:
                yield out
        rest = batch.flush()
        if rest is not None:
            yield rest

    def teardown(self):
        if getattr(self, "conn", None) is not None:
            self.conn.close()


class ReadPostgresTable(beam.PTransform):
    """Reads a PostgreSQL table or query in key ranges; see the module docstring."""

    EVENTS = "events"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, source: PostgresSource, batch_input: BatchInput):
        super().__init__()
        self.source = source
        self.batch_input = batch_input

    def expand(self, pbegin):
        return (
            pbegin
            | "Start" >> beam.Create([None])
            | "PlanRanges" >> beam.ParDo(_PlanRangesFn(self.source, self.batch_input))
            | "SpreadRanges" >> beam.Reshuffle()
            | "ReadRanges" >> beam.ParDo(_ReadRangeFn(self.source, self.batch_input)).with_outputs(
                DEAD_LETTER, main=self.EVENTS)
        )


class _BigQueryRowsFn(beam.DoFn):
    """A ReadFromBigQuery row (typed values) -> its text form -> an event, or a dead letter."""

    def __init__(self, table: str, batch_input: BatchInput):
        self.table = table
        self.batch_input = batch_input

    def setup(self):
        self.rows = _RowsToEvents(self.batch_input)

    def start_bundle(self):
        self.prefix = f"bigquery:{self.table}@{uuid.uuid4().hex[:12]}#"
        self.number = 0
        self.batch = BatchOf(BATCH_SIZE)

    def process(self, row):
        self.number += 1
        out = self.rows.convert(f"{self.prefix}{self.number}", {k: text_form(v) for k, v in row.items()}, self.batch)
        if out is not None:
            yield out

    def finish_bundle(self):
        rest = self.batch.flush()   # the bundle's last events (global window, as the read's)
        if rest is not None:
            yield rest


class ReadBigQueryTable(beam.PTransform):
    """Reads a BigQuery table (``project.dataset.table``) or a standard-SQL query with Beam's ReadFromBigQuery.

    Args:
        table: ``project.dataset.table`` (or ``project:dataset.table``); or None with ``query``.
        batch_input: the consent, timestamp and contract conversion of the rows.
        query: a standard-SQL query instead of a table.
        project: the project billed for the read (default: the pipeline's ``--project``).
    """

    EVENTS = "events"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, table: str | None, batch_input: BatchInput, query: str | None = None,
                 project: str | None = None):
        super().__init__()
        if (table is None) == (query is None):
            raise ValueError("give exactly one of a BigQuery table or a query")
        self.table = table
        self.query = query
        self.project = project
        self.batch_input = batch_input

    def expand(self, pbegin):
        from apache_beam.io.gcp.bigquery import ReadFromBigQuery

        where = {"table": self.table} if self.table else {"query": self.query, "use_standard_sql": True}
        if self.project:
            where["project"] = self.project
        return (
            pbegin
            | "ReadFromBigQuery" >> ReadFromBigQuery(method=ReadFromBigQuery.Method.DIRECT_READ, **where)
            | "RowsToEvents" >> beam.ParDo(_BigQueryRowsFn(self.table or "query", self.batch_input)).with_outputs(
                DEAD_LETTER, main=self.EVENTS)
        )
