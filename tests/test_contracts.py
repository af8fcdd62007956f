"""Contracts: the shipped ones load and map to Avro; malformed ones are refused clearly."""
from __future__ import annotations

import textwrap

import fastavro
import pytest
import yaml

from contracts import ContractError, list_contracts, load_contract, parse_contract
from contracts.avro import avro_schema
from tests.conftest import SIMULATOR, WEBSHOP

NESTED = textwrap.dedent("""
    ref: acme/Nested/1.0.0
    schema:
      name: Nested
      nodes:
        - {name: id, type: STRING, required: true}
        - {name: emails, type: STRING, repeated: true}
        - name: addresses
          type: NODE
          repeated: true
          nodes:
            - {name: street, type: STRING}
            - {name: lines, type: STRING, repeated: true}
            - {name: number, type: INTEGER}
        - name: profile
          type: NODE
          nodes:
            - {name: name, type: STRING}
            - {name: score, type: FLOAT}
            - {name: active, type: BOOLEAN}
            - {name: visits, type: LONG}
    keyField: id
    dataSubjectField: id
    fieldMetadata:
      - {fieldName: emails, personalDataConfig: {isPii: true, purposeLevel: 1}}
      - {fieldName: addresses/street, personalDataConfig: {isPii: true, purposeLevel: 2}}
      - {fieldName: addresses/lines, personalDataConfig: {isPii: true, purposeLevel: 2}}
      - {fieldName: profile/name, personalDataConfig: {isPii: true, purposeLevel: 1}}
""")


def nested_contract():
    return parse_contract(yaml.safe_load(NESTED), source="nested.yaml")


def test_shipped_contracts_load_and_map_to_avro():
    refs = list_contracts()
    assert WEBSHOP in refs and SIMULATOR in refs
    for ref in (WEBSHOP, SIMULATOR):
        contract = load_contract(ref)
        schema = fastavro.parse_schema(avro_schema(contract))
        assert schema["fields"][0]["name"] == "strmMeta"


def test_webshop_contract_classification(webshop_contract):
    assert webshop_contract.key_field == "userId"
    assert webshop_contract.data_subject_field == "userId"
    assert webshop_contract.pii == {"userId": 1, "email": 2, "fullName": 2, "phoneNumber": 2, "address": 2}
    assert webshop_contract.node("userId").required
    [validation] = webshop_contract.validations
    assert validation.field == "tshirtSize"
    for size in ("XS", "S", "M", "L", "XL"):
        assert validation.pattern.fullmatch(size)
    assert not validation.pattern.fullmatch("XXL")


def test_nested_and_repeated_pii_is_allowed_and_avro_round_trips():
    contract = nested_contract()
    assert contract.pii == {"emails": 1, "addresses/street": 2, "addresses/lines": 2, "profile/name": 1}
    schema = fastavro.parse_schema(avro_schema(contract))
    event = {"strmMeta": {"eventContractRef": contract.ref, "consentLevels": [1]}, "id": "u1", "emails": ["a@b"],
             "addresses": [{"street": "s", "lines": ["x"], "number": 3}],
             "profile": {"name": "n", "score": 1.5, "active": True, "visits": 2**40}}
    import io
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, event)
    buffer.seek(0)
    back = fastavro.schemaless_reader(buffer, schema)
    assert back["addresses"][0]["lines"] == ["x"] and back["profile"]["visits"] == 2**40


def test_load_by_file_path(tmp_path):
    path = tmp_path / "nested.yaml"
    path.write_text(NESTED)
    assert load_contract(str(path)).ref == "acme/Nested/1.0.0"


BROKEN = [
    ("keyField: id\n", "keyField: nope\n", "field 'nope': keyField names a field that is not in the schema"),
    ("keyField: id\n", "", "'keyField' is missing"),
    ("- {name: id, type: STRING, required: true}", "- {name: id, type: STRING}", "field 'id': the key field must be a required"),
    ("- {name: number, type: INTEGER}", "- {name: number, type: INT}", "schema.nodes[2].nodes[2].type: INT does not fit: enum STRING, BOOLEAN"),
    ("{fieldName: emails, personalDataConfig: {isPii: true, purposeLevel: 1}}",
     "{fieldName: addresses/number, personalDataConfig: {isPii: true, purposeLevel: 1}}",
     "field 'addresses/number': only (repeated) STRING fields can be PII, this one is INTEGER"),
    ("{fieldName: emails, personalDataConfig: {isPii: true, purposeLevel: 1}}",
     "{fieldName: emails, personalDataConfig: {isPii: true}}", "field 'emails': a PII field needs a non-negative"),
    ("{fieldName: emails, personalDataConfig: {isPii: true, purposeLevel: 1}}",
     "{fieldName: profile/nope, personalDataConfig: {isPii: true, purposeLevel: 1}}", "field 'profile/nope'"),
    ("{name: score, type: FLOAT}", "{name: visits, type: FLOAT}", "field 'profile/visits': defined twice"),
    ("keyField: id\n", "keyField: id\nvalidations:\n  - {field: id, type: regex, value: '[unclosed'}\n",
     "field 'id': invalid regex"),
    ("keyField: id\n", "keyField: id\nvalidations:\n  - {field: profile, type: regex, value: 'x'}\n",
     "field 'profile': a regex validation needs a scalar field"),
    ("ref: acme/Nested/1.0.0", "ref: acme/Nested/1.0", "ref: acme/Nested/1.0 does not fit: pattern"),
    ("- {name: id, type: STRING, required: true}", "- {name: 9id, type: STRING, required: true}", "schema.nodes[0].name: 9id does not fit: pattern ^[A-Za-z_][A-Za-z0-9_]*$ (Starts with a letter"),
]


@pytest.mark.parametrize("old,new,message", BROKEN)
def test_malformed_contract_is_refused_naming_file_field_and_problem(tmp_path, old, new, message):
    assert old in NESTED
    path = tmp_path / "broken.yaml"
    path.write_text(NESTED.replace(old, new, 1))
    with pytest.raises(ContractError) as info:
        load_contract(str(path))
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_invalid_yaml_and_unknown_reference(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("schema: [unclosed")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(str(path))
    with pytest.raises(ContractError, match="contract 'acme/None/9.9.9' not found"):
        load_contract("acme/None/9.9.9")


def test_reference_is_taken_from_the_path_when_the_file_has_no_ref(tmp_path, monkeypatch):
    folder = tmp_path / "acme" / "Draft"
    folder.mkdir(parents=True)
    (folder / "1.0.0.yaml").write_text(NESTED.replace("ref: acme/Nested/1.0.0\n", ""))
    monkeypatch.setenv("CONTRACTS_PATH", str(tmp_path))
    assert load_contract("acme/Draft/1.0.0").ref == "acme/Draft/1.0.0"
    assert load_contract(str(folder / "1.0.0.yaml")).ref == "acme/Draft/1.0.0"
