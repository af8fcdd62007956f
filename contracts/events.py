"""Check events against a contract, and convert text rows (CSV) to the contract's types.

    from contracts import load_contract
    from contracts.events import EventValidator, EventError, coerce_row

    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
    validator = EventValidator(contract)
    event = coerce_row(contract, {"userId": "17", "items": "[1, 2]", ...})   # text -> types
    try:
        event = validator.check(event)          # may fill DEFAULT_VALUE fields
    except EventError as err:
        err.reason                              # safe: never contains the value
        err.gateway_message(contract.ref)       # the reference's HTTP 400 text (has the value)

An ``EventError`` keeps the offending value only for the gateway's 400 answer; dead letters and
logs use ``reason``, which names the field and the problem and never copies data.
"""
from __future__ import annotations

import ast
import json

from contracts.model import NODE, Contract, Node

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
_MISSING = object()


class EventError(ValueError):
    """An event that does not fit its contract."""

    def __init__(self, field: str, problem: str, value=_MISSING, regex: str | None = None):
        self.field = field
        self.problem = problem
        self._value = value
        self.regex = regex
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """What is wrong, without the value: safe for dead letters and logs."""
        return f"field '{self.field}': {self.problem}" if self.field else self.problem

    def gateway_message(self, ref: str) -> str:
        """The text of the reference gateway's HTTP 400 answer."""
        if self.regex is not None:
            return (
                f"Field: '{self.field}' in event with schema: '{ref}' with value: "
                f"'{self._value}' doesn't match regex: '{self.regex}'"
            )
        if self.field:
            return f"Field: '{self.field}' in event with schema: '{ref}' {self.problem}"
        return f"Event with schema: '{ref}': {self.problem}"


def _type_ok(node_type: str, value) -> bool:
    if node_type == "STRING":
        return isinstance(value, str)
    if node_type == "BOOLEAN":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if node_type == "INTEGER":
        return isinstance(value, int) and INT32[0] <= value <= INT32[1]
    if node_type == "LONG":
        return isinstance(value, int) and INT64[0] <= value <= INT64[1]
    if node_type == "FLOAT":
        return isinstance(value, (int, float))
    return isinstance(value, dict)  # NODE


def _check_meta(meta) -> None:
    if not isinstance(meta, dict):
        raise EventError("strmMeta", "is missing or not an object")
    if not isinstance(meta.get("eventContractRef"), str):
        raise EventError("strmMeta/eventContractRef", "is missing")
    levels = meta.get("consentLevels", [])
    if not isinstance(levels, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in levels):
        raise EventError("strmMeta/consentLevels", "must be a list of integers")
    for name in ("nonce", "timestamp"):
        value = meta.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise EventError(f"strmMeta/{name}", "must be an integer")


class EventValidator:
    """Checks events against one contract: types, required fields, key field, regexes.

    ``check`` returns the event (with DEFAULT_VALUE fields filled in) or raises EventError.
    """

    def __init__(self, contract: Contract):
        self.contract = contract
        self._regexes = {}
        for validation in contract.validations:
            self._regexes.setdefault(validation.field, []).append(validation)
        self._nulls = {n.field: n for n in contract.null_handling}
        self._key_path = contract.key_field.split("/")

    def check(self, event: dict) -> dict:
        if not isinstance(event, dict):
            raise EventError("", "an event must be a JSON object")
        _check_meta(event.get("strmMeta"))
        event = self._check_nodes(event, self.contract.nodes, "", top=True)
        key = event
        for part in self._key_path:
            key = key.get(part) if isinstance(key, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise EventError(self.contract.key_field, "is the key field and must not be empty")
        return event

    def _check_nodes(self, record: dict, nodes: tuple[Node, ...], parent: str, top: bool = False) -> dict:
        known = {n.name for n in nodes}
        for name in record:
            if name not in known and not (top and name == "strmMeta"):
                raise EventError(f"{parent}{name}", "is not in the contract")
        out = None
        for node in nodes:
            path = f"{parent}{node.name}"
            value = record.get(node.name)
            if value is None:
                nulls = self._nulls.get(path)
                if nulls is not None and nulls.action == "DEFAULT_VALUE":
                    out = out or dict(record)
                    out[node.name] = value = nulls.default
                elif nulls is not None or node.required:
                    raise EventError(path, "is required but missing")
                if value is None:
                    continue
            values = value if node.repeated else (value,)
            if node.repeated and not isinstance(value, list):
                raise EventError(path, "must be a list (the field is repeated)")
            for item in values:
                if not _type_ok(node.type, item):
                    raise EventError(path, f"has the wrong type: expected {node.type}")
            if node.type == NODE:
                checked = [self._check_nodes(item, node.nodes, f"{path}/") for item in values]
                if any(c is not i for c, i in zip(checked, values)):
                    out = out or dict(record)
                    out[node.name] = checked if node.repeated else checked[0]
            for validation in self._regexes.get(path, ()):
                for item in values:
                    text = item if isinstance(item, str) else json.dumps(item)
                    if validation.pattern.fullmatch(text) is None:
                        raise EventError(path, f"doesn't match regex '{validation.regex}'", item, validation.regex)
        return out if out is not None else record


def _convert_scalar(node_type: str, text: str):
    if node_type == "STRING":
        return text
    if node_type in ("INTEGER", "LONG"):
        return int(text.strip())
    if node_type == "FLOAT":
        return float(text.strip())
    if node_type == "BOOLEAN":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(text)
    raise ValueError(node_type)


def _parse_structured(text: str):
    """A list or object from its text form: JSON, or Python's repr (single quotes)."""
    try:
        return json.loads(text)
    except ValueError:
        return ast.literal_eval(text)


def coerce_value(node: Node, value, path: str):
    """Convert one text value to the node's type; EventError (without the value) if it cannot."""
    if value is None or (value == "" and (node.type != "STRING" or node.repeated)):
        return None
    try:
        if node.repeated or node.type == NODE:
            parsed = _parse_structured(value) if isinstance(value, str) else value
            if node.repeated and not isinstance(parsed, list):
                raise ValueError("not a list")
            items = parsed if node.repeated else [parsed]
            converted = [_coerce_item(node, item, path) for item in items]
            return converted if node.repeated else converted[0]
        return _convert_scalar(node.type, value) if isinstance(value, str) else value
    except EventError:
        raise
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        kind = f"a list of {node.type}" if node.repeated else node.type
        raise EventError(path, f"cannot be converted to {kind}") from None


def _coerce_item(node: Node, item, path: str):
    if node.type == NODE:
        if not isinstance(item, dict):
            raise ValueError("not an object")
        return {k: coerce_value(node.child(k), v, f"{path}/{k}") if node.child(k) else v for k, v in item.items()}
    if isinstance(item, str) and node.type != "STRING":
        return _convert_scalar(node.type, item)
    if node.type == "STRING" and not isinstance(item, str):
        return str(item)
    return item


def coerce_row(contract: Contract, row: dict) -> dict:
    """Convert a row of text values (a CSV row) to the contract's types.

    Columns that are not in the contract are kept as they are, so that validation can name them.
    """
    out = {}
    for name, value in row.items():
        node = contract.node(name) if "/" not in name else None
        out[name] = coerce_value(node, value, name) if node is not None else value
    return out
