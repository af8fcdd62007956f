"""`pstream subjects forget` leaves nothing of the subject under the output root that could be decrypted
or read: a leak scan (tests/leak_scan.py) of every file, hidden and temp files included, after forget."""
from __future__ import annotations

import gzip
import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from leak_scan import files_under, key_forms, scan, value_forms
from pipeline_runs import copy_run, read_csv, write_rows
from pipelines.run import run as run_pipeline
from privacy.kek import LocalKek
from privacy.keystore import open_key_store
from privacy.lookup import lookup_key
from privacy.masking import hmac_mask

PII = ("userId", "email", "fullName", "phoneNumber", "address")


def cli(capsys, *args) -> tuple[int, str, str]:
    code = pstream(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def subject_needles(out: Path, subject: str, inputs: list[dict]) -> dict[bytes, str]:
    """Byte forms of the subject's keys, of their plaintext values that no other subject shares, and of
    their masked id in the webshop-1 stream (a pseudonym the store's masking key links back to them)."""
    store = open_key_store(out / "keystore.sqlite")
    kek = LocalKek(out / "kek.json")
    records = store.keys_of_subjects([lookup_key(store, kek).subject_hash(subject)])
    theirs = {row[f] for row in inputs if row["userId"] == subject for f in PII}
    others = {row[f] for row in inputs if row["userId"] != subject for f in PII}
    masked = hmac_mask(subject, store.store_key("mask/webshop-1", kek))
    return key_forms(records, kek) | value_forms(sorted(theirs - others)) | {masked.encode(): "masked id"}


def plant_leftovers(out: Path, subject: str, capsys) -> list[Path]:
    """What killed runs and users leave under a root, under names forget cannot know in advance."""
    one = next((out / "streams" / "webshop-1").glob("*.jsonl"))
    two = next((out / "streams" / "webshop-2").glob("*.jsonl"))
    keys = next((out / "keys").glob("*.jsonl"))
    planted = [out / ".pstream-tmp-4f2a" / "streams" / "webshop-2" / "part-00000", out / "streams" / "webshop-1" / ".temp-abc",
               out / "keys" / "~partial", out / "exports" / "everything.gz", out / "exports" / "keys.csv",
               out / "exports" / "keys.jsonl", out / "exports" / "decrypted.jsonl", out / "dsar" / "request-17.json"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(two, planted[0])
    shutil.copy(one, planted[1])
    data = keys.read_bytes()
    planted[2].write_bytes(data[: len(data) - 40])  # a write cut short: its last line is half a row
    planted[3].write_bytes(gzip.compress(two.read_bytes()))
    kek = f"local://{out / 'kek.json'}"
    assert cli(capsys, "keys", "export", str(out / "keys"), "--kek", kek, "-o", str(planted[4]))[0] == 0
    assert cli(capsys, "keys", "export", str(out / "keys"), "--kek", kek, "-o", str(planted[5]))[0] == 0
    assert cli(capsys, "decrypt", str(out / "encrypted"), "--keys", str(planted[4]), "-o", str(planted[6]))[0] == 0
    assert cli(capsys, "subjects", "export", subject, "--output", str(out), "-o", str(planted[7]))[0] == 0
    return planted


def test_forget_leaves_no_decryptable_record_or_plaintext_of_the_subject_anywhere_under_the_root(
        subjects_run, tmp_path, capsys):
    run = copy_run(subjects_run, tmp_path)
    out = run / "out"
    inputs = read_csv(run / "in.csv")
    by_user = defaultdict(list)
    for row in inputs:
        by_user[row["userId"]].append(row)
    subject = next(u for u, rs in sorted(by_user.items()) if sum(r["purposeConsent"] == "2" for r in rs) >= 2)
    other = next(u for u in sorted(by_user, reverse=True) if u != subject)
    planted = plant_leftovers(out, subject, capsys)
    backup = out / "backup" / "keystore-copy.sqlite"  # a copy forget cannot rewrite
    backup.parent.mkdir()
    shutil.copy(out / "keystore.sqlite", backup)
    needles = subject_needles(out, subject, inputs)
    before = scan(out, needles)
    for path in planted + [out / "keystore.sqlite", out / "keys"]:  # the scan sees them all: the test can fail
        assert any(found.startswith(str(path.relative_to(out))) for found in before), path
    other_stream_rows = [e for _, _, e in read_jsonl([str(out / "streams")])
                         if e["transactionId"] in {r["transactionId"] for r in by_user[other]}]

    code, stdout, err = cli(capsys, "subjects", "forget", subject, "--output", str(out))
    assert code == 1 and stdout.startswith("deleted ")  # the keys are gone, but one file could not be cleaned
    assert "INCOMPLETE" in err and str(backup) in err
    assert scan(out, needles).keys() == {str(backup.relative_to(out))}  # and it is the only one left
    backup.unlink()
    code, stdout, err = cli(capsys, "subjects", "forget", subject, "--output", str(out))
    assert code == 0 and stdout.strip() == "deleted 0 keys"

    assert scan(out, needles) == {}  # every file: no key of theirs in any form, none of their values
    files = files_under(out)
    figures = f"leak scan after forget: {len(files)} files, {sum(Path(f).stat().st_size for f in files):,} bytes"
    assert not planted[7].exists()  # their access report is gone; other files were cleaned in place
    assert planted[1].exists() and planted[2].exists()
    # other subjects keep everything: stream rows, keys, decryptable events
    assert [e for _, _, e in read_jsonl([str(out / "streams")])
            if e["transactionId"] in {r["transactionId"] for r in by_user[other]}] == other_stream_rows
    code, report, _ = cli(capsys, "subjects", "export", other, "--output", str(out))
    assert {r["transactionId"] for r in json.loads(report)["records"]} == {r["transactionId"] for r in by_user[other]}
    with capsys.disabled():
        print(figures, "- nothing of the subject")


ODD = ["abc", "x" * 150, "Zoë Ünïcode 日本", "tab\there"]


def test_every_id_the_pipeline_accepts_can_be_exported_and_forgotten(tmp_path, capsys):
    rows = [{"transactionId": str(1000 + i), "userId": user, "email": f"mail-{i}@example.com",
             "date": f"2024-03-0{1 + i // len(ODD)} 10:00:00"} for i, user in enumerate(ODD * 2 + ["plain-1"])]
    write_rows(tmp_path / "in.csv", rows)
    out = tmp_path / "out"
    assert run_pipeline(["--input", str(tmp_path / "in.csv"), "--output", str(out)], echo=lambda line: None) == 0
    assert len([e for _, _, e in read_jsonl([str(out / "encrypted")])]) == len(rows)  # all accepted
    code, listed, _ = cli(capsys, "subjects", "list", "--ids", "--output", str(out))
    shown = [json.dumps(u) if "\t" in u else u for u in ODD + ["plain-1"]]  # a tab would split the column
    assert sorted(line.split("\t")[2] for line in listed.splitlines()) == sorted(shown)
    for user in ODD:
        code, report, err = cli(capsys, "subjects", "export", user, "--output", str(out))
        assert code == 0, err
        assert sorted(r["email"] for r in json.loads(report)["records"]) == sorted(
            r["email"] for r in rows if r["userId"] == user)
    code, stdout, err = cli(capsys, "subjects", "forget", *ODD, "--output", str(out))
    assert code == 0 and stdout.strip() == f"deleted {2 * len(ODD)} keys", err
    code, listed, _ = cli(capsys, "subjects", "list", "--ids", "--output", str(out))
    assert [line.split("\t")[2] for line in listed.splitlines()] == ["plain-1"]
    raw = (out / "keystore.sqlite").read_bytes() + b"".join(p.read_bytes() for p in (out / "keys").glob("*"))
    assert not any(user.encode() in raw for user in ODD[1:] + ["plain-1"])  # ("abc" could be in any hex)


def test_the_pipeline_and_the_subject_commands_bound_ids_alike(webshop_contract):
    from contracts.events import MAX_ID_CHARS, EventError, EventValidator
    from privacy.subjects import check_subject_id

    validator = EventValidator(webshop_contract)
    event = {"strmMeta": {"eventContractRef": webshop_contract.ref, "consentLevels": []}, "transactionId": "1"}
    longest = {**event, "userId": "é" * MAX_ID_CHARS}
    assert validator.check(longest) and check_subject_id(longest["userId"])
    too_long = {**event, "userId": "é" * (MAX_ID_CHARS + 1)}
    with pytest.raises(EventError, match=f"at most {MAX_ID_CHARS} characters") as caught:
        validator.check(too_long)
    assert "é" not in caught.value.reason
    with pytest.raises(ValueError, match=f"at most {MAX_ID_CHARS}"):
        check_subject_id(too_long["userId"])


def test_forget_cleans_every_object_under_a_remote_root(s3_server):
    """The same scan on s3:// (moto): hidden and temp objects are read and cleaned, the committed
    encrypted output is left as it is."""
    import uuid

    from apache_beam.io.filesystems import FileSystems
    from apache_beam.options.pipeline_options import PipelineOptions

    from cli.export_files import scrub_output

    gone, kept = "01a2331e-0000-7000-8000-00000000000a", "01a2331e-0000-7000-8000-00000000000b"
    row = lambda link, extra="": json.dumps({"strmMeta": {"keyLink": link}, "email": f"x{extra}@example.com"}) + "\n"
    key_row = lambda link, subject: json.dumps({"keyLink": link, "dataSubjectHashes": [subject],
                                                 "wrappedKey": "AQID"}) + "\n"
    bucket = s3_server.create_bucket(f"forget-{uuid.uuid4().hex[:8]}")
    root = f"s3://{bucket}/out"
    objects = {"streams/s-1/part-0.jsonl": row(gone) + row(kept), ".tmp-run7/streams/s-1/part": row(gone, "t"),
               "keys/part-0.jsonl": key_row(gone, "h" * 64) + key_row(kept, "k" * 64),
               "keys/_temp/older": key_row("01a2331e-0000-7000-8000-00000000000c", "h" * 64),
               "encrypted/part-0.jsonl": row(gone) + row(kept)}
    previous = FileSystems._pipeline_options
    FileSystems.set_options(PipelineOptions(s3_server.beam_flags()))
    try:
        for name, text in objects.items():
            with FileSystems.create(f"{root}/{name}") as handle:
                handle.write(text.encode())
        report = scrub_output(root, {gone}, {"h" * 64})

        def read(name):
            with FileSystems.open(f"{root}/{name}") as handle:
                return handle.read().decode()

        assert report.left == [] and report.files == len(objects) - 1  # committed encrypted output not read
        assert read("streams/s-1/part-0.jsonl") == row(kept)
        assert read("keys/part-0.jsonl") == key_row(kept, "k" * 64)
        assert not FileSystems.exists(f"{root}/.tmp-run7/streams/s-1/part")  # nothing left in it: deleted
        assert not FileSystems.exists(f"{root}/keys/_temp/older")  # a key row found by the subject's hash
        assert read("encrypted/part-0.jsonl") == objects["encrypted/part-0.jsonl"]
    finally:
        FileSystems.set_options(previous)
