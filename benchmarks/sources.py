"""Scale of issue 13's jobs: micro-aggregation of web shop rows, and a PostgreSQL table read beside its CSV.

    python -m benchmarks.sources                        # 100,000 rows micro-aggregated; 1,000,000 rows read
    python -m benchmarks.sources --micro_rows 20000 --read_rows 50000    # a quick look
    python -m benchmarks.sources --only micro           # or --only read

**micro**: N web shop rows (``pipelines.example_data``, one customer per 20 orders as in the
workshop) as events, micro-aggregated with k = 5 over the two numeric quasi-identifiers age and
transactionAmount (``privacy.kanonymity.microaggregate``: MDAV and the report); prints the time,
the groups, the smallest group and the information loss (SSE/SST). With ``--micro_job`` the
whole job runs too (``python -m pipelines.run --job micro_aggregation``: read, validate, encrypt,
aggregate, write) on the FnApiRunner.

**read**: the same M rows as a CSV file and as a PostgreSQL table (127.0.0.1:5432, database
``test``, a table of its own, dropped afterwards), each read by the batch source into events
(``ReadBatchInput`` / ``ReadPostgresTable``: conversion included, nothing after it) with two
workers (``--direct_num_workers=2 --direct_running_mode=multi_processing``), in this one
invocation, the CSV first; prints rows/s of both and their ratio.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
import time
from pathlib import Path

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
PG_URI = os.environ.get("BENCH_PG_URI", "postgresql://postgres@127.0.0.1:5432/test")
TWO_WORKERS = ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def webshop_csv(path: Path, rows: int) -> Path:
    from pipelines.example_data import write_webshop_csv

    if not path.exists():
        write_webshop_csv(path, records=rows, customers=max(1, rows // 20), products=50, seed=13)
    return path


def batch_input():
    from contracts import load_contract
    from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig

    return BatchInput(load_contract(WEBSHOP), ConsentConfig(field="purposeConsent"),
                      TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss"))


def bench_micro(workdir: Path, rows: int, run_job: bool) -> dict:
    from contracts import load_contract
    from privacy.kanonymity import MicroAggregationSpec, microaggregate

    path = webshop_csv(workdir / f"micro-{rows}.csv", rows)
    converter = batch_input()
    with open(path, newline="") as handle:
        events = [converter.to_event(row) for row in csv.DictReader(handle)]
    spec = MicroAggregationSpec.for_contract(load_contract(WEBSHOP), k=5, quasi_identifiers=["age", "transactionAmount"])
    started = time.perf_counter()
    published, report = microaggregate(events, spec)
    seconds = time.perf_counter() - started
    result = {"rows": rows, "seconds": seconds, "report": report}
    print(f"micro-aggregation, {rows:,} web shop rows, k = 5, QIs age and transactionAmount: {seconds:.2f} s "
          f"({rows / seconds:,.0f} rows/s)")
    loss = report["information_loss"]
    print(f"  {report['groups']:,} groups, smallest {report['smallest_group']}, largest {report['largest_group']}, "
          f"information loss SSE/SST {loss['total']:.5f} (age {loss['per_field']['age']:.5f}, transactionAmount "
          f"{loss['per_field']['transactionAmount']:.5f}), suppressed {report['suppressed']['records']}")
    if run_job:
        from pipelines.run import run

        lines: list[str] = []
        with tempfile.TemporaryDirectory(prefix="micro-out-", dir=workdir) as output:   # keys and KEK: removed after
            started = time.perf_counter()
            code = run(["--job", "micro_aggregation", "--k", "5", "--quasi_identifiers", "age,transactionAmount",
                        "--input", str(path), "--output", output], echo=lines.append)
            result["job_seconds"] = time.perf_counter() - started
        print(f"  the whole job (read, validate, encrypt, aggregate, write; FnApiRunner): "
              f"{result['job_seconds']:.1f} s, exit {code}")
    return result


def _count_read(build, options: list[str]) -> tuple[int, float]:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.run import counters

    started = time.perf_counter()
    pipeline = beam.Pipeline(options=PipelineOptions(options))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return counters(result).get("pipeline/rows_read", 0), time.perf_counter() - started


def bench_read(workdir: Path, rows: int) -> dict:
    import psycopg

    from transforms.postgres_ranges import PostgresSource
    from transforms.read_database import ReadPostgresTable
    from transforms.read_input import ReadBatchInput

    path = webshop_csv(workdir / f"read-{rows}.csv", rows)
    table = f"public.bench_i13_{os.getpid()}_{time.time_ns() % 10**6}"
    columns = ('"transactionId" bigint, "userId" bigint, email text, age int, "tshirtSize" text, "fullName" text, '
               '"phoneNumber" text, address text, "transactionAmount" int, items text, "totalItems" int, '
               'date timestamp, "purposeConsent" int')
    batch = batch_input()
    with psycopg.connect(PG_URI, autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, {columns})")
        names = '"transactionId", "userId", email, age, "tshirtSize", "fullName", "phoneNumber", address, ' \
                '"transactionAmount", items, "totalItems", date, "purposeConsent"'
        with conn.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv, HEADER)") as copy, \
                open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                copy.write(chunk)
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN items TYPE int[] USING "
                     "translate(items, '[]', '{}')::int[]")
        conn.execute(f"ANALYZE {table}")
        print(f"table {table}: {rows:,} rows loaded in {time.perf_counter() - started:.1f} s")
        try:
            read_csv, csv_seconds = _count_read(lambda p: p | ReadBatchInput(str(path), batch), TWO_WORKERS)
            source = PostgresSource(PG_URI, table=table, name="bench")
            read_pg, pg_seconds = _count_read(lambda p: p | ReadPostgresTable(source, batch), TWO_WORKERS)
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    print(f"read into events, 2 workers: CSV {read_csv:,} rows in {csv_seconds:.1f} s ({read_csv / csv_seconds:,.0f} "
          f"rows/s); PostgreSQL {read_pg:,} rows in {pg_seconds:.1f} s ({read_pg / pg_seconds:,.0f} rows/s); "
          f"PostgreSQL / CSV = {csv_seconds / pg_seconds:.2f}")
    return {"rows": rows, "csv": {"rows": read_csv, "seconds": csv_seconds},
            "postgresql": {"rows": read_pg, "seconds": pg_seconds}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sources", description=__doc__.split("\n\n")[0])
    parser.add_argument("--micro_rows", type=int, default=100_000, help="rows micro-aggregated (default 100,000)")
    parser.add_argument("--read_rows", type=int, default=1_000_000, help="rows read from CSV and PostgreSQL")
    parser.add_argument("--only", choices=["micro", "read"], help="run one of the two benchmarks")
    parser.add_argument("--micro_job", action="store_true", help="also time the whole micro-aggregation job")
    parser.add_argument("--workdir", default=None, help="where inputs are generated and cached")
    parser.add_argument("--json", default=None, help="write the figures to this file")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or Path(tempfile.gettempdir()) / "pstream-bench-sources")
    workdir.mkdir(parents=True, exist_ok=True)
    figures = {}
    if args.only in (None, "micro"):
        figures["micro"] = bench_micro(workdir, args.micro_rows, args.micro_job)
    if args.only in (None, "read"):
        figures["read"] = bench_read(workdir, args.read_rows)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
