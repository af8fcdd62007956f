"""Turn an event into the bytes and headers of ``POST /event``.

    from driver.serializer import SerializationType, serialize
    body, content_type, schema_ref = serialize(event, SerializationType.AVRO_BINARY)

An event is a dict with ``strmMeta.eventContractRef``, or an object with ``to_dict()`` (the
classes of ``pstream get schema-code``; their ``get_schema()`` gives the Avro schema). For a
dict sent as Avro, the schema comes from the contract (``contracts.avro.avro_schema``).
"""
from __future__ import annotations

import io
from enum import Enum

import fastavro
import orjson


class SerializationType(Enum):
    AVRO_BINARY = 1
    AVRO_JSON = 2   # accepted for compatibility; sent as JSON
    JSON = 3

    @property
    def header(self) -> str:
        return "application/x-avro-binary" if self is SerializationType.AVRO_BINARY else "application/json"


class UnsupportedSerializationTypeException(ValueError):
    pass


_schemas: dict[str, object] = {}


def _parsed_schema(ref: str, event) -> object:
    parsed = _schemas.get(ref)
    if parsed is None:
        getter = getattr(event, "get_schema", None)
        if getter is not None:
            schema = getter()
        else:
            from contracts import load_contract
            from contracts.avro import avro_schema

            schema = avro_schema(load_contract(ref))
        parsed = _schemas[ref] = fastavro.parse_schema(schema)
    return parsed


def event_dict(event) -> dict:
    if isinstance(event, dict):
        return event
    to_dict = getattr(event, "to_dict", None)
    if to_dict is None:
        raise TypeError(f"cannot send a {type(event).__name__}: give a dict or a generated schema class")
    return to_dict()


def serialize(event, serialization_type: SerializationType = SerializationType.AVRO_BINARY) -> tuple[bytes, str, str]:
    """(body, Strm-Serialization-Type, Strm-Schema-Ref) of one event."""
    if not isinstance(serialization_type, SerializationType):
        raise UnsupportedSerializationTypeException(f"unsupported serialization type {serialization_type!r}")
    data = event_dict(event)
    meta = data.get("strmMeta") or {}
    ref = meta.get("eventContractRef")
    if not isinstance(ref, str) or not ref:
        raise ValueError("the event has no strmMeta.eventContractRef")
    if serialization_type is SerializationType.AVRO_BINARY:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, _parsed_schema(ref, event), data)
        return buffer.getvalue(), serialization_type.header, ref
    return orjson.dumps(data), serialization_type.header, ref
