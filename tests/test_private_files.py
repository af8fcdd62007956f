"""Owner-only files: modes set at creation, whatever the umask; the default run and the CLI's files.

- ``privacy.private_files`` creates files 0600 and directories 0700 even under umask 000, and
  narrows an existing 0644 file before writing into it.
- The README's first command, run twice: one copy of every output (the rerun replaces), and
  every file under the output root holding personal data or key material is 0600 in 0700
  directories (``leak_scan``), the key store and KEK included; the input it generated too.
- The SQLite key store, its -wal and -shm files while it is open, and the local KEK: 0600.
- ``pstream subjects export -o`` and ``pstream keys export -o`` write 0600 files.
- The leak scan itself finds what it is there to find: a 0644 file with PII, a temp file,
  plaintext outside its allowed place.
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest

from conftest import WEBSHOP, repo_env
from contracts import load_contract
from leak_scan import input_pii, scan_output
from pipeline_runs import read_csv
from privacy.kek import LocalKek
from privacy.keyring import KeyRing
from privacy.keystore import open_key_store
from privacy.private_files import open_private, private_dirs, private_file


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


def test_private_files_are_owner_only_from_creation(tmp_path, open_umask):
    with open_private(tmp_path / "a" / "b" / "keys.csv", "w") as handle:
        assert mode(handle.fileno()) == 0o600                       # before the first byte
        handle.write("secret")
    assert mode(tmp_path / "a") == 0o700 and mode(tmp_path / "a" / "b") == 0o700
    old = tmp_path / "old.jsonl"
    old.write_text("old")
    os.chmod(old, 0o644)
    with open_private(old, "ab") as handle:
        assert mode(handle.fileno()) == 0o600
        handle.write(b"new")
    assert old.read_text() == "oldnew"
    private_file(tmp_path / "store.sqlite")
    assert mode(tmp_path / "store.sqlite") == 0o600 and (tmp_path / "store.sqlite").read_bytes() == b""
    private_dirs(tmp_path / "x" / "y")
    assert mode(tmp_path / "x") == 0o700
    with pytest.raises(ValueError, match="writes files"):
        open_private(tmp_path / "r", "r")


def test_the_key_store_and_kek_are_owner_only_with_their_journal(tmp_path, open_umask):
    ring = KeyRing(open_key_store(str(tmp_path / "out" / "keystore.sqlite")), LocalKek.create(tmp_path / "out" / "kek.json"))
    ring.keys_for({("u1", "2024-01-01"): {"u1"}})               # the store is open: -wal and -shm exist
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["kek.json", "keystore.sqlite", "keystore.sqlite-shm", "keystore.sqlite-wal"]
    assert all(mode(tmp_path / "out" / name) == 0o600 for name in names) and mode(tmp_path / "out") == 0o700


def test_the_readme_command_twice_gives_one_copy_of_owner_only_files(tmp_path, open_umask):
    for attempt in range(2):
        proc = subprocess.run([sys.executable, "-m", "pipelines.run"], cwd=tmp_path, env=repo_env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^earlier runs replaced\s+1$", proc.stdout, re.M)
    out = tmp_path / "out"
    lines = {name: sum(len(p.read_text().splitlines()) for p in (out / name).rglob("*.jsonl"))
             for name in ("encrypted", "streams/webshop-1", "streams/webshop-2", "keys")}
    rows = read_csv(tmp_path / "example_input.csv")
    assert lines["encrypted"] == len(rows) == 10_000                 # one copy, not two
    assert lines["streams/webshop-1"] == sum(int(r["purposeConsent"]) >= 1 for r in rows)
    assert lines["keys"] == len({(r["userId"], r["date"][:10]) for r in rows})   # every key, reused ones too
    assert mode(tmp_path / "example_input.csv") == 0o600
    for name in ("kek.json", "keystore.sqlite"):
        assert mode(out / name) == 0o600
    contract = load_contract(WEBSHOP)
    user_ids = set(input_pii(rows, contract, ["userId"]))
    consented = set(input_pii([r for r in rows if int(r["purposeConsent"]) >= 2], contract))
    report = scan_output(out, input_pii(rows, contract), allowed={
        "streams/webshop-2/": consented, "keys/": user_ids, "keystore.sqlite": user_ids})
    assert report.clean, report.describe()
    assert report.files_scanned >= 7                                  # 4 outputs, record, KEK, key store

    # the CLI's files of plaintext: an access request report and a key export
    subject = rows[0]["userId"]
    for args, target in ((["subjects", "export", subject, "--output", "out", "-o", "dsar.json"], "dsar.json"),
                         (["keys", "export", "out/keys", "--kek", "local://out/kek.json", "-o", "k.csv"], "k.csv")):
        proc = subprocess.run([sys.executable, "-m", "cli", *args], cwd=tmp_path, env=repo_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert mode(tmp_path / target) == 0o600, target
    assert json.loads((tmp_path / "dsar.json").read_text())["recordCount"] == sum(r["userId"] == subject for r in rows)


def test_the_leak_scan_finds_leaks(tmp_path, webshop_contract):
    rows = [{"userId": "123456", "email": "ann@example.com", "fullName": "Ann Smith"}]
    values = input_pii(rows, webshop_contract)
    (tmp_path / "streams" / "s").mkdir(parents=True)
    (tmp_path / "streams" / "s" / "a.jsonl").write_text('{"email": "ann@example.com"}\n')
    os.chmod(tmp_path / "streams" / "s" / "a.jsonl", 0o644)
    (tmp_path / "encrypted").mkdir()
    (tmp_path / "encrypted" / ".temp-x.jsonl.tmp").write_text('{"fullName": "Ann Smith", "n": 11234567}\n')
    (tmp_path / "encrypted" / "b.jsonl").write_text('{"t": 1712345678, "x": "AQ123456Zk"}\n')  # no whole token
    os.chmod(tmp_path / "encrypted" / ".temp-x.jsonl.tmp", 0o600)
    os.chmod(tmp_path / "encrypted" / "b.jsonl", 0o600)
    report = scan_output(tmp_path, values, allowed={"streams/s/": {"ann@example.com"}})
    kinds = sorted((f.kind, f.path) for f in report.findings)
    assert ("mode", "streams/s/a.jsonl") in kinds                     # allowed there, but readable by others
    assert ("temp", "encrypted/.temp-x.jsonl.tmp") in kinds
    assert ("plaintext", "encrypted/.temp-x.jsonl.tmp") in kinds      # outside the stream that may hold it
    assert not [k for k in kinds if k[1] == "encrypted/b.jsonl"]
    assert report.files_scanned == 3 and "Ann" not in report.describe()   # fields named, values never
