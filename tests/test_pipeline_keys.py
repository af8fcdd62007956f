"""Separate pipeline runs sharing a key store: the same key per (user, UTC day), whoever made it first.

Every run is a real ``python -m pipelines.run`` process; the SQLite and PostgreSQL stores both.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path


from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from privacy.kek import LocalKek
from privacy.keystore import open_key_store
from privacy.lookup import lookup_key
from pipeline_runs import read_csv, run_pipeline, webshop_csv, write_rows
from store_backends import store_uri  # noqa: F401  (fixture: sqlite and postgresql)


def encrypted(root: Path) -> list[dict]:
    return [event for _, _, event in read_jsonl([str(root / "encrypted")])]


def keys_created(stdout: str) -> int:
    return int(re.search(r"^keys created\s+([\d,]+)$", stdout, re.M).group(1).replace(",", ""))


def without_nonce(event: dict) -> dict:
    """The event without strmMeta.nonce (random per accepted event)."""
    return {**event, "strmMeta": {k: v for k, v in event["strmMeta"].items() if k != "nonce"}}


def by_transaction(events: list[dict]) -> dict[str, dict]:
    return {event["transactionId"]: event for event in events}


def test_two_runs_share_keys_the_same_day_and_not_the_next(tmp_path, store_uri, capsys):
    kek = f"local://{tmp_path / 'kek.json'}"
    first = write_rows(tmp_path / "first.csv", [
        {"transactionId": "1", "userId": "111111", "email": "ann@example.com", "date": "2024-03-01 09:00:00"},
        {"transactionId": "2", "userId": "222222", "email": "bob@example.com", "date": "2024-03-01 10:00:00"},
    ])
    second = write_rows(tmp_path / "second.csv", [
        {"transactionId": "3", "userId": "111111", "email": "ann@example.com", "date": "2024-03-01 23:59:59"},
        {"transactionId": "4", "userId": "111111", "email": "ann@example.com", "date": "2024-03-02 00:00:00"},
        {"transactionId": "5", "userId": "333333", "email": "ann@example.com", "date": "2024-03-01 12:00:00"},
    ])
    common = ["--key_store", store_uri, "--kek", kek]
    first_out = run_pipeline(tmp_path, "--input", str(first), "--output", "run1", *common)
    second_out = run_pipeline(tmp_path, "--input", str(second), "--output", "run2", *common)
    one, two = by_transaction(encrypted(tmp_path / "run1")), by_transaction(encrypted(tmp_path / "run2"))

    same_day = two["3"]
    assert same_day["strmMeta"]["keyLink"] == one["1"]["strmMeta"]["keyLink"]
    assert same_day["email"] == one["1"]["email"] and same_day["userId"] == one["1"]["userId"]
    next_day = two["4"]
    assert next_day["strmMeta"]["keyLink"] != one["1"]["strmMeta"]["keyLink"]
    assert next_day["email"] != one["1"]["email"]
    assert two["5"]["email"] != one["1"]["email"]  # same value, another user: another key
    assert keys_created(first_out) == 2
    assert keys_created(second_out) == 2  # (111111, 03-02) and (333333, 03-01); (111111, 03-01) was reused
    store = open_key_store(store_uri)
    ids = lookup_key(store, LocalKek(tmp_path / "kek.json"))
    stored = store.lookup([(ids.value_hash("111111"), "2024-03-01"), (ids.value_hash("111111"), "2024-03-02")])
    assert len(stored) == 2

    # the subject commands work on the shared store, whichever backend it is
    assert pstream(["subjects", "forget", "111111", "--key-store", store_uri, "--kek", kek,
                    "--output", str(tmp_path / "run2")]) == 0
    assert capsys.readouterr().out.strip() == "deleted 2 keys"
    assert not (tmp_path / "run2" / "keys").exists() or all(
        row["keyFieldHash"] != ids.value_hash("111111") for _, _, row in read_jsonl([str(tmp_path / "run2" / "keys")]))
    assert pstream(["subjects", "export", "222222", "--key-store", store_uri, "--kek", kek,
                    "--output", str(tmp_path / "run1")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(r["transactionId"], r["email"]) for r in report["records"]] == [("2", "bob@example.com")]
    assert pstream(["subjects", "export", "111111", "--key-store", store_uri, "--kek", kek,
                    "--output", str(tmp_path / "run1")]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == []


def test_concurrent_runs_never_leave_an_event_under_a_key_that_was_not_kept(tmp_path, store_uri):
    """Two runs over the same input at the same time: every event of both is under a stored key,
    both wrote identical ciphertexts, and each (user, day) key was created by exactly one of them."""
    data = webshop_csv(tmp_path / "in.csv", records=2000, customers=120)
    kek = f"local://{tmp_path / 'kek.json'}"
    LocalKek.create(tmp_path / "kek.json")
    runs = [run_pipeline(tmp_path, "--input", str(data), "--output", f"run{i}", "--key_store", store_uri,
                         "--kek", kek, wait=False) for i in range(2)]
    for proc in runs:
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output
    events = [by_transaction(encrypted(tmp_path / f"run{i}")) for i in range(2)]
    assert events[0].keys() == events[1].keys() and len(events[0]) == len(read_csv(data))
    for transaction, event in events[0].items():
        other = events[1][transaction]
        assert without_nonce(event) == without_nonce(other)  # ciphertexts and keyLinks identical
    store = open_key_store(store_uri)
    links = {event["strmMeta"]["keyLink"] for event in events[0].values()}
    assert store.by_links(links).keys() == links  # no event under a key that was not kept
    for i in range(2):  # each run's keys/: every key its events use, once, whichever run created it
        rows = [row["keyLink"] for _, _, row in read_jsonl([str(tmp_path / f"run{i}" / "keys")])]
        assert sorted(rows) == sorted(links)
    per_pair = defaultdict(set)  # (user, UTC day) of the input -> keyLinks its events got, in both runs
    for row in read_csv(data):
        for run in events:
            per_pair[(row["userId"], row["date"][:10])].add(run[row["transactionId"]]["strmMeta"]["keyLink"])
    assert all(len(v) == 1 for v in per_pair.values())
    assert len(set().union(*per_pair.values())) == len(per_pair)
