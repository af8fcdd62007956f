"""The load-and-fault benchmark runs end to end on a short run (its figures come from benchmarks/README.md's command)."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, repo_env


def test_load_and_fault_run_loses_nothing_and_prints_its_table(tmp_path):
    figures = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gateway_fault", "--seconds", "6", "--rate", "200",
                           "--kill-at", "3", "--json", str(figures)],
                          cwd=REPO, env=repo_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in ("answers", "latency of 204s: p50", "gateway down", "lost 0, duplicated 0, bad events in the spool 0"):
        assert text in proc.stdout, proc.stdout
    data = json.loads(figures.read_text())
    answers = data["answers"]
    assert data["requests"] == 1200 and data["accepted"] > 0 and data["lost"] == 0 and data["duplicated"] == 0
    assert set(answers["valid"]) <= {"204", "no answer", "not sent"}
    assert set(answers["invalid"]) <= {"400", "no answer", "not sent"} and answers["invalid"].get("400")
    assert set(answers["unauthenticated"]) <= {"401", "no answer", "not sent"} and answers["unauthenticated"].get("401")
    assert data["in_spool"] == data["accepted"] + data["in_doubt_in_spool"]
    assert data["tracebacks_in_log"] == 0
