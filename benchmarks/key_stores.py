"""Key-store and on-the-fly decryption throughput, SQLite against PostgreSQL, measured in one run.

    python -m benchmarks.key_stores [--pairs 20000] [--batch 2000] [--rounds 3] [--pg postgresql://127.0.0.1/test]

Prints, for each backend: new keys per second through ``KeyRing.keys_for`` (the pipeline's
path: look-up, generate, wrap, insert with the unique constraint deciding, read back), keys per
second for a second ring resolving the same pairs (a later run the same day), and rows per second
that ``StoreKeys.decrypt_many`` (the DuckDB function's body) decrypts. Rounds are interleaved
(SQLite, PostgreSQL, SQLite, ...) with fresh stores each; the medians of the rates and of the
per-round ratios are printed, with the load average. A PostgreSQL schema
``pstream_bench_<random>`` is created and dropped per round.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from privacy.kek import LocalKek
from privacy.keyring import KeyRing
from privacy.keystore import open_key_store
from privacy.onthefly import StoreKeys


def measure(uri: str, kek: LocalKek, pairs: list, batch: int) -> dict[str, float]:
    ring = KeyRing(open_key_store(uri), kek)
    started = time.perf_counter()
    tokens, links = [], []
    for start in range(0, len(pairs), batch):
        keys, _ = ring.keys_for({pair: {pair[0]} for pair in pairs[start : start + batch]})
        for link, key in keys.values():
            tokens.append(key.encrypt("someone@example.com"))
            links.append(link)
    created = len(pairs) / (time.perf_counter() - started)
    again = KeyRing(open_key_store(uri), kek)
    started = time.perf_counter()
    for start in range(0, len(pairs), batch):
        again.keys_for({pair: {pair[0]} for pair in pairs[start : start + batch]})
    reused = len(pairs) / (time.perf_counter() - started)
    source = StoreKeys(open_key_store(uri), kek)
    started = time.perf_counter()
    for start in range(0, len(tokens), 2048):  # DuckDB hands a vectorized function 2048 rows at a time
        source.decrypt_many(tokens[start : start + 2048], links[start : start + 2048])
    decrypted = len(tokens) / (time.perf_counter() - started)
    return {"created": created, "reused": reused, "decrypted": decrypted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--pg", default="postgresql://127.0.0.1:5432/test")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3); medians are printed")
    args = parser.parse_args()
    pairs = [(f"user-{i}", "2024-03-01") for i in range(args.pairs)]
    runs: dict[str, list[dict]] = {"sqlite": [], "postgresql": []}
    load = os.getloadavg()
    for number in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            kek = LocalKek.create(Path(tmp) / "kek.json")
            pg_uri = f"{args.pg}?schema=pstream_bench_{uuid.uuid4().hex[:8]}"
            runs["sqlite"].append(measure(f"sqlite://{tmp}/keystore.sqlite", kek, pairs, args.batch))
            try:
                runs["postgresql"].append(measure(pg_uri, kek, pairs, args.batch))
            finally:
                store = open_key_store(pg_uri)
                store.drop_schema()
    print(f"{args.pairs:,} (value, day) pairs in batches of {args.batch:,}; median of {args.rounds} interleaved "
          f"rounds; load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"{'backend':<12}{'new keys/s':>14}{'reused keys/s':>16}{'decrypted rows/s':>18}")
    for name, results in runs.items():
        r = {k: statistics.median(x[k] for x in results) for k in results[0]}
        print(f"{name:<12}{r['created']:>14,.0f}{r['reused']:>16,.0f}{r['decrypted']:>18,.0f}")
    ratio = {k: statistics.median(pg[k] / sq[k] for sq, pg in zip(runs["sqlite"], runs["postgresql"]))
             for k in ("created", "reused", "decrypted")}
    print(f"postgresql / sqlite (median of per-round ratios): new keys {ratio['created']:.2f}x, "
          f"reused {ratio['reused']:.2f}x, decrypt {ratio['decrypted']:.2f}x")


if __name__ == "__main__":
    main()
