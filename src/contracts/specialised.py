"""Per-contract Python source for the two per-row hot spots, generated once and exec'd: speed.

Why this is generated code rather than the interpreted checks of ``contracts.events``: the
general ``EventValidator`` walks a table of rules per event (a dict look-up and a lambda call
per field, a nested call for strmMeta) and ``RowCoercer`` calls a converter per column; at
200,000 rows that interpretation, not the work, was most of the time (``python -m
benchmarks.convert_validate --profile``). As fastjsonschema does, the checks of one contract are
written out once as straight-line Python (one local per field, exact-class tests inline) and
compiled with ``exec``.

What keeps it safe and equal to the general path:

- the generated source never contains a name or a value: field names, ranges, rules and
  converters are bound as constants of the function's namespace (``k3``, ``lo3``, ``ok3``); the
  source holds identifiers made here and Python syntax only;
- the specialised validator only ACCEPTS: it returns the event when every check of the
  contract passes and ``None`` otherwise, and ``None`` sends the event to the general path,
  which decides again and gives the one reason (the same first failure, the same message). So
  there is one validator semantics; the specialised path is a pre-check that can only say yes
  where the general one says yes (``tests/test_one_validator.py`` compares the two on generated
  events). Contracts with NODE fields, a nested key field or a field defined twice get no
  specialised validator (the general path, always);
- the specialised CSV converter does, per column, what ``RowCoercer`` does (its own
  converters for everything but the common case: an INTEGER or LONG column of ASCII digits, or
  a STRING column, which stays as it is), in the row's own column order.
"""
from __future__ import annotations

from contracts.model import NODE

MAX_COLUMNS = 256  # wider rows (or JSONL objects) take the general converter


# ------------------------------------------------------------------ the validator's pre-check
def _test(rule, n: int, ns: dict, item: str) -> str:
    """The Python expression that is true when ``item`` passes ``rule`` (a ``contracts.events._Rule``)."""
    kind = rule.type
    if kind in ("INTEGER", "LONG"):
        ns[f"lo{n}"], ns[f"hi{n}"] = rule.low, rule.high
        return f"({item}.__class__ is int and lo{n} <= {item} <= hi{n})"
    if kind == "STRING" and rule.equals is None and rule.pattern is None:
        return f"({item}.__class__ is str and ({item}.isascii() or surrogate({item}) is None))"
    if kind == "BOOLEAN":
        return f"({item} is True or {item} is False)"
    if kind == "STRING" and rule.equals is not None and rule.pattern is None:
        ns[f"eq{n}"] = rule.equals
        return f"({item}.__class__ is str and {item} == eq{n})"
    ns[f"ok{n}"] = rule.ok  # FLOAT, STRING with a pattern or a fixed value: the rule's own test
    return f"ok{n}({item})"


def _level_lines(level, var: str, ns: dict, counter: list, indent: str) -> list[str] | None:
    """Lines that ``return None`` unless the object in ``var`` passes ``level`` (a ``_Level``) with no
    defaults to fill in; None if the level has anything the pre-check does not cover."""
    from contracts.events import _SURROGATE

    ns.setdefault("surrogate", _SURROGATE.search)
    counter[0] += 1
    n = counter[0]
    ns[f"known{n}"] = level.known
    lines = [f"{indent}if {var}.__class__ is not dict or not known{n}.issuperset({var}):",
             f"{indent}    return None",
             f"{indent}get{n} = {var}.get"]
    # Required or with a DEFAULT_VALUE: when missing, the general path reports it or fills it in (a copy).
    must = {name for name, _path, _default in level.present}
    for name, (path, repeated, ok, children, regexes, rule) in level.specs.items():
        counter[0] += 1
        f = counter[0]
        ns[f"k{f}"] = name
        value = f"v{f}"
        lines.append(f"{indent}{value} = get{n}(k{f})")
        if name in must:
            lines += [f"{indent}if {value} is None:", f"{indent}    return None"]
            inner = indent
        else:
            lines.append(f"{indent}if {value} is not None:")
            inner = indent + "    "
        if children is not None:
            if repeated or rule.type != NODE:
                return None
            sub = _level_lines(children, value, ns, counter, inner)
            if sub is None:
                return None
            lines += sub
            if regexes:
                return None
            if name not in must:
                lines.append(f"{inner}pass")
            continue
        if repeated:
            lines += [f"{inner}if {value}.__class__ is not list:", f"{inner}    return None",
                      f"{inner}for x{f} in {value}:",
                      f"{inner}    if not {_test(rule, f, ns, f'x{f}')}:",
                      f"{inner}        return None"]
        else:
            lines += [f"{inner}if not {_test(rule, f, ns, value)}:", f"{inner}    return None"]
        for r, validation in enumerate(regexes):
            ns[f"rx{f}_{r}"] = validation.pattern.fullmatch
            ns.setdefault("dumps", __import__("json").dumps)
            items = f"{value}" if repeated else f"({value},)"
            lines += [f"{inner}for y{f} in {items}:",
                      f"{inner}    if rx{f}_{r}(y{f} if y{f}.__class__ is str else dumps(y{f})) is None:",
                      f"{inner}        return None"]
    return lines


def compile_validator(validator):
    """``accept(event) -> event | None`` for an ``EventValidator``, or None when it has no specialised form."""
    from contracts.events import MAX_ID_CHARS

    contract = validator.contract
    names = [node.name for node in contract.nodes]
    if (len(names) != len(set(names)) or any(node.type == NODE for node in contract.nodes)
            or len(validator._key_path) != 1 or (validator._subject_path and len(validator._subject_path) != 1)
            or len(names) > MAX_COLUMNS):
        return None
    ns: dict = {"MAX": MAX_ID_CHARS, "kkey": validator._key_path[0]}
    body = _level_lines(validator._top, "event", ns, [0], "    ")
    if body is None:
        return None
    lines = ["def accept(event):", *body,
             "    key = get1(kkey)",
             "    if key.__class__ is not str or not key.strip() or len(key) > MAX:",
             "        return None"]
    if validator._subject_path:
        ns["ksubject"] = validator._subject_path[0]
        lines += ["    subject = event.get(ksubject)",
                  "    if isinstance(subject, str) and len(subject) > MAX:",
                  "        return None"]
    lines.append("    return event")
    return _build("accept", lines, ns, f"<accept {len(names)} fields>")


# ------------------------------------------------------------------ the CSV row converter
def compile_row_converter(coercer, columns: tuple):
    """``convert(row, meta) -> {'strmMeta': meta, **converted row}`` for rows whose keys are exactly
    ``columns`` in that order (a ``RowCoercer``'s conversion), or None for too many columns. A
    column named strmMeta replaces ``meta`` in place, as ``RowCoercer(row, into=...)`` does."""
    if len(columns) > MAX_COLUMNS:
        return None
    from contracts.events import _INT_CONVERTER_TYPES

    ns: dict = {}
    values = ", ".join(f"c{i}" for i in range(len(columns)))
    lines = ["def convert(row, meta):"]
    if columns:
        lines.append(f"    {values}, = row.values()")
    items = ["kmeta: meta"]
    ns["kmeta"] = "strmMeta"
    for i, name in enumerate(columns):
        ns[f"k{i}"] = name
        converter = coercer._converters.get(name)
        if converter is None:
            items.append(f"k{i}: c{i}")
            continue
        ns[f"f{i}"] = converter
        if coercer._types.get(name) in _INT_CONVERTER_TYPES:
            lines.append(f"    x{i} = int(c{i}) if (c{i}.__class__ is str and c{i}.isdigit() and c{i}.isascii() "
                         f"and len(c{i}) <= 30) else f{i}(c{i})")
        else:
            lines.append(f"    x{i} = f{i}(c{i})")
        items.append(f"k{i}: x{i}")
    lines.append("    return {" + ", ".join(items) + "}")
    return _build("convert", lines, ns, f"<convert {len(columns)} columns>")


def _build(name: str, lines: list[str], ns: dict, filename: str):
    """Compile ``lines`` (the function ``name``) inside a factory whose parameters are the constants
    of ``ns``: they become the function's free variables, and the source holds none of them."""
    constants = sorted(ns)
    source = "\n".join([f"def _factory({', '.join(constants)}):", *("    " + line for line in lines),
                         f"    return {name}", ""])
    scope: dict = {}
    exec(compile(source, filename, "exec"), scope)  # noqa: S102 - our source, see the module docstring
    return scope["_factory"](**ns)
