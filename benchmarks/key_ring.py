"""The graph's "keys" work on its own: KeyRing.keys_for over the web shop's (userId, day) pairs.

    PYTHONPATH=src python -m benchmarks.key_ring                        # 200,000 rows, 3 rounds
    PYTHONPATH=src python -m benchmarks.key_ring --profile              # and a cProfile top 20
    PYTHONPATH=/work/main/src python -m benchmarks.key_ring             # another checkout's src

The rows are ``benchmarks.pipeline``'s (``ensure_input``, the same cached CSV under
``--workdir``: 500 customers over 180 days, about 80,000 keys at 200,000 rows). Their
(userId, UTC day) pairs, with userId as the data subject, go through ``KeyRing.keys_for`` in
batches of 10,000 events as ``transforms.encrypt`` gives them (``wanted = {pair: {subject}}``),
with a fresh SQLite store and local KEK per round, then the reused keys' rows are read as
``_EncryptFn._key_rows`` does (``store.by_links``). In the same round the plain loop's key work
(``benchmarks.plain_loop.KeyStore.resolve`` with its dict cache, fresh SQLite file) runs on the
same batches, for the ratio. Rounds alternate the two; medians are reported. Which ``privacy``
package ran is printed, so a before/after pair can be checked.
"""
from __future__ import annotations

import argparse
import cProfile
import csv
import io
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

BATCH = 10_000


def batches(path: Path, rows: int | None = None) -> list[list[tuple[str, str]]]:
    """(userId, day) of every row, in batches of BATCH events (file order, as the graph reads it)."""
    out, batch = [], []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for number, row in enumerate(reader):
            if rows is not None and number >= rows:
                break
            batch.append((row["userId"], row["date"][:10]))
            if len(batch) >= BATCH:
                out.append(batch)
                batch = []
    if batch:
        out.append(batch)
    return out


def run_ring(work: list, directory: Path) -> dict:
    """keys_for per batch (and the encrypt stage's by_links for reused keys' rows)."""
    from privacy.kek import LocalKek
    from privacy.keyring import KeyRing
    from privacy.keystore import open_key_store

    kek = LocalKek.create(directory / "kek.json")
    ring = KeyRing(open_key_store(f"sqlite://{directory / 'keystore.sqlite'}"), kek)
    store_s = [0.0]
    for method in ("lookup", "insert_new", "add_subjects", "by_links"):  # time spent in the store's calls
        setattr(ring.store, method, _timed(getattr(ring.store, method), store_s))
    announced: set[str] = set()
    created_total = used = 0
    started, cpu = time.perf_counter(), time.process_time()
    for batch in work:
        wanted: dict[tuple, set] = {}
        for pair in batch:
            subjects = wanted.get(pair)
            if subjects is None:
                subjects = wanted[pair] = set()
            subjects.add(pair[0])
        keys, created = ring.keys_for(wanted)
        created_total += len(created)
        used += len(keys)
        mine = {record.key_link for record in created}
        reused = [link for link, _ in keys.values() if link not in mine and link not in announced]
        if reused:
            ring.store.by_links(reused)
        announced.update(link for link, _ in keys.values())
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    ring.store.close()
    return {"seconds": seconds, "cpu": cpu, "store": store_s[0], "created": created_total, "used": used}


def _timed(method, total: list):
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - started
    return timed


def run_plain(work: list, directory: Path) -> dict:
    """The plain loop's key work (benchmarks.plain_loop: its resolve and its dict cache)."""
    from benchmarks.plain_loop import KeyStore, open_kek

    started, cpu = time.perf_counter(), time.process_time()
    store = KeyStore(str(directory / "plain.sqlite"), open_kek(str(directory)))
    keys: dict = {}
    created_total = 0
    for batch in work:
        missing = {}
        for pair in batch:
            if pair not in keys and pair not in missing:
                missing[pair] = pair[0]
        if missing:
            found, rows = store.resolve(missing)
            keys.update(found)
            created_total += len(rows)
        for pair in batch:  # the loop's per-event key look-up
            keys[pair]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    store.db.close()
    return {"seconds": seconds, "cpu": cpu, "created": created_total}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.key_ring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pstream-bench"))
    parser.add_argument("--profile", action="store_true", help="also a cProfile top 20 of one more ring run")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain loop's key work")
    args = parser.parse_args(argv)

    import privacy
    from benchmarks.pipeline import ensure_input

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    work = batches(ensure_input(workdir, args.rows, "webshop", args.seed))
    events = sum(len(b) for b in work)
    print(f"privacy from {Path(privacy.__file__).parent}; {events:,} events in {len(work)} batches; "
          f"load {os.getloadavg()[0]:.2f}")
    ring_s, ring_cpu, ring_store, plain_s, plain_cpu, created = [], [], [], [], [], None
    for number in range(args.rounds):
        for kind in (("ring", "plain") if number % 2 == 0 else ("plain", "ring")):
            if kind == "plain" and args.no_plain:
                continue
            directory = Path(tempfile.mkdtemp(prefix="key-ring-", dir=workdir))
            try:
                if kind == "ring":
                    result = run_ring(work, directory)
                    ring_s.append(result["seconds"])
                    ring_cpu.append(result["cpu"])
                    ring_store.append(result["store"])
                    created = result["created"]
                else:
                    result = run_plain(work, directory)
                    plain_s.append(result["seconds"])
                    plain_cpu.append(result["cpu"])
            finally:
                shutil.rmtree(directory)
            store = f", in store calls {result['store']:.2f} s" if "store" in result else ""
            print(f"  round {number + 1} {kind:<5} {result['seconds']:6.2f} s wall, {result['cpu']:6.2f} s CPU{store}"
                  f"  ({result['created']:,} keys made)  load {os.getloadavg()[0]:.2f}", flush=True)
    median = statistics.median
    ring = median(ring_s)
    print(f"key ring:   {ring:6.2f} s wall ({median(ring_cpu):.2f} s CPU, {median(ring_store):.2f} s in store calls) "
          f"median of {len(ring_s)}  {created / ring:,.0f} keys/s  {events / ring:,.0f} events/s")
    if plain_s:
        plain = median(plain_s)
        print(f"plain loop: {plain:6.2f} s wall ({median(plain_cpu):.2f} s CPU) median of {len(plain_s)}  "
              f"{created / plain:,.0f} keys/s")
        print(f"ratio key ring / plain: {ring / plain:.2f}x wall, {median(ring_cpu) / median(plain_cpu):.2f}x CPU")
    if args.profile:
        directory = Path(tempfile.mkdtemp(prefix="key-ring-", dir=workdir))
        profiler = cProfile.Profile()
        try:
            profiler.enable()
            run_ring(work, directory)
            profiler.disable()
        finally:
            shutil.rmtree(directory)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(20)
        print(text.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
