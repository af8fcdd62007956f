"""The default job (`python -m pipelines.run`, no arguments) against the issue's promises.

One run of the real command in a fresh directory; every test reads its outputs.
"""
from __future__ import annotations

import base64
import csv
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest
import tink
from tink import daead, secret_key_access

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from contracts.events import coerce_row
from pipelines.config import load_config
from privacy.daead import key_id_of
from privacy.keyring import utc_day
from privacy.kek import LocalKek
from privacy.keystore import open_key_store
from privacy.masking import hmac_mask

PII = ("userId", "email", "fullName", "phoneNumber", "address")


def events(root: Path, name: str) -> list[dict]:
    return [obj for _, _, obj in read_jsonl([str(root / "out" / name)])]


def input_rows(root: Path) -> list[dict]:
    with open(root / "example_input.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def row_key(event: dict) -> tuple:
    """Non-PII fields that identify a transaction in input and output alike."""
    return (str(event["transactionId"]), str(event["date"]), int(event["transactionAmount"]), tuple(event["items"]))


def summary(stdout: str) -> dict[str, int]:
    return {m.group(1).strip(): int(m.group(2).replace(",", ""))
            for m in re.finditer(r"^(.+?)\s{2,}([\d,]+)$", stdout, re.M)}


@pytest.fixture(scope="module")
def run(default_run):
    root, stdout = default_run
    rows = input_rows(root)
    contract = load_config().contract
    typed = {row_key(coerce_row(contract, r)): (r, coerce_row(contract, r)) for r in rows}
    return root, stdout, rows, typed


def test_every_row_is_accounted_for_in_the_printed_summary(run):
    root, stdout, rows, _ = run
    counts = summary(stdout)
    assert counts["rows read"] == len(rows) == 10_000
    assert counts["valid"] + counts["dead letters"] == counts["rows read"]
    assert counts["out/encrypted/"] == counts["valid"] == len(events(root, "encrypted"))
    assert counts["keys created"] == counts["out/keys/"] == len(events(root, "keys"))
    assert "error" not in stdout


def test_no_personal_data_in_encrypted_keys_or_dead_letters(run):
    root, _, rows, _ = run
    personal = {r[f] for r in rows for f in ("email", "fullName", "phoneNumber", "address")}
    for name in ("encrypted", "keys", "dead_letter"):
        folder = root / "out" / name
        if not folder.exists():
            continue
        text = "".join(p.read_text() for p in folder.rglob("*.jsonl"))
        strings = set(re.findall(r'"((?:[^"\\]|\\.)*)"', text))
        assert not strings & personal, name
        assert "@" not in text, name  # no e-mail address, even inside a longer value


def test_all_pii_fields_of_an_event_share_one_key_id(run):
    root = run[0]
    for event in events(root, "encrypted"):
        ids = {key_id_of(event[f]) for f in PII if event.get(f) is not None}
        assert len(ids) == 1 and None not in ids


def test_one_keylink_per_user_and_utc_day(run):
    root, _, _, typed = run
    links_by_user_day = defaultdict(set)
    days_by_link = defaultdict(set)
    for event in events(root, "encrypted"):
        _, source = typed[row_key(event)]
        day = utc_day(event["strmMeta"]["timestamp"])
        assert day == source["date"][:10]
        links_by_user_day[(source["userId"], day)].add(event["strmMeta"]["keyLink"])
        days_by_link[event["strmMeta"]["keyLink"]].add((source["userId"], day))
    assert all(len(links) == 1 for links in links_by_user_day.values())
    assert all(len(owners) == 1 for owners in days_by_link.values())  # so different days, different links
    multi_day_users = {u for (u, _) in links_by_user_day if sum(1 for (v, _) in links_by_user_day if v == u) > 1}
    assert multi_day_users  # the data does have users on several days


def test_privacy_streams_hold_exactly_the_consented_events_with_exactly_the_permitted_fields(run):
    root, _, _, typed = run
    config = load_config()
    one, two = config.streams
    expected_one, expected_two = {}, {}
    for key, (_, source) in typed.items():
        if source["purposeConsent"] >= 1:
            expected_one[key] = source
        if source["purposeConsent"] >= 2:
            expected_two[key] = source
    stream_one = {row_key(e): e for e in events(root, f"streams/{one.name}")}
    stream_two = {row_key(e): e for e in events(root, f"streams/{two.name}")}
    assert stream_one.keys() == expected_one.keys() and len(stream_one) == len(events(root, f"streams/{one.name}"))
    assert stream_two.keys() == expected_two.keys()
    mask_key = open_key_store(root / "out" / "keystore.sqlite").store_key(f"mask/{one.name}",
                                                                           LocalKek(root / "out" / "kek.json"))
    for key, event in stream_one.items():
        source = expected_one[key]
        assert event["userId"] == hmac_mask(source["userId"], mask_key)  # level 1: decrypted, then masked (keyed)
        for field in ("email", "fullName", "phoneNumber", "address"):  # level 2: still encrypted
            assert event[field] != source[field] and key_id_of(event[field]) is not None
        assert event["age"] == source["age"] and event["tshirtSize"] == source["tshirtSize"]
    for key, event in stream_two.items():
        source = expected_two[key]
        assert {k: v for k, v in event.items() if k != "strmMeta"} == source


def test_google_tink_decrypts_our_ciphertexts_with_the_exported_keysets(run, tmp_path):
    root, _, _, typed = run
    out = tmp_path / "keys.csv"
    assert pstream(["keys", "export", str(root / "out" / "keys"), "--kek",
                    f"local://{root / 'out' / 'kek.json'}", "-o", str(out)]) == 0
    with open(out, newline="") as handle:
        keysets = {row["keyLink"]: row for row in csv.DictReader(handle)}
    daead.register()
    checked = 0
    for event in events(root, "encrypted")[:300]:
        row = keysets[event["strmMeta"]["keyLink"]]
        assert int(row["expiresAt"]) > event["strmMeta"]["timestamp"]
        handle = tink.json_proto_keyset_format.parse(row["encryptionKey"], secret_key_access.TOKEN)
        primitive = handle.primitive(daead.DeterministicAead)
        _, source = typed[row_key(event)]
        for field in PII:
            plain = primitive.decrypt_deterministically(base64.b64decode(event[field]), b"").decode()
            assert plain == source[field]
            checked += 1
    assert checked == 300 * len(PII)


def test_decrypt_command_restores_the_input(run, tmp_path, capsys):
    root, _, _, typed = run
    keys = tmp_path / "keys.jsonl"
    pstream(["keys", "export", str(root / "out" / "keys"), "--kek", f"local://{root / 'out' / 'kek.json'}",
             "-o", str(keys)])
    decrypted = tmp_path / "decrypted.jsonl"
    assert pstream(["decrypt", str(root / "out" / "encrypted"), "--keys", str(keys), "-o", str(decrypted)]) == 0
    lines = [json.loads(line) for line in decrypted.read_text().splitlines()]
    assert len(lines) == len(typed)
    for event in lines:
        assert {k: v for k, v in event.items() if k != "strmMeta"} == typed[row_key(event)][1]
    assert "0 without a key" in capsys.readouterr().err
