"""Map a contract to an Avro record schema with the ``strmMeta`` record first.

    from contracts import load_contract
    from contracts.avro import avro_schema
    import fastavro
    schema = avro_schema(load_contract("strmprivacy/example/1.5.0"))
    parsed = fastavro.parse_schema(schema)

Optional fields become ``["null", T]`` with default null; repeated fields are arrays (optional
ones default to null); NODEs are nested records named after their path. PII fields are STRING,
so the same schema describes events before and after encryption.
"""
from __future__ import annotations

import re

from contracts.model import NODE, Contract, Node
from contracts.strm_meta import STRM_META

AVRO_TYPES = {"STRING": "string", "BOOLEAN": "boolean", "FLOAT": "double", "INTEGER": "int", "LONG": "long"}


def namespace(contract: Contract) -> str:
    """An Avro namespace from the reference, e.g. ``strmprivacy.example.v1_5_0``."""
    handle = re.sub(r"[^A-Za-z0-9_]", "_", contract.handle)
    return f"{handle}.{contract.name}.v{contract.version.replace('.', '_')}"


def strm_meta_schema() -> dict:
    """The ``StrmMeta`` record, from strmMeta's one definition (``contracts.strm_meta``)."""
    fields = []
    for meta in STRM_META:
        avro_type = AVRO_TYPES[meta.type]
        if meta.repeated:
            fields.append({"name": meta.name, "type": {"type": "array", "items": avro_type}, "default": []})
        elif meta.required:
            fields.append({"name": meta.name, "type": avro_type})
        else:
            fields.append({"name": meta.name, "type": ["null", avro_type], "default": None})
    return {"type": "record", "name": "StrmMeta", "fields": fields}


def _field(node: Node, path: str) -> dict:
    if node.type == NODE:
        record_name = "".join(part[:1].upper() + part[1:] for part in path.split("/"))
        item_type = {"type": "record", "name": record_name, "fields": [_field(c, f"{path}/{c.name}") for c in node.nodes]}
    else:
        item_type = AVRO_TYPES[node.type]
    avro_type = {"type": "array", "items": item_type} if node.repeated else item_type
    field = {"name": node.name}
    if node.doc:
        field["doc"] = node.doc
    if node.required:
        field["type"] = avro_type
    else:
        field["type"] = ["null", avro_type]
        field["default"] = None
    return field


def avro_schema(contract: Contract) -> dict:
    """The Avro record schema (as a dict) of events on this contract."""
    return {
        "type": "record",
        "name": contract.name,
        "namespace": namespace(contract),
        "doc": f"Events on data contract {contract.ref}",
        "fields": [{"name": "strmMeta", "type": strm_meta_schema()}]
        + [_field(node, node.name) for node in contract.nodes],
    }
