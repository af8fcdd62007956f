"""Event checks and text conversion: types, required fields, key field, regexes, safe reasons."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig, java_to_strptime
from contracts.events import EventError, EventValidator, coerce_row
from tests.test_contracts import nested_contract

SIZES = st.sampled_from(["XS", "S", "M", "L", "XL"])
TEXT = st.text(min_size=1, max_size=30).filter(lambda s: s.strip())


def webshop_event(contract, **fields):
    event = {"strmMeta": {"eventContractRef": contract.ref, "consentLevels": [1]},
             "transactionId": "1", "userId": "42", "email": "a@b.c", "age": 30, "tshirtSize": "M",
             "items": [1, 2], "purposeConsent": 1}
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}


@settings(max_examples=60, deadline=None)
@given(user=TEXT, email=st.text(max_size=40), age=st.integers(-(2**31), 2**31 - 1), size=SIZES,
       items=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=5))
def test_well_formed_events_pass(webshop_contract, user, email, age, size, items):
    event = webshop_event(webshop_contract, userId=user, email=email, age=age, tshirtSize=size, items=items)
    assert EventValidator(webshop_contract).check(event) == event


@settings(max_examples=60, deadline=None)
@given(size=st.text(max_size=5).filter(lambda s: s not in ("XS", "S", "M", "L", "XL")))
def test_regex_failures_are_rejected_with_the_reference_text(webshop_contract, size):
    with pytest.raises(EventError) as info:
        EventValidator(webshop_contract).check(webshop_event(webshop_contract, tshirtSize=size))
    err = info.value
    assert err.gateway_message(webshop_contract.ref) == (
        f"Field: 'tshirtSize' in event with schema: '{webshop_contract.ref}' with value: '{size}' "
        "doesn't match regex: '^(XS|S|M|L|XL)$'")
    assert err.reason == "field 'tshirtSize': doesn't match regex '^(XS|S|M|L|XL)$'"


@pytest.mark.parametrize("fields,problem", [
    ({"age": "30"}, "field 'age': has the wrong type: expected INTEGER"),
    ({"age": 2**40}, "field 'age': is out of range for INTEGER (32-bit)"),
    ({"age": 1.0}, "field 'age': has the wrong type: expected INTEGER"),
    ({"age": True}, "field 'age': has the wrong type: expected INTEGER"),
    ({"items": 5}, "field 'items': must be a list"),
    ({"items": [1, "x"]}, "field 'items': has the wrong type"),
    ({"userId": ""}, "field 'userId': is the key field and must not be empty"),
    ({"userId": "   "}, "field 'userId': is the key field and must not be empty"),
    ({"userId": ...}, "field 'userId': is required but missing"),
    ({"transactionId": None}, "field 'transactionId': is required but missing"),
    ({"surprise": "x"}, "1 field is not in the contract (the first is field 8 of the event, not counting strmMeta)"),
    ({"strmMeta": {"eventContractRef": "strmprivacy/PrivacyEngineeringWorkshop/1.0.0", "consentLevels": "1"}},
     "field 'strmMeta/consentLevels': must be a list"),
    ({"strmMeta": {"eventContractRef": "x"}}, "field 'strmMeta/eventContractRef': names another contract"),
    ({"strmMeta": None}, "field 'strmMeta': is required but missing"),
])
def test_bad_events_name_the_field_and_never_the_value(webshop_contract, fields, problem):
    event = webshop_event(webshop_contract, **fields)
    with pytest.raises(EventError) as info:
        EventValidator(webshop_contract).check(event)
    assert problem in info.value.reason
    for name, value in fields.items():
        if isinstance(value, str) and value.strip():
            assert value not in info.value.reason
        if name not in webshop_contract.pii and name != "strmMeta" and webshop_contract.node(name) is None:
            assert name not in info.value.reason  # a field name from the input is input text


def test_nested_events_are_checked_inside_nodes():
    contract = nested_contract()
    base = {"strmMeta": {"eventContractRef": contract.ref}, "id": "u1",
            "addresses": [{"street": "s", "number": 1}], "profile": {"name": "n", "score": 1}}
    assert EventValidator(contract).check(base) == base
    bad = dict(base, addresses=[{"street": 5}])
    with pytest.raises(EventError, match="addresses/street"):
        EventValidator(contract).check(bad)


def test_coerce_row_converts_text_to_contract_types(webshop_contract):
    row = {"transactionId": "9", "userId": "42", "age": "31", "items": "[11217, 18090]", "purposeConsent": "2",
           "email": "", "totalItems": ""}
    event = coerce_row(webshop_contract, row)
    assert event["age"] == 31 and event["items"] == [11217, 18090] and event["purposeConsent"] == 2
    assert event["email"] == "" and event["totalItems"] is None
    with pytest.raises(EventError) as info:
        coerce_row(webshop_contract, {"age": "thirty-one"})
    assert info.value.reason == "field 'age': cannot be converted to INTEGER"
    with pytest.raises(EventError, match="cannot be converted to a list of INTEGER"):
        coerce_row(webshop_contract, {"items": "[1, 2"})


def test_coerce_nested_text():
    contract = nested_contract()
    event = coerce_row(contract, {"addresses": '[{"street": "s", "number": "4", "lines": ["a"]}]',
                                  "profile": '{"name": "n", "active": "true", "visits": 7}'})
    assert event["addresses"][0]["number"] == 4
    assert event["profile"] == {"name": "n", "active": True, "visits": 7}


def test_batch_input_builds_strm_meta(webshop_contract):
    batch = BatchInput(webshop_contract, ConsentConfig(field="purposeConsent"),
                       TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss"), now_ms=0)
    event = batch.to_event({"userId": "1", "date": "2022-09-16 16:02:32", "purposeConsent": "2", "age": "3"})
    meta = event["strmMeta"]
    assert meta["eventContractRef"] == webshop_contract.ref
    assert meta["timestamp"] == 1663344152000
    assert meta["consentLevels"] == [2]
    assert meta["keyLink"] is None and isinstance(meta["nonce"], int)
    assert event["age"] == 3
    assert ConsentConfig(field="c").levels({"c": "[0, 1, 2]"}) == [0, 1, 2]
    assert ConsentConfig(field="c", default=(0,)).levels({"c": ""}) == [0]
    mapped = ConsentConfig.from_dict({"field": "c", "map": {"yes|y": [1, 2], "no": []}, "default": [0]})
    assert mapped.levels({"c": "y"}) == [1, 2] and mapped.levels({"c": "maybe"}) == [0]
    with pytest.raises(EventError, match="consent field"):
        ConsentConfig(field="c").levels({"c": "lots"})


def test_timestamp_formats():
    assert java_to_strptime("yyyy-MM-dd'T'HH:mm:ss.SSSXXX") == "%Y-%m-%dT%H:%M:%S.%f%z"
    amsterdam = TimestampConfig(field="t", format="dd/MM/yyyy HH:mm", timezone="Europe/Amsterdam")
    assert amsterdam.timestamp_ms({"t": "01/07/2023 12:00"}, 0) == 1688205600000
    assert TimestampConfig(field="t", format="epoch_millis").timestamp_ms({"t": "5"}, 0) == 5
    assert TimestampConfig(field="t").timestamp_ms({"t": "2023-01-01T00:00:00+00:00"}, 0) == 1672531200000
    assert TimestampConfig().timestamp_ms({}, 1234) == 1234
    with pytest.raises(EventError, match="does not parse as a timestamp"):
        TimestampConfig(field="t", format="yyyy-MM-dd").timestamp_ms({"t": "yesterday"}, 0)
    with pytest.raises(ValueError, match="unknown time zone"):
        TimestampConfig(field="t", timezone="Mars/Olympus")
