"""Read + convert and validate alone: the two per-row stages of the graph, without Beam.

    PYTHONPATH=src python -m benchmarks.convert_validate                 # 200,000 web shop rows
    PYTHONPATH=/work/main/src python -m benchmarks.convert_validate      # another checkout's src
    python -m benchmarks.convert_validate --rows 20000 --profile         # cProfile top 20 per stage

Generates the web shop CSV the way ``benchmarks.pipeline`` does (``ensure_input``, cached under
``--workdir``), then times, in one process:

- (i)  ``transforms.read_input.csv_rows`` + ``BatchInput.to_event`` (the web shop's consent and
  timestamp settings, ``pipelines/webshop.yaml``) for every row: the graph's "read + convert";
- (ii) ``transforms.validate.ContractCheck`` on every event of (i): the graph's "validate";
  both a batch of ``event_batches.BATCH_SIZE`` at a time, as the graph has them (a list of all
  200,000 events would make the cyclic GC, not the code, the cost), after ``tune_worker()``,
  the GC threshold every DoFn sets;
- (p)  ``benchmarks.plain_loop``'s ``csv.reader`` + ``convert`` (its conversion and the contract's
  checks written by hand for this one contract): the baseline, for the ratio.

It prints which ``contracts`` package ran (the PYTHONPATH check) and the counts of events and
dead letters, so that two checkouts can be seen to decide the same.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.pipeline import CUSTOMERS, ensure_input  # noqa: F401  (the same generator and cache)


def _read_convert_validate(path: Path, batch, field_names, check, batch_size: int) -> dict:
    """Both stages over the file, a batch at a time as the graph has them (events are not kept):
    the seconds of each and the counts."""
    from contracts.events import EventError
    from transforms.read_input import csv_rows

    clock, cpu = time.perf_counter, time.process_time
    to_event = batch.to_event
    out = {"convert_s": 0.0, "validate_s": 0.0, "convert_cpu": 0.0, "validate_cpu": 0.0,
           "events": 0, "read_dead": 0, "valid": 0, "validate_dead": 0}
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        rows = csv_rows(text, str(path), field_names=field_names)
        while True:
            started, started_cpu = clock(), cpu()
            events = []
            for position, row, problem in rows:
                if problem:
                    out["read_dead"] += 1
                else:
                    try:
                        events.append((position, to_event(row)))
                    except EventError:
                        out["read_dead"] += 1
                if len(events) >= batch_size:
                    break
            checked, checked_cpu = clock(), cpu()
            out["convert_s"] += checked - started
            out["convert_cpu"] += checked_cpu - started_cpu
            if not events:
                return out
            out["events"] += len(events)
            valid = 0
            for position, event in events:
                event, letter = check(position, event)
                if letter is None:
                    valid += 1
            out["validate_s"] += clock() - checked
            out["validate_cpu"] += cpu() - checked_cpu
            out["valid"] += valid
            out["validate_dead"] += len(events) - valid


def _plain(path: Path) -> tuple[int, int]:
    from benchmarks.plain_loop import convert, numbered_rows

    valid = dead = 0
    day_ms: dict = {}
    header = None
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        for _line, values in numbered_rows(text):
            if header is None:
                header = {name: i for i, name in enumerate(values)}
                width = len(values)
                continue
            event = f"row has {len(values)} columns" if len(values) != width else convert(values, header, day_ms)
            if event.__class__ is str:
                dead += 1
            else:
                valid += 1
    return valid, dead


def _timed(function, profile: bool, label: str):
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    result = function()
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    if profiler:
        print(f"--- cProfile, {label} (times inflated by the profiler)")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(20)
    return elapsed, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pstream-bench"))
    parser.add_argument("--profile", action="store_true", help="cProfile top 20 (by own time) per stage")
    args = parser.parse_args(argv)

    import contracts
    from contracts import load_contract
    from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig
    from transforms.validate import ContractCheck

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = ensure_input(workdir, args.rows, "webshop", args.seed)
    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
    batch = BatchInput(contract, ConsentConfig(field="purposeConsent"),
                       TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss", timezone="UTC"))
    field_names = frozenset(node.name for node in contract.nodes)
    check = ContractCheck({contract.ref: contract})
    print(f"contracts from {os.path.dirname(contracts.__file__)}; {args.rows:,} rows; "
          f"load {', '.join(f'{v:.2f}' for v in os.getloadavg())}")

    try:
        from transforms.event_batches import BATCH_SIZE
    except ImportError:
        BATCH_SIZE = 500
    try:  # what every DoFn's setup() does (the GC threshold), so the figures are the graph's
        from transforms.worker_tuning import tune_worker
        tune_worker()
    except ImportError:
        pass
    if args.profile:  # one profiler over both stages: its top 20 shows where either spends
        _timed(lambda: _read_convert_validate(path, batch, field_names, check, BATCH_SIZE), True,
               "read + convert + validate")
    result = _read_convert_validate(path, batch, field_names, check, BATCH_SIZE)
    convert_s, validate_s = result["convert_s"], result["validate_s"]
    events, read_dead, valid, validate_dead = (result[k] for k in ("events", "read_dead", "valid", "validate_dead"))
    plain_cpu = time.process_time()
    plain_s, (plain_valid, plain_dead) = _timed(lambda: _plain(path), args.profile, "plain loop")
    plain_cpu = time.process_time() - plain_cpu
    ours, ours_cpu = convert_s + validate_s, result["convert_cpu"] + result["validate_cpu"]
    print("               wall    cpu")
    print(f"read + convert {convert_s:6.2f} {result['convert_cpu']:6.2f} s  ({events:,} events, {read_dead:,} dead letters)")
    print(f"validate       {validate_s:6.2f} {result['validate_cpu']:6.2f} s  ({valid:,} valid, {validate_dead:,} dead letters)")
    print(f"both           {ours:6.2f} {ours_cpu:6.2f} s")
    print(f"plain loop     {plain_s:6.2f} {plain_cpu:6.2f} s  ({plain_valid:,} valid, {plain_dead:,} dead letters)")
    print(f"ratio          {ours / plain_s:6.2f} {ours_cpu / plain_cpu:6.2f} x the plain loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
