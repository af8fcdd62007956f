"""Generalisation: per-field rules of a privacy stream that replace a value by a coarser one.

    from privacy.generalise import parse_rule, parse_rule_text
    rule = parse_rule({"bucket": [0, 18, 30, 45, 65]})          # the config's form
    age_group = rule.function("INTEGER")                         # for a field of this contract type
    age_group(29), age_group(65), age_group(-1), age_group(True) # '18-29', '65+', None, None
    path, rule = parse_rule_text("age=bucket:0,18,30,45,65")     # the CLI's form (--generalise)
    rule.to_config()                                             # {'bucket': [0, 18, 30, 45, 65]}
    rule.problem("BOOLEAN")                                      # why it cannot apply to that type

A privacy stream (``privacy.streams.StreamSpec``, ``generalise:`` in a pipeline config,
``pstream create stream --generalise``) maps field paths to rules; after the stream's consent
filter and decryption, each rule's output replaces the field's value (``privacy.fields``). The
rules, in the config's form (every one also takes ``default``: a string, number, boolean or
null; null when not given)::

    age:      {bucket: [0, 18, 30, 45, 65]}     # '0-17' '18-29' '30-44' '45-64' '65+'; < 0: the default
    age:      {bucket: [0, 18, 65], labels: [child, adult, senior]}   # labels of your own
    amount:   {round: 10}                       # the nearest multiple: 34 -> 30, 35 -> 40
    postcode: {prefix: 4}                       # the first 4 characters: '1234AB' -> '1234'
    date:     {truncate: month}                 # '2022-09-16 16:02:32' -> '2022-09' (day | month | year)
    size:     {group: {small: [XS, S], large: [L, XL]}, default: other}

The promise of every rule: its output is one of its own values (a label, a multiple, a prefix,
a date at the rule's precision, a group name) or the default; an input the rule cannot place is
never passed through (a value already at the rule's precision, such as 30 for ``round: 10`` or
``2022-09-16`` for ``truncate: day``, is its own output). An input the rule cannot place
gets the default: below the first edge, not a number (booleans are not numbers), NaN or
infinite, a text too short to have a prefix (a value of ``prefix`` characters or fewer would be
shown whole), a date the rule does not understand, a value in no group. A null stays null.

- **bucket**: edges strictly increasing; ``e[i] <= value < e[i+1]`` gets label i, ``value >=
  e[-1]`` the last (an open end). Default labels need whole-number edges: ``"a-b"`` with ``b =
  e[i+1] - 1`` (``"a"`` when that is ``a``), the last ``"e+"``; otherwise give ``labels``, one
  per edge. INTEGER, LONG, FLOAT, and STRING fields holding decimal numbers (``"42"``, ``"4.2e1"``).
- **round**: halves go up (towards +infinity); whole numbers stay whole when the multiple is
  whole, decimals are exact in decimal (``0.15`` to ``0.1`` is ``0.2``). A STRING field's number
  comes back as text. The same field types as bucket.
- **prefix**: the first N characters (code points) of a longer STRING value.
- **truncate**: STRING dates and times as the contracts write them: ``YYYY-MM-DD``, optionally
  followed by ``T`` or a space and ``HH:MM``, ``HH:MM:SS`` or ``HH:MM:SS.fff`` (1-9 digits),
  optionally a zone (``Z``, ``+HH``, ``+HHMM``, ``+HH:MM``). The output is the date as written
  (no time-zone conversion): ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``. Other forms (epoch
  numbers, ``16/09/2022``, week dates) and impossible dates (``2023-02-30``, ``24:00``) get the
  default.
- **group**: a name for each list of values; a value listed twice is refused. Values compare as
  the field's type: a STRING field's as text (a listed number 1 is ``"1"``), INTEGER and LONG as
  whole numbers, FLOAT as numbers, BOOLEAN as true/false; the CLI's text is converted the same
  way. STRING, INTEGER, LONG, FLOAT and BOOLEAN fields.

The CLI's short form is ``FIELD=KIND:ARGUMENTS``, with ``;default=TEXT`` at the end for a text
default, or ``FIELD=`` and the config's form as JSON (``'age={"bucket": [0, 65], "labels":
["adult", "senior"]}'``)::

    age=bucket:0,18,30,45,65        amount=round:10         postcode=prefix:4
    date=truncate:month             'size=group:small=XS|S,large=L|XL;default=other'

Which rule fits which field type is checked where the contract is known (``problem``: config
load, the run); a rule applied to a type it does not fit anyway (an unchecked path) outputs its
default for every value: fail closed.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Callable

from contracts.events import parse_float, parse_int

BUCKET, ROUND, PREFIX, TRUNCATE, GROUP = "bucket", "round", "prefix", "truncate", "group"
KINDS = (BUCKET, ROUND, PREFIX, TRUNCATE, GROUP)
UNITS = ("day", "month", "year")
NUMBER_TYPES = ("INTEGER", "LONG", "FLOAT")
FIELD_TYPES = {
    BUCKET: (*NUMBER_TYPES, "STRING"),
    ROUND: (*NUMBER_TYPES, "STRING"),
    PREFIX: ("STRING",),
    TRUNCATE: ("STRING",),
    GROUP: ("STRING", *NUMBER_TYPES, "BOOLEAN"),
}
MAX_EDGES = 1000
MAX_GROUP_VALUES = 10_000
MAX_LABEL_CHARS = 200
MAX_PREFIX = 10_000
FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*$")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,][0-9]{1,9})?)?"
    r"(?:[Zz]|[+-]([0-9]{2})(?::?([0-9]{2}))?)?)?")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_HALF = Decimal("0.5")


def _is_number(value) -> bool:
    return value.__class__ in (int, float) and (value.__class__ is int or math.isfinite(value))


def _is_scalar(value) -> bool:
    return value is None or value.__class__ in (str, bool) or _is_number(value)


def _shown(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 60 else f"{text[:60]}... ({len(text)} characters)"


def _whole(value) -> bool:
    return value.__class__ is int or (value.__class__ is float and value.is_integer())


def _number_of(value):
    """The number a value holds: an int or finite float, or the text of a decimal number; else None."""
    cls = value.__class__
    if cls is int:
        return value
    if cls is float:
        return value if math.isfinite(value) else None
    if cls is str:
        try:
            return parse_int(value)
        except ValueError:
            pass
        try:
            number = parse_float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None  # booleans, nulls, lists, objects


def _text_of(value) -> str:
    """A listed value as a STRING field's text: 1 -> '1', 1.5 -> '1.5', true -> 'true'."""
    if value.__class__ is bool:
        return "true" if value else "false"
    return value if value.__class__ is str else json.dumps(value)


def bucket_labels(edges) -> tuple[str, ...]:
    """The default labels of whole-number edges: '0-17', '18-29', ..., '65+'."""
    whole = [int(e) for e in edges]
    labels = [f"{low}" if high - 1 == low else f"{low}-{high - 1}" for low, high in zip(whole, whole[1:])]
    return (*labels, f"{whole[-1]}+")


@dataclass(frozen=True)
class Rule:
    """One generalisation rule (see the module docstring). ``argument``: the edges (bucket), the
    multiple (round), the length (prefix), the unit (truncate), or ((name, values), ...) (group)."""

    kind: str
    argument: object
    labels: tuple[str, ...] = ()
    default: object = None

    def __post_init__(self):
        problem = self._shape_problem()
        if problem:
            raise ValueError(problem)

    def _shape_problem(self) -> str | None:
        kind, argument = self.kind, self.argument
        if kind not in KINDS:
            return f"unknown rule '{_shown(kind)}': use one of {', '.join(KINDS)}"
        if not _is_scalar(self.default):
            return "default must be a string, a number, true/false or null"
        if kind != BUCKET and self.labels:
            return "labels belong to a bucket rule"
        if kind == BUCKET:
            if not isinstance(argument, tuple) or not argument or not all(_is_number(e) for e in argument):
                return "bucket needs a list of numbers (the edges), e.g. [0, 18, 30, 45, 65]"
            if len(argument) > MAX_EDGES:
                return f"bucket: at most {MAX_EDGES} edges"
            if any(low >= high for low, high in zip(argument, argument[1:])):
                return "bucket edges must be strictly increasing"
            if self.labels:
                if len(self.labels) != len(argument):
                    return (f"bucket: give one label per edge ({len(argument)}: the last is for values from the "
                            f"last edge up), not {len(self.labels)}")
                if not all(isinstance(label, str) and len(label) <= MAX_LABEL_CHARS for label in self.labels):
                    return f"bucket labels must be texts of at most {MAX_LABEL_CHARS} characters"
            elif not all(_whole(e) for e in argument):
                return "bucket edges that are not whole numbers need labels (one per edge)"
        elif kind == ROUND:
            if not _is_number(argument) or argument <= 0:
                return "round needs a number above 0 (the multiple), e.g. 10"
        elif kind == PREFIX:
            if argument.__class__ is not int or not 1 <= argument <= MAX_PREFIX:
                return f"prefix needs a whole number of characters from 1 to {MAX_PREFIX}"
        elif kind == TRUNCATE:
            if argument not in UNITS:
                return f"truncate needs one of {', '.join(UNITS)}"
        else:
            if not isinstance(argument, tuple) or not argument:
                return "group needs at least one group: {name: [values]}"
            seen, count = set(), 0
            for name, values in argument:
                if not isinstance(name, str) or not name or len(name) > MAX_LABEL_CHARS:
                    return f"group names must be texts of 1 to {MAX_LABEL_CHARS} characters"
                if not isinstance(values, tuple) or not values:
                    return f"group '{_shown(name)}' needs a non-empty list of values"
                for value in values:
                    if value is None or not _is_scalar(value):
                        return f"group '{_shown(name)}': values are texts, numbers or true/false"
                    key = (value.__class__ is bool, value)
                    if key in seen:
                        return f"group value {_shown(value)} is in more than one group"
                    seen.add(key)
                count += len(values)
            if count > MAX_GROUP_VALUES:
                return f"group: at most {MAX_GROUP_VALUES} values in all"
        return None

    # ----------------------------------------------------------- checks
    def problem(self, field_type: str) -> str | None:
        """Why this rule cannot apply to a field of ``field_type`` (a contract type), or None."""
        types = FIELD_TYPES[self.kind]
        if field_type not in types:
            return f"{self.kind} applies to {', '.join(types)} fields, this one is {field_type}"
        if self.kind == GROUP:
            try:
                self._group_keys(field_type)
            except ValueError as exc:
                return str(exc)
        return None

    def _group_keys(self, field_type: str) -> dict:
        """value (as the field's type) -> group name; ValueError names a value that does not fit."""
        keys = {}
        for name, values in self.argument:
            for value in values:
                key = _group_key(value, field_type)
                if key is None:
                    raise ValueError(f"group '{_shown(name)}': {_shown(value)} is not a value of type {field_type}")
                if key in keys:
                    raise ValueError(f"group value {_shown(value)} is in more than one group (as {field_type})")
                keys[key] = name
        return keys

    # ---------------------------------------------------------- applying
    def function(self, field_type: str) -> Callable[[object], object]:
        """The rule for values of a field of ``field_type``: value -> output (one of the rule's
        outputs or the default, never an input passed through)."""
        default = self.default
        if self.problem(field_type) is not None:
            return lambda value: default  # fail closed: an unchecked rule on the wrong type shows nothing
        kind, argument = self.kind, self.argument
        if kind == BUCKET:
            return _guarded(_bucket(argument, self.labels or bucket_labels(argument), default), default)
        if kind == ROUND:
            return _guarded(_round(argument, default), default)
        if kind == PREFIX:
            return lambda value: value[:argument] if value.__class__ is str and len(value) > argument else default
        if kind == TRUNCATE:
            return _guarded(_truncate(argument, default), default)
        keys = self._group_keys(field_type)
        wanted = {"STRING": str, "BOOLEAN": bool, "INTEGER": int, "LONG": int}.get(field_type)

        def group(value):
            cls = value.__class__
            if wanted is not None and cls is not wanted:
                return default
            if wanted is None and (cls is bool or not _is_number(value)):  # FLOAT: ints and floats
                return default
            return keys.get(value, default)

        return group

    # ---------------------------------------------------------- its forms
    def to_config(self) -> dict:
        """The config's form of the rule (what a pipeline config and the project file hold)."""
        if self.kind == GROUP:
            data = {GROUP: {name: list(values) for name, values in self.argument}}
        else:
            data = {self.kind: list(self.argument) if self.kind == BUCKET else self.argument}
        if self.labels:
            data["labels"] = list(self.labels)
        if self.default is not None:
            data["default"] = self.default
        return data

    def describe(self) -> str:
        if self.kind == BUCKET:
            text = f"bucket {','.join(_text_of(e) for e in self.argument)}"
        elif self.kind == GROUP:
            text = f"group into {', '.join(name for name, _ in self.argument)}"
        else:
            text = f"{self.kind} {self.argument}"
        return text + (f" (default {_shown(self.default)})" if self.default is not None else "")


def _group_key(value, field_type: str):
    """A listed value as a value of the field's type, or None if it cannot be one."""
    cls = value.__class__
    if field_type == "STRING":
        return _text_of(value)
    if field_type == "BOOLEAN":
        if cls is bool:
            return value
        if cls is str and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return None
    if cls is bool:
        return None
    number = _number_of(value)
    if field_type == "FLOAT":
        return None if number is None else float(number)
    return int(number) if number is not None and _whole(number) else None


def _guarded(fn: Callable, default) -> Callable:
    """fn, with any arithmetic or conversion failure giving the default: never the input, never a crash."""
    def guarded(value):
        try:
            return fn(value)
        except (ArithmeticError, ValueError, TypeError):
            return default

    return guarded


def _bucket(edges: tuple, labels: tuple, default) -> Callable:
    first = edges[0]

    def bucket(value):
        number = _number_of(value)
        if number is None or number < first:
            return default
        return labels[bisect.bisect_right(edges, number) - 1]

    return bucket


def _round(multiple, default) -> Callable:
    step = Decimal(repr(multiple)) if multiple.__class__ is float else Decimal(multiple)
    whole = multiple.__class__ is int

    def round_(value):
        number = _number_of(value)
        if number is None:
            return default
        if whole and number.__class__ is int:
            result = (number + multiple // 2) // multiple * multiple
        else:
            exact = Decimal(repr(number)) if number.__class__ is float else Decimal(number)
            result = float((exact / step + _HALF).to_integral_value(rounding=ROUND_FLOOR) * step)
            if not math.isfinite(result):
                return default
        return _text_of(result) if value.__class__ is str else result

    return round_


def _truncate(unit: str, default) -> Callable:
    def truncate(value):
        match = _DATE_TIME.fullmatch(value) if value.__class__ is str else None
        if match is None:
            return default
        year, month, day, hour, minute, second, zone_hour, zone_minute = match.groups()
        y, m, d = int(year), int(month), int(day)
        if y < 1 or not 1 <= m <= 12 or not 1 <= d <= _DAYS[m - 1]:
            return default
        if m == 2 and d == 29 and not (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)):
            return default
        if hour is not None and (int(hour) > 23 or int(minute) > 59 or (second is not None and int(second) > 60)):
            return default
        if zone_hour is not None and (int(zone_hour) > 23 or (zone_minute is not None and int(zone_minute) > 59)):
            return default
        return f"{year}-{month}-{day}" if unit == "day" else f"{year}-{month}" if unit == "month" else year

    return truncate


# -------------------------------------------------------------- parsing
_RULE_KEYS = {BUCKET: {"labels", "default"}, ROUND: {"default"}, PREFIX: {"default"}, TRUNCATE: {"default"},
              GROUP: {"default"}}


def parse_rule(data) -> Rule:
    """A rule from the config's form (a mapping); ValueError says what is wrong."""
    if isinstance(data, Rule):
        return data
    if not isinstance(data, dict):
        raise ValueError("a rule is a mapping such as {bucket: [0, 18, 65]}")
    kinds = [k for k in data if k in KINDS]
    if len(kinds) != 1:
        raise ValueError(f"a rule names exactly one of {', '.join(KINDS)}"
                         + (f", not {len(kinds)}: {', '.join(kinds)}" if kinds else ""))
    kind = kinds[0]
    unknown = sorted(str(k) for k in data if k != kind and k not in _RULE_KEYS[kind])
    if unknown:
        allowed = ", ".join(sorted(_RULE_KEYS[kind]))
        raise ValueError(f"{kind} rule: unknown key {_shown(unknown[0])} (a {kind} rule takes {allowed})")
    argument = data[kind]
    if kind == BUCKET:
        argument = tuple(argument) if isinstance(argument, list) else argument
    elif kind == GROUP:
        if not isinstance(argument, dict):
            raise ValueError("group needs a mapping of names to lists of values: {small: [XS, S], large: [L, XL]}")
        argument = tuple((name, tuple(values) if isinstance(values, list) else values)
                         for name, values in argument.items())
    labels = data.get("labels", ())
    if not isinstance(labels, (list, tuple)):
        raise ValueError("bucket labels are a list of texts, one per edge")
    return Rule(kind, argument, tuple(labels), data.get("default"))


def parse_rules(data, where: str = "generalise") -> dict[str, Rule]:
    """field path -> Rule from the config's ``generalise:`` mapping; ValueError names the field."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{where}: a mapping of field paths to rules, e.g. {{age: {{bucket: [0, 18, 65]}}}}")
    rules = {}
    for path, rule in data.items():
        check_path(path, where)
        try:
            rules[path] = parse_rule(rule)
        except ValueError as exc:
            raise ValueError(f"{where} '{path}': {exc}") from None
    return rules


def check_path(path, where: str = "generalise") -> str:
    if not isinstance(path, str) or not FIELD_PATH.match(path):
        raise ValueError(f"{where}: '{_shown(path)}' is not a field path (names joined with '/', e.g. address/street)")
    if path == "strmMeta" or path.startswith("strmMeta/"):
        raise ValueError(f"{where}: strmMeta cannot be generalised")
    return path


def _text_number(text: str, what: str):
    try:
        return parse_int(text)
    except ValueError:
        pass
    try:
        number = parse_float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{what}: '{_shown(text)}' is not a number")
    return number


def parse_rule_text(text: str) -> tuple[str, Rule]:
    """(field path, rule) from the CLI's ``FIELD=RULE`` (see the module docstring); ValueError else."""
    path, sep, body = text.partition("=")
    path = path.strip()
    if not sep or not path:
        raise ValueError(f"'{_shown(text)}': give FIELD=RULE, e.g. age=bucket:0,18,30,45,65")
    check_path(path, "--generalise")
    where = f"--generalise {path}"
    body = body.strip()
    try:
        if body.startswith("{"):
            try:
                data = json.loads(body)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
            return path, parse_rule(data)
        body, has_default, default = body.partition(";default=")
        kind, colon, arguments = body.partition(":")
        kind = kind.strip()
        if kind not in KINDS or not colon:
            raise ValueError(f"'{_shown(body)}': give KIND:ARGUMENTS with KIND one of {', '.join(KINDS)}, "
                             "e.g. bucket:0,18,30,45,65")
        default = default if has_default else None
        arguments = arguments.strip()
        if kind == BUCKET:
            return path, Rule(BUCKET, tuple(_text_number(e.strip(), "bucket edge") for e in arguments.split(",")),
                              default=default)
        if kind == ROUND:
            return path, Rule(ROUND, _text_number(arguments, "round"), default=default)
        if kind == PREFIX:
            try:
                length = parse_int(arguments)
            except ValueError:
                raise ValueError(f"prefix: '{_shown(arguments)}' is not a whole number") from None
            return path, Rule(PREFIX, length, default=default)
        if kind == TRUNCATE:
            return path, Rule(TRUNCATE, arguments, default=default)
        groups = []
        for part in arguments.split(","):
            name, eq, values = part.partition("=")
            if not eq or not name.strip():
                raise ValueError(f"group: '{_shown(part)}' is not NAME=VALUE|VALUE")
            groups.append((name.strip(), tuple(values.split("|"))))
        if len({name for name, _ in groups}) != len(groups):
            raise ValueError("group: a group name is given twice")
        return path, Rule(GROUP, tuple(groups), default=default)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
