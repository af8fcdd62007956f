"""Check events against a contract, and convert text rows (CSV) to the contract's types.

    from contracts import load_contract
    from contracts.events import EventValidator, EventError, coerce_row

    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
    validator = EventValidator(contract)
    event = coerce_row(contract, {"userId": "17", "items": "[1, 2]", ...})   # text -> types
    coerce = RowCoercer(contract)                                         # the same, per contract
    event = coerce({"userId": "17", "items": "[1, 2]", ...})
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
TIMESTAMP_MS = (-62_135_596_800_000, 253_402_300_799_999)  # 0001-01-01 .. 9999-12-31T23:59:59.999 UTC
MAX_ID_CHARS = 1000  # key-field values and data-subject ids; `pstream subjects` takes the same ids
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
    stamp = meta.get("timestamp")
    if stamp is not None and not TIMESTAMP_MS[0] <= stamp <= TIMESTAMP_MS[1]:
        raise EventError("strmMeta/timestamp", "is not a time between the years 1 and 9999 (epoch milliseconds)")


_TYPE_CHECKS = {
    "STRING": lambda value: isinstance(value, str),
    "BOOLEAN": lambda value: isinstance(value, bool),
    "INTEGER": lambda value: isinstance(value, int) and not isinstance(value, bool) and INT32[0] <= value <= INT32[1],
    "LONG": lambda value: isinstance(value, int) and not isinstance(value, bool) and INT64[0] <= value <= INT64[1],
    "FLOAT": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
    NODE: lambda value: isinstance(value, dict),
}


def _type_check(node_type: str):
    return _TYPE_CHECKS.get(node_type, _TYPE_CHECKS[NODE])


class _Level:
    """The checks of one list of nodes, worked out once: known names, then one tuple per field."""

    def __init__(self, validator: "EventValidator", nodes: tuple[Node, ...], parent: str, top: bool):
        self.known = frozenset(n.name for n in nodes) | ({"strmMeta"} if top else set())
        self.parent = parent
        self.fields = []
        for node in nodes:
            path = f"{parent}{node.name}"
            nulls = validator._nulls.get(path)
            children = _Level(validator, node.nodes, f"{path}/", False) if node.type == NODE else None
            self.fields.append((node.name, path, node.repeated, node.required, nulls, _type_check(node.type),
                                node.type, children, tuple(validator._regexes.get(path, ()))))

    def check(self, record: dict) -> dict:
        known = self.known
        for name in record:
            if name not in known:
                raise EventError(f"{self.parent}{name}", "is not in the contract")
        out = None
        for name, path, repeated, required, nulls, type_ok, node_type, children, regexes in self.fields:
            value = record.get(name)
            if value is None:
                if nulls is not None and nulls.action == "DEFAULT_VALUE":
                    out = out or dict(record)
                    out[name] = value = nulls.default
                elif nulls is not None or required:
                    raise EventError(path, "is required but missing")
                if value is None:
                    continue
            if repeated:
                if not isinstance(value, list):
                    raise EventError(path, "must be a list (the field is repeated)")
                values = value
            else:
                values = (value,)
            for item in values:
                if not type_ok(item):
                    raise EventError(path, f"has the wrong type: expected {node_type}")
            if children is not None:
                checked = [children.check(item) for item in values]
                if any(c is not i for c, i in zip(checked, values)):
                    out = out or dict(record)
                    out[name] = checked if repeated else checked[0]
            for validation in regexes:
                for item in values:
                    text = item if isinstance(item, str) else json.dumps(item)
                    if validation.pattern.fullmatch(text) is None:
                        raise EventError(path, f"doesn't match regex '{validation.regex}'", item, validation.regex)
        return out if out is not None else record


class EventValidator:
    """Checks events against one contract: types, required fields, key field, regexes.

    ``check`` returns the event (with DEFAULT_VALUE fields filled in) or raises EventError.
    The contract's checks are worked out once, in the constructor.
    """

    def __init__(self, contract: Contract):
        self.contract = contract
        self._regexes = {}
        for validation in contract.validations:
            self._regexes.setdefault(validation.field, []).append(validation)
        self._nulls = {n.field: n for n in contract.null_handling}
        self._key_path = contract.key_field.split("/")
        self._subject_path = contract.data_subject_field.split("/") if contract.data_subject_field else None
        self._top = _Level(self, contract.nodes, "", top=True)

    def check(self, event: dict) -> dict:
        if not isinstance(event, dict):
            raise EventError("", "an event must be a JSON object")
        _check_meta(event.get("strmMeta"))
        event = self._top.check(event)
        key = event
        for part in self._key_path:
            key = key.get(part) if isinstance(key, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise EventError(self.contract.key_field, "is the key field and must not be empty")
        if len(key) > MAX_ID_CHARS:
            raise EventError(self.contract.key_field, f"is the key field: at most {MAX_ID_CHARS} characters")
        if self._subject_path:
            subject = event
            for part in self._subject_path:
                subject = subject.get(part) if isinstance(subject, dict) else None
            if isinstance(subject, str) and len(subject) > MAX_ID_CHARS:
                raise EventError(self.contract.data_subject_field,
                                 f"is the data subject field: at most {MAX_ID_CHARS} characters")
        return event


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


def _scalar_converter(node: Node, path: str):
    """A fast converter for one top-level scalar column: coerce_value's rules, specialised."""
    if node.type == "STRING":
        return None  # text stays text (an empty value too); other values are kept as they are
    convert = {"INTEGER": int, "LONG": int, "FLOAT": float}.get(node.type)
    if convert is None:
        return lambda value: coerce_value(node, value, path)
    problem = f"cannot be converted to {node.type}"

    def converter(value):
        if value.__class__ is not str:
            return None if value is None else coerce_value(node, value, path)
        if value == "":
            return None
        try:
            return convert(value.strip())
        except (ValueError, TypeError, MemoryError):
            raise EventError(path, problem) from None

    return converter


class RowCoercer:
    """``coerce_row`` for one contract with the node look-ups done once: ``RowCoercer(c)(row)``."""

    def __init__(self, contract: Contract):
        self.contract = contract
        self._converters = {}
        self._identity = set()
        for node in reversed(contract.nodes):  # the first node of a name wins, as in Contract.node
            self._converters.pop(node.name, None)
            self._identity.discard(node.name)
            if node.repeated or node.type == NODE:
                self._converters[node.name] = lambda value, node=node: coerce_value(node, value, node.name)
            else:
                converter = _scalar_converter(node, node.name)
                if converter is None:
                    self._identity.add(node.name)
                else:
                    self._converters[node.name] = converter

    def __call__(self, row: dict, into: dict | None = None) -> dict:
        """The converted row; added to ``into`` (after what it holds) when given."""
        out = {} if into is None else into
        converters = self._converters
        for name, value in row.items():
            converter = converters.get(name)
            out[name] = value if converter is None else converter(value)
        return out


_COERCERS: dict[int, RowCoercer] = {}


def coerce_row(contract: Contract, row: dict) -> dict:
    """Convert a row of text values (a CSV row) to the contract's types.

    Columns that are not in the contract are kept as they are, so that validation can name them.
    """
    coercer = _COERCERS.get(id(contract))
    if coercer is None or coercer.contract is not contract:
        if len(_COERCERS) >= 64:
            _COERCERS.clear()
        coercer = _COERCERS[id(contract)] = RowCoercer(contract)
    return coercer(row)
