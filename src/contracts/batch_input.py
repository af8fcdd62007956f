"""Turn rows of a batch job (CSV or JSONL) into events with ``strmMeta``, as the gateway would.

    from contracts import load_contract
    from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig
    batch = BatchInput(
        load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0"),
        consent=ConsentConfig(field="purposeConsent"),                 # value 2 -> [2]
        timestamp=TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss", timezone="UTC"),
    )
    event = batch.to_event({"userId": "477049", "date": "2022-09-16 16:02:32", ...})
    event["strmMeta"]   # {'eventContractRef': ..., 'nonce': ..., 'timestamp': 1663344152000,
                        #  'keyLink': None, 'billingId': None, 'consentLevels': [2]}

Text values are converted to the contract's types (``coerce_row``); a value that does not
convert raises ``EventError`` (the caller makes it a dead letter). A JSONL row that already has
``strmMeta`` (a gateway spool line) keeps it; only a missing nonce or timestamp is filled in.

Consent: without a map the field's value parses as ``1`` or ``[1, 2]``; with a map, the first
regex that matches the value in full gives the levels; nothing (or an empty value) gives the
default levels. Timestamp formats are Java DateTimeFormatter style (``yyyy-MM-dd HH:mm:ss``),
Python ``strptime`` style (anything with ``%``), ``iso`` (the default), ``epoch_millis`` or
``epoch_seconds``. Without a timestamp field, every event gets the time of the run. Any time
from 0001-01-01 to 9999-12-31 (UTC) is an event time; anything else (``1e400`` seconds, a
year-0 date after the time zone) is an ``EventError`` naming the timestamp field. Epoch numbers
are numbers or ASCII digits (seconds may have decimals).
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field as dataclass_field
from datetime import datetime
from math import isfinite
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson

from contracts.events import EventError, RowCoercer, parse_float, parse_int
from contracts.strm_meta import INT32, TIMESTAMP_MS
from contracts.model import Contract
from contracts.regex import compile_regex
from contracts.specialised import compile_row_converter

_JAVA_TOKENS = [
    ("yyyy", "%Y"), ("uuuu", "%Y"), ("yy", "%y"), ("MMMM", "%B"), ("MMM", "%b"), ("MM", "%m"),
    ("dd", "%d"), ("HH", "%H"), ("hh", "%I"), ("mm", "%M"), ("ss", "%S"), ("SSSSSS", "%f"),
    ("SSS", "%f"), ("a", "%p"), ("XXX", "%z"), ("Z", "%z"), ("EEE", "%a"),
]


def java_to_strptime(pattern: str) -> str:
    """Translate a Java DateTimeFormatter pattern (the common letters) to a strptime format."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "'":
            end = pattern.index("'", i + 1)
            out.append(pattern[i + 1 : end].replace("%", "%%"))
            i = end + 1
            continue
        for token, replacement in _JAVA_TOKENS:
            if pattern.startswith(token, i):
                out.append(replacement)
                i += len(token)
                break
        else:
            if pattern[i].isalpha():
                raise ValueError(f"timestamp format '{pattern}': letter '{pattern[i]}' is not supported")
            out.append(pattern[i].replace("%", "%%"))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class ConsentConfig:
    """Where consent levels come from: a field, an optional {regex: levels} map, defaults."""

    field: str | None = None
    mapping: tuple[tuple[str, tuple[int, ...]], ...] = ()
    default: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, data: dict | None) -> "ConsentConfig":
        data = data or {}
        mapping = tuple((str(k), tuple(int(v) for v in (vs if isinstance(vs, list) else [vs])))
                        for k, vs in (data.get("map") or {}).items())
        for pattern, _ in mapping:
            compile_regex(pattern)  # RegexError now, not at the first row
        return cls(data.get("field"), mapping, tuple(int(v) for v in data.get("default") or ()))

    def _patterns(self) -> list[tuple[re.Pattern, tuple[int, ...]]]:
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            compiled = [(compile_regex(pattern), levels) for pattern, levels in self.mapping]
            object.__setattr__(self, "_compiled", compiled)
        return compiled

    def levels(self, row: dict) -> list[int]:
        if not self.field:
            return list(self.default)
        value = row.get(self.field)
        if value is None or value == "":
            return list(self.default)
        if (not self.mapping and value.__class__ is str and len(value) < 10 and value.isdigit() and value.isascii()
                and (value[0] != "0" or len(value) == 1)):
            return [int(value)]  # one level, as json.loads would read it
        text = value if isinstance(value, str) else json.dumps(value)
        if self.mapping:
            for pattern, levels in self._patterns():
                if pattern.fullmatch(text):
                    return list(levels)
            return list(self.default)
        try:
            parsed = orjson.loads(text) if isinstance(value, str) else value
            levels = parsed if isinstance(parsed, list) else [parsed]
            if not all(v.__class__ is int and 0 <= v <= INT32[1] for v in levels):
                raise ValueError
            return levels
        except ValueError:
            raise EventError(self.field, "is the consent field and does not parse as a level or a list of levels") from None


_EPOCH = datetime(1970, 1, 1)
_MISSING = object()
_UNPICKLED = ("_coerce", "_seen", "_converters")
# strptime formats whose full-width values (two-digit fields) fromisoformat reads the same way.
_ISO_SHAPED = {
    "%Y-%m-%d %H:%M:%S": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"),
    "%Y-%m-%dT%H:%M:%S": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"),
    "%Y-%m-%d": re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}"),
}


@dataclass(frozen=True)
class TimestampConfig:
    """Where the event time comes from: a field, its format and the default time zone."""

    field: str | None = None
    format: str = "iso"
    timezone: str = "UTC"
    _strptime: str | None = dataclass_field(default=None, init=False, compare=False, repr=False)
    _zone: object = dataclass_field(default=None, init=False, compare=False, repr=False)
    _fast: re.Pattern | None = dataclass_field(default=None, init=False, compare=False, repr=False)

    def __post_init__(self):
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{self.timezone}'") from None
        object.__setattr__(self, "_zone", zone)
        if self.format not in ("iso", "epoch_millis", "epoch_seconds"):
            fmt = self.format if "%" in self.format else java_to_strptime(self.format)
            object.__setattr__(self, "_strptime", fmt)
            object.__setattr__(self, "_fast", _ISO_SHAPED.get(fmt))

    @classmethod
    def from_dict(cls, data: dict | None) -> "TimestampConfig":
        data = data or {}
        return cls(data.get("field"), data.get("format") or "iso", data.get("timezone") or "UTC")

    def timestamp_ms(self, row: dict, now_ms: int) -> int:
        if not self.field:
            return now_ms
        value = row.get(self.field)
        if value is None or value == "":
            raise EventError(self.field, "is the timestamp field and is empty")
        try:
            if self.format in ("epoch_millis", "epoch_seconds"):
                millis = _epoch_millis(value, 1000 if self.format == "epoch_seconds" else 1)
            else:
                millis = self._parse_text(value)
        except (ValueError, TypeError, OverflowError):
            raise EventError(self.field, f"does not parse as a timestamp of format '{self.format}'") from None
        if not TIMESTAMP_MS[0] <= millis <= TIMESTAMP_MS[1]:
            raise EventError(self.field, "is the timestamp field and is not a time between the years 1 and 9999 (UTC)")
        return millis

    def _parse_text(self, value) -> int:
        if value.__class__ is not str:
            raise TypeError("not text")
        if self._strptime is None or (self._fast is not None and self._fast.fullmatch(value)):
            parsed = datetime.fromisoformat(value)  # the same result as strptime, 50 times faster
        else:
            parsed = datetime.strptime(value, self._strptime)
        if parsed.tzinfo is None:
            if self.timezone == "UTC":  # what .replace(tzinfo=UTC).timestamp() computes, without the zone
                return int((parsed - _EPOCH).total_seconds() * 1000)
            parsed = parsed.replace(tzinfo=self._zone)
        return int(parsed.timestamp() * 1000)


def _epoch_millis(value, scale: int) -> int:
    """Epoch milliseconds from a number or its text (ASCII digits; seconds may have decimals)."""
    if value.__class__ is str:
        number = parse_int(value) if scale == 1 else parse_float(value)
    elif value.__class__ in (int, float):
        number = value
    else:
        raise TypeError("not a number")
    if number.__class__ is float and not isfinite(number):
        raise ValueError("not finite")
    return int(number * scale)


class BatchInput:
    """Converts rows of one contract into events; see the module docstring."""

    def __init__(self, contract: Contract, consent: ConsentConfig | None = None,
                 timestamp: TimestampConfig | None = None, now_ms: int | None = None):
        self.contract = contract
        self.consent = consent or ConsentConfig()
        self.timestamp = timestamp or TimestampConfig()
        self.now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        self._random = random.Random()
        self._setup()

    def _setup(self):
        self._coerce = RowCoercer(self.contract)
        self._ref = self.contract.ref
        self._seen: dict[tuple, int] = {}               # row shape (its keys, in order) -> rows seen
        self._converters: dict[tuple, object] = {}      # row shape -> contracts.specialised converter, or False

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in _UNPICKLED}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._setup()

    def _converter(self, shape: tuple):
        """The specialised converter of rows with these keys (``contracts.specialised``), made on the
        third row of the shape (a CSV file has one); None or False: the general ``RowCoercer``."""
        seen = self._seen.get(shape, 0) + 1
        if seen < 3:
            if len(self._seen) >= 1024:
                self._seen.clear()
            self._seen[shape] = seen
            return None
        if len(self._converters) >= 64:
            self._converters.clear()
        convert = self._converters[shape] = compile_row_converter(self._coerce, shape) or False
        return convert

    def to_event(self, row: dict) -> dict:
        meta = row.get("strmMeta", _MISSING)
        if meta.__class__ is dict:
            event = self._coerce({k: v for k, v in row.items() if k != "strmMeta"})
            meta = dict(meta)
            meta.setdefault("keyLink", None)
            meta.setdefault("billingId", None)
            meta.setdefault("consentLevels", [])
            if meta.get("nonce") is None:
                meta["nonce"] = self._random.getrandbits(31)
            if meta.get("timestamp") is None:
                meta["timestamp"] = self.timestamp.timestamp_ms(row, self.now_ms)
            return {"strmMeta": meta, **event}
        if meta is not _MISSING:  # a row with strmMeta that is not an object
            raise EventError("strmMeta", "has the wrong type: expected an object (NODE)")
        meta = {
            "eventContractRef": self._ref,
            "nonce": self._random.getrandbits(31),
            "timestamp": self.timestamp.timestamp_ms(row, self.now_ms),
            "keyLink": None,
            "billingId": None,
            "consentLevels": self.consent.levels(row),
        }
        shape = tuple(row)
        convert = self._converters.get(shape)
        if convert is None:
            convert = self._converter(shape)
        if convert:
            return convert(row, meta)
        return self._coerce(row, into={"strmMeta": meta})
