"""ODCS v3: every shipped contract survives export and import exactly, exported files validate
with the standard's pydantic model and its JSON Schema, a file without our custom properties
imports as a DRAFT with the wizard's proposals, and `pstream contracts export/import` write them."""
from __future__ import annotations

import json
import re
from importlib import resources

import jsonschema
import pytest
import yaml
from hypothesis import given, settings, strategies as st
from open_data_contract_standard.model import OpenDataContractStandard

from cli.main import main
from conftest import WEBSHOP
from contracts import list_contracts, load_contract, parse_contract
from contracts.loader import ContractError
from contracts.odcs import export_odcs, import_odcs, to_odcs
from contracts.regex import compile_regex
from contracts.writer import contract_data, contract_yaml

ODCS_SCHEMA = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())


def standard_accepts(text: str):
    """Validation by the standard's own artefacts only: its JSON Schema and its model."""
    data = yaml.safe_load(text)
    jsonschema.validators.validator_for(ODCS_SCHEMA)(ODCS_SCHEMA).validate(data)
    return OpenDataContractStandard.from_string(text)


@pytest.mark.parametrize("ref", list_contracts())
def test_every_shipped_contract_round_trips_exactly(ref):
    contract = load_contract(ref)
    text = export_odcs(contract)
    model = standard_accepts(text)
    assert model.version == contract.version and model.tenant == contract.handle and model.kind == "DataContract"
    result = import_odcs(text, source="exported.odcs.yaml")
    assert result.ours and result.notes == []
    assert result.contract == contract                              # import(export(c)) == c
    assert contract_data(result.contract) == contract_data(contract)
    assert result.contract.state == contract.state == "ACTIVE"


RICH = {
    "ref": "acme/Rich/2.3.4",
    "state": "IN_REVIEW",
    "schema": {"name": "RichEvent", "nodes": [
        {"name": "id", "type": "STRING", "required": True, "doc": "event id"},
        {"name": "account", "type": "NODE", "required": True, "nodes": [
            {"name": "holder", "type": "STRING", "required": True},
            {"name": "emails", "type": "STRING", "repeated": True},
            {"name": "since", "type": "LONG"}]},
        {"name": "lines", "type": "NODE", "repeated": True, "nodes": [
            {"name": "sku", "type": "STRING"}, {"name": "qty", "type": "INTEGER"}, {"name": "price", "type": "FLOAT"}]},
        {"name": "flag", "type": "BOOLEAN"},
        {"name": "session", "type": "STRING"},
        {"name": "code", "type": "STRING"},
        {"name": "count", "type": "INTEGER"},
    ]},
    "keyField": "account/holder",
    "dataSubjectField": "session",
    "fieldMetadata": [
        {"fieldName": "account/holder", "personalDataConfig": {"isPii": True, "purposeLevel": 0, "isQuasiId": True}},
        {"fieldName": "account/emails", "personalDataConfig": {"isPii": True, "purposeLevel": 4}},
        {"fieldName": "lines/sku", "personalDataConfig": {"isQuasiId": True}},
        {"fieldName": "flag", "nullHandlingConfig": {"type": "DEFAULT_VALUE", "defaultValue": False}},
        {"fieldName": "session", "nullHandlingConfig": {"type": "DROP_RECORD"}},
    ],
    "validations": [
        {"field": "code", "type": "regex", "value": "[A-Z]{3}"},                # not anchored: written apart
        {"field": "code", "type": "regex", "value": "^A"},                      # a second one on the field
        {"field": "account/emails", "type": "regex", "value": "^[^@]+@[^@]+$"},  # on the items
        {"field": "count", "type": "regex", "value": "[0-9]{1,3}"},             # on a number
        {"field": "lines/sku", "type": "regex", "value": "^(A|B)$"},
    ],
}


def test_a_contract_using_every_feature_round_trips_exactly():
    contract = parse_contract(RICH)
    text = export_odcs(contract)
    standard_accepts(text)
    doc = yaml.safe_load(text)
    code = next(p for p in doc["schema"][0]["properties"] if p["name"] == "code")
    assert code["logicalTypeOptions"]["pattern"] == "^(?:[A-Z]{3})$"        # ODCS patterns search: anchored
    assert {"property": "pstream.patterns", "value": ["[A-Z]{3}", "^A"]} in code["customProperties"]
    emails = doc["schema"][0]["properties"][1]["properties"][1]
    assert emails["logicalType"] == "array" and emails["items"]["logicalTypeOptions"]["pattern"] == "^[^@]+@[^@]+$"
    assert import_odcs(text).contract == contract
    assert import_odcs(text).contract.state == "IN_REVIEW" and doc["status"] == "proposed"


_NAMES = st.sampled_from(["a", "b", "c", "userId", "email", "x_1", "_y"])
_SCALARS = st.sampled_from(["STRING", "BOOLEAN", "FLOAT", "INTEGER", "LONG"])


@st.composite
def node_lists(draw, depth=2):
    names = draw(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
    out = []
    for name in names:
        node = {"name": name}
        if depth and draw(st.integers(0, 4)) == 0:
            node.update(type="NODE", nodes=draw(node_lists(depth - 1)))
        else:
            node["type"] = draw(_SCALARS)
        for flag in ("repeated", "required"):
            if draw(st.booleans()):
                node[flag] = True
        if draw(st.integers(0, 3)) == 0:
            node["doc"] = draw(st.text(max_size=20))
        out.append(node)
    return out


def _paths(nodes, parent=""):
    for node in nodes:
        yield f"{parent}{node['name']}", node
        yield from _paths(node.get("nodes", []), f"{parent}{node['name']}/")


@st.composite
def contracts(draw):
    nodes = draw(node_lists()) + [{"name": "key", "type": "STRING", "required": True}]
    paths = dict(_paths(nodes))
    strings = [p for p, n in paths.items() if n["type"] == "STRING"]
    scalars = [p for p, n in paths.items() if n["type"] != "NODE"]
    metadata = []
    for path in draw(st.lists(st.sampled_from(list(paths)), unique=True, max_size=4)):
        personal = {}
        if path in strings and draw(st.booleans()):
            personal.update(isPii=True, purposeLevel=draw(st.integers(0, 5)))
        if draw(st.booleans()):
            personal["isQuasiId"] = True
        entry = {"fieldName": path}
        if personal:
            entry["personalDataConfig"] = personal
        if draw(st.booleans()):
            entry["nullHandlingConfig"] = draw(st.sampled_from(
                [{"type": "DROP_RECORD"}, {"type": "DEFAULT_VALUE", "defaultValue": "-"},
                 {"type": "DEFAULT_VALUE", "defaultValue": 0}]))
        if len(entry) > 1:
            metadata.append(entry)
    regexes = st.sampled_from(["^(S|M)$", "[a-z]+", "x|y", "^a", ".*"])
    validations = [{"field": path, "type": "regex", "value": draw(regexes)}
                   for path in draw(st.lists(st.sampled_from(scalars), max_size=3))]
    data = {"ref": "h/n/1.0.0", "state": draw(st.sampled_from(["DRAFT", "ACTIVE", "ARCHIVED"])),
            "schema": {"name": draw(st.sampled_from(["n", "Other"])), "nodes": nodes}, "keyField": "key"}
    subject = draw(st.sampled_from([None, *strings]))
    if subject is not None and not paths[subject].get("repeated"):
        data["dataSubjectField"] = subject
    if metadata:
        data["fieldMetadata"] = metadata
    if validations:
        data["validations"] = validations
    if draw(st.booleans()):
        data["retention"] = {"policy": draw(st.sampled_from(["marketing", "short-30"]))}
    try:
        return parse_contract(data)
    except ContractError:
        from hypothesis import reject
        reject()


def test_docs_with_yaml_line_break_characters_round_trip():
    """NEL and the Unicode separators would be folded by a YAML reader if written raw (hypothesis found it)."""
    contract = parse_contract({"ref": "h/n/1.0.0", "schema": {"name": "n", "nodes": [
        {"name": "key", "type": "STRING", "required": True, "doc": "a\x85b\u2028c\u2029d"}]}, "keyField": "key"})
    assert import_odcs(export_odcs(contract)).contract == contract


@settings(max_examples=40, deadline=None)
@given(contract=contracts())
def test_round_trip_of_generated_contracts(contract):
    text = export_odcs(contract)
    assert import_odcs(text).contract == contract
    assert parse_contract(yaml.safe_load(contract_yaml(contract))) == contract    # the writer loses nothing


FOREIGN = """
apiVersion: v3.0.2
kind: DataContract
id: 53581432-6c55-4ba2-a65f-72344a91553a
name: orders
version: 1.2.0
tenant: acme
status: active
servers:
  - server: prod
    type: postgres
    host: db.example.org
    port: 5432
    database: shop
    schema: public
schema:
  - name: orders
    logicalType: object
    physicalName: orders_v1
    properties:
      - name: order_id
        logicalType: string
        required: true
        unique: true
        primaryKey: true
      - name: customer_id
        logicalType: string
        required: true
      - name: contact
        logicalType: string
        examples: ["ann@example.org", "bob@example.com"]
      - name: first_name
        logicalType: string
      - name: client_ip
        logicalType: string
      - name: notes
        logicalType: string
        classification: pii
      - name: created_at
        logicalType: timestamp
      - name: amount
        logicalType: number
        logicalTypeOptions: {minimum: 0}
      - name: count
        logicalType: integer
        physicalType: BIGINT
      - name: age
        logicalType: integer
      - name: status
        logicalType: string
        logicalTypeOptions: {pattern: "open|closed"}
      - name: tags
        logicalType: array
        items: {logicalType: string}
"""


def test_a_file_without_our_properties_imports_as_a_draft_with_the_wizards_proposals():
    result = import_odcs(FOREIGN, source="orders.odcs.yaml")
    contract = result.contract
    assert not result.ours and contract.state == "DRAFT" and contract.ref == "acme/orders/1.2.0"
    assert contract.key_field == contract.data_subject_field == "customer_id"
    assert contract.pii == {"customer_id": 1, "contact": 2, "first_name": 2, "client_ip": 1, "notes": 2}
    assert contract.quasi_ids == ("age",)
    assert [(n.name, n.type) for n in contract.nodes if n.name in ("created_at", "amount", "count", "age")] == [
        ("created_at", "STRING"), ("amount", "FLOAT"), ("count", "LONG"), ("age", "INTEGER")]
    assert contract.node("tags").repeated and contract.node("tags").type == "STRING"
    status = next(v for v in contract.validations if v.field == "status").pattern   # a search, as ODCS means
    assert status.fullmatch("is open now") and status.fullmatch("closed") and not status.fullmatch("pending")
    assert "email address (contact data): 100% of 2 values look like one" in result.reasons["contact"]
    assert "classification 'pii'" in result.reasons["notes"]
    notes = "\n".join(result.notes)
    for left_out in ("not carried over: servers", "field 'order_id': not carried over: primaryKey, unique",
                     "field 'amount': not carried over: logicalTypeOptions.minimum",
                     "field 'created_at': timestamp is read as STRING", "physicalName"):
        assert left_out in notes


def test_import_and_wizard_share_one_set_of_rules(tmp_path):
    """The shipped contract's fields, described by someone else's ODCS file (no classification):
    the import proposes the same key field and PII as the wizard does from example_input.csv."""
    shipped = load_contract(WEBSHOP)
    doc = to_odcs(shipped)
    for prop in doc["schema"][0]["properties"]:
        prop.pop("customProperties", None)
        prop.pop("classification", None)
        prop.pop("description", None)
    contract = import_odcs(yaml.safe_dump(doc)).contract
    assert contract.key_field == shipped.key_field and contract.pii == shipped.pii
    assert contract.quasi_ids == shipped.quasi_ids and contract.state == "DRAFT"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["schema"][0]["properties"][0].update(colour="red"), "schema[0].properties[0]"),
    (lambda d: d.update(apiVersion="v2.2.2"), "only ODCS v3"),
    (lambda d: d["schema"][0]["properties"][0].update(name="first name"), "field 'first name'"),
    (lambda d: d["schema"][0]["properties"].append({"name": "m", "logicalType": "map", "map": {
        "key": {"logicalType": "string"}, "value": {"logicalType": "string"}}}), "a map has no contract type"),
    (lambda d: d["schema"].append({"name": "other"}), "choose one schema object"),
    (lambda d: d.pop("tenant"), "give one (--ref)"),
    (lambda d: d["schema"][0]["properties"][2].update(logicalTypeOptions={"pattern": "(?=x)"}), "invalid regex"),
])
def test_bad_odcs_files_are_refused_with_the_reason(change, message):
    doc = yaml.safe_load(FOREIGN)
    change(doc)
    with pytest.raises(ContractError, match=re.escape(message)):
        import_odcs(yaml.safe_dump(doc), source="bad.odcs.yaml")


def test_odcs_files_are_read_as_strict_yaml():
    with pytest.raises(ContractError, match="anchors"):
        import_odcs("a: &x 1\nb: *x\n")


def test_export_and_import_commands(tmp_path, capsys):
    odcs, back = tmp_path / "shop.odcs.yaml", tmp_path / "shop.yaml"
    assert main(["contracts", "export", WEBSHOP, "--format", "odcs", "-o", str(odcs)]) == 0
    standard_accepts(odcs.read_text())
    assert main(["contracts", "export", WEBSHOP, "-o", str(odcs)]) == 2          # exists: --force
    assert "--force" in capsys.readouterr().err
    assert main(["contracts", "import", str(odcs), "-o", str(back)]) == 0
    err = capsys.readouterr().err
    assert "state DRAFT" in err and "exported by pstream" in err
    imported, shipped = load_contract(str(back)), load_contract(WEBSHOP)
    assert imported.state == "DRAFT"                                          # reviewed before it is used
    assert contract_data(imported) == dict(contract_data(shipped), state="DRAFT")
    foreign = tmp_path / "orders.odcs.yaml"
    foreign.write_text(FOREIGN)
    assert main(["contracts", "import", str(foreign), "--ref", "acme/Orders/1.0.0", "--key-field", "order_id"]) == 0
    out = capsys.readouterr()
    contract = parse_contract(yaml.safe_load(out.out))
    assert contract.ref == "acme/Orders/1.0.0" and contract.key_field == "order_id"
    assert "# contact: email address" in out.out and "not carried over: servers" in out.err
    assert main(["contracts", "import", str(tmp_path / "missing.yaml")]) == 2
    assert main(["contracts", "export", "acme/Nothing/1.0.0"]) == 2
    assert "not found" in capsys.readouterr().err


def test_exported_patterns_mean_what_the_contract_means():
    """An ODCS consumer searches with the pattern; the export anchors it so that the same values pass."""
    contract = parse_contract(RICH)
    doc = to_odcs(contract)
    code = next(p for p in doc["schema"][0]["properties"] if p["name"] == "code")
    searched = code["logicalTypeOptions"]["pattern"]
    for value in ("ABC", "xABCx", "AB", "ABCD"):
        assert bool(compile_regex(f"(?s:.*)(?:{searched})(?s:.*)").fullmatch(value)) == \
            bool(compile_regex("[A-Z]{3}").fullmatch(value))
