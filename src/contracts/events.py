"""THE event validator, and the conversion of text rows (CSV) to the contract's types.

    from contracts import load_contract
    from contracts.events import EventValidator, EventError, RowCoercer

    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
    validator = EventValidator(contract)    # the contract's checks, compiled once
    coerce = RowCoercer(contract)           # text -> types, per contract
    event = coerce({"userId": "17", "items": "[1, 2]", ...})
    try:
        event = validator.check(event)      # the event (a copy if DEFAULT_VALUE fields were filled)
    except EventError as err:
        err.reason                          # safe: names contract fields, never copies the input
        err.gateway_message(contract.ref)   # the reference's HTTP 400 text

One validator serves the gateway's hot path and every pipeline: ``check`` is compiled per
contract into plain loops over tuples with exact-class tests. For flat contracts (no NODE
fields) ``contracts.specialised`` also writes the contract's checks out as Python source once;
that pre-check can only accept (an event it does not accept goes through the general checks,
which decide and give the reason), so there is one semantics and one set of messages. It is strict:

- values are exactly the JSON types decoders produce (``str``, ``int``, ``float``, ``bool``,
  ``list``, ``dict``); ``True`` is not an INTEGER;
- INTEGER is 32-bit, LONG 64-bit; FLOAT is a finite number (NaN, Infinity and 1e400 are not),
  an integer in a FLOAT field must fit 64 bits; STRING is valid Unicode (no lone surrogates);
- ``strmMeta`` is checked against its one definition (``contracts.strm_meta``): no unknown
  keys, types and ranges as declared, ``eventContractRef`` naming this contract;
- fields and keys that are not in the contract are refused, reported by count and position
  (never by name: names come from the input);
- whatever ``check`` accepts can be written as JSON and read back unchanged (orjson).

``EventError`` keeps the offending value only for the gateway's regex answer (the reference's
400 text shows it); ``reason`` names the field and the problem and never copies data.

Text conversion (``RowCoercer``, ``coerce_value``): integers are ASCII digits with an optional
sign (Python's ``int`` would take '١٢٣' and '1_000'); floats are decimal literals (no 'nan',
'inf'); repeated and NODE values parse as JSON, or as Python literals (single quotes).
"""
from __future__ import annotations

import ast
import json
import re
from math import isfinite

import orjson

from contracts.model import NODE, Contract, Node
from contracts.strm_meta import INT32, INT64, STRM_META, TIMESTAMP_MS, MetaField

__all__ = ["EventError", "EventValidator", "RowCoercer", "coerce_row", "coerce_value", "parse_int", "parse_float",
           "INT32", "INT64", "TIMESTAMP_MS"]

MAX_ID_CHARS = 1000  # key-field values and data-subject ids; `pstream subjects` takes the same ids
_MISSING = object()
_NO_DEFAULT = object()
_SURROGATE = re.compile("[\ud800-\udfff]")
_BITS = {"INTEGER": "32-bit", "LONG": "64-bit"}


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


# ------------------------------------------------------------------ one field's values
class _Rule:
    """What one field's values must be: a type, a range, a shape. ``ok`` is the compiled test."""

    def __init__(self, node_type: str, minimum=None, maximum=None, pattern: str | None = None,
                 equals: str | None = None, range_text: str | None = None):
        self.type = node_type
        low, high = {"INTEGER": INT32, "LONG": INT64}.get(node_type, (None, None))
        self.low = low if minimum is None else minimum
        self.high = high if maximum is None else maximum
        self.pattern = re.compile(pattern) if pattern else None
        self.equals = equals
        self.range_text = range_text
        self.ok = self._compile()

    def _compile(self):
        kind, low, high, pattern, equals = self.type, self.low, self.high, self.pattern, self.equals
        if kind == "STRING":
            if equals is not None:
                return lambda v: v == equals and v.__class__ is str
            if pattern is not None:
                match = pattern.fullmatch
                return lambda v: v.__class__ is str and match(v) is not None
            search = _SURROGATE.search
            return lambda v: v.__class__ is str and (v.isascii() or search(v) is None)
        if kind in ("INTEGER", "LONG"):
            return lambda v: v.__class__ is int and low <= v <= high
        if kind == "FLOAT":
            low, high = INT64
            return lambda v: (v.__class__ is float and isfinite(v)) or (v.__class__ is int and low <= v <= high)
        if kind == "BOOLEAN":
            return lambda v: v is True or v is False
        return lambda v: v.__class__ is dict

    def problem(self, value) -> str:
        """Why ``value`` fails ``ok`` (called only when it does), without the value."""
        kind = self.type
        if kind == NODE:
            return "has the wrong type: expected an object (NODE)"
        if kind == "FLOAT" and value.__class__ in (float, int):
            return "is not a finite number (FLOAT)" if value.__class__ is float else "is out of range for FLOAT"
        expected = {"INTEGER": (int,), "LONG": (int,), "FLOAT": (float, int), "STRING": (str,),
                    "BOOLEAN": (bool,)}[kind]
        if value.__class__ not in expected:
            return f"has the wrong type: expected {kind}"
        if kind in ("INTEGER", "LONG"):
            if self.range_text:
                return self.range_text
            if (self.low, self.high) == {"INTEGER": INT32, "LONG": INT64}[kind]:
                return f"is out of range for {kind} ({_BITS[kind]})"
            return f"is out of range ({self.low} .. {self.high})"
        if self.equals is not None:
            return f"names another contract than '{self.equals}'"
        if self.pattern is not None:
            return f"does not have the form '{self.pattern.pattern}'"
        return "is not valid Unicode text (it holds a lone surrogate)"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class _Level:
    """The checks of one object (the event, strmMeta or a NODE value), worked out once.

    ``specs`` maps each field name to (path, repeated, ok, children, regexes, rule), ``plain`` the
    single scalar fields without regexes to their test alone; ``present`` lists the fields that
    must have a value: (name, path, default). ``check`` looks at the fields that must be there,
    then walks the keys the object has (usually few of strmMeta's): plain loops, dict look-ups
    and exact-class tests, which is what keeps it fast.
    """

    def __init__(self, parent: str):
        self.parent = parent
        self.specs: dict[str, tuple] = {}
        self.plain: dict = {}  # name -> ok, for single scalar values without regexes: the common case
        self.present: list[tuple] = []
        self.known: frozenset = frozenset()

    def add(self, name: str, rule: _Rule, repeated: bool, required: bool, default=_NO_DEFAULT,
            children: "_Level | None" = None, regexes: tuple = ()) -> None:
        path = f"{self.parent}{name}"
        self.specs[name] = (path, repeated, rule.ok, children, regexes, rule)
        if not repeated and children is None and not regexes:
            self.plain[name] = rule.ok
        if required or default is not _NO_DEFAULT:
            self.present.append((name, path, default))
        self.known = frozenset(self.specs)

    def unknown(self, record: dict) -> EventError:
        """The error for keys that are not in the contract: how many, and where the first is."""
        known = self.known
        if self.parent:  # a NODE value or strmMeta: keys counted in the object's order
            positions = [i for i, name in enumerate(record, 1) if name not in known]
            where = "strmMeta" if self.parent == "strmMeta/" else "the contract"
            return EventError(self.parent[:-1], f"has {_plural(len(positions), 'key')} that "
                              f"{'is' if len(positions) == 1 else 'are'} not in {where} (the first is key {positions[0]})")
        names = [name for name in record if name != "strmMeta"]  # CSV rows: field N is column N
        positions = [i for i, name in enumerate(names, 1) if name not in known]
        return EventError("", f"{_plural(len(positions), 'field')} {'is' if len(positions) == 1 else 'are'} not in "
                          f"the contract (the first is field {positions[0]} of the event, not counting strmMeta)")

    def check(self, record: dict) -> dict:
        if not self.known.issuperset(record):
            raise self.unknown(record)
        out = None
        for name, path, default in self.present:
            if record.get(name) is None:
                if default is _NO_DEFAULT:
                    raise EventError(path, "is required but missing")
                if out is None:
                    out = dict(record)
                out[name] = default  # checked when the validator was built
        specs, plain = self.specs, self.plain
        for name, value in record.items():
            if value is None:
                continue
            ok = plain.get(name)
            if ok is not None:
                if not ok(value):
                    path, _, _, _, _, rule = specs[name]
                    raise EventError(path, rule.problem(value))
                continue
            path, repeated, ok, children, regexes, rule = specs[name]
            if repeated:
                if value.__class__ is not list:
                    raise EventError(path, "must be a list (the field is repeated)")
                for item in value:
                    if not ok(item):
                        raise EventError(path, rule.problem(item))
                if children is not None:
                    checked = [children.check(item) for item in value]
                    if any(c is not i for c, i in zip(checked, value)):
                        if out is None:
                            out = dict(record)
                        out[name] = checked
            else:
                if not ok(value):
                    raise EventError(path, rule.problem(value))
                if children is not None:
                    checked = children.check(value)
                    if checked is not value:
                        if out is None:
                            out = dict(record)
                        out[name] = checked
            if regexes:
                for validation in regexes:
                    fullmatch = validation.pattern.fullmatch
                    for item in (value if repeated else (value,)):
                        if fullmatch(item if item.__class__ is str else json.dumps(item)) is None:
                            raise EventError(path, f"doesn't match regex '{validation.regex}'", item,
                                             validation.regex)
        return record if out is None else out

    def only(self, name: str) -> "_Level":
        """A level with just this field's checks (to check a contract's default value once)."""
        level = _Level(self.parent)
        level.specs = {name: self.specs[name]}
        level.plain = {name: self.plain[name]} if name in self.plain else {}
        level.known = frozenset(level.specs)
        return level


def _meta_rule(field: MetaField, ref: str) -> _Rule:
    if field.name == "eventContractRef":
        return _Rule("STRING", equals=ref)
    range_text = None
    if field.name == "timestamp":
        range_text = "is not a time between the years 1 and 9999 (epoch milliseconds)"
    return _Rule(field.type, field.minimum, field.maximum, field.pattern, range_text=range_text)


class EventValidator:
    """Checks events against one contract; see the module docstring.

    ``check`` returns the event (a copy with DEFAULT_VALUE fields filled in, if there are any
    missing) or raises EventError. The contract's checks are compiled in the constructor.
    """

    def __init__(self, contract: Contract, specialised: bool = True):
        """``specialised=False``: the general checks only (the tests compare the two paths)."""
        self.contract = contract
        self._regexes: dict[str, list] = {}
        for validation in contract.validations:
            self._regexes.setdefault(validation.field, []).append(validation)
        self._nulls = {n.field: n for n in contract.null_handling}
        self._key_path = contract.key_field.split("/")
        self._subject_path = contract.data_subject_field.split("/") if contract.data_subject_field else None
        meta = _Level("strmMeta/")
        for field in STRM_META:
            meta.add(field.name, _meta_rule(field, contract.ref), field.repeated, field.required)
        self._top = _Level("")
        self._top.add("strmMeta", _Rule(NODE), False, True, children=meta)
        self._add_nodes(self._top, contract.nodes)
        from contracts.specialised import compile_validator
        self._accept = compile_validator(self) if specialised else None  # accepts only; None: the general path

    def _add_nodes(self, level: _Level, nodes: tuple[Node, ...]) -> None:
        for node in nodes:
            path = f"{level.parent}{node.name}"
            nulls = self._nulls.get(path)
            default = nulls.default if nulls is not None and nulls.action == "DEFAULT_VALUE" else _NO_DEFAULT
            children = None
            if node.type == NODE:
                children = _Level(f"{path}/")
                self._add_nodes(children, node.nodes)
            level.add(node.name, _Rule(node.type), node.repeated, node.required or nulls is not None, default,
                      children, tuple(self._regexes.get(path, ())))
            if default is not _NO_DEFAULT:
                try:
                    level.only(node.name).check({node.name: default})
                except EventError as err:
                    raise ValueError(f"contract {self.contract.ref}: the DEFAULT_VALUE of '{path}' does not fit "
                                     f"the field: {err.problem}") from None

    def check(self, event: dict) -> dict:
        accept = self._accept
        if accept is not None:
            try:
                accepted = accept(event)
            except Exception:  # noqa: BLE001 - the general path below decides (and raises) instead
                accepted = None
            if accepted is not None:
                return accepted
        if event.__class__ is not dict:
            raise EventError("", "an event must be a JSON object")
        event = self._top.check(event)
        key = event
        for part in self._key_path:
            key = key.get(part) if key.__class__ is dict else None
        if key.__class__ is not str or not key.strip():
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


# ------------------------------------------------------------------ text to types
_INT_TEXT = re.compile(r"[-+]?[0-9]{1,30}")
_FLOAT_TEXT = re.compile(r"[-+]?(?:[0-9]{1,400}(?:\.[0-9]{0,400})?|\.[0-9]{1,400})(?:[eE][-+]?[0-9]{1,5})?")
_MAX_LITERAL_CHARS = 100_000  # the Python-literal fallback parses at most this much text


_BLANKS = " \t\r\n"


def parse_int(text: str) -> int:
    """An integer from ASCII digits with an optional sign (surrounding ASCII blanks ignored); ValueError else."""
    text = text.strip(_BLANKS)
    if (text.isdigit() and text.isascii() and len(text) <= 30) or _INT_TEXT.fullmatch(text):
        return int(text)
    raise ValueError("not an integer")


def parse_float(text: str) -> float:
    """A float from a decimal literal ('1.5', '-2e3'); ValueError for 'nan', 'inf', '1_0' and others."""
    text = text.strip(_BLANKS)
    if _FLOAT_TEXT.fullmatch(text):
        return float(text)  # may be inf (1e400): the validator refuses non-finite FLOATs
    raise ValueError("not a number")


def _convert_scalar(node_type: str, text: str):
    if node_type == "STRING":
        return text
    if node_type in ("INTEGER", "LONG"):
        return parse_int(text)
    if node_type == "FLOAT":
        return parse_float(text)
    if node_type == "BOOLEAN":
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("not a boolean")
    raise ValueError(node_type)


def _parse_structured(text: str):
    """A list or object from its text form: JSON, or Python's repr (single quotes)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if len(text) > _MAX_LITERAL_CHARS:
            raise ValueError("too long for a Python literal") from None
        return ast.literal_eval(text)


_CONVERSION_ERRORS = (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError)


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
    except _CONVERSION_ERRORS:
        kind = f"a list of {node.type}" if node.repeated else node.type
        raise EventError(path, f"cannot be converted to {kind}") from None


def _coerce_item(node: Node, item, path: str):
    if node.type == NODE:
        if not isinstance(item, dict):
            raise ValueError("not an object")
        return {k: coerce_value(node.child(k), v, f"{path}/{k}") if node.child(k) else v for k, v in item.items()}
    if isinstance(item, str) and node.type != "STRING":
        return _convert_scalar(node.type, item)
    if node.type == "STRING" and item.__class__ in (int, float):
        return str(item)
    return item


def _scalar_converter(node: Node, path: str):
    """A fast converter for one top-level scalar column: coerce_value's rules, specialised."""
    if node.type == "STRING":
        return None  # text stays text (an empty value too); other values are kept as they are
    convert = {"INTEGER": parse_int, "LONG": parse_int, "FLOAT": parse_float}.get(node.type)
    if convert is None:
        return lambda value: coerce_value(node, value, path)
    problem = f"cannot be converted to {node.type}"

    def converter(value):
        if value.__class__ is not str:
            return None if value is None else coerce_value(node, value, path)
        if value == "":
            return None
        if value.isdigit() and value.isascii() and len(value) <= 30:
            return int(value) if convert is parse_int else float(value)
        try:
            return convert(value)
        except ValueError:
            raise EventError(path, problem) from None

    return converter


_ITEM_CLASSES = {"INTEGER": int, "LONG": int, "STRING": str}
_INT_CONVERTER_TYPES = ("INTEGER", "LONG")  # _scalar_converter's types whose digits case is int(value)


def _repeated_scalar_converter(node: Node, path: str):
    """coerce_value for a repeated INTEGER, LONG or STRING column, with a fast path for the common
    case: JSON text of a list whose items all have the type already ('[11217, 18090]')."""
    item_class = _ITEM_CLASSES[node.type]
    loads, decode_error = orjson.loads, orjson.JSONDecodeError

    def converter(value):
        if value.__class__ is str and value:
            try:
                parsed = loads(value)
            except decode_error:
                return coerce_value(node, value, path)  # Python's repr, or not a list: the general rules
            if parsed.__class__ is list:
                for item in parsed:
                    if item.__class__ is not item_class:
                        break
                else:
                    return parsed
        return coerce_value(node, value, path)

    return converter


class RowCoercer:
    """``coerce_row`` for one contract with the node look-ups done once: ``RowCoercer(c)(row)``."""

    def __init__(self, contract: Contract):
        self.contract = contract
        self._converters = {}
        self._identity = set()
        self._types = {}  # name -> type, for the columns of _scalar_converter (contracts.specialised)
        for node in reversed(contract.nodes):  # the first node of a name wins, as in Contract.node
            self._converters.pop(node.name, None)
            self._identity.discard(node.name)
            self._types.pop(node.name, None)
            if node.repeated and node.type in _ITEM_CLASSES:
                self._converters[node.name] = _repeated_scalar_converter(node, node.name)
            elif node.repeated or node.type == NODE:
                self._converters[node.name] = lambda value, node=node: coerce_value(node, value, node.name)
            else:
                converter = _scalar_converter(node, node.name)
                if converter is None:
                    self._identity.add(node.name)
                else:
                    self._converters[node.name] = converter
                    self._types[node.name] = node.type

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

    Columns that are not in the contract are kept as they are, so that validation can count them.
    """
    coercer = _COERCERS.get(id(contract))
    if coercer is None or coercer.contract is not contract:
        if len(_COERCERS) >= 64:
            _COERCERS.clear()
        coercer = _COERCERS[id(contract)] = RowCoercer(contract)
    return coercer(row)
