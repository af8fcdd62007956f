"""The run report (pipelines.run_report): written after every batch run, figures equal to the run's
counters, no personal value in it, readers ignore it, `pstream report` shows it, and the HTML page
renders in a real headless browser (Debian's chromium) without console messages."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from contracts import load_contract
from leak_scan import input_pii, scan_output
from pipeline_runs import read_csv, repo_env, run_pipeline, webshop_csv

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"


def _summary(stdout: str) -> dict[str, int]:
    """The printed summary's rows: label -> number."""
    rows = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\S.*?)\s{2,}([\d,]+)$", line)
        if match:
            rows[match.group(1)] = int(match.group(2).replace(",", ""))
    return rows


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    """A run over 400 rows of which 7 are dead letters of two kinds (a size the regex refuses: validate; bad date: read)."""
    root = tmp_path_factory.mktemp("report_run")
    webshop_csv(root / "in.csv", records=400, customers=30)
    rows = read_csv(root / "in.csv")
    for row in rows[:4]:
        row["tshirtSize"] = "XXXL"
    for row in rows[10:13]:
        row["date"] = "yesterday"
    with open(root / "in.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stdout = run_pipeline(root, "--input", "in.csv", "--output", "out")
    return root, stdout, rows


def test_report_figures_equal_the_run_counters(bad_run):
    root, stdout, _ = bad_run
    summary = _summary(stdout)
    report = json.loads((root / "out" / "_report.json").read_text())
    assert report["counts"] == {"rows_read": summary["rows read"], "valid": summary["valid"],
                                "dead_letters": summary["dead letters"]}
    assert summary["rows read"] == 400 and summary["dead letters"] == 7
    for name, count in report["outputs"].items():
        assert summary[f"out/{name}/"] == count, name
    assert report["keys"]["created"] == summary["keys created"]
    assert report["keys"]["created"] + report["keys"]["reused"] == report["outputs"]["keys"]
    # counted from the run's files, they add up to the counters
    assert sum(report["dead_letters"]["by_stage"].values()) == summary["dead letters"]
    assert sum(r["count"] for r in report["dead_letters"]["by_reason"]) == summary["dead letters"]
    by_stage = Counter()
    for row in report["dead_letters"]["by_reason"]:
        by_stage[row["stage"]] += row["count"]
    assert dict(by_stage) == report["dead_letters"]["by_stage"] == {"read": 3, "validate": 4}
    assert sum(report["consent_levels"].values()) == summary["out/encrypted/"]
    levels = Counter()
    for path in (root / "out" / "encrypted").glob("*.jsonl"):
        for line in path.read_text().splitlines():
            levels[json.dumps(sorted(json.loads(line)["strmMeta"]["consentLevels"]))] += 1
    assert report["consent_levels"] == dict(levels)
    assert set(report["stage_seconds"]) >= {"ReadInput", "ValidateEvents", "EncryptPii", "PrivacyStreams"}
    assert sum(report["stage_seconds"].values()) > 0
    assert "report: out/_report.html" in stdout


def test_report_holds_no_personal_value_and_is_owner_only(bad_run, webshop_contract):
    root, _, rows = bad_run
    values = input_pii(rows, webshop_contract)
    for name in ("_report.json", "_report.html"):
        path = root / "out" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert "in.csv:" not in path.read_text()            # no positions either
    only = root / "only_reports"
    only.mkdir()
    for name in ("_report.json", "_report.html"):
        shutil.copy2(root / "out" / name, only / name)
    found = scan_output(only, values)
    assert found.clean, found.describe()


def test_readers_ignore_the_report_and_write_modes_hold(bad_run, tmp_path):
    from transforms.run_commit import committed_files

    root, _, _ = bad_run
    files = committed_files([str(root / "out")])
    assert files and not any("_report" in f for f in files)
    # fail mode still refuses an output with a committed run (the report is no run), and keeps its report
    proc = run_pipeline(root, "--input", "in.csv", "--output", "out", "--write_mode", "fail", check=False)
    assert "error:" in proc and (root / "out" / "_report.json").exists()


def test_pstream_report_shows_it(bad_run):
    root, _, _ = bad_run
    proc = subprocess.run([sys.executable, "-m", "cli", "report", "out"], cwd=root, env=repo_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for text in ("rows read", "Dead letters by reason", "Consent levels seen", "Time per stage", "validate:"):
        assert text in proc.stdout
    as_json = subprocess.run([sys.executable, "-m", "cli", "report", "out", "--json"], cwd=root, env=repo_env(),
                             capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout) == json.loads((root / "out" / "_report.json").read_text())
    missing = subprocess.run([sys.executable, "-m", "cli", "report", "nowhere"], cwd=root, env=repo_env(),
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no run report" in missing.stderr


# -- the HTML page in a real browser -----------------------------------------------------------------
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render(page: Path, profile: Path) -> tuple[str, list[str]]:
    """The DOM chromium builds from a page, and every console message it logged."""
    proc = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
                           "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, console


def test_html_report_renders_in_headless_chromium_without_errors(bad_run, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CHROMIUM_REQUIRED") == "1":
            pytest.fail("CHROMIUM_REQUIRED=1 and chromium is not installed (tests/install_chromium.sh)")
        pytest.skip("chromium is not installed (apt-get install -y chromium; tests/install_chromium.sh does it, "
                    ".ci/run calls it)")
    root, _, _ = bad_run
    report = json.loads((root / "out" / "_report.json").read_text())
    dom, console = render(root / "out" / "_report.html", tmp_path / "profile")
    assert console == []
    assert dom.count("<svg") == 6 and "<rect" in dom
    assert f"{report['counts']['rows_read']:,}" in dom and "Dead letters by reason" in dom
    # the check can fail: a page with a script error and a blocked resource is caught
    broken = tmp_path / "broken.html"
    broken.write_text((root / "out" / "_report.html").read_text().replace(
        "</body>", "<img src='https://example.invalid/x.png'><script>undefinedFunction()</script></body>"))
    _, console = render(broken, tmp_path / "profile2")
    assert console, "a broken page must log console messages"


def test_no_stale_report_beside_a_run_that_wrote_none(bad_run, tmp_path):
    """A run whose report cannot be written removes the previous one; a run stopped between its
    commit and its report leaves it, and `pstream report` says it is not of the last run (exit 1)."""
    import uuid

    root, _, _ = bad_run
    shutil.copy(root / "in.csv", tmp_path / "in.csv")
    shutil.copytree(root / "out", tmp_path / "out")
    show = [sys.executable, "-m", "cli", "report", "out"]
    assert subprocess.run(show, cwd=tmp_path, env=repo_env(), capture_output=True, timeout=60).returncode == 0
    records = tmp_path / "out" / ".pstream" / "runs"
    done = json.loads(next(records.glob("*.json")).read_text())
    later = dict(done, run=str(uuid.uuid4()), committed_at=float(done["committed_at"]) + 60)   # its report never came
    (records / f"{later['run']}.json").write_text(json.dumps(later))
    stale = subprocess.run(show, cwd=tmp_path, env=repo_env(), capture_output=True, text=True, timeout=60)
    assert stale.returncode == 1 and f"the run committed last into out is {later['run']}" in stale.stderr
    (records / f"{later['run']}.json").unlink()
    (tmp_path / "out" / "_report.html").unlink()
    (tmp_path / "out" / "_report.html").mkdir()                   # the next report cannot be written
    stdout = run_pipeline(tmp_path, "--input", "in.csv", "--output", "out")
    assert "warning: the run report was not written (IsADirectoryError)" in stdout
    assert not (tmp_path / "out" / "_report.json").exists()
    missing = subprocess.run(show, cwd=tmp_path, env=repo_env(), capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no run report" in missing.stderr
