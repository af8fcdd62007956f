"""Load data contracts from YAML, refusing malformed ones with a message that names the problem.

A contract file lives at ``<dir>/<handle>/<name>/<version>.yaml``; the shipped ones are in this
package, more directories can be added with the ``CONTRACTS_PATH`` environment variable
(``os.pathsep``-separated) or the ``search_dirs`` argument::

    from contracts.loader import load_contract, ContractError
    contract = load_contract("strmprivacy/example/1.5.0")      # by reference
    contract = load_contract("my_contracts/shop.yaml")          # by file path

The YAML format (Simple Schema plus the privacy classification)::

    ref: acme/Shop/1.0.0          # handle/name/version; taken from the path when absent
    state: ACTIVE                 # DRAFT | IN_REVIEW | APPROVED | ACTIVE | ARCHIVED
    schema:
      name: Shop
      nodes:
        - {name: userId, type: STRING, required: true}
        - {name: emails, type: STRING, repeated: true}
        - name: address
          type: NODE
          nodes: [{name: street, type: STRING}]
    keyField: userId
    dataSubjectField: userId
    fieldMetadata:
      - fieldName: address/street
        personalDataConfig: {isPii: true, purposeLevel: 2}
        nullHandlingConfig: {type: DEFAULT_VALUE, defaultValue: ""}
    validations:
      - {field: size, type: regex, value: "XS|S|M|L|XL"}
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from contracts.model import ACTIVE, NODE, SCALAR_TYPES, STATES, Contract, Node, NullHandling, Validation

PACKAGE_DIR = Path(__file__).resolve().parent
REF_PATTERN = re.compile(r"^([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/(\d+\.\d+\.\d+)$")
NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ContractError(ValueError):
    """A contract that cannot be used; the message names the file, the field and the problem."""


def search_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    dirs = [Path(d) for d in (extra or [])]
    env = os.environ.get("CONTRACTS_PATH", "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs.append(PACKAGE_DIR)
    return dirs


def contract_path(ref: str, extra_dirs: list[str | Path] | None = None) -> Path:
    """The YAML file of a contract reference; ContractError when no directory has it."""
    match = REF_PATTERN.match(ref)
    if not match:
        raise ContractError(f"'{ref}' is not a contract reference of the form handle/name/1.2.3")
    handle, name, version = match.groups()
    for directory in search_dirs(extra_dirs):
        candidate = directory / handle / name / f"{version}.yaml"
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(d) for d in search_dirs(extra_dirs))
    raise ContractError(f"contract '{ref}' not found (looked in: {looked})")


def load_contract(ref_or_path: str | Path, extra_dirs: list[str | Path] | None = None) -> Contract:
    """Load a contract by reference (``handle/name/version``) or by YAML file path."""
    text = str(ref_or_path)
    if text.endswith((".yaml", ".yml")) or os.path.sep in text and Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise ContractError(f"{path}: no such contract file")
        return parse_contract(_read_yaml(path), source=str(path))
    return parse_contract(_read_yaml(contract_path(text, extra_dirs)), source=text)


def list_contracts(extra_dirs: list[str | Path] | None = None) -> list[str]:
    """References of every contract file found in the search directories."""
    refs = set()
    for directory in search_dirs(extra_dirs):
        for path in directory.glob("*/*/*.yaml"):
            refs.add(f"{path.parent.parent.name}/{path.parent.name}/{path.stem}")
    return sorted(refs)


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ContractError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError(f"{path}: a contract must be a YAML mapping")
    return data


def parse_contract(data: dict, source: str = "<contract>") -> Contract:
    """Check a contract mapping and build a Contract; ContractError names what is wrong."""

    def fail(problem: str, field: str | None = None):
        where = f"field '{field}': " if field else ""
        raise ContractError(f"{source}: {where}{problem}")

    ref = data.get("ref")
    if ref is None:
        stem = source[: -len(Path(source).suffix)] if source.endswith((".yaml", ".yml")) else source
        parts = Path(stem).parts[-3:]
        ref = "/".join(parts)
    match = REF_PATTERN.match(str(ref))
    if not match:
        fail(f"ref '{ref}' is not of the form handle/name/1.2.3")
    handle, name, version = match.groups()

    state = data.get("state", ACTIVE)
    if state not in STATES:
        fail(f"state '{state}' is not one of {', '.join(STATES)}")

    schema = data.get("schema")
    if not isinstance(schema, dict) or not isinstance(schema.get("nodes"), list) or not schema["nodes"]:
        fail("'schema' must be a mapping with a non-empty list 'nodes'")
    nodes = tuple(_parse_node(n, "", fail) for n in schema["nodes"])
    _check_unique([n.name for n in nodes], "", fail)
    root = Node(name="", type=NODE, nodes=nodes)

    def resolve(path: str, what: str) -> Node:
        if not isinstance(path, str) or not path:
            fail(f"{what} must name a field")
        current = root
        for part in path.split("/"):
            nxt = current.child(part) if current.type == NODE else None
            if nxt is None:
                fail(f"{what} names a field that is not in the schema", path)
            current = nxt
        return current

    key_field = data.get("keyField")
    if key_field is None:
        fail("'keyField' is missing: every contract needs a key field (a required STRING field)")
    key_node = resolve(key_field, "keyField")
    if key_node.type != "STRING" or key_node.repeated or not key_node.required:
        fail("the key field must be a required, non-repeated STRING field", key_field)

    subject_field = data.get("dataSubjectField")
    if subject_field is not None:
        subject_node = resolve(subject_field, "dataSubjectField")
        if subject_node.type != "STRING" or subject_node.repeated:
            fail("the data subject field must be a non-repeated STRING field", subject_field)

    pii: dict[str, int] = {}
    quasi_ids: list[str] = []
    null_handling: list[NullHandling] = []
    for entry in data.get("fieldMetadata") or []:
        if not isinstance(entry, dict):
            fail("every fieldMetadata entry must be a mapping")
        path = entry.get("fieldName")
        node = resolve(path, "fieldMetadata.fieldName")
        personal = entry.get("personalDataConfig") or {}
        if personal.get("isPii"):
            if node.type != "STRING":
                fail(f"only (repeated) STRING fields can be PII, this one is {node.type}", path)
            level = personal.get("purposeLevel")
            if not isinstance(level, int) or isinstance(level, bool) or level < 0:
                fail("a PII field needs a non-negative integer purposeLevel", path)
            if path in pii:
                fail("classified twice", path)
            pii[path] = level
        if personal.get("isQuasiId"):
            quasi_ids.append(path)
        nulls = entry.get("nullHandlingConfig")
        if nulls:
            action = nulls.get("type")
            if action not in ("DROP_RECORD", "DEFAULT_VALUE"):
                fail("nullHandlingConfig.type must be DROP_RECORD or DEFAULT_VALUE", path)
            null_handling.append(NullHandling(path, action, nulls.get("defaultValue")))

    validations = []
    for entry in data.get("validations") or []:
        if not isinstance(entry, dict):
            fail("every validation must be a mapping with field, type and value")
        path = entry.get("field")
        node = resolve(path, "validations.field")
        if entry.get("type") != "regex":
            fail(f"validation type '{entry.get('type')}' is not supported (only 'regex')", path)
        if node.type == NODE:
            fail("a regex validation needs a scalar field, not a NODE", path)
        try:
            pattern = re.compile(str(entry.get("value")))
        except re.error as exc:
            fail(f"invalid regex '{entry.get('value')}': {exc}", path)
        validations.append(Validation(path, pattern.pattern, pattern))

    return Contract(
        handle=handle,
        name=name,
        version=version,
        state=state,
        nodes=nodes,
        key_field=key_field,
        data_subject_field=subject_field,
        pii=pii,
        quasi_ids=tuple(quasi_ids),
        validations=tuple(validations),
        null_handling=tuple(null_handling),
        source=source,
    )


def _parse_node(raw, parent: str, fail) -> Node:
    if not isinstance(raw, dict):
        fail(f"every node under '{parent or 'schema'}' must be a mapping")
    name = raw.get("name")
    path = f"{parent}/{name}" if parent else str(name)
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        fail(f"node name '{name}' must start with a letter or '_' and hold only letters, digits, '_'", path)
    if name == "strmMeta":
        fail("'strmMeta' is reserved for event metadata", path)
    node_type = raw.get("type")
    if node_type not in SCALAR_TYPES + (NODE,):
        fail(f"type '{node_type}' is not one of {', '.join(SCALAR_TYPES + (NODE,))}", path)
    for flag in ("repeated", "required"):
        if not isinstance(raw.get(flag, False), bool):
            fail(f"'{flag}' must be true or false", path)
    children = ()
    if node_type == NODE:
        if not isinstance(raw.get("nodes"), list) or not raw["nodes"]:
            fail("a NODE needs a non-empty list 'nodes'", path)
        children = tuple(_parse_node(n, path, fail) for n in raw["nodes"])
        _check_unique([c.name for c in children], path, fail)
    elif raw.get("nodes"):
        fail(f"only NODE fields can have 'nodes', this one is {node_type}", path)
    return Node(
        name=name,
        type=node_type,
        repeated=raw.get("repeated", False),
        required=raw.get("required", False),
        nodes=children,
        doc=raw.get("doc"),
    )


def _check_unique(names: list[str], parent: str, fail):
    seen = set()
    for name in names:
        if name in seen:
            fail("defined twice", f"{parent}/{name}" if parent else name)
        seen.add(name)
