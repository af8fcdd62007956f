"""Hostile input (issue 10, points 2 and 3): no row aborts a run, no input text leaves in a dead letter.

Two halves:

- The explicit cases of the issue, through the real batch graph (``pipelines.run`` in-process on
  temp CSV and JSONL files): each row ends valid (with exactly its values) or as a dead letter
  with the stage, its ``file:line`` and a reason; rows read = valid + dead letters; no temp file
  is left. Every row that must be refused carries ``MARKER`` in its values and field names, and
  the marker must appear in no file under the output root (hidden ones and the key store
  included), in no log record and in nothing the run prints.
- Thousands of generated rows (hypothesis) through the same pure functions the graph's DoFns
  call: ``csv_rows`` / ``jsonl_rows`` (read), ``BatchInput.to_event`` (convert) and
  ``ContractCheck`` (validate). Each row is an event or a dead-letter row, never another
  exception; reasons and messages never hold the marker; what is accepted is JSON-writable
  exactly, as it is, encrypted and as each privacy stream shows it (no NaN turned to null, no
  integer beyond 64 bits, no lone surrogate), so the writers' per-row work cannot fail.

Unknown contract references are shown by design in a bounded form (``describe_ref``: a
well-formed reference cut to 40 characters, anything else only as a hash): the hostile
references here are not well-formed, and ``test_describe_ref_is_bounded_ascii_and_hides_the_rest`` holds
the form itself.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.jsonl_files import read_jsonl
from contracts import load_contract
from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig
from contracts.events import EventError, EventValidator
from contracts.strm_meta import SHOWN_REF_CHARS, describe_ref
from pipelines.example_data import COLUMNS
from pipelines.run import run
from privacy.daead import SivKey
from privacy.fields import FieldPlan
from privacy.masking import HMAC_SHA256, masker
from privacy.streams import StreamSpec
from tests.conftest import WEBSHOP
from transforms.read_input import csv_rows, jsonl_rows
from transforms.validate import ContractCheck

MARKER = "Qz9HOSTILE"
LONG_REF = "x" * SHOWN_REF_CHARS + MARKER  # the marker beyond describe_ref's shown prefix
EPOCH = datetime(1970, 1, 1)


def millis(text: str) -> int:
    return int((datetime.fromisoformat(text) - EPOCH).total_seconds() * 1000)


def good(n: int, **changes) -> dict:
    row = {"transactionId": f"t{n}", "userId": f"10{n:04d}", "email": "ann@example.com", "age": "31",
           "tshirtSize": "M", "fullName": "Ann Example", "phoneNumber": "555-0100", "address": "1 Lane",
           "transactionAmount": "12", "items": "[1, 2]", "totalItems": "2", "date": "2023-01-05 10:00:00",
           "purposeConsent": "2"}
    row.update(changes)
    return row


def marked(n: int, everything: bool = False, **changes) -> dict:
    """A row to be refused: the marker in every value but its id (and its time and consent, which
    are read first, unless ``everything``), apart from what ``changes`` sets."""
    row = {name: f"{MARKER}-{name}" for name in good(n)}
    row["transactionId"] = f"t{n}"
    if not everything:
        row.update(date=good(n)["date"], purposeConsent="2")
    row.update(changes)
    return row


def write_csv(path: Path, header: list[str], rows: list[dict], bom: bool = False) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(name, "") for name in header])
    path.write_text(("\ufeff" if bom else "") + buffer.getvalue(), encoding="utf-8")
    return path


def run_batch(out: Path, *args: str) -> tuple[list[str], list[dict], dict[str, dict]]:
    """Run the job in-process; (echoed lines, dead letters, encrypted events by transactionId or id)."""
    lines: list[str] = []
    code = run([*args, "--output", str(out)], echo=lines.append)
    assert code == 0, "\n".join(lines)
    assert not [line for line in lines if line.startswith("error")], lines
    dead = [d for _, _, d in read_jsonl([str(out / "dead_letter")])] if (out / "dead_letter").exists() else []
    encrypted = {}
    for _, _, event in read_jsonl([str(out / "encrypted")]) if (out / "encrypted").exists() else ():
        encrypted[event.get("transactionId", event.get("id"))] = event
    summary = {label: int(value.replace(",", "")) for label, value in
               (line.rsplit(None, 1) for line in lines if line[:1].isalpha() and line.rsplit(None, 1)[-1][:1].isdigit())}
    assert summary["rows read"] == summary["valid"] + summary["dead letters"], summary  # conservation
    assert summary["valid"] == len(encrypted) and summary["dead letters"] == len(dead), (summary, len(encrypted))
    return lines, dead, encrypted


def assert_no_marker_and_no_temp_files(out: Path, lines: list[str], caplog) -> None:
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files and not [p for p in files if p.name.startswith(".temp-")]
    for path in files:  # every file, hidden ones and the key store included
        assert MARKER.encode() not in path.read_bytes(), path
    assert MARKER not in "\n".join(lines)
    for record in caplog.records:
        assert MARKER not in record.getMessage() and MARKER not in (record.exc_text or ""), record.getMessage()


def by_position(dead: list[dict]) -> dict[str, dict]:
    positions = {}
    for row in dead:
        assert row["position"] not in positions, row
        positions[row["position"]] = row
    return positions


def assert_dead(dead: dict[str, dict], position: str, stage: str, reason: str) -> None:
    assert position in dead, (position, sorted(dead))
    assert dead[position]["stage"] == stage and reason in dead[position]["reason"], dead[position]


# ------------------------------------------------------------------ CSV through the real graph
CSV_CASES = [  # (row, None for valid or (stage, reason))
    (good(1), None),
    (good(2, date="0999-12-31 23:59:59"), None),
    (good(3, date="0001-01-01 00:00:00"), None),
    (good(4, date="9999-12-31 23:59:59"), None),
    (good(5, age=" 31 ", transactionAmount="2147483647", totalItems="-2147483648"), None),
    (marked(6, date="0000-12-31 00:00:00"), ("read", "field 'date': does not parse as a timestamp")),
    (marked(7, date="10000-01-01 00:00:00"), ("read", "field 'date': does not parse as a timestamp")),
    (marked(8, age="١٢٣"), ("read", "field 'age': cannot be converted to INTEGER")),
    (marked(9, age="1_000"), ("read", "field 'age': cannot be converted to INTEGER")),
    (good(10, age="2147483648", email=MARKER), ("validate", "field 'age': is out of range for INTEGER (32-bit)")),
    (good(11, transactionAmount="1e400", email=MARKER), ("read", "field 'transactionAmount': cannot be converted")),
    (good(12, items="[2147483648]", email=MARKER), ("validate", "field 'items': is out of range for INTEGER")),
    (good(13, items='["\\ud800"]', email=MARKER), ("read", "field 'items': cannot be converted to a list of INTEGER")),
    (good(14, items="[" * 100_000 + "]" * 100_000, email=MARKER), ("read", "a value is longer than 131,072 characters")),
    (good(23, items="[" * 60_000 + "]" * 60_000, email=MARKER), ("read", "field 'items': cannot be converted")),
    (good(15, items="[" * 5_000 + "]" * 5_000, email=MARKER), ("read", "field 'items': cannot be converted")),
    (good(16, purposeConsent="18446744073709551616", email=MARKER), ("read", "field 'purposeConsent': is the consent field")),
    (good(17, purposeConsent="[2147483648]", email=MARKER), ("read", "field 'purposeConsent': is the consent field")),
    (good(18, purposeConsent="[" * 100_000, email=MARKER), ("read", "field 'purposeConsent': is the consent field")),
    (good(19, tshirtSize="XXL" + MARKER), ("validate", "field 'tshirtSize': doesn't match regex")),
    (good(20, userId=" ", email=MARKER), ("validate", "field 'userId': is the key field and must not be empty")),
    (marked(21, everything=True), ("read", "field 'date': does not parse as a timestamp")),
]


def test_csv_hostile_rows_through_the_batch_graph(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = tmp_path / "in"
    data.mkdir()
    write_csv(data / "main.csv", COLUMNS, [row for row, _ in CSV_CASES], bom=True)
    with open(data / "main.csv", "ab") as handle:  # a row that is not UTF-8
        handle.write(b"t22,100022," + MARKER.encode() + b"\xff\xfe,31,M,a,b,c,1,\"[1]\",1,2023-01-05 10:00:00,1\n")
    header = list(COLUMNS)
    header[header.index("tshirtSize")] = "email"
    write_csv(data / "twice.csv", header, [marked(30), marked(31)])
    write_csv(data / "twice_unknown.csv", COLUMNS + [f"{MARKER}-a", f"{MARKER}-a"], [marked(32)])
    write_csv(data / "unknown.csv", COLUMNS + [f"{MARKER}-col"], [good(33, **{f"{MARKER}-col": "1"}), good(34)])
    out = tmp_path / "out"
    lines, dead_rows, encrypted = run_batch(out, "--input", str(data / "*.csv"))
    dead = by_position(dead_rows)
    main = data / "main.csv"
    for line, (row, expected) in enumerate(CSV_CASES, start=2):
        if expected is None:
            assert row["transactionId"] in encrypted, row["transactionId"]
        else:
            assert_dead(dead, f"{main}:{line}", *expected)
    assert_dead(dead, f"{main}:{len(CSV_CASES) + 2}", "read", "row is not valid UTF-8")
    assert_dead(dead, f"{data / 'twice.csv'}:1", "read",
                "the CSV header has the column name 'email' twice (columns 3 and 5); the file's rows are not read")
    assert_dead(dead, f"{data / 'twice_unknown.csv'}:1", "read",
                "the CSV header has the column name twice (columns 14 and 15)")
    for line in (2, 3):
        assert_dead(dead, f"{data / 'unknown.csv'}:{line}", "validate",
                    "1 field is not in the contract (the first is field 14 of the event, not counting strmMeta)")
    assert len(dead) == sum(1 for _, e in CSV_CASES if e) + 1 + 2 + 2
    # the valid ones hold exactly their values: any year 0001-9999, integers at their limits
    for key, date in (("t2", "0999-12-31 23:59:59"), ("t3", "0001-01-01 00:00:00"), ("t4", "9999-12-31 23:59:59")):
        assert encrypted[key]["date"] == date and encrypted[key]["strmMeta"]["timestamp"] == millis(date)
    assert (encrypted["t5"]["age"], encrypted["t5"]["transactionAmount"], encrypted["t5"]["totalItems"]) == (
        31, 2147483647, -2147483648)
    assert "ufeff" not in json.dumps(encrypted["t1"])  # the BOM was dropped, not made part of a name
    assert_no_marker_and_no_temp_files(out, lines, caplog)


# ------------------------------------------------------------------ JSONL through the real graph
def spool(n: int, **meta) -> dict:
    row = {k: v for k, v in good(n).items() if k not in ("age", "transactionAmount", "items", "totalItems")}
    row["purposeConsent"] = 2
    row["strmMeta"] = {"eventContractRef": WEBSHOP, "consentLevels": [2], "timestamp": 1672912800000, **meta}
    return row


def text_of(row: dict) -> str:
    return json.dumps(row)


JSONL_CASES = [  # (line text, None for valid or (stage, reason))
    ("\ufeff" + text_of(spool(1)), None),
    (text_of(spool(2)), None),
    (text_of({**good(3), "age": 31, "items": [1, 2]}), None),
    (text_of({**marked(4), "strmMeta": f"{MARKER}"}), ("read", "field 'strmMeta': has the wrong type")),
    (text_of({**marked(5), "strmMeta": [MARKER]}), ("read", "field 'strmMeta': has the wrong type")),
    (text_of({**spool(6), "email": MARKER, "address": "@DEEP@"}).replace('"@DEEP@"', "[" * 100_000 + "]" * 100_000),
     ("read", "not valid JSON")),
    (text_of({**spool(7), "email": MARKER + "@HOLE@"}).replace("@HOLE@", "\\ud800"), ("read", "not valid JSON")),
    (text_of({**spool(8), "email": MARKER, "@HOLE@": 1}).replace("@HOLE@", "\\udfff" + MARKER), ("read", "not valid JSON")),
    (text_of({**spool(9), "email": MARKER, "fullName": "@HOLE@"}).replace('"@HOLE@"', "NaN"), ("read", "not valid JSON")),
    (text_of({**spool(10), "email": MARKER, "fullName": "@HOLE@"}).replace('"@HOLE@"', "Infinity"), ("read", "not valid JSON")),
    (text_of({**spool(11), "email": MARKER, "age": "@HOLE@"}).replace('"@HOLE@"', "1e400"), ("read", "not valid JSON")),
    (text_of({**spool(12, nonce=2**70), "email": MARKER}), ("validate", "field 'strmMeta/nonce': has the wrong type")),
    (text_of({**spool(13, nonce=2**64 - 1), "email": MARKER}), ("validate", "field 'strmMeta/nonce': is out of range")),
    (text_of({**spool(14, consentLevels=[2**70]), "email": MARKER}), ("validate", "field 'strmMeta/consentLevels'")),
    (text_of({**spool(15, consentLevels=[2**64 - 1]), "email": MARKER}), ("validate", "field 'strmMeta/consentLevels'")),
    (text_of({**spool(16, timestamp=-62_135_596_800_001), "email": MARKER}),
     ("validate", "field 'strmMeta/timestamp': is not a time between the years 1 and 9999")),
    (text_of({**spool(17, **{MARKER: MARKER}), "email": MARKER}),
     ("validate", "field 'strmMeta': has 1 key that is not in strmMeta (the first is key 4)")),
    (text_of({**spool(18, billingId=MARKER * 10), "email": MARKER}), ("validate", "field 'strmMeta/billingId'")),
    (text_of({**spool(19, keyLink=MARKER), "email": MARKER}), ("validate", "field 'strmMeta/keyLink'")),
    (text_of({**spool(20), "email": MARKER, f"{MARKER}-a": 1, f"{MARKER}-b": MARKER}),
     ("validate", "2 fields are not in the contract (the first is field 10 of the event")),
    (text_of({**spool(21, eventContractRef=LONG_REF), "email": MARKER}), ("validate", "unknown contract '(malformed reference #")),
    (text_of({**spool(22, eventContractRef=5), "email": MARKER}), ("validate", "strmMeta.eventContractRef is not a text")),
    (text_of({**spool(23), "email": 5, "fullName": MARKER}), ("validate", "field 'email': has the wrong type")),
    (text_of({**marked(24), "age": MARKER}), ("read", "field 'age': cannot be converted to INTEGER")),
]


def test_jsonl_hostile_lines_through_the_batch_graph(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = tmp_path / "in.jsonl"
    data.write_text("".join(text + "\n" for text, _ in JSONL_CASES), encoding="utf-8")
    out = tmp_path / "out"
    lines, dead_rows, encrypted = run_batch(out, "--input", str(data))
    dead = by_position(dead_rows)
    for line, (text, expected) in enumerate(JSONL_CASES, start=1):
        if expected is None:
            assert f"t{line}" in encrypted, line
        else:
            assert_dead(dead, f"{data}:{line}", *expected)
    assert len(dead) == sum(1 for _, e in JSONL_CASES if e)
    unknown = dead[f"{data}:21"]
    assert unknown["eventContractRef"] == describe_ref(LONG_REF) and unknown["eventContractRef"].isascii()
    assert encrypted["t1"]["strmMeta"]["timestamp"] == 1672912800000  # the spool line's own time
    assert set(encrypted["t1"]["strmMeta"]) == {"eventContractRef", "consentLevels", "timestamp", "nonce",
                                               "keyLink", "billingId"}
    assert_no_marker_and_no_temp_files(out, lines, caplog)


# ------------------------------------------------------------------ numbers and times of a FLOAT/LONG contract
HOSTILE_CONTRACT = """\
ref: acme/Hostile/1.0.0
state: ACTIVE
schema:
  name: Hostile
  nodes:
    - {name: id, type: STRING, required: true}
    - {name: amount, type: FLOAT}
    - {name: count, type: LONG}
    - {name: t, type: STRING}
    - {name: note, type: STRING}
keyField: id
fieldMetadata:
  - {fieldName: note, personalDataConfig: {isPii: true, purposeLevel: 1}}
"""
NUMBER_CASES = [  # (id, amount, count, t (epoch seconds), expected)
    ("n1", "1.5", "9223372036854775807", "1672912800", None),
    ("n2", "1e308", "-9223372036854775808", "253402300799.999", None),
    ("n3", "-0.0", "0", "-62135596800", None),
    ("n4", "nan", "1", "1672912800", ("read", "field 'amount': cannot be converted to FLOAT")),
    ("n5", "inf", "1", "1672912800", ("read", "field 'amount': cannot be converted to FLOAT")),
    ("n6", "-Infinity", "1", "1672912800", ("read", "field 'amount': cannot be converted to FLOAT")),
    ("n7", "1e400", "1", "1672912800", ("validate", "field 'amount': is not a finite number (FLOAT)")),
    ("n8", "1_0", "1", "1672912800", ("read", "field 'amount': cannot be converted to FLOAT")),
    ("n9", "1", "9223372036854775808", "1672912800", ("validate", "field 'count': is out of range for LONG (64-bit)")),
    ("n10", "1", "١", "1672912800", ("read", "field 'count': cannot be converted to LONG")),
    ("n11", "1", "1", "1e400", ("read", "field 't': does not parse as a timestamp of format 'epoch_seconds'")),
    ("n12", "1", "1", "nan", ("read", "field 't': does not parse as a timestamp")),
    ("n13", "1", "1", "-62135596801", ("read", "field 't': is the timestamp field and is not a time between")),
    ("n14", "1", "1", "253402300800", ("read", "field 't': is the timestamp field and is not a time between")),
    ("n15", "1", "1", "١٦٧٢٩١٢٨٠٠", ("read", "field 't': does not parse as a timestamp")),
]


def test_numbers_and_epoch_times_are_exact_or_dead_letters(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    (tmp_path / "hostile.yaml").write_text(HOSTILE_CONTRACT)
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"contract: {tmp_path / 'hostile.yaml'}\ninput:\n  timestamp: {{field: t, format: epoch_seconds}}\n"
                      "streams: []\n")
    rows = [{"id": i, "amount": a, "count": c, "t": t, "note": MARKER if expected else "fine"}
            for i, a, c, t, expected in NUMBER_CASES]
    data = write_csv(tmp_path / "numbers.csv", ["id", "amount", "count", "t", "note"], rows)
    jsonl = tmp_path / "numbers.jsonl"  # JSON numbers: integers beyond 64 bits in a FLOAT, and a LONG
    jsonl.write_text('{"id": "j1", "amount": 18446744073709551615, "t": "1", "note": "' + MARKER + '"}\n'
                     '{"id": "j2", "amount": 9223372036854775807, "count": -9223372036854775808, "t": "1"}\n'
                     '{"id": "j3", "count": 9223372036854775808, "t": "1", "note": "' + MARKER + '"}\n')
    out = tmp_path / "out"
    lines, dead_rows, encrypted = run_batch(out, "--config", str(config), "--input", str(data))
    dead = by_position(dead_rows)
    for line, (ident, _, _, _, expected) in enumerate(NUMBER_CASES, start=2):
        if expected is None:
            assert ident in encrypted, ident
        else:
            assert_dead(dead, f"{data}:{line}", *expected)
    assert encrypted["n1"]["count"] == 2**63 - 1 and encrypted["n2"]["amount"] == 1e308
    assert encrypted["n2"]["strmMeta"]["timestamp"] == 253_402_300_799_999
    assert encrypted["n3"]["strmMeta"]["timestamp"] == -62_135_596_800_000
    assert math.copysign(1, encrypted["n3"]["amount"]) == -1  # -0.0 stays -0.0
    assert_no_marker_and_no_temp_files(out, lines, caplog)
    out2 = tmp_path / "out2"
    lines, dead_rows, encrypted = run_batch(out2, "--config", str(config), "--input", str(jsonl))
    dead = by_position(dead_rows)
    assert set(encrypted) == {"j2"} and encrypted["j2"]["count"] == -(2**63)
    assert_dead(dead, f"{jsonl}:1", "validate", "field 'amount': is out of range for FLOAT")
    assert_dead(dead, f"{jsonl}:3", "validate", "field 'count': is out of range for LONG (64-bit)")
    assert_no_marker_and_no_temp_files(out2, lines, caplog)


# ------------------------------------------------------------------ the catch-alls keep positions
def test_every_per_row_stage_has_a_catch_all_that_keeps_the_position(tmp_path, caplog, monkeypatch):
    """A failure no check foresaw, in each stage, is a dead letter with file:line and no text of it."""
    def failing(original, trigger, exception):
        def wrapper(self, event, *args):
            if isinstance(event, dict) and event.get("transactionId") == trigger:
                raise exception(f"{MARKER} {event}")
            return original(self, event, *args)
        return wrapper

    monkeypatch.setattr(BatchInput, "to_event", failing(BatchInput.to_event, "t-read", KeyError))
    monkeypatch.setattr(EventValidator, "check", failing(EventValidator.check, "t-validate", RuntimeError))
    monkeypatch.setattr(FieldPlan, "encrypt", failing(FieldPlan.encrypt, "t-encrypt", ZeroDivisionError))
    monkeypatch.setattr(FieldPlan, "reveal", failing(FieldPlan.reveal, "t-streams", AttributeError))
    caplog.set_level(logging.INFO)
    rows = [good(1), {**good(2), "transactionId": "t-read"}, {**good(3), "transactionId": "t-validate"},
            {**good(4), "transactionId": "t-encrypt"}, {**good(5), "transactionId": "t-streams"}, good(6)]
    data = write_csv(tmp_path / "in.csv", COLUMNS, rows)
    out = tmp_path / "out"
    lines = []
    assert run(["--input", str(data), "--output", str(out)], echo=lines.append) == 0, lines
    dead = by_position([d for _, _, d in read_jsonl([str(out / "dead_letter")])])
    for line, stage, exception in ((3, "read", "KeyError"), (4, "validate", "RuntimeError"),
                                   (5, "encrypt", "ZeroDivisionError"), (6, "streams", "AttributeError")):
        assert dead[f"{data}:{line}"]["stage"] == stage
        assert dead[f"{data}:{line}"]["reason"] == f"unexpected {exception} in stage {stage}"
    assert len(dead) == 4
    encrypted = [e["transactionId"] for _, _, e in read_jsonl([str(out / "encrypted")])]
    streamed = [e["transactionId"] for _, _, e in read_jsonl([str(out / "streams" / "webshop-2")])]
    assert sorted(encrypted) == ["t-streams", "t1", "t6"]  # a streams failure keeps the event encrypted
    assert sorted(streamed) == ["t1", "t6"]  # ...and in no stream
    summary = {line.rsplit(None, 1)[0].strip(): line.rsplit(None, 1)[1] for line in lines if line[:1].isalpha()}
    assert summary["rows read"] == "6" and summary["valid"] == "4" and summary["dead letters"] == "4"
    assert not [line for line in lines if line.startswith("error")]  # the run's own count check holds
    warnings = [r.getMessage() for r in caplog.records if "unexpected" in r.getMessage()]
    assert len(warnings) == 4 and all(f"{data}:" in w for w in warnings)  # one line per class, with where
    assert_no_marker_and_no_temp_files(out, lines, caplog)


# ------------------------------------------------------------------ thousands of rows, pure functions
CONTRACT = load_contract(WEBSHOP)
BATCH = BatchInput(CONTRACT, ConsentConfig(field="purposeConsent"),
                   TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss"), now_ms=0)
CHECK = ContractCheck({WEBSHOP: CONTRACT})
NAMES = [n.name for n in CONTRACT.nodes]
HOSTILE_TEXTS = [
    "", " ", "0", "-0", "+1", "007", "31", " 31 ", "2147483647", "2147483648", "-2147483649", "9" * 30, "9" * 400,
    "١٢٣", "1_000", "²", "1e400", "1e-400", "nan", "NaN", "inf", "-Infinity", "1.5", ".5", "5.", "true", "yes",
    "[1, 2]", "[2147483648]", "[1.5]", "['a']", "[\"\\ud800\"]", "[" * 2000, "[" * 150 + "]" * 150, "{}", "[{}]",
    "0999-12-31 23:59:59", "0001-01-01 00:00:00", "0000-01-01 00:00:00", "9999-12-31 23:59:59",
    "10000-01-01 00:00:00", "2023-02-30 00:00:00", "2023-01-05 10:00:00", "M", "XS", "XXL", "\u3000",
    "18446744073709551616", "[0, 1, 2]", "[-1]", MARKER, f"[{MARKER}]", f"{MARKER}\x00", "\ud800", "a\udcffb",
]
texts = st.one_of(st.sampled_from(HOSTILE_TEXTS), st.text(max_size=12),
                  st.text(st.characters(codec=None, exclude_categories=()), max_size=6),
                  st.integers().map(str), st.floats().map(repr), st.sampled_from(HOSTILE_TEXTS).map(lambda t: t + MARKER))
row_names = st.one_of(st.sampled_from(NAMES), st.sampled_from([MARKER, f"{MARKER}-x", "strmMeta", ""]))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), texts,
              st.sampled_from([2**63, 2**64, -(2**63) - 1, 2**31, float("nan"), float("inf")])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(row_names, inner, max_size=3)),
    max_leaves=5)
meta_dicts = st.dictionaries(
    st.sampled_from(["eventContractRef", "nonce", "timestamp", "keyLink", "billingId", "consentLevels", MARKER]),
    st.one_of(json_values, st.sampled_from([WEBSHOP, LONG_REF, -62_135_596_800_001, 253_402_300_799_999, [2**31]])),
    max_size=6)


VALIDATOR = EventValidator(CONTRACT)
PLAN, KEY = FieldPlan(CONTRACT), SivKey.generate()
STREAMS = [StreamSpec.cumulative("s-1", 1, masked_fields=("userId",)), StreamSpec.cumulative("s-2", 2)]
MASKS = {"s-1": masker(HMAC_SHA256, b"k" * 32), "s-2": None}


def settle(row) -> tuple[dict | None, dict | None]:
    """What the graph does with one parsed row: read (to_event), then the contract check."""
    try:
        event = BATCH.to_event(row)
    except EventError as err:
        assert MARKER not in err.reason and MARKER not in str(err) and MARKER not in err.gateway_message(WEBSHOP)
        return None, {"stage": "read", "reason": err.reason}
    accepted, dead = CHECK("test:1", event)
    assert (accepted is None) != (dead is None)
    try:
        VALIDATOR.check(event)
        assert dead is None
    except EventError as err:  # the 400 text shows a value only for a regex failure (the reference's text)
        assert dead is not None
        if event["strmMeta"].get("eventContractRef") == WEBSHOP:  # else the look-up refused it first
            assert dead["reason"] == err.reason
        if err.regex is None:
            assert MARKER not in err.gateway_message(WEBSHOP)
    if dead is not None:
        assert MARKER not in json.dumps(dead), dead
        return None, dead
    assert not [name for name in accepted if MARKER in name]
    # what the writers get of it (the event, encrypted, and as each stream shows it) is JSON exactly:
    # the writers' per-row work (orjson) cannot fail, and NaN cannot turn into null
    encrypted = {**PLAN.encrypt(accepted, KEY), "strmMeta": {**accepted["strmMeta"], "keyLink": "k"}}
    for record in (accepted, encrypted, *(PLAN.reveal(encrypted, KEY, spec, MASKS[spec.name]) for spec in STREAMS)):
        assert orjson.loads(orjson.dumps(record)) == record
    return accepted, None


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(row_names, texts, max_size=16), st.booleans())
def test_any_text_row_is_an_event_or_a_dead_letter(row, full):
    if full:  # every column present, some hostile
        row = {**{name: good(1)[name] for name in NAMES}, **row}
    settle(row)


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(row_names, json_values, max_size=8), st.one_of(st.none(), meta_dicts, json_values))
def test_any_json_row_is_an_event_or_a_dead_letter(row, meta):
    row = {**{k: v for k, v in spool(1).items() if k != "strmMeta"}, **row}
    if meta is not None:
        row["strmMeta"] = meta
    settle(row)


csv_cells = st.one_of(texts, st.sampled_from(['"', '""', "\n", "\r\n", ",", "a\"b", "\ufeff"]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(NAMES), st.sampled_from([MARKER, "\ufeff" + NAMES[0]])), min_size=1,
                max_size=14),
       st.lists(st.lists(csv_cells, max_size=15), max_size=6), st.booleans())
def test_any_csv_text_is_rows_or_dead_letters_and_nothing_is_lost(header, records, bom):
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # \r\n line ends: values holding \r or \n are quoted
    writer.writerows([header, *records])
    text = ("\ufeff" if bom else "") + buffer.getvalue()
    names = frozenset(NAMES)
    outcomes = 0
    for position, row, problem in csv_rows(io.StringIO(text, newline=""), "f.csv", field_names=names):
        assert position.startswith("f.csv:") and int(position[6:]) >= 1
        outcomes += 1
        if problem is not None:
            assert row is None and MARKER not in problem
        else:
            settle(row)
    first = ("\ufeff" if bom else "") + header[0]
    names_read = [first[1:] if first.startswith("\ufeff") else first, *header[1:]]
    if len(set(names_read)) == len(names_read):  # every record is one outcome: nothing is lost
        assert outcomes == len([r for r in records if r])
    else:  # a name twice: one dead letter for the file
        assert outcomes == 1


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, exclude_categories=()), max_size=200))
def test_jsonl_lines_never_break_the_reader(line):
    for position, row, problem in jsonl_rows(io.StringIO(line.replace("\n", " ") + "\n"), "f.jsonl"):
        assert position == "f.jsonl:1" and (row is None) != (problem is None)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(st.characters(codec=None, exclude_categories=()), max_size=300),
                 st.sampled_from([WEBSHOP, "acme/Shop/1.0.0", LONG_REF, "a/b/1.2.3" + "x" * 40])))
def test_describe_ref_is_bounded_ascii_and_hides_the_rest(ref):
    shown = describe_ref(ref)
    assert shown.isascii() and len(shown) <= SHOWN_REF_CHARS + 16
    assert len(shown.split("...#")[0]) <= SHOWN_REF_CHARS  # nothing beyond the first 40 characters
    if len(ref) > SHOWN_REF_CHARS:
        assert describe_ref(ref + "y") != shown  # the hash tells long references apart
    assert describe_ref(5) == "(not a text)" and describe_ref(None) is None


def test_describe_ref_shows_short_well_formed_references():
    assert describe_ref("acme/Shop/1.0.0") == "acme/Shop/1.0.0"
    assert describe_ref("acme/Shop/1.0.0 ").startswith("(malformed reference #")  # not well-formed: a hash only
    assert describe_ref(LONG_REF) == f"(malformed reference #{describe_ref(LONG_REF)[-13:-1]})"
    long_ref = "a" * 60 + "/Shop/1.0.0"
    assert describe_ref(long_ref) == "a" * SHOWN_REF_CHARS + "...#" + describe_ref(long_ref)[-12:]
    assert MARKER not in describe_ref(LONG_REF)


@pytest.mark.parametrize("text,field", [
    ("[" * 100_000 + "]" * 100_000, "items"), ('["\\ud800"]', "items"), ("1e400", "transactionAmount"),
], ids=["100k-deep", "surrogate-escape", "1e400"])
def test_text_that_would_crash_a_parser_is_a_conversion_error(text, field):
    with pytest.raises(EventError) as info:
        BATCH.to_event({**good(1), field: text})
    assert info.value.reason.startswith(f"field '{field}': cannot be converted")
