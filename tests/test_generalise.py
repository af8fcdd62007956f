"""Generalisation rules of privacy streams: an age-group stream shows group labels, never ages.

The rules themselves (privacy.generalise), their place in a stream (after consent and decryption,
never on what stays encrypted, nested and repeated fields), their checks at config load and at
`pstream create stream`, and runs through the real graph (pipelines.run and the local loop).
"""
from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from contracts import parse_contract
from pipelines.config import ConfigError, load_config
from pipelines.run import run
from privacy.daead import SivKey, key_id_of
from privacy.fields import FieldPlan
from privacy.generalise import Rule, bucket_labels, parse_rule, parse_rule_text
from privacy.streams import StreamSpec
from pipeline_runs import write_rows
from tests.conftest import WEBSHOP
from tests.test_contracts import NESTED

AGE_EDGES = [0, 18, 30, 45, 65]
AGE_LABELS = ["0-17", "18-29", "30-44", "45-64", "65+"]
ANY_VALUE = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(),
                      st.booleans(), st.from_regex(r"\A[ \t]*[-+]?[0-9]{1,25}(\.[0-9]{0,6})?[ \t]*\Z"))


# ------------------------------------------------------------ the age-group rule, as a property
@settings(max_examples=400)
@given(value=ANY_VALUE, default=st.sampled_from([None, "unknown"]))
def test_an_age_group_rule_outputs_a_label_or_the_default_never_the_age(value, default):
    rule = parse_rule({"bucket": AGE_EDGES} | ({"default": default} if default else {}))
    for field_type in ("INTEGER", "LONG", "FLOAT", "STRING"):
        out = rule.function(field_type)(value)
        assert out in AGE_LABELS or out == default
        if value not in AGE_LABELS and value != default:
            assert out != value
        number = value if value.__class__ in (int, float) else None
        if number is not None and math.isfinite(number) and number >= 0:   # every age in range has its group
            expected = next(label for edge, label in reversed(list(zip(AGE_EDGES, AGE_LABELS))) if number >= edge)
            assert out == expected


@settings(max_examples=300)
@given(age=st.integers())
def test_a_stream_with_an_age_group_rule_shows_only_group_labels(age, webshop_contract):
    """Over all integers, through FieldPlan.reveal as the PrivacyStreams step calls it: age is not
    PII in the web shop contract, so it is plaintext in the encrypted event; the stream replaces it."""
    spec = StreamSpec.create("groups-1", "CUMULATIVE", [1], generalise={"age": {"bucket": AGE_EDGES}})
    plan, key = FieldPlan(webshop_contract), SivKey.generate()
    event = plan.encrypt({"strmMeta": {"consentLevels": [1]}, "userId": "u1", "age": age}, key)
    assert event["age"] == age
    shown = plan.reveal(event, key, spec)
    assert shown["age"] in AGE_LABELS or (shown["age"] is None and age < 0)
    assert shown["userId"] == "u1"                       # level 1: decrypted, not generalised


def test_bucket_labels_open_ends_and_edges():
    group = parse_rule({"bucket": AGE_EDGES}).function("INTEGER")
    cases = {0: "0-17", 17: "0-17", 18: "18-29", 29: "18-29", 30: "30-44", 44: "30-44", 45: "45-64", 64: "45-64",
             65: "65+", 120: "65+", 10**40: "65+", 29.99: "18-29", -1: None, -0.5: None, -10**40: None}
    assert {value: group(value) for value in cases} == cases
    for value in (True, False, math.nan, math.inf, -math.inf, "abc", "", [30], {"age": 30}, "1_000", "nan", "inf"):
        assert group(value) is None, value
    assert group("42") == "30-44" and group(" 65 ") == "65+" and group("2.9e1") == "18-29"   # STRING numbers
    assert bucket_labels([0, 1, 2, 10]) == ("0", "1", "2-9", "10+")
    assert bucket_labels([-10, 0]) == ("-10--1", "0+")
    custom = parse_rule({"bucket": [0, 0.5, 2.5], "labels": ["low", "mid", "high"], "default": "below"})
    assert [custom.function("FLOAT")(v) for v in (-1, 0, 0.49, 0.5, 2.49, 2.5, 9)] == [
        "below", "low", "low", "mid", "mid", "high", "high"]
    for bad, message in (({"bucket": [0, 0.5]}, "not whole numbers need labels"),
                         ({"bucket": [18, 0]}, "strictly increasing"), ({"bucket": [0, 0]}, "strictly increasing"),
                         ({"bucket": []}, "list of numbers"), ({"bucket": [0, True]}, "list of numbers"),
                         ({"bucket": [0, 18], "labels": ["a"]}, "one label per edge"),
                         ({"bucket": [0, math.inf]}, "list of numbers"),
                         ({"round": 5, "labels": ["x"]}, "unknown key labels"),
                         ({"bucket": [0], "round": 1}, "exactly one of"), ({"bukcet": [0]}, "exactly one of"),
                         ({"bucket": [0], "default": [1]}, "default must be")):
        with pytest.raises(ValueError, match=message):
            parse_rule(bad)


def test_round_to_a_multiple():
    tens = parse_rule({"round": 10}).function("INTEGER")
    assert [tens(v) for v in (0, 4, 5, 14, 15, 34, 35, -4, -5, -6, 10**30 + 5)] == [
        0, 0, 10, 10, 20, 30, 40, 0, 0, -10, 10**30 + 10]           # halves go up
    assert tens(True) is None and tens(None) is None and tens(math.nan) is None and tens("x") is None
    assert tens(34.2) == 30.0 and isinstance(tens(34.2), float)
    tenths = parse_rule({"round": 0.1}).function("FLOAT")
    assert [tenths(v) for v in (0.15, 0.25, 1.04, -0.05, 3)] == [0.2, 0.3, 1.0, 0.0, 3.0]   # exact in decimal
    assert parse_rule({"round": 10}).function("STRING")("34") == "30"   # a STRING field's number, as text
    assert parse_rule({"round": 1e308, "default": -1}).function("FLOAT")(1.7e308) == -1      # overflow: the default
    assert parse_rule({"round": 2.5}).function("INTEGER")(6) == 5.0
    for bad in ({"round": 0}, {"round": -1}, {"round": True}, {"round": "10"}):
        with pytest.raises(ValueError, match="above 0"):
            parse_rule(bad)


def test_prefix_never_shows_a_whole_value():
    first4 = parse_rule({"prefix": 4, "default": "****"}).function("STRING")
    assert first4("1234AB") == "1234" and first4("12345") == "1234"
    assert first4("1234") == "****" and first4("12") == "****" and first4("") == "****"   # short: the default
    assert first4(1234567) == "****"
    with pytest.raises(ValueError, match="from 1 to"):
        parse_rule({"prefix": 0})


@settings(max_examples=300)
@given(text=st.text(max_size=12), n=st.integers(1, 8))
def test_prefix_output_is_a_strict_prefix_or_null(text, n):
    out = parse_rule({"prefix": n}).function("STRING")(text)
    assert out is None or (len(out) == n < len(text) and text.startswith(out))


def test_truncate_understands_the_contract_date_forms_only():
    month = parse_rule({"truncate": "month"}).function("STRING")
    day = parse_rule({"truncate": "day"}).function("STRING")
    year = parse_rule({"truncate": "year", "default": "?"}).function("STRING")
    assert month("2022-09-16 16:02:32") == "2022-09" and day("2022-09-16 16:02:32") == "2022-09-16"
    assert year("2022-09-16 16:02:32") == "2022"
    for text in ("2022-09-16", "2022-09-16T16:02", "2022-09-16T16:02:32.123456789Z", "2022-09-16 16:02:32+02:00",
                 "2022-09-16t16:02:32z", "2022-09-16T23:59:60-0530", "2024-02-29 00:00:00", "2022-09-16T16:02:32,5+01"):
        assert day(text) == text[:10], text
    for text in ("16/09/2022", "2022-9-16", "2022-09", "20220916", "2022-W37-5", "2023-02-29", "2022-09-31",
                 "2022-13-01", "0000-01-01", "2022-09-16 24:00", "2022-09-16T12:60", "2022-09-16T12:00+25:00",
                 "2022-09-16 16:02:32 ", " 2022-09-16", "２０２２-09-16", "1663344152000", ""):
        assert year(text) == "?", text
    assert year(1663344152000) == "?" and year(None) == "?"
    with pytest.raises(ValueError, match="day, month, year"):
        parse_rule({"truncate": "week"})


def test_group_by_a_mapping_with_a_default_in_the_field_type():
    sizes = parse_rule({"group": {"small": ["XS", "S"], "large": ["L", "XL"]}, "default": "other"})
    size = sizes.function("STRING")
    assert [size(v) for v in ("XS", "S", "M", "L", "XL", "xs", "", 1)] == [
        "small", "small", "other", "large", "large", "other", "other", "other"]
    levels = parse_rule_text("rating=group:low=1|2,high=4|5")[1]       # the CLI's text, typed by the field
    assert levels.problem("INTEGER") is None
    rating = levels.function("INTEGER")
    assert [rating(v) for v in (1, 2, 3, 4, 5, True, "1", 1.0)] == ["low", "low", None, "high", "high", None, None, None]
    assert levels.function("STRING")("1") == "low" and levels.function("FLOAT")(4.0) == "high"
    flags = parse_rule({"group": {"yes": [True], "no": [False]}}).function("BOOLEAN")
    assert (flags(True), flags(False), flags(1), flags(0)) == ("yes", "no", None, None)
    assert "not a value of type INTEGER" in parse_rule({"group": {"a": ["x"]}}).problem("INTEGER")
    assert "more than one group (as STRING)" in parse_rule({"group": {"a": [1], "b": ["1"]}}).problem("STRING")
    with pytest.raises(ValueError, match="in more than one group"):
        parse_rule({"group": {"a": ["x"], "b": ["x"]}})
    with pytest.raises(ValueError, match="non-empty list"):
        parse_rule({"group": {"a": []}})


def test_a_rule_on_a_type_it_does_not_fit_shows_only_its_default():
    """An unchecked path (a stream built in code, a contract changed under a project stream) fails closed."""
    for rule, field_type in ((parse_rule({"prefix": 2, "default": "x"}), "INTEGER"),
                             (parse_rule({"bucket": [0], "default": "x"}), "BOOLEAN"),
                             (parse_rule({"truncate": "day", "default": "x"}), "NODE")):
        assert rule.problem(field_type)
        assert {rule.function(field_type)(v) for v in (1, True, "2022-09-16", "abc", 3.5)} == {"x"}


def test_the_cli_form():
    assert parse_rule_text("age=bucket:0,18,30,45,65") == ("age", Rule("bucket", (0, 18, 30, 45, 65)))
    assert parse_rule_text("amount = round:2.5") == ("amount", Rule("round", 2.5))
    assert parse_rule_text("address/postcode=prefix:4;default=") == ("address/postcode", Rule("prefix", 4, default=""))
    assert parse_rule_text("date=truncate:month") == ("date", Rule("truncate", "month"))
    assert parse_rule_text("size=group:small=XS|S,large=L|XL;default=other") == (
        "size", Rule("group", (("small", ("XS", "S")), ("large", ("L", "XL"))), default="other"))
    path, rule = parse_rule_text('age={"bucket": [0, 65], "labels": ["adult", "senior"], "default": -1}')
    assert path == "age" and rule.to_config() == {"bucket": [0, 65], "labels": ["adult", "senior"], "default": -1}
    for rule in (parse_rule_text(t)[1] for t in ("a=bucket:0,18", "a=group:x=1|2;default=y", "a=prefix:3")):
        assert parse_rule(rule.to_config()) == rule                      # the stored form reads back the same
    for text, message in (("age", "give FIELD=RULE"), ("=bucket:1", "give FIELD=RULE"),
                          ("age=bucket", "KIND:ARGUMENTS"), ("age=buckets:1", "KIND:ARGUMENTS"),
                          ("age=bucket:0,x", "'x' is not a number"), ("age=bucket:0,nan", "is not a number"),
                          ("age=prefix:two", "not a whole number"), ("size=group:small", "NAME=VALUE"),
                          ("size=group:a=1,a=2", "given twice"), ("age={bucket", "not valid JSON"),
                          ("strmMeta/timestamp=round:1000", "strmMeta cannot be generalised"),
                          ("a b=round:1", "not a field path")):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_rule_text(text)


# ------------------------------------------------------------------------ in a stream
def test_stream_spec_checks_rules_against_masks_and_the_contract(webshop_contract):
    with pytest.raises(ValueError, match="field 'userId' is both masked .'user\\*'. and generalised"):
        StreamSpec.create("s-1", "CUMULATIVE", [1], ["user*"], generalise={"userId": {"prefix": 2}})
    with pytest.raises(ValueError, match="stream 's-1': generalise 'age': bucket edges must be strictly"):
        StreamSpec.create("s-1", "CUMULATIVE", [1], generalise={"age": {"bucket": [2, 1]}})
    spec = StreamSpec.create("s-1", "CUMULATIVE", [1], generalise={
        "agee": {"bucket": AGE_EDGES}, "tshirtSize": {"round": 5}, "age": {"prefix": 1}, "date": {"truncate": "day"},
        "items": {"group": {"few": ["1"]}}, "transactionId": {"group": {"x": [True]}}})
    assert spec.rule_problems(webshop_contract) == [     # by path; items' "1" is a whole number, round fits STRING
        "generalise 'age': prefix applies to STRING fields, this one is INTEGER",
        f"generalise 'agee' names no field of contract {WEBSHOP}"]
    spec = StreamSpec.create("s-2", "CUMULATIVE", [1], generalise={"items": {"group": {"few": ["one"]}}})
    assert spec.rule_problems(webshop_contract) == ["generalise 'items': group 'few': one is not a value of type INTEGER"]
    assert spec.describe() == "cumulative 1, items: group into few"


def nested_plan():
    return FieldPlan(parse_contract(yaml.safe_load(NESTED), source="nested.yaml"))


def test_nested_and_repeated_fields_and_pii_the_stream_leaves_encrypted():
    """Level 1 decrypted: emails (repeated PII) and profile/name get their rules; addresses/street
    (level 2) stays encrypted although it has a rule; addresses/number (repeated NODE) and
    profile/score are not PII."""
    plan, key = nested_plan(), SivKey.generate()
    event = {"strmMeta": {"consentLevels": [1]}, "id": "u1", "emails": ["ann@example.com", None, "bo@x.io"],
             "addresses": [{"street": "Secret Street 1", "number": 7, "lines": ["Flat 2"]}, {"number": 70},
                           {"street": None}],
             "profile": {"name": "Ann Example", "score": 0.87, "visits": 12}}
    encrypted = plan.encrypt(event, key)
    rules = {"emails": {"prefix": 3}, "profile/name": {"prefix": 1}, "profile/score": {"round": 0.5},
             "addresses/number": {"bucket": [0, 10], "labels": ["few", "many"]}, "addresses/street": {"prefix": 3},
             "profile/visits": {"group": {"some": [12, 13]}, "default": "other"}}
    shown = plan.reveal(encrypted, key, StreamSpec.create("n-1", "GRANULAR", [1], generalise=rules))
    assert shown["emails"] == ["ann", None, "bo@"]
    assert shown["profile"] == {"name": "A", "score": 1.0, "visits": "some"}
    assert [a.get("number") for a in shown["addresses"]] == ["few", "many", None]
    assert shown["addresses"][0]["street"] == encrypted["addresses"][0]["street"]      # still the ciphertext
    assert key_id_of(shown["addresses"][0]["street"]) is not None and shown["addresses"][2]["street"] is None
    assert shown["addresses"][0]["lines"] == encrypted["addresses"][0]["lines"]
    both = plan.reveal(encrypted, key, StreamSpec.create("n-2", "GRANULAR", [1, 2], generalise=rules))
    assert both["addresses"][0]["street"] == "Sec" and both["addresses"][0]["lines"] == ["Flat 2"]
    assert event["profile"]["score"] == 0.87 and encrypted["profile"]["score"] == 0.87   # inputs untouched


# --------------------------------------------------------------------- config load
STREAM = "contract: strmprivacy/PrivacyEngineeringWorkshop/1.0.0\nstreams:\n  - name: groups-1\n    cumulative: 1\n"


@pytest.mark.parametrize("rules, message", [
    ("{agee: {bucket: [0, 18]}}", "generalise 'agee' names no field of contract strmprivacy/PrivacyEngineering"),
    ("{age: {prefix: 2}}", "generalise 'age': prefix applies to STRING fields, this one is INTEGER"),
    ("{age: {bucket: [30, 18]}}", "generalise 'age': bucket edges must be strictly increasing"),
    ("{items: {truncate: day}}", "generalise 'items': truncate applies to STRING fields, this one is INTEGER"),
    ("{tshirtSize: {group: {a: [S], b: [S]}}}", "generalise 'tshirtSize': group value S is in more than one"),
    ("{age: {bucket: [0, 0.5]}}", "need labels"),
])
def test_config_load_refuses_a_rule_naming_file_stream_and_field(tmp_path, rules, message):
    config = tmp_path / "pipeline.yaml"
    config.write_text(STREAM + f"    generalise: {rules}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(config))
    assert str(caught.value).startswith(f"{config}: streams[0]: stream 'groups-1': ")
    assert message in str(caught.value)


def test_config_schema_checks_the_rule_shape(tmp_path):
    config = tmp_path / "pipeline.yaml"
    for text, message in (("    generalize: {age: {bucket: [0]}}\n", "generalise"),
                          ("    generalise: {age: {bucket: [0], labls: [x]}}\n", "labls"),
                          ("    generalise: {age: {truncate: week}}\n", "week"),
                          ("    generalise: {age: {round: 0}}\n", "round"),
                          ("    generalise: {'age group': {round: 1}}\n", "age group")):
        config.write_text(STREAM + text)
        with pytest.raises(ConfigError, match=re.escape(message)) as caught:
            load_config(str(config))
        assert str(caught.value).startswith(str(config))
    config.write_text(STREAM + "    generalise:\n      age: {bucket: [0, 18, 30, 45, 65]}\n"
                      "      date: {truncate: month, default: unknown}\n")
    spec = load_config(str(config)).streams[0]
    assert spec.rules == {"age": Rule("bucket", (0, 18, 30, 45, 65)), "date": Rule("truncate", "month", default="unknown")}


# ---------------------------------------------------------- through the real graph
def test_a_run_publishes_groups_never_ages(tmp_path):
    """pipelines.run over the web shop contract: a cumulative-1 stream with an age group, a month,
    a t-shirt group, rounded amounts and a postcode-style prefix of the (level 2) address, and a
    cumulative-2 stream with the same address prefix. Level 1 leaves address encrypted."""
    ages = [-3, 0, 17, 18, 29, 30, 44, 45, 64, 65, 99, 2147483647]
    rows = [{"transactionId": str(1000 + i), "userId": f"u{i % 5}", "age": str(age), "purposeConsent": str(1 + i % 2),
             "date": f"2024-03-{1 + i % 9:02d} 10:{i:02d}:00", "tshirtSize": ["XS", "M", "XL"][i % 3],
             "address": f"{1000 + i} Long Street", "transactionAmount": str(10 * i + 5)} for i, age in enumerate(ages)]
    write_rows(tmp_path / "in.csv", rows)
    rules = ("{age: {bucket: [0, 18, 30, 45, 65]}, date: {truncate: month}, transactionAmount: {round: 100},"
             " tshirtSize: {group: {small: [XS, S], large: [L, XL]}, default: other}, address: {prefix: 4}}")
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""name: shop
contract: {WEBSHOP}
input: {{consent: {{field: purposeConsent}}, timestamp: {{field: date, format: "yyyy-MM-dd HH:mm:ss"}}}}
streams:
  - {{name: groups-1, cumulative: 1, generalise: {rules}}}
  - {{name: groups-2, cumulative: 2, generalise: {{address: {{prefix: 4}}, age: {{bucket: [0, 65], labels: [adult, senior]}}}}}}
""")
    out = tmp_path / "out"
    lines = []
    assert run(["--config", str(config), "--input", str(tmp_path / "in.csv"), "--output", str(out)],
               echo=lines.append) == 0, lines
    encrypted = {e["transactionId"]: e for _, _, e in read_jsonl([str(out / "encrypted")])}
    one = {e["transactionId"]: e for _, _, e in read_jsonl([str(out / "streams" / "groups-1")])}
    two = {e["transactionId"]: e for _, _, e in read_jsonl([str(out / "streams" / "groups-2")])}
    assert len(encrypted) == len(one) == len(rows) and len(two) == len(rows) // 2
    expected_groups = {-3: None, 0: "0-17", 17: "0-17", 18: "18-29", 29: "18-29", 30: "30-44", 44: "30-44",
                       45: "45-64", 64: "45-64", 65: "65+", 99: "65+", 2147483647: "65+"}
    for row in rows:
        tx, age = row["transactionId"], int(row["age"])
        assert encrypted[tx]["age"] == age                                  # not PII: plaintext in the encrypted output
        event = one[tx]
        assert event["age"] == expected_groups[age]
        assert event["date"] == row["date"][:7]
        assert event["transactionAmount"] == (int(row["transactionAmount"]) + 50) // 100 * 100
        assert event["tshirtSize"] == {"XS": "small", "M": "other", "XL": "large"}[row["tshirtSize"]]
        assert event["address"] == encrypted[tx]["address"] and key_id_of(event["address"])   # level 2: encrypted
        assert event["userId"] == row["userId"] and event["strmMeta"] == encrypted[tx]["strmMeta"]
        if tx in two:
            assert two[tx]["address"] == row["address"][:4]
            assert two[tx]["age"] == (None if age < 0 else "adult" if age < 65 else "senior")
            assert two[tx]["date"] == row["date"]                           # no rule in this stream
    stream_text = "".join(p.read_text() for p in (out / "streams").rglob("*.jsonl"))
    for row in rows:
        assert f'"age": {row["age"]},' not in stream_text and f'"age":{row["age"]},' not in stream_text
        assert "Long Street" not in stream_text


def test_pstream_create_stream_generalise_and_the_local_loop(tmp_path, capsys):
    """The CLI stores the rules in the project (config form), shows them, refuses a bad one; the
    local loop runs them over spooled events of the web shop contract."""
    from controlplane.project import Project
    from controlplane.realtime import LocalLoop

    p = ["--project-dir", str(tmp_path / "project")]
    assert pstream(["create", "stream", "demo", *p]) == 0
    capsys.readouterr()
    assert pstream(["create", "stream", "--derived-from", "demo", "--levels", "1", "--cumulative",
                    "--generalise", "age=bucket:0,18,30,45,65", "--generalise",
                    "tshirtSize=group:small=XS|S,large=L|XL;default=other", "--generalize", "date=truncate:day", *p]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["generalise"] == {"age": {"bucket": [0, 18, 30, 45, 65]}, "date": {"truncate": "day"},
                                  "tshirtSize": {"group": {"small": ["XS", "S"], "large": ["L", "XL"]},
                                                 "default": "other"}}
    stream = Project.open(tmp_path / "project").privacy_streams["demo-1"]
    assert stream.generalise == view["generalise"] and stream.spec().rules["age"] == Rule("bucket", (0, 18, 30, 45, 65))
    assert pstream(["get", "stream", "demo-1", "-o", "json", *p]) == 0
    assert json.loads(capsys.readouterr().out)["generalise"] == view["generalise"]
    for argv, message in ((["--generalise", "age=bucket:30,18"], "strictly increasing"),
                          (["--generalise", "age"], "give FIELD=RULE"),
                          (["--generalise", "age=round:5", "--generalise", "age=round:10"], "age: given twice"),
                          (["--generalise", "userId=prefix:2", "--masked-fields", "userId"], "both masked")):
        assert pstream(["create", "stream", "x-1", "--derived-from", "demo", "--levels", "1", *argv, *p]) == 2
        assert message in capsys.readouterr().err
    assert pstream(["create", "stream", "other", "--generalise", "age=round:5", *p]) == 2
    assert "need --derived-from" in capsys.readouterr().err

    project = Project.open(tmp_path / "project")
    spool = project.spool_dir("demo")
    spool.mkdir(parents=True)
    events = [{"strmMeta": {"eventContractRef": WEBSHOP, "consentLevels": [1], "timestamp": 1709287200000 + i},
               "transactionId": str(i), "userId": f"u{i}", "age": age, "tshirtSize": size, "date": "2024-03-01 10:00:00"}
              for i, (age, size) in enumerate([(7, "S"), (33, "M"), (70, "XL")])]
    (spool / "0000000001-1709287200000.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    messages = []
    loop = LocalLoop(tmp_path / "project", echo=messages.append)
    assert loop.step() == 3, messages
    stream_dir = project.output_dir("demo") / "streams" / "demo-1"
    shown = sorted((e["age"], e["tshirtSize"], e["date"]) for _, _, e in read_jsonl([str(stream_dir)]))
    assert shown == [("0-17", "small", "2024-03-01"), ("30-44", "other", "2024-03-01"), ("65+", "large", "2024-03-01")]

    # A rule that does not fit a contract's field type holds that contract's events (the project cannot
    # know the contract at creation); a contract without the rule's field is not held up by it.
    assert pstream(["create", "stream", "demo-bad", "--derived-from", "demo", "--levels", "1",
                    "--generalise", "age=prefix:1", *p]) == 0
    simulator = {"strmMeta": {"eventContractRef": "strmprivacy/example/1.5.0", "consentLevels": [1],
                              "timestamp": 1709287200000}, "consistentValue": "s1", "uniqueIdentifier": "x"}
    (spool / "0000000002-1709287300000.jsonl").write_text(json.dumps({**events[0], "transactionId": "9"}) + "\n"
                                                           + json.dumps(simulator) + "\n")
    assert loop.step() == 1, messages
    assert any("1 events of contract 'strmprivacy~PrivacyEngineeringWorkshop~1.0.0' held" in m and
               "privacy stream 'demo-bad': generalise 'age': prefix applies to STRING fields, this one is INTEGER" in m
               for m in messages), messages

    def refs():
        return sorted(e["strmMeta"]["eventContractRef"] for _, _, e in read_jsonl([str(stream_dir)]))

    assert refs() == [*[WEBSHOP] * 3, "strmprivacy/example/1.5.0"]     # the held event is in no stream yet
    assert pstream(["delete", "stream", "demo-bad", *p]) == 0
    assert loop.step() == 1 and refs() == [*[WEBSHOP] * 4, "strmprivacy/example/1.5.0"]   # run once it is fixed
