"""A big input file is cut into ranges of whole records: the same rows, problems and positions as one piece."""
from __future__ import annotations

import io
import json

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.fileio import ReadableFile
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig
from transforms.event_batches import Unbatch
from transforms.read_input import ReadBatchInput, _record_ranges, csv_rows, jsonl_rows

HEADER = ("transactionId,userId,email,age,tshirtSize,fullName,phoneNumber,address,transactionAmount,"
          "items,totalItems,date,purposeConsent")


def csv_bytes(rows: int) -> bytes:
    lines = [HEADER]
    for i in range(rows):
        address = f'"{i} Main St\nFloor {i % 3}"' if i % 7 == 0 else f"{i} Main St"  # a record over 2 lines
        lines.append(f'{i},{1000 + i % 50},u{i}@x.io,{i % 90},M,Name {i},555-{i:04d},{address},{i % 300},'
                     f'"[{i}, {i + 1}]",2,2024-0{1 + i % 9}-1{i % 10} 10:{i % 60:02d}:00,{i % 3}')
        if i % 97 == 0:
            lines.append("1,2,3")  # wrong width
        if i % 89 == 0:
            lines.append("")  # blank line
    text = ("\r\n".join(lines) + "\r\n").encode()
    return text.replace(b"u5@x.io", b"u5@x\xff.io")  # one row that is not UTF-8


def readable(path) -> ReadableFile:
    return ReadableFile(FileMetadata(str(path), path.stat().st_size))


def whole(path, rows_of):
    with open(path, "rb") as raw:
        return list(rows_of(io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline=""), None))


def in_ranges(path, ranges, input_format):
    out = []
    for start, first_line, records, header in ranges:
        with open(path, "rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
            text.seek(start)
            if input_format == "csv":
                out += list(csv_rows(text, str(path), header, first_line, records))
            else:
                out += list(jsonl_rows(text, str(path), first_line, records))
    return out


def test_csv_ranges_give_exactly_the_rows_of_the_whole_file(tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(csv_bytes(6000))
    ranges = _record_ranges(readable(path), "csv", split_bytes=64 * 1024)
    assert len(ranges) > 5
    expected = whole(path, lambda text, _: csv_rows(text, str(path)))
    assert in_ranges(path, ranges, "csv") == expected
    problems = [p for _, _, p in expected if p]
    assert "row is not valid UTF-8" in problems and any("columns" in p for p in problems)
    assert _record_ranges(readable(path), "csv", split_bytes=path.stat().st_size) is None  # small: one piece


def test_jsonl_ranges_give_exactly_the_lines_of_the_whole_file(tmp_path):
    path = tmp_path / "big.jsonl"
    lines = [json.dumps({"n": i, "text": "é" * (i % 5)}) if i % 50 else "{broken" for i in range(8000)]
    path.write_text("\n".join(lines[:4000]) + "\n\n" + "\n".join(lines[4000:]) + "\n")
    ranges = _record_ranges(readable(path), "jsonl", split_bytes=16 * 1024)
    assert len(ranges) > 5
    assert in_ranges(path, ranges, "jsonl") == whole(path, lambda text, _: jsonl_rows(text, str(path)))


def test_the_read_transform_spreads_ranges_and_keeps_events_and_positions(tmp_path, webshop_contract):
    path = tmp_path / "shop.csv"
    path.write_bytes(csv_bytes(1500))
    batch = BatchInput(webshop_contract, ConsentConfig(field="purposeConsent"),
                       TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss"), now_ms=0)
    expected_events, expected_dead = [], []
    for position, row, problem in whole(path, lambda text, _: csv_rows(text, str(path))):
        if problem:
            expected_dead.append((position, problem))
        else:
            event = batch.to_event(row)
            expected_events.append((position, event["email"], event["strmMeta"]["timestamp"] * 1000))
    assert len(expected_dead) == 1 + 1500 // 97 + 1  # the bad UTF-8 row and the narrow rows

    with TestPipeline(runner="FnApiRunner") as p:
        out = p | ReadBatchInput(str(path), batch, split_bytes=16 * 1024)
        events = out[ReadBatchInput.EVENTS] | Unbatch() | beam.Map(
            lambda pair, t=beam.DoFn.TimestampParam: (pair[0], pair[1]["email"], t.micros))
        dead = out[ReadBatchInput.DEAD_LETTER] | beam.Map(lambda d: (d["position"], d["reason"]))
        assert_that(events, equal_to(expected_events), label="events")
        assert_that(dead, equal_to(expected_dead), label="dead letters")


def test_a_spool_line_whose_timestamp_is_not_a_time_is_a_dead_letter(tmp_path, webshop_contract):
    path = tmp_path / "spool.jsonl"
    meta = {"eventContractRef": webshop_contract.ref, "consentLevels": [1]}
    lines = [{"strmMeta": {**meta, "timestamp": stamp}, "transactionId": str(i), "userId": "7"}
             for i, stamp in enumerate(["yesterday", 1.5, 10**18, 1_700_000_000_000])]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with TestPipeline(runner="FnApiRunner") as p:
        out = p | ReadBatchInput(str(path), BatchInput(webshop_contract))
        assert_that(out[ReadBatchInput.EVENTS] | Unbatch() | beam.Map(lambda pair: pair[1]["transactionId"]),
                    equal_to(["0", "1", "2", "3"]))  # passed on for the contract check to judge


def test_spool_lines_with_impossible_times_are_dead_letters_of_a_finished_run(tmp_path, webshop_contract):
    from pipelines.run import run

    path = tmp_path / "spool.jsonl"
    meta = {"eventContractRef": webshop_contract.ref, "consentLevels": [1]}
    stamps = ["yesterday", 1.5, 10**18, -(10**17), 1_700_000_000_000]
    path.write_text("\n".join(json.dumps({"strmMeta": {**meta, "timestamp": stamp}, "transactionId": str(i),
                                          "userId": "7"}) for i, stamp in enumerate(stamps)) + "\n")
    lines = []
    assert run(["--input", str(path), "--output", str(tmp_path / "out")], echo=lines.append) == 0, lines
    dead = [json.loads(line) for f in (tmp_path / "out" / "dead_letter").glob("*.jsonl") for line in f.open()]
    assert sorted(d["position"].rsplit(":", 1)[1] for d in dead) == ["1", "2", "3", "4"]
    assert all(d["reason"].startswith("field 'strmMeta/timestamp'") for d in dead)
