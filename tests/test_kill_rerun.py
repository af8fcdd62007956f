"""Kill and rerun: a real ``python -m pipelines.run`` killed with SIGKILL at several moments.

One output root, one input (6,000 web shop rows), the default write mode (replace). Runs are
killed: right after the run's record appears (before any event is written), while events are
being encrypted and written (temp files growing, keys being inserted), during the renames of the
commit (made observable with ``PSTREAM_COMMIT_STEP_DELAY``, which sleeps after each commit
step), and after the commit record but before the clean-up. After each kill, readers
(``committed_files``) see no run or exactly one whole run. After each completed rerun:

- exactly one copy of every input event in encrypted/ (by transactionId), and the privacy
  streams hold exactly the consenting events, once;
- keys/ holds every keyLink that encrypted/ uses, once, including the keys that killed runs
  inserted into the key store (the rerun created fewer keys than it used);
- ``pstream keys export`` + ``pstream decrypt`` recover every event's PII;
- no temp file, no group/other-readable file with personal data or key material, and no
  plaintext PII outside the privacy stream that may hold it (``leak_scan``).

Two runs into one output at once: a run stopped (SIGSTOP) in the middle of its renames is alive,
so a second run that begins and commits meanwhile leaves its files alone; when the first resumes
and commits, its files replace the second's (the later commit wins), nothing is lost or left.

``PSTREAM_KILL_MATRIX=1`` adds a slower matrix: kills at evenly spaced times through a run.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import repo_env
from leak_scan import input_pii, scan_output
from pipeline_runs import read_csv, webshop_csv
from contracts import load_contract
from transforms.run_commit import RUN_FILE, committed_files

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
ROWS, CUSTOMERS = 6_000, 300
DELAY = "0.4"   # seconds after each commit step, in the runs killed during their commit


def start(cwd: Path, input_csv: Path, delay: str | None = None) -> subprocess.Popen:
    env = repo_env()
    env.pop("PSTREAM_COMMIT_STEP_DELAY", None)
    if delay:
        env["PSTREAM_COMMIT_STEP_DELAY"] = delay
    return subprocess.Popen([sys.executable, "-m", "pipelines.run", "--input", str(input_csv), "--output", "out"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def records(out: Path) -> dict[str, dict]:
    found = {}
    for path in (out / ".pstream" / "runs").glob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being replaced
        found[record["run"]] = record
    return found


def run_files(out: Path, run_id: str) -> list[Path]:
    return [p for p in out.rglob("*.jsonl") if (m := RUN_FILE.match(p.name)) and m["run"] == run_id]


def temp_bytes(out: Path, run_id: str) -> int:
    return sum(p.stat().st_size for p in out.glob(f"*/.temp-{run_id}/**/*") if p.is_file())


def kill_when(proc: subprocess.Popen, out: Path, ready, known: set[str], timeout: float = 120) -> str:
    """SIGKILL the run as soon as ``ready(out, run_id, record)`` holds; returns its run id."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stdout.read()}"
        new = {k: v for k, v in records(out).items() if k not in known}
        for run_id, record in new.items():
            if ready(out, run_id, record):
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                proc.stdout.close()
                return run_id
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("kill point never reached")


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, output
    return output


def committed(out: Path, folder: str) -> list[dict]:
    rows = []
    for path in committed_files([str(out / folder)]):
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return rows


def committed_runs(out: Path) -> set[str]:
    return {RUN_FILE.match(Path(p).name)["run"] for folder in ("encrypted", "keys", "streams")
            for p in committed_files([str(out / folder)])}


def summary_count(output: str, label: str) -> int:
    return int(re.search(rf"^{re.escape(label)}\s+([\d,]+)$", output, re.M).group(1).replace(",", ""))


def check_complete(tmp_path: Path, out: Path, rows: list[dict], output: str, decrypt: bool = True) -> dict:
    """The checks after a completed rerun (module docstring); returns figures. ``decrypt``: also
    through ``pstream keys export`` and ``pstream decrypt`` (two more processes)."""
    ids = sorted(row["transactionId"] for row in rows)
    encrypted = committed(out, "encrypted")
    assert sorted(e["transactionId"] for e in encrypted) == ids          # one copy of every event
    consent = {row["transactionId"]: int(row["purposeConsent"]) for row in rows}
    for name, level in (("webshop-1", 1), ("webshop-2", 2)):
        stream = sorted(e["transactionId"] for e in committed(out, f"streams/{name}"))
        assert stream == sorted(t for t in ids if consent[t] >= level), name
    used = {e["strmMeta"]["keyLink"] for e in encrypted}
    key_rows = [k["keyLink"] for k in committed(out, "keys")]
    assert len(key_rows) == len(set(key_rows)) and set(key_rows) == used   # every key used, once
    created = summary_count(output, "keys created")
    if decrypt:
        decrypt_with_exported_keys(tmp_path, out, rows)
    contract = load_contract(WEBSHOP)
    consented = input_pii([row for row in rows if int(row["purposeConsent"]) >= 2], contract)
    user_ids = set(input_pii(rows, contract, ["userId"]))
    # userId (the key field and data subject) is in keys/ and the key store until they hold keyed hashes
    report = scan_output(out, input_pii(rows, contract), allowed={
        "streams/webshop-2/": set(consented), "keys/": user_ids, "keystore.sqlite": user_ids})
    assert report.clean, report.describe()
    return {"keys used": len(used), "keys created": created, "files scanned": report.files_scanned}


def decrypt_with_exported_keys(tmp_path: Path, out: Path, rows: list[dict]) -> None:
    keys_csv, decrypted = tmp_path / "exported-keys.csv", tmp_path / "decrypted.jsonl"
    for args in (["keys", "export", "out/keys", "--kek", f"local://{out / 'kek.json'}", "-o", str(keys_csv)],
                 ["decrypt", "out/encrypted", "--keys", str(keys_csv), "-o", str(decrypted)]):
        proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=tmp_path, env=repo_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"decrypted {len(rows)} events; 0 without a key" in proc.stderr
    by_id = {row["transactionId"]: row for row in rows}
    for line in decrypted.read_text().splitlines():
        event = json.loads(line)
        source = by_id[event["transactionId"]]
        assert [event[f] for f in ("email", "fullName", "phoneNumber", "address")] == \
            [source[f] for f in ("email", "fullName", "phoneNumber", "address")]
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in (keys_csv, decrypted))


def test_runs_killed_at_each_moment_then_rerun_leave_one_copy_and_every_key(tmp_path):
    input_csv = webshop_csv(tmp_path / "in.csv", records=ROWS, customers=CUSTOMERS)
    rows = read_csv(input_csv)
    out = tmp_path / "out"
    known: set[str] = set()

    # 1. before anything is written: the record is there, no temp file yet
    begun = kill_when(start(tmp_path, input_csv), out, lambda o, r, rec: True, known)
    known.add(begun)
    assert committed_runs(out) == set()

    # 2. while encrypting and writing: temp files growing (keys inserted meanwhile)
    writing = kill_when(start(tmp_path, input_csv), out, lambda o, r, rec: temp_bytes(o, r) > 300_000, known)
    known.add(writing)
    assert committed_runs(out) == set()
    assert not records(out).get(begun)                       # the run killed first was rolled back
    assert temp_bytes(out, writing) > 0 and not run_files(out, writing)

    # 3. during the renames: the record says committing and some files have their final names
    renaming = kill_when(start(tmp_path, input_csv, DELAY), out,
                         lambda o, r, rec: rec["state"] == "committing" and len(run_files(o, r)) >= 1, known)
    known.add(renaming)
    assert records(out)[renaming]["state"] == "committing" and run_files(out, renaming)
    assert writing not in records(out) and temp_bytes(out, writing) == 0   # rolled back by the third run
    assert committed_runs(out) == set()                      # half renamed: readers see nothing of it

    # a rerun: the leftovers of all three are gone, one copy of everything
    output = finish(start(tmp_path, input_csv))
    first = check_complete(tmp_path, out, rows, output)
    assert first["keys created"] < first["keys used"]       # the killed runs' keys, reused and in keys/
    assert "killed runs rolled back" in output
    (complete,) = committed_runs(out)
    assert set(records(out)) == {complete}                   # killed runs' records removed

    # 4. after the commit record, before the clean-up: readers see the new run only
    after = kill_when(start(tmp_path, input_csv, DELAY), out,
                      lambda o, r, rec: rec["state"] == "done", known | {complete})
    assert committed_runs(out) == {after}
    assert run_files(out, complete)                          # the replaced run's files, not yet deleted
    assert sorted(e["transactionId"] for e in committed(out, "encrypted")) == sorted(r["transactionId"] for r in rows)

    output = finish(start(tmp_path, input_csv))
    second = check_complete(tmp_path, out, rows, output, decrypt=False)
    assert second["keys created"] == 0 and second["keys used"] == first["keys used"]
    (last,) = committed_runs(out)
    assert set(records(out)) == {last} and not run_files(out, complete) and not run_files(out, after)


@pytest.mark.skipif(os.environ.get("PSTREAM_KILL_MATRIX") != "1", reason="slow matrix: PSTREAM_KILL_MATRIX=1")
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95, 1.0])
def test_kill_matrix_at_fractions_of_a_run(tmp_path, fraction):
    input_csv = webshop_csv(tmp_path / "in.csv", records=ROWS, customers=CUSTOMERS)
    rows = read_csv(input_csv)
    started = time.monotonic()
    finish(start(tmp_path, input_csv))
    whole = time.monotonic() - started
    for attempt in range(2):
        proc = start(tmp_path, input_csv, DELAY if attempt else None)
        time.sleep(whole * fraction)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        runs = committed_runs(tmp_path / "out")
        assert len(runs) == 1                                # the earlier complete run, or the new one
        assert len(committed(tmp_path / "out", "encrypted")) == len(rows)
    check_complete(tmp_path, tmp_path / "out", rows, finish(start(tmp_path, input_csv)))


def test_two_concurrent_runs_into_one_output_never_delete_each_others_work(tmp_path):
    input_csv = webshop_csv(tmp_path / "in.csv", records=1500, customers=80)
    rows = read_csv(input_csv)
    out = tmp_path / "out"
    # the first run is stopped (SIGSTOP) in the middle of its renames: alive, its commit half done
    slow = start(tmp_path, input_csv, "0.3")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert slow.poll() is None
        if any(r["state"] == "committing" and run_files(out, run) for run, r in records(out).items()):
            break
        time.sleep(0.02)
    slow.send_signal(signal.SIGSTOP)
    try:
        (slow_run,) = records(out)
        half = run_files(out, slow_run)
        fast = finish(start(tmp_path, input_csv))          # a whole run begins and commits meanwhile
        assert summary_count(fast, "leftovers kept (run may be alive)") == 1   # saw the stopped run, left it
        assert all(p.exists() for p in half) and temp_bytes(out, slow_run) > 0
    finally:
        slow.send_signal(signal.SIGCONT)
    finish(slow)                                          # its commit ends, after the other run's
    assert committed_runs(out) == {slow_run}              # the later commit replaced the earlier one
    assert sorted(e["transactionId"] for e in committed(out, "encrypted")) == sorted(r["transactionId"] for r in rows)
    assert not list(out.rglob(".temp-*")) and set(records(out)) == {slow_run}
    used = {e["strmMeta"]["keyLink"] for e in committed(out, "encrypted")}
    assert {k["keyLink"] for k in committed(out, "keys")} == used
