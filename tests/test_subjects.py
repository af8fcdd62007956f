"""``pstream subjects`` / ``keys purge`` / ``policies`` on the output of a real web shop run."""
from __future__ import annotations

import base64
import json
from collections import defaultdict
from pathlib import Path

import pytest

from cli.export_files import encrypted_files
from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from privacy.daead import SivKey
from privacy.kek import LocalKek
from privacy.keyring import DAY_MS, day_start_ms
from privacy.keyset import key_proto
from privacy.keystore import open_key_store
from privacy.lookup import lookup_key
from pipeline_runs import copy_run, read_csv

PII = ("userId", "email", "fullName", "phoneNumber", "address")


@pytest.fixture
def run(subjects_run, tmp_path):
    return copy_run(subjects_run, tmp_path)


def cli(capsys, *args) -> tuple[int, str, str]:
    code = pstream(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def rows(path: Path) -> list[dict]:
    return [row for _, _, row in read_jsonl([str(path)])] if path.exists() else []


def user_days(run: Path) -> dict[str, set[str]]:
    days = defaultdict(set)
    for row in read_csv(run / "in.csv"):
        days[row["userId"]].add(row["date"][:10])
    return days


def ids_of(run: Path):
    return lookup_key(open_key_store(run / "out" / "keystore.sqlite"), LocalKek(run / "out" / "kek.json"))


def test_list_and_keylinks_follow_the_input(run, capsys):
    out_dir = str(run / "out")
    ids = ids_of(run)
    code, out, _ = cli(capsys, "subjects", "list", "--output", out_dir)
    assert code == 0
    hashed = dict(line.split("\t") for line in out.splitlines())  # the store knows hashes only
    assert {h: int(count) for h, count in hashed.items()} == {ids.subject_hash(u): len(d) for u, d in user_days(run).items()}
    code, out, err = cli(capsys, "subjects", "list", "--ids", "--output", out_dir)
    assert code == 0 and f"({len(hashed)} ids recovered from 1 encrypted files)" in err
    listed = {line.split("\t")[2]: line.split("\t")[1] for line in out.splitlines()}  # ids read back from encrypted/
    assert {user: int(count) for user, count in listed.items()} == {u: len(d) for u, d in user_days(run).items()}

    user = sorted(listed)[3]
    code, out, _ = cli(capsys, "subjects", "keylinks", user, "--output", out_dir)
    links = {line.split("\t")[0] for line in out.splitlines()}
    inputs = {row["transactionId"] for row in read_csv(run / "in.csv") if row["userId"] == user}
    theirs = {e["strmMeta"]["keyLink"] for e in rows(run / "out" / "encrypted") if e["transactionId"] in inputs}
    assert links == theirs and len(links) == len(user_days(run)[user])
    code, out, _ = cli(capsys, "subjects", "keylinks", ids.subject_hash(user), "--hashed", "--output", out_dir)
    assert {line.split("\t")[0] for line in out.splitlines()} == theirs


def test_forget_deletes_keys_and_every_exported_copy_and_prints_the_count(run, capsys):
    out_dir = run / "out"
    inputs = read_csv(run / "in.csv")
    by_user = defaultdict(list)
    for row in inputs:
        by_user[row["userId"]].append(row)
    # a subject with consent >= 1 somewhere, so that privacy streams hold some of their events
    forgotten = next(u for u, rs in sorted(by_user.items()) if any(r["purposeConsent"] != "0" for r in rs))
    kept = next(u for u, rs in sorted(by_user.items(), reverse=True) if u != forgotten)
    assert cli(capsys, "keys", "export", str(out_dir / "keys"), "--kek", f"local://{out_dir / 'kek.json'}",
               "-o", str(out_dir / "keys.csv"))[0] == 0
    code, out, _ = cli(capsys, "subjects", "keylinks", forgotten, "--output", str(out_dir))
    their_links = {line.split("\t")[0] for line in out.splitlines()}
    encrypted_before = {p: p.read_bytes() for p in (out_dir / "encrypted").rglob("*.jsonl")}
    streams_before = rows(out_dir / "streams")
    keys_before = rows(out_dir / "keys")
    assert any(e["strmMeta"]["keyLink"] in their_links for e in streams_before)

    code, out, err = cli(capsys, "subjects", "forget", forgotten, "--output", str(out_dir))
    assert code == 0
    assert out.strip() == f"deleted {len(their_links)} keys"  # (c) the count printed = keys removed
    store = open_key_store(out_dir / "keystore.sqlite")
    assert store.by_links(their_links) == {} and store.keys_of_subjects([ids_of(run).subject_hash(forgotten)]) == []
    assert sum(count for _, count in store.subjects()) == len(keys_before) - len(their_links)
    # wrapped key rows, decrypted stream rows and plaintext key exports of the subject are gone; nothing else
    assert [r for r in rows(out_dir / "keys")] == [r for r in keys_before if r["keyLink"] not in their_links]
    assert rows(out_dir / "streams") == [e for e in streams_before if e["strmMeta"]["keyLink"] not in their_links]
    export_links = [line.split(",", 1)[0] for line in (out_dir / "keys.csv").read_text().splitlines()[1:]]
    assert len(export_links) == len(keys_before) - len(their_links) and not set(export_links) & their_links
    assert {p: p.read_bytes() for p in (out_dir / "encrypted").rglob("*.jsonl")} == encrypted_before
    assert f"removed key rows {len(their_links)}, event rows " in err and "event rows 0" not in err

    # (a) the access request finds nothing decryptable for them, and everything for others
    code, out, _ = cli(capsys, "subjects", "export", forgotten, "--output", str(out_dir))
    report = json.loads(out)
    assert code == 0 and report["keys"] == [] and report["records"] == [] and report["recordCount"] == 0
    code, out, _ = cli(capsys, "subjects", "export", kept, "--output", str(out_dir))
    report = json.loads(out)
    expected = {r["transactionId"]: r for r in by_user[kept]}
    assert {r["transactionId"] for r in report["records"]} == set(expected)
    for record in report["records"]:
        assert {f: record[f] for f in PII} == {f: expected[record["transactionId"]][f] for f in PII}
    assert report["keys"][0]["policy"]["retentionDays"] == 2556

    # (b) the decrypt command with the (scrubbed) key export: null for them, plaintext for the others
    code, out, err = cli(capsys, "decrypt", str(out_dir / "encrypted"), "--keys", str(out_dir / "keys.csv"))
    decrypted = {e["transactionId"]: e for e in map(json.loads, out.splitlines())}
    for row in inputs:
        event = decrypted[row["transactionId"]]
        if row["userId"] == forgotten:
            assert all(event[f] is None for f in PII)
        else:
            assert {f: event[f] for f in PII} == {f: row[f] for f in PII}
    assert f"{len(by_user[forgotten])} without a key" in err

    code, out, _ = cli(capsys, "subjects", "forget", forgotten, "--output", str(out_dir))
    assert out.strip() == "deleted 0 keys"


def test_keys_on_disk_are_never_unwrapped(run):
    out_dir = run / "out"
    kek = LocalKek(out_dir / "kek.json")
    store = open_key_store(out_dir / "keystore.sqlite")
    links = [row["keyLink"] for row in rows(out_dir / "keys")]
    records = store.by_links(links)
    assert len(records) == len(links) > 100
    disk = b"".join(p.read_bytes() for p in out_dir.rglob("*") if p.is_file())
    for record in records.values():
        material = kek.unwrap(record.wrapped_key, record.key_link.encode())
        assert len(material) == 64
        for form in (material, base64.b64encode(material), base64.b64encode(key_proto(material)), material.hex().encode()):
            assert form not in disk
        assert record.wrapped_key in disk  # the store holds it, wrapped


def test_purge_removes_expired_keys_as_of_the_given_moment(run, capsys):
    out_dir = run / "out"
    days = sorted({r["date"][:10] for r in read_csv(run / "in.csv")})
    cutoff = days[len(days) // 2]
    moment = day_start_ms(cutoff) + 2556 * DAY_MS  # when the keys of `cutoff` expire
    keys_before = rows(out_dir / "keys")
    expired = {r["keyLink"] for r in keys_before if r["day"] <= cutoff}
    code, out, _ = cli(capsys, "keys", "purge", "--output", str(out_dir), "--now", str(moment - 1))
    assert out.strip() == f"purged {len({r['keyLink'] for r in keys_before if r['day'] < cutoff})} expired keys"
    code, out, _ = cli(capsys, "keys", "purge", "--output", str(out_dir), "--now", str(moment))
    assert code == 0 and out.strip() == f"purged {len({r['keyLink'] for r in keys_before if r['day'] == cutoff})} expired keys"
    assert {r["keyLink"] for r in rows(out_dir / "keys")} == {r["keyLink"] for r in keys_before} - expired
    assert open_key_store(out_dir / "keystore.sqlite").by_links(expired) == {}
    code, out, _ = cli(capsys, "keys", "purge", "--output", str(out_dir), "--now", "2030-01-01T00:00:00Z")
    assert out.strip() == "purged 0 expired keys"


def test_policies_commands(run, capsys):
    out_dir = str(run / "out")
    code, out, _ = cli(capsys, "policies", "create", "marketing", "--retention-days", "730",
                       "--legal-grounds", "consent (GDPR 6(1)(a))", "--output", out_dir)
    assert code == 0 and "730 days" in out
    code, out, _ = cli(capsys, "policies", "list", "--output", out_dir)
    assert out.splitlines() == ["marketing\t730\tconsent (GDPR 6(1)(a))\t"]
    code, _, err = cli(capsys, "policies", "create", "bad id!", "--output", out_dir)
    assert code == 2 and "policy id" in err
    code, _, err = cli(capsys, "policies", "create", "short", "--retention-days", "0", "--output", out_dir)
    assert code == 2 and "retention_days" in err


def test_bad_subject_ids_and_missing_stores_are_refused(run, capsys, tmp_path):
    code, _, err = cli(capsys, "subjects", "forget", "", "--output", str(run / "out"))
    assert code == 2 and "must not be empty" in err
    code, _, err = cli(capsys, "subjects", "forget", "y" * 1001, "--output", str(run / "out"))
    assert code == 2 and "at most 1000" in err and "yyyy" not in err
    code, _, err = cli(capsys, "subjects", "keylinks", "not-a-hash", "--hashed", "--output", str(run / "out"))
    assert code == 2 and "64 lowercase hex" in err
    code, _, err = cli(capsys, "subjects", "list", "--output", str(tmp_path / "nowhere"))
    assert code == 2 and "no key store" in err
    assert not (tmp_path / "nowhere").exists()  # no empty store was created by the typo


def test_access_requests_read_only_the_partitions_of_the_subjects_days(tmp_path):
    for day in ("2024-03-01", "2024-03-02", "2024-03-03"):
        (tmp_path / "encrypted" / f"date={day}").mkdir(parents=True)
        (tmp_path / "encrypted" / f"date={day}" / "part-0.jsonl").write_text("{}\n")
    (tmp_path / "encrypted" / "unpartitioned.jsonl").write_text("{}\n")
    chosen = encrypted_files(str(tmp_path), {"2024-03-02"})
    assert [Path(p).relative_to(tmp_path).as_posix() for p in chosen] == [
        "encrypted/date=2024-03-02/part-0.jsonl", "encrypted/unpartitioned.jsonl"]
    assert len(encrypted_files(str(tmp_path))) == 4


def test_access_report_skips_events_of_another_subject_under_a_shared_key(simulator_contract):
    """A key shared by two subjects (same key-field value): each report holds only its own events."""
    from privacy.fields import FieldPlan
    from privacy.keystore import KeyRecord
    from privacy.subjects import access_report

    plan = FieldPlan(simulator_contract)
    key = SivKey.generate()
    record = KeyRecord("link-1", "h(session-1)", "2024-03-01", key.key_id, b"w", "local://k", 0, 1, ("h(a-subject)",), "")
    events = [plan.encrypt({"strmMeta": {"eventContractRef": simulator_contract.ref, "keyLink": "link-1", "timestamp": t},
                            simulator_contract.data_subject_field: subject, "uniqueIdentifier": "u",
                            "someSensitiveValue": "s", "notSensitiveValue": "n"}, key)
              for t, subject in ((1, "a-subject"), (2, "b-subject"))]
    report = access_report("a-subject", [record], {"link-1": key}, events, lambda ref: plan, clock=lambda: 0)
    assert report["recordCount"] == 1 and report["records"][0][simulator_contract.data_subject_field] == "a-subject"
    assert report["generatedAt"] == "1970-01-01T00:00:00Z"
