"""One validator (issue 11, point 7): the gateway and the pipelines give every event the same answer.

The gateway and the pipelines' ValidateEvents both call ``contracts.events.EventValidator``; there
is no second, faster check to drift from it. These tests hold that single validator to an
independent reading of the same rules: a JSON Schema written here from the contract and from
strmMeta's one definition, checked by the ``jsonschema`` library with exact JSON types. Thousands
of generated events (valid ones with up to three mutations: edge values, wrong types, missing and
unknown fields, strmMeta changes) must get the same answer from the validator, from the
pipelines' per-event decision (``ContractCheck``) and from that schema, and whatever is accepted
must survive a JSON round trip unchanged. Then explicit edges (``strmMeta.timestamp =
-62135596800001`` and friends) go to a real gateway over a socket and through a real batch run:
204 exactly where the batch run counts the event valid.
"""
from __future__ import annotations

import copy
import json
import math
import uuid

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.jsonl_files import read_jsonl
from contracts import load_contract
from contracts.events import EventError, EventValidator
from contracts.model import NODE
from contracts.strm_meta import INT32, INT64, STRM_META
from gateway_helpers import SIMULATOR, WEBSHOP, GatewayProcess, make_project
from pipelines.run import run
from tests.test_contracts import nested_contract
from transforms.validate import ContractCheck

# ------------------------------------------------------------------ the independent reading
_EXACT = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine_many({
    "string": lambda _, v: v.__class__ is str,
    "integer": lambda _, v: v.__class__ is int,
    "number": lambda _, v: (v.__class__ is float and math.isfinite(v)) or v.__class__ is int,
    "boolean": lambda _, v: v.__class__ is bool,
    "object": lambda _, v: v.__class__ is dict,
    "array": lambda _, v: v.__class__ is list,
})
ExactValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_EXACT)
NO_SURROGATES = {"not": {"pattern": "[\ud800-\udfff]"}}
RANGES = {"INTEGER": INT32, "LONG": INT64}


def _scalar(kind: str, minimum=None, maximum=None) -> dict:
    if kind == "STRING":
        return {"type": "string", **NO_SURROGATES}
    if kind == "BOOLEAN":
        return {"type": "boolean"}
    if kind == "FLOAT":  # finite floats of any size; integers that fit 64 bits
        return {"anyOf": [{"type": "integer", "minimum": INT64[0], "maximum": INT64[1]},
                          {"type": "number", "not": {"type": "integer"}}]}
    low, high = RANGES[kind]
    return {"type": "integer", "minimum": low if minimum is None else minimum,
            "maximum": high if maximum is None else maximum}


def _object(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _field(schema: dict, repeated: bool, required: bool) -> dict:
    if repeated:
        schema = {"type": "array", "items": schema}
    return schema if required else {"anyOf": [{"type": "null"}, schema]}


def _nodes(contract, nodes, parent: str) -> tuple[dict, list[str]]:
    properties, required = {}, []
    regexes = {}
    for validation in contract.validations:
        regexes.setdefault(validation.field, []).append(validation.regex)
    for node in nodes:
        path = f"{parent}{node.name}"
        if node.type == NODE:
            schema = _object(*_nodes(contract, node.nodes, f"{path}/"))
        else:
            schema = _scalar(node.type)
            if regexes.get(path):
                assert node.type == "STRING", "this reading covers regexes on STRING fields"
                schema = {"allOf": [schema] + [{"pattern": f"^(?:{regex})\\Z"} for regex in regexes[path]]}
            if path == contract.key_field:
                schema = {"allOf": [schema, {"pattern": "\\S"}]}  # not empty, not only blanks
        properties[node.name] = _field(schema, node.repeated, node.required)
        if node.required:
            required.append(node.name)
    return properties, required


def event_schema(contract) -> dict:
    """The contract and strmMeta's definition as a JSON Schema (no DEFAULT_VALUE rules here)."""
    assert not contract.null_handling
    meta = {}
    for field in STRM_META:
        if field.name == "eventContractRef":
            meta[field.name] = {"type": "string", "const": contract.ref}
            continue
        schema = _scalar(field.type, field.minimum, field.maximum)
        if field.pattern:
            schema = {"allOf": [schema, {"pattern": f"^(?:{field.pattern})\\Z"}]}
        meta[field.name] = _field(schema, field.repeated, field.required)
    properties, required = _nodes(contract, contract.nodes, "")
    properties["strmMeta"] = _object(meta, [f.name for f in STRM_META if f.required])
    return _object(properties, ["strmMeta", *required])


# ------------------------------------------------------------------ valid and near-valid events
CONTRACTS = {WEBSHOP: load_contract(WEBSHOP), SIMULATOR: load_contract(SIMULATOR), "nested": nested_contract()}
BASES = {
    WEBSHOP: {"transactionId": "1", "userId": "42", "email": "a@b.c", "age": 30, "tshirtSize": "M",
              "items": [1, 2], "purposeConsent": 1},
    SIMULATOR: {"uniqueIdentifier": "unique-1", "consistentValue": "session-1", "someSensitiveValue": "s",
                "notSensitiveValue": "n"},
    "nested": {"id": "u1", "emails": ["a@b.c"], "addresses": [{"street": "s", "lines": ["l"], "number": 1}],
               "profile": {"name": "n", "score": 0.5, "active": True, "visits": 3}},
}
EDGE_VALUES = [
    None, "", " ", "\u3000", "M", "XS", "x" * 70, "\ud800", "a\udfffb", "é", "١٢٣", True, False, 0, 1, -1,
    INT32[1], INT32[1] + 1, INT32[0], INT32[0] - 1, INT64[1], INT64[1] + 1, INT64[0] - 1, 2**70,
    1.0, -0.0, 1.5, 1e308, float("nan"), float("inf"), float("-inf"), [], [1], [1, "x"], ["a"], [None], [[1]],
    {}, {"a": 1}, {"street": "s"}, {"name": "n", "score": float("nan")},
]
META_EDGES = [
    -62_135_596_800_001, -62_135_596_800_000, 253_402_300_799_999, 253_402_300_800_000, 0, -1,
    INT32[1], INT32[1] + 1, INT32[0], INT32[0] - 1, [], [0], [-1], [INT32[1]], [INT32[1] + 1], [True], [1.0],
    "1", str(uuid.UUID(int=7)), str(uuid.UUID(int=7)).upper(), "not-a-uuid", "b" * 64, "b" * 65, "a@b", "",
    None, 5, 5.0, True, WEBSHOP, SIMULATOR, "acme/Nested/1.0.0", "acme/Other/1.0.0",
]
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.text(st.characters(codec=None, exclude_categories=()), max_size=8))
values = st.one_of(st.sampled_from(EDGE_VALUES), JSON_SCALARS,
                   st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=3), st.floats()), max_size=3))
meta_values = st.one_of(st.sampled_from(META_EDGES), JSON_SCALARS,
                        st.lists(st.one_of(st.integers(-2, 2**32), st.booleans()), max_size=3))


FIELD_NAMES = {ref: st.sampled_from(sorted({n.name for n in c.nodes} | {"unknown", "strmMeta"}))
               for ref, c in CONTRACTS.items()}


meta_names = st.sampled_from([f.name for f in STRM_META] + ["surprise", "keylink"])
nested_paths = st.sampled_from([("addresses", 0, "number"), ("addresses", 0, "street"), ("addresses", 0, "zip"),
                                ("profile", "score"), ("profile", "active"), ("profile", "visits"), ("profile", "x")])


@st.composite
def events(draw, ref: str):
    contract = CONTRACTS[ref]
    event = copy.deepcopy(BASES[ref])
    event["strmMeta"] = {"eventContractRef": contract.ref, "consentLevels": [1]}
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["set", "delete", "meta", "meta-delete", "meta-replace", "nested"]))
        meta = event.get("strmMeta")
        if kind == "set":
            event[draw(FIELD_NAMES[ref])] = draw(values)
        elif kind == "delete":
            event.pop(draw(FIELD_NAMES[ref]), None)
        elif kind == "meta" and isinstance(meta, dict):
            meta[draw(meta_names)] = draw(meta_values)
        elif kind == "meta-delete" and isinstance(meta, dict):
            meta.pop(draw(meta_names), None)
        elif kind == "meta-replace":
            event["strmMeta"] = draw(st.one_of(values, st.just({})))
        elif kind == "nested" and ref == "nested":
            *parents, last = draw(nested_paths)
            target = event
            for part in parents:
                try:
                    target = target[part]
                except (KeyError, IndexError, TypeError):
                    target = None
            if isinstance(target, dict):
                target[last] = draw(values)
    return event


_SCHEMAS = {ref: ExactValidator(event_schema(contract)) for ref, contract in CONTRACTS.items()}
_VALIDATORS = {ref: EventValidator(contract) for ref, contract in CONTRACTS.items()}
_CHECKS = {ref: ContractCheck({contract.ref: contract}) for ref, contract in CONTRACTS.items()}


def _answers(ref: str, event) -> tuple[bool, bool, bool]:
    before = repr(event)
    try:
        checked = _VALIDATORS[ref].check(event)
        validator_ok = True
    except EventError as err:
        validator_ok = False
        assert "\ud800" not in err.reason and "MARK" not in err.reason
    assert repr(event) == before, "the validator changed its input"
    if validator_ok:
        assert checked is event  # no DEFAULT_VALUE rules in these contracts
        assert orjson.loads(orjson.dumps(checked)) == checked  # writable exactly: no NaN, no big ints, no surrogates
    accepted, dead = _CHECKS[ref]("test:1", event)
    assert (accepted is None) != (dead is None)
    return validator_ok, dead is None, _SCHEMAS[ref].is_valid(event)


@pytest.mark.parametrize("ref", [WEBSHOP, SIMULATOR, "nested"])
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_validator_the_pipeline_check_and_the_schema_agree(ref, data):
    event = data.draw(events(ref))
    validator_ok, pipeline_ok, schema_ok = _answers(ref, event)
    assert validator_ok == pipeline_ok == schema_ok, (validator_ok, pipeline_ok, schema_ok, event)


# ------------------------------------------------------------------ explicit edges, gateway and batch
def _sim(**meta) -> dict:
    event = {"uniqueIdentifier": "unique-1", "consistentValue": "session-1", "someSensitiveValue": "s",
             "notSensitiveValue": "n"}
    event["strmMeta"] = {"eventContractRef": SIMULATOR, "consentLevels": [0, 1], **meta}
    return event


EDGES = [  # (name, event as JSON text, valid?)
    ("baseline", _sim(), True),
    ("timestamp at 0001-01-01", _sim(timestamp=-62_135_596_800_000), True),
    ("timestamp 1 ms before 0001-01-01", _sim(timestamp=-62_135_596_800_001), False),
    ("timestamp at the end of 9999", _sim(timestamp=253_402_300_799_999), True),
    ("timestamp after 9999", _sim(timestamp=253_402_300_800_000), False),
    ("timestamp 2**70", _sim(timestamp=2**70), False),
    ("nonce 2**31-1", _sim(nonce=INT32[1]), True),
    ("nonce 2**31", _sim(nonce=INT32[1] + 1), False),
    ("nonce -2**31-1", _sim(nonce=INT32[0] - 1), False),
    ("nonce 2**64-1", _sim(nonce=2**64 - 1), False),
    ("consent level -1", _sim(consentLevels=[-1]), False),
    ("consent level 2**31-1", _sim(consentLevels=[INT32[1]]), True),
    ("consent level 2**31", _sim(consentLevels=[INT32[1] + 1]), False),
    ("consent level true", _sim(consentLevels=[True]), False),
    ("consent levels null", _sim(consentLevels=None), True),
    ("billingId of 64", _sim(billingId="b" * 64), True),
    ("billingId of 65", _sim(billingId="b" * 65), False),
    ("billingId with @", _sim(billingId="ann@example.com"), False),
    ("keyLink a UUID", _sim(keyLink=str(uuid.UUID(int=7))), True),
    ("keyLink not a UUID", _sim(keyLink="not-a-uuid"), False),
    ("unknown strmMeta key", _sim(surprise=1), False),
    ("another contract's ref", _sim(eventContractRef=WEBSHOP), False),
    ("strmMeta a string", {**_sim(), "strmMeta": "x"}, False),
    ("unknown field", {**_sim(), "surprise": "x"}, False),
    ("a number in a STRING field", {**_sim(), "notSensitiveValue": 5}, False),
    ("empty key field", {**_sim(), "consistentValue": " "}, False),
]
_HOLE = json.dumps({**_sim(), "notSensitiveValue": "@HOLE@"})
RAW_EDGES = [  # JSON text that strict JSON refuses: both sides refuse it
    ("NaN", _HOLE.replace('"@HOLE@"', "NaN"), False),
    ("1e400", _HOLE.replace('"@HOLE@"', "1e400"), False),
    ("lone surrogate escape", _HOLE.replace('"@HOLE@"', '"\\ud800"'), False),
    ("100,000-deep nesting", _HOLE.replace('"@HOLE@"', "[" * 100_000 + "]" * 100_000), False),
]
assert all("@HOLE@" not in text for _, text, _ in RAW_EDGES)


def test_gateway_and_batch_run_agree_on_the_edges(tmp_path):
    cases = [(name, json.dumps(event), valid) for name, event, valid in EDGES] + RAW_EDGES
    for name, text, valid in cases[:len(EDGES)]:  # the expectation is the validator's own answer
        try:
            EventValidator(CONTRACTS[SIMULATOR]).check(json.loads(text))
            assert valid, name
        except EventError:
            assert not valid, name
    # the gateway, over a real socket
    make_project(tmp_path / "project", "demo")
    with GatewayProcess(tmp_path / "project") as gateway:
        token = gateway.token("demo")
        statuses = {name: gateway.post_event(token, text.encode()).status_code for name, text, _ in cases}
    # a batch run of the same events, one per line
    data = tmp_path / "edges.jsonl"
    data.write_text("".join(text + "\n" for _, text, _ in cases))
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"contract: {SIMULATOR}\ninput: {{format: jsonl}}\nstreams: []\n")
    lines = []
    assert run(["--config", str(config), "--input", str(data), "--output", str(tmp_path / "out")],
               echo=lines.append) == 0, lines
    dead = {int(d["position"].rsplit(":", 1)[1]) for _, _, d in read_jsonl([str(tmp_path / "out" / "dead_letter")])}
    for number, (name, _, valid) in enumerate(cases, start=1):
        assert statuses[name] == (204 if valid else 400), (name, statuses[name])
        assert (number not in dead) == valid, name
