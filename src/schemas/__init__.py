"""Every file format of the project is a JSON Schema first: strict YAML, then a schema check.

    from schemas import load_checked, check, SchemaError
    data = load_checked(text, "pipeline-config", source="pipeline.yaml")   # parse + check, or SchemaError
    check(data, "contract", source="acme/Shop/1.0.0")                      # check a mapping already loaded
    schema_path("contract")        # .../schemas/contract.schema.json: point an editor at it

A schema lives next to this file as ``<name>.schema.json`` (JSON Schema 2020-12) and is checked
with ``jsonschema``; one schema can use another's definitions by file name
(``{"$ref": "connector.schema.json#/$defs/connector"}``); it should close every object (``additionalProperties: false``) so that an
unknown or misspelled key is an error. Errors name the file, the path in it and, for an unknown
key, the nearest valid one::

    pipeline.yaml: streams[0]: unknown key 'granualr' (did you mean 'granular'?)

Strict YAML (``load_strict_yaml``) refuses what can make a small file expand or mean two things:
anchors and aliases (alias bombs), merge keys (``<<``), duplicate keys, nesting deeper than
``max_depth``, and texts longer than ``max_bytes``. Tags other than YAML's own are refused by
PyYAML's safe loader already.
"""
from __future__ import annotations

import difflib
import functools
import json
import re
from pathlib import Path

import jsonschema
import referencing
import yaml
from referencing.jsonschema import DRAFT202012

SCHEMA_DIR = Path(__file__).resolve().parent
DEFAULT_MAX_BYTES = 1 << 20
DEFAULT_MAX_DEPTH = 64
_SHOWN = 60          # characters of a key or value shown back in a message


class SchemaError(ValueError):
    """A file that does not follow its format; the message names the file and the path in it."""

    def __init__(self, source: str, path: str, problem: str):
        self.source, self.path, self.problem = source, path, problem
        super().__init__(f"{source}: {path + ': ' if path else ''}{problem}")


def schema_path(name: str) -> Path:
    """The published JSON Schema file of a format (``contract``, ``pipeline-config``, ...)."""
    return SCHEMA_DIR / f"{name}.schema.json"


@functools.lru_cache(maxsize=None)
def _registry() -> referencing.Registry:
    """Every published schema, by file name, so that one can ``$ref: "connector.schema.json"``."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        resources.append((path.name, referencing.Resource.from_contents(schema, default_specification=DRAFT202012)))
    return referencing.Registry().with_resources(resources)


@functools.lru_cache(maxsize=None)
def _validator(name: str) -> jsonschema.Draft202012Validator:
    schema = _registry()[schema_path(name).name].contents
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def _shown(value) -> str:
    """A key or value as a message may show it: at most _SHOWN characters, printable ASCII (others
    escaped as \\uXXXX; a backslash stays one, so a regex reads as written)."""
    text = value if isinstance(value, str) else repr(value)
    cut = len(text) > _SHOWN
    text = "".join(c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii") for c in text[:_SHOWN])
    return text[:_SHOWN] + "..." if cut or len(text) > _SHOWN else text


def _json_path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without anchors, aliases, merge keys or duplicate keys, and with a depth bound."""

    max_depth = DEFAULT_MAX_DEPTH

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", event.start_mark)
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors (&name) are not allowed", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > self.max_depth:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {self.max_depth} levels",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(None, None, "merge keys (<<) are not allowed",
                                                        key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value",
                                                        key_node.start_mark) from None
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{_shown(key)}'",
                                                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def load_strict_yaml(text: str | bytes, source: str, max_bytes: int = DEFAULT_MAX_BYTES,
                     max_depth: int = DEFAULT_MAX_DEPTH):
    """Parse one YAML document strictly (see the module docstring); SchemaError names the line."""
    if len(text) > max_bytes:
        raise SchemaError(source, "", f"the file is larger than {max_bytes:,} bytes")
    loader = _StrictLoader(text)
    loader.max_depth = max_depth
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SchemaError(source, where, f"not valid YAML here: {problem}") from None
    except RecursionError:
        raise SchemaError(source, "", f"nesting deeper than {max_depth} levels") from None
    finally:
        loader.dispose()


def _allowed_keys(schema: dict) -> list[str]:
    return sorted(schema.get("properties", {}))


def _describe(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(path, problem) of one schema error, in words a user can act on, values bounded."""
    path = _json_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = _allowed_keys(error.schema)
        patterns = list(error.schema.get("patternProperties", {}))
        extra = [k for k in error.instance if k not in allowed
                 and not any(re.search(p, str(k)) for p in patterns)]
        key = str(extra[0]) if extra else "?"
        lowered = {a.lower(): a for a in allowed}
        near = lowered.get(key.lower()) or next(iter(difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)), None)
        hint = f"did you mean '{near}'?" if near else f"valid keys: {', '.join(allowed) or 'none'}"
        return path, f"unknown key '{_shown(key)}' ({hint})"
    if error.validator == "required":
        return path, error.message.replace(" is a required property", " is missing")
    if error.validator in ("type", "enum", "const", "pattern", "minimum", "maximum", "minLength", "maxLength",
                           "minItems", "maxItems", "uniqueItems", "exclusiveMinimum", "exclusiveMaximum"):
        expected = error.schema.get(error.validator)
        if error.validator == "enum":
            expected = ", ".join(map(str, expected))
        description = error.schema.get("description")
        # writeOnly (JSON Schema: a sensitive value, e.g. credentials): the value is never shown back
        shown = "the value" if error.schema.get("writeOnly") else _shown(error.instance)
        return path, (f"{shown} does not fit: {error.validator} {expected}"
                      + (f" ({description})" if description else ""))
    description = error.schema.get("description") if isinstance(error.schema, dict) else None
    if isinstance(error.schema, dict) and error.schema.get("writeOnly"):
        return path, f"the value does not fit: {error.validator}" + (f" ({description})" if description else "")
    problem = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return path, problem + (f" ({description})" if description else "")


def check(data, schema: str | dict, source: str):
    """Check loaded data against a published schema (by name) or a schema mapping; SchemaError
    for the most relevant problem."""
    validator = (_validator(schema) if isinstance(schema, str)
                 else jsonschema.Draft202012Validator(schema, registry=_registry()))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        # the deepest error of a oneOf/anyOf is the useful one (best_match prefers shallow ones)
        while error.context:
            error = jsonschema.exceptions.best_match(error.context)
        path, problem = _describe(error)
        raise SchemaError(source, path, problem)
    return data


def load_checked(text: str | bytes, schema: str | dict, source: str, max_bytes: int = DEFAULT_MAX_BYTES):
    """Strict YAML, then the schema check: the data of a file that follows its format."""
    return check(load_strict_yaml(text, source, max_bytes=max_bytes), schema, source)
