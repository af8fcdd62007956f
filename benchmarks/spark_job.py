"""The batch job's work as a PySpark ``local[2]`` job (a benchmark-only dependency: the ``bench`` extra).

    python -m benchmarks.spark_job --input in.csv --output out/ [--master local[2]] [--partitions 4]

Spark reads the CSV as text partitions (``sc.textFile``); each partition runs the plain loop's
per-row code (``benchmarks.plain_loop.run_batches``: convert, check, one AES-SIV key per
(userId, UTC day) resolved in batches against the one SQLite key store that every partition
shares, insert-if-absent with the unique constraint deciding, encrypt, two privacy streams,
JSONL), writing one part file per partition and output; the driver sums the counts. That is how
one writes this job in PySpark with the least overhead: Python code in ``mapPartitions`` (no
row-at-a-time UDFs, no DataFrame conversions). A row's position in a dead letter is
``file:partition:line-in-partition`` (Spark's text partitions do not know file line numbers).
Records must not span lines (the web shop CSV's do not). Prints the counts as one JSON line.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import sys


def _partition(index, lines, header, path, out, store_path):
    from benchmarks.plain_loop import run_batches

    def rows():
        yield 1, header
        number = 0
        for values in csv.reader(lines):
            number += 1
            if index == 0 and number == 1:
                continue  # the file's header row
            yield f"{index}:{number}", values

    yield run_batches(rows(), path, out, index, store_path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark_job", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    from benchmarks.plain_loop import private_dir

    spark = (SparkSession.builder.master(args.master).appName("pstream-bench")
             .config("spark.ui.enabled", "false").config("spark.driver.memory", "1g")
             .config("spark.python.worker.reuse", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    try:
        out = os.path.abspath(args.output)
        private_dir(out)
        path = os.path.abspath(args.input)
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle))
        store_path = os.path.join(out, "keystore.sqlite")
        from benchmarks.plain_loop import KeyStore, open_kek
        KeyStore(store_path, open_kek(out)).db.close()  # the schema and lookup key, once, before the workers
        parts = (spark.sparkContext.textFile(path, args.partitions)
                 .mapPartitionsWithIndex(lambda i, lines: _partition(i, lines, header, path, out, store_path))
                 .collect())
    finally:
        spark.stop()
    total: dict[str, int] = {}
    for counts in parts:
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
