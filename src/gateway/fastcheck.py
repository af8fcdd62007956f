"""A fast yes-or-don't-know pre-check of events, for the gateway's hot path.

    from gateway.fastcheck import compile_fast_check
    fast = compile_fast_check(contract)       # None when the contract needs the full validator
    if fast is None or not fast(event):
        event = EventValidator(contract).check(event)   # exact answer and the 400 text

``fast(event)`` returns True only for events that ``EventValidator.check`` accepts unchanged
(flat contracts without null-handling rules: types, required fields, unknown fields, regexes,
a non-empty key field, a well-formed ``strmMeta``). For anything else it returns False and the
caller asks the full validator, so the answers, messages included, are the validator's own.
A property test (tests/test_gateway_fastcheck.py) holds the two to that.
"""
from __future__ import annotations

import json

from contracts.events import INT32, INT64, MAX_ID_CHARS
from contracts.model import NODE, Contract


def _scalar_check(node_type: str):
    if node_type == "STRING":
        return lambda v: v.__class__ is str
    if node_type == "BOOLEAN":
        return lambda v: v.__class__ is bool
    if node_type == "INTEGER":
        low, high = INT32
        return lambda v: v.__class__ is int and low <= v <= high
    if node_type == "LONG":
        low, high = INT64
        return lambda v: v.__class__ is int and low <= v <= high
    if node_type == "FLOAT":
        return lambda v: v.__class__ is float or v.__class__ is int
    raise ValueError(node_type)


def compile_fast_check(contract: Contract):
    """A function event -> bool (True: certainly valid), or None if the contract is not flat."""
    if contract.null_handling or any(node.type == NODE for node in contract.nodes) or "/" in contract.key_field:
        return None
    regexes: dict[str, list] = {}
    for validation in contract.validations:
        regexes.setdefault(validation.field, []).append(validation.pattern)
    fields = []
    for node in contract.nodes:
        fields.append((node.name, node.required, node.repeated, _scalar_check(node.type),
                       tuple(regexes.get(node.name, ()))))
    known = frozenset(node.name for node in contract.nodes) | {"strmMeta"}
    key_field = contract.key_field
    subject_field = contract.data_subject_field
    dumps = json.dumps

    def fast(event) -> bool:
        if event.__class__ is not dict or not known.issuperset(event):
            return False
        meta = event.get("strmMeta")
        if meta.__class__ is not dict or meta.get("eventContractRef").__class__ is not str:
            return False
        levels = meta.get("consentLevels", [])
        if levels.__class__ is not list:
            return False
        for level in levels:
            if level.__class__ is not int:
                return False
        nonce, timestamp = meta.get("nonce"), meta.get("timestamp")
        if (nonce is not None and nonce.__class__ is not int) or (timestamp is not None and timestamp.__class__ is not int):
            return False
        for name, required, repeated, type_ok, patterns in fields:
            value = event.get(name)
            if value is None:
                if required:
                    return False
                continue
            if repeated:
                if value.__class__ is not list:
                    return False
                for item in value:
                    if not type_ok(item):
                        return False
                    for pattern in patterns:
                        if pattern.fullmatch(item if item.__class__ is str else dumps(item)) is None:
                            return False
            else:
                if not type_ok(value):
                    return False
                for pattern in patterns:
                    if pattern.fullmatch(value if value.__class__ is str else dumps(value)) is None:
                        return False
        key = event.get(key_field)
        if subject_field:
            subject = event.get(subject_field)
            if subject.__class__ is str and len(subject) > MAX_ID_CHARS:
                return False
        return key.__class__ is str and bool(key.strip()) and len(key) <= MAX_ID_CHARS

    return fast
