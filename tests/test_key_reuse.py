"""Runs that share a key store reuse the day's keys: same ciphertext for the same value and day."""
from __future__ import annotations

import json

from cli.jsonl_files import read_jsonl
from pipelines.run import run
from privacy.kek import LocalKek
from privacy.keystore import open_key_store
from privacy.lookup import lookup_key

HEADER = ("transactionId,userId,email,age,tshirtSize,fullName,phoneNumber,address,transactionAmount,"
          "items,totalItems,date,purposeConsent")


def row(tx, user, day):
    return f'{tx},{user},{user}@example.com,30,M,Name {user},555,Street {user},1,"[1]",1,{day} 12:00:00,2'


def encrypted(out):
    return {e["transactionId"]: e for _, _, e in read_jsonl([str(out / "encrypted")])}


def test_second_run_reuses_keys_of_the_same_day(tmp_path):
    first = tmp_path / "a.csv"
    first.write_text("\n".join([HEADER, row(1, "u1", "2023-03-01"), row(2, "u2", "2023-03-01")]) + "\n")
    second = tmp_path / "b.csv"
    second.write_text("\n".join([HEADER, row(3, "u1", "2023-03-01"), row(4, "u1", "2023-03-02")]) + "\n")
    out = tmp_path / "out"
    lines = []
    assert run(["--input", str(first), "--output", str(out)], echo=lines.append) == 0
    assert run(["--input", str(second), "--output", str(out), "--write_mode", "append"], echo=lines.append) == 0
    events = encrypted(out)
    assert sorted(events) == ["1", "2", "3", "4"]  # appended: both runs' events
    assert events["1"]["email"] == events["3"]["email"]  # same user, same day, separate runs
    assert events["1"]["strmMeta"]["keyLink"] == events["3"]["strmMeta"]["keyLink"]
    assert events["4"]["email"] != events["1"]["email"]  # next day: another key
    assert events["4"]["strmMeta"]["keyLink"] != events["1"]["strmMeta"]["keyLink"]
    key_rows = [k for _, _, k in read_jsonl([str(out / "keys")])]
    ids = lookup_key(open_key_store(out / "keystore.sqlite"), LocalKek(out / "kek.json"))
    assert sorted((k["keyFieldHash"], k["day"]) for k in key_rows) == sorted([   # each run's keys/: the keys it used
        (ids.value_hash("u1"), "2023-03-01"), (ids.value_hash("u1"), "2023-03-01"), (ids.value_hash("u1"), "2023-03-02"),
        (ids.value_hash("u2"), "2023-03-01")])
    assert len({k["keyLink"] for k in key_rows}) == 3
    assert all('"u1"' not in json.dumps(k) and '"u2"' not in json.dumps(k) for k in key_rows)  # no plaintext ids
