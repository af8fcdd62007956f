"""The benchmark runs end to end on a tiny input (the real figures come from benchmarks/README.md's command)."""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import orjson

from benchmarks.pipeline import ensure_input, fitted_slope, summarize_outputs, _sample_input
from benchmarks.plain_loop import run_plain_loop
from tests.conftest import REPO, repo_env


def test_benchmark_compares_variants_in_rounds_and_prints_the_slope(tmp_path):
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.pipeline", "--rows", "1000,2000", "--rounds", "1",
         "--variants", "plain,beam,beam2", "--workdir", str(tmp_path), "--json", str(figures)],
        cwd=REPO, env=repo_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for label in ("(a) plain Python loop, own code", "(b) graph, in-process", "(c) graph, 2 workers"):
        assert re.search(re.escape(label) + r".*\d.*MiB", out), out
    assert "every run of every variant wrote the same events" in out
    assert "time per stage" in out and "keys (key ring" in out
    assert re.search(r"\(b\) graph, in-process\s+-?\d+\.\d\d", out), out  # the slope line
    data = json.loads(figures.read_text())
    assert [run["rows"] for run in data["runs"]] == [1000, 2000]
    for run in data["runs"]:
        variants = run["variants"]
        assert set(variants) == {"plain", "beam", "beam2"}
        assert all(v["peak_rss"] > 10 * 2**20 for v in variants.values())  # a whole process tree was measured
        summaries = [v["summary"] for v in variants.values()]
        assert summaries[0]["encrypted"]["events"] == run["rows"]
        assert all(s == summaries[0] for s in summaries[1:])  # counts, id hashes, sample decrypted


def test_the_output_check_sees_a_lost_event_and_a_wrong_ciphertext(tmp_path):
    source = ensure_input(tmp_path, 3000, "webshop", seed=3, echo=lambda *_: None)
    sample = _sample_input(source, every=7)
    first, second = tmp_path / "a", tmp_path / "b"
    counts = run_plain_loop(str(source), str(first))
    assert counts["encrypted"] == 3000 and counts["rows_read"] == 3000
    run_plain_loop(str(source), str(second))
    good = summarize_outputs(first, sample)
    assert good == summarize_outputs(second, sample)  # same events, other keys
    done, total = good["sample_decrypted"].split("/")
    assert done == total and int(total) == 50
    stream = next((second / "streams" / "webshop-2").glob("*.jsonl"))
    lines = stream.read_bytes().splitlines(keepends=True)
    stream.write_bytes(b"".join(lines[1:]))  # one event lost
    encrypted = next((second / "encrypted").glob("*.jsonl"))
    rows = [orjson.loads(line) for line in encrypted.read_bytes().splitlines()]
    swapped = next(i for i, r in enumerate(rows) if r["transactionId"] in sample)
    other = next(i for i, r in enumerate(rows) if r["strmMeta"]["keyLink"] != rows[swapped]["strmMeta"]["keyLink"])
    rows[swapped]["email"] = rows[other]["email"]  # a ciphertext under another key
    encrypted.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    bad = summarize_outputs(second, sample)
    assert bad["streams/webshop-2"]["events"] == good["streams/webshop-2"]["events"] - 1
    assert bad["streams/webshop-2"]["ids"] != good["streams/webshop-2"]["ids"]
    assert bad["sample_decrypted"] != good["sample_decrypted"]
    assert base64.b64decode(rows[swapped]["email"])[:1] == b"\x01"  # still Tink-shaped: only the check can tell


def test_the_plain_loop_reuses_keys_a_second_run_finds_in_its_store(tmp_path):
    source = ensure_input(tmp_path, 500, "one-key-per-event", seed=2, echo=lambda *_: None)
    out = tmp_path / "out"
    first = run_plain_loop(str(source), str(out))
    assert first["keys"] == 500  # one key per event
    second = run_plain_loop(str(source), str(out))
    assert second["keys"] == 0 and second["encrypted"] == 500


def test_fitted_slope_is_the_log_log_exponent():
    assert abs(fitted_slope([1, 2, 4, 8], [3, 6, 12, 24]) - 1.0) < 1e-9
    assert abs(fitted_slope([100, 200, 400], [5, 20, 80]) - 2.0) < 1e-9
