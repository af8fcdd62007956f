"""`get schema-code` (zip, classes, conversion, Avro) and `ddl` (sqlglot parses; DuckDB reads exports)."""
from __future__ import annotations

import importlib
import io
import json
import sys
import zipfile

import duckdb
import fastavro
import orjson
import pytest
import sqlglot
from sqlglot import exp

from cli.ddl import athena_ddl, bigquery_ddl, duckdb_ddl
from cli.main import main
from cli.schema_code import build_zip, package_name
from contracts import load_contract
from contracts.avro import avro_schema
from gateway_helpers import WEBSHOP

NESTED_YAML = """ref: acme/Shop/2.0.0
schema:
  name: Shop
  nodes:
    - {name: id, type: STRING, required: true}
    - {name: tags, type: STRING, repeated: true}
    - {name: scores, type: FLOAT, repeated: true}
    - {name: active, type: BOOLEAN}
    - {name: total, type: LONG}
    - name: address
      type: NODE
      nodes:
        - {name: street, type: STRING}
        - {name: geo, type: NODE, nodes: [{name: lat, type: FLOAT}, {name: lon, type: FLOAT}]}
    - name: lines
      type: NODE
      repeated: true
      nodes: [{name: sku, type: STRING}, {name: qty, type: INTEGER}]
keyField: id
fieldMetadata:
  - {fieldName: address/street, personalDataConfig: {isPii: true, purposeLevel: 1}}
"""


@pytest.fixture
def nested_contract(tmp_path):
    path = tmp_path / "contracts" / "acme" / "Shop" / "2.0.0.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(NESTED_YAML)
    return load_contract(str(path))


def load_generated(tmp_path, contract):
    """Unzip the generated package and import it (what `make install` installs)."""
    name, data = build_zip(contract)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(tmp_path / "gen")
    folder = tmp_path / "gen" / name[: -len(".zip")]
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(package_name(contract)), folder
    finally:
        sys.path.remove(str(folder))


def test_schema_code_zip_has_the_notebook_layout(tmp_path):
    assert main(["get", "schema-code", WEBSHOP, "--language", "python", "--output-dir", str(tmp_path)]) == 0
    path = tmp_path / "python-avro-PrivacyEngineeringWorkshop-1.0.0.zip"
    names = zipfile.ZipFile(path).namelist()
    folder = "python-avro-PrivacyEngineeringWorkshop-1.0.0/"
    for expected in ("README.md", "setup.py", "Makefile", "requirements.txt", "requirements-dev.txt", "schema/schema.avsc",
                     f"{package_name(load_contract(WEBSHOP))}/__init__.py"):
        assert folder + expected in names
    schema = json.loads(zipfile.ZipFile(path).read(folder + "schema/schema.avsc"))
    assert schema == avro_schema(load_contract(WEBSHOP))
    assert main(["get", "schema-code", WEBSHOP, "--language", "java", "--output-dir", str(tmp_path)]) == 2


def test_generated_class_converts_csv_text_and_round_trips_through_avro(tmp_path):
    contract = load_contract(WEBSHOP)
    module, _ = load_generated(tmp_path, contract)
    event = module.PrivacyEngineeringWorkshop()
    event.strmMeta.eventContractRef = WEBSHOP
    event.strmMeta.consentLevels = [2]
    event.transactionId = "1"
    event.userId = "42"
    event.items = "[11217, 18090]"       # what pandas gives for the CSV column
    event.age = "31"
    assert event.items == [11217, 18090] and event.age == 31
    with pytest.raises(ValueError):
        event.items = "not a list"
    with pytest.raises(AttributeError):
        event.itemz = [1]
    buffer = io.BytesIO()
    schema = fastavro.parse_schema(module.PrivacyEngineeringWorkshop.get_schema())
    fastavro.schemaless_writer(buffer, schema, event.to_dict())
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, fastavro.parse_schema(avro_schema(contract)))
    assert decoded["items"] == [11217, 18090] and decoded["strmMeta"]["consentLevels"] == [2]


def test_generated_classes_for_nested_and_repeated_records(tmp_path, nested_contract):
    module, _ = load_generated(tmp_path, nested_contract)
    shop = module.Shop(id="s1", tags='["a", "b"]', total="12")
    shop.address = {"street": "Main 1", "geo": {"lat": 1.5, "lon": "2"}}
    shop.lines = [{"sku": "x", "qty": "3"}]
    data = shop.to_dict()
    assert data["strmMeta"]["eventContractRef"] == "acme/Shop/2.0.0"
    assert data["tags"] == ["a", "b"] and data["total"] == 12
    assert data["address"] == {"street": "Main 1", "geo": {"lat": 1.5, "lon": 2.0}}
    assert data["lines"] == [{"sku": "x", "qty": 3}]
    fastavro.schemaless_writer(io.BytesIO(), fastavro.parse_schema(module.Shop.get_schema()), data)


# ------------------------------------------------------------------- DDL
NOTEBOOK_ATHENA_COLUMNS = {
    "transactionId": "string", "userId": "string", "email": "string", "age": "int", "tshirtSize": "string",
    "transactionAmount": "int", "items": "array<int>", "totalItems": "int", "purposeConsent": "int",
    "fullName": "string", "phoneNumber": "string", "address": "string",
}


@pytest.mark.parametrize("dialect", ["athena", "hive"])
def test_athena_ddl_parses_and_matches_the_notebook(dialect):
    ddl = athena_ddl(load_contract(WEBSHOP), "s3://bucket/path/to/data", "events")
    tree = sqlglot.parse_one(ddl, read=dialect, error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Create) and tree.args.get("exists")
    assert "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'" in ddl
    assert "LOCATION 's3://bucket/path/to/data/'" in ddl
    assert ("`strmMeta` struct<eventContractRef:string,nonce:int,timestamp:bigint,keyLink:string,"
            "billingId:string,consentLevels:array<int>>") in ddl
    for column, kind in NOTEBOOK_ATHENA_COLUMNS.items():
        assert f"`{column}` {kind}," in ddl or f"`{column}` {kind}\n" in ddl
    columns = [c.name for c in tree.this.expressions]
    assert columns[0] == "strmMeta" and len(columns) == 14


def test_nested_contract_ddl_in_every_dialect(nested_contract):
    athena = athena_ddl(nested_contract, "s3://b/p/")
    assert "`address` struct<street:string,geo:struct<lat:double,lon:double>>" in athena
    assert "`lines` array<struct<sku:string,qty:int>>" in athena
    sqlglot.parse_one(athena, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
    bigquery = bigquery_ddl(nested_contract, "gs://b/p", "ds.shop")
    assert "`lines` ARRAY<STRUCT<`sku` STRING, `qty` INT64>>" in bigquery
    tree = sqlglot.parse_one(bigquery, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Create)
    assert "NEWLINE_DELIMITED_JSON" in bigquery and "gs://b/p/*.jsonl" in bigquery


def test_bigquery_ddl_parses():
    ddl = bigquery_ddl(load_contract(WEBSHOP), "gs://bucket/events", "shop.events")
    tree = sqlglot.parse_one(ddl, read="bigquery", error_level=sqlglot.ErrorLevel.RAISE)
    assert isinstance(tree, exp.Create)
    assert "`items` ARRAY<INT64>" in ddl and "`strmMeta` STRUCT<" in ddl


def test_duckdb_ddl_reads_exported_jsonl_files(tmp_path, nested_contract):
    exports = tmp_path / "exports" / "events"
    exports.mkdir(parents=True)
    events = []
    for i in range(25):
        events.append({"strmMeta": {"eventContractRef": WEBSHOP, "nonce": i + 1, "timestamp": 1673808342405 + i,
                                    "keyLink": f"k-{i}", "billingId": None, "consentLevels": [i % 3]},
                       "transactionId": str(i), "userId": "AWcF7Cl5mCYJ", "email": "AWcF", "age": 20 + i,
                       "tshirtSize": "L", "transactionAmount": i, "items": [i, i + 1], "totalItems": 2,
                       "date": "2022-08-13 18:43:59", "purposeConsent": i % 3, "fullName": "x", "phoneNumber": "y",
                       "address": "z"})
    (exports / "2024-01-01T00:00:00-stream-a---0.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[:10]))
    (exports / "sub").mkdir()
    (exports / "sub" / "2024-01-01T00:01:00-stream-a---0.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events[10:]))
    con = duckdb.connect()
    con.execute(duckdb_ddl(load_contract(WEBSHOP), str(exports), "events"))
    rows = con.execute('SELECT "transactionId", strmMeta.keyLink, strmMeta.consentLevels, items, age '
                       'FROM events ORDER BY CAST("transactionId" AS INTEGER)').fetchall()
    assert len(rows) == 25
    assert rows[3] == ("3", "k-3", [0], [3, 4], 23)
    # nested structs and arrays too
    nested_dir = tmp_path / "nested"
    nested_dir.mkdir()
    (nested_dir / "a.jsonl").write_bytes(orjson.dumps({
        "strmMeta": {"eventContractRef": "acme/Shop/2.0.0", "consentLevels": []}, "id": "s1",
        "address": {"street": "Main", "geo": {"lat": 1.0, "lon": 2.0}}, "lines": [{"sku": "x", "qty": 3}]}) + b"\n")
    con.execute(duckdb_ddl(nested_contract, str(nested_dir), "shop"))
    assert con.execute("SELECT address.geo.lon, lines[1].qty FROM shop").fetchall() == [(2.0, 3)]


def test_ddl_command_prints_to_stdout(capsys):
    assert main(["ddl", "athena", WEBSHOP, "--location", "s3://b/p/", "--table", "events"]) == 0
    out = capsys.readouterr().out
    comments, _, ddl = out.partition("CREATE ")   # SQL comments first: the contract, PII columns and purposes
    assert ddl.startswith("EXTERNAL TABLE IF NOT EXISTS `events`")
    assert all(line.startswith("-- ") for line in comments.splitlines()) and "--   email: PII, purpose 2" in comments
    assert main(["ddl", "duckdb", "acme/Nope/1.0.0", "--location", "x"]) == 2
