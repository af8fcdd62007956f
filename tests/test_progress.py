"""Progress on long work (pipelines.progress, transforms.read_progress): shown on a pseudo-terminal,
absent with --quiet and when output is not a terminal; the reader's totals match the run's counters."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from pipeline_runs import repo_env, webshop_csv

LINE = re.compile(r"reading in\.csv .*?(\d+\.\d)% of input ([\d,]+) rows ([\d,]+) rows/s")


def _pty(cwd: Path, *args: str, env_extra: dict | None = None) -> str:
    env = {**repo_env(), "PSTREAM_PROGRESS_DELAY": "0", "TERM": "xterm", **(env_extra or {})}
    child = pexpect.spawn(sys.executable, list(args), cwd=str(cwd), env=env, encoding="utf-8", timeout=300,
                          dimensions=(40, 200))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before[-3000:]
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", child.before).replace("\r", "\n")


@pytest.fixture(scope="module")
def big_input(tmp_path_factory):
    """8,000 rows and one run of them with output piped (not a terminal): (root, its stdout + stderr)."""
    root = tmp_path_factory.mktemp("progress")
    webshop_csv(root / "in.csv", records=8000, customers=300)
    piped = subprocess.run([sys.executable, "-m", "pipelines.run", "--input", "in.csv", "--output", "out"],
                           cwd=root, env={**repo_env(), "PSTREAM_PROGRESS_DELAY": "0"},
                           capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0, piped.stderr
    return root, piped.stdout + piped.stderr


def test_batch_run_shows_progress_on_a_terminal(big_input):
    out = _pty(big_input[0], "-m", "pipelines.run", "--input", "in.csv", "--output", "out3")
    seen = [(float(m[1]), int(m[2].replace(",", ""))) for m in LINE.finditer(out)]
    assert seen, out[-2000:]
    assert any(rows > 0 for _, rows in seen)                 # the reader's totals move during the run
    assert all(0 <= share <= 100 for share, _ in seen)
    assert [rows for _, rows in seen] == sorted(rows for _, rows in seen)   # never backwards
    assert re.search(r"\d:\d\d:\d\d", out)                  # elapsed
    assert "rows read" in out and "8,000" in out             # the summary follows


def test_quiet_and_non_terminal_runs_show_none(big_input):
    root, piped = big_input
    assert "of input" not in piped and "\x1b[" not in piped and "rows read" in piped
    quiet = _pty(root, "-m", "pipelines.run", "--input", "in.csv", "--output", "out2", "--quiet")
    assert "rows/s " not in quiet.split("output / count")[0] and "of input" not in quiet
    assert "rows read" in quiet


def test_cli_commands_show_progress_on_a_terminal(big_input):
    big_input = big_input[0]
    out = _pty(big_input, "-m", "cli", "keys", "export", "out/keys", "--kek", "local://out/kek.json",
               "-o", "keys.csv")
    assert re.search(r"exporting keys .*[\d,]+ keys [\d,]+ keys/s", out), out[-2000:]
    out = _pty(big_input, "-m", "cli", "decrypt", "out/encrypted", "--keys", "keys.csv", "-o", "decrypted.jsonl")
    assert re.search(r"decrypting .*[\d,]+ events [\d,]+ events/s", out), out[-2000:]
    assert "decrypted 8000 events" in out
    quiet = _pty(big_input, "-m", "cli", "decrypt", "out/encrypted", "--keys", "keys.csv", "-o", "decrypted.jsonl",
                 "--quiet")
    assert "events/s" not in quiet and "decrypted 8000 events" in quiet


def test_reader_totals_equal_rows_read_and_input_bytes(tmp_path):
    from pipelines.run import run
    from transforms import read_progress

    webshop_csv(tmp_path / "in.csv", records=3000, customers=50)
    lines: list[str] = []
    assert run(["--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out"), "--quiet"],
               echo=lines.append) == 0
    rows, nbytes = read_progress.snapshot()
    assert rows == 3000
    size = os.path.getsize(tmp_path / "in.csv")
    assert size * 0.9 <= nbytes <= size * 1.01 + 65536   # the file object's position: read-ahead included


@pytest.mark.parametrize("name", ["in[/].csv", "in[red]x[/red].csv", "in{0}{task.fields}{.csv"])
def test_a_description_is_shown_as_it_is_never_as_markup_or_a_format(tmp_path, name):
    """A file name with rich markup or format braces in it is shown as it is (it raised MarkupError,
    or KeyError/ValueError, in the display thread, and the progress line was gone)."""
    script = tmp_path / "work.py"
    script.write_text("import sys, time\nfrom pipelines.progress import Progress\n"
                      "with Progress(sys.argv[1], delay=0) as progress:\n"
                      "    for _ in range(5):\n        progress.advance(10)\n        time.sleep(0.1)\n"
                      "print('done')\n")
    out = _pty(tmp_path, str(script), f"reading {name}")
    assert f"reading {name}" in out and "Traceback" not in out and "done" in out, out
