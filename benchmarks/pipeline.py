"""Throughput, memory and scaling of the batch pipeline against a plain loop and PySpark, same work.

    python -m benchmarks.pipeline                                   # 200,000 web shop rows, 3 rounds
    python -m benchmarks.pipeline --rows 100000,1000000 --rounds 1  # the figures at 1M, and the slope
    python -m benchmarks.pipeline --shape one-key-per-event
    python -m benchmarks.pipeline --rows 5000 --variants plain,beam --rounds 1   # a quick look

Generates the rows (``pipelines.example_data``, cached under ``--workdir``): ``webshop`` is the
workshop notebook's shape, 500 customers over 180 days (about 80,000 keys at 200,000 rows);
``one-key-per-event`` gives every row its own userId, so every event makes a key. Then, in
interleaved rounds (a busy minute hurts every variant alike), each variant runs as a whole
process (interpreter, imports, JVM included) on a fresh output:

- ``plain``: (a) the fastest honest plain Python loop, on its own code (``benchmarks.plain_loop``);
- ``beam``:  (b) ``python -m pipelines.run`` on the graph, in-process (FnApiRunner);
- ``beam2``: (c) the same with ``--direct_num_workers=2 --direct_running_mode=multi_processing``;
- ``spark``: (d) the same work as a PySpark ``local[2]`` job (``benchmarks.spark_job``; needs the
  ``bench`` extra: ``pip install pyspark``; skipped with a note when pyspark is not importable).

It prints the median wall time of the rounds, events/s, the median of the per-round ratios to
(a), the peak RSS of each variant's whole process tree (workers and JVM included), the time per
stage of the in-process graph (sampled stacks, ``benchmarks.stage_sampler``), the load average,
and, given two or more ``--rows``, the log-log slope of time against rows (1.00 = linear).

Each run's outputs are checked outside the timing (``summarize_outputs``): the number of events
in every output, an order-free hash of the multiset of transactionIds of every output, and a
sample of encrypted events decrypted with the key from the run's keys output (unwrapped with its
KEK) and compared with the input row. Every variant must agree with the first; exit status 1
if any does not.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = {
    "plain": "(a) plain Python loop, own code",
    "beam": "(b) graph, in-process",
    "beam2": "(c) graph, 2 workers",
    "spark": "(d) PySpark local[2]",
}
SHAPES = ("webshop", "one-key-per-event")
CUSTOMERS, DAYS = 500, 180  # the notebook's shape: 500 customers over 180 days
OUTPUTS = ("encrypted", "streams/webshop-1", "streams/webshop-2", "keys", "dead_letter")
SAMPLE = 50  # encrypted events decrypted per run


# ---------------------------------------------------------------- the child: one variant, one process


def child_command(variant: str, input_path: str, output: str) -> list[str]:
    if variant == "plain":
        return [sys.executable, "-m", "benchmarks.pipeline", "--child", "plain", "--input", input_path,
                "--output", output]
    if variant == "spark":
        return [sys.executable, "-m", "benchmarks.spark_job", "--input", input_path, "--output", output]
    command = [sys.executable, "-m", "benchmarks.pipeline", "--child", variant, "--input", input_path,
               "--output", output]
    return command


def run_child(variant: str, input_path: str, output: str) -> dict:
    """In the child process: run one variant; (b) with the stage sampler around the whole run."""
    from benchmarks.stage_sampler import StageSampler, classify_plain

    if variant == "plain":
        from benchmarks.plain_loop import run_plain_loop

        with StageSampler(classify=classify_plain) as sampler:
            counts = run_plain_loop(input_path, output)
        return {"counts": counts, "stages": sampler.shares(include_other=True)}
    from pipelines.run import run

    argv = ["--input", input_path, "--output", output]
    if variant == "beam2":
        argv += ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    lines: list[str] = []
    if variant == "beam":
        with StageSampler() as sampler:
            status = run(argv, echo=lines.append)
        result = {"stages": sampler.shares(include_other=True)}
    else:
        result = {}
        status = run(argv, echo=lines.append)
    if status != 0:
        raise SystemExit("pipelines.run failed:\n" + "\n".join(lines))
    return result


# ---------------------------------------------------------------- the parent: processes, memory, checks


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


def measure(variant: str, input_path: str, output: str) -> dict:
    """Run one variant as a whole child process: wall time, peak RSS of its process tree."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYSPARK_PYTHON"] = sys.executable
    command = child_command(variant, input_path, output)
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
        wall = time.perf_counter() - started
        returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if returncode != 0:
        raise SystemExit(f"{variant} failed (exit {returncode}):\n{stderr[-4000:]}")
    last = stdout.strip().splitlines()[-1] if stdout.strip() else "{}"
    result = json.loads(last) if variant != "spark" else {"counts": json.loads(last)}
    result["seconds"] = wall
    result["peak_rss"] = max(peak_tree, usage.ru_maxrss * 1024)  # ru_maxrss is KiB on Linux
    return result


def _jsonl(directory: Path):
    for path in sorted(directory.rglob("*.jsonl")):
        with open(path, "rb") as handle:
            yield from handle


def _unwrapper(output: Path):
    """unwrap(wrapped bytes, keyLink) for a run's KEK: the project's Tink keyset, or the loop's raw key."""
    if (output / "kek.json").exists():
        from privacy.kek import LocalKek

        kek = LocalKek(output / "kek.json")
        return lambda wrapped, link: kek.unwrap(wrapped, link.encode())
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM((output / "kek.bin").read_bytes())
    return lambda wrapped, link: aead.decrypt(wrapped[:12], wrapped[12:], link.encode())


def summarize_outputs(output: Path, input_rows: dict[str, list[dict]]) -> dict:
    """Per output: events and an order-free hash of its transactionIds; and how many of a sample
    of encrypted events decrypt (key from the keys output) to their input row's values."""
    import base64

    import orjson
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV

    summary = {}
    sample = []
    for name in OUTPUTS:
        count, digest = 0, 0
        for line in _jsonl(output / name):
            row = orjson.loads(line)
            count += 1
            ident = row.get("transactionId") or row.get("keyLink") or row.get("position") or ""
            digest = (digest + int.from_bytes(hashlib.blake2b(str(ident).encode(), digest_size=8).digest(), "big")) % 2**64
            if name == "encrypted" and len(sample) < SAMPLE and row["transactionId"] in input_rows:
                sample.append(row)
        # keys: keyLinks differ between runs (random); their count is what must agree
        summary[name] = {"events": count, "ids": digest if name != "keys" else None}
    wanted = {row["strmMeta"]["keyLink"] for row in sample}
    wrapped = {}
    for line in _jsonl(output / "keys"):
        row = orjson.loads(line)
        if row["keyLink"] in wanted:
            wrapped[row["keyLink"]] = (row["keyId"], base64.b64decode(row["wrappedKey"]))
    unwrap = _unwrapper(output)
    decrypted = 0
    for row in sample:
        link = row["strmMeta"]["keyLink"]
        key_id, blob = wrapped[link]
        siv = AESSIV(unwrap(blob, link))
        prefix = b"\x01" + key_id.to_bytes(4, "big")
        values = {}
        for field in ("userId", "email"):
            token = base64.b64decode(row[field])
            if token[:5] != prefix:
                break
            try:
                values[field] = siv.decrypt(token[5:], [b""]).decode()
            except InvalidTag:
                break
        if any(values == {"userId": r["userId"], "email": r["email"]} for r in input_rows[row["transactionId"]]):
            decrypted += 1
    summary["sample_decrypted"] = f"{decrypted}/{len(sample)}"
    return summary


def _sample_input(input_path: Path, every: int = 997) -> dict[str, list[dict]]:
    rows: dict[str, list[dict]] = {}
    with open(input_path, newline="") as handle:
        for number, row in enumerate(csv.DictReader(handle)):
            if number % every == 0:
                rows.setdefault(row["transactionId"], []).append(row)
    return rows


def ensure_input(workdir: Path, rows: int, shape: str, seed: int, echo=print) -> Path:
    """The cached input CSV of a size and shape (generated once, owner-only)."""
    from pipelines.example_data import COLUMNS, generate_webshop
    from privacy.private_files import open_private

    path = workdir / f"{shape}-{rows}-seed{seed}.csv"
    if path.exists():
        return path
    started = time.perf_counter()
    temp = path.with_suffix(".tmp")
    with open_private(temp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for number, row in enumerate(generate_webshop(records=rows, customers=CUSTOMERS, seed=seed)):
            if shape == "one-key-per-event":
                row["userId"] = 10_000_000 + number
            row["items"] = "[" + ", ".join(str(i) for i in row["items"]) + "]"
            writer.writerow(row)
    temp.rename(path)
    echo(f"generated {rows:,} {shape} rows into {path} ({time.perf_counter() - started:.0f} s)")
    return path


def _load() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def _mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def fitted_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x): 1 = linear, < 1 better than linear."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def compare(rows: int, shape: str, variants: list[str], rounds: int, workdir: Path, seed: int, keep: bool,
            echo=print) -> tuple[dict, bool]:
    """Interleaved rounds of every variant on one input; prints the table; returns figures, agreement."""
    input_path = ensure_input(workdir, rows, shape, seed, echo)
    sample = _sample_input(input_path)
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    loads = [_load()]
    for number in range(rounds):
        for variant in variants:
            output = workdir / f"out-{variant}-{input_path.stem}"
            shutil.rmtree(output, ignore_errors=True)
            echo(f"round {number + 1}/{rounds}: {VARIANTS[variant]} on {rows:,} {shape} rows (load {_load()}) ...")
            try:
                result = measure(variant, str(input_path), str(output))
                result["summary"] = summarize_outputs(output, sample)
            finally:
                if not keep:
                    shutil.rmtree(output, ignore_errors=True)
            runs[variant].append(result)
        loads.append(_load())
    figures: dict = {"rows": rows, "shape": shape, "rounds": rounds, "load": loads, "variants": {}}
    for variant, results in runs.items():
        seconds = [r["seconds"] for r in results]
        entry = figures["variants"][variant] = {
            "seconds": statistics.median(seconds), "runs": [round(s, 2) for s in seconds],
            "peak_rss": statistics.median(r["peak_rss"] for r in results), "summary": results[0]["summary"]}
        if "plain" in runs:
            entry["ratio"] = statistics.median(p["seconds"] / r["seconds"] for p, r in zip(runs["plain"], results))
        stages = [r["stages"] for r in results if r.get("stages")]
        if stages:
            entry["stages"] = {k: statistics.median(s.get(k, 0) for s in stages) for k in stages[0]}
    echo(f"\n{rows:,} {shape} rows, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, median of {rounds} "
         f"interleaved round(s); load average (1, 5, 15 min) before each round and after: {' | '.join(loads)}")
    echo(f"{'variant':<34} {'seconds':>8} {'events/s':>9} {'vs (a)':>7} {'peak RSS':>10}  runs (s)")
    for variant, entry in figures["variants"].items():
        ratio = f"{entry['ratio']:.2f}" if "ratio" in entry else "-"
        echo(f"{VARIANTS[variant]:<34} {entry['seconds']:>8.1f} {rows / entry['seconds']:>9,.0f} {ratio:>7} "
             f"{_mib(entry['peak_rss']):>10}  {entry['runs']}")
    if "spark" in figures["variants"] and "beam2" in figures["variants"]:
        echo(f"(c) / (d): {figures['variants']['spark']['seconds'] / figures['variants']['beam2']['seconds']:.2f}x;  "
             f"(b) / (d): {figures['variants']['spark']['seconds'] / figures['variants']['beam']['seconds']:.2f}x")
    for variant, entry in figures["variants"].items():
        if entry.get("stages"):
            echo(f"\ntime per stage, {VARIANTS[variant]} (sampled stacks, median shares; whole process "
                 f"{entry['seconds']:.1f} s)")
            for stage, share in entry["stages"].items():
                echo(f"  {stage:<44} {share:>6.1%} {share * entry['seconds']:>7.1f} s")
    agree = True
    first_variant = variants[0]
    reference = {k: v for k, v in runs[first_variant][0]["summary"].items()}
    echo("\noutputs (" + first_variant + "): " + ", ".join(
        f"{name} {reference[name]['events']:,}" for name in OUTPUTS) + f"; sample decrypted {reference['sample_decrypted']}")
    for variant, results in runs.items():
        for result in results:
            summary = result["summary"]
            done, total = summary["sample_decrypted"].split("/")
            if any(summary[n] != reference[n] for n in OUTPUTS) or done != total or total == "0":
                agree = False
                echo(f"error: {variant} disagrees: {summary}")
    if agree:
        echo("every run of every variant wrote the same events (counts and transactionIds per output), and a "
             "sample of each run's encrypted events decrypts to its input rows")
    return figures, agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--rows", default="200000", help="comma-separated input sizes (default 200000)")
    parser.add_argument("--shape", default="webshop", help=f"comma-separated: {', '.join(SHAPES)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--variants", default="plain,beam,beam2,spark", help="comma-separated: plain, beam, beam2, spark")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "pstream-bench"),
                        help="inputs (kept, reused) and outputs (deleted unless --keep)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep every variant's output")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.input, args.output)))
        return 0
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    shapes = [s.strip() for s in args.shape.split(",") if s.strip()]
    if unknown or not variants:
        parser.error(f"unknown variants {unknown}: use {', '.join(VARIANTS)}")
    if not shapes or any(s not in SHAPES for s in shapes):
        parser.error(f"--shape: use {', '.join(SHAPES)}")
    try:
        sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    except ValueError:
        parser.error("--rows: comma-separated whole numbers")
    if not sizes or min(sizes) < 1 or args.rounds < 1:
        parser.error("--rows and --rounds must be positive")
    if "spark" in variants and importlib.util.find_spec("pyspark") is None:
        print("note: pyspark is not installed (pip install 'beam-privacy-streams[bench]'): variant (d) skipped")
        variants.remove("spark")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    figures: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "runs": []}
    ok = True
    for shape in shapes:
        for size in sizes:
            result, agreed = compare(size, shape, variants, args.rounds, workdir, args.seed, args.keep)
            figures["runs"].append(result)
            ok &= agreed
        if len(sizes) > 1:
            print(f"\n{shape}: log-log slope of time against rows, {sizes[0]:,} .. {sizes[-1]:,} (1.00 = linear)")
            for variant in variants:
                seconds = [r["variants"][variant]["seconds"] for r in figures["runs"] if r["shape"] == shape]
                print(f"  {VARIANTS[variant]:<34} {fitted_slope(sizes, seconds):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
