"""The benchmark runs end to end on a tiny input (the real figures come from benchmarks/README.md's command)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from benchmarks.pipeline import fitted_slope
from tests.conftest import REPO, repo_env


def test_benchmark_compares_variants_and_prints_scaling(tmp_path):
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--all", "--events", "2000", "--sizes", "1000,2000",
         "--workdir", str(tmp_path), "--json", str(figures)],
        cwd=REPO, env=repo_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for label in ("(a) plain Python loop", "(b) Beam FnApiRunner, in-process", "(b) Beam, 2 workers"):
        assert re.search(re.escape(label) + r".*\d.*MiB", out), out
    assert "every variant wrote the same numbers of events to every output" in out
    assert "time per stage" in out and "keys (key ring" in out
    assert re.search(r"time -?\d+\.\d\d\s+peak RSS -?\d+\.\d\d", out), out
    data = json.loads(figures.read_text())
    compare = data["compare"]
    assert {"plain", "beam", "beam2"} <= set(compare)
    assert all(r["counts"]["rows_read"] == 2000 and r["peak_rss"] > 50 * 2**20 for r in compare.values())
    assert compare["beam"]["counts"] == compare["plain"]["counts"] == compare["beam2"]["counts"]
    assert [row["events"] for row in data["scaling"]["rows"]["beam"]] == [1000, 2000]


def test_fitted_slope_is_the_log_log_exponent():
    assert abs(fitted_slope([1, 2, 4, 8], [3, 6, 12, 24]) - 1.0) < 1e-9
    assert abs(fitted_slope([100, 200, 400], [5, 20, 80]) - 2.0) < 1e-9
