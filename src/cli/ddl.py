"""``pstream ddl athena|bigquery|duckdb CONTRACT --location URI``: external-table DDL for exports.

    pstream ddl athena strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --location s3://bucket/events/ --table events
    pstream ddl bigquery strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --location gs://bucket/events --table shop.events
    pstream ddl duckdb strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --location ./exports/events --table events

The table has ``strmMeta`` as a struct, one column per top-level field, arrays for repeated
fields and structs for NODEs, over newline-delimited JSON (the batch exporters' files):
Athena with ``org.openx.data.jsonserde.JsonSerDe`` (as in the workshop notebook), BigQuery as a
``NEWLINE_DELIMITED_JSON`` external table, DuckDB as a view over ``read_json``.

The DDL starts with SQL comments naming the contract and its PII columns with their purpose
levels, by the project's purpose names where it has them (``pstream purposes create 2
marketing``: ``-- email: PII, purpose 2 (marketing)``; ``--project-dir``).
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


def header(contract: Contract, purposes: dict[int, str] | None = None) -> str:
    """SQL comment lines: the contract and each PII column with its purpose level (and name)."""
    lines = [f"-- pstream: contract {contract.ref}, exported JSONL (one event a line)"]
    if contract.pii:
        lines.append("-- PII columns, encrypted (AES-SIV, a key per data subject and day); a privacy stream "
                     "decrypts one for consent to its purpose:")
        for path, level in contract.pii.items():
            name = (purposes or {}).get(level)
            lines.append(f"--   {path}: PII, purpose {level}" + (f" ({name})" if name else ""))
    return "".join(_comment(line) + "\n" for line in lines)


def _comment(line: str) -> str:
    return "".join(c if c.isprintable() else " " for c in line)   # no line break out of the comment


def athena_ddl(contract: Contract, location: str, table: str | None = None, purposes: dict | None = None) -> str:
    location = location if location.endswith("/") else location + "/"
    columns = ",\n".join(f"  `{n.name}` {athena_type(n)}" for n in _columns(contract))
    return header(contract, purposes) + (f"CREATE EXTERNAL TABLE IF NOT EXISTS `{table or default_table(contract)}` (\n{columns}\n)\n"
            "ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'\n"
            f"LOCATION '{_quote(location)}';\n")


def bigquery_ddl(contract: Contract, location: str, table: str | None = None, purposes: dict | None = None) -> str:
    uri = location if "*" in location or location.endswith((".jsonl", ".json")) else location.rstrip("/") + "/*.jsonl"
    columns = ",\n".join(f"  `{n.name}` {bigquery_type(n)}" for n in _columns(contract))
    name = table or f"pstream.{default_table(contract)}"
    return header(contract, purposes) + (f"CREATE EXTERNAL TABLE IF NOT EXISTS `{name}` (\n{columns}\n)\n"
            f"OPTIONS (format = 'NEWLINE_DELIMITED_JSON', uris = ['{_quote(uri)}']);\n")


def duckdb_ddl(contract: Contract, location: str, table: str | None = None, purposes: dict | None = None) -> str:
    pattern = location if "*" in location or location.endswith((".jsonl", ".json")) else location.rstrip("/") + "/**/*.jsonl"
    columns = ", ".join(f"'{n.name}': '{duckdb_type(n)}'" for n in _columns(contract))
    return header(contract, purposes) + (f'CREATE OR REPLACE VIEW "{table or default_table(contract)}" AS\n'
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
    ddl.add_argument("--project-dir", dest="project_dir", default=None,
                     help="the project whose purpose names the comments use, and whose contracts a reference may "
                     "name (default: $PSTREAM_PROJECT_DIR or ~/.config/pstream)")
    ddl.set_defaults(func=_run)


def _run(args) -> int:
    from contracts import ContractError, load_contract   # the loader (jsonschema): not for --help

    from controlplane.project import Project, ProjectError, default_project_dir

    try:
        project = Project.open(args.project_dir or default_project_dir())
        contract = load_contract(args.contract, [project.contracts_dir()])
    except (ContractError, ProjectError) as exc:
        print(f"pstream ddl: {exc}", file=sys.stderr)
        return 2
    purposes = {p.level: p.name for p in project.purposes.values()}
    sys.stdout.write(GENERATORS[args.dialect](contract, args.location, args.table, purposes))
    return 0
