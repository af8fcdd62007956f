"""Bad input never crashes a run and never vanishes: it becomes a dead letter with a reason."""
from __future__ import annotations

import json
from pathlib import Path

from cli.jsonl_files import read_jsonl
from pipelines.run import run
from tests.conftest import WEBSHOP

HEADER = ("transactionId,userId,email,age,tshirtSize,fullName,phoneNumber,address,transactionAmount,"
          "items,totalItems,date,purposeConsent")
GOOD = '1001,{user},{email},31,M,Ann Secret,555-0100,1 Secret Lane,12,"[11217, 18090]",2,2023-01-05 10:00:00,{consent}'
SECRETS = ("Ann Secret", "555-0100", "1 Secret Lane", "hidden@example.com", "bogus-age-73", "[1, 2")


def good(user="100001", consent=2, email="hidden@example.com"):
    return GOOD.format(user=user, email=email, consent=consent)


BAD_ROWS = {
    "row has 3 columns, the header has 13": "1,2,3",
    "field 'age': cannot be converted to INTEGER": good().replace(",31,", ",bogus-age-73,"),
    "field 'tshirtSize': doesn't match regex": good().replace(",M,", ",XXL,"),
    "field 'userId': is the key field and must not be empty": good(user=""),
    "field 'items': cannot be converted to a list of INTEGER": good().replace('"[11217, 18090]"', '"[1, 2"'),
    "field 'date': is the timestamp field and is empty": good().replace("2023-01-05 10:00:00", ""),
    "field 'date': does not parse as a timestamp": good().replace("2023-01-05 10:00:00", "last tuesday"),
    "field 'purposeConsent': is the consent field": good(consent="lots"),
}


def run_job(tmp_path: Path, input_path: Path, *extra: str) -> tuple[int, str, list[dict]]:
    lines = []
    code = run(["--input", str(input_path), "--output", str(tmp_path / "out"), *extra], echo=lines.append)
    dead = [obj for _, _, obj in read_jsonl([str(tmp_path / "out" / "dead_letter")])] \
        if (tmp_path / "out" / "dead_letter").exists() else []
    return code, "\n".join(lines), dead


def test_malformed_csv_rows_become_dead_letters_with_reasons(tmp_path):
    path = tmp_path / "input.csv"
    rows = [good("100001"), *BAD_ROWS.values(), good("100002", consent=0)]
    path.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode() + b'1002,100003,\xff\xfe,1,M,a,b,c,1,"[1]",1,2023-01-05 10:00:00,1\n')
    code, output, dead = run_job(tmp_path, path)
    assert code == 0, output
    assert len(dead) == len(BAD_ROWS) + 1
    reasons = [d["reason"] for d in dead]
    for expected in BAD_ROWS:
        assert sum(expected in r for r in reasons) == 1, (expected, reasons)
    assert "row is not valid UTF-8" in reasons
    positions = sorted(int(d["position"].rsplit(":", 1)[1]) for d in dead)
    assert positions == list(range(3, 3 + len(BAD_ROWS))) + [len(rows) + 2]
    assert all(d["position"].startswith(str(path)) for d in dead)
    text = json.dumps(dead)
    for secret in SECRETS:
        assert secret not in text
    assert "rows read" in output and "error" not in output


def test_malformed_jsonl_and_unknown_contracts(tmp_path):
    ok = {"transactionId": "1", "userId": "u1", "email": "hidden@example.com", "tshirtSize": "S",
          "date": "2023-01-05 10:00:00", "purposeConsent": 1}
    spool_event = dict(ok, strmMeta={"eventContractRef": WEBSHOP, "consentLevels": [1], "timestamp": 1672912800000})
    lines = [
        json.dumps(ok),
        "{not json",
        "[1, 2]",
        json.dumps(dict(ok, age="old")),
        json.dumps(dict(ok, strmMeta={"eventContractRef": "acme/Unknown/1.0.0", "consentLevels": []})),
        json.dumps(dict(ok, strmMeta={"consentLevels": []})),
        json.dumps(spool_event),
        "",
    ]
    path = tmp_path / "input.jsonl"
    path.write_text("\n".join(lines))
    code, output, dead = run_job(tmp_path, path)
    assert code == 0, output
    reasons = sorted(d["reason"] for d in dead)
    assert reasons == sorted([
        "not valid JSON (column 2)",
        "a JSONL line must be a JSON object",
        "field 'age': cannot be converted to INTEGER",
        "unknown contract 'acme/Unknown/1.0.0'",
        "strmMeta.eventContractRef is missing",
    ])
    encrypted = [obj for _, _, obj in read_jsonl([str(tmp_path / "out" / "encrypted")])]
    assert len(encrypted) == 2
    assert {e["strmMeta"]["timestamp"] for e in encrypted} == {1672912800000}
    assert "hidden@example.com" not in json.dumps(dead) + json.dumps(encrypted)


def test_missing_input_and_bad_config_are_clear_errors(tmp_path):
    lines = []
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"contract: {WEBSHOP}\nstreams:\n  - {{name: s, cumulative: 1, granular: [1]}}\n")
    assert run(["--config", str(config), "--input", "x.csv"], echo=lines.append) == 2
    assert f"{config}: streams[0]: give exactly one of" in lines[-1]
    config.write_text("contract: acme/Missing/1.0.0\n")
    assert run(["--config", str(config)], echo=lines.append) == 2
    assert "contract 'acme/Missing/1.0.0' not found" in lines[-1]
    assert run(["--output", "gs://bucket/x", "--input", "x.csv"], echo=lines.append) == 2
    assert "give a key store" in lines[-1]


def test_input_pattern_that_matches_nothing_fails_with_its_name(tmp_path):
    lines = []
    assert run(["--input", str(tmp_path / "nope-*.csv"), "--output", str(tmp_path / "o")], echo=lines.append) == 2
    assert lines == [f"error: input '{tmp_path / 'nope-*.csv'}' matches no file"]
