"""The contract wizard's inference: a sample file in, a proposed contract out, for review.

    from contracts.infer import read_sample, profile_rows, propose, check_sample
    sample = read_sample("example_input.csv", max_rows=1000)     # the first rows only (CSV or JSONL)
    proposal = propose(profile_rows(sample.rows, text=sample.text), ref="acme/Shop/1.0.0")
    proposal.key_field                 # 'userId'   (and proposal.reasons['userId'] says why)
    proposal.pii                       # {'userId': 1, 'email': 2, 'fullName': 2, ...}
    proposal.quasi_ids, proposal.validations   # ['age'], {'tshirtSize': '^(L|M|S|XL|XS)$'}
    proposal.set_key_field("email"); proposal.set_pii("address", None)   # the user's changes
    contract = proposal.contract()     # parsed and checked like any contract file (ContractError)
    check_sample(contract, sample.rows)            # (accepted, {reason: rows}) by THE validator

Types: STRING, INTEGER (fits 32 bits), LONG, FLOAT, BOOLEAN (true/false); a JSON array is a
repeated field and a JSON object a NODE with child fields (JSONL, or such text in a CSV cell, as
the CSV reader converts ``"[1, 2]"``). CSV text stays STRING when its name says it is an
identifier or personal data (``userId`` of digits: identifiers are labels, and only STRING
fields can be encrypted), and when a number has leading zeros (``"007"``). Fields are required
only when they are the key field, or id-like and never empty in the sample: making a field
required later needs a major version, making it optional only a minor one.

Personal data, key field, quasi-identifiers, purpose levels and enumerations follow
``contracts.classify`` (the same rules as the ODCS import). Values are read to decide, never
copied into the proposal (only a non-personal enumeration's values end up in its regex).
"""
from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from contracts import classify
from contracts.events import INT32, INT64, EventError, EventValidator, coerce_row
from contracts.events import _parse_structured as parse_structured
from contracts.loader import ContractError, parse_contract
from contracts.model import NODE, SCALAR_TYPES, Contract, Node
from contracts.writer import field_metadata, node_data, validation_data

DEFAULT_MAX_ROWS = 1000
MAX_LINE_BYTES = 1 << 20          # a longer JSONL line is skipped (and counted)
VALUE_TESTS = 500                 # values per field tested against the personal-data patterns
MAX_DISTINCT = 100_000            # distinct values counted per field (list items can be many)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+([eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)")


class SampleError(ValueError):
    """A sample that cannot be read or described as a contract (the message says why)."""


@dataclass
class Sample:
    """The first rows of a CSV or JSONL file, and what was left out while reading them."""

    source: str
    format: str                    # csv | jsonl
    rows: list[dict]
    text: bool                     # every value is text (CSV)
    skipped: Counter = field(default_factory=Counter)   # reason -> lines
    more: bool = False             # the file has more rows than were read


def read_sample(path: str | Path, max_rows: int = DEFAULT_MAX_ROWS) -> Sample:
    """Read at most ``max_rows`` rows of a ``.csv`` or ``.jsonl`` (``.ndjson``, ``.json``) file."""
    path = Path(path)
    if max_rows < 1:
        raise SampleError("the number of rows to read must be at least 1")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise SampleError(f"{path}: a sample is a .csv or .jsonl file")
    try:
        handle = open(path, newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise SampleError(f"{path}: cannot be read: {exc.strerror}") from None
    with handle:
        if suffix == ".csv":
            return _read_csv(handle, str(path), max_rows)
        return _read_jsonl(handle, str(path), max_rows)


def _read_csv(handle, source: str, max_rows: int) -> Sample:
    sample = Sample(source, "csv", [], text=True)
    reader = csv.DictReader(handle)
    try:
        header = reader.fieldnames
        if not header:
            raise SampleError(f"{source}: no header line")
        for row in reader:
            if len(sample.rows) == max_rows:
                sample.more = True
                break
            if None in row:
                sample.skipped["more values than the header has columns"] += 1
                continue
            sample.rows.append({k: v for k, v in row.items() if v is not None})
    except (csv.Error, UnicodeDecodeError) as exc:
        kind = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        sample.skipped[f"stopped reading at line {reader.line_num + 1}: {kind}"] += 1
    _check_names(header or [], source)
    return sample


def _read_jsonl(handle, source: str, max_rows: int) -> Sample:
    sample = Sample(source, "jsonl", [], text=False)
    try:
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                break
            if len(line) > MAX_LINE_BYTES:
                sample.skipped[f"a line longer than {MAX_LINE_BYTES:,} characters"] += 1
                while line and not line.endswith("\n"):
                    line = handle.readline(MAX_LINE_BYTES)
                continue
            if not line.strip():
                continue
            if len(sample.rows) == max_rows:
                sample.more = True
                break
            try:
                row = json.loads(line)
            except ValueError:
                sample.skipped["not valid JSON"] += 1
                continue
            if not isinstance(row, dict):
                sample.skipped["not a JSON object"] += 1
                continue
            row.pop("strmMeta", None)   # event metadata (a gateway spool line), not a field
            sample.rows.append(row)
    except UnicodeDecodeError:
        sample.skipped["stopped reading: not UTF-8 text"] += 1
    return sample


def _check_names(names, source: str, parent: str = ""):
    bad = [n for n in names if not isinstance(n, str) or not NAME.match(n) or n == "strmMeta"]
    if bad:
        shown = ", ".join(repr(str(n))[:40] for n in bad[:5])
        raise SampleError(f"{source}: {parent}field names must start with a letter or '_' and hold only letters, "
                          f"digits and '_' (strmMeta is reserved): {shown}")


# -- profiles: what the sample shows about each field, without keeping its values -------------
@dataclass
class FieldProfile:
    """What is known about one field: from a sample (counts) or from a declaration (ODCS)."""

    name: str
    path: str
    type: str | None = None                 # decided by finish(), or declared
    repeated: bool = False
    required: bool = False                  # never empty (sample) or declared
    children: dict = field(default_factory=dict)   # name -> FieldProfile (NODE)
    doc: str | None = None
    rows: int = 0                           # records where this field could appear
    values: int = 0                         # non-empty values seen (list items count for a list)
    kinds: Counter = field(default_factory=Counter)
    distinct: set = field(default_factory=set)      # hashes of values (cardinality only)
    small_values: set | None = field(default_factory=set)   # the values while few (enumerations)
    matches: Counter = field(default_factory=Counter)       # value category -> values like it
    tested: int = 0
    items: "FieldProfile | None" = None     # a list's items
    objects: int = 0                        # objects seen (a NODE: the rows of its fields)
    text: bool = True                       # every value was text (can be kept as STRING)
    notes: list = field(default_factory=list)

    def add(self, value, text: bool, phone_region: str):
        """One value of this field (None or '' counts as empty)."""
        if value is None or value == "":
            return
        if isinstance(value, str):
            kind, parsed = _text_kind(value) if text else ("text", value)
        else:
            kind, parsed, self.text = _json_kind(value), value, False
        self.kinds[kind] += 1
        if kind == "list":
            self.items = self.items or FieldProfile(self.name, self.path)
            for item in parsed:
                self.items.add(item, False, phone_region)
                self.items.rows += 1
            return
        if kind == "object":
            self.objects += 1
            for name, child_value in parsed.items():
                child = self.children.get(name)
                if child is None:
                    _check_names([name], "sample", f"{self.path}: ")
                    child = self.children[name] = FieldProfile(name, f"{self.path}/{name}")
                child.add(child_value, False, phone_region)
            return
        self.values += 1
        if len(self.distinct) < MAX_DISTINCT:
            self.distinct.add(hash(parsed))
        if self.small_values is not None:
            self.small_values.add(parsed if kind == "text" else None)
            if len(self.small_values) > classify.MAX_ENUM_VALUES:
                self.small_values = None
        if kind == "text" and self.tested < VALUE_TESTS:
            self.tested += 1
            self.matches.update(classify.value_matches(parsed, phone_region))

    def finish(self):
        """Decide the type from the kinds of values seen."""
        for child in self.children.values():
            child.rows = self.objects
            child.finish()
        kinds = set(self.kinds)
        if not kinds:
            self.type = "STRING"
            if not self.children:
                self.notes.append(f"{self.path}: no values in the sample; typed STRING")
            return
        if kinds == {"list"}:
            self.repeated = True
            self.items.finish()
            if self.items.repeated:
                self.type = None
                self.notes.append(f"{self.path}: lists of lists have no contract type; left out")
                return
            self.type, self.children = self.items.type, self.items.children
            self.matches, self.tested, self.values = self.items.matches, self.items.tested, self.items.values
            self.small_values, self.distinct = self.items.small_values, self.items.distinct
            self.text = self.text and self.items.text
            return
        if kinds == {"object"}:
            self.type = NODE if any(c.type is not None for c in self.children.values()) else None
            if self.type is None:
                self.notes.append(f"{self.path}: objects without fields a contract can describe; left out")
            return
        if kinds & {"list", "object"}:
            self.type = "STRING" if self.text else None
            if self.type is None:
                self.notes.append(f"{self.path}: holds lists or objects and also other values; left out")
            return
        if kinds <= {"int32"}:
            self.type = "INTEGER"
        elif kinds <= {"int32", "int64"}:
            self.type = "LONG"
        elif kinds <= {"int32", "int64", "float"}:
            self.type = "FLOAT"
        elif kinds == {"bool"}:
            self.type = "BOOLEAN"
        else:
            self.type = "STRING"
        if self.type in ("INTEGER", "LONG", "FLOAT") and self.text and (
                classify.is_id_like(self.name) or classify.name_category(self.name) is not None):
            self.type = "STRING"    # an identifier or personal data written with digits stays text


def _text_kind(text: str):
    stripped = text.strip()
    if _INT.fullmatch(stripped):
        number = int(stripped)
        if INT32[0] <= number <= INT32[1]:
            return "int32", number
        return ("int64", number) if INT64[0] <= number <= INT64[1] else ("text", text)
    if _FLOAT.fullmatch(stripped):
        return "float", float(stripped)
    if stripped.lower() in ("true", "false"):
        return "bool", stripped.lower() == "true"
    if stripped[:1] in "[{" and stripped[-1:] in "]}":
        try:
            parsed = parse_structured(stripped)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return "text", text
        if isinstance(parsed, list):
            return "list", parsed
        if isinstance(parsed, dict) and all(isinstance(k, str) for k in parsed):
            return "object", parsed
    return "text", text


def _json_kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int32" if INT32[0] <= value <= INT32[1] else "int64" if INT64[0] <= value <= INT64[1] else "float"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "text"


def profile_rows(rows: list[dict], text: bool = True, phone_region: str = "US") -> list[FieldProfile]:
    """One profile per top-level field, in the order fields first appear."""
    fields: dict[str, FieldProfile] = {}
    for row in rows:
        for name, value in row.items():
            profile = fields.get(name)
            if profile is None:
                _check_names([name], "sample")
                profile = fields[name] = FieldProfile(name, name)
            profile.add(value, text and isinstance(value, str), phone_region)
    for profile in fields.values():
        profile.rows = len(rows)
        profile.finish()
        _mark_required(profile)
    return list(fields.values())


def _mark_required(profile: FieldProfile):
    present = sum(profile.kinds.values())
    profile.required = bool(profile.rows) and present == profile.rows and classify.is_id_like(profile.name)
    for child in profile.children.values():
        _mark_required(child)


# -- the proposal ------------------------------------------------------------------------------
@dataclass
class Proposal:
    """A proposed contract: fields, key, PII with levels, quasi-identifiers, regexes, and why.

    ``reasons`` maps a path to the sentences that explain each proposal for it; ``notes`` are
    things left out or changed. Change it with the ``set_*`` methods, then ``contract()``."""

    ref: str
    fields: list[FieldProfile]
    key_field: str | None = None
    pii: dict = field(default_factory=dict)             # path -> purpose level
    quasi_ids: list = field(default_factory=list)
    validations: dict = field(default_factory=dict)     # path -> regex
    reasons: dict = field(default_factory=dict)         # path -> [text]
    notes: list = field(default_factory=list)
    _made_required: set = field(default_factory=set)    # required only because it is the key field

    def profile(self, path: str) -> FieldProfile | None:
        level = {f.name: f for f in self.fields if f.type is not None}
        found = None
        for part in path.split("/"):
            found = level.get(part)
            if found is None or found.type is None:
                return None
            level = found.children
        return found

    def paths(self) -> list[str]:
        out = []

        def walk(profiles):
            for p in profiles:
                if p.type is not None:
                    out.append(p.path)
                    walk(p.children.values())
        walk(self.fields)
        return out

    def _why(self, path: str, text: str):
        self.reasons.setdefault(path, []).append(text)

    def _string_field(self, path: str, role: str) -> FieldProfile:
        profile = self.profile(path)
        if profile is None:
            raise ContractError(f"field '{path}' is not in the sample (fields: {', '.join(self.paths())})")
        if profile.type != "STRING":
            if profile.text and profile.type in SCALAR_TYPES:
                self.notes.append(f"{path}: typed STRING instead of {profile.type} ({role} must be text)")
                profile.type = "STRING"
            else:
                raise ContractError(f"field '{path}' is {profile.type}: {role} must be a STRING field")
        return profile

    def set_key_field(self, path: str):
        """Make ``path`` the key field (and data subject field): a required, non-repeated STRING."""
        profile = self.profile(path)
        if profile is not None and profile.repeated:
            raise ContractError(f"field '{path}' is repeated: the key field must hold one value")
        profile = self._string_field(path, "the key field")
        for previous in self._made_required - {path}:
            self.profile(previous).required = False
        self._made_required = set() if profile.required and path not in self._made_required else {path}
        profile.required = True
        self.key_field = path

    def set_pii(self, path: str, level: int | None):
        """Make ``path`` PII at ``level``, or not PII (None)."""
        if level is None:
            self.pii.pop(path, None)
            return
        if not isinstance(level, int) or isinstance(level, bool) or level < 0:
            raise ContractError(f"field '{path}': a purpose level is a whole number >= 0")
        self._string_field(path, "a PII field")
        self.pii[path] = level
        if path in self.quasi_ids:
            self.quasi_ids.remove(path)

    def set_type(self, path: str, type_name: str):
        profile = self.profile(path)
        if profile is None:
            raise ContractError(f"field '{path}' is not in the sample")
        if type_name not in SCALAR_TYPES or profile.type == NODE:
            raise ContractError(f"field '{path}': the type must be one of {', '.join(SCALAR_TYPES)} "
                                "(a NODE keeps its fields)")
        profile.type = type_name

    def data(self) -> dict:
        """The contract mapping (contract.schema.json), in the order the sample showed the fields."""
        if self.key_field is None:
            raise ContractError("no key field: choose one (a required STRING field that identifies the "
                                "data subject, e.g. a customer id)")
        paths = self.paths()
        data = {"ref": self.ref, "state": "DRAFT",
                "schema": {"name": self.ref.split("/")[1],
                           "nodes": [node_data(_node(p)) for p in self.fields if p.type is not None]},
                "keyField": self.key_field, "dataSubjectField": self.key_field}
        metadata = field_metadata(paths, self.pii, self.quasi_ids, {})
        if metadata:
            data["fieldMetadata"] = metadata
        if self.validations:
            data["validations"] = validation_data((p, self.validations[p]) for p in paths if p in self.validations)
        return data

    def contract(self) -> Contract:
        """The proposal as a checked contract (ContractError names what is wrong)."""
        return parse_contract(self.data(), source=f"proposal for {self.ref}")

    def summary(self) -> list[str]:
        """Lines that say what is proposed and why (no values from the sample)."""
        lines = []
        for path in self.paths():
            profile = self.profile(path)
            kind = ("repeated " if profile.repeated else "") + profile.type + (", required" if profile.required else "")
            roles = []
            if path == self.key_field:
                roles.append("key field")
            if path in self.pii:
                roles.append(f"PII, purpose level {self.pii[path]}")
            if path in self.quasi_ids:
                roles.append("quasi-identifier")
            if path in self.validations:
                roles.append(f"regex {self.validations[path]}")
            why = "; ".join(self.reasons.get(path, []))
            lines.append(f"{path}: {kind}" + (f" [{', '.join(roles)}]" if roles else "") + (f" ({why})" if why else ""))
        return lines + self.notes


def _node(profile: FieldProfile) -> Node:
    children = tuple(_node(c) for c in profile.children.values() if c.type is not None)
    return Node(profile.name, profile.type, profile.repeated, profile.required,
                children if profile.type == NODE else (), profile.doc)


def _share(count: int, total: int) -> str:
    return f"{100 * count // total}% of {total} values" if total else "no values"


def propose(profiles: list[FieldProfile], ref: str, key_field: str | None = None) -> Proposal:
    """Proposals for every field (see the module docstring); ``key_field`` overrides the key rule."""
    proposal = Proposal(ref=ref, fields=profiles)
    for profile in profiles:
        proposal.notes.extend(_notes(profile))
    candidates = []
    for path in proposal.paths():
        profile = proposal.profile(path)
        if profile.type == NODE:
            continue
        by_name = classify.name_category(profile.name)
        by_value = classify.value_category(profile.matches, profile.tested)
        category = by_value[0] if by_value else by_name
        if category is not None and (profile.type == "STRING" or profile.text):
            reason = [f"{category.label} ({classify.GROUP_LABELS[category.group]})"]
            if by_name is category:
                reason.append(f"the name '{profile.name}'")
            if by_value:
                reason.append(f"{_share(profile.matches[category.name], profile.tested)} look like one")
            proposal._why(path, ": ".join([reason[0], " and ".join(reason[1:])]))
            proposal.set_pii(path, category.level)
        elif category is not None:
            proposal.notes.append(f"{path}: the name suggests {category.label}, but it holds {profile.type} values "
                                  "(only STRING fields can be PII)")
        elif classify.quasi_identifier(profile.name):
            proposal.quasi_ids.append(path)
            proposal._why(path, f"quasi-identifier: the name '{profile.name}'")
        if profile.type == "STRING" and not profile.repeated and "/" not in path:   # nested: --key-field
            score = classify.key_score(profile.name, category, len(profile.distinct) if profile.distinct else None,
                                       profile.values or None)
            never_empty = profile.required or not profile.rows or profile.values == profile.rows
            if score > 0 and never_empty:
                candidates.append((-score, len(candidates), path))
        if (profile.type == "STRING" and path not in proposal.pii and not classify.is_id_like(profile.name)
                and classify.is_enumeration(profile.small_values, profile.values)):
            proposal.validations[path] = classify.enumeration_regex(profile.small_values)
            proposal._why(path, f"{len(profile.small_values)} distinct values in {profile.values}: an enumeration")
    chosen = key_field or (min(candidates)[2] if candidates else None)
    if chosen is not None:
        proposal.set_key_field(chosen)
        if key_field is None:
            profile = proposal.profile(chosen)
            seen = f", {len(profile.distinct)} distinct in {profile.values} values" if profile.values else ""
            proposal._why(chosen, f"key field: identifies the data subject, never empty{seen}")
        proposal.validations.pop(chosen, None)
    return proposal


def _notes(profile: FieldProfile) -> list[str]:
    notes = list(profile.notes)
    for child in profile.children.values():
        notes.extend(_notes(child))
    return notes


def check_sample(contract: Contract, rows: list[dict], text: bool = True) -> tuple[int, Counter]:
    """How many rows the contract accepts, and why the others are refused (reasons name the field,
    never the value): the CSV conversion (``coerce_row``) and THE validator, as a batch run."""
    validator = EventValidator(contract)
    meta = {"eventContractRef": contract.ref, "consentLevels": []}
    accepted, refused = 0, Counter()
    for row in rows:
        try:
            event = coerce_row(contract, row) if text else dict(row)
            validator.check({"strmMeta": meta, **event})
            accepted += 1
        except EventError as exc:
            refused[exc.reason] += 1
    return accepted, refused
