"""Throughput, memory and scaling of the batch pipeline against a plain Python loop doing the same work.

    python -m benchmarks.pipeline                      # 200,000 web shop events
    python -m benchmarks.pipeline --million            # 1,000,000 events
    python -m benchmarks.pipeline --scaling            # 100k, 200k, 400k, 800k: time, memory, slopes
    python -m benchmarks.pipeline --events 2000 --variants plain,beam   # a quick look
    python -m benchmarks.pipeline --repeat 3           # each variant 3 times, the fastest counts

Generates N web shop events (``pipelines.example_data``, one customer per 20 orders as in the
workshop notebook, cached under ``--workdir``), then runs each variant in its own child process
on the default web shop job (contract, consent, timestamps, streams webshop-1 and webshop-2 of
``pipelines/webshop.yaml``), each with a fresh key store:

- ``plain``: the limit, one plain Python loop doing the same work (``benchmarks.plain_loop``);
- ``beam``: the Beam graph on the FnApiRunner in-process (what ``python -m pipelines.run`` does);
- ``beam2``: the same with ``--direct_num_workers=2 --direct_running_mode=multi_processing``.

It prints events/s of each, the ratio to the plain loop and to the reference's published 2,790
records/s, the peak RSS of each child (its whole process tree: the 2-worker run's workers
count), the time per stage of the in-process run (sampled, see ``benchmarks.stage_sampler``),
and checks that every variant wrote the same numbers of events to every output. ``--scaling``
times the plain loop and the in-process pipeline at several sizes and prints the log-log slope
of time and of peak memory against N (1 = linear). Exit status 1 if outputs disagree.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE_RECORDS_PER_S = 2790  # REFERENCE.md: 541,909 records encrypted in 194 s
EVENTS_PER_CUSTOMER = 20  # the notebook's example: 10,000 orders of 500 customers
VARIANTS = {
    "plain": "(a) plain Python loop (the limit)",
    "beam": "(b) Beam FnApiRunner, in-process",
    "beam2": "(b) Beam, 2 workers (multi_processing)",
}
BEAM_OPTIONS = {
    "beam": ["--runner=FnApiRunner"],
    "beam2": ["--runner=FnApiRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
}
SCALING_SIZES = (100_000, 200_000, 400_000, 800_000)


# ---------------------------------------------------------------- the child: one timed variant


def _job_config(input_path: str, output: str):
    from pipelines.config import load_config

    return load_config(None, {"input": input_path, "output": output})


def _beam_counts(result, config) -> dict[str, int]:
    from pipelines.run import counters

    values = counters(result)
    counts = {"rows_read": values.get("pipeline/rows_read", 0), "valid": values.get("pipeline/valid", 0)}
    for name in ["encrypted", "keys", "dead_letter"] + [f"streams/{s.name}" for s in config.streams]:
        counts[name] = values.get(f"written/{name}", 0)
    return counts


def run_child(variant: str, input_path: str, output: str, stages: bool) -> dict:
    """Run one variant in this process; returns seconds, counts and (beam) stage shares."""
    config = _job_config(input_path, output)
    result: dict = {"variant": variant}
    if variant == "plain":
        from benchmarks.plain_loop import run_plain_loop

        started, cpu = time.perf_counter(), time.process_time()
        result["counts"] = run_plain_loop(config)
        result["seconds"] = time.perf_counter() - started
        result["cpu_seconds"] = time.process_time() - cpu
        return result

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from benchmarks.stage_sampler import StageSampler
    from pipelines.graph import build_batch_graph

    started, cpu = time.perf_counter(), time.process_time()
    sampler = StageSampler() if stages and variant == "beam" else None
    if sampler:
        sampler.__enter__()
    try:
        pipeline = beam.Pipeline(options=PipelineOptions(BEAM_OPTIONS[variant]))
        build_batch_graph(pipeline, config)
        run = pipeline.run()
        run.wait_until_finish()
    finally:
        if sampler:
            sampler.__exit__(None, None, None)
    result["seconds"] = time.perf_counter() - started
    if variant == "beam":  # the 2-worker run's work happens in other processes
        result["cpu_seconds"] = time.process_time() - cpu
    result["counts"] = _beam_counts(run, config)
    if sampler:
        result["stages"] = sampler.shares()
    return result


# ---------------------------------------------------------------- the parent: processes and memory


def _tree_rss_bytes(root: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc), in bytes."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stat = handle.read()
                parents[int(entry)] = int(stat[stat.rindex(b")") + 2 :].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier += children
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm") as handle:
                total += int(handle.read().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


def measure(variant: str, input_path: str, output: str, stages: bool = False) -> dict:
    """Run one variant in a child process; adds its peak RSS (process tree) and wall time."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [sys.executable, "-m", "benchmarks.pipeline", "--child", variant,
               "--input", input_path, "--output", output] + (["--stages"] if stages else [])
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err)
        peak_tree = 0
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, _tree_rss_bytes(child.pid))
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if child.returncode != 0:
        raise SystemExit(f"{variant} failed (exit {child.returncode}):\n{stderr[-4000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_seconds"] = wall
    result["peak_rss"] = max(peak_tree, usage.ru_maxrss * 1024)  # ru_maxrss is KiB on Linux
    return result


def ensure_input(workdir: Path, events: int, seed: int, echo=print) -> Path:
    from pipelines.example_data import write_webshop_csv

    path = workdir / f"webshop-{events}-seed{seed}.csv"
    if not path.exists():
        customers = max(1, events // EVENTS_PER_CUSTOMER)
        started = time.perf_counter()
        temp = path.with_suffix(".tmp")
        write_webshop_csv(temp, records=events, customers=customers, seed=seed)
        temp.rename(path)
        echo(f"generated {events:,} web shop events of {customers:,} customers into {path} "
             f"({time.perf_counter() - started:.0f} s)")
    return path


def run_variant(variant: str, input_path: Path, workdir: Path, keep: bool, stages: bool = False) -> dict:
    output = workdir / f"out-{variant}-{input_path.stem}"
    shutil.rmtree(output, ignore_errors=True)
    try:
        return measure(variant, str(input_path), str(output), stages)
    finally:
        if not keep:
            shutil.rmtree(output, ignore_errors=True)


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f} MiB"


def fitted_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x): 1 = linear, < 1 better than linear."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def compare(events: int, variants: list[str], workdir: Path, seed: int, keep: bool, repeat: int = 1,
            echo=print) -> tuple[dict, bool]:
    input_path = ensure_input(workdir, events, seed, echo)
    load = _load()
    results = {}
    for attempt in range(repeat):  # interleaved, so that a busy minute hurts every variant alike
        for variant in variants:
            echo(f"running {VARIANTS[variant]} on {events:,} events ...")
            result = run_variant(variant, input_path, workdir, keep, stages=True)
            best = results.get(variant)
            result["runs"] = (best["runs"] if best else []) + [round(result["seconds"], 2)]
            if best is None or result["seconds"] < best["seconds"]:
                results[variant] = result
            else:
                best["runs"] = result["runs"]
    limit = results.get("plain")
    echo(f"\n{events:,} web shop events, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
         f"load average before {load}" + (f", best of {repeat} runs" if repeat > 1 else ""))
    echo(f"{'variant':<42} {'seconds':>8} {'events/s':>9} {'vs (a)':>7} {'vs 2,790/s':>10} {'peak RSS':>10}"
         f" {'CPU s':>7}")
    for variant, result in results.items():
        rate = events / result["seconds"]
        versus = f"{limit['seconds'] / result['seconds']:.2f}" if limit else "-"
        cpu = f"{result['cpu_seconds']:.1f}" if "cpu_seconds" in result else "-"
        echo(f"{VARIANTS[variant]:<42} {result['seconds']:>8.1f} {rate:>9,.0f} {versus:>7} "
             f"{rate / REFERENCE_RECORDS_PER_S:>9.1f}x {_mib(result['peak_rss']):>10} {cpu:>7}")
    stages = results.get("beam", {}).get("stages")
    if stages:
        seconds = results["beam"]["seconds"]
        echo(f"\ntime per stage, Beam in-process (sampled stacks; {seconds:.1f} s in all)")
        for stage, share in stages.items():
            echo(f"  {stage:<44} {share:>6.1%} {share * seconds:>7.1f} s")
    counts = [r["counts"] for r in results.values()]
    agree = all(c == counts[0] for c in counts)
    echo("\noutputs: " + ", ".join(f"{k} {v:,}" for k, v in counts[0].items()))
    if not agree:
        for variant, result in results.items():
            echo(f"error: {variant} wrote {result['counts']}")
    else:
        echo("every variant wrote the same numbers of events to every output")
    return results, agree


def scaling(sizes: list[int], variants: list[str], workdir: Path, seed: int, keep: bool, repeat: int = 1,
            echo=print) -> tuple[dict, bool]:
    table: dict[str, list[dict]] = {v: [] for v in variants}
    agree = True
    for size in sizes:
        input_path = ensure_input(workdir, size, seed, echo)
        counts, best = [], {}
        for attempt in range(repeat):
            for variant in variants:
                echo(f"running {VARIANTS[variant]} on {size:,} events ...")
                result = run_variant(variant, input_path, workdir, keep, stages=True)
                if variant not in best or result["seconds"] < best[variant]["seconds"]:
                    best[variant] = result
                counts.append(result["counts"])
        for variant in variants:
            table[variant].append({"events": size, "seconds": best[variant]["seconds"],
                                   "peak_rss": best[variant]["peak_rss"], "stages": best[variant].get("stages")})
        agree &= all(c == counts[0] for c in counts)
    echo(f"\nscaling, {os.cpu_count()} CPUs")
    echo(f"{'variant':<42} {'events':>9} {'seconds':>8} {'events/s':>9} {'peak RSS':>10}")
    for variant, rows in table.items():
        for row in rows:
            echo(f"{VARIANTS[variant]:<42} {row['events']:>9,} {row['seconds']:>8.1f} "
                 f"{row['events'] / row['seconds']:>9,.0f} {_mib(row['peak_rss']):>10}")
    echo("\nfitted log-log slope against N (1.00 = linear, below 1 = better than linear)")
    slopes = {}
    for variant, rows in table.items():
        xs = [r["events"] for r in rows]
        time_slope = fitted_slope(xs, [r["seconds"] for r in rows])
        rss_slope = fitted_slope(xs, [r["peak_rss"] for r in rows])
        slopes[variant] = {"time": time_slope, "peak_rss": rss_slope}
        echo(f"  {VARIANTS[variant]:<42} time {time_slope:.2f}   peak RSS {rss_slope:.2f}")
    staged = [r for r in table.get("beam", []) if r.get("stages")]
    if len(staged) == len(sizes) > 1:
        echo("  Beam in-process, time per stage (sampled):")
        slopes["beam_stages"] = {}
        for stage in staged[-1]["stages"]:
            seconds = [r["stages"].get(stage, 0) * r["seconds"] for r in staged]
            if all(seconds):
                slope = slopes["beam_stages"][stage] = fitted_slope([r["events"] for r in staged], seconds)
                echo(f"    {stage:<44} time {slope:.2f}   ({seconds[0]:.1f} s .. {seconds[-1]:.1f} s)")
    if not agree:
        echo("error: the variants wrote different numbers of events")
    return {"rows": table, "slopes": slopes}, agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000, help="events to generate (default 200,000)")
    parser.add_argument("--million", action="store_true", help="1,000,000 events")
    parser.add_argument("--variants", default="plain,beam,beam2", help="comma-separated: plain, beam, beam2")
    parser.add_argument("--scaling", action="store_true", help="only the scaling run (plain and beam)")
    parser.add_argument("--all", action="store_true", help="the comparison, then the scaling run")
    parser.add_argument("--sizes", default=",".join(str(s) for s in SCALING_SIZES), help="sizes of the scaling run")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pstream-bench"),
                        help="inputs (kept, reused) and outputs (deleted unless --keep)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep every variant's output")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each variant this many times (interleaved) and report the fastest run")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--stages", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.input, args.output, args.stages)))
        return 0

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"unknown variants {unknown}: use {', '.join(VARIANTS)}")
    figures, ok = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}, True
    if not args.scaling:
        events = 1_000_000 if args.million else args.events
        figures["compare"], agreed = compare(events, variants, workdir, args.seed, args.keep, args.repeat)
        ok &= agreed
    if args.scaling or args.all:
        sizes = [int(s) for s in args.sizes.split(",")]
        figures["scaling"], agreed = scaling(sizes, [v for v in variants if v != "beam2"] or ["beam"],
                                             workdir, args.seed, args.keep, args.repeat)
        ok &= agreed
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
