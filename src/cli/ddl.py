"""``pstream ddl athena|bigquery|duckdb CONTRACT --location URI``: external-table DDL for exports.

    pstream ddl athena strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --location s3://bucket/events/ --table events
    pstream ddl bigquery strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --location gs://bucket/events --table shop.events
    pstream ddl duckdb strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --location ./exports/events --table events

The table has ``strmMeta`` as a struct, one column per top-level field, arrays for repeated
fields and structs for NODEs, over newline-delimited JSON (the batch exporters' files):
Athena with ``org.openx.data.jsonserde.JsonSerDe`` (as in the workshop notebook), BigQuery as a
``NEWLINE_DELIMITED_JSON`` external table, DuckDB as a view over ``read_json``.
"""
from __future__ import annotations

import sys

from cli.main import summary
from contracts import strm_meta
from contracts.model import NODE, Contract, Node

STRM_META = tuple(field.node for field in strm_meta.STRM_META)
DIALECTS = ("athena", "bigquery", "duckdb")

_ATHENA = {"STRING": "string", "INTEGER": "int", "LONG": "bigint", "FLOAT": "double", "BOOLEAN": "boolean"}
_BIGQUERY = {"STRING": "STRING", "INTEGER": "INT64", "LONG": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
_DUCKDB = {"STRING": "VARCHAR", "INTEGER": "INTEGER", "LONG": "BIGINT", "FLOAT": "DOUBLE", "BOOLEAN": "BOOLEAN"}


def _columns(contract: Contract) -> list[Node]:
    return [Node("strmMeta", NODE, nodes=STRM_META), *contract.nodes]


def athena_type(node: Node) -> str:
    if node.type == NODE:
        inner = "struct<" + ",".join(f"{c.name}:{athena_type(c)}" for c in node.nodes) + ">"
    else:
        inner = _ATHENA[node.type]
    return f"array<{inner}>" if node.repeated else inner


def bigquery_type(node: Node) -> str:
    if node.type == NODE:
        inner = "STRUCT<" + ", ".join(f"`{c.name}` {bigquery_type(c)}" for c in node.nodes) + ">"
    else:
        inner = _BIGQUERY[node.type]
    return f"ARRAY<{inner}>" if node.repeated else inner


def duckdb_type(node: Node) -> str:
    if node.type == NODE:
        inner = "STRUCT(" + ", ".join(f'"{c.name}" {duckdb_type(c)}' for c in node.nodes) + ")"
    else:
        inner = _DUCKDB[node.type]
    return f"{inner}[]" if node.repeated else inner


def default_table(contract: Contract) -> str:
    return contract.name.lower()


def athena_ddl(contract: Contract, location: str, table: str | None = None) -> str:
    location = location if location.endswith("/") else location + "/"
    columns = ",\n".join(f"  `{n.name}` {athena_type(n)}" for n in _columns(contract))
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table or default_table(contract)}` (\n{columns}\n)\n"
            "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n"
            f"LOCATION '{_quote(location)}';\n")


def bigquery_ddl(contract: Contract, location: str, table: str | None = None) -> str:
    uri = location if "*" in location or location.endswith((".jsonl", ".json")) else location.rstrip("/") + "/*.jsonl"
    columns = ",\n".join(f"  `{n.name}` {bigquery_type(n)}" for n in _columns(contract))
    name = table or f"pstream.{default_table(contract)}"
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS `{name}` (\n{columns}\n)\n"
            f"OPTIONS (format = 'NEWLINE_DELIMITED_JSON', uris = ['{_quote(uri)}']);\n")


def duckdb_ddl(contract: Contract, location: str, table: str | None = None) -> str:
    pattern = location if "*" in location or location.endswith((".jsonl", ".json")) else location.rstrip("/") + "/**/*.jsonl"
    columns = ", ".join(f"'{n.name}': '{duckdb_type(n)}'" for n in _columns(contract))
    return (f'CREATE OR REPLACE VIEW "{table or default_table(contract)}" AS\n'
            f"SELECT * FROM read_json('{_quote(pattern)}', format = 'newline_delimited',\n"
            f"  columns = {{{columns}}});\n")


def _quote(text: str) -> str:
    return text.replace("'", "''")


GENERATORS = {"athena": athena_ddl, "bigquery": bigquery_ddl, "duckdb": duckdb_ddl}


def register(subparsers) -> None:
    ddl = subparsers.add_parser("ddl", help=summary("ddl"),
                                description=__doc__.split("\n\n")[0])
    ddl.add_argument("dialect", choices=DIALECTS, help="SQL engine")
    ddl.add_argument("contract", help="contract reference or YAML path")
    ddl.add_argument("--location", required=True,
                     help="where the JSONL files are: s3://bucket/prefix/ (Athena), gs://bucket/prefix (BigQuery), "
                          "a local directory or glob (DuckDB)")
    ddl.add_argument("--table", default=None, help="table name (default: the contract's name in lower case)")
    ddl.set_defaults(func=_run)


def _run(args) -> int:
    from contracts import ContractError, load_contract   # the loader (jsonschema): not for --help

    try:
        contract = load_contract(args.contract)
    except ContractError as exc:
        print(f"pstream ddl: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(GENERATORS[args.dialect](contract, args.location, args.table))
    return 0
