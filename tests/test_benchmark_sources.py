"""benchmarks/sources.py runs end to end on small inputs (the real figures: benchmarks/README.md)."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, repo_env


def test_sources_benchmark_prints_both_rates_and_the_loss(tmp_path):
    figures = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sources", "--micro_rows", "600", "--read_rows", "3000",
                           "--workdir", str(tmp_path), "--json", str(figures)],
                          cwd=REPO, env=repo_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "micro-aggregation, 600 web shop rows, k = 5" in proc.stdout and "information loss SSE/SST" in proc.stdout
    assert "PostgreSQL / CSV = " in proc.stdout
    data = json.loads(figures.read_text())
    assert data["micro"]["report"]["smallest_group"] >= 5
    assert data["read"]["csv"]["rows"] == data["read"]["postgresql"]["rows"] == 3000
