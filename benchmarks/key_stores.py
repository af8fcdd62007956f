"""Key-store and on-the-fly decryption throughput, SQLite against PostgreSQL, measured in one run.

    python -m benchmarks.key_stores [--pairs 20000] [--batch 2000] [--pg postgresql://127.0.0.1/test]

Prints, for each backend: new keys per second through ``KeyRing.keys_for`` (the pipeline's
path: look-up, generate, wrap, insert with the unique constraint deciding, read back), keys per
second for a second ring resolving the same pairs (a later run the same day), and rows per second
that ``StoreKeys.decrypt_many`` (the DuckDB function's body) decrypts. Then the ratios.
A PostgreSQL schema ``pstream_bench_<random>`` is created and dropped.
"""
from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    pairs = [(f"user-{i}", "2024-03-01") for i in range(args.pairs)]
    with tempfile.TemporaryDirectory() as tmp:
        kek = LocalKek.create(Path(tmp) / "kek.json")
        pg_uri = f"{args.pg}?schema=pstream_bench_{uuid.uuid4().hex[:8]}"
        results = {"sqlite": measure(f"sqlite://{tmp}/keystore.sqlite", kek, pairs, args.batch)}
        try:
            results["postgresql"] = measure(pg_uri, kek, pairs, args.batch)
        finally:
            store = open_key_store(pg_uri)
            store.drop_schema()
    print(f"{args.pairs:,} (value, day) pairs in batches of {args.batch:,}")
    print(f"{'backend':<12}{'new keys/s':>14}{'reused keys/s':>16}{'decrypted rows/s':>18}")
    for name, r in results.items():
        print(f"{name:<12}{r['created']:>14,.0f}{r['reused']:>16,.0f}{r['decrypted']:>18,.0f}")
    sq, pg = results["sqlite"], results["postgresql"]
    print(f"postgresql / sqlite: new keys {pg['created'] / sq['created']:.2f}x, reused {pg['reused'] / sq['reused']:.2f}x, "
          f"decrypt {pg['decrypted'] / sq['decrypted']:.2f}x")


if __name__ == "__main__":
    main()
