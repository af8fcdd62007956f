"""Run the real pipeline (``python -m pipelines.run``) in a subprocess, for end-to-end tests.

    from pipeline_runs import run_pipeline, webshop_csv
    csv_path = webshop_csv(tmp_path / "in.csv", records=500, customers=40)
    run_pipeline(tmp_path, "--input", str(csv_path), "--output", "out")   # -> stdout; asserts exit 0

Each run is its own process, so nothing (such as the key ring's in-process cache) is shared
between runs except what they share on purpose: a key store, a KEK.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from pipelines.example_data import COLUMNS, write_webshop_csv

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 6, 30, 12, 0, 0, tzinfo=timezone.utc)


def repo_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def run_pipeline(cwd: Path, *args: str, check: bool = True, wait: bool = True):
    command = [sys.executable, "-m", "pipelines.run", *args]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=repo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    proc = subprocess.run(command, cwd=cwd, env=repo_env(), capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def webshop_csv(path: Path, records: int = 1000, customers: int = 60, seed: int = 7) -> Path:
    write_webshop_csv(path, records=records, customers=customers, products=20, seed=seed, now=NOW)
    return path


def write_rows(path: Path, rows: list[dict]) -> Path:
    """A web shop CSV of hand-made rows (missing columns get plain defaults)."""
    defaults = {"transactionId": "100000001", "age": "30", "tshirtSize": "M", "fullName": "A Person",
                "phoneNumber": "555-0100", "address": "1 Main St", "transactionAmount": "10", "items": "[1]",
                "totalItems": "1", "purposeConsent": "2"}
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({**defaults, **row})
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def webshop_run(root: Path) -> Path:
    """One real run of the web shop job into ``root/out`` (input ``root/in.csv``); returns root."""
    webshop_csv(root / "in.csv", records=1500, customers=80)
    run_pipeline(root, "--input", str(root / "in.csv"), "--output", "out")
    return root


def copy_run(run: Path, destination: Path) -> Path:
    """A private copy of a run (input, outputs, key store, KEK) that a test may change."""
    import shutil

    target = destination / "run"
    shutil.copytree(run, target)
    return target
