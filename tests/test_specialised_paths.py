"""The specialised paths (``contracts.specialised``) against the general ones, differentially.

The generated validator pre-check may only accept what the general ``EventValidator`` accepts,
returning the very same object; everything else goes to the general path, so every refusal has
the general path's reason. The generated CSV converter must give the same event, key for key in
the same order, or the same ``EventError`` reason, as ``RowCoercer``. Hypothesis draws the
events (``tests.test_one_validator``'s near-valid mutations, on flat contracts with every type,
a DEFAULT_VALUE rule and regexes) and the rows (``tests.test_hostile_input``'s hostile texts).
"""
from __future__ import annotations

import random
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import load_contract, parse_contract
from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig
from contracts.events import EventError, EventValidator, RowCoercer
from contracts.specialised import compile_row_converter, compile_validator
from tests.conftest import SIMULATOR, WEBSHOP
from tests.test_hostile_input import MARKER, good, row_names, texts
from tests.test_one_validator import EDGE_VALUES, META_EDGES, JSON_SCALARS, events, values, meta_values

TYPES = parse_contract(yaml.safe_load(textwrap.dedent("""
    ref: acme/Types/1.0.0
    schema:
      name: Types
      nodes:
        - {name: id, type: STRING, required: true}
        - {name: size, type: STRING}
        - {name: score, type: FLOAT}
        - {name: active, type: BOOLEAN}
        - {name: visits, type: LONG}
        - {name: count, type: INTEGER}
        - {name: tags, type: STRING, repeated: true}
        - {name: codes, type: INTEGER, repeated: true}
        - {name: fill, type: STRING}
    keyField: id
    dataSubjectField: size
    fieldMetadata:
      - {fieldName: id, personalDataConfig: {isPii: true, purposeLevel: 1}}
      - {fieldName: fill, nullHandlingConfig: {type: DEFAULT_VALUE, defaultValue: "-"}}
    validations:
      - {field: size, type: regex, value: "^(S|M|L)$"}
      - {field: count, type: regex, value: "^[0-9]$"}
      - {field: tags, type: regex, value: "^[a-z]+$"}
""")), source="types.yaml")
CONTRACTS = {WEBSHOP: load_contract(WEBSHOP), SIMULATOR: load_contract(SIMULATOR), TYPES.ref: TYPES}
TYPES_BASE = {"id": "u1", "size": "M", "score": 1.5, "active": True, "visits": 2**40, "count": 3,
              "tags": ["a", "b"], "codes": [1], "fill": "x"}
TYPES_NAMES = st.sampled_from(sorted(TYPES_BASE) + ["unknown", "strmMeta"])


@st.composite
def types_events(draw):
    event = dict(TYPES_BASE, tags=list(TYPES_BASE["tags"]), codes=list(TYPES_BASE["codes"]))
    event["strmMeta"] = {"eventContractRef": TYPES.ref, "consentLevels": [1]}
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["set", "delete", "meta", "meta-delete", "list"]))
        if kind == "set":
            event[draw(TYPES_NAMES)] = draw(values)
        elif kind == "delete":
            event.pop(draw(TYPES_NAMES), None)
        elif kind == "meta" and isinstance(event.get("strmMeta"), dict):
            event["strmMeta"][draw(st.sampled_from(["nonce", "timestamp", "keyLink", "billingId",
                                                     "consentLevels", "surprise"]))] = draw(meta_values)
        elif kind == "meta-delete" and isinstance(event.get("strmMeta"), dict):
            event["strmMeta"].pop(draw(st.sampled_from(["eventContractRef", "nonce", "consentLevels"])), None)
        elif kind == "list":
            event[draw(st.sampled_from(["tags", "codes"]))] = draw(st.lists(values, max_size=3))
    return event


SPECIALISED = {ref: EventValidator(c) for ref, c in CONTRACTS.items()}
GENERAL = {ref: EventValidator(c, specialised=False) for ref, c in CONTRACTS.items()}


def _decision(validator, event):
    try:
        return "ok", validator.check(event)
    except EventError as err:
        return "refused", (err.reason, err.gateway_message("ref"), err.field, err.regex)


def _same(ref: str, event) -> None:
    before = repr(event)
    fast, general = _decision(SPECIALISED[ref], event), _decision(GENERAL[ref], event)
    assert repr(event) == before
    assert fast[0] == general[0], (fast, general, event)
    if fast[0] == "ok":
        assert repr(fast[1]) == repr(general[1])
        # the pre-check returns the input itself, or leaves the event to the general path
        accepted = SPECIALISED[ref]._accept(event)
        assert accepted is None or accepted is event
    else:
        assert fast[1] == general[1]
        assert SPECIALISED[ref]._accept(event) is None  # it never accepts what the general path refuses


def test_the_flat_contracts_have_a_specialised_validator_and_nested_ones_do_not():
    from tests.test_contracts import nested_contract

    for ref in CONTRACTS:
        assert SPECIALISED[ref]._accept is not None
    assert compile_validator(EventValidator(nested_contract(), specialised=False)) is None


@pytest.mark.parametrize("ref", [WEBSHOP, SIMULATOR])
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_specialised_and_general_validator_decide_alike(ref, data):
    _same(ref, data.draw(events(ref)))


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(types_events())
def test_specialised_and_general_validator_decide_alike_on_every_type(event):
    _same(TYPES.ref, event)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(EDGE_VALUES + META_EDGES), JSON_SCALARS))
def test_anything_as_the_event_or_its_strmmeta(value):
    _same(WEBSHOP, value)
    _same(WEBSHOP, {**good(1), "strmMeta": value})


# ------------------------------------------------------------------ the CSV converter
def _convert(function, row):
    try:
        return "ok", repr(list(function(row).items()))
    except EventError as err:
        assert MARKER not in err.reason
        return "refused", err.reason


@pytest.mark.parametrize("ref", [WEBSHOP, TYPES.ref])
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.dictionaries(row_names | st.sampled_from(sorted(TYPES_BASE)), texts | st.none() | JSON_SCALARS,
                           max_size=16),
       full=st.booleans())
def test_specialised_and_general_row_conversion_agree(ref, row, full):
    if full:
        row = {**good(1), **row}
    coercer = RowCoercer(CONTRACTS[ref])
    meta = {"eventContractRef": ref}
    specialised = compile_row_converter(coercer, tuple(row))
    assert specialised is not None
    fast = _convert(lambda r: specialised(r, meta), row)
    general = _convert(lambda r: coercer(r, into={"strmMeta": meta}), row)
    assert fast == general, (fast, general, row)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(row_names, texts, max_size=14), min_size=1, max_size=5))
def test_batch_input_gives_the_same_events_with_and_without_its_specialised_converters(rows):
    contract = CONTRACTS[WEBSHOP]
    consent = ConsentConfig(field="purposeConsent")
    timestamp = TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss", timezone="UTC")
    fast, general = BatchInput(contract, consent, timestamp, now_ms=5), BatchInput(contract, consent, timestamp, now_ms=5)
    general._converter = lambda shape: False  # the general RowCoercer for every row
    fast._random, general._random = random.Random(1), random.Random(1)
    for row in [good(2), *({**good(1), **r} for r in rows)] * 4:  # a shape's third row on takes the specialised converter
        assert _convert(fast.to_event, row) == _convert(general.to_event, row)
    assert any(fast._converters.values())
